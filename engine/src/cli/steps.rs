//! `aetherflow steps list` and `aetherflow steps show NAME`: every step type this engine
//! can run (built-in components, plugins from AETHERFLOW_PLUGIN_PATHS, native steps), with
//! where it comes from and what it asks for.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::{EXIT_FAILED, EXIT_INVALID, EXIT_OK};
use crate::output;
use crate::steps::{Registry, StepEntry};

#[derive(Debug, Subcommand)]
pub enum StepsCommand {
    /// One line per step type: name, version, origin, connectors it needs.
    List(ListArgs),
    /// One step type in full: origin, version, sha256, description, input schema.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print a JSON array instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The step type, as used in `type:`.
    pub name: String,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn execute(cmd: StepsCommand) -> i32 {
    let env = match crate::envfiles::snapshot_with_env_files(&crate::settings::process_env()) {
        Ok(e) => e,
        Err(e) => {
            output::error(e);
            return EXIT_INVALID;
        }
    };
    let settings = match crate::settings::Settings::from_env(&env) {
        Ok(s) => s,
        Err(e) => {
            output::error(e);
            return EXIT_INVALID;
        }
    };
    let registry = match super::run::registry(&settings) {
        Ok(r) => r,
        Err(code) => return code,
    };
    for warning in &registry.warnings {
        output::warning(warning);
    }
    match cmd {
        StepsCommand::List(args) => list(&registry, args.json),
        StepsCommand::Show(args) => show(&registry, &args.name, args.json),
    }
}

fn entries(registry: &Registry) -> Result<Vec<StepEntry>, i32> {
    let mut out = Vec::new();
    for name in registry.names() {
        match registry.entries(&name) {
            Ok(e) => out.extend(e),
            Err(e) => {
                output::error(e);
                return Err(EXIT_FAILED);
            }
        }
    }
    Ok(out)
}

fn to_json(e: &StepEntry) -> Value {
    json!({
        "name": e.name,
        "origin": e.origin,
        "version": e.version,
        "sha256": e.sha256,
        "pin": pin(e),
        "description": e.description,
        "input_schema": e.input_schema,
        "capabilities": e.capabilities.iter()
            .map(|(kind, input)| json!({"kind": kind, "input": input}))
            .collect::<Vec<_>>(),
    })
}

/// What a flow writes to pin this component: `type: <pin>`.
fn pin(e: &StepEntry) -> Option<String> {
    e.sha256
        .as_ref()
        .map(|sha| format!("{}@sha256:{sha}", e.name))
}

/// The same pin as an entry of a flow's top-level `steps:` section (plugins with their
/// file, which enterprise mode needs).
fn lock_entry(e: &StepEntry) -> Option<String> {
    let sha = e.sha256.as_ref()?;
    let path = if e.origin == "builtin" {
        String::new()
    } else {
        format!("path: {}, ", serde_json::Value::from(e.origin.clone()))
    };
    Some(format!(
        "{}: {{{path}sha256: \"{sha}\", version: {}}}",
        e.name,
        serde_json::Value::from(e.version.clone())
    ))
}

fn capabilities(e: &StepEntry) -> String {
    if e.capabilities.is_empty() {
        "-".into()
    } else {
        e.capabilities
            .iter()
            .map(|(kind, input)| format!("{kind} (input `{input}`)"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn list(registry: &Registry, as_json: bool) -> i32 {
    let entries = match entries(registry) {
        Ok(v) => v,
        Err(code) => return code,
    };
    if as_json {
        output::json(&Value::Array(entries.iter().map(to_json).collect()));
        return EXIT_OK;
    }
    let w_name = entries
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let w_ver = entries
        .iter()
        .map(|e| e.version.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let w_origin = entries
        .iter()
        .map(|e| e.origin.len())
        .max()
        .unwrap_or(6)
        .max(6);
    output::result(format!(
        "{:<w_name$}  {:<w_ver$}  {:<12}  {:<w_origin$}  CONNECTORS",
        "NAME", "VERSION", "SHA256", "ORIGIN"
    ));
    for e in &entries {
        let sha = e
            .sha256
            .as_deref()
            .map_or("-".to_string(), |s| s[..12.min(s.len())].to_string());
        output::result(format!(
            "{:<w_name$}  {:<w_ver$}  {:<12}  {:<w_origin$}  {}",
            e.name,
            e.version,
            sha,
            e.origin,
            capabilities(e)
        ));
    }
    EXIT_OK
}

fn show(registry: &Registry, name: &str, as_json: bool) -> i32 {
    let entry = match registry.entries(name) {
        Ok(mut v) if v.len() == 1 => v.remove(0),
        Ok(v) if v.is_empty() => {
            output::error(format!(
                "no step type `{name}`; `aetherflow steps list` shows the available ones"
            ));
            return EXIT_INVALID;
        }
        Ok(v) => {
            let each: Vec<String> = v
                .iter()
                .map(|e| {
                    format!(
                        "`{}` (version {}, pin `{}`)",
                        e.origin,
                        e.version,
                        pin(e).unwrap_or_default()
                    )
                })
                .collect();
            output::error(format!(
                "{} plugins claim step name `{name}`: {}; a flow that uses `{name}` must pin \
                 the one it runs (`aetherflow steps list` shows each)",
                v.len(),
                each.join(", ")
            ));
            return EXIT_INVALID;
        }
        Err(e) => {
            output::error(e);
            return EXIT_FAILED;
        }
    };
    if as_json {
        output::json(&to_json(&entry));
        return EXIT_OK;
    }
    output::result(format!("name:         {}", entry.name));
    output::result(format!("version:      {}", entry.version));
    output::result(format!("origin:       {}", entry.origin));
    output::result(format!(
        "sha256:       {}",
        entry.sha256.as_deref().unwrap_or("-")
    ));
    if let (Some(pin), Some(lock)) = (pin(&entry), lock_entry(&entry)) {
        output::result(format!("pin:          type: {pin}"));
        output::result(format!("lock entry:   steps: {{{lock}}}"));
    }
    output::result(format!("connectors:   {}", capabilities(&entry)));
    output::result(format!("description:  {}", entry.description));
    match &entry.input_schema {
        Some(schema) => output::result(format!(
            "input schema:\n{}",
            serde_json::to_string_pretty(schema).unwrap_or_default()
        )),
        None => output::result("input schema: see docs/steps.md"),
    }
    EXIT_OK
}
