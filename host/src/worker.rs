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

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use wasmtime::component::ResourceTableError;
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::bindings::batch::BatchHook;
use crate::bindings::{Event, Hook, HookError};
use crate::capabilities::Grants;
use crate::config::Limits;
use crate::log_limit::{Admit, LogLimit, PER_SECOND};
use crate::outcome::{Failure, FailureClass, Outcome, PluginStats};
use crate::plugin::LoadedPlugin;
use crate::printable::escape_controls;
use crate::state::{EventEffects, MemoryCapExceeded, PluginState, MAX_HOST_RESOURCES};

/// Most events taken off the queue per wake-up. Draining what is queued in
/// one go saves a task wake-up per event, which costs about as much as a
/// call into a trivial hook.
const BATCH: usize = 256;

/// Longest failure message kept: a hook's returned error, or a trap's
/// description. A hook may return an error of any size its memory holds;
/// reports, logs and summaries keep only this much of it.
pub const MAX_FAILURE_MESSAGE_BYTES: usize = 4 * 1024;

/// How long after the deadline the worker stops waiting for a call that is
/// blocked in a host call. A computing guest is stopped by the epoch check
/// within one tick of the deadline, before this fires.
const HOST_CALL_GRACE: Duration = Duration::from_millis(10);

/// What a worker takes off its queue, in order.
pub(crate) enum Job {
    /// One event, where to send the outcome if anyone asked, and its
    /// bytes in the plugin's queue, given back once it has been handled.
    Event {
        event: Arc<Event>,
        reply: Option<oneshot::Sender<Outcome>>,
        queued: OwnedSemaphorePermit,
    },
    /// A new version of the plugin, for every later event.
    Swap(Box<LoadedPlugin>),
    /// New limits and grants, for every later event.
    Reconfigure { limits: Limits, grants: Grants },
}

/// The wall-clock deadline of a call passed while the guest was running.
#[derive(Debug, thiserror::Error)]
#[error("deadline passed")]
struct DeadlineExceeded;

/// A live instance and the store that owns it.
pub(crate) struct Live {
    store: Store<PluginState>,
    exports: Exports,
}

/// What a live instance exports: `handler` or `batch-handler`.
pub(crate) enum Exports {
    /// A `hook` world component.
    Single(Hook),
    /// A `batch-hook` world component.
    Batch(BatchHook),
}

/// An event taken off the queue, where its outcome goes if anyone asked,
/// and its bytes in the queue.
type Pending = (
    Arc<Event>,
    Option<oneshot::Sender<Outcome>>,
    OwnedSemaphorePermit,
);

/// Everything a worker needs; consumed by [`Worker::run`].
pub(crate) struct Worker {
    pub(crate) plugin: LoadedPlugin,
    pub(crate) limits: Limits,
    pub(crate) grants: Grants,
    pub(crate) stats: Arc<Mutex<PluginStats>>,
    /// The live version and file, published for reports.
    pub(crate) version: Arc<Mutex<Arc<str>>>,
    pub(crate) path: Arc<Mutex<std::path::PathBuf>>,
    /// Keeps a plugin that fails every event from flooding the log.
    pub(crate) log_limit: LogLimit,
}

