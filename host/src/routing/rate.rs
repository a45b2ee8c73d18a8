//! Rate limits: the `rate_limit` key (`"20/min"`) and the token bucket that
//! holds a plugin's events back past it.
//!
//! Events past the limit wait; they are never dropped. The bucket holds
//! `count` tokens (a burst of up to `count` events goes at once) and refills
//! continuously at `count` per `per`, so `"20/min"` lets 20 events through
//! at once and then one every 3 seconds.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Allowed count of a `rate_limit`: 1 to 1,000,000 events per unit. 0 would
/// hold every event back forever (`enabled = false` says that plainly);
/// a million a second is beyond what any destination a hook sends to takes,
/// so a larger number is a typo for "no limit" (leave the key out).
pub const RATE_COUNT_RANGE: RangeInclusive<u32> = 1..=1_000_000;

/// The units of a `rate_limit`, every spelling accepted, with the length of
/// the period. Seconds, minutes and hours are how destinations state their
/// limits (Slack: about one message per second per channel; SMTP relays:
/// so many per hour).
const UNITS: [(&str, u64); 7] = [
    ("s", 1),
    ("sec", 1),
    ("second", 1),
    ("min", 60),
    ("minute", 60),
    ("h", 3_600),
    ("hour", 3_600),
];

/// What `rate_limit` accepts, for error messages.
pub const RATE_LIMIT_FORMS: &str =
    "N/s, N/min or N/h (also N/sec, N/second, N/minute, N/hour), N from 1 to 1000000";

/// A plugin's `rate_limit`: at most `count` events per `per`, with bursts of
/// up to `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    per: Duration,
    count: u32,
}

impl RateLimit {
    /// `count` events per `per`; `None` when `count` is outside
    /// [`RATE_COUNT_RANGE`] or `per` is zero.
    pub fn new(count: u32, per: Duration) -> Option<RateLimit> {
        (RATE_COUNT_RANGE.contains(&count) && !per.is_zero()).then_some(RateLimit { per, count })
    }

    /// Events allowed per [`per`](Self::per), and the largest burst.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period `count` applies to.
    pub fn per(&self) -> Duration {
        self.per
    }
}

impl fmt::Display for RateLimit {
    /// The config file's form, with the short unit (`20/min`); a period
    /// that is not one of the units (a `RateLimit` built in code) as
    /// `20/1.5s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_nanos() {
            n if n == Duration::from_secs(1).as_nanos() => "s",
            n if n == Duration::from_secs(60).as_nanos() => "min",
            n if n == Duration::from_secs(3_600).as_nanos() => "h",
            _ => return write!(f, "{}/{:?}", self.count, self.per),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// Why a `rate_limit` value was refused; the message lists the accepted
/// forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RateLimitError(String);

impl FromStr for RateLimit {
    type Err = RateLimitError;

    /// Reads `N/unit`, spaces allowed around either part.
    fn from_str(text: &str) -> Result<RateLimit, RateLimitError> {
        let refuse = |why: &str| {
            // A short value (any typo) is quoted back, escaped; a long one
            // is not, so the error stays one short line.
            let written = if text.chars().count() <= 32 {
                format!(" = {text:?}")
            } else {
                String::new()
            };
            RateLimitError(format!("rate_limit{written} {why}: {RATE_LIMIT_FORMS}"))
        };
        let (count, unit) = text
            .split_once('/')
            .ok_or_else(|| refuse("is not a rate"))?;
        let (count, unit) = (count.trim(), unit.trim());
        let secs = UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|&(_, secs)| secs)
            .ok_or_else(|| refuse("has an unknown unit"))?;
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refuse("is not a rate"));
        }
        let count = count
            .parse::<u32>()
            .ok()
            .filter(|n| RATE_COUNT_RANGE.contains(n))
            .ok_or_else(|| refuse("is out of range"))?;
        Ok(RateLimit {
            per: Duration::from_secs(secs),
            count,
        })
    }
}

