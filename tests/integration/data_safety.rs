//! A data step that cannot finish leaves nothing half-written: not on a full disk, not when
//! the engine is killed in the middle of a stream; and the next run completes the file.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::harness::{db_flow, job_status, Outcome, Test};

/// A SQLite database with `rows` rows of about 60 bytes each in tsv.
fn big_db(t: &Test, rows: usize) -> PathBuf {
    let path = t.path("big.sqlite");
    let mut conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE t(id INTEGER, name TEXT, note TEXT)")
        .unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut ins = tx.prepare("INSERT INTO t VALUES(?1, ?2, ?3)").unwrap();
        for i in 0..rows {
            ins.execute(rusqlite::params![
                i as i64,
                format!("name-{i:08}"),
                "a note long enough to make the file big"
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
    path
}

/// A test with a `rows`-row database and a flow extracting it to `out.tsv`.
fn setup(rows: usize) -> Test {
    let t = Test::new();
    let db = big_db(&t, rows);
    let yaml = db_flow(
        "safe",
        &format!(
            "{{kind: db, driver: sqlite3, config: {{path: \"{}\"}}}}",
            db.display()
        ),
        "SELECT id, name, note FROM t ORDER BY id",
    );
    t.flow(&yaml)
}

fn artifacts(t: &Test, run: &str) -> PathBuf {
    t.path(&format!("work/safe/j/{run}/artifacts"))
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Writes beyond RLIMIT_FSIZE fail with EFBIG, as on a full disk: the step fails with the
/// cause, its temporary file is removed, the state store is intact, and a rerun completes.
#[test]
fn a_full_disk_fails_the_step_and_leaves_no_file() {
    let t = setup(20_000);
    let mut cmd = t.command(&["run", "flow.yaml", "--run-id", "r1"]);
    // 256 KiB per file: enough for the state database, far too little for the extract
    // (about 1.2 MB).
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 256 * 1024,
                rlim_max: 256 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = Outcome::from(cmd.output().unwrap());
    out.status(1)
        .stderr_has("cannot write")
        .stderr_has("may not write files larger than 262144 bytes (RLIMIT_FSIZE");
    assert_eq!(job_status(&t.store(), "safe", "r1", "j"), "FAILED");
    // Neither the final file nor the temporary one is left.
    assert_eq!(files_in(&artifacts(&t, "r1")), Vec::<String>::new());

    // Without the limit, the same run completes the file.
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(0);
    let text = std::fs::read_to_string(artifacts(&t, "r1").join("out.tsv")).unwrap();
    assert_eq!(text.lines().count(), 20_001);
    assert!(text.ends_with("19999\tname-00019999\ta note long enough to make the file big\n"));
}

/// SIGKILL while the extract streams: the final name never holds a partial file, and a
/// resume writes the whole file.
#[test]
fn a_kill_mid_stream_leaves_no_partial_file() {
    let t = setup(300_000);
    let mut child = t.spawn(&["run", "flow.yaml", "--run-id", "r1"]);
    let dir = artifacts(&t, "r1");
    let deadline = Instant::now() + Duration::from_secs(60);
    // Wait until the temporary file has some bytes, then kill.
    loop {
        let tmp = std::fs::metadata(dir.join("out.tsv.tmp")).map_or(0, |m| m.len());
        if tmp > 64 * 1024 {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended before it could be killed: {status}");
        }
        assert!(Instant::now() < deadline, "no temporary file appeared");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !dir.join("out.tsv").exists(),
        "a partial file under the final name"
    );

    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(0);
    assert_eq!(files_in(&dir), ["out.tsv"]);
    let text = std::fs::read_to_string(dir.join("out.tsv")).unwrap();
    assert_eq!(text.lines().count(), 300_001);
}
