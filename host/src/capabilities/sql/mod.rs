//! `hookhost:hooks/sql`: the named database connections of the
//! configuration (`[databases.<name>]`), and what one plugin may do with
//! those its section grants (`databases = [...]` in `[plugins.<name>]`).
//!
//! Every plugin has its own connections to each database it is granted
//! ([`pool`]), opened on first use; a broken connection is replaced on the
//! next call, and the call that saw it fails with the retryable
//! `connection` error. Every call is bounded by the plugin's deadline, and
//! a statement the deadline cuts off is stopped on the server too. SQLite
//! connections carry SQLite's own defences ([`sqlite_guard`]), so a grant
//! of a file reaches that file only. sqlx talks to PostgreSQL and MySQL
//! asynchronously and runs SQLite on a thread of its own, so no database
//! work blocks the threads that dispatch events.

mod pool;
mod rows;
mod sqlite_guard;
mod values;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sqlx::mysql::MySqlConnectOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::ConnectOptions as _;

use self::pool::{Options, PluginPool, ACQUIRE_TIMEOUT};
use self::rows::QueryError;
use crate::bindings::hookhost::hooks::sql::{Dialect, Rows, SqlError, Statement};
use crate::printable::truncate;
use crate::settings::Settings;
use crate::state::PluginState;

/// Connections one plugin may have open to one database, unless
/// `max_connections` says. A plugin's calls are sequential (one instance,
/// one call at a time), so one connection serves them; the second lets
/// the next call start while a connection cut off by a timeout is still
/// being cancelled and closed.
const DEFAULT_MAX_CONNECTIONS: u32 = 2;
/// Most connections `max_connections` may allow one plugin. Its calls are
/// sequential, so more never help it; PostgreSQL's own default limit for
/// the whole server is 100.
const MAX_MAX_CONNECTIONS: u32 = 100;
/// How long SQLite waits for a lock held by another connection.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest database message a plugin receives: enough for any real error,
/// and a statement cannot make the host copy megabytes into every error.
const MAX_MESSAGE_BYTES: usize = 4096;
/// Longest a host's shutdown waits for database connections to close. A
/// connection still busy past it is abandoned (the server notices the
/// closed socket).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// One `[databases.<name>]` section, resolved (environment substituted) and
/// checked.
#[derive(Clone, PartialEq)]
pub struct DatabaseSpec {
    dialect: Dialect,
    settings: Settings,
    /// The folder a relative SQLite `path` is read from: the config file's.
    base_dir: PathBuf,
}

impl std::fmt::Debug for DatabaseSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSpec")
            .field("dialect", &self.dialect)
            .field("settings", &self.settings)
            .finish()
    }
}

/// The keys a `[databases.<name>]` section may have.
const KEYS: &[&str] = &[
    "url",
    "backend",
    "path",
    "host",
    "port",
    "database",
    "user",
    "password",
    "max_connections",
];

impl DatabaseSpec {
    /// Reads a `[databases.<name>]` section: either `url`
    /// (`sqlite://file.db`, `postgres://user@host/db`, `mysql://...`) or
    /// `backend` (`sqlite`, `postgres`, `mysql`) with `path` for SQLite and
    /// `host`, `port`, `database`, `user`, `password` for the others.
    pub fn parse(settings: Settings, base_dir: &Path) -> Result<DatabaseSpec, String> {
        if let Some(key) = settings.keys().find(|key| !KEYS.contains(key)) {
            return Err(format!(
                "unknown key `{key}`; expected one of {}",
                KEYS.join(", ")
            ));
        }
        let dialect = match (settings.text("url"), settings.text("backend")) {
            (Some(url), None) => dialect_of_url(url)?,
            (None, Some(backend)) => match backend {
                "sqlite" => Dialect::Sqlite,
                "postgres" | "postgresql" => Dialect::Postgres,
                "mysql" | "mariadb" => Dialect::Mysql,
                other => {
                    return Err(format!(
                        "backend `{other}` is not one of sqlite, postgres, mysql"
                    ))
                }
            },
            (Some(_), Some(_)) => return Err("give `url` or `backend`, not both".to_owned()),
            (None, None) => {
                return Err("needs `url` or `backend` (sqlite, postgres or mysql)".to_owned())
            }
        };
        let spec = DatabaseSpec {
            dialect,
            settings,
            base_dir: base_dir.to_owned(),
        };
        spec.options()?;
        Ok(spec)
    }

