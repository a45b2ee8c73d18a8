//! One plugin's connections to one database, and what happens to a
//! connection between two of the plugin's calls.
//!
//! Each (plugin, database) pair has its own [`PluginPool`], so no session
//! state (a `SET`, a temporary table, an open transaction) ever passes from
//! one plugin to another, and no plugin can take the connections another
//! needs. A call leases a connection; when it ends normally, a transaction
//! it left open is rolled back (and MySQL table locks released) before the
//! connection serves another call; so are session-level locks
//! (PostgreSQL advisory locks, MySQL table and named locks).
//! When it is cut off (its plugin's deadline passed, or the worker dropped
//! the call), the statement still running is stopped from outside the
//! connection (`sqlite3_interrupt` and a progress handler on SQLite, the
//! server ending the connection's session on PostgreSQL and MySQL) and the
//! connection is closed, never handed back mid-statement.
//!
//! sqlx's own pool is not used: it cannot carry what cutting a statement
//! off needs (the backend's process id, SQLite's raw handle) alongside each
//! connection, and it tests a returned connection by waiting for whatever
//! it still runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::TryStreamExt as _;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions as _, Connection as _, Executor as _};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::rows::{Collected, QueryError};
use super::sqlite_guard::{self, RawHandle};
use super::values;
use super::{capped, sql_error, Databases};
use crate::bindings::hookhost::hooks::sql::{Rows, SqlError, Statement};
use crate::state::MemoryBudget;

