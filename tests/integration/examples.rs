//! Every flow in examples/ runs end to end (from the repository root, as the README says).

use std::path::PathBuf;

use aetherflow_test_fixtures as fx;

use crate::harness::{Outcome, Test};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run_example(t: &Test, flow: &str, extra_env: &[(&str, &str)]) -> Outcome {
    let mut cmd = t.command(&["run", flow]);
    cmd.current_dir(repo_root())
        .env("AETHERFLOW_EXAMPLE_DIR", t.root());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    Outcome::from(cmd.output().unwrap())
}

#[test]
fn example_quickstart() {
    let t = Test::new();
    let out = run_example(&t, "examples/quickstart/flow.yaml", &[]);
    out.status(0);
    let published = std::fs::read_to_string(t.path("published-sales.tsv")).unwrap();
    assert_eq!(
        published,
        "id\tregion\tamount\tsold_on\n1\tnorth\t120.5\t2026-01-03\n2\tsouth\t80.0\t2026-01-04\n3\teast\t42.25\t2026-01-04\n4\tnorth\t17.0\t2026-01-05\n5\twest\t\t2026-01-06\n6\tZürich\t3.5\t\n"
    );
    let run_id = out.run_id();
    let totals = std::fs::read_to_string(t.path(&format!(
        "work/quickstart/extract/{run_id}/artifacts/out/totals.jsonl"
    )))
    .unwrap();
    assert_eq!(
        totals,
        "{\"region\": \"Zürich\", \"total\": 3.5}\n{\"region\": \"east\", \"total\": 42.25}\n{\"region\": \"north\", \"total\": 137.5}\n{\"region\": \"south\", \"total\": 80.0}\n"
    );
    let counted = out.named("external_process_stdout");
    assert!(
        counted[0]["message"].as_str().unwrap().starts_with("7 "),
        "{counted:?}"
    );
}

#[test]
fn example_plugin_greet() {
    let t = Test::new();
    let out = run_example(
        &t,
        "examples/plugin-greet/flow.yaml",
        &[("AETHERFLOW_PLUGIN_PATHS", fx::GREET)],
    );
    out.status(0);
    let lines: Vec<String> = out
        .named("external_process_stdout")
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(lines, ["Hello, Ada!", "Hello, Grace!", "Hello, Linus!"]);
    let log = out.named("step_log");
    assert_eq!(
        log[0]["message"],
        format!("greeted 3 people in run {}", out.run_id())
    );
}
