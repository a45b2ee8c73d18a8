//! The routing store: each plugin's deduplication state (`dedup_key`s and
//! their counts), kept in the data directory so that a restart neither
//! sends an alert the window should have kept back nor forgets how many
//! repeats the next one carries.
//!
//! The SQLite file `<data_dir>/routing.sqlite` (WAL journal), one table
//! `dedup` with a row per plugin and key. Each worker writes what changed
//! once per run of events it takes off its queue, in one transaction,
//! before it records those events as completed in the write-ahead log: a
//! crash in between delivers an event again (its id is remembered, so it is
//! let through again) or counts a repeat twice, never loses one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::Row as _;

use crate::routing::dedup::{DedupEntry, DedupKey};

/// The store's file name inside a data directory.
pub const FILE_NAME: &str = "routing.sqlite";

/// The layout this hookhost writes, kept in `PRAGMA user_version`.
const LAYOUT_VERSION: i64 = 1;

/// How long a statement waits for another connection to finish writing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS dedup (
    plugin TEXT NOT NULL,
    key TEXT NOT NULL,          -- the key's XXH3-128, 32 hex digits
    let_through_ms INTEGER NOT NULL,
    severity INTEGER,
    suppressed INTEGER NOT NULL,
    event_id INTEGER NOT NULL,  -- the XXH3-64 of the id let through
    carried INTEGER NOT NULL,
    PRIMARY KEY (plugin, key)
)";

/// The routing store could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum RoutingStoreError {
    /// The file was written by a later hookhost.
    #[error(
        "the routing store {} has layout version {found}, newer than this hookhost's \
         ({LAYOUT_VERSION}); use the newer hookhost, or move the file away",
        crate::printable::path(.path)
    )]
    NewerLayout {
        /// The file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
    },
    /// SQLite failed.
    #[error("the routing store {}: {error}", crate::printable::path(.path))]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        error: sqlx::Error,
    },
}

/// The routing store of one data directory.
#[derive(Debug, Clone)]
pub struct RoutingStore {
    pool: SqlitePool,
    path: PathBuf,
}

impl RoutingStore {
    /// Opens (or creates) `routing.sqlite` in `dir`, which exists.
    ///
    /// # Errors
    ///
    /// The file cannot be opened or is not a routing store this hookhost
    /// can read.
    pub async fn open(dir: &Path) -> Result<RoutingStore, RoutingStoreError> {
        let path = dir.join(FILE_NAME);
        let failed = |error| RoutingStoreError::Sqlite {
            path: path.clone(),
            error,
        };
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(failed)?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&pool)
            .await
            .map_err(failed)?;
        if version > LAYOUT_VERSION {
            pool.close().await;
            return Err(RoutingStoreError::NewerLayout {
                path,
                found: version,
            });
        }
        sqlx::query(CREATE_TABLE)
            .execute(&pool)
            .await
            .map_err(failed)?;
        sqlx::query(&format!("PRAGMA user_version = {LAYOUT_VERSION}"))
            .execute(&pool)
            .await
            .map_err(failed)?;
        Ok(RoutingStore { pool, path })
    }

    /// Every key `plugin` remembers.
    ///
    /// # Errors
    ///
    /// SQLite failed.
    pub async fn load(
        &self,
        plugin: &str,
    ) -> Result<Vec<(DedupKey, DedupEntry)>, RoutingStoreError> {
        let rows = sqlx::query(
            "SELECT key, let_through_ms, severity, suppressed, event_id, carried \
             FROM dedup WHERE plugin = ?",
        )
        .bind(plugin)
        .fetch_all(&self.pool)
        .await
        .map_err(|error| self.error(error))?;
        let count = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(rows
            .iter()
            .filter_map(|row| {
                // A row whose key is not 32 hex digits was not written by
                // this hookhost: skipped.
                let key = u128::from_str_radix(row.get::<&str, _>("key"), 16).ok()?;
                let entry = DedupEntry {
                    let_through_ms: row.get("let_through_ms"),
                    severity: row
                        .get::<Option<i64>, _>("severity")
                        .and_then(|s| u8::try_from(s).ok()),
                    suppressed: count(row.get("suppressed")),
                    // The hash's bits, kept in SQLite's signed integer.
                    event_id: row.get::<i64, _>("event_id") as u64,
                    carried: count(row.get("carried")),
                };
                Some((DedupKey(key), entry))
            })
            .collect())
    }

    /// Saves `changes` of `plugin`'s keys (`None`: forget the key), all or
    /// none.
    ///
    /// # Errors
    ///
    /// SQLite failed (a full disk, a read-only file); nothing was saved.
    pub async fn save(
        &self,
        plugin: &str,
        changes: &[(DedupKey, Option<DedupEntry>)],
    ) -> Result<(), RoutingStoreError> {
        let result = async {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            for (key, entry) in changes {
                match entry {
                    Some(entry) => {
                        sqlx::query(
                            "INSERT OR REPLACE INTO dedup (plugin, key, let_through_ms, \
                             severity, suppressed, event_id, carried) \
                             VALUES (?, ?, ?, ?, ?, ?, ?)",
                        )
                        .bind(plugin)
                        .bind(key.to_string())
                        .bind(entry.let_through_ms)
                        .bind(entry.severity.map(i64::from))
                        .bind(i64::from(entry.suppressed))
                        .bind(entry.event_id as i64)
                        .bind(i64::from(entry.carried))
                        .execute(&mut *tx)
                        .await?;
                    }
                    None => {
                        sqlx::query("DELETE FROM dedup WHERE plugin = ? AND key = ?")
                            .bind(plugin)
                            .bind(key.to_string())
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            tx.commit().await
        }
        .await;
        result.map_err(|error| self.error(error))
    }

    /// Closes the connection once what is written is on disk.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn error(&self, error: sqlx::Error) -> RoutingStoreError {
        RoutingStoreError::Sqlite {
            path: self.path.clone(),
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_saved_are_loaded_back_per_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let store = RoutingStore::open(dir.path()).await.unwrap();
        let entry = |id: u64| DedupEntry {
            let_through_ms: 1_700_000_000_000,
            severity: Some(3),
            suppressed: 12,
            event_id: id,
            carried: 2,
        };
        // Every bit of a key and of an id survives the round trip.
        let (a, b) = (DedupKey::of("a"), DedupKey(u128::MAX));
        let changes = [(a, Some(entry(1))), (b, Some(entry(u64::MAX)))];
        store.save("slack", &changes).await.unwrap();
        store.save("email", &[(a, Some(entry(3)))]).await.unwrap();
        store.save("slack", &[(a, None)]).await.unwrap();
        store.close().await;
        let store = RoutingStore::open(dir.path()).await.unwrap();
        assert_eq!(store.load("slack").await.unwrap(), [(b, entry(u64::MAX))]);
        assert_eq!(store.load("email").await.unwrap(), [(a, entry(3))]);
        assert!(store.load("nobody").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_store_from_a_newer_hookhost_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = RoutingStore::open(dir.path()).await.unwrap();
        sqlx::query("PRAGMA user_version = 99")
            .execute(&store.pool)
            .await
            .unwrap();
        store.close().await;
        let err = RoutingStore::open(dir.path()).await.unwrap_err();
        assert!(err.to_string().contains("layout version 99"), "{err}");
    }
}
