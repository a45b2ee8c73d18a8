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
//! An alert that the host let through after suppressing repeats of it
//! (the plugin's `dedup_key`; `hookhost_sdk::delivery::suppressed`) gets
//! one more field after the others, `Suppressed`: `and N more like this
//! since the last alert`. Without repeats the payload is exactly as above.
//!
//! A digest (the one event the host delivers for a group of events when
//! the plugin has `group_by`) is posted as one message: `📋 *Digest: 14
//! events for `orders`*`, coloured by its highest severity, with the
//! events per type, the top 5 events in one line each, how many more there
//! are by severity, the suppressed repeats and the time. Digests are posted
//! whatever the `alert_on_*` switches and `min_severity` say: the
//! plugin's routing already chose their events, and a digest mixes types
//! and severities that the switches cannot split.
//!
//! Settings: `webhook_url` (required; grant its host in `http_allow`),
//! `channel`, `username` (default `hookhost`), `footer` (default
//! `hookhost`), `min_severity` (`low`, `medium` or `high`; default `low`),
//! `alert_on_drift`, `alert_on_schema_change`, `alert_on_profiling_failure`
//! (default `true`).

use hookhost_sdk::digest::{Digest, DigestItem};
use hookhost_sdk::{config, DataDrift, Event, EventKind, Hook, HookError, MetricValue, Severity};
use hookhost_sdk::{delivery, format, http};
use serde_json::{json, Map, Value};

/// How many of a digest's events it lists one per line: enough to see
/// what happened, few enough to read the message at a glance in a channel.
const TOP_ITEMS: usize = 5;

struct Slack;

impl Hook for Slack {
    fn handle(event: Event) -> Result<(), HookError> {
        let message = match Digest::from_event(&event) {
            Some(digest) => digest_message(&event, &digest),
            None => match alert(&event) {
                Some(alert) if wanted(&event)? => {
                    alert.with_suppressed(delivery::suppressed(&event))
                }
                _ => return Ok(()),
            },
        };
        let url = config::get("webhook_url")
            .ok_or_else(|| HookError::Permanent("setting `webhook_url` is not set".to_owned()))?;
        let payload = payload(message, &Sender::from_config());
        http::delivered(http::post_json(&url, &payload.to_string()), "Slack")?;
        Ok(())
    }
}

hookhost_sdk::export_hook!(Slack);

/// What one message says; [`payload`] dresses it with the settings every
/// message shares.
struct Message {
    text: String,
    color: &'static str,
    fields: Vec<Value>,
    /// What the footer names after its prefix (`Drift Detection`).
    kind: &'static str,
    /// The event's time, for the attachment's `ts`.
    timestamp: String,
}

impl Message {
    /// The alert with a last field for the repeats the host suppressed
    /// before it; unchanged when there were none.
    fn with_suppressed(mut self, suppressed: u32) -> Message {
        if suppressed > 0 {
            self.fields.push(suppressed_field(suppressed.into()));
        }
        self
    }
}

/// The settings that every message carries.
struct Sender {
    username: String,
    /// The footer's prefix: `<footer> Drift Detection`.
    footer: String,
    channel: Option<String>,
}

impl Sender {
    fn from_config() -> Sender {
        Sender {
            username: config::get_or("username", "hookhost"),
            footer: config::get_or("footer", "hookhost"),
            channel: config::get("channel"),
        }
    }
}

/// The webhook payload: keys in the order the Python hook writes them,
/// `channel` only when set.
fn payload(message: Message, sender: &Sender) -> Value {
    let mut payload = json!({
        "username": sender.username,
        "text": message.text,
        "attachments": [{
            "color": message.color,
            "fields": message.fields,
            "footer": format!("{} {}", sender.footer, message.kind),
            "ts": unix_seconds(&message.timestamp),
        }],
    });
    if let Some(channel) = &sender.channel {
        payload["channel"] = Value::String(channel.clone());
    }
    payload
}

