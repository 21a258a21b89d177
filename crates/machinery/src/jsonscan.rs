//! Finding where JSON values end without building them: an object's fields read one by one
//! ([`read_object`]), each value decoded by the caller or validated and passed over
//! ([`skip`]).
//!
//! A Table row reads a few fields of each stored object and copies its metadata's text;
//! serde's way of passing over the rest (`IgnoredAny`) goes through a visitor per value and
//! a byte-by-byte string scan, which was a third of the server's time on a Table page. This
//! scanner finds string ends eight bytes at a time and knows nothing of visitors. It accepts exactly
//! the texts that `serde_json` accepts when it ignores a value (the property tests in
//! `tests/fuzz.rs` hold it to that), so a broken stored object fails here as it would there,
//! and a value it passes is valid JSON (which decodes into a `Value` unless it holds a lone
//! surrogate escape or a number beyond `f64`, as with serde itself).

use std::borrow::Cow;
use std::fmt;

/// Arrays and objects may nest fewer levels than this: `serde_json`'s recursion limit, so
/// that a value this scanner passes decodes into a `Value`.
pub const MAX_DEPTH: usize = 128;

/// Where and why a text is not JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanError {
    pub at: usize,
    pub reason: &'static str,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.at)
    }
}

impl std::error::Error for ScanError {}

type Result<T> = std::result::Result<T, ScanError>;

fn fail<T>(at: usize, reason: &'static str) -> Result<T> {
    Err(ScanError { at, reason })
}

/// The position after the whitespace at `at`.
fn skip_space(text: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = text.get(at) {
        at += 1;
    }
    at
}

/// Checks that `text` is one JSON value, with whitespace around it allowed.
pub fn validate(text: &str) -> Result<()> {
    let bytes = text.as_bytes();
    let start = skip_space(bytes, 0);
    let end = skip_space(bytes, skip_value(bytes, start, 0)?);
    if end != bytes.len() {
        return fail(end, "trailing characters");
    }
    Ok(())
}

/// The position just after the value starting at `at` (no whitespace before it).
fn skip_value(text: &[u8], at: usize, depth: usize) -> Result<usize> {
    match text.get(at) {
        None => fail(at, "EOF while parsing a value"),
        Some(b'"') => Ok(scan_string(text, at)?.0),
        Some(b'{') => skip_container(text, at, depth, true),
        Some(b'[') => skip_container(text, at, depth, false),
        Some(b't') => skip_literal(text, at, b"true"),
        Some(b'f') => skip_literal(text, at, b"false"),
        Some(b'n') => skip_literal(text, at, b"null"),
        Some(b'-' | b'0'..=b'9') => skip_number(text, at),
        Some(_) => fail(at, "expected value"),
    }
}

fn skip_literal(text: &[u8], at: usize, literal: &[u8]) -> Result<usize> {
    if text[at..].starts_with(literal) {
        Ok(at + literal.len())
    } else {
        fail(at, "expected ident")
    }
}

fn digits(text: &[u8], mut at: usize) -> usize {
    while let Some(b'0'..=b'9') = text.get(at) {
        at += 1;
    }
    at
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
fn skip_number(text: &[u8], mut at: usize) -> Result<usize> {
    if text[at] == b'-' {
        at += 1;
    }
    match text.get(at) {
        Some(b'0') => {
            at += 1;
            if let Some(b'0'..=b'9') = text.get(at) {
                return fail(at, "invalid number");
            }
        }
        Some(b'1'..=b'9') => at = digits(text, at + 1),
        _ => return fail(at, "invalid number"),
    }
    if text.get(at) == Some(&b'.') {
        let end = digits(text, at + 1);
        if end == at + 1 {
            return fail(end, "invalid number");
        }
        at = end;
    }
    if let Some(b'e' | b'E') = text.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = text.get(at) {
            at += 1;
        }
        let end = digits(text, at);
        if end == at {
            return fail(end, "invalid number");
        }
        at = end;
    }
    Ok(at)
}

