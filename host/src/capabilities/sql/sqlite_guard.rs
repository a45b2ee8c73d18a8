//! SQLite's own defences, installed on every connection the host opens to
//! a SQLite file, so that a grant of one file reaches that file only: no
//! `ATTACH` of another file (nor `VACUUM INTO` one), no pragma that changes
//! how or where SQLite writes, no function that reads or writes files or
//! loads code, and limits on how large one value or statement may be.
//!
//! Also the raw handle through which a statement cut off by its plugin's
//! deadline is interrupted, and a progress handler that stops a statement
//! started after that interrupt.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use libsqlite3_sys as ffi;
use sqlx::sqlite::SqliteConnection;

/// Pragmas a plugin may run with a table or index name as argument: they
/// only describe the schema.
const SCHEMA_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
];

/// Pragmas a plugin may read, but not set (an argument would set them).
const READ_ONLY_PRAGMAS: &[&str] = &[
    "user_version",
    "application_id",
    "data_version",
    "page_count",
    "page_size",
    "freelist_count",
    "encoding",
];

/// Functions that reach files or load code (`readfile`, `writefile` and
/// `edit` exist only where the shell's extensions are linked in; denied by
/// name in case they are).
const DENIED_FUNCTIONS: &[&str] = &[
    "load_extension",
    "readfile",
    "writefile",
    "edit",
    "fts3_tokenizer",
];

/// Longest string or blob one value may be (`SQLITE_LIMIT_LENGTH`, default
/// 1 GB): 4 MiB, four times the default `max_event_kib`, so the metadata of
/// any event of the default size fits in one value. A row SQLite returns is built
/// whole before the host can count it against the plugin's memory, so this
/// times [`MAX_COLUMNS`] (256 MiB) is the most one row can make the host
/// allocate on a plugin's behalf; with 16 MiB it would be 1 GiB.
pub(super) const MAX_VALUE_BYTES: c_int = 4 << 20;

/// Most columns one table, index, result row, `GROUP BY` or `ORDER BY` may
/// have (`SQLITE_LIMIT_COLUMN`, default 2,000). The built-in `sql` hook's
/// table has 13; 64 leaves room for wider tables while bounding one row
/// (see [`MAX_VALUE_BYTES`]).
pub(super) const MAX_COLUMNS: c_int = 64;

/// Virtual-machine instructions between two calls of the progress handler,
/// which stops a statement started after its connection was cut off. An
/// atomic load every thousand instructions costs nothing measurable, and
/// SQLite runs a thousand instructions in microseconds, so the statement
/// stops as soon as it starts.
const PROGRESS_OPS: i32 = 1000;

/// Longest SQL text of one statement (`SQLITE_LIMIT_SQL_LENGTH`, default
/// 1 GB). Statements with parameters are short; 1 MiB leaves room for
/// generated multi-row inserts.
pub(super) const MAX_SQL_BYTES: c_int = 1 << 20;

/// Why the defences could not be installed on a connection.
#[derive(Debug, thiserror::Error)]
#[error("could not restrict the SQLite connection ({what} returned code {code})")]
pub(super) struct GuardError {
    what: &'static str,
    code: c_int,
}

/// A connection's `sqlite3*`, kept to interrupt a statement from another
/// thread, and the flag its progress handler reads.
///
/// The pointer is only ever passed to `sqlite3_interrupt`, which SQLite
/// documents as safe to call from any thread while the connection is open;
/// the handle is kept next to the connection that owns it, and interrupted
/// only before that connection is dropped.
pub(super) struct RawHandle {
    db: NonNull<ffi::sqlite3>,
    /// Set when the connection is cut off; its progress handler then stops
    /// every statement. Never cleared: a cut-off connection is closed, not
    /// reused.
    cut: Arc<AtomicBool>,
}

// SAFETY: see the type's documentation: the pointer is only used with
// `sqlite3_interrupt`, which is thread-safe, while its connection is open.
unsafe impl Send for RawHandle {}
unsafe impl Sync for RawHandle {}

impl RawHandle {
    /// Stops the statement running on the connection, if any: it fails
    /// with `SQLITE_INTERRUPT` at its next step. `sqlite3_interrupt` alone
    /// does nothing when no statement runs yet (one sqlx has queued for the
    /// connection's thread but not started), so the flag is set first: the
    /// progress handler stops any statement the connection starts later.
    pub(super) fn interrupt(&self) {
        self.cut.store(true, Ordering::Release);
        // SAFETY: the connection is open (see the type's documentation).
        unsafe { ffi::sqlite3_interrupt(self.db.as_ptr()) }
    }
}

/// Installs the defences on `conn` and returns its raw handle. Runs after
/// sqlx has set the connection up (journal mode, busy timeout), which the
/// authorizer would otherwise refuse.
pub(super) async fn install(conn: &mut SqliteConnection) -> Result<RawHandle, InstallError> {
    let mut locked = conn.lock_handle().await.map_err(InstallError::Sqlx)?;
    let cut = Arc::new(AtomicBool::new(false));
    let flag = cut.clone();
    // sqlx owns the handler (and frees it with the connection); returning
    // `false` makes the running statement fail with `SQLITE_INTERRUPT`.
    locked.set_progress_handler(PROGRESS_OPS, move || !flag.load(Ordering::Acquire));
    let db = locked.as_raw_handle();
    // SAFETY: the handle is locked out of the worker thread for the length
    // of these calls; the authorizer is a plain function with no state.
    unsafe {
        let db = db.as_ptr();
        check(
            "sqlite3_set_authorizer",
            ffi::sqlite3_set_authorizer(db, Some(authorize), ptr::null_mut()),
        )?;
        for (what, op, on) in [
            (
                "SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION",
                ffi::SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION,
                0,
            ),
            (
                "SQLITE_DBCONFIG_DEFENSIVE",
                ffi::SQLITE_DBCONFIG_DEFENSIVE,
                1,
            ),
            (
                "SQLITE_DBCONFIG_TRUSTED_SCHEMA",
                ffi::SQLITE_DBCONFIG_TRUSTED_SCHEMA,
                0,
            ),
        ] {
            let code = ffi::sqlite3_db_config(db, op, on as c_int, ptr::null_mut::<c_int>());
            check(what, code)?;
        }
        ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_ATTACHED, 0);
        ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES);
        ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_COLUMN, MAX_COLUMNS);
        ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_BYTES);
    }
    Ok(RawHandle { db, cut })
}

