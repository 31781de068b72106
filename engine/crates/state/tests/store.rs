//! Single-process tests of `SqliteStore` on real files.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use aetherflow_state::{
    Durability, JobDetail, JobKey, JobStatus, RunStart, RunStatus, SqliteStore, StateError,
    StateStore, StepEnd, StepKey, StepOutcome, StepStatus, SCHEMA_VERSION,
};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn open(path: &Path) -> Result<SqliteStore, StateError> {
    SqliteStore::open(path, Durability::Process)
}

fn start<'a>(flow_id: &'a str, run_id: &'a str, at: i64) -> RunStart<'a> {
    RunStart {
        flow_id,
        run_id,
        flow_yaml: "version: 1\n",
        started_at_ms: at,
    }
}

fn success(outputs: serde_json::Value, at: i64) -> StepEnd {
    StepEnd {
        status: StepOutcome::Success,
        outputs: Some(outputs),
        reason: None,
        error: None,
        ended_at_ms: at,
        duration_ms: Some(5),
    }
}

#[test]
fn open_creates_parent_dirs_and_versioned_schema_idempotently() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("a/b/state.sqlite");
    drop(open(&path)?);
    // Reopening (also with the other durability) is a no-op on the schema.
    let store = SqliteStore::open(&path, Durability::Power)?;
    assert_eq!(store.path(), path);
    assert_eq!(store.durability(), Durability::Power);
    drop(store);

    let conn = rusqlite::Connection::open(&path)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
    assert_eq!(mode, "wal");
    let mut names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    names.sort();
    assert_eq!(names, ["job_runs", "locks", "meta", "runs", "step_runs"]);
    Ok(())
}

#[test]
fn refuses_newer_schema_and_foreign_tables() -> TestResult {
    let dir = tempfile::tempdir()?;
    let newer = dir.path().join("newer.sqlite");
    drop(open(&newer)?);
    rusqlite::Connection::open(&newer)?.pragma_update(None, "user_version", 99)?;
    let err = open(&newer).err().ok_or("newer schema accepted")?;
    assert!(
        matches!(err, StateError::SchemaTooNew { found: 99, .. }),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with(&format!("state store `{}`: ", newer.display())));

    // A database of the Python reference store (same table names, other columns).
    let reference = dir.path().join("reference.sqlite");
    rusqlite::Connection::open(&reference)?.execute_batch(
        "CREATE TABLE job_runs(job_id TEXT NOT NULL, run_id TEXT NOT NULL, status TEXT NOT NULL,
                               updated_at INTEGER NOT NULL, PRIMARY KEY(job_id, run_id));",
    )?;
    let err = open(&reference).err().ok_or("foreign schema accepted")?;
    assert!(matches!(err, StateError::ForeignSchema { .. }), "{err}");
    assert!(err.to_string().contains("`job_runs`"), "{err}");
    Ok(())
}

#[test]
fn open_reports_unusable_path() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("file");
    std::fs::write(&file, b"x")?;
    let err = open(&file.join("state.sqlite"))
        .err()
        .ok_or("opened below a file")?;
    assert!(matches!(err, StateError::CreateDir { .. }), "{err}");
    assert!(err.to_string().contains("cannot create parent directory"));
    Ok(())
}

