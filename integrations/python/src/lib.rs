//! `hookhost._hookhost`: the hookhost host, embedded in a Python process.
//!
//! [`Host`] starts the library's [`hookhost::Host`] on a tokio runtime of
//! its own (two worker threads) inside the Python process. Every call that
//! waits for the host (starting, emitting, waiting for outcomes, shutting
//! down) releases the GIL, so the profiler's other threads run meanwhile.
//! Events come in as Python objects in the profilers' `to_dict()` form and
//! are read by the host's own event reader: there is no second
//! implementation of anything here, only the conversion of Python values to
//! JSON values and of reports back to dicts.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::Duration;

use hookhost::{EmitError, Event, FailureClass, Outcome, PluginSummary, Report};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

create_exception!(
    _hookhost,
    Error,
    PyException,
    "Base of every exception hookhost raises."
);
create_exception!(
    _hookhost,
    StartError,
    Error,
    "The host could not start: a bad config file, an unreadable plugins folder or data directory."
);
create_exception!(
    _hookhost,
    MalformedEvent,
    Error,
    "The event is not in the to_dict() form: the message names the key at fault."
);
create_exception!(
    _hookhost,
    QueueFull,
    Error,
    "A plugin's queue is full (on_full = \"reject\", or any policy for emit, which never waits)."
);
create_exception!(
    _hookhost,
    EventTooLarge,
    Error,
    "The event is larger than max_event_kib or a plugin's queue_mib."
);
create_exception!(
    _hookhost,
    LogError,
    Error,
    "The write-ahead log in the data directory could not record the event."
);
create_exception!(_hookhost, HostStopped, Error, "The host was shut down.");
create_exception!(
    _hookhost,
    Timeout,
    Error,
    "emit_and_wait gave up waiting for the plugins' outcomes."
);

/// Every allocation of the module's Rust code (the host's included): an
/// event is built on the caller's thread and freed on one of the host's,
/// which glibc's allocator serializes on an arena lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Nesting of lists and dicts an event may have; deeper is malformed.
const MAX_DEPTH: usize = 64;

/// The host, running on its own threads in this process.
#[pyclass(module = "hookhost._hookhost", frozen, subclass, weakref)]
struct Host {
    runtime: tokio::runtime::Runtime,
    /// `None` once shut down.
    host: RwLock<Option<hookhost::Host>>,
    /// What `shutdown` returned, for a second call.
    finished: Mutex<Option<Vec<PluginSummary>>>,
    /// Whether `emit` waits for the write-ahead log's disk sync: only then
    /// does it let other Python threads run meanwhile (see `emit`).
    keeps_log: bool,
}

