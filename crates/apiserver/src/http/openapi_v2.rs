//! The OpenAPI v2 (Swagger 2.0) document at `/openapi/v2`, in JSON and in the protobuf form
//! kubectl asks for.
//!
//! kubectl 1.33 still reads v2 in two places: client-side validation of what the server
//! cannot validate itself (a `kind: List` file, a kind the server does not serve yet: the
//! instance beside its CRD in one file), and the fallback of its `fieldValidation` check.
//! It asks for `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` only, and decodes
//! the answer as gnostic's `openapi.v2.Document`.
//!
//! The document is derived from the v3 documents' schemas, converted the way kube-apiserver
//! publishes CRD schemas in v2: the junctors (`allOf`, `anyOf`, `oneOf`, `not`) go, a nullable
//! node loses its type and children, a node preserving unknown fields loses its children
//! (kubectl would otherwise reject the unknown ones), an array without items loses its type,
//! and properties lose their titles.
//!
//! The protobuf encoder below writes only the messages the document uses; field numbers are
//! gnostic's `OpenAPIv2.proto`. Vendor extensions, defaults, enums and examples are `Any`
//! messages carrying their value as YAML text (JSON is YAML), as gnostic does.

use serde_json::{Map, Value, json};

use super::openapi::{OBJECT_META, kind_schema, object_meta_schema, path_key, schema_name};
use crate::api::{Resource, Snapshot};

/// The media type kubectl asks `/openapi/v2` for.
pub const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The spelling of the same media type that Go's MIME parser reads (`@` is not a token
/// character): clients may ask for it, and it is what the answer's `Content-Type` says, as
/// kube-apiserver's does.
pub const PROTOBUF_LEGACY: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// A v3 schema as v2 publishes it (see the module documentation).
pub fn schema_v2(schema: &Value) -> Value {
    let Some(object) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in object {
        match key.as_str() {
            "allOf" | "anyOf" | "oneOf" | "not" | "nullable" => {}
            "$ref" => {
                let name = value.as_str().unwrap_or_default();
                let name = name.strip_prefix("#/components/schemas/").unwrap_or(name);
                out.insert(key.clone(), json!(format!("#/definitions/{name}")));
            }
            "properties" => {
                let properties = value.as_object().map(|properties| {
                    properties
                        .iter()
                        .map(|(name, property)| {
                            let mut property = schema_v2(property);
                            if let Some(property) = property.as_object_mut() {
                                property.remove("title");
                            }
                            (name.clone(), property)
                        })
                        .collect::<Map<_, _>>()
                });
                out.insert(key.clone(), properties.map_or(Value::Null, Value::Object));
            }
            "items" | "additionalProperties" if value.is_object() => {
                out.insert(key.clone(), schema_v2(value));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if object.get("nullable") == Some(&Value::Bool(true)) {
        for key in ["type", "items", "properties"] {
            out.remove(key);
        }
    }
    if object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        out.remove("items");
        out.remove("properties");
    }
    if out.get("type").and_then(Value::as_str) == Some("array") && !out.contains_key("items") {
        out.remove("type");
    }
    Value::Object(out)
}

fn query_parameter(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "type": "string", "uniqueItems": true})
}

fn path_parameter(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "type": "string", "uniqueItems": true})
}

fn body_parameter(schema: Value) -> Value {
    json!({"name": "body", "in": "body", "required": true, "schema": schema})
}

