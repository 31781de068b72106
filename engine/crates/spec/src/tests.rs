//! Crate-level tests: schema parity vectors (generated from the reference pydantic models),
//! typed specs, unknown-key warnings, semantic checks, profiles.

use super::*;
use serde_json::json;

#[path = "tests_vectors.rs"]
mod vectors;

fn parse(text: &str) -> LoadedFlow {
    match parse_flow(text, "flow.yaml") {
        Ok(l) => l,
        Err(e) => panic!("unexpected load error: {e}"),
    }
}

#[test]
fn schema_vectors_match_reference() {
    for (yaml, expected) in vectors::SCHEMA_VECTORS {
        let loaded = parse(yaml);
        let got = serde_json::to_value(&loaded.errors).unwrap();
        let want: Value = serde_json::from_str(expected).unwrap();
        assert_eq!(got, want, "yaml:\n{yaml}");
        assert_eq!(
            loaded.spec.is_some(),
            loaded.errors.is_empty(),
            "yaml:\n{yaml}"
        );
    }
}

const GOOD: &str = r#"
version: 1
flow:
  id: demo
  description: a demo
  workspace:
    root: /w
    cleanup_policy: never
    layout: {artifacts: out}
  state: {backend: file}
  locks: {scope: flow, ttl_seconds: "60"}
resources:
  db: {kind: db, driver: sqlite3, config: {path: x.db}}
  arc: {kind: archive, driver: zipfile, profile: p1, decode: {config: {password: true}}}
jobs:
  - id: extract
    steps:
      - id: s1
        type: check_items
        inputs: {items: [1, 2]}
        on_no_data: skip_job
        outputs: {n: "{{result.count}}"}
        timeout_seconds: 2.5
        limits: {memory_mb: 64}
  - id: load
    depends_on: [extract]
    when: "jobs.extract.status == 'SUCCESS'"
    steps: []
"#;

#[test]
fn typed_spec_is_built() {
    let l = parse(GOOD);
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let spec = l.spec.expect("spec");
    assert_eq!(spec.version, 1);
    assert_eq!(spec.flow.id, "demo");
    assert_eq!(spec.flow.description.as_deref(), Some("a demo"));
    assert_eq!(spec.flow.workspace.root, "/w");
    assert_eq!(spec.flow.workspace.cleanup_policy, CleanupPolicy::Never);
    // replaced, not merged
    assert_eq!(spec.flow.workspace.layout.len(), 1);
    assert_eq!(spec.flow.workspace.layout["artifacts"], "out");
    assert_eq!(spec.flow.state.backend, StateBackend::File);
    assert_eq!(spec.flow.state.path, "/tmp/state/aetherflow.sqlite");
    assert_eq!(spec.flow.locks.scope, LockScope::Flow);
    assert_eq!(spec.flow.locks.ttl_seconds, 60);
    let names: Vec<&str> = spec.resources.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["db", "arc"]);
    let arc = spec.resource("arc").unwrap();
    assert_eq!(arc.profile.as_deref(), Some("p1"));
    assert_eq!(arc.config, json!({}));
    assert_eq!(arc.decode, json!({"config": {"password": true}}));
    let s = &spec.jobs[0].steps[0];
    assert_eq!(s.type_, "check_items");
    assert_eq!(s.inputs, json!({"items": [1, 2]}));
    assert_eq!(s.on_no_data, Some(OnNoData::SkipJob));
    assert_eq!(s.outputs, json!({"n": "{{result.count}}"}));
    assert_eq!(s.timeout_seconds, Some(2.5));
    assert_eq!(
        s.limits,
        LimitsSpec {
            memory_mb: Some(64),
            ..Default::default()
        }
    );
    assert_eq!(spec.jobs[1].depends_on, ["extract"]);
    assert!(spec.jobs[1].when.is_some());
    assert_eq!(l.raw["flow"]["id"], "demo");
}

#[test]
fn defaults_apply() {
    let spec = parse("flow: {id: x}\njobs: []\n").spec.unwrap();
    assert_eq!(spec.version, 1);
    assert_eq!(spec.flow.workspace, WorkspaceSpec::default());
    assert_eq!(spec.flow.workspace.root, "/tmp/work");
    assert_eq!(spec.flow.workspace.layout.len(), 3);
    assert_eq!(spec.flow.state.backend, StateBackend::Sqlite);
    assert_eq!(spec.flow.locks.scope, LockScope::Job);
    assert_eq!(spec.flow.locks.ttl_seconds, 3600);
    assert!(spec.resources.is_empty());
}

