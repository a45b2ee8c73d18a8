//! Routing: which events each plugin is given, and how fast.
//!
//! A plugin's `[plugins.<name>]` section may narrow what it receives
//! (`events`, `exclude_events`, `min_severity`, `require_severity`,
//! `tables`, `columns`: see [`RouteFilter`]) and cap its pace
//! (`rate_limit`: see [`RateLimit`]); `[hooks] enabled = false` turns every
//! plugin off.
//!
//! ```toml
//! [hooks]
//! enabled = true
//!
//! [plugins.pager]
//! events = ["DataDriftDetected", "schema_*"]
//! exclude_events = ["ProfilingStarted"]
//! min_severity = "critical"
//! tables = ["orders", "analytics.*"]
//! rate_limit = "20/min"
//! ```
//!
//! An event a plugin's filter turns away is skipped for that plugin (with a
//! [`Skip`] saying why); past the rate limit, events wait, never dropped.

pub mod filter;
pub mod rate;

pub use filter::{
    severity_rank, MetadataNames, Patterns, RouteFilter, RouteRules, Skip, SEVERITIES,
};
pub use rate::{RateLimit, RateLimitError, RATE_COUNT_RANGE, RATE_LIMIT_FORMS};
