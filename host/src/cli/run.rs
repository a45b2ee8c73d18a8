//! `hookhost run`: events as JSON lines on stdin until end of input (or
//! Ctrl-C), then a summary per plugin. Changes to the plugins folder are
//! applied while it runs.
//!
//! Stdin is untrusted: lines are read by [`BoundedLines`], so a line longer
//! than the event size limit is skipped without being held whole, and one
//! that is not UTF-8 or holds a NUL byte is skipped by number. The first
//! Ctrl-C stops reading and lets the plugins finish what they accepted; a
//! second one exits at once (code 130), saying how many accepted events
//! each plugin had not handled yet.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use hookhost::printable::escape_controls;
use hookhost::{EmitError, Event, Host, PluginSummary, Unfinished};
use tokio::io::BufReader;

use super::lines::{BoundedLines, Line};
use super::report::summary_table;
use super::HostArgs;

/// Bytes read from stdin at a time. Large enough that a long line costs few
/// reads; small beside the default 4 MiB event limit, which bounds the rest
/// of what one line can make the host hold.
const READ_BUFFER: usize = 64 << 10;

/// How often the plugins' counts are read while waiting for them to finish
/// after input ends: often enough that the wait ends within a blink of the
/// last event, rarely enough to cost nothing beside the events themselves.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Exit code after a second Ctrl-C: 128 + SIGINT, what shells report for a
/// process killed by Ctrl-C.
const EXIT_INTERRUPTED: i32 = 130;

/// Reads stdin line by line. A line that is too long, not UTF-8, holds a
/// NUL byte or is not a valid event is reported with its number and
/// skipped; everything accepted is handled before the summary prints.
pub async fn run(args: &HostArgs) -> anyhow::Result<ExitCode> {
    let config = args.load_config()?;
    let (max_event, limit) = args.event_limit(&config);
    let host = args.build_host(true).await?;
    let mut interrupts = Interrupts::new()?;
    let stdin = BufReader::with_capacity(READ_BUFFER, tokio::io::stdin());
    let mut lines = BoundedLines::new(stdin, max_event);
    let mut accepted = 0u64;
    let mut skipped = 0u64;
    let interrupted = loop {
        let next = tokio::select! {
            next = lines.next_line() => next?,
            _ = interrupts.recv() => break true,
        };
        let Some((number, line)) = next else {
            break false;
        };
        let text = match line {
            Line::Text(text) => text,
            Line::TooLong { length_so_far } => {
                eprintln!(
                    "error: stdin line {number} is longer than the event size limit of \
                     {max_event} bytes ({limit}): {length_so_far} bytes so far; \
                     line skipped to its end without being kept"
                );
                skipped += 1;
                continue;
            }
            Line::NotUtf8 { offset } => {
                eprintln!(
                    "error: stdin line {number} is not UTF-8 (invalid byte at offset {offset}); \
                     line skipped"
                );
                skipped += 1;
                continue;
            }
            Line::Nul { offset } => {
                eprintln!(
                    "error: stdin line {number} holds a NUL byte (offset {offset}); line skipped"
                );
                skipped += 1;
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        match Event::from_json(&text) {
            Ok(event) => {
                // A send waiting for room in a full queue must not make
                // Ctrl-C wait too; an event interrupted here is not
                // counted, though plugins before the full one may have it.
                let sent = tokio::select! {
                    sent = host.send(event) => sent,
                    _ = interrupts.recv() => break true,
                };
                match sent {
                    Ok(()) => accepted += 1,
                    Err(EmitError::ShutDown) => return Err(EmitError::ShutDown.into()),
                    // The host refuses this event (too large as it counts
                    // events, or for a plugin's queue): skip it, not the
                    // rest of the input.
                    Err(err) => {
                        eprintln!("error: stdin line {number}: {err}; line skipped");
                        skipped += 1;
                    }
                }
            }
            Err(err) => {
                let err = err.to_string();
                eprintln!(
                    "error: stdin line {number}: {}; line skipped",
                    escape_controls(&err)
                );
                skipped += 1;
            }
        }
    };
    if interrupted {
        announce_finishing(accepted);
    }
    let summaries = finish(host, accepted, &mut interrupts, interrupted).await;
    println!("{accepted} events dispatched, {skipped} malformed lines skipped");
    print!("{}", summary_table(&summaries));
    super::builtin::report_database(args).await;
    Ok(ExitCode::SUCCESS)
}

/// Waits until every plugin has handled or failed every event it accepted,
/// then shuts the host down. A Ctrl-C while waiting exits at once if it is
/// the second; the first (when input had ended by itself) only announces
/// that the next one will.
async fn finish(
    host: Host,
    accepted: u64,
    interrupts: &mut Interrupts,
    mut interrupted: bool,
) -> Vec<PluginSummary> {
    // `Host::shutdown` takes the host, and with it the counts a second
    // Ctrl-C has to report; so wait for the plugins to finish first,
    // reading the counts, and shut down once nothing is left.
    let mut left = host.unfinished();
    while left.iter().any(|plugin| plugin.unfinished > 0) {
        tokio::select! {
            _ = tokio::time::sleep(DRAIN_POLL) => {}
            _ = interrupts.recv() => {
                if interrupted {
                    stop_now(&host.unfinished());
                }
                interrupted = true;
                announce_finishing(accepted);
            }
        }
        left = host.unfinished();
    }
    // What remains is quick (closing queues; a batch hook's last batch is
    // already counted above), but a second Ctrl-C still stops it.
    let shutdown = host.shutdown();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            summaries = &mut shutdown => return summaries,
            _ = interrupts.recv() => {
                if interrupted {
                    stop_now(&left);
                }
                interrupted = true;
                announce_finishing(accepted);
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

/// SIGINT (Ctrl-C), as a stream: a signal that arrives between two waits
/// is kept for the next one, so a quick second Ctrl-C is not lost.
struct Interrupts {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn new() -> std::io::Result<Self> {
        Ok(Interrupts {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?,
        })
    }

    /// Waits for the next Ctrl-C. Cancel-safe.
    async fn recv(&mut self) {
        #[cfg(unix)]
        if self.signal.recv().await.is_none() {
            // The signal driver is gone: no Ctrl-C will ever arrive.
            std::future::pending::<()>().await;
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
