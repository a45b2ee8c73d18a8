//! Hostile hooks against the host's own bounds: each test runs one attack
//! and checks what its name says. Most run the attacker next to an honest
//! plugin (`counts`) and check that it keeps serving every event; the
//! memory attacks also bound the growth of the host's resident memory.
//!
//! The attacks here go through the sandbox's always-granted doors: the
//! host resources and bytes held for a guest (WASI streams), its output
//! (log calls, stdout, stderr), its returned errors, and the queue in
//! front of it. The capabilities' attacks have files of their own
//! (`adversarial_sql.rs`, `adversarial_net.rs`), and so do plugin files
//! (`adversarial_files.rs`) and input (`adversarial_input.rs`).
//!
//! The tests that measure the process's resident memory hold
//! `common::EXCLUSIVE` for writing, so that no other test of this binary
//! runs beside them; every other test holds it for reading.

mod common;

use common::{resident_bytes, EXCLUSIVE};
use hookhost::{EmitError, Event, FailureClass, Host, Report};
use serde_json::json;

/// A custom event whose metadata is `metadata`.
fn script(metadata: serde_json::Value) -> Event {
    Event::from_json(&json!({"event_type": "attack", "metadata": metadata}).to_string()).unwrap()
}

/// A host with the `attacker` fixture and `counts`, configured by `toml`.
async fn host_with(attacker: &str, toml: &str) -> Host {
    let dir = common::plugins_dir(&[attacker, "counts"]);
    let host = common::host(dir.path(), common::config(toml)).await;
    // The host keeps its own copies of the compiled plugins.
    drop(dir);
    host
}

/// The outcome `plugin` had in `report`.
fn outcome_of<'a>(report: &'a Report, plugin: &str) -> &'a hookhost::Outcome {
    &report
        .outcomes
        .iter()
        .find(|(name, _)| name == plugin)
        .unwrap_or_else(|| panic!("no outcome for {plugin}: {report:?}"))
        .1
}

/// Sends `attack` to both plugins, then a counted event, and checks that
/// `counts` handled both in order; returns the attacker's report.
async fn attack_then_serve(host: &Host, attack: Event, seq: u64) -> Report {
    let mut attack = attack;
    // `counts` checks `seq` rises by one: give the attack the next one.
    let mut metadata: serde_json::Value = serde_json::from_str(&attack.metadata).unwrap();
    metadata["seq"] = json!(seq);
    attack.metadata = metadata.to_string();
    let report = host.emit_with_report(attack).unwrap().wait().await;
    assert!(outcome_of(&report, "counts").result.is_ok(), "{report:?}");
    let next = host
        .emit_with_report(common::event(seq + 1))
        .unwrap()
        .wait()
        .await;
    assert!(outcome_of(&next, "counts").result.is_ok(), "{next:?}");
    report
}

#[tokio::test]
async fn opening_host_resources_without_end_fails_as_memory() {
    let _alone = EXCLUSIVE.write().await;
    let host = host_with("opens-streams", "").await;
    let before = resident_bytes();
    let report = attack_then_serve(&host, script(json!({"streams": 1_000_000})), 1).await;
    let failure = outcome_of(&report, "opens-streams")
        .result
        .clone()
        .unwrap_err();
    assert_eq!(failure.class, FailureClass::OutOfMemory, "{failure}");
    assert!(failure.message.contains("host resources"), "{failure}");
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "the host grew by {grown} bytes");
    // A fresh instance serves a modest request.
    let fine = host
        .emit_with_report(script(json!({"streams": 3, "pending_bytes": 10, "seq": 3})))
        .unwrap()
        .wait()
        .await;
    assert!(
        outcome_of(&fine, "opens-streams").result.is_ok(),
        "{fine:?}"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn bytes_the_host_holds_count_against_the_memory_cap() {
    let _alone = EXCLUSIVE.write().await;
    let host = host_with("opens-streams", "[plugins.opens-streams]\nmemory_mib = 8\n").await;
    let before = resident_bytes();
    // 900 streams each holding 16,000 bytes of an unfinished line: 14 MB held by
    // the host, past an 8 MiB cap, while the guest's own memory stays small.
    let attack = script(json!({"streams": 900, "pending_bytes": 16_000}));
    let report = attack_then_serve(&host, attack, 1).await;
    let failure = outcome_of(&report, "opens-streams")
        .result
        .clone()
        .unwrap_err();
    assert_eq!(failure.class, FailureClass::OutOfMemory, "{failure}");
    assert!(
        failure
            .message
            .starts_with("memory cap of 8388608 bytes exceeded")
            && failure.message.contains("pending output"),
        "{failure}"
    );
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "the host grew by {grown} bytes");
    host.shutdown().await;
}

/// Lines of its own output a plugin may have logged per second
/// (`OUTPUT_LINES_PER_SECOND` in `log_limit.rs`).
const OUTPUT_LINES_PER_SECOND: u64 = 1_000;

/// Bytes of its own output a plugin may have logged per second
/// (`OUTPUT_BYTES_PER_SECOND` in `log_limit.rs`).
const OUTPUT_BYTES_PER_SECOND: u64 = 1 << 20;

