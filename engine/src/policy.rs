//! The sandbox policy of each step: its limits (`limits:` over the engine defaults from
//! settings), the resources it is granted (those named by the inputs its `describe`
//! declares, plus `grants:`), its extra mounts and its determinism. [`StepPolicy::resolve`]
//! builds it for the runner; [`check`] reports, at validation, what can be known before a
//! run. See docs/security.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aetherflow_spec::{Determinism, FlowSpec, Issue, MountMode, MountSpec, StepSpec};
use aetherflow_template::{self as template, Phase};
use serde_json::Value;

use crate::sandbox::{fmt_bytes, LimitSources, Limits, Mount};
use crate::settings::{EnvSnapshot, Settings, DEFAULT_STRICT_FUEL};
use crate::steps::{EXTERNAL_PROCESS, WITH_LOCK};

/// How one step runs in the sandbox (a `with_lock` passes its own to the step it wraps).
#[derive(Debug, Clone)]
pub struct StepPolicy {
    pub limits: Limits,
    /// `limits.max_component_bytes` (the engine-wide cap is applied when plugins load).
    pub max_component_bytes: Option<u64>,
    pub strict: bool,
    /// Resolved host directories (the overlap with the job workspace is checked per
    /// attempt, see [`check_workspace_overlap`]).
    pub mounts: Vec<Mount>,
    /// `grants:`: resources granted besides those the inputs name.
    pub extra_grants: Vec<String>,
}

impl StepPolicy {
    /// The policy of `step`. `flow_determinism` is `flow.determinism`, which applies to
    /// every step that runs in the sandbox (not to `external.process`). Errors are mount
    /// sources that cannot be used (validation reports them first; this catches a
    /// directory removed since).
    pub fn resolve(
        step: &StepSpec,
        flow_determinism: Determinism,
        settings: &Settings,
        env: &EnvSnapshot,
        flow_dir: &Path,
    ) -> Result<StepPolicy, String> {
        let inherited = if step.type_ == EXTERNAL_PROCESS {
            Determinism::Normal
        } else {
            flow_determinism
        };
        let strict = step.determinism.unwrap_or(inherited) == Determinism::Strict;
        let l = &step.limits;
        let timeout = step
            .timeout()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .unwrap_or(settings.step_timeout);
        let (fuel, fuel_source) = match (l.fuel, settings.step_fuel, strict) {
            (Some(f), _, _) => (Some(f), "limits.fuel"),
            (None, Some(f), _) => (Some(f), "AETHERFLOW_STEP_FUEL"),
            (None, None, true) => (
                Some(DEFAULT_STRICT_FUEL),
                "the default budget of a `determinism: strict` step; set limits.fuel",
            ),
            (None, None, false) => (None, "limits.fuel"),
        };
        let source = |set: bool, key: &'static str, var: &'static str| if set { key } else { var };
        let limits = Limits {
            timeout,
            memory_bytes: l
                .memory_mb
                .map(|mb| (mb as usize) << 20)
                .unwrap_or(settings.step_memory_bytes),
            fuel,
            max_output_bytes: l.max_output_bytes.unwrap_or(settings.step_max_output_bytes),
            max_log_bytes: l.max_log_bytes.unwrap_or(settings.step_max_log_bytes),
            sources: LimitSources {
                fuel: fuel_source,
                max_output_bytes: source(
                    l.max_output_bytes.is_some(),
                    "limits.max_output_bytes",
                    "AETHERFLOW_STEP_MAX_OUTPUT_BYTES",
                ),
                max_log_bytes: source(
                    l.max_log_bytes.is_some(),
                    "limits.max_log_bytes",
                    "AETHERFLOW_STEP_MAX_LOG_BYTES",
                ),
            },
        };
        let mut mounts = Vec::with_capacity(step.mounts.len());
        for m in &step.mounts {
            mounts.push(resolve_mount(m, env, flow_dir).map_err(|i| {
                format!(
                    "step {}: mounts: {}",
                    step.id,
                    i.msg.replace("{step}", &step.id)
                )
            })?);
        }
        if let Some((_, msg)) = target_conflict(&mounts) {
            return Err(format!(
                "step {}: {}",
                step.id,
                msg.replace("{step}", &step.id)
            ));
        }
        Ok(StepPolicy {
            limits,
            max_component_bytes: l.max_component_bytes,
            strict,
            mounts,
            extra_grants: step.grants.clone(),
        })
    }
}

