//! The TOML configuration file: limits for every plugin, and per plugin an
//! enabled switch, limit overrides, routing (which events it is given, how
//! fast) and the settings the plugin reads through the `config` import.
//!
//! ```toml
//! [hooks]
//! enabled = true        # false turns every plugin off
//!
//! [defaults]            # applies to every plugin
//! timeout_ms = 5000
//! max_attempts = 8      # deliveries of one event, retries included
//!
//! [plugins.slack]       # the plugin loaded from slack.wasm
//! enabled = true
//! fuel = 50_000_000
//! on_full = "wait"      # a full queue holds the producer back
//! events = ["DataDriftDetected", "schema_*"]
//! min_severity = "high"
//! tables = ["orders", "analytics.*"]
//! rate_limit = "20/min"
//! dedup_key = "{{ event_type }}:{{ metadata.table }}:{{ metadata.column }}"
//! dedup_window = "1h"
//! group_by = ["metadata.table"]
//! [plugins.slack.settings]
//! channel = "#data-alerts"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use serde::Deserialize;

use crate::bindings::Severity;
use crate::capabilities::email::{EmailAccess, MailerSpec};
use crate::capabilities::http::{HttpAccess, HttpGrant};
use crate::capabilities::sql::{DatabaseSpec, Databases, SqlAccess};
use crate::capabilities::Grants;
use crate::log_limit::LogLimit;
use crate::routing::{DedupRule, GroupRule, Hygiene, RateLimit, RouteFilter, RouteRules};
use crate::settings::Settings;

mod limits;
mod server;

pub use limits::*;
use limits::{clamp, ranged};
pub use server::{Secret, ServerConfig};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Each plugin's settings, resolved (environment substituted).
    #[serde(skip)]
    resolved: BTreeMap<String, Settings>,
    /// Each plugin's HTTP grant, parsed.
    #[serde(skip)]
    http: BTreeMap<String, HttpGrant>,
    /// The `[databases]` sections, resolved and checked.
    #[serde(skip)]
    database_specs: BTreeMap<String, DatabaseSpec>,
    /// The `[mailers]` sections, resolved and checked.
    #[serde(skip)]
    mailer_specs: BTreeMap<String, MailerSpec>,
    /// Each plugin's route filter, built from its section.
    #[serde(skip)]
    routes: BTreeMap<String, Arc<RouteFilter>>,
    /// Each plugin's deduplication and grouping, built from its section.
    #[serde(skip)]
    hygiene: BTreeMap<String, Arc<Hygiene>>,
    /// The `[hooks]` section: switches for every plugin at once.
    #[serde(default)]
    pub hooks: HooksConfig,
    /// Engine-wide settings.
    #[serde(default)]
    pub engine: EngineConfig,
    /// Limits for every plugin that does not override them.
    #[serde(default)]
    pub defaults: LimitsConfig,
    /// Per-plugin sections, keyed by plugin name (the `.wasm` file's stem).
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
    /// Named database connections (`[databases.<name>]`), as written; see
    /// [`DatabaseSpec::parse`] for the keys.
    #[serde(default)]
    pub databases: Sections,
    /// Named SMTP servers (`[mailers.<name>]`), as written; see
    /// [`MailerSpec::parse`] for the keys.
    #[serde(default)]
    pub mailers: Sections,
    /// The `[server]` section: `hookhost run`'s HTTP ingest.
    #[serde(default)]
    pub server: ServerConfig,
}

/// Named sections as written (`[databases.<name>]`, `[mailers.<name>]`).
/// `Debug` shows their names only: they hold passwords.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Sections(pub BTreeMap<String, toml::Table>);

impl std::fmt::Debug for Sections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// The `[hooks]` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    /// `false` turns every plugin off, whatever its own `enabled` says:
    /// the Python profilers' `hooks.enabled`, for switching alerts off in a
    /// test or a backfill without editing each section. `true` or left out:
    /// each plugin's own `enabled` decides.
    pub enabled: Option<bool>,
}

