//! Host side of the step world's imports (`log`, `sql`) and the per-store state.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::aetherflow::step::{log, sql, types};
use crate::connectors::sqlite::SqlCursor;
use crate::connectors::Connectors;

/// Most rows one `next-batch` call may return, whatever the guest asks for.
const MAX_BATCH_ROWS: usize = 10_000;
/// Log lines one attempt may emit; beyond that lines are counted and dropped.
const MAX_LOG_LINES: usize = 10_000;
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
}

impl MemLimiter {
    pub fn new(max: usize) -> Self {
        MemLimiter {
            max,
            exceeded: None,
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
    grants: BTreeSet<String>,
    connectors: Arc<Connectors>,
    logger: StepLogger,
    step_id: String,
    log_lines: usize,
}

impl StepEnv {
    pub fn new(
        grants: impl IntoIterator<Item = String>,
        connectors: Arc<Connectors>,
        logger: StepLogger,
        step_id: String,
    ) -> Self {
        StepEnv {
            grants: grants.into_iter().collect(),
            connectors,
            logger,
            step_id,
            log_lines: 0,
        }
    }

    /// A step may use a resource only if the flow named it in the step's inputs (as the
    /// step's `describe` declares), and only as the kind it really is.
    fn check_grant(&self, resource: &str, kind: &str) -> Result<(), sql::SqlError> {
        if !self.grants.contains(resource) {
            return Err(sql::SqlError {
                kind: sql::SqlErrorKind::NotGranted,
                message: format!(
                    "resource `{resource}` is not granted to step `{}`: a step may use only the resources its inputs name",
                    self.step_id
                ),
            });
        }
        match self.connectors.kind(resource) {
            None => Err(sql::SqlError {
                kind: sql::SqlErrorKind::UnknownResource,
                message: format!(
                    "Unknown resource: {resource}. Known: [{}]",
                    self.connectors
                        .names()
                        .iter()
                        .map(|n| format!("'{n}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
            Some(k) if k != kind => Err(sql::SqlError {
                kind: sql::SqlErrorKind::WrongKind,
                message: format!("Resource {resource} is kind={k}, requested kind={kind}"),
            }),
            Some(_) => Ok(()),
        }
    }
}

fn no_step_env() -> sql::SqlError {
    sql::SqlError {
        kind: sql::SqlErrorKind::NotGranted,
        message: "connectors are not available while a step describes itself".into(),
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String, fields: String) -> wasmtime::Result<()> {
        let Some(env) = self.step.as_mut() else {
            return Ok(());
        };
        env.log_lines += 1;
        if env.log_lines > MAX_LOG_LINES {
            if env.log_lines == MAX_LOG_LINES + 1 {
                (env.logger)(
                    LogLevel::Warn,
                    &format!(
                        "log limit of {MAX_LOG_LINES} lines reached; further lines are dropped"
                    ),
                    Map::new(),
                );
            }
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
        if let Err(e) = env.check_grant(&resource, "db") {
            return Ok(Err(e));
        }
        match env.connectors.sql_query(&resource, &statement, &params) {
            Ok(cursor) => Ok(Ok(self.table.push(cursor)?)),
            Err(e) => Ok(Err(e)),
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
        if let Err(e) = env.check_grant(&resource, "db") {
            return Ok(Err(e));
        }
        Ok(env.connectors.sql_execute(&resource, &statement, &params))
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
        Ok(self.table.get_mut(&cursor)?.next_batch(max))
    }

    fn drop(&mut self, cursor: Resource<SqlCursor>) -> wasmtime::Result<()> {
        self.table.delete(cursor)?;
        Ok(())
    }
}
