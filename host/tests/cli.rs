//! The `hookhost` binary: run, emit and check, as a user would call them.

mod common;

use std::process::Output;

use common::{hookhost_command as command, run_with_input};

fn hookhost(args: &[&str], stdin: &str) -> Output {
    run_with_input(command().args(args).env("RUST_LOG", "warn"), stdin)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn run_skips_a_malformed_line_by_number_and_summarises() {
    let dir = common::plugins_dir(&["counts", "panics"]);
    let input = [
        r#"{"event_type": "ProfilingStarted", "metadata": {"table": "t", "seq": 1}}"#,
        r#"{"event_type": "ProfilingStarted", "metadata": "#,
        "",
        r#"{"event_type": "ProfilingStarted", "metadata": {"table": "t", "seq": 2}}"#,
    ]
    .join("\n");
    let out = hookhost(&["run", "--plugins", dir.path().to_str().unwrap()], &input);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("stdin line 2: not valid JSON"), "{stderr}");
    assert!(
        stdout.contains("2 events dispatched, 1 malformed lines skipped"),
        "{stdout}"
    );
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}: {stdout}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(row("counts")[1..3], ["2", "0"], "handled, failed");
    assert_eq!(
        row("panics")[1..5],
        ["0", "2", "0", "2"],
        "handled, failed, error, trap"
    );
}

#[test]
fn run_without_plugins_uses_the_builtin_logging_plugin() {
    let events = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/events.jsonl"
    ))
    .unwrap();
    let out = command()
        .arg("run")
        .env("RUST_LOG", "info")
        .stdin(
            std::fs::File::open(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../examples/events.jsonl"
            ))
            .unwrap(),
        )
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let lines = events.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(
        stdout.contains(&format!("{lines} events dispatched, 0 malformed")),
        "{stdout}"
    );
    assert!(stdout.contains("logging"), "{stdout}");
    assert!(
        stderr.contains("DataDriftDetected"),
        "the logging plugin logged the drift: {stderr}"
    );
}

#[test]
fn emit_prints_each_plugins_outcome() {
    let dir = common::plugins_dir(&["counts", "returns-error"]);
    let event = r#"{"event_type": "ProfilingStarted", "metadata": {"table": "t"}}"#;
    let out = hookhost(
        &["emit", "--plugins", dir.path().to_str().unwrap(), event],
        "",
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("counts: ok"), "{stdout}");
    assert!(stdout.contains("returns-error: failed [error]"), "{stdout}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed plugin fails the command"
    );
}

#[test]
fn emit_rejects_a_malformed_event() {
    let out = hookhost(&["emit", "[1, 2]"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("event is not a JSON object"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_accepts_a_hook_and_lists_its_imports() {
    let out = hookhost(&["check", common::builtin("logging").to_str().unwrap()], "");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("implements hookhost:hooks/hook@0.1.0"),
        "{stdout}"
    );
    assert!(stdout.contains("hookhost:hooks/log@0.1.0"), "{stdout}");
}

#[test]
fn check_names_the_missing_import() {
    let out = hookhost(
        &["check", common::fixture("unknown-import").to_str().unwrap()],
        "",
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("does not implement"), "{stdout}");
    assert!(stdout.contains("teleport"), "{stdout}");
}

#[test]
fn bad_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookhost.toml");
    std::fs::write(
        &config,
        "[defaults]\ntimeout_ms = 100\n[plugins.x]\nfule = 1\n",
    )
    .unwrap();
    let out = hookhost(&["run", "--config", config.to_str().unwrap()], "");
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("hookhost.toml:4:1: unknown field `fule`"),
        "{stderr}"
    );
}

#[test]
fn settings_reach_the_plugin_with_environment_values() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookhost.toml");
    std::fs::write(
        &config,
        "[plugins.logging.settings]\nlevel = \"${HOOKHOST_TEST_LEVEL:-info}\"\n",
    )
    .unwrap();
    let event = r#"{"event_type": "ProfilingStarted", "metadata": {"table": "orders"}}"#;
    let out = command()
        .args(["emit", "--config", config.to_str().unwrap(), event])
        .env("RUST_LOG", "warn")
        .env("HOOKHOST_TEST_LEVEL", "warn")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("WARN") && stderr.contains("ProfilingStarted orders"),
        "logged at the level from the environment: {stderr}"
    );
}

#[test]
fn a_missing_environment_variable_names_the_hook_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookhost.toml");
    std::fs::write(
        &config,
        "[plugins.slack.settings]\nwebhook_url = \"${HOOKHOST_TEST_UNSET_URL}\"\n",
    )
    .unwrap();
    let out = hookhost(&["run", "--config", config.to_str().unwrap()], "");
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("[plugins.slack.settings] webhook_url: environment variable `HOOKHOST_TEST_UNSET_URL` is not set"),
        "{stderr}"
    );
}
