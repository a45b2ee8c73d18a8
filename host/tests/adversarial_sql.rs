//! Attacks on the SQL capability, one per test, each by a copy of the
//! `sql-client` fixture (`sql-a`) while another copy (`sql-b`) shares the
//! database and must keep working: session state, open transactions and
//! session locks left behind, slow statements hammered, statements that
//! run past the deadline (once, and fifty times in a row), SQLite
//! statements that reach past the granted file or past its size limits,
//! and results larger than the plugin's memory (or than half of it).
//!
//! PostgreSQL and MariaDB are found as in `sql.rs`
//! (`HOOKHOST_TEST_POSTGRES_URL`, `HOOKHOST_TEST_MYSQL_URL`).

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::servers::{mysql_url, postgres_url, unique};
use common::{resident_bytes, EXCLUSIVE};
use hookhost::{Event, Failure, FailureClass, Host};
use serde_json::{json, Value};

async fn postgres() -> sqlx::PgPool {
    sqlx::PgPool::connect(&postgres_url())
        .await
        .unwrap_or_else(|err| {
            panic!(
                "PostgreSQL is not reachable at {}: {err}\nStart it with `pg_ctlcluster \
             --skip-systemctl-redirect $(ls /etc/postgresql) main start` (or run .ci/services)",
                postgres_url()
            )
        })
}

async fn mariadb() -> sqlx::MySqlPool {
    sqlx::MySqlPool::connect(&mysql_url())
        .await
        .unwrap_or_else(|err| {
            panic!(
                "MariaDB/MySQL is not reachable at {}: {err}\nStart it with `start-stop-daemon \
             --start --oknodo --background --exec /usr/sbin/mariadbd` (or run .ci/services)",
                mysql_url()
            )
        })
}

/// `url` with `application_name` set, so the test can find the host's
/// PostgreSQL connections.
fn tagged(url: &str, tag: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={tag}")
}

