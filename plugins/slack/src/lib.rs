//! Built-in `slack` hook: posts the alerts data teams already get from the
//! Python profilers' Slack hook, field for field (see the README), to a
//! Slack incoming webhook: data drift (filtered by severity), schema changes
//! and profiling failures. Every other event is ignored.
//!
//! Settings: `webhook_url` (required; grant its host in `http_allow`),
//! `channel`, `username` (default `hookhost`), `footer` (default
//! `hookhost`), `min_severity` (`low`, `medium` or `high`; default `low`),
//! `alert_on_drift`, `alert_on_schema_change`, `alert_on_profiling_failure`
//! (default `true`).

use hookhost_sdk::{
    config, DataDrift, Event, EventKind, Hook, HookError, ProfilingFailed, SchemaChange,
};
use hookhost_sdk::{format, http};
use serde_json::{json, Value};

struct Slack;

impl Hook for Slack {
    fn handle(event: Event) -> Result<(), HookError> {
        let Some(payload) = message(&event)? else {
            return Ok(());
        };
        let url = config::get("webhook_url")
            .ok_or_else(|| HookError::Permanent("setting `webhook_url` is not set".to_owned()))?;
        http::delivered(http::post_json(&url, &payload.to_string()), "Slack")?;
        Ok(())
    }
}

hookhost_sdk::export_hook!(Slack);

/// The webhook payload for `event`, or `None` when it sends no message.
fn message(event: &Event) -> Result<Option<Value>, HookError> {
    let (text, color, fields, kind) = match &event.kind {
        EventKind::DataDriftDetected(drift) if switch("alert_on_drift")? => {
            let min = config::get_or("min_severity", "low");
            if rank(&drift.drift_severity) < rank(&min) {
                return Ok(None);
            }
            let (text, color, fields) = drift_message(drift, &event.timestamp);
            (text, color, fields, "Drift Detection")
        }
        EventKind::SchemaChangeDetected(change) if switch("alert_on_schema_change")? => {
            let (text, color, fields) = schema_message(change, &event.timestamp);
            (text, color, fields, "Schema Detection")
        }
        EventKind::ProfilingFailed(failure) if switch("alert_on_profiling_failure")? => {
            let (text, color, fields) = failure_message(failure, &event.timestamp);
            (text, color, fields, "Profiling")
        }
        _ => return Ok(None),
    };
    let footer = format!("{} {kind}", config::get_or("footer", "hookhost"));
    let mut payload = json!({
        "username": config::get_or("username", "hookhost"),
        "text": text,
        "attachments": [{
            "color": color,
            "fields": fields,
            "footer": footer,
            "ts": unix_seconds(&event.timestamp),
        }],
    });
    if let Some(channel) = config::get("channel") {
        payload["channel"] = Value::String(channel);
    }
    Ok(Some(payload))
}

/// A boolean setting, `true` unless set otherwise.
fn switch(key: &str) -> Result<bool, HookError> {
    Ok(config::parse::<bool>(key)?.unwrap_or(true))
}

/// low=1, medium=2, high=3, anything else 0.
fn rank(severity: &str) -> u8 {
    match severity.to_ascii_lowercase().as_str() {
        "low" => 1,
        "medium" => 2,
        "high" => 3,
        _ => 0,
    }
}

fn field(title: &str, value: String, short: bool) -> Value {
    json!({"title": title, "value": value, "short": short})
}

fn ticks(name: &str) -> String {
    format!("`{name}`")
}

fn drift_message(drift: &DataDrift, timestamp: &str) -> (String, &'static str, Vec<Value>) {
    let severity = drift.drift_severity.to_ascii_lowercase();
    let (emoji, color) = match severity.as_str() {
        "medium" => ("🔶", "#FF8C00"),
        "high" => ("🚨", "#FF0000"),
        _ => ("⚠️", "#FFA500"),
    };
    let fields = vec![
        field("Severity", drift.drift_severity.to_uppercase(), true),
        field("Table", ticks(&drift.table), true),
        field("Column", ticks(&drift.column), true),
        field("Metric", drift.metric.clone(), true),
        field(
            "Baseline Value",
            format::metric(&drift.baseline_value),
            true,
        ),
        field("Current Value", format::metric(&drift.current_value), true),
        field("Change", format::change(drift.change_percent), true),
        field("Timestamp", format::timestamp(timestamp), true),
    ];
    (format!("{emoji} *Data Drift Detected*"), color, fields)
}

fn schema_message(change: &SchemaChange, timestamp: &str) -> (String, &'static str, Vec<Value>) {
    let change_type = change.change_type.as_str();
    let emoji = match change_type {
        "column_added" => "➕",
        "column_removed" => "➖",
        _ => "🔄",
    };
    let column = ticks(change.column.as_deref().unwrap_or(""));
    let description = match change_type {
        "type_changed" => format!(
            "Column {column} type changed from {} to {}",
            ticks(change.old_type.as_deref().unwrap_or("")),
            ticks(change.new_type.as_deref().unwrap_or(""))
        ),
        "column_added" => format!("Column {column} was added"),
        "column_removed" => format!("Column {column} was removed"),
        other => format!("Schema change: {other}"),
    };
    let fields = vec![
        field("Table", ticks(&change.table), true),
        field("Change Type", title_case(change_type), true),
        field("Description", description, false),
        field("Timestamp", format::timestamp(timestamp), true),
    ];
    (
        format!("{emoji} *Schema Change Detected*"),
        "#36a64f",
        fields,
    )
}

fn failure_message(
    failure: &ProfilingFailed,
    timestamp: &str,
) -> (String, &'static str, Vec<Value>) {
    let fields = vec![
        field("Table", ticks(&failure.table), true),
        field("Run ID", failure.run_id.clone(), true),
        field("Error", format!("```{}```", failure.error), false),
        field("Timestamp", format::timestamp(timestamp), true),
    ];
    ("❌ *Profiling Failed*".to_owned(), "#FF0000", fields)
}

/// `column_added` -> `Column Added`.
fn title_case(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<String>>()
        .join(" ")
}

/// Whole Unix seconds, truncated.
fn unix_seconds(timestamp: &str) -> i64 {
    format::parse_timestamp(timestamp).map_or(0, |t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_and_times() {
        assert_eq!(title_case("column_added"), "Column Added");
        assert_eq!(unix_seconds("1970-01-01T00:00:01.9Z"), 1);
    }
}
