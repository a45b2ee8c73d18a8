//! Printing outcomes and summaries for people. Plugin names and failure
//! messages have their control characters escaped, so neither can forge a
//! line or a row.

use std::time::Duration;

use hookhost::printable::escape_controls;
use hookhost::{FailureClass, Fate, Outcome, PluginSummary};

/// A duration with a unit that keeps three significant digits or so.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos < 1_000 {
        format!("{nanos} ns")
    } else if nanos < 1_000_000 {
        format!("{:.1} µs", nanos as f64 / 1e3)
    } else if nanos < 1_000_000_000 {
        format!("{:.1} ms", nanos as f64 / 1e6)
    } else {
        format!("{:.2} s", nanos as f64 / 1e9)
    }
}

/// One line for one plugin's outcome.
pub fn outcome_line(plugin: &str, outcome: &Outcome) -> String {
    let plugin = escape_controls(plugin);
    let took = format_duration(outcome.latency);
    match &outcome.result {
        Ok(()) if outcome.fate == Fate::Suppressed => {
            format!("{plugin}: suppressed: a repeat within its dedup_window")
        }
        Ok(()) if outcome.fate == Fate::Grouped => {
            format!("{plugin}: grouped: delivered with its group (group_by) when the group is due")
        }
        Ok(()) => format!("{plugin}: ok ({took})"),
        Err(failure) => {
            let retry = if failure.retryable { ", retryable" } else { "" };
            let next = match outcome.fate {
                Fate::Retrying { after } => {
                    format!("; retry due in {}", format_duration(after))
                }
                Fate::DeadLettered => "; put in the dead letters".to_owned(),
                Fate::Stopped => "; not retried: the host was stopping".to_owned(),
                Fate::Delivered | Fate::Replayed | Fate::Suppressed | Fate::Grouped => {
                    String::new()
                }
            };
            format!(
                "{plugin}: failed [{}{retry}] {} ({took}){next}",
                failure.class,
                escape_controls(&failure.message)
            )
        }
    }
}

/// One line for a plugin whose routing kept the event from it.
pub fn skipped_line(plugin: &str, why: &str) -> String {
    format!(
        "{}: skipped: {}",
        escape_controls(plugin),
        escape_controls(why)
    )
}

/// A table of every plugin's counts and latencies.
pub fn summary_table(summaries: &[PluginSummary]) -> String {
    let names: Vec<_> = summaries.iter().map(|s| escape_controls(&s.name)).collect();
    let width = names
        .iter()
        .map(|name| name.chars().count())
        .chain([6])
        .max()
        .unwrap_or(6);
    let mut out = format!("{:<width$} {:>8} {:>7}", "plugin", "handled", "failed");
    for class in FailureClass::ALL {
        out += &format!(" {:>7}", class.as_str());
    }
    out += &format!(
        " {:>7} {:>12} {:>10} {:>10}  {}\n",
        "retried", "dead-letters", "mean", "p99", "version"
    );
    for (summary, name) in summaries.iter().zip(&names) {
        let stats = &summary.stats;
        out += &format!(
            "{:<width$} {:>8} {:>7}",
            name,
            stats.handled,
            stats.failed_total()
        );
        for class in FailureClass::ALL {
            out += &format!(" {:>7}", stats.failed(class));
        }
        out += &format!(
            " {:>7} {:>12} {:>10} {:>10}  {}\n",
            stats.retried,
            stats.dead_lettered,
            format_duration(stats.mean_latency()),
            format_duration(stats.p99_latency()),
            &summary.version[..summary.version.len().min(12)]
        );
    }
    for (summary, name) in summaries.iter().zip(&names) {
        let stats = &summary.stats;
        if stats.breaker_opened > 0 {
            out += &format!(
                "{name}: circuit breaker opened {} times, closed {} times\n",
                stats.breaker_opened, stats.breaker_closed
            );
        }
        if stats.filtered > 0 {
            out += &format!(
                "{name}: {} events filtered out by its routing\n",
                stats.filtered
            );
        }
        if stats.suppressed > 0 {
            out += &format!(
                "{name}: {} repeats suppressed by its dedup_key\n",
                stats.suppressed
            );
        }
        if stats.digests > 0 {
            out += &format!(
                "{name}: {} events delivered in {} groups (group_by)\n",
                stats.grouped, stats.digests
            );
        }
        if stats.rate_limited > 0 {
            out += &format!(
                "{name}: {} deliveries waited for its rate_limit, {} in all\n",
                stats.rate_limited,
                format_duration(stats.rate_waited)
            );
        }
    }
    out
}
