//! The JSON form of an event and its mapping onto the WIT `event` record.
//!
//! Tools send events as the Python profilers' `event.to_dict()` writes them
//! (`{"event_type", "timestamp", "metadata"}`, optionally `event_id`); this
//! module reads that form leniently into [`Event`] (see `wit/types.wit` for
//! the field conventions) and writes it back without losing a key.

use std::borrow::Cow;

use chrono::{DateTime, FixedOffset, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::bindings::{Event, EventKind, Severity};
use kinds::Source;

mod kinds;
mod one_pass;

#[doc(hidden)]
pub use one_pass::same_as_general;

/// Why a JSON event could not be read. Each message names the key at fault;
/// the caller adds where the event came from (file and line, request).
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The text is not JSON at all. The parser's message is part of this
    /// one, so it is not also exposed as `source` (it would print twice).
    #[error("not valid JSON: {0}")]
    Json(serde_json::Error),
    /// The JSON is valid but is not an object.
    #[error("event is not a JSON object")]
    NotAnObject,
    /// There is no `event_type`, or it is null.
    #[error("missing \"event_type\"")]
    MissingEventType,
    /// A top-level key (`event_type`, `event_id`, `id`) has the wrong type.
    #[error("\"{key}\" must be {expected}, found {found}")]
    Envelope {
        /// The key, as it appears in the JSON.
        key: &'static str,
        /// What the key must hold.
        expected: &'static str,
        /// The value found, shortened.
        found: String,
    },
    /// The timestamp is neither a date-time string nor Unix seconds.
    #[error("\"timestamp\": {found} is not an RFC 3339 or ISO 8601 date-time")]
    Timestamp {
        /// The value found, shortened.
        found: String,
    },
    /// `metadata` is present but not an object.
    #[error("\"metadata\" must be a JSON object, found {found}")]
    Metadata {
        /// The JSON type found (`an array`, `a string`, ...).
        found: &'static str,
    },
    /// A metadata key with a typed field holds a value of the wrong type.
    #[error("{event_type}: metadata.{key} must be {expected}, found {found}")]
    Field {
        /// The event type as the emitter spelled it.
        event_type: String,
        /// The metadata key.
        key: &'static str,
        /// What the key must hold.
        expected: &'static str,
        /// The value found, shortened.
        found: String,
    },
}

impl Event {
    /// Reads an event from its JSON text.
    ///
    /// # Errors
    ///
    /// The text is not JSON, or see [`Event::from_json_value`].
    pub fn from_json(text: &str) -> Result<Event, EventError> {
        let text = quote_non_finite(text);
        if let Some(event) = one_pass::read(&text) {
            return Ok(event);
        }
        Self::from_json_value(serde_json::from_str(&text).map_err(EventError::Json)?)
    }

