//! `aetherflow runs list` / `aetherflow runs show RUN_ID`: read-only views of the state
//! store. The JSON shapes are documented (and kept stable) in docs/state-and-runs.md.

use std::path::{Path, PathBuf};

use aetherflow_state::{
    Durability, JobRecord, RunDetail, RunRecord, SqliteStore, StateError, StateStore, StepRecord,
};
use aetherflow_template::{self as template, Phase};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::{EXIT_FAILED, EXIT_INVALID, EXIT_OK};
use crate::connectors::ResolvedResource;
use crate::output;
use crate::redact::Redactor;

/// The store used when neither `--state` nor `--flow-yaml` is given (the default of
/// `flow.state.path`).
pub const DEFAULT_STATE_PATH: &str = "/tmp/state/aetherflow.sqlite";

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List recorded runs, newest first.
    List(ListArgs),
    /// Show one run: its jobs and their steps, with statuses, timings, outputs and errors.
    Show(ShowArgs),
}

/// Where the state store is.
#[derive(Debug, Args)]
pub struct StoreArg {
    /// The state store (SQLite file) to read.
    #[arg(long = "state", value_name = "PATH", conflicts_with = "flow_yaml")]
    pub state: Option<PathBuf>,
    /// Read the store named by this flow's `flow.state.path` (rendered with env).
    #[arg(long = "flow-yaml", value_name = "FLOW")]
    pub flow_yaml: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only runs of this flow id.
    #[arg(long = "flow", value_name = "FLOW_ID")]
    pub flow: Option<String>,
    /// At most this many runs (newest first).
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    #[command(flatten)]
    pub store: StoreArg,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run id.
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,
    /// The flow id; needed when several flows in the store used this run id.
    #[arg(long = "flow", value_name = "FLOW_ID")]
    pub flow: Option<String>,
    #[command(flatten)]
    pub store: StoreArg,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn execute(cmd: RunsCommand) -> i32 {
    match cmd {
        RunsCommand::List(a) => list(a),
        RunsCommand::Show(a) => show(a),
    }
}

/// The resolved store location and, with `--flow-yaml`, the flow's rendered resources
/// (for redaction; empty when they cannot be rendered).
struct Located {
    path: PathBuf,
    resources: Vec<ResolvedResource>,
}

fn locate(arg: &StoreArg) -> Result<Located, String> {
    if let Some(p) = &arg.state {
        return Ok(Located {
            path: p.clone(),
            resources: Vec::new(),
        });
    }
    let Some(flow_path) = &arg.flow_yaml else {
        return Ok(Located {
            path: PathBuf::from(DEFAULT_STATE_PATH),
            resources: Vec::new(),
        });
    };
    let loaded = aetherflow_spec::load_flow(flow_path).map_err(|e| e.to_string())?;
    let env = crate::settings::process_env();
    let scope = crate::settings::env_scope(&env);
    let flow_raw = loaded.raw.get("flow").cloned().unwrap_or(Value::Null);
    let meta = template::render(&flow_raw, &scope, Phase::FlowMeta)
        .map_err(|e| format!("{}: flow: {e}", flow_path.display()))
        .and_then(|v| {
            aetherflow_spec::flow_meta_from_value(&v).map_err(|issues| {
                let list: Vec<String> = issues
                    .iter()
                    .map(|i| format!("{}: {} - {}", i.loc, i.code, i.msg))
                    .collect();
                format!("{}: {}", flow_path.display(), list.join("; "))
            })
        })?;
    let resources = loaded
        .spec
        .as_ref()
        .map(|spec| {
            spec.resources
                .iter()
                .filter_map(|(name, r)| {
                    let render = |v: &Value| match template::render(v, &scope, Phase::Resource) {
                        Ok(Value::Object(m)) => Some(m),
                        _ => None,
                    };
                    Some(ResolvedResource {
                        name: name.clone(),
                        kind: r.kind.clone(),
                        driver: r.driver.clone(),
                        config: render(&r.config)?,
                        options: render(&r.options).unwrap_or_default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Located {
        path: PathBuf::from(&meta.state.path),
        resources,
    })
}

/// Opens an existing store; never creates one. The error is reported; the exit code returned.
fn open(path: &Path) -> Result<SqliteStore, i32> {
    if !path.exists() {
        output::error(format!(
            "state store `{}` does not exist (pass --state PATH or --flow-yaml FLOW; \
             the default is {DEFAULT_STATE_PATH})",
            path.display()
        ));
        return Err(EXIT_INVALID);
    }
    if !path.is_file() {
        output::error(format!("state store `{}` is not a file", path.display()));
        return Err(EXIT_INVALID);
    }
    SqliteStore::open(path, Durability::Process).map_err(|e| {
        output::error(e);
        EXIT_FAILED
    })
}

fn locate_and_open(arg: &StoreArg) -> Result<(Located, SqliteStore), i32> {
    let loc = locate(arg).map_err(|e| {
        output::error(e);
        EXIT_INVALID
    })?;
    let store = open(&loc.path)?;
    Ok((loc, store))
}

fn list(args: ListArgs) -> i32 {
    let (loc, store) = match locate_and_open(&args.store) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let runs = match store.list_runs(args.flow.as_deref(), args.limit as usize) {
        Ok(r) => r,
        Err(e) => {
            output::error(e);
            return EXIT_FAILED;
        }
    };
    if args.json {
        output::json(&json!({"runs": runs.iter().map(run_json).collect::<Vec<_>>()}));
    } else if runs.is_empty() {
        let of = args
            .flow
            .as_deref()
            .map(|f| format!(" of flow `{f}`"))
            .unwrap_or_default();
        output::result(format!("no runs{of} in {}", loc.path.display()));
    } else {
        for r in &runs {
            output::result(run_line(r));
        }
    }
    EXIT_OK
}

fn show(args: ShowArgs) -> i32 {
    let (loc, store) = match locate_and_open(&args.store) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let detail = match store.run_detail(args.flow.as_deref(), &args.run_id) {
        Ok(Some(d)) => d,
        Ok(None) => {
            let of = args
                .flow
                .as_deref()
                .map(|f| format!(" of flow `{f}`"))
                .unwrap_or_default();
            output::error(format!(
                "no run `{}`{of} in state store `{}` (see `aetherflow runs list`)",
                args.run_id,
                loc.path.display()
            ));
            return EXIT_INVALID;
        }
        Err(StateError::AmbiguousRun { run_id, flows, .. }) => {
            output::error(format!(
                "run id `{run_id}` exists in several flows ({flows}) in state store `{}`; \
                 pass --flow FLOW_ID",
                loc.path.display()
            ));
            return EXIT_INVALID;
        }
        Err(e) => {
            output::error(e);
            return EXIT_FAILED;
        }
    };
    let redactor = Redactor::from_resources(&loc.resources);
    if args.json {
        output::json(&detail_json(&detail, &redactor));
    } else {
        for line in detail_lines(&detail, &redactor) {
            output::result(line);
        }
    }
    EXIT_OK
}

/// Duration of the latest attempt of a run (`None` while it runs).
fn run_duration(r: &RunRecord) -> Option<i64> {
    r.ended_at_ms.map(|e| (e - r.resumed_at_ms).max(0))
}

/// The `run` object of both JSON shapes.
fn run_json(r: &RunRecord) -> Value {
    json!({
        "flow_id": r.flow_id,
        "run_id": r.run_id,
        "status": r.status.as_str(),
        "attempt": r.attempt,
        "started_at_ms": r.started_at_ms,
        "resumed_at_ms": r.resumed_at_ms,
        "ended_at_ms": r.ended_at_ms,
        "duration_ms": run_duration(r),
    })
}

fn redact_opt(red: &Redactor, s: &Option<String>) -> Value {
    match s {
        Some(s) => Value::from(red.redact_str(s).into_owned()),
        None => Value::Null,
    }
}

fn steps_of<'d>(detail: &'d RunDetail, job_id: &str) -> impl Iterator<Item = &'d StepRecord> {
    let job_id = job_id.to_string();
    detail.steps.iter().filter(move |s| s.job_id == job_id)
}

fn detail_json(detail: &RunDetail, red: &Redactor) -> Value {
    let mut run = run_json(&detail.run);
    if let Value::Object(m) = &mut run {
        m.insert(
            "flow_yaml".into(),
            Value::from(red.redact_str(&detail.run.flow_yaml).into_owned()),
        );
    }
    let jobs: Vec<Value> = detail
        .jobs
        .iter()
        .map(|j| job_json(j, steps_of(detail, &j.job_id), red))
        .collect();
    json!({"run": run, "jobs": jobs})
}

fn job_json<'d>(
    j: &JobRecord,
    steps: impl Iterator<Item = &'d StepRecord>,
    red: &Redactor,
) -> Value {
    let steps: Vec<Value> = steps
        .map(|s| {
            json!({
                "step_id": s.step_id,
                "step_type": s.step_type,
                "status": s.status.as_str(),
                "attempts": s.attempts,
                "started_at_ms": s.started_at_ms,
                "ended_at_ms": s.ended_at_ms,
                "duration_ms": s.duration_ms,
                "outputs": s.outputs.as_ref().map(|o| red.redact_value(o)),
                "reason": redact_opt(red, &s.reason),
                "error": redact_opt(red, &s.error),
            })
        })
        .collect();
    json!({
        "job_id": j.job_id,
        "status": j.status.as_str(),
        "started_at_ms": j.started_at_ms,
        "ended_at_ms": j.ended_at_ms,
        "duration_ms": j.duration_ms,
        "skip_reason": redact_opt(red, &j.skip_reason),
        "error": redact_opt(red, &j.error),
        "outputs": j.outputs.as_ref().map(|o| red.redact_value(o)),
        "steps": steps,
    })
}

fn run_line(r: &RunRecord) -> String {
    format!(
        "{}  flow={}  {}  attempt={}  started={}  duration={}",
        r.run_id,
        r.flow_id,
        r.status.as_str(),
        r.attempt,
        iso_utc(r.started_at_ms),
        fmt_duration(run_duration(r)),
    )
}

fn detail_lines(detail: &RunDetail, red: &Redactor) -> Vec<String> {
    let r = &detail.run;
    let mut lines = vec![format!(
        "run {}  flow={}  {}  attempt={}  started={}  duration={}",
        r.run_id,
        r.flow_id,
        r.status.as_str(),
        r.attempt,
        iso_utc(r.started_at_ms),
        fmt_duration(run_duration(r)),
    )];
    for j in &detail.jobs {
        let mut line = format!(
            "  job {}  {}  duration={}",
            j.job_id,
            j.status.as_str(),
            fmt_duration(j.duration_ms)
        );
        if let Some(s) = &j.skip_reason {
            line.push_str(&format!("  skip_reason={}", red.redact_str(s)));
        }
        if let Some(e) = &j.error {
            line.push_str(&format!("  error: {}", one_line(&red.redact_str(e))));
        }
        lines.push(line);
        for s in steps_of(detail, &j.job_id) {
            let mut line = format!(
                "    step {}  {}  attempts={}  duration={}",
                s.step_id,
                s.status.as_str(),
                s.attempts,
                fmt_duration(s.duration_ms)
            );
            if let Some(o) = &s.outputs {
                line.push_str(&format!("  outputs={}", red.redact_value(o)));
            }
            if let Some(reason) = &s.reason {
                line.push_str(&format!("  reason={}", one_line(&red.redact_str(reason))));
            }
            if let Some(e) = &s.error {
                line.push_str(&format!("  error: {}", one_line(&red.redact_str(e))));
            }
            lines.push(line);
        }
    }
    lines
}

/// Trailing whitespace dropped and newlines escaped, so every job/step stays on one line.
fn one_line(s: &str) -> String {
    s.trim_end()
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// `123ms`, `1.234s`, `2m03s`, `1h02m03s`; `-` when unknown (still running).
fn fmt_duration(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "-".into();
    };
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    } else {
        let s = ms / 1000;
        if s < 3600 {
            format!("{}m{:02}s", s / 60, s % 60)
        } else {
            format!("{}h{:02}m{:02}s", s / 3600, (s % 3600) / 60, s % 60)
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC) of milliseconds since the epoch.
fn iso_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = crate::observe::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_timestamps() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_utc(1_795_512_157_123), "2026-11-24T09:22:37.123Z");
    }

    #[test]
    fn durations() {
        assert_eq!(fmt_duration(None), "-");
        assert_eq!(fmt_duration(Some(12)), "12ms");
        assert_eq!(fmt_duration(Some(1234)), "1.234s");
        assert_eq!(fmt_duration(Some(123_000)), "2m03s");
        assert_eq!(fmt_duration(Some(3_723_000)), "1h02m03s");
    }
}
