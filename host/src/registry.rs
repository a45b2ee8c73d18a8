//! The live set of plugins: for each, the queue its worker reads, and the
//! worker's task and counts. Dispatch reads a snapshot (`Arc<Routes>`);
//! loading, swapping and unloading publish a new one, so `emit` never waits
//! on a reload.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::capabilities::sql::Databases;
use crate::config::{Config, OnFull};
use crate::delivery::{DeadLetters, Wal};
use crate::log_limit::LogLimit;
use crate::outcome::PluginStats;
use crate::plugin::{LoadError, LoadedPlugin};
use crate::queue::PluginQueue;
use crate::routing::store::RoutingStore;
use crate::routing::{DedupRule, RouteFilter};
use crate::worker::{Aftercare, Job, Worker};

/// Where events for one plugin go.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) name: Arc<str>,
    /// Its queue: most events (`queue_capacity`) and bytes (`queue_mib`)
    /// it holds, and what happens when it is full (`on_full`).
    pub(crate) queue: Arc<PluginQueue<Job>>,
    /// What a sync `emit` does when the queue is full.
    pub(crate) on_full: OnFull,
    /// Most events the queue holds, for error messages.
    pub(crate) capacity: usize,
    /// Most bytes of events the plugin holds (queued, or waiting for a
    /// retry), for error messages.
    pub(crate) queue_bytes: usize,
    /// Content hash of the version that will handle the next queued event.
    pub(crate) version: Arc<str>,
    /// HTTP requests denied to the plugin, across reconfigurations.
    pub(crate) http_denied: Arc<AtomicU64>,
    /// Its output limit, across reconfigurations.
    pub(crate) output_limit: Arc<LogLimit>,
    /// Events queued for its worker so far.
    pub(crate) accepted: Arc<AtomicU64>,
    /// Which events it gets (`events`, `min_severity`, `tables`, ...).
    pub(crate) filter: Arc<RouteFilter>,
    /// Events its filter kept from it, across reconfigurations.
    pub(crate) filtered: Arc<AtomicU64>,
    /// Its `dedup_key`, for dispatch to render each event's key once for
    /// every plugin with the same template (the worker decides).
    pub(crate) dedup: Option<DedupRule>,
}

/// Every plugin's route, sorted by name.
pub(crate) type Routes = Vec<Arc<Route>>;

/// A worker task and what stays readable after it ends.
struct WorkerRecord {
    name: Arc<str>,
    path: Arc<Mutex<PathBuf>>,
    version: Arc<Mutex<Arc<str>>>,
    stats: Arc<Mutex<PluginStats>>,
    http_denied: Arc<AtomicU64>,
    output_limit: Arc<LogLimit>,
    accepted: Arc<AtomicU64>,
    filtered: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

/// A plugin's name, file, live version and counts.
#[derive(Debug, Clone)]
pub struct PluginSummary {
    /// The plugin's name.
    pub name: String,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// SHA-256 (hex) of the version live now, or last, if unloaded.
    pub version: String,
    /// Its counts so far.
    pub stats: PluginStats,
    /// HTTP requests it made that were denied.
    pub http_denied: u64,
    /// Lines of its output (log calls, stdout, stderr) dropped because it
    /// wrote more than its output limit.
    pub output_dropped: u64,
    /// Events in its queue now, waiting for its worker (0 once it is no
    /// longer live).
    pub queued: u64,
}

/// A plugin file hot reload refused: a new plugin that did not load, or a
/// new version of a live one (which kept serving).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The plugin's name.
    pub plugin: String,
    /// The file.
    pub path: PathBuf,
    /// Why, as logged.
    pub reason: String,
    /// When.
    pub at: SystemTime,
}

/// Events a plugin has been given and not finished yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// The plugin's name.
    pub plugin: String,
    /// Events queued for it since it was loaded.
    pub accepted: u64,
    /// Of those, the ones it is not done with yet: not handled, not in the
    /// dead letters, not left in the write-ahead log at shutdown (events
    /// waiting for a retry count here). Its counts are updated after each
    /// run of events its worker takes off the queue at once, so an event
    /// finished within the current run still counts here.
    pub unfinished: u64,
    /// Of those, the events waiting in open groups (`group_by`): they are
    /// delivered when their group is due, or at once when the host stops.
    pub held: u64,
}

