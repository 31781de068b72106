//! The `rest` connector and the `http_request` step against a real HTTP/1.1 server on
//! 127.0.0.1, started by each test. The server records every request it receives, so the
//! tests assert what actually went over the wire.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aetherflow_state::{JobKey, StateStore};
use aetherflow_test_fixtures as fx;
use serde_json::{json, Value};

use crate::harness::{header, job_status, server_env, Test};

/// One request as the server received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query, as sent.
    target: String,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

enum Reply {
    Respond {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// Read the request, then say nothing for this long and close.
    Hang(Duration),
}

fn reply(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
    Reply::Respond {
        status,
        headers: vec![("content-type", content_type.to_string())],
        body: body.into(),
    }
}

fn json_reply(status: u16, v: Value) -> Reply {
    reply(status, "application/json", v.to_string())
}

type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// A small HTTP/1.1 server (keep-alive, Content-Length bodies) on an ephemeral port.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// `handler(request, index)` answers the `index`-th request (0-based, over all
    /// connections).
    fn start(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let s = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (s, h) = (s.clone(), handler.clone());
                std::thread::spawn(move || serve(stream, s, h));
            }
        });
        Server { port, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn serve(stream: TcpStream, seen: Arc<Mutex<Vec<Seen>>>, handler: Arc<Handler>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let req = Seen {
            method,
            target,
            headers,
            body,
        };
        let index = {
            let mut s = seen.lock().unwrap();
            s.push(req.clone());
            s.len() - 1
        };
        match handler(&req, index) {
            Reply::Hang(d) => {
                std::thread::sleep(d);
                return;
            }
            Reply::Respond {
                status,
                headers,
                body,
            } => {
                let mut head = format!(
                    "HTTP/1.1 {status} Status\r\ncontent-length: {}\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                if w.write_all(head.as_bytes()).is_err() {
                    return;
                }
                if req.method != "HEAD" && w.write_all(&body).is_err() {
                    return;
                }
                let _ = w.flush();
            }
        }
    }
}

/// A flow with the `api` rest resource (its YAML mapping) and one job per step given
/// (`- {id: .., type: http_request, inputs: {..}}` lines), so a failing step does not stop
/// the others.
fn flow(id: &str, resources: &str, steps: &[&str]) -> String {
    let mut s = header(id) + "resources:\n" + resources + "jobs:\n";
    for (i, step) in steps.iter().enumerate() {
        s.push_str(&format!("  - id: j{i}\n    steps:\n      - {step}\n"));
    }
    s
}

fn api(server: &Server, base: &str, extra: &str) -> String {
    format!(
        "  api: {{kind: rest, driver: http, config: {{base_url: \"{}\"{extra}}}}}\n",
        server.url(base)
    )
}

fn step_record(
    t: &Test,
    flow: &str,
    run: &str,
    job: &str,
    step: &str,
) -> aetherflow_state::StepRecord {
    t.store()
        .step(&JobKey::new(flow, run, job).step(step))
        .unwrap()
        .unwrap_or_else(|| panic!("no record of step {job}.{step}"))
}

fn outputs(t: &Test, flow: &str, run: &str, job: &str, step: &str) -> Value {
    step_record(t, flow, run, job, step)
        .outputs
        .unwrap_or(Value::Null)
}

fn error(t: &Test, flow: &str, run: &str, job: &str, step: &str) -> String {
    step_record(t, flow, run, job, step)
        .error
        .unwrap_or_default()
}

