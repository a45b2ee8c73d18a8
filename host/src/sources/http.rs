//! `POST /events`: one event, or a JSON array of them, in the event JSON
//! form (`{"event_type", "timestamp", "metadata"}`, optionally `event_id`;
//! see `event.rs`). Every event is read before any is handed to the host,
//! so a malformed one refuses the whole request (`400` naming its index and
//! field); then all are accepted or none (see [`Host::admit_all`]).
//!
//! With a token configured, the request must carry `Authorization: Bearer
//! <token>`, checked before the body is read.
//!
//! [`Host::admit_all`]: crate::Host::admit_all

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde_json::json;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Ingest, Refusal};
use crate::event::{quote_non_finite, EventError};
use crate::printable::escape_controls;
use crate::Event;

/// The handler of `POST /events`.
pub(super) async fn post_events(State(ingest): State<Arc<Ingest>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if !authorized(&ingest, &parts.headers) {
        let body = json!({
            "error": "this endpoint needs the bearer token configured as [server] token: \
                      send `Authorization: Bearer <token>`",
        });
        let mut response = ingest.refuse(Refusal::Unauthorized, StatusCode::UNAUTHORIZED, body);
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let bytes = match ingest.read_body(&parts.headers, body).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    match read_events(&bytes) {
        Ok(events) => ingest.admit(events).await,
        Err(malformed) => {
            let body = json!({
                "error": format!("{malformed}; nothing of this request was accepted"),
                "index": malformed.index,
                "field": malformed.field,
            });
            ingest.refuse(Refusal::Malformed, StatusCode::BAD_REQUEST, body)
        }
    }
}

/// Whether the request may post events: always without a configured
/// token, otherwise only with `Authorization: Bearer <that token>`. The
/// tokens are compared as SHA-256 digests, in constant time, so neither
/// the time taken nor an early exit tells how much of a guess was right,
/// nor how long the token is.
fn authorized(ingest: &Ingest, headers: &HeaderMap) -> bool {
    let Some(token) = &ingest.settings.token else {
        return true;
    };
    let Some(given) = headers
        .get(AUTHORIZATION)
        .and_then(|value| bearer(value.as_bytes()))
    else {
        return false;
    };
    let expected = Sha256::digest(token.expose().as_bytes());
    let given = Sha256::digest(given);
    bool::from(expected.as_slice().ct_eq(given.as_slice()))
}

/// The token of an `Authorization: Bearer <token>` value (the scheme in
/// any case).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    if value.len() < SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    Some(value[SCHEME.len()..].trim_ascii())
}

