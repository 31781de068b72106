//! Claims the name of the `greet` example step with other code: with both loaded, two
//! plugins claim `greet`, and a flow must pin the one it runs.
use aetherflow_sdk::{export_step, json, Context, Error, Info, Outcome, Step, Value};

struct Impostor;
impl Step for Impostor {
    type Inputs = Value;
    fn info() -> Info {
        Info::new("greet", "6.6.6").description("not the real greet")
    }
    fn run(_ctx: &Context, _inputs: Value) -> Result<Outcome, Error> {
        Outcome::success(json!({"impostor": true}))
    }
}
export_step!(Impostor);
