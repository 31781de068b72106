//! Runs a validated flow: jobs in YAML order, steps in sequence, every transition durable
//! in the state store before the next step starts.
//!
//! Differences from the Python reference, all deliberate (see docs/differences.md): a
//! failed job marks its dependants BLOCKED while independent jobs still run (the run still
//! exits 1); a resumed run restores the outputs of finished steps; `--flow-job` reads its
//! dependencies' status from the state store; a failed step is recorded FAILED with its
//! error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aetherflow_spec::{CleanupPolicy, FlowMeta, FlowSpec, JobSpec, OnNoData, StepSpec};
use aetherflow_state::{
    JobDetail, JobKey, JobStatus, RunStart, RunStatus, StateStore, StepEnd, StepOutcome,
};
use aetherflow_template::{self as template, Phase};
use serde_json::{json, Map, Value};

use crate::connectors::{Connectors, ResolvedResource};
use crate::observe::{Level, Observer};
use crate::policy::{check_workspace_overlap, grants_for, StepPolicy};
use crate::redact::Redactor;
use crate::sandbox::{
    fmt_bytes, output_size_message, step_seed, AttemptContext, Capabilities, LogLevel,
    Reproducibility, StepLogger, StepReturn,
};
use crate::settings::{EnvSnapshot, Settings};
use crate::steps::{Registry, StepImpl};

/// Everything a run needs that outlives it.
pub struct RunEnv<'a> {
    pub env: &'a EnvSnapshot,
    pub settings: &'a Settings,
    pub registry: &'a Registry,
    pub observer: &'a Arc<Observer>,
}

pub struct RunRequest<'a> {
    pub flow_path: &'a Path,
    pub spec: &'a FlowSpec,
    pub meta: &'a FlowMeta,
    pub run_id: Option<String>,
    pub flow_job: Option<String>,
}

