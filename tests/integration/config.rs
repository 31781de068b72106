//! Configuration: env files (`AETHERFLOW_ENV_FILES_JSON`), profiles, the secrets decode
//! provider, and the `doctor` / `explain` commands.

use serde_json::Value;

use crate::harness::{db_flow, header, out_tsv, Test};

fn make_db(t: &Test, rel: &str) {
    rusqlite::Connection::open(t.path(rel))
        .unwrap()
        .execute_batch("create table if not exists t(x)")
        .unwrap();
}

fn b64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in s.as_bytes().chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn json_stdout(out: &crate::harness::Outcome) -> Value {
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", out.stdout))
}

// ---------------------------------------------------------------- env files

#[test]
fn env_files_feed_the_snapshot_in_order_with_prefixes() {
    let flow = db_flow(
        "envf",
        "{kind: db, driver: sqlite3, config: {path: \"{{env.DB_PATH}}\"}}",
        "select '{{env.A}}|{{env.B}}|{{env.J_OBJ}}|{{env.J_FLAG}}|{{env.P_token}}|{{env.FROM_OS}}' as v",
    );
    let t = Test::new()
        .flow(&flow)
        .file(
            "first.env",
            "# comment\nDB_PATH={ROOT}/e.db\nA = \"quoted a\"\nB=first\nnot a pair\n",
        )
        .file(
            "conf/second.json",
            r#"{"B": "second", "J_OBJ": {"k": [1, 2]}, "J_FLAG": true, "NULLED": null}"#,
        )
        .file("secrets.d/token", "t0k\n\n")
        .file("secrets.d/.hidden", "h");
    make_db(&t, "e.db");
    let t = t
        .env(
            "AETHERFLOW_ENV_FILES_JSON",
            r#"[{"type": "dotenv", "path": "first.env"},
                {"type": "JSON", "path": "conf/second.json"},
                {"type": "dir-of-files", "path": "secrets.d", "prefix": "P_"},
                {"type": "dotenv", "path": "absent.env", "optional": true}]"#,
        )
        .env("FROM_OS", "os")
        .env("B", "from-process");
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(0);
    assert_eq!(
        out_tsv(&t, "envf", "r1"),
        "v\nquoted a|second|{\"k\": [1, 2]}|True|t0k|os\n"
    );
}

#[test]
fn env_file_errors_are_clear_and_exit_2() {
    let flow = header("bad") + "jobs:\n  - id: j\n    steps: []\n";
    let cases: &[(&str, &str)] = &[
        ("{\"type\": \"dotenv\"}", "AETHERFLOW_ENV_FILES_JSON must be a JSON list"),
        ("[1]", "env file spec must be an object (AETHERFLOW_ENV_FILES_JSON[0])"),
        ("[{\"type\": \"toml\", \"path\": \"x\"}]", "Unsupported env_files type: toml"),
        ("not json", "AETHERFLOW_ENV_FILES_JSON is not valid JSON"),
        (
            "[{\"type\": \"dotenv\", \"path\": \"missing.env\"}]",
            "env file not found: missing.env (AETHERFLOW_ENV_FILES_JSON[0]; create it or set \"optional\": true)",
        ),
        (
            "[{\"type\": \"json\", \"path\": \"list.json\"}]",
            "json env file must be a JSON object: list.json",
        ),
        (
            "[{\"type\": \"dir\", \"path\": \"list.json\"}]",
            "is not a directory",
        ),
        (
            "[{\"type\": \"dotenv\", \"path\": \"x\", \"optional\": \"false\"}]",
            "AETHERFLOW_ENV_FILES_JSON[0].optional must be true or false",
        ),
    ];
    for (spec, msg) in cases {
        let t = Test::new()
            .flow(&flow)
            .file("list.json", "[1]")
            .env("AETHERFLOW_ENV_FILES_JSON", spec);
        t.run_args(&["run", "flow.yaml"]).status(2).stderr_has(msg);
        // Every command reads the same snapshot and rejects it the same way.
        t.run_args(&["doctor", "flow.yaml"])
            .status(2)
            .stderr_has(msg);
        t.run_args(&["validate", "flow.yaml"])
            .status(2)
            .stderr_has(msg);
    }
}

