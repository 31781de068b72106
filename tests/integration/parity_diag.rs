//! `doctor` and `explain` against goldens captured from the reference (tests/parity/diag,
//! aetherflow-core 0.0.14). What must match: exit codes, `ok`, the env keys reported
//! missing, and per resource its kind, driver, profile and decode map. Deliberate
//! differences are asserted as ours and named in `DELIBERATE`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// (case, difference): cases whose `doctor` verdict differs on purpose.
const DELIBERATE: &[(&str, &str)] = &[(
    "03-decode-explain",
    "a profile the flow does not use is only a warning (the reference fails doctor on it)",
)];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/parity/diag")
}

fn ours(case: &str, cmd: &str) -> (i32, Value) {
    let cases = dir().join("cases");
    let mut c = Command::new(env!("CARGO_BIN_EXE_aetherflow"));
    c.current_dir(&cases)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    let side = std::fs::read_to_string(cases.join(format!("{case}.env"))).unwrap_or_default();
    for line in side.lines().filter(|l| l.contains('=')) {
        let (k, v) = line.split_once('=').unwrap();
        c.env(k, v);
    }
    let out = c
        .args([cmd, &format!("{case}.yaml"), "--json"])
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), report)
}

fn missing_keys(report: &Value) -> BTreeSet<String> {
    report["missing_env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["code"] == "semantic:missing_env")
        .filter_map(|m| m["msg"].as_str())
        .filter_map(|m| m.strip_prefix("Missing env env."))
        .map(str::to_string)
        .collect()
}

#[test]
fn doctor_and_explain_match_the_reference() {
    let mut cases: Vec<String> = std::fs::read_dir(dir().join("golden"))
        .unwrap()
        .flatten()
        .map(|e| {
            e.file_name()
                .to_string_lossy()
                .trim_end_matches(".json")
                .to_string()
        })
        .collect();
    cases.sort();
    assert!(cases.len() >= 3);
    for case in cases {
        let golden: Value = serde_json::from_str(
            &std::fs::read_to_string(dir().join(format!("golden/{case}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(golden["reference"], "aetherflow-core 0.0.14");

        let (code, report) = ours(&case, "doctor");
        let want = &golden["doctor"];
        if let Some((_, why)) = DELIBERATE.iter().find(|(c, _)| *c == case) {
            assert_eq!(code, 0, "{case} ({why}): {report}");
            assert_eq!(report["ok"], true, "{case} ({why})");
            let warned: BTreeSet<String> = report["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|w| {
                    w["msg"]
                        .as_str()?
                        .strip_prefix("Missing env env.")?
                        .split(' ')
                        .next()
                        .map(str::to_string)
                })
                .collect();
            assert_eq!(
                warned,
                missing_keys(&want["report"]),
                "{case}: the same keys, as warnings"
            );
        } else {
            assert_eq!(code, want["exit_code"], "{case} doctor exit: {report}");
            assert_eq!(report["ok"], want["report"]["ok"], "{case}");
            assert_eq!(
                missing_keys(&report),
                missing_keys(&want["report"]),
                "{case} missing env"
            );
            // Ours names the resource, profile, field and env key of every item (the
            // reference's text output prints None there).
            for m in report["missing_env"].as_array().unwrap() {
                for key in ["resource", "field", "env_key"] {
                    assert!(m[key].is_string(), "{case}: {m}");
                }
            }
        }

        let (code, report) = ours(&case, "explain");
        let want = &golden["explain"];
        assert_eq!(code, want["exit_code"], "{case} explain exit");
        let theirs = want["report"]["resources"].as_object().unwrap();
        let mine = report["resources"].as_object().unwrap();
        assert_eq!(
            mine.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "{case}: explain lists the resources that name a profile"
        );
        for (name, r) in theirs {
            for key in ["kind", "driver", "profile", "decode"] {
                assert_eq!(mine[name][key], r[key], "{case} resources.{name}.{key}");
            }
        }
    }
}
