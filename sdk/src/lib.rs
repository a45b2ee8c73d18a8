//! Write hookhost event hooks in Rust.
//!
//! A hook is a type that implements [`Hook`], exported with [`export_hook!`]
//! from a `cdylib` crate built for `wasm32-wasip2`. The host calls
//! [`Hook::handle`] for every event, again for an event that failed
//! retryably; the hook may write to the host log ([`log`]), read its own
//! settings ([`config`]), tell a retry from a first delivery and learn how
//! many repeats of an event the host suppressed ([`delivery`]). A group of
//! events the host gathered arrives as one digest event ([`digest`]).
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
//! there [`export_hook!`] exports nothing and calling an import ([`log`],
//! [`config`], [`delivery`], ...) panics.

#![deny(missing_docs)]

use std::fmt;

pub mod digest;

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

/// Bindings generated from the `batch-hook` world, sharing the types and
/// imports of [`bindings`]. Hidden: [`export_batch_hook!`] reaches in here.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod batch_bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "batch-hook",
        pub_export_macro: true,
        export_macro_name: "__export_batch_hook_world",
        default_bindings_module: "$crate::batch_bindings",
        with: {
            "hookhost:hooks/types@0.1.0": crate::bindings::hookhost::hooks::types,
            "hookhost:hooks/log@0.1.0": crate::bindings::hookhost::hooks::log,
            "hookhost:hooks/config@0.1.0": crate::bindings::hookhost::hooks::config,
            "hookhost:hooks/delivery@0.1.0": crate::bindings::hookhost::hooks::delivery,
            "hookhost:hooks/http@0.1.0": crate::bindings::hookhost::hooks::http,
            "hookhost:hooks/sql@0.1.0": crate::bindings::hookhost::hooks::sql,
            "hookhost:hooks/email@0.1.0": crate::bindings::hookhost::hooks::email,
        },
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
/// The host calls [`Hook::handle`] for every event it accepts, first in the
/// order it accepted them, one at a time. An event that failed retryably is
/// delivered again later, after a backoff, while later events keep coming
/// (see [`delivery`]). Register the implementing type with [`export_hook!`].
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
    /// succeed (the host delivers it again, with backoff, up to the plugin's
    /// `max_attempts`) and [`HookError::Permanent`] when it would fail the
    /// same way (it is not retried). A panic traps: the host records the
    /// event as failed, does not retry it, and handles the next one with a
    /// fresh instance, so statics do not survive it.
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

/// A hook that handles events in batches (the `batch-hook` world), for
/// work that is cheaper in bulk, such as writing rows in one transaction.
///
/// The host collects queued events up to the plugin's `batch_size`, waiting
/// at most `batch_wait_ms` for a batch to fill. Register the implementing
/// type with [`export_batch_hook!`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a batch hook",
    label = "`export_batch_hook!` needs a type that implements `hookhost_sdk::BatchHook`"
)]
pub trait BatchHook {
    /// Handles `events`, returning one result per event in the same order.
    /// A list of another length fails the whole batch.
    fn handle_batch(events: Vec<Event>) -> Vec<Result<(), HookError>>;
}

impl<T: BatchHook> batch_bindings::exports::hookhost::hooks::batch_handler::Guest for T {
    fn handle_batch(events: Vec<Event>) -> Vec<Result<(), HookError>> {
        <T as BatchHook>::handle_batch(events)
    }
}

/// Exports a [`BatchHook`] implementation as this component's
/// `batch-handler`, like [`export_hook!`] does for a [`Hook`].
#[macro_export]
macro_rules! export_batch_hook {
    ($hook:ident) => {
        const _: fn(
            ::std::vec::Vec<$crate::Event>,
        ) -> ::std::vec::Vec<::core::result::Result<(), $crate::HookError>> =
            <$hook as $crate::BatchHook>::handle_batch;
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            $crate::batch_bindings::__export_batch_hook_world! { $hook with_types_in $crate::batch_bindings }
        };
    };
}

