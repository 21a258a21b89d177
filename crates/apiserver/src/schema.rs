//! Structural OpenAPI v3 schema handling for custom resources.
//!
//! This module mirrors what kube-apiserver does with the
//! `spec.versions[].schema.openAPIV3Schema` of a CustomResourceDefinition:
//!
//! * [`prune`] drops fields the schema does not declare,
//! * [`apply_defaults`] fills in `default` values (and drops `null`s of non-nullable fields),
//! * [`validate`] checks a custom resource against the schema and reports
//!   [`SchemaError`]s whose messages look like kube-apiserver's,
//! * [`check_structural`] checks that a CRD schema is structural and that its defaults are valid.
//!
//! The `pattern` keyword is evaluated by a small self-contained regular expression engine
//! (RE2-like syntax, search semantics); patterns it cannot parse impose no constraint.

use serde_json::{Map, Number, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::OnceLock;

/// Reason for an invalid value (`field.ErrorTypeInvalid`).
pub const REASON_INVALID: &str = "FieldValueInvalid";
/// Reason for a missing required value (`field.ErrorTypeRequired`).
pub const REASON_REQUIRED: &str = "FieldValueRequired";
/// Reason for a value outside an enumeration (`field.ErrorTypeNotSupported`).
pub const REASON_NOT_SUPPORTED: &str = "FieldValueNotSupported";
/// Reason for a value of the wrong type or format (`field.ErrorTypeTypeInvalid`).
pub const REASON_TYPE_INVALID: &str = "FieldValueTypeInvalid";
/// Reason for a string that is too long (`field.ErrorTypeTooLong`).
pub const REASON_TOO_LONG: &str = "FieldValueTooLong";
/// Reason for too many items or properties (`field.ErrorTypeTooMany`).
pub const REASON_TOO_MANY: &str = "FieldValueTooMany";
/// Reason for a duplicated list entry (`field.ErrorTypeDuplicate`).
pub const REASON_DUPLICATE: &str = "FieldValueDuplicate";
/// Reason for a forbidden field (`field.ErrorTypeForbidden`).
pub const REASON_FORBIDDEN: &str = "FieldValueForbidden";

const PRESERVE: &str = "x-kubernetes-preserve-unknown-fields";
const EMBEDDED: &str = "x-kubernetes-embedded-resource";
const INT_OR_STRING: &str = "x-kubernetes-int-or-string";
const LIST_TYPE: &str = "x-kubernetes-list-type";
const LIST_MAP_KEYS: &str = "x-kubernetes-list-map-keys";
const MAP_TYPE: &str = "x-kubernetes-map-type";

/// One problem, Kubernetes field.Error style.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaError {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueTypeInvalid`,
    /// `FieldValueTooLong`, `FieldValueTooMany`, `FieldValueDuplicate`, `FieldValueForbidden`
    pub reason: &'static str,
    /// Path like `spec.ports[0].name` (no leading dot).
    pub field: String,
    /// The message after the path, e.g.
    /// `Invalid value: "string": spec.size in body must be of type integer: "string"`
    pub message: String,
}

impl fmt::Display for SchemaError {
    /// Formats like Go's `field.Error.Error()`: `<field>: <message>`, with `<nil>` for an empty path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "<nil>: {}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for SchemaError {}

// ---------------------------------------------------------------------------------------------
// Error constructors and value formatting (mirrors field.Error.ErrorBody)
// ---------------------------------------------------------------------------------------------

fn err(reason: &'static str, field: &str, message: String) -> SchemaError {
    SchemaError {
        reason,
        field: field.to_string(),
        message,
    }
}

fn invalid(field: &str, value: &Value, detail: &str) -> SchemaError {
    err(
        REASON_INVALID,
        field,
        format!("Invalid value: {}: {detail}", fmt_value(value)),
    )
}

fn type_invalid(field: &str, value: &Value, detail: &str) -> SchemaError {
    err(
        REASON_TYPE_INVALID,
        field,
        format!("Invalid value: {}: {detail}", fmt_value(value)),
    )
}

fn required(field: &str, detail: &str) -> SchemaError {
    let message = if detail.is_empty() {
        "Required value".to_string()
    } else {
        format!("Required value: {detail}")
    };
    err(REASON_REQUIRED, field, message)
}

fn forbidden(field: &str, detail: &str) -> SchemaError {
    err(REASON_FORBIDDEN, field, format!("Forbidden: {detail}"))
}

fn not_supported(field: &str, value: &Value, allowed: &[Value]) -> SchemaError {
    let mut message = format!("Unsupported value: {}", fmt_value(value));
    if !allowed.is_empty() {
        let quoted: Vec<String> = allowed
            .iter()
            .map(|v| match v {
                Value::String(s) => go_quote(s),
                other => go_quote(&other.to_string()),
            })
            .collect();
        message.push_str(": supported values: ");
        message.push_str(&quoted.join(", "));
    }
    err(REASON_NOT_SUPPORTED, field, message)
}

fn too_long(field: &str, max: u64) -> SchemaError {
    err(
        REASON_TOO_LONG,
        field,
        format!("Too long: may not be more than {max} bytes"),
    )
}

fn too_many(field: &str, actual: usize, max: u64) -> SchemaError {
    err(
        REASON_TOO_MANY,
        field,
        format!("Too many: {actual}: must have at most {max} items"),
    )
}

fn duplicate(field: &str, value: &Value) -> SchemaError {
    err(
        REASON_DUPLICATE,
        field,
        format!("Duplicate value: {}", fmt_value(value)),
    )
}

/// Formats a value the way `field.Error` prints it: strings Go-quoted, numbers with `%v`,
/// `null` as `"null"`, and composite values as compact JSON.
fn fmt_value(value: &Value) -> String {
    match value {
        Value::Null => "\"null\"".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => fmt_number(n),
        Value::String(s) => go_quote(s),
        other => other.to_string(),
    }
}

fn fmt_number(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        go_float(n.as_f64().unwrap_or(0.0))
    }
}

/// Formats a float like Go's `%v` (`strconv.FormatFloat(f, 'g', -1, 64)`).
fn go_float(f: f64) -> String {
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
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::new();
    if neg {
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

use fleetdb_labels::go_quote;

// ---------------------------------------------------------------------------------------------
// Paths and schema accessors
// ---------------------------------------------------------------------------------------------

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool).unwrap_or(false)
}

fn properties(schema: &Value) -> Option<&Map<String, Value>> {
    schema.get("properties").and_then(Value::as_object)
}

fn items_schema(schema: &Value) -> Option<&Value> {
    schema.get("items").filter(|i| i.is_object())
}

fn is_type_meta_or_metadata(name: &str) -> bool {
    matches!(name, "apiVersion" | "kind" | "metadata")
}

/// The types a value may have, as kube-apiserver sees them (`integer,string` for int-or-string).
fn schema_types(schema: &Value) -> Vec<String> {
    if flag(schema, INT_OR_STRING) {
        return vec!["integer".to_string(), "string".to_string()];
    }
    match schema.get("type") {
        Some(Value::String(t)) if !t.is_empty() => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
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

/// Whether a float is an integer JSON number (go-openapi's `IsFloat64AJSONInteger`).
fn is_whole(f: f64) -> bool {
    const MAX_JSON_INT: f64 = 9_007_199_254_740_992.0; // 2^53
    f.is_finite() && f.fract() == 0.0 && f.abs() <= MAX_JSON_INT
}

fn type_matches(types: &[String], value: &Value) -> bool {
    let actual = json_type(value);
    types.iter().any(|t| {
        t == actual
            || (t == "number" && actual == "integer")
            || (t == "integer" && actual == "number" && value.as_f64().is_some_and(is_whole))
    })
}

fn num_cmp(a: &Number, b: &Number) -> std::cmp::Ordering {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x.cmp(&y);
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x.cmp(&y);
    }
    let x = a.as_f64().unwrap_or(0.0);
    let y = b.as_f64().unwrap_or(0.0);
    x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
}

/// JSON equality where `1` and `1.0` are the same number.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y).is_eq(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// A canonical string for a JSON value (sorted keys, normalised numbers), used for hashing.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            if n.is_i64() || n.is_u64() {
                out.push_str(&n.to_string());
            } else if is_whole(f) {
                out.push_str(&(f as i64).to_string());
            } else {
                out.push_str(&n.to_string());
            }
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn canonical_string(value: &Value) -> String {
    let mut s = String::new();
    canonical(value, &mut s);
    s
}

// ---------------------------------------------------------------------------------------------
// Pruning
// ---------------------------------------------------------------------------------------------

/// Removes every field the schema does not declare (recursively), except below
/// `x-kubernetes-preserve-unknown-fields: true`. At the root, `apiVersion`, `kind` and `metadata`
/// are always kept (metadata is NOT pruned by this function). Returns the removed fields' paths,
/// e.g. `spec.foo`, `spec.items[1].bar`, sorted.
///
/// `additionalProperties` (schema or `true`) means map entries are kept (and pruned inside by the
/// additionalProperties schema; `true` keeps them untouched).
/// `x-kubernetes-embedded-resource: true` objects keep apiVersion/kind/metadata like the root.
pub fn prune(schema: &Value, object: &mut Value) -> Vec<String> {
    prune_with_root(schema, object, true, "")
}

fn prune_with_root(schema: &Value, object: &mut Value, root: bool, path: &str) -> Vec<String> {
    let mut removed = Vec::new();
    prune_node(object, Some(schema), path, root, &mut removed);
    removed.sort();
    removed.dedup();
    removed
}

