//! When a failed delivery is tried again: exponential backoff with full
//! jitter, or the wait the hook asked for (an HTTP `Retry-After`).

use std::time::Duration;

use crate::config::Limits;

/// The wait before the delivery that follows failed attempt `attempt` (1
/// for the first delivery): uniform in `[0, min(retry_max, retry_initial ·
/// 2^(attempt-1))]`, drawn from `unit` (a number in `[0, 1)`); at least
/// `hint` when the hook asked for one, and never more than `retry_max`.
pub(crate) fn retry_delay(
    limits: &Limits,
    attempt: u32,
    hint: Option<Duration>,
    unit: f64,
) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    let ceiling = limits
        .retry_initial
        .saturating_mul(1u32 << doublings)
        .min(limits.retry_max);
    let jittered = ceiling.mul_f64(unit.clamp(0.0, 1.0));
    match hint {
        Some(hint) => jittered.max(hint).min(limits.retry_max),
        None => jittered,
    }
}

/// A small, fast source of jitter (xorshift64*), seeded per worker so that
/// plugins failing together do not retry in step.
pub(crate) struct Jitter(u64);

impl Jitter {
    /// A generator seeded from the operating system's randomness (or the
    /// clock, if that fails).
    pub(crate) fn new() -> Jitter {
        let mut seed = [0u8; 8];
        if getrandom::getrandom(&mut seed).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            seed = (nanos as u64).to_le_bytes();
        }
        Jitter(u64::from_le_bytes(seed) | 1)
    }

    /// The next number in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn the_default_schedule_doubles_from_one_second_to_five_minutes() {
        let limits = limits();
        let ceilings: Vec<u64> = (1..=10)
            .map(|n| retry_delay(&limits, n, None, 0.999_999_9).as_secs())
            .collect();
        assert_eq!(ceilings, [0, 1, 3, 7, 15, 31, 63, 127, 255, 299]);
        assert_eq!(retry_delay(&limits, 1, None, 0.0), Duration::ZERO);
        assert_eq!(retry_delay(&limits, 1000, None, 0.999_999_9).as_secs(), 299);
    }

    #[test]
    fn a_hint_raises_the_wait_but_not_past_the_maximum() {
        let limits = limits();
        let hint = Some(Duration::from_secs(30));
        assert_eq!(retry_delay(&limits, 1, hint, 0.5), Duration::from_secs(30));
        let huge = Some(Duration::from_secs(86_400));
        assert_eq!(retry_delay(&limits, 1, huge, 0.5), limits.retry_max);
    }

    #[test]
    fn jitter_is_spread_over_the_unit_interval() {
        let mut jitter = Jitter::new();
        let draws: Vec<f64> = (0..10_000).map(|_| jitter.unit()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let below_half = draws.iter().filter(|x| **x < 0.5).count();
        assert!((4_500..5_500).contains(&below_half), "{below_half}");
    }
}
