//! The typed fields of each known event type: how they are read from a
//! metadata object and written back under their Python keys, both from one
//! table so the two directions cannot drift apart.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{shown, EventError};
use crate::bindings::{
    Anomaly, DataDrift, EventKind, MetricValue, ProfilingCompleted, ProfilingFailed,
    ProfilingSkipped, ProfilingStarted, QualityScoreDegraded, QualityThresholdBreached, Retry,
    SchemaChange, SchemaChangeType, ValidationFailure,
};
use crate::routing::metadata::MetadataIndex;

/// Declares the known event types. Each row names the `EventKind` case and
/// its record, the PascalCase name baselinr emits and its snake_case alias,
/// then every field with how it is converted (a method of both [`Reader`]
/// and [`Writer`]) and its Python metadata key. From the table come
/// [`EventKind::canonical_name`], [`read_known`] and [`write_known`].
macro_rules! known_kinds {
    ($(
        $case:ident($record:ident) = $name:literal | $alias:literal {
            $($field:ident: $how:ident($key:literal)),* $(,)?
        }
    )*) => {
        impl EventKind {
            /// The PascalCase name of a known event type; `None` for a custom one.
            pub fn canonical_name(&self) -> Option<&'static str> {
                match self {
                    $(EventKind::$case(_) => Some($name),)*
                    EventKind::Custom(_) => None,
                }
            }
        }

        /// Reads the typed fields of `event_type`; `None` if it is not a
        /// known type.
        fn read_known(
            event_type: &str,
            metadata: &Reader<'_, '_>,
        ) -> Option<Result<EventKind, FieldError>> {
            $(if event_type == $name || event_type == $alias {
                let read = || -> Result<EventKind, FieldError> {
                    Ok(EventKind::$case($record { $($field: metadata.$how($key)?,)* }))
                };
                return Some(read());
            })*
            None
        }

        /// Whether every typed field of `kind` that has a value has its key
        /// among those `present` says: then [`fill`] adds nothing.
        pub(super) fn keys_cover(kind: &EventKind, present: impl Fn(&str) -> bool) -> bool {
            match kind {
                $(EventKind::$case(record) => {
                    true $(&& (!Filled::filled(&record.$field) || present($key)))*
                })*
                EventKind::Custom(_) => true,
            }
        }

        /// Writes the typed fields of `kind` under their Python keys.
        fn write_known(kind: &EventKind, metadata: &mut Writer<'_>) {
            match kind {
                $(EventKind::$case(record) => {
                    $(metadata.$how($key, &record.$field);)*
                })*
                EventKind::Custom(_) => {}
            }
        }
    };
}

