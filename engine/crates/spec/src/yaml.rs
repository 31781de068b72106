//! YAML loading with source positions and PyYAML `safe_load` semantics.
//!
//! The document is read with yaml-rust2's event parser and built into a [`Node`] tree in
//! which every node keeps its line and column. Scalars are resolved like PyYAML's
//! `SafeLoader` (YAML 1.1):
//!
//! * plain `yes/Yes/YES/no/No/NO/true/True/TRUE/false/False/FALSE/on/On/ON/off/Off/OFF` are
//!   booleans;
//! * plain `~`, `null`, `Null`, `NULL` and empty plain scalars are null;
//! * ints: decimal, `0b…` binary, `0…` octal (YAML 1.1 style: `017` is 15; `0o17` is a
//!   *string*, as in PyYAML), `0x…` hex, sexagesimal `1:30` (= 90), underscores allowed;
//! * floats: `1.5`, `1.0e+5` (an exponent needs a dot and a sign, so `1e5` is a string),
//!   `.5`, sexagesimal `1:30.5`, `.inf`/`-.inf`/`+.inf` and `.nan` in their case variants;
//! * quoted and block scalars are always strings;
//! * **divergence:** PyYAML turns timestamps such as `2024-01-01` into `date`/`datetime`
//!   objects; here they stay strings (so `flow.id: 2024-01-01` validates here, whereas the
//!   reference reports `schema:string_type`);
//! * explicit core tags (`!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!map`, `!!seq`) are
//!   honoured; any other tag is an error, like PyYAML's "could not determine a constructor".
//!
//! Anchors and aliases are expanded (with a budget against "billion laughs" documents),
//! `<<` merge keys follow PyYAML's `flatten_mapping`, duplicate keys keep the first position
//! and the last value, and nesting depth is capped.

use crate::issue::{Pos, Seg};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use std::fmt;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Maximum nesting depth of collections (PyYAML itself dies with `RecursionError` around 1000).
pub const MAX_DEPTH: usize = 256;
/// Maximum number of nodes in a document, alias expansions included.
pub const MAX_NODES: usize = 1_000_000;
/// Locations longer than this are not recorded in the [`PosIndex`].
const MAX_INDEXED_LOC_LEN: usize = 4096;

/// A resolved YAML scalar (PyYAML safe_load types, minus timestamps and binary).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Bool(bool),
    /// Saturates outside the i128 range (Python ints are unbounded).
    Int(i128),
    Float(f64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeKind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A YAML node with the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: NodeKind,
    pub pos: Option<Pos>,
}

impl Node {
    pub(crate) fn scalar(s: Scalar, pos: Option<Pos>) -> Node {
        Node {
            kind: NodeKind::Scalar(s),
            pos,
        }
    }

    /// Python truthiness (used for `yaml.safe_load(f) or {}`).
    pub(crate) fn is_falsy(&self) -> bool {
        match &self.kind {
            NodeKind::Scalar(Scalar::Null) => true,
            NodeKind::Scalar(Scalar::Bool(b)) => !b,
            NodeKind::Scalar(Scalar::Int(i)) => *i == 0,
            NodeKind::Scalar(Scalar::Float(f)) => *f == 0.0,
            NodeKind::Scalar(Scalar::Str(s)) => s.is_empty(),
            NodeKind::Seq(v) => v.is_empty(),
            NodeKind::Map(m) => m.is_empty(),
        }
    }

    /// Build a node tree (without positions) from a JSON value.
    pub(crate) fn from_value(v: &Value) -> Node {
        let kind = match v {
            Value::Null => NodeKind::Scalar(Scalar::Null),
            Value::Bool(b) => NodeKind::Scalar(Scalar::Bool(*b)),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    NodeKind::Scalar(Scalar::Int(i128::from(i)))
                } else if let Some(u) = n.as_u64() {
                    NodeKind::Scalar(Scalar::Int(i128::from(u)))
                } else {
                    NodeKind::Scalar(Scalar::Float(n.as_f64().unwrap_or(f64::NAN)))
                }
            }
            Value::String(s) => NodeKind::Scalar(Scalar::Str(s.clone())),
            Value::Array(a) => NodeKind::Seq(a.iter().map(Node::from_value).collect()),
            Value::Object(o) => NodeKind::Map(
                o.iter()
                    .map(|(k, v)| {
                        (
                            Node::scalar(Scalar::Str(k.clone()), None),
                            Node::from_value(v),
                        )
                    })
                    .collect(),
            ),
        };
        Node { kind, pos: None }
    }
}

/// Python `str()` of a float.
pub(crate) fn py_float_str(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let a = f.abs();
    if a == 0.0 || (1e-4..1e16).contains(&a) {
        let s = format!("{f}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        // Python: 1e+20, 1.5e-05
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', e),
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        }
    }
}

