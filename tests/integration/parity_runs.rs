//! `run` parity with the reference (aetherflow-core 0.0.14): parity checklist §14 items 1–5.
//!
//! Every `tests/parity/runs/cases/NN-name/` (a `flow.yaml`, maybe other flows, and
//! `case.json`) is run by our binary the way `tests/parity/runs/capture.py` ran the
//! reference: the case directory is copied to a fresh temporary directory ROOT (`{ROOT}`
//! in the files replaced by its path), an empty `ROOT/out/` is created, and the runs of
//! `case.json` are executed in order with cwd = ROOT and a clean environment (`PATH`, the
//! case's `env`, plus JSON logs and the shared component cache). After each run we
//! record the same things the golden (`tests/parity/runs/golden/NN-name.json`) holds and
//! compare:
//!
//! * `exit_code` (a signal N is -N);
//! * `run_id`: the `--run-id` given, `"<12hex>"` for a generated 12-hex id, or null when
//!   the run did not start (we read the `run_id=` of our result line on stdout);
//! * `jobs` / `steps`: the status of each job and step of that run id in our state store
//!   (`ROOT/state.sqlite`, read with `aetherflow_state::SqliteStore`); the reference's are
//!   its `job_runs` / `step_runs` rows;
//! * `files`: every file under `ROOT/out/` with its text (steps write rendered template
//!   values there, so this is where the templating vectors are compared);
//! * `paths`: existence of the case's listed paths (job directories, cleanup);
//! * `stderr_contains`: whether stderr contains each listed string.
//!
//! One normalisation: when compared with the reference's `steps`, our rows of steps that
//! did not finish (`FAILED`; `RUNNING` after a crash) are dropped, because the reference
//! writes no row for them (a documented difference, see `without_unfinished`).
//!
//! Where we deliberately differ, the golden carries `deliberate_difference` (why) and
//! `ours.runs[i]`: fields that replace the reference's values of run i; the test of such
//! a case is named after the difference. Everything not overridden must match the
//! reference exactly.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Map, Value};

use crate::harness::BIN;

const REFERENCE: &str = "aetherflow-core 0.0.14";

fn runs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/parity/runs")
}

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Copy the case directory into `root`, replacing `{ROOT}` in every file.
fn prepare(src: &Path, root: &Path) {
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let from = entry.path();
        let to = root.join(entry.file_name());
        if from.is_dir() {
            std::fs::create_dir_all(&to).unwrap();
            prepare(&from, &to);
        } else {
            let text = std::fs::read_to_string(&from).unwrap();
            std::fs::write(&to, text.replace("{ROOT}", &root.display().to_string())).unwrap();
        }
    }
}

fn before(root: &Path, spec: &Value) {
    for rel in spec["touch"].as_array().into_iter().flatten() {
        let p = root.join(rel.as_str().unwrap());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "").unwrap();
    }
    for rel in spec["remove"].as_array().into_iter().flatten() {
        let _ = std::fs::remove_file(root.join(rel.as_str().unwrap()));
    }
    if let Some(secs) = spec["sleep"].as_f64() {
        std::thread::sleep(std::time::Duration::from_secs_f64(secs));
    }
}

fn files_under(root: &Path) -> Map<String, Value> {
    fn walk(root: &Path, dir: &Path, out: &mut Map<String, Value>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                let bytes = std::fs::read(&p).unwrap();
                out.insert(
                    rel,
                    Value::String(String::from_utf8_lossy(&bytes).into_owned()),
                );
            }
        }
    }
    let mut out = Map::new();
    walk(root, &root.join("out"), &mut out);
    out
}

/// `{job: status}` and `{"job.step": status}` of one run in our state store.
fn store_rows(root: &Path, run_id: Option<&str>) -> (Map<String, Value>, Map<String, Value>) {
    let (mut jobs, mut steps) = (Map::new(), Map::new());
    let db = root.join("state.sqlite");
    let Some(run_id) = run_id else {
        return (jobs, steps);
    };
    if !db.exists() {
        return (jobs, steps);
    }
    use aetherflow_state::StateStore;
    let store = aetherflow_state::SqliteStore::open(&db, aetherflow_state::Durability::Process)
        .expect("open our state store");
    if let Some(detail) = store.run_detail(None, run_id).expect("run_detail") {
        for j in detail.jobs {
            jobs.insert(j.job_id, json!(j.status.as_str()));
        }
        for s in detail.steps {
            steps.insert(
                format!("{}.{}", s.job_id, s.step_id),
                json!(s.status.as_str()),
            );
        }
    }
    (jobs, steps)
}

