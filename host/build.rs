//! Builds every guest crate (`plugins/*`, `tests/fixtures/*` and the Rust
//! example in `examples/hooks/rust`) as a
//! `wasm32-wasip2` component, so that tests, benchmarks and the built-in
//! plugins always run the guests of the same checkout.
//!
//! All guests are built by one nested `cargo build` in a target directory of
//! their own, `<target>/wasm32-guests`, shared by every host profile (the
//! nested build must not take the lock of the outer one). The components are
//! copied to `<target>/wasm32-guests/components/{plugins,fixtures,examples}/<folder>.wasm`
//! and that directory is passed to the host as `HOOKHOST_GUEST_DIR`. A new
//! guest folder with a `Cargo.toml` is picked up without editing this file.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "wasm32-wasip2";

/// Folders holding guest crates, and the subfolder of the guest directory
/// their components are copied to.
const GUEST_FOLDERS: [(&str, &str); 3] = [
    ("plugins", "plugins"),
    ("tests/fixtures", "fixtures"),
    ("examples/hooks", "examples"),
];

/// How much of a failed nested build's stderr to show: enough for the first
/// compiler errors, short enough to stay readable in cargo's output.
const STDERR_TAIL_LINES: usize = 60;

/// Environment variables that cargo sets for this build script, or that a
/// user set for the host's build, which would change or break the nested
/// guest build (a native target, native rustflags, the outer target
/// directory and its lock, clippy as the compiler).
const STRIPPED_VARS: &[&str] = &[
    "CARGO_BUILD_BUILD_DIR",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_CRATE_NAME",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_DIR",
    "CARGO_TARGET_TMPDIR",
    "DEBUG",
    "HOST",
    "NUM_JOBS",
    "OPT_LEVEL",
    "OUT_DIR",
    "PROFILE",
    "RUSTC_LINKER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTDOC",
    "RUSTFLAGS",
    "TARGET",
];
const STRIPPED_PREFIXES: &[&str] = &[
    "CARGO_CFG_",
    "CARGO_FEATURE_",
    "CARGO_MANIFEST_",
    "CARGO_PKG_",
    "CARGO_PROFILE_",
];

/// One guest crate: its package name and where its component goes.
struct Guest {
    package: String,
    /// `<kind>/<folder name>`, e.g. `fixtures/infinite-loop`.
    component: String,
}

fn main() {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("the host crate lives in a folder of the workspace")
        .to_path_buf();
    println!("cargo:rerun-if-changed=build.rs");
    for path in [
        "wit",
        "sdk",
        "plugins",
        "tests/fixtures",
        // Only the Rust example: the other languages' folders hold build
        // output that must not re-run this script.
        "examples/hooks/rust",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }

    let guests = discover_guests(&workspace);
    let target_dir = guest_target_dir();
    ensure_guest_target_installed();
    build_guests(&workspace, &target_dir, &guests);

    let guest_dir = target_dir.join("components");
    let artifacts = target_dir.join(GUEST_TARGET).join("release");
    for guest in &guests {
        let from = artifacts.join(format!("{}.wasm", guest.package.replace('-', "_")));
        copy_atomically(&from, &guest_dir.join(format!("{}.wasm", guest.component)));
    }
    println!("cargo:rustc-env=HOOKHOST_GUEST_DIR={}", guest_dir.display());
}

fn env_var(name: &str) -> OsString {
    env::var_os(name).unwrap_or_else(|| panic!("cargo did not set {name} for the build script"))
}

/// Every subfolder of the guest folders that has a `Cargo.toml`.
fn discover_guests(workspace: &Path) -> Vec<Guest> {
    let mut guests = Vec::new();
    for (folder, kind) in GUEST_FOLDERS {
        let dir = workspace.join(folder);
        let entries =
            fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("readable directory entry").path();
            let manifest = path.join("Cargo.toml");
            if !manifest.is_file() {
                continue;
            }
            let folder_name = path
                .file_name()
                .expect("entry has a name")
                .to_string_lossy();
            guests.push(Guest {
                package: package_name(&manifest),
                component: format!("{kind}/{folder_name}"),
            });
        }
    }
    guests.sort_by(|a, b| a.component.cmp(&b.component));
    guests
}

