//! `aetherflow-process`: the engine's native `external.process` step, the explicit escape
//! hatch that runs an OS command (parity checklist §8.1 `external.process`, §8.0 path
//! resolution, §1.4 rows "5x" validation, §10.1 events).
//!
//! Deliberate fixes of reference defects (parity §0.16 / §8.1 BUG?):
//! * `capture` mode captures the complete output: the reader threads reach EOF before the
//!   text is taken.
//! * `shell: true` with a string command runs it as a real shell command line
//!   (`/bin/sh -c '<command> <shlex-quoted args…>'`); with a list it runs the shlex-joined list.
//! * retry + `file` log mode: every attempt appends to the (re)opened log file.
//!
//! Other decisions, where the reference is silent or Python-specific:
//! * The child is spawned in its own process group; timeout and cancellation signal the whole
//!   group (SIGTERM, `kill_grace_seconds`, SIGKILL), so grandchildren die too.
//! * An attempt ends when the leader has exited **and** the captured pipes reached EOF; a
//!   background process that keeps a captured pipe open keeps the step waiting (still bounded
//!   by the timeout and the cancellation flag). In normal completion, leftover group members
//!   are not killed (as in the reference).
//! * The child's stdin is `/dev/null` (a background process group must not read the terminal).
//! * All inputs are parsed and checked before any side effect (marker check, tmp dir wipe).
//! * Inputs the reference would crash on with a Python `TypeError`/`AttributeError` (e.g. a
//!   non-mapping `log`) give [`ProcessError::InvalidInput`] with a readable message.
//! * The shell-mode warning log line of the reference is not emitted (no logger here).

mod exec;
mod paths;
mod pyfmt;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use exec::{Running, StreamKind, WaitOutcome};
use paths::PathPolicy;
use pyfmt::{as_list, py_float, py_int, py_str, shlex_quote, str_list_repr, truthy};

// ---------------------------------------------------------------------------------------------
// Validation (§1.4 rows 5x)
// ---------------------------------------------------------------------------------------------

/// One semantic validation issue for an `external.process` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationIssue {
    /// Location relative to `jobs[i].steps[j].inputs.`: `command`, `log.stdout`, `log.stderr`,
    /// `log.file_path` or `idempotency` (the reference reports `inputs.idempotency`).
    pub loc_suffix: String,
    /// `semantic:external_process_*`.
    pub code: &'static str,
    /// The reference's exact message.
    pub msg: String,
}

/// Code: `inputs.command` is absent.
pub const CODE_MISSING_COMMAND: &str = "semantic:external_process_missing_command";
/// Code: `inputs.command` is neither a string nor a list.
pub const CODE_COMMAND_TYPE: &str = "semantic:external_process_command_type";
/// Code: unknown `log.stdout` / `log.stderr` mode (case-sensitive at validation).
pub const CODE_LOG_MODE: &str = "semantic:external_process_log_mode";
/// Code: a `file` log mode without `log.file_path`.
pub const CODE_LOG_FILE: &str = "semantic:external_process_log_file";
/// Code: `atomic_dir` without both directories.
pub const CODE_ATOMIC_DIR: &str = "semantic:external_process_atomic_dir";

fn issue(loc: &str, code: &'static str, msg: String) -> ValidationIssue {
    ValidationIssue {
        loc_suffix: loc.to_string(),
        code,
        msg,
    }
}

/// The validator's `external.process` checks, in the reference's order. `inputs` is the step's
/// (unrendered) `inputs` mapping. A missing command stops the checks for that step.
pub fn validate(inputs: &Value) -> Vec<ValidationIssue> {
    let mut issues = Vec::new();
    let empty = Map::new();
    let obj = inputs.as_object().unwrap_or(&empty);
    let Some(cmd) = obj.get("command") else {
        issues.push(issue(
            "command",
            CODE_MISSING_COMMAND,
            "external.process requires inputs.command".to_string(),
        ));
        return issues;
    };
    if !matches!(cmd, Value::String(_) | Value::Array(_)) {
        issues.push(issue(
            "command",
            CODE_COMMAND_TYPE,
            "external.process inputs.command must be a string or list".to_string(),
        ));
    }
    let log_cfg = obj.get("log").filter(|v| truthy(v));
    if let Some(Value::Object(log)) = log_cfg {
        for key in ["stdout", "stderr"] {
            let mode = log.get(key).filter(|v| truthy(v));
            let ok = match mode {
                None => true,
                Some(Value::String(m)) => {
                    matches!(m.as_str(), "inherit" | "capture" | "file" | "discard")
                }
                Some(_) => false,
            };
            if !ok {
                let shown = mode.map(py_str).unwrap_or_default();
                issues.push(issue(
                    &format!("log.{key}"),
                    CODE_LOG_MODE,
                    format!("Unknown log mode: {shown}"),
                ));
            }
        }
        let is_file = |k: &str| log.get(k).and_then(Value::as_str) == Some("file");
        if (is_file("stdout") || is_file("stderr")) && !log.get("file_path").is_some_and(truthy) {
            issues.push(issue(
                "log.file_path",
                CODE_LOG_FILE,
                "log.file_path is required when stdout/stderr mode is 'file'".to_string(),
            ));
        }
    }
    let idem = obj.get("idempotency").filter(|v| truthy(v));
    if let Some(Value::Object(idem)) = idem {
        let strat = idem.get("strategy").filter(|v| truthy(v));
        if strat.and_then(Value::as_str) == Some("atomic_dir")
            && (!idem.get("temp_output_dir").is_some_and(truthy)
                || !idem.get("final_output_dir").is_some_and(truthy))
        {
            issues.push(issue(
                "idempotency",
                CODE_ATOMIC_DIR,
                "atomic_dir requires temp_output_dir and final_output_dir".to_string(),
            ));
        }
    }
    issues
}

