//! What a running host shows of itself, over real HTTP on 127.0.0.1:
//! `GET /metrics` parsed by a Prometheus text parser and checked against a
//! known stream of events, `GET /plugins` with a rejected plugin and no
//! secret, `hookhost status` against a running `hookhost run --listen`,
//! and its `--log-format json` log read line by line.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::flaky::{Flaky, Policy};
use hookhost::{Event, Host};
use serde_json::{json, Value};

/// The webhook's signing secret, and a database password: neither may
/// appear in what the host shows.
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const DB_PASSWORD: &str = "pw-never-shown-4b1d";

/// A plugins folder with the built-in `webhook` hook, the `returns-error`
/// fixture (every event fails permanently) and `broken.wasm`, which is not
/// WebAssembly; and a config pointing the webhook at `receiver`, letting
/// only drift events through to it and suppressing repeats of a table's
/// drift, with a secret and a database password in it.
fn setup(receiver: &Flaky) -> (tempfile::TempDir, String) {
    let dir = common::plugins_dir(&["returns-error"]);
    std::fs::copy(common::builtin("webhook"), dir.path().join("webhook.wasm")).unwrap();
    std::fs::write(dir.path().join("broken.wasm"), b"not a component at all").unwrap();
    let limits = "events = [\"DataDriftDetected\"]\n\
                  dedup_key = \"{{ metadata.table }}\"\n\
                  dedup_window = \"1h\"\n\
                  max_attempts = 1";
    let config = format!(
        "{}secret = \"{WEBHOOK_SECRET}\"\n\
         [databases.warehouse]\n\
         url = \"postgres://hookhost:{DB_PASSWORD}@127.0.0.1:9/warehouse\"\n\
         [plugins.returns-error]\n\
         max_attempts = 1\n\
         databases = [\"warehouse\"]\n",
        receiver.webhook_config("webhook", limits)
    );
    (dir, config)
}

fn drift(table: &str) -> Event {
    let json = json!({"event_type": "DataDriftDetected", "timestamp": "2025-01-15T10:30:00Z",
        "metadata": {"table": table, "column": "amount", "metric": "mean",
                     "baseline_value": 1.0, "current_value": 2.0, "change_percent": 100.0,
                     "drift_severity": "high"}});
    Event::from_json(&json.to_string()).unwrap()
}

fn started(table: &str) -> Event {
    let json = json!({"event_type": "ProfilingStarted", "metadata": {"table": table}});
    Event::from_json(&json.to_string()).unwrap()
}

/// Serves `hookhost::observe::router` over `host` on a free loopback port.
async fn serve(host: &Arc<Host>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = hookhost::observe::router(host, None);
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// Every sample of `text` by its name and labels (`name{a="1",b="2"}`,
/// labels sorted).
fn samples(text: &str) -> BTreeMap<String, f64> {
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the Prometheus text parses");
    let mut samples = BTreeMap::new();
    for sample in scrape.samples {
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(buckets) => {
                for bucket in buckets {
                    let key = key(
                        &format!("{}_bucket", sample.metric),
                        &sample.labels,
                        Some(bucket.less_than),
                    );
                    samples.insert(key, bucket.count);
                }
                continue;
            }
            prometheus_parse::Value::Summary(_) => continue,
        };
        samples.insert(key(&sample.metric, &sample.labels, None), value);
    }
    samples
}

fn key(metric: &str, labels: &prometheus_parse::Labels, le: Option<f64>) -> String {
    let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    pairs.sort();
    if pairs.is_empty() {
        metric.to_owned()
    } else {
        format!("{metric}{{{}}}", pairs.join(","))
    }
}

