//! The dead-letter store through the library (`hookhost::delivery`) and
//! `hookhost dlq list / show / purge` on a store filled through it.

mod common;

use std::path::Path;
use std::process::Output;

use common::hookhost_command;
use hookhost::delivery::dead_letters::FILE_NAME;
use hookhost::delivery::{DeadLetterError, DeadLetters, NewDeadLetter};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Row as _};

fn entry(plugin: &str, seq: u64) -> NewDeadLetter {
    NewDeadLetter {
        plugin: plugin.to_owned(),
        plugin_version: "3f2a9c1b7e4d".to_owned(),
        event_id: format!("event-{seq}"),
        event_type: "ProfilingStarted".to_owned(),
        event_json: format!(
            r#"{{"event_id":"event-{seq}","event_type":"ProfilingStarted","timestamp":"2026-11-27T05:00:00Z","metadata":{{"table":"orders","seq":{seq}}}}}"#
        ),
        class: "error".to_owned(),
        attempts: 1,
        first_failed_at: "2026-11-27T05:13:38.123Z".to_owned(),
        last_failed_at: "2026-11-27T05:13:38.123Z".to_owned(),
        last_error: format!("HTTP 400 from the receiver for event {seq}"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("a runtime")
}

/// A data directory whose store holds `entries`, closed again.
fn data_dir_with(entries: &[NewDeadLetter]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("create a temporary folder");
    runtime().block_on(async {
        let store = DeadLetters::open(&dir.path().join(FILE_NAME))
            .await
            .unwrap();
        store.add(entries).await.unwrap();
        store.close().await;
    });
    dir
}

fn dlq(args: &[&str], data_dir: &Path) -> Output {
    hookhost_command()
        .arg("dlq")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run hookhost dlq")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn entries_survive_reopening_and_change_as_told() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nested").join(FILE_NAME);
    let store = DeadLetters::open(&file).await.unwrap();
    store
        .add(&[entry("webhook", 1), entry("sql", 2), entry("webhook", 3)])
        .await
        .unwrap();
    store.close().await;

    let store = DeadLetters::open(&file).await.unwrap();
    let all = store.list(None).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        all.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
        ["event-1", "event-2", "event-3"]
    );
    let first = &all[0];
    let added = entry("webhook", 1);
    assert_eq!(
        (
            &first.plugin,
            &first.plugin_version,
            &first.event_type,
            &first.event_json,
            &first.class,
            first.attempts,
            &first.first_failed_at,
            &first.last_failed_at,
            &first.last_error
        ),
        (
            &added.plugin,
            &added.plugin_version,
            &added.event_type,
            &added.event_json,
            &added.class,
            added.attempts,
            &added.first_failed_at,
            &added.last_failed_at,
            &added.last_error
        )
    );
    assert_eq!(store.get(first.id).await.unwrap().as_ref(), Some(first));
    assert_eq!(store.count(Some("webhook")).await.unwrap(), 2);
    assert_eq!(
        store.list(Some("sql")).await.unwrap()[0].event_id,
        "event-2"
    );

    store
        .failed_again(first.id, "timeout", "took 10 s", "2026-11-27T06:00:00.000Z")
        .await
        .unwrap();
    let again = store.get(first.id).await.unwrap().unwrap();
    assert_eq!(
        (
            again.class.as_str(),
            again.attempts,
            again.last_error.as_str(),
            again.first_failed_at.as_str(),
            again.last_failed_at.as_str()
        ),
        (
            "timeout",
            2,
            "took 10 s",
            "2026-11-27T05:13:38.123Z",
            "2026-11-27T06:00:00.000Z"
        )
    );

    assert!(store.remove(first.id).await.unwrap());
    assert!(!store.remove(first.id).await.unwrap());
    assert_eq!(store.get(first.id).await.unwrap(), None);
    assert_eq!(store.purge(Some("webhook")).await.unwrap(), 1);
    assert_eq!(store.count(None).await.unwrap(), 1);
    assert_eq!(store.purge(None).await.unwrap(), 1);
    assert_eq!(store.count(None).await.unwrap(), 0);
    store.close().await;
}

