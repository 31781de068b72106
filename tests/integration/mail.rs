//! The `mail` connector (SMTP) and the `mail_send` step against a real SMTP server
//! (`scripts/test-servers/smtp.sh`): what the server received, auth, refusals, timeouts,
//! grants, and that the password never shows.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{header, server_env, Test};

struct Smtp {
    host: String,
    port: String,
    user: String,
    password: String,
    dir: PathBuf,
}

fn smtp() -> Option<Smtp> {
    Some(Smtp {
        host: server_env("AF_TEST_SMTP_HOST")?,
        port: server_env("AF_TEST_SMTP_PORT")?,
        user: server_env("AF_TEST_SMTP_USER")?,
        password: server_env("AF_TEST_SMTP_PASSWORD")?,
        dir: PathBuf::from(server_env("AF_TEST_SMTP_DIR")?),
    })
}

/// A flow `id` with a `mailer` resource (credentials from env) and one job `j` whose steps
/// are `steps` (YAML list items, indented by 6).
fn flow(id: &str, steps: &str) -> String {
    header(id)
        + "resources:\n  mailer:\n    kind: mail\n    driver: smtp\n    config:\n      host: \"{{env.SMTP_HOST}}\"\n      port: \"{{env.SMTP_PORT}}\"\n      username: \"{{env.SMTP_USER}}\"\n      password: \"{{env.SMTP_PASSWORD}}\"\n      from_addr: robot@aetherflow.test\n    options:\n      timeout: 5\n  db:\n    kind: db\n    driver: sqlite3\n    config: {path: \"{ROOT}/x.db\"}\n"
        + "jobs:\n  - id: j\n    steps:\n"
        + steps
}

fn test(s: &Smtp, yaml: &str) -> Test {
    Test::new()
        .flow(yaml)
        .env("SMTP_HOST", &s.host)
        .env("SMTP_PORT", &s.port)
        .env("SMTP_USER", &s.user)
        .env("SMTP_PASSWORD", &s.password)
}