// ---------------------------------------------------------------- profiles

#[test]
fn profile_is_the_base_and_the_resource_wins() {
    let flow = db_flow(
        "prof",
        "{kind: db, driver: sqlite3, profile: local, config: {path: \"{{env.ROOT_DIR}}/p.db\"}}",
        "select count(*) as n from t",
    );
    let t = Test::new().flow(&flow).file(
        "profiles.yaml",
        "local:\n  config:\n    path: /nonexistent/profile.db\n    extra: {a: 1}\n  options: {timeout: 5}\n",
    );
    make_db(&t, "p.db");
    let root = t.root().display().to_string();
    let t = t
        .env("AETHERFLOW_PROFILES_FILE", t_path(&root, "profiles.yaml"))
        .env("ROOT_DIR", &root);
    t.run_args(&["run", "flow.yaml", "--run-id", "p1"])
        .status(0);
    assert_eq!(out_tsv(&t, "prof", "p1"), "n\n0\n");
    // explain shows the merged, rendered configuration.
    let out = t.run_args(&["explain", "flow.yaml", "--json"]);
    out.status(0);
    let v = json_stdout(&out);
    assert_eq!(v["resources"]["db"]["profile"], "local");
    assert_eq!(
        v["resources"]["db"]["config"]["path"],
        format!("{root}/p.db")
    );
    assert_eq!(v["resources"]["db"]["config"]["extra"]["a"], 1);
    assert_eq!(v["resources"]["db"]["options"]["timeout"], 5);
}

fn t_path(root: &str, rel: &str) -> String {
    format!("{root}/{rel}")
}

#[test]
fn profile_field_supplies_a_templated_value() {
    let flow = db_flow(
        "prof2",
        "{kind: db, driver: sqlite3, profile: p}",
        "select 1 as one",
    );
    let t = Test::new().flow(&flow);
    make_db(&t, "q.db");
    let root = t.root().display().to_string();
    let t = t
        .env(
            "AETHERFLOW_PROFILES_JSON",
            r#"{"p": {"config": {"path": "{{env.QDB}}"}}}"#,
        )
        .env("QDB", format!("{root}/q.db"));
    t.run_args(&["run", "flow.yaml", "--run-id", "q1"])
        .status(0);
    assert_eq!(out_tsv(&t, "prof2", "q1"), "one\n1\n");
}

