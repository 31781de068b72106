//! The wasmtime host. One [`Sandbox`] per process: a wasmtime `Engine` with the pooling
//! allocator and epoch interruption, a linker with WASI p2 (no env, args, sockets) plus our
//! `log`/`sql` imports, and an on-disk cache of precompiled components. Every step attempt
//! gets a fresh `Store` and instance from a cached `InstancePre`, so a trap can never leak
//! state into the next attempt.

mod cache;
mod deadline;
mod determinism;
mod engine_config;
mod host;
mod secrets;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

pub use determinism::{step_seed, Reproducibility, STRICT_MONOTONIC_STEP};
pub use host::{HostState, LogLevel, StepLogger, MAX_LOG_LINES};
pub use secrets::{ComponentSecretsProvider, SECRETS_CALL_TIMEOUT, SECRETS_MEMORY_BYTES};

use crate::connectors::Connectors;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "step",
        imports: { default: trappable },
        with: {
            "aetherflow:step/sql.cursor": crate::connectors::SqlCursor,
            "aetherflow:step/digest.sha256": crate::sandbox::host::Sha256Hasher,
            "aetherflow:step/http.incoming-body": crate::connectors::IncomingBody,
        },
    });
}

use bindings::aetherflow::step::types as wit;

/// How often the epoch advances; deadlines are measured in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// What a guest may print to its own stdout/stderr (kept for the failure report).
const STDIO_CAPTURE_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot configure the wasm engine: {0}")]
    Engine(String),
    #[error("step component `{origin}` is invalid: {message}")]
    Load { origin: String, message: String },
}

/// Where a component came from (shown by errors and `steps list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    Plugin(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Builtin => f.write_str("builtin"),
            Origin::Plugin(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What a component says about itself in `describe`.
#[derive(Debug, Clone)]
pub struct StepInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub input_schema: Value,
    /// (connector kind, the input naming the resource).
    pub capabilities: Vec<(String, String)>,
}

/// A compiled, linked component ready to instantiate.
pub struct LoadedStep {
    pub info: StepInfo,
    pub sha256: String,
    pub origin: Origin,
    /// Size of the component (the `.wasm` bytes).
    pub size: u64,
    pre: bindings::StepPre<HostState>,
}

impl StepInfo {
    /// The connector kinds the step declares (`describe` capabilities), deduplicated.
    pub fn kinds(&self) -> BTreeSet<String> {
        self.capabilities.iter().map(|(k, _)| k.clone()).collect()
    }
}

/// Per-attempt limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_bytes: usize,
    /// CPU budget in fuel; `None` is no budget.
    pub fuel: Option<u64>,
    /// Largest JSON text of the outputs.
    pub max_output_bytes: u64,
    /// Log volume (message and fields bytes) the attempt may emit.
    pub max_log_bytes: u64,
    /// Where each limit came from, named in the failure message (`limits.fuel`,
    /// `AETHERFLOW_STEP_FUEL`, ...).
    pub sources: LimitSources,
}

/// The setting that gave a limit its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSources {
    pub fuel: &'static str,
    pub max_output_bytes: &'static str,
    pub max_log_bytes: &'static str,
}

impl Default for LimitSources {
    fn default() -> Self {
        LimitSources {
            fuel: "limits.fuel",
            max_output_bytes: "limits.max_output_bytes",
            max_log_bytes: "limits.max_log_bytes",
        }
    }
}

/// A host directory preopened for a step, besides its workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host: PathBuf,
    /// Absolute path inside the sandbox.
    pub guest: String,
    pub writable: bool,
}

/// Identity and workspace of one attempt (mirrors the WIT `step-context`).
#[derive(Debug, Clone)]
pub struct AttemptContext {
    pub flow_id: String,
    pub run_id: String,
    pub job_id: String,
    pub step_id: String,
    pub step_type: String,
    pub attempt: u32,
    pub workspace: PathBuf,
    pub artifacts_dir: PathBuf,
    pub scratch_dir: PathBuf,
    pub manifests_dir: PathBuf,
}

/// What an attempt may reach: the resources the flow granted it (name -> the kinds it
/// may use it as), the run's connectors behind them, extra mounts, and where its log lines
/// go.
pub struct Capabilities {
    pub grants: BTreeMap<String, BTreeSet<String>>,
    pub connectors: Arc<Connectors>,
    pub mounts: Vec<Mount>,
    pub logger: StepLogger,
}

