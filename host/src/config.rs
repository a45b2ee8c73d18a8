//! The TOML configuration file: limits for every plugin, and per plugin an
//! enabled switch, limit overrides and the settings the plugin reads through
//! the `config` import.
//!
//! ```toml
//! [defaults]            # applies to every plugin
//! timeout_ms = 5000
//!
//! [plugins.slack]       # the plugin loaded from slack.wasm
//! enabled = true
//! fuel = 50_000_000
//! [plugins.slack.settings]
//! channel = "#data-alerts"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::capabilities::email::{EmailAccess, MailerSpec};
use crate::capabilities::http::{HttpAccess, HttpGrant};
use crate::capabilities::sql::{DatabaseSpec, Databases, SqlAccess};
use crate::capabilities::Grants;
use crate::log_limit::LogLimit;
use crate::settings::Settings;

/// Fuel per event when nothing is configured: about a billion wasm
/// instructions, a few hundred milliseconds of guest work. Enough for any
/// hook that formats and sends a message; an infinite loop runs out of it
/// well before the default timeout.
pub const DEFAULT_FUEL: u64 = 1_000_000_000;
/// Wall-clock time per event when nothing is configured. Generous, because
/// it also bounds time spent waiting on the network in host calls.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Linear memory a plugin may grow to when nothing is configured. A Rust
/// hook uses 1-2 MiB; interpreted guests (Python, JavaScript) need tens.
pub const DEFAULT_MEMORY_MIB: u64 = 128;
/// Most events a batch hook gets per call when nothing is configured.
pub const DEFAULT_BATCH_SIZE: usize = 500;
/// How long a batch hook's worker waits for a batch to fill when nothing is
/// configured: short enough that an alert is never noticeably late.
pub const DEFAULT_BATCH_WAIT_MS: u64 = 200;
/// Bytes of events that may wait in one plugin's queue when nothing is
/// configured: with events of up to [`DEFAULT_MAX_EVENT_KIB`], the event
/// count alone would let one slow plugin hold gigabytes.
pub const DEFAULT_QUEUE_MIB: u64 = 64;
/// Largest `.wasm` file loaded as a plugin when nothing is configured. A
/// Rust hook is about 0.1 MiB, a Python or JavaScript one under 20 MiB.
pub const DEFAULT_MAX_PLUGIN_MIB: u64 = 64;
/// Largest event accepted when nothing is configured, as its JSON text: a
/// profiler's event is a few hundred bytes, its largest metadata (a whole
/// schema, a sample of rows) well under this.
pub const DEFAULT_MAX_EVENT_KIB: u64 = 4096;
/// Events that may wait in one plugin's queue. Past this, `Host::emit`
/// refuses the event (nothing is half-delivered) and `Host::send` waits.
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;

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
    /// Largest plugin file loaded, in MiB (`DEFAULT_MAX_PLUGIN_MIB`).
    pub max_plugin_mib: Option<u64>,
    /// Largest event accepted, in KiB of JSON (`DEFAULT_MAX_EVENT_KIB`).
    pub max_event_kib: Option<u64>,
}

impl EngineConfig {
    /// The largest plugin file loaded, in bytes.
    pub fn max_plugin_bytes(&self) -> u64 {
        self.max_plugin_mib
            .unwrap_or(DEFAULT_MAX_PLUGIN_MIB)
            .saturating_mul(1 << 20)
    }

    /// The largest event accepted, in bytes of JSON.
    pub fn max_event_bytes(&self) -> usize {
        let kib = self.max_event_kib.unwrap_or(DEFAULT_MAX_EVENT_KIB);
        usize::try_from(kib.saturating_mul(1 << 10)).unwrap_or(usize::MAX)
    }
}

/// Limits as written in the file; anything left out falls back to the
/// `[defaults]` section and then to the built-in defaults above.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Fuel per event (`DEFAULT_FUEL`).
    pub fuel: Option<u64>,
    /// Wall-clock timeout per event in milliseconds (`DEFAULT_TIMEOUT_MS`).
    pub timeout_ms: Option<u64>,
    /// Memory cap in MiB (`DEFAULT_MEMORY_MIB`).
    pub memory_mib: Option<u64>,
    /// Queue capacity in events (`DEFAULT_QUEUE_CAPACITY`).
    pub queue_capacity: Option<usize>,
    /// Queue capacity in MiB of events (`DEFAULT_QUEUE_MIB`).
    pub queue_mib: Option<u64>,
    /// Keep one instance across events (`true`, the default) or give every
    /// event a fresh instance, so no state carries from one to the next.
    pub reuse_instance: Option<bool>,
    /// Batch hooks only: most events per call (`DEFAULT_BATCH_SIZE`).
    pub batch_size: Option<usize>,
    /// Batch hooks only: how long to wait for a batch to fill before
    /// delivering what is queued, in milliseconds (`DEFAULT_BATCH_WAIT_MS`).
    pub batch_wait_ms: Option<u64>,
}

