//! Hostile hooks against the HTTP and email capabilities, one attack per
//! test, with real servers on 127.0.0.1: each attack is refused (or cut at
//! its bound) with the error that says why, a `noop` plugin loaded next to
//! the attacker keeps serving, and the loopback servers receive nothing
//! beyond what the grants allow.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::receiver::{self, Mail, Received};
use hookhost::{Event, Host, PluginSummary};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

/// A host running the fixture `attacker` and `noop`, configured by `toml`.
async fn start_host(attacker: &str, toml: &str) -> Host {
    let dir = common::plugins_dir(&[attacker, "noop"]);
    common::host(dir.path(), common::config(toml)).await
}

/// Sends an event with `metadata`; returns the attacker's error message (or
/// "ok"), after checking that `noop` handled the event.
async fn attack(host: &Host, attacker: &str, metadata: Value) -> String {
    let event = json!({"event_type": "Attack", "metadata": metadata});
    let event = Event::from_json(&event.to_string()).unwrap();
    let report = host.emit_with_report(event).unwrap().wait().await;
    let outcome = |name: &str| {
        let (_, outcome) = report
            .outcomes
            .iter()
            .find(|(plugin, _)| plugin == name)
            .unwrap_or_else(|| panic!("no outcome for {name}: {report:?}"));
        outcome.result.clone()
    };
    assert!(outcome("noop").is_ok(), "the other plugin: {report:?}");
    match outcome(attacker) {
        Ok(()) => "ok".to_owned(),
        Err(failure) => failure.message,
    }
}

/// An `http-client` section allowing `http://{allow}` with `private` in
/// `http_private`.
fn http_grant(allow: &str, private: &[&str]) -> String {
    format!(
        "[plugins.http-client]\ntimeout_ms = 5000\nhttp_allow = [\"http://{allow}\"]\n\
         http_private = {private:?}\n"
    )
}

/// Every request that reached the receiver so far (waiting a little for
/// stragglers).
async fn arrived(received: &mut UnboundedReceiver<Received>) -> Vec<Received> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut all = Vec::new();
    while let Ok(request) = received.try_recv() {
        all.push(request);
    }
    all
}

fn summary<'a>(summaries: &'a [PluginSummary], name: &str) -> &'a PluginSummary {
    summaries
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no summary for {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_variables_in_the_environment_do_not_route_requests() {
    let (addr, mut received) = receiver::start().await;
    let (canary, connections) = receiver::canary().await;
    let dir = common::plugins_dir(&["http-client", "noop"]);
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("hookhost.toml");
    std::fs::write(&config, http_grant(&addr.to_string(), &["127.0.0.1"])).unwrap();
    let event = json!({"event_type": "Attack", "metadata": {"url": format!("http://{addr}/ok")}});
    let mut command = common::hookhost_command();
    command
        .arg("emit")
        .arg("--plugins")
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .arg(event.to_string());
    let proxy = format!("http://{canary}");
    for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        command
            .env(name, &proxy)
            .env(name.to_ascii_lowercase(), &proxy);
    }
    // A bypass list that does not name the destination.
    command
        .env("NO_PROXY", "example.invalid")
        .env("no_proxy", "example.invalid");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let arrived = arrived(&mut received).await;
    assert_eq!(arrived.len(), 1, "{arrived:?}");
    assert_eq!(arrived[0].path, "/ok");
    assert_eq!(connections.load(Ordering::SeqCst), 0, "the proxy was used");
}

#[tokio::test]
async fn a_host_header_from_the_plugin_is_refused_and_nothing_is_sent() {
    let (addr, mut received) = receiver::start().await;
    let host = start_host(
        "http-client",
        &http_grant(&addr.to_string(), &["127.0.0.1"]),
    )
    .await;
    let message = attack(
        &host,
        "http-client",
        json!({"url": format!("http://{addr}/admin"), "headers": [["Host", "internal.example"]]}),
    )
    .await;
    assert!(
        message.starts_with("invalid request: header \"Host\" is set by the host"),
        "{message}"
    );
    assert!(arrived(&mut received).await.is_empty());
    host.shutdown().await;
}