#[pymethods]
impl Host {
    /// Starts a host that loads every `*.wasm` file in `plugins`, with the
    /// config file `config` (when `None`, `hookhost.toml` if it exists,
    /// else the defaults), the write-ahead log and dead letters in
    /// `data_dir` (when `None`, in memory), and hot reload of the folder and
    /// the config file when `watch` is true.
    #[new]
    #[pyo3(signature = (plugins = "plugins".into(), config = None, data_dir = None, watch = true, drain_timeout = 60.0))]
    fn new(
        py: Python<'_>,
        plugins: PathBuf,
        config: Option<PathBuf>,
        data_dir: Option<PathBuf>,
        watch: bool,
        drain_timeout: f64,
    ) -> PyResult<Host> {
        let drain_timeout = Duration::try_from_secs_f64(drain_timeout).map_err(|_| {
            StartError::new_err("drain_timeout must be a number of seconds, 0 or more")
        })?;
        let mut builder = hookhost::Host::builder()
            .plugins_dir(plugins)
            .watch(watch)
            .drain_timeout(drain_timeout);
        let config = config.or_else(|| {
            let default = PathBuf::from("hookhost.toml");
            default.is_file().then_some(default)
        });
        if let Some(config) = config {
            builder = builder
                .config_file(config)
                .map_err(|err| StartError::new_err(err.to_string()))?;
        }
        if let Some(data_dir) = data_dir {
            builder = builder.data_dir(data_dir);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hookhost")
            .enable_all()
            .build()
            .map_err(|err| {
                StartError::new_err(format!("cannot start the host's threads: {err}"))
            })?;
        let host = py
            .allow_threads(|| runtime.block_on(builder.build()))
            .map_err(|err| StartError::new_err(err.to_string()))?;
        Ok(Host {
            runtime,
            keeps_log: host.keeps_log(),
            host: RwLock::new(Some(host)),
            finished: Mutex::new(None),
        })
    }

    /// Hands `event` (a dict in the `to_dict()` form, or an object with a
    /// `to_dict()` method) to every plugin and returns its id at once:
    /// a full queue raises `QueueFull` rather than waiting for room.
    ///
    /// Without a data directory, queueing never waits, so it runs holding
    /// the GIL: releasing and taking it back would cost the caller more than
    /// queueing the event. With one, other threads run while the event is
    /// written to the log.
    fn emit(&self, py: Python<'_>, event: &Bound<'_, PyAny>) -> PyResult<String> {
        let event = read_event(event)?;
        let id = event.id.clone();
        let queue = || self.with_host(|host| host.try_emit(event));
        let queued = if self.keeps_log {
            py.allow_threads(queue)
        } else {
            queue()
        };
        queued?.map_err(emit_error)?;
        Ok(id)
    }

    /// As `emit`, then waits at most `timeout` seconds for every plugin's
    /// outcome; returns `{"event_id", "outcomes": {plugin: {...}},
    /// "skipped": {plugin: reason}}`. A full queue waits for room here
    /// under `on_full = "wait"`.
    #[pyo3(signature = (event, timeout = 30.0))]
    fn emit_and_wait(
        &self,
        py: Python<'_>,
        event: &Bound<'_, PyAny>,
        timeout: f64,
    ) -> PyResult<PyObject> {
        let event = read_event(event)?;
        let timeout = Duration::try_from_secs_f64(timeout)
            .map_err(|_| Timeout::new_err("timeout must be a number of seconds, 0 or more"))?;
        let report = py.allow_threads(|| -> PyResult<Option<Report>> {
            let pending = self
                .with_host(|host| host.emit_with_report(event))?
                .map_err(emit_error)?;
            Ok(self
                .runtime
                .block_on(async { tokio::time::timeout(timeout, pending.wait()).await })
                .ok())
        })?;
        let report = report.ok_or_else(|| {
            Timeout::new_err(format!(
                "the plugins' outcomes did not all arrive within {} s",
                timeout.as_secs_f64()
            ))
        })?;
        report_dict(py, &report)
    }

    /// Each plugin's counts so far: `{plugin: {"handled", "failed": {class:
    /// n}, "retried", "dead_lettered", "filtered", "suppressed", ...}}`.
    fn summaries(&self, py: Python<'_>) -> PyResult<PyObject> {
        let summaries = match self.host.read().expect("not poisoned").as_ref() {
            Some(host) => host.summaries(),
            None => self
                .finished
                .lock()
                .expect("not poisoned")
                .clone()
                .unwrap_or_default(),
        };
        summaries_dict(py, &summaries)
    }

    /// The plugin files that did not load, each `(path, reason)`.
    fn load_errors(&self) -> Vec<(String, String)> {
        match self.host.read().expect("not poisoned").as_ref() {
            Some(host) => host
                .load_errors()
                .iter()
                .map(|err| (err.path().display().to_string(), err.to_string()))
                .collect(),
            None => Vec::new(),
        }
    }

    /// Stops taking events, waits (at most the drain timeout) until every
    /// plugin is done with every accepted event, and returns the final
    /// summaries. A second call returns them again.
    fn shutdown(&self, py: Python<'_>) -> PyResult<PyObject> {
        let host = self.host.write().expect("not poisoned").take();
        if let Some(host) = host {
            let summaries = py.allow_threads(|| self.runtime.block_on(host.shutdown()));
            *self.finished.lock().expect("not poisoned") = Some(summaries);
        }
        self.summaries(py)
    }

    /// Whether `shutdown` has run.
    #[getter]
    fn stopped(&self) -> bool {
        self.host.read().expect("not poisoned").is_none()
    }
}

impl Host {
    /// Runs `work` on the live host, or fails with `HostStopped`.
    fn with_host<T>(&self, work: impl FnOnce(&hookhost::Host) -> T) -> PyResult<T> {
        match self.host.read().expect("not poisoned").as_ref() {
            Some(host) => Ok(work(host)),
            None => Err(HostStopped::new_err("the host was shut down")),
        }
    }
}

/// The exception for an event the host refused.
fn emit_error(err: EmitError) -> PyErr {
    let message = err.to_string();
    match err {
        EmitError::QueueFull { .. } | EmitError::QueueBytesFull { .. } => {
            QueueFull::new_err(message)
        }
        EmitError::TooLarge { .. } => EventTooLarge::new_err(message),
        EmitError::Log(_) => LogError::new_err(message),
        EmitError::ShutDown => HostStopped::new_err(message),
    }
}

/// Reads a Python event: a dict, or an object whose `to_dict()` returns one.
/// It is written as JSON text and read as the host reads any line, most
/// events in one pass (see the host's `event/one_pass.rs`).
fn read_event(event: &Bound<'_, PyAny>) -> PyResult<Event> {
    let mut text = Vec::with_capacity(512);
    if event.is_instance_of::<PyDict>() {
        write_json(event, 0, &mut text)?;
    } else if event.hasattr("to_dict")? {
        write_json(&event.call_method0("to_dict")?, 0, &mut text)?;
    } else {
        return Err(MalformedEvent::new_err(format!(
            "an event must be a dict or have a to_dict() method, not {}",
            event.get_type().name()?
        )));
    }
    // Written from `str`s and numbers only, so UTF-8.
    let text = String::from_utf8(text).map_err(|err| MalformedEvent::new_err(err.to_string()))?;
    Event::from_json(&text).map_err(|err| MalformedEvent::new_err(err.to_string()))
}

/// Writes a Python value as JSON text, as `json.dumps(value, default=str)`
/// writes it (compactly), except that dates and times are written with
/// `isoformat()` and floats that are not finite as the strings `"NaN"`,
/// `"Infinity"` and `"-Infinity"` (what the host reads from Python's
/// `json.dumps` too).
fn write_json(value: &Bound<'_, PyAny>, depth: usize, out: &mut Vec<u8>) -> PyResult<()> {
    if depth > MAX_DEPTH {
        return Err(MalformedEvent::new_err(format!(
            "the event is nested deeper than {MAX_DEPTH} lists and dicts"
        )));
    }
    if value.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(flag) = value.downcast::<PyBool>() {
        out.extend_from_slice(if flag.is_true() { b"true" } else { b"false" });
    } else if value.is_instance_of::<PyInt>() {
        if let Ok(n) = value.extract::<i64>() {
            write_serialized(out, &n);
        } else if let Ok(n) = value.extract::<u64>() {
            write_serialized(out, &n);
        } else {
            write_float(out, value.extract::<f64>()?);
        }
    } else if value.is_instance_of::<PyFloat>() {
        write_float(out, value.extract::<f64>()?);
    } else if let Ok(text) = value.downcast::<PyString>() {
        write_string(out, &utf8(text)?);
    } else if let Ok(dict) = value.downcast::<PyDict>() {
        out.push(b'{');
        for (index, (key, item)) in dict.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            match key.downcast::<PyString>() {
                Ok(key) => write_string(out, &utf8(key)?),
                Err(_) => write_string(out, &utf8(&key.str()?)?),
            }
            out.push(b':');
            write_json(&item, depth + 1, out)?;
        }
        out.push(b'}');
    } else if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        out.push(b'[');
        for (index, item) in value.try_iter()?.enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_json(&item?, depth + 1, out)?;
        }
        out.push(b']');
    } else if value.hasattr("to_dict")? {
        write_json(&value.call_method0("to_dict")?, depth + 1, out)?;
    } else if value.hasattr("isoformat")? {
        write_string(out, &utf8(&value.call_method0("isoformat")?.str()?)?);
    } else {
        write_string(out, &utf8(&value.str()?)?);
    }
    Ok(())
}

