//! Hot reload: watches the plugins folder and loads, swaps or unloads
//! plugins as their files appear, change or go away, off the dispatch path.
//!
//! File events are debounced per file: a file is looked at only once it has
//! been quiet for `QUIET`, so a burst of writes (a `cp` in chunks, an editor
//! saving through a temp file and a rename) ends in one load of the final
//! content. Content with the hash of the live version is not reloaded. A new
//! version that does not compile, does not fit the hook world or traps when
//! instantiated is rejected with an error naming the file, and the last good
//! version keeps serving.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cache::content_hash;
use crate::host::{HostError, Shared};
use crate::plugin::{self, plugin_name, LoadError, LoadedPlugin};

/// How long a file must go without events before it is loaded. Long enough
/// to cover the gaps between the chunks of a copy in progress, short enough
/// that a swap feels immediate.
const QUIET: Duration = Duration::from_millis(200);

/// How often pending files are checked for quiet.
const POLL: Duration = Duration::from_millis(25);

/// A running watcher; dropping it stops nothing, call [`Watcher::stop`].
pub(crate) struct Watcher {
    _notify: notify::RecommendedWatcher,
    task: JoinHandle<()>,
}

impl Watcher {
    /// Starts watching `dir` for `.wasm` files.
    pub(crate) fn start(shared: Arc<Shared>, dir: &Path) -> Result<Watcher, HostError> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let watch_error = |err: notify::Error| HostError::Watch {
            path: dir.to_owned(),
            reason: err.to_string(),
        };
        let mut notify =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) => {
                    for path in event.paths {
                        let _ = sender.send(path);
                    }
                }
                Err(err) => tracing::warn!("plugins folder watch error: {err}"),
            })
            .map_err(watch_error)?;
        notify
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(watch_error)?;
        tracing::info!(path = %dir.display(), "watching the plugins folder");
        Ok(Watcher {
            _notify: notify,
            task: tokio::spawn(debounce(shared, receiver)),
        })
    }

    /// Stops watching; a reload in progress is abandoned.
    pub(crate) async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Collects changed paths and reloads each once it has been quiet.
async fn debounce(shared: Arc<Shared>, mut changes: mpsc::UnboundedReceiver<PathBuf>) {
    let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
    let mut poll = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Some(path) if is_wasm(&path) => { pending.insert(path, Instant::now()); }
                Some(_) => {}
                None => return,
            },
            _ = poll.tick() => {
                let now = Instant::now();
                let mut quiet: Vec<PathBuf> = pending
                    .iter()
                    .filter(|(_, last)| now.duration_since(**last) >= QUIET)
                    .map(|(path, _)| path.clone())
                    .collect();
                quiet.sort();
                for path in quiet {
                    pending.remove(&path);
                    reconcile(&shared, &path).await;
                }
            }
        }
    }
}

fn is_wasm(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "wasm")
}

/// Brings plugin `path` in line with the file: unload it if the file is
/// gone, load or swap it if its content is new.
async fn reconcile(shared: &Shared, path: &Path) {
    let name = plugin_name(path);
    let registry = &shared.registry;
    if !shared.config.is_enabled(&name) {
        return;
    }
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            registry.remove(&name);
            return;
        }
        Err(source) => {
            reject(
                shared,
                LoadError::Read {
                    path: path.to_owned(),
                    source,
                },
            );
            return;
        }
    };
    let live = registry.route(&name);
    if live
        .as_ref()
        .is_some_and(|route| *route.version == content_hash(&bytes))
    {
        tracing::debug!(plugin = name, "file touched but unchanged; not reloaded");
        return;
    }
    let plugin = match load(shared, path, bytes).await {
        Ok(plugin) => plugin,
        Err(err) => {
            reject(shared, err);
            return;
        }
    };
    match registry.swap(plugin).await {
        Ok(()) => {}
        Err(plugin) => {
            registry.add(plugin, &shared.config);
            registry.count_loaded();
        }
    }
}

/// Compiles (on a blocking thread) and checks a new version.
async fn load(shared: &Shared, path: &Path, bytes: Vec<u8>) -> Result<LoadedPlugin, LoadError> {
    let runtime = shared.runtime.clone();
    let owned_path = path.to_owned();
    let compiled =
        tokio::task::spawn_blocking(move || plugin::load_bytes(&runtime, &owned_path, &bytes))
            .await
            .map_err(|err| LoadError::Invalid {
                path: path.to_owned(),
                reason: format!("the compile task failed: {err}"),
            })??;
    let limits = shared.config.limits_for(&compiled.name);
    plugin::probe(&compiled, &limits).await?;
    Ok(compiled)
}

fn reject(shared: &Shared, err: LoadError) {
    let keeps = if shared.registry.route(&plugin_name(err.path())).is_some() {
        "; the previous version keeps serving"
    } else {
        ""
    };
    tracing::error!("rejected {err}{keeps}");
    shared.registry.count_rejected();
}
