//! Typed flow specs (the result of a successful schema validation).

use serde_json::Value;
use std::collections::BTreeMap;

/// `flow.workspace.cleanup_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    #[default]
    OnSuccess,
    Always,
    Never,
}

impl CleanupPolicy {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupPolicy::OnSuccess => "on_success",
            CleanupPolicy::Always => "always",
            CleanupPolicy::Never => "never",
        }
    }
}

/// `flow.state.backend` (`file` is accepted but the reference always uses SQLite).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateBackend {
    #[default]
    Sqlite,
    File,
}

impl StateBackend {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StateBackend::Sqlite => "sqlite",
            StateBackend::File => "file",
        }
    }
}

/// `flow.locks.scope` (parsed, unused by the reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockScope {
    None,
    #[default]
    Job,
    Flow,
}

impl LockScope {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LockScope::None => "none",
            LockScope::Job => "job",
            LockScope::Flow => "flow",
        }
    }
}

/// `jobs[].steps[].on_no_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNoData {
    SkipJob,
}

impl OnNoData {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        "skip_job"
    }
}

/// `flow.determinism` and `steps[].determinism` (engine extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Determinism {
    /// Randomness seeded from the step's ids; clocks are real.
    #[default]
    Normal,
    /// Also: the wall clock is fixed at the run's start, the monotonic clock advances
    /// deterministically, and a fuel budget is mandatory.
    Strict,
}

impl Determinism {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Determinism::Normal => "normal",
            Determinism::Strict => "strict",
        }
    }
}

/// `steps[].limits` (engine extension). `None` means the engine default (settings).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LimitsSpec {
    /// Wall-clock deadline (> 0). `steps[].timeout_seconds` is an alias.
    pub timeout_seconds: Option<f64>,
    /// CPU budget in wasmtime fuel units (> 0).
    pub fuel: Option<u64>,
    /// Linear-memory cap, 1..=4096 MiB.
    pub memory_mb: Option<u64>,
    /// Largest JSON text of the step's outputs (bytes, > 0).
    pub max_output_bytes: Option<u64>,
    /// Log volume one attempt may emit (bytes, > 0); the excess is dropped and counted.
    pub max_log_bytes: Option<u64>,
    /// Largest component (`.wasm` file) the step may run (bytes, > 0).
    pub max_component_bytes: Option<u64>,
}

impl LimitsSpec {
    /// The YAML keys, in declaration order.
    pub const KEYS: &'static [&'static str] = &[
        "timeout_seconds",
        "fuel",
        "memory_mb",
        "max_output_bytes",
        "max_log_bytes",
        "max_component_bytes",
    ];

    pub fn is_empty(&self) -> bool {
        *self == LimitsSpec::default()
    }
}

/// `steps[].mounts[].mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MountMode {
    #[default]
    ReadOnly,
    ReadWrite,
}

impl MountMode {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MountMode::ReadOnly => "ro",
            MountMode::ReadWrite => "rw",
        }
    }
}

/// `steps[].mounts[]` (engine extension): a host directory the step sees at `target`.
#[derive(Debug, Clone, PartialEq)]
pub struct MountSpec {
    /// Host directory as written (may hold `{{env.*}}`; relative to the flow file).
    pub source: String,
    /// Absolute path inside the sandbox.
    pub target: String,
    pub mode: MountMode,
}

/// `flow.workspace`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkspaceSpec {
    /// Default `/tmp/work`.
    pub root: String,
    pub cleanup_policy: CleanupPolicy,
    /// Default `{artifacts, scratch, manifests}` (each mapped to itself). A user layout
    /// **replaces** the default; it is not merged.
    pub layout: BTreeMap<String, String>,
}

impl Default for WorkspaceSpec {
    fn default() -> Self {
        let layout = ["artifacts", "scratch", "manifests"]
            .into_iter()
            .map(|k| (k.to_string(), k.to_string()))
            .collect();
        WorkspaceSpec {
            root: "/tmp/work".to_string(),
            cleanup_policy: CleanupPolicy::OnSuccess,
            layout,
        }
    }
}

/// `flow.state`.
#[derive(Debug, Clone, PartialEq)]
pub struct StateSpec {
    pub backend: StateBackend,
    /// Default `/tmp/state/aetherflow.sqlite`.
    pub path: String,
}

