"""canonical.py - the "echo" conformance format: one canonical text line per
event, field for field as examples/hooks/README.md ("The echo format") says."""

import math
import struct

from wit_world.imports import types


def fnv1a32(data: bytes) -> int:
    """FNV-1a, 32 bits."""
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def string(s: str) -> str:
    """string -> s<UTF-8 byte length>:<FNV-1a as 8 hex digits>"""
    data = s.encode("utf-8")
    return f"s{len(data)}:{fnv1a32(data):08x}"


def integer(n: int) -> str:
    """u32 / u64 -> plain decimal"""
    return str(n)


def f64(x: float) -> str:
    """f64 -> nan | inf | -inf | f<16 hex digits of the IEEE-754 bits>"""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return "f" + struct.pack(">d", x).hex()


def metric(v: types.MetricValue) -> str:
    """metric-value -> number:<f64> | text:<string>"""
    if isinstance(v, types.MetricValue_Number):
        return "number:" + f64(v.value)
    return "text:" + string(v.value)


CHANGE_TYPES = {
    types.SchemaChangeType_ColumnAdded: "column-added",
    types.SchemaChangeType_ColumnRemoved: "column-removed",
    types.SchemaChangeType_ColumnRenamed: "column-renamed",
    types.SchemaChangeType_TypeChanged: "type-changed",
    types.SchemaChangeType_PartitionChanged: "partition-changed",
}


def change_type(v: types.SchemaChangeType) -> str:
    """schema-change-type -> its case name, or other:<string>"""
    if isinstance(v, types.SchemaChangeType_Other):
        return "other:" + string(v.value)
    return CHANGE_TYPES[type(v)]


def opt(encode):
    """option<T> -> '-' for none, else T's encoding"""
    return lambda v: "-" if v is None else encode(v)


RETRY = [("function", string), ("attempts", opt(integer)), ("error", string), ("error_type", string)]

# Each event-kind case: its WIT name and its payload fields in WIT declaration order.
KINDS = {
    types.EventKind_ProfilingStarted: ("profiling-started", [("table", string), ("run_id", string)]),
    types.EventKind_ProfilingCompleted: ("profiling-completed", [
        ("table", string), ("run_id", string), ("row_count", opt(integer)),
        ("column_count", opt(integer)), ("duration_seconds", opt(f64))]),
    types.EventKind_ProfilingFailed: ("profiling-failed", [
        ("table", string), ("run_id", string), ("error", string)]),
    types.EventKind_ProfilingSkipped: ("profiling-skipped", [
        ("table", string), ("schema", opt(string)), ("reason", string),
        ("action", string), ("snapshot_id", opt(string))]),
    types.EventKind_DataDriftDetected: ("data-drift-detected", [
        ("table", string), ("column", string), ("metric", string),
        ("baseline_value", opt(metric)), ("current_value", opt(metric)),
        ("change_percent", opt(f64)), ("drift_severity", string), ("explanation", opt(string))]),
    types.EventKind_SchemaChangeDetected: ("schema-change-detected", [
        ("table", string), ("change_type", change_type), ("column", opt(string)),
        ("old_column_name", opt(string)), ("old_type", opt(string)), ("new_type", opt(string)),
        ("partition_info", opt(string)), ("change_severity", opt(string)), ("explanation", opt(string))]),
    types.EventKind_AnomalyDetected: ("anomaly-detected", [
        ("table", string), ("column", string), ("metric", string), ("anomaly_type", string),
        ("expected_value", opt(metric)), ("actual_value", opt(metric)),
        ("severity", string), ("detection_method", string), ("explanation", opt(string))]),
    types.EventKind_ValidationFailed: ("validation-failed", [
        ("table", string), ("column", opt(string)), ("rule_type", string), ("rule_config", opt(string)),
        ("failure_reason", string), ("sample_failures", opt(string)), ("severity", string),
        ("total_failures", opt(integer)), ("total_rows", opt(integer)), ("failure_rate", opt(f64))]),
    types.EventKind_QualityScoreDegraded: ("quality-score-degraded", [
        ("table", string), ("schema", opt(string)), ("current_score", opt(f64)),
        ("previous_score", opt(f64)), ("score_change", opt(f64)),
        ("threshold_type", string), ("explanation", opt(string))]),
    types.EventKind_QualityThresholdBreached: ("quality-threshold-breached", [
        ("table", string), ("schema", opt(string)), ("current_score", opt(f64)),
        ("threshold_type", string), ("threshold_value", opt(f64)),
        ("previous_status", opt(string)), ("explanation", opt(string))]),
    types.EventKind_RetryAttempt: ("retry-attempt", RETRY),
    types.EventKind_RetryExhausted: ("retry-exhausted", RETRY),
}


def canonical(event: types.Event) -> str:
    """echo <id> <event-type> <timestamp> <severity> <metadata> <kind> <payload...>"""
    parts = [
        "echo",
        string(event.id),
        string(event.event_type),
        string(event.timestamp),
        "-" if event.severity is None else event.severity.name.lower(),
        string(event.metadata),
    ]
    kind = event.kind
    if isinstance(kind, types.EventKind_Custom):
        parts += ["custom", string(kind.value)]
    else:
        name, fields = KINDS[type(kind)]
        parts.append(name)
        parts += [encode(getattr(kind.value, field)) for field, encode in fields]
    return " ".join(parts)
