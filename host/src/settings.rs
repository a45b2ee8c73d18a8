//! A plugin's settings as it reads them through the `config` import:
//! resolved once when the config is read, with `${NAME}` and
//! `${NAME:-default}` taken from the environment, and secret values kept out
//! of every `Debug` print.
//!
//! ```toml
//! [plugins.slack.settings]
//! channel = "#data-alerts"
//! webhook_url = "${SLACK_WEBHOOK_URL}"           # secret: from the environment
//! username = "${SLACK_USERNAME:-hookhost}"       # with a default
//! signing_key = { secret = "not in the logs" }   # marked secret
//! ```

use std::collections::BTreeMap;
use std::fmt;

/// One resolved setting.
#[derive(Clone, PartialEq, Eq)]
pub struct Setting {
    text: String,
    secret: bool,
}

impl Setting {
    /// The value as the plugin sees it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the value must stay out of logs, errors and reports: it was
    /// marked `{ secret = "..." }` or came from the environment.
    pub fn is_secret(&self) -> bool {
        self.secret
    }
}

impl fmt::Debug for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret {
            f.write_str("<secret>")
        } else {
            write!(f, "{:?}", self.text)
        }
    }
}

/// Every setting of one plugin, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings(BTreeMap<String, Setting>);

impl Settings {
    /// The setting `key`, if set.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.0.get(key)
    }

    /// Resolves a `[plugins.<name>.settings]` table, reading environment
    /// variables through `env`. On failure, returns the key and what is
    /// wrong with it.
    pub fn resolve(
        table: &toml::Table,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, (String, String)> {
        let mut settings = BTreeMap::new();
        for (key, value) in table {
            let setting = resolve_value(value, &env).map_err(|reason| (key.clone(), reason))?;
            settings.insert(key.clone(), setting);
        }
        Ok(Settings(settings))
    }
}

fn resolve_value(
    value: &toml::Value,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Setting, String> {
    match value {
        toml::Value::String(text) => substitute(text, env),
        toml::Value::Table(table) if table.len() == 1 && table.contains_key("secret") => {
            match &table["secret"] {
                toml::Value::String(text) => Ok(Setting {
                    secret: true,
                    ..substitute(text, env)?
                }),
                _ => Err("`secret` must be a string".to_owned()),
            }
        }
        other => Ok(Setting {
            text: plain_text(other),
            secret: false,
        }),
    }
}

/// Replaces `${NAME}` and `${NAME:-default}` in `text` (`$$` is a literal
/// `$`). A value that used the environment is secret.
fn substitute(text: &str, env: &impl Fn(&str) -> Option<String>) -> Result<Setting, String> {
    let mut out = String::with_capacity(text.len());
    let mut secret = false;
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| format!("`${{` without a closing `}}` in {text:?}"))?;
            let (name, default) = match after[..end].split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (&after[..end], None),
            };
            let value = env(name).filter(|v| !v.is_empty());
            match (value, default) {
                (Some(value), _) => {
                    out.push_str(&value);
                    secret = true;
                }
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(format!(
                        "environment variable `{name}` is not set; set it, or give a default \
                         with `${{{name}:-default}}`"
                    ))
                }
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(Setting { text: out, secret })
}

/// Non-string settings as the plugin sees them: scalars in their TOML
/// spelling, tables and arrays as JSON.
fn plain_text(value: &toml::Value) -> String {
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
    use super::*;

    fn resolve(toml: &str) -> Result<Settings, (String, String)> {
        let env = |name: &str| match name {
            "URL" => Some("https://hooks.example/abc".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        Settings::resolve(&toml::from_str(toml).unwrap(), env)
    }

    #[test]
    fn values_render_as_documented() {
        let settings =
            resolve("s = \"info\"\nn = 42\nb = true\nt = { a = 1 }\nl = [1, 2]").unwrap();
        let text = |key| settings.get(key).unwrap().text().to_owned();
        assert_eq!(text("s"), "info");
        assert_eq!(text("n"), "42");
        assert_eq!(text("b"), "true");
        assert_eq!(text("t"), r#"{"a":1}"#);
        assert_eq!(text("l"), "[1,2]");
    }

    #[test]
    fn environment_values_are_substituted_and_secret() {
        let settings = resolve(
            "url = \"${URL}/x\"\nuser = \"${USER_NAME:-hookhost}\"\nempty = \"${EMPTY:-d}\"\nprice = \"$$5\"",
        )
        .unwrap();
        let url = settings.get("url").unwrap();
        assert_eq!(
            (url.text(), url.is_secret()),
            ("https://hooks.example/abc/x", true)
        );
        let user = settings.get("user").unwrap();
        assert_eq!((user.text(), user.is_secret()), ("hookhost", false));
        assert_eq!(settings.get("empty").unwrap().text(), "d");
        assert_eq!(settings.get("price").unwrap().text(), "$5");
        assert!(!format!("{settings:?}").contains("hooks.example"));
    }

    #[test]
    fn a_missing_variable_without_default_names_key_and_variable() {
        let (key, reason) = resolve("token = \"${TOKEN}\"").unwrap_err();
        assert_eq!(key, "token");
        assert!(
            reason.starts_with("environment variable `TOKEN` is not set"),
            "{reason}"
        );
    }

    #[test]
    fn marked_secrets_never_print() {
        let settings = resolve("key = { secret = \"hunter2\" }").unwrap();
        assert_eq!(settings.get("key").unwrap().text(), "hunter2");
        assert_eq!(format!("{settings:?}"), r#"Settings({"key": <secret>})"#);
    }
}
