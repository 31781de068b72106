//! The `db` connector for SQLite (`drivers sqlite3` / `sqlite`).
//!
//! A query runs on its own worker thread that converts rows to typed cells and hands them
//! over in bounded batches: the guest pulls batches at its own pace, memory stays flat
//! whatever the result size, and decoding overlaps with the guest's work. Dropping the
//! cursor interrupts the statement and ends the worker.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::Duration;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, InterruptHandle, OpenFlags};
use serde_json::{Map, Value};

use crate::sandbox::bindings::aetherflow::step::sql::{Cell, Column, SqlError, SqlErrorKind};

/// Rows per batch handed from the worker to the cursor.
const CHUNK_ROWS: usize = 1024;
/// Batches buffered ahead of the guest.
const CHUNKS_AHEAD: usize = 4;

/// Parameters of one statement.
pub enum Params {
    None,
    Positional(Vec<SqlValue>),
    Named(Vec<(String, SqlValue)>),
}

/// `config.path`, or `config.url` with its `sqlite:///` prefix removed (as the reference).
pub fn path_from_config(config: &Map<String, Value>) -> Result<PathBuf, String> {
    if let Some(p) = config
        .get("path")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        return Ok(PathBuf::from(p));
    }
    if let Some(u) = config
        .get("url")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        return Ok(PathBuf::from(u.strip_prefix("sqlite:///").unwrap_or(u)));
    }
    Err("SQLite connector requires config.path or config.url".into())
}

pub fn parse_params(json: &str) -> Result<Params, SqlError> {
    let bad = |m: String| SqlError {
        kind: SqlErrorKind::Query,
        message: m,
    };
    let v: Value = if json.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(json).map_err(|e| bad(format!("params are not valid JSON: {e}")))?
    };
    Ok(match v {
        Value::Null => Params::None,
        Value::Array(a) => Params::Positional(
            a.iter()
                .map(to_sql)
                .collect::<Result<_, _>>()
                .map_err(bad)?,
        ),
        Value::Object(m) => Params::Named(
            m.iter()
                .map(|(k, v)| {
                    let key = if k.starts_with([':', '@', '$']) {
                        k.clone()
                    } else {
                        format!(":{k}")
                    };
                    to_sql(v).map(|v| (key, v))
                })
                .collect::<Result<_, _>>()
                .map_err(bad)?,
        ),
        other => {
            return Err(bad(format!(
                "params must be null, a list or an object, got {other}"
            )))
        }
    })
}

fn to_sql(v: &Value) -> Result<SqlValue, String> {
    Ok(match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(*b as i64),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        other => return Err(format!("a SQL parameter must be a scalar, got {other}")),
    })
}

fn open(path: &Path) -> Result<Connection, SqlError> {
    // No CREATE flag: a typo in the path must not silently query a new empty database.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| SqlError {
        kind: SqlErrorKind::Connection,
        message: format!("cannot open sqlite database `{}`: {e}", path.display()),
    })?;
    let _ = conn.busy_timeout(Duration::from_secs(30));
    Ok(conn)
}

fn query_error(e: rusqlite::Error) -> SqlError {
    SqlError {
        kind: SqlErrorKind::Query,
        message: e.to_string(),
    }
}

fn bind(stmt: &mut rusqlite::Statement<'_>, params: &Params) -> rusqlite::Result<()> {
    match params {
        Params::None => Ok(()),
        Params::Positional(values) => {
            for (i, v) in values.iter().enumerate() {
                stmt.raw_bind_parameter(i + 1, v)?;
            }
            Ok(())
        }
        Params::Named(values) => {
            for (name, v) in values {
                match stmt.parameter_index(name)? {
                    Some(idx) => stmt.raw_bind_parameter(idx, v)?,
                    None => {
                        return Err(rusqlite::Error::InvalidParameterName(name.clone()));
                    }
                }
            }
            Ok(())
        }
    }
}

pub fn execute(pool: &Pool, statement: &str, params: &Params) -> Result<u64, SqlError> {
    let conn = pool.take()?;
    let result = (|| {
        let mut stmt = conn.prepare(statement).map_err(query_error)?;
        bind(&mut stmt, params).map_err(query_error)?;
        stmt.raw_execute().map(|n| n as u64).map_err(query_error)
    })();
    pool.give(conn);
    result
}

type Batch = Result<Vec<Vec<Cell>>, SqlError>;

/// Idle connections of one resource, reused within the run when its cache policy allows
/// it (`run`/`process`); with `none` every operation opens and closes its own.
pub struct Pool {
    path: PathBuf,
    keep: bool,
    idle: std::sync::Mutex<Vec<Connection>>,
}

