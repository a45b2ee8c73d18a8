//! `hookhost dlq`: list, show, replay and purge the dead letters in a data
//! directory's store.
//!
//! `list`, `show` and `purge` never create a store: without the file there
//! are no dead letters. Text from the store (plugin names, event ids,
//! errors, the event) has its control characters escaped.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use hookhost::delivery::{dead_letters_file, default_data_dir};
use hookhost::delivery::{DeadLetter, DeadLetters, ReplayReport};
use hookhost::printable::escape_controls;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::HostArgs;

/// The widest a plugin name, event type or event id is printed in the
/// table.
const NAME_WIDTH: usize = 40;

/// The widest the last error is printed in the table.
const ERROR_WIDTH: usize = 60;

/// The dead-letter subcommands.
#[derive(Subcommand)]
pub(super) enum DlqCommand {
    /// Print a table of the dead letters, oldest first.
    List {
        #[command(flatten)]
        data: DataDirArg,
        /// Only this plugin's.
        #[arg(long, value_name = "NAME")]
        plugin: Option<String>,
    },
    /// Print one dead letter in full, with its event.
    Show {
        #[command(flatten)]
        data: DataDirArg,
        /// Its id, as `list` prints it.
        id: i64,
    },
    /// Deliver the dead letters again through the plugins as loaded and
    /// configured now: each that succeeds is removed, each that fails again
    /// is kept with the new failure.
    Replay {
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        host: HostArgs,
        /// Only this plugin's.
        #[arg(long, value_name = "NAME")]
        plugin: Option<String>,
    },
    /// Remove the dead letters without delivering them.
    Purge {
        #[command(flatten)]
        data: DataDirArg,
        /// Only this plugin's.
        #[arg(long, value_name = "NAME")]
        plugin: Option<String>,
    },
}

/// Where the data directory is.
#[derive(Args)]
pub(super) struct DataDirArg {
    /// The data directory, which holds dead-letters.sqlite [default:
    /// $XDG_DATA_HOME/hookhost or ~/.local/share/hookhost].
    #[arg(long, value_name = "DIR", env = "HOOKHOST_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl DataDirArg {
    /// The directory given, or the default one.
    pub(super) fn dir(&self) -> anyhow::Result<PathBuf> {
        match &self.data_dir {
            Some(dir) => Ok(dir.clone()),
            None => default_data_dir().context(
                "neither XDG_DATA_HOME nor HOME is set, so there is no default data \
                 directory; pass --data-dir DIR",
            ),
        }
    }

    /// The store's file.
    fn store_file(&self) -> anyhow::Result<PathBuf> {
        Ok(dead_letters_file(&self.dir()?))
    }
}

/// Runs one `dlq` subcommand.
pub(super) async fn dlq(command: DlqCommand) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::List { data, plugin } => list(&data.store_file()?, plugin.as_deref()).await,
        DlqCommand::Show { data, id } => show(&data.store_file()?, id).await,
        DlqCommand::Purge { data, plugin } => purge(&data.store_file()?, plugin.as_deref()).await,
        DlqCommand::Replay { data, host, plugin } => {
            replay(&data.dir()?, &host, plugin.as_deref()).await
        }
    }
}

/// The store in `file`, or `None` when there is no such file (which is not
/// created).
async fn open_existing(file: &Path) -> anyhow::Result<Option<DeadLetters>> {
    match std::fs::symlink_metadata(file) {
        Ok(_) => Ok(Some(DeadLetters::open(file).await?)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| {
            format!(
                "cannot read the dead-letter store {}",
                hookhost::printable::path(file)
            )
        }),
    }
}

/// `N dead letters` (or `1 dead letter`), `of plugin P` when filtered.
fn how_many(count: u64, plugin: Option<&str>) -> String {
    let noun = if count == 1 {
        "dead letter"
    } else {
        "dead letters"
    };
    match plugin {
        Some(plugin) => format!("{count} {noun} of plugin {}", escape_controls(plugin)),
        None => format!("{count} {noun}"),
    }
}

fn no_store(file: &Path, plugin: Option<&str>) -> String {
    format!(
        "{} (there is no store at {})",
        how_many(0, plugin),
        hookhost::printable::path(file)
    )
}