/// Sends `floods-output` one event asking for `lines` lines of
/// `line_bytes` bytes (half log calls, half stdout lines) next to `counts`,
/// and returns how many of them its summary counts as dropped and the most
/// it could have logged had it written `per_second` lines a second: one
/// window of the limit per second of the run, and two more, since a window
/// starts when the plugin loads (before the clock here starts) and a
/// part-used one may end in the middle of the run.
async fn flood(lines: u64, line_bytes: u64, per_second: u64) -> (u64, u64) {
    let host = host_with("floods-output", "").await;
    let attack = script(json!({
        "log_lines": lines / 2,
        "stdout_lines": lines - lines / 2,
        "line_bytes": line_bytes,
    }));
    let started = std::time::Instant::now();
    let report = attack_then_serve(&host, attack, 1).await;
    let secs = started.elapsed().as_secs();
    assert!(
        outcome_of(&report, "floods-output").result.is_ok(),
        "dropping output is not the plugin's failure: {report:?}"
    );
    let summaries = host.shutdown().await;
    let flood = summaries
        .iter()
        .find(|s| s.name == "floods-output")
        .expect("a summary for floods-output");
    let counts = summaries
        .iter()
        .find(|s| s.name == "counts")
        .expect("a summary for counts");
    assert_eq!(counts.output_dropped, 0);
    assert_eq!(counts.stats.handled, 2);
    (flood.output_dropped, per_second * (secs + 2))
}

#[tokio::test]
async fn output_past_the_limit_is_dropped_and_counted() {
    let _shared = EXCLUSIVE.read().await;
    // 60,000 short lines in about a second, against 1,000 lines a second.
    let (dropped, logged_at_most) = flood(60_000, 100, OUTPUT_LINES_PER_SECOND).await;
    assert!(
        dropped >= 60_000u64.saturating_sub(logged_at_most),
        "dropped {dropped} of 60000 lines; at most {logged_at_most} could be logged"
    );
}

#[tokio::test]
async fn output_past_the_byte_limit_is_dropped_and_counted() {
    let _shared = EXCLUSIVE.read().await;
    // 2,000 lines of 8 KiB: within the line limit for two windows, but 1 MiB
    // a second holds only 128 of them.
    let line_bytes = 8 * 1024;
    let (dropped, logged_at_most) =
        flood(2_000, line_bytes, OUTPUT_BYTES_PER_SECOND / line_bytes).await;
    assert!(
        dropped >= 2_000u64.saturating_sub(logged_at_most),
        "dropped {dropped} of 2000 lines of 8 KiB; at most {logged_at_most} could be logged"
    );
}

