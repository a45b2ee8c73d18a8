//! Per-event cost: events per second and time per plugin per event through
//! five trivial plugins, measured several ways in one run:
//!
//! 1. native Rust trait objects behind the same queue-and-worker shape as
//!    the host (the floor: what dispatch costs without WebAssembly);
//! 2. five wasm plugins, each reusing its instance (the default);
//! 3. five wasm plugins with a fresh instance per event;
//! 4. five wasm batch hooks (`handle-batch`), up to 256 events per call;
//! 5. as 2, with routing rules on every plugin (type, severity and table
//!    patterns) that let every event through;
//! 6. as 2, with a `dedup_key` on every plugin (the README's template) that
//!    gives every event a key of its own, so none is suppressed;
//!
//! the routing decisions alone, on one thread: the five plugins'
//! filters, their deduplication (key rendered, state checked), and both
//! with the event read once for all of it (as dispatch does), as a
//! share of what delivering an event costs in run 2: end-to-end runs move by
//! 10% from one to the next on these shared machines, more than routing
//! costs;
//!
//! and the whole path of a profiler's stream (lines of about 300 bytes as
//! baselinr writes them, [`end_to_end`]): intake alone (reading the lines
//! and handing the events to a host without plugins), then into the five
//! plugins through the library (`Event::from_json` and `Host::emit`) and
//! through `hookhost run` on a file, each with the write-ahead log off and
//! on; and the instructions per event of run 2's call with one plugin,
//! counted by callgrind ([`callgrind`]).
//!
//! `cargo bench --bench dispatch` runs it in full; `cargo test` runs it with
//! few events to check it still works (without callgrind).

#[path = "../common/mod.rs"]
mod common;

mod callgrind;
mod end_to_end;

use callgrind::Counted;
use end_to_end::Library;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookhost::routing::dedup::DedupState;
use hookhost::routing::{DedupRule, EventFields, RouteFilter, RouteRules};
use hookhost::{Config, Event, Host};
use tokio::sync::mpsc;

const PLUGINS: usize = 5;
/// Events taken off a queue per wake-up, as the host's workers do.
const BATCH: usize = 256;

