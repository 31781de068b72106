//! The step registry: built-in components embedded in the binary (loaded lazily), plugin
//! components found in `AETHERFLOW_PLUGIN_PATHS`, components a flow loads from its `steps:`
//! section, and the two native steps that cannot run in a sandbox (`external.process`,
//! `with_lock`). Which component runs a step, and whether its pins hold, is decided in
//! [`provenance`].

mod provenance;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use provenance::ProvenanceError;

use crate::sandbox::{LoadedStep, Origin, Sandbox, SandboxError};
use crate::settings::Mode;

mod builtins {
    include!(concat!(env!("OUT_DIR"), "/builtins.rs"));
}

pub const EXTERNAL_PROCESS: &str = "external.process";
pub const WITH_LOCK: &str = "with_lock";

/// What runs a step type.
#[derive(Clone)]
pub enum StepImpl {
    Component(Arc<LoadedStep>),
    ExternalProcess,
    WithLock,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Plugin path not found: {0}")]
    PluginPathNotFound(String),
    #[error("Failed loading plugin file: {path}: {message}")]
    PluginLoad { path: String, message: String },
    #[error("Failed loading plugin file: {path}: the component is {}, over the limit of {} (AETHERFLOW_MAX_COMPONENT_BYTES); raise the limit if you trust this component", crate::sandbox::fmt_bytes(*.size), crate::sandbox::fmt_bytes(*.limit))]
    PluginTooLarge { path: String, size: u64, limit: u64 },
    #[error("plugin `{path}` declares step name `{name}`, which {owner} already uses; give the plugin's step another name")]
    NameClash {
        path: String,
        name: String,
        owner: String,
    },
    #[error("{0}")]
    Sandbox(#[from] SandboxError),
}

pub struct Registry {
    sandbox: Arc<Sandbox>,
    mode: Mode,
    /// name -> (component bytes, the same precompiled by build.rs, sha256 of the bytes)
    builtin_bytes: BTreeMap<&'static str, (&'static [u8], &'static [u8], &'static str)>,
    loaded: Mutex<BTreeMap<String, Arc<LoadedStep>>>,
    /// Plugins by the name their `describe` returns. Several when different files claim
    /// one name: a flow then has to pin the one it runs.
    plugins: BTreeMap<String, Vec<Arc<LoadedStep>>>,
    /// The flow's `steps:` section and the components it loaded (see `bind_flow`).
    flow: provenance::FlowBinding,
    /// Plugin paths skipped (non-strict mode, enterprise mode) and names claimed by several
    /// plugins, with why (reported as warnings).
    pub warnings: Vec<String>,
    /// Plugin components larger than this are refused before they are read.
    max_component_bytes: u64,
}

impl Registry {
    /// Built-ins plus the plugins in `plugin_paths`; in enterprise mode the plugin paths
    /// are not read at all (a warning says so). `max_component_bytes`: plugin files larger
    /// than this are refused (not read).
    pub fn new(
        sandbox: Arc<Sandbox>,
        plugin_paths: &[PathBuf],
        strict: bool,
        mode: Mode,
        max_component_bytes: u64,
    ) -> Result<Registry, RegistryError> {
        let builtin_bytes: BTreeMap<_, _> = builtins::BUILTIN_COMPONENTS
            .iter()
            .map(|(name, bytes, precompiled, sha)| (*name, (*bytes, *precompiled, *sha)))
            .collect();
        let mut reg = Registry {
            sandbox,
            mode,
            builtin_bytes,
            loaded: Mutex::new(BTreeMap::new()),
            plugins: BTreeMap::new(),
            flow: provenance::FlowBinding::default(),
            warnings: Vec::new(),
            max_component_bytes,
        };
        if mode == Mode::Enterprise && !plugin_paths.is_empty() {
            let list: Vec<String> = plugin_paths
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            reg.warnings.push(format!(
                "AETHERFLOW_MODE=enterprise ignores AETHERFLOW_PLUGIN_PATHS ({}): a flow loads \
                 its plugins from its `steps:` section, by path and sha256 (docs/provenance.md)",
                list.join(",")
            ));
            return Ok(reg);
        }
        for root in plugin_paths {
            let abs = std::path::absolute(root).unwrap_or_else(|_| root.clone());
            if !abs.exists() {
                if strict {
                    return Err(RegistryError::PluginPathNotFound(abs.display().to_string()));
                }
                reg.warnings
                    .push(format!("Plugin path not found: {}", abs.display()));
                continue;
            }
            for file in wasm_files(&abs) {
                match reg.load_plugin(&file) {
                    Ok(()) => {}
                    Err(e) if strict => return Err(e),
                    Err(e) => reg.warnings.push(e.to_string()),
                }
            }
        }
        for (name, candidates) in &reg.plugins {
            if candidates.len() > 1 {
                reg.warnings.push(format!(
                    "{}; a flow that uses `{name}` must pin the one it runs",
                    provenance::claimants(name, candidates)
                ));
            }
        }
        Ok(reg)
    }

    /// Whether `name` is a built-in component or a native step (a plugin may not take it).
    fn is_builtin(&self, name: &str) -> bool {
        self.builtin_bytes.contains_key(name) || name == EXTERNAL_PROCESS || name == WITH_LOCK
    }