/// Counts of what hot reload did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReloadStats {
    /// New plugins loaded while running.
    pub loaded: u64,
    /// Live plugins replaced by a new version.
    pub swapped: u64,
    /// New files or versions rejected (the previous version kept serving).
    pub rejected: u64,
    /// Plugins unloaded because their file was removed or disabled.
    pub unloaded: u64,
    /// Config file edits applied.
    pub configs_applied: u64,
    /// Config file edits rejected (the previous config stayed in force).
    pub configs_rejected: u64,
}

/// The registry: routes for dispatch, worker records for reports.
pub(crate) struct Registry {
    routes: RwLock<Arc<Routes>>,
    workers: Mutex<Vec<WorkerRecord>>,
    loaded: AtomicU64,
    swapped: AtomicU64,
    rejected: AtomicU64,
    unloaded: AtomicU64,
    configs_applied: AtomicU64,
    configs_rejected: AtomicU64,
    /// The last rejection of each plugin name by hot reload, until a
    /// version of it loads.
    rejections: Mutex<BTreeMap<String, Rejection>>,
    /// The database pools plugins share.
    databases: Arc<Databases>,
    /// Where workers put events that failed for good.
    pub(crate) dead_letters: Arc<DeadLetters>,
    /// The write-ahead log, when the host has a data directory.
    pub(crate) wal: Option<Wal>,
    /// Deduplication state, when the host has a data directory.
    routing_store: Option<RoutingStore>,
    /// The drain deadline, set when the host begins to stop.
    drain: Arc<watch::Sender<Option<Instant>>>,
}

impl Registry {
    /// An empty registry whose workers write to `dead_letters`, `wal` and
    /// `routing_store`.
    pub(crate) fn new(
        dead_letters: Arc<DeadLetters>,
        wal: Option<Wal>,
        routing_store: Option<RoutingStore>,
    ) -> Registry {
        Registry {
            routes: RwLock::default(),
            workers: Mutex::default(),
            loaded: AtomicU64::default(),
            swapped: AtomicU64::default(),
            rejected: AtomicU64::default(),
            unloaded: AtomicU64::default(),
            configs_applied: AtomicU64::default(),
            configs_rejected: AtomicU64::default(),
            rejections: Mutex::default(),
            databases: Arc::default(),
            dead_letters,
            wal,
            routing_store,
            drain: Arc::new(watch::channel(None).0),
        }
    }

