//! Host side of the step world's imports (`log`, `sql`) and the per-store state.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::aetherflow::step::{digest, files, http, log, mail, sql, types};
use crate::connectors::files::{FileOp, FileOut};
use crate::connectors::{Connectors, IncomingBody, SqlCursor};

/// Most rows one `next-batch` call may return, whatever the guest asks for.
const MAX_BATCH_ROWS: usize = 10_000;
/// Log lines one attempt may emit; beyond that lines are counted and dropped.
pub const MAX_LOG_LINES: usize = 10_000;
/// Most bytes one `incoming-body.read` call may return.
const MAX_READ_BYTES: usize = 1 << 20;
/// Longest log message kept (bytes).
const MAX_LOG_MESSAGE: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Receives a step's log lines; the runner ties them to flow/run/job/step ids.
pub type StepLogger = Arc<dyn Fn(LogLevel, &str, Map<String, Value>) + Send + Sync>;

pub struct HostState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: MemLimiter,
    pub(super) step: Option<StepEnv>,
    /// When the call's deadline passes; clock waits end by then (see deadline.rs).
    pub(super) deadline: Option<std::time::Instant>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps linear memory; remembers a refused growth so the failure can say why.
pub struct MemLimiter {
    max: usize,
    pub exceeded: Option<usize>,
    /// The largest linear memory granted, in bytes.
    pub granted: usize,
}

impl MemLimiter {
    pub fn new(max: usize) -> Self {
        MemLimiter {
            max,
            exceeded: None,
            granted: 0,
        }
    }
}

impl ResourceLimiter for MemLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.exceeded = Some(desired);
            return Ok(false);
        }
        self.granted = self.granted.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// What the running step was granted.
pub struct StepEnv {
    /// Resource name -> the kinds the step may use it as (those its `describe` declares).
    grants: BTreeMap<String, BTreeSet<String>>,
    connectors: Arc<Connectors>,
    logger: StepLogger,
    step_id: String,
    workspace: PathBuf,
    log: LogBudget,
}

/// How much an attempt may log, what it logged, and what was dropped.
#[derive(Debug, Clone, Default)]
pub struct LogBudget {
    pub max_bytes: u64,
    pub lines: usize,
    pub bytes: u64,
    pub dropped_lines: u64,
    pub dropped_bytes: u64,
}

impl LogBudget {
    pub fn new(max_bytes: u64) -> Self {
        LogBudget {
            max_bytes,
            ..Default::default()
        }
    }

    /// Whether a line may still be emitted: `kept` is what it costs (message after
    /// truncation, plus fields), `full` its size as the guest sent it. A refused line is
    /// counted as dropped, with its full size.
    fn admit(&mut self, kept: u64, full: u64) -> bool {
        if self.lines >= MAX_LOG_LINES || self.bytes.saturating_add(kept) > self.max_bytes {
            self.dropped_lines += 1;
            self.dropped_bytes = self.dropped_bytes.saturating_add(full);
            return false;
        }
        self.lines += 1;
        self.bytes += kept;
        true
    }
}

/// Why a connector call was refused before it reached the connector.
enum Refusal {
    NotGranted(String),
    UnknownResource(String),
    WrongKind(String),
}

impl StepEnv {
    pub fn new(
        grants: BTreeMap<String, BTreeSet<String>>,
        connectors: Arc<Connectors>,
        logger: StepLogger,
        step_id: String,
        workspace: PathBuf,
        max_log_bytes: u64,
    ) -> Self {
        StepEnv {
            grants,
            connectors,
            logger,
            step_id,
            workspace,
            log: LogBudget::new(max_log_bytes),
        }
    }

    pub fn log_budget(&self) -> &LogBudget {
        &self.log
    }

    pub fn logger(&self) -> &StepLogger {
        &self.logger
    }

