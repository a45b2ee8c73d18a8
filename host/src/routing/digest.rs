//! The digest event: what a single-event hook receives for a group of
//! events (`group_by`), one event that summarises them all. Its type is
//! [`DIGEST_EVENT_TYPE`]; its metadata holds the group's values, the count
//! per event type and per severity, the repeats suppressed before them,
//! and the most severe events in full (the README's "Grouping into
//! digests" lists every key).

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use crate::bindings::{Event, Severity};
use crate::routing::{severity_rank, SEVERITIES};

/// The `event_type` of a digest.
pub const DIGEST_EVENT_TYPE: &str = "hookhost.digest";

/// Most events a digest lists in full: a message shows a handful; the
/// rest are counted.
pub const DIGEST_EVENTS: usize = 20;

/// Most bytes of JSON the listed events take in all: a group of large
/// events (whole schemas, samples of rows) still makes a digest of
/// bounded size.
pub const DIGEST_EVENTS_BYTES: usize = 64 * 1024;

/// The digest of `events` (oldest first), the group `group` (each
/// `group_by` path with its value), made at `now`; `suppressed` is the sum
/// of the repeats suppressed before them.
pub fn digest(
    group: &[(String, String)],
    events: &[&Event],
    suppressed: u32,
    now: chrono::DateTime<chrono::Utc>,
) -> Event {
    let highest = events
        .iter()
        .filter_map(|e| e.severity)
        .max_by_key(|s| severity_rank(*s));
    let mut metadata = Map::new();
    metadata.insert(
        "group".into(),
        Value::Object(
            group
                .iter()
                .map(|(path, value)| (path.clone(), Value::String(value.clone())))
                .collect(),
        ),
    );
    if let Some(table) = common_table(events) {
        metadata.insert("table".into(), Value::String(table));
    }
    metadata.insert("count".into(), json!(events.len()));
    metadata.insert(
        "counts".into(),
        counted(events.iter().map(|e| e.event_type.as_str())),
    );
    metadata.insert("severity".into(), json!(highest.map(|s| s.to_string())));
    metadata.insert("severities".into(), severities(events));
    metadata.insert("suppressed".into(), json!(suppressed));
    let timestamps = events.iter().map(|e| e.timestamp.as_str());
    metadata.insert("first_timestamp".into(), json!(timestamps.clone().min()));
    metadata.insert("last_timestamp".into(), json!(timestamps.max()));
    let listed = most_severe(events);
    metadata.insert("omitted".into(), json!(events.len() - listed.len()));
    metadata.insert("events".into(), Value::Array(listed));
    Event {
        id: digest_id(events),
        event_type: DIGEST_EVENT_TYPE.to_owned(),
        timestamp: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        severity: highest,
        metadata: Value::Object(metadata).to_string(),
        kind: crate::bindings::EventKind::Custom(DIGEST_EVENT_TYPE.to_owned()),
    }
}

/// `digest-` and 32 hex digits of the SHA-256 of the events' ids: the same
/// events make the same id, so a receiver can tell a digest delivered
/// again from a new one.
fn digest_id(events: &[&Event]) -> String {
    let mut hash = Sha256::new();
    for event in events {
        hash.update(event.id.as_bytes());
        hash.update([0]);
    }
    let hex: String = hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("digest-{hex}")
}

/// The `metadata.table` every event shares, if they share one.
fn common_table(events: &[&Event]) -> Option<String> {
    let mut tables =
        events.iter().map(
            |event| match serde_json::from_str::<Value>(&event.metadata) {
                Ok(Value::Object(mut metadata)) => match metadata.remove("table") {
                    Some(Value::String(table)) => Some(table),
                    _ => None,
                },
                _ => None,
            },
        );
    let first = tables.next()??;
    tables
        .all(|table| table.as_deref() == Some(first.as_str()))
        .then_some(first)
}

/// `{name: count}`, most frequent first, ties by name.
fn counted<'a>(names: impl Iterator<Item = &'a str>) -> Value {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for name in names {
        *counts.entry(name).or_default() += 1;
    }
    let mut sorted: Vec<(&str, u64)> = counts.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    Value::Object(
        sorted
            .into_iter()
            .map(|(name, count)| (name.to_owned(), json!(count)))
            .collect(),
    )
}

/// `{severity: count}`, highest first, `none` last.
fn severities(events: &[&Event]) -> Value {
    let mut out = Map::new();
    for severity in SEVERITIES.iter().rev() {
        let count = events
            .iter()
            .filter(|e| e.severity == Some(*severity))
            .count();
        if count > 0 {
            out.insert(severity.to_string(), json!(count));
        }
    }
    let none = events.iter().filter(|e| e.severity.is_none()).count();
    if none > 0 {
        out.insert("none".into(), json!(none));
    }
    Value::Object(out)
}

