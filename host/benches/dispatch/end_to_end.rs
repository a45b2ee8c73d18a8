//! The whole path of a profiler's events, from JSON text to the hooks:
//! intake alone (no plugin), through the library, and through
//! `hookhost run` on a file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hookhost::sources::lines::{BoundedLines, Line};
use hookhost::{Config, Event, Host};

use super::common::profiler_line;
use super::PLUGINS;

/// Events `hookhost run` reads before handing them over, as its own
/// `SEND_BATCH`.
const SEND_BATCH: usize = 256;
/// The default event size limit (`[engine] max_event_kib = 1024`).
const MAX_EVENT: usize = 1 << 20;

/// `events` lines of a profiler's stream, each ending in a newline.
pub fn profiler_stream(events: u64) -> String {
    (0..events).map(|seq| profiler_line(seq) + "\n").collect()
}

/// How a line becomes an event.
pub type Reader = fn(&str) -> Event;

/// `Event::from_json`, as `hookhost run` reads a line.
pub fn one_pass(line: &str) -> Event {
    Event::from_json(line).expect("a valid event")
}

/// The general reader alone: the line parsed into a `serde_json::Value`
/// first (what `Event::from_json` did for every line before its one-pass
/// reader), the baseline for [`one_pass`].
pub fn general(line: &str) -> Event {
    let value = serde_json::from_str(line).expect("JSON");
    Event::from_json_value(value).expect("a valid event")
}

/// Nanoseconds per event to read `text` as `hookhost run` reads stdin
/// (bounded lines from a 64 KiB buffer, each read by `read`) and hand the
/// events to a host without plugins, 256 at a time (`Host::send_batch`).
pub async fn intake(text: &str, read: Reader) -> f64 {
    let host = Host::builder().build().await.expect("host");
    let reader = tokio::io::BufReader::with_capacity(64 << 10, text.as_bytes());
    let mut lines = BoundedLines::new(reader, MAX_EVENT);
    let mut batch = Vec::with_capacity(SEND_BATCH);
    let mut events = 0u64;
    let started = Instant::now();
    while let Some((_, line)) = lines.next_line().await.expect("in memory") {
        let Line::Text(text) = line else {
            panic!("a line of the stream is refused: {line:?}");
        };
        batch.push(read(&text));
        if batch.len() == SEND_BATCH {
            events += send(&host, &mut batch).await;
        }
    }
    events += send(&host, &mut batch).await;
    let elapsed = started.elapsed();
    host.shutdown().await;
    elapsed.as_secs_f64() * 1e9 / events as f64
}

async fn send(host: &Host, batch: &mut Vec<Event>) -> u64 {
    let results = host.send_batch(std::mem::take(batch)).await;
    assert!(results.iter().all(Result::is_ok), "every event is accepted");
    results.len() as u64
}

/// How the library run hands its events to the host.
#[derive(Clone, Copy)]
pub enum Library {
    /// One at a time through `Host::emit`, without a write-ahead log.
    Emit,
    /// Through `Host::emit`, with a write-ahead log: each call returns once
    /// its event is synced to disk.
    EmitLogged,
    /// 256 at a time through `Host::send_batch`, with a write-ahead log
    /// (one sync per batch), as `hookhost run` does.
    BatchesLogged,
}

