//! What happened when a plugin handled an event, and the running counts of
//! it per plugin.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why a plugin did not handle an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureClass {
    /// The hook returned a `hook-error`.
    Returned,
    /// The hook trapped: a panic, `unreachable`, a stack overflow, a bad
    /// memory access, or a failed instantiation.
    Trap,
    /// The hook used up its fuel for the event.
    OutOfFuel,
    /// The hook passed its wall-clock timeout, computing or blocked in a
    /// host call.
    Timeout,
    /// The hook tried to grow its memory past its cap.
    OutOfMemory,
}

impl FailureClass {
    /// Every class, in report order.
    pub const ALL: [FailureClass; 5] = [
        FailureClass::Returned,
        FailureClass::Trap,
        FailureClass::OutOfFuel,
        FailureClass::Timeout,
        FailureClass::OutOfMemory,
    ];

    /// A short lowercase name, as used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Returned => "error",
            FailureClass::Trap => "trap",
            FailureClass::OutOfFuel => "fuel",
            FailureClass::Timeout => "timeout",
            FailureClass::OutOfMemory => "memory",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Its class.
    pub class: FailureClass,
    /// Whether delivering the event again might succeed. Returned errors say
    /// so themselves; a timeout is retryable, traps and exhausted limits are
    /// not.
    pub retryable: bool,
    /// What happened, for people.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.message)
    }
}

/// What became of an event for one plugin after a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// The hook handled it: the plugin is done with the event.
    Delivered,
    /// The delivery failed retryably and the event will be delivered again
    /// after this wait.
    Retrying {
        /// How long until the next delivery.
        after: Duration,
    },
    /// The delivery failed permanently, or was the last attempt, or the
    /// event was dropped from a full queue: it went to the dead letters.
    DeadLettered,
    /// The delivery failed retryably after the host began to stop and
    /// its drain timeout had passed: the event stays in the write-ahead log
    /// for the next start or, without one, went to the dead letters.
    Stopped,
    /// A replay of a dead letter: the store says what happened to it.
    Replayed,
    /// Not delivered: a repeat of an event of its `dedup_key` delivered
    /// within the plugin's `dedup_window`. The plugin is done with it.
    Suppressed,
    /// Held with its group (`group_by`), to be delivered in the group's
    /// digest (or batch call) when the group is due; the counts say how
    /// that went.
    Grouped,
}

/// How one plugin dealt with one delivery of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `Ok` when the hook handled the event.
    pub result: Result<(), Failure>,
    /// What the host does with the event next.
    pub fate: Fate,
    /// Content hash (SHA-256, hex) of the plugin version that handled it.
    pub version: Arc<str>,
    /// Time from the start of the call to its end (including instantiating a
    /// fresh instance when one was needed).
    pub latency: Duration,
}

/// Running counts for one plugin.
#[derive(Debug, Clone, Default)]
pub struct PluginStats {
    /// Events handled successfully (on any attempt).
    pub handled: u64,
    /// Failed deliveries (attempts) by class, indexed like
    /// `FailureClass::ALL`.
    failed: [u64; 5],
    /// Failed deliveries that were scheduled to be tried again.
    pub retried: u64,
    /// Events that went to the dead letters (failed permanently, ran out
    /// of attempts, were dropped from a full queue, or were still pending
    /// at shutdown without a write-ahead log).
    pub dead_lettered: u64,
    /// Of `dead_lettered`, events dropped from a full queue
    /// (`on_full = "drop_oldest"`).
    pub dropped: u64,
    /// Events still pending when the host stopped, kept in the write-ahead
    /// log for the next start.
    pub left_in_log: u64,
    /// Of `dead_lettered`, events still pending when the host stopped
    /// without a write-ahead log.
    pub left_to_dead_letters: u64,
    /// Times the circuit breaker opened from normal delivery (a failed
    /// probe opening it again is not counted).
    pub breaker_opened: u64,
    /// Times it closed: a probe succeeded, or a new version or
    /// configuration ended the cool-down.
    pub breaker_closed: u64,
    /// Events its routing (`events`, `min_severity`, `tables`, ...) kept
    /// from it: never delivered, never counted as handled or failed.
    pub filtered: u64,
    /// Deliveries that waited for its `rate_limit`.
    pub rate_limited: u64,
    /// How long they waited, in all.
    pub rate_waited: Duration,
    /// Events not delivered as repeats of their `dedup_key` within its
    /// `dedup_window`: never counted as handled or failed.
    pub suppressed: u64,
    /// Groups delivered (`group_by`): digest events, or a batch hook's
    /// batch calls of one group.
    pub digests: u64,
    /// Events delivered in those groups (each also counted as handled,
    /// failed, ... by how its group's delivery went).
    pub grouped: u64,
    /// Events waiting in open groups now, delivered when their group is
    /// due or the host stops.
    pub held: u64,
    /// Instances created (the first, and one after every trap).
    pub instantiations: u64,
    latency: LatencyHistogram,
}

