//! What the benchmarks share.

/// The CPU's model name, from `/proc/cpuinfo`, printed with every number.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|model| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// Line `seq` of a profiler's event stream, as baselinr's `to_dict()` and
/// Python's `json.dumps` write it (about 300 bytes): per table, profiling
/// started and completed, then drift on its columns, a schema change and
/// an anomaly, with run ids, tables and columns that vary.
#[allow(dead_code)]
pub fn profiler_line(seq: u64) -> String {
    let table = format!("analytics.orders_{:03}", (seq / 8) % 500);
    let run = format!("4f2a9c1e-7d3b-4a61-9e0c-{:012x}", seq / 8);
    let column = ["total_amount", "discount", "customer_id", "shipped_at"][(seq % 4) as usize];
    let time = format!(
        "2025-01-15T10:{:02}:{:02}.{:06}",
        (seq / 60) % 60,
        seq % 60,
        seq % 1_000_000
    );
    let metadata = match seq % 8 {
        0 => format!(
            r#"{{"table": "{table}", "run_id": "{run}", "schema": "analytics", "warehouse": "snowflake", "sample_ratio": 1.0, "profiler": "baselinr"}}"#
        ),
        1 => format!(
            r#"{{"table": "{table}", "run_id": "{run}", "row_count": {}, "column_count": 18, "duration_seconds": 72.4, "schema": "analytics"}}"#,
            1_250_000 + seq
        ),
        2..=5 => format!(
            r#"{{"table": "{table}", "column": "{column}", "metric": "mean", "baseline_value": 100.0, "current_value": {}.5, "change_percent": 12.5, "drift_severity": "medium", "run_id": "{run}"}}"#,
            100 + seq % 50
        ),
        6 => format!(
            r#"{{"table": "{table}", "change_type": "type_changed", "column": "{column}", "old_type": "INTEGER", "new_type": "VARCHAR", "change_severity": "breaking", "run_id": "{run}"}}"#
        ),
        _ => format!(
            r#"{{"table": "{table}", "column": "{column}", "metric": "null_percent", "anomaly_type": "spike", "expected_value": 0.5, "actual_value": 12.0, "severity": "high", "detection_method": "iqr"}}"#
        ),
    };
    let event_type = match seq % 8 {
        0 => "ProfilingStarted",
        1 => "ProfilingCompleted",
        2..=5 => "DataDriftDetected",
        6 => "SchemaChangeDetected",
        _ => "AnomalyDetected",
    };
    format!(r#"{{"event_type": "{event_type}", "timestamp": "{time}", "metadata": {metadata}}}"#)
}
