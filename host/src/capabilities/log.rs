//! `hookhost:hooks/log`, and the one path by which anything a plugin writes
//! reaches the host log ([`PluginOutput`]): its `log` calls here, its
//! stdout and stderr lines from [`super::wasi`]. Always granted, and
//! bounded: each line is masked (secrets), cut (at [`MAX_LINE_BYTES`]),
//! made printable (control characters escaped, so a plugin cannot forge
//! another log line) and counted against the plugin's output limit
//! ([`crate::log_limit::LogLimit::output`]); lines over the limit are
//! dropped and counted.

use std::sync::Arc;
use std::time::Instant;

use crate::bindings::hookhost::hooks::log::{Host, Level};
use crate::log_limit::{Admit, LogLimit, OUTPUT_BYTES_PER_SECOND, OUTPUT_LINES_PER_SECOND};
use crate::printable::{escape_controls, truncate};
use crate::settings::Settings;
use crate::state::PluginState;

/// Longest line of plugin output logged; the rest of a longer one is cut.
/// Far longer than any useful log line, short enough that one line cannot
/// bury a screenful of others.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Where a plugin's output goes: the host log, tagged with the plugin's
/// name, under its output limit.
#[derive(Clone)]
pub(crate) struct PluginOutput {
    plugin: Arc<str>,
    settings: Arc<Settings>,
    limit: Arc<LogLimit>,
}

impl PluginOutput {
    pub(crate) fn new(plugin: Arc<str>, settings: Arc<Settings>, limit: Arc<LogLimit>) -> Self {
        PluginOutput {
            plugin,
            settings,
            limit,
        }
    }

    /// The plugin's secrets, to mask output that is still being collected.
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Logs one line at `level` (from `stream`, `stdout` or `stderr`, or
    /// from the `log` import when `None`), or drops and counts it when the
    /// plugin is over its output limit.
    pub(crate) fn line(&self, level: Level, stream: Option<&'static str>, text: &str) {
        // Masking and escaping look at no more than a line's worth of the
        // text, so even a line that is then dropped costs little; the limit
        // counts the bytes as they would be logged, escapes included.
        let (masked, mut cut) = self.settings.redact_prefix(text, MAX_LINE_BYTES);
        let escaped = escape_controls(&masked);
        let line = truncate(&escaped, MAX_LINE_BYTES);
        cut |= line.len() < escaped.len();
        let suffix = if cut { " […line cut]" } else { "" };
        let plugin = &*self.plugin;
        match self.limit.admit_bytes(Instant::now(), line.len()) {
            Admit::Suppress => return,
            Admit::Log { suppressed } if suppressed > 0 => tracing::warn!(
                target: "hookhost::plugin",
                plugin,
                "{suppressed} lines of this plugin's output were dropped: it wrote more than \
                 {OUTPUT_LINES_PER_SECOND} lines or {OUTPUT_BYTES_PER_SECOND} bytes in a second"
            ),
            Admit::Log { .. } => {}
        }
        // Lines from the `log` import carry only the plugin; stdout and
        // stderr lines also say which stream.
        macro_rules! emit {
            ($level:ident) => {
                match stream {
                    Some(stream) => tracing::$level!(
                        target: "hookhost::plugin", plugin, stream, "{line}{suffix}"
                    ),
                    None => tracing::$level!(target: "hookhost::plugin", plugin, "{line}{suffix}"),
                }
            };
        }
        match level {
            Level::Trace => emit!(trace),
            Level::Debug => emit!(debug),
            Level::Info => emit!(info),
            Level::Warn => emit!(warn),
            Level::Error => emit!(error),
        }
    }
}

impl Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        self.output.line(level, None, &message);
    }
}
