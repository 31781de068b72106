//! `aetherflow explain`: which profile each resource uses, what it decodes, and the
//! resulting `config`/`options` with secrets masked (parity §5.1, plus values).
//!
//! Output per resource that names a profile (as the reference): `kind`, `driver`,
//! `profile`, `decode` (the profile's decode map, as the reference), `decode_paths`
//! (the merged requests), and the merged `config`/`options` rendered with the env
//! snapshot. A leaf whose template cannot be rendered (missing env) is shown as written.
//! Masked as `***`: decode-marked fields, fields under a secret-like key (containing
//! `password`, `token`, `secret` or `key`, any case) and fields rendered from a
//! secret-like env variable. Nothing is decoded. Always exit 0 unless the flow, env files
//! or profiles cannot be read (exit 1).

use clap::Args;
use serde_json::{json, Map, Value};

use super::{FlowArg, EXIT_OK};
use crate::envfiles::py_json_dumps;
use crate::output;
use crate::resources::{self, DecodeRequest, Section};
use aetherflow_template::{self as template, Phase};

pub const MASK: &str = "***";

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub flow: FlowArg,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `password`, `token`, `secret` or `key` in the name, any case.
pub fn is_secret_like(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    ["password", "token", "secret", "key"]
        .iter()
        .any(|f| l.contains(f))
}

/// Env variables named by the templates of a string.
fn env_refs(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let token = after[..end].trim();
        let path = token.split(':').next().unwrap_or("").trim();
        if let Some(k) = path.strip_prefix("env.") {
            out.push(k.to_string());
        }
        rest = &after[end + 2..];
    }
    out
}

/// Render (leaf by leaf, keeping a leaf that fails as written) and mask.
fn show(
    value: &Value,
    path: &str,
    scope: &Map<String, Value>,
    decoded: &[String],
    secret_ancestor: bool,
) -> Value {
    if secret_ancestor || decoded.iter().any(|d| d == path) {
        return Value::String(MASK.into());
    }
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    (k.clone(), show(v, &p, scope, decoded, is_secret_like(k)))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, v)| show(v, &format!("{path}[{i}]"), scope, decoded, false))
                .collect(),
        ),
        Value::String(s) => {
            if env_refs(s).iter().any(|k| is_secret_like(k)) {
                return Value::String(MASK.into());
            }
            template::render_str(s, scope, Phase::Resource).unwrap_or_else(|_| value.clone())
        }
        other => other.clone(),
    }
}

pub fn execute(args: ExplainArgs) -> i32 {
    let (path, env, loaded, profiles) = match super::doctor::load_for_diagnostics(&args.flow) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(spec) = loaded.spec.as_ref() else {
        return super::EXIT_FAILED;
    };
    let scope = crate::settings::env_scope(&env);
    let mut out = Map::new();
    for (name, r) in &spec.resources {
        let Some(pname) = r.profile.as_ref().filter(|p| !p.is_empty()) else {
            continue;
        };
        let profile_decode = profiles
            .profiles
            .get(pname)
            .map(|p| p.decode.clone())
            .unwrap_or_else(|| json!({}));
        let mut entry = Map::new();
        entry.insert("kind".into(), json!(r.kind));
        entry.insert("driver".into(), json!(r.driver));
        entry.insert("profile".into(), json!(pname));
        entry.insert("decode".into(), profile_decode);
        match resources::merge_resource(name, r, &profiles) {
            Err(e) => {
                entry.insert("error".into(), json!(e.to_string()));
            }
            Ok(merged) => {
                let requests: Vec<DecodeRequest> = match resources::decode_requests(&merged.decode)
                {
                    Ok(r) => r,
                    Err(detail) => {
                        entry.insert(
                            "error".into(),
                            json!(format!("resources.{name}.decode is invalid: {detail}")),
                        );
                        Vec::new()
                    }
                };
                entry.insert(
                    "decode_paths".into(),
                    json!(requests.iter().map(|r| r.to_string()).collect::<Vec<_>>()),
                );
                for (section, values) in [
                    (Section::Config, &merged.config),
                    (Section::Options, &merged.options),
                ] {
                    let decoded: Vec<String> = requests
                        .iter()
                        .filter(|r| r.section == section)
                        .map(|r| r.path.clone())
                        .collect();
                    entry.insert(
                        section.as_str().into(),
                        show(&Value::Object(values.clone()), "", &scope, &decoded, false),
                    );
                }
            }
        }
        out.insert(name.clone(), Value::Object(entry));
    }
    let flow_yaml = path.display().to_string();
    if args.json {
        output::json(&json!({"flow_yaml": flow_yaml, "resources": out}));
        return EXIT_OK;
    }
    output::result(format!("Flow: {flow_yaml}"));
    for (name, e) in &out {
        output::result(format!(
            "\nResource: {name} ({}/{}) profile={}",
            e["kind"].as_str().unwrap_or(""),
            e["driver"].as_str().unwrap_or(""),
            e["profile"].as_str().unwrap_or("")
        ));
        if let Some(err) = e.get("error").and_then(Value::as_str) {
            output::result(format!("  error: {err}"));
        }
        for key in ["decode", "config", "options"] {
            match e.get(key) {
                Some(Value::Object(m)) if !m.is_empty() => {
                    output::result(format!("  {key}:\n    {}", py_json_dumps(&e[key])));
                }
                _ => {}
            }
        }
    }
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secrets() {
        let scope = crate::settings::env_scope(
            &[
                ("HOST".to_string(), "h".to_string()),
                ("DB_PASSWORD".into(), "pw".into()),
            ]
            .into_iter()
            .collect(),
        );
        let v = json!({
            "host": "{{env.HOST}}",
            "dsn": "x:{{env.DB_PASSWORD}}",
            "ApiKey": "k",
            "auth": {"user": "u", "pw": "p", "Token": {"a": 1}},
            "list": ["{{env.MISSING}}"]
        });
        let got = show(&v, "", &scope, &["auth.pw".into()], false);
        assert_eq!(
            got,
            json!({"host": "h", "dsn": "***", "ApiKey": "***",
                   "auth": {"user": "u", "pw": "***", "Token": "***"},
                   "list": ["{{env.MISSING}}"]})
        );
    }
}
