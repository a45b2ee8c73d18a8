//! A plugin's settings as it reads them through the `config` import:
//! resolved once when the config is read, with `${NAME}` and
//! `${NAME:-default}` taken from the environment, and secret values kept out
//! of every `Debug` print and masked in everything the plugin gets logged
//! ([`Settings::redact`]).
//!
//! ```toml
//! [plugins.slack.settings]
//! channel = "#data-alerts"
//! webhook_url = "${SLACK_WEBHOOK_URL}"           # secret: from the environment
//! username = "${SLACK_USERNAME:-hookhost}"       # with a default
//! signing_key = { secret = "not in the logs" }   # marked secret
//! headers = { authorization = { secret = "Bearer abc" } }  # nested, too
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::printable::truncate;

/// What a secret value is replaced with in logs and errors.
pub const REDACTED: &str = "<secret>";

/// Secret parts shorter than this are not masked: masking every `25` or
/// `on` in the log would hide ordinary text and protect nothing.
const MIN_MASKED_BYTES: usize = 4;

/// One resolved setting.
#[derive(Clone, PartialEq, Eq)]
pub struct Setting {
    text: String,
    /// The secret parts of `text`: values taken from the environment and
    /// values marked `{ secret = "..." }`.
    secrets: Vec<String>,
}

impl Setting {
    /// The value as the plugin sees it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the value holds anything that must stay out of logs, errors
    /// and reports: a part marked `{ secret = "..." }` or taken from the
    /// environment.
    pub fn is_secret(&self) -> bool {
        !self.secrets.is_empty()
    }
}

impl fmt::Debug for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_secret() {
            f.write_str(REDACTED)
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

    /// The text of setting `key`, if set.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(Setting::text)
    }

    /// Makes the whole value of setting `key`, if set, secret.
    pub fn mark_secret(&mut self, key: &str) {
        if let Some(setting) = self.0.get_mut(key) {
            setting.secrets.push(setting.text.clone());
        }
    }

    /// The keys that are set.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// `text` with every secret part of every setting replaced by
    /// `<secret>`. Applied to whatever a plugin gets written to the host log
    /// (its log lines, its output, its errors), so a hook that prints a
    /// secret it was given does not leak it.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = Cow::Borrowed(text);
        for secret in self.secrets() {
            if text.contains(secret) {
                text = Cow::Owned(text.replace(secret, REDACTED));
            }
        }
        text
    }

    /// At most `max` bytes of `text` with its secrets masked, and whether
    /// any of it was cut. Only the start of `text` that can reach the
    /// result is scanned (`max` plus the longest secret), so masking a huge
    /// line costs no more than a short one; a secret that straddles the
    /// cut is masked whole, not cut into halves too short to recognise.
    pub(crate) fn redact_prefix<'a>(&self, text: &'a str, max: usize) -> (Cow<'a, str>, bool) {
        let longest = self.longest_secret();
        let scanned = truncate(text, max.saturating_add(longest));
        let masked = self.redact(scanned);
        let cut = scanned.len() < text.len() || masked.len() > max;
        // When the scan stopped short of the end, its last bytes may be the
        // start of a secret it could not see whole. They follow the last
        // masked secret and lie within the last `longest - 1` bytes; masking
        // shrinks the text before them, so the cut alone could keep them.
        let usable = if scanned.len() < text.len() {
            let unseen_from = masked.len().saturating_sub(longest.saturating_sub(1));
            let last_masked = masked.rfind(REDACTED).map_or(0, |at| at + REDACTED.len());
            unseen_from.max(last_masked)
        } else {
            masked.len()
        };
        let keep = max.min(usable);
        let kept = match masked {
            Cow::Borrowed(masked) => Cow::Borrowed(truncate(masked, keep)),
            Cow::Owned(masked) => Cow::Owned(truncate(&masked, keep).to_owned()),
        };
        (kept, cut)
    }

    /// The secret parts [`Settings::redact`] masks.
    /// Longest first, so that a secret that holds a shorter one (`admin`
    /// inside `admin:hunter2`) is masked whole, not around the shorter one.
    pub(crate) fn secrets(&self) -> impl Iterator<Item = &str> {
        let mut secrets: Vec<&str> = self
            .0
            .values()
            .flat_map(|setting| &setting.secrets)
            .map(String::as_str)
            .filter(|secret| secret.len() >= MIN_MASKED_BYTES)
            .collect();
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets.into_iter()
    }

    /// The length in bytes of the longest secret part that is masked (0
    /// when there is none): how much of a line still being written may be
    /// the start of one.
    pub(crate) fn longest_secret(&self) -> usize {
        self.secrets().map(str::len).max().unwrap_or(0)
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
            let mut secrets = Vec::new();
            let resolved =
                resolve_value(value, &env, &mut secrets).map_err(|reason| (key.clone(), reason))?;
            let text = match resolved {
                Value::String(text) => text,
                Value::Array(_) | Value::Object(_) => resolved.to_string(),
                _ => scalar_text(value),
            };
            settings.insert(key.clone(), Setting { text, secrets });
        }
        Ok(Settings(settings))
    }
}

