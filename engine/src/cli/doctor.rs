//! `aetherflow doctor`: is the environment ready to run this flow? (parity §5.1)
//!
//! Reports every env variable a template needs but the snapshot (process env plus
//! `AETHERFLOW_ENV_FILES_JSON` files) lacks, naming the resource, its profile, the
//! `section.field` and the variable. Each template leaf is checked on its own, so all the
//! missing variables show at once. Resources are checked after the profile overlay (a
//! profile field the resource overrides needs nothing). A decode map with no secrets
//! provider, and an encoded value the provider rejects, are reported the same way.
//!
//! Template syntax problems and missing variables of profiles the flow does not use are
//! warnings. Exit: 0 ready, 2 something is missing, 1 the check itself failed (unreadable
//! or invalid flow, bad env files or profiles, unknown profile or provider).

use clap::Args;
use serde_json::{json, Map, Value};

use super::{FlowArg, EXIT_FAILED, EXIT_INVALID, EXIT_OK};
use crate::output;
use crate::resources::{self, LoadedProfiles, ProfilesMode, ResourceError, Section};
use crate::secrets::{self, SecretsProvider};
use crate::settings::EnvSnapshot;
use aetherflow_template::{self as template, Phase, ScanKind};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub flow: FlowArg,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One thing the environment lacks.
#[derive(Debug, Clone)]
pub struct Missing {
    pub code: &'static str,
    pub loc: String,
    pub msg: String,
    pub resource: Option<String>,
    pub profile: Option<String>,
    /// `config.password`, `inputs.path`, `workspace.root`, `decode`.
    pub field: Option<String>,
    /// The variable to set (without `env.`).
    pub env_key: String,
}

impl Missing {
    fn to_json(&self) -> Value {
        json!({
            "code": self.code,
            "loc": self.loc,
            "msg": self.msg,
            "resource": self.resource,
            "profile": self.profile,
            "field": self.field,
            "env_key": self.env_key,
        })
    }

    fn line(&self) -> String {
        match (&self.resource, &self.profile) {
            (Some(r), p) => format!(
                "- resource={r} profile={} {} needs env {}{}",
                p.as_deref().unwrap_or("(none)"),
                self.field.as_deref().unwrap_or("?"),
                self.env_key,
                self.detail()
            ),
            _ => format!("- {} needs env {}{}", self.loc, self.env_key, self.detail()),
        }
    }

    fn detail(&self) -> String {
        if self.code == "semantic:missing_env" {
            String::new()
        } else {
            format!(" ({})", self.msg)
        }
    }
}

#[derive(Debug, Clone)]
pub struct Warning {
    pub code: String,
    pub loc: String,
    pub msg: String,
}

#[derive(Debug, Default)]
pub struct DoctorReport {
    pub missing: Vec<Missing>,
    pub warnings: Vec<Warning>,
}

fn join(a: &str, b: &str) -> String {
    if b.is_empty() {
        a.to_string()
    } else if b.starts_with('[') {
        format!("{a}{b}")
    } else {
        format!("{a}.{b}")
    }
}

fn env_key(key: &str) -> String {
    key.strip_prefix("env.").unwrap_or(key).to_string()
}

fn env_map(env: &EnvSnapshot) -> Map<String, Value> {
    env.iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect()
}

