//! Built-in `sql` hook: persists every event as one row of an events table
//! with the columns of the Python profilers' events table (`event_id`,
//! `event_type`, `run_id`, `table_name`, `column_name`, `metric_name`,
//! `baseline_value`, `current_value`, `change_percent`, `drift_severity`,
//! `timestamp`, `metadata`, `created_at`), filled event type by event type
//! as the Python hook fills them (see `rows`), so existing queries and
//! dashboards keep working. A table it creates also has a `severity`
//! column; a table that lacks one (such as the Python hook's own) is
//! written without it.
//!
//! A batch hook: each batch the host delivers is written in one
//! transaction. Rows are inserted with "on conflict do nothing", so
//! delivering an event again never duplicates its row. When the database
//! refuses a batch, its events are written one by one, so only the events
//! it refuses fail.
//!
//! Settings: `database` (the `[databases.<name>]` to write to; default
//! `events`), `table` (default `hookhost_events`; created if missing).

mod rows;

use std::sync::Mutex;

use hookhost_sdk::sql::{self, Dialect, SqlError, Statement};
use hookhost_sdk::{config, log, BatchHook, Event, HookError};

use rows::{Row, SEVERITY, SHARED_COLUMNS};

/// Rows per multi-row `INSERT`; the rest of a batch goes in one row at a
/// time, so each connection caches just two statements.
const ROWS_PER_INSERT: usize = 100;

/// Tries at the first statement on a SQLite file, which opens the first
/// connection: on a loaded machine, creating a new file can miss the host's
/// 2 s wait for a connection once, and a local file is never "down". Three
/// tries stay well inside the default 10 s per-event timeout. A server
/// database gets one try, so an unreachable one fails (retryably) at once
/// rather than running into the timeout.
const SQLITE_CONNECT_ATTEMPTS: u32 = 3;

/// Where events go, once the table is known to exist.
#[derive(Clone)]
struct Target {
    database: String,
    table: String,
    dialect: Dialect,
    /// The columns written: the shared ones, and `severity` when the table
    /// has it.
    columns: Vec<&'static str>,
}

/// Set once the table has been created in this instance.
static TARGET: Mutex<Option<Target>> = Mutex::new(None);

struct SqlHook;

impl BatchHook for SqlHook {
    fn handle_batch(events: Vec<Event>) -> Vec<Result<(), HookError>> {
        let target = match target() {
            Ok(target) => target,
            Err(err) => return vec![Err(err); events.len()],
        };
        let rows: Vec<Row> = events
            .iter()
            .map(|event| Row::of(event, target.dialect))
            .collect();
        match sql::transaction(&target.database, &target.inserts(&rows)) {
            Ok(_) => vec![Ok(()); events.len()],
            // The database refused something: find out which events.
            Err(SqlError::Statement(_)) => rows
                .iter()
                .map(|row| {
                    let insert = target.insert(std::slice::from_ref(row));
                    sql::execute(&target.database, &insert)
                        .map(drop)
                        .map_err(HookError::from)
                })
                .collect(),
            Err(err) => vec![Err(err.into()); events.len()],
        }
    }
}

hookhost_sdk::export_batch_hook!(SqlHook);

/// The table to write to, created the first time.
fn target() -> Result<Target, HookError> {
    let mut cached = TARGET
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(target) = cached.as_ref() {
        return Ok(target.clone());
    }
    let database = config::get_or("database", "events");
    let table = config::get_or("table", "hookhost_events");
    if !is_identifier(&table) {
        return Err(HookError::Permanent(format!(
            "setting `table` = `{table}` is not a table name (letters, digits and _, \
             optionally schema.table)"
        )));
    }
    let dialect = sql::dialect(&database)?;
    let mut target = Target {
        database,
        table,
        dialect,
        columns: SHARED_COLUMNS.to_vec(),
    };
    let create = sql::statement(target.create_table(), Vec::new());
    let attempts = match target.dialect {
        Dialect::Sqlite => SQLITE_CONNECT_ATTEMPTS,
        Dialect::Postgres | Dialect::Mysql => 1,
    };
    let mut attempt = 1;
    while let Err(err) = sql::execute(&target.database, &create) {
        match err {
            SqlError::Connection(_) if attempt < attempts => {
                attempt += 1;
            }
            err => return Err(err.into()),
        }
    }
    // A table that was there before (the Python hook's, or one made by an
    // older hookhost) may lack `severity`; its rows get the shared columns.
    let probe = format!("SELECT {SEVERITY} FROM {} WHERE 1 = 0", target.table);
    match sql::query(&target.database, &sql::statement(probe, Vec::new())) {
        Ok(_) => target.columns.push(SEVERITY),
        Err(SqlError::Statement(_)) => log::info(&format!(
            "table {} has no `{SEVERITY}` column; writing the shared columns only",
            target.table
        )),
        Err(err) => return Err(err.into()),
    }
    *cached = Some(target.clone());
    Ok(target)
}

