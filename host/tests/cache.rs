//! The compiled-component cache: a restart loads every plugin without
//! compiling it again, and a corrupt entry is detected and rebuilt.

mod common;

use std::time::Duration;

use hookhost::{CacheStats, Host};

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

    let mut entries: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
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
