//! String rendering (§2.2 inline, §2.3 standalone typed) and the value walk (§2.4).

use serde_json::{Map, Value};

use crate::{py_str, Phase, ResolveError};

/// Python `str.isspace()` (also what `re`'s `\s` matches for str patterns).
pub(crate) fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

fn is_identifier(tok: &str) -> bool {
    let mut chars = tok.chars();
    match chars.next() {
        Some(c) if c.is_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// `_is_valid_path`: `IDENT ('.' IDENT)*` with Unicode identifiers.
pub(crate) fn is_valid_path(path: &str) -> bool {
    path.split('.').all(is_identifier)
}

/// `_contains_forbidden_syntax`: `${`, `{%`, `%}`, `{#`, `#}` or `{}` anywhere.
pub fn contains_forbidden_syntax(s: &str) -> bool {
    ["${", "{%", "%}", "{#", "#}", "{}"]
        .iter()
        .any(|needle| s.contains(needle))
}

/// `_lookup_path`: walk through JSON objects only.
fn lookup<'a>(scope: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let first = parts.next()?;
    let mut cur = scope.get(first)?;
    for part in parts {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

fn check_root(path: &str, phase: Phase) -> Result<(), ResolveError> {
    let root = path.split('.').next().unwrap_or(path);
    if phase.allowed_roots().contains(&root) {
        Ok(())
    } else {
        Err(ResolveError::Syntax {
            detail: format!("allowed_roots {root} {path} {}", phase.allowed_roots_repr()),
        })
    }
}

fn syntax(detail: String) -> ResolveError {
    ResolveError::Syntax { detail }
}

/// Parsed standalone token: (path, default).
struct Standalone<'a> {
    path: &'a str,
    default: Option<&'a str>,
}

fn is_ascii_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ascii_ident_cont(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn skip_space(s: &str, mut i: usize) -> usize {
    while let Some(c) = s[i..].chars().next() {
        if py_isspace(c) {
            i += c.len_utf8();
        } else {
            break;
        }
    }
    i
}

/// Emulates `re.match(r"^\{\{\s*(PATH)(?:\:([^}]*))?\s*\}\}$", value)`
/// (`$` also matches before one trailing newline).
fn match_standalone(s: &str) -> Option<Standalone<'_>> {
    let bytes = s.as_bytes();
    if !s.starts_with("{{") {
        return None;
    }
    let mut i = skip_space(s, 2);
    let path_start = i;
    // PATH: ident ('.' ident)*, greedy; a dot not followed by an ident ends it.
    if i >= bytes.len() || !is_ascii_ident_start(bytes[i]) {
        return None;
    }
    loop {
        while i < bytes.len() && is_ascii_ident_cont(bytes[i]) {
            i += 1;
        }
        if i + 1 < bytes.len() && bytes[i] == b'.' && is_ascii_ident_start(bytes[i + 1]) {
            i += 1;
            continue;
        }
        break;
    }
    let path = &s[path_start..i];
    let mut default = None;
    if i < bytes.len() && bytes[i] == b':' {
        let start = i + 1;
        let end = s[start..].find('}').map_or(s.len(), |p| start + p);
        default = Some(&s[start..end]);
        i = end;
    } else {
        i = skip_space(s, i);
    }
    let rest = s[i..].strip_prefix("}}")?;
    if rest.is_empty() || rest == "\n" {
        Some(Standalone { path, default })
    } else {
        None
    }
}

/// `_is_standalone_token` of the validator: the whole string (surrounding
/// whitespace allowed) is exactly one token.
pub fn is_standalone_token(s: &str) -> bool {
    let trimmed = py_strip(s);
    match match_standalone(trimmed) {
        // `fullmatch` does not accept the `$`-before-newline quirk, but the
        // newline is whitespace and was stripped already.
        Some(_) => !trimmed.ends_with('\n'),
        None => false,
    }
}

fn missing_or_empty(found: Option<&Value>) -> bool {
    match found {
        None => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    }
}

/// Inline renderer (`_render_string`): always returns a string.
pub fn render_inline(
    value: &str,
    scope: &Map<String, Value>,
    phase: Phase,
) -> Result<String, ResolveError> {
    render_inline_roots(value, scope, Some(phase))
}

/// [`render_inline`] with `allowed_roots=None` when `phase` is `None`
/// (`render_string`, used by the profile and decode-string scans): any root
/// is accepted and looked up in `scope`.
pub(crate) fn render_inline_roots(
    value: &str,
    scope: &Map<String, Value>,
    phase: Option<Phase>,
) -> Result<String, ResolveError> {
    if contains_forbidden_syntax(value) {
        return Err(syntax(format!("_contains_forbidden_syntax {value}")));
    }
    if !value.contains("{{") && !value.contains("}}") {
        return Ok(value.to_string());
    }
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        let Some(rel) = value[i..].find("{{") else {
            out.push_str(&value[i..]);
            break;
        };
        let start = i + rel;
        // `value.find("}}", i, start)`: a `}}` lying fully before the `{{`.
        if value[i..start].contains("}}") {
            return Err(syntax(format!("premature_close <> -1 {value}")));
        }
        out.push_str(&value[i..start]);
        let Some(rel_end) = value[start + 2..].find("}}") else {
            return Err(syntax(format!("missing_close <> -1 {value}")));
        };
        let end = start + 2 + rel_end;
        let token = py_strip(&value[start + 2..end]);
        if token.is_empty() || token.contains('{') || token.contains('}') {
            return Err(syntax(
                "Empty token or nested braces are not allowed.".to_string(),
            ));
        }
        let (path, default) = match token.split_once(':') {
            Some((p, d)) => (py_strip(p), Some(d)),
            None => (token, None),
        };
        if !is_valid_path(path) {
            return Err(syntax(format!("_is_valid_path False {path}")));
        }
        if let Some(phase) = phase {
            check_root(path, phase)?;
        }
        let found = lookup(scope, path);
        if missing_or_empty(found) {
            match default {
                Some(d) => out.push_str(d),
                None => {
                    return Err(ResolveError::MissingKey {
                        path: path.to_string(),
                    })
                }
            }
        } else if let Some(v) = found {
            out.push_str(&py_str(v));
        }
        i = end + 2;
    }
    if contains_forbidden_syntax(&out) {
        return Err(syntax(format!("_contains_forbidden_syntax {out}")));
    }
    Ok(out)
}

/// Render one string leaf (`_render_string_or_typed`): a standalone token
/// returns the raw (typed) value, anything else the inline string.
pub fn render_str(
    s: &str,
    scope: &Map<String, Value>,
    phase: Phase,
) -> Result<Value, ResolveError> {
    if contains_forbidden_syntax(s) {
        return Err(syntax(format!("_contains_forbidden_syntax {s}")));
    }
    if !s.contains("{{") && !s.contains("}}") {
        return Ok(Value::String(s.to_string()));
    }
    if let Some(tok) = match_standalone(s) {
        check_root(tok.path, phase)?;
        let found = lookup(scope, tok.path);
        if missing_or_empty(found) {
            return match tok.default {
                Some(d) => Ok(Value::String(d.to_string())),
                None => Err(ResolveError::MissingKey {
                    path: tok.path.to_string(),
                }),
            };
        }
        return Ok(found.cloned().unwrap_or(Value::Null));
    }
    render_inline(s, scope, phase).map(Value::String)
}

/// Deep-walk a value (`_walk_and_render`): objects and arrays recurse (keys
/// are not rendered), string leaves are rendered, other leaves pass through.
/// Stops at the first error, in document order.
pub fn render(
    value: &Value,
    scope: &Map<String, Value>,
    phase: Phase,
) -> Result<Value, ResolveError> {
    match value {
        Value::String(s) => render_str(s, scope, phase),
        Value::Array(items) => items
            .iter()
            .map(|v| render(v, scope, phase))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                out.insert(k.clone(), render(v, scope, phase)?);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}
