//! Loading a plugin: reading a `.wasm` file, compiling it, and checking it
//! against the hook world, with an error that names the file and says what
//! to fix.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::types::{ComponentExtern, ComponentItem};
use wasmtime::component::Component;

use crate::bindings::batch::BatchHookPre;
use crate::bindings::HookPre;
use crate::cache::content_hash;
use crate::capabilities::Grants;
use crate::config::Limits;
use crate::engine::Runtime;
use crate::printable::{self, escape_controls};
use crate::regular_file::{self, Links, ReadError};
use crate::state::PluginState;
use crate::worker::{self, Exports, InstantiateError};

/// The world every plugin must implement, as named in errors.
pub const HOOK_WORLD: &str = "hookhost:hooks/hook@0.1.0";
/// The world of plugins that handle events in batches.
pub const BATCH_HOOK_WORLD: &str = "hookhost:hooks/batch-hook@0.1.0";
/// The export that makes a component a batch hook (world `batch-hook`).
const BATCH_HANDLER_EXPORT: &str = "hookhost:hooks/batch-handler@0.1.0";

/// A compiled plugin that implements the hook world, ready to instantiate.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// The plugin's name: the file's stem (`slack` for `slack.wasm`), with
    /// control characters escaped (see [`plugin_name`]).
    pub name: Arc<str>,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Size of the file in bytes.
    pub size: u64,
    /// SHA-256 of the file's content, in hex: which version is loaded.
    pub hash: Arc<str>,
    /// Time spent compiling it, or loading it from the compiled-component
    /// cache.
    pub compile_time: Duration,
    pub(crate) pre: PluginPre,
}

impl LoadedPlugin {
    /// The world it implements: [`HOOK_WORLD`] or [`BATCH_HOOK_WORLD`].
    pub fn world(&self) -> &'static str {
        if self.pre.is_batch() {
            BATCH_HOOK_WORLD
        } else {
            HOOK_WORLD
        }
    }
}

/// A component linked against the host, ready to instantiate.
#[derive(Clone)]
pub(crate) enum PluginPre {
    /// It implements the `hook` world.
    Single(HookPre<PluginState>),
    /// It implements the `batch-hook` world.
    Batch(BatchHookPre<PluginState>),
}

impl PluginPre {
    /// Whether it handles events in batches.
    pub(crate) fn is_batch(&self) -> bool {
        matches!(self, PluginPre::Batch(_))
    }

    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        match self {
            PluginPre::Single(pre) => pre.engine(),
            PluginPre::Batch(pre) => pre.engine(),
        }
    }

    pub(crate) async fn instantiate_async(
        &self,
        store: &mut wasmtime::Store<PluginState>,
    ) -> wasmtime::Result<Exports> {
        Ok(match self {
            PluginPre::Single(pre) => Exports::Single(pre.instantiate_async(store).await?),
            PluginPre::Batch(pre) => Exports::Batch(pre.instantiate_async(store).await?),
        })
    }
}

/// A file that could not be loaded as a plugin. The messages print the
/// path with control characters escaped, so a file name cannot forge a log
/// line.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", printable::path(.path))]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The path is not a regular file (nor a symbolic link to one).
    #[error(
        "{}: is {kind}, not a regular file; only regular files (or symbolic links to \
         them) are loaded as plugins",
        printable::path(.path)
    )]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is: "a directory", "a FIFO (named pipe)", "a character
        /// device", "a socket", ...
        kind: &'static str,
    },
    /// The file is larger than `[engine] max_plugin_mib`.
    #[error(
        "{}: {size} bytes, over the limit of {limit} bytes ({} MiB) for plugin files; \
         raise `[engine] max_plugin_mib` in the config file to load it",
        printable::path(.path),
        .limit >> 20
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes (at least: a file that grew while being read
        /// is refused after the first byte past the limit).
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The file is not WebAssembly at all.
    #[error(
        "{}: not a WebAssembly file (it does not start with the `\\0asm` header)",
        printable::path(.path)
    )]
    NotWasm {
        /// The file.
        path: PathBuf,
    },
    /// The file is a core module rather than a component.
    #[error(
        "{}: a core WebAssembly module, not a component; build it for \
         `wasm32-wasip2` or wrap it with `wasm-tools component new`",
        printable::path(.path)
    )]
    CoreModule {
        /// The file.
        path: PathBuf,
    },
    /// The component could not be compiled (truncated, corrupt, or using
    /// features the host does not enable).
    #[error("{}: invalid component: {}", printable::path(.path), escape_controls(.reason))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What the compiler said.
        reason: String,
    },
    /// Instantiating the component ran guest code that failed.
    #[error("{}: fails when instantiated: {}", printable::path(.path), escape_controls(.reason))]
    Instantiate {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The component does not implement the hook world.
    #[error(
        "{}: does not implement {HOOK_WORLD}: {}",
        printable::path(.path),
        escape_controls(.reason)
    )]
    WrongWorld {
        /// The file.
        path: PathBuf,
        /// Which import or export does not match.
        reason: String,
    },
    /// Another file already gives a plugin this name (two names that differ
    /// only where [`plugin_name`] escapes or replaces characters).
    #[error(
        "{}: its plugin name \"{name}\" is already taken by another file ({}); rename one \
         of them",
        printable::path(.path),
        printable::path(.other)
    )]
    DuplicateName {
        /// The file refused.
        path: PathBuf,
        /// The plugin name both files have.
        name: String,
        /// The file that has the name.
        other: PathBuf,
    },
}

