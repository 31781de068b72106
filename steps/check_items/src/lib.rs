//! `check_items`: count a list (or comma-separated string) of items and skip when there
//! are fewer than `min_count`. Pure compute: no connector, no file access.

use aetherflow_sdk::{export_step, json, Context, Error, Info, Outcome, Step, Value};
use serde::Deserialize;

#[derive(Deserialize)]
struct Inputs {
    items: Value,
    #[serde(default)]
    min_count: Option<Value>,
}

struct CheckItems;

impl Step for CheckItems {
    type Inputs = Inputs;

    fn info() -> Info {
        Info::new("check_items", env!("CARGO_PKG_VERSION"))
            .description("Count items; SKIPPED (has_data=false) when fewer than min_count.")
            .schema(json!({
                "type": "object",
                "required": ["items"],
                "properties": {
                    "items": {
                        "description": "A list, or a comma-separated string (blanks dropped).",
                        "type": ["array", "string"]
                    },
                    "min_count": {"type": ["integer", "string"], "default": 1}
                }
            }))
    }

    fn run(_ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        let count = match &inputs.items {
            Value::String(s) => s.split(',').filter(|p| !p.trim().is_empty()).count(),
            Value::Array(a) => a.len(),
            _ => {
                return Err(Error::invalid_input(
                    "check_items expects 'items' to be a list or a comma-separated string",
                ))
            }
        } as i64;
        let min_count = match inputs.min_count {
            None | Some(Value::Null) => 1,
            Some(Value::Number(n)) if n.is_i64() => n.as_i64().unwrap_or(1),
            Some(Value::Number(n)) => n.as_f64().map(|f| f.trunc() as i64).unwrap_or(1),
            Some(Value::String(s)) => s.trim().parse::<i64>().map_err(|_| {
                Error::invalid_input(format!(
                    "check_items min_count must be an integer, got '{s}'"
                ))
            })?,
            Some(other) => {
                return Err(Error::invalid_input(format!(
                    "check_items min_count must be an integer, got {other}"
                )))
            }
        };
        if count < min_count {
            Outcome::skipped(
                format!("count({count}) < min_count({min_count})"),
                json!({"has_data": false, "count": count}),
            )
        } else {
            Outcome::success(json!({"has_data": true, "count": count}))
        }
    }
}

export_step!(CheckItems);
