//! The write-ahead log: every accepted event is on disk before it is
//! acknowledged, with the plugins that must still complete it, so that a
//! host that crashes delivers it after the restart.
//!
//! The log lives in `<data dir>/wal/`: numbered segment files and a `lock`
//! that one host holds for as long as the log is open. One writer thread
//! owns the files. Callers send it requests; it takes every request that is
//! waiting, writes them with one write and one `fdatasync` (group commit),
//! and only then answers the appends among them. Completions and attempt
//! counts are written in order with the next group and never wait.
//!
//! The log holds what is in flight only: segments rotate at a size; a
//! closed segment whose events every plugin has completed is deleted, one
//! with few events still live has them copied forward and is deleted.

mod record;
mod segment;
mod writer;

use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use self::segment::SegmentOpener;
use self::writer::{Reply, Request, Writer};

/// Size at which the writer starts a new segment.
const SEGMENT_MAX_BYTES: u64 = 64 << 20;

/// The write-ahead log of one data directory. Cloning it is cheap; the
/// writer thread ends, after writing and syncing what is queued, when the
/// last clone is dropped.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

/// An event that some plugin had not completed when the log was last
/// closed or the host crashed.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    /// Its sequence number; new events get higher ones.
    pub seq: u64,
    /// The event as JSON text, as appended.
    pub event_json: String,
    /// The plugins that must still complete it, each with the attempts it
    /// has made (0: not tried yet).
    pub pending: Vec<(String, u32)>,
}

/// What the log holds and has done since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Events that some plugin has not completed.
    pub live_events: u64,
    /// (event, plugin) pairs not completed.
    pub live_deliveries: u64,
    /// Segment files.
    pub segments: u64,
    /// Bytes in all segment files.
    pub bytes: u64,
    /// Groups written and synced with one `fdatasync` each.
    pub groups_synced: u64,
    /// Events appended (acknowledged) since the log was opened.
    pub events_appended: u64,
}

/// Why the log could not be opened or could not take an event.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// Another process has the log open.
    #[error(
        "the write-ahead log in {} is in use: another hookhost uses this data directory; \
         stop it or give this host another data directory",
        dir.display()
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// Opening or recovering the log failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, as a verb phrase.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing or syncing a group failed: none of its events was accepted.
    #[error(
        "cannot write the write-ahead log {}: {source}; the event was not accepted",
        path.display()
    )]
    Write {
        /// The segment file.
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    /// The writer thread is gone.
    #[error(
        "the write-ahead log in {} has stopped; the event was not accepted",
        dir.display()
    )]
    Stopped {
        /// The data directory.
        dir: PathBuf,
    },
}

impl Wal {
    /// Creates `<dir>/wal/` if needed and locks it (another process holding
    /// it: [`WalError::Locked`]), reads every segment (a record cut short
    /// or failing its CRC at the end of the last one is cut off), writes
    /// what is still in flight into a fresh segment and deletes the old
    /// ones. Returns the events still in flight, by seq. Blocking.
    pub fn open(dir: &Path) -> Result<(Wal, Vec<Recovered>), WalError> {
        Wal::open_with(
            dir,
            Options {
                segment_max_bytes: SEGMENT_MAX_BYTES,
                open_segment: Box::new(segment::create),
            },
        )
    }

    /// [`Wal::open`] with a segment size and a way to open new segments of
    /// its own.
    pub(crate) fn open_with(
        dir: &Path,
        options: Options,
    ) -> Result<(Wal, Vec<Recovered>), WalError> {
        let wal_dir = dir.join("wal");
        std::fs::create_dir_all(&wal_dir).map_err(|source| WalError::Io {
            action: "create the folder",
            path: wal_dir.clone(),
            source,
        })?;
        let lock = lock(dir, &wal_dir.join("lock"))?;
        let scan = segment::scan(&wal_dir)?;
        let counters = Arc::new(Counters::default());
        let writer = Writer::start(wal_dir, lock, options, &scan, counters.clone())?;
        let (requests, received) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("hookhost-wal".into())
            .spawn(move || writer.run(received))
            .map_err(|source| WalError::Io {
                action: "start the writer thread for",
                path: dir.to_owned(),
                source,
            })?;
        let inner = Inner {
            requests: Some(requests),
            thread: Some(thread),
            counters,
            dir: dir.to_owned(),
        };
        Ok((
            Wal {
                inner: Arc::new(inner),
            },
            scan.events,
        ))
    }

