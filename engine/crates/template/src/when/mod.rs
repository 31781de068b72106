//! `job.when` expressions (§2.8).
//!
//! * [`validate`] reproduces the validator `_validate_when_expr`.
//! * [`evaluate`] reproduces the runner `_safe_eval_when`: the expression is
//!   parsed and checked like Python, translated to a minijinja expression and
//!   evaluated on an empty minijinja environment (no filters/tests/functions,
//!   strict undefined). A Python-semantics guard walks the same AST first
//!   (same short-circuit order) so that Python's `AttributeError` and
//!   `TypeError` cases become errors, which minijinja would not raise.

mod parse;

use std::collections::VecDeque;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::{Environment, UndefinedBehavior, Value as MjValue};
use serde_json::{Map, Value};

use parse::{CmpOp, Const, Node};

/// Error of [`evaluate`]; Display is the runner's *inner* message (the caller
/// composes `Invalid job.when for job_id=<id>: <inner>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhenError {
    /// Python `SyntaxError` str: `invalid syntax (<unknown>, line 1)`.
    #[error("{message} (<unknown>, line {line})")]
    Syntax { message: String, line: usize },
    #[error("Unsupported expression in job.when: {node}")]
    UnsupportedNode { node: String },
    #[error("Unsupported name in job.when: {name}")]
    UnsupportedName { name: String },
    /// Python `AttributeError`; `path` is the dotted path that failed.
    #[error("'{type_name}' object has no attribute '{attr}' (path: {path})")]
    Attribute {
        type_name: String,
        attr: String,
        path: String,
    },
    /// Python `TypeError` for ordering comparisons between unorderable types.
    #[error("'{op}' not supported between instances of '{left}' and '{right}'")]
    Type {
        op: String,
        left: String,
        right: String,
    },
    /// A constant Python accepts but the engine cannot evaluate
    /// (complex, bytes, `...`, integers beyond i128).
    #[error("unsupported constant in job.when: {what}")]
    UnsupportedConstant { what: String },
    /// An error reported by minijinja.
    #[error("{message}")]
    Engine { message: String },
}

/// §2.8 step 2: plain substring replaces, in this order.
pub fn normalize(expr: &str) -> String {
    expr.replace(" true", " True")
        .replace(" false", " False")
        .replace("==true", "== True")
        .replace("==false", "== False")
        .replace("!=true", "!= True")
        .replace("!=false", "!= False")
}

enum Check {
    Node(String),
    Name(String),
}

