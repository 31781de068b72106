//! Runs `statements` (each a SQL string, or `{sql, params}`) with `sql.execute` on the
//! granted `resource`, in order; outputs the affected-row counts as `affected`.
use aetherflow_sdk::{export_step, json, sql, Context, Error, Info, Outcome, Step, Value};
use serde::Deserialize;

#[derive(Deserialize)]
struct Inputs {
    resource: String,
    statements: Vec<Value>,
}

struct SqlExec;
impl Step for SqlExec {
    type Inputs = Inputs;
    fn info() -> Info {
        Info::new("test_sql_exec", "0.1.0").needs("db", "resource")
    }
    fn run(_ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        let mut affected = Vec::new();
        for s in &inputs.statements {
            let (statement, params) = match s {
                Value::String(q) => (q.as_str(), Value::Null),
                Value::Object(m) => (
                    m.get("sql").and_then(Value::as_str).unwrap_or_default(),
                    m.get("params").cloned().unwrap_or(Value::Null),
                ),
                other => return Err(Error::invalid_input(format!("bad statement {other}"))),
            };
            affected.push(sql::execute(&inputs.resource, statement, &params)?);
        }
        Outcome::success(json!({ "affected": affected }))
    }
}
export_step!(SqlExec);
