//! The per-plugin worker: one tokio task that owns the plugin's instance and
//! handles its queued events one at a time, under the plugin's limits.
//!
//! Because the instance lives only here, "a trap never poisons the next
//! event" follows from the loop: after any failure other than a returned
//! error, the store is dropped and the next event gets a fresh instance.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::bindings::{Event, Hook, HookError};
use crate::capabilities::http::HttpAccess;
use crate::config::Limits;
use crate::outcome::{Failure, FailureClass, Outcome, PluginStats};
use crate::plugin::LoadedPlugin;
use crate::settings::Settings;
use crate::state::{MemoryCapExceeded, PluginState};

/// Most events taken off the queue per wake-up. Draining what is queued in
/// one go saves a task wake-up per event, which costs about as much as a
/// call into a trivial hook.
const BATCH: usize = 256;

/// How long after the deadline the worker stops waiting for a call that is
/// blocked in a host call. A computing guest is stopped by the epoch check
/// within one tick of the deadline, before this fires.
const HOST_CALL_GRACE: Duration = Duration::from_millis(10);

/// What a worker takes off its queue, in order.
pub(crate) enum Job {
    /// One event, and where to send the outcome if anyone asked.
    Event {
        event: Arc<Event>,
        reply: Option<oneshot::Sender<Outcome>>,
    },
    /// A new version of the plugin, for every later event.
    Swap(Box<LoadedPlugin>),
    /// New limits and settings, for every later event.
    Reconfigure {
        limits: Limits,
        settings: Arc<Settings>,
        http: HttpAccess,
    },
}

/// The wall-clock deadline of a call passed while the guest was running.
#[derive(Debug, thiserror::Error)]
#[error("deadline passed")]
struct DeadlineExceeded;

/// A live instance and the store that owns it.
pub(crate) struct Live {
    store: Store<PluginState>,
    hook: Hook,
}

/// Everything a worker needs; consumed by [`Worker::run`].
pub(crate) struct Worker {
    pub(crate) plugin: LoadedPlugin,
    pub(crate) limits: Limits,
    pub(crate) settings: Arc<Settings>,
    pub(crate) http: HttpAccess,
    pub(crate) stats: Arc<Mutex<PluginStats>>,
    /// The live version and file, published for reports.
    pub(crate) version: Arc<Mutex<Arc<str>>>,
    pub(crate) path: Arc<Mutex<std::path::PathBuf>>,
}

