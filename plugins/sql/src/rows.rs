//! One event as a row of the events table.
//!
//! The Python profilers' SQL hook fills every shared column from the
//! event's metadata (`metadata.get("table")`, `metadata.get("drift_severity")`,
//! ...), whatever the event type, so each event type fills exactly the
//! columns its metadata has keys for: `drift_severity` only drift events
//! (their `drift_severity`), `baseline_value` only drift events, anomalies
//! `metric_name` and `current_value` (their detector's `current_value`) but
//! not `baseline_value`, and so on. This module does the same. hookhost adds
//! one column of its own, `severity`, that the Python table lacks.

use hookhost_sdk::sql::{Dialect, Value};
use hookhost_sdk::Event;
use serde_json::{Map, Value as Json};

/// The columns both hookhost and the Python hook write, in order
/// (`created_at` takes its default).
pub const SHARED_COLUMNS: [&str; 12] = [
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

/// The column only hookhost writes: the event's severity, normalised.
pub const SEVERITY: &str = "severity";

/// The values of one row.
pub struct Row {
    event_id: String,
    event_type: String,
    run_id: Option<String>,
    table_name: Option<String>,
    column_name: Option<String>,
    metric_name: Option<String>,
    baseline_value: Value,
    current_value: Value,
    change_percent: Value,
    drift_severity: Option<String>,
    timestamp: String,
    metadata: String,
    severity: Option<String>,
}

impl Row {
    /// The row for `event` in a `dialect` database, the shared columns read
    /// from its metadata as the Python hook reads them.
    pub fn of(event: &Event, dialect: Dialect) -> Row {
        let metadata = match serde_json::from_str(&event.metadata) {
            Ok(Json::Object(map)) => map,
            _ => Map::new(),
        };
        let text = |key: &str| metadata.get(key).and_then(text);
        let number = |key: &str| {
            metadata
                .get(key)
                .map_or(Value::Null, |v| number(v, dialect))
        };
        Row {
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            run_id: text("run_id"),
            table_name: text("table"),
            column_name: text("column"),
            metric_name: text("metric"),
            baseline_value: number("baseline_value"),
            current_value: number("current_value"),
            change_percent: number("change_percent"),
            drift_severity: text("drift_severity"),
            timestamp: sql_timestamp(&event.timestamp),
            metadata: event.metadata.clone(),
            severity: event.severity.map(|s| s.as_str().to_owned()),
        }
    }

    /// The value of `column` (one of [`SHARED_COLUMNS`] or [`SEVERITY`]).
    pub fn value(&self, column: &str) -> Value {
        match column {
            "event_id" => Value::Text(self.event_id.clone()),
            "event_type" => Value::Text(self.event_type.clone()),
            "run_id" => self.run_id.clone().into(),
            "table_name" => self.table_name.clone().into(),
            "column_name" => self.column_name.clone().into(),
            "metric_name" => self.metric_name.clone().into(),
            "baseline_value" => self.baseline_value.clone(),
            "current_value" => self.current_value.clone(),
            "change_percent" => self.change_percent.clone(),
            "drift_severity" => self.drift_severity.clone().into(),
            "timestamp" => Value::Text(self.timestamp.clone()),
            "metadata" => Value::Text(self.metadata.clone()),
            "severity" => self.severity.clone().into(),
            other => unreachable!("no column {other}"),
        }
    }
}

/// A text column's value: a string as is (empty included, as Python binds
/// it), a number as its digits (what SQLite stores for a Python number in a
/// text column); `null` and anything else (objects, arrays, booleans) are
/// left empty, the value staying in `metadata`.
fn text(value: &Json) -> Option<String> {
    match value {
        Json::String(text) => Some(text.clone()),
        Json::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// A float column's value: a finite number. Text is bound as text on
/// SQLite, whose REAL affinity stores it as the Python hook's row has it (a
/// number when it reads as one, `US` as `US`); elsewhere a number when it
/// reads as one, else empty (where the Python hook's insert would fail).
/// NaN and the infinities (also as the strings `NaN`, `Infinity`,
/// `-Infinity`, which is how the host reads Python's bare ones) are left
/// empty, as SQLite stores a NaN as NULL and MySQL has no value for them;
/// everything stays in `metadata`.
fn number(value: &Json, dialect: Dialect) -> Value {
    let finite = |x: f64| {
        if x.is_finite() {
            Value::Float(x)
        } else {
            Value::Null
        }
    };
    match value {
        Json::Number(number) => number.as_f64().map_or(Value::Null, finite),
        Json::String(text) if matches!(text.as_str(), "NaN" | "Infinity" | "-Infinity") => {
            Value::Null
        }
        Json::String(text) => match (text.trim().parse::<f64>(), dialect) {
            (_, Dialect::Sqlite) => Value::Text(text.clone()),
            (Ok(x), _) => finite(x),
            (Err(_), _) => Value::Null,
        },
        _ => Value::Null,
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
