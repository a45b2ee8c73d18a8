//! The per-plugin worker: one tokio task that owns the plugin's instance and
//! delivers its queued events one at a time, under the plugin's limits, and
//! applies the delivery policy to each outcome (`crate::delivery`): a
//! retryable failure is tried again later, a permanent one goes to the dead
//! letters, and a run of unwell failures trips the circuit breaker.
//!
//! Because the instance lives only here, "a trap never poisons the next
//! event" follows from the loop: after any failure other than a returned
//! error, the store is dropped and the next event gets a fresh instance.
//! Retries wait here too, beside the queue rather than in it, so they never
//! hold back later events and a new version of the plugin receives them.
//!
//! The plugin's alert hygiene is applied here, as events come off the
//! queue (see `crate::routing`): a repeat of a `dedup_key` is suppressed,
//! an event of a `group_by` group waits with its group, and a group that
//! is due is delivered as one digest (one batch call for a batch hook).

use std::collections::{BTreeMap, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use smallvec::SmallVec;
use tokio::sync::{oneshot, watch};
use tracing::Instrument;
use wasmtime::component::ResourceTableError;
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::bindings::batch::BatchHook;
use crate::bindings::{Event, Hook, HookError};
use crate::capabilities::Grants;
use crate::config::Limits;
use crate::delivery::backoff::{retry_delay, Jitter};
use crate::delivery::breaker::{Breaker, Permit, Transition};
use crate::delivery::{DeadLetters, NewDeadLetter, Wal};
use crate::log_limit::{Admit, LogLimit, PER_SECOND};
use crate::observe::logs::DELIVERY_TARGET;
use crate::outcome::{BreakerState, Failure, FailureClass, Fate, Outcome, PluginStats};
use crate::plugin::LoadedPlugin;
use crate::printable::escape_controls;
use crate::queue::{PluginQueue, Queued};
use crate::routing::dedup::{DedupState, RenderedKey, Verdict};
use crate::routing::digest::digest;
use crate::routing::group::Groups;
use crate::routing::rate::RateLimiter;
use crate::routing::store::RoutingStore;
use crate::routing::{DedupRule, GroupRule, Hygiene};
use crate::state::{
    DeliveryCall, EventEffects, MemoryCapExceeded, PluginState, MAX_HOST_RESOURCES,
};

/// Most events taken off the queue per wake-up. Draining what is queued in
/// one go saves a task wake-up per event, which costs about as much as a
/// call into a trivial hook.
const BATCH: usize = 256;

/// How long a worker whose queue just emptied keeps looking at it, every
/// [`LINGER_POLL`], before it sleeps until an emitter wakes it. While it
/// lingers, emitters queue events without waking it: waking a sleeping
/// worker costs the emitter's thread a system call and, on a virtual
/// machine, an interrupt sent to another core, several microseconds, far
/// more than queueing the event. An event queued meanwhile waits for the
/// next look, about a millisecond (tokio's timer resolution).
const LINGER: Duration = Duration::from_millis(10);

/// How often a lingering worker looks at its queue.
const LINGER_POLL: Duration = Duration::from_millis(1);

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
    /// One event to deliver.
    Event(Delivery),
    /// An event dropped from the full queue (`on_full = "drop_oldest"`),
    /// for the worker to put in the dead letters.
    Dropped(Delivery),
    /// A new version of the plugin, for every later event.
    Swap(Box<LoadedPlugin>),
    /// New limits, grants and alert hygiene, for every later event.
    /// (Boxed, so that the event jobs that make up the queues stay small.)
    Reconfigure {
        limits: Box<Limits>,
        grants: Box<Grants>,
        hygiene: Arc<Hygiene>,
    },
}

impl Queued for Job {
    fn bytes(&self) -> usize {
        match self {
            Job::Event(delivery) if delivery.mode == Mode::Normal => delivery.bytes,
            _ => 0,
        }
    }

    /// Everything but a first delivery or a retry: never counted against
    /// the queue's capacity, never dropped to make room.
    fn is_control(&self) -> bool {
        !matches!(self, Job::Event(delivery) if delivery.mode == Mode::Normal)
    }

    /// A new version or new settings: they end a breaker's cool-down, so
    /// the worker looks for them while it holds events back.
    fn interrupts(&self) -> bool {
        matches!(self, Job::Swap(_) | Job::Reconfigure { .. })
    }
}

/// Whether a delivery follows the delivery policy or replays a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Retried when it fails retryably, else dead-lettered.
    Normal,
    /// One try of a dead letter; the replay updates the store itself.
    Replay,
}

/// One event on its way to one plugin.
pub(crate) struct Delivery {
    pub(crate) event: Arc<Event>,
    /// Its record in the write-ahead log, when the host keeps one.
    pub(crate) seq: Option<u64>,
    /// Deliveries made so far (0 before the first).
    pub(crate) attempts: u32,
    /// Where the first delivery's outcome goes, if anyone asked.
    pub(crate) reply: Option<oneshot::Sender<Outcome>>,
    /// Its size as counted against the queue's bytes, given back when the
    /// plugin is done with the event.
    pub(crate) bytes: usize,
    /// The last failure and when the first happened, once one has (boxed,
    /// as most deliveries never fail and every delivery is moved several
    /// times on its way to the hook).
    pub(crate) failed: Option<Box<(Failure, SystemTime)>>,
    pub(crate) mode: Mode,
    /// Its `dedup_key` as dispatch rendered it, if the plugin has one.
    pub(crate) rendered: Option<RenderedKey>,
    /// Repeats of its `dedup_key` suppressed before it, told to the hook
    /// through `delivery.suppressed` (for a digest, its events' sum).
    pub(crate) suppressed: u32,
    /// For the digest of a group (`group_by`): the deliveries of the
    /// group's events, whose log records, bytes and waiters it settles.
    /// Empty for any other delivery.
    pub(crate) members: Vec<Delivery>,
    /// With traces on, the span of the event's acceptance: its deliveries'
    /// spans are its children.
    pub(crate) parent: Option<Box<tracing::Span>>,
}

