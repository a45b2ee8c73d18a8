//! The compiled-component cache: native code for each component, on disk,
//! keyed by the component's content hash and the engine's settings, so a
//! restart with many plugins does not compile them again.
//!
//! An entry is `<content hash>-<engine hash>.cwasm` holding the SHA-256 of
//! the serialized code followed by the code itself. The checksum is verified
//! before the code is loaded, so a truncated or corrupt entry is detected,
//! deleted and rebuilt, never trusted; an entry from another wasmtime version
//! or other engine settings has a different name and is simply not found,
//! and is deleted once it has not been written for [`STALE_AFTER`].

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Bytes of the checksum at the start of every entry.
const CHECKSUM_LEN: usize = 32;

/// Age past which an entry made for other engine settings (another hookhost
/// or wasmtime version) is deleted when a host starts: long enough that two
/// versions sharing a cache during an upgrade keep their entries.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// Counts of what the cache did since the host started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Components compiled (cache misses, or no cache).
    pub compiled: u64,
    /// Components loaded from the cache.
    pub loaded: u64,
    /// Entries found corrupt and rebuilt.
    pub rebuilt: u64,
}

/// Compiles components, through the on-disk cache when there is one.
pub struct Compiler {
    cache_dir: Option<PathBuf>,
    engine_key: String,
    compiled: AtomicU64,
    loaded: AtomicU64,
    rebuilt: AtomicU64,
}

/// The SHA-256 of `bytes`, in hex: a component's identity in the cache and
/// in reports of which version of a plugin is live.
pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

impl Compiler {
    /// A compiler for `engine` caching in `cache_dir` (`None`: no cache).
    /// Entries of other engine settings older than [`STALE_AFTER`] are
    /// deleted.
    pub fn new(engine: &Engine, cache_dir: Option<PathBuf>) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        if let Some(dir) = &cache_dir {
            prune(dir, &engine_key);
        }
        Compiler {
            cache_dir,
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
    /// when a sound entry exists, else compiled and then cached. A cache
    /// that cannot be read or written only costs the compile; it is logged,
    /// never an error.
    pub fn component(
        &self,
        engine: &Engine,
        bytes: &[u8],
        hash: &str,
    ) -> wasmtime::Result<Component> {
        let Some(dir) = &self.cache_dir else {
            return self.compile(engine, bytes);
        };
        let entry = dir.join(format!("{hash}-{}.cwasm", self.engine_key));
        if let Some(component) = self.load(engine, &entry) {
            self.loaded.fetch_add(1, Ordering::Relaxed);
            return Ok(component);
        }
        let component = self.compile(engine, bytes)?;
        if let Err(err) = store(dir, &entry, &component) {
            tracing::warn!(entry = %entry.display(), "cannot write compiled-component cache: {err}");
        }
        Ok(component)
    }

    fn compile(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
        self.compiled.fetch_add(1, Ordering::Relaxed);
        Component::from_binary(engine, bytes)
    }

    /// A cached component, if `entry` exists and is sound. A corrupt or
    /// unloadable entry is deleted so that it gets rebuilt.
    fn load(&self, engine: &Engine, entry: &Path) -> Option<Component> {
        let data = fs::read(entry).ok()?;
        let problem = match data.split_at_checked(CHECKSUM_LEN) {
            Some((checksum, code)) if Sha256::digest(code).as_slice() == checksum => {
                // SAFETY: `code` was produced by `Component::serialize` for an
                // engine with the same compatibility hash (it is in the entry's
                // name) and is byte-for-byte what was written: the checksum
                // matches. The cache directory belongs to the user running the
                // host, like the plugins folder whose code it runs anyway.
                match unsafe { Component::deserialize(engine, code) } {
                    Ok(component) => return Some(component),
                    Err(err) => format!("cannot be loaded: {err}"),
                }
            }
            _ => "is corrupt (checksum mismatch)".to_owned(),
        };
        tracing::warn!(entry = %entry.display(), "cached component {problem}; rebuilding it");
        self.rebuilt.fetch_add(1, Ordering::Relaxed);
        let _ = fs::remove_file(entry);
        None
    }
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
            tracing::debug!(entry = %entry.path().display(), "deleted a stale cache entry");
        }
    }
}

/// Writes `component` to `entry` atomically: a reader sees the old state or
/// the whole new entry, never part of one.
fn store(dir: &Path, entry: &Path, component: &Component) -> wasmtime::Result<()> {
    let code = component.serialize()?;
    fs::create_dir_all(dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(&Sha256::digest(&code))?;
    temp.write_all(&code)?;
    temp.persist(entry).map_err(|err| err.error)?;
    Ok(())
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