/// Goals, in nanoseconds: intake per event, a reused and a fresh call per
/// plugin per event, an event end to end through five plugins.
const GOAL_INTAKE: f64 = 1_000.0;
const GOAL_REUSED: f64 = 800.0;
const GOAL_FRESH: f64 = 10_000.0;
const GOAL_END_TO_END: f64 = 5_000.0;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == callgrind::CHILD) {
        let usage = "--callgrind-child call|intake EVENTS CACHE_DIR";
        let (what, events, cache) = match &args[at + 1..] {
            [what, events, cache, ..] => (what, events.parse().expect(usage), cache),
            _ => panic!("{usage}"),
        };
        callgrind::child(what, events, Path::new(cache));
        return;
    }
    let full = args.iter().any(|arg| arg == "--bench");
    let (reused_events, fresh_events, stream_events) = if full {
        (200_000, 20_000, 50_000)
    } else {
        (2_000, 200, 500)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        println!(
            "dispatch benchmark: {PLUGINS} trivial plugins, {} cores, {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            common::cpu_model()
        );
        let native = native(reused_events).await;
        report("native trait objects", reused_events, native);
        let reused = wasm(reused_events, "noop", "reuse_instance = true", "").await;
        report("wasm, instance reused", reused_events, reused);
        let routed = wasm(reused_events, "noop", "reuse_instance = true", ROUTING).await;
        report("wasm, reused, routed", reused_events, routed);
        let deduplicated = wasm(reused_events, "noop", "reuse_instance = true", DEDUP).await;
        report("wasm, reused, dedup", reused_events, deduplicated);
        let fresh = wasm(fresh_events, "noop", "reuse_instance = false", "").await;
        report("wasm, fresh instance", fresh_events, fresh);
        let batched = wasm(
            reused_events,
            "noop-batch",
            "batch_size = 256\nbatch_wait_ms = 1",
            "",
        )
        .await;
        report("wasm, batch hook", reused_events, batched);

        let per = |d: Duration, n: u64| d.as_secs_f64() * 1e9 / (n as f64 * PLUGINS as f64);
        let (native_ns, reused_ns, fresh_ns, batched_ns) = (
            per(native, reused_events),
            per(reused, reused_events),
            per(fresh, fresh_events),
            per(batched, reused_events),
        );
        println!(
            "ratio wasm reused / native:  {:>8.1}x",
            reused_ns / native_ns
        );
        println!(
            "ratio wasm fresh / reused:   {:>8.1}x",
            fresh_ns / reused_ns
        );
        println!(
            "ratio wasm batch / native:   {:>8.1}x",
            batched_ns / native_ns
        );
        let routed_ratio = routed.as_secs_f64() / reused.as_secs_f64();
        println!("ratio routed / reused:       {routed_ratio:>8.2}x (end to end, noisy)");
        let dedup_ratio = deduplicated.as_secs_f64() / reused.as_secs_f64();
        println!("ratio dedup / reused:        {dedup_ratio:>8.2}x (end to end, noisy)");
        let delivering_ns = reused_ns * PLUGINS as f64;
        let filter_ns = routing(reused_events);
        let dedup_ns = dedup(reused_events, PROFILER_KEYS);
        let dedup_new_ns = dedup(reused_events, reused_events);
        let share = |ns: f64| ns / delivering_ns * 100.0;
        println!(
            "filters alone:               {filter_ns:>6.0} ns per event for {PLUGINS} plugins, \
             {:>5.1}% of delivering it",
            share(filter_ns)
        );
        println!(
            "dedup alone, {PROFILER_KEYS} keys:     {dedup_ns:>6.0} ns per event for {PLUGINS} \
             plugins, {:>5.1}% of delivering it",
            share(dedup_ns)
        );
        println!(
            "dedup alone, every key new:  {dedup_new_ns:>6.0} ns per event for {PLUGINS} \
             plugins, {:>5.1}% of delivering it",
            share(dedup_new_ns)
        );
        let routing_ns = routing_and_dedup(reused_events, PROFILER_KEYS);
        let worst_ns = routing_and_dedup(reused_events, reused_events);
        let (routing_share, worst_share) = (routing_ns / delivering_ns, worst_ns / delivering_ns);
        println!(
            "routing (filters and dedup): {routing_ns:>6.0} ns per event for {PLUGINS} plugins, \
             {:.1}% of delivering it ({worst_ns:.0} ns, {:.1}% with every key new)",
            routing_share * 100.0,
            worst_share * 100.0
        );
        // A profiler's stream, end to end.
        let stream = end_to_end::profiler_stream(stream_events);
        let bytes = stream.len() as f64 / stream_events as f64;
        println!("a profiler's stream: {stream_events} events, {bytes:.0} bytes a line");
        let intake_ns = end_to_end::intake(&stream, end_to_end::one_pass).await;
        let general_ns = end_to_end::intake(&stream, end_to_end::general).await;
        println!(
            "intake alone (read, build, hand over): {intake_ns:>7.0} ns per event; \
             {general_ns:.0} ns with the general reader ({:.1}x)",
            general_ns / intake_ns
        );
        let per_event = |d: Duration| d.as_secs_f64() * 1e9 / stream_events as f64;
        let library = per_event(end_to_end::library(&stream, Library::Emit).await);
        let library_logged = per_event(end_to_end::library(&stream, Library::BatchesLogged).await);
        let few = stream.lines().take(200).map(|line| format!("{line}\n")).collect::<String>();
        let emit_logged = end_to_end::library(&few, Library::EmitLogged).await.as_secs_f64() * 1e9
            / few.lines().count() as f64;
        println!(
            "end to end, library:       {library:>7.0} ns per event (Host::emit), \
             {library_logged:>7.0} with the write-ahead log (Host::send_batch of 256)"
        );
        println!(
            "                           {emit_logged:>7.0} ns per event through Host::emit with \
             the write-ahead log (one disk sync per call)"
        );
        let cli = end_to_end::CliSetup::new();
        let input = cli.input(&stream);
        let (startup, startup_logged) = (cli.startup(false), cli.startup(true));
        let run = per_event(cli.run(&input, false).saturating_sub(startup));
        let run_logged = per_event(cli.run(&input, true).saturating_sub(startup_logged));
        println!(
            "end to end, hookhost run:  {run:>7.0} ns per event, {run_logged:>7.0} with the \
             write-ahead log (startup and stop, {:.0} and {:.0} ms, taken off)",
            startup.as_secs_f64() * 1e3,
            startup_logged.as_secs_f64() * 1e3
        );
        println!(
            "ratio end to end / {PLUGINS} reused calls: {:>5.2}x (Host::emit), {:.2}x (hookhost run)",
            library / delivering_ns,
            run / delivering_ns
        );
        if !full {
            println!("(smoke run with few events; `cargo bench --bench dispatch` measures)");
            return;
        }
        let cache = tempfile::tempdir().expect("temp dir");
        callgrind::host(cache.path()).await.shutdown().await;
        for (what, label) in [
            (Counted::Intake, "intake, no plugin (read, build, hand over)"),
            (Counted::Call, "wasm reused, 1 plugin (Host::send to the hook's return)"),
        ] {
            match callgrind::instructions_per_event(what, cache.path()) {
                Ok(count) => println!("callgrind, {label}: {count:.0} instructions per event"),
                Err(why) => println!("callgrind: not counted ({why})"),
            }
        }
        let goal = |label: &str, ns: f64, goal: f64| {
            println!("goal {label} <= {goal:.0} ns: {} ({ns:.0} ns)", verdict(ns <= goal));
        };
        goal("intake per event", intake_ns, GOAL_INTAKE);
        goal("per plugin per event, reused", reused_ns, GOAL_REUSED);
        goal("per plugin per event, fresh", fresh_ns, GOAL_FRESH);
        goal("per plugin per event, batch hook", batched_ns, GOAL_REUSED);
        goal("per event, Host::emit, 5 plugins", library, GOAL_END_TO_END);
        goal("per event, Host::send_batch, 5 plugins, logged", library_logged, GOAL_END_TO_END);
        goal("per event, hookhost run, 5 plugins", run, GOAL_END_TO_END);
        goal("per event, hookhost run, 5 plugins, logged", run_logged, GOAL_END_TO_END);
        println!(
            "goal routing adds < 10%: {} ({:.1}%; with every key new: {}, {:.1}%)",
            verdict(routing_share < 0.10),
            routing_share * 100.0,
            verdict(worst_share < 0.10),
            worst_share * 100.0
        );
    });
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn report(label: &str, events: u64, elapsed: Duration) {
    let per_event = elapsed.as_secs_f64() / events as f64;
    println!(
        "{label:<24} {:>10.0} events/s  {:>8.0} ns per event  {:>8.0} ns per plugin per event",
        1.0 / per_event,
        per_event * 1e9,
        per_event * 1e9 / PLUGINS as f64
    );
}

