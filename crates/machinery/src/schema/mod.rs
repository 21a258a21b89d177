//! Structural OpenAPI v3 schemas of custom resources, compiled once.
//!
//! A CRD version's `openAPIV3Schema` is read once into a typed tree ([`Schema`]) when the
//! CRD is loaded; every write then walks that tree, never the raw JSON, and `pattern`s are
//! compiled once, on a linear-time engine (the `regex` crate: time proportional to pattern
//! × input, with compile-size limits). What the server does with it mirrors kube-apiserver:
//!
//! * [`Schema::prune`] drops fields the schema does not declare,
//! * [`Schema::apply_defaults`] fills in `default` values (and drops `null`s of non-nullable
//!   fields),
//! * [`Schema::validate`] checks an object and reports [`FieldError`]s worded like
//!   kube-apiserver's,
//! * server-side apply (`crate::apply`) reads list and map types from it,
//! * [`check_structural`] checks that a CRD's schema is structural, its defaults valid and
//!   its patterns compilable (this one reads the raw JSON: it judges the document itself).

mod formats;
mod prune;
mod structural;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use regex::{Regex, RegexBuilder};
use serde_json::{Number, Value};

pub use structural::check_structural;

use crate::field::FieldError;

pub(crate) const PRESERVE: &str = "x-kubernetes-preserve-unknown-fields";
pub(crate) const EMBEDDED: &str = "x-kubernetes-embedded-resource";
pub(crate) const INT_OR_STRING: &str = "x-kubernetes-int-or-string";
pub(crate) const LIST_TYPE: &str = "x-kubernetes-list-type";
pub(crate) const LIST_MAP_KEYS: &str = "x-kubernetes-list-map-keys";
pub(crate) const MAP_TYPE: &str = "x-kubernetes-map-type";

/// Longest `pattern` accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 8 * 1024;
/// Most memory a compiled `pattern` may take (the regex crate's `size_limit`): patterns whose
/// expansion is larger, such as deeply nested bounded repetitions, are refused when the CRD
/// is written.
pub const MAX_PATTERN_PROGRAM_BYTES: usize = 1 << 20;
/// Most memory the lazy DFA of one compiled `pattern` may use while matching; past it the
/// engine falls back to slower (still linear) matching, it never fails.
pub const MAX_PATTERN_DFA_BYTES: usize = 1 << 20;
/// Deepest nesting of groups a `pattern` may have.
pub const MAX_PATTERN_NESTING: u32 = 64;

/// A compiled structural schema: what prune, default, validate and apply walk.
#[derive(Clone, Debug, Default)]
pub struct Schema {
    root: Node,
}

impl Schema {
    /// Compiles a schema document. Never fails: parts that are malformed impose no
    /// constraint (the CRD's own validation, [`check_structural`], reports them when it is
    /// written), so an object can always be read back under a stored CRD.
    pub fn compile(schema: &Value) -> Schema {
        Schema {
            root: Node::compile(schema),
        }
    }

    /// The root node.
    pub(crate) fn root(&self) -> &Node {
        &self.root
    }

    /// Removes every field the schema does not declare (recursively), except below
    /// `x-kubernetes-preserve-unknown-fields: true`. At the root (and in embedded
    /// resources) `apiVersion`, `kind` and `metadata` are kept; metadata is not pruned here.
    /// Returns the removed fields' paths (`spec.foo`, `spec.items[1].bar`), sorted.
    pub fn prune(&self, object: &mut Value) -> Vec<String> {
        prune::prune(&self.root, object, true)
    }

    /// Applies `default`s: a declared property with a default that is absent from an
    /// object that exists gets it; a `null` for a non-nullable field is replaced by its
    /// default or removed; recursively through properties, items and additionalProperties.
    pub fn apply_defaults(&self, object: &mut Value) {
        prune::apply_defaults(&self.root, object);
    }

    /// Validates `object` and returns the problems in path order (deterministically). The
    /// root's `metadata`, `apiVersion` and `kind` are not validated here.
    pub fn validate(&self, object: &Value) -> Vec<FieldError> {
        validate::validate(&self.root, object, "", true)
    }
}

