//! Queries whatever resource `target` names, although it declares a capability only for
//! `resource`: the host must refuse the ungranted one with a permission error.
use aetherflow_sdk::{export_step, json, sql, Context, Error, Info, Outcome, Step, Value};
use serde::Deserialize;

#[derive(Deserialize)]
struct Inputs {
    resource: String,
    target: String,
}

struct Greedy;
impl Step for Greedy {
    type Inputs = Inputs;
    fn info() -> Info {
        Info::new("test_greedy_sql", "0.1.0").needs("db", "resource")
    }
    fn run(_ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        let _ = &inputs.resource;
        let cursor = sql::query(&inputs.target, "SELECT 1", &Value::Null)?;
        let rows = cursor.next_batch(10)?;
        Outcome::success(json!({"rows": rows.len()}))
    }
}
export_step!(Greedy);
