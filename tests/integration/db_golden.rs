//! Byte-identical outputs vs the reference on SQLite: `tests/golden/db/flow.yaml` runs on
//! the fixture `tests/golden/db/fixture.sql` and every file it writes must equal the one
//! the reference wrote (`tests/golden/db/golden/`, captured by `capture.py` with
//! aetherflow-core 0.0.14). Covers db_extract (tsv, jsonl), db_extract_stream (tsv and csv
//! with several option combinations, sha256 and dtypes outputs) and db_fetch_small (its
//! JSON outputs, written to a file by a later step).
//!
//! Where the reference is broken we do not copy the defect, and the tests below say so:
//! its `fetchmany` fails on every SQLAlchemy-based driver (postgres included), so
//! db_fetch_small / db_extract_stream work only on sqlite3 there; ours work on postgres too
//! (tests/integration/db_postgres.rs). Its db_extract_stream only fails for an
//! unsupported format after having run the query; ours checks the inputs first.

use std::path::{Path, PathBuf};

use crate::harness::{header, Test};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/db")
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

fn fixture(t: &Test) {
    let sql = std::fs::read_to_string(golden_dir().join("fixture.sql")).unwrap();
    rusqlite::Connection::open(t.path("fixture.sqlite"))
        .unwrap()
        .execute_batch(&sql)
        .unwrap();
}

fn artifacts(t: &Test, flow: &str, run: &str) -> PathBuf {
    t.path(&format!("work/{flow}/j/{run}/artifacts"))
}

#[test]
fn db_steps_write_the_same_bytes_as_the_reference() {
    let flow = std::fs::read_to_string(golden_dir().join("flow.yaml")).unwrap();
    let t = Test::new().flow(&flow);
    fixture(&t);
    t.run_args(&["run", "flow.yaml", "--run-id", "g1"])
        .status(0);
    let ours = artifacts(&t, "golden_db", "g1");
    let golden = golden_dir().join("golden");
    let want = files_under(&golden);
    assert!(want.len() >= 10, "goldens missing: {want:?}");
    assert_eq!(files_under(&ours), want, "the set of files written differs");
    for rel in &want {
        let a = std::fs::read(ours.join(rel)).unwrap();
        let b = std::fs::read(golden.join(rel)).unwrap();
        assert!(
            a == b,
            "{} differs from the reference\n--- ours\n{}\n--- reference\n{}",
            rel.display(),
            String::from_utf8_lossy(&a),
            String::from_utf8_lossy(&b)
        );
    }
}

#[test]
fn db_step_errors_are_clear_and_leave_no_partial_file() {
    let flow = header("dberr")
        + r#"resources:
  db: {kind: db, driver: sqlite3, config: {path: "{ROOT}/fixture.sqlite"}}
jobs:
  - id: j
    steps:
      - {id: too_many, type: db_fetch_small, inputs: {resource: db, sql: "SELECT id FROM awkward", max_rows: 5, fetch_size: 2}}
  - id: k
    steps:
      - {id: bytes, type: db_fetch_small, inputs: {resource: db, sql: "SELECT data FROM awkward"}}
  - id: m
    steps:
      - {id: xlsx, type: db_extract_stream, inputs: {resource: db, sql: "SELECT 1", output: x.xlsx, format: xlsx}}
  - id: n
    steps:
      - {id: delim, type: db_extract_stream, inputs: {resource: db, sql: "SELECT 1", output: x.csv, format: csv, delimiter: ";;"}}
  - id: o
    steps:
      - {id: noescape, type: db_extract_stream, inputs: {resource: db, sql: "SELECT id, name FROM awkward ORDER BY id", output: part.csv, format: csv, quoting: none, fetch_size: 1}}
  - id: p
    steps:
      - {id: dtypes, type: db_extract_stream, inputs: {resource: db, sql: "SELECT 1", output: d.tsv, dtypes: "[1, 2]"}}
  - id: q
    steps:
      - {id: badsql, type: db_extract_stream, inputs: {resource: db, sql: "SELECT nope FROM awkward", output: e.tsv}}
"#;
    let t = Test::new().flow(&flow);
    fixture(&t);
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "e1"]);
    out.status(1);
    // The reference's own messages where it has one.
    assert_eq!(
        out.step_error("too_many"),
        "db_fetch_small exceeded max_rows=5. Use db_extract_stream for large results."
    );
    let e = out.step_error("bytes");
    assert!(
        e.contains("bytes is not JSON serializable") && e.contains("'data'"),
        "{e}"
    );
    assert_eq!(
        out.step_error("xlsx"),
        "db_extract_stream unsupported format: xlsx"
    );
    let e = out.step_error("delim");
    assert!(
        e.contains("\"delimiter\" must be a 1-character string"),
        "{e}"
    );
    let e = out.step_error("noescape");
    assert!(e.contains("need to escape, but no escapechar set"), "{e}");
    assert_eq!(
        out.step_error("dtypes"),
        "dtypes must be a dict (mapping column -> type)"
    );
    let e = out.step_error("badsql");
    assert!(e.contains("no such column: nope"), "{e}");
    // The csv that failed after some rows left neither the final file nor its temp file.
    let o = t.path("work/dberr/o/e1/artifacts");
    for f in ["part.csv", "part.csv.tmp"] {
        assert!(!o.join(f).exists(), "{f} left behind");
    }
}