/// The `[engine]` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// `false` turns the compiled-component cache off.
    pub cache: Option<bool>,
    /// Where compiled components are cached. Without it, the embedder's
    /// choice applies (`hookhost` uses `~/.cache/hookhost/components`; the
    /// library caches nowhere unless `HostBuilder::cache_dir` says so).
    pub cache_dir: Option<PathBuf>,
    /// Largest plugin file loaded, in MiB (`DEFAULT_MAX_PLUGIN_MIB`,
    /// within [`MAX_PLUGIN_MIB_RANGE`]).
    #[serde(default, deserialize_with = "ranged::max_plugin_mib")]
    pub max_plugin_mib: Option<u64>,
    /// Largest event accepted, in KiB of JSON (`DEFAULT_MAX_EVENT_KIB`,
    /// within [`MAX_EVENT_KIB_RANGE`]).
    #[serde(default, deserialize_with = "ranged::max_event_kib")]
    pub max_event_kib: Option<u64>,
}

impl EngineConfig {
    /// The largest plugin file loaded, in bytes.
    pub fn max_plugin_bytes(&self) -> u64 {
        clamp(
            self.max_plugin_mib.unwrap_or(DEFAULT_MAX_PLUGIN_MIB),
            &MAX_PLUGIN_MIB_RANGE,
        )
        .saturating_mul(1 << 20)
    }

    /// The largest event accepted, in bytes of JSON.
    pub fn max_event_bytes(&self) -> usize {
        let kib = clamp(
            self.max_event_kib.unwrap_or(DEFAULT_MAX_EVENT_KIB),
            &MAX_EVENT_KIB_RANGE,
        );
        usize::try_from(kib.saturating_mul(1 << 10)).unwrap_or(usize::MAX)
    }
}