#[test]
fn unknown_keys_warn_with_suggestions() {
    let l = parse(
        "flow: {id: x, worksapce: {}, zzz: 1}\njobs:\n  - id: load\n    depend_on: [a]\n    steps:\n      - {id: s, type: t, input: {}, timeout_secs: 3}\nversoin: 1\n",
    );
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    assert!(l.spec.is_some());
    let got: Vec<(&str, &str)> = l
        .warnings
        .iter()
        .map(|w| (w.loc.as_str(), w.msg.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "flow.worksapce",
                "unknown key `worksapce` in `flow` (ignored): did you mean `workspace`?"
            ),
            ("flow.zzz", "unknown key `zzz` in `flow` (ignored)"),
            (
                "jobs[0].steps[0].input",
                "unknown key `input` in step `s` of job `load` (ignored): did you mean `inputs`?"
            ),
            (
                "jobs[0].steps[0].timeout_secs",
                "unknown key `timeout_secs` in step `s` of job `load` (ignored): did you mean `timeout_seconds`?"
            ),
            (
                "jobs[0].depend_on",
                "unknown key `depend_on` in job `load` (ignored): did you mean `depends_on`?"
            ),
            (
                "versoin",
                "unknown key `versoin` at the top level (ignored): did you mean `version`?"
            ),
        ]
    );
    assert!(l.warnings.iter().all(|w| w.code == "schema:unknown_key"));
    // positions point at the key
    assert_eq!(l.warnings[4].pos, Some(Pos { line: 4, column: 5 }));
}

#[test]
fn engine_step_extensions_are_checked() {
    let base = |extra: &str| {
        format!(
            "flow: {{id: x}}\njobs:\n  - id: j\n    steps:\n      - {{id: s, type: t, {extra}}}\n"
        )
    };
    let cases = [
        (
            "timeout_seconds: 0",
            "schema:greater_than",
            "Input should be greater than 0",
        ),
        (
            "timeout_seconds: -1.5",
            "schema:greater_than",
            "Input should be greater than 0",
        ),
        (
            "timeout_seconds: abc",
            "schema:float_parsing",
            "Input should be a valid number, unable to parse string as a number",
        ),
        (
            "timeout_seconds: [1]",
            "schema:float_type",
            "Input should be a valid number",
        ),
        (
            "timeout_seconds: .nan",
            "schema:greater_than",
            "Input should be greater than 0",
        ),
        (
            "limits: 5",
            "schema:dict_type",
            "Input should be a valid dictionary",
        ),
    ];
    for (extra, code, msg) in cases {
        let l = parse(&base(extra));
        assert_eq!(l.errors.len(), 1, "{extra}: {:?}", l.errors);
        assert_eq!(l.errors[0].code, code, "{extra}");
        assert_eq!(l.errors[0].msg, msg, "{extra}");
        assert_eq!(
            l.errors[0].loc,
            format!("jobs[0].steps[0].{}", extra.split(':').next().unwrap())
        );
    }
    for ok in [
        "timeout_seconds: '5'",
        "timeout_seconds: 1",
        "timeout_seconds: null",
        "limits: null",
        "limits: {}",
    ] {
        let l = parse(&base(ok));
        assert!(
            l.errors.is_empty() && l.warnings.is_empty(),
            "{ok}: {:?}",
            l.errors
        );
    }
    let spec = parse(&base("timeout_seconds: '5'")).spec.unwrap();
    assert_eq!(spec.jobs[0].steps[0].timeout_seconds, Some(5.0));
}

