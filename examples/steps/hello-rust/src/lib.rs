//! `greet`: an example step written with the AetherFlow Rust SDK.
//!
//! It writes one greeting per name into a file in the job workspace and returns the file
//! path and the number of lines. With no names it is SKIPPED, so a flow can short-circuit
//! its job with `on_no_data: skip_job`.

use std::fs;

use aetherflow_sdk::{export_step, json, log, Context, Error, Info, Outcome, Step};
use serde::Deserialize;

#[derive(Deserialize)]
struct Inputs {
    /// Who to greet.
    names: Vec<String>,
    /// The greeting word.
    #[serde(default = "default_greeting")]
    greeting: String,
    /// Output file, relative to the job's artifacts directory.
    #[serde(default = "default_output")]
    output: String,
}

fn default_greeting() -> String {
    "Hello".into()
}

fn default_output() -> String {
    "greetings.txt".into()
}

struct Greet;

impl Step for Greet {
    type Inputs = Inputs;

    fn info() -> Info {
        Info::new("greet", env!("CARGO_PKG_VERSION"))
            .description("Write a greeting per name to a workspace file.")
            .schema(json!({
                "type": "object",
                "required": ["names"],
                "properties": {
                    "names": {"type": "array", "items": {"type": "string"}},
                    "greeting": {"type": "string", "default": "Hello"},
                    "output": {"type": "string", "default": "greetings.txt"}
                }
            }))
    }

    fn run(ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        if inputs.names.is_empty() {
            return Outcome::skipped("no names to greet", json!({"count": 0}));
        }
        let path = ctx.resolve_path(&inputs.output)?;
        let text: String = inputs
            .names
            .iter()
            .map(|n| format!("{}, {n}!\n", inputs.greeting))
            .collect();
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, text)?;
        fs::rename(&tmp, &path)?;
        log::info(format!("greeted {} people in run {}", inputs.names.len(), ctx.run_id));
        Outcome::success(json!({
            "output": path.to_string_lossy(),
            "count": inputs.names.len(),
        }))
    }
}

export_step!(Greet);
