//! Grouping, after Alertmanager: a plugin's `group_by` (event fields),
//! `group_wait` and `group_interval`. The first event of a group opens it;
//! what arrives while it is open is delivered with it when `group_wait` has
//! passed. A group delivered less than `group_interval` ago gathers its next
//! events until `group_interval` after that delivery.
//!
//! [`GroupRule`] is the configuration; [`Groups`] holds one plugin's open
//! groups, kept by its worker, which builds one digest (`routing::digest`)
//! or one batch call per group when it is due, and delivers every open
//! group at once when the host stops.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bindings::Event;

/// Groups whose last delivery one plugin remembers at most (for
/// `group_interval`). Group values come from the events, so without a
/// bound a stream of ever new tables would grow it for a whole interval;
/// past it, the half delivered longest ago is forgotten, which can only
/// let a group's next delivery come sooner.
pub const MAX_DELIVERED_GROUPS: usize = 100_000;

/// One `group_by` entry: a field of the event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    /// `event_type`: the type as the emitter spelled it.
    EventType,
    /// `severity`: the severity word, empty without one.
    Severity,
    /// `metadata.<key>[.<key>...]`: a metadata value, strings as they are,
    /// other values as their JSON text, empty when absent or null.
    Metadata(Vec<String>),
}

/// The forms a `group_by` entry may take, for error messages.
pub const GROUP_BY_FORMS: &str =
    "\"event_type\", \"severity\" or \"metadata.<key>\" (nested keys with dots: \"metadata.a.b\")";

impl Field {
    fn parse(path: &str) -> Result<Field, String> {
        match path {
            "event_type" => Ok(Field::EventType),
            "severity" => Ok(Field::Severity),
            _ => {
                let keys: Vec<String> = path
                    .strip_prefix("metadata.")
                    .map(|rest| rest.split('.').map(str::to_owned).collect())
                    .unwrap_or_default();
                if keys.is_empty() || keys.iter().any(String::is_empty) {
                    return Err(format!(
                        "group_by entry {path:?} is not a field: {GROUP_BY_FORMS}"
                    ));
                }
                Ok(Field::Metadata(keys))
            }
        }
    }

    fn value(&self, event: &Event, metadata: &mut Option<Value>) -> String {
        match self {
            Field::EventType => event.event_type.clone(),
            Field::Severity => event.severity.map(|s| s.to_string()).unwrap_or_default(),
            Field::Metadata(keys) => {
                let metadata = metadata.get_or_insert_with(|| {
                    serde_json::from_str(&event.metadata).unwrap_or(Value::Null)
                });
                let mut value = &*metadata;
                for key in keys {
                    match value.get(key) {
                        Some(inner) => value = inner,
                        None => return String::new(),
                    }
                }
                match value {
                    Value::String(text) => text.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                }
            }
        }
    }
}

/// A plugin's grouping settings.
#[derive(Clone, PartialEq)]
pub struct GroupRule {
    /// `group_by` as written.
    written: Vec<String>,
    fields: Vec<Field>,
    /// How long a new group gathers events before it is delivered.
    pub wait: Duration,
    /// Least time between two deliveries of one group.
    pub interval: Duration,
}

impl fmt::Debug for GroupRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupRule")
            .field("group_by", &self.written)
            .field("wait", &self.wait)
            .field("interval", &self.interval)
            .finish()
    }
}

impl GroupRule {
    /// The rule for `group_by`, or why an entry is not a field.
    pub fn new(group_by: &[String], wait: Duration, interval: Duration) -> Result<Self, String> {
        let fields = group_by
            .iter()
            .map(|path| Field::parse(path))
            .collect::<Result<_, _>>()?;
        Ok(GroupRule {
            written: group_by.to_vec(),
            fields,
            wait,
            interval,
        })
    }

    /// `group_by` as written.
    pub fn paths(&self) -> &[String] {
        &self.written
    }

    /// The group of `event`: its value of each `group_by` field, in order.
    pub fn key(&self, event: &Event) -> Vec<String> {
        let mut metadata = None;
        self.fields
            .iter()
            .map(|field| field.value(event, &mut metadata))
            .collect()
    }
}

/// One group's events gathered so far, and when they are due.
struct Open<T> {
    members: Vec<T>,
    due: Instant,
}

