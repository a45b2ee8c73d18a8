//! The fast form of a `dedup_key` template that is only text and fields
//! (`"{{ event_type }}:{{ metadata.table }}"`, the usual kind): rendered by
//! reading just the metadata keys it names, as text, from the event's
//! [`MetadataIndex`] (which the route filters share), instead of building
//! minijinja's context from the whole object for every event.
//!
//! It renders exactly what minijinja renders or nothing: a template with
//! anything else (filters, tags, comments, whitespace control, nested
//! metadata keys, names minijinja would leave undefined), or an event whose
//! named metadata value is not a string, is left to minijinja
//! (`DedupRule::key`).

use std::fmt::Write as _;

#[cfg(test)]
use crate::bindings::Event;
use crate::routing::metadata::{EventFields, Found};

/// One piece of a template.
#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    EventId,
    EventType,
    Timestamp,
    Severity,
    /// A top-level metadata key.
    Metadata(String),
}

/// A template of text and fields.
#[derive(Debug, PartialEq)]
pub(crate) struct KeyTemplate {
    pieces: Vec<Piece>,
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
                    Piece::Metadata(key.to_owned())
                }
            });
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(text(rest)?);
        }
        Some(KeyTemplate { pieces })
    }

    /// Writes the key of `event` to `key` (emptied first); `None` when
    /// minijinja must render it (a named metadata value that is not a
    /// string, or metadata that is not an object).
    pub(crate) fn render_into(&self, fields: &mut EventFields<'_>, key: &mut String) -> Option<()> {
        key.clear();
        let event = fields.event();
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
                Piece::Metadata(name) => match fields.metadata().get(name) {
                    Found::Missing => {}
                    Found::Text(text) => key.push_str(&text),
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
        self.render_into(&mut EventFields::new(event), &mut key)
            .map(|()| key)
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
