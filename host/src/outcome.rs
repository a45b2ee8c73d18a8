//! What happened when a plugin handled an event, and the running counts of
//! it per plugin.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
    /// Fuel its calls consumed, in all (what each call was given less what
    /// it had left; a call that ran out counts its whole budget).
    pub fuel_consumed: u64,
    /// Where its circuit breaker stands now.
    pub breaker: BreakerState,
    /// Its last few failed deliveries, oldest first, at most
    /// [`RECENT_FAILURES`].
    pub recent_failures: VecDeque<RecentFailure>,
    latency: LatencyHistogram,
}

/// How many failed deliveries a plugin's counts remember, for `GET
/// /plugins` and `hookhost status`: enough to tell one odd failure from a
/// pattern, few enough to read at a glance.
pub const RECENT_FAILURES: usize = 5;

/// Longest message a remembered failure keeps, in bytes: a line of a
/// status table, not the whole error (the dead letters keep that).
pub const RECENT_FAILURE_MESSAGE_BYTES: usize = 512;

/// One failed delivery, as remembered in a plugin's counts.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentFailure {
    /// When it was counted (after the delivery, within the worker's run of
    /// events).
    pub at: SystemTime,
    /// Its class.
    pub class: FailureClass,
    /// Whether it was to be tried again.
    pub retryable: bool,
    /// What happened, cut to [`RECENT_FAILURE_MESSAGE_BYTES`].
    pub message: String,
}

/// Where a plugin's circuit breaker stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BreakerState {
    /// Normal delivery.
    #[default]
    Closed,
    /// Cooling down: nothing is delivered until the cool-down ends.
    Open,
    /// The cool-down is over: one event probes the plugin.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The state as a number, for a gauge: 0 closed, 1 open, 2 half-open.
    pub fn as_number(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// A latency histogram as cumulative buckets, for Prometheus.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyBuckets {
    /// `(upper bound in seconds, deliveries faster than it)`, in increasing
    /// order; the last bound is `f64::INFINITY` and counts every delivery.
    pub buckets: Vec<(f64, u64)>,
    /// Deliveries counted.
    pub count: u64,
    /// Their latencies added up, in seconds.
    pub sum_seconds: f64,
}

/// The exponents `k` of the bounds `2^k` ns of [`PluginStats::latency_buckets`]:
/// every power of four from about 1 µs (2^10 ns) to about 69 s (2^36 ns).
/// A power of two is where a bucket of the log-linear histogram starts, so
/// each bound splits it exactly; powers of four keep the list to 14 bounds
/// across the range a call can take (at most its timeout).
const LATENCY_BOUND_EXPONENTS: std::ops::RangeInclusive<u32> = 10..=36;

impl PluginStats {
    /// Records one delivery's outcome.
    pub fn record(&mut self, outcome: &Outcome) {
        match &outcome.result {
            Ok(()) => self.handled += 1,
            Err(failure) => {
                self.failed[failure.class.index()] += 1;
                self.remember(failure);
            }
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

    /// Keeps `failure` among the last [`RECENT_FAILURES`].
    fn remember(&mut self, failure: &Failure) {
        if self.recent_failures.len() == RECENT_FAILURES {
            self.recent_failures.pop_front();
        }
        let mut message = failure.message.as_str();
        if message.len() > RECENT_FAILURE_MESSAGE_BYTES {
            let mut end = RECENT_FAILURE_MESSAGE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message = &message[..end];
        }
        self.recent_failures.push_back(RecentFailure {
            at: SystemTime::now(),
            class: failure.class,
            retryable: failure.retryable,
            message: message.to_owned(),
        });
    }

    /// The latency of every delivery as cumulative buckets whose bounds
    /// are powers of four of nanoseconds (1.024 µs, 4.096 µs, ... 68.7 s),
    /// written in seconds. A bucket counts the deliveries that took less
    /// than its bound: at most one nanosecond less than Prometheus's `le`
    /// (at most) reads, a difference below what the clock resolves.
    pub fn latency_buckets(&self) -> LatencyBuckets {
        let mut buckets: Vec<(f64, u64)> = LATENCY_BOUND_EXPONENTS
            .step_by(2)
            .map(|k| {
                let bound = 1u64 << k;
                (bound as f64 * 1e-9, self.latency.count_below(bound))
            })
            .collect();
        buckets.push((f64::INFINITY, self.latency.count));
        LatencyBuckets {
            buckets,
            count: self.latency.count,
            sum_seconds: self.latency.sum_nanos as f64 * 1e-9,
        }
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

    /// Values below `bound`, a power of two of at least 16: the buckets
    /// before the one `bound` starts.
    fn count_below(&self, bound: u64) -> u64 {
        self.buckets[..bucket_of(bound)].iter().sum()
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
    fn powers_of_two_split_buckets_exactly() {
        for k in 4..63 {
            let bound = 1u64 << k;
            assert_eq!(bucket_upper_bound(bucket_of(bound) - 1), bound - 1, "2^{k}");
            assert_eq!(bucket_of(bound - 1) + 1, bucket_of(bound), "2^{k}");
        }
    }

    #[test]
    fn latency_buckets_are_cumulative_at_powers_of_four() {
        let mut stats = PluginStats::default();
        let latency = |nanos| Outcome {
            result: Ok(()),
            fate: Fate::Delivered,
            version: Arc::from(""),
            latency: Duration::from_nanos(nanos),
        };
        // Just under, at, and just over 2^20 ns (about 1 ms).
        for nanos in [(1 << 20) - 1, 1 << 20, (1 << 20) + 1, 5] {
            stats.record(&latency(nanos));
        }
        let buckets = stats.latency_buckets();
        assert_eq!(buckets.count, 4);
        assert_eq!(buckets.buckets.len(), 15);
        let at = |seconds: f64| {
            buckets
                .buckets
                .iter()
                .find(|(bound, _)| (bound - seconds).abs() < 1e-12)
                .map(|(_, n)| *n)
        };
        assert_eq!(at(1.024e-6), Some(1));
        assert_eq!(at(0.000262144), Some(1));
        assert_eq!(at(0.001048576), Some(2));
        assert_eq!(at(0.004194304), Some(4));
        assert_eq!(buckets.buckets.last(), Some(&(f64::INFINITY, 4)));
        let counts: Vec<u64> = buckets.buckets.iter().map(|(_, n)| *n).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    }

    #[test]
    fn only_the_last_failures_are_remembered_cut_short() {
        let mut stats = PluginStats::default();
        for n in 0..(RECENT_FAILURES + 3) {
            stats.record(&Outcome {
                result: Err(Failure {
                    class: FailureClass::Trap,
                    retryable: false,
                    message: format!("{n}{}", "é".repeat(RECENT_FAILURE_MESSAGE_BYTES)),
                }),
                fate: Fate::DeadLettered,
                version: Arc::from(""),
                latency: Duration::ZERO,
            });
        }
        assert_eq!(stats.recent_failures.len(), RECENT_FAILURES);
        assert!(stats.recent_failures[0].message.starts_with('3'));
        assert!(stats
            .recent_failures
            .iter()
            .all(|f| f.message.len() <= RECENT_FAILURE_MESSAGE_BYTES));
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
