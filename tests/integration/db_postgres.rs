//! The postgres `db` connector against a real PostgreSQL server
//! (`scripts/test-servers/postgres.sh`, `AF_TEST_PG_URL`; skipped loudly when missing):
//! typed rows through db_fetch_small / db_extract_stream / db_extract, streaming beyond one
//! batch, execute row counts (through the `test_sql_exec` guest), and the failures a user
//! meets (wrong password, unreachable server, query error, unknown resource, wrong kind,
//! unconvertible column type).

use std::time::{Duration, Instant};

use aetherflow_test_fixtures as fx;
use serde_json::Value;

use crate::harness::{header, server_env, Test};

/// A table name no other test (or earlier run) uses.
fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{}", std::process::id(), n % 1_000_000_000)
}

fn resource(url: &str) -> String {
    format!("resources:\n  pg: {{kind: db, driver: postgres, config: {{url: \"{url}\"}}}}\n")
}

fn show(t: &Test, run: &str) -> Value {
    let out = t.run_args(&["runs", "show", run, "--state", "state.sqlite", "--json"]);
    out.status(0);
    serde_json::from_str(out.stdout.trim()).unwrap()
}

fn outputs(show: &Value, job: &str, step: &str) -> Value {
    crate::harness::report_step(show, job, step)["outputs"].clone()
}

