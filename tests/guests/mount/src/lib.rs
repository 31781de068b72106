//! Reads the file `read` and tries to write `write` (any paths the test chooses), and
//! reports both results instead of failing, so a test can check what a mount allows.
use aetherflow_sdk::{export_step, json, Context, Error, Info, Outcome, Step};
use serde::Deserialize;

#[derive(Deserialize)]
struct Inputs {
    #[serde(default)]
    read: Option<String>,
    #[serde(default)]
    write: Option<String>,
}

struct Mount;
impl Step for Mount {
    type Inputs = Inputs;
    fn info() -> Info {
        Info::new("test_mount", "0.1.0")
    }
    fn run(_ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        let read = inputs.read.map(|p| match std::fs::read_to_string(&p) {
            Ok(text) => json!({"ok": text}),
            Err(e) => json!({"error": e.to_string()}),
        });
        let write = inputs
            .write
            .map(|p| match std::fs::write(&p, "written by the step") {
                Ok(()) => json!({"ok": true}),
                Err(e) => json!({"error": e.to_string()}),
            });
        Outcome::success(json!({"read": read, "write": write}))
    }
}
export_step!(Mount);