    /// Appends events (JSON text, the plugins that must complete each) and
    /// resolves once they are synced, with their seqs in order. Many
    /// concurrent callers share one sync. Dropping the future does not
    /// withdraw the events.
    pub async fn append(&self, events: Vec<(String, Vec<Arc<str>>)>) -> Result<Vec<u64>, WalError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(Request::append(events, Reply::Async(reply)))?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// [`Wal::append`] for callers outside an async runtime: blocks until
    /// the events are synced.
    pub fn append_blocking(
        &self,
        events: Vec<(String, Vec<Arc<str>>)>,
    ) -> Result<Vec<u64>, WalError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Request::append(events, Reply::Blocking(reply)))?;
        answer.recv().map_err(|_| self.stopped())?
    }

    /// Records that `plugin` completed these events (handled, or
    /// dead-lettered). Written after every earlier request, synced with
    /// the next group; never waits.
    pub fn completed(&self, plugin: &Arc<str>, seqs: Vec<u64>) {
        if !seqs.is_empty() {
            self.send_or_warn(Request::Completed {
                plugin: plugin.clone(),
                seqs,
            });
        }
    }

    /// Records that `plugin` has made `attempts` attempts at event `seq`,
    /// so that its retries resume from there after a restart. Never waits.
    pub fn attempted(&self, plugin: &Arc<str>, seq: u64, attempts: u32) {
        self.send_or_warn(Request::Attempted {
            plugin: plugin.clone(),
            seq,
            attempts,
        });
    }

    /// Writes and syncs everything queued before it.
    pub fn flush(&self) -> Result<(), WalError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Request::Flush { reply })?;
        answer.recv().map_err(|_| self.stopped())?
    }

    /// What the log holds now and has done since it was opened.
    pub fn stats(&self) -> WalStats {
        self.inner.counters.snapshot()
    }

    fn send(&self, request: Request) -> Result<(), WalError> {
        let requests = self.inner.requests.as_ref().expect("set until dropped");
        requests.send(request).map_err(|_| self.stopped())
    }

    fn send_or_warn(&self, request: Request) {
        if let Err(error) = self.send(request) {
            tracing::warn!("{error}");
        }
    }

    fn stopped(&self) -> WalError {
        WalError::Stopped {
            dir: self.inner.dir.clone(),
        }
    }
}

/// How [`Wal::open_with`] makes segments.
pub(crate) struct Options {
    /// Size at which a new segment is started.
    pub(crate) segment_max_bytes: u64,
    /// Creates a new segment file for appending.
    pub(crate) open_segment: SegmentOpener,
}

struct Inner {
    /// Taken on drop, so that the writer sees the channel close.
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    dir: PathBuf,
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!(
                    "the write-ahead log writer in {} panicked",
                    self.dir.display()
                );
            }
        }
    }
}

/// The writer's figures, published after every group.
#[derive(Default)]
pub(crate) struct Counters {
    live_events: AtomicU64,
    live_deliveries: AtomicU64,
    segments: AtomicU64,
    bytes: AtomicU64,
    groups_synced: AtomicU64,
    events_appended: AtomicU64,
}

impl Counters {
    pub(crate) fn publish(&self, stats: WalStats) {
        let store = |counter: &AtomicU64, value| counter.store(value, Ordering::Relaxed);
        store(&self.live_events, stats.live_events);
        store(&self.live_deliveries, stats.live_deliveries);
        store(&self.segments, stats.segments);
        store(&self.bytes, stats.bytes);
        store(&self.groups_synced, stats.groups_synced);
        store(&self.events_appended, stats.events_appended);
    }

    fn snapshot(&self) -> WalStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WalStats {
            live_events: load(&self.live_events),
            live_deliveries: load(&self.live_deliveries),
            segments: load(&self.segments),
            bytes: load(&self.bytes),
            groups_synced: load(&self.groups_synced),
            events_appended: load(&self.events_appended),
        }
    }
}

