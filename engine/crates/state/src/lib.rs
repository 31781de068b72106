//! Durable state store of the AetherFlow engine.
//!
//! Every run, job and step transition is recorded, together with step outputs (so a resumed
//! run can restore them instead of failing on missing `steps.*` references, unlike the Python
//! reference, parity §0.2) and TTL lock leases carrying a fencing token.
//!
//! Differences from the Python reference store (parity §4), all deliberate:
//! - `flow_id` is part of every run/job/step key (the reference keys on `(job, run, step)`
//!   only, so two flows sharing a DB collide, parity §3.5);
//! - step outputs, skip reasons and errors are stored, as are timings and attempt counters;
//! - every lease carries a `fence` token that increases monotonically per database, so a
//!   holder whose lease expired and was taken over can be told apart from the new holder;
//! - one connection per store and each transition is a single transaction (`BEGIN IMMEDIATE`),
//!   so read-then-write sequences such as lock acquisition are atomic across processes.
//!
//! [`SqliteStore`] is the only implementation; the engine should depend on the object-safe
//! [`StateStore`] trait.

mod sqlite;
mod vfs;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use sqlite::{SqliteStore, SCHEMA_VERSION};

/// Result type of this crate.
pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// Errors of the state store. Every message names the database file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store `{}`: cannot create parent directory: {source}", .path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state store `{}`: {op}: {source}", .path.display())]
    Sqlite {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state store `{}`: journal mode is `{mode}`, expected `wal`", .path.display())]
    NotWal { path: PathBuf, mode: String },
    #[error(
        "state store `{}`: schema version {found} is newer than the supported version {supported}",
        .path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(
        "state store `{}`: unversioned database already has a `{table}` table \
         (a store from another implementation?); refusing to use it",
        .path.display()
    )]
    ForeignSchema { path: PathBuf, table: String },
    #[error("state store `{}`: invalid {what} `{value}` stored in the database", .path.display())]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        value: String,
    },
    #[error("state store `{}`: outputs of `{key}` are not valid json: {source}", .path.display())]
    Json {
        path: PathBuf,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("state store `{}`: run `{run_id}` of flow `{flow_id}` does not exist", .path.display())]
    RunNotFound {
        path: PathBuf,
        flow_id: String,
        run_id: String,
    },
    #[error(
        "state store `{}`: run id `{run_id}` exists in several flows ({flows}); give the flow id",
        .path.display()
    )]
    AmbiguousRun {
        path: PathBuf,
        run_id: String,
        flows: String,
    },
}

/// How much a committed transition survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: a committed transition survives a crash or
    /// `kill -9` of the process (the data is in the OS page cache), but not power loss or an
    /// OS crash. No fsync per commit.
    #[default]
    Process,
    /// Survives power loss, at the cost of exactly one fsync per step: "finished"
    /// transitions commit with `synchronous=FULL`, "started" transitions with
    /// `synchronous=OFF`. Why that is sound is explained at the top of `src/sqlite.rs`.
    Power,
}

macro_rules! status_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $s)] $variant),+
        }

        impl $name {
            /// The uppercase string stored in the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $s),+
                }
            }

            /// Parses the stored uppercase string.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($s => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_enum!(
    /// Status of a run (`runs.status`).
    RunStatus { Running => "RUNNING", Success => "SUCCESS", Failed => "FAILED" }
);

status_enum!(
    /// Status of a job (`job_runs.status`), as in the reference (parity §3.3).
    JobStatus {
        Running => "RUNNING",
        Success => "SUCCESS",
        Failed => "FAILED",
        Blocked => "BLOCKED",
        Skipped => "SKIPPED",
    }
);

status_enum!(
    /// Status of a step (`step_runs.status`). `Running` is only written by
    /// [`StateStore::step_started`].
    StepStatus {
        Running => "RUNNING",
        Success => "SUCCESS",
        Skipped => "SKIPPED",
        Failed => "FAILED",
    }
);

status_enum!(
    /// Final status of a step, given to [`StateStore::step_finished`].
    StepOutcome { Success => "SUCCESS", Skipped => "SKIPPED", Failed => "FAILED" }
);

impl StepStatus {
    /// Whether a resumed run may skip this step (and restore its outputs).
    pub fn is_done(self) -> bool {
        matches!(self, StepStatus::Success | StepStatus::Skipped)
    }
}

