//! `sftp_download_files`: download remote files (typically `sftp_list_files`' `files`) from
//! a granted `sftp` resource into a directory under the job artifacts dir, keeping each
//! file's `rel_path`. Every file is written under a temporary name and renamed.

use std::fs;
use std::path::{Component, Path, PathBuf};

use aetherflow_sdk::files;
use aetherflow_sdk::log;
use aetherflow_sdk::{export_step, json, Context, Error, Info, Outcome, Step, Value};
use serde::Deserialize;

#[derive(Deserialize)]
struct Inputs {
    resource: String,
    files: Value,
    dest_dir: String,
}

struct SftpDownloadFiles;

impl Step for SftpDownloadFiles {
    type Inputs = Inputs;

    fn info() -> Info {
        Info::new("sftp_download_files", env!("CARGO_PKG_VERSION"))
            .description("Download remote files into <artifacts>/<dest_dir>/<rel_path>.")
            .schema(json!({
                "type": "object",
                "required": ["resource", "files", "dest_dir"],
                "properties": {
                    "resource": {"type": "string", "description": "Name of an `sftp` resource."},
                    "files": {
                        "description": "A list of {path, rel_path?} objects (sftp_list_files' `files`), or remote paths; a JSON string is parsed.",
                        "type": ["array", "string"]
                    },
                    "dest_dir": {"type": "string", "description": "Relative to the job artifacts dir."}
                }
            }))
            .needs("sftp", "resource")
    }

    fn run(ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        let dest = ctx.resolve_path(&inputs.dest_dir)?;
        fs::create_dir_all(&dest)
            .map_err(|e| Error::io(format!("cannot create {}: {e}", dest.display())))?;
        let mut local_files = Vec::new();
        for (i, f) in file_list(inputs.files)?.iter().enumerate() {
            let (path, rel, is_dir) = entry(i, f)?;
            if is_dir {
                log::warn(format!("sftp_download_files: skipping directory {path}"));
                continue;
            }
            let target = safe_dest(&dest, &rel)?;
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent)
                    .map_err(|e| Error::io(format!("cannot create {}: {e}", parent.display())))?;
            }
            files::download(&inputs.resource, &path, &target)?;
            local_files.push(target.display().to_string());
        }
        Outcome::success(json!({
            "local_files": local_files,
            "dest_dir": dest.display().to_string(),
        }))
    }
}

/// `files` as a list: a JSON string holding a list is parsed.
fn file_list(v: Value) -> Result<Vec<Value>, Error> {
    match v {
        Value::Array(a) => Ok(a),
        Value::String(s) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Array(a)) => Ok(a),
            _ => Ok(vec![Value::String(s)]),
        },
        Value::Null => Ok(Vec::new()),
        other => Err(Error::invalid_input(format!(
            "sftp_download_files expects 'files' to be a list, got {other}"
        ))),
    }
}

/// (remote path, rel_path, is_dir) of one `files` entry.
fn entry(i: usize, f: &Value) -> Result<(String, String, bool), Error> {
    let base_name = |p: &str| {
        p.trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string()
    };
    match f {
        Value::String(p) => Ok((p.clone(), base_name(p), false)),
        Value::Object(m) => {
            let path = m.get("path").and_then(Value::as_str).ok_or_else(|| {
                Error::invalid_input(format!(
                    "sftp_download_files files[{i}] has no 'path' (expected an object with path and rel_path)"
                ))
            })?;
            let rel = m
                .get("rel_path")
                .and_then(Value::as_str)
                .or_else(|| m.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .unwrap_or_else(|| base_name(path));
            let is_dir = m.get("is_dir").and_then(Value::as_bool).unwrap_or(false);
            Ok((path.to_string(), rel, is_dir))
        }
        other => Err(Error::invalid_input(format!(
            "sftp_download_files files[{i}] must be an object or a path, got {other}"
        ))),
    }
}

/// `dest/rel`, refused when it would leave `dest`.
fn safe_dest(dest: &Path, rel: &str) -> Result<PathBuf, Error> {
    let escapes = || Error::invalid_input(format!("dest path escapes dest_dir: {rel}"));
    let mut out = dest.to_path_buf();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
                if !out.starts_with(dest) {
                    return Err(escapes());
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err(escapes()),
        }
    }
    if out == dest || !out.starts_with(dest) {
        return Err(escapes());
    }
    Ok(out)
}

export_step!(SftpDownloadFiles);
