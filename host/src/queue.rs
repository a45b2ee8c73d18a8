//! A plugin's queue: many producers (`emit`, `send`, recovery, reloads),
//! one consumer (the plugin's worker), bounded by events and by bytes.
//!
//! Accepting an event is two-phase: [`PluginQueue::try_reserve`] (or
//! [`PluginQueue::reserve`], which waits) makes room, and
//! [`Reservation::push`] queues the event and cannot fail, so that a host
//! can reserve in every plugin's queue first and push to all or to none.
//! Dropping a reservation gives its room back.
//!
//! An event counts against the event capacity from its reservation until
//! the worker takes it, and against the byte capacity from its reservation
//! until the worker [releases](PluginQueue::release) it: an event the worker
//! holds for a retry keeps its bytes. Control items (a new version, new
//! limits) count against neither.
//!
//! When the queue is full, the policy decides: `Reject` refuses at once
//! (`try_reserve`), `Wait` and `Reject` wait in `reserve`, and `DropOldest`
//! makes room by dropping the oldest queued events when the event is
//! pushed, handing them to the caller.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use tokio::sync::Notify;

use crate::config::OnFull;

/// What a [`PluginQueue`] holds.
pub(crate) trait Queued {
    /// The bytes the item counts against the queue's byte capacity; the same
    /// every time it is asked. Control items count 0.
    fn bytes(&self) -> usize;
    /// Whether the item is a control item, which no capacity bounds and
    /// `DropOldest` never drops.
    fn is_control(&self) -> bool;
    /// Whether the item is one the worker must see even while it leaves
    /// events queued ([`PluginQueue::control_ready`]): a new version or new
    /// settings, which end a circuit breaker's cool-down.
    fn interrupts(&self) -> bool {
        self.is_control()
    }
}

/// Why there is no room for an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QueueError {
    /// The queue holds as many events (`events`) or bytes (`!events`) as it
    /// may.
    #[error("the queue holds as many {} as it may", if *events { "events" } else { "bytes" })]
    Full {
        /// Whether the event capacity is the bound reached.
        events: bool,
    },
    /// The event is larger than the queue's whole byte capacity.
    #[error("the event is larger than the queue's byte capacity")]
    TooLarge,
    /// The queue is closed: it takes no more events.
    #[error("the queue is closed")]
    Closed,
}

/// A bounded multi-producer, single-consumer queue for one plugin.
pub(crate) struct PluginQueue<T: Queued> {
    capacity_events: usize,
    capacity_bytes: usize,
    policy: OnFull,
    inner: Mutex<Inner<T>>,
    /// Wakes the worker when an item is pushed or the queue closes.
    items: Notify,
    /// Wakes producers waiting for room.
    room: Notify,
}

struct Inner<T> {
    items: VecDeque<T>,
    /// Events in `items`, control items aside.
    queued_events: usize,
    /// The bytes of the events in `items`.
    queued_bytes: usize,
    /// Control items in `items`.
    queued_controls: usize,
    /// Items in `items` that interrupt a worker waiting in `control_ready`.
    queued_interrupts: usize,
    /// Reservations neither pushed nor dropped yet.
    reserved_events: usize,
    /// The bytes of reserved events, queued events, and events the worker
    /// took and has not released.
    held_bytes: usize,
    closed: bool,
    /// Calls to `reserve` waiting for room.
    room_waiters: usize,
    /// The worker waits in `ready`.
    worker_waits_for_items: bool,
    /// The worker waits in `control_ready`.
    worker_waits_for_control: bool,
}

impl<T: Queued> Inner<T> {
    /// Takes the oldest queued event out, passing over control items, and
    /// gives back what it counted. There must be one.
    fn drop_oldest_event(&mut self) -> T {
        let index = if self.queued_controls == 0 {
            Some(0)
        } else {
            self.items.iter().position(|item| !item.is_control())
        };
        let event = index
            .and_then(|index| self.items.remove(index))
            .expect("queued_events counts an event in the queue");
        let bytes = event.bytes();
        self.queued_events -= 1;
        self.queued_bytes -= bytes;
        self.held_bytes -= bytes;
        event
    }

    /// Counts a pushed item in and queues it; whether the worker is to be
    /// woken.
    fn enqueue(&mut self, item: T) -> bool {
        let control = item.is_control();
        let interrupts = item.interrupts();
        self.queued_interrupts += usize::from(interrupts);
        if control {
            self.queued_controls += 1;
        } else {
            let bytes = item.bytes();
            self.queued_events += 1;
            self.queued_bytes += bytes;
            self.held_bytes += bytes;
        }
        self.items.push_back(item);
        let wake = self.worker_waits_for_items || (interrupts && self.worker_waits_for_control);
        if wake {
            self.worker_waits_for_items = false;
            self.worker_waits_for_control = false;
        }
        wake
    }

    /// Whether nothing is queued and nothing ever will be.
    fn finished(&self) -> bool {
        self.closed && self.items.is_empty() && self.reserved_events == 0
    }
}