/// A host with two copies of `sql-client`, `sql-a` and `sql-b`, both
/// granted `[databases.main]` as `section` describes it; `a_limits` goes
/// into `sql-a`'s section. `sql-b` has 5 s per event.
async fn two_clients(section: &str, a_limits: &str) -> (Host, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for name in ["sql-a", "sql-b"] {
        std::fs::copy(
            common::fixture("sql-client"),
            dir.path().join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    // Events carrying statements past 1 MiB are over the default event
    // limit; the database's own limits are what these tests reach.
    let config = format!(
        "[engine]\nmax_event_kib = 2048\n\
         [databases.main]\n{section}\n\
         [plugins.sql-a]\ndatabases = [\"main\"]\n{a_limits}\n\
         [plugins.sql-a.settings]\nname = \"a\"\n\
         [plugins.sql-b]\ndatabases = [\"main\"]\ntimeout_ms = 5000\n\
         [plugins.sql-b.settings]\nname = \"b\"\n"
    );
    let host = common::host(dir.path(), common::config(&config)).await;
    (host, dir)
}

/// The event that has copy `who` run `script` on `main`.
fn event_for(who: &str, mut script: Value) -> Event {
    script["for"] = json!(who);
    script["database"] = json!("main");
    Event::from_json(&json!({"event_type": "sql", "metadata": script}).to_string()).unwrap()
}

/// Has copy `who` run `script`; its outcome.
async fn run(host: &Host, who: &str, script: Value) -> Result<(), Failure> {
    let report = host
        .emit_with_report(event_for(who, script))
        .unwrap()
        .wait()
        .await;
    let plugin = format!("sql-{who}");
    let (_, outcome) = report
        .outcomes
        .iter()
        .find(|(name, _)| *name == plugin)
        .unwrap();
    outcome.result.clone()
}

/// What copy `who` reported for `script` (rows, a list of call results or
/// an SQL error), asserting it ran to its end without a trap.
async fn answer(host: &Host, who: &str, script: Value) -> String {
    match run(host, who, script).await {
        Ok(()) => "ok".to_owned(),
        Err(failure) => {
            assert_eq!(failure.class, FailureClass::Returned, "{failure:?}");
            failure.message
        }
    }
}

/// Whether `failure` is the plugin's timeout: the worker's own (class
/// `timeout`), or the SQL `timeout` error the plugin returned (retryable).
fn is_timeout(failure: &Failure) -> bool {
    failure.retryable
        && (failure.class == FailureClass::Timeout
            || (failure.class == FailureClass::Returned && failure.message.ends_with("timeout")))
}

/// The files in `dir`, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Waits until `count` (a query on the server) is zero, for at most
/// `within`; how long it took.
macro_rules! gone_within {
    ($within:expr, $count:expr) => {{
        let started = Instant::now();
        loop {
            let count: i64 = $count;
            if count == 0 {
                break started.elapsed();
            }
            assert!(
                started.elapsed() < $within,
                "still {count} after {:?}",
                $within
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }};
}

// ---------------------------------------------------------------------
// Session state and open transactions stay with their plugin.
// ---------------------------------------------------------------------

#[tokio::test]
async fn sqlite_temp_tables_and_open_transactions_do_not_reach_another_plugin() {
    let _shared = EXCLUSIVE.read().await;
    let db = tempfile::tempdir().unwrap();
    let section = format!("url = \"sqlite://{}\"", db.path().join("main.db").display());
    let (host, _plugins) = two_clients(&section, "").await;
    assert_eq!(
        answer(
            &host,
            "b",
            json!({"execute": ["CREATE TABLE t (who TEXT)"]})
        )
        .await,
        "ok"
    );
    // A leaves a temporary table and a write transaction (which holds the
    // file's write lock) behind, then writes in a call of its own.
    assert_eq!(
        answer(
            &host,
            "a",
            json!({"calls": [{"execute": "CREATE TEMP TABLE scratch (x)"},
                             {"execute": "BEGIN IMMEDIATE"},
                             {"execute": "INSERT INTO t VALUES ('a')"}]})
        )
        .await,
        "ok(0) | ok(0) | ok(1)"
    );
    // B writes at once: the lock went with the rollback (SQLite would
    // otherwise wait 5 s for it and fail with "database is locked").
    let started = Instant::now();
    assert_eq!(
        answer(
            &host,
            "b",
            json!({"execute": ["INSERT INTO t VALUES ('b')"]})
        )
        .await,
        "ok"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // A's insert was not left inside its transaction; B sees it.
    assert_eq!(
        answer(
            &host,
            "b",
            json!({"query": "SELECT who FROM t ORDER BY who"})
        )
        .await,
        r#"rows [who] [[text("a")], [text("b")]]"#
    );
    // A's temporary table is not on B's connection.
    assert_eq!(
        answer(
            &host,
            "b",
            json!({"query": "SELECT count(*) FROM temp.scratch"})
        )
        .await,
        "statement: no such table: temp.scratch"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn postgres_session_settings_and_open_transactions_do_not_reach_another_plugin() {
    let _shared = EXCLUSIVE.read().await;
    let admin = postgres().await;
    let table = unique("hookhost_iso");
    let tag = unique("iso");
    sqlx::query(&format!("CREATE TABLE {table} (v INT)"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query(&format!("INSERT INTO {table} VALUES (0)"))
        .execute(&admin)
        .await
        .unwrap();
    let section = format!("url = \"{}\"", tagged(&postgres_url(), &tag));
    let (host, _plugins) = two_clients(&section, "").await;
    // A changes its session, makes a temporary table, opens a transaction
    // and updates the row inside it (locking it).
    assert_eq!(
        answer(
            &host,
            "a",
            json!({"calls": [{"execute": "SET search_path TO pg_catalog"},
                             {"execute": "CREATE TEMP TABLE scratch (x INT)"},
                             {"execute": "BEGIN"},
                             {"execute": format!("UPDATE public.{table} SET v = v + 1")}]})
        )
        .await,
        "ok(0) | ok(0) | ok(0) | ok(1)"
    );
    // None of A's connections is left inside a transaction.
    let idle_in_transaction: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
         AND state LIKE 'idle in transaction%'",
    )
    .bind(&tag)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(idle_in_transaction, 0);
    // B's session has the default search path and no temporary table.
    assert_eq!(
        answer(
            &host,
            "b",
            json!({"calls": [{"query": "SELECT current_setting('search_path') AS path"},
                             {"query": "SELECT to_regclass('pg_temp.scratch')::text AS t"}]})
        )
        .await,
        r#"rows [path] [[text("\"$user\", public")]] | rows [t] [[null]]"#
    );
    // B updates the row A updated: no lock is left to wait for.
    let started = Instant::now();
    assert_eq!(
        answer(
            &host,
            "b",
            json!({"execute": [format!("UPDATE {table} SET v = v + 10")]})
        )
        .await,
        "ok"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    host.shutdown().await;
    let v: i32 = sqlx::query_scalar(&format!("SELECT v FROM {table}"))
        .fetch_one(&admin)
        .await
        .unwrap();
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&admin)
        .await
        .unwrap();
    assert_eq!(v, 11, "A's update was committed on its own, then B's");
}

#[tokio::test]
async fn mariadb_session_variables_and_open_transactions_do_not_reach_another_plugin() {
    let _shared = EXCLUSIVE.read().await;
    let admin = mariadb().await;
    let table = unique("hookhost_iso");
    sqlx::query(&format!("CREATE TABLE {table} (v INT) ENGINE=InnoDB"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query(&format!("INSERT INTO {table} VALUES (0)"))
        .execute(&admin)
        .await
        .unwrap();
    let section = format!("url = \"{}\"", mysql_url());
    let (host, _plugins) = two_clients(&section, "").await;
    assert_eq!(
        answer(
            &host,
            "a",
            json!({"calls": [{"execute": "SET @marker = 42"},
                             {"execute": "CREATE TEMPORARY TABLE scratch (x INT)"},
                             {"execute": "BEGIN"},
                             {"execute": format!("UPDATE {table} SET v = v + 1")}]})
        )
        .await,
        "ok(0) | ok(0) | ok(0) | ok(1)"
    );
    assert_eq!(
        answer(
            &host,
            "b",
            json!({"calls": [{"query": "SELECT @marker IS NULL AS unset"},
                             {"query": "SELECT count(*) AS n FROM scratch"}]})
        )
        .await,
        "rows [unset] [[integer(1)]] | statement: Table 'test.scratch' doesn't exist"
    );
    // InnoDB would make B wait 50 s for a row lock A still held.
    let started = Instant::now();
    assert_eq!(
        answer(
            &host,
            "b",
            json!({"execute": [format!("UPDATE {table} SET v = v + 10")]})
        )
        .await,
        "ok"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    host.shutdown().await;
    let v: i32 = sqlx::query_scalar(&format!("SELECT v FROM {table}"))
        .fetch_one(&admin)
        .await
        .unwrap();
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&admin)
        .await
        .unwrap();
    assert_eq!(v, 11, "A's update was committed on its own, then B's");
}

#[tokio::test]
async fn mariadb_table_locks_do_not_outlive_the_call() {
    let _shared = EXCLUSIVE.read().await;
    let admin = mariadb().await;
    let table = unique("hookhost_lock");
    sqlx::query(&format!("CREATE TABLE {table} (v INT) ENGINE=InnoDB"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query(&format!("INSERT INTO {table} VALUES (0)"))
        .execute(&admin)
        .await
        .unwrap();
    let section = format!("url = \"{}\"", mysql_url());
    let (host, _plugins) = two_clients(&section, "").await;
    // A session's table lock would keep every other session out of the
    // table for as long as the connection lives.
    assert_eq!(
        answer(
            &host,
            "a",
            json!({"calls": [{"execute": format!("LOCK TABLES {table} WRITE")}]})
        )
        .await,
        "ok(0)"
    );
    let started = Instant::now();
    assert_eq!(
        answer(
            &host,
            "b",
            json!({"execute": [format!("UPDATE {table} SET v = v + 10")]})
        )
        .await,
        "ok"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    host.shutdown().await;
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn postgres_advisory_locks_do_not_outlive_the_call() {
    let _shared = EXCLUSIVE.read().await;
    let key = i64::from(std::process::id()) << 32
        | i64::from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_nanos(),
        );
    let section = format!("url = \"{}\"", postgres_url());
    let (host, _plugins) = two_clients(&section, "").await;
    // A session-level advisory lock outlives transactions: it would keep
    // B waiting for as long as A's connection lives.
    assert_eq!(
        answer(
            &host,
            "a",
            json!({"calls": [{"query": format!("SELECT pg_advisory_lock({key})::text AS got")}]})
        )
        .await,
        r#"rows [got] [[text("")]]"#
    );
    assert_eq!(
        answer(
            &host,
            "b",
            json!({"calls": [{"query": format!("SELECT pg_try_advisory_lock({key}) AS got")}]})
        )
        .await,
        "rows [got] [[boolean(true)]]"
    );
    // And B's lock went with B's call: A takes it again.
    assert_eq!(
        answer(
            &host,
            "a",
            json!({"calls": [{"query": format!("SELECT pg_try_advisory_lock({key}) AS got")}]})
        )
        .await,
        "rows [got] [[boolean(true)]]"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn mariadb_named_locks_do_not_outlive_the_call() {
    let _shared = EXCLUSIVE.read().await;
    let name = unique("hookhost_lock");
    let section = format!("url = \"{}\"", mysql_url());
    let (host, _plugins) = two_clients(&section, "").await;
    // `GET_LOCK` holds a named lock for the session, outside transactions.
    let take = json!({"calls": [{"query": format!("SELECT GET_LOCK('{name}', 0) AS got")}]});
    assert_eq!(
        answer(&host, "a", take.clone()).await,
        "rows [got] [[integer(1)]]"
    );
    assert_eq!(
        answer(&host, "b", take.clone()).await,
        "rows [got] [[integer(1)]]"
    );
    assert_eq!(answer(&host, "a", take).await, "rows [got] [[integer(1)]]");
    host.shutdown().await;
}

// ---------------------------------------------------------------------
// A plugin hammering slow statements does not starve another.
// ---------------------------------------------------------------------

/// A (300 ms per event) is sent `slow` eight times; once four have timed
/// out (and, before each connection was per plugin, held four of the
/// shared pool's connections), B is sent ten inserts into `table` (which has one text column),
/// which must all land while A is still working through its queue; and
/// shutdown must not wait for A's statements.
async fn hammering_does_not_starve(
    section: &str,
    table: &str,
    slow: &str,
    count_rows: impl AsyncFn() -> i64,
) {
    let (host, _plugins) = two_clients(section, "timeout_ms = 300").await;
    let a_outcome = |report: hookhost::Report| {
        let (_, outcome) = report
            .outcomes
            .into_iter()
            .find(|(name, _)| name == "sql-a")
            .unwrap();
        let failure = outcome.result.unwrap_err();
        assert!(is_timeout(&failure), "{failure:?}");
    };
    let mut a_events: Vec<_> = (0..8)
        .map(|_| {
            let report = host
                .emit_with_report(event_for("a", json!({"query": slow})))
                .unwrap();
            tokio::spawn(report.wait())
        })
        .collect();
    for report in a_events.drain(..4) {
        a_outcome(report.await.unwrap());
    }
    let started = Instant::now();
    for n in 0..10 {
        host.emit(event_for(
            "b",
            json!({"execute": [format!("INSERT INTO {table} VALUES ('b{n}')")]}),
        ))
        .unwrap();
    }
    loop {
        if count_rows().await == 10 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "B's inserts did not land within 2 s while A was busy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        a_events.last().is_some_and(|last| !last.is_finished()),
        "A had finished its slow statements before B's inserts landed, which shows nothing"
    );
    for report in a_events {
        a_outcome(report.await.unwrap());
    }
    let started = Instant::now();
    let summaries = host.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
    let b = summaries.iter().find(|s| s.name == "sql-b").unwrap();
    assert_eq!(b.stats.failed_total(), 0);
}

/// A query that runs until interrupted.
const SQLITE_FOREVER: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                              SELECT count(*) FROM c";

#[tokio::test]
async fn sqlite_a_plugin_hammering_slow_statements_does_not_starve_another() {
    let _shared = EXCLUSIVE.read().await;
    let db = tempfile::tempdir().unwrap();
    let path = db.path().join("main.db");
    let setup = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    sqlx::query("PRAGMA journal_mode = WAL")
        .execute(&setup)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE t (who TEXT)")
        .execute(&setup)
        .await
        .unwrap();
    let section = format!("url = \"sqlite://{}\"", path.display());
    hammering_does_not_starve(&section, "t", SQLITE_FOREVER, async || {
        sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&setup)
            .await
            .unwrap()
    })
    .await;
    setup.close().await;
}

#[tokio::test]
async fn postgres_a_plugin_hammering_slow_statements_does_not_starve_another() {
    let _shared = EXCLUSIVE.read().await;
    let admin = postgres().await;
    let table = unique("hookhost_hammer");
    sqlx::query(&format!("CREATE TABLE {table} (who TEXT)"))
        .execute(&admin)
        .await
        .unwrap();
    let section = format!("url = \"{}\"", postgres_url());
    hammering_does_not_starve(&section, &table, "SELECT pg_sleep(60)::text", async || {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&admin)
            .await
            .unwrap()
    })
    .await;
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn mariadb_a_plugin_hammering_slow_statements_does_not_starve_another() {
    let _shared = EXCLUSIVE.read().await;
    let admin = mariadb().await;
    let table = unique("hookhost_hammer");
    sqlx::query(&format!("CREATE TABLE {table} (who TEXT)"))
        .execute(&admin)
        .await
        .unwrap();
    let section = format!("url = \"{}\"", mysql_url());
    hammering_does_not_starve(&section, &table, "SELECT SLEEP(60)", async || {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&admin)
            .await
            .unwrap()
    })
    .await;
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&admin)
        .await
        .unwrap();
}

// ---------------------------------------------------------------------
// A plugin's timeout stops the work it caused.
// ---------------------------------------------------------------------

/// Has A (300 ms per event) run `forever` and checks it fails with its
/// timeout within 1 s; the time it took.
async fn times_out(host: &Host, forever: Value) -> Duration {
    let started = Instant::now();
    let failure = run(host, "a", forever).await.unwrap_err();
    let took = started.elapsed();
    assert!(is_timeout(&failure), "{failure:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    took
}

/// A's next call works, B serves, and shutdown is quick.
async fn recovers_and_shuts_down(host: Host) {
    assert_eq!(
        answer(&host, "a", json!({"query": "SELECT 1 AS one"})).await,
        "rows [one] [[integer(1)]]"
    );
    assert_eq!(
        answer(&host, "b", json!({"query": "SELECT 2 AS two"})).await,
        "rows [two] [[integer(2)]]"
    );
    let started = Instant::now();
    host.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn sqlite_a_write_past_the_deadline_is_interrupted_and_its_lock_released() {
    let _shared = EXCLUSIVE.read().await;
    let db = tempfile::tempdir().unwrap();
    let section = format!("url = \"sqlite://{}\"", db.path().join("main.db").display());
    let (host, _plugins) = two_clients(&section, "timeout_ms = 300").await;
    assert_eq!(
        answer(&host, "b", json!({"execute": ["CREATE TABLE t (x)"]})).await,
        "ok"
    );
    // An insert that never ends holds the file's write lock while it runs.
    times_out(
        &host,
        json!({"execute": ["INSERT INTO t WITH RECURSIVE c(x) AS \
                            (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"]}),
    )
    .await;
    // B writes at once (SQLite would make it wait 5 s for the lock, then
    // fail), and none of A's rows were kept.
    let started = Instant::now();
    assert_eq!(
        answer(
            &host,
            "b",
            json!({"calls": [{"execute": "INSERT INTO t VALUES (0)"},
                             {"query": "SELECT count(*) AS n FROM t"}]})
        )
        .await,
        "ok(1) | rows [n] [[integer(1)]]"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    recovers_and_shuts_down(host).await;
}

#[tokio::test]
async fn postgres_a_statement_past_the_deadline_is_cancelled_on_the_server() {
    let _shared = EXCLUSIVE.read().await;
    let admin = postgres().await;
    let marker = unique("sleeper");
    let section = format!("url = \"{}\"", postgres_url());
    let (host, _plugins) = two_clients(&section, "timeout_ms = 300").await;
    times_out(
        &host,
        json!({"query": format!("SELECT pg_sleep(60)::text AS {marker}")}),
    )
    .await;
    // The marker is bound, so this query's own text does not match.
    gone_within!(
        Duration::from_secs(1),
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
             AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()"
        )
        .bind(&marker)
        .fetch_one(&admin)
        .await
        .unwrap()
    );
    recovers_and_shuts_down(host).await;
}

#[tokio::test]
async fn mariadb_a_statement_past_the_deadline_is_killed_on_the_server() {
    let _shared = EXCLUSIVE.read().await;
    let admin = mariadb().await;
    let marker = unique("sleeper");
    let section = format!("url = \"{}\"", mysql_url());
    let (host, _plugins) = two_clients(&section, "timeout_ms = 300").await;
    times_out(
        &host,
        json!({"query": format!("SELECT SLEEP(60) AS {marker}")}),
    )
    .await;
    gone_within!(
        Duration::from_secs(1),
        sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.processlist \
             WHERE info LIKE CONCAT('%', ?, '%') AND id <> CONNECTION_ID()"
        )
        .bind(&marker)
        .fetch_one(&admin)
        .await
        .unwrap()
    );
    recovers_and_shuts_down(host).await;
}

/// How many times the cut-off tests below stop a statement: the moment the
/// deadline falls relative to the statement's start varies from one to the
/// next, so some fall before the statement has started.
const CUT_OFFS: usize = 50;

#[tokio::test]
async fn sqlite_statements_cut_off_at_any_moment_stop_and_release_the_write_lock() {
    let _shared = EXCLUSIVE.read().await;
    let db = tempfile::tempdir().unwrap();
    let section = format!("url = \"sqlite://{}\"", db.path().join("main.db").display());
    let (host, _plugins) = two_clients(&section, "timeout_ms = 20").await;
    assert_eq!(
        answer(&host, "b", json!({"execute": ["CREATE TABLE t (x)"]})).await,
        "ok"
    );
    for round in 0..CUT_OFFS {
        // A write that yields no row and never ends: it holds the file's
        // write lock while it runs, and only an interrupt stops it.
        let failure = run(
            &host,
            "a",
            json!({"execute": ["INSERT INTO t SELECT count(*) FROM (WITH RECURSIVE \
                                c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                                SELECT x FROM c)"]}),
        )
        .await
        .unwrap_err();
        assert!(is_timeout(&failure), "round {round}: {failure:?}");
        // B writes at once: no statement of A's still runs holding the
        // lock (SQLite would make B wait 5 s for it, then fail).
        let started = Instant::now();
        assert_eq!(
            answer(
                &host,
                "b",
                json!({"execute": [format!("INSERT INTO t VALUES ({round})")]})
            )
            .await,
            "ok",
            "round {round}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "round {round}: B's write took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        answer(&host, "b", json!({"query": "SELECT count(*) AS n FROM t"})).await,
        format!("rows [n] [[integer({CUT_OFFS})]]")
    );
    let started = Instant::now();
    host.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn postgres_statements_cut_off_at_any_moment_are_stopped_on_the_server() {
    let _shared = EXCLUSIVE.read().await;
    let admin = postgres().await;
    let marker = unique("cutoff");
    let section = format!("url = \"{}\"", postgres_url());
    let (host, _plugins) = two_clients(&section, "timeout_ms = 20").await;
    for round in 0..CUT_OFFS {
        let failure = run(
            &host,
            "a",
            json!({"query": format!("SELECT pg_sleep(60)::text AS {marker}")}),
        )
        .await
        .unwrap_err();
        assert!(is_timeout(&failure), "round {round}: {failure:?}");
    }
    gone_within!(
        Duration::from_secs(3),
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%' || $1 || '%' \
             AND pid <> pg_backend_pid()"
        )
        .bind(&marker)
        .fetch_one(&admin)
        .await
        .unwrap()
    );
    let started = Instant::now();
    host.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn mariadb_statements_cut_off_at_any_moment_are_stopped_on_the_server() {
    let _shared = EXCLUSIVE.read().await;
    let admin = mariadb().await;
    let marker = unique("cutoff");
    let section = format!("url = \"{}\"", mysql_url());
    let (host, _plugins) = two_clients(&section, "timeout_ms = 20").await;
    for round in 0..CUT_OFFS {
        let failure = run(
            &host,
            "a",
            json!({"query": format!("SELECT SLEEP(60) AS {marker}")}),
        )
        .await
        .unwrap_err();
        assert!(is_timeout(&failure), "round {round}: {failure:?}");
    }
    gone_within!(
        Duration::from_secs(3),
        sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.processlist \
             WHERE info LIKE CONCAT('%', ?, '%') AND id <> CONNECTION_ID()"
        )
        .bind(&marker)
        .fetch_one(&admin)
        .await
        .unwrap()
    );
    let started = Instant::now();
    host.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------
// A SQLite grant reaches only that file.
// ---------------------------------------------------------------------

/// Has A run `statement` (with `{dir}` replaced by the database's folder)
/// on a SQLite file, and returns its error; checks that B keeps serving,
/// that A can still create and fill a table, and that the folder holds
/// nothing but the database and its write-ahead log.
async fn sqlite_refuses(statement: &str) -> String {
    let _shared = EXCLUSIVE.read().await;
    let db = tempfile::tempdir().unwrap();
    let section = format!("url = \"sqlite://{}\"", db.path().join("main.db").display());
    let (host, _plugins) = two_clients(&section, "").await;
    assert_eq!(
        answer(&host, "b", json!({"execute": ["CREATE TABLE t (x)"]})).await,
        "ok"
    );
    let statement = statement.replace("{dir}", &db.path().display().to_string());
    let refused = answer(&host, "a", json!({"calls": [{"execute": statement}]})).await;
    assert_eq!(
        answer(
            &host,
            "a",
            json!({"calls": [{"execute": "CREATE TABLE mine (x)"},
                             {"execute": "INSERT INTO mine VALUES (1)"},
                             {"query": "SELECT name FROM pragma_table_info('mine')"}]})
        )
        .await,
        r#"ok(0) | ok(1) | rows [name] [[text("x")]]"#
    );
    assert_eq!(
        answer(&host, "b", json!({"query": "SELECT count(*) AS n FROM t"})).await,
        "rows [n] [[integer(0)]]"
    );
    host.shutdown().await;
    let listed = files(db.path());
    assert!(
        listed
            .iter()
            .all(|name| ["main.db", "main.db-wal", "main.db-shm"].contains(&name.as_str())),
        "{listed:?}"
    );
    refused
}

#[tokio::test]
async fn sqlite_attach_of_another_file_is_refused() {
    let refused = sqlite_refuses("ATTACH '{dir}/other.db' AS other").await;
    assert_eq!(refused, "statement: not authorized");
}

#[tokio::test]
async fn sqlite_vacuum_into_another_file_is_refused() {
    let refused = sqlite_refuses("VACUUM INTO '{dir}/copy.db'").await;
    assert_eq!(refused, "statement: authorization denied");
}

#[tokio::test]
async fn sqlite_vacuum_is_refused() {
    let refused = sqlite_refuses("VACUUM").await;
    assert_eq!(refused, "statement: authorization denied");
}

#[tokio::test]
async fn sqlite_load_extension_is_refused() {
    let refused = sqlite_refuses("SELECT load_extension('{dir}/evil.so')").await;
    assert_eq!(
        refused,
        "statement: not authorized to use function: load_extension"
    );
}

#[tokio::test]
async fn sqlite_changing_the_journal_mode_is_refused() {
    let refused = sqlite_refuses("PRAGMA journal_mode = DELETE").await;
    assert_eq!(refused, "statement: not authorized");
}

#[tokio::test]
async fn sqlite_writable_schema_is_refused() {
    let refused = sqlite_refuses("PRAGMA writable_schema = 1").await;
    assert_eq!(refused, "statement: not authorized");
}

#[tokio::test]
async fn sqlite_temp_store_directory_is_refused() {
    let refused = sqlite_refuses("PRAGMA temp_store_directory = '{dir}/x'").await;
    assert_eq!(refused, "statement: not authorized");
}

#[tokio::test]
async fn sqlite_fts3_tokenizer_is_refused() {
    let refused = sqlite_refuses("SELECT fts3_tokenizer('simple')").await;
    assert_eq!(
        refused,
        "statement: not authorized to use function: fts3_tokenizer"
    );
}

#[tokio::test]
async fn sqlite_a_value_past_4_mib_is_refused() {
    let refused = sqlite_refuses("SELECT length(zeroblob(4 * 1024 * 1024 + 1))").await;
    assert_eq!(refused, "statement: string or blob too big");
}

#[tokio::test]
async fn sqlite_a_statement_past_1_mib_is_refused() {
    let long = format!("SELECT 1 /* {} */", "x".repeat(1 << 20));
    let refused = sqlite_refuses(&long).await;
    assert_eq!(refused, "statement: statement too long");
}

// ---------------------------------------------------------------------
// Results cannot make the host hold unbounded memory.
// ---------------------------------------------------------------------

#[tokio::test]
async fn a_result_larger_than_the_plugins_memory_stops_it_as_out_of_memory() {
    let _alone = EXCLUSIVE.write().await;
    let db = tempfile::tempdir().unwrap();
    let section = format!("url = \"sqlite://{}\"", db.path().join("main.db").display());
    let (host, _plugins) = two_clients(&section, "memory_mib = 16").await;
    // Warm up both instances, so their own memory is not counted below.
    answer(&host, "a", json!({"query": "SELECT 1"})).await;
    answer(&host, "b", json!({"query": "SELECT 1"})).await;
    let before = resident_bytes();
    // A million rows of 1 KiB: about 1 GiB if the host collected them all.
    let failure = run(
        &host,
        "a",
        json!({"query": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
                         WHERE x < 1000000) SELECT x, zeroblob(1024) AS payload FROM c"}),
    )
    .await
    .unwrap_err();
    let grown = resident_bytes().saturating_sub(before);
    assert_eq!(failure.class, FailureClass::OutOfMemory, "{failure:?}");
    assert!(
        failure.message.contains("SQL result rows"),
        "{}",
        failure.message
    );
    assert!(grown < 64 << 20, "the host grew by {} MiB", grown >> 20);
    assert_eq!(
        answer(&host, "b", json!({"query": "SELECT 3 AS three"})).await,
        "rows [three] [[integer(3)]]"
    );
    assert_eq!(
        answer(&host, "a", json!({"query": "SELECT 4 AS four"})).await,
        "rows [four] [[integer(4)]]"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn sqlite_a_row_of_more_than_64_columns_is_refused_without_host_growth() {
    let _alone = EXCLUSIVE.write().await;
    let db = tempfile::tempdir().unwrap();
    let section = format!("url = \"sqlite://{}\"", db.path().join("main.db").display());
    let (host, _plugins) = two_clients(&section, "").await;
    answer(&host, "a", json!({"query": "SELECT 1"})).await;
    answer(&host, "b", json!({"query": "SELECT 1"})).await;
    let before = resident_bytes();
    // 2,000 columns of 16 MiB: about 32 GiB for one row, were it built.
    let wide = vec!["randomblob(16777216)"; 2000].join(", ");
    assert_eq!(
        answer(&host, "a", json!({"query": format!("SELECT {wide}")})).await,
        "statement: too many columns in result set"
    );
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "the host grew by {} MiB", grown >> 20);
    // 65 small columns are refused too; 64 are not.
    let columns = |n: usize| {
        (0..n)
            .map(|i| format!("{i} AS c{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    assert_eq!(
        answer(
            &host,
            "a",
            json!({"query": format!("SELECT {}", columns(65))})
        )
        .await,
        "statement: too many columns in result set"
    );
    assert!(answer(
        &host,
        "a",
        json!({"query": format!("SELECT {}", columns(64))})
    )
    .await
    .starts_with("rows [c0, c1,"),);
    assert_eq!(
        answer(&host, "b", json!({"query": "SELECT 3 AS three"})).await,
        "rows [three] [[integer(3)]]"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn a_result_over_half_the_plugins_free_memory_stops_it_as_out_of_memory() {
    let _shared = EXCLUSIVE.read().await;
    let db = tempfile::tempdir().unwrap();
    let section = format!("url = \"sqlite://{}\"", db.path().join("main.db").display());
    let (host, _plugins) = two_clients(&section, "memory_mib = 16").await;
    answer(&host, "a", json!({"query": "SELECT 1"})).await;
    // 8 MiB of rows: they would fit in the 16 MiB cap once, but not
    // together with their copy into the plugin's memory.
    let failure = run(
        &host,
        "a",
        json!({"query": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
                         WHERE x < 8) SELECT zeroblob(1048576) AS payload FROM c"}),
    )
    .await
    .unwrap_err();
    assert_eq!(failure.class, FailureClass::OutOfMemory, "{failure:?}");
    assert!(
        failure.message.contains("SQL result rows"),
        "{}",
        failure.message
    );
    assert_eq!(
        answer(&host, "a", json!({"query": "SELECT 4 AS four"})).await,
        "rows [four] [[integer(4)]]"
    );
    assert_eq!(
        answer(&host, "b", json!({"query": "SELECT 3 AS three"})).await,
        "rows [three] [[integer(3)]]"
    );
    host.shutdown().await;
}