/// A step's successful return.
#[derive(Debug, Clone)]
pub struct StepReturn {
    pub skipped: bool,
    pub outputs: Map<String, Value>,
    pub reason: Option<String>,
    /// Fuel the attempt consumed (sandboxed steps only).
    pub fuel_used: Option<u64>,
}

/// Why an attempt failed. `message` is what the user sees.
#[derive(Debug, Clone)]
pub struct StepFailure {
    pub kind: FailureKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The step returned a `step-error`.
    StepError,
    Timeout,
    Memory,
    /// The fuel budget ran out.
    Fuel,
    /// The outputs were larger than `max_output_bytes`.
    OutputSize,
    Trap,
    /// The host could not set the attempt up (workspace, instantiation).
    Host,
}

pub struct Sandbox {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<cache::ComponentCache>,
    stop_ticker: Arc<AtomicBool>,
    /// Where finished stores go to be torn down (see [`Sandbox::retire`]); `None` when no
    /// thread could be started.
    reaper: OnceLock<Option<SyncSender<Vec<Store<HostState>>>>>,
    /// Finished stores not yet handed to the reaper (fewer than [`REAPER_BATCH`]).
    retiring: Mutex<Vec<Store<HostState>>>,
    /// The last job workspace's preopen, shared by the attempts that run in it (see
    /// [`Sandbox::workspace_fs`]).
    workspace: Mutex<Option<WorkspacePreopen>>,
}

/// A workspace directory opened once for every attempt in it: the WASI filesystem context
/// holding its preopen (an `Arc` of one directory handle; wasmtime-wasi never reads or
/// moves that handle's position: listing a directory opens `.` anew), and a second handle
/// to tell whether the directory was removed since.
struct WorkspacePreopen {
    path: PathBuf,
    fs: WasiFilesystemCtx,
    probe: std::fs::File,
}

