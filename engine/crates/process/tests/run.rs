//! Runs real processes (sh, echo, printf, seq, sleep) through `external.process`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aetherflow_process::{
    run, EventLevel, ProcessContext, ProcessError, ProcessEvent, ProcessOutcome, ProcessStatus,
};
use serde_json::{json, Value};

struct Fixture {
    _dir: tempfile::TempDir,
    ctx: ProcessContext,
}

impl Fixture {
    fn new() -> Fixture {
        Self::with_env(BTreeMap::new())
    }

    fn with_env(env: BTreeMap<String, String>) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonicalize");
        let artifacts = root.join("artifacts").join("job1");
        std::fs::create_dir_all(&artifacts).expect("mkdir artifacts");
        let ctx = ProcessContext {
            flow_id: "flow1".into(),
            run_id: "run1".into(),
            job_id: "job1".into(),
            step_id: "step1".into(),
            step_type: "external.process".into(),
            env,
            artifacts_dir: artifacts,
            workspace_root: Some(root),
            cancel: Arc::new(AtomicBool::new(false)),
        };
        Fixture { _dir: dir, ctx }
    }

    fn art(&self) -> &Path {
        &self.ctx.artifacts_dir
    }

    fn root(&self) -> PathBuf {
        self.ctx.workspace_root.clone().expect("root")
    }

    fn run(&self, inputs: Value) -> (Result<ProcessOutcome, ProcessError>, Vec<ProcessEvent>) {
        let mut events = Vec::new();
        let r = run(&inputs, &self.ctx, &mut |e| events.push(e));
        (r, events)
    }
}

fn names(events: &[ProcessEvent]) -> Vec<&'static str> {
    events
        .iter()
        .filter(|e| !matches!(e, ProcessEvent::Stdout { .. } | ProcessEvent::Stderr { .. }))
        .map(|e| e.name())
        .collect()
}

