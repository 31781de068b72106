//! HTTP over a granted `rest` resource.
//!
//! The host adds the resource's base URL, default headers and credentials, applies its
//! timeout and retries, and refuses any request that would leave the base URL; the step
//! never sees the token. The response body streams: read it in chunks ([`Response::read`],
//! or [`std::io::Read`]), so a large download never has to sit in memory.
//!
//! ```ignore
//! use aetherflow_sdk::http::{self, Request};
//!
//! let mut resp = http::send("api", &Request::get("/items").query("page", "2"))?;
//! let body = resp.read_to_end(1 << 20)?; // at most 1 MiB, else an error
//! ```

use std::fmt;
use std::time::Duration;

use crate::bindings::aetherflow::step::http as wit;
use crate::{Error, ErrorKind};
use serde_json::Value;

pub use wit::HttpErrorKind;

/// Largest chunk one host read returns.
const CHUNK: u32 = 1 << 20;

/// One request. `path` is relative to the resource's `base_url` (`/items`, `items?x=1`),
/// or an absolute URL under it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Query parameters appended to the URL, in order.
    pub query: Vec<(String, String)>,
    /// Extra headers; they override the resource's defaults of the same name.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Overrides the resource's timeout for this request.
    pub timeout: Option<Duration>,
}

impl Request {
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Self {
        Request {
            method: method.into(),
            path: path.into(),
            ..Default::default()
        }
    }
    pub fn get(path: impl Into<String>) -> Self {
        Self::new("GET", path)
    }
    pub fn post(path: impl Into<String>) -> Self {
        Self::new("POST", path)
    }
    pub fn put(path: impl Into<String>) -> Self {
        Self::new("PUT", path)
    }
    pub fn delete(path: impl Into<String>) -> Self {
        Self::new("DELETE", path)
    }
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }
    /// A JSON body, with `content-type: application/json` unless a content type is set.
    pub fn json(mut self, value: &Value) -> Self {
        self.body = Some(value.to_string().into_bytes());
        if !self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            self.headers
                .push(("content-type".into(), "application/json".into()));
        }
        self
    }
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Why a request failed (see the WIT `http-error-kind`).
#[derive(Debug, Clone)]
pub struct HttpError {
    pub kind: HttpErrorKind,
    pub message: String,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for Error {
    fn from(e: HttpError) -> Error {
        let kind = match e.kind {
            HttpErrorKind::Timeout => ErrorKind::Timeout,
            HttpErrorKind::InvalidRequest | HttpErrorKind::OutsideBaseUrl => {
                ErrorKind::InvalidInput
            }
            _ => ErrorKind::Connector,
        };
        Error::new(kind, e.message)
    }
}

fn from_wit(e: wit::HttpError) -> HttpError {
    HttpError {
        kind: e.kind,
        message: e.message,
    }
}

/// A response: status, headers (lower-case names, in the server's order) and the body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    body: wit::IncomingBody,
    done: bool,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the `content-type` is JSON (`application/json`, `…+json`).
    pub fn is_json(&self) -> bool {
        self.header("content-type").is_some_and(|ct| {
            let mime = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
    }

    /// The next chunk of the body, up to `max` bytes; empty once the body is complete.
    pub fn read(&mut self, max: u32) -> Result<Vec<u8>, HttpError> {
        if self.done {
            return Ok(Vec::new());
        }
        let chunk = self.body.read(max.clamp(1, CHUNK)).map_err(from_wit)?;
        if chunk.is_empty() {
            self.done = true;
        }
        Ok(chunk)
    }

    /// The whole body, or `Err(n)` with the bytes read so far when it is longer than
    /// `limit` (then `n.len() == limit + 1` at most; the rest is not read).
    pub fn read_limited(&mut self, limit: u64) -> Result<Result<Vec<u8>, Vec<u8>>, HttpError> {
        let mut out = Vec::new();
        loop {
            let left = (limit + 1).saturating_sub(out.len() as u64);
            if left == 0 {
                return Ok(Err(out));
            }
            let chunk = self.read(left.min(CHUNK as u64) as u32)?;
            if chunk.is_empty() {
                return Ok(Ok(out));
            }
            out.extend_from_slice(&chunk);
        }
    }

    /// The whole body; an error naming the limit when it is longer than `limit` bytes.
    pub fn read_to_end(&mut self, limit: u64) -> Result<Vec<u8>, Error> {
        match self.read_limited(limit)? {
            Ok(v) => Ok(v),
            Err(_) => Err(Error::io(format!(
                "the response body is larger than {limit} bytes"
            ))),
        }
    }
}

impl std::io::Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let max = buf.len().min(CHUNK as usize) as u32;
        if max == 0 {
            return Ok(0);
        }
        let chunk = Response::read(self, max).map_err(|e| {
            let kind = match e.kind {
                HttpErrorKind::Timeout => std::io::ErrorKind::TimedOut,
                _ => std::io::ErrorKind::Other,
            };
            std::io::Error::new(kind, e.message)
        })?;
        buf[..chunk.len()].copy_from_slice(&chunk);
        Ok(chunk.len())
    }
}

/// Send `req` through the `rest` resource named `resource`. Any status is a response (a
/// 404 is not an error here); transport errors and 5xx answers are retried by the host as
/// the resource's options say.
pub fn send(resource: &str, req: &Request) -> Result<Response, HttpError> {
    let wreq = wit::Request {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        headers: req
            .headers
            .iter()
            .map(|(name, value)| wit::Header {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        body: req.body.clone(),
        timeout_ms: req
            .timeout
            .map(|d| d.as_millis().clamp(1, u32::MAX as u128) as u32),
    };
    let resp = wit::send(resource, &wreq).map_err(from_wit)?;
    Ok(Response {
        status: resp.status,
        headers: resp
            .headers
            .into_iter()
            .map(|h| (h.name, h.value))
            .collect(),
        body: resp.body,
        done: false,
    })
}
