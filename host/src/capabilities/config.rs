//! `hookhost:hooks/config`: a plugin reads its own `[plugins.<name>.settings]`
//! table. Always granted; a plugin never sees another plugin's settings.

use crate::bindings::hookhost::hooks::config::Host;
use crate::state::PluginState;

impl Host for PluginState {
    fn get(&mut self, key: String) -> Option<String> {
        self.settings.get(&key).map(setting_text)
    }
}

/// A setting as the plugin sees it: strings bare, other scalars in their
/// TOML spelling, tables and arrays as JSON.
fn setting_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(x) => x.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) | toml::Value::Table(_) => {
            serde_json::to_string(value).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::setting_text;

    #[test]
    fn settings_render_as_documented() {
        let table: toml::Table =
            toml::from_str("s = \"info\"\nn = 42\nb = true\nt = { a = 1 }\nl = [1, 2]").unwrap();
        assert_eq!(setting_text(&table["s"]), "info");
        assert_eq!(setting_text(&table["n"]), "42");
        assert_eq!(setting_text(&table["b"]), "true");
        assert_eq!(setting_text(&table["t"]), r#"{"a":1}"#);
        assert_eq!(setting_text(&table["l"]), "[1,2]");
    }
}