/// Up to [`DIGEST_EVENTS`] events in their JSON form, most severe first,
/// then in the order they arrived, within [`DIGEST_EVENTS_BYTES`]; of a
/// group of large events, at most four times [`DIGEST_EVENTS`] are tried,
/// so a digest costs the same whatever the group's size.
fn most_severe(events: &[&Event]) -> Vec<Value> {
    let mut order: Vec<usize> = (0..events.len()).collect();
    let rank = |s: Option<Severity>| s.map_or(0, |s| severity_rank(s) + 1);
    order.sort_by_key(|&i| std::cmp::Reverse(rank(events[i].severity)));
    let mut listed = Vec::new();
    let mut bytes = 0;
    for i in order.into_iter().take(4 * DIGEST_EVENTS) {
        if listed.len() == DIGEST_EVENTS {
            break;
        }
        let event = events[i];
        let mut item = event.to_json_value();
        if let Value::Object(map) = &mut item {
            map.insert(
                "severity".into(),
                json!(event.severity.map(|s| s.to_string())),
            );
        }
        let size = item.to_string().len();
        if bytes + size > DIGEST_EVENTS_BYTES {
            continue;
        }
        bytes += size;
        listed.push(item);
    }
    listed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, event_type: &str, table: &str, severity: &str, at: &str) -> Event {
        Event::from_json(&format!(
            r#"{{"event_id": "{id}", "event_type": "{event_type}", "timestamp": "{at}",
                "metadata": {{"table": "{table}", "column": "c", "severity": "{severity}"}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_digest_counts_and_lists_its_events() {
        let events = [
            event(
                "1",
                "DataDriftDetected",
                "orders",
                "low",
                "2025-01-01T00:00:01Z",
            ),
            event(
                "2",
                "SchemaChangeDetected",
                "orders",
                "high",
                "2025-01-01T00:00:02Z",
            ),
            event(
                "3",
                "DataDriftDetected",
                "orders",
                "low",
                "2025-01-01T00:00:03Z",
            ),
            event(
                "4",
                "DataDriftDetected",
                "orders",
                "nonsense",
                "2025-01-01T00:00:04Z",
            ),
        ];
        let refs: Vec<&Event> = events.iter().collect();
        let group = [("metadata.table".to_owned(), "orders".to_owned())];
        let now = chrono::DateTime::parse_from_rfc3339("2025-01-01T00:01:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let digest = digest(&group, &refs, 5, now);
        assert_eq!(digest.event_type, DIGEST_EVENT_TYPE);
        assert_eq!(digest.severity, Some(Severity::High));
        assert_eq!(digest.timestamp, "2025-01-01T00:01:00.000Z");
        assert!(digest.id.starts_with("digest-") && digest.id.len() == 7 + 32);
        let metadata: Value = serde_json::from_str(&digest.metadata).unwrap();
        assert_eq!(metadata["group"], json!({"metadata.table": "orders"}));
        assert_eq!(metadata["table"], "orders");
        assert_eq!(metadata["count"], 4);
        assert_eq!(
            serde_json::to_string(&metadata["counts"]).unwrap(),
            r#"{"DataDriftDetected":3,"SchemaChangeDetected":1}"#
        );
        assert_eq!(metadata["severity"], "high");
        assert_eq!(
            serde_json::to_string(&metadata["severities"]).unwrap(),
            r#"{"high":1,"low":2,"none":1}"#
        );
        assert_eq!(metadata["suppressed"], 5);
        assert_eq!(metadata["first_timestamp"], "2025-01-01T00:00:01Z");
        assert_eq!(metadata["last_timestamp"], "2025-01-01T00:00:04Z");
        let ids: Vec<&str> = metadata["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            ["2", "1", "3", "4"],
            "most severe first, then in order"
        );
        assert_eq!(metadata["events"][0]["severity"], "high");
        assert_eq!(metadata["omitted"], 0);
        // The JSON form reads back as the same event, as a hook's SDK reads it.
        let read = Event::from_json(&digest.to_json()).unwrap();
        assert_eq!(read.severity, Some(Severity::High));
        assert_eq!(read.id, digest.id);
    }

    #[test]
    fn a_large_group_lists_at_most_twenty_and_counts_the_rest() {
        let events: Vec<Event> = (0..50)
            .map(|i| {
                event(
                    &i.to_string(),
                    "X",
                    if i % 2 == 0 { "a" } else { "b" },
                    "low",
                    "2025-01-01T00:00:00Z",
                )
            })
            .collect();
        let refs: Vec<&Event> = events.iter().collect();
        let digest = digest(&[], &refs, 0, chrono::Utc::now());
        let metadata: Value = serde_json::from_str(&digest.metadata).unwrap();
        assert_eq!(metadata["events"].as_array().unwrap().len(), DIGEST_EVENTS);
        assert_eq!(metadata["omitted"], 30);
        assert!(metadata.get("table").is_none(), "two tables: no common one");
    }
}
