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

    /// Up to `max_rows` rows in packed form; an empty batch means the result is exhausted.
    /// This is the fast way to move many rows: the batch crosses from the host in a few
    /// copies and its cells borrow their text from it (see [`Rows::reader`]).
    pub fn next_rows(&self, max_rows: u32) -> Result<Rows, Error> {
        let packed = self.inner.next_packed(max_rows).map_err(into_error)?;
        Rows::new(packed, self.columns.len())
    }
}

/// One cell of a packed batch; text and bytes are borrowed from the batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CellRef<'a> {
    Null,
    Boolean(bool),
    Integer(i64),
    Real(f64),
    Decimal(&'a str),
    Text(&'a str),
    Blob(&'a [u8]),
    Date(&'a str),
    Datetime(&'a str),
}

impl<'a> From<&'a Cell> for CellRef<'a> {
    fn from(c: &'a Cell) -> Self {
        match c {
            Cell::Null => CellRef::Null,
            Cell::Boolean(v) => CellRef::Boolean(*v),
            Cell::Integer(v) => CellRef::Integer(*v),
            Cell::Real(v) => CellRef::Real(*v),
            Cell::Decimal(v) => CellRef::Decimal(v),
            Cell::Text(v) => CellRef::Text(v),
            Cell::Blob(v) => CellRef::Blob(v),
            Cell::Date(v) => CellRef::Date(v),
            Cell::Datetime(v) => CellRef::Datetime(v),
        }
    }
}

impl<'a> From<&CellRef<'a>> for CellRef<'a> {
    fn from(c: &CellRef<'a>) -> Self {
        *c
    }
}

impl CellRef<'_> {
    /// An owned copy.
    pub fn to_cell(&self) -> Cell {
        match *self {
            CellRef::Null => Cell::Null,
            CellRef::Boolean(v) => Cell::Boolean(v),
            CellRef::Integer(v) => Cell::Integer(v),
            CellRef::Real(v) => Cell::Real(v),
            CellRef::Decimal(v) => Cell::Decimal(v.to_string()),
            CellRef::Text(v) => Cell::Text(v.to_string()),
            CellRef::Blob(v) => Cell::Blob(v.to_vec()),
            CellRef::Date(v) => Cell::Date(v.to_string()),
            CellRef::Datetime(v) => Cell::Datetime(v.to_string()),
        }
    }
}

/// A batch of rows from [`Cursor::next_rows`].
pub struct Rows {
    packed: wit::PackedRows,
    ncols: usize,
}

impl Rows {
    fn new(packed: wit::PackedRows, ncols: usize) -> Result<Rows, Error> {
        if packed.kinds.len() != packed.rows as usize * ncols {
            return Err(malformed("the cell count is not rows x columns"));
        }
        Ok(Rows { packed, ncols })
    }

    pub fn len(&self) -> usize {
        self.packed.rows as usize
    }

    pub fn is_empty(&self) -> bool {
        self.packed.rows == 0
    }

    /// Reads the rows in order:
    /// `let mut r = rows.reader(); while let Some(row) = r.next_row()? { ... }`.
    pub fn reader(&self) -> RowReader<'_> {
        RowReader {
            p: &self.packed,
            ncols: self.ncols,
            rows_read: 0,
            cell: 0,
            int: 0,
            real: 0,
            text: 0,
            text_at: 0,
            blob: 0,
            blob_at: 0,
            row: Vec::with_capacity(self.ncols),
        }
    }
}

/// Walks a [`Rows`] batch row by row, reusing one buffer of cells.
pub struct RowReader<'a> {
    p: &'a wit::PackedRows,
    ncols: usize,
    rows_read: usize,
    cell: usize,
    int: usize,
    real: usize,
    text: usize,
    text_at: usize,
    blob: usize,
    blob_at: usize,
    row: Vec<CellRef<'a>>,
}