    /// Reads an event from a parsed JSON value.
    ///
    /// A missing or empty id gets a new UUID, a missing timestamp the current
    /// time, missing metadata an empty object; an unknown `event_type`
    /// becomes [`EventKind::Custom`].
    ///
    /// # Errors
    ///
    /// The value is not an object, has no `event_type`, or a key holds a
    /// value of the wrong JSON type; the error names the key.
    pub fn from_json_value(value: Value) -> Result<Event, EventError> {
        let Value::Object(mut envelope) = value else {
            return Err(EventError::NotAnObject);
        };
        let event_type = read_event_type(&envelope)?;
        let id = read_id(&envelope)?;
        let timestamp = read_timestamp(envelope.get("timestamp"))?;
        let metadata = match envelope.remove("metadata") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(metadata)) => metadata,
            Some(other) => {
                return Err(EventError::Metadata {
                    found: json_type(&other),
                })
            }
        };
        let kind = kinds::read(&event_type, &metadata)?;
        Ok(Event {
            id,
            event_type,
            timestamp,
            severity: severity_of(Source::Map(&metadata)),
            metadata: Value::Object(metadata).to_string(),
            kind,
        })
    }

    /// The JSON form: `{"event_id", "event_type", "timestamp", "metadata"}`.
    ///
    /// `metadata` is `self.metadata` parsed back (an empty object if it is
    /// not a JSON object); a typed field that has a value but whose key the
    /// metadata lacks, as in an event built in Rust, is added under its
    /// Python key.
    pub fn to_json_value(&self) -> Value {
        let mut metadata = match serde_json::from_str(&self.metadata) {
            Ok(Value::Object(metadata)) => metadata,
            _ => Map::new(),
        };
        kinds::fill(&self.kind, &mut metadata);
        let mut envelope = Map::new();
        envelope.insert("event_id".into(), self.id.clone().into());
        envelope.insert("event_type".into(), self.event_type.clone().into());
        envelope.insert("timestamp".into(), self.timestamp.clone().into());
        envelope.insert("metadata".into(), Value::Object(metadata));
        Value::Object(envelope)
    }

    /// The JSON form as text (see [`Event::to_json_value`]): the envelope
    /// compact, the metadata as `self.metadata` holds it when that is a JSON
    /// object with every typed field's key, else as re-written by
    /// [`Event::to_json_value`].
    pub fn to_json(&self) -> String {
        self.to_json_as_is()
            .unwrap_or_else(|| self.to_json_value().to_string())
    }

    /// [`Event::to_json`] without parsing the metadata into a `Value`, when
    /// nothing has to be added to it.
    fn to_json_as_is(&self) -> Option<String> {
        use crate::routing::metadata::{Found, MetadataIndex};
        // The routing's scan checks the text is a JSON object serde_json
        // reads back.
        let index = MetadataIndex::read_strict(&self.metadata)?;
        if !kinds::keys_cover(&self.kind, |key| index.get(key) != Found::Missing) {
            return None;
        }
        let mut out = Vec::with_capacity(self.metadata.len() + 160);
        for (key, value) in [
            ("{\"event_id\":", &self.id),
            (",\"event_type\":", &self.event_type),
            (",\"timestamp\":", &self.timestamp),
        ] {
            out.extend_from_slice(key.as_bytes());
            serde_json::to_writer(&mut out, value).ok()?;
        }
        out.extend_from_slice(b",\"metadata\":");
        out.extend_from_slice(self.metadata.trim().as_bytes());
        out.push(b'}');
        String::from_utf8(out).ok()
    }

    /// Builds an event from typed fields, for Rust embedders: a new UUID,
    /// the current time, the PascalCase `event_type` (a custom kind's own
    /// name), every typed field in `metadata` under its Python key (null
    /// where empty) and the severity read from there.
    ///
    /// The kind is read back from that metadata, so it is the one
    /// [`Event::from_json`] would give: JSON-text fields come out compact and
    /// `other("column_added")` comes out as `column-added`.
    pub fn from_kind(kind: EventKind) -> Event {
        let mut metadata = Map::new();
        kinds::write_all(&kind, &mut metadata);
        let event_type = match &kind {
            EventKind::Custom(name) => name.clone(),
            known => known.canonical_name().unwrap_or_default().to_owned(),
        };
        let kind = kinds::read(&event_type, &metadata).unwrap_or(kind);
        Event {
            id: new_id(),
            event_type,
            timestamp: now(),
            severity: severity_of(Source::Map(&metadata)),
            metadata: Value::Object(metadata).to_string(),
            kind,
        }
    }

    /// The PascalCase name of the event's type, `"Custom"` for a custom one.
    pub fn kind_name(&self) -> &'static str {
        self.kind.canonical_name().unwrap_or("Custom")
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        })
    }
}

// ---------------------------------------------------------------------------
// The envelope: event_type, id, timestamp, severity.

fn read_event_type(envelope: &Map<String, Value>) -> Result<String, EventError> {
    match envelope.get("event_type") {
        None | Some(Value::Null) => Err(EventError::MissingEventType),
        Some(Value::String(name)) if !name.is_empty() => Ok(name.clone()),
        Some(other) => Err(envelope_error("event_type", "a non-empty string", other)),
    }
}

