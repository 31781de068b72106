//! Formatting that matches the Python reference byte for byte, so files written by
//! AetherFlow-RS steps are identical to the reference's (`str(value)` for tsv/csv cells,
//! `json.dumps(..., ensure_ascii=False)` for jsonl).

use crate::sql::Cell;
use std::fmt::Write as _;

/// Python's `repr(float)` / `str(float)`: shortest round-trip digits, fixed notation for
/// exponents in [-4, 16), scientific (`1e+16`, `1.5e-07`) otherwise.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // `{:e}` gives the shortest round-trip digits in scientific form, e.g. "-1.25e-7".
    let sci = format!("{:e}", x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        let decpt = exp + 1;
        let n = digits.len() as i32;
        if decpt <= 0 {
            out.push_str("0.");
            for _ in 0..(-decpt) {
                out.push('0');
            }
            out.push_str(&digits);
        } else if decpt >= n {
            out.push_str(&digits);
            for _ in 0..(decpt - n) {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    out
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
pub fn write_cell_str(out: &mut String, cell: &Cell) {
    match cell {
        Cell::Null => {}
        Cell::Boolean(b) => out.push_str(if *b { "True" } else { "False" }),
        Cell::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Cell::Real(f) => out.push_str(&float_repr(*f)),
        Cell::Decimal(s) | Cell::Text(s) | Cell::Date(s) | Cell::Datetime(s) => out.push_str(s),
        Cell::Blob(b) => out.push_str(&bytes_repr(b)),
    }
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
pub fn write_json_cell(out: &mut String, cell: &Cell) -> Result<(), &'static str> {
    match cell {
        Cell::Null => out.push_str("null"),
        Cell::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Cell::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Cell::Real(f) => {
            if f.is_nan() {
                out.push_str("NaN");
            } else if f.is_infinite() {
                out.push_str(if *f > 0.0 { "Infinity" } else { "-Infinity" });
            } else {
                out.push_str(&float_repr(*f));
            }
        }
        // Exact decimals are written as JSON numbers (the reference raises TypeError).
        Cell::Decimal(s) => out.push_str(s),
        Cell::Text(s) | Cell::Date(s) | Cell::Datetime(s) => write_json_str(out, s),
        Cell::Blob(_) => return Err("bytes"),
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
        ] {
            assert_eq!(float_repr(x), want, "{x}");
        }
    }

    #[test]
    fn strings_match_python_repr() {
        assert_eq!(py_quote("items"), "'items'");
        assert_eq!(py_quote("it's"), "\"it's\"");
        assert_eq!(py_quote("a\nb\\"), "'a\\nb\\\\'");
    }

    #[test]
    fn json_matches_python_dumps() {
        let mut s = String::new();
        write_json_str(&mut s, "é\"\u{1}\t");
        assert_eq!(s, "\"é\\\"\\u0001\\t\"");
    }
}
