//! What every `db` driver shares: the streaming cursor handed to the guest, and the pool
//! of idle connections of one resource.
//!
//! A query runs on its own worker thread that converts rows to typed cells and hands them
//! over in bounded batches: the guest pulls batches at its own pace, memory stays flat
//! whatever the result size, and decoding overlaps with the guest's work. Dropping the
//! cursor ends the worker at its next batch (and runs the driver's cancel hook, if any, so
//! a statement that is still computing is interrupted).

use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sandbox::bindings::aetherflow::step::sql::{
    Cell, Column, PackedRows, SqlError, SqlErrorKind,
};

/// Rows per chunk handed from the worker to the cursor.
pub const CHUNK_ROWS: usize = 1024;
/// Chunks buffered ahead of the guest.
const CHUNKS_AHEAD: usize = 4;
/// Text and blob bytes in one batch handed to the guest: a batch stops before the row
/// that would pass this (it always holds at least one row).
const BATCH_BYTES: usize = 64 << 20;

/// The case numbers of the WIT `cell` variant, as `packed-rows.kinds` holds them.
pub mod kind {
    pub const NULL: u8 = 0;
    pub const BOOLEAN: u8 = 1;
    pub const INTEGER: u8 = 2;
    pub const REAL: u8 = 3;
    pub const DECIMAL: u8 = 4;
    pub const TEXT: u8 = 5;
    pub const BLOB: u8 = 6;
    pub const DATE: u8 = 7;
    pub const DATETIME: u8 = 8;
}

/// Rows decoded by a worker, already in the packed form the guest receives, plus where
/// each row ends in every list so that any run of rows can be cut out.
#[derive(Default)]
struct Chunk {
    rows: PackedRows,
    /// Per row: its end in `integers`, `reals`, `text-ends` and `blob-ends`.
    row_ends: Vec<[u32; 4]>,
}

impl Chunk {
    fn ends_before(&self, row: usize) -> [u32; 4] {
        if row == 0 {
            [0; 4]
        } else {
            self.row_ends[row - 1]
        }
    }

    fn text_at(&self, cell: u32) -> usize {
        offset_before(&self.rows.text_ends, cell)
    }

    fn blob_at(&self, cell: u32) -> usize {
        offset_before(&self.rows.blob_ends, cell)
    }

    /// Text and blob bytes of rows `from..to`.
    fn bytes(&self, from: usize, to: usize) -> usize {
        let (a, b) = (self.ends_before(from), self.ends_before(to));
        (self.text_at(b[2]) - self.text_at(a[2])) + (self.blob_at(b[3]) - self.blob_at(a[3]))
    }

    /// Append rows `from..to` to `out`.
    fn copy_rows(&self, from: usize, to: usize, out: &mut PackedRows) {
        let ncols = self.rows.kinds.len() / (self.row_ends.len().max(1));
        let (a, b) = (self.ends_before(from), self.ends_before(to));
        let r = &self.rows;
        out.rows += (to - from) as u32;
        out.kinds
            .extend_from_slice(&r.kinds[from * ncols..to * ncols]);
        out.integers
            .extend_from_slice(&r.integers[a[0] as usize..b[0] as usize]);
        out.reals
            .extend_from_slice(&r.reals[a[1] as usize..b[1] as usize]);
        let (t0, t1) = (self.text_at(a[2]), self.text_at(b[2]));
        let base = out.text.len() as u32;
        out.text.push_str(&r.text[t0..t1]);
        out.text_ends.extend(
            r.text_ends[a[2] as usize..b[2] as usize]
                .iter()
                .map(|e| e - t0 as u32 + base),
        );
        let (b0, b1) = (self.blob_at(a[3]), self.blob_at(b[3]));
        let base = out.blobs.len() as u32;
        out.blobs.extend_from_slice(&r.blobs[b0..b1]);
        out.blob_ends.extend(
            r.blob_ends[a[3] as usize..b[3] as usize]
                .iter()
                .map(|e| e - b0 as u32 + base),
        );
    }
}

/// Where the `cell`-th value of a concatenation starts, given the end of each value.
fn offset_before(ends: &[u32], cell: u32) -> usize {
    match cell {
        0 => 0,
        n => ends[n as usize - 1] as usize,
    }
}

