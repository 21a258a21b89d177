//! Secrets, ConfigMaps, Leases and Events: kube-apiserver's rules for the fields clients
//! set (keys of `data`, base64 values, `stringData` folded into `data`, `type` and
//! `immutable`), with its wording.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fleetdb_machinery::field::FieldError;
use serde_json::{Map, Value, json};

use crate::api::Resource;
use crate::registry::strategy::Strategy;

/// Largest Secret or ConfigMap payload (kube-apiserver's `MaxSecretSize`).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;
/// Longest key of `data`.
const MAX_KEY_LENGTH: usize = 253;

/// Problems with one key of `data`/`binaryData` (`IsConfigMapKey`).
fn key_problems(path: &str, key: &str) -> Option<FieldError> {
    let valid = !key.is_empty()
        && key.len() <= MAX_KEY_LENGTH
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && key != "."
        && key != ".."
        && !key.starts_with("..");
    (!valid).then(|| {
        FieldError::invalid_value(
            format!("{path}[{key}]"),
            &json!(key),
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        )
    })
}

/// Folds `stringData` into `data` (base64-encoded, `stringData` wins), as the Secret
/// strategy does before validation.
fn fold_string_data(object: &mut Value, causes: &mut Vec<FieldError>) {
    let Some(fields) = object.as_object_mut() else {
        return;
    };
    let Some(string_data) = fields.remove("stringData") else {
        return;
    };
    let Value::Object(string_data) = string_data else {
        causes.push(FieldError::invalid(
            "stringData",
            "must be a map of strings",
        ));
        return;
    };
    let data = fields
        .entry("data")
        .or_insert_with(|| Value::Object(Map::new()));
    if !data.is_object() {
        return;
    }
    for (key, value) in string_data {
        match value {
            Value::String(text) => data[key] = json!(STANDARD.encode(text)),
            _ => causes.push(FieldError::invalid(
                format!("stringData[{key}]"),
                "must be a string",
            )),
        }
    }
}

/// Checks a map of keys to base64 (`binary`) or text values; returns its size in bytes.
fn data_problems(object: &Value, field: &str, binary: bool, causes: &mut Vec<FieldError>) -> usize {
    let mut size = 0;
    match &object[field] {
        Value::Null => {}
        Value::Object(data) => {
            for (key, value) in data {
                causes.extend(key_problems(field, key));
                match (value, binary) {
                    (Value::String(text), true) => match STANDARD.decode(text) {
                        Ok(bytes) => size += bytes.len(),
                        Err(_) => causes.push(FieldError::invalid(
                            format!("{field}[{key}]"),
                            "must be base64 encoded",
                        )),
                    },
                    (Value::String(text), false) => size += text.len(),
                    _ => causes.push(FieldError::invalid(
                        format!("{field}[{key}]"),
                        "must be a string",
                    )),
                }
            }
        }
        _ => causes.push(FieldError::invalid(field, "must be a map")),
    }
    size
}

fn size_problem(size: usize, causes: &mut Vec<FieldError>) {
    if size > MAX_DATA_BYTES {
        causes.push(FieldError::too_long("data", MAX_DATA_BYTES as u64));
    }
}