#[test]
fn postgres_types_round_trip_and_execute_counts() {
    let Some(url) = server_env("AF_TEST_PG_URL") else {
        return;
    };
    let table = unique("af_types");
    let flow = header("pgtypes")
        + &resource(&url)
        + &format!(
            r#"jobs:
  - id: j
    steps:
      - id: setup
        type: test_sql_exec
        inputs:
          resource: pg
          statements:
            - "CREATE TABLE {table} (i int PRIMARY KEY, i2 smallint, i8 bigint, f4 real, f8 double precision, num numeric(12,5), big numeric, b boolean, txt text, vc varchar(10), ch char(3), d date, ts timestamp, tz timestamptz, tm time, u uuid, j jsonb, by bytea, nul text)"
            - "INSERT INTO {table} VALUES (1, 32767, 9223372036854775807, 1.1, 0.1, 1234.56780, 123456789012345678901234567890.000000001, true, E'h\u00e9llo\ttab \"q\"', 'vc', 'ab', '2024-02-29', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05+02', '13:14:15', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"k\": [1, 2]}}', '\\x00ff', NULL)"
            - "INSERT INTO {table} (i, f8, num, b, d, ts) VALUES (2, 1e20, -0.00001, false, '1999-12-31', '1999-12-31 23:59:59'), (3, -2.5, 0, NULL, NULL, NULL)"
            - "UPDATE {table} SET txt = 'x' WHERE i >= 2"
            - {{sql: "INSERT INTO {table} (i, txt, d) VALUES ($1, $2, $3)", params: [4, "four", "2020-01-01"]}}
            - {{sql: "DELETE FROM {table} WHERE txt = :txt AND i = :i", params: {{txt: four, i: 4}}}}
      - id: fetch
        type: db_fetch_small
        inputs:
          resource: pg
          sql: "SELECT i, i2, i8, f4, f8, num, big, b, txt, vc, ch, d, ts, tz, tm, u, j, nul FROM {table} WHERE i < :lim ORDER BY i"
          params: {{lim: 10}}
      - id: csv
        type: db_extract_stream
        inputs: {{resource: pg, sql: "SELECT * FROM {table} ORDER BY i", output: types.csv, format: csv, emit_dtypes: true}}
      - id: parquet
        type: db_extract_stream
        inputs: {{resource: pg, sql: "SELECT i, i8, f4, num, b, txt, ch, d, ts, tz, tm, u, nul FROM {table} ORDER BY i", output: types.parquet, format: parquet, emit_dtypes: true}}
      - id: drop
        type: test_sql_exec
        inputs: {{resource: pg, statements: ["DROP TABLE {table}"]}}
"#
        );
    let t = Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PLUGIN_PATHS", fx::SQL_EXEC);
    let run = t.run_args(&["run", "flow.yaml", "--run-id", "p1"]);
    run.status(0);
    let v = show(&t, "p1");
    assert_eq!(
        outputs(&v, "j", "setup")["affected"],
        serde_json::json!([0, 1, 2, 2, 1, 1])
    );
    let fetch = outputs(&v, "j", "fetch");
    assert_eq!(fetch["row_count"], 3);
    assert_eq!(
        fetch["columns_json"],
        r#"["i", "i2", "i8", "f4", "f8", "num", "big", "b", "txt", "vc", "ch", "d", "ts", "tz", "tm", "u", "j", "nul"]"#
    );
    assert_eq!(
        fetch["rows_json"],
        concat!(
            r#"[[1, 32767, 9223372036854775807, 1.1, 0.1, 1234.5678, 1.2345678901234568e+29, true, "héllo\ttab \"q\"", "vc", "ab ", "2024-02-29", "2024-01-02T03:04:05.123456", "2024-01-02T01:04:05+00:00", "13:14:15", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "{\"k\": [1, 2]}", null], "#,
            r#"[2, null, null, null, 1e+20, -1e-05, null, false, "x", null, null, "1999-12-31", "1999-12-31T23:59:59", null, null, null, null, null], "#,
            r#"[3, null, null, null, -2.5, 0.0, null, null, "x", null, null, null, null, null, null, null, null, null]]"#
        )
    );
    assert_eq!(
        fetch["dtypes_json"],
        r#"{"i": "int", "i2": "int", "i8": "int", "f4": "float", "f8": "float", "num": "float", "big": "float", "b": "bool", "txt": "string", "vc": "string", "ch": "string", "d": "date", "ts": "datetime", "tz": "datetime", "tm": "string", "u": "string", "j": "string", "nul": "string"}"#
    );
    // The csv has Python's str() of each value: exact numeric digits, space-separated
    // datetimes, bytes repr.
    let csv = std::fs::read_to_string(t.path("work/pgtypes/j/p1/artifacts/types.csv")).unwrap();
    assert_eq!(
        csv,
        concat!(
            "i,i2,i8,f4,f8,num,big,b,txt,vc,ch,d,ts,tz,tm,u,j,by,nul\n",
            "1,32767,9223372036854775807,1.1,0.1,1234.56780,123456789012345678901234567890.000000001,True,\"héllo\ttab \"\"q\"\"\",vc,ab ,2024-02-29,2024-01-02 03:04:05.123456,2024-01-02 01:04:05+00:00,13:14:15,a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,\"{\"\"k\"\": [1, 2]}\",b'\\x00\\xff',\n",
            "2,,,,1e+20,-0.00001,,False,x,,,1999-12-31,1999-12-31 23:59:59,,,,,,\n",
            "3,,,,-2.5,0.00000,,,x,,,,,,,,,,\n",
        )
    );
    let csv_out = outputs(&v, "j", "csv");
    assert_eq!(csv_out["row_count"], 3);
    assert_eq!(csv_out["dtypes"]["by"], "string");
    assert_eq!(csv_out["dtypes"]["tz"], "datetime");
    // parquet from the typed values: numeric as float64 (with the reference's warning),
    // dates, timestamps in ms (timestamptz as UTC), everything else as strings.
    let pq = outputs(&v, "j", "parquet");
    assert_eq!(pq["row_count"], 3);
    let path = t.path("work/pgtypes/j/p1/artifacts/types.parquet");
    assert_eq!(pq["sha256"], crate::db_parquet::sha256_file(&path));
    let p = crate::db_parquet::read_parquet(&path);
    assert_eq!(
        p.schema,
        [
            "i: INT64",
            "i8: INT64",
            "f4: DOUBLE",
            "num: DOUBLE",
            "b: BOOLEAN",
            "txt: BYTE_ARRAY String",
            "ch: BYTE_ARRAY String",
            "d: INT32 Date",
            "ts: INT64 Timestamp(MILLIS, utc=false)",
            "tz: INT64 Timestamp(MILLIS, utc=false)",
            "tm: BYTE_ARRAY String",
            "u: BYTE_ARRAY String",
            "nul: BYTE_ARRAY String",
        ]
    );
    use parquet::record::Field;
    let s = |v: &str| Field::Str(v.into());
    assert_eq!(
        p.rows,
        [
            vec![
                Field::Long(1),
                Field::Long(i64::MAX),
                Field::Double(1.1),
                Field::Double(1234.5678),
                Field::Bool(true),
                s("héllo\ttab \"q\""),
                s("ab "),
                Field::Date(19782),                    // 2024-02-29
                Field::TimestampMillis(1704164645123), // 2024-01-02 03:04:05.123456
                Field::TimestampMillis(1704157445000), // 2024-01-02 03:04:05+02
                s("13:14:15"),
                s("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                Field::Null,
            ],
            vec![
                Field::Long(2),
                Field::Null,
                Field::Null,
                Field::Double(-0.00001),
                Field::Bool(false),
                s("x"),
                Field::Null,
                Field::Date(10956),                   // 1999-12-31
                Field::TimestampMillis(946684799000), // 1999-12-31 23:59:59
                Field::Null,
                Field::Null,
                Field::Null,
                Field::Null,
            ],
            vec![
                Field::Long(3),
                Field::Null,
                Field::Null,
                Field::Double(0.0),
                Field::Null,
                s("x"),
                Field::Null,
                Field::Null,
                Field::Null,
                Field::Null,
                Field::Null,
                Field::Null,
                Field::Null,
            ],
        ]
    );
    let warnings: Vec<Value> = run
        .named("step_log")
        .into_iter()
        .filter(|e| e["step_id"] == "parquet" && e["level"] == "WARNING")
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]["message"]
            .as_str()
            .unwrap()
            .contains("column \"num\": exact decimals written as float64"),
        "{warnings:?}"
    );
}

