//! Command-line parsing and the shared pieces of the subcommands.

mod builtin;
mod check;
mod dlq;
mod emit;
mod report;
mod run;
mod serve;
mod status;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use hookhost::observe::traces::Traces;
use hookhost::{Config, Host};

/// Run event hooks as sandboxed WebAssembly components.
#[derive(Parser)]
#[command(name = "hookhost", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines on stderr are written: `text` for people, `json` for
    /// one JSON object a line (with `plugin` and `event_id` fields on the
    /// lines about a delivery).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Export traces over OTLP/HTTP (JSON) to the collector at URL (spans
    /// go to URL/v1/traces): a span per accepted event, under it a span
    /// per plugin delivery.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT"
    )]
    otlp_endpoint: Option<String>,
}

/// The form of the log.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Read events as JSON lines on stdin (and, with --listen, over HTTP),
    /// dispatch each to every plugin, and print a per-plugin summary at the
    /// end of input (with --listen: at SIGTERM or Ctrl-C).
    Run {
        #[command(flatten)]
        host: HostArgs,
        #[command(flatten)]
        delivery: run::DeliveryArgs,
        #[command(flatten)]
        serve: serve::ServeArgs,
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
    /// Print each plugin of a running `hookhost run --listen` as a table:
    /// state, version, counts, limits, grants and last failures.
    Status(status::StatusArgs),
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
    let traces = match init_logging(cli.log_format, cli.otlp_endpoint.as_deref()) {
        Ok(traces) => traces,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run {
                host,
                delivery,
                serve,
            } => run::run(&host, &delivery, &serve).await,
            Command::Emit { host, json } => emit::emit(&host, &json).await,
            Command::Check { file, config } => check::check(&file, config).await,
            Command::Dlq { command } => dlq::dlq(command).await,
            Command::Status(args) => status::status(&args).await,
        }
    });
    // A read of stdin still blocked on its thread (after a Ctrl-C, with the
    // producer still attached) must not keep the process alive: the work is
    // done and everything accepted has been handled.
    runtime.shutdown_background();
    if let Some(traces) = traces {
        traces.shutdown();
    }
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the default `info` level.
/// With `otlp_endpoint`, traces are exported there too.
///
/// The spans of deliveries (`plugin`, `event_id`), events and HTTP
/// requests are kept out of the text form, whose lines name their plugin
/// already, and always in the JSON form, whatever `RUST_LOG` says, so
/// their fields are on every line logged within them. The traces have
/// their own filter: `RUST_LOG` does not thin them out.
fn init_logging(
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> Result<Option<Traces>, hookhost::observe::traces::TracesError> {
    use hookhost::observe::logs::{JsonLines, DELIVERY_TARGET};
    use hookhost::observe::traces::{EVENT_TARGET, HTTP_TARGET};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let spans = match format {
        LogFormat::Text => "off",
        LogFormat::Json => "trace",
    };
    for target in [DELIVERY_TARGET, EVENT_TARGET, HTTP_TARGET] {
        if let Ok(directive) = format!("{target}={spans}").parse() {
            filter = filter.add_directive(directive);
        }
    }
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Text => lines
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => lines
            .with_ansi(false)
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(JsonLines)
            .with_filter(filter)
            .boxed(),
    };
    // Without traces the subscriber is the lines alone: an absent layer
    // (`Option::None`) would declare an interest in every span and make
    // the registry record each event's and delivery's span for nothing.
    match otlp_endpoint.filter(|url| !url.is_empty()) {
        Some(endpoint) => {
            let (layer, traces) = Traces::install(endpoint)?;
            tracing_subscriber::registry()
                .with(lines)
                .with(layer)
                .init();
            Ok(Some(traces))
        }
        None => {
            tracing_subscriber::registry().with(lines).init();
            Ok(None)
        }
    }
}
