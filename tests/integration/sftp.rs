//! The `sftp` connector and the four `sftp_*` steps against a real OpenSSH server
//! (`scripts/test-servers/sftp.sh`). Every check reads what the server really holds, under
//! AF_TEST_SFTP_ROOT (the test user's home, where relative remote paths land).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aetherflow_state::{StateStore, StepKey};
use serde_json::Value;

use crate::harness::{header, server_env, Outcome, Test};

struct Server {
    port: String,
    user: String,
    password: String,
    key: String,
    known_hosts: String,
    root: PathBuf,
}

fn server() -> Option<Server> {
    Some(Server {
        port: server_env("AF_TEST_SFTP_PORT")?,
        user: server_env("AF_TEST_SFTP_USER")?,
        password: server_env("AF_TEST_SFTP_PASSWORD")?,
        key: server_env("AF_TEST_SFTP_KEY")?,
        known_hosts: server_env("AF_TEST_SFTP_KNOWN_HOSTS")?,
        root: PathBuf::from(server_env("AF_TEST_SFTP_ROOT")?),
    })
}

impl Server {
    /// A `files` resource with password auth; `extra` is more YAML config/option lines.
    fn resource(&self, extra_config: &str, options: &str) -> String {
        format!(
            "resources:\n  files:\n    kind: sftp\n    driver: ssh\n    config:\n      host: 127.0.0.1\n      port: {}\n      user: {}\n{extra_config}    options: {{timeout: 10{options}}}\n",
            self.port, self.user
        )
    }

    fn with_password(&self) -> String {
        self.resource(
            &format!(
                "      password: \"{}\"\n      known_hosts: \"{}\"\n",
                self.password, self.known_hosts
            ),
            "",
        )
    }
}

/// A remote directory (relative to the user's home) of its own for each test.
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("t-{name}-{}-{nanos}", std::process::id())
}

fn jobs(steps: &str) -> String {
    format!("jobs:\n  - id: j\n    steps:\n{steps}")
}

fn step_outputs(t: &Test, flow: &str, run: &str, step: &str) -> Value {
    t.store()
        .step(&StepKey::new(flow, run, "j", step))
        .unwrap()
        .unwrap_or_else(|| panic!("no step {step}"))
        .outputs
        .unwrap_or(Value::Null)
}

