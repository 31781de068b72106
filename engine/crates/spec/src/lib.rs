//! Flow YAML loading, schema validation and typed specs for AetherFlow-RS.
//!
//! Reproduces the reference AetherFlow `spec.py` / `validation.py` behaviour (parity file §1):
//!
//! * [`load_flow`] / [`parse_flow`]: YAML (PyYAML `safe_load` semantics, see [`yaml`]) with
//!   positions, then pydantic-like schema validation ([`LoadedFlow`]);
//! * [`semantic_checks`]: the §1.4 checks;
//! * [`flow_meta_from_value`]: re-validation of the rendered `flow:` block;
//! * [`parse_profiles`]: the profiles file schema (§1.2).

pub mod issue;
pub mod model;
mod pin;
mod schema;
pub mod semantic;
pub mod yaml;

pub use issue::{Issue, Pos};
pub use model::{
    CleanupPolicy, Determinism, FlowMeta, FlowSettings, FlowSpec, JobSpec, LimitsSpec, LockScope,
    LocksSpec, MountMode, MountSpec, OnNoData, Profile, ResourceSpec, StateBackend, StateSpec,
    StepLockEntry, StepSpec, WorkspaceSpec,
};
pub use pin::{is_sha256_hex, split_type_pin, PIN_SYNTAX};
pub use schema::{parse_size, suggest};
pub use semantic::{
    py_repr_str, py_sorted_list_repr, semantic_checks, ExternalProcessCheck, SemanticOptions,
    WhenCheck,
};
pub use yaml::{PosIndex, YamlError, YamlErrorKind};

use issue::Seg;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use yaml::{Node, NodeKind};

/// Why a flow file could not be turned into a [`LoadedFlow`].
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid UTF-8.
    #[error("{path}: file is not valid utf-8")]
    Encoding { path: PathBuf },
    /// YAML syntax or construction error (with file, line, column and a caret).
    #[error(transparent)]
    Yaml(#[from] YamlError),
}

/// A parsed and schema-validated flow file.
#[derive(Debug, Clone)]
pub struct LoadedFlow {
    /// The file name used in messages.
    pub file: String,
    /// The document as JSON (`{}` for an empty or falsy document, like `safe_load(f) or {}`).
    /// Non-string mapping keys become Python `str()` of the key (`1`, `True`, `None`);
    /// `.inf`/`.nan` become the strings `inf`/`-inf`/`nan`.
    pub raw: Value,
    /// The document's node tree, for [`LoadedFlow::positions`].
    node: std::sync::Arc<Node>,
    /// Built on first use: a flow that has no issues never needs it.
    positions: std::sync::OnceLock<PosIndex>,
    /// Schema errors (pydantic parity). Non-empty means `spec` is `None`.
    pub errors: Vec<Issue>,
    /// Schema warnings (`schema:unknown_key`); they never change the verdict.
    pub warnings: Vec<Issue>,
    /// The typed spec, when there are no schema errors.
    pub spec: Option<FlowSpec>,
}

impl LoadedFlow {
    /// Positions of every node, keyed by issue location.
    pub fn positions(&self) -> &PosIndex {
        self.positions.get_or_init(|| {
            let mut index = PosIndex::default();
            yaml::index_positions(&self.node, &mut index);
            index
        })
    }

    /// Run [`semantic_checks`] on the spec (empty when there is none) and attach source
    /// positions to the issues.
    pub fn semantic_checks(&self, opts: &SemanticOptions<'_>) -> Vec<Issue> {
        let Some(spec) = &self.spec else {
            return Vec::new();
        };
        semantic_checks(spec, opts)
            .into_iter()
            .map(|i| {
                let pos = self.positions().lookup(&i.loc);
                i.with_pos(pos)
            })
            .collect()
    }
}

/// Read and validate a flow file.
pub fn load_flow(path: &Path) -> Result<LoadedFlow, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| LoadError::Encoding {
        path: path.to_path_buf(),
    })?;
    parse_flow(&text, &path.display().to_string())
}

/// Parse and validate flow YAML text; `file_name` is used in error messages.
pub fn parse_flow(text: &str, file_name: &str) -> Result<LoadedFlow, LoadError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let node = yaml::load_node(text, file_name)?;
    let node = match node {
        Some(n) if !n.is_falsy() => n,
        // `yaml.safe_load(f) or {}`
        other => Node {
            kind: NodeKind::Map(Vec::new()),
            pos: other.and_then(|n| n.pos),
        },
    };
    let raw = yaml::to_value(&node);
    let mut checker = schema::Checker::new(Vec::new());
    let spec = checker.flow_spec(&node);
    let spec = if checker.errors.is_empty() {
        spec
    } else {
        None
    };
    Ok(LoadedFlow {
        file: file_name.to_string(),
        raw,
        node: std::sync::Arc::new(node),
        positions: std::sync::OnceLock::new(),
        errors: checker.errors,
        warnings: checker.warnings,
        spec,
    })
}

/// Validate a (rendered) `flow:` block as `FlowMetaSpec`. Issue locs are prefixed with
/// `flow.` (e.g. `flow.workspace.cleanup_policy`). Unknown-key warnings are dropped (they were
/// reported when the file was loaded).
pub fn flow_meta_from_value(v: &Value) -> Result<FlowMeta, Vec<Issue>> {
    let node = Node::from_value(v);
    let mut checker = schema::Checker::new(vec![Seg::Field("flow".into())]);
    match checker.flow_meta(&node) {
        Some(meta) if checker.errors.is_empty() => Ok(meta),
        _ => Err(checker.errors),
    }
}

/// Validate a profiles document (§1.2): a mapping `name -> {config, options, decode}` with
/// unknown keys forbidden. Locs are relative to the document root (`p.config`, `<root>`).
/// The caller applies `safe_load(...) or {}` for empty files (pass `{}`).
pub fn parse_profiles(value: &Value) -> Result<BTreeMap<String, Profile>, Vec<Issue>> {
    let node = Node::from_value(value);
    let mut checker = schema::Checker::new(Vec::new());
    match checker.profiles(&node) {
        Some(p) if checker.errors.is_empty() => Ok(p),
        _ => Err(checker.errors),
    }
}

#[cfg(test)]
mod tests;
