//! Segment files: their names, creating and listing them, and reading all
//! of them back when the log is opened.
//!
//! Segments are `<wal dir>/<16-digit number>.log`, read in the order of
//! their numbers. A record that is short, fails its CRC or does not decode
//! ends the segment it is in: in the last segment that is not empty it is a
//! write that a crash interrupted (cut off), in an earlier one the rest of
//! that segment is skipped with a warning, and reading goes on with the
//! next.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::record::{self, Record};
use super::{Recovered, WalError};

/// Opens a new segment file for appending; a crate-private hook so that
/// tests can make writes fail for real.
pub(crate) type SegmentOpener = Box<dyn Fn(&Path) -> io::Result<File> + Send>;

/// Creates the segment at `path`, which must not exist, for appending.
pub(crate) fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create_new(true).open(path)
}

/// The file of segment `id` in `wal_dir`.
pub(crate) fn path(wal_dir: &Path, id: u64) -> PathBuf {
    wal_dir.join(format!("{id:016}.log"))
}

/// Makes the creation and removal of files in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What reading every segment found.
pub(crate) struct Scan {
    /// Events some plugin has not completed, by seq.
    pub(crate) events: Vec<Recovered>,
    /// One past the highest seq any record names.
    pub(crate) next_seq: u64,
    /// One past the highest segment number.
    pub(crate) next_segment: u64,
    /// Every segment file read, oldest first.
    pub(crate) files: Vec<PathBuf>,
}

/// Reads every segment in `wal_dir` in order and replays its records.
pub(crate) fn scan(wal_dir: &Path) -> Result<Scan, WalError> {
    let segments = list(wal_dir)?;
    let mut events: HashMap<u64, Recovered> = HashMap::new();
    let mut next_seq = 1;
    // A crash right after a new segment was made leaves it empty: the torn
    // write is then at the end of the one before.
    let tail = (segments.iter())
        .rposition(|(_, path)| std::fs::metadata(path).is_ok_and(|meta| meta.len() > 0));
    for (index, (_, path)) in segments.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(|source| WalError::Io {
            action: "read",
            path: path.clone(),
            source,
        })?;
        let replayed = record::read_all(&bytes, |record| {
            next_seq = next_seq.max(seq_after(&record));
            replay(&mut events, record);
        });
        let Err(corrupt) = replayed else { continue };
        let skipped = bytes.len() - corrupt.offset;
        if Some(index) == tail {
            tracing::warn!(
                "the write-ahead log {} ends with an incomplete record at byte {}: \
                 cutting off its last {skipped} bytes (a write that a crash interrupted, \
                 never acknowledged)",
                path.display(),
                corrupt.offset
            );
            cut(path, corrupt.offset as u64)?;
        } else {
            tracing::warn!(
                "the write-ahead log {} has a corrupt record at byte {}: skipping its last \
                 {skipped} bytes; events recorded there may be lost or delivered again",
                path.display(),
                corrupt.offset
            );
        }
    }
    let mut events: Vec<Recovered> = events.into_values().collect();
    events.sort_unstable_by_key(|event| event.seq);
    Ok(Scan {
        events,
        next_seq,
        next_segment: segments.last().map_or(1, |(id, _)| id + 1),
        files: segments.into_iter().map(|(_, path)| path).collect(),
    })
}

/// The segments in `wal_dir`, by number.
fn list(wal_dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let io_error = |source| WalError::Io {
        action: "list",
        path: wal_dir.to_owned(),
        source,
    };
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(wal_dir).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        let name = entry.file_name();
        let Some(number) = name.to_str().and_then(|name| name.strip_suffix(".log")) else {
            continue;
        };
        if number.len() == 16 && number.bytes().all(|byte| byte.is_ascii_digit()) {
            segments.push((number.parse().expect("16 digits fit a u64"), entry.path()));
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

fn seq_after(record: &Record<'_>) -> u64 {
    let highest = match record {
        Record::Accept { seq, .. } | Record::Attempt { seq, .. } => *seq,
        Record::Done { seqs, .. } => seqs.last().copied().unwrap_or(0),
    };
    highest.saturating_add(1)
}

fn replay(events: &mut HashMap<u64, Recovered>, record: Record<'_>) {
    match record {
        Record::Accept { seq, plugins, json } => {
            let pending = plugins
                .into_iter()
                .map(|(plugin, attempts)| (plugin.to_owned(), attempts))
                .collect();
            events.insert(
                seq,
                Recovered {
                    seq,
                    event_json: json.to_owned(),
                    pending,
                },
            );
        }
        Record::Done { plugin, seqs } => {
            for seq in seqs {
                let Some(event) = events.get_mut(&seq) else {
                    continue;
                };
                event.pending.retain(|(name, _)| name != plugin);
                if event.pending.is_empty() {
                    events.remove(&seq);
                }
            }
        }
        Record::Attempt {
            seq,
            plugin,
            attempts,
        } => {
            let pending = events.get_mut(&seq).map(|event| &mut event.pending);
            if let Some((_, made)) = pending
                .into_iter()
                .flatten()
                .find(|(name, _)| name == plugin)
            {
                *made = attempts;
            }
        }
    }
}

fn cut(path: &Path, len: u64) -> Result<(), WalError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_len(len))
        .map_err(|source| WalError::Io {
            action: "cut the incomplete record off",
            path: path.to_owned(),
            source,
        })
}
