//! The compiled-component cache: a restart loads every plugin without
//! compiling it again; a corrupt entry, or one this host did not make for
//! that content, is detected and rebuilt; a key file others could read or
//! swap is not used.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hookhost::{CacheStats, Host};
use sha2::{Digest, Sha256};

async fn start(plugins: &std::path::Path, cache: &std::path::Path) -> Host {
    let host = Host::builder()
        .plugins_dir(plugins)
        .cache_dir(cache)
        .build()
        .await
        .expect("host builds");
    assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());
    host
}

#[tokio::test]
async fn a_warm_restart_compiles_nothing() {
    let plugins = common::plugins_dir(&["counts", "noop"]);
    let cache = tempfile::tempdir().unwrap();

    let cold = start(plugins.path(), cache.path()).await;
    assert_eq!(
        cold.cache_stats(),
        CacheStats {
            compiled: 2,
            loaded: 0,
            rebuilt: 0
        }
    );
    common::serves_then_shuts_down(cold).await;

    let warm = start(plugins.path(), cache.path()).await;
    assert_eq!(
        warm.cache_stats(),
        CacheStats {
            compiled: 0,
            loaded: 2,
            rebuilt: 0
        }
    );
    common::serves_then_shuts_down(warm).await;
}

#[tokio::test]
async fn a_corrupt_or_truncated_entry_is_rebuilt_not_trusted() {
    let plugins = common::plugins_dir(&["counts", "noop"]);
    let cache = tempfile::tempdir().unwrap();
    start(plugins.path(), cache.path()).await.shutdown().await;

    let entries = cache_entries(cache.path());
    assert_eq!(entries.len(), 2, "{entries:?}");
    // Flip one byte of code in the first entry, cut the second short.
    let mut code = std::fs::read(&entries[0]).unwrap();
    let middle = code.len() / 2;
    code[middle] ^= 0xff;
    std::fs::write(&entries[0], code).unwrap();
    let code = std::fs::read(&entries[1]).unwrap();
    std::fs::write(&entries[1], &code[..code.len() / 3]).unwrap();

    let host = start(plugins.path(), cache.path()).await;
    assert_eq!(
        host.cache_stats(),
        CacheStats {
            compiled: 2,
            loaded: 0,
            rebuilt: 2
        }
    );
    common::serves_then_shuts_down(host).await;

    let host = start(plugins.path(), cache.path()).await;
    assert_eq!(
        host.cache_stats(),
        CacheStats {
            compiled: 0,
            loaded: 2,
            rebuilt: 0
        }
    );
    common::serves_then_shuts_down(host).await;
}

#[tokio::test]
async fn the_config_can_turn_the_cache_off() {
    let plugins = common::plugins_dir(&["noop"]);
    let cache = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let host = Host::builder()
            .plugins_dir(plugins.path())
            .cache_dir(cache.path())
            .config(common::config("[engine]\ncache = false"))
            .build()
            .await
            .unwrap();
        assert_eq!(host.cache_stats().compiled, 1);
        host.shutdown().await;
    }
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

/// The `.cwasm` entries in `cache`, sorted.
fn cache_entries(cache: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "cwasm"))
        .collect();
    entries.sort();
    entries
}

/// The one event's outcome from the only plugin of `host`.
async fn only_outcome(host: &Host) -> hookhost::Outcome {
    let report = host
        .emit_with_report(common::event(1))
        .unwrap()
        .wait()
        .await;
    assert_eq!(report.outcomes.len(), 1, "{report:?}");
    report.outcomes[0].1.clone()
}

