//! The fast form of a `dedup_key` template that is only text and fields
//! (`"{{ event_type }}:{{ metadata.table }}"`, the usual kind): rendered by
//! reading just the metadata keys it names, as text, in one pass over the
//! metadata JSON, instead of building minijinja's context from the whole
//! object for every event of every plugin.
//!
//! It renders exactly what minijinja renders or nothing: a template with
//! anything else (filters, tags, comments, whitespace control, nested
//! metadata keys, names minijinja would leave undefined), or an event whose
//! named metadata value is not a string, is left to minijinja
//! (`DedupRule::key`).

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use smallvec::SmallVec;

use crate::bindings::Event;

/// One piece of a template.
#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    EventId,
    EventType,
    Timestamp,
    Severity,
    /// The `n`th of the template's metadata keys.
    Metadata(usize),
}

/// A template of text and fields.
#[derive(Debug, PartialEq)]
pub(crate) struct KeyTemplate {
    pieces: Vec<Piece>,
    /// The top-level metadata keys it reads, each once.
    keys: Vec<String>,
}

impl KeyTemplate {
    /// The fast form of `template`, if it has one.
    pub(crate) fn parse(template: &str) -> Option<KeyTemplate> {
        // minijinja drops one trailing newline; the rest of the text it
        // copies as it is.
        if template.ends_with('\n') || template.contains("{%") || template.contains("{#") {
            return None;
        }
        let mut pieces = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(text(&rest[..start])?);
            }
            let after = &rest[start + 2..];
            let end = after.find("}}")?;
            let expression = &after[..end];
            if expression.starts_with('-') || expression.ends_with('-') {
                return None;
            }
            pieces.push(match expression.trim() {
                "event_id" => Piece::EventId,
                "event_type" => Piece::EventType,
                "timestamp" => Piece::Timestamp,
                "severity" => Piece::Severity,
                path => {
                    let key = path.strip_prefix("metadata.")?;
                    if !is_identifier(key) {
                        return None;
                    }
                    let n = match keys.iter().position(|k| k == key) {
                        Some(n) => n,
                        None => {
                            keys.push(key.to_owned());
                            keys.len() - 1
                        }
                    };
                    Piece::Metadata(n)
                }
            });
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(text(rest)?);
        }
        Some(KeyTemplate { pieces, keys })
    }

    /// Writes the key of `event` to `key` (emptied first); `None` when
    /// minijinja must render it (a named metadata value that is not a
    /// string, or metadata that is not an object).
    pub(crate) fn render_into(&self, event: &Event, key: &mut String) -> Option<()> {
        key.clear();
        let values = if self.keys.is_empty() {
            SmallVec::new()
        } else {
            let mut json = serde_json::Deserializer::from_str(&event.metadata);
            Named(&self.keys).deserialize(&mut json).ok()?
        };
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => key.push_str(text),
                Piece::EventId => key.push_str(&event.id),
                Piece::EventType => key.push_str(&event.event_type),
                Piece::Timestamp => key.push_str(&event.timestamp),
                Piece::Severity => {
                    if let Some(severity) = event.severity {
                        let _ = write!(key, "{severity}");
                    }
                }
                Piece::Metadata(n) => match values.get(*n)? {
                    Found::Missing => {}
                    Found::Text(text) => key.push_str(text),
                    Found::Other => return None,
                },
            }
        }
        Some(())
    }

    /// The key of `event` as a new string (see [`render_into`](Self::render_into)).
    #[cfg(test)]
    fn render(&self, event: &Event) -> Option<String> {
        let mut key = String::new();
        self.render_into(event, &mut key).map(|()| key)
    }
}

/// Text copied as it is, unless it holds a stray `}}`, which is left to
/// minijinja to judge.
fn text(text: &str) -> Option<Piece> {
    (!text.contains("}}")).then(|| Piece::Text(text.to_owned()))
}

/// A name minijinja reads as one attribute: a letter or `_`, then letters,
/// digits and `_`.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What the metadata holds under one key the template reads (the route
/// filter reads `table` and `column` the same way).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Found<'a> {
    Missing,
    /// A string, borrowed when it has no escapes.
    Text(Cow<'a, str>),
    /// Anything else: minijinja's rendering of it is left to minijinja.
    Other,
}

impl<'a> Found<'a> {
    /// The string, if it is one.
    pub(crate) fn into_text(self) -> Option<Cow<'a, str>> {
        match self {
            Found::Text(text) => Some(text),
            Found::Missing | Found::Other => None,
        }
    }
}

/// Reads the metadata object's values under `keys` (last one wins, as
/// when the object is parsed whole), skipping the rest.
struct Named<'k>(&'k [String]);