#[test]
fn limits_grants_mounts_and_determinism_are_typed() {
    let l = parse(
        r#"
flow: {id: x, determinism: strict}
jobs:
  - id: j
    steps:
      - id: s
        type: t
        timeout_seconds: 3
        limits:
          timeout_seconds: "1.5"
          fuel: 1000000
          memory_mb: 64
          max_output_bytes: 1 MiB
          max_log_bytes: "10KB"
          max_component_bytes: 2048
        grants: [a, b]
        mounts:
          - {source: ref, target: /ref}
          - {source: "{{env.OUT}}", target: /out, mode: rw}
        determinism: normal
      - {id: t, type: t}
"#,
    );
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let spec = l.spec.unwrap();
    assert_eq!(spec.flow.determinism, Determinism::Strict);
    let s = &spec.jobs[0].steps[0];
    assert_eq!(
        s.limits,
        LimitsSpec {
            timeout_seconds: Some(1.5),
            fuel: Some(1_000_000),
            memory_mb: Some(64),
            max_output_bytes: Some(1 << 20),
            max_log_bytes: Some(10_000),
            max_component_bytes: Some(2048),
        }
    );
    assert_eq!(s.timeout(), Some(1.5), "limits.timeout_seconds wins");
    assert_eq!(s.grants, ["a", "b"]);
    assert_eq!(
        s.mounts,
        [
            MountSpec {
                source: "ref".into(),
                target: "/ref".into(),
                mode: MountMode::ReadOnly
            },
            MountSpec {
                source: "{{env.OUT}}".into(),
                target: "/out".into(),
                mode: MountMode::ReadWrite
            },
        ]
    );
    assert_eq!(s.determinism, Some(Determinism::Normal));
    let t = &spec.jobs[0].steps[1];
    assert!(t.limits.is_empty() && t.grants.is_empty() && t.mounts.is_empty());
    assert_eq!(t.determinism, None);
    assert_eq!(
        parse("flow: {id: x}\njobs: []\n")
            .spec
            .unwrap()
            .flow
            .determinism,
        Determinism::Normal
    );
}

#[test]
fn invalid_limits_grants_and_mounts_are_schema_errors() {
    let base = |extra: &str| {
        format!(
            "flow: {{id: x}}\njobs:\n  - id: j\n    steps:\n      - {{id: s, type: t, {extra}}}\n"
        )
    };
    let cases = [
        ("limits: {fuel: 0}", "limits.fuel", "schema:greater_than"),
        ("limits: {fuel: -5}", "limits.fuel", "schema:greater_than"),
        ("limits: {fuel: lots}", "limits.fuel", "schema:int_parsing"),
        (
            "limits: {memory_mb: 5000}",
            "limits.memory_mb",
            "schema:less_than_equal",
        ),
        (
            "limits: {memory_mb: 0}",
            "limits.memory_mb",
            "schema:greater_than",
        ),
        (
            "limits: {max_output_bytes: 10 parsecs}",
            "limits.max_output_bytes",
            "schema:size_parsing",
        ),
        (
            "limits: {max_log_bytes: 0 KiB}",
            "limits.max_log_bytes",
            "schema:greater_than",
        ),
        (
            "limits: {max_component_bytes: -1}",
            "limits.max_component_bytes",
            "schema:greater_than",
        ),
        (
            "limits: {timeout_seconds: 0}",
            "limits.timeout_seconds",
            "schema:greater_than",
        ),
        (
            "limits: {memroy_mb: 5}",
            "limits.memroy_mb",
            "schema:extra_forbidden",
        ),
        ("grants: shop", "grants", "schema:list_type"),
        ("grants: [1]", "grants[0]", "schema:string_type"),
        (
            "mounts: [{source: a}]",
            "mounts[0].target",
            "schema:missing",
        ),
        (
            "mounts: [{source: a, target: /a, mode: rwx}]",
            "mounts[0].mode",
            "schema:literal_error",
        ),
        (
            "mounts: [{source: a, target: /a, readonly: true}]",
            "mounts[0].readonly",
            "schema:extra_forbidden",
        ),
        ("determinism: exact", "determinism", "schema:literal_error"),
    ];
    for (extra, loc, code) in cases {
        let l = parse(&base(extra));
        assert_eq!(l.errors.len(), 1, "{extra}: {:?}", l.errors);
        assert_eq!(l.errors[0].code, code, "{extra}");
        assert_eq!(
            l.errors[0].loc,
            format!("jobs[0].steps[0].{loc}"),
            "{extra}"
        );
    }
    let l = parse(&base("limits: {memroy_mb: 5}"));
    assert_eq!(
        l.errors[0].msg,
        "Extra inputs are not permitted (did you mean `memory_mb`?)"
    );
    let l = parse(&base("determinism: exact"));
    assert_eq!(l.errors[0].msg, "Input should be 'normal' or 'strict'");
}

