//! Reliable delivery: the dead-letter store and its replay.

pub mod dead_letters;
pub mod replay;

pub use dead_letters::{DeadLetter, DeadLetterError, DeadLetters, NewDeadLetter};
pub use replay::ReplayReport;