known_kinds! {
    ProfilingStarted(ProfilingStarted) = "ProfilingStarted" | "profiling_started" {
        table: text("table"),
        run_id: text("run_id"),
    }
    ProfilingCompleted(ProfilingCompleted) = "ProfilingCompleted" | "profiling_completed" {
        table: text("table"),
        run_id: text("run_id"),
        row_count: opt_u64("row_count"),
        column_count: opt_u64("column_count"),
        duration_seconds: opt_f64("duration_seconds"),
    }
    ProfilingFailed(ProfilingFailed) = "ProfilingFailed" | "profiling_failed" {
        table: text("table"),
        run_id: text("run_id"),
        error: text("error"),
    }
    ProfilingSkipped(ProfilingSkipped) = "ProfilingSkipped" | "profiling_skipped" {
        table: text("table"),
        schema: opt_text("schema"),
        reason: text("reason"),
        action: text("action"),
        snapshot_id: opt_text("snapshot_id"),
    }
    DataDriftDetected(DataDrift) = "DataDriftDetected" | "data_drift_detected" {
        table: text("table"),
        column: text("column"),
        metric: text("metric"),
        baseline_value: opt_metric("baseline_value"),
        current_value: opt_metric("current_value"),
        change_percent: opt_f64("change_percent"),
        drift_severity: text("drift_severity"),
        explanation: opt_text("explanation"),
    }
    SchemaChangeDetected(SchemaChange) = "SchemaChangeDetected" | "schema_change_detected" {
        table: text("table"),
        change_type: change_type("change_type"),
        column: opt_text("column"),
        old_column_name: opt_text("old_column_name"),
        old_type: opt_text("old_type"),
        new_type: opt_text("new_type"),
        partition_info: opt_json("partition_info"),
        change_severity: opt_text("change_severity"),
        explanation: opt_text("explanation"),
    }
    AnomalyDetected(Anomaly) = "AnomalyDetected" | "anomaly_detected" {
        table: text("table"),
        column: text("column"),
        metric: text("metric"),
        anomaly_type: text("anomaly_type"),
        expected_value: opt_metric("expected_value"),
        actual_value: opt_metric("actual_value"),
        severity: text("severity"),
        detection_method: text("detection_method"),
        explanation: opt_text("explanation"),
    }
    ValidationFailed(ValidationFailure) = "ValidationFailed" | "validation_failed" {
        table: text("table"),
        column: opt_text("column"),
        rule_type: text("rule_type"),
        rule_config: opt_json("rule_config"),
        failure_reason: text("failure_reason"),
        sample_failures: opt_json("sample_failures"),
        severity: text("severity"),
        total_failures: opt_u64("total_failures"),
        total_rows: opt_u64("total_rows"),
        failure_rate: opt_f64("failure_rate"),
    }
    QualityScoreDegraded(QualityScoreDegraded) = "QualityScoreDegraded" | "quality_score_degraded" {
        table: text("table"),
        schema: opt_text("schema"),
        current_score: opt_f64("current_score"),
        previous_score: opt_f64("previous_score"),
        score_change: opt_f64("score_change"),
        threshold_type: text("threshold_type"),
        explanation: opt_text("explanation"),
    }
    QualityThresholdBreached(QualityThresholdBreached) =
        "QualityScoreThresholdBreached" | "quality_score_threshold_breached" {
        table: text("table"),
        schema: opt_text("schema"),
        current_score: opt_f64("current_score"),
        threshold_type: text("threshold_type"),
        threshold_value: opt_f64("threshold_value"),
        previous_status: opt_text("previous_status"),
        explanation: opt_text("explanation"),
    }
    RetryAttempt(Retry) = "RetryAttempt" | "retry_attempt" {
        function: text("function"),
        attempts: opt_u32("attempt"),
        error: text("error"),
        error_type: text("error_type"),
    }
    RetryExhausted(Retry) = "RetryExhausted" | "retry_exhausted" {
        function: text("function"),
        attempts: opt_u32("total_attempts"),
        error: text("error"),
        error_type: text("error_type"),
    }
}

/// A metadata object to read typed fields from.
#[derive(Clone, Copy)]
pub(super) enum Source<'s, 'a> {
    /// Parsed.
    Map(&'s Map<String, Value>),
    /// As text, indexed key by key (the one-pass reader's).
    Index(&'s MetadataIndex<'a>),
}

impl Source<'_, '_> {
    /// The value under `key`; null as null.
    fn get(&self, key: &str) -> Option<Cow<'_, Value>> {
        match self {
            Source::Map(map) => map.get(key).map(Cow::Borrowed),
            Source::Index(index) => {
                let entry = index.entry(key)?;
                let raw = entry.raw();
                let value = match raw.as_bytes()[0] {
                    b'"' => Value::String(entry.value().into_text()?.into_owned()),
                    b'-' | b'0'..=b'9' => number(raw)?,
                    _ => serde_json::from_str(raw).ok()?,
                };
                Some(Cow::Owned(value))
            }
        }
    }

    /// The string under `key`, if it holds one.
    pub(super) fn string(&self, key: &str) -> Option<Cow<'_, str>> {
        match self {
            Source::Map(map) => map.get(key)?.as_str().map(Cow::Borrowed),
            Source::Index(index) => index.get(key).into_text(),
        }
    }

    /// The string under `key` as an owned `String`, `Ok(None)` when it is
    /// missing or null, `Err(())` when it holds anything else.
    fn owned_string(&self, key: &str) -> Result<Option<String>, ()> {
        match self {
            Source::Map(map) => match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text.clone())),
                Some(_) => Err(()),
            },
            Source::Index(index) => match index.entry(key) {
                None => Ok(None),
                Some(entry) if entry.raw() == "null" => Ok(None),
                Some(entry) => entry
                    .value()
                    .into_text()
                    .map(|text| Some(text.into_owned()))
                    .ok_or(()),
            },
        }
    }
}

/// A number the scan checked against JSON's grammar (without an exponent
/// or 309 integer digits, see `MetadataIndex::read_strict`), as serde_json
/// reads it: an integer that fits as one, anything else as the nearest
/// `f64` (both read correctly rounded).
fn number(raw: &str) -> Option<Value> {
    let integer = !raw.contains('.');
    if integer {
        if let Ok(n) = raw.parse::<u64>() {
            return Some(Value::from(n));
        }
        // serde_json reads `-0` as the float -0.0.
        match raw.parse::<i64>() {
            Ok(n) if n != 0 => return Some(Value::from(n)),
            _ => {}
        }
    }
    serde_json::Number::from_f64(raw.parse::<f64>().ok()?).map(Value::Number)
}

