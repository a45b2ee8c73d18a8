//! Collecting a query's rows, one at a time, each charged to the plugin's
//! memory budget as it arrives: a result too large for the plugin stops
//! the query instead of growing the host.
//!
//! Each row is charged twice its size. The charge ends when the rows are
//! handed to the plugin, and the host still holds them while they are
//! copied into the plugin's memory (which counts against the same cap as
//! it grows); charging twice keeps what the host holds plus that copy
//! within the cap.

use super::pool::End;
use super::{capped, values};
use crate::bindings::hookhost::hooks::sql::{Rows, SqlError, Value};
use crate::state::{HostCharge, MemoryBudget, MemoryCapExceeded};

/// What the host names the rows it holds while collecting a query's result.
const ROWS: &str = "SQL result rows";

/// Bytes charged per byte collected: the rows themselves, and room for
/// their copy into the plugin's memory, made after the charge ends (see
/// the module's documentation).
const CHARGE_FACTOR: usize = 2;

/// Why a query stopped.
pub(super) enum QueryError {
    /// An error the plugin receives.
    Sql(SqlError),
    /// The rows would take the plugin past its memory cap.
    Memory(MemoryCapExceeded),
}

/// The rows of a query collected so far, charged to the plugin's memory.
pub(super) struct Collected {
    columns: Option<Vec<String>>,
    rows: Vec<Vec<Value>>,
    charge: HostCharge,
}

impl Collected {
    pub(super) fn new(memory: &MemoryBudget) -> Result<Self, MemoryCapExceeded> {
        Ok(Collected {
            columns: None,
            rows: Vec::new(),
            charge: memory.charge(0, ROWS)?,
        })
    }

    /// Adds one row; the column names come with the first.
    pub(super) fn add(
        &mut self,
        columns: impl FnOnce() -> Vec<String>,
        row: Result<Vec<Value>, String>,
    ) -> Result<(), QueryError> {
        if self.columns.is_none() {
            let names = columns();
            let bytes = names.iter().map(String::len).sum::<usize>()
                + std::mem::size_of_val(names.as_slice());
            self.charge
                .grow(bytes.saturating_mul(CHARGE_FACTOR), ROWS)
                .map_err(QueryError::Memory)?;
            self.columns = Some(names);
        }
        let row = row.map_err(|why| QueryError::Sql(SqlError::Statement(capped(why))))?;
        self.charge
            .grow(values::row_bytes(&row).saturating_mul(CHARGE_FACTOR), ROWS)
            .map_err(QueryError::Memory)?;
        self.rows.push(row);
        Ok(())
    }

    /// The result, and how the query left the connection.
    pub(super) fn finish(
        self,
        outcome: Result<(), (QueryError, End)>,
    ) -> (Result<Rows, QueryError>, End) {
        match outcome {
            Ok(()) => (
                Ok(Rows {
                    columns: self.columns.unwrap_or_default(),
                    rows: self.rows,
                }),
                End::Finished,
            ),
            Err((err, end)) => (Err(err), end),
        }
    }
}