// ---------------------------------------------------------------------------------------------
// Public run API
// ---------------------------------------------------------------------------------------------

/// What the step needs from the engine.
#[derive(Debug, Clone)]
pub struct ProcessContext {
    pub flow_id: String,
    pub run_id: String,
    pub job_id: String,
    pub step_id: String,
    /// Reported as `step_type` in every event (normally `external.process`).
    pub step_type: String,
    /// The immutable env snapshot: the child's base env when `inherit_env` is true, and the
    /// source of `AETHERFLOW_STRICT_SANDBOX` / `AETHERFLOW_MODE_ENTERPRISE` for path checks.
    pub env: BTreeMap<String, String>,
    /// The job artifacts dir: base of relative paths, always an allowed root.
    pub artifacts_dir: PathBuf,
    /// `settings.work_root` (the flow workspace root): an allowed root when it exists.
    pub workspace_root: Option<PathBuf>,
    /// Set to stop: checked while waiting for the child and during retry backoff.
    pub cancel: Arc<AtomicBool>,
}

/// Final status of a successful call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessStatus {
    Success,
    /// Only from the `marker` idempotency strategy (reason `marker_present`).
    Skipped,
}

/// The step result: outputs `{exit_code, attempts, stdout?, stderr?, log_file?, ...outputs}`,
/// or `{skipped: true, marker}` when skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessOutcome {
    pub status: ProcessStatus,
    pub outputs: Map<String, Value>,
    pub reason: Option<String>,
}

/// Log level of an event (§10.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventLevel {
    Info,
    Warning,
    Error,
}

/// The step's events (§10.1), fields in the reference's order.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessEvent {
    /// `external_process_start` (INFO). `command` is the argv list (command + args), also in
    /// shell mode.
    Start {
        attempt: u32,
        command: Vec<String>,
        job_id: String,
        step_id: String,
        step_type: String,
    },
    /// `external_process_stdout` (INFO): one captured line without `\n`; empty lines skipped.
    Stdout {
        message: String,
        job_id: String,
        step_id: String,
        step_type: String,
    },
    /// `external_process_stderr` (WARNING).
    Stderr {
        message: String,
        job_id: String,
        step_id: String,
        step_type: String,
    },
    /// `external_process_timeout` (ERROR).
    Timeout {
        attempt: u32,
        job_id: String,
        step_id: String,
        step_type: String,
    },
    /// `external_process_exit` (ERROR): exit code not in `success.exit_codes`.
    Exit {
        attempt: u32,
        exit_code: i64,
        job_id: String,
        step_id: String,
        step_type: String,
    },
    /// `external_process_success` (INFO).
    Success {
        attempt: u32,
        exit_code: i64,
        job_id: String,
        step_id: String,
        step_type: String,
    },
}

