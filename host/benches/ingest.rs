//! HTTP ingest throughput: events per second through `POST /events`, with
//! requests of 1 event and of 100, into five trivial plugins (the `noop`
//! fixture, instance reused), next to the same events through the library
//! API in the same run: `Host::emit` one at a time, and `Host::send_batch`
//! 100 at a time.
//!
//! The client is a small HTTP/1.1 client on tokio in this process, keeping
//! several connections alive on loopback, each sending its next request
//! once the last is answered; the server is the one `hookhost run --listen`
//! runs (`hookhost::sources`), on the same runtime: client, server and
//! plugins share the machine's cores, as they would on one host. Every run
//! reads the same JSON text into events (the library runs too), so the
//! ratios are the cost of HTTP. A run is timed from its first event until
//! every plugin has handled every event; how soon the last answer arrived
//! is printed beside it.
//!
//! `cargo bench --bench ingest` runs it in full; `cargo test` runs it with
//! few events to check it still works.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookhost::sources::{self, listen, Ingest, IngestSettings};
use hookhost::{Config, Event, Host};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PLUGINS: usize = 5;
/// Events per request in the batched runs.
const BATCH: usize = 100;
/// Connections the client keeps open: enough requests in flight to keep
/// both cores busy, few enough that the client stays small beside the
/// server.
const CONNECTIONS_SINGLE: usize = 16;
const CONNECTIONS_BATCHED: usize = 4;

