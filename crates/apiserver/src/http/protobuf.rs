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
    /// A varint (integers and booleans).
    Varint(u64),
    /// A fixed32 or fixed64: no field we decode has one, so only its size matters.
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
            0 => Field::Varint(self.varint()?),
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

/// A message: each field's number, JSON name and shape.
type Fields = &'static [(u64, &'static str, Shape)];

/// How one field of a message is read.
enum Shape {
    Text,
    Texts,
    /// `map<string, string>`.
    TextMap,
    /// `map<string, ExtraValue>` where `ExtraValue { repeated string items = 1 }`.
    TextsMap,
    /// `bytes`, base64 in JSON.
    Bytes,
    /// `map<string, bytes>`, values base64 in JSON.
    BytesMap,
    /// A varint integer (`int32`, `int64`).
    Int,
    Bool,
    /// `meta/v1.Time { int64 seconds = 1; int32 nanos = 2 }`, RFC 3339 in JSON.
    Time,
    Message(Fields),
    Messages(Fields),
    Metadata,
}

/// `rbac/v1.PolicyRule`.
const POLICY_RULE: Fields = &[
    (1, "verbs", Shape::Texts),
    (2, "apiGroups", Shape::Texts),
    (3, "resources", Shape::Texts),
    (4, "resourceNames", Shape::Texts),
    (5, "nonResourceURLs", Shape::Texts),
];
/// `meta/v1.LabelSelectorRequirement`.
const SELECTOR_REQUIREMENT: Fields = &[
    (1, "key", Shape::Text),
    (2, "operator", Shape::Text),
    (3, "values", Shape::Texts),
];
/// `meta/v1.LabelSelector`.
const LABEL_SELECTOR: Fields = &[
    (1, "matchLabels", Shape::TextMap),
    (2, "matchExpressions", Shape::Messages(SELECTOR_REQUIREMENT)),
];
const AGGREGATION_RULE: Fields = &[(1, "clusterRoleSelectors", Shape::Messages(LABEL_SELECTOR))];
const ROLE: Fields = &[
    (1, "metadata", Shape::Metadata),
    (2, "rules", Shape::Messages(POLICY_RULE)),
    (3, "aggregationRule", Shape::Message(AGGREGATION_RULE)),
];
const SUBJECT: Fields = &[
    (1, "kind", Shape::Text),
    (2, "apiGroup", Shape::Text),
    (3, "name", Shape::Text),
    (4, "namespace", Shape::Text),
];
const ROLE_REF: Fields = &[
    (1, "apiGroup", Shape::Text),
    (2, "kind", Shape::Text),
    (3, "name", Shape::Text),
];
const BINDING: Fields = &[
    (1, "metadata", Shape::Metadata),
    (2, "subjects", Shape::Messages(SUBJECT)),
    (3, "roleRef", Shape::Message(ROLE_REF)),
];
const RESOURCE_ATTRIBUTES: Fields = &[
    (1, "namespace", Shape::Text),
    (2, "verb", Shape::Text),
    (3, "group", Shape::Text),
    (4, "version", Shape::Text),
    (5, "resource", Shape::Text),
    (6, "subresource", Shape::Text),
    (7, "name", Shape::Text),
];
const NON_RESOURCE_ATTRIBUTES: Fields = &[(1, "path", Shape::Text), (2, "verb", Shape::Text)];
const SUBJECT_ACCESS_REVIEW_SPEC: Fields = &[
    (1, "resourceAttributes", Shape::Message(RESOURCE_ATTRIBUTES)),
    (
        2,
        "nonResourceAttributes",
        Shape::Message(NON_RESOURCE_ATTRIBUTES),
    ),
    (3, "user", Shape::Text),
    (4, "groups", Shape::Texts),
    (5, "extra", Shape::TextsMap),
    (6, "uid", Shape::Text),
];
const SUBJECT_ACCESS_REVIEW: Fields = &[
    (1, "metadata", Shape::Metadata),
    (2, "spec", Shape::Message(SUBJECT_ACCESS_REVIEW_SPEC)),
];
const SELF_SUBJECT_ACCESS_REVIEW: Fields = &[
    (1, "metadata", Shape::Metadata),
    (
        2,
        "spec",
        Shape::Message(&[
            (1, "resourceAttributes", Shape::Message(RESOURCE_ATTRIBUTES)),
            (
                2,
                "nonResourceAttributes",
                Shape::Message(NON_RESOURCE_ATTRIBUTES),
            ),
        ]),
    ),
];
const SELF_SUBJECT_RULES_REVIEW: Fields = &[
    (1, "metadata", Shape::Metadata),
    (2, "spec", Shape::Message(&[(1, "namespace", Shape::Text)])),
];
const SELF_SUBJECT_REVIEW: Fields = &[(1, "metadata", Shape::Metadata)];
/// `core/v1.Secret`.
const SECRET: Fields = &[
    (1, "metadata", Shape::Metadata),
    (2, "data", Shape::BytesMap),
    (3, "type", Shape::Text),
    (4, "stringData", Shape::TextMap),
    (5, "immutable", Shape::Bool),
];
/// `core/v1.ConfigMap`.
const CONFIG_MAP: Fields = &[
    (1, "metadata", Shape::Metadata),
    (2, "data", Shape::TextMap),
    (3, "binaryData", Shape::BytesMap),
    (4, "immutable", Shape::Bool),
];
const CSR_CONDITION: Fields = &[
    (1, "type", Shape::Text),
    (2, "reason", Shape::Text),
    (3, "message", Shape::Text),
    (4, "lastUpdateTime", Shape::Time),
    (5, "lastTransitionTime", Shape::Time),
    (6, "status", Shape::Text),
];
/// `certificates/v1.CertificateSigningRequest`.
const CERTIFICATE_SIGNING_REQUEST: Fields = &[
    (1, "metadata", Shape::Metadata),
    (
        2,
        "spec",
        Shape::Message(&[
            (1, "request", Shape::Bytes),
            (2, "username", Shape::Text),
            (3, "uid", Shape::Text),
            (4, "groups", Shape::Texts),
            (5, "usages", Shape::Texts),
            (6, "extra", Shape::TextsMap),
            (7, "signerName", Shape::Text),
            (8, "expirationSeconds", Shape::Int),
        ]),
    ),
    (
        3,
        "status",
        Shape::Message(&[
            (1, "conditions", Shape::Messages(CSR_CONDITION)),
            (2, "certificate", Shape::Bytes),
        ]),
    ),
];

