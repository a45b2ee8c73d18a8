//! Events persisted per second to a SQLite file by the built-in `sql`
//! hook, in one run: with batching (one transaction per batch of up to
//! 500 events) and with one transaction per event (the way the Python
//! profilers' SQL hooks write), and the ratio.
//!
//! Each measurement starts a host on a fresh database, emits every event,
//! and stops the clock when shutdown has flushed the last batch and every
//! row is in the file.
//!
//! `cargo bench --bench sql` runs it in full; `cargo test` runs it briefly
//! to check it still works.

use std::path::Path;
use std::time::{Duration, Instant};

use hookhost::{Config, Event, Host};

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (batched_events, single_events) = if full { (100_000, 5_000) } else { (500, 50) };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        println!("sql benchmark: drift events into a SQLite file (WAL), best of 3");
        let batched = best_of_3(batched_events, "batch_size = 500").await;
        let single = best_of_3(single_events, "batch_size = 1").await;
        let rate = |events: u64, took: Duration| events as f64 / took.as_secs_f64();
        let batched_rate = rate(batched_events, batched);
        let single_rate = rate(single_events, single);
        println!("batched (500 per transaction):  {batched_rate:>9.0} events/s ({batched_events} events)");
        println!("one transaction per event:      {single_rate:>9.0} events/s ({single_events} events)");
        println!("ratio batched / per event:      {:>9.1}x", batched_rate / single_rate);
    });
}

async fn best_of_3(events: u64, batching: &str) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..3 {
        best = best.min(persist(events, batching).await);
    }
    best
}

/// Time to persist `events` drift events with the hook configured by
/// `batching`.
async fn persist(events: u64, batching: &str) -> Duration {
    let dir = tempfile::tempdir().expect("temporary folder");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("plugins folder");
    let guest = Path::new(env!("HOOKHOST_GUEST_DIR")).join("plugins/sql.wasm");
    std::fs::copy(guest, plugins.join("sql.wasm")).expect("the sql plugin is built");
    let db = dir.path().join("events.db");
    let config = format!(
        "[databases.events]\nurl = \"sqlite://{}\"\n\
         [plugins.sql]\ndatabases = [\"events\"]\nbatch_wait_ms = 5\n{batching}\n",
        db.display()
    );
    let host = Host::builder()
        .plugins_dir(&plugins)
        .config(Config::parse(&config, Path::new("bench.toml")).expect("config"))
        .build()
        .await
        .expect("host");
    assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());
    // Create the table before the clock starts.
    host.emit_with_report(drift(u64::MAX))
        .expect("emit")
        .wait()
        .await;
    let started = Instant::now();
    for seq in 0..events {
        host.send(drift(seq)).await.expect("send");
    }
    let summaries = host.shutdown().await;
    let took = started.elapsed();
    let stats = &summaries[0].stats;
    assert_eq!((stats.handled, stats.failed_total()), (events + 1, 0));
    took
}

fn drift(seq: u64) -> Event {
    Event::from_json(&format!(
        r#"{{"event_id": "evt-{seq}", "event_type": "DataDriftDetected",
            "timestamp": "2025-01-15T10:30:00Z",
            "metadata": {{"table": "orders", "column": "total_amount", "metric": "mean",
                "baseline_value": 100.0, "current_value": 150.0, "change_percent": 50.0,
                "drift_severity": "high", "seq": {seq}}}}}"#
    ))
    .expect("valid event")
}
