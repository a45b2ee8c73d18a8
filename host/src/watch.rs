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
use crate::config::Config;
use crate::host::{blocking, wasm_files, HostError, Shared};
use crate::plugin::{self, plugin_name, LoadError, LoadedPlugin};
use crate::printable;
use crate::regular_file::{self, Links};

/// How long a file must go without events before it is loaded. Long enough
/// to cover the gaps between the chunks of a copy in progress, short enough
/// that a swap feels immediate.
const QUIET: Duration = Duration::from_millis(100);

/// How often pending files are checked for quiet.
const POLL: Duration = Duration::from_millis(25);

/// A running watcher. Dropping it stops the file events, and the debounce
/// task ends with them; [`Watcher::stop`] also abandons a reload in progress.
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
        // The config file's folder, not the file: editors save by renaming a
        // new file over the old one, which a watch on the file would lose.
        if let Some(folder) = shared.config_file.as_deref().and_then(Path::parent) {
            let folder = if folder.as_os_str().is_empty() {
                Path::new(".")
            } else {
                folder
            };
            if folder != dir {
                notify
                    .watch(folder, RecursiveMode::NonRecursive)
                    .map_err(watch_error)?;
            }
        }
        tracing::info!(path = %printable::path(dir), "watching the plugins folder");
        Ok(Watcher {
            _notify: notify,
            task: tokio::spawn(debounce(shared, dir.to_owned(), receiver)),
        })
    }

    /// Stops watching; a reload in progress is abandoned.
    pub(crate) async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Collects changed paths and reloads each once it has been quiet.
async fn debounce(
    shared: Arc<Shared>,
    dir: PathBuf,
    mut changes: mpsc::UnboundedReceiver<PathBuf>,
) {
    let config_name = shared
        .config_file
        .as_deref()
        .and_then(Path::file_name)
        .map(ToOwned::to_owned);
    let is_config =
        |path: &Path| config_name.is_some() && path.file_name() == config_name.as_deref();
    let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
    let mut poll = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Some(path) if is_wasm(&path) || is_config(&path) => {
                    pending.insert(path, Instant::now());
                }
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
                    if is_config(&path) {
                        reload_config(&shared, &dir).await;
                    } else {
                        reconcile(&shared, &path).await;
                    }
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
    let config = shared.config();
    if !config.is_enabled(&name) {
        return;
    }
    // The file the live plugin of this name came from, when it is another
    // one: two names differing only in what `plugin_name` escapes.
    let other = registry
        .summaries()
        .into_iter()
        .find(|summary| summary.name == name)
        .map(|summary| summary.path)
        .filter(|live| live != path);
    let max_bytes = config.engine.max_plugin_bytes();
    let read_path = path.to_owned();
    let read = blocking(move || {
        let (file, metadata) = regular_file::open(&read_path, Links::Follow)
            .map_err(|err| LoadError::from_read(&read_path, err))?;
        let stamp = Stamp::of(&metadata);
        let bytes = regular_file::read_opened(file, metadata.len(), max_bytes)
            .map_err(|err| LoadError::from_read(&read_path, err))?;
        let hash = content_hash(&bytes);
        Ok::<_, LoadError>((bytes, hash, stamp))
    })
    .await;
    let read = match read {
        Ok(read) => read,
        Err(err) => {
            tracing::warn!(plugin = name, "reload abandoned: {err}");
            return;
        }
    };
    let (bytes, hash, stamp) = match (read, other) {
        (Err(err), other) if err.is_not_found() => {
            if other.is_none() {
                registry.remove(&name);
            }
            return;
        }
        (_, Some(other)) => {
            let path = path.to_owned();
            reject(shared, LoadError::DuplicateName { path, name, other });
            return;
        }
        (Err(err), None) => {
            reject(shared, err);
            return;
        }
        (Ok(read), None) => read,
    };
    if bytes.is_empty() {
        // What `cp` or a shell redirection leaves for a moment before the
        // content arrives; the write that follows brings the file back here.
        tracing::info!(plugin = name, "file is empty; loaded once it has content");
        return;
    }
    let live = registry.route(&name);
    if live.as_ref().is_some_and(|route| *route.version == hash) {
        tracing::debug!(plugin = name, "file touched but unchanged; not reloaded");
        return;
    }
    let plugin = match load(shared, path, bytes).await {
        Ok(plugin) => plugin,
        Err(err) => {
            if changed_since(path, stamp).await {
                // A slow writer paused for longer than `QUIET`: what was read
                // is not the final content, and the file's next event brings
                // that here.
                tracing::info!(plugin = name, "file changed while being loaded: {err}");
            } else {
                reject(shared, err);
            }
            return;
        }
    };
    match registry.swap(plugin).await {
        Ok(()) => {}
        Err(plugin) => {
            registry.add(plugin, &config);
            registry.count_loaded();
        }
    }
}