impl Worker {
    /// Handles jobs until the queue is closed and empty.
    pub(crate) async fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        let mut live = None;
        let mut batch = Vec::with_capacity(BATCH);
        let mut outcomes = Vec::with_capacity(BATCH);
        while queue.recv_many(&mut batch, BATCH).await > 0 {
            // One clock read per event: each call starts where the last ended.
            let mut started = Instant::now();
            for job in batch.drain(..) {
                let (event, reply) = match job {
                    Job::Event { event, reply } => (event, reply),
                    Job::Swap(plugin) => {
                        self.switch_to(*plugin);
                        live = None;
                        continue;
                    }
                    Job::Reconfigure {
                        limits,
                        settings,
                        http,
                    } => {
                        // A fresh instance picks up the new memory cap and
                        // settings; fuel and timeout apply per call anyway.
                        (self.limits, self.settings, self.http) = (limits, settings, http);
                        live = None;
                        continue;
                    }
                };
                let result = self.deliver(&mut live, &event, started).await;
                let ended = Instant::now();
                let outcome = Outcome {
                    result,
                    version: self.plugin.hash.clone(),
                    latency: ended - started,
                };
                started = ended;
                if let Err(failure) = &outcome.result {
                    tracing::warn!(
                        plugin = &*self.plugin.name,
                        event = event.id,
                        class = failure.class.as_str(),
                        "{}",
                        failure.message
                    );
                }
                if let Some(reply) = reply {
                    // The caller may have stopped waiting; that is fine.
                    let _ = reply.send(outcome.clone());
                }
                outcomes.push(outcome);
            }
            // Counted once per batch, so readers of the counts contend for
            // the lock once per wake-up rather than once per event.
            if let Ok(mut stats) = self.stats.lock() {
                for outcome in outcomes.drain(..) {
                    stats.record(&outcome);
                }
            }
        }
    }

    /// Makes `plugin` the version that handles every later event.
    fn switch_to(&mut self, plugin: LoadedPlugin) {
        if let Ok(mut version) = self.version.lock() {
            *version = plugin.hash.clone();
        }
        if let Ok(mut path) = self.path.lock() {
            *path = plugin.path.clone();
        }
        self.plugin = plugin;
    }

    /// Calls the hook with `event`, instantiating first if needed, and drops
    /// the instance after any failure that is not a returned error.
    async fn deliver(
        &self,
        live: &mut Option<Live>,
        event: &Event,
        started: Instant,
    ) -> Result<(), Failure> {
        let deadline = started + self.limits.timeout;
        let instance = match live {
            Some(instance) => instance,
            None => live.insert(self.instantiate(deadline).await?),
        };
        let result = self.call(instance, event, deadline).await;
        let trapped = matches!(&result, Err(f) if f.class != FailureClass::Returned);
        if trapped || !self.limits.reuse_instance {
            *live = None;
        }
        result
    }

    async fn call(&self, live: &mut Live, event: &Event, deadline: Instant) -> Result<(), Failure> {
        arm_limits(&mut live.store, &self.limits, deadline);
        let call = live
            .hook
            .hookhost_hooks_handler()
            .call_handle(&mut live.store, event);
        match within_deadline(call, deadline).await {
            Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(error))) => Err(returned(error)),
            Some(Err(trap)) => Err(classify(&trap, &self.limits)),
            None => Err(blocked_past_deadline(&self.limits)),
        }
    }

    async fn instantiate(&self, deadline: Instant) -> Result<Live, Failure> {
        if let Ok(mut stats) = self.stats.lock() {
            stats.instantiations += 1;
        }
        let grants = (self.settings.clone(), self.http.clone());
        instantiate(&self.plugin, &self.limits, grants, deadline)
            .await
            .map_err(|err| match err {
                InstantiateError::Failed(failure) => failure,
                InstantiateError::Mismatch(message) => Failure {
                    class: FailureClass::Trap,
                    retryable: false,
                    message,
                },
            })
    }
}

/// Why a plugin could not be instantiated.
pub(crate) enum InstantiateError {
    /// The component's exports do not have the types the hook world
    /// requires (found only when linking an instance).
    Mismatch(String),
    /// Guest code run during instantiation failed.
    Failed(Failure),
}

/// A fresh store and instance of `plugin`, created under `limits` (guest
/// code may run while instantiating).
pub(crate) async fn instantiate(
    plugin: &LoadedPlugin,
    limits: &Limits,
    (settings, http): (Arc<Settings>, HttpAccess),
    deadline: Instant,
) -> Result<Live, InstantiateError> {
    let state = PluginState::new(plugin.name.clone(), settings, http, limits.memory_bytes);
    let mut store = Store::new(plugin.pre.engine(), state);
    store.limiter(|state| state);
    store.epoch_deadline_callback(|store| {
        if Instant::now() >= store.data().deadline {
            Err(wasmtime::Error::new(DeadlineExceeded))
        } else {
            // Let other plugins' tasks run, then check again next tick.
            Ok(UpdateDeadline::Yield(1))
        }
    });
    arm_limits(&mut store, limits, deadline);
    let instantiate = plugin.pre.instantiate_async(&mut store);
    match within_deadline(instantiate, deadline).await {
        Some(Ok(hook)) => Ok(Live { store, hook }),
        Some(Err(err)) if is_guest_failure(&err) => Err(InstantiateError::Failed(
            instantiation_failed(classify(&err, limits)),
        )),
        // Linking checked the export names; what is left is their types,
        // and the hook world exports one function.
        Some(Err(err)) => Err(InstantiateError::Mismatch(format!(
            "its `handle` export has the wrong signature ({err:#}); the world requires \
             `handle: func(event: event) -> result<_, hook-error>`"
        ))),
        None => Err(InstantiateError::Failed(instantiation_failed(
            blocked_past_deadline(limits),
        ))),
    }
}

