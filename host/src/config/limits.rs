//! Limits: the built-in defaults, the range each number may take, the
//! limits as written (`[defaults]`, `[plugins.<name>]`) and as resolved for
//! one plugin, and the readers that refuse a value out of range with the
//! value's own line and column.

use std::ops::RangeInclusive;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

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
/// Largest event accepted when nothing is configured, as its JSON text: a
/// profiler's event is a few hundred bytes, its largest metadata (a whole
/// schema, a sample of rows) well under this.
pub const DEFAULT_MAX_EVENT_KIB: u64 = 4096;
/// Events that may wait in one plugin's queue. Past this, `Host::emit`
/// refuses the event (nothing is half-delivered) and `Host::send` waits.
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;

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
    }
}
