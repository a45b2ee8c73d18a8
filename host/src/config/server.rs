//! The `[server]` section: where `hookhost run` listens for events over
//! HTTP, and the secrets its endpoints check. Read once, at start: an edit
//! takes effect at the next start.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8787"                     # --listen overrides it
//! listen_any = false                            # true: a non-loopback address may be used
//! token = "${HOOKHOST_TOKEN}"                   # bearer token POST /events asks for
//! dbt_cloud_secret = { secret = "..." }         # the dbt Cloud webhook's secret
//! max_body_kib = 16_384                         # largest request body
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::limits::{clamp, ranged, DEFAULT_MAX_BODY_KIB, MAX_BODY_KIB_RANGE};
use super::{line_and_column, ConfigError};
use crate::settings::{Settings, REDACTED};

/// A value that must never be printed: a token or a signing secret. Its
/// `Debug` shows `<secret>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the code that checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The `[server]` section.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The address `hookhost run` listens on (`127.0.0.1:8787`);
    /// `--listen` overrides it. Left out, and without `--listen`, there is
    /// no server.
    pub listen: Option<String>,
    /// `true` lets the listen address be one that is not loopback
    /// (`0.0.0.0:8787`); `--listen-any` does the same. Off by default: the
    /// events reach only processes on this machine.
    pub listen_any: Option<bool>,
    /// `token` as written (a string, `${NAME}`, or `{ secret = "..." }`).
    #[serde(default, rename = "token")]
    token_written: Option<toml::Value>,
    /// `dbt_cloud_secret` as written.
    #[serde(default, rename = "dbt_cloud_secret")]
    dbt_cloud_secret_written: Option<toml::Value>,
    /// Largest request body, in KiB ([`DEFAULT_MAX_BODY_KIB`], within
    /// [`MAX_BODY_KIB_RANGE`]).
    #[serde(default, deserialize_with = "ranged::max_body_kib")]
    pub max_body_kib: Option<u64>,
    /// `token`, resolved.
    #[serde(skip)]
    token: Option<Secret>,
    /// `dbt_cloud_secret`, resolved.
    #[serde(skip)]
    dbt_cloud_secret: Option<Secret>,
}

impl std::fmt::Debug for ServerConfig {
    /// The secrets are shown as `<secret>` (or `None`), never their values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("listen_any", &self.listen_any)
            .field("token", &self.token)
            .field("dbt_cloud_secret", &self.dbt_cloud_secret)
            .field("max_body_kib", &self.max_body_kib)
            .finish()
    }
}

impl ServerConfig {
    /// The bearer token `POST /events` asks for, if one is configured.
    pub fn token(&self) -> Option<&Secret> {
        self.token.as_ref()
    }

    /// The dbt Cloud webhook's secret, if one is configured.
    pub fn dbt_cloud_secret(&self) -> Option<&Secret> {
        self.dbt_cloud_secret.as_ref()
    }

    /// The largest request body read, in bytes.
    pub fn max_body_bytes(&self) -> usize {
        let kib = clamp(
            self.max_body_kib.unwrap_or(DEFAULT_MAX_BODY_KIB),
            &MAX_BODY_KIB_RANGE,
        );
        usize::try_from(kib.saturating_mul(1 << 10)).unwrap_or(usize::MAX)
    }

    /// Whether a non-loopback listen address is allowed by the config.
    pub fn listen_any(&self) -> bool {
        self.listen_any.unwrap_or(false)
    }

    /// Resolves the secrets (`${NAME}` from the environment, `{ secret =
    /// "..." }` unwrapped) and checks the keys that TOML's types do not;
    /// `text` and `path` place an error at its line.
    pub(super) fn resolve(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        self.resolve_with(text, path, |name| std::env::var(name).ok())
    }

    /// [`ServerConfig::resolve`], reading environment variables through
    /// `env`.
    fn resolve_with(
        &mut self,
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let error = |key: &str, reason: String| ConfigError::Section {
            path: path.to_owned(),
            line: key_line(text, key),
            section: "server".to_owned(),
            reason: format!("{key}: {reason}"),
        };
        if self.listen.as_deref().is_some_and(|l| l.trim().is_empty()) {
            return Err(error(
                "listen",
                "is empty; give an address such as \"127.0.0.1:8787\", or leave the key out"
                    .to_owned(),
            ));
        }
        self.token = resolve_secret(self.token_written.as_ref(), "token", &env)
            .map_err(|reason| error("token", reason))?;
        self.dbt_cloud_secret = resolve_secret(
            self.dbt_cloud_secret_written.as_ref(),
            "dbt_cloud_secret",
            &env,
        )
        .map_err(|reason| error("dbt_cloud_secret", reason))?;
        Ok(())
    }
}