#[test]
fn postgres_streams_results_larger_than_one_batch() {
    let Some(url) = server_env("AF_TEST_PG_URL") else {
        return;
    };
    let n = 25_000;
    let flow = header("pgbig")
        + &resource(&url)
        + &format!(
            r#"jobs:
  - id: j
    steps:
      - id: tsv
        type: db_extract_stream
        inputs: {{resource: pg, sql: "SELECT g AS n, md5(g::text) AS h FROM generate_series(1, $1) g", params: [{n}], output: big.tsv, fetch_size: 700}}
      - id: jsonl
        type: db_extract
        inputs: {{resource: pg, sql: "SELECT g AS n FROM generate_series(1, {n}) g", output: big.jsonl, format: jsonl}}
"#
        );
    let t = Test::new().flow(&flow);
    t.run_args(&["run", "flow.yaml", "--run-id", "b1"])
        .status(0);
    let tsv = std::fs::read_to_string(t.path("work/pgbig/j/b1/artifacts/big.tsv")).unwrap();
    let lines: Vec<&str> = tsv.lines().collect();
    assert_eq!(lines.len(), n + 1);
    assert_eq!(lines[0], "n\th");
    assert_eq!(lines[1], "1\tc4ca4238a0b923820dcc509a6f75849b");
    assert!(lines[n].starts_with(&format!("{n}\t")));
    let v = show(&t, "b1");
    let out = outputs(&v, "j", "tsv");
    assert_eq!(out["row_count"], n);
    let jsonl = std::fs::read_to_string(t.path("work/pgbig/j/b1/artifacts/big.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), n);
    assert_eq!(
        jsonl.lines().last(),
        Some(format!("{{\"n\": {n}}}").as_str())
    );
}

#[test]
fn postgres_failures_are_clear_and_name_the_resource() {
    let Some(url) = server_env("AF_TEST_PG_URL") else {
        return;
    };
    // postgres://user:password@host:port/db with another password.
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, hostpart) = rest.split_once('@').unwrap();
    let user = userinfo.split(':').next().unwrap();
    let bad_pw = format!("{scheme}://{user}:wrong@{hostpart}");
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let flow = header("pgerr")
        + &format!(
            r#"resources:
  pg: {{kind: db, driver: postgresql, config: {{url: "{url}"}}}}
  badpw: {{kind: db, driver: postgres, config: {{url: "{bad_pw}"}}}}
  down: {{kind: db, driver: postgres, config: {{host: 127.0.0.1, port: {closed}, user: x, password: y, dbname: z}}, options: {{connect_timeout: 2}}}}
  api: {{kind: rest, driver: httpx, config: {{base_url: "http://127.0.0.1:9"}}}}
jobs:
  - id: a
    steps:
      - {{id: badpw, type: db_extract, inputs: {{resource: badpw, sql: "SELECT 1", output: a.tsv}}}}
  - id: b
    steps:
      - {{id: down, type: db_fetch_small, inputs: {{resource: down, sql: "SELECT 1"}}}}
  - id: c
    steps:
      - {{id: badsql, type: db_extract_stream, inputs: {{resource: pg, sql: "SELECT * FROM no_such_table_af", output: c.tsv}}}}
  - id: d
    steps:
      - {{id: kind, type: db_extract, inputs: {{resource: api, sql: "SELECT 1", output: d.tsv}}}}
  - id: e
    steps:
      - {{id: interval, type: db_fetch_small, inputs: {{resource: pg, sql: "SELECT interval '1 day' AS iv"}}}}
  - id: f
    steps:
      - {{id: qmark, type: db_fetch_small, inputs: {{resource: pg, sql: "SELECT ?::int AS x", params: [1]}}}}
  - id: g
    steps:
      - {{id: missing, type: db_fetch_small, inputs: {{resource: pg, sql: "SELECT :a::int AS x", params: {{b: 1}}}}}}
"#
        );
    let t = Test::new().flow(&flow);
    let start = Instant::now();
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "e1"]);
    out.status(1);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "took {:?}",
        start.elapsed()
    );
    let e = out.step_error("badpw");
    assert!(
        e.contains("db resource 'badpw'") && e.contains("password authentication failed"),
        "{e}"
    );
    assert!(!e.contains("wrong"), "the password leaked: {e}");
    let e = out.step_error("down");
    assert!(
        e.contains("db resource 'down'") && e.contains("cannot connect"),
        "{e}"
    );
    let e = out.step_error("badsql");
    assert!(
        e.contains("db resource 'pg'")
            && e.contains("relation \"no_such_table_af\" does not exist"),
        "{e}"
    );
    let e = out.step_error("kind");
    assert!(e.contains("api"), "{e}");
    let e = out.step_error("interval");
    assert!(
        e.contains("column 'iv' has type interval") && e.contains("::text"),
        "{e}"
    );
    let e = out.step_error("qmark");
    assert!(e.contains("$1, $2"), "{e}");
    let e = out.step_error("missing");
    assert!(e.contains(":a") && e.contains("no key"), "{e}");
    // No partial file for the failed extract.
    assert!(!t.path("work/pgerr/c/e1/artifacts/c.tsv").exists());
}

