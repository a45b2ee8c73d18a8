//! Drop-in compatibility with the Python profilers' own hooks, and the first
//! five minutes of a new user.
//!
//! `tests/profiler-stream/events.jsonl` is a profiler run as a tool sends it
//! (both spellings of each event type, change types in both spellings,
//! naive and offset timestamps, nulls, bare NaN, Infinity and -Infinity,
//! anomalies with expected values,
//! validations with severities); `expected.jsonl` holds, for each event, the
//! Slack payload and the events-table row that baselinr 0.9.0's own
//! `SlackAlertHook` and `SQLEventHook` produce for it (written by
//! `reference.py`, which runs those hooks; its docstring lists where hookhost
//! follows `shared/reference/slack-messages.md` instead). The built-in
//! `slack` and `sql` hooks get the stream; payloads arrive at a real HTTP
//! receiver on 127.0.0.1 and rows are read back from a real SQLite file,
//! and both are compared field by field.
//!
//! The quick start (`hookhost run < examples/events.jsonl`) and the
//! embedding example are run as a user would run them.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};
use common::receiver;
use hookhost::{Event, Host};
use serde_json::Value;
use sqlx::sqlite::SqlitePool;
use tokio::sync::mpsc::UnboundedReceiver;

const STREAM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/profiler-stream/events.jsonl"
);
const EXPECTED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/profiler-stream/expected.jsonl"
);

/// The shared columns, in `expected.jsonl`'s row order.
const SHARED: [&str; 11] = [
    "event_type",
    "run_id",
    "table_name",
    "column_name",
    "metric_name",
    "baseline_value",
    "current_value",
    "change_percent",
    "drift_severity",
    "timestamp",
    "metadata",
];

/// The DDL of baselinr 0.9.0's `SQLEventHook` table (its docstring), which a
/// team moving to hookhost already has.
const BASELINR_TABLE: &str = "CREATE TABLE baselinr_events (
    event_id VARCHAR(36) PRIMARY KEY, event_type VARCHAR(100) NOT NULL,
    run_id VARCHAR(36), table_name VARCHAR(255), column_name VARCHAR(255),
    metric_name VARCHAR(100), baseline_value FLOAT, current_value FLOAT,
    change_percent FLOAT, drift_severity VARCHAR(20), timestamp TIMESTAMP NOT NULL,
    metadata TEXT, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)";