/// Empty packed rows (also the "exhausted" answer).
pub fn empty_rows() -> PackedRows {
    PackedRows {
        rows: 0,
        kinds: Vec::new(),
        integers: Vec::new(),
        reals: Vec::new(),
        text: String::new(),
        text_ends: Vec::new(),
        blobs: Vec::new(),
        blob_ends: Vec::new(),
    }
}

impl Default for PackedRows {
    fn default() -> Self {
        empty_rows()
    }
}

/// The typed rows of a packed batch of `ncols` columns (what `next-batch` returns).
pub fn unpack(p: &PackedRows, ncols: usize) -> Vec<Vec<Cell>> {
    let (mut i, mut r, mut t, mut b) = (0usize, 0usize, 0usize, 0usize);
    let (mut text_at, mut blob_at) = (0usize, 0usize);
    let mut text = |t: &mut usize| {
        let end = p.text_ends[*t] as usize;
        let s = p.text[text_at..end].to_string();
        text_at = end;
        *t += 1;
        s
    };
    let mut rows = Vec::with_capacity(p.rows as usize);
    for row in p.kinds.chunks(ncols.max(1)).take(p.rows as usize) {
        let mut cells = Vec::with_capacity(ncols);
        for &k in row.iter().take(ncols) {
            cells.push(match k {
                kind::BOOLEAN => {
                    i += 1;
                    Cell::Boolean(p.integers[i - 1] != 0)
                }
                kind::INTEGER => {
                    i += 1;
                    Cell::Integer(p.integers[i - 1])
                }
                kind::REAL => {
                    r += 1;
                    Cell::Real(p.reals[r - 1])
                }
                kind::DECIMAL => Cell::Decimal(text(&mut t)),
                kind::TEXT => Cell::Text(text(&mut t)),
                kind::DATE => Cell::Date(text(&mut t)),
                kind::DATETIME => Cell::Datetime(text(&mut t)),
                kind::BLOB => {
                    let end = p.blob_ends[b] as usize;
                    b += 1;
                    let v = p.blobs[blob_at..end].to_vec();
                    blob_at = end;
                    Cell::Blob(v)
                }
                _ => Cell::Null,
            });
        }
        rows.push(cells);
    }
    rows
}

type Batch = Result<Chunk, SqlError>;

/// Interrupts a running statement (called when the cursor is dropped before the end).
pub type Cancel = Box<dyn FnOnce() + Send>;

/// What a worker sends before any row: the result's columns.
pub struct Head {
    pub columns: Vec<Column>,
    pub cancel: Option<Cancel>,
}

/// The worker's end for the head (columns, or the error that prevented the query).
pub struct HeadSender(SyncSender<Result<Head, SqlError>>);

impl HeadSender {
    /// Returns false when the cursor side is gone (the worker should stop).
    pub fn send(self, head: Result<Head, SqlError>) -> bool {
        self.0.send(head).is_ok()
    }
}

/// The worker's end for rows: a driver appends the cells of a row (`null`, `int`, ...,
/// in column order), then calls `end_row`; rows travel in chunks of [`CHUNK_ROWS`].
pub struct RowSink {
    tx: SyncSender<Batch>,
    chunk: Chunk,
}

impl RowSink {
    pub fn null(&mut self) {
        self.chunk.rows.kinds.push(kind::NULL);
    }

    pub fn boolean(&mut self, v: bool) {
        self.chunk.rows.kinds.push(kind::BOOLEAN);
        self.chunk.rows.integers.push(v as i64);
    }

    pub fn int(&mut self, v: i64) {
        self.chunk.rows.kinds.push(kind::INTEGER);
        self.chunk.rows.integers.push(v);
    }

    pub fn real(&mut self, v: f64) {
        self.chunk.rows.kinds.push(kind::REAL);
        self.chunk.rows.reals.push(v);
    }

    /// A text-like cell: `k` is [`kind::TEXT`], `DECIMAL`, `DATE` or `DATETIME`.
    pub fn text(&mut self, k: u8, v: &str) {
        let r = &mut self.chunk.rows;
        r.kinds.push(k);
        r.text.push_str(v);
        r.text_ends.push(r.text.len() as u32);
    }

    pub fn blob(&mut self, v: &[u8]) {
        let r = &mut self.chunk.rows;
        r.kinds.push(kind::BLOB);
        r.blobs.extend_from_slice(v);
        r.blob_ends.push(r.blobs.len() as u32);
    }