    /// A step may use a resource only if the flow named it for that step (in an input its
    /// `describe` declares, or in its `grants:`), only as a kind the step declares, and
    /// only as one of the kinds the interface serves.
    fn check_grant(&self, resource: &str, kinds: &[&str]) -> Result<(), Refusal> {
        let Some(granted_kinds) = self.grants.get(resource) else {
            return Err(Refusal::NotGranted(format!(
                "resource `{resource}` is not granted to step `{}`: a step may use only the resources its inputs name and those in its `grants:`",
                self.step_id
            )));
        };
        match self.connectors.kind(resource) {
            None => Err(Refusal::UnknownResource(format!(
                "Unknown resource: {resource}. Known: [{}]",
                self.connectors
                    .names()
                    .iter()
                    .map(|n| format!("'{n}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            Some(k) if !kinds.contains(&k) => Err(Refusal::WrongKind(format!(
                "Resource {resource} is kind={k}, requested kind={}",
                kinds.join("|")
            ))),
            Some(k) if !granted_kinds.contains(k) => Err(Refusal::WrongKind(format!(
                "Resource {resource} is kind={k}, but step `{}` declares only kind={} for it",
                self.step_id,
                granted_kinds
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join("|")
            ))),
            Some(_) => Ok(()),
        }
    }

    /// `path` (absolute, or relative to the workspace) as a host path inside the job
    /// workspace, symlinks resolved; a path that leaves the workspace is refused. The file
    /// itself need not exist (a download target), its parent directory must.
    fn confine(&self, path: &str) -> Result<PathBuf, String> {
        let root = self
            .workspace
            .canonicalize()
            .map_err(|e| format!("cannot resolve the workspace: {e}"))?;
        let p = Path::new(path);
        let joined = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.workspace.join(p)
        };
        let resolved = match joined.canonicalize() {
            Ok(r) => r,
            Err(_) => {
                let (Some(parent), Some(name)) = (joined.parent(), joined.file_name()) else {
                    return Err(format!("`{path}` is not a file path"));
                };
                let parent = parent
                    .canonicalize()
                    .map_err(|e| format!("`{path}`: {e}"))?;
                parent.join(name)
            }
        };
        if resolved.starts_with(&root) {
            Ok(resolved)
        } else {
            Err(format!(
                "`{path}` is outside the job workspace `{}`",
                self.workspace.display()
            ))
        }
    }
}

/// `fn $name(Refusal) -> $err`: the refusal as the error record of one interface (each
/// has its own record, with the same three kinds).
macro_rules! refusal_into {
    ($name:ident, $err:ident, $kind:ident) => {
        fn $name(r: Refusal) -> $err {
            let (kind, message) = match r {
                Refusal::NotGranted(m) => ($kind::NotGranted, m),
                Refusal::UnknownResource(m) => ($kind::UnknownResource, m),
                Refusal::WrongKind(m) => ($kind::WrongKind, m),
            };
            $err { kind, message }
        }
    };
}

use files::{FilesError, FilesErrorKind};
use http::{HttpError, HttpErrorKind};
use mail::{MailError, MailErrorKind};
use sql::{SqlError, SqlErrorKind};

refusal_into!(sql_refusal, SqlError, SqlErrorKind);
refusal_into!(http_refusal, HttpError, HttpErrorKind);
refusal_into!(files_refusal, FilesError, FilesErrorKind);
refusal_into!(mail_refusal, MailError, MailErrorKind);

const NO_STEP_ENV: &str = "connectors are not available while a step describes itself";

fn no_step_env() -> sql::SqlError {
    sql_refusal(Refusal::NotGranted(NO_STEP_ENV.into()))
}

impl types::Host for HostState {}

/// The host side of a guest's `digest.sha256` hasher.
#[derive(Default)]
pub struct Sha256Hasher(sha2::Sha256);

impl digest::Host for HostState {}

impl digest::HostSha256 for HostState {
    fn new(&mut self) -> wasmtime::Result<Resource<Sha256Hasher>> {
        Ok(self.table.push(Sha256Hasher::default())?)
    }

    fn update(&mut self, h: Resource<Sha256Hasher>, data: Vec<u8>) -> wasmtime::Result<()> {
        use sha2::Digest;
        self.table.get_mut(&h)?.0.update(&data);
        Ok(())
    }

    fn finish(&mut self, h: Resource<Sha256Hasher>) -> wasmtime::Result<String> {
        use sha2::Digest;
        let digest = self.table.get_mut(&h)?.0.finalize_reset();
        Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    fn drop(&mut self, h: Resource<Sha256Hasher>) -> wasmtime::Result<()> {
        self.table.delete(h)?;
        Ok(())
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String, fields: String) -> wasmtime::Result<()> {
        let Some(env) = self.step.as_mut() else {
            return Ok(());
        };
        let kept = message.len().min(MAX_LOG_MESSAGE) + fields.len();
        if !env
            .log
            .admit(kept as u64, (message.len() + fields.len()) as u64)
        {
            return Ok(());
        }
        let mut message = message;
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("…[truncated]");
        }
        let fields = match serde_json::from_str::<Value>(&fields) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        (env.logger)(level, &message, fields);
        Ok(())
    }
}

impl sql::Host for HostState {
    fn query(
        &mut self,
        resource: String,
        statement: String,
        params: String,
    ) -> wasmtime::Result<Result<Resource<SqlCursor>, sql::SqlError>> {
        let Some(env) = self.step.as_ref() else {
            return Ok(Err(no_step_env()));
        };
        if let Err(r) = env.check_grant(&resource, &["db"]) {
            return Ok(Err(sql_refusal(r)));
        }
        match env
            .connectors
            .sql_query(&resource, &statement, &params, self.deadline)
        {
            Ok(cursor) => Ok(Ok(self.table.push(cursor)?)),
            Err(e) => self.connector_result(Err(e)),
        }
    }