/// The last `n` characters of `s`.
fn tail(s: &str, n: usize) -> String {
    let skip = s.chars().count().saturating_sub(n);
    s.chars().skip(skip).collect()
}

fn arg_after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.windows(2)
        .find(|w| w[0] == flag)
        .map(|w| w[1].as_str())
}

fn is_hex12(s: &str) -> bool {
    s.len() == 12
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Run our binary through the case; one record per run (same shape as the golden's).
fn run_ours(case_dir: &Path, spec: &Value) -> Vec<Value> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    prepare(case_dir, root);
    std::fs::create_dir_all(root.join("out")).unwrap();
    let mut records = Vec::new();
    for run in spec["runs"].as_array().expect("runs") {
        before(root, &run["before"]);
        let args: Vec<String> = run["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let mut cmd = Command::new(BIN);
        cmd.args(&args)
            .current_dir(root)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AETHERFLOW_LOG_FORMAT", "json")
            .env("AETHERFLOW_CACHE_DIR", cache_dir())
            .stdin(Stdio::null());
        for (k, v) in spec["env"].as_object().into_iter().flatten() {
            cmd.env(k, v.as_str().unwrap());
        }
        let out = cmd.output().expect("run aetherflow");
        let exit = {
            use std::os::unix::process::ExitStatusExt;
            out.status
                .code()
                .or_else(|| out.status.signal().map(|s| -s))
                .unwrap_or(-1)
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The run id of our `run_start` event (as the capture reads the reference's), else
        // of the result line on stdout.
        let real_id = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["event"] == "run_start")
            .and_then(|e| e["run_id"].as_str().map(str::to_string))
            .or_else(|| {
                stdout
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("run_id="))
                    .map(str::to_string)
            });
        let given = arg_after(&args, "--run-id");
        let run_id = match &real_id {
            None => Value::Null,
            Some(r) if Some(r.as_str()) == given => json!(r),
            Some(r) if is_hex12(r) => json!("<12hex>"),
            Some(r) => json!(r),
        };
        let (jobs, steps) = store_rows(root, real_id.as_deref());
        let paths: Map<String, Value> = spec["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let p = p.as_str().unwrap();
                (p.to_string(), json!(root.join(p).exists()))
            })
            .collect();
        let contains: Map<String, Value> = spec["stderr_contains"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let s = s.as_str().unwrap();
                (s.to_string(), json!(stderr.contains(s)))
            })
            .collect();
        records.push(json!({
            "args": args,
            "exit_code": exit,
            "run_id": run_id,
            "jobs": jobs,
            "steps": steps,
            "files": files_under(root),
            "paths": paths,
            "stderr_contains": contains,
            "stdout": stdout,
            "stderr_tail": tail(&stderr, 1500),
        }));
    }
    records
}

const COMPARED: &[&str] = &[
    "exit_code",
    "run_id",
    "jobs",
    "steps",
    "files",
    "paths",
    "stderr_contains",
];