/// Reads the typed fields of `event_type` from `metadata`; an unknown type is
/// [`EventKind::Custom`] with the name as given.
pub(super) fn read(
    event_type: &str,
    metadata: &Map<String, Value>,
) -> Result<EventKind, EventError> {
    read_from(event_type, Source::Map(metadata))
}

/// [`read`] from either kind of [`Source`].
pub(super) fn read_from(
    event_type: &str,
    metadata: Source<'_, '_>,
) -> Result<EventKind, EventError> {
    match read_known(event_type, &Reader(metadata)) {
        None => Ok(EventKind::Custom(event_type.to_owned())),
        Some(read) => read.map_err(|e| EventError::Field {
            event_type: event_type.to_owned(),
            key: e.key,
            expected: e.expected,
            found: e.found,
        }),
    }
}

/// Writes every typed field of `kind` into `metadata`, empty ones as null,
/// as Python does: the metadata of an event built in Rust.
pub(super) fn write_all(kind: &EventKind, metadata: &mut Map<String, Value>) {
    write_known(kind, &mut Writer::new(metadata, true));
}

/// Writes the typed fields of `kind` that have a value and whose key
/// `metadata` lacks.
pub(super) fn fill(kind: &EventKind, metadata: &mut Map<String, Value>) {
    write_known(kind, &mut Writer::new(metadata, false));
}

/// Whether a typed field has a value [`fill`] would write.
trait Filled {
    fn filled(&self) -> bool;
}

impl Filled for String {
    fn filled(&self) -> bool {
        !self.is_empty()
    }
}

impl<T> Filled for Option<T> {
    fn filled(&self) -> bool {
        self.is_some()
    }
}

impl Filled for SchemaChangeType {
    fn filled(&self) -> bool {
        !matches!(self, SchemaChangeType::Other(word) if word.is_empty())
    }
}

/// A metadata value of the wrong type, before the event type is known.
struct FieldError {
    key: &'static str,
    expected: &'static str,
    found: String,
}

/// Reads typed fields from a metadata object: a missing or null key is
/// empty (`""` or `None`), a value of the wrong type is a [`FieldError`].
struct Reader<'s, 'a>(Source<'s, 'a>);

impl Reader<'_, '_> {
    /// The non-null value under `key`, converted; `expected` describes what
    /// `convert` accepts.
    fn typed<T>(
        &self,
        key: &'static str,
        expected: &'static str,
        convert: impl FnOnce(&Value) -> Option<T>,
    ) -> Result<Option<T>, FieldError> {
        let Some(value) = self.0.get(key).filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        convert(&value).map(Some).ok_or_else(|| FieldError {
            key,
            expected,
            found: shown(&value),
        })
    }

    fn text(&self, key: &'static str) -> Result<String, FieldError> {
        Ok(self.opt_text(key)?.unwrap_or_default())
    }

    fn opt_text(&self, key: &'static str) -> Result<Option<String>, FieldError> {
        // Most typed fields are strings: read without a `Value` between.
        match self.0.owned_string(key) {
            Ok(text) => Ok(text),
            Err(()) => self.typed(key, "a string", |v| v.as_str().map(str::to_owned)),
        }
    }

    fn opt_f64(&self, key: &'static str) -> Result<Option<f64>, FieldError> {
        self.typed(key, "a number", |v| v.as_f64().or_else(|| non_finite(v)))
    }

    fn opt_u64(&self, key: &'static str) -> Result<Option<u64>, FieldError> {
        self.typed(key, "a non-negative integer", as_count)
    }

    fn opt_u32(&self, key: &'static str) -> Result<Option<u32>, FieldError> {
        self.typed(key, "an integer from 0 to 4294967295", |v| {
            u32::try_from(as_count(v)?).ok()
        })
    }

    /// Never fails: a value that is not a number is kept as text.
    fn opt_metric(&self, key: &'static str) -> Result<Option<MetricValue>, FieldError> {
        self.typed(key, "any value", |v| {
            Some(match v {
                Value::Number(n) => n
                    .as_f64()
                    .map_or_else(|| MetricValue::Text(n.to_string()), MetricValue::Number),
                Value::String(s) => {
                    non_finite(v).map_or_else(|| MetricValue::Text(s.clone()), MetricValue::Number)
                }
                other => MetricValue::Text(other.to_string()),
            })
        })
    }