#[test]
fn postgres_unreachable_host_fails_within_connect_timeout() {
    if server_env("AF_TEST_PG_URL").is_none() {
        return;
    }
    // A loopback port whose connects hang (as a host that drops packets): only the 1 s
    // connect timeout ends the attempt.
    let silent = crate::harness::silent_port();
    let flow = header("pgto")
        + &format!(
            r#"resources:
  far: {{kind: db, driver: postgres, config: {{host: 127.0.0.1, port: {}, user: x, password: y, dbname: z}}, options: {{connect_timeout: 1}}}}
jobs:
  - id: j
    steps:
      - {{id: s, type: db_fetch_small, inputs: {{resource: far, sql: "SELECT 1"}}}}
"#,
            silent.port
        );
    let t = Test::new().flow(flow.as_str());
    let start = Instant::now();
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "t1"]);
    out.status(1);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "failed before the connect timeout: {:?}",
        start.elapsed()
    );
    let e = out.step_error("s");
    assert!(
        e.contains("db resource 'far'") && e.contains("cannot connect"),
        "{e}"
    );
}

/// TLS against the test server (`ssl=on` with a certificate of the test CA): `sslmode` and
/// `sslrootcert` from `options` or from the query of `config.url`, what `pg_stat_ssl` says
/// about the session, and the certificate failures a user meets.
#[test]
fn postgres_tls_sslmode_and_sslrootcert() {
    let (Some(url), Some(ca), Some(other_ca)) = (
        server_env("AF_TEST_PG_URL"),
        server_env("AF_TEST_CA_PEM"),
        server_env("AF_TEST_OTHER_CA_PEM"),
    ) else {
        return;
    };
    let resources = [
        // verify-full with the CA, in the URL.
        (
            "full",
            format!("{{url: \"{url}?sslmode=verify-full&sslrootcert={ca}\"}}"),
        ),
        // verify-ca with the CA, as options.
        (
            "verca",
            format!("{{url: \"{url}\"}}, options: {{sslmode: verify-ca, sslrootcert: \"{ca}\"}}"),
        ),
        // require without a CA: encrypted, the certificate is not checked.
        (
            "req",
            format!("{{url: \"{url}\"}}, options: {{sslmode: require}}"),
        ),
        // libpq's default, prefer: TLS, since the server offers it.
        ("pref", format!("{{url: \"{url}\"}}")),
        ("plain", format!("{{url: \"{url}?sslmode=disable\"}}")),
        // verify-full without a CA: refused before connecting.
        (
            "noca",
            format!("{{url: \"{url}\"}}, options: {{sslmode: verify-full}}"),
        ),
        // verify-full with a CA that did not sign the server's certificate.
        (
            "wrongca",
            format!("{{url: \"{url}?sslmode=verify-full&sslrootcert={other_ca}\"}}"),
        ),
        // the public roots do not know the test CA either.
        (
            "system",
            format!("{{url: \"{url}\"}}, options: {{sslmode: verify-full, sslrootcert: system}}"),
        ),
        ("badmode", format!("{{url: \"{url}?sslmode=verify\"}}")),
    ];
    let mut flow = header("pgtls") + "resources:\n";
    for (name, r) in &resources {
        flow.push_str(&format!(
            "  {name}: {{kind: db, driver: postgres, config: {r}}}\n"
        ));
    }
    flow.push_str("jobs:\n");
    for (name, _) in &resources {
        flow.push_str(&format!(
            "  - id: {name}\n    steps:\n      - {{id: {name}, type: db_fetch_small, inputs: {{resource: {name}, sql: \"SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()\"}}}}\n"
        ));
    }
    // HOME without `.postgresql/root.crt`, so libpq's default root certificate plays no part.
    let home = tempfile::tempdir().unwrap();
    let t = Test::new()
        .flow(&flow)
        .env("HOME", home.path().display().to_string());
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "t1"]);
    out.status(1);
    let v = show(&t, "t1");
    for name in ["full", "verca", "req", "pref"] {
        let rows = outputs(&v, name, name)["rows_json"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            rows.starts_with("[[true, \"TLSv1."),
            "{name}: {rows}\n{}",
            out.step_error(name)
        );
    }
    assert_eq!(
        outputs(&v, "plain", "plain")["rows_json"],
        "[[false, null]]"
    );

    let e = out.step_error("noca");
    assert!(
        e.contains("db resource 'noca': sslmode=verify-full checks the server's certificate, so it needs the certificate of the CA that signed it: set sslrootcert to that CA's PEM file (options.sslmode / options.sslrootcert, or ?sslmode=...&sslrootcert=... in config.url), or sslrootcert=system to trust the public CAs; or use sslmode=require"),
        "{e}"
    );
    let e = out.step_error("wrongca");
    assert!(
        e.contains("db resource 'wrongca' (postgres aetherflow@127.0.0.1:")
            && e.contains(&format!(
                "cannot connect: TLS certificate check failed (sslmode=verify-full): the server's certificate is not signed by a trusted certificate authority (unknown issuer); check that sslrootcert (`{other_ca}`) holds the certificate of the CA that signed the server's certificate, or use sslmode=require"
            )),
        "{e}"
    );
    let e = out.step_error("system");
    assert!(
        e.contains("db resource 'system'")
            && e.contains("(unknown issuer); set sslrootcert to the PEM file of the CA"),
        "{e}"
    );
    let e = out.step_error("badmode");
    assert!(
        e.contains("db resource 'badmode': sslmode must be disable, prefer, require, verify-ca or verify-full, got \"verify\""),
        "{e}"
    );
    // No secret in any message.
    let password = url.split(':').nth(2).unwrap().split('@').next().unwrap();
    assert!(!out.stderr.contains(password));
}