/// Finished stores handed to the reaper thread together: waking a thread costs more than
/// a small step's teardown, so it is woken once per batch.
const REAPER_BATCH: usize = 4;
/// Batches waiting for the reaper thread at most. With the batch being gathered and the one
/// being torn down, at most `REAPER_BATCH * (REAPER_QUEUE + 2) - 1` finished stores hold
/// pool slots; the pool has room for them and the live ones (`engine_config`).
const REAPER_QUEUE: usize = 1;
/// A store whose linear memory grew past this goes to the reaper at once, with the batch
/// gathered so far, instead of keeping its memory until the batch is full.
const REAPER_PROMPT_BYTES: usize = 16 << 20;

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl Sandbox {
    /// `cache_dir`: where precompiled components are kept (`None` disables the cache).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, SandboxError> {
        let cfg = engine_config::engine_config();
        let engine = Engine::new(&cfg).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;

        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        bindings::Step::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        deadline::add_to_linker(&mut linker).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            std::thread::Builder::new()
                .name("aetherflow-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| SandboxError::Engine(format!("cannot start epoch thread: {e}")))?;
        }
        let cache = cache_dir.map(|dir| cache::ComponentCache::new(dir, &engine));
        Ok(Sandbox {
            engine,
            linker,
            cache,
            stop_ticker,
            reaper: OnceLock::new(),
            retiring: Mutex::new(Vec::new()),
            workspace: Mutex::new(None),
        })
    }

    /// Compile (or fetch from the cache), link and describe a component.
    pub fn load(&self, bytes: &[u8], origin: Origin) -> Result<LoadedStep, SandboxError> {
        self.load_with_digest(bytes, hex(&Sha256::digest(bytes)), origin)
    }

    /// [`Sandbox::load`] with the sha256 of `bytes` already known (built-ins: computed at
    /// build time).
    pub fn load_with_digest(
        &self,
        bytes: &[u8],
        sha256: String,
        origin: Origin,
    ) -> Result<LoadedStep, SandboxError> {
        let load_err = |message: String| SandboxError::Load {
            origin: origin.to_string(),
            message,
        };
        let component = match &self.cache {
            Some(cache) => cache.get_or_compile(&self.engine, &sha256, bytes),
            None => Component::new(&self.engine, bytes).map_err(|e| format!("{e:#}")),
        }
        .map_err(load_err)?;
        self.finish(component, sha256, origin, bytes.len() as u64)
    }

    /// A built-in step: `precompiled` is what build.rs made of `bytes` with this engine's
    /// configuration, so nothing is compiled at run time. When wasmtime refuses it (a CPU
    /// without the features of the build machine, an empty blob when the build could not
    /// precompile) the component is compiled as usual, through the cache. With a cache,
    /// the artifact is copied there once and mapped from that file afterwards (cheaper at
    /// start-up than deserializing the embedded copy; see `ComponentCache::get_or_store`).
    pub fn load_builtin(
        &self,
        bytes: &[u8],
        precompiled: &[u8],
        sha256: String,
    ) -> Result<LoadedStep, SandboxError> {
        if let Some(component) = self
            .cache
            .as_ref()
            .and_then(|c| c.get_or_store(&self.engine, &sha256, precompiled))
        {
            return self.finish(component, sha256, Origin::Builtin, bytes.len() as u64);
        }
        // SAFETY: `precompiled` is embedded in this binary by build.rs, produced by
        // `precompile_component` of this wasmtime version from the configuration in
        // engine_config.rs; wasmtime checks version, configuration and target and refuses
        // a mismatch.
        match unsafe { Component::deserialize(&self.engine, precompiled) } {
            Ok(component) => self.finish(component, sha256, Origin::Builtin, bytes.len() as u64),
            Err(_) => self.load_with_digest(bytes, sha256, Origin::Builtin),
        }
    }

    /// Link and describe a compiled component.
    fn finish(
        &self,
        component: Component,
        sha256: String,
        origin: Origin,
        size: u64,
    ) -> Result<LoadedStep, SandboxError> {
        let load_err = |message: String| SandboxError::Load {
            origin: origin.to_string(),
            message,
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| load_err(explain_link_error(&format!("{e:#}"))))?;
        let pre = bindings::StepPre::new(pre).map_err(|e| {
            load_err(format!(
                "it does not implement the `aetherflow:step/step` world: {e:#}"
            ))
        })?;
        let info = self.describe(&pre).map_err(load_err)?;
        Ok(LoadedStep {
            info,
            sha256,
            origin,
            size,
            pre,
        })
    }

    fn describe(&self, pre: &bindings::StepPre<HostState>) -> Result<StepInfo, String> {
        let mut store = self.store(HostState::new(
            WasiCtxBuilder::new().build(),
            64 << 20,
            None,
        ));
        arm_deadline(&mut store, Duration::from_secs(10));
        let step = pre
            .instantiate(&mut store)
            .map_err(|e| format!("cannot instantiate: {e:#}"))?;
        let info = step
            .call_describe(&mut store)
            .map_err(|e| format!("`describe` failed: {e:#}"))?;
        let input_schema = serde_json::from_str(&info.input_schema)
            .map_err(|e| format!("`describe` returned an input schema that is not JSON: {e}"))?;
        if info.name.trim().is_empty() {
            return Err("`describe` returned an empty step name".into());
        }
        Ok(StepInfo {
            name: info.name,
            version: info.version,
            description: info.description,
            input_schema,
            capabilities: info
                .capabilities
                .into_iter()
                .map(|c| (c.kind, c.input))
                .collect(),
        })
    }

    /// End an attempt's store. Its host side (connections and cursors, files the guest
    /// opened, the step's log) ends here and now, in order. What is left is wasmtime's
    /// teardown, mostly resetting the instance's memory for its pool slot: that runs on a
    /// reaper thread, so the next step need not wait for it, in batches of
    /// [`REAPER_BATCH`]. The queue is short and `send` blocks when it is full, so pool
    /// slots cannot run out.
    fn retire(&self, mut store: Store<HostState>) {
        let state = store.data_mut();
        drop(state.step.take());
        drop(std::mem::take(&mut state.table));
        let prompt = state.limiter.granted > REAPER_PROMPT_BYTES;
        let batch = {
            let mut retiring = self.retiring.lock().unwrap_or_else(|e| e.into_inner());
            retiring.push(store);
            if retiring.len() < REAPER_BATCH && !prompt {
                return;
            }
            std::mem::take(&mut *retiring)
        };
        let reaper = self.reaper.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Store<HostState>>>(REAPER_QUEUE);
            let spawned = std::thread::Builder::new()
                .name("aetherflow-reaper".into())
                .spawn(move || rx.into_iter().for_each(drop));
            spawned.ok().map(|_| tx)
        });
        match reaper {
            Some(tx) => {
                // Only fails when the reaper is gone: then the stores end here.
                let _ = tx.send(batch);
            }
            None => drop(batch),
        }
    }

    /// The WASI filesystem context with the workspace preopened read-write at its own
    /// path. Opening a directory by path costs a path walk and a file per attempt; the
    /// workspace is the same for every attempt of a job, so its handle is opened once and
    /// shared. It is opened again when the path changes, when the directory was removed (a
    /// removed directory has no links left; `fstat` on the kept handle tells, without a
    /// path walk), and after [`Sandbox::forget_workspace`]. A step in the sandbox sees
    /// nothing above its workspace, so it cannot move it, unless a mount gives it a host
    /// directory that holds the workspace: an attempt with mounts opens every directory
    /// itself and makes the next one open the workspace again.
    fn workspace_fs(&self, workspace: &Path) -> Result<WasiFilesystemCtx, String> {
        use std::os::unix::fs::MetadataExt;
        let mut cached = self.workspace.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = cached.as_ref() {
            if w.path == workspace && w.probe.metadata().is_ok_and(|m| m.nlink() > 0) {
                return Ok(w.fs.clone());
            }
        }
        *cached = None;
        let mut b = WasiCtxBuilder::new();
        b.preopened_dir(workspace, path_str(workspace), FsPerms::ReadWrite)
            .map_err(|e| format!("{e:#}"))?;
        let fs = b.build().filesystem().clone();
        let probe = std::fs::File::open(workspace).map_err(|e| format!("{e}"))?;
        *cached = Some(WorkspacePreopen {
            path: workspace.to_path_buf(),
            fs: fs.clone(),
            probe,
        });
        Ok(fs)
    }

    /// Open the workspace by its path again for the next attempt: called after anything
    /// outside the sandbox ran (an OS command may have renamed the directory and made a
    /// new one in its place, which the kept handle would not notice).
    pub fn forget_workspace(&self) {
        *self.workspace.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn store(&self, state: HostState) -> Store<HostState> {
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        set_fuel(&mut store, None);
        store
    }

    /// Run one attempt of a step in a fresh store and instance.
    pub fn run(
        &self,
        step: &LoadedStep,
        ctx: &AttemptContext,
        inputs: &Value,
        limits: Limits,
        repro: &Reproducibility,
        caps: Capabilities,
    ) -> Result<StepReturn, StepFailure> {
        let host_err = |message: String| StepFailure {
            kind: FailureKind::Host,
            message,
        };
        let required = step
            .info
            .input_schema
            .get("required")
            .and_then(Value::as_array);
        let required = required.into_iter().flatten().filter_map(Value::as_str);
        if let Some(message) = missing_inputs(&ctx.step_id, required, inputs) {
            return Err(StepFailure {
                kind: FailureKind::StepError,
                message,
            });
        }
        let stdout = MemoryOutputPipe::new(STDIO_CAPTURE_BYTES);
        let stderr = MemoryOutputPipe::new(STDIO_CAPTURE_BYTES);
        let wasi = build_wasi(
            self,
            &ctx.workspace,
            &caps.mounts,
            repro,
            stdout.clone(),
            stderr.clone(),
        )
        .map_err(|e| {
            host_err(format!(
                "cannot prepare the sandbox of step {}: {e}",
                ctx.step_id
            ))
        })?;
        let state = HostState::new(
            wasi,
            limits.memory_bytes,
            Some(host::StepEnv::new(
                caps.grants,
                caps.connectors,
                caps.logger,
                ctx.step_id.clone(),
                ctx.workspace.clone(),
                limits.max_log_bytes,
            )),
        );
        let mut store = self.store(state);
        arm_deadline(&mut store, limits.timeout);
        set_fuel(&mut store, limits.fuel);
        let outcome = (|| {
            let started = Instant::now();

            let wit_ctx = wit::StepContext {
                flow_id: ctx.flow_id.clone(),
                run_id: ctx.run_id.clone(),
                job_id: ctx.job_id.clone(),
                step_id: ctx.step_id.clone(),
                step_type: ctx.step_type.clone(),
                attempt: ctx.attempt,
                workspace: path_str(&ctx.workspace),
                artifacts_dir: path_str(&ctx.artifacts_dir),
                scratch_dir: path_str(&ctx.scratch_dir),
                manifests_dir: path_str(&ctx.manifests_dir),
            };
            let result = step
                .pre
                .instantiate(&mut store)
                .and_then(|instance| instance.call_run(&mut store, &wit_ctx, &inputs.to_string()));
            let fuel_used = limits
                .fuel
                .unwrap_or(u64::MAX)
                .saturating_sub(store.get_fuel().unwrap_or(0));
            report_dropped_logs(store.data(), &ctx.step_id, limits.sources.max_log_bytes);
            match result {
                Ok(Ok(r)) => {
                    if r.outputs.len() as u64 > limits.max_output_bytes {
                        return Err(StepFailure {
                            kind: FailureKind::OutputSize,
                            message: output_size_message(
                                &ctx.step_id,
                                r.outputs.len() as u64,
                                limits.max_output_bytes,
                                limits.sources.max_output_bytes,
                            ),
                        });
                    }
                    let outputs = match serde_json::from_str::<Value>(&r.outputs) {
                        Ok(Value::Object(m)) => m,
                        Ok(_) | Err(_) => {
                            return Err(StepFailure {
                                kind: FailureKind::StepError,
                                message: format!(
                                    "step {} returned outputs that are not a JSON object",
                                    ctx.step_id
                                ),
                            })
                        }
                    };
                    Ok(StepReturn {
                        skipped: matches!(r.status, wit::Status::Skipped),
                        outputs,
                        reason: r.reason,
                        fuel_used: Some(fuel_used),
                    })
                }
                Ok(Err(e)) => Err(StepFailure {
                    kind: FailureKind::StepError,
                    message: match e.kind {
                        // WASI streams report ENOSPC and EFBIG as a bare I/O error: say which
                        // storage limit the host sees, if any.
                        wit::ErrorKind::Io => e.message + &storage_hint(&ctx.workspace),
                        _ => e.message,
                    },
                }),
                Err(trap) => {
                    let elapsed = started.elapsed();
                    let guest_stderr = String::from_utf8_lossy(&stderr.contents())
                        .trim()
                        .to_string();
                    let memory_hit = store.data().limiter.exceeded;
                    Err(classify_trap(
                        &trap,
                        &ctx.step_id,
                        limits,
                        elapsed,
                        memory_hit,
                        &guest_stderr,
                    ))
                }
            }
        })();
        // The instance is torn down off the critical path (see `retire`).
        self.retire(store);
        outcome
    }
}