#[test]
fn the_file_is_an_sqlite_database_with_a_layout_version() {
    let dir = data_dir_with(&[entry("webhook", 1)]);
    runtime().block_on(query_the_file(&dir.path().join(FILE_NAME)));
}

async fn query_the_file(file: &Path) {
    let mut db = SqliteConnectOptions::new()
        .filename(file)
        .read_only(true)
        .connect()
        .await
        .unwrap();
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(version, 1);
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    // The query the README gives operators.
    let rows = sqlx::query(
        "SELECT id, plugin, event_type, event_id, class, attempts, last_failed_at, last_error \
         FROM dead_letters ORDER BY id",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    let plugin: String = rows[0].get("plugin");
    let attempts: i64 = rows[0].get("attempts");
    assert_eq!((plugin.as_str(), attempts), ("webhook", 1));
}

#[tokio::test]
async fn an_in_memory_store_keeps_its_entries_while_it_lives() {
    let store = DeadLetters::in_memory().await.unwrap();
    store.add(&[entry("a", 1), entry("b", 2)]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(store.clone().count(None).await.unwrap(), 2);
    assert_eq!(store.location(), "(in memory)");
}

#[tokio::test]
async fn a_file_that_is_not_a_store_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(FILE_NAME);
    std::fs::write(&file, "these are notes, not a database\n".repeat(40)).unwrap();
    let err = DeadLetters::open(&file).await.unwrap_err();
    assert!(
        matches!(err, DeadLetterError::NotADatabase { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not a dead-letter store (not an SQLite database); move it away or use \
             another data directory (--data-dir)",
            file.display()
        )
    );

    let under_a_file = file.join("data").join(FILE_NAME);
    let err = DeadLetters::open(&under_a_file).await.unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "cannot create the folder {} for the dead-letter store: ",
            file.join("data").display()
        )) && err
            .to_string()
            .ends_with("; create it or use another data directory (--data-dir)"),
        "{err}"
    );

    let other = dir.path().join("other.sqlite");
    let mut db = SqliteConnectOptions::new()
        .filename(&other)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::query("CREATE TABLE orders (id INTEGER)")
        .execute(&mut db)
        .await
        .unwrap();
    let err = DeadLetters::open(&other).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("is an SQLite database but not a dead-letter store"),
        "{err}"
    );
    sqlx::query("DROP TABLE orders")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query("PRAGMA user_version = 99")
        .execute(&mut db)
        .await
        .unwrap();
    let err = DeadLetters::open(&other).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("has layout version 99, newer than this hookhost's (1)"),
        "{err}"
    );
}

#[test]
fn list_prints_a_row_per_entry_and_a_count() {
    let mut odd = entry("webhook", 3);
    odd.last_error = format!("line one\nINFO forged {}", "x".repeat(80));
    let dir = data_dir_with(&[entry("webhook", 1), entry("sql", 2), odd]);

    let out = dlq(&["list"], dir.path());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<_> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    let header: Vec<_> = lines[0].split("  ").filter(|c| !c.is_empty()).collect();
    assert_eq!(
        header.iter().map(|c| c.trim()).collect::<Vec<_>>(),
        [
            "id",
            "plugin",
            "event type",
            "event id",
            "class",
            "attempts",
            "last failure (UTC)",
            "last error"
        ]
    );
    let row: Vec<_> = lines[1].split_whitespace().collect();
    assert_eq!(
        row[..8],
        [
            "1",
            "webhook",
            "ProfilingStarted",
            "event-1",
            "error",
            "1",
            "2026-11-27",
            "05:13:38"
        ]
    );
    assert!(lines[1].ends_with("HTTP 400 from the receiver for event 1"));
    assert!(
        lines[3].ends_with(&format!("line one\\u{{a}}INFO forged {}…", "x".repeat(34))),
        "{stdout}"
    );
    assert_eq!(
        lines[4],
        format!("3 dead letters in {}", dir.path().join(FILE_NAME).display())
    );

    let out = dlq(&["list", "--plugin", "sql"], dir.path());
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(
        stdout.contains("1 dead letter of plugin sql in "),
        "{stdout}"
    );
}