    pub fn cell(&mut self, c: &Cell) {
        match c {
            Cell::Null => self.null(),
            Cell::Boolean(v) => self.boolean(*v),
            Cell::Integer(v) => self.int(*v),
            Cell::Real(v) => self.real(*v),
            Cell::Decimal(v) => self.text(kind::DECIMAL, v),
            Cell::Text(v) => self.text(kind::TEXT, v),
            Cell::Date(v) => self.text(kind::DATE, v),
            Cell::Datetime(v) => self.text(kind::DATETIME, v),
            Cell::Blob(v) => self.blob(v),
        }
    }

    /// The row's cells are all in. Returns false when the cursor was dropped (the worker
    /// should stop).
    pub fn end_row(&mut self) -> bool {
        let r = &self.chunk.rows;
        let ends = [
            r.integers.len() as u32,
            r.reals.len() as u32,
            r.text_ends.len() as u32,
            r.blob_ends.len() as u32,
        ];
        self.chunk.row_ends.push(ends);
        self.chunk.rows.rows += 1;
        // A chunk also goes when its bytes approach what u32 offsets (and a batch) hold.
        let big = self.chunk.rows.text.len() + self.chunk.rows.blobs.len() >= BATCH_BYTES;
        if self.chunk.row_ends.len() >= CHUNK_ROWS || big {
            let full = std::mem::take(&mut self.chunk);
            return self.tx.send(Ok(full)).is_ok();
        }
        true
    }

    /// Queue one row of owned cells.
    pub fn push(&mut self, row: Vec<Cell>) -> bool {
        for c in &row {
            self.cell(c);
        }
        self.end_row()
    }

    /// The rows queued so far, then the error (the guest sees the rows, then the error).
    pub fn fail(mut self, e: SqlError) {
        if !self.chunk.row_ends.is_empty() {
            let rows = std::mem::take(&mut self.chunk);
            if self.tx.send(Ok(rows)).is_err() {
                return;
            }
        }
        let _ = self.tx.send(Err(e));
    }

    /// The result is complete: hand over the last rows. Dropping the sink then tells the
    /// cursor the result has ended.
    pub fn finish(mut self) {
        if !self.chunk.row_ends.is_empty() {
            let rows = std::mem::take(&mut self.chunk);
            let _ = self.tx.send(Ok(rows));
        }
    }
}

/// A streaming result set (the host side of the WIT `cursor` resource), whatever the driver.
pub struct SqlCursor {
    columns: Vec<Column>,
    rx: Receiver<Batch>,
    pending: VecDeque<Chunk>,
    /// Rows of `pending.front()` already handed out.
    front_row: usize,
    /// Rows in `pending` not handed out yet.
    available: usize,
    /// An error from the worker, reported once the rows before it are handed out.
    error: Option<SqlError>,
    done: bool,
    cancel: Option<Cancel>,
    /// The calling step's deadline: no wait for the worker lasts past it.
    deadline: Option<Instant>,
}

/// Why a wait for the worker ended without an answer.
enum Wait {
    Closed,
    Deadline,
}

/// `rx.recv()`, but no later than `deadline`.
fn recv_by<T>(rx: &Receiver<T>, deadline: Option<Instant>) -> Result<T, Wait> {
    match deadline {
        None => rx.recv().map_err(|_| Wait::Closed),
        Some(_) => rx
            .recv_timeout(super::within(Duration::MAX, deadline))
            .map_err(|e| match e {
                RecvTimeoutError::Timeout => Wait::Deadline,
                RecvTimeoutError::Disconnected => Wait::Closed,
            }),
    }
}

/// The error a call gets when the step's deadline ends its wait (the host then fails the
/// step as timed out).
fn stopped_at_deadline(driver: &str) -> SqlError {
    SqlError {
        kind: SqlErrorKind::Query,
        message: format!("the {driver} query was stopped at the step's deadline"),
    }
}

impl Drop for SqlCursor {
    fn drop(&mut self) {
        if !self.done {
            if let Some(cancel) = self.cancel.take() {
                cancel();
            }
        }
    }
}