#[test]
fn profile_configuration_errors() {
    let flow = db_flow(
        "perr",
        "{kind: db, driver: sqlite3, profile: p}",
        "select 1",
    );
    // Both variables set.
    Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PROFILES_JSON", "{}")
        .env("AETHERFLOW_PROFILES_FILE", "p.yaml")
        .run_args(&["run", "flow.yaml"])
        .status(1)
        .stderr_has("Set only one of AETHERFLOW_PROFILES_JSON or AETHERFLOW_PROFILES_FILE");
    // Schema error: unknown key in a profile.
    Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PROFILES_JSON", r#"{"p": {"confg": {}}}"#)
        .run_args(&["run", "flow.yaml"])
        .status(1)
        .stderr_has("Invalid profile configuration (AETHERFLOW_PROFILES_JSON): p.confg");
    // Not JSON.
    Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PROFILES_JSON", "{nope")
        .run_args(&["run", "flow.yaml"])
        .status(1)
        .stderr_has("Invalid profile configuration (AETHERFLOW_PROFILES_JSON): not valid JSON");
    // Unreadable file.
    Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PROFILES_FILE", "missing.yaml")
        .run_args(&["run", "flow.yaml"])
        .status(1)
        .stderr_has("Invalid profile configuration (AETHERFLOW_PROFILES_FILE=missing.yaml): cannot read the file");
    // Unknown profile (the reference silently used {}).
    Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PROFILES_JSON", r#"{"dev": {}, "prod": {}}"#)
        .run_args(&["run", "flow.yaml"])
        .status(1)
        .stderr_has("resources.db.profile: unknown profile `p`; known profiles: dev, prod (from AETHERFLOW_PROFILES_JSON)");
    Test::new()
        .flow(&flow)
        .run_args(&["run", "flow.yaml"])
        .status(1)
        .stderr_has("unknown profile `p`; no profiles are configured (set AETHERFLOW_PROFILES_JSON or AETHERFLOW_PROFILES_FILE)");
}

#[test]
fn diagnostics_let_profiles_json_win() {
    let flow = db_flow(
        "pdiag",
        "{kind: db, driver: sqlite3, profile: p}",
        "select 1",
    );
    let out = Test::new()
        .flow(&flow)
        .env(
            "AETHERFLOW_PROFILES_JSON",
            r#"{"p": {"config": {"path": "x.db"}}}"#,
        )
        .env("AETHERFLOW_PROFILES_FILE", "missing.yaml")
        .run_args(&["explain", "flow.yaml", "--json"]);
    out.status(0);
    assert_eq!(
        json_stdout(&out)["resources"]["db"]["config"]["path"],
        "x.db"
    );
}

// ---------------------------------------------------------------- secrets

#[test]
fn base64_provider_decodes_marked_fields() {
    let flow = db_flow(
        "dec",
        "{kind: db, driver: sqlite3, config: {path: \"{{env.ENC_PATH}}\"}, decode: {config_paths: [path]}}",
        "select count(*) as n from t",
    );
    let t = Test::new().flow(&flow);
    make_db(&t, "secret.db");
    let real = t.path("secret.db").display().to_string();
    let t = t
        .env("ENC_PATH", b64(&real))
        .env("AETHERFLOW_SECRETS_PROVIDER", "base64");
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "d1"]);
    out.status(0);
    assert_eq!(out_tsv(&t, "dec", "d1"), "n\n0\n");
}

#[test]
fn decode_without_a_provider_is_an_error() {
    let flow = db_flow(
        "noprov",
        "{kind: db, driver: sqlite3, config: {path: x.db, password: cHc=}, decode: {config: {password: true}}}",
        "select 1",
    );
    Test::new()
        .flow(&flow)
        .run_args(&["run", "flow.yaml"])
        .status(1)
        .stderr_has("resources.db.decode requests decoding of [config.password] but no secrets provider is configured (set AETHERFLOW_SECRETS_PROVIDER=base64");
    Test::new()
        .flow(&flow)
        .env("AETHERFLOW_SECRETS_PROVIDER", "vault")
        .run_args(&["run", "flow.yaml"])
        .status(1)
        .stderr_has("unknown secrets provider AETHERFLOW_SECRETS_PROVIDER=`vault`: supported providers are: base64");
}

#[test]
fn bad_encoded_value_names_the_field_and_never_the_value() {
    let flow = db_flow(
        "badenc",
        "{kind: db, driver: sqlite3, config: {path: x.db, password: \"{{env.PW}}\"}, decode: {config: {password: true}}}",
        "select 1",
    );
    let out = Test::new()
        .flow(&flow)
        .env("PW", "s3cr3t-not-base64!")
        .env("AETHERFLOW_SECRETS_PROVIDER", "base64")
        .run_args(&["run", "flow.yaml"]);
    out.status(1).stderr_has(
        "resources.db.config.password: the base64 secrets provider cannot decode the value: invalid base64 character",
    );
    assert!(!out.stderr.contains("s3cr3t"), "{}", out.stderr);
}