/// One `[plugins.<name>]` section.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// `false` keeps the plugin's file in the folder but does not load it.
    pub enabled: Option<bool>,
    /// Fuel per event.
    #[serde(default, deserialize_with = "ranged::fuel")]
    pub fuel: Option<u64>,
    /// Wall-clock timeout per event in milliseconds.
    #[serde(default, deserialize_with = "ranged::timeout_ms")]
    pub timeout_ms: Option<u64>,
    /// Memory cap in MiB.
    #[serde(default, deserialize_with = "ranged::memory_mib")]
    pub memory_mib: Option<u64>,
    /// Queue capacity in events.
    #[serde(default, deserialize_with = "ranged::queue_capacity")]
    pub queue_capacity: Option<usize>,
    /// Queue capacity in MiB of events.
    #[serde(default, deserialize_with = "ranged::queue_mib")]
    pub queue_mib: Option<u64>,
    /// Keep one instance across events, or a fresh one per event.
    pub reuse_instance: Option<bool>,
    /// Batch hooks only: most events per call.
    #[serde(default, deserialize_with = "ranged::batch_size")]
    pub batch_size: Option<usize>,
    /// Batch hooks only: longest wait for a batch to fill, in milliseconds.
    #[serde(default, deserialize_with = "ranged::batch_wait_ms")]
    pub batch_wait_ms: Option<u64>,
    /// Deliveries of one event, the first included.
    #[serde(default, deserialize_with = "ranged::max_attempts")]
    pub max_attempts: Option<u32>,
    /// Upper bound of the wait before the first retry, in milliseconds.
    #[serde(default, deserialize_with = "ranged::retry_initial_ms")]
    pub retry_initial_ms: Option<u64>,
    /// Longest wait between two tries, in milliseconds.
    #[serde(default, deserialize_with = "ranged::retry_max_ms")]
    pub retry_max_ms: Option<u64>,
    /// Failures in a row that put the plugin aside; 0: no breaker.
    #[serde(default, deserialize_with = "ranged::breaker_threshold")]
    pub breaker_threshold: Option<u32>,
    /// First cool-down of the breaker, in milliseconds.
    #[serde(default, deserialize_with = "ranged::breaker_cooldown_ms")]
    pub breaker_cooldown_ms: Option<u64>,
    /// Longest cool-down of the breaker, in milliseconds.
    #[serde(default, deserialize_with = "ranged::breaker_max_cooldown_ms")]
    pub breaker_max_cooldown_ms: Option<u64>,
    /// What a full queue does with one more event.
    pub on_full: Option<OnFull>,
    /// Event types the plugin is given, either spelling
    /// (`DataDriftDetected` or `data_drift_detected`), `*` matching any run
    /// of characters. Empty (the default): every type.
    #[serde(default, deserialize_with = "ranged::events")]
    pub events: Vec<String>,
    /// Event types the plugin is never given, written like `events`; wins
    /// over `events`.
    #[serde(default, deserialize_with = "ranged::exclude_events")]
    pub exclude_events: Vec<String>,
    /// Lowest severity the plugin is given (`info` < `low` < `medium` <
    /// `high` < `critical`). Events without a severity still pass unless
    /// `require_severity`.
    #[serde(default, deserialize_with = "ranged::min_severity")]
    pub min_severity: Option<Severity>,
    /// `true` skips events that carry no severity (default `false`).
    pub require_severity: Option<bool>,
    /// Tables (`metadata.table`) the plugin is given events about, `*`
    /// globs, any case. An event without a table matches no list. Empty
    /// (the default): every event.
    #[serde(default, deserialize_with = "ranged::tables")]
    pub tables: Vec<String>,
    /// Columns (`metadata.column`), like `tables`.
    #[serde(default, deserialize_with = "ranged::columns")]
    pub columns: Vec<String>,
    /// At most so many events per second, minute or hour (`"20/min"`);
    /// past it, events wait. Left out: no limit.
    #[serde(default, deserialize_with = "ranged::rate_limit")]
    pub rate_limit: Option<RateLimit>,
    /// A minijinja template over the event (`event_id`, `event_type`,
    /// `timestamp`, `severity`, `metadata`) whose value says which events
    /// are repeats of one another. Left out: no deduplication.
    pub dedup_key: Option<String>,
    /// How long after an event of a key is delivered its repeats are
    /// suppressed (`"1h"`; [`DEFAULT_DEDUP_WINDOW`], within
    /// [`DEDUP_WINDOW_RANGE`]). Needs `dedup_key`.
    #[serde(default, deserialize_with = "ranged::dedup_window")]
    pub dedup_window: Option<std::time::Duration>,
    /// `true` delivers a repeat whose severity is higher than that of the
    /// last one delivered at once (default `false`). Needs `dedup_key`.
    pub renotify_on_change: Option<bool>,
    /// Event fields (`"event_type"`, `"severity"`, `"metadata.<key>"`) whose
    /// values make a group: events of one group are delivered together, as
    /// one digest event (one batch call for a batch hook). Empty (the
    /// default): no grouping.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// How long a new group gathers events before it is delivered
    /// ([`DEFAULT_GROUP_WAIT`], within [`GROUP_WAIT_RANGE`]). Needs
    /// `group_by`.
    #[serde(default, deserialize_with = "ranged::group_wait")]
    pub group_wait: Option<std::time::Duration>,
    /// Least time between two deliveries of one group
    /// ([`DEFAULT_GROUP_INTERVAL`], within [`GROUP_INTERVAL_RANGE`]). Needs
    /// `group_by`.
    #[serde(default, deserialize_with = "ranged::group_interval")]
    pub group_interval: Option<std::time::Duration>,
    /// Databases (`[databases.<name>]`) the plugin may use.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Mailers (`[mailers.<name>]`) the plugin may send through.
    #[serde(default)]
    pub mailers: Vec<String>,
    /// Destinations the plugin may send HTTP requests to:
    /// `[scheme://]host[:port]`, host may start with `*.`; scheme defaults
    /// to https, port to the scheme's. Empty (the default): none.
    #[serde(default)]
    pub http_allow: Vec<String>,
    /// Hosts or addresses in `http_allow` that may be (or resolve to)
    /// loopback, private or link-local addresses.
    #[serde(default)]
    pub http_private: Vec<String>,
    /// `true` lets the plugin read the real time through WASI's wall and
    /// monotonic clocks (the signed webhook needs it for its timestamps).
    /// Off by default: the clocks read the Unix epoch.
    pub wall_clock: Option<bool>,
    /// Values the plugin reads with the `config.get` import, as written
    /// (see [`crate::settings`] for `${NAME}` and secrets).
    #[serde(default)]
    pub settings: toml::Table,
}