impl SqlCursor {
    /// Run `work` on a new worker thread. It must first send the [`Head`] (or the error
    /// that prevented the query), then push rows into the sink and finish or fail it.
    /// Returns once the head has arrived.
    /// No wait lasts past `deadline`: the query is then cancelled (once it has started)
    /// and the call fails.
    pub fn spawn<F>(driver: &str, deadline: Option<Instant>, work: F) -> Result<SqlCursor, SqlError>
    where
        F: FnOnce(HeadSender, RowSink) + Send + 'static,
    {
        let (head_tx, head_rx) = sync_channel::<Result<Head, SqlError>>(1);
        let (tx, rx) = sync_channel::<Batch>(CHUNKS_AHEAD);
        std::thread::Builder::new()
            .name(format!("aetherflow-{driver}"))
            .spawn(move || {
                work(
                    HeadSender(head_tx),
                    RowSink {
                        tx,
                        chunk: Chunk::default(),
                    },
                )
            })
            .map_err(|e| SqlError {
                kind: SqlErrorKind::Connection,
                message: format!("cannot start the {driver} worker: {e}"),
            })?;
        match recv_by(&head_rx, deadline) {
            Ok(Ok(head)) => Ok(SqlCursor {
                columns: head.columns,
                rx,
                pending: VecDeque::new(),
                front_row: 0,
                available: 0,
                error: None,
                done: false,
                cancel: head.cancel,
                deadline,
            }),
            Ok(Err(e)) => Err(e),
            // The worker stops at its next send, which finds nobody listening.
            Err(Wait::Deadline) => Err(stopped_at_deadline(driver)),
            Err(Wait::Closed) => Err(SqlError {
                kind: SqlErrorKind::Connection,
                message: format!("the {driver} worker stopped unexpectedly"),
            }),
        }
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Up to `max_rows` rows; an empty list once the result is exhausted.
    pub fn next_batch(&mut self, max_rows: usize) -> Result<Vec<Vec<Cell>>, SqlError> {
        let packed = self.next_packed(max_rows)?;
        Ok(unpack(&packed, self.columns.len()))
    }

    /// Up to `max_rows` rows, packed (fewer when their text passes [`BATCH_BYTES`]);
    /// `rows == 0` once the result is exhausted. Rows received before a worker error are
    /// handed out first; the error comes with the next call.
    pub fn next_packed(&mut self, max_rows: usize) -> Result<PackedRows, SqlError> {
        while self.available < max_rows && !self.done && self.error.is_none() {
            match recv_by(&self.rx, self.deadline) {
                Ok(Ok(chunk)) => {
                    self.available += chunk.row_ends.len();
                    self.pending.push_back(chunk);
                }
                Ok(Err(e)) => self.error = Some(e),
                Err(Wait::Closed) => self.done = true,
                Err(Wait::Deadline) => {
                    if let Some(cancel) = self.cancel.take() {
                        cancel();
                    }
                    self.done = true;
                    return Err(stopped_at_deadline("database"));
                }
            }
        }
        if self.available == 0 {
            if let Some(e) = self.error.take() {
                self.done = true;
                return Err(e);
            }
            return Ok(empty_rows());
        }
        let mut out = empty_rows();
        let mut bytes = 0usize;
        while (out.rows as usize) < max_rows {
            let Some(chunk) = self.pending.front() else {
                break;
            };
            let n = chunk.row_ends.len();
            let from = self.front_row;
            let want = from + (max_rows - out.rows as usize).min(n - from);
            // Fewer rows when their bytes pass the budget; a batch holds at least one row.
            let mut to = want;
            if bytes + chunk.bytes(from, to) > BATCH_BYTES {
                // The longest run that fits (one row at least, if the batch is empty).
                to = from;
                while to < want && bytes + chunk.bytes(from, to + 1) <= BATCH_BYTES {
                    to += 1;
                }
                if to == from && out.rows == 0 {
                    to = from + 1;
                }
            }
            if to == from {
                break;
            }
            bytes += chunk.bytes(from, to);
            chunk.copy_rows(from, to, &mut out);
            self.available -= to - from;
            self.front_row = to;
            if to == n {
                self.pending.pop_front();
                self.front_row = 0;
            }
            if to < want {
                break;
            }
        }
        Ok(out)
    }
}

type Opener<C> = Box<dyn Fn() -> Result<C, SqlError> + Send + Sync>;

/// Idle connections of one resource, reused within the run when its cache policy allows
/// it (`run`/`process`); with `none` every operation opens and closes its own. Connections
/// still idle when the run's connectors are dropped are closed then.
pub struct Pool<C> {
    keep: bool,
    open: Opener<C>,
    idle: Mutex<Vec<C>>,
}

impl<C> Pool<C> {
    pub fn new(keep: bool, open: impl Fn() -> Result<C, SqlError> + Send + Sync + 'static) -> Self {
        Pool {
            keep,
            open: Box::new(open),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle connection that `usable` accepts, or a new one.
    pub fn take_if(&self, usable: impl Fn(&C) -> bool) -> Result<C, SqlError> {
        if self.keep {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            while let Some(conn) = idle.pop() {
                if usable(&conn) {
                    return Ok(conn);
                }
            }
        }
        (self.open)()
    }

    pub fn take(&self) -> Result<C, SqlError> {
        self.take_if(|_| true)
    }

    /// Return a connection after use (closed at once when the policy is `none`).
    pub fn give(&self, conn: C) {
        if self.keep {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cursor over `n` rows `(i, "row i", i / 2 as real, NULL or blob)`, then `fail`
    /// (an error after the rows) or the end.
    fn cursor(n: usize, fail: bool) -> SqlCursor {
        SqlCursor::spawn("test", None, move |head, mut sink| {
            let columns = ["i", "s", "r", "b"]
                .iter()
                .map(|c| Column {
                    name: c.to_string(),
                    decl_type: None,
                })
                .collect();
            if !head.send(Ok(Head {
                columns,
                cancel: None,
            })) {
                return;
            }
            for i in 0..n {
                sink.int(i as i64);
                sink.text(kind::TEXT, &format!("row {i}"));
                sink.real(i as f64 / 2.0);
                if i.is_multiple_of(2) {
                    sink.null();
                } else {
                    sink.blob(&[i as u8; 3]);
                }
                if !sink.end_row() {
                    return;
                }
            }
            if fail {
                sink.fail(SqlError {
                    kind: SqlErrorKind::Query,
                    message: "boom".into(),
                });
            } else {
                sink.finish();
            }
        })
        .unwrap()
    }

    fn expected(i: usize) -> Vec<Cell> {
        vec![
            Cell::Integer(i as i64),
            Cell::Text(format!("row {i}")),
            Cell::Real(i as f64 / 2.0),
            if i.is_multiple_of(2) {
                Cell::Null
            } else {
                Cell::Blob(vec![i as u8; 3])
            },
        ]
    }

    #[test]
    fn packed_batches_cut_across_chunks_and_unpack_to_the_same_rows() {
        let n = CHUNK_ROWS * 3 + 17;
        let mut c = cursor(n, false);
        let mut seen = 0;
        // Sizes that split chunks and span several of them.
        for size in [1, 700, 1500, 3000].into_iter().cycle() {
            let p = c.next_packed(size).unwrap();
            if p.rows == 0 {
                break;
            }
            assert!(p.rows as usize <= size);
            for row in unpack(&p, 4) {
                assert_eq!(format!("{row:?}"), format!("{:?}", expected(seen)));
                seen += 1;
            }
        }
        assert_eq!(seen, n);
        assert_eq!(c.next_packed(10).unwrap().rows, 0, "stays exhausted");
    }

    #[test]
    fn rows_before_an_error_come_first_then_the_error() {
        let mut c = cursor(10, true);
        let rows = c.next_batch(100).unwrap();
        assert_eq!(rows.len(), 10);
        assert_eq!(format!("{:?}", rows[9]), format!("{:?}", expected(9)));
        let e = c.next_batch(100).unwrap_err();
        assert_eq!(e.message, "boom");
    }

    #[test]
    fn a_batch_stops_at_the_byte_budget_but_holds_at_least_one_row() {
        let big = "x".repeat(BATCH_BYTES / 3 + 1);
        let mut c = SqlCursor::spawn("test", None, move |head, mut sink| {
            let columns = vec![Column {
                name: "t".into(),
                decl_type: None,
            }];
            head.send(Ok(Head {
                columns,
                cancel: None,
            }));
            for _ in 0..4 {
                sink.text(kind::TEXT, &big);
                sink.end_row();
            }
            sink.finish();
        })
        .unwrap();
        let sizes: Vec<u32> = std::iter::from_fn(|| {
            let p = c.next_packed(100).unwrap();
            assert_eq!(p.text.len(), *p.text_ends.last().unwrap_or(&0) as usize);
            (p.rows > 0).then_some(p.rows)
        })
        .collect();
        assert_eq!(sizes, vec![2, 2]);
    }
}
