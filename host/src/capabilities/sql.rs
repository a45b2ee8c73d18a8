//! `hookhost:hooks/sql`: the named database connections of the
//! configuration (`[databases.<name>]`), each a `sqlx` pool shared by the
//! plugins granted it (`databases = [...]` in `[plugins.<name>]`).
//!
//! Pools are created on first use and connect lazily; a broken connection is
//! dropped by the pool and replaced on the next call, and the call that saw
//! it fails with the retryable `connection` error. sqlx talks to PostgreSQL
//! and MySQL asynchronously and runs SQLite on a thread of its own, so no
//! database work blocks the threads that dispatch events.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::mysql::{MySqlConnectOptions, MySqlPool};
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool};
use sqlx::Row as _;

use crate::bindings::hookhost::hooks::sql::{Dialect, Rows, SqlError, Statement, Value};
use crate::settings::Settings;
use crate::state::PluginState;

/// Connections a pool keeps open at most, unless `max_connections` says.
const DEFAULT_MAX_CONNECTIONS: u32 = 4;
/// How long a call waits for a connection from its pool: a database that
/// is down fails calls this fast, with a retryable error.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long SQLite waits for a lock held by another connection.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

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
        spec.connect_lazy()?;
        Ok(spec)
    }

    /// A pool for this database that connects on first use.
    fn connect_lazy(&self) -> Result<Pool, String> {
        let max = match self.settings.text("max_connections") {
            Some(text) => text
                .parse()
                .map_err(|_| format!("max_connections `{text}` is not a whole number"))?,
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
        Ok(match self.dialect {
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
                    .busy_timeout(SQLITE_BUSY_TIMEOUT);
                Pool::Sqlite(pool_options(max).connect_lazy_with(options))
            }
            Dialect::Postgres => {
                let options = server_options!(PgConnectOptions, 5432);
                Pool::Postgres(pool_options(max).connect_lazy_with(options))
            }
            Dialect::Mysql => {
                let options = server_options!(MySqlConnectOptions, 3306);
                Pool::MySql(pool_options(max).connect_lazy_with(options))
            }
        })
    }
}

fn pool_options<DB: sqlx::Database>(max: u32) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(max)
        .min_connections(0)
        .acquire_timeout(ACQUIRE_TIMEOUT)
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

/// The open pools of one host, one per database name, replaced when the
/// database's section changes.
#[derive(Default)]
pub struct Databases {
    pools: Mutex<HashMap<String, (DatabaseSpec, Pool)>>,
}

impl Databases {
    /// The pool for database `name` as `spec` describes it.
    fn pool(&self, name: &str, spec: &DatabaseSpec) -> Result<Pool, String> {
        let mut pools = self.pools.lock().map_err(|_| "database pools poisoned")?;
        if let Some((current, pool)) = pools.get(name) {
            if current == spec {
                return Ok(pool.clone());
            }
        }
        let pool = spec.connect_lazy()?;
        if let Some((_, old)) = pools.insert(name.to_owned(), (spec.clone(), pool.clone())) {
            tokio::spawn(async move { old.close().await });
        }
        Ok(pool)
    }

    /// Closes every pool, waiting for connections in use to be returned
    /// (SQLite checkpoints its write-ahead log on close).
    pub(crate) async fn close(&self) {
        let pools: Vec<Pool> = match self.pools.lock() {
            Ok(mut pools) => pools.drain().map(|(_, (_, pool))| pool).collect(),
            Err(_) => return,
        };
        for pool in pools {
            pool.close().await;
        }
    }
}

/// What one plugin may use: the databases its section grants, and the
/// host's pools.
#[derive(Clone, Default)]
pub struct SqlAccess {
    granted: Arc<BTreeMap<String, DatabaseSpec>>,
    databases: Arc<Databases>,
}

impl SqlAccess {
    /// Access to the `granted` databases through `databases`.
    pub(crate) fn new(granted: BTreeMap<String, DatabaseSpec>, databases: Arc<Databases>) -> Self {
        SqlAccess {
            granted: Arc::new(granted),
            databases,
        }
    }

