//! Helpers shared by the integration tests: where the guest components are,
//! a temporary plugins folder, events to send, the `hookhost` command with
//! folders of its own, and the process's resident memory with the lock
//! that keeps other tests from adding to it while it is measured.
#![allow(dead_code)]

pub mod flaky;
pub mod receiver;
pub mod servers;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use std::path::{Path, PathBuf};

use hookhost::{Config, Event, Host, PluginStats, PluginSummary};

/// The compiled test fixture `name` (a folder under `tests/fixtures/`).
pub fn fixture(name: &str) -> PathBuf {
    guest_dir().join("fixtures").join(format!("{name}.wasm"))
}

/// The compiled built-in plugin `name` (a folder under `plugins/`).
pub fn builtin(name: &str) -> PathBuf {
    guest_dir().join("plugins").join(format!("{name}.wasm"))
}

fn guest_dir() -> &'static Path {
    Path::new(env!("HOOKHOST_GUEST_DIR"))
}

/// A temporary plugins folder holding copies of the given fixtures.
pub fn plugins_dir(fixtures: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("create a temporary folder");
    for name in fixtures {
        std::fs::copy(fixture(name), dir.path().join(format!("{name}.wasm")))
            .unwrap_or_else(|e| panic!("copy fixture {name}: {e}"));
    }
    dir
}

/// The `hookhost` command, with its compiled-component cache
/// (`XDG_CACHE_HOME`) and data folder (`XDG_DATA_HOME`, where the built-in
/// `sql` hook keeps its SQLite file when no `--plugins` folder is given)
/// in [`cli_home`]: the test's own folders, not the user's. Each command
/// gets a data directory of its own for its write-ahead log and dead
/// letters (`HOOKHOST_DATA_DIR`), since two processes cannot share one; a
/// test that restarts a host on the same one passes `--data-dir`.
pub fn hookhost_command() -> Command {
    static COMMANDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let home = cli_home();
    let n = COMMANDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookhost"));
    command.env("XDG_CACHE_HOME", home.join("cache"));
    command.env("XDG_DATA_HOME", home.join("data"));
    command.env("HOOKHOST_DATA_DIR", home.join(format!("data-dir-{n}")));
    command
}

/// This test binary's folder for the command's cache and data:
/// `$CARGO_TARGET_TMPDIR/hookhost-cli/<binary name>`. It is removed and
/// made anew the first time a process asks for it, so nothing (rows in the
/// `sql` hook's file, cache entries) carries over from an earlier run, and
/// each binary leaves at most this one folder behind.
pub fn cli_home() -> &'static Path {
    static HOME: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    HOME.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        let binary = exe
            .file_stem()
            .expect("the test binary's name")
            .to_string_lossy()
            .into_owned();
        let home = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("hookhost-cli")
            .join(binary);
        match std::fs::remove_dir_all(&home) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("remove {}: {e}", home.display()),
        }
        std::fs::create_dir_all(&home).unwrap_or_else(|e| panic!("create {}: {e}", home.display()));
        home
    })
}

/// Serialises the tests that measure the process's resident memory
/// ([`resident_bytes`]) against the other tests of the same binary, which
/// run on parallel threads and would add to it: a measuring test holds
/// `EXCLUSIVE.write()` while it measures, every other test of that binary
/// holds `EXCLUSIVE.read()` (`blocking_read()` outside a runtime).
pub static EXCLUSIVE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The process's resident memory (`VmRSS`) in bytes, from
/// `/proc/self/status`. It is the whole process's: hold
/// [`EXCLUSIVE`]`.write()` around the measurement.
pub fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no VmRSS line in /proc/self/status:\n{status}"));
    kib * 1024
}

/// Runs `command` with `stdin` as its input, to the end.
pub fn run_with_input(command: &mut Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hookhost");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().expect("hookhost finishes")
}

/// A config parsed from TOML text. Unless the text says otherwise, every
/// event is delivered once and the circuit breaker is off
/// (`max_attempts = 1`, `breaker_threshold = 0` in `[defaults]`): the tests
/// of other features count deliveries one per event, and send many events
/// to plugins that fail on purpose. The delivery tests set these keys.
pub fn config(toml: &str) -> Config {
    let mut config = Config::parse(toml, Path::new("test.toml")).expect("valid test config");
    config.defaults.max_attempts.get_or_insert(1);
    config.defaults.breaker_threshold.get_or_insert(0);
    config
}

/// A host over `dir` with `config`, asserting every file loaded.
pub async fn host(dir: &Path, config: Config) -> Host {
    let host = Host::builder()
        .plugins_dir(dir)
        .config(config)
        .build()
        .await
        .expect("host builds");
    assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());
    host
}

/// A host running only the built-in plugin `name`, configured by `toml`,
/// asserting it loaded.
pub async fn builtin_host(name: &str, toml: &str) -> Host {
    let dir = tempfile::tempdir().expect("create a temporary folder");
    std::fs::copy(builtin(name), dir.path().join(format!("{name}.wasm")))
        .unwrap_or_else(|e| panic!("copy built-in plugin {name}: {e}"));
    host(dir.path(), config(toml)).await
}

/// A `ProfilingStarted` event carrying `seq` in its metadata, which the
/// `counts` fixture checks arrives in order.
pub fn event(seq: u64) -> Event {
    Event::from_json(&format!(
        r#"{{"event_type": "ProfilingStarted", "timestamp": "2025-01-15T10:30:00",
            "metadata": {{"table": "orders", "run_id": "run-1", "seq": {seq}}}}}"#
    ))
    .expect("valid test event")
}

/// Sends one event, asserts every plugin handled it, and shuts the host
/// down.
pub async fn serves_then_shuts_down(host: Host) {
    let report = host.emit_with_report(event(1)).unwrap().wait().await;
    assert!(
        report.outcomes.iter().all(|(_, o)| o.result.is_ok()),
        "{report:?}"
    );
    host.shutdown().await;
}

/// The counts so far of live plugin `name`.
pub fn stats(host: &Host, name: &str) -> PluginStats {
    host.summaries()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no plugin {name}"))
        .stats
}

/// The final counts of plugin `name` among `summaries` (from a shutdown).
pub fn final_stats(summaries: &[PluginSummary], name: &str) -> PluginStats {
    summaries
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no plugin {name}"))
        .stats
        .clone()
}

/// Waits until `condition` holds, failing the test after 20 seconds.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !condition() {
        assert!(
            started.elapsed().as_secs() < 20,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// `component` with a custom section of `padding` bytes appended: the same
/// hook, with other content (and so another version hash).
pub fn variant(component: &[u8], name: &str, padding: usize) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut payload = Vec::new();
    leb128(name.len(), &mut payload);
    payload.extend_from_slice(name.as_bytes());
    payload.resize(payload.len() + padding, 0);
    let mut out = component.to_vec();
    out.push(0);
    leb128(payload.len(), &mut out);
    out.extend(payload);
    out
}

/// SHA-256 of `bytes` in hex, as the host names versions.
pub fn version_of(bytes: &[u8]) -> String {
    hookhost::cache::content_hash(bytes)
}

/// A small seeded generator (xorshift64*): the same values on every run, so
/// a failure names an input that can be tried again, without a dependency.
pub struct Rng(pub u64);

impl Rng {
    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Copies the folder `from` into `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The lines of `stream` (a child's stdout or stderr), read on a thread of
/// their own so that the child never blocks on a full pipe, as they come.
pub fn forward_lines(
    stream: impl std::io::Read + Send + 'static,
) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}
