//! The JSON form of the log (`--log-format json`): one JSON object a line,
//! with the line's fields and those of the spans it happened in at the top
//! level, so that a line about a delivery carries `plugin` and `event_id`
//! as fields a log pipeline can index without knowing about spans, and,
//! with traces on (see `observe::traces`), the `trace_id` of its trace.
//!
//! Use it with tracing-subscriber's `fmt` and [`JsonFields`], which keeps
//! each span's fields as a JSON object this formatter merges:
//!
//! ```no_run
//! tracing_subscriber::fmt()
//!     .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
//!     .event_format(hookhost::observe::logs::JsonLines)
//!     .init();
//! ```

use std::fmt;

use opentelemetry::trace::TraceId;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OtelData;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The target of the span a worker opens around each delivery, with the
/// fields `plugin` and `event_id` (for a batch call, `events`, the number
/// of events). Off in the human-readable log, where each line names its
/// plugin already; on in the JSON one.
pub const DELIVERY_TARGET: &str = "hookhost::delivery";

/// Formats each line as one JSON object: `timestamp` (RFC 3339, UTC),
/// `level`, `target`, `message`, the line's own fields, then the fields of
/// the spans it is in (innermost first; a field the line has already, or
/// an inner span has, is not overwritten), and `trace_id` (32 hex digits)
/// when one of those spans is traced.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut line = Map::new();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        line.insert("timestamp".into(), Value::String(now));
        line.insert("level".into(), Value::String(metadata.level().to_string()));
        line.insert("target".into(), Value::String(metadata.target().to_owned()));
        event.record(&mut Fields(&mut line));
        if let Some(scope) = ctx.event_scope() {
            for span in scope {
                let extensions = span.extensions();
                if !line.contains_key("trace_id") {
                    let trace = extensions.get::<OtelData>().and_then(OtelData::trace_id);
                    if let Some(trace) = trace.filter(|id| *id != TraceId::INVALID) {
                        line.insert("trace_id".into(), Value::String(trace.to_string()));
                    }
                }
                let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&fields.fields)
                else {
                    continue;
                };
                for (key, value) in fields {
                    line.entry(key).or_insert(value);
                }
            }
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Collects a line's fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::Bool(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}
