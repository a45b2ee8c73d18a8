//! Hot reload of the plugins folder while events flow: swaps lose and
//! duplicate nothing, bad versions are rejected while the old one serves,
//! half-written files are never loaded, removed plugins finish their queue.

mod common;

use std::path::Path;
use std::time::Duration;

use hookhost::{Host, ReloadStats};

async fn watching(plugins: &Path, cache: &Path) -> Host {
    let host = Host::builder()
        .plugins_dir(plugins)
        .cache_dir(cache)
        .watch(true)
        .build()
        .await
        .expect("host builds");
    assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());
    host
}

fn version(host: &Host, name: &str) -> String {
    host.summaries()
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| s.version)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_plugin_50_times_loses_and_duplicates_no_event() {
    const EVENTS: u64 = 10_000;
    const SWAPS: usize = 50;
    let plugins = common::plugins_dir(&["counts"]);
    let cache = tempfile::tempdir().unwrap();
    let a = std::fs::read(common::fixture("counts")).unwrap();
    let b = common::variant(&a, "version b", 16);
    std::fs::write(plugins.path().join("swapped.wasm"), &a).unwrap();
    let host = watching(plugins.path(), cache.path()).await;
    let (version_a, version_b) = (common::version_of(&a), common::version_of(&b));

    let path = plugins.path().join("swapped.wasm");
    let writer = tokio::spawn(async move {
        for n in 0..SWAPS {
            tokio::time::sleep(Duration::from_millis(400)).await;
            std::fs::write(&path, if n % 2 == 0 { &b } else { &a }).unwrap();
        }
    });
    // Spread the events over the time the swaps take.
    let mut reports = Vec::with_capacity(EVENTS as usize);
    for seq in 1..=EVENTS {
        reports.push(host.emit_with_report(common::event(seq)).expect("accepted"));
        if seq % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    writer.await.unwrap();
    // The last write put back version a (50 is even).
    common::eventually("the last version", || {
        version(&host, "swapped") == version_a
    })
    .await;

    let mut versions = Vec::with_capacity(EVENTS as usize);
    for pending in reports {
        let report = pending.wait().await;
        assert_eq!(
            report.outcomes.len(),
            2,
            "one outcome per plugin: {report:?}"
        );
        for (plugin, outcome) in &report.outcomes {
            assert_eq!(outcome.result, Ok(()), "{plugin}");
        }
        let swapped = &report
            .outcomes
            .iter()
            .find(|(p, _)| p == "swapped")
            .unwrap()
            .1;
        versions.push(swapped.version.to_string());
    }
    assert!(versions.iter().all(|v| *v == version_a || *v == version_b));
    let changes = versions.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        changes >= SWAPS / 2,
        "events saw the versions change {changes} times"
    );

    // Writes closer together than the debounce (a loaded machine can make
    // them so) collapse into one load of the latest content; most swaps
    // still happen one by one.
    let stats = host.reload_stats();
    let summaries = host.shutdown().await;
    assert!(stats.swapped >= SWAPS as u64 / 2, "{stats:?}");
    assert_eq!(
        (stats.loaded, stats.rejected, stats.unloaded),
        (0, 0, 0),
        "{stats:?}"
    );
    for summary in summaries {
        assert_eq!(
            summary.stats.handled, EVENTS,
            "{} handled every event once",
            summary.name
        );
        assert_eq!(summary.stats.failed_total(), 0, "{}", summary.name);
    }
}

