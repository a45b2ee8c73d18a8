//! Fuzz target: `Config::parse` on any text, then every query a host makes
//! of a config it accepted. None of it may panic. Parsing only reads and
//! checks the text (database sections are resolved, not connected), so no
//! runtime is needed.
#![no_main]

use std::path::Path;

use hookhost::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
