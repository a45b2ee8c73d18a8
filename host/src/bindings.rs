//! Host-side bindings generated from the `hook` world in `wit/`.
//!
//! `handle` is called asynchronously so that a plugin's deadline can also
//! cancel it while it waits in a host call; `log` is synchronous because it
//! never does I/O on the caller's behalf; `http.send` is async so that it
//! waits without holding a thread.

wasmtime::component::bindgen!({
    world: "hook",
    path: "../wit",
    imports: { "hookhost:hooks/http.send": async },
    exports: { default: async },
    additional_derives: [PartialEq],
});

pub use self::hookhost::hooks::log::Level as LogLevel;
pub use self::hookhost::hooks::types::{
    Anomaly, DataDrift, Event, EventKind, HookError, MetricValue, ProfilingCompleted,
    ProfilingFailed, ProfilingSkipped, ProfilingStarted, QualityScoreDegraded,
    QualityThresholdBreached, Retry, SchemaChange, SchemaChangeType, Severity, ValidationFailure,
};
