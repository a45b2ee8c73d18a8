//! Limits: the built-in defaults, the range each number may take, the
//! limits as written (`[defaults]`, `[plugins.<name>]`) and as resolved for
//! one plugin, and the readers that refuse a value out of range (or an
//! unknown `on_full` policy, severity or malformed `rate_limit`) with the
//! value's own line and column.

use std::ops::RangeInclusive;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::routing::RateLimit;

/// Fuel per event when nothing is configured: about a billion wasm
/// instructions, a few hundred milliseconds of guest work. Enough for any
/// hook that formats and sends a message; an infinite loop runs out of it
/// well before the default timeout.
pub const DEFAULT_FUEL: u64 = 1_000_000_000;
/// Wall-clock time per event when nothing is configured. Generous, because
/// it also bounds time spent waiting on the network in host calls.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Linear memory a plugin may grow to when nothing is configured. A Rust
/// hook uses 1-2 MiB; interpreted guests (Python, JavaScript) need tens.
pub const DEFAULT_MEMORY_MIB: u64 = 128;
/// Most events a batch hook gets per call when nothing is configured.
pub const DEFAULT_BATCH_SIZE: usize = 500;
/// How long a batch hook's worker waits for a batch to fill when nothing is
/// configured: short enough that an alert is never noticeably late.
pub const DEFAULT_BATCH_WAIT_MS: u64 = 200;
/// Bytes of events that may wait in one plugin's queue when nothing is
/// configured: with events of up to [`DEFAULT_MAX_EVENT_KIB`], the event
/// count alone would let one slow plugin hold gigabytes.
pub const DEFAULT_QUEUE_MIB: u64 = 64;
/// Largest `.wasm` file loaded as a plugin when nothing is configured. A
/// Rust hook is about 0.1 MiB, a Python or JavaScript one under 20 MiB.
pub const DEFAULT_MAX_PLUGIN_MIB: u64 = 64;
/// Largest event accepted when nothing is configured, as its JSON text
/// (1 MiB): a profiler's event is a few hundred bytes, its largest metadata
/// (a whole schema, a sample of rows) well under this.
pub const DEFAULT_MAX_EVENT_KIB: u64 = 1024;
/// Largest request body `hookhost run --listen` reads when nothing is
/// configured (`[server] max_body_kib`): 16 MiB, room for 16 events of the
/// default [`DEFAULT_MAX_EVENT_KIB`] or tens of thousands of a profiler's
/// events in one request. A body is held whole while it is read and its
/// events parsed, so this bounds what one request makes the host hold.
pub const DEFAULT_MAX_BODY_KIB: u64 = 16_384;
/// Events that may wait in one plugin's queue. Past this, `Host::emit`
/// refuses the event (nothing is half-delivered) and `Host::send` waits.
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;
/// Deliveries of one event to one plugin, the first included, when nothing
/// is configured. With the default backoff the seven retries wait at most
/// 1 + 2 + ... + 64 s, about two minutes in all: enough to ride out a
/// restarting destination or a burst of 429s. A longer outage is the
/// circuit breaker's business: while it is open, events wait without
/// spending attempts.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// Upper bound of the wait before the first retry when nothing is
/// configured (full jitter: the wait is anywhere from 0 to this). A 503
/// from a restarting server or a dropped connection is often gone within a
/// second, and an alert retried that soon is still on time.
pub const DEFAULT_RETRY_INITIAL_MS: u64 = 1_000;
/// Longest wait between two tries of one event when nothing is configured;
/// the doubling stops here, and a hook's `retry-after` is cut to it. With
/// the default 1 s start it binds only from the tenth try on (2^9 s is more
/// than five minutes), so it matters once `max_attempts` is raised.
pub const DEFAULT_RETRY_MAX_MS: u64 = 300_000;
/// Failures in a row (retryable errors, timeouts, traps) that put a plugin
/// aside when nothing is configured. One or two are the noise of any
/// network and are retried anyway; five in a row say the destination is
/// down, and stopping then saves the attempts of every event behind them.
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 5;
/// How long a plugin is first put aside when nothing is configured: long
/// enough for a restarting service to come back, short enough that delivery
/// resumes soon after it does.
pub const DEFAULT_BREAKER_COOLDOWN_MS: u64 = 30_000;
/// Longest cool-down when nothing is configured; each failed probe doubles
/// the cool-down up to this. A destination down for hours is probed six
/// times an hour rather than flooded, and is found again within ten minutes
/// of its recovery.
pub const DEFAULT_BREAKER_MAX_COOLDOWN_MS: u64 = 600_000;

