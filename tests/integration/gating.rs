//! The gating matrix: BLOCKED, SKIPPED by `when`, `on_no_data: skip_job`, failure
//! propagation to dependants while independent jobs still run.

use crate::harness::{header, job_status, Test};

fn matrix() -> String {
    header("gates")
        + r#"jobs:
  - id: probe
    steps:
      - id: check
        type: check_items
        inputs: {items: ""}
        on_no_data: skip_job
      - id: never
        type: external.process
        inputs: {command: ["sh", "-c", "touch {ROOT}/never-ran"]}
  - id: needs_probe
    depends_on: [probe]
    steps:
      - {id: c, type: check_items, inputs: {items: [1]}}
  - id: gated
    when: "jobs.probe.status == 'SUCCESS'"
    steps:
      - {id: c, type: check_items, inputs: {items: [1]}}
  - id: counted
    steps:
      - id: c
        type: check_items
        inputs: {items: [a, b, c]}
        outputs: {n: "{{result.count}}", has: "{{result.has_data}}"}
  - id: uses_outputs
    depends_on: [counted]
    when: "jobs.counted.outputs.n > 2 and jobs.counted.outputs.has == true"
    steps:
      - id: echo
        type: external.process
        inputs:
          command: ["sh", "-c", "echo n={{jobs.counted.outputs.n}} > {ROOT}/n.txt"]
  - id: fails
    steps:
      - {id: boom, type: external.process, inputs: {command: ["sh", "-c", "exit 3"]}}
  - id: after_fail
    depends_on: [fails]
    steps:
      - {id: c, type: check_items, inputs: {items: [1]}}
  - id: independent
    steps:
      - {id: c, type: check_items, inputs: {items: [1]}}
"#
}

#[test]
fn gating_matrix() {
    let t = Test::new().flow(&matrix());
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "gates1"]);
    out.status(1)
        .stdout_has("FAILED: flow=gates run_id=gates1 failed_jobs=1");
    let statuses: Vec<(String, String)> = vec![
        ("probe", "SKIPPED"),
        ("needs_probe", "BLOCKED"),
        ("gated", "SKIPPED"),
        ("counted", "SUCCESS"),
        ("uses_outputs", "SUCCESS"),
        ("fails", "FAILED"),
        ("after_fail", "BLOCKED"),
        ("independent", "SUCCESS"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let store = t.store();
    for (job, want) in &statuses {
        assert_eq!(
            &job_status(&store, "gates", "gates1", job),
            want,
            "job {job}"
        );
    }
    // The short-circuited step never ran; the when-gated job had no job_start.
    assert!(!t.path("never-ran").exists());
    assert_eq!(
        std::fs::read_to_string(t.path("n.txt")).unwrap().trim(),
        "n=3"
    );
    let started: Vec<String> = out
        .named("job_start")
        .iter()
        .map(|e| e["job_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        started,
        ["probe", "counted", "uses_outputs", "fails", "independent"]
    );
    // The failure is reported with the process error and the summary counts every status.
    let failed = out
        .named("job_end")
        .into_iter()
        .find(|e| e["job_id"] == "fails")
        .unwrap();
    assert!(failed["error"]
        .as_str()
        .unwrap()
        .contains("external.process failed with exit code 3"));
    let summary = &out.named("run_summary")[0];
    assert_eq!(
        summary["status_counts"],
        serde_json::json!({"BLOCKED": 2, "FAILED": 1, "SKIPPED": 2, "SUCCESS": 3})
    );
    let probe = out
        .named("job_end")
        .into_iter()
        .find(|e| e["job_id"] == "probe")
        .unwrap();
    assert_eq!(probe["skip_reason"], "count(0) < min_count(1)");
}

#[test]
fn invalid_when_at_run_time_fails_only_that_job() {
    let t = Test::new().flow(
        &(header("w")
            + "jobs:\n  - id: a\n    when: \"jobs.nope.outputs.x == 1\"\n    steps: []\n  - id: b\n    steps:\n      - {id: c, type: check_items, inputs: {items: [1]}}\n"),
    );
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "w1"]);
    out.status(1);
    let store = t.store();
    assert_eq!(job_status(&store, "w", "w1", "a"), "FAILED");
    assert_eq!(job_status(&store, "w", "w1", "b"), "SUCCESS");
    let ended = out
        .events()
        .into_iter()
        .find(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Job failed: Invalid job.when for job_id=a"))
        })
        .is_some();
    assert!(ended, "{}", out.stderr);
}

#[test]
fn flow_job_reads_dependency_status_from_the_store() {
    let flow = header("fj")
        + "jobs:\n  - id: first\n    steps:\n      - {id: c, type: check_items, inputs: {items: [1, 2]}, outputs: {n: \"{{result.count}}\"}}\n  - id: second\n    depends_on: [first]\n    steps:\n      - {id: e, type: external.process, inputs: {command: [\"sh\", \"-c\", \"echo {{jobs.first.outputs.n}} > {ROOT}/second.txt\"]}}\n";
    let t = Test::new().flow(&flow);
    // Without the dependency having run, the job is BLOCKED (exit 0, as the reference).
    t.run_args(&["run", "flow.yaml", "--run-id", "r1", "--flow-job", "second"])
        .status(0);
    assert_eq!(job_status(&t.store(), "fj", "r1", "second"), "BLOCKED");
    // Once `first` ran in another process, `second` sees its status and outputs.
    t.run_args(&["run", "flow.yaml", "--run-id", "r1", "--flow-job", "first"])
        .status(0);
    t.run_args(&["run", "flow.yaml", "--run-id", "r1", "--flow-job", "second"])
        .status(0);
    assert_eq!(job_status(&t.store(), "fj", "r1", "second"), "SUCCESS");
    assert_eq!(
        std::fs::read_to_string(t.path("second.txt"))
            .unwrap()
            .trim(),
        "2"
    );
}

#[test]
fn cleanup_policy_on_success_removes_the_job_dir_but_keeps_failed_ones() {
    let flow = "version: 1\nflow:\n  id: cl\n  workspace: {root: \"{ROOT}/work\"}\n  state: {path: \"{ROOT}/state.sqlite\"}\njobs:\n  - id: ok\n    steps:\n      - {id: c, type: check_items, inputs: {items: [1]}}\n  - id: bad\n    steps:\n      - {id: p, type: external.process, inputs: {command: [\"false\"]}}\n";
    let t = Test::new().flow(flow);
    t.run_args(&["run", "flow.yaml", "--run-id", "c1"])
        .status(1);
    assert!(!t.path("work/cl/ok/c1").exists());
    assert!(t.path("work/cl/bad/c1/artifacts").is_dir());
}
