//! `Host`: the embedding API. Builds the set of plugins, takes events, hands
//! each to every plugin's worker, and shuts down without losing what it took.

use std::collections::hash_map::{Entry, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use tokio::sync::oneshot;

use crate::bindings::Event;
use crate::cache::CacheStats;
use crate::config::{Config, ConfigError, OnFull};
use crate::delivery::{
    self, DeadLetterError, DeadLetters, NewDeadLetter, Recovered, ReplayReport, Wal, WalError,
};
use crate::engine::{EngineError, Runtime};
use crate::observe::admission::{AdmissionRefusal, AdmissionStats};
use crate::outcome::{Failure, FailureClass, Fate, Outcome};
use crate::plugin::{self, LoadError};
use crate::printable;
use crate::queue::QueueError;
use crate::registry::{PluginSummary, Registry, Rejection, ReloadStats, Route, Unfinished};
use crate::routing::dedup::RenderedKey;
use crate::routing::store::{RoutingStore, RoutingStoreError};
use crate::routing::EventFields;
use crate::routing::Skip;
use crate::watch::Watcher;
use crate::worker::{Delivery, Job, Mode};

/// How long [`Host::shutdown`] waits for pending deliveries (retries, events
/// held by a circuit breaker) unless [`HostBuilder::drain_timeout`] says
/// otherwise.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// The write-ahead log in the data directory could not be opened.
    #[error(transparent)]
    Log(#[from] WalError),
    /// The dead-letter store could not be opened.
    #[error(transparent)]
    DeadLetters(#[from] DeadLetterError),
    /// The routing store (deduplication state) could not be opened.
    #[error(transparent)]
    Routing(#[from] RoutingStoreError),
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
    /// The write-ahead log could not write the event (a full or read-only
    /// disk): it was not accepted.
    #[error(transparent)]
    Log(Arc<WalError>),
    /// The host is shutting down.
    #[error("the host is shut down")]
    ShutDown,
}

/// Why [`Host::admit_all`] accepted none of its events.
#[derive(Debug, thiserror::Error)]
#[error("event {index}: {error}")]
pub struct Refused {
    /// The position of the event refused, from 0.
    pub index: usize,
    /// Why it was refused.
    pub error: EmitError,
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
    data_dir: Option<PathBuf>,
    drain_timeout: Option<Duration>,
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

    /// Keeps a write-ahead log and the dead letters in `dir`: an event is
    /// accepted once it is written there, and a restart delivers what a
    /// crash left undelivered. Without it, the host keeps events and dead
    /// letters in memory only.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// How long [`Host::shutdown`] waits for pending deliveries
    /// ([`DEFAULT_DRAIN_TIMEOUT`] unless set).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = Some(timeout);
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
        let (wal, recovered) = match self.data_dir.clone() {
            Some(dir) => {
                let (wal, recovered) = blocking(move || Wal::open(&dir)).await??;
                (Some(wal), recovered)
            }
            None => (None, Vec::new()),
        };
        let dead_letters = Arc::new(match &self.data_dir {
            Some(dir) => DeadLetters::open(&delivery::dead_letters_file(dir)).await?,
            None => DeadLetters::in_memory().await?,
        });
        let routing_store = match &self.data_dir {
            Some(dir) => Some(RoutingStore::open(dir).await?),
            None => None,
        };
        let shared = Arc::new(Shared {
            runtime,
            registry: Registry::new(dead_letters, wal, routing_store),
            config: RwLock::new(Arc::new(self.config)),
            config_file: self.config_file,
        });
        let config = shared.config();
        for plugin in plugins {
            shared.registry.add(plugin, &config);
        }
        match &self.data_dir {
            Some(dir) => {
                tracing::info!(
                    "write-ahead log in {}: {} events in flight recovered",
                    printable::path(dir),
                    recovered.len()
                );
                requeue(&shared.registry, recovered).await;
            }
            None => tracing::info!(
                "no data directory: accepted events and dead letters are kept in memory only, \
                 so a crash loses the events not yet delivered"
            ),
        }
        let watcher = match (&self.plugins_dir, self.watch) {
            (Some(dir), true) => Some(Watcher::start(shared.clone(), dir)?),
            _ => None,
        };
        Ok(Host {
            admission: AdmissionStats::default(),
            max_event_bytes: config.engine.max_event_bytes(),
            drain_timeout: self.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT),
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

/// Hands the events the write-ahead log recovered to their plugins, ahead
/// of any new event; deliveries for plugins that are not loaded go to the
/// dead letters.
async fn requeue(registry: &Registry, recovered: Vec<Recovered>) {
    let mut orphans = Vec::new();
    for entry in recovered {
        let event = match Event::from_json(&entry.event_json) {
            Ok(event) => Arc::new(event),
            Err(err) => {
                for (plugin, attempts) in entry.pending.clone() {
                    let error =
                        format!("the write-ahead log holds an event that does not parse: {err}");
                    orphans.push((
                        orphan(&plugin, &entry, None, "error", attempts, error),
                        plugin,
                        entry.seq,
                    ));
                }
                continue;
            }
        };
        let bytes = json_size(&event);
        for (plugin, attempts) in entry.pending.clone() {
            match registry.route(&plugin) {
                Some(route) => {
                    let mut delivery = Delivery::new(event.clone(), Some(entry.seq), bytes);
                    delivery.attempts = attempts;
                    if route.queue.push_unbounded(Job::Event(delivery)).is_ok() {
                        route.accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => {
                    let error = format!(
                        "plugin {plugin} was not loaded when the write-ahead log was recovered; \
                         once it is, `hookhost dlq replay --plugin {plugin}` delivers this event"
                    );
                    let letter = orphan(&plugin, &entry, Some(&event), "unloaded", attempts, error);
                    orphans.push((letter, plugin, entry.seq));
                }
            }
        }
    }
    if orphans.is_empty() {
        return;
    }
    let letters: Vec<NewDeadLetter> = orphans
        .iter()
        .map(|(letter, _, _)| letter.clone())
        .collect();
    match registry.dead_letters.add(&letters).await {
        Ok(()) => {
            if let Some(wal) = &registry.wal {
                for (_, plugin, seq) in orphans {
                    wal.completed(&Arc::from(plugin), vec![seq]);
                }
            }
            tracing::warn!(
                "{} recovered deliveries went to the dead letters",
                letters.len()
            );
        }
        Err(err) => tracing::error!(
            "cannot put {} recovered deliveries in the dead letters ({err}); they stay in the \
             write-ahead log",
            letters.len()
        ),
    }
}

/// The dead letter of a recovered delivery that cannot be made.
fn orphan(
    plugin: &str,
    entry: &Recovered,
    event: Option<&Event>,
    class: &str,
    attempts: u32,
    error: String,
) -> NewDeadLetter {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    NewDeadLetter {
        plugin: plugin.to_owned(),
        plugin_version: String::new(),
        event_id: event.map(|e| e.id.clone()).unwrap_or_default(),
        event_type: event.map(|e| e.event_type.clone()).unwrap_or_default(),
        event_json: entry.event_json.clone(),
        class: class.to_owned(),
        attempts,
        first_failed_at: now.clone(),
        last_failed_at: now,
        last_error: error,
    }
}

/// Why `route`'s queue did not take an event of `bytes`, as an emit error.
fn queue_error(route: &Route, error: QueueError, bytes: usize) -> EmitError {
    match error {
        QueueError::Full { events: true } => EmitError::QueueFull {
            plugin: route.name.to_string(),
            capacity: route.capacity,
        },
        QueueError::Full { events: false } => EmitError::QueueBytesFull {
            plugin: route.name.to_string(),
            queue_bytes: route.queue_bytes,
        },
        QueueError::TooLarge => EmitError::TooLarge {
            bytes,
            limit: route.queue_bytes,
            key: "queue_mib",
        },
        QueueError::Closed => EmitError::ShutDown,
    }
}

/// The names of the plugins an event goes to, for its log record.
fn route_names(routes: &[&Arc<Route>]) -> Vec<Arc<str>> {
    routes.iter().map(|route| route.name.clone()).collect()
}

/// Where an event goes: the routes whose filters let it through, with its
/// `dedup_key` for each of them that has one, and the others with why not.
struct Routed<'r> {
    targets: SmallVec<[&'r Arc<Route>; 8]>,
    /// Each target's rendered `dedup_key`, in order; empty (no allocation)
    /// when no target has one, which [`Routed::keys`] reads as `None`s.
    keys: Vec<Option<RenderedKey>>,
    skipped: Vec<(&'r Arc<Route>, Skip)>,
}

impl Routed<'_> {
    /// The targets' keys, in order, as many as there are targets.
    fn keys(keys: Vec<Option<RenderedKey>>) -> impl Iterator<Item = Option<RenderedKey>> {
        keys.into_iter().chain(std::iter::repeat(None))
    }
}

/// Routes `event`. Routing happens before queueing, so a filtered event
/// costs its plugin nothing; the event is read once for every route (see
/// [`EventFields`]), and each `dedup_key` rendered once however many plugins
/// share the template (the workers decide with it; a template that fails
/// to render is left to the worker, which logs why).
fn route<'r>(routes: &'r [Arc<Route>], event: &Event) -> Routed<'r> {
    let mut fields = EventFields::new(event);
    let mut targets: SmallVec<[&Arc<Route>; 8]> = SmallVec::new();
    let mut skipped = Vec::new();
    for route in routes {
        match route.filter.check_with(&mut fields) {
            Ok(()) => targets.push(route),
            Err(skip) => skipped.push((route, skip)),
        }
    }
    let mut keys: Vec<Option<RenderedKey>> = Vec::new();
    let deduplicated = targets.iter().any(|route| route.dedup.is_some());
    for route in targets.iter().filter(|_| deduplicated) {
        let rendered = route.dedup.as_ref().and_then(|rule| {
            let done = keys.iter().flatten().find(|key| key.rule == rule.id());
            match done {
                Some(key) => Some(*key),
                None => rule.rendered_with(&mut fields).ok(),
            }
        });
        keys.push(rendered);
    }
    Routed {
        targets,
        keys,
        skipped,
    }
}

/// Room for an event of `size` in a `wait` plugin's queue, blocking the
/// thread until there is some. On a tokio worker thread the wait is
/// announced to tokio (`block_in_place`), so the plugin's worker keeps
/// running elsewhere; a current-thread runtime could not run it while this
/// thread waits, so there the queue's fullness is an error, as for `reject`.
fn wait_for_room(
    route: &Route,
    size: usize,
) -> Result<crate::queue::Reservation<'_, Job>, QueueError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => {
            tokio::task::block_in_place(|| route.queue.reserve_blocking(size))
        }
        Ok(_) => route.queue.try_reserve(size),
        Err(_) => route.queue.reserve_blocking(size),
    }
}

/// Hands events a `drop_oldest` queue dropped to make room to the plugin's
/// worker, which puts them in the dead letters.
fn requeue_dropped(route: &Route, dropped: Vec<Job>) {
    for job in dropped {
        if let Job::Event(delivery) = job {
            if let Err(Job::Dropped(delivery)) = route.queue.push_unbounded(Job::Dropped(delivery))
            {
                // The plugin was unloaded at this very moment.
                tracing::error!(
                    plugin = &*route.name,
                    event = %printable::escape_controls(&delivery.event.id),
                    "an event dropped from the full queue (on_full = \"drop_oldest\") could not \
                     be put in the dead letters: the plugin was being unloaded"
                );
            }
        }
    }
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
    /// How long `shutdown` waits for pending deliveries.
    drain_timeout: Duration,
    /// Events accepted and refused, for the metrics.
    admission: AdmissionStats,
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
    /// One outcome per plugin the event went to, in plugin name order.
    pub outcomes: Vec<(String, Outcome)>,
    /// The plugins whose routing kept the event from them, in name order,
    /// with the rule that did (`events`, `min_severity`, `tables`, ...).
    pub skipped: Vec<(String, String)>,
}

/// The outcomes of one event, still arriving. Await [`PendingReport::wait`].
pub struct PendingReport {
    event_id: String,
    waiting: Vec<(Arc<str>, oneshot::Receiver<Outcome>)>,
    skipped: Vec<(String, String)>,
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
                fate: Fate::Stopped,
                version: Arc::from(""),
                latency: Default::default(),
            });
            outcomes.push((name.to_string(), outcome));
        }
        Report {
            event_id: self.event_id,
            outcomes,
            skipped: self.skipped,
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

    /// For each plugin name, the last file hot reload refused, unless a
    /// version of it loaded since.
    pub fn reload_rejections(&self) -> Vec<Rejection> {
        self.shared.registry.rejections()
    }

    /// Events accepted and refused so far, from every source.
    pub fn admission_stats(&self) -> &AdmissionStats {
        &self.admission
    }

    /// The config in force (hot reload replaces it).
    pub fn config(&self) -> Arc<Config> {
        self.shared.config()
    }

    /// Names of the live plugins, in dispatch order.
    pub fn plugin_names(&self) -> Vec<String> {
        let routes = self.shared.registry.routes();
        routes.iter().map(|r| r.name.to_string()).collect()
    }

    /// Queues `event` for every plugin. Fails, delivering to no plugin,
    /// when a plugin whose `on_full` is `reject` has a full queue; waits
    /// (blocking the thread) for a plugin whose `on_full` is `wait`; drops
    /// that plugin's oldest queued event for `drop_oldest`. With a data
    /// directory, returns once the event is in the write-ahead log.
    pub fn emit(&self, event: Event) -> Result<(), EmitError> {
        let result = self.dispatch(event, false, true).map(|_| ());
        self.admission.count(&result);
        result
    }

    /// Like [`Host::emit`], but never waits for room: a full queue fails
    /// the event whatever the plugin's `on_full` (`drop_oldest` still drops
    /// the oldest). For a caller that must not be held up, such as a
    /// profiler's own thread.
    pub fn try_emit(&self, event: Event) -> Result<(), EmitError> {
        let result = self.dispatch(event, false, false).map(|_| ());
        self.admission.count(&result);
        result
    }

    /// Like [`Host::emit`], and returns a report to await for each plugin's
    /// outcome of the first delivery.
    pub fn emit_with_report(&self, event: Event) -> Result<PendingReport, EmitError> {
        let result = self.dispatch(event, true, true);
        self.admission.count(&result);
        result
    }

    /// Queues `event` for every plugin, waiting for room in full queues
    /// (but dropping the oldest event of a `drop_oldest` plugin): the
    /// back-pressure a reader of a stream wants. With a data directory, the
    /// event is in the write-ahead log before any plugin gets it.
    pub async fn send(&self, event: Event) -> Result<(), EmitError> {
        self.send_batch(vec![event])
            .await
            .pop()
            .unwrap_or(Err(EmitError::ShutDown))
    }

    /// [`Host::send`] for many events at once, in order: one write-ahead
    /// log sync for all of them. One result per event.
    pub async fn send_batch(&self, events: Vec<Event>) -> Vec<Result<(), EmitError>> {
        let results = self.send_batch_uncounted(events).await;
        for result in &results {
            self.admission.count(result);
        }
        results
    }

    async fn send_batch_uncounted(&self, events: Vec<Event>) -> Vec<Result<(), EmitError>> {
        let all = self.shared.registry.routes();
        let mut results = Vec::with_capacity(events.len());
        let mut admitted = Vec::with_capacity(events.len());
        for event in events {
            let routed = route(&all, &event);
            match self.admit(&event, &routed.targets) {
                Ok(size) => {
                    results.push(Ok(()));
                    // Shared from here: each later step moves a pointer,
                    // not the event.
                    admitted.push((results.len() - 1, Arc::new(event), size, routed));
                }
                Err(err) => results.push(Err(err)),
            }
        }
        let seqs = match &self.shared.registry.wal {
            Some(wal) if !admitted.is_empty() => {
                let records = admitted
                    .iter()
                    .map(|(_, event, _, routed)| (event.to_json(), route_names(&routed.targets)))
                    .collect();
                match wal.append(records).await {
                    Ok(seqs) => seqs.into_iter().map(Some).collect(),
                    Err(err) => {
                        let err = Arc::new(err);
                        for (index, ..) in &admitted {
                            results[*index] = Err(EmitError::Log(err.clone()));
                        }
                        return results;
                    }
                }
            }
            _ => vec![None; admitted.len()],
        };
        for ((index, event, size, routed), seq) in admitted.into_iter().zip(seqs) {
            let Routed {
                targets: routes,
                keys,
                skipped,
            } = routed;
            // Room in every queue first, so that the event goes to every
            // plugin or to none.
            let mut reservations = SmallVec::<[_; 8]>::with_capacity(routes.len());
            for route in routes.iter() {
                match route.queue.reserve(size).await {
                    Ok(reservation) => reservations.push(reservation),
                    Err(err) => {
                        results[index] = Err(queue_error(route, err, size));
                        break;
                    }
                }
            }
            if results[index].is_err() {
                // Refused after all: the log must not bring it back.
                if let (Some(wal), Some(seq)) = (&self.shared.registry.wal, seq) {
                    for route in routes.iter() {
                        wal.completed(&route.name, vec![seq]);
                    }
                }
                continue;
            }
            for (route, _) in skipped {
                route.filtered.fetch_add(1, Ordering::Relaxed);
            }
            // With traces on, the event's span, which its deliveries keep.
            let _accepted = crate::observe::traces::accepted(&event);
            let targets = reservations
                .into_iter()
                .zip(routes.iter())
                .zip(Routed::keys(keys));
            for ((reservation, route), rendered) in targets {
                let mut delivery = Delivery::new(event.clone(), seq, size);
                delivery.rendered = rendered;
                requeue_dropped(route, reservation.push(Job::Event(delivery)));
                route.accepted.fetch_add(1, Ordering::Relaxed);
            }
        }
        results
    }

    /// Accepts all of `events` or none of them, for a source that answers
    /// its caller (the HTTP ingest). Every event is checked and given room
    /// in every queue it goes to before any is written to the write-ahead
    /// log (in one write) and queued. A full queue refuses at once under
    /// `reject`, and under `drop_oldest` drops as [`Host::emit`] does;
    /// under `wait` it is waited for, at most `patience` for the whole
    /// call. Returns once the events are accepted: with a data directory,
    /// once they are in the write-ahead log. On error, no plugin got any
    /// of them, and the error names the first event refused.
    pub async fn admit_all(&self, events: Vec<Event>, patience: Duration) -> Result<(), Refused> {
        let count = events.len();
        let result = self.admit_all_uncounted(events, patience).await;
        match &result {
            Ok(()) => self.admission.count_accepted(count),
            Err(refused) => {
                let reason = AdmissionRefusal::of(&refused.error);
                self.admission.count_refused(reason, count);
            }
        }
        result
    }

    async fn admit_all_uncounted(
        &self,
        events: Vec<Event>,
        patience: Duration,
    ) -> Result<(), Refused> {
        let all = self.shared.registry.routes();
        let mut planned = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            let routed = route(&all, event);
            let size = self
                .admit(event, &routed.targets)
                .map_err(|error| Refused { index, error })?;
            planned.push((routed, size));
        }
        let deadline = tokio::time::Instant::now() + patience;
        let mut reservations = Vec::with_capacity(events.len());
        for (index, (routed, size)) in planned.iter().enumerate() {
            let mut held = SmallVec::<[_; 8]>::with_capacity(routed.targets.len());
            for route in routed.targets.iter() {
                let reserved = match route.on_full {
                    OnFull::Wait => {
                        let waiting = route.queue.reserve(*size);
                        match tokio::time::timeout_at(deadline, waiting).await {
                            Ok(reserved) => reserved,
                            // Still full at the deadline: one last look
                            // says which bound it is.
                            Err(_) => route.queue.try_reserve(*size),
                        }
                    }
                    OnFull::Reject | OnFull::DropOldest => route.queue.try_reserve(*size),
                };
                let reservation = reserved.map_err(|err| Refused {
                    index,
                    error: queue_error(route, err, *size),
                })?;
                held.push(reservation);
            }
            reservations.push(held);
        }
        let seqs: Vec<Option<u64>> = match &self.shared.registry.wal {
            Some(wal) => {
                let records = events
                    .iter()
                    .zip(&planned)
                    .map(|(event, (routed, _))| (event.to_json(), route_names(&routed.targets)))
                    .collect();
                let seqs = wal.append(records).await.map_err(|err| Refused {
                    index: 0,
                    error: EmitError::Log(Arc::new(err)),
                })?;
                seqs.into_iter().map(Some).collect()
            }
            None => vec![None; events.len()],
        };
        let queued = events.into_iter().zip(planned).zip(reservations).zip(seqs);
        for (((event, (routed, size)), held), seq) in queued {
            let Routed {
                targets,
                keys,
                skipped,
            } = routed;
            for (route, _) in skipped {
                route.filtered.fetch_add(1, Ordering::Relaxed);
            }
            // With traces on, the event's span, which its deliveries keep.
            let _accepted = crate::observe::traces::accepted(&event);
            let event = Arc::new(event);
            let deliveries = held.into_iter().zip(targets.iter()).zip(Routed::keys(keys));
            for ((reservation, route), rendered) in deliveries {
                let mut delivery = Delivery::new(event.clone(), seq, size);
                delivery.rendered = rendered;
                requeue_dropped(route, reservation.push(Job::Event(delivery)));
                route.accepted.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// The size of `event` as counted against queues, if the host and the
    /// queue of every plugin it goes to can ever take an event that large.
    fn admit(&self, event: &Event, routes: &[&Arc<Route>]) -> Result<usize, EmitError> {
        let bytes = json_size(event);
        if bytes > self.max_event_bytes {
            return Err(EmitError::TooLarge {
                bytes,
                limit: self.max_event_bytes,
                key: "[engine] max_event_kib",
            });
        }
        if let Some(route) = routes.iter().find(|route| bytes > route.queue_bytes) {
            return Err(queue_error(route, QueueError::TooLarge, bytes));
        }
        Ok(bytes)
    }

    /// Queues `event` for every plugin its routes let it go to; `wait`:
    /// whether a full `on_full = "wait"` queue is waited for.
    fn dispatch(
        &self,
        event: Event,
        with_report: bool,
        wait: bool,
    ) -> Result<PendingReport, EmitError> {
        let all = self.shared.registry.routes();
        let Routed {
            targets: routes,
            keys,
            skipped,
        } = route(&all, &event);
        let size = self.admit(&event, &routes)?;
        let mut reservations = SmallVec::<[_; 8]>::with_capacity(routes.len());
        for route in routes.iter() {
            let reserved = match route.on_full {
                OnFull::Wait if wait => wait_for_room(route, size),
                OnFull::Wait | OnFull::Reject | OnFull::DropOldest => route.queue.try_reserve(size),
            };
            reservations.push(reserved.map_err(|err| queue_error(route, err, size))?);
        }
        let seq = match &self.shared.registry.wal {
            Some(wal) => {
                let record = vec![(event.to_json(), route_names(&routes))];
                let seqs = wal
                    .append_blocking(record)
                    .map_err(|err| EmitError::Log(Arc::new(err)))?;
                seqs.first().copied()
            }
            None => None,
        };
        let mut report = PendingReport {
            event_id: event.id.clone(),
            waiting: Vec::new(),
            skipped: Vec::new(),
        };
        for (route, skip) in skipped {
            route.filtered.fetch_add(1, Ordering::Relaxed);
            if with_report {
                report
                    .skipped
                    .push((route.name.to_string(), skip.to_string()));
            }
        }
        // With traces on, the event's span, which its deliveries keep.
        let _accepted = crate::observe::traces::accepted(&event);
        let event = Arc::new(event);
        let targets = reservations
            .into_iter()
            .zip(routes.iter())
            .zip(Routed::keys(keys));
        for ((reservation, route), rendered) in targets {
            let mut delivery = Delivery::new(event.clone(), seq, size);
            delivery.rendered = rendered;
            if with_report {
                let (sender, receiver) = oneshot::channel();
                report.waiting.push((route.name.clone(), receiver));
                delivery.reply = Some(sender);
            }
            requeue_dropped(route, reservation.push(Job::Event(delivery)));
            route.accepted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(report)
    }

    /// Whether the host keeps a write-ahead log (it has a data directory):
    /// then [`Host::emit`] and [`Host::try_emit`] wait for the event's disk
    /// sync; without one they never wait on the disk.
    pub fn keeps_log(&self) -> bool {
        self.shared.registry.wal.is_some()
    }

    /// The dead letters: events that failed for good, with the reason.
    pub fn dead_letters(&self) -> &DeadLetters {
        &self.shared.registry.dead_letters
    }

    /// Delivers the dead letters (of `plugin`, or all) again, once each,
    /// through the plugins as loaded and configured now: each that succeeds
    /// is removed from the store, each that fails again is updated there.
    /// `progress` is told how many are done out of how many.
    pub async fn replay_dead_letters(
        &self,
        plugin: Option<&str>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<ReplayReport, DeadLetterError> {
        let registry = &self.shared.registry;
        let deliver = |name: String, event: Event| {
            let route = registry.route(&name);
            async move {
                let route = route?;
                let (sender, receiver) = oneshot::channel();
                let mut delivery = Delivery::new(Arc::new(event), None, 0);
                delivery.mode = Mode::Replay;
                delivery.reply = Some(sender);
                route.queue.push_unbounded(Job::Event(delivery)).ok()?;
                receiver.await.ok()
            }
        };
        delivery::replay::replay(&registry.dead_letters, plugin, deliver, progress).await
    }

    /// For each running plugin, how many of the events queued for it it has
    /// not completed yet (handled, put in the dead letters, or left in the
    /// write-ahead log; an event waiting for a retry is not completed).
    pub fn unfinished(&self) -> Vec<Unfinished> {
        self.shared.registry.unfinished()
    }

    /// Each live plugin's version and counts so far.
    pub fn summaries(&self) -> Vec<PluginSummary> {
        self.shared.registry.summaries()
    }

    /// Stops watching and taking events, delivers what is queued and
    /// waits for pending retries, up to the drain timeout
    /// ([`HostBuilder::drain_timeout`]); returns every plugin's final counts.
    pub async fn shutdown(self) -> Vec<PluginSummary> {
        let timeout = self.drain_timeout;
        self.shutdown_within(timeout).await
    }

    /// [`Host::shutdown`] with a drain timeout of `timeout`: no retry is
    /// made after it. Retries still waiting then, and events a plugin's open
    /// circuit breaker holds back, stay in the write-ahead log for the next
    /// start or, without a data directory, go to the dead letters
    /// (`PluginStats::left_in_log`, `PluginStats::left_to_dead_letters`);
    /// queued events are still delivered once.
    pub async fn shutdown_within(mut self, timeout: Duration) -> Vec<PluginSummary> {
        if let Some(watcher) = self.watcher.take() {
            watcher.stop().await;
        }
        let deadline = Instant::now() + timeout;
        self.shared.registry.shutdown(deadline).await
    }
}
