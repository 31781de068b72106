//! Tokenizer and recursive-descent parser for the Python expression subset
//! that `ast.parse(mode="eval")` would accept, producing enough AST to
//! reproduce `ast.walk` (breadth-first) checks and to evaluate the allowed
//! subset. Syntax error messages mimic CPython 3.11 for the common cases.

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Const {
    Int(i128),
    /// An integer literal too large for i128 (kept as text).
    BigInt(String),
    Float(f64),
    Complex,
    Str(String),
    Bytes,
    True,
    False,
    None,
    Ellipsis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtE,
    Gt,
    GtE,
    In,
    NotIn,
    Is,
    IsNot,
}

impl CmpOp {
    pub(crate) fn class_name(self) -> &'static str {
        match self {
            CmpOp::Eq => "Eq",
            CmpOp::NotEq => "NotEq",
            CmpOp::Lt => "Lt",
            CmpOp::LtE => "LtE",
            CmpOp::Gt => "Gt",
            CmpOp::GtE => "GtE",
            CmpOp::In => "In",
            CmpOp::NotIn => "NotIn",
            CmpOp::Is => "Is",
            CmpOp::IsNot => "IsNot",
        }
    }

    pub(crate) fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::NotEq => "!=",
            CmpOp::Lt => "<",
            CmpOp::LtE => "<=",
            CmpOp::Gt => ">",
            CmpOp::GtE => ">=",
            CmpOp::In => "in",
            CmpOp::NotIn => "not in",
            CmpOp::Is => "is",
            CmpOp::IsNot => "is not",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// `and` (`is_and = true`) / `or`.
    BoolOp {
        is_and: bool,
        values: Vec<Node>,
    },
    /// `UnaryOp` with the operator class name (`Not`, `USub`, `UAdd`, `Invert`).
    UnaryOp {
        op: &'static str,
        operand: Box<Node>,
    },
    Compare {
        left: Box<Node>,
        ops: Vec<CmpOp>,
        comparators: Vec<Node>,
    },
    Name(String),
    Attribute {
        value: Box<Node>,
        attr: String,
    },
    Constant(Const),
    /// Any node class outside the allowed set; its children never matter
    /// because `ast.walk` reports it before visiting them.
    Other(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Num(Const),
    Str {
        value: Option<String>,
        fstring: bool,
    },
    Op(&'static str),
    /// A character the tokenizer passes through as an error token.
    Bad,
    Newline,
    End,
}

const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

const OPS3: &[&str] = &["**=", "//=", ">>=", "<<=", "..."];
const OPS2: &[&str] = &[
    "==", "!=", "<=", ">=", "**", "//", "<<", ">>", "->", ":=", "+=", "-=", "*=", "/=", "%=", "&=",
    "|=", "^=", "@=",
];
const OPS1: &[&str] = &[
    "+", "-", "*", "/", "%", "@", "&", "|", "^", "~", "<", ">", "(", ")", "[", "]", "{", "}", ",",
    ":", ".", ";", "=",
];

fn is_id_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_id_cont(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

struct Lexer<'a> {
    src: &'a str,
    chars: Vec<char>,
    pos: usize,
    line: usize,
    brackets: Vec<char>,
    toks: Vec<Tok>,
}

fn string_prefix(name: &str) -> Option<(bool, bool, bool)> {
    // (raw, bytes, fstring)
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "r" => Some((true, false, false)),
        "u" => Some((false, false, false)),
        "b" => Some((false, true, false)),
        "f" => Some((false, false, true)),
        "br" | "rb" => Some((true, true, false)),
        "fr" | "rf" => Some((true, false, true)),
        _ => None,
    }
}

impl<'a> Lexer<'a> {
    fn peek(&self, off: usize) -> Option<char> {
        self.chars.get(self.pos + off).copied()
    }

