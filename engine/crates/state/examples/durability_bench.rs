//! Mean time of one `step_started` + `step_finished` pair under each durability mode.
//!
//! ```text
//! cargo run --release -p aetherflow-state --example durability_bench -- [STEPS] [DIR] [process|power|both]
//! ```
//!
//! DIR (default: the system temp dir) should be on the disk whose fsync cost you want to
//! measure; a tmpfs makes both modes look alike.

use std::path::PathBuf;
use std::time::Instant;

use aetherflow_state::{Durability, JobKey, SqliteStore, StateStore, StepEnd, StepOutcome};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let steps: u32 = match args.next() {
        Some(n) => n.parse().map_err(|e| format!("STEPS `{n}`: {e}"))?,
        None => 500,
    };
    let base = args.next().map_or_else(std::env::temp_dir, PathBuf::from);
    let only = args.next().unwrap_or_else(|| "both".to_owned());
    let dir = tempfile::tempdir_in(&base)?;
    println!(
        "{steps} steps per mode, database under `{}`",
        dir.path().display()
    );
    for (name, durability) in [
        ("process", Durability::Process),
        ("power", Durability::Power),
    ] {
        if only != "both" && only != name {
            continue;
        }
        let store = SqliteStore::open(dir.path().join(format!("{name}.sqlite")), durability)?;
        let job = JobKey::new("bench", "run", "job");
        let outputs = json!({"rows": 42, "path": "artifacts/out.csv", "has_data": true});
        let started = Instant::now();
        for i in 0..steps {
            let step_id = format!("s{i}");
            let key = job.step(&step_id);
            store.step_started(&key, "db_extract", i64::from(i))?;
            store.step_finished(
                &key,
                &StepEnd {
                    status: StepOutcome::Success,
                    outputs: Some(outputs.clone()),
                    reason: None,
                    error: None,
                    ended_at_ms: i64::from(i),
                    duration_ms: Some(1),
                },
            )?;
        }
        let elapsed = started.elapsed();
        println!(
            "{name:>8}: mean {:>8.1} µs per step (started + finished), total {:.3} s",
            elapsed.as_secs_f64() * 1e6 / f64::from(steps.max(1)),
            elapsed.as_secs_f64()
        );
    }
    Ok(())
}
