//! SQLite implementation of [`StateStore`].
//!
//! # Concurrency
//!
//! The database is in WAL mode, so readers never block the (single) writer. Each store owns
//! one connection, guarded by a mutex, with a 30 s busy timeout. Every transition is ONE
//! transaction, and every write transaction starts with `BEGIN IMMEDIATE`: the write lock is
//! taken before anything is read, so a read-then-write sequence (lock acquisition, the
//! `seq`/`attempts` counters) is atomic across threads *and processes* using the same file,
//! and a transaction never fails half-way with `SQLITE_BUSY` when upgrading a read lock.
//!
//! # Durability
//!
//! [`Durability::Process`] runs with `synchronous=NORMAL`: in WAL mode a commit appends to the
//! WAL with a plain `write()`, without fsync. A committed transition is then in the OS page
//! cache and survives the process being killed (including `kill -9`); the WAL is only synced
//! at checkpoints, so power loss can lose the most recent commits (never corrupt the file).
//!
//! [`Durability::Power`] costs exactly one fsync per step. It switches `PRAGMA synchronous`
//! on the connection before each transaction, by the kind of transition:
//!
//! - step ends (`step_finished`), `end_run` and lock operations commit with
//!   `synchronous=FULL`, i.e. the WAL is fsynced before the commit returns: one fsync per
//!   step, plus one per run and per lock operation;
//! - everything else (`step_started`, `begin_run`, every job status, creating or migrating
//!   the schema) commits with
//!   `synchronous=OFF`: no fsync. Job statuses are derived from their steps, so a resume
//!   recomputes a job whose status a power loss took back.
//!
//! This is sound because the WAL is an append-only log replayed in order: the fsync of a
//! later FULL commit also makes every earlier OFF commit durable, and after power loss SQLite
//! recovers the WAL only up to the last valid commit frame (frames carry checksums), so the
//! database is always some prefix of the committed history. What can be lost is therefore only
//! a trailing run of unsynced records after the last synced one: that a step began but did
//! not end, a run's start, job statuses (recomputed by the resume). A resume re-runs such a step anyway, and its attempt
//! counter is merely lower than it could be. A step's outputs are written by `step_finished`,
//! which is durable when it returns.
//!
//! One caveat makes the OFF transactions also turn off automatic checkpoints: SQLite runs
//! the auto-checkpoint inside the committing connection with that connection's sync
//! setting, and a checkpoint without fsync could copy WAL frames into the database file
//! unsynced and then let the WAL be restarted, which on power loss would lose FULL-committed
//! data. So `wal_autocheckpoint` is 0 while `synchronous=OFF` and back to the default 1000
//! under FULL; checkpoints then happen (synced) after FULL commits. The periodic checkpoint
//! and the WAL header rewrite after a WAL restart add a few amortised fsyncs.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, Type, ValueRef};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, ToSql, TransactionBehavior};

use crate::{
    Durability, JobDetail, JobKey, JobRecord, JobStatus, Lease, Result, RunDetail, RunRecord,
    RunStart, RunStatus, StateError, StateStore, StepEnd, StepKey, StepOutcome, StepRecord,
    StepStatus,
};

/// A `BEGIN IMMEDIATE` transaction on a connection, rolled back unless committed (also
/// when the code inside panics, so a poisoned lock never holds an open transaction).
struct WriteTx<'c> {
    conn: &'c Connection,
    done: bool,
}

impl<'c> WriteTx<'c> {
    fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(WriteTx { conn, done: false })
    }

    fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.done = true;
        Ok(())
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if !self.done && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// The schema version stored in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 2;

const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// SQLite's default `wal_autocheckpoint` (pages).
const DEFAULT_AUTOCHECKPOINT: u32 = 1000;

/// The definition of `step_runs` (schema 2) after its name: the fresh schema and the
/// migration from version 1 both create the table from it.
macro_rules! step_runs_definition {
    () => {
        "(
    flow_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    step_type TEXT,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    started_at_ms INTEGER,
    ended_at_ms INTEGER,
    duration_ms INTEGER,
    outputs_json TEXT,
    reason TEXT,
    error TEXT,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY(flow_id, run_id, job_id, step_id)
) WITHOUT ROWID;
"
    };
}