/// The deadline of a call: the epoch deadline for running code, and the end of any clock
/// wait (deadline.rs).
fn arm_deadline(store: &mut Store<HostState>, timeout: Duration) {
    store.set_epoch_deadline(ticks(timeout));
    store.data_mut().deadline = Instant::now().checked_add(timeout);
}

/// Fuel for a store: the budget, or all there is. The engine always meters fuel (see
/// engine_config.rs), so a store without any would trap at its first instruction.
fn set_fuel<T>(store: &mut Store<T>, budget: Option<u64>) {
    // Only fails when the engine does not meter fuel, which engine_config.rs rules out.
    let _ = store.set_fuel(budget.unwrap_or(u64::MAX));
}

/// The one event that says how much of an attempt's log was dropped.
fn report_dropped_logs(state: &HostState, step_id: &str, source: &str) {
    let Some(env) = state.step.as_ref() else {
        return;
    };
    let b = env.log_budget();
    if b.dropped_lines == 0 {
        return;
    }
    let why = if b.lines >= MAX_LOG_LINES {
        format!("{MAX_LOG_LINES} lines")
    } else {
        format!("{} ({source})", fmt_bytes(b.max_bytes))
    };
    let mut fields = Map::new();
    fields.insert("dropped_lines".into(), Value::from(b.dropped_lines));
    fields.insert("dropped_bytes".into(), Value::from(b.dropped_bytes));
    fields.insert("kept_lines".into(), Value::from(b.lines));
    fields.insert("kept_bytes".into(), Value::from(b.bytes));
    fields.insert("max_log_bytes".into(), Value::from(b.max_bytes));
    (env.logger())(
        LogLevel::Warn,
        &format!(
            "step {step_id} logged more than its limit of {why}: {} lines ({}) were dropped",
            b.dropped_lines,
            fmt_bytes(b.dropped_bytes)
        ),
        fields,
    );
}