/// The messages the server stored whose raw data contains `marker`.
fn received(dir: &Path, marker: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut found = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
                if v["data"].as_str().unwrap_or_default().contains(marker) {
                    found.push(v);
                }
            }
        }
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A marker unique to this test run, for the subject.
fn marker(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

fn step_end(out: &crate::harness::Outcome, step: &str) -> Value {
    out.named("step_end")
        .into_iter()
        .find(|e| e["step_id"] == step)
        .unwrap_or_else(|| panic!("no step_end for {step}: {}", out.stderr))
}

#[test]
fn plaintext_mail_reaches_the_server_with_auth() {
    let Some(s) = smtp() else { return };
    let m = marker("plain");
    let t = test(
        &s,
        &flow(
            "mail1",
            &format!("      - {{id: m, type: mail_send, inputs: {{resource: mailer, to: ops@example.org, subject: \"{m}\", body: \"Hello from AetherFlow\"}}}}\n"),
        ),
    );
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(0);
    let got = received(&s.dir, &m);
    assert_eq!(got.len(), 1, "{got:?}");
    let msg = &got[0];
    assert_eq!(msg["mail_from"], "robot@aetherflow.test");
    assert_eq!(msg["rcpt_tos"], serde_json::json!(["ops@example.org"]));
    let data = msg["data"].as_str().unwrap();
    assert!(data.contains("From: robot@aetherflow.test"), "{data}");
    assert!(data.contains("To: ops@example.org"), "{data}");
    assert!(data.contains("Content-Type: text/plain"), "{data}");
    assert!(data.contains("Hello from AetherFlow"), "{data}");
    assert!(!data.contains("multipart"), "{data}");
    let end = step_end(&out, "m");
    assert_eq!(end["status"], "SUCCESS", "{end}");
    // The password is in no event and nowhere in the state store.
    assert!(!out.stderr.contains(&s.password) && !out.stdout.contains(&s.password));
    let state = std::fs::read(t.path("state.sqlite")).unwrap();
    assert!(!String::from_utf8_lossy(&state).contains(&s.password));
    let show = t.run_args(&["runs", "show", "r1", "--flow-yaml", "flow.yaml"]);
    assert!(
        show.stdout.contains("\"sent\"") || show.stdout.contains("sent"),
        "{}",
        show.stdout
    );
    assert!(!show.stdout.contains(&s.password));
}

#[test]
fn html_with_text_alternative_cc_bcc_and_attachment() {
    let Some(s) = smtp() else { return };
    let m = marker("html");
    let t = test(
        &s,
        &flow(
            "mail2",
            &format!(
                "      - id: m\n        type: mail_send\n        inputs:\n          resource: mailer\n          to: [a@example.org, b@example.org]\n          cc: c@example.org\n          bcc: [hidden@example.org]\n          subject: \"{m}\"\n          html: true\n          body: \"<p>Report <b>ready</b></p>\"\n          text: \"Report ready (text)\"\n          from_addr: reports@aetherflow.test\n          attachments: [out/report.bin]\n"
            ),
        ),
    );
    // A binary attachment with every byte value, in the run's artifacts dir.
    let bytes: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
    let art = t.path("work/mail2/j/r1/artifacts/out");
    std::fs::create_dir_all(&art).unwrap();
    std::fs::write(art.join("report.bin"), &bytes).unwrap();
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(0);
    let got = received(&s.dir, &m);
    assert_eq!(got.len(), 1, "{got:?}");
    let msg = &got[0];
    assert_eq!(msg["mail_from"], "reports@aetherflow.test");
    assert_eq!(
        msg["rcpt_tos"],
        serde_json::json!([
            "a@example.org",
            "b@example.org",
            "c@example.org",
            "hidden@example.org"
        ])
    );
    let data = msg["data"].as_str().unwrap();
    assert!(data.contains("To: a@example.org, b@example.org"), "{data}");
    assert!(data.contains("Cc: c@example.org"), "{data}");
    assert!(
        !data.contains("hidden@example.org"),
        "bcc leaked into the message: {data}"
    );
    assert!(!data.to_ascii_lowercase().contains("\nbcc:"), "{data}");
    assert!(data.contains("multipart/mixed"), "{data}");
    assert!(data.contains("multipart/alternative"), "{data}");
    assert!(data.contains("Content-Type: text/plain"), "{data}");
    assert!(data.contains("Content-Type: text/html"), "{data}");
    assert!(data.contains("Report ready (text)"), "{data}");
    assert!(data.contains("<b>ready</b>"), "{data}");
    // The attachment decodes to the very bytes of the file.
    let parsed = decode_attachment(data, "report.bin");
    assert_eq!(parsed, bytes);
    let end = step_end(&out, "m");
    assert_eq!(end["status"], "SUCCESS", "{end}");
}

/// The base64 body of the MIME part whose headers name `filename`.
fn decode_attachment(data: &str, filename: &str) -> Vec<u8> {
    let data = data.replace("\r\n", "\n");
    let at = data
        .find(&format!("filename=\"{filename}\""))
        .unwrap_or_else(|| panic!("no attachment {filename}: {data}"));
    let rest = &data[at..];
    let body_start = rest.find("\n\n").unwrap() + 2;
    let body = &rest[body_start..];
    let end = body.find("\n--").unwrap();
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64_decode(&b64)
}

fn base64_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = A.iter().position(|a| *a == c).expect("base64") as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn a_wrong_password_is_an_auth_failure_and_stays_secret() {
    let Some(s) = smtp() else { return };
    let m = marker("badpw");
    let wrong = "wrong-Pa55word-zz9";
    let t = test(
        &s,
        &flow(
            "mail3",
            &format!("      - {{id: m, type: mail_send, inputs: {{resource: mailer, to: ops@example.org, subject: \"{m}\", body: x}}}}\n"),
        ),
    )
    .env("SMTP_PASSWORD", wrong);
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(1);
    let end = step_end(&out, "m");
    assert_eq!(end["status"], "FAILED");
    let err = end["error"].as_str().unwrap();
    assert!(err.contains("mail error (auth)"), "{err}");
    assert!(
        err.contains("SMTP send failed after 1 attempt(s): SMTP login failed"),
        "{err}"
    );
    assert!(err.contains("535"), "{err}");
    assert!(err.contains("mail_send step m (resource mailer)"), "{err}");
    assert!(!out.stderr.contains(wrong) && !out.stdout.contains(wrong));
    let state = std::fs::read(t.path("state.sqlite")).unwrap();
    assert!(!String::from_utf8_lossy(&state).contains(wrong));
    assert!(received(&s.dir, &m).is_empty());
}

#[test]
fn a_refused_recipient_is_rejected() {
    let Some(s) = smtp() else { return };
    let m = marker("rej");
    let t = test(
        &s,
        &flow(
            "mail4",
            &format!("      - {{id: m, type: mail_send, inputs: {{resource: mailer, to: [ok@example.org, reject-me@example.org], subject: \"{m}\", body: x}}}}\n"),
        ),
    );
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(1);
    let err = step_end(&out, "m")["error"].as_str().unwrap().to_string();
    assert!(err.contains("mail error (rejected)"), "{err}");
    assert!(err.contains("550"), "{err}");
}

#[test]
fn an_unreachable_server_fails_within_the_timeout_after_retries() {
    let Some(s) = smtp() else { return };
    // A port nobody listens on: bind one, then close it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let yaml = flow(
        "mail5",
        "      - {id: m, type: mail_send, inputs: {resource: mailer, to: ops@example.org, subject: s, body: x}}\n",
    )
    .replace("timeout: 5\n", "timeout: 2\n      retry: {max_attempts: 2}\n");
    let t = test(&s, &yaml).env("SMTP_PORT", port.to_string());
    let started = Instant::now();
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(1);
    // Two attempts with a 1 s pause; each refused at once (nothing listens).
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let err = step_end(&out, "m")["error"].as_str().unwrap().to_string();
    assert!(err.contains("mail error (connection)"), "{err}");
    assert!(err.contains("SMTP send failed after 2 attempt(s)"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn a_silent_server_times_out() {
    let Some(s) = smtp() else { return };
    // A listener that accepts and never answers the greeting.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().take(1) {
            held.push(c);
            std::thread::sleep(Duration::from_secs(8));
        }
    });
    let yaml = flow(
        "mail6",
        "      - {id: m, type: mail_send, inputs: {resource: mailer, to: ops@example.org, subject: s, body: x}}\n",
    )
    .replace("timeout: 5\n", "timeout: 1\n");
    let t = test(&s, &yaml).env("SMTP_PORT", port.to_string());
    let started = Instant::now();
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(1);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let err = step_end(&out, "m")["error"].as_str().unwrap().to_string();
    assert!(err.contains("mail error (connection)"), "{err}");
    assert!(err.contains("timed out"), "{err}");
    drop(keep);
}

