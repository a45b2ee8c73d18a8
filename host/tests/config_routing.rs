//! The routing keys of the config file (`events`, `exclude_events`,
//! `min_severity`, `require_severity`, `tables`, `columns`, `rate_limit`,
//! the alert hygiene keys `dedup_key`, `dedup_window`,
//! `renotify_on_change`, `group_by`, `group_wait`, `group_interval`, and
//! `[hooks] enabled`): read from a file per plugin, built into each
//! plugin's route filter, limits and hygiene, and refused with the file,
//! line, column and accepted values when malformed.

use std::path::Path;
use std::time::Duration;

use hookhost::routing::dedup::DedupKey;
use hookhost::routing::RateLimit;
use hookhost::{Config, Event, Severity};

/// `Config::parse` of `toml` as `test.toml`, the error as text.
fn parse(toml: &str) -> Result<Config, String> {
    Config::parse(toml, Path::new("test.toml")).map_err(|e| e.to_string())
}

fn event(event_type: &str, metadata: &str) -> Event {
    Event::from_json(&format!(
        r#"{{"event_type": "{event_type}", "timestamp": "2025-01-15T10:30:00", "metadata": {metadata}}}"#
    ))
    .unwrap()
}

fn drift(table: &str, severity: &str) -> Event {
    event(
        "DataDriftDetected",
        &format!(
            r#"{{"table": "{table}", "column": "amount", "metric": "mean", "drift_severity": "{severity}"}}"#
        ),
    )
}

/// The tiered routing of the issue: critical to a pager, high and above to
/// Slack for some tables, everything but profiling chatter to SQL.
const TIERED: &str = r#"
[hooks]
enabled = true

[plugins.pager]
min_severity = "critical"
require_severity = true
rate_limit = "5/min"

[plugins.slack]
events = ["DataDriftDetected", "schema_*", "anomaly_detected"]
min_severity = "high"
tables = ["orders", "analytics.*"]
rate_limit = "1/second"

[plugins.sql]
exclude_events = ["Profiling*"]

[plugins.columns]
columns = ["*_id"]
rate_limit = "1000/hour"
"#;

#[test]
fn every_routing_key_is_read_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookhost.toml");
    std::fs::write(&path, TIERED).unwrap();
    let config = Config::from_file(&path).unwrap();

    let slack = &config.plugins["slack"];
    assert_eq!(
        slack.events,
        ["DataDriftDetected", "schema_*", "anomaly_detected"]
    );
    assert_eq!(slack.min_severity, Some(Severity::High));
    assert_eq!(slack.tables, ["orders", "analytics.*"]);
    assert_eq!(config.plugins["pager"].require_severity, Some(true));
    assert_eq!(config.plugins["sql"].exclude_events, ["Profiling*"]);
    assert_eq!(config.plugins["columns"].columns, ["*_id"]);

    let rate = |name: &str| config.limits_for(name).rate_limit;
    assert_eq!(rate("pager"), RateLimit::new(5, Duration::from_secs(60)));
    assert_eq!(rate("slack"), RateLimit::new(1, Duration::from_secs(1)));
    assert_eq!(
        rate("columns"),
        RateLimit::new(1000, Duration::from_secs(3600))
    );
    assert_eq!(rate("sql"), None);
    assert_eq!(rate("slack").unwrap().to_string(), "1/s");
    for name in ["pager", "slack", "sql", "columns"] {
        assert!(config.is_enabled(name), "{name}");
        assert!(!config.route_filter(name).is_pass_all(), "{name}");
    }
    assert!(config.route_filter("email").is_pass_all());
}