/// The text of a Python string as UTF-8: borrowed from the string object
/// on Python 3.10 and later, whose stable ABI has
/// `PyUnicode_AsUTF8AndSize` (the object keeps its UTF-8 form, for an
/// ASCII string its own characters); on 3.9, copied through a `bytes`
/// object, all that 3.9's stable ABI offers (pyo3's `to_cow` there).
/// A string that is not Unicode text (a lone surrogate) is a malformed
/// event.
fn utf8<'a>(text: &'a Bound<'_, PyString>) -> PyResult<Cow<'a, str>> {
    static BORROWABLE: OnceLock<bool> = OnceLock::new();
    let not_text = |err: PyErr| {
        MalformedEvent::new_err(format!("a string of the event is not UTF-8 text: {err}"))
    };
    if !*BORROWABLE.get_or_init(|| text.py().version_info() >= (3, 10)) {
        return text.to_cow().map_err(not_text);
    }
    extern "C" {
        // In the stable ABI since 3.10; pyo3 declares it only for builds
        // whose minimum is 3.10.
        fn PyUnicode_AsUTF8AndSize(
            unicode: *mut pyo3::ffi::PyObject,
            size: *mut pyo3::ffi::Py_ssize_t,
        ) -> *const std::ffi::c_char;
    }
    let mut size: pyo3::ffi::Py_ssize_t = 0;
    // SAFETY: `text` is a live `str` object. The UTF-8 form returned is
    // kept by the object, unchanged, for as long as the object lives, and
    // the slice made of it below borrows `text`, so cannot outlive it.
    let data = unsafe { PyUnicode_AsUTF8AndSize(text.as_ptr(), &mut size) };
    if data.is_null() {
        // The interpreter set the error.
        return Err(not_text(PyErr::fetch(text.py())));
    }
    // SAFETY: `size` bytes at `data`, valid UTF-8 as the function promises.
    let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size as usize) };
    Ok(Cow::Borrowed(unsafe {
        std::str::from_utf8_unchecked(bytes)
    }))
}