fn operation(resource: &Resource, verb: &str, action: &str, reference: &Value) -> Value {
    let mut parameters = Vec::new();
    match verb {
        "post" | "put" => parameters.push(body_parameter(reference.clone())),
        "patch" => parameters.push(body_parameter(json!({"type": "object"}))),
        _ => {}
    }
    if matches!(verb, "post" | "put" | "patch") {
        parameters.extend([
            query_parameter(
                "dryRun",
                "When present, modifications are not persisted. Valid value: All.",
            ),
            query_parameter("fieldManager", "Name of the actor making the change."),
            query_parameter(
                "fieldValidation",
                "How to treat unknown or duplicate fields: Ignore, Warn or Strict.",
            ),
        ]);
    }
    if verb == "patch" {
        parameters.push(query_parameter(
            "force",
            "Force an apply request to take ownership of conflicting fields.",
        ));
    }
    let consumes = if verb == "patch" {
        json!([
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml"
        ])
    } else {
        json!(["*/*"])
    };
    json!({
        "operationId": format!("{verb}{}", resource.kind),
        "description": format!("{action} {}", resource.kind),
        "consumes": consumes,
        "produces": ["application/json", "application/yaml"],
        "schemes": ["https"],
        "parameters": parameters,
        "responses": {
            "200": {"description": "OK", "schema": reference},
            "401": {"description": "Unauthorized"},
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": resource.group, "version": resource.version, "kind": resource.kind},
    })
}

/// `GET /openapi/v2` as JSON: every served kind's paths and schema.
pub fn document(snapshot: &Snapshot) -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    definitions.insert(OBJECT_META.into(), schema_v2(&object_meta_schema()));
    for (group, versions) in snapshot.groups() {
        for version in versions {
            let prefix = format!("/{}", path_key(group, version));
            for resource in snapshot.resources(group, version) {
                let name = schema_name(&resource);
                let reference = json!({"$ref": format!("#/definitions/{name}")});
                definitions.insert(name, schema_v2(&kind_schema(&resource)));
                let (collection, mut scope_parameters) = if resource.namespaced {
                    (
                        format!("{prefix}/namespaces/{{namespace}}/{}", resource.plural),
                        vec![path_parameter("namespace", "object name and auth scope")],
                    )
                } else {
                    (format!("{prefix}/{}", resource.plural), Vec::new())
                };
                paths.insert(
                    collection.clone(),
                    json!({
                        "get": operation(&resource, "get", "list", &reference),
                        "post": operation(&resource, "post", "post", &reference),
                        "parameters": scope_parameters,
                    }),
                );
                scope_parameters.push(path_parameter(
                    "name",
                    &format!("name of the {}", resource.kind),
                ));
                paths.insert(
                    format!("{collection}/{{name}}"),
                    json!({
                        "get": operation(&resource, "get", "get", &reference),
                        "put": operation(&resource, "put", "put", &reference),
                        "patch": operation(&resource, "patch", "patch", &reference),
                        "delete": operation(&resource, "delete", "delete", &reference),
                        "parameters": scope_parameters,
                    }),
                );
            }
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "fleetdb", "version": crate::VERSION_GIT},
        "paths": paths,
        "definitions": definitions,
    })
}

/// Protobuf wire format, written into one buffer (nested messages are encoded apart and
/// appended with their length).
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, 2);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    fn message(&mut self, field: u32, build: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        build(&mut inner);
        self.bytes(field, &inner.0);
    }

    /// A string field (proto3 leaves empty strings out).
    fn string(&mut self, field: u32, value: Option<&Value>) {
        if let Some(text) = value.and_then(Value::as_str).filter(|s| !s.is_empty()) {
            self.bytes(field, text.as_bytes());
        }
    }

    /// A repeated string field from a JSON array of strings (or one string).
    fn strings(&mut self, field: u32, value: Option<&Value>) {
        match value {
            Some(Value::Array(items)) => items.iter().for_each(|i| self.string(field, Some(i))),
            Some(single @ Value::String(_)) => self.string(field, Some(single)),
            _ => {}
        }
    }

    fn boolean(&mut self, field: u32, value: Option<&Value>) {
        if value.and_then(Value::as_bool) == Some(true) {
            self.key(field, 0);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u32, value: Option<&Value>) {
        if let Some(number) = value.and_then(Value::as_i64).filter(|n| *n != 0) {
            self.key(field, 0);
            self.varint(number as u64);
        }
    }

    fn double(&mut self, field: u32, value: Option<&Value>) {
        if let Some(number) = value.and_then(Value::as_f64) {
            self.key(field, 1);
            self.0.extend_from_slice(&number.to_le_bytes());
        }
    }

    /// gnostic's `Any`: the value as YAML text.
    fn any(&mut self, field: u32, value: &Value) {
        self.message(field, |w| w.bytes(2, value.to_string().as_bytes()));
    }

    /// Every `x-` key of `object` as a `NamedAny`.
    fn extensions(&mut self, field: u32, object: &Map<String, Value>) {
        for (name, value) in object.iter().filter(|(k, _)| k.starts_with("x-")) {
            self.message(field, |w| {
                w.bytes(1, name.as_bytes());
                w.any(2, value);
            });
        }
    }

    /// A map of names to messages (`NamedSchema`, `NamedPathItem`, ...): each entry a
    /// `{1: name, 2: value}` message in field `field`.
    fn named(
        &mut self,
        field: u32,
        map: Option<&Value>,
        mut value: impl FnMut(&mut Writer, &Value),
    ) {
        for (name, item) in map.and_then(Value::as_object).into_iter().flatten() {
            self.message(field, |w| {
                w.bytes(1, name.as_bytes());
                w.message(2, |w| value(w, item));
            });
        }
    }
}