impl ProcessEvent {
    /// The event name, e.g. `external_process_start`.
    pub fn name(&self) -> &'static str {
        match self {
            ProcessEvent::Start { .. } => "external_process_start",
            ProcessEvent::Stdout { .. } => "external_process_stdout",
            ProcessEvent::Stderr { .. } => "external_process_stderr",
            ProcessEvent::Timeout { .. } => "external_process_timeout",
            ProcessEvent::Exit { .. } => "external_process_exit",
            ProcessEvent::Success { .. } => "external_process_success",
        }
    }

    /// The log level the reference uses for this event.
    pub fn level(&self) -> EventLevel {
        match self {
            ProcessEvent::Start { .. }
            | ProcessEvent::Stdout { .. }
            | ProcessEvent::Success { .. } => EventLevel::Info,
            ProcessEvent::Stderr { .. } => EventLevel::Warning,
            ProcessEvent::Timeout { .. } | ProcessEvent::Exit { .. } => EventLevel::Error,
        }
    }

    /// The event's fields in the reference's order (for text or JSON log lines).
    pub fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let (job_id, step_id, step_type) = match self {
            ProcessEvent::Start {
                attempt,
                command,
                job_id,
                step_id,
                step_type,
            } => {
                m.insert("attempt".into(), Value::from(*attempt));
                m.insert("command".into(), Value::from(command.clone()));
                (job_id, step_id, step_type)
            }
            ProcessEvent::Stdout {
                message,
                job_id,
                step_id,
                step_type,
            }
            | ProcessEvent::Stderr {
                message,
                job_id,
                step_id,
                step_type,
            } => {
                m.insert("message".into(), Value::from(message.clone()));
                (job_id, step_id, step_type)
            }
            ProcessEvent::Timeout {
                attempt,
                job_id,
                step_id,
                step_type,
            } => {
                m.insert("attempt".into(), Value::from(*attempt));
                (job_id, step_id, step_type)
            }
            ProcessEvent::Exit {
                attempt,
                exit_code,
                job_id,
                step_id,
                step_type,
            }
            | ProcessEvent::Success {
                attempt,
                exit_code,
                job_id,
                step_id,
                step_type,
            } => {
                m.insert("attempt".into(), Value::from(*attempt));
                m.insert("exit_code".into(), Value::from(*exit_code));
                (job_id, step_id, step_type)
            }
        };
        m.insert("job_id".into(), Value::from(job_id.clone()));
        m.insert("step_id".into(), Value::from(step_id.clone()));
        m.insert("step_type".into(), Value::from(step_type.clone()));
        m
    }
}

/// Step failures. `Display` gives the reference's message where it has one.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// Bad inputs (the reference's `ValueError`s, e.g. `Unsupported log mode: <m>`).
    #[error("{0}")]
    InvalidInput(String),
    /// A path refused by the sandbox (§8.0): `Path not under allowed roots: …` or
    /// `Path escapes job artifacts dir in enterprise mode: …`.
    #[error("{0}")]
    PathNotAllowed(String),
    /// `external.process timed out after <timeout>s` (timeout printed like a Python float).
    #[error("external.process timed out after {}s", pyfmt::float_repr(*.timeout_seconds))]
    Timeout { timeout_seconds: f64 },
    /// `external.process failed with exit code <rc>\n<cmd> - <popen_args>\n<captured stderr>`.
    ///
    /// The reference prints the Python repr of the argv list; `command` is a readable
    /// equivalent in the same style (`['sh', '-c', 'exit 3']`). `popen_args` is the same list,
    /// or the shell command line in shell mode. `stderr` is the captured stderr (empty unless
    /// `log.stderr` is `capture`).
    #[error(
        "external.process failed with exit code {exit_code}\n{command} - {popen_args}\n{stderr}"
    )]
    Failed {
        exit_code: i64,
        command: String,
        popen_args: String,
        stderr: String,
    },
    /// `external.process outputs invalid: <reason>` with reason `missing_required_file:<p>`,
    /// `missing_required_glob:<g>` or `forbidden_file_present:<p>` (not retried).
    #[error("external.process outputs invalid: {reason}")]
    OutputsInvalid { reason: String },
    /// The command could not be started (the reference raises Python's `OSError`).
    #[error("external.process could not start {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// File-system work around the process failed (log file, atomic dir, waiting).
    #[error("external.process {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The cancellation flag was set; the process group was terminated.
    #[error("external.process cancelled")]
    Cancelled,
    /// `retry.max_attempts` < 1: no attempt ran (the reference's `external_process_failed`).
    #[error("external_process_failed")]
    NoAttempts,
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ProcessError {
    let context = context.into();
    move |source| ProcessError::Io { context, source }
}

// ---------------------------------------------------------------------------------------------
// Input parsing
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogMode {
    Inherit,
    Capture,
    File,
    Discard,
}

struct SuccessSpec {
    exit_codes: Vec<i64>,
    require_files: Vec<String>,
    require_glob: Vec<String>,
    forbid_files: Vec<String>,
}

struct RetrySpec {
    max_attempts: i64,
    backoff: f64,
    mult: f64,
    max_backoff: f64,
    retry_on_exit: Vec<i64>,
    retry_on_timeout: bool,
}

enum Idempotency {
    None,
    Marker(Option<String>),
    AtomicDir {
        tmp: String,
        final_dir: String,
        rename: bool,
    },
}