impl Delivery {
    /// A first delivery of `event`.
    pub(crate) fn new(event: Arc<Event>, seq: Option<u64>, bytes: usize) -> Delivery {
        Delivery {
            event,
            seq,
            attempts: 0,
            reply: None,
            bytes,
            failed: None,
            mode: Mode::Normal,
            rendered: None,
            suppressed: 0,
            members: Vec::new(),
            parent: crate::observe::traces::current().map(Box::new),
        }
    }

    /// The deliveries this one settles: a digest's events, or itself.
    fn parts(&mut self) -> &mut [Delivery] {
        if self.members.is_empty() {
            std::slice::from_mut(self)
        } else {
            &mut self.members
        }
    }

    /// A digest's events, or the delivery itself, with the digest's
    /// attempts and last failure.
    fn into_parts(self) -> Vec<Delivery> {
        if self.members.is_empty() {
            return vec![self];
        }
        let (attempts, failed) = (self.attempts, self.failed);
        self.members
            .into_iter()
            .map(|member| Delivery {
                attempts,
                failed: failed.clone(),
                ..member
            })
            .collect()
    }
}

/// Where every worker of a host sends what it is done with.
pub(crate) struct Aftercare {
    /// Events that failed for good.
    pub(crate) dead_letters: Arc<DeadLetters>,
    /// The write-ahead log, when the host has a data directory.
    pub(crate) wal: Option<Wal>,
    /// When the host began to stop, the instant after which no delivery
    /// starts: what is still pending then is left in the log, or, without
    /// one, put in the dead letters.
    pub(crate) drain: watch::Receiver<Option<Instant>>,
    /// The sender of `drain`, kept alive for as long as any worker runs.
    pub(crate) _drain_sender: Arc<watch::Sender<Option<Instant>>>,
    /// Where deduplication state is kept, when the host has a data
    /// directory.
    pub(crate) routing_store: Option<RoutingStore>,
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

/// What the deliveries of one wake-up left to record, written together:
/// dead letters in one transaction, completions in one log record.
#[derive(Default)]
struct Settled {
    outcomes: Vec<Outcome>,
    dead_letters: Vec<NewDeadLetter>,
    /// The log records of the events in `dead_letters`, completed once the
    /// dead letters are written.
    dead_letter_seqs: Vec<u64>,
    completed: Vec<u64>,
    released: usize,
    dropped: u64,
    left_in_log: u64,
    left_to_dead_letters: u64,
    /// Events suppressed as repeats.
    suppressed: u64,
    /// Groups delivered (digests or batch calls), and their events.
    digests: u64,
    grouped: u64,
}

/// Everything a worker needs; consumed by [`Worker::run`].
pub(crate) struct Worker {
    pub(crate) plugin: LoadedPlugin,
    pub(crate) limits: Limits,
    pub(crate) grants: Grants,
    pub(crate) hygiene: Arc<Hygiene>,
    pub(crate) stats: Arc<Mutex<PluginStats>>,
    /// The live version and file, published for reports.
    pub(crate) version: Arc<Mutex<Arc<str>>>,
    pub(crate) path: Arc<Mutex<std::path::PathBuf>>,
    /// Keeps a plugin that fails every event from flooding the log.
    pub(crate) log_limit: LogLimit,
    pub(crate) queue: Arc<PluginQueue<Job>>,
    pub(crate) aftercare: Aftercare,
    /// Fuel the calls consumed since the counts were last written: added
    /// to by every call, moved into `stats` with the other counts.
    pub(crate) fuel_consumed: AtomicU64,
}

/// The worker's own state across wake-ups.
struct Loop {
    live: Option<Live>,
    /// Jobs taken off the queue (or retries come due), not yet dealt with.
    ready: VecDeque<Job>,
    /// Deliveries waiting for their next try, by when it is due (and a
    /// counter, so two due at the same instant keep their order).
    retries: BTreeMap<(Instant, u64), Delivery>,
    retry_counter: u64,
    breaker: Breaker,
    jitter: Jitter,
    settled: Settled,
    /// The plugin's `rate_limit`, if it has one.
    limiter: Option<RateLimiter>,
    /// Deliveries that waited for the rate limit since it was last free,
    /// and how long, for one log line when it is free again.
    rate_episode: Option<(u64, Duration)>,
    /// The alert hygiene in force for the events taken off the queue.
    hygiene: Arc<Hygiene>,
    /// The plugin's `dedup_key`s.
    dedup: DedupState,
    /// Events waiting with their group.
    groups: Groups<Delivery>,
    /// Until when the worker lingers ([`LINGER`]): set when it last took
    /// jobs off the queue.
    linger_until: Option<Instant>,
}

impl Worker {
    /// Delivers jobs until the queue is closed and nothing is pending, or
    /// until the drain deadline passes.
    pub(crate) async fn run(mut self) {
        let mut state = Loop {
            live: None,
            ready: VecDeque::new(),
            retries: BTreeMap::new(),
            retry_counter: 0,
            breaker: Breaker::new(),
            jitter: Jitter::new(),
            settled: Settled::default(),
            limiter: self
                .limits
                .rate_limit
                .map(|limit| RateLimiter::new(limit, Instant::now())),
            rate_episode: None,
            hygiene: self.hygiene.clone(),
            dedup: self.load_dedup().await,
            groups: Groups::default(),
            linger_until: None,
        };
        let mut taken = Vec::with_capacity(BATCH);
        loop {
            let now = Instant::now();
            let drain = *self.aftercare.drain.borrow();
            // Groups due, or every group once the host stops or the plugin
            // is unloaded: an open group is never left behind.
            let closing = drain.is_some() || self.queue.is_closed();
            self.flush_groups(&mut state, now, closing);
            if drain.is_some_and(|deadline| now >= deadline) {
                // No retry after the drain deadline.
                let everything = state.breaker.is_tripped();
                self.leave_pending(&mut state, everything);
            }
            while let Some(entry) = state.retries.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                state.ready.push_back(Job::Event(entry.remove()));
            }
            // While the breaker holds events back they wait in the queue,
            // where its capacity still applies.
            if state.ready.len() < BATCH && !state.breaker.is_tripped() {
                if self.queue.take(&mut taken, BATCH - state.ready.len()) > 0 {
                    state.linger_until = Some(now + LINGER);
                }
                self.admit(&mut state, &mut taken);
            }
            let queued = self.queue.len() > 0 || self.queue.has_control();
            if state.ready.is_empty() && !(queued && state.breaker.is_tripped()) {
                // Nothing to deliver now: everything queued was taken.
                let finished = self.queue.is_finished();
                if finished && state.retries.is_empty() && state.groups.held() == 0 {
                    break;
                }
                let next_retry = state.retries.first_key_value().map(|(key, _)| key.0);
                let next_retry = match (next_retry, state.groups.next_due()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let drain = drain.filter(|deadline| *deadline > now);
                // What the events just taken left (repeats done, events
                // joining groups) is counted before the wait.
                self.record(&mut state).await;
                let linger = state.linger_until.filter(|until| *until > now && !finished);
                self.idle(next_retry, finished, drain, linger).await;
                continue;
            }
            let (permit, transition) = state.breaker.permit(now);
            self.log_transition(transition);
            match permit {
                Permit::WaitUntil(until) => {
                    if state.ready.iter().any(Queued::interrupts) || self.queue.has_control() {
                        // A new version or configuration ends the cool-down
                        // and gets the events the breaker held back.
                        while self.queue.take(&mut taken, BATCH) > 0 {
                            self.admit(&mut state, &mut taken);
                        }
                        let (mut first, rest): (VecDeque<Job>, VecDeque<Job>) =
                            state.ready.drain(..).partition(Queued::interrupts);
                        first.extend(rest);
                        state.ready = first;
                        let transition = state.breaker.reset();
                        self.log_transition(transition);
                        continue;
                    }
                    self.wait_tripped(until, drain).await;
                }
                Permit::Probe => {
                    if state.ready.is_empty() {
                        self.queue.take(&mut taken, 1);
                        self.admit(&mut state, &mut taken);
                    }
                    self.step(&mut state, 1).await;
                }
                Permit::Deliver => self.step(&mut state, usize::MAX).await,
            }
            self.record(&mut state).await;
        }
        self.record(&mut state).await;
    }

