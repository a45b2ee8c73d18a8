//! The compiled-component cache: native code for each component, on disk,
//! keyed by the component's content hash and the engine's settings, so a
//! restart with many plugins does not compile them again.
//!
//! Loading an entry runs its native code, so an entry is trusted only if
//! this host made it for this content: an entry `<content hash>-<engine
//! key>.cwasm` holds `HMAC-SHA256(key, content hash ‖ engine key ‖ code)`
//! followed by the code, where the key is 32 random bytes in `<cache
//! dir>/key`, created with mode 0600 on first use. Someone who can write the
//! cache folder but not read the key cannot plant code under a component's
//! name: the MAC is checked (in constant time) before the code is loaded,
//! and an entry that fails it (planted, truncated, corrupt, made for other
//! content) is deleted and rebuilt. A key file that is not a regular file
//! owned by the user running the host, or that others may read or write,
//! is not used, and neither is the cache (one warning says why).
//!
//! An entry from another wasmtime version or other engine settings has a
//! different name and is simply not found, and is deleted once it has not
//! been written for [`STALE_AFTER`].

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::printable;
use crate::regular_file::{self, Links, ReadError};

/// Bytes of the MAC at the start of every entry (HMAC-SHA256).
const MAC_LEN: usize = 32;

/// Bytes of the cache key: the output size of SHA-256, the most HMAC-SHA256
/// can use.
const KEY_LEN: usize = 32;

/// The key's file name inside the cache folder.
const KEY_FILE: &str = "key";

/// Part of the engine key, so that entries of an earlier layout (a bare
/// checksum instead of a MAC) are not even found, and age out like those of
/// another engine.
const ENTRY_FORMAT: &str = "hmac-sha256-v1";

/// Largest entry read. Compiled code is a few times the size of its
/// component, and components are at most `[engine] max_plugin_mib` (64 MiB
/// by default); a larger file is not one this host wrote, and reading it
/// whole would let anyone who can write the folder make the host allocate
/// without bound.
const MAX_ENTRY_BYTES: u64 = 1 << 30;

/// Age past which an entry made for other engine settings (another hookhost
/// or wasmtime version) is deleted when a host starts: long enough that two
/// versions sharing a cache during an upgrade keep their entries.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

type HmacSha256 = Hmac<Sha256>;

/// Counts of what the cache did since the host started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Components compiled (cache misses, or no cache).
    pub compiled: u64,
    /// Components loaded from the cache.
    pub loaded: u64,
    /// Entries found corrupt, planted or unloadable (their MAC did not
    /// match, or wasmtime refused them), deleted and rebuilt.
    pub rebuilt: u64,
}

/// Compiles components, through the on-disk cache when there is one.
pub struct Compiler {
    cache: Option<Cache>,
    engine_key: String,
    compiled: AtomicU64,
    loaded: AtomicU64,
    rebuilt: AtomicU64,
}

/// A cache folder and the key its entries are signed with.
struct Cache {
    dir: PathBuf,
    key: [u8; KEY_LEN],
}

/// The SHA-256 of `bytes`, in hex: a component's identity in the cache and
/// in reports of which version of a plugin is live.
pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

