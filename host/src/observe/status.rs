//! `GET /plugins` and `hookhost status`: what each plugin is, what state it
//! is in, what it may do and how it failed last. The same types are
//! written by the server and read by the command.
//!
//! A grant is shown by name (a database's or mailer's section name, an
//! HTTP destination without any `user:password@`), never by the values
//! behind it: DSNs, passwords, tokens and settings stay in the config.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::host::Host;
use crate::outcome::{BreakerState, FailureClass, RecentFailure};
use crate::plugin::plugin_name;
use crate::registry::PluginSummary;

/// The answer of `GET /plugins`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginsReport {
    /// Every live plugin, then every plugin file that is not live because
    /// it was refused, in name order.
    pub plugins: Vec<PluginStatus>,
}

/// Where a plugin stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginState {
    /// Events are delivered to it.
    Serving,
    /// Its circuit breaker is open: its events wait for the cool-down.
    CoolingDown,
    /// The cool-down is over: one event probes it.
    Probing,
    /// Its file was refused (at start or by hot reload): it gets no events.
    Rejected,
}

impl PluginState {
    /// The state as the table of `hookhost status` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginState::Serving => "serving",
            PluginState::CoolingDown => "cooling down",
            PluginState::Probing => "probing",
            PluginState::Rejected => "rejected",
        }
    }
}

/// One plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginStatus {
    /// Its name.
    pub name: String,
    /// The file it was loaded from (or that was refused).
    pub file: String,
    /// SHA-256 (hex) of the live version; `None` when rejected.
    pub version: Option<String>,
    /// Its state.
    pub state: PluginState,
    /// Why its file was refused: for a rejected plugin, why it is not
    /// live; for a live one, why its last new version was not swapped in.
    pub rejection: Option<String>,
    /// The limits it runs under.
    pub limits: LimitsView,
    /// What it may reach.
    pub grants: GrantsView,
    /// Its counts so far (zero when rejected).
    pub counts: CountsView,
    /// Its last few failed deliveries, oldest first.
    pub last_failures: Vec<FailureView>,
}

/// A plugin's limits, as the config resolves them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitsView {
    /// Fuel per event.
    pub fuel: u64,
    /// Memory cap, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock timeout per event, in milliseconds.
    pub timeout_ms: u64,
    /// Most events queued.
    pub queue_capacity: u64,
    /// Most bytes of events queued.
    pub queue_bytes: u64,
    /// `reject`, `wait` or `drop_oldest`.
    pub on_full: String,
    /// Deliveries of an event at most.
    pub max_attempts: u32,
    /// Its `rate_limit` (`20/min`), if any.
    pub rate_limit: Option<String>,
}

/// What a plugin may reach, by name only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantsView {
    /// `http_allow` destinations.
    pub http: Vec<String>,
    /// `http_private` hosts.
    pub http_private: Vec<String>,
    /// Database sections granted.
    pub databases: Vec<String>,
    /// Mailer sections granted.
    pub mailers: Vec<String>,
    /// Whether it may read the real time.
    pub wall_clock: bool,
}

/// A plugin's counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CountsView {
    /// Events handled.
    pub handled: u64,
    /// Failed deliveries, every class.
    pub failed: u64,
    /// Failed deliveries tried again.
    pub retried: u64,
    /// Events in the dead letters.
    pub dead_lettered: u64,
    /// Events its routing kept from it.
    pub filtered: u64,
    /// Events suppressed as repeats.
    pub suppressed: u64,
    /// Events waiting in its queue.
    pub queued: u64,
    /// Where its circuit breaker stands: `closed`, `open`, `half_open`.
    pub breaker: String,
}

/// One remembered failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureView {
    /// When (RFC 3339, UTC).
    pub at: String,
    /// `error`, `trap`, `fuel`, `timeout` or `memory`.
    pub class: String,
    /// Whether it was to be tried again.
    pub retryable: bool,
    /// What happened, cut short.
    pub message: String,
}

