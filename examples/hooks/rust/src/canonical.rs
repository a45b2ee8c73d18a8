//! The echo format: every field of an event in a fixed, language-neutral
//! spelling (strings as length and FNV-1a hash, floats as their bits).

use hookhost_sdk::{Event, EventKind, MetricValue, SchemaChangeType, Severity};

/// The `echo ...` line for `event`.
pub fn line(event: &Event) -> String {
    let mut out = vec![
        "echo".to_owned(),
        s(&event.id),
        s(&event.event_type),
        s(&event.timestamp),
    ];
    out.push(
        event
            .severity
            .map_or("-".to_owned(), |sev| severity(sev).to_owned()),
    );
    out.push(s(&event.metadata));
    kind(&event.kind, &mut out);
    out.join(" ")
}

fn severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

fn kind(kind: &EventKind, out: &mut Vec<String>) {
    let (name, fields): (&str, Vec<String>) = match kind {
        EventKind::ProfilingStarted(e) => ("profiling-started", vec![s(&e.table), s(&e.run_id)]),
        EventKind::ProfilingCompleted(e) => (
            "profiling-completed",
            vec![
                s(&e.table),
                s(&e.run_id),
                opt(e.row_count, u),
                opt(e.column_count, u),
                opt(e.duration_seconds, f),
            ],
        ),
        EventKind::ProfilingFailed(e) => (
            "profiling-failed",
            vec![s(&e.table), s(&e.run_id), s(&e.error)],
        ),
        EventKind::ProfilingSkipped(e) => (
            "profiling-skipped",
            vec![
                s(&e.table),
                os(&e.schema),
                s(&e.reason),
                s(&e.action),
                os(&e.snapshot_id),
            ],
        ),
        EventKind::DataDriftDetected(e) => (
            "data-drift-detected",
            vec![
                s(&e.table),
                s(&e.column),
                s(&e.metric),
                om(&e.baseline_value),
                om(&e.current_value),
                opt(e.change_percent, f),
                s(&e.drift_severity),
                os(&e.explanation),
            ],
        ),
        EventKind::SchemaChangeDetected(e) => (
            "schema-change-detected",
            vec![
                s(&e.table),
                change_type(&e.change_type),
                os(&e.column),
                os(&e.old_column_name),
                os(&e.old_type),
                os(&e.new_type),
                os(&e.partition_info),
                os(&e.change_severity),
                os(&e.explanation),
            ],
        ),
        EventKind::AnomalyDetected(e) => (
            "anomaly-detected",
            vec![
                s(&e.table),
                s(&e.column),
                s(&e.metric),
                s(&e.anomaly_type),
                om(&e.expected_value),
                om(&e.actual_value),
                s(&e.severity),
                s(&e.detection_method),
                os(&e.explanation),
            ],
        ),
        EventKind::ValidationFailed(e) => (
            "validation-failed",
            vec![
                s(&e.table),
                os(&e.column),
                s(&e.rule_type),
                os(&e.rule_config),
                s(&e.failure_reason),
                os(&e.sample_failures),
                s(&e.severity),
                opt(e.total_failures, u),
                opt(e.total_rows, u),
                opt(e.failure_rate, f),
            ],
        ),
        EventKind::QualityScoreDegraded(e) => (
            "quality-score-degraded",
            vec![
                s(&e.table),
                os(&e.schema),
                opt(e.current_score, f),
                opt(e.previous_score, f),
                opt(e.score_change, f),
                s(&e.threshold_type),
                os(&e.explanation),
            ],
        ),
        EventKind::QualityThresholdBreached(e) => (
            "quality-threshold-breached",
            vec![
                s(&e.table),
                os(&e.schema),
                opt(e.current_score, f),
                s(&e.threshold_type),
                opt(e.threshold_value, f),
                os(&e.previous_status),
                os(&e.explanation),
            ],
        ),
        EventKind::RetryAttempt(e) | EventKind::RetryExhausted(e) => (
            if matches!(kind, EventKind::RetryAttempt(_)) {
                "retry-attempt"
            } else {
                "retry-exhausted"
            },
            vec![
                s(&e.function),
                opt(e.attempts.map(u64::from), u),
                s(&e.error),
                s(&e.error_type),
            ],
        ),
        EventKind::Custom(name) => ("custom", vec![s(name)]),
    };
    out.push(name.to_owned());
    out.extend(fields);
}

/// A string: `s<byte length>:<FNV-1a 32-bit, 8 hex digits>`.
fn s(text: &str) -> String {
    let hash = text.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    format!("s{}:{hash:08x}", text.len())
}

/// A float: `nan`, `inf`, `-inf`, or `f` and its 16 hex bits.
fn f(x: f64) -> String {
    if x.is_nan() {
        "nan".to_owned()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("f{:016x}", x.to_bits())
    }
}

fn u(n: u64) -> String {
    n.to_string()
}

fn opt<T>(value: Option<T>, encode: fn(T) -> String) -> String {
    value.map_or("-".to_owned(), encode)
}

fn os(value: &Option<String>) -> String {
    value.as_deref().map_or("-".to_owned(), s)
}

fn om(value: &Option<MetricValue>) -> String {
    match value {
        None => "-".to_owned(),
        Some(MetricValue::Number(x)) => format!("number:{}", f(*x)),
        Some(MetricValue::Text(text)) => format!("text:{}", s(text)),
    }
}

fn change_type(change: &SchemaChangeType) -> String {
    match change {
        SchemaChangeType::ColumnAdded => "column-added".to_owned(),
        SchemaChangeType::ColumnRemoved => "column-removed".to_owned(),
        SchemaChangeType::ColumnRenamed => "column-renamed".to_owned(),
        SchemaChangeType::TypeChanged => "type-changed".to_owned(),
        SchemaChangeType::PartitionChanged => "partition-changed".to_owned(),
        SchemaChangeType::Other(other) => format!("other:{}", s(other)),
    }
}