    fn load_plugin(&mut self, file: &Path) -> Result<(), RegistryError> {
        let path = file.display().to_string();
        let io_err = |e: std::io::Error| RegistryError::PluginLoad {
            path: path.clone(),
            message: e.to_string(),
        };
        let size = std::fs::metadata(file).map_err(io_err)?.len();
        if size > self.max_component_bytes {
            return Err(RegistryError::PluginTooLarge {
                path,
                size,
                limit: self.max_component_bytes,
            });
        }
        let bytes = std::fs::read(file).map_err(|e| RegistryError::PluginLoad {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let step = self
            .sandbox
            .load(&bytes, Origin::Plugin(file.to_path_buf()))
            .map_err(|e| RegistryError::PluginLoad {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let name = step.info.name.clone();
        if self.is_builtin(&name) {
            return Err(RegistryError::NameClash {
                path,
                name,
                owner: "the built-in step".into(),
            });
        }
        let candidates = self.plugins.entry(name).or_default();
        // The same file listed twice, or a byte-identical copy: one component, nothing
        // to choose between.
        if !candidates.iter().any(|c| c.sha256 == step.sha256) {
            candidates.push(Arc::new(step));
        }
        Ok(())
    }

    /// Every registered step type, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .builtin_bytes
            .keys()
            .map(|s| s.to_string())
            .chain(self.plugins.keys().cloned())
            .chain(self.flow.components.keys().cloned())
            .chain([EXTERNAL_PROCESS.to_string(), WITH_LOCK.to_string()])
            .collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn contains(&self, name: &str) -> bool {
        self.is_builtin(name)
            || self.plugins.contains_key(name)
            || self.flow.components.contains_key(name)
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A built-in component, compiled (or fetched from the component cache) on first use.
    fn builtin(&self, name: &str) -> Result<Option<Arc<LoadedStep>>, RegistryError> {
        let Some((bytes, precompiled, sha256)) = self.builtin_bytes.get(name) else {
            return Ok(None);
        };
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = loaded.get(name) {
            return Ok(Some(s.clone()));
        }
        let step = Arc::new(
            self.sandbox
                .load_builtin(bytes, precompiled, sha256.to_string())?,
        );
        loaded.insert(name.to_string(), step.clone());
        Ok(Some(step))
    }

    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    /// What `aetherflow steps` shows about one step type: one entry, or one per plugin
    /// when several claim the name; empty if there is no such step. Built-ins are loaded
    /// (compiled on a cold component cache) to ask `describe`.
    pub fn entries(&self, name: &str) -> Result<Vec<StepEntry>, RegistryError> {
        let native = |description: &str| StepEntry {
            name: name.to_string(),
            origin: "native (runs in the engine, not in a sandbox)".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            sha256: None,
            description: description.into(),
            input_schema: None,
            capabilities: Vec::new(),
        };
        let component = |c: &LoadedStep| StepEntry {
            name: name.to_string(),
            origin: c.origin.to_string(),
            version: c.info.version.clone(),
            sha256: Some(c.sha256.clone()),
            description: c.info.description.clone(),
            input_schema: Some(c.info.input_schema.clone()),
            capabilities: c.info.capabilities.clone(),
        };
        Ok(match name {
            EXTERNAL_PROCESS => vec![native(
                "Run an OS command (see docs/steps.md); the flow's explicit escape hatch.",
            )],
            WITH_LOCK => vec![native(
                "Run an embedded step while holding a TTL lock (see docs/steps.md).",
            )],
            _ => {
                if let Some(c) = self.flow.components.get(name) {
                    vec![component(c)]
                } else if let Some(c) = self.builtin(name)? {
                    vec![component(&c)]
                } else {
                    self.plugins
                        .get(name)
                        .map(|cs| cs.iter().map(|c| component(c)).collect())
                        .unwrap_or_default()
                }
            }
        })
    }
}

/// One available step type, as `aetherflow steps list/show` prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepEntry {
    pub name: String,
    /// `builtin`, the plugin's file, or native.
    pub origin: String,
    pub version: String,
    /// Of the component's bytes (none for native steps).
    pub sha256: Option<String>,
    pub description: String,
    pub input_schema: Option<serde_json::Value>,
    /// (connector kind, the input naming the resource).
    pub capabilities: Vec<(String, String)>,
}

/// A `.wasm` file, or every `.wasm` below a directory (sorted; names starting with `_` are
/// skipped, like the reference skips `_*.py`).
fn wasm_files(root: &Path) -> Vec<PathBuf> {
    if root.is_file() {
        return vec![root.to_path_buf()];
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "wasm")
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('_'))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A built-in's artifact lands in the component cache as a copy of what build.rs
    /// precompiled (so nothing was compiled at run time), and later loads map that file.
    #[test]
    fn builtin_artifacts_are_copied_into_the_cache_not_compiled() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Arc::new(Sandbox::new(Some(dir.path().to_path_buf())).unwrap());
        let reg = Registry::new(sandbox, &[], true, Mode::InternalFast, u64::MAX).unwrap();
        assert!(reg.builtin("check_items").unwrap().is_some());
        let (_, precompiled, sha256) = reg.builtin_bytes["check_items"];
        assert!(!precompiled.is_empty(), "build.rs did not precompile");
        let entries: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
            .map(|f| f.path())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert!(entries[0].ends_with(format!("{sha256}.cwasm")));
        assert!(std::fs::read(&entries[0]).unwrap() == precompiled);
    }

    /// The digest a built-in is pinned by (what `steps show` prints, computed by build.rs)
    /// is the sha256 of the component bytes embedded in the binary.
    #[test]
    fn builtin_digests_are_the_sha256_of_the_embedded_bytes() {
        use sha2::{Digest, Sha256};
        assert!(!builtins::BUILTIN_COMPONENTS.is_empty());
        for (name, bytes, _, sha256) in builtins::BUILTIN_COMPONENTS {
            assert_eq!(
                crate::sandbox::hex(&Sha256::digest(bytes)),
                *sha256,
                "built-in {name}"
            );
        }
    }
}
