//! The circuit breaker: after a run of failures that say a plugin or its
//! destination is unwell, the plugin is put aside for a cool-down; then one
//! event probes it, and a success resumes normal delivery.
//!
//! Pure state, driven by the plugin's worker: events that wait while the
//! breaker is open stay with the worker, so none is dropped or counted as
//! failed for it.

use std::time::{Duration, Instant};

use crate::config::Limits;

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Normal delivery; `failures` unwell failures in a row so far.
    Closed { failures: u32 },
    /// Put aside until `until`.
    Open { until: Instant },
    /// The cool-down is over: one delivery at a time until one succeeds.
    Probing,
}

/// What the worker may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    /// Deliver as usual.
    Deliver,
    /// Deliver one event, then report how it went.
    Probe,
    /// Deliver nothing before this instant.
    WaitUntil(Instant),
}

/// A change of state, to log once and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// The plugin was put aside for `cooldown` after `failures` in a row.
    Opened { failures: u32, cooldown: Duration },
    /// A probe failed: put aside again, for `cooldown`.
    Reopened { cooldown: Duration },
    /// The cool-down ended: the next event probes the plugin.
    Probing,
    /// A probe succeeded: normal delivery resumed.
    Closed,
    /// A new version or configuration ended the cool-down.
    Reset,
}

/// One plugin's breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    state: State,
    /// The cool-down the next opening lasts; doubles on every failed probe.
    cooldown: Option<Duration>,
}

impl Breaker {
    pub(crate) fn new() -> Breaker {
        Breaker {
            state: State::Closed { failures: 0 },
            cooldown: None,
        }
    }

    /// What the worker may do at `now`; ending a cool-down is a transition.
    pub(crate) fn permit(&mut self, now: Instant) -> (Permit, Option<Transition>) {
        match self.state {
            State::Closed { .. } => (Permit::Deliver, None),
            State::Probing => (Permit::Probe, None),
            State::Open { until } if now >= until => {
                self.state = State::Probing;
                (Permit::Probe, Some(Transition::Probing))
            }
            State::Open { until } => (Permit::WaitUntil(until), None),
        }
    }

    /// Whether events are held back (open, or probing one at a time).
    pub(crate) fn is_tripped(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }

    /// A delivery succeeded. One that ends while the breaker is open (a
    /// later event of the batch that opened it) leaves it open.
    pub(crate) fn success(&mut self) -> Option<Transition> {
        match self.state {
            State::Open { .. } => None,
            State::Probing => {
                self.state = State::Closed { failures: 0 };
                self.cooldown = None;
                Some(Transition::Closed)
            }
            State::Closed { .. } => {
                self.state = State::Closed { failures: 0 };
                None
            }
        }
    }

    /// A delivery failed; `unwell` says whether the failure speaks of the
    /// plugin's or its destination's health (anything but a permanent
    /// error the hook returned, which concerns one event only).
    pub(crate) fn failure(
        &mut self,
        now: Instant,
        limits: &Limits,
        unwell: bool,
    ) -> Option<Transition> {
        if !unwell || limits.breaker_threshold == 0 {
            return None;
        }
        match self.state {
            State::Closed { failures } => {
                let failures = failures + 1;
                if failures < limits.breaker_threshold {
                    self.state = State::Closed { failures };
                    return None;
                }
                let cooldown = *self.cooldown.get_or_insert(limits.breaker_cooldown);
                self.state = State::Open {
                    until: now + cooldown,
                };
                Some(Transition::Opened { failures, cooldown })
            }
            State::Probing => {
                let cooldown = self
                    .cooldown
                    .map_or(limits.breaker_cooldown, |c| c.saturating_mul(2))
                    .min(limits.breaker_max_cooldown);
                self.cooldown = Some(cooldown);
                self.state = State::Open {
                    until: now + cooldown,
                };
                Some(Transition::Reopened { cooldown })
            }
            // Deliveries under way when the breaker opened end while open.
            State::Open { .. } => None,
        }
    }

    /// A new version or configuration: whatever the state, deliver again.
    pub(crate) fn reset(&mut self) -> Option<Transition> {
        let tripped = self.is_tripped();
        self.state = State::Closed { failures: 0 };
        self.cooldown = None;
        tripped.then_some(Transition::Reset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_secs(30),
            breaker_max_cooldown: Duration::from_secs(100),
            ..Limits::default()
        }
    }

    #[test]
    fn opens_after_the_threshold_probes_then_closes() {
        let (limits, now) = (limits(), Instant::now());
        let mut breaker = Breaker::new();
        assert_eq!(breaker.failure(now, &limits, true), None);
        assert_eq!(breaker.failure(now, &limits, true), None);
        let opened = breaker.failure(now, &limits, true);
        let cooldown = Duration::from_secs(30);
        assert_eq!(
            opened,
            Some(Transition::Opened {
                failures: 3,
                cooldown
            })
        );
        assert_eq!(breaker.permit(now).0, Permit::WaitUntil(now + cooldown));
        let later = now + cooldown;
        assert_eq!(
            breaker.permit(later),
            (Permit::Probe, Some(Transition::Probing))
        );
        assert_eq!(breaker.success(), Some(Transition::Closed));
        assert_eq!(breaker.permit(later).0, Permit::Deliver);
    }

    #[test]
    fn a_failed_probe_doubles_the_cooldown_up_to_the_maximum() {
        let (limits, now) = (limits(), Instant::now());
        let mut breaker = Breaker::new();
        for _ in 0..3 {
            breaker.failure(now, &limits, true);
        }
        let mut cooldowns = Vec::new();
        for round in 1..=4 {
            let until = now + Duration::from_secs(1_000 * round);
            breaker.permit(until);
            match breaker.failure(until, &limits, true) {
                Some(Transition::Reopened { cooldown }) => cooldowns.push(cooldown.as_secs()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(cooldowns, [60, 100, 100, 100]);
        breaker.permit(now + Duration::from_secs(10_000));
        assert_eq!(breaker.success(), Some(Transition::Closed));
        for _ in 0..3 {
            breaker.failure(now, &limits, true);
        }
        assert_eq!(
            breaker.permit(now).0,
            Permit::WaitUntil(now + Duration::from_secs(30))
        );
    }

    #[test]
    fn permanent_errors_and_successes_between_failures_do_not_open_it() {
        let (limits, now) = (limits(), Instant::now());
        let mut breaker = Breaker::new();
        for _ in 0..10 {
            assert_eq!(breaker.failure(now, &limits, false), None);
        }
        breaker.failure(now, &limits, true);
        breaker.failure(now, &limits, true);
        breaker.success();
        breaker.failure(now, &limits, true);
        breaker.failure(now, &limits, true);
        assert_eq!(breaker.permit(now).0, Permit::Deliver);
    }

    #[test]
    fn a_threshold_of_zero_turns_it_off_and_reset_closes_it() {
        let now = Instant::now();
        let off = Limits {
            breaker_threshold: 0,
            ..limits()
        };
        let mut breaker = Breaker::new();
        for _ in 0..100 {
            assert_eq!(breaker.failure(now, &off, true), None);
        }
        for _ in 0..3 {
            breaker.failure(now, &limits(), true);
        }
        assert!(breaker.is_tripped());
        assert_eq!(breaker.reset(), Some(Transition::Reset));
        assert_eq!(breaker.permit(now).0, Permit::Deliver);
        assert_eq!(breaker.reset(), None);
    }
}
