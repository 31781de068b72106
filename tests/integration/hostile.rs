//! The hostile-guest suite: components written to attack the engine (tests/guests/hostile,
//! tests/guests/raw_outputs and the other test guests), one attack per step. Each must fail
//! its step with the expected reason, and leave the engine, the state store and later
//! steps intact. docs/security.md lists every attack and where it is tested.

use std::path::Path;

use aetherflow_test_fixtures as fx;
use serde_json::Value;

use crate::harness::{header, Test};

const RUN: &str = "h1";

fn plugins() -> String {
    [fx::HOSTILE, fx::RAW_OUTPUTS, fx::SQL_EXEC].join(",")
}

/// One job per attack (jobs do not depend on each other, so a failed one blocks nothing).
fn job(id: &str, step: &str) -> String {
    format!("  - id: {id}\n    steps:\n      - {step}\n")
}

fn attack(id: &str, attack: &str, extra: &str) -> String {
    job(
        id,
        &format!("{{id: {id}, type: test_hostile, inputs: {{attack: {attack}{extra}}}}}"),
    )
}

/// The `runs show --json` report of run `RUN`, keyed by step id.
fn report(t: &Test) -> std::collections::BTreeMap<String, Value> {
    let out = t.run_args(&["runs", "show", RUN, "--state", "state.sqlite", "--json"]);
    out.status(0);
    let v: Value = serde_json::from_str(&out.stdout).expect("runs show --json");
    let mut steps = std::collections::BTreeMap::new();
    for j in v["jobs"].as_array().unwrap() {
        for s in j["steps"].as_array().unwrap() {
            steps.insert(s["step_id"].as_str().unwrap().to_string(), s.clone());
        }
    }
    steps
}

fn workspace(t: &Test, flow: &str, job: &str) -> std::path::PathBuf {
    t.path(&format!("work/{flow}/{job}/{RUN}"))
}

#[test]
fn escapes_from_the_workspace_are_refused() {
    let t = Test::new();
    let root = t.root().display().to_string();
    let secret = t.path("secret.txt");
    std::fs::write(&secret, "the-secret").unwrap();
    let ws = |job: &str| workspace(&t, "esc", job).display().to_string();
    // A link the operator's filesystem already holds inside a workspace, pointing out.
    std::fs::create_dir_all(ws("planted")).unwrap();
    std::os::unix::fs::symlink(&secret, Path::new(&ws("planted")).join("planted-link")).unwrap();

    let attacks = [
        ("passwd", "read", "/etc/passwd".to_string()),
        ("abs", "read", secret.display().to_string()),
        (
            "dotdot",
            "read",
            format!("{}/../../../../secret.txt", ws("dotdot")),
        ),
        ("planted", "read", format!("{}/planted-link", ws("planted"))),
        ("link_abs", "symlink", secret.display().to_string()),
        ("link_rel", "symlink", "../../../../secret.txt".to_string()),
        ("write_abs", "write", format!("{root}/escape.txt")),
        (
            "write_dotdot",
            "write",
            format!("{}/../../../../escape2.txt", ws("write_dotdot")),
        ),
        ("list_root", "list", "/".to_string()),
        ("list_tmp", "list", "/tmp".to_string()),
    ];
    let mut flow = header("esc") + "jobs:\n";
    for (id, kind, path) in &attacks {
        flow += &attack(id, kind, &format!(", path: \"{path}\""));
    }
    flow += &job(
        "after",
        "{id: after, type: check_items, inputs: {items: [1]}}",
    );
    let t = t.flow(&flow).env("AETHERFLOW_PLUGIN_PATHS", plugins());
    let out = t.run_args(&["run", "flow.yaml", "--run-id", RUN]);
    out.status(1);
    assert!(!out.stdout.contains("the-secret") && !out.stderr.contains("the-secret"));

    let steps = report(&t);
    for (id, kind, path) in &attacks {
        let s = &steps[*id];
        assert_eq!(s["status"], "FAILED", "{id} escaped: {s}");
        let err = s["error"].as_str().unwrap();
        let seen = match *kind {
            "symlink" => "link to",
            other => other,
        };
        // The guest saw the refusal: not found (no preopen covers the path) or not
        // permitted (the path leaves the workspace).
        assert!(
            err.contains(seen) && (err.contains(path.as_str()) || *kind == "symlink"),
            "{id}: {err}"
        );
        assert!(
            err.contains("No such file or directory") || err.contains("not permitted"),
            "{id}: {err}"
        );
        assert!(!s.to_string().contains("the-secret"), "{id}: {s}");
    }
    assert!(!t.path("escape.txt").exists() && !t.path("escape2.txt").exists());
    assert_eq!(steps["after"]["status"], "SUCCESS");
    // The secret is untouched and nothing of it reached the state store.
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "the-secret");
    let db = std::fs::read(t.path("state.sqlite")).unwrap();
    assert!(!db.windows(10).any(|w| w == b"the-secret"));
}

