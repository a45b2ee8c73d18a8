//! The built-in `slack` hook against a real HTTP server on 127.0.0.1: the
//! exact payloads of `shared/reference/slack-messages.md` for drift, schema
//! changes and profiling failures, the switches and the severity filter, and
//! retryable versus permanent failures.

mod common;

use std::net::SocketAddr;

use common::receiver;
use hookhost::{Event, FailureClass, Host};
use serde_json::{json, Value};

async fn slack(addr: SocketAddr, path: &str, settings: &str) -> Host {
    let config = format!(
        "[plugins.slack]\nhttp_allow = [\"http://{addr}\"]\nhttp_private = [\"127.0.0.1\"]\n\
         [plugins.slack.settings]\nwebhook_url = \"http://{addr}{path}\"\n{settings}"
    );
    common::builtin_host("slack", &config).await
}

async fn send(host: &Host, json: Value) -> Result<(), hookhost::Failure> {
    let event = Event::from_json(&json.to_string()).unwrap();
    let report = host.emit_with_report(event).unwrap().wait().await;
    report.outcomes[0].1.result.clone()
}

fn drift(severity: &str) -> Value {
    json!({"event_type": "DataDriftDetected", "timestamp": "2025-01-15T10:30:00.123456",
           "metadata": {"table": "orders", "column": "total_amount", "metric": "mean",
                        "baseline_value": 100.0, "current_value": 150.0, "change_percent": 50.0,
                        "drift_severity": severity, "explanation": null}})
}

#[tokio::test]
async fn a_drift_alert_is_the_reference_payload() {
    let (addr, mut received) = receiver::start().await;
    let host = slack(addr, "/hook", "channel = \"#data-alerts\"\n").await;
    send(&host, drift("high")).await.unwrap();
    let request = received.recv().await.unwrap();
    let (body, path) = (request.json(), request.path);
    assert_eq!(path, "/hook");
    let expected = json!({
        "username": "hookhost",
        "text": "🚨 *Data Drift Detected*",
        "channel": "#data-alerts",
        "attachments": [{
            "color": "#FF0000",
            "fields": [
                {"title": "Severity", "value": "HIGH", "short": true},
                {"title": "Table", "value": "`orders`", "short": true},
                {"title": "Column", "value": "`total_amount`", "short": true},
                {"title": "Metric", "value": "mean", "short": true},
                {"title": "Baseline Value", "value": "100.00", "short": true},
                {"title": "Current Value", "value": "150.00", "short": true},
                {"title": "Change", "value": "+50.0%", "short": true},
                {"title": "Timestamp", "value": "2025-01-15 10:30:00 UTC", "short": true}
            ],
            "footer": "hookhost Drift Detection",
            "ts": 1736937000
        }]
    });
    assert_eq!(body, expected);
    host.shutdown().await;
}

#[tokio::test]
async fn severity_picks_emoji_and_colour_and_the_minimum_filters() {
    let (addr, mut received) = receiver::start().await;
    let host = slack(addr, "/hook", "min_severity = \"medium\"\n").await;
    for severity in ["low", "odd", "medium"] {
        send(&host, drift(severity)).await.unwrap();
    }
    host.shutdown().await;
    let body = received.recv().await.unwrap().json();
    assert_eq!(body["text"], "🔶 *Data Drift Detected*");
    assert_eq!(body["attachments"][0]["color"], "#FF8C00");
    assert!(
        received.try_recv().is_err(),
        "low and unknown severities were filtered"
    );
}

#[tokio::test]
async fn schema_changes_and_failures_are_the_reference_payloads() {
    let (addr, mut received) = receiver::start().await;
    let host = slack(addr, "/hook", "footer = \"Acme\"\n").await;
    send(
        &host,
        json!({"event_type": "SchemaChangeDetected", "timestamp": "2025-01-15T10:31:14Z",
        "metadata": {"table": "customers", "change_type": "type_changed", "column": "zip",
                     "old_type": "INTEGER", "new_type": "VARCHAR"}}),
    )
    .await
    .unwrap();
    send(
        &host,
        json!({"event_type": "SchemaChangeDetected", "timestamp": "2025-01-15T10:31:14Z",
        "metadata": {"table": "customers", "change_type": "column_added", "column": "email"}}),
    )
    .await
    .unwrap();
    send(
        &host,
        json!({"event_type": "ProfilingFailed", "timestamp": "2025-01-15T10:32:00",
        "metadata": {"table": "payments", "run_id": "run-42", "error": "permission denied"}}),
    )
    .await
    .unwrap();
    send(
        &host,
        json!({"event_type": "ProfilingStarted", "metadata": {"table": "t"}}),
    )
    .await
    .unwrap();
    host.shutdown().await;

    let changed = received.recv().await.unwrap().json();
    assert_eq!(
        changed,
        json!({
            "username": "hookhost",
            "text": "🔄 *Schema Change Detected*",
            "attachments": [{
                "color": "#36a64f",
                "fields": [
                    {"title": "Table", "value": "`customers`", "short": true},
                    {"title": "Change Type", "value": "Type Changed", "short": true},
                    {"title": "Description", "value": "Column `zip` type changed from `INTEGER` to `VARCHAR`", "short": false},
                    {"title": "Timestamp", "value": "2025-01-15 10:31:14 UTC", "short": true}
                ],
                "footer": "Acme Schema Detection",
                "ts": 1736937074
            }]
        })
    );
    let added = received.recv().await.unwrap().json();
    assert_eq!(added["text"], "➕ *Schema Change Detected*");
    assert_eq!(
        added["attachments"][0]["fields"][2]["value"],
        "Column `email` was added"
    );
    let failed = received.recv().await.unwrap().json();
    assert_eq!(
        failed,
        json!({
            "username": "hookhost",
            "text": "❌ *Profiling Failed*",
            "attachments": [{
                "color": "#FF0000",
                "fields": [
                    {"title": "Table", "value": "`payments`", "short": true},
                    {"title": "Run ID", "value": "run-42", "short": true},
                    {"title": "Error", "value": "```permission denied```", "short": false},
                    {"title": "Timestamp", "value": "2025-01-15 10:32:00 UTC", "short": true}
                ],
                "footer": "Acme Profiling",
                "ts": 1736937120
            }]
        })
    );
    assert!(
        received.try_recv().is_err(),
        "ProfilingStarted sends nothing"
    );
}

#[tokio::test]
async fn switches_turn_messages_off() {
    let (addr, mut received) = receiver::start().await;
    let host = slack(addr, "/hook", "alert_on_drift = false\n").await;
    send(&host, drift("high")).await.unwrap();
    host.shutdown().await;
    assert!(received.try_recv().is_err());
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retryable_others_permanent() {
    let (addr, _received) = receiver::start().await;
    for (code, retryable) in [(429, true), (503, true), (400, false), (404, false)] {
        let host = slack(addr, &format!("/status/{code}"), "").await;
        let failure = send(&host, drift("high")).await.unwrap_err();
        assert_eq!(failure.class, FailureClass::Returned);
        assert_eq!(failure.retryable, retryable, "{code}: {failure}");
        assert_eq!(failure.message, format!("Slack answered {code}"));
        host.shutdown().await;
    }
}