impl<T: Queued> PluginQueue<T> {
    /// An empty, open queue that holds at most `capacity_events` events and
    /// `capacity_bytes` bytes of events.
    pub(crate) fn new(capacity_events: usize, capacity_bytes: usize, policy: OnFull) -> Self {
        PluginQueue {
            capacity_events,
            capacity_bytes,
            policy,
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                queued_events: 0,
                queued_bytes: 0,
                queued_controls: 0,
                queued_interrupts: 0,
                reserved_events: 0,
                held_bytes: 0,
                closed: false,
                room_waiters: 0,
                worker_waits_for_items: false,
                worker_waits_for_control: false,
            }),
            items: Notify::new(),
            room: Notify::new(),
        }
    }

    /// No code panics while holding the lock with the counts half updated,
    /// so a poisoned lock still guards consistent counts.
    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves room for one event of `bytes` without waiting.
    ///
    /// `Reject` and `Wait`: `Full` when the event does not fit now.
    /// `DropOldest`: reserves if dropping queued events (not control items,
    /// not events the worker took) would make it fit; the events are dropped
    /// when it is pushed. `Full` when even dropping every queued event would
    /// not make room, because of bytes the worker holds.
    pub(crate) fn try_reserve(&self, bytes: usize) -> Result<Reservation<'_, T>, QueueError> {
        let mut inner = self.lock();
        self.reserve_locked(&mut inner, bytes)?;
        Ok(Reservation { queue: self, bytes })
    }

    fn reserve_locked(&self, inner: &mut Inner<T>, bytes: usize) -> Result<(), QueueError> {
        if inner.closed {
            return Err(QueueError::Closed);
        }
        if bytes > self.capacity_bytes {
            return Err(QueueError::TooLarge);
        }
        let events_after = inner.queued_events + inner.reserved_events + 1;
        let bytes_after = inner.held_bytes + bytes;
        let (evictable_events, evictable_bytes) = match self.policy {
            OnFull::DropOldest => (inner.queued_events, inner.queued_bytes),
            OnFull::Reject | OnFull::Wait => (0, 0),
        };
        if events_after > self.capacity_events + evictable_events {
            return Err(QueueError::Full { events: true });
        }
        if bytes_after > self.capacity_bytes + evictable_bytes {
            return Err(QueueError::Full { events: false });
        }
        inner.reserved_events += 1;
        inner.held_bytes += bytes;
        Ok(())
    }

    /// Reserves room for one event of `bytes`, waiting until there is room
    /// (`Reject`, `Wait`) or the queue closes. `DropOldest` never waits: it
    /// answers as [`PluginQueue::try_reserve`] does. Cancel-safe.
    pub(crate) async fn reserve(&self, bytes: usize) -> Result<Reservation<'_, T>, QueueError> {
        let mut waiting: Option<RoomWaiter<'_, T>> = None;
        loop {
            // Created before the check: `notify_waiters` wakes every
            // `Notified` created before it is called, polled or not.
            let room = self.room.notified();
            {
                let mut inner = self.lock();
                match self.reserve_locked(&mut inner, bytes) {
                    Err(QueueError::Full { .. }) if self.policy != OnFull::DropOldest => {
                        if waiting.is_none() {
                            inner.room_waiters += 1;
                            waiting = Some(RoomWaiter(self));
                        }
                    }
                    result => {
                        if let Some(waiter) = waiting.take() {
                            inner.room_waiters -= 1;
                            std::mem::forget(waiter);
                        }
                        return result.map(|()| Reservation { queue: self, bytes });
                    }
                }
            }
            room.await;
        }
    }

    /// [`PluginQueue::reserve`] for a caller that is not async: blocks the
    /// thread until there is room. Never call it on an async runtime's
    /// thread: the worker that would make room may need that thread.
    pub(crate) fn reserve_blocking(&self, bytes: usize) -> Result<Reservation<'_, T>, QueueError> {
        match self.try_reserve(bytes) {
            Err(QueueError::Full { .. }) if self.policy != OnFull::DropOldest => {
                block_on(self.reserve(bytes))
            }
            result => result,
        }
    }

    /// Queues a control item, or an event that must be queued whatever the
    /// capacity (one recovered after a restart). An event pushed this way
    /// counts against the capacities like any other from then on. Gives the
    /// item back if the queue is closed.
    pub(crate) fn push_unbounded(&self, item: T) -> Result<(), T> {
        let wake = {
            let mut inner = self.lock();
            if inner.closed {
                return Err(item);
            }
            inner.enqueue(item)
        };
        if wake {
            self.items.notify_waiters();
        }
        Ok(())
    }

    /// The worker: moves up to `max` queued items into `out`, oldest first,
    /// without waiting; returns how many. The events' bytes stay held until
    /// [`PluginQueue::release`].
    pub(crate) fn take(&self, out: &mut Vec<T>, max: usize) -> usize {
        let (count, wake) = {
            let mut inner = self.lock();
            let count = max.min(inner.items.len());
            let (mut events, mut bytes, mut controls, mut interrupts) = (0, 0, 0, 0);
            out.reserve(count);
            for item in inner.items.drain(..count) {
                interrupts += usize::from(item.interrupts());
                if item.is_control() {
                    controls += 1;
                } else {
                    events += 1;
                    bytes += item.bytes();
                }
                out.push(item);
            }
            inner.queued_events -= events;
            inner.queued_bytes -= bytes;
            inner.queued_controls -= controls;
            inner.queued_interrupts -= interrupts;
            (count, events > 0 && inner.room_waiters > 0)
        };
        if wake {
            self.room.notify_waiters();
        }
        count
    }

    /// The worker: waits until an item is queued, or until the queue is
    /// closed, empty and has no reservation left (then `take` finds nothing,
    /// now and from then on, and this returns at once). Cancel-safe.
    pub(crate) async fn ready(&self) {
        loop {
            let pushed = self.items.notified();
            {
                let mut inner = self.lock();
                inner.worker_waits_for_items = inner.items.is_empty() && !inner.finished();
                if !inner.worker_waits_for_items {
                    return;
                }
            }
            pushed.await;
        }
    }

    /// The worker, while it leaves events queued: waits until an
    /// interrupting item ([`Queued::interrupts`]) is queued; once the queue
    /// is closed and holds none, forever. Cancel-safe.
    pub(crate) async fn control_ready(&self) {
        loop {
            let pushed = self.items.notified();
            {
                let mut inner = self.lock();
                inner.worker_waits_for_control = inner.queued_interrupts == 0;
                if !inner.worker_waits_for_control {
                    return;
                }
            }
            pushed.await;
        }
    }

    /// Whether an interrupting item ([`Queued::interrupts`]) is queued.
    pub(crate) fn has_control(&self) -> bool {
        self.lock().queued_interrupts > 0
    }

    /// Whether nothing is queued or reserved and the queue is closed: the
    /// worker will never get another item.
    pub(crate) fn is_finished(&self) -> bool {
        self.lock().finished()
    }

    /// The worker: gives back the bytes of taken events it has finished
    /// with (handled, dead-lettered), waking producers waiting for room.
    /// One call may give back the bytes of many events.
    pub(crate) fn release(&self, bytes: usize) {
        let wake = {
            let mut inner = self.lock();
            debug_assert!(inner.held_bytes >= bytes, "released more bytes than held");
            inner.held_bytes = inner.held_bytes.saturating_sub(bytes);
            inner.room_waiters > 0
        };
        if wake {
            self.room.notify_waiters();
        }
    }

    /// Takes no more reservations or pushes; wakes every waiter. What is
    /// queued, and what outstanding reservations push, the worker still
    /// takes.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.room.notify_waiters();
        self.items.notify_waiters();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Events queued and not taken yet, control items aside.
    pub(crate) fn len(&self) -> usize {
        self.lock().queued_events
    }

    #[cfg(test)]
    /// The bytes of reserved, queued, and taken but unreleased events.
    pub(crate) fn held_bytes(&self) -> usize {
        self.lock().held_bytes
    }
}

