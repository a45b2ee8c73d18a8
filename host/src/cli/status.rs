//! `hookhost status`: asks a running `hookhost run --listen` for `GET
//! /plugins` and prints a table: one row per plugin, then its rejection
//! and its last failures, if any.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use hookhost::observe::status::{PluginState, PluginStatus, PluginsReport};

/// Where the address of `hookhost run --listen` is asked for when none is
/// given: the address the README's examples and the systemd unit use.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8787";

/// How long the command waits for the answer: the report is built from
/// counts in memory, so a host that takes longer is stuck or not there.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Most characters of a failure message or rejection printed in the table.
const MESSAGE_CHARS: usize = 160;

/// Where the running host is.
#[derive(Args)]
pub struct StatusArgs {
    /// The base URL of `hookhost run --listen`.
    #[arg(long, value_name = "URL", default_value = DEFAULT_URL)]
    url: String,
}

/// Prints the table; exits 1 if a plugin is rejected or cooling down.
pub async fn status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let base = args.url.trim_end_matches('/');
    let url = format!("{base}/plugins");
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .context("cannot set up the HTTP client")?;
    let response = client.get(&url).send().await.with_context(|| {
        format!("cannot reach hookhost at {url}; is `hookhost run --listen` running there?")
    })?;
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("cannot read the answer of {url}"))?;
    if !status.is_success() {
        anyhow::bail!("{url} answered {status}: {}", cut(&body, MESSAGE_CHARS));
    }
    let report: PluginsReport = serde_json::from_str(&body)
        .with_context(|| format!("{url} did not answer with a plugins report"))?;
    print!("{}", table(&report));
    let unwell = report
        .plugins
        .iter()
        .any(|p| matches!(p.state, PluginState::Rejected | PluginState::CoolingDown));
    Ok(if unwell {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The report as a table, with a line under each plugin for its rejection
/// and each of its last failures.
fn table(report: &PluginsReport) -> String {
    let header = [
        "plugin", "state", "version", "handled", "failed", "retried", "dead", "queued", "fuel",
        "memory", "timeout", "grants",
    ];
    let rows: Vec<[String; 12]> = report.plugins.iter().map(row).collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    line(&mut out, &header.map(str::to_owned), &widths);
    for (plugin, row) in report.plugins.iter().zip(&rows) {
        line(&mut out, row, &widths);
        if let Some(reason) = &plugin.rejection {
            let _ = writeln!(out, "    rejected: {}", cut(reason, MESSAGE_CHARS));
        }
        for failure in &plugin.last_failures {
            let retry = if failure.retryable {
                " (retryable)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    failed {} {}{retry}: {}",
                failure.at,
                failure.class,
                cut(&failure.message, MESSAGE_CHARS)
            );
        }
    }
    if report.plugins.is_empty() {
        out.push_str("no plugin loaded\n");
    }
    out
}

fn row(plugin: &PluginStatus) -> [String; 12] {
    let counts = &plugin.counts;
    let limits = &plugin.limits;
    let grants = &plugin.grants;
    let mut granted: Vec<String> = Vec::new();
    granted.extend(grants.http.iter().map(|d| format!("http:{d}")));
    granted.extend(grants.databases.iter().map(|d| format!("sql:{d}")));
    granted.extend(grants.mailers.iter().map(|m| format!("email:{m}")));
    if grants.wall_clock {
        granted.push("clock".to_owned());
    }
    let version = plugin
        .version
        .as_deref()
        .map_or("-".to_owned(), |v| v.chars().take(12).collect());
    [
        plugin.name.clone(),
        plugin.state.as_str().to_owned(),
        version,
        counts.handled.to_string(),
        counts.failed.to_string(),
        counts.retried.to_string(),
        counts.dead_lettered.to_string(),
        counts.queued.to_string(),
        limits.fuel.to_string(),
        format!("{} MiB", limits.memory_bytes >> 20),
        format!("{} ms", limits.timeout_ms),
        if granted.is_empty() {
            "-".to_owned()
        } else {
            granted.join(",")
        },
    ]
}

fn line(out: &mut String, cells: &[String; 12], widths: &[usize; 12]) {
    let mut text = String::new();
    for (cell, width) in cells.iter().zip(widths) {
        let _ = write!(text, "{cell:<width$}  ");
    }
    out.push_str(text.trim_end());
    out.push('\n');
}

/// `text` on one line, cut to `max` characters.
fn cut(text: &str, max: usize) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    match one_line.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &one_line[..end]),
        None => one_line,
    }
}
