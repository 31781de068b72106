//! Which component runs a step, and whether the flow's pins hold (docs/provenance.md).
//!
//! A flow pins a step type to the sha256 of its component file with
//! `type: <name>@sha256:<hex>` on one step, or for every use of the name with the top-level
//! `steps: {<name>: {sha256, version, path}}` section; `path` loads the component from a
//! file next to the flow instead of from `AETHERFLOW_PLUGIN_PATHS`. The same selection
//! serves validation (every step, reported as issues before anything runs) and the runner
//! (each attempt, so a `with_lock` inner step is held to the same rules).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use aetherflow_spec::{split_type_pin, FlowSpec, Issue};
use serde_json::Value;

use super::{Registry, RegistryError, StepImpl, EXTERNAL_PROCESS, WITH_LOCK};
use crate::sandbox::{LoadedStep, Origin};
use crate::settings::Mode;

/// What the flow's `steps:` section and `settings:` say, once bound to the registry.
#[derive(Default)]
pub(super) struct FlowBinding {
    /// name -> the entry's `sha256` and `version`.
    pins: BTreeMap<String, LockPin>,
    /// Components loaded from `steps.<name>.path`; they take precedence over plugins.
    pub(super) components: BTreeMap<String, Arc<LoadedStep>>,
    allow_external_process: bool,
}

#[derive(Default)]
struct LockPin {
    sha256: Option<String>,
    version: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error(
        "step type `{name}` is pinned to sha256 {expected}, but {origin} has sha256 {actual}{hint}; \
         if you have reviewed this component and trust it, update the pin \
         (`aetherflow steps show {name}` prints it)"
    )]
    PinMismatch {
        name: String,
        expected: String,
        actual: String,
        origin: String,
        /// What else has the expected digest, if anything.
        hint: String,
    },
    #[error(
        "step type `{name}` is pinned to sha256 {expected}, but none of the plugins claiming \
         the name has it: {claimants}{hint}; if you have reviewed one of them and trust it, \
         pin that one"
    )]
    NoPinnedClaimant {
        name: String,
        expected: String,
        claimants: String,
        hint: String,
    },
    #[error(
        "{claimants}; remove all but one from AETHERFLOW_PLUGIN_PATHS, or pin the one to run, \
         e.g. `type: {name}@sha256:{first}`"
    )]
    Ambiguous {
        name: String,
        claimants: String,
        first: String,
    },
    #[error(
        "step type `{name}` is pinned to sha256 {step} by `type:` but to {lock} by \
         `steps.{name}.sha256`; keep one pin"
    )]
    PinConflict {
        name: String,
        step: String,
        lock: String,
    },
    #[error(
        "`{name}` is a native step of the engine, not a component: it has no sha256, version \
         or file to pin"
    )]
    NativePinned { name: String },
    #[error(
        "`steps.{name}.version` is `{expected}`, but {origin} describes version `{actual}`; \
         update the entry after reviewing the component"
    )]
    VersionMismatch {
        name: String,
        expected: String,
        actual: String,
        origin: String,
    },
    #[error(
        "enterprise mode refuses `external.process`, which runs an OS command outside the \
         sandbox, unless the flow allows it: add `settings: {{allow_external_process: true}}` \
         at the top level of the flow"
    )]
    EnterpriseExternalProcess,
    #[error(
        "enterprise mode runs only pinned components, and `steps.{name}` loads `{file}` \
         without a `sha256`: review that file, then add `sha256: \"{actual}\"` to \
         `steps.{name}`"
    )]
    EnterpriseUnpinned {
        name: String,
        file: String,
        actual: String,
    },
    #[error("{0}")]
    Load(#[from] RegistryError),
}

impl ProvenanceError {
    /// The validation issue code.
    pub fn code(&self) -> &'static str {
        match self {
            ProvenanceError::PinMismatch { .. } | ProvenanceError::NoPinnedClaimant { .. } => {
                "semantic:step_pin_mismatch"
            }
            ProvenanceError::Ambiguous { .. } => "semantic:ambiguous_step_type",
            ProvenanceError::PinConflict { .. } => "semantic:step_pin_conflict",
            ProvenanceError::NativePinned { .. } => "semantic:step_pin_native",
            ProvenanceError::VersionMismatch { .. } => "semantic:step_version_mismatch",
            ProvenanceError::EnterpriseExternalProcess => "semantic:enterprise_external_process",
            ProvenanceError::EnterpriseUnpinned { .. } => "semantic:enterprise_unpinned_step",
            ProvenanceError::Load(_) => "semantic:step_load",
        }
    }
}