fn is_dead(pid: i32) -> bool {
    // Gone, or a zombie waiting for init: either way it is no longer running.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

fn wait_dead(pid: i32) -> bool {
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        if is_dead(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

// ----- log modes ---------------------------------------------------------------------------

#[test]
fn inherit_mode_default_outputs() {
    let f = Fixture::new();
    let (r, ev) = f.run(json!({"command": ["true"], "outputs": {"k": [1, "two"]}}));
    let out = r.expect("success");
    assert_eq!(out.status, ProcessStatus::Success);
    assert_eq!(out.reason, None);
    assert_eq!(
        Value::Object(out.outputs),
        json!({"exit_code": 0, "attempts": 1, "k": [1, "two"]})
    );
    assert_eq!(
        names(&ev),
        vec!["external_process_start", "external_process_success"]
    );
}

#[test]
fn capture_mode_stdout_and_stderr_with_line_events() {
    let f = Fixture::new();
    let (r, ev) = f.run(json!({
        "command": ["sh", "-c", "printf 'a\\n\\nb\\n'; printf 'oops\\n' >&2"],
        "log": {"stdout": "CAPTURE", "stderr": "capture"}
    }));
    let out = r.expect("success").outputs;
    assert_eq!(out["stdout"], json!("a\n\nb\n"));
    assert_eq!(out["stderr"], json!("oops\n"));
    let mut stdout_msgs = Vec::new();
    for e in &ev {
        match e {
            ProcessEvent::Stdout { message, .. } => {
                assert_eq!(e.level(), EventLevel::Info);
                stdout_msgs.push(message.clone());
            }
            ProcessEvent::Stderr { message, .. } => {
                assert_eq!(e.level(), EventLevel::Warning);
                assert_eq!(message, "oops");
            }
            _ => {}
        }
    }
    assert_eq!(stdout_msgs, vec!["a", "b"]); // empty line skipped
}

#[test]
fn file_mode_appends_and_reports_log_file() {
    let f = Fixture::new();
    std::fs::create_dir_all(f.art().join("logs")).expect("mkdir");
    std::fs::write(f.art().join("logs/p.log"), "old\n").expect("write");
    let (r, ev) = f.run(json!({
        "command": ["sh", "-c", "echo out; echo err >&2"],
        "log": {"stdout": "file", "stderr": "File", "file_path": "logs/p.log"}
    }));
    let out = r.expect("success").outputs;
    let log = f.art().join("logs/p.log");
    assert_eq!(out["log_file"], json!(log.to_string_lossy()));
    assert!(!out.contains_key("stdout"));
    let text = std::fs::read_to_string(&log).expect("read log");
    assert_eq!(text, "old\nout\nerr\n");
    assert!(!ev.iter().any(|e| matches!(e, ProcessEvent::Stdout { .. })));
}

#[test]
fn file_mode_creates_parent_dirs_and_every_retry_appends() {
    let f = Fixture::new();
    let (r, ev) = f.run(json!({
        "command": ["sh", "-c", "echo attempt; exit 3"],
        "log": {"stdout": "file", "file_path": "deep/dir/run.log"},
        "retry": {"max_attempts": 3, "retry_on_exit_codes": [3]}
    }));
    let err = r.expect_err("fails");
    assert!(matches!(err, ProcessError::Failed { exit_code: 3, .. }));
    let text = std::fs::read_to_string(f.art().join("deep/dir/run.log")).expect("read log");
    assert_eq!(text, "attempt\nattempt\nattempt\n");
    assert_eq!(
        names(&ev),
        vec![
            "external_process_start",
            "external_process_exit",
            "external_process_start",
            "external_process_exit",
            "external_process_start",
            "external_process_exit"
        ]
    );
}

#[test]
fn discard_mode() {
    let f = Fixture::new();
    let (r, ev) = f.run(json!({
        "command": ["sh", "-c", "echo gone; echo gone2 >&2"],
        "log": {"stdout": "discard", "stderr": "discard"}
    }));
    let out = r.expect("success").outputs;
    assert_eq!(Value::Object(out), json!({"exit_code": 0, "attempts": 1}));
    assert_eq!(ev.len(), 2);
}

#[test]
fn unsupported_log_mode_at_run() {
    let f = Fixture::new();
    let (r, ev) = f.run(json!({"command": ["true"], "log": {"stderr": "Bogus"}}));
    assert_eq!(
        r.expect_err("bad mode").to_string(),
        "Unsupported log mode: bogus"
    );
    assert!(ev.is_empty());
    let (r, _) = f.run(json!({"command": ["true"], "log": {"stdout": "file"}}));
    assert_eq!(
        r.expect_err("no path").to_string(),
        "log.file_path is required when stdout/stderr mode is 'file'"
    );
}

#[test]
fn capture_is_complete_for_large_output() {
    let f = Fixture::new();
    let (r, ev) = f.run(json!({
        "command": ["seq", "1", "200000"],
        "log": {"stdout": "capture", "max_capture_kb": 4096}
    }));
    let out = r.expect("success").outputs;
    let text = out["stdout"].as_str().expect("stdout str");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 200_000);
    assert_eq!(lines[0], "1");
    assert_eq!(lines[199_999], "200000");
    let n_events = ev
        .iter()
        .filter(|e| matches!(e, ProcessEvent::Stdout { .. }))
        .count();
    assert_eq!(n_events, 200_000);
}

#[test]
fn max_capture_kb_truncates_but_events_continue() {
    let f = Fixture::new();
    let (r, ev) = f.run(json!({
        "command": ["sh", "-c", "i=0; while [ $i -lt 100 ]; do echo 0123456789012345678901234567890123456789; i=$((i+1)); done"],
        "log": {"stdout": "capture", "max_capture_kb": 1}
    }));
    let out = r.expect("success").outputs;
    assert_eq!(out["stdout"].as_str().map(str::len), Some(1024));
    let n_events = ev
        .iter()
        .filter(|e| matches!(e, ProcessEvent::Stdout { .. }))
        .count();
    assert_eq!(n_events, 100);
}

// ----- timeout, kill, cancel ---------------------------------------------------------------

#[test]
fn timeout_kills_the_whole_process_group() {
    let f = Fixture::new();
    let start = Instant::now();
    let (r, ev) = f.run(json!({
        "command": ["sh", "-c", "sleep 100 & echo $! > grandchild.pid; sleep 100"],
        "cwd": ".",
        "timeout_seconds": 0.5,
        "kill_grace_seconds": 5
    }));
    let err = r.expect_err("times out");
    assert_eq!(err.to_string(), "external.process timed out after 0.5s");
    assert!(start.elapsed() < Duration::from_secs(4), "SIGTERM suffices");
    assert_eq!(
        names(&ev),
        vec!["external_process_start", "external_process_timeout"]
    );
    let pid: i32 = std::fs::read_to_string(f.art().join("grandchild.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(wait_dead(pid), "grandchild {pid} still running");
}

#[test]
fn timeout_message_uses_python_float_format() {
    let f = Fixture::new();
    let (r, _) =
        f.run(json!({"command": ["sleep", "5"], "timeout_seconds": 1, "kill_grace_seconds": 1}));
    assert_eq!(
        r.expect_err("timeout").to_string(),
        "external.process timed out after 1.0s"
    );
}

#[test]
fn kill_grace_is_honoured_for_a_child_that_traps_term() {
    let f = Fixture::new();
    let start = Instant::now();
    let (r, _) = f.run(json!({
        "command": ["sh", "-c", "trap 'echo term >> trapped.txt' TERM; echo ready > ready.txt; while true; do sleep 0.05; done"],
        "cwd": ".",
        "timeout_seconds": 0.5,
        "kill_grace_seconds": 2,
        "log": {"stderr": "discard"}
    }));
    let elapsed = start.elapsed();
    assert!(matches!(r, Err(ProcessError::Timeout { .. })));
    assert!(
        elapsed >= Duration::from_millis(2400),
        "grace not honoured: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(8),
        "took too long: {elapsed:?}"
    );
    let trapped = std::fs::read_to_string(f.art().join("trapped.txt")).expect("trap ran");
    assert!(trapped.contains("term"));
}

#[test]
fn retry_on_timeout() {
    let f = Fixture::new();
    let (r, ev) = f.run(json!({
        "command": ["sh", "-c", "if [ -f first ]; then echo second; else touch first; sleep 30; fi"],
        "cwd": ".",
        "timeout_seconds": 0.5,
        "kill_grace_seconds": 1,
        "log": {"stdout": "capture"},
        "retry": {"max_attempts": 2, "retry_on_timeout": true}
    }));
    let out = r.expect("second attempt succeeds").outputs;
    assert_eq!(out["attempts"], json!(2));
    assert_eq!(out["stdout"], json!("second\n"));
    assert_eq!(
        names(&ev),
        vec![
            "external_process_start",
            "external_process_timeout",
            "external_process_start",
            "external_process_success"
        ]
    );
}

#[test]
fn timeout_without_retry_on_timeout_is_not_retried() {
    let f = Fixture::new();
    let (r, ev) = f.run(json!({
        "command": ["sleep", "30"],
        "timeout_seconds": 0.2,
        "kill_grace_seconds": 1,
        "retry": {"max_attempts": 3}
    }));
    assert!(matches!(r, Err(ProcessError::Timeout { .. })));
    assert_eq!(names(&ev).len(), 2);
}

#[test]
fn cancellation_stops_a_running_child() {
    let f = Fixture::new();
    let flag = f.ctx.cancel.clone();
    let setter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        flag.store(true, Ordering::SeqCst);
    });
    let start = Instant::now();
    let (r, _) = f.run(json!({
        "command": ["sh", "-c", "sleep 100 & echo $! > bg.pid; sleep 100"],
        "cwd": ".",
        "kill_grace_seconds": 1
    }));
    let _ = setter.join();
    assert!(matches!(r, Err(ProcessError::Cancelled)));
    assert!(start.elapsed() < Duration::from_secs(5));
    let pid: i32 = std::fs::read_to_string(f.art().join("bg.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(wait_dead(pid));
}

#[test]
fn cancellation_before_start_and_during_backoff() {
    let f = Fixture::new();
    f.ctx.cancel.store(true, Ordering::SeqCst);
    let (r, ev) = f.run(json!({"command": ["true"]}));
    assert!(matches!(r, Err(ProcessError::Cancelled)));
    assert!(ev.is_empty());

    let f = Fixture::new();
    let flag = f.ctx.cancel.clone();
    let setter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        flag.store(true, Ordering::SeqCst);
    });
    let start = Instant::now();
    let (r, _) = f.run(json!({
        "command": ["false"],
        "retry": {"max_attempts": 2, "retry_on_exit_codes": [1], "backoff_seconds": 30}
    }));
    let _ = setter.join();
    assert!(matches!(r, Err(ProcessError::Cancelled)));
    assert!(start.elapsed() < Duration::from_secs(5));
}

// ----- exit codes and retry ----------------------------------------------------------------

#[test]
fn failure_message_with_captured_stderr() {
    let f = Fixture::new();
    let (r, ev) = f.run(json!({
        "command": ["sh", "-c"],
        "args": ["echo oops >&2; exit 5"],
        "log": {"stderr": "capture"},
        "retry": {"max_attempts": 3, "retry_on_exit_codes": [4]}
    }));
    let err = r.expect_err("fails");
    assert_eq!(
        err.to_string(),
        "external.process failed with exit code 5\n['sh', '-c', 'echo oops >&2; exit 5'] - ['sh', '-c', 'echo oops >&2; exit 5']\noops\n"
    );
    let exit = ev
        .iter()
        .find(|e| e.name() == "external_process_exit")
        .expect("exit event");
    assert_eq!(exit.level(), EventLevel::Error);
    assert_eq!(
        Value::Object(exit.fields()),
        json!({"attempt": 1, "exit_code": 5, "job_id": "job1", "step_id": "step1", "step_type": "external.process"})
    );
    assert_eq!(names(&ev).len(), 2, "rc 5 is not retried");
}

#[test]
fn success_exit_codes_and_signal_return_code() {
    let f = Fixture::new();
    let (r, _) =
        f.run(json!({"command": ["sh", "-c", "exit 2"], "success": {"exit_codes": [0, "2"]}}));
    assert_eq!(r.expect("2 allowed").outputs["exit_code"], json!(2));
    let (r, _) = f.run(json!({"command": ["sh", "-c", "kill -9 $$"]}));
    assert!(matches!(r, Err(ProcessError::Failed { exit_code: -9, .. })));
}

#[test]
fn retry_on_exit_codes_with_backoff() {
    let f = Fixture::new();
    let start = Instant::now();
    let (r, ev) = f.run(json!({
        "command": ["sh", "-c", "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -ge 3 ] || exit 7"],
        "cwd": ".",
        "retry": {"max_attempts": 4, "retry_on_exit_codes": [7], "backoff_seconds": 0.2, "backoff_multiplier": 2}
    }));
    let out = r.expect("third attempt succeeds").outputs;
    assert_eq!(out["attempts"], json!(3));
    assert_eq!(out["exit_code"], json!(0));
    // backoff 0.2 before attempt 2, 0.4 before attempt 3
    assert!(start.elapsed() >= Duration::from_millis(600));
    let starts: Vec<u32> = ev
        .iter()
        .filter_map(|e| match e {
            ProcessEvent::Start { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(starts, vec![1, 2, 3]);
}

#[test]
fn max_backoff_caps_the_sleep() {
    let f = Fixture::new();
    let start = Instant::now();
    let (r, _) = f.run(json!({
        "command": ["sh", "-c", "exit 9"],
        "retry": {"max_attempts": 3, "retry_on_exit_codes": [9], "backoff_seconds": 60, "max_backoff_seconds": 0.1}
    }));
    assert!(matches!(r, Err(ProcessError::Failed { exit_code: 9, .. })));
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn zero_attempts() {
    let f = Fixture::new();
    let (r, ev) = f.run(json!({"command": ["true"], "retry": {"max_attempts": 0}}));
    assert_eq!(
        r.expect_err("no attempts").to_string(),
        "external_process_failed"
    );
    assert!(ev.is_empty());
}

// ----- success checks and idempotency ------------------------------------------------------

#[test]
fn success_checks() {
    let f = Fixture::new();
    let (r, ev) = f.run(json!({
        "command": ["sh", "-c", "touch a.txt"],
        "cwd": ".",
        "success": {"require_files": "missing.txt"},
        "retry": {"max_attempts": 3, "retry_on_exit_codes": [0]}
    }));
    assert_eq!(
        r.expect_err("missing").to_string(),
        "external.process outputs invalid: missing_required_file:missing.txt"
    );
    assert_eq!(names(&ev), vec!["external_process_start"], "not retried");

    let (r, _) = f.run(json!({
        "command": ["true"],
        "success": {"require_files": ["a.txt"], "require_glob": ["out/*.csv"]}
    }));
    assert_eq!(
        r.expect_err("glob").to_string(),
        "external.process outputs invalid: missing_required_glob:out/*.csv"
    );

    let (r, _) = f.run(json!({
        "command": ["sh", "-c", "mkdir -p out && touch out/x.csv"],
        "cwd": ".",
        "success": {"require_files": ["a.txt"], "require_glob": "out/*.csv", "forbid_files": ["a.txt"]}
    }));
    assert_eq!(
        r.expect_err("forbidden").to_string(),
        "external.process outputs invalid: forbidden_file_present:a.txt"
    );

    let (r, _) = f.run(json!({"command": ["true"], "success": {"marker_file": "done.marker"}}));
    assert_eq!(
        r.expect_err("marker").to_string(),
        "external.process outputs invalid: missing_required_file:done.marker"
    );

    let (r, _) = f.run(json!({
        "command": ["sh", "-c", "touch done.marker"],
        "cwd": ".",
        "success": {"require_glob": "out/x.*", "marker_file": "done.marker"}
    }));
    r.expect("all checks pass");
}

#[test]
fn marker_strategy_skips_when_marker_present() {
    let f = Fixture::new();
    std::fs::write(f.art().join("done.marker"), "").expect("write");
    let (r, ev) = f.run(json!({
        "command": ["false"],
        "idempotency": {"strategy": "Marker"},
        "success": {"marker_file": "done.marker"}
    }));
    let out = r.expect("skipped");
    assert_eq!(out.status, ProcessStatus::Skipped);
    assert_eq!(out.reason.as_deref(), Some("marker_present"));
    assert_eq!(
        Value::Object(out.outputs),
        json!({"skipped": true, "marker": f.art().join("done.marker").to_string_lossy()})
    );
    assert!(ev.is_empty(), "process not run");

    // marker present but another success check fails -> the process runs
    let (r, ev) = f.run(json!({
        "command": ["true"],
        "idempotency": {"strategy": "marker", "marker_path": "done.marker"},
        "success": {"require_files": ["other.txt"]}
    }));
    assert!(matches!(r, Err(ProcessError::OutputsInvalid { .. })));
    assert_eq!(names(&ev), vec!["external_process_start"]);

    // marker absent -> runs
    let (r, _) = f.run(json!({
        "command": ["true"],
        "idempotency": {"strategy": "marker", "marker_path": "nope.marker"}
    }));
    assert_eq!(r.expect("ran").status, ProcessStatus::Success);
}

#[test]
fn atomic_dir_rename_and_output_dir_env() {
    let f = Fixture::new();
    let final_dir = f.art().join("final");
    std::fs::create_dir_all(&final_dir).expect("mkdir");
    std::fs::write(final_dir.join("stale.txt"), "old").expect("write");
    let tmp = f.art().join("tmp_out");
    std::fs::create_dir_all(&tmp).expect("mkdir");
    std::fs::write(tmp.join("leftover.txt"), "x").expect("write");
    let (r, _) = f.run(json!({
        "command": ["sh", "-c", "echo data > \"$AETHERFLOW_OUTPUT_DIR/out.txt\"; echo $AETHERFLOW_OUTPUT_DIR"],
        "log": {"stdout": "capture"},
        "idempotency": {"strategy": "atomic_dir", "temp_output_dir": "tmp_out", "final_output_dir": "final"},
        "success": {"require_files": ["final/out.txt"]}
    }));
    let out = r.expect("success").outputs;
    assert_eq!(out["stdout"], json!(format!("{}\n", tmp.display())));
    assert!(!tmp.exists());
    assert_eq!(
        std::fs::read_to_string(final_dir.join("out.txt")).expect("read"),
        "data\n"
    );
    assert!(!final_dir.join("stale.txt").exists(), "final replaced");
    assert!(!final_dir.join("leftover.txt").exists(), "tmp wiped first");
}

#[test]
fn atomic_dir_merge_without_rename_and_user_env_override() {
    let f = Fixture::new();
    let final_dir = f.art().join("final");
    std::fs::create_dir_all(&final_dir).expect("mkdir");
    std::fs::write(final_dir.join("keep.txt"), "keep").expect("write");
    let custom = f.art().join("custom");
    std::fs::create_dir_all(&custom).expect("mkdir");
    let (r, _) = f.run(json!({
        "command": ["sh", "-c", "echo new > \"$AETHERFLOW_OUTPUT_DIR/new.txt\""],
        "env": {"AETHERFLOW_OUTPUT_DIR": custom.to_string_lossy()},
        "idempotency": {"strategy": "atomic_dir", "temp_output_dir": "t", "final_output_dir": "final", "atomic_rename": false}
    }));
    r.expect("success");
    // the user env wins, so the file landed in `custom`, and tmp (empty) was merged
    assert!(custom.join("new.txt").exists());
    assert!(final_dir.join("keep.txt").exists());
    assert!(!f.art().join("t").exists());

    let (r, _) = f.run(json!({
        "command": ["sh", "-c", "echo new > \"$AETHERFLOW_OUTPUT_DIR/new.txt\""],
        "idempotency": {"strategy": "atomic_dir", "temp_output_dir": "t", "final_output_dir": "final", "atomic_rename": false}
    }));
    r.expect("success");
    assert!(final_dir.join("keep.txt").exists());
    assert!(final_dir.join("new.txt").exists());
}

#[test]
fn atomic_dir_requires_both_dirs_at_run() {
    let f = Fixture::new();
    let (r, ev) = f.run(json!({"command": ["true"], "idempotency": {"strategy": "atomic_dir", "temp_output_dir": "t"}}));
    assert_eq!(
        r.expect_err("invalid").to_string(),
        "atomic_dir requires temp_output_dir and final_output_dir"
    );
    assert!(ev.is_empty());
}

// ----- shell, env, cwd, command forms ------------------------------------------------------

#[test]
fn shell_string_runs_a_real_command_line() {
    let f = Fixture::new();
    let (r, ev) =
        f.run(json!({"command": "echo hi | wc -c", "shell": true, "log": {"stdout": "capture"}}));
    let out = r.expect("success").outputs;
    assert_eq!(out["stdout"].as_str().map(str::trim), Some("3"));
    match &ev[0] {
        ProcessEvent::Start {
            command, attempt, ..
        } => {
            assert_eq!(*attempt, 1);
            assert_eq!(command, &vec!["echo hi | wc -c".to_string()]);
        }
        other => panic!("unexpected first event {other:?}"),
    }
}

#[test]
fn shell_string_with_args_and_shell_list_are_quoted() {
    let f = Fixture::new();
    let (r, _) = f.run(json!({"command": "printf '%s|' ", "args": ["a b", "$HOME"], "shell": true, "log": {"stdout": "capture"}}));
    assert_eq!(r.expect("ok").outputs["stdout"], json!("a b|$HOME|"));
    let (r, _) = f.run(json!({"command": ["echo", "x y", "|", "cat"], "shell": true, "log": {"stdout": "capture"}}));
    assert_eq!(r.expect("ok").outputs["stdout"], json!("x y | cat\n"));
    let (r, _) = f.run(json!({"command": ["sh", "-c", "exit 4"], "shell": true}));
    let err = r.expect_err("fails");
    assert_eq!(
        err.to_string(),
        "external.process failed with exit code 4\n['sh', '-c', 'exit 4'] - sh -c 'exit 4'\n"
    );
}

#[test]
fn string_command_without_shell_is_one_argv_element() {
    let f = Fixture::new();
    let (r, _) = f.run(json!({"command": "echo hi"}));
    assert!(matches!(r, Err(ProcessError::Spawn { .. })));
    let (r, _) =
        f.run(json!({"command": "echo", "args": ["hi", 5, null], "log": {"stdout": "capture"}}));
    assert_eq!(r.expect("ok").outputs["stdout"], json!("hi 5 None\n"));
}

#[test]
fn bad_command_and_args_types() {
    let f = Fixture::new();
    let (r, _) = f.run(json!({"command": 3}));
    assert_eq!(
        r.expect_err("type").to_string(),
        "external.process inputs.command must be a string or list"
    );
    let (r, _) = f.run(json!({"command": ["true"], "args": "x"}));
    assert_eq!(
        r.expect_err("args").to_string(),
        "external.process inputs.args must be a list"
    );
    let (r, _) = f.run(json!({"args": []}));
    assert_eq!(
        r.expect_err("missing").to_string(),
        "Step step1 missing inputs: ['command']"
    );
}

fn env_lines(out: &ProcessOutcome) -> BTreeMap<String, String> {
    out.outputs["stdout"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn inherit_env_false_gives_only_aetherflow_vars() {
    let mut base = BTreeMap::new();
    base.insert("FOO".to_string(), "bar".to_string());
    base.insert("PATH".to_string(), "/usr/bin:/bin".to_string());
    let f = Fixture::with_env(base);
    let (r, _) = f.run(
        json!({"command": ["/usr/bin/env"], "inherit_env": false, "log": {"stdout": "capture"}}),
    );
    let env = env_lines(&r.expect("ok"));
    let expected: BTreeMap<String, String> = [
        ("AETHERFLOW_FLOW_ID".to_string(), "flow1".to_string()),
        ("AETHERFLOW_RUN_ID".to_string(), "run1".to_string()),
    ]
    .into_iter()
    .collect();
    assert_eq!(env, expected);
}

#[test]
fn inherit_env_uses_the_snapshot_and_user_env_overrides() {
    let mut base = BTreeMap::new();
    base.insert("FOO".to_string(), "bar".to_string());
    base.insert("AETHERFLOW_RUN_ID".to_string(), "from-snapshot".to_string());
    let f = Fixture::with_env(base);
    let (r, _) = f.run(json!({
        "command": ["/usr/bin/env"],
        "env": {"EMPTY": null, "NUM": 3, "AETHERFLOW_FLOW_ID": "mine"},
        "log": {"stdout": "capture"}
    }));
    let env = env_lines(&r.expect("ok"));
    assert_eq!(env.get("FOO").map(String::as_str), Some("bar"));
    assert_eq!(
        env.get("AETHERFLOW_RUN_ID").map(String::as_str),
        Some("from-snapshot")
    );
    assert_eq!(
        env.get("AETHERFLOW_FLOW_ID").map(String::as_str),
        Some("mine")
    );
    assert_eq!(env.get("EMPTY").map(String::as_str), Some(""));
    assert_eq!(env.get("NUM").map(String::as_str), Some("3"));
    assert!(!env.contains_key("HOME"), "std::env is never read");
}

#[test]
fn cwd_is_resolved_relative_to_artifacts() {
    let f = Fixture::new();
    std::fs::create_dir_all(f.art().join("sub")).expect("mkdir");
    let (r, _) = f.run(json!({"command": ["pwd"], "cwd": "sub", "log": {"stdout": "capture"}}));
    assert_eq!(
        r.expect("ok").outputs["stdout"],
        json!(format!("{}\n", f.art().join("sub").display()))
    );
    // `..` is fine while it stays within the workspace root
    let (r, _) = f.run(json!({"command": ["pwd"], "cwd": "../..", "log": {"stdout": "capture"}}));
    assert_eq!(
        r.expect("ok").outputs["stdout"],
        json!(format!("{}\n", f.root().display()))
    );
}

#[test]
fn cwd_outside_allowed_roots_is_refused() {
    let f = Fixture::new();
    let (r, ev) = f.run(json!({"command": ["pwd"], "cwd": "/"}));
    let err = r.expect_err("refused");
    assert!(matches!(err, ProcessError::PathNotAllowed(_)));
    assert_eq!(
        err.to_string(),
        format!(
            "Path not under allowed roots: /. Allowed roots: ['{}', '{}']",
            f.root().display(),
            f.art().display()
        )
    );
    assert!(ev.is_empty());
    let (r, _) = f.run(json!({"command": ["pwd"], "cwd": "../../../.."}));
    assert!(matches!(r, Err(ProcessError::PathNotAllowed(_))));
}

#[test]
fn cwd_sandbox_modes_from_env_snapshot() {
    let mut env = BTreeMap::new();
    env.insert("AETHERFLOW_MODE_ENTERPRISE".to_string(), "Yes".to_string());
    let f = Fixture::with_env(env);
    let (r, _) = f.run(json!({"command": ["pwd"], "cwd": ".."}));
    assert_eq!(
        r.expect_err("enterprise").to_string(),
        "Path escapes job artifacts dir in enterprise mode: .."
    );

    let mut env = BTreeMap::new();
    env.insert("AETHERFLOW_STRICT_SANDBOX".to_string(), "false".to_string());
    let f = Fixture::with_env(env);
    let (r, _) = f.run(json!({"command": ["pwd"], "cwd": "/", "log": {"stdout": "capture"}}));
    assert_eq!(r.expect("sandbox off").outputs["stdout"], json!("/\n"));
}

#[test]
fn log_file_path_is_sandboxed() {
    let f = Fixture::new();
    let (r, _) =
        f.run(json!({"command": ["true"], "log": {"stdout": "file", "file_path": "/etc/x.log"}}));
    assert!(matches!(r, Err(ProcessError::PathNotAllowed(_))));
}

#[test]
fn event_fields_are_in_reference_order() {
    let f = Fixture::new();
    let (r, ev) = f.run(json!({"command": ["echo", "hi"], "log": {"stdout": "capture"}}));
    r.expect("ok");
    let rendered: Vec<(String, Vec<String>)> = ev
        .iter()
        .map(|e| (e.name().to_string(), e.fields().keys().cloned().collect()))
        .collect();
    let common = ["job_id", "step_id", "step_type"];
    let with = |pre: &[&str]| -> Vec<String> {
        pre.iter()
            .chain(common.iter())
            .map(|s| s.to_string())
            .collect()
    };
    assert_eq!(
        rendered,
        vec![
            (
                "external_process_start".to_string(),
                with(&["attempt", "command"])
            ),
            ("external_process_stdout".to_string(), with(&["message"])),
            (
                "external_process_success".to_string(),
                with(&["attempt", "exit_code"])
            ),
        ]
    );
    assert_eq!(ev[0].fields()["command"], json!(["echo", "hi"]));
}

#[test]
fn no_zombies_left_behind() {
    let f = Fixture::new();
    for _ in 0..5 {
        let (r, _) = f.run(json!({"command": ["sh", "-c", "exit 1"]}));
        assert!(r.is_err());
    }
    let (r, _) =
        f.run(json!({"command": ["sleep", "10"], "timeout_seconds": 0.1, "kill_grace_seconds": 0}));
    assert!(r.is_err());
    // Other tests run concurrently in this process, so a child may be a zombie for a moment
    // before its runner reaps it; a zombie that persists for a second is a leak.
    let first = zombie_children();
    std::thread::sleep(Duration::from_secs(1));
    let second = zombie_children();
    let leaked: Vec<u32> = first.into_iter().filter(|p| second.contains(p)).collect();
    assert!(leaked.is_empty(), "unreaped children: {leaked:?}");
}

/// Pids of zombie children of this test process (from /proc).
fn zombie_children() -> Vec<u32> {
    let me = std::process::id();
    let mut zombies = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let mut it = rest.split_whitespace();
            let state = it.next().unwrap_or("");
            let ppid: u32 = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            if ppid == me && state == "Z" {
                zombies.push(pid);
            }
        }
    }
    zombies
}
