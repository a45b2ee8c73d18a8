//! Reliable delivery, black-box: the built-in `webhook` hook against a
//! programmable receiver on 127.0.0.1 (`common::flaky`), through the
//! library and through real `hookhost run` and `hookhost dlq` processes.
//! Retries follow the schedule and the hook's `Retry-After`; the circuit
//! breaker holds events back and loses none; permanent failures go to the
//! dead letters and replay delivers them once; each queue policy; the event
//! size limit; a retry pending across a hot reload; the drain timeout, in
//! memory and with a data directory; and events queued while a worker
//! lingers or sleeps. Process crashes are in `crash.rs`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::flaky::{Flaky, Policy, Try};
use hookhost::delivery::DeadLetters;
use hookhost::outcome::Fate;
use hookhost::{EmitError, Event, FailureClass, Host, PluginStats, PluginSummary};

/// How late a retry may arrive past its schedule's bound on a loaded
/// 2-core machine: the worker may be busy with other events when it is due,
/// and the receiver and the test share the cores.
const SCHEDULING_SLACK: Duration = Duration::from_secs(1);

/// A test event with id `id`.
fn event(id: &str) -> Event {
    Event::from_json(&event_line(id)).expect("valid test event")
}

/// The JSON line of [`event`].
fn event_line(id: &str) -> String {
    format!(
        r#"{{"event_id": "{id}", "event_type": "ProfilingStarted", "timestamp": "2025-01-15T10:30:00Z", "metadata": {{"table": "orders", "run_id": "run-1"}}}}"#
    )
}

/// `n` event ids starting with `prefix`, in sending order.
fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

/// The JSON lines of the events `ids`, as `hookhost run` reads them.
fn input(ids: &[String]) -> String {
    ids.iter().map(|id| event_line(id) + "\n").collect()
}

/// A host running the built-in `webhook` hook against `receiver`, in
/// memory, with `limits` in its `[plugins.webhook]` section.
async fn webhook_host(receiver: &Flaky, limits: &str) -> Host {
    common::builtin_host("webhook", &receiver.webhook_config("webhook", limits)).await
}

fn stats<'a>(summaries: &'a [PluginSummary], name: &str) -> &'a PluginStats {
    &summaries
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no summary for {name}: {summaries:?}"))
        .stats
}

fn webhook_stats(host: &Host) -> PluginStats {
    stats(&host.summaries(), "webhook").clone()
}

fn statuses(tries: &[Try]) -> Vec<u16> {
    tries.iter().map(|t| t.status).collect()
}

/// The time between each try and the next.
fn gaps(tries: &[Try]) -> Vec<Duration> {
    tries.windows(2).map(|w| w[1].at - w[0].at).collect()
}

/// The longest wait the schedule allows after failed attempt `attempt`
/// (1 = the first delivery): full jitter over
/// `min(retry_max, retry_initial * 2^(attempt-1))`.
fn schedule_bound(attempt: u32, initial: Duration, max: Duration) -> Duration {
    initial.saturating_mul(1 << (attempt - 1).min(20)).min(max)
}

/// Asserts that each of `ids` was received exactly once with 200, with its
/// own id in the body, and that the receiver saw no other event.
fn each_delivered_once(receiver: &Flaky, ids: &[String]) {
    for id in ids {
        let tries = receiver.tries(id);
        let ok = tries.iter().filter(|t| t.status == 200).count();
        assert_eq!(ok, 1, "{id} was answered 200 {ok} times: {tries:?}");
        for t in &tries {
            assert_eq!(t.event_id.as_deref(), Some(id.as_str()), "{id}: {t:?}");
        }
    }
    let expected: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(receiver.ids(), expected, "the receiver saw other events");
}

