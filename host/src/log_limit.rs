//! A rate limit for the warn line a worker writes for each failed event:
//! a plugin that fails every event, thousands of times a second, would
//! otherwise flood the log. The first [`PER_SECOND`] failures of each
//! second are logged in full; the rest are counted, and the count is logged
//! with the next failure that is. Every failure is still counted in the
//! plugin's stats and reported to callers that asked for outcomes.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures logged in full per plugin per second.
pub(crate) const PER_SECOND: u32 = 10;

/// One plugin's failure-log window.
pub(crate) struct LogLimit {
    window: Mutex<Window>,
}

struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

/// What to do with one failure's log line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Log it, after saying how many were left out before it.
    Log {
        /// Failures not logged since the last one that was.
        suppressed: u64,
    },
    /// Leave it out; it is counted.
    Suppress,
}

impl LogLimit {
    pub(crate) fn new(now: Instant) -> Self {
        LogLimit {
            window: Mutex::new(Window {
                started: now,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether the failure seen at `now` is logged.
    pub(crate) fn admit(&self, now: Instant) -> Admit {
        let Ok(mut window) = self.window.lock() else {
            return Admit::Log { suppressed: 0 };
        };
        if now.duration_since(window.started) >= Duration::from_secs(1) {
            window.started = now;
            window.logged = 0;
        }
        if window.logged < PER_SECOND {
            window.logged += 1;
            Admit::Log {
                suppressed: std::mem::take(&mut window.suppressed),
            }
        } else {
            window.suppressed += 1;
            Admit::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_of_each_second_then_says_how_many_it_left_out() {
        let start = Instant::now();
        let limit = LogLimit::new(start);
        for _ in 0..PER_SECOND {
            assert_eq!(limit.admit(start), Admit::Log { suppressed: 0 });
        }
        for _ in 0..5 {
            assert_eq!(limit.admit(start), Admit::Suppress);
        }
        let next_second = start + Duration::from_secs(1);
        assert_eq!(limit.admit(next_second), Admit::Log { suppressed: 5 });
        assert_eq!(limit.admit(next_second), Admit::Log { suppressed: 0 });
    }
}
