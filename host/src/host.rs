//! `Host`: the embedding API. Builds the set of plugins, takes events, hands
//! each to every plugin's worker, and shuts down without losing what it took.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use smallvec::SmallVec;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::bindings::Event;
use crate::cache::CacheStats;
use crate::config::Config;
use crate::engine::{EngineError, Runtime};
use crate::outcome::{Failure, FailureClass, Outcome, PluginStats};
use crate::plugin::{self, LoadError, LoadedPlugin};
use crate::worker::{Job, Worker};

/// Why a host could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The engine could not be set up.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The plugins folder could not be listed.
    #[error("cannot read plugins folder {path}: {source}")]
    PluginsDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
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
    /// The host is shutting down.
    #[error("the host is shut down")]
    ShutDown,
}

/// Builds a [`Host`].
#[derive(Default)]
pub struct HostBuilder {
    plugins_dir: Option<PathBuf>,
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

    /// Uses `config` for limits, enabled switches and settings.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Compiles the plugins (off the async threads, in parallel) and starts
    /// a worker for each. A file that fails to load is reported through
    /// [`Host::load_errors`] and skipped; the rest still load.
    pub async fn build(mut self) -> Result<Host, HostError> {
        let engine = &self.config.engine;
        let cache_dir = match engine.cache {
            Some(false) => None,
            _ => engine.cache_dir.clone().or(self.cache_dir.take()),
        };
        let runtime = Runtime::new(cache_dir)?;
        let mut sources: Vec<(PathBuf, Option<Vec<u8>>)> = self
            .embedded
            .into_iter()
            .map(|(name, bytes)| (PathBuf::from(format!("{name}.wasm")), Some(bytes)))
            .collect();
        if let Some(dir) = &self.plugins_dir {
            sources.extend(wasm_files(dir)?.into_iter().map(|path| (path, None)));
        }
        sources.retain(|(path, _)| {
            let name = plugin::plugin_name(path);
            let enabled = self.config.is_enabled(&name);
            if !enabled {
                tracing::info!(plugin = name, "disabled in the config, not loaded");
            }
            enabled
        });

        let mut loading = tokio::task::JoinSet::new();
        for (index, (path, bytes)) in sources.into_iter().enumerate() {
            let runtime = runtime.clone();
            loading.spawn_blocking(move || {
                let loaded = match bytes {
                    Some(bytes) => plugin::load_bytes(&runtime, &path, &bytes),
                    None => plugin::load(&runtime, &path),
                };
                (index, loaded)
            });
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
        let mut load_errors = Vec::new();
        for (_, result) in results {
            let checked = match result {
                Ok(loaded) => {
                    let limits = self.config.limits_for(&loaded.name);
                    plugin::probe(&loaded, &limits).await.map(|()| loaded)
                }
                Err(err) => Err(err),
            };
            match checked {
                Ok(loaded) => plugins.push(loaded),
                Err(err) => {
                    tracing::error!("{err}");
                    load_errors.push(err);
                }
            }
        }
        plugins.sort_by(|a, b| a.name.cmp(&b.name));
        let workers = plugins
            .into_iter()
            .map(|plugin| spawn_worker(plugin, &self.config))
            .collect();
        Ok(Host {
            workers,
            load_errors,
            runtime,
        })
    }
}

/// The `.wasm` files directly inside `dir`, sorted by name.
fn wasm_files(dir: &Path) -> Result<Vec<PathBuf>, HostError> {
    let entries = std::fs::read_dir(dir).map_err(|source| HostError::PluginsDir {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm") && path.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// A running plugin as the host sees it.
struct WorkerHandle {
    name: Arc<str>,
    path: PathBuf,
    capacity: usize,
    queue: mpsc::Sender<Job>,
    stats: Arc<Mutex<PluginStats>>,
    task: JoinHandle<()>,
}

fn spawn_worker(plugin: LoadedPlugin, config: &Config) -> WorkerHandle {
    let limits = config.limits_for(&plugin.name);
    tracing::info!(
        plugin = &*plugin.name,
        path = %plugin.path.display(),
        bytes = plugin.size,
        version = &plugin.hash[..12],
        compile_ms = plugin.compile_time.as_millis() as u64,
        "loaded"
    );
    let (queue, receiver) = mpsc::channel(limits.queue_capacity);
    let stats = Arc::new(Mutex::new(PluginStats::default()));
    let (name, path) = (plugin.name.clone(), plugin.path.clone());
    let worker = Worker {
        settings: Arc::new(config.settings_for(&plugin.name)),
        plugin,
        limits,
        stats: stats.clone(),
    };
    WorkerHandle {
        name,
        path,
        capacity: limits.queue_capacity,
        queue,
        stats,
        task: tokio::spawn(worker.run(receiver)),
    }
}

/// A set of loaded plugins and their workers.
///
/// Create one with [`Host::builder`] inside a tokio runtime. `emit` and
/// `emit_with_report` never block and may be called from any thread; `send`
/// waits for queue room; `shutdown` finishes every accepted event.
pub struct Host {
    workers: Vec<WorkerHandle>,
    load_errors: Vec<LoadError>,
    runtime: Arc<Runtime>,
}

/// A plugin's name, file and counts.
#[derive(Debug, Clone)]
pub struct PluginSummary {
    /// The plugin's name.
    pub name: String,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// Its counts so far.
    pub stats: PluginStats,
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

    /// What the compiled-component cache did while loading.
    pub fn cache_stats(&self) -> CacheStats {
        self.runtime.compiler().stats()
    }

    /// Names of the loaded plugins, in dispatch order.
    pub fn plugin_names(&self) -> Vec<String> {
        self.workers.iter().map(|w| w.name.to_string()).collect()
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
        let event = Arc::new(event);
        for worker in &self.workers {
            let permit = worker
                .queue
                .reserve()
                .await
                .map_err(|_| EmitError::ShutDown)?;
            permit.send(Job {
                event: event.clone(),
                reply: None,
            });
        }
        Ok(())
    }

    fn dispatch(&self, event: Event, with_report: bool) -> Result<PendingReport, EmitError> {
        let mut permits = SmallVec::<[_; 8]>::with_capacity(self.workers.len());
        for worker in &self.workers {
            let permit = worker.queue.try_reserve().map_err(|err| match err {
                TrySendError::Full(()) => EmitError::QueueFull {
                    plugin: worker.name.to_string(),
                    capacity: worker.capacity,
                },
                TrySendError::Closed(()) => EmitError::ShutDown,
            })?;
            permits.push(permit);
        }
        let mut report = PendingReport {
            event_id: event.id.clone(),
            waiting: Vec::new(),
        };
        let event = Arc::new(event);
        for (permit, worker) in permits.into_iter().zip(&self.workers) {
            let reply = with_report.then(|| {
                let (sender, receiver) = oneshot::channel();
                report.waiting.push((worker.name.clone(), receiver));
                sender
            });
            permit.send(Job {
                event: event.clone(),
                reply,
            });
        }
        Ok(report)
    }

    /// Each plugin's counts so far.
    pub fn summaries(&self) -> Vec<PluginSummary> {
        self.workers.iter().map(summary).collect()
    }

    /// Stops taking events, waits until every accepted event is handled,
    /// and returns the final counts.
    pub async fn shutdown(self) -> Vec<PluginSummary> {
        let mut summaries = Vec::with_capacity(self.workers.len());
        let mut tasks = Vec::with_capacity(self.workers.len());
        for worker in self.workers {
            // Closing the queue lets the worker finish what is in it and exit.
            drop(worker.queue);
            tasks.push((worker.task, worker.name, worker.path, worker.stats));
        }
        for (task, name, path, stats) in tasks {
            if let Err(err) = task.await {
                tracing::error!(plugin = &*name, "worker task ended abnormally: {err}");
            }
            let stats = stats.lock().map(|s| s.clone()).unwrap_or_default();
            summaries.push(PluginSummary {
                name: name.to_string(),
                path,
                stats,
            });
        }
        summaries
    }
}

fn summary(worker: &WorkerHandle) -> PluginSummary {
    PluginSummary {
        name: worker.name.to_string(),
        path: worker.path.clone(),
        stats: worker.stats.lock().map(|s| s.clone()).unwrap_or_default(),
    }
}
