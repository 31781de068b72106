//! Multi-process tests: the test binary re-runs itself as child processes.
//!
//! A child is this binary started with `--exact child_main` and the environment variable
//! `AETHERFLOW_STATE_CHILD` set to `<mode>:<db path>`; without the variable `child_main` does
//! nothing. Children talk to the parent through stdout lines prefixed with `CHILD `.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use aetherflow_state::{
    Durability, JobKey, SqliteStore, StateStore, StepEnd, StepOutcome, StepStatus,
};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const CHILD_ENV: &str = "AETHERFLOW_STATE_CHILD";
const PREFIX: &str = "CHILD ";

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // If the parent is gone there is nobody to tell; the child just ends.
    let _ = writeln!(out, "{PREFIX}{line}");
    let _ = out.flush();
}

#[test]
fn child_main() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // An ordinary test run.
    };
    let Some((mode, path)) = spec.split_once(':') else {
        say("error bad spec");
        return;
    };
    let path = PathBuf::from(path);
    let result = match mode {
        "lock" => child_lock(&path),
        "open" => child_open(&path),
        "steps-process" => child_steps(&path, Durability::Process),
        "steps-power" => child_steps(&path, Durability::Power),
        other => Err(format!("unknown mode `{other}`").into()),
    };
    if let Err(e) = result {
        say(&format!("error {e}"));
    }
}

