//! `validate`: schema, semantic checks and the template scan, in the reference's order
//! (parity §1.3–1.5), as one report `{ok, errors, warnings, flow_yaml}`.

use std::path::Path;

use aetherflow_spec::{Issue, LoadError, LoadedFlow, SemanticOptions};
use aetherflow_template::{self as template, Phase, ScanKind};
use serde_json::{json, Map, Value};

use crate::settings::EnvSnapshot;

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

pub fn validate_flow(
    path: &Path,
    env: &EnvSnapshot,
    known_step_types: Vec<String>,
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

    let enterprise = env
        .get("AETHERFLOW_MODE")
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("enterprise"));
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
        known_step_types,
        when_check: &when_check,
        external_process_check: &process_check,
    };
    let mut errors = loaded.semantic_checks(&opts);
    let mut warnings = loaded.warnings.clone();

    let strict_env = env
        .get("AETHERFLOW_VALIDATE_ENV_STRICT")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let env_map: Map<String, Value> = env
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();
    let mut scan_issues = Vec::new();
    let mut push = |code: &str, loc: String, msg: String, is_missing_env: bool| {
        let issue = Issue::new(code, loc.clone(), msg).with_pos(loaded.positions.lookup(&loc));
        scan_issues.push((issue, is_missing_env));
    };
    let mut section = |value: &Value, phase: Phase, loc: &str| {
        for f in template::scan(value, &env_map, phase) {
            match f.kind {
                ScanKind::UnknownRoot { root } => {
                    let leaf = if f.path.is_empty() {
                        loc.to_string()
                    } else {
                        format!("{loc}.{}", f.path)
                    };
                    push(
                        "template:unknown_root",
                        leaf,
                        format!("Unknown template root: {root}"),
                        false,
                    );
                }
                ScanKind::MissingEnv { key } => push(
                    "semantic:missing_env",
                    loc.to_string(),
                    format!("Missing env {key}"),
                    true,
                ),
                ScanKind::Syntax { message } => {
                    push("template:syntax", loc.to_string(), message, false)
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
            );
            section(
                &r.options,
                Phase::Resource,
                &format!("resources.{name}.options"),
            );
        }
        if let Some(flow) = loaded.raw.get("flow") {
            section(flow, Phase::FlowMeta, "flow");
        }
        for (i, job) in spec.jobs.iter().enumerate() {
            for (j, step) in job.steps.iter().enumerate() {
                section(
                    &step.inputs,
                    Phase::Step,
                    &format!("jobs[{i}].steps[{j}].inputs"),
                );
                section(
                    &step.outputs,
                    Phase::Step,
                    &format!("jobs[{i}].steps[{j}].outputs"),
                );
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
