//! Loading costs, in one run: startup time for 20 plugins cold (every
//! component compiled) and warm (every component loaded from the
//! compiled-component cache) and their ratio; and the time from the final
//! write of a new 1 MiB version of a plugin to that version handling its
//! first event.
//!
//! `cargo bench --bench reload` runs it in full; `cargo test` runs it
//! briefly to check it still works.

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
            let copy = with_custom_section_of(&bytes, &format!("copy {n}"), 0);
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
        let swaps = swap_latencies(&bytes, if full { 10 } else { 2 }).await;
        let worst = swaps.iter().max().copied().unwrap_or_default();
        let median = swaps[swaps.len() / 2];
        println!(
            "swap of a 1 MiB plugin, final write to first event on the new version: \
             median {:.0} ms, worst {:.0} ms of {}",
            median.as_secs_f64() * 1e3,
            worst.as_secs_f64() * 1e3,
            swaps.len()
        );
        if full {
            let verdict = |met: bool| if met { "met" } else { "MISSED" };
            println!(
                "goal warm start >= 10x faster than cold: {}",
                verdict(ratio >= 10.0)
            );
            println!(
                "goal swap of 1 MiB under 500 ms: {}",
                verdict(worst < Duration::from_millis(500))
            );
        }
    });
}

/// Replaces a watched 1 MiB plugin `rounds` times with new content and
/// measures, each time, from the end of the write until an event is handled
/// by the new version. Sorted.
async fn swap_latencies(component: &[u8], rounds: usize) -> Vec<Duration> {
    let plugins = tempfile::tempdir().expect("temporary folder");
    let path = plugins.path().join("big.wasm");
    let version = |n: usize| with_custom_section_of(component, &format!("v{n}"), 1 << 20);
    std::fs::write(&path, version(0)).expect("write plugin");
    let host = Host::builder()
        .plugins_dir(plugins.path())
        .watch(true)
        .build()
        .await
        .expect("host builds");
    let mut latencies = Vec::with_capacity(rounds);
    for n in 1..=rounds {
        let bytes = version(n);
        let hash = hookhost::cache::content_hash(&bytes);
        std::fs::write(&path, &bytes).expect("write plugin");
        let written = Instant::now();
        loop {
            let event = hookhost::Event::from_json(r#"{"event_type": "Tick", "metadata": {}}"#)
                .expect("valid event");
            let report = host.emit_with_report(event).expect("accepted").wait().await;
            if *report.outcomes[0].1.version == hash {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(30),
                "the new version never came"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(written.elapsed());
    }
    host.shutdown().await;
    latencies.sort();
    latencies
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

/// `component` with a custom section of `padding` bytes appended (valid
/// anywhere at the top level of a component, and ignored by the runtime).
fn with_custom_section_of(component: &[u8], name: &str, padding: usize) -> Vec<u8> {
    let mut payload = leb128(name.len());
    payload.extend_from_slice(name.as_bytes());
    payload.resize(payload.len() + padding, 0);
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
