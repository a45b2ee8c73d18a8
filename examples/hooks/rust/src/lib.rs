//! Example hook in Rust: logs every event it receives as one `echo ...`
//! line in the echo format (`examples/hooks/README.md`), the same line the
//! Python, JavaScript and C examples write, and panics on the custom event
//! `conformance.throw`.
//!
//! Build it on its own with `cargo build --release --target wasm32-wasip2
//! -p echo-hook`; the host's build also builds it for the tests.

mod canonical;

use hookhost_sdk::{log, Event, EventKind, Hook, HookError};

struct Echo;

impl Hook for Echo {
    fn handle(event: Event) -> Result<(), HookError> {
        if matches!(&event.kind, EventKind::Custom(name) if name == "conformance.throw") {
            panic!("conformance.throw");
        }
        log::info(&canonical::line(&event));
        Ok(())
    }
}

hookhost_sdk::export_hook!(Echo);