#[test]
fn get_returns_json_and_headers_in_outputs() {
    let server = Server::start(|req, _| {
        if req.target.starts_with("/api/v1/items") {
            Reply::Respond {
                status: 200,
                headers: vec![
                    ("content-type", "application/json; charset=utf-8".into()),
                    ("X-Request-Id", "abc-1".into()),
                ],
                body: json!({"items": [1, 2, 3], "next": null})
                    .to_string()
                    .into_bytes(),
            }
        } else {
            reply(200, "text/plain", "hello")
        }
    });
    let f = flow(
        "get",
        &api(&server, "/api/v1/", ""),
        &[
            "{id: g, type: http_request, inputs: {resource: api, path: /items, query: {page: 2, tag: [a, b c]}}}",
            "{id: t, type: http_request, inputs: {resource: api, path: hello.txt}}",
        ],
    );
    let t = Test::new().flow(&f);
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(0);

    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let g = seen.iter().find(|s| s.target.contains("items")).unwrap();
    assert_eq!(g.method, "GET");
    assert_eq!(g.target, "/api/v1/items?page=2&tag=a&tag=b+c");
    assert!(g.body.is_empty());

    let out = outputs(&t, "get", "r1", "j0", "g");
    assert_eq!(out["status"], 200);
    assert_eq!(out["json"], json!({"items": [1, 2, 3], "next": null}));
    assert_eq!(out["headers"]["x-request-id"], "abc-1");
    assert_eq!(
        out["headers"]["content-type"],
        "application/json; charset=utf-8"
    );
    let text = outputs(&t, "get", "r1", "j1", "t");
    assert_eq!(text["text"], "hello");
    assert_eq!(text["bytes"], 5);
    assert!(text.get("json").is_none(), "{text}");
    assert_eq!(
        seen.iter()
            .find(|s| s.target.contains("hello"))
            .unwrap()
            .target,
        "/api/v1/hello.txt"
    );
}

#[test]
fn post_json_body_arrives_intact() {
    let server = Server::start(|req, _| json_reply(201, json!({"received": req.body.len()})));
    let f = flow(
        "post",
        &api(&server, "/api", ""),
        &[
            r#"{id: p, type: http_request, inputs: {resource: api, method: post, path: /things, json: {name: "Zoë", n: [1, 2.5, true], nested: {a: null, b: "x\ny"}}}}"#,
            r#"{id: b, type: http_request, inputs: {resource: api, method: PUT, path: /raw, body: "plain text body", headers: {Content-Type: text/plain}}}"#,
        ],
    );
    let t = Test::new().flow(&f);
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(0);
    let seen = server.seen();
    let p = seen.iter().find(|s| s.target == "/api/things").unwrap();
    assert_eq!(p.method, "POST");
    assert_eq!(p.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_slice(&p.body).unwrap();
    assert_eq!(
        body,
        json!({"name": "Zoë", "n": [1, 2.5, true], "nested": {"a": null, "b": "x\ny"}})
    );
    let b = seen.iter().find(|s| s.target == "/api/raw").unwrap();
    assert_eq!(b.method, "PUT");
    assert_eq!(b.body, b"plain text body");
    assert_eq!(b.header("content-type"), Some("text/plain"));
    assert_eq!(outputs(&t, "post", "r1", "j0", "p")["status"], 201);
}

const TOKEN: &str = "tok-3f9a7c1e5b2d4a60";

#[test]
fn bearer_token_and_default_headers_are_sent_and_never_shown() {
    // The server echoes the headers it got except authorization, as a real API might.
    let server = Server::start(|req, _| {
        let echoed: serde_json::Map<String, Value> = req
            .headers
            .iter()
            .filter(|(k, _)| k.starts_with("x-"))
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json_reply(200, Value::Object(echoed))
    });
    let resource = api(
        &server,
        "/api",
        ", bearer_token: \"{{env.API_TOKEN}}\", headers: {X-Client: aetherflow-test, X-Team: data}",
    );
    let f = flow(
        "auth",
        &resource,
        &[
            "{id: a, type: http_request, inputs: {resource: api, path: /me}}",
            "{id: o, type: http_request, inputs: {resource: api, path: /me, headers: {x-team: override}}}",
            // A failure message must not carry the token either.
            "{id: f, type: http_request, inputs: {resource: api, path: /me, expected_status: 404}}",
        ],
    );
    let t = Test::new().flow(&f).env("API_TOKEN", TOKEN);
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(1);
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.header("authorization"), Some(&*format!("Bearer {TOKEN}")));
        assert_eq!(s.header("x-client"), Some("aetherflow-test"));
    }
    let team: Vec<&str> = seen.iter().filter_map(|s| s.header("x-team")).collect();
    assert!(
        team.contains(&"data") && team.contains(&"override"),
        "{team:?}"
    );
    assert_eq!(
        outputs(&t, "auth", "r1", "j1", "o")["json"]["x-team"],
        "override"
    );
    assert!(error(&t, "auth", "r1", "j2", "f").contains("answered HTTP 200, expected 404"));

    // Nowhere: not in the events, the results, the state store or the workspace.
    assert!(!out.stderr.contains(TOKEN), "{}", out.stderr);
    assert!(!out.stdout.contains(TOKEN));
    let state = std::fs::read(t.path("state.sqlite")).unwrap();
    assert!(!String::from_utf8_lossy(&state).contains(TOKEN));
    let show = t.run_args(&["runs", "show", "r1", "--state", "state.sqlite", "--json"]);
    assert!(!show.stdout.contains(TOKEN));
    assert!(show.stdout.contains("x-client"), "{}", show.stdout);
    // The engine masks known secrets as `***` wherever they appear; no mask in the step
    // records means the token never reached them in the first place.
    for (job, step) in [("j0", "a"), ("j1", "o"), ("j2", "f")] {
        let r = step_record(&t, "auth", "r1", job, step);
        let text = format!("{:?} {:?}", r.outputs, r.error);
        assert!(!text.contains("***"), "{text}");
    }
}