/// The position after the string whose opening quote is at `at`, and whether it has escapes.
fn scan_string(text: &[u8], at: usize) -> Result<(usize, bool)> {
    let mut at = at + 1;
    let mut escaped = false;
    loop {
        at = to_special(text, at);
        match text.get(at) {
            None => return fail(text.len(), "EOF while parsing a string"),
            Some(b'"') => return Ok((at + 1, escaped)),
            Some(b'\\') => {}
            Some(_) => {
                return fail(
                    at,
                    "control character (\\u0000-\\u001F) found while parsing a string",
                );
            }
        }
        escaped = true;
        at += 1;
        match text.get(at) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => at += 1,
            Some(b'u') => {
                let hex = text.get(at + 1..at + 5).unwrap_or_default();
                if hex.len() < 4 {
                    return fail(text.len(), "EOF while parsing a string");
                }
                if let Some(bad) = hex.iter().position(|b| !b.is_ascii_hexdigit()) {
                    return fail(at + 1 + bad, "invalid escape");
                }
                at += 5;
            }
            Some(_) => return fail(at, "invalid escape"),
            None => return fail(at, "EOF while parsing a string"),
        }
    }
}

/// The position of the first byte from `at` on that ends or interrupts a string's plain
/// characters (a quote, a backslash or a control character), or the text's length. Eight
/// bytes at a time: strings in objects are mostly short, too short for a vector search's
/// setup to pay.
fn to_special(text: &[u8], mut at: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // The high bit of each byte that is zero in `x` (exact for the lowest such byte).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    while let Some(chunk) = text.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let special = zero(word ^ (ONES * u64::from(b'"')))
            | zero(word ^ (ONES * u64::from(b'\\')))
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGH);
        if special != 0 {
            return at + (special.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&b) = text.get(at) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            break;
        }
        at += 1;
    }
    at
}

fn skip_container(text: &[u8], open: usize, depth: usize, object: bool) -> Result<usize> {
    if object {
        return walk_object(text, open, depth, |_, at| skip_value(text, at, depth + 1));
    }
    if depth + 1 >= MAX_DEPTH {
        return fail(open, "recursion limit exceeded");
    }
    let mut at = skip_space(text, open + 1);
    if text.get(at) == Some(&b']') {
        return Ok(at + 1);
    }
    loop {
        at = skip_space(text, skip_value(text, at, depth + 1)?);
        match text.get(at) {
            Some(b',') => at = skip_space(text, at + 1),
            Some(b']') => return Ok(at + 1),
            Some(_) => return fail(at, "expected `,` or `]`"),
            None => return fail(at, "EOF while parsing a list"),
        }
    }
}

/// A field's key as it is written: where its opening quote is, where the string ends (after
/// the closing quote), and whether it has escapes.
struct KeySpan {
    start: usize,
    end: usize,
    escaped: bool,
}

/// Walks the object whose `{` is at `open`, handing each key and the position of its value
/// to `value`, which returns where the value ends; returns the position after the `}`.
fn walk_object(
    text: &[u8],
    open: usize,
    depth: usize,
    mut value: impl FnMut(KeySpan, usize) -> Result<usize>,
) -> Result<usize> {
    if text.get(open) != Some(&b'{') {
        return fail(open, "expected an object");
    }
    if depth + 1 >= MAX_DEPTH {
        return fail(open, "recursion limit exceeded");
    }
    let mut at = skip_space(text, open + 1);
    if text.get(at) == Some(&b'}') {
        return Ok(at + 1);
    }
    loop {
        if text.get(at) != Some(&b'"') {
            return fail(at, "key must be a string");
        }
        let (end, escaped) = scan_string(text, at)?;
        let colon = skip_space(text, end);
        if text.get(colon) != Some(&b':') {
            return fail(colon, "expected `:`");
        }
        let key = KeySpan {
            start: at,
            end,
            escaped,
        };
        at = skip_space(text, value(key, skip_space(text, colon + 1))?);
        match text.get(at) {
            Some(b',') => at = skip_space(text, at + 1),
            Some(b'}') => return Ok(at + 1),
            Some(_) => return fail(at, "expected `,` or `}`"),
            None => return fail(at, "EOF while parsing an object"),
        }
    }
}

