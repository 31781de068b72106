//! The two native steps. A process cannot run inside a wasm sandbox, and a lock guards
//! other steps, so both live in the host: `external.process` is the explicit, logged escape
//! hatch; `with_lock` wraps another step in a TTL lease from the state store.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aetherflow_process::{EventLevel, ProcessContext, ProcessStatus};
use aetherflow_state::StateStore;
use serde_json::{Map, Value};

use crate::observe::Level;
use crate::runner::RunEnv;
use crate::sandbox::{AttemptContext, StepReturn};

pub fn external_process(
    renv: &RunEnv<'_>,
    work_root: &Path,
    ctx: &AttemptContext,
    inputs: &Value,
    cancel: &Arc<AtomicBool>,
) -> Result<StepReturn, String> {
    let pctx = ProcessContext {
        flow_id: ctx.flow_id.clone(),
        run_id: ctx.run_id.clone(),
        job_id: ctx.job_id.clone(),
        step_id: ctx.step_id.clone(),
        step_type: ctx.step_type.clone(),
        env: renv.env.clone(),
        artifacts_dir: ctx.artifacts_dir.clone(),
        workspace_root: Some(work_root.to_path_buf()),
        cancel: cancel.clone(),
    };
    let obs = renv.observer;
    let mut on_event = |ev: aetherflow_process::ProcessEvent| {
        let level = match ev.level() {
            EventLevel::Info => Level::Info,
            EventLevel::Warning => Level::Warning,
            EventLevel::Error => Level::Error,
        };
        let mut fields: Vec<(&str, Value)> = vec![
            ("flow_id", Value::from(ctx.flow_id.clone())),
            ("run_id", Value::from(ctx.run_id.clone())),
        ];
        let extra = ev.fields();
        for (k, v) in &extra {
            fields.push((k.as_str(), v.clone()));
        }
        obs.event(level, ev.name(), &fields);
    };
    let outcome =
        aetherflow_process::run(inputs, &pctx, &mut on_event).map_err(|e| e.to_string())?;
    Ok(StepReturn {
        skipped: outcome.status == ProcessStatus::Skipped,
        outputs: outcome.outputs,
        reason: outcome.reason,
        fuel_used: None,
    })
}

/// `with_lock`: take the lease `lock_key` (owner = run id) for `ttl_seconds` (600), run the
/// embedded step, release the lease whatever happened. While the inner step runs the lease
/// is renewed every third of its TTL, so a long step keeps it and a crashed process loses it
/// once the TTL passes.
pub fn with_lock(
    store: &dyn StateStore,
    run_id: &str,
    ctx: &AttemptContext,
    inputs: &Value,
    run_inner: impl FnOnce(&str, Option<&str>, &AttemptContext, &Value) -> Result<StepReturn, String>,
) -> Result<StepReturn, String> {
    if let Some(message) =
        crate::sandbox::missing_inputs(&ctx.step_id, ["lock_key", "step"], inputs)
    {
        return Err(message);
    }
    let key = match &inputs["lock_key"] {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(format!(
                "with_lock lock_key must be a non-empty string, got {other}"
            ))
        }
    };
    let ttl = match inputs.get("ttl_seconds") {
        None | Some(Value::Null) => 600,
        Some(v) => match v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        {
            Some(t) => t,
            None => {
                return Err(format!(
                    "with_lock ttl_seconds must be a whole number of seconds, got {v}"
                ))
            }
        },
    };
    let Some(inner) = inputs["step"].as_object() else {
        return Err(
            "with_lock inputs.step must be a mapping with `type`, optional `id` and `inputs`"
                .into(),
        );
    };
    let Some(inner_type) = inner.get("type").and_then(Value::as_str) else {
        return Err("with_lock inputs.step.type is required".into());
    };
    let (inner_type, inner_pin) = aetherflow_spec::split_type_pin(inner_type)
        .map_err(|e| format!("with_lock inputs.step.type: {e}"))?;
    let inner_id = inner
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}_inner", ctx.step_id));
    let inner_inputs = match inner.get("inputs") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v) => v.clone(),
    };

    let lease = store
        .try_acquire_lock(&key, run_id, ttl)
        .map_err(|e| e.to_string())?;
    if lease.is_none() {
        return Err(format!("Lock not acquired: {key}"));
    }
    let inner_ctx = AttemptContext {
        step_id: inner_id,
        step_type: inner_type.to_string(),
        ..ctx.clone()
    };
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        if ttl > 0 {
            s.spawn(|| {
                let every = Duration::from_millis((ttl * 1000 / 3).max(50));
                let mut waited = Duration::ZERO;
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    waited += Duration::from_millis(50);
                    if waited >= every {
                        waited = Duration::ZERO;
                        let _ = store.renew_lock(&key, run_id, ttl);
                    }
                }
            });
        }
        let r = run_inner(inner_type, inner_pin.as_deref(), &inner_ctx, &inner_inputs);
        done.store(true, Ordering::Relaxed);
        r
    });
    let _ = store.release_lock(&key, run_id);
    result
}
