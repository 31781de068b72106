//! Schema validation mimicking pydantic v2 (lax mode) as used by the reference `spec.py`.
//!
//! All issues are collected, in pydantic's order: model fields in declaration order, then
//! (for `extra="forbid"` models) the extra keys in input order. Codes are
//! `schema:<pydantic error type>` and messages are pydantic's text.
//!
//! Where the reference silently ignores unknown keys (flow, flow meta, workspace, state,
//! locks, job, step) we keep the verdict but add a `schema:unknown_key` *warning*.

use crate::issue::{fmt_loc, Issue, Pos, Seg};
use crate::model::*;
use crate::yaml::{Node, NodeKind, Scalar};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

const MSG_MISSING: &str = "Field required";
const MSG_STRING: &str = "Input should be a valid string";
const MSG_DICT: &str = "Input should be a valid dictionary";
const MSG_LIST: &str = "Input should be a valid list";
const MSG_EXTRA: &str = "Extra inputs are not permitted";

/// Issue collector with the current location.
pub(crate) struct Checker {
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
    path: Vec<Seg>,
}

/// A mapping node viewed as pydantic model input.
struct Fields<'n> {
    entries: &'n [(Node, Node)],
    pos: Option<Pos>,
}

impl<'n> Fields<'n> {
    fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries.iter().find_map(|(k, v)| match &k.kind {
            NodeKind::Scalar(Scalar::Str(s)) if s == name => Some(v),
            _ => None,
        })
    }

    /// Keys that are not declared fields, with the key node.
    fn extras<'a>(
        &'a self,
        known: &'a [&'a str],
    ) -> impl Iterator<Item = (&'n Node, &'n Scalar)> + 'a {
        self.entries.iter().filter_map(move |(k, _)| match &k.kind {
            NodeKind::Scalar(Scalar::Str(s)) if known.contains(&s.as_str()) => None,
            NodeKind::Scalar(s) => Some((k, s)),
            _ => None,
        })
    }
}

fn literal_msg(options: &[&str]) -> String {
    let quoted: Vec<String> = options.iter().map(|o| format!("'{o}'")).collect();
    match quoted.split_last() {
        None => "Input should be".to_string(),
        Some((last, [])) => format!("Input should be {last}"),
        Some((last, rest)) => format!("Input should be {} or {last}", rest.join(", ")),
    }
}

/// Python `str.strip()` whitespace.
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| {
        c.is_whitespace() || c == '\u{1c}' || c == '\u{1d}' || c == '\u{1e}' || c == '\u{1f}'
    })
}

/// pydantic's lax str -> int: sign, digits with single `_` between digits, optional `.0+`.
fn parse_int_str(s: &str) -> Option<i64> {
    let s = py_strip(s);
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let digits = match body.split_once('.') {
        Some((d, zeros)) => {
            if zeros.is_empty() || !zeros.chars().all(|c| c == '0') {
                return None;
            }
            d
        }
        None => body,
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let mut acc: i64 = 0;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = i64::from(c.to_digit(10).filter(|_| c.is_ascii_digit())? as u8);
        acc = acc.saturating_mul(10).saturating_add(d);
    }
    Some(if neg { acc.saturating_neg() } else { acc })
}

/// Python `float(str)`: underscores only between digits.
fn parse_float_str(s: &str) -> Option<f64> {
    let s = py_strip(s);
    let b = s.as_bytes();
    for (i, c) in b.iter().enumerate() {
        if *c == b'_' {
            let ok = i > 0
                && b.get(i - 1).is_some_and(u8::is_ascii_digit)
                && b.get(i + 1).is_some_and(u8::is_ascii_digit);
            if !ok {
                return None;
            }
        }
    }
    let cleaned: String = s.chars().filter(|c| *c != '_').collect();
    cleaned.parse::<f64>().ok()
}