impl std::fmt::Debug for PluginConfig {
    /// Settings are shown by key only: their values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginConfig")
            .field("enabled", &self.enabled)
            .field("fuel", &self.fuel)
            .field("timeout_ms", &self.timeout_ms)
            .field("memory_mib", &self.memory_mib)
            .field("queue_capacity", &self.queue_capacity)
            .field("queue_mib", &self.queue_mib)
            .field("reuse_instance", &self.reuse_instance)
            .field("http_allow", &self.http_allow)
            .field("http_private", &self.http_private)
            .field("wall_clock", &self.wall_clock)
            .field("batch_size", &self.batch_size)
            .field("batch_wait_ms", &self.batch_wait_ms)
            .field("max_attempts", &self.max_attempts)
            .field("retry_initial_ms", &self.retry_initial_ms)
            .field("retry_max_ms", &self.retry_max_ms)
            .field("breaker_threshold", &self.breaker_threshold)
            .field("breaker_cooldown_ms", &self.breaker_cooldown_ms)
            .field("breaker_max_cooldown_ms", &self.breaker_max_cooldown_ms)
            .field("on_full", &self.on_full)
            .field("events", &self.events)
            .field("exclude_events", &self.exclude_events)
            .field("min_severity", &self.min_severity)
            .field("require_severity", &self.require_severity)
            .field("tables", &self.tables)
            .field("columns", &self.columns)
            .field("rate_limit", &self.rate_limit)
            .field("dedup_key", &self.dedup_key)
            .field("dedup_window", &self.dedup_window)
            .field("renotify_on_change", &self.renotify_on_change)
            .field("group_by", &self.group_by)
            .field("group_wait", &self.group_wait)
            .field("group_interval", &self.group_interval)
            .field("databases", &self.databases)
            .field("mailers", &self.mailers)
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PluginConfig {
    fn limits(&self) -> LimitsConfig {
        LimitsConfig {
            fuel: self.fuel,
            timeout_ms: self.timeout_ms,
            memory_mib: self.memory_mib,
            queue_capacity: self.queue_capacity,
            queue_mib: self.queue_mib,
            reuse_instance: self.reuse_instance,
            batch_size: self.batch_size,
            batch_wait_ms: self.batch_wait_ms,
            max_attempts: self.max_attempts,
            retry_initial_ms: self.retry_initial_ms,
            retry_max_ms: self.retry_max_ms,
            breaker_threshold: self.breaker_threshold,
            breaker_cooldown_ms: self.breaker_cooldown_ms,
            breaker_max_cooldown_ms: self.breaker_max_cooldown_ms,
            on_full: self.on_full,
        }
    }

    /// The routing keys, for [`RouteFilter::new`].
    fn route_rules(&self) -> RouteRules {
        RouteRules {
            events: self.events.clone(),
            exclude_events: self.exclude_events.clone(),
            min_severity: self.min_severity,
            require_severity: self.require_severity.unwrap_or(false),
            tables: self.tables.clone(),
            columns: self.columns.clone(),
        }
    }

    /// This section's deduplication and grouping, or why a key is wrong:
    /// the reason starts with the key's name, for [`key_line`].
    fn hygiene(&self) -> Result<Hygiene, String> {
        let needs = |key: &str, set: bool, needed: &str| {
            if set {
                Err(format!(
                    "{key} is set but {needed} is not: it has no effect without {needed}"
                ))
            } else {
                Ok(())
            }
        };
        let dedup = match &self.dedup_key {
            Some(template) => Some(DedupRule::new(
                template,
                self.dedup_window.unwrap_or(DEFAULT_DEDUP_WINDOW),
                self.renotify_on_change.unwrap_or(false),
            )?),
            None => {
                needs("dedup_window", self.dedup_window.is_some(), "dedup_key")?;
                needs(
                    "renotify_on_change",
                    self.renotify_on_change.is_some(),
                    "dedup_key",
                )?;
                None
            }
        };
        let group = if self.group_by.is_empty() {
            needs("group_wait", self.group_wait.is_some(), "group_by")?;
            needs("group_interval", self.group_interval.is_some(), "group_by")?;
            None
        } else {
            Some(GroupRule::new(
                &self.group_by,
                self.group_wait.unwrap_or(DEFAULT_GROUP_WAIT),
                self.group_interval.unwrap_or(DEFAULT_GROUP_INTERVAL),
            )?)
        };
        Ok(Hygiene { dedup, group })
    }

    /// This section's route filter; sections without routing keys share
    /// one pass-all filter.
    fn route_filter(&self) -> Arc<RouteFilter> {
        let filter = RouteFilter::new(&self.route_rules());
        if filter.is_pass_all() {
            pass_all()
        } else {
            Arc::new(filter)
        }
    }
}

/// The one pass-all filter, shared by every plugin without routing keys.
fn pass_all() -> Arc<RouteFilter> {
    static PASS_ALL: std::sync::OnceLock<Arc<RouteFilter>> = std::sync::OnceLock::new();
    PASS_ALL
        .get_or_init(|| Arc::new(RouteFilter::pass_all()))
        .clone()
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has unknown or mistyped keys, or a
    /// number outside its allowed range.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column of the offending text.
        column: usize,
        /// What is wrong, as the TOML reader put it.
        message: String,
    },
    /// A plugin's `http_allow` has an entry that is not a destination.
    #[error("{path}: [plugins.{plugin}] http_allow: {reason}")]
    HttpAllow {
        /// The file.
        path: PathBuf,
        /// The plugin.
        plugin: String,
        /// What is wrong.
        reason: String,
    },
    /// A `[databases.<name>]` or `[mailers.<name>]` section is incomplete
    /// or wrong, or a plugin is granted one that is not defined.
    #[error("{path}{}: [{section}]: {reason}", line_suffix(.line))]
    Section {
        /// The file.
        path: PathBuf,
        /// 1-based line of the key at fault, when the reason names a key of
        /// the section.
        line: Option<usize>,
        /// The section, `databases.events` or `plugins.sql`.
        section: String,
        /// What is wrong.
        reason: String,
    },
    /// A plugin setting could not be resolved (an environment variable it
    /// names is not set).
    #[error("{path}: [plugins.{plugin}.settings] {key}: {reason}")]
    Setting {
        /// The file.
        path: PathBuf,
        /// The plugin.
        plugin: String,
        /// The setting.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses configuration text and resolves settings from the process
    /// environment; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|err| {
            let offset = err.span().map_or(0, |span| span.start);
            let (line, column) = line_and_column(text, offset);
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message: err.message().trim().to_owned(),
            }
        })?;
        config.server.resolve(text, path)?;
        for (plugin, section) in &config.plugins {
            let settings = Settings::resolve(&section.settings, |name| std::env::var(name).ok())
                .map_err(|(key, reason)| ConfigError::Setting {
                    path: path.to_owned(),
                    plugin: plugin.clone(),
                    key,
                    reason,
                })?;
            config.resolved.insert(plugin.clone(), settings);
            let grant =
                HttpGrant::parse(&section.http_allow, &section.http_private).map_err(|reason| {
                    ConfigError::HttpAllow {
                        path: path.to_owned(),
                        plugin: plugin.clone(),
                        reason,
                    }
                })?;
            config.http.insert(plugin.clone(), grant);
            config.routes.insert(plugin.clone(), section.route_filter());
            let hygiene = section.hygiene().map_err(|reason| ConfigError::Section {
                path: path.to_owned(),
                line: key_line(text, "plugins", plugin, &reason),
                section: format!("plugins.{plugin}"),
                reason,
            })?;
            config.hygiene.insert(plugin.clone(), Arc::new(hygiene));
        }
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let section_error = |section: String, reason: String| ConfigError::Section {
            path: path.to_owned(),
            line: None,
            section,
            reason,
        };
        let key_error = |kind: &str, name: &str, reason: String| ConfigError::Section {
            path: path.to_owned(),
            line: key_line(text, kind, name, &reason),
            section: format!("{kind}.{name}"),
            reason,
        };
        for (name, table) in &config.databases.0 {
            let spec = resolve_section(table)
                .and_then(|settings| DatabaseSpec::parse(settings, base_dir))
                .map_err(|reason| key_error("databases", name, reason))?;
            config.database_specs.insert(name.clone(), spec);
        }
        for (name, table) in &config.mailers.0 {
            let spec = resolve_section(table)
                .and_then(MailerSpec::parse)
                .map_err(|reason| key_error("mailers", name, reason))?;
            config.mailer_specs.insert(name.clone(), spec);
        }
        for (plugin, section) in &config.plugins {
            let grants = [
                ("databases", &section.databases, config.databases.0.keys()),
                ("mailers", &section.mailers, config.mailers.0.keys()),
            ];
            for (kind, granted, mut defined) in grants {
                if let Some(missing) = granted.iter().find(|name| !defined.any(|d| d == *name)) {
                    return Err(section_error(
                        format!("plugins.{plugin}"),
                        format!("{kind} lists \"{missing}\", but there is no [{kind}.{missing}] section"),
                    ));
                }
            }
        }
        Ok(config)
    }

    /// The limits plugin `name` runs under, its `rate_limit` included.
    pub fn limits_for(&self, name: &str) -> Limits {
        match self.plugins.get(name) {
            Some(plugin) => Limits {
                rate_limit: plugin.rate_limit,
                ..plugin.limits().resolve(&self.defaults)
            },
            None => self.defaults.resolve(&LimitsConfig::default()),
        }
    }

    /// Whether plugin `name` should be loaded: not when `[hooks] enabled =
    /// false`, otherwise unless its own section disables it.
    pub fn is_enabled(&self, name: &str) -> bool {
        self.hooks_enabled()
            && self
                .plugins
                .get(name)
                .and_then(|plugin| plugin.enabled)
                .unwrap_or(true)
    }

    /// Whether hooks are on at all (`[hooks] enabled`, default `true`).
    pub fn hooks_enabled(&self) -> bool {
        self.hooks.enabled.unwrap_or(true)
    }

    /// Which events plugin `name` is given. Built when the file is read,
    /// so this is a reference count; a plugin without routing keys (or
    /// without a section) gets the shared pass-all filter. A `Config` built
    /// in code gets its filters built from its sections here.
    pub fn route_filter(&self, name: &str) -> Arc<RouteFilter> {
        if let Some(filter) = self.routes.get(name) {
            return filter.clone();
        }
        match self.plugins.get(name) {
            Some(plugin) => plugin.route_filter(),
            None => pass_all(),
        }
    }

    /// Plugin `name`'s deduplication and grouping. Built when the file is
    /// read; a `Config` built in code gets them built here, and a section
    /// whose keys are wrong gets none (with an error logged).
    pub fn hygiene_for(&self, name: &str) -> Arc<Hygiene> {
        if let Some(hygiene) = self.hygiene.get(name) {
            return hygiene.clone();
        }
        let built = self.plugins.get(name).map(PluginConfig::hygiene);
        match built {
            Some(Ok(hygiene)) => Arc::new(hygiene),
            Some(Err(reason)) => {
                tracing::error!(plugin = name, "{reason}; no deduplication or grouping");
                Arc::default()
            }
            None => Arc::default(),
        }
    }

    /// Whether plugin `name`'s route filter or `dedup_key` differs between
    /// `self` and `other` (its `rate_limit` is part of
    /// [`Config::limits_for`], compared with the other limits).
    pub fn routing_differs(&self, other: &Config, name: &str) -> bool {
        *self.route_filter(name) != *other.route_filter(name)
            || self.hygiene_for(name).dedup != other.hygiene_for(name).dedup
    }

    /// What plugin `name` may reach over HTTP (nothing unless granted).
    pub fn http_grant_for(&self, name: &str) -> HttpGrant {
        self.http.get(name).cloned().unwrap_or_default()
    }

    /// Whether plugin `name` may read the real time.
    pub fn wall_clock_for(&self, name: &str) -> bool {
        self.plugins
            .get(name)
            .and_then(|plugin| plugin.wall_clock)
            .unwrap_or(false)
    }

    /// Everything plugin `name` is granted, with an HTTP client that
    /// enforces its grant and counts denials in `http_denied`, the host's
    /// database pools, and the plugin's output limit.
    pub(crate) fn grants_for(
        &self,
        name: &str,
        http_denied: Arc<AtomicU64>,
        databases: &Arc<Databases>,
        output_limit: Arc<LogLimit>,
    ) -> Grants {
        Grants {
            settings: Arc::new(self.settings_for(name)),
            http: HttpAccess::new(name, self.http_grant_for(name), http_denied),
            sql: SqlAccess::new(
                self.granted(name, |p| &p.databases, &self.database_specs),
                databases.clone(),
            ),
            email: EmailAccess::new(self.granted(name, |p| &p.mailers, &self.mailer_specs)),
            wall_clock: self.wall_clock_for(name),
            output_limit,
        }
    }

    /// The specs of the sections plugin `name` lists in `list`.
    fn granted<T: Clone>(
        &self,
        name: &str,
        list: impl Fn(&PluginConfig) -> &Vec<String>,
        specs: &BTreeMap<String, T>,
    ) -> BTreeMap<String, T> {
        let Some(plugin) = self.plugins.get(name) else {
            return BTreeMap::new();
        };
        list(plugin)
            .iter()
            .filter_map(|granted| Some((granted.clone(), specs.get(granted)?.clone())))
            .collect()
    }

    /// Whether plugin `name`'s grants differ between `self` and `other`.
    pub(crate) fn grants_differ(&self, other: &Config, name: &str) -> bool {
        let databases = |c: &Config| c.granted(name, |p| &p.databases, &c.database_specs);
        let mailers = |c: &Config| c.granted(name, |p| &p.mailers, &c.mailer_specs);
        self.settings_for(name) != other.settings_for(name)
            || self.http_grant_for(name) != other.http_grant_for(name)
            || self.wall_clock_for(name) != other.wall_clock_for(name)
            || databases(self) != databases(other)
            || mailers(self) != mailers(other)
    }

    /// The resolved settings of plugin `name` (empty when it has none).
    pub fn settings_for(&self, name: &str) -> Settings {
        self.resolved.get(name).cloned().unwrap_or_default()
    }
}