/// How long repeats of a `dedup_key` are suppressed when `dedup_window` is
/// left out: an hour, the suppression interval data-quality tools start
/// with; a drift still there an hour later is worth saying again.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(3_600);
/// How long a new group gathers events when `group_wait` is left out:
/// Alertmanager's default, long enough for a profiling run's burst of
/// events about one table to arrive.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
/// Least time between two deliveries of one group when `group_interval` is
/// left out: Alertmanager's default.
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);

/// Allowed `dedup_window`: one second to 30 days. A key is remembered for
/// its window, so a longer one holds more keys; a month covers a monthly
/// job.
pub const DEDUP_WINDOW_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(30 * 86_400);
/// Allowed `group_wait`: 0 (deliver each group at once: only
/// `group_interval` then gathers) to one day; the group's events hold
/// their bytes of the plugin's queue while they wait.
pub const GROUP_WAIT_RANGE: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(86_400);
/// Allowed `group_interval`: one second to one day (a daily digest).
pub const GROUP_INTERVAL_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(86_400);

/// Allowed `fuel`: at least 1, since 0 fails every event before its first
/// instruction; at most TOML's largest integer. Wasmtime takes any `u64`
/// (it refills in slices), and 2^63 instructions is centuries of work, so
/// the top of the range is "unlimited" in practice: the timeout then stops
/// a runaway hook.
pub const FUEL_RANGE: RangeInclusive<u64> = 1..=i64::MAX as u64;
/// Allowed `timeout_ms`: 1 ms to one hour. The deadline is the start of the
/// call plus the timeout, which must not overflow; and a hook that needs an
/// hour per event holds up every event behind it in its queue.
pub const TIMEOUT_MS_RANGE: RangeInclusive<u64> = 1..=3_600_000;
/// Allowed `memory_mib`: 1 MiB to 4 GiB. The engine's pooling allocator
/// (`engine.rs`) leaves `PoolingAllocationConfig::max_memory_size` at its
/// default, 4 GiB per linear memory on 64-bit hosts, which is also all a
/// 32-bit wasm memory can address; a larger cap could never be reached.
pub const MEMORY_MIB_RANGE: RangeInclusive<u64> = 1..=4096;
/// Allowed `queue_capacity`: at least one event; at most 2^24. Tokio's
/// bounded channel panics above `usize::MAX >> 3`; well below that, 2^24
/// events is 256 times the default, and `queue_mib` stops a queue of real
/// events (a hundred bytes and more) long before it holds that many.
pub const QUEUE_CAPACITY_RANGE: RangeInclusive<u64> = 1..=(1 << 24);
/// Allowed `queue_mib`: 1 MiB to 64 GiB of events waiting per plugin; more
/// than any machine hookhost runs on should give one slow plugin.
pub const QUEUE_MIB_RANGE: RangeInclusive<u64> = 1..=65_536;
/// Allowed `batch_size`: 1 to 65,536 events per `handle-batch` call. The
/// whole batch is copied into the hook's memory in one call: 65,536 events
/// of a few hundred bytes is tens of MiB, most of the default memory cap.
pub const BATCH_SIZE_RANGE: RangeInclusive<u64> = 1..=65_536;
/// Allowed `batch_wait_ms`: 0 (deliver what is queued at once) to one
/// minute; an alert held longer than that for a batch to fill is late.
pub const BATCH_WAIT_MS_RANGE: RangeInclusive<u64> = 0..=60_000;
/// Allowed `max_plugin_mib`: 1 MiB to 1 GiB. The largest hooks (Python and
/// JavaScript interpreters) are under 20 MiB; a file 50 times that would
/// take many minutes to compile.
pub const MAX_PLUGIN_MIB_RANGE: RangeInclusive<u64> = 1..=1024;
/// Allowed `max_event_kib`: 1 KiB to 64 MiB. An event is parsed into a JSON
/// tree several times its size and copied into every plugin's memory, so a
/// 64 MiB event already needs more than the default memory cap.
pub const MAX_EVENT_KIB_RANGE: RangeInclusive<u64> = 1..=65_536;
/// Allowed `max_body_kib`: 1 KiB to 1 GiB. A body is read whole and parsed
/// into a JSON tree several times its size; past a gigabyte, a few
/// concurrent requests would hold more memory than these machines have.
pub const MAX_BODY_KIB_RANGE: RangeInclusive<u64> = 1..=1_048_576;
/// Allowed `max_attempts`: 1 (no retries) to 100. An event being retried
/// keeps its bytes in the plugin's queue; past a hundred tries, with waits of
/// up to a day each, an event would hold them for months, far longer than
/// any destination stays down.
pub const MAX_ATTEMPTS_RANGE: RangeInclusive<u64> = 1..=100;
/// Allowed `retry_initial_ms`: 1 ms to one hour. 0 would make every wait 0,
/// a busy loop against a failing destination; a first retry later than an
/// hour is no longer a retry of a transient failure (later waits can grow
/// longer through `retry_max_ms`).
pub const RETRY_INITIAL_MS_RANGE: RangeInclusive<u64> = 1..=3_600_000;
/// Allowed `retry_max_ms`: 1 ms to one day, which covers the longest waits
/// of the webhook services teams know (Svix waits at most 10 hours between
/// tries). A value below `retry_initial_ms` is taken as `retry_initial_ms`.
pub const RETRY_MAX_MS_RANGE: RangeInclusive<u64> = 1..=86_400_000;
/// Allowed `breaker_threshold`: 0 (no breaker) to 10,000 failures in a row.
/// A breaker that waits for more failures than that opens too late to
/// spare anything: 0 says "no breaker" plainly.
pub const BREAKER_THRESHOLD_RANGE: RangeInclusive<u64> = 0..=10_000;
/// Allowed `breaker_cooldown_ms`: 1 ms to one day; a plugin put aside for
/// longer holds its events back for longer than anyone waits for an alert.
pub const BREAKER_COOLDOWN_MS_RANGE: RangeInclusive<u64> = 1..=86_400_000;
/// Allowed `breaker_max_cooldown_ms`: 1 ms to one day, like
/// `breaker_cooldown_ms`. A value below `breaker_cooldown_ms` is taken as
/// `breaker_cooldown_ms` (the cool-down then never grows).
pub const BREAKER_MAX_COOLDOWN_MS_RANGE: RangeInclusive<u64> = 1..=86_400_000;