    fn run(mut self) -> Result<Vec<Tok>, String> {
        let _ = self.src;
        while let Some(c) = self.peek(0) {
            match c {
                ' ' | '\t' | '\u{c}' | '\r' => self.pos += 1,
                '\n' => {
                    self.pos += 1;
                    self.line += 1;
                    if self.brackets.is_empty()
                        && !matches!(self.toks.last(), Some(Tok::Newline) | None)
                    {
                        self.toks.push(Tok::Newline);
                    }
                }
                '#' => {
                    while matches!(self.peek(0), Some(ch) if ch != '\n') {
                        self.pos += 1;
                    }
                }
                '\\' => {
                    if self.peek(1) == Some('\n') {
                        self.pos += 2;
                        self.line += 1;
                    } else {
                        return Err(
                            "unexpected character after line continuation character".to_string()
                        );
                    }
                }
                '\'' | '"' => self.string(false, false, false)?,
                c if c.is_ascii_digit() => self.number()?,
                '.' if matches!(self.peek(1), Some(d) if d.is_ascii_digit()) => self.number()?,
                c if is_id_start(c) => {
                    let start = self.pos;
                    while matches!(self.peek(0), Some(ch) if is_id_cont(ch)) {
                        self.pos += 1;
                    }
                    let name: String = self.chars[start..self.pos].iter().collect();
                    if matches!(self.peek(0), Some('\'' | '"')) {
                        if let Some((raw, bytes, fstring)) = string_prefix(&name) {
                            self.string(raw, bytes, fstring)?;
                            continue;
                        }
                    }
                    self.toks.push(Tok::Name(name));
                }
                _ => self.op(c)?,
            }
        }
        if let Some(open) = self.brackets.last() {
            return Err(format!("'{open}' was never closed"));
        }
        self.toks.push(Tok::End);
        Ok(self.toks)
    }

    fn op(&mut self, c: char) -> Result<(), String> {
        let rest: String = self.chars[self.pos..self.chars.len().min(self.pos + 3)]
            .iter()
            .collect();
        for table in [OPS3, OPS2, OPS1] {
            if let Some(op) = table.iter().find(|op| rest.starts_with(**op)) {
                self.pos += op.chars().count();
                match *op {
                    "(" | "[" | "{" => {
                        if self.brackets.len() >= 200 {
                            return Err("too many nested parentheses".to_string());
                        }
                        self.brackets.push(c)
                    }
                    ")" | "]" | "}" => match self.brackets.pop() {
                        None => return Err(format!("unmatched '{c}'")),
                        Some(open) => {
                            let expected = match open {
                                '(' => ')',
                                '[' => ']',
                                _ => '}',
                            };
                            if expected != c {
                                return Err(format!(
                                    "closing parenthesis '{c}' does not match opening parenthesis '{open}'"
                                ));
                            }
                        }
                    },
                    _ => {}
                }
                self.toks.push(Tok::Op(op));
                return Ok(());
            }
        }
        if c.is_ascii() {
            // `$`, `?`, `!`, backtick...: error token, reported by the parser.
            self.pos += 1;
            self.toks.push(Tok::Bad);
            Ok(())
        } else {
            Err(format!("invalid character '{c}' (U+{:04X})", c as u32))
        }
    }

    fn digits(&mut self, radix: u32, out: &mut String) -> Result<bool, ()> {
        // Digits with single underscores between them. Ok(false) = no digits.
        let mut any = false;
        loop {
            match self.peek(0) {
                Some(d) if d.is_digit(radix) => {
                    out.push(d);
                    any = true;
                    self.pos += 1;
                }
                Some('_') if any => {
                    if matches!(self.peek(1), Some(d) if d.is_digit(radix)) {
                        self.pos += 1;
                    } else {
                        return Err(());
                    }
                }
                _ => return Ok(any),
            }
        }
    }