#[test]
fn a_step_sees_no_environment_arguments_or_sockets() {
    let flow =
        header("amb") + "jobs:\n" + &attack("env", "env", "") + &attack("socket", "socket", "");
    let t = Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PLUGIN_PATHS", plugins())
        .env("AETHERFLOW_SECRET_HINT", "do-not-leak");
    let out = t.run_args(&["run", "flow.yaml", "--run-id", RUN]);
    out.status(1);
    let steps = report(&t);
    assert_eq!(steps["env"]["status"], "SUCCESS");
    assert_eq!(steps["env"]["outputs"]["vars"], serde_json::json!([]));
    assert!(
        steps["env"]["outputs"]["args"].as_array().unwrap().len() <= 1,
        "{}",
        steps["env"]
    );
    assert_eq!(steps["socket"]["status"], "FAILED");
    assert!(steps["socket"]["error"]
        .as_str()
        .unwrap()
        .contains("connect:"));
}

#[test]
fn exhaustion_and_crashes_fail_only_their_step() {
    let flow = header("exh")
        + "jobs:\n"
        + &job(
            "spin",
            "{id: spin, type: test_hostile, inputs: {attack: spin}, timeout_seconds: 1}",
        )
        + &attack("recurse", "recurse", "")
        + &attack("bomb", "alloc", ", mb: 200")
        + &attack("under", "alloc", ", mb: 40")
        + &attack("panic", "panic", "")
        + &job(
            "invalid_json",
            "{id: invalid_json, type: test_raw_outputs, inputs: {outputs: \"not json {\"}}",
        )
        + &job(
            "not_object",
            "{id: not_object, type: test_raw_outputs, inputs: {outputs: \"[1, 2]\"}}",
        )
        + &job(
            "after",
            "{id: after, type: check_items, inputs: {items: [1]}}",
        );
    let t = Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PLUGIN_PATHS", plugins())
        .env("AETHERFLOW_STEP_MEMORY_MB", "64");
    let out = t.run_args(&["run", "flow.yaml", "--run-id", RUN]);
    out.status(1);
    let steps = report(&t);
    let err = |id: &str| {
        assert_eq!(steps[id]["status"], "FAILED", "{id}: {}", steps[id]);
        steps[id]["error"].as_str().unwrap().to_string()
    };
    assert_eq!(err("spin"), "step spin timed out after 1s");
    // The guest's stack lives in its linear memory: running off its start traps.
    assert_eq!(
        err("recurse"),
        "step recurse crashed: out of bounds memory access (deep or infinite recursion \
         overflowing the step's stack ends this way too)"
    );
    assert!(
        err("bomb").starts_with("step bomb exceeded its memory limit of 64 MiB"),
        "{}",
        err("bomb")
    );
    assert!(err("panic").contains("deliberate panic from the hostile guest"));
    assert!(
        err("invalid_json").contains("JSON"),
        "{}",
        err("invalid_json")
    );
    assert!(
        err("not_object").contains("object"),
        "{}",
        err("not_object")
    );
    assert_eq!(steps["under"]["status"], "SUCCESS", "{}", steps["under"]);
    assert_eq!(steps["after"]["status"], "SUCCESS");
    // The next run of the same flow file works (nothing is left locked or corrupt).
    t.write(
        "ok.yaml",
        &(header("exh")
            + "jobs:\n"
            + &job("ok", "{id: ok, type: check_items, inputs: {items: [1]}}")),
    );
    t.run_args(&["run", "ok.yaml", "--run-id", "h2"]).status(0);
}