fn step_status(out: &Outcome, step: &str) -> String {
    out.named("step_end")
        .into_iter()
        .find(|e| e["step_id"] == step)
        .unwrap_or_else(|| panic!("no step_end for {step}\n{}", out.stderr))["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The names in a remote directory, as the server's filesystem has them.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

#[test]
fn upload_list_download_delete_round_trip() {
    let Some(s) = server() else { return };
    let dir = unique("rt");
    let flow = header("rt")
        + &s.with_password()
        + &jobs(&format!(
            r#"      - id: up
        type: sftp_upload_files
        inputs:
          resource: files
          remote_dir: "{dir}/in/"
          items: ["data/a.txt", {{file: "data/b.csv", id: b, remote_name: renamed.csv}}, "data/sub/c.txt"]
      - {{id: all, type: sftp_list_files, inputs: {{resource: files, remote_dir: "{dir}", recursive: true}}}}
      - {{id: csv, type: sftp_list_files, inputs: {{resource: files, remote_dir: "{dir}/in", pattern: "*.csv"}}}}
      - {{id: get, type: sftp_download_files, inputs: {{resource: files, files: "{{{{steps.all.files}}}}", dest_dir: got}}}}
      - {{id: del, type: sftp_delete_files, inputs: {{resource: files, files: "{{{{steps.all.files}}}}"}}}}
      - {{id: none, type: sftp_list_files, inputs: {{resource: files, remote_dir: "{dir}/in", pattern: "*.[tc]??"}}}}
"#
        ));
    let t = Test::new()
        .flow(&flow)
        .file("work/rt/j/r1/artifacts/data/a.txt", "alpha\n")
        .file("work/rt/j/r1/artifacts/data/b.csv", "x,y\n1,2\n")
        .file("work/rt/j/r1/artifacts/data/sub/c.txt", "gamma");
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(0);

    // Uploaded: the server holds exactly the three files (no temporary names left).
    let up = step_outputs(&t, "rt", "r1", "up");
    assert_eq!(up["count"], 3, "{up}");
    assert!(up["manifest"]
        .as_str()
        .unwrap()
        .ends_with("/work/rt/j/r1/manifests/up.manifest.json"));

    // Listed back, recursively, sorted by rel_path, with RemoteFileMeta fields.
    let all = step_outputs(&t, "rt", "r1", "all");
    assert_eq!(all["has_data"], true);
    assert_eq!(all["count"], 3);
    let files = all["files"].as_array().unwrap();
    let rels: Vec<&str> = files
        .iter()
        .map(|f| f["rel_path"].as_str().unwrap())
        .collect();
    assert_eq!(rels, ["in/a.txt", "in/c.txt", "in/renamed.csv"]);
    assert_eq!(files[0]["path"], format!("{dir}/in/a.txt"));
    assert_eq!(files[0]["name"], "a.txt");
    assert_eq!(files[0]["is_dir"], false);
    assert_eq!(files[0]["size"], 6);
    assert!(files[0]["mtime"].as_i64().unwrap() > 1_600_000_000);
    let csv = step_outputs(&t, "rt", "r1", "csv");
    assert_eq!(csv["count"], 1);
    assert_eq!(csv["files"][0]["rel_path"], "renamed.csv");

    // Downloaded into <artifacts>/got/<rel_path>, byte for byte.
    let got = t.path("work/rt/j/r1/artifacts/got");
    assert_eq!(
        std::fs::read_to_string(got.join("in/a.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(
        std::fs::read_to_string(got.join("in/renamed.csv")).unwrap(),
        "x,y\n1,2\n"
    );
    assert_eq!(
        std::fs::read_to_string(got.join("in/c.txt")).unwrap(),
        "gamma"
    );
    assert_eq!(names(&got.join("in")), ["a.txt", "c.txt", "renamed.csv"]);
    let dl = step_outputs(&t, "rt", "r1", "get");
    assert_eq!(dl["local_files"].as_array().unwrap().len(), 3);
    assert_eq!(dl["dest_dir"], got.display().to_string());

    // Deleted on the server; listing the now empty directory is SKIPPED (min_count 1).
    assert_eq!(step_outputs(&t, "rt", "r1", "del")["is_deleted"], true);
    assert_eq!(names(&s.root.join(&dir).join("in")), Vec::<String>::new());
    assert_eq!(step_status(&out, "none"), "SKIPPED");
    let none = step_outputs(&t, "rt", "r1", "none");
    assert_eq!(none["has_data"], false);
    assert_eq!(none["count"], 0);
    assert_eq!(none["reason"], "count(0) < min_count(1)");

    let _ = std::fs::remove_dir_all(s.root.join(&dir));
}

#[test]
fn key_auth_uploads_and_a_tree_is_deleted_recursively() {
    let Some(s) = server() else { return };
    let dir = unique("key");
    let resource = s.resource(
        &format!(
            "      pkey_path: \"{}\"\n      known_hosts: \"{}\"\n",
            s.key, s.known_hosts
        ),
        // No session cache: every operation opens and closes its own SSH session.
        ", cache: none",
    );
    let upload = header("key")
        + &resource
        + &jobs(&format!(
            "      - {{id: up, type: sftp_upload_files, inputs: {{resource: files, remote_dir: \"{dir}/a/b\", items: [f.bin]}}}}\n"
        ));
    let payload: String = (0..200_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let t = Test::new()
        .flow(&upload)
        .file("work/key/j/k1/artifacts/f.bin", &payload);
    t.run_args(&["run", "flow.yaml", "--run-id", "k1"])
        .status(0);
    let remote = s.root.join(&dir).join("a/b/f.bin");
    assert_eq!(std::fs::read_to_string(&remote).unwrap(), payload);
    assert_eq!(names(&s.root.join(&dir).join("a/b")), ["f.bin"]);

    t.write(
        "flow.yaml",
        &(header("key")
            + &resource
            + &jobs(&format!(
                r#"      - {{id: top, type: sftp_list_files, inputs: {{resource: files, remote_dir: "{dir}"}}}}
      - {{id: del, type: sftp_delete_files, inputs: {{resource: files, files: ["{dir}/a"], recursive: true}}}}
"#
            ))),
    );
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "k2"]);
    out.status(0);
    // Non-recursive listing includes the matching directory (as the reference does).
    let top = step_outputs(&t, "key", "k2", "top");
    assert_eq!(top["files"][0]["name"], "a");
    assert_eq!(top["files"][0]["is_dir"], true);
    assert_eq!(top["files"][0]["size"], Value::Null);
    assert_eq!(names(&s.root.join(&dir)), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(s.root.join(&dir));
}

#[test]
fn a_wrong_password_is_a_clear_error_that_never_shows_the_password() {
    let Some(s) = server() else { return };
    let flow = header("pw")
        + &s.resource(
            &format!(
                "      password: \"Wr0ng-pass-XYZ\"\n      known_hosts: \"{}\"\n",
                s.known_hosts
            ),
            "",
        )
        + &jobs(
            "      - {id: l, type: sftp_list_files, inputs: {resource: files, remote_dir: .}}\n",
        );
    let t = Test::new().flow(&flow);
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "p1"]);
    out.status(1);
    let err = out.step_error("l");
    assert!(
        err.contains("sftp resource `files`")
            && err.contains(&format!("SSH authentication of user `{}`", s.user))
            && err.contains("failed"),
        "{err}"
    );
    assert!(!out.stderr.contains("Wr0ng-pass-XYZ"), "{}", out.stderr);
    assert!(!out.stdout.contains("Wr0ng-pass-XYZ"));
    let rec = t
        .store()
        .step(&StepKey::new("pw", "p1", "j", "l"))
        .unwrap()
        .unwrap();
    assert!(!rec.error.unwrap_or_default().contains("Wr0ng-pass-XYZ"));
}

#[test]
fn host_keys_are_checked_unless_the_resource_opts_out() {
    let Some(s) = server() else { return };
    let list = jobs("      - {id: l, type: sftp_list_files, inputs: {resource: files, remote_dir: ., min_count: 0}}\n");
    let t = Test::new();
    // An empty known_hosts: the key is unknown.
    t.write("empty_known_hosts", "");
    // A known_hosts with another key for this server: a changed key.
    let other_key = std::fs::read_to_string(format!("{}.pub", s.key)).unwrap();
    let other: Vec<&str> = other_key.split_whitespace().collect();
    t.write(
        "changed_known_hosts",
        &format!("[127.0.0.1]:{} {} {}\n", s.port, other[0], other[1]),
    );
    let run = |name: &str, known_hosts: &str, options: &str| {
        let flow = header(name)
            + &s.resource(
                &format!(
                    "      password: \"{}\"\n      known_hosts: \"{known_hosts}\"\n",
                    s.password
                ),
                options,
            )
            + &list;
        t.write(&format!("{name}.yaml"), &flow);
        t.run_args(&["run", &format!("{name}.yaml"), "--run-id", name])
    };
    let root = t.root().display().to_string();

    let out = run("unknown", &format!("{root}/empty_known_hosts"), "");
    out.status(1);
    let err = out.step_error("l");
    assert!(err.contains("is unknown"), "{err}");
    assert!(
        err.contains("SHA256:") && err.contains("ssh-keyscan"),
        "{err}"
    );
    assert!(
        err.contains("options.host_key_check: false (insecure"),
        "{err}"
    );

    let out = run("changed", &format!("{root}/changed_known_hosts"), "");
    out.status(1);
    assert!(
        out.step_error("l").contains("HOST KEY MISMATCH"),
        "{}",
        out.stderr
    );

    let out = run("missing", &format!("{root}/no/such/known_hosts"), "");
    out.status(1);
    let err = out.step_error("l");
    assert!(
        err.contains("no/such/known_hosts") && err.contains("cannot check the host key"),
        "{err}"
    );

    run(
        "optout",
        &format!("{root}/empty_known_hosts"),
        ", host_key_check: false",
    )
    .status(0);
}

#[test]
fn an_unreachable_server_fails_within_the_timeout() {
    let Some(s) = server() else { return };
    // A port that accepts TCP but never speaks SSH: the handshake must give up.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let flow = header("down")
        + &format!(
            "resources:\n  files:\n    kind: sftp\n    driver: paramiko\n    config: {{host: 127.0.0.1, port: {port}, user: {}, password: \"{}\"}}\n    options: {{timeout: 2}}\n",
            s.user, s.password
        )
        + &jobs("      - {id: l, type: sftp_list_files, inputs: {resource: files, remote_dir: .}}\n");
    let t = Test::new().flow(&flow);
    let started = Instant::now();
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "d1"]);
    out.status(1);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let err = out.step_error("l");
    assert!(
        err.contains(&format!("SSH handshake with 127.0.0.1:{port} failed")),
        "{err}"
    );
    drop(silent);

    // A closed port: refused at once.
    t.write("closed.yaml", &flow);
    let out = t.run_args(&["run", "closed.yaml", "--run-id", "d2"]);
    out.status(1);
    let err = out.step_error("l");
    assert!(
        err.contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn a_rerun_skips_the_items_its_manifest_records() {
    let Some(s) = server() else { return };
    let dir = unique("manifest");
    let flow = header("mf")
        + &s.with_password()
        + &jobs(&format!(
            "      - {{id: up, type: sftp_upload_files, inputs: {{resource: files, remote_dir: \"{dir}\", items: [{{file: one.txt, id: '1'}}, {{file: two.txt, id: '2'}}, {{file: three.txt, id: '3'}}]}}}}\n"
        ));
    let t = Test::new()
        .flow(&flow)
        .file("work/mf/j/m1/artifacts/one.txt", "1")
        .file("work/mf/j/m1/artifacts/two.txt", "2");
    // three.txt is missing: the step fails after uploading two items.
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "m1"]);
    out.status(1);
    let err = out.step_error("up");
    assert!(
        err.contains("upload failed at index=2 (three.txt)")
            && err.contains("relative item paths are resolved against the job artifacts dir"),
        "{err}"
    );
    assert_eq!(names(&s.root.join(&dir)), ["one.txt", "two.txt"]);

    // Remove one.txt on the server: the resumed run must not upload it again.
    std::fs::remove_file(s.root.join(&dir).join("one.txt")).unwrap();
    t.write("work/mf/j/m1/artifacts/three.txt", "3");
    t.run_args(&["run", "flow.yaml", "--run-id", "m1"])
        .status(0);
    assert_eq!(names(&s.root.join(&dir)), ["three.txt", "two.txt"]);
    let up = step_outputs(&t, "mf", "m1", "up");
    assert_eq!(
        (up["count"].as_u64(), up["skipped"].as_u64()),
        (Some(3), Some(2)),
        "{up}"
    );
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(t.path("work/mf/j/m1/manifests/up.manifest.json")).unwrap(),
    )
    .unwrap();
    let ids: Vec<&str> = manifest
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1", "2", "3"]);
    let _ = std::fs::remove_dir_all(s.root.join(&dir));
}

