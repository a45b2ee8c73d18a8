//! The imports the host gives plugins, one module per WIT interface, and
//! [`Grants`]: what one plugin's config section lets it use.

use std::sync::Arc;
use std::time::Instant;

use crate::log_limit::LogLimit;

use crate::settings::Settings;

pub mod config;
pub mod delivery;
pub mod email;
pub mod http;
pub mod log;
pub mod sql;
pub mod wasi;

/// Everything one plugin has been granted, resolved from its
/// `[plugins.<name>]` section. A worker holds one and hands it to every
/// instance it creates; a config edit replaces it as a whole.
#[derive(Clone)]
pub(crate) struct Grants {
    /// Its settings, read through the `config` import.
    pub(crate) settings: Arc<Settings>,
    /// Where it may send HTTP requests, and the client that enforces it.
    pub(crate) http: http::HttpAccess,
    /// The databases it may use (`databases = [...]`).
    pub(crate) sql: sql::SqlAccess,
    /// The mailers it may send through (`mailers = [...]`).
    pub(crate) email: email::EmailAccess,
    /// Whether its WASI clocks tell the real time (`wall_clock = true`);
    /// otherwise they read the Unix epoch.
    pub(crate) wall_clock: bool,
    /// The limit on what it writes to the host log (log calls, stdout,
    /// stderr), kept across reconfigurations so its count of dropped lines
    /// runs on.
    pub(crate) output_limit: Arc<LogLimit>,
}

impl Grants {
    /// Nothing granted: no settings, no HTTP, databases or mailers, frozen
    /// clocks.
    pub(crate) fn none(plugin: &str) -> Grants {
        Grants {
            settings: Arc::default(),
            http: http::HttpAccess::new(plugin, Default::default(), Default::default()),
            sql: Default::default(),
            email: Default::default(),
            wall_clock: false,
            output_limit: Arc::new(LogLimit::output(Instant::now())),
        }
    }
}

/// `hookhost:hooks/types` defines types only; its generated `Host` trait has
/// no functions.
impl crate::bindings::hookhost::hooks::types::Host for crate::state::PluginState {}