/// Why a body does not hold events.
#[derive(Debug, PartialEq)]
pub struct Malformed {
    /// The position of the first bad event in the request, from 0, when
    /// the fault lies in one event (a single event is event 0).
    pub index: Option<usize>,
    /// The key at fault (`timestamp`, `metadata.row_count`), when one is.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(index) => write!(f, "event {index}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The events of a request body: one JSON object, or an array of them.
/// Python's bare `NaN` and `Infinity` are read as the event reader reads
/// them. Each array element becomes an event as soon as it is parsed, so
/// the JSON tree of the whole body is never held at once.
pub fn read_events(body: &[u8]) -> Result<Vec<Event>, Malformed> {
    let text = std::str::from_utf8(body).map_err(|err| Malformed {
        index: None,
        field: None,
        message: format!(
            "the body is not UTF-8 (invalid byte at offset {})",
            err.valid_up_to()
        ),
    })?;
    let text = quote_non_finite(text);
    if !text.trim_start().starts_with('[') {
        return match Event::from_json(&text) {
            Ok(event) => Ok(vec![event]),
            Err(EventError::Json(err)) => Err(Malformed {
                index: None,
                field: None,
                message: format!("not valid JSON: {err}"),
            }),
            Err(err) => Err(malformed_event(0, &err)),
        };
    }
    let reader = EventsReader {
        parsed: Cell::new(0),
        bad_event: RefCell::new(None),
    };
    let mut deserializer = serde_json::Deserializer::from_str(&text);
    let events = (&reader).deserialize(&mut deserializer).map_err(|err| {
        reader.bad_event.take().unwrap_or_else(|| Malformed {
            // The parser stopped inside element `parsed` (or at the
            // separator before it).
            index: Some(reader.parsed.get()),
            field: None,
            message: format!("not valid JSON: {err}"),
        })
    })?;
    deserializer.end().map_err(|err| Malformed {
        index: None,
        field: None,
        message: format!("not valid JSON after the array: {err}"),
    })?;
    Ok(events)
}

/// Reads a JSON array into events, counting the elements read so that a
/// syntax error can be placed in its event.
struct EventsReader {
    parsed: Cell<usize>,
    bad_event: RefCell<Option<Malformed>>,
}

impl<'de> DeserializeSeed<'de> for &EventsReader {
    type Value = Vec<Event>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<Event>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for &EventsReader {
    type Value = Vec<Event>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event or an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Event>, A::Error> {
        let mut events = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        // Each element's text, checked as JSON by this parse, is read by
        // `Event::from_json`: most in one pass, without a `Value`.
        while let Some(element) = seq.next_element::<&'de RawValue>()? {
            let index = self.parsed.get();
            match Event::from_json(element.get()) {
                Ok(event) => events.push(event),
                Err(err) => {
                    let malformed = malformed_event(index, &err);
                    let message = malformed.to_string();
                    *self.bad_event.borrow_mut() = Some(malformed);
                    return Err(de::Error::custom(message));
                }
            }
            self.parsed.set(index + 1);
        }
        Ok(events)
    }
}

/// Event `index` could not be read.
fn malformed_event(index: usize, err: &EventError) -> Malformed {
    Malformed {
        index: Some(index),
        field: field_of(err),
        message: escape_controls(&err.to_string()).into_owned(),
    }
}

/// The key an event error is about, as a path into the event's JSON.
fn field_of(err: &EventError) -> Option<String> {
    match err {
        EventError::Json(_) | EventError::NotAnObject => None,
        EventError::MissingEventType => Some("event_type".to_owned()),
        EventError::Envelope { key, .. } => Some((*key).to_owned()),
        EventError::Timestamp { .. } => Some("timestamp".to_owned()),
        EventError::Metadata { .. } => Some("metadata".to_owned()),
        EventError::Field { key, .. } => Some(format!("metadata.{key}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_or_an_array_reads_every_event() {
        let one = read_events(br#"{"event_type": "ProfilingStarted"}"#).unwrap();
        assert_eq!(one.len(), 1);
        let many = read_events(
            br#" [{"event_type": "a", "event_id": "x"}, {"event_type": "b", "metadata": {"v": NaN}}] "#,
        )
        .unwrap();
        let ids: Vec<_> = many.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(many[0].id, "x");
        assert!(read_events(b"[]").unwrap().is_empty());
    }

    #[test]
    fn the_first_bad_event_is_named_by_index_and_field() {
        let bad = read_events(
            br#"[{"event_type": "a"}, {"event_type": "ProfilingCompleted", "metadata": {"row_count": "many"}}, {"event_type": 5}]"#,
        )
        .unwrap_err();
        assert_eq!(bad.index, Some(1));
        assert_eq!(bad.field.as_deref(), Some("metadata.row_count"));
        assert!(bad.to_string().starts_with("event 1: "), "{bad}");
        let bad = read_events(br#"[{"event_type": "a"}, {"timestamp": "x"}]"#).unwrap_err();
        assert_eq!(
            (bad.index, bad.field.as_deref()),
            (Some(1), Some("event_type"))
        );
        let bad = read_events(br#"{"event_type": "a", "timestamp": "noon"}"#).unwrap_err();
        assert_eq!(
            (bad.index, bad.field.as_deref()),
            (Some(0), Some("timestamp"))
        );
    }

    #[test]
    fn a_syntax_error_is_placed_in_its_event() {
        let bad = read_events(br#"[{"event_type": "a"}, {"event_type": "b",}]"#).unwrap_err();
        assert_eq!((bad.index, bad.field.as_deref()), (Some(1), None));
        assert!(bad.message.starts_with("not valid JSON"), "{bad}");
        let bad = read_events(b"[{\"event_type\": \"a\"}] trailing").unwrap_err();
        assert_eq!(bad.index, None);
        assert!(
            bad.message.starts_with("not valid JSON after the array"),
            "{bad}"
        );
        let bad = read_events(b"\xff").unwrap_err();
        assert_eq!(bad.index, None);
        assert!(bad.message.contains("not UTF-8"), "{bad}");
        let bad = read_events(b"5").unwrap_err();
        assert_eq!(bad.index, Some(0));
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bEaReR  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer"), None);
    }
}