/// Whether the settings let `event` through as an alert: its type's
/// `alert_on_*` switch, and for drift `min_severity`.
fn wanted(event: &Event) -> Result<bool, HookError> {
    Ok(match &event.kind {
        EventKind::DataDriftDetected(drift) => {
            switch("alert_on_drift")?
                && rank(&drift.drift_severity) >= rank(&config::get_or("min_severity", "low"))
        }
        EventKind::SchemaChangeDetected(_) => switch("alert_on_schema_change")?,
        EventKind::ProfilingFailed(_) => switch("alert_on_profiling_failure")?,
        _ => false,
    })
}

/// The alert for a single `event`, or `None` when its type is not one this
/// hook posts.
fn alert(event: &Event) -> Option<Message> {
    let (text, color, fields, kind) = match &event.kind {
        EventKind::DataDriftDetected(drift) => {
            let (text, color, fields) =
                drift_message(drift, &Metadata::of(event), &event.timestamp);
            (text, color, fields, "Drift Detection")
        }
        EventKind::SchemaChangeDetected(_) => {
            let (text, color, fields) = schema_message(&Metadata::of(event), &event.timestamp);
            (text, color, fields, "Schema Detection")
        }
        EventKind::ProfilingFailed(_) => {
            let (text, color, fields) = failure_message(&Metadata::of(event), &event.timestamp);
            (text, color, fields, "Profiling")
        }
        _ => return None,
    };
    Some(Message {
        text,
        color,
        fields,
        kind,
        timestamp: event.timestamp.clone(),
    })
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

/// `Suppressed`: `and N more like this since the last alert`, long.
fn suppressed_field(suppressed: u64) -> Value {
    field(
        "Suppressed",
        format!("and {}", format::suppressed(suppressed)),
        false,
    )
}

/// One message for a digest: the count and the group in the text, then the
/// events per type, the top events, the rest by severity, the suppressed
/// repeats and the time.
fn digest_message(event: &Event, digest: &Digest) -> Message {
    let values: Vec<String> = digest.group_values().map(|v| format!("`{v}`")).collect();
    let group = if values.is_empty() {
        String::new()
    } else {
        format!(" for {}", values.join(", "))
    };
    let text = format!("📋 *Digest: {}{group}*", format::events(digest.count));
    let counts: Vec<String> = digest.count_lines().collect();
    let mut fields = vec![field("Events", counts.join("\n"), false)];
    let top = digest.top(TOP_ITEMS);
    if !top.is_empty() {
        let items: Vec<String> = top.iter().map(item_line).collect();
        fields.push(field("Top items", items.join("\n"), false));
    }
    if let Some(more) = digest.more(TOP_ITEMS) {
        fields.push(field("More", more, false));
    }
    if digest.suppressed > 0 {
        fields.push(suppressed_field(digest.suppressed));
    }
    fields.push(field(
        "Timestamp",
        format::timestamp(&event.timestamp),
        true,
    ));
    Message {
        text,
        color: digest_color(digest.severity),
        fields,
        kind: "Digest",
        timestamp: event.timestamp.clone(),
    }
}

/// A digest's colour by its highest severity, on the drift alerts' scale
/// (critical counts as high, info and none as low).
fn digest_color(severity: Option<Severity>) -> &'static str {
    match severity {
        Some(Severity::Critical | Severity::High) => "#FF0000",
        Some(Severity::Medium) => "#FF8C00",
        _ => "#FFA500",
    }
}

