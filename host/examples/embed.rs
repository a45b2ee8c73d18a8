//! Embedding hookhost in a Rust program, as a profiler would.
//!
//! ```sh
//! cargo run --example embed            # the built-in hooks
//! cargo run --example embed -- DIR     # every .wasm file in DIR
//! ```

use std::path::PathBuf;

use hookhost::bindings::{DataDrift, MetricValue};
use hookhost::{Config, Event, EventKind, Host};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // 1. Build the host: compile every plugin (off the async threads) and start
    //    one worker task per plugin. A file that fails to load is reported and
    //    skipped; the others still run.
    let plugins = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("HOOKHOST_GUEST_DIR")).join("plugins"));
    let host = Host::builder()
        .plugins_dir(&plugins)
        .config(Config::default())
        .build()
        .await?;
    for error in host.load_errors() {
        eprintln!("skipped: {error}");
    }
    println!("plugins: {}", host.plugin_names().join(", "));

    // 2. Emit a typed event. `emit` never blocks the caller: the event is
    //    queued for every plugin (or, if a queue is full, for none).
    let drift = Event::from_kind(EventKind::DataDriftDetected(DataDrift {
        table: "orders".into(),
        column: "total_amount".into(),
        metric: "mean".into(),
        baseline_value: Some(MetricValue::Number(100.0)),
        current_value: Some(MetricValue::Number(150.0)),
        change_percent: Some(50.0),
        drift_severity: "high".into(),
        explanation: None,
    }));
    host.emit(drift)?;

    // 3. Or emit and wait for every plugin's outcome.
    let event = Event::from_json(
        r#"{"event_type": "ProfilingFailed", "timestamp": "2025-01-15T10:32:00",
            "metadata": {"table": "payments", "run_id": "run-42", "error": "permission denied"}}"#,
    )?;
    let report = host.emit_with_report(event)?.wait().await;
    for (plugin, outcome) in &report.outcomes {
        println!("{plugin}: {:?} in {:?}", outcome.result, outcome.latency);
    }

    // 4. Shut down: every accepted event is handled before this returns.
    for summary in host.shutdown().await {
        println!(
            "{}: {} handled, {} failed",
            summary.name,
            summary.stats.handled,
            summary.stats.failed_total()
        );
    }
    Ok(())
}
