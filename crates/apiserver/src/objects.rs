//! Objects as stored and as served: JSON documents whose `metadata.resourceVersion` is never
//! stored but set from the store's `mod_revision` on every read.

use std::collections::BTreeMap;

use bytes::Bytes;
use fleetdb_store::{KeyValue, Revision};
use serde_json::{Map, Value};

use crate::status::ApiError;

/// Parses a stored object and stamps its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        tracing::error!(key = %kv.key, error = %e, "a stored object is not valid JSON");
        ApiError::internal(format!("the stored object {} cannot be read", kv.key))
    })?;
    set_resource_version(&mut object, kv.mod_revision);
    Ok(object)
}

/// The bytes to store for an object (without its resourceVersion).
pub fn encode(object: &Value) -> Bytes {
    if object["metadata"].get("resourceVersion").is_none() {
        return Bytes::from(serde_json::to_vec(object).expect("a JSON value always serializes"));
    }
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    Bytes::from(serde_json::to_vec(&object).expect("a JSON value always serializes"))
}

pub fn set_resource_version(object: &mut Value, revision: Revision) {
    if let Some(metadata) = metadata_mut(object) {
        metadata.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
}

/// `metadata` as a mutable map, created if missing.
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

pub fn name(object: &Value) -> Option<&str> {
    object["metadata"]["name"].as_str()
}

pub fn namespace(object: &Value) -> Option<&str> {
    object["metadata"]["namespace"].as_str()
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

/// The current time as Kubernetes writes timestamps (RFC 3339, seconds, UTC).
pub fn now_timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// Everything but `metadata` and `status`: what a generation bump compares.
pub fn spec_part(object: &Value) -> Map<String, Value> {
    object
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
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

/// The selectable fields of stored bytes, skipping everything else (no `Value` is built).
/// `None` when the bytes do not have the usual shape (not JSON, a non-object `metadata` or
/// `status`, a non-string name or label value, a duplicated field): the caller then decodes
/// the object and reads it with [`name`], [`namespace`] and [`labels`], which agree with
/// this whenever this answers.
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

/// The stored object as served, without decoding it: its resourceVersion spliced into its
/// metadata. `None` when the bytes are not an object of `api_version`/`kind` with a metadata
/// object (the caller then decodes). Saves a decode and an encode per item of large lists.
pub fn splice_resource_version(kv: &KeyValue, api_version: &str, kind: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(kv.value.len() + 32);
    write_spliced(kv, api_version, kind, &mut out).then_some(out)
}

/// [`splice_resource_version`] appending to `out` (a list being written); false, with `out`
/// untouched, when the bytes do not have the usual shape.
pub fn write_spliced(kv: &KeyValue, api_version: &str, kind: &str, out: &mut Vec<u8>) -> bool {
    let bytes = &kv.value;
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
    out.extend_from_slice(&bytes[..=metadata]);
    out.extend_from_slice(format!("\"resourceVersion\":\"{}\"", kv.mod_revision).as_bytes());
    if bytes.get(metadata + 1) != Some(&b'}') {
        out.push(b',');
    }
    out.extend_from_slice(&bytes[metadata + 1..]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(value: &str, revision: Revision) -> KeyValue {
        KeyValue {
            key: "/k".into(),
            value: Bytes::from(value.to_owned()),
            create_revision: 1,
            mod_revision: revision,
            version: 1,
        }
    }

    #[test]
    fn splicing_equals_decoding() {
        let objects = [
            json_text(&serde_json::json!({"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "a", "labels": {"x": "}\"{"}}, "spec": {"metadata": {"name": "nested"}}})),
            r#"{"apiVersion":"g/v1","kind":"K","metadata":{}}"#.to_owned(),
            r#"{"spec":{"kind":"K","apiVersion":"g/v1","metadata":{"n":1}},"apiVersion":"g/v1","kind":"K","metadata":{"name":"b"}}"#.to_owned(),
        ];
        for text in objects {
            let stored = kv(&text, 42);
            let spliced = splice_resource_version(&stored, "g/v1", "K").expect("spliceable");
            let spliced: serde_json::Value = serde_json::from_slice(&spliced).unwrap();
            assert_eq!(spliced, decode(&stored).unwrap(), "{text}");
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
            assert!(
                splice_resource_version(&kv(text, 1), "g/v1", "K").is_none(),
                "{text}"
            );
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

    fn json_text(value: &serde_json::Value) -> String {
        value.to_string()
    }
}
