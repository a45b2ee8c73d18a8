//! `hookhost:hooks/log`: a plugin's log lines go to the host's `tracing`
//! log, tagged with the plugin's name, its secrets masked. Always granted.

use crate::bindings::hookhost::hooks::log::{Host, Level};
use crate::state::PluginState;

/// Longest message kept; longer ones are cut at a character boundary.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

impl Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        let message = self.settings.redact(truncate(&message, MAX_MESSAGE_BYTES));
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(target: "hookhost::plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "hookhost::plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "hookhost::plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "hookhost::plugin", plugin, "{message}"),
            Level::Error => tracing::error!(target: "hookhost::plugin", plugin, "{message}"),
        }
    }
}

/// `text` cut to at most `max` bytes without splitting a character.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