impl Worker {
    /// Handles jobs until the queue is closed and empty.
    pub(crate) async fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        let mut live = None;
        let mut jobs = Vec::with_capacity(BATCH);
        let mut pending = Vec::with_capacity(BATCH);
        let mut outcomes = Vec::with_capacity(BATCH);
        while queue.recv_many(&mut jobs, BATCH).await > 0 {
            if self.plugin.pre.is_batch() {
                self.fill(&mut queue, &mut jobs).await;
            }
            for job in jobs.drain(..) {
                match job {
                    Job::Event {
                        event,
                        reply,
                        queued,
                    } => pending.push((event, reply, queued)),
                    // Events queued before a control job are handled by
                    // the version and limits they were queued under.
                    Job::Swap(plugin) => {
                        self.handle(&mut live, &mut pending, &mut outcomes).await;
                        self.switch_to(*plugin);
                        live = None;
                    }
                    Job::Reconfigure { limits, grants } => {
                        self.handle(&mut live, &mut pending, &mut outcomes).await;
                        // A fresh instance picks up the new memory cap and
                        // grants; fuel and timeout apply per call anyway.
                        (self.limits, self.grants) = (limits, grants);
                        live = None;
                    }
                }
            }
            self.handle(&mut live, &mut pending, &mut outcomes).await;
            // Counted once per wake-up, so readers of the counts contend for
            // the lock once per batch rather than once per event.
            if let Ok(mut stats) = self.stats.lock() {
                for outcome in outcomes.drain(..) {
                    stats.record(&outcome);
                }
            }
        }
    }

    /// For a batch hook: waits up to `batch_wait` for more events until
    /// `batch_size` are queued, the queue closes, or a control job arrives.
    async fn fill(&self, queue: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>) {
        let until = tokio::time::Instant::now() + self.limits.batch_wait;
        loop {
            let room = self.limits.batch_size.saturating_sub(jobs.len());
            if room == 0 || !matches!(jobs.last(), Some(Job::Event { .. })) {
                return;
            }
            match tokio::time::timeout_at(until, queue.recv_many(jobs, room)).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// Delivers the `pending` events, in order, and records their outcomes.
    async fn handle(
        &self,
        live: &mut Option<Live>,
        pending: &mut Vec<Pending>,
        outcomes: &mut Vec<Outcome>,
    ) {
        if pending.is_empty() {
            return;
        }
        if self.plugin.pre.is_batch() {
            for chunk in pending.chunks(self.limits.batch_size) {
                let started = Instant::now();
                let events: Vec<Event> = chunk
                    .iter()
                    .map(|(event, _, _)| (**event).clone())
                    .collect();
                let results = self.deliver_batch(live, &events, started).await;
                let latency = started.elapsed();
                for (result, (event, _, _)) in results.into_iter().zip(chunk) {
                    outcomes.push(self.outcome(&event.id, result, latency));
                }
            }
            let first = outcomes.len() - pending.len();
            for ((_, reply, _), outcome) in pending.drain(..).zip(&outcomes[first..]) {
                if let Some(reply) = reply {
                    // The caller may have stopped waiting; that is fine.
                    let _ = reply.send(outcome.clone());
                }
            }
        } else {
            // One clock read per event: each call starts where the last ended.
            let mut started = Instant::now();
            for (event, reply, _queued) in pending.drain(..) {
                let result = self.deliver(live, &event, started).await;
                let ended = Instant::now();
                let outcome = self.outcome(&event.id, result, ended - started);
                started = ended;
                if let Some(reply) = reply {
                    let _ = reply.send(outcome.clone());
                }
                outcomes.push(outcome);
            }
        }
    }

    /// The outcome of event `id`, its failure message masked (secrets) and
    /// cut to [`MAX_FAILURE_MESSAGE_BYTES`], and logged (rate-limited).
    fn outcome(&self, id: &str, result: Result<(), Failure>, latency: Duration) -> Outcome {
        let result = result.map_err(|mut failure| {
            let settings = &self.grants.settings;
            let total = failure.message.len();
            failure.message =
                match settings.redact_prefix(&failure.message, MAX_FAILURE_MESSAGE_BYTES) {
                    (masked, false) => masked.into_owned(),
                    (masked, true) => format!("{masked} […cut: {total} bytes in all]"),
                };
            let plugin = &*self.plugin.name;
            if let Admit::Log { suppressed } = self.log_limit.admit(Instant::now()) {
                if suppressed > 0 {
                    tracing::warn!(
                        plugin,
                        "{suppressed} more failures were not logged (at most {PER_SECOND} a \
                         second are); the run summary counts them all"
                    );
                }
                tracing::warn!(
                    plugin,
                    event = %escape_controls(id),
                    class = failure.class.as_str(),
                    "{}",
                    escape_controls(&failure.message)
                );
            }
            failure
        });
        Outcome {
            result,
            version: self.plugin.hash.clone(),
            latency,
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

    /// Calls a batch hook with `events`: one result per event. A trap fails
    /// them all and drops the instance.
    async fn deliver_batch(
        &self,
        live: &mut Option<Live>,
        events: &[Event],
        started: Instant,
    ) -> Vec<Result<(), Failure>> {
        let deadline = started + self.limits.timeout;
        let instance = match live {
            Some(instance) => instance,
            None => match self.instantiate(deadline).await {
                Ok(instance) => live.insert(instance),
                Err(failure) => return vec![Err(failure); events.len()],
            },
        };
        let results = self.call_batch(instance, events, deadline).await;
        if results.is_err() || !self.limits.reuse_instance {
            *live = None;
        }
        match results {
            Ok(results) => results,
            Err(failure) => vec![Err(failure); events.len()],
        }
    }

    async fn call(&self, live: &mut Live, event: &Event, deadline: Instant) -> Result<(), Failure> {
        let Exports::Single(hook) = &live.exports else {
            unreachable!("a batch hook's events go through call_batch");
        };
        arm_limits(&mut live.store, &self.limits, deadline);
        let call = hook
            .hookhost_hooks_handler()
            .call_handle(&mut live.store, event);
        match within_deadline(call, deadline).await {
            Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(error))) => Err(returned(error)),
            Some(Err(trap)) => Err(classify(&trap, &self.limits)),
            None => Err(blocked_past_deadline(&self.limits)),
        }
    }

    async fn call_batch(
        &self,
        live: &mut Live,
        events: &[Event],
        deadline: Instant,
    ) -> Result<Vec<Result<(), Failure>>, Failure> {
        let Exports::Batch(hook) = &live.exports else {
            unreachable!("a single-event hook's events go through call");
        };
        arm_limits(&mut live.store, &self.limits, deadline);
        let call = hook
            .hookhost_hooks_batch_handler()
            .call_handle_batch(&mut live.store, events);
        match within_deadline(call, deadline).await {
            Some(Ok(results)) if results.len() == events.len() => Ok(results
                .into_iter()
                .map(|result| result.map_err(returned))
                .collect()),
            Some(Ok(results)) => Err(Failure {
                class: FailureClass::Trap,
                retryable: false,
                message: format!(
                    "handle-batch returned {} results for {} events",
                    results.len(),
                    events.len()
                ),
            }),
            Some(Err(trap)) => Err(classify(&trap, &self.limits)),
            None => Err(blocked_past_deadline(&self.limits)),
        }
    }

    async fn instantiate(&self, deadline: Instant) -> Result<Live, Failure> {
        if let Ok(mut stats) = self.stats.lock() {
            stats.instantiations += 1;
        }
        instantiate(&self.plugin, &self.limits, &self.grants, deadline)
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
    grants: &Grants,
    deadline: Instant,
) -> Result<Live, InstantiateError> {
    let state = PluginState::new(plugin.name.clone(), grants, limits.memory_bytes);
    let mut store = Store::new(plugin.pre.engine(), state);
    store.limiter(|state| state);
    // What one call may copy out of the guest into the host (strings and
    // lists it passes or returns) is bounded by the plugin's memory cap,
    // not wasmtime's default of 128 MiB: aliased strings in a returned
    // list could otherwise make the host copy far more than the guest holds.
    store.set_hostcall_fuel(limits.memory_bytes);
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
        Some(Ok(exports)) => Ok(Live { store, exports }),
        Some(Err(err)) if is_guest_failure(&err) => Err(InstantiateError::Failed(
            instantiation_failed(classify(&err, limits)),
        )),
        // Linking checked the export names; what is left is their types,
        // and each world exports one function.
        Some(Err(err)) => Err(InstantiateError::Mismatch(format!(
            "its export has the wrong signature ({err:#}); the hook world requires \
             `handle: func(event: event) -> result<_, hook-error>`, the batch-hook world \
             `handle-batch: func(events: list<event>) -> list<result<_, hook-error>>`"
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

/// Whether `error` is wasmtime's refusal to copy more data out of the guest
/// in one call than the store's hostcall fuel allows. Its type is private
/// to wasmtime, so it is recognised by its message.
fn is_hostcall_fuel_exhausted(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .to_string()
            .contains("fuel allocated for hostcalls has been exhausted")
    })
}

/// Whether an error came from running guest code (as opposed to linking).
fn is_guest_failure(error: &wasmtime::Error) -> bool {
    error.downcast_ref::<Trap>().is_some()
        || error.downcast_ref::<MemoryCapExceeded>().is_some()
        || error.downcast_ref::<ResourceTableError>().is_some()
        || error.downcast_ref::<DeadlineExceeded>().is_some()
}

/// Refills fuel and sets the deadline for the next call.
fn arm_limits(store: &mut Store<PluginState>, limits: &Limits, deadline: Instant) {
    // Fuel is enabled on the engine, so this cannot fail.
    let _ = store.set_fuel(limits.fuel);
    let state = store.data_mut();
    state.deadline = deadline;
    state.effects = EventEffects::default();
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
    } else if is_hostcall_fuel_exhausted(error) {
        let message = format!(
            "memory cap exceeded: the plugin passed more than its cap of {} bytes to the host \
             in one call",
            limits.memory_bytes
        );
        (FailureClass::OutOfMemory, message)
    } else if let Some(ResourceTableError::Full) = error.downcast_ref::<ResourceTableError>() {
        let message = format!(
            "memory cap exceeded: the plugin holds more than {MAX_HOST_RESOURCES} host \
             resources (streams, pollables) at once"
        );
        (FailureClass::OutOfMemory, message)
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
