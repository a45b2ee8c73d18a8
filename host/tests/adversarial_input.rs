//! Hostile input to the host itself: what `hookhost run` reads on stdin,
//! what `hookhost emit` is given, and what a config file holds. Each test is
//! one attack; it checks that the input is refused with an error that names
//! where it is, that the good input around it is still handled, and that
//! the host's memory stays bounded.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::hookhost_command;
use hookhost::Config;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A good event for the `counts` fixture, with its sequence number.
fn good(seq: u64) -> String {
    format!(r#"{{"event_type": "ProfilingStarted", "metadata": {{"table": "t", "seq": {seq}}}}}"#)
}

/// The `handled` and `failed` columns of `plugin`'s summary row.
fn handled_failed(stdout: &str, plugin: &str) -> (u64, u64) {
    let row: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with(plugin))
        .unwrap_or_else(|| panic!("no summary row for {plugin}: {stdout}"))
        .split_whitespace()
        .collect();
    (row[1].parse().unwrap(), row[2].parse().unwrap())
}

/// `hookhost run --plugins DIR --config FILE` over `stdin`, returning its
/// output and its peak resident memory (`VmHWM`, a high-water mark). Input
/// is written from a thread, so it may be larger than a pipe's buffer, and
/// stdin is kept open until the mark has been read once more after the
/// last byte went into the pipe: the reading of all of it is measured even
/// if the process then exits between two samples.
fn run_measured(dir: &Path, config: &Path, stdin: Vec<u8>) -> (Output, u64) {
    let mut child = hookhost_command()
        .args(["run", "--plugins", dir.to_str().unwrap()])
        .args(["--config", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hookhost");
    let pid = child.id();
    let mut input = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        input
            .write_all(&stdin)
            .expect("hookhost reads all its input");
        input
    });
    let readers = [
        read_all(child.stdout.take().unwrap()),
        read_all(child.stderr.take().unwrap()),
    ];
    let high_water_mark = || -> Option<u64> {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    let mut peak_kib = 0;
    while !writer.is_finished() {
        peak_kib = peak_kib.max(high_water_mark().unwrap_or(0));
        std::thread::sleep(Duration::from_millis(5));
    }
    let input = writer.join().unwrap();
    // The pipe holds at most its buffer (64 KiB) of what was written; let
    // the host read that too before the last sample.
    std::thread::sleep(Duration::from_millis(200));
    peak_kib = peak_kib.max(high_water_mark().expect("hookhost still runs: stdin is open"));
    drop(input);
    let status = child.wait().unwrap();
    let [stdout, stderr] = readers.map(|r| r.join().unwrap());
    (
        Output {
            status,
            stdout,
            stderr,
        },
        peak_kib,
    )
}

fn read_all(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        from.read_to_end(&mut out).unwrap();
        out
    })
}