/// The current schema, for a new database.
const SCHEMA: &str = concat!(
    "
CREATE TABLE IF NOT EXISTS runs(
    flow_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    status TEXT NOT NULL,
    flow_yaml TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    started_at_ms INTEGER NOT NULL,
    resumed_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY(flow_id, run_id)
);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs(started_at_ms);
CREATE INDEX IF NOT EXISTS runs_by_run_id ON runs(run_id);
CREATE TABLE IF NOT EXISTS job_runs(
    flow_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    started_at_ms INTEGER,
    ended_at_ms INTEGER,
    duration_ms INTEGER,
    skip_reason TEXT,
    outputs_json TEXT,
    error TEXT,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY(flow_id, run_id, job_id)
);
CREATE INDEX IF NOT EXISTS job_runs_by_seq ON job_runs(flow_id, run_id, seq);
CREATE TABLE IF NOT EXISTS step_runs",
    step_runs_definition!(),
    "CREATE TABLE IF NOT EXISTS locks(
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    fence INTEGER NOT NULL,
    acquired_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta(
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta(key, value) VALUES('lock_fence', 0);
PRAGMA user_version = 2;
"
);

/// Version 1 to 2: `step_runs` becomes a `WITHOUT ROWID` table (the primary key is the
/// table) and loses its `seq` index (a run's steps are read through the key and sorted),
/// so a step transition writes one b-tree page instead of three.
const MIGRATE_V1_V2: &str = concat!(
    "
CREATE TABLE step_runs_v2",
    step_runs_definition!(),
    "INSERT INTO step_runs_v2(flow_id, run_id, job_id, step_id, seq, step_type, status, attempts,
                         started_at_ms, ended_at_ms, duration_ms, outputs_json, reason, error,
                         updated_at_ms)
    SELECT flow_id, run_id, job_id, step_id, seq, step_type, status, attempts, started_at_ms,
           ended_at_ms, duration_ms, outputs_json, reason, error, updated_at_ms
    FROM step_runs;
DROP TABLE step_runs;
ALTER TABLE step_runs_v2 RENAME TO step_runs;
PRAGMA user_version = 2;
"
);

const RUN_COLS: &str = "flow_id, run_id, status, flow_yaml, attempt, started_at_ms, \
                        resumed_at_ms, ended_at_ms";
const JOB_COLS: &str = "flow_id, run_id, job_id, status, started_at_ms, ended_at_ms, \
                        duration_ms, skip_reason, outputs_json, error, updated_at_ms";
const STEP_COLS: &str = "flow_id, run_id, job_id, step_id, step_type, status, attempts, \
                         started_at_ms, ended_at_ms, duration_ms, outputs_json, reason, error, \
                         updated_at_ms";

/// Value of `PRAGMA synchronous` (WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
    Off,
    Normal,
    Full,
}

impl Sync {
    fn pragmas(self) -> String {
        let (sync, autocheckpoint) = match self {
            // See the module docs: no unsynced checkpoints.
            Sync::Off => ("OFF", 0),
            Sync::Normal => ("NORMAL", DEFAULT_AUTOCHECKPOINT),
            Sync::Full => ("FULL", DEFAULT_AUTOCHECKPOINT),
        };
        format!("PRAGMA synchronous = {sync}; PRAGMA wal_autocheckpoint = {autocheckpoint};")
    }
}

/// Kind of transition, which decides its sync level under [`Durability::Power`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Records only that something began; may be lost on power loss.
    Start,
    /// Records a result; durable when the call returns.
    End,
}

struct Inner {
    conn: Connection,
    /// The sync level currently set on `conn`; `None` if unknown (a pragma failed).
    sync: Option<Sync>,
}

/// Error inside a transaction, before the path and operation are attached.
enum TxError {
    Sql(rusqlite::Error),
    State(StateError),
}

impl From<rusqlite::Error> for TxError {
    fn from(e: rusqlite::Error) -> Self {
        TxError::Sql(e)
    }
}

impl From<StateError> for TxError {
    fn from(e: StateError) -> Self {
        TxError::State(e)
    }
}

