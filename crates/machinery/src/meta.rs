//! Object metadata, read and checked on JSON objects as Kubernetes' `ObjectMeta` rules say:
//! accessors, the metadata validation every kind shares, and the few byte-level reads the
//! server uses to avoid decoding stored objects (what selectors look at, splicing a
//! `resourceVersion` into stored bytes).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::field::FieldError;
use crate::validation;

/// The fields of `ObjectMeta`; anything else under `metadata` is unknown.
pub const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// `metadata` as a mutable map, created (or replaced, when it is not an object) if needed.
/// `None` when `object` itself is not a JSON object.
pub fn metadata_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    let object = object.as_object_mut()?;
    let metadata = object
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !metadata.is_object() {
        *metadata = Value::Object(Map::new());
    }
    metadata.as_object_mut()
}

/// `metadata.name`.
pub fn name(object: &Value) -> Option<&str> {
    object["metadata"]["name"].as_str()
}

/// `metadata.namespace`.
pub fn namespace(object: &Value) -> Option<&str> {
    object["metadata"]["namespace"].as_str()
}

/// `metadata.uid`.
pub fn uid(object: &Value) -> Option<&str> {
    object["metadata"]["uid"].as_str()
}

/// Whether the object's deletion was requested (`metadata.deletionTimestamp` is set).
pub fn is_being_deleted(object: &Value) -> bool {
    object["metadata"]["deletionTimestamp"].is_string()
}