impl From<StepOutcome> for StepStatus {
    fn from(o: StepOutcome) -> Self {
        match o {
            StepOutcome::Success => StepStatus::Success,
            StepOutcome::Skipped => StepStatus::Skipped,
            StepOutcome::Failed => StepStatus::Failed,
        }
    }
}

/// Identifies a job execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobKey<'a> {
    pub flow_id: &'a str,
    pub run_id: &'a str,
    pub job_id: &'a str,
}

impl<'a> JobKey<'a> {
    pub fn new(flow_id: &'a str, run_id: &'a str, job_id: &'a str) -> Self {
        JobKey {
            flow_id,
            run_id,
            job_id,
        }
    }

    /// The key of step `step_id` of this job.
    pub fn step(&self, step_id: &'a str) -> StepKey<'a> {
        StepKey {
            flow_id: self.flow_id,
            run_id: self.run_id,
            job_id: self.job_id,
            step_id,
        }
    }
}

/// Identifies a step execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepKey<'a> {
    pub flow_id: &'a str,
    pub run_id: &'a str,
    pub job_id: &'a str,
    pub step_id: &'a str,
}

impl<'a> StepKey<'a> {
    pub fn new(flow_id: &'a str, run_id: &'a str, job_id: &'a str, step_id: &'a str) -> Self {
        StepKey {
            flow_id,
            run_id,
            job_id,
            step_id,
        }
    }

    /// The key of the job this step belongs to.
    pub fn job(&self) -> JobKey<'a> {
        JobKey::new(self.flow_id, self.run_id, self.job_id)
    }
}

impl std::fmt::Display for StepKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.flow_id, self.run_id, self.job_id, self.step_id
        )
    }
}

impl std::fmt::Display for JobKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.flow_id, self.run_id, self.job_id)
    }
}

/// Arguments of [`StateStore::begin_run`].
#[derive(Debug, Clone, Copy)]
pub struct RunStart<'a> {
    pub flow_id: &'a str,
    pub run_id: &'a str,
    /// The flow YAML text (or path) this attempt runs; the latest attempt's value is kept.
    pub flow_yaml: &'a str,
    pub started_at_ms: i64,
}

/// A row of `runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub flow_id: String,
    pub run_id: String,
    pub status: RunStatus,
    pub flow_yaml: String,
    /// 1 for the first attempt, +1 for every resume with the same run id.
    pub attempt: u32,
    /// Start of the first attempt.
    pub started_at_ms: i64,
    /// Start of the latest attempt (equals `started_at_ms` for the first attempt).
    pub resumed_at_ms: i64,
    pub ended_at_ms: Option<i64>,
}

/// What [`StateStore::set_job_status`] records besides the status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobDetail {
    /// `None` keeps the stored value, so the end transition need not repeat it.
    pub started_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub skip_reason: Option<String>,
    /// Promoted job outputs (`jobs.<id>.outputs`).
    pub outputs: Option<serde_json::Value>,
    pub error: Option<String>,
}

/// A row of `job_runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub flow_id: String,
    pub run_id: String,
    pub job_id: String,
    pub status: JobStatus,
    pub started_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub skip_reason: Option<String>,
    pub outputs: Option<serde_json::Value>,
    pub error: Option<String>,
    pub updated_at_ms: i64,
}

/// Arguments of [`StateStore::step_finished`].
#[derive(Debug, Clone, PartialEq)]
pub struct StepEnd {
    pub status: StepOutcome,
    /// The step's result (`steps.<id>.*`); restored on resume.
    pub outputs: Option<serde_json::Value>,
    /// Skip reason (`StepResult.reason`).
    pub reason: Option<String>,
    pub error: Option<String>,
    pub ended_at_ms: i64,
    pub duration_ms: Option<i64>,
}

/// A row of `step_runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub flow_id: String,
    pub run_id: String,
    pub job_id: String,
    pub step_id: String,
    /// `None` when the step was finished without being started (a short-circuit skip).
    pub step_type: Option<String>,
    pub status: StepStatus,
    /// Number of `step_started` calls for this key (across resumes).
    pub attempts: u32,
    pub started_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub outputs: Option<serde_json::Value>,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub updated_at_ms: i64,
}

