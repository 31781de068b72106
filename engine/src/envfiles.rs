//! Env files (parity §6.3): `AETHERFLOW_ENV_FILES_JSON` names files whose variables are
//! laid over the process environment, once, when the immutable snapshot is built.
//!
//! `AETHERFLOW_ENV_FILES_JSON` is a JSON list of `{type, path, optional=false, prefix=""}`:
//!
//! * `dotenv`: one `KEY=VALUE` per line; lines are stripped; blank lines, `#` lines and
//!   lines without `=` are skipped; split at the first `=`; key and value stripped; one
//!   surrounding pair of matching `"` or `'` removed. No `export`, no inline comments, no
//!   escapes, no interpolation. Empty keys are skipped.
//! * `json`: a top-level object; `null` values skipped; objects/lists become their JSON
//!   text; other values their Python `str()` (`true` → `True`).
//! * `dir` | `directory` | `dir-of-files`: every regular file of the directory (sorted by
//!   name) is one variable named after the file; its content with trailing `\n` removed.
//!
//! Relative paths resolve against the process working directory. A missing file is an
//! error unless `optional` is true. `prefix` is prepended to every key. Later files win.
//!
//! Deliberate differences from the reference (all make mistakes visible instead of
//! silently misreading them): `type` is checked when the list is parsed, also for
//! optional files that are missing; `optional` must be a JSON boolean (the reference
//! treats the string `"false"` as true); `path` must be a non-empty string; a file that
//! is not UTF-8 is reported by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::settings::EnvSnapshot;

/// The variable holding the JSON list of env-file specs.
pub const ENV_FILES_VAR: &str = "AETHERFLOW_ENV_FILES_JSON";

/// The three supported file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvFileType {
    Dotenv,
    Json,
    Dir,
}

impl EnvFileType {
    /// `type` as the reference accepts it (trimmed, case-insensitive).
    pub fn parse(t: &str) -> Option<EnvFileType> {
        match t.trim().to_ascii_lowercase().as_str() {
            "dotenv" => Some(EnvFileType::Dotenv),
            "json" => Some(EnvFileType::Json),
            "dir" | "directory" | "dir-of-files" => Some(EnvFileType::Dir),
            _ => None,
        }
    }
}

/// One entry of `AETHERFLOW_ENV_FILES_JSON`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileSpec {
    pub file_type: EnvFileType,
    /// As given (relative paths are resolved when loading).
    pub path: PathBuf,
    pub optional: bool,
    pub prefix: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvFilesError {
    #[error("{ENV_FILES_VAR} is not valid JSON: {source}")]
    InvalidJson {
        #[source]
        source: serde_json::Error,
    },
    #[error("{ENV_FILES_VAR} must be a JSON list (of {{\"type\": \"dotenv\", \"path\": \"...\"}} objects)")]
    NotAList,
    #[error("env file spec must be an object ({ENV_FILES_VAR}[{index}])")]
    SpecNotObject { index: usize },
    #[error("{ENV_FILES_VAR}[{index}].{field} {why}")]
    BadField {
        index: usize,
        field: &'static str,
        why: &'static str,
    },
    #[error("Unsupported env_files type: {file_type} ({ENV_FILES_VAR}[{index}]; use dotenv, json or dir)")]
    UnsupportedType { index: usize, file_type: String },
    #[error("env file not found: {path} ({ENV_FILES_VAR}[{index}]; create it or set \"optional\": true)")]
    NotFound { index: usize, path: String },
    #[error("cannot read env file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("env file {path} is not valid UTF-8")]
    Encoding { path: String },
    #[error("json env file {path} is not valid JSON: {source}")]
    JsonFile {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("json env file must be a JSON object: {path}")]
    JsonNotObject { path: String },
    #[error("env file {path} has type dir but is not a directory")]
    NotADirectory { path: String },
}

