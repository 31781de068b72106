//! Provenance: steps pinned to the sha256 of their component (`type: name@sha256:…` and the
//! top-level `steps:` section), components a flow loads from a file, plugins that claim
//! another step's name or import what the host does not offer, and enterprise mode.
//! See docs/provenance.md.

use aetherflow_test_fixtures as fx;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::harness::{header, Outcome, Test};

fn sha256_file(path: &str) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A flow `id` whose job `j` greets Ada with a step `hello` of type `type_`; `top` goes
/// between the header and `jobs:` (a `steps:` or `settings:` section).
fn greet_flow(id: &str, type_: &str, top: &str) -> String {
    header(id)
        + top
        + &format!(
            "jobs:\n  - id: j\n    steps:\n      - {{id: hello, type: \"{type_}\", inputs: {{names: [Ada]}}}}\n"
        )
}

fn greeting(t: &Test, flow: &str, run: &str) -> String {
    std::fs::read_to_string(t.path(&format!("work/{flow}/j/{run}/artifacts/greetings.txt")))
        .unwrap_or_else(|e| panic!("greet wrote nothing: {e}"))
}

/// `validate --json`: the (code, loc, msg) of each error.
fn validate_errors(t: &Test, flow: &str) -> Vec<(String, String, String)> {
    let out = t.run_args(&["validate", flow, "--json"]);
    out.status(2);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_string();
            (s("code"), s("loc"), s("msg"))
        })
        .collect()
}

/// A refused run: exit 2 and nothing started (no event, no state store, no workspace).
#[track_caller]
fn refused(t: &Test, flow: &str) -> Outcome {
    let out = t.run_args(&["run", flow]);
    out.status(2);
    assert!(!out.stderr.contains("run_start"), "{}", out.stderr);
    assert!(
        !t.path("state.sqlite").exists(),
        "a refused run opened the state store"
    );
    assert!(
        !t.path("work").exists(),
        "a refused run created a workspace"
    );
    out
}

#[test]
fn a_step_pinned_to_the_digest_of_its_component_runs() {
    // Upper-case hex is accepted.
    let pin = format!("greet@sha256:{}", sha256_file(fx::GREET).to_uppercase());
    let t = Test::new()
        .flow(&greet_flow("pin", &pin, ""))
        .env("AETHERFLOW_PLUGIN_PATHS", fx::GREET);
    t.run_args(&["validate", "flow.yaml"])
        .status(0)
        .stdout_has("OK: flow.yaml");
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(0);
    // The state and events name the step type without its pin.
    assert_eq!(out.named("step_start")[0]["step_type"], "greet");
    assert_eq!(greeting(&t, "pin", "r1"), "Hello, Ada!\n");
}

#[test]
fn a_pin_mismatch_refuses_to_run_naming_the_step_both_digests_the_file_and_the_fix() {
    let actual = sha256_file(fx::GREET);
    let wrong = "ab".repeat(32);
    let t = Test::new()
        .flow(&greet_flow(
            "mismatch",
            &format!("greet@sha256:{wrong}"),
            "",
        ))
        .env("AETHERFLOW_PLUGIN_PATHS", fx::GREET);
    let msg = format!(
        "step `hello`: step type `greet` is pinned to sha256 {wrong}, but `{}` has sha256 \
         {actual}; if you have reviewed this component and trust it, update the pin \
         (`aetherflow steps show greet` prints it)",
        fx::GREET
    );
    refused(&t, "flow.yaml")
        .stderr_has("error: flow.yaml is invalid:")
        .stderr_has(&format!(
            "- jobs[0].steps[0].type: semantic:step_pin_mismatch - {msg}"
        ));
    assert_eq!(
        validate_errors(&t, "flow.yaml"),
        [(
            "semantic:step_pin_mismatch".to_string(),
            "jobs[0].steps[0].type".to_string(),
            msg
        )]
    );
    // The text report points at the line.
    t.run_args(&["validate", "flow.yaml"])
        .status(2)
        .stdout_has("(at flow.yaml:12:27)");

    // A malformed pin is a schema error.
    let t = Test::new().flow(&greet_flow("bad", "greet@sha256:abc", ""));
    let errors = validate_errors(&t, "flow.yaml");
    assert_eq!(errors[0].0, "schema:step_pin");
    assert!(
        errors[0]
            .2
            .contains("`<name>@sha256:<64 hex digits>`; got `greet@sha256:abc`"),
        "{errors:?}"
    );
}

