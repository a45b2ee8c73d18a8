//! `hookhost run`: events as JSON lines on stdin until end of input (or
//! Ctrl-C or SIGTERM), then a summary per plugin. With `--listen`, events
//! over HTTP too (see `serve.rs`), until Ctrl-C or SIGTERM. Changes to the
//! plugins folder are applied while it runs.
//!
//! Stdin is untrusted: lines are read by [`BoundedLines`], so a line longer
//! than the event size limit is skipped without being held whole, and one
//! that is not UTF-8 or holds a NUL byte is skipped by number. The first
//! Ctrl-C or SIGTERM stops reading (and serving) and lets the plugins
//! finish what they accepted; a second one exits at once (code 130),
//! saying how many accepted events each plugin had not handled yet.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use hookhost::printable::escape_controls;
use hookhost::sources::lines::{BoundedLines, Line};
use hookhost::sources::IngestStats;
use hookhost::{EmitError, Event, Host, PluginSummary, Unfinished};
use tokio::io::BufReader;

use super::report::summary_table;
use super::serve::{self, ServeArgs};
use super::HostArgs;

/// Most events read before they are handed to the host together: one
/// write-ahead log sync for all of them. Fewer when input pauses.
const SEND_BATCH: usize = 256;

/// Where accepted events are kept, and how long to wait for pending ones.
#[derive(Args)]
pub struct DeliveryArgs {
    /// Folder for the write-ahead log and the dead letters (default:
    /// $XDG_DATA_HOME/hookhost, else ~/.local/share/hookhost). An event is
    /// accepted once it is written there; the next start delivers what a
    /// crash left undelivered.
    #[arg(long, value_name = "DIR", env = "HOOKHOST_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep accepted events and dead letters in memory only, whatever
    /// --data-dir says: a crash loses what is not delivered yet.
    #[arg(long)]
    pub in_memory: bool,
    /// At the end of input, how long to wait for pending retries before
    /// leaving them in the write-ahead log (or, in memory, moving them to
    /// the dead letters).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub drain_timeout: u64,
}

impl DeliveryArgs {
    /// The data directory to use, if any.
    pub fn data_dir(&self) -> anyhow::Result<Option<PathBuf>> {
        if self.in_memory {
            return Ok(None);
        }
        match &self.data_dir {
            Some(dir) => Ok(Some(dir.clone())),
            None => hookhost::delivery::default_data_dir()
                .map(Some)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                    "no data directory: neither XDG_DATA_HOME nor HOME is set; pass --data-dir \
                     DIR, or --in-memory to keep events in memory only"
                )
                }),
        }
    }
}

/// Bytes read from stdin at a time. Large enough that a long line costs few
/// reads; small beside the default 1 MiB event limit, which bounds the rest
/// of what one line can make the host hold.
const READ_BUFFER: usize = 64 << 10;

/// How often the plugins' counts are read while waiting for them to finish
/// after input ends: often enough that the wait ends within a blink of the
/// last event, rarely enough to cost nothing beside the events themselves.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Exit code after a second Ctrl-C: 128 + SIGINT, what shells report for a
/// process killed by Ctrl-C.
const EXIT_INTERRUPTED: i32 = 130;

