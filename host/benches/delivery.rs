//! Reliable delivery's cost, in one run: events per second accepted and
//! delivered through five trivial plugins (the `noop` fixture under five
//! names) in memory and with the write-ahead log in a temporary data
//! directory, and the time to replay 10,000 dead letters through them.
//!
//! Events are handed to the host two ways: by many concurrent `Host::send`
//! callers, as a busy embedder would (with the log on, each `send` resolves
//! once its event is synced, and callers waiting at the same time share one
//! sync), and with `Host::send_batch`, as `hookhost run` hands over what it
//! has read (one sync per batch).
//!
//! `cargo bench --bench delivery` runs it in full and says whether the
//! goals hold (with the log: at least 50,000 events/s, and at least half
//! the in-memory rate); `cargo test` runs it with few events to check it
//! still works.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookhost::delivery::NewDeadLetter;
use hookhost::{Event, Host};

const PLUGINS: usize = 5;
/// Concurrent `send` callers.
const SENDERS: usize = 256;
/// Events per `send_batch` call.
const BATCH: usize = 256;
/// Concurrent `send_batch` callers.
const BATCH_SENDERS: usize = 4;
/// Events sent before timing: first instances, code pages, allocator.
const WARM_UP: u64 = 100;
/// Goal with the log on, events per second accepted and delivered.
const GOAL_EVENTS_PER_SECOND: f64 = 50_000.0;

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (events, dead_letters) = if full { (200_000, 10_000) } else { (300, 300) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        println!(
            "delivery benchmark: {PLUGINS} trivial plugins, {events} events, {} cores, {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            common::cpu_model()
        );
        let mut rates = Vec::new();
        for sending in [Sending::Each, Sending::Batches] {
            let memory = throughput(events, None, sending).await;
            memory.report(&format!("{}, in memory", sending.label()), events);
            let data = tempfile::tempdir().expect("a temporary data directory");
            let logged = throughput(events, Some(data.path()), sending).await;
            logged.report(&format!("{}, write-ahead log", sending.label()), events);
            let (memory_rate, logged_rate) =
                (memory.delivered_rate(events), logged.delivered_rate(events));
            println!(
                "ratio write-ahead log / in memory, {}: {:.2}",
                sending.label(),
                logged_rate / memory_rate
            );
            rates.push((sending, memory_rate, logged_rate));
        }
        let replay = replay(dead_letters).await;
        println!(
            "replay of {dead_letters} dead letters: {:.3} s ({:.0} entries/s)",
            replay.as_secs_f64(),
            dead_letters as f64 / replay.as_secs_f64()
        );
        if !full {
            println!("(smoke run with few events; `cargo bench --bench delivery` measures)");
            return;
        }
        for (sending, memory_rate, logged_rate) in rates {
            let label = sending.label();
            println!(
                "goal >= {GOAL_EVENTS_PER_SECOND:.0} events/s with the log, {label}: {} \
                 ({logged_rate:.0})",
                verdict(logged_rate >= GOAL_EVENTS_PER_SECOND)
            );
            let ratio = logged_rate / memory_rate;
            println!(
                "goal with the log >= half the in-memory rate, {label}: {} ({ratio:.2})",
                verdict(ratio >= 0.5)
            );
        }
    });
}

/// How the events are handed to the host.
#[derive(Debug, Clone, Copy)]
enum Sending {
    /// `Host::send`, one event per call, from [`SENDERS`] tasks at once.
    Each,
    /// `Host::send_batch`, [`BATCH`] events per call, from
    /// [`BATCH_SENDERS`] tasks at once.
    Batches,
}

impl Sending {
    fn label(self) -> String {
        match self {
            Sending::Each => format!("send, {SENDERS} callers"),
            Sending::Batches => format!("send_batch of {BATCH}, {BATCH_SENDERS} callers"),
        }
    }

    fn callers(self) -> usize {
        match self {
            Sending::Each => SENDERS,
            Sending::Batches => BATCH_SENDERS,
        }
    }
}

/// How long it took until every event was accepted, and until every
/// plugin had handled every event (and the host had shut down).
struct Throughput {
    accepted: Duration,
    delivered: Duration,
}

impl Throughput {
    fn delivered_rate(&self, events: u64) -> f64 {
        events as f64 / self.delivered.as_secs_f64()
    }

