//! The dead-letter store: events that a plugin could not handle for good
//! (a permanent failure, attempts used up, dropped from a full queue, ...),
//! each kept with the reason until it is replayed or purged.
//!
//! With a data directory the store is the SQLite file
//! `<data_dir>/dead-letters.sqlite` (WAL journal, `synchronous = FULL`), so
//! an entry written is on disk and an operator can read the table with the
//! `sqlite3` shell; without one it lives in memory. `PRAGMA user_version`
//! holds the layout's version, so that a later hookhost can migrate it.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row as _, Sqlite, Transaction};

/// The store's file name inside a data directory.
pub const FILE_NAME: &str = "dead-letters.sqlite";

/// The layout this hookhost writes, kept in `PRAGMA user_version`.
const LAYOUT_VERSION: i64 = 1;

/// How long a statement waits for another process (a running host and a
/// `hookhost dlq` command) to finish writing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const CREATE_TABLE: &str = "CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plugin TEXT NOT NULL,
    plugin_version TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_json TEXT NOT NULL,
    class TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    first_failed_at TEXT NOT NULL,
    last_failed_at TEXT NOT NULL,
    last_error TEXT NOT NULL
)";
const CREATE_INDEX: &str = "CREATE INDEX dead_letters_plugin ON dead_letters (plugin)";

/// How an in-memory store is named in messages.
const IN_MEMORY: &str = "(in memory)";

const COLUMNS: &str = "id, plugin, plugin_version, event_id, event_type, event_json, class, \
                       attempts, first_failed_at, last_failed_at, last_error";

/// SQLite's primary result codes that have a fix to suggest.
const SQLITE_BUSY: i32 = 5;
const SQLITE_READONLY: i32 = 8;
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_NOTADB: i32 = 26;

/// The default data directory of `hookhost`: `$XDG_DATA_HOME/hookhost`, or
/// `$HOME/.local/share/hookhost`; `None` when neither variable is set.
pub fn default_data_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local").join("share"))
        })?;
    Some(base.join("hookhost"))
}

/// The current time as the store writes it: RFC 3339 in UTC with
/// milliseconds, e.g. `2026-11-27T05:13:38.123Z`.
pub fn timestamp_now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One dead letter as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The store's id for it, increasing in the order entries were added.
    pub id: i64,
    /// The plugin that could not handle the event.
    pub plugin: String,
    /// That plugin's version (content hash) at the last failure.
    pub plugin_version: String,
    /// The event's id.
    pub event_id: String,
    /// The event's `event_type`.
    pub event_type: String,
    /// The event's JSON form.
    pub event_json: String,
    /// The last failure's class: `error`, `trap`, `fuel`, `timeout`,
    /// `memory`, `dropped`, `unloaded` or `shutdown`.
    pub class: String,
    /// Deliveries tried.
    pub attempts: u32,
    /// When the first failure happened (RFC 3339, UTC).
    pub first_failed_at: String,
    /// When the last failure happened (RFC 3339, UTC).
    pub last_failed_at: String,
    /// The last failure's message.
    pub last_error: String,
}

/// A dead letter to add: every field of [`DeadLetter`] but the id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeadLetter {
    /// See [`DeadLetter::plugin`].
    pub plugin: String,
    /// See [`DeadLetter::plugin_version`].
    pub plugin_version: String,
    /// See [`DeadLetter::event_id`].
    pub event_id: String,
    /// See [`DeadLetter::event_type`].
    pub event_type: String,
    /// See [`DeadLetter::event_json`].
    pub event_json: String,
    /// See [`DeadLetter::class`].
    pub class: String,
    /// See [`DeadLetter::attempts`].
    pub attempts: u32,
    /// See [`DeadLetter::first_failed_at`].
    pub first_failed_at: String,
    /// See [`DeadLetter::last_failed_at`].
    pub last_failed_at: String,
    /// See [`DeadLetter::last_error`].
    pub last_error: String,
}

/// A dead letter that failed again when it was replayed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FailedAgain {
    pub(crate) id: i64,
    pub(crate) class: String,
    pub(crate) error: String,
    pub(crate) at: String,
}

