//! Misbehaving components fail their step cleanly and never take the engine down: a trap,
//! a deadline overrun, a memory bomb, a connector call that was not granted.

use aetherflow_test_fixtures as fx;

use crate::harness::{header, job_status, Test};

fn plugins() -> String {
    [fx::TRAP, fx::SPIN, fx::MEMORY_HOG, fx::GREEDY_SQL].join(",")
}

#[test]
fn a_trapping_step_fails_cleanly_and_the_next_run_works() {
    let flow = header("trap")
        + "jobs:\n  - id: bad\n    steps:\n      - {id: t, type: test_trap, inputs: {}}\n  - id: other\n    steps:\n      - {id: c, type: check_items, inputs: {items: [1]}}\n";
    let t = Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PLUGIN_PATHS", plugins());
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "t1"]);
    out.status(1);
    let end = out
        .named("step_end")
        .into_iter()
        .find(|e| e["step_id"] == "t")
        .unwrap();
    let err = end["error"].as_str().unwrap();
    assert!(
        err.starts_with("step t crashed: wasm `unreachable` instruction executed"),
        "{err}"
    );
    assert!(
        err.contains("deliberate panic from the test guest"),
        "{err}"
    );
    assert_eq!(job_status(&t.store(), "trap", "t1", "other"), "SUCCESS");
    // The engine and its state are fine: the next run of a good step succeeds.
    t.write("ok.yaml", &(header("trap") + "jobs:\n  - id: bad\n    steps:\n      - {id: t, type: test_trap, inputs: {ok: true}}\n"));
    t.run_args(&["run", "ok.yaml", "--run-id", "t2"]).status(0);
}

#[test]
fn the_host_checks_required_inputs_for_steps_in_any_language() {
    // check_items (SDK) requires `items`; test_raw_outputs (hand-written, no SDK) requires
    // `outputs`. Neither guest checks: the host does, from `describe`, before the attempt.
    let flow = header("req")
        + "jobs:\n  - id: sdk\n    steps:\n      - {id: c, type: check_items, inputs: {min_count: 1}}\n  - id: raw\n    steps:\n      - {id: r, type: test_raw_outputs, inputs: {other: 1}}\n  - id: fine\n    steps:\n      - {id: n, type: check_items, inputs: {items: null}}\n";
    let t = Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PLUGIN_PATHS", fx::RAW_OUTPUTS);
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "q1"]);
    out.status(1);
    assert_eq!(out.step_error("c"), "Step c missing inputs: ['items']");
    assert_eq!(out.step_error("r"), "Step r missing inputs: ['outputs']");
    // A null value counts as present (as in the reference); the step itself then refuses it.
    assert_eq!(
        out.step_error("n"),
        "check_items expects 'items' to be a list or a comma-separated string"
    );
}

#[test]
fn a_workspace_removed_or_moved_and_made_again_between_steps_is_the_one_the_next_step_sees() {
    // The engine opens a job's workspace once for all its attempts: an OS command that
    // removes it, or moves it away, and makes it again must not leave the next step
    // writing into the old one.
    let ws = "{ROOT}/work/rw/j/w1";
    let write = |id: &str, file: &str| {
        format!("      - {{id: {id}, type: test_hostile, inputs: {{attack: write, path: \"{ws}/{file}\"}}}}\n")
    };
    let shell = |id: &str, script: &str| {
        format!("      - {{id: {id}, type: external.process, inputs: {{command: [sh, -c, \"{script}\"]}}}}\n")
    };
    let flow = header("rw")
        + "jobs:\n  - id: j\n    steps:\n"
        + &write("a", "first.txt")
        + &shell("b", &format!("rm -rf {ws} && mkdir {ws}"))
        + &write("c", "second.txt")
        + &shell("d", &format!("mv {ws} {ws}.old && mkdir {ws}"))
        + &write("e", "third.txt");
    let t = Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PLUGIN_PATHS", fx::HOSTILE);
    t.run_args(&["run", "flow.yaml", "--run-id", "w1"])
        .status(0);
    let dir = t.root().join("work/rw/j/w1");
    let old = t.root().join("work/rw/j/w1.old");
    assert!(!dir.join("first.txt").exists());
    assert_eq!(std::fs::read(old.join("second.txt")).unwrap(), b"escaped");
    assert_eq!(std::fs::read(dir.join("third.txt")).unwrap(), b"escaped");
    assert!(!old.join("third.txt").exists());
}

