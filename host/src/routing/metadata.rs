//! What routing reads of an event, read once for every plugin it is
//! routed to: its type folded for matching, and where each top-level key
//! of its metadata JSON holds its value.
//!
//! The route filters (`tables`, `columns`) and the `dedup_key` templates
//! read a few top-level metadata keys as text. [`MetadataIndex`] finds them
//! in one pass over the text that parses nothing it is not asked for: it
//! checks the whole text is JSON, notes each key and the span of its value,
//! and unescapes only a value that is read and has escapes. What the pass
//! leaves alone (nesting deeper than [`MAX_DEPTH`], `\u` escapes of
//! surrogates, escaped keys, keys beginning with `$`, some of which
//! serde_json reads as tokens of its own) is parsed by serde_json instead,
//! with the same answers: a key written twice has its last value, as in the
//! parsed object.
//!
//! The same scan reads events themselves (`event/one_pass.rs`: the
//! envelope's keys and the metadata's in one pass) and checks the metadata
//! `Event::to_json` writes as it is; `MetadataIndex::read_strict` also
//! leaves to serde_json any text with a number it may refuse to read.

use std::borrow::Cow;

use serde_json::{Map, Value};
use smallvec::SmallVec;

use crate::bindings::Event;
use crate::routing::filter::Fold;

/// Nesting the scan follows; deeper text is left to serde_json (whose own
/// limit is 128).
const MAX_DEPTH: usize = 100;

/// What routing has read of one event so far, kept while the event is
/// routed to every plugin: each part is read the first time a rule asks.
pub struct EventFields<'e> {
    event: &'e Event,
    event_type: Option<SmallVec<[u8; 64]>>,
    metadata: Option<MetadataIndex<'e>>,
    table: Option<Option<SmallVec<[u8; 64]>>>,
    column: Option<Option<SmallVec<[u8; 64]>>>,
}

impl<'e> EventFields<'e> {
    /// Nothing of `event` read yet.
    pub fn new(event: &'e Event) -> EventFields<'e> {
        EventFields {
            event,
            event_type: None,
            metadata: None,
            table: None,
            column: None,
        }
    }

    /// The event.
    pub fn event(&self) -> &'e Event {
        self.event
    }

    /// The event type folded as `events` patterns are (see [`Fold`]).
    pub(crate) fn folded_event_type(&mut self) -> &[u8] {
        let event = self.event;
        self.event_type
            .get_or_insert_with(|| Fold::EventType.apply(&event.event_type))
    }

    /// The event's metadata, indexed.
    pub(crate) fn metadata(&mut self) -> &MetadataIndex<'e> {
        let event = self.event;
        self.metadata
            .get_or_insert_with(|| MetadataIndex::read(&event.metadata))
    }

    /// `metadata.<key>` if it is a string: its last value, if the key is
    /// written twice, as in the parsed object.
    pub fn metadata_text(&mut self, key: &str) -> Option<Cow<'_, str>> {
        self.metadata().get(key).into_text()
    }

    /// `metadata.table` folded as `tables` patterns are, if it is a string.
    pub(crate) fn folded_table(&mut self) -> Option<&[u8]> {
        if self.table.is_none() {
            self.table = Some(self.folded_name("table"));
        }
        self.table.as_ref().and_then(|name| name.as_deref())
    }

    /// `metadata.column` folded as `columns` patterns are, if it is a
    /// string.
    pub(crate) fn folded_column(&mut self) -> Option<&[u8]> {
        if self.column.is_none() {
            self.column = Some(self.folded_name("column"));
        }
        self.column.as_ref().and_then(|name| name.as_deref())
    }

    fn folded_name(&mut self, key: &str) -> Option<SmallVec<[u8; 64]>> {
        let name = self.metadata().get(key).into_text()?;
        Some(Fold::Name.apply(&name))
    }
}

