//! `PluginState`, the data of each plugin's `Store`: its sandboxed WASI
//! context, its settings, and the limits checked while it runs.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::capabilities::email::EmailAccess;
use crate::capabilities::http::HttpAccess;
use crate::capabilities::sql::SqlAccess;
use crate::capabilities::{wasi, Grants};
use crate::settings::Settings;

/// Table elements a plugin's tables may grow to. Guests grow tables only for
/// function pointers; a million is far past any real hook and stops a
/// runaway loop long before it costs much memory.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// Store data for one plugin instance.
pub struct PluginState {
    /// The plugin's name, as used in logs.
    pub(crate) plugin: Arc<str>,
    /// The plugin's `[plugins.<name>.settings]`.
    pub(crate) settings: Arc<Settings>,
    /// When the current call must end; checked on every epoch tick and
    /// bounding every host call.
    pub(crate) deadline: Instant,
    /// What the plugin may reach over HTTP, and its client.
    pub(crate) http: HttpAccess,
    /// The databases it may use.
    pub(crate) sql: SqlAccess,
    /// The mailers it may send through.
    pub(crate) email: EmailAccess,
    memory_cap: usize,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl PluginState {
    /// State for a fresh instance of `plugin`.
    pub(crate) fn new(plugin: Arc<str>, grants: &Grants, memory_cap: usize) -> Self {
        PluginState {
            http: grants.http.clone(),
            sql: grants.sql.clone(),
            email: grants.email.clone(),
            wasi: wasi::sandboxed_ctx(&plugin, &grants.settings, grants.wall_clock),
            plugin,
            settings: grants.settings.clone(),
            deadline: Instant::now(),
            memory_cap,
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A plugin grew its memory past its cap. Raised as a trap so the call stops
/// at once and the failure is classed as out of memory.
#[derive(Debug, thiserror::Error)]
#[error("memory cap of {cap} bytes exceeded (the plugin asked for {desired} bytes)")]
pub struct MemoryCapExceeded {
    /// The cap.
    pub cap: usize,
    /// The size the plugin asked to grow to.
    pub desired: usize,
}

impl ResourceLimiter for PluginState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            return Err(wasmtime::Error::new(MemoryCapExceeded {
                cap: self.memory_cap,
                desired,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
