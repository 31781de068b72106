//! `kill -9` in the middle of a run, then resume: no finished step runs twice, and the
//! interrupted step runs again.

use std::time::{Duration, Instant};

use aetherflow_state::{JobKey, StateStore, StepStatus};

use crate::harness::{header, Test};

#[test]
fn sigkill_mid_run_then_resume_runs_no_finished_step_twice() {
    let mut flow = header("crash") + "jobs:\n  - id: j\n    steps:\n";
    for i in 1..=6 {
        flow.push_str(&format!(
            "      - {{id: s{i}, type: external.process, inputs: {{command: [\"sh\", \"-c\", \"echo s{i} >> {{ROOT}}/ran.log; sleep 0.4\"]}}}}\n"
        ));
        flow.push_str(&format!(
            "      - {{id: c{i}, type: check_items, inputs: {{items: [{i}]}}}}\n"
        ));
    }
    let t = Test::new().flow(&flow);
    let mut child = t.spawn(&["run", "flow.yaml", "--run-id", "k1"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = std::fs::read_to_string(t.path("ran.log"))
            .unwrap_or_default()
            .lines()
            .count();
        if lines >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the run did not progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let store = t.store();
    let done_before: Vec<String> = store
        .steps_of_job(&JobKey::new("crash", "k1", "j"))
        .unwrap()
        .into_iter()
        .filter(|s| s.status.is_done())
        .map(|s| s.step_id)
        .collect();
    assert!(!done_before.is_empty());
    drop(store);

    t.run_args(&["run", "flow.yaml", "--run-id", "k1"])
        .status(0);
    let ran = std::fs::read_to_string(t.path("ran.log")).unwrap();
    for i in 1..=6 {
        let n = ran.lines().filter(|l| *l == format!("s{i}")).count();
        let id = format!("s{i}");
        if done_before.contains(&id) {
            assert_eq!(n, 1, "finished step {id} ran again:\n{ran}");
        } else {
            assert!(n >= 1, "step {id} never ran:\n{ran}");
        }
    }
    let steps = t
        .store()
        .steps_of_job(&JobKey::new("crash", "k1", "j"))
        .unwrap();
    assert_eq!(steps.len(), 12);
    assert!(steps.iter().all(|s| s.status == StepStatus::Success));
}
