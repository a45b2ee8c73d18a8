//! Startup time for 20 plugins: cold (every component compiled) and warm
//! (every component loaded from the compiled-component cache), and the
//! ratio, in one run.
//!
//! `cargo bench --bench startup` runs it in full; `cargo test` runs it once
//! to check it still works.

use std::path::Path;
use std::time::{Duration, Instant};

use hookhost::Host;

const PLUGINS: usize = 20;

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let rounds = if full { 5 } else { 1 };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let plugins = tempfile::tempdir().expect("temporary folder");
        let source = Path::new(env!("HOOKHOST_GUEST_DIR")).join("plugins/logging.wasm");
        let bytes = std::fs::read(&source).expect("the logging plugin is built");
        for n in 0..PLUGINS {
            // Distinct content per copy, so each one is its own cache entry.
            let copy = with_custom_section(&bytes, &format!("copy {n}"));
            std::fs::write(plugins.path().join(format!("logging-{n}.wasm")), copy)
                .expect("write plugin");
        }
        println!(
            "startup benchmark: {PLUGINS} plugins of {} KiB each, best of {rounds}",
            bytes.len() / 1024
        );
        let (mut cold, mut warm) = (Duration::MAX, Duration::MAX);
        for _ in 0..rounds {
            let cache = tempfile::tempdir().expect("temporary folder");
            cold = cold.min(start(plugins.path(), cache.path(), PLUGINS as u64, 0).await);
            warm = warm.min(start(plugins.path(), cache.path(), 0, PLUGINS as u64).await);
        }
        println!(
            "cold start (compile all):  {:>8.1} ms",
            cold.as_secs_f64() * 1e3
        );
        println!(
            "warm start (cache):        {:>8.1} ms",
            warm.as_secs_f64() * 1e3
        );
        let ratio = cold.as_secs_f64() / warm.as_secs_f64();
        println!("ratio cold / warm:         {ratio:>8.1}x");
        if full {
            let verdict = if ratio >= 10.0 { "met" } else { "MISSED" };
            println!("goal warm start >= 10x faster than cold: {verdict}");
        }
    });
}

/// Builds a host over `plugins`, checks how many components were compiled
/// and loaded from the cache, and returns the time it took.
async fn start(plugins: &Path, cache: &Path, compiled: u64, loaded: u64) -> Duration {
    let started = Instant::now();
    let host = Host::builder()
        .plugins_dir(plugins)
        .cache_dir(cache)
        .build()
        .await
        .expect("host builds");
    let elapsed = started.elapsed();
    let stats = host.cache_stats();
    assert_eq!((stats.compiled, stats.loaded), (compiled, loaded));
    assert_eq!(host.plugin_names().len(), PLUGINS);
    host.shutdown().await;
    elapsed
}

/// `component` with a custom section appended (valid anywhere at the top
/// level of a component, and ignored by the runtime).
fn with_custom_section(component: &[u8], name: &str) -> Vec<u8> {
    let mut payload = leb128(name.len());
    payload.extend_from_slice(name.as_bytes());
    let mut out = component.to_vec();
    out.push(0); // custom section id
    out.extend(leb128(payload.len()));
    out.extend(payload);
    out
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}