/// The emitter's id (`event_id`, else `id`), or a new one when it sent none.
fn read_id(envelope: &Map<String, Value>) -> Result<String, EventError> {
    let given = ["event_id", "id"]
        .into_iter()
        .find_map(|key| Some((key, envelope.get(key).filter(|v| !v.is_null())?)));
    match given {
        None => Ok(new_id()),
        Some((_, Value::String(id))) if id.is_empty() => Ok(new_id()),
        Some((_, Value::String(id))) => Ok(id.clone()),
        Some((key, other)) => Err(envelope_error(key, "a string", other)),
    }
}

fn new_id() -> String {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::new_v4()
        .hyphenated()
        .encode_lower(&mut text)
        .to_owned()
}

fn envelope_error(key: &'static str, expected: &'static str, found: &Value) -> EventError {
    EventError::Envelope {
        key,
        expected,
        found: shown(found),
    }
}

/// The timestamp as RFC 3339: kept as given when it already is one, read as
/// UTC when it has no offset, the current time when missing.
fn read_timestamp(value: Option<&Value>) -> Result<String, EventError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(now());
    };
    let parsed = match value {
        Value::String(text) => timestamp_from_text(text),
        Value::Number(seconds) => timestamp_from_unix(seconds),
        _ => None,
    };
    parsed.ok_or_else(|| EventError::Timestamp {
        found: shown(value),
    })
}

