//! `aetherflow run`: validate, then run the flow; exit 1 if any job failed.

use std::path::PathBuf;
use std::sync::Arc;

use aetherflow_state::{Durability, SqliteStore, StateStore};
use aetherflow_template::{self as template, Phase};
use clap::Args;
use serde_json::{json, Value};

use super::{FlowArg, EXIT_FAILED, EXIT_INVALID, EXIT_OK};
use crate::observe::Observer;
use crate::output;
use crate::runner::{run_flow, RunEnv, RunRequest};
use crate::sandbox::Sandbox;
use crate::settings::{Settings, StateSync};
use crate::steps::Registry;

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub flow: FlowArg,
    /// Reuse a run id to resume it: finished steps are skipped and their outputs restored.
    #[arg(long = "run-id", value_name = "ID")]
    pub run_id: Option<String>,
    /// Run only this job (its dependencies' status is read from the state store).
    #[arg(long = "flow-job", value_name = "JOB")]
    pub flow_job: Option<String>,
    /// Print the result line as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The step registry (built-ins plus plugins); an error is reported and mapped to exit 2.
pub fn registry(settings: &Settings) -> Result<Registry, i32> {
    let sandbox = match Sandbox::new(settings.component_cache.clone()) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            output::error(e);
            return Err(EXIT_FAILED);
        }
    };
    Registry::new(
        sandbox,
        &settings.plugin_paths,
        settings.plugin_strict,
        settings.mode,
        settings.max_component_bytes,
    )
    .map_err(|e| {
        output::error(e);
        EXIT_INVALID
    })
}

pub fn execute(args: RunArgs) -> i32 {
    let (path, env, settings) = match super::setup(&args.flow) {
        Ok(x) => x,
        Err(code) => return code,
    };
    if let Some(id) = &args.run_id {
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            output::error(format!(
                "invalid --run-id `{id}`: use letters, digits, `-` and `_` (it names a directory)"
            ));
            return EXIT_INVALID;
        }
    }
    let observer = Arc::new(Observer::stderr(settings.log_format, settings.log_level));
    let mut registry = match registry(&settings) {
        Ok(r) => r,
        Err(code) => return code,
    };
    for warning in &registry.warnings {
        observer.message(crate::observe::Level::Warning, warning, &[]);
    }
    let validated = match crate::validate::validate_flow(&path, &env, &mut registry) {
        Ok(v) => v,
        Err(e) => {
            output::error(e);
            return EXIT_INVALID;
        }
    };
    let loaded = match (validated.report.ok, validated.loaded) {
        (true, Some(l)) => l,
        _ => {
            output::error(format!("{} is invalid:", path.display()));
            for e in &validated.report.errors {
                eprintln!("- {}: {} - {}", e.loc, e.code, e.msg);
            }
            return EXIT_INVALID;
        }
    };
    let Some(spec) = loaded.spec.as_ref() else {
        return EXIT_INVALID;
    };
    // Warnings never stop a run, but a typo'd key or a missing env var must not go unseen.
    for w in validated.report.warnings.iter().flatten() {
        observer.message(
            crate::observe::Level::Warning,
            &format!("{}: {} - {}", w.loc, w.code, w.msg),
            &[],
        );
    }

    // The flow block is rendered with env only, then validated again (parity §3.1 step 6).
    let scope = crate::settings::env_scope(&env);
    let flow_raw = loaded.raw.get("flow").cloned().unwrap_or(Value::Null);
    let meta = match template::render(&flow_raw, &scope, Phase::FlowMeta)
        .map_err(|e| format!("flow: {e}"))
        .and_then(|v| {
            aetherflow_spec::flow_meta_from_value(&v).map_err(|issues| {
                issues
                    .iter()
                    .map(|i| format!("{}: {} - {}", i.loc, i.code, i.msg))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        }) {
        Ok(m) => m,
        Err(e) => {
            output::error(format!("{}: {e}", path.display()));
            return EXIT_INVALID;
        }
    };
    // Profiles, overlay, env rendering and decode (§3.1 steps 14-15). `secrets` holds the
    // decoded values (and their encoded forms) for redaction.
    let crate::resources::ResolvedResources { resources, secrets } =
        match crate::resources::build_resources(spec, &env, Some(registry.sandbox().clone())) {
            Ok(r) => r,
            Err(e) => {
                output::error(e);
                return EXIT_FAILED;
            }
        };
    // From here on, events, messages and state-store errors/outputs mask the secrets:
    // decoded values (and their encoded forms), strings under secret-like keys of the
    // rendered resources, URL passwords, and values of secret-named env variables.
    let mut redactor = crate::redact::Redactor::from_resources(&resources);
    redactor.extend(secrets.iter().cloned());
    redactor.extend_from_env(&env);
    observer.set_redactor(redactor);
    let durability = match settings.state_sync {
        StateSync::Full => Durability::Power,
        StateSync::Normal => Durability::Process,
    };
    let store: Arc<dyn StateStore> =
        match SqliteStore::open(PathBuf::from(&meta.state.path), durability) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                output::error(e);
                return EXIT_FAILED;
            }
        };
    let renv = RunEnv {
        env: &env,
        settings: &settings,
        registry: &registry,
        observer: &observer,
    };
    let req = RunRequest {
        flow_path: &path,
        spec,
        meta: &meta,
        run_id: args.run_id,
        flow_job: args.flow_job,
    };
    let code = match run_flow(&renv, req, store, resources) {
        Ok(summary) => {
            let status = if summary.failed_jobs > 0 {
                "FAILED"
            } else {
                "SUCCESS"
            };
            if args.json {
                output::json(&json!({
                    "flow_id": summary.flow_id,
                    "run_id": summary.run_id,
                    "status": status,
                    "failed_jobs": summary.failed_jobs,
                }));
            } else {
                output::result(format!(
                    "{status}: flow={} run_id={} failed_jobs={}",
                    summary.flow_id, summary.run_id, summary.failed_jobs
                ));
            }
            if summary.failed_jobs > 0 {
                EXIT_FAILED
            } else {
                EXIT_OK
            }
        }
        Err(e) => {
            output::error(e);
            EXIT_FAILED
        }
    };
    // The process ends next: tearing the registry down (every loaded component and the
    // instance pool) would only give back memory the OS is about to take back anyway.
    std::mem::forget(registry);
    code
}