    fn execute(
        &mut self,
        resource: String,
        statement: String,
        params: String,
    ) -> wasmtime::Result<Result<u64, sql::SqlError>> {
        let Some(env) = self.step.as_ref() else {
            return Ok(Err(no_step_env()));
        };
        if let Err(r) = env.check_grant(&resource, &["db"]) {
            return Ok(Err(sql_refusal(r)));
        }
        self.connector_result(env.connectors.sql_execute(
            &resource,
            &statement,
            &params,
            self.deadline,
        ))
    }
}

impl sql::HostCursor for HostState {
    fn columns(&mut self, cursor: Resource<SqlCursor>) -> wasmtime::Result<Vec<sql::Column>> {
        Ok(self.table.get(&cursor)?.columns().to_vec())
    }

    fn next_batch(
        &mut self,
        cursor: Resource<SqlCursor>,
        max_rows: u32,
    ) -> wasmtime::Result<Result<Vec<Vec<sql::Cell>>, sql::SqlError>> {
        let max = (max_rows as usize).clamp(1, MAX_BATCH_ROWS);
        let result = self.table.get_mut(&cursor)?.next_batch(max);
        self.connector_result(result)
    }

    fn next_packed(
        &mut self,
        cursor: Resource<SqlCursor>,
        max_rows: u32,
    ) -> wasmtime::Result<Result<sql::PackedRows, sql::SqlError>> {
        let max = (max_rows as usize).clamp(1, MAX_BATCH_ROWS);
        let result = self.table.get_mut(&cursor)?.next_packed(max);
        self.connector_result(result)
    }

    fn drop(&mut self, cursor: Resource<SqlCursor>) -> wasmtime::Result<()> {
        self.table.delete(cursor)?;
        Ok(())
    }
}

impl http::Host for HostState {
    fn send(
        &mut self,
        resource: String,
        req: http::Request,
    ) -> wasmtime::Result<Result<http::Response, http::HttpError>> {
        let Some(env) = self.step.as_ref() else {
            return Ok(Err(http_refusal(Refusal::NotGranted(NO_STEP_ENV.into()))));
        };
        if let Err(r) = env.check_grant(&resource, &["rest"]) {
            return Ok(Err(http_refusal(r)));
        }
        match env.connectors.http_send(&resource, req, self.deadline) {
            Ok(resp) => Ok(Ok(http::Response {
                status: resp.status,
                headers: resp
                    .headers
                    .into_iter()
                    .map(|(name, value)| http::Header { name, value })
                    .collect(),
                body: self.table.push(resp.body)?,
            })),
            Err(e) => self.connector_result(Err(e)),
        }
    }
}

impl http::HostIncomingBody for HostState {
    fn read(
        &mut self,
        body: Resource<IncomingBody>,
        max_bytes: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, http::HttpError>> {
        let max = (max_bytes as usize).clamp(1, MAX_READ_BYTES);
        Ok(self.table.get_mut(&body)?.read(max))
    }

    fn drop(&mut self, body: Resource<IncomingBody>) -> wasmtime::Result<()> {
        self.table.delete(body)?;
        Ok(())
    }
}

impl HostState {
    /// A connector call's result. An error that came back once the step's deadline had
    /// passed (the call was cut off by it) fails the step as timed out instead.
    fn connector_result<T, E>(&self, r: Result<T, E>) -> wasmtime::Result<Result<T, E>> {
        if r.is_err() {
            self.check_deadline()?;
        }
        Ok(r)
    }

    /// Grant check and workspace confinement shared by the `files` functions.
    fn files_call(
        &mut self,
        resource: &str,
        local: Option<&str>,
        op: impl FnOnce(
            &Connectors,
            Option<&Path>,
            Option<Instant>,
        ) -> Result<FileOut, files::FilesError>,
    ) -> wasmtime::Result<Result<FileOut, files::FilesError>> {
        let Some(env) = self.step.as_ref() else {
            return Ok(Err(files_refusal(Refusal::NotGranted(NO_STEP_ENV.into()))));
        };
        if let Err(r) = env.check_grant(resource, crate::connectors::files::KINDS) {
            return Ok(Err(files_refusal(r)));
        }
        let local = match local {
            Some(p) => match env.confine(p) {
                Ok(p) => Some(p),
                Err(message) => {
                    return Ok(Err(files::FilesError {
                        kind: files::FilesErrorKind::OutsideWorkspace,
                        message,
                    }))
                }
            },
            None => None,
        };
        let out = op(&env.connectors, local.as_deref(), self.deadline);
        self.connector_result(out)
    }
}

fn done(
    out: wasmtime::Result<Result<FileOut, files::FilesError>>,
) -> wasmtime::Result<Result<(), files::FilesError>> {
    Ok(out?.map(|_| ()))
}

impl files::Host for HostState {
    fn list(
        &mut self,
        resource: String,
        dir: String,
    ) -> wasmtime::Result<Result<Vec<files::RemoteFileMeta>, files::FilesError>> {
        let out = self.files_call(&resource, None, |c, _, d| {
            c.files_op(&resource, FileOp::List { dir: &dir }, d)
        })?;
        Ok(out.map(|o| match o {
            FileOut::Listing(v) => v,
            _ => Vec::new(),
        }))
    }