/// A state store in one SQLite file. Several stores (in one or several processes) may use
/// the same file concurrently.
pub struct SqliteStore {
    path: PathBuf,
    durability: Durability,
    inner: Mutex<Inner>,
    /// Last `seq` handed out by this process (see [`SqliteStore::next_seq`]).
    last_seq: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

/// Switch to WAL. Changing the journal mode takes an exclusive lock and SQLite does not
/// call the busy handler for it, so two processes opening a fresh store at the same
/// moment would see "database is locked": retry with backoff up to the busy timeout.
fn set_wal(conn: &Connection) -> rusqlite::Result<String> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = std::time::Duration::from_millis(2);
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// Keep the WAL file between processes and do not checkpoint on close. By default the
/// last connection to close checkpoints (two fsyncs) and deletes the WAL, and the next
/// process recreates it (an fsync of the WAL and of its directory): four fsyncs per
/// `aetherflow run` even when commits need not wait for the disk, which dominated the
/// start-up time of short runs. Checkpoints still run automatically as the WAL grows.
fn keep_wal(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    let mut on: std::ffi::c_int = 1;
    // SAFETY: `handle()` is the live connection owned by `conn`; SQLITE_FCNTL_PERSIST_WAL
    // takes a pointer to an int that is only read and written during the call.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&mut on as *mut std::ffi::c_int).cast(),
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rc),
            None,
        ));
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating it, its parent directories and the schema if needed) the store at
    /// `path`.
    pub fn open(path: impl AsRef<Path>, durability: Durability) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StateError::CreateDir {
                path: path.clone(),
                source,
            })?;
        }
        let sql = |op: &'static str| {
            let path = path.clone();
            move |source| StateError::Sqlite { path, op, source }
        };
        // SQLite's unix VFS writing each WAL frame with one call (see `vfs`).
        let conn = match crate::vfs::name() {
            Some(vfs) => Connection::open_with_flags_and_vfs(&path, OpenFlags::default(), vfs),
            None => Connection::open(&path),
        }
        .map_err(sql("open"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sql("set busy timeout"))?;
        // Every statement of the store stays prepared: re-parsing SQL showed up in profiles
        // of long flows (rusqlite's default cache holds 16).
        conn.set_prepared_statement_cache_capacity(64);
        let mode = set_wal(&conn).map_err(sql("set journal mode"))?;
        keep_wal(&conn).map_err(sql("keep the write-ahead log"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StateError::NotWal { path, mode });
        }
        let sync = match durability {
            Durability::Process => Sync::Normal,
            Durability::Power => Sync::Full,
        };
        // The schema is created (or migrated) without waiting for the disk: it becomes
        // durable with the first synced commit, as an unsynced step start does (see the
        // module docs). Power loss before that leaves the database as it was, and the next
        // open creates the schema again. A new store saves the two fsyncs of that commit.
        conn.execute_batch(&Sync::Off.pragmas())
            .map_err(sql("set synchronous"))?;
        let mut store = SqliteStore {
            path,
            durability,
            inner: Mutex::new(Inner {
                conn,
                sync: Some(Sync::Off),
            }),
            last_seq: std::sync::atomic::AtomicI64::new(0),
        };
        store.init_schema()?;
        let inner = store
            .inner
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        inner
            .conn
            .execute_batch(&sync.pragmas())
            .map_err(|source| StateError::Sqlite {
                path: store.path.clone(),
                op: "set synchronous",
                source,
            })?;
        inner.sync = Some(sync);
        Ok(store)
    }

    /// The execution-order key of a new step row: wall-clock microseconds, strictly
    /// increasing within this process. It used to be `MAX(seq) + 1` of the run, but that
    /// subquery compares bound parameters with an indexed column, and with SQLite's STAT4
    /// such a statement is re-prepared every time it is re-bound (a quarter of the engine's
    /// CPU on a 500-step flow). Rows of one run written by several processes stay ordered
    /// by when they were first recorded.
    fn next_seq(&self) -> i64 {
        use std::sync::atomic::Ordering;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let mut last = self.last_seq.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self.last_seq.compare_exchange_weak(
                last,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// The start of an attempt. The first attempt of a step is a plain insert; only when
    /// the row exists (a retry, a resumed run) does it take the upsert that counts the
    /// attempt and the lookup that reads the count back.
    fn tx_step_started(
        &self,
        tx: &Connection,
        key: &StepKey<'_>,
        step_type: &str,
        started_at_ms: i64,
        now: i64,
    ) -> Result<u32, TxError> {
        let seq = self.next_seq();
        let args = params![
            key.flow_id,
            key.run_id,
            key.job_id,
            key.step_id,
            step_type,
            StepStatus::Running,
            started_at_ms,
            now,
            seq
        ];
        let first = tx
            .prepare_cached(
                "INSERT INTO step_runs(flow_id, run_id, job_id, step_id, seq, step_type,
                                       status, attempts, started_at_ms, updated_at_ms)
                 VALUES(?1, ?2, ?3, ?4, ?9, ?5, ?6, 1, ?7, ?8)",
            )?
            .execute(args);
        match first {
            Ok(_) => return Ok(1),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation => {}
            Err(e) => return Err(e.into()),
        }
        tx.prepare_cached(
            "INSERT INTO step_runs(flow_id, run_id, job_id, step_id, seq, step_type,
                                       status, attempts, started_at_ms, updated_at_ms)
                 VALUES(?1, ?2, ?3, ?4,
                        ?9,
                        ?5, ?6, 1, ?7, ?8)
                 ON CONFLICT(flow_id, run_id, job_id, step_id) DO UPDATE SET
                     step_type = excluded.step_type,
                     status = excluded.status,
                     attempts = step_runs.attempts + 1,
                     started_at_ms = excluded.started_at_ms,
                     ended_at_ms = NULL,
                     duration_ms = NULL,
                     outputs_json = NULL,
                     reason = NULL,
                     error = NULL,
                     updated_at_ms = excluded.updated_at_ms",
        )?
        .execute(args)?;
        // A separate lookup rather than `RETURNING`, which costs SQLite more (it
        // materialises the returned rows first).
        let attempts = tx
            .prepare_cached(
                "SELECT attempts FROM step_runs
                 WHERE flow_id = ?1 AND run_id = ?2 AND job_id = ?3 AND step_id = ?4",
            )?
            .query_row(
                params![key.flow_id, key.run_id, key.job_id, key.step_id],
                |r| r.get::<_, u32>(0),
            )?;
        Ok(attempts)
    }

    /// The end of an attempt: an update of the row its start wrote, or an insert when
    /// there is none (a step recorded only as it ends, e.g. skipped by a short-circuit).
    fn tx_step_finished(
        &self,
        tx: &Connection,
        key: &StepKey<'_>,
        end: &StepEnd,
        outputs: Option<&str>,
        now: i64,
    ) -> Result<(), TxError> {
        let seq = self.next_seq();
        let args = params![
            key.flow_id,
            key.run_id,
            key.job_id,
            key.step_id,
            end.status,
            end.ended_at_ms,
            end.duration_ms,
            outputs,
            end.reason,
            end.error,
            now,
            seq
        ];
        // The update takes all but the last (`seq`, for a new row only).
        let updated = tx
            .prepare_cached(
                "UPDATE step_runs SET status = ?5, ended_at_ms = ?6, duration_ms = ?7,
                                      outputs_json = ?8, reason = ?9, error = ?10,
                                      updated_at_ms = ?11
                 WHERE flow_id = ?1 AND run_id = ?2 AND job_id = ?3 AND step_id = ?4",
            )?
            .execute(&args[..11])?;
        if updated > 0 {
            return Ok(());
        }
        tx.prepare_cached(
            "INSERT INTO step_runs(flow_id, run_id, job_id, step_id, seq, step_type, status,
                                   attempts, ended_at_ms, duration_ms, outputs_json, reason,
                                   error, updated_at_ms)
             VALUES(?1, ?2, ?3, ?4, ?12, NULL, ?5, 0, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(args)?;
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    fn init_schema(&mut self) -> Result<()> {
        let path = self.path.clone();
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        let version = |conn: &Connection| -> rusqlite::Result<i64> {
            conn.pragma_query_value(None, "user_version", |r| r.get(0))
        };
        let check = |found: i64| {
            if found > SCHEMA_VERSION {
                Err(StateError::SchemaTooNew {
                    path: path.clone(),
                    found,
                    supported: SCHEMA_VERSION,
                })
            } else {
                Ok(())
            }
        };
        let found = version(&inner.conn).map_err(|source| StateError::Sqlite {
            path: path.clone(),
            op: "read schema version",
            source,
        })?;
        check(found)?;
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        // Create under the write lock, re-checking: another process may be doing the same.
        let result = (|| -> Result<(), TxError> {
            let tx = inner
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let found = version(&tx)?;
            check(found)?;
            if found == 0 {
                let existing: Option<String> = tx
                    .query_row(
                        "SELECT name FROM sqlite_master WHERE type = 'table' \
                         AND name IN ('runs', 'job_runs', 'step_runs', 'locks', 'meta') LIMIT 1",
                        [],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(table) = existing {
                    return Err(StateError::ForeignSchema {
                        path: path.clone(),
                        table,
                    }
                    .into());
                }
                tx.execute_batch(SCHEMA)?;
            } else if found == 1 {
                tx.execute_batch(MIGRATE_V1_V2)?;
            }
            tx.commit()?;
            Ok(())
        })();
        result.map_err(|e| tx_error(&path, "create schema", e))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the guard cannot leave a transaction open (the transaction
        // rolls back on drop), so a poisoned connection is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction with the sync level of `phase`.
    fn write<T>(
        &self,
        op: &'static str,
        phase: Phase,
        f: impl FnOnce(&Connection) -> Result<T, TxError>,
    ) -> Result<T> {
        let want = match (self.durability, phase) {
            (Durability::Process, _) => Sync::Normal,
            (Durability::Power, Phase::Start) => Sync::Off,
            (Durability::Power, Phase::End) => Sync::Full,
        };
        let mut guard = self.lock();
        let inner = &mut *guard;
        let result = (|| {
            if inner.sync != Some(want) {
                inner.sync = None;
                inner.conn.execute_batch(&want.pragmas())?;
                inner.sync = Some(want);
            }
            // BEGIN and COMMIT as cached statements: a step's transition is one short
            // transaction, and parsing them anew each time is a visible part of its cost.
            let tx = WriteTx::begin(&inner.conn)?;
            let value = f(tx.conn)?;
            tx.commit()?;
            Ok(value)
        })();
        result.map_err(|e| tx_error(&self.path, op, e))
    }

    /// Runs `f` in one read transaction (a consistent snapshot).
    fn read<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection) -> Result<T, TxError>,
    ) -> Result<T> {
        let mut guard = self.lock();
        let result = (|| {
            let tx = guard.conn.transaction()?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        result.map_err(|e| tx_error(&self.path, op, e))
    }

    fn to_json(
        &self,
        key: &dyn std::fmt::Display,
        value: Option<&serde_json::Value>,
    ) -> Result<Option<String>> {
        value
            .map(|v| {
                serde_json::to_string(v).map_err(|source| StateError::Json {
                    path: self.path.clone(),
                    key: key.to_string(),
                    source,
                })
            })
            .transpose()
    }
}

fn tx_error(path: &Path, op: &'static str, e: TxError) -> StateError {
    match e {
        TxError::Sql(source) => StateError::Sqlite {
            path: path.to_path_buf(),
            op,
            source,
        },
        TxError::State(e) => e,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ttl_ms(ttl_seconds: u64) -> i64 {
    i64::try_from(ttl_seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
}

#[derive(Debug)]
struct BadValue(String);

impl std::fmt::Display for BadValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadValue {}

macro_rules! sql_status {
    ($($name:ident $what:literal),+) => {$(
        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let s = value.as_str()?;
                $name::parse(s).ok_or_else(|| {
                    FromSqlError::Other(Box::new(BadValue(format!(
                        "invalid {} `{s}`",
                        $what
                    ))))
                })
            }
        }
    )+};
}

sql_status!(RunStatus "run status", JobStatus "job status", StepStatus "step status", StepOutcome "step status");

fn json_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<serde_json::Value>> {
    let text: Option<String> = row.get(idx)?;
    text.map(|s| {
        serde_json::from_str(&s)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
    })
    .transpose()
}

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        flow_id: row.get(0)?,
        run_id: row.get(1)?,
        status: row.get(2)?,
        flow_yaml: row.get(3)?,
        attempt: row.get(4)?,
        started_at_ms: row.get(5)?,
        resumed_at_ms: row.get(6)?,
        ended_at_ms: row.get(7)?,
    })
}

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<JobRecord> {
    Ok(JobRecord {
        flow_id: row.get(0)?,
        run_id: row.get(1)?,
        job_id: row.get(2)?,
        status: row.get(3)?,
        started_at_ms: row.get(4)?,
        ended_at_ms: row.get(5)?,
        duration_ms: row.get(6)?,
        skip_reason: row.get(7)?,
        outputs: json_col(row, 8)?,
        error: row.get(9)?,
        updated_at_ms: row.get(10)?,
    })
}

fn step_from_row(row: &Row<'_>) -> rusqlite::Result<StepRecord> {
    Ok(StepRecord {
        flow_id: row.get(0)?,
        run_id: row.get(1)?,
        job_id: row.get(2)?,
        step_id: row.get(3)?,
        step_type: row.get(4)?,
        status: row.get(5)?,
        attempts: row.get(6)?,
        started_at_ms: row.get(7)?,
        ended_at_ms: row.get(8)?,
        duration_ms: row.get(9)?,
        outputs: json_col(row, 10)?,
        reason: row.get(11)?,
        error: row.get(12)?,
        updated_at_ms: row.get(13)?,
    })
}

fn jobs_of_run(conn: &Connection, flow_id: &str, run_id: &str) -> rusqlite::Result<Vec<JobRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {JOB_COLS} FROM job_runs WHERE flow_id = ?1 AND run_id = ?2 ORDER BY seq"
    ))?;
    let rows = stmt.query_map(params![flow_id, run_id], job_from_row)?;
    rows.collect()
}