#[tokio::test]
async fn an_entry_planted_under_a_components_name_is_not_used() {
    let cache = tempfile::tempdir().unwrap();
    // The host compiles `panics` and caches it, signed with its key.
    let panics = common::plugins_dir(&["panics"]);
    start(panics.path(), cache.path()).await.shutdown().await;
    let entries = cache_entries(cache.path());
    assert_eq!(entries.len(), 1, "{entries:?}");
    let genuine = std::fs::read(&entries[0]).unwrap();
    let name = entries[0].file_name().unwrap().to_str().unwrap().to_owned();
    let engine_key = name.split_once('-').unwrap().1.to_owned();
    let code = &genuine[32..];

    // Under `noop`'s name: the panicking code with an old-style entry (the
    // SHA-256 of the code, which any writer of the folder can compute), then
    // the host's own entry for `panics`, copied whole.
    let noop = std::fs::read(common::fixture("noop")).unwrap();
    let planted = cache
        .path()
        .join(format!("{}-{engine_key}", common::version_of(&noop)));
    let old_style = [Sha256::digest(code).as_slice(), code].concat();
    let plugins = common::plugins_dir(&["noop"]);
    for (attempt, forged) in [old_style, genuine.clone()].into_iter().enumerate() {
        std::fs::write(&planted, &forged).unwrap();
        let host = start(plugins.path(), cache.path()).await;
        assert_eq!(
            host.cache_stats(),
            CacheStats {
                compiled: 1,
                loaded: 0,
                rebuilt: 1
            },
            "attempt {attempt}"
        );
        let outcome = only_outcome(&host).await;
        assert_eq!(outcome.result, Ok(()), "noop's own code ran: {outcome:?}");
        assert_eq!(*outcome.version, common::version_of(&noop));
        host.shutdown().await;
        assert_ne!(std::fs::read(&planted).unwrap(), forged, "replaced");
    }

    // The rebuilt entry is the host's own: the next start loads it.
    let host = start(plugins.path(), cache.path()).await;
    assert_eq!(
        host.cache_stats(),
        CacheStats {
            compiled: 0,
            loaded: 1,
            rebuilt: 0
        }
    );
    assert_eq!(only_outcome(&host).await.result, Ok(()));
    host.shutdown().await;
}

/// Starts a host on `noop` twice with `cache`, and asserts that both
/// compiled it and that no entry was written: the cache was not used.
async fn assert_cache_unused(cache: &Path) {
    let plugins = common::plugins_dir(&["noop"]);
    for _ in 0..2 {
        let host = start(plugins.path(), cache).await;
        assert_eq!(
            host.cache_stats(),
            CacheStats {
                compiled: 1,
                loaded: 0,
                rebuilt: 0
            }
        );
        common::serves_then_shuts_down(host).await;
    }
    assert_eq!(cache_entries(cache), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn the_key_is_created_private_and_a_group_or_world_readable_key_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    let plugins = common::plugins_dir(&["noop"]);
    start(plugins.path(), cache.path()).await.shutdown().await;
    let key = cache.path().join("key");
    let meta = std::fs::symlink_metadata(&key).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    for entry in cache_entries(cache.path()) {
        std::fs::remove_file(entry).unwrap();
    }
    let before = std::fs::read(&key).unwrap();
    assert_cache_unused(cache.path()).await;
    let meta = std::fs::symlink_metadata(&key).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o644, "left as it was");
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

#[tokio::test]
async fn a_key_that_is_a_symlink_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("key");
    std::fs::write(&target, [7u8; 32]).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&target, cache.path().join("key")).unwrap();
    assert_cache_unused(cache.path()).await;
    assert!(std::fs::symlink_metadata(cache.path().join("key"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[tokio::test]
async fn stale_entries_of_other_engine_versions_are_pruned() {
    let cache = tempfile::tempdir().unwrap();
    let old = std::time::SystemTime::now() - hookhost::cache::STALE_AFTER - Duration::from_secs(60);
    let write = |name: &str, modified: std::time::SystemTime| {
        let path = cache.path().join(name);
        std::fs::write(&path, b"old code").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        path
    };
    let stale = write("aaaa-0000000000000000.cwasm", old);
    let recent = write("bbbb-0000000000000000.cwasm", std::time::SystemTime::now());
    let unrelated = write("notes.txt", old);
    let plugins = common::plugins_dir(&["noop"]);
    let host = start(plugins.path(), cache.path()).await;
    host.shutdown().await;
    assert!(!stale.exists(), "an old entry of another engine is deleted");
    assert!(recent.exists(), "a recent one is kept");
    assert!(unrelated.exists(), "other files are left alone");
}

/// Giving the key to another user needs root, so this test is ignored by a
/// plain `cargo test`; `.ci/run` (which runs as root) runs it with
/// `cargo test --test cache -- --ignored`. Run without root, it fails
/// saying so rather than passing without checking.
#[tokio::test]
#[ignore = "needs root: cargo test --test cache -- --ignored, as root"]
async fn a_key_owned_by_another_user_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let plugins = common::plugins_dir(&["noop"]);
    start(plugins.path(), cache.path()).await.shutdown().await;
    for entry in cache_entries(cache.path()) {
        std::fs::remove_file(entry).unwrap();
    }
    let key = cache.path().join("key");
    // 65534 is `nobody` on Linux distributions.
    if let Err(err) = std::os::unix::fs::chown(&key, Some(65534), Some(65534)) {
        panic!("this test needs root, to give the key to another user: {err}");
    }
    assert_cache_unused(cache.path()).await;
}