#[test]
fn sizes_take_units() {
    use crate::parse_size;
    assert_eq!(parse_size("1024"), Some(1024));
    assert_eq!(parse_size("512 KiB"), Some(512 << 10));
    assert_eq!(parse_size("10MB"), Some(10_000_000));
    assert_eq!(parse_size("1.1 MB"), Some(1_100_000));
    assert_eq!(parse_size("2 gib"), Some(2 << 30));
    assert_eq!(parse_size("3 B"), Some(3));
    assert_eq!(parse_size("MB"), None);
    assert_eq!(parse_size("1 TB"), None);
    assert_eq!(parse_size("-1 MB"), None);
}

#[test]
fn schema_issues_carry_positions() {
    let l = parse(
        "flow:\n  id: 5\njobs:\n  - id: j\n    steps:\n      - id: s\n        on_no_data: nope\n",
    );
    let by_loc = |loc: &str| l.errors.iter().find(|i| i.loc == loc).and_then(|i| i.pos);
    assert_eq!(by_loc("flow.id"), Some(Pos { line: 2, column: 7 }));
    // missing -> the mapping that lacks it
    assert_eq!(
        by_loc("jobs[0].steps[0].type"),
        Some(Pos { line: 6, column: 9 })
    );
    assert_eq!(
        by_loc("jobs[0].steps[0].on_no_data"),
        Some(Pos {
            line: 7,
            column: 21
        })
    );
    assert_eq!(
        l.positions().lookup("jobs[0].steps[0].type"),
        Some(Pos { line: 6, column: 9 })
    );
    let e = parse("flow: {id: x}\nresources:\n  r: {kind: k, driver: d, bogus: 1}\njobs: []\n");
    assert_eq!(e.errors[0].code, "schema:extra_forbidden");
    assert_eq!(
        e.errors[0].pos,
        Some(Pos {
            line: 3,
            column: 27
        })
    );
}

#[test]
fn yaml_errors_name_file_line_and_column() {
    let err = parse_flow("flow:\n  id: x\n  bad: [1,\njobs: []\n", "my.yaml").unwrap_err();
    let s = err.to_string();
    assert!(s.starts_with("my.yaml:"), "{s}");
    assert!(s.lines().last().unwrap().ends_with('^'), "{s}");
    let LoadError::Yaml(y) = err else {
        panic!("expected yaml error")
    };
    assert_eq!(y.kind, YamlErrorKind::Syntax);
}