impl Compiler {
    /// A compiler for `engine` caching in `cache_dir` (`None`: no cache).
    /// Reads the cache key (creating it on first use) and deletes entries
    /// of other engine settings older than [`STALE_AFTER`]. Blocking: file
    /// work. When the key cannot be used, logs one warning saying why and
    /// compiles everything, caching nothing.
    pub fn new(engine: &Engine, cache_dir: Option<PathBuf>) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        ENTRY_FORMAT.hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        let cache = cache_dir.and_then(|dir| match cache_key(&dir) {
            Ok(key) => {
                prune(&dir, &engine_key);
                Some(Cache { dir, key })
            }
            Err(problem) => {
                tracing::warn!(
                    path = %printable::path(&dir),
                    "compiled-component cache not used: {problem}; every plugin is compiled \
                     at every start"
                );
                None
            }
        });
        Compiler {
            cache,
            engine_key,
            compiled: AtomicU64::new(0),
            loaded: AtomicU64::new(0),
            rebuilt: AtomicU64::new(0),
        }
    }

    /// What the cache did so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            loaded: self.loaded.load(Ordering::Relaxed),
            rebuilt: self.rebuilt.load(Ordering::Relaxed),
        }
    }

    /// The component for `bytes` (whose SHA-256 is `hash`): from the cache
    /// when an entry this host made for that hash exists, else compiled and
    /// then cached. A cache that cannot be read or written only costs the
    /// compile; it is logged, never an error. Blocking.
    pub fn component(
        &self,
        engine: &Engine,
        bytes: &[u8],
        hash: &str,
    ) -> wasmtime::Result<Component> {
        let Some(cache) = &self.cache else {
            return self.compile(engine, bytes);
        };
        let entry = cache.dir.join(format!("{hash}-{}.cwasm", self.engine_key));
        if let Some(component) = self.load(engine, cache, &entry, hash) {
            self.loaded.fetch_add(1, Ordering::Relaxed);
            return Ok(component);
        }
        let component = self.compile(engine, bytes)?;
        if let Err(err) = self.store(cache, &entry, hash, &component) {
            tracing::warn!(
                entry = %printable::path(&entry),
                "cannot write compiled-component cache: {err}"
            );
        }
        Ok(component)
    }

    fn compile(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
        self.compiled.fetch_add(1, Ordering::Relaxed);
        Component::from_binary(engine, bytes)
    }

    /// The MAC of an entry for content `hash` holding `code`.
    fn mac(&self, cache: &Cache, hash: &str) -> HmacSha256 {
        let mut mac = match HmacSha256::new_from_slice(&cache.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(hash.as_bytes());
        mac.update(self.engine_key.as_bytes());
        mac
    }

    /// A cached component, if `entry` exists and this host made it for
    /// `hash`. Any other entry is deleted so that it gets rebuilt.
    fn load(&self, engine: &Engine, cache: &Cache, entry: &Path, hash: &str) -> Option<Component> {
        let problem = match regular_file::read(entry, Links::Refuse, MAX_ENTRY_BYTES) {
            Err(err) if err.is_not_found() => return None,
            Err(ReadError::Io(err)) => format!("cannot be read ({err})"),
            Err(err) => err.to_string(),
            Ok(data) => match data.split_at_checked(MAC_LEN) {
                Some((tag, code)) => {
                    let mut mac = self.mac(cache, hash);
                    mac.update(code);
                    match mac.verify_slice(tag) {
                        // SAFETY: `code` is byte for byte what this host
                        // serialized with `Component::serialize` for the
                        // component whose hash is `hash`, on an engine with
                        // the same compatibility hash: the MAC over all three
                        // matches, and only a holder of the key (readable by
                        // the user running the host alone) can make one.
                        Ok(()) => match unsafe { Component::deserialize(engine, code) } {
                            Ok(component) => return Some(component),
                            Err(err) => format!("cannot be loaded: {err}"),
                        },
                        Err(_) => {
                            "was not made by this host for this component (MAC mismatch)".to_owned()
                        }
                    }
                }
                None => "is truncated".to_owned(),
            },
        };
        tracing::warn!(
            entry = %printable::path(entry),
            "cached component {problem}; rebuilding it"
        );
        self.rebuilt.fetch_add(1, Ordering::Relaxed);
        let _ = fs::remove_file(entry);
        None
    }

    /// Writes `component` to `entry` atomically: a reader sees the old state
    /// or the whole new entry, never part of one.
    fn store(
        &self,
        cache: &Cache,
        entry: &Path,
        hash: &str,
        component: &Component,
    ) -> wasmtime::Result<()> {
        let code = component.serialize()?;
        let mut mac = self.mac(cache, hash);
        mac.update(&code);
        let tag = mac.finalize().into_bytes();
        let mut temp = tempfile::NamedTempFile::new_in(&cache.dir)?;
        temp.write_all(&tag)?;
        temp.write_all(&code)?;
        temp.persist(entry).map_err(|err| err.error)?;
        Ok(())
    }
}