#[test]
fn a_64_mib_line_is_skipped_by_number_without_being_held_in_memory() {
    let dir = common::plugins_dir(&["counts"]);
    let config = dir.path().join("hookhost.toml");
    std::fs::write(&config, "[engine]\nmax_event_kib = 64\n").unwrap();
    let huge = 64 << 20;
    let mut attack = Vec::with_capacity(huge + 1024);
    attack.extend_from_slice(good(1).as_bytes());
    attack.extend_from_slice(b"\n{\"event_type\": \"Custom\", \"metadata\": {\"pad\": \"");
    attack.resize(attack.len() + huge, b'x');
    attack.extend_from_slice(b"\"}}\n");
    attack.extend_from_slice(good(2).as_bytes());
    attack.push(b'\n');
    let plain = format!("{}\n{}\n", good(1), good(2)).into_bytes();

    // The first run compiles the plugin into the cache; measure the
    // baseline on the second, like the attack run.
    run_measured(dir.path(), &config, plain.clone());
    let (baseline, baseline_kib) = run_measured(dir.path(), &config, plain);
    let (out, peak_kib) = run_measured(dir.path(), &config, attack);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    eprintln!("peak RSS: {peak_kib} KiB with the 64 MiB line, {baseline_kib} KiB without");
    assert!(baseline.status.success(), "{}", text(&baseline.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("stdin line 2 is longer than the event size limit of 65536 bytes"),
        "{stderr}"
    );
    assert!(
        stdout.contains("2 events dispatched, 1 malformed lines skipped"),
        "{stdout}"
    );
    assert_eq!(
        handled_failed(&stdout, "counts"),
        (2, 0),
        "both good events handled, in order"
    );
    // The whole line is 64 MiB; holding it (let alone a `String` that grew
    // by doubling) would add at least that much.
    assert!(
        peak_kib > 0 && baseline_kib > 0,
        "VmHWM was sampled ({peak_kib}, {baseline_kib})"
    );
    assert!(
        peak_kib < baseline_kib + 16 * 1024 && peak_kib < 48 * 1024,
        "peak RSS {peak_kib} KiB with the 64 MiB line vs {baseline_kib} KiB without"
    );
}

/// Runs `hookhost run` with the `counts` plugin over raw `stdin` bytes.
fn run_counts(stdin: &[u8]) -> (Output, String, String) {
    let dir = common::plugins_dir(&["counts"]);
    let mut child = hookhost_command()
        .args(["run", "--plugins", dir.path().to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hookhost");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    (out, stdout, stderr)
}

#[test]
fn a_line_that_is_not_utf8_is_skipped_by_number() {
    let mut input = format!("{}\n", good(1)).into_bytes();
    input.extend_from_slice(b"{\"event_type\": \"Custom\xff\xfe\", \"metadata\": {}}\n");
    input.extend_from_slice(format!("{}\n", good(2)).as_bytes());
    let (out, stdout, stderr) = run_counts(&input);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("stdin line 2 is not UTF-8 (invalid byte at offset 22)"),
        "{stderr}"
    );
    assert!(
        stdout.contains("2 events dispatched, 1 malformed lines skipped"),
        "{stdout}"
    );
    assert_eq!(handled_failed(&stdout, "counts"), (2, 0));
}

#[test]
fn a_line_with_a_nul_byte_is_skipped_by_number() {
    let mut input = format!("{}\n", good(1)).into_bytes();
    input.extend_from_slice(b"{\"event_type\": \"Custom\0\", \"metadata\": {}}\n");
    input.extend_from_slice(format!("{}\n", good(2)).as_bytes());
    let (out, stdout, stderr) = run_counts(&input);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("stdin line 2 holds a NUL byte (offset 22)"),
        "{stderr}"
    );
    assert!(
        stdout.contains("2 events dispatched, 1 malformed lines skipped"),
        "{stdout}"
    );
    assert_eq!(handled_failed(&stdout, "counts"), (2, 0));
}

#[test]
fn emit_refuses_an_event_over_the_size_limit() {
    let dir = common::plugins_dir(&["counts"]);
    let config = dir.path().join("hookhost.toml");
    std::fs::write(&config, "[engine]\nmax_event_kib = 1\n").unwrap();
    let big = format!(
        r#"{{"event_type": "Custom", "metadata": {{"pad": "{}"}}}}"#,
        "x".repeat(2048)
    );
    let out = hookhost_command()
        .args(["emit", "--plugins", dir.path().to_str().unwrap()])
        .args(["--config", config.to_str().unwrap(), &big])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the event argument is {} bytes, more than the event size limit of 1024 bytes \
             ([engine] max_event_kib = 1 in {})",
            big.len(),
            config.display()
        )),
        "{stderr}"
    );
    assert!(text(&out.stdout).is_empty(), "no plugin was called");
}

/// `Config::parse` of `toml` as `test.toml`, the error as text.
fn parse(toml: &str) -> Result<Config, String> {
    Config::parse(toml, Path::new("test.toml")).map_err(|e| e.to_string())
}