async fn list(file: &Path, plugin: Option<&str>) -> anyhow::Result<ExitCode> {
    let Some(store) = open_existing(file).await? else {
        println!("{}", no_store(file, plugin));
        return Ok(ExitCode::SUCCESS);
    };
    let entries = store.list(plugin).await?;
    store.close().await;
    if !entries.is_empty() {
        print!("{}", table(&entries));
    }
    println!(
        "{} in {}",
        how_many(entries.len() as u64, plugin),
        store.location()
    );
    Ok(ExitCode::SUCCESS)
}

/// The `list` table: a header and one row per entry, columns padded to
/// their widest cell.
fn table(entries: &[DeadLetter]) -> String {
    let header = [
        "id",
        "plugin",
        "event type",
        "event id",
        "class",
        "attempts",
        "last failure (UTC)",
        "last error",
    ];
    let rows: Vec<[String; 8]> = entries
        .iter()
        .map(|entry| {
            [
                entry.id.to_string(),
                cut(&entry.plugin, NAME_WIDTH),
                cut(&entry.event_type, NAME_WIDTH),
                cut(&entry.event_id, NAME_WIDTH),
                cut(&entry.class, NAME_WIDTH),
                entry.attempts.to_string(),
                utc(&entry.last_failed_at),
                cut(&entry.last_error, ERROR_WIDTH),
            ]
        })
        .collect();
    let mut widths = header.map(|title| title.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut line = String::new();
        for (column, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if column + 1 == cells.len() {
                line += cell;
            } else if column == 0 || column == 5 {
                line += &format!("{cell:>width$}  ");
            } else {
                line += &format!("{cell:<width$}  ");
            }
        }
        line.push('\n');
        line
    };
    let mut out = line(&header);
    for row in &rows {
        out += &line(&row.each_ref().map(String::as_str));
    }
    out
}