    /// Never fails: any value is kept as its JSON text.
    fn opt_json(&self, key: &'static str) -> Result<Option<String>, FieldError> {
        self.typed(key, "any value", |v| Some(v.to_string()))
    }

    fn change_type(&self, key: &'static str) -> Result<SchemaChangeType, FieldError> {
        let word = self.text(key)?;
        Ok(match word.as_str() {
            "column_added" => SchemaChangeType::ColumnAdded,
            "column_removed" => SchemaChangeType::ColumnRemoved,
            "column_renamed" => SchemaChangeType::ColumnRenamed,
            "type_changed" => SchemaChangeType::TypeChanged,
            "partition_changed" => SchemaChangeType::PartitionChanged,
            _ => SchemaChangeType::Other(word),
        })
    }
}

/// `NaN`, `Infinity` or `-Infinity` written as a string (which is how
/// `Event::from_json` reads Python's bare non-finite numbers).
fn non_finite(value: &Value) -> Option<f64> {
    match value.as_str()? {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// A count: a JSON integer, or a float with no fractional part (Python may
/// send `10.0`). Booleans, negatives and fractions are not counts.
fn as_count(value: &Value) -> Option<u64> {
    // 2^64, the first float past `u64::MAX` (which itself rounds up to it).
    const PAST_U64: f64 = 18_446_744_073_709_551_616.0;
    value.as_u64().or_else(|| {
        let float = value.as_f64()?;
        (float.fract() == 0.0 && (0.0..PAST_U64).contains(&float)).then_some(float as u64)
    })
}

/// Writes typed fields into a metadata object under their Python keys,
/// never over a key already there.
struct Writer<'a> {
    metadata: &'a mut Map<String, Value>,
    /// Write empty fields (`""`, `None`) as null too, as Python does;
    /// otherwise skip them, so a key the emitter left out stays out.
    with_empty: bool,
}

impl<'a> Writer<'a> {
    fn new(metadata: &'a mut Map<String, Value>, with_empty: bool) -> Self {
        Writer {
            metadata,
            with_empty,
        }
    }

    fn put(&mut self, key: &str, value: Option<Value>) {
        if value.is_some() || self.with_empty {
            self.metadata
                .entry(key)
                .or_insert(value.unwrap_or(Value::Null));
        }
    }

    fn text(&mut self, key: &str, value: &str) {
        self.put(key, (!value.is_empty()).then(|| value.into()));
    }

    fn opt_text(&mut self, key: &str, value: &Option<String>) {
        self.put(key, value.as_deref().map(Value::from));
    }

    fn opt_f64(&mut self, key: &str, value: &Option<f64>) {
        self.put(key, value.map(Value::from));
    }

    fn opt_u64(&mut self, key: &str, value: &Option<u64>) {
        self.put(key, value.map(Value::from));
    }

    fn opt_u32(&mut self, key: &str, value: &Option<u32>) {
        self.put(key, value.map(Value::from));
    }

    fn opt_metric(&mut self, key: &str, value: &Option<MetricValue>) {
        self.put(
            key,
            value.as_ref().map(|metric| match metric {
                MetricValue::Number(n) => Value::from(*n),
                MetricValue::Text(s) => Value::from(s.as_str()),
            }),
        );
    }

    /// JSON text goes back as the value it encodes (as a string if it is not
    /// valid JSON, which only a Rust-built event can hold).
    fn opt_json(&mut self, key: &str, value: &Option<String>) {
        self.put(
            key,
            value
                .as_deref()
                .map(|text| serde_json::from_str(text).unwrap_or_else(|_| text.into())),
        );
    }

    fn change_type(&mut self, key: &str, value: &SchemaChangeType) {
        self.text(
            key,
            match value {
                SchemaChangeType::ColumnAdded => "column_added",
                SchemaChangeType::ColumnRemoved => "column_removed",
                SchemaChangeType::ColumnRenamed => "column_renamed",
                SchemaChangeType::TypeChanged => "type_changed",
                SchemaChangeType::PartitionChanged => "partition_changed",
                SchemaChangeType::Other(word) => word,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accept_whole_floats_only() {
        let count = |json: &str| as_count(&serde_json::from_str(json).unwrap());
        assert_eq!(count("10"), Some(10));
        assert_eq!(count("10.0"), Some(10));
        assert_eq!(count("18446744073709551615"), Some(u64::MAX));
        assert_eq!(count("10.5"), None);
        assert_eq!(count("-1"), None);
        assert_eq!(count("-1.0"), None);
        assert_eq!(count("1e20"), None);
        assert_eq!(count("true"), None);
        assert_eq!(count("\"3\""), None);
    }
}
