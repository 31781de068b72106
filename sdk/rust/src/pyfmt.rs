//! Formatting that matches the Python reference byte for byte, so files written by
//! AetherFlow-RS steps are identical to the reference's (`str(value)` for tsv/csv cells,
//! `json.dumps(..., ensure_ascii=False)` for jsonl).

use crate::sql::CellRef;
use std::fmt::Write as _;

/// Python's `repr(float)` / `str(float)`: shortest round-trip digits, fixed notation for
/// exponents in [-4, 16), scientific (`1e+16`, `1.5e-07`) otherwise.
pub fn float_repr(x: f64) -> String {
    let mut out = String::new();
    write_float_repr(&mut out, x);
    out
}

/// [`float_repr`] appended to `out`, without allocating.
pub fn write_float_repr(out: &mut String, x: f64) {
    if x.is_nan() {
        return out.push_str("nan");
    }
    if x.is_infinite() {
        return out.push_str(if x > 0.0 { "inf" } else { "-inf" });
    }
    // Integers below 2^53 are their own shortest digits (every integer there is a double,
    // so no shorter decimal rounds to it).
    if x.trunc() == x && x.abs() < 9_007_199_254_740_992.0 {
        if x == 0.0 && x.is_sign_negative() {
            return out.push_str("-0.0");
        }
        write_int(out, x as i64);
        return out.push_str(".0");
    }
    // zmij writes the shortest round-trip digits, in fixed or scientific form: take its
    // digits and decimal exponent, then lay them out as Python does.
    let mut buf = zmij::Buffer::new();
    let s = buf.format_finite(x).as_bytes();
    let s = match s.strip_prefix(b"-") {
        Some(rest) => {
            out.push('-');
            rest
        }
        None => s,
    };
    let (mantissa, exp) = match s.iter().position(|c| *c == b'e' || *c == b'E') {
        Some(i) => (&s[..i], parse_exp(&s[i + 1..])),
        None => (s, 0),
    };
    let mut digits = [0u8; 40];
    let mut n = 0usize;
    let mut point = None;
    for &c in mantissa.iter().take(digits.len()) {
        if c == b'.' {
            point = Some(n);
        } else {
            digits[n] = c;
            n += 1;
        }
    }
    // value = 0.DIGITS x 10^decpt, DIGITS without leading or trailing zeros.
    let mut decpt = point.unwrap_or(n) as i32 + exp;
    let mut start = 0;
    while start + 1 < n && digits[start] == b'0' {
        start += 1;
        decpt -= 1;
    }
    let mut end = n;
    while end > start + 1 && digits[end - 1] == b'0' {
        end -= 1;
    }
    let d = std::str::from_utf8(&digits[start..end]).unwrap_or("0");
    let n = d.len() as i32;
    let exp = decpt - 1;
    if (-4..16).contains(&exp) {
        if decpt <= 0 {
            out.push_str("0.");
            for _ in 0..(-decpt) {
                out.push('0');
            }
            out.push_str(d);
        } else if decpt >= n {
            out.push_str(d);
            for _ in 0..(decpt - n) {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&d[..decpt as usize]);
            out.push('.');
            out.push_str(&d[decpt as usize..]);
        }
    } else {
        out.push_str(&d[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&d[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        if exp.abs() < 10 {
            out.push('0');
        }
        write_int(out, exp.abs() as i64);
    }
}

/// A decimal exponent as zmij writes it (`7`, `-7`, `+16`).
fn parse_exp(s: &[u8]) -> i32 {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let v = digits.iter().fold(0i32, |v, c| {
        v.saturating_mul(10).saturating_add((c - b'0') as i32)
    });
    if neg {
        -v
    } else {
        v
    }
}

/// An integer in decimal, appended without going through `fmt`.
pub fn write_int(out: &mut String, v: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push('-');
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// `str(v)` of a JSON input value as Python sees it (`None`, `True`, `False`; text as is).
pub fn py_str(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        other => other.to_string(),
    }
}

/// Python truthiness (`bool(x)`) of a JSON input value, with the text `false`/`no`/`0`/
/// `off` (any case, trimmed) read as false.
pub fn truthy(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "no" | "off"
        ),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python's `repr(str)`.
pub fn py_quote(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr(bytes)`.
pub fn bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut out = String::from("b");
    out.push(quote as char);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c as char);
            }
            0x20..=0x7e => out.push(c as char),
            c => {
                let _ = write!(out, "\\x{:02x}", c);
            }
        }
    }
    out.push(quote as char);
    out
}

/// `"" if v is None else str(v)`: how the reference writes a cell into tsv/csv.
/// Takes a `&Cell` or a [`CellRef`].
pub fn write_cell_str<'a>(out: &mut String, cell: impl Into<CellRef<'a>>) {
    match cell.into() {
        CellRef::Null => {}
        CellRef::Boolean(b) => out.push_str(if b { "True" } else { "False" }),
        CellRef::Integer(i) => write_int(out, i),
        CellRef::Real(f) => write_float_repr(out, f),
        CellRef::Decimal(s) | CellRef::Text(s) | CellRef::Date(s) => out.push_str(s),
        // Cells carry ISO 8601 (`2024-01-02T03:04:05`); Python's `str(datetime)` uses a space.
        CellRef::Datetime(s) => match s.find('T') {
            Some(i) => {
                out.push_str(&s[..i]);
                out.push(' ');
                out.push_str(&s[i + 1..]);
            }
            None => out.push_str(s),
        },
        CellRef::Blob(b) => out.push_str(&bytes_repr(b)),
    }
}

/// A cell the way the reference's `_json_safe` then `json.dumps` writes it (`db_fetch_small`'s
/// `rows_json`): decimals become floats, dates and datetimes ISO strings. Returns `Err`
/// with a type name for values `json.dumps` cannot serialise (bytes).
pub fn write_json_safe_cell<'a>(
    out: &mut String,
    cell: impl Into<CellRef<'a>>,
) -> Result<(), &'static str> {
    match cell.into() {
        CellRef::Decimal(s) => write_json_cell(out, CellRef::Real(decimal_to_float(s))),
        other => write_json_cell(out, other),
    }
}

/// Python's `float(Decimal(s))` (correctly rounded; `NaN`, `Infinity` and `-Infinity` too).
pub fn decimal_to_float(s: &str) -> f64 {
    match s.trim() {
        "NaN" | "nan" | "-NaN" => f64::NAN,
        "Infinity" | "inf" => f64::INFINITY,
        "-Infinity" | "-inf" => f64::NEG_INFINITY,
        t => t.parse::<f64>().unwrap_or(f64::NAN),
    }
}

/// `json.dumps(value, ensure_ascii=False)` with the default separators (`", "`, `": "`).
pub fn write_json_value(out: &mut String, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => {
                let _ = write!(out, "{i}");
            }
            (_, Some(u), _) => {
                let _ = write!(out, "{u}");
            }
            (_, _, Some(f)) => out.push_str(&float_repr(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => write_json_str(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json_value(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json_str(out, k);
                out.push_str(": ");
                write_json_value(out, x);
            }
            out.push('}');
        }
    }
}

/// The quoting modes of Python's `csv` module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    Minimal,
    All,
    NonNumeric,
    None,
}

/// A writer that produces the bytes of Python 3.11's `csv.writer(...).writerow(fields)` for
/// rows of strings (the reference writes every value as `str(v)`, so `QUOTE_NONNUMERIC`
/// quotes every field, as `QUOTE_ALL`).
#[derive(Debug, Clone)]
pub struct CsvWriter {
    pub delimiter: char,
    pub quotechar: char,
    pub escapechar: Option<char>,
    pub doublequote: bool,
    pub quoting: Quoting,
    pub lineterminator: String,
}

impl CsvWriter {
    /// Append one record to `out`. On error (`need to escape, but no escapechar set`,
    /// `single empty field record must be quoted`, the messages of Python's `_csv.Error`)
    /// nothing is appended.
    pub fn write_row<S: AsRef<str>>(&self, out: &mut String, fields: &[S]) -> Result<(), String> {
        let start = out.len();
        let r = self.append(out, fields);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    /// The characters that make a field need quotes or escapes, as ASCII bytes; `None` when
    /// one of them is not ASCII (then every field takes the general path).
    fn ascii_specials(&self) -> Option<([u8; 8], usize)> {
        let mut set = [0u8; 8];
        let mut n = 0;
        let chars = [self.delimiter, self.quotechar]
            .into_iter()
            .chain(self.escapechar)
            .chain(self.lineterminator.chars());
        for c in chars {
            if !c.is_ascii() || n == set.len() {
                return None;
            }
            set[n] = c as u8;
            n += 1;
        }
        Some((set, n))
    }

    fn append<S: AsRef<str>>(&self, out: &mut String, fields: &[S]) -> Result<(), String> {
        let record_start = out.len();
        let specials = self.ascii_specials();
        let always_quoted = matches!(self.quoting, Quoting::All | Quoting::NonNumeric);
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            let f = f.as_ref();
            // Most fields hold none of the special characters: copy them as they are.
            if let Some((set, n)) = specials {
                if !contains_any(f.as_bytes(), &set[..n]) {
                    if always_quoted {
                        out.push(self.quotechar);
                        out.push_str(f);
                        out.push(self.quotechar);
                    } else {
                        out.push_str(f);
                    }
                    continue;
                }
            }
            let mut quoted = always_quoted;
            // The field with escapes; whether it needs quotes is known only at its end.
            let mut body = String::with_capacity(f.len());
            for c in f.chars() {
                let special = c == self.delimiter
                    || Some(c) == self.escapechar
                    || c == self.quotechar
                    || self.lineterminator.contains(c);
                if special {
                    let mut want_escape = false;
                    if self.quoting == Quoting::None {
                        want_escape = true;
                    } else {
                        if c == self.quotechar {
                            if self.doublequote {
                                body.push(self.quotechar);
                            } else {
                                want_escape = true;
                            }
                        } else if Some(c) == self.escapechar {
                            want_escape = true;
                        }
                        if !want_escape {
                            quoted = true;
                        }
                    }
                    if want_escape {
                        match self.escapechar {
                            Some(e) => body.push(e),
                            None => return Err("need to escape, but no escapechar set".into()),
                        }
                    }
                }
                body.push(c);
            }
            if quoted {
                out.push(self.quotechar);
                out.push_str(&body);
                out.push(self.quotechar);
            } else {
                out.push_str(&body);
            }
        }
        if fields.len() == 1 && out.len() == record_start {
            if self.quoting == Quoting::None {
                return Err("single empty field record must be quoted".into());
            }
            out.push(self.quotechar);
            out.push(self.quotechar);
        }
        out.push_str(&self.lineterminator);
        Ok(())
    }
}

/// Whether `hay` holds any byte of `set`, eight bytes at a time (wasm has no memchr).
fn contains_any(hay: &[u8], set: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut chunks = hay.chunks_exact(8);
    for chunk in &mut chunks {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        for &b in set {
            // A zero byte in `w ^ broadcast(b)` is a byte equal to `b`.
            let x = w ^ (LO * b as u64);
            if x.wrapping_sub(LO) & !x & HI != 0 {
                return true;
            }
        }
    }
    chunks.remainder().iter().any(|b| set.contains(b))
}

/// A JSON string literal as Python's `json.dumps(ensure_ascii=False)` writes it.
pub fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A cell as a JSON value the way `json.dumps` writes the Python value. Returns `Err`
/// with a type name for values the reference cannot serialise either (bytes).
pub fn write_json_cell<'a>(
    out: &mut String,
    cell: impl Into<CellRef<'a>>,
) -> Result<(), &'static str> {
    match cell.into() {
        CellRef::Null => out.push_str("null"),
        CellRef::Boolean(b) => out.push_str(if b { "true" } else { "false" }),
        CellRef::Integer(i) => write_int(out, i),
        CellRef::Real(f) => {
            if f.is_nan() {
                out.push_str("NaN");
            } else if f.is_infinite() {
                out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
            } else {
                write_float_repr(out, f);
            }
        }
        // Exact decimals are written as JSON numbers (the reference raises TypeError).
        CellRef::Decimal(s) => out.push_str(s),
        CellRef::Text(s) | CellRef::Date(s) | CellRef::Datetime(s) => write_json_str(out, s),
        CellRef::Blob(_) => return Err("bytes"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_match_python_repr() {
        for (x, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456.789, "123456.789"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.5e300, "1.5e+300"),
            (f64::NAN, "nan"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (-5.0, "-5.0"),
            (1200.0, "1200.0"),
            (0.5, "0.5"),
            (2.5e-5, "2.5e-05"),
            (9_007_199_254_740_991.0, "9007199254740991.0"),
            (9_007_199_254_740_992.0, "9007199254740992.0"),
            (9_999_999_999_999_998.0, "9999999999999998.0"),
            (12_345_678_901_234_567_890.0, "1.2345678901234567e+19"),
            (-1.25e-7, "-1.25e-07"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (24999.75, "24999.75"),
            (0.30000000000000004, "0.30000000000000004"),
            // Exactly ...348.25: Python rounds the tie to even (std's `{}` gives ...348.3).
            (f64::from_bits(0x431a_8177_0207_1e91), "1865174382397348.2"),
        ] {
            assert_eq!(float_repr(x), want, "{x}");
        }
    }

    /// The straightforward formatting (std's `{:e}` digits, re-laid out), which the fast
    /// path must match on every double.
    fn reference_repr(x: f64) -> String {
        let sci = format!("{:e}", x);
        let (mantissa, exp) = sci.split_once('e').unwrap();
        let exp: i32 = exp.parse().unwrap();
        let (neg, mantissa) = match mantissa.strip_prefix('-') {
            Some(m) => ("-", m),
            None => ("", mantissa),
        };
        let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
        let n = digits.len() as i32;
        let body = if (-4..16).contains(&exp) {
            let decpt = exp + 1;
            if decpt <= 0 {
                format!("0.{}{digits}", "0".repeat(-decpt as usize))
            } else if decpt >= n {
                format!("{digits}{}.0", "0".repeat((decpt - n) as usize))
            } else {
                format!(
                    "{}.{}",
                    &digits[..decpt as usize],
                    &digits[decpt as usize..]
                )
            }
        } else {
            let frac = if n > 1 {
                format!(".{}", &digits[1..])
            } else {
                String::new()
            };
            let sign = if exp < 0 { '-' } else { '+' };
            format!("{}{frac}e{sign}{:02}", &digits[..1], exp.abs())
        };
        format!("{neg}{body}")
    }

    #[test]
    fn fast_float_repr_matches_the_reference_layout() {
        // xorshift over raw bit patterns (every exponent) and over short decimals.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..300_000 {
            let x = match i % 3 {
                0 => f64::from_bits(next()),
                1 => (next() % 100_000_000) as f64 / 10f64.powi((next() % 12) as i32),
                _ => (next() as i64 as f64) * 10f64.powi((next() % 40) as i32 - 20),
            };
            if !x.is_finite() {
                continue;
            }
            let (ours, std) = (float_repr(x), reference_repr(x));
            if ours != std {
                // std breaks an exact tie between two shortest candidates upwards; Python
                // (and zmij) round half to even. Only the last digit may differ then.
                let last = |s: &str| s.trim_end_matches(".0").bytes().last().unwrap();
                assert_eq!(
                    ours.len(),
                    std.len(),
                    "bits {:#x}: {ours} vs {std}",
                    x.to_bits()
                );
                assert_eq!(ours.parse::<f64>().unwrap(), x, "bits {:#x}", x.to_bits());
                assert!(
                    last(&ours) % 2 == 0,
                    "bits {:#x}: {ours} vs {std}",
                    x.to_bits()
                );
            }
        }
    }

    #[test]
    fn contains_any_finds_a_byte_anywhere() {
        let set = b",\"\r\n";
        assert!(!contains_any(b"", set));
        assert!(!contains_any(b"plain text without specials, no", b"\"\r\n"));
        for len in 1..40 {
            for pos in 0..len {
                for &b in set.iter() {
                    let mut v = vec![b'a'; len];
                    v[pos] = b;
                    assert!(contains_any(&v, set), "{len} {pos} {b}");
                }
            }
            assert!(!contains_any(&vec![b'a'; len], set));
            // Bytes just above and below a special one are not it.
            assert!(!contains_any(&vec![b'+'; len], b","));
            assert!(!contains_any(&vec![b'-'; len], b","));
            assert!(!contains_any(&vec![0xac; len], b","));
        }
    }

    #[test]
    fn integers_are_written_in_decimal() {
        for v in [0, 7, -7, 10, 1234567890, i64::MAX, i64::MIN] {
            let mut s = String::from("x");
            write_int(&mut s, v);
            assert_eq!(s, format!("x{v}"));
        }
    }

    #[test]
    fn strings_match_python_repr() {
        assert_eq!(py_quote("items"), "'items'");
        assert_eq!(py_quote("it's"), "\"it's\"");
        assert_eq!(py_quote("a\nb\\"), "'a\\nb\\\\'");
    }

    #[test]
    fn csv_matches_python_3_11() {
        // Expected bytes from CPython 3.11's csv.writer on the same rows.
        let rows: Vec<Vec<&str>> = vec![
            vec!["a\rb", "c\nd", "e", "x\\y", "q\"q", "t\tt", "", "p|p"],
            vec![""],
            vec!["", ""],
        ];
        let w = |f: &dyn Fn(&mut CsvWriter)| {
            let mut cw = CsvWriter {
                delimiter: ',',
                quotechar: '"',
                escapechar: None,
                doublequote: true,
                quoting: Quoting::Minimal,
                lineterminator: "\n".into(),
            };
            f(&mut cw);
            let mut out = String::new();
            for r in &rows {
                if let Err(e) = cw.write_row(&mut out, r) {
                    out.push_str(&format!("ERR:{e}|"));
                }
            }
            out
        };
        assert_eq!(
            w(&|_| {}),
            "a\rb,\"c\nd\",e,x\\y,\"q\"\"q\",t\tt,,p|p\n\"\"\n,\n"
        );
        assert_eq!(
            w(&|c| c.delimiter = '\t'),
            "a\rb\t\"c\nd\"\te\tx\\y\t\"q\"\"q\"\t\"t\tt\"\t\tp|p\n\"\"\n\t\n"
        );
        assert_eq!(
            w(&|c| {
                c.quoting = Quoting::None;
                c.escapechar = Some('\\');
            }),
            "a\rb,c\\\nd,e,x\\\\y,q\\\"q,t\tt,,p|p\nERR:single empty field record must be quoted|,\n"
        );
        assert_eq!(
            w(&|c| {
                c.doublequote = false;
                c.escapechar = Some('\\');
            }),
            "a\rb,\"c\nd\",e,x\\\\y,q\\\"q,t\tt,,p|p\n\"\"\n,\n"
        );
        assert_eq!(
            w(&|c| {
                c.quoting = Quoting::All;
                c.quotechar = '\'';
                c.delimiter = '|';
                c.lineterminator = "X".into();
            }),
            "'a\rb'|'c\nd'|'e'|'x\\y'|'q\"q'|'t\tt'|''|'p|p'X''X''|''X"
        );
    }

    #[test]
    fn json_matches_python_dumps() {
        let mut s = String::new();
        write_json_str(&mut s, "é\"\u{1}\t");
        assert_eq!(s, "\"é\\\"\\u0001\\t\"");
    }
}
