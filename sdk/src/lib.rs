//! Write hookhost event hooks in Rust.
//!
//! A hook is a type that implements [`Hook`], exported with [`export_hook!`]
//! from a `cdylib` crate built for `wasm32-wasip2`. The host calls
//! [`Hook::handle`] once for every event; the hook may write to the host log
//! ([`log`]) and read its own settings ([`config`]).
//!
//! ```no_run
//! use hookhost_sdk::{config, log, Event, EventKind, Hook, HookError};
//!
//! struct MyHook;
//!
//! impl Hook for MyHook {
//!     fn handle(event: Event) -> Result<(), HookError> {
//!         if let EventKind::DataDriftDetected(drift) = &event.kind {
//!             let channel = config::get_or("channel", "#data");
//!             log::warn(&format!("{channel}: {}.{} drifted", drift.table, drift.column));
//!         } else {
//!             log::info(&format!("got {}", event.event_type));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! hookhost_sdk::export_hook!(MyHook);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the
//! `.wasm` file in `target/wasm32-wasip2/release/` is the plugin.
//!
//! The SDK also compiles for native targets, so that a workspace can be
//! built as a whole and a hook's own logic unit-tested with `cargo test`;
//! there [`export_hook!`] exports nothing and calling [`log`] or [`config`]
//! panics.

#![deny(missing_docs)]

use std::fmt;

/// Bindings generated from the `hook` world in `wit/`. Hidden: hook authors
/// use the re-exports at the crate root; [`export_hook!`] reaches in here.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "hook",
        // `export_hook!` expands in the hook author's crate, so the generated
        // export macro must be public and must name these bindings through
        // `$crate`: the author's crate does not depend on `wit-bindgen`.
        pub_export_macro: true,
        export_macro_name: "__export_hook_world",
        default_bindings_module: "$crate::bindings",
        additional_derives: [PartialEq],
    });
}

use bindings::exports::hookhost::hooks::handler::Guest;

pub use bindings::hookhost::hooks::types::{
    Anomaly, DataDrift, Event, EventKind, HookError, MetricValue, ProfilingCompleted,
    ProfilingFailed, ProfilingSkipped, ProfilingStarted, QualityScoreDegraded,
    QualityThresholdBreached, Retry, SchemaChange, SchemaChangeType, Severity, ValidationFailure,
};

/// An event hook: the one function a plugin implements.
///
/// The host calls [`Hook::handle`] once for every event it accepts, in the
/// order it accepted them, one at a time. Register the implementing type with
/// [`export_hook!`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a hook",
    label = "`export_hook!` needs a type that implements `hookhost_sdk::Hook`",
    note = "add `impl hookhost_sdk::Hook for {Self} {{ fn handle(event: Event) -> Result<(), HookError> {{ .. }} }}`"
)]
pub trait Hook {
    /// Handles one event.
    ///
    /// Return `Ok(())` when done with the event; return
    /// [`HookError::Retryable`] when a later delivery of the same event might
    /// succeed and [`HookError::Permanent`] when it would fail the same way.
    /// A panic traps: the host records the event as failed and handles the
    /// next one with a fresh instance, so statics do not survive it.
    fn handle(event: Event) -> Result<(), HookError>;
}

impl<T: Hook> Guest for T {
    fn handle(event: Event) -> Result<(), HookError> {
        <T as Hook>::handle(event)
    }
}

/// Exports a [`Hook`] implementation as this component's `handler`.
///
/// Use it once per plugin crate, at the crate root or in any module, naming
/// the type (a plain identifier) that implements [`Hook`]:
///
/// ```no_run
/// # use hookhost_sdk::{Event, Hook, HookError};
/// struct MyHook;
/// impl Hook for MyHook {
///     fn handle(_event: Event) -> Result<(), HookError> {
///         Ok(())
///     }
/// }
/// hookhost_sdk::export_hook!(MyHook);
/// ```
#[macro_export]
macro_rules! export_hook {
    ($hook:ident) => {
        // Checked first so that a type that is not a hook is reported with
        // `Hook`'s own message, before the errors of the generated exports.
        // It also keeps the hook "used" in native builds, which export
        // nothing.
        const _: fn($crate::Event) -> ::core::result::Result<(), $crate::HookError> =
            <$hook as $crate::Hook>::handle;
        // Only wasm builds export anything: a native `cdylib` cannot link the
        // export names (`hookhost:hooks/handler@0.1.0#handle`), and a native
        // build of a hook only exists to check or unit-test it.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            $crate::bindings::__export_hook_world! { $hook with_types_in $crate::bindings }
        };
    };
}

