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
//! directory, saved in the routing store (`routing::store`). A key is kept
//! as the 128-bit XXH3 hash of its text ([`DedupKey`]): a fixed 16 bytes
//! whatever the template renders, the same in every process, and with a
//! hundred thousand keys a chance of two colliding below 10^-28.
//!
//! The window starts when an event is let through to the worker's
//! delivery, whatever that delivery's outcome: an alert that ends in the
//! dead letters still silences its repeats, and a replay delivers it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use crate::bindings::{Event, Severity};
use crate::routing::key_template::KeyTemplate;
use crate::routing::metadata::EventFields;
use crate::routing::severity_rank;

/// Keys one plugin remembers at most. A key costs under a hundred bytes
/// (its hash, its entry, the map's links); a hundred thousand of them is a
/// few MiB.
/// Past it, the key let through longest ago is forgotten (its window is the
/// first to pass): forgetting a key can only let a repeat through, never
/// lose one.
pub const MAX_KEYS: usize = 100_000;

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
    /// The XXH3-64 of the template: a key rendered by a rule with the same
    /// id is the key this rule renders.
    id: u64,
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
            id: xxh3_64(template.as_bytes()),
            window,
            renotify_on_change,
        })
    }

    /// The template as written.
    pub fn template(&self) -> &str {
        &self.written
    }

    /// What tells this rule's template from another's (see
    /// [`RenderedKey`]).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The key of `event`: the template rendered with `event_id`,
    /// `event_type`, `timestamp`, `severity` and `metadata` (the object),
    /// hashed. An error (a filter given the wrong type, say) is returned for
    /// the worker to log; the event is then delivered as if it had no key.
    pub fn key(&self, event: &Event) -> Result<DedupKey, String> {
        self.key_with(&mut EventFields::new(event))
    }

    /// [`key`](Self::key), with what routing has already read of the
    /// event.
    pub fn key_with(&self, fields: &mut EventFields<'_>) -> Result<DedupKey, String> {
        thread_local! {
            /// The fast form renders here: no allocation per event.
            static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        if let Some(fast) = &self.fast {
            let rendered = KEY
                .with_borrow_mut(|key| fast.render_into(fields, key).map(|()| DedupKey::of(key)));
            if let Some(key) = rendered {
                return Ok(key);
            }
        }
        Ok(DedupKey::of(&self.render(fields.event())?))
    }

    /// The key of `event` with this rule's id and the hash of the event's
    /// id: what [`DedupState::check`] takes.
    pub fn rendered(&self, event: &Event) -> Result<RenderedKey, String> {
        self.rendered_with(&mut EventFields::new(event))
    }

    /// [`rendered`](Self::rendered), with what routing has already read of
    /// the event (dispatch shares it with the route filters).
    pub fn rendered_with(&self, fields: &mut EventFields<'_>) -> Result<RenderedKey, String> {
        Ok(RenderedKey {
            rule: self.id,
            key: self.key_with(fields)?,
            event: id_hash(&fields.event().id),
        })
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

/// A rendered key, as its 128-bit XXH3 hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DedupKey(pub u128);

impl DedupKey {
    /// The key whose text is `rendered`.
    pub fn of(rendered: &str) -> DedupKey {
        DedupKey(xxh3_128(rendered.as_bytes()))
    }
}

impl fmt::Display for DedupKey {
    /// 32 hex digits, as the routing store keeps it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// An event's key as a rule rendered it: dispatch renders an event's key
/// once for all the plugins whose `dedup_key` is the same template, and
/// each worker uses it if its rule is still that one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderedKey {
    /// [`DedupRule::id`] of the rule that rendered it.
    pub rule: u64,
    /// The key.
    pub key: DedupKey,
    /// The event's id, hashed as [`DedupEntry::event_id`] keeps it.
    pub event: u64,
}

/// An event id as a key's entry remembers it: its 64-bit XXH3 hash.
fn id_hash(id: &str) -> u64 {
    xxh3_64(id.as_bytes())
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
    /// That event's id (its 64-bit XXH3 hash): the same event delivered
    /// again (recovered from the write-ahead log after a crash) is let
    /// through again, not suppressed as its own repeat.
    pub event_id: u64,
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

/// One plugin's keys, and, when they are saved, which of them changed
/// since they last were.
#[derive(Debug, Default)]
pub struct DedupState {
    entries: HashMap<DedupKey, Remembered, KeyHash>,
    /// The keys in the order they were let through, each with its turn:
    /// an item whose turn is no longer its key's is stale and skipped. The
    /// oldest is forgotten first past [`MAX_KEYS`].
    order: VecDeque<(DedupKey, u64)>,
    /// The next turn.
    turn: u64,
    /// Whether changes are noted for [`take_changes`](Self::take_changes):
    /// only for state kept in a store, so that without one nothing grows
    /// with the keys ever seen.
    saved: bool,
    changed: HashSet<DedupKey, KeyHash>,
}

/// A key's entry and when, in let-through order, it was let through.
#[derive(Debug)]
struct Remembered {
    entry: DedupEntry,
    turn: u64,
}

impl DedupState {
    /// State kept in the routing store, holding the `entries` loaded from
    /// it; its changes are noted for saving.
    pub fn saved(entries: impl IntoIterator<Item = (DedupKey, DedupEntry)>) -> DedupState {
        let mut entries: Vec<(DedupKey, DedupEntry)> = entries.into_iter().collect();
        entries.sort_by_key(|(_, entry)| entry.let_through_ms);
        let mut state = DedupState {
            saved: true,
            ..DedupState::default()
        };
        for (key, entry) in entries {
            state.remember(key, entry);
        }
        state.changed.clear();
        state
    }

    fn note(&mut self, key: DedupKey) {
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

    /// Decides on the event `rendered` is of, whose severity is `severity`,
    /// at `now_ms` (Unix milliseconds), and remembers the decision.
    pub fn check(
        &mut self,
        rule: &DedupRule,
        rendered: RenderedKey,
        severity: Option<Severity>,
        now_ms: i64,
    ) -> Verdict {
        let window_ms = i64::try_from(rule.window.as_millis()).unwrap_or(i64::MAX);
        let severity = severity.map(severity_rank);
        let (key, event_id) = (rendered.key, rendered.event);
        let carried = match self.entries.get_mut(&key).map(|r| &mut r.entry) {
            Some(entry) if entry.event_id == event_id => {
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
            None => 0,
        };
        let entry = DedupEntry {
            let_through_ms: now_ms,
            severity,
            suppressed: 0,
            event_id,
            carried,
        };
        self.remember(key, entry);
        Verdict::Deliver {
            suppressed: carried,
        }
    }

    /// Remembers `entry` for `key` as the key let through last, forgetting
    /// the key let through longest ago past [`MAX_KEYS`].
    fn remember(&mut self, key: DedupKey, entry: DedupEntry) {
        let turn = self.turn;
        self.turn += 1;
        let fresh = self
            .entries
            .insert(key, Remembered { entry, turn })
            .is_none();
        self.order.push_back((key, turn));
        self.note(key);
        if fresh {
            while self.entries.len() > MAX_KEYS {
                self.forget_oldest();
            }
        }
        // Stale items (keys let through again) are dropped now and then,
        // so the order stays within twice the keys.
        if self.order.len() > 2 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.order
                .retain(|(key, turn)| entries.get(key).is_some_and(|r| r.turn == *turn));
        }
    }

    fn forget_oldest(&mut self) {
        while let Some((key, turn)) = self.order.pop_front() {
            if self.entries.get(&key).is_some_and(|r| r.turn == turn) {
                self.entries.remove(&key);
                self.note(key);
                return;
            }
        }
    }

    /// The keys changed since the last call, each with what to save
    /// (`None`: forget it).
    pub fn take_changes(&mut self) -> Vec<(DedupKey, Option<DedupEntry>)> {
        let entries = &self.entries;
        self.changed
            .drain()
            .map(|key| (key, entries.get(&key).map(|r| r.entry.clone())))
            .collect()
    }

    /// Whether any key changed since the last [`take_changes`](Self::take_changes).
    pub fn has_changes(&self) -> bool {
        !self.changed.is_empty()
    }
}

/// Hashes a [`DedupKey`] as its low 64 bits: it is a hash already.
#[derive(Debug, Clone, Copy, Default)]
struct KeyHash;

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

/// See [`KeyHash`].
#[derive(Debug)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for a `DedupKey` (its `Hash` writes one `u128`); any
        // other bytes are folded in, FNV-1a style.
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x100_0000_01b3);
        }
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
        let rendered = rule.rendered(event).unwrap();
        state.check(rule, rendered, event.severity, now_ms)
    }

    #[test]
    fn the_key_renders_the_event_and_missing_fields_render_empty() {
        let rule = rule(false);
        let drift = event("a", "orders", Some(Severity::High));
        assert_eq!(
            rule.key(&drift).unwrap(),
            DedupKey::of("DataDriftDetected:orders:amount:mean")
        );
        let nested = DedupRule::new("{{ metadata.x.y }}|{{ severity }}", Duration::ZERO, false)
            .unwrap()
            .key(&drift)
            .unwrap();
        assert_eq!(nested, DedupKey::of("|high"));
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
    fn a_key_is_kept_as_the_hash_of_its_text() {
        let rule = DedupRule::new("{{ metadata.table }}", Duration::ZERO, false).unwrap();
        let key = rule.key(&event("a", &"t".repeat(1000), None)).unwrap();
        assert_eq!(key, DedupKey::of(&"t".repeat(1000)));
        assert_eq!(key.to_string().len(), 32);
        // The same in every process: XXH3-128 of the text.
        assert_eq!(
            DedupKey::of("orders").to_string(),
            format!("{:032x}", xxh3_128(b"orders"))
        );
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
        let saved: Vec<(DedupKey, DedupEntry)> = state
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
    fn past_the_key_limit_the_key_let_through_longest_ago_goes() {
        let rule = DedupRule::new("{{ event_id }}", Duration::from_secs(3_600), false).unwrap();
        let mut state = DedupState::saved([]);
        for i in 0..MAX_KEYS {
            check(
                &mut state,
                &rule,
                &event(&i.to_string(), "t", None),
                i as i64,
            );
        }
        // Key 0 let through again (a rule whose window has passed): now
        // the newest.
        let zero = DedupRule::new("0", Duration::from_millis(1), false).unwrap();
        assert_eq!(
            check(&mut state, &zero, &event("again", "t", None), 1_000_000),
            Verdict::Deliver { suppressed: 0 }
        );
        state.take_changes();
        check(&mut state, &rule, &event("new", "t", None), 1_000_001);
        assert_eq!(state.len(), MAX_KEYS);
        let changes = state.take_changes();
        let forgotten: Vec<DedupKey> = changes
            .iter()
            .filter(|(_, entry)| entry.is_none())
            .map(|(key, _)| *key)
            .collect();
        assert_eq!(
            forgotten,
            [DedupKey::of("1")],
            "the oldest but the one let through again"
        );
        // Key 1 is forgotten: an event of it is let through, not suppressed.
        let one = DedupRule::new("1", Duration::from_secs(3_600), false).unwrap();
        assert_eq!(
            check(&mut state, &one, &event("later", "t", None), 1_000_002),
            Verdict::Deliver { suppressed: 0 }
        );
    }
}
