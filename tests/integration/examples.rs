//! Every flow in examples/ runs end to end (from the repository root, as the README says).

use std::path::PathBuf;

use aetherflow_test_fixtures as fx;

use crate::harness::{Outcome, Test};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run_example(t: &Test, flow: &str, extra_env: &[(&str, &str)]) -> Outcome {
    let mut cmd = t.command(&["run", flow]);
    cmd.current_dir(repo_root())
        .env("AETHERFLOW_EXAMPLE_DIR", t.root());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    Outcome::from(cmd.output().unwrap())
}

#[test]
fn example_quickstart() {
    let t = Test::new();
    let out = run_example(&t, "examples/quickstart/flow.yaml", &[]);
    out.status(0);
    let published = std::fs::read_to_string(t.path("published-sales.tsv")).unwrap();
    assert_eq!(
        published,
        "id\tregion\tamount\tsold_on\n1\tnorth\t120.5\t2026-01-03\n2\tsouth\t80.0\t2026-01-04\n3\teast\t42.25\t2026-01-04\n4\tnorth\t17.0\t2026-01-05\n5\twest\t\t2026-01-06\n6\tZürich\t3.5\t\n"
    );
    let run_id = out.run_id();
    let totals = std::fs::read_to_string(t.path(&format!(
        "work/quickstart/extract/{run_id}/artifacts/out/totals.jsonl"
    )))
    .unwrap();
    assert_eq!(
        totals,
        "{\"region\": \"Zürich\", \"total\": 3.5}\n{\"region\": \"east\", \"total\": 42.25}\n{\"region\": \"north\", \"total\": 137.5}\n{\"region\": \"south\", \"total\": 80.0}\n"
    );
    let counted = out.named("external_process_stdout");
    assert!(
        counted[0]["message"].as_str().unwrap().starts_with("7 "),
        "{counted:?}"
    );
}

#[test]
fn example_plugin_greet() {
    let t = Test::new();
    let out = run_example(
        &t,
        "examples/plugin-greet/flow.yaml",
        &[("AETHERFLOW_PLUGIN_PATHS", fx::GREET)],
    );
    out.status(0);
    let lines: Vec<String> = out
        .named("external_process_stdout")
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(lines, ["Hello, Ada!", "Hello, Grace!", "Hello, Linus!"]);
    let log = out.named("step_log");
    assert_eq!(
        log[0]["message"],
        format!("greeted 3 people in run {}", out.run_id())
    );
}

