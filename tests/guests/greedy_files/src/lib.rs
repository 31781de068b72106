//! Lists a remote directory through whatever resource `target` names, although it declares
//! an `sftp` capability only for `resource`: the host must refuse an ungranted one (and one
//! of another kind).
use aetherflow_sdk::{export_step, files, json, Context, Error, Info, Outcome, Step};
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
        Info::new("test_greedy_files", "0.1.0").needs("sftp", "resource")
    }
    fn run(_ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        let _ = &inputs.resource;
        let entries = files::list(&inputs.target, ".")
            .map_err(|e| Error::connector(format!("{:?}: {}", e.kind, e.message)))?;
        Outcome::success(json!({"entries": entries.len()}))
    }
}
export_step!(Greedy);
