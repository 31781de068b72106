//! What every `db` driver shares: the streaming cursor handed to the guest, and the pool
//! of idle connections of one resource.
//!
//! A query runs on its own worker thread that converts rows to typed cells and hands them
//! over in bounded batches: the guest pulls batches at its own pace, memory stays flat
//! whatever the result size, and decoding overlaps with the guest's work. Dropping the
//! cursor ends the worker at its next batch (and runs the driver's cancel hook, if any, so
//! a statement that is still computing is interrupted).

use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

use crate::sandbox::bindings::aetherflow::step::sql::{Cell, Column, SqlError, SqlErrorKind};

/// Rows per batch handed from the worker to the cursor.
pub const CHUNK_ROWS: usize = 1024;
/// Batches buffered ahead of the guest.
const CHUNKS_AHEAD: usize = 4;

type Batch = Result<Vec<Vec<Cell>>, SqlError>;

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

/// The worker's end for rows: collects them into batches of [`CHUNK_ROWS`].
pub struct RowSink {
    tx: SyncSender<Batch>,
    batch: Vec<Vec<Cell>>,
}

impl RowSink {
    /// Queue one row. Returns false when the cursor was dropped (the worker should stop).
    pub fn push(&mut self, row: Vec<Cell>) -> bool {
        self.batch.push(row);
        if self.batch.len() >= CHUNK_ROWS {
            let full = std::mem::replace(&mut self.batch, Vec::with_capacity(CHUNK_ROWS));
            return self.tx.send(Ok(full)).is_ok();
        }
        true
    }

    /// The rows queued so far, then the error (the guest sees the rows, then the error).
    pub fn fail(mut self, e: SqlError) {
        if !self.batch.is_empty() {
            let rows = std::mem::take(&mut self.batch);
            if self.tx.send(Ok(rows)).is_err() {
                return;
            }
        }
        let _ = self.tx.send(Err(e));
    }

    /// The result is complete: hand over the last rows. Dropping the sink then tells the
    /// cursor the result has ended.
    pub fn finish(mut self) {
        if !self.batch.is_empty() {
            let rows = std::mem::take(&mut self.batch);
            let _ = self.tx.send(Ok(rows));
        }
    }
}

/// A streaming result set (the host side of the WIT `cursor` resource), whatever the driver.
pub struct SqlCursor {
    columns: Vec<Column>,
    rx: Receiver<Batch>,
    pending: VecDeque<Vec<Cell>>,
    done: bool,
    cancel: Option<Cancel>,
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
    pub fn spawn<F>(driver: &str, work: F) -> Result<SqlCursor, SqlError>
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
                        batch: Vec::with_capacity(CHUNK_ROWS),
                    },
                )
            })
            .map_err(|e| SqlError {
                kind: SqlErrorKind::Connection,
                message: format!("cannot start the {driver} worker: {e}"),
            })?;
        match head_rx.recv() {
            Ok(Ok(head)) => Ok(SqlCursor {
                columns: head.columns,
                rx,
                pending: VecDeque::new(),
                done: false,
                cancel: head.cancel,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SqlError {
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
        while self.pending.len() < max_rows && !self.done {
            match self.rx.recv() {
                Ok(Ok(rows)) => self.pending.extend(rows),
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => self.done = true,
            }
        }
        let n = max_rows.min(self.pending.len());
        Ok(self.pending.drain(..n).collect())
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
