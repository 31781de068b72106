//! Validation-time template scan (§1.5).
//!
//! The scan only reports *what* went wrong and *where* (leaf path relative to
//! the scanned value); the caller owns codes, locs and severities. To
//! reproduce `validate_flow_yaml` (aetherflow-core 0.0.14) exactly:
//!
//! * **Resources** (for each resource, in order): call [`scan`] with
//!   [`Phase::Resource`] on `config`, then on `options`. Use loc
//!   `resources.<r>.config` / `resources.<r>.options` (section level, *not*
//!   the leaf path) for [`ScanKind::MissingEnv`] (code `semantic:missing_env`,
//!   msg `Missing env <key>`) and [`ScanKind::Syntax`] (code
//!   `template:syntax`, msg = the `message`). Then the decode-concat check
//!   (caller: raw value at each decode path containing `{{`/`}}` and not
//!   [`crate::is_standalone_token`] → loc `resources.<r>.<section>.<path>`,
//!   msg `Decode target must be a standalone template token like
//!   '{{TOKEN}}' (no prefix/suffix).`). Then for each string leaf of
//!   `decode` containing `{{`: not standalone → `template:syntax` with the
//!   bare [`crate::UNSUPPORTED_MSG`]; standalone → [`scan_each_leaf`] on that
//!   leaf; loc `resources.<r>.decode.<leaf path>`.
//! * **Flow meta**: [`scan`] with [`Phase::FlowMeta`] on the dumped `flow:`
//!   block, loc `flow`.
//! * **Steps**: [`scan`] with [`Phase::Step`] on `inputs`, then `outputs`.
//!   [`ScanKind::UnknownRoot`] findings come first, one per (leaf, root):
//!   code `template:unknown_root`, loc `jobs[i].steps[j].<section>.<leaf
//!   path>` (just the section when the path is empty), msg `Unknown template
//!   root: <root>`. The remaining finding (at most one) uses the section
//!   loc `jobs[i].steps[j].<section>`.
//! * **Profiles** (all profiles; for each of `config`, `options`, `decode`):
//!   [`scan_each_leaf`], loc `profiles.<p>.<section>.<leaf path>`; for
//!   `decode` additionally the bare-message standalone check as above.
//! * Missing-env findings are warnings unless
//!   `AETHERFLOW_VALIDATE_ENV_STRICT` is `true` (case-insensitive).
//!
//! [`scan`] stops at the first render error of a scanned value (missing key
//! of *any* root, or syntax error), like the Python resolver call it mirrors;
//! a missing non-`env` key produces no finding but still ends the scan.

use serde_json::{Map, Value};

use crate::render::{py_isspace, render_inline_roots, render_str};
use crate::{Phase, ResolveError};

/// What the scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanKind {
    /// A missing key rooted at `env` (`key` includes the `env.` prefix).
    MissingEnv { key: String },
    /// A syntax error; `message` is the full resolver message.
    Syntax { message: String },
    /// A template root not allowed in the step phase.
    UnknownRoot { root: String },
}

/// One scan finding; `path` is the leaf path relative to the scanned value
/// (`a.b[0].c`, empty for the value itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanFinding {
    pub path: String,
    pub kind: ScanKind,
}