/// Deterministic test content of `n` bytes.
fn blob(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_large_body_streams_to_a_file_with_its_sha256() {
    const SIZE: usize = 5 * 1024 * 1024 + 123;
    let server = Server::start(|_, _| reply(200, "application/octet-stream", blob(SIZE)));
    let f = flow(
        "dl",
        &api(&server, "/files", ""),
        &[
            "{id: d, type: http_request, inputs: {resource: api, path: /big.bin, output: downloads/big.bin}}",
            // Without `output`, a body over max_bytes is a clear error.
            "{id: m, type: http_request, inputs: {resource: api, path: /big.bin, max_bytes: 1000}}",
        ],
    );
    let t = Test::new().flow(&f);
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(1);
    let out = outputs(&t, "dl", "r1", "j0", "d");
    let file = t.path("work/dl/j0/r1/artifacts/downloads/big.bin");
    assert_eq!(out["output"], file.display().to_string());
    assert_eq!(out["bytes"], SIZE as u64);
    let expected = blob(SIZE);
    assert_eq!(out["sha256"], sha256_hex(&expected));
    assert!(
        std::fs::read(&file).unwrap() == expected,
        "file content differs"
    );
    assert!(!t
        .path("work/dl/j0/r1/artifacts/downloads/big.bin.part")
        .exists());
    assert!(out.get("text").is_none());

    let e = error(&t, "dl", "r1", "j1", "m");
    assert!(
        e.contains("larger than max_bytes (1000); set `output` to stream it to a file"),
        "{e}"
    );
}

#[test]
fn an_unexpected_status_fails_the_step_unless_expected() {
    let server = Server::start(|req, _| {
        if req.target.ends_with("/missing") {
            json_reply(404, json!({"detail": "no such item"}))
        } else {
            reply(204, "text/plain", "")
        }
    });
    let f = flow(
        "st",
        &api(&server, "/api", ""),
        &[
            "{id: nf, type: http_request, inputs: {resource: api, path: /missing, output: never.json}}",
            "{id: ok, type: http_request, inputs: {resource: api, path: /missing, expected_status: [200, 404]}}",
            "{id: cls, type: http_request, inputs: {resource: api, path: /missing, expected_status: 4xx}}",
            "{id: del, type: http_request, inputs: {resource: api, method: DELETE, path: /x}}",
        ],
    );
    let t = Test::new().flow(&f);
    let out = t.run_args(&["run", "flow.yaml", "--run-id", "r1"]);
    out.status(1);
    let store = t.store();
    assert_eq!(job_status(&store, "st", "r1", "j0"), "FAILED");
    let e = error(&t, "st", "r1", "j0", "nf");
    assert!(
        e.contains("resource `api`: GET /missing answered HTTP 404, expected 2xx (set `expected_status` to accept it); body: {\"detail\":\"no such item\"}"),
        "{e}"
    );
    assert!(!t.path("work/st/j0/r1/artifacts/never.json").exists());
    assert!(!t.path("work/st/j0/r1/artifacts/never.json.part").exists());
    for (job, step) in [("j1", "ok"), ("j2", "cls")] {
        assert_eq!(job_status(&store, "st", "r1", job), "SUCCESS");
        let o = outputs(&t, "st", "r1", job, step);
        assert_eq!(o["status"], 404);
        assert_eq!(o["json"]["detail"], "no such item");
    }
    assert_eq!(outputs(&t, "st", "r1", "j3", "del")["status"], 204);
    let end = out
        .named("step_end")
        .into_iter()
        .find(|e| e["step_id"] == "nf")
        .unwrap();
    assert!(end["error"].as_str().unwrap().contains("HTTP 404"), "{end}");
}

#[test]
fn server_errors_are_retried_with_backoff() {
    let server = Server::start(|req, i| {
        if req.target.contains("flaky") && i < 2 {
            json_reply(503, json!({"error": "busy"}))
        } else if req.target.contains("down") {
            json_reply(500, json!({"error": "down"}))
        } else {
            json_reply(200, json!({"ok": true}))
        }
    });
    let resource = api(&server, "/api", "}, options: {retry: {max_attempts: 3}");
    let f = flow(
        "retry",
        &resource,
        &["{id: r, type: http_request, inputs: {resource: api, method: POST, path: /flaky, json: {n: 1}}}"],
    );
    let t = Test::new().flow(&f);
    let started = Instant::now();
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(0);
    let took = started.elapsed();
    let seen = server.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|s| s.body == br#"{"n":1}"#));
    assert_eq!(outputs(&t, "retry", "r1", "j0", "r")["json"]["ok"], true);
    // Pauses of 1 s then 2 s between the attempts.
    assert!(took >= Duration::from_secs(3), "{took:?}");

    // A server that stays down: the last 5xx answer is the step's failure.
    let server = Server::start(|_, _| json_reply(500, json!({"error": "down"})));
    let resource = api(&server, "/api", "}, options: {retries: 2");
    let t = Test::new().flow(&flow(
        "down",
        &resource,
        &["{id: d, type: http_request, inputs: {resource: api, path: /down}}"],
    ));
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(1);
    assert_eq!(server.seen().len(), 2);
    let e = error(&t, "down", "r1", "j0", "d");
    assert!(e.contains("answered HTTP 500"), "{e}");
}

#[test]
fn a_silent_server_times_out_within_the_timeout() {
    let server = Server::start(|_, _| Reply::Hang(Duration::from_secs(20)));
    let resource = api(&server, "/api", "}, options: {timeout: 1");
    let f = flow(
        "slow",
        &resource,
        &[
            "{id: s, type: http_request, inputs: {resource: api, path: /slow}}",
            // The step's own `timeout` overrides the resource's.
            "{id: o, type: http_request, inputs: {resource: api, path: /slow, timeout: 0.5}}",
        ],
    );
    let t = Test::new().flow(&f);
    let started = Instant::now();
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(1);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(12), "{took:?}");
    let e = error(&t, "slow", "r1", "j0", "s");
    assert!(
        e.contains(&format!(
            "REST request failed after 1 attempt(s): GET http://127.0.0.1:{}/api/slow",
            server.port
        )) && e.contains("no complete answer within 1s"),
        "{e}"
    );
    let e = error(&t, "slow", "r1", "j1", "o");
    assert!(e.contains("no complete answer within 0.5s"), "{e}");
}