/// SQL databases the host's configuration names (`[databases.<name>]`)
/// and grants this plugin (`databases = [...]`).
pub mod sql {
    pub use crate::bindings::hookhost::hooks::sql::{Dialect, Rows, SqlError, Statement, Value};
    use crate::HookError;

    /// A statement with its parameters.
    pub fn statement(sql: impl Into<String>, params: Vec<Value>) -> Statement {
        Statement {
            sql: sql.into(),
            params,
        }
    }

    /// The SQL dialect of `database`.
    pub fn dialect(database: &str) -> Result<Dialect, SqlError> {
        crate::bindings::hookhost::hooks::sql::dialect_of(database)
    }

    /// Runs one statement; returns the rows it affected.
    pub fn execute(database: &str, statement: &Statement) -> Result<u64, SqlError> {
        crate::bindings::hookhost::hooks::sql::execute(database, statement)
    }

    /// Runs one query and returns its rows.
    pub fn query(database: &str, statement: &Statement) -> Result<Rows, SqlError> {
        crate::bindings::hookhost::hooks::sql::query(database, statement)
    }

    /// Runs `statements` in one transaction, all or none.
    pub fn transaction(database: &str, statements: &[Statement]) -> Result<Vec<u64>, SqlError> {
        crate::bindings::hookhost::hooks::sql::transaction(database, statements)
    }

    /// A lost connection or a timeout is worth retrying; a denial or a
    /// statement the database refused is not.
    impl From<SqlError> for HookError {
        fn from(err: SqlError) -> HookError {
            match err {
                SqlError::Connection(why) => HookError::Retryable(format!("database: {why}")),
                SqlError::Timeout => HookError::Retryable("database: timed out".to_owned()),
                SqlError::Denied(why) => HookError::Permanent(why),
                SqlError::Statement(why) => HookError::Permanent(format!("database: {why}")),
            }
        }
    }

    impl From<Option<String>> for Value {
        fn from(text: Option<String>) -> Value {
            text.map_or(Value::Null, Value::Text)
        }
    }

    impl From<Option<f64>> for Value {
        fn from(number: Option<f64>) -> Value {
            number.map_or(Value::Null, Value::Float)
        }
    }
}

/// Email through the SMTP servers the host's configuration names
/// (`[mailers.<name>]`) and grants this plugin (`mailers = [...]`).
pub mod email {
    pub use crate::bindings::hookhost::hooks::email::{EmailError, Message};
    use crate::HookError;

    /// Sends `message` through `mailer`.
    pub fn send(mailer: &str, message: &Message) -> Result<(), EmailError> {
        crate::bindings::hookhost::hooks::email::send(mailer, message)
    }

    /// A server that is unreachable, temporarily failing or slow is worth
    /// retrying; a denial, a bad address or a refusal is not.
    impl From<EmailError> for HookError {
        fn from(err: EmailError) -> HookError {
            match err {
                EmailError::Unavailable(why) => HookError::Retryable(format!("email: {why}")),
                EmailError::Timeout => HookError::Retryable("email: timed out".to_owned()),
                EmailError::Denied(why) => HookError::Permanent(why),
                EmailError::Invalid(why) | EmailError::Rejected(why) => {
                    HookError::Permanent(format!("email: {why}"))
                }
            }
        }
    }
}

/// Text for alerts, formatted the way the Python profilers' alert hooks
/// write it, so hooks that notify people agree with each other.
pub mod format {
    use crate::MetricValue;

    /// A metric value: numbers with two decimals (`100.00`), text as is,
    /// `None` when absent.
    pub fn metric(value: &Option<MetricValue>) -> String {
        match value {
            Some(MetricValue::Number(n)) => format!("{n:.2}"),
            Some(MetricValue::Text(text)) => text.clone(),
            None => "None".to_owned(),
        }
    }

