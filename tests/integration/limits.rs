//! Per-step limits (fuel, output size, log volume, component size, the timeout alias),
//! determinism, extra mounts and `grants:`, on the real binary with real guest components
//! (tests/guests). A limit hit fails that step with a precise reason, and the engine, the
//! state store and later jobs carry on.

use aetherflow_test_fixtures as fx;
use serde_json::Value;

use crate::harness::{header, job_status, Outcome, Test};

fn plugins() -> String {
    [
        fx::SPIN,
        fx::LIMITS,
        fx::ENTROPY,
        fx::MOUNT,
        fx::GREEDY_SQL,
        fx::SQL_EXEC,
    ]
    .join(",")
}

fn test(flow: &str) -> Test {
    Test::new()
        .flow(flow)
        .env("AETHERFLOW_PLUGIN_PATHS", plugins())
}

/// The `step_end` event of `step`.
#[track_caller]
fn step_end(out: &Outcome, step: &str) -> Value {
    out.named("step_end")
        .into_iter()
        .find(|e| e["step_id"] == step)
        .unwrap_or_else(|| panic!("no step_end for {step}\n{}", out.stderr))
}

/// The `outputs_json` text the state store holds for a step, byte for byte.
fn stored_outputs(t: &Test, run: &str, job: &str, step: &str) -> Option<String> {
    let db = rusqlite::Connection::open(t.path("state.sqlite")).unwrap();
    db.query_row(
        "SELECT outputs_json FROM step_runs WHERE run_id = ?1 AND job_id = ?2 AND step_id = ?3",
        [run, job, step],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn an_infinite_loop_runs_out_of_fuel_and_later_jobs_still_run() {
    let flow = header("fuel")
        + "jobs:\n  - id: loop\n    steps:\n      - {id: spin, type: test_spin, inputs: {}, timeout_seconds: 120, limits: {fuel: 50000000}}\n  - id: after\n    steps:\n      - {id: c, type: check_items, inputs: {items: [1]}}\n";
    let t = test(&flow);
    let started = std::time::Instant::now();
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "f1"]);
    out.status(1);
    // Fuel, not the 120 s deadline, stopped it.
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert_eq!(
        step_end(&out, "spin")["error"],
        "step spin exceeded its fuel budget of 50000000 (limits.fuel)"
    );
    let store = t.store();
    assert_eq!(job_status(&store, "fuel", "f1", "loop"), "FAILED");
    assert_eq!(job_status(&store, "fuel", "f1", "after"), "SUCCESS");
}

#[test]
fn the_default_fuel_budget_comes_from_settings() {
    let flow = header("fuel2")
        + "jobs:\n  - id: j\n    steps:\n      - {id: spin, type: test_spin, inputs: {}}\n";
    let out = test(&flow)
        .env("AETHERFLOW_STEP_FUEL", "20000000")
        .run_args(&["run", "flow.yaml"]);
    out.status(1);
    assert_eq!(
        step_end(&out, "spin")["error"],
        "step spin exceeded its fuel budget of 20000000 (AETHERFLOW_STEP_FUEL)"
    );
}

/// Fuel is deterministic: the same work costs the same fuel on every run, and a budget
/// that covers it lets the step finish.
#[test]
fn fuel_used_is_reported_and_the_same_on_every_run() {
    let flow = header("burn")
        + "jobs:\n  - id: j\n    steps:\n      - {id: b, type: test_limits, inputs: {burn: 100000}, limits: {fuel: 100000000}}\n";
    let t = test(&flow);
    let fuel = |run: &str| {
        let out = t.run_args(&["run", "flow.yaml", "--run-id", run]);
        out.status(0);
        step_end(&out, "b")["fuel_used"]
            .as_u64()
            .expect("fuel_used")
    };
    let first = fuel("b1");
    assert!(first > 100_000 && first < 100_000_000, "{first}");
    assert_eq!(fuel("b2"), first);
}

