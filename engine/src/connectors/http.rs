//! The `rest` connector (drivers `http`, `httpx`): the host side of the WIT `http` interface.
//!
//! One [`Client`] per resource (kept with [`Connectors::cached`]) holds a `ureq` agent
//! (rustls; the bundled web PKI roots, or the private CA of `options.ca_bundle`; no
//! verification with `options.verify_ssl: false`), the parsed base URL, the default headers
//! (with the bearer token) and the retry policy. A step never sees the token or the default header
//! values: they are added here, and no error message names a header value.
//!
//! Confinement: every request URL is built by appending the step's path to the base URL,
//! so the authority (scheme, host, port, credentials) can never change; a path with a `..`
//! segment (literal or percent-encoded), a scheme-relative `//host`, or an absolute URL
//! that is not under the base URL is refused with `outside-base-url` before anything is
//! sent. Redirects are not followed (a 3xx is returned as the response), because a
//! redirect could leave the base URL.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};
use url::Url;

use super::{tls, Connectors, ResolvedResource};
use crate::sandbox::bindings::aetherflow::step::http::{HttpError, HttpErrorKind, Request};

/// Drivers of kind `rest` this build implements.
pub const DRIVERS: &[&str] = &["rest:http", "rest:httpx"];

/// The reference's default timeout (seconds).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest pause between two attempts: the reference sleeps `min(2^i, 5)` seconds.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Methods a step may use (the WIT `request.method`).
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
/// Headers that describe the connection or the framing: the client sets them itself.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
];

/// A response body being read by a step (the WIT `incoming-body` resource).
pub struct IncomingBody {
    reader: Box<dyn Read + Send + Sync>,
}

impl IncomingBody {
    pub fn new(reader: Box<dyn Read + Send + Sync>) -> Self {
        IncomingBody { reader }
    }

    /// Up to `max` bytes; empty at the end of the body.
    pub fn read(&mut self, max: usize) -> Result<Vec<u8>, HttpError> {
        let mut buf = vec![0u8; max];
        let n = loop {
            match self.reader.read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let kind = if e.kind() == std::io::ErrorKind::TimedOut
                        || e.to_string().to_ascii_lowercase().contains("timeout")
                    {
                        HttpErrorKind::Timeout
                    } else {
                        HttpErrorKind::Connection
                    };
                    return Err(HttpError {
                        kind,
                        message: format!("reading the response body failed: {e}"),
                    });
                }
            }
        };
        buf.truncate(n);
        Ok(buf)
    }
}

/// A response: status, headers and the body to read.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: IncomingBody,
}

/// Makes a reader that is only `Send` usable where `Send + Sync` is required (a body is
/// only ever read through `&mut`, so the lock is never contended).
struct SyncReader<R>(Mutex<R>);

impl<R: Read> Read for SyncReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .read(buf)
    }
}

/// The per-resource client.
pub struct Client {
    resource: String,
    agent: ureq::Agent,
    /// The base URL without a trailing `/` (no query, no fragment).
    base: Url,
    /// The base path without a trailing `/` (`""` for a base URL at the host root).
    base_path: String,
    /// Default headers (lower-case names), the bearer token's `authorization` included.
    headers: Vec<(String, String)>,
    timeout: Duration,
    attempts: u32,
    /// `options.ca_bundle` as given, for the hint of a certificate failure.
    ca_bundle: Option<String>,
}

fn err(kind: HttpErrorKind, message: impl Into<String>) -> HttpError {
    HttpError {
        kind,
        message: message.into(),
    }
}

/// A config or option value as text: strings as they are, numbers and booleans printed.
fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `scheme://host[:port]/path` of a URL: no credentials, no query, no fragment, so it can
/// go into an error message without carrying a secret.
pub fn display_url(u: &Url) -> String {
    let mut s = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
    if let Some(p) = u.port() {
        s.push_str(&format!(":{p}"));
    }
    s.push_str(u.path());
    s
}

/// Whether `path` (up to its query or fragment) has a `..` segment, literally or once or
/// twice percent-encoded, with `/` or `\` as separators.
fn has_dot_dot(path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut text = path.to_string();
    for _ in 0..3 {
        if text.split(['/', '\\']).any(|seg| seg == "..") {
            return true;
        }
        let decoded = percent_decode_str(&text).decode_utf8_lossy().into_owned();
        if decoded == text {
            break;
        }
        text = decoded;
    }
    false
}