    /// The plugin's deduplication state as the routing store kept it (none
    /// without a data directory, or if it cannot be read).
    async fn load_dedup(&self) -> DedupState {
        let Some(store) = &self.aftercare.routing_store else {
            return DedupState::default();
        };
        match store.load(&self.plugin.name).await {
            Ok(entries) => DedupState::saved(entries),
            Err(err) => {
                tracing::error!(
                    plugin = &*self.plugin.name,
                    "{err}; its repeats are counted from scratch"
                );
                DedupState::saved([])
            }
        }
    }

    /// Moves jobs taken off the queue to `ready`, applying the alert
    /// hygiene to first deliveries: a repeat is suppressed, an event of a
    /// group joins it. A new configuration's hygiene applies from its place
    /// in the queue on; groups of a `group_by` it changes are delivered
    /// first.
    fn admit(&self, state: &mut Loop, taken: &mut Vec<Job>) {
        let now = Instant::now();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut hygiene = state.hygiene.clone();
        for job in taken.drain(..) {
            match job {
                Job::Event(delivery)
                    if delivery.mode == Mode::Normal
                        && delivery.attempts == 0
                        && delivery.members.is_empty() =>
                {
                    let delivery = match &hygiene.dedup {
                        Some(rule) => self.deduplicate(state, rule, delivery, now_ms),
                        None => Some(delivery),
                    };
                    match (delivery, &hygiene.group) {
                        (Some(mut delivery), Some(rule)) => {
                            self.answer_at_once(delivery.reply.take(), Fate::Grouped);
                            let key = rule.key(&delivery.event);
                            state.groups.add(rule, key, delivery, now);
                        }
                        (Some(delivery), None) => state.ready.push_back(Job::Event(delivery)),
                        (None, _) => {}
                    }
                }
                Job::Reconfigure {
                    limits,
                    grants,
                    hygiene: new,
                } => {
                    let old = state.hygiene.group.clone();
                    if let Some(old) = old.filter(|old| new.group.as_ref() != Some(old)) {
                        for (values, members) in state.groups.take_all() {
                            let digest = self.digest_of(&old, values, members, state);
                            state.ready.push_back(Job::Event(digest));
                        }
                    }
                    state.hygiene = new.clone();
                    hygiene = new.clone();
                    state.ready.push_back(Job::Reconfigure {
                        limits,
                        grants,
                        hygiene: new,
                    });
                }
                job => state.ready.push_back(job),
            }
        }
    }

    /// `delivery` with the count of repeats before it, or `None` when it is
    /// a repeat itself: then it is done (completed in the log, counted as
    /// suppressed, its waiter told).
    fn deduplicate(
        &self,
        state: &mut Loop,
        rule: &DedupRule,
        mut delivery: Delivery,
        now_ms: i64,
    ) -> Option<Delivery> {
        let rendered = delivery.rendered.filter(|r| r.rule == rule.id());
        let rendered = match rendered.map_or_else(|| rule.rendered(&delivery.event), Ok) {
            Ok(rendered) => rendered,
            Err(err) => {
                if let Admit::Log { .. } = self.log_limit.admit(Instant::now()) {
                    tracing::warn!(
                        plugin = &*self.plugin.name,
                        event_id = %escape_controls(&delivery.event.id),
                        "{err}; the event is delivered without deduplication"
                    );
                }
                return Some(delivery);
            }
        };
        match state
            .dedup
            .check(rule, rendered, delivery.event.severity, now_ms)
        {
            Verdict::Deliver { suppressed } => {
                delivery.suppressed = suppressed;
                Some(delivery)
            }
            Verdict::Suppress => {
                let settled = &mut state.settled;
                settled.completed.extend(delivery.seq);
                settled.released += delivery.bytes;
                settled.suppressed += 1;
                self.answer_at_once(delivery.reply.take(), Fate::Suppressed);
                None
            }
        }
    }

