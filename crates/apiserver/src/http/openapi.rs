//! OpenAPI v3 documents, one per group/version, generated from the registry, and the cache
//! that serializes every document (v3 and v2, `openapi_v2.rs`) once per catalog snapshot.
//!
//! kubectl needs them: `create`/`apply`/`edit` look for a `fieldValidation` parameter on the
//! kind's PATCH operation (found: they send `fieldValidation=Strict` and let the server
//! validate), and `explain` reads `components.schemas` entries tagged with
//! `x-kubernetes-group-version-kind`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use serde_json::{Value, json};

use super::openapi_v2;
use crate::api::{Resource, Snapshot};

/// Every OpenAPI document of one catalog snapshot, serialized.
pub struct Documents {
    /// `/openapi/v3`.
    pub v3_index: Vec<u8>,
    /// `/openapi/v3/<path key>` by path key (`api/v1`, `apis/G/V`).
    pub v3: HashMap<String, Vec<u8>>,
    /// `/openapi/v2` in JSON and as gnostic protobuf.
    pub v2_json: Vec<u8>,
    pub v2_protobuf: Vec<u8>,
    /// The v2 document's entity tag (quoted), for `If-None-Match`.
    pub v2_etag: String,
}

impl Documents {
    fn build(snapshot: &Snapshot) -> Self {
        let mut v3 = HashMap::new();
        let mut paths = serde_json::Map::new();
        for (group, versions) in snapshot.groups() {
            for version in versions {
                let document = document(snapshot, group, version);
                let key = path_key(group, version);
                paths.insert(
                    key.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", content_hash(&document))}),
                );
                v3.insert(key, document.to_string().into_bytes());
            }
        }
        let v2 = openapi_v2::document(snapshot);
        Self {
            v3_index: json!({"paths": paths}).to_string().into_bytes(),
            v3,
            v2_protobuf: openapi_v2::protobuf(&v2),
            v2_etag: format!("\"{}\"", content_hash(&v2)),
            v2_json: v2.to_string().into_bytes(),
        }
    }
}

/// The documents of the latest snapshot asked for: rebuilt when the catalog's snapshot is
/// replaced (a CRD changed), served from memory otherwise.
#[derive(Default)]
pub struct Cache {
    current: Mutex<Option<(Weak<Snapshot>, Arc<Documents>)>>,
}

impl Cache {
    pub fn documents(&self, snapshot: &Arc<Snapshot>) -> Arc<Documents> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((of, documents)) = current.as_ref()
            && of.upgrade().is_some_and(|of| Arc::ptr_eq(&of, snapshot))
        {
            return documents.clone();
        }
        let documents = Arc::new(Documents::build(snapshot));
        *current = Some((Arc::downgrade(snapshot), documents.clone()));
        documents
    }
}

/// The path key of a group/version in the index (`api/v1`, `apis/G/V`).
pub fn path_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A stable content hash (FNV-1a), so clients cache documents across restarts.
fn content_hash(document: &Value) -> String {
    let text = document.to_string();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016X}")
}

pub(crate) fn schema_name(resource: &Resource) -> String {
    let reversed: Vec<&str> = resource.group.split('.').rev().collect();
    let group = if resource.group.is_empty() {
        "io.k8s.api.core".to_owned()
    } else {
        reversed.join(".")
    };
    format!("{group}.{}.{}", resource.version, resource.kind)
}

pub(crate) const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

