//! `http_request`: one HTTP request through a granted `rest` resource.
//!
//! The host adds the base URL, default headers, credentials, timeout and retries, and
//! refuses a path that leaves the base URL. The response body either comes back in the
//! outputs (`text`, and `json` for a JSON content type; at most `max_bytes`) or streams
//! to a workspace file (`output`: written under a temporary name, hashed on the way, then
//! renamed, so a failed step never leaves a partial file). A status the flow did not
//! expect (by default anything but 2xx) fails the step with the status and the start of
//! the body.

use std::fs::{self, File};
use std::io::Write;
use std::time::Duration;

use aetherflow_sdk::http::{self, Request, Response};
use aetherflow_sdk::{export_step, json, log, Context, Error, Info, Map, Outcome, Step, Value};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Default `max_bytes`: the largest body returned in the outputs.
const DEFAULT_MAX_BYTES: u64 = 1 << 20;
/// How much of an unexpected answer's body the error message quotes.
const ERROR_BODY_BYTES: usize = 512;
/// Chunk size when streaming to a file.
const CHUNK: u32 = 256 * 1024;

#[derive(Deserialize)]
struct Inputs {
    resource: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    query: Value,
    #[serde(default)]
    headers: Value,
    #[serde(default)]
    json: Option<Value>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    expected_status: Value,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    max_bytes: Option<u64>,
    #[serde(default)]
    timeout: Option<f64>,
}

/// One accepted status: exact (`404`) or a class (`"2xx"`).
#[derive(Clone, Copy)]
enum Accept {
    Exact(u16),
    Class(u16),
}

impl Accept {
    fn matches(self, status: u16) -> bool {
        match self {
            Accept::Exact(s) => s == status,
            Accept::Class(c) => status / 100 == c,
        }
    }

    fn show(self) -> String {
        match self {
            Accept::Exact(s) => s.to_string(),
            Accept::Class(c) => format!("{c}xx"),
        }
    }
}

fn parse_accept(v: &Value) -> Result<Vec<Accept>, Error> {
    let bad = || {
        Error::invalid_input(
            "expected_status must be a status code (404), a class (\"2xx\") or a list of them",
        )
    };
    let one = |v: &Value| -> Result<Accept, Error> {
        match v {
            Value::Number(n) => n
                .as_u64()
                .filter(|s| (100..=599).contains(s))
                .map(|s| Accept::Exact(s as u16))
                .ok_or_else(bad),
            Value::String(s) => {
                let s = s.trim().to_ascii_lowercase();
                if let Some(c) = s.strip_suffix("xx") {
                    match c.parse::<u16>() {
                        Ok(c) if (1..=5).contains(&c) => Ok(Accept::Class(c)),
                        _ => Err(bad()),
                    }
                } else {
                    match s.parse::<u16>() {
                        Ok(n) if (100..=599).contains(&n) => Ok(Accept::Exact(n)),
                        _ => Err(bad()),
                    }
                }
            }
            _ => Err(bad()),
        }
    };
    match v {
        Value::Null => Ok(vec![Accept::Class(2)]),
        Value::Array(items) if !items.is_empty() => items.iter().map(one).collect(),
        Value::Array(_) => Err(bad()),
        other => Ok(vec![one(other)?]),
    }
}

/// A mapping input (`query`, `headers`): an object, or a string holding a JSON object.
fn mapping(name: &str, v: &Value) -> Result<Map, Error> {
    let bad = || Error::invalid_input(format!("{name} must be a mapping of names to values"));
    match v {
        Value::Null => Ok(Map::new()),
        Value::Object(m) => Ok(m.clone()),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// A scalar as request text (`true`, `3`, `"x"`); `None` for null.
fn scalar(name: &str, key: &str, v: &Value) -> Result<Option<String>, Error> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        _ => Err(Error::invalid_input(format!(
            "{name}.{key} must be a string, a number or a boolean"
        ))),
    }
}