/// `value` with environment references substituted and secret markers
/// unwrapped, anywhere inside it; the secret parts are added to `secrets`.
fn resolve_value(
    value: &toml::Value,
    env: &impl Fn(&str) -> Option<String>,
    secrets: &mut Vec<String>,
) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(text) => Value::String(substitute(text, env, secrets)?),
        toml::Value::Table(table) if table.len() == 1 && table.contains_key("secret") => {
            let toml::Value::String(text) = &table["secret"] else {
                return Err("`secret` must be a string".to_owned());
            };
            let text = substitute(text, env, secrets)?;
            secrets.push(text.clone());
            Value::String(text)
        }
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(key, value)| Ok((key.clone(), resolve_value(value, env, secrets)?)))
                .collect::<Result<_, String>>()?,
        ),
        toml::Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| resolve_value(item, env, secrets))
                .collect::<Result<_, String>>()?,
        ),
        toml::Value::Datetime(datetime) => Value::String(datetime.to_string()),
        other => serde_json::to_value(other).unwrap_or(Value::Null),
    })
}

/// A number or boolean setting in its TOML spelling (`42`, `1.5`, `true`).
fn scalar_text(value: &toml::Value) -> String {
    match value {
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(x) => x.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// Replaces `${NAME}` and `${NAME:-default}` in `text` (`$$` is a literal
/// `$`). Each value taken from the environment is added to `secrets`.
fn substitute(
    text: &str,
    env: &impl Fn(&str) -> Option<String>,
    secrets: &mut Vec<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
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
                    secrets.push(value);
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
    Ok(out)
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

    #[test]
    fn redact_masks_the_secret_parts_only() {
        let settings = resolve(
            "key = { secret = \"hunter2\" }\nurl = \"${URL}/x\"\nname = \"bob\"\n\
             headers = { authorization = { secret = \"Bearer s3cr3t\" } }",
        )
        .unwrap();
        assert_eq!(
            settings.redact("bob sent hunter2 to https://hooks.example/abc/x with Bearer s3cr3t"),
            "bob sent <secret> to <secret>/x with <secret>"
        );
        assert!(matches!(settings.redact("nothing here"), Cow::Borrowed(_)));
        let headers = settings.get("headers").unwrap();
        assert_eq!(headers.text(), r#"{"authorization":"Bearer s3cr3t"}"#);
        assert!(headers.is_secret());
    }

    #[test]
    fn a_secret_holding_a_shorter_one_is_masked_whole() {
        let settings =
            resolve("a = { secret = \"admin\" }\nb = { secret = \"admin:hunter2\" }").unwrap();
        assert_eq!(settings.redact("login admin:hunter2"), "login <secret>");
    }

    #[test]
    fn a_cut_keeps_no_part_of_a_secret() {
        let password = "pw-0123456789-abcdefghij";
        let settings = resolve(&format!("p = {{ secret = \"{password}\" }}")).unwrap();
        // Masking shrinks the text, so the scanned part's last bytes (the
        // start of a password the scan could not see whole) would land in
        // what is kept.
        let text = password.repeat(1000);
        let (kept, cut) = settings.redact_prefix(&text, 1024);
        assert!(cut);
        assert!(kept.len() <= 1024);
        for piece in password.as_bytes().windows(4) {
            let piece = std::str::from_utf8(piece).unwrap();
            assert!(!kept.contains(piece), "`{piece}` kept: {kept}");
        }
        let (short, cut) = settings.redact_prefix("no secrets here", 1024);
        assert_eq!((short.as_ref(), cut), ("no secrets here", false));
    }
}