#[test]
fn config_values_out_of_range_name_file_line_and_range() {
    // (config text, expected start of the error)
    let cases = [
        (
            "[defaults]\ntimeout_ms = 0\n",
            "test.toml:2:14: timeout_ms = 0 is out of range: 1 to 3600000 ms",
        ),
        (
            "[defaults]\n\ntimeout_ms = 3_600_001\n",
            "test.toml:3:14: timeout_ms = 3600001 is out of range: 1 to 3600000 ms",
        ),
        (
            "[defaults]\nfuel = 0\n",
            "test.toml:2:8: fuel = 0 is out of range: 1 to 9223372036854775807",
        ),
        (
            "[defaults]\nfuel = -1\n",
            "test.toml:2:8: fuel = -1 is out of range: 1 to 9223372036854775807",
        ),
        (
            "[defaults]\nmemory_mib = 4097\n",
            "test.toml:2:14: memory_mib = 4097 is out of range: 1 to 4096 MiB",
        ),
        (
            "[defaults]\nqueue_capacity = 0\n",
            "test.toml:2:18: queue_capacity = 0 is out of range: 1 to 16777216 events",
        ),
        (
            "[plugins.a]\nqueue_capacity = 9_223_372_036_854_775_807\n",
            "test.toml:2:18: queue_capacity = 9223372036854775807 is out of range: 1 to 16777216 events",
        ),
        (
            "[plugins.a]\nqueue_mib = 0\n",
            "test.toml:2:13: queue_mib = 0 is out of range: 1 to 65536 MiB",
        ),
        (
            "[plugins.a]\nbatch_size = 0\n",
            "test.toml:2:14: batch_size = 0 is out of range: 1 to 65536 events",
        ),
        (
            "[plugins.a]\nenabled = true\nbatch_wait_ms = 60_001\n",
            "test.toml:3:17: batch_wait_ms = 60001 is out of range: 0 to 60000 ms",
        ),
        (
            "[plugins.a]\nbatch_wait_ms = -5\n",
            "test.toml:2:17: batch_wait_ms = -5 is out of range: 0 to 60000 ms",
        ),
        (
            "[engine]\nmax_plugin_mib = 0\n",
            "test.toml:2:18: max_plugin_mib = 0 is out of range: 1 to 1024 MiB",
        ),
        (
            "[engine]\nmax_event_kib = 65537\n",
            "test.toml:2:17: max_event_kib = 65537 is out of range: 1 to 65536 KiB",
        ),
        (
            "[plugins.a]\ntimeout_ms = 1.5\n",
            "test.toml:2:14: invalid type: floating point `1.5`, expected timeout_ms as a whole number from 1 to 3600000 ms",
        ),
        (
            "[defaults]\nmemory_mib = \"lots\"\n",
            "test.toml:2:14: invalid type: a string, expected memory_mib as a whole number from 1 to 4096 MiB",
        ),
    ];
    for (toml, expected) in cases {
        let err = parse(toml).expect_err(toml);
        assert!(err.starts_with(expected), "{toml:?}:\n{err}\n{expected}");
    }
    // The edges of each range are accepted.
    let config = parse(
        "[defaults]\nfuel = 9_223_372_036_854_775_807\ntimeout_ms = 3_600_000\n\
         memory_mib = 4096\nqueue_capacity = 16_777_216\nqueue_mib = 65_536\n\
         batch_size = 65_536\nbatch_wait_ms = 0\n\
         [engine]\nmax_plugin_mib = 1024\nmax_event_kib = 65_536\n",
    )
    .unwrap();
    let limits = config.limits_for("any");
    assert_eq!(limits.fuel, i64::MAX as u64);
    assert_eq!(limits.timeout, Duration::from_secs(3600));
    assert_eq!(limits.memory_bytes, 4 << 30);
    assert_eq!(config.engine.max_event_bytes(), 64 << 20);
}

#[test]
fn a_bad_database_or_mailer_key_is_named_with_its_line() {
    let err = parse("[databases.events]\nbackend = \"postgres\"\n\nport = 99_999\n").unwrap_err();
    assert!(
        err.starts_with("test.toml:4: [databases.events]: port"),
        "{err}"
    );
    let err =
        parse("[databases.events]\nurl = \"sqlite://x.db\"\nmax_connections = 0\n").unwrap_err();
    assert_eq!(
        err,
        "test.toml:3: [databases.events]: max_connections `0` is not a whole number from 1 to 100 \
         (connections per plugin)"
    );
    let err = parse("[mailers.alerts]\nhost = \"x\"\nfrom = \"a@b.c\"\nprot = 25\n").unwrap_err();
    assert!(
        err.starts_with("test.toml:4: [mailers.alerts]: unknown key `prot`"),
        "{err}"
    );
}

