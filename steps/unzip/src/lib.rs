//! `unzip`: extract zip archives from the workspace, inside the sandbox.
//!
//! Reference semantics (`builtins/steps.py` `unzip`): `archives` is a path or a list
//! (relative to the artifacts dir; missing files are skipped); each archive under `src_dir`
//! is extracted to `dest_dir/<its dir relative to src_dir>` (or `dest_dir/<its path without
//! the suffix>` with `private_zip_folder`), any other archive to `dest_dir/<file name>/`.
//! `members` limits the entries; `overwrite: false` keeps existing files. A `password` opens
//! both ZipCrypto and AES entries.
//!
//! Every entry name is checked before anything is written: an absolute name, or one whose
//! `..` would leave the destination (Zip Slip), refuses the whole archive, and so does a
//! symbolic-link entry. Each file is written under a temporary name and renamed.
//!
//! `resource`/`connector` are accepted and ignored (no archive connector; a warning is
//! logged).

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use aetherflow_sdk::pyfmt::{py_str, truthy};
use aetherflow_sdk::{export_step, json, log, Context, Error, Info, Outcome, Step, Value};
use serde::Deserialize;
use zip_rs::result::ZipError;
use zip_rs::ZipArchive;

#[derive(Deserialize)]
struct Inputs {
    archives: Value,
    dest_dir: Value,
    #[serde(default)]
    src_dir: Value,
    #[serde(default)]
    overwrite: Option<Value>,
    #[serde(default)]
    private_zip_folder: Value,
    #[serde(default)]
    password: Value,
    #[serde(default)]
    members: Value,
    #[serde(default)]
    resource: Value,
    #[serde(default)]
    connector: Value,
}

struct Extract<'a> {
    archive: &'a Path,
    dest: &'a Path,
    password: Option<&'a str>,
    overwrite: bool,
    members: Option<&'a [String]>,
}

fn zip_error(archive: &Path, name: &str, e: ZipError) -> Error {
    match e {
        ZipError::InvalidPassword => Error::invalid_input(format!(
            "wrong password for archive {} (entry {name})",
            archive.display()
        )),
        ZipError::UnsupportedArchive(m) if m == ZipError::PASSWORD_REQUIRED => {
            Error::invalid_input(format!(
                "archive {} is encrypted (entry {name}): set inputs.password",
                archive.display()
            ))
        }
        other => Error::io(format!(
            "cannot read entry {name} of archive {}: {other}",
            archive.display()
        )),
    }
}