impl Scalar {
    /// Python `str()` of the scalar (used for non-string mapping keys).
    pub(crate) fn py_str(&self) -> String {
        match self {
            Scalar::Null => "None".into(),
            Scalar::Bool(true) => "True".into(),
            Scalar::Bool(false) => "False".into(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => py_float_str(*f),
            Scalar::Str(s) => s.clone(),
        }
    }

    /// Loc segment for a mapping key: Python ints/bools render as `[x]` in `_fmt_loc`.
    pub(crate) fn key_seg(&self) -> Seg {
        match self {
            // pydantic reports bool keys as ints in `loc`
            Scalar::Bool(b) => Seg::Index(u8::from(*b).to_string()),
            Scalar::Int(_) => Seg::Index(self.py_str()),
            _ => Seg::Field(self.py_str()),
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(*b),
            Scalar::Int(i) => {
                if let Ok(v) = i64::try_from(*i) {
                    Value::Number(v.into())
                } else if let Ok(v) = u64::try_from(*i) {
                    Value::Number(v.into())
                } else {
                    // Precision loss for ints beyond 64 bits.
                    Number::from_f64(*i as f64).map_or(Value::Null, Value::Number)
                }
            }
            // JSON has no inf/nan: they become the strings "inf", "-inf", "nan".
            Scalar::Float(f) => {
                Number::from_f64(*f).map_or_else(|| Value::String(py_float_str(*f)), Value::Number)
            }
            Scalar::Str(s) => Value::String(s.clone()),
        }
    }
}

/// What went wrong while reading YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YamlErrorKind {
    /// The scanner/parser rejected the text.
    Syntax,
    /// An alias refers to an anchor that was not defined before it.
    UnknownAnchor,
    /// Alias expansion or document size exceeded [`MAX_NODES`].
    TooLarge,
    /// Collections nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A sequence or mapping used as a mapping key.
    UnhashableKey,
    /// A tag we cannot construct, or a tagged value that does not fit its tag.
    Tag,
    /// A `<<` merge value that is not a mapping or a list of mappings.
    Merge,
    /// More than one document in the stream.
    MultipleDocuments,
}

/// A YAML error with its position and the offending source line.
///
/// Displays as `file:line:col: message`, then the source line and a caret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub kind: YamlErrorKind,
    pub file: String,
    pub pos: Pos,
    pub message: String,
    /// The source line at `pos` (without its line terminator).
    pub source_line: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}:{}:{}: {}",
            self.file, self.pos.line, self.pos.column, self.message
        )?;
        writeln!(f, "{}", self.source_line)?;
        let pad: String = self
            .source_line
            .chars()
            .take(self.pos.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "{pad}^")
    }
}

impl std::error::Error for YamlError {}

fn marker_pos(m: &Marker) -> Pos {
    // yaml-rust2 lines are 1-based, columns 0-based.
    Pos {
        line: m.line().max(1),
        column: m.col() + 1,
    }
}

