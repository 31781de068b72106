//! The command line: flow argument forms, validate output, exit codes, JSON logs.

use std::collections::BTreeSet;

use crate::harness::{header, Test};

fn valid_flow() -> String {
    header("cli")
        + "jobs:\n  - id: a\n    steps:\n      - {id: c, type: check_items, inputs: {items: [1]}}\n"
}

#[test]
fn validate_ok_text_and_json() {
    let t = Test::new().flow(&valid_flow());
    t.run_args(&["validate", "flow.yaml"])
        .status(0)
        .stdout_has("OK: flow.yaml");
    t.run_args(&["validate", "--flow-yaml", "flow.yaml"])
        .status(0)
        .stdout_has("OK: flow.yaml");
    let out = t.run_args(&["validate", "flow.yaml", "--json"]);
    out.status(0);
    let report: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["errors"], serde_json::json!([]));
    assert_eq!(report["warnings"], serde_json::json!([]));
    assert_eq!(report["flow_yaml"], "flow.yaml");
}

#[test]
fn validate_reports_semantic_errors_with_codes_and_exit_2() {
    let t = Test::new().flow(
        &(header("bad")
            + "jobs:\n  - id: a\n    depends_on: [b]\n    steps:\n      - {id: c, type: check_itemz, inputs: {items: [1]}}\n  - id: b\n    when: \"x == 1\"\n    steps: []\n"),
    );
    let out = t.run_args(&["validate", "flow.yaml"]);
    out.status(2)
        .stdout_has("INVALID: flow.yaml")
        .stdout_has("- jobs[0].depends_on: semantic:depends_on_order - Job 'a' depends_on 'b' which appears after it; reorder jobs")
        .stdout_has("- jobs[0].steps[0].type: semantic:unknown_step_type - Unknown step type: check_itemz. Loaded: ['check_items', 'db_extract', 'db_extract_stream', 'db_fetch_small', 'external.process', 'with_lock']")
        .stdout_has("- jobs[1].when: semantic:invalid_when - Unsupported name: x");
    let json = t.run_args(&["validate", "flow.yaml", "--json"]);
    json.status(2);
    let report: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    let codes: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "semantic:depends_on_order",
            "semantic:unknown_step_type",
            "semantic:invalid_when"
        ]
    );
}

#[test]
fn schema_errors_have_no_warnings_key_and_name_the_line() {
    let t = Test::new().flow(
        "version: 1\nflow:\n  id: x\n  workspace:\n    cleanup_policy: sometimes\njobs: []\n",
    );
    let out = t.run_args(&["validate", "flow.yaml"]);
    out.status(2).stdout_has(
        "- flow.workspace.cleanup_policy: schema:literal_error - Input should be 'on_success', 'always' or 'never' (at flow.yaml:5:",
    );
    let json = t.run_args(&["validate", "flow.yaml", "--json"]);
    let report: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert!(report.get("warnings").is_none());
}

#[test]
fn yaml_syntax_error_names_file_line_and_column() {
    let t = Test::new().flow("version: 1\nflow:\n  id: [unclosed\njobs: []\n");
    t.run_args(&["validate", "flow.yaml"])
        .status(2)
        .stdout_has("flow.yaml:");
}

#[test]
fn unknown_keys_warn_with_a_suggestion() {
    let t = Test::new()
        .flow(&(header("warn") + "jobs:\n  - id: a\n    depend_on: []\n    steps: []\n"));
    t.run_args(&["validate", "flow.yaml"])
        .status(0)
        .stdout_has("! jobs[0].depend_on: schema:unknown_key")
        .stdout_has("did you mean `depends_on`?");
}

#[test]
fn usage_errors_exit_2() {
    let t = Test::new().flow(&valid_flow());
    t.run_args(&["run"])
        .status(2)
        .stderr_has("a flow file is required");
    t.run_args(&["run", "flow.yaml", "--flow-yaml", "other.yaml"])
        .status(2)
        .stderr_has("two different flow files");
    t.run_args(&["run", "missing.yaml"])
        .status(2)
        .stderr_has("cannot read flow file `missing.yaml`");
    t.run_args(&["frobnicate"]).status(2);
    t.run_args(&[]).status(2);
}

#[test]
fn run_of_an_invalid_flow_exits_2_and_runs_nothing() {
    let t = Test::new()
        .flow(&(header("inv") + "jobs:\n  - id: a\n    steps:\n      - {id: c, type: nope}\n"));
    t.run_args(&["run", "flow.yaml"])
        .status(2)
        .stderr_has("semantic:unknown_step_type");
    assert!(!t.path("state.sqlite").exists());
}

#[test]
fn json_log_mode_prints_nothing_but_json_on_stderr() {
    let t = Test::new().flow(&valid_flow());
    let out = t.run_args(&["run", "flow.yaml"]);
    out.status(0).stdout_has("SUCCESS: flow=cli run_id=");
    let names: Vec<String> = out
        .events()
        .iter()
        .filter_map(|e| e["event"].as_str().map(String::from))
        .collect();
    assert_eq!(
        names,
        [
            "run_start",
            "job_start",
            "step_start",
            "step_end",
            "job_end",
            "run_summary"
        ]
    );
    for e in out.events() {
        assert!(e["ts_ms"].as_u64().is_some());
    }
    let step_end = &out.named("step_end")[0];
    for key in [
        "flow_id",
        "run_id",
        "job_id",
        "step_id",
        "step_type",
        "status",
        "duration_ms",
    ] {
        assert!(
            step_end.get(key).is_some(),
            "step_end lacks {key}: {step_end}"
        );
    }
}

#[test]
fn text_log_mode_is_the_default() {
    let t = Test::new()
        .flow(&valid_flow())
        .env("AETHERFLOW_LOG_FORMAT", "text");
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "abc123"]);
    out.status(0)
        .stderr_has("aetherflow.flow.cli - INFO - run_start flow_id=cli run_id=abc123");
}

#[test]
fn run_ids_are_12_hex_chars() {
    let t = Test::new().flow(&valid_flow());
    let id = t.run_args(&["run", "flow.yaml"]).run_id();
    assert_eq!(id.len(), 12);
    assert!(id
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
}

#[test]
fn run_reports_validation_warnings() {
    let t = Test::new()
        .flow(&(header("warnrun") + "jobs:\n  - id: a\n    depend_on: []\n    steps: []\n"));
    let out = t.run_args(&["run", "flow.yaml"]);
    out.status(0);
    let warned = out.events().into_iter().any(|e| {
        e["level"] == "WARNING"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("jobs[0].depend_on: schema:unknown_key"))
    });
    assert!(warned, "{}", out.stderr);
}

#[test]
fn log_level_filters_events() {
    let t = Test::new()
        .flow(&valid_flow())
        .env("AETHERFLOW_LOG_LEVEL", "warning");
    let out = t.run_args(&["run", "flow.yaml"]);
    out.status(0);
    assert!(
        out.events().is_empty(),
        "INFO events at WARNING level:\n{}",
        out.stderr
    );
    let failing = Test::new()
        .flow(&(header("lvl") + "jobs:\n  - id: a\n    steps:\n      - {id: p, type: external.process, inputs: {command: [\"false\"]}}\n"))
        .env("AETHERFLOW_LOG_LEVEL", "WARNING");
    let out = failing.run_args(&["run", "flow.yaml"]);
    out.status(1);
    let levels: BTreeSet<String> = out
        .events()
        .iter()
        .map(|e| e["level"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        levels,
        BTreeSet::from(["ERROR".to_string()]),
        "{}",
        out.stderr
    );
}
