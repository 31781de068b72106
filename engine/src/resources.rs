//! Resource build (parity §6.4, §2.6): profiles overlay, env rendering, decode.
//!
//! Per resource, in this order:
//! 0. when the secrets provider expands the environment (a `component` provider's
//!    `expand-env`), it is called with a copy of the env snapshot; the result is the
//!    `{env}` of this resource only (never of other resources or of step inputs), and
//!    the values it added or changed are treated as secrets (redacted);
//! 1. the named profile is the base and the resource wins: `config` and `options` are
//!    deep-merged (dicts recursively, lists replaced); `decode` maps are merged per §2.6;
//! 2. `config`/`options` are rendered with `{env}` only ([`Phase::Resource`]);
//! 3. the decode requests are collected (`{config: {a: true}}` bool maps and
//!    `config_paths`/`options_paths` lists);
//! 4. a raw value at a decode path that holds a template must be a standalone token;
//! 5. every rendered string at a decode path is decoded by the secrets provider
//!    ([`crate::secrets`]); missing paths and non-strings are left alone.
//!
//! Deliberate differences from the reference: an unknown profile name is an error (the
//! reference silently uses `{}`); a decode map with no secrets provider configured is an
//! error (the reference logs a warning and keeps the encoded value).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use aetherflow_spec::{FlowSpec, Profile, ResourceSpec};
use aetherflow_template::{self as template, Phase, ResolveError};
use serde_json::{Map, Value};

use crate::connectors::ResolvedResource;
use crate::secrets::{self, SecretsError, SecretsProvider};
use crate::settings::EnvSnapshot;

pub const PROFILES_JSON_VAR: &str = "AETHERFLOW_PROFILES_JSON";
pub const PROFILES_FILE_VAR: &str = "AETHERFLOW_PROFILES_FILE";

/// How the two profile variables combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfilesMode {
    /// `run`: setting both is an error.
    Run,
    /// `validate`/`doctor`/`explain`: `AETHERFLOW_PROFILES_JSON` wins.
    Diagnostics,
}

/// The profiles of a run and where they came from.
#[derive(Debug, Clone, Default)]
pub struct LoadedProfiles {
    pub profiles: BTreeMap<String, Profile>,
    /// `AETHERFLOW_PROFILES_JSON` or `AETHERFLOW_PROFILES_FILE=<path>`; `None` when
    /// neither is set.
    pub source: Option<String>,
}

/// A resource section that templates and decode maps address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    Config,
    Options,
}

impl Section {
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Config => "config",
            Section::Options => "options",
        }
    }
}

/// One field to decode: `section.path` (dotted, mappings only).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DecodeRequest {
    pub section: Section,
    pub path: String,
}

impl std::fmt::Display for DecodeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.section.as_str(), self.path)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("Set only one of AETHERFLOW_PROFILES_JSON or AETHERFLOW_PROFILES_FILE")]
    ProfilesBoth,
    #[error("Invalid profile configuration ({source_desc}): {detail}")]
    InvalidProfiles { source_desc: String, detail: String },
    #[error("resources.{resource}.profile: unknown profile `{profile}`; {}", known_profiles(.known, .source_desc))]
    UnknownProfile {
        resource: String,
        profile: String,
        known: Vec<String>,
        source_desc: Option<String>,
    },
    #[error("resources.{resource}.{field}: {source}{}", from_profile(.profile))]
    Render {
        resource: String,
        field: String,
        profile: Option<String>,
        #[source]
        source: ResolveError,
    },
    #[error("resources.{resource}.decode is invalid: {detail}")]
    DecodeSpec { resource: String, detail: String },
    #[error("resources.{resource}.{request}: Decode target must be a standalone template token like '{{{{TOKEN}}}}' (no prefix/suffix).")]
    DecodeConcat {
        resource: String,
        request: DecodeRequest,
    },
    #[error("resources.{resource}.decode requests decoding of [{}] but no secrets provider is configured (set {}=base64, or {}=component with {}=<provider.wasm>, or remove the decode map)", join(.requests), secrets::PROVIDER_VAR, secrets::PROVIDER_VAR, secrets::COMPONENT_VAR)]
    NoProvider {
        resource: String,
        requests: Vec<DecodeRequest>,
    },
    #[error("resources.{resource}.{request}: the {provider} secrets provider cannot decode the value: {reason}")]
    DecodeFailed {
        resource: String,
        request: DecodeRequest,
        provider: String,
        reason: String,
    },
    #[error("resources.{resource}: the {provider} secrets provider failed to expand the environment: {reason}")]
    ExpandEnv {
        resource: String,
        provider: String,
        reason: String,
    },
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