/// `name` or `schema.name`, each part letters, digits and `_`, not
/// starting with a digit.
fn is_identifier(name: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && !p.starts_with(|c: char| c.is_ascii_digit())
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    match name.split_once('.') {
        Some((schema, table)) => part(schema) && part(table),
        None => part(name),
    }
}

impl Target {
    fn create_table(&self) -> String {
        let (id, text, float, time, long_text, now) = match self.dialect {
            Dialect::Sqlite => ("TEXT", "TEXT", "REAL", "TEXT", "TEXT", "CURRENT_TIMESTAMP"),
            Dialect::Postgres => (
                "VARCHAR(255)",
                "VARCHAR(255)",
                "DOUBLE PRECISION",
                "TIMESTAMP",
                "TEXT",
                "CURRENT_TIMESTAMP",
            ),
            Dialect::Mysql => (
                "VARCHAR(255)",
                "VARCHAR(255)",
                "DOUBLE",
                "DATETIME(6)",
                "LONGTEXT",
                "CURRENT_TIMESTAMP(6)",
            ),
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (\
             event_id {id} PRIMARY KEY, event_type {text} NOT NULL, run_id {text}, \
             table_name {text}, column_name {text}, metric_name {text}, \
             baseline_value {float}, current_value {float}, change_percent {float}, \
             drift_severity {text}, timestamp {time} NOT NULL, metadata {long_text}, \
             created_at {time} NOT NULL DEFAULT {now}, severity {text})",
            table = self.table
        )
    }

    /// The statements that write `rows`: full multi-row inserts, then one
    /// insert per remaining row.
    fn inserts(&self, rows: &[Row]) -> Vec<Statement> {
        let full = rows.len() / ROWS_PER_INSERT * ROWS_PER_INSERT;
        let (chunked, rest) = rows.split_at(full);
        chunked
            .chunks(ROWS_PER_INSERT)
            .chain(rest.chunks(1))
            .map(|rows| self.insert(rows))
            .collect()
    }

    /// One `INSERT` of `rows` that skips rows whose `event_id` is there.
    fn insert(&self, rows: &[Row]) -> Statement {
        let mut params = Vec::with_capacity(rows.len() * self.columns.len());
        let mut values = Vec::with_capacity(rows.len());
        for row in rows {
            let placeholders: Vec<String> = self
                .columns
                .iter()
                .map(|column| {
                    let placeholder = match self.dialect {
                        Dialect::Postgres => format!("${}", params.len() + 1),
                        Dialect::Sqlite | Dialect::Mysql => "?".to_owned(),
                    };
                    params.push(row.value(column));
                    match (*column, self.dialect) {
                        ("timestamp", Dialect::Postgres) => {
                            format!("CAST({placeholder} AS TIMESTAMP)")
                        }
                        _ => placeholder,
                    }
                })
                .collect();
            values.push(format!("({})", placeholders.join(", ")));
        }
        let on_conflict = match self.dialect {
            Dialect::Sqlite | Dialect::Postgres => "ON CONFLICT (event_id) DO NOTHING",
            Dialect::Mysql => "ON DUPLICATE KEY UPDATE event_id = event_id",
        };
        sql::statement(
            format!(
                "INSERT INTO {} ({}) VALUES {} {on_conflict}",
                self.table,
                self.columns.join(", "),
                values.join(", ")
            ),
            params,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_checked() {
        assert!(is_identifier("hookhost_events"));
        assert!(is_identifier("analytics.events_2"));
        assert!(!is_identifier("events; DROP TABLE x"));
        assert!(!is_identifier("1events"));
        assert!(!is_identifier("a.b.c"));
    }
}
