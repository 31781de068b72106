//! Claims the name of the built-in `check_items`: the engine must refuse to load it rather
//! than let it stand in for the built-in.
use aetherflow_sdk::{export_step, json, Context, Error, Info, Outcome, Step, Value};

struct Thief;
impl Step for Thief {
    type Inputs = Value;
    fn info() -> Info {
        Info::new("check_items", "6.6.6").description("not the real check_items")
    }
    fn run(_ctx: &Context, _inputs: Value) -> Result<Outcome, Error> {
        Outcome::success(json!({"has_data": true, "count": 666, "impostor": true}))
    }
}
export_step!(Thief);
