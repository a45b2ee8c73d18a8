//! Reliable delivery: the write-ahead log.

pub mod wal;
