//! The built-in `webhook` hook against a real HTTP server on 127.0.0.1:
//! Standard Webhooks signatures checked with an independent HMAC (ring),
//! secret rotation, body templates, the wall-clock grant, and a secret that
//! never reaches a log line of a whole `hookhost run`.

mod common;

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::receiver::{self, Received};
use hookhost::{Event, Host};
use serde_json::json;

/// Standard Webhooks secrets: `whsec_` and the base64 key.
const OLD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

async fn webhook(addr: SocketAddr, section: &str, settings: &str) -> Host {
    let config = format!(
        "[plugins.webhook]\nhttp_allow = [\"http://{addr}\"]\nhttp_private = [\"127.0.0.1\"]\n\
         {section}\n[plugins.webhook.settings]\nurl = \"http://{addr}/events\"\n{settings}"
    );
    common::builtin_host("webhook", &config).await
}

async fn send(host: &Host, event: &Event) -> Result<(), hookhost::Failure> {
    let report = host.emit_with_report(event.clone()).unwrap().wait().await;
    report.outcomes[0].1.result.clone()
}

fn drift() -> Event {
    let json = json!({"event_id": "evt-1", "event_type": "DataDriftDetected",
        "timestamp": "2025-01-15T10:30:00Z",
        "metadata": {"table": "orders", "column": "total_amount", "metric": "mean",
                     "baseline_value": 100.0, "current_value": 150.0,
                     "change_percent": 50.0, "drift_severity": "high"}});
    Event::from_json(&json.to_string()).unwrap()
}