#[test]
fn a_step_over_its_deadline_is_interrupted() {
    let flow = header("spin")
        + "jobs:\n  - id: j\n    steps:\n      - {id: spin, type: test_spin, inputs: {}, timeout_seconds: 1}\n  - id: after\n    steps:\n      - {id: c, type: check_items, inputs: {items: [1]}}\n";
    let t = Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PLUGIN_PATHS", plugins());
    let started = std::time::Instant::now();
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "s1"]);
    out.status(1);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let end = out
        .named("step_end")
        .into_iter()
        .find(|e| e["step_id"] == "spin")
        .unwrap();
    assert_eq!(end["error"], "step spin timed out after 1s");
    assert_eq!(job_status(&t.store(), "spin", "s1", "after"), "SUCCESS");
}

#[test]
fn the_default_deadline_comes_from_settings() {
    let flow = header("spin2")
        + "jobs:\n  - id: j\n    steps:\n      - {id: spin, type: test_spin, inputs: {}}\n";
    let t = Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PLUGIN_PATHS", plugins())
        .env("AETHERFLOW_STEP_TIMEOUT_SECONDS", "0.5");
    let out = t.run_args(&["run", "flow.yaml"]);
    out.status(1);
    assert_eq!(
        out.named("step_end")[0]["error"],
        "step spin timed out after 0.5s"
    );
}

#[test]
fn memory_over_the_cap_fails_and_under_it_succeeds() {
    let flow = header("mem")
        + "jobs:\n  - id: small\n    steps:\n      - {id: ok, type: test_memory_hog, inputs: {mb: 16}}\n  - id: big\n    steps:\n      - {id: bomb, type: test_memory_hog, inputs: {mb: 200}}\n";
    let t = Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PLUGIN_PATHS", plugins())
        .env("AETHERFLOW_STEP_MEMORY_MB", "64");
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "m1"]);
    out.status(1);
    let store = t.store();
    assert_eq!(job_status(&store, "mem", "m1", "small"), "SUCCESS");
    assert_eq!(job_status(&store, "mem", "m1", "big"), "FAILED");
    let end = out
        .named("step_end")
        .into_iter()
        .find(|e| e["step_id"] == "bomb")
        .unwrap();
    assert!(
        end["error"]
            .as_str()
            .unwrap()
            .starts_with("step bomb exceeded its memory limit of 64 MiB"),
        "{end}"
    );
}