#[derive(Debug)]
pub struct RunSummary {
    pub flow_id: String,
    pub run_id: String,
    pub failed_jobs: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    State(#[from] aetherflow_state::StateError),
    #[error("{0}")]
    Setup(String),
}

/// A job's visible result (`jobs.<id>` in templates and `when`).
#[derive(Debug, Clone)]
struct JobResult {
    status: JobStatus,
    outputs: Map<String, Value>,
    skip_reason: Option<String>,
    skip_trigger: Option<&'static str>,
}

impl JobResult {
    fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("status".into(), Value::from(self.status.as_str()));
        m.insert("outputs".into(), Value::Object(self.outputs.clone()));
        if let Some(r) = &self.skip_reason {
            m.insert("skip_reason".into(), Value::from(r.clone()));
        }
        if let Some(t) = self.skip_trigger {
            m.insert("skip_trigger".into(), Value::from(t));
        }
        Value::Object(m)
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// 12 lowercase hex characters, like the reference's `uuid4().hex[:12]`.
pub fn new_run_id() -> String {
    let mut b = [0u8; 6];
    if getrandom::fill(&mut b).is_err() {
        let n = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b.copy_from_slice(&n.to_le_bytes()[..6]);
    }
    crate::sandbox::hex(&b)
}

struct Runner<'a> {
    env: &'a RunEnv<'a>,
    store: Arc<dyn StateStore>,
    connectors: Arc<Connectors>,
    flow_id: String,
    run_id: String,
    work_root: PathBuf,
    meta: &'a FlowMeta,
    env_value: Value,
    cancel: Arc<AtomicBool>,
    /// Whether this is a resume (the state store may hold finished steps of this run).
    resuming: bool,
    /// Masks known secrets in what is written to the state store (events are masked by
    /// the observer itself).
    redactor: Arc<Redactor>,
    /// The flow file's directory (relative mount sources resolve against it).
    flow_dir: PathBuf,
    /// Start of the run's first attempt (ms since the epoch), from the state store: the
    /// wall clock of `determinism: strict` steps, the same on every resume.
    run_started_ms: i64,
}

/// Run the flow. Job failures are reported in the summary (and by the exit code); an
/// `Err` means the run could not be carried out at all.
pub fn run_flow(
    renv: &RunEnv<'_>,
    req: RunRequest<'_>,
    store: Arc<dyn StateStore>,
    resources: Vec<ResolvedResource>,
) -> Result<RunSummary, RunError> {
    let run_id = req.run_id.clone().unwrap_or_else(new_run_id);
    let flow_id = req.meta.id.clone();
    let obs = renv.observer;
    obs.set_flow(&flow_id);
    let work_root = std::path::absolute(&req.meta.workspace.root)
        .unwrap_or_else(|_| PathBuf::from(&req.meta.workspace.root));
    let runner = Runner {
        env: renv,
        store,
        connectors: Arc::new(Connectors::with_policy(
            resources,
            renv.settings.connector_cache,
            renv.settings.connector_cache_disabled,
        )),
        flow_id: flow_id.clone(),
        run_id: run_id.clone(),
        work_root,
        meta: req.meta,
        env_value: Value::Object(
            renv.env
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                .collect(),
        ),
        cancel: Arc::new(AtomicBool::new(false)),
        resuming: false,
        redactor: obs.redactor(),
        flow_dir: std::path::absolute(req.flow_path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from(".")),
        run_started_ms: 0,
    };

    let started = Instant::now();
    let yaml = req.flow_path.display().to_string();
    let run_record = runner.store.begin_run(&RunStart {
        flow_id: &flow_id,
        run_id: &run_id,
        flow_yaml: &yaml,
        started_at_ms: now_ms(),
    })?;
    // Only a resumed run (attempt > 1) can have finished steps to skip.
    let runner = Runner {
        resuming: run_record.attempt > 1,
        run_started_ms: run_record.started_at_ms,
        ..runner
    };
    obs.event(
        Level::Info,
        "run_start",
        &[
            ("flow_id", json!(flow_id)),
            ("run_id", json!(run_id)),
            ("yaml", json!(yaml)),
        ],
    );

    let mut results: BTreeMap<String, JobResult> = BTreeMap::new();
    let mut summaries: Vec<Value> = Vec::new();
    let mut status_counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut failed_jobs = 0usize;

    for job in &req.spec.jobs {
        if let Some(only) = &req.flow_job {
            if &job.id != only {
                continue;
            }
            // Dependencies ran in earlier processes: take their status from the store.
            for dep in &job.depends_on {
                if !results.contains_key(dep) {
                    if let Some(rec) = runner.store.job(&JobKey::new(&flow_id, &run_id, dep))? {
                        results.insert(
                            dep.clone(),
                            JobResult {
                                status: rec.status,
                                outputs: match rec.outputs {
                                    Some(Value::Object(m)) => m,
                                    _ => Map::new(),
                                },
                                skip_reason: rec.skip_reason,
                                skip_trigger: None,
                            },
                        );
                    }
                }
            }
        }
        let (result, summary) = runner.run_job(job, &results)?;
        *status_counts.entry(result.status.as_str()).or_default() += 1;
        if result.status == JobStatus::Failed {
            failed_jobs += 1;
        }
        if let Some(s) = summary {
            summaries.push(s);
        }
        results.insert(job.id.clone(), result);
    }

    let duration_ms = started.elapsed().as_millis() as u64;
    obs.event(
        Level::Info,
        "run_summary",
        &[
            ("flow_id", json!(flow_id)),
            ("run_id", json!(run_id)),
            ("duration_ms", json!(duration_ms)),
            ("status_counts", json!(status_counts)),
            ("jobs", Value::Array(summaries)),
        ],
    );
    let status = if failed_jobs > 0 {
        RunStatus::Failed
    } else {
        RunStatus::Success
    };
    runner.store.end_run(&flow_id, &run_id, status, now_ms())?;
    Ok(RunSummary {
        flow_id,
        run_id,
        failed_jobs,
    })
}

/// Why a job stopped early.
struct JobFailure(String);

/// A step end not yet committed: it is written in the same transaction as the next step's
/// start (one commit per step instead of two), or alone when nothing follows. Either way it
/// is durable before the next step runs. Its `step_end` event is emitted after the commit.
struct PendingEnd {
    step_id: String,
    end: StepEnd,
    event: Vec<(&'static str, Value)>,
    summary: Value,
}

impl<'a> Runner<'a> {
    /// Known secrets masked (for errors and reasons written to the state store).
    fn mask(&self, s: &str) -> String {
        self.redactor.redact_str(s).into_owned()
    }