/// What a plugin's full queue (`queue_capacity` events or `queue_mib`) does
/// with one more event: the `on_full` key, written `"reject"`, `"wait"` or
/// `"drop_oldest"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnFull {
    /// The event is refused (queue-full, naming the plugin), for every
    /// plugin: acceptance is all or nothing. The default.
    #[default]
    Reject,
    /// The producer waits until there is room (back-pressure).
    Wait,
    /// The oldest event waiting is dropped to make room; it goes to the
    /// dead letters with class `dropped`.
    DropOldest,
}

impl OnFull {
    /// Every policy, in the order errors list them.
    pub const ALL: [OnFull; 3] = [OnFull::Reject, OnFull::Wait, OnFull::DropOldest];

    /// The policy's name in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFull::Reject => "reject",
            OnFull::Wait => "wait",
            OnFull::DropOldest => "drop_oldest",
        }
    }
}

impl<'de> Deserialize<'de> for OnFull {
    /// Reads a policy's name; anything else is refused naming the key and
    /// the three names: `on_full = "fifo" is not a policy: "reject",
    /// "wait" or "drop_oldest"`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OnFull, D::Error> {
        d.deserialize_any(ranged::OnFullVisitor)
    }
}

/// Limits as written in the file; anything left out falls back to the
/// `[defaults]` section and then to the built-in defaults above.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Fuel per event (`DEFAULT_FUEL`, within [`FUEL_RANGE`]).
    #[serde(default, deserialize_with = "ranged::fuel")]
    pub fuel: Option<u64>,
    /// Wall-clock timeout per event in milliseconds (`DEFAULT_TIMEOUT_MS`,
    /// within [`TIMEOUT_MS_RANGE`]).
    #[serde(default, deserialize_with = "ranged::timeout_ms")]
    pub timeout_ms: Option<u64>,
    /// Memory cap in MiB (`DEFAULT_MEMORY_MIB`, within
    /// [`MEMORY_MIB_RANGE`]).
    #[serde(default, deserialize_with = "ranged::memory_mib")]
    pub memory_mib: Option<u64>,
    /// Queue capacity in events (`DEFAULT_QUEUE_CAPACITY`, within
    /// [`QUEUE_CAPACITY_RANGE`]).
    #[serde(default, deserialize_with = "ranged::queue_capacity")]
    pub queue_capacity: Option<usize>,
    /// Queue capacity in MiB of events (`DEFAULT_QUEUE_MIB`, within
    /// [`QUEUE_MIB_RANGE`]).
    #[serde(default, deserialize_with = "ranged::queue_mib")]
    pub queue_mib: Option<u64>,
    /// Keep one instance across events (`true`, the default) or give every
    /// event a fresh instance, so no state carries from one to the next.
    pub reuse_instance: Option<bool>,
    /// Batch hooks only: most events per call (`DEFAULT_BATCH_SIZE`, within
    /// [`BATCH_SIZE_RANGE`]).
    #[serde(default, deserialize_with = "ranged::batch_size")]
    pub batch_size: Option<usize>,
    /// Batch hooks only: how long to wait for a batch to fill before
    /// delivering what is queued, in milliseconds (`DEFAULT_BATCH_WAIT_MS`,
    /// within [`BATCH_WAIT_MS_RANGE`]).
    #[serde(default, deserialize_with = "ranged::batch_wait_ms")]
    pub batch_wait_ms: Option<u64>,
    /// Deliveries of one event, the first included
    /// (`DEFAULT_MAX_ATTEMPTS`, within [`MAX_ATTEMPTS_RANGE`]).
    #[serde(default, deserialize_with = "ranged::max_attempts")]
    pub max_attempts: Option<u32>,
    /// Upper bound of the wait before the first retry, in milliseconds
    /// (`DEFAULT_RETRY_INITIAL_MS`, within [`RETRY_INITIAL_MS_RANGE`]).
    #[serde(default, deserialize_with = "ranged::retry_initial_ms")]
    pub retry_initial_ms: Option<u64>,
    /// Longest wait between two tries, in milliseconds
    /// (`DEFAULT_RETRY_MAX_MS`, within [`RETRY_MAX_MS_RANGE`]).
    #[serde(default, deserialize_with = "ranged::retry_max_ms")]
    pub retry_max_ms: Option<u64>,
    /// Failures in a row that put the plugin aside, 0 for no breaker
    /// (`DEFAULT_BREAKER_THRESHOLD`, within [`BREAKER_THRESHOLD_RANGE`]).
    #[serde(default, deserialize_with = "ranged::breaker_threshold")]
    pub breaker_threshold: Option<u32>,
    /// First cool-down, in milliseconds (`DEFAULT_BREAKER_COOLDOWN_MS`,
    /// within [`BREAKER_COOLDOWN_MS_RANGE`]).
    #[serde(default, deserialize_with = "ranged::breaker_cooldown_ms")]
    pub breaker_cooldown_ms: Option<u64>,
    /// Longest cool-down, in milliseconds
    /// (`DEFAULT_BREAKER_MAX_COOLDOWN_MS`, within
    /// [`BREAKER_MAX_COOLDOWN_MS_RANGE`]).
    #[serde(default, deserialize_with = "ranged::breaker_max_cooldown_ms")]
    pub breaker_max_cooldown_ms: Option<u64>,
    /// What a full queue does with one more event ([`OnFull::Reject`]).
    pub on_full: Option<OnFull>,
}

