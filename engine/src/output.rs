//! All printing of results and errors goes through here: results on stdout, diagnostics
//! on stderr (run events go through [`crate::observe`]).

use std::io::Write;

/// A result line on stdout.
pub fn result(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
}

/// A machine-readable result on stdout.
pub fn json(value: &serde_json::Value) {
    result(value.to_string());
}

/// An error for a person, on stderr.
pub fn error(message: impl std::fmt::Display) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {message}");
}

/// A warning for a person, on stderr.
pub fn warning(message: impl std::fmt::Display) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "warning: {message}");
}