/// Why the dead-letter store could not be opened or used. Each message
/// names the store's file and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The folder that is to hold the file cannot be created.
    #[error("cannot create the folder {} for the dead-letter store: {error}; \
             create it or use another data directory (--data-dir)", crate::printable::path(.dir))]
    CreateDir {
        /// The folder.
        dir: PathBuf,
        /// Why. (Part of the message, so not also its `source`.)
        error: std::io::Error,
    },
    /// The file exists and is not an SQLite database.
    #[error("{} is not a dead-letter store (not an SQLite database); \
             move it away or use another data directory (--data-dir)", crate::printable::path(.path))]
    NotADatabase {
        /// The file.
        path: PathBuf,
    },
    /// The file is an SQLite database that holds other tables.
    #[error("{} is an SQLite database but not a dead-letter store (it holds other tables); \
             move it away or use another data directory (--data-dir)", crate::printable::path(.path))]
    NotAStore {
        /// The file.
        path: PathBuf,
    },
    /// The file was written by a later hookhost, in a layout this one does
    /// not know.
    #[error("the dead-letter store {} has layout version {found}, newer than this \
             hookhost's ({LAYOUT_VERSION}); use the newer hookhost, or move the file away",
            crate::printable::path(.path))]
    NewerLayout {
        /// The file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
    },
    /// SQLite failed on the store.
    #[error("the dead-letter store {store}: {}{}", describe(.error), hint(.error))]
    Sqlite {
        /// The file, or `(in memory)`.
        store: String,
        /// SQLite's error. (Part of the message, so not also its `source`.)
        error: sqlx::Error,
    },
}

/// SQLite's message and code for an error from the database, sqlx's
/// message for any other.
fn describe(error: &sqlx::Error) -> String {
    match error.as_database_error() {
        Some(db) => match db.code() {
            Some(code) => format!("{} (SQLite code {code})", db.message()),
            None => db.message().to_owned(),
        },
        None => error.to_string(),
    }
}

/// What to do about an SQLite error, if the code says.
fn hint(error: &sqlx::Error) -> String {
    let fix = match primary_code(error) {
        Some(SQLITE_BUSY) => "another process keeps it locked; try again when it is done",
        Some(SQLITE_READONLY) => "make the file and its folder writable",
        Some(SQLITE_CORRUPT) => {
            "the file is damaged; move it away (the sqlite3 shell's .recover may save its entries)"
        }
        Some(SQLITE_FULL) => "free space on its disk",
        Some(SQLITE_CANTOPEN) => "check that it is a file, in a folder that exists and is writable",
        _ => return String::new(),
    };
    format!("; {fix}")
}

/// SQLite's primary result code of a database error.
fn primary_code(error: &sqlx::Error) -> Option<i32> {
    let code = error.as_database_error()?.code()?;
    code.parse::<i32>().ok().map(|code| code & 0xff)
}

/// The dead-letter store. Cloning it gives another handle on the same
/// store.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    pool: SqlitePool,
    /// The file for messages, or `(in memory)`.
    store: String,
}

impl DeadLetters {
    /// Opens the store in the file `path`, creating the file (and its
    /// folder) and the table if they are missing.
    ///
    /// # Errors
    ///
    /// The folder cannot be created; the file cannot be opened, is not an
    /// SQLite database, holds other tables, or was written by a newer
    /// hookhost.
    pub async fn open(path: &Path) -> Result<DeadLetters, DeadLetterError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|error| DeadLetterError::CreateDir {
                dir: dir.to_owned(),
                error,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        Self::connect(options, path).await
    }

    /// A store in memory, empty, gone when the last handle is dropped.
    ///
    /// # Errors
    ///
    /// SQLite cannot open an in-memory database.
    pub async fn in_memory() -> Result<DeadLetters, DeadLetterError> {
        let path = Path::new(IN_MEMORY);
        let options = SqliteConnectOptions::from_str("sqlite::memory:").map_err(|source| {
            DeadLetterError::Sqlite {
                store: IN_MEMORY.to_owned(),
                error: source,
            }
        })?;
        Self::connect(options, path).await
    }

    /// Connects to the database `options` open, named `path` in errors,
    /// and prepares it.
    async fn connect(
        options: SqliteConnectOptions,
        path: &Path,
    ) -> Result<DeadLetters, DeadLetterError> {
        let store = crate::printable::path(path);
        let failed = |source: sqlx::Error| match primary_code(&source) {
            Some(SQLITE_NOTADB) => DeadLetterError::NotADatabase {
                path: path.to_owned(),
            },
            _ => DeadLetterError::Sqlite {
                store: store.clone(),
                error: source,
            },
        };
        let pool = pool_options().connect_with(options).await.map_err(failed)?;
        let letters = DeadLetters {
            pool,
            store: store.clone(),
        };
        let prepared = letters.prepare().await;
        if prepared.is_err() {
            letters.close().await;
        }
        match prepared {
            Ok(()) => Ok(letters),
            Err(Prepare::Foreign) => Err(DeadLetterError::NotAStore {
                path: path.to_owned(),
            }),
            Err(Prepare::Newer(found)) => Err(DeadLetterError::NewerLayout {
                path: path.to_owned(),
                found,
            }),
            Err(Prepare::Sqlite(source)) => Err(failed(source)),
        }
    }