/// One plugin's groups: those open, and when each recently delivered one
/// was delivered.
pub struct Groups<T> {
    open: HashMap<Vec<String>, Open<T>>,
    delivered: HashMap<Vec<String>, Instant>,
    /// Size of `delivered` at which the deliveries older than the interval
    /// are next dropped: twice its size after the last time, so that
    /// dropping them costs a constant per delivery.
    prune_at: usize,
    /// Events in `open`, in all.
    held: usize,
}

/// The least `prune_at`.
const PRUNE_AT_LEAST: usize = 1024;

impl<T> Default for Groups<T> {
    fn default() -> Self {
        Groups {
            open: HashMap::new(),
            delivered: HashMap::new(),
            prune_at: PRUNE_AT_LEAST,
            held: 0,
        }
    }
}

/// A group taken for delivery: its `group_by` values and events, oldest
/// first.
pub type DueGroup<T> = (Vec<String>, Vec<T>);

impl<T> Groups<T> {
    /// Adds `member` to group `key` at `now`, opening the group if needed:
    /// due after `rule.wait`, or, if it was delivered less than
    /// `rule.interval` ago, `rule.interval` after that delivery.
    pub fn add(&mut self, rule: &GroupRule, key: Vec<String>, member: T, now: Instant) {
        self.held += 1;
        if let Some(open) = self.open.get_mut(&key) {
            open.members.push(member);
            return;
        }
        let due = match self.delivered.get(&key) {
            Some(&last) if now < last + rule.interval => last + rule.interval,
            _ => now + rule.wait,
        };
        self.open.insert(
            key,
            Open {
                members: vec![member],
                due,
            },
        );
    }

    /// When the next group is due, if any is open.
    pub fn next_due(&self) -> Option<Instant> {
        self.open.values().map(|open| open.due).min()
    }

    /// Events held in open groups.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Takes the groups due at `now` (every open group with `all`), those
    /// due first first, and notes their delivery for `rule.interval`.
    pub fn take_due(&mut self, rule: &GroupRule, now: Instant, all: bool) -> Vec<DueGroup<T>> {
        let mut keys: Vec<(Instant, Vec<String>)> = self
            .open
            .iter()
            .filter(|(_, open)| all || open.due <= now)
            .map(|(key, open)| (open.due, key.clone()))
            .collect();
        keys.sort();
        let due = keys
            .into_iter()
            .filter_map(|(_, key)| {
                let open = self.open.remove(&key)?;
                self.held -= open.members.len();
                self.delivered.insert(key.clone(), now);
                Some((key, open.members))
            })
            .collect();
        if self.delivered.len() >= self.prune_at {
            self.delivered.retain(|_, last| now < *last + rule.interval);
            self.prune_at = PRUNE_AT_LEAST.max(2 * self.delivered.len());
        }
        if self.delivered.len() > MAX_DELIVERED_GROUPS {
            let mut times: Vec<Instant> = self.delivered.values().copied().collect();
            let cut = times.len() - MAX_DELIVERED_GROUPS / 2;
            let (_, oldest_kept, _) = times.select_nth_unstable(cut);
            let oldest_kept = *oldest_kept;
            self.delivered.retain(|_, last| *last >= oldest_kept);
            if self.delivered.len() > MAX_DELIVERED_GROUPS {
                // All delivered at the same instant: forget them all.
                self.delivered.clear();
            }
        }
        due
    }