    fn read_bytes(
        &mut self,
        resource: String,
        path: String,
    ) -> wasmtime::Result<Result<Vec<u8>, files::FilesError>> {
        let out = self.files_call(&resource, None, |c, _, d| {
            c.files_op(&resource, FileOp::ReadBytes { path: &path }, d)
        })?;
        Ok(out.map(|o| match o {
            FileOut::Bytes(v) => v,
            _ => Vec::new(),
        }))
    }

    fn write_bytes(
        &mut self,
        resource: String,
        path: String,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), files::FilesError>> {
        done(self.files_call(&resource, None, |c, _, d| {
            c.files_op(&resource, FileOp::WriteBytes { path: &path, data }, d)
        }))
    }

    fn upload(
        &mut self,
        resource: String,
        local_path: String,
        remote_path: String,
    ) -> wasmtime::Result<Result<(), files::FilesError>> {
        done(
            self.files_call(&resource, Some(&local_path), |c, local, d| {
                let local = local.expect("confined local path");
                c.files_op(
                    &resource,
                    FileOp::Upload {
                        local,
                        remote: &remote_path,
                    },
                    d,
                )
            }),
        )
    }

    fn download(
        &mut self,
        resource: String,
        remote_path: String,
        local_path: String,
    ) -> wasmtime::Result<Result<(), files::FilesError>> {
        done(
            self.files_call(&resource, Some(&local_path), |c, local, d| {
                let local = local.expect("confined local path");
                c.files_op(
                    &resource,
                    FileOp::Download {
                        remote: &remote_path,
                        local,
                    },
                    d,
                )
            }),
        )
    }

    fn delete(
        &mut self,
        resource: String,
        path: String,
        recursive: bool,
    ) -> wasmtime::Result<Result<(), files::FilesError>> {
        done(self.files_call(&resource, None, |c, _, d| {
            c.files_op(
                &resource,
                FileOp::Delete {
                    path: &path,
                    recursive,
                },
                d,
            )
        }))
    }

    fn mkdir(
        &mut self,
        resource: String,
        path: String,
        parents: bool,
    ) -> wasmtime::Result<Result<(), files::FilesError>> {
        done(self.files_call(&resource, None, |c, _, d| {
            c.files_op(
                &resource,
                FileOp::Mkdir {
                    path: &path,
                    parents,
                },
                d,
            )
        }))
    }
}

impl mail::Host for HostState {
    fn send(
        &mut self,
        resource: String,
        msg: mail::Message,
    ) -> wasmtime::Result<Result<(), mail::MailError>> {
        let Some(env) = self.step.as_ref() else {
            return Ok(Err(mail_refusal(Refusal::NotGranted(NO_STEP_ENV.into()))));
        };
        if let Err(r) = env.check_grant(&resource, &["mail"]) {
            return Ok(Err(mail_refusal(r)));
        }
        let mut attachments = Vec::with_capacity(msg.attachments.len());
        for a in &msg.attachments {
            match env.confine(a) {
                Ok(p) => attachments.push(p),
                Err(message) => {
                    return Ok(Err(mail::MailError {
                        kind: mail::MailErrorKind::InvalidMessage,
                        message: format!("attachment {message}"),
                    }))
                }
            }
        }
        self.connector_result(
            env.connectors
                .mail_send(&resource, msg, attachments, self.deadline),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_budget_keeps_lines_until_bytes_or_lines_run_out() {
        let mut b = LogBudget::new(250);
        assert!(b.admit(100, 100));
        assert!(b.admit(100, 100));
        assert!(!b.admit(100, 5000), "would pass 250 bytes");
        assert!(b.admit(50, 50), "a smaller line still fits");
        assert!(!b.admit(1, 1));
        assert_eq!((b.lines, b.bytes), (3, 250));
        assert_eq!((b.dropped_lines, b.dropped_bytes), (2, 5001));

        let mut b = LogBudget::new(u64::MAX);
        for _ in 0..MAX_LOG_LINES {
            assert!(b.admit(0, 0));
        }
        assert!(!b.admit(0, 0), "line cap");
        assert_eq!(b.dropped_lines, 1);
    }
}
