//! JSON semantics Kubernetes relies on, once: equality where `1` and `1.0` are the same
//! number (schema `enum`, server-side apply's change detection), and one canonical text form
//! (sorted keys, whole floats written as integers) for sets, duplicates and managed-field keys.

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// Largest integer a JSON number holds exactly as a float (2^53).
const MAX_EXACT_FLOAT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Whether a float is a whole JSON number (go-openapi's `IsFloat64AJSONInteger`).
pub fn is_whole(f: f64) -> bool {
    f.is_finite() && f.fract() == 0.0 && f.abs() <= MAX_EXACT_FLOAT_INTEGER
}

/// Orders two JSON numbers by value: exactly for integers, as floats otherwise.
pub fn number_cmp(a: &Number, b: &Number) -> Ordering {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x.cmp(&y);
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x.cmp(&y);
    }
    let x = a.as_f64().unwrap_or(0.0);
    let y = b.as_f64().unwrap_or(0.0);
    x.partial_cmp(&y).unwrap_or(Ordering::Equal)
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
pub fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_cmp(x, y).is_eq(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

/// The canonical text of a value: compact, object keys sorted, whole floats as integers.
/// Two values have the same canonical text exactly when [`equal`] holds for them (within
/// float precision).
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && is_whole(f) => out.push_str(&(f as i64).to_string()),
            _ => out.push_str(&n.to_string()),
        },
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// How deeply containers nest in `value` (a scalar is 0, `{}` and `[]` are 1, `{"a": []}`
/// is 2), counted without recursion, and stopping early once past `limit`: `None` then.
pub fn depth_within(value: &Value, limit: usize) -> Option<usize> {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, above)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        let level = above + 1;
        if level > limit {
            return None;
        }
        deepest = deepest.max(level);
        stack.extend(children.map(|child| (child, level)));
    }
    Some(deepest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_compare_by_value() {
        assert!(equal(&json!(1), &json!(1.0)));
        assert!(equal(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})));
        assert!(!equal(&json!(1), &json!(1.5)));
        assert!(!equal(&json!(1), &json!("1")));
        assert!(equal(&json!(u64::MAX), &json!(u64::MAX)));
        assert!(!equal(&json!(i64::MAX), &json!(i64::MAX - 1)));
    }

    #[test]
    fn depth_counts_nested_containers_without_recursion() {
        assert_eq!(depth_within(&json!(1), 10), Some(0));
        assert_eq!(depth_within(&json!({}), 10), Some(1));
        assert_eq!(depth_within(&json!({"a": [1, {"b": []}]}), 10), Some(4));
        assert_eq!(depth_within(&json!({"a": [1, {"b": []}]}), 3), None);
        // Far deeper than any recursion could go.
        let mut deep = json!(0);
        for _ in 0..200_000 {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(depth_within(&deep, 100), None);
        assert_eq!(depth_within(&deep, usize::MAX), Some(200_000));
        // Dropping it must not recurse either (serde_json's Drop does; take it apart).
        let mut current = deep;
        while let Value::Array(mut items) = current {
            current = items.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn canonical_text_sorts_keys_and_writes_whole_floats_as_integers() {
        assert_eq!(
            canonical(&json!({"b": 1, "a": [2.0, 2.5, "x"]})),
            r#"{"a":[2,2.5,"x"],"b":1}"#
        );
        assert_eq!(canonical(&json!(1.0)), canonical(&json!(1)));
        assert_ne!(canonical(&json!(1)), canonical(&json!("1")));
    }
}