/// Reads stdin line by line, and with `--listen` (or `[server] listen`)
/// takes events over HTTP too. A line that is too long, not UTF-8, holds a
/// NUL byte or is not a valid event is reported with its number and
/// skipped; everything accepted is handled before the summary prints.
pub async fn run(
    args: &HostArgs,
    delivery: &DeliveryArgs,
    serve: &ServeArgs,
) -> anyhow::Result<ExitCode> {
    let config = args.load_config()?;
    let (max_event, limit) = args.event_limit(&config);
    let data_dir = delivery.data_dir()?;
    if data_dir.is_none() {
        eprintln!(
            "warning: no data directory (--in-memory): accepted events and dead letters are kept \
             in memory only; a crash loses what is not delivered yet"
        );
    }
    let bound = serve.bind(&config, args.config.as_deref()).await?;
    let host = Arc::new(args.build_host_with(true, data_dir.as_deref()).await?);
    let mut interrupts = Interrupts::new()?;
    let server = bound.map(|bound| bound.start(&host));
    let mut counts = Counts {
        http: server.as_ref().map(|server| server.stats().clone()),
        ..Counts::default()
    };
    // A service started from a terminal has no input to read: it serves.
    let read_stdin = server.is_none() || !std::io::stdin().is_terminal();
    let mut interrupted = false;
    if read_stdin {
        interrupted =
            read_stdin_lines(&host, max_event, &limit, &mut interrupts, &mut counts).await;
    }
    if let Some(server) = server {
        if !interrupted {
            // Input ended (or is a terminal): serve until told to stop.
            interrupts.recv().await;
            interrupted = true;
            eprintln!(
                "stopping: no more events over HTTP; finishing the {} events accepted so far \
                 (Ctrl-C again to stop at once)",
                counts.accepted()
            );
        }
        let stopping = server.stop();
        tokio::pin!(stopping);
        tokio::select! {
            () = &mut stopping => {}
            _ = interrupts.recv() => stop_now(&host.unfinished()),
        }
    }
    let host = serve::unshared(host).await?;
    let drain = Duration::from_secs(delivery.drain_timeout);
    let summaries = finish(host, &counts, &mut interrupts, interrupted, drain).await;
    println!(
        "{} events dispatched, {} malformed lines skipped",
        counts.from_stdin, counts.skipped
    );
    if let Some(http) = &counts.http {
        println!(
            "{} events accepted over HTTP in {} requests, {} requests refused",
            http.events_accepted(),
            http.requests_accepted(),
            http.refused_total()
        );
    }
    print!("{}", summary_table(&summaries));
    let in_log: u64 = summaries.iter().map(|s| s.stats.left_in_log).sum();
    let to_dead_letters: u64 = summaries.iter().map(|s| s.stats.left_to_dead_letters).sum();
    if in_log > 0 {
        println!(
            "{in_log} deliveries still pending after the drain timeout \
             ({} s): kept in the write-ahead log for the next start",
            delivery.drain_timeout
        );
    }
    if to_dead_letters > 0 {
        println!(
            "{to_dead_letters} deliveries still pending after the drain timeout \
             ({} s): moved to the dead letters",
            delivery.drain_timeout
        );
    }
    super::builtin::report_database(args).await;
    Ok(ExitCode::SUCCESS)
}

/// What a run accepted: stdin lines handed to the host and skipped, and
/// what the HTTP endpoints accepted.
#[derive(Default)]
struct Counts {
    from_stdin: u64,
    skipped: u64,
    http: Option<Arc<IngestStats>>,
}

impl Counts {
    /// Events accepted from stdin and over HTTP.
    fn accepted(&self) -> u64 {
        self.from_stdin + self.http.as_ref().map_or(0, |http| http.events_accepted())
    }
}

