//! Reads the file `read`, tries to write `write`, and tries to move the directory
//! `move_dir[0]` to `move_dir[1]` and make a new one in its place (any paths the test
//! chooses); reports the results instead of failing, so a test can check what a mount
//! allows.
use aetherflow_sdk::{export_step, json, Context, Error, Info, Outcome, Step};
use serde::Deserialize;

#[derive(Deserialize)]
struct Inputs {
    #[serde(default)]
    read: Option<String>,
    #[serde(default)]
    write: Option<String>,
    #[serde(default)]
    move_dir: Option<(String, String)>,
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
        let moved = inputs.move_dir.map(|(from, to)| {
            match std::fs::rename(&from, &to).and_then(|()| std::fs::create_dir(&from)) {
                Ok(()) => json!({"ok": true}),
                Err(e) => json!({"error": e.to_string()}),
            }
        });
        Outcome::success(json!({"read": read, "write": write, "move_dir": moved}))
    }
}
export_step!(Mount);