#[test]
fn wrong_kind_and_missing_host_are_clear() {
    let Some(s) = smtp() else { return };
    let t = test(
        &s,
        &flow(
            "mail7",
            "      - {id: m, type: mail_send, inputs: {resource: db, to: ops@example.org, subject: s, body: x}}\n",
        ),
    );
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    let end = step_end(&out, "m");
    assert_eq!(end["status"], "FAILED", "{end}");
    let err = end["error"].as_str().unwrap();
    assert!(err.contains("kind=db, requested kind=mail"), "{err}");

    let yaml = flow(
        "mail8",
        "      - {id: m, type: mail_send, inputs: {resource: mailer, to: ops@example.org, subject: s, body: x}}\n",
    )
    .replace("      host: \"{{env.SMTP_HOST}}\"\n", "");
    let t = test(&s, &yaml);
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    let err = step_end(&out, "m")["error"].as_str().unwrap().to_string();
    assert!(err.contains("mail.smtp requires config.host"), "{err}");
}

#[test]
fn an_attachment_outside_the_workspace_is_refused() {
    let Some(s) = smtp() else { return };
    let t = test(
        &s,
        &flow(
            "mail9",
            "      - {id: m, type: mail_send, inputs: {resource: mailer, to: ops@example.org, subject: s, body: x, attachments: /etc/hostname}}\n",
        ),
    );
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(1);
    let err = step_end(&out, "m")["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("Path not under allowed roots: /etc/hostname"),
        "{err}"
    );
}

/// The TLS ports of the test server (`AF_TEST_SMTP_STARTTLS_PORT` requires STARTTLS,
/// `AF_TEST_SMTP_TLS_PORT` is implicit TLS), with the test CA and a CA that signed nothing.
struct TlsServer {
    s: Smtp,
    starttls_port: String,
    tls_port: String,
    ca: String,
    other_ca: String,
}

fn tls_server() -> Option<TlsServer> {
    Some(TlsServer {
        s: smtp()?,
        starttls_port: server_env("AF_TEST_SMTP_STARTTLS_PORT")?,
        tls_port: server_env("AF_TEST_SMTP_TLS_PORT")?,
        ca: server_env("AF_TEST_CA_PEM")?,
        other_ca: server_env("AF_TEST_OTHER_CA_PEM")?,
    })
}