/// The report of `host` now.
pub fn report(host: &Host) -> PluginsReport {
    let config = host.config();
    let rejections = host.reload_rejections();
    let mut plugins: Vec<PluginStatus> = host
        .summaries()
        .iter()
        .map(|summary| {
            let rejection = rejections
                .iter()
                .find(|r| r.plugin == summary.name)
                .map(|r| r.reason.clone());
            live(summary, rejection, &config)
        })
        .collect();
    let is_live = |name: &str, plugins: &[PluginStatus]| {
        plugins
            .iter()
            .any(|p| p.name == name && p.state != PluginState::Rejected)
    };
    let mut refused = Vec::new();
    for rejection in &rejections {
        if !is_live(&rejection.plugin, &plugins) {
            let file = crate::printable::path(&rejection.path);
            refused.push((rejection.plugin.clone(), file, rejection.reason.clone()));
        }
    }
    for error in host.load_errors() {
        let name = plugin_name(error.path());
        let already = refused.iter().any(|(n, ..)| *n == name);
        if !is_live(&name, &plugins) && !already {
            let file = crate::printable::path(error.path());
            refused.push((name, file, error.to_string()));
        }
    }
    for (name, file, reason) in refused {
        plugins.push(PluginStatus {
            limits: limits(&config, &name),
            grants: grants(&config, &name),
            name,
            file,
            version: None,
            state: PluginState::Rejected,
            rejection: Some(reason),
            counts: CountsView {
                breaker: BreakerState::Closed.as_str().to_owned(),
                ..CountsView::default()
            },
            last_failures: Vec::new(),
        });
    }
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    PluginsReport { plugins }
}

fn live(summary: &PluginSummary, rejection: Option<String>, config: &Config) -> PluginStatus {
    let stats = &summary.stats;
    let state = match stats.breaker {
        BreakerState::Closed => PluginState::Serving,
        BreakerState::Open => PluginState::CoolingDown,
        BreakerState::HalfOpen => PluginState::Probing,
    };
    PluginStatus {
        name: summary.name.clone(),
        file: crate::printable::path(&summary.path),
        version: Some(summary.version.clone()),
        state,
        rejection,
        limits: limits(config, &summary.name),
        grants: grants(config, &summary.name),
        counts: CountsView {
            handled: stats.handled,
            failed: FailureClass::ALL.iter().map(|c| stats.failed(*c)).sum(),
            retried: stats.retried,
            dead_lettered: stats.dead_lettered,
            filtered: stats.filtered,
            suppressed: stats.suppressed,
            queued: summary.queued,
            breaker: stats.breaker.as_str().to_owned(),
        },
        last_failures: stats.recent_failures.iter().map(failure).collect(),
    }
}

fn limits(config: &Config, name: &str) -> LimitsView {
    let limits = config.limits_for(name);
    LimitsView {
        fuel: limits.fuel,
        memory_bytes: limits.memory_bytes as u64,
        timeout_ms: limits.timeout.as_millis() as u64,
        queue_capacity: limits.queue_capacity as u64,
        queue_bytes: limits.queue_bytes as u64,
        on_full: limits.on_full.as_str().to_owned(),
        max_attempts: limits.max_attempts,
        rate_limit: limits.rate_limit.map(|rate| rate.to_string()),
    }
}

fn grants(config: &Config, name: &str) -> GrantsView {
    let Some(plugin) = config.plugins.get(name) else {
        return GrantsView {
            http: Vec::new(),
            http_private: Vec::new(),
            databases: Vec::new(),
            mailers: Vec::new(),
            wall_clock: false,
        };
    };
    GrantsView {
        http: plugin
            .http_allow
            .iter()
            .map(|d| without_userinfo(d))
            .collect(),
        http_private: plugin.http_private.clone(),
        databases: plugin.databases.clone(),
        mailers: plugin.mailers.clone(),
        wall_clock: config.wall_clock_for(name),
    }
}

/// A destination with any `user:password@` before its host taken out.
fn without_userinfo(destination: &str) -> String {
    let (scheme, rest) = match destination.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, destination),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest.to_owned(),
    }
}

fn failure(failure: &RecentFailure) -> FailureView {
    FailureView {
        at: rfc3339(failure.at),
        class: failure.class.as_str().to_owned(),
        retryable: failure.retryable,
        message: failure.message.clone(),
    }
}

fn rfc3339(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_destination_are_taken_out() {
        assert_eq!(
            without_userinfo("https://user:pw@hooks.example.com/path@x"),
            "https://hooks.example.com/path@x"
        );
        assert_eq!(without_userinfo("u:p@example.com"), "example.com");
        assert_eq!(
            without_userinfo("https://example.com:8443"),
            "https://example.com:8443"
        );
    }
}
