//! Alert hygiene (`dedup_key`, `dedup_window`, `renotify_on_change`,
//! `group_by`, `group_wait`, `group_interval`) from the outside: the
//! built-in Slack, email and webhook hooks against the loopback HTTP
//! receiver and SMTP listener of `common::receiver`, a batch hook, the
//! rate limit, a restart on the same data directory, a `hookhost run`
//! killed with SIGKILL, and what `hookhost run` and `hookhost emit` print.
//!
//! The first test sends two profiler runs (three tables, every column
//! added, a drift repeated three times with its severity rising, an
//! anomaly) through the Slack and email hooks, once without hygiene and
//! once with [`HYGIENE`], the config the README shows, and counts what
//! arrives.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::receiver::{self, Mail, Received};
use common::{final_stats, stats};
use hookhost::{Event, Fate, Host, PluginStats};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

/// The alert hygiene of the README's example: Slack gets drift, schema
/// changes and failures, each alert once an hour per table, column and
/// metric unless its severity rises; email gets everything, one digest per
/// table. The test runs it with `group_wait = "1s"`.
const HYGIENE: &str = r#"[plugins.slack]
events = ["DataDriftDetected", "SchemaChangeDetected", "ProfilingFailed"]
dedup_key = "{{ event_type }}:{{ metadata.table }}:{{ metadata.column }}:{{ metadata.metric }}"
dedup_window = "1h"
renotify_on_change = true

[plugins.email]
group_by = ["metadata.table"]
group_wait = "30s"
group_interval = "5m"
"#;

/// The tables of the profiler runs, each with the columns it adds.
const TABLES: [(&str, [&str; 5]); 3] = [
    (
        "orders",
        ["order_id", "customer_id", "amount", "status", "created_at"],
    ),
    (
        "customers",
        ["customer_id", "email", "country", "segment", "signed_up_at"],
    ),
    (
        "payments",
        ["payment_id", "order_id", "amount", "method", "paid_at"],
    ),
];

/// Events per table in one run: started, 5 columns added, 3 drifts, an
/// anomaly, completed.
const EVENTS_PER_TABLE: usize = 11;

/// Profiler runs sent.
const RUNS: usize = 2;

fn event(json: Value) -> Event {
    Event::from_json(&json.to_string()).expect("valid test event")
}

/// One profiler run (`run` 1 or 2, half an hour apart), shaped like a real
/// one: per table, profiling started, a schema change for every column
/// (each column added), a drift on the same column and metric three times
/// (medium, medium, high), an anomaly, profiling completed.
fn profiler_run(run: usize) -> Vec<Event> {
    let minute = 30 * (run - 1);
    let mut second = 0;
    let mut at = || {
        second += 1;
        format!("2025-03-04T02:{minute:02}:{second:02}Z")
    };
    let mut events = Vec::new();
    for (table, columns) in TABLES {
        let id = |what: &str| format!("run{run}-{table}-{what}");
        let run_id = format!("run-{run}");
        events.push(event(json!({
            "event_id": id("started"), "event_type": "ProfilingStarted", "timestamp": at(),
            "metadata": {"table": table, "run_id": run_id}})));
        for column in columns {
            events.push(event(json!({
                "event_id": id(&format!("added-{column}")), "event_type": "SchemaChangeDetected",
                "timestamp": at(),
                "metadata": {"table": table, "change_type": "column_added", "column": column,
                             "old_column_name": null, "old_type": null, "new_type": null,
                             "change_severity": "medium", "explanation": null}})));
        }
        for (n, (severity, current)) in [("medium", 112.0), ("medium", 118.0), ("high", 151.0)]
            .into_iter()
            .enumerate()
        {
            events.push(event(json!({
                "event_id": id(&format!("drift-{n}")), "event_type": "DataDriftDetected",
                "timestamp": at(),
                "metadata": {"table": table, "column": columns[2], "metric": "mean",
                             "baseline_value": 100.0, "current_value": current,
                             "change_percent": current - 100.0, "drift_severity": severity,
                             "explanation": null}})));
        }
        events.push(event(json!({
            "event_id": id("anomaly"), "event_type": "AnomalyDetected", "timestamp": at(),
            "metadata": {"table": table, "column": "__table__", "metric": "row_count",
                         "anomaly_type": "row_count_change", "expected_value": 1000,
                         "actual_value": 640, "severity": "medium", "detection_method": "zscore",
                         "explanation": "row count dropped"}})));
        events.push(event(json!({
            "event_id": id("completed"), "event_type": "ProfilingCompleted", "timestamp": at(),
            "metadata": {"table": table, "run_id": run_id, "row_count": 640,
                         "column_count": 5, "duration_seconds": 2.5}})));
    }
    assert_eq!(events.len(), TABLES.len() * EVENTS_PER_TABLE);
    events
}