/// Waits until `condition` holds, failing after `limit`.
async fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_flaky_receiver_answers_by_its_policy() {
    let receiver = Flaky::start(Policy::FailFirst {
        failures: 2,
        retry_after: Some(7),
    })
    .await;
    let client = reqwest::Client::new();
    let post = |id: &str| {
        client
            .post(receiver.url())
            .header("webhook-id", id)
            .header("webhook-attempt", "2")
            .body(format!(r#"{{"event_id": "{id}"}}"#))
            .send()
    };
    for expected in [503, 503, 200] {
        let response = post("a").await.unwrap();
        assert_eq!(response.status().as_u16(), expected);
        let retry_after = response.headers().get("retry-after");
        assert_eq!(
            retry_after.map(|v| v.to_str().unwrap()),
            (expected == 503).then_some("7")
        );
    }
    assert_eq!(post("b").await.unwrap().status().as_u16(), 503, "per id");
    receiver.set_policy(Policy::Down(400));
    assert_eq!(post("a").await.unwrap().status().as_u16(), 400);
    receiver.set_policy(Policy::Stall);
    let held = tokio::spawn(post("c"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!held.is_finished(), "a stalled request waits");
    receiver.heal();
    assert_eq!(held.await.unwrap().unwrap().status().as_u16(), 200);

    assert_eq!(statuses(&receiver.tries("a")), [503, 503, 200, 400]);
    assert!(receiver
        .tries("a")
        .iter()
        .all(|t| t.event_id.as_deref() == Some("a") && t.attempt == Some(2)));
    assert_eq!(receiver.ids_with_200(), ["a", "c"].map(String::from).into());
    assert_eq!(receiver.requests(), 6);
    assert_eq!(receiver.answered(503), 3);
}

/// 1,000 events, each answered 503 twice then 200: each arrives exactly
/// three times under its own `webhook-id`, numbered 1, 2, 3 in
/// `webhook-attempt`, every wait within the schedule's bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_twice_gets_every_event_three_times_within_the_schedule() {
    const EVENTS: usize = 1_000;
    let (initial, max) = (Duration::from_millis(50), Duration::from_millis(400));
    let receiver = Flaky::start(Policy::FailFirst {
        failures: 2,
        retry_after: None,
    })
    .await;
    let host = webhook_host(
        &receiver,
        "retry_initial_ms = 50\nretry_max_ms = 400\nmax_attempts = 8\nbreaker_threshold = 1000",
    )
    .await;
    let ids = ids("twice", EVENTS);
    for id in &ids {
        host.send(event(id)).await.expect("accepted");
    }
    let summaries = host.shutdown().await;

    for id in &ids {
        let tries = receiver.tries(id);
        assert_eq!(statuses(&tries), [503, 503, 200], "{id}");
        let attempts: Vec<Option<u32>> = tries.iter().map(|t| t.attempt).collect();
        assert_eq!(
            attempts,
            [Some(1), Some(2), Some(3)],
            "{id}: webhook-attempt"
        );
        for (n, gap) in gaps(&tries).into_iter().enumerate() {
            let bound = schedule_bound(n as u32 + 1, initial, max) + SCHEDULING_SLACK;
            assert!(gap <= bound, "{id}: wait {} {gap:?} > {bound:?}", n + 1);
        }
    }
    each_delivered_once(&receiver, &ids);
    assert_eq!(receiver.requests(), 3 * EVENTS);
    // First deliveries arrive in the order the events were accepted.
    let mut firsts: Vec<(Instant, &String)> = ids
        .iter()
        .map(|id| (receiver.tries(id)[0].at, id))
        .collect();
    firsts.sort();
    let order: Vec<&String> = firsts.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        order,
        ids.iter().collect::<Vec<_>>(),
        "first deliveries in order"
    );
    // Waiting retries hold nothing back: later events' first deliveries
    // arrive while earlier events wait for their retries.
    let last_first = firsts.last().unwrap().0;
    let overtaken = ids
        .iter()
        .filter(|id| receiver.tries(id)[1].at < last_first)
        .count();
    assert!(
        overtaken > 0,
        "no retry came before the last first delivery"
    );
    let stats = stats(&summaries, "webhook");
    let n = EVENTS as u64;
    assert_eq!(stats.handled, n);
    assert_eq!(stats.retried, 2 * n, "failed attempts scheduled again");
    assert_eq!(
        stats.failed(FailureClass::Returned),
        2 * n,
        "failed attempts"
    );
    assert_eq!(stats.failed_total(), 2 * n);
    assert_eq!(stats.dead_lettered, 0);
}

/// The same receiver asking for `Retry-After: 1`: the hook passes it on and
/// no retry comes sooner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_from_the_receiver_delays_every_retry() {
    const EVENTS: usize = 50;
    let hint = Duration::from_secs(1);
    let max = Duration::from_secs(5);
    let receiver = Flaky::start(Policy::FailFirst {
        failures: 2,
        retry_after: Some(1),
    })
    .await;
    let host = webhook_host(
        &receiver,
        "retry_initial_ms = 50\nretry_max_ms = 5000\nmax_attempts = 8\nbreaker_threshold = 1000",
    )
    .await;
    let ids = ids("hint", EVENTS);
    let mut reports = Vec::new();
    for id in &ids {
        reports.push(host.emit_with_report(event(id)).expect("accepted"));
    }
    for pending in reports {
        let report = pending.wait().await;
        let (_, first) = &report.outcomes[0];
        let failure = first.result.as_ref().expect_err("the first try fails");
        assert!(failure.retryable, "{failure}");
        match first.fate {
            Fate::Retrying { after } => assert!(
                (hint..=max).contains(&after),
                "{}: retry after {after:?}",
                report.event_id
            ),
            ref other => panic!("{}: {other:?}", report.event_id),
        }
    }
    let summaries = host.shutdown().await;

    for id in &ids {
        let tries = receiver.tries(id);
        assert_eq!(statuses(&tries), [503, 503, 200], "{id}");
        for gap in gaps(&tries) {
            assert!(
                gap >= hint - Duration::from_millis(50),
                "{id}: retried after {gap:?}"
            );
            assert!(gap <= max + SCHEDULING_SLACK, "{id}: retried after {gap:?}");
        }
    }
    each_delivered_once(&receiver, &ids);
    assert_eq!(stats(&summaries, "webhook").retried, 2 * EVENTS as u64);
}