#[test]
fn run_job_step_round_trip() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir.path().join("s.sqlite"))?;

    let run = store.begin_run(&start("flow", "r1", 1_000))?;
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.attempt, 1);
    assert_eq!((run.started_at_ms, run.resumed_at_ms), (1_000, 1_000));
    assert_eq!(run.ended_at_ms, None);

    let job = JobKey::new("flow", "r1", "extract");
    store.set_job_status(
        &job,
        JobStatus::Running,
        &JobDetail {
            started_at_ms: Some(1_001),
            ..JobDetail::default()
        },
    )?;
    let s1 = job.step("fetch");
    assert_eq!(store.step_started(&s1, "db_fetch_small", 1_002)?, 1);
    let running = store.step(&s1)?.ok_or("no step row")?;
    assert_eq!(running.status, StepStatus::Running);
    assert_eq!(running.step_type.as_deref(), Some("db_fetch_small"));
    assert_eq!(running.started_at_ms, Some(1_002));
    assert_eq!(running.outputs, None);

    let outputs = json!({"rows": [{"id": 1, "name": "a"}], "count": 1, "z": null, "a": 2.5});
    store.step_finished(&s1, &success(outputs.clone(), 1_007))?;
    let done = store.step(&s1)?.ok_or("no step row")?;
    assert_eq!(done.status, StepStatus::Success);
    assert_eq!(done.outputs.as_ref(), Some(&outputs));
    // Key order survives (serde_json preserve_order).
    assert_eq!(
        serde_json::to_string(&done.outputs)?,
        serde_json::to_string(&outputs)?
    );
    assert_eq!(done.attempts, 1);
    assert_eq!(
        (done.started_at_ms, done.ended_at_ms, done.duration_ms),
        (Some(1_002), Some(1_007), Some(5))
    );

    // A failed step keeps its error.
    let s2 = job.step("load");
    store.step_started(&s2, "db_extract", 1_010)?;
    store.step_finished(
        &s2,
        &StepEnd {
            status: StepOutcome::Failed,
            outputs: None,
            reason: None,
            error: Some("connection refused: `db`".into()),
            ended_at_ms: 1_020,
            duration_ms: Some(10),
        },
    )?;
    let failed = store.step(&s2)?.ok_or("no step row")?;
    assert_eq!(failed.status, StepStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("connection refused: `db`"));

    // The end transition need not repeat started_at_ms.
    store.set_job_status(
        &job,
        JobStatus::Failed,
        &JobDetail {
            ended_at_ms: Some(1_021),
            duration_ms: Some(20),
            outputs: Some(json!({"partial": true})),
            error: Some("step `load` failed".into()),
            ..JobDetail::default()
        },
    )?;
    let rec = store.job(&job)?.ok_or("no job row")?;
    assert_eq!(rec.status, JobStatus::Failed);
    assert_eq!(rec.started_at_ms, Some(1_001));
    assert_eq!(rec.ended_at_ms, Some(1_021));
    assert_eq!(rec.outputs, Some(json!({"partial": true})));
    assert_eq!(rec.error.as_deref(), Some("step `load` failed"));

    store.end_run("flow", "r1", RunStatus::Failed, 1_030)?;
    let detail = store.run_detail(Some("flow"), "r1")?.ok_or("no run")?;
    assert_eq!(detail.run.status, RunStatus::Failed);
    assert_eq!(detail.run.ended_at_ms, Some(1_030));
    assert_eq!(detail.jobs.len(), 1);
    let ids: Vec<&str> = detail.steps.iter().map(|s| s.step_id.as_str()).collect();
    assert_eq!(ids, ["fetch", "load"]);

    assert!(store.job(&JobKey::new("flow", "r1", "nope"))?.is_none());
    assert!(store.step(&job.step("nope"))?.is_none());
    assert!(store.run_detail(None, "nope")?.is_none());
    Ok(())
}

#[test]
fn statuses_are_stored_as_uppercase_strings() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("s.sqlite");
    let store = open(&path)?;
    let statuses = [
        JobStatus::Running,
        JobStatus::Success,
        JobStatus::Failed,
        JobStatus::Blocked,
        JobStatus::Skipped,
    ];
    for (i, status) in statuses.iter().enumerate() {
        let id = format!("j{i}");
        store.set_job_status(&JobKey::new("f", "r", &id), *status, &JobDetail::default())?;
    }
    let conn = rusqlite::Connection::open(&path)?;
    let stored: Vec<String> = conn
        .prepare("SELECT status FROM job_runs ORDER BY seq")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    assert_eq!(
        stored,
        ["RUNNING", "SUCCESS", "FAILED", "BLOCKED", "SKIPPED"]
    );

    // A value this version does not know is reported, not panicked on.
    conn.execute(
        "UPDATE job_runs SET status = 'WEIRD' WHERE job_id = 'j0'",
        [],
    )?;
    let err = store
        .job(&JobKey::new("f", "r", "j0"))
        .err()
        .ok_or("bad status accepted")?;
    assert!(
        err.to_string().contains("invalid job status `WEIRD`"),
        "{err}"
    );
    Ok(())
}