/// `step x outputs are 12.3 MiB, over the limit of 1 MiB (limits.max_output_bytes)`.
pub fn output_size_message(step_id: &str, size: u64, limit: u64, source: &str) -> String {
    let (mut shown, limit_shown) = (fmt_bytes(size), fmt_bytes(limit));
    if shown == limit_shown {
        // Just over the limit: rounding would make both read the same.
        shown = format!("{size} bytes");
    }
    format!("step {step_id} outputs are {shown}, over the limit of {limit_shown} ({source})")
}

/// A byte count for messages: `512 bytes`, `1 KiB`, `12.3 MiB`, `2 GiB`.
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if n >= size {
            if n.is_multiple_of(size) {
                return format!("{} {unit}", n / size);
            }
            let tenths = (n as u128 * 10 + size as u128 / 2) / size as u128;
            return match tenths % 10 {
                0 => format!("{} {unit}", tenths / 10),
                t => format!("{}.{t} {unit}", tenths / 10),
            };
        }
    }
    format!("{n} bytes")
}

/// The `required` inputs that `inputs` lacks, as the reference reports them:
/// `Step <id> missing inputs: ['a', 'b']` (sorted; a `null` value counts as present). For
/// a component the names come from its `describe` schema, checked here for steps in every
/// language before the attempt gets a sandbox; native steps pass their own.
pub(crate) fn missing_inputs<'a>(
    step_id: &str,
    required: impl IntoIterator<Item = &'a str>,
    inputs: &Value,
) -> Option<String> {
    let given = inputs.as_object();
    let mut missing: Vec<&str> = required
        .into_iter()
        .filter(|k| !given.is_some_and(|g| g.contains_key(*k)))
        .collect();
    if missing.is_empty() {
        return None;
    }
    missing.sort_unstable();
    missing.dedup();
    let list: Vec<String> = missing
        .iter()
        .map(|m| aetherflow_template::py_str_repr(m))
        .collect();
    Some(format!(
        "Step {step_id} missing inputs: [{}]",
        list.join(", ")
    ))
}