/// `text` with control characters escaped, cut to `max` characters with
/// `…` when longer.
fn cut(text: &str, max: usize) -> String {
    let escaped = escape_controls(text);
    if escaped.chars().count() <= max {
        return escaped.into_owned();
    }
    let mut cut: String = escaped.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// An RFC 3339 time as `YYYY-MM-DD HH:MM:SS` in UTC; any other text as it
/// is (escaped).
fn utc(time: &str) -> String {
    match DateTime::parse_from_rfc3339(time) {
        Ok(time) => time
            .with_timezone(&Utc)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => escape_controls(time).into_owned(),
    }
}

async fn show(file: &Path, id: i64) -> anyhow::Result<ExitCode> {
    let entry = match open_existing(file).await? {
        Some(store) => {
            let entry = store.get(id).await?;
            store.close().await;
            entry
        }
        None => None,
    };
    let Some(entry) = entry else {
        anyhow::bail!(
            "there is no dead letter {id} in {}; `hookhost dlq list` prints their ids",
            hookhost::printable::path(file)
        );
    };
    print!("{}", details(&entry));
    Ok(ExitCode::SUCCESS)
}

/// Every field of `entry`, one per line, then its event as indented JSON.
fn details(entry: &DeadLetter) -> String {
    let fields = [
        ("id", entry.id.to_string()),
        ("plugin", entry.plugin.clone()),
        ("plugin version", entry.plugin_version.clone()),
        ("event type", entry.event_type.clone()),
        ("event id", entry.event_id.clone()),
        ("class", entry.class.clone()),
        ("attempts", entry.attempts.to_string()),
        ("first failed at", entry.first_failed_at.clone()),
        ("last failed at", entry.last_failed_at.clone()),
        ("last error", entry.last_error.clone()),
    ];
    let mut out = String::new();
    for (name, value) in fields {
        out += &format!("{:<16} {}\n", format!("{name}:"), escape_controls(&value));
    }
    out += "event:\n";
    let event = match serde_json::from_str::<serde_json::Value>(&entry.event_json) {
        Ok(json) => {
            serde_json::to_string_pretty(&json).unwrap_or_else(|_| entry.event_json.clone())
        }
        Err(_) => entry.event_json.clone(),
    };
    // Pretty JSON has newlines only between its tokens; each line is
    // escaped on its own so that those stay and any other control
    // character (U+2028 in a string, say) does not.
    for line in event.lines() {
        out += &escape_controls(line);
        out.push('\n');
    }
    out
}

async fn purge(file: &Path, plugin: Option<&str>) -> anyhow::Result<ExitCode> {
    let Some(store) = open_existing(file).await? else {
        println!("removed {}", no_store(file, plugin));
        return Ok(ExitCode::SUCCESS);
    };
    let removed = store.purge(plugin).await?;
    store.close().await;
    println!(
        "removed {} from {}",
        how_many(removed, plugin),
        store.location()
    );
    Ok(ExitCode::SUCCESS)
}

/// Replays through a host built as `run` builds it, over the data
/// directory `data_dir`. Fails (exit 1) when an entry was kept.
async fn replay(
    data_dir: &Path,
    host: &HostArgs,
    plugin: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let file = dead_letters_file(data_dir);
    match open_existing(&file).await? {
        Some(store) => store.close().await,
        None => {
            println!("replayed {}", no_store(&file, plugin));
            return Ok(ExitCode::SUCCESS);
        }
    }
    let bar = progress_bar();
    let report = replay_through_host(data_dir, host, plugin, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await;
    bar.finish_and_clear();
    let report = report?;
    println!("{}", replay_line(&report));
    Ok(if report.failed_again == 0 && report.no_plugin == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The line that says what a replay did.
fn replay_line(report: &ReplayReport) -> String {
    format!(
        "replayed {}: {} delivered and removed, {} failed again (kept), \
         {} for plugins not loaded (kept)",
        report.total(),
        report.delivered,
        report.failed_again,
        report.no_plugin
    )
}

/// A progress bar on stderr when it is a terminal, drawn nowhere otherwise.
fn progress_bar() -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(0), target);
    if let Ok(style) =
        ProgressStyle::with_template("replaying {bar:40} {pos}/{len} ({per_sec}, {eta} left)")
    {
        bar.set_style(style);
    }
    bar
}

/// Builds the host from `host` with `data_dir` as its data directory and
/// replays its dead letters (only `plugin`'s, if given).
///
/// Builds the host over `data_dir` (its write-ahead log too: a `hookhost
/// run` using the folder must be stopped first) and replays through it.
async fn replay_through_host(
    data_dir: &Path,
    host: &HostArgs,
    plugin: Option<&str>,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<ReplayReport> {
    let host = host.build_host_with(false, Some(data_dir)).await?;
    let report = host.replay_dead_letters(plugin, progress).await;
    host.shutdown().await;
    Ok(report?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, last_error: &str) -> DeadLetter {
        DeadLetter {
            id,
            plugin: "webhook".to_owned(),
            plugin_version: "3f2a".to_owned(),
            event_id: "e\n1".to_owned(),
            event_type: "ProfilingStarted".to_owned(),
            event_json:
                r#"{"event_id": "e\n1", "event_type": "ProfilingStarted", "x": "a\u2028b"}"#
                    .to_owned(),
            class: "error".to_owned(),
            attempts: 12,
            first_failed_at: "2026-11-27T05:13:38.123Z".to_owned(),
            last_failed_at: "2026-11-27T06:13:38.999+01:00".to_owned(),
            last_error: last_error.to_owned(),
        }
    }

    #[test]
    fn the_table_escapes_cuts_and_aligns() {
        let long = "x".repeat(100);
        let table = table(&[entry(7, "HTTP 400\nforged"), entry(1234, &long)]);
        let lines: Vec<_> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("  id  plugin   event type        event id  class  attempts  last failure (UTC)   last error"), "{table}");
        assert!(lines[1].starts_with("   7  webhook  ProfilingStarted  e\\u{a}1   error        12  2026-11-27 05:13:38  HTTP 400\\u{a}forged"), "{table}");
        let last_error = lines[2].rsplit("  ").next().unwrap();
        assert_eq!(last_error, format!("{}…", "x".repeat(59)));
    }

    #[test]
    fn details_print_every_field_and_the_event_indented() {
        let details = details(&entry(7, "bad\rrequest"));
        assert!(details.contains("plugin version:  3f2a\n"), "{details}");
        assert!(details.contains("event id:        e\\u{a}1\n"), "{details}");
        assert!(
            details.contains("last error:      bad\\u{d}request\n"),
            "{details}"
        );
        assert!(
            details.ends_with(
                "event:\n{\n  \"event_id\": \"e\\n1\",\n  \"event_type\": \"ProfilingStarted\",\n  \"x\": \"a\\u{2028}b\"\n}\n"
            ),
            "{details}"
        );
    }

    #[test]
    fn the_replay_line_counts_each_fate() {
        let report = ReplayReport {
            delivered: 3,
            failed_again: 1,
            no_plugin: 2,
        };
        assert_eq!(
            replay_line(&report),
            "replayed 6: 3 delivered and removed, 1 failed again (kept), 2 for plugins not loaded (kept)"
        );
    }
}
