//! HTTP ingest over real connections on 127.0.0.1: `POST /events` (every
//! answer: 202 for one event and for an array, 400 naming the bad event's
//! index and field, 413, 503 with `Retry-After`, 401 without the token),
//! dbt Cloud webhooks (signature, mapping, deduplication), the health
//! checks, and a real `hookhost run --listen` process stopped with SIGTERM
//! while events are in flight.
//!
//! Most tests serve the library's router in this process, so they can read
//! the host's counts; the last ones run the `hookhost` binary.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::flaky::{Flaky, Policy};
use hookhost::config::Secret;
use hookhost::delivery::wal::Wal;
use hookhost::sources::{self, listen, Ingest, IngestSettings, Refusal};
use hookhost::{Host, PluginSummary};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// The library's router over `host`, served on a free loopback port.
struct Served {
    host: Arc<Host>,
    ingest: Arc<Ingest>,
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    client: reqwest::Client,
}

/// Settings with no token, no dbt secret and a 1 MiB body limit.
fn settings() -> IngestSettings {
    IngestSettings {
        token: None,
        dbt_cloud_secret: None,
        max_body_bytes: 1 << 20,
        wait_for_room: Duration::from_secs(1),
    }
}

async fn serve(host: Host, settings: IngestSettings) -> Served {
    let host = Arc::new(host);
    let ingest = Ingest::new(&host, settings);
    let listener = listen::bind("127.0.0.1:0", "the test", false)
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async move {
        let _ = stopped.await;
    };
    let task = tokio::spawn(listen::serve(listener, sources::router(&ingest), stopped));
    Served {
        host,
        ingest,
        addr,
        stop,
        task,
        client: reqwest::Client::new(),
    }
}

/// An answer: status, `Retry-After` and the JSON body.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    www_authenticate: Option<String>,
    body: Value,
}

impl Served {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs `body` to `path` with the `headers` given.
    async fn post(&self, path: &str, body: impl Into<String>, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.client.post(self.url(path)).body(body.into());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        answer(request.send().await.expect("the server answers")).await
    }