/// One `[plugins.<name>]` section.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// `false` keeps the plugin's file in the folder but does not load it.
    pub enabled: Option<bool>,
    /// Fuel per event.
    pub fuel: Option<u64>,
    /// Wall-clock timeout per event in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Memory cap in MiB.
    pub memory_mib: Option<u64>,
    /// Queue capacity in events.
    pub queue_capacity: Option<usize>,
    /// Queue capacity in MiB of events.
    pub queue_mib: Option<u64>,
    /// Keep one instance across events, or a fresh one per event.
    pub reuse_instance: Option<bool>,
    /// Batch hooks only: most events per call.
    pub batch_size: Option<usize>,
    /// Batch hooks only: longest wait for a batch to fill, in milliseconds.
    pub batch_wait_ms: Option<u64>,
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
            .field("databases", &self.databases)
            .field("mailers", &self.mailers)
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The limits one plugin runs under, every value resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel per event.
    pub fuel: u64,
    /// Wall-clock timeout per event.
    pub timeout: Duration,
    /// Memory cap in bytes.
    pub memory_bytes: usize,
    /// Queue capacity in events.
    pub queue_capacity: usize,
    /// Queue capacity in bytes of events (their JSON size).
    pub queue_bytes: usize,
    /// Whether one instance serves many events (until it traps).
    pub reuse_instance: bool,
    /// Batch hooks: most events per call.
    pub batch_size: usize,
    /// Batch hooks: longest wait for a batch to fill.
    pub batch_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        LimitsConfig::default().resolve(&LimitsConfig::default())
    }
}

impl LimitsConfig {
    /// Fills what `self` leaves out from `fallback`, then from the built-in
    /// defaults.
    fn resolve(&self, fallback: &LimitsConfig) -> Limits {
        let mib = self
            .memory_mib
            .or(fallback.memory_mib)
            .unwrap_or(DEFAULT_MEMORY_MIB);
        Limits {
            fuel: self.fuel.or(fallback.fuel).unwrap_or(DEFAULT_FUEL),
            timeout: Duration::from_millis(
                self.timeout_ms
                    .or(fallback.timeout_ms)
                    .unwrap_or(DEFAULT_TIMEOUT_MS),
            ),
            memory_bytes: usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
            queue_capacity: self
                .queue_capacity
                .or(fallback.queue_capacity)
                .unwrap_or(DEFAULT_QUEUE_CAPACITY)
                .max(1),
            queue_bytes: usize::try_from(
                self.queue_mib
                    .or(fallback.queue_mib)
                    .unwrap_or(DEFAULT_QUEUE_MIB)
                    .saturating_mul(1 << 20),
            )
            .unwrap_or(usize::MAX),
            reuse_instance: self
                .reuse_instance
                .or(fallback.reuse_instance)
                .unwrap_or(true),
            batch_size: self
                .batch_size
                .or(fallback.batch_size)
                .unwrap_or(DEFAULT_BATCH_SIZE)
                .max(1),
            batch_wait: Duration::from_millis(
                self.batch_wait_ms
                    .or(fallback.batch_wait_ms)
                    .unwrap_or(DEFAULT_BATCH_WAIT_MS),
            ),
        }
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
        }
    }
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
    /// The file is not valid TOML or has unknown or mistyped keys.
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
    #[error("{path}: [{section}]: {reason}")]
    Section {
        /// The file.
        path: PathBuf,
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
        }
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let section_error = |section: String, reason: String| ConfigError::Section {
            path: path.to_owned(),
            section,
            reason,
        };
        for (name, table) in &config.databases.0 {
            let section = format!("databases.{name}");
            let spec = resolve_section(table)
                .and_then(|settings| DatabaseSpec::parse(settings, base_dir))
                .map_err(|reason| section_error(section, reason))?;
            config.database_specs.insert(name.clone(), spec);
        }
        for (name, table) in &config.mailers.0 {
            let section = format!("mailers.{name}");
            let spec = resolve_section(table)
                .and_then(MailerSpec::parse)
                .map_err(|reason| section_error(section, reason))?;
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

    /// The limits plugin `name` runs under.
    pub fn limits_for(&self, name: &str) -> Limits {
        match self.plugins.get(name) {
            Some(plugin) => plugin.limits().resolve(&self.defaults),
            None => self.defaults.resolve(&LimitsConfig::default()),
        }
    }

    /// Whether plugin `name` should be loaded (it is unless disabled).
    pub fn is_enabled(&self, name: &str) -> bool {
        self.plugins
            .get(name)
            .and_then(|plugin| plugin.enabled)
            .unwrap_or(true)
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

/// 1-based line and column of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
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
    fn unknown_key_is_named_with_its_line() {
        let err = Config::parse("[plugins.a]\nfule = 5\n", Path::new("c.toml")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("c.toml:2:1: unknown field `fule`"),
            "{text}"
        );
    }

    #[test]
    fn disabled_plugin_is_not_enabled() {
        let config = Config::parse("[plugins.a]\nenabled = false\n", Path::new("c")).unwrap();
        assert!(!config.is_enabled("a"));
        assert!(config.is_enabled("b"));
    }
}