    fn report(&self, label: &str, events: u64) {
        println!(
            "{label:<46} accepted {:>9.0} events/s, accepted and delivered {:>9.0} events/s",
            events as f64 / self.accepted.as_secs_f64(),
            self.delivered_rate(events)
        );
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn event(n: u64) -> Event {
    Event::from_json(&format!(
        r#"{{"event_id": "bench-{n}", "event_type": "ProfilingStarted", "timestamp": "2025-01-15T10:30:00Z",
            "metadata": {{"table": "orders", "run_id": "run-1", "seq": {n}}}}}"#
    ))
    .expect("valid event")
}

/// Five copies of the `noop` fixture, in memory or with a data directory.
async fn noop_host(data_dir: Option<&Path>) -> Host {
    let path = Path::new(env!("HOOKHOST_GUEST_DIR")).join("fixtures/noop.wasm");
    let bytes = std::fs::read(&path).expect("the fixture is built");
    let mut builder = Host::builder();
    for n in 0..PLUGINS {
        builder = builder.plugin_bytes(format!("noop-{n}"), bytes.clone());
    }
    if let Some(dir) = data_dir {
        builder = builder.data_dir(dir);
    }
    builder.build().await.expect("host")
}

/// Sends `events` events as `sending` says and shuts the host down once
/// they are accepted.
async fn throughput(events: u64, data_dir: Option<&Path>, sending: Sending) -> Throughput {
    let host = noop_host(data_dir).await;
    for n in 0..WARM_UP {
        host.send(event(u64::MAX - n)).await.expect("accepted");
    }
    let callers = sending.callers();
    let mut shares: Vec<Vec<Event>> = (0..callers).map(|_| Vec::new()).collect();
    for n in 0..events {
        shares[n as usize % callers].push(event(n));
    }

    let host = Arc::new(host);
    let started = Instant::now();
    let senders: Vec<_> = shares
        .into_iter()
        .map(|share| tokio::spawn(send_all(host.clone(), share, sending)))
        .collect();
    for sender in senders {
        sender.await.expect("sender");
    }
    let accepted = started.elapsed();
    let host = Arc::into_inner(host).expect("the senders let go of the host");
    let summaries = host.shutdown().await;
    let delivered = started.elapsed();
    for summary in summaries {
        assert_eq!(summary.stats.handled, events + WARM_UP, "{}", summary.name);
        assert_eq!(summary.stats.failed_total(), 0, "{}", summary.name);
    }
    Throughput {
        accepted,
        delivered,
    }
}

/// Hands `events` to `host`, in order, as `sending` says.
async fn send_all(host: Arc<Host>, events: Vec<Event>, sending: Sending) {
    match sending {
        Sending::Each => {
            for event in events {
                host.send(event).await.expect("accepted");
            }
        }
        Sending::Batches => {
            let mut events = events.into_iter().peekable();
            while events.peek().is_some() {
                let batch: Vec<Event> = events.by_ref().take(BATCH).collect();
                for result in host.send_batch(batch).await {
                    result.expect("accepted");
                }
            }
        }
    }
}

/// Fills the dead letters of a host with a data directory with `entries`
/// entries, spread over the five plugins, and times replaying them all.
async fn replay(entries: u64) -> Duration {
    let data = tempfile::tempdir().expect("a temporary data directory");
    let host = noop_host(Some(data.path())).await;
    let version = host.summaries()[0].version.clone();
    let store = host.dead_letters();
    let dead: Vec<NewDeadLetter> = (0..entries)
        .map(|n| {
            let event = event(n);
            NewDeadLetter {
                plugin: format!("noop-{}", n as usize % PLUGINS),
                plugin_version: version.clone(),
                event_id: event.id.clone(),
                event_type: event.event_type.clone(),
                event_json: event.to_json(),
                class: "error".to_owned(),
                attempts: 8,
                first_failed_at: "2025-01-15T10:30:00Z".to_owned(),
                last_failed_at: "2025-01-15T10:35:00Z".to_owned(),
                last_error: "the webhook receiver answered 503".to_owned(),
            }
        })
        .collect();
    store.add(&dead).await.expect("add the dead letters");
    assert_eq!(store.count(None).await.expect("count"), entries);

    let started = Instant::now();
    let report = host
        .replay_dead_letters(None, &mut |_, _| {})
        .await
        .expect("replay");
    let elapsed = started.elapsed();
    assert_eq!(report.delivered, entries, "every entry delivered");
    assert_eq!(store.count(None).await.expect("count"), 0);
    host.shutdown().await;
    elapsed
}
