//! The echo hook in each language (`examples/hooks/<language>`): component
//! size, first load (compile) and second load (compiled-component cache),
//! and time per event; then whether loading a large component stalls
//! dispatch to the plugins already running: round-trip latency of events to
//! a small plugin while the Python component compiles, against the same
//! measurement with nothing compiling.
//!
//! `cargo bench --bench languages` runs it in full, building the Python,
//! JavaScript and C components with their `build.sh` when needed;
//! `cargo test` runs it briefly, for Rust and C only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hookhost::{Config, Event, Host};

/// Limits for interpreted guests (see `examples/hooks/README.md`).
const CONFIG: &str = "[defaults]\nfuel = 20_000_000_000\ntimeout_ms = 30_000\nmemory_mib = 512\n";

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let languages: &[&str] = if full {
        &["rust", "python", "javascript", "c"]
    } else {
        &["rust", "c"]
    };
    let events = if full { 2_000 } else { 20 };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        println!("languages benchmark: the echo hook, {events} drift events each");
        println!("language      size   first load  second load  per event (median)");
        for language in languages {
            let component = component(language);
            let size = std::fs::metadata(&component).expect("component").len();
            let plugins = tempfile::tempdir().expect("temporary folder");
            std::fs::copy(&component, plugins.path().join(format!("{language}.wasm")))
                .expect("copy component");
            let cache = tempfile::tempdir().expect("temporary folder");
            let (cold, _) = start(plugins.path(), cache.path()).await;
            let (warm, host) = start(plugins.path(), cache.path()).await;
            let per_event = median_latency(&host, events).await;
            host.shutdown().await;
            println!(
                "{language:<10} {:>7.1} MB {:>9.0} ms {:>9.0} ms {:>12.1} µs",
                size as f64 / 1e6,
                cold.as_secs_f64() * 1e3,
                warm.as_secs_f64() * 1e3,
                per_event.as_secs_f64() * 1e6
            );
        }
        if full {
            stall(&component("python")).await;
        }
    });
}

/// A language's echo component: Rust's from the host's build, the others
/// from their build scripts (which do nothing when up to date).
fn component(language: &str) -> PathBuf {
    if language == "rust" {
        return Path::new(env!("HOOKHOST_GUEST_DIR")).join("examples/rust.wasm");
    }
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/hooks")
        .join(language);
    let status = Command::new("bash")
        .arg(folder.join("build.sh"))
        .status()
        .expect("run build.sh");
    assert!(status.success(), "building the {language} echo hook failed");
    folder.join("build").join(format!("{language}-echo.wasm"))
}

/// Starts a host over `plugins`, caching in `cache`: how long it took.
async fn start(plugins: &Path, cache: &Path) -> (Duration, Host) {
    let started = Instant::now();
    let host = Host::builder()
        .plugins_dir(plugins)
        .cache_dir(cache)
        .config(Config::parse(CONFIG, Path::new("bench.toml")).expect("config"))
        .build()
        .await
        .expect("host");
    assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());
    (started.elapsed(), host)
}

/// The median time a call to the hook took, over `events` events (after
/// one that creates the instance).
async fn median_latency(host: &Host, events: u64) -> Duration {
    let mut latencies = Vec::new();
    for seq in 0..=events {
        let report = host
            .emit_with_report(drift(seq))
            .expect("emit")
            .wait()
            .await;
        let outcome = &report.outcomes[0].1;
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        if seq > 0 {
            latencies.push(outcome.latency);
        }
    }
    latencies.sort();
    latencies[latencies.len() / 2]
}

/// Round trips to the `counts` fixture, one every 2 ms, while nothing else
/// happens and while `large` is hot-loaded into the same host.
async fn stall(large: &Path) {
    let plugins = tempfile::tempdir().expect("temporary folder");
    let counts = Path::new(env!("HOOKHOST_GUEST_DIR")).join("fixtures/counts.wasm");
    std::fs::copy(counts, plugins.path().join("counts.wasm")).expect("copy counts");
    let host = Host::builder()
        .plugins_dir(plugins.path())
        .watch(true)
        .config(Config::parse(CONFIG, Path::new("bench.toml")).expect("config"))
        .build()
        .await
        .expect("host");
    let mut seq = 1;
    let quiet = round_trips(&host, &mut seq, |_| false, Duration::from_secs(3)).await;
    let copy = plugins.path().join("python.wasm.part");
    std::fs::copy(large, &copy).expect("copy the large component");
    std::fs::rename(&copy, plugins.path().join("python.wasm")).expect("rename");
    let loading = round_trips(
        &host,
        &mut seq,
        |host| host.plugin_names().iter().any(|name| name == "python"),
        Duration::from_secs(300),
    )
    .await;
    host.shutdown().await;
    let describe = |label: &str, mut trips: Vec<Duration>| {
        trips.sort();
        let p99 = trips[trips.len() * 99 / 100];
        let max = trips[trips.len() - 1];
        println!(
            "{label}: {} events to counts, p99 {:.2} ms, max {:.2} ms",
            trips.len(),
            p99.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    };
    describe("while nothing loads         ", quiet);
    describe("while python.wasm compiles  ", loading);
}

/// Round-trip times of events sent one every 2 ms until `done(host)` or
/// `limit`.
async fn round_trips(
    host: &Host,
    seq: &mut u64,
    done: impl Fn(&Host) -> bool,
    limit: Duration,
) -> Vec<Duration> {
    let started = Instant::now();
    let mut trips = Vec::new();
    while !done(host) && started.elapsed() < limit {
        let sent = Instant::now();
        let event = Event::from_json(&format!(
            r#"{{"event_type": "ProfilingStarted", "metadata": {{"table": "t", "seq": {seq}}}}}"#
        ))
        .expect("event");
        *seq += 1;
        host.emit_with_report(event).expect("emit").wait().await;
        trips.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    trips
}

fn drift(seq: u64) -> Event {
    Event::from_json(&format!(
        r#"{{"event_type": "DataDriftDetected", "timestamp": "2025-01-15T10:30:00Z",
            "metadata": {{"table": "orders", "column": "total_amount", "metric": "mean",
                "baseline_value": 100.0, "current_value": 150.0, "change_percent": 50.0,
                "drift_severity": "high", "seq": {seq}}}}}"#
    ))
    .expect("valid event")
}