struct Config {
    argv: Vec<String>,
    /// Present in shell mode: the `/bin/sh -c` command line.
    shell_line: Option<String>,
    cwd: Option<PathBuf>,
    env: BTreeMap<String, String>,
    timeout: Option<f64>,
    kill_grace: i64,
    stdout_mode: LogMode,
    stderr_mode: LogMode,
    max_cap: usize,
    log_file: Option<PathBuf>,
    idem: Idempotency,
    success: SuccessSpec,
    retry: RetrySpec,
    outputs: Map<String, Value>,
}

fn invalid(msg: impl Into<String>) -> ProcessError {
    ProcessError::InvalidInput(msg.into())
}

/// `inputs.get(key) or {}`; a truthy non-mapping is an error.
fn mapping<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, ProcessError> {
    match obj.get(key) {
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(v) if truthy(v) => Err(invalid(format!(
            "external.process inputs.{name} must be a mapping"
        ))),
        _ => Ok(None),
    }
}

/// `int(obj.get(key, default))`: absent → default, present → converted (`null` is an error).
fn int_or(
    obj: Option<&Map<String, Value>>,
    key: &str,
    name: &str,
    default: i64,
) -> Result<i64, ProcessError> {
    match obj.and_then(|o| o.get(key)) {
        None => Ok(default),
        Some(v) => py_int(v).ok_or_else(|| {
            invalid(format!(
                "external.process inputs.{name} must be an integer, got {}",
                pyfmt::py_repr(v)
            ))
        }),
    }
}

/// `float(obj.get(key, default) or default)`: falsy → default.
fn float_or(
    obj: Option<&Map<String, Value>>,
    key: &str,
    name: &str,
    default: f64,
) -> Result<f64, ProcessError> {
    match obj.and_then(|o| o.get(key)).filter(|v| truthy(v)) {
        None => Ok(default),
        Some(v) => py_float(v).ok_or_else(|| {
            invalid(format!(
                "external.process inputs.{name} must be a number, got {}",
                pyfmt::py_repr(v)
            ))
        }),
    }
}

fn bool_or(obj: Option<&Map<String, Value>>, key: &str, default: bool) -> bool {
    obj.and_then(|o| o.get(key)).map_or(default, truthy)
}

fn int_list(v: Option<&Value>, name: &str) -> Result<Vec<i64>, ProcessError> {
    as_list(v)
        .into_iter()
        .map(|x| {
            py_int(x).ok_or_else(|| {
                invalid(format!(
                    "external.process inputs.{name} must contain integers, got {}",
                    pyfmt::py_repr(x)
                ))
            })
        })
        .collect()
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    as_list(v).into_iter().map(py_str).collect()
}

fn log_mode(log: Option<&Map<String, Value>>, key: &str) -> Result<LogMode, ProcessError> {
    let v = log.and_then(|l| l.get(key)).filter(|v| truthy(v));
    let Some(v) = v else {
        return Ok(LogMode::Inherit);
    };
    let m = py_str(v);
    match (v.is_string(), m.to_lowercase().as_str()) {
        (true, "inherit") => Ok(LogMode::Inherit),
        (true, "capture") => Ok(LogMode::Capture),
        (true, "file") => Ok(LogMode::File),
        (true, "discard") => Ok(LogMode::Discard),
        (_, lower) => Err(invalid(format!("Unsupported log mode: {lower}"))),
    }
}