/// The values a template reads: a handful, kept on the stack.
type Values<'a> = SmallVec<[Found<'a>; 4]>;

impl<'de> DeserializeSeed<'de> for Named<'_> {
    type Value = Values<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Named<'_> {
    type Value = Values<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found: Values<'de> = smallvec::smallvec![Found::Missing; self.0.len()];
        while let Some(wanted) = map.next_key_seed(KeyIndex(self.0))? {
            match wanted {
                Some(n) => found[n] = map.next_value::<Value>()?.0,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// Reads an object's key as its place among the keys wanted (`None`: not
/// wanted), comparing it where it lies in the text.
struct KeyIndex<'k>(&'k [String]);

impl<'de> DeserializeSeed<'de> for KeyIndex<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIndex<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|wanted| wanted == key))
    }
}

/// Any JSON value, read as [`Found`].
struct Value<'a>(Found<'a>);

impl<'de> de::Deserialize<'de> for Value<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor).map(Value)
    }
}

/// Reads any JSON value as [`Found`]: a string borrowed where it can be,
/// anything else skipped unread.
pub(crate) struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Found<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Found::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Found::Text(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Found::Text(Cow::Owned(v)))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Found::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Found::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Found::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Found::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Found::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Found::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Found::Other)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::routing::DedupRule;

    fn event(metadata: &str) -> Event {
        Event::from_json(&format!(
            r#"{{"event_id": "e-1", "event_type": "DataDriftDetected",
                "timestamp": "2025-01-15T10:30:00Z", "metadata": {metadata}}}"#
        ))
        .unwrap()
    }

    /// What minijinja renders for `template` and `event`.
    fn minijinja(template: &str, event: &Event) -> String {
        let rule = DedupRule::new(template, Duration::ZERO, false).unwrap();
        rule.render(event).unwrap()
    }

    const TEMPLATES: [&str; 5] = [
        "{{ event_type }}:{{ metadata.table }}:{{ metadata.column }}:{{ metadata.metric }}",
        "{{event_id}}|{{ timestamp }}|{{ severity }}|{{ metadata.table }}{{ metadata.table }}",
        "plain text",
        "{{ metadata.missing }}-{{ metadata.table }}-",
        "ünï {{ metadata.column }} cødé",
    ];

    #[test]
    fn it_renders_what_minijinja_renders() {
        let events = [
            event(
                r#"{"table": "orders", "column": "amount", "metric": "mean", "drift_severity": "high"}"#,
            ),
            event(r#"{"table": "a\"quoted\" \u00e9 name", "column": "", "extra": [1, {"x": 2}]}"#),
            event(r#"{"metric": "p99", "table": "first", "table": "last"}"#),
            event("{}"),
        ];
        for template in TEMPLATES {
            let fast = KeyTemplate::parse(template).unwrap_or_else(|| panic!("{template}"));
            for event in &events {
                assert_eq!(
                    fast.render(event).unwrap(),
                    minijinja(template, event),
                    "{template}"
                );
            }
        }
    }

    #[test]
    fn values_that_are_not_strings_are_left_to_minijinja() {
        let fast = KeyTemplate::parse("{{ metadata.table }}:{{ metadata.n }}").unwrap();
        for metadata in [
            r#"{"n": 3}"#,
            r#"{"n": 1.5}"#,
            r#"{"n": null}"#,
            r#"{"n": true}"#,
            r#"{"n": [1]}"#,
            r#"{"n": {}}"#,
        ] {
            let event = event(metadata);
            assert_eq!(fast.render(&event), None, "{metadata}");
            // The rule falls back to minijinja, which renders them its way.
            let rule = DedupRule::new(
                "{{ metadata.table }}:{{ metadata.n }}",
                Duration::ZERO,
                false,
            )
            .unwrap();
            assert_eq!(
                rule.key(&event).unwrap(),
                crate::routing::dedup::DedupKey::of(&minijinja(
                    "{{ metadata.table }}:{{ metadata.n }}",
                    &event
                ))
            );
        }
    }

    #[test]
    fn templates_with_more_than_fields_have_no_fast_form() {
        for template in [
            "{{ metadata.table | upper }}",
            "{% if severity %}x{% endif %}",
            "{# note #}{{ event_type }}",
            "{{- event_type }}",
            "{{ metadata.a.b }}",
            "{{ metadata }}",
            "{{ other }}",
            "{{ event_type }}\n",
            "{{ event_type",
            "{{ metadata['table'] }}",
        ] {
            assert_eq!(KeyTemplate::parse(template), None, "{template}");
        }
    }
}