    /// Tells whoever waits for an event's outcome that it will not be
    /// delivered on its own.
    fn answer_at_once(&self, reply: Option<oneshot::Sender<Outcome>>, fate: Fate) {
        if let Some(reply) = reply {
            let _ = reply.send(Outcome {
                result: Ok(()),
                fate,
                version: self.plugin.hash.clone(),
                latency: Duration::ZERO,
            });
        }
    }

    /// Moves the groups due at `now` (all of them with `all`) to `ready`,
    /// each as one digest delivery.
    fn flush_groups(&self, state: &mut Loop, now: Instant, all: bool) {
        let hygiene = state.hygiene.clone();
        let Some(rule) = &hygiene.group else {
            return;
        };
        if state.groups.next_due().is_none_or(|due| due > now && !all) {
            return;
        }
        for (values, members) in state.groups.take_due(rule, now, all) {
            let digest = self.digest_of(rule, values, members, state);
            state.ready.push_back(Job::Event(digest));
        }
    }

    /// The delivery of one group: its digest event, settling its events.
    /// A batch hook is given the events themselves instead (see `step`).
    fn digest_of(
        &self,
        rule: &GroupRule,
        values: Vec<String>,
        members: Vec<Delivery>,
        state: &mut Loop,
    ) -> Delivery {
        let group: Vec<(String, String)> = rule.paths().iter().cloned().zip(values).collect();
        let events: Vec<&Event> = members.iter().map(|m| &*m.event).collect();
        let suppressed = members
            .iter()
            .fold(0u32, |sum, m| sum.saturating_add(m.suppressed));
        let event = digest(&group, &events, suppressed, chrono::Utc::now());
        state.settled.digests += 1;
        state.settled.grouped += members.len() as u64;
        Delivery {
            suppressed,
            members,
            ..Delivery::new(Arc::new(event), None, 0)
        }
    }

    /// Waits for work: a queued job (unless the queue is `finished`), the
    /// next retry coming due, or the drain deadline still ahead. While
    /// `lingering`, it looks at the queue again after [`LINGER_POLL`]
    /// instead of asking to be woken.
    async fn idle(
        &mut self,
        next_retry: Option<Instant>,
        finished: bool,
        drain: Option<Instant>,
        lingering: Option<Instant>,
    ) {
        let mut wake = match (next_retry, drain) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if lingering.is_some() {
            let poll = Instant::now() + LINGER_POLL;
            wake = Some(wake.map_or(poll, |wake| wake.min(poll)));
        }
        let queue = self.queue.clone();
        tokio::select! {
            _ = queue.ready(), if !finished && lingering.is_none() => {}
            _ = sleep_until(wake), if wake.is_some() => {}
            _ = self.aftercare.drain.changed(), if drain.is_none() => {}
        }
    }

    /// Waits while the breaker is open: until the cool-down ends, a job
    /// arrives (a new version ends the cool-down; events just wait), or
    /// the host stops.
    async fn wait_tripped(&mut self, until: Instant, drain: Option<Instant>) {
        let wake = drain.map_or(until, |deadline| until.min(deadline));
        let queue = self.queue.clone();
        tokio::select! {
            _ = sleep_until(Some(wake)) => {}
            _ = queue.control_ready() => {}
            _ = self.aftercare.drain.changed(), if drain.is_none() => {}
        }
    }

    /// Deals with the ready jobs in order, delivering at most `max_events`
    /// events, and stopping when the breaker opens.
    async fn step(&mut self, state: &mut Loop, max_events: usize) {
        let mut delivered = 0;
        while let Some(job) = state.ready.pop_front() {
            let delivery = match job {
                Job::Event(delivery) => delivery,
                Job::Dropped(delivery) => {
                    self.dead_letter_dropped(delivery, &mut state.settled);
                    continue;
                }
                // Events before a control job are handled by the version
                // and limits they were queued under.
                Job::Swap(plugin) => {
                    self.switch_to(*plugin);
                    state.live = None;
                    let transition = state.breaker.reset();
                    self.log_transition(transition);
                    continue;
                }
                Job::Reconfigure { limits, grants, .. } => {
                    // A fresh instance picks up the new memory cap and
                    // grants; fuel and timeout apply per call anyway.
                    if limits.rate_limit != self.limits.rate_limit {
                        state.limiter = limits
                            .rate_limit
                            .map(|limit| RateLimiter::new(limit, Instant::now()));
                    }
                    (self.limits, self.grants) = (*limits, *grants);
                    state.live = None;
                    let transition = state.breaker.reset();
                    self.log_transition(transition);
                    continue;
                }
            };
            // Delivering freely stops when the breaker trips; a probe is one
            // event.
            let tripped = max_events == usize::MAX && state.breaker.is_tripped();
            if delivered >= max_events || tripped {
                state.ready.push_front(Job::Event(delivery));
                return;
            }
            // Batch calls are boxed (once per batch): inline, their large
            // futures would grow the one every single-event call moves.
            if self.plugin.pre.is_batch() && !delivery.members.is_empty() {
                // A group: its events, in batch calls of their own, each
                // call one delivery for the rate limit.
                delivered += 1;
                let mut members = delivery.members;
                while !members.is_empty() {
                    let rest = members.split_off(members.len().min(self.limits.batch_size));
                    self.pace(state, 1).await;
                    Box::pin(self.deliver_batch_of(state, members)).await;
                    members = rest;
                }
            } else if self.plugin.pre.is_batch() {
                let room = self.limits.batch_size.min(max_events - delivered);
                let mut batch = vec![delivery];
                if room > 1 && max_events == usize::MAX {
                    Box::pin(self.fill(state, room)).await;
                }
                while batch.len() < room {
                    match state.ready.pop_front() {
                        Some(Job::Event(next)) if next.members.is_empty() => batch.push(next),
                        Some(other) => {
                            state.ready.push_front(other);
                            break;
                        }
                        None => break,
                    }
                }
                delivered += batch.len();
                let normal = batch.iter().filter(|d| d.mode == Mode::Normal).count();
                self.pace(state, normal).await;
                Box::pin(self.deliver_batch_of(state, batch)).await;
            } else {
                delivered += 1;
                if delivery.mode == Mode::Normal {
                    self.pace(state, 1).await;
                }
                let span = if delivery_spans_wanted() {
                    tracing::info_span!(
                        target: DELIVERY_TARGET,
                        parent: delivery.parent.as_deref().and_then(tracing::Span::id),
                        "delivery",
                        plugin = &*self.plugin.name,
                        event_id = %escape_controls(&delivery.event.id),
                        attempt = delivery.attempts + 1,
                    )
                } else {
                    tracing::Span::none()
                };
                let started = Instant::now();
                let attempt = delivery.attempts + 1;
                let suppressed = told(&delivery).into_iter().collect();
                let delivering = self.deliver(
                    &mut state.live,
                    &delivery.event,
                    attempt,
                    suppressed,
                    started,
                );
                // The call's future is about a kilobyte: awaited where it
                // is, without a span, rather than moved into an
                // `Instrumented` for every event (boxed when there is one).
                let (result, hint) = if span.is_none() {
                    delivering.await
                } else {
                    Box::pin(delivering.instrument(span.clone())).await
                };
                let latency = started.elapsed();
                span.in_scope(|| self.settle(state, delivery, result, hint, latency));
            }
        }
    }