/// A file's size and modification time, to tell whether it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    fn of(metadata: &std::fs::Metadata) -> Stamp {
        Stamp {
            len: metadata.len(),
            modified: metadata.modified().ok(),
        }
    }
}

/// Whether the file at `path` is no longer the one `stamp` describes.
async fn changed_since(path: &Path, stamp: Stamp) -> bool {
    let path = path.to_owned();
    let now = blocking(move || std::fs::metadata(&path).map(|m| Stamp::of(&m))).await;
    !matches!(now, Ok(Ok(now)) if now == stamp)
}

/// Re-reads the config file and applies it: plugins disabled now are
/// unloaded, plugins enabled now are loaded, and every live plugin gets its
/// new limits and settings from its next event on. A config that does not
/// parse is rejected, naming file, line and reason, and the one in force
/// stays.
async fn reload_config(shared: &Shared, dir: &Path) {
    let Some(path) = shared.config_file.as_deref() else {
        return;
    };
    let read_path = path.to_owned();
    let config = match blocking(move || Config::from_file(&read_path)).await {
        Ok(Ok(config)) => config,
        Ok(Err(err)) => {
            tracing::error!("rejected config {err}; the previous config stays in force");
            shared.registry.count_config(false);
            return;
        }
        Err(err) => {
            tracing::warn!("config reload abandoned: {err}");
            return;
        }
    };
    let registry = &shared.registry;
    let old = shared.config();
    shared.set_config(config);
    let config = shared.config();
    for route in registry.routes().iter() {
        let name = &*route.name;
        if !config.is_enabled(name) {
            registry.remove(name);
            continue;
        }
        if config.limits_for(name) != old.limits_for(name)
            || config.grants_differ(&old, name)
            || config.hygiene_for(name) != old.hygiene_for(name)
        {
            registry.reconfigure(route, &config).await;
        }
        if config.routing_differs(&old, name) {
            registry.refilter(name, &config);
        }
    }
    let list_dir = dir.to_owned();
    let files = match blocking(move || wasm_files(&list_dir)).await {
        Ok(Ok(files)) => files,
        Ok(Err(err)) => {
            tracing::warn!(
                path = %printable::path(dir),
                "cannot list the plugins folder to load newly enabled plugins: {err}"
            );
            Vec::new()
        }
        Err(err) => {
            tracing::warn!("config reload abandoned: {err}");
            return;
        }
    };
    for path in files {
        let name = plugin_name(&path);
        if config.is_enabled(&name) && registry.route(&name).is_none() {
            reconcile(shared, &path).await;
        }
    }
    tracing::info!(path = %printable::path(path), "config reloaded");
    registry.count_config(true);
}

/// Compiles (on a blocking thread) and checks a new version.
async fn load(shared: &Shared, path: &Path, bytes: Vec<u8>) -> Result<LoadedPlugin, LoadError> {
    let config = shared.config();
    let limits = config.limits_for(&plugin_name(path));
    let max_bytes = config.engine.max_plugin_bytes();
    plugin::load_checked(
        shared.runtime.clone(),
        path.to_owned(),
        Some(bytes),
        limits,
        max_bytes,
    )
    .await
}

fn reject(shared: &Shared, err: LoadError) {
    let is_version = !matches!(err, LoadError::DuplicateName { .. });
    let keeps = if is_version && shared.registry.route(&plugin_name(err.path())).is_some() {
        "; the previous version keeps serving"
    } else {
        ""
    };
    tracing::error!("rejected {err}{keeps}");
    shared.registry.count_rejected(&err);
}
