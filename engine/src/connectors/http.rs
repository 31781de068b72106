//! The `rest` connector (drivers `http`, `httpx`): the host side of the WIT `http` interface.

use std::io::Read;

use super::Connectors;
use crate::sandbox::bindings::aetherflow::step::http::{HttpError, HttpErrorKind, Request};

/// Drivers of kind `rest` this build implements.
pub const DRIVERS: &[&str] = &[];

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
        let n = self.reader.read(&mut buf).map_err(|e| HttpError {
            kind: HttpErrorKind::Connection,
            message: format!("reading the response body failed: {e}"),
        })?;
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

impl Connectors {
    /// Send one request through the `rest` resource `name` (grant and kind already checked).
    pub fn http_send(&self, name: &str, _req: Request) -> Result<Response, HttpError> {
        let r = self.resource(name).ok_or_else(|| HttpError {
            kind: HttpErrorKind::UnknownResource,
            message: format!("Unknown resource: {name}"),
        })?;
        Err(HttpError {
            kind: HttpErrorKind::Connection,
            message: Connectors::unknown_driver(r, DRIVERS),
        })
    }
}