    /// Takes every open group regardless of when it is due, for a rule that
    /// no longer groups (or groups differently).
    pub fn take_all(&mut self) -> Vec<DueGroup<T>> {
        self.delivered.clear();
        self.held = 0;
        let mut open: Vec<(Instant, Vec<String>, Vec<T>)> = self
            .open
            .drain()
            .map(|(key, open)| (open.due, key, open.members))
            .collect();
        open.sort_by_key(|(due, ..)| *due);
        open.into_iter()
            .map(|(_, key, members)| (key, members))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, table: &str) -> Event {
        Event::from_json(&format!(
            r#"{{"event_type": "{event_type}", "metadata": {{"table": "{table}",
                "column": "c", "nested": {{"n": 3}}, "drift_severity": "high"}}}}"#
        ))
        .unwrap()
    }

    fn rule(by: &[&str]) -> GroupRule {
        let by: Vec<String> = by.iter().map(|s| s.to_string()).collect();
        GroupRule::new(&by, Duration::from_secs(30), Duration::from_secs(300)).unwrap()
    }

    #[test]
    fn the_key_reads_each_field() {
        let key = rule(&[
            "metadata.table",
            "event_type",
            "severity",
            "metadata.nested.n",
            "metadata.absent",
        ])
        .key(&event("DataDriftDetected", "orders"));
        assert_eq!(key, ["orders", "DataDriftDetected", "high", "3", ""]);
    }

    #[test]
    fn an_entry_that_is_not_a_field_is_refused() {
        for bad in ["table", "metadata.", "metadata..x", "", "event"] {
            let err =
                GroupRule::new(&[bad.to_owned()], Duration::ZERO, Duration::ZERO).unwrap_err();
            assert!(err.contains("is not a field"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_group_is_due_after_the_wait_and_then_after_the_interval() {
        let rule = rule(&["metadata.table"]);
        let mut groups = Groups::default();
        let t0 = Instant::now();
        groups.add(&rule, vec!["orders".into()], 1, t0);
        groups.add(
            &rule,
            vec!["orders".into()],
            2,
            t0 + Duration::from_secs(10),
        );
        groups.add(&rule, vec!["users".into()], 3, t0 + Duration::from_secs(5));
        assert_eq!(groups.next_due(), Some(t0 + Duration::from_secs(30)));
        assert_eq!(groups.held(), 3);
        assert!(groups
            .take_due(&rule, t0 + Duration::from_secs(29), false)
            .is_empty());
        let due = groups.take_due(&rule, t0 + Duration::from_secs(30), false);
        assert_eq!(due, vec![(vec!["orders".to_owned()], vec![1, 2])]);
        let due = groups.take_due(&rule, t0 + Duration::from_secs(35), false);
        assert_eq!(due, vec![(vec!["users".to_owned()], vec![3])]);
        // Delivered at 30 s: the next event of the group waits until 330 s.
        groups.add(
            &rule,
            vec!["orders".into()],
            4,
            t0 + Duration::from_secs(40),
        );
        assert_eq!(groups.next_due(), Some(t0 + Duration::from_secs(330)));
        // Long after the interval, a new event waits group_wait again.
        let mut groups = Groups::default();
        groups.add(&rule, vec!["a".into()], 1, t0);
        groups.take_due(&rule, t0 + Duration::from_secs(30), false);
        groups.add(&rule, vec!["a".into()], 2, t0 + Duration::from_secs(1000));
        assert_eq!(groups.next_due(), Some(t0 + Duration::from_secs(1030)));
    }

    #[test]
    fn past_the_limit_the_groups_delivered_longest_ago_are_forgotten() {
        let rule = rule(&["metadata.table"]);
        let mut groups = Groups::default();
        let t0 = Instant::now();
        for n in 0..=MAX_DELIVERED_GROUPS {
            let at = t0 + Duration::from_micros(n as u64);
            groups.add(&rule, vec![n.to_string()], n, at);
            groups.take_due(&rule, at + rule.wait, false);
        }
        assert!(groups.delivered.len() <= MAX_DELIVERED_GROUPS / 2 + 1);
        // The newest is still remembered: its next event waits the interval.
        let newest = MAX_DELIVERED_GROUPS.to_string();
        let at = t0 + rule.wait + Duration::from_secs(1);
        groups.add(&rule, vec![newest], 0, at);
        assert!(groups.next_due().unwrap() > at + rule.wait);
    }

    #[test]
    fn every_open_group_is_taken_at_shutdown() {
        let rule = rule(&["metadata.table"]);
        let mut groups = Groups::default();
        let t0 = Instant::now();
        groups.add(&rule, vec!["b".into()], 1, t0 + Duration::from_secs(1));
        groups.add(&rule, vec!["a".into()], 2, t0);
        let all = groups.take_due(&rule, t0, true);
        assert_eq!(
            all,
            vec![
                (vec!["a".to_owned()], vec![2]),
                (vec!["b".to_owned()], vec![1])
            ]
        );
        assert_eq!(groups.held(), 0);
        assert_eq!(groups.next_due(), None);
    }
}