#[test]
fn decode_target_must_be_a_standalone_token() {
    // The templated value comes from the profile, so only the resource build sees it
    // (validation rejects the same mistake written in the flow itself).
    let flow = db_flow(
        "concat",
        "{kind: db, driver: sqlite3, profile: p, config: {path: x.db}, decode: {config: {password: true}}}",
        "select 1",
    );
    let out = Test::new()
        .flow(&flow)
        .env(
            "AETHERFLOW_PROFILES_JSON",
            r#"{"p": {"config": {"password": "pre{{env.PW}}"}}}"#,
        )
        .env("PW", "cHc=")
        .env("AETHERFLOW_SECRETS_PROVIDER", "base64")
        .run_args(&["run", "flow.yaml"]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    out.stderr_has("resources.db.config.password: Decode target must be a standalone template token like '{{TOKEN}}' (no prefix/suffix).");
}

#[test]
fn an_unrenderable_resource_field_is_named() {
    let flow = db_flow(
        "render",
        "{kind: db, driver: sqlite3, profile: p, config: {path: x.db}}",
        "select 1",
    );
    Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PROFILES_JSON", r#"{"p": {"options": {"nested": {"user": "{{env.NOPE_USER}}"}}}}"#)
        .run_args(&["run", "flow.yaml"])
        .status(1)
        .stderr_has("resources.db.options.nested.user: missing template key 'env.NOPE_USER' (field from profile `p`)");
}

// ---------------------------------------------------------------- doctor

fn doctor_flow() -> String {
    header("doc")
        + "resources:\n  db: {kind: db, driver: sqlite3, profile: p, config: {path: \"{{env.DBP}}\"}, decode: {config: {password: true}}}\n  plain: {kind: db, driver: sqlite3, config: {path: x.db}}\njobs:\n  - id: j\n    steps:\n      - {id: s, type: db_extract, inputs: {resource: plain, sql: \"select '{{env.ITEMS}}'\", output: o.tsv}}\n"
}

const DOCTOR_PROFILES: &str = r#"{"p": {"config": {"password": "{{env.PW}}"}}, "unused": {"config": {"x": "{{env.UNUSED_X}}"}}}"#;

#[test]
fn doctor_names_resource_profile_field_and_variable() {
    let t = Test::new()
        .flow(&doctor_flow())
        .env("AETHERFLOW_PROFILES_JSON", DOCTOR_PROFILES);
    let out = t.run_args(&["doctor", "flow.yaml"]);
    out.status(2)
        .stdout_has("FAIL: flow.yaml\n")
        .stdout_has("- resource=db profile=p config.password needs env PW\n")
        .stdout_has("- resource=db profile=p config.path needs env DBP\n")
        .stdout_has("- resource=db profile=p decode needs env AETHERFLOW_SECRETS_PROVIDER")
        .stdout_has("- jobs[0].steps[0].inputs.sql needs env ITEMS\n")
        .stdout_has("! profiles.unused.config.x: semantic:missing_env - Missing env env.UNUSED_X (profile `unused` is not used by this flow)");

    let out = t.run_args(&["doctor", "--flow-yaml", "flow.yaml", "--json"]);
    out.status(2);
    let v = json_stdout(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["flow_yaml"], "flow.yaml");
    let first = &v["missing_env"][0];
    assert_eq!(first["code"], "semantic:missing_env");
    assert_eq!(first["loc"], "resources.db.config.password");
    assert_eq!(first["msg"], "Missing env env.PW");
    assert_eq!(first["resource"], "db");
    assert_eq!(first["profile"], "p");
    assert_eq!(first["field"], "config.password");
    assert_eq!(first["env_key"], "PW");
    assert_eq!(v["missing_env"].as_array().unwrap().len(), 4);
    assert_eq!(v["warnings"].as_array().unwrap().len(), 1);
}

#[test]
fn doctor_is_ok_when_env_files_and_provider_supply_everything() {
    let t = Test::new()
        .flow(&doctor_flow())
        .file(
            "vars.env",
            &format!("PW={}\nDBP=x.db\nITEMS=a\n", b64("pw")),
        )
        .env("AETHERFLOW_PROFILES_JSON", DOCTOR_PROFILES)
        .env("AETHERFLOW_SECRETS_PROVIDER", "base64")
        .env(
            "AETHERFLOW_ENV_FILES_JSON",
            r#"[{"type": "dotenv", "path": "vars.env"}]"#,
        );
    t.run_args(&["doctor", "flow.yaml"])
        .status(0)
        .stdout_has("OK: flow.yaml\n");
    // A value the provider rejects is reported without the value.
    let t = t.file("vars.env", "PW=zzz!!secret\nDBP=x.db\nITEMS=a\n");
    let out = t.run_args(&["doctor", "flow.yaml", "--json"]);
    out.status(2);
    assert!(!out.stdout.contains("zzz!!secret"), "{}", out.stdout);
    let v = json_stdout(&out);
    assert_eq!(v["missing_env"][0]["code"], "secrets:decode_failed");
    assert_eq!(v["missing_env"][0]["env_key"], "PW");
}

#[test]
fn doctor_exit_1_on_errors() {
    // Unreadable flow.
    Test::new()
        .run_args(&["doctor", "nope.yaml"])
        .status(1)
        .stderr_has("nope.yaml");
    // Schema error.
    Test::new()
        .flow("version: 1\nflow: {id: x}\njobs: 3\n")
        .run_args(&["doctor", "flow.yaml"])
        .status(1)
        .stderr_has("flow.yaml is invalid");
    // Unknown profile.
    Test::new()
        .flow(&doctor_flow())
        .env("AETHERFLOW_PROFILES_JSON", "{}")
        .run_args(&["doctor", "flow.yaml"])
        .status(1)
        .stderr_has("resources.db.profile: unknown profile `p`");
}

// ---------------------------------------------------------------- explain

#[test]
fn explain_masks_secrets() {
    let flow = header("exp")
        + "resources:\n  api:\n    kind: rest\n    driver: http\n    profile: p\n    config:\n      base_url: \"{{env.URL}}\"\n      auth: {user: bob, ApiKey: k-123, token_store: {a: b}}\n      dsn: \"u:{{env.DB_PASSWORD}}@h\"\n      blob: \"{{env.BLOB}}\"\n    decode: {config: {blob: true}}\n  raw: {kind: db, driver: sqlite3, config: {password: hunter2}}\njobs:\n  - id: j\n    steps: []\n";
    let t = Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PROFILES_JSON", r#"{"p": {"config": {"password": "plain-pw"}, "options": {"retries": 3}, "decode": {"config_paths": ["x"]}}}"#)
        .env("URL", "https://example.test")
        .env("DB_PASSWORD", "dbpw-value")
        .env("BLOB", "YmxvYg==");
    let out = t.run_args(&["explain", "flow.yaml", "--json"]);
    out.status(0);
    for secret in ["plain-pw", "k-123", "dbpw-value", "YmxvYg==", "hunter2"] {
        assert!(
            !out.stdout.contains(secret),
            "{secret} leaked: {}",
            out.stdout
        );
    }
    let v = json_stdout(&out);
    let api = &v["resources"]["api"];
    assert_eq!(api["kind"], "rest");
    assert_eq!(api["profile"], "p");
    assert_eq!(api["decode"], serde_json::json!({"config_paths": ["x"]}));
    assert_eq!(
        api["decode_paths"],
        serde_json::json!(["config.blob", "config.x"])
    );
    assert_eq!(api["config"]["password"], "***");
    assert_eq!(api["config"]["base_url"], "https://example.test");
    assert_eq!(api["config"]["auth"]["user"], "bob");
    assert_eq!(api["config"]["auth"]["ApiKey"], "***");
    assert_eq!(api["config"]["auth"]["token_store"], "***");
    assert_eq!(api["config"]["dsn"], "***");
    assert_eq!(api["config"]["blob"], "***");
    assert_eq!(api["options"]["retries"], 3);
    // Only resources with a profile are explained (as the reference).
    assert!(v["resources"].get("raw").is_none());

    let out = t.run_args(&["explain", "--flow-yaml", "flow.yaml"]);
    out.status(0)
        .stdout_has("Flow: flow.yaml\n\nResource: api (rest/http) profile=p\n  decode:\n    {\"config_paths\": [\"x\"]}\n  config:\n");
    assert!(!out.stdout.contains("plain-pw"));
}

#[test]
fn explain_reports_an_unknown_profile_and_still_exits_0() {
    let out = Test::new()
        .flow(&doctor_flow())
        .run_args(&["explain", "flow.yaml", "--json"]);
    out.status(0);
    let v = json_stdout(&out);
    assert!(v["resources"]["db"]["error"]
        .as_str()
        .unwrap()
        .contains("unknown profile `p`"));
    assert_eq!(v["resources"]["db"]["decode"], serde_json::json!({}));
}

#[test]
fn validate_sees_env_files_too() {
    let flow = header("vef")
        + "jobs:\n  - id: a\n    steps:\n      - {id: c, type: check_items, inputs: {items: \"{{env.FROM_FILE}}\"}}\n";
    let t = Test::new()
        .flow(&flow)
        .file("vars.env", "FROM_FILE=a,b\n")
        .env("AETHERFLOW_VALIDATE_ENV_STRICT", "true")
        .env(
            "AETHERFLOW_ENV_FILES_JSON",
            r#"[{"type": "dotenv", "path": "vars.env"}]"#,
        );
    t.run_args(&["validate", "flow.yaml"])
        .status(0)
        .stdout_has("OK: flow.yaml");
    let bad = Test::new().flow(&flow).env(
        "AETHERFLOW_ENV_FILES_JSON",
        r#"[{"type": "dotenv", "path": "missing.env"}]"#,
    );
    bad.run_args(&["validate", "flow.yaml"])
        .status(2)
        .stderr_has("missing.env");
}

/// Secrets never reach the logs or the state store: a resource password from the env and
/// a decoded token, echoed by a failing command into its captured output and error.
#[test]
fn secrets_are_masked_in_events_errors_and_the_state_store() {
    let flow = header("mask")
        + r#"resources:
  db:
    kind: db
    driver: sqlite3
    config:
      path: "{ROOT}/m.db"
      password: "{{env.DB_PASSWORD}}"
      token: "c2VjcmV0LXRva2VuLTQy"
    decode:
      config: {token: true}
jobs:
  - id: leak
    steps:
      - id: echo
        type: external.process
        inputs:
          command: ["sh", "-c", "echo pw=hunter2-pass tok=secret-token-42; echo hunter2-pass >&2; exit 3"]
          log: {stdout: capture, stderr: capture}
"#;
    let t = Test::new()
        .flow(&flow)
        .env("DB_PASSWORD", "hunter2-pass")
        .env("AETHERFLOW_SECRETS_PROVIDER", "base64");
    rusqlite::Connection::open(t.path("m.db")).unwrap();
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "m1"]);
    out.status(1);
    for secret in ["hunter2-pass", "secret-token-42"] {
        assert!(
            !out.stderr.contains(secret),
            "{secret} leaked into the events:\n{}",
            out.stderr
        );
        assert!(!out.stdout.contains(secret));
        for file in ["state.sqlite", "state.sqlite-wal"] {
            let bytes = std::fs::read(t.path(file)).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(secret), "{secret} leaked into {file}");
        }
    }
    let line = out.named("external_process_stdout");
    assert_eq!(line[0]["message"], "pw=*** tok=***");
    let end = out
        .named("step_end")
        .into_iter()
        .find(|e| e["step_id"] == "echo")
        .unwrap();
    assert!(end["error"].as_str().unwrap().contains("***"), "{end}");
}