/// What the metadata holds under one key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Found<'a> {
    Missing,
    /// A string, borrowed when it has no escapes.
    Text(Cow<'a, str>),
    /// Any other value.
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

/// The top-level keys of a metadata JSON text and their values.
// The scanned entries are kept inline: no allocation per event for up to
// eight keys.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum MetadataIndex<'a> {
    /// Found by the scan: each key with its value's text.
    Scanned(Entries<'a>),
    /// Parsed by serde_json, for text the scan leaves alone.
    Parsed(Map<String, Value>),
    /// Not a JSON object: no key is there.
    NotAnObject,
}

impl<'a> MetadataIndex<'a> {
    /// Indexes `json`.
    pub(crate) fn read(json: &'a str) -> MetadataIndex<'a> {
        if let Some(entries) = Scan::new(json).object_entries() {
            return MetadataIndex::Scanned(entries);
        }
        match serde_json::from_str(json) {
            Ok(Value::Object(map)) => MetadataIndex::Parsed(map),
            _ => MetadataIndex::NotAnObject,
        }
    }

    /// Indexes `json` if the scan reads all of it and every number in it
    /// is one serde_json reads too (no exponent, under 309 integer
    /// digits): then what it holds is what serde_json would parse.
    pub(crate) fn read_strict(json: &'a str) -> Option<MetadataIndex<'a>> {
        let mut scan = Scan::new(json);
        let (entries, _) = scan.entries(None)?;
        (!scan.large_number).then_some(MetadataIndex::Scanned(entries))
    }

    /// [`MetadataIndex::read_strict`], and the index of the object under
    /// key `nested` (its last value) when it holds one, in the same pass.
    pub(crate) fn read_strict_nested(
        json: &'a str,
        nested: &str,
    ) -> Option<(MetadataIndex<'a>, Option<MetadataIndex<'a>>)> {
        let mut scan = Scan::new(json);
        let (entries, inner) = scan.entries(Some(nested))?;
        (!scan.large_number).then(|| {
            (
                MetadataIndex::Scanned(entries),
                inner.map(MetadataIndex::Scanned),
            )
        })
    }

    /// An object with no keys.
    pub(crate) fn empty() -> MetadataIndex<'a> {
        MetadataIndex::Scanned(SmallVec::new())
    }

    /// The text of the value under `key` (its last one, if written twice),
    /// as written; `None` when the key is missing or the text was not
    /// scanned (see [`MetadataIndex::read`]).
    pub(crate) fn raw(&self, key: &str) -> Option<&'a str> {
        self.entry(key).map(|entry| entry.raw)
    }

    /// The scanned entry under `key` (its last one, if written twice):
    /// `None` when the key is missing or the text was not scanned.
    pub(crate) fn entry(&self, key: &str) -> Option<&Entry<'a>> {
        match self {
            MetadataIndex::Scanned(entries) => entries.iter().rev().find(|entry| entry.key == key),
            MetadataIndex::Parsed(_) | MetadataIndex::NotAnObject => None,
        }
    }

    /// The value under `key` (its last one, if written twice).
    pub(crate) fn get(&self, key: &str) -> Found<'_> {
        match self {
            MetadataIndex::Scanned(_) => self.entry(key).map_or(Found::Missing, Entry::value),
            MetadataIndex::Parsed(map) => match map.get(key) {
                Some(Value::String(text)) => Found::Text(Cow::Borrowed(text)),
                Some(_) => Found::Other,
                None => Found::Missing,
            },
            MetadataIndex::NotAnObject => Found::Missing,
        }
    }
}

/// The top-level keys the scan found.
type Entries<'a> = SmallVec<[Entry<'a>; 8]>;

/// A top-level key the scan found.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    /// The key, which had no escapes.
    key: &'a str,
    /// Its value's text.
    raw: &'a str,
    /// Whether the value is a string with escapes.
    escaped: bool,
}

impl<'a> Entry<'a> {
    /// Its value's text, as written.
    pub(crate) fn raw(&self) -> &'a str {
        self.raw
    }

    /// Its value: a string unescaped only if it has escapes.
    pub(crate) fn value(&self) -> Found<'_> {
        if !self.raw.starts_with('"') {
            Found::Other
        } else if !self.escaped {
            Found::Text(Cow::Borrowed(&self.raw[1..self.raw.len() - 1]))
        } else {
            // The scan checked every escape, so this parses.
            serde_json::from_str::<String>(self.raw)
                .map_or(Found::Other, |text| Found::Text(Cow::Owned(text)))
        }
    }
}