/// examples/chain against the real test servers: Postgres -> csv and parquet, HTTP -> json,
/// zip with a password, SFTP upload and listing, mail. Each server is checked for what it
/// received.
#[test]
fn example_chain_against_the_test_servers() {
    let (Some(pg), Some(http_log), Some(sftp_root), Some(smtp_dir)) = (
        crate::harness::server_env("AF_TEST_PG_URL"),
        crate::harness::server_env("AF_TEST_HTTP_LOG"),
        crate::harness::server_env("AF_TEST_SFTP_ROOT"),
        crate::harness::server_env("AF_TEST_SMTP_DIR"),
    ) else {
        return;
    };
    let t = Test::new();
    // Load examples/chain/seed.sql through the test guest that runs statements.
    let seed = std::fs::read_to_string(repo_root().join("examples/chain/seed.sql")).unwrap();
    let statements: Vec<String> = seed
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .split(';')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let seed_flow = crate::harness::header("chainseed")
        + &format!(
            "resources:\n  pg: {{kind: db, driver: postgres, config: {{url: \"{pg}\"}}}}\njobs:\n  - id: j\n    steps:\n      - id: seed\n        type: test_sql_exec\n        inputs: {{resource: pg, statements: {}}}\n",
            serde_json::to_string(&statements).unwrap()
        );
    t.write("seed.yaml", &seed_flow);
    let mut seed_cmd = t.command(&["run", "seed.yaml"]);
    seed_cmd.env("AETHERFLOW_PLUGIN_PATHS", fx::SQL_EXEC);
    Outcome::from(seed_cmd.output().unwrap()).status(0);

    let requests_before = std::fs::read_to_string(&http_log).unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let run_id = format!("chain-{}-{nanos}", std::process::id());
    let mut cmd = t.command(&["run", "examples/chain/flow.yaml", "--run-id", &run_id]);
    cmd.current_dir(repo_root())
        .env("AETHERFLOW_EXAMPLE_DIR", t.root())
        .env("CHAIN_ZIP_PASSWORD", "zip-secret-for-the-chain");
    let out = Outcome::from(cmd.output().unwrap());
    out.status(0);

    // Postgres: the csv the extract wrote.
    let artifacts = t.path(&format!("work/chain/report/{run_id}/artifacts"));
    assert_eq!(
        std::fs::read_to_string(artifacts.join("out/sales.csv")).unwrap(),
        "id,region,amount,sold_on\n1,north,120.50,2026-01-03\n2,south,80.00,2026-01-04\n3,east,42.25,2026-01-04\n4,north,17.00,2026-01-05\n5,west,,2026-01-06\n6,Zürich,3.50,\n"
    );
    // Postgres: the parquet, typed (numeric as float64, date as DATE), read back.
    let parquet = artifacts.join("out/sales.parquet");
    let p = crate::db_parquet::read_parquet(&parquet);
    assert_eq!(
        p.schema,
        [
            "id: INT64",
            "region: BYTE_ARRAY String",
            "amount: DOUBLE",
            "sold_on: INT32 Date"
        ]
    );
    {
        use parquet::record::Field::{Date, Double, Long, Null, Str};
        let row = |id, region: &str, amount, day| vec![Long(id), Str(region.into()), amount, day];
        assert_eq!(
            p.rows,
            [
                row(1, "north", Double(120.5), Date(20456)), // 2026-01-03
                row(2, "south", Double(80.0), Date(20457)),
                row(3, "east", Double(42.25), Date(20457)),
                row(4, "north", Double(17.0), Date(20458)),
                row(5, "west", Null, Date(20459)),
                row(6, "Zürich", Double(3.5), Null),
            ]
        );
    }
    let parquet_sha = crate::db_parquet::sha256_file(&parquet);
    // HTTP: one more GET of the targets, and the body saved as is.
    let requests_after = std::fs::read_to_string(&http_log).unwrap();
    let count = |s: &str| s.matches("\"path\": \"/api/targets.json\"").count();
    assert_eq!(count(&requests_after), count(&requests_before) + 1);
    assert_eq!(
        std::fs::read(artifacts.join("out/targets.json")).unwrap(),
        std::fs::read(repo_root().join("tests/fixtures/http-root/api/targets.json")).unwrap()
    );
    // SFTP: the server holds the archive, byte for byte the one the zip step wrote, with
    // both files in it, encrypted.
    let remote = std::path::Path::new(&sftp_root).join(format!("reports/{run_id}/report.zip"));
    let uploaded = std::fs::read(&remote).unwrap();
    assert_eq!(
        uploaded,
        std::fs::read(artifacts.join("report.zip")).unwrap()
    );
    let listing = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); print(sorted((i.filename, bool(i.flag_bits & 1)) for i in z.infolist()))",
        ])
        .arg(&remote)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout).trim(),
        "[('sales.csv', True), ('sales.parquet', True), ('targets.json', True)]"
    );
    // SMTP: the summary, with the figures of the earlier steps.
    let subject = format!("Sales report {run_id}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let message = loop {
        let found = std::fs::read_dir(&smtp_dir)
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .find(|m| m.contains(&subject));
        if let Some(m) = found {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no mail with {subject}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let message: serde_json::Value = serde_json::from_str(&message).unwrap();
    assert_eq!(
        message["rcpt_tos"],
        serde_json::json!(["ops@example.invalid"])
    );
    // The text as a mail reader shows it (the transfer encoding may wrap long lines).
    let body = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, email, email.policy; m = email.message_from_string(sys.stdin.read(), policy=email.policy.default); print(m.get_body(('plain',)).get_content())",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(message["data"].as_str().unwrap().as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let body = String::from_utf8_lossy(&body.stdout);
    assert!(
        body.contains("6 rows extracted (csv sha256 ")
            && body.contains(&format!("parquet sha256 {parquet_sha})"))
            && body.contains(&format!("1 file(s) uploaded to reports/{run_id}.")),
        "{body}"
    );
}