/// `immutable: true` freezes the payload (and `immutable` itself).
fn immutability(object: &Value, old: &Value, fields: &[&str], causes: &mut Vec<FieldError>) {
    if old["immutable"] != true {
        return;
    }
    if object["immutable"] != true {
        causes.push(FieldError::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for field in fields {
        if object[field] != old[field] {
            causes.push(FieldError::forbidden(
                *field,
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

/// The type of a Secret with none.
pub const OPAQUE: &str = "Opaque";

/// The strategy of Secrets.
pub struct SecretStrategy;

fn secret_problems(object: &mut Value) -> Vec<FieldError> {
    let mut causes = Vec::new();
    fold_string_data(object, &mut causes);
    match &object["type"] {
        Value::Null => object["type"] = json!(OPAQUE),
        Value::String(t) if !t.is_empty() => {}
        Value::String(_) => object["type"] = json!(OPAQUE),
        other => causes.push(FieldError::invalid_value("type", other, "must be a string")),
    }
    let size = data_problems(object, "data", true, &mut causes);
    size_problem(size, &mut causes);
    causes
}

impl Strategy for SecretStrategy {
    fn tracks_generation(&self) -> bool {
        false
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["metadata.name", "metadata.namespace", "type"]
    }

    fn prepare_create(&self, _: &Resource, object: &mut Value) -> Vec<FieldError> {
        secret_problems(object)
    }

    fn prepare_update(&self, _: &Resource, object: &mut Value, old: &Value) -> Vec<FieldError> {
        let mut causes = secret_problems(object);
        if object["type"] != old["type"] {
            causes.push(FieldError::invalid_value(
                "type",
                &object["type"],
                "field is immutable",
            ));
        }
        immutability(object, old, &["data"], &mut causes);
        causes
    }
}

/// The strategy of ConfigMaps.
pub struct ConfigMapStrategy;

fn config_map_problems(object: &Value) -> Vec<FieldError> {
    let mut causes = Vec::new();
    let size = data_problems(object, "data", false, &mut causes)
        + data_problems(object, "binaryData", true, &mut causes);
    if let (Some(data), Some(binary)) =
        (object["data"].as_object(), object["binaryData"].as_object())
    {
        for key in data.keys().filter(|k| binary.contains_key(*k)) {
            causes.push(FieldError::invalid_value(
                format!("data[{key}]"),
                &json!(key),
                "duplicate of key present in binaryData",
            ));
        }
    }
    size_problem(size, &mut causes);
    causes
}

impl Strategy for ConfigMapStrategy {
    fn tracks_generation(&self) -> bool {
        false
    }

    fn prepare_create(&self, _: &Resource, object: &mut Value) -> Vec<FieldError> {
        config_map_problems(object)
    }

    fn prepare_update(&self, _: &Resource, object: &mut Value, old: &Value) -> Vec<FieldError> {
        let mut causes = config_map_problems(object);
        immutability(object, old, &["data", "binaryData"], &mut causes);
        causes
    }
}

/// The strategy of Leases: no rules beyond metadata's.
pub struct LeaseStrategy;

impl Strategy for LeaseStrategy {
    fn tracks_generation(&self) -> bool {
        false
    }
}

/// The strategy of Events (both APIs). The fields `kubectl describe` selects by are
/// selectable.
pub struct EventStrategy;

/// Field selectors Events support (the core API's names).
pub const EVENT_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

impl Strategy for EventStrategy {
    fn tracks_generation(&self) -> bool {
        false
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        EVENT_FIELDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_data_is_folded_and_checked() {
        let mut secret = json!({"stringData": {"token-id": "abcdef"}, "data": {"x": "eA=="}});
        assert!(secret_problems(&mut secret).is_empty());
        assert_eq!(
            secret,
            json!({"type": "Opaque", "data": {"x": "eA==", "token-id": "YWJjZGVm"}})
        );
        let mut bad = json!({"data": {"a/b": "eA==", "c": "not base64!"}});
        let causes = secret_problems(&mut bad);
        let fields: Vec<_> = causes.iter().map(|c| c.field.clone()).collect();
        assert_eq!(fields, ["data[a/b]", "data[c]"]);
    }

    #[test]
    fn immutable_payloads_stay() {
        let old = json!({"type": "Opaque", "immutable": true, "data": {"a": "eA=="}});
        let mut changed = json!({"type": "Opaque", "immutable": true, "data": {"a": "eQ=="}});
        let causes = SecretStrategy.prepare_update(
            &crate::api::catalog::joining_resources()[0],
            &mut changed,
            &old,
        );
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].field, "data");
        let mut retyped = json!({"type": "kubernetes.io/tls", "data": {"a": "eA=="}});
        let causes = SecretStrategy.prepare_update(
            &crate::api::catalog::joining_resources()[0],
            &mut retyped,
            &json!({"type": "Opaque"}),
        );
        assert_eq!(causes[0].field, "type");
    }

    #[test]
    fn config_maps_refuse_keys_in_both_maps_and_oversized_payloads() {
        let both = json!({"data": {"a": "x"}, "binaryData": {"a": "eA=="}});
        assert_eq!(config_map_problems(&both).len(), 1);
        let big = json!({"data": {"a": "x".repeat(MAX_DATA_BYTES + 1)}});
        assert_eq!(config_map_problems(&big)[0].field, "data");
    }
}