/// The limits one plugin runs under, every value resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel per event.
    pub fuel: u64,
    /// Wall-clock timeout per event.
    pub timeout: Duration,
    /// Memory cap in bytes.
    pub memory_bytes: usize,
    /// Queue capacity in events.
    pub queue_capacity: usize,
    /// Queue capacity in bytes of events (their JSON size).
    pub queue_bytes: usize,
    /// Whether one instance serves many events (until it traps).
    pub reuse_instance: bool,
    /// Batch hooks: most events per call.
    pub batch_size: usize,
    /// Batch hooks: longest wait for a batch to fill.
    pub batch_wait: Duration,
    /// Deliveries of one event, the first included (at least 1).
    pub max_attempts: u32,
    /// Upper bound of the wait before the first retry; it doubles with each
    /// retry after.
    pub retry_initial: Duration,
    /// Longest wait between two tries; never below `retry_initial`.
    pub retry_max: Duration,
    /// Failures in a row that put the plugin aside; 0: never.
    pub breaker_threshold: u32,
    /// First cool-down of a plugin put aside.
    pub breaker_cooldown: Duration,
    /// Longest cool-down; never below `breaker_cooldown`.
    pub breaker_max_cooldown: Duration,
    /// What a full queue does with one more event.
    pub on_full: OnFull,
    /// At most so many events per period, past which events wait; `None`:
    /// no limit. Per plugin only (`[plugins.<name>] rate_limit`): a limit
    /// is about one destination, so `[defaults]` has none.
    pub rate_limit: Option<RateLimit>,
}

impl Default for Limits {
    fn default() -> Self {
        LimitsConfig::default().resolve(&LimitsConfig::default())
    }
}

