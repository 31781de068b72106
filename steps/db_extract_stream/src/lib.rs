//! `db_extract_stream`: run a query on a granted `db` resource and stream the result into
//! a tsv, csv or parquet file in the job workspace. tsv and csv take the reference's file
//! options (`delimiter`, `quotechar`, `escapechar`, `doublequote`, `quoting`, `linefeed`,
//! `include_header`, `encoding`) and are byte-identical to its Python `csv.writer` output;
//! parquet is typed by the dtypes (given or inferred) and streamed in row groups
//! (`parquet_out`). Rows stream through the host cursor in `fetch_size` batches; the file
//! is written under `<output>.tmp` and renamed, so a failed or killed step never leaves a
//! partial file under the final name. The outputs include the sha256 of the file.

mod parquet_out;

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use aetherflow_sdk::digest::Sha256;
use aetherflow_sdk::pyfmt::{write_json_value, CsvWriter, Quoting};
use aetherflow_sdk::sql::{self, DtypeSampler};
use aetherflow_sdk::{export_step, json, log, Context, Error, Info, Map, Outcome, Step, Value};

struct DbExtractStream;

/// A file option from the top-level input or the nested `file:` mapping (top level wins;
/// `null` counts as absent), as the reference's `_file_opt`.
fn file_opt<'a>(inputs: &'a Map, key: &str) -> Option<&'a Value> {
    match inputs.get(key) {
        Some(v) if !v.is_null() => Some(v),
        _ => inputs
            .get("file")
            .and_then(Value::as_object)
            .and_then(|f| f.get(key))
            .filter(|v| !v.is_null()),
    }
}

/// Python's `str(v)` for an option value.
fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        other => other.to_string(),
    }
}

/// A boolean input: JSON booleans, numbers (0 is false) and the strings
/// `true/false/yes/no/on/off/1/0` (any case).
fn bool_input(name: &str, v: Option<&Value>, default: bool) -> Result<bool, Error> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Number(n)) => Ok(n.as_f64() != Some(0.0)),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" | "" => Ok(false),
            _ => Err(Error::invalid_input(format!(
                "db_extract_stream input {name} must be true or false, got {s:?}"
            ))),
        },
        Some(other) => Err(Error::invalid_input(format!(
            "db_extract_stream input {name} must be true or false, got {other}"
        ))),
    }
}

fn int_input(name: &str, v: Option<&Value>, default: i64) -> Result<i64, Error> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64().unwrap_or(default)),
        Some(Value::String(s)) if s.trim().parse::<i64>().is_ok() => Ok(s.trim().parse().unwrap()),
        Some(other) => Err(Error::invalid_input(format!(
            "db_extract_stream input {name} must be an integer, got {other}"
        ))),
    }
}

/// A JSON string of a list or object (a rendered template) is parsed, as `_maybe_json_load`.
fn jsonish(v: Option<&Value>) -> Option<Value> {
    let v = v?;
    if let Value::String(s) = v {
        let t = s.trim();
        if (t.starts_with('[') && t.ends_with(']')) || (t.starts_with('{') && t.ends_with('}')) {
            if let Ok(parsed) = serde_json::from_str(t) {
                return Some(parsed);
            }
        }
    }
    Some(v.clone())
}