/// Reads the object whose `{` is at `open` (nested `depth` levels deep: 0 for a whole
/// text), handing each field's key and the position where its value starts to `value`,
/// which reads the value (with [`skip`] or on its own) and returns where it ends. Returns
/// the position after the `}`. Each byte is read once, so a caller that descends into the
/// fields it wants and skips the rest pays for one pass over the text.
pub fn read_object<'j>(
    text: &'j str,
    open: usize,
    depth: usize,
    mut value: impl FnMut(Cow<'j, str>, usize) -> Result<usize>,
) -> Result<usize> {
    walk_object(text.as_bytes(), open, depth, |key, at| {
        let key = if key.escaped {
            let decoded: String =
                serde_json::from_str(&text[key.start..key.end]).map_err(|_| ScanError {
                    at: key.start,
                    reason: "invalid escape",
                })?;
            Cow::Owned(decoded)
        } else {
            Cow::Borrowed(&text[key.start + 1..key.end - 1])
        };
        value(key, at)
    })
}

/// The position after the value that starts at `at`, `depth` levels deep (what
/// [`read_object`] hands out is one level below the object's own depth), validated.
pub fn skip(text: &str, at: usize, depth: usize) -> Result<usize> {
    skip_value(text.as_bytes(), at, depth)
}

/// The position of the first byte from `at` on that is not whitespace.
pub fn after_space(text: &str, at: usize) -> usize {
    skip_space(text.as_bytes(), at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let open = after_space(text, 0);
        let end = read_object(text, open, 0, |key, at| {
            let end = skip(text, at, 1)?;
            out.push((key.into_owned(), text[at..end].to_owned()));
            Ok(end)
        })
        .unwrap();
        assert_eq!(after_space(text, end), text.len());
        out
    }

    #[test]
    fn fields_come_with_their_values_text() {
        assert_eq!(
            fields(r#" {"a" : [1, {"b":"}"}] , "c\u0064":-0.5e+3,"e":{}} "#),
            [
                ("a".to_owned(), r#"[1, {"b":"}"}]"#.to_owned()),
                ("cd".to_owned(), "-0.5e+3".to_owned()),
                ("e".to_owned(), "{}".to_owned()),
            ]
        );
        assert!(fields("{}").is_empty());
        assert!(read_object("[1]", 0, 0, |_, at| Ok(at)).is_err());
    }

    #[test]
    fn what_is_not_json_is_refused() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "\"a",
            "\"\\x\"",
            "\"\\u12\"",
            "\"a\u{1}\"",
            "{\"a\" 1}",
            "[1 2]",
            "1 2",
            "{1:2}",
            "nul",
        ] {
            assert!(validate(bad).is_err(), "{bad:?} passed");
            assert!(
                serde_json::from_str::<serde::de::IgnoredAny>(bad).is_err(),
                "{bad:?}"
            );
        }
        let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        assert!(validate(&nested(MAX_DEPTH)).is_err());
        assert!(serde_json::from_str::<serde_json::Value>(&nested(MAX_DEPTH)).is_err());
        assert!(validate(&nested(MAX_DEPTH - 1)).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(&nested(MAX_DEPTH - 1)).is_ok());
    }

    #[test]
    fn string_ends_are_found_wherever_they_fall_in_a_word() {
        for before in 0..20 {
            for after in 0..12 {
                for special in ["\"", "\\\"", "\\u00e9", "\u{1f}", "\u{7f}", "é", "\\q"] {
                    let text = format!("\"{}{special}{}\"", "a".repeat(before), "b".repeat(after));
                    let serde = serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok();
                    assert_eq!(validate(&text).is_ok(), serde, "{text:?}");
                }
            }
        }
    }

    #[test]
    fn an_error_in_a_value_ends_the_object() {
        let text = r#"{"a":1,"b":tru}"#;
        let mut seen = Vec::new();
        let read = read_object(text, 0, 0, |key, at| {
            seen.push(key.into_owned());
            skip(text, at, 1)
        });
        assert!(read.is_err());
        assert_eq!(seen, ["a", "b"]);
    }
}