    /// Waits until the plugin's rate limit lets `events` more deliveries
    /// through. After the drain deadline it no longer holds anything back:
    /// what is queued then is delivered once, at once.
    async fn pace(&mut self, state: &mut Loop, events: usize) {
        let Some(limiter) = state.limiter.as_mut() else {
            return;
        };
        let started = Instant::now();
        let mut waited = false;
        'events: for _ in 0..events {
            while let Some(until) = limiter.take(Instant::now()) {
                let drain = *self.aftercare.drain.borrow();
                if drain.is_some_and(|deadline| Instant::now() >= deadline) {
                    break 'events;
                }
                if !waited && state.rate_episode.is_none() {
                    tracing::info!(
                        plugin = &*self.plugin.name,
                        "rate limit {} reached: its events wait",
                        limiter.limit()
                    );
                }
                waited = true;
                let wake = drain.map_or(until, |deadline| until.min(deadline));
                tokio::select! {
                    _ = sleep_until(Some(wake)) => {}
                    _ = self.aftercare.drain.changed(), if drain.is_none() => {}
                }
            }
        }
        let plugin = &*self.plugin.name;
        match (waited, state.rate_episode.take()) {
            (true, episode) => {
                let (count, total) = episode.unwrap_or_default();
                let wait = started.elapsed();
                state.rate_episode = Some((count + events as u64, total + wait));
                if let Ok(mut stats) = self.stats.lock() {
                    stats.rate_limited += events as u64;
                    stats.rate_waited += wait;
                }
            }
            (false, Some((count, total))) => tracing::info!(
                plugin,
                "rate limit {}: {count} deliveries waited {:.1} s in all",
                limiter.limit(),
                total.as_secs_f64()
            ),
            (false, None) => {}
        }
    }

    /// For a batch hook: waits up to `batch_wait` for more events until
    /// `room` are ready, the queue closes, or a control job arrives.
    async fn fill(&self, state: &mut Loop, room: usize) {
        let until = Instant::now() + self.limits.batch_wait;
        let mut taken = Vec::new();
        loop {
            let ready = state.ready.len() + 1;
            if ready >= room || state.ready.back().is_some_and(Queued::is_control) {
                return;
            }
            if self.queue.take(&mut taken, room - ready) > 0 {
                self.admit(state, &mut taken);
                continue;
            }
            if self.queue.is_closed() || Instant::now() >= until {
                return;
            }
            let queue = self.queue.clone();
            tokio::select! {
                _ = queue.ready() => {}
                _ = sleep_until(Some(until)) => return,
            }
        }
    }

    /// Delivers `batch` in one `handle-batch` call and settles each event.
    async fn deliver_batch_of(&mut self, state: &mut Loop, batch: Vec<Delivery>) {
        // One span for the call, under the first event's span; the other
        // events' spans are linked to it.
        let parent = batch.first().and_then(|d| d.parent.as_ref()?.id());
        let span = if delivery_spans_wanted() {
            tracing::info_span!(
                target: DELIVERY_TARGET,
                parent: parent,
                "delivery",
                plugin = &*self.plugin.name,
                events = batch.len(),
            )
        } else {
            tracing::Span::none()
        };
        for delivery in batch.iter().skip(1) {
            if let Some(other) = delivery.parent.as_deref().and_then(tracing::Span::id) {
                span.follows_from(other);
            }
        }
        let started = Instant::now();
        let events: Vec<Event> = batch.iter().map(|d| (*d.event).clone()).collect();
        let attempt = batch.iter().map(|d| d.attempts + 1).max().unwrap_or(1);
        let suppressed = batch.iter().flat_map(told).collect();
        let (results, hint) = self
            .deliver_batch(&mut state.live, &events, attempt, suppressed, started)
            .instrument(span.clone())
            .await;
        let latency = started.elapsed();
        let _entered = span.enter();
        for (delivery, result) in batch.into_iter().zip(results) {
            self.settle(state, delivery, result, hint, latency);
        }
    }

