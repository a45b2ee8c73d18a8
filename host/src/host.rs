//! `Host`: the embedding API. Builds the set of plugins, takes events, hands
//! each to every plugin's worker, and shuts down without losing what it took.

use std::collections::hash_map::{Entry, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use smallvec::SmallVec;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{oneshot, TryAcquireError};

use crate::bindings::Event;
use crate::cache::CacheStats;
use crate::config::{Config, ConfigError};
use crate::engine::{EngineError, Runtime};
use crate::outcome::{Failure, FailureClass, Outcome};
use crate::plugin::{self, LoadError};
use crate::printable;
use crate::registry::{PluginSummary, Registry, ReloadStats, Route, Unfinished};
use crate::watch::Watcher;
use crate::worker::Job;

/// Why a host could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The engine could not be set up.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The plugins folder could not be watched for changes.
    #[error("cannot watch plugins folder {}: {reason}", printable::path(.path))]
    Watch {
        /// The folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The plugins folder could not be listed.
    #[error("cannot read plugins folder {}: {source}", printable::path(.path))]
    PluginsDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime shut down while the host was starting.
    #[error("the async runtime shut down while the host was starting")]
    Interrupted,
}

/// Why an event was not accepted. When `emit` returns an error, no plugin
/// got the event: acceptance is all or nothing.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// A plugin's queue is full; `send` waits for room instead.
    #[error("plugin {plugin} has {capacity} events queued already; the event was not accepted")]
    QueueFull {
        /// The plugin whose queue is full.
        plugin: String,
        /// Its queue capacity.
        capacity: usize,
    },
    /// A plugin's queue holds as many bytes of events as it may
    /// (`queue_mib`); `send` waits for room instead.
    #[error(
        "plugin {plugin} has {queue_bytes} bytes of events queued already (queue_mib); the \
         event was not accepted"
    )]
    QueueBytesFull {
        /// The plugin whose queue is full.
        plugin: String,
        /// Its queue capacity in bytes.
        queue_bytes: usize,
    },
    /// The event is larger than the host or a plugin's queue accepts.
    #[error("the event is {bytes} bytes, over the limit of {limit} bytes ({key})")]
    TooLarge {
        /// The event's size, as its JSON text.
        bytes: usize,
        /// The limit it is over.
        limit: usize,
        /// The config key that sets the limit.
        key: &'static str,
    },
    /// The host is shutting down.
    #[error("the host is shut down")]
    ShutDown,
}

/// Builds a [`Host`].
#[derive(Default)]
pub struct HostBuilder {
    plugins_dir: Option<PathBuf>,
    config_file: Option<PathBuf>,
    watch: bool,
    cache_dir: Option<PathBuf>,
    embedded: Vec<(String, Vec<u8>)>,
    config: Config,
}