#[test]
fn an_unreachable_server_fails_fast() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let f = header("down")
        + &format!(
            "resources:\n  api: {{kind: rest, driver: httpx, config: {{base_url: \"http://127.0.0.1:{port}/api\"}}}}\njobs:\n  - id: j\n    steps:\n      - {{id: u, type: http_request, inputs: {{resource: api, path: /x}}}}\n"
        );
    let t = Test::new().flow(&f);
    let started = Instant::now();
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(1);
    assert!(started.elapsed() < Duration::from_secs(10));
    let e = error(&t, "down", "r1", "j", "u");
    assert!(
        e.contains(&format!(
            "REST request failed after 1 attempt(s): GET http://127.0.0.1:{port}/api/x"
        )),
        "{e}"
    );
}

#[test]
fn requests_outside_the_base_url_are_refused_before_sending() {
    let server = Server::start(|_, _| json_reply(200, json!({"leak": true})));
    let port = server.port;
    let other = port.wrapping_add(1);
    let paths = [
        "../secret".to_string(),
        "/items/../../secret".into(),
        "%2e%2e/secret".into(),
        "items/%2E%2E%2F%2E%2E%2Fsecret".into(),
        format!("//127.0.0.1:{port}/secret"),
        format!("http://127.0.0.1:{port}/secret"),
        format!("http://127.0.0.1:{port}/apis/x"),
        format!("http://127.0.0.1:{other}/api/x"),
        format!("https://127.0.0.1:{port}/api/x"),
        "http://example.invalid/api/x".into(),
    ];
    let steps: Vec<String> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!("{{id: s{i}, type: http_request, inputs: {{resource: api, path: \"{p}\"}}}}")
        })
        .collect();
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    let t = Test::new().flow(&flow("conf", &api(&server, "/api", ""), &steps));
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(1);
    for (i, p) in paths.iter().enumerate() {
        let e = error(&t, "conf", "r1", &format!("j{i}"), &format!("s{i}"));
        assert!(
            e.contains(&format!(
                "request path `{p}` is outside the base URL http://127.0.0.1:{port}/api"
            )),
            "{p}: {e}"
        );
    }
    assert!(server.seen().is_empty(), "{:?}", server.seen());

    // An absolute URL under the base is fine.
    let ok = format!(
        "{{id: a, type: http_request, inputs: {{resource: api, path: \"http://127.0.0.1:{port}/api/ok\"}}}}"
    );
    let t = Test::new().flow(&flow("conf2", &api(&server, "/api", ""), &[&ok]));
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(0);
    assert_eq!(server.seen()[0].target, "/api/ok");
}