/// `Config::parse` returns (a config or an error naming the file) for any
/// value of any numeric key, in every section that has it; a config it
/// accepts can be queried. No runtime: parsing connects to nothing.
#[test]
fn no_value_of_a_numeric_key_makes_config_parse_panic() {
    let mut rng = common::Rng(0x9e37_79b9_7f4a_7c15);
    let mut values: Vec<String> = [
        "0",
        "1",
        "-1",
        "9_223_372_036_854_775_807",
        "-9_223_372_036_854_775_808",
        "0x7fff_ffff_ffff_ffff",
        "1.5",
        "-0.0",
        "1e300",
        "nan",
        "inf",
        "-inf",
        "true",
        "1979-05-27T07:32:00Z",
        "[]",
        "[1, 2]",
        "{}",
        "{ a = 1 }",
        "\"\"",
        "\"12\"",
    ]
    .map(String::from)
    .into();
    for _ in 0..200 {
        // TOML integers are i64: a random u64 is written as what fits.
        values.push((rng.next() as i64).to_string());
        values.push((rng.next() >> (rng.next() % 64)).to_string());
    }
    values.push(format!("\"{}\"", "9".repeat(1 << 20)));
    values.push(format!("'{}'", "x".repeat(1 << 20)));
    values.push("9".repeat(400));
    let sections = [
        (
            "[defaults]",
            &[
                "fuel",
                "timeout_ms",
                "memory_mib",
                "queue_capacity",
                "queue_mib",
                "batch_size",
                "batch_wait_ms",
            ][..],
        ),
        (
            "[plugins.a]",
            &[
                "fuel",
                "timeout_ms",
                "memory_mib",
                "queue_capacity",
                "queue_mib",
                "batch_size",
                "batch_wait_ms",
            ][..],
        ),
        ("[engine]", &["max_plugin_mib", "max_event_kib"][..]),
        (
            "[databases.d]\nbackend = \"sqlite\"\npath = \"never-opened.db\"",
            &["max_connections"][..],
        ),
        (
            "[databases.d]\nbackend = \"postgres\"",
            &["port", "max_connections"][..],
        ),
        (
            "[mailers.m]\nhost = \"127.0.0.1\"\nfrom = \"a@example.com\"",
            &["port"][..],
        ),
    ];
    let mut accepted = 0;
    for (header, keys) in sections {
        for key in keys {
            for value in &values {
                let toml = format!("{header}\n{key} = {value}\n");
                match Config::parse(&toml, Path::new("test.toml")) {
                    Ok(config) => {
                        accepted += 1;
                        let _ = config.limits_for("a");
                        let _ = config.engine.max_event_bytes();
                        let _ = config.engine.max_plugin_bytes();
                    }
                    Err(err) => {
                        let err = err.to_string();
                        assert!(err.starts_with("test.toml:"), "{toml:.200}: {err:.300}");
                        // The keys read here quote no value at length
                        // (database and mailer keys are read by their
                        // capabilities, whose messages may).
                        if !header.starts_with("[databases") && !header.starts_with("[mailers") {
                            assert!(
                                err.len() < 1000,
                                "a short error for {toml:.200}: {err:.300}"
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(accepted > 0, "values in range are accepted");
    assert!(
        !Path::new("never-opened.db").exists(),
        "reading a config opens no database"
    );
}

#[test]
fn hookhost_run_reports_a_value_out_of_range_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookhost.toml");
    std::fs::write(
        &config,
        "[plugins.logging]\nqueue_capacity = 9_223_372_036_854_775_807\n",
    )
    .unwrap();
    let out = common::run_with_input(
        hookhost_command()
            .args(["run", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn"),
        "",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "hookhost.toml:2:18: queue_capacity = 9223372036854775807 is out of range: 1 to 16777216 events"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_event_the_host_refuses_is_skipped_by_number_and_the_rest_handled() {
    // A queue of 1 MiB cannot hold an event of 1.5 MiB, though the line is
    // within the 4 MiB event limit: the host refuses that one event.
    let dir = common::plugins_dir(&["counts"]);
    let config = dir.path().join("hookhost.toml");
    std::fs::write(
        &config,
        "[engine]\nmax_event_kib = 4096\n[plugins.counts]\nqueue_mib = 1\n",
    )
    .unwrap();
    let big = format!(
        r#"{{"event_type": "Custom", "metadata": {{"pad": "{}"}}}}"#,
        "x".repeat(3 << 19)
    );
    let input = format!("{}\n{big}\n{}\n", good(1), good(2));
    let out = common::run_with_input(
        hookhost_command()
            .args(["run", "--plugins", dir.path().to_str().unwrap()])
            .args(["--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn"),
        &input,
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("error: stdin line 2: the event is ")
            && stderr.contains("(queue_mib); line skipped"),
        "{stderr}"
    );
    assert!(
        stdout.contains("2 events dispatched, 1 malformed lines skipped"),
        "{stdout}"
    );
    assert_eq!(handled_failed(&stdout, "counts"), (2, 0));
}