/// Waits for the parent's go file, then races for the lock.
fn child_lock(path: &Path) -> TestResult {
    let store = SqliteStore::open(path, Durability::Process)?;
    let go = path.with_extension("go");
    say("ready");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !go.exists() {
        if Instant::now() > deadline {
            return Err("no go signal".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let owner = format!("pid-{}", std::process::id());
    match store.try_acquire_lock("shared-key", &owner, 600)? {
        Some(lease) => say(&format!("acquired {}", lease.fence)),
        None => say("denied"),
    }
    Ok(())
}

/// Waits for the go file, then opens the (fresh) store: every child does so at once.
fn child_open(path: &Path) -> TestResult {
    let go = path.with_extension("go");
    say("ready");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !go.exists() {
        if Instant::now() > deadline {
            return Err("no go signal".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let store = SqliteStore::open(path, Durability::Power)?;
    store.try_acquire_lock(&format!("k-{}", std::process::id()), "me", 60)?;
    say("opened");
    Ok(())
}

/// Records finished steps until killed, reporting each committed step id.
fn child_steps(path: &Path, durability: Durability) -> TestResult {
    let store = SqliteStore::open(path, durability)?;
    let job = JobKey::new("flow", "run", "job");
    // Outputs of a few KiB, so commits span several pages and checkpoints happen.
    let blob = "x".repeat(3_000);
    for i in 0..1_000_000u64 {
        let step_id = format!("s{i}");
        let key = job.step(&step_id);
        let at = i64::try_from(i)?;
        store.step_started(&key, "t", at)?;
        store.step_finished(
            &key,
            &StepEnd {
                status: StepOutcome::Success,
                outputs: Some(json!({ "i": i, "blob": blob })),
                reason: None,
                error: None,
                ended_at_ms: at,
                duration_ms: Some(0),
            },
        )?;
        say(&format!("committed {step_id}"));
    }
    Ok(())
}

fn spawn_child(
    mode: &str,
    db: &Path,
) -> Result<(Child, BufReader<ChildStdout>), Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{mode}:{}", db.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("child stdout not piped")?;
    Ok((child, BufReader::new(stdout)))
}

/// The next message from a child (the text after `CHILD `); `None` at EOF.
fn next_message(reader: &mut BufReader<ChildStdout>) -> Result<Option<String>, std::io::Error> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        // libtest may print `test child_main ... ` on the same line first.
        if let Some(at) = line.find(PREFIX) {
            return Ok(Some(line[at + PREFIX.len()..].trim_end().to_owned()));
        }
    }
}

#[test]
fn processes_race_for_one_lock_and_exactly_one_wins() -> TestResult {
    const CHILDREN: usize = 4;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("locks.sqlite");
    // Also exercise concurrent schema creation: the children open a fresh file.
    let mut children = Vec::new();
    for _ in 0..CHILDREN {
        children.push(spawn_child("lock", &db)?);
    }
    for (_, reader) in &mut children {
        let msg = next_message(reader)?;
        assert_eq!(msg.as_deref(), Some("ready"));
    }
    std::fs::write(db.with_extension("go"), b"")?;
    let mut acquired = Vec::new();
    let mut denied = 0;
    for (mut child, mut reader) in children {
        match next_message(&mut reader)?.as_deref() {
            Some("denied") => denied += 1,
            Some(msg) if msg.starts_with("acquired ") => acquired.push(msg.to_owned()),
            other => return Err(format!("unexpected child message {other:?}").into()),
        }
        assert!(child.wait()?.success());
    }
    assert_eq!(acquired.len(), 1, "winners: {acquired:?}");
    assert_eq!(denied, CHILDREN - 1);

    // The lease is visible to the parent too.
    let store = SqliteStore::open(&db, Durability::Process)?;
    assert!(store
        .try_acquire_lock("shared-key", "parent", 600)?
        .is_none());
    Ok(())
}

fn kill_mid_way(mode: &str, durability: Durability) -> TestResult {
    const BEFORE_KILL: usize = 150;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("kill.sqlite");
    let (mut child, mut reader) = spawn_child(mode, &db)?;
    let mut committed = Vec::new();
    while committed.len() < BEFORE_KILL {
        match next_message(&mut reader)? {
            Some(msg) => match msg.strip_prefix("committed ") {
                Some(id) => committed.push(id.to_owned()),
                None => return Err(format!("unexpected child message `{msg}`").into()),
            },
            None => return Err("child ended early".into()),
        }
    }
    child.kill()?; // SIGKILL
    let status = child.wait()?;
    assert!(!status.success(), "child was not killed: {status}");
    // Lines already in the pipe were also committed.
    while let Some(msg) = next_message(&mut reader)? {
        if let Some(id) = msg.strip_prefix("committed ") {
            committed.push(id.to_owned());
        }
    }

    let conn = rusqlite::Connection::open(&db)?;
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    assert_eq!(check, "ok");
    drop(conn);

    let store = SqliteStore::open(&db, durability)?;
    let job = JobKey::new("flow", "run", "job");
    for id in &committed {
        let step = store
            .step(&job.step(id))?
            .ok_or_else(|| format!("committed step `{id}` lost"))?;
        assert_eq!(step.status, StepStatus::Success, "step `{id}`");
        let n: u64 = id.trim_start_matches('s').parse()?;
        assert_eq!(
            step.outputs.as_ref().and_then(|o| o.get("i")),
            Some(&json!(n))
        );
    }
    // The store is still writable after the crash.
    store.step_finished(
        &job.step("after"),
        &StepEnd {
            status: StepOutcome::Success,
            outputs: None,
            reason: None,
            error: None,
            ended_at_ms: 0,
            duration_ms: None,
        },
    )?;
    eprintln!(
        "{mode}: {} steps reported committed before SIGKILL, {} rows found",
        committed.len(),
        store.steps_of_job(&job)?.len() - 1
    );
    Ok(())
}

#[test]
fn kill_9_loses_no_committed_step_process_durability() -> TestResult {
    kill_mid_way("steps-process", Durability::Process)
}

#[test]
fn kill_9_loses_no_committed_step_power_durability() -> TestResult {
    kill_mid_way("steps-power", Durability::Power)
}

/// Regression: several processes opening one fresh store at the same instant all succeed
/// (switching to WAL used to fail with "database is locked" for all but one).
#[test]
fn processes_open_a_fresh_store_at_the_same_time() -> TestResult {
    const CHILDREN: usize = 8;
    for round in 0..12 {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join(format!("fresh-{round}.sqlite"));
        let mut children = Vec::new();
        for _ in 0..CHILDREN {
            children.push(spawn_child("open", &db)?);
        }
        for (_, reader) in &mut children {
            assert_eq!(next_message(reader)?.as_deref(), Some("ready"));
        }
        std::fs::write(db.with_extension("go"), "")?;
        for (mut child, mut reader) in children {
            assert_eq!(next_message(&mut reader)?.as_deref(), Some("opened"));
            child.wait()?;
        }
    }
    Ok(())
}