/// A run with its jobs and steps, each in execution (first-recorded) order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    pub run: RunRecord,
    pub jobs: Vec<JobRecord>,
    pub steps: Vec<StepRecord>,
}

/// A held lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub key: String,
    pub owner: String,
    pub expires_at_ms: i64,
    /// Fencing token: strictly greater than the token of every earlier acquisition (of any
    /// key) in the same database. Renewal keeps the token.
    pub fence: i64,
}

/// The durable state store. Object safe; implementations are shared between threads.
///
/// Timestamps are milliseconds since the Unix epoch, supplied by the caller, except for lock
/// expiry, which uses the store's wall clock so that all processes on a host agree.
pub trait StateStore: Send + Sync {
    /// Records the start of a run. A new `(flow_id, run_id)` gets `attempt` 1; an existing one
    /// (a resume) is marked `RUNNING` again, its end time cleared and `attempt` incremented.
    /// Returns the stored record.
    fn begin_run(&self, start: &RunStart<'_>) -> Result<RunRecord>;

    /// Records the end of a run. Fails with [`StateError::RunNotFound`] if it never began.
    fn end_run(
        &self,
        flow_id: &str,
        run_id: &str,
        status: RunStatus,
        ended_at_ms: i64,
    ) -> Result<()>;

    /// Inserts or replaces the job's row. All detail fields are replaced, except
    /// `started_at_ms`, which is kept when `None` is given.
    fn set_job_status(&self, key: &JobKey<'_>, status: JobStatus, detail: &JobDetail)
        -> Result<()>;

    fn job(&self, key: &JobKey<'_>) -> Result<Option<JobRecord>>;

    /// Records that a step began: status `RUNNING`, attempts + 1, end fields cleared.
    /// Returns the attempt number (1 for the first).
    fn step_started(&self, key: &StepKey<'_>, step_type: &str, started_at_ms: i64) -> Result<u32>;

    /// Records the end of a step. A step that never started (a short-circuit skip) gets a row
    /// with `attempts` 0 and no type.
    fn step_finished(&self, key: &StepKey<'_>, end: &StepEnd) -> Result<()>;

    /// Records the end of one step and the start of the next in one transaction, durable
    /// as a step end (the engine's usual transition: half the commits of calling
    /// [`StateStore::step_finished`] then [`StateStore::step_started`]). Either part may be
    /// absent. Returns the started step's attempt number.
    fn step_transition(
        &self,
        finished: Option<(&StepKey<'_>, &StepEnd)>,
        started: Option<(&StepKey<'_>, &str, i64)>,
    ) -> Result<Option<u32>> {
        if let Some((key, end)) = finished {
            self.step_finished(key, end)?;
        }
        match started {
            Some((key, step_type, at)) => self.step_started(key, step_type, at).map(Some),
            None => Ok(None),
        }
    }

    fn step(&self, key: &StepKey<'_>) -> Result<Option<StepRecord>>;

    /// The steps of a job in execution order.
    fn steps_of_job(&self, key: &JobKey<'_>) -> Result<Vec<StepRecord>>;

    /// Runs, newest (by first start) first, optionally of one flow only.
    fn list_runs(&self, flow_id: Option<&str>, limit: usize) -> Result<Vec<RunRecord>>;

    /// A run with its jobs and steps. Without `flow_id`, fails with
    /// [`StateError::AmbiguousRun`] if several flows have a run with this id.
    fn run_detail(&self, flow_id: Option<&str>, run_id: &str) -> Result<Option<RunDetail>>;

    /// Takes the lock `key` for `owner` for `ttl_seconds`, if it is free or its lease expired.
    /// An unexpired lease is never granted again, not even to its own owner (no re-entrancy,
    /// as the reference). TTL 0 gives a lease that is immediately expired.
    fn try_acquire_lock(&self, key: &str, owner: &str, ttl_seconds: u64) -> Result<Option<Lease>>;

    /// Extends `owner`'s unexpired lease to now + `ttl_seconds`, keeping its fence. `None` if
    /// `owner` does not hold an unexpired lease on `key`.
    fn renew_lock(&self, key: &str, owner: &str, ttl_seconds: u64) -> Result<Option<Lease>>;

    /// Releases `owner`'s lease on `key`. `false` (and nothing changes) if `owner` does not
    /// hold it, e.g. because it expired and was taken over.
    fn release_lock(&self, key: &str, owner: &str) -> Result<bool>;
}
