//! `validate --json` parity with the reference (aetherflow-core 0.0.14).
//!
//! Every `tests/parity/corpus/NNN-name.yaml` is validated by our binary with a clean
//! environment plus the sidecar `NNN-name.env` (KEY=VALUE lines), cwd = the corpus
//! directory, and compared with `tests/parity/golden/NNN-name.json`, which
//! `tests/parity/capture.py` captured from the reference the same way. See
//! tests/parity/README.md.
//!
//! Compared: exit code, `ok`, the presence of `warnings`, `flow_yaml`, and the
//! `(code, loc, msg)` lists of errors and warnings, with these normalisations:
//! * our `schema:unknown_key` warnings are dropped (a deliberate addition: the
//!   reference silently ignores unknown keys);
//! * our `semantic:enterprise_external_process` errors are dropped (a deliberate addition:
//!   enterprise mode refuses `external.process` unless the flow's `settings` allow it, see
//!   docs/provenance.md; the exit code is still compared);
//! * `semantic:unknown_step_type` messages are compared up to `. Loaded: [...]` (the
//!   registered step names differ between the implementations);
//! * a Python set repr in a message (`allowed_roots foo foo.x {'env', 'steps', ...}`) is
//!   compared with its items sorted: Python's set order depends on string hashing.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_aetherflow");

/// Corpus files where we deliberately differ from the reference:
/// (file stem, our exit code, the `(code, loc)` of our single error, why).
const DELIBERATE_DIFFERENCES: &[(&str, i32, (&str, &str), &str)] = &[(
    "023-yaml-syntax-error",
    2,
    ("yaml:syntax", "<root>"),
    "the reference crashes with a Python traceback (yaml.ScannerError, exit 1) and prints \
     no report; we report the YAML error as an ordinary validation error (exit 2) with \
     file:line:col in the message",
)];

fn parity_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/parity")
}

fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(parity_dir().join("corpus"))
        .expect("corpus dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Sidecar env: `KEY=VALUE` lines split at the first `=`, values verbatim; blank lines
/// and `#` lines skipped (same rules as capture.py).
fn sidecar_env(flow: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(flow.with_extension("env")) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: line without '=': {l:?}", flow.display()));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Sort the items of a trailing Python set repr `{'a', 'b'}` in a message.
fn normalise_msg(code: &str, msg: &str) -> String {
    if code == "semantic:unknown_step_type" {
        return msg.split(". Loaded: ").next().unwrap_or(msg).to_string();
    }
    if let (Some(open), Some(close)) = (msg.rfind("{'"), msg.rfind("'}")) {
        if open < close {
            let mut items: Vec<&str> = msg[open + 1..close + 1].split(", ").collect();
            items.sort_unstable();
            return format!(
                "{}{{{}}}{}",
                &msg[..open],
                items.join(", "),
                &msg[close + 2..]
            );
        }
    }
    msg.to_string()
}

fn issues(report: &Value, key: &str, ours: bool) -> Vec<(String, String, String)> {
    report
        .get(key)
        .and_then(Value::as_array)
        .map(|v| v.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap_or_default().to_string();
            (s("code"), s("loc"), s("msg"))
        })
        .filter(|(code, _, _)| {
            !(ours
                && (code == "schema:unknown_key" || code == "semantic:enterprise_external_process"))
        })
        .map(|(code, loc, msg)| {
            let msg = normalise_msg(&code, &msg);
            (code, loc, msg)
        })
        .collect()
}

struct Ours {
    exit: i32,
    report: Option<Value>,
    stderr: String,
}

fn run_ours(flow: &Path) -> Ours {
    let name = flow.file_name().unwrap().to_str().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["validate", name, "--json"])
        .current_dir(flow.parent().unwrap())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in sidecar_env(flow) {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run aetherflow");
    Ours {
        exit: out.status.code().unwrap_or(-1),
        report: serde_json::from_slice(&out.stdout).ok(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Compare one corpus file; returns the differences (empty = parity).
fn compare(flow: &Path) -> Vec<String> {
    let stem = flow.file_stem().unwrap().to_str().unwrap();
    let golden_path = parity_dir().join("golden").join(format!("{stem}.json"));
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(&golden_path)
            .unwrap_or_else(|e| panic!("{}: {e}", golden_path.display())),
    )
    .unwrap();
    let ours = run_ours(flow);
    let mut diffs = Vec::new();
    let Some(report) = &ours.report else {
        return vec![format!(
            "no JSON report from us (exit {}): {}",
            ours.exit, ours.stderr
        )];
    };

    if let Some((_, exit, (code, loc), _)) = DELIBERATE_DIFFERENCES
        .iter()
        .find(|(name, ..)| *name == stem)
    {
        if golden["exit_code"] != 1 || !golden["report"].is_null() {
            diffs.push(
                "listed as a deliberate difference, but the reference no longer crashes".into(),
            );
        }
        if ours.exit != *exit {
            diffs.push(format!("exit {} (deliberately expected {exit})", ours.exit));
        }
        let got: Vec<(String, String)> = issues(report, "errors", true)
            .into_iter()
            .map(|(c, l, _)| (c, l))
            .collect();
        if got != [(code.to_string(), loc.to_string())] {
            diffs.push(format!(
                "errors {got:?} (deliberately expected [({code}, {loc})])"
            ));
        }
        return diffs;
    }

    let expected_exit = golden["exit_code"].as_i64().unwrap() as i32;
    if ours.exit != expected_exit {
        diffs.push(format!(
            "exit: ours {} reference {expected_exit}",
            ours.exit
        ));
    }
    let Some(reference) = golden["report"]
        .as_object()
        .map(|m| Value::Object(m.clone()))
    else {
        diffs.push(format!(
            "the reference printed no report (exit {expected_exit}); add a deliberate \
             difference or fix: {}",
            golden["stderr_tail"]
        ));
        return diffs;
    };
    if report["ok"] != reference["ok"] {
        diffs.push(format!(
            "ok: ours {} reference {}",
            report["ok"], reference["ok"]
        ));
    }
    if report["flow_yaml"] != reference["flow_yaml"] {
        diffs.push(format!(
            "flow_yaml: ours {} reference {}",
            report["flow_yaml"], reference["flow_yaml"]
        ));
    }
    if report.get("warnings").is_some() != reference.get("warnings").is_some() {
        diffs.push("presence of the `warnings` key differs".into());
    }
    for key in ["errors", "warnings"] {
        let (a, b) = (issues(report, key, true), issues(&reference, key, false));
        if a != b {
            diffs.push(format!("{key}:\n    ours      {a:?}\n    reference {b:?}"));
        }
    }
    diffs
}

#[test]
fn corpus_is_large_enough_and_has_goldens() {
    let files = corpus();
    assert!(files.len() >= 45, "only {} corpus files", files.len());
    for f in &files {
        let stem = f.file_stem().unwrap().to_str().unwrap();
        let golden = parity_dir().join("golden").join(format!("{stem}.json"));
        let g: Value =
            serde_json::from_str(&std::fs::read_to_string(&golden).unwrap_or_else(|_| {
                panic!(
                    "missing golden {}; run tests/parity/capture.py",
                    golden.display()
                )
            }))
            .unwrap();
        assert_eq!(
            g["reference"],
            "aetherflow-core 0.0.14",
            "{}",
            golden.display()
        );
    }
    let valid = files
        .iter()
        .filter(|f| {
            let stem = f.file_stem().unwrap().to_str().unwrap();
            let g =
                std::fs::read_to_string(parity_dir().join(format!("golden/{stem}.json"))).unwrap();
            serde_json::from_str::<Value>(&g).unwrap()["report"]["ok"] == true
        })
        .count();
    assert!(
        valid >= 5 && files.len() - valid >= 30,
        "valid {valid} of {}",
        files.len()
    );
}

#[test]
fn validate_json_matches_the_reference() {
    let mut failures = Vec::new();
    let files = corpus();
    for flow in &files {
        let diffs = compare(flow);
        if !diffs.is_empty() {
            failures.push(format!(
                "{}:\n  {}",
                flow.file_name().unwrap().to_string_lossy(),
                diffs.join("\n  ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus files differ from the reference:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn message_normalisation() {
    assert_eq!(
        normalise_msg(
            "template:syntax",
            "x\nallowed_roots foo foo.a {'steps', 'env', 'job'}"
        ),
        "x\nallowed_roots foo foo.a {'env', 'job', 'steps'}"
    );
    assert_eq!(
        normalise_msg(
            "semantic:unknown_step_type",
            "Unknown step type: x. Loaded: ['a']"
        ),
        "Unknown step type: x"
    );
    assert_eq!(normalise_msg("c", "Missing env env.X"), "Missing env env.X");
}