    /// The routes to dispatch the next event to.
    pub(crate) fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .map(|routes| routes.clone())
            .unwrap_or_default()
    }

    fn publish(&self, change: impl FnOnce(&mut Routes)) {
        if let Ok(mut routes) = self.routes.write() {
            let mut next: Routes = routes.as_ref().clone();
            change(&mut next);
            next.sort_by(|a, b| a.name.cmp(&b.name));
            *routes = Arc::new(next);
        }
    }

    /// Starts a worker for `plugin` and routes events to it.
    pub(crate) fn add(&self, plugin: LoadedPlugin, config: &Config) {
        let limits = config.limits_for(&plugin.name);
        tracing::info!(
            plugin = &*plugin.name,
            path = %crate::printable::path(&plugin.path),
            bytes = plugin.size,
            version = short(&plugin.hash),
            compile_ms = plugin.compile_time.as_millis() as u64,
            "loaded"
        );
        let queue = Arc::new(PluginQueue::new(
            limits.queue_capacity,
            limits.queue_bytes,
            limits.on_full,
        ));
        let stats = Arc::new(Mutex::new(PluginStats::default()));
        let version = Arc::new(Mutex::new(plugin.hash.clone()));
        let path = Arc::new(Mutex::new(plugin.path.clone()));
        let http_denied = Arc::new(AtomicU64::new(0));
        let output_limit = Arc::new(LogLimit::output(Instant::now()));
        let route = Arc::new(Route {
            name: plugin.name.clone(),
            queue: queue.clone(),
            on_full: limits.on_full,
            capacity: limits.queue_capacity,
            queue_bytes: limits.queue_bytes,
            version: plugin.hash.clone(),
            http_denied: http_denied.clone(),
            output_limit: output_limit.clone(),
            accepted: Arc::new(AtomicU64::new(0)),
            filter: config.route_filter(&plugin.name),
            filtered: Arc::new(AtomicU64::new(0)),
            dedup: config.hygiene_for(&plugin.name).dedup.clone(),
        });
        let worker = Worker {
            grants: config.grants_for(
                &plugin.name,
                http_denied.clone(),
                &self.databases,
                output_limit.clone(),
            ),
            limits,
            hygiene: config.hygiene_for(&plugin.name),
            stats: stats.clone(),
            version: version.clone(),
            path: path.clone(),
            log_limit: LogLimit::new(Instant::now()),
            plugin,
            queue,
            aftercare: Aftercare {
                dead_letters: self.dead_letters.clone(),
                wal: self.wal.clone(),
                drain: self.drain.subscribe(),
                _drain_sender: self.drain.clone(),
                routing_store: self.routing_store.clone(),
            },
            fuel_consumed: AtomicU64::new(0),
        };
        let record = WorkerRecord {
            name: route.name.clone(),
            path,
            version,
            stats,
            http_denied,
            output_limit,
            accepted: route.accepted.clone(),
            filtered: route.filtered.clone(),
            task: tokio::spawn(worker.run()),
        };
        if let Ok(mut workers) = self.workers.lock() {
            workers.push(record);
        }
        self.forget_rejection(&route.name);
        self.publish(|routes| {
            routes.retain(|r| r.name != route.name);
            routes.push(route);
        });
    }

    /// Hands a new version of a live plugin to its worker, which switches
    /// between two events: every event queued before this is handled by the
    /// old version, every later one by the new. Returns the plugin back if
    /// it is not live.
    pub(crate) async fn swap(&self, plugin: LoadedPlugin) -> Result<(), LoadedPlugin> {
        let Some(route) = self.route(&plugin.name) else {
            return Err(plugin);
        };
        let (name, hash) = (plugin.name.clone(), plugin.hash.clone());
        if route
            .queue
            .push_unbounded(Job::Swap(Box::new(plugin)))
            .is_err()
        {
            return Ok(());
        }
        tracing::info!(
            plugin = &*name,
            version = short(&hash),
            "swapped in a new version"
        );
        self.swapped.fetch_add(1, Ordering::Relaxed);
        self.forget_rejection(&name);
        self.publish(|routes| {
            for r in routes.iter_mut().filter(|r| r.name == name) {
                *r = Arc::new(Route {
                    version: hash.clone(),
                    ..(**r).clone()
                });
            }
        });
        Ok(())
    }

    /// Stops routing events to plugin `name`; its worker finishes what is
    /// queued and pending and exits.
    pub(crate) fn remove(&self, name: &str) {
        let mut removed = None;
        self.publish(|routes| {
            if let Some(at) = routes.iter().position(|r| &*r.name == name) {
                removed = Some(routes.remove(at));
            }
        });
        if let Some(route) = removed {
            route.queue.close();
            tracing::info!(plugin = name, "unloaded");
            self.unloaded.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The route of plugin `name`, if it is live.
    pub(crate) fn route(&self, name: &str) -> Option<Arc<Route>> {
        self.routes().iter().find(|r| &*r.name == name).cloned()
    }

    pub(crate) fn count_loaded(&self) {
        self.loaded.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a file hot reload refused, and keeps why for reports.
    pub(crate) fn count_rejected(&self, error: &LoadError) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let plugin = crate::plugin::plugin_name(error.path());
        if let Ok(mut rejections) = self.rejections.lock() {
            let rejection = Rejection {
                plugin: plugin.clone(),
                path: error.path().to_owned(),
                reason: error.to_string(),
                at: SystemTime::now(),
            };
            rejections.insert(plugin, rejection);
        }
    }

    fn forget_rejection(&self, name: &str) {
        if let Ok(mut rejections) = self.rejections.lock() {
            rejections.remove(name);
        }
    }

    /// The last rejection by hot reload of each plugin name no version of
    /// which loaded since, in name order.
    pub(crate) fn rejections(&self) -> Vec<Rejection> {
        self.rejections
            .lock()
            .map(|rejections| rejections.values().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn count_config(&self, applied: bool) {
        let counter = if applied {
            &self.configs_applied
        } else {
            &self.configs_rejected
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Gives plugin `route` the limits, settings and alert hygiene of
    /// `config` from its next queued event on. The queue keeps the capacity
    /// it was made with.
    pub(crate) async fn reconfigure(&self, route: &Route, config: &Config) {
        let job = Job::Reconfigure {
            limits: Box::new(config.limits_for(&route.name)),
            grants: Box::new(config.grants_for(
                &route.name,
                route.http_denied.clone(),
                &self.databases,
                route.output_limit.clone(),
            )),
            hygiene: config.hygiene_for(&route.name),
        };
        let _ = route.queue.push_unbounded(job);
    }

    /// Routes the next events to plugin `name` by the filter and
    /// `dedup_key` `config` gives it.
    pub(crate) fn refilter(&self, name: &str, config: &Config) {
        let filter = config.route_filter(name);
        let dedup = config.hygiene_for(name).dedup.clone();
        self.publish(|routes| {
            for route in routes.iter_mut().filter(|r| &*r.name == name) {
                *route = Arc::new(Route {
                    filter: filter.clone(),
                    dedup: dedup.clone(),
                    ..(**route).clone()
                });
            }
        });
    }

    pub(crate) fn reload_stats(&self) -> ReloadStats {
        ReloadStats {
            loaded: self.loaded.load(Ordering::Relaxed),
            swapped: self.swapped.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            unloaded: self.unloaded.load(Ordering::Relaxed),
            configs_applied: self.configs_applied.load(Ordering::Relaxed),
            configs_rejected: self.configs_rejected.load(Ordering::Relaxed),
        }
    }

    /// Counts of every live plugin, in name order.
    pub(crate) fn summaries(&self) -> Vec<PluginSummary> {
        let live = self.routes();
        let Ok(workers) = self.workers.lock() else {
            return Vec::new();
        };
        let mut summaries: Vec<PluginSummary> = workers
            .iter()
            .filter(|w| !w.task.is_finished())
            .filter_map(|w| {
                let route = live.iter().find(|r| r.name == w.name)?;
                let mut summary = summary(w);
                summary.queued = route.queue.len() as u64;
                Some(summary)
            })
            .collect();
        summaries.sort_by(|a, b| a.name.cmp(&b.name));
        summaries
    }

    /// For each plugin, the events queued for it that it has not handled
    /// or failed yet, by the counts of every worker still running under its
    /// name (one being unloaded included).
    pub(crate) fn unfinished(&self) -> Vec<Unfinished> {
        let Ok(workers) = self.workers.lock() else {
            return Vec::new();
        };
        // By name, so the rows come out in name order.
        let mut counts: BTreeMap<String, Unfinished> = BTreeMap::new();
        for worker in workers.iter().filter(|w| !w.task.is_finished()) {
            let accepted = worker.accepted.load(Ordering::Relaxed);
            let (done, held) = worker
                .stats
                .lock()
                .map(|s| (s.completed(), s.held))
                .unwrap_or((accepted, 0));
            let entry = counts
                .entry(worker.name.to_string())
                .or_insert_with(|| Unfinished {
                    plugin: worker.name.to_string(),
                    accepted: 0,
                    unfinished: 0,
                    held: 0,
                });
            entry.accepted += accepted;
            entry.unfinished += accepted.saturating_sub(done);
            entry.held += held;
        }
        counts.into_values().collect()
    }

    /// Closes every queue and waits for every worker to finish what it
    /// holds, starting no delivery after `deadline`; returns every worker's
    /// final counts (unloaded ones included).
    pub(crate) async fn shutdown(&self, deadline: Instant) -> Vec<PluginSummary> {
        self.drain.send_replace(Some(deadline));
        let mut routes = Vec::new();
        self.publish(|live| routes = std::mem::take(live));
        for route in routes {
            route.queue.close();
        }
        let workers = self
            .workers
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        let mut summaries = Vec::with_capacity(workers.len());
        for mut record in workers {
            if let Err(err) = (&mut record.task).await {
                tracing::error!(
                    plugin = &*record.name,
                    "worker task ended abnormally: {err}"
                );
            }
            summaries.push(summary(&record));
        }
        summaries.sort_by(|a, b| a.name.cmp(&b.name));
        self.databases.close().await;
        if let Some(store) = &self.routing_store {
            store.close().await;
        }
        if let Some(wal) = self.wal.clone() {
            // Writes and syncs the last completions: blocking file work.
            if let Ok(Err(err)) = tokio::task::spawn_blocking(move || wal.flush()).await {
                tracing::error!("{err}");
            }
        }
        summaries
    }
}

fn summary(record: &WorkerRecord) -> PluginSummary {
    PluginSummary {
        name: record.name.to_string(),
        path: record.path.lock().map(|p| p.clone()).unwrap_or_default(),
        version: record
            .version
            .lock()
            .map(|v| v.to_string())
            .unwrap_or_default(),
        stats: {
            let mut stats = record.stats.lock().map(|s| s.clone()).unwrap_or_default();
            stats.filtered = record.filtered.load(Ordering::Relaxed);
            stats
        },
        http_denied: record.http_denied.load(Ordering::Relaxed),
        output_dropped: record.output_limit.dropped(),
        queued: 0,
    }
}

/// The first 12 hex digits of a content hash: enough to tell versions apart
/// in a log line.
pub(crate) fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}