fn join(requests: &[DecodeRequest]) -> String {
    requests
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn known_profiles(known: &[String], source: &Option<String>) -> String {
    match source {
        None => {
            format!("no profiles are configured (set {PROFILES_JSON_VAR} or {PROFILES_FILE_VAR})")
        }
        Some(src) if known.is_empty() => format!("{src} defines no profiles"),
        Some(src) => format!("known profiles: {} (from {src})", known.join(", ")),
    }
}

fn from_profile(profile: &Option<String>) -> String {
    profile
        .as_ref()
        .map(|p| format!(" (field from profile `{p}`)"))
        .unwrap_or_default()
}

/// Read the profiles named by the snapshot. Neither variable set → no profiles.
pub fn load_profiles(
    env: &EnvSnapshot,
    mode: ProfilesMode,
) -> Result<LoadedProfiles, ResourceError> {
    let get = |k: &str| env.get(k).filter(|s| !s.is_empty());
    let (json, file) = (get(PROFILES_JSON_VAR), get(PROFILES_FILE_VAR));
    let (source_desc, raw) = match (json, file) {
        (Some(_), Some(_)) if mode == ProfilesMode::Run => return Err(ResourceError::ProfilesBoth),
        (Some(j), _) => {
            let desc = PROFILES_JSON_VAR.to_string();
            let v: Value = serde_json::from_str(j).map_err(|e| ResourceError::InvalidProfiles {
                source_desc: desc.clone(),
                detail: format!("not valid JSON: {e}"),
            })?;
            (desc, v)
        }
        (None, Some(f)) => {
            let desc = format!("{PROFILES_FILE_VAR}={f}");
            let invalid = |detail: String| ResourceError::InvalidProfiles {
                source_desc: desc.clone(),
                detail,
            };
            let path = PathBuf::from(f);
            let text =
                std::fs::read(&path).map_err(|e| invalid(format!("cannot read the file: {e}")))?;
            let text = String::from_utf8(text)
                .map_err(|_| invalid("the file is not valid UTF-8".into()))?;
            // `yaml.safe_load(f) or {}`; the flow loader is the engine's YAML reader and
            // keeps the raw document even when it is not a flow.
            let loaded = aetherflow_spec::parse_flow(&text, f)
                .map_err(|e| invalid(format!("not valid YAML: {e}")))?;
            (desc, loaded.raw)
        }
        (None, None) => return Ok(LoadedProfiles::default()),
    };
    let profiles =
        aetherflow_spec::parse_profiles(&raw).map_err(|issues| ResourceError::InvalidProfiles {
            source_desc: source_desc.clone(),
            detail: issues
                .iter()
                .map(|i| format!("{}: {}", i.loc, i.msg))
                .collect::<Vec<_>>()
                .join("; "),
        })?;
    Ok(LoadedProfiles {
        profiles,
        source: Some(source_desc),
    })
}

/// `_deep_merge_dict`: `over` wins; mappings merge recursively; lists are replaced.
pub fn deep_merge(base: &Map<String, Value>, over: &Map<String, Value>) -> Map<String, Value> {
    let mut out = base.clone();
    for (k, v) in over {
        let merged = match (out.get(k), v) {
            (Some(Value::Object(b)), Value::Object(o)) => Value::Object(deep_merge(b, o)),
            _ => v.clone(),
        };
        out.insert(k.clone(), merged);
    }
    out
}

fn as_map(v: &Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    }
}