/// An event of a digest in one line, with the drift alerts' emoji for its
/// severity: `🚨 HIGH DataDriftDetected orders.amount mean +50.0%`.
fn item_line(item: &DigestItem) -> String {
    let Some(word) = &item.severity else {
        return format!("• {}", item.summary());
    };
    let emoji = match word.to_lowercase().as_str() {
        "critical" | "high" => "🚨",
        "medium" => "🔶",
        "low" => "⚠️",
        _ => "ℹ️",
    };
    format!("{emoji} {} {}", word.to_uppercase(), item.summary())
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
    use hookhost_sdk::digest;

    fn sender() -> Sender {
        Sender {
            username: "hookhost".to_owned(),
            footer: "hookhost".to_owned(),
            channel: None,
        }
    }

    /// The reference drift event: orders.total_amount, mean 100 -> 150.
    fn drift_event() -> Event {
        let metadata = r#"{"table": "orders", "column": "total_amount", "metric": "mean", "baseline_value": 100.0, "current_value": 150.0, "change_percent": 50.0, "drift_severity": "high"}"#;
        Event {
            id: "e1".to_owned(),
            event_type: "DataDriftDetected".to_owned(),
            timestamp: "2025-01-15T10:30:00.123456Z".to_owned(),
            severity: Some(Severity::High),
            metadata: metadata.to_owned(),
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

    /// The payload of `shared/reference/slack-messages.md` for the drift
    /// event, byte for byte.
    const DRIFT_PAYLOAD: &str = concat!(
        r##"{"username":"hookhost","text":"🚨 *Data Drift Detected*","attachments":[{"color":"#FF0000","fields":["##,
        r##"{"title":"Severity","value":"HIGH","short":true},"##,
        r##"{"title":"Table","value":"`orders`","short":true},"##,
        r##"{"title":"Column","value":"`total_amount`","short":true},"##,
        r##"{"title":"Metric","value":"mean","short":true},"##,
        r##"{"title":"Baseline Value","value":"100.00","short":true},"##,
        r##"{"title":"Current Value","value":"150.00","short":true},"##,
        r##"{"title":"Change","value":"+50.0%","short":true},"##,
        r##"{"title":"Timestamp","value":"2025-01-15 10:30:00 UTC","short":true}"##,
        r##"],"footer":"hookhost Drift Detection","ts":1736937000}]}"##,
    );

    fn drift_payload(suppressed: u32) -> String {
        let alert = alert(&drift_event()).expect("drift is posted");
        payload(alert.with_suppressed(suppressed), &sender()).to_string()
    }

    #[test]
    fn an_alert_without_repeats_is_the_reference_payload() {
        assert_eq!(drift_payload(0), DRIFT_PAYLOAD);
    }

    #[test]
    fn an_alert_after_repeats_ends_with_a_suppressed_field() {
        for (n, value) in [
            (1, "and 1 more like this since the last alert"),
            (12, "and 12 more like this since the last alert"),
        ] {
            let suppressed =
                format!(r#",{{"title":"Suppressed","value":"{value}","short":false}}]"#);
            let expected = DRIFT_PAYLOAD.replacen(
                r#"UTC","short":true}]"#,
                &format!(r#"UTC","short":true}}{suppressed}"#),
                1,
            );
            assert_eq!(drift_payload(n), expected);
        }
    }

    #[test]
    fn the_channel_comes_last_when_set() {
        let alert = alert(&drift_event()).expect("drift is posted");
        let sender = Sender {
            channel: Some("#data-alerts".to_owned()),
            ..sender()
        };
        let payload = payload(alert, &sender).to_string();
        assert!(
            payload.ends_with(r##"}],"channel":"#data-alerts"}"##),
            "{payload}"
        );
    }

    fn digest_event(metadata: Value) -> Event {
        Event {
            id: "digest-0123456789abcdef0123456789abcdef".to_owned(),
            event_type: digest::EVENT_TYPE.to_owned(),
            timestamp: "2025-03-04T02:05:30Z".to_owned(),
            severity: None,
            metadata: metadata.to_string(),
            kind: EventKind::Custom(digest::EVENT_TYPE.to_owned()),
        }
    }

    /// A digest of 14 events on `orders`: 10 drifts, 4 schema changes; 2
    /// high, 12 low; 6 listed, 3 repeats suppressed before them.
    fn orders_digest() -> Event {
        let drift = |id: &str, column: &str, severity: &str, change: f64| {
            json!({"event_id": id, "event_type": "DataDriftDetected",
                   "timestamp": "2025-03-04T02:00:00Z", "severity": severity,
                   "metadata": {"table": "orders", "column": column, "metric": "mean",
                                "change_percent": change, "drift_severity": severity}})
        };
        let schema = json!({"event_id": "s1", "event_type": "SchemaChangeDetected",
                            "timestamp": "2025-03-04T02:01:00Z", "severity": "low",
                            "metadata": {"table": "orders", "column": "note",
                                         "change_type": "column_added"}});
        digest_event(json!({
            "group": {"metadata.table": "orders"},
            "table": "orders",
            "count": 14,
            "counts": {"DataDriftDetected": 10, "SchemaChangeDetected": 4},
            "severity": "high",
            "severities": {"high": 2, "low": 12},
            "suppressed": 3,
            "first_timestamp": "2025-03-04T02:00:00Z",
            "last_timestamp": "2025-03-04T02:05:00Z",
            "events": [
                drift("d1", "amount", "high", 50.0),
                drift("d2", "tax", "high", -20.0),
                schema,
                drift("d3", "qty", "low", 5.0),
                drift("d4", "price", "low", 1.5),
                drift("d5", "discount", "low", 2.0)
            ],
            "omitted": 8
        }))
    }

    fn digest_payload(event: &Event) -> Value {
        let digest = Digest::from_event(event).expect("a digest");
        payload(digest_message(event, &digest), &sender())
    }

    #[test]
    fn a_digest_is_one_message() {
        let expected = json!({
            "username": "hookhost",
            "text": "📋 *Digest: 14 events for `orders`*",
            "attachments": [{
                "color": "#FF0000",
                "fields": [
                    {"title": "Events", "value": "DataDriftDetected: 10\nSchemaChangeDetected: 4", "short": false},
                    {"title": "Top items", "value": concat!(
                        "🚨 HIGH DataDriftDetected orders.amount mean +50.0%\n",
                        "🚨 HIGH DataDriftDetected orders.tax mean -20.0%\n",
                        "⚠️ LOW SchemaChangeDetected orders.note column_added\n",
                        "⚠️ LOW DataDriftDetected orders.qty mean +5.0%\n",
                        "⚠️ LOW DataDriftDetected orders.price mean +1.5%"), "short": false},
                    {"title": "More", "value": "and 9 more (9 low)", "short": false},
                    {"title": "Suppressed", "value": "and 3 more like this since the last alert", "short": false},
                    {"title": "Timestamp", "value": "2025-03-04 02:05:30 UTC", "short": true}
                ],
                "footer": "hookhost Digest",
                "ts": 1741053930
            }]
        });
        assert_eq!(digest_payload(&orders_digest()), expected);
    }

    #[test]
    fn a_small_digest_has_no_more_and_no_suppressed_field() {
        let event = digest_event(json!({
            "group": {"metadata.table": "", "event_type": ""},
            "count": 1,
            "counts": {"ProfilingCompleted": 1},
            "severity": null,
            "severities": {"none": 1},
            "suppressed": 0,
            "events": [{"event_id": "p1", "event_type": "ProfilingCompleted",
                        "timestamp": "2025-03-04T02:00:00Z", "metadata": {"table": "orders"}}],
            "omitted": 0
        }));
        let payload = digest_payload(&event);
        assert_eq!(payload["text"], "📋 *Digest: 1 event*");
        assert_eq!(payload["attachments"][0]["color"], "#FFA500");
        let titles: Vec<&str> = payload["attachments"][0]["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .filter_map(|field| field["title"].as_str())
            .collect();
        assert_eq!(titles, ["Events", "Top items", "Timestamp"]);
        assert_eq!(
            payload["attachments"][0]["fields"][1]["value"],
            "• ProfilingCompleted orders"
        );
    }

    #[test]
    fn a_digest_names_every_group_value_and_colours_by_severity() {
        let event = digest_event(json!({
            "group": {"metadata.table": "orders", "severity": "medium"},
            "count": 2,
            "severity": "medium"
        }));
        let payload = digest_payload(&event);
        assert_eq!(
            payload["text"],
            "📋 *Digest: 2 events for `orders`, `medium`*"
        );
        assert_eq!(payload["attachments"][0]["color"], "#FF8C00");
        assert_eq!(digest_color(Some(Severity::Critical)), "#FF0000");
        assert_eq!(digest_color(Some(Severity::Info)), "#FFA500");
    }

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
