//! Reads the wall clock, the monotonic clock and both WASI random interfaces twice each,
//! and returns what it saw, so that tests can compare runs. With `fail_first_attempt`, the
//! first attempt fails with the readings in its message (a resume reads them again).
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use aetherflow_sdk::{export_step, json, Context, Error, Info, Outcome, Step, Value};

// `wasi:random/insecure`, which has no std or getrandom front end. The type information
// wasm-component-ld needs comes from std's own WASI imports (as getrandom does it).
#[link(wasm_import_module = "wasi:random/insecure@0.2.0")]
unsafe extern "C" {
    #[link_name = "get-insecure-random-u64"]
    safe fn get_insecure_random_u64() -> u64;
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn secure() -> Result<String, Error> {
    getrandom::u64()
        .map(|v| format!("{v:016x}"))
        .map_err(|e| Error::internal(format!("getrandom: {e}")))
}

struct Entropy;
impl Step for Entropy {
    type Inputs = Value;
    fn info() -> Info {
        Info::new("test_entropy", "0.1.0")
    }
    fn run(ctx: &Context, inputs: Value) -> Result<Outcome, Error> {
        let t0 = Instant::now();
        let t1 = Instant::now();
        let readings = json!({
            "wall_ns": [wall_ns(), wall_ns()],
            "monotonic_delta_ns": t1.duration_since(t0).as_nanos() as u64,
            "secure": [secure()?, secure()?],
            "insecure": [
                format!("{:016x}", get_insecure_random_u64()),
                format!("{:016x}", get_insecure_random_u64()),
            ],
            "hash_seed": format!("{:016x}", RandomState::new().hash_one("aetherflow")),
        });
        if inputs["fail_first_attempt"] == json!(true) && ctx.attempt == 1 {
            return Err(Error::internal(format!("first attempt saw {readings}")));
        }
        Outcome::success(readings)
    }
}
export_step!(Entropy);
