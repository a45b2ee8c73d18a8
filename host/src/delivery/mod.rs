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

use std::path::PathBuf;

pub use dead_letters::{DeadLetter, DeadLetterError, DeadLetters, NewDeadLetter};
pub use replay::ReplayReport;
pub use wal::{Recovered, Wal, WalError};

/// The data directory `hookhost` uses when none is given:
/// `$XDG_DATA_HOME/hookhost`, else `~/.local/share/hookhost`.
pub fn default_data_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share"))
        })?;
    Some(base.join("hookhost"))
}

/// The dead-letter store's file in data directory `dir`.
pub fn dead_letters_file(dir: &std::path::Path) -> PathBuf {
    dir.join("dead-letters.sqlite")
}