#[test]
fn connectors_are_granted_only_to_the_resources_a_step_names() {
    let flow = header("grant")
        + r#"resources:
  mine: {kind: db, driver: sqlite3, config: {path: "{ROOT}/mine.db"}}
  secret: {kind: db, driver: sqlite3, config: {path: "{ROOT}/secret.db"}}
  api: {kind: rest, driver: http, config: {base_url: "http://127.0.0.1:9"}}
jobs:
  - id: greedy
    steps:
      - {id: g, type: test_greedy_sql, inputs: {resource: mine, target: secret}}
  - id: wrong_kind
    steps:
      - {id: w, type: db_extract, inputs: {resource: api, sql: "select 1", output: x.tsv}}
  - id: allowed
    steps:
      - {id: a, type: test_greedy_sql, inputs: {resource: mine, target: mine}}
"#;
    let t = Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PLUGIN_PATHS", plugins());
    rusqlite::Connection::open(t.path("mine.db")).unwrap();
    rusqlite::Connection::open(t.path("secret.db")).unwrap();
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "g1"]);
    out.status(1);
    let errors: std::collections::BTreeMap<String, String> = out
        .named("step_end")
        .into_iter()
        .filter(|e| e["status"] == "FAILED")
        .map(|e| {
            (
                e["step_id"].as_str().unwrap().to_string(),
                e["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        errors["g"],
        "resource `secret` is not granted to step `g`: a step may use only the resources its inputs name and those in its `grants:`"
    );
    assert_eq!(errors["w"], "Resource api is kind=rest, requested kind=db");
    assert_eq!(job_status(&t.store(), "grant", "g1", "allowed"), "SUCCESS");
}

#[test]
fn the_workspace_is_the_only_host_directory_a_step_sees() {
    let flow = header("ws")
        + "jobs:\n  - id: j\n    steps:\n      - {id: e, type: db_extract, inputs: {resource: db, sql: \"select 1\", output: /etc/aetherflow-escape.tsv}}\nresources:\n  db: {kind: db, driver: sqlite3, config: {path: \"{ROOT}/x.db\"}}\n";
    let t = Test::new().flow(&flow);
    rusqlite::Connection::open(t.path("x.db")).unwrap();
    let out = t.run_args(&["run", "flow.yaml"]);
    out.status(1);
    assert!(out.named("step_end")[0]["error"]
        .as_str()
        .unwrap()
        .starts_with("Path not under allowed roots: /etc/aetherflow-escape.tsv"));
    assert!(!std::path::Path::new("/etc/aetherflow-escape.tsv").exists());
}

#[test]
fn a_missing_plugin_path_is_an_error_in_strict_mode() {
    let t = Test::new()
        .flow(&(header("p") + "jobs: []\n"))
        .env("AETHERFLOW_PLUGIN_PATHS", "/nonexistent/plugins");
    t.run_args(&["validate", "flow.yaml"])
        .status(2)
        .stderr_has("Plugin path not found: /nonexistent/plugins");
    let lax = Test::new()
        .flow(&(header("p") + "jobs: []\n"))
        .env("AETHERFLOW_PLUGIN_PATHS", "/nonexistent/plugins")
        .env("AETHERFLOW_PLUGIN_STRICT", "false");
    lax.run_args(&["validate", "flow.yaml"]).status(0);
}

#[test]
fn a_plugin_cannot_take_a_built_in_name() {
    // name_thief's `describe` says `check_items`.
    let t = Test::new()
        .flow(&(header("p") + "jobs: []\n"))
        .env("AETHERFLOW_PLUGIN_PATHS", fx::NAME_THIEF);
    t.run_args(&["validate", "flow.yaml"])
        .status(2)
        .stderr_has(&format!(
            "plugin `{}` declares step name `check_items`, which the built-in step already uses",
            fx::NAME_THIEF
        ));
    // The same file listed twice is one component, not a clash.
    let twice = Test::new().flow(&(header("p") + "jobs: []\n")).env(
        "AETHERFLOW_PLUGIN_PATHS",
        format!("{},{}", fx::TRAP, fx::TRAP),
    );
    twice.run_args(&["validate", "flow.yaml"]).status(0);
}

#[test]
fn a_step_level_timeout_bounds_an_os_command_too() {
    let flow = header("pt") + "jobs:\n  - id: j\n    steps:\n      - {id: slow, type: external.process, inputs: {command: [sleep, \"30\"]}, timeout_seconds: 1}\n";
    let t = Test::new().flow(&flow);
    let started = std::time::Instant::now();
    let out = t.run_args(&["run", "flow.yaml"]);
    out.status(1);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(
        out.named("step_end")[0]["error"],
        "external.process timed out after 1.0s"
    );
}

#[test]
fn plugin_components_are_compiled_once_and_then_loaded_from_the_cache() {
    let flow = header("cache")
        + "jobs:\n  - id: j\n    steps:\n      - {id: g, type: greet, inputs: {names: [Ada]}}\n";
    let t = Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PLUGIN_PATHS", fx::GREET);
    let cache = t.path("cache");
    let run = |t: &Test| {
        let mut cmd = t.command(&["run", "flow.yaml"]);
        cmd.env("AETHERFLOW_CACHE_DIR", &cache);
        crate::harness::Outcome::from(cmd.output().unwrap())
    };
    run(&t).status(0);
    let entries = || -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
        let mut v = Vec::new();
        for dir in std::fs::read_dir(&cache).unwrap().flatten() {
            for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
                v.push((f.path(), f.metadata().unwrap().modified().unwrap()));
            }
        }
        v.sort();
        v
    };
    let first = entries();
    assert_eq!(
        first.len(),
        1,
        "one precompiled component (greet): {first:?}"
    );
    assert!(first[0].0.extension().is_some_and(|e| e == "cwasm"));
    run(&t).status(0);
    assert_eq!(
        entries(),
        first,
        "the second run must reuse the cached artifact untouched"
    );
    // A corrupt entry is rebuilt, not trusted.
    std::fs::write(&first[0].0, b"not a wasmtime artifact").unwrap();
    run(&t).status(0);
    assert!(std::fs::read(&first[0].0).unwrap().len() > 100);
}

