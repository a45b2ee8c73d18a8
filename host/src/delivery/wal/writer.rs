//! The writer thread: group commit, segment rotation and compaction.
//!
//! It blocks for one request, takes every other one already queued (up to
//! [`GROUP_MAX_BYTES`]), encodes them into one buffer, writes it with one
//! `write_all` and, if the group holds an append or a flush, one
//! `fdatasync`; then it updates what is live and answers the callers. A
//! failed write or sync answers the group's appends with the error, cuts
//! the segment back to where the group began (or, if that fails, starts a
//! new segment for the next group) and keeps the group's completions for
//! the next try.
//!
//! It knows, per segment, how many (event, plugin) deliveries were
//! accepted into it and how many are still live. After each group, a
//! closed segment with none live, or with fewer than a quarter live, is
//! retired: its live events are read back from the file, written again at
//! the end of the current segment (with the plugins still pending) and
//! synced, then the file is deleted. A segment also holds completions of
//! events that older segments hold; those older segments are copied
//! forward and deleted with it, so that no completion is forgotten while
//! its event is still on disk.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use rustc_hash::FxHashMap;

use super::record::{self, Record};
use super::segment::{self, Scan, SegmentOpener};
use super::{Counters, Options, WalError, WalStats};

/// Most bytes of requests taken into one group (one more request may go
/// over it).
const GROUP_MAX_BYTES: usize = 8 << 20;

/// What callers ask of the writer.
pub(crate) enum Request {
    Append {
        events: Vec<(String, Vec<Arc<str>>)>,
        reply: Reply,
        /// The seq of the first event, set when the group is encoded.
        first_seq: u64,
    },
    Completed {
        plugin: Arc<str>,
        seqs: Vec<u64>,
    },
    Attempted {
        plugin: Arc<str>,
        seq: u64,
        attempts: u32,
    },
    Flush {
        reply: mpsc::SyncSender<Result<(), WalError>>,
    },
}

impl Request {
    pub(crate) fn append(events: Vec<(String, Vec<Arc<str>>)>, reply: Reply) -> Request {
        Request::Append {
            events,
            reply,
            first_seq: 0,
        }
    }

    /// About how many bytes it encodes to.
    fn size(&self) -> usize {
        match self {
            Request::Append { events, .. } => events
                .iter()
                .map(|(json, plugins)| json.len() + 16 * plugins.len() + 16)
                .sum(),
            Request::Completed { seqs, .. } => 16 + 4 * seqs.len(),
            Request::Attempted { .. } | Request::Flush { .. } => 16,
        }
    }

    fn waits_for_sync(&self) -> bool {
        matches!(self, Request::Append { .. } | Request::Flush { .. })
    }
}

/// Where an append's caller waits.
pub(crate) enum Reply {
    Async(tokio::sync::oneshot::Sender<Result<Vec<u64>, WalError>>),
    Blocking(mpsc::SyncSender<Result<Vec<u64>, WalError>>),
}

/// An answer to a caller, sent once the group's effects are published in
/// the stats.
enum Answer {
    Append(Reply, Result<Vec<u64>, WalError>),
    Flush(mpsc::SyncSender<Result<(), WalError>>, Result<(), WalError>),
}

impl Answer {
    fn send(self) {
        // A caller that stopped waiting no longer needs the answer.
        match self {
            Answer::Append(Reply::Async(sender), result) => drop(sender.send(result)),
            Answer::Append(Reply::Blocking(sender), result) => drop(sender.send(result)),
            Answer::Flush(sender, result) => drop(sender.send(result)),
        }
    }
}

/// An event some plugin has not completed.
struct LiveEvent {
    /// The segment holding its latest accept record.
    segment: u64,
    /// The plugins that have not completed it.
    plugins: Vec<Arc<str>>,
    /// Attempts made, parallel to `plugins`; empty while all are 0.
    attempts: Vec<u32>,
}

impl LiveEvent {
    fn pending(&self) -> impl ExactSizeIterator<Item = (&str, u32)> + '_ {
        let attempts = |index| self.attempts.get(index).copied().unwrap_or(0);
        (self.plugins.iter().enumerate()).map(move |(index, plugin)| (&**plugin, attempts(index)))
    }
}

