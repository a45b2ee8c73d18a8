//! hookhost: a host for event hooks that run as sandboxed WebAssembly
//! components.
//!
//! Events go in through [`Host::emit`]; every loaded plugin receives each
//! event on its own worker task, under its own limits, so that a plugin that
//! traps, loops or leaks never harms the others.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use hookhost::{Config, Event, Host};
//!
//! let host = Host::builder()
//!     .plugins_dir("plugins")
//!     .config(Config::from_file("hookhost.toml".as_ref())?)
//!     .build()
//!     .await?;
//! for error in host.load_errors() {
//!     eprintln!("skipped: {error}");
//! }
//! let event = Event::from_json(r#"{"event_type": "ProfilingStarted",
//!     "timestamp": "2025-01-15T10:30:00", "metadata": {"table": "orders", "run_id": "r1"}}"#)?;
//! let report = host.emit_with_report(event)?.wait().await;
//! for (plugin, outcome) in &report.outcomes {
//!     println!("{plugin}: {:?}", outcome.result);
//! }
//! host.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod bindings;
pub mod cache;
pub mod capabilities;
pub mod config;
pub mod delivery;
pub mod engine;
pub mod event;
pub mod host;
mod log_limit;
pub mod observe;
pub mod outcome;
pub mod plugin;
pub mod printable;
mod queue;
mod registry;
mod regular_file;
pub mod routing;
pub mod settings;
pub mod sources;
pub mod state;
mod watch;
mod worker;

pub use bindings::{Event, EventKind, HookError, Severity};
pub use cache::CacheStats;
pub use config::{Config, Limits, OnFull};
pub use delivery::{DeadLetter, DeadLetters, ReplayReport};
pub use host::{
    EmitError, Host, HostBuilder, PendingReport, Refused, Report, DEFAULT_DRAIN_TIMEOUT,
};
pub use outcome::{
    BreakerState, Failure, FailureClass, Fate, LatencyBuckets, Outcome, PluginStats, RecentFailure,
};
pub use registry::{PluginSummary, Rejection, ReloadStats, Unfinished};
