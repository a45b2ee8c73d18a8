//! The `delivery` import: a plugin that imports it loads next to one that
//! does not, and reads attempt 1 on a first delivery and 2 on its retry;
//! the wait it asks for holds the retry back, up to `retry_max_ms`; the
//! built-in webhook hook says which attempt a request is; the built-in
//! Slack and webhook hooks read a 429's or 503's `Retry-After` and pass it
//! on.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::receiver;
use hookhost::{Event, FailureClass, Host};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The WIT name of the import.
const DELIVERY: &str = "hookhost:hooks/delivery@0.1.0";

/// The WIT interfaces the compiled guest at `path` imports.
fn imports(path: &std::path::Path) -> Vec<String> {
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::from_file(&engine, path)
        .unwrap_or_else(|e| panic!("compile {}: {e}", path.display()));
    component
        .component_type()
        .imports(&engine)
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// Sends a custom event with `metadata` and returns the outcome of the
/// host's only plugin.
async fn send(host: &Host, metadata: Value) -> Result<(), hookhost::Failure> {
    let json = json!({"event_type": "delivery.test", "metadata": metadata});
    let event = Event::from_json(&json.to_string()).unwrap();
    let report = host.emit_with_report(event).unwrap().wait().await;
    report.outcomes[0].1.result.clone()
}

#[tokio::test]
async fn a_plugin_that_imports_delivery_loads_next_to_one_that_does_not() {
    assert!(imports(&common::fixture("tells-attempt")).contains(&DELIVERY.to_owned()));
    // A hook that never calls the import does not import it, just like one
    // built before the interface existed.
    assert!(!imports(&common::fixture("noop")).contains(&DELIVERY.to_owned()));
    let dir = common::plugins_dir(&["tells-attempt", "noop"]);
    let host = common::host(dir.path(), common::config("")).await;
    let mut names = host.plugin_names();
    names.sort();
    assert_eq!(names, ["noop", "tells-attempt"]);
    host.shutdown().await;
}

#[tokio::test]
async fn a_first_delivery_is_attempt_one() {
    let dir = common::plugins_dir(&["tells-attempt"]);
    let host = common::host(dir.path(), common::config("")).await;
    for metadata in [
        json!({"fail": "permanent"}),
        // Asking for a wait changes nothing about the call itself.
        json!({"fail": "permanent", "retry_after": [30, 0, u64::from(u32::MAX)]}),
    ] {
        let failure = send(&host, metadata).await.unwrap_err();
        assert_eq!(failure.class, FailureClass::Returned);
        assert!(!failure.retryable);
        assert_eq!(failure.message, "attempt 1");
    }
    send(&host, json!({"succeed_from": 1})).await.unwrap();
    host.shutdown().await;
}

/// How many events the host's only plugin has handled.
fn handled(host: &Host) -> u64 {
    host.summaries()[0].stats.handled
}

#[tokio::test]
async fn a_retry_is_attempt_two_after_the_wait_asked_for() {
    let dir = common::plugins_dir(&["tells-attempt"]);
    // Without the hint, the retry would come within a millisecond.
    let config =
        "[plugins.tells-attempt]\nmax_attempts = 2\nretry_initial_ms = 1\nretry_max_ms = 60_000\n";
    let host = common::host(dir.path(), common::config(config)).await;
    let started = Instant::now();
    let first = send(&host, json!({"retry_after": [1], "succeed_from": 2}))
        .await
        .unwrap_err();
    assert_eq!(
        (first.retryable, first.message.as_str()),
        (true, "attempt 1")
    );
    common::eventually("the retry, attempt 2, succeeds", || handled(&host) == 1).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    host.shutdown().await;
}

#[tokio::test]
async fn the_wait_asked_for_is_capped_at_retry_max() {
    let dir = common::plugins_dir(&["tells-attempt"]);
    let config =
        "[plugins.tells-attempt]\nmax_attempts = 2\nretry_initial_ms = 1\nretry_max_ms = 200\n";
    let host = common::host(dir.path(), common::config(config)).await;
    let started = Instant::now();
    send(&host, json!({"retry_after": [3600], "succeed_from": 2}))
        .await
        .unwrap_err();
    common::eventually("the retry comes after retry_max", || handled(&host) == 1).await;
    // 200 ms, and a second for scheduling: far below the hour asked for.
    assert!(
        started.elapsed() < Duration::from_millis(1_200),
        "{:?}",
        started.elapsed()
    );
    host.shutdown().await;
}

#[tokio::test]
async fn the_webhook_hook_sends_its_attempt() {
    let (addr, mut received) = receiver::start().await;
    let config = format!(
        "[plugins.webhook]\nhttp_allow = [\"http://{addr}\"]\nhttp_private = [\"127.0.0.1\"]\n\
         wall_clock = true\n[plugins.webhook.settings]\nurl = \"http://{addr}/events\"\n"
    );
    let host = common::builtin_host("webhook", &config).await;
    send(&host, json!({})).await.unwrap();
    let request = received.recv().await.unwrap();
    assert_eq!(request.header("webhook-attempt"), Some("1"));
    host.shutdown().await;
}

/// A server on 127.0.0.1 that answers every request with `status` and a
/// `Retry-After: retry_after` header.
async fn asks_to_wait(status: u16, retry_after: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read the whole request (headers, then `content-length`
                // bytes of body) before answering, so that closing the
                // connection does not reset it under the response.
                let mut request = Vec::new();
                let mut buf = [0; 4096];
                while !is_whole(&request) {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 {status} X\r\nretry-after: {retry_after}\r\n\
                     content-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

/// Whether `request` holds its headers and all the body they announce.
fn is_whole(request: &[u8]) -> bool {
    let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let headers = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
    let length = headers
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    request.len() >= end + 4 + length
}

#[tokio::test]
async fn the_slack_and_webhook_hooks_read_retry_after() {
    let drift = json!({"table": "orders", "column": "total", "metric": "mean",
                       "drift_severity": "high"});
    for (status, retry_after, expected) in [
        (429, "30", " (Retry-After: 30 s)"),
        (503, "7", " (Retry-After: 7 s)"),
        // A date needs the real time, which the Slack hook is not granted.
        (503, "Sun, 06 Nov 1994 08:49:37 GMT", ""),
        (503, "soon", ""),
        // Only 429 and 503 answers are read for it.
        (500, "30", ""),
    ] {
        let addr = asks_to_wait(status, retry_after).await;
        // One attempt: this test reads what the first delivery passed on,
        // and the host's shutdown would otherwise wait for the retries.
        let section = format!(
            "max_attempts = 1\nhttp_allow = [\"http://{addr}\"]\nhttp_private = [\"127.0.0.1\"]\n"
        );
        let slack = common::builtin_host(
            "slack",
            &format!(
                "[plugins.slack]\n{section}[plugins.slack.settings]\n\
                 webhook_url = \"http://{addr}/\"\n"
            ),
        )
        .await;
        let json = json!({"event_type": "DataDriftDetected", "metadata": drift});
        let event = Event::from_json(&json.to_string()).unwrap();
        let report = slack.emit_with_report(event).unwrap().wait().await;
        let failure = report.outcomes[0].1.result.clone().unwrap_err();
        assert!(failure.retryable);
        assert_eq!(
            failure.message,
            format!("Slack answered {status}{expected}")
        );
        slack.shutdown().await;

        let webhook = common::builtin_host(
            "webhook",
            &format!(
                "[plugins.webhook]\n{section}wall_clock = true\n\
                 [plugins.webhook.settings]\nurl = \"http://{addr}/\"\n"
            ),
        )
        .await;
        let failure = send(&webhook, json!({})).await.unwrap_err();
        // The webhook hook has the real time, so a date long past reads as
        // no wait at all.
        let expected = match retry_after {
            "Sun, 06 Nov 1994 08:49:37 GMT" => " (Retry-After: 0 s)",
            _ => expected,
        };
        assert_eq!(
            failure.message,
            format!("the webhook receiver answered {status}{expected}")
        );
        webhook.shutdown().await;
    }
}