fn source_line(text: &str, line: usize) -> String {
    const MAX: usize = 200;
    let l = text
        .split('\n')
        .nth(line.saturating_sub(1))
        .unwrap_or("")
        .trim_end_matches('\r');
    if l.chars().count() > MAX {
        l.chars().take(MAX).collect::<String>() + "…"
    } else {
        l.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Scalar resolution (PyYAML Resolver regexes, hand-written)
// ---------------------------------------------------------------------------------------------

fn is_bool(s: &str) -> Option<bool> {
    match s {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn is_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

fn split_sign(s: &str) -> (bool, &str) {
    if let Some(r) = s.strip_prefix('-') {
        (true, r)
    } else if let Some(r) = s.strip_prefix('+') {
        (false, r)
    } else {
        (false, s)
    }
}

fn all_chars(s: &str, f: impl Fn(char) -> bool) -> bool {
    s.chars().all(f)
}

/// `[0-5]?[0-9]` sexagesimal part.
fn is_sexa_part(p: &str) -> bool {
    !p.is_empty() && p.len() <= 2 && all_chars(p, |c| c.is_ascii_digit()) && {
        p.len() == 1 || matches!(p.as_bytes().first(), Some(b'0'..=b'5'))
    }
}

/// `[1-9][0-9_]*`
fn is_dec_head(p: &str) -> bool {
    matches!(p.as_bytes().first(), Some(b'1'..=b'9'))
        && all_chars(p, |c| c.is_ascii_digit() || c == '_')
}

fn accumulate(digits: &str, radix: u32) -> Option<i128> {
    let mut acc: i128 = 0;
    let mut any = false;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(radix)?;
        any = true;
        acc = acc
            .saturating_mul(i128::from(radix))
            .saturating_add(i128::from(d));
    }
    any.then_some(acc)
}

/// PyYAML int regex + `construct_yaml_int`. `None` when `s` is not an int.
fn parse_int(s: &str) -> Option<i128> {
    let (neg, body) = split_sign(s);
    let v = if let Some(b) = body.strip_prefix("0b") {
        if b.is_empty() || !all_chars(b, |c| c == '0' || c == '1' || c == '_') {
            return None;
        }
        accumulate(b, 2)?
    } else if let Some(h) = body.strip_prefix("0x") {
        if h.is_empty() || !all_chars(h, |c| c.is_ascii_hexdigit() || c == '_') {
            return None;
        }
        accumulate(h, 16)?
    } else if body == "0" {
        0
    } else if let Some(o) = body.strip_prefix('0') {
        if o.is_empty() || !all_chars(o, |c| ('0'..='7').contains(&c) || c == '_') {
            return None;
        }
        // "0_" etc. construct to 0
        accumulate(o, 8).unwrap_or(0)
    } else if body.contains(':') {
        let mut parts = body.split(':');
        let head = parts.next()?;
        if !is_dec_head(head) {
            return None;
        }
        let mut acc = accumulate(head, 10)?;
        for p in parts {
            if !is_sexa_part(p) {
                return None;
            }
            acc = acc.saturating_mul(60).saturating_add(accumulate(p, 10)?);
        }
        acc
    } else if is_dec_head(body) {
        accumulate(body, 10)?
    } else {
        return None;
    };
    Some(if neg { v.saturating_neg() } else { v })
}

/// `[0-9][0-9_]*`
fn is_digits_us(p: &str, first_digit: bool) -> bool {
    (!first_digit || matches!(p.as_bytes().first(), Some(b'0'..=b'9')))
        && all_chars(p, |c| c.is_ascii_digit() || c == '_')
}

/// `(?:[eE][-+][0-9]+)?` split off the fractional part; returns (frac, valid).
fn split_exp(frac: &str) -> Option<(&str, &str)> {
    match frac.find(['e', 'E']) {
        None => Some((frac, "")),
        Some(i) => {
            let (f, e) = frac.split_at(i);
            let e = &e[1..];
            let digits = e.strip_prefix(['-', '+'])?;
            if digits.is_empty() || !all_chars(digits, |c| c.is_ascii_digit()) {
                return None;
            }
            Some((f, e))
        }
    }
}

fn py_float(s: &str) -> Option<f64> {
    let cleaned: String = s.chars().filter(|c| *c != '_').collect();
    cleaned.parse::<f64>().ok()
}

/// PyYAML float regex + `construct_yaml_float`.
fn parse_float(s: &str) -> Option<f64> {
    match s {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    // \.[0-9_]+(?:[eE][-+][0-9]+)?  (no sign allowed)
    if let Some(rest) = s.strip_prefix('.') {
        let (frac, exp) = split_exp(rest)?;
        if frac.is_empty() || !is_digits_us(frac, false) {
            return None;
        }
        let txt = if exp.is_empty() {
            format!("0.{frac}")
        } else {
            format!("0.{frac}e{exp}")
        };
        return py_float(&txt);
    }
    let (neg, body) = split_sign(s);
    let (int_part, rest) = body.split_once('.')?;
    let sign = if neg { -1.0 } else { 1.0 };
    if int_part.contains(':') {
        // [0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        if !is_digits_us(rest, false) {
            return None;
        }
        let mut parts = int_part.split(':');
        let head = parts.next()?;
        if !is_digits_us(head, true) {
            return None;
        }
        let mut acc = py_float(head)?;
        let mut last_is_sexa = false;
        for p in parts {
            if !is_sexa_part(p) {
                return None;
            }
            acc = acc * 60.0 + py_float(p)?;
            last_is_sexa = true;
        }
        if !last_is_sexa {
            return None;
        }
        // The fractional part belongs to the last sexagesimal digit group.
        let frac = py_float(&format!("0.{}", if rest.is_empty() { "0" } else { rest }))?;
        return Some(sign * (acc + frac));
    }
    // [0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?
    if !is_digits_us(int_part, true) {
        return None;
    }
    let (frac, exp) = split_exp(rest)?;
    if !is_digits_us(frac, false) {
        return None;
    }
    let txt = if exp.is_empty() {
        format!("{int_part}.{frac}0")
    } else {
        format!("{int_part}.{frac}0e{exp}")
    };
    py_float(&txt).map(|f| sign * f)
}

/// Resolve an untagged plain scalar.
pub(crate) fn resolve_plain(s: &str) -> Scalar {
    if is_null(s) {
        return Scalar::Null;
    }
    if let Some(b) = is_bool(s) {
        return Scalar::Bool(b);
    }
    if let Some(f) = parse_float(s) {
        return Scalar::Float(f);
    }
    if let Some(i) = parse_int(s) {
        return Scalar::Int(i);
    }
    Scalar::Str(s.to_string())
}

const CORE: &str = "tag:yaml.org,2002:";

fn full_tag(t: &Tag) -> String {
    format!("{}{}", t.handle, t.suffix)
}

/// `None` = no tag or the non-specific `!`.
fn effective_tag(t: Option<&Tag>) -> Option<String> {
    let t = t?;
    let full = full_tag(t);
    if full == "!" {
        None
    } else {
        Some(full)
    }
}

fn resolve_tagged(value: &str, tag: &str) -> Result<Scalar, String> {
    let Some(short) = tag.strip_prefix(CORE) else {
        return Err(format!(
            "could not determine a constructor for the tag '{tag}'"
        ));
    };
    let bad = || format!("invalid value for tag '!!{short}': {value:?}");
    match short {
        "str" => Ok(Scalar::Str(value.to_string())),
        "null" => Ok(Scalar::Null),
        "bool" => is_bool(value).map(Scalar::Bool).ok_or_else(bad),
        "int" => parse_int(value).map(Scalar::Int).ok_or_else(bad),
        "float" => parse_float(value)
            .or_else(|| parse_int(value).map(|i| i as f64))
            .map(Scalar::Float)
            .ok_or_else(bad),
        _ => Err(format!(
            "could not determine a constructor for the tag '{tag}'"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Tree building
// ---------------------------------------------------------------------------------------------

/// Hashable view of a key with Python equality (`1 == 1.0 == True`).
#[derive(Hash, PartialEq, Eq)]
enum KeyRepr {
    Null,
    Num(i128),
    FloatBits(u64),
    Str(String),
}

fn key_repr(n: &Node) -> Option<KeyRepr> {
    match &n.kind {
        NodeKind::Scalar(Scalar::Null) => Some(KeyRepr::Null),
        NodeKind::Scalar(Scalar::Bool(b)) => Some(KeyRepr::Num(i128::from(*b))),
        NodeKind::Scalar(Scalar::Int(i)) => Some(KeyRepr::Num(*i)),
        NodeKind::Scalar(Scalar::Float(f)) => {
            if f.fract() == 0.0 && f.abs() < 1e30 {
                Some(KeyRepr::Num(*f as i128))
            } else {
                Some(KeyRepr::FloatBits(f.to_bits()))
            }
        }
        NodeKind::Scalar(Scalar::Str(s)) => Some(KeyRepr::Str(s.clone())),
        _ => None,
    }
}

/// Duplicate keys: first position, last value (Python dict semantics).
fn dedup(entries: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    let mut index: HashMap<KeyRepr, usize> = HashMap::new();
    let mut out: Vec<(Node, Node)> = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        match key_repr(&k) {
            Some(r) => {
                if let Some(&i) = index.get(&r) {
                    if let Some(slot) = out.get_mut(i) {
                        slot.1 = v;
                    }
                } else {
                    index.insert(r, out.len());
                    out.push((k, v));
                }
            }
            None => out.push((k, v)),
        }
    }
    out
}

struct Entry {
    key: Node,
    value: Node,
    merge: bool,
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<Entry>,
        pending: Option<(Node, bool)>,
    },
}

struct Anchored {
    node: Node,
    size: usize,
    height: usize,
}

fn measure(n: &Node) -> (usize, usize) {
    match &n.kind {
        NodeKind::Scalar(_) => (1, 0),
        NodeKind::Seq(items) => {
            let mut size: usize = 1;
            let mut h = 0;
            for i in items {
                let (s, ih) = measure(i);
                size = size.saturating_add(s);
                h = h.max(ih);
            }
            (size, h + 1)
        }
        NodeKind::Map(m) => {
            let mut size: usize = 1;
            let mut h = 0;
            for (k, v) in m {
                let (ks, kh) = measure(k);
                let (vs, vh) = measure(v);
                size = size.saturating_add(ks).saturating_add(vs);
                h = h.max(kh).max(vh);
            }
            (size, h + 1)
        }
    }
}

struct Builder<'a> {
    text: &'a str,
    file: &'a str,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchored>,
    nodes: usize,
    root: Option<Node>,
}

impl Builder<'_> {
    fn err(&self, kind: YamlErrorKind, pos: Pos, message: impl Into<String>) -> YamlError {
        YamlError {
            kind,
            file: self.file.to_string(),
            pos,
            message: message.into(),
            source_line: source_line(self.text, pos.line),
        }
    }

    fn charge(&mut self, n: usize, pos: Pos) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(self.err(
                YamlErrorKind::TooLarge,
                pos,
                format!("document too large: more than {MAX_NODES} nodes after alias expansion"),
            ));
        }
        Ok(())
    }

    fn register(&mut self, anchor: usize, node: &Node) {
        if anchor > 0 {
            let (size, height) = measure(node);
            self.anchors.insert(
                anchor,
                Anchored {
                    node: node.clone(),
                    size,
                    height,
                },
            );
        }
    }

    fn push_value(&mut self, node: Node, merge_key: bool) -> Result<(), YamlError> {
        let pos = node.pos.unwrap_or(Pos { line: 1, column: 1 });
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map {
                entries, pending, ..
            }) => {
                match pending.take() {
                    Some((key, merge)) => entries.push(Entry {
                        key,
                        value: node,
                        merge,
                    }),
                    None => {
                        if !matches!(node.kind, NodeKind::Scalar(_)) {
                            return Err(self.err(
                                YamlErrorKind::UnhashableKey,
                                pos,
                                "found unhashable key (a mapping or sequence used as a key)",
                            ));
                        }
                        *pending = Some((node, merge_key));
                    }
                }
                Ok(())
            }
        }
    }

    fn finish_map(&self, pos: Pos, entries: Vec<Entry>) -> Result<Node, YamlError> {
        let own_first_key = entries.first().and_then(|e| e.key.pos);
        let mut merged: Vec<(Node, Node)> = Vec::new();
        let mut own: Vec<(Node, Node)> = Vec::with_capacity(entries.len());
        for e in entries {
            if !e.merge {
                own.push((e.key, e.value));
                continue;
            }
            let vpos = e.value.pos.unwrap_or(pos);
            match e.value.kind {
                NodeKind::Map(m) => merged.extend(m),
                NodeKind::Seq(items) => {
                    let mut subs = Vec::with_capacity(items.len());
                    for it in items {
                        match it.kind {
                            NodeKind::Map(m) => subs.push(m),
                            _ => {
                                return Err(self.err(
                                    YamlErrorKind::Merge,
                                    it.pos.unwrap_or(vpos),
                                    "expected a mapping for merging",
                                ))
                            }
                        }
                    }
                    for m in subs.into_iter().rev() {
                        merged.extend(m);
                    }
                }
                _ => {
                    return Err(self.err(
                        YamlErrorKind::Merge,
                        vpos,
                        "expected a mapping or list of mappings for merging",
                    ))
                }
            }
        }
        merged.extend(own);
        // A block mapping's start event is marked at its first `:`; point at the first key.
        let pos = match own_first_key {
            Some(k) if k < pos => k,
            _ => pos,
        };
        Ok(Node {
            kind: NodeKind::Map(dedup(merged)),
            pos: Some(pos),
        })
    }

    fn check_collection_tag(
        &self,
        tag: Option<&Tag>,
        want: &str,
        pos: Pos,
    ) -> Result<(), YamlError> {
        match effective_tag(tag) {
            None => Ok(()),
            Some(t) if t == format!("{CORE}{want}") => Ok(()),
            Some(t) => Err(self.err(
                YamlErrorKind::Tag,
                pos,
                format!("could not determine a constructor for the tag '{t}'"),
            )),
        }
    }

    fn on_event(&mut self, ev: Event, mark: &Marker) -> Result<(), YamlError> {
        let pos = marker_pos(mark);
        match ev {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => Ok(()),
            Event::DocumentStart => {
                if self.root.is_some() {
                    return Err(self.err(
                        YamlErrorKind::MultipleDocuments,
                        pos,
                        "expected a single document in the stream, but found another document",
                    ));
                }
                Ok(())
            }
            Event::Alias(id) => {
                let Some(a) = self.anchors.get(&id) else {
                    return Err(self.err(
                        YamlErrorKind::UnknownAnchor,
                        pos,
                        "found undefined alias",
                    ));
                };
                let (size, height) = (a.size, a.height);
                if self.stack.len().saturating_add(height) > MAX_DEPTH {
                    return Err(self.err(
                        YamlErrorKind::TooDeep,
                        pos,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
                self.charge(size, pos)?;
                let node = self
                    .anchors
                    .get(&id)
                    .map(|a| a.node.clone())
                    .unwrap_or(Node::scalar(Scalar::Null, Some(pos)));
                self.push_value(node, false)
            }
            Event::Scalar(value, style, anchor, tag) => {
                self.charge(1, pos)?;
                let tag = effective_tag(tag.as_ref());
                let merge_key = tag.is_none() && style == TScalarStyle::Plain && value == "<<";
                let scalar = match &tag {
                    Some(t) => resolve_tagged(&value, t)
                        .map_err(|m| self.err(YamlErrorKind::Tag, pos, m))?,
                    None if style == TScalarStyle::Plain => resolve_plain(&value),
                    None => Scalar::Str(value),
                };
                let node = Node::scalar(scalar, Some(pos));
                self.register(anchor, &node);
                self.push_value(node, merge_key)
            }
            Event::SequenceStart(anchor, tag) => {
                self.charge(1, pos)?;
                self.check_collection_tag(tag.as_ref(), "seq", pos)?;
                if self.stack.len() >= MAX_DEPTH {
                    return Err(self.err(
                        YamlErrorKind::TooDeep,
                        pos,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
                self.stack.push(Frame::Seq {
                    pos,
                    anchor,
                    items: Vec::new(),
                });
                Ok(())
            }
            Event::MappingStart(anchor, tag) => {
                self.charge(1, pos)?;
                self.check_collection_tag(tag.as_ref(), "map", pos)?;
                if self.stack.len() >= MAX_DEPTH {
                    return Err(self.err(
                        YamlErrorKind::TooDeep,
                        pos,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
                self.stack.push(Frame::Map {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    pending: None,
                });
                Ok(())
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq { pos, anchor, items }) => {
                    let node = Node {
                        kind: NodeKind::Seq(items),
                        pos: Some(pos),
                    };
                    self.register(anchor, &node);
                    self.push_value(node, false)
                }
                _ => Err(self.err(YamlErrorKind::Syntax, pos, "unexpected end of sequence")),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map {
                    pos,
                    anchor,
                    entries,
                    ..
                }) => {
                    let node = self.finish_map(pos, entries)?;
                    self.register(anchor, &node);
                    self.push_value(node, false)
                }
                _ => Err(self.err(YamlErrorKind::Syntax, pos, "unexpected end of mapping")),
            },
        }
    }
}

/// Parse YAML text into a node tree. `Ok(None)` for an empty stream.
pub(crate) fn load_node(text: &str, file: &str) -> Result<Option<Node>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut b = Builder {
        text,
        file,
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        root: None,
    };
    loop {
        let (ev, mark) = parser.next_token().map_err(|e| {
            let pos = marker_pos(e.marker());
            b.err(YamlErrorKind::Syntax, pos, e.info())
        })?;
        if ev == Event::StreamEnd {
            break;
        }
        b.on_event(ev, &mark)?;
    }
    Ok(b.root)
}

// ---------------------------------------------------------------------------------------------
// Conversion to JSON + position index
// ---------------------------------------------------------------------------------------------

/// Positions of nodes, keyed by issue-style locations (`jobs[0].steps[1].type`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PosIndex {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
}

impl PosIndex {
    /// Position of the value at `loc` exactly.
    pub fn value_pos(&self, loc: &str) -> Option<Pos> {
        self.values.get(loc).copied()
    }

    /// Position of the mapping key whose value is at `loc` exactly.
    pub fn key_pos(&self, loc: &str) -> Option<Pos> {
        self.keys.get(loc).copied()
    }

    /// Best position for `loc`: the value there, else the nearest recorded ancestor
    /// (so a missing field points at the mapping that lacks it).
    pub fn lookup(&self, loc: &str) -> Option<Pos> {
        let mut cur = loc;
        loop {
            if let Some(p) = self.values.get(cur) {
                return Some(*p);
            }
            if cur == "<root>" || cur.is_empty() {
                return None;
            }
            cur = parent_loc(cur);
        }
    }

    /// Number of recorded values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// `a.b[0]` -> `a.b`, `a.b` -> `a`, `a` -> `<root>`.
fn parent_loc(loc: &str) -> &str {
    if loc.ends_with(']') {
        if let Some(i) = loc.rfind('[') {
            if i > 0 {
                return &loc[..i];
            }
        }
        return "<root>";
    }
    match loc.rfind('.') {
        Some(i) => &loc[..i],
        None => "<root>",
    }
}

/// The JSON view of a node and the positions of all its descendants (tests).
#[cfg(test)]
pub(crate) fn to_value_indexed(node: &Node, index: &mut PosIndex) -> Value {
    index_positions(node, index);
    to_value(node)
}

/// The JSON view of a node.
pub(crate) fn to_value(node: &Node) -> Value {
    match &node.kind {
        NodeKind::Scalar(s) => s.to_value(),
        NodeKind::Seq(items) => Value::Array(items.iter().map(to_value).collect()),
        NodeKind::Map(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                if let NodeKind::Scalar(ks) = &k.kind {
                    out.insert(ks.py_str(), to_value(v));
                }
            }
            Value::Object(out)
        }
    }
}

/// Record the position of `node` and of every node below it, keyed by issue location.
pub(crate) fn index_positions(node: &Node, index: &mut PosIndex) {
    // The loc of the current node, built incrementally (as `fmt_loc` would format the
    // segments leading to it) so that indexing a node costs no re-formatting.
    let mut loc = String::new();
    index_walk(node, &mut loc, 0, index, None);
}

fn record(index: &mut PosIndex, loc: &str, depth: usize, node: &Node, key: Option<Pos>) {
    let loc = if depth == 0 { "<root>" } else { loc };
    if let Some(p) = node.pos {
        if !index.values.contains_key(loc) {
            index.values.insert(loc.to_string(), p);
        }
    }
    if let Some(k) = key {
        if !index.keys.contains_key(loc) {
            index.keys.insert(loc.to_string(), k);
        }
    }
}

/// Appends a segment to `loc` the way `fmt_loc` joins them.
fn push_seg(loc: &mut String, depth: usize, seg: &Seg) {
    match seg {
        Seg::Field(f) => {
            if depth > 0 {
                loc.push('.');
            }
            loc.push_str(f);
        }
        Seg::Index(i) => {
            loc.push('[');
            loc.push_str(i);
            loc.push(']');
        }
    }
}

fn index_walk(node: &Node, loc: &mut String, depth: usize, index: &mut PosIndex, key: Option<Pos>) {
    if loc.len() <= MAX_INDEXED_LOC_LEN {
        record(index, loc, depth, node, key);
    }
    let len = loc.len();
    match &node.kind {
        NodeKind::Scalar(_) => {}
        NodeKind::Seq(items) => {
            for (i, it) in items.iter().enumerate() {
                push_seg(loc, depth, &Seg::Index(i.to_string()));
                index_walk(it, loc, depth + 1, index, None);
                loc.truncate(len);
            }
        }
        NodeKind::Map(m) => {
            for (k, v) in m {
                let ks = match &k.kind {
                    NodeKind::Scalar(s) => s,
                    _ => continue,
                };
                push_seg(loc, depth, &ks.key_seg());
                index_walk(v, loc, depth + 1, index, k.pos);
                loc.truncate(len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(s: &str) -> Value {
        let n = load_node(s, "t.yaml").unwrap().unwrap();
        to_value_indexed(&n, &mut PosIndex::default())
    }

    #[test]
    fn plain_scalar_resolution() {
        let v = load(
            "a: yes\nb: Off\nc: ~\nd:\ne: 0x_1F\nf: 017\ng: 0o17\nh: 1:30\ni: 1e5\nj: 1.0e+5\n\
             k: .5\nl: -.5\nm: +.inf\nn: 2024-01-01\no: 1_000\np: 0b101\nq: TRUE\nr: tRUE\n\
             s: '5'\nt: \"yes\"\nu: NULL\nv: -0\nw: 1.5\nx: 1:30.5\n",
        );
        let o = v.as_object().unwrap();
        assert_eq!(o["a"], Value::Bool(true));
        assert_eq!(o["b"], Value::Bool(false));
        assert_eq!(o["c"], Value::Null);
        assert_eq!(o["d"], Value::Null);
        assert_eq!(o["e"], 31);
        assert_eq!(o["f"], 15);
        assert_eq!(o["g"], "0o17");
        assert_eq!(o["h"], 90);
        assert_eq!(o["i"], "1e5");
        assert_eq!(o["j"], 100000.0);
        assert_eq!(o["k"], 0.5);
        assert_eq!(o["l"], "-.5");
        assert_eq!(o["m"], "inf");
        assert_eq!(o["n"], "2024-01-01");
        assert_eq!(o["o"], 1000);
        assert_eq!(o["p"], 5);
        assert_eq!(o["q"], Value::Bool(true));
        assert_eq!(o["r"], "tRUE");
        assert_eq!(o["s"], "5");
        assert_eq!(o["t"], "yes");
        assert_eq!(o["u"], Value::Null);
        assert_eq!(o["v"], 0);
        assert_eq!(o["w"], 1.5);
        assert_eq!(o["x"], 90.5);
    }

    #[test]
    fn tags() {
        let v = load("a: !!str 5\nb: !!int '7'\nc: ! 5\nd: !!float 3\n");
        assert_eq!(v["a"], "5");
        assert_eq!(v["b"], 7);
        assert_eq!(v["c"], 5);
        assert_eq!(v["d"], 3.0);
        let e = load_node("a: !foo 5\n", "t.yaml").unwrap_err();
        assert_eq!(e.kind, YamlErrorKind::Tag);
        assert!(e.message.contains("!foo"), "{e}");
    }

    #[test]
    fn anchors_merge_and_duplicates() {
        let v = load("a: &x [1]\nb: *x\n");
        assert_eq!(v["b"], serde_json::json!([1]));
        let v = load("b: 1\n<<: [{a: 1, b: 5}, {a: 2, c: 3}]\n");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["a", "c", "b"]);
        assert_eq!(v, serde_json::json!({"a": 1, "c": 3, "b": 1}));
        let v = load("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n");
        assert_eq!(v["d"], serde_json::json!({"x": 1, "y": 3}));
        let v = load("a: 1\nb: 2\na: 3\n");
        assert_eq!(v, serde_json::json!({"a": 3, "b": 2}));
        // Python key equality: 1 == True
        let v = load("1: a\ntrue: b\n");
        assert_eq!(v, serde_json::json!({"1": "b"}));
        // quoted << is a plain key
        let v = load("'<<': {a: 1}\n");
        assert_eq!(v, serde_json::json!({"<<": {"a": 1}}));
        assert_eq!(
            load_node("<<: 5\n", "t").unwrap_err().kind,
            YamlErrorKind::Merge
        );
    }

    #[test]
    fn non_string_keys_use_python_str() {
        let v = load("1: a\nnull: b\n1.5: c\nfalse: d\n");
        assert_eq!(
            v,
            serde_json::json!({"1": "a", "None": "b", "1.5": "c", "False": "d"})
        );
    }

    #[test]
    fn empty_documents() {
        assert!(load_node("", "t").unwrap().is_none());
        assert!(load_node("# only a comment\n", "t").unwrap().is_none());
        let n = load_node("---\n", "t").unwrap().unwrap();
        assert!(n.is_falsy());
    }

    #[test]
    fn syntax_error_display() {
        let e = load_node("a: 1\nb: [1, 2\nc: 3\n", "flow.yaml").unwrap_err();
        assert_eq!(e.kind, YamlErrorKind::Syntax);
        let s = e.to_string();
        assert!(
            s.starts_with(&format!("flow.yaml:{}:{}: ", e.pos.line, e.pos.column)),
            "{s}"
        );
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 3, "{s}");
        assert!(lines[2].ends_with('^'));
        assert_eq!(lines[2].len(), e.pos.column);

        let e = load_node("a: 1\n  b: 2\n", "flow.yaml").unwrap_err();
        assert_eq!(e.pos.line, 2, "{e}");
        assert_eq!(e.source_line, "  b: 2");
    }

    #[test]
    fn multiple_documents_rejected() {
        let e = load_node("a: 1\n---\nb: 2\n", "t").unwrap_err();
        assert_eq!(e.kind, YamlErrorKind::MultipleDocuments);
        assert_eq!(e.pos.line, 2);
    }

    #[test]
    fn unhashable_key_rejected() {
        let e = load_node("? [1, 2]\n: x\n", "t").unwrap_err();
        assert_eq!(e.kind, YamlErrorKind::UnhashableKey);
    }

    #[test]
    fn billion_laughs_is_capped() {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            s.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = load_node(&s, "bomb.yaml").unwrap_err();
        assert_eq!(e.kind, YamlErrorKind::TooLarge);
    }

    #[test]
    fn deep_nesting_is_capped() {
        let s = "[".repeat(100_000);
        let e = load_node(&s, "deep.yaml").unwrap_err();
        assert!(
            matches!(e.kind, YamlErrorKind::TooDeep | YamlErrorKind::Syntax),
            "{e}"
        );
        let mut s = String::new();
        for i in 0..(MAX_DEPTH + 10) {
            s.push_str(&" ".repeat(i));
            s.push_str("a:\n");
        }
        let e = load_node(&s, "deep.yaml").unwrap_err();
        assert_eq!(e.kind, YamlErrorKind::TooDeep);
        // Just under the limit is fine.
        let s = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(load_node(&s, "ok.yaml").is_ok());
    }

    #[test]
    fn huge_scalars_and_garbage_do_not_panic() {
        let big = "x".repeat(5_000_000);
        let v = load(&format!("a: {big}\n"));
        assert_eq!(v["a"].as_str().map(str::len), Some(5_000_000));
        // implicit keys are limited to 1024 characters by YAML itself
        let key = "k".repeat(1000);
        let mut s = String::new();
        for i in 0..50 {
            s.push_str(&" ".repeat(i));
            s.push_str(&key);
            s.push_str(":\n");
        }
        let n = load_node(&s, "t").unwrap().unwrap();
        let mut idx = PosIndex::default();
        let _ = to_value_indexed(&n, &mut idx);
        for junk in [
            "\u{0}",
            "{",
            "}",
            "]",
            "- - - -",
            "&a",
            "*a",
            "a: *b",
            "? ",
            "!!",
            "%YAML 1.1\n---\n",
            "\t\t:",
            "'unterminated",
            "\"\\uZZZZ\"",
            "a: &x\nb: *x\n",
            ": :",
            "[a: b]",
            "- &a\n- *a",
        ] {
            let _ = load_node(junk, "junk");
        }
    }

    #[test]
    fn positions_are_indexed() {
        let n = load_node(
            "flow:\n  id: x\njobs:\n  - id: a\n    steps:\n      - id: s\n        type: t\n",
            "t",
        )
        .unwrap()
        .unwrap();
        let mut idx = PosIndex::default();
        let _ = to_value_indexed(&n, &mut idx);
        assert_eq!(idx.value_pos("flow.id"), Some(Pos { line: 2, column: 7 }));
        assert_eq!(idx.key_pos("flow.id"), Some(Pos { line: 2, column: 3 }));
        assert_eq!(
            idx.value_pos("jobs[0].steps[0].type"),
            Some(Pos {
                line: 7,
                column: 15
            })
        );
        // a block mapping starts at its first key
        assert_eq!(idx.value_pos("jobs[0]"), Some(Pos { line: 4, column: 5 }));
        // missing -> nearest ancestor
        assert_eq!(
            idx.lookup("jobs[0].steps[0].on_no_data"),
            idx.value_pos("jobs[0].steps[0]")
        );
        assert_eq!(idx.lookup("nope"), idx.value_pos("<root>"));
    }

    #[test]
    fn float_repr() {
        assert_eq!(py_float_str(1.5), "1.5");
        assert_eq!(py_float_str(2.0), "2.0");
        assert_eq!(py_float_str(1e20), "1e+20");
        assert_eq!(py_float_str(1.5e-5), "1.5e-05");
    }
}
