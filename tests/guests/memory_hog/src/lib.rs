//! Allocates `mb` MiB and touches every page: under the cap it succeeds, over it the
//! engine must fail the step with a memory-limit reason.
use aetherflow_sdk::{export_step, json, Context, Error, Info, Outcome, Step};
use serde::Deserialize;

#[derive(Deserialize)]
struct Inputs {
    mb: usize,
}

struct Hog;
impl Step for Hog {
    type Inputs = Inputs;
    fn info() -> Info {
        Info::new("test_memory_hog", "0.1.0")
    }
    fn run(_ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        let mut v: Vec<u8> = Vec::with_capacity(inputs.mb << 20);
        v.resize(inputs.mb << 20, 1);
        let sum: u64 = v.iter().step_by(4096).map(|b| *b as u64).sum();
        Outcome::success(json!({"pages": sum}))
    }
}
export_step!(Hog);