/// A mail resource `name` on `port` with credentials from env; `tls` and `options` are YAML
/// flow-mapping entries (`starttls: true`, `ca_bundle: ...`).
fn tls_resource(name: &str, port: &str, tls: &str, options: &str) -> String {
    format!(
        "  {name}: {{kind: mail, driver: smtp, config: {{host: 127.0.0.1, port: {port}, username: \"{{{{env.SMTP_USER}}}}\", password: \"{{{{env.SMTP_PASSWORD}}}}\", from_addr: robot@aetherflow.test, {tls}}}, options: {{timeout: 5, {options}}}}}\n"
    )
}

/// A flow with `resources` and one job per `(resource, subject)`, so one failure does not
/// stop the others; job `jN`, step `mN`.
fn tls_flow(id: &str, resources: &str, sends: &[(&str, &str)]) -> String {
    let mut f = header(id) + "resources:\n" + resources + "jobs:\n";
    for (i, (resource, subject)) in sends.iter().enumerate() {
        f.push_str(&format!(
            "  - id: j{i}\n    steps:\n      - {{id: m{i}, type: mail_send, inputs: {{resource: {resource}, to: ops@example.org, subject: \"{subject}\", body: over TLS}}}}\n"
        ));
    }
    f
}

#[test]
fn starttls_and_implicit_tls_with_the_private_ca_deliver() {
    let Some(ts) = tls_server() else { return };
    let ca = format!("ca_bundle: \"{}\"", ts.ca);
    let resources = tls_resource("starttls", &ts.starttls_port, "starttls: true", &ca)
        + &tls_resource("smtps", &ts.tls_port, "tls: true", &ca)
        + &tls_resource(
            "insecure",
            &ts.starttls_port,
            "starttls: true",
            "verify_ssl: false",
        );
    let (m0, m1, m2) = (marker("starttls"), marker("smtps"), marker("insecure"));
    let t = test(
        &ts.s,
        &tls_flow(
            "mailtls",
            &resources,
            &[("starttls", &m0), ("smtps", &m1), ("insecure", &m2)],
        ),
    );
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(0);
    for m in [&m0, &m1, &m2] {
        let got = received(&ts.s.dir, m);
        assert_eq!(got.len(), 1, "{m}: {got:?}");
        // The server stored the TLS version the message came over.
        let tls = got[0]["tls"].as_str().unwrap_or_default();
        assert!(tls.starts_with("TLSv1."), "{m}: {}", got[0]);
        assert_eq!(got[0]["rcpt_tos"], serde_json::json!(["ops@example.org"]));
        assert!(got[0]["data"].as_str().unwrap().contains("over TLS"));
    }
    assert!(!out.stderr.contains(&ts.s.password));
}

#[test]
fn tls_with_an_unknown_ca_is_a_clear_certificate_error() {
    let Some(ts) = tls_server() else { return };
    let other = format!("ca_bundle: \"{}\"", ts.other_ca);
    let resources = tls_resource("noca", &ts.starttls_port, "starttls: true", "")
        + &tls_resource("wrongca", &ts.tls_port, "tls: true", &other)
        + &tls_resource("plain", &ts.starttls_port, "starttls: false", "");
    let (m0, m1, m2) = (marker("noca"), marker("wrongca"), marker("plain"));
    let t = test(
        &ts.s,
        &tls_flow(
            "mailbadca",
            &resources,
            &[("noca", &m0), ("wrongca", &m1), ("plain", &m2)],
        ),
    );
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(1);
    let port = &ts.starttls_port;
    let e = step_end(&out, "m0")["error"].as_str().unwrap().to_string();
    assert!(
        e.contains(&format!(
            "SMTP send failed after 1 attempt(s): SMTP STARTTLS failed (mail resource `noca`, 127.0.0.1:{port}): the server's certificate is not signed by a trusted certificate authority (unknown issuer)"
        )),
        "{e}"
    );
    assert!(
        e.contains("set options.ca_bundle to that CA's certificate (a PEM file), or set options.verify_ssl: false"),
        "{e}"
    );
    let e = step_end(&out, "m1")["error"].as_str().unwrap().to_string();
    assert!(
        e.contains(&format!(
            "SMTP TLS failed (mail resource `wrongca`, 127.0.0.1:{}): the server's certificate is not signed by a trusted certificate authority (unknown issuer)",
            ts.tls_port
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "Check that options.ca_bundle (`{}`) holds the certificate of the CA that signed the server's certificate",
            ts.other_ca
        )),
        "{e}"
    );
    // A plain session to the port that requires STARTTLS is refused by the server.
    let e = step_end(&out, "m2")["error"].as_str().unwrap().to_string();
    assert!(e.contains("mail resource `plain`"), "{e}");
    for m in [&m0, &m1, &m2] {
        assert!(received(&ts.s.dir, m).is_empty(), "{m} was delivered");
    }
}

