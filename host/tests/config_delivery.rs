//! The reliable-delivery keys of the config file (`max_attempts`,
//! `retry_initial_ms`, `retry_max_ms`, `breaker_threshold`,
//! `breaker_cooldown_ms`, `breaker_max_cooldown_ms`, `on_full`): read from a
//! file in `[defaults]` and per plugin, resolved into `Limits`, and refused
//! with the file, line, column and allowed values when out of range.

mod common;

use std::path::Path;
use std::time::Duration;

use common::hookhost_command;
use hookhost::config::OnFull;
use hookhost::Config;

/// `Config::parse` of `toml` as `test.toml`, the error as text.
fn parse(toml: &str) -> Result<Config, String> {
    Config::parse(toml, Path::new("test.toml")).map_err(|e| e.to_string())
}

#[test]
fn every_delivery_key_is_read_from_a_file_and_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookhost.toml");
    std::fs::write(
        &path,
        r#"
[defaults]
max_attempts = 12
retry_initial_ms = 500
retry_max_ms = 120_000
breaker_threshold = 20
breaker_cooldown_ms = 10_000
breaker_max_cooldown_ms = 1_200_000
on_full = "wait"

[plugins.webhook]
max_attempts = 8
retry_initial_ms = 5_000
retry_max_ms = 36_000_000
breaker_threshold = 0
breaker_cooldown_ms = 60_000
breaker_max_cooldown_ms = 3_600_000
on_full = "drop_oldest"

[plugins.slack]
on_full = "reject"
"#,
    )
    .unwrap();
    let config = Config::from_file(&path).unwrap();

    let webhook = config.limits_for("webhook");
    assert_eq!(webhook.max_attempts, 8);
    assert_eq!(webhook.retry_initial, Duration::from_secs(5));
    assert_eq!(webhook.retry_max, Duration::from_secs(10 * 3600));
    assert_eq!(webhook.breaker_threshold, 0);
    assert_eq!(webhook.breaker_cooldown, Duration::from_secs(60));
    assert_eq!(webhook.breaker_max_cooldown, Duration::from_secs(3600));
    assert_eq!(webhook.on_full, OnFull::DropOldest);

    // A plugin's section overrides only what it names; the rest comes from
    // `[defaults]`.
    let slack = config.limits_for("slack");
    assert_eq!(slack.on_full, OnFull::Reject);
    assert_eq!(slack.max_attempts, 12);
    assert_eq!(slack.retry_initial, Duration::from_millis(500));
    assert_eq!(slack.retry_max, Duration::from_secs(120));
    assert_eq!(slack.breaker_threshold, 20);
    assert_eq!(slack.breaker_cooldown, Duration::from_secs(10));
    assert_eq!(slack.breaker_max_cooldown, Duration::from_secs(1200));

    // A plugin without a section gets `[defaults]` whole.
    let other = config.limits_for("other");
    assert_eq!(other.on_full, OnFull::Wait);
    assert_eq!(other.max_attempts, 12);
}

#[test]
fn without_the_keys_the_documented_defaults_apply() {
    let limits = parse("[plugins.a]\nenabled = true\n")
        .unwrap()
        .limits_for("a");
    assert_eq!(limits.max_attempts, 8);
    assert_eq!(limits.retry_initial, Duration::from_secs(1));
    assert_eq!(limits.retry_max, Duration::from_secs(5 * 60));
    assert_eq!(limits.breaker_threshold, 5);
    assert_eq!(limits.breaker_cooldown, Duration::from_secs(30));
    assert_eq!(limits.breaker_max_cooldown, Duration::from_secs(10 * 60));
    assert_eq!(limits.on_full, OnFull::Reject);
}

#[test]
fn a_maximum_below_its_start_is_taken_as_the_start() {
    let limits = parse(
        "[defaults]\nretry_max_ms = 1_000\nbreaker_max_cooldown_ms = 1_000\n\
         [plugins.a]\nretry_initial_ms = 30_000\nbreaker_cooldown_ms = 90_000\n",
    )
    .unwrap()
    .limits_for("a");
    assert_eq!(limits.retry_max, Duration::from_secs(30));
    assert_eq!(limits.breaker_max_cooldown, Duration::from_secs(90));
}