fn object(value: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    value
        .as_object()
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

/// `openapi.v2.Schema`.
fn schema(w: &mut Writer, value: &Value) {
    let s = object(value);
    w.string(1, s.get("$ref"));
    w.string(2, s.get("format"));
    w.string(3, s.get("title"));
    w.string(4, s.get("description"));
    if let Some(default) = s.get("default") {
        w.any(5, default);
    }
    w.double(6, s.get("multipleOf"));
    w.double(7, s.get("maximum"));
    w.boolean(8, s.get("exclusiveMaximum"));
    w.double(9, s.get("minimum"));
    w.boolean(10, s.get("exclusiveMinimum"));
    w.int64(11, s.get("maxLength"));
    w.int64(12, s.get("minLength"));
    w.string(13, s.get("pattern"));
    w.int64(14, s.get("maxItems"));
    w.int64(15, s.get("minItems"));
    w.boolean(16, s.get("uniqueItems"));
    w.int64(17, s.get("maxProperties"));
    w.int64(18, s.get("minProperties"));
    w.strings(19, s.get("required"));
    for item in s
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.any(20, item);
    }
    match s.get("additionalProperties") {
        Some(Value::Bool(allowed)) => w.message(21, |w| {
            w.key(2, 0);
            w.varint(u64::from(*allowed));
        }),
        Some(inner @ Value::Object(_)) => w.message(21, |w| w.message(1, |w| schema(w, inner))),
        _ => {}
    }
    if s.contains_key("type") {
        w.message(22, |w| w.strings(1, s.get("type")));
    }
    match s.get("items") {
        Some(Value::Array(items)) => w.message(23, |w| {
            items.iter().for_each(|i| w.message(1, |w| schema(w, i)))
        }),
        Some(inner @ Value::Object(_)) => w.message(23, |w| w.message(1, |w| schema(w, inner))),
        _ => {}
    }
    if s.get("properties").is_some_and(Value::is_object) {
        w.message(25, |w| w.named(1, s.get("properties"), schema));
    }
    w.boolean(27, s.get("readOnly"));
    if let Some(example) = s.get("example") {
        w.any(30, example);
    }
    w.extensions(31, s);
}