/// A profiler-shaped event, its column different for every `seq`, so that
/// the [`DEDUP`] key differs for every event.
fn event(seq: u64) -> Event {
    event_on(seq, seq)
}

/// A profiler-shaped event about column `c<column>`.
fn event_on(seq: u64, column: u64) -> Event {
    Event::from_json(&format!(
        r#"{{"event_type": "ProfilingStarted", "timestamp": "2025-01-15T10:30:00Z",
            "metadata": {{"table": "orders", "run_id": "run-1", "seq": {seq},
                          "column": "c{column}", "metric": "mean"}}}}"#
    ))
    .expect("valid event")
}

/// Distinct keys in a profiler's stream as the dedup benchmark has it: a
/// hundred tables of ten columns, each reported once per run.
const PROFILER_KEYS: u64 = 1_000;

/// The README's deduplication key.
const DEDUP_KEY: &str =
    "{{ event_type }}:{{ metadata.table }}:{{ metadata.column }}:{{ metadata.metric }}";

/// A `dedup_key` for every plugin in the end-to-end run.
const DEDUP: &str = "dedup_key = \"{{ event_type }}:{{ metadata.table }}:{{ metadata.column }}:{{ metadata.metric }}\"";

/// Nanoseconds per event for the five plugins' deduplication, as the host
/// does it: the [`DEDUP_KEY`] rendered once (dispatch renders a template
/// once for every plugin that has it) and each plugin's state checked (in
/// its worker).
/// The events cycle through `keys` distinct keys: with as many keys as
/// events, each is let through and remembered (past the 100,000 keys a
/// plugin keeps, the oldest is forgotten for each new one); with
/// [`PROFILER_KEYS`], all but the first of each key are repeats.
fn dedup(events: u64, keys: u64) -> f64 {
    let rule = DedupRule::new(DEDUP_KEY, Duration::from_secs(3_600), false).expect("template");
    let mut states: Vec<DedupState> = (0..PLUGINS).map(|_| DedupState::default()).collect();
    per_event_in_runs(
        events,
        |seq| event_on(seq, seq % keys),
        |seq, event| {
            let rendered = rule.rendered(event).expect("renders");
            for state in &mut states {
                let verdict = state.check(&rule, rendered, event.severity, seq as i64);
                std::hint::black_box(verdict);
            }
        },
    )
}