    /// Applies the delivery policy to one delivery's result. A digest's
    /// result is each of its events' result.
    fn settle(
        &self,
        state: &mut Loop,
        mut delivery: Delivery,
        result: Result<(), Failure>,
        hint: Option<Duration>,
        latency: Duration,
    ) {
        delivery.attempts += 1;
        let result = result.map_err(|failure| self.report_failure(&delivery.event.id, failure));
        // One waiter for an event, one per event for a digest: no
        // allocation for the first.
        let replies: SmallVec<[_; 1]> = delivery
            .parts()
            .iter_mut()
            .map(|part| part.reply.take())
            .collect();
        let settled = &mut state.settled;
        let fate = match (&result, delivery.mode) {
            (_, Mode::Replay) => Fate::Replayed,
            (Ok(()), Mode::Normal) => {
                let transition = state.breaker.success();
                self.log_transition(transition);
                for part in delivery.parts() {
                    settled.completed.extend(part.seq);
                    settled.released += part.bytes;
                }
                Fate::Delivered
            }
            (Err(failure), Mode::Normal) => {
                let now = Instant::now();
                // A permanent error a hook returns concerns that one event.
                let unwell = failure.class != FailureClass::Returned || failure.retryable;
                let transition = state.breaker.failure(now, &self.limits, unwell);
                self.log_transition(transition);
                let first = delivery
                    .failed
                    .as_ref()
                    .map_or_else(SystemTime::now, |f| f.1);
                delivery.failed = Some(Box::new((failure.clone(), first)));
                if failure.retryable && delivery.attempts < self.limits.max_attempts {
                    let drained = self.aftercare.drain.borrow().is_some_and(|d| now >= d);
                    let fate = if drained {
                        self.leave(delivery, settled);
                        Fate::Stopped
                    } else {
                        let after =
                            retry_delay(&self.limits, delivery.attempts, hint, state.jitter.unit());
                        if let Some(wal) = &self.aftercare.wal {
                            let attempts = delivery.attempts;
                            for seq in delivery.parts().iter().filter_map(|part| part.seq) {
                                wal.attempted(&self.plugin.name, seq, attempts);
                            }
                        }
                        state.retry_counter += 1;
                        state
                            .retries
                            .insert((now + after, state.retry_counter), delivery);
                        Fate::Retrying { after }
                    };
                    for reply in replies {
                        self.finish(reply, result.clone(), fate, latency, settled);
                    }
                    return;
                }
                for part in delivery.into_parts() {
                    let entry = self.dead_letter(&part, None);
                    settled.dead_letters.push(entry);
                    settled.dead_letter_seqs.extend(part.seq);
                    settled.released += part.bytes;
                }
                Fate::DeadLettered
            }
        };
        for reply in replies {
            self.finish(reply, result.clone(), fate, latency, settled);
        }
    }
    /// Sends the outcome to whoever asked and keeps it for the counts.
    fn finish(
        &self,
        reply: Option<oneshot::Sender<Outcome>>,
        result: Result<(), Failure>,
        fate: Fate,
        latency: Duration,
        settled: &mut Settled,
    ) {
        let outcome = Outcome {
            result,
            fate,
            version: self.plugin.hash.clone(),
            latency,
        };
        if let Some(reply) = reply {
            // The caller may have stopped waiting; that is fine.
            let _ = reply.send(outcome.clone());
        }
        settled.outcomes.push(outcome);
    }

    /// The dead letter of a delivery that failed for good (its last failure
    /// and attempts), or, with `class`, of one that never failed.
    fn dead_letter(
        &self,
        delivery: &Delivery,
        never_tried: Option<(&str, String)>,
    ) -> NewDeadLetter {
        let now = chrono::Utc::now();
        let (class, error, first) = match (delivery.failed.as_deref(), never_tried) {
            (_, Some((class, error))) => (class.to_owned(), error, now),
            (Some((failure, first)), None) => (
                failure.class.as_str().to_owned(),
                failure.message.clone(),
                chrono::DateTime::<chrono::Utc>::from(*first),
            ),
            (None, None) => ("error".to_owned(), String::new(), now),
        };
        NewDeadLetter {
            plugin: self.plugin.name.to_string(),
            plugin_version: self.plugin.hash.to_string(),
            event_id: delivery.event.id.clone(),
            event_type: delivery.event.event_type.clone(),
            event_json: delivery.event.to_json(),
            class,
            attempts: delivery.attempts,
            first_failed_at: rfc3339(first),
            last_failed_at: rfc3339(now),
            last_error: error,
        }
    }

    /// Puts an event dropped from the full queue in the dead letters, and
    /// says so to whoever waits for its outcome.
    fn dead_letter_dropped(&self, mut delivery: Delivery, settled: &mut Settled) {
        let message = format!(
            "dropped from the full queue (on_full = \"drop_oldest\", queue_capacity = {})",
            self.limits.queue_capacity
        );
        if let Some(reply) = delivery.reply.take() {
            let _ = reply.send(Outcome {
                result: Err(Failure {
                    class: FailureClass::Returned,
                    retryable: false,
                    message: message.clone(),
                }),
                fate: Fate::DeadLettered,
                version: self.plugin.hash.clone(),
                latency: Duration::ZERO,
            });
        }
        let entry = self.dead_letter(&delivery, Some(("dropped", message)));
        settled.dead_letters.push(entry);
        settled.dead_letter_seqs.extend(delivery.seq);
        settled.dropped += 1;
    }

    /// Past the drain deadline: leaves every pending retry and, while the
    /// breaker holds events back (`everything`), every queued event too.
    /// Events already queued are still delivered once if the breaker lets
    /// them through.
    fn leave_pending(&self, state: &mut Loop, everything: bool) {
        for delivery in std::mem::take(&mut state.retries).into_values() {
            self.leave(delivery, &mut state.settled);
        }
        if everything {
            let mut taken = Vec::new();
            while self.queue.take(&mut taken, BATCH) > 0 {
                state.ready.extend(taken.drain(..));
            }
        }
        for job in std::mem::take(&mut state.ready) {
            match job {
                // Retries that came due before the deadline, and with
                // `everything` first deliveries too.
                Job::Event(delivery)
                    if delivery.mode == Mode::Normal && (everything || delivery.attempts > 0) =>
                {
                    self.leave(delivery, &mut state.settled)
                }
                Job::Dropped(delivery) if everything => {
                    self.dead_letter_dropped(delivery, &mut state.settled)
                }
                // A replay's entry stays in the store; versions and
                // configurations no longer matter.
                Job::Event(delivery) if everything && delivery.mode == Mode::Replay => {}
                Job::Swap(_) | Job::Reconfigure { .. } if everything => {}
                job => state.ready.push_back(job),
            }
        }
    }