/// Whether `s` starts with a URL scheme (`http:`, `file:`, ...).
fn has_scheme(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

impl Client {
    /// Build the client of a `rest` resource from its config and options.
    pub fn from_resource(r: &ResolvedResource) -> Result<Client, HttpError> {
        let name = &r.name;
        if !matches!(r.driver.as_str(), "http" | "httpx") {
            return Err(err(
                HttpErrorKind::InvalidRequest,
                Connectors::unknown_driver(r, DRIVERS),
            ));
        }
        let invalid = |m: String| {
            err(
                HttpErrorKind::InvalidRequest,
                format!("resource `{name}`: {m}"),
            )
        };

        let raw = r
            .config
            .get("base_url")
            .and_then(as_text)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                invalid(
                    "config.base_url is required (e.g. `base_url: https://api.example.com/v1`)"
                        .into(),
                )
            })?;
        let raw = raw.trim().trim_end_matches('/');
        let base = Url::parse(raw).map_err(|e| {
            invalid(format!(
                "config.base_url is not a valid URL ({e}); it must look like `https://host[:port][/path]`"
            ))
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(invalid(format!(
                "config.base_url must be an http:// or https:// URL with a host, not `{}:`",
                base.scheme()
            )));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid(
                "config.base_url must not have a query or a fragment; pass query parameters with each request".into(),
            ));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(invalid(
                "config.base_url must not carry credentials; use config.bearer_token or config.headers".into(),
            ));
        }
        let base_path = base.path().trim_end_matches('/').to_string();

        let mut headers: Vec<(String, String)> = Vec::new();
        match r.config.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let value = as_text(v)
                        .ok_or_else(|| invalid(format!("config.headers.{k} must be a string")))?;
                    check_header(k, &value).map_err(|m| invalid(format!("config.headers: {m}")))?;
                    set_header(&mut headers, k, value);
                }
            }
            Some(_) => {
                return Err(invalid(
                    "config.headers must be a mapping of header names to values".into(),
                ))
            }
        }
        if let Some(token) = r.config.get("bearer_token").and_then(as_text) {
            let token = token.trim();
            if !token.is_empty() && !headers.iter().any(|(k, _)| k == "authorization") {
                let value = format!("Bearer {token}");
                check_header("authorization", &value).map_err(|_| {
                    invalid("config.bearer_token is not a valid header value".into())
                })?;
                headers.push(("authorization".into(), value));
            }
        }

        let timeout = option_timeout(&r.options).map_err(invalid)?;
        let attempts = option_attempts(&r.options).map_err(invalid)?;
        let verify = match tls::setting(r, "verify_ssl") {
            None => true,
            Some(v) => tls::as_bool(v)
                .ok_or_else(|| invalid("options.verify_ssl must be true or false".into()))?,
        };
        let ca_bundle = tls::setting(r, "ca_bundle")
            .and_then(as_text)
            .filter(|s| !s.trim().is_empty());
        let mut tls_config = ureq::tls::TlsConfig::builder().disable_verification(!verify);
        if let Some(path) = &ca_bundle {
            if !verify {
                return Err(invalid(
                    "options.ca_bundle and options.verify_ssl: false exclude each other: keep \
                     ca_bundle to verify the server with that CA, or remove it to skip \
                     verification (insecure)"
                        .into(),
                ));
            }
            let certs =
                tls::read_ca_file(path).map_err(|m| invalid(format!("options.ca_bundle: {m}")))?;
            let certs: Vec<ureq::tls::Certificate<'static>> = certs
                .iter()
                .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                .collect();
            tls_config = tls_config.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let tls = tls_config.build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(format!("aetherflow/{}", env!("CARGO_PKG_VERSION")))
            .accept_encoding("")
            .tls_config(tls)
            .build();
        Ok(Client {
            resource: name.clone(),
            agent: ureq::Agent::new_with_config(config),
            base,
            base_path,
            headers,
            timeout,
            attempts,
            ca_bundle,
        })
    }

    /// The failure of a server certificate check: what is wrong and the fix.
    fn certificate_error(&self, shown: &str, problem: &str) -> HttpError {
        let fix = match &self.ca_bundle {
            Some(path) => format!(
                "check that options.ca_bundle (`{path}`) holds the certificate of the CA that \
                 signed the server's certificate, or set options.verify_ssl: false to skip \
                 verification (insecure)"
            ),
            None => "if the server uses a private or self-signed CA, set options.ca_bundle to \
                     that CA's certificate (a PEM file), or set options.verify_ssl: false to \
                     skip verification (insecure)"
                .to_string(),
        };
        err(
            HttpErrorKind::Connection,
            format!(
                "resource `{}`: TLS certificate check failed for {shown}: {problem}; {fix}",
                self.resource
            ),
        )
    }

    /// The URL a request goes to, or `outside-base-url`.
    pub fn resolve(&self, path: &str, query: &[(String, String)]) -> Result<Url, HttpError> {
        let outside = |why: &str| {
            err(
                HttpErrorKind::OutsideBaseUrl,
                format!(
                    "resource `{}`: request path `{path}` is outside the base URL {} ({why}); use a path relative to it",
                    self.resource,
                    display_url(&self.base)
                ),
            )
        };
        if path.chars().any(|c| c.is_control()) {
            return Err(err(
                HttpErrorKind::InvalidRequest,
                format!(
                    "resource `{}`: the request path contains control characters",
                    self.resource
                ),
            ));
        }
        if has_dot_dot(path) {
            return Err(outside("`..` segments are not allowed"));
        }
        let p = path.trim_start_matches([' ']);
        let mut url = if p.starts_with("//")
            || p.starts_with("\\\\")
            || p.starts_with("/\\")
            || p.starts_with("\\/")
        {
            return Err(outside("a scheme-relative `//host` URL"));
        } else if has_scheme(p) {
            let u = Url::parse(p).map_err(|_| outside("not a valid absolute URL"))?;
            if !u.username().is_empty() || u.password().is_some() {
                return Err(outside("an absolute URL with credentials"));
            }
            u
        } else {
            let rel = p.trim_start_matches('/');
            let joined = if rel.is_empty() {
                self.base.as_str().trim_end_matches('/').to_string()
            } else {
                format!("{}/{rel}", self.base.as_str().trim_end_matches('/'))
            };
            Url::parse(&joined).map_err(|e| {
                err(
                    HttpErrorKind::InvalidRequest,
                    format!(
                        "resource `{}`: request path `{path}` does not make a valid URL: {e}",
                        self.resource
                    ),
                )
            })?
        };
        // Whatever the form, the result must stay on the base URL's origin and path.
        if url.scheme() != self.base.scheme()
            || url.host_str() != self.base.host_str()
            || url.port_or_known_default() != self.base.port_or_known_default()
        {
            return Err(outside("another scheme, host or port"));
        }
        let under = url.path() == self.base_path
            || (url.path().starts_with(&self.base_path)
                && url.path()[self.base_path.len()..].starts_with('/'));
        if !under {
            return Err(outside("not under the base path"));
        }
        url.set_fragment(None);
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// Send the request, retrying transport errors and 5xx answers, and giving up at
    /// `deadline` (the calling step's): no attempt or pause between attempts lasts past it.
    fn send(&self, req: Request, deadline: Option<Instant>) -> Result<Response, HttpError> {
        let method = req.method.trim().to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            return Err(err(
                HttpErrorKind::InvalidRequest,
                format!(
                    "resource `{}`: unsupported HTTP method `{}`; use one of {}",
                    self.resource,
                    req.method,
                    METHODS.join(", ")
                ),
            ));
        }
        let url = self.resolve(&req.path, &req.query)?;
        let mut headers = self.headers.clone();
        for h in &req.headers {
            let name = h.name.trim().to_ascii_lowercase();
            check_header(&name, &h.value).map_err(|m| {
                err(
                    HttpErrorKind::InvalidRequest,
                    format!("resource `{}`: {m}", self.resource),
                )
            })?;
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(err(
                    HttpErrorKind::InvalidRequest,
                    format!(
                        "resource `{}`: the header `{name}` is set by the connector and cannot be given",
                        self.resource
                    ),
                ));
            }
            set_header(&mut headers, &name, h.value.clone());
        }
        let timeout = match req.timeout_ms {
            Some(ms) if ms > 0 => Duration::from_millis(ms as u64),
            _ => self.timeout,
        };
        let shown = format!("{method} {}", display_url(&url));

        let mut attempt = 0u32;
        loop {
            if super::past(deadline) {
                return Err(err(
                    HttpErrorKind::Timeout,
                    format!(
                        "resource `{}`: {shown} was stopped at the step's deadline",
                        self.resource
                    ),
                ));
            }
            let result = self.attempt(
                &method,
                &url,
                &headers,
                req.body.as_deref(),
                timeout,
                deadline,
            );
            attempt += 1;
            let last = attempt >= self.attempts;
            match result {
                Ok(resp) if resp.status().as_u16() >= 500 && !last => {}
                Ok(resp) => return Ok(into_response(resp)),
                // A certificate that fails the check fails it again: no retry.
                Err(e) if certificate_problem(&e).is_some() => {
                    let problem = certificate_problem(&e).unwrap_or_default();
                    return Err(self.certificate_error(&shown, &problem));
                }
                Err(e) if !retryable(&e) => {
                    return Err(err(
                        HttpErrorKind::InvalidRequest,
                        format!("resource `{}`: invalid request {shown}: {e}", self.resource),
                    ))
                }
                Err(e) if last => {
                    let kind = if matches!(e, ureq::Error::Timeout(_)) {
                        HttpErrorKind::Timeout
                    } else {
                        HttpErrorKind::Connection
                    };
                    let why = match &e {
                        ureq::Error::Timeout(_) => {
                            format!("no complete answer within {}", fmt_secs(timeout))
                        }
                        other => other.to_string(),
                    };
                    return Err(err(
                        kind,
                        format!(
                            "resource `{}`: REST request failed after {attempt} attempt(s): {shown}: {why}",
                            self.resource
                        ),
                    ));
                }
                Err(_) => {}
            }
            std::thread::sleep(super::within(backoff(attempt - 1), deadline));
        }
    }

    fn attempt(
        &self,
        method: &str,
        url: &Url,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        timeout: Duration,
        deadline: Option<Instant>,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let mut b = ureq::http::Request::builder()
            .method(method)
            .uri(url.as_str());
        for (k, v) in headers {
            b = b.header(k.as_str(), v.as_str());
        }
        match body {
            None => self.run(b.body(()).map_err(ureq::Error::Http)?, timeout, deadline),
            Some(bytes) => self.run(b.body(bytes).map_err(ureq::Error::Http)?, timeout, deadline),
        }
    }

    /// Run one request with `timeout` for resolving, connecting, the response head and
    /// every read or write (as httpx's single timeout value).
    fn run<S: ureq::AsSendBody>(
        &self,
        r: ureq::http::Request<S>,
        timeout: Duration,
        deadline: Option<Instant>,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let t = Some(super::within(timeout, deadline));
        let r = self
            .agent
            .configure_request(r)
            .timeout_resolve(t)
            .timeout_connect(t)
            .timeout_recv_response(t)
            .timeout_per_read(t)
            .timeout_per_write(t)
            // The step's deadline also bounds the whole exchange (a slow trickle of bytes).
            .timeout_global(deadline.map(|_| super::within(Duration::MAX, deadline)))
            .build();
        self.agent.run(r)
    }
}