impl LimitsConfig {
    /// Fills what `self` leaves out from `fallback`, then from the built-in
    /// defaults.
    pub(super) fn resolve(&self, fallback: &LimitsConfig) -> Limits {
        // Values from a file are checked when it is read; a `Config` built
        // in code is clamped here, so no value can make the engine or the
        // queues panic.
        let pick = |own: Option<u64>, other: Option<u64>, default: u64, range| {
            clamp(own.or(other).unwrap_or(default), range)
        };
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let as_u64 = |n: Option<usize>| n.map(|n| u64::try_from(n).unwrap_or(u64::MAX));
        let mib = pick(
            self.memory_mib,
            fallback.memory_mib,
            DEFAULT_MEMORY_MIB,
            &MEMORY_MIB_RANGE,
        );
        let queue_mib = pick(
            self.queue_mib,
            fallback.queue_mib,
            DEFAULT_QUEUE_MIB,
            &QUEUE_MIB_RANGE,
        );
        let millis =
            |own, other, default, range| Duration::from_millis(pick(own, other, default, range));
        // Every `u32` key's range fits in a `u32`.
        let count = |own: Option<u32>, other: Option<u32>, default: u32, range| {
            let n = pick(
                own.map(u64::from),
                other.map(u64::from),
                u64::from(default),
                range,
            );
            u32::try_from(n).unwrap_or(u32::MAX)
        };
        let retry_initial = millis(
            self.retry_initial_ms,
            fallback.retry_initial_ms,
            DEFAULT_RETRY_INITIAL_MS,
            &RETRY_INITIAL_MS_RANGE,
        );
        let breaker_cooldown = millis(
            self.breaker_cooldown_ms,
            fallback.breaker_cooldown_ms,
            DEFAULT_BREAKER_COOLDOWN_MS,
            &BREAKER_COOLDOWN_MS_RANGE,
        );
        Limits {
            fuel: pick(self.fuel, fallback.fuel, DEFAULT_FUEL, &FUEL_RANGE),
            timeout: Duration::from_millis(pick(
                self.timeout_ms,
                fallback.timeout_ms,
                DEFAULT_TIMEOUT_MS,
                &TIMEOUT_MS_RANGE,
            )),
            memory_bytes: size(mib.saturating_mul(1 << 20)),
            queue_capacity: size(pick(
                as_u64(self.queue_capacity),
                as_u64(fallback.queue_capacity),
                DEFAULT_QUEUE_CAPACITY as u64,
                &QUEUE_CAPACITY_RANGE,
            )),
            queue_bytes: size(queue_mib.saturating_mul(1 << 20)),
            reuse_instance: self
                .reuse_instance
                .or(fallback.reuse_instance)
                .unwrap_or(true),
            batch_size: size(pick(
                as_u64(self.batch_size),
                as_u64(fallback.batch_size),
                DEFAULT_BATCH_SIZE as u64,
                &BATCH_SIZE_RANGE,
            )),
            batch_wait: Duration::from_millis(pick(
                self.batch_wait_ms,
                fallback.batch_wait_ms,
                DEFAULT_BATCH_WAIT_MS,
                &BATCH_WAIT_MS_RANGE,
            )),
            max_attempts: count(
                self.max_attempts,
                fallback.max_attempts,
                DEFAULT_MAX_ATTEMPTS,
                &MAX_ATTEMPTS_RANGE,
            ),
            retry_initial,
            retry_max: millis(
                self.retry_max_ms,
                fallback.retry_max_ms,
                DEFAULT_RETRY_MAX_MS,
                &RETRY_MAX_MS_RANGE,
            )
            .max(retry_initial),
            breaker_threshold: count(
                self.breaker_threshold,
                fallback.breaker_threshold,
                DEFAULT_BREAKER_THRESHOLD,
                &BREAKER_THRESHOLD_RANGE,
            ),
            breaker_cooldown,
            breaker_max_cooldown: millis(
                self.breaker_max_cooldown_ms,
                fallback.breaker_max_cooldown_ms,
                DEFAULT_BREAKER_MAX_COOLDOWN_MS,
                &BREAKER_MAX_COOLDOWN_MS_RANGE,
            )
            .max(breaker_cooldown),
            on_full: self.on_full.or(fallback.on_full).unwrap_or_default(),
            rate_limit: None,
        }
    }
}

/// `value` moved into `range` (for values that did not come from a file).
pub(super) fn clamp(value: u64, range: &RangeInclusive<u64>) -> u64 {
    value.clamp(*range.start(), *range.end())
}

