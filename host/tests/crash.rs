//! Crash safety: a real `hookhost run` process with a data directory, the
//! built-in `sql` hook (SQLite) and `webhook` hook, fed 10,000 events with
//! unique ids and killed with SIGKILL at six different moments (starting
//! up, reading input, while retries wait, delivering what the log
//! recovered, delivering, draining after the end of input), restarted each
//! time with the input not yet accepted.
//!
//! An event counts as accepted once the process has it in its write-ahead
//! log. After each kill, what was accepted is read from the outside: the
//! rows of the SQL table, the events the receiver saw, and the events in a
//! copy of the log (opened with `Wal::open`, which the killed process no
//! longer locks). The next run is fed only the rest. At the end, the table
//! holds each event exactly once, the receiver answered 200 to each, and
//! every event that was in the log at a kill was delivered, after the
//! restart, to each plugin it was still pending for, without being fed
//! again.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::flaky::{Flaky, Policy};
use hookhost::delivery::wal::Wal;
use hookhost::delivery::DeadLetters;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

const EVENTS: usize = 10_000;
/// The table the `sql` hook writes to (its default).
const TABLE: &str = "hookhost_events";
/// How long any one moment may take to come.
const PATIENCE: Duration = Duration::from_secs(90);

#[test]
fn killed_at_six_moments_no_accepted_event_is_lost_or_written_twice_to_the_table() {
    let mut test = CrashTest::new();

    // 1. Starting up: killed as soon as its log folder exists, the whole
    //    input waiting in the pipe.
    let mut run = test.start("startup");
    run.feed(test.unaccepted(EVENTS), false);
    test.wait_until(&mut run, "the log folder", || {
        test.data.path().join("wal").exists()
    });
    test.kill(run);

    // 2. Reading input: the rest of the input fed at once, killed once the
    //    receiver has seen 1,000 new events, with most of the input unread
    //    (the queues are small, so reading waits for room).
    let seen = test.receiver.ids().len();
    let mut run = test.start("reading");
    run.feed(test.unaccepted(EVENTS), false);
    test.wait_until(&mut run, "1,000 deliveries", || {
        test.receiver.ids().len() >= seen + 1_000
    });
    test.kill(run);

    // 3. While retries wait: the receiver answers 503, 1,000 more events;
    //    killed once five deliveries have failed (their retries wait, with
    //    the breaker open or not), and a little later.
    test.receiver.set_policy(Policy::Down(503));
    let failed = test.receiver.answered(503);
    let mut run = test.start("retrying");
    run.feed(test.unaccepted(1_000), false);
    test.wait_until(&mut run, "five failed deliveries", || {
        test.receiver.answered(503) >= failed + 5
    });
    std::thread::sleep(Duration::from_millis(500));
    test.kill(run);

    // 4. Delivering what the log recovered: the receiver healthy, no new
    //    input; killed at the first recovered event it delivers (some of
    //    them the receiver may have answered 200 before, when a kill came
    //    before their completion was written).
    test.receiver.heal();
    let recovered = test.kills.last().unwrap().pending_for("webhook");
    assert!(!recovered.is_empty(), "the log held the failing deliveries");
    let started = Instant::now();
    let mut run = test.start("recovering");
    test.wait_until(&mut run, "a recovered delivery", || {
        recovered.iter().any(|id| {
            let tries = test.receiver.tries(id);
            tries.iter().any(|t| t.status == 200 && t.at > started)
        })
    });
    test.kill(run);

    // 5. While delivering: 2,000 more events and the end of input; killed
    //    once the receiver has seen 500 of them.
    let batch = test.unaccepted(2_000);
    let mut run = test.start("delivering");
    run.feed(batch.clone(), true);
    test.wait_until(&mut run, "500 of 2,000 deliveries", || {
        batch
            .iter()
            .filter(|id| !test.receiver.tries(id).is_empty())
            .count()
            >= 500
    });
    test.kill(run);

    // 6. Draining: once the recovered events are delivered, the receiver
    //    answers 503 and the run reads 200 events (fewer than its queues
    //    hold) to the end of input; it then waits for their retries, and is
    //    killed once five deliveries have failed, and a little later.
    let recovered = test.kills.last().unwrap().pending_for("webhook");
    let started = Instant::now();
    let mut run = test.start("draining");
    test.wait_until(&mut run, "the recovered deliveries", || {
        let delivered = test
            .receiver
            .ids_with(|tries| tries.iter().any(|t| t.status == 200 && t.at > started));
        recovered.iter().all(|id| delivered.contains(id))
    });
    test.receiver.set_policy(Policy::Down(503));
    let failed = test.receiver.answered(503);
    run.feed(test.unaccepted(200), true);
    test.wait_until(&mut run, "five failed deliveries", || {
        test.receiver.answered(503) >= failed + 5
    });
    std::thread::sleep(Duration::from_millis(500));
    test.kill(run);

    // The last run is not killed.
    test.receiver.heal();
    let mut run = test.start("final");
    run.feed(test.unaccepted(EVENTS), true);
    test.finish(run);
    test.check_every_event_delivered();
}