/// Python truthiness of an input value (`x or y`).
fn truthy(v: &Option<Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

fn one_char(name: &str, v: &Value) -> Result<char, Error> {
    let s = py_str(v);
    let mut it = s.chars();
    match (it.next(), it.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(Error::invalid_input(format!(
            "db_extract_stream: \"{name}\" must be a 1-character string, got {s:?}"
        ))),
    }
}

/// The text encodings a file can be written in.
#[derive(Clone, Copy)]
enum Encoding {
    Utf8,
    Utf8Sig,
    Latin1,
    Ascii,
}

impl Encoding {
    fn parse(name: &str) -> Result<Encoding, Error> {
        let n = name.trim().to_ascii_lowercase().replace('_', "-");
        Ok(match n.as_str() {
            "utf-8" | "utf8" | "u8" => Encoding::Utf8,
            "utf-8-sig" | "utf8-sig" => Encoding::Utf8Sig,
            "latin-1" | "latin1" | "iso-8859-1" | "iso8859-1" | "l1" => Encoding::Latin1,
            "ascii" | "us-ascii" => Encoding::Ascii,
            _ => {
                return Err(Error::invalid_input(format!(
                    "db_extract_stream: unsupported encoding {name:?}; use utf-8, utf-8-sig, latin-1 or ascii"
                )))
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 | Encoding::Utf8Sig => "utf-8",
            Encoding::Latin1 => "latin-1",
            Encoding::Ascii => "ascii",
        }
    }

    /// Encode `s` onto `buf`; a character the encoding cannot represent is an error.
    fn encode(self, s: &str, buf: &mut Vec<u8>, row: u64) -> Result<(), Error> {
        let limit = match self {
            Encoding::Utf8 | Encoding::Utf8Sig => {
                buf.extend_from_slice(s.as_bytes());
                return Ok(());
            }
            Encoding::Latin1 => 0xff,
            Encoding::Ascii => 0x7f,
        };
        for c in s.chars() {
            if c as u32 > limit {
                return Err(Error::invalid_input(format!(
                    "db_extract_stream: '{}' codec can't encode character {c:?} (U+{:04X}) in row {row}; \
                     use encoding utf-8",
                    self.name(),
                    c as u32
                )));
            }
            buf.push(c as u8);
        }
        Ok(())
    }
}

struct Plan {
    resource: String,
    statement: String,
    params: Value,
    fetch_size: u32,
    target: Target,
}

/// What the rows are written as.
enum Target {
    Text {
        include_header: bool,
        writer: CsvWriter,
        encoding: Encoding,
    },
    Parquet {
        dtypes: Option<Map>,
        compression: parquet::basic::Compression,
        row_group_size: usize,
    },
}

impl Step for DbExtractStream {
    type Inputs = Map;

    fn info() -> Info {
        Info::new("db_extract_stream", env!("CARGO_PKG_VERSION"))
            .description(
                "Stream a query on a db resource into a tsv, csv or parquet file in the job \
                 workspace (Python csv options; typed parquet row groups; sha256, optional dtypes).",
            )
            .schema(json!({
                "type": "object",
                "required": ["resource", "sql", "output"],
                "properties": {
                    "resource": {"type": "string", "description": "Name of a `db` resource."},
                    "sql": {"type": "string"},
                    "output": {"type": "string", "description": "File path; relative to the job artifacts dir."},
                    "params": {"description": "null, a list or an object (see docs/connectors/db.md)."},
                    "format": {"enum": ["tsv", "csv", "parquet"], "default": "tsv"},
                    "fetch_size": {"type": "integer", "minimum": 1, "default": 5000},
                    "compression": {"enum": ["snappy", "lz4", "none"], "default": "snappy", "description": "parquet only."},
                    "row_group_size": {"type": "integer", "minimum": 1, "default": parquet_out::DEFAULT_ROW_GROUP_SIZE, "description": "parquet only: rows per row group (a group also ends at 64 MiB of values)."},
                    "include_header": {"type": "boolean", "default": true},
                    "emit_dtypes": {"type": "boolean", "default": false},
                    "dtypes": {"description": "{column: type}, or its JSON text; parquet column types (int, float, bool, date, datetime, else string)."},
                    "dtypes_json": {"description": "Used when dtypes is empty."},
                    "encoding": {"type": "string", "default": "utf-8"},
                    "delimiter": {"type": "string", "description": "Default tab (tsv) or comma (csv)."},
                    "quotechar": {"type": "string", "default": "\""},
                    "escapechar": {"type": ["string", "null"], "default": null},
                    "doublequote": {"type": "boolean", "default": true},
                    "quoting": {"enum": ["minimal", "all", "none", "nonnumeric"], "default": "minimal"},
                    "linefeed": {"type": "string", "default": "\n"},
                    "file": {"type": "object", "description": "The file options, nested (top-level keys win)."}
                }
            }))
            .needs("db", "resource")
    }

    fn run(ctx: &Context, inputs: Map) -> Result<Outcome, Error> {
        let text = |k: &str| -> Result<String, Error> {
            match inputs.get(k) {
                Some(Value::String(s)) => Ok(s.clone()),
                other => Err(Error::invalid_input(format!(
                    "db_extract_stream input {k} must be a string, got {}",
                    other.map_or("nothing".into(), |v| v.to_string())
                ))),
            }
        };
        let resource = text("resource")?;
        let statement = text("sql")?;
        let output = text("output")?;
        let fmt = match inputs.get("format") {
            None | Some(Value::Null) => "tsv".to_string(),
            Some(v) => py_str(v).to_lowercase(),
        };
        let fmt = if fmt.is_empty() {
            "tsv".to_string()
        } else {
            fmt
        };
        let emit_dtypes = bool_input("emit_dtypes", inputs.get("emit_dtypes"), false)?;
        let mut dtypes = jsonish(inputs.get("dtypes"));
        if !truthy(&dtypes) {
            dtypes = jsonish(inputs.get("dtypes_json"));
        }
        let dtypes = match dtypes {
            Some(Value::Object(m)) => Some(m),
            None | Some(Value::Null) => None,
            Some(v) if !truthy(&Some(v.clone())) => None,
            Some(_) => {
                return Err(Error::invalid_input(
                    "dtypes must be a dict (mapping column -> type)",
                ))
            }
        };
        let fetch_size =
            int_input("fetch_size", inputs.get("fetch_size"), 5000)?.clamp(1, 10_000) as u32;
        let target = match fmt.as_str() {
            "tsv" | "csv" => {
                for k in ["compression", "row_group_size"] {
                    if file_opt(&inputs, k).is_some() {
                        return Err(Error::invalid_input(format!(
                            "db_extract_stream: {k} applies to format parquet only (format is {fmt})"
                        )));
                    }
                }
                text_target(&inputs, &fmt)?
            }
            "parquet" => Target::Parquet {
                dtypes: dtypes.clone(),
                compression: parquet_out::parse_compression(
                    &file_opt(&inputs, "compression").map_or("snappy".into(), py_str),
                )?,
                row_group_size: match int_input(
                    "row_group_size",
                    file_opt(&inputs, "row_group_size"),
                    parquet_out::DEFAULT_ROW_GROUP_SIZE,
                )? {
                    // usize is 32 bits in wasm32: more than 4Gi rows is "no limit" anyway.
                    n if n >= 1 => n.min(u32::MAX as i64) as usize,
                    n => {
                        return Err(Error::invalid_input(format!(
                            "db_extract_stream input row_group_size must be at least 1, got {n}"
                        )))
                    }
                },
            },
            other => {
                return Err(Error::invalid_input(format!(
                    "db_extract_stream unsupported format: {other}"
                )))
            }
        };
        let plan = Plan {
            resource,
            statement,
            params: jsonish(inputs.get("params")).unwrap_or(Value::Null),
            fetch_size,
            target,
        };

        let out = ctx.resolve_path(&output)?;
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("cannot create {}: {e}", parent.display())))?;
        }
        let tmp = out.with_file_name(format!(
            "{}.tmp",
            out.file_name().and_then(|n| n.to_str()).unwrap_or("output")
        ));
        let written = match write_file(&plan, &tmp) {
            Ok(w) => w,
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

        let mut outputs = Map::new();
        outputs.insert("artifact_path".into(), json!(out.to_string_lossy()));
        outputs.insert("format".into(), json!(fmt));
        outputs.insert("columns".into(), json!(written.columns));
        outputs.insert("row_count".into(), json!(written.rows));
        outputs.insert("sha256".into(), json!(written.sha256));
        if emit_dtypes {
            let dtypes = dtypes.unwrap_or_else(|| written.sampler.dtypes(&written.columns));
            if !dtypes.is_empty() {
                let mut dtypes_json = String::new();
                write_json_value(&mut dtypes_json, &Value::Object(dtypes.clone()));
                outputs.insert("dtypes".into(), Value::Object(dtypes));
                outputs.insert("dtypes_json".into(), json!(dtypes_json));
            }
        }
        Outcome::success(outputs)
    }
}

/// The tsv/csv options: Python's `csv.writer` settings, the header and the encoding.
fn text_target(inputs: &Map, fmt: &str) -> Result<Target, Error> {
    let quoting = match file_opt(inputs, "quoting") {
        None => Quoting::Minimal,
        Some(v) => match py_str(v).trim().to_lowercase().as_str() {
            "all" => Quoting::All,
            "none" => Quoting::None,
            "nonnumeric" => Quoting::NonNumeric,
            // The reference falls back to minimal for anything else.
            _ => Quoting::Minimal,
        },
    };
    let writer = CsvWriter {
        delimiter: match file_opt(inputs, "delimiter") {
            Some(v) => one_char("delimiter", v)?,
            None if fmt == "tsv" => '\t',
            None => ',',
        },
        quotechar: match file_opt(inputs, "quotechar") {
            Some(v) => one_char("quotechar", v)?,
            None => '"',
        },
        escapechar: file_opt(inputs, "escapechar")
            .map(|v| one_char("escapechar", v))
            .transpose()?,
        doublequote: bool_input("doublequote", file_opt(inputs, "doublequote"), true)?,
        quoting,
        lineterminator: file_opt(inputs, "linefeed").map_or("\n".into(), py_str),
    };
    let encoding = Encoding::parse(&file_opt(inputs, "encoding").map_or("utf-8".into(), py_str))?;
    Ok(Target::Text {
        include_header: bool_input("include_header", inputs.get("include_header"), true)?,
        writer,
        encoding,
    })
}

struct Written {
    columns: Vec<String>,
    rows: u64,
    sha256: String,
    sampler: DtypeSampler,
}

fn write_file(plan: &Plan, tmp: &Path) -> Result<Written, Error> {
    let cursor = sql::query(&plan.resource, &plan.statement, &plan.params)?;
    match &plan.target {
        Target::Text {
            include_header,
            writer,
            encoding,
        } => write_text(
            &cursor,
            plan.fetch_size,
            *include_header,
            writer,
            *encoding,
            tmp,
        ),
        Target::Parquet {
            dtypes,
            compression,
            row_group_size,
        } => {
            let file = File::create(tmp)
                .map_err(|e| Error::io(format!("cannot create {}: {e}", tmp.display())))?;
            let sink = parquet_out::Hashing {
                inner: BufWriter::with_capacity(1 << 20, file),
                hash: Sha256::new(),
            };
            let opts = parquet_out::Options {
                fetch_size: plan.fetch_size,
                dtypes: dtypes.as_ref(),
                compression: *compression,
                row_group_size: *row_group_size,
            };
            let (w, sink) = parquet_out::write(&cursor, sink, &opts)?;
            log::log(
                log::Level::Info,
                &format!(
                    "db_extract_stream: {} rows written as parquet in {} row group(s)",
                    w.rows, w.row_groups
                ),
                &json!({"rows": w.rows, "row_groups": w.row_groups, "compression": format!("{compression:?}").to_lowercase()}),
            );
            Ok(Written {
                columns: w.columns,
                rows: w.rows,
                sha256: sink.hash.finish(),
                sampler: w.sampler,
            })
        }
    }
}

fn write_text(
    cursor: &sql::Cursor,
    fetch_size: u32,
    include_header: bool,
    writer: &CsvWriter,
    encoding: Encoding,
    tmp: &Path,
) -> Result<Written, Error> {
    let columns: Vec<String> = cursor.columns().iter().map(|c| c.name.clone()).collect();
    let file = File::create(tmp)
        .map_err(|e| Error::io(format!("cannot create {}: {e}", tmp.display())))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut hash = Sha256::new();
    let mut text = String::with_capacity(1 << 16);
    let mut bytes: Vec<u8> = Vec::with_capacity(1 << 16);
    let csv_error = |e: String, row: u64| {
        Error::invalid_input(format!(
            "db_extract_stream: cannot write row {row} with these file options: {e}"
        ))
    };
    if matches!(encoding, Encoding::Utf8Sig) {
        text.push('\u{feff}');
    }
    let mut records = writer.records();
    if include_header && !columns.is_empty() {
        records
            .write_row(&mut text, &columns)
            .map_err(|e| csv_error(e, 0))?;
    }
    let mut sampler = DtypeSampler::new(columns.len());
    let mut rows: u64 = 0;
    loop {
        let batch = cursor.next_rows(fetch_size)?;
        let mut reader = batch.reader();
        while let Some(row) = reader.next_row()? {
            rows += 1;
            sampler.observe(row);
            records
                .write_cells(&mut text, row)
                .map_err(|e| csv_error(e, rows))?;
        }
        // UTF-8 is the text as it is; other encodings are checked character by character.
        let out = match encoding {
            Encoding::Utf8 | Encoding::Utf8Sig => text.as_bytes(),
            _ => {
                bytes.clear();
                encoding.encode(&text, &mut bytes, rows)?;
                &bytes
            }
        };
        hash.update(out);
        w.write_all(out)
            .map_err(|e| Error::io(format!("cannot write {}: {e}", tmp.display())))?;
        text.clear();
        if batch.is_empty() {
            break;
        }
    }
    w.flush()
        .map_err(|e| Error::io(format!("cannot write {}: {e}", tmp.display())))?;
    let sha256 = hash.finish();
    Ok(Written {
        columns,
        rows,
        sha256,
        sampler,
    })
}

export_step!(DbExtractStream);
