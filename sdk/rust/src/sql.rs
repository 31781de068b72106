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

/// The reference's dtype name (`_pytype_to_dtype`) of a non-null value: `int`, `float`
/// (also exact decimals), `bool`, `date`, `datetime`, else `string`.
pub fn dtype_of(cell: &Cell) -> Option<&'static str> {
    Some(match cell {
        Cell::Null => return None,
        Cell::Boolean(_) => "bool",
        Cell::Integer(_) => "int",
        Cell::Real(_) | Cell::Decimal(_) => "float",
        Cell::Date(_) => "date",
        Cell::Datetime(_) => "datetime",
        Cell::Text(_) | Cell::Blob(_) => "string",
    })
}

/// Infers column dtypes the way the reference does for SQLite results: each column takes
/// the dtype of its first non-null value among the first 200 rows; a column with none is
/// `string`. Feed it every row in order; it stops looking after 200.
pub struct DtypeSampler {
    types: Vec<Option<&'static str>>,
    seen: usize,
}

impl DtypeSampler {
    pub const SAMPLE_ROWS: usize = 200;

    pub fn new(ncols: usize) -> Self {
        DtypeSampler {
            types: vec![None; ncols],
            seen: 0,
        }
    }

    pub fn observe(&mut self, row: &[Cell]) {
        if self.seen >= Self::SAMPLE_ROWS {
            return;
        }
        self.seen += 1;
        for (t, cell) in self.types.iter_mut().zip(row) {
            if t.is_none() {
                *t = dtype_of(cell);
            }
        }
    }

    /// `{column: dtype}` in column order (a repeated name keeps its first position and
    /// its last dtype, as a Python dict).
    pub fn dtypes(&self, columns: &[String]) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        for (c, t) in columns.iter().zip(&self.types) {
            m.insert(c.clone(), Value::String(t.unwrap_or("string").to_string()));
        }
        m
    }
}