/// Time to read every line of `text` with `Event::from_json` and give it
/// to the host as `how` says, five `noop` plugins reusing their instances,
/// until every plugin has handled every event.
pub async fn library(text: &str, how: Library) -> Duration {
    let data = tempfile::tempdir().expect("temp dir");
    let mut builder = Host::builder().config(five_plugins_config());
    for n in 0..PLUGINS {
        builder = builder.plugin_bytes(format!("noop-{n}"), noop_bytes());
    }
    if !matches!(how, Library::Emit) {
        builder = builder.data_dir(data.path());
    }
    let host = builder.build().await.expect("host");
    // First instances and code pages, outside the timing.
    let warm = Event::from_json(&profiler_line(0)).expect("valid");
    host.emit_with_report(warm).expect("accepted").wait().await;

    let started = Instant::now();
    let mut events = 0;
    let mut batch = Vec::with_capacity(SEND_BATCH);
    for line in text.lines() {
        let event = Event::from_json(line).expect("valid");
        events += 1;
        match how {
            Library::Emit | Library::EmitLogged => host.emit(event).expect("accepted"),
            Library::BatchesLogged => {
                batch.push(event);
                if batch.len() == SEND_BATCH {
                    send(&host, &mut batch).await;
                }
            }
        }
    }
    send(&host, &mut batch).await;
    let summaries = host.shutdown().await;
    let elapsed = started.elapsed();
    for summary in summaries {
        assert_eq!(summary.stats.handled, events + 1, "{}", summary.name);
    }
    elapsed
}

/// A temporary folder with five copies of the `noop` plugin and a config
/// file, for `hookhost run`.
pub struct CliSetup {
    dir: tempfile::TempDir,
}

impl CliSetup {
    pub fn new() -> CliSetup {
        let dir = tempfile::tempdir().expect("temp dir");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).expect("plugins dir");
        for n in 0..PLUGINS {
            std::fs::write(plugins.join(format!("noop-{n}.wasm")), noop_bytes()).expect("copy");
        }
        std::fs::write(dir.path().join("hookhost.toml"), FIVE_PLUGINS).expect("config");
        std::fs::write(dir.path().join("empty.jsonl"), "").expect("empty input");
        CliSetup { dir }
    }

    /// Writes `text` as the input file.
    pub fn input(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("events.jsonl");
        std::fs::write(&path, text).expect("input file");
        path
    }

    /// Wall time of `hookhost run` (the release build) on `input`, five
    /// plugins, with the write-ahead log (a data folder of its own) when
    /// `logged`, else `--in-memory`; from start to exit. The compiled
    /// plugins come from a cache the first run fills.
    pub fn run(&self, input: &Path, logged: bool) -> Duration {
        let data = tempfile::tempdir_in(self.dir.path()).expect("data dir");
        // Another build to compare with, if asked for.
        let binary = std::env::var_os("HOOKHOST_BENCH_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_hookhost").into());
        let mut command = Command::new(binary);
        command
            .arg("run")
            .arg("--plugins")
            .arg(self.dir.path().join("plugins"))
            .arg("--config")
            .arg(self.dir.path().join("hookhost.toml"))
            .env("XDG_CACHE_HOME", self.dir.path().join("cache"))
            .env("XDG_DATA_HOME", data.path())
            .env_remove("RUST_LOG")
            .stdin(std::fs::File::open(input).expect("input"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if logged {
            command.arg("--data-dir").arg(data.path());
        } else {
            command.arg("--in-memory");
        }
        let started = Instant::now();
        let output = command.output().expect("hookhost runs");
        let elapsed = started.elapsed();
        assert!(
            output.status.success(),
            "hookhost run failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        elapsed
    }

    /// [`CliSetup::run`] on an empty input: what starting and stopping
    /// cost, taken off the runs with events. The second of two runs, the
    /// first having filled the cache.
    pub fn startup(&self, logged: bool) -> Duration {
        let empty = self.dir.path().join("empty.jsonl");
        self.run(&empty, logged);
        self.run(&empty, logged)
    }
}

fn noop_bytes() -> Vec<u8> {
    let path = Path::new(env!("HOOKHOST_GUEST_DIR")).join("fixtures/noop.wasm");
    std::fs::read(&path).expect("the fixture is built")
}

/// Five plugins, each reusing its instance (the default).
const FIVE_PLUGINS: &str = "[plugins.noop-0]\n[plugins.noop-1]\n[plugins.noop-2]\n\
                            [plugins.noop-3]\n[plugins.noop-4]\n";

fn five_plugins_config() -> Config {
    Config::parse(FIVE_PLUGINS, Path::new("bench.toml")).expect("config")
}
