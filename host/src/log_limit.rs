//! Per-plugin limits on what a plugin can put in the host log.
//!
//! Two uses, one mechanism: the warn line a worker writes for each failed
//! event ([`LogLimit::new`]: a plugin that fails every event, thousands of
//! times a second, would otherwise flood the log), and everything a plugin
//! writes itself through the `log` import and its stdout and stderr
//! ([`LogLimit::output`]: a hook that writes without end). Each second, the
//! first lines within the budget are logged in full; the rest are dropped
//! and counted, and the count is logged with the next line that is.
//! Nothing else is lost: every failure is still counted in the plugin's
//! stats and reported to callers that asked for outcomes, and dropped
//! output is counted in its summary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures logged in full per plugin per second.
pub(crate) const PER_SECOND: u32 = 10;

/// Lines of its own output (log calls, stdout and stderr lines) a plugin
/// may have logged per second. A hook that logs a line per event stays
/// under it at a thousand events a second; past it, the host log would be
/// mostly one plugin's.
pub(crate) const OUTPUT_LINES_PER_SECOND: u32 = 1_000;

/// Bytes of its own output a plugin may have logged per second: the same
/// thousand lines at an average of 1 KiB. Bounds how fast one plugin can
/// grow the host's log file.
pub(crate) const OUTPUT_BYTES_PER_SECOND: u64 = 1 << 20;

/// One plugin's log window.
pub(crate) struct LogLimit {
    lines_per_second: u32,
    bytes_per_second: u64,
    window: Mutex<Window>,
    /// Lines dropped since the limit was made.
    dropped_total: AtomicU64,
}

struct Window {
    started: Instant,
    lines: u32,
    bytes: u64,
    suppressed: u64,
}

/// What to do with one line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Log it, after saying how many were left out before it.
    Log {
        /// Lines not logged since the last one that was.
        suppressed: u64,
    },
    /// Leave it out; it is counted.
    Suppress,
}

impl LogLimit {
    /// The failure-log limit: [`PER_SECOND`] lines a second.
    pub(crate) fn new(now: Instant) -> Self {
        LogLimit::with_budget(now, PER_SECOND, u64::MAX)
    }

    /// The output limit: [`OUTPUT_LINES_PER_SECOND`] lines and
    /// [`OUTPUT_BYTES_PER_SECOND`] bytes a second.
    pub(crate) fn output(now: Instant) -> Self {
        LogLimit::with_budget(now, OUTPUT_LINES_PER_SECOND, OUTPUT_BYTES_PER_SECOND)
    }

    /// A limit of `lines_per_second` lines and `bytes_per_second` bytes.
    pub(crate) fn with_budget(now: Instant, lines_per_second: u32, bytes_per_second: u64) -> Self {
        LogLimit {
            lines_per_second,
            bytes_per_second,
            window: Mutex::new(Window {
                started: now,
                lines: 0,
                bytes: 0,
                suppressed: 0,
            }),
            dropped_total: AtomicU64::new(0),
        }
    }

    /// Whether a line seen at `now` is logged.
    pub(crate) fn admit(&self, now: Instant) -> Admit {
        self.admit_bytes(now, 0)
    }

    /// Whether a line of `bytes` bytes seen at `now` is logged.
    pub(crate) fn admit_bytes(&self, now: Instant, bytes: usize) -> Admit {
        let bytes = bytes as u64;
        let Ok(mut window) = self.window.lock() else {
            return Admit::Log { suppressed: 0 };
        };
        if now.duration_since(window.started) >= Duration::from_secs(1) {
            window.started = now;
            window.lines = 0;
            window.bytes = 0;
        }
        if window.lines < self.lines_per_second
            && window.bytes.saturating_add(bytes) <= self.bytes_per_second
        {
            window.lines += 1;
            window.bytes += bytes;
            Admit::Log {
                suppressed: std::mem::take(&mut window.suppressed),
            }
        } else {
            window.suppressed += 1;
            self.dropped_total.fetch_add(1, Ordering::Relaxed);
            Admit::Suppress
        }
    }

    /// Lines dropped since the limit was made.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
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
        assert_eq!(limit.dropped(), 5);
    }

    #[test]
    fn output_is_limited_by_bytes_as_well_as_lines() {
        let start = Instant::now();
        let limit = LogLimit::with_budget(start, 100, 1000);
        assert_eq!(limit.admit_bytes(start, 600), Admit::Log { suppressed: 0 });
        assert_eq!(limit.admit_bytes(start, 600), Admit::Suppress);
        assert_eq!(limit.admit_bytes(start, 400), Admit::Log { suppressed: 1 });
        assert_eq!(limit.admit_bytes(start, 1), Admit::Suppress);
        assert_eq!(limit.dropped(), 2);
    }
}
