//! Built-in `email` hook: emails an alert for every event at or above a
//! severity threshold, with a subject like
//! `[ALERT] Data Drift Detected: orders.total_amount` and a plain-text body
//! listing the event's fields. A profiling failure counts as `high`; any
//! other event without a severity is not sent.
//!
//! An alert that the host let through after suppressing repeats of it (the
//! plugin's `dedup_key`; `hookhost_sdk::delivery::suppressed`) says how
//! many: ` (and N more)` after the subject, and a line `Suppressed: N more
//! like this since the last alert` before the severity. Without repeats the
//! message is exactly as above.
//!
//! A digest (the one event the host delivers for a group of events when the
//! plugin has `group_by`) is one message: subject `[DIGEST] 14 events:
//! orders`, a body with the events per type, the top 10 events in one line
//! each, how many more there are by severity, the suppressed repeats, the
//! time and the digest's id. The threshold applies to its severity, the
//! highest among its events, as to any event; so a digest of events
//! without a severity is not sent (`min_severity` cannot go below `low`).
//!
//! Settings: `mailer` (the `[mailers.<name>]` to send through; default
//! `alerts`), `to` (a list of recipients, required), `cc` (a list),
//! `min_severity` (`low`, `medium`, `high` or `critical`; default `high`).

use hookhost_sdk::digest::{Digest, DigestItem};
use hookhost_sdk::email::{self, Message};
use hookhost_sdk::{config, delivery, format, Event, EventKind, Hook, HookError, Severity};

/// How many of a digest's events its body lists one per line: a mail is
/// read at leisure, so twice as many as a Slack message shows.
const TOP_ITEMS: usize = 10;

struct Email;

impl Hook for Email {
    fn handle(event: Event) -> Result<(), HookError> {
        let min = match config::get_or("min_severity", "high").as_str() {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            other => {
                return Err(HookError::Permanent(format!(
                    "setting `min_severity` = `{other}` is not one of low, medium, high, critical"
                )))
            }
        };
        let severity = match (&event.kind, event.severity) {
            (EventKind::ProfilingFailed(_), None) => Severity::High,
            (_, Some(severity)) => severity,
            (_, None) => return Ok(()),
        };
        // Declared from least to most serious.
        if (severity as u8) < (min as u8) {
            return Ok(());
        }
        let (subject, body) = match Digest::from_event(&event) {
            Some(digest) => (digest_subject(&digest), digest_body(&event, &digest)),
            None => {
                let suppressed = delivery::suppressed(&event);
                (
                    subject(&event, suppressed),
                    body(&event, severity, suppressed),
                )
            }
        };
        let message = Message {
            to: list("to")?,
            cc: list("cc")?,
            subject,
            body,
        };
        if message.to.is_empty() {
            return Err(HookError::Permanent(
                "setting `to` lists no recipient".to_owned(),
            ));
        }
        email::send(&config::get_or("mailer", "alerts"), &message)?;
        Ok(())
    }
}

hookhost_sdk::export_hook!(Email);

/// A list setting (`["a@example.com"]`); a single string is a list of one.
fn list(key: &str) -> Result<Vec<String>, HookError> {
    match config::get(key) {
        None => Ok(Vec::new()),
        Some(text) if text.starts_with('[') => serde_json::from_str(&text).map_err(|_| {
            HookError::Permanent(format!("setting `{key}` must be a list of strings"))
        }),
        Some(text) => Ok(vec![text]),
    }
}

/// The alert's subject, with ` (and N more)` after `suppressed` repeats.
fn subject(event: &Event, suppressed: u32) -> String {
    let subject = alert_subject(event);
    if suppressed > 0 {
        format!("{subject} (and {suppressed} more)")
    } else {
        subject
    }
}

/// `[ALERT] <what>: <table>[.<column>]`.
fn alert_subject(event: &Event) -> String {
    let (what, column) = match &event.kind {
        EventKind::DataDriftDetected(drift) => ("Data Drift Detected", Some(drift.column.as_str())),
        EventKind::SchemaChangeDetected(change) => {
            ("Schema Change Detected", change.column.as_deref())
        }
        EventKind::ProfilingFailed(_) => ("Profiling Failed", None),
        EventKind::AnomalyDetected(anomaly) => ("Anomaly Detected", Some(anomaly.column.as_str())),
        EventKind::ValidationFailed(failure) => ("Validation Failed", failure.column.as_deref()),
        EventKind::QualityScoreDegraded(_) => ("Quality Score Degraded", None),
        EventKind::QualityThresholdBreached(_) => ("Quality Threshold Breached", None),
        _ => (event.event_type.as_str(), None),
    };
    let table = event.kind.table().unwrap_or_default();
    match column.filter(|c| !c.is_empty()) {
        Some(column) if !table.is_empty() => format!("[ALERT] {what}: {table}.{column}"),
        _ if !table.is_empty() => format!("[ALERT] {what}: {table}"),
        _ => format!("[ALERT] {what}"),
    }
}

