//! Resume: rerunning with the same run id skips finished steps, restores their outputs so
//! later templates still resolve, and never runs a finished step twice.

use aetherflow_state::{StateStore, StepKey};

use crate::harness::{header, Test};

#[test]
fn resume_after_failure_restores_outputs() {
    let flow = header("res")
        + r#"jobs:
  - id: load
    steps:
      - id: count
        type: check_items
        inputs: {items: [a, b, c]}
        outputs: {total: "{{result.count}}"}
      - id: once
        type: external.process
        inputs: {command: ["sh", "-c", "echo ran >> {ROOT}/once.log"]}
      - id: gate
        type: external.process
        inputs: {command: ["test", "-f", "{ROOT}/go"]}
      - id: use
        type: external.process
        inputs:
          command: ["sh", "-c", "echo count={{steps.count.count}} total={{job.outputs.total}} > {ROOT}/use.txt"]
"#;
    let t = Test::new().flow(&flow);
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(1);
    assert!(!t.path("use.txt").exists());

    std::fs::write(t.path("go"), "").unwrap();
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(0);
    // Restored outputs resolved the later templates (the reference loses them here).
    assert_eq!(
        std::fs::read_to_string(t.path("use.txt")).unwrap().trim(),
        "count=3 total=3"
    );
    assert_eq!(
        std::fs::read_to_string(t.path("once.log")).unwrap(),
        "ran\n"
    );
    let resumed: Vec<String> = out
        .events()
        .into_iter()
        .filter_map(|e| e["message"].as_str().map(String::from))
        .filter(|m| m.starts_with("Step skip (resume)"))
        .collect();
    assert_eq!(
        resumed,
        [
            "Step skip (resume) step_id=count prev=SUCCESS",
            "Step skip (resume) step_id=once prev=SUCCESS"
        ]
    );

    let store = t.store();
    let gate = store
        .step(&StepKey::new("res", "r1", "load", "gate"))
        .unwrap()
        .unwrap();
    assert_eq!(gate.attempts, 2);
    assert_eq!(gate.status.as_str(), "SUCCESS");
    let count = store
        .step(&StepKey::new("res", "r1", "load", "count"))
        .unwrap()
        .unwrap();
    assert_eq!(count.attempts, 1);
    assert_eq!(count.outputs.unwrap()["count"], 3);
}

#[test]
fn a_failed_step_is_recorded_with_its_error() {
    let t = Test::new().flow(
        &(header("fe") + "jobs:\n  - id: j\n    steps:\n      - {id: p, type: external.process, inputs: {command: [\"sh\", \"-c\", \"exit 7\"]}}\n"),
    );
    t.run_args(&["run", "flow.yaml", "--run-id", "x"]).status(1);
    let rec = t
        .store()
        .step(&StepKey::new("fe", "x", "j", "p"))
        .unwrap()
        .unwrap();
    assert_eq!(rec.status.as_str(), "FAILED");
    assert!(rec.error.unwrap().contains("exit code 7"));
}

#[test]
fn a_new_run_id_is_a_fresh_run() {
    let t = Test::new().flow(
        &(header("fr") + "jobs:\n  - id: j\n    steps:\n      - {id: p, type: external.process, inputs: {command: [\"sh\", \"-c\", \"echo x >> {ROOT}/runs.log\"]}}\n"),
    );
    t.run_args(&["run", "flow.yaml"]).status(0);
    t.run_args(&["run", "flow.yaml"]).status(0);
    assert_eq!(
        std::fs::read_to_string(t.path("runs.log")).unwrap(),
        "x\nx\n"
    );
}