/// The keys of section `[plugins.<plugin>]` in `hygiene` (the lines after
/// its header, up to the next header), empty when it has none.
fn section_keys(hygiene: &str, plugin: &str) -> String {
    let header = format!("[plugins.{plugin}]");
    hygiene
        .lines()
        .skip_while(|line| line.trim() != header)
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// A host running the built-in `slack` hook (posting to `slack`) and
/// `email` hook (sending through the SMTP listener on `smtp`, alerting from
/// `low`), with the keys `hygiene` gives each section.
async fn slack_and_email(slack: SocketAddr, smtp: SocketAddr, hygiene: &str) -> Host {
    let dir = tempfile::tempdir().unwrap();
    for name in ["slack", "email"] {
        std::fs::copy(
            common::builtin(name),
            dir.path().join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    let config = format!(
        "[mailers.alerts]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         from = \"hookhost <alerts@example.com>\"\n\n\
         [plugins.slack]\nhttp_allow = [\"http://{slack}\"]\nhttp_private = [\"127.0.0.1\"]\n{}\n\
         [plugins.slack.settings]\nwebhook_url = \"http://{slack}/hook\"\n\n\
         [plugins.email]\nmailers = [\"alerts\"]\ntimeout_ms = 3000\n{}\n\
         [plugins.email.settings]\nto = [\"data-team@example.com\"]\nmin_severity = \"low\"\n",
        smtp.port(),
        section_keys(hygiene, "slack"),
        section_keys(hygiene, "email"),
    );
    common::host(dir.path(), common::config(&config)).await
}

/// What two profiler runs through Slack and email delivered.
struct Delivered {
    slack: Vec<Value>,
    emails: Vec<Mail>,
    slack_stats: PluginStats,
    email_stats: PluginStats,
}

fn drain<T>(received: &mut UnboundedReceiver<T>) -> Vec<T> {
    let mut all = Vec::new();
    while let Ok(item) = received.try_recv() {
        all.push(item);
    }
    all
}

/// Sends `events`, waiting for each plugin's first outcome.
async fn send_all(host: &Host, events: Vec<Event>) {
    for event in events {
        let id = event.id.clone();
        let report = host.emit_with_report(event).unwrap().wait().await;
        for (plugin, outcome) in &report.outcomes {
            assert!(outcome.result.is_ok(), "{plugin} on {id}: {outcome:?}");
        }
    }
}

/// The slack message's field `title`, if it has one.
fn field<'a>(message: &'a Value, title: &str) -> Option<&'a Value> {
    message["attachments"][0]["fields"]
        .as_array()?
        .iter()
        .find(|f| f["title"] == title)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hygiene_cuts_two_profiler_runs_from_48_to_21_slack_messages_and_54_to_6_emails() {
    let events = TABLES.len() * EVENTS_PER_TABLE * RUNS;

    // Without hygiene: every alert of both runs, one message each.
    let (slack_addr, mut slack_received) = receiver::start().await;
    let (smtp_addr, mut smtp_received) = receiver::smtp().await;
    let host = slack_and_email(slack_addr, smtp_addr, "").await;
    for run in 1..=RUNS {
        send_all(&host, profiler_run(run)).await;
    }
    let summaries = host.shutdown().await;
    let plain = Delivered {
        slack: drain(&mut slack_received)
            .iter()
            .map(Received::json)
            .collect(),
        emails: drain(&mut smtp_received),
        slack_stats: final_stats(&summaries, "slack"),
        email_stats: final_stats(&summaries, "email"),
    };

    // With the hygiene config, group_wait shortened for the test.
    let hygiene = HYGIENE.replace("group_wait = \"30s\"", "group_wait = \"1s\"");
    assert_ne!(hygiene, HYGIENE);
    let (slack_addr, mut slack_received) = receiver::start().await;
    let (smtp_addr, mut smtp_received) = receiver::smtp().await;
    let host = slack_and_email(slack_addr, smtp_addr, &hygiene).await;
    send_all(&host, profiler_run(1)).await;
    // The first run's three groups are due a second after their first
    // events.
    let per_run = (TABLES.len() * EVENTS_PER_TABLE) as u64;
    common::eventually("the first run's digests", || {
        stats(&host, "email").handled == per_run
    })
    .await;
    let mut emails = drain(&mut smtp_received);
    let first_run_emails = emails.len();
    // The second run's groups come within group_interval (5m) of the
    // first's: they wait, and are delivered at shutdown.
    send_all(&host, profiler_run(2)).await;
    let summaries = host.shutdown().await;
    emails.extend(drain(&mut smtp_received));
    let with = Delivered {
        slack: drain(&mut slack_received)
            .iter()
            .map(Received::json)
            .collect(),
        emails,
        slack_stats: final_stats(&summaries, "slack"),
        email_stats: final_stats(&summaries, "email"),
    };

    eprintln!("messages for {RUNS} profiler runs ({events} events):");
    eprintln!("        without hygiene  with hygiene");
    eprintln!(
        "slack   {:>15}  {:>12}",
        plain.slack.len(),
        with.slack.len()
    );
    eprintln!(
        "email   {:>15}  {:>12}",
        plain.emails.len(),
        with.emails.len()
    );

    // Without: Slack posts every drift and schema change (8 a table a
    // run), email every event with a severity (9 a table a run).
    assert_eq!(plain.slack.len(), 48);
    assert_eq!(plain.emails.len(), 54);
    let s = &plain.slack_stats;
    assert_eq!(
        (s.handled, s.filtered, s.suppressed, s.digests),
        (66, 0, 0, 0)
    );
    let e = &plain.email_stats;
    assert_eq!(
        (e.handled, e.filtered, e.suppressed, e.digests),
        (66, 0, 0, 0)
    );

    // With: Slack gets 15 column additions and 6 drifts (per table the
    // first medium, then the high one as its severity rose) of the first
    // run; the second medium of each table and all of the second run are
    // suppressed; progress and anomalies are filtered.
    assert_eq!(with.slack.len(), 21);
    let s = &with.slack_stats;
    assert_eq!(
        (s.handled, s.filtered, s.suppressed, s.digests, s.grouped),
        (21, 18, 27, 0, 0)
    );
    let schema = with
        .slack
        .iter()
        .filter(|m| m["text"] == "➕ *Schema Change Detected*")
        .count();
    assert_eq!(schema, 15);
    for (table, _) in TABLES {
        let drifts: Vec<&Value> = with
            .slack
            .iter()
            .filter(|m| {
                m["text"]
                    .as_str()
                    .unwrap_or("")
                    .ends_with("*Data Drift Detected*")
            })
            .filter(|m| {
                field(m, "Table").map(|f| &f["value"]) == Some(&json!(format!("`{table}`")))
            })
            .collect();
        let severities: Vec<&Value> = drifts
            .iter()
            .map(|m| &field(m, "Severity").expect("a Severity field")["value"])
            .collect();
        assert_eq!(severities, [&json!("MEDIUM"), &json!("HIGH")], "{table}");
        assert_eq!(field(drifts[0], "Suppressed"), None, "{table}");
        // The renotified drift says how many repeats came before it.
        let fields = drifts[1]["attachments"][0]["fields"].as_array().unwrap();
        assert_eq!(
            fields.last().unwrap(),
            &json!({"title": "Suppressed", "value": "and 1 more like this since the last alert",
                    "short": false}),
            "{table}"
        );
    }

    // Email: one digest per table per run, each naming its table and
    // count; the first run's when due, the second's at shutdown.
    assert_eq!((first_run_emails, with.emails.len()), (3, 6));
    let e = &with.email_stats;
    assert_eq!(
        (e.handled, e.filtered, e.suppressed, e.digests, e.grouped),
        (66, 0, 0, 6, 66)
    );
    for (table, _) in TABLES {
        let subject = format!("Subject: [DIGEST] {EVENTS_PER_TABLE} events: {table}\n");
        let digests = with
            .emails
            .iter()
            .filter(|mail| mail.data.contains(&subject))
            .count();
        assert_eq!(digests, RUNS, "{subject:?} in {:#?}", with.emails);
    }
}

/// The config of the built-in `webhook` hook posting to `addr`, with the
/// wall clock it signs with and `hygiene` in its section.
fn webhook_config(addr: SocketAddr, hygiene: &str) -> String {
    format!(
        "[plugins.webhook]\nhttp_allow = [\"http://{addr}\"]\nhttp_private = [\"127.0.0.1\"]\n\
         wall_clock = true\n{hygiene}\n[plugins.webhook.settings]\nurl = \"http://{addr}/events\"\n"
    )
}

/// A host running the built-in `webhook` hook of [`webhook_config`].
async fn webhook(addr: SocketAddr, hygiene: &str) -> Host {
    common::builtin_host("webhook", &webhook_config(addr, hygiene)).await
}

/// A high drift on `<table>.amount` (mean) with id `id`.
fn drift(id: &str, table: &str) -> Event {
    event(json!({"event_id": id, "event_type": "DataDriftDetected",
        "timestamp": "2025-03-04T02:00:09Z",
        "metadata": {"table": table, "column": "amount", "metric": "mean",
                     "baseline_value": 100.0, "current_value": 150.0, "change_percent": 50.0,
                     "drift_severity": "high"}}))
}

/// Sends `event` and returns the only plugin's fate, asserting it did not
/// fail.
async fn fate_of(host: &Host, event: Event) -> Fate {
    let report = host.emit_with_report(event).unwrap().wait().await;
    assert_eq!(report.outcomes.len(), 1, "{report:?}");
    let outcome = &report.outcomes[0].1;
    assert!(outcome.result.is_ok(), "{outcome:?}");
    outcome.fate
}

const DEDUP_KEY: &str =
    "dedup_key = \"{{ event_type }}:{{ metadata.table }}:{{ metadata.column }}:{{ metadata.metric }}\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_delivery_after_the_window_carries_the_count_of_suppressed_repeats() {
    let (addr, mut received) = receiver::start().await;
    let host = webhook(addr, &format!("{DEDUP_KEY}dedup_window = \"2s\"\n")).await;
    assert_eq!(
        fate_of(&host, drift("first", "orders")).await,
        Fate::Delivered
    );
    let window_from = Instant::now();
    for n in 1..=4 {
        let fate = fate_of(&host, drift(&format!("repeat-{n}"), "orders")).await;
        assert_eq!(fate, Fate::Suppressed, "repeat {n}");
    }
    tokio::time::sleep_until((window_from + Duration::from_millis(2_200)).into()).await;
    let after = drift("after-the-window", "orders");
    assert_eq!(fate_of(&host, after.clone()).await, Fate::Delivered);
    let summaries = host.shutdown().await;

    let requests = drain(&mut received);
    assert_eq!(requests.len(), 2);
    let first = requests[0].json();
    assert_eq!(first["event_id"], "first");
    assert_eq!(first.get("suppressed"), None, "{first}");
    let mut expected = after.to_json_value();
    expected["suppressed"] = json!(4);
    assert_eq!(requests[1].json(), expected);
    let stats = final_stats(&summaries, "webhook");
    assert_eq!((stats.handled, stats.suppressed), (2, 4));
}

/// A host running the built-in `webhook` hook posting to `addr`, with a
/// one-hour `dedup_key` window and its data in `data`, if any.
async fn webhook_with_data(addr: SocketAddr, data: Option<&Path>) -> Host {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::builtin("webhook"),
        plugins.path().join("webhook.wasm"),
    )
    .unwrap();
    let config = webhook_config(addr, &format!("{DEDUP_KEY}dedup_window = \"1h\"\n"));
    let mut builder = Host::builder()
        .plugins_dir(plugins.path())
        .config(common::config(&config));
    if let Some(data) = data {
        builder = builder.data_dir(data);
    }
    let host = builder.build().await.expect("host builds");
    assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());
    host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_after_a_restart_is_suppressed_only_with_a_data_directory() {
    // With a data directory: the second host remembers the first's key.
    let (addr, mut received) = receiver::start().await;
    let data = tempfile::tempdir().unwrap();
    let host = webhook_with_data(addr, Some(data.path())).await;
    assert_eq!(
        fate_of(&host, drift("before", "orders")).await,
        Fate::Delivered
    );
    host.shutdown().await;
    assert!(data.path().join("routing.sqlite").exists());
    let host = webhook_with_data(addr, Some(data.path())).await;
    assert_eq!(
        fate_of(&host, drift("after", "orders")).await,
        Fate::Suppressed
    );
    let summaries = host.shutdown().await;
    let stats = final_stats(&summaries, "webhook");
    assert_eq!((stats.handled, stats.suppressed), (0, 1));
    let ids: Vec<Value> = drain(&mut received)
        .iter()
        .map(|r| r.json()["event_id"].clone())
        .collect();
    assert_eq!(ids, [json!("before")]);

    // Without one: the second host delivers the repeat.
    let (addr, mut received) = receiver::start().await;
    let host = webhook_with_data(addr, None).await;
    assert_eq!(
        fate_of(&host, drift("before", "orders")).await,
        Fate::Delivered
    );
    host.shutdown().await;
    let host = webhook_with_data(addr, None).await;
    assert_eq!(
        fate_of(&host, drift("after", "orders")).await,
        Fate::Delivered
    );
    let summaries = host.shutdown().await;
    let stats = final_stats(&summaries, "webhook");
    assert_eq!((stats.handled, stats.suppressed), (1, 0));
    let ids: Vec<Value> = drain(&mut received)
        .iter()
        .map(|r| r.json()["event_id"].clone())
        .collect();
    assert_eq!(ids, [json!("before"), json!("after")]);
}