#[test]
fn outputs_over_max_output_bytes_fail_the_step() {
    let flow = header("out")
        + r#"jobs:
  - id: big
    steps:
      - {id: huge, type: test_limits, inputs: {output_bytes: 3000000}, limits: {max_output_bytes: 1 MiB}}
  - id: small
    steps:
      - {id: fits, type: test_limits, inputs: {output_bytes: 1000}, limits: {max_output_bytes: 1 MiB}}
"#;
    let t = test(&flow);
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "o1"]);
    out.status(1);
    assert_eq!(
        step_end(&out, "huge")["error"],
        "step huge outputs are 2.9 MiB, over the limit of 1 MiB (limits.max_output_bytes)"
    );
    assert_eq!(stored_outputs(&t, "o1", "big", "huge"), None);
    assert_eq!(job_status(&t.store(), "out", "o1", "small"), "SUCCESS");
    let kept = stored_outputs(&t, "o1", "small", "fits").unwrap();
    assert!(kept.len() > 1000 && kept.len() < 1200, "{}", kept.len());

    // The engine default, named as such.
    let flow = header("out2")
        + "jobs:\n  - id: j\n    steps:\n      - {id: s, type: test_limits, inputs: {output_bytes: 5000}}\n";
    let out = test(&flow)
        .env("AETHERFLOW_STEP_MAX_OUTPUT_BYTES", "4 KiB")
        .run_args(&["run", "flow.yaml"]);
    out.status(1);
    assert_eq!(
        step_end(&out, "s")["error"],
        "step s outputs are 4.9 KiB, over the limit of 4 KiB (AETHERFLOW_STEP_MAX_OUTPUT_BYTES)"
    );
}

#[test]
fn a_log_flood_is_cut_at_max_log_bytes_and_the_drop_is_counted() {
    // 5000 lines of 100 bytes (plus `{}` fields: 102 bytes each) against 10 KiB.
    let flow = header("logs")
        + "jobs:\n  - id: j\n    steps:\n      - {id: flood, type: test_limits, inputs: {log_lines: 5000, log_line_bytes: 100}, limits: {max_log_bytes: 10 KiB}}\n";
    let t = test(&flow);
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "l1"]);
    out.status(0);
    let logs = out.named("step_log");
    let kept = logs
        .iter()
        .filter(|e| e["message"].as_str().is_some_and(|m| m.starts_with("LLLL")))
        .count();
    assert_eq!(kept, 10240 / 102);
    let dropped: Vec<&Value> = logs
        .iter()
        .filter(|e| e["fields"]["dropped_lines"].is_u64())
        .collect();
    assert_eq!(dropped.len(), 1, "exactly one event reports the drop");
    let d = dropped[0];
    assert_eq!(d["level"], "WARNING");
    assert_eq!(d["step_id"], "flood");
    assert_eq!(d["fields"]["dropped_lines"], 5000 - 100);
    assert_eq!(d["fields"]["dropped_bytes"], (5000 - 100) * 102);
    assert_eq!(d["fields"]["max_log_bytes"], 10240);
    assert_eq!(
        d["message"],
        "step flood logged more than its limit of 10 KiB (limits.max_log_bytes): 4900 lines (488.1 KiB) were dropped"
    );
    // What was written stays bounded: 100 lines of log, not 5000.
    assert!(
        out.stderr.len() < 100_000,
        "{} bytes of log",
        out.stderr.len()
    );
    assert_eq!(job_status(&t.store(), "logs", "l1", "j"), "SUCCESS");
}

#[test]
fn limits_timeout_seconds_is_the_deadline_and_timeout_seconds_its_alias() {
    let flow = header("deadline")
        + "jobs:\n  - id: j\n    steps:\n      - {id: spin, type: test_spin, inputs: {}, limits: {timeout_seconds: 1}}\n";
    let out = test(&flow).run_args(&["run", "flow.yaml"]);
    out.status(1);
    assert_eq!(
        step_end(&out, "spin")["error"],
        "step spin timed out after 1s"
    );

    let both = header("deadline")
        + "jobs:\n  - id: j\n    steps:\n      - {id: spin, type: test_spin, inputs: {}, timeout_seconds: 2, limits: {timeout_seconds: 1}}\n";
    test(&both)
        .run_args(&["validate", "flow.yaml"])
        .status(2)
        .stdout_has("- jobs[0].steps[0].limits.timeout_seconds: semantic:duplicate_timeout - step `spin` sets both `timeout_seconds` and `limits.timeout_seconds`; keep one")
        .stdout_has("(at flow.yaml:12:");
}