/// `ast.walk` (breadth-first) over the tree, reporting the first node class
/// outside the allowed set, or the first `Name` other than `jobs`.
fn check_tree(root: &Node) -> Option<Check> {
    enum Item<'a> {
        Node(&'a Node),
        Op(&'static str),
    }
    let mut queue: VecDeque<Item<'_>> = VecDeque::new();
    queue.push_back(Item::Node(root));
    while let Some(item) = queue.pop_front() {
        let node = match item {
            Item::Op(name) => {
                if matches!(
                    name,
                    "And" | "Or" | "Not" | "Eq" | "NotEq" | "Lt" | "LtE" | "Gt" | "GtE"
                ) {
                    continue;
                }
                return Some(Check::Node(name.to_string()));
            }
            Item::Node(n) => n,
        };
        match node {
            Node::Other(name) => return Some(Check::Node((*name).to_string())),
            Node::Name(id) => {
                if id != "jobs" {
                    return Some(Check::Name(id.clone()));
                }
            }
            Node::BoolOp { is_and, values } => {
                queue.push_back(Item::Op(if *is_and { "And" } else { "Or" }));
                queue.extend(values.iter().map(Item::Node));
            }
            Node::UnaryOp { op, operand } => {
                queue.push_back(Item::Op(op));
                queue.push_back(Item::Node(operand));
            }
            Node::Compare {
                left,
                ops,
                comparators,
            } => {
                queue.push_back(Item::Node(left));
                queue.extend(ops.iter().map(|o| Item::Op(o.class_name())));
                queue.extend(comparators.iter().map(Item::Node));
            }
            Node::Attribute { value, .. } => queue.push_back(Item::Node(value)),
            Node::Constant(_) => {}
        }
    }
    None
}

enum Prepared {
    AlwaysTrue,
    Tree(Node),
}

fn prepare(expr: &str) -> Result<Prepared, WhenError> {
    let raw = expr.trim_matches(crate::render::py_isspace);
    if raw.is_empty() {
        return Ok(Prepared::AlwaysTrue);
    }
    let norm = normalize(raw);
    let tree =
        parse::parse(&norm).map_err(|(message, line)| WhenError::Syntax { message, line })?;
    match check_tree(&tree) {
        Some(Check::Node(node)) => Err(WhenError::UnsupportedNode { node }),
        Some(Check::Name(name)) => Err(WhenError::UnsupportedName { name }),
        None => Ok(Prepared::Tree(tree)),
    }
}

/// Validate a `when` expression like the validator: `Ok(())`, or exactly
/// `Syntax error: <msg>` / `Unsupported node: <Node>` / `Unsupported name: <id>`.
pub fn validate(expr: &str) -> Result<(), String> {
    match prepare(expr) {
        Ok(_) => Ok(()),
        Err(WhenError::Syntax { message, .. }) => Err(format!("Syntax error: {message}")),
        Err(WhenError::UnsupportedNode { node }) => Err(format!("Unsupported node: {node}")),
        Err(WhenError::UnsupportedName { name }) => Err(format!("Unsupported name: {name}")),
        Err(other) => Err(other.to_string()),
    }
}

/// Evaluate a `when` expression against the job context (`jobs` root, §3.4).
/// Blank expressions are true.
pub fn evaluate(expr: &str, jobs: &Value) -> Result<bool, WhenError> {
    let tree = match prepare(expr)? {
        Prepared::AlwaysTrue => return Ok(true),
        Prepared::Tree(t) => t,
    };
    // Python-semantics guard: AttributeError / TypeError / constants.
    guard::eval(&tree, jobs)?;
    // minijinja evaluation of the translated expression.
    let mut consts: Vec<MjValue> = Vec::new();
    let source = translate(&tree, &mut consts)?;
    let mut env = Environment::empty();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let compiled = env.compile_expression(&source).map_err(engine_err)?;
    let mut ctx: Vec<(String, MjValue)> = vec![("jobs".to_string(), to_mj(jobs))];
    for (i, c) in consts.into_iter().enumerate() {
        ctx.push((format!("lit_{i}"), c));
    }
    let ctx = MjValue::from_object(Namespace(ctx));
    let value = compiled.eval(ctx).map_err(engine_err)?;
    Ok(value.is_true())
}

fn engine_err(e: minijinja::Error) -> WhenError {
    WhenError::Engine {
        message: e.to_string(),
    }
}

/// A Python `SimpleNamespace`: attribute lookup by key, always truthy.
#[derive(Debug)]
struct Namespace(Vec<(String, MjValue)>);

impl Object for Namespace {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        let key = key.as_str()?;
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys: Vec<MjValue> = self
            .0
            .iter()
            .map(|(k, _)| MjValue::from(k.as_str()))
            .collect();
        Enumerator::Values(keys)
    }

    fn is_true(self: &Arc<Self>) -> bool {
        true
    }
}