/// `openapi.v2.ParametersItem`: a body parameter or a non-body one by where it goes.
fn parameter(w: &mut Writer, value: &Value) {
    let p = object(value);
    w.message(1, |w| {
        if p.get("in").and_then(Value::as_str) == Some("body") {
            w.message(1, |w| {
                w.string(1, p.get("description"));
                w.string(2, p.get("name"));
                w.string(3, p.get("in"));
                w.boolean(4, p.get("required"));
                if let Some(inner) = p.get("schema") {
                    w.message(5, |w| schema(w, inner));
                }
            });
            return;
        }
        // NonBodyParameter's oneof: header 1, formData 2, query 3, path 4. The sub-schemas
        // share their first fields; `type`, `format` and `uniqueItems` sit one further in
        // query and formData, which have `allow_empty_value` at 5.
        let (which, shifted) = match p.get("in").and_then(Value::as_str) {
            Some("header") => (1, false),
            Some("formData") => (2, true),
            Some("path") => (4, false),
            _ => (3, true),
        };
        w.message(2, |w| {
            w.message(which, |w| {
                w.boolean(1, p.get("required"));
                w.string(2, p.get("in"));
                w.string(3, p.get("description"));
                w.string(4, p.get("name"));
                let at = if shifted { 6 } else { 5 };
                w.string(at, p.get("type"));
                w.string(at + 1, p.get("format"));
                w.boolean(at + 14, p.get("uniqueItems"));
            });
        });
    });
}

/// `openapi.v2.Operation`.
fn operation_message(w: &mut Writer, value: &Value) {
    let op = object(value);
    w.strings(1, op.get("tags"));
    w.string(3, op.get("description"));
    w.string(5, op.get("operationId"));
    w.strings(6, op.get("produces"));
    w.strings(7, op.get("consumes"));
    for item in op
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(8, |w| parameter(w, item));
    }
    if op.get("responses").is_some() {
        w.message(9, |w| {
            w.named(1, op.get("responses"), |w, response| {
                // ResponseValue { 1: Response { 1: description, 2: SchemaItem { 1: Schema } } }
                w.message(1, |w| {
                    w.string(1, response.get("description"));
                    if let Some(inner) = response.get("schema") {
                        w.message(2, |w| w.message(1, |w| schema(w, inner)));
                    }
                });
            });
        });
    }
    w.strings(10, op.get("schemes"));
    w.extensions(13, op);
}

/// `openapi.v2.PathItem`.
fn path_item(w: &mut Writer, value: &Value) {
    let item = object(value);
    for (field, verb) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (8, "patch"),
    ] {
        if let Some(op) = item.get(verb) {
            w.message(field, |w| operation_message(w, op));
        }
    }
    for p in item
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(9, |w| parameter(w, p));
    }
    w.extensions(10, item);
}

