//! `PluginState`, the data of each plugin's `Store`: its sandboxed WASI
//! context, its settings, and the limits checked while it runs.
//!
//! One [`MemoryBudget`] per instance counts both the guest's linear memory
//! and the bytes the host holds on the guest's behalf (pending output, SQL
//! rows being collected, ...): a guest cannot make the host grow past its
//! own memory cap by asking for things instead of allocating them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::capabilities::email::EmailAccess;
use crate::capabilities::http::HttpAccess;
use crate::capabilities::log::PluginOutput;
use crate::capabilities::sql::SqlAccess;
use crate::capabilities::{wasi, Grants};
use crate::settings::Settings;

/// Table elements a plugin's tables may grow to. Guests grow tables only for
/// function pointers; a million is far past any real hook and stops a
/// runaway loop long before it costs much memory.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// Host resources (WASI streams, pollables, ...) one instance may hold at
/// once. A hook needs a handful (stdout, stderr, a pollable or two); each
/// entry costs the host some memory, so a guest that opens streams in a
/// loop is stopped here, as out of memory, instead of growing the host.
pub const MAX_HOST_RESOURCES: usize = 1_024;

/// Store data for one plugin instance.
pub struct PluginState {
    /// The plugin's name, as used in logs.
    pub(crate) plugin: Arc<str>,
    /// The plugin's `[plugins.<name>.settings]`.
    pub(crate) settings: Arc<Settings>,
    /// When the current call must end; checked on every epoch tick and
    /// bounding every host call.
    pub(crate) deadline: Instant,
    /// What the current event has made the host do so far; reset for every
    /// call.
    pub(crate) effects: EventEffects,
    /// Which delivery the current call is, and the wait the hook asked for
    /// through `delivery.retry-after`; set by the worker before every call.
    pub(crate) delivery: DeliveryCall,
    /// What the plugin may reach over HTTP, and its client.
    pub(crate) http: HttpAccess,
    /// The databases it may use.
    pub(crate) sql: SqlAccess,
    /// The mailers it may send through.
    pub(crate) email: EmailAccess,
    /// Where its log lines and stdout/stderr go, under its output limit.
    pub(crate) output: PluginOutput,
    /// Linear memory plus host-held bytes, against the plugin's memory cap.
    pub(crate) memory: MemoryBudget,
    wasi: WasiCtx,
    table: ResourceTable,
}

/// Counts of the effects one event has caused, for the per-event bounds of
/// the capabilities (requests, messages, recipients, ...).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct EventEffects {
    /// HTTP requests sent, redirects included.
    pub(crate) http_requests: u32,
    /// Email messages sent.
    pub(crate) emails: u32,
    /// Email recipients (to and cc) addressed.
    pub(crate) email_recipients: u32,
}

/// The `delivery` import's view of one call: set by the worker before the
/// call, read back after it.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeliveryCall {
    /// Which delivery of the event this is (1 = first; for a batch, the
    /// highest of its events). 0 reads as 1.
    pub(crate) attempt: u32,
    /// The wait the hook asked for before the next delivery, the last
    /// `retry-after` of the call; `None` when it asked for none.
    pub(crate) retry_after: Option<std::time::Duration>,
    /// The events of the call that repeats were suppressed before, with
    /// their counts (`delivery.suppressed`); usually none.
    pub(crate) suppressed: Vec<(String, u32)>,
}

