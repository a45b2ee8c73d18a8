//! The digest event, read into typed fields: what a single-event hook
//! receives in place of a group of events when its plugin's `group_by`
//! gathers them (see the README's "Grouping into digests"), and the lines
//! the built-in hooks write about it.
//!
//! ```no_run
//! use hookhost_sdk::digest::Digest;
//! use hookhost_sdk::{format, log, Event, Hook, HookError};
//!
//! struct Notify;
//!
//! impl Hook for Notify {
//!     fn handle(event: Event) -> Result<(), HookError> {
//!         let Some(digest) = Digest::from_event(&event) else {
//!             return Ok(()); // a single event
//!         };
//!         log::info(&format!("digest of {}", format::events(digest.count)));
//!         for item in digest.top(5) {
//!             log::info(&item.summary()); // DataDriftDetected orders.amount mean +50.0%
//!         }
//!         if let Some(more) = digest.more(5) {
//!             log::info(&more); // and 9 more (2 high, 7 low)
//!         }
//!         Ok(())
//!     }
//! }
//!
//! hookhost_sdk::export_hook!(Notify);
//! ```

use serde_json::{Map, Value};

use crate::{Event, Severity};

/// The `event_type` of a digest event (its `kind` is
/// [`EventKind::Custom`](crate::EventKind::Custom) with this name).
pub const EVENT_TYPE: &str = "hookhost.digest";

/// A group of events the host delivered as one digest event, as its
/// metadata describes them. The digest's own id and timestamp (when it was
/// made) are the event's.
#[derive(Debug, Clone, PartialEq)]
pub struct Digest {
    /// Each `group_by` path of the plugin's config (`metadata.table`) with
    /// the value the group's events share, in the config's order; `""`
    /// when the events lack it.
    pub group: Vec<(String, String)>,
    /// The events' `metadata.table`, when they all have the same one.
    pub table: Option<String>,
    /// How many events the digest stands for, listed in [`events`](Self::events) or not.
    pub count: u64,
    /// Events per event type (as the emitter spelled it), most frequent
    /// first, ties by name.
    pub counts: Vec<(String, u64)>,
    /// The highest severity among the events; `None` when none has one.
    pub severity: Option<Severity>,
    /// Events per severity word (`high`, `low`, ...), highest first; those
    /// without a severity count under `none`.
    pub severities: Vec<(String, u64)>,
    /// Repeats the host suppressed before the events (their `dedup_key`),
    /// in all; what [`delivery::suppressed`](crate::delivery::suppressed)
    /// says of the digest event.
    pub suppressed: u64,
    /// The earliest of the events' timestamps (RFC 3339).
    pub first_timestamp: String,
    /// The latest of the events' timestamps (RFC 3339).
    pub last_timestamp: String,
    /// At most 20 of the events, most severe first, then in the order they
    /// arrived; fewer when their JSON would pass 64 KiB.
    pub events: Vec<DigestItem>,
    /// How many events are not in [`events`](Self::events).
    pub omitted: u64,
}

/// One event of a [`Digest`], in the host's JSON form.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestItem {
    /// The event's id.
    pub event_id: String,
    /// The event type as the emitter spelled it.
    pub event_type: String,
    /// When the event happened (RFC 3339).
    pub timestamp: String,
    /// The event's severity word (`info` ... `critical`), when it has one.
    pub severity: Option<String>,
    /// The event's metadata object, every key as sent.
    pub metadata: Map<String, Value>,
}

impl Digest {
    /// The digest `event` carries: `None` unless its `event_type` is
    /// [`EVENT_TYPE`] and its metadata is an object with a `count`. A field
    /// that is missing or of another type reads as empty (`""`, 0, no
    /// entries), so one odd field does not lose the whole digest.
    pub fn from_event(event: &Event) -> Option<Digest> {
        if event.event_type != EVENT_TYPE {
            return None;
        }
        let Ok(Value::Object(metadata)) = serde_json::from_str(&event.metadata) else {
            return None;
        };
        Some(Digest {
            group: entries(&metadata, "group", |value| Some(group_value(value))),
            table: metadata
                .get("table")
                .and_then(Value::as_str)
                .map(str::to_owned),
            count: metadata.get("count")?.as_u64()?,
            counts: entries(&metadata, "counts", Value::as_u64),
            severity: metadata
                .get("severity")
                .and_then(Value::as_str)
                .and_then(severity),
            severities: entries(&metadata, "severities", Value::as_u64),
            suppressed: number(&metadata, "suppressed"),
            first_timestamp: string(&metadata, "first_timestamp"),
            last_timestamp: string(&metadata, "last_timestamp"),
            events: metadata
                .get("events")
                .and_then(Value::as_array)
                .map(|events| events.iter().filter_map(DigestItem::from_json).collect())
                .unwrap_or_default(),
            omitted: number(&metadata, "omitted"),
        })
    }