    fn number(&mut self) -> Result<(), String> {
        let invalid_dec = || "invalid decimal literal".to_string();
        let c0 = self.peek(0).unwrap_or('0');
        if c0 == '0' {
            if let Some(p) = self.peek(1) {
                let (radix, kind) = match p {
                    'x' | 'X' => (16, "hexadecimal"),
                    'o' | 'O' => (8, "octal"),
                    'b' | 'B' => (2, "binary"),
                    _ => (0, ""),
                };
                if radix != 0 {
                    self.pos += 2;
                    if self.peek(0) == Some('_') {
                        self.pos += 1;
                    }
                    let mut ds = String::new();
                    let ok = self.digits(radix, &mut ds);
                    let err = format!("invalid {kind} literal");
                    if !matches!(ok, Ok(true)) {
                        return Err(err);
                    }
                    if matches!(self.peek(0), Some(ch) if is_id_cont(ch)) {
                        return Err(err);
                    }
                    let c = match i128::from_str_radix(&ds, radix) {
                        Ok(v) => Const::Int(v),
                        Err(_) => Const::BigInt(ds),
                    };
                    self.toks.push(Tok::Num(c));
                    return Ok(());
                }
            }
        }
        let mut text = String::new();
        let mut is_float = false;
        if c0 != '.' {
            self.digits(10, &mut text).map_err(|_| invalid_dec())?;
        }
        if self.peek(0) == Some('.') {
            is_float = true;
            self.pos += 1;
            text.push('.');
            self.digits(10, &mut text).map_err(|_| invalid_dec())?;
        }
        if matches!(self.peek(0), Some('e' | 'E')) {
            let sign = self.peek(1);
            let digit_at = if matches!(sign, Some('+' | '-')) {
                2
            } else {
                1
            };
            if matches!(self.peek(digit_at), Some(d) if d.is_ascii_digit()) {
                is_float = true;
                text.push('e');
                if digit_at == 2 {
                    text.push(sign.unwrap_or('+'));
                }
                self.pos += digit_at;
                self.digits(10, &mut text).map_err(|_| invalid_dec())?;
            } else {
                return Err(invalid_dec());
            }
        }
        let mut imag = false;
        if matches!(self.peek(0), Some('j' | 'J')) {
            imag = true;
            self.pos += 1;
        }
        if matches!(self.peek(0), Some(ch) if is_id_cont(ch)) {
            return Err(invalid_dec());
        }
        let c = if imag {
            Const::Complex
        } else if is_float {
            Const::Float(text.parse::<f64>().unwrap_or(f64::INFINITY))
        } else {
            if text.len() > 1 && text.starts_with('0') && text.chars().any(|d| d != '0') {
                return Err("leading zeros in decimal integer literals are not permitted; use an 0o prefix for octal integers".to_string());
            }
            match text.parse::<i128>() {
                Ok(v) => Const::Int(v),
                Err(_) => Const::BigInt(text),
            }
        };
        self.toks.push(Tok::Num(c));
        Ok(())
    }

    fn string(&mut self, raw: bool, bytes: bool, fstring: bool) -> Result<(), String> {
        let q = self.peek(0).unwrap_or('\'');
        let triple = self.peek(1) == Some(q) && self.peek(2) == Some(q);
        self.pos += if triple { 3 } else { 1 };
        let mut out = String::new();
        loop {
            let Some(c) = self.peek(0) else {
                return Err(if triple {
                    format!(
                        "unterminated triple-quoted string literal (detected at line {})",
                        self.line
                    )
                } else {
                    format!(
                        "unterminated string literal (detected at line {})",
                        self.line
                    )
                });
            };
            if c == q {
                if !triple {
                    self.pos += 1;
                    break;
                }
                if self.peek(1) == Some(q) && self.peek(2) == Some(q) {
                    self.pos += 3;
                    break;
                }
            }
            if c == '\n' {
                if !triple {
                    return Err(format!(
                        "unterminated string literal (detected at line {})",
                        self.line
                    ));
                }
                self.line += 1;
            }
            if c == '\\' {
                let Some(n) = self.peek(1) else {
                    self.pos += 1;
                    continue;
                };
                self.pos += 2;
                if n == '\n' {
                    self.line += 1;
                }
                if raw {
                    out.push('\\');
                    out.push(n);
                    continue;
                }
                match n {
                    '\n' => {}
                    '\\' | '\'' | '"' => out.push(n),
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    '0'..='7' => {
                        let mut v = n.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            match self.peek(0).and_then(|d| d.to_digit(8)) {
                                Some(d) => {
                                    v = v * 8 + d;
                                    self.pos += 1;
                                }
                                None => break,
                            }
                        }
                        out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                    }
                    'x' | 'u' | 'U' if !(bytes && n != 'x') => {
                        let len = match n {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..len).filter_map(|i| self.peek(i)).collect();
                        let valid = hex.chars().count() == len
                            && hex.chars().all(|h| h.is_ascii_hexdigit());
                        let ch = if valid {
                            u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32)
                        } else {
                            None
                        };
                        match ch {
                            Some(ch) => {
                                self.pos += len;
                                out.push(ch);
                            }
                            None => {
                                return Err(format!(
                                    "(unicode error) 'unicodeescape' codec can't decode bytes: truncated \\{n}{} escape",
                                    "X".repeat(len)
                                ))
                            }
                        }
                    }
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
                continue;
            }
            out.push(c);
            self.pos += 1;
        }
        self.toks.push(Tok::Str {
            value: if bytes { None } else { Some(out) },
            fstring,
        });
        Ok(())
    }
}

