//! Hostile entries in the plugins folder: things named `*.wasm` that are not
//! regular files, files too large to read, names that try to forge output
//! lines, and arbitrary bytes. Each is refused with an error naming it (at
//! startup, on hot reload and by `hookhost check`), the host does not hang,
//! and the other plugins keep serving.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hookhost::Host;

/// How long a step may take before the test calls it a hang: far above
/// what each takes (well under a second), far below a test runner timeout.
const STEP: Duration = Duration::from_secs(60);

/// One event as a JSON line.
const EVENT_LINE: &str = r#"{"event_type": "ProfilingStarted", "timestamp": "2025-01-15T10:30:00", "metadata": {"table": "orders", "run_id": "r1"}}"#;

/// The names in `dir`, sorted: what a test compares before and after, to
/// show the host changed nothing there.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Waits for `child` to exit, killing it and failing the test after `STEP`.
fn wait_or_kill(child: &mut Child, what: &str) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > STEP {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {STEP:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `hookhost check [args] file` and returns its exit status and
/// stdout, failing if it takes longer than `STEP`.
fn check(args: &[&str], file: &Path) -> (ExitStatus, String) {
    let mut child = common::hookhost_command()
        .arg("check")
        .args(args)
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hookhost check");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        text
    });
    let status = wait_or_kill(&mut child, "hookhost check");
    (status, reader.join().unwrap())
}

/// A `hookhost run --plugins DIR` in progress, its stderr read line by line.
struct Running {
    child: Child,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
    stdout: std::thread::JoinHandle<String>,
}

impl Running {
    fn start(plugins: &Path, config: Option<&Path>) -> Running {
        let mut command = common::hookhost_command();
        command.arg("run").arg("--plugins").arg(plugins);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hookhost run");
        let (sender, stderr) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            out.read_to_string(&mut text).unwrap();
            text
        });
        let mut running = Running {
            child,
            stderr,
            seen: Vec::new(),
            stdout,
        };
        running.expect_line(&["watching the plugins folder"]);
        running
    }

    /// Waits for a stderr line containing every one of `parts`, and returns
    /// it; fails after `STEP`.
    fn expect_line(&mut self, parts: &[&str]) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(line) = self
                .seen
                .iter()
                .find(|line| parts.iter().all(|part| line.contains(part)))
            {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "no stderr line with {parts:?}; got:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Sends one event, closes stdin and returns stdout (the summary) and
    /// every stderr line.
    fn finish(mut self) -> (String, Vec<String>) {
        let mut stdin = self.child.stdin.take().unwrap();
        writeln!(stdin, "{EVENT_LINE}").unwrap();
        drop(stdin);
        let status = wait_or_kill(&mut self.child, "hookhost run");
        assert!(status.success(), "{status}");
        let stdout = self.stdout.join().unwrap();
        let mut lines = self.seen;
        lines.extend(self.stderr.try_iter());
        (stdout, lines)
    }
}

/// The summary row of plugin `name` in `hookhost run`'s output, split into
/// columns.
fn summary_row(stdout: &str, name: &str) -> Vec<String> {
    stdout
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no summary row for {name}:\n{stdout}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Puts a hostile entry at `bad.wasm` (inside a plugins folder, beside
/// `counts`) with `make`, and checks that it is refused with `expected` in
/// an error naming it: at startup, when dropped in while `hookhost run`
/// runs, and by `hookhost check`, each within `STEP`; that `counts` keeps
/// serving; and that the folder holds what it held.
async fn refused_everywhere(make: fn(&Path), expected: &str) {
    // At startup.
    let plugins = common::plugins_dir(&["counts"]);
    let bad = plugins.path().join("bad.wasm");
    make(&bad);
    let before = listing(plugins.path());
    let build = Host::builder().plugins_dir(plugins.path()).build();
    let host = tokio::time::timeout(STEP, build)
        .await
        .expect("startup does not hang")
        .expect("host builds");
    let errors: Vec<String> = host.load_errors().iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with(&format!("{}: ", bad.display())),
        "names the file: {errors:?}"
    );
    assert!(errors[0].contains(expected), "{errors:?}");
    assert_eq!(host.load_errors()[0].path(), bad);
    assert_eq!(host.plugin_names(), ["counts"]);
    common::serves_then_shuts_down(host).await;
    assert_eq!(listing(plugins.path()), before);

    // `hookhost check`, then dropped in while `hookhost run` runs.
    let expected = expected.to_owned();
    tokio::task::spawn_blocking(move || {
        let (status, stdout) = check(&[], &bad);
        assert_eq!(status.code(), Some(1), "{stdout}");
        assert!(
            stdout.contains(&format!("error: {}: ", bad.display())) && stdout.contains(&expected),
            "{stdout}"
        );

        let plugins = common::plugins_dir(&["counts"]);
        let bad = plugins.path().join("bad.wasm");
        let mut running = Running::start(plugins.path(), None);
        running.expect_line(&["loaded", "counts"]);
        make(&bad);
        let before = listing(plugins.path());
        let rejected = running.expect_line(&["rejected", &expected]);
        assert!(
            rejected.contains(&format!("rejected {}: ", bad.display())),
            "{rejected}"
        );
        let (stdout, stderr) = running.finish();
        let counts = summary_row(&stdout, "counts");
        assert_eq!(
            counts[1..3],
            ["1", "0"],
            "counts handled the event:\n{stdout}"
        );
        assert!(
            stdout.lines().all(|line| !line.starts_with("bad ")),
            "bad was never loaded:\n{stdout}"
        );
        assert!(
            !stderr
                .iter()
                .any(|l| l.contains("INFO loaded") && l.contains("bad")),
            "{stderr:#?}"
        );
        assert_eq!(listing(plugins.path()), before);
    })
    .await
    .unwrap();
}

fn fifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success());
}

