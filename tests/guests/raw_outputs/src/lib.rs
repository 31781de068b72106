//! Implements the step world by hand (no `export_step!`, whose outputs are always a JSON
//! object) to hand the engine outputs it must refuse: `inputs.outputs` is returned verbatim
//! as the outputs text, e.g. `not json {` or `[1, 2]`.
use aetherflow_sdk::bindings::aetherflow::step::types::{
    Status, StepContext, StepError, StepInfo, StepResult,
};
use aetherflow_sdk::bindings::Guest;

struct Raw;

impl Guest for Raw {
    fn describe() -> StepInfo {
        StepInfo {
            name: "test_raw_outputs".into(),
            version: "0.1.0".into(),
            description: "returns its `outputs` input verbatim as the outputs text".into(),
            // `outputs` is required: the host, not this hand-written guest, checks that.
            input_schema: "{\"type\": \"object\", \"required\": [\"outputs\"]}".into(),
            capabilities: Vec::new(),
        }
    }

    fn run(_ctx: StepContext, inputs: String) -> Result<StepResult, StepError> {
        let v: serde_json::Value = serde_json::from_str(&inputs).unwrap_or_default();
        let outputs = v["outputs"].as_str().unwrap_or("not json {").to_string();
        Ok(StepResult {
            status: Status::Success,
            outputs,
            reason: None,
        })
    }
}

aetherflow_sdk::bindings::__export_step_world!(Raw with_types_in aetherflow_sdk::bindings);