#[test]
fn wrong_kind_and_ungranted_resources_are_refused() {
    let server = Server::start(|_, _| json_reply(200, json!({})));
    let resources = api(&server, "/api", "")
        + "  db: {kind: db, driver: sqlite3, config: {path: \"{ROOT}/x.db\"}}\n"
        + &api(&server, "/other", "").replacen("api:", "other:", 1);
    let f = flow(
        "kinds",
        &resources,
        &[
            "{id: w, type: http_request, inputs: {resource: db}}",
            "{id: g, type: test_greedy_http, inputs: {resource: api, target: other}}",
            "{id: ok, type: test_greedy_http, inputs: {resource: api, target: api}}",
        ],
    );
    let t = Test::new()
        .flow(&f)
        .env("AETHERFLOW_PLUGIN_PATHS", fx::GREEDY_HTTP);
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(1);
    let e = error(&t, "kinds", "r1", "j0", "w");
    assert!(
        e.contains("Resource db is kind=db, requested kind=rest"),
        "{e}"
    );
    let e = error(&t, "kinds", "r1", "j1", "g");
    assert!(
        e.contains("NotGranted") && e.contains("resource `other` is not granted to step `g`"),
        "{e}"
    );
    assert_eq!(outputs(&t, "kinds", "r1", "j2", "ok")["status"], 200);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/api/anything");
}