impl PluginState {
    /// State for a fresh instance of `plugin`.
    pub(crate) fn new(plugin: Arc<str>, grants: &Grants, memory_cap: usize) -> Self {
        let memory = MemoryBudget::new(memory_cap);
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HOST_RESOURCES);
        let output = PluginOutput::new(
            plugin.clone(),
            grants.settings.clone(),
            grants.output_limit.clone(),
        );
        PluginState {
            http: grants.http.clone(),
            sql: grants.sql.clone(),
            email: grants.email.clone(),
            wasi: wasi::sandboxed_ctx(&output, grants, &memory),
            output,
            plugin,
            settings: grants.settings.clone(),
            deadline: Instant::now(),
            effects: EventEffects::default(),
            delivery: DeliveryCall::default(),
            memory,
            table,
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

/// A plugin went past its memory cap: its linear memory grew past it, or
/// the host would have had to hold more on its behalf than the cap leaves.
/// Raised as a trap so the call stops at once and the failure is classed as
/// out of memory.
#[derive(Debug, thiserror::Error)]
#[error("memory cap of {cap} bytes exceeded ({what})")]
pub struct MemoryCapExceeded {
    /// The cap.
    pub cap: usize,
    /// What asked for the memory, and how much.
    pub what: String,
}

/// One instance's memory: its linear memories and what the host holds for
/// it, counted together against one cap. Cheap to clone; clones share the
/// counts (output streams hold one).
#[derive(Clone, Debug)]
pub(crate) struct MemoryBudget(Arc<BudgetCounts>);

#[derive(Debug)]
struct BudgetCounts {
    cap: usize,
    linear: AtomicUsize,
    host: AtomicUsize,
}

impl MemoryBudget {
    pub(crate) fn new(cap: usize) -> Self {
        MemoryBudget(Arc::new(BudgetCounts {
            cap,
            linear: AtomicUsize::new(0),
            host: AtomicUsize::new(0),
        }))
    }

    /// Takes `bytes` for something the host keeps for the plugin (`what`,
    /// named in the error); released when the returned charge is dropped.
    pub(crate) fn charge(&self, bytes: usize, what: &str) -> Result<HostCharge, MemoryCapExceeded> {
        let mut charge = HostCharge {
            budget: self.clone(),
            bytes: 0,
        };
        charge.grow(bytes, what)?;
        Ok(charge)
    }

    fn grow_linear(&self, current: usize, desired: usize) -> Result<(), MemoryCapExceeded> {
        let host = self.0.host.load(Ordering::Relaxed);
        let linear = self.0.linear.load(Ordering::Relaxed);
        let after = linear.saturating_sub(current) + desired;
        if after.saturating_add(host) > self.0.cap {
            return Err(MemoryCapExceeded {
                cap: self.0.cap,
                what: if host > 0 {
                    format!(
                        "the plugin asked for {desired} bytes of linear memory while the host \
                         holds {host} bytes for it"
                    )
                } else {
                    format!("the plugin asked for {desired} bytes of linear memory")
                },
            });
        }
        self.0.linear.store(after, Ordering::Relaxed);
        Ok(())
    }
}

/// Bytes the host holds for a plugin, counted in its [`MemoryBudget`] until
/// dropped.
#[derive(Debug)]
pub(crate) struct HostCharge {
    budget: MemoryBudget,
    bytes: usize,
}

impl HostCharge {
    /// Takes `more` bytes on top of what this charge holds.
    pub(crate) fn grow(&mut self, more: usize, what: &str) -> Result<(), MemoryCapExceeded> {
        let counts = &self.budget.0;
        if more > counts.cap {
            return Err(MemoryCapExceeded {
                cap: counts.cap,
                what: format!("the host would hold {more} bytes of {what} for it"),
            });
        }
        let host = counts.host.fetch_add(more, Ordering::Relaxed) + more;
        let linear = counts.linear.load(Ordering::Relaxed);
        if host.saturating_add(linear) > counts.cap {
            counts.host.fetch_sub(more, Ordering::Relaxed);
            return Err(MemoryCapExceeded {
                cap: counts.cap,
                what: format!(
                    "the host would hold {} more bytes of {what} for it, on top of {linear} \
                     bytes of linear memory and {} bytes already held",
                    more,
                    host - more
                ),
            });
        }
        self.bytes += more;
        Ok(())
    }

    /// Makes the charge exactly `bytes`: takes more (which may fail) or
    /// gives some back.
    pub(crate) fn resize(&mut self, bytes: usize, what: &str) -> Result<(), MemoryCapExceeded> {
        if bytes > self.bytes {
            self.grow(bytes - self.bytes, what)
        } else {
            self.shrink(self.bytes - bytes);
            Ok(())
        }
    }

    /// Gives back `less` bytes (at most what the charge holds).
    pub(crate) fn shrink(&mut self, less: usize) {
        let less = less.min(self.bytes);
        self.budget.0.host.fetch_sub(less, Ordering::Relaxed);
        self.bytes -= less;
    }
}

impl Drop for HostCharge {
    fn drop(&mut self) {
        self.budget.0.host.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl ResourceLimiter for PluginState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Past the memory's own declared maximum the growth fails anyway;
        // say so before counting it.
        if maximum.is_some_and(|maximum| desired > maximum) {
            return Ok(false);
        }
        self.memory
            .grow_linear(current, desired)
            .map_err(wasmtime::Error::new)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_memory_and_host_charges_share_one_cap() {
        let budget = MemoryBudget::new(1000);
        budget.grow_linear(0, 600).unwrap();
        let mut charge = budget.charge(300, "output").unwrap();
        let err = charge.grow(200, "output").unwrap_err();
        assert!(
            err.to_string().contains("200 more bytes of output"),
            "{err}"
        );
        assert!(budget.grow_linear(600, 800).is_err(), "host bytes count");
        charge.shrink(300);
        budget.grow_linear(600, 800).unwrap();
        drop(charge);
        let held = budget.charge(200, "rows").unwrap();
        assert!(budget.charge(1, "rows").is_err(), "800 + 200 fill the cap");
        drop(held);
        budget
            .charge(200, "rows")
            .expect("a dropped charge gives its bytes back");
    }
}