    fn spec(&self, plugin: &str, database: &str) -> Result<&DatabaseSpec, SqlError> {
        self.granted.get(database).ok_or_else(|| {
            SqlError::Denied(format!(
                "database `{database}` is not granted to plugin {plugin}; to grant it, define \
                 [databases.{database}] and add \"{database}\" to databases in [plugins.{plugin}]"
            ))
        })
    }

    fn pool(&self, plugin: &str, database: &str) -> Result<Pool, SqlError> {
        let spec = self.spec(plugin, database)?;
        self.databases
            .pool(database, spec)
            .map_err(SqlError::Connection)
    }
}

/// A pool of one of the three backends.
#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// Runs `$body` with `$pool` bound to the backend's pool and `$backend` to
/// the module with its `bind` and `row` functions.
macro_rules! per_backend {
    ($self:expr, $pool:ident, $backend:ident => $body:expr) => {
        match $self {
            Pool::Sqlite($pool) => {
                use sqlite as $backend;
                $body
            }
            Pool::Postgres($pool) => {
                use postgres as $backend;
                $body
            }
            Pool::MySql($pool) => {
                use mysql as $backend;
                $body
            }
        }
    };
}

impl Pool {
    async fn execute(&self, statement: &Statement) -> Result<u64, SqlError> {
        per_backend!(self, pool, backend => {
            let query = backend::bind(sqlx::query(&statement.sql), &statement.params);
            Ok(query.execute(pool).await.map_err(sql_error)?.rows_affected())
        })
    }

    async fn query(&self, statement: &Statement) -> Result<Rows, SqlError> {
        per_backend!(self, pool, backend => {
            let query = backend::bind(sqlx::query(&statement.sql), &statement.params);
            let fetched = query.fetch_all(pool).await.map_err(sql_error)?;
            let columns = fetched.first().map_or_else(Vec::new, |row| {
                row.columns().iter().map(|c| sqlx::Column::name(c).to_owned()).collect()
            });
            let rows = fetched
                .iter()
                .map(backend::row)
                .collect::<Result<_, _>>()
                .map_err(SqlError::Statement)?;
            Ok(Rows { columns, rows })
        })
    }

    async fn transaction(&self, statements: &[Statement]) -> Result<Vec<u64>, SqlError> {
        per_backend!(self, pool, backend => {
            let mut tx = pool.begin().await.map_err(sql_error)?;
            let mut affected = Vec::with_capacity(statements.len());
            for statement in statements {
                let query = backend::bind(sqlx::query(&statement.sql), &statement.params);
                affected.push(query.execute(&mut *tx).await.map_err(sql_error)?.rows_affected());
            }
            tx.commit().await.map_err(sql_error)?;
            Ok(affected)
        })
    }

    async fn close(&self) {
        match self {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
            Pool::MySql(pool) => pool.close().await,
        }
    }
}

/// Binding parameters and reading rows for one backend: `$null` is what a
/// `null` parameter binds as, `$types` the Rust types a column is tried as,
/// in order.
macro_rules! backend {
    ($module:ident, $db:ty, $null:expr, [$($ty:ty),*]) => {
        mod $module {
            use sqlx::Row as _;

            use super::{IntoValue, Value};

            type Query<'q> =
                sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>;

            pub(super) fn bind<'q>(mut query: Query<'q>, params: &'q [Value]) -> Query<'q> {
                for param in params {
                    query = match param {
                        Value::Null => query.bind($null),
                        Value::Integer(n) => query.bind(*n),
                        Value::Float(x) => query.bind(*x),
                        Value::Text(text) => query.bind(text.as_str()),
                        Value::Bytes(bytes) => query.bind(bytes.as_slice()),
                        Value::Boolean(b) => query.bind(*b),
                    };
                }
                query
            }

            pub(super) fn row(row: &<$db as sqlx::Database>::Row) -> Result<Vec<Value>, String> {
                (0..row.len()).map(|index| column(row, index)).collect()
            }

            fn column(row: &<$db as sqlx::Database>::Row, index: usize) -> Result<Value, String> {
                $(
                    if let Ok(value) = row.try_get::<Option<$ty>, _>(index) {
                        return Ok(value.map_or(Value::Null, IntoValue::into_value));
                    }
                )*
                let column = &row.columns()[index];
                Err(format!(
                    "column `{}` has type {}, which rows cannot carry; cast it to text or a \
                     number in the query",
                    sqlx::Column::name(column),
                    sqlx::TypeInfo::name(sqlx::Column::type_info(column)),
                ))
            }
        }
    };
}