/// Reads stdin to its end, or to the first Ctrl-C or SIGTERM, handing the
/// events to the host in batches; returns whether it was interrupted.
async fn read_stdin_lines(
    host: &Host,
    max_event: usize,
    limit: &str,
    interrupts: &mut Interrupts,
    counts: &mut Counts,
) -> bool {
    let stdin = BufReader::with_capacity(READ_BUFFER, tokio::io::stdin());
    let mut lines = BoundedLines::new(stdin, max_event);
    let mut batch = Batch::default();
    let mut interrupted = false;
    loop {
        // Hand over what was read when input pauses or the batch is full.
        let next = tokio::select! {
            biased;
            next = lines.next_line(), if batch.events.len() < SEND_BATCH => Some(next),
            _ = std::future::ready(()) => None,
        };
        let next = match next {
            Some(next) => next,
            None => {
                send(host, &mut batch, interrupts, &mut interrupted, counts).await;
                if interrupted {
                    break;
                }
                tokio::select! {
                    next = lines.next_line() => next,
                    _ = interrupts.recv() => {
                        interrupted = true;
                        announce_finishing(counts.accepted());
                        break;
                    }
                }
            }
        };
        let next = next.unwrap_or_else(|err| {
            eprintln!("error: cannot read stdin ({err}); taking it as the end of input");
            None
        });
        let Some((number, line)) = next else {
            send(host, &mut batch, interrupts, &mut interrupted, counts).await;
            break;
        };
        let text = match line {
            Line::Text(text) => text,
            Line::TooLong { length_so_far } => {
                eprintln!(
                    "error: stdin line {number} is longer than the event size limit of \
                     {max_event} bytes ({limit}): {length_so_far} bytes so far; \
                     line skipped to its end without being kept"
                );
                counts.skipped += 1;
                continue;
            }
            Line::NotUtf8 { offset } => {
                eprintln!(
                    "error: stdin line {number} is not UTF-8 (invalid byte at offset {offset}); \
                     line skipped"
                );
                counts.skipped += 1;
                continue;
            }
            Line::Nul { offset } => {
                eprintln!(
                    "error: stdin line {number} holds a NUL byte (offset {offset}); line skipped"
                );
                counts.skipped += 1;
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        match Event::from_json(&text) {
            Ok(event) => {
                batch.numbers.push(number);
                batch.events.push(event);
            }
            Err(err) => {
                let err = err.to_string();
                eprintln!(
                    "error: stdin line {number}: {}; line skipped",
                    escape_controls(&err)
                );
                counts.skipped += 1;
            }
        }
    }
    interrupted
}

/// Events read and not yet handed to the host, with their line numbers.
#[derive(Default)]
struct Batch {
    numbers: Vec<u64>,
    events: Vec<Event>,
}

/// Hands the events read so far to the host in one batch, adding to
/// `counts` how many it accepted and how many it refused (each reported by
/// line number). A first Ctrl-C while it waits for room in a
/// full queue is noted in `interrupted` and the batch still handed over; a
/// second one exits.
async fn send(
    host: &Host,
    batch: &mut Batch,
    interrupts: &mut Interrupts,
    interrupted: &mut bool,
    counts: &mut Counts,
) {
    if batch.events.is_empty() {
        return;
    }
    let numbers = std::mem::take(&mut batch.numbers);
    let events = std::mem::replace(&mut batch.events, Vec::with_capacity(SEND_BATCH));
    let sending = host.send_batch(events);
    tokio::pin!(sending);
    let results = loop {
        tokio::select! {
            results = &mut sending => break results,
            _ = interrupts.recv() => {
                if *interrupted {
                    stop_now(&host.unfinished());
                }
                *interrupted = true;
                announce_finishing(counts.accepted() + numbers.len() as u64);
            }
        }
    };
    for (number, result) in numbers.into_iter().zip(results) {
        match result {
            Ok(()) => counts.from_stdin += 1,
            // The host refuses this event (too large, a full disk): skip
            // it, not the rest of the input.
            Err(err) => {
                let what = match err {
                    EmitError::ShutDown => "the host is shut down".to_owned(),
                    err => err.to_string(),
                };
                eprintln!("error: stdin line {number}: {what}; line skipped");
                counts.skipped += 1;
            }
        }
    }
}

/// Waits until every plugin is done with every event it accepted (handled
/// it, or put it in the dead letters), at most `drain`, then shuts the host
/// down. A Ctrl-C while waiting exits at once if it is the second; the
/// first (when input had ended by itself) only announces that the next one
/// will.
async fn finish(
    host: Host,
    counts: &Counts,
    interrupts: &mut Interrupts,
    mut interrupted: bool,
    drain: Duration,
) -> Vec<PluginSummary> {
    // `Host::shutdown` takes the host, and with it the counts a second
    // Ctrl-C has to report; so wait for the plugins to finish first,
    // reading the counts, and shut down once nothing is left.
    let deadline = Instant::now() + drain;
    let mut left = host.unfinished();
    // Events held in open groups are not waited for: shutting down
    // delivers their groups at once.
    while left.iter().any(|plugin| plugin.unfinished > plugin.held) && Instant::now() < deadline {
        tokio::select! {
            _ = tokio::time::sleep(DRAIN_POLL) => {}
            _ = interrupts.recv() => {
                if interrupted {
                    stop_now(&host.unfinished());
                }
                interrupted = true;
                announce_finishing(counts.accepted());
            }
        }
        left = host.unfinished();
    }
    // What remains is quick (closing queues; a batch hook's last batch is
    // already counted above), but a second Ctrl-C still stops it.
    let shutdown = host.shutdown_within(deadline.saturating_duration_since(Instant::now()));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            summaries = &mut shutdown => return summaries,
            _ = interrupts.recv() => {
                if interrupted {
                    stop_now(&left);
                }
                interrupted = true;
                announce_finishing(counts.accepted());
            }
        }
    }
}

fn announce_finishing(accepted: u64) {
    eprintln!(
        "interrupted: finishing the {accepted} events accepted so far \
         (Ctrl-C again to stop at once)"
    );
}

/// Says what each plugin had not handled yet and exits with code 130,
/// without waiting for anything.
fn stop_now(left: &[Unfinished]) -> ! {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "interrupted again: stopping now");
    for plugin in left {
        let _ = writeln!(
            stderr,
            "{}: {} of {} accepted events not yet counted as handled or failed",
            escape_controls(&plugin.plugin),
            plugin.unfinished,
            plugin.accepted
        );
    }
    let _ = stderr.flush();
    let _ = std::io::stdout().flush();
    std::process::exit(EXIT_INTERRUPTED)
}

/// SIGINT (Ctrl-C) and SIGTERM (a service manager's stop), as a stream: a
/// signal that arrives between two waits is kept for the next one, so a
/// quick second one is not lost.
struct Interrupts {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Interrupts {
            #[cfg(unix)]
            interrupt: signal(SignalKind::interrupt())?,
            #[cfg(unix)]
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next Ctrl-C or SIGTERM. Cancel-safe.
    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            let received = tokio::select! {
                received = self.interrupt.recv() => received,
                received = self.terminate.recv() => received,
            };
            if received.is_none() {
                // The signal driver is gone: no signal will ever arrive.
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