impl LoadError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            LoadError::Read { path, .. }
            | LoadError::NotAFile { path, .. }
            | LoadError::TooLarge { path, .. }
            | LoadError::NotWasm { path }
            | LoadError::CoreModule { path }
            | LoadError::Invalid { path, .. }
            | LoadError::Instantiate { path, .. }
            | LoadError::WrongWorld { path, .. }
            | LoadError::DuplicateName { path, .. } => path,
        }
    }

    /// Whether the file does not exist (any more): hot reload unloads the
    /// plugin instead of rejecting anything.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, LoadError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    pub(crate) fn from_read(path: &Path, err: ReadError) -> LoadError {
        let path = path.to_owned();
        match err {
            ReadError::Io(source) => LoadError::Read { path, source },
            ReadError::NotRegular(kind) => LoadError::NotAFile { path, kind },
            ReadError::TooLarge { size, limit } => LoadError::TooLarge { path, size, limit },
        }
    }
}

/// First bytes of every WebAssembly binary.
const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// The version field of a core module (`1 0 0 0`); components use another.
const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];

/// The plugin name for a file: its stem, with control characters escaped
/// as `\u{..}` ([`escape_controls`]), so that the name is safe to print
/// wherever it goes (log lines, the guest's tagged output, summaries). The
/// config's `[plugins.<name>]` sections use this escaped name: a file
/// `a<newline>b.wasm` is configured as `[plugins."a\\u{a}b"]`.
pub fn plugin_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|stem| stem.to_string_lossy())
        .unwrap_or_else(|| path.to_string_lossy());
    escape_controls(&stem).into_owned()
}

/// Reads the plugin file at `path`: a regular file (a symbolic link to one
/// is followed) of at most `max_bytes` (`[engine] max_plugin_mib`), opened
/// without blocking and refused before it is read when it is larger.
/// Blocking: call it off the async threads.
pub fn read_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>, LoadError> {
    regular_file::read(path, Links::Follow, max_bytes)
        .map_err(|err| LoadError::from_read(path, err))
}

/// Reads ([`read_file`]), compiles and checks the plugin at `path`.
/// Blocking and CPU-heavy (compiling takes milliseconds to seconds): call it
/// off the async threads.
pub fn load(runtime: &Runtime, path: &Path, max_bytes: u64) -> Result<LoadedPlugin, LoadError> {
    load_bytes(runtime, path, &read_file(path, max_bytes)?)
}

/// Like [`load`], for bytes already in memory; `path` names them in errors.
pub fn load_bytes(runtime: &Runtime, path: &Path, bytes: &[u8]) -> Result<LoadedPlugin, LoadError> {
    let started = Instant::now();
    let hash: Arc<str> = content_hash(bytes).into();
    let component = compile(runtime, path, bytes, &hash)?;
    link(
        runtime,
        path,
        &component,
        bytes.len(),
        hash,
        started.elapsed(),
    )
}

/// Checks a compiled component's imports and exports against the world.
fn link(
    runtime: &Runtime,
    path: &Path,
    component: &Component,
    size: usize,
    hash: Arc<str>,
    compile_time: Duration,
) -> Result<LoadedPlugin, LoadError> {
    let pre = instantiate_pre(runtime, component).map_err(|reason| LoadError::WrongWorld {
        path: path.to_owned(),
        reason,
    })?;
    Ok(LoadedPlugin {
        name: plugin_name(path).into(),
        path: path.to_owned(),
        size: size as u64,
        hash,
        compile_time,
        pre,
    })
}

/// Reads ([`read_file`], at most `max_bytes`) and compiles `path` on a
/// blocking thread, and describes it, whether or not it is a valid plugin.
pub async fn inspect(
    runtime: Arc<Runtime>,
    path: &Path,
    max_bytes: u64,
) -> Result<ComponentReport, LoadError> {
    let task_path = path.to_owned();
    let task_runtime = runtime.clone();
    let compiled = tokio::task::spawn_blocking(move || {
        let bytes = read_file(&task_path, max_bytes)?;
        let started = Instant::now();
        let hash: Arc<str> = content_hash(&bytes).into();
        let component = compile(&task_runtime, &task_path, &bytes, &hash)?;
        Ok((component, bytes.len(), hash, started.elapsed()))
    })
    .await
    .map_err(|err| LoadError::Invalid {
        path: path.to_owned(),
        reason: format!("the compile task failed: {err}"),
    })?;
    let (component, size, hash, compile_time) = compiled?;
    let ty = component.component_type();
    let describe =
        |(name, item): (&str, ComponentExtern)| format!("{name} ({})", item_kind(&item.ty));
    let imports = ty.imports(runtime.engine()).map(describe).collect();
    let exports = ty.exports(runtime.engine()).map(describe).collect();
    let verdict = match link(&runtime, path, &component, size, hash, compile_time) {
        Ok(plugin) => probe(&plugin, &Limits::default())
            .await
            .map(|()| plugin.world()),
        Err(err) => Err(err),
    };
    Ok(ComponentReport {
        imports,
        exports,
        verdict,
    })
}

