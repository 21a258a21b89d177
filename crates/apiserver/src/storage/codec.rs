//! Objects as stored and as served: JSON documents whose `metadata.resourceVersion` is never
//! stored but set from the key's `mod_revision` on every read.

use bytes::Bytes;
use fleetdb_machinery::meta;
use fleetdb_store::{KeyValue, Revision};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::api::ApiError;

/// Parses a stored object and stamps its resourceVersion.
///
/// What the writes store is always a JSON object whose `metadata` is an object; bytes of
/// any other shape (valid JSON or not) were put there by something else, and are refused
/// here like invalid JSON, so no caller ever indexes into an array or a string as if it
/// were an object.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(&kv.value).map_err(|e| unreadable(kv, &e))?;
    let shape_ok = object
        .as_object()
        .is_some_and(|o| o.get("metadata").is_none_or(Value::is_object));
    if !shape_ok {
        return Err(misshapen(kv));
    }
    set_resource_version(&mut object, kv.mod_revision);
    Ok(object)
}

/// The error for a stored object whose bytes do not parse (logged: it should never happen).
pub fn unreadable(kv: &KeyValue, error: &serde_json::Error) -> ApiError {
    tracing::error!(key = %kv.key, error = %error, "a stored object is not valid JSON");
    cannot_be_read(kv)
}

/// The error for stored JSON that is not an object with an object `metadata`.
fn misshapen(kv: &KeyValue) -> ApiError {
    tracing::error!(key = %kv.key, "a stored object is not a JSON object with object metadata");
    cannot_be_read(kv)
}

fn cannot_be_read(kv: &KeyValue) -> ApiError {
    ApiError::internal(format!("the stored object {} cannot be read", kv.key))
}

/// The bytes to store for an object (without its resourceVersion).
pub fn encode(object: &Value) -> Bytes {
    let bytes = serde_json::to_vec(&WithoutResourceVersion(object));
    Bytes::from(bytes.expect("a JSON value always serializes"))
}

/// An object serialized as it is but for `metadata.resourceVersion` (no copy of the object
/// to remove it from: an update's object is the size of what is stored).
struct WithoutResourceVersion<'a>(&'a Value);

impl Serialize for WithoutResourceVersion<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Value::Object(fields) = self.0 else {
            return self.0.serialize(serializer);
        };
        let mut map = serializer.serialize_map(Some(fields.len()))?;
        for (name, value) in fields {
            match value {
                Value::Object(metadata) if name == "metadata" => {
                    map.serialize_entry(name, &Skipping(metadata, "resourceVersion"))?
                }
                _ => map.serialize_entry(name, value)?,
            }
        }
        map.end()
    }
}

/// A JSON object serialized without one of its fields.
struct Skipping<'a>(&'a serde_json::Map<String, Value>, &'static str);

impl Serialize for Skipping<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Skipping(fields, skipped) = *self;
        let kept = fields.len() - usize::from(fields.contains_key(skipped));
        let mut map = serializer.serialize_map(Some(kept))?;
        for (name, value) in fields.iter().filter(|(name, _)| *name != skipped) {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Sets `metadata.resourceVersion` to `revision`.
pub fn set_resource_version(object: &mut Value, revision: Revision) {
    if let Some(metadata) = meta::metadata_mut(object) {
        metadata.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
}

/// The stored object as served, without decoding it: its resourceVersion spliced into its
/// metadata. `None` when the bytes are not an object of `api_version`/`kind` with a metadata
/// object (the caller then decodes).
pub fn splice_resource_version(kv: &KeyValue, api_version: &str, kind: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(kv.value.len() + 32);
    write_spliced(kv, api_version, kind, &mut out).then_some(out)
}

/// [`splice_resource_version`] appending to `out` (a list being written); false, with `out`
/// untouched, when the bytes do not have the usual shape.
pub fn write_spliced(kv: &KeyValue, api_version: &str, kind: &str, out: &mut Vec<u8>) -> bool {
    meta::write_with_resource_version(&kv.value, kv.mod_revision, api_version, kind, out)
}

/// Appends items to a list's JSON array: each stored object as served, spliced when its
/// bytes have the usual shape, decoded and re-encoded (as `api_version`/`kind`) otherwise.
/// `first`: no item precedes them. Takes the values by value, so each is freed once written.
pub fn write_items(
    out: &mut Vec<u8>,
    api_version: &str,
    kind: &str,
    kvs: Vec<KeyValue>,
    mut first: bool,
) -> Result<(), ApiError> {
    for kv in kvs {
        if !first {
            out.push(b',');
        }
        first = false;
        write_item(out, api_version, kind, &kv)?;
    }
    Ok(())
}

/// Appends one stored object as served (see [`write_items`]).
pub fn write_item(
    out: &mut Vec<u8>,
    api_version: &str,
    kind: &str,
    kv: &KeyValue,
) -> Result<(), ApiError> {
    if !write_spliced(kv, api_version, kind, out) {
        let mut object = decode(kv)?;
        object["apiVersion"] = Value::String(api_version.to_owned());
        object["kind"] = Value::String(kind.to_owned());
        serde_json::to_writer(&mut *out, &object).expect("JSON values serialize");
    }
    Ok(())
}

/// About the bytes [`write_items`] writes for these objects (exact when all are spliced).
pub fn items_size(kvs: &[KeyValue]) -> usize {
    kvs.iter().map(|kv| kv.value.len() + 40).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn encode_drops_only_the_metadata_resource_version() {
        let with = json!({
            "apiVersion": "g/v1",
            "kind": "K",
            "metadata": {"annotations": {"resourceVersion": "a"}, "name": "a", "resourceVersion": "7", "uid": "u"},
            "spec": {"resourceVersion": "kept", "z": [1, {"resourceVersion": 2}]},
        });
        let mut without = with.clone();
        without["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("resourceVersion");
        assert_eq!(encode(&with), serde_json::to_vec(&without).unwrap());
        // Bytes equal to what serde_json writes for the same object without the field.
        assert_eq!(encode(&without), serde_json::to_vec(&without).unwrap());
        let odd = json!({"metadata": {"resourceVersion": "1"}});
        assert_eq!(&encode(&odd)[..], br#"{"metadata":{}}"#);
    }

    #[test]
    fn a_list_reads_the_same_spliced_or_decoded() {
        let stored = [
            kv(
                r#"{"apiVersion":"g/v1","kind":"K","metadata":{"name":"a"}}"#,
                5,
            ),
            kv(r#"{"metadata":{"name":"b"},"spec":{"x":1}}"#, 6),
        ];
        let mut out = b"[".to_vec();
        write_items(&mut out, "g/v1", "K", stored.to_vec(), true).unwrap();
        out.push(b']');
        let items: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            items,
            json!([
                {"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "a", "resourceVersion": "5"}},
                {"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "b", "resourceVersion": "6"}, "spec": {"x": 1}},
            ])
        );
        for kv in &stored {
            let mut decoded = decode(kv).unwrap();
            assert_eq!(
                decoded["metadata"]["resourceVersion"],
                json!(kv.mod_revision.to_string())
            );
            decoded["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("resourceVersion");
            assert_eq!(
                encode(&decoded),
                kv.value,
                "encode drops the resourceVersion"
            );
        }
    }
}