/// The document of [`document`] as gnostic's `openapi.v2.Document`.
pub fn protobuf(document: &Value) -> Vec<u8> {
    let d = object(document);
    let mut w = Writer::default();
    w.string(1, d.get("swagger"));
    if let Some(info) = d.get("info") {
        w.message(2, |w| {
            w.string(1, info.get("title"));
            w.string(2, info.get("version"));
            w.string(3, info.get("description"));
        });
    }
    w.strings(5, d.get("schemes"));
    w.strings(6, d.get("consumes"));
    w.strings(7, d.get("produces"));
    w.message(8, |w| w.named(2, d.get("paths"), path_item));
    w.message(9, |w| w.named(1, d.get("definitions"), schema));
    w.extensions(16, d);
    w.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_lose_what_v2_cannot_say() {
        let v3 = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "title": "Spec",
                    "properties": {
                        "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                        "note": {"type": "string", "nullable": true},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"a": {"type": "string"}}},
                        "list": {"type": "array", "x-kubernetes-preserve-unknown-fields": true, "items": {"type": "string"}},
                    },
                },
                "metadata": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
            },
        });
        let v2 = schema_v2(&v3);
        let spec = &v2["properties"]["spec"];
        assert!(spec.get("title").is_none());
        assert_eq!(
            spec["properties"]["port"],
            json!({"x-kubernetes-int-or-string": true})
        );
        assert_eq!(spec["properties"]["note"], json!({}));
        assert_eq!(
            spec["properties"]["extra"],
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
        );
        assert_eq!(
            spec["properties"]["list"],
            json!({"x-kubernetes-preserve-unknown-fields": true})
        );
        assert_eq!(
            v2["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
    }

    /// Reads one level of a protobuf message: (field, wire type, payload or varint bytes).
    fn fields(mut data: &[u8]) -> Vec<(u64, Vec<u8>)> {
        fn varint(data: &mut &[u8]) -> u64 {
            let mut value = 0;
            let mut shift = 0;
            loop {
                let byte = data[0];
                *data = &data[1..];
                value |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    return value;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !data.is_empty() {
            let key = varint(&mut data);
            let payload = match key & 7 {
                0 => varint(&mut data).to_le_bytes().to_vec(),
                1 => {
                    let (head, rest) = data.split_at(8);
                    data = rest;
                    head.to_vec()
                }
                2 => {
                    let len = varint(&mut data) as usize;
                    let (head, rest) = data.split_at(len);
                    data = rest;
                    head.to_vec()
                }
                other => panic!("wire type {other}"),
            };
            out.push((key >> 3, payload));
        }
        out
    }

    fn field(data: &[u8], number: u64) -> Vec<Vec<u8>> {
        fields(data)
            .into_iter()
            .filter(|(n, _)| *n == number)
            .map(|(_, p)| p)
            .collect()
    }

    #[test]
    fn the_protobuf_document_carries_definitions_and_their_kinds() {
        let document = json!({
            "swagger": "2.0",
            "info": {"title": "t", "version": "v"},
            "paths": {"/apis/example.com/v1/widgets/{name}": {"patch": {
                "parameters": [{"name": "fieldValidation", "in": "query", "type": "string"}],
                "x-kubernetes-group-version-kind": {"group": "example.com", "version": "v1", "kind": "Widget"},
            }}},
            "definitions": {"com.example.v1.Widget": {
                "type": "object",
                "required": ["spec"],
                "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer", "minimum": 0, "maxLength": 3}}}},
                "x-kubernetes-group-version-kind": [{"group": "example.com", "version": "v1", "kind": "Widget"}],
            }},
        });
        let bytes = protobuf(&document);
        assert_eq!(field(&bytes, 1), vec![b"2.0".to_vec()]);
        let definitions = &field(&bytes, 9)[0];
        let named = &field(definitions, 1)[0];
        assert_eq!(field(named, 1), vec![b"com.example.v1.Widget".to_vec()]);
        let widget = &field(named, 2)[0];
        assert_eq!(field(widget, 19), vec![b"spec".to_vec()]);
        assert_eq!(field(&field(widget, 22)[0], 1), vec![b"object".to_vec()]);
        let extension = &field(widget, 31)[0];
        assert_eq!(
            field(extension, 1),
            vec![b"x-kubernetes-group-version-kind".to_vec()]
        );
        let yaml = &field(&field(extension, 2)[0], 2)[0];
        let gvk: Value = serde_json::from_slice(yaml).unwrap();
        assert_eq!(gvk[0]["kind"], "Widget");
        // properties → NamedSchema spec → properties → NamedSchema size → minimum (double, 9).
        let spec = &field(&field(&field(widget, 25)[0], 1)[0], 2)[0];
        let size = &field(&field(&field(spec, 25)[0], 1)[0], 2)[0];
        assert_eq!(field(size, 9), vec![0f64.to_le_bytes().to_vec()]);
        assert_eq!(field(size, 11), vec![3u64.to_le_bytes().to_vec()]);
        // paths → NamedPathItem → PathItem.patch → parameters → Parameter → NonBody → query.
        let path = &field(&field(&bytes, 8)[0], 2)[0];
        let patch = &field(&field(path, 2)[0], 8)[0];
        let query = &field(&field(&field(&field(patch, 8)[0], 1)[0], 2)[0], 3)[0];
        assert_eq!(field(query, 4), vec![b"fieldValidation".to_vec()]);
        assert_eq!(field(query, 6), vec![b"string".to_vec()]);
        assert_eq!(field(patch, 13).len(), 1);
    }
}
