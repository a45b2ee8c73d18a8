//! Reading the usual event without building a `serde_json::Value`.
//!
//! What profilers send is almost always the same shape: a string
//! `event_type`, an RFC 3339 or Python `isoformat()` timestamp string and a
//! metadata object. For that shape the event is read by the scan routing
//! uses for metadata ([`MetadataIndex`]), which checks the text is JSON
//! and notes where each top-level key's value lies, and those of the
//! metadata object's, in one pass that parses nothing. The metadata is kept as the text the
//! emitter sent, and its typed fields are converted from their own slices
//! of it. Anything else (a missing or unusual field, an escaped key, a
//! value of the wrong type, a number with an exponent or 309 digits, which
//! may be too large to read, any error) is left
//! to the general reader in `event.rs`, which also words every error, so
//! both give the same event and the same errors: the `event_json` fuzz
//! target checks that on every input.

use std::borrow::Cow;

use super::kinds::{self, Source};
use super::{new_id, now, severity_of, EventError};
use crate::bindings::Event;
use crate::routing::metadata::{Found, MetadataIndex};

/// The event `text` holds (non-finite numbers already quoted), if it has
/// the usual shape and is valid; `None` leaves it to the general reader.
pub(super) fn read(text: &str) -> Option<Event> {
    let (envelope, nested) = MetadataIndex::read_strict_nested(text, "metadata")?;
    let event_type = match envelope.get("event_type") {
        Found::Text(name) if !name.is_empty() => name.into_owned(),
        _ => return None,
    };
    let id = match given_id(&envelope)? {
        Some(id) => id.into_owned(),
        None => new_id(),
    };
    let timestamp = match envelope.entry("timestamp") {
        None => now(),
        Some(given) if given.raw() == "null" => now(),
        Some(given) => strict_timestamp(&given.value().into_text()?)?,
    };
    let (metadata_text, metadata) = match envelope.raw("metadata") {
        None | Some("null") => ("{}", MetadataIndex::empty()),
        Some(raw) if raw.starts_with('{') => (raw, nested?),
        // Not an object: the general reader says so.
        Some(_) => return None,
    };
    let kind = kinds::read_from(&event_type, Source::Index(&metadata)).ok()?;
    let severity = severity_of(Source::Index(&metadata));
    Some(Event {
        id,
        event_type,
        timestamp,
        severity,
        metadata: metadata_text.to_owned(),
        kind,
    })
}

/// The id the emitter gave (`event_id`, else `id`; `None` for none or an
/// empty one), or `None` around it all when the first that is not null is
/// not a string (an error, for the general reader to word).
fn given_id<'i>(envelope: &'i MetadataIndex<'_>) -> Option<Option<Cow<'i, str>>> {
    for key in ["event_id", "id"] {
        match envelope.entry(key) {
            None => continue,
            Some(given) if given.raw() == "null" => continue,
            Some(given) => {
                let id = given.value().into_text()?;
                return Some((!id.is_empty()).then_some(id));
            }
        }
    }
    Some(None)
}

/// `text` as the RFC 3339 timestamp hooks get, if it has one of the two
/// shapes profilers write and is a real date and time: RFC 3339
/// (`2025-01-15T10:30:00.123+00:00`, `...Z`, a space for the `T`), or
/// Python's naive `isoformat()`, read as UTC. Any other shape gives
/// `None`, for the general reader to try.
fn strict_timestamp(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    if bytes.len() < 19 {
        return None;
    }
    let digits = |from: usize, len: usize| -> Option<u32> {
        bytes[from..from + len].iter().try_fold(0u32, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    let separators = [bytes[4], bytes[7], bytes[13], bytes[16]] == [b'-', b'-', b':', b':'];
    let valid = separators
        && matches!(bytes[10], b'T' | b' ')
        && year >= 1
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    if !valid {
        return None;
    }
    // A fraction of 1 to 9 digits, then nothing, `Z` or `+HH:MM`/`-HH:MM`.
    let mut rest = &bytes[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let count = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if !(1..=9).contains(&count) {
            return None;
        }
        rest = &fraction[count..];
    }
    let with_offset = match rest {
        [] => false,
        [b'Z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let hours = [h1, h2].iter().all(|b| b.is_ascii_digit())
                && (*h1 - b'0') * 10 + (*h2 - b'0') < 24;
            let minutes = [m1, m2].iter().all(|b| b.is_ascii_digit())
                && (*m1 - b'0') * 10 + (*m2 - b'0') < 60;
            if !(hours && minutes) {
                return None;
            }
            true
        }
        _ => return None,
    };
    let mut out = String::with_capacity(text.len() + 1);
    out.push_str(&text[..10]);
    out.push('T');
    out.push_str(&text[11..]);
    if !with_offset {
        out.push('Z');
    }
    Some(out)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Checks that where the one-pass reader takes `text`, the general reader
/// reads the same event from it: whether it took it, or the difference.
/// For the `event_json` fuzz target and the tests.
#[doc(hidden)]
pub fn same_as_general(text: &str) -> Result<bool, String> {
    let text = super::quote_non_finite(text);
    let Some(fast) = read(&text) else {
        return Ok(false);
    };
    let general = serde_json::from_str(&text)
        .map_err(EventError::Json)
        .and_then(Event::from_json_value)
        .map_err(|err| format!("one pass read an event the general reader refuses: {err}"))?;
    // An id or a timestamp the emitter left out is made up, differently
    // by each read: a new UUID, the current time.
    let made_up_id = |id: &str| id.len() == 36 && !text.contains(id);
    let made_up_time = |time: &str| {
        chrono::DateTime::parse_from_rfc3339(time)
            .is_ok_and(|time| (chrono::Utc::now() - time.to_utc()).num_seconds().abs() < 60)
    };
    let metadata = |text: &str| serde_json::from_str::<serde_json::Value>(text).ok();
    let same = (fast.id == general.id || (made_up_id(&fast.id) && made_up_id(&general.id)))
        && (fast.timestamp == general.timestamp
            || (made_up_time(&fast.timestamp) && made_up_time(&general.timestamp)))
        && fast.event_type == general.event_type
        && fast.severity == general.severity
        // Compared as printed, where NaN equals NaN.
        && format!("{:?}", fast.kind) == format!("{:?}", general.kind)
        && metadata(&fast.metadata).is_some()
        && metadata(&fast.metadata) == metadata(&general.metadata);
    if same {
        Ok(true)
    } else {
        Err(format!(
            "one pass read {fast:?}, the general reader {general:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_timestamps_are_the_general_readers() {
        for text in [
            "2025-01-15T10:30:00Z",
            "2025-01-15T10:30:00.123456",
            "2025-01-15 10:30:00.5+01:00",
            "2024-02-29T23:59:59-05:30",
            "0001-01-01T00:00:00.123456789Z",
        ] {
            assert_eq!(
                strict_timestamp(text),
                super::super::timestamp_from_text(text),
                "{text}"
            );
        }
        for text in [
            "2025-02-29T10:30:00",
            "2025-13-01T10:30:00",
            "2025-01-15T24:00:00",
            "2025-01-15T10:30:60Z",
            "2025-01-15T10:30:00.Z",
            "2025-01-15T10:30:00.1234567890",
            "2025-01-15T10:30:00+24:00",
            "2025-01-15T10:30:00+0100",
            "2025-01-15t10:30:00",
            "0000-01-01T00:00:00",
            "2025-01-15T10:30",
            "２025-01-15T10:30:00",
        ] {
            assert_eq!(strict_timestamp(text), None, "{text}");
        }
    }
}