impl Pool {
    pub fn new(path: PathBuf, keep: bool) -> Pool {
        Pool {
            path,
            keep,
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Result<Connection, SqlError> {
        if self.keep {
            if let Some(conn) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
                return Ok(conn);
            }
        }
        open(&self.path)
    }

    fn give(&self, conn: Connection) {
        if self.keep {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
    }
}

/// A streaming result set (the host side of the WIT `cursor` resource).
pub struct SqlCursor {
    columns: Vec<Column>,
    rx: Receiver<Batch>,
    pending: VecDeque<Vec<Cell>>,
    done: bool,
    interrupt: Option<InterruptHandle>,
}

impl Drop for SqlCursor {
    fn drop(&mut self) {
        if !self.done {
            if let Some(h) = &self.interrupt {
                h.interrupt();
            }
        }
    }
}

impl SqlCursor {
    pub fn open(
        pool: std::sync::Arc<Pool>,
        statement: String,
        params: Params,
    ) -> Result<Self, SqlError> {
        let (head_tx, head_rx) =
            sync_channel::<Result<(Vec<Column>, InterruptHandle), SqlError>>(1);
        let (tx, rx) = sync_channel::<Batch>(CHUNKS_AHEAD);
        std::thread::Builder::new()
            .name("aetherflow-sqlite".into())
            .spawn(move || {
                let conn = match pool.take() {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = head_tx.send(Err(e));
                        return;
                    }
                };
                stream(&conn, &statement, &params, &head_tx, &tx);
                // Back to the pool before `tx` is dropped, so a step that runs after this
                // result ended finds the connection (and its temp tables) idle.
                pool.give(conn);
            })
            .map_err(|e| SqlError {
                kind: SqlErrorKind::Connection,
                message: format!("cannot start the sqlite worker: {e}"),
            })?;
        match head_rx.recv() {
            Ok(Ok((columns, interrupt))) => Ok(SqlCursor {
                columns,
                rx,
                pending: VecDeque::new(),
                done: false,
                interrupt: Some(interrupt),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SqlError {
                kind: SqlErrorKind::Connection,
                message: "the sqlite worker stopped unexpectedly".into(),
            }),
        }
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

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

/// The worker's part of a query: prepare, bind, send the columns, then stream the rows in
/// batches until the result ends, an error occurs or the cursor is dropped.
fn stream(
    conn: &Connection,
    statement: &str,
    params: &Params,
    head_tx: &std::sync::mpsc::SyncSender<Result<(Vec<Column>, InterruptHandle), SqlError>>,
    tx: &std::sync::mpsc::SyncSender<Batch>,
) {
    let mut stmt = match conn.prepare(statement) {
        Ok(s) => s,
        Err(e) => {
            let _ = head_tx.send(Err(query_error(e)));
            return;
        }
    };
    if let Err(e) = bind(&mut stmt, params) {
        let _ = head_tx.send(Err(query_error(e)));
        return;
    }
    let columns: Vec<Column> = stmt
        .columns()
        .map(|c| Column {
            name: c.name().to_string(),
            decl_type: c.decl_type().map(str::to_string),
        })
        .collect();
    let ncols = columns.len();
    if head_tx
        .send(Ok((columns, conn.get_interrupt_handle())))
        .is_err()
    {
        return;
    }
    let mut rows = stmt.raw_query();
    let mut batch = Vec::with_capacity(CHUNK_ROWS);
    loop {
        match rows.next() {
            Ok(Some(row)) => {
                let mut cells = Vec::with_capacity(ncols);
                for i in 0..ncols {
                    cells.push(match row.get_ref(i) {
                        Ok(v) => to_cell(v),
                        Err(e) => {
                            let _ = tx.send(Err(query_error(e)));
                            return;
                        }
                    });
                }
                batch.push(cells);
                if batch.len() == CHUNK_ROWS
                    && tx
                        .send(Ok(std::mem::replace(
                            &mut batch,
                            Vec::with_capacity(CHUNK_ROWS),
                        )))
                        .is_err()
                {
                    return; // the cursor was dropped
                }
            }
            Ok(None) => {
                if !batch.is_empty() {
                    let _ = tx.send(Ok(batch));
                }
                return; // dropping `tx` tells the cursor the result is complete
            }
            Err(e) => {
                let _ = tx.send(Err(query_error(e)));
                return;
            }
        }
    }
}

fn to_cell(v: ValueRef<'_>) -> Cell {
    match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Integer(i),
        ValueRef::Real(f) => Cell::Real(f),
        ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
    }
}