    /// Leaves one pending delivery at shutdown: in the write-ahead log for
    /// the next start, or, without one, in the dead letters. A digest
    /// leaves each of its events.
    fn leave(&self, delivery: Delivery, settled: &mut Settled) {
        if !delivery.members.is_empty() {
            for part in delivery.into_parts() {
                self.leave(part, settled);
            }
            return;
        }
        settled.released += delivery.bytes;
        if self.aftercare.wal.is_some() && delivery.seq.is_some() {
            settled.left_in_log += 1;
            return;
        }
        let entry = match &delivery.failed {
            Some(_) => {
                let mut entry = self.dead_letter(&delivery, None);
                entry
                    .last_error
                    .push_str(" (still waiting for a retry when the host stopped)");
                entry
            }
            None => self.dead_letter(
                &delivery,
                Some((
                    "shutdown",
                    "not delivered before the drain timeout ended".to_owned(),
                )),
            ),
        };
        settled.dead_letters.push(entry);
        settled.dead_letter_seqs.extend(delivery.seq);
        settled.left_to_dead_letters += 1;
    }

    /// Writes what the last deliveries settled: dead letters first, then
    /// completions in the log, then the counts, so that a count read says
    /// the store has it. Runs after every wake-up, so the rare store
    /// writes are boxed: their futures are kilobytes, which an async fn
    /// would otherwise lay out, and move, every time.
    async fn record(&self, state: &mut Loop) {
        let (settled, dedup) = (&mut state.settled, &mut state.dedup);
        if let (Some(store), true) = (&self.aftercare.routing_store, dedup.has_changes()) {
            // Before the completions: a repeat is counted before its record
            // in the log is done with.
            let changes = dedup.take_changes();
            if let Err(err) = Box::pin(store.save(&self.plugin.name, &changes)).await {
                tracing::error!(
                    plugin = &*self.plugin.name,
                    "{err}; the last deduplication counts are kept in memory only"
                );
            }
        }
        if !settled.dead_letters.is_empty() {
            let entries = std::mem::take(&mut settled.dead_letters);
            let seqs = std::mem::take(&mut settled.dead_letter_seqs);
            match Box::pin(self.aftercare.dead_letters.add(&entries)).await {
                Ok(()) => settled.completed.extend(seqs),
                Err(err) => {
                    let ids: Vec<&str> = entries.iter().map(|e| e.event_id.as_str()).collect();
                    tracing::error!(
                        plugin = &*self.plugin.name,
                        "cannot write {} dead letters ({err}); events {}{}",
                        entries.len(),
                        ids.join(", "),
                        if self.aftercare.wal.is_some() {
                            " stay in the write-ahead log and are delivered again at the next start"
                        } else {
                            " are lost"
                        }
                    );
                }
            }
        }
        if let Some(wal) = &self.aftercare.wal {
            if !settled.completed.is_empty() {
                wal.completed(&self.plugin.name, std::mem::take(&mut settled.completed));
            }
        }
        settled.completed.clear();
        if settled.released > 0 {
            self.queue.release(std::mem::take(&mut settled.released));
        }
        // Counted once per wake-up, so readers of the counts contend for
        // the lock once per batch rather than once per event.
        if let Ok(mut stats) = self.stats.lock() {
            for outcome in settled.outcomes.drain(..) {
                stats.record(&outcome);
            }
            // Outcomes counted dead letters already; these had no delivery.
            let without_outcome = settled.dropped + settled.left_to_dead_letters;
            stats.dead_lettered += without_outcome;
            stats.dropped += settled.dropped;
            stats.left_in_log += settled.left_in_log;
            stats.left_to_dead_letters += settled.left_to_dead_letters;
            stats.suppressed += settled.suppressed;
            stats.digests += settled.digests;
            stats.grouped += settled.grouped;
            stats.held = state.groups.held() as u64;
            stats.fuel_consumed += self.fuel_consumed.swap(0, Ordering::Relaxed);
        }
        settled.outcomes.clear();
        (
            settled.dropped,
            settled.left_in_log,
            settled.left_to_dead_letters,
            settled.suppressed,
            settled.digests,
            settled.grouped,
        ) = (0, 0, 0, 0, 0, 0);
    }

    /// Logs a breaker transition once and counts it.
    fn log_transition(&self, transition: Option<Transition>) {
        let Some(transition) = transition else {
            return;
        };
        let plugin = &*self.plugin.name;
        match transition {
            Transition::Opened { failures, cooldown } => tracing::warn!(
                plugin,
                "circuit breaker opened after {failures} failures in a row: no delivery for \
                 {} s; its events wait",
                cooldown.as_secs_f64()
            ),
            Transition::Reopened { cooldown } => tracing::warn!(
                plugin,
                "circuit breaker: the probe failed; no delivery for {} s",
                cooldown.as_secs_f64()
            ),
            Transition::Probing => {
                tracing::info!(
                    plugin,
                    "circuit breaker: cool-down over, probing with one event"
                )
            }
            Transition::Closed => {
                tracing::info!(plugin, "circuit breaker closed: the probe succeeded")
            }
            Transition::Reset => tracing::info!(
                plugin,
                "circuit breaker closed: a new version or configuration ended the cool-down"
            ),
        }
        if let Ok(mut stats) = self.stats.lock() {
            match transition {
                Transition::Opened { .. } => stats.breaker_opened += 1,
                Transition::Closed | Transition::Reset => stats.breaker_closed += 1,
                Transition::Reopened { .. } | Transition::Probing => {}
            }
            stats.breaker = match transition {
                Transition::Opened { .. } | Transition::Reopened { .. } => BreakerState::Open,
                Transition::Probing => BreakerState::HalfOpen,
                Transition::Closed | Transition::Reset => BreakerState::Closed,
            };
        }
    }

