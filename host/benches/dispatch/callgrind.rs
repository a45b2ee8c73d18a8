//! Instructions per event, counted by `valgrind --tool=callgrind`: the
//! same for the same binary and input whatever else the machine does, so a
//! change can be judged where wall-clock times move by 10% from one run to
//! the next. Two things are counted: delivering an event to one plugin
//! reusing its instance ([`Counted::Call`]), and intake ([`Counted::Intake`]).
//!
//! The benchmark runs itself under callgrind twice for each
//! (`--callgrind-child WHAT N CACHE_DIR`): both runs prepare the same
//! events, one handles `FEW` of them and the other `MANY`; the difference
//! in instructions, divided by the difference in events, is what one event
//! costs, everything that happens once (startup, loading the compiled
//! plugin from a cache filled beforehand, shutdown) cancelled out.

use std::path::Path;
use std::process::Command;

use hookhost::{Event, Host};

use super::common::profiler_line;

/// Events delivered by the two counted runs.
const FEW: u64 = 1_000;
const MANY: u64 = 3_000;

/// The arguments that make the benchmark the counted child: `CHILD WHAT
/// EVENTS CACHE_DIR`.
pub const CHILD: &str = "--callgrind-child";

/// What a counted run does with its events.
#[derive(Clone, Copy)]
pub enum Counted {
    /// `Host::send` to one `noop` plugin reusing its instance, on one
    /// thread: from the call to the hook's return.
    Call,
    /// The profiler's stream read as `hookhost run` reads it and handed to
    /// a host without plugins ([`super::end_to_end::intake`]).
    Intake,
}

impl Counted {
    fn name(self) -> &'static str {
        match self {
            Counted::Call => "call",
            Counted::Intake => "intake",
        }
    }
}

/// Instructions per event, or why they could not be counted.
pub fn instructions_per_event(what: Counted, cache: &Path) -> Result<f64, String> {
    if Command::new("valgrind").arg("--version").output().is_err() {
        return Err("valgrind is not installed".into());
    }
    // The counted runs' engine may not be the one that filled the cache
    // (under valgrind the instance pool cannot be reserved, see
    // `engine.rs`), so a first run fills it for them.
    count(what, cache, FEW)?;
    let few = count(what, cache, FEW)?;
    let many = count(what, cache, MANY)?;
    Ok((many as f64 - few as f64) / (MANY - FEW) as f64)
}

/// Instructions callgrind counted in a child run handling `events`.
fn count(what: Counted, cache: &Path, events: u64) -> Result<u64, String> {
    let exe = std::env::current_exe().map_err(|err| err.to_string())?;
    let output = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(exe)
        .args([CHILD, what.name(), &events.to_string()])
        .arg(cache)
        .output()
        .map_err(|err| format!("cannot run valgrind: {err}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("the counted run failed: {stderr}"));
    }
    // `==123== Collected : 456789`
    stderr
        .lines()
        .find_map(|line| line.split("Collected : ").nth(1))
        .and_then(|count| count.trim().parse().ok())
        .ok_or_else(|| format!("no instruction count in callgrind's output: {stderr}"))
}

/// A host with the `noop` plugin, its compiled code cached in `cache`: the
/// parent builds it once to fill the cache.
pub async fn host(cache: &Path) -> Host {
    let path = Path::new(env!("HOOKHOST_GUEST_DIR")).join("fixtures/noop.wasm");
    let bytes = std::fs::read(&path).expect("the fixture is built");
    Host::builder()
        .cache_dir(cache)
        .plugin_bytes("noop", bytes)
        .build()
        .await
        .expect("host")
}

/// The counted child: prepares `MANY` events, handles the first `events`
/// as `what` says, on a single thread, and stops.
pub fn child(what: &str, events: u64, cache: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        match what {
            "call" => {
                let host = host(cache).await;
                let prepared: Vec<Event> = (0..MANY)
                    .map(|seq| Event::from_json(&profiler_line(seq)).expect("valid"))
                    .collect();
                for event in prepared.into_iter().take(events as usize) {
                    host.send(event).await.expect("accepted");
                }
                let summaries = host.shutdown().await;
                assert_eq!(summaries[0].stats.handled, events);
            }
            "intake" => {
                let stream = super::end_to_end::profiler_stream(MANY);
                let end = stream
                    .match_indices('\n')
                    .nth(events as usize - 1)
                    .expect("lines")
                    .0;
                super::end_to_end::intake(&stream[..=end], super::end_to_end::one_pass).await;
            }
            other => panic!("cannot count {other:?}"),
        }
    });
}
