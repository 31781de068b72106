//! SQL over a granted `db` resource, streamed in batches through a cursor.

use crate::bindings::aetherflow::step::sql as wit;
use crate::Error;
use serde_json::Value;

pub use wit::{Cell, Column, SqlErrorKind};

/// An open result set. Dropping it releases the host-side cursor.
pub struct Cursor {
    inner: wit::Cursor,
    columns: Vec<Column>,
}

impl Cursor {
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Up to `max_rows` rows; an empty batch means the result is exhausted.
    pub fn next_batch(&self, max_rows: u32) -> Result<Vec<Vec<Cell>>, Error> {
        self.inner.next_batch(max_rows).map_err(into_error)
    }
}

/// Run a query against the resource named `resource`. `params` is `null`, a JSON list
/// (positional `?` parameters) or a JSON object (named `:name` parameters).
pub fn query(resource: &str, statement: &str, params: &Value) -> Result<Cursor, Error> {
    let inner = wit::query(resource, statement, &params.to_string()).map_err(into_error)?;
    let columns = inner.columns();
    Ok(Cursor { inner, columns })
}

/// Run a statement that returns no rows; returns the number of affected rows.
pub fn execute(resource: &str, statement: &str, params: &Value) -> Result<u64, Error> {
    wit::execute(resource, statement, &params.to_string()).map_err(into_error)
}

fn into_error(e: wit::SqlError) -> Error {
    Error::connector(e.message)
}