/// Parse the value of `AETHERFLOW_ENV_FILES_JSON`.
pub fn parse_env_files_json(raw: &str) -> Result<Vec<EnvFileSpec>, EnvFilesError> {
    let v: Value =
        serde_json::from_str(raw).map_err(|source| EnvFilesError::InvalidJson { source })?;
    let Value::Array(items) = v else {
        return Err(EnvFilesError::NotAList);
    };
    items
        .iter()
        .enumerate()
        .map(|(index, it)| {
            let Value::Object(m) = it else {
                return Err(EnvFilesError::SpecNotObject { index });
            };
            let text = |field: &'static str| -> Result<String, EnvFilesError> {
                match m.get(field) {
                    None | Some(Value::Null) => Ok(String::new()),
                    Some(Value::String(s)) => Ok(s.clone()),
                    Some(_) => Err(EnvFilesError::BadField {
                        index,
                        field,
                        why: "must be a string",
                    }),
                }
            };
            let file_type = text("type")?;
            let file_type = EnvFileType::parse(&file_type)
                .ok_or(EnvFilesError::UnsupportedType { index, file_type })?;
            let path = text("path")?;
            if path.trim().is_empty() {
                return Err(EnvFilesError::BadField {
                    index,
                    field: "path",
                    why: "is required (a non-empty file or directory path)",
                });
            }
            let optional = match m.get("optional") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(EnvFilesError::BadField {
                        index,
                        field: "optional",
                        why: "must be true or false",
                    })
                }
            };
            Ok(EnvFileSpec {
                file_type,
                path: PathBuf::from(path),
                optional,
                prefix: text("prefix")?,
            })
        })
        .collect()
}

/// Load the files in order (later files win). Relative paths resolve against `base_dir`
/// when given, else the process working directory.
pub fn load_env_files(
    specs: &[EnvFileSpec],
    base_dir: Option<&Path>,
) -> Result<BTreeMap<String, String>, EnvFilesError> {
    let mut merged = BTreeMap::new();
    for (index, s) in specs.iter().enumerate() {
        let path = match base_dir {
            Some(b) if s.path.is_relative() => b.join(&s.path),
            _ => s.path.clone(),
        };
        let shown = path.display().to_string();
        if !path.exists() {
            if s.optional {
                continue;
            }
            return Err(EnvFilesError::NotFound { index, path: shown });
        }
        let data = match s.file_type {
            EnvFileType::Dotenv => parse_dotenv(&read_text(&path)?),
            EnvFileType::Json => read_json(&path)?,
            EnvFileType::Dir => read_dir(&path)?,
        };
        for (k, v) in data {
            merged.insert(format!("{}{k}", s.prefix), v);
        }
    }
    Ok(merged)
}

/// The snapshot with the files of `AETHERFLOW_ENV_FILES_JSON` laid over it (an unset or
/// empty variable changes nothing). The input is not modified.
pub fn snapshot_with_env_files(env: &EnvSnapshot) -> Result<EnvSnapshot, EnvFilesError> {
    let mut out = env.clone();
    if let Some(raw) = env.get(ENV_FILES_VAR).filter(|s| !s.is_empty()) {
        out.extend(load_env_files(&parse_env_files_json(raw)?, None)?);
    }
    Ok(out)
}

fn read_text(path: &Path) -> Result<String, EnvFilesError> {
    let bytes = std::fs::read(path).map_err(|source| EnvFilesError::Read {
        path: path.display().to_string(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| EnvFilesError::Encoding {
        path: path.display().to_string(),
    })
}

/// Python `str.splitlines()` boundaries.
fn py_splitlines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.char_indices().find(|(_, c)| {
            matches!(
                c,
                '\n' | '\r'
                    | '\x0b'
                    | '\x0c'
                    | '\x1c'
                    | '\x1d'
                    | '\x1e'
                    | '\u{85}'
                    | '\u{2028}'
                    | '\u{2029}'
            )
        }) {
            None => {
                let line = rest;
                rest = "";
                Some(line)
            }
            Some((i, c)) => {
                let line = &rest[..i];
                let mut next = i + c.len_utf8();
                if c == '\r' && rest[next..].starts_with('\n') {
                    next += 1;
                }
                rest = &rest[next..];
                Some(line)
            }
        }
    })
}