    /// Known secrets masked in stored outputs. The key rule is not applied: stored outputs
    /// are restored on resume (and read by `--flow-job`), and a step may legitimately
    /// produce a `token` a later step uses; `runs show` applies the key rule on display.
    fn mask_outputs(&self, v: Value) -> Value {
        if self.redactor.is_empty() {
            v
        } else {
            self.redactor.redact_known(&v)
        }
    }

    fn ids(&self, job_id: &str) -> Vec<(&'static str, Value)> {
        vec![
            ("flow_id", json!(self.flow_id)),
            ("run_id", json!(self.run_id)),
            ("job_id", json!(job_id)),
        ]
    }

    fn jobs_value(results: &BTreeMap<String, JobResult>) -> Value {
        Value::Object(
            results
                .iter()
                .map(|(k, r)| (k.clone(), r.to_value()))
                .collect(),
        )
    }

    fn record_job(
        &self,
        job_id: &str,
        status: JobStatus,
        mut detail: JobDetail,
    ) -> Result<(), RunError> {
        detail.error = detail.error.map(|e| self.mask(&e));
        detail.skip_reason = detail.skip_reason.map(|r| self.mask(&r));
        detail.outputs = detail.outputs.map(|o| self.mask_outputs(o));
        self.store.set_job_status(
            &JobKey::new(&self.flow_id, &self.run_id, job_id),
            status,
            &detail,
        )?;
        Ok(())
    }

