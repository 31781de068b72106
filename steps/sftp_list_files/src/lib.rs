//! `sftp_list_files`: list a remote directory of a granted `sftp` resource (optionally the
//! whole tree), keep the entries whose name matches an fnmatch pattern, and skip when
//! fewer than `min_count` match.

use aetherflow_sdk::files::{self, FilesErrorKind, RemoteFileMeta};
use aetherflow_sdk::{export_step, json, Context, Error, Info, Outcome, Step, Value};
use serde::Deserialize;

#[derive(Deserialize)]
struct Inputs {
    resource: String,
    remote_dir: String,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    recursive: Option<Value>,
    #[serde(default)]
    min_count: Option<Value>,
}

struct SftpListFiles;

impl Step for SftpListFiles {
    type Inputs = Inputs;

    fn info() -> Info {
        Info::new("sftp_list_files", env!("CARGO_PKG_VERSION"))
            .description(
                "List a remote directory (fnmatch pattern on names, optionally recursive); \
                 SKIPPED (has_data=false) when fewer than min_count entries match.",
            )
            .schema(json!({
                "type": "object",
                "required": ["resource", "remote_dir"],
                "properties": {
                    "resource": {"type": "string", "description": "Name of an `sftp` resource."},
                    "remote_dir": {"type": "string"},
                    "pattern": {"type": "string", "default": "*",
                        "description": "fnmatch pattern (`*`, `?`, `[seq]`, `[!seq]`) on the entry name."},
                    "recursive": {"type": ["boolean", "string"], "default": false},
                    "min_count": {"type": ["integer", "string"], "default": 1}
                }
            }))
            .needs("sftp", "resource")
    }

    fn run(_ctx: &Context, inputs: Inputs) -> Result<Outcome, Error> {
        let pattern: Vec<char> = inputs.pattern.as_deref().unwrap_or("*").chars().collect();
        let recursive = truthy(inputs.recursive.as_ref(), "recursive")?;
        let min_count = min_count(inputs.min_count)?;
        let base = if inputs.remote_dir.len() > 1 {
            inputs.remote_dir.trim_end_matches('/').to_string()
        } else {
            inputs.remote_dir.clone()
        };

        let mut found: Vec<(String, RemoteFileMeta)> = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(cur) = stack.pop() {
            let entries = files::list(&inputs.resource, &cur).map_err(|e| match e.kind {
                // Refusals before the connector keep their own message.
                FilesErrorKind::NotGranted
                | FilesErrorKind::UnknownResource
                | FilesErrorKind::WrongKind => Error::from(e),
                _ => Error::connector(format!(
                    "SFTPListFiles list failed: {cur} {}: {e}",
                    if recursive { "True" } else { "False" }
                )),
            })?;
            for mut m in entries {
                if recursive && m.is_dir {
                    stack.push(m.path.clone());
                    continue;
                }
                if !fnmatch(&pattern, &m.name.chars().collect::<Vec<_>>()) {
                    continue;
                }
                let prefix = format!("{}/", base.trim_end_matches('/'));
                let rel = m.path.strip_prefix(&prefix).unwrap_or(&m.path).to_string();
                m.rel_path = Some(rel.clone());
                found.push((rel, m));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let count = found.len() as i64;
        if count < min_count {
            return Outcome::skipped(
                format!("count({count}) < min_count({min_count})"),
                json!({"has_data": false, "count": count, "files": []}),
            );
        }
        let files: Vec<Value> = found
            .into_iter()
            .map(|(_, m)| {
                json!({
                    "rel_path": m.rel_path,
                    "path": m.path,
                    "name": m.name,
                    "is_dir": m.is_dir,
                    "size": m.size,
                    "mtime": m.mtime,
                    "sha256": null,
                })
            })
            .collect();
        Outcome::success(json!({"has_data": true, "count": count, "files": files}))
    }
}

fn truthy(v: Option<&Value>, name: &str) -> Result<bool, Error> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Ok(true),
            "false" | "no" | "0" | "off" | "" => Ok(false),
            _ => Err(Error::invalid_input(format!(
                "sftp_list_files {name} must be true or false, got '{s}'"
            ))),
        },
        Some(Value::Number(n)) => Ok(n.as_f64().unwrap_or(0.0) != 0.0),
        Some(other) => Err(Error::invalid_input(format!(
            "sftp_list_files {name} must be true or false, got {other}"
        ))),
    }
}

fn min_count(v: Option<Value>) -> Result<i64, Error> {
    match v {
        None | Some(Value::Null) => Ok(1),
        Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64().unwrap_or(1)),
        Some(Value::Number(n)) => Ok(n.as_f64().map(|f| f.trunc() as i64).unwrap_or(1)),
        Some(Value::String(s)) => s.trim().parse::<i64>().map_err(|_| {
            Error::invalid_input(format!(
                "sftp_list_files min_count must be an integer, got '{s}'"
            ))
        }),
        Some(other) => Err(Error::invalid_input(format!(
            "sftp_list_files min_count must be an integer, got {other}"
        ))),
    }
}

/// Python's `fnmatch.fnmatchcase` (POSIX `fnmatch` is case-sensitive): `*`, `?`, `[seq]`,
/// `[!seq]` with ranges; a `[` without a closing `]` is literal.
fn fnmatch(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') => {
            let rest = &p[1..];
            (0..=s.len()).any(|i| fnmatch(rest, &s[i..]))
        }
        Some('?') => !s.is_empty() && fnmatch(&p[1..], &s[1..]),
        Some('[') => match class(&p[1..]) {
            Some((set, negated, used)) => match s.first() {
                Some(c) if set_has(&set, *c) != negated => fnmatch(&p[1 + used..], &s[1..]),
                _ => false,
            },
            None => s.first() == Some(&'[') && fnmatch(&p[1..], &s[1..]),
        },
        Some(c) => s.first() == Some(c) && fnmatch(&p[1..], &s[1..]),
    }
}

/// A `[...]` class after the `[`: its ranges, whether negated, and the chars consumed.
type Class = (Vec<(char, char)>, bool, usize);

fn class(p: &[char]) -> Option<Class> {
    let mut i = 0;
    let negated = p.first() == Some(&'!');
    if negated {
        i += 1;
    }
    let start = i;
    let mut ranges = Vec::new();
    while i < p.len() {
        if p[i] == ']' && i > start {
            return Some((ranges, negated, i + 1));
        }
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            ranges.push((p[i], p[i + 2]));
            i += 3;
        } else {
            ranges.push((p[i], p[i]));
            i += 1;
        }
    }
    None
}

fn set_has(set: &[(char, char)], c: char) -> bool {
    set.iter().any(|(a, b)| *a <= c && c <= *b)
}

export_step!(SftpListFiles);