/// Nanoseconds per event to decide the routes of `events` events through
/// five plugins with the [`ROUTING`] rules, as dispatch does (the metadata
/// read once for all five).
fn routing(events: u64) -> f64 {
    let filters = routing_filters();
    per_event_in_runs(events, event, |_, event| {
        let mut fields = EventFields::new(event);
        for filter in &filters {
            std::hint::black_box(filter.check_with(&mut fields)).expect("passes");
        }
    })
}

/// Nanoseconds per event for both: the five plugins' filters and their
/// deduplication, as dispatch and the workers do them, the event read once
/// for the filters and the key.
fn routing_and_dedup(events: u64, keys: u64) -> f64 {
    let filters = routing_filters();
    let rule = DedupRule::new(DEDUP_KEY, Duration::from_secs(3_600), false).expect("template");
    let mut states: Vec<DedupState> = (0..PLUGINS).map(|_| DedupState::default()).collect();
    per_event_in_runs(
        events,
        |seq| event_on(seq, seq % keys),
        |seq, event| {
            let mut fields = EventFields::new(event);
            for filter in &filters {
                std::hint::black_box(filter.check_with(&mut fields)).expect("passes");
            }
            let rendered = rule.rendered_with(&mut fields).expect("renders");
            for state in &mut states {
                let verdict = state.check(&rule, rendered, event.severity, seq as i64);
                std::hint::black_box(verdict);
            }
        },
    )
}

/// Nanoseconds per event for `decide` over `events` events made by
/// `make`. The events are made in runs of [`RUN`], each run just before it
/// is decided and only the deciding timed: dispatch routes an event it has
/// just read, still in the cache, and so does this.
fn per_event_in_runs(
    events: u64,
    make: impl Fn(u64) -> Event,
    mut decide: impl FnMut(u64, &Event),
) -> f64 {
    const RUN: u64 = 256;
    let mut timed = Duration::ZERO;
    let mut run = Vec::with_capacity(RUN as usize);
    for start in (0..events).step_by(RUN as usize) {
        run.clear();
        run.extend((start..(start + RUN).min(events)).map(&make));
        let started = Instant::now();
        for (seq, event) in (start..).zip(&run) {
            decide(seq, event);
        }
        timed += started.elapsed();
    }
    timed.as_secs_f64() * 1e9 / events as f64
}

