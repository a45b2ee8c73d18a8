//! The one wasmtime `Engine` and `Linker` a host uses, and the ticker thread
//! that drives epoch-based timeouts.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::Hook;
use crate::cache::Compiler;
use crate::state::PluginState;

/// How often the epoch advances. A running guest checks its deadline (and
/// yields to other tasks) once per tick, so this bounds both how late a
/// timeout fires and how long one busy plugin can keep a runtime thread
/// from the others. The ticker's cost is one atomic add per tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Instances that can be alive at once in the pooling allocator: one per
/// loaded plugin plus room for fresh instances replacing trapped ones.
/// Each slot reserves address space (not memory) for one linear memory.
const POOL_INSTANCES: u32 = 256;

/// Core instances a component may contain: a Rust hook has 2-4 (its module
/// and the shims that wire up imports); a componentize-py (Python) hook has
/// 38, so interpreted guests need far more than compiled ones.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;

/// Core instances the pool holds in all, on average per component
/// instance: most plugins are compiled (a few each), some interpreted.
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;

/// Bytes of each memory and table slot reset in place (only the pages a
/// plugin dirtied, where the kernel can tell) instead of being unmapped
/// when an instance ends. Unmapping costs a TLB shootdown across cores and
/// a page fault per page on the slot's next use; a Rust hook dirties well
/// under this much per instance.
const KEEP_RESIDENT: usize = 4 << 20;

/// An error setting up the engine.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the WebAssembly engine: {0}")]
pub struct EngineError(String);

/// The engine, the linker with every import the host provides, and the
/// epoch ticker. Cheap to share: plugins hold an `Arc` to it.
pub struct Runtime {
    engine: Engine,
    linker: Linker<PluginState>,
    compiler: Compiler,
}

impl Runtime {
    /// Creates the engine (fuel, epochs and the pooling allocator on) and
    /// the linker, and starts the epoch ticker, which stops by itself when
    /// the engine is dropped. Compiled components are cached in `cache_dir`
    /// when one is given.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Arc<Runtime>, EngineError> {
        let engine = match Engine::new(&engine_config(Allocation::Pooling)) {
            Ok(engine) => engine,
            // The pool reserves address space up front (terabytes, not
            // memory); where that is refused (`ulimit -v`, valgrind), every
            // instance gets its own mappings instead, at a higher cost per
            // fresh instance.
            Err(pooling) => {
                let engine = Engine::new(&engine_config(Allocation::OnDemand))
                    .map_err(|e| EngineError(format!("{e:#}")))?;
                tracing::warn!(
                    "cannot reserve the instance pool ({pooling:#}); instances are allocated \
                     one by one instead, which makes fresh instances slower"
                );
                engine
            }
        };
        let linker = linker(&engine).map_err(|e| EngineError(format!("{e:#}")))?;
        spawn_epoch_ticker(&engine)
            .map_err(|e| EngineError(format!("cannot start the epoch ticker thread: {e}")))?;
        let compiler = Compiler::new(&engine, cache_dir);
        Ok(Arc::new(Runtime {
            engine,
            linker,
            compiler,
        }))
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles components, through the cache.
    pub fn compiler(&self) -> &Compiler {
        &self.compiler
    }

    /// The linker with WASI and the hookhost imports.
    pub fn linker(&self) -> &Linker<PluginState> {
        &self.linker
    }
}

/// How instances get their memories, tables and stacks.
#[derive(Clone, Copy)]
enum Allocation {
    /// From a pool reserved when the engine is made (the default).
    Pooling,
    /// Mapped for each instance.
    OnDemand,
}

fn engine_config(allocation: Allocation) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * CORE_INSTANCES_PER_COMPONENT)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * CORE_INSTANCES_PER_COMPONENT)
        .total_stacks(POOL_INSTANCES)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .wasm_component_model(true)
        .allocation_strategy(match allocation {
            Allocation::Pooling => InstanceAllocationStrategy::Pooling(pool),
            Allocation::OnDemand => InstanceAllocationStrategy::OnDemand,
        });
    config
}

fn linker(engine: &Engine) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    Hook::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |state| state)?;
    Ok(linker)
}

fn spawn_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    thread::Builder::new()
        .name("hookhost-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                thread::sleep(EPOCH_TICK);
            }
        })?;
    Ok(())
}