impl Checker {
    pub(crate) fn new(base: Vec<Seg>) -> Self {
        Checker {
            errors: Vec::new(),
            warnings: Vec::new(),
            path: base,
        }
    }

    fn loc(&self) -> String {
        fmt_loc(&self.path)
    }

    fn error(&mut self, kind: &str, msg: impl Into<String>, pos: Option<Pos>) {
        let issue = Issue::new(format!("schema:{kind}"), self.loc(), msg).with_pos(pos);
        self.errors.push(issue);
    }

    fn at<T>(&mut self, seg: Seg, f: impl FnOnce(&mut Self) -> T) -> T {
        self.path.push(seg);
        let r = f(self);
        self.path.pop();
        r
    }

    fn field_seg(name: &str) -> Seg {
        Seg::Field(name.to_string())
    }

    /// Model input: must be a mapping.
    fn model<'n>(&mut self, node: &'n Node, model: &str) -> Option<Fields<'n>> {
        match &node.kind {
            NodeKind::Map(entries) => Some(Fields {
                entries,
                pos: node.pos,
            }),
            _ => {
                self.error(
                    "model_type",
                    format!("Input should be a valid dictionary or instance of {model}"),
                    node.pos,
                );
                None
            }
        }
    }

    /// A field: required (None default) or optional with default.
    fn field<'n, T>(
        &mut self,
        f: &Fields<'n>,
        name: &str,
        default: Option<T>,
        validate: impl FnOnce(&mut Self, &'n Node) -> Option<T>,
    ) -> Option<T> {
        self.at(Self::field_seg(name), |c| match f.get(name) {
            Some(node) => validate(c, node),
            None => {
                if default.is_none() {
                    c.error("missing", MSG_MISSING, f.pos);
                }
                default
            }
        })
    }

    fn forbid_extras(&mut self, f: &Fields<'_>, known: &[&str]) {
        for (k, s) in f.extras(known) {
            self.at(s.key_seg(), |c| {
                c.error("extra_forbidden", MSG_EXTRA, k.pos)
            });
        }
    }

    fn warn_extras(&mut self, f: &Fields<'_>, known: &[&str], context: &str) {
        for (k, s) in f.extras(known) {
            let name = s.py_str();
            let mut msg = format!("unknown key `{name}` {context} (ignored)");
            if let Some(best) = suggest(&name, known) {
                msg.push_str(&format!(": did you mean `{best}`?"));
            }
            self.at(s.key_seg(), |c| {
                let issue = Issue::new("schema:unknown_key", c.loc(), msg).with_pos(k.pos);
                c.warnings.push(issue);
            });
        }
    }

    fn string(&mut self, node: &Node) -> Option<String> {
        match &node.kind {
            NodeKind::Scalar(Scalar::Str(s)) => Some(s.clone()),
            _ => {
                self.error("string_type", MSG_STRING, node.pos);
                None
            }
        }
    }

    /// `Optional[str]`; outer None = invalid.
    fn opt_string(&mut self, node: &Node) -> Option<Option<String>> {
        match &node.kind {
            NodeKind::Scalar(Scalar::Null) => Some(None),
            _ => self.string(node).map(Some),
        }
    }

    /// A YAML boolean, nothing else (engine extensions only: no lax coercion).
    fn bool(&mut self, node: &Node) -> Option<bool> {
        match &node.kind {
            NodeKind::Scalar(Scalar::Bool(b)) => Some(*b),
            _ => {
                self.error("bool_type", "Input should be a valid boolean", node.pos);
                None
            }
        }
    }

    fn int(&mut self, node: &Node) -> Option<i64> {
        let pos = node.pos;
        match &node.kind {
            NodeKind::Scalar(Scalar::Bool(b)) => Some(i64::from(*b)),
            NodeKind::Scalar(Scalar::Int(i)) => {
                Some(i64::try_from(*i).unwrap_or(if *i < 0 { i64::MIN } else { i64::MAX }))
            }
            NodeKind::Scalar(Scalar::Float(f)) => {
                if !f.is_finite() {
                    self.error("finite_number", "Input should be a finite number", pos);
                    None
                } else if f.fract() != 0.0 {
                    self.error(
                        "int_from_float",
                        "Input should be a valid integer, got a number with a fractional part",
                        pos,
                    );
                    None
                } else if f.abs() >= 9_223_372_036_854_775_808.0 {
                    self.error(
                        "int_parsing_size",
                        "Unable to parse input string as an integer, exceeded maximum size",
                        pos,
                    );
                    None
                } else {
                    Some(*f as i64)
                }
            }
            NodeKind::Scalar(Scalar::Str(s)) => {
                let r = parse_int_str(s);
                if r.is_none() {
                    self.error(
                        "int_parsing",
                        "Input should be a valid integer, unable to parse string as an integer",
                        pos,
                    );
                }
                r
            }
            _ => {
                self.error("int_type", "Input should be a valid integer", pos);
                None
            }
        }
    }

    /// `Optional[float]` with `gt=0` (engine extension `timeout_seconds`).
    fn opt_positive_float(&mut self, node: &Node) -> Option<Option<f64>> {
        let pos = node.pos;
        let f = match &node.kind {
            NodeKind::Scalar(Scalar::Null) => return Some(None),
            NodeKind::Scalar(Scalar::Bool(b)) => f64::from(u8::from(*b)),
            NodeKind::Scalar(Scalar::Int(i)) => *i as f64,
            NodeKind::Scalar(Scalar::Float(f)) => *f,
            NodeKind::Scalar(Scalar::Str(s)) => match parse_float_str(s) {
                Some(f) => f,
                None => {
                    self.error(
                        "float_parsing",
                        "Input should be a valid number, unable to parse string as a number",
                        pos,
                    );
                    return None;
                }
            },
            _ => {
                self.error("float_type", "Input should be a valid number", pos);
                return None;
            }
        };
        if f > 0.0 {
            Some(Some(f))
        } else {
            self.error("greater_than", "Input should be greater than 0", pos);
            None
        }
    }

    fn literal(&mut self, node: &Node, options: &[&'static str]) -> Option<&'static str> {
        if let NodeKind::Scalar(Scalar::Str(s)) = &node.kind {
            if let Some(o) = options.iter().find(|o| **o == s.as_str()) {
                return Some(o);
            }
        }
        self.error("literal_error", literal_msg(options), node.pos);
        None
    }

    /// `Dict[str, V]`: key type errors at `<key>.[key]`, then the value.
    fn dict<'n, T>(
        &mut self,
        node: &'n Node,
        mut value: impl FnMut(&mut Self, &'n Node) -> Option<T>,
    ) -> Option<Vec<(String, T)>> {
        let NodeKind::Map(entries) = &node.kind else {
            self.error("dict_type", MSG_DICT, node.pos);
            return None;
        };
        let mut ok = true;
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let NodeKind::Scalar(ks) = &k.kind else {
                continue;
            };
            self.at(ks.key_seg(), |c| {
                let key_ok = matches!(ks, Scalar::Str(_));
                if !key_ok {
                    c.at(Seg::Field("[key]".into()), |c| {
                        c.error("string_type", MSG_STRING, k.pos)
                    });
                }
                let val = value(c, v);
                match (key_ok, val) {
                    (true, Some(val)) => out.push((ks.py_str(), val)),
                    _ => ok = false,
                }
            });
        }
        ok.then_some(out)
    }

    /// `Dict[str, Any]` as a JSON object.
    fn any_dict(&mut self, node: &Node) -> Option<Value> {
        let items = self.dict(node, |_, v| Some(node_to_value(v)))?;
        Some(Value::Object(
            items.into_iter().collect::<Map<String, Value>>(),
        ))
    }

    fn list<'n, T>(
        &mut self,
        node: &'n Node,
        mut item: impl FnMut(&mut Self, &'n Node) -> Option<T>,
    ) -> Option<Vec<T>> {
        let NodeKind::Seq(items) = &node.kind else {
            self.error("list_type", MSG_LIST, node.pos);
            return None;
        };
        let mut ok = true;
        let mut out = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            match self.at(Seg::Index(i.to_string()), |c| item(c, it)) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    // -----------------------------------------------------------------------------------------
    // Models
    // -----------------------------------------------------------------------------------------

    pub(crate) fn flow_spec(&mut self, node: &Node) -> Option<FlowSpec> {
        let f = self.model(node, "FlowSpec")?;
        let version = self.field(&f, "version", Some(1), |c, n| c.int(n));
        let flow = self.field(&f, "flow", None, |c, n| c.flow_meta(n));
        let resources = self.field(&f, "resources", Some(Vec::new()), |c, n| {
            c.dict(n, |c, v| c.resource(v))
        });
        let jobs = self.field(&f, "jobs", None, |c, n| c.list(n, |c, j| c.job(j)));
        let step_lock = self.field(&f, "steps", Some(Vec::new()), |c, n| match &n.kind {
            NodeKind::Scalar(Scalar::Null) => Some(Vec::new()),
            _ => c.dict(n, |c, v| c.step_lock_entry(v)),
        });
        let settings = self.field(&f, "settings", Some(FlowSettings::default()), |c, n| {
            c.flow_settings(n)
        });
        self.warn_extras(
            &f,
            &["version", "flow", "resources", "jobs", "steps", "settings"],
            "at the top level",
        );
        Some(FlowSpec {
            version: version?,
            flow: flow?,
            resources: resources?,
            jobs: jobs?,
            step_lock: step_lock?,
            settings: settings?,
        })
    }

    /// Engine extension `steps.<name>`: `sha256`, `version`, `path`, at least one.
    fn step_lock_entry(&mut self, node: &Node) -> Option<StepLockEntry> {
        const KNOWN: &[&str] = &["sha256", "version", "path"];
        let f = self.model(node, "StepLockEntry")?;
        let sha256 = self.field(&f, "sha256", Some(None), |c, n| {
            let s = c.string(n)?;
            if crate::pin::is_sha256_hex(&s) {
                Some(Some(s.to_ascii_lowercase()))
            } else {
                c.error(
                    "sha256",
                    format!("expected the sha256 of the component file: 64 hex digits; got `{s}`"),
                    n.pos,
                );
                None
            }
        });
        let version = self.field(&f, "version", Some(None), |c, n| c.string(n).map(Some));
        let path = self.field(&f, "path", Some(None), |c, n| c.string(n).map(Some));
        self.forbid_extras(&f, KNOWN);
        let entry = StepLockEntry {
            sha256: sha256?,
            version: version?,
            path: path?,
        };
        if entry == StepLockEntry::default() {
            self.error(
                "missing",
                "a `steps` entry needs `sha256`, `path` or `version`",
                f.pos,
            );
            return None;
        }
        Some(entry)
    }

    /// Engine extension: the top-level `settings:` (unknown keys are errors: a misspelt
    /// security setting must not pass silently).
    fn flow_settings(&mut self, node: &Node) -> Option<FlowSettings> {
        if let NodeKind::Scalar(Scalar::Null) = &node.kind {
            return Some(FlowSettings::default());
        }
        let f = self.model(node, "FlowSettings")?;
        let allow_external_process =
            self.field(&f, "allow_external_process", Some(false), |c, n| c.bool(n));
        self.forbid_extras(&f, &["allow_external_process"]);
        Some(FlowSettings {
            allow_external_process: allow_external_process?,
        })
    }

    pub(crate) fn flow_meta(&mut self, node: &Node) -> Option<FlowMeta> {
        let f = self.model(node, "FlowMetaSpec")?;
        let id = self.field(&f, "id", None, |c, n| c.string(n));
        let description = self.field(&f, "description", Some(None), |c, n| c.opt_string(n));
        let workspace = self.field(&f, "workspace", Some(WorkspaceSpec::default()), |c, n| {
            c.workspace(n)
        });
        let state = self.field(&f, "state", Some(StateSpec::default()), |c, n| c.state(n));
        let locks = self.field(&f, "locks", Some(LocksSpec::default()), |c, n| c.locks(n));
        let determinism = self.field(&f, "determinism", Some(None), |c, n| c.determinism(n));
        self.warn_extras(
            &f,
            &[
                "id",
                "description",
                "workspace",
                "state",
                "locks",
                "determinism",
            ],
            "in `flow`",
        );
        Some(FlowMeta {
            id: id?,
            description: description?,
            workspace: workspace?,
            state: state?,
            locks: locks?,
            determinism: determinism?.unwrap_or_default(),
        })
    }

    fn workspace(&mut self, node: &Node) -> Option<WorkspaceSpec> {
        let f = self.model(node, "WorkspaceSpec")?;
        let d = WorkspaceSpec::default();
        let root = self.field(&f, "root", Some(d.root), |c, n| c.string(n));
        let cleanup_policy = self.field(&f, "cleanup_policy", Some(d.cleanup_policy), |c, n| {
            c.literal(n, &["on_success", "always", "never"])
                .map(|s| match s {
                    "always" => CleanupPolicy::Always,
                    "never" => CleanupPolicy::Never,
                    _ => CleanupPolicy::OnSuccess,
                })
        });
        let layout = self.field(&f, "layout", Some(d.layout), |c, n| {
            c.dict(n, |c, v| c.string(v))
                .map(|items| items.into_iter().collect::<BTreeMap<_, _>>())
        });
        self.warn_extras(
            &f,
            &["root", "cleanup_policy", "layout"],
            "in `flow.workspace`",
        );
        Some(WorkspaceSpec {
            root: root?,
            cleanup_policy: cleanup_policy?,
            layout: layout?,
        })
    }

    fn state(&mut self, node: &Node) -> Option<StateSpec> {
        let f = self.model(node, "StateSpec")?;
        let d = StateSpec::default();
        let backend = self.field(&f, "backend", Some(d.backend), |c, n| {
            c.literal(n, &["sqlite", "file"]).map(|s| match s {
                "file" => StateBackend::File,
                _ => StateBackend::Sqlite,
            })
        });
        let path = self.field(&f, "path", Some(d.path), |c, n| c.string(n));
        self.warn_extras(&f, &["backend", "path"], "in `flow.state`");
        Some(StateSpec {
            backend: backend?,
            path: path?,
        })
    }

    fn locks(&mut self, node: &Node) -> Option<LocksSpec> {
        let f = self.model(node, "LocksSpec")?;
        let d = LocksSpec::default();
        let scope = self.field(&f, "scope", Some(d.scope), |c, n| {
            c.literal(n, &["none", "job", "flow"]).map(|s| match s {
                "none" => LockScope::None,
                "flow" => LockScope::Flow,
                _ => LockScope::Job,
            })
        });
        let ttl_seconds = self.field(&f, "ttl_seconds", Some(d.ttl_seconds), |c, n| c.int(n));
        self.warn_extras(&f, &["scope", "ttl_seconds"], "in `flow.locks`");
        Some(LocksSpec {
            scope: scope?,
            ttl_seconds: ttl_seconds?,
        })
    }

    fn resource(&mut self, node: &Node) -> Option<ResourceSpec> {
        const KNOWN: &[&str] = &["kind", "driver", "profile", "config", "options", "decode"];
        let f = self.model(node, "ResourceSpec")?;
        let kind = self.field(&f, "kind", None, |c, n| c.string(n));
        let driver = self.field(&f, "driver", None, |c, n| c.string(n));
        let profile = self.field(&f, "profile", Some(None), |c, n| c.opt_string(n));
        let empty = || Some(Value::Object(Map::new()));
        let config = self.field(&f, "config", empty(), |c, n| c.any_dict(n));
        let options = self.field(&f, "options", empty(), |c, n| c.any_dict(n));
        let decode = self.field(&f, "decode", empty(), |c, n| c.any_dict(n));
        self.forbid_extras(&f, KNOWN);
        Some(ResourceSpec {
            kind: kind?,
            driver: driver?,
            profile: profile?,
            config: config?,
            options: options?,
            decode: decode?,
        })
    }

    fn job(&mut self, node: &Node) -> Option<JobSpec> {
        let f = self.model(node, "JobSpec")?;
        let id = self.field(&f, "id", None, |c, n| c.string(n));
        let description = self.field(&f, "description", Some(None), |c, n| c.opt_string(n));
        let depends_on = self.field(&f, "depends_on", Some(Vec::new()), |c, n| {
            c.list(n, |c, d| c.string(d))
        });
        let when = self.field(&f, "when", Some(None), |c, n| c.opt_string(n));
        let job_label = match f.get("id").map(|n| &n.kind) {
            Some(NodeKind::Scalar(Scalar::Str(s))) => Some(s.clone()),
            _ => None,
        };
        let steps = self.field(&f, "steps", None, |c, n| {
            c.list(n, |c, s| c.step(s, job_label.as_deref()))
        });
        let context = match &job_label {
            Some(j) => format!("in job `{j}`"),
            None => format!("in `{}`", self.loc()),
        };
        self.warn_extras(
            &f,
            &["id", "description", "depends_on", "when", "steps"],
            &context,
        );
        Some(JobSpec {
            id: id?,
            description: description?,
            depends_on: depends_on?,
            when: when?,
            steps: steps?,
        })
    }

    fn step(&mut self, node: &Node, job: Option<&str>) -> Option<StepSpec> {
        const KNOWN: &[&str] = &[
            "id",
            "type",
            "inputs",
            "on_no_data",
            "outputs",
            "timeout_seconds",
            "limits",
            "grants",
            "mounts",
            "determinism",
        ];
        let f = self.model(node, "StepSpec")?;
        let id = self.field(&f, "id", None, |c, n| c.string(n));
        let type_ = self.field(&f, "type", None, |c, n| {
            let s = c.string(n)?;
            match crate::pin::split_type_pin(&s) {
                Ok((name, pin)) => Some((name.to_string(), pin)),
                Err(msg) => {
                    c.error("step_pin", msg, n.pos);
                    None
                }
            }
        });
        let empty = || Some(Value::Object(Map::new()));
        let inputs = self.field(&f, "inputs", empty(), |c, n| c.any_dict(n));
        let on_no_data = self.field(&f, "on_no_data", Some(None), |c, n| match &n.kind {
            NodeKind::Scalar(Scalar::Null) => Some(None),
            _ => c.literal(n, &["skip_job"]).map(|_| Some(OnNoData::SkipJob)),
        });
        let outputs = self.field(&f, "outputs", empty(), |c, n| c.any_dict(n));
        let timeout_seconds = self.field(&f, "timeout_seconds", Some(None), |c, n| {
            c.opt_positive_float(n)
        });
        let limits = self.field(&f, "limits", Some(LimitsSpec::default()), |c, n| {
            c.limits(n)
        });
        let grants = self.field(&f, "grants", Some(Vec::new()), |c, n| match &n.kind {
            NodeKind::Scalar(Scalar::Null) => Some(Vec::new()),
            _ => c.list(n, |c, g| c.string(g)),
        });
        let mounts = self.field(&f, "mounts", Some(Vec::new()), |c, n| match &n.kind {
            NodeKind::Scalar(Scalar::Null) => Some(Vec::new()),
            _ => c.list(n, |c, m| c.mount(m)),
        });
        let determinism = self.field(&f, "determinism", Some(None), |c, n| c.determinism(n));
        let step_label = match f.get("id").map(|n| &n.kind) {
            Some(NodeKind::Scalar(Scalar::Str(s))) => Some(s.clone()),
            _ => None,
        };
        let context = match (step_label, job) {
            (Some(s), Some(j)) => format!("in step `{s}` of job `{j}`"),
            (Some(s), None) => format!("in step `{s}`"),
            _ => format!("in `{}`", self.loc()),
        };
        self.warn_extras(&f, KNOWN, &context);
        let (type_, type_sha256) = type_?;
        Some(StepSpec {
            id: id?,
            type_,
            type_sha256,
            inputs: inputs?,
            on_no_data: on_no_data?,
            outputs: outputs?,
            timeout_seconds: timeout_seconds?,
            limits: limits?,
            grants: grants?,
            mounts: mounts?,
            determinism: determinism?,
        })
    }

    /// `Optional[Literal['normal', 'strict']]`; outer None = invalid.
    fn determinism(&mut self, node: &Node) -> Option<Option<Determinism>> {
        match &node.kind {
            NodeKind::Scalar(Scalar::Null) => Some(None),
            _ => self.literal(node, &["normal", "strict"]).map(|s| {
                Some(match s {
                    "strict" => Determinism::Strict,
                    _ => Determinism::Normal,
                })
            }),
        }
    }

    /// Unknown keys of an engine-extension block are errors (a misspelt limit must not
    /// silently leave the default in place), with a suggestion when one is close.
    fn forbid_extras_suggest(&mut self, f: &Fields<'_>, known: &[&str]) {
        for (k, s) in f.extras(known) {
            let mut msg = MSG_EXTRA.to_string();
            if let Some(best) = suggest(&s.py_str(), known) {
                msg.push_str(&format!(" (did you mean `{best}`?)"));
            }
            self.at(s.key_seg(), |c| c.error("extra_forbidden", msg, k.pos));
        }
    }

    /// An integer > 0 (lax, like `int`).
    fn positive_int(&mut self, node: &Node) -> Option<u64> {
        let v = self.int(node)?;
        if v > 0 {
            Some(v as u64)
        } else {
            self.error("greater_than", "Input should be greater than 0", node.pos);
            None
        }
    }

    /// A byte size > 0: an integer, or a string such as `512 KiB`, `10MB`, `1 GiB`.
    fn size(&mut self, node: &Node) -> Option<u64> {
        match &node.kind {
            NodeKind::Scalar(Scalar::Str(s)) if parse_int_str(s).is_none() => match parse_size(s) {
                Some(0) => {
                    self.error("greater_than", "Input should be greater than 0", node.pos);
                    None
                }
                Some(n) => Some(n),
                None => {
                    self.error(
                            "size_parsing",
                            "Input should be a size: a whole number of bytes, or a number with a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. `10 MiB`",
                            node.pos,
                        );
                    None
                }
            },
            _ => self.positive_int(node),
        }
    }

    /// `steps[].limits`: every key optional, unknown keys rejected.
    fn limits(&mut self, node: &Node) -> Option<LimitsSpec> {
        if let NodeKind::Scalar(Scalar::Null) = node.kind {
            return Some(LimitsSpec::default());
        }
        if !matches!(node.kind, NodeKind::Map(_)) {
            self.error("dict_type", MSG_DICT, node.pos);
            return None;
        }
        let f = self.model(node, "LimitsSpec")?;
        let opt = |c: &mut Self, n: &Node, f: fn(&mut Self, &Node) -> Option<u64>| match &n.kind {
            NodeKind::Scalar(Scalar::Null) => Some(None),
            _ => f(c, n).map(Some),
        };
        let timeout_seconds = self.field(&f, "timeout_seconds", Some(None), |c, n| {
            c.opt_positive_float(n)
        });
        let fuel = self.field(&f, "fuel", Some(None), |c, n| opt(c, n, Self::positive_int));
        let memory_mb = self.field(&f, "memory_mb", Some(None), |c, n| {
            opt(c, n, |c, n| {
                let v = c.positive_int(n)?;
                if v > 4096 {
                    c.error(
                        "less_than_equal",
                        "Input should be less than or equal to 4096",
                        n.pos,
                    );
                    return None;
                }
                Some(v)
            })
        });
        let max_output_bytes = self.field(&f, "max_output_bytes", Some(None), |c, n| {
            opt(c, n, Self::size)
        });
        let max_log_bytes = self.field(&f, "max_log_bytes", Some(None), |c, n| {
            opt(c, n, Self::size)
        });
        let max_component_bytes = self.field(&f, "max_component_bytes", Some(None), |c, n| {
            opt(c, n, Self::size)
        });
        self.forbid_extras_suggest(&f, LimitsSpec::KEYS);
        Some(LimitsSpec {
            timeout_seconds: timeout_seconds?,
            fuel: fuel?,
            memory_mb: memory_mb?,
            max_output_bytes: max_output_bytes?,
            max_log_bytes: max_log_bytes?,
            max_component_bytes: max_component_bytes?,
        })
    }

    /// `steps[].mounts[]`: `{source, target, mode: ro|rw}`.
    fn mount(&mut self, node: &Node) -> Option<MountSpec> {
        const KNOWN: &[&str] = &["source", "target", "mode"];
        let f = self.model(node, "MountSpec")?;
        let source = self.field(&f, "source", None, |c, n| c.string(n));
        let target = self.field(&f, "target", None, |c, n| c.string(n));
        let mode = self.field(&f, "mode", Some(MountMode::ReadOnly), |c, n| {
            c.literal(n, &["ro", "rw"]).map(|m| match m {
                "rw" => MountMode::ReadWrite,
                _ => MountMode::ReadOnly,
            })
        });
        self.forbid_extras_suggest(&f, KNOWN);
        Some(MountSpec {
            source: source?,
            target: target?,
            mode: mode?,
        })
    }

    fn profile(&mut self, node: &Node) -> Option<Profile> {
        let f = self.model(node, "ProfileSpec")?;
        let empty = || Some(Value::Object(Map::new()));
        let config = self.field(&f, "config", empty(), |c, n| c.any_dict(n));
        let options = self.field(&f, "options", empty(), |c, n| c.any_dict(n));
        let decode = self.field(&f, "decode", empty(), |c, n| c.any_dict(n));
        self.forbid_extras(&f, &["config", "options", "decode"]);
        Some(Profile {
            config: config?,
            options: options?,
            decode: decode?,
        })
    }

    /// `ProfilesFileSpec` (a root model `Dict[str, ProfileSpec]`).
    pub(crate) fn profiles(&mut self, node: &Node) -> Option<BTreeMap<String, Profile>> {
        self.dict(node, |c, v| c.profile(v))
            .map(|items| items.into_iter().collect())
    }
}

/// A byte size written with an optional unit: `1024`, `512 KiB`, `10MB`, `1.5 GiB`.
/// Decimal units are powers of 1000, binary ones of 1024; the unit is case-insensitive.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = parse_float_str(num)?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = num * mult;
    (0.0..1.8e19)
        .contains(&bytes)
        .then_some(bytes.round() as u64)
}

/// JSON view of a node (no positions).
pub(crate) fn node_to_value(node: &Node) -> Value {
    crate::yaml::to_value(node)
}

/// Levenshtein distance (for short identifiers only).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        if let Some(first) = cur.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let v = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            cur[j + 1] = v;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest known key, when it is close enough to be a plausible typo.
pub fn suggest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    if name.chars().count() > 64 {
        return None;
    }
    let lower = name.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for k in known {
        let d = edit_distance(&lower, k);
        let limit = match k.len().max(lower.chars().count()) {
            0..=3 => 1,
            4..=7 => 2,
            _ => 3,
        };
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k));
        }
    }
    best.map(|(_, k)| k)
}