fn parse(
    inputs: &Value,
    ctx: &ProcessContext,
    policy: &PathPolicy<'_>,
) -> Result<Config, ProcessError> {
    let empty = Map::new();
    let obj = inputs.as_object().unwrap_or(&empty);
    let resolve = |raw: &str| policy.resolve(raw).map_err(ProcessError::PathNotAllowed);

    let command = obj.get("command").ok_or_else(|| {
        invalid("Step ".to_string() + &ctx.step_id + " missing inputs: ['command']")
    })?;
    let (mut argv, command_str) = match command {
        Value::Array(items) => (items.iter().map(py_str).collect::<Vec<_>>(), None),
        Value::String(s) => (vec![s.clone()], Some(s.clone())),
        _ => {
            return Err(invalid(
                "external.process inputs.command must be a string or list",
            ))
        }
    };
    let args = match obj.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().map(py_str).collect(),
        Some(_) => return Err(invalid("external.process inputs.args must be a list")),
    };
    argv.extend(args.iter().cloned());
    let shell = obj.get("shell").is_some_and(truthy);
    let shell_line = shell.then(|| {
        let quoted_args = args.iter().map(|a| shlex_quote(a));
        match &command_str {
            Some(s) => std::iter::once(s.clone())
                .chain(quoted_args)
                .collect::<Vec<_>>()
                .join(" "),
            None => argv
                .iter()
                .map(|a| shlex_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        }
    });
    if !shell && argv.is_empty() {
        return Err(invalid("external.process inputs.command must not be empty"));
    }

    let cwd = match obj.get("cwd").filter(|v| truthy(v)) {
        Some(v) => Some(resolve(&py_str(v))?),
        None => None,
    };

    let mut env = if obj.get("inherit_env").is_none_or(truthy) {
        ctx.env.clone()
    } else {
        BTreeMap::new()
    };
    env.entry("AETHERFLOW_FLOW_ID".to_string())
        .or_insert_with(|| ctx.flow_id.clone());
    env.entry("AETHERFLOW_RUN_ID".to_string())
        .or_insert_with(|| ctx.run_id.clone());
    if let Some(user_env) = mapping(obj, "env", "env")? {
        for (k, v) in user_env {
            let v = if v.is_null() {
                String::new()
            } else {
                py_str(v)
            };
            env.insert(k.clone(), v);
        }
    }

    let timeout = match obj.get("timeout_seconds") {
        None | Some(Value::Null) => None,
        Some(v) => Some(py_float(v).ok_or_else(|| {
            invalid(format!(
                "external.process inputs.timeout_seconds must be a number, got {}",
                pyfmt::py_repr(v)
            ))
        })?),
    };
    let kill_grace = int_or(Some(obj), "kill_grace_seconds", "kill_grace_seconds", 15)?;

    let log = mapping(obj, "log", "log")?;
    let stdout_mode = log_mode(log, "stdout")?;
    let stderr_mode = log_mode(log, "stderr")?;
    let max_kb = int_or(log, "max_capture_kb", "log.max_capture_kb", 1024)?;
    let max_cap = usize::try_from(max_kb.max(0).saturating_mul(1024)).unwrap_or(usize::MAX);
    let log_file = match log.and_then(|l| l.get("file_path")).filter(|v| truthy(v)) {
        Some(v) => Some(resolve(&py_str(v))?),
        None => None,
    };
    if (stdout_mode == LogMode::File || stderr_mode == LogMode::File) && log_file.is_none() {
        return Err(invalid(
            "log.file_path is required when stdout/stderr mode is 'file'",
        ));
    }

    let idem_map = mapping(obj, "idempotency", "idempotency")?;
    let success_map = mapping(obj, "success", "success")?;
    let strategy = idem_map
        .and_then(|m| m.get("strategy"))
        .filter(|v| truthy(v))
        .map_or_else(|| "none".to_string(), |v| py_str(v).to_lowercase());
    let marker_file = success_map
        .and_then(|m| m.get("marker_file"))
        .filter(|v| truthy(v))
        .map(py_str);
    let idem = match strategy.as_str() {
        "marker" => Idempotency::Marker(
            idem_map
                .and_then(|m| m.get("marker_path"))
                .filter(|v| truthy(v))
                .map(py_str)
                .or_else(|| marker_file.clone()),
        ),
        "atomic_dir" => {
            let get = |k: &str| {
                idem_map
                    .and_then(|m| m.get(k))
                    .filter(|v| truthy(v))
                    .map(py_str)
            };
            match (get("temp_output_dir"), get("final_output_dir")) {
                (Some(tmp), Some(final_dir)) => Idempotency::AtomicDir {
                    tmp,
                    final_dir,
                    rename: bool_or(idem_map, "atomic_rename", true),
                },
                _ => {
                    return Err(invalid(
                        "atomic_dir requires temp_output_dir and final_output_dir",
                    ))
                }
            }
        }
        _ => Idempotency::None,
    };

    let mut exit_codes = int_list(
        success_map.and_then(|m| m.get("exit_codes")),
        "success.exit_codes",
    )?;
    if exit_codes.is_empty() {
        exit_codes.push(0);
    }
    let mut require_files = str_list(success_map.and_then(|m| m.get("require_files")));
    if let Some(m) = &marker_file {
        require_files.push(m.clone());
    }
    let success = SuccessSpec {
        exit_codes,
        require_files,
        require_glob: str_list(success_map.and_then(|m| m.get("require_glob"))),
        forbid_files: str_list(success_map.and_then(|m| m.get("forbid_files"))),
    };

    let retry_map = mapping(obj, "retry", "retry")?;
    let retry = RetrySpec {
        max_attempts: int_or(retry_map, "max_attempts", "retry.max_attempts", 1)?,
        backoff: float_or(retry_map, "backoff_seconds", "retry.backoff_seconds", 0.0)?,
        mult: float_or(
            retry_map,
            "backoff_multiplier",
            "retry.backoff_multiplier",
            1.0,
        )?,
        max_backoff: float_or(
            retry_map,
            "max_backoff_seconds",
            "retry.max_backoff_seconds",
            0.0,
        )?,
        retry_on_exit: int_list(
            retry_map.and_then(|m| m.get("retry_on_exit_codes")),
            "retry.retry_on_exit_codes",
        )?,
        retry_on_timeout: bool_or(retry_map, "retry_on_timeout", false),
    };
    let outputs = mapping(obj, "outputs", "outputs")?
        .cloned()
        .unwrap_or_default();

    Ok(Config {
        argv,
        shell_line,
        cwd,
        env,
        timeout,
        kill_grace,
        stdout_mode,
        stderr_mode,
        max_cap,
        log_file,
        idem,
        success,
        retry,
        outputs,
    })
}