/// `hookhost run` with the default retry and breaker settings, the
/// receiver down (503) for three seconds: it answers 200 to every event
/// exactly once, and the run's log shows the breaker opening and closing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_defaults_a_receiver_down_for_seconds_answers_200_to_every_event_once() {
    const EVENTS: usize = 100;
    let receiver = Flaky::start(Policy::Down(503)).await;
    let setup = CliSetup::new(&receiver, "");
    let ids = ids("outage", EVENTS);
    let run = {
        let mut command = setup.run(&["--in-memory"]);
        let input = input(&ids);
        tokio::task::spawn_blocking(move || common::run_with_input(&mut command, &input))
    };
    wait_for("the first try", Duration::from_secs(60), || {
        receiver.requests() > 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    receiver.heal();
    let output = run.await.unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("{EVENTS} events dispatched")),
        "{stdout}"
    );
    each_delivered_once(&receiver, &ids);
    // Down for 3 s, cooled down for 30: the breaker opened once, and the
    // first probe found the receiver back.
    for transition in ["circuit breaker opened", "circuit breaker closed"] {
        let lines = stderr.lines().filter(|l| l.contains(transition)).count();
        assert_eq!(lines, 1, "{transition}, logged {lines} times:\n{stderr}");
    }
}

/// The breaker opens after its threshold of failures in a row, holds the
/// plugin's events back while open (a probe now and then), closes on the
/// first success, and loses no event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_probes_and_closes_and_loses_no_event() {
    const EVENTS: usize = 50;
    let receiver = Flaky::start(Policy::Down(503)).await;
    let host = webhook_host(
        &receiver,
        "retry_initial_ms = 50\nretry_max_ms = 200\nmax_attempts = 100\n\
         breaker_threshold = 3\nbreaker_cooldown_ms = 300\nbreaker_max_cooldown_ms = 300",
    )
    .await;
    let ids = ids("breaker", EVENTS);
    for id in &ids {
        host.send(event(id)).await.expect("accepted");
    }
    wait_for("the breaker to open", Duration::from_secs(20), || {
        webhook_stats(&host).breaker_opened >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Without the breaker, 50 events retried every 200 ms at most would
    // have made hundreds of tries by now.
    let tries_while_down = receiver.requests();
    assert!(
        tries_while_down < 25,
        "{tries_while_down} tries while the breaker was open"
    );
    assert!(
        tries_while_down > 3,
        "the open breaker never probed: {tries_while_down} tries"
    );
    let open = webhook_stats(&host);
    assert_eq!(open.breaker_closed, 0, "{open:?}");
    assert_eq!(open.handled, 0);
    assert_eq!(host.dead_letters().count(None).await.unwrap(), 0);

    receiver.heal();
    let summaries = host.shutdown().await;
    each_delivered_once(&receiver, &ids);
    let stats = stats(&summaries, "webhook");
    assert!(stats.breaker_opened >= 1, "{stats:?}");
    assert!(stats.breaker_closed >= 1, "{stats:?}");
    assert_eq!(stats.handled, EVENTS as u64);
    assert_eq!(stats.dead_lettered, 0);
    assert_eq!(
        stats.failed_total(),
        receiver.answered(503) as u64,
        "only the tries made count as failed"
    );
}

/// A receiver answering 400: `hookhost run` puts every event in the dead
/// letters after one try; once the receiver is fixed, `hookhost dlq
/// replay` empties them and the receiver gets each event exactly once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_go_to_the_dead_letters_and_replay_delivers_each_once() {
    const EVENTS: usize = 50;
    let receiver = Flaky::start(Policy::Down(400)).await;
    let setup = CliSetup::new(&receiver, "");
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let ids = ids("refused", EVENTS);

    let output = setup
        .blocking(setup.run(&["--data-dir", &data_dir]), input(&ids))
        .await;
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for id in &ids {
        assert_eq!(statuses(&receiver.tries(id)), [400], "{id}: one try");
    }
    let entries = dead_letters(data.path()).await.list(None).await.unwrap();
    assert_eq!(entries.len(), EVENTS, "{entries:#?}");
    for entry in &entries {
        assert_eq!(entry.plugin, "webhook");
        assert_eq!(entry.class, "error");
        assert_eq!(entry.attempts, 1, "{entry:?}");
        assert!(entry.last_error.contains("400"), "{entry:?}");
        let event: serde_json::Value = serde_json::from_str(&entry.event_json).unwrap();
        assert_eq!(event["event_id"], entry.event_id.as_str());
    }
    let listed: BTreeSet<String> = entries.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(listed, ids.iter().cloned().collect());

    let list = setup
        .blocking(dlq(&["list", "--data-dir", &data_dir]), String::new())
        .await;
    let (table, errors) = texts(&list);
    assert!(list.status.success(), "{errors}");
    for id in &ids {
        assert!(table.contains(id.as_str()), "{id} not listed:\n{table}");
    }

    receiver.heal();
    let plugins = setup.plugins.path().to_str().unwrap();
    let config = setup.config.to_str().unwrap();
    let replay = setup
        .blocking(
            dlq(&[
                "replay",
                "--plugins",
                plugins,
                "--config",
                config,
                "--data-dir",
                &data_dir,
            ]),
            String::new(),
        )
        .await;
    let (stdout, stderr) = texts(&replay);
    assert!(replay.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        dead_letters(data.path()).await.count(None).await.unwrap(),
        0
    );
    for id in &ids {
        assert_eq!(statuses(&receiver.tries(id)), [400, 200], "{id}");
    }
    each_delivered_once(&receiver, &ids);
}

