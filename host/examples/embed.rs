//! Embedding hookhost in a Rust program, as a profiler would: build a host,
//! emit events, read a report, shut down.
//!
//! ```sh
//! cargo run --example embed            # the built-in logging and sql hooks
//! cargo run --example embed -- DIR     # every .wasm file in DIR instead
//! ```
//!
//! Without `DIR` it runs the two built-in hooks that need no outside
//! service: `logging`, and `sql` writing to a SQLite file in a temporary
//! folder, whose rows it counts at the end. It exits with an error if any
//! hook failed on any event.

use std::path::{Path, PathBuf};

use anyhow::Context;
use hookhost::bindings::{DataDrift, MetricValue};
use hookhost::{Config, Event, EventKind, Host};
use sqlx::{ConnectOptions, Connection};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let database = data.path().join("events.db");

    // 1. Build the host: compile every plugin (off the async threads) and
    //    start one worker task per plugin. A plugin that fails to load is
    //    reported and skipped; the others still run.
    let builder = match std::env::args().nth(1) {
        Some(dir) => Host::builder()
            .plugins_dir(PathBuf::from(dir))
            .config(Config::default()),
        None => {
            let built = Path::new(env!("HOOKHOST_GUEST_DIR")).join("plugins");
            let mut builder = Host::builder().config(embedded_sqlite(&database)?);
            for name in ["logging", "sql"] {
                let file = built.join(format!("{name}.wasm"));
                let bytes =
                    std::fs::read(&file).with_context(|| format!("read {}", file.display()))?;
                builder = builder.plugin_bytes(name, bytes);
            }
            builder
        }
    };
    let host = builder.build().await?;
    for error in host.load_errors() {
        eprintln!("skipped: {error}");
    }
    println!("plugins: {}", host.plugin_names().join(", "));

    // 2. Emit a typed event. Without a data directory `emit` does not wait:
    //    the event is queued for every plugin (or, if a queue is full, for
    //    none).
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

    // 4. Shut down: every queued event is delivered, and failed ones retried
    //    up to the drain timeout, before this returns.
    let summaries = host.shutdown().await;
    let mut failed = 0;
    for summary in &summaries {
        println!(
            "{}: {} handled, {} failed",
            summary.name,
            summary.stats.handled,
            summary.stats.failed_total()
        );
        failed += summary.stats.failed_total();
    }
    if database.exists() {
        println!(
            "sql: {} rows in hookhost_events in {}",
            count_rows(&database).await?,
            database.display()
        );
    }
    anyhow::ensure!(failed == 0, "{failed} events failed in some hook");
    Ok(())
}

/// The configuration the built-in `sql` hook needs: a SQLite database
/// named `events`, granted to it.
fn embedded_sqlite(file: &Path) -> anyhow::Result<Config> {
    let path = toml::Value::String(file.display().to_string());
    let text = format!(
        "[databases.events]\nbackend = \"sqlite\"\npath = {path}\n\
         [plugins.sql]\ndatabases = [\"events\"]\n"
    );
    Ok(Config::parse(&text, Path::new("embed.toml"))?)
}

async fn count_rows(file: &Path) -> anyhow::Result<i64> {
    let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(file)
        .read_only(true)
        .connect()
        .await?;
    let rows = sqlx::query_scalar("SELECT COUNT(*) FROM hookhost_events")
        .fetch_one(&mut connection)
        .await?;
    connection.close().await?;
    Ok(rows)
}