/// Our step rows without those of steps that did not finish (`FAILED`, or `RUNNING`
/// after a crash). The reference writes a `step_runs` row only when a step finishes, so
/// it has none of these (docs/differences.md, "Failed step"). Applied only when comparing
/// with the reference's rows; an `ours` override is compared unfiltered.
fn without_unfinished(steps: &Value) -> Value {
    let Some(map) = steps.as_object() else {
        return steps.clone();
    };
    Value::Object(
        map.iter()
            .filter(|(_, st)| *st != "FAILED" && *st != "RUNNING")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// The differing entries of two JSON values (per key for objects).
fn describe_diff(got: &Value, expected: &Value) -> String {
    match (got.as_object(), expected.as_object()) {
        (Some(g), Some(e)) => {
            let mut keys: Vec<&String> = g.keys().chain(e.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| g.get(*k) != e.get(*k))
                .map(|k| {
                    let show = |v: Option<&Value>| v.map_or("<absent>".into(), Value::to_string);
                    format!(
                        "    {k}: got {} expected {}",
                        show(g.get(k)),
                        show(e.get(k))
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        _ => format!("    got {got} expected {expected}"),
    }
}

/// Run case `name` and compare with its golden. `deliberate` says whether the golden must
/// carry a deliberate difference (keeps the test names honest).
fn check(name: &str, deliberate: bool) {
    let case_dir = runs_dir().join("cases").join(name);
    let spec = read_json(&case_dir.join("case.json"));
    let golden = read_json(&runs_dir().join("golden").join(format!("{name}.json")));
    assert_eq!(
        golden["reference"], REFERENCE,
        "{name}: golden made by another reference"
    );
    assert_eq!(
        golden.get("deliberate_difference").is_some(),
        deliberate,
        "{name}: deliberate_difference presence does not match the test"
    );
    assert_eq!(
        golden.get("ours"),
        spec.get("ours"),
        "{name}: golden `ours` is stale; rerun capture.py {name}"
    );
    let reference = golden["runs"].as_array().unwrap();
    assert_eq!(
        reference.len(),
        spec["runs"].as_array().unwrap().len(),
        "{name}: golden is stale; rerun capture.py {name}"
    );
    let ours = run_ours(&case_dir, &spec);
    let mut diffs = Vec::new();
    for (i, (got, reference)) in ours.iter().zip(reference).enumerate() {
        assert_eq!(
            got["args"], reference["args"],
            "{name}: golden is stale (args of run {i}); rerun capture.py {name}"
        );
        let overrides = golden["ours"]["runs"].get(i);
        for key in COMPARED {
            let (expected, source, actual) = match overrides.and_then(|o| o.get(*key)) {
                Some(v) => (v, "ours (deliberate)", got[*key].clone()),
                None if *key == "steps" => (
                    &reference[*key],
                    "reference",
                    without_unfinished(&got[*key]),
                ),
                None => (&reference[*key], "reference", got[*key].clone()),
            };
            if &actual != expected {
                diffs.push(format!(
                    "run {i} {}: {key} (expected: {source})\n{}",
                    got["args"],
                    describe_diff(&actual, expected)
                ));
            }
        }
        if diffs.iter().any(|d| d.starts_with(&format!("run {i} "))) {
            diffs.push(format!(
                "run {i} stdout: {}\nrun {i} stderr (tail): {}",
                got["stdout"].as_str().unwrap(),
                got["stderr_tail"].as_str().unwrap()
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{name} differs from the golden:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn every_case_has_a_golden_and_a_test() {
    let mut names: Vec<String> = std::fs::read_dir(runs_dir().join("cases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let tested: &[&str] = &[
        "01-cli-usage",
        "02-cli-run-exit-codes",
        "03-templating-vectors",
        "04-templating-errors-at-run",
        "05-templating-forbidden-syntax",
        "06-when-matrix",
        "07-when-eval-errors",
        "08-runner-failure",
        "09-runner-skips",
        "10-runner-flow-job-deps",
        "11-runner-resume",
        "12-locks-one-run",
        "13-locks-ttl-after-crash",
    ];
    assert_eq!(names, tested, "add a #[test] for every case");
    for n in &names {
        let g = read_json(&runs_dir().join("golden").join(format!("{n}.json")));
        assert_eq!(g["reference"], REFERENCE, "{n}");
    }
}

// §14.1 CLI surface.

#[test]
fn cli_usage_errors_exit_2_but_we_deliberately_accept_a_positional_path_and_report_missing_flows_as_usage(
) {
    check("01-cli-usage", true);
}

#[test]
fn cli_run_exit_codes_and_unknown_flow_job() {
    check("02-cli-run-exit-codes", false);
}

// §14.2 templating matrix.

#[test]
fn templating_vectors_render_like_python_str() {
    check("03-templating-vectors", false);
}

#[test]
fn templating_errors_at_run_fail_the_job() {
    check("04-templating-errors-at-run", false);
}

#[test]
fn templating_forbidden_syntax_deliberately_exits_2_at_run() {
    check("05-templating-forbidden-syntax", true);
}

// §14.3 `when` matrix.

#[test]
fn when_matrix_gates_jobs() {
    check("06-when-matrix", false);
}

#[test]
fn when_eval_error_deliberately_fails_only_that_job() {
    check("07-when-eval-errors", true);
}

// §14.4 runner.

#[test]
fn runner_failure_deliberately_continues_independent_jobs_and_blocks_dependants() {
    check("08-runner-failure", true);
}

#[test]
fn runner_skip_job_when_false_blocked_and_cleanup() {
    check("09-runner-skips", false);
}

#[test]
fn runner_flow_job_with_deps_deliberately_reads_the_store() {
    check("10-runner-flow-job-deps", true);
}

#[test]
fn runner_resume_deliberately_restores_outputs() {
    check("11-runner-resume", true);
}

// §14.5 locks.

#[test]
fn locks_contention_release_and_inner_result() {
    check("12-locks-one-run", false);
}

#[test]
fn locks_ttl_expiry_after_a_crash() {
    check("13-locks-ttl-after-crash", false);
}