/// The resources a component may use, each with the kinds it may use it as: a resource
/// named by an input its `describe` declares (as that capability's kind), and every
/// `grants:` entry (as any kind the step declares; [`check`] and the host refuse others).
pub fn grants_for(
    capabilities: &[(String, String)],
    inputs: &Value,
    extra: &[String],
) -> BTreeMap<String, BTreeSet<String>> {
    let mut grants: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (kind, input) in capabilities {
        if let Some(name) = inputs.get(input).and_then(Value::as_str) {
            grants
                .entry(name.to_string())
                .or_default()
                .insert(kind.clone());
        }
    }
    let declared: BTreeSet<String> = capabilities.iter().map(|(k, _)| k.clone()).collect();
    for name in extra {
        grants
            .entry(name.clone())
            .or_default()
            .extend(declared.iter().cloned());
    }
    grants
}

/// A mount whose target is the job directory `<root>/<flow>/<job>`, lies inside it or
/// contains it would hide or expose part of a workspace: refused.
pub fn check_workspace_overlap(
    mounts: &[Mount],
    job_dir: &Path,
    step_id: &str,
) -> Result<(), String> {
    for m in mounts {
        let target = Path::new(&m.guest);
        if target.starts_with(job_dir) || job_dir.starts_with(target) {
            return Err(overlap_message(&m.guest, job_dir, step_id));
        }
    }
    Ok(())
}

fn overlap_message(target: &str, job_dir: &Path, step_id: &str) -> String {
    format!(
        "mount target `{target}` of step `{step_id}` overlaps the job workspace `{}/<run_id>`; choose a target outside it (for example `/mnt/...`)",
        job_dir.display()
    )
}

/// What is wrong with one mount (`field` is `source` or `target`). `{step}` in `msg` is
/// replaced by the step id.
#[derive(Debug, Clone)]
pub struct MountIssue {
    pub field: &'static str,
    pub code: &'static str,
    pub msg: String,
}

/// Render the source with `{{env.*}}`, resolve it against the flow file's directory, and
/// check that it is an existing directory and that the target is a clean absolute path.
pub fn resolve_mount(
    m: &MountSpec,
    env: &EnvSnapshot,
    flow_dir: &Path,
) -> Result<Mount, MountIssue> {
    // Written out in full: `Path::components` would quietly drop `.` and double slashes.
    let clean = m.target.strip_prefix('/').is_some_and(|rest| {
        rest.split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
    });
    if !clean {
        return Err(MountIssue {
            field: "target",
            code: "semantic:mount_target",
            msg: format!(
                "mount target `{}` of step `{{step}}` must be an absolute directory path other than `/`, without `.` or `..` (for example `/ref`)",
                m.target
            ),
        });
    }
    let rendered =
        template::render_str(&m.source, &crate::settings::env_scope(env), Phase::Resource)
            .map_err(|e| MountIssue {
                field: "source",
                code: "semantic:mount_source",
                msg: format!(
                    "mount source `{}` of step `{{step}}`: {}",
                    m.source,
                    e.to_string().replace('\n', ": ")
                ),
            })?;
    let Value::String(rendered) = rendered else {
        return Err(MountIssue {
            field: "source",
            code: "semantic:mount_source",
            msg: format!(
                "mount source `{}` of step `{{step}}` must render to a path, got {rendered}",
                m.source
            ),
        });
    };
    let joined = flow_dir.join(&rendered);
    let meta = std::fs::metadata(&joined).map_err(|e| MountIssue {
        field: "source",
        code: "semantic:mount_source_missing",
        msg: format!(
            "mount source `{}` of step `{{step}}` cannot be used: {e} (a relative source is relative to the flow file's directory `{}`); create the directory or fix `source`",
            joined.display(),
            flow_dir.display()
        ),
    })?;
    if !meta.is_dir() {
        return Err(MountIssue {
            field: "source",
            code: "semantic:mount_source_not_dir",
            msg: format!(
                "mount source `{}` of step `{{step}}` is not a directory; only directories can be mounted (mount its parent directory instead)",
                joined.display()
            ),
        });
    }
    let host = joined.canonicalize().unwrap_or(joined);
    Ok(Mount {
        host,
        guest: m.target.clone(),
        writable: m.mode == MountMode::ReadWrite,
    })
}