/// What may stand beside `properties`.
#[derive(Clone, Debug, Default)]
pub(crate) enum Additional {
    /// Not given (or not a schema or boolean).
    #[default]
    Absent,
    /// `additionalProperties: true` / `false`.
    Bool(bool),
    /// `additionalProperties: {...}`.
    Schema(Box<Node>),
}

impl Additional {
    pub(crate) fn schema(&self) -> Option<&Node> {
        match self {
            Additional::Schema(node) => Some(node),
            _ => None,
        }
    }
}

/// How server-side apply merges a list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// Replaced whole.
    #[default]
    Atomic,
    /// A set of scalars, merged by union.
    Set,
    /// A list of objects merged by these key fields.
    Map(Vec<String>),
}

/// A `pattern`, compiled once; `regex` is `None` when it does not compile (no constraint).
#[derive(Clone, Debug)]
pub(crate) struct Pattern {
    pub source: String,
    pub regex: Option<Regex>,
}

/// Compiles a `pattern` as the server enforces it: RE2 syntax, search semantics, within the
/// size limits above.
pub fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!(
            "the pattern is {} bytes long, more than the limit of {MAX_PATTERN_BYTES}",
            pattern.len()
        ));
    }
    RegexBuilder::new(pattern)
        .size_limit(MAX_PATTERN_PROGRAM_BYTES)
        .dfa_size_limit(MAX_PATTERN_DFA_BYTES)
        .nest_limit(MAX_PATTERN_NESTING)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => format!(
                "the compiled pattern would exceed the limit of {limit} bytes (nested or large repetitions)"
            ),
            other => other.to_string(),
        })
}

/// One schema node, typed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Node {
    /// The types a value may have (`integer`, `string` for int-or-string); empty for any.
    pub types: Vec<String>,
    pub nullable: bool,
    pub preserve_unknown: bool,
    pub embedded: bool,
    pub properties: BTreeMap<String, Node>,
    pub additional: Additional,
    /// `items` when it is a schema object.
    pub items: Option<Box<Node>>,
    /// `default` (possibly `null`).
    pub default: Option<Value>,
    pub required: Vec<String>,
    /// `enum`, when given and not empty.
    pub enumeration: Vec<Value>,
    pub max_length: Option<u64>,
    pub min_length: Option<u64>,
    pub pattern: Option<Pattern>,
    pub format: Option<String>,
    pub multiple_of: Option<Number>,
    pub maximum: Option<Number>,
    pub exclusive_maximum: bool,
    pub minimum: Option<Number>,
    pub exclusive_minimum: bool,
    pub max_items: Option<u64>,
    pub min_items: Option<u64>,
    pub unique_items: bool,
    pub max_properties: Option<u64>,
    pub min_properties: Option<u64>,
    /// `x-kubernetes-list-type`.
    pub list_type: Option<String>,
    /// `x-kubernetes-list-map-keys`.
    pub list_map_keys: Vec<String>,
    /// How server-side apply merges this list (from the list type, or the strategic merge
    /// markers of built-in OpenAPI documents).
    pub list_kind: ListKind,
    /// `x-kubernetes-map-type: atomic`.
    pub map_atomic: bool,
    pub all_of: Vec<Node>,
    pub any_of: Vec<Node>,
    pub one_of: Vec<Node>,
    pub not: Option<Box<Node>>,
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool).unwrap_or(false)
}

