//! `sftp_upload_files`: upload workspace files to a remote directory of a granted `sftp`
//! resource. Each uploaded item is recorded in `<manifests_dir>/<step_id>.manifest.json`
//! as soon as it is on the server, so that a re-run of the step (a resumed run) skips the
//! item ids already uploaded. Remote files are written under a temporary name and renamed.
//!
//! Differences from the reference: relative item paths resolve against the job artifacts
//! dir (the reference used the process's working directory), and uploads run one after
//! the other (`parallelism` is accepted; only `fail_fast` changes anything).

use std::fs;
use std::path::Path;

use aetherflow_sdk::files;
use aetherflow_sdk::{export_step, json, Context, Error, Info, Map, Outcome, Step, Value};
use serde::Deserialize;

#[derive(Deserialize)]
struct Inputs {
    resource: String,
    items: Value,
    remote_dir: String,
    #[serde(default)]
    parallelism: Option<Value>,
}

struct SftpUploadFiles;

/// One item to upload.
struct Item {
    id: String,
    file: String,
    remote_name: Option<String>,
}

impl Step for SftpUploadFiles {
    type Inputs = Inputs;

    fn info() -> Info {
        Info::new("sftp_upload_files", env!("CARGO_PKG_VERSION"))
            .description(
                "Upload workspace files to a remote directory; a manifest makes re-runs skip \
                 items already uploaded.",
            )
            .schema(json!({
                "type": "object",
                "required": ["resource", "items", "remote_dir"],
                "properties": {
                    "resource": {"type": "string", "description": "Name of an `sftp` resource."},
                    "items": {
                        "description": "Paths (relative to the job artifacts dir), or {file, id?, remote_name?} objects; a JSON string is parsed.",
                        "type": ["array", "string"]
                    },
                    "remote_dir": {"type": "string"},
                    "parallelism": {
                        "type": "object",
                        "description": "Accepted for compatibility; uploads run sequentially. fail_fast (true): stop at the first failure, else upload the rest and then fail.",
                        "properties": {
                            "enabled": {"type": "boolean"},
                            "workers": {"type": "integer"},
                            "fail_fast": {"type": "boolean"}
                        }
                    }
                }
            }))
            .needs("sftp", "resource")
    }

    fn run(ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        let items = items(inputs.items)?;
        let fail_fast = inputs
            .parallelism
            .as_ref()
            .and_then(|p| p.get("fail_fast"))
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let remote_dir = if inputs.remote_dir.len() > 1 {
            inputs.remote_dir.trim_end_matches('/').to_string()
        } else {
            inputs.remote_dir.clone()
        };

        fs::create_dir_all(&ctx.manifests_dir).map_err(|e| {
            Error::io(format!(
                "cannot create {}: {e}",
                ctx.manifests_dir.display()
            ))
        })?;
        let manifest = ctx
            .manifests_dir
            .join(format!("{}.manifest.json", ctx.step_id));
        let mut recorded = read_manifest(&manifest)?;
        let done = |recorded: &[Value], id: &str| {
            recorded.iter().any(|r| {
                r.get("id").and_then(Value::as_str) == Some(id) && r.get("skipped").is_none()
            })
        };

        let mut results = Vec::new();
        let mut failures = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if done(&recorded, &item.id) {
                results.push(json!({"id": item.id, "skipped": true}));
                continue;
            }
            match upload(ctx, &inputs.resource, &remote_dir, item) {
                Ok(entry) => {
                    recorded.push(entry.clone());
                    write_manifest(&manifest, &recorded)?;
                    results.push(entry);
                }
                Err(e) => {
                    let e = Error::new(
                        e.kind,
                        format!(
                            "sftp_upload_files: upload failed at index={i} ({}): {e}",
                            item.file
                        ),
                    );
                    if fail_fast {
                        return Err(e);
                    }
                    failures.push(e);
                }
            }
        }
        if let Some(first) = failures.first() {
            let all: Vec<String> = failures.iter().map(|e| e.message.clone()).collect();
            return Err(Error::new(first.kind, all.join("; ")));
        }
        let skipped = results
            .iter()
            .filter(|r| r.get("skipped").is_some())
            .count();
        Outcome::success(json!({
            "manifest": manifest.display().to_string(),
            "count": results.len(),
            "uploaded": results.len() - skipped,
            "skipped": skipped,
        }))
    }
}

fn upload(ctx: &Context, resource: &str, remote_dir: &str, item: &Item) -> Result<Value, Error> {
    let local = ctx.resolve_path(&item.file)?;
    // lstat: a symlink is left to the host, which refuses one that leaves the workspace.
    if fs::symlink_metadata(&local).is_err() {
        return Err(Error::invalid_input(format!(
            "local file not found: {} (relative item paths are resolved against the job artifacts dir {})",
            local.display(),
            ctx.artifacts_dir.display()
        )));
    }
    let name = match &item.remote_name {
        Some(n) => n.clone(),
        None => local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let remote = if remote_dir.is_empty() {
        name
    } else if remote_dir.ends_with('/') {
        format!("{remote_dir}{name}")
    } else {
        format!("{remote_dir}/{name}")
    };
    files::upload(resource, &local, &remote)?;
    let size = fs::metadata(&local).map(|m| m.len()).ok();
    Ok(json!({
        "id": item.id,
        "file": local.display().to_string(),
        "remote_path": remote,
        "size": size,
    }))
}

/// `items` as a list of [`Item`]s: a JSON string holding a list is parsed.
fn items(v: Value) -> Result<Vec<Item>, Error> {
    let list = match v {
        Value::Array(a) => a,
        Value::String(s) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Array(a)) => a,
            _ => vec![Value::String(s)],
        },
        Value::Null => Vec::new(),
        other => {
            return Err(Error::invalid_input(format!(
                "sftp_upload_files expects 'items' to be a list, got {other}"
            )))
        }
    };
    list.into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(Item {
                id: s.clone(),
                file: s,
                remote_name: None,
            }),
            Value::Object(m) => item_from_map(i, &m),
            other => Err(Error::invalid_input(format!(
                "sftp_upload_files items[{i}] must be a path or an object with 'file', got {other}"
            ))),
        })
        .collect()
}

fn item_from_map(i: usize, m: &Map) -> Result<Item, Error> {
    let text = |k: &str| match m.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let file = text("file").ok_or_else(|| {
        Error::invalid_input(format!("sftp_upload_files items[{i}] has no 'file'"))
    })?;
    Ok(Item {
        id: text("id").unwrap_or_else(|| file.clone()),
        remote_name: text("remote_name"),
        file,
    })
}

fn read_manifest(path: &Path) -> Result<Vec<Value>, Error> {
    match fs::read_to_string(path) {
        Ok(s) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Array(a)) => Ok(a),
            _ => Err(Error::io(format!(
                "manifest {} is not a JSON list; delete it to upload everything again",
                path.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Write the manifest under a temporary name and rename it, so it is never half-written.
fn write_manifest(path: &Path, entries: &[Value]) -> Result<(), Error> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(entries)
        .map_err(|e| Error::internal(format!("manifest: {e}")))?;
    fs::write(&tmp, text)
        .and_then(|_| fs::rename(&tmp, path))
        .map_err(|e| Error::io(format!("cannot write {}: {e}", path.display())))
}

export_step!(SftpUploadFiles);
