//! Fuzz target: `Event::from_json` on any bytes. It must return an event or
//! an error, never panic; an event it returns must survive the round trip
//! through its own JSON form.
#![no_main]

use hookhost::Event;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(event) = Event::from_json(text) {
        let json = event.to_json();
        if let Err(err) = Event::from_json(&json) {
            panic!(
                "an event read from {text:?} does not read back from its own JSON {json:?}: {err}"
            );
        }
    }
});
