//! What the host accepted and refused at admission, from every source (the
//! library API, stdin, HTTP), counted with atomics so that taking an event
//! never waits on a lock to count it.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::host::EmitError;

/// Why the host refused an event; each has its own count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionRefusal {
    /// Larger than `[engine] max_event_kib` or a plugin's `queue_mib`.
    TooLarge,
    /// A plugin's queue was full (events or bytes).
    QueueFull,
    /// The write-ahead log could not write it.
    Log,
    /// The host was shutting down.
    ShutDown,
}

impl AdmissionRefusal {
    /// Every reason, in the order of their counts.
    pub const ALL: [AdmissionRefusal; 4] = [
        AdmissionRefusal::TooLarge,
        AdmissionRefusal::QueueFull,
        AdmissionRefusal::Log,
        AdmissionRefusal::ShutDown,
    ];

    /// The reason as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            AdmissionRefusal::TooLarge => "too_large",
            AdmissionRefusal::QueueFull => "queue_full",
            AdmissionRefusal::Log => "log_write_failed",
            AdmissionRefusal::ShutDown => "shut_down",
        }
    }

    /// The reason of `error`.
    pub fn of(error: &EmitError) -> AdmissionRefusal {
        match error {
            EmitError::TooLarge { .. } => AdmissionRefusal::TooLarge,
            EmitError::QueueFull { .. } | EmitError::QueueBytesFull { .. } => {
                AdmissionRefusal::QueueFull
            }
            EmitError::Log(_) => AdmissionRefusal::Log,
            EmitError::ShutDown => AdmissionRefusal::ShutDown,
        }
    }
}

/// Events accepted and refused since the host was built.
#[derive(Debug, Default)]
pub struct AdmissionStats {
    accepted: AtomicU64,
    refused: [AtomicU64; AdmissionRefusal::ALL.len()],
}

impl AdmissionStats {
    /// Events accepted.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Events refused for `reason`.
    pub fn refused(&self, reason: AdmissionRefusal) -> u64 {
        self.refused[reason as usize].load(Ordering::Relaxed)
    }

    /// Counts one event's result.
    pub(crate) fn count<T>(&self, result: &Result<T, EmitError>) {
        match result {
            Ok(_) => self.count_accepted(1),
            Err(error) => self.count_refused(AdmissionRefusal::of(error), 1),
        }
    }

    pub(crate) fn count_accepted(&self, events: usize) {
        self.accepted.fetch_add(events as u64, Ordering::Relaxed);
    }

    pub(crate) fn count_refused(&self, reason: AdmissionRefusal, events: usize) {
        self.refused[reason as usize].fetch_add(events as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_its_own_count() {
        let stats = AdmissionStats::default();
        stats.count(&Ok::<(), EmitError>(()));
        stats.count::<()>(&Err(EmitError::ShutDown));
        stats.count_refused(AdmissionRefusal::TooLarge, 3);
        assert_eq!(stats.accepted(), 1);
        assert_eq!(stats.refused(AdmissionRefusal::ShutDown), 1);
        assert_eq!(stats.refused(AdmissionRefusal::TooLarge), 3);
        assert_eq!(stats.refused(AdmissionRefusal::QueueFull), 0);
    }
}
