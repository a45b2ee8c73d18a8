//! `hookhost:hooks/config`: a plugin reads its own `[plugins.<name>.settings]`
//! table, resolved when the config was read. Always granted; a plugin never
//! sees another plugin's settings.

use crate::bindings::hookhost::hooks::config::Host;
use crate::state::PluginState;

impl Host for PluginState {
    fn get(&mut self, key: String) -> Option<String> {
        self.settings
            .get(&key)
            .map(|setting| setting.text().to_owned())
    }
}
