//! Host-side bindings generated from the `hook` and `batch-hook` worlds in
//! `wit/`.
//!
//! Exports are called asynchronously so that a plugin's deadline can also
//! cancel a call while it waits in a host call; `log`, `config` and
//! `delivery` are synchronous because they never do I/O on the caller's
//! behalf; `http`, `sql` and `email` are async so that they wait without
//! holding a thread.
//! `sql.query` is also trappable: a result that would take the plugin past
//! its memory cap stops the call as out of memory.

wasmtime::component::bindgen!({
    world: "hook",
    path: "../wit",
    imports: {
        "hookhost:hooks/http.send": async,
        "hookhost:hooks/sql.dialect-of": async,
        "hookhost:hooks/sql.execute": async,
        "hookhost:hooks/sql.query": async | trappable,
        "hookhost:hooks/sql.transaction": async,
        "hookhost:hooks/email.send": async,
    },
    exports: { default: async },
    additional_derives: [PartialEq],
});

/// The `batch-hook` world: the same imports (shared with the `hook`
/// world's bindings), and the `batch-handler` export.
pub mod batch {
    wasmtime::component::bindgen!({
        world: "batch-hook",
        path: "../wit",
        exports: { default: async },
        with: {
            "hookhost:hooks/types": super::hookhost::hooks::types,
            "hookhost:hooks/log": super::hookhost::hooks::log,
            "hookhost:hooks/config": super::hookhost::hooks::config,
            "hookhost:hooks/delivery": super::hookhost::hooks::delivery,
            "hookhost:hooks/http": super::hookhost::hooks::http,
            "hookhost:hooks/sql": super::hookhost::hooks::sql,
            "hookhost:hooks/email": super::hookhost::hooks::email,
        },
    });
}

pub use self::hookhost::hooks::log::Level as LogLevel;
pub use self::hookhost::hooks::types::{
    Anomaly, DataDrift, Event, EventKind, HookError, MetricValue, ProfilingCompleted,
    ProfilingFailed, ProfilingSkipped, ProfilingStarted, QualityScoreDegraded,
    QualityThresholdBreached, Retry, SchemaChange, SchemaChangeType, Severity, ValidationFailure,
};