/// A secret key's value, resolved like a plugin setting; `None` when the
/// key is left out. An empty value is refused: a `${NAME}` whose variable
/// is unset or empty must not turn the check off.
fn resolve_secret(
    written: Option<&toml::Value>,
    key: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, String> {
    let Some(value) = written else {
        return Ok(None);
    };
    let shape_ok = match value {
        toml::Value::String(_) => true,
        toml::Value::Table(table) => {
            table.len() == 1 && matches!(table.get("secret"), Some(toml::Value::String(_)))
        }
        _ => false,
    };
    if !shape_ok {
        return Err(
            "must be a string (\"${NAME}\" takes it from the environment) or { secret = \"...\" }"
                .to_owned(),
        );
    }
    let mut table = toml::Table::new();
    table.insert(key.to_owned(), value.clone());
    let settings = Settings::resolve(&table, env).map_err(|(_, why)| why)?;
    let text = settings.text(key).unwrap_or_default();
    if text.is_empty() {
        return Err("is empty; leave the key out for none".to_owned());
    }
    Ok(Some(Secret::new(text)))
}

/// The line of `key` in the `[server]` section of `text`. The section is
/// read again with positions; this runs only when there is an error.
fn key_line(text: &str, key: &str) -> Option<usize> {
    #[derive(Deserialize)]
    struct Positions {
        #[serde(default)]
        server: BTreeMap<String, toml::Spanned<toml::Value>>,
    }
    let positions: Positions = toml::from_str(text).ok()?;
    let value = positions.server.get(key)?;
    Some(line_and_column(text, value.span().start).0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_defaults_ask_for_no_token_and_take_16_mib() {
        let config = Config::parse("", Path::new("c.toml")).unwrap();
        assert!(config.server.token().is_none());
        assert!(config.server.dbt_cloud_secret().is_none());
        assert_eq!(config.server.max_body_bytes(), 16 << 20);
        assert!(!config.server.listen_any());
        assert!(config.server.listen.is_none());
    }

    #[test]
    fn secrets_resolve_from_the_environment_and_never_print() {
        let text = "[server]\nlisten = \"127.0.0.1:0\"\ntoken = \"${SERVER_TOKEN}\"\n\
                    dbt_cloud_secret = { secret = \"dbt-secret\" }\nmax_body_kib = 4\n";
        let mut config: Config = toml::from_str(text).unwrap();
        let env = |name: &str| (name == "SERVER_TOKEN").then(|| "tok-from-env".to_owned());
        config
            .server
            .resolve_with(text, Path::new("c.toml"), env)
            .unwrap();
        assert_eq!(config.server.token().unwrap().expose(), "tok-from-env");
        assert_eq!(
            config.server.dbt_cloud_secret().unwrap().expose(),
            "dbt-secret"
        );
        assert_eq!(config.server.max_body_bytes(), 4096);
        let debug = format!("{config:?}");
        assert!(!debug.contains("tok-from-env"), "{debug}");
        assert!(!debug.contains("dbt-secret"), "{debug}");
        assert!(debug.contains("<secret>"), "{debug}");
    }

    #[test]
    fn an_unset_variable_or_an_empty_secret_names_the_file_and_line() {
        let err = Config::parse(
            "[server]\nlisten = \"127.0.0.1:0\"\ntoken = \"${HOOKHOST_TEST_UNSET_TOKEN}\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("c.toml:3: [server]: token: environment variable"),
            "{err}"
        );
        let err = Config::parse("[server]\ndbt_cloud_secret = \"\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("c.toml:2: [server]: dbt_cloud_secret: is empty"),
            "{err}"
        );
    }

    #[test]
    fn out_of_range_and_unknown_keys_name_their_line() {
        let err = Config::parse("[server]\nmax_body_kib = 0\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("c.toml:2:16: max_body_kib = 0 is out of range: 1 to 1048576 KiB"),
            "{err}"
        );
        let err = Config::parse("[server]\nlisten_on = \"x\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("c.toml:2:1: unknown field `listen_on`"),
            "{err}"
        );
        let err = Config::parse("[server]\ntoken = 5\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("c.toml:2: [server]: token: must be"),
            "{err}"
        );
    }
}
