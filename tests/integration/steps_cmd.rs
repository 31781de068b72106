//! `aetherflow steps list` / `steps show`: every available step type with its origin,
//! version, sha256, input schema and the connectors it asks for.

use aetherflow_test_fixtures as fx;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::harness::Test;

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn list_shows_builtins_natives_and_plugins_with_their_origin_and_digest() {
    let t = Test::new().env("AETHERFLOW_PLUGIN_PATHS", fx::GREET);
    let out = t.run_args(&["steps", "list", "--json"]);
    out.status(0);
    let list: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    let by_name = |n: &str| {
        list.iter()
            .find(|e| e["name"] == n)
            .unwrap_or_else(|| panic!("{n} missing from {list:?}"))
            .clone()
    };
    let names: Vec<&str> = list.iter().map(|e| e["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "sorted by name");

    let db = by_name("db_extract");
    assert_eq!(db["origin"], "builtin");
    assert_eq!(db["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        db["capabilities"],
        serde_json::json!([{"kind": "db", "input": "resource"}])
    );
    assert!(db["input_schema"]["required"]
        .as_array()
        .unwrap()
        .contains(&Value::from("sql")));

    let native = by_name("external.process");
    assert!(native["origin"].as_str().unwrap().starts_with("native"));
    assert_eq!(native["sha256"], Value::Null);

    // The plugin: its file as the origin and the sha256 of that file.
    let greet = list
        .iter()
        .find(|e| e["origin"].as_str().is_some_and(|o| o.ends_with(".wasm")))
        .expect("the plugin is listed");
    let bytes = std::fs::read(fx::GREET).unwrap();
    assert_eq!(greet["sha256"], sha256_hex(&bytes));
    assert_eq!(greet["origin"], fx::GREET);

    // The text form has one line per step after the header.
    let text = t.run_args(&["steps", "list"]);
    text.status(0)
        .stdout_has("db_extract")
        .stdout_has("db (input `resource`)");
    assert_eq!(text.stdout.lines().count(), list.len() + 1);
}

#[test]
fn show_prints_one_step_and_refuses_an_unknown_one() {
    let t = Test::new();
    let out = t.run_args(&["steps", "show", "check_items", "--json"]);
    out.status(0);
    let e: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(e["name"], "check_items");
    assert_eq!(e["capabilities"], serde_json::json!([]));
    assert_eq!(e["input_schema"]["required"], serde_json::json!(["items"]));

    t.run_args(&["steps", "show", "check_items"])
        .status(0)
        .stdout_has("origin:       builtin")
        .stdout_has("\"items\"");

    t.run_args(&["steps", "show", "no_such_step"])
        .status(2)
        .stderr_has(
            "no step type `no_such_step`; `aetherflow steps list` shows the available ones",
        );
}
