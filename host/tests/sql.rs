//! The SQL capability and the built-in `sql` hook against a SQLite file
//! and the real PostgreSQL and MariaDB servers on 127.0.0.1: rows compared
//! field by field with the events sent, re-delivery without duplicates,
//! the flush on shutdown, grants, typed values, transactions, connection
//! failures, and a plugin's connections closing when its grant goes. The
//! attacks on the capability are in `adversarial_sql.rs`.
//!
//! The servers are found through `HOOKHOST_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and `HOOKHOST_TEST_MYSQL_URL`
//! (default `mysql://root@127.0.0.1:3306/test`). A server that cannot be
//! reached fails its tests with a message saying how to start it.

mod common;

use common::servers::{mysql_url, postgres_url, unique as unique_table};
use hookhost::{Event, Host};
use serde_json::{json, Value};
use sqlx::Row as _;

/// A host running the built-in `sql` hook against `[databases.events]`
/// as `database` describes it.
async fn sql_host(database: &str, table: &str, extra: &str) -> Host {
    let wait = if extra.contains("batch_wait_ms") {
        ""
    } else {
        "batch_wait_ms = 20"
    };
    let config = format!(
        "[databases.events]\n{database}\n\
         [plugins.sql]\ndatabases = [\"events\"]\n{wait}\n{extra}\n\
         [plugins.sql.settings]\ntable = \"{table}\"\n"
    );
    common::builtin_host("sql", &config).await
}

/// One event of each family the table has typed columns for, and a custom
/// one, with fixed ids (prefixed with `run` so runs never collide).
fn events(run: &str) -> Vec<Event> {
    let events = [
        json!({"event_id": format!("{run}-1"), "event_type": "ProfilingStarted",
               "timestamp": "2025-01-15T10:30:00.123456Z",
               "metadata": {"table": "orders", "run_id": "run-42"}}),
        json!({"event_id": format!("{run}-2"), "event_type": "DataDriftDetected",
               "timestamp": "2025-01-15T11:30:00+01:00",
               "metadata": {"table": "orders", "column": "total_amount", "metric": "mean",
                            "baseline_value": 100.0, "current_value": 150.5,
                            "change_percent": 50.5, "drift_severity": "high"}}),
        json!({"event_id": format!("{run}-3"), "event_type": "SchemaChangeDetected",
               "timestamp": "2025-01-15T10:31:00Z",
               "metadata": {"table": "customers", "change_type": "column_added",
                            "column": "email", "new_type": "VARCHAR", "change_severity": "low"}}),
        json!({"event_id": format!("{run}-4"), "event_type": "ProfilingFailed",
               "timestamp": "2025-01-15T10:32:00Z",
               "metadata": {"table": "payments", "run_id": "run-43", "error": "permission denied: «payments»"}}),
        json!({"event_id": format!("{run}-5"), "event_type": "NightlyExportFinished",
               "timestamp": "2025-01-15T10:33:00Z",
               "metadata": {"table": "exports", "rows": 12, "nested": {"ok": true}}}),
    ];
    events
        .iter()
        .map(|json| Event::from_json(&json.to_string()).unwrap())
        .collect()
}

/// The row the hook should write for each of `events(run)`, as
/// (event_id, event_type, run_id, table_name, column_name, metric_name,
/// baseline_value, current_value, change_percent, drift_severity, timestamp).
fn expected(run: &str) -> Vec<Value> {
    vec![
        json!([
            format!("{run}-1"),
            "ProfilingStarted",
            "run-42",
            "orders",
            null,
            null,
            null,
            null,
            null,
            null,
            "2025-01-15 10:30:00.123456"
        ]),
        json!([
            format!("{run}-2"),
            "DataDriftDetected",
            null,
            "orders",
            "total_amount",
            "mean",
            100.0,
            150.5,
            50.5,
            "high",
            "2025-01-15 10:30:00"
        ]),
        json!([
            format!("{run}-3"),
            "SchemaChangeDetected",
            null,
            "customers",
            "email",
            null,
            null,
            null,
            null,
            // Like the profilers' own hook: drift_severity is for drift
            // events; the schema change's severity is in `severity`.
            null,
            "2025-01-15 10:31:00"
        ]),
        json!([
            format!("{run}-4"),
            "ProfilingFailed",
            "run-43",
            "payments",
            null,
            null,
            null,
            null,
            null,
            null,
            "2025-01-15 10:32:00"
        ]),
        json!([
            format!("{run}-5"),
            "NightlyExportFinished",
            null,
            "exports",
            null,
            null,
            null,
            null,
            null,
            null,
            "2025-01-15 10:33:00"
        ]),
    ]
}

