//! Validation of object names, label keys/values and annotation keys.
//!
//! Every validator returns a list of human-readable problems; an empty list
//! means the input is valid. The wording follows the Kubernetes API server
//! (`k8s.io/apimachinery/pkg/util/validation`) so that clients see familiar
//! messages. Lengths are measured in bytes, as Kubernetes does.

/// Maximum length of an RFC 1123 label (e.g. a namespace name).
const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Maximum length of an RFC 1123 subdomain (most object names).
const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Maximum length of the name part of a qualified name (label/annotation key).
const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Maximum length of a label value.
const LABEL_VALUE_MAX_LENGTH: usize = 63;

/// Maximum length of a generated name (prefix plus random suffix).
const MAX_NAME_LENGTH: usize = 63;
/// Number of random characters appended by [`generate_name`].
const RANDOM_SUFFIX_LENGTH: usize = 5;
/// Longest prefix kept by [`generate_name`].
const MAX_GENERATED_PREFIX_LENGTH: usize = MAX_NAME_LENGTH - RANDOM_SUFFIX_LENGTH;
/// Alphabet of the random suffix: no vowels (avoids accidental words) and no
/// easily confused characters such as `0`/`o` or `1`/`l`.
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

const EMPTY_ERROR: &str = "must be non-empty";

/// Message for a value longer than `max` bytes.
fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// Builds a "does not match the pattern" message the way Kubernetes'
/// `RegexError` does, including its double space before each `or`.
fn regex_error(msg: &str, pattern: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{pattern}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(example);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(pattern);
    out.push_str("')");
    out
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, anchored.
fn matches_dns1123_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    let edge_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            edge_ok(first) && edge_ok(last) && bytes.iter().all(|&b| edge_ok(b) || b == b'-')
        }
        _ => false,
    }
}