impl HostBuilder {
    /// Loads every `*.wasm` file in `dir`.
    pub fn plugins_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.plugins_dir = Some(dir.into());
        self
    }

    /// Watches the plugins folder while the host runs: a new `.wasm` file is
    /// loaded, a changed one swapped in between two events, a removed one
    /// unloaded once its queued events are done.
    pub fn watch(mut self, watch: bool) -> Self {
        self.watch = watch;
        self
    }

    /// Adds a plugin from bytes in memory, named `name`.
    pub fn plugin_bytes(mut self, name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        self.embedded.push((name.into(), bytes.into()));
        self
    }

    /// Caches compiled components in `dir`, unless the config's `[engine]`
    /// section names another folder or turns the cache off.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Reads the config from `path` (see [`Config::from_file`]); with
    /// [`HostBuilder::watch`], edits to it are applied while the host runs.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        let path = path.into();
        self.config = Config::from_file(&path)?;
        self.config_file = Some(path);
        Ok(self)
    }

    /// Uses `config` for limits, enabled switches and settings.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Compiles the plugins (off the async threads, in parallel) and starts
    /// a worker for each. Every `*.wasm` entry of the plugins folder is
    /// tried; one that fails to load (not a regular file, larger than
    /// `[engine] max_plugin_mib`, not a valid hook) is reported through
    /// [`Host::load_errors`] and skipped; the rest still load.
    pub async fn build(mut self) -> Result<Host, HostError> {
        let engine = &self.config.engine;
        let cache_dir = match engine.cache {
            Some(false) => None,
            _ => engine.cache_dir.clone().or(self.cache_dir.take()),
        };
        let max_plugin_bytes = engine.max_plugin_bytes();
        // Setting up the cache reads its key and prunes old entries: file
        // work, kept off the async threads like the listing below.
        let runtime = blocking(move || Runtime::new(cache_dir)).await??;
        let mut sources: Vec<(PathBuf, Option<Vec<u8>>)> = self
            .embedded
            .into_iter()
            .map(|(name, bytes)| (PathBuf::from(format!("{name}.wasm")), Some(bytes)))
            .collect();
        if let Some(dir) = self.plugins_dir.clone() {
            let listed = blocking(move || wasm_files(&dir).map_err(|source| (dir, source))).await?;
            let files = listed.map_err(|(path, source)| HostError::PluginsDir { path, source })?;
            sources.extend(files.into_iter().map(|path| (path, None)));
        }
        sources.retain(|(path, _)| {
            let name = plugin::plugin_name(path);
            let enabled = self.config.is_enabled(&name);
            if !enabled {
                tracing::info!(plugin = name, "disabled in the config, not loaded");
            }
            enabled
        });
        let mut load_errors = Vec::new();
        let mut names: HashMap<String, PathBuf> = HashMap::new();
        sources.retain(|(path, _)| match names.entry(plugin::plugin_name(path)) {
            Entry::Vacant(vacant) => {
                vacant.insert(path.clone());
                true
            }
            Entry::Occupied(taken) => {
                let err = LoadError::DuplicateName {
                    path: path.clone(),
                    name: taken.key().clone(),
                    other: taken.get().clone(),
                };
                tracing::error!("{err}");
                load_errors.push(err);
                false
            }
        });

        let mut loading = tokio::task::JoinSet::new();
        for (index, (path, bytes)) in sources.into_iter().enumerate() {
            let limits = self.config.limits_for(&plugin::plugin_name(&path));
            let load = plugin::load_checked(runtime.clone(), path, bytes, limits, max_plugin_bytes);
            loading.spawn(async move { (index, load.await) });
        }
        let mut results = Vec::new();
        while let Some(joined) = loading.join_next().await {
            match joined {
                Ok(result) => results.push(result),
                Err(err) => tracing::error!("a plugin loader task failed: {err}"),
            }
        }
        results.sort_by_key(|(index, _)| *index);

        let mut plugins = Vec::new();
        for (_, result) in results {
            match result {
                Ok(loaded) => plugins.push(loaded),
                Err(err) => {
                    tracing::error!("{err}");
                    load_errors.push(err);
                }
            }
        }
        let shared = Arc::new(Shared {
            runtime,
            registry: Registry::default(),
            config: RwLock::new(Arc::new(self.config)),
            config_file: self.config_file,
        });
        let config = shared.config();
        for plugin in plugins {
            shared.registry.add(plugin, &config);
        }
        let watcher = match (&self.plugins_dir, self.watch) {
            (Some(dir), true) => Some(Watcher::start(shared.clone(), dir)?),
            _ => None,
        };
        Ok(Host {
            max_event_bytes: config.engine.max_event_bytes(),
            shared,
            load_errors,
            watcher,
        })
    }
}

/// The size an event is counted as, against `[engine] max_event_kib` and
/// each plugin's `queue_mib`: its text fields plus a fixed allowance for the
/// rest, close to the size of its JSON form. Events are shared by every
/// plugin's queue, so this bounds, per plugin, what it can keep queued.
fn json_size(event: &Event) -> usize {
    /// Field names, quotes, the typed fields' numbers.
    const OVERHEAD: usize = 96;
    OVERHEAD
        + event.id.len()
        + event.event_type.len()
        + event.timestamp.len()
        + event.metadata.len()
}

