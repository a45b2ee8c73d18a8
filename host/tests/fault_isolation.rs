//! Every misbehaving fixture loaded together with a well-behaved one: 10,000
//! events later the good plugin has handled all of them in order, the host
//! still serves, and each bad plugin's failures are counted under its class.

mod common;

use hookhost::FailureClass;

const EVENTS: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_plugins_do_not_harm_the_others() {
    let dir = common::plugins_dir(&[
        "counts",
        "panics",
        "infinite-loop",
        "oom",
        "stack-overflow",
        "returns-error",
        "slow",
    ]);
    // Small limits keep 10,000 failures per plugin quick: the loop burns
    // 200k fuel per event, the slow plugin gets 2 ms and fuel to spare.
    let config = common::config(
        r#"
        [plugins.infinite-loop]
        fuel = 200_000
        [plugins.oom]
        memory_mib = 4
        [plugins.slow]
        timeout_ms = 2
        fuel = 9_000_000_000_000_000_000
        "#,
    );
    let host = common::host(dir.path(), config).await;

    for seq in 1..=EVENTS {
        host.send(common::event(seq)).await.expect("accepted");
    }
    // Still serving: one more event, and its report.
    let report = host
        .emit_with_report(common::event(EVENTS + 1))
        .expect("accepted")
        .wait()
        .await;
    let counts = &report
        .outcomes
        .iter()
        .find(|(name, _)| name == "counts")
        .unwrap()
        .1;
    assert_eq!(counts.result, Ok(()));

    let summaries = host.shutdown().await;
    let stats = |name: &str| common::final_stats(&summaries, name);
    let total = EVENTS + 1;
    let counts = stats("counts");
    assert_eq!((counts.handled, counts.failed_total()), (total, 0));
    assert_eq!(counts.instantiations, 1, "a healthy instance is reused");

    for (name, class) in [
        ("panics", FailureClass::Trap),
        ("infinite-loop", FailureClass::OutOfFuel),
        ("oom", FailureClass::OutOfMemory),
        ("stack-overflow", FailureClass::Trap),
        ("returns-error", FailureClass::Returned),
        ("slow", FailureClass::Timeout),
    ] {
        let s = stats(name);
        assert_eq!(s.handled, 0, "{name} handled nothing");
        assert_eq!(
            s.failed(class),
            total,
            "{name}: every event failed as {class}"
        );
        assert_eq!(s.total(), total, "{name}: no event lost");
    }
    assert_eq!(
        stats("returns-error").instantiations,
        1,
        "a returned error keeps the instance"
    );
    assert_eq!(
        stats("panics").instantiations,
        total,
        "a trap discards the instance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_plugin_does_not_delay_the_others() {
    let dir = common::plugins_dir(&["counts", "slow"]);
    let config =
        common::config("[plugins.slow]\ntimeout_ms = 500\nfuel = 9_000_000_000_000_000_000\n");
    let host = common::host(dir.path(), config).await;
    for seq in 1..=20 {
        host.emit(common::event(seq)).expect("accepted");
    }
    let started = std::time::Instant::now();
    let stats = |name: &str| {
        host.summaries()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap()
            .stats
    };
    while stats("counts").handled < 20 {
        assert!(
            started.elapsed().as_secs() < 5,
            "counts is stuck behind slow"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(
        stats("slow").total() <= 2,
        "counts finished all 20 events while slow was still on its first ones"
    );
    let summaries = host.shutdown().await;
    assert!(
        summaries.iter().all(|s| s.stats.total() == 20),
        "shutdown drained every event"
    );
}