fn prune_node(
    value: &mut Value,
    schema: Option<&Value>,
    path: &str,
    resource_root: bool,
    removed: &mut Vec<String>,
) {
    if let Some(s) = schema
        && flag(s, PRESERVE)
    {
        skip_prune(value, s, path, resource_root, removed);
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema.and_then(properties);
            let additional = schema.and_then(|s| s.get("additionalProperties"));
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if resource_root && is_type_meta_or_metadata(&k) {
                    continue;
                }
                let cpath = child(path, &k);
                if let Some(ps) = props.and_then(|p| p.get(&k)) {
                    if let Some(v) = map.get_mut(&k) {
                        prune_node(v, Some(ps), &cpath, flag(ps, EMBEDDED), removed);
                    }
                } else {
                    match additional {
                        Some(ap @ Value::Object(_)) => {
                            if let Some(v) = map.get_mut(&k) {
                                prune_node(v, Some(ap), &cpath, flag(ap, EMBEDDED), removed);
                            }
                        }
                        Some(Value::Bool(true)) => {}
                        _ => {
                            map.remove(&k);
                            removed.push(cpath);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            let item_schema = schema.and_then(items_schema);
            let embedded = item_schema.is_some_and(|s| flag(s, EMBEDDED));
            for (i, v) in items.iter_mut().enumerate() {
                prune_node(v, item_schema, &index(path, i), embedded, removed);
            }
        }
        _ => {}
    }
}

/// Below `x-kubernetes-preserve-unknown-fields`: keep unknown fields, but still prune inside
/// declared properties, additionalProperties and items.
fn skip_prune(
    value: &mut Value,
    schema: &Value,
    path: &str,
    resource_root: bool,
    removed: &mut Vec<String>,
) {
    match value {
        Value::Object(map) => {
            let props = properties(schema);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, v) in map.iter_mut() {
                if resource_root && is_type_meta_or_metadata(k) {
                    continue;
                }
                let cpath = child(path, k);
                if let Some(ps) = props.and_then(|p| p.get(k)) {
                    prune_node(v, Some(ps), &cpath, flag(ps, EMBEDDED), removed);
                } else if let Some(ap) = additional {
                    prune_node(v, Some(ap), &cpath, flag(ap, EMBEDDED), removed);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = items_schema(schema) {
                let embedded = flag(is, EMBEDDED);
                for (i, v) in items.iter_mut().enumerate() {
                    prune_node(v, Some(is), &index(path, i), embedded, removed);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Defaulting
// ---------------------------------------------------------------------------------------------

/// Applies `default` values: for each declared property with a default that is absent from an
/// object that exists, insert the default (deep clone); recurse into properties, items and
/// additionalProperties. A `null` value for a non-nullable field that has a default is replaced
/// by the default; a `null` for a non-nullable field without default is removed (Kubernetes drops
/// nulls on non-nullable fields before defaulting). Defaults inside an object apply only if that
/// object exists. `null` array items of non-nullable item schemas are replaced by the items'
/// default when there is one (they cannot be removed).
pub fn apply_defaults(schema: &Value, object: &mut Value) {
    default_node(schema, object);
}

fn is_non_nullable_null(value: &Value, schema: &Value) -> bool {
    value.is_null() && !flag(schema, "nullable")
}

fn default_node(schema: &Value, value: &mut Value) {
    if !schema.is_object() {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = properties(schema);
            if let Some(props) = props {
                for (k, ps) in props {
                    if let Some(d) = ps.get("default") {
                        let missing = match map.get(k) {
                            None => true,
                            Some(v) => is_non_nullable_null(v, ps),
                        };
                        if missing {
                            map.insert(k.clone(), d.clone());
                        }
                    }
                }
            }
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let Some(cs) = props.and_then(|p| p.get(&k)).or(additional) else {
                    continue;
                };
                let Some(v) = map.get_mut(&k) else { continue };
                if is_non_nullable_null(v, cs) {
                    match cs.get("default") {
                        Some(d) => *v = d.clone(),
                        None => {
                            map.remove(&k);
                            continue;
                        }
                    }
                }
                default_node(cs, v);
            }
        }
        Value::Array(items) => {
            let Some(is) = items_schema(schema) else {
                return;
            };
            for v in items.iter_mut() {
                if is_non_nullable_null(v, is)
                    && let Some(d) = is.get("default")
                {
                    *v = d.clone();
                }
                default_node(is, v);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// Validates `object` against the structural schema subset kube-apiserver enforces and returns
/// the problems in path order (deterministically).
///
/// Supported keywords: `type` (object, array, string, integer, number, boolean; integer accepts
/// whole JSON numbers, number accepts integers), `nullable`, `x-kubernetes-int-or-string`,
/// `x-kubernetes-preserve-unknown-fields`, `enum`, `minimum`/`maximum` with boolean
/// `exclusiveMinimum`/`exclusiveMaximum`, `multipleOf`, `minLength`/`maxLength` (Unicode
/// characters), `pattern` (RE2-like search semantics; unparsable patterns are ignored), `format`
/// (int32, int64, date-time, date, byte, uuid, ipv4, ipv6; others ignored), `minItems`/`maxItems`,
/// `uniqueItems`, `minProperties`/`maxProperties`, `required`, `properties`,
/// `additionalProperties`, `items`, `allOf`/`anyOf`/`oneOf`/`not`, `x-kubernetes-list-type`
/// (`set` and `map` with `x-kubernetes-list-map-keys` report duplicates) and
/// `x-kubernetes-embedded-resource` (apiVersion and kind must be non-empty strings).
///
/// The root object's `metadata`, `apiVersion` and `kind` are not validated here.
///
/// Messages look like kube-apiserver's, e.g.
/// `Invalid value: "string": spec.size in body must be of type integer: "string"`.
/// Failed `allOf`/`anyOf`/`oneOf`/`not` report, like kube-apiserver, an extra error on the root
/// (empty field) such as `Invalid value: "": "spec.x" must validate at least one schema (anyOf)`.
pub fn validate(schema: &Value, object: &Value) -> Vec<SchemaError> {
    let mut v = Validator {
        base: String::new(),
        errors: Vec::new(),
        patterns: HashMap::new(),
    };
    v.node(schema, object, "", true);
    v.errors
}

/// Validates a value whose own path is `path` (used for `default` values).
fn validate_at(schema: &Value, value: &Value, path: &str) -> Vec<SchemaError> {
    let mut v = Validator {
        base: path.to_string(),
        errors: Vec::new(),
        patterns: HashMap::new(),
    };
    v.node(schema, value, path, false);
    v.errors
}

struct Validator {
    /// Field used for errors that kube-apiserver cannot attribute to a path (junctors).
    base: String,
    errors: Vec<SchemaError>,
    /// Compiled `pattern`s (`None` for patterns that do not compile).
    patterns: HashMap<String, Option<regex::Regex>>,
}

impl Validator {
    fn sub(&mut self, schema: &Value, value: &Value, path: &str, root: bool) -> Vec<SchemaError> {
        let mut v = Validator {
            base: self.base.clone(),
            errors: Vec::new(),
            patterns: std::mem::take(&mut self.patterns),
        };
        v.node(schema, value, path, root);
        self.patterns = v.patterns;
        v.errors
    }

    /// Whether `s` matches `pattern`; `None` if the pattern is invalid or unsupported.
    fn pattern_matches(&mut self, pattern: &str, s: &str) -> Option<bool> {
        if !self.patterns.contains_key(pattern) {
            self.patterns
                .insert(pattern.to_string(), regex::Regex::new(pattern));
        }
        self.patterns
            .get(pattern)
            .and_then(Option::as_ref)
            .map(|re| re.is_match(s))
    }

    fn composite(&mut self, detail: String) {
        let e = invalid(&self.base, &Value::String(String::new()), &detail);
        self.errors.push(e);
    }

    fn node(&mut self, schema: &Value, value: &Value, path: &str, root: bool) {
        if !schema.is_object() {
            return;
        }
        let types = schema_types(schema);
        if value.is_null() {
            if flag(schema, "nullable") {
                return;
            }
            if !types.is_empty() {
                let detail = format!(
                    "{path} in body must be of type {}: \"null\"",
                    types.join(",")
                );
                self.errors
                    .push(type_invalid(path, &Value::String("null".into()), &detail));
                return;
            }
            self.check_enum(schema, value, path);
            return;
        }
        if !types.is_empty() && !type_matches(&types, value) {
            let actual = json_type(value);
            let detail = format!(
                "{path} in body must be of type {}: \"{actual}\"",
                types.join(",")
            );
            self.errors
                .push(type_invalid(path, &Value::String(actual.into()), &detail));
        }
        self.junctors(schema, value, path, root);
        match value {
            Value::String(s) => self.string_checks(schema, s, value, path),
            Value::Number(n) => self.number_checks(schema, n, value, path),
            Value::Array(a) => self.array_checks(schema, a, path),
            Value::Object(m) => self.object_checks(schema, m, path),
            _ => {}
        }
        self.check_enum(schema, value, path);
        match value {
            Value::Array(a) => self.array_children(schema, a, path),
            Value::Object(m) => self.object_children(schema, m, path, root),
            _ => {}
        }
    }

    fn check_enum(&mut self, schema: &Value, value: &Value, path: &str) {
        if let Some(Value::Array(allowed)) = schema.get("enum")
            && !allowed.is_empty()
            && !allowed.iter().any(|a| json_eq(a, value))
        {
            self.errors.push(not_supported(path, value, allowed));
        }
    }

    fn junctors(&mut self, schema: &Value, value: &Value, path: &str, root: bool) {
        let quoted = go_quote(path);
        if let Some(Value::Array(any_of)) = schema.get("anyOf")
            && !any_of.is_empty()
        {
            let results: Vec<Vec<SchemaError>> = any_of
                .iter()
                .map(|s| self.sub(s, value, path, root))
                .collect();
            if !results.iter().any(Vec::is_empty) {
                self.composite(format!(
                    "{quoted} must validate at least one schema (anyOf)"
                ));
                self.push_best(results);
            }
        }
        if let Some(Value::Array(one_of)) = schema.get("oneOf")
            && !one_of.is_empty()
        {
            let results: Vec<Vec<SchemaError>> = one_of
                .iter()
                .map(|s| self.sub(s, value, path, root))
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
        if let Some(Value::Array(all_of)) = schema.get("allOf")
            && !all_of.is_empty()
        {
            let results: Vec<Vec<SchemaError>> = all_of
                .iter()
                .map(|s| self.sub(s, value, path, root))
                .collect();
            let valid = results.iter().filter(|r| r.is_empty()).count();
            if valid != all_of.len() {
                let suffix = if valid == 0 { ". None validated" } else { "" };
                self.composite(format!(
                    "{quoted} must validate all the schemas (allOf){suffix}"
                ));
                for r in results {
                    self.errors.extend(r);
                }
            }
        }
        if let Some(not) = schema.get("not").filter(|n| n.is_object())
            && self.sub(not, value, path, root).is_empty()
        {
            self.composite(format!("{quoted} must not validate the schema (not)"));
        }
    }

    /// Appends the errors of the alternative that came closest to validating.
    fn push_best(&mut self, results: Vec<Vec<SchemaError>>) {
        if let Some(best) = results.into_iter().min_by_key(Vec::len) {
            self.errors.extend(best);
        }
    }

    fn string_checks(&mut self, schema: &Value, s: &str, value: &Value, path: &str) {
        let len = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            self.errors.push(too_long(path, max));
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            let detail = format!("{path} in body should be at least {min} chars long");
            self.errors.push(invalid(path, value, &detail));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str)
            && self.pattern_matches(p, s) == Some(false)
        {
            let detail = format!("{path} in body should match '{p}'");
            self.errors.push(invalid(path, value, &detail));
        }
        if let Some(f) = schema.get("format").and_then(Value::as_str)
            && format_ok(f, s) == Some(false)
        {
            let detail = format!("{path} in body must be of type {f}: {}", go_quote(s));
            self.errors.push(type_invalid(path, value, &detail));
        }
    }

    fn number_checks(&mut self, schema: &Value, n: &Number, value: &Value, path: &str) {
        if let Some(f) = schema.get("format").and_then(Value::as_str) {
            let fits = match f {
                "int32" => Some(int_in_range(n, i32::MIN as i64, i32::MAX as i64)),
                "int64" => Some(int_in_range(n, i64::MIN, i64::MAX)),
                _ => None,
            };
            if fits == Some(false) {
                let detail = format!(
                    "{path} in body must be of type {f}: {}",
                    go_quote(&fmt_number(n))
                );
                self.errors.push(type_invalid(path, value, &detail));
            }
        }
        if let Some(Value::Number(m)) = schema.get("multipleOf")
            && !is_multiple_of(n, m)
        {
            let detail = format!(
                "{path} in body should be a multiple of {}",
                go_float(m.as_f64().unwrap_or(0.0))
            );
            self.errors.push(invalid(path, value, &detail));
        }
        if let Some(Value::Number(max)) = schema.get("maximum") {
            let exclusive = flag(schema, "exclusiveMaximum");
            let ord = num_cmp(n, max);
            let limit = go_float(max.as_f64().unwrap_or(0.0));
            if exclusive && ord.is_ge() {
                let detail = format!("{path} in body should be less than {limit}");
                self.errors.push(invalid(path, value, &detail));
            } else if !exclusive && ord.is_gt() {
                let detail = format!("{path} in body should be less than or equal to {limit}");
                self.errors.push(invalid(path, value, &detail));
            }
        }
        if let Some(Value::Number(min)) = schema.get("minimum") {
            let exclusive = flag(schema, "exclusiveMinimum");
            let ord = num_cmp(n, min);
            let limit = go_float(min.as_f64().unwrap_or(0.0));
            if exclusive && ord.is_le() {
                let detail = format!("{path} in body should be greater than {limit}");
                self.errors.push(invalid(path, value, &detail));
            } else if !exclusive && ord.is_lt() {
                let detail = format!("{path} in body should be greater than or equal to {limit}");
                self.errors.push(invalid(path, value, &detail));
            }
        }
    }

    fn array_checks(&mut self, schema: &Value, items: &[Value], path: &str) {
        let len = items.len();
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && len as u64 > max
        {
            self.errors.push(too_many(path, len, max));
        }
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && (len as u64) < min
        {
            let detail = format!("{path} in body should have at least {min} items");
            self.errors.push(invalid(path, &Value::from(len), &detail));
        }
        if flag(schema, "uniqueItems") {
            let mut seen = HashSet::new();
            if !items.iter().all(|v| seen.insert(canonical_string(v))) {
                let detail = format!("{path} in body shouldn't contain duplicates");
                self.errors
                    .push(invalid(path, &Value::String(String::new()), &detail));
            }
        }
    }

    fn object_checks(&mut self, schema: &Value, map: &Map<String, Value>, path: &str) {
        let len = map.len();
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
            && len as u64 > max
        {
            self.errors.push(too_many(path, len, max));
        }
        if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
            && (len as u64) < min
        {
            let detail = format!("{path} in body should have at least {min} properties");
            self.errors.push(invalid(path, &Value::from(len), &detail));
        }
    }

    fn array_children(&mut self, schema: &Value, items: &[Value], path: &str) {
        let item_schema = items_schema(schema);
        let list_type = schema.get(LIST_TYPE).and_then(Value::as_str);
        let map_keys: Vec<&str> = schema
            .get(LIST_MAP_KEYS)
            .and_then(Value::as_array)
            .map(|ks| ks.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut seen = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = index(path, i);
            match list_type {
                Some("set") if !seen.insert(canonical_string(item)) => {
                    self.errors.push(duplicate(&ipath, item));
                }
                Some("map") if !map_keys.is_empty() => {
                    if let Some(obj) = item.as_object() {
                        let mut key_obj = Map::new();
                        for k in &map_keys {
                            if let Some(kv) = obj.get(*k) {
                                key_obj.insert((*k).to_string(), kv.clone());
                            }
                        }
                        let key_value = Value::Object(key_obj);
                        if !seen.insert(canonical_string(&key_value)) {
                            self.errors.push(duplicate(&ipath, &key_value));
                        }
                    }
                }
                _ => {}
            }
            if let Some(is) = item_schema {
                self.node(is, item, &ipath, false);
            }
        }
    }

    fn object_children(
        &mut self,
        schema: &Value,
        map: &Map<String, Value>,
        path: &str,
        root: bool,
    ) {
        let props = properties(schema);
        let additional = schema.get("additionalProperties");
        let embedded = flag(schema, EMBEDDED);
        let required_names: BTreeSet<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut names: BTreeSet<&str> = map.keys().map(String::as_str).collect();
        names.extend(required_names.iter().copied());
        if embedded {
            names.insert("apiVersion");
            names.insert("kind");
        }
        for name in names {
            if root && is_type_meta_or_metadata(name) {
                continue;
            }
            let cpath = child(path, name);
            if embedded && (name == "apiVersion" || name == "kind") {
                match map.get(name) {
                    None => self.errors.push(required(&cpath, "must not be empty")),
                    Some(Value::String(s)) if s.is_empty() => {
                        self.errors.push(invalid(
                            &cpath,
                            &Value::String(String::new()),
                            "must not be empty",
                        ));
                    }
                    Some(Value::String(_)) => {}
                    Some(other) => self.errors.push(invalid(&cpath, other, "must be a string")),
                }
            }
            let Some(v) = map.get(name) else {
                if required_names.contains(name) {
                    self.errors.push(required(&cpath, ""));
                }
                continue;
            };
            if let Some(ps) = props.and_then(|p| p.get(name)) {
                self.node(ps, v, &cpath, false);
                continue;
            }
            match additional {
                Some(ap @ Value::Object(_)) => self.node(ap, v, &cpath, false),
                Some(Value::Bool(false)) if !(embedded && is_type_meta_or_metadata(name)) => {
                    let detail = format!("{cpath} in body is a forbidden property");
                    self.errors
                        .push(invalid(path, &Value::String(name.to_string()), &detail));
                }
                _ => {}
            }
        }
    }
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

// ---------------------------------------------------------------------------------------------
// Formats
// ---------------------------------------------------------------------------------------------

/// Checks a string format; `None` for formats that are not validated.
fn format_ok(format: &str, s: &str) -> Option<bool> {
    Some(match format {
        "date-time" | "datetime" => is_date_time(s),
        "date" => is_date(s),
        "byte" => is_base64(s),
        "uuid" => is_uuid(s),
        "ipv4" => s.contains('.') && parse_ip(s),
        "ipv6" => s.contains(':') && parse_ip(s),
        _ => return None,
    })
}

fn digits_value(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

/// `YYYY-MM-DD` with a real calendar day (Go `time.Parse("2006-01-02")`).
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(y), Some(m), Some(d)) = (
        digits_value(&b[0..4]),
        digits_value(&b[5..7]),
        digits_value(&b[8..10]),
    ) else {
        return false;
    };
    (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)
}

/// RFC 3339 date-time as accepted by go-openapi's `IsDateTime`: a date, `t` (case-insensitive),
/// then `^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$` with hour <= 23,
/// minute <= 59 and second <= 59.
fn is_date_time(s: &str) -> bool {
    static TIME: OnceLock<Option<regex::Regex>> = OnceLock::new();
    let time_re = TIME.get_or_init(|| {
        regex::Regex::new(
            r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$",
        )
    });
    let lower = s.to_ascii_lowercase();
    let mut parts = lower.split('t');
    let (Some(date), Some(time)) = (parts.next(), parts.next()) else {
        return false;
    };
    if !is_date(date) || !time_re.as_ref().is_some_and(|re| re.is_match(time)) {
        return false;
    }
    let b = time.as_bytes();
    let two = |i: usize| digits_value(&b[i..i + 2]).unwrap_or(99);
    two(0) <= 23 && two(3) <= 59 && two(6) <= 59
}

/// Standard base64 with padding (Go `base64.StdEncoding`, which skips `\r` and `\n`).
fn is_base64(s: &str) -> bool {
    let b: Vec<u8> = s.bytes().filter(|&c| c != b'\r' && c != b'\n').collect();
    if !b.len().is_multiple_of(4) {
        return false;
    }
    let pad = b.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return false;
    }
    b[..b.len() - pad]
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

/// `(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$`
fn is_uuid(s: &str) -> bool {
    let mut rest = s.as_bytes();
    for (i, n) in [8usize, 4, 4, 4, 12].into_iter().enumerate() {
        if i > 0 && rest.first() == Some(&b'-') {
            rest = &rest[1..];
        }
        if rest.len() < n || !rest[..n].iter().all(u8::is_ascii_hexdigit) {
            return false;
        }
        rest = &rest[n..];
    }
    rest.is_empty()
}

/// Go's `net.ParseIP(s) != nil`.
fn parse_ip(s: &str) -> bool {
    if s.contains(':') {
        parse_ipv6(s)
    } else {
        parse_ipv4(s)
    }
}

fn parse_ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|c| c.is_ascii_digit())
                && !(p.len() > 1 && p.starts_with('0'))
                && p.parse::<u32>().is_ok_and(|v| v <= 255)
        })
}

fn parse_ipv6(s: &str) -> bool {
    let mut rest = s;
    let mut groups = 0usize;
    let mut ellipsis: Option<usize> = None;
    if let Some(r) = rest.strip_prefix("::") {
        ellipsis = Some(0);
        rest = r;
        if rest.is_empty() {
            return true;
        }
    }
    while groups < 8 {
        let n = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
        if n == 0 {
            return false;
        }
        if rest.as_bytes().get(n) == Some(&b'.') {
            if (ellipsis.is_none() && groups != 6) || groups + 2 > 8 {
                return false;
            }
            if !parse_ipv4(rest) {
                return false;
            }
            groups += 2;
            rest = "";
            break;
        }
        let digits = rest[..n].trim_start_matches('0');
        if digits.len() > 4 {
            return false;
        }
        groups += 1;
        rest = &rest[n..];
        if rest.is_empty() {
            break;
        }
        if !rest.starts_with(':') || rest.len() == 1 {
            return false;
        }
        rest = &rest[1..];
        if let Some(r) = rest.strip_prefix(':') {
            if ellipsis.is_some() {
                return false;
            }
            ellipsis = Some(groups);
            rest = r;
            if rest.is_empty() {
                break;
            }
        }
    }
    if !rest.is_empty() {
        return false;
    }
    match ellipsis {
        Some(_) => groups < 8,
        None => groups == 8,
    }
}

// ---------------------------------------------------------------------------------------------
// Structural schema checks
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

const VALID_TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

/// Checks that a CRD version schema is structural (what kube-apiserver requires for
/// apiextensions.k8s.io/v1) and that its `default` values are pruned and valid.
///
/// Checked: root `type: object`; every schema node specifies a supported, non-empty `type` unless
/// it has `x-kubernetes-int-or-string: true` or `x-kubernetes-preserve-unknown-fields: true`;
/// arrays specify `items`; `properties` and `additionalProperties` are not both set on one node
/// (and `additionalProperties` is not used at the root); `uniqueItems: true` is rejected;
/// `metadata` at the root may only restrict `name` and `generateName`; embedded resources are
/// objects with properties (or preserve unknown fields); list types are well formed;
/// `allOf`/`anyOf`/`oneOf`/`not` only contain value validations for fields that the structural
/// part declares; `default` values contain no unknown fields and validate against their schema.
///
/// Field paths are relative to `base`, e.g. with base
/// `spec.versions[0].schema.openAPIV3Schema` a problem may be reported at
/// `spec.versions[0].schema.openAPIV3Schema.properties[spec].type`.
pub fn check_structural(schema: &Value, base: &str) -> Vec<SchemaError> {
    let mut errors = Vec::new();
    structural_node(schema, base, Level::Root, false, &mut errors);
    errors
}

fn sorted_entries(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn structural_node(
    schema: &Value,
    path: &str,
    level: Level,
    in_metadata: bool,
    errors: &mut Vec<SchemaError>,
) {
    let Some(so) = schema.as_object() else {
        errors.push(invalid(path, schema, "must be a schema object"));
        return;
    };
    let type_path = child(path, "type");
    let embedded = flag(schema, EMBEDDED);
    let int_or_string = flag(schema, INT_OR_STRING);
    let preserve = flag(schema, PRESERVE);

    // type
    let mut ty: Option<&str> = None;
    let mut type_malformed = false;
    match so.get("type") {
        None => {}
        Some(Value::String(t)) if t.is_empty() => {}
        Some(Value::String(t)) => {
            ty = Some(t.as_str());
            if !VALID_TYPES.contains(&t.as_str()) {
                let allowed: Vec<Value> = VALID_TYPES.iter().map(|t| Value::from(*t)).collect();
                errors.push(not_supported(
                    &type_path,
                    &Value::from(t.as_str()),
                    &allowed,
                ));
            }
        }
        Some(other) => {
            type_malformed = true;
            errors.push(invalid(&type_path, other, "must be a string"));
        }
    }
    if embedded && ty != Some("object") {
        let detail = "must be object if x-kubernetes-embedded-resource is true";
        match ty {
            None if !type_malformed => errors.push(required(&type_path, detail)),
            None => {}
            Some(t) => errors.push(invalid(&type_path, &Value::from(t), detail)),
        }
    } else if ty.is_none()
        && !type_malformed
        && (level == Level::Root || (!int_or_string && !preserve))
    {
        let detail = match level {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errors.push(required(&type_path, detail));
    }
    if level == Level::Root
        && let Some(t) = ty
        && t != "object"
    {
        errors.push(invalid(
            &type_path,
            &Value::from(t),
            "must be object at the root",
        ));
    }
    if let Some(Value::Bool(false)) = so.get(PRESERVE) {
        errors.push(invalid(
            &child(path, PRESERVE),
            &Value::Bool(false),
            "must be true or undefined",
        ));
    }

    // items / properties / additionalProperties
    if ty == Some("array") && !so.contains_key("items") {
        errors.push(required(&child(path, "items"), "must be specified"));
    }
    let props = properties(schema);
    let ap_path = child(path, "additionalProperties");
    if so.contains_key("additionalProperties") {
        if props.is_some_and(|p| !p.is_empty()) {
            errors.push(forbidden(
                &ap_path,
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if embedded {
            errors.push(forbidden(
                &ap_path,
                "must not be used if x-kubernetes-embedded-resource is set",
            ));
        }
        if level == Level::Root {
            errors.push(forbidden(&ap_path, "must not be used at the root"));
        }
    }
    check_unique_items(schema, path, errors);
    if embedded && !preserve && props.is_none_or(Map::is_empty) {
        errors.push(required(
            &child(path, "properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }

    // apiVersion / kind / metadata at resource roots
    if (level == Level::Root || embedded)
        && let Some(props) = props
    {
        check_resource_properties(props, path, level == Level::Root, errors);
    }

    check_list_type(schema, so, ty, path, errors);

    // default
    if let Some(d) = so.get("default")
        && !in_metadata
    {
        let default_path = child(path, "default");
        let mut pruned = d.clone();
        let removed = prune_with_root(schema, &mut pruned, embedded, "");
        if !removed.is_empty() {
            errors.push(invalid(&default_path, d, "must not have unknown fields"));
        }
        errors.extend(validate_at(schema, &pruned, &default_path));
    }

    // junctors
    let skip_any_of_types = int_or_string && is_int_or_string_any_of(so.get("anyOf"));
    let skip_all_of_any_of_types = int_or_string
        && so
            .get("allOf")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .is_some_and(|first| is_int_or_string_any_of(first.get("anyOf")));
    for kw in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(list)) = so.get(kw) {
            for (i, j) in list.iter().enumerate() {
                let skip_type = kw == "anyOf" && skip_any_of_types;
                let skip_nested = kw == "allOf" && i == 0 && skip_all_of_any_of_types;
                let jpath = index(&child(path, kw), i);
                value_validation(
                    j,
                    Some(schema),
                    &jpath,
                    path,
                    skip_type,
                    skip_nested,
                    errors,
                );
            }
        }
    }
    if let Some(not) = so.get("not") {
        let jpath = child(path, "not");
        value_validation(not, Some(schema), &jpath, path, false, false, errors);
    }

    // children
    if let Some(props) = props {
        let props_path = child(path, "properties");
        for (k, ps) in sorted_entries(props) {
            let meta = in_metadata || (level == Level::Root && k == "metadata");
            structural_node(ps, &key(&props_path, k), Level::Field, meta, errors);
        }
    }
    match so.get("additionalProperties") {
        Some(ap @ Value::Object(_)) => {
            structural_node(ap, &ap_path, Level::Field, in_metadata, errors);
        }
        Some(Value::Bool(_)) | None => {}
        Some(other) => errors.push(invalid(&ap_path, other, "must be a schema or a boolean")),
    }
    match so.get("items") {
        Some(is @ Value::Object(_)) => {
            structural_node(is, &child(path, "items"), Level::Item, in_metadata, errors);
        }
        None => {}
        Some(_) => errors.push(forbidden(
            &child(path, "items"),
            "items must be a schema object and not an array",
        )),
    }
}

fn check_resource_properties(
    props: &Map<String, Value>,
    path: &str,
    root: bool,
    errors: &mut Vec<SchemaError>,
) {
    let props_path = child(path, "properties");
    let type_of = |s: &Value| -> Option<String> {
        s.get("type")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    for name in ["apiVersion", "kind"] {
        if let Some(t) = props.get(name).and_then(type_of)
            && t != "string"
        {
            let p = child(&key(&props_path, name), "type");
            errors.push(invalid(&p, &Value::from(t), "must be string"));
        }
    }
    let Some(metadata) = props.get("metadata") else {
        return;
    };
    let meta_path = key(&props_path, "metadata");
    if let Some(t) = type_of(metadata)
        && t != "object"
    {
        errors.push(invalid(
            &child(&meta_path, "type"),
            &Value::from(t),
            "must be object",
        ));
    }
    let meta_props = properties(metadata);
    for name in ["name", "generateName"] {
        if let Some(t) = meta_props.and_then(|p| p.get(name)).and_then(type_of)
            && t != "string"
        {
            let p = child(&key(&child(&meta_path, "properties"), name), "type");
            errors.push(invalid(&p, &Value::from(t), "must be string"));
        }
    }
    if root {
        let allowed_keys = ["type", "default", "description", "title", "properties"];
        let restricted = metadata.as_object().is_some_and(|m| {
            m.keys().all(|k| allowed_keys.contains(&k.as_str()))
                && match m.get("properties") {
                    None => true,
                    Some(Value::Object(p)) => p.keys().all(|k| k == "name" || k == "generateName"),
                    Some(_) => false,
                }
        });
        if !restricted {
            errors.push(forbidden(
                &meta_path,
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            ));
        }
    }
}

fn check_list_type(
    schema: &Value,
    so: &Map<String, Value>,
    ty: Option<&str>,
    path: &str,
    errors: &mut Vec<SchemaError>,
) {
    let lt_path = child(path, LIST_TYPE);
    let keys_path = child(path, LIST_MAP_KEYS);
    let list_type = so.get(LIST_TYPE);
    if let Some(lt) = list_type {
        let allowed = ["atomic", "set", "map"];
        if !lt.as_str().is_some_and(|s| allowed.contains(&s)) {
            let allowed: Vec<Value> = allowed.iter().map(|s| Value::from(*s)).collect();
            errors.push(not_supported(&lt_path, lt, &allowed));
        } else if ty.is_some() && ty != Some("array") {
            errors.push(invalid(&lt_path, lt, "must only be used if type is array"));
        }
    }
    let is_map = list_type.and_then(Value::as_str) == Some("map");
    let keys: Vec<&str> = so
        .get(LIST_MAP_KEYS)
        .and_then(Value::as_array)
        .map(|k| k.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if is_map {
        if keys.is_empty() {
            errors.push(required(
                &keys_path,
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        if let Some(items) = items_schema(schema) {
            let items_path = child(path, "items");
            match items.get("type").and_then(Value::as_str) {
                Some("object") | None => {}
                Some(t) => errors.push(invalid(
                    &child(&items_path, "type"),
                    &Value::from(t),
                    "must be object if parent array's x-kubernetes-list-type is map",
                )),
            }
            let item_props = properties(items);
            for k in &keys {
                if item_props.and_then(|p| p.get(*k)).is_none() && !flag(items, PRESERVE) {
                    errors.push(required(
                        &key(&child(&items_path, "properties"), k),
                        "entries in x-kubernetes-list-map-keys must correspond to declared properties",
                    ));
                }
            }
        }
    } else if so.contains_key(LIST_MAP_KEYS) {
        errors.push(forbidden(
            &keys_path,
            "must not be set if x-kubernetes-list-type is not map",
        ));
    }
}

/// kube-apiserver rejects `uniqueItems: true` in CRD schemas.
fn check_unique_items(schema: &Value, path: &str, errors: &mut Vec<SchemaError>) {
    if flag(schema, "uniqueItems") {
        errors.push(forbidden(
            &child(path, "uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
}

/// `anyOf: [{type: integer}, {type: string}]`, the int-or-string exception.
fn is_int_or_string_any_of(any_of: Option<&Value>) -> bool {
    let Some(Value::Array(list)) = any_of else {
        return false;
    };
    let only_type = |v: &Value, t: &str| {
        v.as_object()
            .is_some_and(|o| o.len() == 1 && o.get("type").and_then(Value::as_str) == Some(t))
    };
    list.len() == 2 && only_type(&list[0], "integer") && only_type(&list[1], "string")
}

/// Checks a schema below `allOf`/`anyOf`/`oneOf`/`not`: it may only hold value validations, and
/// every property or items it mentions must exist in the structural schema `structural`.
fn value_validation(
    schema: &Value,
    structural: Option<&Value>,
    path: &str,
    structural_path: &str,
    skip_type: bool,
    skip_nested_any_of_types: bool,
    errors: &mut Vec<SchemaError>,
) {
    let Some(so) = schema.as_object() else {
        return;
    };
    if so.contains_key("type") && !skip_type {
        errors.push(forbidden(
            &child(path, "type"),
            "must be empty to be structural",
        ));
    }
    for kw in ["additionalProperties", "default"] {
        if so.contains_key(kw) {
            errors.push(forbidden(
                &child(path, kw),
                "must be undefined to be structural",
            ));
        }
    }
    for kw in ["nullable", PRESERVE, EMBEDDED, INT_OR_STRING] {
        if flag(schema, kw) {
            errors.push(forbidden(
                &child(path, kw),
                "must be false to be structural",
            ));
        }
    }
    for kw in [LIST_TYPE, LIST_MAP_KEYS, MAP_TYPE] {
        if so.contains_key(kw) {
            errors.push(forbidden(
                &child(path, kw),
                "must be empty to be structural",
            ));
        }
    }
    check_unique_items(schema, path, errors);
    if let Some(props) = properties(schema) {
        for (k, ps) in sorted_entries(props) {
            let jpath = key(&child(path, "properties"), k);
            let spath = key(&child(structural_path, "properties"), k);
            let sprop = structural.and_then(properties).and_then(|p| p.get(k));
            if structural.is_some() && sprop.is_none() {
                errors.push(required(
                    &spath,
                    &format!("because it is defined in {jpath}"),
                ));
            }
            value_validation(ps, sprop, &jpath, &spath, false, false, errors);
        }
    }
    if let Some(is) = so.get("items") {
        let jpath = child(path, "items");
        let spath = child(structural_path, "items");
        let sitems = structural.and_then(items_schema);
        if structural.is_some() && sitems.is_none() {
            errors.push(required(
                &spath,
                &format!("because it is defined in {jpath}"),
            ));
        }
        value_validation(is, sitems, &jpath, &spath, false, false, errors);
    }
    for kw in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(list)) = so.get(kw) {
            for (i, j) in list.iter().enumerate() {
                let jpath = index(&child(path, kw), i);
                let skip = kw == "anyOf" && skip_nested_any_of_types;
                value_validation(j, structural, &jpath, structural_path, skip, false, errors);
            }
        }
    }
    if let Some(not) = so.get("not") {
        let jpath = child(path, "not");
        value_validation(
            not,
            structural,
            &jpath,
            structural_path,
            false,
            false,
            errors,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Regular expressions
// ---------------------------------------------------------------------------------------------

/// A small RE2-like regular expression engine for the `pattern` keyword.
///
/// Supported: literals, `.`, `^`, `$`, `\A`, `\z`, `\b`, `\B`, classes `[...]` / `[^...]` with
/// ranges, `\d \w \s` (and negations) and POSIX `[:name:]`, escapes of punctuation and
/// `\n \t \r \f \v \a \xHH \x{H..}`, groups `(...)`, `(?:...)`, `(?P<n>...)`, `(?<n>...)`,
/// alternation and the quantifiers `* + ? {n} {n,} {n,m}` (optionally lazy).
/// Matching is a backtracking search over a compiled program that memoises visited
/// (instruction, position) pairs, so it runs in time proportional to program size × input size.
mod regex {
    use std::collections::HashSet;

    const MAX_DEPTH: usize = 100;
    const MAX_REPEAT: u64 = 1000;
    const MAX_PROGRAM: usize = 20_000;
    const MAX_COMPILE_STEPS: usize = 200_000;
    const MAX_BITS: usize = 1 << 26;

    #[derive(Clone, Debug)]
    struct Class {
        ranges: Vec<(char, char)>,
        negated: bool,
    }

    impl Class {
        fn matches(&self, c: char) -> bool {
            self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
        }
    }

    #[derive(Debug)]
    enum Node {
        Literal(char),
        Any,
        Class(Class),
        Start,
        End,
        WordBoundary(bool),
        Concat(Vec<Node>),
        Alternate(Vec<Node>),
        Repeat(Box<Node>, u64, Option<u64>),
    }

    #[derive(Clone, Copy, Debug)]
    enum Inst {
        Literal(char),
        Any,
        Class(usize),
        Split(usize, usize),
        Jump(usize),
        Start,
        End,
        WordBoundary(bool),
        Match,
    }

    /// A compiled pattern.
    #[derive(Debug)]
    pub struct Regex {
        program: Vec<Inst>,
        classes: Vec<Class>,
    }

    fn next_char(c: char) -> Option<char> {
        match c as u32 {
            0xD7FF => Some('\u{E000}'),
            n => char::from_u32(n + 1),
        }
    }

    fn prev_char(c: char) -> Option<char> {
        match c as u32 {
            0 => None,
            0xE000 => Some('\u{D7FF}'),
            n => char::from_u32(n - 1),
        }
    }

    fn complement(ranges: &[(char, char)]) -> Vec<(char, char)> {
        let mut sorted = ranges.to_vec();
        sorted.sort();
        let mut out = Vec::new();
        let mut next = Some('\0');
        for (lo, hi) in sorted {
            if let Some(n) = next
                && n < lo
                && let Some(p) = prev_char(lo)
            {
                out.push((n, p));
            }
            if next.is_some_and(|n| n <= hi) {
                next = next_char(hi);
            }
        }
        if let Some(n) = next {
            out.push((n, char::MAX));
        }
        out
    }

    fn perl_class(c: char) -> Option<Class> {
        let ranges = match c.to_ascii_lowercase() {
            'd' => vec![('0', '9')],
            'w' => vec![('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')],
            's' => vec![('\t', '\n'), ('\x0c', '\r'), (' ', ' ')],
            _ => return None,
        };
        Some(Class {
            ranges,
            negated: c.is_ascii_uppercase(),
        })
    }

    fn posix_class(name: &str) -> Option<Vec<(char, char)>> {
        Some(match name {
            "alnum" => vec![('0', '9'), ('A', 'Z'), ('a', 'z')],
            "alpha" => vec![('A', 'Z'), ('a', 'z')],
            "ascii" => vec![('\0', '\x7f')],
            "blank" => vec![('\t', '\t'), (' ', ' ')],
            "cntrl" => vec![('\0', '\x1f'), ('\x7f', '\x7f')],
            "digit" => vec![('0', '9')],
            "graph" => vec![('!', '~')],
            "print" => vec![(' ', '~')],
            "lower" => vec![('a', 'z')],
            "punct" => vec![('!', '/'), (':', '@'), ('[', '`'), ('{', '~')],
            "space" => vec![('\t', '\r'), (' ', ' ')],
            "upper" => vec![('A', 'Z')],
            "word" => vec![('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')],
            "xdigit" => vec![('0', '9'), ('A', 'F'), ('a', 'f')],
            _ => return None,
        })
    }

    struct Parser {
        chars: Vec<char>,
        pos: usize,
        depth: usize,
    }

    impl Parser {
        fn peek(&self) -> Option<char> {
            self.chars.get(self.pos).copied()
        }

        fn peek_at(&self, offset: usize) -> Option<char> {
            self.chars.get(self.pos + offset).copied()
        }

        fn bump(&mut self) -> Option<char> {
            let c = self.peek()?;
            self.pos += 1;
            Some(c)
        }

        fn alternation(&mut self) -> Option<Node> {
            let mut branches = vec![self.concat()?];
            while self.peek() == Some('|') {
                self.pos += 1;
                branches.push(self.concat()?);
            }
            Some(if branches.len() == 1 {
                branches.pop()?
            } else {
                Node::Alternate(branches)
            })
        }

        fn concat(&mut self) -> Option<Node> {
            let mut items = Vec::new();
            while let Some(c) = self.peek() {
                if c == '|' || c == ')' {
                    break;
                }
                let atom = self.atom()?;
                items.push(self.quantified(atom)?);
            }
            Some(Node::Concat(items))
        }

        /// Parses `n}`, `n,}` or `n,m}` after a `{`; `None` if it is not a repetition.
        fn counts(&mut self) -> Option<(u64, Option<u64>)> {
            let number = |p: &mut Parser| -> Option<u64> {
                let start = p.pos;
                let mut n: u64 = 0;
                while let Some(d) = p.peek().and_then(|c| c.to_digit(10)) {
                    n = n.saturating_mul(10).saturating_add(u64::from(d));
                    p.pos += 1;
                }
                (p.pos > start).then_some(n)
            };
            let min = number(self)?;
            let max = if self.peek() == Some(',') {
                self.pos += 1;
                if self.peek() == Some('}') {
                    None
                } else {
                    Some(number(self)?)
                }
            } else {
                Some(min)
            };
            (self.bump()? == '}').then_some((min, max))
        }

        /// Whether a repetition operator starts at the current position (without consuming it).
        fn at_repetition(&mut self) -> bool {
            match self.peek() {
                Some('*' | '+' | '?') => true,
                Some('{') => {
                    let save = self.pos;
                    self.pos += 1;
                    let found = self.counts().is_some();
                    self.pos = save;
                    found
                }
                _ => false,
            }
        }

        fn quantified(&mut self, atom: Node) -> Option<Node> {
            let (min, max) = match self.peek() {
                Some('*') => (0, None),
                Some('+') => (1, None),
                Some('?') => (0, Some(1)),
                Some('{') if self.at_repetition() => {
                    self.pos += 1;
                    let counts = self.counts()?;
                    self.pos -= 1; // compensate the shared bump below
                    counts
                }
                _ => return Some(atom),
            };
            self.pos += 1;
            if self.peek() == Some('?') {
                self.pos += 1; // lazy: irrelevant for a yes/no match
            }
            if self.at_repetition() {
                return None; // invalid nested repetition operator
            }
            if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT || m < min) {
                return None;
            }
            Some(Node::Repeat(Box::new(atom), min, max))
        }

        fn atom(&mut self) -> Option<Node> {
            let c = self.bump()?;
            Some(match c {
                '(' => {
                    if self.depth >= MAX_DEPTH {
                        return None;
                    }
                    if self.peek() == Some('?') {
                        self.pos += 1;
                        match self.bump()? {
                            ':' => {}
                            'P' => {
                                if self.bump()? != '<' {
                                    return None;
                                }
                                self.group_name()?;
                            }
                            '<' => self.group_name()?,
                            _ => return None,
                        }
                    }
                    self.depth += 1;
                    let inner = self.alternation()?;
                    self.depth -= 1;
                    if self.bump()? != ')' {
                        return None;
                    }
                    inner
                }
                '[' => self.class()?,
                '.' => Node::Any,
                '^' => Node::Start,
                '$' => Node::End,
                '\\' => self.escape()?,
                '*' | '+' | '?' => return None,
                '{' => {
                    self.pos -= 1;
                    if self.at_repetition() {
                        return None; // missing argument to repetition operator
                    }
                    self.pos += 1;
                    Node::Literal('{')
                }
                c => Node::Literal(c),
            })
        }

        fn group_name(&mut self) -> Option<()> {
            let start = self.pos;
            while let Some(c) = self.peek() {
                if c == '>' {
                    break;
                }
                if !(c.is_alphanumeric() || c == '_') {
                    return None;
                }
                self.pos += 1;
            }
            if self.pos == start {
                return None;
            }
            (self.bump()? == '>').then_some(())
        }

        fn escape(&mut self) -> Option<Node> {
            let c = self.bump()?;
            if let Some(class) = perl_class(c) {
                return Some(Node::Class(class));
            }
            Some(match c {
                'b' => Node::WordBoundary(true),
                'B' => Node::WordBoundary(false),
                'A' => Node::Start,
                'z' => Node::End,
                c => Node::Literal(self.escaped_literal(c)?),
            })
        }

        fn escaped_literal(&mut self, c: char) -> Option<char> {
            Some(match c {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                'f' => '\x0c',
                'v' => '\x0b',
                'a' => '\x07',
                'x' => {
                    let digits: String = if self.peek() == Some('{') {
                        self.pos += 1;
                        let start = self.pos;
                        while self.peek().is_some_and(|c| c != '}') {
                            self.pos += 1;
                        }
                        let s: String = self.chars[start..self.pos].iter().collect();
                        self.bump()?;
                        s
                    } else {
                        let s: String = [self.bump()?, self.bump()?].iter().collect();
                        s
                    };
                    if digits.is_empty() || digits.len() > 8 {
                        return None;
                    }
                    char::from_u32(u32::from_str_radix(&digits, 16).ok()?)?
                }
                c if c.is_ascii_punctuation() => c,
                _ => return None,
            })
        }

        fn class(&mut self) -> Option<Node> {
            let mut ranges = Vec::new();
            let mut negated = false;
            if self.peek() == Some('^') {
                self.pos += 1;
                negated = true;
            }
            let mut first = true;
            loop {
                let c = self.bump()?;
                if c == ']' && !first {
                    break;
                }
                first = false;
                if c == '[' && self.peek() == Some(':') {
                    let save = self.pos;
                    if let Some(r) = self.posix() {
                        ranges.extend(r?);
                        continue;
                    }
                    self.pos = save;
                }
                let lo = if c == '\\' {
                    let e = self.bump()?;
                    if let Some(class) = perl_class(e) {
                        if class.negated {
                            ranges.extend(complement(&class.ranges));
                        } else {
                            ranges.extend(class.ranges);
                        }
                        continue;
                    }
                    self.escaped_literal(e)?
                } else {
                    c
                };
                if self.peek() == Some('-') && self.peek_at(1).is_some_and(|d| d != ']') {
                    self.pos += 1;
                    let d = self.bump()?;
                    let hi = if d == '\\' {
                        let e = self.bump()?;
                        self.escaped_literal(e)?
                    } else {
                        d
                    };
                    if hi < lo {
                        return None;
                    }
                    ranges.push((lo, hi));
                } else {
                    ranges.push((lo, lo));
                }
            }
            Some(Node::Class(Class { ranges, negated }))
        }

        /// Parses `:name:]` after `[`. Outer `None`: not POSIX syntax; inner `None`: unknown name.
        fn posix(&mut self) -> Option<Option<Vec<(char, char)>>> {
            self.pos += 1; // ':'
            let negated = self.peek() == Some('^');
            if negated {
                self.pos += 1;
            }
            let start = self.pos;
            while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
                self.pos += 1;
            }
            let name: String = self.chars[start..self.pos].iter().collect();
            if self.bump()? != ':' || self.bump()? != ']' {
                return None;
            }
            Some(posix_class(&name).map(|r| if negated { complement(&r) } else { r }))
        }
    }

    struct Compiler {
        program: Vec<Inst>,
        classes: Vec<Class>,
        steps: usize,
    }

    impl Compiler {
        fn emit(&mut self, inst: Inst) -> Option<usize> {
            if self.program.len() >= MAX_PROGRAM {
                return None;
            }
            self.program.push(inst);
            Some(self.program.len() - 1)
        }

        fn compile(&mut self, node: &Node) -> Option<()> {
            self.steps += 1;
            if self.steps > MAX_COMPILE_STEPS {
                return None;
            }
            match node {
                Node::Literal(c) => {
                    self.emit(Inst::Literal(*c))?;
                }
                Node::Any => {
                    self.emit(Inst::Any)?;
                }
                Node::Class(c) => {
                    self.classes.push(c.clone());
                    self.emit(Inst::Class(self.classes.len() - 1))?;
                }
                Node::Start => {
                    self.emit(Inst::Start)?;
                }
                Node::End => {
                    self.emit(Inst::End)?;
                }
                Node::WordBoundary(b) => {
                    self.emit(Inst::WordBoundary(*b))?;
                }
                Node::Concat(items) => {
                    for item in items {
                        self.compile(item)?;
                    }
                }
                Node::Alternate(branches) => {
                    let mut jumps = Vec::new();
                    for (i, branch) in branches.iter().enumerate() {
                        if i + 1 < branches.len() {
                            let split = self.emit(Inst::Split(0, 0))?;
                            self.compile(branch)?;
                            jumps.push(self.emit(Inst::Jump(0))?);
                            let next = self.program.len();
                            self.program[split] = Inst::Split(split + 1, next);
                        } else {
                            self.compile(branch)?;
                        }
                    }
                    let end = self.program.len();
                    for j in jumps {
                        self.program[j] = Inst::Jump(end);
                    }
                }
                Node::Repeat(inner, min, max) => {
                    for _ in 0..*min {
                        self.compile(inner)?;
                    }
                    match max {
                        None => {
                            let split = self.emit(Inst::Split(0, 0))?;
                            self.compile(inner)?;
                            self.emit(Inst::Jump(split))?;
                            let end = self.program.len();
                            self.program[split] = Inst::Split(split + 1, end);
                        }
                        Some(max) => {
                            let mut splits = Vec::new();
                            for _ in *min..*max {
                                splits.push(self.emit(Inst::Split(0, 0))?);
                                self.compile(inner)?;
                            }
                            let end = self.program.len();
                            for s in splits {
                                self.program[s] = Inst::Split(s + 1, end);
                            }
                        }
                    }
                }
            }
            Some(())
        }
    }

    enum Visited {
        Bits(Vec<u64>, usize),
        Set(HashSet<(usize, usize)>),
    }

    impl Visited {
        /// Marks (pc, pos); returns false if it was already marked.
        fn insert(&mut self, pc: usize, pos: usize) -> bool {
            match self {
                Visited::Bits(bits, width) => {
                    let i = pc * *width + pos;
                    let (word, bit) = (i / 64, 1u64 << (i % 64));
                    let fresh = bits[word] & bit == 0;
                    bits[word] |= bit;
                    fresh
                }
                Visited::Set(set) => set.insert((pc, pos)),
            }
        }
    }

    fn is_word(c: Option<&char>) -> bool {
        c.is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
    }

    impl Regex {
        /// Compiles `pattern`; `None` if it is invalid or unsupported.
        pub fn new(pattern: &str) -> Option<Regex> {
            let mut parser = Parser {
                chars: pattern.chars().collect(),
                pos: 0,
                depth: 0,
            };
            let node = parser.alternation()?;
            if parser.pos != parser.chars.len() {
                return None;
            }
            let mut compiler = Compiler {
                program: Vec::new(),
                classes: Vec::new(),
                steps: 0,
            };
            compiler.compile(&node)?;
            compiler.emit(Inst::Match)?;
            Some(Regex {
                program: compiler.program,
                classes: compiler.classes,
            })
        }

        /// Whether the pattern matches anywhere in `text`.
        pub fn is_match(&self, text: &str) -> bool {
            let text: Vec<char> = text.chars().collect();
            let n = text.len();
            let width = n + 1;
            let total = self.program.len().saturating_mul(width);
            let mut visited = if total <= MAX_BITS {
                Visited::Bits(vec![0; total.div_ceil(64)], width)
            } else {
                Visited::Set(HashSet::new())
            };
            let mut stack: Vec<(usize, usize)> = Vec::new();
            let anchored = matches!(self.program.first(), Some(Inst::Start));
            for start in 0..=n {
                stack.push((0, start));
                while let Some((mut pc, mut pos)) = stack.pop() {
                    while visited.insert(pc, pos) {
                        match self.program[pc] {
                            Inst::Match => return true,
                            Inst::Literal(c) => {
                                if text.get(pos) != Some(&c) {
                                    break;
                                }
                                pc += 1;
                                pos += 1;
                            }
                            Inst::Any => {
                                if text.get(pos).is_none_or(|&c| c == '\n') {
                                    break;
                                }
                                pc += 1;
                                pos += 1;
                            }
                            Inst::Class(i) => {
                                if !text.get(pos).is_some_and(|&c| self.classes[i].matches(c)) {
                                    break;
                                }
                                pc += 1;
                                pos += 1;
                            }
                            Inst::Split(a, b) => {
                                stack.push((b, pos));
                                pc = a;
                            }
                            Inst::Jump(a) => pc = a,
                            Inst::Start => {
                                if pos != 0 {
                                    break;
                                }
                                pc += 1;
                            }
                            Inst::End => {
                                if pos != n {
                                    break;
                                }
                                pc += 1;
                            }
                            Inst::WordBoundary(want) => {
                                let before = pos.checked_sub(1).and_then(|p| text.get(p));
                                let boundary = is_word(before) != is_word(text.get(pos));
                                if boundary != want {
                                    break;
                                }
                                pc += 1;
                            }
                        }
                    }
                }
                if anchored {
                    break;
                }
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type Expected<'a> = Vec<(&'a str, &'a str, &'a str)>;

    fn simplify(errors: &[SchemaError]) -> Vec<(&str, &str, &str)> {
        errors
            .iter()
            .map(|e| (e.reason, e.field.as_str(), e.message.as_str()))
            .collect()
    }

    /// Wraps a property schema as `spec.<name>` of a root object schema.
    fn spec_with(name: &str, prop: Value) -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {name: prop}}
            }
        })
    }

    fn run_validation_table(cases: Vec<(&str, Value, Value, Expected)>) {
        for (name, schema, object, expected) in cases {
            let errors = validate(&schema, &object);
            assert_eq!(simplify(&errors), expected, "case {name}");
        }
    }

    fn run_spec_table(field: &str, cases: Vec<(&str, Value, Value, Expected)>) {
        let cases = cases
            .into_iter()
            .map(|(name, prop, value, expected)| {
                (
                    name,
                    spec_with(field, prop),
                    json!({"spec": {field: value}}),
                    expected,
                )
            })
            .collect();
        run_validation_table(cases);
    }

    const TI: &str = REASON_TYPE_INVALID;
    const INV: &str = REASON_INVALID;

    #[test]
    fn validate_types() {
        let int = json!({"type": "integer"});
        run_spec_table(
            "size",
            vec![
                (
                    "string for integer",
                    int.clone(),
                    json!("string"),
                    vec![(
                        TI,
                        "spec.size",
                        r#"Invalid value: "string": spec.size in body must be of type integer: "string""#,
                    )],
                ),
                ("integer", int.clone(), json!(3), vec![]),
                ("whole float for integer", int.clone(), json!(3.0), vec![]),
                (
                    "fraction for integer",
                    int.clone(),
                    json!(3.5),
                    vec![(
                        TI,
                        "spec.size",
                        r#"Invalid value: "number": spec.size in body must be of type integer: "number""#,
                    )],
                ),
                (
                    "integer for number",
                    json!({"type": "number"}),
                    json!(3),
                    vec![],
                ),
                (
                    "float for number",
                    json!({"type": "number"}),
                    json!(-0.5),
                    vec![],
                ),
                (
                    "string for boolean",
                    json!({"type": "boolean"}),
                    json!("true"),
                    vec![(
                        TI,
                        "spec.size",
                        r#"Invalid value: "string": spec.size in body must be of type boolean: "string""#,
                    )],
                ),
                (
                    "integer for string",
                    json!({"type": "string"}),
                    json!(5),
                    vec![(
                        TI,
                        "spec.size",
                        r#"Invalid value: "integer": spec.size in body must be of type string: "integer""#,
                    )],
                ),
                (
                    "object for array",
                    json!({"type": "array", "items": {"type": "string"}}),
                    json!({}),
                    vec![(
                        TI,
                        "spec.size",
                        r#"Invalid value: "object": spec.size in body must be of type array: "object""#,
                    )],
                ),
                (
                    "array for object",
                    json!({"type": "object"}),
                    json!([1]),
                    vec![(
                        TI,
                        "spec.size",
                        r#"Invalid value: "array": spec.size in body must be of type object: "array""#,
                    )],
                ),
                ("boolean", json!({"type": "boolean"}), json!(false), vec![]),
            ],
        );
    }

    #[test]
    fn validate_nullable_and_null() {
        run_spec_table(
            "x",
            vec![
                (
                    "nullable string",
                    json!({"type": "string", "nullable": true}),
                    Value::Null,
                    vec![],
                ),
                (
                    "nullable skips other checks",
                    json!({"type": "string", "nullable": true, "minLength": 3, "enum": ["abc"]}),
                    Value::Null,
                    vec![],
                ),
                (
                    "non-nullable string",
                    json!({"type": "string"}),
                    Value::Null,
                    vec![(
                        TI,
                        "spec.x",
                        r#"Invalid value: "null": spec.x in body must be of type string: "null""#,
                    )],
                ),
                (
                    "non-nullable object",
                    json!({"type": "object", "properties": {"a": {"type": "string"}}}),
                    Value::Null,
                    vec![(
                        TI,
                        "spec.x",
                        r#"Invalid value: "null": spec.x in body must be of type object: "null""#,
                    )],
                ),
                (
                    "untyped preserve accepts null",
                    json!({"x-kubernetes-preserve-unknown-fields": true}),
                    Value::Null,
                    vec![],
                ),
                (
                    "nullable value still validated",
                    json!({"type": "string", "nullable": true, "maxLength": 1}),
                    json!("ab"),
                    vec![(
                        REASON_TOO_LONG,
                        "spec.x",
                        "Too long: may not be more than 1 bytes",
                    )],
                ),
            ],
        );
    }

    #[test]
    fn validate_int_or_string() {
        let ios = json!({"x-kubernetes-int-or-string": true});
        run_spec_table(
            "port",
            vec![
                ("integer", ios.clone(), json!(8080), vec![]),
                ("string", ios.clone(), json!("http"), vec![]),
                ("whole float", ios.clone(), json!(80.0), vec![]),
                (
                    "boolean",
                    ios.clone(),
                    json!(true),
                    vec![(
                        TI,
                        "spec.port",
                        r#"Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#,
                    )],
                ),
                (
                    "fraction",
                    ios.clone(),
                    json!(1.5),
                    vec![(
                        TI,
                        "spec.port",
                        r#"Invalid value: "number": spec.port in body must be of type integer,string: "number""#,
                    )],
                ),
                (
                    "null",
                    ios.clone(),
                    Value::Null,
                    vec![(
                        TI,
                        "spec.port",
                        r#"Invalid value: "null": spec.port in body must be of type integer,string: "null""#,
                    )],
                ),
                (
                    "string checks apply to the string form",
                    json!({"x-kubernetes-int-or-string": true, "pattern": "^[0-9]+%$", "maximum": 10}),
                    json!("50"),
                    vec![(
                        INV,
                        "spec.port",
                        r#"Invalid value: "50": spec.port in body should match '^[0-9]+%$'"#,
                    )],
                ),
                (
                    "number checks apply to the integer form",
                    json!({"x-kubernetes-int-or-string": true, "pattern": "^[0-9]+%$", "maximum": 10}),
                    json!(50),
                    vec![(
                        INV,
                        "spec.port",
                        "Invalid value: 50: spec.port in body should be less than or equal to 10",
                    )],
                ),
            ],
        );
    }

    #[test]
    fn validate_enum() {
        run_spec_table(
            "color",
            vec![
                (
                    "string enum",
                    json!({"type": "string", "enum": ["red", "blue"]}),
                    json!("purple"),
                    vec![(
                        REASON_NOT_SUPPORTED,
                        "spec.color",
                        r#"Unsupported value: "purple": supported values: "red", "blue""#,
                    )],
                ),
                (
                    "string enum ok",
                    json!({"type": "string", "enum": ["red", "blue"]}),
                    json!("blue"),
                    vec![],
                ),
                (
                    "integer enum",
                    json!({"type": "integer", "enum": [1, 2]}),
                    json!(3),
                    vec![(
                        REASON_NOT_SUPPORTED,
                        "spec.color",
                        r#"Unsupported value: 3: supported values: "1", "2""#,
                    )],
                ),
                (
                    "integer enum matches whole float",
                    json!({"type": "integer", "enum": [1, 2]}),
                    json!(2.0),
                    vec![],
                ),
                (
                    "object enum",
                    json!({"type": "object", "enum": [{"a": 1}]}),
                    json!({"a": 2}),
                    vec![(
                        REASON_NOT_SUPPORTED,
                        "spec.color",
                        r#"Unsupported value: {"a":2}: supported values: "{\"a\":1}""#,
                    )],
                ),
                (
                    "type error and enum error",
                    json!({"type": "string", "enum": ["a"]}),
                    json!(1),
                    vec![
                        (
                            TI,
                            "spec.color",
                            r#"Invalid value: "integer": spec.color in body must be of type string: "integer""#,
                        ),
                        (
                            REASON_NOT_SUPPORTED,
                            "spec.color",
                            r#"Unsupported value: 1: supported values: "a""#,
                        ),
                    ],
                ),
            ],
        );
    }

    #[test]
    fn validate_numbers() {
        run_spec_table(
            "size",
            vec![
                (
                    "minimum",
                    json!({"type": "integer", "minimum": 1}),
                    json!(0),
                    vec![(
                        INV,
                        "spec.size",
                        "Invalid value: 0: spec.size in body should be greater than or equal to 1",
                    )],
                ),
                (
                    "minimum ok",
                    json!({"type": "integer", "minimum": 1}),
                    json!(1),
                    vec![],
                ),
                (
                    "exclusive minimum",
                    json!({"type": "integer", "minimum": 1, "exclusiveMinimum": true}),
                    json!(1),
                    vec![(
                        INV,
                        "spec.size",
                        "Invalid value: 1: spec.size in body should be greater than 1",
                    )],
                ),
                (
                    "maximum",
                    json!({"type": "integer", "maximum": 10}),
                    json!(11),
                    vec![(
                        INV,
                        "spec.size",
                        "Invalid value: 11: spec.size in body should be less than or equal to 10",
                    )],
                ),
                (
                    "exclusive maximum",
                    json!({"type": "integer", "maximum": 10, "exclusiveMaximum": true}),
                    json!(10),
                    vec![(
                        INV,
                        "spec.size",
                        "Invalid value: 10: spec.size in body should be less than 10",
                    )],
                ),
                (
                    "exclusive maximum ok",
                    json!({"type": "integer", "maximum": 10, "exclusiveMaximum": true}),
                    json!(9),
                    vec![],
                ),
                (
                    "float bounds",
                    json!({"type": "number", "maximum": 1.5}),
                    json!(2.25),
                    vec![(
                        INV,
                        "spec.size",
                        "Invalid value: 2.25: spec.size in body should be less than or equal to 1.5",
                    )],
                ),
                (
                    "large bound printed like Go",
                    json!({"type": "number", "maximum": 1_000_000}),
                    json!(2_000_000),
                    vec![(
                        INV,
                        "spec.size",
                        "Invalid value: 2000000: spec.size in body should be less than or equal to 1e+06",
                    )],
                ),
                (
                    "multipleOf",
                    json!({"type": "integer", "multipleOf": 5}),
                    json!(7),
                    vec![(
                        INV,
                        "spec.size",
                        "Invalid value: 7: spec.size in body should be a multiple of 5",
                    )],
                ),
                (
                    "multipleOf ok",
                    json!({"type": "integer", "multipleOf": 5}),
                    json!(-15),
                    vec![],
                ),
                (
                    "float multipleOf ok",
                    json!({"type": "number", "multipleOf": 0.1}),
                    json!(0.3),
                    vec![],
                ),
                (
                    "float multipleOf",
                    json!({"type": "number", "multipleOf": 0.25}),
                    json!(0.3),
                    vec![(
                        INV,
                        "spec.size",
                        "Invalid value: 0.3: spec.size in body should be a multiple of 0.25",
                    )],
                ),
                (
                    "int32 range",
                    json!({"type": "integer", "format": "int32"}),
                    json!(3_000_000_000u64),
                    vec![(
                        TI,
                        "spec.size",
                        r#"Invalid value: 3000000000: spec.size in body must be of type int32: "3000000000""#,
                    )],
                ),
                (
                    "int32 ok",
                    json!({"type": "integer", "format": "int32"}),
                    json!(-2_147_483_648i64),
                    vec![],
                ),
                (
                    "int64 range",
                    json!({"type": "integer", "format": "int64"}),
                    json!(u64::MAX),
                    vec![(
                        TI,
                        "spec.size",
                        r#"Invalid value: 18446744073709551615: spec.size in body must be of type int64: "18446744073709551615""#,
                    )],
                ),
                (
                    "unknown number format ignored",
                    json!({"type": "number", "format": "double"}),
                    json!(1.5),
                    vec![],
                ),
            ],
        );
    }

    #[test]
    fn validate_strings() {
        run_spec_table(
            "name",
            vec![
                (
                    "minLength",
                    json!({"type": "string", "minLength": 3}),
                    json!("ab"),
                    vec![(
                        INV,
                        "spec.name",
                        r#"Invalid value: "ab": spec.name in body should be at least 3 chars long"#,
                    )],
                ),
                (
                    "maxLength",
                    json!({"type": "string", "maxLength": 5}),
                    json!("abcdef"),
                    vec![(
                        REASON_TOO_LONG,
                        "spec.name",
                        "Too long: may not be more than 5 bytes",
                    )],
                ),
                (
                    "maxLength counts characters",
                    json!({"type": "string", "maxLength": 5}),
                    json!("héllö"),
                    vec![],
                ),
                (
                    "maxLength counts characters (too long)",
                    json!({"type": "string", "maxLength": 2}),
                    json!("ééé"),
                    vec![(
                        REASON_TOO_LONG,
                        "spec.name",
                        "Too long: may not be more than 2 bytes",
                    )],
                ),
                (
                    "pattern",
                    json!({"type": "string", "pattern": "^[a-z]+$"}),
                    json!("x y"),
                    vec![(
                        INV,
                        "spec.name",
                        r#"Invalid value: "x y": spec.name in body should match '^[a-z]+$'"#,
                    )],
                ),
                (
                    "unanchored pattern",
                    json!({"type": "string", "pattern": "[0-9]"}),
                    json!("abc1def"),
                    vec![],
                ),
                (
                    "invalid pattern is no constraint",
                    json!({"type": "string", "pattern": "([a-z"}),
                    json!("!!"),
                    vec![],
                ),
                (
                    "quotes are escaped",
                    json!({"type": "string", "maxLength": 100, "pattern": "^a$"}),
                    json!("say \"hi\"\n"),
                    vec![(
                        INV,
                        "spec.name",
                        r#"Invalid value: "say \"hi\"\n": spec.name in body should match '^a$'"#,
                    )],
                ),
                (
                    "all string checks in order",
                    json!({"type": "string", "maxLength": 2, "minLength": 5, "pattern": "^z"}),
                    json!("abc"),
                    vec![
                        (
                            REASON_TOO_LONG,
                            "spec.name",
                            "Too long: may not be more than 2 bytes",
                        ),
                        (
                            INV,
                            "spec.name",
                            r#"Invalid value: "abc": spec.name in body should be at least 5 chars long"#,
                        ),
                        (
                            INV,
                            "spec.name",
                            r#"Invalid value: "abc": spec.name in body should match '^z'"#,
                        ),
                    ],
                ),
            ],
        );
    }

    #[test]
    fn validate_string_formats() {
        let f = |format: &str| json!({"type": "string", "format": format});
        run_spec_table(
            "v",
            vec![
                (
                    "date-time invalid",
                    f("date-time"),
                    json!("foo"),
                    vec![(
                        TI,
                        "spec.v",
                        r#"Invalid value: "foo": spec.v in body must be of type date-time: "foo""#,
                    )],
                ),
                (
                    "date-time ok",
                    f("date-time"),
                    json!("2014-12-15T19:30:20.000Z"),
                    vec![],
                ),
                (
                    "date invalid",
                    f("date"),
                    json!("2023-02-29"),
                    vec![(
                        TI,
                        "spec.v",
                        r#"Invalid value: "2023-02-29": spec.v in body must be of type date: "2023-02-29""#,
                    )],
                ),
                (
                    "byte invalid",
                    f("byte"),
                    json!("not base64"),
                    vec![(
                        TI,
                        "spec.v",
                        r#"Invalid value: "not base64": spec.v in body must be of type byte: "not base64""#,
                    )],
                ),
                (
                    "uuid invalid",
                    f("uuid"),
                    json!("1234"),
                    vec![(
                        TI,
                        "spec.v",
                        r#"Invalid value: "1234": spec.v in body must be of type uuid: "1234""#,
                    )],
                ),
                (
                    "ipv4 invalid",
                    f("ipv4"),
                    json!("300.1.1.1"),
                    vec![(
                        TI,
                        "spec.v",
                        r#"Invalid value: "300.1.1.1": spec.v in body must be of type ipv4: "300.1.1.1""#,
                    )],
                ),
                (
                    "ipv6 invalid",
                    f("ipv6"),
                    json!("1.2.3.4"),
                    vec![(
                        TI,
                        "spec.v",
                        r#"Invalid value: "1.2.3.4": spec.v in body must be of type ipv6: "1.2.3.4""#,
                    )],
                ),
                (
                    "unknown format ignored",
                    f("my-format"),
                    json!("anything"),
                    vec![],
                ),
                (
                    "format on non-strings ignored",
                    json!({"type": "integer", "format": "date"}),
                    json!(5),
                    vec![],
                ),
            ],
        );
    }

    #[test]
    fn format_table() {
        let cases: Vec<(&str, &str, bool)> = vec![
            ("date-time", "2014-12-15T19:30:20.000Z", true),
            ("date-time", "2014-12-15T19:30:20Z", true),
            ("date-time", "2014-12-15t19:30:20z", true),
            ("date-time", "2014-12-15T19:30:20+01:00", true),
            ("date-time", "2014-12-15T19:30:20.123456789-08:30", true),
            ("datetime", "2014-12-15T19:30:20Z", true),
            ("date-time", "2014-12-15 19:30:20Z", false),
            ("date-time", "2014-13-15T19:30:20Z", false),
            ("date-time", "2014-12-15T24:00:00Z", false),
            ("date-time", "2014-12-15T23:60:00Z", false),
            ("date-time", "2014-12-15T19:30:20", false),
            ("date-time", "2014-12-15T19:30:20.Z", false),
            ("date-time", "2014-12-15T19:30:20+0100", false),
            ("date-time", "2014-12-15T19:30:20-5z", true),
            ("date-time", "2014-12-15T19:30:20,5Z", true),
            ("date-time", "2014-12-15T19:30:20Zt", true),
            ("date-time", "foo", false),
            ("date-time", "", false),
            ("date", "2024-02-29", true),
            ("date", "2000-02-29", true),
            ("date", "1900-02-29", false),
            ("date", "2023-02-29", false),
            ("date", "2024-04-31", false),
            ("date", "2024-1-01", false),
            ("date", "2024-01-01T00:00:00Z", false),
            ("byte", "aGVsbG8=", true),
            ("byte", "aGVsbG8h", true),
            ("byte", "aGVs\nbG8h", true),
            ("byte", "", true),
            ("byte", "aGVsbG8", false),
            ("byte", "a===", false),
            ("byte", "!!!!", false),
            ("byte", "aG=s", false),
            ("uuid", "123e4567-e89b-12d3-a456-426614174000", true),
            ("uuid", "123E4567-E89B-12D3-A456-426614174000", true),
            ("uuid", "123e4567e89b12d3a456426614174000", true),
            ("uuid", "123e4567-e89b-12d3-a456-42661417400", false),
            ("uuid", "123e4567-e89b-12d3-a456-4266141740000", false),
            ("uuid", "g23e4567-e89b-12d3-a456-426614174000", false),
            ("uuid", "123e4567--e89b-12d3-a456-426614174000", false),
            ("ipv4", "192.168.0.1", true),
            ("ipv4", "0.0.0.0", true),
            ("ipv4", "256.1.1.1", false),
            ("ipv4", "01.1.1.1", false),
            ("ipv4", "1.2.3", false),
            ("ipv4", "1.2.3.4.5", false),
            ("ipv4", "::1", false),
            ("ipv4", "::ffff:1.2.3.4", true),
            ("ipv6", "::1", true),
            ("ipv6", "::", true),
            ("ipv6", "2001:db8::8a2e:370:7334", true),
            ("ipv6", "2001:0db8:0000:0000:0000:ff00:0042:8329", true),
            ("ipv6", "::ffff:1.2.3.4", true),
            ("ipv6", "1:2:3:4:5:6:7:8", true),
            ("ipv6", "1:2:3:4:5:6:7::", true),
            ("ipv6", "1:2:3:4:5:6:1.2.3.4", true),
            ("ipv6", "1:2:3:4:5:6:7:8:9", false),
            ("ipv6", "1:2:3:4:5:6:7:8::", false),
            ("ipv6", "1:2:3:4:5:6:7", false),
            ("ipv6", "1::2::3", false),
            ("ipv6", "12345::", false),
            ("ipv6", "1:", false),
            ("ipv6", ":1", false),
            ("ipv6", "fe80::1%eth0", false),
            ("ipv6", "1.2.3.4", false),
            ("ipv6", "1:2:3:4:5:1.2.3.4", false),
        ];
        for (format, value, ok) in cases {
            assert_eq!(format_ok(format, value), Some(ok), "{format} {value:?}");
        }
        assert_eq!(format_ok("email", "x"), None);
    }

    #[test]
    fn validate_arrays() {
        let tags = |extra: Value| {
            let mut s = json!({"type": "array", "items": {"type": "string"}});
            if let (Some(o), Value::Object(e)) = (s.as_object_mut(), extra) {
                o.extend(e);
            }
            s
        };
        run_spec_table(
            "items",
            vec![
                (
                    "maxItems",
                    tags(json!({"maxItems": 3})),
                    json!(["a", "b", "c", "d"]),
                    vec![(
                        REASON_TOO_MANY,
                        "spec.items",
                        "Too many: 4: must have at most 3 items",
                    )],
                ),
                (
                    "minItems",
                    tags(json!({"minItems": 1})),
                    json!([]),
                    vec![(
                        INV,
                        "spec.items",
                        "Invalid value: 0: spec.items in body should have at least 1 items",
                    )],
                ),
                (
                    "uniqueItems",
                    json!({"type": "array", "uniqueItems": true, "items": {"type": "integer"}}),
                    json!([1, 2, 1.0]),
                    vec![(
                        INV,
                        "spec.items",
                        r#"Invalid value: "": spec.items in body shouldn't contain duplicates"#,
                    )],
                ),
                (
                    "uniqueItems ok",
                    json!({"type": "array", "uniqueItems": true, "items": {"type": "object"}}),
                    json!([{"a": 1}, {"a": 2}]),
                    vec![],
                ),
                (
                    "item errors",
                    tags(json!({})),
                    json!(["a", 2, "c", false]),
                    vec![
                        (
                            TI,
                            "spec.items[1]",
                            r#"Invalid value: "integer": spec.items[1] in body must be of type string: "integer""#,
                        ),
                        (
                            TI,
                            "spec.items[3]",
                            r#"Invalid value: "boolean": spec.items[3] in body must be of type string: "boolean""#,
                        ),
                    ],
                ),
                (
                    "list-type set",
                    tags(json!({"x-kubernetes-list-type": "set"})),
                    json!(["a", "b", "a", "a"]),
                    vec![
                        (REASON_DUPLICATE, "spec.items[2]", r#"Duplicate value: "a""#),
                        (REASON_DUPLICATE, "spec.items[3]", r#"Duplicate value: "a""#),
                    ],
                ),
                (
                    "list-type atomic allows duplicates",
                    tags(json!({"x-kubernetes-list-type": "atomic"})),
                    json!(["a", "a"]),
                    vec![],
                ),
                (
                    "list-type set of objects",
                    json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "object", "x-kubernetes-map-type": "atomic", "x-kubernetes-preserve-unknown-fields": true}}),
                    json!([{"a": 1, "b": 2}, {"b": 2, "a": 1}]),
                    vec![(
                        REASON_DUPLICATE,
                        "spec.items[1]",
                        r#"Duplicate value: {"a":1,"b":2}"#,
                    )],
                ),
            ],
        );
    }

    #[test]
    fn validate_list_map() {
        let ports = json!({
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name", "protocol"],
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "protocol": {"type": "string"},
                    "port": {"type": "integer"}
                }
            }
        });
        run_spec_table(
            "ports",
            vec![
                (
                    "distinct keys",
                    ports.clone(),
                    json!([
                        {"name": "a", "protocol": "TCP", "port": 1},
                        {"name": "a", "protocol": "UDP", "port": 1}
                    ]),
                    vec![],
                ),
                (
                    "duplicate key tuple",
                    ports.clone(),
                    json!([
                        {"name": "a", "protocol": "TCP", "port": 1},
                        {"name": "b", "protocol": "TCP", "port": 2},
                        {"name": "a", "protocol": "TCP", "port": 3}
                    ]),
                    vec![(
                        REASON_DUPLICATE,
                        "spec.ports[2]",
                        r#"Duplicate value: {"name":"a","protocol":"TCP"}"#,
                    )],
                ),
                (
                    "duplicate reported before item errors",
                    ports.clone(),
                    json!([
                        {"name": "a", "port": 1},
                        {"name": "a", "port": "x"}
                    ]),
                    vec![
                        (
                            REASON_DUPLICATE,
                            "spec.ports[1]",
                            r#"Duplicate value: {"name":"a"}"#,
                        ),
                        (
                            TI,
                            "spec.ports[1].port",
                            r#"Invalid value: "string": spec.ports[1].port in body must be of type integer: "string""#,
                        ),
                    ],
                ),
            ],
        );
    }

    #[test]
    fn validate_objects() {
        run_spec_table(
            "obj",
            vec![
                (
                    "required",
                    json!({"type": "object", "required": ["b", "a"], "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}),
                    json!({}),
                    vec![
                        (REASON_REQUIRED, "spec.obj.a", "Required value"),
                        (REASON_REQUIRED, "spec.obj.b", "Required value"),
                    ],
                ),
                (
                    "required present as null",
                    json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "string", "nullable": true}}}),
                    json!({"a": null}),
                    vec![],
                ),
                (
                    "maxProperties",
                    json!({"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}}),
                    json!({"a": "1", "b": "2"}),
                    vec![(
                        REASON_TOO_MANY,
                        "spec.obj",
                        "Too many: 2: must have at most 1 items",
                    )],
                ),
                (
                    "minProperties",
                    json!({"type": "object", "minProperties": 2, "additionalProperties": {"type": "string"}}),
                    json!({"a": "1"}),
                    vec![(
                        INV,
                        "spec.obj",
                        "Invalid value: 1: spec.obj in body should have at least 2 properties",
                    )],
                ),
                (
                    "additionalProperties schema",
                    json!({"type": "object", "additionalProperties": {"type": "string"}}),
                    json!({"a": "x", "b": 1}),
                    vec![(
                        TI,
                        "spec.obj.b",
                        r#"Invalid value: "integer": spec.obj.b in body must be of type string: "integer""#,
                    )],
                ),
                (
                    "additionalProperties false",
                    json!({"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": false}),
                    json!({"a": 1, "z": 2}),
                    vec![(
                        INV,
                        "spec.obj",
                        r#"Invalid value: "z": spec.obj.z in body is a forbidden property"#,
                    )],
                ),
                (
                    "unknown fields are not validated",
                    json!({"type": "object", "properties": {"a": {"type": "integer"}}}),
                    json!({"a": 1, "z": "whatever"}),
                    vec![],
                ),
                (
                    "preserve-unknown-fields still validates known fields",
                    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"a": {"type": "integer"}}}),
                    json!({"a": "1", "z": {"deep": [1]}}),
                    vec![(
                        TI,
                        "spec.obj.a",
                        r#"Invalid value: "string": spec.obj.a in body must be of type integer: "string""#,
                    )],
                ),
                (
                    "untyped preserve accepts anything",
                    json!({"x-kubernetes-preserve-unknown-fields": true}),
                    json!([1, "two", {"three": 3}]),
                    vec![],
                ),
                (
                    "map type is ignored",
                    json!({"type": "object", "x-kubernetes-map-type": "granular", "additionalProperties": {"type": "string"}}),
                    json!({"a": "b"}),
                    vec![],
                ),
            ],
        );
    }

    #[test]
    fn validate_root_skips_type_and_object_meta() {
        let schema = json!({
            "type": "object",
            "required": ["apiVersion", "kind", "metadata", "spec"],
            "additionalProperties": false,
            "properties": {
                "apiVersion": {"type": "integer"},
                "kind": {"type": "integer"},
                "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 3}}},
                "spec": {"type": "object"}
            }
        });
        let object = json!({"apiVersion": "v1", "kind": "Foo", "metadata": {"name": "too-long"}, "spec": {}});
        assert_eq!(validate(&schema, &object), vec![]);
        let errors = validate(&schema, &json!({"metadata": {}}));
        assert_eq!(
            simplify(&errors),
            vec![(REASON_REQUIRED, "spec", "Required value")]
        );
        let errors = validate(&schema, &json!({"spec": {}, "extra": 1}));
        assert_eq!(
            simplify(&errors),
            vec![(
                INV,
                "",
                r#"Invalid value: "extra": extra in body is a forbidden property"#
            )]
        );
    }

    #[test]
    fn validate_embedded_resources() {
        let schema = spec_with(
            "template",
            json!({
                "type": "object",
                "x-kubernetes-embedded-resource": true,
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {"spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}
            }),
        );
        run_validation_table(vec![
            (
                "complete",
                schema.clone(),
                json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"replicas": 1}}}}),
                vec![],
            ),
            (
                "missing type meta",
                schema.clone(),
                json!({"spec": {"template": {"spec": {"replicas": "1"}}}}),
                vec![
                    (
                        REASON_REQUIRED,
                        "spec.template.apiVersion",
                        "Required value: must not be empty",
                    ),
                    (
                        REASON_REQUIRED,
                        "spec.template.kind",
                        "Required value: must not be empty",
                    ),
                    (
                        TI,
                        "spec.template.spec.replicas",
                        r#"Invalid value: "string": spec.template.spec.replicas in body must be of type integer: "string""#,
                    ),
                ],
            ),
            (
                "bad type meta",
                schema.clone(),
                json!({"spec": {"template": {"apiVersion": "", "kind": 5}}}),
                vec![
                    (
                        INV,
                        "spec.template.apiVersion",
                        r#"Invalid value: "": must not be empty"#,
                    ),
                    (
                        INV,
                        "spec.template.kind",
                        "Invalid value: 5: must be a string",
                    ),
                ],
            ),
        ]);
    }

    #[test]
    fn validate_junctors() {
        let n = |extra: Value| {
            let mut s = json!({"type": "integer"});
            if let (Some(o), Value::Object(e)) = (s.as_object_mut(), extra) {
                o.extend(e);
            }
            s
        };
        run_spec_table(
            "n",
            vec![
                (
                    "anyOf fails",
                    n(json!({"anyOf": [{"minimum": 10}, {"maximum": 0}]})),
                    json!(5),
                    vec![
                        (
                            INV,
                            "",
                            r#"Invalid value: "": "spec.n" must validate at least one schema (anyOf)"#,
                        ),
                        (
                            INV,
                            "spec.n",
                            "Invalid value: 5: spec.n in body should be greater than or equal to 10",
                        ),
                    ],
                ),
                (
                    "anyOf passes",
                    n(json!({"anyOf": [{"minimum": 10}, {"maximum": 5}]})),
                    json!(5),
                    vec![],
                ),
                (
                    "oneOf two valid",
                    n(json!({"oneOf": [{"minimum": 0}, {"maximum": 10}]})),
                    json!(5),
                    vec![(
                        INV,
                        "",
                        r#"Invalid value: "": "spec.n" must validate one and only one schema (oneOf). Found 2 valid alternatives"#,
                    )],
                ),
                (
                    "oneOf none valid",
                    n(json!({"oneOf": [{"minimum": 10}, {"enum": [1]}]})),
                    json!(5),
                    vec![
                        (
                            INV,
                            "",
                            r#"Invalid value: "": "spec.n" must validate one and only one schema (oneOf). Found none valid"#,
                        ),
                        (
                            INV,
                            "spec.n",
                            "Invalid value: 5: spec.n in body should be greater than or equal to 10",
                        ),
                    ],
                ),
                (
                    "oneOf exactly one",
                    n(json!({"oneOf": [{"minimum": 10}, {"maximum": 5}]})),
                    json!(5),
                    vec![],
                ),
                (
                    "allOf",
                    n(json!({"allOf": [{"minimum": 0}, {"maximum": 3}]})),
                    json!(5),
                    vec![
                        (
                            INV,
                            "",
                            r#"Invalid value: "": "spec.n" must validate all the schemas (allOf)"#,
                        ),
                        (
                            INV,
                            "spec.n",
                            "Invalid value: 5: spec.n in body should be less than or equal to 3",
                        ),
                    ],
                ),
                (
                    "allOf none",
                    n(json!({"allOf": [{"minimum": 6}, {"maximum": 3}]})),
                    json!(5),
                    vec![
                        (
                            INV,
                            "",
                            r#"Invalid value: "": "spec.n" must validate all the schemas (allOf). None validated"#,
                        ),
                        (
                            INV,
                            "spec.n",
                            "Invalid value: 5: spec.n in body should be greater than or equal to 6",
                        ),
                        (
                            INV,
                            "spec.n",
                            "Invalid value: 5: spec.n in body should be less than or equal to 3",
                        ),
                    ],
                ),
                (
                    "not",
                    n(json!({"not": {"enum": [13]}})),
                    json!(13),
                    vec![(
                        INV,
                        "",
                        r#"Invalid value: "": "spec.n" must not validate the schema (not)"#,
                    )],
                ),
                (
                    "not passes",
                    n(json!({"not": {"enum": [13]}})),
                    json!(12),
                    vec![],
                ),
            ],
        );
        // oneOf over required properties, a common CRD idiom.
        let schema = spec_with(
            "src",
            json!({
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "oneOf": [{"required": ["a"]}, {"required": ["b"]}]
            }),
        );
        run_validation_table(vec![
            (
                "one set",
                schema.clone(),
                json!({"spec": {"src": {"a": "x"}}}),
                vec![],
            ),
            (
                "none set",
                schema.clone(),
                json!({"spec": {"src": {}}}),
                vec![
                    (
                        INV,
                        "",
                        r#"Invalid value: "": "spec.src" must validate one and only one schema (oneOf). Found none valid"#,
                    ),
                    (REASON_REQUIRED, "spec.src.a", "Required value"),
                ],
            ),
            (
                "both set",
                schema,
                json!({"spec": {"src": {"a": "x", "b": "y"}}}),
                vec![(
                    INV,
                    "",
                    r#"Invalid value: "": "spec.src" must validate one and only one schema (oneOf). Found 2 valid alternatives"#,
                )],
            ),
        ]);
    }

    #[test]
    fn validate_error_order_is_path_order_and_deterministic() {
        let schema = spec_with(
            "x",
            json!({
                "type": "object",
                "minProperties": 5,
                "required": ["b"],
                "properties": {
                    "a": {"type": "integer"},
                    "b": {"type": "string"},
                    "c": {"type": "array", "maxItems": 1, "items": {"type": "string", "maxLength": 1}},
                    "d": {"type": "object", "properties": {"e": {"type": "boolean"}}}
                }
            }),
        );
        let object = json!({"spec": {"x": {"d": {"e": 1}, "c": ["aa", "b", "cc"], "a": "x"}}});
        let expected = vec![
            (
                INV,
                "spec.x",
                "Invalid value: 3: spec.x in body should have at least 5 properties",
            ),
            (
                TI,
                "spec.x.a",
                r#"Invalid value: "string": spec.x.a in body must be of type integer: "string""#,
            ),
            (REASON_REQUIRED, "spec.x.b", "Required value"),
            (
                REASON_TOO_MANY,
                "spec.x.c",
                "Too many: 3: must have at most 1 items",
            ),
            (
                REASON_TOO_LONG,
                "spec.x.c[0]",
                "Too long: may not be more than 1 bytes",
            ),
            (
                REASON_TOO_LONG,
                "spec.x.c[2]",
                "Too long: may not be more than 1 bytes",
            ),
            (
                TI,
                "spec.x.d.e",
                r#"Invalid value: "integer": spec.x.d.e in body must be of type boolean: "integer""#,
            ),
        ];
        let first = validate(&schema, &object);
        assert_eq!(simplify(&first), expected);
        for _ in 0..5 {
            assert_eq!(validate(&schema, &object), first);
        }
    }

    #[test]
    fn schema_error_display() {
        let e = SchemaError {
            reason: REASON_REQUIRED,
            field: "spec.a".into(),
            message: "Required value".into(),
        };
        assert_eq!(e.to_string(), "spec.a: Required value");
        let e = SchemaError {
            reason: REASON_INVALID,
            field: String::new(),
            message: "x".into(),
        };
        assert_eq!(e.to_string(), "<nil>: x");
    }

    #[test]
    fn value_formatting() {
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
            assert_eq!(go_float(f), want, "{f}");
        }
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("tab\there\n"), r#""tab\there\n""#);
        assert_eq!(go_quote("é\u{1}"), "\"é\\x01\"");
        assert_eq!(fmt_value(&Value::Null), "\"null\"");
        assert_eq!(fmt_value(&json!(true)), "true");
        assert_eq!(fmt_value(&json!(-3)), "-3");
        assert_eq!(fmt_value(&json!([1, "a"])), r#"[1,"a"]"#);
    }

    // -----------------------------------------------------------------------------------------
    // Pruning
    // -----------------------------------------------------------------------------------------

    fn run_prune_table(cases: Vec<(&str, Value, Value, Value, Vec<&str>)>) {
        for (name, schema, mut object, expected, removed) in cases {
            let got = prune(&schema, &mut object);
            assert_eq!(got, removed, "case {name}: removed paths");
            assert_eq!(object, expected, "case {name}: object");
        }
    }

    #[test]
    fn prune_table() {
        let nested = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "a": {"type": "string"},
                        "items": {
                            "type": "array",
                            "items": {"type": "object", "properties": {"name": {"type": "string"}}}
                        }
                    }
                }
            }
        });
        let islands = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "config": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": true,
                            "properties": {
                                "known": {"type": "object", "properties": {"x": {"type": "integer"}}},
                                "list": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}}
                            }
                        },
                        "strict": {
                            "type": "object",
                            "properties": {
                                "island": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                            }
                        }
                    }
                }
            }
        });
        let maps = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "things": {
                            "type": "object",
                            "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}
                        },
                        "free": {"type": "object", "additionalProperties": true},
                        "closed": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}
                    }
                }
            }
        });
        let embedded = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "template": {
                            "type": "object",
                            "x-kubernetes-embedded-resource": true,
                            "properties": {
                                "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
                            }
                        },
                        "templates": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "x-kubernetes-embedded-resource": true,
                                "properties": {"data": {"type": "string"}}
                            }
                        }
                    }
                }
            }
        });
        run_prune_table(vec![
            (
                "root keeps type meta and metadata",
                nested.clone(),
                json!({
                    "apiVersion": "x/v1", "kind": "K",
                    "metadata": {"name": "n", "junk": 1},
                    "spec": {"a": "x", "b": 2},
                    "status": {"phase": "p"}
                }),
                json!({
                    "apiVersion": "x/v1", "kind": "K",
                    "metadata": {"name": "n", "junk": 1},
                    "spec": {"a": "x"}
                }),
                vec!["spec.b", "status"],
            ),
            (
                "array items",
                nested.clone(),
                json!({"spec": {"items": [{"name": "a", "bar": 1}, {"name": "b"}, {"bar": 2, "baz": 3}, "scalar"]}}),
                json!({"spec": {"items": [{"name": "a"}, {"name": "b"}, {}, "scalar"]}}),
                vec![
                    "spec.items[0].bar",
                    "spec.items[2].bar",
                    "spec.items[2].baz",
                ],
            ),
            (
                "nothing to prune",
                nested.clone(),
                json!({"spec": {"a": "x"}}),
                json!({"spec": {"a": "x"}}),
                vec![],
            ),
            (
                "type mismatch prunes nothing",
                nested.clone(),
                json!({"spec": "string"}),
                json!({"spec": "string"}),
                vec![],
            ),
            (
                "preserve islands",
                islands.clone(),
                json!({"spec": {
                    "config": {
                        "anything": {"goes": [1, {"x": 2}]},
                        "known": {"x": 1, "y": 2},
                        "list": [{"k": "v", "drop": true}]
                    },
                    "strict": {
                        "gone": 1,
                        "island": {"kept": {"deep": true}}
                    }
                }}),
                json!({"spec": {
                    "config": {
                        "anything": {"goes": [1, {"x": 2}]},
                        "known": {"x": 1},
                        "list": [{"k": "v"}]
                    },
                    "strict": {
                        "island": {"kept": {"deep": true}}
                    }
                }}),
                vec![
                    "spec.config.known.y",
                    "spec.config.list[0].drop",
                    "spec.strict.gone",
                ],
            ),
            (
                "additionalProperties maps",
                maps.clone(),
                json!({"spec": {
                    "labels": {"a": "1", "b": "2"},
                    "things": {"one": {"v": "x", "extra": 1}, "two": {}},
                    "free": {"any": {"thing": [1]}},
                    "closed": {"a": "x", "b": "y"}
                }}),
                json!({"spec": {
                    "labels": {"a": "1", "b": "2"},
                    "things": {"one": {"v": "x"}, "two": {}},
                    "free": {"any": {"thing": [1]}},
                    "closed": {"a": "x"}
                }}),
                vec!["spec.closed.b", "spec.things.one.extra"],
            ),
            (
                "embedded resources",
                embedded.clone(),
                json!({"spec": {
                    "template": {
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": "x", "whatever": 1},
                        "spec": {"replicas": 1, "junk": 2},
                        "other": 3
                    },
                    "templates": [
                        {"apiVersion": "v1", "kind": "ConfigMap", "data": "d", "extra": 1}
                    ]
                }}),
                json!({"spec": {
                    "template": {
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": "x", "whatever": 1},
                        "spec": {"replicas": 1}
                    },
                    "templates": [
                        {"apiVersion": "v1", "kind": "ConfigMap", "data": "d"}
                    ]
                }}),
                vec![
                    "spec.template.other",
                    "spec.template.spec.junk",
                    "spec.templates[0].extra",
                ],
            ),
            (
                "nested non-embedded object drops type meta",
                nested.clone(),
                json!({"spec": {"apiVersion": "v1", "kind": "K", "metadata": {}}}),
                json!({"spec": {}}),
                vec!["spec.apiVersion", "spec.kind", "spec.metadata"],
            ),
            (
                "array without items schema empties nested objects",
                json!({"type": "object", "properties": {"list": {"type": "array"}}}),
                json!({"list": [{"a": 1}, 2, [{"b": 1}]]}),
                json!({"list": [{}, 2, [{}]]}),
                vec!["list[0].a", "list[2][0].b"],
            ),
            (
                "root preserve keeps unknown but prunes declared",
                json!({
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true,
                    "properties": {
                        "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
                        "spec": {"type": "object", "properties": {"a": {"type": "string"}}}
                    }
                }),
                json!({"metadata": {"name": "n", "labels": {}}, "spec": {"a": "x", "b": 1}, "other": 1}),
                json!({"metadata": {"name": "n", "labels": {}}, "spec": {"a": "x"}, "other": 1}),
                vec!["spec.b"],
            ),
        ]);
    }

    #[test]
    fn prune_is_idempotent_and_sorted() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object"}}});
        let mut object = json!({"z": 1, "spec": {"b": 1, "a": 1}, "a": 1, "items": [1]});
        let removed = prune(&schema, &mut object);
        assert_eq!(removed, vec!["a", "items", "spec.a", "spec.b", "z"]);
        assert!(prune(&schema, &mut object).is_empty());
        assert_eq!(object, json!({"spec": {}}));
    }

    // -----------------------------------------------------------------------------------------
    // Defaulting
    // -----------------------------------------------------------------------------------------

    fn run_default_table(cases: Vec<(&str, Value, Value, Value)>) {
        for (name, schema, mut object, expected) in cases {
            apply_defaults(&schema, &mut object);
            assert_eq!(object, expected, "case {name}");
        }
    }

    #[test]
    fn defaults_table() {
        let deep = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "default": {},
                    "properties": {
                        "replicas": {"type": "integer", "default": 1},
                        "strategy": {
                            "type": "object",
                            "default": {"type": "Rolling"},
                            "properties": {
                                "type": {"type": "string"},
                                "maxSurge": {"type": "integer", "default": 25}
                            }
                        },
                        "template": {
                            "type": "object",
                            "properties": {"image": {"type": "string", "default": "nginx"}}
                        }
                    }
                }
            }
        });
        let collections = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "ports": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "port": {"type": "integer"},
                                    "protocol": {"type": "string", "default": "TCP"}
                                }
                            }
                        },
                        "features": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "properties": {"enabled": {"type": "boolean", "default": true}}
                            }
                        },
                        "names": {"type": "array", "items": {"type": "string", "default": "unnamed"}},
                        "plain": {"type": "array", "items": {"type": "string"}},
                        "weights": {"type": "object", "additionalProperties": {"type": "integer", "default": 1}},
                        "notes": {"type": "object", "additionalProperties": {"type": "string"}}
                    }
                }
            }
        });
        let nulls = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "a": {"type": "integer", "default": 5},
                        "b": {"type": "integer"},
                        "c": {"type": "integer", "nullable": true},
                        "d": {"type": "integer", "nullable": true, "default": 7},
                        "e": {"type": "object", "default": {"x": 1}, "properties": {"x": {"type": "integer"}}}
                    }
                }
            }
        });
        run_default_table(vec![
            (
                "defaults at several depths from an empty object",
                deep.clone(),
                json!({}),
                json!({"spec": {"replicas": 1, "strategy": {"type": "Rolling", "maxSurge": 25}}}),
            ),
            (
                "existing values are kept",
                deep.clone(),
                json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate", "maxSurge": 0}}}),
                json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate", "maxSurge": 0}}}),
            ),
            (
                "defaults inside an existing object",
                deep.clone(),
                json!({"spec": {"template": {}}}),
                json!({"spec": {
                    "replicas": 1,
                    "strategy": {"type": "Rolling", "maxSurge": 25},
                    "template": {"image": "nginx"}
                }}),
            ),
            (
                "type mismatch is left alone",
                deep.clone(),
                json!({"spec": "oops"}),
                json!({"spec": "oops"}),
            ),
            (
                "array items and map values",
                collections.clone(),
                json!({"spec": {
                    "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}],
                    "features": {"a": {}, "b": {"enabled": false}}
                }}),
                json!({"spec": {
                    "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                    "features": {"a": {"enabled": true}, "b": {"enabled": false}}
                }}),
            ),
            (
                "null items and map values",
                collections.clone(),
                json!({"spec": {
                    "names": ["x", null],
                    "plain": ["x", null],
                    "weights": {"a": null, "b": 3},
                    "notes": {"a": null, "b": "x"},
                    "features": {"f": null}
                }}),
                json!({"spec": {
                    "names": ["x", "unnamed"],
                    "plain": ["x", null],
                    "weights": {"a": 1, "b": 3},
                    "notes": {"b": "x"},
                    "features": {}
                }}),
            ),
            (
                "null handling",
                nulls.clone(),
                json!({"spec": {"a": null, "b": null, "c": null, "d": null, "e": null}}),
                json!({"spec": {"a": 5, "c": null, "d": null, "e": {"x": 1}}}),
            ),
            (
                "absent fields get defaults, nullable ones too",
                nulls.clone(),
                json!({"spec": {}}),
                json!({"spec": {"a": 5, "d": 7, "e": {"x": 1}}}),
            ),
            (
                "no parent, no defaults",
                nulls.clone(),
                json!({"other": null}),
                json!({"other": null}),
            ),
        ]);
    }

    #[test]
    fn defaults_are_deep_clones() {
        let schema = json!({
            "type": "object",
            "properties": {
                "a": {"type": "object", "default": {"list": [1]}, "properties": {"list": {"type": "array", "items": {"type": "integer"}}}},
                "b": {"type": "object", "default": {"list": [1]}, "properties": {"list": {"type": "array", "items": {"type": "integer"}}}}
            }
        });
        let mut object = json!({});
        apply_defaults(&schema, &mut object);
        object["a"]["list"][0] = json!(99);
        assert_eq!(object["b"], json!({"list": [1]}));
        assert_eq!(schema["properties"]["a"]["default"], json!({"list": [1]}));
    }

    // -----------------------------------------------------------------------------------------
    // Structural checks
    // -----------------------------------------------------------------------------------------

    const BASE: &str = "spec.versions[0].schema.openAPIV3Schema";

    fn run_structural_table(cases: Vec<(&str, Value, Expected)>) {
        for (name, schema, expected) in cases {
            let errors = check_structural(&schema, BASE);
            assert_eq!(simplify(&errors), expected, "case {name}");
        }
    }

    #[test]
    fn structural_valid_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {
                    "type": "object",
                    "properties": {"name": {"type": "string", "maxLength": 63}}
                },
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1, "default": 3},
                        "port": {"x-kubernetes-int-or-string": true, "default": "http"},
                        "portAnyOf": {
                            "x-kubernetes-int-or-string": true,
                            "anyOf": [{"type": "integer"}, {"type": "string"}]
                        },
                        "portAllOf": {
                            "x-kubernetes-int-or-string": true,
                            "allOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}, {"pattern": "^[0-9]+%?$"}]
                        },
                        "raw": {"x-kubernetes-preserve-unknown-fields": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}, "default": {"a": "b"}},
                        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                        "ports": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
                        },
                        "template": {
                            "type": "object",
                            "x-kubernetes-embedded-resource": true,
                            "x-kubernetes-preserve-unknown-fields": true
                        },
                        "choice": {
                            "type": "object",
                            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                            "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
                            "not": {"properties": {"a": {"enum": ["forbidden"]}}}
                        },
                        "nullableDefault": {"type": "string", "nullable": true, "default": null}
                    }
                },
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }
        });
        assert_eq!(check_structural(&schema, BASE), vec![]);
    }

    #[test]
    fn structural_table() {
        let p = |props: Value| json!({"type": "object", "properties": props});
        run_structural_table(vec![
            (
                "root without type",
                json!({"properties": {"spec": {"type": "object"}}}),
                vec![(
                    REASON_REQUIRED,
                    "spec.versions[0].schema.openAPIV3Schema.type",
                    "Required value: must not be empty at the root",
                )],
            ),
            (
                "root not an object",
                json!({"type": "string"}),
                vec![(
                    INV,
                    "spec.versions[0].schema.openAPIV3Schema.type",
                    r#"Invalid value: "string": must be object at the root"#,
                )],
            ),
            (
                "root preserve still needs a type",
                json!({"x-kubernetes-preserve-unknown-fields": true}),
                vec![(
                    REASON_REQUIRED,
                    "spec.versions[0].schema.openAPIV3Schema.type",
                    "Required value: must not be empty at the root",
                )],
            ),
            (
                "field without type",
                p(json!({"spec": {"properties": {"a": {"type": "string"}}}})),
                vec![(
                    REASON_REQUIRED,
                    "spec.versions[0].schema.openAPIV3Schema.properties[spec].type",
                    "Required value: must not be empty for specified object fields",
                )],
            ),
            (
                "items without type",
                p(json!({"list": {"type": "array", "items": {"minLength": 1}}})),
                vec![(
                    REASON_REQUIRED,
                    "spec.versions[0].schema.openAPIV3Schema.properties[list].items.type",
                    "Required value: must not be empty for specified array items",
                )],
            ),
            (
                "additionalProperties without type",
                p(json!({"m": {"type": "object", "additionalProperties": {}}})),
                vec![(
                    REASON_REQUIRED,
                    "spec.versions[0].schema.openAPIV3Schema.properties[m].additionalProperties.type",
                    "Required value: must not be empty for specified object fields",
                )],
            ),
            (
                "unknown type",
                p(json!({"a": {"type": "str"}})),
                vec![(
                    REASON_NOT_SUPPORTED,
                    "spec.versions[0].schema.openAPIV3Schema.properties[a].type",
                    r#"Unsupported value: "str": supported values: "array", "boolean", "integer", "number", "object", "string""#,
                )],
            ),
            (
                "array without items",
                p(json!({"list": {"type": "array"}})),
                vec![(
                    REASON_REQUIRED,
                    "spec.versions[0].schema.openAPIV3Schema.properties[list].items",
                    "Required value: must be specified",
                )],
            ),
            (
                "properties and additionalProperties",
                p(json!({"spec": {
                    "type": "object",
                    "properties": {"a": {"type": "string"}},
                    "additionalProperties": {"type": "string"}
                }})),
                vec![(
                    REASON_FORBIDDEN,
                    "spec.versions[0].schema.openAPIV3Schema.properties[spec].additionalProperties",
                    "Forbidden: additionalProperties and properties are mutual exclusive",
                )],
            ),
            (
                "metadata restricted to name and generateName",
                p(json!({"metadata": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "labels": {"type": "object"}}
                }})),
                vec![(
                    REASON_FORBIDDEN,
                    "spec.versions[0].schema.openAPIV3Schema.properties[metadata]",
                    "Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified",
                )],
            ),
            (
                "metadata with value validation",
                p(json!({"metadata": {"type": "object", "maxProperties": 3}})),
                vec![(
                    REASON_FORBIDDEN,
                    "spec.versions[0].schema.openAPIV3Schema.properties[metadata]",
                    "Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified",
                )],
            ),
            (
                "type meta must be strings",
                p(json!({"kind": {"type": "integer"}, "metadata": {"type": "string"}})),
                vec![
                    (
                        INV,
                        "spec.versions[0].schema.openAPIV3Schema.properties[kind].type",
                        r#"Invalid value: "integer": must be string"#,
                    ),
                    (
                        INV,
                        "spec.versions[0].schema.openAPIV3Schema.properties[metadata].type",
                        r#"Invalid value: "string": must be object"#,
                    ),
                ],
            ),
            (
                "invalid default",
                p(
                    json!({"spec": {"type": "object", "properties": {"size": {"type": "integer", "default": "abc"}}}}),
                ),
                vec![(
                    TI,
                    "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].default",
                    r#"Invalid value: "string": spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].default in body must be of type integer: "string""#,
                )],
            ),
            (
                "default violating a limit",
                p(json!({"size": {"type": "integer", "minimum": 1, "default": 0}})),
                vec![(
                    INV,
                    "spec.versions[0].schema.openAPIV3Schema.properties[size].default",
                    "Invalid value: 0: spec.versions[0].schema.openAPIV3Schema.properties[size].default in body should be greater than or equal to 1",
                )],
            ),
            (
                "default with unknown fields",
                p(json!({"spec": {
                    "type": "object",
                    "default": {"a": 1, "junk": 2},
                    "properties": {"a": {"type": "integer"}}
                }})),
                vec![(
                    INV,
                    "spec.versions[0].schema.openAPIV3Schema.properties[spec].default",
                    r#"Invalid value: {"a":1,"junk":2}: must not have unknown fields"#,
                )],
            ),
            (
                "default object violating nested schema",
                p(json!({"spec": {
                    "type": "object",
                    "default": {"a": "x"},
                    "required": ["b"],
                    "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}
                }})),
                vec![
                    (
                        TI,
                        "spec.versions[0].schema.openAPIV3Schema.properties[spec].default.a",
                        r#"Invalid value: "string": spec.versions[0].schema.openAPIV3Schema.properties[spec].default.a in body must be of type integer: "string""#,
                    ),
                    (
                        REASON_REQUIRED,
                        "spec.versions[0].schema.openAPIV3Schema.properties[spec].default.b",
                        "Required value",
                    ),
                ],
            ),
            (
                "null default for non-nullable",
                p(json!({"a": {"type": "string", "default": null}})),
                vec![(
                    TI,
                    "spec.versions[0].schema.openAPIV3Schema.properties[a].default",
                    r#"Invalid value: "null": spec.versions[0].schema.openAPIV3Schema.properties[a].default in body must be of type string: "null""#,
                )],
            ),
            (
                "junctor with structural keywords",
                p(json!({"spec": {
                    "type": "object",
                    "properties": {"a": {"type": "string"}},
                    "allOf": [{"type": "object", "nullable": true, "default": {}}],
                    "anyOf": [{"x-kubernetes-preserve-unknown-fields": true, "x-kubernetes-list-type": "set"}]
                }})),
                vec![
                    (
                        REASON_FORBIDDEN,
                        "spec.versions[0].schema.openAPIV3Schema.properties[spec].allOf[0].type",
                        "Forbidden: must be empty to be structural",
                    ),
                    (
                        REASON_FORBIDDEN,
                        "spec.versions[0].schema.openAPIV3Schema.properties[spec].allOf[0].default",
                        "Forbidden: must be undefined to be structural",
                    ),
                    (
                        REASON_FORBIDDEN,
                        "spec.versions[0].schema.openAPIV3Schema.properties[spec].allOf[0].nullable",
                        "Forbidden: must be false to be structural",
                    ),
                    (
                        REASON_FORBIDDEN,
                        "spec.versions[0].schema.openAPIV3Schema.properties[spec].anyOf[0].x-kubernetes-preserve-unknown-fields",
                        "Forbidden: must be false to be structural",
                    ),
                    (
                        REASON_FORBIDDEN,
                        "spec.versions[0].schema.openAPIV3Schema.properties[spec].anyOf[0].x-kubernetes-list-type",
                        "Forbidden: must be empty to be structural",
                    ),
                ],
            ),
            (
                "junctor mentions undeclared property",
                p(json!({"spec": {
                    "type": "object",
                    "properties": {"a": {"type": "string"}},
                    "oneOf": [{"required": ["a"]}, {"properties": {"b": {"minLength": 1}}}]
                }})),
                vec![(
                    REASON_REQUIRED,
                    "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[b]",
                    "Required value: because it is defined in spec.versions[0].schema.openAPIV3Schema.properties[spec].oneOf[1].properties[b]",
                )],
            ),
            (
                "int-or-string anyOf types need the extension",
                p(
                    json!({"port": {"type": "string", "anyOf": [{"type": "integer"}, {"type": "string"}]}}),
                ),
                vec![
                    (
                        REASON_FORBIDDEN,
                        "spec.versions[0].schema.openAPIV3Schema.properties[port].anyOf[0].type",
                        "Forbidden: must be empty to be structural",
                    ),
                    (
                        REASON_FORBIDDEN,
                        "spec.versions[0].schema.openAPIV3Schema.properties[port].anyOf[1].type",
                        "Forbidden: must be empty to be structural",
                    ),
                ],
            ),
            (
                "embedded resource without type or properties",
                p(json!({"t": {"x-kubernetes-embedded-resource": true}})),
                vec![
                    (
                        REASON_REQUIRED,
                        "spec.versions[0].schema.openAPIV3Schema.properties[t].type",
                        "Required value: must be object if x-kubernetes-embedded-resource is true",
                    ),
                    (
                        REASON_REQUIRED,
                        "spec.versions[0].schema.openAPIV3Schema.properties[t].properties",
                        "Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
                    ),
                ],
            ),
            (
                "preserve-unknown-fields false",
                p(json!({"a": {"type": "object", "x-kubernetes-preserve-unknown-fields": false}})),
                vec![(
                    INV,
                    "spec.versions[0].schema.openAPIV3Schema.properties[a].x-kubernetes-preserve-unknown-fields",
                    "Invalid value: false: must be true or undefined",
                )],
            ),
            (
                "list-type problems",
                p(json!({
                    "a": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "bag"},
                    "b": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}}, "x-kubernetes-list-type": "map"},
                    "c": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set", "x-kubernetes-list-map-keys": ["n"]}
                })),
                vec![
                    (
                        REASON_NOT_SUPPORTED,
                        "spec.versions[0].schema.openAPIV3Schema.properties[a].x-kubernetes-list-type",
                        r#"Unsupported value: "bag": supported values: "atomic", "set", "map""#,
                    ),
                    (
                        REASON_REQUIRED,
                        "spec.versions[0].schema.openAPIV3Schema.properties[b].x-kubernetes-list-map-keys",
                        "Required value: must not be empty if x-kubernetes-list-type is map",
                    ),
                    (
                        REASON_FORBIDDEN,
                        "spec.versions[0].schema.openAPIV3Schema.properties[c].x-kubernetes-list-map-keys",
                        "Forbidden: must not be set if x-kubernetes-list-type is not map",
                    ),
                ],
            ),
            (
                "additionalProperties at the root",
                json!({"type": "object", "additionalProperties": {"type": "string"}}),
                vec![(
                    REASON_FORBIDDEN,
                    "spec.versions[0].schema.openAPIV3Schema.additionalProperties",
                    "Forbidden: must not be used at the root",
                )],
            ),
            (
                "uniqueItems",
                p(
                    json!({"a": {"type": "array", "items": {"type": "string"}, "uniqueItems": true, "allOf": [{"uniqueItems": true}]}}),
                ),
                vec![
                    (
                        REASON_FORBIDDEN,
                        "spec.versions[0].schema.openAPIV3Schema.properties[a].uniqueItems",
                        "Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
                    ),
                    (
                        REASON_FORBIDDEN,
                        "spec.versions[0].schema.openAPIV3Schema.properties[a].allOf[0].uniqueItems",
                        "Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
                    ),
                ],
            ),
            (
                "nested errors in path order",
                p(json!({
                    "b": {"type": "array", "items": {"type": "object", "properties": {"x": {}}}},
                    "a": {"type": "object", "properties": {"y": {"type": "array"}}}
                })),
                vec![
                    (
                        REASON_REQUIRED,
                        "spec.versions[0].schema.openAPIV3Schema.properties[a].properties[y].items",
                        "Required value: must be specified",
                    ),
                    (
                        REASON_REQUIRED,
                        "spec.versions[0].schema.openAPIV3Schema.properties[b].items.properties[x].type",
                        "Required value: must not be empty for specified object fields",
                    ),
                ],
            ),
        ]);
    }

    #[test]
    fn structural_with_empty_base() {
        let errors = check_structural(&json!({"type": "object", "properties": {"a": {}}}), "");
        assert_eq!(
            simplify(&errors),
            vec![(
                REASON_REQUIRED,
                "properties[a].type",
                "Required value: must not be empty for specified object fields"
            )]
        );
    }

    // -----------------------------------------------------------------------------------------
    // Regular expressions
    // -----------------------------------------------------------------------------------------

    const DNS1123_SUBDOMAIN: &str =
        r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
    const DNS1123_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

    #[test]
    fn regex_table() {
        let a500 = "a".repeat(500);
        let a1000 = "a".repeat(1000);
        let a1001 = "a".repeat(1001);
        // (pattern, input, Some(matches) or None for an invalid pattern)
        let cases: Vec<(&str, &str, Option<bool>)> = vec![
            // literals, anchors, search semantics
            ("abc", "xxabcxx", Some(true)),
            ("abc", "ab", Some(false)),
            ("^abc", "abcd", Some(true)),
            ("^abc", "xabc", Some(false)),
            ("abc$", "xabc", Some(true)),
            ("abc$", "abcx", Some(false)),
            ("abc$", "abc\n", Some(false)),
            ("^abc$", "abc", Some(true)),
            ("^$", "", Some(true)),
            ("^$", "\n", Some(false)),
            ("", "anything", Some(true)),
            (r"\Aab\z", "ab", Some(true)),
            // dot
            ("a.c", "abc", Some(true)),
            ("a.c", "a\nc", Some(false)),
            ("^.$", "é", Some(true)),
            (".", "", Some(false)),
            // classes
            ("[a-z0-9-]+", "Foo-1", Some(true)),
            ("^[a-z0-9-]+$", "Foo", Some(false)),
            ("^[a-z0-9-]+$", "foo-1", Some(true)),
            ("^[^a-z]+$", "ABC1", Some(true)),
            ("^[^a-z]+$", "aBC", Some(false)),
            ("^[a-]+$", "a-a", Some(true)),
            ("^[-a]+$", "-a", Some(true)),
            (r"^[a\-z]+$", "-", Some(true)),
            (r"^[a\-z]+$", "b", Some(false)),
            ("^[]a]+$", "]a", Some(true)),
            (r"^[\d.]+$", "1.2.3", Some(true)),
            (r"^[\d.]+$", "1,2", Some(false)),
            (r"^[^\s]+$", "ab c", Some(false)),
            (r"^[\D]+$", "abc", Some(true)),
            (r"^[\D]+$", "a1", Some(false)),
            ("^[[:alpha:]]+$", "abcXYZ", Some(true)),
            ("^[[:alpha:]]+$", "abc1", Some(false)),
            ("^[[:^digit:]]+$", "abc", Some(true)),
            ("^[[:^digit:]]+$", "ab1", Some(false)),
            // escapes
            (r"^\d{3}$", "123", Some(true)),
            (r"^\d{3}$", "1234", Some(false)),
            (r"^\w+\s\w+$", "hi there", Some(true)),
            (r"^\w+\s\w+$", "hi-there", Some(false)),
            (r"^\S+$", "abc", Some(true)),
            (r"^\W$", "!", Some(true)),
            (r"^a\.b$", "a.b", Some(true)),
            (r"^a\.b$", "axb", Some(false)),
            (r"^\x41\x{42}$", "AB", Some(true)),
            (
                r"^\$\^\(\)\[\]\{\}\|\*\+\?\\$",
                r"$^()[]{}|*+?\",
                Some(true),
            ),
            (r"\bfoo\b", "a foo b", Some(true)),
            (r"\bfoo\b", "afoob", Some(false)),
            (r"\Bfoo", "afoo", Some(true)),
            // groups and alternation
            ("^(ab)+$", "ababab", Some(true)),
            ("^(ab)+$", "aba", Some(false)),
            ("^(cat|dog)s?$", "dogs", Some(true)),
            ("^(cat|dog)s?$", "cow", Some(false)),
            ("^(?:a|b)c$", "bc", Some(true)),
            ("^(?P<x>a)(?<y>b)$", "ab", Some(true)),
            ("cat|dog", "hotdog", Some(true)),
            ("^cat|dog$", "cats", Some(true)),
            ("^(cat|dog)$", "cats", Some(false)),
            ("a|", "zzz", Some(true)),
            ("^()$", "", Some(true)),
            ("^(a|b|c|)$", "", Some(true)),
            // quantifiers
            ("^a{2,3}$", "a", Some(false)),
            ("^a{2,3}$", "aa", Some(true)),
            ("^a{2,3}$", "aaa", Some(true)),
            ("^a{2,3}$", "aaaa", Some(false)),
            ("^a{2,}$", "aaaaa", Some(true)),
            ("^a{2,}$", "a", Some(false)),
            ("^a{2}$", "aa", Some(true)),
            ("^a{0}b$", "b", Some(true)),
            ("^a*$", "", Some(true)),
            ("^a+$", "", Some(false)),
            ("^colou?r$", "color", Some(true)),
            ("^colou?r$", "colour", Some(true)),
            ("^a*?b$", "aab", Some(true)),
            ("^a+?$", "aa", Some(true)),
            ("^(a|ab)(c|bcd)(d*)$", "abcd", Some(true)),
            ("^(a*)*$", "aaaa", Some(true)),
            (
                "^(a*)*b$",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac",
                Some(false),
            ),
            ("^(a|aa)+$", &a500, Some(true)),
            ("^(a|aa)+b$", &a500, Some(false)),
            ("a{", "a{", Some(true)),
            ("x{,3}", "x{,3}", Some(true)),
            ("^a{1,1000}$", &a1000, Some(true)),
            ("^a{1,1000}$", &a1001, Some(false)),
            // DNS-1123
            (DNS1123_LABEL, "my-app", Some(true)),
            (DNS1123_LABEL, "a", Some(true)),
            (DNS1123_LABEL, "-bad", Some(false)),
            (DNS1123_LABEL, "bad-", Some(false)),
            (DNS1123_LABEL, "Bad", Some(false)),
            (DNS1123_LABEL, "a.b", Some(false)),
            (DNS1123_SUBDOMAIN, "my-app.example.com", Some(true)),
            (DNS1123_SUBDOMAIN, "a..b", Some(false)),
            (DNS1123_SUBDOMAIN, "a.-b", Some(false)),
            (DNS1123_SUBDOMAIN, "example.com.", Some(false)),
            (DNS1123_SUBDOMAIN, "", Some(false)),
            // invalid patterns
            ("(", "", None),
            (")", "", None),
            ("(a", "", None),
            ("a)", "", None),
            ("[a-", "", None),
            ("[a", "", None),
            ("[z-a]", "", None),
            ("a**", "", None),
            ("a+*", "", None),
            ("a{2}{3}", "", None),
            ("*a", "", None),
            ("+", "", None),
            ("?", "", None),
            ("{2}", "", None),
            ("a{2,1}", "", None),
            ("a{1001}", "", None),
            (r"\1", "", None),
            (r"\q", "", None),
            (r"\", "", None),
            ("(?=a)", "", None),
            ("(?i)abc", "", None),
            ("[[:foo:]]", "", None),
            (r"\x{110000}", "", None),
            (r"[a-\d]", "", None),
        ];
        for (pattern, input, expected) in cases {
            let got = regex::Regex::new(pattern).map(|re| re.is_match(input));
            assert_eq!(got, expected, "pattern {pattern:?} on {input:?}");
        }
    }

    #[test]
    fn regex_limits_do_not_panic() {
        let nested = "(".repeat(500) + &")".repeat(500);
        assert!(regex::Regex::new(&nested).is_none());
        assert!(regex::Regex::new("((a{1000}){1000}){1000}").is_none());
        // Like RE2, nested repetitions whose expansion is too large are rejected.
        assert!(regex::Regex::new("((){1000}){1000}").is_none());
        assert!(regex::Regex::new("(a{100}){10}").is_some_and(|re| re.is_match(&"a".repeat(1000))));
        let re = regex::Regex::new("(x+x+)+y").expect("valid");
        assert!(!re.is_match(&"x".repeat(2000)));
    }

    // -----------------------------------------------------------------------------------------
    // Property-style test
    // -----------------------------------------------------------------------------------------

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len() as u64) as usize]
        }
    }

    const KEYS: [&str; 10] = [
        "a",
        "b",
        "c",
        "spec",
        "name",
        "items",
        "apiVersion",
        "kind",
        "metadata",
        "x y",
    ];

    fn random_value(rng: &mut XorShift, depth: u32) -> Value {
        let kind = if depth == 0 {
            rng.below(6)
        } else {
            rng.below(8)
        };
        match kind {
            0 => Value::Null,
            1 => Value::Bool(rng.chance(50)),
            2 => json!(rng.below(40) as i64 - 20),
            3 => json!((rng.below(4000) as f64 - 2000.0) / 8.0),
            4 | 5 => {
                let words = [
                    "",
                    "a",
                    "abc",
                    "ABC",
                    "a-b",
                    "é",
                    "2024-02-29",
                    "::1",
                    "x y",
                    "aGk=",
                ];
                json!(*rng.pick(&words))
            }
            6 => Value::Array(
                (0..rng.below(4))
                    .map(|_| random_value(rng, depth - 1))
                    .collect(),
            ),
            _ => {
                let mut m = Map::new();
                for _ in 0..rng.below(5) {
                    m.insert((*rng.pick(&KEYS)).to_string(), random_value(rng, depth - 1));
                }
                Value::Object(m)
            }
        }
    }

    fn random_schema(rng: &mut XorShift, depth: u32) -> Value {
        let mut s = Map::new();
        let kind = if depth == 0 {
            rng.below(6)
        } else {
            rng.below(9)
        };
        match kind {
            0 => {
                s.insert("type".into(), json!("string"));
                if rng.chance(30) {
                    s.insert("maxLength".into(), json!(rng.below(5)));
                }
                if rng.chance(30) {
                    s.insert("minLength".into(), json!(rng.below(3)));
                }
                if rng.chance(30) {
                    let patterns = [
                        "^[a-z]+$",
                        DNS1123_LABEL,
                        "a|b",
                        "(",
                        "[[:alpha:]]*",
                        "^.{2,3}$",
                    ];
                    s.insert("pattern".into(), json!(*rng.pick(&patterns)));
                }
                if rng.chance(30) {
                    let formats = ["date", "date-time", "byte", "uuid", "ipv4", "ipv6", "email"];
                    s.insert("format".into(), json!(*rng.pick(&formats)));
                }
                if rng.chance(20) {
                    s.insert("enum".into(), json!(["a", "abc", 1]));
                }
            }
            1 => {
                s.insert("type".into(), json!(*rng.pick(&["integer", "number"])));
                if rng.chance(30) {
                    s.insert("minimum".into(), json!(rng.below(10) as i64 - 5));
                    s.insert("exclusiveMinimum".into(), json!(rng.chance(50)));
                }
                if rng.chance(30) {
                    s.insert("maximum".into(), json!(rng.below(10) as f64 / 2.0));
                    s.insert("exclusiveMaximum".into(), json!(rng.chance(50)));
                }
                if rng.chance(30) {
                    s.insert("multipleOf".into(), json!(*rng.pick(&[2.0, 0.5, 3.0, 0.1])));
                }
                if rng.chance(20) {
                    s.insert(
                        "format".into(),
                        json!(*rng.pick(&["int32", "int64", "float"])),
                    );
                }
            }
            2 => {
                s.insert("type".into(), json!("boolean"));
            }
            3 => {
                s.insert("x-kubernetes-int-or-string".into(), json!(true));
            }
            4 => {
                s.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
            }
            5 => {
                s.insert("type".into(), json!("object"));
            }
            6 | 7 => {
                s.insert("type".into(), json!("object"));
                let mut props = Map::new();
                for _ in 0..rng.below(4) {
                    props.insert(
                        (*rng.pick(&KEYS)).to_string(),
                        random_schema(rng, depth - 1),
                    );
                }
                let preserve = rng.chance(20);
                if preserve {
                    s.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
                }
                if props.is_empty() && rng.chance(50) {
                    s.insert("additionalProperties".into(), random_schema(rng, depth - 1));
                } else if props.is_empty() && rng.chance(30) {
                    s.insert("additionalProperties".into(), json!(true));
                } else if !preserve && rng.chance(30) {
                    s.insert("additionalProperties".into(), json!(false));
                }
                if !s.contains_key("additionalProperties") && rng.chance(15) {
                    s.insert("x-kubernetes-embedded-resource".into(), json!(true));
                }
                if rng.chance(30) {
                    s.insert("required".into(), json!([*rng.pick(&KEYS)]));
                }
                if rng.chance(15) {
                    s.insert("minProperties".into(), json!(1));
                    s.insert("maxProperties".into(), json!(2));
                }
                if rng.chance(15) {
                    s.insert(
                        "anyOf".into(),
                        json!([{"required": ["a"]}, {"properties": {"b": {"minimum": 1}}}]),
                    );
                }
                s.insert("properties".into(), Value::Object(props));
            }
            _ => {
                s.insert("type".into(), json!("array"));
                s.insert("items".into(), random_schema(rng, depth - 1));
                if rng.chance(25) {
                    s.insert("x-kubernetes-list-type".into(), json!("set"));
                } else if rng.chance(25) {
                    s.insert("x-kubernetes-list-type".into(), json!("map"));
                    s.insert("x-kubernetes-list-map-keys".into(), json!(["name"]));
                }
                if rng.chance(20) {
                    s.insert("uniqueItems".into(), json!(true));
                }
                if rng.chance(20) {
                    s.insert("maxItems".into(), json!(2));
                    s.insert("minItems".into(), json!(1));
                }
                if rng.chance(10) {
                    s.insert("oneOf".into(), json!([{"maxItems": 1}, {"minItems": 3}]));
                }
            }
        }
        if rng.chance(15) {
            s.insert("nullable".into(), json!(true));
        }
        if rng.chance(15) {
            s.insert("default".into(), random_value(rng, 2));
        }
        if rng.chance(5) {
            s.insert("not".into(), json!({"enum": ["abc"]}));
        }
        Value::Object(s)
    }

    #[test]
    fn property_random_documents_never_panic() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let fixed = [
            json!({"type": "object", "properties": {"spec": {"type": "object", "additionalProperties": false, "properties": {"a": {"type": "string"}}}}}),
            json!({"type": "object", "additionalProperties": false, "properties": {"spec": {"type": "object"}}}),
            json!({"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object", "additionalProperties": false, "properties": {"name": {"type": "string"}}}}}}),
        ];
        for round in 0..3000 {
            let schema = if round % 4 == 0 {
                fixed[(round / 4) % fixed.len()].clone()
            } else {
                let mut root = random_schema(&mut rng, 4);
                if let Some(o) = root.as_object_mut() {
                    o.insert("type".into(), json!("object"));
                }
                root
            };
            let original = random_value(&mut rng, 4);

            let _ = validate(&schema, &original);
            let _ = check_structural(&schema, "s");

            let mut pruned = original.clone();
            let removed = prune(&schema, &mut pruned);
            let mut sorted = removed.clone();
            sorted.sort();
            assert_eq!(removed, sorted, "round {round}: removed paths sorted");
            let mut again = pruned.clone();
            assert!(
                prune(&schema, &mut again).is_empty(),
                "round {round}: prune is idempotent"
            );
            for e in validate(&schema, &pruned) {
                assert!(
                    !e.message.contains("forbidden property"),
                    "round {round}: unknown field survived pruning: {e}\nschema {schema}\nobject {pruned}"
                );
            }

            let mut defaulted = pruned.clone();
            apply_defaults(&schema, &mut defaulted);
            let mut twice = defaulted.clone();
            apply_defaults(&schema, &mut twice);
            assert_eq!(defaulted, twice, "round {round}: defaulting is idempotent");
            let _ = validate(&schema, &defaulted);
        }
    }

    #[test]
    fn property_random_patterns_never_panic() {
        let mut rng = XorShift(0xDEAD_BEEF_CAFE_F00D);
        let alphabet: Vec<char> = "ab()[]|*+?{}^$.\\-,0123dwsSbB:xP<>é".chars().collect();
        let texts = ["", "a", "ab", "aab-b", "{1}", "é\n", "0123 abc"];
        for _ in 0..5000 {
            let len = rng.below(14);
            let pattern: String = (0..len).map(|_| *rng.pick(&alphabet)).collect();
            if let Some(re) = regex::Regex::new(&pattern) {
                for t in texts {
                    let _ = re.is_match(t);
                }
            }
        }
    }
}