    /// A change in percent with its sign and one decimal (`+50.0%`,
    /// `-1.0%`, `+0.0%`), `N/A` when absent.
    pub fn change(change: Option<f64>) -> String {
        match change {
            Some(c) if c < 0.0 => format!("{c:.1}%"),
            Some(c) => format!("+{:.1}%", c.abs()),
            None => "N/A".to_owned(),
        }
    }

    /// An event's RFC 3339 timestamp, in UTC.
    pub fn parse_timestamp(timestamp: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::parse_from_rfc3339(timestamp)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }

    /// An event's timestamp as `YYYY-MM-DD HH:MM:SS UTC` (as it came when
    /// it does not parse).
    pub fn timestamp(timestamp: &str) -> String {
        parse_timestamp(timestamp)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| timestamp.to_owned())
    }

    /// A number of events: `1 event`, `14 events`.
    pub fn events(n: u64) -> String {
        if n == 1 {
            "1 event".to_owned()
        } else {
            format!("{n} events")
        }
    }

    /// The repeats the host suppressed before an alert
    /// ([`crate::delivery::suppressed`]): `3 more like this since the last
    /// alert`, which hooks put after `and ` or `Suppressed: `.
    pub fn suppressed(n: u64) -> String {
        format!("{n} more like this since the last alert")
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn formats_like_the_python_hooks() {
            assert_eq!(change(Some(50.0)), "+50.0%");
            assert_eq!(change(Some(-1.0)), "-1.0%");
            assert_eq!(change(Some(0.0)), "+0.0%");
            assert_eq!(change(None), "N/A");
            assert_eq!(metric(&Some(MetricValue::Number(100.0))), "100.00");
            assert_eq!(metric(&Some(MetricValue::Text("abc".into()))), "abc");
            assert_eq!(
                timestamp("2025-01-15T10:30:00.5+01:00"),
                "2025-01-15 09:30:00 UTC"
            );
            assert_eq!(events(1), "1 event");
            assert_eq!(events(14), "14 events");
            assert_eq!(suppressed(1), "1 more like this since the last alert");
        }
    }
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

    /// What a hook that delivers events over HTTP should make of `result`:
    /// the response when its status is 2xx, otherwise a hook error naming
    /// `service`. A 429 or 5xx answer, a timeout and a failed connection
    /// are retryable (the host delivers the event again, with backoff); a
    /// denial, an invalid request, a body too large and any other status
    /// are permanent.
    ///
    /// A 429 or 503 answer's `Retry-After` header is passed on to the host
    /// with [`crate::delivery::retry_after`], and the error's message says
    /// so (`Slack answered 429 (Retry-After: 30 s)`). Its value is read as
    /// delta-seconds (`120`) or as an HTTP-date, which counts only when the
    /// plugin is granted `wall_clock` (the sandbox's frozen clock cannot
    /// tell how far away a date is); a value that is neither is ignored.
    pub fn delivered(
        result: Result<Response, HttpError>,
        service: &str,
    ) -> Result<Response, crate::HookError> {
        use crate::HookError::{Permanent, Retryable};
        match result {
            Ok(response) if (200..300).contains(&response.status) => Ok(response),
            Ok(response) => {
                let mut reason = format!("{service} answered {}", response.status);
                if matches!(response.status, 429 | 503) {
                    if let Some(seconds) = retry_after(&response.headers, wall_clock_now()) {
                        crate::delivery::retry_after(seconds);
                        reason.push_str(&format!(" (Retry-After: {seconds} s)"));
                    }
                }
                if response.status == 429 || response.status >= 500 {
                    Err(Retryable(reason))
                } else {
                    Err(Permanent(reason))
                }
            }
            Err(HttpError::Timeout) => Err(Retryable(format!("{service} timed out"))),
            Err(HttpError::ConnectionFailed(why)) => Err(Retryable(format!("{service}: {why}"))),
            Err(
                HttpError::Denied(why) | HttpError::TooLarge(why) | HttpError::InvalidRequest(why),
            ) => Err(Permanent(format!("{service}: {why}"))),
        }
    }

    /// Unix seconds below this (2001-09-09) are the sandbox's frozen clock,
    /// which reads the Unix epoch, not the time.
    const EARLIEST_PLAUSIBLE_TIME: u64 = 1_000_000_000;

    /// The current Unix time in seconds, or `None` when the plugin's clock
    /// is frozen (no `wall_clock` grant).
    fn wall_clock_now() -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        (now >= EARLIEST_PLAUSIBLE_TIME).then_some(now)
    }

    /// The wait in seconds that the first `Retry-After` header of `headers`
    /// asks for (RFC 9110, section 10.2.3): delta-seconds as written (at
    /// most `u32::MAX`), or an HTTP-date in any of its three forms as the
    /// seconds from `now` (0 for a date past), and only when `now` is
    /// known. `None` when there is no such header or its value is neither.
    fn retry_after(headers: &[(String, String)], now: Option<u64>) -> Option<u32> {
        let (_, value) = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))?;
        let value = value.trim();
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            // All digits: only an overflow fails, and then it is very long.
            return Some(value.parse().unwrap_or(u32::MAX));
        }
        let date = http_date(value)?;
        let wait = date.saturating_sub(now?);
        Some(u32::try_from(wait).unwrap_or(u32::MAX))
    }

    /// An HTTP-date in Unix seconds: IMF-fixdate (`Sun, 06 Nov 1994
    /// 08:49:37 GMT`), or the obsolete RFC 850 (`Sunday, 06-Nov-94 08:49:37
    /// GMT`) and asctime (`Sun Nov  6 08:49:37 1994`) forms that HTTP
    /// recipients must also read; `None` for a date before 1970.
    fn http_date(text: &str) -> Option<u64> {
        const FORMATS: [&str; 3] = [
            "%a, %d %b %Y %H:%M:%S GMT",
            "%A, %d-%b-%y %H:%M:%S GMT",
            "%a %b %e %H:%M:%S %Y",
        ];
        FORMATS
            .iter()
            .find_map(|format| chrono::NaiveDateTime::parse_from_str(text, format).ok())
            .and_then(|date| u64::try_from(date.and_utc().timestamp()).ok())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn header(name: &str, value: &str) -> Vec<(String, String)> {
            vec![
                ("content-type".to_owned(), "text/plain".to_owned()),
                (name.to_owned(), value.to_owned()),
            ]
        }

        /// 1994-11-06T08:49:37Z, the date of RFC 9110's examples.
        const EXAMPLE_DATE: u64 = 784_111_777;

        #[test]
        fn reads_delta_seconds_in_any_header_case() {
            assert_eq!(retry_after(&header("Retry-After", "120"), None), Some(120));
            assert_eq!(retry_after(&header("retry-after", " 0 "), None), Some(0));
            assert_eq!(
                retry_after(&header("RETRY-AFTER", "99999999999999999999"), None),
                Some(u32::MAX)
            );
            assert_eq!(retry_after(&header("x-retry-after", "5"), None), None);
        }

        #[test]
        fn ignores_what_is_neither_seconds_nor_a_date() {
            for value in ["", "-5", "+5", "1.5", "soon", "5 s"] {
                assert_eq!(retry_after(&header("retry-after", value), None), None);
                assert_eq!(
                    retry_after(&header("retry-after", value), Some(EXAMPLE_DATE)),
                    None,
                    "{value:?}"
                );
            }
        }

        #[test]
        fn reads_the_three_http_date_forms_against_the_clock() {
            for value in [
                "Sun, 06 Nov 1994 08:49:37 GMT",
                "Sunday, 06-Nov-94 08:49:37 GMT",
                "Sun Nov  6 08:49:37 1994",
            ] {
                assert_eq!(http_date(value), Some(EXAMPLE_DATE), "{value}");
                let headers = header("retry-after", value);
                assert_eq!(retry_after(&headers, Some(EXAMPLE_DATE - 90)), Some(90));
                assert_eq!(retry_after(&headers, Some(EXAMPLE_DATE + 90)), Some(0));
            }
        }

        #[test]
        fn ignores_a_date_when_the_clock_is_frozen() {
            let headers = header("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT");
            assert_eq!(retry_after(&headers, None), None);
        }

        #[test]
        fn the_first_header_counts() {
            let mut headers = header("retry-after", "7");
            headers.push(("retry-after".to_owned(), "9".to_owned()));
            assert_eq!(retry_after(&headers, None), Some(7));
        }
    }
}