#[test]
fn resource_config_errors_name_the_fix() {
    let f = header("cfg")
        + "resources:\n  api: {kind: rest, driver: http, config: {}}\n  curl: {kind: rest, driver: curl, config: {base_url: \"http://127.0.0.1:9\"}}\njobs:\n  - id: a\n    steps:\n      - {id: s, type: http_request, inputs: {resource: api}}\n  - id: b\n    steps:\n      - {id: s, type: http_request, inputs: {resource: curl}}\n";
    let t = Test::new().flow(&f);
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(1);
    let e = error(&t, "cfg", "r1", "a", "s");
    assert!(
        e.contains("resource `api`: config.base_url is required"),
        "{e}"
    );
    let e = error(&t, "cfg", "r1", "b", "s");
    assert!(
        e.contains("Unknown connector: rest:curl. Loaded: ['rest:http', 'rest:httpx']"),
        "{e}"
    );
}

#[test]
fn redirects_are_returned_not_followed_and_reserved_headers_are_refused() {
    let server = Server::start(|req, _| {
        if req.target.ends_with("/moved") {
            Reply::Respond {
                status: 302,
                headers: vec![("location", "http://example.invalid/elsewhere".into())],
                body: Vec::new(),
            }
        } else {
            json_reply(200, json!({}))
        }
    });
    let f = flow(
        "redir",
        &api(&server, "/api", ""),
        &[
            "{id: r, type: http_request, inputs: {resource: api, path: /moved}}",
            "{id: ok, type: http_request, inputs: {resource: api, path: /moved, expected_status: 302}}",
            "{id: h, type: http_request, inputs: {resource: api, path: /x, headers: {Host: example.invalid}}}",
            "{id: hd, type: http_request, inputs: {resource: api, method: head, path: /x}}",
        ],
    );
    let t = Test::new().flow(&f);
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(1);
    let e = error(&t, "redir", "r1", "j0", "r");
    assert!(e.contains("answered HTTP 302, expected 2xx"), "{e}");
    let o = outputs(&t, "redir", "r1", "j1", "ok");
    assert_eq!(o["headers"]["location"], "http://example.invalid/elsewhere");
    let e = error(&t, "redir", "r1", "j2", "h");
    assert!(
        e.contains("the header `host` is set by the connector and cannot be given"),
        "{e}"
    );
    assert_eq!(outputs(&t, "redir", "r1", "j3", "hd")["status"], 200);
    let seen: Vec<(String, String)> = server
        .seen()
        .into_iter()
        .map(|s| (s.method, s.target))
        .collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen.iter().filter(|(_, t)| t == "/api/moved").count(), 2);
    assert!(seen.contains(&("HEAD".into(), "/api/x".into())), "{seen:?}");
}

/// The test HTTPS server (`scripts/test-servers/http.sh`: the same files over TLS with a
/// certificate of the test CA), its request log, the test CA and a CA that signed nothing.
struct Https {
    url: String,
    log: String,
    ca: String,
    other_ca: String,
}

fn https() -> Option<Https> {
    Some(Https {
        url: server_env("AF_TEST_HTTPS_URL")?,
        log: server_env("AF_TEST_HTTP_LOG")?,
        ca: server_env("AF_TEST_CA_PEM")?,
        other_ca: server_env("AF_TEST_OTHER_CA_PEM")?,
    })
}

/// The requests the test server logged whose path contains `marker`.
fn logged(log: &str, marker: &str) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["path"].as_str().unwrap_or_default().contains(marker))
        .collect()
}

fn rest_resource(name: &str, base_url: &str, options: &str) -> String {
    format!(
        "  {name}: {{kind: rest, driver: http, config: {{base_url: \"{base_url}/api\"}}, options: {{timeout: 5{options}}}}}\n"
    )
}

