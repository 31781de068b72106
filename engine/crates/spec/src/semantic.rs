//! Semantic checks run after a successful schema validation (parity §1.4), in the
//! reference's exact order.

use crate::issue::Issue;
use crate::model::FlowSpec;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// Hook validating a `when` expression: `Err(msg)` becomes `semantic:invalid_when`.
pub type WhenCheck<'a> = &'a dyn Fn(&str) -> Result<(), String>;

/// Hook validating `external.process` inputs: returns `(loc suffix after "inputs.", code, msg)`
/// triples, e.g. `("command", "semantic:external_process_missing_command", "...")`.
pub type ExternalProcessCheck<'a> = &'a dyn Fn(&Value) -> Vec<(String, String, String)>;

/// Inputs of [`semantic_checks`] that come from the engine (mode, registry, hooks).
pub struct SemanticOptions<'a> {
    /// `AETHERFLOW_MODE` (stripped, lowercased) == `enterprise`.
    pub enterprise: bool,
    /// Allowed archive drivers (manifest `zip_drivers`; empty without a bundle).
    pub archive_allowlist: Vec<String>,
    /// Every registered step type (built-ins and plugins).
    pub known_step_types: Vec<String>,
    /// Called for each job whose `when` is present and not blank.
    pub when_check: WhenCheck<'a>,
    /// Called for each top-level step of type `external.process`, after its unknown-type check.
    pub external_process_check: ExternalProcessCheck<'a>,
}

/// Python `repr(str)`, shared with the template resolver.
pub use aetherflow_template::py_str_repr as py_repr_str;

/// Python `repr(sorted(set_of_str))`, e.g. `['a', 'b']`.
pub fn py_sorted_list_repr<'s>(items: impl IntoIterator<Item = &'s str>) -> String {
    let set: BTreeSet<&str> = items.into_iter().collect();
    let parts: Vec<String> = set.into_iter().map(py_repr_str).collect();
    format!("[{}]", parts.join(", "))
}

/// Python `str.strip()` emptiness.
fn is_blank(s: &str) -> bool {
    s.chars().all(char::is_whitespace)
}

/// Run the §1.4 checks. Issues carry no positions (see `LoadedFlow::semantic_checks`).
pub fn semantic_checks(spec: &FlowSpec, opts: &SemanticOptions<'_>) -> Vec<Issue> {
    let mut issues = Vec::new();

    // 1. enterprise archive drivers
    if opts.enterprise {
        let allow = py_sorted_list_repr(opts.archive_allowlist.iter().map(String::as_str));
        for (name, r) in &spec.resources {
            if r.kind == "archive" && !opts.archive_allowlist.contains(&r.driver) {
                issues.push(Issue::new(
                    "semantic:enterprise_archive_driver",
                    format!("resources.{name}.driver"),
                    format!(
                        "Enterprise mode requires archive driver in {allow}; got {}",
                        py_repr_str(&r.driver)
                    ),
                ));
            }
        }
    }

    // 2. duplicate job ids (sorted)
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for j in &spec.jobs {
        *counts.entry(j.id.as_str()).or_default() += 1;
    }
    let dup_jobs: BTreeSet<&str> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| *k)
        .collect();
    for id in dup_jobs {
        issues.push(Issue::new(
            "semantic:duplicate_job_id",
            "jobs",
            format!("Duplicate job id: {id}"),
        ));
    }

    // 3. duplicate step ids within each job (sorted)
    for (ji, job) in spec.jobs.iter().enumerate() {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for s in &job.steps {
            *counts.entry(s.id.as_str()).or_default() += 1;
        }
        let dups: BTreeSet<&str> = counts
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, _)| *k)
            .collect();
        for sid in dups {
            issues.push(Issue::new(
                "semantic:duplicate_step_id",
                format!("jobs[{ji}].steps"),
                format!("Duplicate step id in job '{}': {sid}", job.id),
            ));
        }
    }

    // 4. depends_on: existence, then order (last index of duplicate ids wins)
    let mut job_idx: HashMap<&str, usize> = HashMap::new();
    for (i, j) in spec.jobs.iter().enumerate() {
        job_idx.insert(j.id.as_str(), i);
    }
    for (ji, job) in spec.jobs.iter().enumerate() {
        let own = job_idx.get(job.id.as_str()).copied().unwrap_or(ji);
        for dep in &job.depends_on {
            match job_idx.get(dep.as_str()) {
                None => issues.push(Issue::new(
                    "semantic:depends_on_unknown_job",
                    format!("jobs[{ji}].depends_on"),
                    format!("Job '{}' depends_on unknown job: {dep}", job.id),
                )),
                Some(&di) if di > own => issues.push(Issue::new(
                    "semantic:depends_on_order",
                    format!("jobs[{ji}].depends_on"),
                    format!(
                        "Job '{}' depends_on '{dep}' which appears after it; reorder jobs",
                        job.id
                    ),
                )),
                Some(_) => {}
            }
        }
    }

    // 5. step types, with external.process checks interleaved per step
    let known: BTreeSet<&str> = opts.known_step_types.iter().map(String::as_str).collect();
    let loaded = py_sorted_list_repr(known.iter().copied());
    for (ji, job) in spec.jobs.iter().enumerate() {
        for (si, step) in job.steps.iter().enumerate() {
            if !known.contains(step.type_.as_str()) {
                issues.push(Issue::new(
                    "semantic:unknown_step_type",
                    format!("jobs[{ji}].steps[{si}].type"),
                    format!("Unknown step type: {}. Loaded: {loaded}", step.type_),
                ));
            }
            if step.type_ == "external.process" {
                for (suffix, code, msg) in (opts.external_process_check)(&step.inputs) {
                    let loc = if suffix.is_empty() {
                        format!("jobs[{ji}].steps[{si}].inputs")
                    } else {
                        format!("jobs[{ji}].steps[{si}].inputs.{suffix}")
                    };
                    issues.push(Issue::new(code, loc, msg));
                }
            }
        }
    }

    // 6. when expressions
    for (ji, job) in spec.jobs.iter().enumerate() {
        let Some(expr) = job.when.as_deref() else {
            continue;
        };
        if is_blank(expr) {
            continue;
        }
        if let Err(msg) = (opts.when_check)(expr) {
            issues.push(Issue::new(
                "semantic:invalid_when",
                format!("jobs[{ji}].when"),
                msg,
            ));
        }
    }

    issues
}