fn steps_of_run(
    conn: &Connection,
    flow_id: &str,
    run_id: &str,
    job_id: Option<&str>,
) -> rusqlite::Result<Vec<StepRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {STEP_COLS} FROM step_runs WHERE flow_id = ?1 AND run_id = ?2 \
         AND (?3 IS NULL OR job_id = ?3) ORDER BY seq"
    ))?;
    let rows = stmt.query_map(params![flow_id, run_id, job_id], step_from_row)?;
    rows.collect()
}

impl StateStore for SqliteStore {
    fn begin_run(&self, start: &RunStart<'_>) -> Result<RunRecord> {
        let now = now_ms();
        // Not synced on its own: losing a run start to power loss only loses the attempt
        // counter's increment; the first finished step makes it durable (the WAL is
        // sequential, so that fsync covers every earlier frame).
        self.write("begin run", Phase::Start, |tx| {
            let mut stmt = tx.prepare_cached(&format!(
                "INSERT INTO runs(flow_id, run_id, status, flow_yaml, attempt, started_at_ms, \
                                  resumed_at_ms, ended_at_ms, updated_at_ms)
                 VALUES(?1, ?2, ?3, ?4, 1, ?5, ?5, NULL, ?6)
                 ON CONFLICT(flow_id, run_id) DO UPDATE SET
                     status = excluded.status,
                     flow_yaml = excluded.flow_yaml,
                     attempt = runs.attempt + 1,
                     resumed_at_ms = excluded.resumed_at_ms,
                     ended_at_ms = NULL,
                     updated_at_ms = excluded.updated_at_ms
                 RETURNING {RUN_COLS}"
            ))?;
            let record = stmt.query_row(
                params![
                    start.flow_id,
                    start.run_id,
                    RunStatus::Running,
                    start.flow_yaml,
                    start.started_at_ms,
                    now
                ],
                run_from_row,
            )?;
            Ok(record)
        })
    }