fn directory(path: &Path) {
    std::fs::create_dir(path).unwrap();
    std::fs::write(path.join("inside.wasm"), b"not looked at").unwrap();
}

fn symlink_to_dev_zero(path: &Path) {
    std::os::unix::fs::symlink("/dev/zero", path).unwrap();
}

/// A sparse file one byte over the default limit of 64 MiB: it takes no
/// disk space, and the host must refuse it by its size.
fn oversize(path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    file.set_len((64 << 20) + 1).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_named_wasm_is_refused_without_hanging() {
    refused_everywhere(
        fifo,
        "is a FIFO (named pipe), not a regular file; only regular files (or symbolic links to them) are loaded",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_named_wasm_is_refused() {
    refused_everywhere(directory, "is a directory, not a regular file").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_to_dev_zero_is_refused_without_reading_it() {
    refused_everywhere(
        symlink_to_dev_zero,
        "is a character device, not a regular file",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_max_plugin_mib_is_refused_by_its_size() {
    refused_everywhere(
        oversize,
        "67108865 bytes, over the limit of 67108864 bytes (64 MiB) for plugin files; \
         raise `[engine] max_plugin_mib` in the config file to load it",
    )
    .await;

    // With the limit raised, the same file is read (and is not WebAssembly).
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("big.wasm");
    oversize(&file);
    let config = folder.path().join("hookhost.toml");
    std::fs::write(&config, "[engine]\nmax_plugin_mib = 65\n").unwrap();
    let config = config.to_str().unwrap().to_owned();
    let (status, stdout) =
        tokio::task::spawn_blocking(move || check(&["--config", &config], &file))
            .await
            .unwrap();
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("not a WebAssembly file"), "{stdout}");
}

#[tokio::test]
async fn a_symlink_to_a_regular_plugin_file_loads() {
    let plugins = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        common::fixture("counts"),
        plugins.path().join("linked.wasm"),
    )
    .unwrap();
    let host = common::host(plugins.path(), hookhost::Config::default()).await;
    assert_eq!(host.plugin_names(), ["linked"]);
    common::serves_then_shuts_down(host).await;
}

/// Names that try to forge a log line or a summary row, or to clear the
/// terminal, when printed raw.
const FORGED_NAMES: [&str; 3] = [
    "evil\nINFO forged line",
    "evil\rERROR forged line",
    "evil\u{1b}[2J clears",
];

#[tokio::test]
async fn control_characters_in_file_names_cannot_forge_output_lines() {
    let plugins = tempfile::tempdir().unwrap();
    for name in FORGED_NAMES {
        std::fs::copy(
            common::fixture("noop"),
            plugins.path().join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    std::fs::write(
        plugins.path().join("bad\nERROR forged load.wasm"),
        b"not wasm",
    )
    .unwrap();
    let dir = plugins.path().to_owned();
    let (stdout, stderr, checked) = tokio::task::spawn_blocking(move || {
        let output = common::run_with_input(
            common::hookhost_command()
                .env("RUST_LOG", "info")
                .arg("run")
                .arg("--plugins")
                .arg(&dir),
            &format!("{EVENT_LINE}\n"),
        );
        assert!(output.status.success(), "{output:?}");
        let (_, checked) = check(&[], &dir.join(format!("{}.wasm", FORGED_NAMES[0])));
        (
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
            checked,
        )
    })
    .await
    .unwrap();

    for (stream, text) in [
        ("stdout", &stdout),
        ("stderr", &stderr),
        ("check", &checked),
    ] {
        assert!(
            !text.contains('\r'),
            "{stream} has a raw carriage return:\n{text}"
        );
        assert!(
            !text.contains('\u{1b}'),
            "{stream} has a raw escape:\n{text}"
        );
        for line in text.lines() {
            for forged in ["INFO forged", "ERROR forged"] {
                assert!(!line.starts_with(forged), "{stream} line forged: {line:?}");
            }
        }
    }
    // The summary rows, one per plugin, with the names escaped.
    for escaped in [
        "evil\\u{a}INFO forged line",
        "evil\\u{d}ERROR forged line",
        "evil\\u{1b}[2J clears",
    ] {
        let row = stdout
            .lines()
            .find(|line| line.starts_with(escaped))
            .unwrap_or_else(|| panic!("no row for {escaped}:\n{stdout}"));
        let handled = row[escaped.len()..].split_whitespace().next();
        assert_eq!(handled, Some("1"), "{row}");
    }
    // The load error and the log lines.
    assert!(
        stderr.contains("bad\\u{a}ERROR forged load.wasm: not a WebAssembly file"),
        "{stderr}"
    );
    assert!(stderr.contains("evil\\u{a}INFO forged line"), "{stderr}");
    assert!(
        checked.contains("ok: ") && checked.contains("evil\\u{a}INFO forged line.wasm implements"),
        "{checked}"
    );
}

/// Mutants of the valid components `seeds`: bit flips, truncations,
/// insertions, overwritten runs, splices of two components, and random
/// bytes with and without a component header.
fn mutants(rng: &mut common::Rng, seeds: &[Vec<u8>], count: usize) -> Vec<Vec<u8>> {
    const COMPONENT_HEADER: &[u8] = b"\0asm\x0d\0\x01\0";
    (0..count)
        .map(|_| {
            let seed = &seeds[rng.below(seeds.len())];
            let mut bytes = seed.clone();
            match rng.below(7) {
                0 => {
                    for _ in 0..1 + rng.below(8) {
                        let at = rng.below(bytes.len());
                        bytes[at] ^= 1 << rng.below(8);
                    }
                }
                1 => bytes.truncate(rng.below(bytes.len())),
                2 => {
                    let at = rng.below(bytes.len());
                    let n = 1 + rng.below(64);
                    let inserted = rng.bytes(n);
                    bytes.splice(at..at, inserted);
                }
                3 => {
                    let at = rng.below(bytes.len());
                    let n = (1 + rng.below(32)).min(bytes.len() - at);
                    let run = rng.bytes(n);
                    bytes[at..at + n].copy_from_slice(&run);
                }
                4 => {
                    let other = &seeds[rng.below(seeds.len())];
                    let cut = rng.below(bytes.len());
                    let from = rng.below(other.len());
                    bytes.truncate(cut);
                    bytes.extend_from_slice(&other[from..]);
                }
                5 => {
                    bytes = COMPONENT_HEADER.to_vec();
                    let n = rng.below(4096);
                    bytes.extend(rng.bytes(n));
                }
                _ => {
                    let n = rng.below(4096);
                    bytes = rng.bytes(n);
                }
            }
            bytes
        })
        .collect()
}

/// How many mutants are tried: enough to reach each kind of mutation
/// dozens of times, few enough to compile the ones that still validate in
/// well under a minute.
const MUTANTS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_bytes_as_a_plugin_file_load_or_are_refused_naming_the_file() {
    let seeds: Vec<Vec<u8>> = ["noop", "counts", "noop-batch"]
        .iter()
        .map(|name| std::fs::read(common::fixture(name)).unwrap())
        .collect();
    let mut rng = common::Rng(0x5eed_f11e_5eed_f11e);
    let plugins = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    for (n, bytes) in mutants(&mut rng, &seeds, MUTANTS).iter().enumerate() {
        let file = plugins.path().join(format!("mutant-{n:03}.wasm"));
        std::fs::write(&file, bytes).unwrap();
        files.push(file);
    }
    // Small limits: a mutant whose start code loops or allocates is
    // stopped quickly when it is probed.
    let config = common::config(
        "[defaults]\nfuel = 10_000_000\ntimeout_ms = 2000\nmemory_mib = 32\nqueue_capacity = 16",
    );
    let build = Host::builder()
        .plugins_dir(plugins.path())
        .config(config)
        .build();
    let host = tokio::time::timeout(Duration::from_secs(240), build)
        .await
        .expect("loading every mutant ends in time")
        .expect("the host builds");

    let loaded = host.plugin_names();
    let errors = host.load_errors();
    assert_eq!(loaded.len() + errors.len(), MUTANTS, "{loaded:?}");
    for err in errors {
        let message = err.to_string();
        let path = err.path();
        assert!(files.iter().any(|file| file == path), "{message}");
        assert!(
            message.starts_with(&format!("{}: ", path.display())),
            "{message}"
        );
        assert!(
            !message.contains("panicked") && !message.contains("task failed"),
            "{message}"
        );
    }
    for name in &loaded {
        assert!(name.starts_with("mutant-"), "{name}");
    }
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for err in errors {
        let message = err.to_string();
        let rest = &message[err.path().display().to_string().len() + 2..];
        let kind = rest.split(':').next().unwrap_or_default().to_owned();
        *kinds.entry(kind).or_default() += 1;
    }
    eprintln!(
        "{} mutants loaded, {} refused: {kinds:#?}",
        loaded.len(),
        errors.len()
    );
    tokio::time::timeout(Duration::from_secs(60), host.shutdown())
        .await
        .expect("shutdown ends in time");
}

/// The only outcome of `name` for one event.
async fn outcome_of(host: &Host, name: &str) -> hookhost::Outcome {
    let report = host
        .emit_with_report(common::event(1))
        .unwrap()
        .wait()
        .await;
    report
        .outcomes
        .into_iter()
        .find(|(plugin, _)| plugin == name)
        .unwrap_or_else(|| panic!("no outcome for {name}"))
        .1
}

#[tokio::test]
async fn a_file_whose_escaped_name_is_taken_is_refused_not_swapped_in() {
    // `dup<newline>name.wasm` is the plugin `dup\u{a}name`; so would be a
    // file named with those characters literally.
    let name = "dup\\u{a}name";
    let plugins = tempfile::tempdir().unwrap();
    let first = plugins.path().join("dup\nname.wasm");
    let second = plugins.path().join(format!("{name}.wasm"));
    std::fs::copy(common::fixture("noop"), &first).unwrap();
    std::fs::copy(common::fixture("panics"), &second).unwrap();
    let host = Host::builder()
        .plugins_dir(plugins.path())
        .build()
        .await
        .unwrap();
    let errors: Vec<String> = host.load_errors().iter().map(|e| e.to_string()).collect();
    assert_eq!(
        errors,
        [format!(
            "{}: its plugin name \"{name}\" is already taken by another file ({}); \
             rename one of them",
            second.display(),
            plugins.path().join("dup\\u{a}name.wasm").display()
        )]
    );
    assert_eq!(host.plugin_names(), [name]);
    assert_eq!(outcome_of(&host, name).await.result, Ok(()), "noop serves");
    host.shutdown().await;

    // While running: the second file is rejected, not swapped in, and its
    // removal does not unload the first.
    std::fs::remove_file(&second).unwrap();
    std::fs::copy(
        common::fixture("counts"),
        plugins.path().join("marker.wasm"),
    )
    .unwrap();
    let host = Host::builder()
        .plugins_dir(plugins.path())
        .watch(true)
        .build()
        .await
        .unwrap();
    assert!(host.load_errors().is_empty());
    let noop = common::version_of(&std::fs::read(common::fixture("noop")).unwrap());
    std::fs::copy(common::fixture("panics"), &second).unwrap();
    common::eventually("the rejection", || host.reload_stats().rejected == 1).await;
    let outcome = outcome_of(&host, name).await;
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(*outcome.version, noop);
    std::fs::remove_file(&second).unwrap();
    let marker = common::variant(&std::fs::read(common::fixture("counts")).unwrap(), "m", 1);
    std::fs::write(plugins.path().join("marker.wasm"), marker).unwrap();
    common::eventually("the marker swap", || host.reload_stats().swapped == 1).await;
    assert_eq!(host.reload_stats().unloaded, 0);
    assert_eq!(host.plugin_names(), ["dup\\u{a}name", "marker"]);
    assert_eq!(outcome_of(&host, name).await.result, Ok(()));
    host.shutdown().await;
}
