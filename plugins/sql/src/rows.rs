//! One event as a row of the events table.

use hookhost_sdk::sql::Value;
use hookhost_sdk::{Event, EventKind, MetricValue};

/// The columns written, in order (`created_at` takes its default).
pub const COLUMNS: [&str; 12] = [
    "event_id",
    "event_type",
    "run_id",
    "table_name",
    "column_name",
    "metric_name",
    "baseline_value",
    "current_value",
    "change_percent",
    "drift_severity",
    "timestamp",
    "metadata",
];

/// The values of one row.
pub struct Row {
    event_id: String,
    event_type: String,
    run_id: Option<String>,
    table_name: Option<String>,
    column_name: Option<String>,
    metric_name: Option<String>,
    baseline_value: Option<f64>,
    current_value: Option<f64>,
    change_percent: Option<f64>,
    drift_severity: Option<String>,
    timestamp: String,
    metadata: String,
}

impl Row {
    /// The row for `event`: the typed fields where the kind has them, the
    /// metadata's `run_id`, `table` and `column` otherwise.
    pub fn of(event: &Event) -> Row {
        let metadata: serde_json::Value =
            serde_json::from_str(&event.metadata).unwrap_or(serde_json::Value::Null);
        let meta = |key: &str| {
            metadata
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        // NaN and infinities stay in `metadata`: MySQL has no column for them.
        let number = |v: &Option<MetricValue>| {
            v.as_ref()
                .and_then(MetricValue::as_number)
                .filter(|x| x.is_finite())
        };
        let mut row = Row {
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            run_id: meta("run_id"),
            table_name: event.kind.table().and_then(text).or_else(|| meta("table")),
            column_name: meta("column"),
            metric_name: None,
            baseline_value: None,
            current_value: None,
            change_percent: None,
            drift_severity: None,
            timestamp: sql_timestamp(&event.timestamp),
            metadata: event.metadata.clone(),
        };
        match &event.kind {
            EventKind::ProfilingStarted(e) => row.run_id = text(&e.run_id),
            EventKind::ProfilingCompleted(e) => row.run_id = text(&e.run_id),
            EventKind::ProfilingFailed(e) => row.run_id = text(&e.run_id),
            EventKind::DataDriftDetected(drift) => {
                row.column_name = text(&drift.column);
                row.metric_name = text(&drift.metric);
                row.baseline_value = number(&drift.baseline_value);
                row.current_value = number(&drift.current_value);
                row.change_percent = drift.change_percent.filter(|x| x.is_finite());
                row.drift_severity = text(&drift.drift_severity);
            }
            EventKind::SchemaChangeDetected(change) => {
                row.column_name = change.column.clone();
                row.drift_severity = change.change_severity.clone();
            }
            EventKind::AnomalyDetected(anomaly) => {
                row.column_name = text(&anomaly.column);
                row.metric_name = text(&anomaly.metric);
                row.baseline_value = number(&anomaly.expected_value);
                row.current_value = number(&anomaly.actual_value);
                row.drift_severity = text(&anomaly.severity);
            }
            EventKind::ValidationFailed(failure) => {
                row.column_name = failure.column.clone();
                row.drift_severity = text(&failure.severity);
            }
            _ => {}
        }
        row
    }

    /// The value of `column` (one of [`COLUMNS`]).
    pub fn value(&self, column: &str) -> Value {
        match column {
            "event_id" => Value::Text(self.event_id.clone()),
            "event_type" => Value::Text(self.event_type.clone()),
            "run_id" => self.run_id.clone().into(),
            "table_name" => self.table_name.clone().into(),
            "column_name" => self.column_name.clone().into(),
            "metric_name" => self.metric_name.clone().into(),
            "baseline_value" => self.baseline_value.into(),
            "current_value" => self.current_value.into(),
            "change_percent" => self.change_percent.into(),
            "drift_severity" => self.drift_severity.clone().into(),
            "timestamp" => Value::Text(self.timestamp.clone()),
            "metadata" => Value::Text(self.metadata.clone()),
            other => unreachable!("no column {other}"),
        }
    }
}

/// An RFC 3339 timestamp as a UTC `YYYY-MM-DD HH:MM:SS.ffffff`, which all
/// three databases read as a timestamp; anything else as it is.
fn sql_timestamp(timestamp: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(timestamp).map_or_else(
        |_| timestamp.to_owned(),
        |time| {
            time.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S%.6f")
                .to_string()
        },
    )
}