    fn end_run(
        &self,
        flow_id: &str,
        run_id: &str,
        status: RunStatus,
        ended_at_ms: i64,
    ) -> Result<()> {
        let now = now_ms();
        self.write("end run", Phase::End, |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE runs SET status = ?3, ended_at_ms = ?4, updated_at_ms = ?5
                     WHERE flow_id = ?1 AND run_id = ?2",
                )?
                .execute(params![flow_id, run_id, status, ended_at_ms, now])?;
            if changed == 0 {
                return Err(StateError::RunNotFound {
                    path: self.path.clone(),
                    flow_id: flow_id.to_owned(),
                    run_id: run_id.to_owned(),
                }
                .into());
            }
            Ok(())
        })
    }

    fn set_job_status(
        &self,
        key: &JobKey<'_>,
        status: JobStatus,
        detail: &JobDetail,
    ) -> Result<()> {
        let outputs = self.to_json(key, detail.outputs.as_ref())?;
        // Job statuses are derived from their steps: a resume recomputes a job whose status
        // a power loss took back, so only step ends (and the run end) pay for an fsync. The
        // next synced commit makes this one durable too.
        let phase = Phase::Start;
        let now = now_ms();
        self.write("set job status", phase, |tx| {
            tx.prepare_cached(
                "INSERT INTO job_runs(flow_id, run_id, job_id, seq, status, started_at_ms,
                                      ended_at_ms, duration_ms, skip_reason, outputs_json,
                                      error, updated_at_ms)
                 VALUES(?1, ?2, ?3,
                        (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_runs
                         WHERE flow_id = ?1 AND run_id = ?2),
                        ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT(flow_id, run_id, job_id) DO UPDATE SET
                     status = excluded.status,
                     started_at_ms = COALESCE(excluded.started_at_ms, job_runs.started_at_ms),
                     ended_at_ms = excluded.ended_at_ms,
                     duration_ms = excluded.duration_ms,
                     skip_reason = excluded.skip_reason,
                     outputs_json = excluded.outputs_json,
                     error = excluded.error,
                     updated_at_ms = excluded.updated_at_ms",
            )?
            .execute(params![
                key.flow_id,
                key.run_id,
                key.job_id,
                status,
                detail.started_at_ms,
                detail.ended_at_ms,
                detail.duration_ms,
                detail.skip_reason,
                outputs,
                detail.error,
                now
            ])?;
            Ok(())
        })
    }

    fn job(&self, key: &JobKey<'_>) -> Result<Option<JobRecord>> {
        self.read("read job", |conn| {
            let record = conn
                .prepare_cached(&format!(
                    "SELECT {JOB_COLS} FROM job_runs \
                     WHERE flow_id = ?1 AND run_id = ?2 AND job_id = ?3"
                ))?
                .query_row(params![key.flow_id, key.run_id, key.job_id], job_from_row)
                .optional()?;
            Ok(record)
        })
    }

    fn step_started(&self, key: &StepKey<'_>, step_type: &str, started_at_ms: i64) -> Result<u32> {
        let now = now_ms();
        self.write("record step start", Phase::Start, |tx| {
            self.tx_step_started(tx, key, step_type, started_at_ms, now)
        })
    }

    fn step_finished(&self, key: &StepKey<'_>, end: &StepEnd) -> Result<()> {
        let outputs = self.to_json(key, end.outputs.as_ref())?;
        let now = now_ms();
        self.write("record step end", Phase::End, |tx| {
            self.tx_step_finished(tx, key, end, outputs.as_deref(), now)
        })
    }

    fn step_transition(
        &self,
        finished: Option<(&StepKey<'_>, &StepEnd)>,
        started: Option<(&StepKey<'_>, &str, i64)>,
    ) -> Result<Option<u32>> {
        let outputs = match finished {
            Some((key, end)) => self.to_json(key, end.outputs.as_ref())?,
            None => None,
        };
        let now = now_ms();
        // Synced like a step end when it records one: the end must be durable before the
        // next step runs, and it is, because this commit returns before that.
        let phase = if finished.is_some() {
            Phase::End
        } else {
            Phase::Start
        };
        self.write("record step transition", phase, |tx| {
            if let Some((key, end)) = finished {
                self.tx_step_finished(tx, key, end, outputs.as_deref(), now)?;
            }
            match started {
                Some((key, step_type, at)) => {
                    self.tx_step_started(tx, key, step_type, at, now).map(Some)
                }
                None => Ok(None),
            }
        })
    }

    fn step(&self, key: &StepKey<'_>) -> Result<Option<StepRecord>> {
        self.read("read step", |conn| {
            let record = conn
                .prepare_cached(&format!(
                    "SELECT {STEP_COLS} FROM step_runs \
                     WHERE flow_id = ?1 AND run_id = ?2 AND job_id = ?3 AND step_id = ?4"
                ))?
                .query_row(
                    params![key.flow_id, key.run_id, key.job_id, key.step_id],
                    step_from_row,
                )
                .optional()?;
            Ok(record)
        })
    }

    fn steps_of_job(&self, key: &JobKey<'_>) -> Result<Vec<StepRecord>> {
        self.read("read steps of job", |conn| {
            Ok(steps_of_run(
                conn,
                key.flow_id,
                key.run_id,
                Some(key.job_id),
            )?)
        })
    }

    fn list_runs(&self, flow_id: Option<&str>, limit: usize) -> Result<Vec<RunRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read("list runs", |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {RUN_COLS} FROM runs WHERE (?1 IS NULL OR flow_id = ?1)
                 ORDER BY started_at_ms DESC, flow_id DESC, run_id DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![flow_id, limit], run_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn run_detail(&self, flow_id: Option<&str>, run_id: &str) -> Result<Option<RunDetail>> {
        self.read("read run detail", |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {RUN_COLS} FROM runs WHERE run_id = ?2 AND (?1 IS NULL OR flow_id = ?1)
                 ORDER BY flow_id"
            ))?;
            let mut runs = stmt
                .query_map(params![flow_id, run_id], run_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if runs.len() > 1 {
                let flows: Vec<String> = runs.iter().map(|r| format!("`{}`", r.flow_id)).collect();
                return Err(StateError::AmbiguousRun {
                    path: self.path.clone(),
                    run_id: run_id.to_owned(),
                    flows: flows.join(", "),
                }
                .into());
            }
            let Some(run) = runs.pop() else {
                return Ok(None);
            };
            let jobs = jobs_of_run(conn, &run.flow_id, &run.run_id)?;
            let steps = steps_of_run(conn, &run.flow_id, &run.run_id, None)?;
            Ok(Some(RunDetail { run, jobs, steps }))
        })
    }

    fn try_acquire_lock(&self, key: &str, owner: &str, ttl_seconds: u64) -> Result<Option<Lease>> {
        self.write("acquire lock", Phase::End, |tx| {
            // The clock is read under the write lock, so acquisitions are ordered in time.
            let now = now_ms();
            let held_until: Option<i64> = tx
                .prepare_cached("SELECT expires_at_ms FROM locks WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?;
            if held_until.is_some_and(|until| until > now) {
                return Ok(None);
            }
            let fence: i64 = tx
                .prepare_cached(
                    "UPDATE meta SET value = value + 1 WHERE key = 'lock_fence' RETURNING value",
                )?
                .query_row([], |r| r.get(0))?;
            // Purge every expired lease (this key's included), as the reference does.
            tx.prepare_cached("DELETE FROM locks WHERE expires_at_ms <= ?1")?
                .execute([now])?;
            let expires_at_ms = now.saturating_add(ttl_ms(ttl_seconds));
            tx.prepare_cached(
                "INSERT INTO locks(key, owner, expires_at_ms, fence, acquired_at_ms)
                 VALUES(?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![key, owner, expires_at_ms, fence, now])?;
            Ok(Some(Lease {
                key: key.to_owned(),
                owner: owner.to_owned(),
                expires_at_ms,
                fence,
            }))
        })
    }

    fn renew_lock(&self, key: &str, owner: &str, ttl_seconds: u64) -> Result<Option<Lease>> {
        self.write("renew lock", Phase::End, |tx| {
            let now = now_ms();
            let expires_at_ms = now.saturating_add(ttl_ms(ttl_seconds));
            let fence: Option<i64> = tx
                .prepare_cached(
                    "UPDATE locks SET expires_at_ms = ?3
                     WHERE key = ?1 AND owner = ?2 AND expires_at_ms > ?4
                     RETURNING fence",
                )?
                .query_row(params![key, owner, expires_at_ms, now], |r| r.get(0))
                .optional()?;
            Ok(fence.map(|fence| Lease {
                key: key.to_owned(),
                owner: owner.to_owned(),
                expires_at_ms,
                fence,
            }))
        })
    }

    fn release_lock(&self, key: &str, owner: &str) -> Result<bool> {
        self.write("release lock", Phase::End, |tx| {
            let deleted = tx
                .prepare_cached("DELETE FROM locks WHERE key = ?1 AND owner = ?2")?
                .execute([key, owner])?;
            Ok(deleted > 0)
        })
    }
}
