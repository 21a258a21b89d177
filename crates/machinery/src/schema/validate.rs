//! Validation of a value against a compiled schema, with kube-apiserver's messages, e.g.
//! `Invalid value: "string": spec.size in body must be of type integer: "string"`.
//!
//! Keywords: `type` (integer accepts whole JSON numbers, number accepts integers),
//! `nullable`, `x-kubernetes-int-or-string`, `enum`, `minimum`/`maximum` with boolean
//! `exclusiveMinimum`/`exclusiveMaximum`, `multipleOf`, `minLength`/`maxLength` (Unicode
//! characters), `pattern` (search semantics; patterns that do not compile constrain nothing),
//! `format` (int32, int64, date-time, date, byte, uuid, ipv4, ipv6; others ignored),
//! `minItems`/`maxItems`, `uniqueItems`, `minProperties`/`maxProperties`, `required`,
//! `properties`, `additionalProperties`, `items`, `allOf`/`anyOf`/`oneOf`/`not`,
//! `x-kubernetes-list-type` (`set` and `map` report duplicates) and
//! `x-kubernetes-embedded-resource` (apiVersion and kind must be non-empty strings). Failed
//! junctors report, as kube-apiserver does, an extra error on the path of the value being
//! validated when that is the root (empty field), e.g. `Invalid value: "": "spec.x" must
//! validate at least one schema (anyOf)`.

use std::collections::{BTreeSet, HashSet};

use serde_json::{Map, Number, Value};

use super::Node;
use super::formats;
use crate::field::{FieldError, path};
use crate::gofmt;
use crate::json;