/// Two mounts at the same target, or one inside another: (index of the later one, why).
fn target_conflict(mounts: &[Mount]) -> Option<(usize, String)> {
    for (i, m) in mounts.iter().enumerate() {
        for earlier in &mounts[..i] {
            let (a, b) = (Path::new(&m.guest), Path::new(&earlier.guest));
            if a.starts_with(b) || b.starts_with(a) {
                return Some((
                    i,
                    format!(
                        "mount target `{}` of step `{{step}}` overlaps the mount at `{}`; give each mount its own, separate target",
                        m.guest, earlier.guest
                    ),
                ));
            }
        }
    }
    None
}

/// What validation needs to know about a step type that runs in the sandbox.
#[derive(Debug, Clone)]
pub struct ComponentFacts {
    /// The connector kinds its `describe` declares.
    pub kinds: BTreeSet<String>,
    /// Size of the component.
    pub size: u64,
}

/// The checks `validate` adds for `limits`, `grants`, `mounts` and `determinism`. Issues
/// carry no positions (the caller adds them from their `loc`). `component(type)` is
/// `None` for native and unknown step types.
pub fn check(
    spec: &FlowSpec,
    env: &EnvSnapshot,
    flow_dir: &Path,
    component: &dyn Fn(&str) -> Option<ComponentFacts>,
) -> Vec<Issue> {
    let mut issues = Vec::new();
    let resource_names: Vec<&str> = spec.resources.iter().map(|(n, _)| n.as_str()).collect();
    let work_root = template::render_str(
        &spec.flow.workspace.root,
        &crate::settings::env_scope(env),
        Phase::FlowMeta,
    )
    .ok()
    .and_then(|v| v.as_str().map(PathBuf::from))
    .map(|r| std::path::absolute(&r).unwrap_or(r));
    for (ji, job) in spec.jobs.iter().enumerate() {
        for (si, step) in job.steps.iter().enumerate() {
            let at = |suffix: &str| format!("jobs[{ji}].steps[{si}].{suffix}");
            let sid = &step.id;
            if step.timeout_seconds.is_some() && step.limits.timeout_seconds.is_some() {
                issues.push(Issue::new(
                    "semantic:duplicate_timeout",
                    at("limits.timeout_seconds"),
                    format!("step `{sid}` sets both `timeout_seconds` and `limits.timeout_seconds`; keep one (`timeout_seconds` is an alias of `limits.timeout_seconds`)"),
                ));
            }
            if step.type_ == EXTERNAL_PROCESS {
                not_sandboxed(step, &at, &mut issues);
            }
            // `with_lock` passes the policy on to the step it wraps.
            let effective_type = if step.type_ == WITH_LOCK {
                step.inputs
                    .get("step")
                    .and_then(|s| s.get("type"))
                    .and_then(Value::as_str)
                    .filter(|t| !t.contains("{{"))
            } else {
                Some(step.type_.as_str())
            };
            let facts = effective_type.and_then(component);

            for (k, g) in step.grants.iter().enumerate() {
                let Some(res) = spec.resource(g) else {
                    let hint = aetherflow_spec::suggest(g, &resource_names)
                        .map(|s| format!(": did you mean `{s}`?"))
                        .unwrap_or_default();
                    issues.push(Issue::new(
                        "semantic:unknown_grant",
                        at(&format!("grants[{k}]")),
                        format!("step `{sid}` grants unknown resource `{g}`{hint} (declare it under `resources:`, or remove it from `grants`)"),
                    ));
                    continue;
                };
                if let (Some(f), Some(t)) = (&facts, effective_type) {
                    if !f.kinds.contains(&res.kind) {
                        let declared = if f.kinds.is_empty() {
                            "no connector at all".to_string()
                        } else {
                            format!(
                                "only {}",
                                f.kinds.iter().cloned().collect::<Vec<_>>().join(", ")
                            )
                        };
                        issues.push(Issue::new(
                            "semantic:grant_kind",
                            at(&format!("grants[{k}]")),
                            format!("step `{sid}` grants resource `{g}` of kind `{}`, but step type `{t}` declares {declared} in `describe`; a grant cannot give a step a kind of resource it does not declare (remove the grant)", res.kind),
                        ));
                    }
                }
            }

            let mut resolved = Vec::new();
            for (k, m) in step.mounts.iter().enumerate() {
                match resolve_mount(m, env, flow_dir) {
                    Ok(r) => resolved.push((k, r)),
                    Err(i) => issues.push(Issue::new(
                        i.code,
                        at(&format!("mounts[{k}].{}", i.field)),
                        i.msg.replace("{step}", sid),
                    )),
                }
            }
            let mounts: Vec<Mount> = resolved.iter().map(|(_, m)| m.clone()).collect();
            if let Some((i, msg)) = target_conflict(&mounts) {
                issues.push(Issue::new(
                    "semantic:mount_target",
                    at(&format!("mounts[{}].target", resolved[i].0)),
                    msg.replace("{step}", sid),
                ));
            }
            if let Some(root) = &work_root {
                let job_dir = root.join(&spec.flow.id).join(&job.id);
                for (k, m) in &resolved {
                    if check_workspace_overlap(std::slice::from_ref(m), &job_dir, sid).is_err() {
                        issues.push(Issue::new(
                            "semantic:mount_target",
                            at(&format!("mounts[{k}].target")),
                            overlap_message(&m.guest, &job_dir, sid),
                        ));
                    }
                }
            }

            if let (Some(limit), Some(f), Some(t)) =
                (step.limits.max_component_bytes, &facts, effective_type)
            {
                if f.size > limit {
                    issues.push(Issue::new(
                        "semantic:component_too_large",
                        at("limits.max_component_bytes"),
                        format!(
                            "step type `{t}` is a {} component, over step `{sid}`'s limits.max_component_bytes of {}; raise the limit or use a smaller component",
                            fmt_bytes(f.size),
                            fmt_bytes(limit)
                        ),
                    ));
                }
            }
        }
    }
    issues
}