/// Epoch interruption only stops running wasm code; a guest blocked in a clock wait is
/// woken at its deadline and fails as a timeout, not after its whole sleep.
#[test]
fn a_step_asleep_at_its_deadline_times_out_at_the_deadline() {
    let flow = header("sleepy")
        + "jobs:\n  - id: j\n    steps:\n      - {id: long, type: test_limits, inputs: {sleep_ms: 30000}, timeout_seconds: 1}\n  - id: k\n    steps:\n      - {id: short, type: test_limits, inputs: {sleep_ms: 100}, timeout_seconds: 1}\n";
    let t = test(&flow);
    let started = std::time::Instant::now();
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "z1"]);
    out.status(1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        step_end(&out, "long")["error"],
        "step long timed out after 1s"
    );
    assert_eq!(job_status(&t.store(), "sleepy", "z1", "k"), "SUCCESS");
}

/// A connector call blocked past the step's deadline (a query still computing, a statement
/// still running, HTTP, SSH and SMTP servers that never answer) ends at the deadline as a
/// timeout, not at the connector's own timeout, and the resource still works for the next
/// step.
#[test]
fn blocked_connector_calls_end_at_the_step_deadline() {
    // A server on loopback that accepts connections (the kernel's backlog does) and never
    // answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    // About a minute of SQLite work.
    let slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
                WHERE x < 1000000000) SELECT count(*) FROM c";
    let flow = header("stuck")
        + &format!(
            "resources:\n  db: {{kind: db, driver: sqlite3, config: {{path: \"{{ROOT}}/d.sqlite\"}}}}\n  \
             api: {{kind: rest, driver: http, config: {{base_url: \"http://127.0.0.1:{port}\"}}, options: {{timeout: 120}}}}\n  \
             box: {{kind: sftp, driver: ssh, config: {{host: 127.0.0.1, port: {port}, user: u, password: p}}, options: {{timeout: 120, host_key_check: false}}}}\n  \
             mailer: {{kind: mail, driver: smtp, config: {{host: 127.0.0.1, port: {port}, from_addr: robot@aetherflow.test}}, options: {{timeout: 120}}}}\n\
             jobs:\n  \
             - id: q\n    steps:\n      - {{id: query, type: db_fetch_small, inputs: {{resource: db, sql: \"{slow}\"}}, timeout_seconds: 1}}\n  \
             - id: x\n    steps:\n      - {{id: exec, type: test_sql_exec, inputs: {{resource: db, statements: [\"CREATE TABLE t AS {slow}\"]}}, timeout_seconds: 1}}\n  \
             - id: h\n    steps:\n      - {{id: call, type: http_request, inputs: {{resource: api, path: /x}}, timeout_seconds: 1}}\n  \
             - id: f\n    steps:\n      - {{id: list, type: sftp_list_files, inputs: {{resource: box, remote_dir: .}}, timeout_seconds: 1}}\n  \
             - id: m\n    steps:\n      - {{id: mail, type: mail_send, inputs: {{resource: mailer, to: ops@example.org, subject: s, body: x}}, timeout_seconds: 1}}\n  \
             - id: after\n    steps:\n      - {{id: ok, type: test_sql_exec, inputs: {{resource: db, statements: [\"CREATE TABLE u(a)\", \"INSERT INTO u VALUES (1)\"]}}}}\n"
        );
    let t = test(&flow);
    rusqlite::Connection::open(t.path("d.sqlite"))
        .unwrap()
        .execute_batch("CREATE TABLE seed(a)")
        .unwrap();
    let started = std::time::Instant::now();
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "b1"]);
    out.status(1);
    let took = started.elapsed();
    for step in ["query", "exec", "call", "list", "mail"] {
        assert_eq!(
            step_end(&out, step)["error"],
            format!("step {step} timed out after 1s"),
            "{}",
            out.stderr
        );
    }
    assert!(took < std::time::Duration::from_secs(30), "{took:?}");
    assert_eq!(job_status(&t.store(), "stuck", "b1", "after"), "SUCCESS");
    assert_eq!(step_end(&out, "ok")["status"], "SUCCESS");
    drop(silent);
}