    /// The group's values that are not empty, in the config's order: what
    /// names the group in a message (`orders`).
    pub fn group_values(&self) -> impl Iterator<Item = &str> {
        self.group
            .iter()
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    }

    /// One line per event type, most frequent first: `DataDriftDetected: 10`.
    pub fn count_lines(&self) -> impl Iterator<Item = String> + '_ {
        self.counts
            .iter()
            .map(|(event_type, n)| format!("{event_type}: {n}"))
    }

    /// The first `n` of [`events`](Self::events) (fewer when there are
    /// fewer): the most severe.
    pub fn top(&self, n: usize) -> &[DigestItem] {
        &self.events[..n.min(self.events.len())]
    }

    /// The line for the events past [`top(shown)`](Self::top), by severity,
    /// highest first: `and 9 more (2 high, 7 low)`; `None` when the top
    /// shows them all. The breakdown is [`severities`](Self::severities)
    /// less the shown events', so it covers the omitted events too.
    pub fn more(&self, shown: usize) -> Option<String> {
        let shown = self.top(shown);
        let rest = self.count.saturating_sub(shown.len() as u64);
        if rest == 0 {
            return None;
        }
        let breakdown: Vec<String> = self
            .severities
            .iter()
            .filter_map(|(word, n)| {
                let in_top = shown
                    .iter()
                    .filter(|item| item.severity_word().eq_ignore_ascii_case(word))
                    .count();
                let left = n.saturating_sub(in_top as u64);
                let label = if word == "none" {
                    "without severity"
                } else {
                    word
                };
                (left > 0).then(|| format!("{left} {label}"))
            })
            .collect();
        Some(if breakdown.is_empty() {
            format!("and {rest} more")
        } else {
            format!("and {rest} more ({})", breakdown.join(", "))
        })
    }
}