/// `on_full = "reject"`: with the receiver holding the first delivery, the
/// queue fills and `emit` fails naming the plugin; the refused event
/// reaches no one, every accepted one is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_rejects_naming_the_plugin() {
    let receiver = Flaky::start(Policy::Stall).await;
    let host = webhook_host(&receiver, "queue_capacity = 4\non_full = \"reject\"").await;
    let mut accepted = Vec::new();
    let (refused, error) = loop {
        let id = format!("reject-{:05}", accepted.len());
        match host.emit(event(&id)) {
            Ok(()) => accepted.push(id),
            Err(error) => break (id, error),
        }
        assert!(accepted.len() < 1_000, "a queue of 4 took 1,000 events");
    };
    assert!(accepted.len() >= 4, "refused after {}", accepted.len());
    match &error {
        EmitError::QueueFull { plugin, .. } => assert_eq!(plugin, "webhook"),
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("webhook"), "{error}");

    receiver.heal();
    host.shutdown().await;
    each_delivered_once(&receiver, &accepted);
    assert!(receiver.tries(&refused).is_empty());
}

/// `on_full = "wait"`: `emit` blocks while the queue is full and succeeds
/// once there is room; every event is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_makes_emit_wait_and_loses_nothing() {
    const EVENTS: usize = 50;
    let receiver = Flaky::start(Policy::Stall).await;
    let host = Arc::new(webhook_host(&receiver, "queue_capacity = 4\non_full = \"wait\"").await);
    let ids = ids("wait", EVENTS);
    let emitter = {
        let (host, ids) = (host.clone(), ids.clone());
        tokio::task::spawn_blocking(move || {
            ids.iter()
                .try_for_each(|id| host.emit(event(id)))
                .map_err(|err| err.to_string())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!emitter.is_finished(), "emit waits while the queue is full");
    receiver.heal();
    emitter
        .await
        .unwrap()
        .expect("every emit succeeds once there is room");
    let host = Arc::into_inner(host).expect("the emitter let go of the host");
    host.shutdown().await;
    each_delivered_once(&receiver, &ids);
}

/// `on_full = "drop_oldest"`: `emit` always succeeds; the oldest queued
/// events go to the dead letters with class `dropped`, the newest are
/// delivered, and every event is one or the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_the_oldest_into_the_dead_letters() {
    const EVENTS: usize = 30;
    const CAPACITY: usize = 4;
    let receiver = Flaky::start(Policy::Stall).await;
    let host = webhook_host(
        &receiver,
        &format!("queue_capacity = {CAPACITY}\non_full = \"drop_oldest\""),
    )
    .await;
    let ids = ids("drop", EVENTS);
    for id in &ids {
        host.emit(event(id)).expect("drop_oldest always accepts");
    }
    receiver.heal();
    let started = Instant::now();
    let dropped = loop {
        let dropped = host.dead_letters().list(None).await.unwrap();
        if receiver.ids_with_200().len() + dropped.len() >= EVENTS {
            break dropped;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} delivered, {} dropped of {EVENTS}",
            receiver.ids_with_200().len(),
            dropped.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let summaries = host.shutdown().await;

    assert!(!dropped.is_empty(), "nothing was dropped");
    for entry in &dropped {
        assert_eq!(
            (entry.plugin.as_str(), entry.class.as_str()),
            ("webhook", "dropped")
        );
    }
    let dropped_ids: BTreeSet<String> = dropped.iter().map(|e| e.event_id.clone()).collect();
    let delivered = receiver.ids_with_200();
    assert!(dropped_ids.is_disjoint(&delivered), "{dropped_ids:?}");
    assert_eq!(dropped_ids.len() + delivered.len(), EVENTS);
    assert_eq!(receiver.ids(), delivered, "a dropped event was tried");
    for id in &ids[EVENTS - CAPACITY..] {
        assert!(
            delivered.contains(id),
            "{id}, among the newest, was dropped"
        );
    }
    // Oldest first: the dead letters, in the order they were added, are in
    // sending order. (Which events are dropped depends on when the worker
    // took the first ones off the queue.)
    let position = |id: &str| ids.iter().position(|i| i == id).unwrap();
    let positions: Vec<usize> = dropped.iter().map(|e| position(&e.event_id)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "dropped in this order: {positions:?}"
    );
    assert_eq!(stats(&summaries, "webhook").dropped, dropped.len() as u64);
}

/// An event over `[engine] max_event_kib` is refused with its size and the
/// limit, by `emit` and `send`, with a data directory, and reaches no
/// plugin.
#[tokio::test]
async fn an_event_over_the_size_limit_is_refused_and_reaches_no_plugin() {
    let plugins = common::plugins_dir(&["noop", "noop-batch"]);
    let data = tempfile::tempdir().unwrap();
    let host = Host::builder()
        .plugins_dir(plugins.path())
        .config(common::config("[engine]\nmax_event_kib = 1\n"))
        .data_dir(data.path())
        .build()
        .await
        .expect("host builds");
    let big = Event::from_json(&format!(
        r#"{{"event_id": "big", "event_type": "ProfilingStarted", "metadata": {{"table": "t", "padding": "{}"}}}}"#,
        "p".repeat(2048)
    ))
    .unwrap();
    let error = host.emit(big.clone()).expect_err("refused");
    match &error {
        EmitError::TooLarge { bytes, limit, .. } => {
            assert!(*bytes > 2048, "{error}");
            assert_eq!(*limit, 1024);
            let message = error.to_string();
            assert!(message.contains(&bytes.to_string()), "{message}");
            assert!(message.contains("1024"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        host.send(big).await,
        Err(EmitError::TooLarge { .. })
    ));
    host.send(event("small"))
        .await
        .expect("a small event is accepted");
    let summaries = host.shutdown().await;
    for summary in &summaries {
        assert_eq!(
            summary.stats.total(),
            1,
            "{}: only the small event",
            summary.name
        );
        assert_eq!(summary.stats.handled, 1, "{}", summary.name);
    }
}

/// A retry waiting when the plugin's file is replaced goes to the new
/// version: the old one (`returns-error`, `RetryMe`) always fails
/// retryably, the new one (`noop`) handles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_pending_across_a_hot_reload_reaches_the_new_version() {
    let plugins = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let path = plugins.path().join("flaky.wasm");
    std::fs::copy(common::fixture("returns-error"), &path).unwrap();
    let host = Host::builder()
        .plugins_dir(plugins.path())
        .cache_dir(cache.path())
        .watch(true)
        .config(common::config(
            "[plugins.flaky]\nretry_initial_ms = 200\nretry_max_ms = 200\n\
             max_attempts = 100\nbreaker_threshold = 0\n",
        ))
        .build()
        .await
        .expect("host builds");
    assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());
    let retry_me =
        Event::from_json(r#"{"event_id": "reload-1", "event_type": "RetryMe", "metadata": {}}"#)
            .unwrap();
    let report = host.emit_with_report(retry_me).unwrap().wait().await;
    let (_, first) = &report.outcomes[0];
    assert!(
        first.result.as_ref().is_err_and(|f| f.retryable),
        "{first:?}"
    );
    assert!(matches!(first.fate, Fate::Retrying { .. }), "{first:?}");
    wait_for("a retry", Duration::from_secs(20), || {
        stats(&host.summaries(), "flaky").retried >= 1
    })
    .await;

    let noop = std::fs::read(common::fixture("noop")).unwrap();
    std::fs::write(&path, &noop).unwrap();
    wait_for("the swap", Duration::from_secs(20), || {
        host.reload_stats().swapped == 1
    })
    .await;
    wait_for("the retry to succeed", Duration::from_secs(20), || {
        stats(&host.summaries(), "flaky").handled == 1
    })
    .await;
    assert_eq!(host.dead_letters().count(None).await.unwrap(), 0);
    let summaries = host.shutdown().await;
    let summary = summaries.iter().find(|s| s.name == "flaky").unwrap();
    assert_eq!(summary.version, common::version_of(&noop));
    assert_eq!(summary.stats.handled, 1);
    assert!(summary.stats.failed(FailureClass::Returned) >= 1);
    assert_eq!(summary.stats.dead_lettered, 0);
}

/// `hookhost run --in-memory --drain-timeout 1` against a receiver that
/// never recovers: the run ends within a few seconds of its first try, and
/// the summary says the pending deliveries moved to the dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_the_drain_timeout_moves_pending_retries_to_the_dead_letters() {
    const EVENTS: usize = 20;
    let receiver = Flaky::start(Policy::Down(503)).await;
    let setup = CliSetup::new(&receiver, PATIENT);
    let ids = ids("drain-memory", EVENTS);
    let output = setup
        .blocking(
            setup.run(&["--in-memory", "--drain-timeout", "1"]),
            input(&ids),
        )
        .await;
    let ended = Instant::now();
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let first_try = first_try(&receiver);
    let draining = ended - first_try;
    assert!(
        (Duration::from_millis(800)..Duration::from_secs(8)).contains(&draining),
        "the run ended {draining:?} after the first try"
    );
    assert!(stderr.contains("no data directory"), "{stderr}");
    let summary = pending_line(&stdout, EVENTS);
    assert!(
        summary.ends_with(": moved to the dead letters"),
        "{summary}"
    );
    assert!(receiver.ids_with_200().is_empty());
}

/// The same with a data directory: the pending deliveries stay in the
/// write-ahead log, and the next start, with the receiver recovered,
/// delivers each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_data_dir_the_drain_timeout_keeps_pending_retries_for_the_next_start() {
    const EVENTS: usize = 20;
    let receiver = Flaky::start(Policy::Down(503)).await;
    let setup = CliSetup::new(&receiver, PATIENT);
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let ids = ids("drain-log", EVENTS);
    let output = setup
        .blocking(
            setup.run(&["--data-dir", &data_dir, "--drain-timeout", "1"]),
            input(&ids),
        )
        .await;
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let summary = pending_line(&stdout, EVENTS);
    assert!(
        summary.ends_with(": kept in the write-ahead log for the next start"),
        "{summary}"
    );
    assert!(receiver.ids_with_200().is_empty());

    receiver.heal();
    let output = setup
        .blocking(setup.run(&["--data-dir", &data_dir]), String::new())
        .await;
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("{EVENTS} events in flight recovered")),
        "{stderr}"
    );
    each_delivered_once(&receiver, &ids);
    assert_eq!(
        dead_letters(data.path()).await.count(None).await.unwrap(),
        0
    );
}