#[test]
fn invalid_limits_are_validate_errors() {
    let flow = header("bad")
        + "jobs:\n  - id: j\n    steps:\n      - id: s\n        type: check_items\n        inputs: {items: [1]}\n        limits: {fuel: 0, memory_mb: 9000, max_output_bytes: lots, memroy_mb: 1}\n";
    let out = test(&flow).run_args(&["validate", "flow.yaml", "--json"]);
    out.status(2);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    let codes: Vec<(String, String)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["loc"].as_str().unwrap().to_string(),
                e["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let l = |k: &str| format!("jobs[0].steps[0].limits.{k}");
    assert_eq!(
        codes,
        [
            (l("fuel"), "schema:greater_than".into()),
            (l("memory_mb"), "schema:less_than_equal".into()),
            (l("max_output_bytes"), "schema:size_parsing".into()),
            (l("memroy_mb"), "schema:extra_forbidden".into()),
        ]
    );
    // `run` refuses the same flow before doing anything.
    test(&flow).run_args(&["run", "flow.yaml"]).status(2);
}

#[test]
fn sandbox_settings_on_external_process_are_refused() {
    let flow = header("native")
        + "jobs:\n  - id: j\n    steps:\n      - {id: p, type: external.process, inputs: {command: [\"true\"]}, limits: {fuel: 10, max_output_bytes: 1000}, determinism: strict, grants: [db]}\nresources:\n  db: {kind: db, driver: sqlite3, config: {path: x.db}}\n";
    let out = test(&flow).run_args(&["validate", "flow.yaml"]);
    out.status(2)
        .stdout_has("- jobs[0].steps[0].grants: semantic:not_sandboxed - `grants` has no effect on step `p`: `external.process` runs natively, outside the sandbox (remove it)")
        .stdout_has("- jobs[0].steps[0].limits.fuel: semantic:not_sandboxed")
        .stdout_has("- jobs[0].steps[0].determinism: semantic:not_sandboxed");
    // max_output_bytes applies to every step, native ones included.
    assert!(!out.stdout.contains("max_output_bytes"), "{}", out.stdout);
}

#[test]
fn a_plugin_over_max_component_bytes_is_refused_at_load() {
    let size = std::fs::metadata(fx::LIMITS).unwrap().len();
    let t = Test::new()
        .flow(&(header("p") + "jobs: []\n"))
        .env("AETHERFLOW_PLUGIN_PATHS", fx::LIMITS)
        .env("AETHERFLOW_MAX_COMPONENT_BYTES", "1000");
    let out = t.run_args(&["validate", "flow.yaml"]);
    out.status(2).stderr_has(&format!(
        "Failed loading plugin file: {}: the component is {}, over the limit of 1000 bytes (AETHERFLOW_MAX_COMPONENT_BYTES); raise the limit if you trust this component",
        fx::LIMITS,
        fmt_kib(size)
    ));
    // Non-strict mode skips it with the same reason, and the rest works.
    let lax = Test::new()
        .flow(&(header("p") + "jobs:\n  - id: j\n    steps:\n      - {id: c, type: check_items, inputs: {items: [1]}}\n"))
        .env("AETHERFLOW_PLUGIN_PATHS", fx::LIMITS)
        .env("AETHERFLOW_MAX_COMPONENT_BYTES", "1000")
        .env("AETHERFLOW_PLUGIN_STRICT", "false");
    lax.run_args(&["run", "flow.yaml"])
        .status(0)
        .stderr_has("over the limit of 1000 bytes (AETHERFLOW_MAX_COMPONENT_BYTES)");
    // Under the limit it loads.
    Test::new()
        .flow(&(header("p") + "jobs: []\n"))
        .env("AETHERFLOW_PLUGIN_PATHS", fx::LIMITS)
        .env("AETHERFLOW_MAX_COMPONENT_BYTES", (size + 1).to_string())
        .run_args(&["validate", "flow.yaml"])
        .status(0);
}

/// `12.3 KiB` as the engine prints it (the test guests are tens of KiB).
fn fmt_kib(n: u64) -> String {
    let tenths = (n * 10 + 512) / 1024;
    match tenths % 10 {
        0 => format!("{} KiB", tenths / 10),
        t => format!("{}.{t} KiB", tenths / 10),
    }
}

#[test]
fn a_step_limit_on_component_size_is_checked_before_the_run() {
    let flow = header("small")
        + "jobs:\n  - id: j\n    steps:\n      - {id: c, type: check_items, inputs: {items: [1]}, limits: {max_component_bytes: 1 KiB}}\n";
    test(&flow)
        .run_args(&["validate", "flow.yaml"])
        .status(2)
        .stdout_has("- jobs[0].steps[0].limits.max_component_bytes: semantic:component_too_large - step type `check_items` is a ")
        .stdout_has("component, over step `c`'s limits.max_component_bytes of 1 KiB; raise the limit or use a smaller component (at flow.yaml:");
}

/// Entropy readings of one step, as the guest returned them.
fn readings(t: &Test, run: &str, step: &str) -> Value {
    serde_json::from_str(&stored_outputs(t, run, "j", step).expect("outputs")).unwrap()
}

#[test]
fn strict_steps_see_a_fixed_clock_and_a_resume_sees_the_same_clock_and_random() {
    // Flow-level strict; `e1` fails its first attempt and reports what it read.
    let flow = header("strict").replace("  id: strict\n", "  id: strict\n  determinism: strict\n")
        + "jobs:\n  - id: j\n    steps:\n      - {id: e1, type: test_entropy, inputs: {fail_first_attempt: true}}\n      - {id: e2, type: test_entropy, inputs: {}}\n      - {id: e3, type: test_entropy, inputs: {}, determinism: normal}\n";
    let t = test(&flow);
    let first = t.run_args(&["run", "flow.yaml", "--run-id", "s1"]);
    first.status(1);
    let err = step_end(&first, "e1")["error"]
        .as_str()
        .unwrap()
        .to_string();
    let seen_first = err
        .strip_prefix("first attempt saw ")
        .unwrap_or_else(|| panic!("{err}"))
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(20));
    t.run_args(&["run", "flow.yaml", "--run-id", "s1"])
        .status(0);
    // Byte for byte what the first attempt saw, although time has passed.
    assert_eq!(stored_outputs(&t, "s1", "j", "e1").unwrap(), seen_first);

    let e1 = readings(&t, "s1", "e1");
    let run = {
        use aetherflow_state::StateStore;
        t.store().list_runs(Some("strict"), 1).unwrap().remove(0)
    };
    let start_ns = run.started_at_ms as u64 * 1_000_000;
    assert_eq!(e1["wall_ns"], serde_json::json!([start_ns, start_ns]));
    assert_eq!(e1["monotonic_delta_ns"], 1000);
    // Another step of the same run: the same clock, other random.
    let e2 = readings(&t, "s1", "e2");
    assert_eq!(e2["wall_ns"], e1["wall_ns"]);
    for k in ["secure", "insecure", "hash_seed"] {
        assert_ne!(e2[k], e1[k], "{k}");
    }
    assert_ne!(e1["secure"][0], e1["secure"][1], "two reads differ");
    // A step's own `determinism: normal` overrides the flow's: real clocks.
    let e3 = readings(&t, "s1", "e3");
    assert_ne!(e3["wall_ns"][0].as_u64().unwrap(), start_ns);
}