struct SegmentInfo {
    path: PathBuf,
    bytes: u64,
    /// Deliveries accepted into it, copied-forward ones included.
    accepted: u64,
    /// Deliveries whose event's latest accept record is in it and that
    /// are not completed.
    live: u64,
    /// The lowest segment holding an event that a completion or attempt
    /// record in this one refers to.
    oldest_ref: u64,
}

struct Current {
    id: u64,
    file: File,
}

/// A failed write: the segment file and the error.
type WriteFailure = (PathBuf, io::Error);

pub(crate) struct Writer {
    wal_dir: PathBuf,
    /// Held for the writer's life: the log's exclusive lock.
    _lock: File,
    open_segment: SegmentOpener,
    segment_max_bytes: u64,
    /// None after a segment could not be cut back or opened.
    current: Option<Current>,
    next_segment: u64,
    segments: BTreeMap<u64, SegmentInfo>,
    /// Keyed by seq with FxHash: seqs are the writer's own numbers, not
    /// input an attacker chooses, and SipHash cost more than the rest of
    /// recording an event.
    live: FxHashMap<u64, LiveEvent>,
    live_deliveries: u64,
    next_seq: u64,
    /// Completions and attempts whose write failed, for the next group.
    carry: Vec<Request>,
    /// Written since the last sync.
    dirty: bool,
    /// The group's answers, sent after its effects are published.
    answers: Vec<Answer>,
    buf: Vec<u8>,
    groups_synced: u64,
    events_appended: u64,
    counters: Arc<Counters>,
}

impl Writer {
    /// Writes the events of `scan` into a fresh segment, syncs it, deletes
    /// the segments they were read from, and returns a writer that goes on
    /// in the fresh segment.
    pub(crate) fn start(
        wal_dir: PathBuf,
        lock: File,
        options: Options,
        scan: &Scan,
        counters: Arc<Counters>,
    ) -> Result<Writer, WalError> {
        let id = scan.next_segment;
        let path = segment::path(&wal_dir, id);
        let io_error = |action, path: &Path| {
            let path = path.to_owned();
            move |source| WalError::Io {
                action,
                path,
                source,
            }
        };
        let mut file = (options.open_segment)(&path).map_err(io_error("create", &path))?;
        let mut names: HashMap<&str, Arc<str>> = HashMap::new();
        let mut live = FxHashMap::with_capacity_and_hasher(scan.events.len(), Default::default());
        let mut buf = Vec::new();
        for event in &scan.events {
            let plugins = (event.pending.iter())
                .map(|(name, _)| {
                    names
                        .entry(name.as_str())
                        .or_insert_with(|| name.as_str().into())
                        .clone()
                })
                .collect();
            let mut attempts: Vec<u32> = event.pending.iter().map(|(_, made)| *made).collect();
            if attempts.iter().all(|&made| made == 0) {
                attempts = Vec::new();
            }
            let event_live = LiveEvent {
                segment: id,
                plugins,
                attempts,
            };
            record::encode_accept(&mut buf, event.seq, event_live.pending(), &event.event_json);
            live.insert(event.seq, event_live);
        }
        file.write_all(&buf)
            .and_then(|()| file.sync_data())
            .map_err(io_error("write", &path))?;
        segment::sync_dir(&wal_dir).map_err(io_error("sync the folder", &wal_dir))?;
        for old in &scan.files {
            std::fs::remove_file(old).map_err(io_error("remove", old))?;
        }
        segment::sync_dir(&wal_dir).map_err(io_error("sync the folder", &wal_dir))?;
        let deliveries = live.values().map(|event| event.plugins.len() as u64).sum();
        let info = SegmentInfo {
            path,
            bytes: buf.len() as u64,
            accepted: deliveries,
            live: deliveries,
            oldest_ref: id,
        };
        let writer = Writer {
            wal_dir,
            _lock: lock,
            open_segment: options.open_segment,
            segment_max_bytes: options.segment_max_bytes,
            current: Some(Current { id, file }),
            next_segment: id + 1,
            segments: BTreeMap::from([(id, info)]),
            live,
            live_deliveries: deliveries,
            next_seq: scan.next_seq,
            carry: Vec::new(),
            dirty: false,
            answers: Vec::new(),
            buf,
            groups_synced: 0,
            events_appended: 0,
            counters,
        };
        writer.publish();
        Ok(writer)
    }

