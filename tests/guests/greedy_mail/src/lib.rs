//! Sends a message to `to` through whatever resource `target` names, although it declares
//! a `mail` capability only for `resource`: the host must refuse an ungranted one (and one
//! of another kind).
use aetherflow_sdk::mail::{self, Message};
use aetherflow_sdk::{export_step, json, Context, Error, Info, Outcome, Step};
use serde::Deserialize;

#[derive(Deserialize)]
struct Inputs {
    resource: String,
    target: String,
    to: String,
    subject: String,
}

struct Greedy;
impl Step for Greedy {
    type Inputs = Inputs;
    fn info() -> Info {
        Info::new("test_greedy_mail", "0.1.0").needs("mail", "resource")
    }
    fn run(_ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        let _ = &inputs.resource;
        let msg = Message::new(vec![inputs.to], inputs.subject).text("greedy");
        mail::send(&inputs.target, &msg)
            .map_err(|e| Error::connector(format!("{:?}: {}", e.kind, e.message)))?;
        Outcome::success(json!({"sent": true}))
    }
}
export_step!(Greedy);