#[tokio::test]
async fn a_bad_replacement_is_rejected_and_the_old_version_keeps_serving() {
    let plugins = common::plugins_dir(&["counts"]);
    // `fails-at-instantiation` is larger than the default `max_plugin_mib`
    // (64 MiB of statics); it must fail when instantiated, not for its size.
    let host = Host::builder()
        .plugins_dir(plugins.path())
        .config(common::config(
            "[engine]\nmax_plugin_mib = 128\n[defaults]\nmemory_mib = 16",
        ))
        .watch(true)
        .build()
        .await
        .unwrap();
    let good = version(&host, "counts");
    let path = plugins.path().join("counts.wasm");
    let bad: [Vec<u8>; 4] = [
        b"garbage, not wasm".to_vec(),
        std::fs::read(common::fixture("wrong-export")).unwrap(),
        std::fs::read(common::fixture("unknown-import")).unwrap(),
        std::fs::read(common::fixture("fails-at-instantiation")).unwrap(),
    ];
    for (n, bytes) in bad.iter().enumerate() {
        std::fs::write(&path, bytes).unwrap();
        common::eventually("the rejection", || {
            host.reload_stats().rejected == n as u64 + 1
        })
        .await;
        let report = host
            .emit_with_report(common::event(n as u64))
            .unwrap()
            .wait()
            .await;
        let (_, outcome) = &report.outcomes[0];
        assert_eq!(outcome.result, Ok(()));
        assert_eq!(*outcome.version, good, "the last good version served");
    }
    assert_eq!(host.reload_stats().swapped, 0);
    host.shutdown().await;
}

#[tokio::test]
async fn unchanged_content_is_not_reloaded() {
    let plugins = common::plugins_dir(&["counts", "noop"]);
    let cache = tempfile::tempdir().unwrap();
    let host = watching(plugins.path(), cache.path()).await;
    let same = std::fs::read(plugins.path().join("counts.wasm")).unwrap();
    std::fs::write(plugins.path().join("counts.wasm"), same).unwrap();
    // A change to another file, applied after the touch, marks the time.
    let other = common::variant(&std::fs::read(common::fixture("noop")).unwrap(), "x", 1);
    std::fs::write(plugins.path().join("noop.wasm"), other).unwrap();
    common::eventually("the noop swap", || host.reload_stats().swapped == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        host.reload_stats(),
        ReloadStats {
            swapped: 1,
            ..Default::default()
        }
    );
    host.shutdown().await;
}