#[test]
fn tls_option_errors_name_the_resource_and_the_fix() {
    let Some(ts) = tls_server() else { return };
    let resources = tls_resource(
        "missing",
        &ts.starttls_port,
        "starttls: true",
        "ca_bundle: /nonexistent/ca.pem",
    ) + &tls_resource(
        "both",
        &ts.starttls_port,
        "starttls: true",
        &format!("ca_bundle: \"{}\", verify_ssl: false", ts.ca),
    ) + &tls_resource(
        "cleartext",
        &ts.s.port,
        "starttls: false",
        &format!("ca_bundle: \"{}\"", ts.ca),
    );
    let t = test(
        &ts.s,
        &tls_flow(
            "mailopts",
            &resources,
            &[("missing", "a"), ("both", "b"), ("cleartext", "c")],
        ),
    );
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(1);
    let e = step_end(&out, "m0")["error"].as_str().unwrap().to_string();
    assert!(
        e.contains("mail resource `missing`: options.ca_bundle: cannot read the CA file `/nonexistent/ca.pem`"),
        "{e}"
    );
    let e = step_end(&out, "m1")["error"].as_str().unwrap().to_string();
    assert!(
        e.contains("mail resource `both`: options.ca_bundle and options.verify_ssl: false exclude each other"),
        "{e}"
    );
    let e = step_end(&out, "m2")["error"].as_str().unwrap().to_string();
    assert!(
        e.contains("mail resource `cleartext`: options.ca_bundle is set but the connection is not encrypted: set config.starttls: true"),
        "{e}"
    );
}

#[test]
fn a_mail_resource_not_granted_or_of_another_kind_is_refused() {
    let Some(s) = smtp() else { return };
    let (granted, stolen, wrong) = (marker("granted"), marker("stolen"), marker("wrong"));
    let yaml = flow("mailgrant", "      - {id: first, type: mail_send, inputs: {resource: mailer, to: ops@example.org, subject: warmup, body: x}}\n")
        .replace(
            "  db:\n",
            "  other: {kind: mail, driver: smtp, config: {host: \"{{env.SMTP_HOST}}\", port: \"{{env.SMTP_PORT}}\", username: \"{{env.SMTP_USER}}\", password: \"{{env.SMTP_PASSWORD}}\", from_addr: other@aetherflow.test}}\n  db:\n",
        )
        + &format!(
            "  - id: greedy\n    steps:\n      - {{id: g, type: test_greedy_mail, inputs: {{resource: mailer, target: other, to: ops@example.org, subject: \"{stolen}\"}}}}\n  - id: wrong_kind\n    steps:\n      - {{id: w, type: test_greedy_mail, inputs: {{resource: db, target: db, to: ops@example.org, subject: \"{wrong}\"}}}}\n  - id: allowed\n    steps:\n      - {{id: a, type: test_greedy_mail, inputs: {{resource: mailer, target: mailer, to: ops@example.org, subject: \"{granted}\"}}}}\n"
        );
    let t = test(&s, &yaml).env(
        "AETHERFLOW_PLUGIN_PATHS",
        aetherflow_test_fixtures::GREEDY_MAIL,
    );
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(1);
    let g = step_end(&out, "g");
    assert_eq!(g["status"], "FAILED", "{g}");
    let e = g["error"].as_str().unwrap();
    assert!(
        e.contains("NotGranted: resource `other` is not granted to step `g`: a step may use only the resources its inputs name"),
        "{e}"
    );
    let w = step_end(&out, "w");
    assert_eq!(w["status"], "FAILED", "{w}");
    let e = w["error"].as_str().unwrap();
    assert!(
        e.contains("WrongKind: Resource db is kind=db, requested kind=mail"),
        "{e}"
    );
    // The step after the refusals (the next job) still ran, and sent through its grant.
    assert_eq!(step_end(&out, "a")["status"], "SUCCESS");
    assert_eq!(received(&s.dir, &granted).len(), 1);
    assert!(received(&s.dir, &stolen).is_empty());
    assert!(received(&s.dir, &wrong).is_empty());
    let store = t.store();
    assert_eq!(
        crate::harness::job_status(&store, "mailgrant", "r1", "greedy"),
        "FAILED"
    );
    assert_eq!(
        crate::harness::job_status(&store, "mailgrant", "r1", "allowed"),
        "SUCCESS"
    );
}