fn to_mj(v: &Value) -> MjValue {
    match v {
        Value::Null => MjValue::from(()),
        Value::Bool(b) => MjValue::from(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                MjValue::from(i)
            } else if let Some(u) = n.as_u64() {
                MjValue::from(u)
            } else {
                MjValue::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => MjValue::from(s.as_str()),
        Value::Array(items) => MjValue::from(items.iter().map(to_mj).collect::<Vec<_>>()),
        Value::Object(map) => MjValue::from_object(Namespace(
            map.iter().map(|(k, v)| (k.clone(), to_mj(v))).collect(),
        )),
    }
}

fn is_dunder(attr: &str) -> bool {
    attr.len() > 4 && attr.starts_with("__") && attr.ends_with("__")
}

fn push_const(consts: &mut Vec<MjValue>, v: MjValue) -> String {
    consts.push(v);
    format!("lit_{}", consts.len() - 1)
}

/// Translate the checked AST into a minijinja expression. Literals and
/// attribute names are passed as context variables (`lit_N`) so no quoting
/// or keyword clash can occur.
fn translate(node: &Node, consts: &mut Vec<MjValue>) -> Result<String, WhenError> {
    Ok(match node {
        Node::BoolOp { is_and, values } => {
            let parts = values
                .iter()
                .map(|v| translate(v, consts))
                .collect::<Result<Vec<_>, _>>()?;
            format!("({})", parts.join(if *is_and { " and " } else { " or " }))
        }
        Node::UnaryOp { operand, .. } => format!("(not {})", translate(operand, consts)?),
        Node::Compare {
            left,
            ops,
            comparators,
        } => {
            let mut operands = vec![translate(left, consts)?];
            for c in comparators {
                operands.push(translate(c, consts)?);
            }
            let parts: Vec<String> = ops
                .iter()
                .enumerate()
                .map(|(i, op)| format!("({} {} {})", operands[i], op.symbol(), operands[i + 1]))
                .collect();
            format!("({})", parts.join(" and "))
        }
        Node::Name(_) => "jobs".to_string(),
        Node::Attribute { value, attr } => {
            if is_dunder(attr) {
                // Guard already checked the base; the attribute is an opaque object.
                push_const(consts, MjValue::from(format!("<python attribute {attr}>")))
            } else {
                let base = translate(value, consts)?;
                let key = push_const(consts, MjValue::from(attr.as_str()));
                format!("{base}[{key}]")
            }
        }
        Node::Constant(c) => match c {
            Const::True => "true".to_string(),
            Const::False => "false".to_string(),
            Const::None => "none".to_string(),
            Const::Int(i) => push_const(consts, MjValue::from(*i)),
            Const::Float(f) => push_const(consts, MjValue::from(*f)),
            Const::Str(s) => push_const(consts, MjValue::from(s.as_str())),
            other => return Err(unsupported_const(other)),
        },
        Node::Other(name) => {
            return Err(WhenError::UnsupportedNode {
                node: (*name).to_string(),
            })
        }
    })
}

fn unsupported_const(c: &Const) -> WhenError {
    let what = match c {
        Const::Complex => "complex".to_string(),
        Const::Bytes => "bytes".to_string(),
        Const::Ellipsis => "Ellipsis".to_string(),
        Const::BigInt(s) => s.clone(),
        other => format!("{other:?}"),
    };
    WhenError::UnsupportedConstant { what }
}

mod guard {
    //! Python-semantics evaluation used to raise Python's errors.

    use super::*;

    #[derive(Debug, Clone)]
    pub(super) enum Py<'a> {
        None,
        Bool(bool),
        Int(i128),
        Float(f64),
        Str(std::borrow::Cow<'a, str>),
        List(&'a [Value]),
        Ns(&'a Map<String, Value>),
        Opaque(String),
    }

    fn from_json(v: &Value) -> Py<'_> {
        match v {
            Value::Null => Py::None,
            Value::Bool(b) => Py::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Py::Int(i128::from(i))
                } else if let Some(u) = n.as_u64() {
                    Py::Int(i128::from(u))
                } else {
                    Py::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => Py::Str(s.as_str().into()),
            Value::Array(a) => Py::List(a),
            Value::Object(m) => Py::Ns(m),
        }
    }

    fn type_name(v: &Py<'_>) -> &'static str {
        match v {
            Py::None => "NoneType",
            Py::Bool(_) => "bool",
            Py::Int(_) => "int",
            Py::Float(_) => "float",
            Py::Str(_) => "str",
            Py::List(_) => "list",
            Py::Ns(_) => "types.SimpleNamespace",
            Py::Opaque(_) => "object",
        }
    }

    pub(super) fn truthy(v: &Py<'_>) -> bool {
        match v {
            Py::None => false,
            Py::Bool(b) => *b,
            Py::Int(i) => *i != 0,
            Py::Float(f) => *f != 0.0,
            Py::Str(s) => !s.is_empty(),
            Py::List(l) => !l.is_empty(),
            Py::Ns(_) | Py::Opaque(_) => true,
        }
    }

    fn as_num(v: &Py<'_>) -> Option<f64> {
        match v {
            Py::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Py::Int(i) => Some(*i as f64),
            Py::Float(f) => Some(*f),
            _ => None,
        }
    }

    fn as_int(v: &Py<'_>) -> Option<i128> {
        match v {
            Py::Bool(b) => Some(i128::from(*b)),
            Py::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub(super) fn py_eq(a: &Py<'_>, b: &Py<'_>) -> bool {
        if let (Some(x), Some(y)) = (as_int(a), as_int(b)) {
            return x == y;
        }
        if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
            return x == y;
        }
        match (a, b) {
            (Py::None, Py::None) => true,
            (Py::Str(x), Py::Str(y)) => x == y,
            (Py::List(x), Py::List(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .zip(y.iter())
                        .all(|(p, q)| py_eq(&from_json(p), &from_json(q)))
            }
            (Py::Ns(x), Py::Ns(y)) => {
                x.len() == y.len()
                    && x.iter().all(|(k, v)| {
                        y.get(k)
                            .is_some_and(|w| py_eq(&from_json(v), &from_json(w)))
                    })
            }
            (Py::Opaque(x), Py::Opaque(y)) => x == y,
            _ => false,
        }
    }

    fn py_order(op: CmpOp, a: &Py<'_>, b: &Py<'_>) -> Result<std::cmp::Ordering, WhenError> {
        use std::cmp::Ordering;
        if let (Some(x), Some(y)) = (as_int(a), as_int(b)) {
            return Ok(x.cmp(&y));
        }
        if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
            // NaN: every ordering comparison is false; map to a value that
            // makes `<`,`>`,`<=`,`>=` false is impossible, so report Equal
            // only for equal numbers and handle NaN in `compare`.
            return Ok(x.partial_cmp(&y).unwrap_or(Ordering::Equal));
        }
        match (a, b) {
            (Py::Str(x), Py::Str(y)) => Ok(x.cmp(y)),
            (Py::List(x), Py::List(y)) => {
                for (p, q) in x.iter().zip(y.iter()) {
                    let (p, q) = (from_json(p), from_json(q));
                    if !py_eq(&p, &q) {
                        return py_order(op, &p, &q);
                    }
                }
                Ok(x.len().cmp(&y.len()))
            }
            _ => Err(WhenError::Type {
                op: op.symbol().to_string(),
                left: type_name(a).to_string(),
                right: type_name(b).to_string(),
            }),
        }
    }

    fn compare(op: CmpOp, a: &Py<'_>, b: &Py<'_>) -> Result<bool, WhenError> {
        use std::cmp::Ordering::*;
        Ok(match op {
            CmpOp::Eq => py_eq(a, b),
            CmpOp::NotEq => !py_eq(a, b),
            _ => {
                if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
                    if x.is_nan() || y.is_nan() {
                        return Ok(false);
                    }
                }
                let ord = py_order(op, a, b)?;
                match op {
                    CmpOp::Lt => ord == Less,
                    CmpOp::LtE => ord != Greater,
                    CmpOp::Gt => ord == Greater,
                    _ => ord != Less,
                }
            }
        })
    }

    const OBJECT_DUNDERS: &[&str] = &[
        "__class__",
        "__dict__",
        "__doc__",
        "__module__",
        "__init__",
        "__repr__",
        "__eq__",
        "__ne__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
        "__hash__",
        "__str__",
        "__getattribute__",
        "__setattr__",
        "__delattr__",
        "__reduce__",
        "__reduce_ex__",
        "__sizeof__",
        "__format__",
        "__dir__",
        "__init_subclass__",
        "__subclasshook__",
        "__new__",
    ];

    fn path_of(node: &Node) -> String {
        match node {
            Node::Name(n) => n.clone(),
            Node::Attribute { value, attr } => format!("{}.{attr}", path_of(value)),
            _ => "<expr>".to_string(),
        }
    }

    pub(super) fn eval<'a>(node: &Node, jobs: &'a Value) -> Result<Py<'a>, WhenError> {
        match node {
            Node::Name(_) => Ok(from_json(jobs)),
            Node::Constant(c) => Ok(match c {
                Const::True => Py::Bool(true),
                Const::False => Py::Bool(false),
                Const::None => Py::None,
                Const::Int(i) => Py::Int(*i),
                Const::Float(f) => Py::Float(*f),
                Const::Str(s) => Py::Str(s.clone().into()),
                other => return Err(unsupported_const(other)),
            }),
            Node::Attribute { value, attr } => {
                let base = eval(value, jobs)?;
                if let Py::Ns(map) = &base {
                    if let Some(v) = map.get(attr) {
                        return Ok(from_json(v));
                    }
                }
                if OBJECT_DUNDERS.contains(&attr.as_str()) {
                    return Ok(Py::Opaque(format!("<python attribute {attr}>")));
                }
                Err(WhenError::Attribute {
                    type_name: type_name(&base).to_string(),
                    attr: attr.clone(),
                    path: path_of(node),
                })
            }
            Node::BoolOp { is_and, values } => {
                let mut last = Py::None;
                for v in values {
                    last = eval(v, jobs)?;
                    if truthy(&last) != *is_and {
                        return Ok(last);
                    }
                }
                Ok(last)
            }
            Node::UnaryOp { operand, .. } => Ok(Py::Bool(!truthy(&eval(operand, jobs)?))),
            Node::Compare {
                left,
                ops,
                comparators,
            } => {
                let mut a = eval(left, jobs)?;
                for (op, c) in ops.iter().zip(comparators) {
                    let b = eval(c, jobs)?;
                    if !compare(*op, &a, &b)? {
                        return Ok(Py::Bool(false));
                    }
                    a = b;
                }
                Ok(Py::Bool(true))
            }
            Node::Other(name) => Err(WhenError::UnsupportedNode {
                node: (*name).to_string(),
            }),
        }
    }
}