/// Takes the exclusive lock on `path`, held as long as the returned file
/// is open.
fn lock(dir: &Path, path: &Path) -> Result<File, WalError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| WalError::Io {
            action: "open",
            path: path.to_owned(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(WalError::Locked {
            dir: dir.to_owned(),
        }),
        Err(TryLockError::Error(source)) => Err(WalError::Io {
            action: "lock",
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::atomic::AtomicBool;

    use super::*;

    fn plugins(names: &[&str]) -> Vec<Arc<str>> {
        names.iter().map(|name| Arc::from(*name)).collect()
    }

    fn event(n: u64) -> String {
        format!(
            r#"{{"event_type":"RowsLoaded","metadata":{{"n":{n},"pad":"{}"}}}}"#,
            "x".repeat(250)
        )
    }

    fn events(range: std::ops::Range<u64>, names: &[&str]) -> Vec<(String, Vec<Arc<str>>)> {
        range.map(|n| (event(n), plugins(names))).collect()
    }

    fn options(segment_max_bytes: u64) -> Options {
        Options {
            segment_max_bytes,
            open_segment: Box::new(segment::create),
        }
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
            .collect();
        files.sort();
        files
    }

    fn pending(recovered: &[Recovered]) -> Vec<(u64, String, u32)> {
        let mut pairs: Vec<_> = recovered
            .iter()
            .flat_map(|event| {
                (event.pending.iter())
                    .map(|(plugin, attempts)| (event.seq, plugin.clone(), *attempts))
            })
            .collect();
        pairs.sort();
        pairs
    }

    #[test]
    fn reopening_returns_exactly_the_incomplete_deliveries_with_their_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, recovered) = Wal::open(dir.path()).unwrap();
        assert!(recovered.is_empty());
        let seqs = wal.append_blocking(events(0..10, &["a", "b"])).unwrap();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
        let (a, b) = (Arc::from("a"), Arc::from("b"));
        wal.completed(&a, vec![5, 1, 2, 3, 4]);
        wal.completed(&b, vec![2, 1]);
        wal.attempted(&b, 7, 3);
        wal.attempted(&a, 8, 2);
        wal.completed(&a, vec![8]);
        drop(wal);

        let (wal, recovered) = Wal::open(dir.path()).unwrap();
        let mut expected = Vec::new();
        for seq in 3..=10 {
            let attempts = if seq == 7 { 3 } else { 0 };
            expected.push((seq, "b".to_owned(), attempts));
            if seq > 5 && seq != 8 {
                expected.push((seq, "a".to_owned(), 0));
            }
        }
        expected.sort();
        assert_eq!(pending(&recovered), expected);
        assert_eq!(
            recovered.iter().map(|event| event.seq).collect::<Vec<_>>(),
            (3..=10).collect::<Vec<_>>()
        );
        assert_eq!(recovered[0].event_json, event(2));
        assert_eq!(wal.stats().live_events, 8);
        assert_eq!(wal.stats().segments, 1);
        assert_eq!(wal.append_blocking(events(0..1, &["a"])).unwrap(), vec![11]);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_the_complete_records_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path()).unwrap();
        wal.append_blocking(events(0..5, &["a"])).unwrap();
        drop(wal);
        let last = segment_files(dir.path()).pop().unwrap();
        let len = std::fs::metadata(&last).unwrap().len();
        let file = File::options().append(true).open(&last).unwrap();
        file.set_len(len - 10).unwrap();
        (&file).write_all(&[0xab; 37]).unwrap();
        drop(file);
        // As if the host made a new segment just before the crash.
        let name = last.file_stem().unwrap().to_str().unwrap();
        let next: u64 = name.parse::<u64>().unwrap() + 1;
        File::create(segment::path(&dir.path().join("wal"), next)).unwrap();

        let scan = segment::scan(&dir.path().join("wal")).unwrap();
        assert_eq!(scan.events.len(), 4);
        assert_eq!(std::fs::metadata(&last).unwrap().len(), len / 5 * 4);
        let (wal, recovered) = Wal::open(dir.path()).unwrap();
        assert_eq!(
            recovered.iter().map(|event| event.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(wal.append_blocking(events(0..1, &["a"])).unwrap(), vec![5]);
        drop(wal);
        let (_, recovered) = Wal::open(dir.path()).unwrap();
        assert_eq!(recovered.len(), 5);
    }

    #[test]
    fn a_corrupt_earlier_segment_loses_only_its_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open_with(dir.path(), options(1)).unwrap();
        wal.append_blocking(events(0..4, &["a"])).unwrap();
        wal.append_blocking(events(4..8, &["a"])).unwrap();
        drop(wal);
        let files = segment_files(dir.path());
        let first = files
            .iter()
            .find(|path| std::fs::metadata(path).unwrap().len() > 0)
            .unwrap();
        let mut bytes = std::fs::read(first).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(first, bytes).unwrap();

        let (_, recovered) = Wal::open(dir.path()).unwrap();
        let seqs: Vec<u64> = recovered.iter().map(|event| event.seq).collect();
        assert_eq!(seqs, vec![1, 2, 5, 6, 7, 8]);
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path()).unwrap();
        let error = Wal::open(dir.path()).err().expect("locked");
        assert!(matches!(error, WalError::Locked { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(
            message.contains("another hookhost uses this data directory"),
            "{message}"
        );
        drop(wal);
        Wal::open(dir.path()).unwrap();
    }

    #[test]
    fn the_log_shrinks_to_what_is_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let segment_max = 64 << 10;
        let (wal, _) = Wal::open_with(dir.path(), options(segment_max)).unwrap();
        let names = plugins(&["a", "b", "c", "d", "e"]);
        let mut kept = Vec::new();
        for batch in 0..20 {
            let seqs = wal
                .append_blocking(events(
                    batch * 100..(batch + 1) * 100,
                    &["a", "b", "c", "d", "e"],
                ))
                .unwrap();
            for name in &names {
                let done = seqs
                    .iter()
                    .copied()
                    .filter(|seq| **name != *"e" || seq % 97 != 0);
                wal.completed(name, done.collect());
            }
            for seq in seqs.iter().copied().filter(|seq| seq % 97 == 0) {
                wal.attempted(&names[4], seq, 2);
                kept.push(seq);
            }
        }
        wal.flush().unwrap();
        let stats = wal.stats();
        assert!(
            stats.events_appended == 2000 && stats.live_events == kept.len() as u64,
            "{stats:?}"
        );
        assert!(stats.segments <= 2, "{stats:?}");
        assert!(stats.bytes < 2 * segment_max, "{stats:?}");
        assert_eq!(segment_files(dir.path()).len() as u64, stats.segments);
        drop(wal);

        let (_, recovered) = Wal::open(dir.path()).unwrap();
        let expected: Vec<_> = kept.iter().map(|&seq| (seq, "e".to_owned(), 2)).collect();
        assert_eq!(pending(&recovered), expected);
    }

    #[test]
    fn concurrent_appends_share_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path()).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    (0..200)
                        .map(|n| wal.append_blocking(events(n..n + 1, &["a"])).unwrap()[0])
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap())
            .collect();
        seqs.sort();
        assert_eq!(seqs, (1..=1600).collect::<Vec<_>>());
        let stats = wal.stats();
        assert_eq!(stats.events_appended, 1600);
        assert!(stats.groups_synced < 1600, "{stats:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_batches_get_their_seqs_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path()).unwrap();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let wal = wal.clone();
                tokio::spawn(async move {
                    let mut all = Vec::new();
                    for _ in 0..10 {
                        let seqs = wal
                            .append(events(0..256, &["a", "b", "c", "d", "e"]))
                            .await
                            .unwrap();
                        assert!(seqs.windows(2).all(|pair| pair[1] == pair[0] + 1));
                        all.extend(seqs);
                    }
                    all
                })
            })
            .collect();
        let mut seqs = Vec::new();
        for task in tasks {
            seqs.extend(task.await.unwrap());
        }
        seqs.sort();
        assert_eq!(seqs, (1..=10_240).collect::<Vec<_>>());
        assert_eq!(wal.stats().live_deliveries, 5 * 10_240);
    }

    #[test]
    fn a_failed_write_refuses_the_group_and_later_appends_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let full = Arc::new(AtomicBool::new(false));
        let opener_full = full.clone();
        let open_segment: SegmentOpener = Box::new(move |path: &Path| {
            if opener_full.load(Ordering::SeqCst) {
                File::options().append(true).open("/dev/full")
            } else {
                segment::create(path)
            }
        });
        let (wal, _) = Wal::open_with(
            dir.path(),
            Options {
                segment_max_bytes: 1,
                open_segment,
            },
        )
        .unwrap();
        let a = Arc::from("a");
        assert_eq!(wal.append_blocking(events(0..1, &["a"])).unwrap(), vec![1]);
        wal.completed(&a, vec![1]);
        full.store(true, Ordering::SeqCst);
        let error = wal.append_blocking(events(1..2, &["a"])).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, WalError::Write { .. }), "{error:?}");
        assert!(
            message.starts_with(&format!(
                "cannot write the write-ahead log {}",
                dir.path().join("wal").display()
            )),
            "{message}"
        );
        assert!(
            message.ends_with("No space left on device (os error 28); the event was not accepted"),
            "{message}"
        );
        assert!(wal.flush().is_err());
        full.store(false, Ordering::SeqCst);
        assert_eq!(wal.append_blocking(events(2..3, &["a"])).unwrap(), vec![2]);
        drop(wal);

        let (_, recovered) = Wal::open(dir.path()).unwrap();
        assert_eq!(recovered.len(), 1);
        assert_eq!((recovered[0].seq, &recovered[0].event_json), (2, &event(2)));
    }
}
