//! `db_fetch_small`: run a query on a granted `db` resource and return the whole result in
//! the step outputs, guarded by `max_rows`. The outputs are the reference's: `columns`,
//! `rows`, `row_count`, and the JSON texts `columns_json`, `rows_json`, `dtypes_json`
//! (byte-identical to its `json.dumps(..., ensure_ascii=False)`) with `dtypes`.

use aetherflow_sdk::pyfmt::{write_json_safe_cell, write_json_str, write_json_value};
use aetherflow_sdk::sql::{self, Cell, DtypeSampler};
use aetherflow_sdk::{export_step, json, Context, Error, Info, Outcome, Step, Value};
use serde::Deserialize;

#[derive(Deserialize)]
struct Inputs {
    resource: String,
    sql: String,
    #[serde(default)]
    params: Value,
    #[serde(default)]
    max_rows: Value,
    #[serde(default)]
    fetch_size: Value,
}

/// An integer input given as a number or a numeric string (templates render strings);
/// `null` or absent means `default`.
fn int_input(name: &str, v: &Value, default: i64) -> Result<i64, Error> {
    match v {
        Value::Null => Ok(default),
        Value::Number(n) if n.as_i64().is_some() => Ok(n.as_i64().unwrap_or(default)),
        Value::String(s) if s.trim().parse::<i64>().is_ok() => Ok(s.trim().parse().unwrap()),
        other => Err(Error::invalid_input(format!(
            "db_fetch_small input {name} must be an integer, got {other}"
        ))),
    }
}

/// `params` given as a JSON string of a list or object (a rendered template) is parsed.
fn jsonish(v: Value) -> Value {
    if let Value::String(s) = &v {
        let t = s.trim();
        if (t.starts_with('[') && t.ends_with(']')) || (t.starts_with('{') && t.ends_with('}')) {
            if let Ok(parsed) = serde_json::from_str(t) {
                return parsed;
            }
        }
    }
    v
}

struct DbFetchSmall;

impl Step for DbFetchSmall {
    type Inputs = Inputs;

    fn info() -> Info {
        Info::new("db_fetch_small", env!("CARGO_PKG_VERSION"))
            .description(
                "Query a db resource into the step outputs (columns, rows, rows_json, dtypes), \
                 failing when the result has more than max_rows rows.",
            )
            .schema(json!({
                "type": "object",
                "required": ["resource", "sql"],
                "properties": {
                    "resource": {"type": "string", "description": "Name of a `db` resource."},
                    "sql": {"type": "string"},
                    "params": {"description": "null, a list or an object (see docs/connectors/db.md)."},
                    "max_rows": {"type": "integer", "minimum": 0, "default": 50000},
                    "fetch_size": {"type": "integer", "minimum": 1, "default": 5000}
                }
            }))
            .needs("db", "resource")
    }

    fn run(_ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        let max_rows = int_input("max_rows", &inputs.max_rows, 50_000)?;
        let fetch_size = int_input("fetch_size", &inputs.fetch_size, 5000)?.clamp(1, 10_000);
        let cursor = sql::query(&inputs.resource, &inputs.sql, &jsonish(inputs.params))?;
        let columns: Vec<String> = cursor.columns().iter().map(|c| c.name.clone()).collect();
        let mut sampler = DtypeSampler::new(columns.len());
        let mut rows: Vec<Value> = Vec::new();
        let mut rows_json = String::from("[");
        let mut count: i64 = 0;
        loop {
            let batch = cursor.next_batch(fetch_size as u32)?;
            if batch.is_empty() {
                break;
            }
            for row in &batch {
                count += 1;
                if count > max_rows {
                    return Err(Error::invalid_input(format!(
                        "db_fetch_small exceeded max_rows={max_rows}. Use db_extract_stream for large results."
                    )));
                }
                sampler.observe(row);
                if count > 1 {
                    rows_json.push_str(", ");
                }
                rows_json.push('[');
                let mut values = Vec::with_capacity(row.len());
                for (i, (cell, col)) in row.iter().zip(&columns).enumerate() {
                    if i > 0 {
                        rows_json.push_str(", ");
                    }
                    write_json_safe_cell(&mut rows_json, cell).map_err(|ty| {
                        Error::invalid_input(format!(
                            "db_fetch_small: Object of type {ty} is not JSON serializable \
                             (column '{col}'); convert it in the query or use db_extract_stream"
                        ))
                    })?;
                    values.push(json_value(cell));
                }
                rows_json.push(']');
                rows.push(Value::Array(values));
            }
        }
        rows_json.push(']');
        let dtypes = sampler.dtypes(&columns);
        let mut columns_json = String::from("[");
        for (i, c) in columns.iter().enumerate() {
            if i > 0 {
                columns_json.push_str(", ");
            }
            write_json_str(&mut columns_json, c);
        }
        columns_json.push(']');
        let mut dtypes_json = String::new();
        write_json_value(&mut dtypes_json, &Value::Object(dtypes.clone()));
        Outcome::success(json!({
            "columns": columns,
            "rows": rows,
            "row_count": count,
            "columns_json": columns_json,
            "rows_json": rows_json,
            "dtypes": dtypes,
            "dtypes_json": dtypes_json,
        }))
    }
}

/// A cell as a JSON value (as in `rows_json`: decimals as floats, dates as ISO text; a
/// float JSON cannot hold, NaN or infinite, becomes null).
fn json_value(cell: &Cell) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Boolean(b) => Value::Bool(*b),
        Cell::Integer(i) => Value::from(*i),
        Cell::Real(f) => float_value(*f),
        Cell::Decimal(s) => float_value(aetherflow_sdk::pyfmt::decimal_to_float(s)),
        Cell::Text(s) | Cell::Date(s) | Cell::Datetime(s) => Value::String(s.clone()),
        Cell::Blob(_) => Value::Null, // refused above (rows_json)
    }
}

fn float_value(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

export_step!(DbFetchSmall);