/// `(path, string)` for every string leaf, in document order.
fn string_leaves<'a>(value: &'a Value, path: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::String(s) => out.push((path, s)),
        Value::Object(map) => {
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                string_leaves(v, p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                string_leaves(v, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// `_extract_template_roots`: emulates `re.finditer(r"\{\{(.*?)\}\}", s)`;
/// roots are de-duplicated in first-occurrence order.
pub fn extract_template_roots(s: &str) -> Vec<String> {
    let mut roots: Vec<String> = Vec::new();
    let mut pos = 0;
    while let Some(rel) = s[pos..].find("{{") {
        let start = pos + rel;
        let body_start = start + 2;
        let line_end = s[body_start..]
            .find('\n')
            .map_or(s.len(), |p| body_start + p);
        match s[body_start..line_end].find("}}") {
            Some(rel_end) => {
                let inner = s[body_start..body_start + rel_end].trim_matches(py_isspace);
                pos = body_start + rel_end + 2;
                if inner.is_empty() {
                    continue;
                }
                let head = inner
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .trim_matches(py_isspace);
                let root = head
                    .split('.')
                    .next()
                    .unwrap_or("")
                    .trim_matches(py_isspace);
                if !root.is_empty() && !roots.iter().any(|r| r == root) {
                    roots.push(root.to_string());
                }
            }
            None => pos = start + 1,
        }
    }
    roots
}

fn scan_context(env: &Map<String, Value>, phase: Phase) -> Map<String, Value> {
    let mut ctx = Map::new();
    ctx.insert("env".into(), Value::Object(env.clone()));
    if phase == Phase::Step {
        ctx.insert("steps".into(), Value::Object(Map::new()));
        ctx.insert("job".into(), Value::Object(Map::new()));
        ctx.insert("run_id".into(), Value::String("RUN_ID".into()));
        ctx.insert("flow_id".into(), Value::String("FLOW_ID".into()));
        ctx.insert("result".into(), Value::Object(Map::new()));
    }
    ctx
}

fn finding_for(err: ResolveError, path: String) -> Option<ScanFinding> {
    match err {
        ResolveError::MissingKey { path: key } => {
            if key == "env" || key.starts_with("env.") {
                Some(ScanFinding {
                    path,
                    kind: ScanKind::MissingEnv { key },
                })
            } else {
                None
            }
        }
        e @ ResolveError::Syntax { .. } => Some(ScanFinding {
            path,
            kind: ScanKind::Syntax {
                message: e.to_string(),
            },
        }),
    }
}

/// Scan one templated section (resource `config`/`options`, the flow block,
/// step `inputs`/`outputs`) the way validation does. See the module docs for
/// how the caller maps findings to codes and locs.
///
/// The scan context is `{env}` for [`Phase::Resource`]/[`Phase::FlowMeta`] and
/// `{env, steps: {}, job: {}, run_id: "RUN_ID", flow_id: "FLOW_ID", result: {}}`
/// (no `jobs`) for [`Phase::Step`].
pub fn scan(value: &Value, env: &Map<String, Value>, phase: Phase) -> Vec<ScanFinding> {
    let mut leaves = Vec::new();
    string_leaves(value, String::new(), &mut leaves);
    let mut findings = Vec::new();
    if phase == Phase::Step {
        for (path, s) in &leaves {
            for root in extract_template_roots(s) {
                if !phase.allowed_roots().contains(&root.as_str()) {
                    findings.push(ScanFinding {
                        path: path.clone(),
                        kind: ScanKind::UnknownRoot { root },
                    });
                }
            }
        }
    }
    // The scope (a copy of the whole environment) is only built when a leaf has a
    // template: a plain string renders to itself without looking anything up.
    let mut ctx: Option<Map<String, Value>> = None;
    let no_scope = Map::new();
    for (path, s) in leaves {
        let scope = if s.contains("{{") || s.contains("}}") {
            &*ctx.get_or_insert_with(|| scan_context(env, phase))
        } else {
            &no_scope
        };
        if let Err(e) = render_str(s, scope, phase) {
            findings.extend(finding_for(e, path));
            break;
        }
    }
    findings
}

/// `(path, string)` for every string leaf of `value`, in document order
/// (`_iter_strings`): object keys joined with `.`, list items as `[i]`.
pub fn string_leaf_paths(value: &Value) -> Vec<(String, &str)> {
    let mut leaves = Vec::new();
    string_leaves(value, String::new(), &mut leaves);
    leaves
}

/// Per-leaf scan with inline rendering and `{env}` only (profiles, decode
/// strings): every string leaf is checked independently, nothing stops early.
///
/// Like the reference's `render_string(s, mapping={"env": ...})` the allowed
/// roots are *not* restricted: a non-`env` root is simply missing from the
/// mapping, which is a missing key and yields no finding.
pub fn scan_each_leaf(value: &Value, env: &Map<String, Value>) -> Vec<ScanFinding> {
    let ctx = scan_context(env, Phase::Resource);
    string_leaf_paths(value)
        .into_iter()
        .filter_map(|(path, s)| {
            render_inline_roots(s, &ctx, None)
                .err()
                .and_then(|e| finding_for(e, path))
        })
        .collect()
}