#[test]
fn local_paths_outside_the_workspace_are_refused() {
    let Some(s) = server() else { return };
    let dir = unique("outside");
    let t = Test::new().file("outside/secret.txt", "top secret");
    let flow = header("os")
        + &s.with_password()
        + &format!(
            "jobs:\n  - id: j\n    steps:\n      - {{id: abs, type: sftp_upload_files, inputs: {{resource: files, remote_dir: \"{dir}\", items: [\"{}\"]}}}}\n  - id: k\n    steps:\n      - {{id: link, type: sftp_upload_files, inputs: {{resource: files, remote_dir: \"{dir}\", items: [leak.txt]}}}}\n  - id: d\n    steps:\n      - {{id: esc, type: sftp_download_files, inputs: {{resource: files, dest_dir: got, files: [{{path: x, rel_path: ../../x}}]}}}}\n",
            t.path("outside/secret.txt").display()
        );
    t.write("flow.yaml", &flow);
    // A symlink in job k's artifacts dir pointing out of the workspace: the guest sees the
    // link, the host resolves it and refuses.
    std::fs::create_dir_all(t.path("work/os/k/o1/artifacts")).unwrap();
    std::os::unix::fs::symlink(
        t.path("outside/secret.txt"),
        t.path("work/os/k/o1/artifacts/leak.txt"),
    )
    .unwrap();
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "o1"]);
    out.status(1);
    let abs = out.step_error("abs");
    assert!(abs.contains("Path not under allowed roots"), "{abs}");
    let link = out.step_error("link");
    assert!(link.contains("is outside the job workspace"), "{link}");
    let esc = out.step_error("esc");
    assert_eq!(esc, "dest path escapes dest_dir: ../../x");
    assert!(!s.root.join(&dir).exists());
}