#[test]
fn randomness_is_seeded_by_the_step_ids_in_every_run() {
    let flow = header("seeded")
        + "jobs:\n  - id: j\n    steps:\n      - {id: e, type: test_entropy, inputs: {}}\n";
    // Two separate installations (fresh state), the same run id: the same random.
    let (a, b, c) = (test(&flow), test(&flow), test(&flow));
    a.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(0);
    b.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(0);
    c.run_args(&["run", "flow.yaml", "--run-id", "r2"])
        .status(0);
    let (ra, rb, rc) = (
        readings(&a, "r1", "e"),
        readings(&b, "r1", "e"),
        readings(&c, "r2", "e"),
    );
    for k in ["insecure", "hash_seed"] {
        assert_eq!(ra[k], rb[k], "{k}");
        assert_ne!(ra[k], rc[k], "{k}: another run id");
    }
    // `wasi:random/random` (keys, salts) stays the host's CSPRNG outside strict mode.
    assert_ne!(ra["secure"], rb["secure"]);
    // Without `determinism: strict` the clocks are real.
    let wall = ra["wall_ns"][0].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(now - wall < 120_000_000_000, "{wall} vs {now}");
    assert_ne!(ra["wall_ns"], rb["wall_ns"]);
}

#[test]
fn a_read_only_mount_can_be_read_but_not_written() {
    let flow = header("mounts")
        + r#"jobs:
  - id: j
    steps:
      - id: ro
        type: test_mount
        inputs: {read: /ref/data.txt, write: /ref/new.txt}
        mounts: [{source: ref, target: /ref}]
      - id: rw
        type: test_mount
        inputs: {read: /out/data.txt, write: /out/new.txt}
        mounts: [{source: "{{env.OUT_DIR}}", target: /out, mode: rw}]
      - id: none
        type: test_mount
        inputs: {read: /ref/data.txt}
      - id: escape
        type: test_mount
        inputs: {read: /ref/escape}
        mounts: [{source: ref, target: /ref}]
"#;
    let t = test(&flow)
        .file("ref/data.txt", "reference data")
        .file("out/data.txt", "scratch");
    std::os::unix::fs::symlink(t.path("secret.txt"), t.path("ref/escape")).unwrap();
    t.write("secret.txt", "host secret");
    let out_dir = t.path("out").display().to_string();
    let t = t.env("OUT_DIR", out_dir);
    t.run_args(&["run", "flow.yaml", "--run-id", "m1"])
        .status(0);
    let ro = readings(&t, "m1", "ro");
    assert_eq!(ro["read"]["ok"], "reference data");
    assert!(ro["write"]["error"].is_string(), "{ro}");
    assert!(!t.path("ref/new.txt").exists());
    let rw = readings(&t, "m1", "rw");
    assert_eq!(rw["read"]["ok"], "scratch");
    assert_eq!(rw["write"]["ok"], true, "{rw}");
    assert_eq!(
        std::fs::read_to_string(t.path("out/new.txt")).unwrap(),
        "written by the step"
    );
    // A step without the mount does not see it.
    assert!(readings(&t, "m1", "none")["read"]["error"].is_string());
    // A symlink cannot lead out of a mount.
    let escape = readings(&t, "m1", "escape");
    assert!(escape["read"]["error"].is_string(), "{escape}");
}

