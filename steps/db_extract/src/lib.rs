//! `db_extract`: run a query on a granted `db` resource and write the result to a
//! workspace file as tsv or jsonl. Rows stream through the host cursor in batches, so
//! memory stays flat whatever the result size. The file is written under a temporary
//! name and renamed, so a failed or killed step never leaves a partial file behind.

use std::fs::{self, File};
use std::io::{BufWriter, Write};

use aetherflow_sdk::pyfmt::{write_cell_str, write_json_cell, write_json_str};
use aetherflow_sdk::sql::{self, CellRef};
use aetherflow_sdk::{export_step, json, Context, Error, Info, Outcome, Step, Value};
use serde::Deserialize;

#[derive(Deserialize)]
struct Inputs {
    resource: String,
    sql: String,
    output: String,
    #[serde(default)]
    params: Value,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    fetch_size: Option<u32>,
}

#[derive(Clone, Copy)]
enum Format {
    Tsv,
    Jsonl,
}

struct DbExtract;

impl Step for DbExtract {
    type Inputs = Inputs;

    fn info() -> Info {
        Info::new("db_extract", env!("CARGO_PKG_VERSION"))
            .description("Query a db resource into a tsv or jsonl file in the job workspace.")
            .schema(json!({
                "type": "object",
                "required": ["resource", "sql", "output"],
                "properties": {
                    "resource": {"type": "string", "description": "Name of a `db` resource."},
                    "sql": {"type": "string"},
                    "output": {"type": "string", "description": "File path; relative to the job artifacts dir."},
                    "params": {"description": "null, a list (positional ?) or an object (named :name)."},
                    "format": {"enum": ["tsv", "jsonl"], "default": "tsv"},
                    "fetch_size": {"type": "integer", "minimum": 1, "default": 1000}
                }
            }))
            .needs("db", "resource")
    }

    fn run(ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        let fmt_name = inputs.format.unwrap_or_else(|| "tsv".to_string());
        let format = match fmt_name.as_str() {
            "tsv" => Format::Tsv,
            "jsonl" => Format::Jsonl,
            other => return Err(Error::invalid_input(format!("Unsupported format: {other}"))),
        };
        let out = ctx.resolve_path(&inputs.output)?;
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("cannot create {}: {e}", parent.display())))?;
        }
        let tmp = out.with_file_name(format!(
            "{}.tmp",
            out.file_name().and_then(|n| n.to_str()).unwrap_or("output")
        ));
        let result = write_result(
            &inputs.resource,
            &inputs.sql,
            &inputs.params,
            format,
            inputs.fetch_size.unwrap_or(1000).max(1),
            &tmp,
        );
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        fs::rename(&tmp, &out).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io(format!(
                "cannot rename {} to {}: {e}",
                tmp.display(),
                out.display()
            ))
        })?;
        Outcome::success(json!({
            "output": out.to_string_lossy(),
            "format": fmt_name,
            "rows": rows,
        }))
    }
}

fn write_result(
    resource: &str,
    statement: &str,
    params: &Value,
    format: Format,
    fetch_size: u32,
    tmp: &std::path::Path,
) -> Result<u64, Error> {
    let cursor = sql::query(resource, statement, params)?;
    let columns: Vec<String> = cursor.columns().iter().map(|c| c.name.clone()).collect();
    let file = File::create(tmp)
        .map_err(|e| Error::io(format!("cannot create {}: {e}", tmp.display())))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut line = String::with_capacity(4096);
    if matches!(format, Format::Tsv) && !columns.is_empty() {
        line.push_str(&columns.join("\t"));
        line.push('\n');
    }
    let mut rows: u64 = 0;
    loop {
        let batch = cursor.next_rows(fetch_size)?;
        if batch.is_empty() {
            break;
        }
        let mut reader = batch.reader();
        while let Some(row) = reader.next_row()? {
            match format {
                Format::Tsv => tsv_row(&mut line, row),
                Format::Jsonl => jsonl_row(&mut line, &columns, row)?,
            }
            rows += 1;
        }
        w.write_all(line.as_bytes())
            .map_err(|e| Error::io(format!("cannot write {}: {e}", tmp.display())))?;
        line.clear();
    }
    w.write_all(line.as_bytes())
        .and_then(|_| w.flush())
        .map_err(|e| Error::io(format!("cannot write {}: {e}", tmp.display())))?;
    Ok(rows)
}

/// `"\t".join("" if v is None else str(v) for v in row)`: no escaping, as the reference.
fn tsv_row(line: &mut String, row: &[CellRef]) {
    for (i, cell) in row.iter().enumerate() {
        if i > 0 {
            line.push('\t');
        }
        write_cell_str(line, *cell);
    }
    line.push('\n');
}

/// `json.dumps({col: val, ...}, ensure_ascii=False)`.
fn jsonl_row(line: &mut String, columns: &[String], row: &[CellRef]) -> Result<(), Error> {
    line.push('{');
    for (i, (col, cell)) in columns.iter().zip(row).enumerate() {
        if i > 0 {
            line.push_str(", ");
        }
        write_json_str(line, col);
        line.push_str(": ");
        write_json_cell(line, *cell).map_err(|ty| {
            Error::invalid_input(format!(
                "Object of type {ty} is not JSON serializable (column '{col}'); use format tsv"
            ))
        })?;
    }
    line.push_str("}\n");
    Ok(())
}

export_step!(DbExtract);