/// Whether `conn` is inside a transaction (SQLite's own view, which also
/// sees a `BEGIN` the plugin ran itself).
pub(super) async fn in_transaction(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    let mut locked = conn.lock_handle().await?;
    // SAFETY: the handle is locked out of the worker thread.
    Ok(unsafe { ffi::sqlite3_get_autocommit(locked.as_raw_handle().as_ptr()) } == 0)
}

/// Installing the defences failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum InstallError {
    /// The connection's worker thread is gone.
    #[error("{0}")]
    Sqlx(#[source] sqlx::Error),
    /// SQLite refused a setting.
    #[error(transparent)]
    Guard(#[from] GuardError),
}

fn check(what: &'static str, code: c_int) -> Result<(), GuardError> {
    if code == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(GuardError { what, code })
    }
}

/// The authorizer: called by SQLite for every action of every statement
/// it compiles on the connection. Refusing makes the statement fail with
/// "not authorized".
unsafe extern "C" fn authorize(
    _: *mut c_void,
    action: c_int,
    first: *const c_char,
    second: *const c_char,
    _database: *const c_char,
    _trigger: *const c_char,
) -> c_int {
    // SAFETY: SQLite passes NUL-terminated strings or null.
    let text = |ptr: *const c_char| -> Option<&str> {
        if ptr.is_null() {
            None
        } else {
            unsafe { CStr::from_ptr(ptr) }.to_str().ok()
        }
    };
    let allowed = match action {
        ffi::SQLITE_ATTACH | ffi::SQLITE_DETACH => false,
        ffi::SQLITE_PRAGMA => match text(first) {
            Some(name) => {
                let is = |list: &[&str]| list.iter().any(|p| p.eq_ignore_ascii_case(name));
                is(SCHEMA_PRAGMAS) || (is(READ_ONLY_PRAGMAS) && second.is_null())
            }
            None => false,
        },
        ffi::SQLITE_FUNCTION => match text(second) {
            Some(name) => !DENIED_FUNCTIONS
                .iter()
                .any(|f| f.eq_ignore_ascii_case(name)),
            None => false,
        },
        _ => true,
    };
    if allowed {
        ffi::SQLITE_OK
    } else {
        ffi::SQLITE_DENY
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::ConnectOptions as _;

    use super::*;

    /// The race of a deadline falling after sqlx queued a statement but
    /// before SQLite started it, made certain: the interrupt comes first.
    #[tokio::test]
    async fn a_statement_started_after_the_interrupt_is_stopped_too() {
        let mut conn = SqliteConnectOptions::from_str("sqlite::memory:")
            .unwrap()
            .connect()
            .await
            .unwrap();
        let handle = install(&mut conn).await.unwrap();
        handle.interrupt();
        let forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                       SELECT count(*) FROM c";
        let run = sqlx::query_scalar::<_, i64>(forever).fetch_one(&mut conn);
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(5), run).await;
        let stopped = match outcome {
            Ok(result) => result.unwrap_err().to_string(),
            Err(_) => {
                // Running now, so this interrupt reaches it; the test fails
                // without leaving a thread spinning.
                unsafe { ffi::sqlite3_interrupt(handle.db.as_ptr()) };
                panic!("the statement was still running after 5 s");
            }
        };
        assert!(stopped.contains("interrupted"), "{stopped}");
    }

    #[tokio::test]
    async fn the_settings_and_limits_are_on_the_connection() {
        let mut conn = SqliteConnectOptions::from_str("sqlite::memory:")
            .unwrap()
            .connect()
            .await
            .unwrap();
        install(&mut conn).await.unwrap();
        let mut locked = conn.lock_handle().await.unwrap();
        let db = locked.as_raw_handle().as_ptr();
        // A negative value reads a setting or limit without changing it.
        let setting = |op: c_int| {
            let mut value: c_int = -1;
            let code = unsafe { ffi::sqlite3_db_config(db, op, -1 as c_int, &mut value) };
            assert_eq!(code, ffi::SQLITE_OK);
            value
        };
        assert_eq!(setting(ffi::SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION), 0);
        assert_eq!(setting(ffi::SQLITE_DBCONFIG_DEFENSIVE), 1);
        assert_eq!(setting(ffi::SQLITE_DBCONFIG_TRUSTED_SCHEMA), 0);
        let limit = |id: c_int| unsafe { ffi::sqlite3_limit(db, id, -1) };
        assert_eq!(limit(ffi::SQLITE_LIMIT_ATTACHED), 0);
        assert_eq!(limit(ffi::SQLITE_LIMIT_LENGTH), MAX_VALUE_BYTES);
        assert_eq!(limit(ffi::SQLITE_LIMIT_COLUMN), MAX_COLUMNS);
        assert_eq!(limit(ffi::SQLITE_LIMIT_SQL_LENGTH), MAX_SQL_BYTES);
    }
}
