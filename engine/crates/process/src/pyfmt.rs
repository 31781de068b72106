//! Small helpers that reproduce the Python reference's value coercions and text formatting
//! (`str()`, `repr()` of strings and lists, truthiness, `int()`, `float()`), so that messages
//! and semantics match the reference where the parity checklist pins them.

use serde_json::Value;

/// Python truthiness of a JSON value (`None`, `False`, `0`, `0.0`, `""`, `[]`, `{}` are falsy).
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

// Python `str()`/`repr()` formatting is shared with the template resolver.
pub(crate) use aetherflow_template::{
    py_float_repr as float_repr, py_repr, py_str, py_str_repr as str_repr,
};

/// Python-style list repr of strings: `['a', 'b']`.
pub(crate) fn str_list_repr<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<String> = items.iter().map(|s| str_repr(s.as_ref())).collect();
    format!("[{}]", parts.join(", "))
}

/// Python `int(x)` for a JSON value (floats truncate, bools are 0/1, strings are parsed).
pub(crate) fn py_int(v: &Value) -> Option<i64> {
    match v {
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(i)
            } else {
                let f = n.as_f64()?;
                if f.is_finite() && f.abs() < 9.2e18 {
                    Some(f.trunc() as i64)
                } else {
                    None
                }
            }
        }
        Value::String(s) => {
            let t = s.trim().replace('_', "");
            t.parse::<i64>().ok()
        }
        _ => None,
    }
}

/// Python `float(x)` for a JSON value.
pub(crate) fn py_float(v: &Value) -> Option<f64> {
    match v {
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

/// POSIX shell quoting exactly like Python's `shlex.quote`.
pub(crate) fn shlex_quote(s: &str) -> String {
    if s.is_empty() {
        return "''".to_string();
    }
    let safe = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if safe {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

/// `_as_list`: `None` → `[]`, a list as is, anything else → `[x]`.
pub(crate) fn as_list(v: Option<&Value>) -> Vec<&Value> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(other) => vec![other],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn float_repr_matches_python() {
        assert_eq!(float_repr(1.0), "1.0");
        assert_eq!(float_repr(0.5), "0.5");
        assert_eq!(float_repr(0.0), "0.0");
        assert_eq!(float_repr(1e-5), "1e-05");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(123.25), "123.25");
    }

    #[test]
    fn repr_and_str() {
        assert_eq!(py_str(&json!(null)), "None");
        assert_eq!(py_str(&json!(true)), "True");
        assert_eq!(py_str(&json!(1.5)), "1.5");
        assert_eq!(py_str(&json!(["a", 1])), "['a', 1]");
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("a\nb"), "'a\\nb'");
        assert_eq!(str_list_repr(&["sh", "-c"]), "['sh', '-c']");
    }

    #[test]
    fn quoting_and_ints() {
        assert_eq!(shlex_quote("abc"), "abc");
        assert_eq!(shlex_quote(""), "''");
        assert_eq!(shlex_quote("a b"), "'a b'");
        assert_eq!(shlex_quote("it's"), "'it'\"'\"'s'");
        assert_eq!(py_int(&json!("7")), Some(7));
        assert_eq!(py_int(&json!(2.9)), Some(2));
        assert_eq!(py_int(&json!("x")), None);
        assert!(!truthy(&json!("")));
        assert!(truthy(&json!("false")));
    }
}
