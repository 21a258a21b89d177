//! Decoding of the Kubernetes protobuf envelope for the built-in kinds kubectl sends that way.
//!
//! kubectl's typed commands (`create namespace`, ...) POST protobuf bodies and do not fall back
//! to JSON. We only ever decode (responses are JSON, which clients accept), and only the fields
//! a client may set. The wire format is read by hand: the messages involved are few and small,
//! and a protobuf code generator would be the heaviest dependency of the crate.
//!
//! Envelope: the bytes `k8s\0`, then `Unknown { 1: TypeMeta { 1: apiVersion, 2: kind },
//! 2: raw object bytes, 3: contentEncoding, 4: contentType }`.

use serde_json::{Map, Value, json};

use crate::api::ApiError;

/// The media type of protobuf request bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

/// One field of a message: its number and its payload.
enum Field<'a> {
    /// A varint, fixed32 or fixed64: no field we decode has one, so only its size matters.
    Scalar,
    Bytes(&'a [u8]),
}

struct Reader<'a> {
    data: &'a [u8],
}

fn malformed() -> ApiError {
    ApiError::bad_request("the protobuf request body is malformed")
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.data.split_first().ok_or_else(malformed)?;
            self.data = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ApiError> {
        if self.data.len() < n {
            return Err(malformed());
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, ApiError> {
        if self.data.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = match key & 7 {
            0 => {
                self.varint()?;
                Field::Scalar
            }
            1 => {
                self.take(8)?;
                Field::Scalar
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| malformed())?;
                Field::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Field::Scalar
            }
            _ => return Err(malformed()),
        };
        Ok(Some((key >> 3, field)))
    }
}

fn fields(data: &[u8]) -> Result<Vec<(u64, Field<'_>)>, ApiError> {
    let mut reader = Reader { data };
    let mut out = Vec::new();
    while let Some(field) = reader.next()? {
        out.push(field);
    }
    Ok(out)
}

fn string(bytes: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| malformed())
}

/// A `map<string, string>` entry.
fn map_entry(bytes: &[u8]) -> Result<(String, String), ApiError> {
    let (mut key, mut value) = (String::new(), String::new());
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(b)) => key = string(b)?,
            (2, Field::Bytes(b)) => value = string(b)?,
            _ => {}
        }
    }
    Ok((key, value))
}

/// The client-settable part of `ObjectMeta`.
fn object_meta(bytes: &[u8]) -> Result<Value, ApiError> {
    let mut metadata = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut finalizers = Vec::new();
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(b)) => {
                metadata.insert("name".into(), json!(string(b)?));
            }
            (2, Field::Bytes(b)) => {
                metadata.insert("generateName".into(), json!(string(b)?));
            }
            (3, Field::Bytes(b)) => {
                metadata.insert("namespace".into(), json!(string(b)?));
            }
            (6, Field::Bytes(b)) => {
                metadata.insert("resourceVersion".into(), json!(string(b)?));
            }
            (11, Field::Bytes(b)) => {
                let (k, v) = map_entry(b)?;
                labels.insert(k, json!(v));
            }
            (12, Field::Bytes(b)) => {
                let (k, v) = map_entry(b)?;
                annotations.insert(k, json!(v));
            }
            (14, Field::Bytes(b)) => finalizers.push(json!(string(b)?)),
            _ => {}
        }
    }
    if !labels.is_empty() {
        metadata.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        metadata.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        metadata.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(metadata))
}

/// Decodes an enveloped Namespace into its JSON form.
fn namespace(raw: &[u8]) -> Result<Value, ApiError> {
    let mut object = json!({"apiVersion": "v1", "kind": "Namespace"});
    for (number, field) in fields(raw)? {
        match (number, field) {
            (1, Field::Bytes(b)) => object["metadata"] = object_meta(b)?,
            (2, Field::Bytes(b)) => {
                let mut finalizers = Vec::new();
                for (number, field) in fields(b)? {
                    if let (1, Field::Bytes(f)) = (number, field) {
                        finalizers.push(json!(string(f)?));
                    }
                }
                object["spec"] = json!({"finalizers": finalizers});
            }
            _ => {}
        }
    }
    Ok(object)
}

/// Decodes a protobuf request body for `kind` (a built-in kind) into JSON bytes.
pub fn decode(kind: &str, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let payload = body.strip_prefix(MAGIC).ok_or_else(|| {
        ApiError::bad_request(
            "the protobuf request body does not start with the Kubernetes envelope",
        )
    })?;
    let mut type_kind = String::new();
    let mut raw: &[u8] = &[];
    for (number, field) in fields(payload)? {
        match (number, field) {
            (1, Field::Bytes(type_meta)) => {
                for (number, field) in fields(type_meta)? {
                    if let (2, Field::Bytes(k)) = (number, field) {
                        type_kind = string(k)?;
                    }
                }
            }
            (2, Field::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    if !type_kind.is_empty() && type_kind != kind {
        return Err(ApiError::bad_request(format!(
            "the protobuf body holds a {type_kind}, not a {kind}"
        )));
    }
    let object = match kind {
        "Namespace" => namespace(raw)?,
        _ => {
            return Err(ApiError::unsupported_media_type(
                MEDIA_TYPE,
                super::negotiate::BODY_TYPES,
            ));
        }
    };
    Ok(serde_json::to_vec(&object).expect("JSON values serialize"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3 | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn decodes_the_namespace_kubectl_create_namespace_sends() {
        let mut label = field(1, b"team");
        label.extend(field(2, b"infra"));
        let mut meta = field(1, b"team-a");
        meta.extend(field(11, &label));
        let raw = field(1, &meta);
        let mut type_meta = field(1, b"v1");
        type_meta.extend(field(2, b"Namespace"));
        let mut body = MAGIC.to_vec();
        body.extend(field(1, &type_meta));
        body.extend(field(2, &raw));
        body.extend(field(3, b""));
        body.extend(field(4, b""));
        let json: Value = serde_json::from_slice(&decode("Namespace", &body).unwrap()).unwrap();
        assert_eq!(json["metadata"]["name"], "team-a");
        assert_eq!(json["metadata"]["labels"]["team"], "infra");
        assert_eq!(json["kind"], "Namespace");
    }

    #[test]
    fn garbage_is_a_bad_request_not_a_panic() {
        for body in [&b""[..], b"k8s", b"k8s\0\xff\xff\xff", b"k8s\0\x12\x7f"] {
            assert!(decode("Namespace", body).is_err());
        }
    }
}