/// Writing to the host log.
///
/// Each line is tagged with the plugin's name by the host; lines below the
/// host's own level are dropped there, so logging at `trace` costs only the
/// call.
pub mod log {
    use std::fmt;
    use std::str::FromStr;

    use crate::bindings::hookhost::hooks::log::log as host_log;
    pub use crate::bindings::hookhost::hooks::log::Level;

    /// Writes `message` to the host log at `level`.
    pub fn log(level: Level, message: &str) {
        host_log(level, message);
    }

    /// Writes `message` at [`Level::Trace`].
    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }

    /// Writes `message` at [`Level::Debug`].
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }

    /// Writes `message` at [`Level::Info`].
    pub fn info(message: &str) {
        log(Level::Info, message);
    }

    /// Writes `message` at [`Level::Warn`].
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }

    /// Writes `message` at [`Level::Error`].
    pub fn error(message: &str) {
        log(Level::Error, message);
    }

    impl Level {
        /// The level's lowercase name: `trace`, `debug`, `info`, `warn` or
        /// `error`.
        pub fn as_str(self) -> &'static str {
            match self {
                Level::Trace => "trace",
                Level::Debug => "debug",
                Level::Info => "info",
                Level::Warn => "warn",
                Level::Error => "error",
            }
        }
    }

    impl fmt::Display for Level {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.as_str())
        }
    }

    /// A word that names no log level.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct UnknownLevel(pub String);

    impl fmt::Display for UnknownLevel {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "unknown log level `{}` (expected trace, debug, info, warn or error)",
                self.0
            )
        }
    }

    impl std::error::Error for UnknownLevel {}

    impl FromStr for Level {
        type Err = UnknownLevel;

        /// Reads a level name, case-insensitively; `warning` reads as
        /// [`Level::Warn`].
        fn from_str(s: &str) -> Result<Self, Self::Err> {
            match s.trim().to_ascii_lowercase().as_str() {
                "trace" => Ok(Level::Trace),
                "debug" => Ok(Level::Debug),
                "info" => Ok(Level::Info),
                "warn" | "warning" => Ok(Level::Warn),
                "error" => Ok(Level::Error),
                _ => Err(UnknownLevel(s.to_string())),
            }
        }
    }
}

/// Outbound HTTP requests.
pub mod http {
    //! Requests go only to the destinations the host's config grants this
    //! plugin (`http_allow`); anything else is [`HttpError::Denied`].

    pub use crate::bindings::hookhost::hooks::http::{HttpError, Request, Response};

    /// Sends `request` and waits for the whole response, within what is
    /// left of this event's timeout.
    pub fn send(request: &Request) -> Result<Response, HttpError> {
        crate::bindings::hookhost::hooks::http::send(request)
    }

    /// A request with no headers and no body.
    pub fn request(method: &str, url: &str) -> Request {
        Request {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `GET url`.
    pub fn get(url: &str) -> Result<Response, HttpError> {
        send(&request("GET", url))
    }

    /// `POST url` with a JSON body.
    pub fn post_json(url: &str, json: &str) -> Result<Response, HttpError> {
        let mut request = request("POST", url);
        request
            .headers
            .push(("content-type".to_owned(), "application/json".to_owned()));
        request.body = json.as_bytes().to_vec();
        send(&request)
    }
}

/// The hook's own settings, from `[plugins.<name>.settings]` in the host's
/// configuration file.
///
/// Strings, numbers and booleans come back as their plain text (`info`, `42`,
/// `true`); tables and arrays as JSON text.
pub mod config {
    use std::fmt::Display;
    use std::str::FromStr;

    use crate::HookError;

    /// The value of setting `key`, or `None` when it is not set.
    pub fn get(key: &str) -> Option<String> {
        crate::bindings::hookhost::hooks::config::get(key)
    }

    /// The value of setting `key`, or `default` when it is not set.
    pub fn get_or(key: &str, default: &str) -> String {
        get(key).unwrap_or_else(|| default.to_string())
    }

    /// The value of setting `key` parsed as a `T`, or `None` when it is not
    /// set.
    ///
    /// A value that does not parse is a [`HookError::Permanent`] naming the
    /// key and the value, since delivering the event again cannot fix a
    /// setting; return it with `?`.
    pub fn parse<T>(key: &str) -> Result<Option<T>, HookError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let Some(text) = get(key) else {
            return Ok(None);
        };
        text.parse().map(Some).map_err(|err| {
            HookError::Permanent(format!("setting `{key}` = `{text}` is invalid: {err}"))
        })
    }
}

impl Severity {
    /// The severity's lowercase name: `info`, `low`, `medium`, `high` or
    /// `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl MetricValue {
    /// The value as a number, when it is one.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            MetricValue::Number(n) => Some(*n),
            MetricValue::Text(_) => None,
        }
    }
}

