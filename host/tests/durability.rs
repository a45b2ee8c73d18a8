//! What ends a circuit breaker's cool-down, what becomes of a delivery
//! whose plugin is gone at the next start, and what a full disk does to
//! `hookhost run`.

mod common;

use std::time::{Duration, Instant};

use common::stats;
use hookhost::{Event, Host};

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An event the `returns-error` fixture fails retryably.
fn retry_me(id: &str) -> Event {
    Event::from_json(&format!(
        r#"{{"event_id": "{id}", "event_type": "RetryMe", "metadata": {{}}}}"#
    ))
    .unwrap()
}

/// Limits under which one failure opens the breaker for ten minutes.
const TRIPS_AT_ONCE: &str = "max_attempts = 100\nretry_initial_ms = 10\nretry_max_ms = 10\n\
                             breaker_threshold = 1\nbreaker_cooldown_ms = 600_000\n";

/// A host watching a folder with `flaky.wasm` as the `returns-error`
/// fixture and a config file `hookhost.toml` there under which one failure
/// opens the breaker for ten minutes; the breaker has just opened on an
/// event `id`. The folder is the second value.
async fn tripped(id: &str) -> (Host, tempfile::TempDir, tempfile::TempDir) {
    let (plugins, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = plugins.path().join("hookhost.toml");
    std::fs::write(&config, format!("[plugins.flaky]\n{TRIPS_AT_ONCE}")).unwrap();
    std::fs::copy(
        common::fixture("returns-error"),
        plugins.path().join("flaky.wasm"),
    )
    .unwrap();
    let host = Host::builder()
        .plugins_dir(plugins.path())
        .cache_dir(cache.path())
        .watch(true)
        .config_file(&config)
        .expect("valid config")
        .build()
        .await
        .expect("host builds");
    assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());
    host.emit(retry_me(id)).unwrap();
    wait_for("the breaker to open", || {
        stats(&host, "flaky").breaker_opened == 1
    })
    .await;
    (host, plugins, cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_ends_the_breakers_cooldown_and_gets_the_waiting_events() {
    let (host, plugins, _cache) = tripped("first").await;
    // Held back by the open breaker, for ten minutes unless something ends it.
    host.emit(retry_me("second")).unwrap();
    std::fs::write(
        plugins.path().join("flaky.wasm"),
        std::fs::read(common::fixture("noop")).unwrap(),
    )
    .unwrap();
    wait_for("both events handled by the new version", || {
        stats(&host, "flaky").handled == 2
    })
    .await;
    let stats = stats(&host, "flaky");
    assert_eq!((stats.breaker_opened, stats.breaker_closed), (1, 1));
    assert_eq!(stats.dead_lettered, 0);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_edit_ends_the_breakers_cooldown() {
    let (host, plugins, _cache) = tripped("only").await;
    let config = plugins.path().join("hookhost.toml");
    let failed = stats(&host, "flaky").failed_total();
    std::fs::write(
        &config,
        format!("[plugins.flaky]\n{TRIPS_AT_ONCE}timeout_ms = 9000\n"),
    )
    .unwrap();
    // The cool-down ends at once: the retry is tried again (and fails, so
    // the breaker opens again) long before its ten minutes.
    wait_for("the retry after the edit", || {
        let stats = stats(&host, "flaky");
        stats.failed_total() > failed && stats.breaker_opened == 2
    })
    .await;
    assert_eq!(stats(&host, "flaky").breaker_closed, 1);
    host.shutdown_within(Duration::ZERO).await;
}

#[tokio::test]
async fn a_delivery_pending_for_a_plugin_gone_at_restart_goes_to_the_dead_letters() {
    let data = tempfile::tempdir().unwrap();
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::fixture("returns-error"),
        plugins.path().join("flaky.wasm"),
    )
    .unwrap();
    std::fs::copy(common::fixture("noop"), plugins.path().join("noop.wasm")).unwrap();
    let config = "[plugins.flaky]\nmax_attempts = 100\nretry_initial_ms = 60_000\n";
    let host = Host::builder()
        .plugins_dir(plugins.path())
        .data_dir(data.path())
        .config(common::config(config))
        .build()
        .await
        .unwrap();
    host.emit(retry_me("left-behind")).unwrap();
    wait_for("the first try", || stats(&host, "flaky").retried == 1).await;
    let summaries = host.shutdown_within(Duration::ZERO).await;
    let flaky = summaries.iter().find(|s| s.name == "flaky").unwrap();
    assert_eq!(flaky.stats.left_in_log, 1);

    // The next start has no `flaky`: its delivery goes to the dead letters,
    // and `noop`, which had handled the event, does not get it again.
    std::fs::remove_file(plugins.path().join("flaky.wasm")).unwrap();
    let host = Host::builder()
        .plugins_dir(plugins.path())
        .data_dir(data.path())
        .config(common::config(""))
        .build()
        .await
        .unwrap();
    let letters = host.dead_letters().list(None).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(
        (
            letter.plugin.as_str(),
            letter.event_id.as_str(),
            letter.class.as_str()
        ),
        ("flaky", "left-behind", "unloaded")
    );
    assert_eq!(letter.attempts, 1);
    assert!(
        letter
            .last_error
            .contains("hookhost dlq replay --plugin flaky"),
        "{}",
        letter.last_error
    );
    let summaries = host.shutdown().await;
    assert_eq!(summaries[0].name, "noop");
    assert_eq!(summaries[0].stats.total(), 0, "noop got the event again");
}

/// A `hookhost run` whose files may not grow past 256 KiB (`RLIMIT_FSIZE`,
/// a disk that is full for it): the events whose log records do not fit
/// are refused by line number with the log's file and the reason, the
/// others are delivered, and the run goes on to its summary.
#[test]
fn a_full_disk_refuses_events_by_line_with_the_logs_file_named() {
    use std::os::unix::process::CommandExt;
    let data = tempfile::tempdir().unwrap();
    let plugins = common::plugins_dir(&["noop"]);
    let config = plugins.path().join("hookhost.toml");
    std::fs::write(&config, "[engine]\ncache = false\n").unwrap();
    let padding = "p".repeat(1000);
    let input: String = (0..600)
        .map(|n| {
            format!(
                "{{\"event_id\": \"e{n}\", \"event_type\": \"Custom\", \"metadata\": {{\"pad\": \"{padding}\"}}}}\n"
            )
        })
        .collect();
    let mut command = common::hookhost_command();
    command.args([
        "run",
        "--plugins",
        plugins.path().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256 << 10,
                rlim_max: 256 << 10,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // A write past the limit fails with EFBIG instead of killing.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let output = common::run_with_input(&mut command, &input);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let refused: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("error: stdin line "))
        .collect();
    assert!(!refused.is_empty(), "nothing was refused:\n{stderr}");
    for line in &refused {
        assert!(
            line.contains("cannot write the write-ahead log ")
                && line.contains("/wal/")
                && line.contains("File too large")
                && line.ends_with("the event was not accepted; line skipped"),
            "{line}"
        );
    }
    let dispatched = 600 - refused.len();
    assert!(
        stdout.contains(&format!(
            "{dispatched} events dispatched, {} malformed lines skipped",
            refused.len()
        )),
        "{stdout}"
    );
    let handled: u64 = stdout
        .lines()
        .find(|line| line.starts_with("noop "))
        .and_then(|row| row.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no noop row:\n{stdout}"));
    assert_eq!(handled, dispatched as u64, "{stdout}");
}

/// `on_full = "wait"` cannot block a current-thread runtime's only thread
/// (the worker that would make room runs there): `emit` fails as for
/// `reject`.
#[tokio::test(flavor = "current_thread")]
async fn on_a_current_thread_runtime_a_waiting_emit_fails_as_reject() {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::fixture("returns-error"),
        plugins.path().join("flaky.wasm"),
    )
    .unwrap();
    let config =
        format!("[plugins.flaky]\n{TRIPS_AT_ONCE}queue_capacity = 1\non_full = \"wait\"\n");
    let host = common::host(plugins.path(), common::config(&config)).await;
    host.emit(retry_me("trips")).unwrap();
    wait_for("the breaker to open", || {
        stats(&host, "flaky").breaker_opened == 1
    })
    .await;
    // Held back by the breaker, this one fills the queue of one event.
    host.emit(retry_me("fills")).unwrap();
    match host.emit(retry_me("waits")) {
        Err(hookhost::EmitError::QueueFull { plugin, capacity }) => {
            assert_eq!((plugin.as_str(), capacity), ("flaky", 1));
        }
        other => panic!("{other:?}"),
    }
    host.shutdown_within(Duration::ZERO).await;
}

/// Without a data directory, what is pending at the drain deadline goes to
/// the dead letters: a retry still waiting keeps its last failure, an event
/// an open breaker held back is class `shutdown`; events merely queued are
/// still delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_what_is_pending_at_the_drain_deadline_goes_to_the_dead_letters() {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::fixture("returns-error"),
        plugins.path().join("flaky.wasm"),
    )
    .unwrap();
    std::fs::copy(common::fixture("noop"), plugins.path().join("noop.wasm")).unwrap();
    let config = "[plugins.flaky]\nmax_attempts = 100\nretry_initial_ms = 600_000\n\
                  breaker_threshold = 1\nbreaker_cooldown_ms = 600_000\n";
    let host = common::host(plugins.path(), common::config(config)).await;
    host.emit(retry_me("waits-for-a-retry")).unwrap();
    wait_for("the breaker to open", || {
        stats(&host, "flaky").breaker_opened == 1
    })
    .await;
    host.emit(retry_me("held-back")).unwrap();
    for n in 0..50 {
        host.emit(retry_me(&format!("queued-{n}"))).unwrap();
    }
    let store = host.dead_letters().clone();
    let summaries = host.shutdown_within(Duration::ZERO).await;
    let noop = summaries.iter().find(|s| s.name == "noop").unwrap();
    assert_eq!(noop.stats.handled, 52, "queued events are delivered once");
    let flaky = summaries.iter().find(|s| s.name == "flaky").unwrap();
    assert_eq!(flaky.stats.left_to_dead_letters, 52);
    assert_eq!(flaky.stats.dead_lettered, 52);
    let letters = store.list(Some("flaky")).await.unwrap();
    assert_eq!(letters.len(), 52);
    let waited = letters
        .iter()
        .find(|l| l.event_id == "waits-for-a-retry")
        .unwrap();
    assert_eq!((waited.class.as_str(), waited.attempts), ("error", 1));
    assert!(
        waited
            .last_error
            .ends_with("(still waiting for a retry when the host stopped)"),
        "{}",
        waited.last_error
    );
    let held = letters.iter().find(|l| l.event_id == "held-back").unwrap();
    assert_eq!((held.class.as_str(), held.attempts), ("shutdown", 0));
}

/// Traps, fuel and memory failures are not retried, however many attempts
/// are allowed: one try each, then the dead letters with the class.
#[tokio::test]
async fn traps_fuel_and_memory_failures_go_to_the_dead_letters_after_one_try() {
    let dir = common::plugins_dir(&["panics", "infinite-loop", "oom"]);
    let config = "[defaults]\nmax_attempts = 8\nretry_initial_ms = 1\n\
                  fuel = 10_000_000\nmemory_mib = 16\n";
    let host = common::host(dir.path(), common::config(config)).await;
    host.emit(common::event(1)).unwrap();
    let store = host.dead_letters().clone();
    let summaries = host.shutdown().await;
    for (plugin, class) in [
        ("panics", "trap"),
        ("infinite-loop", "fuel"),
        ("oom", "memory"),
    ] {
        let stats = &summaries.iter().find(|s| s.name == plugin).unwrap().stats;
        assert_eq!(
            (stats.total(), stats.retried, stats.dead_lettered),
            (1, 0, 1),
            "{plugin}"
        );
        let letters = store.list(Some(plugin)).await.unwrap();
        assert_eq!(letters.len(), 1, "{plugin}");
        assert_eq!((letters[0].class.as_str(), letters[0].attempts), (class, 1));
    }
}