impl Default for StateSpec {
    fn default() -> Self {
        StateSpec {
            backend: StateBackend::Sqlite,
            path: "/tmp/state/aetherflow.sqlite".to_string(),
        }
    }
}

/// `flow.locks` (parsed, unused by the reference).
#[derive(Debug, Clone, PartialEq)]
pub struct LocksSpec {
    pub scope: LockScope,
    /// Default 3600. Values outside i64 saturate (Python ints are unbounded).
    pub ttl_seconds: i64,
}

impl Default for LocksSpec {
    fn default() -> Self {
        LocksSpec {
            scope: LockScope::Job,
            ttl_seconds: 3600,
        }
    }
}

/// The `flow:` block.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowMeta {
    pub id: String,
    pub description: Option<String>,
    pub workspace: WorkspaceSpec,
    pub state: StateSpec,
    pub locks: LocksSpec,
    /// Engine extension: the default determinism of sandboxed steps.
    pub determinism: Determinism,
}

/// `resources.<name>`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceSpec {
    pub kind: String,
    pub driver: String,
    pub profile: Option<String>,
    /// Always a JSON object.
    pub config: Value,
    /// Always a JSON object.
    pub options: Value,
    /// Always a JSON object.
    pub decode: Value,
}

/// `jobs[].steps[]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSpec {
    pub id: String,
    /// The YAML `type`, without its `@sha256:` pin.
    pub type_: String,
    /// Engine extension: the digest of `type: <name>@sha256:<hex>` (lowercase hex).
    pub type_sha256: Option<String>,
    /// Always a JSON object.
    pub inputs: Value,
    pub on_no_data: Option<OnNoData>,
    /// Always a JSON object.
    pub outputs: Value,
    /// Engine extension: per-step timeout (> 0); an alias of `limits.timeout_seconds`.
    pub timeout_seconds: Option<f64>,
    /// Engine extension: resource limits (all `None` when absent).
    pub limits: LimitsSpec,
    /// Engine extension: resources the step may use besides those its inputs name.
    pub grants: Vec<String>,
    /// Engine extension: host directories preopened for the step.
    pub mounts: Vec<MountSpec>,
    /// Engine extension: overrides `flow.determinism`.
    pub determinism: Option<Determinism>,
}

impl StepSpec {
    /// The deadline the flow asks for: `limits.timeout_seconds`, else `timeout_seconds`.
    pub fn timeout(&self) -> Option<f64> {
        self.limits.timeout_seconds.or(self.timeout_seconds)
    }
}

/// `jobs[]`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub id: String,
    pub description: Option<String>,
    pub depends_on: Vec<String>,
    pub when: Option<String>,
    pub steps: Vec<StepSpec>,
}

/// A whole flow file.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSpec {
    /// Never checked (any int). Saturates outside i64.
    pub version: i64,
    pub flow: FlowMeta,
    /// In YAML order.
    pub resources: Vec<(String, ResourceSpec)>,
    pub jobs: Vec<JobSpec>,
    /// Engine extension: the top-level `steps:` section (step name -> where its component
    /// comes from and what it must be), in YAML order. Not rendered.
    pub step_lock: Vec<(String, StepLockEntry)>,
    /// Engine extension: the top-level `settings:` section. Not rendered.
    pub settings: FlowSettings,
}

/// Engine extension: `steps.<name>`, a pin on every use of a step type.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepLockEntry {
    /// The sha256 of the component file's bytes (lowercase hex).
    pub sha256: Option<String>,
    /// The version the component's `describe` must return.
    pub version: Option<String>,
    /// Load the component from this file (relative to the flow file's directory).
    pub path: Option<String>,
}

/// Engine extension: the top-level `settings:` section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FlowSettings {
    /// Allow `external.process` in enterprise mode (default false).
    pub allow_external_process: bool,
}

impl FlowSpec {
    /// Look a resource up by name.
    pub fn resource(&self, name: &str) -> Option<&ResourceSpec> {
        self.resources
            .iter()
            .find_map(|(n, r)| (n == name).then_some(r))
    }
}

/// One entry of a profiles file (§1.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Always a JSON object.
    pub config: Value,
    /// Always a JSON object.
    pub options: Value,
    /// Always a JSON object.
    pub decode: Value,
}