fn base64(bytes: &[u8]) -> Value {
    use base64::Engine;
    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A `meta/v1.Time` as RFC 3339 (seconds precision, as Kubernetes writes it).
fn time(bytes: &[u8]) -> Result<Value, ApiError> {
    let mut seconds = 0i64;
    for (number, field) in fields(bytes)? {
        if let (1, Field::Varint(v)) = (number, field) {
            seconds = v as i64;
        }
    }
    let at = time::OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| malformed())?;
    Ok(json!(
        at.format(&time::format_description::well_known::Rfc3339)
            .map_err(|_| malformed())?
    ))
}

/// Most nested messages read (the deepest message above is five levels down).
const MAX_MESSAGE_DEPTH: usize = 8;

/// Reads a message of the given shape into a JSON object.
fn message(bytes: &[u8], shape: Fields, depth: usize) -> Result<Map<String, Value>, ApiError> {
    if depth > MAX_MESSAGE_DEPTH {
        return Err(malformed());
    }
    let mut object = Map::new();
    let push = |object: &mut Map<String, Value>, name: &str, value: Value| {
        let entry = object.entry(name).or_insert_with(|| json!([]));
        if let Some(items) = entry.as_array_mut() {
            items.push(value);
        }
    };
    for (number, field) in fields(bytes)? {
        let Some((_, name, kind)) = shape.iter().find(|(n, _, _)| *n == number) else {
            continue;
        };
        let b = match (field, kind) {
            (Field::Varint(v), Shape::Int) => {
                object.insert((*name).into(), json!(v as i64));
                continue;
            }
            (Field::Varint(v), Shape::Bool) => {
                object.insert((*name).into(), json!(v != 0));
                continue;
            }
            (Field::Bytes(b), _) => b,
            _ => continue,
        };
        match kind {
            Shape::Int | Shape::Bool => {}
            Shape::Bytes => {
                object.insert((*name).into(), base64(b));
            }
            Shape::BytesMap => {
                let (mut key, mut value) = (String::new(), Value::String(String::new()));
                for (number, field) in fields(b)? {
                    match (number, field) {
                        (1, Field::Bytes(k)) => key = string(k)?,
                        (2, Field::Bytes(v)) => value = base64(v),
                        _ => {}
                    }
                }
                let entry = object.entry(*name).or_insert_with(|| json!({}));
                entry[key] = value;
            }
            Shape::Time => {
                object.insert((*name).into(), time(b)?);
            }
            Shape::Text => {
                object.insert((*name).into(), json!(string(b)?));
            }
            Shape::Texts => push(&mut object, name, json!(string(b)?)),
            Shape::TextMap => {
                let (k, v) = map_entry(b)?;
                let entry = object.entry(*name).or_insert_with(|| json!({}));
                entry[k] = json!(v);
            }
            Shape::TextsMap => {
                let (mut key, mut items) = (String::new(), Vec::new());
                for (number, field) in fields(b)? {
                    match (number, field) {
                        (1, Field::Bytes(k)) => key = string(k)?,
                        (2, Field::Bytes(v)) => {
                            for (number, field) in fields(v)? {
                                if let (1, Field::Bytes(item)) = (number, field) {
                                    items.push(json!(string(item)?));
                                }
                            }
                        }
                        _ => {}
                    }
                }
                let entry = object.entry(*name).or_insert_with(|| json!({}));
                entry[key] = Value::Array(items);
            }
            Shape::Message(inner) => {
                object.insert((*name).into(), Value::Object(message(b, inner, depth + 1)?));
            }
            Shape::Messages(inner) => push(
                &mut object,
                name,
                Value::Object(message(b, inner, depth + 1)?),
            ),
            Shape::Metadata => {
                object.insert((*name).into(), object_meta(b)?);
            }
        }
    }
    Ok(object)
}