/// Built-in steps are precompiled by the build for this engine: the artifact is copied into
/// the component cache once (the engine's unit tests check it is the build's copy, not a
/// compile) and mapped from there; a cache that cannot be written costs nothing but speed.
#[test]
fn builtin_steps_are_precompiled_and_mapped_from_the_cache() {
    let flow = header("pre") + "jobs:\n  - id: j\n    steps:\n      - {id: c, type: check_items, inputs: {items: [1]}}\n";
    let t = Test::new().flow(&flow);
    let run = |cache: &std::path::Path| {
        let mut cmd = t.command(&["run", "flow.yaml"]);
        cmd.env("AETHERFLOW_CACHE_DIR", cache);
        crate::harness::Outcome::from(cmd.output().unwrap()).status(0);
    };
    let cache = t.path("cache");
    run(&cache);
    let written = walk(&cache);
    assert_eq!(written.len(), 1, "one artifact (check_items): {written:?}");
    let stamp = |p: &std::path::Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let first = stamp(&written[0]);
    run(&cache);
    assert_eq!(walk(&cache), written);
    assert_eq!(
        stamp(&written[0]),
        first,
        "the second run rewrote the artifact"
    );

    // A cache path that cannot be created (a file is in the way): the run still works.
    let blocked = t.path("not-a-dir");
    std::fs::write(&blocked, "").unwrap();
    run(&blocked.join("cache"));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn sqlite_resources_accept_a_url() {
    let flow = header("url")
        + "resources:\n  db: {kind: db, driver: sqlite, config: {url: \"sqlite:///{ROOT}/u.db\"}}\njobs:\n  - id: j\n    steps:\n      - {id: e, type: db_extract, inputs: {resource: db, sql: \"select 41 + ? as answer\", params: [1], output: a.tsv}}\n";
    let t = Test::new().flow(&flow);
    rusqlite::Connection::open(t.path("u.db"))
        .unwrap()
        .execute_batch("create table t(x)")
        .unwrap();
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "u1"]);
    out.status(0);
    assert_eq!(
        std::fs::read_to_string(t.path("work/url/j/u1/artifacts/a.tsv")).unwrap(),
        "answer\n42\n"
    );
}

#[test]
fn a_query_error_shows_the_database_message_and_leaves_no_file() {
    let flow = header("qe")
        + "resources:\n  db: {kind: db, driver: sqlite3, config: {path: \"{ROOT}/q.db\"}}\njobs:\n  - id: j\n    steps:\n      - {id: e, type: db_extract, inputs: {resource: db, sql: \"select * from missing_table\", output: out/q.tsv}}\n";
    let t = Test::new().flow(&flow);
    rusqlite::Connection::open(t.path("q.db"))
        .unwrap()
        .execute_batch("create table t(x)")
        .unwrap();
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "q1"]);
    out.status(1);
    assert_eq!(
        out.named("step_end")[0]["error"],
        "no such table: missing_table"
    );
    let dir = t.path("work/qe/j/q1/artifacts/out");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A temp table lives only on the connection that created it, so the second step sees it
/// exactly when the run reused the connection (cache policy `run`, the default).
#[test]
fn connections_are_reused_within_a_run_unless_the_cache_policy_says_none() {
    let flow = |cache: &str| {
        header("pool")
            + &format!(
                "resources:\n  db: {{kind: db, driver: sqlite3, config: {{path: \"{{ROOT}}/p.db\"}}{cache}}}\njobs:\n  - id: j\n    steps:\n      - {{id: make, type: db_extract, inputs: {{resource: db, sql: \"CREATE TEMP TABLE tt AS SELECT 42 AS v\", output: a.tsv}}}}\n      - {{id: read, type: db_extract, inputs: {{resource: db, sql: \"SELECT v FROM tt\", output: b.tsv}}}}\n"
            )
    };
    // (resource options, env, whether the connection is reused)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
    let cases: [Case; 5] = [
        ("", &[], true),
        ("", &[("AETHERFLOW_CONNECTOR_CACHE_DEFAULT", "none")], false),
        (", options: {cache: none}", &[], false),
        (
            ", options: {cache: run}",
            &[("AETHERFLOW_CONNECTOR_CACHE_DEFAULT", "none")],
            true,
        ),
        (
            ", options: {cache: run}",
            &[("AETHERFLOW_CONNECTOR_CACHE_DISABLED", "true")],
            false,
        ),
    ];
    for (cache, env, reused) in cases {
        let mut t = Test::new().flow(&flow(cache));
        for (k, v) in env {
            t = t.env(k, v);
        }
        rusqlite::Connection::open(t.path("p.db"))
            .unwrap()
            .execute_batch("create table t(x)")
            .unwrap();
        let out = t.run_args(&["run", "flow.yaml", "--run-id", "p1"]);
        if reused {
            out.status(0);
            assert_eq!(
                std::fs::read_to_string(t.path("work/pool/j/p1/artifacts/b.tsv")).unwrap(),
                "v\n42\n"
            );
        } else {
            out.status(1);
            let end = out
                .named("step_end")
                .into_iter()
                .find(|e| e["step_id"] == "read")
                .unwrap();
            assert_eq!(end["error"], "no such table: tt", "{cache} {env:?}");
        }
    }
}