/// `_merge_decode`: start from the profile; `config`/`options` bool maps deep-merged;
/// `*_paths` lists concatenated and de-duplicated; other keys: the resource wins.
pub fn merge_decode(profile: &Value, resource: &Value) -> Value {
    let mut out = as_map(profile);
    for (k, v) in as_map(resource) {
        let merged = match (k.as_str(), out.get(&k), &v) {
            ("config" | "options", Some(Value::Object(b)), Value::Object(o)) => {
                Value::Object(deep_merge(b, o))
            }
            ("config_paths" | "options_paths", existing, _) => {
                let mut items: Vec<Value> = Vec::new();
                for src in [existing, Some(&v)] {
                    if let Some(Value::Array(a)) = src {
                        for it in a {
                            if !items.contains(it) {
                                items.push(it.clone());
                            }
                        }
                    }
                }
                Value::Array(items)
            }
            _ => v.clone(),
        };
        out.insert(k, merged);
    }
    Value::Object(out)
}

fn decode_syntax(detail: String) -> String {
    format!("{}\n{detail}", template::UNSUPPORTED_MSG)
}

/// `_collect_decode_requests` (§2.6). The error is the reference's syntax message.
pub fn decode_requests(decode: &Value) -> Result<Vec<DecodeRequest>, String> {
    let is_empty = match decode {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
    };
    if is_empty {
        return Ok(Vec::new());
    }
    let Value::Object(spec) = decode else {
        return Err(decode_syntax(template::py_str(decode)));
    };
    let mut out: Vec<DecodeRequest> = Vec::new();
    fn walk(
        section: Section,
        node: &Value,
        prefix: &str,
        out: &mut Vec<DecodeRequest>,
    ) -> Result<(), String> {
        match node {
            Value::Object(m) => {
                for (k, v) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(section, v, &p, out)?;
                }
                Ok(())
            }
            Value::Bool(true) if prefix.is_empty() => Err(decode_syntax(format!(
                "Node is true, and not prefix {prefix}"
            ))),
            Value::Bool(true) => {
                out.push(DecodeRequest {
                    section,
                    path: prefix.to_string(),
                });
                Ok(())
            }
            Value::Bool(false) | Value::Null => Ok(()),
            _ => Err(decode_syntax(format!(
                "Node unknow. Section {} Prefix {prefix}",
                section.as_str()
            ))),
        }
    }
    for section in [Section::Config, Section::Options] {
        if let Some(node) = spec.get(section.as_str()) {
            walk(section, node, "", &mut out)?;
        }
    }
    for section in [Section::Config, Section::Options] {
        let key = format!("{}_paths", section.as_str());
        let Some(paths) = spec.get(&key) else {
            continue;
        };
        let Value::Array(items) = paths else {
            return Err(decode_syntax(format!("{key} {}", template::py_str(paths))));
        };
        for p in items {
            match p {
                Value::String(s) if !s.is_empty() => out.push(DecodeRequest {
                    section,
                    path: s.clone(),
                }),
                _ => {
                    return Err(decode_syntax(format!(
                        "{key} {} {}",
                        template::py_str(paths),
                        template::py_str(p)
                    )))
                }
            }
        }
    }
    let mut seen = BTreeSet::new();
    out.retain(|r| seen.insert(r.clone()));
    Ok(out)
}

/// `_get_by_path`: dotted path through mappings only.
pub fn get_by_path<'a>(root: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut cur = root.get(parts.next()?)?;
    for part in parts {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

fn get_by_path_mut<'a>(root: &'a mut Map<String, Value>, path: &str) -> Option<&'a mut Value> {
    let mut parts = path.split('.');
    let mut cur = root.get_mut(parts.next()?)?;
    for part in parts {
        cur = cur.as_object_mut()?.get_mut(part)?;
    }
    Some(cur)
}