    /// How to connect to this database, and how many connections each
    /// plugin may open.
    fn options(&self) -> Result<(Options, u32), String> {
        let max = match self.settings.text("max_connections") {
            Some(text) => match text.parse() {
                Ok(max) if (1..=MAX_MAX_CONNECTIONS).contains(&max) => max,
                _ => {
                    return Err(format!(
                        "max_connections `{text}` is not a whole number from 1 to \
                         {MAX_MAX_CONNECTIONS} (connections per plugin)"
                    ))
                }
            },
            None => DEFAULT_MAX_CONNECTIONS,
        };
        let url = self.settings.text("url");
        let text = |key: &str| self.settings.text(key);
        let port = |default: u16| -> Result<u16, String> {
            text("port").map_or(Ok(default), |port| {
                port.parse()
                    .map_err(|_| format!("port `{port}` is not a port number"))
            })
        };
        let bad_url = |err: sqlx::Error| format!("bad url: {err}");
        // PostgreSQL and MySQL options have the same builder methods.
        macro_rules! server_options {
            ($options:ty, $default_port:expr) => {
                match url {
                    Some(url) => <$options>::from_str(url).map_err(bad_url)?,
                    None => {
                        let mut options = <$options>::new()
                            .host(text("host").unwrap_or("localhost"))
                            .port(port($default_port)?);
                        if let Some(database) = text("database") {
                            options = options.database(database);
                        }
                        if let Some(user) = text("user") {
                            options = options.username(user);
                        }
                        if let Some(password) = text("password") {
                            options = options.password(password);
                        }
                        options
                    }
                }
            };
        }
        // Statements are the plugin's: sqlx would log each one (and warn of
        // each slow one) in the host's log, outside the plugin's limits.
        let options = match self.dialect {
            Dialect::Sqlite => {
                let options = match url {
                    Some(url) => SqliteConnectOptions::from_str(url).map_err(bad_url)?,
                    None => {
                        let path = text("path").ok_or("backend sqlite needs `path`")?;
                        SqliteConnectOptions::new().filename(self.base_dir.join(path))
                    }
                };
                let options = options
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    .disable_statement_logging();
                Options::Sqlite(options)
            }
            Dialect::Postgres => Options::Postgres(
                server_options!(PgConnectOptions, 5432).disable_statement_logging(),
            ),
            Dialect::Mysql => Options::MySql(
                server_options!(MySqlConnectOptions, 3306).disable_statement_logging(),
            ),
        };
        Ok((options, max))
    }
}

fn dialect_of_url(url: &str) -> Result<Dialect, String> {
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        "sqlite" => Ok(Dialect::Sqlite),
        "postgres" | "postgresql" => Ok(Dialect::Postgres),
        "mysql" | "mariadb" => Ok(Dialect::Mysql),
        _ => Err(format!(
            "url scheme `{scheme}` is not one of sqlite:, postgres:, mysql:"
        )),
    }
}