/// Whether one of the eight bytes of `word` is in [`STOPS_A_STRING`]: a
/// byte below 0x20, a quote or a backslash (the classic "has a byte less
/// than" and "has a zero byte" tests, exact as to whether there is one).
fn stops_a_string_within(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    below_space | quote | backslash != 0
}

/// The bytes a string's text cannot simply go on with: its closing quote,
/// a backslash, and the control characters JSON wants escaped.
const STOPS_A_STRING: [bool; 256] = {
    let mut stops = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        stops[byte] = true;
        byte += 1;
    }
    stops[b'"' as usize] = true;
    stops[b'\\' as usize] = true;
    stops
};

/// A pass over JSON text; each step answers `None` where the text is not
/// JSON or holds what the scan leaves to serde_json.
struct Scan<'a> {
    text: &'a str,
    at: usize,
    /// Whether a number passed has an exponent or 309 integer digits and
    /// more: serde_json refuses to read one past an `f64`'s range, which
    /// the scan, checking the grammar only, does not tell.
    large_number: bool,
}

/// Integer digits from which a number may be past an `f64`'s range.
const LARGE_INTEGER_DIGITS: usize = 309;

impl<'a> Scan<'a> {
    fn new(text: &'a str) -> Scan<'a> {
        Scan {
            text,
            at: 0,
            large_number: false,
        }
    }

    /// The entries of the object that is the whole text.
    fn object_entries(mut self) -> Option<Entries<'a>> {
        self.entries(None).map(|(entries, _)| entries)
    }

    /// The entries of the object that is the whole text, and those of the
    /// object its key `nested` holds (its last value, if written twice),
    /// when it holds one: both in one pass.
    fn entries(&mut self, nested: Option<&str>) -> Option<(Entries<'a>, Option<Entries<'a>>)> {
        self.skip_whitespace();
        let found = self.object(nested, 1)?;
        self.skip_whitespace();
        (self.at == self.text.len()).then_some(found)
    }

    /// The object that starts here, its values nested `depth` deep: its
    /// entries, and those of the object under its key `nested`, if any.
    fn object(
        &mut self,
        nested: Option<&str>,
        depth: usize,
    ) -> Option<(Entries<'a>, Option<Entries<'a>>)> {
        let mut entries = SmallVec::new();
        let mut inner = None;
        self.expect(b'{')?;
        self.skip_whitespace();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some((entries, inner));
        }
        loop {
            self.skip_whitespace();
            let key_start = self.at;
            if self.key()? {
                // A key with escapes: rare enough to leave to serde_json.
                return None;
            }
            let key = &self.text[key_start + 1..self.at - 1];
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            let value_start = self.at;
            let escaped = match self.peek()? {
                b'"' => self.string()?,
                b'{' if nested == Some(key) && depth < MAX_DEPTH => {
                    inner = Some(self.object(None, depth + 1)?.0);
                    false
                }
                _ => {
                    if nested == Some(key) {
                        inner = None;
                    }
                    self.value(depth)?;
                    false
                }
            };
            entries.push(Entry {
                key,
                raw: &self.text[value_start..self.at],
                escaped,
            });
            self.skip_whitespace();
            if !self.list_goes_on(b'}')? {
                return Some((entries, inner));
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
    }

    /// After a list's item and the whitespace after it: `true` past a
    /// comma, `false` past the `close`ing bracket.
    fn list_goes_on(&mut self, close: u8) -> Option<bool> {
        match self.next()? {
            b',' => Some(true),
            byte if byte == close => Some(false),
            _ => None,
        }
    }

    /// One value, nested `depth` deep.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' if depth >= MAX_DEPTH => None,
            b'{' => {
                self.at += 1;
                self.skip_whitespace();
                if self.peek()? == b'}' {
                    self.at += 1;
                    return Some(());
                }
                loop {
                    self.skip_whitespace();
                    self.key()?;
                    self.skip_whitespace();
                    self.expect(b':')?;
                    self.skip_whitespace();
                    self.value(depth + 1)?;
                    self.skip_whitespace();
                    if !self.list_goes_on(b'}')? {
                        return Some(());
                    }
                }
            }
            b'[' => {
                self.at += 1;
                self.skip_whitespace();
                if self.peek()? == b']' {
                    self.at += 1;
                    return Some(());
                }
                loop {
                    self.skip_whitespace();
                    self.value(depth + 1)?;
                    self.skip_whitespace();
                    if !self.list_goes_on(b']')? {
                        return Some(());
                    }
                }
            }
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        self.text[self.at..]
            .starts_with(word)
            .then(|| self.at += word.len())
    }