fn lines(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// The stream's events, as the host reads them, with what each should
/// give.
fn stream() -> Vec<(Event, Value)> {
    let events = lines(STREAM);
    let expected = lines(EXPECTED);
    assert_eq!(
        events.len(),
        expected.len(),
        "expected.jsonl is out of date: run tests/profiler-stream/reference.py"
    );
    events
        .iter()
        .zip(&expected)
        .map(|(event, expected)| {
            (
                Event::from_json(event).unwrap(),
                serde_json::from_str(expected).unwrap(),
            )
        })
        .collect()
}

/// A host with the built-in `slack` hook posting to `addr` (named and
/// footed as baselinr's, to a channel) and the built-in `sql` hook writing
/// to `table` in the SQLite file `db`.
async fn host(addr: SocketAddr, db: &Path, table: &str) -> Host {
    let dir = tempfile::tempdir().unwrap();
    for name in ["slack", "sql"] {
        std::fs::copy(
            common::builtin(name),
            dir.path().join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    let config = format!(
        "[plugins.slack]\nhttp_allow = [\"http://{addr}\"]\nhttp_private = [\"127.0.0.1\"]\n\
         [plugins.slack.settings]\nwebhook_url = \"http://{addr}/slack\"\n\
         channel = \"#data-alerts\"\nusername = \"Baselinr\"\nfooter = \"Baselinr\"\n\
         [databases.events]\nbackend = \"sqlite\"\npath = \"{}\"\n\
         [plugins.sql]\ndatabases = [\"events\"]\nbatch_size = 1\n\
         [plugins.sql.settings]\ntable = \"{table}\"\n",
        db.display()
    );
    common::host(dir.path(), common::config(&config)).await
}

/// Sends the stream one event at a time, checking each Slack payload (or
/// that none was sent) as it goes; returns the events sent.
async fn send_stream(
    host: &Host,
    received: &mut UnboundedReceiver<receiver::Received>,
) -> Vec<(Event, Value)> {
    let stream = stream();
    for (event, expected) in &stream {
        let line = &expected["line"];
        let report = host.emit_with_report(event.clone()).unwrap().wait().await;
        for (plugin, outcome) in &report.outcomes {
            assert!(
                outcome.result.is_ok(),
                "line {line}: {plugin}: {:?}",
                outcome.result
            );
        }
        // The hook posts before it returns, and the receiver records a
        // request before answering it.
        let sent = received.try_recv().ok();
        match (&expected["slack"], sent) {
            (Value::Null, None) => {}
            (Value::Null, Some(request)) => {
                panic!(
                    "line {line}: baselinr sends nothing, hookhost sent {}",
                    request.json()
                )
            }
            (want, None) => panic!("line {line}: no Slack message; expected {want}"),
            (want, Some(request)) => {
                assert_eq!(request.path, "/slack");
                compare_payload(line, &request.json(), want);
            }
        }
    }
    stream
}

/// The payload field by field, so a difference names the field.
fn compare_payload(line: &Value, got: &Value, want: &Value) {
    let keys = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(got), keys(want), "line {line}: payload keys");
    for key in ["username", "text", "channel"] {
        assert_eq!(got[key], want[key], "line {line}: {key}");
    }
    let (got, want) = (&got["attachments"], &want["attachments"]);
    assert_eq!(got.as_array().unwrap().len(), 1, "line {line}: attachments");
    let (got, want) = (&got[0], &want[0]);
    assert_eq!(keys(got), keys(want), "line {line}: attachment keys");
    for key in ["color", "footer", "ts"] {
        assert_eq!(got[key], want[key], "line {line}: attachment {key}");
    }
    let (got, want) = (
        got["fields"].as_array().unwrap(),
        want["fields"].as_array().unwrap(),
    );
    let titles =
        |fields: &[Value]| -> Vec<Value> { fields.iter().map(|f| f["title"].clone()).collect() };
    assert_eq!(titles(got), titles(want), "line {line}: field titles");
    for (got, want) in got.iter().zip(want) {
        let title = &want["title"];
        assert_eq!(keys(got), keys(want), "line {line}: {title}: keys");
        assert_eq!(got["value"], want["value"], "line {line}: {title}: value");
        assert_eq!(got["short"], want["short"], "line {line}: {title}: short");
    }
}

/// Each row of `table` as a JSON object (SQLite's own typing: a REAL
/// column holding text comes back as text), by event id.
async fn rows(db: &Path, table: &str, columns: &[&str]) -> Vec<(String, Value)> {
    let pool = SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let pairs: Vec<String> = columns.iter().map(|c| format!("'{c}', {c}")).collect();
    let sql = format!(
        "SELECT event_id, json_object({}) FROM {table}",
        pairs.join(", ")
    );
    let rows: Vec<(String, String)> = sqlx::query_as(&sql).fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows.into_iter()
        .map(|(id, row)| (id, serde_json::from_str(&row).unwrap()))
        .collect()
}

/// A timestamp column's instant: hookhost writes UTC, baselinr on SQLite
/// writes Python's `isoformat(" ")` (offset kept, no fraction when zero).
fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z")
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").map(|t| t.and_utc())
        })
        .unwrap_or_else(|e| panic!("timestamp `{text}`: {e}"))
}

/// The row of each event compared with baselinr's, column by column; with
/// `severity`, also hookhost's own column.
fn compare_rows(stream: &[(Event, Value)], rows: &[(String, Value)], severity: bool) {
    assert_eq!(rows.len(), stream.len(), "one row per event");
    for (event, expected) in stream {
        let line = &expected["line"];
        let (_, row) = rows
            .iter()
            .find(|(id, _)| *id == event.id)
            .unwrap_or_else(|| panic!("line {line}: no row with the event's id"));
        let want = &expected["row"];
        for column in SHARED {
            let (got, want) = (&row[column], &want[column]);
            match column {
                "timestamp" => assert_eq!(
                    instant(got.as_str().unwrap()),
                    instant(want.as_str().unwrap()),
                    "line {line}: timestamp"
                ),
                // Python's json.dumps writes bare NaN, Infinity and
                // -Infinity; the host reads them as strings and writes
                // valid JSON.
                "metadata" => {
                    let want = quote_bare_non_finite(want.as_str().unwrap());
                    let got: Value = serde_json::from_str(got.as_str().unwrap()).unwrap();
                    let want: Value = serde_json::from_str(&want).unwrap();
                    assert_eq!(got, want, "line {line}: metadata");
                }
                "baseline_value" | "current_value" | "change_percent" if got.is_number() => {
                    assert_eq!(got.as_f64(), want.as_f64(), "line {line}: {column}")
                }
                _ => assert_eq!(got, want, "line {line}: {column}"),
            }
        }
        if severity {
            assert_eq!(
                row["severity"], expected["hookhost"]["severity"],
                "line {line}: severity"
            );
        }
    }
}