/// Which delivery of an event the current call is, how long the host
/// should wait before the next one if the call fails, and how many repeats
/// of the event the host suppressed (the WIT `delivery` interface).
///
/// The host delivers an event again when a call returns
/// [`HookError::Retryable`](crate::HookError::Retryable) (or passes its
/// timeout), with backoff, up to the plugin's `max_attempts`; the event keeps
/// its `id` on every attempt.
///
/// ```no_run
/// use hookhost_sdk::{delivery, http, log, Event, Hook, HookError};
///
/// struct Notify;
///
/// impl Hook for Notify {
///     fn handle(event: Event) -> Result<(), HookError> {
///         if delivery::attempt() > 1 {
///             log::info(&format!("retrying {}", event.id));
///         }
///         let result = http::post_json("https://api.example.com/notify", "{}");
///         if matches!(&result, Ok(response) if response.status == 423) {
///             // Locked for a while: try again in a minute at the earliest.
///             delivery::retry_after(60);
///             return Err(HookError::Retryable("the API is locked".into()));
///         }
///         // A 429 or 503 with `Retry-After` reaches the host by itself.
///         http::delivered(result, "the API")?;
///         Ok(())
///     }
/// }
///
/// hookhost_sdk::export_hook!(Notify);
/// ```
pub mod delivery {
    /// Which delivery of the event this call is: 1 for the first, 2 for the
    /// first retry, and so on. In a [`BatchHook`](crate::BatchHook) call,
    /// the highest among the batch's events.
    pub fn attempt() -> u32 {
        crate::bindings::hookhost::hooks::delivery::attempt()
    }