/// The object's labels (non-string values are ignored).
pub fn labels(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata.finalizers` (non-string entries are ignored).
pub fn finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether everything but `metadata`, `status`, `apiVersion` and `kind` is the same in both
/// objects: what decides a `metadata.generation` bump.
pub fn same_spec(a: &Value, b: &Value) -> bool {
    let outside = |k: &String| !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind");
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            a.keys().filter(|k| outside(k)).count() == b.keys().filter(|k| outside(k)).count()
                && a.iter()
                    .filter(|(k, _)| outside(k))
                    .all(|(k, v)| b.get(k) == Some(v))
        }
        _ => a == b,
    }
}

/// Largest total size of an object's annotations, keys and values (kube-apiserver's limit).
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Problems with `metadata.labels` and `metadata.annotations` (keys, values, types, and the
/// annotations' total size).
pub fn label_and_annotation_errors(object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let metadata = &object["metadata"];
    match &metadata["labels"] {
        Value::Object(labels) => {
            for (key, value) in labels {
                for problem in validation::label_key(key) {
                    errors.push(FieldError::invalid(
                        "metadata.labels",
                        format!("Invalid value: {key:?}: {problem}"),
                    ));
                }
                match value.as_str() {
                    Some(value) => {
                        for problem in validation::label_value(value) {
                            errors.push(FieldError::invalid(
                                format!("metadata.labels.{key}"),
                                format!("Invalid value: {value:?}: {problem}"),
                            ));
                        }
                    }
                    None => errors.push(FieldError::invalid(
                        format!("metadata.labels.{key}"),
                        "Invalid value: label values must be strings",
                    )),
                }
            }
        }
        Value::Null => {}
        _ => errors.push(FieldError::invalid(
            "metadata.labels",
            "Invalid value: must be a map of strings",
        )),
    }
    match &metadata["annotations"] {
        Value::Object(annotations) => {
            let total: usize = annotations
                .iter()
                .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
                .sum();
            if total > MAX_ANNOTATIONS_BYTES {
                errors.push(FieldError::too_long(
                    "metadata.annotations",
                    MAX_ANNOTATIONS_BYTES as u64,
                ));
            }
            for (key, value) in annotations {
                for problem in validation::annotation_key(key) {
                    errors.push(FieldError::invalid(
                        "metadata.annotations",
                        format!("Invalid value: {key:?}: {problem}"),
                    ));
                }
                if !value.is_string() {
                    errors.push(FieldError::invalid(
                        format!("metadata.annotations.{key}"),
                        "Invalid value: annotation values must be strings",
                    ));
                }
            }
        }
        Value::Null => {}
        _ => errors.push(FieldError::invalid(
            "metadata.annotations",
            "Invalid value: must be a map of strings",
        )),
    }
    errors
}

/// Problems with a name, given the rule's problems (`validation::dns1123_label`, ...).
pub fn name_errors(name: &str, problems: Vec<String>) -> Vec<FieldError> {
    problems
        .into_iter()
        .map(|p| FieldError::invalid("metadata.name", format!("Invalid value: {name:?}: {p}")))
        .collect()
}

/// What selectors look at in a stored object, read without decoding the rest of it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selectable {
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// Sorted by key.
    pub labels: BTreeMap<String, String>,
    /// `status.phase`.
    pub phase: Option<String>,
}

#[derive(serde::Deserialize)]
struct StoredShape {
    #[serde(default)]
    metadata: Option<MetadataShape>,
    #[serde(default)]
    status: Option<StatusShape>,
}

#[derive(serde::Deserialize)]
struct MetadataShape {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(serde::Deserialize)]
struct StatusShape {
    #[serde(default)]
    phase: Option<String>,
}

/// The selectable fields of an object's JSON bytes, skipping everything else (no `Value` is
/// built). `None` when the bytes do not have the usual shape (not JSON, a non-object
/// `metadata` or `status`, a non-string name or label value, a duplicated field): the caller
/// then decodes the object and reads it with [`name`], [`namespace`] and [`labels`], which
/// agree with this whenever this answers.
pub fn selectable(bytes: &[u8]) -> Option<Selectable> {
    let shape: StoredShape = serde_json::from_slice(bytes).ok()?;
    let metadata = shape.metadata;
    Some(Selectable {
        phase: shape.status.and_then(|s| s.phase),
        name: metadata.as_ref().and_then(|m| m.name.clone()),
        namespace: metadata.as_ref().and_then(|m| m.namespace.clone()),
        labels: metadata.and_then(|m| m.labels).unwrap_or_default(),
    })
}

/// Where the value of a top-level key of a JSON object starts, found without decoding it.
fn top_level_value(bytes: &[u8], key: &str) -> Option<usize> {
    let (mut depth, mut in_string, mut escape) = (0usize, false, false);
    let (mut string_start, mut last_string) = (0usize, None::<(usize, usize)>);
    for (i, &byte) in bytes.iter().enumerate() {
        if in_string {
            if escape {
                escape = false;
            } else if byte == b'\\' {
                escape = true;
            } else if byte == b'"' {
                in_string = false;
                if depth == 1 {
                    last_string = Some((string_start, i));
                }
            }
            continue;
        }
        match byte {
            b'"' => {
                in_string = true;
                string_start = i + 1;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.checked_sub(1)?,
            b',' if depth == 1 => last_string = None,
            b':' if depth == 1 => {
                if let Some((start, end)) = last_string
                    && &bytes[start..end] == key.as_bytes()
                {
                    let mut value = i + 1;
                    while bytes.get(value).is_some_and(u8::is_ascii_whitespace) {
                        value += 1;
                    }
                    return Some(value);
                }
            }
            _ => {}
        }
    }
    None
}

/// Appends `bytes` (a stored object's JSON, without `resourceVersion`) to `out` with
/// `"resourceVersion":"<revision>"` spliced into its metadata, without decoding it. False,
/// with `out` untouched, when the bytes are not an object of `api_version`/`kind` with a
/// metadata object (the caller then decodes). Saves a decode and an encode per item of large
/// lists.
pub fn write_with_resource_version(
    bytes: &[u8],
    revision: i64,
    api_version: &str,
    kind: &str,
    out: &mut Vec<u8>,
) -> bool {
    let is = |key: &str, expected: &str| {
        top_level_value(bytes, key).is_some_and(|at| {
            let quoted = format!("\"{expected}\"");
            bytes.get(at..at + quoted.len()) == Some(quoted.as_bytes())
                && matches!(
                    bytes.get(at + quoted.len()),
                    Some(b',' | b'}' | b' ' | b'\n')
                )
        })
    };
    if !is("apiVersion", api_version) || !is("kind", kind) {
        return false;
    }
    let Some(metadata) = top_level_value(bytes, "metadata") else {
        return false;
    };
    if bytes.get(metadata) != Some(&b'{') {
        return false;
    }
    out.reserve(bytes.len() + 32);
    out.extend_from_slice(&bytes[..metadata]);
    write_metadata_with_resource_version(&bytes[metadata..], revision, out);
    true
}

/// Appends `metadata` (the JSON text of a metadata object, from its opening brace on: what
/// follows the object is copied as it is) with `"resourceVersion":"<revision>"` as its first
/// field. Text that does not start with `{` stands for an absent metadata object: `out` gets
/// one holding only the resourceVersion.
pub fn write_metadata_with_resource_version(metadata: &[u8], revision: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"resourceVersion\":\"");
    out.extend_from_slice(revision.to_string().as_bytes());
    out.push(b'"');
    match metadata.strip_prefix(b"{") {
        Some(rest) => {
            if rest.first() != Some(&b'}') {
                out.push(b',');
            }
            out.extend_from_slice(rest);
        }
        None => out.push(b'}'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spliced(text: &str, revision: i64) -> Option<Value> {
        let mut out = Vec::new();
        write_with_resource_version(text.as_bytes(), revision, "g/v1", "K", &mut out)
            .then(|| serde_json::from_slice(&out).unwrap())
    }

    #[test]
    fn splicing_equals_setting_the_field() {
        let objects = [
            json!({"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "a", "labels": {"x": "}\"{"}}, "spec": {"metadata": {"name": "nested"}}}).to_string(),
            r#"{"apiVersion":"g/v1","kind":"K","metadata":{}}"#.to_owned(),
            r#"{"spec":{"kind":"K","apiVersion":"g/v1","metadata":{"n":1}},"apiVersion":"g/v1","kind":"K","metadata":{"name":"b"}}"#.to_owned(),
        ];
        for text in objects {
            let mut expected: Value = serde_json::from_str(&text).unwrap();
            expected["metadata"]["resourceVersion"] = json!("42");
            assert_eq!(spliced(&text, 42), Some(expected), "{text}");
        }
    }

    #[test]
    fn other_shapes_are_left_to_decoding() {
        for text in [
            r#"{"apiVersion":"g/v2","kind":"K","metadata":{}}"#,
            r#"{"apiVersion":"g/v1","kind":"Other","metadata":{}}"#,
            r#"{"apiVersion":"g/v1","kind":"K","metadata":null}"#,
            r#"{"apiVersion":"g/v1","kind":"K"}"#,
            r#"[1,2]"#,
            r#"{"apiVersion":"g/v1"#,
        ] {
            let mut out = b"kept".to_vec();
            assert!(
                !write_with_resource_version(text.as_bytes(), 1, "g/v1", "K", &mut out),
                "{text}"
            );
            assert_eq!(out, b"kept");
        }
    }

    #[test]
    fn selectable_agrees_with_decoding_or_declines() {
        let objects = [
            r#"{"metadata":{"name":"a","namespace":"n","labels":{"x":"1","y":""}},"status":{"phase":"Active"},"spec":{"metadata":{"name":"nested"}}}"#,
            r#"{"metadata":{"name":"a","labels":null},"status":null}"#,
            r#"{"metadata":null}"#,
            r#"{"kind":"K"}"#,
            r#"{"metadata":{"name":"a","labels":{"x":1}}}"#,
            r#"{"metadata":{"name":7}}"#,
            r#"{"metadata":[1]}"#,
            r#"{"status":"odd","metadata":{"name":"a"}}"#,
            r#"{"metadata":{"name":"a"},"metadata":{"name":"b"}}"#,
            r#"[1,2]"#,
            r#"{"metadata":"#,
        ];
        for text in objects {
            let Some(read) = selectable(text.as_bytes()) else {
                continue;
            };
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(read.name.as_deref(), name(&value), "{text}");
            assert_eq!(read.namespace.as_deref(), namespace(&value), "{text}");
            assert_eq!(read.labels, labels(&value), "{text}");
            assert_eq!(
                read.phase.as_deref(),
                value["status"]["phase"].as_str(),
                "{text}"
            );
        }
        assert!(selectable(objects[0].as_bytes()).is_some());
        assert!(selectable(br#"{"metadata":{"name":"a","labels":{"x":1}}}"#).is_none());
    }

    #[test]
    fn spec_comparison_ignores_metadata_and_status() {
        let a =
            json!({"kind": "K", "metadata": {"name": "a"}, "spec": {"x": 1}, "status": {"y": 1}});
        let mut b = a.clone();
        b["metadata"]["labels"] = json!({"l": "v"});
        b["status"]["y"] = json!(2);
        assert!(same_spec(&a, &b));
        b["spec"]["x"] = json!(2);
        assert!(!same_spec(&a, &b));
        b["spec"]["x"] = json!(1);
        b["data"] = json!({});
        assert!(!same_spec(&a, &b));
    }

    #[test]
    fn labels_and_annotations_are_checked() {
        let object = json!({"metadata": {"labels": {"ok": "v", "bad key!": "v", "k": 3}, "annotations": {"a": 1}}});
        let fields: Vec<String> = label_and_annotation_errors(&object)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "metadata.labels",
                "metadata.labels.k",
                "metadata.annotations.a"
            ]
        );
        assert!(
            label_and_annotation_errors(&json!({"metadata": {"labels": {"a": "b"}}})).is_empty()
        );
    }
}