/// The whole check; `Err` is a failure of the check itself (exit 1).
pub fn diagnose(
    spec: &aetherflow_spec::FlowSpec,
    raw_flow: &Value,
    env: &EnvSnapshot,
    profiles: &LoadedProfiles,
    provider: Option<&dyn SecretsProvider>,
) -> Result<DoctorReport, ResourceError> {
    let envm = env_map(env);
    let scope = crate::settings::env_scope(env);
    let mut rep = DoctorReport::default();
    let mut used_profiles = std::collections::BTreeSet::new();

    for (name, r) in &spec.resources {
        let merged = resources::merge_resource(name, r, profiles)?;
        if let Some(p) = &merged.profile {
            used_profiles.insert(p.clone());
        }
        let mut resource_missing = false;
        for (section, values) in [
            (Section::Config, &merged.config),
            (Section::Options, &merged.options),
        ] {
            let value = Value::Object(values.clone());
            for f in template::scan_each_leaf(&value, &envm) {
                let field = join(section.as_str(), &f.path);
                let loc = format!("resources.{name}.{field}");
                match f.kind {
                    ScanKind::MissingEnv { key } => {
                        resource_missing = true;
                        rep.missing.push(Missing {
                            code: "semantic:missing_env",
                            loc,
                            msg: format!("Missing env {key}"),
                            resource: Some(name.clone()),
                            profile: merged.profile.clone(),
                            field: Some(field),
                            env_key: env_key(&key),
                        });
                    }
                    ScanKind::Syntax { message } => rep.warnings.push(Warning {
                        code: "template:syntax".into(),
                        loc,
                        msg: message,
                    }),
                    ScanKind::UnknownRoot { root } => rep.warnings.push(Warning {
                        code: "template:unknown_root".into(),
                        loc,
                        msg: format!("Unknown template root: {root}"),
                    }),
                }
            }
        }
        match resources::decode_requests(&merged.decode) {
            Err(detail) => rep.warnings.push(Warning {
                code: "template:syntax".into(),
                loc: format!("resources.{name}.decode"),
                msg: detail,
            }),
            Ok(reqs) if !reqs.is_empty() && provider.is_none() => rep.missing.push(Missing {
                code: "secrets:no_provider",
                loc: format!("resources.{name}.decode"),
                msg: ResourceError::NoProvider {
                    resource: name.clone(),
                    requests: reqs,
                }
                .to_string(),
                resource: Some(name.clone()),
                profile: merged.profile.clone(),
                field: Some("decode".into()),
                env_key: secrets::PROVIDER_VAR.into(),
            }),
            Ok(_) if !resource_missing => {
                // Everything renders: do the real build to catch values the provider
                // rejects (the message never contains the value).
                let mut sink = std::collections::BTreeSet::new();
                if let Err(e) =
                    resources::resolve_resource(merged.clone(), r, &scope, provider, &mut sink)
                {
                    match &e {
                        ResourceError::DecodeFailed { request, .. } => rep.missing.push(Missing {
                            code: "secrets:decode_failed",
                            loc: format!("resources.{name}.{request}"),
                            resource: Some(name.clone()),
                            profile: merged.profile.clone(),
                            field: Some(request.to_string()),
                            env_key: env_key_of(&merged, request),
                            msg: e.to_string(),
                        }),
                        ResourceError::DecodeConcat { .. } => rep.warnings.push(Warning {
                            code: "template:syntax".into(),
                            loc: format!("resources.{name}.decode"),
                            msg: e.to_string(),
                        }),
                        _ => {}
                    }
                }
            }
            Ok(_) => {}
        }
    }

    for (pname, p) in &profiles.profiles {
        if used_profiles.contains(pname) {
            continue;
        }
        for (section, value) in [("config", &p.config), ("options", &p.options)] {
            for f in template::scan_each_leaf(value, &envm) {
                if let ScanKind::MissingEnv { key } = f.kind {
                    rep.warnings.push(Warning {
                        code: "semantic:missing_env".into(),
                        loc: format!("profiles.{pname}.{}", join(section, &f.path)),
                        msg: format!(
                            "Missing env {key} (profile `{pname}` is not used by this flow)"
                        ),
                    });
                }
            }
        }
    }

    if let Some(flow) = raw_flow.get("flow") {
        for f in template::scan_each_leaf(flow, &envm) {
            let loc = join("flow", &f.path);
            match f.kind {
                ScanKind::MissingEnv { key } => rep.missing.push(Missing {
                    code: "semantic:missing_env",
                    msg: format!("Missing env {key}"),
                    resource: None,
                    profile: None,
                    field: Some(f.path.clone()),
                    env_key: env_key(&key),
                    loc,
                }),
                ScanKind::Syntax { message } => rep.warnings.push(Warning {
                    code: "template:syntax".into(),
                    loc,
                    msg: message,
                }),
                ScanKind::UnknownRoot { .. } => {}
            }
        }
    }

    for (i, job) in spec.jobs.iter().enumerate() {
        for (j, step) in job.steps.iter().enumerate() {
            for (section, value) in [("inputs", &step.inputs), ("outputs", &step.outputs)] {
                for (path, s) in template::string_leaf_paths(value) {
                    let field = join(section, &path);
                    let loc = format!("jobs[{i}].steps[{j}].{field}");
                    for f in template::scan(&Value::String(s.to_string()), &envm, Phase::Step) {
                        match f.kind {
                            ScanKind::MissingEnv { key } => rep.missing.push(Missing {
                                code: "semantic:missing_env",
                                loc: loc.clone(),
                                msg: format!("Missing env {key}"),
                                resource: None,
                                profile: None,
                                field: Some(field.clone()),
                                env_key: env_key(&key),
                            }),
                            ScanKind::Syntax { message } => rep.warnings.push(Warning {
                                code: "template:syntax".into(),
                                loc: loc.clone(),
                                msg: message,
                            }),
                            ScanKind::UnknownRoot { root } => rep.warnings.push(Warning {
                                code: "template:unknown_root".into(),
                                loc: loc.clone(),
                                msg: format!("Unknown template root: {root}"),
                            }),
                        }
                    }
                }
            }
        }
    }
    Ok(rep)
}