    /// A failure's message masked (secrets) and cut to
    /// [`MAX_FAILURE_MESSAGE_BYTES`], and logged (rate-limited).
    fn report_failure(&self, id: &str, mut failure: Failure) -> Failure {
        let settings = &self.grants.settings;
        let total = failure.message.len();
        failure.message = match settings.redact_prefix(&failure.message, MAX_FAILURE_MESSAGE_BYTES)
        {
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
                event_id = %escape_controls(id),
                class = failure.class.as_str(),
                "{}",
                escape_controls(&failure.message)
            );
        }
        failure
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
    /// the instance after any failure that is not a returned error. Returns
    /// the wait the hook asked for before a retry, if it did.
    async fn deliver(
        &self,
        live: &mut Option<Live>,
        event: &Event,
        attempt: u32,
        suppressed: Vec<(String, u32)>,
        started: Instant,
    ) -> (Result<(), Failure>, Option<Duration>) {
        let deadline = started + self.limits.timeout;
        let instance = match live {
            Some(instance) => instance,
            // Boxed: instantiating's future is twice the call's, and with
            // instance reuse it is rare.
            None => match Box::pin(self.instantiate(deadline)).await {
                Ok(instance) => live.insert(instance),
                Err(failure) => return (Err(failure), None),
            },
        };
        let result = self
            .call(instance, event, attempt, suppressed, deadline)
            .await;
        // A wait asked for counts only with an error the hook returned.
        let hint = match &result {
            Err(failure) if failure.class == FailureClass::Returned => {
                instance.store.data().delivery.retry_after
            }
            _ => None,
        };
        let trapped = matches!(&result, Err(f) if f.class != FailureClass::Returned);
        if trapped || !self.limits.reuse_instance {
            *live = None;
        }
        (result, hint)
    }

    /// Calls a batch hook with `events`: one result per event. A trap fails
    /// them all and drops the instance.
    async fn deliver_batch(
        &self,
        live: &mut Option<Live>,
        events: &[Event],
        attempt: u32,
        suppressed: Vec<(String, u32)>,
        started: Instant,
    ) -> (Vec<Result<(), Failure>>, Option<Duration>) {
        let deadline = started + self.limits.timeout;
        let instance = match live {
            Some(instance) => instance,
            None => match Box::pin(self.instantiate(deadline)).await {
                Ok(instance) => live.insert(instance),
                Err(failure) => return (vec![Err(failure); events.len()], None),
            },
        };
        let results = self
            .call_batch(instance, events, attempt, suppressed, deadline)
            .await;
        // A wait asked for counts only when the call returned its results.
        let hint = match &results {
            Ok(_) => instance.store.data().delivery.retry_after,
            Err(_) => None,
        };
        if results.is_err() || !self.limits.reuse_instance {
            *live = None;
        }
        match results {
            Ok(results) => (results, hint),
            Err(failure) => (vec![Err(failure); events.len()], hint),
        }
    }

    async fn call(
        &self,
        live: &mut Live,
        event: &Event,
        attempt: u32,
        suppressed: Vec<(String, u32)>,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let Exports::Single(hook) = &live.exports else {
            unreachable!("a batch hook's events go through call_batch");
        };
        arm_limits(&mut live.store, &self.limits, deadline);
        live.store.data_mut().delivery = DeliveryCall {
            attempt,
            retry_after: None,
            suppressed,
        };
        let call = hook
            .hookhost_hooks_handler()
            .call_handle(&mut live.store, event);
        let result = within_deadline(call, deadline).await;
        self.count_fuel(&live.store);
        match result {
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
        attempt: u32,
        suppressed: Vec<(String, u32)>,
        deadline: Instant,
    ) -> Result<Vec<Result<(), Failure>>, Failure> {
        let Exports::Batch(hook) = &live.exports else {
            unreachable!("a single-event hook's events go through call");
        };
        arm_limits(&mut live.store, &self.limits, deadline);
        live.store.data_mut().delivery = DeliveryCall {
            attempt,
            retry_after: None,
            suppressed,
        };
        let call = hook
            .hookhost_hooks_batch_handler()
            .call_handle_batch(&mut live.store, events);
        let result = within_deadline(call, deadline).await;
        self.count_fuel(&live.store);
        match result {
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

    /// Counts the fuel the call just made consumed: what `arm_limits`
    /// gave it less what is left.
    fn count_fuel(&self, store: &Store<PluginState>) {
        let left = store.get_fuel().unwrap_or(self.limits.fuel);
        let used = self.limits.fuel.saturating_sub(left);
        self.fuel_consumed.fetch_add(used, Ordering::Relaxed);
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

/// Whether a subscriber records delivery spans (JSON logs, traces). Asked
/// before a span is made: a disabled `info_span!` still builds its fields,
/// and with tracing's `log` compatibility hands them to `log`, at a cost
/// beside a hook call's.
fn delivery_spans_wanted() -> bool {
    tracing::enabled!(target: DELIVERY_TARGET, tracing::Level::INFO)
}

/// What `delivery.suppressed` tells the hook about `delivery`: its id and
/// count, when the count is not 0.
fn told(delivery: &Delivery) -> Option<(String, u32)> {
    (delivery.suppressed > 0).then(|| (delivery.event.id.clone(), delivery.suppressed))
}

/// Sleeps until `until`, or forever without one.
async fn sleep_until(until: Option<Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until.into()).await,
        None => std::future::pending().await,
    }
}

/// A UTC time as the dead-letter store writes it (RFC 3339, to the
/// millisecond).
fn rfc3339(time: chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
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