/// Retry settings for the drain tests: quick retries, enough attempts to
/// outlast the test, no breaker.
const PATIENT: &str = "retry_initial_ms = 100\nretry_max_ms = 200\nmax_attempts = 100\n\
                       breaker_threshold = 0";

/// A plugins folder holding the built-in `webhook` hook and a config file
/// pointing it at a receiver, for `hookhost` processes.
struct CliSetup {
    plugins: tempfile::TempDir,
    config: std::path::PathBuf,
    _config_dir: tempfile::TempDir,
}

impl CliSetup {
    fn new(receiver: &Flaky, limits: &str) -> CliSetup {
        let plugins = tempfile::tempdir().unwrap();
        std::fs::copy(
            common::builtin("webhook"),
            plugins.path().join("webhook.wasm"),
        )
        .unwrap();
        let config_dir = tempfile::tempdir().unwrap();
        let config = config_dir.path().join("hookhost.toml");
        std::fs::write(&config, receiver.webhook_config("webhook", limits)).unwrap();
        CliSetup {
            plugins,
            config,
            _config_dir: config_dir,
        }
    }

    /// `hookhost run` over this folder and config, with `extra` arguments.
    fn run(&self, extra: &[&str]) -> std::process::Command {
        let mut command = common::hookhost_command();
        command
            .env("RUST_LOG", "info")
            .arg("run")
            .arg("--plugins")
            .arg(self.plugins.path())
            .arg("--config")
            .arg(&self.config)
            .args(extra);
        command
    }

