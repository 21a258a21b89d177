//! Key-range arithmetic shared by the backends.

/// The first key after every key that starts with `prefix`, or `None` when the range is
/// unbounded (an empty prefix, or one made only of 0xFF bytes).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The first key of a range read: the prefix, or `from_key` when it lies after the prefix.
pub(crate) fn range_start<'a>(prefix: &'a str, from_key: Option<&'a str>) -> &'a str {
    match from_key {
        Some(from) if from > prefix => from,
        _ => prefix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"/a/"), Some(b"/a0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn range_start_never_goes_before_the_prefix() {
        assert_eq!(range_start("/a/", None), "/a/");
        assert_eq!(range_start("/a/", Some("/a/x")), "/a/x");
        assert_eq!(range_start("/a/", Some("/")), "/a/");
    }
}
