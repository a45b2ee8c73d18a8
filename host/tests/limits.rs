//! One test per misbehaving fixture: each failure is stopped, classified
//! with a clear message, and the next event gets a working instance again.

mod common;

use hookhost::{Failure, FailureClass, Host};

/// Loads fixture `name` alone with `config` and returns its outcome for two
/// events, plus the number of instances it took.
async fn two_outcomes(name: &str, config: &str) -> (Failure, Failure, u64) {
    let dir = common::plugins_dir(&[name]);
    let host: Host = common::host(dir.path(), common::config(config)).await;
    let mut failures = Vec::new();
    for seq in 1..=2 {
        let report = host
            .emit_with_report(common::event(seq))
            .unwrap()
            .wait()
            .await;
        let (plugin, outcome) = &report.outcomes[0];
        assert_eq!(plugin, name);
        failures.push(outcome.result.clone().expect_err("the fixture fails"));
    }
    let summaries = host.shutdown().await;
    let second = failures.pop().unwrap();
    (
        failures.pop().unwrap(),
        second,
        summaries[0].stats.instantiations,
    )
}

#[tokio::test]
async fn panic_is_a_trap_and_the_instance_is_replaced() {
    let (first, second, instances) = two_outcomes("panics", "").await;
    assert_eq!(first.class, FailureClass::Trap);
    assert!(first.message.contains("unreachable"), "{first}");
    assert!(!first.retryable);
    assert_eq!(second.class, FailureClass::Trap);
    assert_eq!(instances, 2, "fresh instance after the trap");
}

#[tokio::test]
async fn infinite_loop_runs_out_of_fuel() {
    let (first, _, _) = two_outcomes("infinite-loop", "[defaults]\nfuel = 1_000_000").await;
    assert_eq!(first.class, FailureClass::OutOfFuel);
    assert_eq!(first.message, "ran out of fuel (1000000 units per event)");
}

#[tokio::test]
async fn infinite_loop_with_unlimited_fuel_times_out() {
    let config = "[defaults]\nfuel = 9_000_000_000_000_000_000\ntimeout_ms = 50";
    let started = std::time::Instant::now();
    let (first, _, _) = two_outcomes("infinite-loop", config).await;
    assert_eq!(first.class, FailureClass::Timeout);
    assert!(first.retryable);
    assert!(
        started.elapsed().as_secs() < 5,
        "two 50 ms timeouts took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn slow_plugin_times_out() {
    let config = "[defaults]\nfuel = 9_000_000_000_000_000_000\ntimeout_ms = 20";
    let (first, _, _) = two_outcomes("slow", config).await;
    assert_eq!(first.class, FailureClass::Timeout);
    assert_eq!(first.message, "timed out after 20 ms");
}

#[tokio::test]
async fn unbounded_allocation_hits_the_memory_cap() {
    let (first, _, instances) = two_outcomes("oom", "[defaults]\nmemory_mib = 8").await;
    assert_eq!(first.class, FailureClass::OutOfMemory);
    assert!(
        first
            .message
            .starts_with("memory cap of 8388608 bytes exceeded"),
        "{first}"
    );
    assert_eq!(instances, 2);
}

#[tokio::test]
async fn unbounded_recursion_overflows_the_stack() {
    let (first, _, _) = two_outcomes("stack-overflow", "").await;
    assert_eq!(first.class, FailureClass::Trap);
    assert!(first.message.contains("stack overflow"), "{first}");
}

#[tokio::test]
async fn returned_error_keeps_the_instance() {
    let (first, _, instances) = two_outcomes("returns-error", "").await;
    assert_eq!(first.class, FailureClass::Returned);
    assert!(!first.retryable);
    assert_eq!(instances, 1, "a returned error is not a trap");
}

#[tokio::test]
async fn retryable_error_says_so() {
    let dir = common::plugins_dir(&["returns-error"]);
    let host = common::host(dir.path(), Default::default()).await;
    let event = hookhost::Event::from_json(r#"{"event_type": "RetryMe", "metadata": {}}"#).unwrap();
    let report = host.emit_with_report(event).unwrap().wait().await;
    let failure = report.outcomes[0].1.result.clone().unwrap_err();
    assert_eq!(
        (failure.class, failure.retryable),
        (FailureClass::Returned, true)
    );
}

#[tokio::test]
async fn a_plugin_blocked_in_a_host_call_is_stopped_at_its_timeout() {
    let started = std::time::Instant::now();
    let (first, second, instances) =
        two_outcomes("blocks-in-host-call", "[defaults]\ntimeout_ms = 100").await;
    assert_eq!(first.class, FailureClass::Timeout);
    assert_eq!(
        first.message,
        "timed out after 100 ms while waiting in a host call"
    );
    assert_eq!(second.class, FailureClass::Timeout);
    assert_eq!(instances, 2, "the cancelled instance is replaced");
    assert!(
        started.elapsed().as_secs() < 5,
        "took {:?}",
        started.elapsed()
    );
}
