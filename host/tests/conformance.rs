//! Conformance: the same events go to the echo hook written in Rust,
//! Python, JavaScript and C (`examples/hooks/<language>`), and each writes
//! what it received as one log line in the echo format. All four must see
//! exactly the same events with the same field values, including empty
//! strings, NaN and infinite floats, non-ASCII text and a 1 MB metadata
//! object; and a hook that panics, raises, throws or aborts is contained
//! like a Rust panic.
//!
//! The Python, JavaScript and C components are built by their folder's
//! `build.sh`, which installs its toolchain from the registries when it is
//! missing; a language whose toolchain cannot be installed fails here with
//! the script's message naming the missing tool.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use hookhost::bindings::{
    Anomaly, DataDrift, MetricValue, ProfilingCompleted, ProfilingFailed, ProfilingSkipped,
    ProfilingStarted, QualityScoreDegraded, QualityThresholdBreached, Retry, SchemaChange,
    SchemaChangeType, ValidationFailure,
};
use hookhost::{Event, EventKind, FailureClass, Host, Severity};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

const LANGUAGES: [&str; 4] = ["rust", "python", "javascript", "c"];

/// Each language's echo component: Rust's from the host's build, the
/// others from their build scripts.
fn component(language: &str) -> PathBuf {
    if language == "rust" {
        return Path::new(env!("HOOKHOST_GUEST_DIR")).join("examples/rust.wasm");
    }
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/hooks")
        .join(language);
    let script = folder.join("build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
    assert!(
        output.status.success(),
        "{} failed; the {language} toolchain is missing or broken:\n{}{}",
        script.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    folder.join("build").join(format!("{language}-echo.wasm"))
}

/// Log lines written by plugins, by plugin name.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<BTreeMap<String, Vec<String>>>>);

impl<S: tracing::Subscriber> Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "hookhost::plugin" {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let (Some(plugin), Some(message)) = (fields.plugin, fields.message) {
            if message.starts_with("echo ") {
                self.0
                    .lock()
                    .unwrap()
                    .entry(plugin)
                    .or_default()
                    .push(message);
            }
        }
    }
}

#[derive(Default)]
struct Fields {
    plugin: Option<String>,
    message: Option<String>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "plugin" {
            self.plugin = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = Some(format!("{value:?}"));
        }
    }
}

fn event(
    id: &str,
    event_type: &str,
    severity: Option<Severity>,
    metadata: &str,
    kind: EventKind,
) -> Event {
    Event {
        id: id.to_owned(),
        event_type: event_type.to_owned(),
        timestamp: "2025-01-15T10:30:00.123456Z".to_owned(),
        severity,
        metadata: metadata.to_owned(),
        kind,
    }
}

