//! `with_lock` across processes: two concurrent `aetherflow run` processes contend for one
//! key and exactly one wins; the lease is released in every outcome.

use crate::harness::{header, Test};

fn locked_flow() -> String {
    header("locks")
        + r#"jobs:
  - id: publish
    steps:
      # A barrier: both processes reach the lock within ~50 ms of each other, however
      # loaded the machine is, so the test measures contention and not start-up order.
      - id: barrier
        type: external.process
        inputs:
          command: ["sh", "-c", "touch {ROOT}/ready-$AETHERFLOW_RUN_ID; until [ $(ls {ROOT} | grep -c '^ready-') -ge 2 ]; do sleep 0.05; done"]
          timeout_seconds: 60
      - id: guarded
        type: with_lock
        inputs:
          lock_key: shared-target
          ttl_seconds: 60
          step:
            type: external.process
            inputs: {command: ["sh", "-c", "echo $AETHERFLOW_RUN_ID >> {ROOT}/holders.log; sleep 3"]}
"#
}

#[test]
fn two_processes_contend_and_exactly_one_wins() {
    let t = Test::new().flow(&locked_flow());
    let a = t.spawn(&["run", "flow.yaml", "--run-id", "proc_a"]);
    let b = t.spawn(&["run", "flow.yaml", "--run-id", "proc_b"]);
    let a = a.wait_with_output().unwrap();
    let b = b.wait_with_output().unwrap();
    let codes = [a.status.code().unwrap(), b.status.code().unwrap()];
    let mut sorted = codes;
    sorted.sort();
    assert_eq!(
        sorted,
        [0, 1],
        "exactly one run must win: {codes:?}\n--- a\n{}\n--- b\n{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    let loser = if codes[0] == 1 { &a } else { &b };
    let loser_err = String::from_utf8_lossy(&loser.stderr);
    assert!(
        loser_err.contains("Lock not acquired: shared-target"),
        "{loser_err}"
    );
    let holders = std::fs::read_to_string(t.path("holders.log")).unwrap();
    assert_eq!(
        holders.lines().count(),
        1,
        "only the winner ran the guarded step: {holders}"
    );

    // Released at the end: a third run gets the lock (it passes the barrier alone now).
    t.run_args(&["run", "flow.yaml", "--run-id", "proc_c"])
        .status(0);
}

#[test]
fn the_lock_is_released_when_the_inner_step_fails() {
    let flow = header("lf")
        + r#"jobs:
  - id: j
    steps:
      - id: guarded
        type: with_lock
        inputs:
          lock_key: k
          step: {type: external.process, inputs: {command: ["false"]}}
"#;
    let t = Test::new().flow(&flow);
    t.run_args(&["run", "flow.yaml", "--run-id", "one"])
        .status(1);
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "two"]);
    out.status(1);
    // It failed again because of the inner step, not because the lock was still held.
    assert!(!out.stderr.contains("Lock not acquired"), "{}", out.stderr);
    use aetherflow_state::StateStore;
    assert!(t
        .store()
        .try_acquire_lock("k", "probe", 10)
        .unwrap()
        .is_some());
}
