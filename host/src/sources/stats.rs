//! What the HTTP sources accepted and refused, counted with atomics so a
//! request never waits on a lock to count itself, and readable at any time
//! (the metrics endpoint reads them).

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a request was refused; each has its own count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `POST /events` without the configured bearer token, or with another
    /// one (401).
    Unauthorized,
    /// A dbt Cloud webhook without a signature, or with one that does not
    /// match its body (401).
    BadSignature,
    /// A body that is not UTF-8, not JSON, or not events (400).
    Malformed,
    /// A body over `[server] max_body_kib`, or an event over `[engine]
    /// max_event_kib` or a plugin's `queue_mib` (413).
    TooLarge,
    /// A plugin's queue is full under `on_full = "reject"` (or stayed full
    /// past the wait under `"wait"`) (503).
    QueueFull,
    /// The host is shutting down, or the write-ahead log could not be
    /// written (503).
    Unavailable,
    /// A dbt Cloud webhook to a host without `[server] dbt_cloud_secret`
    /// (404).
    NotConfigured,
}

impl Refusal {
    /// Every reason, in the order of their counts.
    pub const ALL: [Refusal; 7] = [
        Refusal::Unauthorized,
        Refusal::BadSignature,
        Refusal::Malformed,
        Refusal::TooLarge,
        Refusal::QueueFull,
        Refusal::Unavailable,
        Refusal::NotConfigured,
    ];

    /// The reason as a metric label: `unauthorized`, `bad_signature`, ...
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::BadSignature => "bad_signature",
            Refusal::Malformed => "malformed",
            Refusal::TooLarge => "too_large",
            Refusal::QueueFull => "queue_full",
            Refusal::Unavailable => "unavailable",
            Refusal::NotConfigured => "not_configured",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// Counts since the server started, over every endpoint.
#[derive(Debug, Default)]
pub struct IngestStats {
    events_accepted: AtomicU64,
    requests_accepted: AtomicU64,
    duplicates: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
}

impl IngestStats {
    /// Events accepted (a `202` answer counts each of its events).
    pub fn events_accepted(&self) -> u64 {
        self.events_accepted.load(Ordering::Relaxed)
    }

    /// Requests answered `202`.
    pub fn requests_accepted(&self) -> u64 {
        self.requests_accepted.load(Ordering::Relaxed)
    }

    /// dbt Cloud deliveries whose `eventId` had been accepted already:
    /// answered `200`, nothing accepted again.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Requests refused for `reason`.
    pub fn refused(&self, reason: Refusal) -> u64 {
        self.refused[reason.slot()].load(Ordering::Relaxed)
    }

    /// Requests refused, for every reason.
    pub fn refused_total(&self) -> u64 {
        Refusal::ALL
            .iter()
            .map(|reason| self.refused(*reason))
            .sum()
    }

    pub(super) fn count_accepted(&self, events: usize) {
        self.requests_accepted.fetch_add(1, Ordering::Relaxed);
        self.events_accepted
            .fetch_add(events as u64, Ordering::Relaxed);
    }

    pub(super) fn count_duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_refused(&self, reason: Refusal) {
        self.refused[reason.slot()].fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_its_own_count_and_label() {
        let stats = IngestStats::default();
        for (n, reason) in Refusal::ALL.into_iter().enumerate() {
            for _ in 0..=n {
                stats.count_refused(reason);
            }
        }
        for (n, reason) in Refusal::ALL.into_iter().enumerate() {
            assert_eq!(stats.refused(reason), n as u64 + 1, "{}", reason.label());
        }
        assert_eq!(stats.refused_total(), (1..=7).sum::<u64>());
        let labels: std::collections::BTreeSet<_> = Refusal::ALL.map(Refusal::label).into();
        assert_eq!(labels.len(), Refusal::ALL.len());
    }
}