/// Verifies `request` the way the Standard Webhooks specification says a
/// receiver must, with ring's HMAC: returns the secrets (of `candidates`)
/// that signed it.
fn verify<'a>(request: &Received, candidates: &[&'a str]) -> Vec<&'a str> {
    let id = request.header("webhook-id").expect("webhook-id");
    let timestamp = request
        .header("webhook-timestamp")
        .expect("webhook-timestamp");
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(&request.body);
    let signatures: Vec<&str> = request
        .header("webhook-signature")
        .expect("webhook-signature")
        .split(' ')
        .map(|s| s.strip_prefix("v1,").expect("a v1 signature"))
        .collect();
    candidates
        .iter()
        .copied()
        .filter(|secret| {
            let key = STANDARD
                .decode(secret.strip_prefix("whsec_").unwrap())
                .unwrap();
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
            signatures.iter().any(|signature| {
                let signature = STANDARD.decode(signature).unwrap();
                ring::hmac::verify(&key, &signed, &signature).is_ok()
            })
        })
        .collect()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn a_delivery_is_the_event_json_signed_by_every_secret() {
    let (addr, mut received) = receiver::start().await;
    let settings = format!(
        "secrets = [\"{OLD_SECRET}\", \"{NEW_SECRET}\"]\nheaders = {{ x-team = \"data\" }}\n"
    );
    let host = webhook(addr, "wall_clock = true", &settings).await;
    let event = drift();
    send(&host, &event).await.unwrap();
    let request = received.recv().await.unwrap();
    assert_eq!(request.path, "/events");
    assert_eq!(request.json(), event.to_json_value());
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-team"), Some("data"));
    assert_eq!(request.header("webhook-id"), Some("evt-1"));
    let timestamp: i64 = request
        .header("webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert!((timestamp - unix_now()).abs() < 60, "timestamp {timestamp}");
    assert_eq!(
        verify(&request, &[OLD_SECRET, NEW_SECRET]),
        [OLD_SECRET, NEW_SECRET]
    );
    assert!(verify(&request, &["whsec_d3Jvbmcgc2VjcmV0"]).is_empty());

    // A retry of the same event keeps its id, so receivers can deduplicate.
    send(&host, &event).await.unwrap();
    let retry = received.recv().await.unwrap();
    assert_eq!(retry.header("webhook-id"), Some("evt-1"));
    assert_eq!(verify(&retry, &[NEW_SECRET]), [NEW_SECRET]);
    host.shutdown().await;
}

#[tokio::test]
async fn a_template_shapes_the_body() {
    let (addr, mut received) = receiver::start().await;
    let template = r#"{"text": "{{ event_type }} on {{ metadata.table }}.{{ metadata.column }} ({{ severity }})", "id": {{ event_id | tojson }}}"#;
    let settings = format!("secret = \"{NEW_SECRET}\"\ntemplate = '{template}'\n");
    let host = webhook(addr, "wall_clock = true", &settings).await;
    send(&host, &drift()).await.unwrap();
    let request = received.recv().await.unwrap();
    assert_eq!(
        request.json(),
        json!({"text": "DataDriftDetected on orders.total_amount (high)", "id": "evt-1"})
    );
    assert_eq!(verify(&request, &[NEW_SECRET]), [NEW_SECRET]);
    host.shutdown().await;
}

#[tokio::test]
async fn without_the_wall_clock_grant_the_error_says_how_to_grant_it() {
    let (addr, mut received) = receiver::start().await;
    let host = webhook(addr, "", &format!("secret = \"{NEW_SECRET}\"\n")).await;
    let failure = send(&host, &drift()).await.unwrap_err();
    assert!(!failure.retryable);
    assert!(failure.message.contains("wall_clock = true"), "{failure}");
    host.shutdown().await;
    assert!(received.try_recv().is_err(), "nothing unsigned is sent");
}

#[tokio::test]
async fn a_malformed_secret_is_a_permanent_error_naming_the_setting() {
    let (addr, _received) = receiver::start().await;
    let host = webhook(addr, "wall_clock = true", "secrets = [\"whsec_!!\"]\n").await;
    let failure = send(&host, &drift()).await.unwrap_err();
    assert!(!failure.retryable);
    assert!(
        failure.message.starts_with("setting `secrets[0]`"),
        "{failure}"
    );
    host.shutdown().await;
}

/// A whole `hookhost run` at trace level, with secrets from the environment
/// and marked in the file, requests that are denied, refused and answered
/// with errors, and a plugin that prints its settings: no secret appears
/// in anything it writes. The receiver answers on another thread while
/// this one waits for the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_run_never_prints_a_secret() {
    let (addr, _received) = receiver::start().await;
    const TOKEN: &str = "T0KEN-3f9a1c";
    const PASSWORD: &str = "pa55-b7e2d4";
    let dir = tempfile::tempdir().unwrap();
    for (name, path) in [
        ("webhook", common::builtin("webhook")),
        ("slack", common::builtin("slack")),
        ("prints-secret", common::fixture("prints-secret")),
    ] {
        std::fs::copy(path, dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    let config_path = dir.path().join("hookhost.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
# Every failure is retried once, at once: the retry's log lines must not
# print a secret either.
[defaults]
max_attempts = 2
retry_initial_ms = 1
breaker_threshold = 0

[plugins.webhook]
http_allow = ["http://{addr}"]
http_private = ["127.0.0.1"]
wall_clock = true
[plugins.webhook.settings]
url = "http://{addr}/status/500?token=${{HOOK_TOKEN}}"
secret = {{ secret = "{NEW_SECRET}" }}
headers = {{ authorization = {{ secret = "Bearer {PASSWORD}" }} }}

[plugins.slack]
http_allow = ["hooks.example.com"]
[plugins.slack.settings]
webhook_url = "https://hooks.slack.com/services/T000/B000/${{HOOK_TOKEN}}"

[plugins.prints-secret.settings]
password = {{ secret = "{PASSWORD}" }}
"#
        ),
    )
    .unwrap();
    let events = [
        drift().to_json(),
        r#"{"event_type": "SchemaChangeDetected", "metadata": {"table": "t", "change_type": "column_added", "column": "c"}}"#.to_owned(),
        r#"{"event_type": "ProfilingFailed", "metadata": {"table": "t", "run_id": "r", "error": "boom"}}"#.to_owned(),
    ]
    .join("\n");
    let output = run_cli(
        &[
            "run",
            "--plugins",
            dir.path().to_str().unwrap(),
            "--config",
            config_path.to_str().unwrap(),
        ],
        &events,
    );
    let check = run_cli(&["check", common::builtin("webhook").to_str().unwrap()], "");
    let everything = format!("{output}\n{check}");
    assert!(
        everything.contains("denied"),
        "a denial was logged:\n{everything}"
    );
    for secret in [TOKEN, PASSWORD, NEW_SECRET, &NEW_SECRET[6..]] {
        assert!(
            !everything.contains(secret),
            "{secret} printed:\n{everything}"
        );
    }
    for place in ["log:", "stdout:", "stderr:", "error:"] {
        let masked = format!("{place} the password is <secret>");
        let masked_error = "error: wrong password <secret>";
        assert!(
            everything.contains(&masked)
                || (place == "error:" && everything.contains(masked_error)),
            "{place} line missing or unmasked:\n{everything}"
        );
    }
}

/// stdout and stderr of `hookhost args...` fed `stdin`, at trace level,
/// with `HOOK_TOKEN` in its environment.
fn run_cli(args: &[&str], stdin: &str) -> String {
    let output = common::run_with_input(
        common::hookhost_command()
            .args(args)
            .env("RUST_LOG", "info,hookhost=trace")
            .env("HOOK_TOKEN", "T0KEN-3f9a1c"),
        stdin,
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