/// Readers for the numeric keys, used with `deserialize_with` so that a
/// value out of range is an error of the TOML reader itself, which names
/// the value's own line and column: `timeout_ms = 0 is out of range: 1 to
/// 3600000 ms`.
pub(super) mod ranged {
    use std::fmt;
    use std::ops::RangeInclusive;

    use serde::de::{self, Unexpected, Visitor};

    use super::*;
    use crate::bindings::Severity;
    use crate::routing::{RATE_LIMIT_FORMS, SEVERITIES};

    /// One numeric key: its name, allowed range and unit.
    struct Key {
        name: &'static str,
        range: RangeInclusive<u64>,
        unit: &'static str,
    }

    impl Key {
        fn out_of_range<E: de::Error>(&self, value: impl fmt::Display) -> E {
            E::custom(format_args!(
                "{} = {value} is out of range: {} to {}{}",
                self.name,
                self.range.start(),
                self.range.end(),
                self.unit
            ))
        }
    }

    impl<'de> Visitor<'de> for &Key {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(
                f,
                "{} as a whole number from {} to {}{}",
                self.name,
                self.range.start(),
                self.range.end(),
                self.unit
            )
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<u64, E> {
            if self.range.contains(&value) {
                Ok(value)
            } else {
                Err(self.out_of_range(value))
            }
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<u64, E> {
            match u64::try_from(value) {
                Ok(value) => self.visit_u64(value),
                Err(_) => Err(self.out_of_range(value)),
            }
        }

        fn visit_str<E: de::Error>(self, _: &str) -> Result<u64, E> {
            // Not `Unexpected::Str`: that would quote a string of any size
            // back into the error.
            Err(E::invalid_type(Unexpected::Other("a string"), &self))
        }
    }

    fn read<'de, D: Deserializer<'de>>(d: D, key: &Key) -> Result<u64, D::Error> {
        d.deserialize_any(key)
    }

    macro_rules! keys {
        ($($name:ident: $ty:ty, $range:expr, $unit:expr;)*) => {$(
            pub(in crate::config) fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$ty>, D::Error> {
                let key = Key { name: stringify!($name), range: $range, unit: $unit };
                let value = read(d, &key)?;
                <$ty>::try_from(value).map(Some).map_err(|_| key.out_of_range(value))
            }
        )*};
    }

    keys! {
        fuel: u64, FUEL_RANGE, "";
        timeout_ms: u64, TIMEOUT_MS_RANGE, " ms";
        memory_mib: u64, MEMORY_MIB_RANGE, " MiB";
        queue_capacity: usize, QUEUE_CAPACITY_RANGE, " events";
        queue_mib: u64, QUEUE_MIB_RANGE, " MiB";
        batch_size: usize, BATCH_SIZE_RANGE, " events";
        batch_wait_ms: u64, BATCH_WAIT_MS_RANGE, " ms";
        max_plugin_mib: u64, MAX_PLUGIN_MIB_RANGE, " MiB";
        max_event_kib: u64, MAX_EVENT_KIB_RANGE, " KiB";
        max_body_kib: u64, MAX_BODY_KIB_RANGE, " KiB";
        max_attempts: u32, MAX_ATTEMPTS_RANGE, " attempts";
        retry_initial_ms: u64, RETRY_INITIAL_MS_RANGE, " ms";
        retry_max_ms: u64, RETRY_MAX_MS_RANGE, " ms";
        breaker_threshold: u32, BREAKER_THRESHOLD_RANGE, " failures";
        breaker_cooldown_ms: u64, BREAKER_COOLDOWN_MS_RANGE, " ms";
        breaker_max_cooldown_ms: u64, BREAKER_MAX_COOLDOWN_MS_RANGE, " ms";
    }

    /// `value` quoted back after the key (` = "fifo"`) when short (any
    /// typo), escaped; nothing when long, so the error stays one short line.
    fn written(value: &str) -> String {
        if value.chars().count() <= 32 {
            format!(" = {value:?}")
        } else {
            String::new()
        }
    }

    /// Reads `min_severity`: one of the five severity words, in any case.
    pub(in crate::config) fn min_severity<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Severity>, D::Error> {
        d.deserialize_any(SeverityVisitor).map(Some)
    }

    struct SeverityVisitor;

    impl SeverityVisitor {
        /// `"info", "low", "medium", "high" or "critical"`.
        fn names() -> String {
            let quoted: Vec<String> = SEVERITIES.iter().map(|s| format!("\"{s}\"")).collect();
            let (last, rest) = quoted.split_last().expect("five severities");
            format!("{} or {last}", rest.join(", "))
        }
    }

