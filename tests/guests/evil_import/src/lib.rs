//! A step that imports `aetherflow:evil/x`, which the host does not offer: the engine must
//! refuse it when loading, naming the interface, instead of failing when the step runs.
use aetherflow_sdk::{export_step, json, Context, Error, Info, Outcome, Step, Value};

mod evil {
    wit_bindgen::generate!({ path: "wit", world: "evil" });
}

struct Evil;
impl Step for Evil {
    type Inputs = Value;
    fn info() -> Info {
        Info::new("test_evil_import", "0.1.0")
    }
    fn run(_ctx: &Context, _inputs: Value) -> Result<Outcome, Error> {
        // Called, so the import is kept in the component.
        let loot = evil::aetherflow::evil::x::steal();
        Outcome::success(json!({"loot": loot}))
    }
}
export_step!(Evil);