/// The dotenv rules of the module docs, in file order (a later duplicate wins when the
/// pairs are inserted into a map).
pub fn parse_dotenv(text: &str) -> Vec<(String, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out: Vec<(String, String)> = Vec::new();
    for raw in py_splitlines(text) {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim();
        let mut v = v.trim();
        if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            v = &v[1..v.len() - 1];
        } else if v == "\"" || v == "'" {
            // Python `v[1:-1]` of a one-character quote.
            v = "";
        }
        if !k.is_empty() {
            out.push((k.to_string(), v.to_string()));
        }
    }
    out
}

fn read_json(path: &Path) -> Result<Vec<(String, String)>, EnvFilesError> {
    let text = read_text(path)?;
    let v: Value = serde_json::from_str(&text).map_err(|source| EnvFilesError::JsonFile {
        path: path.display().to_string(),
        source,
    })?;
    let Value::Object(m) = v else {
        return Err(EnvFilesError::JsonNotObject {
            path: path.display().to_string(),
        });
    };
    Ok(m.into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let s = match &v {
                Value::Object(_) | Value::Array(_) => py_json_dumps(&v),
                other => aetherflow_template::py_str(other),
            };
            (k, s)
        })
        .collect())
}

fn read_dir(path: &Path) -> Result<Vec<(String, String)>, EnvFilesError> {
    if !path.is_dir() {
        return Err(EnvFilesError::NotADirectory {
            path: path.display().to_string(),
        });
    }
    let entries = std::fs::read_dir(path).map_err(|source| EnvFilesError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = read_text(&f)?;
            Ok((name, text.trim_end_matches('\n').to_string()))
        })
        .collect()
}

/// Python `json.dumps(v, ensure_ascii=False)`: `", "` and `": "` separators.
pub fn py_json_dumps(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), py_json_dumps(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(py_json_dumps).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Number(n) if n.is_f64() => n
            .as_f64()
            .map(aetherflow_template::py_float_repr)
            .unwrap_or_else(|| n.to_string()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_rules() {
        let got = parse_dotenv(
            "# c\n\nA=1\n B = \" two \" \nC='x'\nnoeq\n=empty\nexport D=4\nE=a=b\r\nF=\"\nG='mixed\"\n",
        );
        let m: BTreeMap<String, String> = got.into_iter().collect();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], " two ");
        assert_eq!(m["C"], "x");
        assert_eq!(m["export D"], "4");
        assert_eq!(m["E"], "a=b");
        assert_eq!(m["F"], "");
        assert_eq!(m["G"], "'mixed\"");
        assert!(!m.contains_key(""));
        assert!(!m.contains_key("noeq"));
    }

    #[test]
    fn json_values_follow_python_str() {
        let v: Value = serde_json::from_str(
            r#"{"a": true, "b": 1.5, "c": null, "d": {"x": [1, "é"]}, "e": 10}"#,
        )
        .unwrap();
        assert_eq!(py_json_dumps(&v["d"]), r#"{"x": [1, "é"]}"#);
        assert_eq!(aetherflow_template::py_str(&v["a"]), "True");
        assert_eq!(aetherflow_template::py_str(&v["b"]), "1.5");
    }

    #[test]
    fn spec_errors() {
        assert!(matches!(
            parse_env_files_json("{}"),
            Err(EnvFilesError::NotAList)
        ));
        assert!(matches!(
            parse_env_files_json("[1]"),
            Err(EnvFilesError::SpecNotObject { index: 0 })
        ));
        let e = parse_env_files_json(r#"[{"type": "toml", "path": "x"}]"#).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("Unsupported env_files type: toml"));
        let ok = parse_env_files_json(r#"[{"type": " DotEnv ", "path": "x", "optional": true}]"#)
            .unwrap();
        assert_eq!(ok[0].file_type, EnvFileType::Dotenv);
        assert!(ok[0].optional);
    }
}