/// A `[databases.*]` or `[mailers.*]` table with `${NAME}` substituted and
/// secrets marked, like plugin settings; `password` is secret however it
/// was written.
fn resolve_section(table: &toml::Table) -> Result<Settings, String> {
    let mut settings = Settings::resolve(table, |name| std::env::var(name).ok())
        .map_err(|(key, reason)| format!("{key}: {reason}"))?;
    settings.mark_secret("password");
    Ok(settings)
}

/// `:<line>` after the file name, when the line is known.
fn line_suffix(line: &Option<usize>) -> String {
    line.map(|line| format!(":{line}")).unwrap_or_default()
}

/// The line of the key a `[kind.name]` section's error `reason` is about:
/// the key the reason starts with (`port `x` is not a port number`), or
/// the one it calls unknown. The sections are read again, this time with
/// the position of each value; this runs only when there is an error.
fn key_line(text: &str, kind: &str, name: &str, reason: &str) -> Option<usize> {
    #[derive(Deserialize)]
    struct Positions {
        #[serde(default)]
        databases: BTreeMap<String, BTreeMap<String, toml::Spanned<toml::Value>>>,
        #[serde(default)]
        mailers: BTreeMap<String, BTreeMap<String, toml::Spanned<toml::Value>>>,
        #[serde(default)]
        plugins: BTreeMap<String, BTreeMap<String, toml::Spanned<toml::Value>>>,
    }
    let positions: Positions = toml::from_str(text).ok()?;
    let section = match kind {
        "databases" => positions.databases.get(name)?,
        "plugins" => positions.plugins.get(name)?,
        _ => positions.mailers.get(name)?,
    };
    let key = match reason.strip_prefix("unknown key `") {
        Some(rest) => rest.split('`').next()?,
        None => reason.split([' ', ':', '`']).next()?,
    };
    let value = section.get(key)?;
    Some(line_and_column(text, value.span().start).0)
}

