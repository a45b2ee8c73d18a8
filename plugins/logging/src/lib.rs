//! Built-in `logging` hook: writes every event to the host log as one
//! readable line, at the level set by the plugin's `level` setting
//! (`trace`, `debug`, `info`, `warn` or `error`; default `info`).
//!
//! ```text
//! DataDriftDetected orders.total_amount mean 100.00 -> 150.00 (+50.0%) severity=high id=3f2a… at 2025-01-15T10:30:00Z
//! hookhost.digest 14 events for orders: DataDriftDetected 10, SchemaChangeDetected 4; 3 suppressed severity=high id=digest-… at …
//! ```

use std::fmt::Display;

use hookhost_sdk::digest::Digest;
use hookhost_sdk::log::{self, Level};
use hookhost_sdk::{
    config, Anomaly, DataDrift, Event, EventKind, Hook, HookError, MetricValue, Retry,
    SchemaChange, SchemaChangeType, ValidationFailure,
};

/// Custom events have no typed fields, so their metadata is shown instead,
/// cut to this many bytes to keep the line readable.
const MAX_METADATA_LEN: usize = 200;

struct Logging;

impl Hook for Logging {
    fn handle(event: Event) -> Result<(), HookError> {
        // Read on every event rather than cached: one cheap host call, and a
        // bad value fails loudly on every event instead of once.
        let level = config::parse::<Level>("level")?.unwrap_or(Level::Info);
        log::log(level, &line(&event));
        Ok(())
    }
}

hookhost_sdk::export_hook!(Logging);

/// The whole log line: type, per-kind summary, then the envelope.
fn line(event: &Event) -> String {
    let summary = match Digest::from_event(event) {
        Some(digest) => digest_summary(&digest),
        None => summary(&event.kind, &event.metadata),
    };
    let mut line = format!("{} {summary}", event.event_type);
    if let Some(severity) = event.severity {
        line.push_str(&format!(" severity={severity}"));
    }
    line.push_str(&format!(" id={} at {}", event.id, event.timestamp));
    line
}

/// A digest (`group_by`): how many events, the group, the count per
/// type and the repeats suppressed before them.
fn digest_summary(digest: &Digest) -> String {
    let group: Vec<&str> = digest.group_values().collect();
    let group = if group.is_empty() {
        String::new()
    } else {
        format!(" for {}", group.join(", "))
    };
    let counts: Vec<String> = digest
        .counts
        .iter()
        .map(|(event_type, n)| format!("{event_type} {n}"))
        .collect();
    let suppressed = if digest.suppressed > 0 {
        format!("; {} suppressed", digest.suppressed)
    } else {
        String::new()
    };
    format!(
        "{}{group}: {}{suppressed}",
        hookhost_sdk::format::events(digest.count),
        counts.join(", ")
    )
}

fn summary(kind: &EventKind, metadata: &str) -> String {
    match kind {
        EventKind::ProfilingStarted(e) => format!("{} run={}", e.table, e.run_id),
        EventKind::ProfilingCompleted(e) => format!(
            "{} rows={} columns={} in {}s run={}",
            e.table,
            or_unknown(e.row_count),
            or_unknown(e.column_count),
            or_unknown(e.duration_seconds.map(|s| format!("{s:.1}"))),
            e.run_id
        ),
        EventKind::ProfilingFailed(e) => {
            format!("{} run={} error: {}", e.table, e.run_id, e.error)
        }
        EventKind::ProfilingSkipped(e) => {
            let schema = e
                .schema
                .as_deref()
                .map(|s| format!("{s}."))
                .unwrap_or_default();
            format!("{schema}{} {}: {}", e.table, e.action, e.reason)
        }
        EventKind::DataDriftDetected(e) => drift(e),
        EventKind::SchemaChangeDetected(e) => schema_change(e),
        EventKind::AnomalyDetected(e) => anomaly(e),
        EventKind::ValidationFailed(e) => validation(e),
        EventKind::QualityScoreDegraded(e) => format!(
            "{} score {} -> {} ({}) {} threshold",
            e.table,
            score(e.previous_score),
            score(e.current_score),
            or_unknown(e.score_change.map(|c| format!("{c:+.2}"))),
            e.threshold_type
        ),
        EventKind::QualityThresholdBreached(e) => format!(
            "{} score {} crossed {} threshold {}",
            e.table,
            score(e.current_score),
            e.threshold_type,
            score(e.threshold_value)
        ),
        EventKind::RetryAttempt(e) => {
            format!(
                "{} attempt {}: {}",
                e.function,
                or_unknown(e.attempts),
                retry_error(e)
            )
        }
        EventKind::RetryExhausted(e) => format!(
            "{} gave up after {} attempts: {}",
            e.function,
            or_unknown(e.attempts),
            retry_error(e)
        ),
        EventKind::Custom(_) => format!("custom metadata={}", truncate(metadata)),
    }
}