#[test]
fn the_steps_section_pins_every_use_of_a_name_including_inside_with_lock() {
    let sha = sha256_file(fx::GREET);
    let flow = |entry: &str, type_: &str| {
        header("lock")
            + &format!("steps:\n  greet: {entry}\n")
            + &format!(
                "jobs:\n  - id: j\n    steps:\n      - {{id: hello, type: \"{type_}\", inputs: {{names: [Ada]}}}}\n      - {{id: locked, type: with_lock, inputs: {{lock_key: k, step: {{type: greet, inputs: {{names: [Bob], output: bob.txt}}}}}}}}\n"
            )
    };
    let t = Test::new()
        .flow(&flow(
            &format!("{{sha256: \"{sha}\", version: \"0.1.0\"}}"),
            "greet",
        ))
        .env("AETHERFLOW_PLUGIN_PATHS", fx::GREET);
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(0);
    assert_eq!(greeting(&t, "lock", "r1"), "Hello, Ada!\n");

    // A wrong digest is reported once, at the entry, and refuses both uses.
    let wrong = "cd".repeat(32);
    let t = Test::new()
        .flow(&flow(&format!("{{sha256: \"{wrong}\"}}"), "greet"))
        .env("AETHERFLOW_PLUGIN_PATHS", fx::GREET);
    refused(&t, "flow.yaml");
    let errors = validate_errors(&t, "flow.yaml");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (errors[0].0.as_str(), errors[0].1.as_str()),
        ("semantic:step_pin_mismatch", "steps.greet.sha256")
    );
    assert!(
        errors[0].2.contains(&format!(
            "pinned to sha256 {wrong}, but `{}` has sha256 {sha}",
            fx::GREET
        )),
        "{errors:?}"
    );

    // The version `describe` returns must match too.
    let t = Test::new()
        .flow(&flow(
            &format!("{{sha256: \"{sha}\", version: \"1.2.0\"}}"),
            "greet",
        ))
        .env("AETHERFLOW_PLUGIN_PATHS", fx::GREET);
    let errors = validate_errors(&t, "flow.yaml");
    assert_eq!(
        errors,
        [(
            "semantic:step_version_mismatch".to_string(),
            "steps.greet.version".to_string(),
            format!(
                "`steps.greet.version` is `1.2.0`, but `{}` describes version `0.1.0`; update \
                 the entry after reviewing the component",
                fx::GREET
            )
        )]
    );

    // A step pinning another digest than the section is a conflict.
    let t = Test::new()
        .flow(&flow(
            &format!("{{sha256: \"{sha}\"}}"),
            &format!("greet@sha256:{wrong}"),
        ))
        .env("AETHERFLOW_PLUGIN_PATHS", fx::GREET);
    let errors = validate_errors(&t, "flow.yaml");
    assert_eq!(
        (errors[0].0.as_str(), errors[0].1.as_str()),
        ("semantic:step_pin_conflict", "jobs[0].steps[0].type")
    );
    assert!(
        errors[0].2.contains(&format!(
            "pinned to sha256 {wrong} by `type:` but to {sha} by `steps.greet.sha256`; keep one pin"
        )),
        "{errors:?}"
    );

    // Native steps have nothing to pin.
    let t = Test::new()
        .flow(&(header("native") + "steps:\n  external.process: {version: \"1\"}\njobs: []\n"));
    let errors = validate_errors(&t, "flow.yaml");
    assert_eq!(errors[0].0, "semantic:step_pin_native");
    assert_eq!(errors[0].1, "steps.external.process");
}

