//! Values printed the way Go prints them, because Kubernetes' error messages do: strings
//! quoted as `%q`, numbers as `%v`. Clients and people compare these messages with
//! kube-apiserver's, so the spelling matters.

use serde_json::{Number, Value};

/// Quotes a string the way Go's `%q` does.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number as Go's `%v` prints it (integers as they are, floats as [`float`]).
pub fn number(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        float(n.as_f64().unwrap_or(0.0))
    }
}

/// Longest value shown in full in an error message; longer ones are cut (a megabyte
/// string must not come back as a megabyte message).
pub const MAX_SHOWN_VALUE_BYTES: usize = 256;

/// A value the way `field.Error` prints it: strings quoted, numbers with `%v`, `null` as
/// `"null"`, and composite values as compact JSON; cut after [`MAX_SHOWN_VALUE_BYTES`]
/// with a note of how much was left out.
pub fn value(value: &Value) -> String {
    let (shown, full_len) = match value {
        Value::Null => return "\"null\"".to_string(),
        Value::Bool(b) => return b.to_string(),
        Value::Number(n) => return number(n),
        Value::String(s) => (cut(s), s.len()),
        other => {
            let text = other.to_string();
            let len = text.len();
            return match cut(&text) {
                kept if kept.len() < len => {
                    format!("{kept}... ({} more bytes)", len - kept.len())
                }
                _ => text,
            };
        }
    };
    if shown.len() < full_len {
        format!(
            "{}... ({} more bytes)",
            quote(shown),
            full_len - shown.len()
        )
    } else {
        quote(shown)
    }
}

/// The longest prefix of `text` within [`MAX_SHOWN_VALUE_BYTES`], on a character boundary.
fn cut(text: &str) -> &str {
    if text.len() <= MAX_SHOWN_VALUE_BYTES {
        return text;
    }
    let mut end = MAX_SHOWN_VALUE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A float as Go's `%v` prints it (`strconv.FormatFloat(f, 'g', -1, 64)`): the shortest
/// digits that read back the same, in exponent form below 1e-4 and from 1e6.
pub fn float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Shortest round-trip digits, e.g. "-1.2345e6".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.push_str(&"0".repeat(int_len - digits.len()));
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    } else {
        out.push_str("0.");
        out.push_str(&"0".repeat((-exp - 1) as usize));
        out.push_str(&digits);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_follows_go() {
        assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quote("tab\there\n"), r#""tab\there\n""#);
        assert_eq!(quote("\u{1}\u{7f}"), r#""\x01\x7f""#);
        assert_eq!(quote("\u{85}"), r#""\u0085""#);
        assert_eq!(quote("é"), "\"é\"");
    }

    #[test]
    fn floats_and_values_print_like_go() {
        let floats: Vec<(f64, &str)> = vec![
            (1.5, "1.5"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (1e21, "1e+21"),
            (0.1, "0.1"),
            (0.0, "0"),
            (100.25, "100.25"),
        ];
        for (f, want) in floats {
            assert_eq!(float(f), want, "{f}");
        }
        assert_eq!(value(&Value::Null), "\"null\"");
        assert_eq!(value(&serde_json::json!(true)), "true");
        assert_eq!(value(&serde_json::json!(-3)), "-3");
        assert_eq!(value(&serde_json::json!([1, "a"])), r#"[1,"a"]"#);
        let long = "é".repeat(200);
        let shown = value(&Value::String(long.clone()));
        assert!(
            shown.starts_with("\"éé") && shown.ends_with("\"... (144 more bytes)"),
            "{shown}"
        );
        assert!(shown.len() < long.len());
    }
}
