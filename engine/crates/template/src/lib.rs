//! `aetherflow-template`: the single template resolver of the engine.
//!
//! Reproduces `aetherflow.core.resolution` (aetherflow-core 0.0.14, parity
//! checklist §2) and the `when` validator/evaluator (§2.8):
//!
//! * [`render`] / [`render_str`]: `{{PATH}}` / `{{PATH:DEFAULT}}` templates
//!   with phase-restricted roots ([`Phase`]).
//! * [`py_str`]: Python `str()` formatting used by inline rendering.
//! * [`when`]: `job.when` validation and evaluation (minijinja backed).
//! * [`scan`]: validation-time template scan helper (§1.5).

mod pystr;
mod render;

pub mod scan;
pub mod when;

pub use pystr::{py_float_repr, py_repr, py_str, py_str_repr};
pub use render::{
    contains_forbidden_syntax, is_standalone_token, render, render_inline, render_str,
};
pub use scan::{scan, scan_each_leaf, string_leaf_paths, ScanFinding, ScanKind};

/// Prefix of every syntax error message (`_UNSUPPORTED_MSG`).
pub const UNSUPPORTED_MSG: &str = "Unsupported templating syntax. Use {{VAR}} or {{VAR:DEFAULT}}";

/// Rendering phase; decides which template roots may be referenced (§2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Resource `config`/`options` (and profiles, manifest resources): `{env}`.
    Resource,
    /// The `flow:` block: `{env}`.
    FlowMeta,
    /// Step `inputs`/`outputs`: `{env, steps, job, run_id, flow_id, result, jobs}`.
    Step,
}

const ENV_ONLY: &[&str] = &["env"];
const STEP_ROOTS: &[&str] = &["env", "flow_id", "job", "jobs", "result", "run_id", "steps"];

impl Phase {
    /// Roots allowed in this phase (sorted).
    pub fn allowed_roots(self) -> &'static [&'static str] {
        match self {
            Phase::Resource | Phase::FlowMeta => ENV_ONLY,
            Phase::Step => STEP_ROOTS,
        }
    }

    /// Python set repr of the allowed roots (sorted), e.g. `{'env'}`.
    pub fn allowed_roots_repr(self) -> String {
        let items: Vec<String> = self
            .allowed_roots()
            .iter()
            .map(|r| format!("'{r}'"))
            .collect();
        format!("{{{}}}", items.join(", "))
    }
}

/// Errors raised by rendering (`ResolverSyntaxError` / `ResolverMissingKeyError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Display: `Unsupported templating syntax. Use {{VAR}} or {{VAR:DEFAULT}}\n<detail>`.
    #[error("Unsupported templating syntax. Use {{{{VAR}}}} or {{{{VAR:DEFAULT}}}}\n{detail}")]
    Syntax { detail: String },
    /// Display: `missing template key 'env.X'` (`path` is the dotted path).
    #[error("missing template key '{path}'")]
    MissingKey { path: String },
}