/// "2 plugins claim step name `greet`: `a.wasm` (sha256 …), `b.wasm` (sha256 …)".
pub(super) fn claimants(name: &str, candidates: &[Arc<LoadedStep>]) -> String {
    format!(
        "{} plugins claim step name `{name}`: {}",
        candidates.len(),
        candidates
            .iter()
            .map(|c| format!("`{}` (sha256 {})", c.origin, c.sha256))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The component (or native step) chosen for a step type, its pins checked.
enum Selected {
    Native(StepImpl),
    /// A built-in whose digest was checked without loading it.
    Builtin(String),
    Component(Arc<LoadedStep>),
}

impl Registry {
    /// Take in the flow's `steps:` section (loading every `path` entry, relative to
    /// `flow_dir`) and `settings:`. Returns what is wrong with the section; the pins are
    /// kept either way, so nothing unpinned slips through a broken entry.
    pub fn bind_flow(&mut self, spec: &FlowSpec, flow_dir: &Path) -> Vec<Issue> {
        let mut issues = Vec::new();
        self.flow = FlowBinding {
            allow_external_process: spec.settings.allow_external_process,
            ..FlowBinding::default()
        };
        let enterprise = self.mode == Mode::Enterprise;
        for (name, entry) in &spec.step_lock {
            let at = |field: &str| {
                if field.is_empty() {
                    format!("steps.{name}")
                } else {
                    format!("steps.{name}.{field}")
                }
            };
            self.flow.pins.insert(
                name.clone(),
                LockPin {
                    sha256: entry.sha256.clone(),
                    version: entry.version.clone(),
                },
            );
            if name == EXTERNAL_PROCESS || name == WITH_LOCK {
                let e = ProvenanceError::NativePinned { name: name.clone() };
                issues.push(Issue::new(e.code(), at(""), e.to_string()));
                continue;
            }
            let Some(path) = &entry.path else {
                if enterprise && !self.builtin_bytes.contains_key(name.as_str()) {
                    issues.push(Issue::new(
                        "semantic:enterprise_plugin_path",
                        at(""),
                        format!(
                            "enterprise mode ignores AETHERFLOW_PLUGIN_PATHS, so `{name}` must \
                             come from the flow: add `path:` (the component file, relative to \
                             the flow file) to `steps.{name}`"
                        ),
                    ));
                }
                continue;
            };
            if self.builtin_bytes.contains_key(name.as_str()) {
                issues.push(Issue::new(
                    "semantic:step_lock_path",
                    at("path"),
                    format!(
                        "`{name}` is a built-in step, which a flow cannot load from a file; pin \
                         the built-in with `sha256` alone, or give your component another name"
                    ),
                ));
                continue;
            }
            let file = flow_dir.join(path);
            let file = std::path::absolute(&file).unwrap_or(file);
            let bytes = match std::fs::read(&file) {
                Ok(b) => b,
                Err(e) => {
                    issues.push(Issue::new(
                        "semantic:step_lock_path",
                        at("path"),
                        format!("cannot read `{}`: {e}", file.display()),
                    ));
                    continue;
                }
            };
            let step = match self.sandbox.load(&bytes, Origin::Plugin(file.clone())) {
                Ok(s) => s,
                Err(e) => {
                    issues.push(Issue::new("semantic:step_load", at("path"), e.to_string()));
                    continue;
                }
            };
            if &step.info.name != name {
                issues.push(Issue::new(
                    "semantic:step_lock_name",
                    at("path"),
                    format!(
                        "`{}` describes itself as step `{}`, not `{name}`; point \
                         `steps.{name}.path` at the `{name}` component",
                        file.display(),
                        step.info.name
                    ),
                ));
                continue;
            }
            if enterprise && entry.sha256.is_none() {
                let e = ProvenanceError::EnterpriseUnpinned {
                    name: name.clone(),
                    file: file.display().to_string(),
                    actual: step.sha256.clone(),
                };
                issues.push(Issue::new(e.code(), at(""), e.to_string()));
            }
            self.flow.components.insert(name.clone(), Arc::new(step));
        }
        issues
    }

    /// Check every use of a step type in the flow against its pins and the mode, as
    /// (errors, warnings). Unknown step types are left to the semantic checks.
    pub fn check_flow(&self, spec: &FlowSpec) -> (Vec<Issue>, Vec<Issue>) {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let mut used: BTreeSet<&str> = BTreeSet::new();
        for job in &spec.jobs {
            for step in &job.steps {
                used.insert(&step.type_);
                if let Some(Ok((inner, _))) = literal_inner_type(&step.type_, &step.inputs) {
                    used.insert(inner);
                }
            }
        }
        for (name, entry) in &spec.step_lock {
            if name == EXTERNAL_PROCESS || name == WITH_LOCK {
                continue; // reported by bind_flow
            }
            if !self.contains(name) {
                // In enterprise mode bind_flow has refused an entry without a path already.
                let refused = self.mode == Mode::Enterprise;
                if entry.path.is_none() && !refused && !used.contains(name.as_str()) {
                    warnings.push(Issue::new(
                        "semantic:step_lock_unused",
                        format!("steps.{name}"),
                        format!(
                            "`steps.{name}` pins a step type that is not loaded and that this \
                             flow does not use"
                        ),
                    ));
                }
                continue;
            }
            if let Err(e) = self.select(name, None) {
                let field = match e {
                    ProvenanceError::PinMismatch { .. }
                    | ProvenanceError::NoPinnedClaimant { .. } => ".sha256",
                    ProvenanceError::VersionMismatch { .. } => ".version",
                    _ => "",
                };
                // Reported by bind_flow already.
                if !matches!(e, ProvenanceError::EnterpriseUnpinned { .. }) {
                    errors.push(Issue::new(
                        e.code(),
                        format!("steps.{name}{field}"),
                        e.to_string(),
                    ));
                }
            }
        }
        for (ji, job) in spec.jobs.iter().enumerate() {
            for (si, step) in job.steps.iter().enumerate() {
                let loc = format!("jobs[{ji}].steps[{si}]");
                let pin = step.type_sha256.as_deref();
                if let Some(e) = self.check_use(&step.type_, pin) {
                    let msg = format!("step `{}`: {e}", step.id);
                    errors.push(Issue::new(e.code(), format!("{loc}.type"), msg));
                }
                match literal_inner_type(&step.type_, &step.inputs) {
                    None => {}
                    Some(Err(msg)) => errors.push(Issue::new(
                        "semantic:step_pin",
                        format!("{loc}.inputs.step.type"),
                        format!("step `{}`: {msg}", step.id),
                    )),
                    Some(Ok((inner, pin))) => {
                        if let Some(e) = self.check_use(inner, pin.as_deref()) {
                            let msg = format!("step `{}` (inside `with_lock`): {e}", step.id);
                            errors.push(Issue::new(
                                e.code(),
                                format!("{loc}.inputs.step.type"),
                                msg,
                            ));
                        }
                    }
                }
            }
        }
        (errors, warnings)
    }

    /// One use of a step type, for validation: what would refuse it at run time, except
    /// what the `steps:` entry of the name reports already.
    fn check_use(&self, name: &str, pin: Option<&str>) -> Option<ProvenanceError> {
        if !self.contains(name) {
            return None;
        }
        let lock_sha = self.flow.pins.get(name).map(|p| p.sha256.as_deref());
        let checked_by_entry = match lock_sha {
            None => false,
            Some(lock) => pin.is_none() || pin == lock,
        };
        match self.select(name, pin) {
            Err(ProvenanceError::EnterpriseExternalProcess) => {
                Some(ProvenanceError::EnterpriseExternalProcess)
            }
            Err(e) if !checked_by_entry => Some(e),
            _ => None,
        }
    }

    /// What runs a step of type `name` (`pin`: the step's own `@sha256:`), with the flow's
    /// pins and the mode enforced. `Ok(None)`: no such step type.
    pub fn resolve(
        &self,
        name: &str,
        pin: Option<&str>,
    ) -> Result<Option<StepImpl>, ProvenanceError> {
        if !self.contains(name) {
            return Ok(None);
        }
        Ok(Some(match self.select(name, pin)? {
            Selected::Native(n) => n,
            Selected::Component(c) => StepImpl::Component(c),
            Selected::Builtin(b) => match self.builtin(&b)? {
                Some(c) => StepImpl::Component(c),
                None => return Ok(None),
            },
        }))
    }

    /// Pick the component for `name` and check it against the step's pin, the flow's
    /// `steps:` entry and the mode. Built-ins are loaded only when their version is pinned.
    /// `name` must be known (`contains`).
    fn select(&self, name: &str, pin: Option<&str>) -> Result<Selected, ProvenanceError> {
        let lock = self.flow.pins.get(name);
        let lock_sha = lock.and_then(|l| l.sha256.as_deref());
        let expected = match (pin, lock_sha) {
            (Some(step), Some(lock)) if step != lock => {
                return Err(ProvenanceError::PinConflict {
                    name: name.into(),
                    step: step.into(),
                    lock: lock.into(),
                })
            }
            (step, lock) => step.or(lock),
        };
        let version = lock.and_then(|l| l.version.as_deref());

        if name == EXTERNAL_PROCESS || name == WITH_LOCK {
            if expected.is_some() || version.is_some() {
                return Err(ProvenanceError::NativePinned { name: name.into() });
            }
            if name == WITH_LOCK {
                return Ok(Selected::Native(StepImpl::WithLock));
            }
            if self.mode == Mode::Enterprise && !self.flow.allow_external_process {
                return Err(ProvenanceError::EnterpriseExternalProcess);
            }
            return Ok(Selected::Native(StepImpl::ExternalProcess));
        }

        let component = if let Some(c) = self.flow.components.get(name) {
            if self.mode == Mode::Enterprise && expected.is_none() {
                let file = match &c.origin {
                    Origin::Plugin(p) => p.display().to_string(),
                    Origin::Builtin => c.origin.to_string(),
                };
                return Err(ProvenanceError::EnterpriseUnpinned {
                    name: name.into(),
                    file,
                    actual: c.sha256.clone(),
                });
            }
            c.clone()
        } else if let Some((_, _, sha256)) = self.builtin_bytes.get(name) {
            if let Some(expected) = expected.filter(|e| e != sha256) {
                return Err(ProvenanceError::PinMismatch {
                    name: name.into(),
                    expected: expected.into(),
                    actual: sha256.to_string(),
                    origin: format!(
                        "the built-in `{name}` of this aetherflow binary ({})",
                        env!("CARGO_PKG_VERSION")
                    ),
                    hint: self.digest_hint(expected),
                });
            }
            if version.is_none() {
                return Ok(Selected::Builtin(name.into()));
            }
            match self.builtin(name)? {
                Some(c) => c,
                None => return Ok(Selected::Builtin(name.into())),
            }
        } else {
            let candidates = self.plugins.get(name).map(Vec::as_slice).unwrap_or(&[]);
            match (expected, candidates) {
                (_, []) => return Ok(Selected::Builtin(name.into())),
                (None, [only]) => only.clone(),
                (None, all) => {
                    return Err(ProvenanceError::Ambiguous {
                        name: name.into(),
                        claimants: claimants(name, all),
                        first: all[0].sha256.clone(),
                    })
                }
                (Some(expected), all) => match all.iter().find(|c| c.sha256 == expected) {
                    Some(c) => c.clone(),
                    None if all.len() == 1 => all[0].clone(),
                    None => {
                        return Err(ProvenanceError::NoPinnedClaimant {
                            name: name.into(),
                            expected: expected.into(),
                            claimants: claimants(name, all),
                            hint: self.digest_hint(expected),
                        })
                    }
                },
            }
        };

        let origin = || match &component.origin {
            Origin::Plugin(p) if self.flow.components.contains_key(name) => {
                format!("`{}` (steps.{name}.path)", p.display())
            }
            Origin::Plugin(p) => format!("`{}`", p.display()),
            Origin::Builtin => format!(
                "the built-in `{name}` of this aetherflow binary ({})",
                env!("CARGO_PKG_VERSION")
            ),
        };
        if let Some(expected) = expected.filter(|e| *e != component.sha256) {
            return Err(ProvenanceError::PinMismatch {
                name: name.into(),
                expected: expected.into(),
                actual: component.sha256.clone(),
                origin: origin(),
                hint: self.digest_hint(expected),
            });
        }
        if let Some(v) = version.filter(|v| *v != component.info.version) {
            return Err(ProvenanceError::VersionMismatch {
                name: name.into(),
                expected: v.into(),
                actual: component.info.version.clone(),
                origin: origin(),
            });
        }
        Ok(Selected::Component(component))
    }

    /// " (sha256 X is `file`, which describes itself as step `y`)" when another known
    /// component has the digest a pin expected: the pin names the wrong step.
    fn digest_hint(&self, expected: &str) -> String {
        let builtins = self
            .builtin_bytes
            .iter()
            .filter(|(_, (_, _, sha))| *sha == expected)
            .map(|(name, _)| format!(" (sha256 {expected} is the built-in step `{name}`)"));
        let components = self
            .plugins
            .values()
            .flatten()
            .chain(self.flow.components.values())
            .filter(|c| c.sha256 == expected)
            .map(|c| {
                format!(
                    " (sha256 {expected} is `{}`, which describes itself as step `{}`)",
                    c.origin, c.info.name
                )
            });
        builtins.chain(components).next().unwrap_or_default()
    }
}

/// The step a `with_lock` step wraps, when its `inputs.step.type` is a literal (a
/// templated one is checked when it runs): `(name, pin)`, or why the pin is malformed.
fn literal_inner_type<'a>(
    type_: &str,
    inputs: &'a Value,
) -> Option<Result<(&'a str, Option<String>), String>> {
    if type_ != WITH_LOCK {
        return None;
    }
    let inner = inputs.get("step")?.get("type")?.as_str()?;
    if inner.contains("{{") {
        return None;
    }
    Some(split_type_pin(inner))
}