    /// Runs `command` with `stdin` to its end on a blocking thread, so the
    /// receiver keeps answering meanwhile.
    async fn blocking(&self, mut command: std::process::Command, stdin: String) -> Output {
        tokio::task::spawn_blocking(move || common::run_with_input(&mut command, &stdin))
            .await
            .expect("the process runs")
    }
}

/// `hookhost dlq <args>`.
fn dlq(args: &[&str]) -> std::process::Command {
    let mut command = common::hookhost_command();
    command.env("RUST_LOG", "warn").arg("dlq").args(args);
    command
}

/// The dead-letter store of data directory `dir`.
async fn dead_letters(dir: &Path) -> DeadLetters {
    DeadLetters::open(&dir.join("dead-letters.sqlite"))
        .await
        .expect("open the dead letters")
}

/// The line of the run's summary that says how many deliveries were still
/// pending after the drain timeout, which must be `pending`.
fn pending_line(stdout: &str, pending: usize) -> &str {
    stdout
        .lines()
        .find(|line| line.contains("deliveries still pending"))
        .filter(|line| line.starts_with(&format!("{pending} deliveries ")))
        .unwrap_or_else(|| panic!("no line says {pending} deliveries were pending:\n{stdout}"))
}

/// When the receiver got its first request.
fn first_try(receiver: &Flaky) -> Instant {
    receiver
        .all_tries()
        .values()
        .flatten()
        .map(|t| t.at)
        .min()
        .expect("the receiver got a request")
}

fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A worker whose queue just emptied lingers (10 ms), looking at the queue
/// every millisecond instead of asking to be woken, then sleeps until an
/// emitter wakes it. Events queued while it lingers, around the moment it
/// stops lingering, and after it sleeps are each delivered: none waits for
/// a wake-up that never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_queued_while_a_worker_lingers_or_sleeps_are_each_delivered() {
    let dir = common::plugins_dir(&["counts"]);
    let host = common::host(dir.path(), common::config("")).await;
    // Milliseconds after the previous event was handled.
    let gaps = [0, 0, 1, 2, 5, 8, 9, 10, 11, 12, 15, 30, 0, 50, 3];
    for (seq, gap) in gaps.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(*gap)).await;
        let pending = host
            .emit_with_report(common::event(seq as u64))
            .expect("accepted");
        let report = tokio::time::timeout(Duration::from_secs(10), pending.wait())
            .await
            .unwrap_or_else(|_| panic!("event {seq} (after {gap} ms) was never delivered"));
        assert!(
            report
                .outcomes
                .iter()
                .all(|(_, outcome)| outcome.result.is_ok()),
            "{report:?}"
        );
    }
    let summaries = host.shutdown().await;
    let stats = common::final_stats(&summaries, "counts");
    assert_eq!(stats.handled, gaps.len() as u64);
}
