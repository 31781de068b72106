//! Panics (a trap) unless `inputs.ok` is true: the engine must fail the step cleanly.
use aetherflow_sdk::{export_step, json, Context, Error, Info, Outcome, Step};
use serde::Deserialize;

#[derive(Deserialize)]
struct Inputs {
    #[serde(default)]
    ok: bool,
}

struct Trap;
impl Step for Trap {
    type Inputs = Inputs;
    fn info() -> Info {
        Info::new("test_trap", "0.1.0")
    }
    fn run(_ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        if !inputs.ok {
            panic!("deliberate panic from the test guest");
        }
        Outcome::success(json!({"ok": true}))
    }
}
export_step!(Trap);