backend!(sqlite, sqlx::Sqlite, Option::<String>::None, [i64, f64, String, Vec<u8>]);
backend!(
    postgres,
    sqlx::Postgres,
    super::UntypedNull,
    [bool, i16, i32, i64, f32, f64, String, Vec<u8>]
);
backend!(
    mysql,
    sqlx::MySql,
    Option::<String>::None,
    [i64, i32, i16, i8, u64, u32, u16, u8, f64, f32, String, Vec<u8>]
);

/// A PostgreSQL `NULL` parameter of no declared type, so the server infers
/// it from the statement (a typed `NULL` is refused by columns of another
/// type).
struct UntypedNull;

impl sqlx::Type<sqlx::Postgres> for UntypedNull {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for UntypedNull {
    fn encode_by_ref(
        &self,
        _: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }
}

/// A column value read as a Rust type, as the plugin receives it.
trait IntoValue {
    fn into_value(self) -> Value;
}

macro_rules! integer_values {
    ($($ty:ty),*) => {$(
        impl IntoValue for $ty {
            fn into_value(self) -> Value {
                i64::try_from(self).map_or_else(|_| Value::Text(self.to_string()), Value::Integer)
            }
        }
    )*};
}
integer_values!(i64, i32, i16, i8, u64, u32, u16, u8);

impl IntoValue for f64 {
    fn into_value(self) -> Value {
        Value::Float(self)
    }
}

impl IntoValue for f32 {
    fn into_value(self) -> Value {
        Value::Float(self.into())
    }
}

impl IntoValue for bool {
    fn into_value(self) -> Value {
        Value::Boolean(self)
    }
}

impl IntoValue for String {
    fn into_value(self) -> Value {
        Value::Text(self)
    }
}

impl IntoValue for Vec<u8> {
    fn into_value(self) -> Value {
        Value::Bytes(self)
    }
}

/// The plugin-facing error for a failed database call.
fn sql_error(err: sqlx::Error) -> SqlError {
    match err {
        sqlx::Error::Database(err) => SqlError::Statement(err.message().to_owned()),
        sqlx::Error::PoolTimedOut => SqlError::Connection(format!(
            "no connection within {} s: the database is unreachable or all its connections \
             are busy",
            ACQUIRE_TIMEOUT.as_secs()
        )),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => SqlError::Connection(err.to_string()),
        other => SqlError::Statement(other.to_string()),
    }
}

/// Runs `call` until `deadline`.
async fn bounded<T>(
    deadline: Instant,
    call: impl std::future::Future<Output = Result<T, SqlError>>,
) -> Result<T, SqlError> {
    tokio::time::timeout_at(deadline.into(), call)
        .await
        .unwrap_or(Err(SqlError::Timeout))
}

impl crate::bindings::hookhost::hooks::sql::Host for PluginState {
    async fn dialect_of(&mut self, database: String) -> Result<Dialect, SqlError> {
        self.sql
            .spec(&self.plugin, &database)
            .map(|spec| spec.dialect)
    }

    async fn execute(&mut self, database: String, statement: Statement) -> Result<u64, SqlError> {
        let pool = self.sql.pool(&self.plugin, &database)?;
        bounded(self.deadline, pool.execute(&statement)).await
    }

    async fn query(&mut self, database: String, statement: Statement) -> Result<Rows, SqlError> {
        let pool = self.sql.pool(&self.plugin, &database)?;
        bounded(self.deadline, pool.query(&statement)).await
    }

    async fn transaction(
        &mut self,
        database: String,
        statements: Vec<Statement>,
    ) -> Result<Vec<u64>, SqlError> {
        let pool = self.sql.pool(&self.plugin, &database)?;
        bounded(self.deadline, pool.transaction(&statements)).await
    }
}