fn compile(
    runtime: &Runtime,
    path: &Path,
    bytes: &[u8],
    hash: &str,
) -> Result<Component, LoadError> {
    check_header(path, bytes)?;
    let engine = runtime.engine();
    runtime
        .compiler()
        .component(engine, bytes, hash)
        .map_err(|err| LoadError::Invalid {
            path: path.to_owned(),
            reason: format!("{err:#}"),
        })
}

fn check_header(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        return Err(LoadError::NotWasm {
            path: path.to_owned(),
        });
    }
    if bytes[4..8] == CORE_MODULE_VERSION {
        return Err(LoadError::CoreModule {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Links the component's imports and checks its exports: a component that
/// exports `batch-handler` is a batch hook, any other must export
/// `handler`. On failure, says which import is not provided or which export
/// is missing or mistyped.
fn instantiate_pre(runtime: &Runtime, component: &Component) -> Result<PluginPre, String> {
    let instance_pre = runtime.linker().instantiate_pre(component).map_err(|err| {
        format!("{err:#}; the host provides WASI 0.2 and hookhost:hooks imports only")
    })?;
    let is_batch = component
        .component_type()
        .exports(runtime.engine())
        .any(|(name, _)| name == BATCH_HANDLER_EXPORT);
    let pre = if is_batch {
        BatchHookPre::new(instance_pre).map(PluginPre::Batch)
    } else {
        HookPre::new(instance_pre).map(PluginPre::Single)
    };
    pre.map_err(|err| {
        let exports = describe_exports(runtime, component);
        format!("{err:#} (the component exports: {exports})")
    })
}

/// The names of a component's exports, for error messages.
fn describe_exports(runtime: &Runtime, component: &Component) -> String {
    let names: Vec<String> = component
        .component_type()
        .exports(runtime.engine())
        .map(|(name, _)| name.to_owned())
        .collect();
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(", ")
    }
}

/// Loads the plugin at `path` (from `bytes` when given, else from the file,
/// at most `max_bytes` of it): reads and compiles it on a blocking thread,
/// then [`probe`]s it under `limits`.
pub async fn load_checked(
    runtime: Arc<Runtime>,
    path: PathBuf,
    bytes: Option<Vec<u8>>,
    limits: Limits,
    max_bytes: u64,
) -> Result<LoadedPlugin, LoadError> {
    let compile_path = path.clone();
    let compiled = tokio::task::spawn_blocking(move || match bytes {
        Some(bytes) => load_bytes(&runtime, &compile_path, &bytes),
        None => load(&runtime, &compile_path, max_bytes),
    })
    .await
    .map_err(|err| LoadError::Invalid {
        path,
        reason: format!("the compile task failed: {err}"),
    })??;
    probe(&compiled, &limits).await?;
    Ok(compiled)
}

/// Instantiates `plugin` once under `limits`, so that a component whose
/// exports have the wrong types, or whose initialisation traps, is rejected
/// at load time rather than on its first event.
pub async fn probe(plugin: &LoadedPlugin, limits: &Limits) -> Result<(), LoadError> {
    let deadline = Instant::now() + limits.timeout;
    let no_grants = Grants::none(&plugin.name);
    match worker::instantiate(plugin, limits, &no_grants, deadline).await {
        Ok(_) => Ok(()),
        Err(InstantiateError::Mismatch(reason)) => Err(LoadError::WrongWorld {
            path: plugin.path.clone(),
            reason,
        }),
        Err(InstantiateError::Failed(failure)) => Err(LoadError::Instantiate {
            path: plugin.path.clone(),
            reason: failure.to_string(),
        }),
    }
}

/// What `hookhost check` reports about a component.
#[derive(Debug)]
pub struct ComponentReport {
    /// Imports, as `name (kind)`.
    pub imports: Vec<String>,
    /// Exports, as `name (kind)`.
    pub exports: Vec<String>,
    /// The world it implements when it is a valid plugin (every import
    /// provided, the exports of [`HOOK_WORLD`] or [`BATCH_HOOK_WORLD`]).
    pub verdict: Result<&'static str, LoadError>,
}

fn item_kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "function",
        ComponentItem::CoreFunc(_) => "core function",
        ComponentItem::Module(_) => "module",
        ComponentItem::Component(_) => "component",
        ComponentItem::ComponentInstance(_) => "interface",
        ComponentItem::Type(_) => "type",
        ComponentItem::Resource(_) => "resource",
    }
}