/// A token bucket for one plugin: `count` tokens at most, refilled
/// continuously at `count` per `per`, full at the start.
///
/// Kept as the generic cell rate algorithm in exact integers: time is
/// counted in nanoseconds times `count`, so one event costs exactly
/// `per` in those units and no rounding lets an extra event through.
#[derive(Debug, Clone)]
// Wired into the worker by the integrator; until then only tests use it.
pub(crate) struct RateLimiter {
    limit: RateLimit,
    /// Where the scaled clock starts.
    origin: Instant,
    /// The theoretical arrival time: when the bucket will be full again,
    /// in nanoseconds since `origin` times `count`.
    tat: u128,
}

impl RateLimiter {
    /// A full bucket for `limit` at `now`.
    pub(crate) fn new(limit: RateLimit, now: Instant) -> RateLimiter {
        RateLimiter {
            limit,
            origin: now,
            tat: 0,
        }
    }

    /// The limit this bucket enforces.
    pub(crate) fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes a token at `now`: `None` when one was there (deliver now), or
    /// the instant one will be (wait until then and call again). An instant
    /// before the bucket was made counts as the moment it was made.
    pub(crate) fn take(&mut self, now: Instant) -> Option<Instant> {
        let count = u128::from(self.limit.count);
        let per = self.limit.per.as_nanos();
        let now_scaled = now.saturating_duration_since(self.origin).as_nanos() * count;
        let after = self.tat.max(now_scaled) + per;
        // The bucket holds `count` tokens: the debt after this event may
        // reach `count` events' worth, `per * count`, and no more.
        let capacity = per * count;
        if after - now_scaled <= capacity {
            self.tat = after;
            return None;
        }
        // The first instant at which `after - now_scaled <= capacity`,
        // rounded up to a whole nanosecond so a call then succeeds.
        let ready = (after - capacity).div_ceil(count);
        let ready = u64::try_from(ready).unwrap_or(u64::MAX);
        Some(self.origin + Duration::from_nanos(ready))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(text: &str) -> RateLimit {
        text.parse().unwrap()
    }

    #[test]
    fn every_unit_spelling_is_read() {
        for (text, count, secs) in [
            ("20/min", 20, 60),
            ("20/minute", 20, 60),
            ("5/s", 5, 1),
            ("5/sec", 5, 1),
            ("5/second", 5, 1),
            ("100/h", 100, 3_600),
            ("100/hour", 100, 3_600),
            (" 7 / MIN ", 7, 60),
            ("1/s", 1, 1),
            ("1000000/s", 1_000_000, 1),
        ] {
            let parsed = limit(text);
            assert_eq!(parsed.count(), count, "{text}");
            assert_eq!(parsed.per(), Duration::from_secs(secs), "{text}");
        }
    }

    #[test]
    fn display_is_the_short_form() {
        assert_eq!(limit("20/minute").to_string(), "20/min");
        assert_eq!(limit("3/second").to_string(), "3/s");
        assert_eq!(limit("9/hour").to_string(), "9/h");
        let odd = RateLimit::new(2, Duration::from_millis(1500)).unwrap();
        assert_eq!(odd.to_string(), "2/1.5s");
    }

    #[test]
    fn malformed_values_are_refused_with_the_accepted_forms() {
        for (text, why) in [
            ("20", "is not a rate"),
            ("20/fortnight", "has an unknown unit"),
            ("/min", "is not a rate"),
            ("-1/min", "is not a rate"),
            ("1.5/min", "is not a rate"),
            ("0/min", "is out of range"),
            ("1000001/s", "is out of range"),
            ("99999999999999999999/s", "is out of range"),
            ("20/min/h", "has an unknown unit"),
        ] {
            let err = text.parse::<RateLimit>().unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("rate_limit = {text:?} {why}: N/s, N/min or N/h")),
                "{err}"
            );
            assert!(err.contains("N from 1 to 1000000"), "{err}");
        }
        let long = format!("{}/min", "9".repeat(100));
        let err = long.parse::<RateLimit>().unwrap_err().to_string();
        assert!(err.starts_with("rate_limit is out of range: "), "{err}");
    }

    #[test]
    fn new_refuses_zero_and_too_many() {
        assert!(RateLimit::new(0, Duration::from_secs(1)).is_none());
        assert!(RateLimit::new(1_000_001, Duration::from_secs(1)).is_none());
        assert!(RateLimit::new(1, Duration::ZERO).is_none());
        assert_eq!(
            RateLimit::new(20, Duration::from_secs(60)),
            Some(limit("20/min"))
        );
    }

    #[test]
    fn a_full_bucket_lets_a_burst_of_count_through_then_one_per_interval() {
        let start = Instant::now();
        let mut bucket = RateLimiter::new(limit("3/s"), start);
        assert_eq!(bucket.limit(), limit("3/s"));
        for _ in 0..3 {
            assert_eq!(bucket.take(start), None);
        }
        // Empty: the next token comes a third of a second later.
        let third = Duration::from_nanos(333_333_334);
        assert_eq!(bucket.take(start), Some(start + third));
        // Asking again does not take anything or move the answer.
        assert_eq!(bucket.take(start), Some(start + third));
        assert_eq!(
            bucket.take(start + third - Duration::from_nanos(1)),
            Some(start + third)
        );
        assert_eq!(bucket.take(start + third), None);
        assert!(bucket.take(start + third).is_some());
    }

    #[test]
    fn the_bucket_refills_continuously_up_to_count() {
        let start = Instant::now();
        let mut bucket = RateLimiter::new(limit("20/min"), start);
        for _ in 0..20 {
            assert_eq!(bucket.take(start), None);
        }
        assert_eq!(bucket.take(start), Some(start + Duration::from_secs(3)));
        // Half a minute later ten tokens are back, not more.
        let later = start + Duration::from_secs(30);
        for _ in 0..10 {
            assert_eq!(bucket.take(later), None);
        }
        assert_eq!(bucket.take(later), Some(later + Duration::from_secs(3)));
        // An hour idle fills the bucket to 20, never beyond.
        let idle = start + Duration::from_secs(3_600);
        for _ in 0..20 {
            assert_eq!(bucket.take(idle), None);
        }
        assert_eq!(bucket.take(idle), Some(idle + Duration::from_secs(3)));
    }

    #[test]
    fn waiting_as_told_delivers_at_the_rate_exactly() {
        // A producer far faster than the limit: every event waits as told,
        // and n events past the burst take n intervals.
        let start = Instant::now();
        let mut bucket = RateLimiter::new(limit("7/s"), start);
        let mut now = start;
        let mut sent = 0u32;
        while sent < 7 + 70 {
            match bucket.take(now) {
                None => sent += 1,
                Some(at) => {
                    assert!(at > now);
                    now = at;
                }
            }
        }
        let elapsed = now - start;
        assert!(elapsed >= Duration::from_secs(10), "{elapsed:?}");
        assert!(
            elapsed < Duration::from_secs(10) + Duration::from_micros(1),
            "{elapsed:?}"
        );
    }

    #[test]
    fn no_extra_event_slips_through_rounding() {
        // 1 s / 999,999 is not a whole number of nanoseconds: a bucket that
        // rounded the interval down would let a millionth event through.
        let start = Instant::now();
        let mut bucket = RateLimiter::new(
            RateLimit::new(999_999, Duration::from_secs(1)).unwrap(),
            start,
        );
        for _ in 0..999_999 {
            assert_eq!(bucket.take(start), None);
        }
        let next = bucket.take(start).expect("the bucket is empty");
        assert!(next > start);
    }

    #[test]
    fn an_instant_before_the_bucket_counts_as_its_start() {
        let start = Instant::now() + Duration::from_secs(10);
        let mut bucket = RateLimiter::new(limit("1/h"), start);
        assert_eq!(bucket.take(start - Duration::from_secs(5)), None);
        assert_eq!(bucket.take(start), Some(start + Duration::from_secs(3_600)));
    }
}