/// The message shape and apiVersion of a built-in kind sent as protobuf.
fn shape_of(kind: &str) -> Option<(Fields, &'static str)> {
    Some(match kind {
        "Role" | "ClusterRole" => (ROLE, "rbac.authorization.k8s.io/v1"),
        "RoleBinding" | "ClusterRoleBinding" => (BINDING, "rbac.authorization.k8s.io/v1"),
        "SelfSubjectAccessReview" => (SELF_SUBJECT_ACCESS_REVIEW, "authorization.k8s.io/v1"),
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            (SUBJECT_ACCESS_REVIEW, "authorization.k8s.io/v1")
        }
        "SelfSubjectRulesReview" => (SELF_SUBJECT_RULES_REVIEW, "authorization.k8s.io/v1"),
        "SelfSubjectReview" => (SELF_SUBJECT_REVIEW, "authentication.k8s.io/v1"),
        "Secret" => (SECRET, "v1"),
        "ConfigMap" => (CONFIG_MAP, "v1"),
        "CertificateSigningRequest" => (CERTIFICATE_SIGNING_REQUEST, "certificates.k8s.io/v1"),
        _ => return None,
    })
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
    let object = match (kind, shape_of(kind)) {
        ("Namespace", _) => namespace(raw)?,
        (_, Some((shape, api_version))) => {
            let mut object = message(raw, shape, 0)?;
            object.insert("apiVersion".into(), json!(api_version));
            object.insert("kind".into(), json!(kind));
            Value::Object(object)
        }
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

    fn envelope(kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut type_meta = field(1, b"rbac.authorization.k8s.io/v1");
        type_meta.extend(field(2, kind.as_bytes()));
        let mut body = MAGIC.to_vec();
        body.extend(field(1, &type_meta));
        body.extend(field(2, raw));
        body
    }

    #[test]
    fn decodes_the_binding_kubectl_create_clusterrolebinding_sends() {
        let meta = field(1, b"readers-view");
        let mut subject = field(1, b"Group");
        subject.extend(field(2, b"rbac.authorization.k8s.io"));
        subject.extend(field(3, b"readers"));
        let mut role_ref = field(1, b"rbac.authorization.k8s.io");
        role_ref.extend(field(2, b"ClusterRole"));
        role_ref.extend(field(3, b"view"));
        let mut raw = field(1, &meta);
        raw.extend(field(2, &subject));
        raw.extend(field(3, &role_ref));
        let json: Value = serde_json::from_slice(
            &decode("ClusterRoleBinding", &envelope("ClusterRoleBinding", &raw)).unwrap(),
        )
        .unwrap();
        assert_eq!(
            json,
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "readers-view"},
                "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "readers"}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            })
        );
        let mut rule = field(1, b"get");
        rule.extend(field(1, b"list"));
        rule.extend(field(2, b""));
        rule.extend(field(3, b"namespaces"));
        let mut raw = field(1, &field(1, b"reader"));
        raw.extend(field(2, &rule));
        let json: Value =
            serde_json::from_slice(&decode("ClusterRole", &envelope("ClusterRole", &raw)).unwrap())
                .unwrap();
        assert_eq!(
            json["rules"],
            json!([{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["namespaces"]}])
        );
    }

    #[test]
    fn garbage_is_a_bad_request_not_a_panic() {
        for body in [&b""[..], b"k8s", b"k8s\0\xff\xff\xff", b"k8s\0\x12\x7f"] {
            assert!(decode("Namespace", body).is_err());
        }
    }
}