/// Whether an event of `size` bytes can ever fit `route`'s queue.
fn fits_queue(route: &Route, size: u32) -> Result<(), EmitError> {
    if size as usize > route.queue_bytes {
        return Err(EmitError::TooLarge {
            bytes: size as usize,
            limit: route.queue_bytes,
            key: "queue_mib",
        });
    }
    Ok(())
}

/// Runs `work` on a blocking thread. A panic there is resumed here, as if
/// `work` had run inline.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HostError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => Ok(value),
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => Err(HostError::Interrupted),
    }
}

/// Every entry of `dir` whose name ends in `.wasm`, sorted by name, whatever
/// it is: loading says why a directory or a FIFO is not a plugin, rather
/// than this skipping it in silence. Blocking.
pub(crate) fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                if path.extension().is_some_and(|ext| ext == "wasm") {
                    files.push(path);
                }
            }
            Err(err) => tracing::warn!(
                path = %printable::path(dir),
                "cannot read an entry of the plugins folder: {err}"
            ),
        }
    }
    files.sort();
    Ok(files)
}

/// A set of loaded plugins and their workers.
///
/// Create one with [`Host::builder`] inside a tokio runtime. `emit` and
/// `emit_with_report` never block and may be called from any thread; `send`
/// waits for queue room; `shutdown` finishes every accepted event.
pub struct Host {
    shared: Arc<Shared>,
    load_errors: Vec<LoadError>,
    watcher: Option<Watcher>,
    /// The largest event accepted (`[engine] max_event_kib`, as the host
    /// was built).
    max_event_bytes: usize,
}

/// What the host and its plugins-folder watcher share.
pub(crate) struct Shared {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) registry: Registry,
    config: RwLock<Arc<Config>>,
    /// The file the config came from, when it came from one: watched with
    /// the plugins folder.
    pub(crate) config_file: Option<PathBuf>,
}

impl Shared {
    /// The config in force.
    pub(crate) fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .map(|config| config.clone())
            .unwrap_or_default()
    }

    /// Puts `config` in force for every later load and reconfiguration.
    pub(crate) fn set_config(&self, config: Config) {
        if let Ok(mut current) = self.config.write() {
            *current = Arc::new(config);
        }
    }
}

/// Every plugin's outcome for one event.
#[derive(Debug, Clone)]
pub struct Report {
    /// The event's id.
    pub event_id: String,
    /// One outcome per plugin, in plugin name order.
    pub outcomes: Vec<(String, Outcome)>,
}

/// The outcomes of one event, still arriving. Await [`PendingReport::wait`].
pub struct PendingReport {
    event_id: String,
    waiting: Vec<(Arc<str>, oneshot::Receiver<Outcome>)>,
}

impl PendingReport {
    /// Waits until every plugin has handled (or failed) the event.
    pub async fn wait(self) -> Report {
        let mut outcomes = Vec::with_capacity(self.waiting.len());
        for (name, receiver) in self.waiting {
            let outcome = receiver.await.unwrap_or_else(|_| Outcome {
                result: Err(Failure {
                    class: FailureClass::Trap,
                    retryable: true,
                    message: "the plugin's worker stopped before handling the event".into(),
                }),
                version: Arc::from(""),
                latency: Default::default(),
            });
            outcomes.push((name.to_string(), outcome));
        }
        Report {
            event_id: self.event_id,
            outcomes,
        }
    }
}

impl Host {
    /// Starts building a host.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// Files that did not load, with the reason.
    pub fn load_errors(&self) -> &[LoadError] {
        &self.load_errors
    }

    /// What the compiled-component cache did so far.
    pub fn cache_stats(&self) -> CacheStats {
        self.shared.runtime.compiler().stats()
    }

    /// What hot reload did so far.
    pub fn reload_stats(&self) -> ReloadStats {
        self.shared.registry.reload_stats()
    }

    /// Names of the live plugins, in dispatch order.
    pub fn plugin_names(&self) -> Vec<String> {
        let routes = self.shared.registry.routes();
        routes.iter().map(|r| r.name.to_string()).collect()
    }