#[test]
fn a_step_that_moves_its_workspace_through_a_mount_does_not_misdirect_the_next_one() {
    // The engine keeps a job's workspace open between attempts. A writable mount of a host
    // directory that holds the workspace lets a step move it away and make a new one; the
    // next step must write into the new one.
    let flow = header("mv")
        + r#"jobs:
  - id: j
    steps:
      - id: before
        type: test_mount
        inputs: {write: "{{env.WORK}}/mv/j/m1/before.txt"}
      - id: mover
        type: test_mount
        inputs: {move_dir: ["/w/mv/j/m1", "/w/mv/j/m1.old"]}
        mounts: [{source: "{{env.WORK}}", target: /w, mode: rw}]
      - id: after
        type: test_mount
        inputs: {write: "{{env.WORK}}/mv/j/m1/after.txt"}
"#;
    let t = test(&flow);
    let work = t.path("work").display().to_string();
    std::fs::create_dir_all(t.path("work")).unwrap();
    let t = t.env("WORK", work);
    t.run_args(&["run", "flow.yaml", "--run-id", "m1"])
        .status(0);
    assert_eq!(readings(&t, "m1", "mover")["move_dir"]["ok"], true);
    assert_eq!(readings(&t, "m1", "after")["write"]["ok"], true);
    assert!(t.path("work/mv/j/m1.old/before.txt").exists());
    assert!(t.path("work/mv/j/m1/after.txt").exists());
    assert!(!t.path("work/mv/j/m1.old/after.txt").exists());
}