/// Runs `call` to completion, or gives up on it (dropping it, which cancels
/// a host call it waits in) shortly after `deadline`. Most calls finish on
/// their first poll, so the timer is only set up for those that do not.
async fn within_deadline<F: Future>(call: F, deadline: Instant) -> Option<F::Output> {
    let mut call = pin!(call);
    if let Poll::Ready(output) = poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
        return Some(output);
    }
    tokio::time::timeout_at((deadline + HOST_CALL_GRACE).into(), call)
        .await
        .ok()
}

/// Whether an error came from running guest code (as opposed to linking).
fn is_guest_failure(error: &wasmtime::Error) -> bool {
    error.downcast_ref::<Trap>().is_some()
        || error.downcast_ref::<MemoryCapExceeded>().is_some()
        || error.downcast_ref::<DeadlineExceeded>().is_some()
}

/// Refills fuel and sets the deadline for the next call.
fn arm_limits(store: &mut Store<PluginState>, limits: &Limits, deadline: Instant) {
    // Fuel is enabled on the engine, so this cannot fail.
    let _ = store.set_fuel(limits.fuel);
    store.data_mut().deadline = deadline;
    store.set_epoch_deadline(1);
}

fn returned(error: HookError) -> Failure {
    let (retryable, message) = match error {
        HookError::Retryable(message) => (true, message),
        HookError::Permanent(message) => (false, message),
    };
    Failure {
        class: FailureClass::Returned,
        retryable,
        message,
    }
}

fn blocked_past_deadline(limits: &Limits) -> Failure {
    Failure {
        class: FailureClass::Timeout,
        retryable: true,
        message: format!(
            "timed out after {} ms while waiting in a host call",
            limits.timeout.as_millis()
        ),
    }
}

fn instantiation_failed(failure: Failure) -> Failure {
    Failure {
        message: format!("instantiation failed: {}", failure.message),
        ..failure
    }
}

/// Sorts a trap into its failure class, with a one-line message.
fn classify(error: &wasmtime::Error, limits: &Limits) -> Failure {
    let (class, message) = if let Some(cap) = error.downcast_ref::<MemoryCapExceeded>() {
        (FailureClass::OutOfMemory, cap.to_string())
    } else if error.downcast_ref::<DeadlineExceeded>().is_some() {
        let message = format!("timed out after {} ms", limits.timeout.as_millis());
        (FailureClass::Timeout, message)
    } else {
        match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => {
                let message = format!("ran out of fuel ({} units per event)", limits.fuel);
                (FailureClass::OutOfFuel, message)
            }
            Some(Trap::Interrupt) => {
                let message = format!("timed out after {} ms", limits.timeout.as_millis());
                (FailureClass::Timeout, message)
            }
            Some(Trap::UnreachableCodeReached) => (
                FailureClass::Trap,
                "trapped: unreachable code reached (a Rust panic or abort; its message is in \
                 the plugin's stderr log)"
                    .to_owned(),
            ),
            Some(Trap::StackOverflow) => (
                FailureClass::Trap,
                "trapped: stack overflow (unbounded recursion?)".to_owned(),
            ),
            Some(trap) => (FailureClass::Trap, format!("trapped: {trap}")),
            None => (FailureClass::Trap, format!("trapped: {error:#}")),
        }
    };
    Failure {
        retryable: class == FailureClass::Timeout,
        class,
        message,
    }
}