    /// A number as JSON writes it: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let start = self.at;
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        self.large_number |= self.at - start >= LARGE_INTEGER_DIGITS;
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.one_or_more_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.large_number = true;
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.one_or_more_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn one_or_more_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }

    /// An object's key, as [`string`](Self::string). A key that begins
    /// with `$` is left to serde_json: it reads some (`$serde_json::private::…`,
    /// which dependencies' features switch on) as its own tokens, not as
    /// keys.
    fn key(&mut self) -> Option<bool> {
        if self.text.as_bytes().get(self.at + 1) == Some(&b'$') {
            return None;
        }
        self.string()
    }

    /// A string, quotes included; whether it has escapes.
    fn string(&mut self) -> Option<bool> {
        self.expect(b'"')?;
        let bytes = self.text.as_bytes();
        let mut escaped = false;
        loop {
            // Eight bytes at a time while none of them stops the string.
            while let Some(word) = bytes.get(self.at..self.at + 8) {
                let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
                if stops_a_string_within(word) {
                    break;
                }
                self.at += 8;
            }
            while bytes
                .get(self.at)
                .is_some_and(|&byte| !STOPS_A_STRING[byte as usize])
            {
                self.at += 1;
            }
            match self.next()? {
                b'"' => return Some(escaped),
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                _ => return None,
            }
        }
    }

    /// What follows a backslash. A `\u` escape of a surrogate is left to
    /// serde_json, which pairs them.
    fn escape(&mut self) -> Option<()> {
        match self.next()? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(()),
            b'u' => {
                let hex = self.text.get(self.at..self.at + 4)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                let unit = u16::from_str_radix(hex, 16).ok()?;
                if (0xD800..=0xDFFF).contains(&unit) {
                    return None;
                }
                self.at += 4;
                Some(())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the scan finds under `key`, or `None` if it left `json` to
    /// serde_json.
    fn scanned(json: &str, key: &str) -> Option<Found<'static>> {
        let entries = Scan::new(json).object_entries()?;
        let index = MetadataIndex::Scanned(entries);
        let found = match index.get(key) {
            Found::Text(text) => Found::Text(Cow::Owned(text.into_owned())),
            Found::Missing => Found::Missing,
            Found::Other => Found::Other,
        };
        Some(found)
    }

    #[test]
    fn strict_reading_leaves_numbers_serde_json_may_refuse() {
        let digits = |n: usize| format!(r#"{{"a": {}}}"#, "9".repeat(n));
        for json in [
            r#"{"a": 1e400}"#.to_owned(),
            r#"{"a": [{"b": -2.5E+9}]}"#.to_owned(),
            digits(309),
        ] {
            assert!(MetadataIndex::read_strict(&json).is_none(), "{json}");
            assert!(serde_json::from_str::<Value>(&json).is_err() || json.contains(['e', 'E']));
        }
        for json in [r#"{"a": 1.5, "e": "1e400"}"#.to_owned(), digits(308)] {
            assert!(MetadataIndex::read_strict(&json).is_some(), "{json}");
            assert!(serde_json::from_str::<Value>(&json).is_ok());
        }
    }

    #[test]
    fn strings_stop_at_quotes_escapes_and_controls_at_any_offset() {
        for at in 0..20 {
            let pad = "x".repeat(at);
            assert_eq!(
                scanned(&format!(r#"{{"k": "{pad}\"q"}}"#), "k"),
                Some(Found::Text(Cow::Owned(format!("{pad}\"q"))))
            );
            assert_eq!(scanned(&format!("{{\"k\": \"{pad}\u{1}\"}}"), "k"), None);
            assert_eq!(
                scanned(&format!(r#"{{"k": "{pad}", "m": 1}}"#), "m"),
                Some(Found::Other)
            );
        }
    }

    /// What the object serde_json parses from `json` holds under `key`.
    fn parsed(json: &str, key: &str) -> Option<Found<'static>> {
        match serde_json::from_str::<Value>(json).ok()? {
            Value::Object(map) => Some(match map.get(key) {
                Some(Value::String(text)) => Found::Text(Cow::Owned(text.clone())),
                Some(_) => Found::Other,
                None => Found::Missing,
            }),
            _ => None,
        }
    }

    #[test]
    fn it_finds_what_the_parsed_object_holds() {
        for json in [
            r#"{"table":"orders","run_id":"run-1","seq":7,"column":"c7","metric":"mean"}"#,
            r#"{ "table" : "a\"quoted\" \u00e9 name" , "column": "" , "extra": [1, {"x": [2, {}]}, []] }"#,
            r#"{"metric": "p99", "table": "first", "table": "last"}"#,
            r#"{"table": -0.5e+10, "column": true, "metric": false, "n": 0, "m": 12.25E-3}"#,
            "{}",
            " \t\r\n{\n\"table\"\n:\n\"spaced\"\n}\n ",
            r#"{"table": "ünïcødé ✓", "column": "\/\b\f\n\r\t\\"}"#,
        ] {
            for key in ["table", "column", "metric", "missing"] {
                assert_eq!(scanned(json, key), parsed(json, key), "{key} in {json}");
            }
        }
    }

    #[test]
    fn text_that_is_not_a_json_object_is_refused() {
        for json in [
            "",
            "[]",
            "\"table\"",
            "{",
            r#"{"table": "orders""#,
            r#"{"table": "orders",}"#,
            r#"{"table" "orders"}"#,
            r#"{"table": tru}"#,
            r#"{"table": nulll}"#,
            r#"{"table": 01}"#,
            r#"{"table": 1.}"#,
            r#"{"table": 1e}"#,
            r#"{"table": -}"#,
            r#"{"table": +1}"#,
            r#"{"table": [1,]}"#,
            r#"{"table": {"a" 1}}"#,
            r#"{"table": "bad \x escape"}"#,
            r#"{"table": "\u12G4"}"#,
            "{\"table\": \"raw\ttab\"}",
            r#"{"table": "x"} trailing"#,
            r#"{"table": "x"}}"#,
            r#"{table: "x"}"#,
        ] {
            assert!(Scan::new(json).object_entries().is_none(), "{json}");
            assert!(
                parsed(json, "table").is_none(),
                "serde_json refuses it too: {json}"
            );
        }
    }

    #[test]
    fn what_the_scan_leaves_is_read_by_serde_json() {
        let deep = format!(
            r#"{{"table": "t", "x": {}{}}}"#,
            "[".repeat(110),
            "]".repeat(110)
        );
        for json in [
            r#"{"table": "\ud83d\ude00 grin"}"#.to_owned(),
            r#"{"\ud83d\ude00": 1, "table": "t"}"#.to_owned(),
            r#"{"t\u0061ble": "escaped key", "column": null}"#.to_owned(),
            r##"{"$ref": "#/a", "table": "t"}"##.to_owned(),
            // serde_json's own tokens (what they read as depends on its
            // features): whatever its parse holds, the index holds.
            r#"{"$serde_json::private::RawValue": 7, "table": "t"}"#.to_owned(),
            r#"{"table": "t", "x": {"$serde_json::private::RawValue": "1"}}"#.to_owned(),
            deep,
        ] {
            assert!(Scan::new(&json).object_entries().is_none(), "{json}");
            let index = MetadataIndex::read(&json);
            assert!(!matches!(index, MetadataIndex::Scanned(_)), "{json}");
            let expected = parsed(&json, "table").and_then(Found::into_text);
            assert_eq!(index.get("table").into_text(), expected, "{json}");
        }
        assert!(matches!(
            MetadataIndex::read("[1]"),
            MetadataIndex::NotAnObject
        ));
        assert!(matches!(
            MetadataIndex::read("{"),
            MetadataIndex::NotAnObject
        ));
        assert_eq!(MetadataIndex::read("not json").get("table"), Found::Missing);
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let json = r#"{"table": "orders", "column": "a\"b"}"#;
        let index = MetadataIndex::read(json);
        assert!(matches!(
            index.get("table"),
            Found::Text(Cow::Borrowed("orders"))
        ));
        assert_eq!(index.get("column"), Found::Text(Cow::Owned("a\"b".into())));
    }
}
