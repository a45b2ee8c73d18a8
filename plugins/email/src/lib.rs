//! Built-in `email` hook: emails an alert for every event at or above a
//! severity threshold, with a subject like
//! `[ALERT] Data Drift Detected: orders.total_amount` and a plain-text body
//! listing the event's fields. A profiling failure counts as `high`.
//!
//! Settings: `mailer` (the `[mailers.<name>]` to send through; default
//! `alerts`), `to` (a list of recipients, required), `cc` (a list),
//! `min_severity` (`low`, `medium`, `high` or `critical`; default `high`).

use hookhost_sdk::email::{self, Message};
use hookhost_sdk::{config, format, Event, EventKind, Hook, HookError, Severity};

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
        let message = Message {
            to: list("to")?,
            cc: list("cc")?,
            subject: subject(&event),
            body: body(&event, severity),
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

/// `[ALERT] <what>: <table>[.<column>]`.
fn subject(event: &Event) -> String {
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

/// One `Name: value` line per field of the event's kind, then severity,
/// time and id.
fn body(event: &Event, severity: Severity) -> String {
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
