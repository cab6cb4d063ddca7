//! Python's `repr()` and `str()` of decoded JSON values: the services are Python, and their error messages quote
//! what the client sent as Python prints it (jsonschema's "'x' is not of type 'integer'").

use serde_json::Value;

/// Python `repr()` of a JSON value as `json.loads` would have produced it.
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => py_number(n),
        Value::String(s) => py_repr_str(s),
        Value::Array(items) => format!("[{}]", items.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter().map(|(k, v)| format!("{}: {}", py_repr_str(k), py_repr(v))).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Python `str()`: strings bare, everything else as `repr`.
pub fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

fn py_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    py_float(n.as_f64().unwrap_or(0.0))
}

/// Python's `repr()` of a float: the shortest digits that read back the same, positional from
/// 1e-4 up to 1e16 (always with a fraction), scientific (`1e+16`, `1.5e-05`) outside.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` gives the same shortest round-trip digits Python uses, e.g. `-1.5e-7`.
    let scientific = format!("{f:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..16).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let mantissa = if rest.is_empty() { first.to_string() } else { format!("{first}.{rest}") };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{mantissa}e{exponent_sign}{:02}", exponent.unsigned_abs());
    }
    if exponent < 0 {
        return format!("{sign}0.{}{digits}", "0".repeat(exponent.unsigned_abs() as usize - 1));
    }
    let whole_len = exponent as usize + 1;
    if digits.len() > whole_len {
        format!("{sign}{}.{}", &digits[..whole_len], &digits[whole_len..])
    } else {
        format!("{sign}{digits}{}.0", "0".repeat(whole_len - digits.len()))
    }
}

/// Python `repr()` of a `str`.
pub fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
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
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_reprs() {
        assert_eq!(py_repr(&json!("it's")), "\"it's\"");
        assert_eq!(py_repr(&json!([true, null, 1.5, 2.0, "a\nb"])), "[True, None, 1.5, 2.0, 'a\\nb']");
    }

    #[test]
    fn floats_print_as_python_prints_them() {
        let check = |f: f64, python: &str| assert_eq!(py_float(f), python, "{f:e}");
        check(0.0, "0.0");
        check(-0.0, "-0.0");
        check(2.0, "2.0");
        check(-1.5, "-1.5");
        check(0.1, "0.1");
        check(123.456, "123.456");
        check(0.0001, "0.0001");
        check(0.00001, "1e-05");
        check(1.5e-7, "1.5e-07");
        check(9999999999999998.0, "9999999999999998.0");
        check(1e16, "1e+16");
        check(1.25e20, "1.25e+20");
        check(1e300, "1e+300");
        check(f64::INFINITY, "inf");
    }
}
