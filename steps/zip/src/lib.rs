//! `zip`: pack workspace files into a zip archive, inside the sandbox.
//!
//! Reference semantics (`builtins/steps.py` `zip`): `items` are paths, globs (a string with
//! `*?[`) or `{path}`/`{glob}` objects, relative to the artifacts dir; directories expand
//! recursively when `recursive`; the files are de-duplicated, sorted, and must lie under
//! `src_dir` (the base of the archive names). No file → SKIPPED `no_files`.
//!
//! Archives are deterministic: entries sorted, every entry stamped 1980-01-01 00:00:00 with
//! Unix permissions 0644, so the same files give byte-identical archives. A `password`
//! encrypts every entry with AES-256 (WinZip AE-2, what the reference's pyzipper writes);
//! its random salt makes encrypted archives differ from run to run. The archive is written
//! under `<dest>.tmp` and renamed.
//!
//! `resource`/`connector` are accepted and ignored: there is no archive connector, the work
//! is done here whatever the flow declares (a warning is logged).

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use aetherflow_sdk::pyfmt::{py_str, truthy};
use aetherflow_sdk::{export_step, json, log, Context, Error, Info, Outcome, Step, Value};
use serde::Deserialize;
use zip_rs::write::SimpleFileOptions;
use zip_rs::{AesMode, CompressionMethod, DateTime, ZipWriter};

#[derive(Deserialize)]
struct Inputs {
    dest_path: Value,
    items: Value,
    #[serde(default)]
    src_dir: Value,
    #[serde(default)]
    recursive: Option<Value>,
    #[serde(default)]
    overwrite: Option<Value>,
    #[serde(default)]
    password: Value,
    #[serde(default)]
    compression: Value,
    #[serde(default)]
    resource: Value,
    #[serde(default)]
    connector: Value,
}