    fn run_job(
        &self,
        job: &JobSpec,
        results: &BTreeMap<String, JobResult>,
    ) -> Result<(JobResult, Option<Value>), RunError> {
        let obs = self.env.observer;
        // A dependency that did not succeed (failed, skipped, blocked, never ran) blocks.
        let blocked = job
            .depends_on
            .iter()
            .any(|d| results.get(d).map(|r| r.status) != Some(JobStatus::Success));
        if blocked {
            let mut f = self.ids(&job.id);
            f.push(("depends_on", json!(job.depends_on)));
            obs.message(
                Level::Warning,
                &format!("Job blocked job_id={}", job.id),
                &f,
            );
            self.record_job(&job.id, JobStatus::Blocked, JobDetail::default())?;
            return Ok((
                JobResult {
                    status: JobStatus::Blocked,
                    outputs: Map::new(),
                    skip_reason: None,
                    skip_trigger: None,
                },
                None,
            ));
        }
        if let Some(expr) = job.when.as_deref().filter(|w| !w.trim().is_empty()) {
            match template::when::evaluate(expr, &Self::jobs_value(results)) {
                Ok(true) => {}
                Ok(false) => {
                    obs.message(
                        Level::Info,
                        &format!("Job skipped job_id={} when=({expr})", job.id),
                        &self.ids(&job.id),
                    );
                    let reason = "condition=false".to_string();
                    self.record_job(
                        &job.id,
                        JobStatus::Skipped,
                        JobDetail {
                            skip_reason: Some(reason.clone()),
                            ..Default::default()
                        },
                    )?;
                    return Ok((
                        JobResult {
                            status: JobStatus::Skipped,
                            outputs: Map::new(),
                            skip_reason: Some(reason),
                            skip_trigger: None,
                        },
                        None,
                    ));
                }
                Err(e) => {
                    let msg = format!("Invalid job.when for job_id={}: {e}", job.id);
                    let mut f = self.ids(&job.id);
                    f.push(("error", json!(msg)));
                    obs.message(Level::Error, &format!("Job failed: {msg}"), &f);
                    self.record_job(
                        &job.id,
                        JobStatus::Failed,
                        JobDetail {
                            error: Some(msg),
                            ..Default::default()
                        },
                    )?;
                    return Ok((
                        JobResult {
                            status: JobStatus::Failed,
                            outputs: Map::new(),
                            skip_reason: None,
                            skip_trigger: None,
                        },
                        None,
                    ));
                }
            }
        }

        let started_ms = now_ms();
        let started = Instant::now();
        self.record_job(
            &job.id,
            JobStatus::Running,
            JobDetail {
                started_at_ms: Some(started_ms),
                ..Default::default()
            },
        )?;
        obs.event(Level::Info, "job_start", &self.ids(&job.id));

        let job_dir = self
            .work_root
            .join(&self.flow_id)
            .join(&job.id)
            .join(&self.run_id);
        let mut steps_summary = Vec::new();
        let outcome = self.run_steps(job, results, &job_dir, &mut steps_summary);
        let duration_ms = started.elapsed().as_millis() as i64;
        let policy = self.meta.workspace.cleanup_policy;

        let (result, error) = match outcome {
            Ok((outputs, skip)) => {
                let (status, skip_reason, skip_trigger) = match skip {
                    Some(reason) => {
                        obs.message(
                            Level::Info,
                            &format!("Job skipped (no data) reason={reason}"),
                            &self.ids(&job.id),
                        );
                        (JobStatus::Skipped, Some(reason), Some("step"))
                    }
                    None => {
                        obs.message(Level::Info, "Job success", &self.ids(&job.id));
                        (JobStatus::Success, None, None)
                    }
                };
                (
                    JobResult {
                        status,
                        outputs,
                        skip_reason,
                        skip_trigger,
                    },
                    None,
                )
            }
            Err(JobFailure(msg)) => {
                let mut f = self.ids(&job.id);
                f.push(("error", json!(msg)));
                obs.message(Level::Error, &format!("Job failed: {msg}"), &f);
                (
                    JobResult {
                        status: JobStatus::Failed,
                        outputs: Map::new(),
                        skip_reason: None,
                        skip_trigger: None,
                    },
                    Some(msg),
                )
            }
        };
        self.record_job(
            &job.id,
            result.status,
            JobDetail {
                started_at_ms: None,
                ended_at_ms: Some(now_ms()),
                duration_ms: Some(duration_ms),
                skip_reason: result.skip_reason.clone(),
                outputs: Some(Value::Object(result.outputs.clone())),
                error: error.clone(),
            },
        )?;
        let mut end = self.ids(&job.id);
        end.push(("status", json!(result.status.as_str())));
        end.push(("duration_ms", json!(duration_ms)));
        end.push(("skip_reason", json!(result.skip_reason)));
        if let Some(e) = &error {
            end.push(("error", json!(e)));
        }
        obs.event(Level::Info, "job_end", &end);

        let cleanup = match policy {
            CleanupPolicy::Always => true,
            CleanupPolicy::OnSuccess => result.status != JobStatus::Failed,
            CleanupPolicy::Never => false,
        };
        if cleanup && job_dir.exists() {
            let _ = std::fs::remove_dir_all(&job_dir);
            obs.message(Level::Info, "Job cleaned up", &self.ids(&job.id));
        }
        let summary = json!({
            "job_id": job.id,
            "status": result.status.as_str(),
            "duration_ms": duration_ms,
            "skip_reason": result.skip_reason,
            "steps": steps_summary,
        });
        Ok((result, Some(summary)))
    }