/// Room for one event in a [`PluginQueue`]. Dropping it unused gives the
/// room back.
#[must_use = "dropping a reservation gives its room back"]
pub(crate) struct Reservation<'q, T: Queued> {
    queue: &'q PluginQueue<T>,
    bytes: usize,
}

impl<T: Queued> Reservation<'_, T> {
    /// Queues `event`, whose [`Queued::bytes`] must be the bytes reserved,
    /// even if the queue closed since the reservation. Returns the events
    /// `DropOldest` dropped to make room for this one, oldest first (empty
    /// for the other policies); their bytes are no longer held, and they are
    /// the caller's to dead-letter.
    #[must_use = "the events DropOldest dropped are the caller's to dead-letter"]
    pub(crate) fn push(self, event: T) -> Vec<T> {
        debug_assert!(
            !event.is_control(),
            "control items go through push_unbounded"
        );
        debug_assert_eq!(event.bytes(), self.bytes, "pushed an event of another size");
        let (queue, bytes) = (self.queue, self.bytes);
        std::mem::forget(self);
        let mut dropped = Vec::new();
        let wake = {
            let mut inner = queue.lock();
            if queue.policy == OnFull::DropOldest {
                // Room for this event only: a queue over its capacity
                // through `push_unbounded` stays over it. Events the worker
                // took since the reservation free event room but hold their
                // bytes: then this stops short, and the queue holds more
                // bytes than its capacity until they are released.
                let mut events_over =
                    inner.queued_events + inner.reserved_events > queue.capacity_events;
                let mut bytes_over = inner
                    .held_bytes
                    .saturating_sub(queue.capacity_bytes)
                    .min(bytes);
                while (events_over || bytes_over > 0) && inner.queued_events > 0 {
                    let oldest = inner.drop_oldest_event();
                    events_over = false;
                    bytes_over = bytes_over.saturating_sub(oldest.bytes());
                    dropped.push(oldest);
                }
            }
            inner.reserved_events -= 1;
            // Counted as held since the reservation.
            inner.held_bytes -= bytes;
            inner.enqueue(event)
        };
        if wake {
            queue.items.notify_waiters();
        }
        dropped
    }
}

