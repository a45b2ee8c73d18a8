//! Deduplication: a plugin's `dedup_key` (a minijinja template over the
//! event) and `dedup_window` keep repeats of an alert from it. The first
//! event of a key is let through; later events of the key within the
//! window after it are suppressed and counted, and the next event of the
//! key let through after the window carries that count, so the hook can say
//! "and 12 more like this". With `renotify_on_change`, a repeat whose
//! severity rose is let through at once.
//!
//! [`DedupRule`] is the configuration, compiled once; [`DedupState`] is one
//! plugin's memory of keys, kept by its worker (which sees the plugin's
//! events one at a time, in order, so no lock is needed) and, with a data
//! directory, saved in the routing store (`routing::store`).
//!
//! The window starts when an event is let through to the worker's
//! delivery, whatever that delivery's outcome: an alert that ends in the
//! dead letters still silences its repeats, and a replay delivers it.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::bindings::Event;
use crate::routing::key_template::KeyTemplate;
use crate::routing::severity_rank;

/// Keys one plugin remembers at most. A key costs about a hundred bytes
/// plus its text; a hundred thousand of them is a few tens of MiB at worst.
/// Past it, keys whose window has passed are forgotten first, then the
/// oldest: forgetting a key can only let a repeat through, never lose one.
pub const MAX_KEYS: usize = 100_000;

/// Longest key kept as written, in bytes; a longer one is kept as its
/// SHA-256, so a template over a large metadata value cannot make the host
/// hold that value once per key.
pub const MAX_KEY_BYTES: usize = 256;

/// The template's name inside its environment.
const TEMPLATE: &str = "dedup_key";

/// A plugin's deduplication settings, the template compiled.
#[derive(Clone)]
pub struct DedupRule {
    /// The template as written.
    written: String,
    env: Arc<Environment<'static>>,
    /// The template's fast form, when it is only text and fields.
    fast: Option<Arc<KeyTemplate>>,
    /// How long after an event of a key is let through its repeats are
    /// suppressed.
    pub window: Duration,
    /// Let a repeat through at once when its severity is higher than that
    /// of the event of its key last let through.
    pub renotify_on_change: bool,
}

impl PartialEq for DedupRule {
    fn eq(&self, other: &DedupRule) -> bool {
        self.written == other.written
            && self.window == other.window
            && self.renotify_on_change == other.renotify_on_change
    }
}

impl fmt::Debug for DedupRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DedupRule")
            .field("dedup_key", &self.written)
            .field("window", &self.window)
            .field("renotify_on_change", &self.renotify_on_change)
            .finish()
    }
}

impl DedupRule {
    /// Compiles `template`; the error is minijinja's, for the config
    /// reader to place at the key's line.
    pub fn new(
        template: &str,
        window: Duration,
        renotify_on_change: bool,
    ) -> Result<DedupRule, String> {
        let mut env = Environment::new();
        // `{{ metadata.a.b }}` of an event without `a` renders as nothing,
        // like `{{ metadata.a }}`, rather than failing the key.
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.add_template_owned(TEMPLATE, template.to_owned())
            .map_err(|err| format!("dedup_key is not a valid template: {err}"))?;
        Ok(DedupRule {
            written: template.to_owned(),
            env: Arc::new(env),
            fast: KeyTemplate::parse(template).map(Arc::new),
            window,
            renotify_on_change,
        })
    }

    /// The template as written.
    pub fn template(&self) -> &str {
        &self.written
    }

    /// The key of `event`: the template rendered with `event_id`,
    /// `event_type`, `timestamp`, `severity` and `metadata` (the object),
    /// cut to its SHA-256 past [`MAX_KEY_BYTES`]. An error (a filter given
    /// the wrong type, say) is returned for the worker to log; the event is
    /// then delivered as if it had no key.
    pub fn key(&self, event: &Event) -> Result<String, String> {
        let rendered = match self.fast.as_ref().and_then(|fast| fast.render(event)) {
            Some(key) => key,
            None => self.render(event)?,
        };
        if rendered.len() <= MAX_KEY_BYTES {
            return Ok(rendered);
        }
        let hash = Sha256::digest(rendered.as_bytes());
        Ok(format!("sha256:{}", hex(&hash)))
    }