/// Goals of the issue, in events per second on these 2-core machines.
const GOAL_SINGLE: f64 = 20_000.0;
const GOAL_BATCHED: f64 = 200_000.0;

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (single_events, batched_events) = if full {
        (100_000, 500_000)
    } else {
        (500, 2_000)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        println!(
            "ingest benchmark: {PLUGINS} trivial plugins, {} cores, {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            common::cpu_model()
        );
        let emit = library(single_events, 1).await;
        emit.report("library, Host::emit", single_events);
        let http_single = http(single_events, 1, CONNECTIONS_SINGLE).await;
        http_single.report("HTTP, 1 event a request", single_events);
        let send_batch = library(batched_events, BATCH).await;
        send_batch.report("library, send_batch of 100", batched_events);
        let http_batched = http(batched_events, BATCH, CONNECTIONS_BATCHED).await;
        http_batched.report("HTTP, 100 events a request", batched_events);

        let rate = |run: &Run, events: u64| events as f64 / run.delivered.as_secs_f64();
        let (single_rate, batched_rate) = (
            rate(&http_single, single_events),
            rate(&http_batched, batched_events),
        );
        println!(
            "ratio HTTP 1 a request / Host::emit:       {:>6.2}x the time",
            http_single.delivered.as_secs_f64() / emit.delivered.as_secs_f64()
        );
        println!(
            "ratio HTTP 100 a request / send_batch:     {:>6.2}x the time",
            http_batched.delivered.as_secs_f64() / send_batch.delivered.as_secs_f64()
        );
        if !full {
            println!("(smoke run with few events; `cargo bench --bench ingest` measures)");
            return;
        }
        println!(
            "goal >= {GOAL_SINGLE:.0} events/s, 1 event a request: {} ({single_rate:.0} events/s)",
            verdict(single_rate >= GOAL_SINGLE)
        );
        println!(
            "goal >= {GOAL_BATCHED:.0} events/s, 100 events a request: {} ({batched_rate:.0} \
             events/s)",
            verdict(batched_rate >= GOAL_BATCHED)
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

/// How long a run took: until its last event was accepted (the last
/// answer, or the last call returned), and until every plugin handled
/// every event.
struct Run {
    accepted: Duration,
    delivered: Duration,
}

impl Run {
    fn report(&self, label: &str, events: u64) {
        println!(
            "{label:<28} {:>9.0} events/s  ({events} events, all accepted in {:>7.1} ms, \
             all delivered in {:>7.1} ms)",
            events as f64 / self.delivered.as_secs_f64(),
            self.accepted.as_secs_f64() * 1e3,
            self.delivered.as_secs_f64() * 1e3,
        );
    }
}

/// A profiler-shaped event as JSON text.
fn event_json(seq: u64) -> String {
    format!(
        r#"{{"event_type": "ProfilingStarted", "timestamp": "2025-01-15T10:30:00Z", "metadata": {{"table": "orders", "run_id": "run-1", "seq": {seq}, "column": "c{seq}", "metric": "mean"}}}}"#
    )
}

/// The JSON text of each request: `per_request` events, one object alone
/// or an array.
fn bodies(events: u64, per_request: usize, first: u64) -> Vec<String> {
    let texts: Vec<String> = (first..first + events).map(event_json).collect();
    texts
        .chunks(per_request)
        .map(|chunk| match chunk {
            [one] => one.clone(),
            many => format!("[{}]", many.join(",")),
        })
        .collect()
}

/// A host with five copies of the `noop` fixture, whose queues hold every
/// event of a run, so that no run is refused.
async fn host() -> Host {
    let path = Path::new(env!("HOOKHOST_GUEST_DIR")).join("fixtures/noop.wasm");
    let bytes = std::fs::read(&path).expect("the fixture is built");
    let config = "[defaults]\nreuse_instance = true\nqueue_capacity = 16_777_216\n\
                  queue_mib = 4096\n";
    let config = Config::parse(config, Path::new("bench.toml")).expect("config");
    let mut builder = Host::builder().config(config);
    for n in 0..PLUGINS {
        builder = builder.plugin_bytes(format!("noop-{n}"), bytes.clone());
    }
    builder.build().await.expect("host")
}

/// Waits until every plugin has handled every event it accepted.
async fn delivered(host: &Host) {
    while host.unfinished().iter().any(|plugin| plugin.unfinished > 0) {
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// `events` events through the library: `Host::emit` one at a time when
/// `per_call` is 1, `Host::send_batch` of `per_call` otherwise.
async fn library(events: u64, per_call: usize) -> Run {
    let host = host().await;
    for text in bodies(200, 1, events) {
        host.emit(Event::from_json(&text).expect("event"))
            .expect("accepted");
    }
    delivered(&host).await;
    let texts: Vec<String> = (0..events).map(event_json).collect();
    let started = Instant::now();
    if per_call == 1 {
        for text in &texts {
            host.emit(Event::from_json(text).expect("event"))
                .expect("accepted");
        }
    } else {
        for chunk in texts.chunks(per_call) {
            let batch = chunk
                .iter()
                .map(|text| Event::from_json(text).expect("event"))
                .collect();
            for result in host.send_batch(batch).await {
                result.expect("accepted");
            }
        }
    }
    let accepted = started.elapsed();
    delivered(&host).await;
    let run = Run {
        accepted,
        delivered: started.elapsed(),
    };
    check(host.shutdown().await, events + 200);
    run
}

/// `events` events through `POST /events`, `per_request` a request, over
/// `connections` connections.
async fn http(events: u64, per_request: usize, connections: usize) -> Run {
    let host = Arc::new(host().await);
    let ingest = Ingest::new(
        &host,
        IngestSettings {
            token: None,
            dbt_cloud_secret: None,
            max_body_bytes: 16 << 20,
            wait_for_room: sources::WAIT_FOR_ROOM,
        },
    );
    let listener = listen::bind("127.0.0.1:0", "the benchmark", false)
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(listen::serve(
        listener,
        sources::router(&ingest),
        async move {
            let _ = stopped.await;
        },
    ));
    // Warm up: connections, the plugins' instances, the allocator.
    post_all(addr, bodies(200, 1, events), connections).await;
    delivered(&host).await;

    let requests = bodies(events, per_request, 0);
    let started = Instant::now();
    post_all(addr, requests, connections).await;
    let accepted = started.elapsed();
    delivered(&host).await;
    let run = Run {
        accepted,
        delivered: started.elapsed(),
    };
    assert_eq!(
        ingest.stats().events_accepted(),
        events + 200,
        "every event accepted"
    );
    let _ = stop.send(());
    server.await.expect("server task").expect("server");
    drop(ingest);
    // Requests still finishing hold the host for a moment.
    let mut host = host;
    let host = loop {
        match Arc::try_unwrap(host) {
            Ok(host) => break host,
            Err(shared) => {
                host = shared;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    check(host.shutdown().await, events + 200);
    run
}

/// Every plugin handled `events` events and failed none.
fn check(summaries: Vec<hookhost::PluginSummary>, events: u64) {
    for summary in summaries {
        assert_eq!(summary.stats.handled, events, "{}", summary.name);
        assert_eq!(summary.stats.failed_total(), 0, "{}", summary.name);
    }
}

/// Sends every body as a `POST /events` over `connections` keep-alive
/// connections, each sending its next request once the last is answered
/// `202`.
async fn post_all(addr: SocketAddr, bodies: Vec<String>, connections: usize) {
    let mut shares: Vec<Vec<Vec<u8>>> = vec![Vec::new(); connections];
    for (n, body) in bodies.into_iter().enumerate() {
        let request = format!(
            "POST /events HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        shares[n % connections].push(request.into_bytes());
    }
    let mut clients = Vec::new();
    for share in shares.into_iter().filter(|share| !share.is_empty()) {
        clients.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let mut buffer = Vec::with_capacity(64 << 10);
            for request in share {
                stream.write_all(&request).await.expect("send");
                let status = read_response(&mut stream, &mut buffer).await;
                assert_eq!(status, 202, "every request accepted");
            }
        }));
    }
    for client in clients {
        client.await.expect("client");
    }
}

/// Reads one response from `stream` and returns its status; `buffer`
/// keeps what was read past it.
async fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> u16 {
    let mut chunk = [0u8; 16 << 10];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed the connection");
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buffer[..head_end]).expect("ASCII head");
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let length: usize = head
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    let end = head_end + 4 + length;
    while buffer.len() < end {
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed the connection");
        buffer.extend_from_slice(&chunk[..n]);
    }
    buffer.drain(..end);
    status
}
