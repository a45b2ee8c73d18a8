//! Routing: which events each plugin gets (`events`, `exclude_events`,
//! `min_severity`, `tables`), the master switch, rate limits, and what
//! `hookhost emit` says of a plugin that skipped an event.

mod common;

use std::time::{Duration, Instant};

use common::stats;
use hookhost::{Event, Host};

fn event(event_type: &str, metadata: &str) -> Event {
    Event::from_json(&format!(
        r#"{{"event_type": "{event_type}", "metadata": {metadata}}}"#
    ))
    .unwrap()
}

/// Three copies of `noop`: a pager for critical events, a Slack-like one
/// for high and above on analytics tables, and one that takes every event
/// but profiling progress.
const TIERED: &str = r#"
[plugins.pager]
min_severity = "critical"
require_severity = true
[plugins.team]
events = ["DataDriftDetected", "schema_change_detected"]
min_severity = "high"
tables = ["analytics.*"]
[plugins.archive]
exclude_events = ["Profiling*"]
"#;

fn tiered_plugins() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["pager", "team", "archive"] {
        std::fs::copy(
            common::fixture("noop"),
            dir.path().join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    dir
}

#[tokio::test]
async fn each_plugin_gets_only_the_events_its_routing_lets_through() {
    let dir = tiered_plugins();
    let host = common::host(dir.path(), common::config(TIERED)).await;
    let events = [
        // Everyone but the pager: high, not critical.
        event(
            "DataDriftDetected",
            r#"{"table": "analytics.orders", "column": "total", "drift_severity": "high"}"#,
        ),
        // Everyone: critical, on an analytics table.
        event(
            "data_drift_detected",
            r#"{"table": "analytics.users", "severity": "critical"}"#,
        ),
        // Archive only: the table is not an analytics one.
        event(
            "SchemaChangeDetected",
            r#"{"table": "raw.events", "change_type": "column_added", "change_severity": "breaking"}"#,
        ),
        // Nobody: profiling progress, no severity.
        event(
            "ProfilingStarted",
            r#"{"table": "analytics.orders", "run_id": "r"}"#,
        ),
        // Archive only: below high.
        event(
            "AnomalyDetected",
            r#"{"table": "analytics.orders", "severity": "low"}"#,
        ),
    ];
    let mut skipped = Vec::new();
    for event in events {
        let report = host.emit_with_report(event).unwrap().wait().await;
        assert!(report.outcomes.iter().all(|(_, o)| o.result.is_ok()));
        skipped.extend(report.skipped);
    }
    let counts = |name| {
        let stats = stats(&host, name);
        (stats.handled, stats.filtered, stats.failed_total())
    };
    // `raw.events` is not an analytics table, but its breaking schema
    // change is critical: the pager takes it.
    assert_eq!(counts("pager"), (2, 3, 0));
    assert_eq!(counts("team"), (2, 3, 0));
    assert_eq!(counts("archive"), (4, 1, 0));
    let reasons: Vec<String> = skipped
        .iter()
        .map(|(plugin, why)| format!("{plugin}: {why}"))
        .collect();
    for expected in [
        "pager: severity high is below min_severity = critical",
        "team: table raw.events is not in tables = [\"analytics.*\"]",
        "archive: event type ProfilingStarted matches exclude_events = [\"Profiling*\"]",
        "team: event type AnomalyDetected is not in events = [\"DataDriftDetected\", \"schema_change_detected\"]",
    ] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "{expected} not in {reasons:#?}"
        );
    }
    common::serves_then_shuts_down(host).await;
}

#[test]
fn hookhost_emit_says_why_a_plugin_skipped_the_event() {
    let dir = tiered_plugins();
    let config = dir.path().join("hookhost.toml");
    std::fs::write(&config, TIERED).unwrap();
    let output = common::hookhost_command()
        .args(["emit", "--plugins", dir.path().to_str().unwrap()])
        .args(["--config", config.to_str().unwrap()])
        .arg(r#"{"event_type": "ProfilingStarted", "metadata": {"table": "t", "run_id": "r"}}"#)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(
        lines[0],
        "archive: skipped: event type ProfilingStarted matches exclude_events = [\"Profiling*\"]"
    );
    assert_eq!(
        lines[1],
        "pager: skipped: no severity and require_severity = true"
    );
    assert!(
        lines[2].starts_with("team: skipped: event type ProfilingStarted is not in events"),
        "{}",
        lines[2]
    );
}

#[test]
fn the_master_switch_turns_every_hook_off() {
    let dir = tiered_plugins();
    let config = dir.path().join("hookhost.toml");
    std::fs::write(&config, format!("[hooks]\nenabled = false\n{TIERED}")).unwrap();
    let output = common::run_with_input(
        common::hookhost_command()
            .args(["run", "--plugins", dir.path().to_str().unwrap()])
            .args(["--config", config.to_str().unwrap()]),
        "{\"event_type\": \"DataDriftDetected\", \"metadata\": {\"severity\": \"critical\"}}\n",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("no plugin loaded"), "{stderr}");
    assert!(stdout.starts_with("1 events dispatched"), "{stdout}");
    for name in ["pager", "team", "archive"] {
        assert!(!stdout.contains(name), "{name} ran:\n{stdout}");
    }
}

/// 60 events through a plugin limited to 20 a second: the first 20 go at
/// once (the bucket starts full), the other 40 over about two seconds;
/// none is dropped, and the waits are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_delays_events_but_delivers_every_one() {
    let dir = common::plugins_dir(&["noop"]);
    let host = common::host(
        dir.path(),
        common::config("[plugins.noop]\nrate_limit = \"20/s\"\n"),
    )
    .await;
    let started = Instant::now();
    for n in 0..60 {
        host.send(common::event(n)).await.unwrap();
    }
    let summaries = host.shutdown().await;
    let elapsed = started.elapsed();
    let stats = &summaries[0].stats;
    assert_eq!((stats.handled, stats.failed_total()), (60, 0));
    assert!(
        elapsed >= Duration::from_millis(1_900),
        "60 events at 20/s took {elapsed:?}"
    );
    assert!(stats.rate_limited >= 40, "{}", stats.rate_limited);
    assert!(
        stats.rate_waited >= Duration::from_millis(1_500),
        "{:?}",
        stats.rate_waited
    );
}

/// A config edit changes a plugin's routing for the events after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_edit_changes_the_routing_of_later_events() {
    let dir = tiered_plugins();
    let cache = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookhost.toml");
    std::fs::write(&config, TIERED).unwrap();
    let host = Host::builder()
        .plugins_dir(dir.path())
        .cache_dir(cache.path())
        .watch(true)
        .config_file(&config)
        .unwrap()
        .build()
        .await
        .unwrap();
    let started = || event("ProfilingStarted", r#"{"table": "t", "run_id": "r"}"#);
    host.emit(started()).unwrap();
    std::fs::write(
        &config,
        TIERED.replace("exclude_events = [\"Profiling*\"]", ""),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while host.reload_stats().configs_applied == 0 {
        assert!(Instant::now() < deadline, "the edit was not applied");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    host.emit(started()).unwrap();
    let summaries = host.shutdown().await;
    let archive = summaries.iter().find(|s| s.name == "archive").unwrap();
    assert_eq!((archive.stats.handled, archive.stats.filtered), (1, 1));
}
