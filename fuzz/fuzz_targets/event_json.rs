//! Fuzz target: `Event::from_json` on any bytes. It must return an event or
//! an error, never panic; an event it returns must survive the round trip
//! through its own JSON form, written as text the same as its JSON value;
//! and where its one-pass reader takes the text, the general reader must
//! read the same event.
#![no_main]

use hookhost::Event;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(difference) = hookhost::event::same_as_general(text) {
        panic!("{text:?}: {difference}");
    }
    if let Ok(event) = Event::from_json(text) {
        let json = event.to_json();
        let value: serde_json::Value = serde_json::from_str(&json).expect("to_json writes JSON");
        assert_eq!(
            value,
            event.to_json_value(),
            "to_json and to_json_value differ for {text:?}"
        );
        if let Err(err) = Event::from_json(&json) {
            panic!(
                "an event read from {text:?} does not read back from its own JSON {json:?}: {err}"
            );
        }
    }
});
