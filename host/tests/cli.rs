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

#[test]
fn run_reads_a_last_line_without_a_newline() {
    let dir = common::plugins_dir(&["counts"]);
    let input = [
        r#"{"event_type": "ProfilingStarted", "metadata": {"table": "t", "seq": 1}}"#,
        r#"{"event_type": "ProfilingStarted", "metadata": {"table": "t", "seq": 2}}"#,
    ]
    .join("\n");
    assert!(!input.ends_with('\n'));
    let out = hookhost(&["run", "--plugins", dir.path().to_str().unwrap()], &input);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("2 events dispatched, 0 malformed lines skipped"),
        "{stdout}"
    );
    let counts = stdout.lines().find(|l| l.starts_with("counts")).unwrap();
    assert_eq!(
        counts.split_whitespace().nth(1),
        Some("2"),
        "both handled: {stdout}"
    );
}

/// Sends SIGINT to `pid`.
fn interrupt(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[test]
fn a_second_ctrl_c_stops_at_once_and_says_what_was_left() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    // Each event takes the slow plugin its whole 1 s timeout.
    let dir = common::plugins_dir(&["slow"]);
    let config = dir.path().join("hookhost.toml");
    std::fs::write(
        &config,
        "[plugins.slow]\ntimeout_ms = 1000\nfuel = 9_000_000_000_000_000_000\n",
    )
    .unwrap();
    let mut child = command()
        .args(["run", "--plugins", dir.path().to_str().unwrap()])
        .args(["--config", config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for seq in 0..6 {
        writeln!(
            stdin,
            r#"{{"event_type": "ProfilingStarted", "metadata": {{"table": "t", "seq": {seq}}}}}"#
        )
        .unwrap();
    }
    stdin.flush().unwrap();
    // stdin stays open: only Ctrl-C ends the reading.
    let (lines, stderr_lines) = mpsc::channel::<String>();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(what);
                    seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!("no stderr line with {what:?}: {seen:#?}"),
            }
        }
    };
    // The first event has started (and, with 1 s each, the others wait).
    wait_for("loaded");
    std::thread::sleep(Duration::from_millis(500));
    interrupt(child.id());
    wait_for("interrupted: finishing the 6 events accepted so far");
    interrupt(child.id());
    let second = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            second.elapsed() < Duration::from_secs(10),
            "still running 10 s after the second Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = second.elapsed();
    wait_for("interrupted again: stopping now");
    wait_for("accepted events not yet counted as handled or failed");
    let report = seen.last().unwrap().clone();
    assert_eq!(status.code(), Some(130), "{seen:#?}");
    assert!(
        took < Duration::from_secs(2),
        "exited {took:?} after the second Ctrl-C"
    );
    // `slow: N of 6 accepted events not yet counted ...`: at most the first
    // event or two can have been done in the ~0.5 s before the first
    // Ctrl-C and the moment of the second.
    let left: u64 = report
        .strip_prefix("slow: ")
        .and_then(|rest| {
            rest.strip_suffix(" of 6 accepted events not yet counted as handled or failed")
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{report:?}"));
    assert!((4..=6).contains(&left), "{report}");
}

/// Where the instance pool's address space cannot be reserved (a `ulimit
/// -v`; valgrind), the host still runs, allocating each instance on its
/// own, and says so.
#[test]
fn emit_works_where_the_instance_pool_cannot_be_reserved() {
    use std::os::unix::process::CommandExt;

    let dir = common::plugins_dir(&["counts"]);
    let event = r#"{"event_type": "ProfilingStarted", "metadata": {"table": "t"}}"#;
    let mut command = command();
    command
        .args(["emit", "--plugins", dir.path().to_str().unwrap(), event])
        .env("RUST_LOG", "warn");
    // 64 GiB of address space: room for the process and a few instances
    // (about 4 GiB each), far from the pool's terabytes.
    // SAFETY: between fork and exec the closure calls only setrlimit, which
    // is async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64 << 30,
                rlim_max: 64 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let out = run_with_input(&mut command, "");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("counts: ok"), "{stdout}");
    assert!(
        stderr.contains("cannot reserve the instance pool"),
        "{stderr}"
    );
}
