//! The email capability and the built-in `email` hook against a real SMTP
//! listener on 127.0.0.1: recipients, subject and body of the message
//! received, the severity threshold, and a refused connection.

mod common;

use common::receiver::smtp as smtp_listener;
use hookhost::{Event, Host};
use serde_json::json;

async fn email_host(port: u16, settings: &str) -> Host {
    let config = format!(
        "[mailers.alerts]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         from = \"hookhost <alerts@example.com>\"\n\
         [plugins.email]\nmailers = [\"alerts\"]\ntimeout_ms = 3000\n\
         [plugins.email.settings]\nto = [\"data-team@example.com\", \"Oncall <oncall@example.com>\"]\n{settings}"
    );
    common::builtin_host("email", &config).await
}

fn drift(severity: &str) -> Event {
    let json = json!({"event_id": "evt-9", "event_type": "DataDriftDetected",
        "timestamp": "2025-01-15T10:30:00Z",
        "metadata": {"table": "orders", "column": "total_amount", "metric": "mean",
                     "baseline_value": 100.0, "current_value": 150.0, "change_percent": 50.0,
                     "drift_severity": severity, "explanation": "mean rose by half"}});
    Event::from_json(&json.to_string()).unwrap()
}

async fn send(host: &Host, event: Event) -> Result<(), hookhost::Failure> {
    let report = host.emit_with_report(event).unwrap().wait().await;
    report.outcomes[0].1.result.clone()
}

#[tokio::test]
async fn a_drift_alert_reaches_every_recipient_with_subject_and_fields() {
    let (addr, mut received) = smtp_listener().await;
    let host = email_host(addr.port(), "cc = \"lead@example.com\"\n").await;
    send(&host, drift("high")).await.unwrap();
    let mail = received.recv().await.unwrap();
    assert_eq!(mail.from, "<alerts@example.com>");
    assert_eq!(
        mail.recipients,
        [
            "<data-team@example.com>",
            "<oncall@example.com>",
            "<lead@example.com>"
        ]
    );
    assert!(
        mail.data
            .contains("Subject: [ALERT] Data Drift Detected: orders.total_amount\n"),
        "{}",
        mail.data
    );
    assert!(
        mail.data
            .contains("To: data-team@example.com, Oncall <oncall@example.com>\n"),
        "{}",
        mail.data
    );
    // SMTP ends the data with a line break of its own.
    let body = mail.data.split_once("\n\n").unwrap().1.trim_end();
    assert_eq!(
        body,
        "Table: orders\nColumn: total_amount\nMetric: mean\nBaseline: 100.00\nCurrent: 150.00\n\
         Change: +50.0%\nSeverity: HIGH\nTimestamp: 2025-01-15 10:30:00 UTC\nEvent ID: evt-9\n\n\
         mean rose by half"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn events_below_the_threshold_send_nothing_and_failures_always_alert() {
    let (addr, mut received) = smtp_listener().await;
    let host = email_host(addr.port(), "min_severity = \"high\"\n").await;
    send(&host, drift("medium")).await.unwrap();
    let failure = json!({"event_type": "ProfilingFailed", "timestamp": "2025-01-15T10:32:00Z",
        "metadata": {"table": "payments", "run_id": "run-42", "error": "permission denied"}});
    send(&host, Event::from_json(&failure.to_string()).unwrap())
        .await
        .unwrap();
    let mail = received.recv().await.unwrap();
    assert!(
        mail.data
            .contains("Subject: [ALERT] Profiling Failed: payments\n"),
        "{}",
        mail.data
    );
    assert!(
        mail.data.contains("Error: permission denied\n"),
        "{}",
        mail.data
    );
    host.shutdown().await;
    assert!(
        received.try_recv().is_err(),
        "the medium drift sent nothing"
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_retryable_error() {
    // Bind and drop a listener so the port is closed.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let host = email_host(port, "").await;
    let failure = send(&host, drift("high")).await.unwrap_err();
    assert!(failure.retryable, "{failure}");
    assert!(failure.message.starts_with("email:"), "{failure}");
    host.shutdown().await;
}

#[tokio::test]
async fn an_ungranted_mailer_is_denied_naming_the_fix() {
    let (addr, _received) = smtp_listener().await;
    let host = email_host(addr.port(), "mailer = \"marketing\"\n").await;
    let failure = send(&host, drift("high")).await.unwrap_err();
    assert!(!failure.retryable);
    assert!(
        failure
            .message
            .contains("mailer `marketing` is not granted to plugin email"),
        "{failure}"
    );
    host.shutdown().await;
}
