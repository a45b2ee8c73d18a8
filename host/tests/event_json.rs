//! The JSON form of events: what baselinr's `event.to_dict()` sends reads
//! into the WIT `event` record and writes back unchanged.

use hookhost::bindings::{MetricValue, SchemaChangeType};
use hookhost::event::EventError;
use hookhost::{Event, EventKind, Severity};
use serde_json::{json, Value};

/// The bindgen records derive no `PartialEq`; their `Debug` prints every
/// field, and floats print exactly, so equal `Debug` text is equality.
fn assert_same(a: &Event, b: &Event) {
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

/// The record in `event.kind`, which must be the `$case` case.
macro_rules! record {
    ($event:expr, $case:ident) => {
        match $event.kind {
            EventKind::$case(record) => record,
            other => panic!("expected {}, got {other:?}", stringify!($case)),
        }
    };
}

/// Reads `input`, checks it writes back as itself and reads back the same.
fn round_trip(input: Value) -> Event {
    let event = Event::from_json_value(input.clone()).unwrap();
    assert_eq!(event.to_json_value(), input);
    assert_eq!(
        serde_json::from_str::<Value>(&event.to_json()).unwrap(),
        input
    );
    let again = Event::from_json(&event.to_json()).unwrap();
    assert_same(&event, &again);
    event
}

/// A baselinr event as `to_dict()` writes it, plus the id the host keeps.
fn baselinr(event_type: &str, metadata: Value) -> Value {
    json!({
        "event_id": "5f0c8a5e-2b7e-4c61-9d0e-3f1e9b8a7c21",
        "event_type": event_type,
        "timestamp": "2025-01-15T10:30:00.123456Z",
        "metadata": metadata,
    })
}

fn error(input: &str) -> String {
    Event::from_json(input).unwrap_err().to_string()
}

#[test]
fn profiling_events_round_trip() {
    let started = round_trip(baselinr(
        "ProfilingStarted",
        json!({"table": "orders", "run_id": "run-42", "warehouse": "snowflake"}),
    ));
    let started = record!(started, ProfilingStarted);
    assert_eq!(
        (started.table.as_str(), started.run_id.as_str()),
        ("orders", "run-42")
    );

    let completed = round_trip(baselinr(
        "ProfilingCompleted",
        json!({"table": "orders", "run_id": "run-42", "row_count": 125000,
               "column_count": 12.0, "duration_seconds": 3.52, "profiler": "baselinr"}),
    ));
    let completed = record!(completed, ProfilingCompleted);
    assert_eq!(completed.row_count, Some(125_000));
    assert_eq!(completed.column_count, Some(12));
    assert_eq!(completed.duration_seconds, Some(3.52));

    let failed = round_trip(baselinr(
        "ProfilingFailed",
        json!({"table": "orders", "run_id": null, "error": "connection reset"}),
    ));
    let failed = record!(failed, ProfilingFailed);
    assert_eq!(failed.run_id, "");
    assert_eq!(failed.error, "connection reset");

    let skipped = round_trip(baselinr(
        "ProfilingSkipped",
        json!({"table": "events", "schema": "analytics", "reason": "no changes since last run",
               "action": "skipped", "snapshot_id": null}),
    ));
    let skipped = record!(skipped, ProfilingSkipped);
    assert_eq!(skipped.schema.as_deref(), Some("analytics"));
    assert_eq!(skipped.snapshot_id, None);
}

#[test]
fn data_drift_round_trips_with_severity() {
    let event = round_trip(baselinr(
        "DataDriftDetected",
        json!({"table": "orders", "column": "total_amount", "metric": "mean",
               "baseline_value": 100.0, "current_value": 150.0, "change_percent": 50.0,
               "drift_severity": "high", "explanation": null, "run_id": "run-42"}),
    ));
    assert_eq!(event.severity, Some(Severity::High));
    assert_eq!(event.kind_name(), "DataDriftDetected");
    let drift = record!(event, DataDriftDetected);
    assert!(matches!(drift.baseline_value, Some(MetricValue::Number(n)) if n == 100.0));
    assert!(matches!(drift.current_value, Some(MetricValue::Number(n)) if n == 150.0));
    assert_eq!(drift.change_percent, Some(50.0));
    assert_eq!(drift.drift_severity, "high");
    assert_eq!(drift.explanation, None);
}

#[test]
fn metric_values_keep_text_and_other_json_as_text() {
    let event = round_trip(baselinr(
        "DataDriftDetected",
        json!({"table": "orders", "column": "status", "metric": "top_values",
               "baseline_value": {"paid": 0.8, "open": 0.2}, "current_value": "paid",
               "change_percent": null, "drift_severity": "low"}),
    ));
    let drift = record!(event, DataDriftDetected);
    assert!(matches!(&drift.baseline_value,
        Some(MetricValue::Text(t)) if t == r#"{"paid":0.8,"open":0.2}"#));
    assert!(matches!(&drift.current_value, Some(MetricValue::Text(t)) if t == "paid"));
    assert_eq!(drift.change_percent, None);
    assert_eq!(
        drift.explanation, None,
        "a key that is left out is none too"
    );

    let event = round_trip(baselinr(
        "AnomalyDetected",
        json!({"table": "t", "column": "c", "metric": "is_unique",
               "expected_value": true, "actual_value": false}),
    ));
    let anomaly = record!(event, AnomalyDetected);
    assert!(matches!(&anomaly.expected_value, Some(MetricValue::Text(t)) if t == "true"));
}

#[test]
fn schema_change_round_trips_every_change_type() {
    let cases = [
        ("column_added", "ColumnAdded"),
        ("column_removed", "ColumnRemoved"),
        ("column_renamed", "ColumnRenamed"),
        ("type_changed", "TypeChanged"),
        ("partition_changed", "PartitionChanged"),
        ("nullability_changed", "Other(\"nullability_changed\")"),
    ];
    for (word, debug) in cases {
        let event = round_trip(baselinr(
            "SchemaChangeDetected",
            json!({"table": "orders", "change_type": word, "column": "region",
                   "old_column_name": null, "old_type": "VARCHAR(10)", "new_type": "TEXT",
                   "partition_info": {"keys": ["region"], "strategy": "hash"},
                   "change_severity": "breaking", "explanation": "consumers may break"}),
        ));
        assert_eq!(event.severity, Some(Severity::Critical));
        let change = record!(event, SchemaChangeDetected);
        assert_eq!(
            format!("{:?}", change.change_type),
            format!("SchemaChangeType::{debug}")
        );
        assert_eq!(
            change.partition_info.as_deref(),
            Some(r#"{"keys":["region"],"strategy":"hash"}"#)
        );
        assert_eq!(change.old_column_name, None);
        assert_eq!(change.change_severity.as_deref(), Some("breaking"));
    }
}

#[test]
fn anomaly_round_trips() {
    let event = round_trip(baselinr(
        "AnomalyDetected",
        json!({"table": "orders", "column": "total_amount", "metric": "null_percent",
               "anomaly_type": "spike", "expected_value": 0.5, "actual_value": 12.5,
               "severity": "Warning", "detection_method": "iqr",
               "explanation": "null_percent is 25x its usual value", "window_days": 30}),
    ));
    assert_eq!(event.severity, Some(Severity::Medium));
    let anomaly = record!(event, AnomalyDetected);
    assert_eq!(anomaly.anomaly_type, "spike");
    assert_eq!(anomaly.severity, "Warning");
    assert_eq!(anomaly.detection_method, "iqr");
}

#[test]
fn validation_failure_round_trips() {
    let event = round_trip(baselinr(
        "ValidationFailed",
        json!({"table": "customers", "column": "email", "rule_type": "regex",
               "rule_config": {"pattern": "^[^@]+@[^@]+$"}, "failure_reason": "3 rows do not match",
               "sample_failures": [{"id": 7, "email": "nobody"}, {"id": 9, "email": null}],
               "severity": "medium", "total_failures": 3, "total_rows": 1000,
               "failure_rate": 0.003}),
    ));
    assert_eq!(event.severity, Some(Severity::Medium));
    let failure = record!(event, ValidationFailed);
    assert_eq!(
        failure.rule_config.as_deref(),
        Some(r#"{"pattern":"^[^@]+@[^@]+$"}"#)
    );
    assert_eq!(
        failure.sample_failures.as_deref(),
        Some(r#"[{"id":7,"email":"nobody"},{"id":9,"email":null}]"#)
    );
    assert_eq!(failure.total_failures, Some(3));
    assert_eq!(failure.total_rows, Some(1000));
    assert_eq!(failure.failure_rate, Some(0.003));
}

#[test]
fn quality_score_events_round_trip() {
    let event = round_trip(baselinr(
        "QualityScoreDegraded",
        json!({"table": "orders", "schema": "public", "current_score": 71.5,
               "previous_score": 88.0, "score_change": -16.5, "threshold_type": "warning",
               "explanation": null}),
    ));
    assert_eq!(
        event.severity,
        Some(Severity::Medium),
        "threshold_type warning"
    );
    let degraded = record!(event, QualityScoreDegraded);
    assert_eq!(degraded.score_change, Some(-16.5));

    let event = round_trip(baselinr(
        "QualityScoreThresholdBreached",
        json!({"table": "orders", "schema": null, "current_score": 59, "threshold_type": "critical",
               "threshold_value": 60, "previous_status": "warning", "explanation": "below 60"}),
    ));
    let breached = record!(event, QualityThresholdBreached);
    assert_eq!(breached.current_score, Some(59.0));
    assert_eq!(breached.threshold_value, Some(60.0));
    assert_eq!(breached.previous_status.as_deref(), Some("warning"));
}

#[test]
fn retry_events_read_their_own_attempts_key() {
    let event = round_trip(baselinr(
        "RetryAttempt",
        json!({"function": "fetch_profile", "attempt": 2, "error": "timed out",
               "error_type": "TimeoutError"}),
    ));
    let retry = record!(event, RetryAttempt);
    assert_eq!(retry.attempts, Some(2));
    assert_eq!(retry.error_type, "TimeoutError");

    let event = round_trip(baselinr(
        "RetryExhausted",
        json!({"function": "fetch_profile", "total_attempts": 5, "error": "timed out",
               "error_type": "TimeoutError"}),
    ));
    let retry = record!(event, RetryExhausted);
    assert_eq!(retry.attempts, Some(5));
}

#[test]
fn metadata_keeps_key_order_unknown_keys_and_nulls() {
    let input = r#"{"event_id":"e1","event_type":"DataDriftDetected","timestamp":"2025-01-15T10:30:00Z","metadata":{"zeta":1,"table":"orders","explanation":null,"alpha":[1,2],"column":"total_amount"}}"#;
    let event = Event::from_json(input).unwrap();
    assert_eq!(
        event.metadata,
        r#"{"zeta":1,"table":"orders","explanation":null,"alpha":[1,2],"column":"total_amount"}"#
    );
    assert_eq!(event.to_json(), input);
}

#[test]
fn snake_case_names_are_aliases() {
    let aliases = [
        ("profiling_started", "ProfilingStarted"),
        ("profiling_completed", "ProfilingCompleted"),
        ("profiling_failed", "ProfilingFailed"),
        ("profiling_skipped", "ProfilingSkipped"),
        ("data_drift_detected", "DataDriftDetected"),
        ("schema_change_detected", "SchemaChangeDetected"),
        ("anomaly_detected", "AnomalyDetected"),
        ("validation_failed", "ValidationFailed"),
        ("quality_score_degraded", "QualityScoreDegraded"),
        (
            "quality_score_threshold_breached",
            "QualityScoreThresholdBreached",
        ),
        ("retry_attempt", "RetryAttempt"),
        ("retry_exhausted", "RetryExhausted"),
    ];
    for (alias, name) in aliases {
        let event = round_trip(baselinr(alias, json!({"table": "orders"})));
        assert_eq!(event.event_type, alias, "the emitter's spelling is kept");
        assert_eq!(event.kind_name(), name);
        assert_eq!(event.kind.canonical_name(), Some(name));
        let by_name = Event::from_json_value(baselinr(name, json!({}))).unwrap();
        assert_eq!(by_name.kind_name(), name);
    }
}

#[test]
fn unknown_event_types_are_custom_with_the_name_kept() {
    for name in [
        "my.custom/Event 1",
        "dataDriftDetected",
        "DATA_DRIFT_DETECTED",
        "Custom",
        "ü",
    ] {
        let event = round_trip(baselinr(name, json!({"anything": [1, {"goes": null}]})));
        assert!(
            matches!(&event.kind, EventKind::Custom(n) if n == name),
            "{name}"
        );
        assert_eq!(event.event_type, name);
        assert_eq!(event.kind_name(), "Custom");
        assert_eq!(event.kind.canonical_name(), None);
    }
}

#[test]
fn custom_events_get_a_severity_too() {
    let input = baselinr("CostSpike", json!({"severity": "CRITICAL", "usd": 1200}));
    let event = round_trip(input);
    assert_eq!(event.severity, Some(Severity::Critical));
    assert_eq!(
        event.severity.map(|s| s.to_string()).as_deref(),
        Some("critical")
    );
}

#[test]
fn ids_are_kept_when_given_and_assigned_otherwise() {
    let given = r#"{"event_id": "abc-1", "event_type": "X", "timestamp": "2025-01-15T10:30:00Z"}"#;
    assert_eq!(Event::from_json(given).unwrap().id, "abc-1");
    let as_id = r#"{"id": "abc-2", "event_type": "X"}"#;
    assert_eq!(Event::from_json(as_id).unwrap().id, "abc-2");

    for missing in [
        r#"{"event_type": "X"}"#,
        r#"{"event_id": null, "event_type": "X"}"#,
        r#"{"event_id": "", "event_type": "X"}"#,
    ] {
        let first = Event::from_json(missing).unwrap();
        let second = Event::from_json(missing).unwrap();
        let uuid = uuid::Uuid::parse_str(&first.id).unwrap();
        assert_eq!(uuid.get_version_num(), 4);
        assert_ne!(first.id, second.id);
        // Once assigned, the id is part of the JSON form and survives.
        assert_same(&first, &Event::from_json(&first.to_json()).unwrap());
    }
}

#[test]
fn python_timestamps_are_read_as_utc() {
    let read = |timestamp: Value| {
        Event::from_json_value(json!({"event_type": "X", "timestamp": timestamp}))
            .unwrap()
            .timestamp
    };
    assert_eq!(
        read(json!("2025-01-15T10:30:00.123456")),
        "2025-01-15T10:30:00.123456Z"
    );
    assert_eq!(read(json!("2025-01-15T10:30:00")), "2025-01-15T10:30:00Z");
    assert_eq!(
        read(json!("2025-01-15 10:30:00.123456")),
        "2025-01-15T10:30:00.123456Z"
    );
    assert_eq!(
        read(json!("2025-01-15T10:30:00.123456+00:00")),
        "2025-01-15T10:30:00.123456+00:00"
    );
    assert_eq!(
        read(json!("2025-01-15T11:30:00+01:00")),
        "2025-01-15T11:30:00+01:00"
    );
    assert_eq!(read(json!(1736937000)), "2025-01-15T10:30:00Z");
    assert_eq!(read(json!(1736937000.25)), "2025-01-15T10:30:00.250Z");

    let before = chrono::Utc::now();
    let now = read(Value::Null);
    let now = chrono::DateTime::parse_from_rfc3339(&now).unwrap();
    assert!(now >= before && now <= chrono::Utc::now(), "{now}");
}

#[test]
fn from_kind_builds_events_that_round_trip() {
    let kinds = [
        EventKind::ProfilingCompleted(hookhost::bindings::ProfilingCompleted {
            table: "orders".into(),
            run_id: "run-1".into(),
            row_count: Some(10),
            column_count: None,
            duration_seconds: Some(0.1),
        }),
        EventKind::DataDriftDetected(hookhost::bindings::DataDrift {
            table: "orders".into(),
            column: "total".into(),
            metric: "mean".into(),
            baseline_value: Some(MetricValue::Number(1.5)),
            current_value: Some(MetricValue::Text("n/a".into())),
            change_percent: None,
            drift_severity: "Medium".into(),
            explanation: Some("shifted".into()),
        }),
        EventKind::SchemaChangeDetected(hookhost::bindings::SchemaChange {
            table: "orders".into(),
            change_type: SchemaChangeType::Other("dropped_index".into()),
            column: None,
            old_column_name: None,
            old_type: None,
            new_type: None,
            partition_info: Some(r#"{"by":"day"}"#.into()),
            change_severity: None,
            explanation: None,
        }),
        EventKind::RetryExhausted(hookhost::bindings::Retry {
            function: "send".into(),
            attempts: Some(3),
            error: "refused".into(),
            error_type: "ConnectionError".into(),
        }),
        EventKind::Custom("my.custom/Event 1".into()),
    ];
    for kind in kinds {
        let event = Event::from_kind(kind.clone());
        assert_eq!(format!("{:?}", event.kind), format!("{kind:?}"));
        assert_eq!(
            event.event_type,
            kind.canonical_name().unwrap_or("my.custom/Event 1")
        );
        assert_same(&event, &Event::from_json(&event.to_json()).unwrap());
    }

    let drift = Event::from_kind(EventKind::DataDriftDetected(
        hookhost::bindings::DataDrift {
            table: "orders".into(),
            column: "total".into(),
            metric: "mean".into(),
            baseline_value: None,
            current_value: None,
            change_percent: Some(12.5),
            drift_severity: "Medium".into(),
            explanation: None,
        },
    ));
    assert_eq!(drift.severity, Some(Severity::Medium));
    assert_eq!(
        drift.metadata,
        r#"{"table":"orders","column":"total","metric":"mean","baseline_value":null,"current_value":null,"change_percent":12.5,"drift_severity":"Medium","explanation":null}"#
    );
}

#[test]
fn typed_fields_fill_metadata_a_rust_built_event_lacks() {
    let event = Event {
        id: "e1".into(),
        event_type: "RetryAttempt".into(),
        timestamp: "2025-01-15T10:30:00Z".into(),
        severity: None,
        metadata: r#"{"host":"db-1","error":"kept as sent"}"#.into(),
        kind: EventKind::RetryAttempt(hookhost::bindings::Retry {
            function: "connect".into(),
            attempts: Some(1),
            error: "ignored: the metadata has this key".into(),
            error_type: String::new(),
        }),
    };
    assert_eq!(
        event.to_json_value(),
        json!({"event_id": "e1", "event_type": "RetryAttempt", "timestamp": "2025-01-15T10:30:00Z",
               "metadata": {"host": "db-1", "error": "kept as sent", "function": "connect",
                            "attempt": 1}})
    );
}

#[test]
fn counts_accept_whole_floats_but_not_fractions_signs_or_booleans() {
    let event = Event::from_json_value(baselinr(
        "ValidationFailed",
        json!({"total_failures": 3.0, "total_rows": 1e3}),
    ))
    .unwrap();
    let failure = record!(event, ValidationFailed);
    assert_eq!(
        (failure.total_failures, failure.total_rows),
        (Some(3), Some(1000))
    );

    let bad = |value: Value| {
        Event::from_json_value(baselinr("ProfilingCompleted", json!({"row_count": value})))
            .unwrap_err()
            .to_string()
    };
    let message = |found: &str| {
        format!(
            "ProfilingCompleted: metadata.row_count must be a non-negative integer, found {found}"
        )
    };
    assert_eq!(bad(json!("many")), message("\"many\""));
    assert_eq!(bad(json!(2.5)), message("2.5"));
    assert_eq!(bad(json!(-1)), message("-1"));
    assert_eq!(bad(json!(true)), message("true"));
}

#[test]
fn errors_say_what_is_wrong_and_where() {
    let cases = [
        (
            r#"{"a" 1}"#,
            "not valid JSON: expected `:` at line 1 column 6",
        ),
        (
            "",
            "not valid JSON: EOF while parsing a value at line 1 column 0",
        ),
        ("[1, 2]", "event is not a JSON object"),
        ("{}", r#"missing "event_type""#),
        (r#"{"event_type": null}"#, r#"missing "event_type""#),
        (
            r#"{"event_type": 5}"#,
            r#""event_type" must be a non-empty string, found 5"#,
        ),
        (
            r#"{"event_type": ""}"#,
            r#""event_type" must be a non-empty string, found """#,
        ),
        (
            r#"{"event_type": "X", "event_id": 7}"#,
            r#""event_id" must be a string, found 7"#,
        ),
        (
            r#"{"event_type": "X", "id": [7]}"#,
            r#""id" must be a string, found [7]"#,
        ),
        (
            r#"{"event_type": "X", "timestamp": "yesterday"}"#,
            r#""timestamp": "yesterday" is not an RFC 3339 or ISO 8601 date-time"#,
        ),
        (
            r#"{"event_type": "X", "timestamp": true}"#,
            r#""timestamp": true is not an RFC 3339 or ISO 8601 date-time"#,
        ),
        (
            r#"{"event_type": "X", "metadata": [1]}"#,
            r#""metadata" must be a JSON object, found an array"#,
        ),
        (
            r#"{"event_type": "X", "metadata": "table=orders"}"#,
            r#""metadata" must be a JSON object, found a string"#,
        ),
        (
            r#"{"event_type": "profiling_started", "metadata": {"table": 5}}"#,
            "profiling_started: metadata.table must be a string, found 5",
        ),
        (
            r#"{"event_type": "DataDriftDetected", "metadata": {"change_percent": "50%"}}"#,
            r#"DataDriftDetected: metadata.change_percent must be a number, found "50%""#,
        ),
        (
            r#"{"event_type": "RetryAttempt", "metadata": {"attempt": 4294967296}}"#,
            "RetryAttempt: metadata.attempt must be an integer from 0 to 4294967295, \
             found 4294967296",
        ),
    ];
    for (input, message) in cases {
        assert_eq!(error(input), message, "for {input}");
    }
}

#[test]
fn errors_quote_at_most_sixty_characters_of_a_bad_value() {
    let long = format!(
        r#"{{"event_type": "AnomalyDetected", "metadata": {{"column": ["{}"]}}}}"#,
        "x".repeat(200)
    );
    assert_eq!(
        error(&long),
        format!(
            r#"AnomalyDetected: metadata.column must be a string, found ["{}..."#,
            "x".repeat(58)
        )
    );
}

#[test]
fn errors_are_typed() {
    assert!(matches!(Event::from_json("nope"), Err(EventError::Json(_))));
    assert!(matches!(
        Event::from_json(r#"{"event_type": "ProfilingCompleted", "metadata": {"row_count": -5}}"#),
        Err(EventError::Field {
            key: "row_count",
            ..
        })
    ));
}

#[test]
fn python_nan_and_infinity_are_read_as_floats() {
    // What Python's json.dumps writes for float("nan") and float("inf").
    let input = r#"{"event_type": "DataDriftDetected", "metadata": {"table": "t",
        "column": "c", "metric": "mean", "baseline_value": NaN, "current_value": Infinity,
        "change_percent": -Infinity, "explanation": "NaN and Infinity in text stay text"}}"#;
    let event = Event::from_json(input).unwrap();
    let drift = record!(event, DataDriftDetected);
    assert!(matches!(drift.baseline_value, Some(MetricValue::Number(x)) if x.is_nan()));
    assert_eq!(
        drift.current_value,
        Some(MetricValue::Number(f64::INFINITY))
    );
    assert_eq!(drift.change_percent, Some(f64::NEG_INFINITY));
    assert_eq!(
        drift.explanation.as_deref(),
        Some("NaN and Infinity in text stay text")
    );
}

#[test]
fn the_one_pass_reader_reads_what_the_general_reader_reads() {
    use hookhost::event::same_as_general;
    let examples = include_str!("../../examples/events.jsonl");
    let usual = [
        r#"{"event_type": "ProfilingStarted", "timestamp": "2025-01-15T10:30:00.123456", "metadata": {"table": "orders", "run_id": "r1"}}"#,
        r#"{"event_id": "e1", "event_type": "DataDriftDetected", "timestamp": "2025-01-15 10:30:00+01:00", "metadata": {"table": "t", "column": "c", "metric": "mean", "baseline_value": "n/a", "current_value": 1e300, "change_percent": NaN, "drift_severity": "HIGH", "severity": "low"}}"#,
        r#"{"event_type": "ProfilingCompleted", "timestamp": "2025-01-15T10:30:00Z", "metadata": {"table": "t", "table": "u", "row_count": 10.0, "column_count": null, "duration_seconds": -Infinity}}"#,
        r#"{"event_type": "SchemaChangeDetected", "id": "x", "timestamp": "2024-02-29T23:59:59.5-05:30", "metadata": {"table": "t\u00e9", "change_type": "renamed_twice", "partition_info": {"by": ["day"]}, "change_severity": "Breaking"}, "extra": [1, {"a": null}]}"#,
        r#"{"event_type": "custom.thing", "timestamp": "2025-01-15T10:30:00", "metadata": {"nested": {"deep": [[[]]]}, "escaped\"key": 1}}"#,
        r#"{"event_type": "RetryAttempt", "metadata": {"function": "f", "attempt": 3, "error": "boom", "error_type": "E"}}"#,
        r#"{"event_type": "ProfilingStarted", "timestamp": "2025-01-15T10:30:00", "metadata": {"table": "orders", "run_id": "r1"} , "event_id": ""}"#,
        r#"{"event_type": "A", "event_type": "B"}"#,
        r#"{"event_type": "DataDriftDetected", "metadata": {"baseline_value": -0, "current_value": -0.0, "change_percent": -12, "table": "t"}}"#,
        r#"{"event_type": "DataDriftDetected", "metadata": {"baseline_value": 18446744073709551616, "current_value": -9223372036854775809, "change_percent": 0.1000000000000000055511151231257827}}"#,
    ];
    let refused = [
        r#"{"event_type": "ProfilingCompleted", "timestamp": "2025-01-15T10:30:00Z", "metadata": {"row_count": -1}}"#,
        r#"{"event_type": "ProfilingStarted", "timestamp": "2025-02-30T10:30:00", "metadata": {}}"#,
        r#"{"event_type": "", "metadata": {}}"#,
        r#"{"event_type": "A", "metadata": [1]}"#,
        r#"{"event_type": "A", "metadata": {"a": 1,}}"#,
        r#"{"event_type": "A", "metadata": {"a": 1e400}}"#,
        r#"{"event_type": "ProfilingCompleted", "metadata": {"row_count": 18446744073709551616}}"#,
        r#"{"event_type": "ProfilingCompleted", "metadata": {"column_count": -1}}"#,
        r#"{"event_type": "ProfilingCompleted", "metadata": {"row_count": 1e400}}"#,
        r#"{"event_type": "A", "metadata": {"a": [{"b": -2E+999}]}}"#,
    ];
    let mut taken = 0;
    for text in examples.lines().chain(usual).chain(refused) {
        match same_as_general(text) {
            Ok(true) => taken += 1,
            Ok(false) => {}
            Err(difference) => panic!("{text}: {difference}"),
        }
    }
    // Every example and every usual line but the escaped key's and the
    // exponent's is the one-pass reader's to read; no refused one is.
    assert_eq!(taken, examples.lines().count() + usual.len() - 2);
}

#[test]
fn metadata_is_kept_as_the_emitter_wrote_it() {
    let metadata = r#"{"table": "orders",  "zeta": [1, 2.50],
        "alpha": {"b": null}}"#;
    let line = format!(r#"{{"event_type": "ProfilingStarted", "metadata": {metadata} }}"#);
    assert_eq!(Event::from_json(&line).unwrap().metadata, metadata);
}