/// A string as JSON, as serde_json writes it: quoted, with `"`, `\` and
/// control characters escaped. Most strings of an event hold none of those
/// and are copied as they are.
fn write_string(out: &mut Vec<u8>, text: &str) {
    if text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        write_serialized(out, text);
        return;
    }
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// `value` as serde_json writes it (a string quoted and escaped, a number).
fn write_serialized<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing a string or a number into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// A float as JSON: a number, or the name of a value JSON has no number for.
fn write_float(out: &mut Vec<u8>, n: f64) {
    match n {
        n if n.is_nan() => write_serialized(out, "NaN"),
        n if n.is_infinite() && n > 0.0 => write_serialized(out, "Infinity"),
        n if n.is_infinite() => write_serialized(out, "-Infinity"),
        n => write_serialized(out, &n),
    }
}

/// A report as `{"event_id", "outcomes": {plugin: outcome}, "skipped":
/// {plugin: reason}}`.
fn report_dict(py: Python<'_>, report: &Report) -> PyResult<PyObject> {
    let outcomes = PyDict::new(py);
    for (plugin, outcome) in &report.outcomes {
        outcomes.set_item(plugin, outcome_dict(py, outcome)?)?;
    }
    let skipped = PyDict::new(py);
    for (plugin, reason) in &report.skipped {
        skipped.set_item(plugin, reason)?;
    }
    let dict = PyDict::new(py);
    dict.set_item("event_id", &report.event_id)?;
    dict.set_item("outcomes", outcomes)?;
    dict.set_item("skipped", skipped)?;
    Ok(dict.into_any().unbind())
}

/// One plugin's outcome: `{"ok", "class", "message", "retryable", "fate",
/// "latency_ms", "version"}` (`class` and `message` are `None` when ok).
fn outcome_dict<'py>(py: Python<'py>, outcome: &Outcome) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("ok", outcome.result.is_ok())?;
    let failure = outcome.result.as_ref().err();
    dict.set_item("class", failure.map(|f| f.class.as_str()))?;
    dict.set_item("message", failure.map(|f| f.message.as_str()))?;
    dict.set_item("retryable", failure.is_some_and(|f| f.retryable))?;
    dict.set_item("fate", fate_name(outcome.fate))?;
    dict.set_item("latency_ms", outcome.latency.as_secs_f64() * 1e3)?;
    dict.set_item("version", &*outcome.version)?;
    Ok(dict)
}

/// A fate's name, in the words of the CLI's reports.
fn fate_name(fate: hookhost::Fate) -> &'static str {
    use hookhost::Fate;
    match fate {
        Fate::Delivered => "delivered",
        Fate::Retrying { .. } => "retrying",
        Fate::DeadLettered => "dead_lettered",
        Fate::Stopped => "stopped",
        Fate::Replayed => "replayed",
        Fate::Suppressed => "suppressed",
        Fate::Grouped => "grouped",
    }
}

/// `{plugin: counts}` for every plugin.
fn summaries_dict(py: Python<'_>, summaries: &[PluginSummary]) -> PyResult<PyObject> {
    let dict = PyDict::new(py);
    for summary in summaries {
        let stats = &summary.stats;
        let counts = PyDict::new(py);
        counts.set_item("handled", stats.handled)?;
        let failed = PyDict::new(py);
        for class in FailureClass::ALL {
            failed.set_item(class.as_str(), stats.failed(class))?;
        }
        counts.set_item("failed", failed)?;
        counts.set_item("retried", stats.retried)?;
        counts.set_item("dead_lettered", stats.dead_lettered)?;
        counts.set_item("left_in_log", stats.left_in_log)?;
        counts.set_item("filtered", stats.filtered)?;
        counts.set_item("suppressed", stats.suppressed)?;
        counts.set_item("digests", stats.digests)?;
        counts.set_item("held", stats.held)?;
        counts.set_item("rate_limited", stats.rate_limited)?;
        counts.set_item("mean_latency_ms", stats.mean_latency().as_secs_f64() * 1e3)?;
        counts.set_item("p99_latency_ms", stats.p99_latency().as_secs_f64() * 1e3)?;
        counts.set_item("version", &summary.version)?;
        counts.set_item("path", summary.path.display().to_string())?;
        dict.set_item(&summary.name, counts)?;
    }
    Ok(dict.into_any().unbind())
}

/// The native module.
#[pymodule]
fn _hookhost(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Host>()?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("StartError", py.get_type::<StartError>())?;
    m.add("MalformedEvent", py.get_type::<MalformedEvent>())?;
    m.add("QueueFull", py.get_type::<QueueFull>())?;
    m.add("EventTooLarge", py.get_type::<EventTooLarge>())?;
    m.add("LogError", py.get_type::<LogError>())?;
    m.add("HostStopped", py.get_type::<HostStopped>())?;
    m.add("Timeout", py.get_type::<Timeout>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