#[test]
fn resume_restores_outputs_and_counts_attempts() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("s.sqlite");
    let job = JobKey::new("flow", "run", "job");
    {
        let store = open(&path)?;
        store.begin_run(&start("flow", "run", 100))?;
        store.set_job_status(&job, JobStatus::Running, &JobDetail::default())?;
        store.step_started(&job.step("a"), "t", 101)?;
        store.step_finished(&job.step("a"), &success(json!({"x": 1}), 102))?;
        // Short-circuit skip: finished without being started.
        store.step_finished(
            &job.step("b"),
            &StepEnd {
                status: StepOutcome::Skipped,
                outputs: Some(json!({"skipped": true, "reason": "no data"})),
                reason: Some("no data".into()),
                error: None,
                ended_at_ms: 103,
                duration_ms: None,
            },
        )?;
        // Step c began; the process died before it ended.
        store.step_started(&job.step("c"), "t", 104)?;
    }

    // The resumed process.
    let store = open(&path)?;
    let run = store.begin_run(&RunStart {
        flow_yaml: "version: 2\n",
        ..start("flow", "run", 200)
    })?;
    assert_eq!(run.attempt, 2);
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!((run.started_at_ms, run.resumed_at_ms), (100, 200));
    assert_eq!(run.flow_yaml, "version: 2\n");

    let a = store.step(&job.step("a"))?.ok_or("no a")?;
    assert!(a.status.is_done());
    assert_eq!(a.outputs, Some(json!({"x": 1})));
    let b = store.step(&job.step("b"))?.ok_or("no b")?;
    assert_eq!(b.status, StepStatus::Skipped);
    assert_eq!((b.attempts, b.step_type.as_deref()), (0, None));
    assert_eq!(b.reason.as_deref(), Some("no data"));
    let c = store.step(&job.step("c"))?.ok_or("no c")?;
    assert_eq!(c.status, StepStatus::Running);
    assert!(!c.status.is_done());

    // Re-running c: attempt 2, then it succeeds; order is still the first-recorded order.
    assert_eq!(store.step_started(&job.step("c"), "t", 201)?, 2);
    store.step_finished(&job.step("c"), &success(json!({"y": 2}), 202))?;
    let steps = store.steps_of_job(&job)?;
    let summary: Vec<(&str, StepStatus, u32)> = steps
        .iter()
        .map(|s| (s.step_id.as_str(), s.status, s.attempts))
        .collect();
    assert_eq!(
        summary,
        [
            ("a", StepStatus::Success, 1),
            ("b", StepStatus::Skipped, 0),
            ("c", StepStatus::Success, 2)
        ]
    );
    Ok(())
}

#[test]
fn flow_id_is_part_of_every_key() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir.path().join("s.sqlite"))?;
    for flow in ["f1", "f2"] {
        store.begin_run(&start(flow, "same", 10))?;
        let key = StepKey::new(flow, "same", "job", "step");
        store.step_started(&key, "t", 11)?;
        store.step_finished(&key, &success(json!({ "flow": flow }), 12))?;
    }
    let f1 = store
        .step(&StepKey::new("f1", "same", "job", "step"))?
        .ok_or("no f1 step")?;
    assert_eq!(f1.outputs, Some(json!({"flow": "f1"})));
    assert_eq!(f1.attempts, 1);

    let err = store
        .run_detail(None, "same")
        .err()
        .ok_or("ambiguous run id accepted")?;
    assert!(matches!(err, StateError::AmbiguousRun { .. }), "{err}");
    assert!(err.to_string().contains("(`f1`, `f2`)"), "{err}");
    let detail = store.run_detail(Some("f2"), "same")?.ok_or("no f2 run")?;
    assert_eq!(detail.steps.len(), 1);
    assert_eq!(detail.steps[0].outputs, Some(json!({"flow": "f2"})));
    Ok(())
}

#[test]
fn list_runs_newest_first_with_filter_and_limit() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir.path().join("s.sqlite"))?;
    store.begin_run(&start("a", "r1", 1))?;
    store.begin_run(&start("b", "r2", 2))?;
    store.begin_run(&start("a", "r3", 3))?;
    let ids = |runs: Vec<aetherflow_state::RunRecord>| -> Vec<String> {
        runs.into_iter().map(|r| r.run_id).collect()
    };
    assert_eq!(ids(store.list_runs(None, 10)?), ["r3", "r2", "r1"]);
    assert_eq!(ids(store.list_runs(Some("a"), 10)?), ["r3", "r1"]);
    assert_eq!(ids(store.list_runs(None, 2)?), ["r3", "r2"]);
    assert!(store.list_runs(Some("zzz"), 10)?.is_empty());
    assert!(store.list_runs(None, 0)?.is_empty());
    assert_eq!(ids(store.list_runs(None, usize::MAX)?).len(), 3);
    Ok(())
}

#[test]
fn end_run_of_unknown_run_is_an_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir.path().join("s.sqlite"))?;
    let err = store
        .end_run("f", "ghost", RunStatus::Success, 1)
        .err()
        .ok_or("unknown run ended")?;
    assert!(matches!(err, StateError::RunNotFound { .. }), "{err}");
    assert!(err.to_string().contains("run `ghost` of flow `f`"), "{err}");
    Ok(())
}