// ---------------------------------------------------------------------------------------------
// Execution
// ---------------------------------------------------------------------------------------------

/// `_check_success`: required files (+ marker), globs, forbidden files, in that order.
fn check_success(
    spec: &SuccessSpec,
    policy: &PathPolicy<'_>,
) -> Result<Option<String>, ProcessError> {
    let resolve = |raw: &str| policy.resolve(raw).map_err(ProcessError::PathNotAllowed);
    for p in &spec.require_files {
        if !resolve(p)?.exists() {
            return Ok(Some(format!("missing_required_file:{p}")));
        }
    }
    for g in &spec.require_glob {
        if !paths::glob_has_match(&resolve(g)?) {
            return Ok(Some(format!("missing_required_glob:{g}")));
        }
    }
    for p in &spec.forbid_files {
        if resolve(p)?.exists() {
            return Ok(Some(format!("forbidden_file_present:{p}")));
        }
    }
    Ok(None)
}

/// Bounded-size capture buffer (bytes beyond `max` are dropped).
struct Capture {
    buf: Vec<u8>,
    max: usize,
}

impl Capture {
    fn new(max: usize) -> Self {
        Capture {
            buf: Vec::new(),
            max,
        }
    }
    fn add(&mut self, data: &[u8]) {
        let remain = self.max.saturating_sub(self.buf.len());
        let n = remain.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }
}

/// Sleeps `secs` unless cancelled; returns false when cancelled.
fn cancellable_sleep(secs: f64, cancel: &AtomicBool) -> bool {
    if secs.is_nan() || secs <= 0.0 {
        return !cancel.load(Ordering::SeqCst);
    }
    let end = Duration::try_from_secs_f64(secs)
        .ok()
        .and_then(|d| Instant::now().checked_add(d));
    loop {
        if cancel.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        let step = match end {
            Some(e) if now >= e => return true,
            Some(e) => (e - now).min(Duration::from_millis(20)),
            None => Duration::from_millis(20),
        };
        std::thread::sleep(step);
    }
}

fn secs(f: f64) -> Duration {
    if f.is_nan() || f <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(f).unwrap_or(Duration::MAX)
    }
}

fn stdio_for(mode: LogMode, file: Option<&File>) -> Result<Stdio, ProcessError> {
    Ok(match mode {
        LogMode::Inherit => Stdio::inherit(),
        LogMode::Discard => Stdio::null(),
        LogMode::Capture => Stdio::piped(),
        LogMode::File => match file {
            Some(f) => Stdio::from(f.try_clone().map_err(io_err("log file"))?),
            None => {
                return Err(invalid(
                    "log.file_path is required when stdout/stderr mode is 'file'",
                ))
            }
        },
    })
}

fn finalize_atomic(tmp: &Path, final_dir: &Path, rename: bool) -> Result<(), ProcessError> {
    if rename {
        if final_dir.exists() {
            let _ = std::fs::remove_dir_all(final_dir);
        }
        if let Some(parent) = final_dir.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("atomic_dir: create parent"))?;
        }
        std::fs::rename(tmp, final_dir).map_err(io_err("atomic_dir: rename"))?;
    } else {
        std::fs::create_dir_all(final_dir).map_err(io_err("atomic_dir: create final dir"))?;
        let entries = std::fs::read_dir(tmp).map_err(io_err("atomic_dir: read temp dir"))?;
        for entry in entries {
            let entry = entry.map_err(io_err("atomic_dir: read temp dir"))?;
            let dest = final_dir.join(entry.file_name());
            if dest.is_dir() && !dest.is_symlink() {
                let _ = std::fs::remove_dir_all(&dest);
            }
            std::fs::rename(entry.path(), &dest).map_err(io_err("atomic_dir: move"))?;
        }
        let _ = std::fs::remove_dir_all(tmp);
    }
    Ok(())
}