async fn send_all(host: &Host, events: &[Event]) {
    let mut pending = Vec::new();
    for event in events {
        pending.push(host.emit_with_report(event.clone()).unwrap());
    }
    for report in pending {
        let report = report.wait().await;
        for (plugin, outcome) in &report.outcomes {
            assert!(outcome.result.is_ok(), "{plugin}: {:?}", outcome.result);
        }
    }
}

/// The table's rows, ordered by id, in the shape of [`expected`], with
/// their metadata parsed; timestamps cut to what every database keeps.
macro_rules! read_rows {
    ($pool:expr, $table:expr, $timestamp_as_text:expr) => {{
        let sql = format!(
            "SELECT event_id, event_type, run_id, table_name, column_name, metric_name, \
             baseline_value, current_value, change_percent, drift_severity, {} AS ts, metadata \
             FROM {} ORDER BY event_id",
            $timestamp_as_text, $table
        );
        let rows = sqlx::query(&sql).fetch_all($pool).await.unwrap();
        rows.iter()
            .map(|row| {
                let text =
                    |i: usize| -> Value { row.try_get::<Option<String>, _>(i).unwrap().into() };
                let float =
                    |i: usize| -> Value { row.try_get::<Option<f64>, _>(i).unwrap().into() };
                let ts: String = row.try_get(10).unwrap();
                let ts = ts.trim_end_matches(".000000").replace('T', " ");
                let metadata: String = row.try_get(11).unwrap();
                (
                    json!([
                        text(0),
                        text(1),
                        text(2),
                        text(3),
                        text(4),
                        text(5),
                        float(6),
                        float(7),
                        float(8),
                        text(9),
                        ts
                    ]),
                    serde_json::from_str::<Value>(&metadata).unwrap(),
                )
            })
            .collect::<Vec<(Value, Value)>>()
    }};
}

fn check_rows(rows: &[(Value, Value)], run: &str) {
    let expected = expected(run);
    assert_eq!(rows.len(), expected.len(), "{rows:#?}");
    for ((row, metadata), (expected, event)) in rows.iter().zip(expected.iter().zip(events(run))) {
        assert_eq!(row, expected);
        assert_eq!(
            metadata,
            &serde_json::from_str::<Value>(&event.metadata).unwrap()
        );
    }
}

#[tokio::test]
async fn sqlite_rows_match_the_events_and_redelivery_adds_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let section = format!("backend = \"sqlite\"\npath = \"{}\"", path.display());
    let host = sql_host(&section, "hookhost_events", "").await;
    let events = events("sqlite");
    send_all(&host, &events).await;
    send_all(&host, &events).await;
    host.shutdown().await;

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let rows = read_rows!(&pool, "hookhost_events", "timestamp");
    check_rows(&rows, "sqlite");
    let created: String = sqlx::query_scalar("SELECT min(created_at) FROM hookhost_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(created.starts_with("20"), "created_at {created}");
    pool.close().await;
}

/// Connects to a database server with `$pool` at `$url`, or fails saying
/// how to start `$name` with `$start`.
macro_rules! connect {
    ($pool:ty, $url:expr, $name:literal, $start:literal, $variable:literal) => {{
        let url = $url;
        let pool = <$pool>::connect(&url).await.unwrap_or_else(|err| {
            panic!(
                "{} is not reachable at {url}: {err}\nStart it with `{}` (or run .ci/services), \
                 or point {} at one.",
                $name, $start, $variable
            )
        });
        (url, pool)
    }};
}

/// Sends the events twice through a host writing to the server at `url`
/// and checks the rows, read back through `pool` with timestamps cast to
/// text by `$timestamp_as_text`.
macro_rules! rows_match_and_redelivery_adds_none {
    ($url:expr, $pool:expr, $run:literal, $timestamp_as_text:literal) => {{
        let (url, pool) = ($url, $pool);
        let table = unique_table("hookhost_test");
        let host = sql_host(&format!("url = \"{url}\""), &table, "").await;
        let events = events($run);
        send_all(&host, &events).await;
        send_all(&host, &events).await;
        host.shutdown().await;
        let rows = read_rows!(&pool, &table, $timestamp_as_text);
        sqlx::query(&format!("DROP TABLE {table}"))
            .execute(&pool)
            .await
            .unwrap();
        check_rows(&rows, $run);
    }};
}

#[tokio::test]
async fn postgres_rows_match_the_events_and_redelivery_adds_none() {
    let (url, pool) = connect!(
        sqlx::PgPool,
        postgres_url(),
        "PostgreSQL",
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
        "HOOKHOST_TEST_POSTGRES_URL"
    );
    rows_match_and_redelivery_adds_none!(url, pool, "pg", "CAST(timestamp AS TEXT)");
}

