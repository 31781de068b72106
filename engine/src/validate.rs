//! `validate`: schema, semantic checks and the template scan, in the reference's order
//! (parity §1.3–1.5), as one report `{ok, errors, warnings, flow_yaml}`.

use std::path::Path;

use aetherflow_spec::{Issue, LoadError, LoadedFlow, SemanticOptions};
use aetherflow_template::{self as template, Phase, ScanFinding, ScanKind};
use serde_json::{json, Map, Value};

use crate::policy::ComponentFacts;
use crate::settings::{EnvSnapshot, Mode};
use crate::steps::{Registry, StepImpl};

pub struct Report {
    pub ok: bool,
    pub errors: Vec<Issue>,
    /// `None` when validation stopped at schema errors (the reference omits the key then).
    pub warnings: Option<Vec<Issue>>,
    pub flow_yaml: String,
}

impl Report {
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("ok".into(), json!(self.ok));
        m.insert("errors".into(), issues_json(&self.errors));
        if let Some(w) = &self.warnings {
            m.insert("warnings".into(), issues_json(w));
        }
        m.insert("flow_yaml".into(), json!(self.flow_yaml));
        Value::Object(m)
    }
}

fn issues_json(v: &[Issue]) -> Value {
    Value::Array(
        v.iter()
            .map(|i| json!({"code": i.code, "loc": i.loc, "msg": i.msg}))
            .collect(),
    )
}

pub struct Validated {
    pub report: Report,
    /// The loaded flow (absent when the YAML itself could not be parsed).
    pub loaded: Option<LoadedFlow>,
}

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("cannot read flow file `{path}`: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("flow file `{0}` is not valid UTF-8")]
    Encoding(String),
}

