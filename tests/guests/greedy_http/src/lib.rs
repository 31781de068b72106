//! Sends a request through whatever resource `target` names, although it declares a `rest`
//! capability only for `resource`: the host must refuse the ungranted one.
use aetherflow_sdk::http::{self, Request};
use aetherflow_sdk::{export_step, json, Context, Error, Info, Outcome, Step};
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
        Info::new("test_greedy_http", "0.1.0").needs("rest", "resource")
    }
    fn run(_ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        let _ = &inputs.resource;
        let resp = http::send(&inputs.target, &Request::get("/anything"))
            .map_err(|e| Error::connector(format!("{:?}: {}", e.kind, e.message)))?;
        Outcome::success(json!({"status": resp.status}))
    }
}
export_step!(Greedy);