    /// Serves requests until every sender is gone, then writes and syncs
    /// what is left.
    pub(crate) fn run(mut self, requests: mpsc::Receiver<Request>) {
        let mut group = Vec::new();
        while let Ok(first) = requests.recv() {
            let mut size = first.size();
            group.push(first);
            while size < GROUP_MAX_BYTES {
                let Ok(next) = requests.try_recv() else { break };
                size += next.size();
                group.push(next);
            }
            self.commit(&mut group, false);
        }
        if self.dirty || !self.carry.is_empty() {
            self.commit(&mut group, true);
        }
    }

    fn commit(&mut self, group: &mut Vec<Request>, sync: bool) {
        let mut requests = std::mem::take(&mut self.carry);
        requests.append(group);
        let sync = sync || requests.iter().any(Request::waits_for_sync);
        match self.write_group(&mut requests, sync) {
            Ok(segment) => {
                self.apply(requests.drain(..), segment);
                self.retire_segments();
            }
            Err((path, error)) => self.fail(requests.drain(..), path, error),
        }
        // Hand the (now empty) allocation back for the next group.
        *group = requests;
        group.clear();
        self.publish();
        for answer in self.answers.drain(..) {
            answer.send();
        }
    }

    /// Encodes and writes the group; returns the segment written to.
    fn write_group(&mut self, requests: &mut [Request], sync: bool) -> Result<u64, WriteFailure> {
        let seq_before = self.next_seq;
        self.buf.clear();
        for request in requests.iter_mut() {
            self.encode(request);
        }
        let result = self.write_buf(sync);
        if result.is_err() {
            self.next_seq = seq_before;
        }
        result
    }

    fn encode(&mut self, request: &mut Request) {
        let buf = &mut self.buf;
        match request {
            Request::Append {
                events, first_seq, ..
            } => {
                *first_seq = self.next_seq;
                for (json, plugins) in events.iter() {
                    if !plugins.is_empty() {
                        let pending = plugins.iter().map(|plugin| (&**plugin, 0));
                        record::encode_accept(buf, self.next_seq, pending, json);
                    }
                    self.next_seq += 1;
                }
            }
            Request::Completed { plugin, seqs } => {
                seqs.sort_unstable();
                record::encode_done(buf, plugin, seqs);
            }
            Request::Attempted {
                plugin,
                seq,
                attempts,
            } => record::encode_attempt(buf, plugin, *seq, *attempts),
            Request::Flush { .. } => {}
        }
    }

