//! Delivery policy: what happens to an event after a plugin's worker has
//! tried it. Retries with backoff, the circuit breaker, the dead letters
//! and the write-ahead log that keeps accepted events across a crash.
//!
//! The worker (`crate::worker`) applies the policy; this module holds its
//! parts. A host with a data directory keeps its log and dead letters
//! there:
//!
//! ```text
//! <data dir>/wal/                  write-ahead log segments and its lock
//! <data dir>/dead-letters.sqlite   the dead letters
//! ```

pub(crate) mod backoff;
pub(crate) mod breaker;
pub mod dead_letters;
pub(crate) mod replay;
pub mod wal;

pub use dead_letters::{default_data_dir, DeadLetter, DeadLetterError, DeadLetters, NewDeadLetter};
pub use replay::ReplayReport;
pub use wal::{Recovered, Wal, WalError, WalStats};

/// The dead-letter store's file in data directory `dir`.
pub fn dead_letters_file(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join(dead_letters::FILE_NAME)
}