#[test]
fn show_prints_every_field_and_the_event() {
    let dir = data_dir_with(&[entry("webhook", 1), entry("sql", 2)]);
    let out = dlq(&["show", "2"], dir.path());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for line in [
        "id:              2",
        "plugin:          sql",
        "plugin version:  3f2a9c1b7e4d",
        "event type:      ProfilingStarted",
        "event id:        event-2",
        "class:           error",
        "attempts:        1",
        "first failed at: 2026-11-27T05:13:38.123Z",
        "last failed at:  2026-11-27T05:13:38.123Z",
        "last error:      HTTP 400 from the receiver for event 2",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no {line:?} in\n{stdout}"
        );
    }
    assert!(
        stdout.ends_with(
            "event:\n{\n  \"event_id\": \"event-2\",\n  \"event_type\": \"ProfilingStarted\",\n  \
             \"timestamp\": \"2026-11-27T05:00:00Z\",\n  \"metadata\": {\n    \"table\": \"orders\",\n    \
             \"seq\": 2\n  }\n}\n"
        ),
        "{stdout}"
    );

    let out = dlq(&["show", "9"], dir.path());
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("there is no dead letter 9 in ")
            && stderr.contains("`hookhost dlq list` prints their ids"),
        "{stderr}"
    );
}

#[test]
fn purge_removes_a_plugins_entries_or_all() {
    let dir = data_dir_with(&[entry("webhook", 1), entry("sql", 2), entry("webhook", 3)]);
    let file = dir.path().join(FILE_NAME);
    let out = dlq(&["purge", "--plugin", "webhook"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "removed 2 dead letters of plugin webhook from {}\n",
            file.display()
        )
    );
    let out = dlq(&["purge"], dir.path());
    assert_eq!(
        text(&out.stdout),
        format!("removed 1 dead letter from {}\n", file.display())
    );
    let out = dlq(&["list"], dir.path());
    assert_eq!(
        text(&out.stdout),
        format!("0 dead letters in {}\n", file.display())
    );
}

#[test]
fn without_a_store_there_are_no_dead_letters_and_no_file_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let file = data_dir.join(FILE_NAME);
    let none = format!("0 dead letters (there is no store at {})\n", file.display());
    let out = dlq(&["list"], &data_dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), none);
    let out = dlq(&["purge"], &data_dir);
    assert_eq!(text(&out.stdout), format!("removed {none}"));
    let out = dlq(&["replay"], &data_dir);
    assert_eq!(text(&out.stdout), format!("replayed {none}"));
    let out = dlq(&["show", "1"], &data_dir);
    assert!(!out.status.success());
    assert!(!data_dir.exists(), "the data directory was created");
}

#[test]
fn the_default_data_dir_is_under_xdg_data_home() {
    let out = hookhost_command()
        .args(["dlq", "list"])
        .output()
        .expect("run hookhost dlq");
    let file = common::cli_home()
        .join("data")
        .join("hookhost")
        .join(FILE_NAME);
    assert_eq!(
        text(&out.stdout),
        format!("0 dead letters (there is no store at {})\n", file.display())
    );
}

#[test]
fn a_file_that_is_not_sqlite_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(FILE_NAME),
        "these are notes, not a database\n".repeat(40),
    )
    .unwrap();
    let out = dlq(&["list"], dir.path());
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: {} is not a dead-letter store (not an SQLite database); move it away or \
             use another data directory (--data-dir)\n",
            dir.path().join(FILE_NAME).display()
        )
    );
}
