//! `hookhost:hooks/delivery`: which delivery of an event the current call
//! is, the wait a hook asks for before the next one, and the repeats
//! suppressed before an event (`dedup_key`). Always granted.
//! The worker sets [`DeliveryCall`] before every call and reads what the
//! hook asked for after it; nothing here does I/O.

use std::time::Duration;

use crate::bindings::hookhost::hooks::delivery::Host;
use crate::state::PluginState;

impl Host for PluginState {
    fn attempt(&mut self) -> u32 {
        self.delivery.attempt.max(1)
    }

    fn retry_after(&mut self, seconds: u32) {
        self.delivery.retry_after = Some(Duration::from_secs(u64::from(seconds)));
    }

    fn suppressed(&mut self, id: String) -> u32 {
        self.delivery
            .suppressed
            .iter()
            .find(|(event, _)| *event == id)
            .map_or(0, |(_, count)| *count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::Grants;
    use crate::state::DeliveryCall;

    fn state() -> PluginState {
        PluginState::new("test".into(), &Grants::none("test"), 1 << 20)
    }

    #[test]
    fn attempt_reads_at_least_one() {
        let mut state = state();
        assert_eq!(state.attempt(), 1, "a fresh instance");
        state.delivery = DeliveryCall {
            attempt: 3,
            ..DeliveryCall::default()
        };
        assert_eq!(state.attempt(), 3);
    }

    #[test]
    fn suppressed_answers_for_the_events_of_the_call_only() {
        let mut state = state();
        assert_eq!(state.suppressed("a".into()), 0);
        state.delivery.suppressed = vec![("a".into(), 12), ("b".into(), 1)];
        assert_eq!(state.suppressed("a".into()), 12);
        assert_eq!(state.suppressed("b".into()), 1);
        assert_eq!(state.suppressed("c".into()), 0);
    }

    #[test]
    fn the_last_retry_after_of_a_call_wins() {
        let mut state = state();
        assert_eq!(state.delivery.retry_after, None);
        state.retry_after(30);
        state.retry_after(u32::MAX);
        state.retry_after(7);
        assert_eq!(state.delivery.retry_after, Some(Duration::from_secs(7)));
    }
}