#[test]
fn steps_refuse_a_resource_of_another_kind() {
    let Some(_s) = server() else { return };
    let flow = header("kind")
        + "resources:\n  db: {kind: db, driver: sqlite3, config: {path: \"{ROOT}/x.db\"}}\n"
        + &jobs("      - {id: l, type: sftp_list_files, inputs: {resource: db, remote_dir: .}}\n");
    let t = Test::new().flow(&flow);
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "w1"]);
    out.status(1);
    assert_eq!(
        out.step_error("l"),
        "Resource db is kind=db, requested kind=sftp"
    );
}

#[test]
fn an_unknown_sftp_driver_names_the_loaded_ones() {
    let flow = header("drv")
        + "resources:\n  files: {kind: sftp, driver: nope, config: {host: 127.0.0.1, user: u}}\n"
        + &jobs(
            "      - {id: l, type: sftp_list_files, inputs: {resource: files, remote_dir: .}}\n",
        );
    let t = Test::new().flow(&flow);
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "u1"]);
    out.status(1);
    assert_eq!(
        out.step_error("l"),
        "SFTPListFiles list failed: . False: Unknown connector: sftp:nope. Loaded: ['sftp:ssh', 'sftp:paramiko']"
    );
}

#[test]
fn a_files_resource_not_granted_or_of_another_kind_is_refused() {
    let Some(s) = server() else { return };
    // `other` is a second, working sftp resource the greedy step never names in `resource`.
    let resources = s.with_password();
    let other = resources
        .trim_start_matches("resources:\n")
        .replacen("  files:", "  other:", 1);
    let flow = header("filesgrant")
        + &resources
        + &other
        + "  db: {kind: db, driver: sqlite3, config: {path: \"{ROOT}/x.db\"}}\n"
        + "jobs:\n  - id: greedy\n    steps:\n      - {id: g, type: test_greedy_files, inputs: {resource: files, target: other}}\n  - id: wrong_kind\n    steps:\n      - {id: w, type: test_greedy_files, inputs: {resource: db, target: db}}\n  - id: allowed\n    steps:\n      - {id: a, type: test_greedy_files, inputs: {resource: files, target: files}}\n";
    let t = Test::new().flow(&flow).env(
        "AETHERFLOW_PLUGIN_PATHS",
        aetherflow_test_fixtures::GREEDY_FILES,
    );
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "g1"]);
    out.status(1);
    let status = |step: &str| {
        out.named("step_end")
            .into_iter()
            .find(|e| e["step_id"] == step)
            .unwrap_or_else(|| panic!("no step_end for {step}\n{}", out.stderr))["status"]
            .clone()
    };
    assert_eq!(status("g"), "FAILED");
    assert!(
        out.step_error("g").contains(
            "NotGranted: resource `other` is not granted to step `g`: a step may use only the resources its inputs name"
        ),
        "{}",
        out.step_error("g")
    );
    assert_eq!(status("w"), "FAILED");
    assert!(
        out.step_error("w")
            .contains("WrongKind: Resource db is kind=db, requested kind=sftp"),
        "{}",
        out.step_error("w")
    );
    // The step after the refusals (the next job) still ran, through its own grant.
    assert_eq!(status("a"), "SUCCESS");
    let rec = t
        .store()
        .step(&StepKey::new("filesgrant", "g1", "allowed", "a"))
        .unwrap()
        .expect("step a ran");
    assert!(rec.outputs.unwrap()["entries"].is_u64());
}

