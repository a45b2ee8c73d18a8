//! Fuzz target: routing's one-pass metadata reader on any text. What it
//! reads under a key must be what the object serde_json parses from the
//! same text holds there (a string, or nothing), and it must never panic.
#![no_main]

use hookhost::routing::EventFields;
use hookhost::Event;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Some(map),
        // The reader skips numbers it is not asked for without computing
        // them, as serde_json itself does when it skips a value.
        Err(err) if err.to_string().contains("number out of range") => return,
        _ => None,
    };
    let mut event = Event::from_json(r#"{"event_type": "Fuzzed"}"#).expect("a valid event");
    event.metadata = text.to_owned();
    let mut fields = EventFields::new(&event);
    // The keys the routing rules read, and every key the object has.
    let mut keys = vec!["table".to_owned(), "column".to_owned()];
    keys.extend(parsed.iter().flat_map(|map| map.keys().cloned()));
    for key in keys {
        let expected = parsed
            .as_ref()
            .and_then(|map| map.get(&key))
            .and_then(Value::as_str);
        let read = fields.metadata_text(&key);
        assert_eq!(read.as_deref(), expected, "metadata.{key} of {text:?}");
    }
});