/// The pause after failed attempt `i` (0-based): `min(2^i, 5)` seconds, as the reference.
fn backoff(i: u32) -> Duration {
    Duration::from_secs(1u64 << i.min(8)).min(MAX_BACKOFF)
}

fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{s}s")
    }
}

/// Transport failures are retried; a request the client cannot even build is not.
fn retryable(e: &ureq::Error) -> bool {
    !matches!(
        e,
        ureq::Error::BadUri(_)
            | ureq::Error::Http(_)
            | ureq::Error::InvalidProxyUrl
            | ureq::Error::RequireHttpsOnly(_)
            | ureq::Error::BodyExceedsLimit(_)
    )
}

/// A failed certificate check inside a transport error, described.
fn certificate_problem(e: &ureq::Error) -> Option<String> {
    match e {
        ureq::Error::Rustls(r) => tls::certificate_problem(r),
        ureq::Error::Io(io) => tls::certificate_problem(io),
        _ => None,
    }
}

fn into_response(resp: ureq::http::Response<ureq::Body>) -> Response {
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let reader = resp.into_body().into_reader();
    Response {
        status,
        headers,
        body: IncomingBody::new(Box::new(SyncReader(Mutex::new(reader)))),
    }
}

/// A valid header name and value; the message never repeats the value (it may be secret).
fn check_header(name: &str, value: &str) -> Result<(), String> {
    ureq::http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not a valid header name"))?;
    ureq::http::HeaderValue::from_str(value)
        .map_err(|_| format!("the value of header `{name}` is not a valid header value"))?;
    Ok(())
}