/// A guest that traps while it holds an open cursor: the statement must be released with
/// the instance. With SQLite's rollback journal, a leaked reader would keep its lock and
/// make the next step's INSERT fail with "database is locked" (after the 30 s busy wait).
#[test]
fn a_trap_with_an_open_cursor_releases_it() {
    let flow = header("cur")
        + "resources:\n  db: {kind: db, driver: sqlite3, config: {path: \"{ROOT}/big.db\"}}\n  other: {kind: db, driver: sqlite3, config: {path: \"{ROOT}/other.db\"}}\n"
        + "jobs:\n"
        + &attack("trap", "cursor-trap", ", resource: db")
        + &attack("ungranted", "ungranted", ", resource: db, target: other")
        // Jobs run in file order: this one comes after the trap.
        + "  - id: write\n    steps:\n      - {id: write, type: test_sql_exec, inputs: {resource: db, statements: [\"INSERT INTO big VALUES (-1, 'after')\"]}}\n";
    let t = Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PLUGIN_PATHS", plugins());
    {
        let c = rusqlite::Connection::open(t.path("big.db")).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=DELETE; CREATE TABLE big(id INTEGER, s TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
             INSERT INTO big SELECT i, 'row ' || i FROM n;",
        )
        .unwrap();
        rusqlite::Connection::open(t.path("other.db")).unwrap();
    }
    let out = t.run_args(&["run", "flow.yaml", "--run-id", RUN]);
    let steps = report(&t);
    assert_eq!(steps["trap"]["status"], "FAILED");
    assert!(steps["trap"]["error"]
        .as_str()
        .unwrap()
        .contains("trap with an open cursor (10 rows read)"));
    let ungranted = steps["ungranted"]["error"].as_str().unwrap();
    assert!(
        ungranted.contains("other") && ungranted.contains("not granted"),
        "{ungranted}"
    );
    assert_eq!(steps["write"]["status"], "SUCCESS", "{}", steps["write"]);
    out.status(1);
    let c = rusqlite::Connection::open(t.path("big.db")).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM big WHERE id = -1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

/// A flow of 100 steps (one per job) where every tenth is hostile, each a different attack:
/// the other 90 succeed, the 10 fail with their reason, `runs show` reports each, and a
/// resume with the same run id re-runs only the 10.
#[test]
fn a_hundred_steps_with_every_tenth_hostile() {
    let hostile: [(&str, &str, &str); 10] = [
        (
            "attack: spin}, timeout_seconds: 1",
            "timed out after 1s",
            "",
        ),
        (
            "attack: recurse}",
            "out of bounds memory access (deep or infinite recursion",
            "",
        ),
        (
            "attack: alloc, mb: 200}",
            "exceeded its memory limit of 64 MiB",
            "",
        ),
        (
            "attack: panic}",
            "deliberate panic from the hostile guest",
            "",
        ),
        ("attack: read, path: /etc/passwd}", "read /etc/passwd:", ""),
        ("attack: write, path: \"{ROOT}/escape.txt\"}", "write ", ""),
        (
            "attack: symlink, path: /etc/passwd}",
            "link to /etc/passwd",
            "",
        ),
        ("outputs: \"not json {\"}", "JSON", "raw"),
        (
            "attack: ungranted, resource: db, target: other}",
            "not granted",
            "",
        ),
        ("attack: socket}", "connect:", ""),
    ];
    let mut flow = header("hundred")
        + "resources:\n  db: {kind: db, driver: sqlite3, config: {path: \"{ROOT}/a.db\"}}\n  other: {kind: db, driver: sqlite3, config: {path: \"{ROOT}/b.db\"}}\njobs:\n";
    for i in 1..=100 {
        let id = format!("s{i:03}");
        let step = if i % 10 == 0 {
            let (inputs, _, kind) = hostile[i / 10 - 1];
            let ty = if kind == "raw" {
                "test_raw_outputs"
            } else {
                "test_hostile"
            };
            format!("{{id: {id}, type: {ty}, inputs: {{{inputs}}}")
        } else {
            format!("{{id: {id}, type: check_items, inputs: {{items: [{i}]}}}}")
        };
        flow += &job(&format!("j{i:03}"), &step);
    }
    let t = Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PLUGIN_PATHS", plugins())
        .env("AETHERFLOW_STEP_MEMORY_MB", "64");
    for db in ["a.db", "b.db"] {
        rusqlite::Connection::open(t.path(db)).unwrap();
    }
    let check = |attempt_of_hostile: u64| {
        let steps = report(&t);
        assert_eq!(steps.len(), 100);
        for i in 1..=100 {
            let s = &steps[&format!("s{i:03}")];
            if i % 10 == 0 {
                let want = hostile[i / 10 - 1].1;
                assert_eq!(s["status"], "FAILED", "s{i:03}: {s}");
                let err = s["error"].as_str().unwrap();
                assert!(err.contains(want), "s{i:03}: want {want:?} in {err}");
                assert_eq!(s["attempts"], attempt_of_hostile, "s{i:03}: {s}");
            } else {
                assert_eq!(s["status"], "SUCCESS", "s{i:03}: {s}");
                assert_eq!(s["attempts"], 1, "s{i:03} ran again: {s}");
            }
        }
    };
    let out = t.run_args(&["run", "flow.yaml", "--run-id", RUN]);
    out.status(1);
    assert_eq!(out.named("step_end").len(), 100);
    check(1);
    // The text report names every failed step with its reason.
    let text = t.run_args(&["runs", "show", RUN, "--state", "state.sqlite"]);
    text.status(0);
    for i in (10..=100).step_by(10) {
        assert!(
            text.stdout.contains(&format!("step s{i:03}  FAILED")),
            "{}",
            text.stdout
        );
    }
    // Resume: only the ten hostile steps run again.
    let again = t.run_args(&["run", "flow.yaml", "--run-id", RUN]);
    again.status(1);
    let ran: Vec<String> = again
        .named("step_start")
        .iter()
        .map(|e| e["step_id"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (10..=100).step_by(10).map(|i| format!("s{i:03}")).collect();
    assert_eq!(ran, expected);
    check(2);
    assert!(!t.path("escape.txt").exists());
}
