//! `aetherflow runs list` / `runs show`: reading the state store after real runs.

use serde_json::Value;

use crate::harness::{header, Outcome, Test};

/// Job `load` fails on its `gate` step until `{ROOT}/go` exists; job `after` depends on it.
fn flow(id: &str) -> String {
    header(id)
        + r#"jobs:
  - id: load
    steps:
      - id: hello
        type: external.process
        inputs:
          command: ["sh", "-c", "echo hi"]
          outputs: {api_token: "tok-abc-123", rows: 3, lock_key: "nightly"}
      - id: gate
        type: external.process
        inputs: {command: ["test", "-f", "{ROOT}/go"]}
  - id: after
    depends_on: [load]
    steps:
      - id: s
        type: external.process
        inputs: {command: ["true"]}
"#
}

fn json_of(out: &Outcome) -> Value {
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", out.stdout))
}

fn job<'v>(show: &'v Value, id: &str) -> &'v Value {
    show["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_id"] == id)
        .unwrap_or_else(|| panic!("no job {id} in {show}"))
}

fn step<'v>(job: &'v Value, id: &str) -> &'v Value {
    job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step_id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {job}"))
}

#[test]
fn show_records_failure_then_resume() {
    let t = Test::new().flow(&flow("x"));
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(1);

    // After the failed attempt.
    let out = t.run_args(&["runs", "show", "r1", "--state", "state.sqlite", "--json"]);
    out.status(0);
    let v = json_of(&out);
    assert_eq!(v["run"]["run_id"], "r1");
    assert_eq!(v["run"]["flow_id"], "x");
    assert_eq!(v["run"]["status"], "FAILED");
    assert_eq!(v["run"]["attempt"], 1);
    let load = job(&v, "load");
    assert_eq!(load["status"], "FAILED");
    assert!(
        load["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{load}"
    );
    let gate = step(load, "gate");
    assert_eq!(gate["status"], "FAILED");
    assert_eq!(gate["attempts"], 1);
    assert_eq!(gate["step_type"], "external.process");
    assert!(
        gate["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{gate}"
    );
    assert_eq!(gate["outputs"], Value::Null);
    assert_eq!(job(&v, "after")["status"], "BLOCKED");
    assert_eq!(job(&v, "after")["steps"], serde_json::json!([]));

    // Resume: `gate` runs a second time, `hello` is restored.
    std::fs::write(t.path("go"), "").unwrap();
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(0);
    let out = t.run_args(&["runs", "show", "r1", "--state", "state.sqlite", "--json"]);
    out.status(0);
    let v = json_of(&out);
    let run = &v["run"];
    assert_eq!(run["status"], "SUCCESS");
    assert_eq!(run["attempt"], 2);
    for k in [
        "started_at_ms",
        "resumed_at_ms",
        "ended_at_ms",
        "duration_ms",
    ] {
        assert!(run[k].is_i64(), "run.{k} in {run}");
    }
    assert!(run["flow_yaml"].as_str().unwrap().ends_with("flow.yaml"));
    let ids: Vec<&str> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["load", "after"]);

    let load = job(&v, "load");
    assert_eq!(load["status"], "SUCCESS");
    assert_eq!(load["error"], Value::Null);
    assert_eq!(load["skip_reason"], Value::Null);
    assert!(load["duration_ms"].is_i64());
    let hello = step(load, "hello");
    assert_eq!(hello["status"], "SUCCESS");
    assert_eq!(hello["attempts"], 1);
    // Secret-like key masked, ordinary outputs (even `lock_key`) kept.
    assert_eq!(hello["outputs"]["api_token"], "***");
    assert_eq!(hello["outputs"]["rows"], 3);
    assert_eq!(hello["outputs"]["lock_key"], "nightly");
    assert_eq!(hello["outputs"]["exit_code"], 0);
    let gate = step(load, "gate");
    assert_eq!(gate["status"], "SUCCESS");
    assert_eq!(gate["attempts"], 2);
    assert_eq!(gate["error"], Value::Null);
    for k in [
        "step_id",
        "step_type",
        "status",
        "attempts",
        "started_at_ms",
        "ended_at_ms",
        "duration_ms",
        "outputs",
        "reason",
        "error",
    ] {
        assert!(gate.get(k).is_some(), "step key {k} missing in {gate}");
    }
    let after = job(&v, "after");
    assert_eq!(after["status"], "SUCCESS");
    assert_eq!(step(after, "s")["attempts"], 1);
    assert!(!out.stdout.contains("tok-abc-123"));

    // Text form.
    let out = t.run_args(&["runs", "show", "r1", "--state", "state.sqlite"]);
    out.status(0)
        .stdout_has("run r1  flow=x  SUCCESS  attempt=2  started=")
        .stdout_has("  job load  SUCCESS  duration=")
        .stdout_has("    step gate  SUCCESS  attempts=2  duration=")
        .stdout_has("\"api_token\":\"***\"")
        .stdout_has("    step s  SUCCESS  attempts=1");
    assert!(!out.stdout.contains("tok-abc-123"), "{}", out.stdout);
}

#[test]
fn show_text_names_the_failed_step_error() {
    let t = Test::new().flow(&flow("x"));
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(1);
    let out = t.run_args(&["runs", "show", "r1", "--flow-yaml", "flow.yaml"]);
    out.status(0)
        .stdout_has("run r1  flow=x  FAILED  attempt=1")
        .stdout_has("  job load  FAILED")
        .stdout_has("    step gate  FAILED  attempts=1")
        .stdout_has("  job after  BLOCKED  duration=-");
    let gate_line = out
        .stdout
        .lines()
        .find(|l| l.contains("step gate"))
        .unwrap();
    assert!(gate_line.contains("  error: "), "{gate_line}");
}

#[test]
fn list_in_text_and_json() {
    let t = Test::new().flow(&flow("x"));
    std::fs::write(t.path("go"), "").unwrap();
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(0);
    t.run_args(&["run", "flow.yaml", "--run-id", "r2"])
        .status(0);

    let out = t.run_args(&["runs", "list", "--state", "state.sqlite"]);
    out.status(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    // Newest first.
    assert!(
        lines[0].starts_with("r2  flow=x  SUCCESS  attempt=1  started="),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("r1  flow=x  SUCCESS  attempt=1  started="),
        "{}",
        lines[1]
    );
    assert!(lines[0].contains("Z  duration="), "{}", lines[0]);

    // The store named by the flow file.
    let out = t.run_args(&["runs", "list", "--flow-yaml", "flow.yaml"]);
    out.status(0);
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);

    let out = t.run_args(&["runs", "list", "--state", "state.sqlite", "--json"]);
    out.status(0);
    let v = json_of(&out);
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["run_id"], "r2");
    assert_eq!(runs[1]["run_id"], "r1");
    let r = &runs[0];
    assert_eq!(r["flow_id"], "x");
    assert_eq!(r["status"], "SUCCESS");
    assert_eq!(r["attempt"], 1);
    let (start, end) = (
        r["started_at_ms"].as_i64().unwrap(),
        r["ended_at_ms"].as_i64().unwrap(),
    );
    assert!(end >= start);
    assert_eq!(r["duration_ms"].as_i64().unwrap(), end - start);

    let out = t.run_args(&[
        "runs",
        "list",
        "--state",
        "state.sqlite",
        "--limit",
        "1",
        "--json",
    ]);
    out.status(0);
    assert_eq!(json_of(&out)["runs"].as_array().unwrap().len(), 1);

    let out = t.run_args(&["runs", "list", "--state", "state.sqlite", "--flow", "nope"]);
    out.status(0)
        .stdout_has("no runs of flow `nope` in state.sqlite");
    let out = t.run_args(&[
        "runs",
        "list",
        "--state",
        "state.sqlite",
        "--flow",
        "nope",
        "--json",
    ]);
    out.status(0);
    assert_eq!(json_of(&out), serde_json::json!({"runs": []}));
}