/// Set `name` (case-insensitive) to `value`, replacing an earlier value.
fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: String) {
    let name = name.trim().to_ascii_lowercase();
    headers.retain(|(k, _)| *k != name);
    headers.push((name, value));
}

/// `options.timeout` (or `options.timeouts.total`), seconds; 30 by default.
fn option_timeout(options: &Map<String, Value>) -> Result<Duration, String> {
    let v = options.get("timeout").filter(|v| !v.is_null()).or_else(|| {
        options
            .get("timeouts")
            .and_then(|t| t.get("total"))
            .filter(|v| !v.is_null())
    });
    match v {
        None => Ok(DEFAULT_TIMEOUT),
        Some(v) => match as_f64(v) {
            Some(s) if s > 0.0 && s.is_finite() => Ok(Duration::from_secs_f64(s)),
            _ => Err("options.timeout must be a number of seconds greater than 0".into()),
        },
    }
}

/// `options.retry.max_attempts` (or `options.retries`): attempts in all; 0 means 1.
fn option_attempts(options: &Map<String, Value>) -> Result<u32, String> {
    let v = options
        .get("retry")
        .and_then(|r| r.get("max_attempts"))
        .filter(|v| !v.is_null())
        .or_else(|| options.get("retries").filter(|v| !v.is_null()));
    match v {
        None => Ok(1),
        Some(v) => match as_f64(v) {
            Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= 100.0 => Ok((n as u32).max(1)),
            _ => Err("options.retry.max_attempts must be a whole number from 0 to 100".into()),
        },
    }
}