/// Numbers print as Rust prints an `f64` (so `{:.2}` works), text as is.
impl fmt::Display for MetricValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricValue::Number(n) => fmt::Display::fmt(n, f),
            MetricValue::Text(s) => f.pad(s),
        }
    }
}

impl SchemaChangeType {
    /// The change type as the emitters spell it (`column_added`,
    /// `type_changed`, ...), or the emitter's own word for
    /// [`SchemaChangeType::Other`].
    pub fn as_str(&self) -> &str {
        match self {
            SchemaChangeType::ColumnAdded => "column_added",
            SchemaChangeType::ColumnRemoved => "column_removed",
            SchemaChangeType::ColumnRenamed => "column_renamed",
            SchemaChangeType::TypeChanged => "type_changed",
            SchemaChangeType::PartitionChanged => "partition_changed",
            SchemaChangeType::Other(other) => other,
        }
    }
}

impl fmt::Display for SchemaChangeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EventKind {
    /// The canonical event type of this kind (`DataDriftDetected`,
    /// `ProfilingCompleted`, ...), or the emitter's name for
    /// [`EventKind::Custom`]. Unlike [`Event::event_type`] it does not depend
    /// on how the emitter spelled a known type.
    pub fn name(&self) -> &str {
        match self {
            EventKind::ProfilingStarted(_) => "ProfilingStarted",
            EventKind::ProfilingCompleted(_) => "ProfilingCompleted",
            EventKind::ProfilingFailed(_) => "ProfilingFailed",
            EventKind::ProfilingSkipped(_) => "ProfilingSkipped",
            EventKind::DataDriftDetected(_) => "DataDriftDetected",
            EventKind::SchemaChangeDetected(_) => "SchemaChangeDetected",
            EventKind::AnomalyDetected(_) => "AnomalyDetected",
            EventKind::ValidationFailed(_) => "ValidationFailed",
            EventKind::QualityScoreDegraded(_) => "QualityScoreDegraded",
            EventKind::QualityThresholdBreached(_) => "QualityScoreThresholdBreached",
            EventKind::RetryAttempt(_) => "RetryAttempt",
            EventKind::RetryExhausted(_) => "RetryExhausted",
            EventKind::Custom(name) => name,
        }
    }

    /// The table the event is about, for every kind but retries and custom
    /// events.
    pub fn table(&self) -> Option<&str> {
        match self {
            EventKind::ProfilingStarted(e) => Some(&e.table),
            EventKind::ProfilingCompleted(e) => Some(&e.table),
            EventKind::ProfilingFailed(e) => Some(&e.table),
            EventKind::ProfilingSkipped(e) => Some(&e.table),
            EventKind::DataDriftDetected(e) => Some(&e.table),
            EventKind::SchemaChangeDetected(e) => Some(&e.table),
            EventKind::AnomalyDetected(e) => Some(&e.table),
            EventKind::ValidationFailed(e) => Some(&e.table),
            EventKind::QualityScoreDegraded(e) => Some(&e.table),
            EventKind::QualityThresholdBreached(e) => Some(&e.table),
            EventKind::RetryAttempt(_) | EventKind::RetryExhausted(_) | EventKind::Custom(_) => {
                None
            }
        }
    }
}