/// Every event type, with unusual values where a field allows them.
fn events() -> Vec<Event> {
    let big = format!("{{\"blob\": \"{}\"}}", "x".repeat(1 << 20));
    vec![
        event(
            "e1",
            "ProfilingStarted",
            None,
            "{}",
            EventKind::ProfilingStarted(ProfilingStarted {
                table: "orders".into(),
                run_id: "".into(),
            }),
        ),
        event(
            "e2",
            "ProfilingCompleted",
            Some(Severity::Info),
            "{\"row_count\": 0}",
            EventKind::ProfilingCompleted(ProfilingCompleted {
                table: "Bestellungen_äöü".into(),
                run_id: "run-42".into(),
                row_count: Some(u64::MAX),
                column_count: Some(0),
                duration_seconds: Some(-0.0),
            }),
        ),
        event(
            "e3",
            "ProfilingFailed",
            None,
            "{}",
            EventKind::ProfilingFailed(ProfilingFailed {
                table: "表".into(),
                run_id: "r".into(),
                error: "line 1\nline 2\ttab \"quoted\" 🚨".into(),
            }),
        ),
        event(
            "e4",
            "ProfilingSkipped",
            None,
            "{}",
            EventKind::ProfilingSkipped(ProfilingSkipped {
                table: "t".into(),
                schema: Some("".into()),
                reason: "no changes".into(),
                action: "skipped".into(),
                snapshot_id: None,
            }),
        ),
        event(
            "e5",
            "DataDriftDetected",
            Some(Severity::High),
            "{\"k\": [1, 2]}",
            EventKind::DataDriftDetected(DataDrift {
                table: "orders".into(),
                column: "total_amount".into(),
                metric: "mean".into(),
                baseline_value: Some(MetricValue::Number(f64::NAN)),
                current_value: Some(MetricValue::Number(f64::INFINITY)),
                change_percent: Some(f64::NEG_INFINITY),
                drift_severity: "high".into(),
                explanation: None,
            }),
        ),
        event(
            "e6",
            "DataDriftDetected",
            Some(Severity::Low),
            "{}",
            EventKind::DataDriftDetected(DataDrift {
                table: "".into(),
                column: "".into(),
                metric: "top_values".into(),
                baseline_value: Some(MetricValue::Text("[\"a\", \"b\"]".into())),
                current_value: None,
                change_percent: Some(1e-300),
                drift_severity: "".into(),
                explanation: Some("".into()),
            }),
        ),
        event(
            "e7",
            "SchemaChangeDetected",
            Some(Severity::Critical),
            "{}",
            EventKind::SchemaChangeDetected(SchemaChange {
                table: "customers".into(),
                change_type: SchemaChangeType::Other("column_reordered".into()),
                column: Some("email".into()),
                old_column_name: None,
                old_type: Some("TEXT".into()),
                new_type: Some("VARCHAR(255)".into()),
                partition_info: None,
                change_severity: Some("breaking".into()),
                explanation: None,
            }),
        ),
        event(
            "e8",
            "SchemaChangeDetected",
            None,
            "{}",
            EventKind::SchemaChangeDetected(SchemaChange {
                table: "customers".into(),
                change_type: SchemaChangeType::ColumnRenamed,
                column: Some("mail".into()),
                old_column_name: Some("email".into()),
                old_type: None,
                new_type: None,
                partition_info: Some("{}".into()),
                change_severity: None,
                explanation: Some("renamed".into()),
            }),
        ),
        event(
            "e9",
            "AnomalyDetected",
            Some(Severity::Medium),
            "{}",
            EventKind::AnomalyDetected(Anomaly {
                table: "t".into(),
                column: "c".into(),
                metric: "null_percent".into(),
                anomaly_type: "spike".into(),
                expected_value: Some(MetricValue::Number(0.1)),
                actual_value: Some(MetricValue::Number(-1.5e10)),
                severity: "medium".into(),
                detection_method: "iqr".into(),
                explanation: None,
            }),
        ),
        event(
            "e10",
            "ValidationFailed",
            Some(Severity::High),
            "{}",
            EventKind::ValidationFailed(ValidationFailure {
                table: "t".into(),
                column: None,
                rule_type: "not_null".into(),
                rule_config: Some("{\"strict\": true}".into()),
                failure_reason: "nulls".into(),
                sample_failures: Some("[]".into()),
                severity: "high".into(),
                total_failures: Some(3),
                total_rows: Some(1_000_000_000_000),
                failure_rate: Some(3e-12),
            }),
        ),
        event(
            "e11",
            "QualityScoreDegraded",
            None,
            "{}",
            EventKind::QualityScoreDegraded(QualityScoreDegraded {
                table: "t".into(),
                schema: None,
                current_score: Some(71.25),
                previous_score: Some(90.0),
                score_change: Some(-18.75),
                threshold_type: "warning".into(),
                explanation: None,
            }),
        ),
        event(
            "e12",
            "QualityScoreThresholdBreached",
            None,
            "{}",
            EventKind::QualityThresholdBreached(QualityThresholdBreached {
                table: "t".into(),
                schema: Some("public".into()),
                current_score: None,
                threshold_type: "critical".into(),
                threshold_value: Some(50.0),
                previous_status: Some("ok".into()),
                explanation: Some("dropped".into()),
            }),
        ),
        event(
            "e13",
            "RetryAttempt",
            None,
            "{}",
            EventKind::RetryAttempt(Retry {
                function: "fetch".into(),
                attempts: Some(u32::MAX),
                error: "timeout".into(),
                error_type: "TimeoutError".into(),
            }),
        ),
        event(
            "e14",
            "RetryExhausted",
            None,
            "{}",
            EventKind::RetryExhausted(Retry {
                function: "fetch".into(),
                attempts: None,
                error: "".into(),
                error_type: "".into(),
            }),
        ),
        event(
            "e15",
            "my.custom-Event ✓",
            None,
            &big,
            EventKind::Custom("my.custom-Event ✓".into()),
        ),
        event("", "", None, "", EventKind::Custom("".into())),
        // As Python's json.dumps writes non-finite floats.
        Event::from_json(
            r#"{"event_id": "e17", "event_type": "DataDriftDetected", "timestamp": "2025-01-15T10:30:00Z",
                "metadata": {"table": "t", "column": "c", "metric": "m", "baseline_value": NaN,
                             "current_value": -Infinity, "change_percent": Infinity, "drift_severity": "low"}}"#,
        )
        .unwrap(),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_language_sees_the_same_events_and_failures_are_contained() {
    let captured = Captured::default();
    // Global: plugins log from the runtime's worker threads.
    let subscriber = tracing_subscriber::registry().with(captured.clone());
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let dir = tempfile::tempdir().unwrap();
    for language in LANGUAGES {
        std::fs::copy(
            component(language),
            dir.path().join(format!("{language}.wasm")),
        )
        .unwrap_or_else(|err| panic!("copy the {language} component: {err}"));
    }
    // Interpreted guests need more fuel for the 1 MB metadata (about 5e9);
    // that event is just over the default 1 MiB event limit.
    let config = "[engine]\nmax_event_kib = 2048\n\
                  [defaults]\ntimeout_ms = 60000\nfuel = 100_000_000_000\nmemory_mib = 512\n";
    // The Python and JavaScript components take 10-30 s each to compile;
    // a cache in the target dir makes the next run fast.
    let cache = Path::new(env!("HOOKHOST_GUEST_DIR")).join("../conformance-cache");
    let host = Host::builder()
        .plugins_dir(dir.path())
        .config(common::config(config))
        .cache_dir(cache)
        .build()
        .await
        .expect("host builds");
    assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());

    let events = events();
    for event in &events {
        let report = host.emit_with_report(event.clone()).unwrap().wait().await;
        for (plugin, outcome) in &report.outcomes {
            assert!(
                outcome.result.is_ok(),
                "{plugin} on {:?}: {:?}",
                event.id,
                outcome.result
            );
        }
    }
    let throw = event(
        "t",
        "conformance.throw",
        None,
        "{}",
        EventKind::Custom("conformance.throw".into()),
    );
    let report = host.emit_with_report(throw).unwrap().wait().await;
    for (plugin, outcome) in &report.outcomes {
        let failure = outcome.result.as_ref().expect_err(plugin);
        assert_eq!(failure.class, FailureClass::Trap, "{plugin}: {failure}");
    }
    // Each one is still serving.
    let after = event(
        "after",
        "ProfilingStarted",
        None,
        "{}",
        EventKind::ProfilingStarted(ProfilingStarted {
            table: "t".into(),
            run_id: "r".into(),
        }),
    );
    let report = host.emit_with_report(after).unwrap().wait().await;
    assert!(
        report.outcomes.iter().all(|(_, o)| o.result.is_ok()),
        "{:?}",
        report.outcomes
    );
    host.shutdown().await;

    let lines = captured.0.lock().unwrap().clone();
    let rust = &lines["rust"];
    assert_eq!(rust.len(), events.len() + 1, "{rust:#?}");
    assert_eq!(
        rust[0],
        "echo s2:841acf03 s16:3f9f5a5a s27:de1e7a1c - s2:5465b825 profiling-started s6:325e96ec s0:811c9dc5"
    );
    for language in ["python", "javascript", "c"] {
        let theirs = lines.get(language).map_or(&[][..], Vec::as_slice);
        for (index, (mine, theirs)) in rust.iter().zip(theirs).enumerate() {
            assert_eq!(
                mine, theirs,
                "{language} differs from rust on event {index}"
            );
        }
        assert_eq!(
            theirs.len(),
            rust.len(),
            "{language} logged {} lines",
            theirs.len()
        );
    }
}