fn build_request(inputs: &Inputs) -> Result<Request, Error> {
    let method = inputs
        .method
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or("GET")
        .to_ascii_uppercase();
    let mut req = Request::new(method, inputs.path.clone().unwrap_or_default());
    for (k, v) in mapping("query", &inputs.query)? {
        match v {
            Value::Array(items) => {
                for item in &items {
                    if let Some(s) = scalar("query", &k, item)? {
                        req = req.query(k.clone(), s);
                    }
                }
            }
            other => {
                if let Some(s) = scalar("query", &k, &other)? {
                    req = req.query(k, s);
                }
            }
        }
    }
    for (k, v) in mapping("headers", &inputs.headers)? {
        if let Some(s) = scalar("headers", &k, &v)? {
            req = req.header(k, s);
        }
    }
    match (&inputs.json, &inputs.body) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid_input(
                "give either `json` (sent as JSON) or `body` (sent as text), not both",
            ))
        }
        (Some(j), None) => req = req.json(j),
        (None, Some(b)) => req = req.body(b.clone().into_bytes()),
        (None, None) => {}
    }
    if let Some(t) = inputs.timeout {
        if !(t > 0.0 && t.is_finite()) {
            return Err(Error::invalid_input(
                "timeout must be a number of seconds greater than 0",
            ));
        }
        req = req.timeout(Duration::from_secs_f64(t));
    }
    Ok(req)
}

/// Response headers as an object with lower-case names; repeated headers joined by `, `.
fn headers_object(resp: &Response) -> Map {
    let mut out = Map::new();
    for (k, v) in &resp.headers {
        let k = k.to_ascii_lowercase();
        match out.get_mut(&k) {
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(v);
            }
            _ => {
                out.insert(k, Value::String(v.clone()));
            }
        }
    }
    out
}