/// A statement or query still running on the server at the step's deadline is cancelled
/// there, and the step fails as timed out at its deadline; the next step's statements run.
#[test]
fn postgres_calls_end_at_the_step_deadline() {
    let Some(url) = server_env("AF_TEST_PG_URL") else {
        return;
    };
    let flow = header("pgslow")
        + &resource(&url)
        + r#"jobs:
  - id: q
    steps:
      - {id: query, type: db_fetch_small, inputs: {resource: pg, sql: "SELECT pg_sleep(60)::text"}, timeout_seconds: 1}
  - id: x
    steps:
      - {id: exec, type: test_sql_exec, inputs: {resource: pg, statements: ["SELECT pg_sleep(60)"]}, timeout_seconds: 1}
  - id: after
    steps:
      - {id: ok, type: test_sql_exec, inputs: {resource: pg, statements: ["SELECT 1"]}}
"#;
    let t = Test::new()
        .flow(&flow)
        .env("AETHERFLOW_PLUGIN_PATHS", fx::SQL_EXEC);
    let started = Instant::now();
    let run = t.run_args(&["run", "flow.yaml", "--run-id", "p9"]);
    run.status(1);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let v = show(&t, "p9");
    for (job, step) in [("q", "query"), ("x", "exec")] {
        assert_eq!(
            crate::harness::report_step(&v, job, step)["error"],
            format!("step {step} timed out after 1s"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(
        crate::harness::report_step(&v, "after", "ok")["status"],
        "SUCCESS"
    );
}