/// `config.root` confines a resource to one remote directory: relative paths are taken
/// from it, and a path that resolves outside it (`..`, another absolute path) is refused
/// before anything reaches the server.
#[test]
fn a_resource_root_confines_every_remote_path() {
    let Some(s) = server() else { return };
    let dir = unique("root");
    // Created by the upload itself (as the server's user).
    let root = s.root.join(&dir);
    std::fs::write(s.root.join("outside.txt"), "not for you").unwrap();
    let flow = header("rootc")
        + &s.resource(
            &format!(
                "      password: \"{}\"\n      known_hosts: \"{}\"\n      root: \"{}\"\n",
                s.password,
                s.known_hosts,
                root.display()
            ),
            "",
        )
        + &format!(
            r#"jobs:
  - id: j
    steps:
      - {{id: up, type: sftp_upload_files, inputs: {{resource: files, remote_dir: in/, items: [a.txt]}}}}
      - {{id: ls, type: sftp_list_files, inputs: {{resource: files, remote_dir: in}}}}
  - id: climb
    steps:
      - {{id: climb, type: sftp_list_files, inputs: {{resource: files, remote_dir: ".."}}}}
  - id: abs
    steps:
      - {{id: abs, type: sftp_download_files, inputs: {{resource: files, files: ["{outside}"], dest_dir: got}}}}
"#,
            outside = s.root.join("outside.txt").display()
        );
    let t = Test::new()
        .flow(&flow)
        .file("work/rootc/j/r1/artifacts/a.txt", "inside\n");
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(1);
    // The relative upload landed under the root.
    assert_eq!(
        std::fs::read_to_string(root.join("in/a.txt")).unwrap(),
        "inside\n"
    );
    let ls = step_outputs(&t, "rootc", "r1", "ls");
    assert_eq!(ls["count"], 1, "{ls}");
    let root_s = root.display().to_string();
    for (step, path) in [
        ("climb", "..".to_string()),
        ("abs", s.root.join("outside.txt").display().to_string()),
    ] {
        let e = out.step_error(step);
        assert!(
            e.contains(&format!(
                "remote path `{path}` is outside its root `{root_s}`"
            )),
            "{step}: {e}"
        );
    }
    assert!(!t
        .path("work/rootc/abs/r1/artifacts/got/outside.txt")
        .exists());
}