/// The database connections of one host: every plugin's pools, so that
/// shutdown can close them, and the connections being closed in the
/// background.
#[derive(Default)]
pub struct Databases {
    pools: Mutex<Vec<Weak<PluginPool>>>,
    closing: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Work that closes connections in the background.
type Closing = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Databases {
    fn register(&self, pool: &Arc<PluginPool>) {
        if let Ok(mut pools) = self.pools.lock() {
            pools.retain(|pool| pool.strong_count() > 0);
            pools.push(Arc::downgrade(pool));
        }
    }

    /// Runs `work` (closing or cancelling connections) in the background;
    /// shutdown waits for it, at most [`CLOSE_TIMEOUT`].
    fn close_later(&self, work: impl Future<Output = ()> + Send + 'static) {
        let work: Closing = Box::pin(work);
        // Without a runtime (the process is ending) the connection is just
        // dropped with `work`.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            if let Ok(mut closing) = self.closing.lock() {
                closing.retain(|task| !task.is_finished());
                closing.push(runtime.spawn(work));
            }
        }
    }

    /// Closes every idle connection and waits for cancellations and closes
    /// under way, at most [`CLOSE_TIMEOUT`]; connections still busy are
    /// abandoned.
    pub(crate) async fn close(&self) {
        let pools: Vec<Arc<PluginPool>> = match self.pools.lock() {
            Ok(mut pools) => pools.drain(..).filter_map(|pool| pool.upgrade()).collect(),
            Err(_) => return,
        };
        let all = async {
            for pool in pools {
                pool.close().await;
            }
            let closing = match self.closing.lock() {
                Ok(mut closing) => std::mem::take(&mut *closing),
                Err(_) => return,
            };
            for task in closing {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(CLOSE_TIMEOUT, all).await.is_err() {
            tracing::warn!(
                "database connections still busy after {} s were abandoned at shutdown",
                CLOSE_TIMEOUT.as_secs()
            );
        }
    }
}

/// What one plugin may use: the databases its section grants, and its own
/// pools for them, opened on first use. Clones share the pools; when the
/// last clone goes (the plugin was unloaded or its grants replaced), the
/// pools close.
#[derive(Clone, Default)]
pub struct SqlAccess {
    granted: Arc<BTreeMap<String, DatabaseSpec>>,
    pools: Arc<Mutex<HashMap<String, Arc<PluginPool>>>>,
    databases: Arc<Databases>,
}

impl SqlAccess {
    /// Access to the `granted` databases, with pools tracked by
    /// `databases`.
    pub(crate) fn new(granted: BTreeMap<String, DatabaseSpec>, databases: Arc<Databases>) -> Self {
        SqlAccess {
            granted: Arc::new(granted),
            pools: Arc::default(),
            databases,
        }
    }

    fn spec(&self, plugin: &str, database: &str) -> Result<&DatabaseSpec, SqlError> {
        self.granted.get(database).ok_or_else(|| {
            SqlError::Denied(capped(format!(
                "database `{database}` is not granted to plugin {plugin}; to grant it, define \
                 [databases.{database}] and add \"{database}\" to databases in [plugins.{plugin}]"
            )))
        })
    }

    fn pool(&self, plugin: &Arc<str>, database: &str) -> Result<Arc<PluginPool>, SqlError> {
        let spec = self.spec(plugin, database)?;
        let mut pools = self
            .pools
            .lock()
            .map_err(|_| SqlError::Connection("database pools poisoned".to_owned()))?;
        if let Some(pool) = pools.get(database) {
            return Ok(pool.clone());
        }
        let (options, max) = spec.options().map_err(SqlError::Connection)?;
        let pool = Arc::new(PluginPool::new(
            plugin.clone(),
            database,
            options,
            max,
            self.databases.clone(),
        ));
        self.databases.register(&pool);
        pools.insert(database.to_owned(), pool.clone());
        Ok(pool)
    }
}

/// `text` cut to [`MAX_MESSAGE_BYTES`] at a character boundary.
fn capped(text: String) -> String {
    match truncate(&text, MAX_MESSAGE_BYTES) {
        kept if kept.len() < text.len() => format!("{kept} [cut]"),
        _ => text,
    }
}

/// The plugin-facing error for a failed database call.
fn sql_error(err: sqlx::Error) -> SqlError {
    match err {
        sqlx::Error::Database(err) => SqlError::Statement(capped(err.message().to_owned())),
        sqlx::Error::PoolTimedOut => SqlError::Connection(format!(
            "no connection within {} s: the database is unreachable",
            ACQUIRE_TIMEOUT.as_secs()
        )),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => SqlError::Connection(capped(err.to_string())),
        other => SqlError::Statement(capped(other.to_string())),
    }
}

/// Runs `call` until `deadline`. Past it, `call` is dropped, which cuts
/// off the statement it runs (see [`pool`]).
async fn bounded<T, E>(
    deadline: Instant,
    call: impl Future<Output = Result<T, E>>,
    timeout: E,
) -> Result<T, E> {
    tokio::time::timeout_at(deadline.into(), call)
        .await
        .unwrap_or(Err(timeout))
}

impl crate::bindings::hookhost::hooks::sql::Host for PluginState {
    async fn dialect_of(&mut self, database: String) -> Result<Dialect, SqlError> {
        self.sql
            .spec(&self.plugin, &database)
            .map(|spec| spec.dialect)
    }

    async fn execute(&mut self, database: String, statement: Statement) -> Result<u64, SqlError> {
        let pool = self.sql.pool(&self.plugin, &database)?;
        bounded(self.deadline, pool.execute(&statement), SqlError::Timeout).await
    }

    /// Traps with [`crate::state::MemoryCapExceeded`] when the rows would
    /// take the plugin past its memory cap.
    async fn query(
        &mut self,
        database: String,
        statement: Statement,
    ) -> wasmtime::Result<Result<Rows, SqlError>> {
        let pool = match self.sql.pool(&self.plugin, &database) {
            Ok(pool) => pool,
            Err(err) => return Ok(Err(err)),
        };
        let query = pool.query(&statement, &self.memory);
        match bounded(self.deadline, query, QueryError::Sql(SqlError::Timeout)).await {
            Ok(rows) => Ok(Ok(rows)),
            Err(QueryError::Sql(err)) => Ok(Err(err)),
            Err(QueryError::Memory(err)) => Err(wasmtime::Error::new(err)),
        }
    }

    async fn transaction(
        &mut self,
        database: String,
        statements: Vec<Statement>,
    ) -> Result<Vec<u64>, SqlError> {
        let pool = self.sql.pool(&self.plugin, &database)?;
        bounded(
            self.deadline,
            pool.transaction(&statements),
            SqlError::Timeout,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::capped;

    #[test]
    fn messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(5000);
        let cut = capped(long);
        assert!(cut.len() <= super::MAX_MESSAGE_BYTES + " [cut]".len());
        assert!(cut.ends_with("é [cut]"), "{}", &cut[cut.len() - 20..]);
        assert_eq!(capped("short".to_owned()), "short");
    }
}