#[tokio::test]
async fn a_slow_copy_loads_once_with_the_final_content() {
    let plugins = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let host = watching(plugins.path(), cache.path()).await;
    // A 1 MiB component, written in 64 KiB chunks 10 ms apart, as a slow
    // `cp` would.
    let big = common::variant(
        &std::fs::read(common::fixture("counts")).unwrap(),
        "big",
        1 << 20,
    );
    {
        use std::io::Write;
        let mut file = std::fs::File::create(plugins.path().join("big.wasm")).unwrap();
        for chunk in big.chunks(64 << 10) {
            file.write_all(chunk).unwrap();
            file.flush().unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    common::eventually("the load", || host.reload_stats().loaded == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        host.reload_stats(),
        ReloadStats {
            loaded: 1,
            ..Default::default()
        }
    );
    assert_eq!(version(&host, "big"), common::version_of(&big));
    common::serves_then_shuts_down(host).await;
}

#[tokio::test]
async fn a_file_left_empty_for_a_while_is_loaded_once_written_not_rejected() {
    let plugins = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let host = watching(plugins.path(), cache.path()).await;
    // Created empty, as `cp` or `>` leaves it, and filled three debounce
    // periods later.
    let path = plugins.path().join("late.wasm");
    let file = std::fs::File::create(&path).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(file);
    std::fs::write(&path, std::fs::read(common::fixture("counts")).unwrap()).unwrap();
    common::eventually("the load", || host.reload_stats().loaded == 1).await;
    assert_eq!(
        host.reload_stats(),
        ReloadStats {
            loaded: 1,
            ..Default::default()
        }
    );
    common::serves_then_shuts_down(host).await;
}

#[tokio::test]
async fn a_removed_plugin_finishes_its_queue_then_unloads() {
    let plugins = common::plugins_dir(&["counts", "noop"]);
    let cache = tempfile::tempdir().unwrap();
    let host = watching(plugins.path(), cache.path()).await;
    for seq in 1..=100 {
        host.emit(common::event(seq)).unwrap();
    }
    std::fs::remove_file(plugins.path().join("noop.wasm")).unwrap();
    common::eventually("the unload", || host.plugin_names() == ["counts"]).await;
    assert_eq!(host.reload_stats().unloaded, 1);
    host.emit(common::event(101)).unwrap();
    let summaries = host.shutdown().await;
    let handled = |name: &str| {
        summaries
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .stats
            .handled
    };
    assert_eq!(
        handled("noop"),
        100,
        "every event queued before the removal"
    );
    assert_eq!(handled("counts"), 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_counts_follow_each_worker_through_unload_and_reload() {
    let plugins = common::plugins_dir(&["counts", "noop"]);
    let cache = tempfile::tempdir().unwrap();
    let host = watching(plugins.path(), cache.path()).await;
    for seq in 1..=50 {
        host.emit(common::event(seq)).unwrap();
    }
    let noop = plugins.path().join("noop.wasm");
    let bytes = std::fs::read(&noop).unwrap();
    std::fs::remove_file(&noop).unwrap();
    common::eventually("the unload", || host.plugin_names() == ["counts"]).await;
    std::fs::write(&noop, &bytes).unwrap();
    common::eventually("the reload", || host.plugin_names() == ["counts", "noop"]).await;
    for seq in 51..=60 {
        host.emit(common::event(seq)).unwrap();
    }
    // The new noop worker counts only what it was given: nothing is left
    // over from the one unloaded before it.
    common::eventually("every event finished", || {
        host.unfinished()
            .iter()
            .all(|plugin| plugin.unfinished == 0)
    })
    .await;
    let unfinished = host.unfinished();
    let accepted = |name: &str| {
        unfinished
            .iter()
            .find(|u| u.plugin == name)
            .unwrap()
            .accepted
    };
    assert_eq!(accepted("counts"), 60);
    assert_eq!(accepted("noop"), 10);
    host.shutdown().await;
}

#[tokio::test]
async fn config_edits_apply_while_running_and_a_broken_one_is_rejected() {
    let plugins = common::plugins_dir(&["infinite-loop", "noop"]);
    let folder = tempfile::tempdir().unwrap();
    let config = folder.path().join("hookhost.toml");
    std::fs::write(&config, "[plugins.infinite-loop]\nfuel = 1_000_000\n").unwrap();
    let host = Host::builder()
        .plugins_dir(plugins.path())
        .config_file(&config)
        .unwrap()
        .watch(true)
        .build()
        .await
        .unwrap();
    assert_eq!(
        fuel_message(&host).await,
        "ran out of fuel (1000000 units per event)"
    );

    // A limit and an enabled switch change.
    std::fs::write(
        &config,
        "[plugins.infinite-loop]\nfuel = 2_000_000\n[plugins.noop]\nenabled = false\n",
    )
    .unwrap();
    common::eventually("the new config", || {
        host.reload_stats().configs_applied == 1
    })
    .await;
    assert_eq!(host.plugin_names(), ["infinite-loop"]);
    assert_eq!(
        fuel_message(&host).await,
        "ran out of fuel (2000000 units per event)"
    );

    // A broken edit is rejected; the config in force stays.
    std::fs::write(&config, "[plugins.infinite-loop]\nfuel = \"lots\"\n").unwrap();
    common::eventually("the rejection", || {
        host.reload_stats().configs_rejected == 1
    })
    .await;
    assert_eq!(host.plugin_names(), ["infinite-loop"]);
    assert_eq!(
        fuel_message(&host).await,
        "ran out of fuel (2000000 units per event)"
    );

    // Enabling the plugin again loads it.
    std::fs::write(&config, "[plugins.infinite-loop]\nfuel = 2_000_000\n").unwrap();
    common::eventually("noop again", || host.plugin_names().len() == 2).await;
    host.shutdown().await;
}

/// The message of the `infinite-loop` plugin's failure on one event.
async fn fuel_message(host: &Host) -> String {
    let report = host
        .emit_with_report(common::event(1))
        .unwrap()
        .wait()
        .await;
    let (_, outcome) = report
        .outcomes
        .iter()
        .find(|(p, _)| p == "infinite-loop")
        .unwrap();
    outcome.result.clone().unwrap_err().message
}