    /// The template rendered by minijinja (the fast form's reference).
    pub(crate) fn render(&self, event: &Event) -> Result<String, String> {
        let metadata: Value = match serde_json::from_str(&event.metadata) {
            Ok(value @ Value::Object(_)) => value,
            _ => Value::Object(Map::new()),
        };
        let context = minijinja::context! {
            event_id => &event.id,
            event_type => &event.event_type,
            timestamp => &event.timestamp,
            severity => event.severity.map(|s| s.to_string()).unwrap_or_default(),
            metadata => metadata,
        };
        self.env
            .get_template(TEMPLATE)
            .and_then(|template| template.render(context))
            .map_err(|err| format!("dedup_key could not be rendered: {err}"))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the plugin remembers of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupEntry {
    /// When the last event of the key was let through, in Unix
    /// milliseconds (wall clock, so that a restart keeps the window).
    pub let_through_ms: i64,
    /// That event's severity rank (`None`: it had none).
    pub severity: Option<u8>,
    /// Repeats suppressed since.
    pub suppressed: u32,
    /// That event's id: the same event delivered again (recovered from the
    /// write-ahead log after a crash) is let through again, not suppressed
    /// as its own repeat.
    pub event_id: String,
    /// The count that event carried.
    pub carried: u32,
}

/// What to do with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it, telling the hook how many repeats were suppressed
    /// before it.
    Deliver {
        /// Repeats of its key suppressed since the last one let through.
        suppressed: u32,
    },
    /// Do not deliver it: a repeat within the window.
    Suppress,
}

/// One plugin's keys and, when they are saved, which of them changed
/// since they last were.
#[derive(Debug, Default)]
pub struct DedupState {
    entries: HashMap<String, DedupEntry>,
    /// Whether changes are noted for [`take_changes`](Self::take_changes):
    /// only for state kept in a store, so that without one nothing grows
    /// with the keys ever seen.
    saved: bool,
    changed: HashSet<String>,
}

impl DedupState {
    /// State kept in the routing store, holding the `entries` loaded from
    /// it; its changes are noted for saving.
    pub fn saved(entries: impl IntoIterator<Item = (String, DedupEntry)>) -> DedupState {
        DedupState {
            entries: entries.into_iter().collect(),
            saved: true,
            changed: HashSet::new(),
        }
    }