#[test]
fn mounts_that_cannot_work_are_validate_errors() {
    let flow = header("badmounts")
        + r#"jobs:
  - id: j
    steps:
      - id: s
        type: test_mount
        inputs: {}
        mounts:
          - {source: missing, target: /m}
          - {source: file.txt, target: /f}
          - {source: ref, target: ref}
          - {source: ref, target: "{ROOT}/work/badmounts/j/x"}
          - {source: ref, target: /r}
          - {source: ref, target: /r/inner}
"#;
    let t = test(&flow).file("file.txt", "x").file("ref/a", "a");
    let out = t.run_args(&["validate", "flow.yaml"]);
    out.status(2);
    let root = t.root().display().to_string();
    for needle in [
        format!("- jobs[0].steps[0].mounts[0].source: semantic:mount_source_missing - mount source `{root}/missing` of step `s` cannot be used: No such file or directory (os error 2) (a relative source is relative to the flow file's directory `{root}`); create the directory or fix `source` (at flow.yaml:"),
        format!("- jobs[0].steps[0].mounts[1].source: semantic:mount_source_not_dir - mount source `{root}/file.txt` of step `s` is not a directory"),
        "- jobs[0].steps[0].mounts[2].target: semantic:mount_target - mount target `ref` of step `s` must be an absolute directory path".to_string(),
        format!("- jobs[0].steps[0].mounts[3].target: semantic:mount_target - mount target `{root}/work/badmounts/j/x` of step `s` overlaps the job workspace `{root}/work/badmounts/j/<run_id>`"),
        "- jobs[0].steps[0].mounts[5].target: semantic:mount_target - mount target `/r/inner` of step `s` overlaps the mount at `/r`".to_string(),
    ] {
        out.stdout_has(&needle);
    }
    assert_eq!(
        out.stdout.matches("semantic:mount").count(),
        5,
        "{}",
        out.stdout
    );
}

#[test]
fn grants_allow_a_resource_the_inputs_do_not_name_and_nothing_else() {
    let flow = header("grants")
        + r#"resources:
  mine: {kind: db, driver: sqlite3, config: {path: "{ROOT}/mine.db"}}
  other: {kind: db, driver: sqlite3, config: {path: "{ROOT}/other.db"}}
  secret: {kind: db, driver: sqlite3, config: {path: "{ROOT}/secret.db"}}
jobs:
  - id: granted
    steps:
      - {id: g, type: test_greedy_sql, inputs: {resource: mine, target: other}, grants: [other]}
  - id: refused
    steps:
      - {id: r, type: test_greedy_sql, inputs: {resource: mine, target: secret}, grants: [other]}
"#;
    let t = test(&flow);
    for db in ["mine", "other", "secret"] {
        rusqlite::Connection::open(t.path(&format!("{db}.db"))).unwrap();
    }
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "g1"]);
    out.status(1);
    let store = t.store();
    assert_eq!(job_status(&store, "grants", "g1", "granted"), "SUCCESS");
    assert_eq!(job_status(&store, "grants", "g1", "refused"), "FAILED");
    assert_eq!(
        step_end(&out, "r")["error"],
        "resource `secret` is not granted to step `r`: a step may use only the resources its inputs name and those in its `grants:`"
    );
}

#[test]
fn a_grant_must_name_a_known_resource_of_a_declared_kind() {
    let flow = header("badgrants")
        + r#"resources:
  mine: {kind: db, driver: sqlite3, config: {path: x.db}}
  api: {kind: rest, driver: http, config: {base_url: "http://127.0.0.1:9"}}
jobs:
  - id: j
    steps:
      - {id: s, type: test_greedy_sql, inputs: {resource: mine, target: mine}, grants: [mnie, api]}
      - {id: c, type: check_items, inputs: {items: [1]}, grants: [mine]}
"#;
    let out = test(&flow).run_args(&["validate", "flow.yaml"]);
    out.status(2)
        .stdout_has("- jobs[0].steps[0].grants[0]: semantic:unknown_grant - step `s` grants unknown resource `mnie`: did you mean `mine`? (declare it under `resources:`, or remove it from `grants`) (at flow.yaml:")
        .stdout_has("- jobs[0].steps[0].grants[1]: semantic:grant_kind - step `s` grants resource `api` of kind `rest`, but step type `test_greedy_sql` declares only db in `describe`; a grant cannot give a step a kind of resource it does not declare (remove the grant)")
        .stdout_has("- jobs[0].steps[1].grants[0]: semantic:grant_kind - step `c` grants resource `mine` of kind `db`, but step type `check_items` declares no connector at all in `describe`");
}
