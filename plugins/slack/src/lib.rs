//! Built-in `slack` hook: posts the alerts data teams already get from the
//! Python profilers' Slack hook, field for field (see the README and
//! `shared/reference/slack-messages.md`), to a Slack incoming webhook: data
//! drift (filtered by severity), schema changes and profiling failures.
//! Every other event is ignored.
//!
//! The fields are written the way the Python hook writes them, from the
//! values the profiler sent (the event's metadata), in every spelling a
//! profiler uses: a missing text shows as `None`, a change type is
//! title-cased the way Python's `str.title()` does it (`Column added` and
//! `column_added` both show as `Column Added`), a non-finite number shows as
//! `nan` or `inf`. Where hookhost deliberately differs (an absent change
//! shows as `N/A` instead of the message being lost; severity words match
//! in any case; a timestamp with an offset is shown in UTC), the README's
//! compatibility section says so.
//!
//! A 429 or 5xx answer from Slack, a timeout and a failed connection are
//! retryable, any other non-2xx answer permanent; a 429's or 503's
//! `Retry-After` is passed on to the host (see
//! `hookhost_sdk::http::delivered`), so the retry waits as long as Slack
//! asks.
//!
//! Settings: `webhook_url` (required; grant its host in `http_allow`),
//! `channel`, `username` (default `hookhost`), `footer` (default
//! `hookhost`), `min_severity` (`low`, `medium` or `high`; default `low`),
//! `alert_on_drift`, `alert_on_schema_change`, `alert_on_profiling_failure`
//! (default `true`).

use hookhost_sdk::{config, DataDrift, Event, EventKind, Hook, HookError, MetricValue};
use hookhost_sdk::{format, http};
use serde_json::{json, Map, Value};

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
            let metadata = Metadata::of(event);
            let (text, color, fields) = drift_message(drift, &metadata, &event.timestamp);
            (text, color, fields, "Drift Detection")
        }
        EventKind::SchemaChangeDetected(_) if switch("alert_on_schema_change")? => {
            let (text, color, fields) = schema_message(&Metadata::of(event), &event.timestamp);
            (text, color, fields, "Schema Detection")
        }
        EventKind::ProfilingFailed(_) if switch("alert_on_profiling_failure")? => {
            let (text, color, fields) = failure_message(&Metadata::of(event), &event.timestamp);
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

/// low=1, medium=2, high=3, anything else 0; in any case (`High` is
/// `high`).
fn rank(severity: &str) -> u8 {
    match severity.to_lowercase().as_str() {
        "low" => 1,
        "medium" => 2,
        "high" => 3,
        _ => 0,
    }
}

/// The event's metadata object, as the profiler sent it: the values the
/// Python hook reads through the event's attributes.
struct Metadata(Map<String, Value>);

impl Metadata {
    fn of(event: &Event) -> Metadata {
        match serde_json::from_str(&event.metadata) {
            Ok(Value::Object(map)) => Metadata(map),
            _ => Metadata(Map::new()),
        }
    }

    /// The value of `key` as JSON (`null` when absent), for fields the
    /// Python hook copies into the payload unformatted.
    fn raw(&self, key: &str) -> Value {
        self.0.get(key).cloned().unwrap_or(Value::Null)
    }

    /// The value of `key` as Python's `str()` shows it in an f-string.
    fn text(&self, key: &str) -> String {
        python_str(self.0.get(key).unwrap_or(&Value::Null))
    }

    /// The value of `key` in backticks, as the Python hook shows names.
    fn ticked(&self, key: &str) -> String {
        format!("`{}`", self.text(key))
    }
}

/// Python's `str()` of a JSON value: text as is, `null` as `None`, booleans
/// as `True`/`False`, numbers as written, anything else as its JSON text.
fn python_str(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        other => other.to_string(),
    }
}

/// Python's `f"{x:.N}f"`: Rust rounds the same way; only the names of the
/// non-finite values differ.
fn python_fixed(x: f64, decimals: usize) -> String {
    if x.is_nan() {
        "nan".to_owned()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{x:.decimals$}")
    }
}

/// A baseline or current value: numbers (and booleans, which Python counts
/// as numbers) with two decimals, anything else as Python's `str()`.
fn metric_value(typed: &Option<MetricValue>, raw: &Value) -> String {
    match (typed, raw) {
        (_, Value::Bool(b)) => python_fixed(f64::from(u8::from(*b)), 2),
        (Some(MetricValue::Number(n)), _) => python_fixed(*n, 2),
        _ => python_str(raw),
    }
}

/// The change in percent: `+` when it is not negative (so a negative zero
/// shows as `+-0.0%`, as in Python), one decimal, `N/A` when absent.
fn change(change: Option<f64>) -> String {
    match change {
        None => "N/A".to_owned(),
        Some(c) => {
            let sign = if c >= 0.0 { "+" } else { "" };
            format!("{sign}{}%", python_fixed(c, 1))
        }
    }
}