/// A resource after the profile overlay, before rendering.
#[derive(Debug, Clone)]
pub struct MergedResource {
    pub name: String,
    pub kind: String,
    pub driver: String,
    /// The profile used (`None` when the resource names none, or an empty name).
    pub profile: Option<String>,
    pub config: Map<String, Value>,
    pub options: Map<String, Value>,
    pub decode: Value,
}

/// The profile overlay of one resource. An unknown profile is an error.
pub fn merge_resource(
    name: &str,
    r: &ResourceSpec,
    profiles: &LoadedProfiles,
) -> Result<MergedResource, ResourceError> {
    let profile_name = r.profile.clone().filter(|p| !p.is_empty());
    let empty = Profile {
        config: Value::Object(Map::new()),
        options: Value::Object(Map::new()),
        decode: Value::Object(Map::new()),
    };
    let profile = match &profile_name {
        None => &empty,
        Some(p) => profiles
            .profiles
            .get(p)
            .ok_or_else(|| ResourceError::UnknownProfile {
                resource: name.to_string(),
                profile: p.clone(),
                known: profiles.profiles.keys().cloned().collect(),
                source_desc: profiles.source.clone(),
            })?,
    };
    Ok(MergedResource {
        name: name.to_string(),
        kind: r.kind.clone(),
        driver: r.driver.clone(),
        profile: profile_name,
        config: deep_merge(&as_map(&profile.config), &as_map(&r.config)),
        options: deep_merge(&as_map(&profile.options), &as_map(&r.options)),
        decode: merge_decode(&profile.decode, &r.decode),
    })
}