/// The `name = "..."` of the `[package]` table, read without a TOML parser:
/// guest manifests are small and written by us.
fn package_name(manifest: &Path) -> String {
    let text = fs::read_to_string(manifest)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", manifest.display()));
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if let Some(value) = line.strip_prefix("name").map(str::trim_start) {
            if let (true, Some(value)) = (in_package, value.strip_prefix('=')) {
                return value.trim().trim_matches('"').to_string();
            }
        }
    }
    panic!(
        "{} has no `name = \"...\"` line in its [package] table",
        manifest.display()
    );
}

/// `<target>/wasm32-guests`, where `<target>` is the outer target directory:
/// `OUT_DIR` is `<target>[/<triple>]/<profile>/build/<pkg>-<hash>/out`.
fn guest_target_dir() -> PathBuf {
    let out_dir = PathBuf::from(env_var("OUT_DIR"));
    let Some(profile_dir) = out_dir.ancestors().nth(3) else {
        return out_dir.join("wasm32-guests");
    };
    let mut target_dir = profile_dir.parent().unwrap_or(profile_dir);
    if target_dir.file_name() == env::var_os("TARGET").as_deref() {
        target_dir = target_dir.parent().unwrap_or(target_dir);
    }
    target_dir.join("wasm32-guests")
}

/// Installs the `wasm32-wasip2` standard library with rustup if the
/// compiler that builds the host does not have it.
fn ensure_guest_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", GUEST_TARGET])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if libdir.is_some_and(|dir| dir.is_dir()) {
        return;
    }
    let mut command = format!("rustup target add {GUEST_TARGET}");
    if let Ok(toolchain) = env::var("RUSTUP_TOOLCHAIN") {
        command.push_str(&format!(" --toolchain {toolchain}"));
    }
    let mut rustup = Command::new("rustup");
    rustup.args(command.split(' ').skip(1));
    match rustup.status() {
        Ok(status) if status.success() => {}
        _ => panic!(
            "the {GUEST_TARGET} target is not installed and `{command}` failed; \
             run it by hand, then build again"
        ),
    }
}

/// Runs one `cargo build --release --target wasm32-wasip2 -p ...` for all
/// guests; on failure, panics with the end of its stderr and the command to
/// reproduce it.
fn build_guests(workspace: &Path, target_dir: &Path, guests: &[Guest]) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace)
        // `--quiet`: only warnings and errors on stderr, so that its tail
        // shown on failure is the errors, not the list of crates compiled.
        .args(["build", "--quiet", "--release", "--target", GUEST_TARGET]);
    for guest in guests {
        cmd.args(["-p", &guest.package]);
    }
    for (key, _) in env::vars_os() {
        let key_str = key.to_string_lossy();
        if STRIPPED_VARS.contains(&key_str.as_ref())
            || STRIPPED_PREFIXES.iter().any(|p| key_str.starts_with(p))
        {
            cmd.env_remove(&key);
        }
    }
    cmd.env("CARGO_TARGET_DIR", target_dir);

    let reproduce = format!(
        "cd {} && CARGO_TARGET_DIR={} cargo build --release --target {GUEST_TARGET} {}",
        workspace.display(),
        target_dir.display(),
        guests
            .iter()
            .map(|g| format!("-p {}", g.package))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let output = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {}: {e}\nto reproduce: {reproduce}",
            cargo.to_string_lossy()
        )
    });
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n");
        panic!(
            "building the wasm guests failed ({}):\n{tail}\n\nto reproduce: {reproduce}",
            output.status
        );
    }
}

/// Copies through a temporary file and a rename, so that a test of another
/// host profile never loads a half-written component.
fn copy_atomically(from: &Path, to: &Path) {
    let dir = to.parent().expect("component path has a folder");
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let tmp = to.with_extension(format!("wasm.tmp{}", std::process::id()));
    fs::copy(from, &tmp).unwrap_or_else(|e| {
        panic!(
            "cannot copy {} to {}: {e} (a guest crate must be a `cdylib` without a custom [lib] name)",
            from.display(),
            tmp.display()
        )
    });
    fs::rename(&tmp, to).unwrap_or_else(|e| panic!("cannot move {} into place: {e}", to.display()));
}