/// 1-based line and column of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    // Bytes, not `&text[..offset]`: an offset inside a character must not
    // panic.
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[start..]).chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn plugin_overrides_defaults_which_override_builtins() {
        let config = Config::parse(
            "[defaults]\ntimeout_ms = 200\n[plugins.a]\nfuel = 5\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let a = config.limits_for("a");
        assert_eq!(a.fuel, 5);
        assert_eq!(a.timeout, Duration::from_millis(200));
        assert_eq!(a.memory_bytes, (DEFAULT_MEMORY_MIB as usize) << 20);
        assert_eq!(config.limits_for("b").fuel, DEFAULT_FUEL);
    }

    #[test]
    fn delivery_keys_merge_per_plugin_over_defaults() {
        let config = Config::parse(
            "[defaults]\nmax_attempts = 3\nretry_max_ms = 60_000\non_full = \"wait\"\n\
             [plugins.a]\nretry_initial_ms = 2_000\nbreaker_threshold = 0\n\
             on_full = \"drop_oldest\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let a = config.limits_for("a");
        assert_eq!(a.max_attempts, 3);
        assert_eq!(a.retry_initial, Duration::from_secs(2));
        assert_eq!(a.retry_max, Duration::from_secs(60));
        assert_eq!(a.breaker_threshold, 0);
        assert_eq!(
            a.breaker_cooldown,
            Duration::from_millis(DEFAULT_BREAKER_COOLDOWN_MS)
        );
        assert_eq!(a.on_full, OnFull::DropOldest);
        let b = config.limits_for("b");
        assert_eq!(
            b.retry_initial,
            Duration::from_millis(DEFAULT_RETRY_INITIAL_MS)
        );
        assert_eq!(b.breaker_threshold, DEFAULT_BREAKER_THRESHOLD);
        assert_eq!(b.on_full, OnFull::Wait);
    }

    #[test]
    fn plugin_debug_shows_the_delivery_keys() {
        let config = Config::parse(
            "[plugins.a]\nmax_attempts = 4\non_full = \"wait\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let debug = format!("{:?}", config.plugins["a"]);
        assert!(debug.contains("max_attempts: Some(4)"), "{debug}");
        assert!(debug.contains("on_full: Some(Wait)"), "{debug}");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = Config::parse("[plugins.a]\nfule = 5\n", Path::new("c.toml")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("c.toml:2:1: unknown field `fule`"),
            "{text}"
        );
    }

    #[test]
    fn routing_keys_build_a_shared_filter() {
        let config = Config::parse(
            "[plugins.a]\nevents = [\"DataDriftDetected\"]\nmin_severity = \"High\"\n\
             rate_limit = \"20/min\"\n[plugins.b]\nfuel = 5\n",
            Path::new("c"),
        )
        .unwrap();
        let a = config.route_filter("a");
        assert!(!a.is_pass_all());
        assert!(Arc::ptr_eq(&a, &config.route_filter("a")), "built once");
        assert!(config.route_filter("b").is_pass_all());
        assert!(config.route_filter("nobody").is_pass_all());
        assert_eq!(config.plugins["a"].min_severity, Some(Severity::High));
        let limits = config.limits_for("a");
        assert_eq!(limits.rate_limit, Some("20/min".parse().unwrap()));
        assert_eq!(config.limits_for("b").rate_limit, None);
        assert_eq!(config.limits_for("nobody").rate_limit, None);
        let debug = format!("{:?}", config.plugins["a"]);
        assert!(
            debug.contains("min_severity: Some(Severity::High)"),
            "{debug}"
        );
        assert!(debug.contains("rate_limit: Some(RateLimit"), "{debug}");
    }

    #[test]
    fn a_config_built_in_code_gets_its_filter_from_the_section() {
        let mut config = Config::default();
        config.plugins.insert(
            "a".into(),
            PluginConfig {
                tables: vec!["orders".into()],
                ..PluginConfig::default()
            },
        );
        assert!(!config.route_filter("a").is_pass_all());
    }

    #[test]
    fn routing_differs_on_any_routing_key_only() {
        let parse = |text: &str| Config::parse(text, Path::new("c")).unwrap();
        let base = parse("[plugins.a]\nevents = [\"x\"]\n");
        assert!(!base.routing_differs(&parse("[plugins.a]\nevents = [\"x\"]\nfuel = 9\n"), "a"));
        for changed in [
            "[plugins.a]\nevents = [\"y\"]\n",
            "[plugins.a]\nevents = [\"x\"]\nexclude_events = [\"z\"]\n",
            "[plugins.a]\nevents = [\"x\"]\nmin_severity = \"low\"\n",
            "[plugins.a]\nevents = [\"x\"]\nrequire_severity = true\n",
            "[plugins.a]\nevents = [\"x\"]\ntables = [\"t\"]\n",
            "[plugins.a]\nevents = [\"x\"]\ncolumns = [\"c\"]\n",
            "",
        ] {
            assert!(base.routing_differs(&parse(changed), "a"), "{changed}");
        }
        // The rate limit is one of the limits.
        let limited = parse("[plugins.a]\nevents = [\"x\"]\nrate_limit = \"1/s\"\n");
        assert!(!base.routing_differs(&limited, "a"));
        assert_ne!(base.limits_for("a"), limited.limits_for("a"));
        assert!(!base.routing_differs(&base, "other"));
    }

    #[test]
    fn routing_keys_are_not_defaults() {
        for key in [
            "events = [\"x\"]",
            "min_severity = \"low\"",
            "rate_limit = \"1/s\"",
        ] {
            let err = Config::parse(&format!("[defaults]\n{key}\n"), Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("c.toml:2:1: unknown field"), "{err}");
        }
    }

    #[test]
    fn the_master_switch_turns_every_plugin_off() {
        let config = Config::parse(
            "[hooks]\nenabled = false\n[plugins.a]\nenabled = true\n",
            Path::new("c"),
        )
        .unwrap();
        assert!(!config.hooks_enabled());
        assert!(!config.is_enabled("a"));
        assert!(!config.is_enabled("b"));
        let config = Config::parse(
            "[hooks]\nenabled = true\n[plugins.a]\nenabled = false\n",
            Path::new("c"),
        )
        .unwrap();
        assert!(config.hooks_enabled());
        assert!(!config.is_enabled("a"));
        assert!(config.is_enabled("b"));
    }

    #[test]
    fn disabled_plugin_is_not_enabled() {
        let config = Config::parse("[plugins.a]\nenabled = false\n", Path::new("c")).unwrap();
        assert!(!config.is_enabled("a"));
        assert!(config.is_enabled("b"));
    }
}
