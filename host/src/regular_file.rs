//! Reading files from folders that others may write to (the plugins folder,
//! the compiled-component cache): only regular files are read, they are
//! opened without blocking, and never more than a size limit is read, so a
//! FIFO, a device, a directory or a growing file in place of a `.wasm` file
//! cannot hang the host or make it read without end.

use std::fs::{File, FileType, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// It could not be looked at, opened or read.
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// It is not a regular file; the text says what it is.
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    /// It is larger than the limit. `size` is what `fstat` said, or what
    /// was read when the file grew while being read.
    #[error("{size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Its size in bytes (at least).
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
}

impl ReadError {
    /// Whether the file does not exist (any more).
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(err) if err.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Whether a symbolic link at the path itself is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Links {
    /// Followed once: the file it points to is what is checked and read.
    Follow,
    /// Refused: the path itself must be the regular file.
    Refuse,
}

/// Opens `path` for reading if it is a regular file, and returns it with
/// its metadata, taken from the opened handle.
///
/// The path is looked at before it is opened, so a device found there is
/// not opened (opening some has effects: a tape rewinds, a watchdog arms;
/// only one swapped in between the look and the open is), and the
/// handle is checked again after, so a swap between the two looks is caught
/// too: the check holds for what is read. The open itself cannot block: a
/// FIFO put in place between the two looks opens at once, without waiting
/// for a writer, and is then refused.
pub(crate) fn open(path: &Path, links: Links) -> Result<(File, Metadata), ReadError> {
    let seen = match links {
        Links::Follow => std::fs::metadata(path),
        Links::Refuse => std::fs::symlink_metadata(path),
    }
    .map_err(ReadError::Io)?;
    if !seen.is_file() {
        return Err(ReadError::NotRegular(describe(&seen.file_type())));
    }
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if links == Links::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(ReadError::Io)?;
    let opened = file.metadata().map_err(ReadError::Io)?;
    if !opened.is_file() {
        return Err(ReadError::NotRegular(describe(&opened.file_type())));
    }
    Ok((file, opened))
}

/// Reads an opened regular file whose `fstat` size is `size`, refusing it
/// before reading when it is larger than `limit`, and reading at most one
/// byte past the limit in case it grows meanwhile.
pub(crate) fn read_opened(file: File, size: u64, limit: u64) -> Result<Vec<u8>, ReadError> {
    if size > limit {
        return Err(ReadError::TooLarge { size, limit });
    }
    let capacity = usize::try_from(size).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    let read = bytes.len() as u64;
    if read > limit {
        return Err(ReadError::TooLarge { size: read, limit });
    }
    Ok(bytes)
}

/// [`open`] then [`read_opened`].
pub(crate) fn read(path: &Path, links: Links, limit: u64) -> Result<Vec<u8>, ReadError> {
    let (file, metadata) = open(path, links)?;
    read_opened(file, metadata.len(), limit)
}

/// What a file of type `file_type` is, for messages ("a FIFO").
pub(crate) fn describe(file_type: &FileType) -> &'static str {
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_fifo() {
        "a FIFO (named pipe)"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "of an unknown file type"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.wasm");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read(&file, Links::Follow, 5).unwrap(), b"12345");
        let err = read(&file, Links::Follow, 4).unwrap_err();
        assert_eq!(err.to_string(), "5 bytes, over the limit of 4 bytes");

        let link = dir.path().join("link.wasm");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read(&link, Links::Follow, 5).unwrap(), b"12345");
        let err = read(&link, Links::Refuse, 5).unwrap_err();
        assert_eq!(err.to_string(), "is a symbolic link, not a regular file");

        let err = read(dir.path(), Links::Follow, 5).unwrap_err();
        assert_eq!(err.to_string(), "is a directory, not a regular file");
        let err = read(Path::new("/dev/zero"), Links::Follow, 5).unwrap_err();
        assert_eq!(err.to_string(), "is a character device, not a regular file");
        assert!(read(&dir.path().join("gone"), Links::Follow, 5)
            .unwrap_err()
            .is_not_found());
    }
}