/// Validate the flow at `path`. Its `steps:` section is bound to `registry` (components
/// loaded from `path` entries, pins and settings kept for the run), and every use of a step
/// type is checked against its pins and the mode (docs/provenance.md).
pub fn validate_flow(
    path: &Path,
    env: &EnvSnapshot,
    registry: &mut Registry,
) -> Result<Validated, ValidateError> {
    let flow_yaml = path.display().to_string();
    let loaded = match aetherflow_spec::load_flow(path) {
        Ok(l) => l,
        Err(LoadError::Io { source, .. }) => {
            return Err(ValidateError::Read {
                path: flow_yaml,
                source,
            })
        }
        Err(LoadError::Encoding { .. }) => return Err(ValidateError::Encoding(flow_yaml)),
        Err(LoadError::Yaml(e)) => {
            let report = Report {
                ok: false,
                errors: vec![Issue::new("yaml:syntax", "<root>", e.to_string())],
                warnings: None,
                flow_yaml,
            };
            return Ok(Validated {
                report,
                loaded: None,
            });
        }
    };
    if !loaded.errors.is_empty() {
        let report = Report {
            ok: false,
            errors: loaded.errors.clone(),
            warnings: None,
            flow_yaml,
        };
        return Ok(Validated {
            report,
            loaded: Some(loaded),
        });
    }

    // Components a `steps:` entry loads from a file are step types of this flow.
    let flow_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let lock_issues = match &loaded.spec {
        Some(spec) => registry.bind_flow(spec, flow_dir),
        None => Vec::new(),
    };
    let enterprise = registry.mode() == Mode::Enterprise;
    let when_check = |expr: &str| template::when::validate(expr);
    let process_check = |inputs: &Value| {
        aetherflow_process::validate(inputs)
            .into_iter()
            .map(|i| (i.loc_suffix, i.code.to_string(), i.msg))
            .collect::<Vec<_>>()
    };
    let opts = SemanticOptions {
        enterprise,
        archive_allowlist: Vec::new(),
        known_step_types: registry.names(),
        when_check: &when_check,
        external_process_check: &process_check,
    };
    let mut errors = loaded.semantic_checks(&opts);
    // Engine extensions: limits, grants, mounts and determinism (after the reference's
    // checks, so its order is kept).
    if let Some(spec) = &loaded.spec {
        let flow_dir = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| Path::new(".").to_path_buf());
        let facts = |step_type: &str| match registry.resolve(step_type, None) {
            Ok(Some(StepImpl::Component(c))) => Some(ComponentFacts {
                kinds: c.info.kinds(),
                size: c.size,
            }),
            _ => None,
        };
        for issue in crate::policy::check(spec, env, &flow_dir, &facts) {
            let pos = loaded.positions().lookup(&issue.loc);
            errors.push(issue.with_pos(pos));
        }
    }
    let mut warnings = loaded.warnings.clone();
    if enterprise {
        for e in errors
            .iter_mut()
            .filter(|e| e.code == "semantic:unknown_step_type")
        {
            e.msg.push_str(
                " (enterprise mode ignores AETHERFLOW_PLUGIN_PATHS: a flow loads a plugin with \
                 `steps: {NAME: {path: FILE, sha256: DIGEST}}`)",
            );
        }
    }
    // Pins, name claims and enterprise refusals come after the reference's checks, so the
    // reference's errors keep their order.
    if let Some(spec) = &loaded.spec {
        let (pin_errors, pin_warnings) = registry.check_flow(spec);
        let at = |i: Issue| {
            let pos = loaded.positions().lookup(&i.loc);
            i.with_pos(pos)
        };
        errors.extend(lock_issues.into_iter().chain(pin_errors).map(at));
        warnings.extend(pin_warnings.into_iter().map(at));
    }

    // `env.get(..., "false").lower() == "true"`: not stripped (` true` is not strict).
    let strict_env = env
        .get("AETHERFLOW_VALIDATE_ENV_STRICT")
        .is_some_and(|v| v.to_lowercase() == "true");
    let env_map: Map<String, Value> = env
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();
    let mut scan_issues = Vec::new();
    let mut push = |code: &str, loc: String, msg: String, is_missing_env: bool| {
        // Profile findings do not point into the flow file.
        let pos = if loc.starts_with("profiles.") {
            None
        } else {
            loaded.positions().lookup(&loc)
        };
        let issue = Issue::new(code, loc, msg).with_pos(pos);
        scan_issues.push((issue, is_missing_env));
    };
    // Per-leaf findings (decode strings, profiles): every finding at its leaf loc.
    let leaf_findings = |findings: Vec<ScanFinding>,
                         base: &str,
                         push: &mut dyn FnMut(&str, String, String, bool)| {
        for f in findings {
            let loc = if f.path.is_empty() {
                base.to_string()
            } else {
                format!("{base}.{}", f.path)
            };
            match f.kind {
                ScanKind::MissingEnv { key } => push(
                    "semantic:missing_env",
                    loc,
                    format!("Missing env {key}"),
                    true,
                ),
                ScanKind::Syntax { message } => push("template:syntax", loc, message, false),
                // `render_string` has no root restriction; never produced here.
                ScanKind::UnknownRoot { .. } => {}
            }
        }
    };
    let section = |value: &Value,
                   phase: Phase,
                   loc: &str,
                   push: &mut dyn FnMut(&str, String, String, bool)| {
        for f in template::scan(value, &env_map, phase) {
            match f.kind {
                ScanKind::UnknownRoot { root } => {
                    let leaf = if f.path.is_empty() {
                        loc.to_string()
                    } else {
                        format!("{loc}.{}", f.path)
                    };
                    (*push)(
                        "template:unknown_root",
                        leaf,
                        format!("Unknown template root: {root}"),
                        false,
                    );
                }
                ScanKind::MissingEnv { key } => (*push)(
                    "semantic:missing_env",
                    loc.to_string(),
                    format!("Missing env {key}"),
                    true,
                ),
                ScanKind::Syntax { message } => {
                    (*push)("template:syntax", loc.to_string(), message, false)
                }
            }
        }
    };
    if let Some(spec) = &loaded.spec {
        for (name, r) in &spec.resources {
            section(
                &r.config,
                Phase::Resource,
                &format!("resources.{name}.config"),
                &mut push,
            );
            section(
                &r.options,
                Phase::Resource,
                &format!("resources.{name}.options"),
                &mut push,
            );
            // Decode concat rule: a raw value that will be decoded must be one token.
            for (sec, path) in decode_requests(&r.decode) {
                let raw_root = if sec == "config" {
                    &r.config
                } else {
                    &r.options
                };
                if let Some(Value::String(raw)) = get_by_path(raw_root, &path) {
                    if (raw.contains("{{") || raw.contains("}}"))
                        && !template::is_standalone_token(raw)
                    {
                        push(
                            "template:syntax",
                            format!("resources.{name}.{sec}.{path}"),
                            DECODE_CONCAT_MSG.to_string(),
                            false,
                        );
                    }
                }
            }
            // Decode strings: templated ones must be one token, and are scanned.
            decode_strings(
                &r.decode,
                &format!("resources.{name}.decode"),
                &env_map,
                &mut push,
                &leaf_findings,
            );
        }
        if let Some(flow) = loaded.raw.get("flow") {
            section(flow, Phase::FlowMeta, "flow", &mut push);
        }
        for (i, job) in spec.jobs.iter().enumerate() {
            for (j, step) in job.steps.iter().enumerate() {
                section(
                    &step.inputs,
                    Phase::Step,
                    &format!("jobs[{i}].steps[{j}].inputs"),
                    &mut push,
                );
                section(
                    &step.outputs,
                    Phase::Step,
                    &format!("jobs[{i}].steps[{j}].outputs"),
                    &mut push,
                );
            }
        }
        // Profiles: every profile, config/options/decode leaves (§1.5 step 4).
        if let Some(profiles) = profiles_for_scan(env) {
            for (pname, pobj) in &profiles {
                let Value::Object(pobj) = pobj else { continue };
                for sec in ["config", "options", "decode"] {
                    let Some(subtree) = pobj.get(sec) else {
                        continue;
                    };
                    let base = format!("profiles.{pname}.{sec}");
                    leaf_findings(
                        template::scan_each_leaf(subtree, &env_map),
                        &base,
                        &mut push,
                    );
                    if sec == "decode" {
                        for (path, s) in template::string_leaf_paths(subtree) {
                            if s.contains("{{") && !template::is_standalone_token(s) {
                                push(
                                    "template:syntax",
                                    leaf_loc(&base, &path),
                                    template::UNSUPPORTED_MSG.to_string(),
                                    false,
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    for (issue, is_missing_env) in scan_issues {
        if is_missing_env && !strict_env {
            warnings.push(issue);
        } else {
            errors.push(issue);
        }
    }
    let report = Report {
        ok: errors.is_empty(),
        errors,
        warnings: Some(warnings),
        flow_yaml,
    };
    Ok(Validated {
        report,
        loaded: Some(loaded),
    })
}

const DECODE_CONCAT_MSG: &str =
    "Decode target must be a standalone template token like '{{TOKEN}}' (no prefix/suffix).";

/// `f"{base}.{loc}" if loc else base` (`_iter_strings` locs; a top-level list
/// gives `base.[0]`, as in the reference).
fn leaf_loc(base: &str, path: &str) -> String {
    if path.is_empty() {
        base.to_string()
    } else {
        format!("{base}.{path}")
    }
}

/// The validator's `_collect_decode_requests`: `(section, dotted path)` in
/// order, duplicates kept (each one is checked, like the reference).
fn decode_requests(decode: &Value) -> Vec<(&'static str, String)> {
    fn walk(
        section: &'static str,
        node: &Value,
        prefix: String,
        out: &mut Vec<(&'static str, String)>,
    ) {
        match node {
            Value::Object(m) => {
                for (k, v) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(section, v, p, out);
                }
            }
            Value::Bool(true) if !prefix.is_empty() => out.push((section, prefix)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let Value::Object(d) = decode else {
        return out;
    };
    for section in ["config", "options"] {
        if let Some(node) = d.get(section) {
            walk(section, node, String::new(), &mut out);
        }
    }
    for (key, section) in [("config_paths", "config"), ("options_paths", "options")] {
        if let Some(Value::Array(paths)) = d.get(key) {
            for p in paths {
                if let Value::String(p) = p {
                    if !p.is_empty() {
                        out.push((section, p.clone()));
                    }
                }
            }
        }
    }
    out
}

/// `_get_by_path`: dotted walk through mappings only; empty path → nothing.
fn get_by_path<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return None;
    }
    let mut cur = root;
    for part in path.split('.') {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

/// Reports the findings of one scanned leaf: (findings, loc, push(code, loc, msg, is_missing_env)).
type LeafFindings = dyn Fn(Vec<ScanFinding>, &str, &mut dyn FnMut(&str, String, String, bool));

/// Resource decode strings: a string containing `{{` must be a standalone
/// token (bare syntax message), and a standalone one is scanned with `{env}`.
fn decode_strings(
    decode: &Value,
    base: &str,
    env: &Map<String, Value>,
    push: &mut dyn FnMut(&str, String, String, bool),
    leaf_findings: &LeafFindings,
) {
    for (path, s) in template::string_leaf_paths(decode) {
        if !s.contains("{{") {
            continue;
        }
        let loc = leaf_loc(base, &path);
        if !template::is_standalone_token(s) {
            push(
                "template:syntax",
                loc,
                template::UNSUPPORTED_MSG.to_string(),
                false,
            );
        } else {
            leaf_findings(
                template::scan_each_leaf(&Value::String(s.to_string()), env),
                &loc,
                push,
            );
        }
    }
}

/// The profiles the validator scans: `AETHERFLOW_PROFILES_JSON` if non-empty,
/// else `AETHERFLOW_PROFILES_FILE` if that file exists (`yaml.safe_load(..) or
/// {}`). Any read/parse problem → `None`: the reference swallows it (logs a
/// warning) and reports nothing. Non-mapping roots also yield nothing.
fn profiles_for_scan(env: &EnvSnapshot) -> Option<Map<String, Value>> {
    let json = env
        .get("AETHERFLOW_PROFILES_JSON")
        .filter(|s| !s.is_empty());
    let file = env
        .get("AETHERFLOW_PROFILES_FILE")
        .filter(|s| !s.is_empty());
    let value = if let Some(j) = json {
        serde_json::from_str::<Value>(j).ok()?
    } else if let Some(f) = file {
        let path = Path::new(f);
        if !path.exists() {
            return None;
        }
        let text = std::fs::read_to_string(path).ok()?;
        aetherflow_spec::parse_flow(&text, f).ok()?.raw
    } else {
        return None;
    };
    match value {
        Value::Object(m) => Some(m),
        _ => None,
    }
}