/// `json` (as Python's `json.dumps` writes it) with each bare `NaN`,
/// `Infinity` and `-Infinity` token quoted, as the host stores them; the
/// same words inside strings are left as they are.
fn quote_bare_non_finite(json: &str) -> String {
    const TOKENS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = json;
    while let Some(c) = rest.chars().next() {
        if !in_string {
            if let Some(token) = TOKENS.iter().find(|t| rest.starts_with(*t)) {
                out.push('"');
                out.push_str(token);
                out.push('"');
                rest = &rest[token.len()..];
                continue;
            }
        }
        if in_string && escaped {
            escaped = false;
        } else if in_string && c == '\\' {
            escaped = true;
        } else if c == '"' {
            in_string = !in_string;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[test]
fn only_bare_non_finite_tokens_are_quoted() {
    assert_eq!(
        quote_bare_non_finite(r#"{"a": NaN, "b": [Infinity, -Infinity], "c": "NaN \" Infinity"}"#),
        r#"{"a": "NaN", "b": ["Infinity", "-Infinity"], "c": "NaN \" Infinity"}"#
    );
}

#[tokio::test]
async fn the_profiler_stream_gives_baselinrs_slack_payloads_and_rows() {
    let (addr, mut received) = receiver::start().await;
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("events.db");
    let host = host(addr, &db, "hookhost_events").await;
    let stream = send_stream(&host, &mut received).await;
    host.shutdown().await;
    let mut columns = SHARED.to_vec();
    columns.push("severity");
    let rows = rows(&db, "hookhost_events", &columns).await;
    compare_rows(&stream, &rows, true);
}

#[tokio::test]
async fn a_table_made_by_baselinrs_hook_gets_the_same_rows() {
    let (addr, mut received) = receiver::start().await;
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("events.db");
    let pool = SqlitePool::connect(&format!("sqlite://{}?mode=rwc", db.display()))
        .await
        .unwrap();
    sqlx::query(BASELINR_TABLE).execute(&pool).await.unwrap();
    pool.close().await;
    let host = host(addr, &db, "baselinr_events").await;
    let stream = send_stream(&host, &mut received).await;
    host.shutdown().await;
    let rows = rows(&db, "baselinr_events", &SHARED).await;
    compare_rows(&stream, &rows, false);
    // The table keeps the columns it had.
    let pool = SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let columns: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM pragma_table_info('baselinr_events')")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    assert!(
        !columns.iter().any(|(name,)| name == "severity"),
        "{columns:?}"
    );
}

/// The summary line of `plugin`: handled and failed.
fn handled_and_failed(stdout: &str, plugin: &str) -> (String, String) {
    let line = stdout
        .lines()
        .find(|line| line.split_whitespace().next() == Some(plugin))
        .unwrap_or_else(|| panic!("no summary line for {plugin}:\n{stdout}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    (cells[1].to_owned(), cells[2].to_owned())
}

#[test]
fn the_quick_start_logs_and_persists_the_sample_events() {
    let data = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let out = common::run_with_input(
        common::hookhost_command()
            .arg("run")
            .env("XDG_DATA_HOME", data.path())
            .env("RUST_LOG", "info")
            .current_dir(cwd.path()),
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/events.jsonl"
        ))
        .unwrap(),
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    let events = lines(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/events.jsonl"
    ))
    .len();
    let all = (events.to_string(), "0".to_owned());
    assert_eq!(handled_and_failed(&stdout, "logging"), all, "{stdout}");
    assert_eq!(handled_and_failed(&stdout, "sql"), all, "{stdout}");
    // Logged: one line per event from the logging hook.
    let logged = stderr
        .lines()
        .filter(|l| l.contains("plugin=\"logging\"") && !l.contains(" loaded "))
        .count();
    assert_eq!(logged, events, "{stderr}");
    // Persisted: the file's path and row count are printed, and true.
    let file = data.path().join("hookhost").join("events.db");
    let said = format!(
        "events persisted by the sql hook to {} (table hookhost_events): {events} rows",
        file.display()
    );
    assert!(stdout.contains(&said), "{stdout}");
    let logged = format!(
        "the sql hook persists events to an embedded SQLite file path={}",
        file.display()
    );
    assert!(stderr.contains(&logged), "{stderr}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let rows = runtime.block_on(rows(&file, "hookhost_events", &["event_type"]));
    assert_eq!(rows.len(), events);
    // Nothing lands in the working directory.
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);
}

/// `cargo test` builds the examples next to the test binaries.
fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let dir = deps.parent().unwrap().parent().unwrap().join("examples");
    dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn the_embedding_example_runs_without_a_failed_outcome() {
    let embed = example("embed");
    assert!(
        embed.exists(),
        "{} is not built: `cargo test` builds it, `cargo test --test compat` alone does not \
         (run `cargo build --examples` first)",
        embed.display()
    );
    let out = std::process::Command::new(&embed).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("plugins: logging, sql"), "{stdout}");
    assert!(stdout.contains("logging: Ok(())"), "{stdout}");
    assert!(stdout.contains("sql: Ok(())"), "{stdout}");
    assert!(stdout.contains("logging: 2 handled, 0 failed"), "{stdout}");
    assert!(stdout.contains("sql: 2 handled, 0 failed"), "{stdout}");
    assert!(
        stdout.contains("sql: 2 rows in hookhost_events"),
        "{stdout}"
    );
}