#[test]
fn a_with_lock_step_whose_type_is_templated_is_checked_when_it_runs() {
    let wrong = "ef".repeat(32);
    let flow = header("late")
        + "jobs:\n  - id: j\n    steps:\n      - {id: locked, type: with_lock, inputs: {lock_key: k, step: {type: \"{{env.INNER}}\", inputs: {names: [Ada]}}}}\n";
    let t = Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PLUGIN_PATHS", fx::GREET)
        .env("INNER", format!("greet@sha256:{wrong}"));
    t.run_args(&["validate", "flow.yaml"]).status(0);
    let out = t.run_args(&["run", "flow.yaml"]);
    out.status(1);
    let err = out.named("step_end")[0]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "step type `greet` is pinned to sha256 {wrong}, but `{}` has sha256",
            fx::GREET
        )),
        "{err}"
    );
}

#[test]
fn built_in_steps_can_be_pinned_to_the_digest_steps_show_prints() {
    let t = Test::new();
    let show = |name: &str| -> Value {
        let out = t.run_args(&["steps", "show", name, "--json"]);
        out.status(0);
        serde_json::from_str(&out.stdout).unwrap()
    };
    let check_items = show("check_items");
    let pin = check_items["pin"].as_str().unwrap().to_string();
    assert_eq!(
        pin,
        format!(
            "check_items@sha256:{}",
            check_items["sha256"].as_str().unwrap()
        )
    );
    let flow = |type_: &str| {
        header("builtin")
            + &format!(
                "jobs:\n  - id: j\n    steps:\n      - {{id: c, type: \"{type_}\", inputs: {{items: [1]}}}}\n"
            )
    };
    t.write("flow.yaml", &flow(&pin));
    let out = t.run_args(&["run", "flow.yaml"]);
    out.status(0);
    assert_eq!(out.named("step_end")[0]["status"], "SUCCESS");

    // Pinned to another built-in's digest: the error says whose digest it is.
    let other = show("db_extract")["sha256"].as_str().unwrap().to_string();
    let t = Test::new().flow(&flow(&format!("check_items@sha256:{other}")));
    refused(&t, "flow.yaml").stderr_has(&format!(
        "step type `check_items` is pinned to sha256 {other}, but the built-in `check_items` of \
         this aetherflow binary ({}) has sha256 {} (sha256 {other} is the built-in step \
         `db_extract`); if you have reviewed",
        env!("CARGO_PKG_VERSION"),
        check_items["sha256"].as_str().unwrap()
    ));
}