    async fn get(&self, path: &str) -> Answer {
        answer(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    /// Stops the server and shuts the host down; every plugin's counts.
    async fn shutdown(self) -> Vec<PluginSummary> {
        self.ingest.stop_accepting();
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
        drop(self.ingest);
        let mut host = self.host;
        let host = loop {
            match Arc::try_unwrap(host) {
                Ok(host) => break host,
                Err(shared) => {
                    host = shared;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        host.shutdown_within(Duration::ZERO).await
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (retry_after, www_authenticate) = (header("retry-after"), header("www-authenticate"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        retry_after,
        www_authenticate,
        body,
    }
}

/// A host over copies of `fixtures`, configured by `toml`.
async fn fixture_host(fixtures: &[&str], toml: &str) -> Host {
    let dir = common::plugins_dir(fixtures);
    common::host(dir.path(), common::config(toml)).await
}

fn event(id: &str) -> Value {
    json!({"event_id": id, "event_type": "ProfilingStarted", "timestamp": "2025-01-15T10:30:00Z",
           "metadata": {"table": "orders", "run_id": "run-1"}})
}

fn ids(body: &Value) -> Vec<String> {
    body["accepted"]
        .as_array()
        .unwrap_or_else(|| panic!("no accepted ids in {body}"))
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn one_event_is_answered_202_with_its_id_once_it_is_in_the_write_ahead_log() {
    let data = tempfile::tempdir().unwrap();
    let plugins = common::plugins_dir(&["slow"]);
    // `slow` never finishes an event before its timeout: the event stays
    // pending in the log while the test reads it.
    let host = Host::builder()
        .plugins_dir(plugins.path())
        .config(common::config("[plugins.slow]\ntimeout_ms = 2000\n"))
        .data_dir(data.path())
        .build()
        .await
        .unwrap();
    let served = serve(host, settings()).await;
    let answer = served
        .post("/events", event("one-1").to_string(), &[])
        .await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(ids(&answer.body), ["one-1"]);

    // What the log holds now, read from a copy (the host holds its lock).
    let copy = tempfile::tempdir().unwrap();
    common::copy_dir(&data.path().join("wal"), &copy.path().join("wal"));
    let (_wal, recovered) = Wal::open(copy.path()).unwrap();
    let logged: Vec<Value> = recovered
        .iter()
        .map(|entry| serde_json::from_str(&entry.event_json).unwrap())
        .collect();
    assert!(
        logged.iter().any(|event| event["event_id"] == "one-1"),
        "{logged:?}"
    );
    served.shutdown().await;
}

#[tokio::test]
async fn an_array_is_answered_202_with_every_id_in_order_and_each_is_delivered() {
    let host = fixture_host(&["noop"], "").await;
    let served = serve(host, settings()).await;
    let mut unnamed = event("x");
    unnamed.as_object_mut().unwrap().remove("event_id");
    let body = json!([event("arr-1"), unnamed, event("arr-3")]);
    let answer = served.post("/events", body.to_string(), &[]).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let accepted = ids(&answer.body);
    assert_eq!(accepted.len(), 3);
    assert_eq!((&*accepted[0], &*accepted[2]), ("arr-1", "arr-3"));
    assert!(uuid::Uuid::parse_str(&accepted[1]).is_ok(), "{accepted:?}");
    assert_eq!(served.ingest.stats().events_accepted(), 3);
    let summaries = served.shutdown().await;
    assert_eq!(common::final_stats(&summaries, "noop").handled, 3);
}

#[tokio::test]
async fn a_malformed_event_is_answered_400_with_its_index_and_field_and_nothing_is_accepted() {
    let host = fixture_host(&["noop"], "").await;
    let served = serve(host, settings()).await;
    let bad = json!({"event_type": "ProfilingCompleted", "metadata": {"row_count": "many"}});
    let body = json!([event("m-0"), bad, event("m-2")]);
    let answer = served.post("/events", body.to_string(), &[]).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(answer.body["index"], 1);
    assert_eq!(answer.body["field"], "metadata.row_count");
    let error = answer.body["error"].as_str().unwrap();
    assert!(error.starts_with("event 1: "), "{error}");
    assert!(
        error.contains("nothing of this request was accepted"),
        "{error}"
    );

    let answer = served
        .post(
            "/events",
            r#"{"event_type": "x", "timestamp": "noon"}"#,
            &[],
        )
        .await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(
        (&answer.body["index"], &answer.body["field"]),
        (&json!(0), &json!("timestamp"))
    );

    let answer = served
        .post("/events", "[{\"event_type\": \"a\"}, {", &[])
        .await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(answer.body["index"], 1);
    assert_eq!(served.ingest.stats().refused(Refusal::Malformed), 3);
    let summaries = served.shutdown().await;
    let noop = common::final_stats(&summaries, "noop");
    assert_eq!((noop.handled, noop.failed_total()), (0, 0));
}

#[tokio::test]
async fn a_body_over_the_limit_and_an_event_over_max_event_kib_are_answered_413() {
    let host = fixture_host(&["noop"], "[engine]\nmax_event_kib = 1\n").await;
    let served = serve(
        host,
        IngestSettings {
            max_body_bytes: 4096,
            ..settings()
        },
    )
    .await;
    let big: Vec<Value> = (0..40).map(|n| event(&format!("big-{n}"))).collect();
    let big = Value::Array(big).to_string();
    assert!(big.len() > 4096);
    let answer = served.post("/events", big.clone(), &[]).await;
    assert_eq!(answer.status, 413, "{answer:?}");
    let error = answer.body["error"].as_str().unwrap();
    assert!(error.contains("max_body_kib"), "{error}");

    // Without a Content-Length the body is cut off at the limit as read.
    assert_eq!(
        chunked_post(served.addr, "/events", big.as_bytes()).await,
        413
    );

    // Within the body limit, but its second event over the event limit.
    let large = json!({"event_type": "x", "metadata": {"blob": "y".repeat(2000)}});
    let body = json!([event("small"), large]).to_string();
    assert!(body.len() < 4096);
    let answer = served.post("/events", body, &[]).await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(answer.body["index"], 1);
    assert_eq!(served.ingest.stats().refused(Refusal::TooLarge), 3);
    let summaries = served.shutdown().await;
    assert_eq!(common::final_stats(&summaries, "noop").handled, 0);
}

/// POSTs `body` chunked (no `Content-Length`) over a raw connection;
/// the status of the answer.
async fn chunked_post(addr: SocketAddr, path: &str, body: &[u8]) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\n\
         connection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(512) {
        request.extend(format!("{:x}\r\n", chunk.len()).bytes());
        request.extend(chunk);
        request.extend(b"\r\n");
    }
    request.extend(b"0\r\n\r\n");
    // The whole request fits the socket's buffers: written at once, before
    // the server answers and closes.
    stream.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let head = String::from_utf8_lossy(&response);
    head.split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"))
}

#[tokio::test]
async fn a_full_queue_under_reject_is_answered_503_with_retry_after_and_accepts_nothing() {
    // One event fits the queue; `slow` holds each for up to a second.
    let toml = "[plugins.slow]\nqueue_capacity = 1\non_full = \"reject\"\ntimeout_ms = 1000\n";
    let host = fixture_host(&["slow"], toml).await;
    let served = serve(host, settings()).await;
    let answer = served.post("/events", event("q-1").to_string(), &[]).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    // Whether or not `slow` took the first event already, two more do not
    // fit a queue of one.
    let body = json!([event("q-2"), event("q-3")]).to_string();
    let answer = served.post("/events", body, &[]).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.retry_after.as_deref(), Some("1"));
    assert_eq!(answer.body["plugin"], "slow");
    let error = answer.body["error"].as_str().unwrap();
    assert!(
        error.contains("nothing of this request was accepted"),
        "{error}"
    );
    let accepted: u64 = served.host.unfinished().iter().map(|p| p.accepted).sum();
    assert_eq!(accepted, 1, "only the first request's event");
    assert_eq!(served.ingest.stats().refused(Refusal::QueueFull), 1);
    served.shutdown().await;
}

#[tokio::test]
async fn without_the_token_or_with_a_wrong_one_events_are_answered_401() {
    let host = fixture_host(&["noop"], "").await;
    let served = serve(
        host,
        IngestSettings {
            token: Some(Secret::new("s3cret-token")),
            ..settings()
        },
    )
    .await;
    let body = event("t-1").to_string();
    let missing = served.post("/events", body.clone(), &[]).await;
    assert_eq!(missing.status, 401, "{missing:?}");
    assert_eq!(missing.www_authenticate.as_deref(), Some("Bearer"));
    let error = missing.body["error"].as_str().unwrap();
    assert!(!error.contains("s3cret-token"), "{error}");
    for wrong in [
        "Bearer s3cret-tokeN",
        "Bearer s3cret-token2",
        "Basic s3cret-token",
    ] {
        let answer = served
            .post("/events", body.clone(), &[("authorization", wrong)])
            .await;
        assert_eq!(answer.status, 401, "{wrong}: {answer:?}");
    }
    let right = served
        .post("/events", body, &[("authorization", "Bearer s3cret-token")])
        .await;
    assert_eq!(right.status, 202, "{right:?}");
    assert_eq!(served.ingest.stats().refused(Refusal::Unauthorized), 4);
    // The health checks need no token.
    assert_eq!(served.get("/healthz").await.status, 200);
    let summaries = served.shutdown().await;
    assert_eq!(common::final_stats(&summaries, "noop").handled, 1);
}

/// dbt Cloud's documented payloads for one failed run: `job.run.errored`
/// and the `job.run.completed` that follows it, with their own eventIds.
fn dbt_payload(event_type: &str, event_id: &str, status: &str) -> String {
    json!({
        "accountId": 1,
        "eventId": event_id,
        "timestamp": "2023-01-31T21:15:20.419714619Z",
        "eventType": event_type,
        "webhookName": "test",
        "data": {
            "jobId": "123", "jobName": "dbt Vault", "runId": "12345",
            "environmentId": "1234", "environmentName": "dbt Vault Demo",
            "dbtVersion": "1.0.0", "projectName": "Snowflake Github Demo",
            "runReason": "Kicked off from UI by test@test.com",
            "runStartedAt": "2023-01-31T21:14:41Z", "runErroredAt": "2023-01-31T21:15:20Z",
            "runStatus": status, "runStatusMessage": "None"
        }
    })
    .to_string()
}

/// The hex HMAC-SHA256 of `body` under `secret`, computed with ring (not
/// the host's `hmac` crate).
fn dbt_signature(secret: &str, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, body.as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn dbt_cloud_webhooks_are_verified_mapped_to_events_and_deduplicated_on_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let toml = format!(
        "[databases.events]\nurl = \"sqlite://{}\"\n[plugins.sql]\ndatabases = [\"events\"]\n\
         batch_wait_ms = 20\n",
        db.display()
    );
    let host = common::builtin_host("sql", &toml).await;
    let secret = "dbt-webhook-secret";
    let served = serve(
        host,
        IngestSettings {
            dbt_cloud_secret: Some(Secret::new(secret)),
            ..settings()
        },
    )
    .await;
    let errored = dbt_payload("job.run.errored", "wev_errored", "Errored");
    let completed = dbt_payload("job.run.completed", "wev_completed", "Error");

    // A bad signature, and none at all: 401, counted, nothing accepted.
    let forged = dbt_signature("another-secret", &errored);
    let answer = served
        .post(
            "/ingest/dbt-cloud",
            errored.clone(),
            &[("authorization", &forged)],
        )
        .await;
    assert_eq!(answer.status, 401, "{answer:?}");
    let answer = served.post("/ingest/dbt-cloud", errored.clone(), &[]).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(served.ingest.stats().refused(Refusal::BadSignature), 2);
    // A good signature over another body.
    let answer = served
        .post(
            "/ingest/dbt-cloud",
            completed.clone(),
            &[("authorization", &dbt_signature(secret, &errored))],
        )
        .await;
    assert_eq!(answer.status, 401, "{answer:?}");

    for body in [&errored, &completed] {
        let signature = dbt_signature(secret, body);
        let answer = served
            .post(
                "/ingest/dbt-cloud",
                body.clone(),
                &[("authorization", &signature)],
            )
            .await;
        assert_eq!(answer.status, 202, "{answer:?}");
    }
    // dbt Cloud retrying a delivery: the same eventId again.
    let signature = dbt_signature(secret, &errored);
    let again = served
        .post(
            "/ingest/dbt-cloud",
            errored.clone(),
            &[("authorization", &signature)],
        )
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(
        again.body,
        json!({"duplicate": true, "event_id": "wev_errored"})
    );
    let stats = served.ingest.stats().clone();
    assert_eq!((stats.events_accepted(), stats.duplicates()), (2, 1));
    assert_eq!(stats.refused(Refusal::BadSignature), 3);

    let summaries = served.shutdown().await;
    assert_eq!(common::final_stats(&summaries, "sql").handled, 2);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let rows: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT event_id, event_type, run_id, metadata FROM hookhost_events ORDER BY event_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    let kept: Vec<_> = rows
        .iter()
        .map(|(id, kind, run, _)| (id.as_str(), kind.as_str(), run.as_deref()))
        .collect();
    assert_eq!(
        kept,
        [
            ("wev_completed", "job.run.completed", Some("12345")),
            ("wev_errored", "job.run.errored", Some("12345")),
        ]
    );
    let metadata: Value = serde_json::from_str(&rows[1].3).unwrap();
    for (key, value) in [
        ("job_id", "123"),
        ("job_name", "dbt Vault"),
        ("environment_id", "1234"),
        ("environment_name", "dbt Vault Demo"),
        ("status", "Errored"),
        ("severity", "high"),
    ] {
        assert_eq!(metadata[key], value, "{key} in {metadata}");
    }
}

#[tokio::test]
async fn dbt_cloud_webhooks_without_a_configured_secret_are_answered_404() {
    let host = fixture_host(&["noop"], "").await;
    let served = serve(host, settings()).await;
    let body = dbt_payload("job.run.started", "wev_x", "Running");
    let answer = served.post("/ingest/dbt-cloud", body, &[]).await;
    assert_eq!(answer.status, 404, "{answer:?}");
    let error = answer.body["error"].as_str().unwrap();
    assert!(error.contains("[server] dbt_cloud_secret"), "{error}");
    served.shutdown().await;
}

#[tokio::test]
async fn readyz_answers_200_while_serving_and_503_with_events_refused_once_stopping() {
    let host = fixture_host(&["noop"], "").await;
    let served = serve(host, settings()).await;
    assert_eq!(served.get("/healthz").await.status, 200);
    let ready = served.get("/readyz").await;
    assert_eq!((ready.status, &ready.body["plugins"]), (200, &json!(1)));
    served.ingest.stop_accepting();
    assert_eq!(served.get("/readyz").await.status, 503);
    let answer = served.post("/events", event("late").to_string(), &[]).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.retry_after.as_deref(), Some("1"));
    let summaries = served.shutdown().await;
    assert_eq!(common::final_stats(&summaries, "noop").handled, 0);
}

#[test]
fn a_listen_address_that_is_not_loopback_is_refused_naming_the_flag_that_allows_it() {
    let started = Instant::now();
    let output = common::hookhost_command()
        .args(["run", "--in-memory", "--listen", "0.0.0.0:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--listen 0.0.0.0:0 is not a loopback address"),
        "{stderr}"
    );
    assert!(stderr.contains("--listen-any"), "{stderr}");
    assert!(
        !stderr.contains("loaded plugin"),
        "refused before loading plugins: {stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_events_are_in_flight_loses_no_accepted_event() {
    const CLIENTS: usize = 4;
    const EVENTS_PER_REQUEST: usize = 10;
    let receiver = Flaky::start(Policy::Healthy).await;
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::builtin("webhook"),
        plugins.path().join("webhook.wasm"),
    )
    .unwrap();
    let config = plugins.path().join("hookhost.toml");
    std::fs::write(&config, receiver.webhook_config("webhook", "")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut child = common::hookhost_command()
        .args(["run", "--listen", "127.0.0.1:0", "--plugins"])
        .arg(plugins.path())
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(data.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr_lines = common::forward_lines(child.stderr.take().unwrap());
    let mut stdout = child.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        text
    });
    let base = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = stderr_lines
                .recv_timeout(left)
                .expect("hookhost says where it listens");
            if let Some(url) = line.split("listening on ").nth(1) {
                break (url.trim().to_owned(), stderr_lines);
            }
        }
    })
    .await
    .unwrap();
    let (base, stderr_lines) = base;

    // Clients post batches with ids of their own until the server stops
    // answering; every id answered 202 is recorded.
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (url, accepted, answered) =
            (format!("{base}/events"), accepted.clone(), answered.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for request in 0..500 {
                let batch: Vec<Value> = (0..EVENTS_PER_REQUEST)
                    .map(|n| event(&format!("c{client}-{request}-{n}")))
                    .collect();
                let sent = http
                    .post(&url)
                    .body(Value::Array(batch).to_string())
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                if response.status().as_u16() != 202 {
                    break;
                }
                let body = json_body(response).await;
                accepted.lock().unwrap().extend(ids(&body));
                answered.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    // Once 20 requests are answered, the receiver holds every delivery
    // unanswered: from then on accepted events pile up in the host.
    let wait_for = |count: usize| {
        let answered = answered.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while answered.load(Ordering::SeqCst) < count {
                assert!(
                    Instant::now() < deadline,
                    "{count} requests answered in time"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_for(20).await;
    receiver.set_policy(Policy::Stall);
    wait_for(40).await;
    let killed = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(killed, 0);
    let accepted_then = accepted.lock().unwrap().len();
    let delivered_then = receiver.ids_with_200().len();
    assert!(
        delivered_then < accepted_then,
        "events were in flight at SIGTERM: {delivered_then} of {accepted_then} delivered"
    );
    // The receiver recovers while the host drains.
    tokio::time::sleep(Duration::from_millis(500)).await;
    receiver.heal();
    for client in clients {
        tokio::time::timeout(Duration::from_secs(60), client)
            .await
            .expect("clients end once the server stops")
            .unwrap();
    }
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("hookhost did not stop within 120 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    let stdout = stdout.join().unwrap();
    let stderr: Vec<String> = stderr_lines.try_iter().collect();
    assert!(
        status.success(),
        "{status:?}\n{stdout}\n{}",
        stderr.join("\n")
    );

    let accepted: BTreeSet<String> = accepted.lock().unwrap().iter().cloned().collect();
    assert!(accepted.len() >= 40 * EVENTS_PER_REQUEST);
    let delivered = receiver.ids_with_200();
    let missing: Vec<_> = accepted.difference(&delivered).collect();
    assert!(
        missing.is_empty(),
        "{} accepted events never delivered: {:?}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    // The server's own count: every event it answered 202 for (some
    // answers may not have reached a client that gave up) was delivered.
    let counted: usize = stdout
        .lines()
        .find_map(|line| Some(line.split_once(" events accepted over HTTP")?.0))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no HTTP count in\n{stdout}"));
    assert!(counted >= accepted.len(), "{counted} < {}", accepted.len());
    assert!(
        delivered.len() >= counted,
        "{} < {counted}",
        delivered.len()
    );
    assert!(
        stdout.contains("webhook "),
        "the summary names the plugin:\n{stdout}"
    );
}

/// The JSON body of `response`.
async fn json_body(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{err}: {text}"))
}