/// Why the cache key cannot be used.
#[derive(Debug, thiserror::Error)]
enum KeyError {
    #[error("cannot create the cache folder: {0}")]
    Folder(#[source] std::io::Error),
    #[error("cannot create the key file {}: {source}", printable::path(.path))]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the key file {} {problem}; delete it and hookhost creates a new one (a regular \
         file of {KEY_LEN} bytes, owned by the user running hookhost, mode 0600)",
        printable::path(.path)
    )]
    Unusable { path: PathBuf, problem: String },
}

/// The cache's key: read from `<dir>/key`, or created there when missing.
fn cache_key(dir: &Path) -> Result<[u8; KEY_LEN], KeyError> {
    // Only a folder created here gets mode 0700; an existing one is the
    // user's choice. Its entries are protected by the key, not the mode.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(KeyError::Folder)?;
    let path = dir.join(KEY_FILE);
    if let Some(key) = read_key(&path)? {
        return Ok(key);
    }
    match create_key(dir, &path) {
        Ok(key) => Ok(key),
        // Another host created it first: use theirs.
        Err(KeyError::Create { source, .. })
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            read_key(&path)?.ok_or_else(|| KeyError::Unusable {
                path: path.clone(),
                problem: "was created and deleted again meanwhile".to_owned(),
            })
        }
        Err(err) => Err(err),
    }
}

/// Reads the key at `path` if it is a regular file (not a link to one) of
/// [`KEY_LEN`] bytes, owned by the effective user, that no other user may
/// read or write; `None` when there is no file.
fn read_key(path: &Path) -> Result<Option<[u8; KEY_LEN]>, KeyError> {
    let unusable = |problem: String| KeyError::Unusable {
        path: path.to_owned(),
        problem,
    };
    let (mut file, metadata) = match regular_file::open(path, Links::Refuse) {
        Ok(opened) => opened,
        Err(err) if err.is_not_found() => return Ok(None),
        Err(ReadError::Io(err)) => return Err(unusable(format!("cannot be read ({err})"))),
        Err(err) => return Err(unusable(err.to_string())),
    };
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if metadata.uid() != me {
        return Err(unusable(format!(
            "is owned by user id {}, not by the user running hookhost ({me})",
            metadata.uid()
        )));
    }
    let mode = metadata.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(unusable(format!(
            "has mode {mode:04o}: other users may read or write it; it must be 0600"
        )));
    }
    if metadata.len() != KEY_LEN as u64 {
        return Err(unusable(format!(
            "is {} bytes long, not {KEY_LEN}",
            metadata.len()
        )));
    }
    let mut key = [0; KEY_LEN];
    file.read_exact(&mut key)
        .map_err(|err| unusable(format!("cannot be read ({err})")))?;
    Ok(Some(key))
}

/// Creates a new random key at `path` atomically, mode 0600: written to a
/// temporary file (which `tempfile` creates with mode 0600) and linked into
/// place only if no key exists, so two hosts starting at once end up with
/// one key.
fn create_key(dir: &Path, path: &Path) -> Result<[u8; KEY_LEN], KeyError> {
    let create = |source: std::io::Error| KeyError::Create {
        path: path.to_owned(),
        source,
    };
    let mut key = [0; KEY_LEN];
    getrandom::getrandom(&mut key).map_err(|err| create(std::io::Error::other(err)))?;
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(create)?;
    temp.write_all(&key).map_err(create)?;
    temp.as_file().sync_all().map_err(create)?;
    temp.persist_noclobber(path)
        .map_err(|err| create(err.error))?;
    tracing::info!(path = %printable::path(path), "created the compiled-component cache key");
    Ok(key)
}

/// Deletes the entries in `dir` made for engine settings other than
/// `engine_key` that were last written more than [`STALE_AFTER`] ago.
fn prune(dir: &Path, engine_key: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let current = format!("-{engine_key}.cwasm");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.ends_with(".cwasm") || name.ends_with(&current) {
            continue;
        }
        let age = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok());
        if age.is_some_and(|age| age > STALE_AFTER) && fs::remove_file(entry.path()).is_ok() {
            tracing::debug!(
                entry = %printable::path(&entry.path()),
                "deleted a stale cache entry"
            );
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the cache lives by default: `$XDG_CACHE_HOME/hookhost/components`,
/// else `$HOME/.cache/hookhost/components`; `None` when neither is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("hookhost").join("components"))
}