#[test]
fn load_flow_reads_files_and_reports_io_errors() {
    let dir = std::env::temp_dir().join(format!("aetherflow-spec-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("flow.yaml");
    std::fs::write(&p, GOOD).unwrap();
    let l = load_flow(&p).unwrap();
    assert!(l.spec.is_some());
    assert!(l.file.ends_with("flow.yaml"));
    std::fs::write(&p, [0xff, 0xfe, 0x00]).unwrap();
    assert!(matches!(load_flow(&p), Err(LoadError::Encoding { .. })));
    let missing = dir.join("missing.yaml");
    let e = load_flow(&missing).unwrap_err();
    assert!(matches!(e, LoadError::Io { .. }));
    assert!(e.to_string().contains("missing.yaml"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hostile_inputs_do_not_panic() {
    let deep = format!("flow: {}\njobs: []\n", "[".repeat(5000));
    assert!(parse_flow(&deep, "f").is_err());
    let ok_deep = format!(
        "flow: {{id: x}}\njobs:\n  - id: j\n    steps:\n      - id: s\n        type: t\n        inputs: {{a: {}{}}}\n",
        "[".repeat(200),
        "]".repeat(200)
    );
    assert!(parse(&ok_deep).errors.is_empty());
    let huge = format!("flow: {{id: {}}}\njobs: []\n", "x".repeat(2_000_000));
    assert!(parse(&huge).spec.is_some());
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (i, c) in ('b'..='j').enumerate() {
        let p = char::from(b'a' + i as u8);
        bomb.push_str(&format!(
            "{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        ));
    }
    let e = parse_flow(&bomb, "bomb.yaml").unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");
    for junk in [
        "\u{0}", "- [", "{a: }", "a: b: c", "? ? ?", "&x *x", "!!map 5", "!!seq {}", "<<: [1]",
    ] {
        let _ = parse_flow(junk, "junk.yaml");
    }
}

// ---------------------------------------------------------------------------------------------
// semantic checks
// ---------------------------------------------------------------------------------------------

fn builtin_steps() -> Vec<String> {
    [
        "check_items",
        "db_extract",
        "db_extract_stream",
        "db_fetch_small",
        "excel_fill_from_file",
        "excel_fill_small",
        "excel_validate_template",
        "external.process",
        "mail_send",
        "sftp_delete_files",
        "sftp_download_files",
        "sftp_list_files",
        "sftp_upload_files",
        "smb_delete_files",
        "smb_download_files",
        "smb_list_files",
        "smb_upload_files",
        "unzip",
        "with_lock",
        "zip",
    ]
    .iter()
    .rev()
    .map(|s| s.to_string())
    .collect()
}

/// A stand-in for the engine's `when` validator (only what these tests need).
fn fake_when(expr: &str) -> Result<(), String> {
    if expr.contains("foo") {
        Err("Unsupported name: foo".into())
    } else {
        Ok(())
    }
}

/// A stand-in for the engine's external.process validator (reference `_validate_external_process`).
fn fake_ext(inputs: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let Some(cmd) = inputs.get("command") else {
        return vec![(
            "command".into(),
            "semantic:external_process_missing_command".into(),
            "external.process requires inputs.command".into(),
        )];
    };
    if !(cmd.is_string() || cmd.is_array()) {
        out.push((
            "command".into(),
            "semantic:external_process_command_type".into(),
            "external.process inputs.command must be a string or list".into(),
        ));
    }
    if let Some(m) = inputs.pointer("/log/stdout").and_then(Value::as_str) {
        if !["inherit", "capture", "file", "discard"].contains(&m) {
            out.push((
                "log.stdout".into(),
                "semantic:external_process_log_mode".into(),
                format!("Unknown log mode: {m}"),
            ));
        }
    }
    out
}

/// Parity vector: reference output of `AETHERFLOW_MODE=enterprise aetherflow validate --json`.
const SEMANTIC_FLOW: &str = r#"
flow: {id: demo}
resources:
  z: {kind: archive, driver: zipfile}
jobs:
  - id: a
    depends_on: [b, zz]
    when: "jobs.b.status == 'x' and foo"
    steps:
      - {id: s, type: nope}
      - {id: s, type: external.process, inputs: {command: 5, log: {stdout: weird}}}
      - {id: t, type: external.process}
  - id: b
    steps: []
  - id: a
    steps: []
"#;

#[test]
fn semantic_checks_match_reference_order_and_text() {
    let l = parse(SEMANTIC_FLOW);
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    let opts = SemanticOptions {
        enterprise: true,
        archive_allowlist: vec![],
        known_step_types: builtin_steps(),
        when_check: &fake_when,
        external_process_check: &fake_ext,
    };
    let issues = l.semantic_checks(&opts);
    let got = serde_json::to_value(&issues).unwrap();
    let want = json!([
        {"code": "semantic:enterprise_archive_driver", "loc": "resources.z.driver", "msg": "Enterprise mode requires archive driver in []; got 'zipfile'"},
        {"code": "semantic:duplicate_job_id", "loc": "jobs", "msg": "Duplicate job id: a"},
        {"code": "semantic:duplicate_step_id", "loc": "jobs[0].steps", "msg": "Duplicate step id in job 'a': s"},
        {"code": "semantic:depends_on_unknown_job", "loc": "jobs[0].depends_on", "msg": "Job 'a' depends_on unknown job: zz"},
        {"code": "semantic:unknown_step_type", "loc": "jobs[0].steps[0].type", "msg": "Unknown step type: nope. Loaded: ['check_items', 'db_extract', 'db_extract_stream', 'db_fetch_small', 'excel_fill_from_file', 'excel_fill_small', 'excel_validate_template', 'external.process', 'mail_send', 'sftp_delete_files', 'sftp_download_files', 'sftp_list_files', 'sftp_upload_files', 'smb_delete_files', 'smb_download_files', 'smb_list_files', 'smb_upload_files', 'unzip', 'with_lock', 'zip']"},
        {"code": "semantic:external_process_command_type", "loc": "jobs[0].steps[1].inputs.command", "msg": "external.process inputs.command must be a string or list"},
        {"code": "semantic:external_process_log_mode", "loc": "jobs[0].steps[1].inputs.log.stdout", "msg": "Unknown log mode: weird"},
        {"code": "semantic:external_process_missing_command", "loc": "jobs[0].steps[2].inputs.command", "msg": "external.process requires inputs.command"},
        {"code": "semantic:invalid_when", "loc": "jobs[0].when", "msg": "Unsupported name: foo"}
    ]);
    assert_eq!(got, want);
    // positions are attached from the index
    assert_eq!(
        issues[4].pos,
        Some(Pos {
            line: 10,
            column: 23
        })
    );
    assert_eq!(issues[7].pos, l.positions().value_pos("jobs[0].steps[2]"));
}

#[test]
fn semantic_order_rule_and_allowlist() {
    let l = parse(
        "flow: {id: x}\nresources:\n  z: {kind: archive, driver: pyzipper}\n  y: {kind: archive, driver: os}\njobs:\n  - {id: a, depends_on: [b, a], steps: []}\n  - {id: b, steps: [], when: '  '}\n",
    );
    let opts = SemanticOptions {
        enterprise: true,
        archive_allowlist: vec!["zipfile".into(), "pyzipper".into()],
        known_step_types: vec![],
        when_check: &|_| Err("never called for blank".into()),
        external_process_check: &|_| Vec::new(),
    };
    let issues = l.semantic_checks(&opts);
    let got: Vec<(&str, &str, &str)> = issues
        .iter()
        .map(|i| (i.code.as_str(), i.loc.as_str(), i.msg.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "semantic:enterprise_archive_driver",
                "resources.y.driver",
                "Enterprise mode requires archive driver in ['pyzipper', 'zipfile']; got 'os'"
            ),
            (
                "semantic:depends_on_order",
                "jobs[0].depends_on",
                "Job 'a' depends_on 'b' which appears after it; reorder jobs"
            ),
        ]
    );
    // not enterprise: no archive check
    let opts = SemanticOptions {
        enterprise: false,
        ..opts
    };
    assert_eq!(l.semantic_checks(&opts).len(), 1);
}

#[test]
fn py_repr_matches_python() {
    assert_eq!(py_repr_str("a"), "'a'");
    assert_eq!(py_repr_str("it's"), "\"it's\"");
    assert_eq!(py_repr_str("a'b\"c"), "'a\\'b\"c'");
    assert_eq!(py_repr_str("a\\b\n"), "'a\\\\b\\n'");
    assert_eq!(py_sorted_list_repr(["b", "a", "b"]), "['a', 'b']");
    assert_eq!(py_sorted_list_repr(std::iter::empty()), "[]");
}

// ---------------------------------------------------------------------------------------------
// flow meta re-validation and profiles
// ---------------------------------------------------------------------------------------------

#[test]
fn flow_meta_revalidation() {
    let meta = flow_meta_from_value(&json!({"id": "x", "workspace": {"root": "/r"}})).unwrap();
    assert_eq!(meta.id, "x");
    assert_eq!(meta.workspace.root, "/r");
    let errs = flow_meta_from_value(
        &json!({"workspace": {"cleanup_policy": "x"}, "locks": {"ttl_seconds": "1.5"}}),
    )
    .unwrap_err();
    let got: Vec<(&str, &str)> = errs
        .iter()
        .map(|i| (i.code.as_str(), i.loc.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("schema:missing", "flow.id"),
            ("schema:literal_error", "flow.workspace.cleanup_policy"),
            ("schema:int_parsing", "flow.locks.ttl_seconds"),
        ]
    );
    let errs = flow_meta_from_value(&json!("x")).unwrap_err();
    assert_eq!(
        errs[0].msg,
        "Input should be a valid dictionary or instance of FlowMetaSpec"
    );
}

#[test]
fn profiles_schema_matches_reference() {
    // reference: ProfilesFileSpec.model_validate({"p": {"x": 1, "config": 1}, "q": 3})
    let errs = parse_profiles(&json!({"p": {"x": 1, "config": 1}, "q": 3})).unwrap_err();
    let got = serde_json::to_value(&errs).unwrap();
    assert_eq!(
        got,
        json!([
            {"code": "schema:dict_type", "loc": "p.config", "msg": "Input should be a valid dictionary"},
            {"code": "schema:extra_forbidden", "loc": "p.x", "msg": "Extra inputs are not permitted"},
            {"code": "schema:model_type", "loc": "q", "msg": "Input should be a valid dictionary or instance of ProfileSpec"}
        ])
    );
    let errs = parse_profiles(&json!([])).unwrap_err();
    assert_eq!(
        (errs[0].code.as_str(), errs[0].loc.as_str()),
        ("schema:dict_type", "<root>")
    );
    let ok = parse_profiles(&json!({"p": {"config": {"host": "{{env.H}}"}}, "e": {}})).unwrap();
    assert_eq!(ok["p"].config, json!({"host": "{{env.H}}"}));
    assert_eq!(ok["p"].options, json!({}));
    assert_eq!(ok["e"].decode, json!({}));
}

#[test]
fn pinned_step_types_lock_section_and_settings_are_parsed() {
    let hex = "Ab".repeat(32);
    let flow = parse(&format!(
        "flow: {{id: f}}\nsteps:\n  greet: {{sha256: \"{hex}\", version: \"1.2.0\", path: ./greet.wasm}}\n  check_items: {{version: \"0.1.0\"}}\nsettings: {{allow_external_process: true}}\njobs:\n  - id: j\n    steps:\n      - {{id: a, type: \"greet@sha256:{hex}\"}}\n      - {{id: b, type: check_items}}\n"
    ));
    assert!(flow.errors.is_empty(), "{:?}", flow.errors);
    assert!(flow.warnings.is_empty(), "{:?}", flow.warnings);
    let spec = flow.spec.unwrap();
    let lower = hex.to_ascii_lowercase();
    let steps = &spec.jobs[0].steps;
    assert_eq!(
        (steps[0].type_.as_str(), steps[0].type_sha256.as_deref()),
        ("greet", Some(lower.as_str()))
    );
    assert_eq!(
        (steps[1].type_.as_str(), steps[1].type_sha256.as_deref()),
        ("check_items", None)
    );
    assert_eq!(
        spec.step_lock,
        vec![
            (
                "greet".to_string(),
                StepLockEntry {
                    sha256: Some(lower.clone()),
                    version: Some("1.2.0".into()),
                    path: Some("./greet.wasm".into()),
                }
            ),
            (
                "check_items".to_string(),
                StepLockEntry {
                    version: Some("0.1.0".into()),
                    ..Default::default()
                }
            ),
        ]
    );
    assert!(spec.settings.allow_external_process);

    // Both sections are optional and may be null.
    let spec = parse("flow: {id: f}\nsteps:\nsettings:\njobs: []\n")
        .spec
        .unwrap();
    assert!(spec.step_lock.is_empty() && !spec.settings.allow_external_process);
}

#[test]
fn malformed_pins_and_settings_are_schema_errors() {
    let errors = |yaml: &str| -> Vec<(String, String, String)> {
        parse(yaml)
            .errors
            .into_iter()
            .map(|i| (i.code, i.loc, i.msg))
            .collect()
    };
    let e =
        errors("flow: {id: f}\njobs:\n  - id: j\n    steps:\n      - {id: a, type: greet@1.2}\n");
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].0.as_str(), e[0].1.as_str()),
        ("schema:step_pin", "jobs[0].steps[0].type")
    );
    assert!(
        e[0].2
            .contains("`<name>@sha256:<64 hex digits>`; got `greet@1.2`"),
        "{}",
        e[0].2
    );

    let e =
        errors("flow: {id: f}\nsteps:\n  greet: {sha256: abc, pathh: x}\n  other: {}\njobs: []\n");
    let got: Vec<(&str, &str)> = e.iter().map(|(c, l, _)| (c.as_str(), l.as_str())).collect();
    assert_eq!(
        got,
        vec![
            ("schema:sha256", "steps.greet.sha256"),
            ("schema:extra_forbidden", "steps.greet.pathh"),
            ("schema:missing", "steps.other"),
        ]
    );

    let e = errors("flow: {id: f}\nsettings: {allow_external_process: \"yes\", allow_everything: true}\njobs: []\n");
    let got: Vec<(&str, &str)> = e.iter().map(|(c, l, _)| (c.as_str(), l.as_str())).collect();
    assert_eq!(
        got,
        vec![
            ("schema:bool_type", "settings.allow_external_process"),
            ("schema:extra_forbidden", "settings.allow_everything"),
        ]
    );
}