#[tokio::test]
async fn mariadb_rows_match_the_events_and_redelivery_adds_none() {
    let (url, pool) = connect!(
        sqlx::MySqlPool,
        mysql_url(),
        "MariaDB/MySQL",
        "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
        "HOOKHOST_TEST_MYSQL_URL"
    );
    rows_match_and_redelivery_adds_none!(url, pool, "my", "CAST(timestamp AS CHAR)");
}

#[tokio::test]
async fn a_lost_connection_is_replaced_and_no_event_is_lost() {
    let (url, admin) = connect!(
        sqlx::PgPool,
        postgres_url(),
        "PostgreSQL",
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
        "HOOKHOST_TEST_POSTGRES_URL"
    );
    let table = unique_table("hookhost_reconnect");
    let separator = if url.contains('?') { '&' } else { '?' };
    let tagged = format!("{url}{separator}application_name={table}");
    let host = sql_host(&format!("url = \"{tagged}\""), &table, "").await;
    send_all(&host, &events("lost")[..1]).await;
    // Kill the host's connections behind its back.
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&table)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(
        !killed.is_empty() && killed.iter().all(|k| *k),
        "{killed:?}"
    );
    send_all(&host, &events("lost")[1..]).await;
    host.shutdown().await;
    let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&admin)
        .await
        .unwrap();
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&admin)
        .await
        .unwrap();
    assert_eq!(count, 5);
}

#[tokio::test]
async fn shutdown_flushes_a_batch_that_is_still_filling() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let section = format!("url = \"sqlite://{}\"", path.display());
    // A batch would wait a minute to fill; shutdown must not.
    let host = sql_host(
        &section,
        "events",
        "batch_size = 10000\nbatch_wait_ms = 60000",
    )
    .await;
    for seq in 0..1000 {
        host.emit(common::event(seq)).unwrap();
    }
    let started = std::time::Instant::now();
    let summaries = host.shutdown().await;
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(
        (
            summaries[0].stats.handled,
            summaries[0].stats.failed_total()
        ),
        (1000, 0)
    );
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 1000);
    pool.close().await;
}

#[tokio::test]
async fn an_unreachable_database_is_a_retryable_failure_and_nothing_is_lost() {
    // Nothing listens on port 9 of 127.0.0.1.
    let host = sql_host(
        "url = \"postgres://postgres@127.0.0.1:9/test\"",
        "events",
        "timeout_ms = 5000",
    )
    .await;
    let report = host
        .emit_with_report(common::event(1))
        .unwrap()
        .wait()
        .await;
    let failure = report.outcomes[0].1.result.clone().unwrap_err();
    assert!(failure.retryable, "{failure}");
    assert!(failure.message.starts_with("database:"), "{failure}");
    host.shutdown().await;
}

#[tokio::test]
async fn the_capability_carries_typed_values_transactions_and_errors() {
    let dir = common::plugins_dir(&["sql-client"]);
    let db = tempfile::tempdir().unwrap();
    let config = format!(
        "[databases.main]\nurl = \"sqlite://{}\"\n[databases.other]\nbackend = \"sqlite\"\npath = \"{}\"\n\
         [plugins.sql-client]\ndatabases = [\"main\"]\n",
        db.path().join("main.db").display(),
        db.path().join("other.db").display()
    );
    let host = common::host(dir.path(), common::config(&config)).await;
    let run = |script: Value| {
        let host = &host;
        async move {
            let json = json!({"event_type": "sql", "metadata": script}).to_string();
            let report = host
                .emit_with_report(Event::from_json(&json).unwrap())
                .unwrap()
                .wait()
                .await;
            report.outcomes[0].1.result.clone().map_err(|f| f.message)
        }
    };
    // Every parameter type goes in and comes back typed.
    run(json!({"database": "main", "execute": ["CREATE TABLE t (i INTEGER, f REAL, s TEXT, b BLOB, z INTEGER, n TEXT)"]})).await.unwrap();
    run(json!({"database": "main", "execute": ["INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)"],
               "params": [{"integer": -7}, {"float": 2.5}, {"text": "ünïcode"}, {"bytes": [0, 255]}, {"boolean": true}, "null"]}))
        .await
        .unwrap();
    let rows = run(json!({"database": "main", "query": "SELECT i, f, s, b, z, n FROM t"}))
        .await
        .unwrap_err();
    assert_eq!(
        rows,
        r#"rows [i, f, s, b, z, n] [[integer(-7), float(2.5), text("ünïcode"), bytes([0, 255]), integer(1), null]]"#
    );
    // A transaction is all or nothing.
    let failed = run(json!({"database": "main", "execute": [
        "INSERT INTO t (i) VALUES (1)", "INSERT INTO missing VALUES (1)"]}))
    .await
    .unwrap_err();
    assert!(
        failed.starts_with("statement: no such table: missing"),
        "{failed}"
    );
    let rows = run(json!({"database": "main", "query": "SELECT count(*) FROM t"}))
        .await
        .unwrap_err();
    assert_eq!(rows, "rows [count(*)] [[integer(1)]]");
    // A database that exists but is not granted is denied, naming the fix.
    let denied = run(json!({"database": "other", "query": "SELECT 1"}))
        .await
        .unwrap_err();
    assert!(
        denied.starts_with("denied: database `other` is not granted to plugin sql-client")
            && denied.contains("add \"other\" to databases in [plugins.sql-client]"),
        "{denied}"
    );
    host.shutdown().await;
}

