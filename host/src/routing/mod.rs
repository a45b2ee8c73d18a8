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
//!
//! Alert hygiene ([`Hygiene`]) is applied by the plugin's worker, which
//! sees the plugin's events one at a time and in order: `dedup_key` and
//! `dedup_window` suppress repeats ([`dedup`]), `group_by` gathers events
//! into digests ([`group`], [`digest`]). Filters run before an event is
//! queued, so a filtered event costs its plugin nothing; deduplication and
//! grouping run after, where the plugin's own order and its write-ahead log
//! records make their state exact and crash-safe ([`store`]). Dispatch only
//! renders each event's `dedup_key` once for all the plugins that share the
//! template; each worker decides with it.
//!
//! ```toml
//! [plugins.slack]
//! dedup_key = "{{ event_type }}:{{ metadata.table }}:{{ metadata.column }}"
//! dedup_window = "1h"
//! renotify_on_change = true
//! group_by = ["metadata.table"]
//! group_wait = "30s"
//! group_interval = "5m"
//! ```

pub mod dedup;
pub mod digest;
pub mod filter;
pub mod group;
mod key_template;
pub mod metadata;
pub mod rate;
pub mod store;

pub use dedup::DedupRule;
pub use filter::{severity_rank, Patterns, RouteFilter, RouteRules, Skip, SEVERITIES};
pub use group::GroupRule;
pub use metadata::EventFields;
pub use rate::{RateLimit, RateLimitError, RATE_COUNT_RANGE, RATE_LIMIT_FORMS};

/// A plugin's alert hygiene, applied by its worker: deduplication and
/// grouping, each off unless configured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hygiene {
    /// `dedup_key`, `dedup_window`, `renotify_on_change`.
    pub dedup: Option<DedupRule>,
    /// `group_by`, `group_wait`, `group_interval`.
    pub group: Option<GroupRule>,
}