    /// Writes `self.buf` at the end of the current segment (starting a new
    /// one first if needed) and syncs if asked; on failure, cuts the
    /// segment back to where it was.
    fn write_buf(&mut self, sync: bool) -> Result<u64, WriteFailure> {
        let id = self.segment_for_write()?;
        let current = self.current.as_mut().expect("just opened");
        let info = self
            .segments
            .get_mut(&id)
            .expect("the current segment is known");
        let written = current.file.write_all(&self.buf).and_then(|()| {
            if sync {
                current.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(error) = written {
            if let Err(cut_error) = current.file.set_len(info.bytes) {
                tracing::warn!(
                    "cannot cut the write-ahead log {} back after a failed write ({cut_error}); \
                     starting a new segment",
                    info.path.display()
                );
                self.current = None;
            }
            return Err((info.path.clone(), error));
        }
        info.bytes += self.buf.len() as u64;
        if sync {
            self.groups_synced += 1;
            self.dirty = false;
        } else {
            self.dirty |= !self.buf.is_empty();
        }
        Ok(id)
    }

    /// The current segment's number, after starting a new segment if there
    /// is none or it is full.
    fn segment_for_write(&mut self) -> Result<u64, WriteFailure> {
        if let Some(current) = &self.current {
            if self.segments[&current.id].bytes < self.segment_max_bytes {
                return Ok(current.id);
            }
            self.close_current();
        }
        let id = self.next_segment;
        let path = segment::path(&self.wal_dir, id);
        let file = (self.open_segment)(&path).map_err(|error| (path.clone(), error))?;
        self.next_segment += 1;
        if let Err(error) = segment::sync_dir(&self.wal_dir) {
            drop(std::fs::remove_file(&path));
            return Err((self.wal_dir.clone(), error));
        }
        let info = SegmentInfo {
            path,
            bytes: 0,
            accepted: 0,
            live: 0,
            oldest_ref: id,
        };
        self.segments.insert(id, info);
        self.current = Some(Current { id, file });
        Ok(id)
    }

    fn close_current(&mut self) {
        let Some(current) = self.current.take() else {
            return;
        };
        if self.dirty {
            // Only completions are unsynced: losing them means delivering again.
            if let Err(error) = current.file.sync_data() {
                let path = &self.segments[&current.id].path;
                tracing::warn!(
                    "cannot sync the write-ahead log {}: {error}",
                    path.display()
                );
            }
            self.dirty = false;
        }
    }

    /// Updates what is live after the group was written to `segment`, and
    /// queues its callers' answers.
    fn apply(&mut self, requests: impl Iterator<Item = Request>, segment: u64) {
        for request in requests {
            match request {
                Request::Append {
                    events,
                    reply,
                    first_seq,
                } => {
                    let seqs = (first_seq..first_seq + events.len() as u64).collect();
                    for (seq, (_, plugins)) in (first_seq..).zip(events) {
                        self.accepted(segment, seq, plugins);
                    }
                    self.answers.push(Answer::Append(reply, Ok(seqs)));
                }
                Request::Completed { plugin, seqs } => {
                    for seq in seqs {
                        self.complete(segment, &plugin, seq);
                    }
                }
                Request::Attempted {
                    plugin,
                    seq,
                    attempts,
                } => self.attempt(segment, &plugin, seq, attempts),
                Request::Flush { reply } => self.answers.push(Answer::Flush(reply, Ok(()))),
            }
        }
    }

    fn accepted(&mut self, segment: u64, seq: u64, plugins: Vec<Arc<str>>) {
        self.events_appended += 1;
        if plugins.is_empty() {
            return;
        }
        let deliveries = plugins.len() as u64;
        let info = self.segments.get_mut(&segment).expect("written to");
        info.accepted += deliveries;
        info.live += deliveries;
        self.live_deliveries += deliveries;
        let attempts = Vec::new();
        let event = LiveEvent {
            segment,
            plugins,
            attempts,
        };
        self.live.insert(seq, event);
    }

    fn complete(&mut self, segment: u64, plugin: &str, seq: u64) {
        let Some(event) = self.live.get_mut(&seq) else {
            return;
        };
        let Some(index) = event.plugins.iter().position(|name| &**name == plugin) else {
            return;
        };
        event.plugins.swap_remove(index);
        if !event.attempts.is_empty() {
            event.attempts.swap_remove(index);
        }
        let home = event.segment;
        if event.plugins.is_empty() {
            self.live.remove(&seq);
        }
        self.live_deliveries -= 1;
        if let Some(info) = self.segments.get_mut(&home) {
            info.live -= 1;
        }
        self.refer(segment, home);
    }

    fn attempt(&mut self, segment: u64, plugin: &str, seq: u64, attempts: u32) {
        let Some(event) = self.live.get_mut(&seq) else {
            return;
        };
        let Some(index) = event.plugins.iter().position(|name| &**name == plugin) else {
            return;
        };
        event.attempts.resize(event.plugins.len(), 0);
        event.attempts[index] = attempts;
        let home = event.segment;
        self.refer(segment, home);
    }

    /// Notes that a record in `segment` refers to an event held by `home`.
    fn refer(&mut self, segment: u64, home: u64) {
        if let Some(info) = self.segments.get_mut(&segment) {
            info.oldest_ref = info.oldest_ref.min(home);
        }
    }

    /// Queues the error as the answer of the group's appends and flushes;
    /// keeps its completions and attempts for the next group.
    fn fail(&mut self, requests: impl Iterator<Item = Request>, path: PathBuf, error: io::Error) {
        tracing::error!(
            "cannot write the write-ahead log {}: {error}; refusing events until a write succeeds",
            path.display()
        );
        let source = Arc::new(error);
        let error = || WalError::Write {
            path: path.clone(),
            source: source.clone(),
        };
        for request in requests {
            match request {
                Request::Append { reply, .. } => {
                    self.answers.push(Answer::Append(reply, Err(error())))
                }
                Request::Flush { reply } => self.answers.push(Answer::Flush(reply, Err(error()))),
                kept => self.carry.push(kept),
            }
        }
    }

    /// Deletes closed segments with no or few live deliveries, after
    /// copying their live events (and those of older segments their
    /// completions refer to) to the current segment.
    fn retire_segments(&mut self) {
        let Some(current) = self.current.as_ref().map(|current| current.id) else {
            return;
        };
        let mut doomed = BTreeSet::new();
        for (&id, info) in self.segments.range(..current) {
            if info.live * 4 < info.accepted || info.live == 0 {
                doomed.insert(id);
                let mut lowest = info.oldest_ref;
                for (&older, older_info) in self.segments.range(..id).rev() {
                    if older < lowest {
                        break;
                    }
                    doomed.insert(older);
                    lowest = lowest.min(older_info.oldest_ref);
                }
            }
        }
        if doomed.is_empty() {
            return;
        }
        match self.copy_forward(&doomed) {
            Ok(()) => self.delete(doomed),
            Err(error) => tracing::warn!(
                "cannot compact the write-ahead log in {}: {error}; keeping its old segments",
                self.wal_dir.display()
            ),
        }
    }

    /// Writes the live events of the `doomed` segments again at the end of
    /// the current segment and syncs it.
    fn copy_forward(&mut self, doomed: &BTreeSet<u64>) -> Result<(), String> {
        self.buf.clear();
        let mut moved = Vec::new();
        for id in doomed {
            let info = &self.segments[id];
            if info.live == 0 {
                continue;
            }
            let bytes = std::fs::read(&info.path)
                .map_err(|error| format!("cannot read {}: {error}", info.path.display()))?;
            let (live, buf) = (&self.live, &mut self.buf);
            let read = record::read_all(&bytes, |record| {
                let Record::Accept { seq, json, .. } = record else {
                    return;
                };
                if let Some(event) = live.get(&seq).filter(|event| event.segment == *id) {
                    record::encode_accept(buf, seq, event.pending(), json);
                    moved.push(seq);
                }
            });
            if let Err(corrupt) = read {
                let path = info.path.display();
                return Err(format!("{path} is corrupt at byte {}", corrupt.offset));
            }
        }
        if moved.is_empty() && !self.dirty {
            return Ok(());
        }
        let current = self
            .write_buf(true)
            .map_err(|(path, error)| format!("cannot write {}: {error}", path.display()))?;
        for seq in moved {
            let event = self.live.get_mut(&seq).expect("moved events are live");
            let deliveries = event.plugins.len() as u64;
            let old = std::mem::replace(&mut event.segment, current);
            if let Some(info) = self.segments.get_mut(&old) {
                info.live -= deliveries;
            }
            let info = self
                .segments
                .get_mut(&current)
                .expect("the current segment");
            info.accepted += deliveries;
            info.live += deliveries;
        }
        Ok(())
    }

    fn delete(&mut self, doomed: BTreeSet<u64>) {
        for id in doomed {
            let info = self.segments.remove(&id).expect("doomed segments exist");
            match std::fs::remove_file(&info.path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => tracing::warn!(
                    "cannot delete the old write-ahead log segment {}: {error}",
                    info.path.display()
                ),
            }
        }
        if let Err(error) = segment::sync_dir(&self.wal_dir) {
            tracing::warn!("cannot sync the folder {}: {error}", self.wal_dir.display());
        }
    }

    fn publish(&self) {
        self.counters.publish(WalStats {
            live_events: self.live.len() as u64,
            live_deliveries: self.live_deliveries,
            segments: self.segments.len() as u64,
            bytes: self.segments.values().map(|info| info.bytes).sum(),
            groups_synced: self.groups_synced,
            events_appended: self.events_appended,
        });
    }
}