/// A filter with the [`ROUTING`] rules for each plugin.
fn routing_filters() -> Vec<RouteFilter> {
    let rules = RouteRules {
        events: vec!["Profiling*".into()],
        min_severity: Some(hookhost::Severity::Low),
        tables: vec!["ord*".into()],
        ..RouteRules::default()
    };
    (0..PLUGINS).map(|_| RouteFilter::new(&rules)).collect()
}

/// Routing rules that every benchmark event passes: a type pattern, a
/// severity floor that lets events without one through, a table pattern
/// (which reads the event's metadata).
const ROUTING: &str = "events = [\"Profiling*\"]\nmin_severity = \"low\"\ntables = [\"ord*\"]";

/// Time to dispatch `events` events through five copies of the wasm
/// `fixture`, configured with `defaults` and, for each plugin, `routing`,
/// and finish them all.
async fn wasm(events: u64, fixture: &str, defaults: &str, routing: &str) -> Duration {
    let path = Path::new(env!("HOOKHOST_GUEST_DIR")).join(format!("fixtures/{fixture}.wasm"));
    let bytes = std::fs::read(&path).expect("the fixture is built");
    let mut config = format!("[defaults]\n{defaults}\n");
    for n in 0..PLUGINS {
        config += &format!("[plugins.noop-{n}]\n{routing}\n");
    }
    let config = Config::parse(&config, Path::new("bench.toml")).expect("config");
    let mut builder = Host::builder().config(config);
    for n in 0..PLUGINS {
        builder = builder.plugin_bytes(format!("noop-{n}"), bytes.clone());
    }
    let host = builder.build().await.expect("host");
    let prepared: Vec<Event> = (0..events).map(event).collect();
    // Warm up: first instances, code pages, allocator; with events of
    // their own, so that no measured event repeats a warm-up's dedup key.
    for seq in events..events + 100 {
        host.send(event(seq)).await.expect("accepted");
    }
    let warm = host
        .emit_with_report(event(events + 100))
        .expect("accepted");
    warm.wait().await;

    let started = Instant::now();
    for event in prepared {
        host.send(event).await.expect("accepted");
    }
    let summaries = host.shutdown().await;
    let elapsed = started.elapsed();
    for summary in summaries {
        assert_eq!(summary.stats.failed_total(), 0, "{}", summary.name);
        assert_eq!(summary.stats.filtered, 0, "{}", summary.name);
        assert_eq!(summary.stats.suppressed, 0, "{}", summary.name);
    }
    elapsed
}

/// The native floor: the same shape (a queue and a task per hook, batched
/// draining, a shared event), calling a Rust trait object.
trait NativeHook: Send {
    fn handle(&mut self, event: &Event) -> Result<(), String>;
}

struct Noop(u64);

impl NativeHook for Noop {
    fn handle(&mut self, event: &Event) -> Result<(), String> {
        self.0 += std::hint::black_box(event.id.len()) as u64;
        Ok(())
    }
}

async fn native(events: u64) -> Duration {
    let mut queues = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..PLUGINS {
        let (sender, mut receiver) = mpsc::channel::<Arc<Event>>(65_536);
        let mut hook: Box<dyn NativeHook> = Box::new(Noop(0));
        tasks.push(tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while receiver.recv_many(&mut batch, BATCH).await > 0 {
                for event in batch.drain(..) {
                    let started = Instant::now();
                    let result = hook.handle(&event).is_ok();
                    std::hint::black_box((result, started.elapsed()));
                }
            }
        }));
        queues.push(sender);
    }
    let prepared: Vec<Event> = (0..events).map(event).collect();
    let started = Instant::now();
    for event in prepared {
        let event = Arc::new(event);
        for queue in &queues {
            queue.send(event.clone()).await.expect("open");
        }
    }
    drop(queues);
    for task in tasks {
        task.await.expect("task");
    }
    started.elapsed()
}
