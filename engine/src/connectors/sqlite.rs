//! The `db` connector for SQLite (drivers `sqlite3` / `sqlite`).
//!
//! A query runs on its own worker thread (see [`super::sql`]); dropping the cursor
//! interrupts the statement and ends the worker.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags};
use serde_json::{Map, Value};

use super::sql::{self, Head, HeadSender, RowSink, SqlCursor};
use crate::sandbox::bindings::aetherflow::step::sql::{Column, SqlError, SqlErrorKind};

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

/// Run a statement on the calling thread; SQLite interrupts it at `deadline` (checked
/// every few thousand virtual-machine instructions).
pub fn execute(
    pool: &Pool,
    statement: &str,
    params: &Params,
    deadline: Option<Instant>,
) -> Result<u64, SqlError> {
    let mut conn = pool.take()?;
    if let Some(d) = deadline {
        conn.progress_handler(PROGRESS_OPS, Some(move || Instant::now() >= d))
            .map_err(query_error)?;
    }
    let result = (|| {
        let mut stmt = conn.prepare(statement).map_err(query_error)?;
        bind(&mut stmt, params).map_err(query_error)?;
        stmt.raw_execute().map(|n| n as u64).map_err(query_error)
    })();
    // A connection that kept this deadline would interrupt later statements: drop it.
    if conn.progress_handler(0, None::<fn() -> bool>).is_ok() {
        pool.give(conn);
    }
    result
}

/// How often (in SQLite virtual-machine instructions) a statement checks its deadline.
const PROGRESS_OPS: i32 = 4096;

/// Idle connections of one SQLite resource.
pub type Pool = sql::Pool<Connection>;

/// A pool for the database at `path`; `keep` reuses connections within the run.
pub fn pool(path: PathBuf, keep: bool) -> Pool {
    sql::Pool::new(keep, move || open(&path))
}

/// Run a query on a worker thread; rows stream through the returned cursor.
pub fn query(
    pool: std::sync::Arc<Pool>,
    statement: String,
    params: Params,
    deadline: Option<Instant>,
) -> Result<SqlCursor, SqlError> {
    SqlCursor::spawn("sqlite", deadline, move |head, sink| {
        let conn = match pool.take() {
            Ok(c) => c,
            Err(e) => {
                head.send(Err(e));
                return;
            }
        };
        stream(&conn, &statement, &params, head, sink);
        // Back to the pool before the sink is dropped, so a step that runs after this
        // result ended finds the connection (and its temp tables) idle.
        pool.give(conn);
    })
}

/// The worker's part of a query: prepare, bind, send the columns, then stream the rows in
/// batches until the result ends, an error occurs or the cursor is dropped.
fn stream(
    conn: &Connection,
    statement: &str,
    params: &Params,
    head: HeadSender,
    mut sink: RowSink,
) {
    let mut stmt = match conn.prepare(statement) {
        Ok(s) => s,
        Err(e) => {
            head.send(Err(query_error(e)));
            return;
        }
    };
    if let Err(e) = bind(&mut stmt, params) {
        head.send(Err(query_error(e)));
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
    let interrupt = conn.get_interrupt_handle();
    let cancel: sql::Cancel = Box::new(move || interrupt.interrupt());
    if !head.send(Ok(Head {
        columns,
        cancel: Some(cancel),
    })) {
        return;
    }
    let mut rows = stmt.raw_query();
    loop {
        match rows.next() {
            Ok(Some(row)) => {
                for i in 0..ncols {
                    match row.get_ref(i) {
                        Ok(v) => put_cell(&mut sink, v),
                        Err(e) => return sink.fail(query_error(e)),
                    }
                }
                if !sink.end_row() {
                    return; // the cursor was dropped
                }
            }
            Ok(None) => return sink.finish(),
            Err(e) => return sink.fail(query_error(e)),
        }
    }
}

/// One value into the row being built (text that is not valid UTF-8 is repaired with
/// U+FFFD, as the typed cells always did).
fn put_cell(sink: &mut RowSink, v: ValueRef<'_>) {
    match v {
        ValueRef::Null => sink.null(),
        ValueRef::Integer(i) => sink.int(i),
        ValueRef::Real(f) => sink.real(f),
        // SQLite text is UTF-8 unless a writer stored other bytes: check fast, repair rarely.
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => sink.text(sql::kind::TEXT, s),
            Err(_) => sink.text(sql::kind::TEXT, &String::from_utf8_lossy(t)),
        },
        ValueRef::Blob(b) => sink.blob(b),
    }
}