/// The start of the body, for an error message.
fn body_start(resp: &mut Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < ERROR_BODY_BYTES + 1 {
        match resp.read((ERROR_BODY_BYTES + 1 - buf.len()) as u32) {
            Ok(c) if !c.is_empty() => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    if buf.is_empty() {
        return "the body is empty".into();
    }
    let cut = buf.len() > ERROR_BODY_BYTES;
    buf.truncate(ERROR_BODY_BYTES);
    let text: String = String::from_utf8_lossy(&buf)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("body: {}{}", text.trim_end(), if cut { "…" } else { "" })
}

struct HttpRequest;

impl Step for HttpRequest {
    type Inputs = Inputs;

    fn info() -> Info {
        Info::new("http_request", env!("CARGO_PKG_VERSION"))
            .description(
                "Send one HTTP request through a rest resource; the body comes back in the \
                 outputs or streams to a workspace file.",
            )
            .schema(json!({
                "type": "object",
                "required": ["resource"],
                "properties": {
                    "resource": {"type": "string", "description": "Name of a `rest` resource."},
                    "method": {"type": "string", "default": "GET", "description": "GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS (any case)."},
                    "path": {"type": "string", "default": "", "description": "Relative to the resource's base_url."},
                    "query": {"type": "object", "description": "Query parameters; a list value repeats the name."},
                    "headers": {"type": "object", "description": "Extra headers; they override the resource's defaults."},
                    "json": {"description": "Any JSON value, sent as the body with content-type application/json."},
                    "body": {"type": "string", "description": "A text body (not with `json`)."},
                    "expected_status": {"description": "A status (404), a class (\"2xx\") or a list of them; default any 2xx."},
                    "output": {"type": "string", "description": "Stream the body to this file; relative to the job artifacts dir."},
                    "max_bytes": {"type": "integer", "minimum": 0, "default": DEFAULT_MAX_BYTES,
                        "description": "Largest body returned in the outputs (without `output`)."},
                    "timeout": {"type": "number", "description": "Seconds; overrides the resource's timeout."}
                }
            }))
            .needs("rest", "resource")
    }

    fn run(ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        let accept = parse_accept(&inputs.expected_status)?;
        let req = build_request(&inputs)?;
        let max_bytes = inputs.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
        let out_path = match inputs.output.as_deref() {
            Some(p) if !p.trim().is_empty() => Some(ctx.resolve_path(p)?),
            _ => None,
        };
        let what = format!(
            "{} {}",
            req.method,
            if req.path.is_empty() { "/" } else { &req.path }
        );
        let resource = &inputs.resource;

        // The host's messages name the resource and the request already.
        let mut resp = http::send(resource, &req).map_err(Error::from)?;
        let status = resp.status;
        log::info(format!("{what} answered HTTP {status}"));
        if !accept.iter().any(|a| a.matches(status)) {
            let expected: Vec<String> = accept.iter().map(|a| a.show()).collect();
            return Err(Error::connector(format!(
                "resource `{resource}`: {what} answered HTTP {status}, expected {} \
                 (set `expected_status` to accept it); {}",
                expected.join(" or "),
                body_start(&mut resp)
            )));
        }
        let headers = headers_object(&resp);
        let body_err = |e: http::HttpError| {
            let mut err = Error::from(e);
            err.message = format!("resource `{resource}`: {what}: {}", err.message);
            err
        };

        if let Some(out) = out_path {
            let (bytes, sha) = stream_to_file(&mut resp, &out, body_err)?;
            return Outcome::success(json!({
                "status": status,
                "headers": headers,
                "output": out.to_string_lossy(),
                "bytes": bytes,
                "sha256": sha,
            }));
        }

        let body = match resp.read_limited(max_bytes).map_err(body_err)? {
            Ok(b) => b,
            Err(_) => {
                return Err(Error::invalid_input(format!(
                    "resource `{resource}`: {what}: the response body is larger than \
                     max_bytes ({max_bytes}); set `output` to stream it to a file, or raise `max_bytes`"
                )))
            }
        };
        let mut outputs = Map::new();
        outputs.insert("status".into(), json!(status));
        outputs.insert("headers".into(), Value::Object(headers));
        outputs.insert("bytes".into(), json!(body.len()));
        if resp.is_json() && !body.is_empty() {
            let parsed: Value = serde_json::from_slice(&body).map_err(|e| {
                Error::connector(format!(
                    "resource `{resource}`: {what}: the response says it is JSON but is not valid JSON: {e}"
                ))
            })?;
            outputs.insert("json".into(), parsed);
        }
        outputs.insert(
            "text".into(),
            Value::String(String::from_utf8_lossy(&body).into_owned()),
        );
        Outcome::success(outputs)
    }
}

/// Stream the body to `<out>.part`, hashing it, then rename it to `out`.
fn stream_to_file(
    resp: &mut Response,
    out: &std::path::Path,
    body_err: impl Fn(http::HttpError) -> Error,
) -> Result<(u64, String), Error> {
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("cannot create {}: {e}", parent.display())))?;
    }
    let tmp = out.with_file_name(format!(
        "{}.part",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("output")
    ));
    let result = (|| -> Result<(u64, String), Error> {
        let mut file = File::create(&tmp)
            .map_err(|e| Error::io(format!("cannot create {}: {e}", tmp.display())))?;
        let mut hasher = Sha256::new();
        let mut bytes: u64 = 0;
        loop {
            let chunk = resp.read(CHUNK).map_err(&body_err)?;
            if chunk.is_empty() {
                break;
            }
            hasher.update(&chunk);
            bytes += chunk.len() as u64;
            file.write_all(&chunk)
                .map_err(|e| Error::io(format!("cannot write {}: {e}", tmp.display())))?;
        }
        file.flush()
            .map_err(|e| Error::io(format!("cannot write {}: {e}", tmp.display())))?;
        let hex: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok((bytes, hex))
    })();
    match result {
        Ok(r) => {
            fs::rename(&tmp, out).map_err(|e| {
                let _ = fs::remove_file(&tmp);
                Error::io(format!(
                    "cannot rename {} to {}: {e}",
                    tmp.display(),
                    out.display()
                ))
            })?;
            Ok(r)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

export_step!(HttpRequest);
