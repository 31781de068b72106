//! The `component` secrets provider (wit/secrets.wit): a real component
//! (tests/guests/secrets_rot13: `decode` = ROT13, `expand-env` adds `SECRET_EXPANDED=yes`).

use aetherflow_test_fixtures as fx;

use crate::harness::{db_flow, out_tsv, Test};

fn rot13(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' => (((c as u8 - b'a') + 13) % 26 + b'a') as char,
            'A'..='Z' => (((c as u8 - b'A') + 13) % 26 + b'A') as char,
            _ => c,
        })
        .collect()
}

fn make_db(t: &Test, rel: &str) {
    rusqlite::Connection::open(t.path(rel))
        .unwrap()
        .execute_batch("create table if not exists t(x); insert into t values (1)")
        .unwrap();
}

fn with_provider(t: Test) -> Test {
    t.env("AETHERFLOW_SECRETS_PROVIDER", "component")
        .env("AETHERFLOW_SECRETS_COMPONENT", fx::SECRETS_ROT13)
}

const DECODED_PATH: &str =
    "{kind: db, driver: sqlite3, config: {path: \"{{env.ENC_PATH}}\"}, decode: {config: {path: true}}}";

#[test]
fn component_provider_decodes_marked_fields() {
    let t = Test::new().flow(&db_flow("rot", DECODED_PATH, "select count(*) as n from t"));
    make_db(&t, "secret.db");
    let real = t.path("secret.db").display().to_string();
    let encoded = rot13(&real);
    assert_ne!(encoded, real);
    let t = with_provider(t.env("ENC_PATH", &encoded));
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(0);
    assert_eq!(out_tsv(&t, "rot", "r1"), "n\n1\n");

    // The same flow without decoding points at a path that does not exist.
    let t = t.env("AETHERFLOW_SECRETS_PROVIDER", "");
    t.run_args(&["run", "flow.yaml", "--run-id", "r2"])
        .status(1)
        .stderr_has("no secrets provider is configured");
}

#[test]
fn expand_env_reaches_the_resource_but_not_step_inputs() {
    // Only a provider that expands the env defines SECRET_EXPANDED (`yes.db`).
    let resource = "{kind: db, driver: sqlite3, config: {path: \"{{env.DB_DIR}}/{{env.SECRET_EXPANDED}}.db\"}}";
    let t = Test::new().flow(&db_flow("exp", resource, "select count(*) as n from t"));
    make_db(&t, "yes.db");
    let dir = t.root().display().to_string();
    let t = with_provider(t.env("DB_DIR", &dir));
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(0);
    assert_eq!(out_tsv(&t, "exp", "r1"), "n\n1\n");

    // Without the provider the resource cannot be rendered.
    let t = t.env("AETHERFLOW_SECRETS_PROVIDER", "");
    t.run_args(&["run", "flow.yaml", "--run-id", "r2"])
        .status(1)
        .stderr_has("resources.db.config.path: missing template key 'env.SECRET_EXPANDED'");

    // The expanded env belongs to the resource build only: step inputs never see it.
    let t = with_provider(t.flow(&db_flow(
        "exp2",
        resource,
        "select '{{env.SECRET_EXPANDED}}' as v",
    )));
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r3"]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    out.stderr_has("SECRET_EXPANDED");
    assert!(
        !t.path("work/exp2/j/r3/artifacts/out.tsv").exists(),
        "the step ran with the expanded env"
    );
}

fn bad_test() -> Test {
    Test::new()
        .flow(&db_flow("bad", DECODED_PATH, "select 1"))
        .env("ENC_PATH", "k.qo")
        .env("AETHERFLOW_SECRETS_PROVIDER", "component")
}

#[test]
fn a_missing_or_invalid_component_is_a_clear_error() {
    let out = bad_test().run_args(&["run", "flow.yaml"]);
    assert!(matches!(out.code, 1 | 2), "{}", out.stderr);
    out.stderr_has("AETHERFLOW_SECRETS_PROVIDER=component needs AETHERFLOW_SECRETS_COMPONENT=");

    let t = bad_test();
    let missing = t.path("nope/provider.wasm").display().to_string();
    let out = t
        .env("AETHERFLOW_SECRETS_COMPONENT", &missing)
        .run_args(&["run", "flow.yaml"]);
    assert!(matches!(out.code, 1 | 2), "{}", out.stderr);
    out.stderr_has(&format!(
        "AETHERFLOW_SECRETS_COMPONENT={missing}: cannot read the secrets provider component"
    ));

    let t = bad_test().file("provider.wasm", "this is not wasm");
    let not_wasm = t.path("provider.wasm").display().to_string();
    let out = t
        .env("AETHERFLOW_SECRETS_COMPONENT", &not_wasm)
        .run_args(&["run", "flow.yaml"]);
    assert!(matches!(out.code, 1 | 2), "{}", out.stderr);
    out.stderr_has(&format!(
        "AETHERFLOW_SECRETS_COMPONENT={not_wasm}: cannot load the secrets provider component: not a WebAssembly component"
    ));

    // A step component is a component, but not a secrets provider.
    let out = bad_test()
        .env("AETHERFLOW_SECRETS_COMPONENT", fx::TRAP)
        .run_args(&["run", "flow.yaml"]);
    assert!(matches!(out.code, 1 | 2), "{}", out.stderr);
    out.stderr_has(&format!(
        "AETHERFLOW_SECRETS_COMPONENT={}: cannot load the secrets provider component",
        fx::TRAP
    ));
}

#[test]
fn a_rejected_value_names_resource_and_field_never_the_value() {
    // The guest's `err` deliberately echoes the value; the host masks it.
    let t = with_provider(
        Test::new()
            .flow(&db_flow("rej", DECODED_PATH, "select 1"))
            .env("ENC_PATH", "!hunter2-Sekret"),
    );
    let out = t.run_args(&["run", "flow.yaml"]);
    out.status(1)
        .stderr_has("resources.db.config.path: the component (")
        .stderr_has("secrets provider cannot decode the value: refusing to decode `***`");
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);

    // A trap names the provider, never the value.
    let t = t.env("ENC_PATH", "TRAP:hunter2-Sekret");
    let out = t.run_args(&["run", "flow.yaml"]);
    out.status(1)
        .stderr_has("resources.db.config.path:")
        .stderr_has(&format!(
            "secrets provider component `{}` crashed in `decode`",
            fx::SECRETS_ROT13
        ));
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
}
