//! `sftp_delete_files`: delete remote files (typically `sftp_list_files`' `files`) on a
//! granted `sftp` resource. A directory is removed only when empty, or with its whole
//! tree when `recursive` is true.

use aetherflow_sdk::files;
use aetherflow_sdk::{export_step, json, Context, Error, Info, Outcome, Step, Value};
use serde::Deserialize;

#[derive(Deserialize)]
struct Inputs {
    resource: String,
    files: Value,
    #[serde(default)]
    recursive: Option<bool>,
}

struct SftpDeleteFiles;

impl Step for SftpDeleteFiles {
    type Inputs = Inputs;

    fn info() -> Info {
        Info::new("sftp_delete_files", env!("CARGO_PKG_VERSION"))
            .description("Delete remote files (a directory only when empty, or with recursive).")
            .schema(json!({
                "type": "object",
                "required": ["resource", "files"],
                "properties": {
                    "resource": {"type": "string", "description": "Name of an `sftp` resource."},
                    "files": {
                        "description": "A list of {path} objects (sftp_list_files' `files`), or remote paths; a JSON string is parsed.",
                        "type": ["array", "string"]
                    },
                    "recursive": {"type": "boolean", "default": false,
                        "description": "Delete directories with everything under them."}
                }
            }))
            .needs("sftp", "resource")
    }

    fn run(_ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        let list = match inputs.files {
            Value::Array(a) => a,
            Value::String(s) => match serde_json::from_str::<Value>(&s) {
                Ok(Value::Array(a)) => a,
                _ => vec![Value::String(s)],
            },
            Value::Null => Vec::new(),
            other => {
                return Err(Error::invalid_input(format!(
                    "sftp_delete_files expects 'files' to be a list, got {other}"
                )))
            }
        };
        let recursive = inputs.recursive.unwrap_or(false);
        let mut deleted = Vec::new();
        for (i, f) in list.iter().enumerate() {
            let path = match f {
                Value::String(p) => p.as_str(),
                Value::Object(m) => m.get("path").and_then(Value::as_str).ok_or_else(|| {
                    Error::invalid_input(format!("sftp_delete_files files[{i}] has no 'path'"))
                })?,
                other => {
                    return Err(Error::invalid_input(format!(
                        "sftp_delete_files files[{i}] must be an object or a path, got {other}"
                    )))
                }
            };
            files::delete(&inputs.resource, path, recursive)?;
            deleted.push(path.to_string());
        }
        Outcome::success(json!({"is_deleted": true, "deleted": deleted}))
    }
}

export_step!(SftpDeleteFiles);