impl DigestItem {
    /// An event of the digest's `events`; `None` when it is not an object.
    fn from_json(value: &Value) -> Option<DigestItem> {
        let item = value.as_object()?;
        Some(DigestItem {
            event_id: string(item, "event_id"),
            event_type: string(item, "event_type"),
            timestamp: string(item, "timestamp"),
            severity: item
                .get("severity")
                .and_then(Value::as_str)
                .map(str::to_owned),
            metadata: item
                .get("metadata")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// The event in one line: its type, then `table.column`, metric and
    /// change where its metadata has them: `DataDriftDetected orders.amount
    /// mean +50.0%`, `SchemaChangeDetected orders.note column_added`. The
    /// change is `change_percent` as a signed percentage, else the
    /// `change_type`.
    pub fn summary(&self) -> String {
        let (table, column) = (self.text("table"), self.text("column"));
        let place = match (table, column) {
            (Some(table), Some(column)) => Some(format!("{table}.{column}")),
            (table, column) => table.or(column).map(str::to_owned),
        };
        let change = match self.metadata.get("change_percent").and_then(Value::as_f64) {
            Some(percent) => Some(crate::format::change(Some(percent))),
            None => self.text("change_type").map(str::to_owned),
        };
        let parts = [
            Some(self.event_type.clone()),
            place,
            self.text("metric").map(str::to_owned),
            change,
        ];
        parts.into_iter().flatten().collect::<Vec<_>>().join(" ")
    }

    /// The severity word as [`Digest::severities`] counts it: `none` when
    /// the event has none.
    fn severity_word(&self) -> &str {
        self.severity.as_deref().unwrap_or("none")
    }

    /// A metadata value that is a non-empty string.
    fn text(&self, key: &str) -> Option<&str> {
        self.metadata
            .get(key)
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
    }
}

/// A severity word as the host writes it (`info` ... `critical`).
fn severity(word: &str) -> Option<Severity> {
    match word.to_ascii_lowercase().as_str() {
        "info" => Some(Severity::Info),
        "low" => Some(Severity::Low),
        "medium" => Some(Severity::Medium),
        "high" => Some(Severity::High),
        "critical" => Some(Severity::Critical),
        _ => None,
    }
}

/// The string at `key`, `""` when it is missing or not a string.
fn string(object: &Map<String, Value>, key: &str) -> String {
    object
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The count at `key`, 0 when it is missing or not one.
fn number(object: &Map<String, Value>, key: &str) -> u64 {
    object.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// The entries of the object at `key`, in the order they were written
/// (serde_json's `preserve_order`), each value read by `read`; an entry it
/// cannot read is left out.
fn entries<T>(
    object: &Map<String, Value>,
    key: &str,
    read: impl Fn(&Value) -> Option<T>,
) -> Vec<(String, T)> {
    object
        .get(key)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, value)| Some((name.clone(), read(value)?)))
        .collect()
}

/// A group value as text: a string as is, `""` for null, anything else as
/// its JSON.
fn group_value(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventKind;

    fn digest_event(metadata: &str) -> Event {
        Event {
            id: "digest-0123456789abcdef0123456789abcdef".to_owned(),
            event_type: EVENT_TYPE.to_owned(),
            timestamp: "2025-03-04T02:05:30Z".to_owned(),
            severity: Some(Severity::High),
            metadata: metadata.to_owned(),
            kind: EventKind::Custom(EVENT_TYPE.to_owned()),
        }
    }

    /// The spec's example: 14 events, 2 high and 12 low, 3 of them listed.
    const EXAMPLE: &str = r#"{
        "group": {"metadata.table": "orders", "severity": ""},
        "table": "orders",
        "count": 14,
        "counts": {"DataDriftDetected": 10, "SchemaChangeDetected": 4},
        "severity": "high",
        "severities": {"high": 2, "low": 11, "none": 1},
        "suppressed": 3,
        "first_timestamp": "2025-03-04T02:00:00Z",
        "last_timestamp": "2025-03-04T02:05:00Z",
        "events": [
            {"event_id": "e1", "event_type": "DataDriftDetected", "timestamp": "2025-03-04T02:00:00Z",
             "severity": "high",
             "metadata": {"table": "orders", "column": "amount", "metric": "mean", "change_percent": 50.0}},
            {"event_id": "e2", "event_type": "SchemaChangeDetected", "timestamp": "2025-03-04T02:01:00Z",
             "severity": "low",
             "metadata": {"table": "orders", "column": "note", "change_type": "column_added"}},
            {"event_id": "e3", "event_type": "ProfilingCompleted", "timestamp": "2025-03-04T02:02:00Z",
             "metadata": {"table": "orders"}}
        ],
        "omitted": 11
    }"#;

    #[test]
    fn reads_every_field_in_order() {
        let digest = Digest::from_event(&digest_event(EXAMPLE)).expect("a digest");
        assert_eq!(
            digest.group,
            [
                ("metadata.table".to_owned(), "orders".to_owned()),
                ("severity".to_owned(), String::new())
            ]
        );
        assert_eq!(digest.group_values().collect::<Vec<_>>(), ["orders"]);
        assert_eq!(digest.table.as_deref(), Some("orders"));
        assert_eq!(digest.count, 14);
        assert_eq!(
            digest.count_lines().collect::<Vec<_>>(),
            ["DataDriftDetected: 10", "SchemaChangeDetected: 4"]
        );
        assert_eq!(digest.severity, Some(Severity::High));
        assert_eq!(digest.severities[0], ("high".to_owned(), 2));
        assert_eq!(digest.suppressed, 3);
        assert_eq!(digest.first_timestamp, "2025-03-04T02:00:00Z");
        assert_eq!(digest.last_timestamp, "2025-03-04T02:05:00Z");
        assert_eq!(digest.events.len(), 3);
        assert_eq!(digest.events[2].severity, None);
        assert_eq!(digest.events[0].metadata["column"], "amount");
        assert_eq!(digest.omitted, 11);
    }

    #[test]
    fn only_a_digest_with_a_count_reads() {
        let mut event = digest_event(EXAMPLE);
        event.event_type = "DataDriftDetected".to_owned();
        assert_eq!(Digest::from_event(&event), None);
        for metadata in ["", "[]", r#"{"count": -1}"#, r#"{"group": {}}"#] {
            assert_eq!(
                Digest::from_event(&digest_event(metadata)),
                None,
                "{metadata}"
            );
        }
        let bare = Digest::from_event(&digest_event(r#"{"count": 2}"#)).expect("a digest");
        assert_eq!((bare.count, bare.severity, bare.events.len()), (2, None, 0));
    }

    #[test]
    fn summarises_an_item_in_one_line() {
        let digest = Digest::from_event(&digest_event(EXAMPLE)).expect("a digest");
        let summaries: Vec<String> = digest.events.iter().map(DigestItem::summary).collect();
        assert_eq!(
            summaries,
            [
                "DataDriftDetected orders.amount mean +50.0%",
                "SchemaChangeDetected orders.note column_added",
                "ProfilingCompleted orders",
            ]
        );
    }

    #[test]
    fn counts_what_the_top_leaves_out_by_severity() {
        let digest = Digest::from_event(&digest_event(EXAMPLE)).expect("a digest");
        assert_eq!(digest.top(2).len(), 2);
        assert_eq!(digest.top(5).len(), 3);
        assert_eq!(
            digest.more(2).as_deref(),
            Some("and 12 more (1 high, 10 low, 1 without severity)")
        );
        // The omitted events are counted from `severities`.
        assert_eq!(
            digest.more(5).as_deref(),
            Some("and 11 more (1 high, 10 low)")
        );
        let all_shown = Digest::from_event(&digest_event(r#"{"count": 0}"#)).expect("a digest");
        assert_eq!(all_shown.more(5), None);
        let no_breakdown = Digest::from_event(&digest_event(r#"{"count": 4}"#)).expect("a digest");
        assert_eq!(no_breakdown.more(5).as_deref(), Some("and 4 more"));
    }
}