#[test]
fn the_lock_entry_steps_show_prints_can_be_pasted_into_a_flow() {
    let t = Test::new().env("AETHERFLOW_PLUGIN_PATHS", fx::GREET);
    let out = t.run_args(&["steps", "show", "greet"]);
    out.status(0);
    let sha = sha256_file(fx::GREET);
    out.stdout_has(&format!("pin:          type: greet@sha256:{sha}\n"));
    let lock = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("lock entry:   "))
        .expect("a lock entry line")
        .to_string();
    assert_eq!(
        lock,
        format!(
            "steps: {{greet: {{path: \"{}\", sha256: \"{sha}\", version: \"0.1.0\"}}}}",
            fx::GREET
        )
    );
    // Pasted into a flow, it runs, without plugin paths and in enterprise mode.
    let t = Test::new()
        .flow(&greet_flow("pasted", "greet", &(lock + "\n")))
        .env("AETHERFLOW_MODE", "enterprise");
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(0);
    assert_eq!(greeting(&t, "pasted", "r1"), "Hello, Ada!\n");

    let json: Value = serde_json::from_str(
        &Test::new()
            .env("AETHERFLOW_PLUGIN_PATHS", fx::GREET)
            .run_args(&["steps", "show", "greet", "--json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(json["pin"], format!("greet@sha256:{sha}"));
}

#[test]
fn a_flow_loads_a_component_from_a_path_relative_to_the_flow_file() {
    let sha = sha256_file(fx::GREET);
    let t = Test::new();
    std::fs::create_dir_all(t.path("sub/plugins")).unwrap();
    std::fs::copy(fx::GREET, t.path("sub/plugins/greet.wasm")).unwrap();
    t.write(
        "sub/flow.yaml",
        &greet_flow(
            "local",
            "greet",
            &format!("steps:\n  greet: {{path: plugins/greet.wasm, sha256: \"{sha}\"}}\n"),
        ),
    );
    // Run from the test directory, not the flow's: the path is relative to the flow file.
    t.run_args(&["run", "sub/flow.yaml", "--run-id", "r1"])
        .status(0);
    assert_eq!(greeting(&t, "local", "r1"), "Hello, Ada!\n");

    // A missing file is an error at the entry.
    t.write(
        "sub/missing.yaml",
        &greet_flow(
            "local",
            "greet",
            "steps:\n  greet: {path: plugins/nope.wasm}\n",
        ),
    );
    // The step's type is unknown then, and the entry says why.
    let errors = validate_errors(&t, "sub/missing.yaml");
    let codes: Vec<(&str, &str)> = errors
        .iter()
        .map(|(c, l, _)| (c.as_str(), l.as_str()))
        .collect();
    assert_eq!(
        codes,
        [
            ("semantic:unknown_step_type", "jobs[0].steps[0].type"),
            ("semantic:step_lock_path", "steps.greet.path")
        ]
    );
    assert!(
        errors[1].2.starts_with(&format!(
            "cannot read `{}`",
            t.path("sub/plugins/nope.wasm").display()
        )),
        "{errors:?}"
    );
}

#[test]
fn two_plugins_claiming_one_name_must_be_told_apart_by_a_pin() {
    let plugins = format!("{},{}", fx::GREET, fx::GREET_IMPOSTOR);
    let (real, impostor) = (sha256_file(fx::GREET), sha256_file(fx::GREET_IMPOSTOR));
    let claim = format!(
        "2 plugins claim step name `greet`: `{}` (sha256 {real}), `{}` (sha256 {impostor})",
        fx::GREET,
        fx::GREET_IMPOSTOR
    );

    // Unpinned: refused, naming both files.
    let t = Test::new()
        .flow(&greet_flow("two", "greet", ""))
        .env("AETHERFLOW_PLUGIN_PATHS", &plugins);
    refused(&t, "flow.yaml").stderr_has(&format!(
        "- jobs[0].steps[0].type: semantic:ambiguous_step_type - step `hello`: {claim}; \
             remove all but one from AETHERFLOW_PLUGIN_PATHS, or pin the one to run, e.g. \
             `type: greet@sha256:{real}`"
    ));
    // `steps show` refuses to pick one; `steps list` shows both.
    t.run_args(&["steps", "show", "greet"])
        .status(2)
        .stderr_has(&format!(
            "`{}` (version 0.1.0, pin `greet@sha256:{real}`)",
            fx::GREET
        ))
        .stderr_has(&format!(
            "`{}` (version 6.6.6, pin `greet@sha256:{impostor}`)",
            fx::GREET_IMPOSTOR
        ));
    let list: Vec<Value> =
        serde_json::from_str(&t.run_args(&["steps", "list", "--json"]).stdout).unwrap();
    let greets: Vec<&str> = list
        .iter()
        .filter(|e| e["name"] == "greet")
        .map(|e| e["origin"].as_str().unwrap())
        .collect();
    assert_eq!(greets, [fx::GREET, fx::GREET_IMPOSTOR]);

    // Pinned: the pinned one runs, and the other is never called.
    let t = Test::new()
        .flow(&greet_flow("two", &format!("greet@sha256:{real}"), ""))
        .env("AETHERFLOW_PLUGIN_PATHS", &plugins);
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(0).stderr_has(&claim);
    assert_eq!(greeting(&t, "two", "r1"), "Hello, Ada!\n");

    // Pinned through the steps section, to the other one: that one runs.
    let t = Test::new()
        .flow(&greet_flow(
            "two",
            "greet",
            &format!("steps:\n  greet: {{sha256: \"{impostor}\"}}\n"),
        ))
        .env("AETHERFLOW_PLUGIN_PATHS", &plugins);
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(0);
    assert!(!t.path("work/two/j/r1/artifacts/greetings.txt").exists());
    let store = t.store();
    let step = aetherflow_state::StateStore::step(
        &store,
        &aetherflow_state::JobKey::new("two", "r1", "j").step("hello"),
    )
    .unwrap()
    .unwrap();
    assert_eq!(step.outputs.unwrap()["impostor"], true);
}

#[test]
fn a_component_must_be_the_step_its_entry_names() {
    let t = Test::new();
    std::fs::copy(fx::NAME_THIEF, t.path("thief.wasm")).unwrap();
    t.write(
        "flow.yaml",
        &(header("claims")
            + "steps:\n  greet: {path: thief.wasm}\n  check_items: {path: thief.wasm}\njobs: []\n"),
    );
    let errors = validate_errors(&t, "flow.yaml");
    let thief = t.path("thief.wasm").display().to_string();
    assert_eq!(
        errors,
        [
            (
                "semantic:step_lock_name".to_string(),
                "steps.greet.path".to_string(),
                format!(
                    "`{thief}` describes itself as step `check_items`, not `greet`; point \
                     `steps.greet.path` at the `greet` component"
                )
            ),
            (
                "semantic:step_lock_path".to_string(),
                "steps.check_items.path".to_string(),
                "`check_items` is a built-in step, which a flow cannot load from a file; pin \
                 the built-in with `sha256` alone, or give your component another name"
                    .to_string()
            ),
        ]
    );
}

#[test]
fn a_component_importing_an_interface_the_host_does_not_offer_is_refused_at_load() {
    let why = "is invalid: it imports `aetherflow:evil/x@0.1.0`, which this engine does not \
               offer: a step may import only WASI preview 2 and the aetherflow:step interfaces \
               (log, digest, sql, http, files, mail)";
    // As a plugin: refused before any flow is read, naming the file and the interface.
    let t = Test::new()
        .flow(&(header("evil") + "jobs: []\n"))
        .env("AETHERFLOW_PLUGIN_PATHS", fx::EVIL_IMPORT);
    t.run_args(&["validate", "flow.yaml"])
        .status(2)
        .stderr_has(&format!(
            "Failed loading plugin file: {0}: step component `{0}` {why}",
            fx::EVIL_IMPORT
        ));
    t.run_args(&["steps", "list"]).status(2).stderr_has(why);

    // Loaded by a flow: an error at its entry.
    let t = Test::new();
    std::fs::copy(fx::EVIL_IMPORT, t.path("evil.wasm")).unwrap();
    t.write(
        "flow.yaml",
        &(header("evil") + "steps:\n  test_evil_import: {path: evil.wasm}\njobs: []\n"),
    );
    let errors = validate_errors(&t, "flow.yaml");
    assert_eq!(
        (errors[0].0.as_str(), errors[0].1.as_str()),
        ("semantic:step_load", "steps.test_evil_import.path")
    );
    assert!(errors[0].2.ends_with(why), "{errors:?}");
}

#[test]
fn enterprise_mode_ignores_plugin_paths_and_runs_only_pinned_components() {
    let sha = sha256_file(fx::GREET);
    let ignored = format!(
        "AETHERFLOW_MODE=enterprise ignores AETHERFLOW_PLUGIN_PATHS ({}): a flow loads \
         its plugins from its `steps:` section, by path and sha256",
        fx::GREET
    );
    let enterprise = |flow: &str| {
        Test::new()
            .flow(flow)
            .env("AETHERFLOW_MODE", "enterprise")
            .env("AETHERFLOW_PLUGIN_PATHS", fx::GREET)
    };

    // The ambient plugin is not loaded: not listed, and unknown to a flow.
    let t = enterprise(&greet_flow("ent", "greet", ""));
    let list = t.run_args(&["steps", "list", "--json"]);
    list.status(0).stderr_has(&ignored);
    assert!(!list.stdout.contains("\"greet\""), "{}", list.stdout);
    let errors = validate_errors(&t, "flow.yaml");
    assert_eq!(errors[0].0, "semantic:unknown_step_type");
    assert!(
        errors[0].2.ends_with(
            "(enterprise mode ignores AETHERFLOW_PLUGIN_PATHS: a flow loads a plugin with \
             `steps: {NAME: {path: FILE, sha256: DIGEST}}`)"
        ),
        "{errors:?}"
    );
    // Pinned by digest alone, it is still not loaded from the ambient path.
    let t = enterprise(&greet_flow(
        "ent",
        "greet",
        &format!("steps:\n  greet: {{sha256: \"{sha}\"}}\n"),
    ));
    let errors = validate_errors(&t, "flow.yaml");
    assert!(
        errors
            .iter()
            .any(|(code, loc, msg)| code == "semantic:enterprise_plugin_path"
                && loc == "steps.greet"
                && msg.contains("add `path:`")),
        "{errors:?}"
    );

    // Loaded by the flow without a digest: refused, with the digest to review.
    let t = enterprise(&greet_flow("ent", "greet", ""));
    std::fs::copy(fx::GREET, t.path("greet.wasm")).unwrap();
    t.write(
        "flow.yaml",
        &greet_flow("ent", "greet", "steps:\n  greet: {path: greet.wasm}\n"),
    );
    refused(&t, "flow.yaml").stderr_has(&format!(
        "- steps.greet: semantic:enterprise_unpinned_step - enterprise mode runs only pinned \
         components, and `steps.greet` loads `{}` without a `sha256`: review that file, then \
         add `sha256: \"{sha}\"` to `steps.greet`",
        t.path("greet.wasm").display()
    ));

    // Loaded and pinned: it runs, next to an unpinned built-in.
    t.write(
        "flow.yaml",
        &(header("ent")
            + &format!("steps:\n  greet: {{path: greet.wasm, sha256: \"{sha}\"}}\n")
            + "jobs:\n  - id: j\n    steps:\n      - {id: hello, type: greet, inputs: {names: [Ada]}}\n      - {id: c, type: check_items, inputs: {items: [1]}}\n"),
    );
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(0).stderr_has(&ignored);
    assert_eq!(greeting(&t, "ent", "r1"), "Hello, Ada!\n");
}

#[test]
fn enterprise_mode_refuses_external_process_unless_the_flow_allows_it() {
    let flow = |settings: &str| {
        header("ext")
            + settings
            + "jobs:\n  - id: j\n    steps:\n      - {id: touch, type: external.process, inputs: {command: [touch, \"{ROOT}/touched\"]}}\n      - {id: locked, type: with_lock, inputs: {lock_key: k, step: {type: external.process, inputs: {command: [\"true\"]}}}}\n"
    };
    let fix = "enterprise mode refuses `external.process`, which runs an OS command outside the \
               sandbox, unless the flow allows it: add `settings: {allow_external_process: \
               true}` at the top level of the flow";
    let t = Test::new()
        .flow(&flow(""))
        .env("AETHERFLOW_MODE", "enterprise");
    refused(&t, "flow.yaml")
        .stderr_has(&format!(
            "- jobs[0].steps[0].type: semantic:enterprise_external_process - step `touch`: {fix}"
        ))
        .stderr_has(&format!(
            "- jobs[0].steps[1].inputs.step.type: semantic:enterprise_external_process - step \
             `locked` (inside `with_lock`): {fix}"
        ));
    assert!(!t.path("touched").exists());
    // `false` is the default.
    t.write(
        "flow.yaml",
        &flow("settings: {allow_external_process: false}\n"),
    );
    refused(&t, "flow.yaml");

    // Allowed by the flow: it runs.
    t.write(
        "flow.yaml",
        &flow("settings: {allow_external_process: true}\n"),
    );
    t.run_args(&["run", "flow.yaml"]).status(0);
    assert!(t.path("touched").exists());

    // Outside enterprise mode the setting is not needed.
    let t = Test::new().flow(&flow(""));
    t.run_args(&["run", "flow.yaml"]).status(0);
    assert!(t.path("touched").exists());
}

#[test]
fn aetherflow_mode_must_be_enterprise_or_internal_fast() {
    let flow = header("mode") + "jobs: []\n";
    Test::new()
        .flow(&flow)
        .env("AETHERFLOW_MODE", "enterprize")
        .run_args(&["validate", "flow.yaml"])
        .status(2)
        .stderr_has(
            "error: invalid AETHERFLOW_MODE=`enterprize`: expected `enterprise` or \
             `internal_fast` (the default)",
        );
    for ok in ["internal_fast", " Enterprise ", ""] {
        Test::new()
            .flow(&flow)
            .env("AETHERFLOW_MODE", ok)
            .run_args(&["validate", "flow.yaml"])
            .status(0);
    }
}