fn build_wasi(
    sandbox: &Sandbox,
    workspace: &Path,
    mounts: &[Mount],
    repro: &Reproducibility,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
) -> Result<WasiCtx, String> {
    let mut b = WasiCtxBuilder::new();
    b.stdout(stdout).stderr(stderr);
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    determinism::apply(&mut b, repro);
    // The workspace is visible at its own absolute path, so guest and host paths agree.
    if mounts.is_empty() {
        let fs = sandbox.workspace_fs(workspace)?;
        let mut wasi = b.build();
        *wasi.filesystem() = fs;
        return Ok(wasi);
    }
    sandbox.forget_workspace();
    b.preopened_dir(workspace, path_str(workspace), FsPerms::ReadWrite)
        .map_err(|e| format!("{e:#}"))?;
    for m in mounts {
        let perms = if m.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        b.preopened_dir(&m.host, &m.guest, perms).map_err(|e| {
            format!(
                "cannot mount `{}` at `{}`: {e:#}",
                m.host.display(),
                m.guest
            )
        })?;
    }
    Ok(b.build())
}

fn classify_trap(
    err: &wasmtime::Error,
    step_id: &str,
    limits: Limits,
    elapsed: Duration,
    memory_hit: Option<usize>,
    guest_stderr: &str,
) -> StepFailure {
    let stderr_note = if guest_stderr.is_empty() {
        String::new()
    } else {
        format!("\nstep stderr:\n{guest_stderr}")
    };
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => StepFailure {
            kind: FailureKind::Timeout,
            message: format!(
                "step {step_id} timed out after {}",
                fmt_duration(limits.timeout.max(elapsed.min(limits.timeout)))
            ),
        },
        Some(Trap::OutOfFuel) => StepFailure {
            kind: FailureKind::Fuel,
            message: format!(
                "step {step_id} exceeded its fuel budget of {} ({})",
                limits.fuel.unwrap_or(u64::MAX),
                limits.sources.fuel
            ),
        },
        _ if memory_hit.is_some() => StepFailure {
            kind: FailureKind::Memory,
            message: format!(
                "step {step_id} exceeded its memory limit of {} MiB (it asked for {} MiB){stderr_note}",
                limits.memory_bytes >> 20,
                memory_hit.unwrap_or(0) >> 20
            ),
        },
        Some(Trap::StackOverflow) => StepFailure {
            kind: FailureKind::Trap,
            message: format!("step {step_id} crashed: call stack exhausted (infinite recursion?){stderr_note}"),
        },
        Some(trap) => {
            // Trap's Display reads "wasm trap: wasm `unreachable` ..."; say it once.
            let what = trap.to_string();
            let mut what = what.strip_prefix("wasm trap: ").unwrap_or(&what).to_string();
            if *trap == Trap::MemoryOutOfBounds {
                // Compilers for wasm keep the stack in linear memory, below the data: deep
                // recursion runs off the start of memory and lands here, not in
                // StackOverflow (which is the engine's own call stack).
                what.push_str(
                    " (deep or infinite recursion overflowing the step's stack ends this way too)",
                );
            }
            StepFailure {
                kind: FailureKind::Trap,
                message: format!("step {step_id} crashed: {what}{stderr_note}"),
            }
        }
        None => StepFailure {
            kind: FailureKind::Trap,
            message: format!("step {step_id} failed in the host: {err:#}{stderr_note}"),
        },
    }
}