    impl<'de> Visitor<'de> for SeverityVisitor {
        type Value = Severity;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "min_severity as one of {}", Self::names())
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Severity, E> {
            SEVERITIES
                .into_iter()
                .find(|s| s.to_string().eq_ignore_ascii_case(value))
                .ok_or_else(|| {
                    E::custom(format_args!(
                        "min_severity{} is not a severity: {}",
                        written(value),
                        Self::names()
                    ))
                })
        }
    }

    /// Reads `rate_limit`: `N/unit` (see [`RateLimit`]'s `FromStr`).
    pub(in crate::config) fn rate_limit<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<RateLimit>, D::Error> {
        d.deserialize_any(RateLimitVisitor).map(Some)
    }

    struct RateLimitVisitor;

    impl<'de> Visitor<'de> for RateLimitVisitor {
        type Value = RateLimit;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "rate_limit as a string: {RATE_LIMIT_FORMS}")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<RateLimit, E> {
            value.parse().map_err(E::custom)
        }
    }

    /// One duration key: a string humantime reads (`"30s"`, `"5m"`,
    /// `"1h 30m"`), within its range.
    struct DurationKey {
        name: &'static str,
        range: RangeInclusive<Duration>,
    }

    impl<'de> Visitor<'de> for &DurationKey {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(
                f,
                "{} as a duration such as \"30s\", \"5m\" or \"1h\"",
                self.name
            )
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Duration, E> {
            let duration = humantime::parse_duration(value).map_err(|err| {
                E::custom(format_args!(
                    "{}{} is not a duration ({err}): write it like \"30s\", \"5m\" or \"1h\"",
                    self.name,
                    written(value)
                ))
            })?;
            if self.range.contains(&duration) {
                return Ok(duration);
            }
            Err(E::custom(format_args!(
                "{}{} is out of range: {} to {}",
                self.name,
                written(value),
                humantime::format_duration(*self.range.start()),
                humantime::format_duration(*self.range.end())
            )))
        }
    }

    macro_rules! duration_keys {
        ($($name:ident: $range:expr;)*) => {$(
            pub(in crate::config) fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
                let key = DurationKey { name: stringify!($name), range: $range };
                d.deserialize_any(&key).map(Some)
            }
        )*};
    }

    duration_keys! {
        dedup_window: DEDUP_WINDOW_RANGE;
        group_wait: GROUP_WAIT_RANGE;
        group_interval: GROUP_INTERVAL_RANGE;
    }

    /// Reads a list of name patterns (`events`, `exclude_events`, `tables`,
    /// `columns`): strings, none of them empty (an empty pattern matches
    /// nothing, surely not what was meant).
    fn patterns<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<Vec<String>, D::Error> {
        let list = Vec::<String>::deserialize(d)?;
        match list.iter().position(|p| p.is_empty()) {
            Some(i) => Err(de::Error::custom(format_args!(
                "{key}[{i}] is empty: a pattern names an event type or name, `*` matches any run of characters"
            ))),
            None => Ok(list),
        }
    }

    macro_rules! pattern_keys {
        ($($name:ident),*) => {$(
            pub(in crate::config) fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
                patterns(d, stringify!($name))
            }
        )*};
    }

    pattern_keys!(events, exclude_events, tables, columns);

    /// Reads `on_full`: one of [`OnFull::ALL`] by name.
    pub(super) struct OnFullVisitor;

    impl OnFullVisitor {
        /// `"reject", "wait" or "drop_oldest"`.
        fn names() -> String {
            let quoted: Vec<String> = OnFull::ALL
                .iter()
                .map(|policy| format!("\"{}\"", policy.as_str()))
                .collect();
            let (last, rest) = quoted.split_last().expect("three policies");
            format!("{} or {last}", rest.join(", "))
        }
    }

    impl<'de> Visitor<'de> for OnFullVisitor {
        type Value = OnFull;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "on_full as one of {}", Self::names())
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<OnFull, E> {
            if let Some(policy) = OnFull::ALL.into_iter().find(|p| p.as_str() == value) {
                return Ok(policy);
            }
            Err(E::custom(format_args!(
                "on_full{} is not a policy: {}",
                written(value),
                Self::names()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_defaults_when_nothing_is_written() {
        let limits = Limits::default();
        assert_eq!(limits.max_attempts, 8);
        assert_eq!(limits.retry_initial, Duration::from_secs(1));
        assert_eq!(limits.retry_max, Duration::from_secs(300));
        assert_eq!(limits.breaker_threshold, 5);
        assert_eq!(limits.breaker_cooldown, Duration::from_secs(30));
        assert_eq!(limits.breaker_max_cooldown, Duration::from_secs(600));
        assert_eq!(limits.on_full, OnFull::Reject);
    }

    #[test]
    fn own_values_win_over_fallback_key_by_key() {
        let own = LimitsConfig {
            max_attempts: Some(3),
            breaker_threshold: Some(0),
            on_full: Some(OnFull::DropOldest),
            ..LimitsConfig::default()
        };
        let fallback = LimitsConfig {
            max_attempts: Some(20),
            retry_initial_ms: Some(250),
            breaker_cooldown_ms: Some(5_000),
            on_full: Some(OnFull::Wait),
            ..LimitsConfig::default()
        };
        let limits = own.resolve(&fallback);
        assert_eq!(limits.max_attempts, 3);
        assert_eq!(limits.breaker_threshold, 0, "0 (no breaker) is kept");
        assert_eq!(limits.on_full, OnFull::DropOldest);
        assert_eq!(limits.retry_initial, Duration::from_millis(250));
        assert_eq!(limits.breaker_cooldown, Duration::from_secs(5));
        assert_eq!(limits.retry_max, Duration::from_secs(300));
        let limits = LimitsConfig::default().resolve(&fallback);
        assert_eq!(limits.on_full, OnFull::Wait);
    }

    #[test]
    fn values_built_in_code_are_clamped_into_their_ranges() {
        let low = LimitsConfig {
            max_attempts: Some(0),
            retry_initial_ms: Some(0),
            retry_max_ms: Some(0),
            breaker_cooldown_ms: Some(0),
            breaker_max_cooldown_ms: Some(0),
            ..LimitsConfig::default()
        };
        let limits = low.resolve(&LimitsConfig::default());
        assert_eq!(limits.max_attempts, 1);
        assert_eq!(limits.retry_initial, Duration::from_millis(1));
        assert_eq!(limits.retry_max, Duration::from_millis(1));
        assert_eq!(limits.breaker_cooldown, Duration::from_millis(1));
        assert_eq!(limits.breaker_max_cooldown, Duration::from_millis(1));
        let high = LimitsConfig {
            max_attempts: Some(u32::MAX),
            retry_initial_ms: Some(u64::MAX),
            retry_max_ms: Some(u64::MAX),
            breaker_threshold: Some(u32::MAX),
            breaker_cooldown_ms: Some(u64::MAX),
            breaker_max_cooldown_ms: Some(u64::MAX),
            ..LimitsConfig::default()
        };
        let limits = high.resolve(&LimitsConfig::default());
        assert_eq!(limits.max_attempts, 100);
        assert_eq!(limits.retry_initial, Duration::from_secs(3_600));
        assert_eq!(limits.retry_max, Duration::from_secs(86_400));
        assert_eq!(limits.breaker_threshold, 10_000);
        assert_eq!(limits.breaker_cooldown, Duration::from_secs(86_400));
        assert_eq!(limits.breaker_max_cooldown, Duration::from_secs(86_400));
    }

    #[test]
    fn a_maximum_below_its_start_is_raised_to_the_start() {
        // The plugin's start against the fallback's maximum: the maximum
        // follows whichever start applies.
        let own = LimitsConfig {
            retry_initial_ms: Some(600_000),
            breaker_cooldown_ms: Some(900_000),
            ..LimitsConfig::default()
        };
        let fallback = LimitsConfig {
            retry_max_ms: Some(60_000),
            ..LimitsConfig::default()
        };
        let limits = own.resolve(&fallback);
        assert_eq!(limits.retry_initial, Duration::from_secs(600));
        assert_eq!(limits.retry_max, Duration::from_secs(600));
        assert_eq!(limits.breaker_cooldown, Duration::from_secs(900));
        assert_eq!(limits.breaker_max_cooldown, Duration::from_secs(900));
        // A maximum above its start is kept as written.
        let limits = fallback.resolve(&LimitsConfig::default());
        assert_eq!(limits.retry_max, Duration::from_secs(60));
    }

    #[test]
    fn no_rate_limit_unless_a_plugin_sets_one() {
        // Resolving `[defaults]` never gives one: `rate_limit` is per plugin.
        assert_eq!(Limits::default().rate_limit, None);
        let limits = LimitsConfig::default().resolve(&LimitsConfig::default());
        assert_eq!(limits.rate_limit, None);
    }

    #[test]
    fn on_full_names_are_the_config_spellings() {
        let names: Vec<&str> = OnFull::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, ["reject", "wait", "drop_oldest"]);
        assert_eq!(OnFull::default(), OnFull::Reject);
    }
}