impl Connectors {
    /// Send one request through the `rest` resource `name` (grant and kind already checked).
    pub fn http_send(
        &self,
        name: &str,
        req: Request,
        deadline: Option<Instant>,
    ) -> Result<Response, HttpError> {
        let client: Arc<Client> = self.cached(name, Client::from_resource, || {
            err(
                HttpErrorKind::UnknownResource,
                format!("Unknown resource: {name}"),
            )
        })?;
        client.send(req, deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Client {
        let mut config = Map::new();
        config.insert("base_url".into(), Value::String(base.into()));
        Client::from_resource(&ResolvedResource {
            name: "api".into(),
            kind: "rest".into(),
            driver: "http".into(),
            config,
            options: Map::new(),
        })
        .unwrap_or_else(|e| panic!("{}", e.message))
    }

    fn ok(c: &Client, path: &str) -> String {
        c.resolve(path, &[])
            .unwrap_or_else(|e| panic!("{path}: {}", e.message))
            .to_string()
    }

    fn refused(c: &Client, path: &str) {
        match c.resolve(path, &[]) {
            Err(e) => assert!(
                matches!(e.kind, HttpErrorKind::OutsideBaseUrl),
                "{path}: {}",
                e.message
            ),
            Ok(u) => panic!("{path} was allowed: {u}"),
        }
    }

    #[test]
    fn paths_resolve_under_the_base() {
        let c = client("http://127.0.0.1:8080/api/v1/");
        assert_eq!(ok(&c, "/items"), "http://127.0.0.1:8080/api/v1/items");
        assert_eq!(
            ok(&c, "items?x=1"),
            "http://127.0.0.1:8080/api/v1/items?x=1"
        );
        assert_eq!(ok(&c, ""), "http://127.0.0.1:8080/api/v1");
        assert_eq!(ok(&c, "/"), "http://127.0.0.1:8080/api/v1");
        assert_eq!(ok(&c, "a/./b"), "http://127.0.0.1:8080/api/v1/a/b");
        assert_eq!(ok(&c, "/a:b"), "http://127.0.0.1:8080/api/v1/a:b");
        assert_eq!(
            ok(&c, "http://127.0.0.1:8080/api/v1/x"),
            "http://127.0.0.1:8080/api/v1/x"
        );
        assert_eq!(ok(&c, "a..b/c"), "http://127.0.0.1:8080/api/v1/a..b/c");
        let u = c
            .resolve(
                "items",
                &[("q".into(), "a b&c".into()), ("n".into(), "1".into())],
            )
            .unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8080/api/v1/items?q=a+b%26c&n=1"
        );
        let root = client("https://example.com");
        assert_eq!(ok(&root, "x"), "https://example.com/x");
        assert_eq!(
            ok(&root, "https://example.com:443/y"),
            "https://example.com/y"
        );
    }

    #[test]
    fn escapes_are_refused() {
        let c = client("http://127.0.0.1:8080/api/v1");
        for p in [
            "../admin",
            "/a/../../admin",
            "..",
            "%2e%2e/admin",
            "%2E%2E%2Fadmin",
            "a/%2e%2e/%2e%2e/x",
            "%252e%252e/x",
            "..\\admin",
            "//evil.example/x",
            "\\\\evil.example/x",
            "/\\evil.example/x",
            "http://evil.example/api/v1/x",
            "https://127.0.0.1:8080/api/v1/x",
            "http://127.0.0.1:8081/api/v1/x",
            "http://127.0.0.1:8080/api/v2/x",
            "http://127.0.0.1:8080/api/v1x",
            "http://127.0.0.1:8080/other",
            "http://user:pw@127.0.0.1:8080/api/v1/x",
            "file:///etc/passwd",
            "javascript:alert(1)",
        ] {
            refused(&c, p);
        }
    }

    #[test]
    fn config_errors_name_the_fix() {
        let mut config = Map::new();
        config.insert("base_url".into(), Value::String("ftp://x".into()));
        let r = ResolvedResource {
            name: "api".into(),
            kind: "rest".into(),
            driver: "http".into(),
            config,
            options: Map::new(),
        };
        let e = Client::from_resource(&r).err().unwrap();
        assert!(e.message.contains("http:// or https://"), "{}", e.message);
        let mut r2 = r.clone();
        r2.config.clear();
        let e = Client::from_resource(&r2).err().unwrap();
        assert!(
            e.message.contains("config.base_url is required"),
            "{}",
            e.message
        );
        let mut r3 = r.clone();
        r3.driver = "curl".into();
        let e = Client::from_resource(&r3).err().unwrap();
        assert_eq!(
            e.message,
            "Unknown connector: rest:curl. Loaded: ['rest:http', 'rest:httpx']"
        );
    }

    #[test]
    fn tls_options_are_checked() {
        let mut config = Map::new();
        config.insert("base_url".into(), Value::String("https://x.test".into()));
        let mut r = ResolvedResource {
            name: "api".into(),
            kind: "rest".into(),
            driver: "http".into(),
            config,
            options: Map::new(),
        };
        r.options
            .insert("verify_ssl".into(), Value::String("perhaps".into()));
        let e = Client::from_resource(&r).err().unwrap();
        assert_eq!(
            e.message,
            "resource `api`: options.verify_ssl must be true or false"
        );
        r.options.clear();
        r.options.insert(
            "ca_bundle".into(),
            Value::String("/nonexistent/ca.pem".into()),
        );
        let e = Client::from_resource(&r).err().unwrap();
        assert!(
            e.message.starts_with(
                "resource `api`: options.ca_bundle: cannot read the CA file `/nonexistent/ca.pem`"
            ),
            "{}",
            e.message
        );
    }

    #[test]
    fn options_follow_the_reference() {
        let mut o = Map::new();
        assert_eq!(option_timeout(&o).unwrap(), Duration::from_secs(30));
        assert_eq!(option_attempts(&o).unwrap(), 1);
        o.insert("timeouts".into(), serde_json::json!({"total": 2.5}));
        o.insert("retries".into(), serde_json::json!(0));
        assert_eq!(option_timeout(&o).unwrap(), Duration::from_millis(2500));
        assert_eq!(option_attempts(&o).unwrap(), 1);
        o.insert("timeout".into(), serde_json::json!("4"));
        o.insert("retry".into(), serde_json::json!({"max_attempts": 3}));
        assert_eq!(option_timeout(&o).unwrap(), Duration::from_secs(4));
        assert_eq!(option_attempts(&o).unwrap(), 3);
        assert_eq!(
            (0..5).map(|i| backoff(i).as_secs()).collect::<Vec<_>>(),
            vec![1, 2, 4, 5, 5]
        );
    }
}