/// `noop` copies named `names`, configured by `toml`.
async fn noop_host(names: &[(&str, &str)], toml: &str) -> Host {
    let dir = tempfile::tempdir().unwrap();
    for (name, fixture) in names {
        std::fs::copy(
            common::fixture(fixture),
            dir.path().join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    common::host(dir.path(), common::config(toml)).await
}

/// Three groups of five events at `2/s` (a burst of two, then one every
/// 500 ms): the three digests are three deliveries, so one waits; were
/// each event counted, thirteen would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_waits_for_the_rate_limit_once_not_once_per_event() {
    let host = noop_host(
        &[("noop", "noop")],
        "[plugins.noop]\nrate_limit = \"2/s\"\ngroup_by = [\"metadata.table\"]\n\
         group_wait = \"1s\"\n",
    )
    .await;
    for n in 0..5 {
        for (table, _) in TABLES {
            let fate = fate_of(&host, drift(&format!("{table}-{n}"), table)).await;
            assert_eq!(fate, Fate::Grouped);
        }
    }
    common::eventually("the three digests", || stats(&host, "noop").handled == 15).await;
    let summaries = host.shutdown().await;
    let stats = final_stats(&summaries, "noop");
    assert_eq!(
        (
            stats.handled,
            stats.digests,
            stats.grouped,
            stats.rate_limited
        ),
        (15, 3, 15, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_hook_handles_every_grouped_event_with_one_digest_counted_per_group() {
    let host = noop_host(
        &[("batch", "noop-batch")],
        "[plugins.batch]\ngroup_by = [\"metadata.table\"]\ngroup_wait = \"1s\"\n",
    )
    .await;
    // Interleaved, as a profiler of several tables at once sends them.
    for n in 0..4 {
        for (table, _) in TABLES {
            let fate = fate_of(&host, drift(&format!("{table}-{n}"), table)).await;
            assert_eq!(fate, Fate::Grouped);
        }
    }
    common::eventually("the three groups", || stats(&host, "batch").handled == 12).await;
    let summaries = host.shutdown().await;
    let stats = final_stats(&summaries, "batch");
    assert_eq!(
        (
            stats.handled,
            stats.digests,
            stats.grouped,
            stats.failed_total()
        ),
        (12, 3, 12, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_groups_are_delivered_at_shutdown_as_one_digest() {
    let (addr, mut received) = receiver::start().await;
    let host = webhook(
        addr,
        "group_by = [\"metadata.table\"]\ngroup_wait = \"1h\"\n",
    )
    .await;
    for id in ["g-1", "g-2", "g-3"] {
        assert_eq!(fate_of(&host, drift(id, "orders")).await, Fate::Grouped);
    }
    assert!(
        received.try_recv().is_err(),
        "nothing before the group is due"
    );
    let summaries = host.shutdown().await;
    let requests = drain(&mut received);
    assert_eq!(requests.len(), 1);
    let digest = requests[0].json();
    assert_eq!(digest["event_type"], "hookhost.digest");
    let id = digest["event_id"].as_str().unwrap();
    assert!(
        id.starts_with("digest-") && id.len() == "digest-".len() + 32,
        "{id}"
    );
    let metadata = &digest["metadata"];
    assert_eq!(metadata["count"], 3);
    assert_eq!(metadata["group"], json!({"metadata.table": "orders"}));
    assert_eq!(metadata["table"], "orders");
    assert_eq!(metadata["counts"], json!({"DataDriftDetected": 3}));
    let ids: Vec<&Value> = metadata["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["event_id"])
        .collect();
    assert_eq!(ids, [&json!("g-1"), &json!("g-2"), &json!("g-3")]);
    let stats = final_stats(&summaries, "webhook");
    assert_eq!((stats.handled, stats.digests, stats.grouped), (3, 1, 3));
}

/// A `hookhost run` process whose stdout and stderr go to files.
struct Run {
    child: Child,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl Run {
    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }
}

/// A test that fails midway does not leave the process running.
impl Drop for Run {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The events in flight in the write-ahead log of data directory `data`,
/// read from a copy of its `wal` folder (the running process locks the
/// original).
fn in_log(data: &Path) -> Vec<String> {
    let copy = tempfile::tempdir().unwrap();
    let wal = data.join("wal");
    if !wal.exists() {
        return Vec::new();
    }
    std::fs::create_dir_all(copy.path().join("wal")).unwrap();
    for entry in std::fs::read_dir(&wal).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            // A segment may be replaced while we copy: try again later.
            if std::fs::copy(
                entry.path(),
                copy.path().join("wal").join(entry.file_name()),
            )
            .is_err()
            {
                return Vec::new();
            }
        }
    }
    let Ok((_wal, recovered)) = hookhost::delivery::wal::Wal::open(copy.path()) else {
        return Vec::new();
    };
    recovered
        .into_iter()
        .map(|entry| {
            let event: Value = serde_json::from_str(&entry.event_json).unwrap();
            event["event_id"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

/// `--drain-timeout` of the `hookhost run` tests: a run that waits for it
/// before delivering its open groups takes longer than [`PROMPT`].
const DRAIN_TIMEOUT: &str = "40";

/// How long a `hookhost run` whose input ends at once may take, start-up
/// included, when it delivers its open groups as soon as input ends.
const PROMPT: Duration = Duration::from_secs(20);

/// Grouped events stay in the write-ahead log until their group is
/// delivered: killed with five events grouped for an hour, the next start
/// (with no new input) recovers them and, as soon as its input ends,
/// delivers them in one digest.
#[test]
fn grouped_events_survive_sigkill_and_arrive_once_in_one_digest_as_soon_as_input_ends() {
    const EVENTS: usize = 5;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (addr, mut received) = runtime.block_on(receiver::start());
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::builtin("webhook"),
        plugins.path().join("webhook.wasm"),
    )
    .unwrap();
    let config = plugins.path().join("hookhost.toml");
    std::fs::write(
        &config,
        format!(
            "[defaults]\nmax_attempts = 1\nbreaker_threshold = 0\n\n{}",
            webhook_config(
                addr,
                "group_by = [\"metadata.table\"]\ngroup_wait = \"1h\"\n"
            )
        ),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let start = |label: &str, stdin: Stdio| {
        let stdout = logs.path().join(format!("{label}.stdout"));
        let stderr = logs.path().join(format!("{label}.stderr"));
        let child = common::hookhost_command()
            .env("RUST_LOG", "info")
            .arg("run")
            .arg("--plugins")
            .arg(plugins.path())
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(data.path())
            .args(["--drain-timeout", DRAIN_TIMEOUT])
            .stdin(stdin)
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start hookhost run");
        Run {
            child,
            stdout,
            stderr,
        }
    };
    let ids: Vec<String> = (1..=EVENTS).map(|n| format!("crash-{n}")).collect();

    // The first run: the events accepted (in the log), input still open,
    // then SIGKILL.
    let mut run = start("first", Stdio::piped());
    let mut stdin = run.child.stdin.take().unwrap();
    let input: String = ids
        .iter()
        .map(|id| format!("{}\n", drift(id, "orders").to_json()))
        .collect();
    std::io::Write::write_all(&mut stdin, input.as_bytes()).unwrap();
    let started = Instant::now();
    loop {
        let mut logged = in_log(data.path());
        logged.sort();
        if logged == ids {
            break;
        }
        if let Ok(Some(status)) = run.child.try_wait() {
            panic!("the first run ended ({status}):\n{}", run.output());
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the log holds {logged:?}:\n{}",
            run.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    drop(stdin);
    assert!(
        received.try_recv().is_err(),
        "nothing delivered before the kill"
    );

    // The second run: no input at all.
    let mut run = start("second", Stdio::null());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = run.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the second run did not end:\n{}",
            run.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let output = run.output();
    assert!(status.success(), "{output}");
    assert!(
        took < PROMPT,
        "the run with no input took {took:?} (--drain-timeout {DRAIN_TIMEOUT}):\n{output}"
    );
    assert!(
        output.contains(&format!("{EVENTS} events in flight recovered")),
        "{output}"
    );
    assert!(
        output.contains(&format!(
            "webhook: {EVENTS} events delivered in 1 groups (group_by)"
        )),
        "{output}"
    );
    let requests = drain(&mut received);
    assert_eq!(requests.len(), 1, "{output}");
    let digest = requests[0].json();
    assert_eq!(digest["event_type"], "hookhost.digest");
    assert_eq!(digest["metadata"]["count"], EVENTS);
    let mut delivered: Vec<String> = digest["metadata"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    delivered.sort();
    assert_eq!(delivered, ids);
    assert!(in_log(data.path()).is_empty(), "the log is done with them");
}

#[test]
fn hookhost_emit_says_an_event_was_grouped() {
    let dir = common::plugins_dir(&["noop"]);
    let config = dir.path().join("hookhost.toml");
    std::fs::write(
        &config,
        "[plugins.noop]\ngroup_by = [\"metadata.table\"]\ngroup_wait = \"1h\"\n",
    )
    .unwrap();
    let output = common::hookhost_command()
        .args(["emit", "--plugins", dir.path().to_str().unwrap()])
        .args(["--config", config.to_str().unwrap()])
        .arg(drift("e", "orders").to_json())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout,
        "noop: grouped: delivered with its group (group_by) when the group is due\n"
    );
}

/// Four drifts (three on `orders`, one on `customers`) through a plugin
/// that deduplicates by table and one that groups by table for an hour:
/// the run ends as soon as its input does, and its summary counts two
/// repeats, and four events delivered in two groups.
#[test]
fn hookhost_run_delivers_open_groups_as_soon_as_input_ends_and_counts_repeats_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["dedup", "digest"] {
        std::fs::copy(
            common::fixture("noop"),
            dir.path().join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    let config = dir.path().join("hookhost.toml");
    std::fs::write(
        &config,
        "[plugins.dedup]\ndedup_key = \"{{ metadata.table }}\"\n\n\
         [plugins.digest]\ngroup_by = [\"metadata.table\"]\ngroup_wait = \"1h\"\n",
    )
    .unwrap();
    let input: String = ["o-1", "o-2", "o-3"]
        .iter()
        .map(|id| drift(id, "orders"))
        .chain([drift("c-1", "customers")])
        .map(|event| format!("{}\n", event.to_json()))
        .collect();
    let started = Instant::now();
    let output = common::run_with_input(
        common::hookhost_command()
            .args(["run", "--plugins", dir.path().to_str().unwrap()])
            .args(["--config", config.to_str().unwrap()])
            .args(["--drain-timeout", DRAIN_TIMEOUT]),
        &input,
    );
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let handled = |plugin: &str| -> u64 {
        stdout
            .lines()
            .find(|line| line.starts_with(&format!("{plugin} ")))
            .and_then(|row| row.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {plugin} row:\n{stdout}"))
    };
    assert_eq!((handled("dedup"), handled("digest")), (2, 4), "{stdout}");
    for line in [
        "4 events dispatched, 0 malformed lines skipped",
        "dedup: 2 repeats suppressed by its dedup_key",
        "digest: 4 events delivered in 2 groups (group_by)",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line:?} not in:\n{stdout}"
        );
    }
    assert!(
        !stdout.contains("still pending"),
        "the groups were left pending:\n{stdout}"
    );
    assert!(
        took < PROMPT,
        "the run took {took:?} (--drain-timeout {DRAIN_TIMEOUT}):\n{stdout}\n{stderr}"
    );
}

/// A digest that fails retryably is delivered again whole: the same digest
/// id, `webhook-attempt` 2, and its events are handled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_answered_503_is_delivered_again_whole() {
    let receiver = common::flaky::Flaky::start(common::flaky::Policy::FailFirst {
        failures: 1,
        retry_after: None,
    })
    .await;
    let config = receiver.webhook_config(
        "webhook",
        "group_by = [\"metadata.table\"]\ngroup_wait = \"0s\"\nmax_attempts = 3\n\
         retry_initial_ms = 50\nretry_max_ms = 100",
    );
    let host = common::builtin_host("webhook", &config).await;
    // Two tables: two groups of one, each due at once.
    for (id, table) in [("r-1", "orders"), ("r-2", "customers")] {
        assert_eq!(fate_of(&host, drift(id, table)).await, Fate::Grouped);
    }
    common::eventually("both digests delivered", || {
        stats(&host, "webhook").handled == 2
    })
    .await;
    let summaries = host.shutdown().await;
    let tries = receiver.all_tries();
    assert_eq!(tries.len(), 2, "{tries:?}");
    for (id, tries) in &tries {
        assert!(id.starts_with("digest-"), "{id}");
        let answers: Vec<(u16, Option<u32>)> =
            tries.iter().map(|t| (t.status, t.attempt)).collect();
        assert_eq!(answers, [(503, Some(1)), (200, Some(2))], "{id}");
    }
    let stats = final_stats(&summaries, "webhook");
    assert_eq!(
        (stats.handled, stats.retried, stats.digests, stats.grouped),
        (2, 2, 2, 2)
    );
}

/// A digest that fails for good puts each of its events in the dead
/// letters, with the digest's failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_that_fails_for_good_puts_each_of_its_events_in_the_dead_letters() {
    let host = noop_host(
        &[("fails", "returns-error")],
        "[plugins.fails]\ngroup_by = [\"metadata.table\"]\ngroup_wait = \"1s\"\n",
    )
    .await;
    for id in ["d-1", "d-2", "d-3"] {
        assert_eq!(fate_of_any(&host, drift(id, "orders")).await, Fate::Grouped);
    }
    common::eventually("the group in the dead letters", || {
        stats(&host, "fails").dead_lettered == 3
    })
    .await;
    let letters = host.dead_letters().list(Some("fails")).await.unwrap();
    let ids: Vec<&str> = letters.iter().map(|l| l.event_id.as_str()).collect();
    assert_eq!(ids, ["d-1", "d-2", "d-3"]);
    for letter in &letters {
        assert_eq!(letter.class, "error");
        assert!(letter.last_error.contains("hookhost.digest"), "{letter:?}");
    }
    let summaries = host.shutdown().await;
    let stats = final_stats(&summaries, "fails");
    assert_eq!(
        (
            stats.handled,
            stats.failed_total(),
            stats.digests,
            stats.grouped
        ),
        (0, 3, 1, 3)
    );
}

/// Sends `event` and returns the only plugin's fate, whatever the result.
async fn fate_of_any(host: &Host, event: Event) -> Fate {
    let report = host.emit_with_report(event).unwrap().wait().await;
    assert_eq!(report.outcomes.len(), 1, "{report:?}");
    report.outcomes[0].1.fate
}

/// A plugin unloaded (its file removed while the host watches the folder)
/// delivers its open groups before its worker ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unloaded_plugin_delivers_its_open_groups() {
    let (addr, mut received) = receiver::start().await;
    let plugins = tempfile::tempdir().unwrap();
    let file = plugins.path().join("webhook.wasm");
    std::fs::copy(common::builtin("webhook"), &file).unwrap();
    let config = webhook_config(
        addr,
        "group_by = [\"metadata.table\"]\ngroup_wait = \"1h\"\n",
    );
    let host = Host::builder()
        .plugins_dir(plugins.path())
        .watch(true)
        .config(common::config(&config))
        .build()
        .await
        .expect("host builds");
    for id in ["u-1", "u-2"] {
        assert_eq!(fate_of(&host, drift(id, "orders")).await, Fate::Grouped);
    }
    std::fs::remove_file(&file).unwrap();
    common::eventually("the unload", || host.plugin_names().is_empty()).await;
    let digest = tokio::time::timeout(Duration::from_secs(20), received.recv())
        .await
        .expect("the digest within 20 s")
        .expect("a request");
    assert_eq!(digest.json()["metadata"]["count"], 2);
    host.shutdown().await;
    assert!(received.try_recv().is_err(), "one digest only");
}