#[test]
fn https_verifies_the_server_with_a_private_ca_bundle() {
    let Some(h) = https() else { return };
    let marker = format!("tls-{}", std::process::id());
    let resources = rest_resource("ca", &h.url, &format!(", ca_bundle: \"{}\"", h.ca))
        + &rest_resource("noca", &h.url, "")
        + &rest_resource("insecure", &h.url, ", verify_ssl: false")
        + &rest_resource(
            "wrongca",
            &h.url,
            &format!(", ca_bundle: \"{}\"", h.other_ca),
        );
    let steps: Vec<String> = ["ca", "noca", "insecure", "wrongca"]
        .iter()
        .map(|r| {
            format!("{{id: s, type: http_request, inputs: {{resource: {r}, path: targets.json, query: {{m: {marker}-{r}}}}}}}")
        })
        .collect();
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    let t = Test::new().flow(&flow("https", &resources, &steps));
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(1);

    // With the CA, and with verification off: the JSON arrives, over TLS.
    for (job, r) in [("j0", "ca"), ("j2", "insecure")] {
        let o = outputs(&t, "https", "r1", job, "s");
        assert_eq!(o["status"], 200, "{r}: {o}");
        assert_eq!(o["json"]["currency"], "EUR", "{r}: {o}");
        let seen = logged(&h.log, &format!("{marker}-{r}"));
        assert_eq!(seen.len(), 1, "{r}: {seen:?}");
        assert_eq!(seen[0]["tls"], true, "{r}: {seen:?}");
    }
    // Without it: a certificate error that names the resource and both fixes.
    let shown = format!("GET {}/api/targets.json", h.url);
    let e = error(&t, "https", "r1", "j1", "s");
    assert!(
        e.contains(&format!(
            "resource `noca`: TLS certificate check failed for {shown}: the server's certificate is not signed by a trusted certificate authority (unknown issuer); if the server uses a private or self-signed CA, set options.ca_bundle to that CA's certificate (a PEM file), or set options.verify_ssl: false to skip verification (insecure)"
        )),
        "{e}"
    );
    let e = error(&t, "https", "r1", "j3", "s");
    assert!(
        e.contains(&format!(
            "resource `wrongca`: TLS certificate check failed for {shown}: the server's certificate is not signed by a trusted certificate authority (unknown issuer); check that options.ca_bundle (`{}`) holds the certificate of the CA that signed the server's certificate",
            h.other_ca
        )),
        "{e}"
    );
    // The refused handshakes sent no request.
    assert!(logged(&h.log, &format!("{marker}-noca")).is_empty());
    assert!(logged(&h.log, &format!("{marker}-wrongca")).is_empty());
}

#[test]
fn ca_bundle_errors_name_the_resource_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let resources = rest_resource(
        "missing",
        "https://127.0.0.1:9",
        ", ca_bundle: /nonexistent/ca.pem",
    ) + &rest_resource(
        "notpem",
        "https://127.0.0.1:9",
        &format!(", ca_bundle: \"{}\"", not_pem.display()),
    ) + &rest_resource(
        "both",
        "https://127.0.0.1:9",
        &format!(", ca_bundle: \"{}\", verify_ssl: false", not_pem.display()),
    );
    let steps: Vec<String> = ["missing", "notpem", "both"]
        .iter()
        .map(|r| format!("{{id: s, type: http_request, inputs: {{resource: {r}, path: x}}}}"))
        .collect();
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    let t = Test::new().flow(&flow("cabad", &resources, &steps));
    t.run_args(&["run", "flow.yaml", "--run-id", "r1"])
        .status(1);
    let e = error(&t, "cabad", "r1", "j0", "s");
    assert!(
        e.contains(
            "resource `missing`: options.ca_bundle: cannot read the CA file `/nonexistent/ca.pem`"
        ),
        "{e}"
    );
    let e = error(&t, "cabad", "r1", "j1", "s");
    assert!(
        e.contains(&format!(
            "resource `notpem`: options.ca_bundle: the CA file `{}` holds no certificate",
            not_pem.display()
        )),
        "{e}"
    );
    let e = error(&t, "cabad", "r1", "j2", "s");
    assert!(
        e.contains(
            "resource `both`: options.ca_bundle and options.verify_ssl: false exclude each other"
        ),
        "{e}"
    );
}
