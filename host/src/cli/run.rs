//! `hookhost run`: events as JSON lines on stdin until end of input (or
//! Ctrl-C), then a summary per plugin. Changes to the plugins folder are
//! applied while it runs.

use std::process::ExitCode;

use hookhost::Event;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::report::summary_table;
use super::HostArgs;

/// Reads stdin line by line. A malformed line is reported with its number
/// and skipped; everything accepted is handled before the summary prints.
pub async fn run(args: &HostArgs) -> anyhow::Result<ExitCode> {
    let host = args.build_host(true).await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let (mut line_number, mut accepted, mut skipped) = (0u64, 0u64, 0u64);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line?,
            _ = &mut interrupted => {
                eprintln!("interrupted: finishing the {accepted} events accepted so far");
                break;
            }
        };
        let Some(line) = line else { break };
        line_number += 1;
        if line.trim().is_empty() {
            continue;
        }
        match Event::from_json(&line) {
            Ok(event) => {
                host.send(event).await?;
                accepted += 1;
            }
            Err(err) => {
                eprintln!("error: stdin line {line_number}: {err}; line skipped");
                skipped += 1;
            }
        }
    }
    let summaries = host.shutdown().await;
    println!("{accepted} events dispatched, {skipped} malformed lines skipped");
    print!("{}", summary_table(&summaries));
    super::builtin::report_database(args).await;
    Ok(ExitCode::SUCCESS)
}