/// The env variable behind a decode path when it is a standalone `{{env.X}}` token.
fn env_key_of(merged: &resources::MergedResource, req: &resources::DecodeRequest) -> String {
    let root = match req.section {
        Section::Config => &merged.config,
        Section::Options => &merged.options,
    };
    resources::get_by_path(root, &req.path)
        .and_then(Value::as_str)
        .and_then(|s| {
            let t = s.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
            let path = t.split(':').next()?.trim();
            path.strip_prefix("env.").map(str::to_string)
        })
        .unwrap_or_else(|| format!("(value of {})", req))
}

/// Flow, env snapshot (with env files) and profiles shared by `doctor` and `explain`;
/// a failure is reported and mapped to exit 1.
pub(crate) fn load_for_diagnostics(
    flow: &FlowArg,
) -> Result<
    (
        std::path::PathBuf,
        EnvSnapshot,
        aetherflow_spec::LoadedFlow,
        LoadedProfiles,
    ),
    i32,
> {
    let (path, env, _settings) = super::setup(flow)?;
    let loaded = aetherflow_spec::load_flow(&path).map_err(|e| {
        output::error(format!("{}: {e}", path.display()));
        EXIT_FAILED
    })?;
    if loaded.spec.is_none() {
        output::error(format!(
            "{} is invalid (run `aetherflow validate` for details):",
            path.display()
        ));
        for e in &loaded.errors {
            eprintln!("- {}: {} - {}", e.loc, e.code, e.msg);
        }
        return Err(EXIT_FAILED);
    }
    let profiles = resources::load_profiles(&env, ProfilesMode::Diagnostics).map_err(|e| {
        output::error(e);
        EXIT_FAILED
    })?;
    Ok((path, env, loaded, profiles))
}

pub fn execute(args: DoctorArgs) -> i32 {
    let (path, env, loaded, profiles) = match load_for_diagnostics(&args.flow) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(spec) = loaded.spec.as_ref() else {
        return EXIT_FAILED;
    };
    let provider = match secrets::provider_from_env(&env) {
        Ok(p) => p,
        Err(e) => {
            output::error(e);
            return EXIT_FAILED;
        }
    };
    let rep = match diagnose(spec, &loaded.raw, &env, &profiles, provider.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            output::error(e);
            return EXIT_FAILED;
        }
    };
    let ok = rep.missing.is_empty();
    let flow_yaml = path.display().to_string();
    if args.json {
        output::json(&json!({
            "ok": ok,
            "flow_yaml": flow_yaml,
            "missing_env": rep.missing.iter().map(Missing::to_json).collect::<Vec<_>>(),
            "warnings": rep.warnings.iter().map(|w| json!({"code": w.code, "loc": w.loc, "msg": w.msg})).collect::<Vec<_>>(),
        }));
    } else {
        output::result(format!("{}: {flow_yaml}", if ok { "OK" } else { "FAIL" }));
        for m in &rep.missing {
            output::result(m.line());
        }
        for w in &rep.warnings {
            output::result(format!("! {}: {} - {}", w.loc, w.code, w.msg));
        }
    }
    if ok {
        EXIT_OK
    } else {
        EXIT_INVALID
    }
}