fn value(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key}; the samples: {samples:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_stream_and_plugins_shows_a_rejected_plugin_and_no_secret() {
    let receiver = Flaky::start(Policy::Healthy).await;
    let (dir, config) = setup(&receiver);
    let host = Host::builder()
        .plugins_dir(dir.path())
        .config(common::config(&config))
        .build()
        .await
        .unwrap();
    assert_eq!(host.load_errors().len(), 1, "broken.wasm only");
    let host = Arc::new(host);
    let base = serve(&host).await;

    // 5 tables drift (each once, then 2 of them again: repeats), and 3
    // profiling runs start: 10 events, all to `returns-error`; 5 to the
    // webhook, 2 suppressed and 3 filtered for it.
    let mut events = Vec::new();
    for table in ["a", "b", "c", "d", "e", "a", "b"] {
        events.push(drift(table));
    }
    for table in ["x", "y", "z"] {
        events.push(started(table));
    }
    for event in events {
        host.send(event).await.unwrap();
    }
    // One over `[engine] max_event_kib` (1 MiB by default): refused.
    let mut huge = started("big");
    huge.metadata = json!({ "table": "big", "blob": "x".repeat(2 << 20) }).to_string();
    assert!(host.send(huge).await.is_err());

    common::eventually("every event done", || {
        let stats = |name| common::stats(&host, name);
        let webhook = stats("webhook");
        webhook.handled == 5
            && webhook.suppressed == 2
            && stats("returns-error").dead_lettered == 10
    })
    .await;
    assert_eq!(receiver.ids_with_200().len(), 5);

    let http = reqwest::Client::new();
    let response = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let samples = samples(&text);
    let webhook = |metric: &str| value(&samples, &format!("{metric}{{plugin=\"webhook\"}}"));
    let failing = |metric: &str| value(&samples, &format!("{metric}{{plugin=\"returns-error\"}}"));

    assert_eq!(webhook("hookhost_plugin_events_handled_total"), 5.0);
    assert_eq!(webhook("hookhost_plugin_events_filtered_total"), 3.0);
    assert_eq!(webhook("hookhost_plugin_events_suppressed_total"), 2.0);
    assert_eq!(webhook("hookhost_plugin_events_dead_lettered_total"), 0.0);
    assert_eq!(webhook("hookhost_plugin_queue_depth"), 0.0);
    assert_eq!(webhook("hookhost_plugin_breaker_state"), 0.0);
    assert!(webhook("hookhost_plugin_fuel_consumed_total") > 0.0);
    assert_eq!(failing("hookhost_plugin_events_handled_total"), 0.0);
    assert_eq!(failing("hookhost_plugin_events_dead_lettered_total"), 10.0);
    assert_eq!(failing("hookhost_plugin_deliveries_retried_total"), 0.0);
    assert!(failing("hookhost_plugin_fuel_consumed_total") > 0.0);
    let failed = |plugin: &str, class: &str| {
        let key = format!(
            "hookhost_plugin_deliveries_failed_total{{class=\"{class}\",plugin=\"{plugin}\"}}"
        );
        value(&samples, &key)
    };
    assert_eq!(failed("returns-error", "error"), 10.0);
    assert_eq!(failed("returns-error", "trap"), 0.0);
    assert_eq!(failed("webhook", "error"), 0.0);

    // The latency histogram: one observation per delivery, buckets
    // cumulative, the last one (+Inf) counting all of them.
    assert_eq!(
        webhook("hookhost_plugin_delivery_duration_seconds_count"),
        5.0
    );
    assert!(webhook("hookhost_plugin_delivery_duration_seconds_sum") > 0.0);
    let buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|(k, _)| {
            k.starts_with("hookhost_plugin_delivery_duration_seconds_bucket{")
                && k.contains("plugin=\"webhook\"")
        })
        .map(|(k, v)| {
            let le = k.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
            (le.parse::<f64>().unwrap(), *v)
        })
        .collect();
    assert_eq!(buckets.len(), 15, "{buckets:?}");
    let mut sorted = buckets.clone();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(sorted.windows(2).all(|w| w[0].1 <= w[1].1), "{sorted:?}");
    assert_eq!(sorted.last().unwrap(), &(f64::INFINITY, 5.0));
    assert!(
        sorted.iter().any(|(le, _)| *le == 0.001048576),
        "{sorted:?}"
    );

    // Process-wide: 10 accepted, the huge one refused; the broken file.
    assert_eq!(value(&samples, "hookhost_events_accepted_total"), 10.0);
    assert_eq!(
        value(
            &samples,
            "hookhost_events_refused_total{reason=\"too_large\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "hookhost_events_refused_total{reason=\"queue_full\"}"
        ),
        0.0
    );
    assert_eq!(value(&samples, "hookhost_plugin_load_errors"), 1.0);
    assert_eq!(value(&samples, "hookhost_plugins_live"), 2.0);
    assert_eq!(
        value(&samples, "hookhost_plugin_reload_rejections_total"),
        0.0
    );

    // `GET /plugins`: both live plugins, the rejected file, no secret.
    let response = http.get(format!("{base}/plugins")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(
        !body.contains(WEBHOOK_SECRET),
        "the webhook secret leaked: {body}"
    );
    assert!(
        !body.contains(DB_PASSWORD),
        "the database password leaked: {body}"
    );
    let report: Value = serde_json::from_str(&body).unwrap();
    let plugins = report["plugins"].as_array().unwrap();
    let names: Vec<&str> = plugins
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["broken", "returns-error", "webhook"]);

    let broken = &plugins[0];
    assert_eq!(broken["state"], "rejected");
    assert_eq!(broken["version"], Value::Null);
    let reason = broken["rejection"].as_str().unwrap();
    assert!(reason.contains("not a WebAssembly file"), "{reason}");
    assert!(broken["file"].as_str().unwrap().ends_with("broken.wasm"));

    let failing = &plugins[1];
    assert_eq!(failing["state"], "serving");
    assert_eq!(failing["counts"]["failed"], 10);
    assert_eq!(failing["counts"]["dead_lettered"], 10);
    assert_eq!(failing["grants"]["databases"], json!(["warehouse"]));
    let last = failing["last_failures"].as_array().unwrap();
    assert_eq!(last.len(), 5, "the last five of ten failures are kept");
    for failure in last {
        assert_eq!(failure["class"], "error");
        assert_eq!(failure["retryable"], false);
        let message = failure["message"].as_str().unwrap();
        assert!(message.contains("always fails"), "{message}");
    }
    // The last one is of the last event sent to it.
    let message = last[4]["message"].as_str().unwrap();
    assert!(message.contains("ProfilingStarted"), "{message}");

    let webhook = &plugins[2];
    assert_eq!(webhook["state"], "serving");
    assert_eq!(webhook["version"].as_str().unwrap().len(), 64);
    assert_eq!(webhook["counts"]["handled"], 5);
    assert_eq!(webhook["counts"]["breaker"], "closed");
    assert_eq!(webhook["limits"]["max_attempts"], 1);
    assert!(webhook["limits"]["fuel"].as_u64().unwrap() > 0);
    assert!(webhook["limits"]["memory_bytes"].as_u64().unwrap() > 0);
    assert!(webhook["limits"]["timeout_ms"].as_u64().unwrap() > 0);
    assert_eq!(
        webhook["grants"]["http"][0],
        receiver.url().trim_end_matches("/events")
    );
    assert_eq!(webhook["grants"]["wall_clock"], true);
    assert_eq!(webhook["last_failures"], json!([]));

    let host = Arc::try_unwrap(host)
        .ok()
        .expect("the server holds the host weakly");
    host.shutdown().await;
    let response = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 503, "no host, no metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_a_running_daemons_plugins_and_its_json_log_parses_line_by_line() {
    let receiver = Flaky::start(Policy::Healthy).await;
    let (dir, config) = setup(&receiver);
    let mut daemon = daemon(dir.path(), &config, &["--log-format", "json"]);
    let (base, stderr, mut logged_lines) = listening(&mut daemon).await;

    let events = json!([
        {"event_id": "drift-1", "event_type": "DataDriftDetected",
         "metadata": {"table": "orders", "drift_severity": "high"}},
        {"event_id": "start-1", "event_type": "ProfilingStarted", "metadata": {"table": "orders"}},
    ]);
    post_events(&base, &events, None).await;
    common::eventually("the webhook delivered the drift event", || {
        receiver.ids_with_200().len() == 1
    })
    .await;

    let url = base.clone();
    let output = tokio::task::spawn_blocking(move || {
        common::hookhost_command()
            .args(["status", "--url", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let table = String::from_utf8(output.stdout).unwrap();
    let errors = String::from_utf8_lossy(&output.stderr);
    // A rejected plugin makes it exit 1, after printing the table.
    assert_eq!(output.status.code(), Some(1), "{table}{errors}");
    assert!(
        !table.contains(WEBHOOK_SECRET) && !table.contains(DB_PASSWORD),
        "{table}"
    );
    let rows: Vec<Vec<&str>> = table
        .lines()
        .filter(|line| !line.starts_with(' '))
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][..3], ["plugin", "state", "version"], "{table}");
    let row = |name: &str| {
        rows.iter()
            .find(|row| row[0] == name)
            .unwrap_or_else(|| panic!("no row for {name}: {table}"))
    };
    assert_eq!(row("broken")[1], "rejected", "{table}");
    assert_eq!(row("webhook")[1], "serving", "{table}");
    assert_eq!(row("webhook")[3], "1", "handled: {table}");
    assert_eq!(row("returns-error")[4], "2", "failed: {table}");
    assert!(table.contains("    rejected: "), "{table}");
    assert!(table.contains("not a WebAssembly file"), "{table}");
    assert!(table.contains("    failed "), "{table}");
    assert!(
        row("returns-error")
            .last()
            .unwrap()
            .contains("sql:warehouse"),
        "{table}"
    );

    // The status of nothing: an error naming the URL, exit 1.
    let output = tokio::task::spawn_blocking(|| {
        common::hookhost_command()
            .args(["status", "--url", "http://127.0.0.1:9"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(
        errors.contains("cannot reach hookhost at http://127.0.0.1:9/plugins"),
        "{errors}"
    );

    logged_lines.push_str(&stop(daemon, stderr).await);
    let stderr = logged_lines;
    // Every log line is one JSON object; the other lines are the
    // command's own messages (where it listens, warnings), not log lines.
    let mut logged = Vec::new();
    for line in stderr.lines() {
        if line.starts_with('{') {
            let object: Value = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("{err}: a log line that is not JSON: {line}"));
            assert!(
                object["timestamp"].is_string() && object["level"].is_string(),
                "{line}"
            );
            logged.push(object);
        } else {
            for level in ["INFO", "WARN", "ERROR", "DEBUG"] {
                assert!(
                    !line.contains(&format!(" {level} ")),
                    "a text log line: {line}"
                );
            }
        }
    }
    let failure = logged
        .iter()
        .find(|line| line["plugin"] == "returns-error" && line["event_id"] == "start-1")
        .unwrap_or_else(|| panic!("no log line about start-1's failure: {stderr}"));
    assert_eq!(failure["level"], "WARN");
    assert_eq!(failure["class"], "error");
    assert!(logged
        .iter()
        .any(|line| line["plugin"] == "webhook" && line["message"] == "loaded"));
    assert!(
        logged.iter().any(|line| line["level"] == "ERROR"
            && line["message"]
                .as_str()
                .unwrap_or("")
                .contains("broken.wasm")),
        "the rejected file is logged: {stderr}"
    );
    assert!(!stderr.contains(WEBHOOK_SECRET) && !stderr.contains(DB_PASSWORD));
}

/// Posts `events` to the daemon at `base`, with a `traceparent` if given,
/// and asserts they are accepted.
async fn post_events(base: &str, events: &Value, traceparent: Option<&str>) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/events"))
        .body(events.to_string());
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
}

/// Starts `hookhost GLOBAL run --in-memory --listen 127.0.0.1:0` over the
/// plugins folder `dir`, with `config` written beside them.
fn daemon(dir: &std::path::Path, config: &str, global: &[&str]) -> Child {
    let config_path = dir.join("hookhost.toml");
    std::fs::write(&config_path, config).unwrap();
    common::hookhost_command()
        .args(global)
        .args(["run", "--in-memory", "--listen", "127.0.0.1:0", "--plugins"])
        .arg(dir)
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for the daemon to say where it listens; returns its base URL, the
/// lines of stderr as they come, and those that came before.
async fn listening(daemon: &mut Child) -> (String, std::sync::mpsc::Receiver<String>, String) {
    let lines = common::forward_lines(daemon.stderr.take().unwrap());
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("hookhost says where it listens: {seen}"));
            if let Some(url) = line.split("listening on ").nth(1) {
                break (url.trim().to_owned(), lines, seen);
            }
            seen.push_str(&line);
            seen.push('\n');
        }
    })
    .await
    .unwrap()
}

/// Stops the daemon with SIGTERM; returns the rest of its stderr.
async fn stop(mut daemon: Child, lines: std::sync::mpsc::Receiver<String>) -> String {
    let killed = unsafe { libc::kill(daemon.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(killed, 0);
    let mut stdout = daemon.stdout.take().unwrap();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = daemon.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = daemon.kill();
                panic!("hookhost did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        assert!(status.success(), "exit {status}: {rest}");
        let mut text = String::new();
        while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    })
    .await
    .unwrap()
}

/// What a local OTLP/HTTP receiver got: every span of every request, as
/// its JSON object with the resource's `service.name` added.
type Spans = Arc<std::sync::Mutex<Vec<Value>>>;

/// Starts an OTLP/HTTP receiver on 127.0.0.1 taking JSON bodies at
/// `POST /v1/traces`; returns its base URL and what it received.
async fn otlp_receiver() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let kept = spans.clone();
    let router = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let request: Value = serde_json::from_slice(&body).expect("an OTLP JSON body");
                for resource in request["resourceSpans"].as_array().unwrap() {
                    let service = resource["resource"]["attributes"]
                        .as_array()
                        .and_then(|attributes| {
                            attributes.iter().find(|a| a["key"] == "service.name")
                        })
                        .map(|a| a["value"]["stringValue"].clone());
                    for scope in resource["scopeSpans"].as_array().unwrap() {
                        for span in scope["spans"].as_array().unwrap() {
                            let mut span = span.clone();
                            span["service"] = service.clone().unwrap_or(Value::Null);
                            kept.lock().unwrap().push(span);
                        }
                    }
                }
                ([("content-type", "application/json")], "{}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}"), spans)
}

/// The string value of a span's attribute `key`.
fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"]["stringValue"]
        .as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_a_local_otlp_receiver_under_the_callers_traceparent() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const CALLER_SPAN: &str = "00f067aa0ba902b7";
    let receiver = Flaky::start(Policy::Healthy).await;
    let (collector, spans) = otlp_receiver().await;
    let (dir, config) = setup(&receiver);
    let global = ["--log-format", "json", "--otlp-endpoint", &collector];
    let mut daemon = daemon(dir.path(), &config, &global);
    let (base, stderr, mut logged) = listening(&mut daemon).await;

    let traced = json!({"event_id": "traced-1", "event_type": "DataDriftDetected",
                        "metadata": {"table": "orders", "drift_severity": "high"}});
    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    post_events(&base, &traced, Some(&traceparent)).await;
    let untraced = json!({"event_id": "untraced-1", "event_type": "ProfilingStarted",
                          "metadata": {"table": "orders"}});
    post_events(&base, &untraced, None).await;
    common::eventually("the webhook delivered the drift event", || {
        receiver.ids_with_200().len() == 1
    })
    .await;
    // The exit sends the spans not sent yet.
    logged.push_str(&stop(daemon, stderr).await);

    let spans = spans.lock().unwrap().clone();
    let all = serde_json::to_string_pretty(&spans).unwrap();
    assert!(spans.iter().all(|s| s["service"] == "hookhost"), "{all}");
    let event = |id: &str| {
        spans
            .iter()
            .find(|s| s["name"] == "event" && attribute(s, "event_id") == Some(id))
            .unwrap_or_else(|| panic!("no span for event {id}: {all}"))
    };
    let by_id = |id: &Value| {
        spans
            .iter()
            .find(|s| s["spanId"] == *id)
            .unwrap_or_else(|| panic!("no span {id}: {all}"))
    };

    // The traced event: caller -> request -> event -> one delivery per plugin.
    let traced = event("traced-1");
    assert_eq!(traced["traceId"], TRACE, "{all}");
    let request = by_id(&traced["parentSpanId"]);
    assert_eq!(request["name"], "http request");
    assert_eq!(request["parentSpanId"], CALLER_SPAN, "{all}");
    let deliveries: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "delivery" && s["parentSpanId"] == traced["spanId"])
        .collect();
    let mut plugins: Vec<&str> = deliveries
        .iter()
        .map(|s| attribute(s, "plugin").unwrap())
        .collect();
    plugins.sort();
    assert_eq!(plugins, ["returns-error", "webhook"], "{all}");
    assert!(deliveries.iter().all(|s| s["traceId"] == TRACE));

    // Without a traceparent: a trace of its own, from the request down.
    let untraced = event("untraced-1");
    assert_ne!(untraced["traceId"], TRACE);
    let request = by_id(&untraced["parentSpanId"]);
    let root = request["parentSpanId"].as_str().unwrap_or("");
    assert!(root.is_empty(), "{all}");
    // The webhook's routing keeps ProfilingStarted from it.
    let deliveries = spans
        .iter()
        .filter(|s| s["name"] == "delivery" && s["parentSpanId"] == untraced["spanId"])
        .count();
    assert_eq!(deliveries, 1, "{all}");

    // The log line of the traced event's failure names its trace.
    let line = logged
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|line| line["plugin"] == "returns-error" && line["event_id"] == "traced-1")
        .unwrap_or_else(|| panic!("no log line of traced-1's failure: {logged}"));
    assert_eq!(line["trace_id"], TRACE, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_hot_reload_refuses_are_shown_rejected_and_counted() {
    let receiver = Flaky::start(Policy::Healthy).await;
    let (dir, config) = setup(&receiver);
    std::fs::remove_file(dir.path().join("broken.wasm")).unwrap();
    let host = Host::builder()
        .plugins_dir(dir.path())
        .config(common::config(&config))
        .watch(true)
        .build()
        .await
        .unwrap();
    assert!(host.load_errors().is_empty());
    let host = Arc::new(host);
    let base = serve(&host).await;

    // A new file that is not a component, and a new version of a live
    // plugin that is not one either.
    std::fs::write(dir.path().join("late.wasm"), b"\0asm but not really").unwrap();
    std::fs::write(dir.path().join("returns-error.wasm"), b"garbage").unwrap();
    common::eventually("both files rejected", || host.reload_stats().rejected >= 2).await;

    let http = reqwest::Client::new();
    let report: Value =
        serde_json::from_str(&get_text(&http, &format!("{base}/plugins")).await).unwrap();
    let plugins = report["plugins"].as_array().unwrap();
    let names: Vec<&str> = plugins
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["late", "returns-error", "webhook"], "{report:#}");
    assert_eq!(plugins[0]["state"], "rejected");
    assert!(plugins[0]["rejection"]
        .as_str()
        .unwrap()
        .contains("late.wasm"));
    // The old version keeps serving; the report says why the new one did not.
    assert_eq!(plugins[1]["state"], "serving");
    assert!(plugins[1]["version"].is_string());
    let reason = plugins[1]["rejection"].as_str().unwrap();
    assert!(reason.contains("not a WebAssembly file"), "{reason}");
    assert_eq!(plugins[2]["rejection"], Value::Null);

    let text = get_text(&http, &format!("{base}/metrics")).await;
    let samples = samples(&text);
    assert_eq!(
        value(&samples, "hookhost_plugin_reload_rejections_total"),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            "hookhost_plugin_reloads_total{change=\"swapped\"}"
        ),
        0.0
    );

    let host = Arc::try_unwrap(host).ok().expect("held weakly");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_shows_as_cooling_down_in_metrics_and_plugins() {
    let dir = common::plugins_dir(&["panics"]);
    let config = "[plugins.panics]\nbreaker_threshold = 2\nbreaker_cooldown_ms = 600000\n";
    let host = Arc::new(common::host(dir.path(), common::config(config)).await);
    let base = serve(&host).await;
    for seq in 0..3 {
        host.send(common::event(seq)).await.unwrap();
    }
    common::eventually("the breaker opened", || {
        common::stats(&host, "panics").breaker_opened == 1
    })
    .await;

    let http = reqwest::Client::new();
    let text = get_text(&http, &format!("{base}/metrics")).await;
    let samples = samples(&text);
    let key = "hookhost_plugin_breaker_state{plugin=\"panics\"}";
    assert_eq!(value(&samples, key), 1.0);
    let key = "hookhost_plugin_deliveries_failed_total{class=\"trap\",plugin=\"panics\"}";
    assert_eq!(value(&samples, key), 2.0);
    // The third event waits for the cool-down, not yet completed.
    let key = "hookhost_plugin_events_unfinished{plugin=\"panics\"}";
    assert_eq!(value(&samples, key), 1.0);

    let report: Value =
        serde_json::from_str(&get_text(&http, &format!("{base}/plugins")).await).unwrap();
    let panics = &report["plugins"][0];
    assert_eq!(panics["state"], "cooling_down", "{report:#}");
    assert_eq!(panics["counts"]["breaker"], "open");
    assert_eq!(panics["last_failures"][0]["class"], "trap");

    let host = Arc::try_unwrap(host).ok().expect("held weakly");
    host.shutdown_within(Duration::ZERO).await;
}

/// The body of `GET url`, as text.
async fn get_text(http: &reqwest::Client, url: &str) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}