    /// The steps of a job. Returns the promoted job outputs and, if a step short-circuited
    /// the job (`on_no_data: skip_job`), the skip reason.
    fn run_steps(
        &self,
        job: &JobSpec,
        results: &BTreeMap<String, JobResult>,
        job_dir: &Path,
        summary: &mut Vec<Value>,
    ) -> Result<(Map<String, Value>, Option<String>), JobFailure> {
        let obs = self.env.observer;
        let layout = &self.meta.workspace.layout;
        let dir_of = |key: &str| job_dir.join(layout.get(key).map(String::as_str).unwrap_or(key));
        let (artifacts, scratch, manifests) =
            (dir_of("artifacts"), dir_of("scratch"), dir_of("manifests"));
        for d in [&artifacts, &scratch, &manifests] {
            std::fs::create_dir_all(d).map_err(|e| {
                JobFailure(format!(
                    "cannot create the job workspace `{}`: {e}",
                    d.display()
                ))
            })?;
        }

        let mut scope = Map::new();
        scope.insert("env".into(), self.env_value.clone());
        scope.insert("steps".into(), Value::Object(Map::new()));
        scope.insert("job".into(), json!({"id": job.id, "outputs": {}}));
        scope.insert("run_id".into(), json!(self.run_id));
        scope.insert("flow_id".into(), json!(self.flow_id));
        scope.insert("result".into(), json!({}));
        scope.insert("jobs".into(), Self::jobs_value(results));

        let mut job_outputs: Map<String, Value> = Map::new();
        let mut skip_rest: Option<String> = None;
        let jkey = JobKey::new(&self.flow_id, &self.run_id, &job.id);
        let mut pending: Option<PendingEnd> = None;

        for step in &job.steps {
            let skey = jkey.step(&step.id);
            if skip_rest.is_some() || self.resuming {
                self.flush_end(&jkey, &mut pending, summary)?;
            }
            if let Some(reason) = &skip_rest {
                obs.message(
                    Level::Info,
                    &format!(
                        "Step skipped (job short-circuit) step_id={} reason={reason}",
                        step.id
                    ),
                    &self.ids(&job.id),
                );
                let out = json!({"skipped": true, "reason": reason});
                self.store
                    .step_finished(
                        &skey,
                        &StepEnd {
                            status: StepOutcome::Skipped,
                            outputs: Some(self.mask_outputs(out.clone())),
                            reason: Some(self.mask(reason)),
                            error: None,
                            ended_at_ms: now_ms(),
                            duration_ms: None,
                        },
                    )
                    .map_err(|e| JobFailure(e.to_string()))?;
                set_step_output(&mut scope, &step.id, out);
                continue;
            }

            // Resume: a finished step is not run again; its outputs come back.
            let prev = if self.resuming {
                self.store
                    .step(&skey)
                    .map_err(|e| JobFailure(e.to_string()))?
            } else {
                None
            };
            if let Some(prev) = prev.filter(|p| p.status.is_done()) {
                obs.message(
                    Level::Info,
                    &format!(
                        "Step skip (resume) step_id={} prev={}",
                        step.id,
                        prev.status.as_str()
                    ),
                    &self.ids(&job.id),
                );
                let out = match prev.outputs {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                let skipped = prev.status == aetherflow_state::StepStatus::Skipped;
                self.promote(step, &out, &mut scope, &mut job_outputs)?;
                set_step_output(&mut scope, &step.id, Value::Object(out.clone()));
                if skipped && step.on_no_data == Some(OnNoData::SkipJob) {
                    skip_rest = Some(skip_reason_of(&out, prev.reason.as_deref()));
                }
                continue;
            }

            let mut inputs = match template::render(&step.inputs, &scope, Phase::Step) {
                Ok(v) => v,
                Err(e) => {
                    self.flush_end(&jkey, &mut pending, summary)?;
                    return Err(JobFailure(format!("step {}: {e}", step.id)));
                }
            };
            let policy = match StepPolicy::resolve(
                step,
                self.meta.determinism,
                self.env.settings,
                self.env.env,
                &self.flow_dir,
            ) {
                Ok(p) => p,
                Err(e) => {
                    self.flush_end(&jkey, &mut pending, summary)?;
                    return Err(JobFailure(e));
                }
            };
            // A step-level deadline also bounds an OS command, unless it sets its own.
            if let (Some(secs), Some(map)) = (step.timeout(), inputs.as_object_mut()) {
                if step.type_ == crate::steps::EXTERNAL_PROCESS
                    && !map.contains_key("timeout_seconds")
                {
                    map.insert("timeout_seconds".into(), json!(secs));
                }
            }

            let started_ms = now_ms();
            // The previous step's end and this step's start, in one commit.
            let prev = pending.take();
            let prev_key = prev.as_ref().map(|p| jkey.step(&p.step_id));
            let attempt = self
                .store
                .step_transition(
                    prev.as_ref()
                        .zip(prev_key.as_ref())
                        .map(|(p, k)| (k, &p.end)),
                    Some((&skey, &step.type_, started_ms)),
                )
                .map_err(|e| JobFailure(e.to_string()))?
                .unwrap_or(1);
            if let Some(p) = prev {
                obs.event(Level::Info, "step_end", &p.event);
                summary.push(p.summary);
            }
            let mut f = self.ids(&job.id);
            f.push(("step_id", json!(step.id)));
            f.push(("step_type", json!(step.type_)));
            obs.event(Level::Info, "step_start", &f);
            let t0 = Instant::now();

            let ctx = AttemptContext {
                flow_id: self.flow_id.clone(),
                run_id: self.run_id.clone(),
                job_id: job.id.clone(),
                step_id: step.id.clone(),
                step_type: step.type_.clone(),
                attempt,
                workspace: job_dir.to_path_buf(),
                artifacts_dir: artifacts.clone(),
                scratch_dir: scratch.clone(),
                manifests_dir: manifests.clone(),
            };
            let outcome = self.execute(
                &step.type_,
                step.type_sha256.as_deref(),
                &ctx,
                &inputs,
                &policy,
                0,
            );
            let duration_ms = t0.elapsed().as_millis() as i64;

            let ret = match outcome {
                Ok(r) => r,
                Err(msg) => {
                    self.store
                        .step_finished(
                            &skey,
                            &StepEnd {
                                status: StepOutcome::Failed,
                                outputs: None,
                                reason: None,
                                error: Some(self.mask(&msg)),
                                ended_at_ms: now_ms(),
                                duration_ms: Some(duration_ms),
                            },
                        )
                        .map_err(|e| JobFailure(e.to_string()))?;
                    let mut f = f.clone();
                    f.push(("status", json!("FAILED")));
                    f.push(("duration_ms", json!(duration_ms)));
                    f.push(("error", json!(msg)));
                    obs.event(Level::Error, "step_end", &f);
                    summary.push(json!({"step_id": step.id, "step_type": step.type_, "status": "FAILED", "duration_ms": duration_ms}));
                    return Err(JobFailure(msg));
                }
            };
            let mut out = ret.outputs;
            if let Some(reason) = ret.reason.as_ref().filter(|r| !r.is_empty()) {
                out.entry("reason")
                    .or_insert_with(|| Value::from(reason.clone()));
            }
            let status = if ret.skipped {
                StepOutcome::Skipped
            } else {
                StepOutcome::Success
            };
            let mut f = f;
            f.push(("status", json!(status.as_str())));
            f.push(("duration_ms", json!(duration_ms)));
            if let Some(fuel) = ret.fuel_used {
                f.push(("fuel_used", json!(fuel)));
            }
            pending = Some(PendingEnd {
                step_id: step.id.clone(),
                end: StepEnd {
                    status,
                    outputs: Some(self.mask_outputs(Value::Object(out.clone()))),
                    reason: ret.reason.as_deref().map(|r| self.mask(r)),
                    error: None,
                    ended_at_ms: now_ms(),
                    duration_ms: Some(duration_ms),
                },
                event: f,
                summary: json!({"step_id": step.id, "step_type": step.type_, "status": status.as_str(), "duration_ms": duration_ms}),
            });
            set_step_output(&mut scope, &step.id, Value::Object(out.clone()));
            if let Err(e) = self.promote(step, &out, &mut scope, &mut job_outputs) {
                // The step itself succeeded: record that before failing the job.
                self.flush_end(&jkey, &mut pending, summary)?;
                return Err(e);
            }
            if ret.skipped && step.on_no_data == Some(OnNoData::SkipJob) {
                self.flush_end(&jkey, &mut pending, summary)?;
                let reason = skip_reason_of(&out, ret.reason.as_deref());
                obs.message(
                    Level::Info,
                    &format!(
                        "Job short-circuit after step_id={} reason={reason}",
                        step.id
                    ),
                    &self.ids(&job.id),
                );
                skip_rest = Some(reason);
            }
        }
        self.flush_end(&jkey, &mut pending, summary)?;
        Ok((job_outputs, skip_rest))
    }

    /// Commit a pending step end on its own (nothing follows it in this job) and emit its
    /// `step_end` event.
    fn flush_end(
        &self,
        jkey: &JobKey<'_>,
        pending: &mut Option<PendingEnd>,
        summary: &mut Vec<Value>,
    ) -> Result<(), JobFailure> {
        let Some(p) = pending.take() else {
            return Ok(());
        };
        self.store
            .step_finished(&jkey.step(&p.step_id), &p.end)
            .map_err(|e| JobFailure(e.to_string()))?;
        self.env.observer.event(Level::Info, "step_end", &p.event);
        summary.push(p.summary);
        Ok(())
    }

    /// Render a step's `outputs:` with `result` = its outputs and merge into job outputs.
    fn promote(
        &self,
        step: &StepSpec,
        out: &Map<String, Value>,
        scope: &mut Map<String, Value>,
        job_outputs: &mut Map<String, Value>,
    ) -> Result<(), JobFailure> {
        let has_outputs = step.outputs.as_object().is_some_and(|m| !m.is_empty());
        if !has_outputs {
            return Ok(());
        }
        scope.insert("result".into(), Value::Object(out.clone()));
        let rendered = template::render(&step.outputs, scope, Phase::Step);
        scope.insert("result".into(), json!({}));
        let rendered =
            rendered.map_err(|e| JobFailure(format!("step {} outputs: {e}", step.id)))?;
        if let Value::Object(m) = rendered {
            job_outputs.extend(m);
        }
        if let Some(Value::Object(job)) = scope.get_mut("job") {
            job.insert("outputs".into(), Value::Object(job_outputs.clone()));
        }
        Ok(())
    }

    /// One attempt of a step of any kind (`pin`: its `@sha256:`; the registry applies the
    /// flow's `steps:` pins and the mode). `depth` guards against `with_lock` nesting loops.
    fn execute(
        &self,
        step_type: &str,
        pin: Option<&str>,
        ctx: &AttemptContext,
        inputs: &Value,
        policy: &StepPolicy,
        depth: usize,
    ) -> Result<StepReturn, String> {
        let imp = self
            .env
            .registry
            .resolve(step_type, pin)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "Unknown step type: {step_type}. Loaded: [{}]",
                    self.env
                        .registry
                        .names()
                        .iter()
                        .map(|n| format!("'{n}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        match imp {
            StepImpl::Component(step) => {
                if let Some(limit) = policy.max_component_bytes.filter(|l| step.size > *l) {
                    return Err(format!(
                        "step {}: its component `{}` is {}, over the limit of {} (limits.max_component_bytes)",
                        ctx.step_id,
                        step.origin,
                        fmt_bytes(step.size),
                        fmt_bytes(limit)
                    ));
                }
                let job_dir = ctx.workspace.parent().unwrap_or(&ctx.workspace);
                check_workspace_overlap(&policy.mounts, job_dir, &ctx.step_id)?;
                let grants = grants_for(&step.info.capabilities, inputs, &policy.extra_grants);
                let repro = Reproducibility {
                    seed: step_seed(&ctx.flow_id, &ctx.run_id, &ctx.job_id, &ctx.step_id),
                    fixed_wall_clock: policy
                        .strict
                        .then(|| Duration::from_millis(self.run_started_ms.max(0) as u64)),
                };
                let logger = self.step_logger(ctx);
                self.env
                    .registry
                    .sandbox()
                    .run(
                        &step,
                        ctx,
                        inputs,
                        policy.limits,
                        &repro,
                        Capabilities {
                            grants,
                            connectors: self.connectors.clone(),
                            mounts: policy.mounts.clone(),
                            logger,
                        },
                    )
                    .map_err(|f| f.message)
            }
            StepImpl::ExternalProcess => {
                let ret = crate::native::external_process(
                    self.env,
                    &self.work_root,
                    ctx,
                    inputs,
                    &self.cancel,
                );
                // The command may have moved the workspace: the sandbox opens it anew.
                self.env.registry.sandbox().forget_workspace();
                let ret = ret?;
                let size = serde_json::to_string(&ret.outputs)
                    .map(|s| s.len() as u64)
                    .unwrap_or(0);
                if size > policy.limits.max_output_bytes {
                    return Err(output_size_message(
                        &ctx.step_id,
                        size,
                        policy.limits.max_output_bytes,
                        policy.limits.sources.max_output_bytes,
                    ));
                }
                Ok(ret)
            }
            StepImpl::WithLock => {
                if depth > 8 {
                    return Err("with_lock nested more than 8 levels deep".into());
                }
                crate::native::with_lock(
                    self.store.as_ref(),
                    &self.run_id,
                    ctx,
                    inputs,
                    |inner_type, inner_pin, inner_ctx, inner_inputs| {
                        self.execute(
                            inner_type,
                            inner_pin,
                            inner_ctx,
                            inner_inputs,
                            policy,
                            depth + 1,
                        )
                    },
                )
            }
        }
    }

    fn step_logger(&self, ctx: &AttemptContext) -> StepLogger {
        let ids = vec![
            ("flow_id", json!(ctx.flow_id)),
            ("run_id", json!(ctx.run_id)),
            ("job_id", json!(ctx.job_id)),
            ("step_id", json!(ctx.step_id)),
        ];
        let sink = self.env.observer.clone();
        Arc::new(
            move |level: LogLevel, message: &str, fields: Map<String, Value>| {
                let lvl = match level {
                    LogLevel::Trace | LogLevel::Debug => Level::Debug,
                    LogLevel::Info => Level::Info,
                    LogLevel::Warn => Level::Warning,
                    LogLevel::Error => Level::Error,
                };
                let mut f = ids.clone();
                f.push(("message", json!(message)));
                if !fields.is_empty() {
                    f.push(("fields", Value::Object(fields)));
                }
                sink.event(lvl, "step_log", &f);
            },
        )
    }
}

fn set_step_output(scope: &mut Map<String, Value>, step_id: &str, out: Value) {
    if let Some(Value::Object(steps)) = scope.get_mut("steps") {
        steps.insert(step_id.to_string(), out);
    }
}

fn skip_reason_of(out: &Map<String, Value>, reason: Option<&str>) -> String {
    out.get("reason")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or(reason.filter(|s| !s.is_empty()))
        .unwrap_or("step requested skip_job")
        .to_string()
}
