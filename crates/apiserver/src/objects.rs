//! Objects as stored and as served: JSON documents whose `metadata.resourceVersion` is never
//! stored but set from the store's `mod_revision` on every read.

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
pub fn labels(object: &Value) -> std::collections::BTreeMap<String, String> {
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
