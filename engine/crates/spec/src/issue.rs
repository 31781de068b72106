//! Validation issues and source positions.

use serde::Serialize;
use std::fmt;

/// A 1-based line/column position in the YAML source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pos {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column number (in characters).
    pub column: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One validation finding, shaped like the reference `FlowValidationIssue`.
///
/// Serialises as `{code, loc, msg}` exactly like the reference JSON report; the optional
/// source position is not serialised (use it for human-readable output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// e.g. `schema:missing`, `semantic:duplicate_job_id`.
    pub code: String,
    /// e.g. `jobs[0].steps[1].type`, `<root>`.
    pub loc: String,
    /// Human-readable message (reference text where parity applies).
    pub msg: String,
    /// Where in the source the issue points, when known.
    #[serde(skip)]
    pub pos: Option<Pos>,
}

impl Issue {
    /// Build an issue without a position.
    pub fn new(code: impl Into<String>, loc: impl Into<String>, msg: impl Into<String>) -> Self {
        Issue {
            code: code.into(),
            loc: loc.into(),
            msg: msg.into(),
            pos: None,
        }
    }

    /// Return the issue with `pos` set.
    #[must_use]
    pub fn with_pos(mut self, pos: Option<Pos>) -> Self {
        self.pos = pos;
        self
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = self.pos {
            write!(f, "{}: {} [{}] {}", p, self.loc, self.code, self.msg)
        } else {
            write!(f, "{} [{}] {}", self.loc, self.code, self.msg)
        }
    }
}

/// One segment of an issue location (pydantic `loc` element).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A string key / field name, joined with `.`.
    Field(String),
    /// An int-like element (list index or int/bool dict key), rendered as `[x]`.
    Index(String),
}

/// Format a location like the reference `_fmt_loc`.
pub(crate) fn fmt_loc(segs: &[Seg]) -> String {
    if segs.is_empty() {
        return "<root>".to_string();
    }
    let mut parts: Vec<String> = Vec::with_capacity(segs.len());
    for s in segs {
        match s {
            Seg::Field(f) => parts.push(f.clone()),
            Seg::Index(i) => match parts.last_mut() {
                Some(last) => {
                    last.push('[');
                    last.push_str(i);
                    last.push(']');
                }
                None => parts.push(format!("[{i}]")),
            },
        }
    }
    parts.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmt_loc_matches_reference() {
        assert_eq!(fmt_loc(&[]), "<root>");
        let segs = vec![
            Seg::Field("jobs".into()),
            Seg::Index("0".into()),
            Seg::Field("steps".into()),
            Seg::Index("1".into()),
            Seg::Field("type".into()),
        ];
        assert_eq!(fmt_loc(&segs), "jobs[0].steps[1].type");
        assert_eq!(fmt_loc(&[Seg::Index("3".into())]), "[3]");
        let segs = vec![
            Seg::Field("resources".into()),
            Seg::Index("1".into()),
            Seg::Field("[key]".into()),
        ];
        assert_eq!(fmt_loc(&segs), "resources[1].[key]");
    }

    #[test]
    fn issue_serialises_without_pos() {
        let i = Issue::new("schema:missing", "flow", "Field required")
            .with_pos(Some(Pos { line: 1, column: 1 }));
        let s = serde_json::to_string(&i).unwrap();
        assert_eq!(
            s,
            r#"{"code":"schema:missing","loc":"flow","msg":"Field required"}"#
        );
    }
}