/// One `Name: value` line per field of the event's kind, then the
/// `suppressed` repeats (when there were any), severity, time and id.
fn body(event: &Event, severity: Severity, suppressed: u32) -> String {
    let mut lines: Vec<(&str, String)> = Vec::new();
    let opt = |value: &Option<String>| value.clone().unwrap_or_else(|| "N/A".to_owned());
    match &event.kind {
        EventKind::DataDriftDetected(drift) => lines.extend([
            ("Table", drift.table.clone()),
            ("Column", drift.column.clone()),
            ("Metric", drift.metric.clone()),
            ("Baseline", format::metric(&drift.baseline_value)),
            ("Current", format::metric(&drift.current_value)),
            ("Change", format::change(drift.change_percent)),
        ]),
        EventKind::SchemaChangeDetected(change) => lines.extend([
            ("Table", change.table.clone()),
            ("Change", change.change_type.as_str().to_owned()),
            ("Column", opt(&change.column)),
            ("Old type", opt(&change.old_type)),
            ("New type", opt(&change.new_type)),
        ]),
        EventKind::ProfilingFailed(failure) => lines.extend([
            ("Table", failure.table.clone()),
            ("Run ID", failure.run_id.clone()),
            ("Error", failure.error.clone()),
        ]),
        EventKind::AnomalyDetected(anomaly) => lines.extend([
            ("Table", anomaly.table.clone()),
            ("Column", anomaly.column.clone()),
            ("Metric", anomaly.metric.clone()),
            ("Expected", format::metric(&anomaly.expected_value)),
            ("Actual", format::metric(&anomaly.actual_value)),
            ("Anomaly", anomaly.anomaly_type.clone()),
        ]),
        EventKind::ValidationFailed(failure) => lines.extend([
            ("Table", failure.table.clone()),
            ("Column", opt(&failure.column)),
            ("Rule", failure.rule_type.clone()),
            ("Reason", failure.failure_reason.clone()),
        ]),
        kind => lines.push(("Table", kind.table().unwrap_or("N/A").to_owned())),
    }
    if suppressed > 0 {
        lines.push(("Suppressed", format::suppressed(suppressed.into())));
    }
    lines.extend([
        ("Severity", severity.as_str().to_uppercase()),
        ("Timestamp", format::timestamp(&event.timestamp)),
        ("Event ID", event.id.clone()),
    ]);
    let mut body: String = lines
        .iter()
        .map(|(name, value)| format!("{name}: {value}\n"))
        .collect();
    if let Some(explanation) = explanation(&event.kind) {
        body.push_str(&format!("\n{explanation}\n"));
    }
    body
}

fn explanation(kind: &EventKind) -> Option<&str> {
    match kind {
        EventKind::DataDriftDetected(e) => e.explanation.as_deref(),
        EventKind::SchemaChangeDetected(e) => e.explanation.as_deref(),
        EventKind::AnomalyDetected(e) => e.explanation.as_deref(),
        _ => None,
    }
}

/// `[DIGEST] 14 events: orders` (the group's values), or `[DIGEST] 14
/// events` when they are all empty.
fn digest_subject(digest: &Digest) -> String {
    let events = format::events(digest.count);
    let values: Vec<&str> = digest.group_values().collect();
    if values.is_empty() {
        format!("[DIGEST] {events}")
    } else {
        format!("[DIGEST] {events}: {}", values.join(", "))
    }
}

