//! Kubernetes label and field selectors, and the validation of names, label keys and values,
//! as pure functions with Kubernetes' error wording.
//!
//! Shared by the API server (list and watch filtering, metadata validation) and the tools
//! (inventory groups by selector), so both read selectors the same way. No dependencies, no I/O.

pub mod selectors;
pub mod validation;

/// Quotes a string the way Go's `%q` does, as Kubernetes error messages show values.
pub fn go_quote(s: &str) -> String {
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