    fn note(&mut self, key: String) {
        if self.saved {
            self.changed.insert(key);
        }
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decides on `event`, whose key is `key`, at `now_ms` (Unix
    /// milliseconds), and remembers the decision.
    pub fn check(&mut self, rule: &DedupRule, key: String, event: &Event, now_ms: i64) -> Verdict {
        let window_ms = i64::try_from(rule.window.as_millis()).unwrap_or(i64::MAX);
        let severity = event.severity.map(severity_rank);
        let carried = match self.entries.get_mut(&key) {
            Some(entry) if entry.event_id == event.id => {
                // The event let through, delivered again after a restart.
                return Verdict::Deliver {
                    suppressed: entry.carried,
                };
            }
            Some(entry) => {
                let within = now_ms < entry.let_through_ms.saturating_add(window_ms);
                let rose = rule.renotify_on_change && severity > entry.severity;
                if within && !rose {
                    entry.suppressed = entry.suppressed.saturating_add(1);
                    self.note(key);
                    return Verdict::Suppress;
                }
                entry.suppressed
            }
            None => {
                self.make_room(now_ms, window_ms);
                0
            }
        };
        let entry = DedupEntry {
            let_through_ms: now_ms,
            severity,
            suppressed: 0,
            event_id: event.id.clone(),
            carried,
        };
        if self.saved {
            self.changed.insert(key.clone());
        }
        self.entries.insert(key, entry);
        Verdict::Deliver {
            suppressed: carried,
        }
    }

    /// Below [`MAX_KEYS`] for one more key: forgets the keys whose window
    /// has passed and that hold no count, then, if that is not enough, the
    /// tenth of the keys let through longest ago.
    fn make_room(&mut self, now_ms: i64, window_ms: i64) {
        if self.entries.len() < MAX_KEYS {
            return;
        }
        let mut forgotten = Vec::new();
        self.entries.retain(|key, entry| {
            let keep = entry.suppressed > 0 || now_ms < entry.let_through_ms + window_ms;
            if !keep {
                forgotten.push(key.clone());
            }
            keep
        });
        if self.entries.len() >= MAX_KEYS {
            let mut by_age: Vec<(i64, String)> = self
                .entries
                .iter()
                .map(|(key, entry)| (entry.let_through_ms, key.clone()))
                .collect();
            by_age.sort_unstable();
            for (_, key) in by_age.into_iter().take(MAX_KEYS / 10) {
                self.entries.remove(&key);
                forgotten.push(key);
            }
        }
        for key in forgotten {
            self.note(key);
        }
    }

    /// The keys changed since the last call, each with what to save
    /// (`None`: forget it).
    pub fn take_changes(&mut self) -> Vec<(String, Option<DedupEntry>)> {
        self.changed
            .drain()
            .map(|key| {
                let entry = self.entries.get(&key).cloned();
                (key, entry)
            })
            .collect()
    }

    /// Whether any key changed since the last [`take_changes`](Self::take_changes).
    pub fn has_changes(&self) -> bool {
        !self.changed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::Severity;

    fn event(id: &str, table: &str, severity: Option<Severity>) -> Event {
        let severity_json = severity.map_or("null".to_owned(), |s| format!("\"{s}\""));
        let json = format!(
            r#"{{"event_id": "{id}", "event_type": "DataDriftDetected", "metadata":
                {{"table": "{table}", "column": "amount", "metric": "mean",
                  "drift_severity": {severity_json}}}}}"#
        );
        Event::from_json(&json).unwrap()
    }

    fn rule(renotify: bool) -> DedupRule {
        DedupRule::new(
            "{{ event_type }}:{{ metadata.table }}:{{ metadata.column }}:{{ metadata.metric }}",
            Duration::from_secs(60),
            renotify,
        )
        .unwrap()
    }

    fn check(state: &mut DedupState, rule: &DedupRule, event: &Event, now_ms: i64) -> Verdict {
        let key = rule.key(event).unwrap();
        state.check(rule, key, event, now_ms)
    }

    #[test]
    fn the_key_renders_the_event_and_missing_fields_render_empty() {
        let rule = rule(false);
        let drift = event("a", "orders", Some(Severity::High));
        assert_eq!(
            rule.key(&drift).unwrap(),
            "DataDriftDetected:orders:amount:mean"
        );
        let nested = DedupRule::new("{{ metadata.x.y }}|{{ severity }}", Duration::ZERO, false)
            .unwrap()
            .key(&drift)
            .unwrap();
        assert_eq!(nested, "|high");
    }

    #[test]
    fn a_bad_template_is_refused_with_minijinjas_reason() {
        let err = DedupRule::new("{{ event_type", Duration::ZERO, false).unwrap_err();
        assert!(
            err.starts_with("dedup_key is not a valid template"),
            "{err}"
        );
    }

    #[test]
    fn a_long_key_is_kept_as_its_hash() {
        let rule = DedupRule::new("{{ metadata.table }}", Duration::ZERO, false).unwrap();
        let key = rule.key(&event("a", &"t".repeat(1000), None)).unwrap();
        assert!(key.starts_with("sha256:") && key.len() == 7 + 64, "{key}");
    }

    #[test]
    fn repeats_within_the_window_are_suppressed_and_counted_into_the_next() {
        let rule = rule(false);
        let mut state = DedupState::saved([]);
        let first = event("1", "orders", Some(Severity::High));
        assert_eq!(
            check(&mut state, &rule, &first, 0),
            Verdict::Deliver { suppressed: 0 }
        );
        for (i, at) in [1_000, 30_000, 59_999].into_iter().enumerate() {
            let repeat = event(&format!("r{i}"), "orders", Some(Severity::High));
            assert_eq!(check(&mut state, &rule, &repeat, at), Verdict::Suppress);
        }
        // Another key is not a repeat.
        let other = event("o", "customers", Some(Severity::High));
        assert_eq!(
            check(&mut state, &rule, &other, 2_000),
            Verdict::Deliver { suppressed: 0 }
        );
        // After the window: delivered with the count, which starts again.
        let later = event("2", "orders", Some(Severity::High));
        assert_eq!(
            check(&mut state, &rule, &later, 60_000),
            Verdict::Deliver { suppressed: 3 }
        );
        let repeat = event("3", "orders", Some(Severity::High));
        assert_eq!(check(&mut state, &rule, &repeat, 60_001), Verdict::Suppress);
        let changes = state.take_changes();
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(!state.has_changes());
    }

    #[test]
    fn state_without_a_store_notes_no_changes() {
        let rule = rule(false);
        let mut state = DedupState::default();
        check(&mut state, &rule, &event("1", "t", None), 0);
        check(&mut state, &rule, &event("2", "t", None), 1);
        assert!(!state.has_changes());
    }

    #[test]
    fn a_rise_in_severity_is_let_through_only_with_renotify_on_change() {
        for renotify in [false, true] {
            let rule = rule(renotify);
            let mut state = DedupState::default();
            check(&mut state, &rule, &event("1", "t", Some(Severity::Low)), 0);
            let lower = event("2", "t", Some(Severity::Low));
            assert_eq!(check(&mut state, &rule, &lower, 10), Verdict::Suppress);
            let higher = event("3", "t", Some(Severity::High));
            let verdict = check(&mut state, &rule, &higher, 20);
            if renotify {
                assert_eq!(verdict, Verdict::Deliver { suppressed: 1 });
                // The window starts again from the higher one.
                let same = event("4", "t", Some(Severity::High));
                assert_eq!(check(&mut state, &rule, &same, 30), Verdict::Suppress);
            } else {
                assert_eq!(verdict, Verdict::Suppress);
            }
        }
    }

    #[test]
    fn the_event_let_through_is_let_through_again_with_its_count() {
        let rule = rule(false);
        let mut state = DedupState::default();
        check(&mut state, &rule, &event("1", "t", None), 0);
        check(&mut state, &rule, &event("2", "t", None), 10);
        let third = event("3", "t", None);
        assert_eq!(
            check(&mut state, &rule, &third, 70_000),
            Verdict::Deliver { suppressed: 1 }
        );
        // Recovered after a crash: the same event again.
        assert_eq!(
            check(&mut state, &rule, &third, 70_500),
            Verdict::Deliver { suppressed: 1 }
        );
    }

    #[test]
    fn state_loaded_from_the_store_keeps_suppressing() {
        let rule = rule(false);
        let mut state = DedupState::saved([]);
        check(&mut state, &rule, &event("1", "t", None), 0);
        let saved: Vec<(String, DedupEntry)> = state
            .take_changes()
            .into_iter()
            .map(|(key, entry)| (key, entry.unwrap()))
            .collect();
        let mut restarted = DedupState::saved(saved);
        assert_eq!(restarted.len(), 1);
        assert_eq!(
            check(&mut restarted, &rule, &event("2", "t", None), 1_000),
            Verdict::Suppress
        );
    }

    #[test]
    fn past_the_key_limit_expired_keys_go_first() {
        let rule = DedupRule::new("{{ event_id }}", Duration::from_secs(1), false).unwrap();
        let mut state = DedupState::saved([]);
        for i in 0..MAX_KEYS {
            check(&mut state, &rule, &event(&i.to_string(), "t", None), 0);
        }
        assert_eq!(state.len(), MAX_KEYS);
        state.take_changes();
        // Every key's window has passed: all are forgotten for the new one.
        check(&mut state, &rule, &event("new", "t", None), 5_000);
        assert_eq!(state.len(), 1);
        assert_eq!(state.take_changes().len(), MAX_KEYS + 1);
    }
}