#[test]
fn power_durability_round_trip_switching_sync_levels() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("s.sqlite");
    let job = JobKey::new("f", "r", "j");
    {
        let store = SqliteStore::open(&path, Durability::Power)?;
        store.begin_run(&start("f", "r", 1))?;
        store.set_job_status(&job, JobStatus::Running, &JobDetail::default())?;
        for i in 0..50 {
            let id = format!("s{i}");
            store.step_started(&job.step(&id), "t", i)?;
            store.step_finished(&job.step(&id), &success(json!({ "i": i }), i))?;
        }
        store.set_job_status(&job, JobStatus::Success, &JobDetail::default())?;
        assert!(store.try_acquire_lock("k", "o", 60)?.is_some());
    }
    let store = open(&path)?;
    let steps = store.steps_of_job(&job)?;
    assert_eq!(steps.len(), 50);
    assert_eq!(steps[49].outputs, Some(json!({"i": 49})));
    Ok(())
}

#[test]
fn lock_is_not_reentrant_and_release_checks_owner() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir.path().join("s.sqlite"))?;
    let lease = store
        .try_acquire_lock("k", "run-a", 600)?
        .ok_or("not acquired")?;
    assert_eq!((lease.key.as_str(), lease.owner.as_str()), ("k", "run-a"));
    assert!(lease.fence >= 1);
    assert!(
        store.try_acquire_lock("k", "run-a", 600)?.is_none(),
        "re-entrant"
    );
    assert!(store.try_acquire_lock("k", "run-b", 600)?.is_none());

    assert!(!store.release_lock("k", "run-b")?, "wrong owner released");
    assert!(store.try_acquire_lock("k", "run-b", 600)?.is_none());
    assert!(!store.release_lock("other", "run-a")?);
    assert!(store.release_lock("k", "run-a")?);
    assert!(!store.release_lock("k", "run-a")?, "released twice");

    let next = store
        .try_acquire_lock("k", "run-b", 600)?
        .ok_or("not acquired")?;
    assert!(next.fence > lease.fence);
    // Fences are per store, not per key.
    let other = store
        .try_acquire_lock("k2", "run-b", 600)?
        .ok_or("not acquired")?;
    assert!(other.fence > next.fence);
    Ok(())
}

#[test]
fn renew_extends_only_own_unexpired_lease() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir.path().join("s.sqlite"))?;
    let lease = store.try_acquire_lock("k", "a", 1)?.ok_or("not acquired")?;
    assert!(store.renew_lock("k", "b", 600)?.is_none());
    assert!(store.renew_lock("missing", "a", 600)?.is_none());
    let renewed = store.renew_lock("k", "a", 600)?.ok_or("not renewed")?;
    assert_eq!(renewed.fence, lease.fence);
    assert!(renewed.expires_at_ms >= lease.expires_at_ms + 599_000);
    // Still held after the original 1 s TTL would have passed.
    thread::sleep(Duration::from_millis(1_100));
    assert!(store.try_acquire_lock("k", "b", 600)?.is_none());

    // An expired lease cannot be renewed.
    store.try_acquire_lock("z", "a", 0)?.ok_or("not acquired")?;
    assert!(store.renew_lock("z", "a", 600)?.is_none());
    Ok(())
}

#[test]
fn expired_lease_is_taken_over_with_higher_fence() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("s.sqlite");
    let a = open(&path)?;
    let b = open(&path)?;
    let first = a.try_acquire_lock("k", "a", 1)?.ok_or("not acquired")?;
    assert!(b.try_acquire_lock("k", "b", 600)?.is_none());
    thread::sleep(Duration::from_millis(1_100));
    let second = b.try_acquire_lock("k", "b", 600)?.ok_or("no takeover")?;
    assert!(second.fence > first.fence);
    assert_eq!(second.owner, "b");
    // The old holder can neither release nor renew the stolen lock.
    assert!(!a.release_lock("k", "a")?);
    assert!(a.renew_lock("k", "a", 600)?.is_none());
    assert!(a.try_acquire_lock("k", "a", 600)?.is_none());

    // TTL 0 is immediately stealable (as the reference), also by the same owner.
    let zero = a.try_acquire_lock("t", "a", 0)?.ok_or("not acquired")?;
    let again = a
        .try_acquire_lock("t", "a", 0)?
        .ok_or("ttl 0 not stealable")?;
    assert!(again.fence > zero.fence);
    Ok(())
}