impl<'a> RowReader<'a> {
    /// The next row's cells, or `None` after the last row.
    pub fn next_row(&mut self) -> Result<Option<&[CellRef<'a>]>, Error> {
        let p = self.p;
        if self.rows_read >= p.rows as usize {
            return Ok(None);
        }
        self.row.clear();
        let end = self.cell + self.ncols;
        for &k in &p.kinds[self.cell..end] {
            let c = match k {
                0 => CellRef::Null,
                1 | 2 => {
                    let v = *p
                        .integers
                        .get(self.int)
                        .ok_or_else(|| malformed("integers"))?;
                    self.int += 1;
                    if k == 1 {
                        CellRef::Boolean(v != 0)
                    } else {
                        CellRef::Integer(v)
                    }
                }
                3 => {
                    let v = *p.reals.get(self.real).ok_or_else(|| malformed("reals"))?;
                    self.real += 1;
                    CellRef::Real(v)
                }
                4 | 5 | 7 | 8 => {
                    let e = *p
                        .text_ends
                        .get(self.text)
                        .ok_or_else(|| malformed("text"))? as usize;
                    let s = p
                        .text
                        .get(self.text_at..e)
                        .ok_or_else(|| malformed("text offsets"))?;
                    self.text += 1;
                    self.text_at = e;
                    match k {
                        4 => CellRef::Decimal(s),
                        5 => CellRef::Text(s),
                        7 => CellRef::Date(s),
                        _ => CellRef::Datetime(s),
                    }
                }
                6 => {
                    let e = *p
                        .blob_ends
                        .get(self.blob)
                        .ok_or_else(|| malformed("blobs"))? as usize;
                    let b = p
                        .blobs
                        .get(self.blob_at..e)
                        .ok_or_else(|| malformed("blob offsets"))?;
                    self.blob += 1;
                    self.blob_at = e;
                    CellRef::Blob(b)
                }
                other => return Err(malformed(&format!("cell kind {other}"))),
            };
            self.row.push(c);
        }
        self.cell = end;
        self.rows_read += 1;
        Ok(Some(&self.row))
    }
}

fn malformed(what: &str) -> Error {
    Error::connector(format!("the host sent malformed packed rows ({what})"))
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
pub fn dtype_of<'a>(cell: impl Into<CellRef<'a>>) -> Option<&'static str> {
    Some(match cell.into() {
        CellRef::Null => return None,
        CellRef::Boolean(_) => "bool",
        CellRef::Integer(_) => "int",
        CellRef::Real(_) | CellRef::Decimal(_) => "float",
        CellRef::Date(_) => "date",
        CellRef::Datetime(_) => "datetime",
        CellRef::Text(_) | CellRef::Blob(_) => "string",
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

    /// One row of `Cell`s or of `CellRef`s.
    pub fn observe<'a, C: 'a>(&mut self, row: &'a [C])
    where
        &'a C: Into<CellRef<'a>>,
    {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(rows: u32, kinds: &[u8]) -> wit::PackedRows {
        wit::PackedRows {
            rows,
            kinds: kinds.to_vec(),
            integers: vec![1, 42],
            reals: vec![2.5],
            text: "x€2024-01-02".into(),
            text_ends: vec![1, 4, 14],
            blobs: vec![0, 255],
            blob_ends: vec![2],
        }
    }

    #[test]
    fn packed_rows_decode_in_cell_order() {
        let rows = Rows::new(packed(2, &[1, 2, 3, 5, 0, 5, 7, 6]), 4).unwrap();
        assert_eq!(rows.len(), 2);
        let mut r = rows.reader();
        assert_eq!(
            r.next_row().unwrap().unwrap(),
            &[
                CellRef::Boolean(true),
                CellRef::Integer(42),
                CellRef::Real(2.5),
                CellRef::Text("x")
            ]
        );
        assert_eq!(
            r.next_row().unwrap().unwrap(),
            &[
                CellRef::Null,
                CellRef::Text("€"),
                CellRef::Date("2024-01-02"),
                CellRef::Blob(&[0, 255])
            ]
        );
        assert!(r.next_row().unwrap().is_none());
    }

    #[test]
    fn malformed_packed_rows_are_an_error_not_a_panic() {
        // Three cells for two columns.
        assert!(Rows::new(packed(1, &[0, 0, 0]), 2).is_err());
        // More integer cells than integers.
        let rows = Rows::new(packed(1, &[2, 2, 2]), 3).unwrap();
        assert!(rows.reader().next_row().is_err());
        // A text end inside a multi-byte character.
        let mut p = packed(1, &[5, 5]);
        p.text_ends = vec![1, 3];
        let rows = Rows::new(p, 2).unwrap();
        assert!(rows.reader().next_row().is_err());
        // An unknown kind.
        let rows = Rows::new(packed(1, &[9]), 1).unwrap();
        assert!(rows.reader().next_row().is_err());
    }

    #[test]
    fn rows_without_columns_are_still_counted() {
        let rows = Rows::new(packed(3, &[]), 0).unwrap();
        let mut r = rows.reader();
        let mut n = 0;
        while r.next_row().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
    }
}
