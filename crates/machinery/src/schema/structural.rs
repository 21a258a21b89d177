//! Whether a CRD version's schema is structural, as kube-apiserver requires of
//! `apiextensions.k8s.io/v1` CRDs: this judges the schema document itself, so it reads the
//! raw JSON rather than the compiled form.

use serde_json::{Map, Value};

use super::{EMBEDDED, INT_OR_STRING, LIST_MAP_KEYS, LIST_TYPE, MAP_TYPE, Node, PRESERVE};
use super::{compile_pattern, prune, validate};
use crate::field::{FieldError, path};

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool).unwrap_or(false)
}

fn properties(schema: &Value) -> Option<&Map<String, Value>> {
    schema.get("properties").and_then(Value::as_object)
}

fn items_schema(schema: &Value) -> Option<&Value> {
    schema.get("items").filter(|i| i.is_object())
}

/// A `pattern` must compile, within the server's limits.
fn check_pattern(schema: &Value, at: &str, errors: &mut Vec<FieldError>) {
    if let Some(Value::String(pattern)) = schema.get("pattern")
        && !pattern.is_empty()
        && let Err(problem) = compile_pattern(pattern)
    {
        errors.push(FieldError::invalid_value(
            path::child(at, "pattern"),
            &Value::String(pattern.clone()),
            &format!("must be a valid regular expression, but isn't: {problem}"),
        ));
    }
}

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
pub fn check_structural(schema: &Value, base: &str) -> Vec<FieldError> {
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
    errors: &mut Vec<FieldError>,
) {
    let Some(so) = schema.as_object() else {
        errors.push(FieldError::invalid_value(
            path,
            schema,
            "must be a schema object",
        ));
        return;
    };
    let type_path = path::child(path, "type");
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
                errors.push(FieldError::not_supported(
                    &type_path,
                    &Value::from(t.as_str()),
                    &allowed,
                ));
            }
        }
        Some(other) => {
            type_malformed = true;
            errors.push(FieldError::invalid_value(
                &type_path,
                other,
                "must be a string",
            ));
        }
    }
    if embedded && ty != Some("object") {
        let detail = "must be object if x-kubernetes-embedded-resource is true";
        match ty {
            None if !type_malformed => errors.push(FieldError::required(&type_path, detail)),
            None => {}
            Some(t) => errors.push(FieldError::invalid_value(
                &type_path,
                &Value::from(t),
                detail,
            )),
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
        errors.push(FieldError::required(&type_path, detail));
    }
    if level == Level::Root
        && let Some(t) = ty
        && t != "object"
    {
        errors.push(FieldError::invalid_value(
            &type_path,
            &Value::from(t),
            "must be object at the root",
        ));
    }
    if let Some(Value::Bool(false)) = so.get(PRESERVE) {
        errors.push(FieldError::invalid_value(
            path::child(path, PRESERVE),
            &Value::Bool(false),
            "must be true or undefined",
        ));
    }

    // items / properties / additionalProperties
    if ty == Some("array") && !so.contains_key("items") {
        errors.push(FieldError::required(
            path::child(path, "items"),
            "must be specified",
        ));
    }
    let props = properties(schema);
    let ap_path = path::child(path, "additionalProperties");
    if so.contains_key("additionalProperties") {
        if props.is_some_and(|p| !p.is_empty()) {
            errors.push(FieldError::forbidden(
                &ap_path,
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if embedded {
            errors.push(FieldError::forbidden(
                &ap_path,
                "must not be used if x-kubernetes-embedded-resource is set",
            ));
        }
        if level == Level::Root {
            errors.push(FieldError::forbidden(
                &ap_path,
                "must not be used at the root",
            ));
        }
    }
    check_unique_items(schema, path, errors);
    check_pattern(schema, path, errors);
    if embedded && !preserve && props.is_none_or(Map::is_empty) {
        errors.push(FieldError::required(
            path::child(path, "properties"),
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
        let default_path = path::child(path, "default");
        let mut pruned = d.clone();
        let node = Node::compile(schema);
        let removed = prune::prune(&node, &mut pruned, embedded);
        if !removed.is_empty() {
            errors.push(FieldError::invalid_value(
                &default_path,
                d,
                "must not have unknown fields",
            ));
        }
        errors.extend(validate::validate(&node, &pruned, &default_path, false));
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
                let jpath = path::index(&path::child(path, kw), i);
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
        let jpath = path::child(path, "not");
        value_validation(not, Some(schema), &jpath, path, false, false, errors);
    }

    // children
    if let Some(props) = props {
        let props_path = path::child(path, "properties");
        for (k, ps) in sorted_entries(props) {
            let meta = in_metadata || (level == Level::Root && k == "metadata");
            structural_node(ps, &path::key(&props_path, k), Level::Field, meta, errors);
        }
    }
    match so.get("additionalProperties") {
        Some(ap @ Value::Object(_)) => {
            structural_node(ap, &ap_path, Level::Field, in_metadata, errors);
        }
        Some(Value::Bool(_)) | None => {}
        Some(other) => errors.push(FieldError::invalid_value(
            &ap_path,
            other,
            "must be a schema or a boolean",
        )),
    }
    match so.get("items") {
        Some(is @ Value::Object(_)) => {
            structural_node(
                is,
                &path::child(path, "items"),
                Level::Item,
                in_metadata,
                errors,
            );
        }
        None => {}
        Some(_) => errors.push(FieldError::forbidden(
            path::child(path, "items"),
            "items must be a schema object and not an array",
        )),
    }
}

fn check_resource_properties(
    props: &Map<String, Value>,
    path: &str,
    root: bool,
    errors: &mut Vec<FieldError>,
) {
    let props_path = path::child(path, "properties");
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
            let p = path::child(&path::key(&props_path, name), "type");
            errors.push(FieldError::invalid_value(
                &p,
                &Value::from(t),
                "must be string",
            ));
        }
    }
    let Some(metadata) = props.get("metadata") else {
        return;
    };
    let meta_path = path::key(&props_path, "metadata");
    if let Some(t) = type_of(metadata)
        && t != "object"
    {
        errors.push(FieldError::invalid_value(
            path::child(&meta_path, "type"),
            &Value::from(t),
            "must be object",
        ));
    }
    let meta_props = properties(metadata);
    for name in ["name", "generateName"] {
        if let Some(t) = meta_props.and_then(|p| p.get(name)).and_then(type_of)
            && t != "string"
        {
            let p = path::child(
                &path::key(&path::child(&meta_path, "properties"), name),
                "type",
            );
            errors.push(FieldError::invalid_value(
                &p,
                &Value::from(t),
                "must be string",
            ));
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
            errors.push(FieldError::forbidden(
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
    errors: &mut Vec<FieldError>,
) {
    let lt_path = path::child(path, LIST_TYPE);
    let keys_path = path::child(path, LIST_MAP_KEYS);
    let list_type = so.get(LIST_TYPE);
    if let Some(lt) = list_type {
        let allowed = ["atomic", "set", "map"];
        if !lt.as_str().is_some_and(|s| allowed.contains(&s)) {
            let allowed: Vec<Value> = allowed.iter().map(|s| Value::from(*s)).collect();
            errors.push(FieldError::not_supported(&lt_path, lt, &allowed));
        } else if ty.is_some() && ty != Some("array") {
            errors.push(FieldError::invalid_value(
                &lt_path,
                lt,
                "must only be used if type is array",
            ));
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
            errors.push(FieldError::required(
                &keys_path,
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        if let Some(items) = items_schema(schema) {
            let items_path = path::child(path, "items");
            match items.get("type").and_then(Value::as_str) {
                Some("object") | None => {}
                Some(t) => errors.push(FieldError::invalid_value(
                    path::child(&items_path, "type"),
                    &Value::from(t),
                    "must be object if parent array's x-kubernetes-list-type is map",
                )),
            }
            let item_props = properties(items);
            for k in &keys {
                if item_props.and_then(|p| p.get(*k)).is_none() && !flag(items, PRESERVE) {
                    errors.push(FieldError::required(
                        path::key(&path::child(&items_path, "properties"), k),
                        "entries in x-kubernetes-list-map-keys must correspond to declared properties",
                    ));
                }
            }
        }
    } else if so.contains_key(LIST_MAP_KEYS) {
        errors.push(FieldError::forbidden(
            &keys_path,
            "must not be set if x-kubernetes-list-type is not map",
        ));
    }
}

/// kube-apiserver rejects `uniqueItems: true` in CRD schemas.
fn check_unique_items(schema: &Value, path: &str, errors: &mut Vec<FieldError>) {
    if flag(schema, "uniqueItems") {
        errors.push(FieldError::forbidden(
            path::child(path, "uniqueItems"),
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
    errors: &mut Vec<FieldError>,
) {
    let Some(so) = schema.as_object() else {
        return;
    };
    if so.contains_key("type") && !skip_type {
        errors.push(FieldError::forbidden(
            path::child(path, "type"),
            "must be empty to be structural",
        ));
    }
    for kw in ["additionalProperties", "default"] {
        if so.contains_key(kw) {
            errors.push(FieldError::forbidden(
                path::child(path, kw),
                "must be undefined to be structural",
            ));
        }
    }
    for kw in ["nullable", PRESERVE, EMBEDDED, INT_OR_STRING] {
        if flag(schema, kw) {
            errors.push(FieldError::forbidden(
                path::child(path, kw),
                "must be false to be structural",
            ));
        }
    }
    for kw in [LIST_TYPE, LIST_MAP_KEYS, MAP_TYPE] {
        if so.contains_key(kw) {
            errors.push(FieldError::forbidden(
                path::child(path, kw),
                "must be empty to be structural",
            ));
        }
    }
    check_unique_items(schema, path, errors);
    check_pattern(schema, path, errors);
    if let Some(props) = properties(schema) {
        for (k, ps) in sorted_entries(props) {
            let jpath = path::key(&path::child(path, "properties"), k);
            let spath = path::key(&path::child(structural_path, "properties"), k);
            let sprop = structural.and_then(properties).and_then(|p| p.get(k));
            if structural.is_some() && sprop.is_none() {
                errors.push(FieldError::required(
                    &spath,
                    &format!("because it is defined in {jpath}"),
                ));
            }
            value_validation(ps, sprop, &jpath, &spath, false, false, errors);
        }
    }
    if let Some(is) = so.get("items") {
        let jpath = path::child(path, "items");
        let spath = path::child(structural_path, "items");
        let sitems = structural.and_then(items_schema);
        if structural.is_some() && sitems.is_none() {
            errors.push(FieldError::required(
                &spath,
                &format!("because it is defined in {jpath}"),
            ));
        }
        value_validation(is, sitems, &jpath, &spath, false, false, errors);
    }
    for kw in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(list)) = so.get(kw) {
            for (i, j) in list.iter().enumerate() {
                let jpath = path::index(&path::child(path, kw), i);
                let skip = kw == "anyOf" && skip_nested_any_of_types;
                value_validation(j, structural, &jpath, structural_path, skip, false, errors);
            }
        }
    }
    if let Some(not) = so.get("not") {
        let jpath = path::child(path, "not");
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