    /// Creates the table in an empty database, or checks the layout of an
    /// existing store.
    async fn prepare(&self) -> Result<(), Prepare> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut *tx)
            .await?;
        if version > LAYOUT_VERSION {
            return Err(Prepare::Newer(version));
        }
        if version == LAYOUT_VERSION {
            tx.commit().await?;
            return Ok(());
        }
        let objects: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master")
            .fetch_one(&mut *tx)
            .await?;
        if objects > 0 {
            return Err(Prepare::Foreign);
        }
        sqlx::query(CREATE_TABLE).execute(&mut *tx).await?;
        sqlx::query(CREATE_INDEX).execute(&mut *tx).await?;
        sqlx::query(&format!("PRAGMA user_version = {LAYOUT_VERSION}"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The store's file, or `(in memory)`.
    pub fn location(&self) -> &str {
        &self.store
    }

    /// Adds `entries`, all or none, in one transaction.
    ///
    /// # Errors
    ///
    /// SQLite failed (a full disk, a read-only file); nothing was added.
    pub async fn add(&self, entries: &[NewDeadLetter]) -> Result<(), DeadLetterError> {
        if entries.is_empty() {
            return Ok(());
        }
        let result = async {
            let mut tx = self.write().await?;
            for entry in entries {
                sqlx::query(
                    "INSERT INTO dead_letters (plugin, plugin_version, event_id, event_type, \
                     event_json, class, attempts, first_failed_at, last_failed_at, last_error) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&entry.plugin)
                .bind(&entry.plugin_version)
                .bind(&entry.event_id)
                .bind(&entry.event_type)
                .bind(&entry.event_json)
                .bind(&entry.class)
                .bind(i64::from(entry.attempts))
                .bind(&entry.first_failed_at)
                .bind(&entry.last_failed_at)
                .bind(&entry.last_error)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        }
        .await;
        result.map_err(|source| self.error(source))
    }

    /// Every entry, or `plugin`'s, in id order.
    ///
    /// # Errors
    ///
    /// SQLite failed.
    pub async fn list(&self, plugin: Option<&str>) -> Result<Vec<DeadLetter>, DeadLetterError> {
        self.page(plugin, 0, i64::MAX, u32::MAX).await
    }

    /// Up to `limit` entries (of `plugin`, if given) with ids in
    /// `after + 1 ..= up_to`, in id order.
    pub(crate) async fn page(
        &self,
        plugin: Option<&str>,
        after: i64,
        up_to: i64,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, DeadLetterError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM dead_letters WHERE id > ? AND id <= ?{} ORDER BY id LIMIT ?",
            plugin_filter(plugin)
        );
        let mut query = sqlx::query(&sql).bind(after).bind(up_to);
        if let Some(plugin) = plugin {
            query = query.bind(plugin);
        }
        let rows = query
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|source| self.error(source))?;
        rows.iter()
            .map(dead_letter)
            .collect::<Result<_, _>>()
            .map_err(|source| self.error(source))
    }

    /// The entry with `id`, if there is one.
    ///
    /// # Errors
    ///
    /// SQLite failed.
    pub async fn get(&self, id: i64) -> Result<Option<DeadLetter>, DeadLetterError> {
        let sql = format!("SELECT {COLUMNS} FROM dead_letters WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|source| self.error(source))?;
        row.as_ref()
            .map(dead_letter)
            .transpose()
            .map_err(|source| self.error(source))
    }

    /// Removes the entry with `id`; whether there was one.
    ///
    /// # Errors
    ///
    /// SQLite failed.
    pub async fn remove(&self, id: i64) -> Result<bool, DeadLetterError> {
        let result = async {
            let mut tx = self.write().await?;
            let removed = delete(&mut tx, id).await?;
            tx.commit().await?;
            Ok(removed)
        }
        .await;
        result.map_err(|source| self.error(source))
    }

    /// Records that the entry with `id` failed once more, at `at`, with
    /// `class` and `error`: one more attempt, the last failure replaced.
    /// An entry that is gone is left gone.
    ///
    /// # Errors
    ///
    /// SQLite failed.
    pub async fn failed_again(
        &self,
        id: i64,
        class: &str,
        error: &str,
        at: &str,
    ) -> Result<(), DeadLetterError> {
        self.settle(
            &[],
            &[FailedAgain {
                id,
                class: class.to_owned(),
                error: error.to_owned(),
                at: at.to_owned(),
            }],
        )
        .await
    }

    /// Removes the entries `removed` and records `failed` (as
    /// [`DeadLetters::failed_again`] does), in one transaction.
    pub(crate) async fn settle(
        &self,
        removed: &[i64],
        failed: &[FailedAgain],
    ) -> Result<(), DeadLetterError> {
        if removed.is_empty() && failed.is_empty() {
            return Ok(());
        }
        let result = async {
            let mut tx = self.write().await?;
            for &id in removed {
                delete(&mut tx, id).await?;
            }
            for entry in failed {
                sqlx::query(
                    "UPDATE dead_letters SET attempts = attempts + 1, class = ?, \
                     last_error = ?, last_failed_at = ? WHERE id = ?",
                )
                .bind(&entry.class)
                .bind(&entry.error)
                .bind(&entry.at)
                .bind(entry.id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        }
        .await;
        result.map_err(|source| self.error(source))
    }

    /// Removes every entry, or `plugin`'s; how many.
    ///
    /// # Errors
    ///
    /// SQLite failed; nothing was removed.
    pub async fn purge(&self, plugin: Option<&str>) -> Result<u64, DeadLetterError> {
        let result = async {
            let mut tx = self.write().await?;
            let sql = format!("DELETE FROM dead_letters WHERE 1{}", plugin_filter(plugin));
            let mut query = sqlx::query(&sql);
            if let Some(plugin) = plugin {
                query = query.bind(plugin);
            }
            let done = query.execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(done.rows_affected())
        }
        .await;
        result.map_err(|source| self.error(source))
    }

    /// How many entries there are, or how many are `plugin`'s.
    ///
    /// # Errors
    ///
    /// SQLite failed.
    pub async fn count(&self, plugin: Option<&str>) -> Result<u64, DeadLetterError> {
        self.count_up_to(plugin, i64::MAX).await
    }

    /// How many entries (of `plugin`, if given) have ids up to `up_to`.
    pub(crate) async fn count_up_to(
        &self,
        plugin: Option<&str>,
        up_to: i64,
    ) -> Result<u64, DeadLetterError> {
        let sql = format!(
            "SELECT COUNT(*) FROM dead_letters WHERE id <= ?{}",
            plugin_filter(plugin)
        );
        let mut query = sqlx::query_scalar(&sql).bind(up_to);
        if let Some(plugin) = plugin {
            query = query.bind(plugin);
        }
        let count: i64 = query
            .fetch_one(&self.pool)
            .await
            .map_err(|source| self.error(source))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// The highest id in use, 0 when the store is empty.
    pub(crate) async fn last_id(&self) -> Result<i64, DeadLetterError> {
        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM dead_letters")
            .fetch_one(&self.pool)
            .await
            .map_err(|source| self.error(source))
    }

    /// Closes the store's connection (the file's WAL is checkpointed);
    /// later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A write transaction, holding SQLite's write lock from its start so
    /// that a concurrent writer waits its turn (up to the busy timeout)
    /// instead of failing.
    async fn write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    fn error(&self, error: sqlx::Error) -> DeadLetterError {
        DeadLetterError::Sqlite {
            store: self.store.clone(),
            error,
        }
    }
}

/// Why [`DeadLetters::prepare`] failed.
enum Prepare {
    /// The database holds objects but no store layout.
    Foreign,
    /// The layout version is newer than this hookhost's.
    Newer(i64),
    Sqlite(sqlx::Error),
}

impl From<sqlx::Error> for Prepare {
    fn from(error: sqlx::Error) -> Self {
        Prepare::Sqlite(error)
    }
}

/// One connection, kept open for the store's whole life (an in-memory
/// database lasts only as long as its connection).
fn pool_options() -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
}

/// `AND plugin = ?` when `plugin` is given; bind it last.
fn plugin_filter(plugin: Option<&str>) -> &'static str {
    match plugin {
        Some(_) => " AND plugin = ?",
        None => "",
    }
}

async fn delete(tx: &mut Transaction<'static, Sqlite>, id: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM dead_letters WHERE id = ?")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

fn dead_letter(row: &SqliteRow) -> Result<DeadLetter, sqlx::Error> {
    let attempts: i64 = row.try_get("attempts")?;
    Ok(DeadLetter {
        id: row.try_get("id")?,
        plugin: row.try_get("plugin")?,
        plugin_version: row.try_get("plugin_version")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        event_json: row.try_get("event_json")?,
        class: row.try_get("class")?,
        attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
        first_failed_at: row.try_get("first_failed_at")?,
        last_failed_at: row.try_get("last_failed_at")?,
        last_error: row.try_get("last_error")?,
    })
}
