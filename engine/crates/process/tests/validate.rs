use aetherflow_process::{
    validate, ValidationIssue, CODE_ATOMIC_DIR, CODE_COMMAND_TYPE, CODE_LOG_FILE, CODE_LOG_MODE,
    CODE_MISSING_COMMAND,
};
use serde_json::json;

fn one(loc: &str, code: &'static str, msg: &str) -> ValidationIssue {
    ValidationIssue {
        loc_suffix: loc.to_string(),
        code,
        msg: msg.to_string(),
    }
}

#[test]
fn valid_inputs_have_no_issues() {
    assert!(validate(&json!({"command": ["echo", "hi"]})).is_empty());
    assert!(validate(
        &json!({"command": "echo hi", "log": {"stdout": "file", "file_path": "x.log"}})
    )
    .is_empty());
    assert!(validate(&json!({
        "command": "x",
        "log": {"stdout": "capture", "stderr": "discard"},
        "idempotency": {"strategy": "atomic_dir", "temp_output_dir": "t", "final_output_dir": "f"}
    }))
    .is_empty());
    // null / empty log mode means inherit
    assert!(validate(&json!({"command": "x", "log": {"stdout": null, "stderr": ""}})).is_empty());
}

#[test]
fn missing_command_stops_further_checks() {
    let issues = validate(&json!({"log": {"stdout": "bogus"}}));
    assert_eq!(
        issues,
        vec![one(
            "command",
            CODE_MISSING_COMMAND,
            "external.process requires inputs.command"
        )]
    );
    // a null command is present (type error, not missing)
    let issues = validate(&json!({"command": null}));
    assert_eq!(
        issues,
        vec![one(
            "command",
            CODE_COMMAND_TYPE,
            "external.process inputs.command must be a string or list"
        )]
    );
}

#[test]
fn command_type_then_other_checks() {
    let issues = validate(&json!({"command": 5, "log": {"stderr": "weird"}}));
    assert_eq!(
        issues,
        vec![
            one(
                "command",
                CODE_COMMAND_TYPE,
                "external.process inputs.command must be a string or list"
            ),
            one("log.stderr", CODE_LOG_MODE, "Unknown log mode: weird"),
        ]
    );
}

#[test]
fn log_mode_is_case_sensitive_at_validation() {
    let issues = validate(&json!({"command": "x", "log": {"stdout": "CAPTURE", "stderr": 3}}));
    assert_eq!(
        issues,
        vec![
            one("log.stdout", CODE_LOG_MODE, "Unknown log mode: CAPTURE"),
            one("log.stderr", CODE_LOG_MODE, "Unknown log mode: 3"),
        ]
    );
}

#[test]
fn file_mode_requires_file_path() {
    let issues = validate(&json!({"command": "x", "log": {"stderr": "file"}}));
    assert_eq!(
        issues,
        vec![one(
            "log.file_path",
            CODE_LOG_FILE,
            "log.file_path is required when stdout/stderr mode is 'file'"
        )]
    );
    let issues = validate(&json!({"command": "x", "log": {"stdout": "file", "file_path": ""}}));
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].code, CODE_LOG_FILE);
    // "FILE" is an unknown mode at validation time, and does not trigger the file_path check
    let issues = validate(&json!({"command": "x", "log": {"stdout": "FILE"}}));
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].code, CODE_LOG_MODE);
}

#[test]
fn atomic_dir_requires_both_dirs() {
    for idem in [
        json!({"strategy": "atomic_dir"}),
        json!({"strategy": "atomic_dir", "temp_output_dir": "t"}),
        json!({"strategy": "atomic_dir", "final_output_dir": "f", "temp_output_dir": ""}),
    ] {
        let issues = validate(&json!({"command": ["x"], "idempotency": idem}));
        assert_eq!(
            issues,
            vec![one(
                "idempotency",
                CODE_ATOMIC_DIR,
                "atomic_dir requires temp_output_dir and final_output_dir"
            )]
        );
    }
    // case-sensitive strategy at validation: ATOMIC_DIR is not checked
    assert!(
        validate(&json!({"command": ["x"], "idempotency": {"strategy": "ATOMIC_DIR"}})).is_empty()
    );
}

#[test]
fn all_codes_in_order() {
    let issues = validate(&json!({
        "command": {"a": 1},
        "log": {"stdout": "nope", "stderr": "file"},
        "idempotency": {"strategy": "atomic_dir"}
    }));
    let codes: Vec<&str> = issues.iter().map(|i| i.code).collect();
    assert_eq!(
        codes,
        vec![
            CODE_COMMAND_TYPE,
            CODE_LOG_MODE,
            CODE_LOG_FILE,
            CODE_ATOMIC_DIR
        ]
    );
}