    /// Queues `event` for every plugin without waiting. Fails, delivering to
    /// no plugin, when a plugin's queue is full.
    pub fn emit(&self, event: Event) -> Result<(), EmitError> {
        self.dispatch(event, false).map(|_| ())
    }

    /// Like [`Host::emit`], and returns a report to await for each plugin's
    /// outcome.
    pub fn emit_with_report(&self, event: Event) -> Result<PendingReport, EmitError> {
        self.dispatch(event, true)
    }

    /// Queues `event` for every plugin, waiting for room in full queues: the
    /// back-pressure a reader of a stream wants. Each plugin gets the event
    /// as soon as its own queue has room.
    pub async fn send(&self, event: Event) -> Result<(), EmitError> {
        let size = self.admit(&event)?;
        let routes = self.shared.registry.routes();
        for route in routes.iter() {
            fits_queue(route, size)?;
        }
        let event = Arc::new(event);
        for route in routes.iter() {
            let queued = route
                .queued_bytes
                .clone()
                .acquire_many_owned(size)
                .await
                .map_err(|_| EmitError::ShutDown)?;
            let permit = route
                .queue
                .reserve()
                .await
                .map_err(|_| EmitError::ShutDown)?;
            permit.send(Job::Event {
                event: event.clone(),
                reply: None,
                queued,
            });
            route.accepted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The size of `event` as counted against queues, if the host accepts
    /// events that large.
    fn admit(&self, event: &Event) -> Result<u32, EmitError> {
        let bytes = json_size(event);
        let too_large = || EmitError::TooLarge {
            bytes,
            limit: self.max_event_bytes,
            key: "[engine] max_event_kib",
        };
        if bytes > self.max_event_bytes {
            return Err(too_large());
        }
        u32::try_from(bytes).map_err(|_| too_large())
    }

    fn dispatch(&self, event: Event, with_report: bool) -> Result<PendingReport, EmitError> {
        let size = self.admit(&event)?;
        let routes = self.shared.registry.routes();
        let mut permits = SmallVec::<[_; 8]>::with_capacity(routes.len());
        for route in routes.iter() {
            fits_queue(route, size)?;
            let queued = route
                .queued_bytes
                .clone()
                .try_acquire_many_owned(size)
                .map_err(|err| match err {
                    TryAcquireError::NoPermits => EmitError::QueueBytesFull {
                        plugin: route.name.to_string(),
                        queue_bytes: route.queue_bytes,
                    },
                    TryAcquireError::Closed => EmitError::ShutDown,
                })?;
            let permit = route.queue.try_reserve().map_err(|err| match err {
                TrySendError::Full(()) => EmitError::QueueFull {
                    plugin: route.name.to_string(),
                    capacity: route.capacity,
                },
                TrySendError::Closed(()) => EmitError::ShutDown,
            })?;
            permits.push((permit, queued));
        }
        let mut report = PendingReport {
            event_id: event.id.clone(),
            waiting: Vec::new(),
        };
        let event = Arc::new(event);
        for ((permit, queued), route) in permits.into_iter().zip(routes.iter()) {
            let reply = with_report.then(|| {
                let (sender, receiver) = oneshot::channel();
                report.waiting.push((route.name.clone(), receiver));
                sender
            });
            permit.send(Job::Event {
                event: event.clone(),
                reply,
                queued,
            });
            route.accepted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(report)
    }

    /// For each running plugin, how many of the events queued for it it has
    /// not handled or failed yet.
    pub fn unfinished(&self) -> Vec<Unfinished> {
        self.shared.registry.unfinished()
    }

    /// Each live plugin's version and counts so far.
    pub fn summaries(&self) -> Vec<PluginSummary> {
        self.shared.registry.summaries()
    }

    /// Stops watching, stops taking events, waits until every accepted
    /// event is handled, and returns every plugin's final counts.
    pub async fn shutdown(mut self) -> Vec<PluginSummary> {
        if let Some(watcher) = self.watcher.take() {
            watcher.stop().await;
        }
        self.shared.registry.shutdown().await
    }
}