    /// Asks the host to wait at least `seconds` before delivering the event
    /// again, for example what a server's `Retry-After` asks for
    /// ([`crate::http::delivered`] passes that on by itself).
    ///
    /// Counts only if this call then returns
    /// [`HookError::Retryable`](crate::HookError::Retryable); the last call
    /// wins. The host waits the longer of this and its own backoff, and
    /// never longer than the plugin's `retry_max_ms`. In a
    /// [`BatchHook`](crate::BatchHook) call it applies to every event that
    /// failed retryably.
    pub fn retry_after(seconds: u32) {
        crate::bindings::hookhost::hooks::delivery::retry_after(seconds);
    }

    /// How many repeats of `event` the host kept from this hook before
    /// delivering it: events with the same `dedup_key` that arrived within
    /// the plugin's `dedup_window` after the last one of that key was let
    /// through. Lets an alert say "and 12 more like this"
    /// ([`crate::format::suppressed`]).
    ///
    /// The count is given once, to the first event of its key let through
    /// after the repeats; it is 0 for a plugin without a `dedup_key` and for
    /// an event that is not one of the current call's. For a digest event
    /// ([`crate::digest`]), the sum over its events, which
    /// [`Digest::suppressed`](crate::digest::Digest::suppressed) also holds.
    pub fn suppressed(event: &crate::Event) -> u32 {
        crate::bindings::hookhost::hooks::delivery::suppressed(&event.id)
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