/// Runs the `external.process` step.
///
/// Order (reference): parse inputs → marker skip check → atomic tmp dir wipe/create → attempts
/// (backoff, start event, spawn, wait with timeout/cancel, timeout/exit handling and retry) →
/// atomic finalise → success checks (not retried) → outputs.
///
/// Notes on `atomic_rename: false`: each child of the temp dir replaces the same-named entry of
/// the final dir (Python's `shutil.move` would nest a directory into an existing one), and
/// moves are renames (no cross-device copy fallback). With `atomic_rename: true` the final
/// dir's parent is created if missing.
pub fn run(
    inputs: &Value,
    ctx: &ProcessContext,
    events: &mut dyn FnMut(ProcessEvent),
) -> Result<ProcessOutcome, ProcessError> {
    let policy = PathPolicy {
        artifacts_dir: &ctx.artifacts_dir,
        workspace_root: ctx.workspace_root.as_deref(),
        env: &ctx.env,
    };
    let mut cfg = parse(inputs, ctx, &policy)?;

    // Idempotency: marker skip / atomic temp dir.
    let mut atomic_paths: Option<(PathBuf, PathBuf, bool)> = None;
    match &cfg.idem {
        Idempotency::None => {}
        Idempotency::Marker(marker) => {
            if let Some(raw) = marker {
                let mp = policy.resolve(raw).map_err(ProcessError::PathNotAllowed)?;
                if mp.exists() && check_success(&cfg.success, &policy)?.is_none() {
                    let mut outputs = Map::new();
                    outputs.insert("skipped".into(), Value::Bool(true));
                    outputs.insert(
                        "marker".into(),
                        Value::from(mp.to_string_lossy().into_owned()),
                    );
                    return Ok(ProcessOutcome {
                        status: ProcessStatus::Skipped,
                        outputs,
                        reason: Some("marker_present".to_string()),
                    });
                }
            }
        }
        Idempotency::AtomicDir {
            tmp,
            final_dir,
            rename,
        } => {
            let tmp_p = policy.resolve(tmp).map_err(ProcessError::PathNotAllowed)?;
            let final_p = policy
                .resolve(final_dir)
                .map_err(ProcessError::PathNotAllowed)?;
            if tmp_p.exists() {
                let _ = std::fs::remove_dir_all(&tmp_p);
            }
            std::fs::create_dir_all(&tmp_p).map_err(io_err("atomic_dir: create temp dir"))?;
            cfg.env
                .entry("AETHERFLOW_OUTPUT_DIR".to_string())
                .or_insert_with(|| tmp_p.to_string_lossy().into_owned());
            atomic_paths = Some((tmp_p, final_p, *rename));
        }
    }

    let command_repr = str_list_repr(&cfg.argv);
    let popen_repr = cfg
        .shell_line
        .clone()
        .unwrap_or_else(|| command_repr.clone());
    let max_attempts = u32::try_from(cfg.retry.max_attempts.max(0)).unwrap_or(u32::MAX);
    let retry = &cfg.retry;

    for attempt in 1..=max_attempts {
        if attempt > 1 && retry.backoff > 0.0 {
            let exp = i32::try_from(attempt - 2).unwrap_or(i32::MAX);
            let mut sleep_s = retry.backoff * retry.mult.powi(exp);
            if retry.max_backoff != 0.0 && sleep_s > retry.max_backoff {
                sleep_s = retry.max_backoff;
            }
            if !cancellable_sleep(sleep_s, &ctx.cancel) {
                return Err(ProcessError::Cancelled);
            }
        }
        if ctx.cancel.load(Ordering::SeqCst) {
            return Err(ProcessError::Cancelled);
        }

        // The log file is (re)opened for every attempt, so retries keep appending.
        let log_handle = if cfg.stdout_mode == LogMode::File || cfg.stderr_mode == LogMode::File {
            match &cfg.log_file {
                Some(p) => {
                    if let Some(parent) = p.parent() {
                        std::fs::create_dir_all(parent).map_err(io_err("log file directory"))?;
                    }
                    let f = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)
                        .map_err(io_err("log file"))?;
                    Some(f)
                }
                None => None,
            }
        } else {
            None
        };

        events(ProcessEvent::Start {
            attempt,
            command: cfg.argv.clone(),
            job_id: ctx.job_id.clone(),
            step_id: ctx.step_id.clone(),
            step_type: ctx.step_type.clone(),
        });

        let mut command = match &cfg.shell_line {
            Some(line) => {
                let mut c = Command::new("/bin/sh");
                c.arg("-c").arg(line);
                c
            }
            None => {
                let mut c = Command::new(&cfg.argv[0]);
                c.args(&cfg.argv[1..]);
                c
            }
        };
        command.env_clear().envs(&cfg.env).stdin(Stdio::null());
        command.stdout(stdio_for(cfg.stdout_mode, log_handle.as_ref())?);
        command.stderr(stdio_for(cfg.stderr_mode, log_handle.as_ref())?);
        if let Some(cwd) = &cfg.cwd {
            command.current_dir(cwd);
        }
        let mut child = Running::spawn(command).map_err(|source| ProcessError::Spawn {
            command: command_repr.clone(),
            source,
        })?;
        drop(log_handle);

        let mut out_cap = Capture::new(cfg.max_cap);
        let mut err_cap = Capture::new(cfg.max_cap);
        let mut on_line = |kind: StreamKind, line: &[u8]| {
            let cap = match kind {
                StreamKind::Stdout => &mut out_cap,
                StreamKind::Stderr => &mut err_cap,
            };
            cap.add(line);
            let text = String::from_utf8_lossy(line);
            let message = text.trim_end_matches('\n');
            if message.is_empty() {
                return;
            }
            let (job_id, step_id, step_type) = (
                ctx.job_id.clone(),
                ctx.step_id.clone(),
                ctx.step_type.clone(),
            );
            let message = message.to_string();
            events(match kind {
                StreamKind::Stdout => ProcessEvent::Stdout {
                    message,
                    job_id,
                    step_id,
                    step_type,
                },
                StreamKind::Stderr => ProcessEvent::Stderr {
                    message,
                    job_id,
                    step_id,
                    step_type,
                },
            });
        };
        let grace = Duration::from_secs(u64::try_from(cfg.kill_grace.max(0)).unwrap_or(0));
        let outcome = child
            .wait(cfg.timeout.map(secs), grace, &ctx.cancel, &mut on_line)
            .map_err(io_err("wait"))?;
        drop(child);

        let rc = match outcome {
            WaitOutcome::Cancelled => return Err(ProcessError::Cancelled),
            WaitOutcome::TimedOut => {
                events(ProcessEvent::Timeout {
                    attempt,
                    job_id: ctx.job_id.clone(),
                    step_id: ctx.step_id.clone(),
                    step_type: ctx.step_type.clone(),
                });
                if retry.retry_on_timeout && attempt < max_attempts {
                    continue;
                }
                return Err(ProcessError::Timeout {
                    timeout_seconds: cfg.timeout.unwrap_or(0.0),
                });
            }
            WaitOutcome::Exited(rc) => rc,
        };

        if !cfg.success.exit_codes.contains(&rc) {
            events(ProcessEvent::Exit {
                attempt,
                exit_code: rc,
                job_id: ctx.job_id.clone(),
                step_id: ctx.step_id.clone(),
                step_type: ctx.step_type.clone(),
            });
            if retry.retry_on_exit.contains(&rc) && attempt < max_attempts {
                continue;
            }
            return Err(ProcessError::Failed {
                exit_code: rc,
                command: command_repr,
                popen_args: popen_repr,
                stderr: err_cap.text(),
            });
        }

        if let Some((tmp_p, final_p, rename)) = &atomic_paths {
            finalize_atomic(tmp_p, final_p, *rename)?;
        }
        if let Some(reason) = check_success(&cfg.success, &policy)? {
            return Err(ProcessError::OutputsInvalid { reason });
        }

        let mut out = Map::new();
        out.insert("exit_code".into(), Value::from(rc));
        out.insert("attempts".into(), Value::from(attempt));
        if cfg.stdout_mode == LogMode::Capture {
            out.insert("stdout".into(), Value::from(out_cap.text()));
        }
        if cfg.stderr_mode == LogMode::Capture {
            out.insert("stderr".into(), Value::from(err_cap.text()));
        }
        if let Some(p) = &cfg.log_file {
            if cfg.stdout_mode == LogMode::File || cfg.stderr_mode == LogMode::File {
                out.insert(
                    "log_file".into(),
                    Value::from(p.to_string_lossy().into_owned()),
                );
            }
        }
        for (k, v) in &cfg.outputs {
            out.insert(k.clone(), v.clone());
        }
        events(ProcessEvent::Success {
            attempt,
            exit_code: rc,
            job_id: ctx.job_id.clone(),
            step_id: ctx.step_id.clone(),
            step_type: ctx.step_type.clone(),
        });
        return Ok(ProcessOutcome {
            status: ProcessStatus::Success,
            outputs: out,
            reason: None,
        });
    }
    Err(ProcessError::NoAttempts)
}