/// Sandbox settings on `external.process`, which runs natively: they would do nothing, and
/// an operator who wrote them expects them to hold.
fn not_sandboxed(step: &StepSpec, at: &dyn Fn(&str) -> String, issues: &mut Vec<Issue>) {
    let l = &step.limits;
    let mut keys: Vec<&str> = Vec::new();
    if !step.grants.is_empty() {
        keys.push("grants");
    }
    if !step.mounts.is_empty() {
        keys.push("mounts");
    }
    for (key, set) in [
        ("limits.fuel", l.fuel.is_some()),
        ("limits.memory_mb", l.memory_mb.is_some()),
        ("limits.max_log_bytes", l.max_log_bytes.is_some()),
        (
            "limits.max_component_bytes",
            l.max_component_bytes.is_some(),
        ),
        ("determinism", step.determinism == Some(Determinism::Strict)),
    ] {
        if set {
            keys.push(key);
        }
    }
    for key in keys {
        issues.push(Issue::new(
            "semantic:not_sandboxed",
            at(key),
            format!(
                "`{key}` has no effect on step `{}`: `{EXTERNAL_PROCESS}` runs natively, outside the sandbox (remove it)",
                step.id
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(guest: &str) -> Mount {
        Mount {
            host: PathBuf::from("/x"),
            guest: guest.into(),
            writable: false,
        }
    }

    fn step(yaml: &str) -> StepSpec {
        let flow = format!("flow: {{id: f}}\njobs:\n  - id: j\n    steps:\n      - {yaml}\n");
        let loaded = aetherflow_spec::parse_flow(&flow, "flow.yaml").unwrap();
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        loaded.spec.unwrap().jobs[0].steps[0].clone()
    }

    #[test]
    fn limits_come_from_the_step_then_settings_then_strict_defaults() {
        let env = EnvSnapshot::new();
        let mut settings = Settings::from_env(&env).unwrap();
        let resolve = |yaml: &str, flow: Determinism, settings: &Settings| {
            StepPolicy::resolve(&step(yaml), flow, settings, &env, Path::new("/")).unwrap()
        };
        let p = resolve("{id: s, type: t}", Determinism::Normal, &settings);
        assert!(!p.strict);
        assert_eq!(p.limits.fuel, None);
        assert_eq!(p.limits.timeout, Duration::from_secs(3600));
        assert_eq!(p.limits.max_output_bytes, 16 << 20);
        assert_eq!(
            p.limits.sources.max_output_bytes,
            "AETHERFLOW_STEP_MAX_OUTPUT_BYTES"
        );

        let p = resolve("{id: s, type: t}", Determinism::Strict, &settings);
        assert!(p.strict, "the flow's default");
        assert_eq!(p.limits.fuel, Some(DEFAULT_STRICT_FUEL));
        let p = resolve(
            "{id: s, type: t, determinism: normal}",
            Determinism::Strict,
            &settings,
        );
        assert!(!p.strict, "the step's own wins");
        let p = resolve(
            "{id: s, type: external.process}",
            Determinism::Strict,
            &settings,
        );
        assert!(!p.strict, "native steps do not inherit strict");

        settings.step_fuel = Some(7);
        let p = resolve(
            "{id: s, type: t, determinism: strict}",
            Determinism::Normal,
            &settings,
        );
        assert_eq!(
            (p.limits.fuel, p.limits.sources.fuel),
            (Some(7), "AETHERFLOW_STEP_FUEL")
        );
        let p = resolve(
            "{id: s, type: t, timeout_seconds: 5, limits: {fuel: 9, memory_mb: 3, max_output_bytes: 10, max_log_bytes: 11}}",
            Determinism::Normal,
            &settings,
        );
        assert_eq!(
            (p.limits.fuel, p.limits.sources.fuel),
            (Some(9), "limits.fuel")
        );
        assert_eq!(p.limits.timeout, Duration::from_secs(5), "the alias");
        assert_eq!(p.limits.memory_bytes, 3 << 20);
        assert_eq!(p.limits.max_output_bytes, 10);
        assert_eq!(p.limits.max_log_bytes, 11);
        assert_eq!(p.limits.sources.max_log_bytes, "limits.max_log_bytes");
    }

    #[test]
    fn grants_come_from_declared_inputs_and_the_grants_list() {
        let caps = vec![("db".to_string(), "resource".to_string())];
        let g = grants_for(
            &caps,
            &serde_json::json!({"resource": "shop", "other": "ignored"}),
            &["archive_db".to_string()],
        );
        let kinds = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(g.len(), 2);
        assert_eq!(g["shop"], kinds(&["db"]));
        assert_eq!(g["archive_db"], kinds(&["db"]));
        // A step that declares nothing gets nothing from `grants:` either.
        let g = grants_for(&[], &serde_json::json!({}), &["x".to_string()]);
        assert!(g["x"].is_empty());
    }

    #[test]
    fn mount_targets_must_not_overlap_each_other_or_the_workspace() {
        assert!(target_conflict(&[mount("/a"), mount("/b")]).is_none());
        assert_eq!(target_conflict(&[mount("/a"), mount("/a/b")]).unwrap().0, 1);
        assert_eq!(target_conflict(&[mount("/a/b"), mount("/a")]).unwrap().0, 1);
        assert!(target_conflict(&[mount("/ab"), mount("/a")]).is_none());
        let job = Path::new("/tmp/work/f/j");
        assert!(check_workspace_overlap(&[mount("/ref")], job, "s").is_ok());
        assert!(check_workspace_overlap(&[mount("/tmp/work/f/j2")], job, "s").is_ok());
        for bad in ["/tmp", "/tmp/work/f/j", "/tmp/work/f/j/r1/artifacts"] {
            let e = check_workspace_overlap(&[mount(bad)], job, "s").unwrap_err();
            assert!(
                e.contains("overlaps the job workspace `/tmp/work/f/j/<run_id>`"),
                "{e}"
            );
        }
    }

    #[test]
    fn mount_sources_resolve_against_the_flow_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ref")).unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let env: EnvSnapshot = [("D".to_string(), dir.path().display().to_string())].into();
        let spec = |source: &str, target: &str| MountSpec {
            source: source.into(),
            target: target.into(),
            mode: MountMode::ReadOnly,
        };
        let m = resolve_mount(&spec("ref", "/ref"), &env, dir.path()).unwrap();
        assert_eq!(m.host, dir.path().canonicalize().unwrap().join("ref"));
        assert!(!m.writable);
        let m = resolve_mount(&spec("{{env.D}}/ref", "/r"), &env, Path::new("/elsewhere"));
        assert!(m.is_ok(), "{m:?}");
        let code = |s: &str, t: &str| {
            resolve_mount(&spec(s, t), &env, dir.path())
                .map(|_| "ok")
                .unwrap_or_else(|i| i.code)
        };
        assert_eq!(code("nope", "/ref"), "semantic:mount_source_missing");
        assert_eq!(code("file", "/ref"), "semantic:mount_source_not_dir");
        assert_eq!(code("{{env.NOPE}}", "/ref"), "semantic:mount_source");
        for t in ["ref", "/", "/a/../b", "/a/./b", "/a/"] {
            assert_eq!(code("ref", t), "semantic:mount_target", "{t}");
        }
    }
}