fn drift(e: &DataDrift) -> String {
    let change = e
        .change_percent
        .map(|p| format!(" ({p:+.1}%)"))
        .unwrap_or_default();
    format!(
        "{}.{} {} {} -> {}{change}",
        e.table,
        e.column,
        e.metric,
        value(&e.baseline_value),
        value(&e.current_value)
    )
}

fn schema_change(e: &SchemaChange) -> String {
    let column = e.column.as_deref().unwrap_or("?");
    let detail = match &e.change_type {
        SchemaChangeType::ColumnRenamed => {
            format!("{} -> {column}", or_unknown(e.old_column_name.as_ref()))
        }
        SchemaChangeType::TypeChanged => format!(
            "{column} {} -> {}",
            or_unknown(e.old_type.as_ref()),
            or_unknown(e.new_type.as_ref())
        ),
        SchemaChangeType::PartitionChanged => or_unknown(e.partition_info.as_ref()),
        SchemaChangeType::ColumnAdded
        | SchemaChangeType::ColumnRemoved
        | SchemaChangeType::Other(_) => match &e.new_type {
            Some(ty) => format!("{column} ({ty})"),
            None => column.to_string(),
        },
    };
    format!("{} {} {detail}", e.table, e.change_type)
}

fn anomaly(e: &Anomaly) -> String {
    format!(
        "{}.{} {} {} expected {} actual {} by {}",
        e.table,
        e.column,
        e.metric,
        e.anomaly_type,
        value(&e.expected_value),
        value(&e.actual_value),
        e.detection_method
    )
}

fn validation(e: &ValidationFailure) -> String {
    let target = match &e.column {
        Some(column) => format!("{}.{column}", e.table),
        None => e.table.clone(),
    };
    let rows = match (e.total_failures, e.total_rows) {
        (Some(failed), Some(total)) => format!(" ({failed}/{total} rows)"),
        (Some(failed), None) => format!(" ({failed} rows)"),
        _ => String::new(),
    };
    format!(
        "{target} {} failed: {}{rows}",
        e.rule_type, e.failure_reason
    )
}

fn retry_error(e: &Retry) -> String {
    format!("{}: {}", e.error_type, e.error)
}

/// A metric value: numbers with two decimals, text as is, `?` when missing.
fn value(v: &Option<MetricValue>) -> String {
    match v {
        Some(MetricValue::Number(n)) => format!("{n:.2}"),
        Some(MetricValue::Text(s)) => s.clone(),
        None => "?".to_string(),
    }
}

fn score(s: Option<f64>) -> String {
    or_unknown(s.map(|s| format!("{s:.2}")))
}

fn or_unknown(v: Option<impl Display>) -> String {
    v.map_or_else(|| "?".to_string(), |v| v.to_string())
}

fn truncate(text: &str) -> String {
    if text.len() <= MAX_METADATA_LEN {
        return text.to_string();
    }
    let mut end = MAX_METADATA_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookhost_sdk::Severity;

    #[test]
    fn drift_line_reads_well() {
        let event = Event {
            id: "e1".into(),
            event_type: "DataDriftDetected".into(),
            timestamp: "2025-01-15T10:30:00Z".into(),
            severity: Some(Severity::High),
            metadata: "{}".into(),
            kind: EventKind::DataDriftDetected(DataDrift {
                table: "orders".into(),
                column: "total_amount".into(),
                metric: "mean".into(),
                baseline_value: Some(MetricValue::Number(100.0)),
                current_value: Some(MetricValue::Number(150.0)),
                change_percent: Some(50.0),
                drift_severity: "high".into(),
                explanation: None,
            }),
        };
        assert_eq!(
            line(&event),
            "DataDriftDetected orders.total_amount mean 100.00 -> 150.00 (+50.0%) \
             severity=high id=e1 at 2025-01-15T10:30:00Z"
        );
    }

    #[test]
    fn a_digest_is_one_line_of_counts() {
        let metadata = r#"{"group": {"metadata.table": "orders"}, "count": 14,
            "counts": {"DataDriftDetected": 10, "SchemaChangeDetected": 4},
            "severity": "high", "suppressed": 3, "events": [], "omitted": 14}"#;
        let event = Event {
            id: "digest-1".into(),
            event_type: "hookhost.digest".into(),
            timestamp: "2025-01-15T10:30:00Z".into(),
            severity: Some(Severity::High),
            metadata: metadata.into(),
            kind: EventKind::Custom("hookhost.digest".into()),
        };
        assert_eq!(
            line(&event),
            "hookhost.digest 14 events for orders: DataDriftDetected 10, SchemaChangeDetected 4; \
             3 suppressed severity=high id=digest-1 at 2025-01-15T10:30:00Z"
        );
    }

    #[test]
    fn long_metadata_is_cut_on_a_char_boundary() {
        let text = "é".repeat(MAX_METADATA_LEN);
        let cut = truncate(&text);
        assert!(cut.len() <= MAX_METADATA_LEN + "…".len());
        assert!(cut.ends_with('…'));
    }
}