#[tokio::test]
async fn line_breaks_in_header_names_or_values_are_refused_and_nothing_is_sent() {
    let (addr, mut received) = receiver::start().await;
    let host = start_host(
        "http-client",
        &http_grant(&addr.to_string(), &["127.0.0.1"]),
    )
    .await;
    let url = format!("http://{addr}/ok");
    let in_value = attack(
        &host,
        "http-client",
        json!({"url": url, "headers": [["X-Note", "a\r\nHost: internal.example"]]}),
    )
    .await;
    assert!(
        in_value.starts_with("invalid request: the value of header \"X-Note\" holds a control"),
        "{in_value}"
    );
    let in_name = attack(
        &host,
        "http-client",
        json!({"url": url, "headers": [["X-Note\r\nHost", "internal.example"]]}),
    )
    .await;
    assert!(
        in_name.starts_with(
            "invalid request: header name \"X-Note\\r\\nHost\" is not a valid HTTP header name"
        ),
        "{in_name}"
    );
    assert!(arrived(&mut received).await.is_empty());
    host.shutdown().await;
}

#[tokio::test]
async fn thirty_thousand_headers_are_refused_and_the_plugin_serves_its_next_event() {
    let (addr, mut received) = receiver::start().await;
    let host = start_host(
        "http-client",
        &http_grant(&addr.to_string(), &["127.0.0.1"]),
    )
    .await;
    let url = format!("http://{addr}/ok");
    let message = attack(
        &host,
        "http-client",
        json!({"url": url, "header_count": 30_000}),
    )
    .await;
    assert!(
        message.starts_with(
            "invalid request: the request has 30000 headers, over the bound of 100 per request"
        ),
        "{message}"
    );
    assert!(arrived(&mut received).await.is_empty());
    // The same plugin's next event is served: its worker is alive. At the
    // bound, the headers are sent.
    let at_bound = json!({"url": url, "header_count": 100});
    assert_eq!(attack(&host, "http-client", at_bound).await, "ok");
    let arrived = arrived(&mut received).await;
    assert_eq!(arrived.len(), 1);
    assert_eq!(arrived[0].header("x-h99"), Some("v"));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_megabyte_url_is_refused_and_a_long_denial_logs_a_short_line() {
    // Through the library: the error names the size, not the URL.
    let host = start_host("http-client", "").await;
    let huge = json!({"url": "http://127.0.0.1:9/", "path_bytes": 10_000_000});
    let message = attack(&host, "http-client", huge.clone()).await;
    assert!(
        message
            .starts_with("invalid request: the URL is 10000019 bytes long, over the 8192-byte cap"),
        "{message}"
    );
    assert!(message.len() < 200, "{} bytes", message.len());
    host.shutdown().await;

    // Through the command: the huge URL, then one under the cap but far
    // from any grant, whose denial names it.
    let long = json!({"url": "http://127.0.0.1:9/", "path_bytes": 8_000});
    let lines: String = [huge, long]
        .into_iter()
        .map(|metadata| {
            format!(
                "{}\n",
                json!({"event_type": "Attack", "metadata": metadata})
            )
        })
        .collect();
    let dir = common::plugins_dir(&["http-client", "noop"]);
    let mut command = common::hookhost_command();
    command.arg("run").arg("--plugins").arg(dir.path());
    let output = tokio::task::spawn_blocking(move || common::run_with_input(&mut command, &lines))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let denials: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("http request denied"))
        .collect();
    assert_eq!(denials.len(), 1, "{stderr}");
    assert!(
        denials[0].contains("... (cut: ") && denials[0].len() < 1500,
        "{} bytes: {}",
        denials[0].len(),
        denials[0]
    );
    assert!(stderr.len() < 64 << 10, "{} bytes of stderr", stderr.len());
}