/// Python's `str.title()`: a cased letter after an uncased character (or at
/// the start) is upper case, every other cased letter lower case.
fn python_title(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut previous_cased = false;
    for c in text.chars() {
        let cased = c.is_uppercase() || c.is_lowercase();
        if cased && !previous_cased {
            out.extend(c.to_uppercase());
        } else if cased {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
        previous_cased = cased;
    }
    out
}

fn field(title: &str, value: impl Into<Value>, short: bool) -> Value {
    json!({"title": title, "value": value.into(), "short": short})
}

fn drift_message(
    drift: &DataDrift,
    metadata: &Metadata,
    timestamp: &str,
) -> (String, &'static str, Vec<Value>) {
    let (emoji, color) = match drift.drift_severity.to_lowercase().as_str() {
        "medium" => ("🔶", "#FF8C00"),
        "high" => ("🚨", "#FF0000"),
        _ => ("⚠️", "#FFA500"),
    };
    let fields = vec![
        field("Severity", drift.drift_severity.to_uppercase(), true),
        field("Table", metadata.ticked("table"), true),
        field("Column", metadata.ticked("column"), true),
        field("Metric", metadata.raw("metric"), true),
        field(
            "Baseline Value",
            metric_value(&drift.baseline_value, &metadata.raw("baseline_value")),
            true,
        ),
        field(
            "Current Value",
            metric_value(&drift.current_value, &metadata.raw("current_value")),
            true,
        ),
        field("Change", change(drift.change_percent), true),
        field("Timestamp", format::timestamp(timestamp), true),
    ];
    (format!("{emoji} *Data Drift Detected*"), color, fields)
}

fn schema_message(metadata: &Metadata, timestamp: &str) -> (String, &'static str, Vec<Value>) {
    // The emoji and the description go by the change type exactly as sent,
    // as in the Python hook: `Column added` is not `column_added` there.
    let change_type = metadata.text("change_type");
    let emoji = match change_type.as_str() {
        "column_added" => "➕",
        "column_removed" => "➖",
        _ => "🔄",
    };
    let column = metadata.ticked("column");
    let description = match change_type.as_str() {
        "type_changed" => format!(
            "Column {column} type changed from {} to {}",
            metadata.ticked("old_type"),
            metadata.ticked("new_type")
        ),
        "column_added" => format!("Column {column} was added"),
        "column_removed" => format!("Column {column} was removed"),
        other => format!("Schema change: {other}"),
    };
    let fields = vec![
        field("Table", metadata.ticked("table"), true),
        field(
            "Change Type",
            python_title(&change_type.replace('_', " ")),
            true,
        ),
        field("Description", description, false),
        field("Timestamp", format::timestamp(timestamp), true),
    ];
    (
        format!("{emoji} *Schema Change Detected*"),
        "#36a64f",
        fields,
    )
}

fn failure_message(metadata: &Metadata, timestamp: &str) -> (String, &'static str, Vec<Value>) {
    let fields = vec![
        field("Table", metadata.ticked("table"), true),
        field("Run ID", metadata.raw("run_id"), true),
        field("Error", format!("```{}```", metadata.text("error")), false),
        field("Timestamp", format::timestamp(timestamp), true),
    ];
    ("❌ *Profiling Failed*".to_owned(), "#FF0000", fields)
}

/// Whole Unix seconds, truncated toward zero as Python's `int()` does
/// (chrono's seconds round down, which differs before 1970).
fn unix_seconds(timestamp: &str) -> i64 {
    format::parse_timestamp(timestamp).map_or(0, |t| {
        let seconds = t.timestamp();
        if seconds < 0 && t.timestamp_subsec_nanos() > 0 {
            seconds + 1
        } else {
            seconds
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_types_title_case_like_python() {
        for spelling in [
            "column_added",
            "Column added",
            "Column Added",
            "column added",
            "COLUMN_ADDED",
        ] {
            assert_eq!(python_title(&spelling.replace('_', " ")), "Column Added");
        }
        assert_eq!(python_title("type changed"), "Type Changed");
        assert_eq!(python_title("v2x"), "V2X");
    }

    #[test]
    fn numbers_format_like_python() {
        assert_eq!(change(Some(50.0)), "+50.0%");
        assert_eq!(change(Some(-1.0)), "-1.0%");
        assert_eq!(change(Some(0.0)), "+0.0%");
        assert_eq!(change(Some(-0.0)), "+-0.0%");
        assert_eq!(change(Some(-0.04)), "-0.0%");
        assert_eq!(change(Some(f64::NAN)), "nan%");
        assert_eq!(change(Some(f64::INFINITY)), "+inf%");
        assert_eq!(change(None), "N/A");
        assert_eq!(python_fixed(0.125, 2), "0.12");
        assert_eq!(python_fixed(2.675, 2), "2.67");
        assert_eq!(metric_value(&None, &Value::Null), "None");
        assert_eq!(metric_value(&None, &Value::Bool(true)), "1.00");
    }

    #[test]
    fn severity_words_rank_in_any_case() {
        assert_eq!(rank("high"), 3);
        assert_eq!(rank("High"), 3);
        assert_eq!(rank("MEDIUM"), 2);
        assert_eq!(rank("none"), 0);
    }

    #[test]
    fn times_truncate_toward_zero() {
        assert_eq!(unix_seconds("1970-01-01T00:00:01.9Z"), 1);
        assert_eq!(unix_seconds("1969-12-31T23:59:58.5Z"), -1);
    }
}