fn number(schema: &Value, name: &str) -> Option<Number> {
    match schema.get(name) {
        Some(Value::Number(n)) => Some(n.clone()),
        _ => None,
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The types a value may have, as kube-apiserver sees them.
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

fn list_kind(schema: &Value) -> ListKind {
    match schema.get(LIST_TYPE).and_then(Value::as_str) {
        Some("set") => ListKind::Set,
        Some("map") => {
            let keys = strings(schema.get(LIST_MAP_KEYS));
            if keys.is_empty() {
                ListKind::Atomic
            } else {
                ListKind::Map(keys)
            }
        }
        Some(_) => ListKind::Atomic,
        None => {
            // Built-in OpenAPI documents may only carry the strategic merge patch markers;
            // structured-merge-diff reads them the same way.
            let merge = schema
                .get("x-kubernetes-patch-strategy")
                .and_then(Value::as_str)
                .is_some_and(|s| s.split(',').any(|p| p.trim() == "merge"));
            if !merge {
                return ListKind::Atomic;
            }
            match schema
                .get("x-kubernetes-patch-merge-key")
                .and_then(Value::as_str)
            {
                Some(key) if !key.is_empty() => ListKind::Map(vec![key.to_string()]),
                _ => ListKind::Set,
            }
        }
    }
}

fn junctor(schema: &Value, name: &str) -> Vec<Node> {
    match schema.get(name) {
        Some(Value::Array(list)) => list.iter().map(Node::compile).collect(),
        _ => Vec::new(),
    }
}

impl Node {
    /// Compiles one node; a non-object compiles to a node that constrains nothing.
    pub(crate) fn compile(schema: &Value) -> Node {
        if !schema.is_object() {
            return Node::default();
        }
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|props| {
                props
                    .iter()
                    .map(|(name, node)| (name.clone(), Node::compile(node)))
                    .collect()
            })
            .unwrap_or_default();
        let additional = match schema.get("additionalProperties") {
            Some(node @ Value::Object(_)) => Additional::Schema(Box::new(Node::compile(node))),
            Some(Value::Bool(allowed)) => Additional::Bool(*allowed),
            _ => Additional::Absent,
        };
        let enumeration = match schema.get("enum") {
            Some(Value::Array(allowed)) => allowed.clone(),
            _ => Vec::new(),
        };
        let pattern = schema
            .get("pattern")
            .and_then(Value::as_str)
            .map(|p| Pattern {
                source: p.to_owned(),
                regex: compile_pattern(p).ok(),
            });
        Node {
            types: schema_types(schema),
            nullable: flag(schema, "nullable"),
            preserve_unknown: flag(schema, PRESERVE),
            embedded: flag(schema, EMBEDDED),
            properties,
            additional,
            items: schema
                .get("items")
                .filter(|i| i.is_object())
                .map(|i| Box::new(Node::compile(i))),
            default: schema.get("default").cloned(),
            required: strings(schema.get("required")),
            enumeration,
            max_length: schema.get("maxLength").and_then(Value::as_u64),
            min_length: schema.get("minLength").and_then(Value::as_u64),
            pattern,
            format: schema
                .get("format")
                .and_then(Value::as_str)
                .map(str::to_owned),
            multiple_of: number(schema, "multipleOf"),
            maximum: number(schema, "maximum"),
            exclusive_maximum: flag(schema, "exclusiveMaximum"),
            minimum: number(schema, "minimum"),
            exclusive_minimum: flag(schema, "exclusiveMinimum"),
            max_items: schema.get("maxItems").and_then(Value::as_u64),
            min_items: schema.get("minItems").and_then(Value::as_u64),
            unique_items: flag(schema, "uniqueItems"),
            max_properties: schema.get("maxProperties").and_then(Value::as_u64),
            min_properties: schema.get("minProperties").and_then(Value::as_u64),
            list_type: schema
                .get(LIST_TYPE)
                .and_then(Value::as_str)
                .map(str::to_owned),
            list_map_keys: strings(schema.get(LIST_MAP_KEYS)),
            list_kind: list_kind(schema),
            map_atomic: schema.get(MAP_TYPE).and_then(Value::as_str) == Some("atomic"),
            all_of: junctor(schema, "allOf"),
            any_of: junctor(schema, "anyOf"),
            one_of: junctor(schema, "oneOf"),
            not: schema
                .get("not")
                .filter(|n| n.is_object())
                .map(|n| Box::new(Node::compile(n))),
        }
    }

    /// The schema of field `name` of an object: its property, else `additionalProperties`.
    pub(crate) fn field(&self, name: &str) -> Option<&Node> {
        self.properties
            .get(name)
            .or_else(|| self.additional.schema())
    }
}