/// Render like [`template::render`], but report the dotted path of the failing leaf.
fn render_at(
    value: &Value,
    scope: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<Value, (String, ResolveError)> {
    let here = |path: &Vec<String>| {
        path.iter().fold(String::new(), |acc, seg| {
            if seg.starts_with('[') || acc.is_empty() {
                acc + seg
            } else {
                acc + "." + seg
            }
        })
    };
    match value {
        Value::String(s) => {
            template::render_str(s, scope, Phase::Resource).map_err(|e| (here(path), e))
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, v) in items.iter().enumerate() {
                path.push(format!("[{i}]"));
                let r = render_at(v, scope, path);
                path.pop();
                out.push(r?);
            }
            Ok(Value::Array(out))
        }
        Value::Object(m) => {
            let mut out = Map::with_capacity(m.len());
            for (k, v) in m {
                path.push(k.clone());
                let r = render_at(v, scope, path);
                path.pop();
                out.insert(k.clone(), r?);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// The first segment-wise lookup of a rendered-path (`a.b[0].c`) in a raw section;
/// used to say whether a field came from the profile.
fn resource_has_field(raw: &Value, field: &str) -> bool {
    let first = field.split(['.', '[']).next().unwrap_or("");
    raw.as_object().is_some_and(|m| m.contains_key(first))
}

/// The resources of a run and the secret strings they hold (decoded values and their
/// encoded forms), which must be redacted from any output.
#[derive(Debug, Default)]
pub struct ResolvedResources {
    pub resources: Vec<ResolvedResource>,
    pub secrets: BTreeSet<String>,
}

/// Render and decode one merged resource.
pub fn resolve_resource(
    merged: MergedResource,
    raw: &ResourceSpec,
    scope: &Map<String, Value>,
    provider: Option<&dyn SecretsProvider>,
    secrets_out: &mut BTreeSet<String>,
) -> Result<ResolvedResource, ResourceError> {
    let name = merged.name.clone();
    let expanded_scope = match provider {
        Some(p) => expand_scope(p, scope, &name, secrets_out)?,
        None => None,
    };
    let scope = expanded_scope.as_ref().unwrap_or(scope);
    let render = |section: Section, v: &Map<String, Value>, raw_section: &Value| {
        let mut path = Vec::new();
        match render_at(&Value::Object(v.clone()), scope, &mut path) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Ok(Map::new()),
            Err((field, source)) => {
                let profile = if resource_has_field(raw_section, &field) {
                    None
                } else {
                    merged.profile.clone()
                };
                Err(ResourceError::Render {
                    resource: name.clone(),
                    field: format!("{}.{field}", section.as_str()),
                    profile,
                    source,
                })
            }
        }
    };
    let mut config = render(Section::Config, &merged.config, &raw.config)?;
    let mut options = render(Section::Options, &merged.options, &raw.options)?;
    let requests = decode_requests(&merged.decode).map_err(|detail| ResourceError::DecodeSpec {
        resource: name.clone(),
        detail,
    })?;
    if !requests.is_empty() {
        let Some(provider) = provider else {
            return Err(ResourceError::NoProvider {
                resource: name,
                requests,
            });
        };
        for req in &requests {
            let raw_root = match req.section {
                Section::Config => &merged.config,
                Section::Options => &merged.options,
            };
            if let Some(Value::String(s)) = get_by_path(raw_root, &req.path) {
                if (s.contains("{{") || s.contains("}}")) && !template::is_standalone_token(s) {
                    return Err(ResourceError::DecodeConcat {
                        resource: name,
                        request: req.clone(),
                    });
                }
            }
        }
        for req in &requests {
            let root = match req.section {
                Section::Config => &mut config,
                Section::Options => &mut options,
            };
            if let Some(slot) = get_by_path_mut(root, &req.path) {
                if let Some(encoded) = slot.as_str().map(str::to_string) {
                    let decoded = provider.decode(&encoded).map_err(|reason| {
                        ResourceError::DecodeFailed {
                            resource: name.clone(),
                            request: req.clone(),
                            provider: provider.name().to_string(),
                            reason: reason.0,
                        }
                    })?;
                    for s in [encoded.as_str(), decoded.as_str()] {
                        if !s.is_empty() {
                            secrets_out.insert(s.to_string());
                        }
                    }
                    *slot = Value::String(decoded);
                }
            }
        }
    }
    Ok(ResolvedResource {
        name,
        kind: merged.kind,
        driver: merged.driver,
        config,
        options,
    })
}

/// The `{env}` scope of one resource after the provider's `expand_env`, computed from a
/// copy of `scope`'s `env` (`None`: the provider does not expand). Values the provider
/// added or changed go to `secrets_out`.
fn expand_scope(
    provider: &dyn SecretsProvider,
    scope: &Map<String, Value>,
    resource: &str,
    secrets_out: &mut BTreeSet<String>,
) -> Result<Option<Map<String, Value>>, ResourceError> {
    let env: EnvSnapshot = scope
        .get("env")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let expanded = provider
        .expand_env(&env)
        .map_err(|reason| ResourceError::ExpandEnv {
            resource: resource.to_string(),
            provider: provider.name().to_string(),
            reason: reason.0,
        })?;
    let Some(expanded) = expanded else {
        return Ok(None);
    };
    for (k, v) in &expanded {
        if !v.is_empty() && env.get(k) != Some(v) {
            secrets_out.insert(v.clone());
        }
    }
    let mut out = scope.clone();
    let vars = expanded
        .into_iter()
        .map(|(k, v)| (k, Value::from(v)))
        .collect();
    out.insert("env".into(), Value::Object(vars));
    Ok(Some(out))
}

/// Every resource of the flow: overlay, render, decode (parity §3.1 step 15).
pub fn resolve_resources(
    spec: &FlowSpec,
    env: &EnvSnapshot,
    profiles: &LoadedProfiles,
    provider: Option<&dyn SecretsProvider>,
) -> Result<ResolvedResources, ResourceError> {
    let scope = crate::settings::env_scope(env);
    let mut out = ResolvedResources::default();
    for (name, r) in &spec.resources {
        let merged = merge_resource(name, r, profiles)?;
        let resolved = resolve_resource(merged, r, &scope, provider, &mut out.secrets)?;
        out.resources.push(resolved);
    }
    Ok(out)
}

/// What `run` does (§3.1 steps 14-15): profiles from the snapshot (both variables set is
/// an error), the provider from `AETHERFLOW_SECRETS_PROVIDER`, then every resource. A
/// component provider runs in `sandbox` (the run's own), or in a sandbox of its own.
pub fn build_resources(
    spec: &FlowSpec,
    env: &EnvSnapshot,
    sandbox: Option<std::sync::Arc<crate::sandbox::Sandbox>>,
) -> Result<ResolvedResources, ResourceError> {
    let profiles = load_profiles(env, ProfilesMode::Run)?;
    let provider = secrets::provider_from_env_with(env, sandbox)?;
    resolve_resources(spec, env, &profiles, provider.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn deep_merge_resource_wins_lists_replaced() {
        let got = deep_merge(
            &m(json!({"a": 1, "n": {"x": 1, "y": 2}, "l": [1, 2]})),
            &m(json!({"n": {"y": 3}, "l": [9], "b": 2})),
        );
        assert_eq!(
            Value::Object(got),
            json!({"a": 1, "n": {"x": 1, "y": 3}, "l": [9], "b": 2})
        );
    }

    /// Adds `X=added` to the env and upper-cases decoded values.
    struct Expanding;

    impl SecretsProvider for Expanding {
        fn name(&self) -> &str {
            "expanding"
        }
        fn decode(&self, value: &str) -> Result<String, secrets::DecodeFailure> {
            Ok(value.to_uppercase())
        }
        fn expand_env(
            &self,
            env: &EnvSnapshot,
        ) -> Result<Option<EnvSnapshot>, secrets::DecodeFailure> {
            let mut env = env.clone();
            env.insert("X".into(), "added-secret".into());
            Ok(Some(env))
        }
    }

    #[test]
    fn expand_env_is_per_resource_and_its_values_are_secrets() {
        let mut env = EnvSnapshot::new();
        env.insert("A".into(), "a".into());
        let scope = crate::settings::env_scope(&env);
        let spec = ResourceSpec {
            kind: "db".into(),
            driver: "sqlite3".into(),
            profile: None,
            config: json!({"p": "{{env.A}}/{{env.X}}", "pw": "{{env.A}}"}),
            options: json!({}),
            decode: json!({"config": {"pw": true}}),
        };
        let merged = merge_resource("r", &spec, &LoadedProfiles::default()).unwrap();
        let mut secrets_out = BTreeSet::new();
        let r = resolve_resource(
            merged.clone(),
            &spec,
            &scope,
            Some(&Expanding),
            &mut secrets_out,
        )
        .unwrap();
        assert_eq!(
            Value::Object(r.config),
            json!({"p": "a/added-secret", "pw": "A"})
        );
        assert!(secrets_out.contains("added-secret"));
        // The caller's scope is untouched; without the provider X is unknown.
        assert!(scope["env"].get("X").is_none());
        let mut sink = BTreeSet::new();
        let mut no_decode = merged;
        no_decode.decode = json!({});
        assert!(resolve_resource(no_decode, &spec, &scope, None, &mut sink).is_err());
    }

    #[test]
    fn decode_merge_and_requests() {
        let d = merge_decode(
            &json!({"config": {"pw": true}, "config_paths": ["a"]}),
            &json!({"config": {"h": {"t": true}, "pw": false}, "config_paths": ["a", "b"]}),
        );
        assert_eq!(
            d,
            json!({"config": {"pw": false, "h": {"t": true}}, "config_paths": ["a", "b"]})
        );
        let reqs = decode_requests(&d).unwrap();
        let shown: Vec<String> = reqs.iter().map(|r| r.to_string()).collect();
        assert_eq!(shown, ["config.h.t", "config.a", "config.b"]);
        assert!(decode_requests(&json!({"config": true})).is_err());
        assert!(decode_requests(&json!({"config": {"a": 1}}))
            .unwrap_err()
            .contains("Node unknow. Section config Prefix a"));
        assert!(decode_requests(&json!({"config_paths": "a"})).is_err());
        assert!(decode_requests(&json!({"config_paths": [""]})).is_err());
        assert!(decode_requests(&json!("x")).is_err());
        assert!(decode_requests(&json!({})).unwrap().is_empty());
    }
}