pub(crate) fn object_meta_schema() -> Value {
    let string = |d: &str| json!({"type": "string", "description": d});
    let map = |d: &str| json!({"type": "object", "additionalProperties": {"type": "string"}, "description": d});
    json!({
        "type": "object",
        "description": "Standard object metadata.",
        "properties": {
            "name": string("Name must be unique within a namespace."),
            "generateName": string("Prefix the server uses to generate a unique name when none is given."),
            "namespace": string("Namespace of the object, for namespaced kinds."),
            "uid": string("Unique identifier set by the server."),
            "resourceVersion": string("Opaque version of the object, for optimistic concurrency and watches."),
            "generation": {"type": "integer", "format": "int64", "description": "Sequence number of spec changes."},
            "creationTimestamp": string("When the object was created (RFC 3339)."),
            "deletionTimestamp": string("When deletion was requested, while finalizers run."),
            "labels": map("Key-value pairs for selecting and grouping objects."),
            "annotations": map("Key-value pairs for arbitrary non-identifying metadata."),
            "finalizers": {"type": "array", "items": {"type": "string"}, "description": "Must be empty before the object is deleted."},
            "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
        },
    })
}

/// The schema of a kind: its CRD schema (or an open object) plus apiVersion/kind/metadata.
pub(crate) fn kind_schema(resource: &Resource) -> Value {
    let mut schema = resource
        .schema_document
        .clone()
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    if let Some(object) = schema.as_object_mut() {
        let properties = object.entry("properties").or_insert_with(|| json!({}));
        if let Some(properties) = properties.as_object_mut() {
            properties.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
            properties.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
            properties.insert(
                "metadata".into(),
                json!({"$ref": format!("#/components/schemas/{OBJECT_META}")}),
            );
        }
        object.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([{"group": resource.group, "version": resource.version, "kind": resource.kind}]),
        );
    }
    schema
}

fn parameter(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string"}, "uniqueItems": true})
}

fn write_parameters() -> Vec<Value> {
    vec![
        parameter(
            "dryRun",
            "When present, modifications are not persisted. Valid value: All.",
        ),
        parameter("fieldManager", "Name of the actor making the change."),
        parameter(
            "fieldValidation",
            "How to treat unknown or duplicate fields: Ignore, Warn or Strict.",
        ),
    ]
}

fn operation(resource: &Resource, verb: &str, action: &str, schema_ref: &Value) -> Value {
    let gvk = json!({"group": resource.group, "version": resource.version, "kind": resource.kind});
    let mut parameters = Vec::new();
    if matches!(verb, "post" | "put" | "patch") {
        parameters = write_parameters();
    }
    if verb == "patch" {
        parameters.push(parameter(
            "force",
            "Force an apply request to take ownership of conflicting fields.",
        ));
    }
    let mut op = json!({
        "operationId": format!("{verb}{}", resource.kind),
        "description": format!("{action} {}", resource.kind),
        "parameters": parameters,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    });
    if matches!(verb, "post" | "put") {
        op["requestBody"] = json!({"content": {"application/json": {"schema": schema_ref}}});
    }
    if verb == "patch" {
        op["requestBody"] = json!({"content": {
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
        }});
    }
    op
}

/// `GET /openapi/v3/apis/G/V` (or `api/v1`).
pub fn document(snapshot: &Snapshot, group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    schemas.insert(OBJECT_META.into(), object_meta_schema());
    let prefix = format!("/{}", path_key(group, version));
    for resource in snapshot.resources(group, version) {
        let name = schema_name(&resource);
        let schema_ref = json!({"$ref": format!("#/components/schemas/{name}")});
        schemas.insert(name, kind_schema(&resource));
        let scope = if resource.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", resource.plural)
        } else {
            format!("{prefix}/{}", resource.plural)
        };
        paths.insert(
            scope.clone(),
            json!({
                "get": operation(&resource, "get", "list", &schema_ref),
                "post": operation(&resource, "post", "post", &schema_ref),
            }),
        );
        paths.insert(
            format!("{scope}/{{name}}"),
            json!({
                "get": operation(&resource, "get", "get", &schema_ref),
                "put": operation(&resource, "put", "put", &schema_ref),
                "patch": operation(&resource, "patch", "patch", &schema_ref),
                "delete": operation(&resource, "delete", "delete", &schema_ref),
            }),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "fleetdb", "version": crate::VERSION_GIT},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}