impl PluginStats {
    /// Records one delivery's outcome.
    pub fn record(&mut self, outcome: &Outcome) {
        match &outcome.result {
            Ok(()) => self.handled += 1,
            Err(failure) => self.failed[failure.class.index()] += 1,
        }
        match outcome.fate {
            Fate::Retrying { .. } => self.retried += 1,
            Fate::DeadLettered => self.dead_lettered += 1,
            // Counted by the worker with the events left at shutdown.
            Fate::Stopped | Fate::Delivered | Fate::Replayed | Fate::Suppressed | Fate::Grouped => {
            }
        }
        self.latency.record(outcome.latency);
    }

    /// Events that failed with `class`.
    pub fn failed(&self, class: FailureClass) -> u64 {
        self.failed[class.index()]
    }

    /// Events that failed, all classes together.
    pub fn failed_total(&self) -> u64 {
        self.failed.iter().sum()
    }

    /// Deliveries made, handled or failed.
    pub fn total(&self) -> u64 {
        self.handled + self.failed_total()
    }

    /// Events the plugin is done with: handled, in the dead letters, left
    /// in the write-ahead log at shutdown, or suppressed as repeats.
    pub fn completed(&self) -> u64 {
        self.handled + self.dead_lettered + self.left_in_log + self.suppressed
    }

    /// Mean latency per event.
    pub fn mean_latency(&self) -> Duration {
        self.latency.mean()
    }

    /// 99th percentile latency (within 1/16 of the true value).
    pub fn p99_latency(&self) -> Duration {
        self.latency.quantile(0.99)
    }
}

/// A log-linear histogram of durations: 16 buckets per power of two of
/// nanoseconds, so any quantile is within 1/16 (6%) of the truth, in a fixed
/// 8 KiB whatever the number of samples.
#[derive(Debug, Clone)]
struct LatencyHistogram {
    buckets: Vec<u64>,
    count: u64,
    sum_nanos: u128,
}

/// Sub-buckets per power of two, as a number of bits.
const SUB_BITS: u32 = 4;

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: vec![0; (64 << SUB_BITS) as usize],
            count: 0,
            sum_nanos: 0,
        }
    }
}

impl LatencyHistogram {
    fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(nanos)] += 1;
        self.count += 1;
        self.sum_nanos += u128::from(nanos);
    }

    fn mean(&self) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let mean = self.sum_nanos / u128::from(self.count);
        Duration::from_nanos(u64::try_from(mean).unwrap_or(u64::MAX))
    }

    fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_nanos(bucket_upper_bound(index));
            }
        }
        Duration::from_nanos(u64::MAX)
    }
}

/// The bucket of a value: values below 16 get one bucket each; above, the
/// position of the highest set bit picks the power of two and the next
/// `SUB_BITS` bits the sub-bucket.
fn bucket_of(nanos: u64) -> usize {
    if nanos < (1 << SUB_BITS) {
        return nanos as usize;
    }
    let high = 63 - nanos.leading_zeros();
    let sub = (nanos >> (high - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    (((high - SUB_BITS + 1) << SUB_BITS) as u64 + sub) as usize
}

/// The largest value that falls in bucket `index`.
fn bucket_upper_bound(index: usize) -> u64 {
    let index = index as u64;
    if index < (1 << SUB_BITS) {
        return index;
    }
    let high = (index >> SUB_BITS) + u64::from(SUB_BITS) - 1;
    let sub = index & ((1 << SUB_BITS) - 1);
    let low = (1u64 << high) | (sub << (high - u64::from(SUB_BITS)));
    low.saturating_add((1u64 << (high - u64::from(SUB_BITS))) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values() {
        for nanos in [
            0,
            1,
            15,
            16,
            17,
            100,
            1_000,
            999_999,
            123_456_789,
            u64::MAX / 3,
        ] {
            let upper = bucket_upper_bound(bucket_of(nanos));
            assert!(upper >= nanos, "{nanos} -> {upper}");
            assert!(upper - nanos <= nanos / 16 + 1, "{nanos} -> {upper}");
        }
    }

    #[test]
    fn p99_of_uniform_samples() {
        let mut histogram = LatencyHistogram::default();
        for micros in 1..=1000 {
            histogram.record(Duration::from_micros(micros));
        }
        let p99 = histogram.quantile(0.99).as_micros() as f64;
        assert!((990.0..=990.0 * 1.07).contains(&p99), "{p99}");
        assert_eq!(histogram.mean(), Duration::from_nanos(500_500));
    }
}