#[tokio::test]
async fn an_ipv4_mapped_loopback_address_needs_its_own_private_listing() {
    let (addr, mut received) = receiver::start().await;
    let port = addr.port();
    let mapped = format!("[::ffff:127.0.0.1]:{port}");
    let url = format!("http://{mapped}/ok");
    // 127.0.0.1 is listed; the mapped form of it is not.
    let host = start_host("http-client", &http_grant(&mapped, &["127.0.0.1"])).await;
    let message = attack(&host, "http-client", json!({ "url": url })).await;
    assert!(
        message.starts_with("denied: [::ffff:7f00:1] is a non-public address"),
        "{message}"
    );
    assert!(arrived(&mut received).await.is_empty());
    let summaries = host.shutdown().await;
    assert_eq!(summary(&summaries, "http-client").http_denied, 1);

    let host = start_host("http-client", &http_grant(&mapped, &["::ffff:127.0.0.1"])).await;
    assert_eq!(
        attack(&host, "http-client", json!({ "url": url })).await,
        "ok"
    );
    assert_eq!(
        arrived(&mut received).await.len(),
        1,
        "listed, it is reached"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn a_nat64_address_embedding_loopback_is_denied() {
    let (addr, mut received) = receiver::start().await;
    let nat64 = format!("[64:ff9b::7f00:1]:{}", addr.port());
    let host = start_host("http-client", &http_grant(&nat64, &["127.0.0.1"])).await;
    let message = attack(
        &host,
        "http-client",
        json!({"url": format!("http://{nat64}/ok")}),
    )
    .await;
    assert!(
        message.starts_with("denied: [64:ff9b::7f00:1] is a non-public address"),
        "{message}"
    );
    assert!(arrived(&mut received).await.is_empty());
    host.shutdown().await;
}

#[tokio::test]
async fn odd_spellings_of_loopback_are_denied() {
    let (addr, mut received) = receiver::start().await;
    let port = addr.port();
    // Allowed by host and port, not listed as private.
    let host = start_host(
        "http-client",
        &http_grant(&format!("127.0.0.1:{port}"), &[]),
    )
    .await;
    for url in [
        format!("http://2130706433:{port}/ok"),
        format!("http://0x7f.1:{port}/ok"),
        format!("http://127.1:{port}/ok"),
    ] {
        let message = attack(&host, "http-client", json!({ "url": url })).await;
        assert!(
            message.starts_with("denied: 127.0.0.1 is a non-public address"),
            "{url}: {message}"
        );
    }
    assert!(arrived(&mut received).await.is_empty());
    host.shutdown().await;
}

#[tokio::test]
async fn a_thousand_requests_in_one_event_send_only_the_per_event_bound() {
    let (addr, mut received) = receiver::start().await;
    let host = start_host(
        "http-client",
        &http_grant(&addr.to_string(), &["127.0.0.1"]),
    )
    .await;
    let url = format!("http://{addr}/ok");
    let message = attack(&host, "http-client", json!({"url": url, "repeat": 1000})).await;
    assert!(
        message.starts_with("sent 1000: 100 ok, 900 denied, 0 other; first denial: "),
        "{message}"
    );
    assert!(
        message.contains("would be request 101 of this event, and plugin http-client may send at most 100 per event"),
        "{message}"
    );
    assert_eq!(arrived(&mut received).await.len(), 100);
    // The next event starts from zero.
    assert_eq!(
        attack(&host, "http-client", json!({ "url": url })).await,
        "ok"
    );
    assert_eq!(arrived(&mut received).await.len(), 1);
    let summaries = host.shutdown().await;
    assert_eq!(summary(&summaries, "http-client").http_denied, 900);
}

#[tokio::test]
async fn redirect_hops_count_toward_the_per_event_bound() {
    let (addr, mut received) = receiver::start().await;
    let host = start_host(
        "http-client",
        &http_grant(&addr.to_string(), &["127.0.0.1"]),
    )
    .await;
    // Three requests each: /redirect/2, /redirect/1, /redirect/0.
    let url = format!("http://{addr}/redirect/2");
    let message = attack(&host, "http-client", json!({"url": url, "repeat": 40})).await;
    assert!(
        message.starts_with("sent 40: 33 ok, 7 denied, 0 other; first denial: "),
        "{message}"
    );
    assert_eq!(arrived(&mut received).await.len(), 100);
    host.shutdown().await;
}

/// An `email-client` host whose mailer `alerts` is the SMTP server at
/// `addr`.
async fn email_host(addr: SocketAddr) -> Host {
    email_host_with(addr, "").await
}

/// [`email_host`] with `extra` lines in the plugin's section.
async fn email_host_with(addr: SocketAddr, extra: &str) -> Host {
    let toml = format!(
        "[mailers.alerts]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         from = \"hookhost <alerts@example.com>\"\n\
         [plugins.email-client]\nmailers = [\"alerts\"]\ntimeout_ms = 10000\n{extra}",
        addr.port()
    );
    start_host("email-client", &toml).await
}

async fn delivered(received: &mut UnboundedReceiver<Mail>) -> Vec<Mail> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut all = Vec::new();
    while let Ok(mail) = received.try_recv() {
        all.push(mail);
    }
    all
}

#[tokio::test]
async fn a_hundred_messages_in_one_event_are_cut_at_the_message_bound() {
    let (addr, mut received) = receiver::smtp().await;
    let host = email_host(addr).await;
    let message = attack(
        &host,
        "email-client",
        json!({"messages": 100, "recipients": 1}),
    )
    .await;
    assert!(
        message.starts_with(
            "sent 10 of 100; first error: denied: plugin email-client has sent 10 messages \
             in this event, the most one event may send"
        ),
        "{message}"
    );
    assert_eq!(delivered(&mut received).await.len(), 10);
    host.shutdown().await;
}

#[tokio::test]
async fn a_thousand_recipients_in_one_message_are_refused() {
    let (addr, mut received) = receiver::smtp().await;
    let host = email_host(addr).await;
    let message = attack(
        &host,
        "email-client",
        json!({"messages": 1, "recipients": 1000}),
    )
    .await;
    assert!(
        message.starts_with(
            "sent 0 of 1; first error: denied: a message to 1000 recipients (to and cc) is \
             over the bound of 50 per message"
        ),
        "{message}"
    );
    assert!(delivered(&mut received).await.is_empty());
    host.shutdown().await;
}

#[tokio::test]
async fn a_million_recipients_are_refused_by_their_count_before_any_is_read() {
    let (addr, mut received) = receiver::smtp().await;
    // Room for the guest to build a million addresses.
    let host = email_host_with(addr, "memory_mib = 512\nfuel = 20000000000\n").await;
    // The last address is not one: the count is refused before it is read.
    let started = Instant::now();
    let message = attack(
        &host,
        "email-client",
        json!({"messages": 1, "recipients": 1_000_000, "bad_recipient": true}),
    )
    .await;
    assert!(
        message.starts_with(
            "sent 0 of 1; first error: denied: a message to 1000000 recipients (to and cc) \
             is over the bound of 50 per message"
        ),
        "{message}"
    );
    // Parsing the million addresses first took over a minute.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(delivered(&mut received).await.is_empty());
    host.shutdown().await;
}

#[tokio::test]
async fn a_ten_megabyte_body_is_refused_and_nothing_is_delivered() {
    let (addr, mut received) = receiver::smtp().await;
    let host = email_host(addr).await;
    let message = attack(
        &host,
        "email-client",
        json!({"messages": 1, "recipients": 1, "body_bytes": 10 << 20}),
    )
    .await;
    // "message 0" and ten MiB of body.
    assert!(
        message.starts_with(
            "sent 0 of 1; first error: invalid: subject and body take 10485769 bytes, over \
             the cap of 1048576 bytes per message"
        ),
        "{message}"
    );
    assert!(delivered(&mut received).await.is_empty());
    host.shutdown().await;
}

#[tokio::test]
async fn a_thousand_recipients_over_many_messages_are_cut_at_the_event_bound() {
    let (addr, mut received) = receiver::smtp().await;
    let host = email_host(addr).await;
    let message = attack(
        &host,
        "email-client",
        json!({"messages": 20, "recipients": 50}),
    )
    .await;
    assert!(
        message.starts_with(
            "sent 2 of 20; first error: denied: this message would bring the recipients of \
             plugin email-client's messages in this event to 150, over the bound of 100"
        ),
        "{message}"
    );
    let mails = delivered(&mut received).await;
    let recipients: usize = mails.iter().map(|mail| mail.recipients.len()).sum();
    assert_eq!((mails.len(), recipients), (2, 100));
    host.shutdown().await;
}

#[tokio::test]
async fn headers_and_commands_smuggled_in_subject_or_body_stay_text() {
    let (addr, mut received) = receiver::smtp().await;
    let host = email_host(addr).await;
    let message = attack(
        &host,
        "email-client",
        json!({"messages": 1, "recipients": 1,
               "subject": "hi\r\nBcc: victim@example.net\r\nFrom: ceo@example.com",
               "body": "a\r\n.\r\nMAIL FROM:<x@example.com>\r\nRCPT TO:<victim@example.net>\r\n\
                        DATA\r\nsmuggled\n.\nRCPT TO:<victim2@example.net>\r\n"}),
    )
    .await;
    assert_eq!(message, "sent 1 of 1; first error: none");
    let mails = delivered(&mut received).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail.from, "<alerts@example.com>");
    assert_eq!(mail.recipients, ["<m0-r0@example.com>"]);
    let headers = mail.data.split_once("\n\n").map_or("", |(head, _)| head);
    for line in headers.lines() {
        let injected =
            line.starts_with("Bcc:") || (line.starts_with("From:") && line.contains("ceo"));
        assert!(
            !injected,
            "injected header line {line:?} in:\n{}",
            mail.data
        );
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_denials_log_a_few_lines_a_second_and_count_every_one() {
    // Ten events of a thousand requests to a destination it is not granted.
    let lines: String = (0..10)
        .map(|_| {
            let event = json!({"event_type": "Attack",
                "metadata": {"url": "http://127.0.0.1:9/", "repeat": 1000}});
            format!("{event}\n")
        })
        .collect();
    let dir = common::plugins_dir(&["http-client", "noop"]);
    let mut command = common::hookhost_command();
    command.arg("run").arg("--plugins").arg(dir.path());
    let started = Instant::now();
    let input = lines.clone();
    let output = tokio::task::spawn_blocking(move || common::run_with_input(&mut command, &input))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let logged = stderr
        .lines()
        .filter(|line| line.contains("http request denied"))
        .count();
    // At most 10 a second, in each one-second window the run spans.
    let windows = elapsed.as_secs() as usize + 1;
    assert!(
        (1..=10 * windows).contains(&logged),
        "{logged} lines in {elapsed:?}:\n{stderr}"
    );

    // The same events through the library: every denial is counted.
    let host = start_host("http-client", "").await;
    for line in lines.lines() {
        let report = host
            .emit_with_report(Event::from_json(line).unwrap())
            .unwrap()
            .wait()
            .await;
        assert!(report
            .outcomes
            .iter()
            .any(|(name, o)| name == "noop" && o.result.is_ok()));
    }
    let summaries = host.shutdown().await;
    assert_eq!(summary(&summaries, "http-client").http_denied, 10_000);
}

#[tokio::test]
async fn a_response_body_counts_against_the_plugins_memory_cap() {
    let (addr, mut received) = receiver::start().await;
    // Under the 1 MiB body cap, over what a 2 MiB plugin has left.
    let url = format!("http://{addr}/bytes/1000000");
    let small = format!(
        "{}memory_mib = 2\n",
        http_grant(&addr.to_string(), &["127.0.0.1"])
    );
    let host = start_host("http-client", &small).await;
    let message = attack(&host, "http-client", json!({ "url": url })).await;
    assert!(
        message.starts_with(
            "too large: response body does not fit in plugin http-client's memory: memory \
             cap of 2097152 bytes exceeded"
        ),
        "{message}"
    );
    assert!(
        message.contains("raise memory_mib in [plugins.http-client]"),
        "{message}"
    );
    assert_eq!(arrived(&mut received).await.len(), 1);
    host.shutdown().await;

    // With the default cap the same body is read.
    let host = start_host(
        "http-client",
        &http_grant(&addr.to_string(), &["127.0.0.1"]),
    )
    .await;
    assert_eq!(
        attack(&host, "http-client", json!({ "url": url })).await,
        "ok"
    );
    host.shutdown().await;
}