#[test]
fn the_tiered_filters_route_a_profiler_run() {
    let config = parse(TIERED).unwrap();
    let pass = |plugin: &str, event: &Event| config.route_filter(plugin).check(event).is_ok();

    let critical = drift("orders", "breaking");
    let high = drift("analytics.daily", "high");
    let low = drift("orders", "low");
    let other_table = drift("staging.orders", "critical");
    let started = event(
        "profiling_started",
        r#"{"table": "orders", "run_id": "r1"}"#,
    );
    let column_added = event(
        "schema_change_detected",
        r#"{"table": "orders", "change_type": "column_added", "column": "customer_id", "change_severity": "high"}"#,
    );

    assert!(pass("pager", &critical));
    assert!(pass("pager", &other_table));
    assert!(!pass("pager", &high));
    assert!(!pass("pager", &started));

    assert!(pass("slack", &critical));
    assert!(pass("slack", &high));
    assert!(pass("slack", &column_added));
    assert!(!pass("slack", &low));
    assert!(!pass("slack", &other_table));
    assert!(!pass("slack", &started));

    for event in [&critical, &high, &low, &other_table, &column_added] {
        assert!(pass("sql", event));
    }
    assert!(!pass("sql", &started));

    assert!(pass("columns", &column_added));
    assert!(!pass("columns", &critical));

    let why = |plugin: &str, event: &Event| {
        config
            .route_filter(plugin)
            .check(event)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        why("pager", &high),
        "severity high is below min_severity = critical"
    );
    assert_eq!(
        why("pager", &started),
        "no severity and require_severity = true"
    );
    assert_eq!(
        why("slack", &other_table),
        r#"table staging.orders is not in tables = ["orders", "analytics.*"]"#
    );
    assert_eq!(
        why("slack", &started),
        r#"event type profiling_started is not in events = ["DataDriftDetected", "schema_*", "anomaly_detected"]"#
    );
    assert_eq!(
        why("sql", &started),
        r#"event type profiling_started matches exclude_events = ["Profiling*"]"#
    );
    assert_eq!(
        why("columns", &critical),
        r#"column amount is not in columns = ["*_id"]"#
    );
}

#[test]
fn bad_routing_values_are_refused_with_line_and_column() {
    let cases: &[(&str, &str)] = &[
        (
            "[plugins.a]\nmin_severity = \"severe\"\n",
            r#"test.toml:2:16: min_severity = "severe" is not a severity: "info", "low", "medium", "high" or "critical""#,
        ),
        (
            "[plugins.a]\nmin_severity = 3\n",
            r#"test.toml:2:16: invalid type: integer `3`, expected min_severity as one of "info", "low", "medium", "high" or "critical""#,
        ),
        (
            "[plugins.a]\nrate_limit = \"20/fortnight\"\n",
            r#"test.toml:2:14: rate_limit = "20/fortnight" has an unknown unit: N/s, N/min or N/h (also N/sec, N/second, N/minute, N/hour), N from 1 to 1000000"#,
        ),
        (
            "[plugins.a]\nfuel = 5\nrate_limit = \"0/min\"\n",
            r#"test.toml:3:14: rate_limit = "0/min" is out of range: N/s, N/min or N/h"#,
        ),
        (
            "[plugins.a]\nrate_limit = \"twenty per minute\"\n",
            r#"test.toml:2:14: rate_limit = "twenty per minute" is not a rate: N/s"#,
        ),
        (
            "[plugins.a]\nrate_limit = 20\n",
            r#"test.toml:2:14: invalid type: integer `20`, expected rate_limit as a string: N/s, N/min or N/h"#,
        ),
        (
            "[plugins.a]\nevents = \"DataDriftDetected\"\n",
            "test.toml:2:10: invalid type: string \"DataDriftDetected\", expected a sequence",
        ),
        (
            "[plugins.a]\ntables = [\"orders\", \"\"]\n",
            "test.toml:2:10: tables[1] is empty",
        ),
        (
            "[plugins.a]\nrequire_severity = \"yes\"\n",
            "test.toml:2:20: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "[hooks]\nenable = false\n",
            "test.toml:2:1: unknown field `enable`, expected `enabled`",
        ),
        (
            "[defaults]\ntables = [\"orders\"]\n",
            "test.toml:2:1: unknown field `tables`",
        ),
    ];
    for (toml, expected) in cases {
        let err = parse(toml).unwrap_err();
        assert!(
            err.starts_with(expected),
            "{toml}\n  got: {err}\n want: {expected}"
        );
    }
}

#[test]
fn bad_values_in_a_file_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookhost.toml");
    std::fs::write(&path, "[plugins.slack]\n\nmin_severity = \"urgent\"\n").unwrap();
    let err = Config::from_file(&path).unwrap_err().to_string();
    let expected = format!(
        "{}:3:16: min_severity = \"urgent\" is not a severity",
        path.display()
    );
    assert!(err.starts_with(&expected), "{err}");
}

#[test]
fn hooks_enabled_false_leaves_every_plugin_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookhost.toml");
    std::fs::write(
        &path,
        "[hooks]\nenabled = false\n\n[plugins.slack]\nenabled = true\n\n[plugins.sql]\nfuel = 5\n",
    )
    .unwrap();
    let config = Config::from_file(&path).unwrap();
    assert!(!config.hooks_enabled());
    for name in ["slack", "sql", "not_configured"] {
        assert!(!config.is_enabled(name), "{name}");
    }

    // Without the switch, or with it on, each plugin's own key decides.
    for hooks in ["", "[hooks]\n", "[hooks]\nenabled = true\n"] {
        let config = parse(&format!("{hooks}[plugins.slack]\nenabled = false\n")).unwrap();
        assert!(config.hooks_enabled(), "{hooks:?}");
        assert!(!config.is_enabled("slack"), "{hooks:?}");
        assert!(config.is_enabled("sql"), "{hooks:?}");
    }
}