#[test]
fn unknown_ambiguous_and_missing() {
    let t = Test::new().flow(&flow("x")).file("flow2.yaml", &flow("y"));
    std::fs::write(t.path("go"), "").unwrap();
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(0);

    t.run_args(&["runs", "show", "nope", "--state", "state.sqlite"])
        .status(2)
        .stderr_has("no run `nope` in state store `state.sqlite`");
    t.run_args(&[
        "runs",
        "show",
        "r1",
        "--flow",
        "y",
        "--state",
        "state.sqlite",
    ])
    .status(2)
    .stderr_has("no run `r1` of flow `y`");

    // Two flows share the run id: --flow is required.
    t.run_args(&["run", "flow2.yaml", "--run-id", "r1"])
        .status(0);
    t.run_args(&["runs", "show", "r1", "--state", "state.sqlite"])
        .status(2)
        .stderr_has("exists in several flows (`x`, `y`)")
        .stderr_has("pass --flow FLOW_ID");
    let out = t.run_args(&[
        "runs",
        "show",
        "r1",
        "--flow",
        "y",
        "--state",
        "state.sqlite",
        "--json",
    ]);
    out.status(0);
    assert_eq!(json_of(&out)["run"]["flow_id"], "y");

    // A missing store is an error naming it, and is not created.
    t.run_args(&["runs", "list", "--state", "missing/none.sqlite"])
        .status(2)
        .stderr_has("state store `missing/none.sqlite` does not exist");
    t.run_args(&["runs", "show", "r1", "--state", "none.sqlite"])
        .status(2)
        .stderr_has("`none.sqlite` does not exist");
    assert!(!t.path("none.sqlite").exists());
    assert!(!t.path("missing").exists());

    // --state and --flow-yaml exclude each other; --limit must be positive.
    t.run_args(&[
        "runs",
        "list",
        "--state",
        "state.sqlite",
        "--flow-yaml",
        "flow.yaml",
    ])
    .status(2);
    t.run_args(&["runs", "list", "--state", "state.sqlite", "--limit", "0"])
        .status(2);
    // A flow file that cannot be read.
    t.run_args(&["runs", "list", "--flow-yaml", "absent.yaml"])
        .status(2)
        .stderr_has("absent.yaml");
}

#[test]
fn flow_yaml_store_path_is_rendered_with_env() {
    let flow = "version: 1\nflow:\n  id: envy\n  workspace:\n    root: \"{ROOT}/work\"\n  state:\n    path: \"{{env.RUNS_STATE_DIR}}/envy.sqlite\"\njobs:\n  - id: j\n    steps:\n      - {id: p, type: external.process, inputs: {command: [\"true\"]}}\n";
    let t = Test::new().flow(flow);
    let dir = t.path("states").display().to_string();
    let t = t.env("RUNS_STATE_DIR", &dir);
    t.run_args(&["run", "flow.yaml", "--run-id", "e1"])
        .status(0);
    assert!(t.path("states/envy.sqlite").exists());
    t.run_args(&["runs", "list", "--flow-yaml", "flow.yaml"])
        .status(0)
        .stdout_has("e1  flow=envy  SUCCESS  attempt=1");
    t.run_args(&["runs", "show", "e1", "--flow-yaml", "flow.yaml"])
        .status(0)
        .stdout_has("    step p  SUCCESS  attempts=1");
}