fn extract<R: Read + Seek>(zip: &mut ZipArchive<R>, x: &Extract) -> Result<Vec<String>, Error> {
    let archive = x.archive;
    // The entries to extract, by index, with their checked relative paths.
    let mut plan: Vec<(usize, String, PathBuf, bool)> = Vec::new();
    let indices: Vec<usize> = match x.members {
        Some(members) => members
            .iter()
            .map(|m| {
                zip.index_for_name(m).ok_or_else(|| {
                    Error::invalid_input(format!(
                        "There is no item named '{m}' in the archive {}",
                        archive.display()
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
        None => (0..zip.len()).collect(),
    };
    for i in indices {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| zip_error(archive, &format!("#{i}"), e))?;
        let name = entry
            .name()
            .map_err(|e| zip_error(archive, &format!("#{i}"), e))?
            .into_owned();
        let Some(rel) = entry.enclosed_name() else {
            return Err(Error::invalid_input(format!(
                "archive {} has an entry that escapes the destination: {name:?} (absolute or \
                 `..` path, Zip Slip); nothing was extracted",
                archive.display()
            )));
        };
        if entry.is_symlink() {
            return Err(Error::invalid_input(format!(
                "archive {} has a symbolic-link entry {name:?}: unzip does not extract links; \
                 nothing was extracted",
                archive.display()
            )));
        }
        plan.push((i, name, rel, entry.is_dir()));
    }

    let mut extracted = Vec::with_capacity(plan.len());
    for (i, name, rel, is_dir) in plan {
        let target = x.dest.join(&rel);
        if is_dir {
            fs::create_dir_all(&target)
                .map_err(|e| Error::io(format!("cannot create {}: {e}", target.display())))?;
            extracted.push(name);
            continue;
        }
        if !x.overwrite && target.exists() {
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("cannot create {}: {e}", parent.display())))?;
        }
        let mut entry = match x.password {
            Some(pw) => zip.by_index_decrypt(i, pw.as_bytes()),
            None => zip.by_index(i),
        }
        .map_err(|e| zip_error(archive, &name, e))?;
        let tmp = target.with_file_name(format!(
            ".{}.unzip-tmp",
            target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let written = (|| -> io::Result<()> {
            let mut out = BufWriter::new(File::create(&tmp)?);
            io::copy(&mut entry, &mut out)?;
            out.flush()?;
            Ok(())
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            let msg = e.to_string();
            return Err(
                if x.password.is_some() && msg.to_lowercase().contains("checksum") {
                    Error::invalid_input(format!(
                        "wrong password for archive {} (entry {name}: {msg})",
                        archive.display()
                    ))
                } else {
                    Error::io(format!(
                        "cannot extract entry {name} of archive {} to {}: {msg}",
                        archive.display(),
                        target.display()
                    ))
                },
            );
        }
        fs::rename(&tmp, &target).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io(format!("cannot write {}: {e}", target.display()))
        })?;
        extracted.push(name);
    }
    Ok(extracted)
}

/// Strip the last suffix (Python `Path.with_suffix("")`).
fn without_suffix(rel: &Path) -> PathBuf {
    match (rel.file_stem(), rel.parent()) {
        (Some(stem), Some(parent)) => parent.join(stem),
        _ => rel.to_path_buf(),
    }
}

struct Unzip;

impl Step for Unzip {
    type Inputs = Inputs;

    fn info() -> Info {
        Info::new("unzip", env!("CARGO_PKG_VERSION"))
            .description("Extract zip archives (plain, ZipCrypto or AES) into the workspace; Zip Slip entries are refused.")
            .schema(json!({
                "type": "object",
                "required": ["archives", "dest_dir"],
                "properties": {
                    "archives": {"description": "An archive path or a list; relative to the artifacts dir."},
                    "dest_dir": {"type": "string", "description": "Relative to the artifacts dir."},
                    "src_dir": {"type": "string", "description": "Archives under it keep their relative directory (default: the artifacts dir)."},
                    "overwrite": {"type": "boolean", "default": true},
                    "private_zip_folder": {"type": "boolean", "default": false},
                    "password": {"type": "string"},
                    "members": {"type": "array", "items": {"type": "string"}},
                    "resource": {"description": "Accepted and ignored (no archive connector)."},
                    "connector": {"description": "Accepted and ignored (no archive connector)."}
                }
            }))
    }

    fn run(ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        let archives: Vec<String> = match &inputs.archives {
            Value::Null => return Outcome::success(json!({})),
            Value::String(s) => vec![s.clone()],
            Value::Array(a) if a.is_empty() => return Outcome::success(json!({})),
            Value::Array(a) => a.iter().map(py_str).collect(),
            other => {
                return Err(Error::invalid_input(format!(
                    "Archives must be a list of Path {other} "
                )))
            }
        };
        let src_dir = if truthy(&inputs.src_dir) {
            ctx.resolve_path(&py_str(&inputs.src_dir))?
        } else {
            ctx.artifacts_dir.clone()
        };
        let dest_dir = ctx.resolve_path(&py_str(&inputs.dest_dir))?;
        fs::create_dir_all(&dest_dir)
            .map_err(|e| Error::io(format!("cannot create {}: {e}", dest_dir.display())))?;
        let overwrite = inputs.overwrite.as_ref().is_none_or(truthy);
        let private = truthy(&inputs.private_zip_folder);
        let password = truthy(&inputs.password).then(|| py_str(&inputs.password));
        let members: Option<Vec<String>> = match &inputs.members {
            Value::Null => None,
            Value::Array(a) if a.is_empty() => None,
            Value::Array(a) => Some(a.iter().map(py_str).collect()),
            _ => {
                return Err(Error::invalid_input(
                    "unzip inputs.members must be a list when provided",
                ))
            }
        };
        for (key, v) in [
            ("resource", &inputs.resource),
            ("connector", &inputs.connector),
        ] {
            if truthy(v) {
                log::warn(format!(
                    "unzip step {}: inputs.{key} ({}) is ignored: archives are read in the sandbox",
                    ctx.step_id,
                    py_str(v)
                ));
            }
        }

        let mut unzipped = Vec::new();
        for a in &archives {
            let ap = ctx.resolve_path(a)?;
            if !ap.is_file() {
                continue;
            }
            let out_dir = match ap.strip_prefix(&src_dir) {
                Ok(rel) if private => dest_dir.join(without_suffix(rel)),
                Ok(rel) => dest_dir.join(rel.parent().unwrap_or(Path::new(""))),
                Err(_) => dest_dir.join(ap.file_name().unwrap_or_default()),
            };
            fs::create_dir_all(&out_dir)
                .map_err(|e| Error::io(format!("cannot create {}: {e}", out_dir.display())))?;
            let file = File::open(&ap)
                .map_err(|e| Error::io(format!("cannot open {}: {e}", ap.display())))?;
            let mut zip = ZipArchive::new(io::BufReader::new(file)).map_err(|e| {
                Error::invalid_input(format!(
                    "{} is not a readable zip archive: {e}",
                    ap.display()
                ))
            })?;
            let files = extract(
                &mut zip,
                &Extract {
                    archive: &ap,
                    dest: &out_dir,
                    password: password.as_deref(),
                    overwrite,
                    members: members.as_deref(),
                },
            )
            .map_err(|mut e| {
                e.message = format!("unzip step {}: {}", ctx.step_id, e.message);
                e
            })?;
            unzipped.push(json!({
                "dest_dir": out_dir.display().to_string(),
                "files": files,
                "password": password.is_some(),
                "driver": "builtin",
            }));
        }
        Outcome::success(json!({"unzipped": unzipped, "dest_dir": dest_dir.display().to_string()}))
    }
}

export_step!(Unzip);