#[test]
fn every_hygiene_key_is_read_from_a_file_and_left_out_ones_take_their_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookhost.toml");
    std::fs::write(
        &path,
        r#"
[plugins.slack]
dedup_key = "{{ event_type }}:{{ metadata.table }}:{{ metadata.column }}:{{ metadata.metric }}"
dedup_window = "2h"
renotify_on_change = true

[plugins.email]
group_by = ["metadata.table", "event_type"]
group_wait = "10s"
group_interval = "15m"

[plugins.pager]
dedup_key = "{{ event_type }}"

[plugins.digest]
group_by = ["severity"]
"#,
    )
    .unwrap();
    let config = Config::from_file(&path).unwrap();
    let event = drift("orders", "high");

    let slack = config.hygiene_for("slack");
    let dedup = slack.dedup.as_ref().expect("slack deduplicates");
    assert_eq!(
        (dedup.window, dedup.renotify_on_change),
        (Duration::from_secs(7200), true)
    );
    assert_eq!(
        dedup.key(&event).unwrap(),
        DedupKey::of("DataDriftDetected:orders:amount:mean")
    );
    assert!(slack.group.is_none());

    let email = config.hygiene_for("email");
    let group = email.group.as_ref().expect("email groups");
    assert_eq!(group.paths(), ["metadata.table", "event_type"]);
    assert_eq!(
        (group.wait, group.interval),
        (Duration::from_secs(10), Duration::from_secs(900))
    );
    assert_eq!(group.key(&event), ["orders", "DataDriftDetected"]);
    assert!(email.dedup.is_none());

    // Defaults: a one-hour window without renotifying; a 30 s wait and a
    // 5 min interval.
    let pager = config.hygiene_for("pager");
    let dedup = pager.dedup.as_ref().expect("pager deduplicates");
    assert_eq!(
        (dedup.window, dedup.renotify_on_change),
        (Duration::from_secs(3600), false)
    );
    let digest = config.hygiene_for("digest");
    let group = digest.group.as_ref().expect("digest groups");
    assert_eq!(
        (group.wait, group.interval),
        (Duration::from_secs(30), Duration::from_secs(300))
    );
    assert_eq!(group.key(&event), ["high"]);

    let none = config.hygiene_for("sql");
    assert!(none.dedup.is_none() && none.group.is_none());
}

#[test]
fn bad_hygiene_keys_are_refused_with_the_file_the_line_and_the_key() {
    // (file text, line at fault, what the message names)
    let cases: &[(&str, usize, &[&str])] = &[
        (
            "[plugins.a]\nfuel = 5\ndedup_key = \"{{ metadata.table \"\n",
            3,
            &["dedup_key", "template"],
        ),
        (
            "[plugins.a]\ndedup_key = \"{{ event_type }}\"\ndedup_window = \"1x\"\n",
            3,
            &["dedup_window", "\"1x\""],
        ),
        (
            "[plugins.a]\ndedup_key = \"{{ event_type }}\"\n\ndedup_window = \"0s\"\n",
            4,
            &["dedup_window", "out of range"],
        ),
        (
            "[plugins.a]\ngroup_by = [\"metadata.table\", \"table\"]\n",
            2,
            &["group_by", "\"table\"", "metadata.<key>"],
        ),
        (
            "[plugins.a]\nfuel = 5\ndedup_window = \"10m\"\n",
            3,
            &["dedup_window", "dedup_key"],
        ),
        (
            "[plugins.a]\nrenotify_on_change = true\n",
            2,
            &["renotify_on_change", "dedup_key"],
        ),
        (
            "[plugins.a]\n\ngroup_wait = \"10s\"\n",
            3,
            &["group_wait", "group_by"],
        ),
        (
            "[plugins.a]\ngroup_by = [\"metadata.table\"]\ngroup_interval = \"5 fortnights\"\n",
            3,
            &["group_interval"],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookhost.toml");
    for (toml, line, named) in cases {
        std::fs::write(&path, toml).unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        let place = format!("{}:{line}:", path.display());
        assert!(
            err.starts_with(&place),
            "{toml}\n  got: {err}\n want: {place}..."
        );
        for name in *named {
            assert!(err.contains(name), "{toml}\n  got: {err}\n want: {name}");
        }
    }
}