#[test]
fn delivery_values_out_of_range_name_file_line_and_range() {
    // (config text, expected start of the error)
    let cases = [
        (
            "[defaults]\nmax_attempts = 0\n",
            "test.toml:2:16: max_attempts = 0 is out of range: 1 to 100 attempts",
        ),
        (
            "[plugins.a]\n\nmax_attempts = 101\n",
            "test.toml:3:16: max_attempts = 101 is out of range: 1 to 100 attempts",
        ),
        (
            "[defaults]\nmax_attempts = 4_294_967_297\n",
            "test.toml:2:16: max_attempts = 4294967297 is out of range: 1 to 100 attempts",
        ),
        (
            "[defaults]\nretry_initial_ms = 0\n",
            "test.toml:2:20: retry_initial_ms = 0 is out of range: 1 to 3600000 ms",
        ),
        (
            "[plugins.a]\nretry_initial_ms = 3_600_001\n",
            "test.toml:2:20: retry_initial_ms = 3600001 is out of range: 1 to 3600000 ms",
        ),
        (
            "[defaults]\nretry_max_ms = -1\n",
            "test.toml:2:16: retry_max_ms = -1 is out of range: 1 to 86400000 ms",
        ),
        (
            "[plugins.a]\nretry_max_ms = 86_400_001\n",
            "test.toml:2:16: retry_max_ms = 86400001 is out of range: 1 to 86400000 ms",
        ),
        (
            "[defaults]\nbreaker_threshold = 10_001\n",
            "test.toml:2:21: breaker_threshold = 10001 is out of range: 0 to 10000 failures",
        ),
        (
            "[plugins.a]\nbreaker_threshold = -1\n",
            "test.toml:2:21: breaker_threshold = -1 is out of range: 0 to 10000 failures",
        ),
        (
            "[defaults]\nbreaker_cooldown_ms = 0\n",
            "test.toml:2:23: breaker_cooldown_ms = 0 is out of range: 1 to 86400000 ms",
        ),
        (
            "[plugins.a]\nbreaker_max_cooldown_ms = 86_400_001\n",
            "test.toml:2:27: breaker_max_cooldown_ms = 86400001 is out of range: 1 to 86400000 ms",
        ),
        (
            "[plugins.a]\nmax_attempts = 2.5\n",
            "test.toml:2:16: invalid type: floating point `2.5`, expected max_attempts as a whole number from 1 to 100 attempts",
        ),
        (
            "[defaults]\nretry_max_ms = \"5m\"\n",
            "test.toml:2:16: invalid type: a string, expected retry_max_ms as a whole number from 1 to 86400000 ms",
        ),
    ];
    for (toml, expected) in cases {
        let err = parse(toml).expect_err(toml);
        assert!(err.starts_with(expected), "{toml:?}:\n{err}\n{expected}");
    }
    // The edges of each range are accepted.
    let low = parse(
        "[defaults]\nmax_attempts = 1\nretry_initial_ms = 1\nretry_max_ms = 1\n\
         breaker_threshold = 0\nbreaker_cooldown_ms = 1\nbreaker_max_cooldown_ms = 1\n",
    )
    .unwrap()
    .limits_for("any");
    assert_eq!(low.max_attempts, 1);
    assert_eq!(low.retry_initial, Duration::from_millis(1));
    assert_eq!(low.retry_max, Duration::from_millis(1));
    assert_eq!(low.breaker_threshold, 0);
    assert_eq!(low.breaker_cooldown, Duration::from_millis(1));
    assert_eq!(low.breaker_max_cooldown, Duration::from_millis(1));
    let high = parse(
        "[defaults]\nmax_attempts = 100\nretry_initial_ms = 3_600_000\n\
         retry_max_ms = 86_400_000\nbreaker_threshold = 10_000\n\
         breaker_cooldown_ms = 86_400_000\nbreaker_max_cooldown_ms = 86_400_000\n",
    )
    .unwrap()
    .limits_for("any");
    assert_eq!(high.max_attempts, 100);
    assert_eq!(high.retry_initial, Duration::from_secs(3600));
    assert_eq!(high.retry_max, Duration::from_secs(86_400));
    assert_eq!(high.breaker_threshold, 10_000);
    assert_eq!(high.breaker_cooldown, Duration::from_secs(86_400));
    assert_eq!(high.breaker_max_cooldown, Duration::from_secs(86_400));
}

#[test]
fn an_unknown_on_full_is_refused_naming_the_three_policies() {
    let allowed = r#""reject", "wait" or "drop_oldest""#;
    let cases = [
        (
            "[defaults]\non_full = \"fifo\"\n".to_owned(),
            format!(r#"test.toml:2:11: on_full = "fifo" is not a policy: {allowed}"#),
        ),
        (
            // A hyphen for the underscore.
            "[plugins.a]\nenabled = true\non_full = \"drop-oldest\"\n".to_owned(),
            format!(r#"test.toml:3:11: on_full = "drop-oldest" is not a policy: {allowed}"#),
        ),
        (
            "[plugins.a]\non_full = \"Reject\"\n".to_owned(),
            format!(r#"test.toml:2:11: on_full = "Reject" is not a policy: {allowed}"#),
        ),
        (
            // A long value is not quoted back.
            format!("[plugins.a]\non_full = \"{}\"\n", "x".repeat(10_000)),
            format!("test.toml:2:11: on_full is not a policy: {allowed}"),
        ),
        (
            "[plugins.a]\non_full = 1\n".to_owned(),
            format!("test.toml:2:11: invalid type: integer `1`, expected on_full as one of {allowed}"),
        ),
        (
            "[plugins.a]\non_full = true\n".to_owned(),
            format!("test.toml:2:11: invalid type: boolean `true`, expected on_full as one of {allowed}"),
        ),
    ];
    for (toml, expected) in cases {
        let err = parse(&toml).expect_err(&toml);
        assert!(err.starts_with(&expected), "{err}\n{expected}");
        assert!(err.len() < 200, "the error stays short: {err}");
    }
}

#[test]
fn hookhost_run_refuses_an_unknown_on_full() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookhost.toml");
    std::fs::write(&config, "[plugins.logging]\non_full = \"block\"\n").unwrap();
    let out = common::run_with_input(
        hookhost_command()
            .args(["run", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn"),
        "",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            r#"hookhost.toml:2:11: on_full = "block" is not a policy: "reject", "wait" or "drop_oldest""#
        ),
        "{stderr}"
    );
}