/// The current time to the microsecond, as Python's `isoformat()` has it.
fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn timestamp_from_text(text: &str) -> Option<String> {
    // RFC 3339 allows a space for the `T`, but hooks get the strict form.
    let text = match text.as_bytes().get(10) {
        Some(b' ') => format!("{}T{}", &text[..10], &text[11..]),
        _ => text.to_owned(),
    };
    if DateTime::parse_from_rfc3339(&text).is_ok() {
        return Some(text);
    }
    // Python's naive `isoformat()`: the same text with `Z` is the exact form.
    let utc = format!("{text}Z");
    if DateTime::parse_from_rfc3339(&utc).is_ok() {
        return Some(utc);
    }
    // Other ISO 8601 shapes (no seconds, `+0100`, ` UTC`) are re-written.
    if let Ok(with_offset) = text.parse::<DateTime<FixedOffset>>() {
        return Some(with_offset.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .into_iter()
        .find_map(|format| NaiveDateTime::parse_from_str(&text, format).ok())
        .map(|naive| naive.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// Unix seconds, to the microsecond (what Python's `datetime` keeps).
fn timestamp_from_unix(seconds: &serde_json::Number) -> Option<String> {
    let time = match seconds.as_i64() {
        Some(whole) => DateTime::from_timestamp(whole, 0)?,
        // `as` saturates; a saturated value is out of chrono's range.
        None => DateTime::from_timestamp_micros((seconds.as_f64()? * 1e6).round() as i64)?,
    };
    Some(time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// Metadata keys that carry a severity word, in the order they are tried.
/// Quality-score events carry theirs as `threshold_type` (`warning`,
/// `critical`).
const SEVERITY_KEYS: [&str; 4] = [
    "severity",
    "drift_severity",
    "change_severity",
    "threshold_type",
];

/// Severity words as emitters spell them (compared case-insensitively).
const SEVERITY_WORDS: [(&str, Severity); 7] = [
    ("info", Severity::Info),
    ("low", Severity::Low),
    ("medium", Severity::Medium),
    ("high", Severity::High),
    ("critical", Severity::Critical),
    ("warning", Severity::Medium),
    ("breaking", Severity::Critical),
];

/// The severity of the first severity key holding a word; `None` if that
/// word is not one of [`SEVERITY_WORDS`].
fn severity_of(metadata: Source<'_, '_>) -> Option<Severity> {
    let word = SEVERITY_KEYS.iter().find_map(|key| metadata.string(key))?;
    SEVERITY_WORDS
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(&word))
        .map(|(_, severity)| *severity)
}

// ---------------------------------------------------------------------------
// Quoting bad values in error messages.

/// Longest excerpt of a bad value that an error quotes, in characters:
/// enough to recognise it, short enough to keep a log line on one screen.
const SHOWN_CHARS: usize = 60;

/// A bad value as JSON text, cut to [`SHOWN_CHARS`].
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// The JSON type of a value, as a noun for error messages.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `text` with the bare `NaN`, `Infinity` and `-Infinity` that Python's
/// `json.dumps` writes (and JSON does not allow) turned into the strings
/// `"NaN"`, `"Infinity"` and `"-Infinity"`, which the typed number fields
/// read back as those floats. Text inside strings is left alone.
pub(crate) fn quote_non_finite(text: &str) -> Cow<'_, str> {
    const WORDS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];
    let bytes = text.as_bytes();
    let has_word = memchr::memchr2_iter(b'N', b'I', bytes)
        .any(|at| bytes[at..].starts_with(b"NaN") || bytes[at..].starts_with(b"Infinity"));
    if !has_word {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !in_string {
            if let Some(word) = WORDS.iter().find(|word| rest.starts_with(*word)) {
                out.push('"');
                out.push_str(word);
                out.push('"');
                rest = &rest[word.len()..];
                continue;
            }
        }
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            _ => {}
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_values_are_cut_on_a_character_boundary() {
        assert_eq!(shown(&Value::from("many")), "\"many\"");
        let long = shown(&Value::from("é".repeat(100)));
        assert_eq!(long.chars().count(), SHOWN_CHARS + 3);
        assert!(long.ends_with("é..."));
    }

    #[test]
    fn timestamps_take_every_accepted_shape() {
        let read = |text: &str| timestamp_from_text(text);
        let same = "2025-01-15T10:30:00.123456+00:00";
        assert_eq!(read(same).as_deref(), Some(same));
        assert_eq!(
            read("2025-01-15 10:30:00.123456").as_deref(),
            Some("2025-01-15T10:30:00.123456Z")
        );
        assert_eq!(
            read("2025-01-15T10:30").as_deref(),
            Some("2025-01-15T10:30:00Z")
        );
        assert_eq!(
            read("2025-01-15T10:30:00+0100").as_deref(),
            Some("2025-01-15T10:30:00+01:00")
        );
        assert_eq!(read("2025-01-15"), None);
        assert_eq!(read("2025-02-30T10:30:00"), None);
        assert_eq!(read("yesterday"), None);
    }

    #[test]
    fn unix_seconds_keep_microseconds() {
        let read = |json: &str| timestamp_from_unix(&serde_json::from_str(json).unwrap());
        assert_eq!(read("0").as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            read("1736937000.123456").as_deref(),
            Some("2025-01-15T10:30:00.123456Z")
        );
        assert_eq!(read("1e300"), None);
    }

    #[test]
    fn severity_takes_the_first_key_with_a_word() {
        let of = |json: &str| severity_of(Source::Map(&serde_json::from_str(json).unwrap()));
        assert_eq!(of(r#"{"drift_severity": "HIGH"}"#), Some(Severity::High));
        assert_eq!(
            of(r#"{"severity": null, "change_severity": "Breaking"}"#),
            Some(Severity::Critical)
        );
        assert_eq!(
            of(r#"{"severity": "warning", "drift_severity": "low"}"#),
            Some(Severity::Medium)
        );
        assert_eq!(of(r#"{"severity": "odd", "drift_severity": "low"}"#), None);
        assert_eq!(of(r#"{"severity": 3}"#), None);
        assert_eq!(
            of(r#"{"threshold_type": "critical"}"#),
            Some(Severity::Critical)
        );
        assert_eq!(of("{}"), None);
    }
}