/// Parse result: the expression, or a CPython-like syntax error message and
/// the line it is reported on.
pub(crate) fn parse(src: &str) -> Result<Node, (String, usize)> {
    let lexer = Lexer {
        src,
        chars: src.chars().collect(),
        pos: 0,
        line: 1,
        brackets: Vec::new(),
        toks: Vec::new(),
    };
    let toks = lexer.run().map_err(|m| (m, 1))?;
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let node = p.expressions().map_err(|m| (m, 1))?;
    while p.peek() == &Tok::Newline {
        p.pos += 1;
    }
    if p.peek() != &Tok::End {
        return Err((p.invalid(), 1));
    }
    Ok(node)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    /// Bracket nesting, for the "Perhaps you forgot a comma?" hint.
    depth: usize,
}

type PResult = Result<Node, String>;

/// Nesting limit of the recursive parser (CPython allows 200 brackets).
const MAX_DEPTH: usize = 100;

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).unwrap_or(&Tok::End)
    }

    fn peek_at(&self, off: usize) -> &Tok {
        self.toks.get(self.pos + off).unwrap_or(&Tok::End)
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Name(n) if n == kw)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if self.is_op(op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn invalid(&self) -> String {
        "invalid syntax".to_string()
    }

    fn expect_op(&mut self, op: &str) -> Result<(), String> {
        if self.eat_op(op) {
            return Ok(());
        }
        // Inside brackets, `a b` gives CPython's comma hint.
        if self.depth > 0 && self.starts_expression() {
            let save = self.pos;
            let ok = self.expression().is_ok();
            self.pos = save;
            if ok {
                return Err("invalid syntax. Perhaps you forgot a comma?".to_string());
            }
        }
        Err(self.invalid())
    }

    fn starts_expression(&self) -> bool {
        match self.peek() {
            Tok::Name(n) => {
                !KEYWORDS.contains(&n.as_str())
                    || matches!(
                        n.as_str(),
                        "True" | "False" | "None" | "not" | "lambda" | "await"
                    )
            }
            Tok::Num(_) | Tok::Str { .. } => true,
            Tok::Op(o) => matches!(*o, "(" | "[" | "{" | "-" | "+" | "~" | "..."),
            _ => false,
        }
    }

    /// `expressions`: `a, b` is a Tuple.
    fn expressions(&mut self) -> PResult {
        let first = self.expression()?;
        if self.is_op(",") {
            while self.eat_op(",") {
                if !self.starts_expression() {
                    break;
                }
                self.expression()?;
            }
            return Ok(Node::Other("Tuple"));
        }
        Ok(first)
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("too many nested parentheses".to_string());
        }
        Ok(())
    }

    fn expression(&mut self) -> PResult {
        if self.eat_kw("lambda") {
            // lambda params: NAME [= expr] (, ...)* : expression
            while !self.is_op(":") {
                match self.peek() {
                    Tok::Name(n) if !KEYWORDS.contains(&n.as_str()) => self.pos += 1,
                    Tok::Op("*") | Tok::Op("**") | Tok::Op(",") | Tok::Op("/") => self.pos += 1,
                    Tok::Op("=") => {
                        self.pos += 1;
                        self.expression()?;
                    }
                    _ => return Err(self.invalid()),
                }
            }
            self.pos += 1;
            self.expression()?;
            return Ok(Node::Other("Lambda"));
        }
        let body = self.disjunction()?;
        if self.eat_kw("if") {
            self.disjunction()?;
            if !self.eat_kw("else") {
                return Err("expected 'else' after 'if' expression".to_string());
            }
            self.expression()?;
            return Ok(Node::Other("IfExp"));
        }
        Ok(body)
    }

    fn disjunction(&mut self) -> PResult {
        let first = self.conjunction()?;
        if !self.is_kw("or") {
            return Ok(first);
        }
        let mut values = vec![first];
        while self.eat_kw("or") {
            values.push(self.conjunction()?);
        }
        Ok(Node::BoolOp {
            is_and: false,
            values,
        })
    }

    fn conjunction(&mut self) -> PResult {
        let first = self.inversion()?;
        if !self.is_kw("and") {
            return Ok(first);
        }
        let mut values = vec![first];
        while self.eat_kw("and") {
            values.push(self.inversion()?);
        }
        Ok(Node::BoolOp {
            is_and: true,
            values,
        })
    }

    fn inversion(&mut self) -> PResult {
        if self.eat_kw("not") {
            self.enter()?;
            let operand = self.inversion();
            self.depth -= 1;
            return Ok(Node::UnaryOp {
                op: "Not",
                operand: Box::new(operand?),
            });
        }
        self.comparison()
    }

    fn cmp_op(&mut self) -> Option<CmpOp> {
        let op = match self.peek() {
            Tok::Op("==") => CmpOp::Eq,
            Tok::Op("!=") => CmpOp::NotEq,
            Tok::Op("<") => CmpOp::Lt,
            Tok::Op("<=") => CmpOp::LtE,
            Tok::Op(">") => CmpOp::Gt,
            Tok::Op(">=") => CmpOp::GtE,
            Tok::Name(n) if n == "in" => CmpOp::In,
            Tok::Name(n) if n == "not" && matches!(self.peek_at(1), Tok::Name(m) if m == "in") => {
                self.pos += 1;
                CmpOp::NotIn
            }
            Tok::Name(n) if n == "is" => {
                if matches!(self.peek_at(1), Tok::Name(m) if m == "not") {
                    self.pos += 1;
                    CmpOp::IsNot
                } else {
                    CmpOp::Is
                }
            }
            _ => return None,
        };
        self.pos += 1;
        Some(op)
    }

    fn comparison(&mut self) -> PResult {
        let left = self.binary(0)?;
        let mut ops = Vec::new();
        let mut comparators = Vec::new();
        while let Some(op) = self.cmp_op() {
            ops.push(op);
            comparators.push(self.binary(0)?);
        }
        if ops.is_empty() {
            return Ok(left);
        }
        Ok(Node::Compare {
            left: Box::new(left),
            ops,
            comparators,
        })
    }

    /// Binary operator levels: | ^ & (<< >>) (+ -) (* / // % @).
    fn binary(&mut self, level: usize) -> PResult {
        const LEVELS: &[&[&str]] = &[
            &["|"],
            &["^"],
            &["&"],
            &["<<", ">>"],
            &["+", "-"],
            &["*", "/", "//", "%", "@"],
        ];
        if level >= LEVELS.len() {
            return self.factor();
        }
        let mut left = self.binary(level + 1)?;
        while matches!(self.peek(), Tok::Op(o) if LEVELS[level].contains(o)) {
            self.pos += 1;
            self.binary(level + 1)?;
            left = Node::Other("BinOp");
        }
        Ok(left)
    }

    fn factor(&mut self) -> PResult {
        let op = match self.peek() {
            Tok::Op("-") => Some("USub"),
            Tok::Op("+") => Some("UAdd"),
            Tok::Op("~") => Some("Invert"),
            _ => None,
        };
        if let Some(op) = op {
            self.pos += 1;
            self.enter()?;
            let operand = self.factor();
            self.depth -= 1;
            return Ok(Node::UnaryOp {
                op,
                operand: Box::new(operand?),
            });
        }
        self.power()
    }

    fn power(&mut self) -> PResult {
        let base = if self.eat_kw("await") {
            self.primary()?;
            Node::Other("Await")
        } else {
            self.primary()?
        };
        if self.eat_op("**") {
            self.factor()?;
            return Ok(Node::Other("BinOp"));
        }
        Ok(base)
    }

    fn primary(&mut self) -> PResult {
        let mut node = self.atom()?;
        loop {
            if self.eat_op(".") {
                match self.peek().clone() {
                    Tok::Name(n) if !KEYWORDS.contains(&n.as_str()) => {
                        self.pos += 1;
                        node = Node::Attribute {
                            value: Box::new(node),
                            attr: n,
                        };
                    }
                    _ => return Err(self.invalid()),
                }
            } else if self.eat_op("(") {
                self.enter()?;
                self.call_args()?;
                self.depth -= 1;
                node = Node::Other("Call");
            } else if self.eat_op("[") {
                self.enter()?;
                self.slices()?;
                self.depth -= 1;
                node = Node::Other("Subscript");
            } else {
                return Ok(node);
            }
        }
    }

    fn call_args(&mut self) -> Result<(), String> {
        let mut seen_double_star = false;
        while !self.is_op(")") {
            if self.eat_op("**") {
                seen_double_star = true;
                self.expression()?;
            } else if self.eat_op("*") {
                if seen_double_star {
                    return Err(
                        "iterable argument unpacking follows keyword argument unpacking"
                            .to_string(),
                    );
                }
                self.expression()?;
            } else if matches!(self.peek(), Tok::Name(n) if !KEYWORDS.contains(&n.as_str()))
                && self.peek_at(1) == &Tok::Op("=")
            {
                self.pos += 2;
                self.expression()?;
            } else {
                self.named_expression()?;
                if self.is_kw("for") || self.is_kw("async") {
                    self.comprehension_clauses()?;
                }
            }
            if !self.eat_op(",") {
                break;
            }
        }
        self.expect_op(")")
    }

    fn comprehension_clauses(&mut self) -> Result<(), String> {
        while self.eat_kw("async") || self.is_kw("for") {
            if !self.eat_kw("for") {
                return Err(self.invalid());
            }
            // target list: simple names / tuples of names
            loop {
                self.binary(0)?;
                if !self.eat_op(",") {
                    break;
                }
            }
            if !self.eat_kw("in") {
                return Err(self.invalid());
            }
            self.disjunction()?;
            while self.eat_kw("if") {
                self.disjunction()?;
            }
        }
        Ok(())
    }

    fn named_expression(&mut self) -> PResult {
        if matches!(self.peek(), Tok::Name(n) if !KEYWORDS.contains(&n.as_str()))
            && self.peek_at(1) == &Tok::Op(":=")
        {
            self.pos += 2;
            self.expression()?;
            return Ok(Node::Other("NamedExpr"));
        }
        self.expression()
    }

    fn slices(&mut self) -> Result<(), String> {
        loop {
            // slice: [expr] [':' [expr] [':' [expr]]]
            if !self.is_op(":") {
                self.named_expression()?;
            }
            for _ in 0..2 {
                if self.eat_op(":") {
                    if !self.is_op(":") && !self.is_op("]") && !self.is_op(",") {
                        self.expression()?;
                    }
                } else {
                    break;
                }
            }
            if !self.eat_op(",") || self.is_op("]") {
                break;
            }
        }
        self.expect_op("]")
    }

    /// Elements of a list/set/tuple display (with optional `*x` and comprehensions).
    fn elements(&mut self, close: &str) -> Result<usize, String> {
        let mut n = 0;
        while !self.is_op(close) {
            if self.eat_op("*") {
                self.binary(0)?;
            } else {
                self.named_expression()?;
                if n == 0 && (self.is_kw("for") || self.is_kw("async")) {
                    self.comprehension_clauses()?;
                    return Ok(usize::MAX);
                }
            }
            n += 1;
            if !self.eat_op(",") {
                break;
            }
            n = n.max(2);
        }
        self.expect_op(close)?;
        Ok(n)
    }

    fn atom(&mut self) -> PResult {
        let tok = self.peek().clone();
        match tok {
            Tok::Name(n) => {
                self.pos += 1;
                match n.as_str() {
                    "True" => Ok(Node::Constant(Const::True)),
                    "False" => Ok(Node::Constant(Const::False)),
                    "None" => Ok(Node::Constant(Const::None)),
                    k if KEYWORDS.contains(&k) => Err(self.invalid()),
                    _ => Ok(Node::Name(n)),
                }
            }
            Tok::Num(c) => {
                self.pos += 1;
                Ok(Node::Constant(c))
            }
            Tok::Str { .. } => {
                // Adjacent literals concatenate.
                let mut text = Some(String::new());
                let mut any_f = false;
                let mut bytes = false;
                while let Tok::Str { value, fstring } = self.peek().clone() {
                    self.pos += 1;
                    any_f |= fstring;
                    match (value, &mut text) {
                        (Some(v), Some(t)) => t.push_str(&v),
                        _ => {
                            bytes = true;
                            text = None;
                        }
                    }
                }
                if any_f {
                    return Ok(Node::Other("JoinedStr"));
                }
                match text {
                    Some(t) if !bytes => Ok(Node::Constant(Const::Str(t))),
                    _ => Ok(Node::Constant(Const::Bytes)),
                }
            }
            Tok::Op("...") => {
                self.pos += 1;
                Ok(Node::Constant(Const::Ellipsis))
            }
            Tok::Op("(") => {
                self.pos += 1;
                self.enter()?;
                let r = self.paren();
                self.depth -= 1;
                r
            }
            Tok::Op("[") => {
                self.pos += 1;
                self.enter()?;
                let r = self.elements("]");
                self.depth -= 1;
                r.map(|n| Node::Other(if n == usize::MAX { "ListComp" } else { "List" }))
            }
            Tok::Op("{") => {
                self.pos += 1;
                self.enter()?;
                let r = self.brace();
                self.depth -= 1;
                r
            }
            _ => Err(self.invalid()),
        }
    }

    fn paren(&mut self) -> PResult {
        if self.eat_op(")") {
            return Ok(Node::Other("Tuple"));
        }
        if self.is_kw("yield") {
            return Err(self.invalid());
        }
        if self.is_op("*") {
            self.elements(")")?;
            return Ok(Node::Other("Tuple"));
        }
        let first = self.named_expression()?;
        if self.is_kw("for") || self.is_kw("async") {
            self.comprehension_clauses()?;
            self.expect_op(")")?;
            return Ok(Node::Other("GeneratorExp"));
        }
        if self.eat_op(",") {
            self.elements(")")?;
            return Ok(Node::Other("Tuple"));
        }
        self.expect_op(")")?;
        Ok(first)
    }

    fn brace(&mut self) -> PResult {
        if self.eat_op("}") {
            return Ok(Node::Other("Dict"));
        }
        if self.eat_op("**") {
            self.binary(0)?;
            self.dict_rest()?;
            return Ok(Node::Other("Dict"));
        }
        if self.eat_op("*") {
            self.binary(0)?;
            if self.eat_op(",") {
                self.elements("}")?;
            } else {
                self.expect_op("}")?;
            }
            return Ok(Node::Other("Set"));
        }
        self.named_expression()?;
        if self.eat_op(":") {
            self.expression()?;
            if self.is_kw("for") || self.is_kw("async") {
                self.comprehension_clauses()?;
                self.expect_op("}")?;
                return Ok(Node::Other("DictComp"));
            }
            self.dict_rest()?;
            return Ok(Node::Other("Dict"));
        }
        if self.is_kw("for") || self.is_kw("async") {
            self.comprehension_clauses()?;
            self.expect_op("}")?;
            return Ok(Node::Other("SetComp"));
        }
        if self.eat_op(",") {
            self.elements("}")?;
        } else {
            self.expect_op("}")?;
        }
        Ok(Node::Other("Set"))
    }

    fn dict_rest(&mut self) -> Result<(), String> {
        while self.eat_op(",") {
            if self.is_op("}") {
                break;
            }
            if self.eat_op("**") {
                self.binary(0)?;
            } else {
                self.expression()?;
                self.expect_op(":")?;
                self.expression()?;
            }
        }
        self.expect_op("}")
    }
}
