//! The built-in plugins, compiled by `build.rs` and embedded in the binary,
//! used when `--plugins` is not given, and the configuration they run with:
//! the `logging` hook, and the `sql` hook persisting every event to an
//! embedded SQLite file unless the configuration names another database.

use std::path::{Path, PathBuf};

use anyhow::Context;
use hookhost::Config;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// Name and component bytes of each built-in plugin: the ones that need no
/// outside service (`slack`, `webhook` and `email` need one and are only
/// loaded from a plugins folder).
pub const PLUGINS: &[(&str, &[u8])] = &[
    (
        "logging",
        include_bytes!(concat!(env!("HOOKHOST_GUEST_DIR"), "/plugins/logging.wasm")),
    ),
    (
        "sql",
        include_bytes!(concat!(env!("HOOKHOST_GUEST_DIR"), "/plugins/sql.wasm")),
    ),
];

/// The `[databases.<name>]` section the `sql` hook writes to by default.
const DATABASE: &str = "events";

/// The table the `sql` hook writes to unless its `table` setting says
/// otherwise (the hook's own default).
const DEFAULT_TABLE: &str = "hookhost_events";

/// Where the `sql` hook's embedded SQLite file is when it was added here.
struct Persisted {
    /// The SQLite file.
    path: PathBuf,
    /// The table the rows go to.
    table: String,
}

/// The configuration for the built-in plugins: the file at `path` (or
/// none), plus, when it grants the `sql` hook no database and has no
/// `[databases.events]` section, an embedded SQLite file in the user's data
/// folder granted to it (see [`default_database`]), which is logged.
pub fn config(path: Option<&Path>) -> anyhow::Result<Config> {
    let (config, persisted) = plan(path)?;
    if let Some(persisted) = persisted {
        tracing::info!(
            path = %persisted.path.display(),
            table = %persisted.table,
            "the sql hook persists events to an embedded SQLite file"
        );
    }
    Ok(config)
}

/// [`config`], and the embedded SQLite file when it added one.
fn plan(path: Option<&Path>) -> anyhow::Result<(Config, Option<Persisted>)> {
    // Read and check the file as written first, so its errors name its
    // own lines.
    let (mut table, name) = match path {
        Some(path) => {
            Config::from_file(path)?;
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            (text.parse::<toml::Table>()?, path.to_owned())
        }
        None => (toml::Table::new(), PathBuf::from("<built-in defaults>")),
    };
    let granted = table
        .get("plugins")
        .and_then(|p| p.get("sql"))
        .and_then(|sql| sql.get("databases"))
        .is_some();
    let defined = table
        .get("databases")
        .and_then(|d| d.get(DATABASE))
        .is_some();
    if granted || defined {
        let config = Config::parse(&toml::to_string(&table)?, &name)?;
        return Ok((config, None));
    }
    let file = default_database()?;
    let sql_table = table
        .get("plugins")
        .and_then(|p| p.get("sql"))
        .and_then(|sql| sql.get("settings"))
        .and_then(|settings| settings.get("table"))
        .and_then(|t| t.as_str())
        .unwrap_or(DEFAULT_TABLE)
        .to_owned();
    let mut database = toml::Table::new();
    database.insert("backend".into(), "sqlite".into());
    database.insert("path".into(), file.display().to_string().into());
    section(&mut table, "databases").insert(DATABASE.into(), database.into());
    let plugins = section(&mut table, "plugins");
    let sql = match plugins
        .entry("sql")
        .or_insert_with(|| toml::Table::new().into())
    {
        toml::Value::Table(sql) => sql,
        _ => anyhow::bail!("{}: [plugins.sql] must be a table", name.display()),
    };
    sql.insert(
        "databases".into(),
        toml::Value::Array(vec![DATABASE.into()]),
    );
    let config = Config::parse(&toml::to_string(&table)?, &name)?;
    Ok((
        config,
        Some(Persisted {
            path: file,
            table: sql_table,
        }),
    ))
}

/// The table `key` of `table`, created when missing. A `key` holding
/// something else was already refused by `Config::from_file`.
fn section<'a>(table: &'a mut toml::Table, key: &str) -> &'a mut toml::Table {
    let value = table
        .entry(key)
        .or_insert_with(|| toml::Table::new().into());
    if !value.is_table() {
        *value = toml::Table::new().into();
    }
    match value {
        toml::Value::Table(section) => section,
        _ => unreachable!("just made a table"),
    }
}

/// `$XDG_DATA_HOME/hookhost/events.db`, else
/// `~/.local/share/hookhost/events.db`, else `hookhost/events.db` in the
/// temporary folder: a file that outlives the run without landing in the
/// working directory. Its folder is created.
fn default_database() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local").join("share"))
        })
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join("hookhost");
    std::fs::create_dir_all(&dir).with_context(|| {
        format!(
            "cannot create {} for the sql hook's SQLite file; set XDG_DATA_HOME to a \
             writable folder, or name a database in --config ([databases.events])",
            dir.display()
        )
    })?;
    Ok(dir.join("events.db"))
}

/// After a run on the built-in plugins, prints where the `sql` hook put the
/// events and how many rows its table holds, when it wrote to the embedded
/// file added by [`config`].
pub async fn report_database(args: &super::HostArgs) {
    if args.plugins.is_some() {
        return;
    }
    let Ok((_, Some(persisted))) = plan(args.config.as_deref()) else {
        return;
    };
    match count_rows(&persisted).await {
        Ok(rows) => println!(
            "events persisted by the sql hook to {} (table {}): {rows} rows",
            persisted.path.display(),
            persisted.table
        ),
        Err(err) => println!(
            "events were to be persisted by the sql hook to {} (table {}), but it cannot \
             be read: {err}",
            persisted.path.display(),
            persisted.table
        ),
    }
}

async fn count_rows(persisted: &Persisted) -> Result<i64, sqlx::Error> {
    let mut connection = SqliteConnectOptions::new()
        .filename(&persisted.path)
        .read_only(true)
        .connect()
        .await?;
    // The table name comes from the config and cannot be a parameter;
    // quoting each part keeps an odd name from being read as SQL.
    let table: Vec<String> = persisted
        .table
        .split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect();
    let query = format!("SELECT COUNT(*) FROM {}", table.join("."));
    let rows: i64 = sqlx::query_scalar(&query)
        .fetch_one(&mut connection)
        .await?;
    connection.close().await?;
    Ok(rows)
}
