//! `hookhost emit JSON`: one event, each plugin's outcome.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use hookhost::Event;

use super::report::{outcome_line, skipped_line};
use super::HostArgs;

/// Sends one event and prints one line per plugin. Fails (exit 1) when any
/// plugin failed, or when the event is larger than the event size limit
/// (`[engine] max_event_kib`), which `hookhost run` applies to each line.
pub async fn emit(args: &HostArgs, json: &str) -> anyhow::Result<ExitCode> {
    let config = args.load_config()?;
    let (max, limit) = args.event_limit(&config);
    if json.len() > max {
        anyhow::bail!(
            "the event argument is {} bytes, more than the event size limit of {max} bytes ({limit})",
            json.len()
        );
    }
    let event = Event::from_json(json).context("the event argument is not a valid event")?;
    let host = args.build_host(false).await?;
    let report = host.emit_with_report(event)?.wait().await;
    // One delivery per plugin: a failure that would be retried is reported
    // as such, not waited for.
    host.shutdown_within(Duration::ZERO).await;
    let mut all_ok = true;
    let mut lines: Vec<(&str, String)> = report
        .skipped
        .iter()
        .map(|(plugin, why)| (plugin.as_str(), skipped_line(plugin, why)))
        .collect();
    for (plugin, outcome) in &report.outcomes {
        all_ok &= outcome.result.is_ok();
        lines.push((plugin, outcome_line(plugin, outcome)));
    }
    lines.sort_by(|a, b| a.0.cmp(b.0));
    for (_, line) in lines {
        println!("{line}");
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