#[test]
fn output_cannot_forge_host_log_lines() {
    let _shared = EXCLUSIVE.blocking_read();
    let dir = common::plugins_dir(&["floods-output"]);
    let input = json!({"event_type": "attack", "metadata": {"forge": true}}).to_string();
    let out = common::run_with_input(
        common::hookhost_command()
            .env("RUST_LOG", "info")
            .arg("run")
            .arg("--plugins")
            .arg(dir.path()),
        &format!("{input}\n"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let forged: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("2025-01-15T10:30:00"))
        .collect();
    assert!(forged.is_empty(), "forged lines: {forged:?}\n{stderr}");
    assert!(
        !stderr.contains(['\r', '\u{1b}']),
        "a raw carriage return or escape reached the log:\n{stderr}"
    );
    // The log call keeps its newline, escaped; stdout's newline ends a line,
    // and what follows it is logged as the plugin's next line.
    assert!(
        stderr.contains(r"ok\u{a}2025-01-15T10:30:00.000000Z  INFO forged line"),
        "{stderr}"
    );
    assert_eq!(stderr.matches(r"\u{d}\u{1b}[2K").count(), 2, "{stderr}");
}

#[test]
fn secrets_are_masked_across_cuts_and_split_writes() {
    let _shared = EXCLUSIVE.blocking_read();
    let password = "pw-0123456789-abcdefghij";
    let dir = common::plugins_dir(&["prints-secret"]);
    let config = dir.path().join("hookhost.toml");
    std::fs::write(
        &config,
        format!("[plugins.prints-secret.settings]\npassword = {{ secret = \"{password}\" }}\n"),
    )
    .unwrap();
    let out = common::run_with_input(
        common::hookhost_command()
            .env("RUST_LOG", "info")
            .arg("run")
            .arg("--plugins")
            .arg(dir.path())
            .arg("--config")
            .arg(&config),
        "{\"event_type\": \"split-secret\"}\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // No piece of the password long enough to mean anything shows.
    for piece in password.as_bytes().windows(8) {
        let piece = std::str::from_utf8(piece).unwrap();
        assert!(!stderr.contains(piece), "`{piece}` leaked:\n{stderr}");
    }
    // The split write, the two lines across the cut, the overlong line.
    assert_eq!(
        stderr.matches("<secret>").count(),
        4,
        "every place the password was written is masked:\n{stderr}"
    );
}

#[tokio::test]
async fn a_huge_returned_error_is_kept_short() {
    let _alone = EXCLUSIVE.write().await;
    let host = host_with("returns-huge-error", "").await;
    let before = resident_bytes();
    let report = attack_then_serve(&host, script(json!({"bytes": 8 << 20})), 1).await;
    let failure = outcome_of(&report, "returns-huge-error")
        .result
        .clone()
        .unwrap_err();
    assert_eq!(failure.class, FailureClass::Returned);
    assert!(
        failure.message.len() <= 4 * 1024 + 64,
        "{}",
        failure.message.len()
    );
    assert!(
        failure.message.ends_with("[…cut: 8388608 bytes in all]"),
        "{}",
        &failure.message[failure.message.len() - 40..]
    );
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "the host grew by {grown} bytes");
    host.shutdown().await;
}

#[tokio::test]
async fn queued_bytes_are_bounded_per_plugin() {
    let _shared = EXCLUSIVE.read().await;
    // The slow plugin takes 200 ms an event, so its queue fills; 1 MiB of
    // 100 KiB events fits 10 of them.
    let toml = "[engine]\nmax_event_kib = 2048\n\
                [plugins.blocks-in-host-call]\ntimeout_ms = 200\nqueue_mib = 1\n";
    let dir = common::plugins_dir(&["blocks-in-host-call", "counts"]);
    let host = common::host(dir.path(), common::config(toml)).await;
    let big = |seq: u64| script(json!({"seq": seq, "padding": "p".repeat(100 * 1024)}));
    let mut accepted = 0;
    let refusal = loop {
        match host.emit(big(accepted + 1)) {
            Ok(()) => accepted += 1,
            Err(err) => break err,
        }
        assert!(accepted < 100, "the byte bound never refused an event");
    };
    assert!((9..=11).contains(&accepted), "accepted {accepted}");
    match &refusal {
        EmitError::QueueBytesFull {
            plugin,
            queue_bytes,
        } => {
            assert_eq!(plugin, "blocks-in-host-call");
            assert_eq!(*queue_bytes, 1 << 20);
        }
        other => panic!("{other}"),
    }
    // An event larger than the whole queue can never fit it.
    let too_big = script(json!({"padding": "p".repeat(1536 * 1024)}));
    match host.emit(too_big) {
        Err(EmitError::TooLarge { key, .. }) => assert_eq!(key, "queue_mib"),
        other => panic!("{other:?}"),
    }
    // `send` waits for room instead, and gets it as events are handled.
    host.send(big(accepted + 1)).await.unwrap();
    let summaries = host.shutdown().await;
    let counts = summaries.iter().find(|s| s.name == "counts").unwrap();
    assert_eq!(counts.stats.handled, accepted + 1, "in order, none lost");
}

#[tokio::test]
async fn events_over_the_size_limit_are_refused() {
    let _shared = EXCLUSIVE.read().await;
    let dir = common::plugins_dir(&["counts"]);
    let host = common::host(dir.path(), common::config("[engine]\nmax_event_kib = 64\n")).await;
    let event = script(json!({"padding": "p".repeat(65 * 1024)}));
    match host.emit(event.clone()) {
        Err(EmitError::TooLarge { bytes, limit, key }) => {
            assert!(bytes > 65 * 1024);
            assert_eq!(limit, 64 * 1024);
            assert_eq!(key, "[engine] max_event_kib");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        host.send(event).await,
        Err(EmitError::TooLarge { .. })
    ));
    common::serves_then_shuts_down(host).await;
}

#[tokio::test]
async fn asking_for_huge_random_buffers_traps_without_host_growth() {
    let _alone = EXCLUSIVE.write().await;
    let host = host_with("requests-random-bytes", "").await;
    let before = resident_bytes();
    // wasmtime's own default would allocate this much on the host.
    let report = attack_then_serve(&host, script(json!({"bytes": 60u64 << 20})), 1).await;
    let failure = outcome_of(&report, "requests-random-bytes")
        .result
        .clone()
        .unwrap_err();
    assert_eq!(failure.class, FailureClass::Trap, "{failure}");
    assert!(failure.message.contains("exceeds limit 65536"), "{failure}");
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 32 << 20, "the host grew by {grown} bytes");
    let fine = host
        .emit_with_report(script(json!({"bytes": 32, "seq": 3})))
        .unwrap()
        .wait()
        .await;
    assert!(
        outcome_of(&fine, "requests-random-bytes").result.is_ok(),
        "{fine:?}"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn one_write_past_check_write_traps_without_host_growth() {
    let _alone = EXCLUSIVE.write().await;
    let host = host_with("opens-streams", "").await;
    let before = resident_bytes();
    // 32 MiB in one write: a stream that took it whole would keep that
    // buffer after logging the line.
    let report = attack_then_serve(&host, script(json!({"one_write": 32 << 20})), 1).await;
    let failure = outcome_of(&report, "opens-streams")
        .result
        .clone()
        .unwrap_err();
    assert_eq!(failure.class, FailureClass::Trap, "{failure}");
    assert!(
        failure.message.contains("more than check-write allows"),
        "{failure}"
    );
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "the host grew by {grown} bytes");
    host.shutdown().await;
}