/// How long a call waits for a connection: to open one, or for one of the
/// plugin's own to come free. A database that is down fails calls this
/// fast, with a retryable error.
pub(super) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long stopping a cut-off statement may take (open a second
/// connection, end the session) before the connection is dropped anyway.
/// Loopback takes milliseconds; a slow network, some hundreds.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(2);

/// How to open a connection to one database. (No `Debug`: the options
/// hold the password.)
#[derive(Clone)]
pub(super) enum Options {
    Sqlite(SqliteConnectOptions),
    Postgres(PgConnectOptions),
    MySql(MySqlConnectOptions),
}

/// An open connection of one of the three backends.
enum Raw {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
    MySql(MySqlConnection),
}

/// How a statement running on a connection is stopped from outside it.
enum Handle {
    /// `sqlite3_interrupt` on the raw handle.
    Sqlite(RawHandle),
    /// `pg_terminate_backend` with the backend's process id.
    Postgres(i32),
    /// `KILL CONNECTION` with the connection's id.
    MySql(u64),
}

/// One open connection, and the permit that counts it against its pool's
/// `max_connections` until it is closed.
struct Conn {
    raw: Raw,
    handle: Handle,
    _permit: OwnedSemaphorePermit,
}

/// Runs `$body` with `$conn` bound to the connection and `$backend` to
/// the module with that backend's `bind`, `columns` and `row`.
macro_rules! per_backend {
    ($raw:expr, $conn:ident, $backend:ident => $body:expr) => {
        match $raw {
            Raw::Sqlite($conn) => {
                use values::sqlite as $backend;
                $body
            }
            Raw::Postgres($conn) => {
                use values::postgres as $backend;
                $body
            }
            Raw::MySql($conn) => {
                use values::mysql as $backend;
                $body
            }
        }
    };
}

/// How a call left its connection.
pub(super) enum End {
    /// The statement finished (or the database refused it): the
    /// connection is reset and reused.
    Finished,
    /// The connection broke: it is dropped.
    Broken,
    /// The call stopped while the statement may still run: it is
    /// cancelled and the connection closed.
    CutOff,
}

/// One plugin's connections to one database.
pub(super) struct PluginPool {
    plugin: Arc<str>,
    database: String,
    options: Options,
    max: u32,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Conn>>,
    closed: AtomicBool,
    /// Where connections closed after the pool is gone are tracked, so
    /// shutdown can wait for them (briefly).
    databases: Arc<Databases>,
}

impl PluginPool {
    pub(super) fn new(
        plugin: Arc<str>,
        database: &str,
        options: Options,
        max: u32,
        databases: Arc<Databases>,
    ) -> Self {
        PluginPool {
            plugin,
            database: database.to_owned(),
            options,
            max,
            permits: Arc::new(Semaphore::new(max as usize)),
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            databases,
        }
    }

    /// Runs one statement; the rows it affected.
    pub(super) async fn execute(self: &Arc<Self>, statement: &Statement) -> Result<u64, SqlError> {
        let mut lease = self.lease().await?;
        let result = per_backend!(lease.raw(), conn, backend => {
            let query = backend::bind(sqlx::query(&statement.sql), &statement.params);
            query.execute(&mut *conn).await.map(|done| done.rows_affected())
        });
        lease.end(ending(result.as_ref().err())).await;
        result.map_err(sql_error)
    }

    /// Runs one query, collecting its rows one at a time and charging each
    /// to `memory`.
    pub(super) async fn query(
        self: &Arc<Self>,
        statement: &Statement,
        memory: &MemoryBudget,
    ) -> Result<Rows, QueryError> {
        let mut collected = Collected::new(memory).map_err(QueryError::Memory)?;
        let mut lease = self.lease().await.map_err(QueryError::Sql)?;
        let (result, end) = per_backend!(lease.raw(), conn, backend => {
            let query = backend::bind(sqlx::query(&statement.sql), &statement.params);
            let mut stream = query.fetch(&mut *conn);
            let outcome = loop {
                match stream.try_next().await {
                    Ok(Some(row)) => {
                        if let Err(err) = collected.add(|| backend::columns(&row), backend::row(&row)) {
                            break Err((err, End::CutOff));
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(err) => {
                        let end = ending(Some(&err));
                        break Err((QueryError::Sql(sql_error(err)), end));
                    }
                }
            };
            drop(stream);
            collected.finish(outcome)
        });
        lease.end(end).await;
        result
    }

    /// Runs `statements` in one transaction; the rows each affected.
    pub(super) async fn transaction(
        self: &Arc<Self>,
        statements: &[Statement],
    ) -> Result<Vec<u64>, SqlError> {
        let mut lease = self.lease().await?;
        let result = per_backend!(lease.raw(), conn, backend => {
            async {
                let mut tx = conn.begin().await?;
                let mut affected = Vec::with_capacity(statements.len());
                for statement in statements {
                    let query = backend::bind(sqlx::query(&statement.sql), &statement.params);
                    match query.execute(&mut *tx).await {
                        Ok(done) => affected.push(done.rows_affected()),
                        Err(err) => {
                            // The connection is reset either way; an
                            // explicit rollback just frees the locks now.
                            let _ = tx.rollback().await;
                            return Err(err);
                        }
                    }
                }
                tx.commit().await?;
                Ok(affected)
            }
            .await
        });
        lease.end(ending(result.as_ref().err())).await;
        result.map_err(sql_error)
    }

    /// A connection for one call: an idle one that still answers, or a new
    /// one if the plugin has fewer than `max_connections` open.
    async fn lease(self: &Arc<Self>) -> Result<Lease, SqlError> {
        loop {
            let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            let Some(mut conn) = idle else { break };
            // A connection the server dropped while idle is replaced here,
            // rather than failing the call.
            let alive = match &mut conn.raw {
                Raw::Sqlite(raw) => raw.ping().await.is_ok(),
                Raw::Postgres(raw) => raw.ping().await.is_ok(),
                Raw::MySql(raw) => raw.ping().await.is_ok(),
            };
            if alive {
                return Ok(Lease {
                    pool: self.clone(),
                    conn: Some(conn),
                });
            }
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(SqlError::Connection(
                "the host is shutting down its database connections".to_owned(),
            ));
        }
        let busy = || {
            SqlError::Connection(format!(
                "all {} connections of plugin {} to database `{}` are busy (its statements \
                 that timed out are still being cancelled); max_connections in \
                 [databases.{}] sets how many each plugin may open",
                self.max, self.plugin, self.database, self.database
            ))
        };
        let permit =
            match tokio::time::timeout(ACQUIRE_TIMEOUT, self.permits.clone().acquire_owned()).await
            {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) | Err(_) => return Err(busy()),
            };
        let conn = tokio::time::timeout(ACQUIRE_TIMEOUT, self.connect(permit))
            .await
            .map_err(|_| {
                SqlError::Connection(format!(
                    "no connection to database `{}` within {} s: the database is unreachable",
                    self.database,
                    ACQUIRE_TIMEOUT.as_secs()
                ))
            })??;
        Ok(Lease {
            pool: self.clone(),
            conn: Some(conn),
        })
    }

    /// Opens a connection and learns how to cut its statements off.
    async fn connect(&self, permit: OwnedSemaphorePermit) -> Result<Conn, SqlError> {
        let (raw, handle) = match &self.options {
            Options::Sqlite(options) => {
                let mut conn = options.connect().await.map_err(sql_error)?;
                let handle = sqlite_guard::install(&mut conn)
                    .await
                    .map_err(|err| SqlError::Connection(capped(err.to_string())))?;
                (Raw::Sqlite(conn), Handle::Sqlite(handle))
            }
            Options::Postgres(options) => {
                let mut conn = options.connect().await.map_err(sql_error)?;
                let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&mut conn)
                    .await
                    .map_err(sql_error)?;
                (Raw::Postgres(conn), Handle::Postgres(pid))
            }
            Options::MySql(options) => {
                let mut conn = options.connect().await.map_err(sql_error)?;
                let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
                    .fetch_one(&mut conn)
                    .await
                    .map_err(sql_error)?;
                (Raw::MySql(conn), Handle::MySql(id))
            }
        };
        Ok(Conn {
            raw,
            handle,
            _permit: permit,
        })
    }

    /// Takes back a connection whose call ended cleanly.
    fn put_back(&self, conn: Conn) {
        if self.closed.load(Ordering::Acquire) {
            self.databases.close_later(conn_close(conn));
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    /// Closes the idle connections; connections still in a call are closed
    /// when it ends.
    pub(super) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let idle = match self.idle.lock() {
            Ok(mut idle) => std::mem::take(&mut *idle),
            Err(_) => return,
        };
        for conn in idle {
            conn_close(conn).await;
        }
    }
}

impl Drop for PluginPool {
    /// The plugin was unloaded or its grants replaced: its idle connections
    /// are closed in the background (shutdown waits for them, briefly).
    fn drop(&mut self) {
        let idle = match self.idle.get_mut() {
            Ok(idle) => std::mem::take(idle),
            Err(_) => return,
        };
        for conn in idle {
            self.databases.close_later(conn_close(conn));
        }
    }
}

/// Closes a connection politely (SQLite checkpoints its write-ahead log).
async fn conn_close(conn: Conn) {
    let result = match conn.raw {
        Raw::Sqlite(raw) => raw.close().await,
        Raw::Postgres(raw) => raw.close().await,
        Raw::MySql(raw) => raw.close().await,
    };
    if let Err(err) = result {
        tracing::debug!("closing a database connection: {err}");
    }
}

/// A connection leased to one call. Dropped without [`Lease::end`] (the
/// call was cut off), it cancels what the connection runs and closes it.
struct Lease {
    pool: Arc<PluginPool>,
    conn: Option<Conn>,
}

impl Lease {
    fn raw(&mut self) -> &mut Raw {
        match &mut self.conn {
            Some(conn) => &mut conn.raw,
            // `conn` is only taken by `end` and `drop`, which consume the
            // lease.
            None => unreachable!("a lease holds its connection until it ends"),
        }
    }

    /// Ends the call: a finished connection is reset and goes back to the
    /// pool, a broken one is dropped, one cut off is cancelled and closed.
    async fn end(mut self, end: End) {
        match end {
            End::Finished => {
                let clean = match &mut self.conn {
                    Some(conn) => reset(&mut conn.raw).await,
                    None => false,
                };
                if clean {
                    if let Some(conn) = self.conn.take() {
                        self.pool.put_back(conn);
                    }
                }
                // Otherwise dropping the lease cancels and closes it.
            }
            End::Broken => drop(self.conn.take()),
            End::CutOff => {}
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            cut_off(conn, &self.pool);
        }
    }
}

/// Rolls back a transaction the call left open and releases session-level
/// locks (PostgreSQL advisory locks, MySQL table and named locks). Whether the connection can serve another call: `false`
/// when its state cannot be known.
async fn reset(raw: &mut Raw) -> bool {
    match raw {
        Raw::Sqlite(conn) => {
            if conn.is_in_transaction() {
                return false;
            }
            match sqlite_guard::in_transaction(conn).await {
                Ok(false) => true,
                Ok(true) => conn.execute("ROLLBACK").await.is_ok(),
                Err(_) => false,
            }
        }
        // The server's view of the transaction is private to sqlx; asking
        // it to "begin" with a statement that begins nothing tells: a
        // transaction is open exactly when that succeeds.
        // Session-level advisory locks (`pg_advisory_lock`) outlive any
        // transaction and would keep other plugins waiting for as long as
        // the connection lives. (`DISCARD ALL` would also drop them, and
        // sqlx's prepared statements with them.)
        Raw::Postgres(conn) => {
            !conn.is_in_transaction()
                && rolled_back(conn.begin_with("SELECT 1").await).await
                && conn
                    .execute("SELECT pg_advisory_unlock_all()")
                    .await
                    .is_ok()
        }
        // Table locks (`LOCK TABLES`, `FLUSH TABLES WITH READ LOCK`) and
        // named locks (`GET_LOCK`) live with the session, outside any
        // transaction, and would keep every other session out; released
        // after the rollback, since releasing table locks commits a
        // transaction still open.
        Raw::MySql(conn) => {
            !conn.is_in_transaction()
                && rolled_back(conn.begin_with("DO 0").await).await
                && conn.execute("UNLOCK TABLES").await.is_ok()
                && conn.execute("DO RELEASE_ALL_LOCKS()").await.is_ok()
        }
    }
}

async fn rolled_back<DB: sqlx::Database>(
    probe: Result<sqlx::Transaction<'_, DB>, sqlx::Error>,
) -> bool {
    match probe {
        Ok(open) => open.rollback().await.is_ok(),
        Err(sqlx::Error::BeginFailed) => true,
        // An aborted transaction (PostgreSQL refuses every statement in
        // it) or a broken connection.
        Err(_) => false,
    }
}

/// Stops whatever `conn` still runs and closes it. SQLite is interrupted at
/// once (and its progress handler stops a statement that had not started
/// yet). On a server, a second connection ends the connection's session in
/// the background: a cancel (`pg_cancel_backend`, `KILL QUERY`) that
/// arrives before the statement starts stops nothing, and a server does not
/// notice a closed socket while a statement runs, so the statement would
/// run to its end; ending the session stops it whether or not it started. The connection keeps its permit until it is closed (or
/// [`CANCEL_TIMEOUT`] passes), so a plugin cannot pile up connections by
/// timing out.
fn cut_off(conn: Conn, pool: &PluginPool) {
    let Conn {
        raw,
        handle,
        _permit: permit,
    } = conn;
    match (raw, handle) {
        (Raw::Sqlite(raw), Handle::Sqlite(handle)) => {
            handle.interrupt();
            // The close waits for the interrupted statement to return (a
            // statement waiting for a lock may take up to the busy
            // timeout), holding the permit meanwhile.
            pool.databases.close_later(async move {
                let _ = tokio::time::timeout(CANCEL_TIMEOUT, raw.close()).await;
                drop(permit);
            });
        }
        (Raw::Postgres(raw), Handle::Postgres(pid)) => {
            let Options::Postgres(options) = pool.options.clone() else {
                return;
            };
            pool.databases.close_later(async move {
                let end = end_postgres_session(&options, pid);
                finish_cancel(tokio::time::timeout(CANCEL_TIMEOUT, end).await);
                let _ = tokio::time::timeout(CANCEL_TIMEOUT, raw.close()).await;
                drop(permit);
            });
        }
        (Raw::MySql(raw), Handle::MySql(id)) => {
            let Options::MySql(options) = pool.options.clone() else {
                return;
            };
            pool.databases.close_later(async move {
                let end = end_mysql_session(&options, id);
                finish_cancel(tokio::time::timeout(CANCEL_TIMEOUT, end).await);
                let _ = tokio::time::timeout(CANCEL_TIMEOUT, raw.close()).await;
                drop(permit);
            });
        }
        // A connection's handle is made with it, of the same backend.
        _ => {}
    }
}

/// Ends backend `pid`'s session from a second connection: the statement
/// it runs stops, and so does one that reaches it later.
async fn end_postgres_session(options: &PgConnectOptions, pid: i32) -> Result<(), sqlx::Error> {
    let mut other = options.connect().await?;
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(&mut other)
        .await?;
    other.close().await
}

/// Ends connection `id`'s session from a second connection: the statement
/// it runs stops, and so does one that reaches it later.
async fn end_mysql_session(options: &MySqlConnectOptions, id: u64) -> Result<(), sqlx::Error> {
    let mut other = options.connect().await?;
    other
        .execute(format!("KILL CONNECTION {id}").as_str())
        .await?;
    other.close().await
}

fn finish_cancel(result: Result<Result<(), sqlx::Error>, tokio::time::error::Elapsed>) {
    match result {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!("could not stop a timed-out statement: {err}"),
        Err(_) => tracing::warn!(
            "could not stop a timed-out statement within {} s",
            CANCEL_TIMEOUT.as_secs()
        ),
    }
}

/// How a call that failed with `err` (or succeeded) left its connection.
fn ending(err: Option<&sqlx::Error>) -> End {
    match err {
        None | Some(sqlx::Error::Database(_)) => End::Finished,
        Some(
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed,
        ) => End::Broken,
        Some(_) => End::CutOff,
    }
}

#[cfg(test)]
mod tests {
    //! The race of a deadline falling after a statement was sent but before
    //! the server started it, made certain: the session is ended first.
    //! (PostgreSQL and MariaDB as in the integration tests.)

    use std::str::FromStr;

    use super::*;

    /// Longest the statement after the end of its session may take to fail.
    const WITHIN: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn postgres_a_statement_sent_after_the_session_ended_does_not_run() {
        let url = std::env::var("HOOKHOST_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let options = PgConnectOptions::from_str(&url).unwrap();
        let mut conn = options.connect().await.unwrap();
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        end_postgres_session(&options, pid).await.unwrap();
        let sleep = sqlx::query("SELECT pg_sleep(60)").execute(&mut conn);
        let outcome = tokio::time::timeout(WITHIN, sleep).await;
        assert!(
            matches!(outcome, Ok(Err(_))),
            "the statement ran on: {outcome:?}"
        );
    }

    #[tokio::test]
    async fn mariadb_a_statement_sent_after_the_session_ended_does_not_run() {
        let url = std::env::var("HOOKHOST_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned());
        let options = MySqlConnectOptions::from_str(&url).unwrap();
        let mut conn = options.connect().await.unwrap();
        let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        end_mysql_session(&options, id).await.unwrap();
        let sleep = sqlx::query("SELECT SLEEP(60)").execute(&mut conn);
        let outcome = tokio::time::timeout(WITHIN, sleep).await;
        assert!(
            matches!(outcome, Ok(Err(_))),
            "the statement ran on: {outcome:?}"
        );
    }
}