/// Dot-separated sequence of RFC 1123 labels, anchored.
fn matches_dns1123_subdomain(value: &str) -> bool {
    value.split('.').all(matches_dns1123_label)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, anchored.
fn matches_qualified_name(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Validates an RFC 1123 subdomain (the rule for most object names): at most
/// 253 characters of lowercase alphanumerics, `-` and `.`, starting and
/// ending with an alphanumeric character.
pub fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Validates an RFC 1123 label (the rule for namespace names): at most 63
/// characters of lowercase alphanumerics and `-`, starting and ending with an
/// alphanumeric character. A value that would be a valid subdomain gets the
/// shorter message `must not contain dots`, as in current Kubernetes.
pub fn dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// Kubernetes `IsQualifiedName`: an optional DNS-subdomain prefix and `/`,
/// then a name of at most 63 characters.
fn qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {EMPTY_ERROR}"));
            } else {
                errs.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|msg| format!("prefix part {msg}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR_MSG,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {EMPTY_ERROR}"));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !matches_qualified_name(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Validates a label key: an optional prefix that is a DNS subdomain
/// (≤ 253 characters, lowercase) followed by `/`, then a name of at most 63
/// characters matching `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
pub fn label_key(key: &str) -> Vec<String> {
    qualified_name(key)
}

/// Validates a label value: empty, or at most 63 characters of
/// alphanumerics, `-`, `_` and `.`, starting and ending with an alphanumeric
/// character.
pub fn label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Validates an annotation key with the qualified-name rules of
/// [`label_key`]. Like Kubernetes, the key is lowercased first, so an
/// upper-case prefix such as `Example.com/` is accepted. (The 256 KiB limit
/// on the total size of all annotations is the caller's business.)
pub fn annotation_key(key: &str) -> Vec<String> {
    qualified_name(&key.to_lowercase())
}

/// Implements `metadata.generateName`: the prefix (cut to its first 58
/// bytes, backing off to a UTF-8 character boundary, when longer) followed by
/// 5 characters from `bcdfghjklmnpqrstvwxz2456789`, each chosen by one call
/// of `random` (taken modulo the alphabet size; the bias is negligible).
pub fn generate_name(prefix: &str, mut random: impl FnMut() -> u32) -> String {
    let mut cut = prefix.len().min(MAX_GENERATED_PREFIX_LENGTH);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut name = String::with_capacity(cut + RANDOM_SUFFIX_LENGTH);
    name.push_str(&prefix[..cut]);
    for _ in 0..RANDOM_SUFFIX_LENGTH {
        // The alphabet has 27 entries, so the index always fits.
        let index = (random() % SUFFIX_ALPHABET.len() as u32) as usize;
        name.push(char::from(SUFFIX_ALPHABET[index]));
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const TOO_MANY_SLASHES_MSG: &str = "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
    const VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    fn prefixed(msg: &str) -> String {
        format!("prefix part {msg}")
    }

    fn check(name: &str, f: fn(&str) -> Vec<String>, cases: &[(&str, Vec<String>)]) {
        for (input, want) in cases {
            assert_eq!(&f(input), want, "{name}({input:?})");
        }
    }

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn dns1123_subdomain_table() {
        let max = "a".repeat(253);
        let too_long = "a".repeat(254);
        let long_labels = format!("{}.{}", "a".repeat(100), "b".repeat(100));
        let cases = vec![
            ("a", vec![]),
            ("example.com", vec![]),
            ("a-b.c-d", vec![]),
            ("0", vec![]),
            ("1.2.3.4", vec![]),
            ("my-pod-123", vec![]),
            (long_labels.as_str(), vec![]),
            (max.as_str(), vec![]),
            ("", vec![s(SUBDOMAIN_MSG)]),
            ("A", vec![s(SUBDOMAIN_MSG)]),
            ("Example.com", vec![s(SUBDOMAIN_MSG)]),
            ("-a", vec![s(SUBDOMAIN_MSG)]),
            ("a-", vec![s(SUBDOMAIN_MSG)]),
            (".a", vec![s(SUBDOMAIN_MSG)]),
            ("a.", vec![s(SUBDOMAIN_MSG)]),
            ("a..b", vec![s(SUBDOMAIN_MSG)]),
            ("a.-b", vec![s(SUBDOMAIN_MSG)]),
            ("a_b", vec![s(SUBDOMAIN_MSG)]),
            ("a b", vec![s(SUBDOMAIN_MSG)]),
            ("a/b", vec![s(SUBDOMAIN_MSG)]),
            ("ä", vec![s(SUBDOMAIN_MSG)]),
            (
                too_long.as_str(),
                vec![s("must be no more than 253 characters")],
            ),
        ];
        check("dns1123_subdomain", dns1123_subdomain, &cases);

        let both = format!("{}-", "a".repeat(254));
        assert_eq!(
            dns1123_subdomain(&both),
            vec![s("must be no more than 253 characters"), s(SUBDOMAIN_MSG)]
        );
    }

    #[test]
    fn dns1123_label_table() {
        let max = "a".repeat(63);
        let too_long = "a".repeat(64);
        let too_long_bad = format!("{}_", "a".repeat(64));
        let too_long_dots = format!("{}.b", "a".repeat(63));
        let cases = vec![
            ("a", vec![]),
            ("0", vec![]),
            ("my-name", vec![]),
            ("123-abc", vec![]),
            ("a--b", vec![]),
            (max.as_str(), vec![]),
            ("", vec![s(LABEL_MSG)]),
            ("A", vec![s(LABEL_MSG)]),
            ("myName", vec![s(LABEL_MSG)]),
            ("-a", vec![s(LABEL_MSG)]),
            ("a-", vec![s(LABEL_MSG)]),
            ("a_b", vec![s(LABEL_MSG)]),
            ("a b", vec![s(LABEL_MSG)]),
            (".a", vec![s(LABEL_MSG)]),
            ("a.b", vec![s("must not contain dots")]),
            ("example.com", vec![s("must not contain dots")]),
            (
                too_long.as_str(),
                vec![s("must be no more than 63 characters")],
            ),
            (
                too_long_bad.as_str(),
                vec![s("must be no more than 63 characters"), s(LABEL_MSG)],
            ),
            (
                too_long_dots.as_str(),
                vec![
                    s("must be no more than 63 characters"),
                    s("must not contain dots"),
                ],
            ),
        ];
        check("dns1123_label", dns1123_label, &cases);
    }

    #[test]
    fn label_key_table() {
        let name63 = "a".repeat(63);
        let name64 = "a".repeat(64);
        let prefix253 = format!("{}.com", "a".repeat(249));
        let prefix254 = format!("{}.com", "a".repeat(250));
        let key_prefix253 = format!("{prefix253}/a");
        let key_prefix254 = format!("{prefix254}/a");
        let key_name64 = format!("example.com/{name64}");
        let cases = vec![
            ("a", vec![]),
            ("A", vec![]),
            ("MyName", vec![]),
            ("my.name", vec![]),
            ("123-abc", vec![]),
            ("a_b", vec![]),
            ("a-._b", vec![]),
            ("example.com/MyName", vec![]),
            ("kubernetes.io/hostname", vec![]),
            ("app.kubernetes.io/name", vec![]),
            (name63.as_str(), vec![]),
            (key_prefix253.as_str(), vec![]),
            ("", vec![s("name part must be non-empty"), s(NAME_PART_MSG)]),
            (
                name64.as_str(),
                vec![s("name part must be no more than 63 characters")],
            ),
            (
                key_name64.as_str(),
                vec![s("name part must be no more than 63 characters")],
            ),
            ("a b", vec![s(NAME_PART_MSG)]),
            ("-a", vec![s(NAME_PART_MSG)]),
            ("a-", vec![s(NAME_PART_MSG)]),
            ("_a", vec![s(NAME_PART_MSG)]),
            ("a.", vec![s(NAME_PART_MSG)]),
            ("a=b", vec![s(NAME_PART_MSG)]),
            ("ä", vec![s(NAME_PART_MSG)]),
            (
                "example.com/",
                vec![s("name part must be non-empty"), s(NAME_PART_MSG)],
            ),
            ("/a", vec![s("prefix part must be non-empty")]),
            ("Example.com/a", vec![prefixed(SUBDOMAIN_MSG)]),
            ("example_com/a", vec![prefixed(SUBDOMAIN_MSG)]),
            ("example.com/-a", vec![s(NAME_PART_MSG)]),
            (
                "Example.com/-a",
                vec![prefixed(SUBDOMAIN_MSG), s(NAME_PART_MSG)],
            ),
            (
                key_prefix254.as_str(),
                vec![prefixed("must be no more than 253 characters")],
            ),
            ("a/b/c", vec![s(TOO_MANY_SLASHES_MSG)]),
            ("//", vec![s(TOO_MANY_SLASHES_MSG)]),
        ];
        check("label_key", label_key, &cases);
    }

    #[test]
    fn label_value_table() {
        let max = "a".repeat(63);
        let too_long = "a".repeat(64);
        let too_long_bad = format!("{}-", "a".repeat(64));
        let cases = vec![
            ("", vec![]),
            ("a", vec![]),
            ("MyValue", vec![]),
            ("my_value", vec![]),
            ("12345", vec![]),
            ("a.b-c_d", vec![]),
            (max.as_str(), vec![]),
            ("-a", vec![s(VALUE_MSG)]),
            ("a-", vec![s(VALUE_MSG)]),
            ("_", vec![s(VALUE_MSG)]),
            ("a b", vec![s(VALUE_MSG)]),
            ("a/b", vec![s(VALUE_MSG)]),
            ("a=b", vec![s(VALUE_MSG)]),
            ("-1", vec![s(VALUE_MSG)]),
            ("ü", vec![s(VALUE_MSG)]),
            (
                too_long.as_str(),
                vec![s("must be no more than 63 characters")],
            ),
            (
                too_long_bad.as_str(),
                vec![s("must be no more than 63 characters"), s(VALUE_MSG)],
            ),
        ];
        check("label_value", label_value, &cases);
    }

    #[test]
    fn annotation_key_table() {
        let cases = vec![
            ("a", vec![]),
            ("MyAnnotation", vec![]),
            ("example.com/Some_Key.1", vec![]),
            // Lowercased before validation, so an upper-case prefix is fine.
            ("Example.COM/key", vec![]),
            ("kubectl.kubernetes.io/last-applied-configuration", vec![]),
            ("", vec![s("name part must be non-empty"), s(NAME_PART_MSG)]),
            ("a b", vec![s(NAME_PART_MSG)]),
            ("/a", vec![s("prefix part must be non-empty")]),
            ("exa_mple.com/a", vec![prefixed(SUBDOMAIN_MSG)]),
            ("a/b/c", vec![s(TOO_MANY_SLASHES_MSG)]),
        ];
        check("annotation_key", annotation_key, &cases);
        // Label keys, unlike annotation keys, are not lowercased.
        assert_eq!(label_key("Example.COM/key"), vec![prefixed(SUBDOMAIN_MSG)]);
    }

    /// A deterministic "random" source returning the given values in turn.
    fn seq(values: &[u32]) -> impl FnMut() -> u32 + '_ {
        let mut i = 0;
        move || {
            let v = values[i % values.len()];
            i += 1;
            v
        }
    }

    #[test]
    fn generate_name_table() {
        let long = "a".repeat(70);
        let exact58 = "b".repeat(58);
        let exact59 = "c".repeat(59);
        // 57 ASCII bytes and a 2-byte character straddling the 58-byte cut.
        let straddle = format!("{}é-x", "d".repeat(57));
        let cases: Vec<(&str, Vec<u32>, String)> = vec![
            ("web-", vec![0, 1, 2, 3, 4], s("web-bcdfg")),
            ("", vec![26, 25, 24, 23, 22], s("98765")),
            // Values are taken modulo 27.
            ("x-", vec![27, 28, 54, 26 + 27, u32::MAX], s("x-bcb94")),
            (long.as_str(), vec![0], format!("{}bbbbb", "a".repeat(58))),
            (exact58.as_str(), vec![1], format!("{exact58}ccccc")),
            (
                exact59.as_str(),
                vec![2],
                format!("{}ddddd", "c".repeat(58)),
            ),
            (
                straddle.as_str(),
                vec![0],
                format!("{}bbbbb", "d".repeat(57)),
            ),
        ];
        for (prefix, randoms, want) in cases {
            let got = generate_name(prefix, seq(&randoms));
            assert_eq!(got, want, "generate_name({prefix:?})");
            assert!(got.len() <= 63, "{got:?} is too long");
        }
    }

    #[test]
    fn generate_name_uses_only_suffix_alphabet_and_makes_valid_names() {
        let mut state: u32 = 12345;
        let mut lcg = move || {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            state >> 8
        };
        for _ in 0..200 {
            let name = generate_name("pod-", &mut lcg);
            assert_eq!(name.len(), 9);
            assert!(name[4..].bytes().all(|b| SUFFIX_ALPHABET.contains(&b)));
            assert!(dns1123_label(&name).is_empty(), "{name}");
        }
        // Calls the random source exactly once per suffix character.
        let mut calls = 0;
        generate_name("p", || {
            calls += 1;
            0
        });
        assert_eq!(calls, 5);
    }
}