impl<T: Queued> Drop for Reservation<'_, T> {
    fn drop(&mut self) {
        let (wake_room, wake_worker) = {
            let mut inner = self.queue.lock();
            inner.reserved_events -= 1;
            inner.held_bytes -= self.bytes;
            let wake_worker = inner.finished() && inner.worker_waits_for_items;
            (inner.room_waiters > 0, wake_worker)
        };
        if wake_room {
            self.queue.room.notify_waiters();
        }
        if wake_worker {
            self.queue.items.notify_waiters();
        }
    }
}

/// Counts a `reserve` call among the room waiters until it returns or is
/// cancelled.
struct RoomWaiter<'q, T: Queued>(&'q PluginQueue<T>);

impl<T: Queued> Drop for RoomWaiter<'_, T> {
    fn drop(&mut self) {
        self.0.lock().room_waiters -= 1;
    }
}

/// Runs `future` to completion on this thread, parked between polls.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use super::*;

    /// An event (id, bytes) or a control item (id).
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Item {
        Event(u64, usize),
        Control(u64),
    }
    use Item::{Control, Event};

    impl Queued for Item {
        fn bytes(&self) -> usize {
            match self {
                Event(_, bytes) => *bytes,
                Control(_) => 0,
            }
        }
        fn is_control(&self) -> bool {
            matches!(self, Control(_))
        }
    }

    /// A waker that remembers it was woken.
    #[derive(Default)]
    struct Woken(AtomicBool);

    impl Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    impl Woken {
        /// Polls `future` once with this waker, forgetting earlier wakes.
        fn poll<F: Future>(self: &Arc<Self>, future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
            self.0.store(false, Ordering::SeqCst);
            let waker = Waker::from(self.clone());
            future.poll(&mut Context::from_waker(&waker))
        }

        fn woken(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn push(queue: &PluginQueue<Item>, id: u64, bytes: usize) -> Vec<Item> {
        let reservation = queue.try_reserve(bytes).expect("room");
        reservation.push(Event(id, bytes))
    }

    fn take_all(queue: &PluginQueue<Item>) -> Vec<Item> {
        let mut out = Vec::new();
        queue.take(&mut out, usize::MAX);
        out
    }

    const ALL_POLICIES: [OnFull; 3] = [OnFull::Reject, OnFull::Wait, OnFull::DropOldest];
    const FULL_BY_EVENTS: QueueError = QueueError::Full { events: true };
    const FULL_BY_BYTES: QueueError = QueueError::Full { events: false };

    #[test]
    fn reject_and_wait_refuse_an_event_past_the_event_capacity_until_one_is_taken() {
        for policy in [OnFull::Reject, OnFull::Wait] {
            let queue = PluginQueue::new(2, 1000, policy);
            let reserved = queue.try_reserve(1).unwrap();
            push(&queue, 1, 1);
            assert_eq!(queue.try_reserve(1).err(), Some(FULL_BY_EVENTS));
            assert!(reserved.push(Event(2, 1)).is_empty());
            assert_eq!(queue.len(), 2);
            assert_eq!(queue.try_reserve(1).err(), Some(FULL_BY_EVENTS));
            let mut out = Vec::new();
            assert_eq!(queue.take(&mut out, 1), 1);
            assert_eq!(out, [Event(1, 1)]);
            // Taken, its bytes still held: the event room is back.
            assert_eq!(queue.held_bytes(), 2);
            push(&queue, 3, 1);
        }
    }

    #[test]
    fn reject_and_wait_refuse_an_event_past_the_byte_capacity_until_bytes_are_released() {
        for policy in [OnFull::Reject, OnFull::Wait] {
            let queue = PluginQueue::new(10, 100, policy);
            push(&queue, 1, 60);
            assert_eq!(queue.try_reserve(41).err(), Some(FULL_BY_BYTES));
            assert_eq!(take_all(&queue), [Event(1, 60)]);
            assert_eq!(queue.try_reserve(41).err(), Some(FULL_BY_BYTES));
            drop(queue.try_reserve(40).unwrap());
            queue.release(60);
            assert_eq!(queue.held_bytes(), 0);
            push(&queue, 2, 100);
        }
    }

    #[tokio::test]
    async fn an_event_larger_than_the_byte_capacity_is_too_large_for_every_policy() {
        for policy in ALL_POLICIES {
            let queue = PluginQueue::<Item>::new(10, 100, policy);
            assert_eq!(queue.try_reserve(101).err(), Some(QueueError::TooLarge));
            assert_eq!(queue.reserve(101).await.err(), Some(QueueError::TooLarge));
            assert_eq!(
                queue.reserve_blocking(101).err(),
                Some(QueueError::TooLarge)
            );
            drop(queue.try_reserve(100).unwrap());
        }
    }

    #[test]
    fn drop_oldest_drops_the_oldest_events_when_the_new_one_is_pushed() {
        let queue = PluginQueue::new(3, 1000, OnFull::DropOldest);
        push(&queue, 1, 10);
        queue.push_unbounded(Control(100)).unwrap();
        push(&queue, 2, 10);
        push(&queue, 3, 10);
        let reserved = queue.try_reserve(10).unwrap();
        // Nothing is dropped before the push.
        assert_eq!(queue.len(), 3);
        assert_eq!(reserved.push(Event(4, 10)), [Event(1, 10)]);
        assert_eq!(push(&queue, 5, 10), [Event(2, 10)]);
        assert_eq!(queue.held_bytes(), 30);
        assert_eq!(
            take_all(&queue),
            [Control(100), Event(3, 10), Event(4, 10), Event(5, 10)]
        );
    }

    #[test]
    fn drop_oldest_drops_as_many_events_as_the_bytes_need_oldest_first() {
        let queue = PluginQueue::new(10, 100, OnFull::DropOldest);
        push(&queue, 1, 40);
        push(&queue, 2, 40);
        assert_eq!(push(&queue, 3, 50), [Event(1, 40)]);
        assert_eq!(push(&queue, 4, 100), [Event(2, 40), Event(3, 50)]);
        assert_eq!(queue.held_bytes(), 100);
        assert_eq!(take_all(&queue), [Event(4, 100)]);
    }

    #[test]
    fn drop_oldest_never_drops_control_items() {
        let queue = PluginQueue::new(1, 100, OnFull::DropOldest);
        queue.push_unbounded(Control(100)).unwrap();
        push(&queue, 1, 10);
        queue.push_unbounded(Control(101)).unwrap();
        assert_eq!(push(&queue, 2, 10), [Event(1, 10)]);
        assert_eq!(push(&queue, 3, 10), [Event(2, 10)]);
        assert!(queue.has_control());
        assert_eq!(take_all(&queue), [Control(100), Control(101), Event(3, 10)]);
    }

    #[test]
    fn drop_oldest_drops_one_event_for_one_in_a_queue_over_capacity_after_recovery() {
        let queue = PluginQueue::new(2, 1000, OnFull::DropOldest);
        for id in 1..=4 {
            queue.push_unbounded(Event(id, 10)).unwrap();
        }
        assert_eq!(push(&queue, 5, 10), [Event(1, 10)]);
        assert_eq!(queue.len(), 4);
    }

    #[tokio::test]
    async fn drop_oldest_refuses_without_waiting_when_the_worker_holds_the_bytes() {
        let queue = PluginQueue::new(10, 100, OnFull::DropOldest);
        push(&queue, 1, 60);
        push(&queue, 2, 30);
        let mut out = Vec::new();
        queue.take(&mut out, 1);
        // Dropping event 2 frees 30 bytes: 10 too few for 50.
        assert_eq!(queue.try_reserve(50).err(), Some(FULL_BY_BYTES));
        assert_eq!(queue.reserve(50).await.err(), Some(FULL_BY_BYTES));
        assert_eq!(queue.reserve_blocking(50).err(), Some(FULL_BY_BYTES));
        assert_eq!(queue.len(), 1);
        assert_eq!(push(&queue, 3, 40), [Event(2, 30)]);
        queue.release(60);
        assert_eq!(push(&queue, 4, 60), Vec::<Item>::new());
    }

    #[test]
    fn drop_oldest_does_not_drop_what_the_worker_took_after_the_reservation() {
        let queue = PluginQueue::new(10, 100, OnFull::DropOldest);
        push(&queue, 1, 60);
        let reserved = queue.try_reserve(50).unwrap();
        assert_eq!(take_all(&queue), [Event(1, 60)]);
        assert!(reserved.push(Event(2, 50)).is_empty());
        // Over the capacity until the worker releases event 1.
        assert_eq!(queue.held_bytes(), 110);
        queue.release(60);
        assert_eq!(queue.held_bytes(), 50);
    }

    #[test]
    fn a_reservation_dropped_unused_gives_its_room_back_and_drops_nothing() {
        for policy in ALL_POLICIES {
            let queue = PluginQueue::new(1, 100, policy);
            let reserved = queue.try_reserve(70).unwrap();
            assert_eq!(queue.held_bytes(), 70);
            if policy != OnFull::DropOldest {
                assert_eq!(queue.try_reserve(10).err(), Some(FULL_BY_EVENTS));
            }
            drop(reserved);
            assert_eq!(queue.held_bytes(), 0);
            push(&queue, 1, 100);
            // DropOldest would drop event 1 for this one, had it been pushed.
            let unused = queue.try_reserve(100);
            assert_eq!(unused.is_ok(), policy == OnFull::DropOldest);
            drop(unused);
            assert_eq!(take_all(&queue), [Event(1, 100)]);
        }
    }

    #[test]
    fn reserve_waits_until_the_worker_takes_an_event() {
        for policy in [OnFull::Reject, OnFull::Wait] {
            let queue = PluginQueue::new(1, 100, policy);
            push(&queue, 1, 10);
            let waker = Arc::new(Woken::default());
            let mut reserving = pin!(queue.reserve(10));
            assert!(waker.poll(reserving.as_mut()).is_pending());
            queue.release(0);
            assert!(waker.poll(reserving.as_mut()).is_pending());
            assert_eq!(take_all(&queue), [Event(1, 10)]);
            assert!(waker.woken());
            let Poll::Ready(Ok(reserved)) = waker.poll(reserving.as_mut()) else {
                panic!("no room after a take");
            };
            assert!(reserved.push(Event(2, 10)).is_empty());
        }
    }

    #[test]
    fn reserve_waits_until_the_worker_releases_bytes() {
        let queue = PluginQueue::new(10, 100, OnFull::Wait);
        push(&queue, 1, 80);
        let waker = Arc::new(Woken::default());
        let mut reserving = pin!(queue.reserve(30));
        assert!(waker.poll(reserving.as_mut()).is_pending());
        take_all(&queue);
        assert!(waker.poll(reserving.as_mut()).is_pending());
        queue.release(80);
        assert!(waker.woken());
        assert!(matches!(waker.poll(reserving.as_mut()), Poll::Ready(Ok(_))));
    }

    #[test]
    fn a_cancelled_reserve_stops_counting_as_a_waiter() {
        let queue = PluginQueue::new(1, 100, OnFull::Wait);
        push(&queue, 1, 10);
        {
            let waker = Arc::new(Woken::default());
            let mut reserving = pin!(queue.reserve(10));
            assert!(waker.poll(reserving.as_mut()).is_pending());
            assert_eq!(queue.lock().room_waiters, 1);
        }
        assert_eq!(queue.lock().room_waiters, 0);
    }

    /// Waits until a producer waits for room in `queue`.
    fn wait_for_a_room_waiter(queue: &PluginQueue<Item>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while queue.lock().room_waiters == 0 {
            assert!(Instant::now() < deadline, "no producer waits for room");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn reserve_blocking_blocks_a_thread_until_the_worker_takes_an_event() {
        let queue = Arc::new(PluginQueue::new(1, 100, OnFull::Wait));
        push(&queue, 1, 10);
        let producer = std::thread::spawn({
            let queue = queue.clone();
            move || {
                let reserved = queue.reserve_blocking(10).unwrap();
                reserved.push(Event(2, 10))
            }
        });
        wait_for_a_room_waiter(&queue);
        assert!(!producer.is_finished());
        assert_eq!(take_all(&queue), [Event(1, 10)]);
        assert!(producer.join().unwrap().is_empty());
        assert_eq!(take_all(&queue), [Event(2, 10)]);
    }

    #[test]
    fn reserve_blocking_blocks_a_thread_until_the_worker_releases_bytes() {
        let queue = Arc::new(PluginQueue::new(10, 100, OnFull::Wait));
        push(&queue, 1, 90);
        take_all(&queue);
        let producer = std::thread::spawn({
            let queue = queue.clone();
            move || queue.reserve_blocking(20).map(|r| r.push(Event(2, 20)))
        });
        wait_for_a_room_waiter(&queue);
        assert!(!producer.is_finished());
        queue.release(90);
        assert_eq!(producer.join().unwrap(), Ok(Vec::new()));
        assert_eq!(queue.held_bytes(), 20);
    }

    #[test]
    fn close_fails_waiting_and_later_reservations_and_the_worker_takes_the_rest() {
        let queue = PluginQueue::new(1, 100, OnFull::Wait);
        let outstanding = queue.try_reserve(10).unwrap();
        let waker = Arc::new(Woken::default());
        let mut reserving = pin!(queue.reserve(10));
        assert!(waker.poll(reserving.as_mut()).is_pending());
        let worker = Arc::new(Woken::default());
        let mut ready = pin!(queue.ready());
        assert!(worker.poll(ready.as_mut()).is_pending());

        queue.close();
        assert!(queue.is_closed());
        assert!(waker.woken());
        assert!(matches!(
            waker.poll(reserving.as_mut()),
            Poll::Ready(Err(QueueError::Closed))
        ));
        assert_eq!(queue.try_reserve(10).err(), Some(QueueError::Closed));
        assert_eq!(queue.push_unbounded(Control(100)), Err(Control(100)));
        // The outstanding reservation may still push: the worker waits.
        assert!(worker.poll(ready.as_mut()).is_pending());
        assert!(outstanding.push(Event(1, 10)).is_empty());
        assert!(worker.woken());
        assert!(worker.poll(ready.as_mut()).is_ready());
        assert_eq!(take_all(&queue), [Event(1, 10)]);
        // Closed, empty, nothing reserved: ready returns at once, for good.
        assert!(worker.poll(pin!(queue.ready())).is_ready());
        assert_eq!(take_all(&queue), Vec::<Item>::new());
    }

    #[test]
    fn close_wakes_a_waiting_worker() {
        let queue = PluginQueue::<Item>::new(1, 100, OnFull::Reject);
        let worker = Arc::new(Woken::default());
        let mut ready = pin!(queue.ready());
        assert!(worker.poll(ready.as_mut()).is_pending());
        let mut control = pin!(queue.control_ready());
        assert!(worker.poll(control.as_mut()).is_pending());
        queue.close();
        assert!(worker.woken());
        assert!(worker.poll(ready.as_mut()).is_ready());
        // A closed queue gets no new version: a worker holding events back
        // waits for its cool-down to end instead of spinning here.
        assert!(worker.poll(control.as_mut()).is_pending());
    }

    #[test]
    fn a_reservation_dropped_after_close_lets_the_worker_finish() {
        let queue = PluginQueue::<Item>::new(1, 100, OnFull::Reject);
        let outstanding = queue.try_reserve(10).unwrap();
        queue.close();
        let worker = Arc::new(Woken::default());
        let mut ready = pin!(queue.ready());
        assert!(worker.poll(ready.as_mut()).is_pending());
        drop(outstanding);
        assert!(worker.woken());
        assert!(worker.poll(ready.as_mut()).is_ready());
    }

    #[test]
    fn ready_waits_for_an_item() {
        let queue = PluginQueue::new(1, 100, OnFull::Reject);
        let worker = Arc::new(Woken::default());
        let mut ready = pin!(queue.ready());
        assert!(worker.poll(ready.as_mut()).is_pending());
        push(&queue, 1, 10);
        assert!(worker.woken());
        assert!(worker.poll(ready.as_mut()).is_ready());
        let mut ready = pin!(queue.ready());
        assert!(worker.poll(ready.as_mut()).is_ready());
    }

    #[test]
    fn take_keeps_the_order_of_events_and_control_items() {
        let queue = PluginQueue::new(4, 100, OnFull::Reject);
        push(&queue, 1, 10);
        queue.push_unbounded(Control(100)).unwrap();
        push(&queue, 2, 10);
        push(&queue, 3, 10);
        queue.push_unbounded(Control(101)).unwrap();
        push(&queue, 4, 10);
        assert_eq!(queue.len(), 4);
        let mut out = Vec::new();
        assert_eq!(queue.take(&mut out, 3), 3);
        assert_eq!(out, [Event(1, 10), Control(100), Event(2, 10)]);
        assert!(queue.has_control());
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.take(&mut out, 10), 3);
        assert_eq!(out[3..], [Event(3, 10), Control(101), Event(4, 10)]);
        assert!(!queue.has_control());
        assert_eq!(queue.take(&mut out, 10), 0);
    }

    #[test]
    fn control_items_count_against_no_capacity() {
        let queue = PluginQueue::new(1, 10, OnFull::Reject);
        for id in 0..100 {
            queue.push_unbounded(Control(id)).unwrap();
        }
        assert_eq!((queue.len(), queue.held_bytes()), (0, 0));
        push(&queue, 1, 10);
        assert_eq!(queue.try_reserve(0).err(), Some(FULL_BY_EVENTS));
        assert_eq!(take_all(&queue).len(), 101);
    }

    #[test]
    fn an_event_pushed_unbounded_counts_once_queued() {
        let queue = PluginQueue::new(1, 100, OnFull::Reject);
        queue.push_unbounded(Event(1, 80)).unwrap();
        queue.push_unbounded(Event(2, 80)).unwrap();
        assert_eq!((queue.len(), queue.held_bytes()), (2, 160));
        assert_eq!(queue.try_reserve(0).err(), Some(FULL_BY_EVENTS));
        take_all(&queue);
        assert_eq!(queue.try_reserve(1).err(), Some(FULL_BY_BYTES));
        queue.release(160);
        push(&queue, 3, 100);
    }

    #[test]
    fn control_ready_waits_for_a_control_item_not_for_events() {
        let queue = PluginQueue::new(10, 100, OnFull::Reject);
        push(&queue, 1, 10);
        let worker = Arc::new(Woken::default());
        let mut control = pin!(queue.control_ready());
        assert!(worker.poll(control.as_mut()).is_pending());
        push(&queue, 2, 10);
        assert!(!worker.woken());
        queue.push_unbounded(Control(100)).unwrap();
        assert!(worker.woken());
        assert!(worker.poll(control.as_mut()).is_ready());
    }

    const PRODUCERS: u64 = 4;
    const PER_PRODUCER: u64 = 10_000;

    /// Event `seq` of `producer`: its id says both, its size varies.
    fn nth_event(producer: u64, seq: u64) -> Item {
        Event(producer << 32 | seq, 1 + (seq % 7) as usize)
    }

    fn item_id(item: &Item) -> u64 {
        match item {
            Event(id, _) => *id,
            Control(_) => panic!("no control items were pushed"),
        }
    }

    #[tokio::test]
    async fn many_producer_threads_and_one_worker_lose_nothing_and_keep_each_producers_order() {
        // Small enough that both bounds keep producers waiting.
        let queue = Arc::new(PluginQueue::new(32, 100, OnFull::Wait));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|producer| {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    for seq in 0..PER_PRODUCER {
                        let event = nth_event(producer, seq);
                        let reserved = queue.reserve_blocking(event.bytes()).unwrap();
                        assert!(reserved.push(event).is_empty());
                    }
                })
            })
            .collect();
        let closer = tokio::task::spawn_blocking({
            let queue = queue.clone();
            move || {
                for producer in producers {
                    producer.join().unwrap();
                }
                queue.close();
            }
        });
        let mut next = vec![0; PRODUCERS as usize];
        let mut batch = Vec::new();
        loop {
            queue.ready().await;
            if queue.take(&mut batch, 16) == 0 {
                break;
            }
            let mut bytes = 0;
            for item in batch.drain(..) {
                let producer = (item_id(&item) >> 32) as usize;
                assert_eq!(item, nth_event(producer as u64, next[producer]));
                next[producer] += 1;
                bytes += item.bytes();
            }
            queue.release(bytes);
        }
        closer.await.unwrap();
        assert_eq!(next, [PER_PRODUCER; PRODUCERS as usize]);
        assert_eq!(queue.held_bytes(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_producer_tasks_and_one_worker_lose_nothing_and_keep_each_producers_order() {
        let queue = Arc::new(PluginQueue::new(32, 100, OnFull::Wait));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|producer| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    for seq in 0..PER_PRODUCER {
                        let event = nth_event(producer, seq);
                        let reserved = queue.reserve(event.bytes()).await.unwrap();
                        assert!(reserved.push(event).is_empty());
                    }
                })
            })
            .collect();
        let worker = tokio::spawn({
            let queue = queue.clone();
            async move {
                let mut next = vec![0; PRODUCERS as usize];
                let mut batch = Vec::new();
                loop {
                    queue.ready().await;
                    if queue.take(&mut batch, 16) == 0 {
                        return next;
                    }
                    let mut bytes = 0;
                    for item in batch.drain(..) {
                        let producer = (item_id(&item) >> 32) as usize;
                        assert_eq!(item, nth_event(producer as u64, next[producer]));
                        next[producer] += 1;
                        bytes += item.bytes();
                    }
                    queue.release(bytes);
                }
            }
        });
        for producer in producers {
            producer.await.unwrap();
        }
        queue.close();
        assert_eq!(worker.await.unwrap(), [PER_PRODUCER; PRODUCERS as usize]);
        assert_eq!(queue.held_bytes(), 0);
    }

    /// `cargo test --release -p hookhost --lib queue::tests::timing -- --ignored --nocapture`
    #[test]
    #[ignore = "a timing, not a test"]
    fn timing() {
        const EVENTS: usize = 1_000_000;
        const BATCH: usize = 256;
        let queue = PluginQueue::new(4096, 1 << 30, OnFull::Reject);
        let mut batch = Vec::with_capacity(BATCH);
        let started = Instant::now();
        for id in 0..EVENTS {
            let reserved = queue.try_reserve(100).unwrap();
            let _ = reserved.push(Event(id as u64, 100));
            if id % BATCH == BATCH - 1 {
                queue.take(&mut batch, BATCH);
                queue.release(batch.drain(..).map(|item| item.bytes()).sum());
            }
        }
        let one_thread = started.elapsed();

        let queue = Arc::new(PluginQueue::new(4096, 1 << 30, OnFull::Wait));
        let started = Instant::now();
        let producer = std::thread::spawn({
            let queue = queue.clone();
            move || {
                for id in 0..EVENTS {
                    let reserved = queue.reserve_blocking(100).unwrap();
                    let _ = reserved.push(Event(id as u64, 100));
                }
                queue.close();
            }
        });
        let mut taken = 0;
        loop {
            block_on(queue.ready());
            if queue.take(&mut batch, BATCH) == 0 {
                break;
            }
            taken += batch.len();
            queue.release(batch.drain(..).map(|item| item.bytes()).sum());
        }
        producer.join().unwrap();
        assert_eq!(taken, EVENTS);
        let two_threads = started.elapsed();
        println!(
            "reserve + push + take (batches of {BATCH}) + release, {EVENTS} events: \
             one thread {:.0} ns/event, producer and consumer threads {:.0} ns/event",
            one_thread.as_nanos() as f64 / EVENTS as f64,
            two_threads.as_nanos() as f64 / EVENTS as f64,
        );
    }
}