#[test]
fn threads_with_separate_stores_contend_for_locks() -> TestResult {
    const THREADS: usize = 4;
    const KEYS: usize = 40;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("s.sqlite");
    drop(open(&path)?);
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let path = path.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || -> Result<Vec<i64>, StateError> {
                let store = open(&path)?;
                barrier.wait();
                let mut won = Vec::new();
                for k in 0..KEYS {
                    let owner = format!("thread-{t}");
                    if let Some(lease) = store.try_acquire_lock(&format!("key-{k}"), &owner, 600)? {
                        won.push(lease.fence);
                    }
                }
                Ok(won)
            })
        })
        .collect();
    let mut fences = Vec::new();
    for handle in handles {
        let won = handle.join().map_err(|_| "thread panicked")??;
        fences.extend(won);
    }
    // Every key has exactly one winner, and every fence is distinct.
    assert_eq!(fences.len(), KEYS);
    fences.sort_unstable();
    fences.dedup();
    assert_eq!(fences.len(), KEYS);
    Ok(())
}

#[test]
fn store_is_usable_as_shared_trait_object() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn StateStore> = Arc::new(open(&dir.path().join("s.sqlite"))?);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            thread::spawn(move || -> Result<(), StateError> {
                let job_id = format!("job{t}");
                let job = JobKey::new("f", "r", &job_id);
                for i in 0..25 {
                    let step_id = format!("s{i}");
                    store.step_started(&job.step(&step_id), "t", i)?;
                    store.step_finished(&job.step(&step_id), &success(json!(i), i))?;
                }
                Ok(())
            })
        })
        .collect();
    for handle in handles {
        handle.join().map_err(|_| "thread panicked")??;
    }
    store.begin_run(&start("f", "r", 0))?;
    let detail = store.run_detail(Some("f"), "r")?.ok_or("no run")?;
    assert_eq!(detail.steps.len(), 100);
    Ok(())
}

#[test]
fn a_step_transition_records_one_end_and_the_next_start_in_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    for durability in [Durability::Process, Durability::Power] {
        let store = SqliteStore::open(
            dir.path().join(format!("{durability:?}.sqlite")),
            durability,
        )?;
        store.begin_run(&start("f", "r", 1))?;
        let job = JobKey::new("f", "r", "j");
        let (a, b) = (job.step("a"), job.step("b"));
        assert_eq!(store.step_transition(None, Some((&a, "t", 1)))?, Some(1));
        let end = success(json!({"n": 1}), 2);
        assert_eq!(
            store.step_transition(Some((&a, &end)), Some((&b, "t", 3)))?,
            Some(1)
        );
        store.step_transition(Some((&b, &success(json!({}), 4))), None)?;
        let steps = store.steps_of_job(&job)?;
        let ids: Vec<&str> = steps.iter().map(|s| s.step_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(steps
            .iter()
            .all(|s| s.status == StepStatus::Success && s.attempts == 1));
        assert_eq!(steps[0].outputs, Some(json!({"n": 1})));
    }
    Ok(())
}

/// A database written by schema version 1 (a rowid `step_runs` with a `seq` index) is
/// migrated in place on open; its steps keep their data and their order.
#[test]
fn migrates_a_version_1_database() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("v1.sqlite");
    {
        let conn = rusqlite::Connection::open(&path)?;
        conn.execute_batch(include_str!("schema_v1.sql"))?;
        // Step ids in an order unlike their execution order (`seq`).
        for (step, seq) in [("b", 1), ("a", 2), ("c", 3)] {
            conn.execute(
                "INSERT INTO step_runs(flow_id, run_id, job_id, step_id, seq, step_type, status,
                                       attempts, started_at_ms, ended_at_ms, outputs_json,
                                       updated_at_ms)
                 VALUES('f', 'r', 'j', ?1, ?2, 'check_items', 'SUCCESS', 1, 10, 20,
                        '{\"n\": 1}', 20)",
                rusqlite::params![step, seq],
            )?;
        }
    }
    let store = open(&path)?;
    let steps = store.steps_of_job(&JobKey {
        flow_id: "f",
        run_id: "r",
        job_id: "j",
    })?;
    let ids: Vec<&str> = steps.iter().map(|s| s.step_id.as_str()).collect();
    assert_eq!(ids, ["b", "a", "c"]);
    assert_eq!(steps[1].outputs, Some(json!({"n": 1})));
    assert_eq!(steps[1].status, StepStatus::Success);
    drop(store);

    let conn = rusqlite::Connection::open(&path)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    assert_eq!(version, SCHEMA_VERSION);
    let sql: String = conn.query_row(
        "SELECT sql FROM sqlite_master WHERE name = 'step_runs'",
        [],
        |r| r.get(0),
    )?;
    assert!(sql.contains("WITHOUT ROWID"), "{sql}");
    let indexes: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'step_runs_by_seq'",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(indexes, 0);
    Ok(())
}