/// The events per type, then the top events one per line, how many more
/// there are, the suppressed repeats, the time and the digest's id.
fn digest_body(event: &Event, digest: &Digest) -> String {
    let mut lines: Vec<String> = digest.count_lines().collect();
    lines.extend([String::new(), "Top items:".to_owned()]);
    lines.extend(digest.top(TOP_ITEMS).iter().map(item_line));
    lines.extend(digest.more(TOP_ITEMS));
    if digest.suppressed > 0 {
        lines.push(format!(
            "Suppressed: {}",
            format::suppressed(digest.suppressed)
        ));
    }
    lines.extend([
        format!("Timestamp: {}", format::timestamp(&event.timestamp)),
        format!("Digest ID: {}", event.id),
    ]);
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// An event of a digest in one line, its severity first when it has one:
/// `[HIGH] DataDriftDetected orders.amount mean +50.0%`.
fn item_line(item: &DigestItem) -> String {
    match &item.severity {
        Some(word) => format!("[{}] {}", word.to_uppercase(), item.summary()),
        None => item.summary(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookhost_sdk::{digest, DataDrift, MetricValue};

    fn drift_event() -> Event {
        Event {
            id: "e1".to_owned(),
            event_type: "DataDriftDetected".to_owned(),
            timestamp: "2025-01-15T10:30:00Z".to_owned(),
            severity: Some(Severity::High),
            metadata: "{}".to_owned(),
            kind: EventKind::DataDriftDetected(DataDrift {
                table: "orders".to_owned(),
                column: "total_amount".to_owned(),
                metric: "mean".to_owned(),
                baseline_value: Some(MetricValue::Number(100.0)),
                current_value: Some(MetricValue::Number(150.0)),
                change_percent: Some(50.0),
                drift_severity: "high".to_owned(),
                explanation: None,
            }),
        }
    }

    const DRIFT_BODY: &str = "Table: orders\nColumn: total_amount\nMetric: mean\n\
        Baseline: 100.00\nCurrent: 150.00\nChange: +50.0%\n\
        Severity: HIGH\nTimestamp: 2025-01-15 10:30:00 UTC\nEvent ID: e1\n";

    #[test]
    fn an_alert_without_repeats_is_unchanged() {
        let event = drift_event();
        assert_eq!(
            subject(&event, 0),
            "[ALERT] Data Drift Detected: orders.total_amount"
        );
        assert_eq!(body(&event, Severity::High, 0), DRIFT_BODY);
    }

    #[test]
    fn an_alert_after_repeats_says_how_many() {
        let event = drift_event();
        assert_eq!(
            subject(&event, 3),
            "[ALERT] Data Drift Detected: orders.total_amount (and 3 more)"
        );
        let expected = DRIFT_BODY.replace(
            "Severity:",
            "Suppressed: 3 more like this since the last alert\nSeverity:",
        );
        assert_eq!(body(&event, Severity::High, 3), expected);
    }

    fn digest_event(metadata: serde_json::Value) -> Event {
        Event {
            id: "digest-0123456789abcdef0123456789abcdef".to_owned(),
            event_type: digest::EVENT_TYPE.to_owned(),
            timestamp: "2025-03-04T02:05:30Z".to_owned(),
            severity: Some(Severity::High),
            metadata: metadata.to_string(),
            kind: EventKind::Custom(digest::EVENT_TYPE.to_owned()),
        }
    }

    /// 14 drifts on `orders`: 2 high, 11 low, 1 without a severity, 12
    /// listed (the high ones first), 3 repeats suppressed before them.
    fn orders_digest() -> Event {
        let drift = |n: usize, severity: Option<&str>| {
            serde_json::json!({"event_id": format!("d{n}"), "event_type": "DataDriftDetected",
                               "timestamp": "2025-03-04T02:00:00Z", "severity": severity,
                               "metadata": {"table": "orders", "column": format!("c{n}"),
                                            "metric": "mean", "change_percent": n as f64}})
        };
        let mut events = vec![drift(1, Some("high")), drift(2, Some("high"))];
        events.extend((3..=12).map(|n| drift(n, Some("low"))));
        digest_event(serde_json::json!({
            "group": {"metadata.table": "orders", "event_type": ""},
            "table": "orders",
            "count": 14,
            "counts": {"DataDriftDetected": 14},
            "severity": "high",
            "severities": {"high": 2, "low": 11, "none": 1},
            "suppressed": 3,
            "first_timestamp": "2025-03-04T02:00:00Z",
            "last_timestamp": "2025-03-04T02:05:00Z",
            "events": events,
            "omitted": 2
        }))
    }

    #[test]
    fn a_digest_is_one_message() {
        let event = orders_digest();
        let digest = Digest::from_event(&event).expect("a digest");
        assert_eq!(digest_subject(&digest), "[DIGEST] 14 events: orders");
        let expected = "\
DataDriftDetected: 14

Top items:
[HIGH] DataDriftDetected orders.c1 mean +1.0%
[HIGH] DataDriftDetected orders.c2 mean +2.0%
[LOW] DataDriftDetected orders.c3 mean +3.0%
[LOW] DataDriftDetected orders.c4 mean +4.0%
[LOW] DataDriftDetected orders.c5 mean +5.0%
[LOW] DataDriftDetected orders.c6 mean +6.0%
[LOW] DataDriftDetected orders.c7 mean +7.0%
[LOW] DataDriftDetected orders.c8 mean +8.0%
[LOW] DataDriftDetected orders.c9 mean +9.0%
[LOW] DataDriftDetected orders.c10 mean +10.0%
and 4 more (3 low, 1 without severity)
Suppressed: 3 more like this since the last alert
Timestamp: 2025-03-04 02:05:30 UTC
Digest ID: digest-0123456789abcdef0123456789abcdef
";
        assert_eq!(digest_body(&event, &digest), expected);
    }

    #[test]
    fn a_small_digest_lists_everything() {
        let event = digest_event(serde_json::json!({
            "group": {"metadata.table": ""},
            "count": 1,
            "counts": {"ProfilingFailed": 1},
            "severities": {"none": 1},
            "events": [{"event_id": "p1", "event_type": "ProfilingFailed",
                        "timestamp": "2025-03-04T02:00:00Z", "metadata": {"table": "orders"}}]
        }));
        let digest = Digest::from_event(&event).expect("a digest");
        assert_eq!(digest_subject(&digest), "[DIGEST] 1 event");
        let expected = "ProfilingFailed: 1\n\nTop items:\nProfilingFailed orders\n\
            Timestamp: 2025-03-04 02:05:30 UTC\n\
            Digest ID: digest-0123456789abcdef0123456789abcdef\n";
        assert_eq!(digest_body(&event, &digest), expected);
    }
}