#[test]
fn a_grant_of_an_undefined_database_is_a_config_error() {
    let err = hookhost::Config::parse(
        "[plugins.sql]\ndatabases = [\"events\"]\n",
        std::path::Path::new("hookhost.toml"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "hookhost.toml: [plugins.sql]: databases lists \"events\", but there is no [databases.events] section"
    );
    let err = hookhost::Config::parse(
        "[databases.events]\nurl = \"oracle://x\"\n",
        std::path::Path::new("hookhost.toml"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "hookhost.toml:2: [databases.events]: url scheme `oracle` is not one of sqlite:, postgres:, mysql:"
    );
}

#[test]
fn max_connections_outside_its_range_is_a_config_error() {
    for bad in ["0", "101", "\"many\""] {
        let err = hookhost::Config::parse(
            &format!("[databases.events]\nurl = \"sqlite://e.db\"\nmax_connections = {bad}\n"),
            std::path::Path::new("hookhost.toml"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "hookhost.toml:3: [databases.events]: max_connections `{}` is not a whole number \
                 from 1 to 100 (connections per plugin)",
                bad.trim_matches('"')
            )
        );
    }
    hookhost::Config::parse(
        "[databases.events]\nurl = \"sqlite://e.db\"\nmax_connections = 100\n",
        std::path::Path::new("hookhost.toml"),
    )
    .unwrap();
}

#[tokio::test]
async fn a_plugins_connections_close_when_its_grant_is_removed() {
    let (url, admin) = connect!(
        sqlx::PgPool,
        postgres_url(),
        "PostgreSQL",
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
        "HOOKHOST_TEST_POSTGRES_URL"
    );
    let tag = unique_table("grant");
    let separator = if url.contains('?') { '&' } else { '?' };
    let section = format!("[databases.main]\nurl = \"{url}{separator}application_name={tag}\"\n");
    let plugins = common::plugins_dir(&["sql-client"]);
    let folder = tempfile::tempdir().unwrap();
    let config = folder.path().join("hookhost.toml");
    std::fs::write(
        &config,
        format!("{section}[plugins.sql-client]\ndatabases = [\"main\"]\n"),
    )
    .unwrap();
    let host = Host::builder()
        .plugins_dir(plugins.path())
        .config_file(&config)
        .unwrap()
        .watch(true)
        .build()
        .await
        .unwrap();
    let query = || {
        let json = json!({"event_type": "sql",
                          "metadata": {"database": "main", "query": "SELECT 1 AS one"}});
        Event::from_json(&json.to_string()).unwrap()
    };
    let answer = |report: hookhost::Report| report.outcomes[0].1.result.clone().unwrap_err();
    let report = host.emit_with_report(query()).unwrap().wait().await;
    assert_eq!(answer(report).message, "rows [one] [[integer(1)]]");
    let open = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&tag)
        .fetch_one(&admin)
        .await
        .unwrap()
    };
    assert_eq!(open().await, 1, "one connection serves the plugin's calls");

    std::fs::write(&config, format!("{section}[plugins.sql-client]\n")).unwrap();
    common::eventually("the new config", || {
        host.reload_stats().configs_applied == 1
    })
    .await;
    // The worker takes the new grants before its next event.
    let report = host.emit_with_report(query()).unwrap().wait().await;
    assert!(answer(report)
        .message
        .starts_with("denied: database `main` is not granted to plugin sql-client"),);
    let started = std::time::Instant::now();
    while open().await > 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "the plugin's connection is still open"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    host.shutdown().await;
}