/// A kill and what the log held then.
struct Kill {
    label: &'static str,
    at: Instant,
    /// Events in the log (in flight): id and the plugins still to
    /// complete it.
    in_log: BTreeMap<String, Vec<String>>,
    /// Every event accepted by then.
    accepted: BTreeSet<String>,
}

impl Kill {
    /// The events the log held for `plugin`.
    fn pending_for(&self, plugin: &str) -> Vec<String> {
        self.in_log
            .iter()
            .filter(|(_, plugins)| plugins.iter().any(|p| p == plugin))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// One `hookhost run` process.
struct Run {
    label: &'static str,
    child: Child,
    /// Its input until [`Run::feed`] hands it to a writer thread.
    stdin: Option<ChildStdin>,
    /// Writes the input; returns stdin when it is to stay open.
    writer: Option<JoinHandle<Option<ChildStdin>>>,
    stdout: PathBuf,
    stderr: PathBuf,
    fed: BTreeSet<String>,
}

impl Run {
    /// Writes the events `ids` to its input on a thread, then closes the
    /// input if `close`. Once per run.
    fn feed(&mut self, ids: Vec<String>, close: bool) {
        let mut stdin = self.stdin.take().expect("a run is fed once");
        self.fed.extend(ids.iter().cloned());
        self.writer = Some(std::thread::spawn(move || {
            for chunk in ids.chunks(100) {
                let text: String = chunk.iter().map(|id| event_line(id)).collect();
                // A killed process closes the pipe: stop writing.
                if stdin.write_all(text.as_bytes()).is_err() {
                    return None;
                }
            }
            (!close).then_some(stdin)
        }));
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// The end of its stderr and where the whole is, for failure messages.
    fn stderr_tail(&self) -> String {
        let text = self.stderr_text();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "{}\n(all of it in {})",
            lines[lines.len().saturating_sub(40)..].join("\n"),
            self.stderr.display()
        )
    }

    /// Closes its input, after waiting for the writer, which ends when the
    /// process does or its input is written.
    fn close_input(&mut self) {
        self.stdin = None;
        if let Some(writer) = self.writer.take() {
            drop(writer.join().expect("the input writer"));
        }
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

struct CrashTest {
    runtime: tokio::runtime::Runtime,
    receiver: Flaky,
    plugins: tempfile::TempDir,
    config: PathBuf,
    data: tempfile::TempDir,
    database: PathBuf,
    /// Each run's stdout and stderr, the config and the SQLite file, kept
    /// after the test for a look at a failure.
    logs: PathBuf,
    /// Every event id, in input order.
    ids: Vec<String>,
    /// Accepted so far (grows after each kill).
    accepted: BTreeSet<String>,
    kills: Vec<Kill>,
    /// What each run was fed.
    runs: Vec<(&'static str, BTreeSet<String>)>,
}

impl CrashTest {
    fn new() -> CrashTest {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let receiver = runtime.block_on(Flaky::start(Policy::Healthy));
        let plugins = tempfile::tempdir().unwrap();
        for name in ["sql", "webhook"] {
            std::fs::copy(
                common::builtin(name),
                plugins.path().join(format!("{name}.wasm")),
            )
            .unwrap();
        }
        let data = tempfile::tempdir().unwrap();
        let logs = common::cli_home().join("crash");
        std::fs::create_dir_all(&logs).unwrap();
        let database = logs.join("events.db");
        // Small queues, so that reading waits for room while the plugins
        // deliver; quick retries and breaker, and attempts that outlast the
        // test's outages, so nothing goes to the dead letters.
        let retries = "queue_capacity = 512\nmax_attempts = 100\nretry_initial_ms = 100\n\
                       retry_max_ms = 1000\nbreaker_cooldown_ms = 300\n\
                       breaker_max_cooldown_ms = 1000";
        let config = logs.join("hookhost.toml");
        std::fs::write(
            &config,
            format!(
                "[databases.events]\nbackend = \"sqlite\"\npath = \"{}\"\n\n\
                 [plugins.sql]\ndatabases = [\"events\"]\nbatch_wait_ms = 20\n{retries}\n\n{}",
                database.display(),
                receiver.webhook_config("webhook", retries)
            ),
        )
        .unwrap();
        let ids = (0..EVENTS).map(|n| format!("crash-{n:05}")).collect();
        CrashTest {
            runtime,
            receiver,
            plugins,
            config,
            data,
            database,
            logs,
            ids,
            accepted: BTreeSet::new(),
            kills: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Up to `n` of the events not accepted yet, in input order.
    fn unaccepted(&self, n: usize) -> Vec<String> {
        self.ids
            .iter()
            .filter(|id| !self.accepted.contains(*id))
            .take(n)
            .cloned()
            .collect()
    }

    /// Starts `hookhost run`, its input open and empty until [`Run::feed`].
    fn start(&self, label: &'static str) -> Run {
        let number = self.runs.len();
        let stdout = self.logs.join(format!("{number}-{label}.stdout"));
        let stderr = self.logs.join(format!("{number}-{label}.stderr"));
        let mut child = common::hookhost_command()
            .env("RUST_LOG", "info")
            .arg("run")
            .arg("--plugins")
            .arg(self.plugins.path())
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(self.data.path())
            .stdin(Stdio::piped())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .expect("start hookhost run");
        let stdin = child.stdin.take();
        Run {
            label,
            child,
            stdin,
            writer: None,
            stdout,
            stderr,
            fed: BTreeSet::new(),
        }
    }

    /// Polls `condition` until it holds, failing if `run` ends first or
    /// the moment does not come.
    fn wait_until(&self, run: &mut Run, what: &str, mut condition: impl FnMut() -> bool) {
        let started = Instant::now();
        while !condition() {
            if let Ok(Some(status)) = run.child.try_wait() {
                panic!(
                    "run {} ended ({status}) before {what}:\n{}",
                    run.label,
                    run.stderr_tail()
                );
            }
            assert!(
                started.elapsed() < PATIENCE,
                "run {}: timed out waiting for {what}:\n{}",
                run.label,
                run.stderr_tail()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills `run` with SIGKILL, then reads what was accepted.
    fn kill(&mut self, mut run: Run) {
        // SAFETY: `kill` has no memory effects; the pid is our child's, not
        // yet waited for, so it is not reused.
        let killed = unsafe { libc::kill(run.child.id() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(killed, 0, "kill run {}", run.label);
        let at = Instant::now();
        let status = run.child.wait().expect("wait for the killed process");
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "run {} ended by itself ({status}) before it was killed:\n{}",
            run.label,
            run.stderr_tail()
        );
        run.close_input();
        self.check_recovered_line(&run);

        let in_log = self.in_log();
        let mut accepted = self.sql_ids();
        accepted.extend(self.receiver.ids());
        accepted.extend(in_log.keys().cloned());
        accepted.retain(|id| !id.is_empty());
        assert!(
            accepted.is_superset(&self.accepted),
            "an event accepted earlier is nowhere after run {}",
            run.label
        );
        self.accepted = accepted;
        self.runs.push((run.label, run.fed.clone()));
        self.kills.push(Kill {
            label: run.label,
            at,
            in_log,
            accepted: self.accepted.clone(),
        });
    }

    /// After a kill, the next start says how many events it recovered
    /// from the log: as many as the copy of the log held.
    fn check_recovered_line(&self, run: &Run) {
        let Some(previous) = self.kills.last() else {
            return;
        };
        let stderr = run.stderr_text();
        let line = stderr
            .lines()
            .find(|line| line.contains("events in flight recovered"))
            .unwrap_or_else(|| {
                panic!(
                    "run {} does not say what it recovered:\n{}",
                    run.label,
                    run.stderr_tail()
                )
            });
        let number: usize = line
            .split(" events in flight recovered")
            .next()
            .and_then(|before| before.split_whitespace().last())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number in {line:?}"));
        assert_eq!(
            number,
            previous.in_log.len(),
            "run {} recovered {number} events; the log held {} after run {}",
            run.label,
            previous.in_log.len(),
            previous.label
        );
    }

    /// Lets `run` read its input to the end and finish by itself.
    fn finish(&mut self, mut run: Run) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = run.child.try_wait().expect("poll the last run") {
                break status;
            }
            if started.elapsed() > Duration::from_secs(300) {
                let _ = run.child.kill();
                let _ = run.child.wait();
                panic!("the last run did not finish:\n{}", run.stderr_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        run.close_input();
        assert!(
            status.success(),
            "the last run failed ({status}):\n{}",
            run.stderr_tail()
        );
        self.check_recovered_line(&run);
        let stdout = run.stdout_text();
        assert!(
            stdout.contains(" events dispatched, 0 malformed lines skipped"),
            "{stdout}"
        );
        self.runs.push((run.label, run.fed.clone()));
    }

    fn check_every_event_delivered(&self) {
        let all: BTreeSet<String> = self.ids.iter().cloned().collect();
        let (rows, distinct) = self.sql_counts();
        assert_eq!((rows, distinct), (EVENTS as i64, EVENTS as i64));
        assert_eq!(self.sql_ids(), all, "the table holds exactly the events");
        let delivered = self.receiver.ids_with_200();
        let missing: Vec<&String> = all.difference(&delivered).take(10).collect();
        assert!(missing.is_empty(), "the receiver never got {missing:?}...");
        assert!(delivered.is_subset(&all), "the receiver got unknown ids");

        // Each event in the log at a kill was not fed again, and reached
        // every plugin it was pending for after that kill.
        for (n, kill) in self.kills.iter().enumerate() {
            for (label, fed) in &self.runs[n + 1..] {
                let again: Vec<&String> = fed.intersection(&kill.accepted).take(10).collect();
                assert!(
                    again.is_empty(),
                    "run {label} was fed {again:?}, accepted before the kill of run {}",
                    kill.label
                );
            }
            for id in kill.pending_for("webhook") {
                let after = self
                    .receiver
                    .tries(&id)
                    .iter()
                    .any(|t| t.status == 200 && t.at > kill.at);
                assert!(
                    after,
                    "{id}, in the log when run {} was killed, was not delivered to the \
                     webhook after the restart",
                    kill.label
                );
            }
        }
        assert!(
            self.kills.iter().any(|k| !k.pending_for("sql").is_empty()),
            "no kill caught an event in flight for the sql hook"
        );

        let dead_letters = self.runtime.block_on(async {
            let store = DeadLetters::open(&self.data.path().join("dead-letters.sqlite"))
                .await
                .expect("open the dead letters");
            store.count(None).await.expect("count the dead letters")
        });
        assert_eq!(dead_letters, 0, "nothing went to the dead letters");
    }

    /// The events in flight in the log, read from a copy of the data
    /// directory.
    fn in_log(&self) -> BTreeMap<String, Vec<String>> {
        let copy = tempfile::tempdir().unwrap();
        common::copy_dir(self.data.path(), copy.path());
        let (_wal, recovered) = Wal::open(copy.path())
            .unwrap_or_else(|err| panic!("open a copy of the write-ahead log: {err}"));
        recovered
            .into_iter()
            .map(|entry| {
                let event: serde_json::Value =
                    serde_json::from_str(&entry.event_json).expect("the log holds JSON events");
                let id = event["event_id"]
                    .as_str()
                    .expect("the event has its id")
                    .to_owned();
                (id, entry.pending.into_iter().map(|(p, _)| p).collect())
            })
            .collect()
    }

    /// The ids in the SQL table (none before the table exists).
    fn sql_ids(&self) -> BTreeSet<String> {
        self.query(|pool| async move {
            sqlx::query_scalar::<_, String>(&format!("SELECT event_id FROM {TABLE}"))
                .fetch_all(&pool)
                .await
                .expect("read the event ids")
        })
        .unwrap_or_default()
        .into_iter()
        .collect()
    }

    /// Rows and distinct event ids in the SQL table.
    fn sql_counts(&self) -> (i64, i64) {
        self.query(|pool| async move {
            sqlx::query_as::<_, (i64, i64)>(&format!(
                "SELECT count(*), count(DISTINCT event_id) FROM {TABLE}"
            ))
            .fetch_one(&pool)
            .await
            .expect("count the rows")
        })
        .expect("the table exists")
    }

    /// Runs `read` on the SQLite file if it has the table.
    fn query<T, F>(&self, read: impl FnOnce(sqlx::SqlitePool) -> F) -> Option<T>
    where
        F: std::future::Future<Output = T>,
    {
        if !self.database.exists() {
            return None;
        }
        self.runtime.block_on(async {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(SqliteConnectOptions::new().filename(&self.database))
                .await
                .expect("open the SQLite file");
            let exists: Option<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
            )
            .bind(TABLE)
            .fetch_optional(&pool)
            .await
            .expect("read the schema");
            let result = match exists {
                Some(_) => Some(read(pool.clone()).await),
                None => None,
            };
            pool.close().await;
            result
        })
    }
}

/// The JSON line of event `id`.
fn event_line(id: &str) -> String {
    format!(
        r#"{{"event_id": "{id}", "event_type": "ProfilingStarted", "timestamp": "2025-01-15T10:30:00Z", "metadata": {{"table": "orders", "run_id": "crash"}}}}"#
    ) + "\n"
}