/// Why a write in `dir` may have failed: its file system is (nearly) full, or this process
/// has a file-size limit. Empty when neither is the case.
fn storage_hint(dir: &Path) -> String {
    let mut hints = Vec::new();
    if let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) {
        // SAFETY: a valid C string and an out-pointer to a zeroed struct.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0 {
            let free = st.f_bavail as u64 * st.f_frsize as u64;
            if free < (1 << 20) {
                hints.push(format!(
                    "the file system of the workspace is full ({free} bytes free)"
                ));
            }
        }
    }
    // SAFETY: an out-pointer to a zeroed struct.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim) } == 0
        && lim.rlim_cur != libc::RLIM_INFINITY
    {
        hints.push(format!(
            "this process may not write files larger than {} bytes (RLIMIT_FSIZE, `ulimit -f`)",
            lim.rlim_cur
        ));
    }
    if hints.is_empty() {
        String::new()
    } else {
        format!(" ({})", hints.join("; "))
    }
}

/// The packages whose interfaces the linker defines: WASI preview 2 (`add_to_linker_sync`)
/// and the step contract (`bindings::Step::add_to_linker`). Sockets are linked so that
/// toolchains which always import them still load; `build_wasi` denies every socket use.
const OFFERED_PACKAGES: &[&str] = &[
    "wasi:io",
    "wasi:clocks",
    "wasi:random",
    "wasi:filesystem",
    "wasi:cli",
    "wasi:sockets",
    "aetherflow:step",
];

/// Say which import the linker could not satisfy, and why, instead of wasmtime's
/// "component imports instance `x`, but a matching implementation was not found in the
/// linker: instance export `f` has the wrong type: function implementation is missing".
fn explain_link_error(msg: &str) -> String {
    const ALLOWED: &str = "a step may import only WASI preview 2 and the aetherflow:step \
                           interfaces (log, digest, sql, http, files, mail)";
    let import = msg
        .strip_prefix("component imports ")
        .and_then(|rest| rest.split('`').nth(1));
    let Some(import) = import else {
        return format!("{msg} ({ALLOWED})");
    };
    let package = import.split('/').next().unwrap_or(import);
    let cause = msg
        .split_once("in the linker: ")
        .map_or("", |(_, cause)| cause);
    if OFFERED_PACKAGES.contains(&package) {
        format!(
            "it imports `{import}` in a form this engine does not offer ({cause}); was it built \
             against another version of wit/step.wit or of WASI preview 2?"
        )
    } else {
        format!("it imports `{import}`, which this engine does not offer: {ALLOWED}")
    }
}

fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if (secs - secs.round()).abs() < 1e-9 {
        format!("{}s", secs.round() as u64)
    } else {
        format!("{secs}s")
    }
}

fn ticks(d: Duration) -> u64 {
    (d.as_nanos() / EPOCH_TICK.as_nanos()).max(1) as u64 + 1
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl HostState {
    fn new(wasi: WasiCtx, memory_bytes: usize, step: Option<host::StepEnv>) -> Self {
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: host::MemLimiter::new(memory_bytes),
            step,
            deadline: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_stores_go_to_the_reaper_in_batches_or_at_once_when_large() {
        let sandbox = Sandbox::new(None).unwrap();
        let finished = |granted: usize| {
            let mut state = HostState::new(WasiCtxBuilder::new().build(), 1 << 30, None);
            state.limiter.granted = granted;
            sandbox.store(state)
        };
        let waiting = || sandbox.retiring.lock().unwrap().len();
        for n in 1..REAPER_BATCH {
            sandbox.retire(finished(1 << 20));
            assert_eq!(waiting(), n);
        }
        sandbox.retire(finished(1 << 20));
        assert_eq!(waiting(), 0, "a full batch is handed over");
        sandbox.retire(finished(1 << 20));
        assert_eq!(waiting(), 1);
        // A large store does not keep its memory while a batch fills up.
        sandbox.retire(finished(REAPER_PROMPT_BYTES + 1));
        assert_eq!(waiting(), 0);
    }

    #[test]
    fn missing_inputs_are_listed_sorted_and_quoted_like_python() {
        let required = ["table", "items", "it's"];
        let inputs = serde_json::json!({"table": null, "other": 1});
        assert_eq!(
            missing_inputs("s1", required, &inputs).as_deref(),
            Some("Step s1 missing inputs: [\"it's\", 'items']")
        );
        let all = serde_json::json!({"table": 1, "items": [], "it's": ""});
        assert_eq!(missing_inputs("s1", required, &all), None);
        assert_eq!(missing_inputs("s1", [], &inputs), None);
    }

    #[test]
    fn byte_counts_read_well_and_never_hide_an_overrun() {
        assert_eq!(fmt_bytes(0), "0 bytes");
        assert_eq!(fmt_bytes(1000), "1000 bytes");
        assert_eq!(fmt_bytes(1024), "1 KiB");
        assert_eq!(fmt_bytes(1 << 20), "1 MiB");
        assert_eq!(fmt_bytes(12_897_485), "12.3 MiB");
        assert_eq!(fmt_bytes(3 << 30), "3 GiB");
        assert_eq!(
            output_size_message("x", 12_897_485, 1 << 20, "limits.max_output_bytes"),
            "step x outputs are 12.3 MiB, over the limit of 1 MiB (limits.max_output_bytes)"
        );
        assert_eq!(
            output_size_message("x", (1 << 20) + 1, 1 << 20, "limits.max_output_bytes"),
            "step x outputs are 1048577 bytes, over the limit of 1 MiB (limits.max_output_bytes)"
        );
    }

    #[test]
    fn link_errors_name_the_import_and_say_why() {
        let wasmtime = |name: &str, cause: &str| {
            format!("component imports instance `{name}`, but a matching implementation was not found in the linker: {cause}")
        };
        let missing =
            "instance export `steal` has the wrong type: function implementation is missing";
        assert_eq!(
            explain_link_error(&wasmtime("aetherflow:evil/x@0.1.0", missing)),
            "it imports `aetherflow:evil/x@0.1.0`, which this engine does not offer: a step may \
             import only WASI preview 2 and the aetherflow:step interfaces (log, digest, sql, \
             http, files, mail)"
        );
        let m = explain_link_error(&wasmtime("aetherflow:step/sql@0.1.0", missing));
        assert!(
            m.starts_with("it imports `aetherflow:step/sql@0.1.0` in a form this engine does not offer (instance export `steal`"),
            "{m}"
        );
        assert!(
            m.ends_with("another version of wit/step.wit or of WASI preview 2?"),
            "{m}"
        );
        // Anything else is kept, with the rule appended.
        assert!(explain_link_error("odd").starts_with("odd (a step may import only"));
    }
}