/// `fnmatch` for one path component: `*`, `?`, `[...]` / `[!...]`.
fn fnmatch(pat: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pat.len() {
            match pat[p] {
                '*' => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class(pat, p, name[n]) {
                        if matched {
                            p = next;
                            n += 1;
                            continue;
                        }
                    } else if name[n] == '[' {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
                c if c == name[n] => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|c| *c == '*')
}

/// A `[...]` class at `pat[start]`: whether `c` matches, and the index after the class;
/// `None` when the bracket is not closed (then it is a literal `[`).
fn class(pat: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(pat.get(i), Some('!'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pat.len() {
        if pat[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < pat.len() && pat[i + 1] == '-' && pat[i + 2] != ']' {
            if pat[i] <= c && c <= pat[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if pat[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

struct Collector<'a> {
    ctx: &'a Context,
    recursive: bool,
    files: Vec<PathBuf>,
}

impl Collector<'_> {
    fn add_path(&mut self, p: PathBuf) -> Result<(), Error> {
        if p.is_dir() {
            if self.recursive {
                walk(&p, &mut self.files)
                    .map_err(|e| Error::io(format!("cannot list {}: {e}", p.display())))?;
            }
        } else if p.is_file() {
            self.files.push(p);
        }
        Ok(())
    }

    /// The reference's `parent.glob(name)`: the pattern applies to the last component.
    fn add_glob(&mut self, raw: &str) -> Result<(), Error> {
        let gp = self.ctx.resolve_path(raw)?;
        let (Some(parent), Some(name)) = (gp.parent(), gp.file_name()) else {
            return Ok(());
        };
        let pat: Vec<char> = name.to_string_lossy().chars().collect();
        let Ok(entries) = fs::read_dir(parent) else {
            return Ok(());
        };
        let mut hits = Vec::new();
        for e in entries.flatten() {
            let n: Vec<char> = e.file_name().to_string_lossy().chars().collect();
            if fnmatch(&pat, &n) {
                hits.push(e.path());
            }
        }
        hits.sort();
        for h in hits {
            self.add_path(h)?;
        }
        Ok(())
    }
}

fn collect(
    ctx: &Context,
    items: &[Value],
    base: &Path,
    recursive: bool,
) -> Result<Vec<(PathBuf, String)>, Error> {
    let mut c = Collector {
        ctx,
        recursive,
        files: Vec::new(),
    };
    for it in items {
        match it {
            Value::Object(o) => {
                if let Some(p) = o.get("path") {
                    let p = ctx.resolve_path(&py_str(p))?;
                    c.add_path(p)?;
                } else if let Some(g) = o.get("glob") {
                    c.add_glob(&py_str(g))?;
                } else {
                    return Err(Error::invalid_input(
                        "zip inputs item dict must have 'path' or 'glob'",
                    ));
                }
            }
            other => {
                let s = py_str(other);
                if is_glob(&s) {
                    c.add_glob(&s)?;
                } else {
                    let p = ctx.resolve_path(&s)?;
                    c.add_path(p)?;
                }
            }
        }
    }
    let mut files = c.files;
    files.sort();
    files.dedup();
    let mut out = Vec::with_capacity(files.len());
    for fp in files {
        let Ok(rel) = fp.strip_prefix(base) else {
            return Err(Error::invalid_input(format!(
                "zip input '{}' is outside base_dir '{}'. Set src_dir to a directory that \
                 contains every item",
                fp.display(),
                base.display()
            )));
        };
        let name = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        out.push((fp, name));
    }
    Ok(out)
}

fn write_archive(
    tmp: &Path,
    files: &[(PathBuf, String)],
    password: Option<&str>,
    method: CompressionMethod,
) -> Result<(), Error> {
    let file = File::create(tmp)
        .map_err(|e| Error::io(format!("cannot create {}: {e}", tmp.display())))?;
    let mut zw = ZipWriter::new(BufWriter::new(file));
    let zerr = |e: zip_rs::result::ZipError| Error::io(format!("writing the archive failed: {e}"));
    for (path, name) in files {
        let mut src = File::open(path)
            .map_err(|e| Error::io(format!("cannot read {}: {e}", path.display())))?;
        let size = src.metadata().map(|m| m.len()).unwrap_or(0);
        let mut opts = SimpleFileOptions::default()
            .compression_method(method)
            .system(zip_rs::System::Unix)
            .last_modified_time(DateTime::default())
            .unix_permissions(0o644)
            .large_file(size >= u32::MAX as u64);
        if let Some(pw) = password {
            opts = opts.with_aes_encryption(AesMode::Aes256, pw);
        }
        zw.start_file(name.as_str(), opts).map_err(zerr)?;
        io::copy(&mut src, &mut zw)
            .map_err(|e| Error::io(format!("cannot read {}: {e}", path.display())))?;
    }
    let inner = zw.finish().map_err(zerr)?;
    let file = inner
        .into_inner()
        .map_err(|e| Error::io(format!("writing {} failed: {e}", tmp.display())))?;
    file.sync_all()
        .map_err(|e| Error::io(format!("writing {} failed: {e}", tmp.display())))?;
    Ok(())
}

struct ZipStep;

impl Step for ZipStep {
    type Inputs = Inputs;

    fn info() -> Info {
        Info::new("zip", env!("CARGO_PKG_VERSION"))
            .description("Pack workspace files into a (deterministic) zip archive; AES-256 with a password.")
            .schema(json!({
                "type": "object",
                "required": ["dest_path", "items"],
                "properties": {
                    "dest_path": {"type": "string", "description": "The archive; relative to the artifacts dir."},
                    "items": {"type": "array", "description": "Paths, globs, or {path}/{glob} objects; relative to the artifacts dir."},
                    "src_dir": {"type": "string", "description": "Base of the archive names (default: the artifacts dir)."},
                    "recursive": {"type": "boolean", "default": true},
                    "overwrite": {"type": "boolean", "default": true},
                    "password": {"type": "string", "description": "Encrypt every entry with AES-256."},
                    "compression": {"enum": ["deflated", "stored"], "default": "deflated"},
                    "resource": {"description": "Accepted and ignored (no archive connector)."},
                    "connector": {"description": "Accepted and ignored (no archive connector)."}
                }
            }))
    }

    fn run(ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        let out_path = ctx.resolve_path(&py_str(&inputs.dest_path))?;
        let Value::Array(items) = &inputs.items else {
            return Err(Error::invalid_input("zip inputs.items must be a list"));
        };
        let base = if truthy(&inputs.src_dir) {
            ctx.resolve_path(&py_str(&inputs.src_dir))?
        } else {
            ctx.artifacts_dir.clone()
        };
        let recursive = inputs.recursive.as_ref().is_none_or(truthy);
        let overwrite = inputs.overwrite.as_ref().is_none_or(truthy);
        let password = truthy(&inputs.password).then(|| py_str(&inputs.password));
        let compression = if truthy(&inputs.compression) {
            py_str(&inputs.compression)
        } else {
            "deflated".to_string()
        };
        let method = if compression.eq_ignore_ascii_case("deflated") {
            CompressionMethod::Deflated
        } else {
            CompressionMethod::Stored
        };
        for (key, v) in [
            ("resource", &inputs.resource),
            ("connector", &inputs.connector),
        ] {
            if truthy(v) {
                log::warn(format!(
                    "zip step {}: inputs.{key} ({}) is ignored: archives are written in the \
                     sandbox (AES-256 when a password is set)",
                    ctx.step_id,
                    py_str(v)
                ));
            }
        }

        let tmp = out_path.with_file_name(format!(
            "{}.tmp",
            out_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "archive.zip".into())
        ));
        let mut files = collect(ctx, items, &base, recursive)?;
        // The archive never packs itself (a glob over its own directory).
        files.retain(|(p, _)| p != &out_path && p != &tmp);
        let output = out_path.display().to_string();
        if files.is_empty() {
            return Outcome::skipped("no_files", json!({"output": output, "count": 0}));
        }
        if out_path.exists() && !overwrite {
            return Err(Error::invalid_input(format!(
                "zip step {}: {output} already exists and overwrite is false. Remove it, or set \
                 overwrite: true",
                ctx.step_id
            )));
        }
        if let Some(parent) = out_path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("cannot create {}: {e}", parent.display())))?;
        }
        if let Err(e) = write_archive(&tmp, &files, password.as_deref(), method) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, &out_path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io(format!("cannot move the archive to {output}: {e}"))
        })?;
        Outcome::success(json!({
            "output": output,
            "count": files.len(),
            "password": password.is_some(),
            "driver": "builtin",
            "src_dir": base.display().to_string(),
        }))
    }
}

export_step!(ZipStep);

#[cfg(test)]
mod tests {
    use super::fnmatch;

    fn m(p: &str, n: &str) -> bool {
        fnmatch(
            &p.chars().collect::<Vec<_>>(),
            &n.chars().collect::<Vec<_>>(),
        )
    }

    #[test]
    fn globs() {
        assert!(m("*.txt", "a.txt"));
        assert!(!m("*.txt", "a.csv"));
        assert!(m("a?c", "abc"));
        assert!(m("[ab]*", "b1"));
        assert!(!m("[!ab]*", "b1"));
        assert!(m("[a-c].x", "b.x"));
        assert!(m("*", ".hidden"));
        assert!(m("x*y*z", "x1y2y3z"));
    }
}