/// Validates `value` at `at`; `root` skips the root's `apiVersion`, `kind` and `metadata`.
/// Junctor summaries are reported at `at`'s base (`""` for an object, the path of a
/// `default` value being checked).
pub(super) fn validate(node: &Node, value: &Value, at: &str, root: bool) -> Vec<FieldError> {
    let mut v = Validator {
        base: at.to_string(),
        errors: Vec::new(),
    };
    v.node(node, value, at, root);
    v.errors
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(types: &[String], value: &Value) -> bool {
    let actual = json_type(value);
    types.iter().any(|t| {
        t == actual
            || (t == "number" && actual == "integer")
            || (t == "integer" && actual == "number" && value.as_f64().is_some_and(json::is_whole))
    })
}

fn is_type_meta_or_metadata(name: &str) -> bool {
    matches!(name, "apiVersion" | "kind" | "metadata")
}

fn int_in_range(n: &Number, min: i64, max: i64) -> bool {
    if let Some(i) = n.as_i64() {
        return i >= min && i <= max;
    }
    if n.as_u64().is_some() {
        // Larger than i64::MAX.
        return false;
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    f.is_finite() && f.fract() == 0.0 && f >= min as f64 && f <= max as f64
}

fn is_multiple_of(n: &Number, m: &Number) -> bool {
    if let (Some(x), Some(y)) = (n.as_i64(), m.as_i64()) {
        if y <= 0 {
            return true;
        }
        return x % y == 0;
    }
    let x = n.as_f64().unwrap_or(0.0);
    let y = m.as_f64().unwrap_or(0.0);
    if y <= 0.0 || !y.is_finite() {
        return true;
    }
    let q = x / y;
    if !q.is_finite() {
        return false;
    }
    (q - q.round()).abs() <= 1e-9 * q.abs().max(1.0)
}

struct Validator {
    /// Field used for errors that kube-apiserver cannot attribute to a path (junctors).
    base: String,
    errors: Vec<FieldError>,
}

impl Validator {
    fn sub(&self, node: &Node, value: &Value, at: &str, root: bool) -> Vec<FieldError> {
        let mut v = Validator {
            base: self.base.clone(),
            errors: Vec::new(),
        };
        v.node(node, value, at, root);
        v.errors
    }

    fn composite(&mut self, detail: String) {
        let e = FieldError::invalid_value(&self.base, &Value::String(String::new()), &detail);
        self.errors.push(e);
    }

    fn node(&mut self, node: &Node, value: &Value, at: &str, root: bool) {
        let types = &node.types;
        if value.is_null() {
            if node.nullable {
                return;
            }
            if !types.is_empty() {
                let detail = format!("{at} in body must be of type {}: \"null\"", types.join(","));
                self.errors.push(FieldError::type_invalid(
                    at,
                    &Value::String("null".into()),
                    &detail,
                ));
                return;
            }
            self.check_enum(node, value, at);
            return;
        }
        if !types.is_empty() && !type_matches(types, value) {
            let actual = json_type(value);
            let detail = format!(
                "{at} in body must be of type {}: \"{actual}\"",
                types.join(",")
            );
            self.errors.push(FieldError::type_invalid(
                at,
                &Value::String(actual.into()),
                &detail,
            ));
        }
        self.junctors(node, value, at, root);
        match value {
            Value::String(s) => self.string_checks(node, s, value, at),
            Value::Number(n) => self.number_checks(node, n, value, at),
            Value::Array(a) => self.array_checks(node, a, at),
            Value::Object(m) => self.object_checks(node, m, at),
            _ => {}
        }
        self.check_enum(node, value, at);
        match value {
            Value::Array(a) => self.array_children(node, a, at),
            Value::Object(m) => self.object_children(node, m, at, root),
            _ => {}
        }
    }

    fn check_enum(&mut self, node: &Node, value: &Value, at: &str) {
        let allowed = &node.enumeration;
        if !allowed.is_empty() && !allowed.iter().any(|a| json::equal(a, value)) {
            self.errors
                .push(FieldError::not_supported(at, value, allowed));
        }
    }

    fn junctors(&mut self, node: &Node, value: &Value, at: &str, root: bool) {
        let quoted = gofmt::quote(at);
        if !node.any_of.is_empty() {
            let results: Vec<Vec<FieldError>> = node
                .any_of
                .iter()
                .map(|s| self.sub(s, value, at, root))
                .collect();
            if !results.iter().any(Vec::is_empty) {
                self.composite(format!(
                    "{quoted} must validate at least one schema (anyOf)"
                ));
                self.push_best(results);
            }
        }
        if !node.one_of.is_empty() {
            let results: Vec<Vec<FieldError>> = node
                .one_of
                .iter()
                .map(|s| self.sub(s, value, at, root))
                .collect();
            let valid = results.iter().filter(|r| r.is_empty()).count();
            if valid == 0 {
                self.composite(format!(
                    "{quoted} must validate one and only one schema (oneOf). Found none valid"
                ));
                self.push_best(results);
            } else if valid > 1 {
                self.composite(format!(
                    "{quoted} must validate one and only one schema (oneOf). Found {valid} valid alternatives"
                ));
            }
        }
        if !node.all_of.is_empty() {
            let results: Vec<Vec<FieldError>> = node
                .all_of
                .iter()
                .map(|s| self.sub(s, value, at, root))
                .collect();
            let valid = results.iter().filter(|r| r.is_empty()).count();
            if valid != node.all_of.len() {
                let suffix = if valid == 0 { ". None validated" } else { "" };
                self.composite(format!(
                    "{quoted} must validate all the schemas (allOf){suffix}"
                ));
                for r in results {
                    self.errors.extend(r);
                }
            }
        }
        if let Some(not) = &node.not
            && self.sub(not, value, at, root).is_empty()
        {
            self.composite(format!("{quoted} must not validate the schema (not)"));
        }
    }

    /// Appends the errors of the alternative that came closest to validating.
    fn push_best(&mut self, results: Vec<Vec<FieldError>>) {
        if let Some(best) = results.into_iter().min_by_key(Vec::len) {
            self.errors.extend(best);
        }
    }

    fn string_checks(&mut self, node: &Node, s: &str, value: &Value, at: &str) {
        let len = s.chars().count() as u64;
        if let Some(max) = node.max_length
            && len > max
        {
            self.errors.push(FieldError::too_long(at, max));
        }
        if let Some(min) = node.min_length
            && len < min
        {
            let detail = format!("{at} in body should be at least {min} chars long");
            self.errors
                .push(FieldError::invalid_value(at, value, &detail));
        }
        if let Some(pattern) = &node.pattern
            && let Some(regex) = &pattern.regex
            && !regex.is_match(s)
        {
            let detail = format!("{at} in body should match '{}'", pattern.source);
            self.errors
                .push(FieldError::invalid_value(at, value, &detail));
        }
        if let Some(f) = &node.format
            && formats::check(f, s) == Some(false)
        {
            let detail = format!("{at} in body must be of type {f}: {}", gofmt::quote(s));
            self.errors
                .push(FieldError::type_invalid(at, value, &detail));
        }
    }

    fn number_checks(&mut self, node: &Node, n: &Number, value: &Value, at: &str) {
        if let Some(f) = &node.format {
            let fits = match f.as_str() {
                "int32" => Some(int_in_range(n, i32::MIN as i64, i32::MAX as i64)),
                "int64" => Some(int_in_range(n, i64::MIN, i64::MAX)),
                _ => None,
            };
            if fits == Some(false) {
                let detail = format!(
                    "{at} in body must be of type {f}: {}",
                    gofmt::quote(&gofmt::number(n))
                );
                self.errors
                    .push(FieldError::type_invalid(at, value, &detail));
            }
        }
        if let Some(m) = &node.multiple_of
            && !is_multiple_of(n, m)
        {
            let detail = format!(
                "{at} in body should be a multiple of {}",
                gofmt::float(m.as_f64().unwrap_or(0.0))
            );
            self.errors
                .push(FieldError::invalid_value(at, value, &detail));
        }
        if let Some(max) = &node.maximum {
            let ord = json::number_cmp(n, max);
            let limit = gofmt::float(max.as_f64().unwrap_or(0.0));
            if node.exclusive_maximum && ord.is_ge() {
                let detail = format!("{at} in body should be less than {limit}");
                self.errors
                    .push(FieldError::invalid_value(at, value, &detail));
            } else if !node.exclusive_maximum && ord.is_gt() {
                let detail = format!("{at} in body should be less than or equal to {limit}");
                self.errors
                    .push(FieldError::invalid_value(at, value, &detail));
            }
        }
        if let Some(min) = &node.minimum {
            let ord = json::number_cmp(n, min);
            let limit = gofmt::float(min.as_f64().unwrap_or(0.0));
            if node.exclusive_minimum && ord.is_le() {
                let detail = format!("{at} in body should be greater than {limit}");
                self.errors
                    .push(FieldError::invalid_value(at, value, &detail));
            } else if !node.exclusive_minimum && ord.is_lt() {
                let detail = format!("{at} in body should be greater than or equal to {limit}");
                self.errors
                    .push(FieldError::invalid_value(at, value, &detail));
            }
        }
    }

    fn array_checks(&mut self, node: &Node, items: &[Value], at: &str) {
        let len = items.len();
        if let Some(max) = node.max_items
            && len as u64 > max
        {
            self.errors.push(FieldError::too_many(at, len, max));
        }
        if let Some(min) = node.min_items
            && (len as u64) < min
        {
            let detail = format!("{at} in body should have at least {min} items");
            self.errors
                .push(FieldError::invalid_value(at, &Value::from(len), &detail));
        }
        if node.unique_items {
            let mut seen = HashSet::new();
            if !items.iter().all(|v| seen.insert(json::canonical(v))) {
                let detail = format!("{at} in body shouldn't contain duplicates");
                self.errors.push(FieldError::invalid_value(
                    at,
                    &Value::String(String::new()),
                    &detail,
                ));
            }
        }
    }

    fn object_checks(&mut self, node: &Node, map: &Map<String, Value>, at: &str) {
        let len = map.len();
        if let Some(max) = node.max_properties
            && len as u64 > max
        {
            self.errors.push(FieldError::too_many(at, len, max));
        }
        if let Some(min) = node.min_properties
            && (len as u64) < min
        {
            let detail = format!("{at} in body should have at least {min} properties");
            self.errors
                .push(FieldError::invalid_value(at, &Value::from(len), &detail));
        }
    }

    fn array_children(&mut self, node: &Node, items: &[Value], at: &str) {
        let mut seen = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = path::index(at, i);
            match node.list_type.as_deref() {
                Some("set") if !seen.insert(json::canonical(item)) => {
                    self.errors.push(FieldError::duplicate(&item_path, item));
                }
                Some("map") if !node.list_map_keys.is_empty() => {
                    if let Some(obj) = item.as_object() {
                        let mut key = Map::new();
                        for k in &node.list_map_keys {
                            if let Some(kv) = obj.get(k) {
                                key.insert(k.clone(), kv.clone());
                            }
                        }
                        let key = Value::Object(key);
                        if !seen.insert(json::canonical(&key)) {
                            self.errors.push(FieldError::duplicate(&item_path, &key));
                        }
                    }
                }
                _ => {}
            }
            if let Some(item_node) = &node.items {
                self.node(item_node, item, &item_path, false);
            }
        }
    }

    fn object_children(&mut self, node: &Node, map: &Map<String, Value>, at: &str, root: bool) {
        let embedded = node.embedded;
        let required: BTreeSet<&str> = node.required.iter().map(String::as_str).collect();
        let mut names: BTreeSet<&str> = map.keys().map(String::as_str).collect();
        names.extend(required.iter().copied());
        if embedded {
            names.insert("apiVersion");
            names.insert("kind");
        }
        for name in names {
            if root && is_type_meta_or_metadata(name) {
                continue;
            }
            let child_path = path::child(at, name);
            if embedded && (name == "apiVersion" || name == "kind") {
                match map.get(name) {
                    None => self
                        .errors
                        .push(FieldError::required(&child_path, "must not be empty")),
                    Some(Value::String(s)) if s.is_empty() => {
                        self.errors.push(FieldError::invalid_value(
                            &child_path,
                            &Value::String(String::new()),
                            "must not be empty",
                        ));
                    }
                    Some(Value::String(_)) => {}
                    Some(other) => self.errors.push(FieldError::invalid_value(
                        &child_path,
                        other,
                        "must be a string",
                    )),
                }
            }
            let Some(v) = map.get(name) else {
                if required.contains(name) {
                    self.errors.push(FieldError::required(&child_path, ""));
                }
                continue;
            };
            if let Some(child) = node.properties.get(name) {
                self.node(child, v, &child_path, false);
                continue;
            }
            match &node.additional {
                super::Additional::Schema(child) => self.node(child, v, &child_path, false),
                super::Additional::Bool(false) if !(embedded && is_type_meta_or_metadata(name)) => {
                    let detail = format!("{child_path} in body is a forbidden property");
                    self.errors.push(FieldError::invalid_value(
                        at,
                        &Value::String(name.to_string()),
                        &detail,
                    ));
                }
                _ => {}
            }
        }
    }
}
