//! Fuzz target: `Config::parse` on any text, then every query a host makes
//! of a config it accepted. None of it may panic. It runs inside a tokio
//! runtime, as in the host: a `[databases.*]` section creates a (lazy)
//! connection pool, which needs one (and spawns tasks that a worker thread
//! must run to their end).
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use hookhost::Config;
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime for the fuzz target")
    })
}

fuzz_target!(|data: &[u8]| {
    let _runtime = runtime().enter();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text, Path::new("fuzz.toml")) else {
        return;
    };
    let _ = config.engine.max_event_bytes();
    let _ = config.engine.max_plugin_bytes();
    for name in config.plugins.keys().map(String::as_str).chain(["absent"]) {
        let _ = config.limits_for(name);
        let _ = config.is_enabled(name);
        let _ = config.http_grant_for(name);
        let _ = config.settings_for(name);
    }
});
