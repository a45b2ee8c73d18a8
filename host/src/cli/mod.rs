//! Command-line parsing and the shared pieces of the subcommands.

mod builtin;
mod check;
mod dlq;
mod emit;
mod lines;
mod report;
mod run;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use hookhost::{Config, Host};

/// Run event hooks as sandboxed WebAssembly components.
#[derive(Parser)]
#[command(name = "hookhost", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read events as JSON lines on stdin, dispatch each to every plugin, and
    /// print a per-plugin summary at the end of input.
    Run {
        #[command(flatten)]
        host: HostArgs,
        #[command(flatten)]
        delivery: run::DeliveryArgs,
    },
    /// Dispatch one event, given as JSON, and print each plugin's outcome.
    Emit {
        #[command(flatten)]
        host: HostArgs,
        /// The event, e.g. '{"event_type": "ProfilingStarted", "metadata": {"table": "t"}}'.
        json: String,
    },
    /// Say whether a .wasm file implements the hook world, and list what it
    /// imports and exports.
    Check {
        /// TOML config file whose `[engine] max_plugin_mib` applies.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The component to check.
        file: PathBuf,
    },
    /// List, show, replay or purge the dead letters: the events that a
    /// plugin could not handle for good.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
}

/// Where the plugins and the configuration come from.
#[derive(Args)]
struct HostArgs {
    /// Folder whose *.wasm files are loaded as plugins. Without it, the
    /// built-in plugins are used.
    #[arg(long, value_name = "DIR")]
    plugins: Option<PathBuf>,
    /// TOML file with limits and per-plugin settings.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl HostArgs {
    /// The config file's contents (the built-in defaults without one).
    fn load_config(&self) -> anyhow::Result<Config> {
        Ok(match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        })
    }

    /// The largest event accepted, in bytes, and where that limit is set,
    /// for error messages.
    fn event_limit(&self, config: &Config) -> (usize, String) {
        let max = config.engine.max_event_bytes();
        let kib = max >> 10;
        let place = match &self.config {
            Some(path) => format!(
                "[engine] max_event_kib = {kib} in {}",
                hookhost::printable::path(path)
            ),
            None => {
                format!("[engine] max_event_kib = {kib}, the default; set it in a --config file")
            }
        };
        (max, place)
    }

    /// Builds the host, reporting plugins that failed to load. With `watch`,
    /// changes to the plugins folder are applied while it runs.
    async fn build_host(&self, watch: bool) -> anyhow::Result<Host> {
        self.build_host_with(watch, None).await
    }

    /// [`HostArgs::build_host`], keeping the write-ahead log and the dead
    /// letters in `data_dir`.
    async fn build_host_with(
        &self,
        watch: bool,
        data_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<Host> {
        let mut builder = Host::builder();
        if let Some(dir) = data_dir {
            builder = builder.data_dir(dir);
        }
        if let Some(path) = &self.config {
            builder = builder.config_file(path)?;
        }
        if let Some(dir) = hookhost::cache::default_cache_dir() {
            builder = builder.cache_dir(dir);
        }
        match &self.plugins {
            Some(dir) => builder = builder.plugins_dir(dir).watch(watch),
            None => {
                builder = builder.config(builtin::config(self.config.as_deref())?);
                for (name, bytes) in builtin::PLUGINS {
                    builder = builder.plugin_bytes(*name, *bytes);
                }
            }
        }
        let host = builder.build().await.context("cannot start the host")?;
        if host.plugin_names().is_empty() {
            eprintln!("warning: no plugin loaded; events will be read and counted but go nowhere");
        }
        Ok(host)
    }
}

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { host, delivery } => run::run(&host, &delivery).await,
            Command::Emit { host, json } => emit::emit(&host, &json).await,
            Command::Check { file, config } => check::check(&file, config).await,
            Command::Dlq { command } => dlq::dlq(command).await,
        }
    });
    // A read of stdin still blocked on its thread (after a Ctrl-C, with the
    // producer still attached) must not keep the process alive: the work is
    // done and everything accepted has been handled.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the default `info` level.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
