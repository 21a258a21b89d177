//! The one generic resource handler: create, get, list, update, patch and delete for every
//! kind. What differs per kind is a small strategy (`strategy.rs`); everything else — names,
//! metadata, resourceVersions, preconditions, finalizers, paging, selectors, Tables — is here.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use fleetdb_store::{
    Condition, KeyValue, MAX_KEY_BYTES, RangeRequest, Revision, Store, StoreError,
};
use serde_json::{Value, json};

use crate::negotiate::{self, Representation};
use crate::objects;
use crate::query::Query;
use crate::registry::{Kind, Resource};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::ApiServer;
use crate::status::{ApiError, Cause};
use crate::strategy;
use crate::table;
use crate::validation;

/// Largest request body accepted (3 MiB, as kube-apiserver).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Keys read from the store per step of a list; also the most objects of the first read of
/// an unpaged list (an answer that fits is one body, a longer one is streamed) and of each
/// further chunk of a streamed one.
pub const LIST_STORE_PAGE: usize = 1000;

/// The largest `limit` a list honours: a larger one gets this many objects and a continue
/// token (Kubernetes lets a server return fewer items than the limit).
pub const MAX_LIST_LIMIT: usize = 10_000;

/// Stored bytes after which a buffered list response, or one chunk of a streamed one, stops
/// taking objects (it always takes one); a paged list then returns a continue token. With
/// [`MAX_LIST_LIMIT`] and [`LIST_STREAM_CHUNKS`] it bounds what one list holds.
pub const LIST_CHUNK_BYTES: usize = 8 << 20;

/// Encoded chunks of a streamed list waiting for the connection; its reader waits beyond.
pub const LIST_STREAM_CHUNKS: usize = 2;

/// How often an update whose precondition lost a race is retried (patches only).
const PATCH_RETRIES: usize = 8;

/// One request against one resource.
pub struct Target {
    pub resource: Arc<Resource>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    fn key(&self) -> String {
        self.resource.key(
            self.namespace.as_deref(),
            self.name.as_deref().unwrap_or_default(),
        )
    }

    /// The scale spec when this request is for the scale subresource.
    fn scale(&self) -> Option<&crate::registry::ScaleSpec> {
        match self.subresource.as_deref() {
            Some("scale") => self.resource.scale.as_ref(),
            _ => None,
        }
    }

    /// The response for a written object: the object, or its Scale for /scale.
    fn written(&self, representation: Representation, object: Value) -> Response {
        match self.scale() {
            Some(scale) => json_response(StatusCode::OK, &crate::scale::scale_of(scale, &object)),
            None => object_response(StatusCode::OK, representation, &self.resource, object),
        }
    }

    fn not_found(&self) -> ApiError {
        let r = &self.resource;
        ApiError::not_found(
            &r.qualified(),
            &r.group,
            &r.plural,
            self.name.as_deref().unwrap_or(""),
        )
    }

    fn modified(&self) -> ApiError {
        let r = &self.resource;
        ApiError::modified(
            &r.qualified(),
            &r.group,
            &r.plural,
            self.name.as_deref().unwrap_or(""),
        )
    }

    fn invalid(&self, name: &str, causes: Vec<Cause>) -> ApiError {
        let r = &self.resource;
        ApiError::invalid(&r.kind_qualified(), &r.group, &r.kind, name, causes)
    }
}

/// Maps a store failure onto the API's errors.
pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::ValueTooLarge { size, limit, .. } => ApiError::too_large(limit.min(size)),
        StoreError::Compacted {
            requested,
            compacted,
        } => ApiError::expired(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        StoreError::FutureRevision { requested, current } => ApiError::bad_request(format!(
            "resource version {requested} is newer than the latest ({current})"
        )),
        StoreError::Unavailable(_) | StoreError::Closed => {
            ApiError::unavailable("the storage backend is unavailable; retry shortly")
        }
        StoreError::InvalidKey { reason, .. } => ApiError::bad_request(reason),
        other => {
            tracing::error!(error = %other, "storage failure");
            ApiError::internal("storage failure; see the server log")
        }
    }
}

pub fn json_response(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// A JSON response from bytes that are already JSON.
fn raw_json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Reads a request body up to [`MAX_BODY_BYTES`].
pub async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::too_large(MAX_BODY_BYTES))
}

/// Reads a create/update body: JSON (also when no Content-Type is sent, as the Python client
/// does), or the protobuf envelope for built-in kinds.
async fn read_object(
    resource: &Resource,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, ApiError> {
    let bytes = read_body(body).await?;
    match negotiate::content_type(headers).as_deref() {
        None | Some("") | Some("application/json") | Some("*/*") => parse_object(&bytes),
        Some("application/yaml") => parse_yaml(&bytes),
        Some(crate::protobuf::MEDIA_TYPE) if resource.behaviour != Kind::Custom => {
            parse_object(&crate::protobuf::decode(&resource.kind, &bytes)?)
        }
        Some(other) => Err(ApiError::unsupported_media_type(
            other,
            negotiate::BODY_TYPES,
        )),
    }
}

/// Parses a YAML document (also how apply patches arrive) into a JSON object.
pub fn parse_yaml(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_saphyr::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a YAML mapping (an object)",
        ));
    }
    Ok(value)
}

fn parse_object(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(value)
}

fn dry_run(query: &Query) -> Result<bool, ApiError> {
    match query.get("dryRun") {
        None => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "unsupported dryRun value {other:?}: the only supported value is \"All\""
        ))),
    }
}

/// Sets the object's apiVersion to the one served, rewriting stored objects of other versions.
fn served_as(resource: &Resource, mut object: Value) -> Value {
    object["apiVersion"] = json!(resource.api_version());
    object["kind"] = json!(resource.kind);
    object
}

/// Checks the apiVersion/kind a client sent against the URL; fills them in when missing.
fn check_type(resource: &Resource, object: &mut Value) -> Result<(), ApiError> {
    if let Some(kind) = object["kind"].as_str()
        && kind != resource.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            resource.kind
        )));
    }
    if let Some(api_version) = object["apiVersion"].as_str() {
        let served = resource.served_versions.iter().any(|v| {
            if resource.group.is_empty() {
                api_version == v
            } else {
                api_version == format!("{}/{v}", resource.group)
            }
        });
        if !served {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({})",
                resource.api_version()
            )));
        }
    }
    object["apiVersion"] = json!(resource.api_version());
    object["kind"] = json!(resource.kind);
    Ok(())
}

/// Validates labels and annotations.
fn metadata_causes(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Some(labels) = object["metadata"]["labels"].as_object() {
        for (key, value) in labels {
            for problem in validation::label_key(key) {
                causes.push(Cause::invalid(
                    "metadata.labels",
                    format!("Invalid value: {key:?}: {problem}"),
                ));
            }
            match value.as_str() {
                Some(value) => {
                    for problem in validation::label_value(value) {
                        causes.push(Cause::invalid(
                            format!("metadata.labels.{key}"),
                            format!("Invalid value: {value:?}: {problem}"),
                        ));
                    }
                }
                None => causes.push(Cause::invalid(
                    format!("metadata.labels.{key}"),
                    "Invalid value: label values must be strings",
                )),
            }
        }
    } else if !object["metadata"]["labels"].is_null() {
        causes.push(Cause::invalid(
            "metadata.labels",
            "Invalid value: must be a map of strings",
        ));
    }
    if let Some(annotations) = object["metadata"]["annotations"].as_object() {
        for (key, value) in annotations {
            for problem in validation::annotation_key(key) {
                causes.push(Cause::invalid(
                    "metadata.annotations",
                    format!("Invalid value: {key:?}: {problem}"),
                ));
            }
            if !value.is_string() {
                causes.push(Cause::invalid(
                    format!("metadata.annotations.{key}"),
                    "Invalid value: annotation values must be strings",
                ));
            }
        }
    } else if !object["metadata"]["annotations"].is_null() {
        causes.push(Cause::invalid(
            "metadata.annotations",
            "Invalid value: must be a map of strings",
        ));
    }
    causes
}

fn name_causes(resource: &Resource, name: &str) -> Vec<Cause> {
    let problems = if resource.behaviour == Kind::Namespace {
        validation::dns1123_label(name)
    } else {
        validation::dns1123_subdomain(name)
    };
    problems
        .into_iter()
        .map(|p| Cause::invalid("metadata.name", format!("Invalid value: {name:?}: {p}")))
        .collect()
}

/// Whether the namespace exists and accepts new objects.
async fn check_namespace(server: &ApiServer, namespace: &str) -> Result<(), ApiError> {
    let namespaces = crate::registry::namespaces();
    let found = server
        .store
        .get(&namespaces.key(None, namespace), None)
        .await
        .map_err(store_error)?;
    match found.kv {
        None => Err(ApiError::not_found(
            "namespaces",
            "",
            "namespaces",
            namespace,
        )),
        Some(kv) => {
            let object = objects::decode(&kv)?;
            if object["metadata"]["deletionTimestamp"].is_string() {
                Err(ApiError::forbidden(format!(
                    "unable to create new content in namespace {namespace} because it is being terminated"
                )))
            } else {
                Ok(())
            }
        }
    }
}

/// Picks the response form for one object.
fn object_response(
    status: StatusCode,
    representation: Representation,
    resource: &Resource,
    object: Value,
) -> Response {
    let object = served_as(resource, object);
    match representation {
        Representation::Table(version) => {
            let metadata = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
            json_response(
                status,
                &table::table(resource, version, &[object], metadata, true),
            )
        }
        _ => json_response(status, &object),
    }
}

pub async fn get(
    server: &ApiServer,
    target: &Target,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let representation = negotiate::representation(headers)?;
    let found = server
        .store
        .get(&target.key(), None)
        .await
        .map_err(store_error)?;
    let kv = found.kv.ok_or_else(|| target.not_found())?;
    let object = objects::decode(&kv)?;
    if let Some(scale) = target.scale() {
        return Ok(json_response(
            StatusCode::OK,
            &crate::scale::scale_of(scale, &object),
        ));
    }
    Ok(object_response(
        StatusCode::OK,
        representation,
        &target.resource,
        object,
    ))
}

pub async fn create(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let representation = negotiate::representation(headers)?;
    let dry_run = dry_run(query)?;
    let object = read_object(&target.resource, headers, body).await?;
    let ownership = Ownership::Update(field_manager(query, headers));
    let validation = field_validation(query)?;
    insert(
        server,
        target,
        object,
        dry_run,
        &ownership,
        validation,
        representation,
    )
    .await
}

/// Who a write's changed fields belong to in `metadata.managedFields`.
enum Ownership {
    /// An ordinary write (create, update, patch) by this field manager.
    Update(String),
    /// A server-side apply, which has already recorded ownership.
    Recorded,
}

/// The field manager of a non-apply write: `fieldManager`, else from the User-Agent.
fn field_manager(query: &Query, headers: &HeaderMap) -> String {
    match query.get("fieldManager") {
        Some(manager) => manager.to_owned(),
        None => crate::apply::default_manager(
            headers
                .get(axum::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
        ),
    }
}

/// What to do with fields a custom resource's schema does not declare (`fieldValidation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and tell the client in `Warning` headers (the default).
    Warn,
    /// Refuse the request (400).
    Strict,
}

fn field_validation(query: &Query) -> Result<FieldValidation, ApiError> {
    match query.get("fieldValidation") {
        None | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid fieldValidation {other:?}: use Ignore, Warn or Strict"
        ))),
    }
}

/// The fields of ObjectMeta; anything else under `metadata` is unknown.
const OBJECT_META_FIELDS: &[&str] = &[
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

/// The CRD write pipeline for a custom resource: prune unknown fields (reporting them as
/// `mode` says), apply defaults, validate against the schema. Returns the warnings for the
/// client and the validation problems.
fn conform(
    target: &Target,
    object: &mut Value,
    mode: FieldValidation,
) -> Result<(Vec<String>, Vec<Cause>), ApiError> {
    let resource = &target.resource;
    let Some(schema) = resource
        .schema
        .as_ref()
        .filter(|_| resource.behaviour == Kind::Custom)
    else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut unknown = Vec::new();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        let extra: Vec<String> = metadata
            .keys()
            .filter(|k| !OBJECT_META_FIELDS.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in extra {
            metadata.remove(&key);
            unknown.push(format!("metadata.{key}"));
        }
    }
    unknown.extend(crate::schema::prune(schema, object));
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        let list: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        match mode {
            FieldValidation::Strict => {
                return Err(ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                    resource.kind,
                    resource.version,
                    resource.kind,
                    list.join(", ")
                )));
            }
            FieldValidation::Warn => warnings = list,
            FieldValidation::Ignore => {}
        }
    }
    crate::schema::apply_defaults(schema, object);
    let causes = crate::schema::validate(schema, object)
        .into_iter()
        .map(|e| Cause {
            reason: e.reason,
            message: e.message,
            field: e.field,
        })
        .collect();
    Ok((warnings, causes))
}

/// Adds `Warning: 299` headers (kubectl prints them as `Warning: ...`).
fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        let escaped = warning.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(value) = axum::http::HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            response
                .headers_mut()
                .append(axum::http::header::WARNING, value);
        }
    }
    response
}

/// Creates `object` (already decoded) at `target`.
async fn insert(
    server: &ApiServer,
    target: &Target,
    mut object: Value,
    dry_run: bool,
    ownership: &Ownership,
    validation: FieldValidation,
    representation: Representation,
) -> Result<Response, ApiError> {
    let resource = &target.resource;
    check_type(resource, &mut object)?;
    let metadata = objects::metadata_mut(&mut object).expect("object checked above");
    if resource.namespaced {
        let namespace = target.namespace.clone().unwrap_or_default();
        match metadata.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != namespace => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {}
        }
        metadata.insert("namespace".into(), json!(namespace));
    } else {
        metadata.remove("namespace");
    }
    let name = match metadata
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        Some(name) => name.to_owned(),
        None => match metadata.get("generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => {
                let generated = validation::generate_name(prefix, rand::random::<u32>);
                metadata.insert("name".into(), json!(generated));
                generated
            }
            _ => {
                return Err(target.invalid(
                    "",
                    vec![Cause {
                        reason: "FieldValueRequired",
                        message: "Required value: name or generateName is required".into(),
                        field: "metadata.name".into(),
                    }],
                ));
            }
        },
    };
    for field in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "selfLink",
    ] {
        metadata.remove(field);
    }
    metadata.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    metadata.insert("creationTimestamp".into(), json!(objects::now_timestamp()));
    if resource.behaviour != Kind::Namespace {
        metadata.insert("generation".into(), json!(1));
    }
    let mut causes = name_causes(resource, &name);
    causes.extend(metadata_causes(&object));
    let target = Target {
        resource: resource.clone(),
        namespace: target.namespace.clone(),
        name: Some(name.clone()),
        subresource: None,
    };
    causes.extend(strategy::prepare_create(server, resource, &mut object).await?);
    let (warnings, schema_causes) = conform(&target, &mut object, validation)?;
    causes.extend(schema_causes);
    if !causes.is_empty() {
        return Err(target.invalid(&name, causes));
    }
    if resource.namespaced {
        check_namespace(server, target.namespace.as_deref().unwrap_or_default()).await?;
    }
    if let Ownership::Update(manager) = ownership {
        object = crate::apply::record_update(
            None,
            &object,
            manager,
            resource.schema.as_ref(),
            &resource.api_version(),
            &objects::now_timestamp(),
            None,
        );
    }
    if dry_run {
        return Ok(with_warnings(
            object_response(StatusCode::CREATED, representation, resource, object),
            &warnings,
        ));
    }
    match server
        .store
        .put(&target.key(), objects::encode(&object), Condition::Absent)
        .await
    {
        Ok(kv) => {
            strategy::after_write(server, resource).await;
            // Plain JSON: answer with the stored bytes, the resourceVersion spliced in, instead
            // of serializing the object a second time.
            let stored = match representation {
                Representation::Json => {
                    objects::splice_resource_version(&kv, &resource.api_version(), &resource.kind)
                }
                _ => None,
            };
            let response = match stored {
                Some(body) => raw_json_response(StatusCode::CREATED, body),
                None => {
                    objects::set_resource_version(&mut object, kv.mod_revision);
                    object_response(StatusCode::CREATED, representation, resource, object)
                }
            };
            Ok(with_warnings(response, &warnings))
        }
        Err(StoreError::PreconditionFailed { .. }) => Err(ApiError::already_exists(
            &resource.qualified(),
            &resource.group,
            &resource.plural,
            &name,
        )),
        Err(e) => Err(store_error(e)),
    }
}

/// The outcome of merging a requested change into the stored object.
enum Prepared {
    /// Write this object.
    Write(Value),
    /// The change changes nothing; answer with the stored object.
    Unchanged,
    /// The last finalizer of an object being deleted is gone: delete it.
    Delete(Value),
}

/// Merges `new` (a full object from PUT or a patch) into `old` following the metadata rules
/// and the kind's strategy.
async fn prepare_update(
    server: &ApiServer,
    target: &Target,
    mut new: Value,
    old: &Value,
    ownership: &Ownership,
    validation: FieldValidation,
) -> Result<(Prepared, Vec<String>), ApiError> {
    let resource = &target.resource;
    let name = target.name.clone().unwrap_or_default();
    check_type(resource, &mut new)?;
    if let Some(sent) = new["metadata"]["name"].as_str()
        && sent != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({sent}) does not match the name on the URL ({name})"
        )));
    }
    if resource.namespaced
        && let Some(sent) = new["metadata"]["namespace"].as_str()
        && !sent.is_empty()
        && Some(sent) != target.namespace.as_deref()
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if let Some(uid) = new["metadata"]["uid"].as_str()
        && !uid.is_empty()
        && Some(uid) != old["metadata"]["uid"].as_str()
    {
        return Err(ApiError::conflict(
            &resource.qualified(),
            &resource.group,
            &resource.plural,
            &name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                old["metadata"]["uid"].as_str().unwrap_or("")
            ),
        ));
    }
    let status_only = target.subresource.as_deref() == Some("status");
    let mut merged = if status_only {
        // Only .status changes through /status.
        let mut merged = old.clone();
        match new.get("status") {
            Some(status) => merged["status"] = status.clone(),
            None => {
                merged.as_object_mut().map(|o| o.remove("status"));
            }
        }
        merged
    } else {
        new
    };
    {
        let metadata = objects::metadata_mut(&mut merged).expect("objects are JSON objects");
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old["metadata"].get(field) {
                Some(value) => {
                    metadata.insert(field.into(), value.clone());
                }
                None => {
                    metadata.remove(field);
                }
            }
        }
        metadata.remove("selfLink");
        metadata.insert(
            "resourceVersion".into(),
            old["metadata"]["resourceVersion"].clone(),
        );
    }
    if !status_only && resource.status_subresource {
        match old.get("status") {
            Some(status) => merged["status"] = status.clone(),
            None => {
                merged.as_object_mut().map(|o| o.remove("status"));
            }
        }
    }
    let being_deleted = old["metadata"]["deletionTimestamp"].is_string();
    let mut causes = metadata_causes(&merged);
    if being_deleted {
        let before = objects::finalizers(old);
        if objects::finalizers(&merged)
            .iter()
            .any(|f| !before.contains(f))
        {
            causes.push(Cause::forbidden(
                "metadata.finalizers",
                "Forbidden: no new finalizers can be added if the object is being deleted",
            ));
        }
    }
    causes.extend(strategy::prepare_update(server, resource, &mut merged, old).await?);
    let (warnings, schema_causes) = conform(target, &mut merged, validation)?;
    causes.extend(schema_causes);
    if !causes.is_empty() {
        return Err(target.invalid(&name, causes));
    }
    if resource.behaviour != Kind::Namespace
        && objects::spec_part(&merged) != objects::spec_part(old)
    {
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        merged["metadata"]["generation"] = json!(generation + 1);
    }
    if let Ownership::Update(manager) = ownership {
        merged = crate::apply::record_update(
            Some(old),
            &merged,
            manager,
            resource.schema.as_ref(),
            &resource.api_version(),
            &objects::now_timestamp(),
            target.subresource.as_deref(),
        );
    }
    if being_deleted
        && objects::finalizers(&merged).is_empty()
        && strategy::may_remove(resource, &merged)
    {
        return Ok((Prepared::Delete(merged), warnings));
    }
    if merged == *old {
        return Ok((Prepared::Unchanged, warnings));
    }
    Ok((Prepared::Write(merged), warnings))
}

/// Writes a prepared update guarded by the stored revision.
async fn write_prepared(
    server: &ApiServer,
    target: &Target,
    prepared: Prepared,
    old: Value,
    revision: Revision,
    dry_run: bool,
) -> Result<Result<Value, ()>, ApiError> {
    match prepared {
        Prepared::Unchanged => Ok(Ok(old)),
        Prepared::Write(object) | Prepared::Delete(object) if dry_run => Ok(Ok(object)),
        Prepared::Write(mut object) => {
            match server
                .store
                .put(
                    &target.key(),
                    objects::encode(&object),
                    Condition::ModRevision(revision),
                )
                .await
            {
                Ok(kv) => {
                    objects::set_resource_version(&mut object, kv.mod_revision);
                    strategy::after_write(server, &target.resource).await;
                    Ok(Ok(object))
                }
                Err(StoreError::PreconditionFailed { .. }) => Ok(Err(())),
                Err(e) => Err(store_error(e)),
            }
        }
        Prepared::Delete(object) => {
            match server
                .store
                .delete(&target.key(), Condition::ModRevision(revision))
                .await
            {
                Ok(deleted) => {
                    let mut object = object;
                    objects::set_resource_version(&mut object, deleted.revision);
                    strategy::after_delete(server, &target.resource, &object).await;
                    Ok(Ok(object))
                }
                Err(StoreError::PreconditionFailed { .. }) => Ok(Err(())),
                Err(e) => Err(store_error(e)),
            }
        }
    }
}

pub async fn update(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let representation = negotiate::representation(headers)?;
    let dry_run = dry_run(query)?;
    let mut new = read_object(&target.resource, headers, body).await?;
    let found = server
        .store
        .get(&target.key(), None)
        .await
        .map_err(store_error)?;
    let kv = found.kv.ok_or_else(|| target.not_found())?;
    let old = objects::decode(&kv)?;
    if let Some(scale) = target.scale() {
        new = crate::scale::apply_scale(&target.resource, scale, &old, &new)?;
    }
    match new["metadata"]["resourceVersion"]
        .as_str()
        .filter(|v| !v.is_empty())
    {
        Some(sent) if sent != kv.mod_revision.to_string() => return Err(target.modified()),
        Some(_) => {}
        None if target.resource.behaviour == Kind::Custom => {
            return Err(target.invalid(
                target.name.as_deref().unwrap_or(""),
                vec![Cause::invalid(
                    "metadata.resourceVersion",
                    "Invalid value: 0x0: must be specified for an update",
                )],
            ));
        }
        None => {}
    }
    let ownership = Ownership::Update(field_manager(query, headers));
    let (prepared, warnings) = prepare_update(
        server,
        target,
        new,
        &old,
        &ownership,
        field_validation(query)?,
    )
    .await?;
    match write_prepared(server, target, prepared, old, kv.mod_revision, dry_run).await? {
        Ok(object) => Ok(with_warnings(
            target.written(representation, object),
            &warnings,
        )),
        Err(()) => Err(target.modified()),
    }
}

/// Media types PATCH accepts for custom resources.
const PATCH_TYPES: &str =
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

pub async fn patch(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let representation = negotiate::representation(headers)?;
    let dry_run = dry_run(query)?;
    let content_type = negotiate::content_type(headers).unwrap_or_default();
    let resource = &target.resource;
    enum PatchKind {
        Merge,
        Json(json_patch::Patch),
    }
    let body = read_body(body).await?;
    let validation = field_validation(query)?;
    if content_type == "application/apply-patch+yaml" {
        return server_side_apply(server, target, query, representation, dry_run, &body).await;
    }
    if query.flag("force")? {
        return Err(target.invalid(
            target.name.as_deref().unwrap_or(""),
            vec![Cause::forbidden(
                "force",
                "Forbidden: may not be specified for non-apply patch",
            )],
        ));
    }
    let ownership = Ownership::Update(field_manager(query, headers));
    let kind = match content_type.as_str() {
        "application/merge-patch+json" => PatchKind::Merge,
        // Built-in kinds accept strategic merge patches; for the fields clients patch on
        // them (labels, annotations, finalizer lists replaced whole) a merge patch is the same.
        "application/strategic-merge-patch+json" if resource.behaviour != Kind::Custom => {
            PatchKind::Merge
        }
        "application/json-patch+json" => PatchKind::Json(
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("the JSON patch is malformed: {e}")))?,
        ),
        other => return Err(ApiError::unsupported_media_type(other, PATCH_TYPES)),
    };
    let merge_patch: Option<Value> = match kind {
        PatchKind::Merge => {
            let value: Value = serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request(format!("the merge patch is not valid JSON: {e}"))
            })?;
            if !value.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            Some(value)
        }
        PatchKind::Json(_) => None,
    };
    for _ in 0..PATCH_RETRIES {
        let found = server
            .store
            .get(&target.key(), None)
            .await
            .map_err(store_error)?;
        let kv = found.kv.ok_or_else(|| target.not_found())?;
        let old = objects::decode(&kv)?;
        let mut patched = match target.scale() {
            Some(scale) => crate::scale::scale_of(scale, &old),
            None => old.clone(),
        };
        match (&kind, &merge_patch) {
            (_, Some(patch)) => json_patch::merge(&mut patched, patch),
            (PatchKind::Json(ops), None) => {
                json_patch::patch(&mut patched, ops).map_err(|e| {
                    target.invalid(
                        target.name.as_deref().unwrap_or(""),
                        vec![Cause::invalid(
                            "",
                            format!("the JSON patch cannot be applied: {e}"),
                        )],
                    )
                })?;
            }
            _ => unreachable!("merge patches carry their document"),
        }
        if !patched.is_object() {
            return Err(ApiError::bad_request("the patch does not leave an object"));
        }
        if let Some(scale) = target.scale() {
            patched = crate::scale::apply_scale(resource, scale, &old, &patched)?;
        }
        // A patch that sets metadata.resourceVersion makes it a precondition.
        let precondition = patched["metadata"]["resourceVersion"]
            != old["metadata"]["resourceVersion"]
            || merge_patch
                .as_ref()
                .is_some_and(|p| p["metadata"]["resourceVersion"].is_string());
        if patched["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"] {
            return Err(target.modified());
        }
        let (prepared, warnings) =
            prepare_update(server, target, patched, &old, &ownership, validation).await?;
        match write_prepared(server, target, prepared, old, kv.mod_revision, dry_run).await? {
            Ok(object) => {
                return Ok(with_warnings(
                    target.written(representation, object),
                    &warnings,
                ));
            }
            Err(()) if precondition => return Err(target.modified()),
            Err(()) => continue,
        }
    }
    Err(target.modified())
}

/// Server-side apply (`application/apply-patch+yaml`): merges the applied configuration with
/// field ownership (`apply.rs`), creating the object when it does not exist.
async fn server_side_apply(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    representation: Representation,
    dry_run: bool,
    body: &[u8],
) -> Result<Response, ApiError> {
    let resource = &target.resource;
    let name = target.name.clone().unwrap_or_default();
    let Some(manager) = query.get("fieldManager") else {
        return Err(target.invalid(
            &name,
            vec![Cause {
                reason: "FieldValueRequired",
                message: "Required value: is required for apply patch".into(),
                field: "fieldManager".into(),
            }],
        ));
    };
    let force = query.flag("force")?;
    let validation = field_validation(query)?;
    let mut config = parse_yaml(body)?;
    if !config["metadata"]["managedFields"].is_null() {
        return Err(target.invalid(
            &name,
            vec![Cause::invalid(
                "metadata.managedFields",
                "Invalid value: must be nil in an apply configuration",
            )],
        ));
    }
    if target.subresource.is_none() {
        check_type(resource, &mut config)?;
    }
    match config["metadata"]["name"].as_str() {
        Some(sent) if sent != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({sent}) does not match the name on the URL ({name})"
            )));
        }
        _ => config["metadata"]["name"] = json!(name),
    }
    if resource.namespaced {
        let namespace = target.namespace.clone().unwrap_or_default();
        match config["metadata"]["namespace"].as_str() {
            Some(sent) if !sent.is_empty() && sent != namespace => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => config["metadata"]["namespace"] = json!(namespace),
        }
    }
    let api_version = resource.api_version();
    for _ in 0..PATCH_RETRIES {
        let now = objects::now_timestamp();
        let found = server
            .store
            .get(&target.key(), None)
            .await
            .map_err(store_error)?;
        let Some(kv) = found.kv else {
            if target.subresource.is_some() {
                return Err(target.not_found());
            }
            let applied = crate::apply::apply(
                None,
                &config,
                manager,
                force,
                resource.schema.as_ref(),
                &api_version,
                &now,
                None,
            )
            .map_err(|conflicts| apply_conflict(target, &conflicts, &Value::Null))?;
            match insert(
                server,
                target,
                applied.object,
                dry_run,
                &Ownership::Recorded,
                validation,
                representation,
            )
            .await
            {
                // Someone created it meanwhile: apply onto theirs.
                Err(e) if e.reason == "AlreadyExists" => continue,
                other => return other,
            }
        };
        let old = objects::decode(&kv)?;
        if let Some(expected) = config["metadata"]["resourceVersion"].as_str()
            && expected != kv.mod_revision.to_string()
        {
            return Err(target.modified());
        }
        let applied = crate::apply::apply(
            Some(&old),
            &config,
            manager,
            force,
            resource.schema.as_ref(),
            &api_version,
            &now,
            target.subresource.as_deref(),
        )
        .map_err(|conflicts| {
            apply_conflict(target, &conflicts, &old["metadata"]["managedFields"])
        })?;
        let mut object = applied.object;
        object["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        let (prepared, warnings) = prepare_update(
            server,
            target,
            object,
            &old,
            &Ownership::Recorded,
            validation,
        )
        .await?;
        match write_prepared(server, target, prepared, old, kv.mod_revision, dry_run).await? {
            Ok(object) => {
                return Ok(with_warnings(
                    target.written(representation, object),
                    &warnings,
                ));
            }
            Err(()) => continue,
        }
    }
    Err(target.modified())
}

/// The 409 for apply conflicts, one `FieldManagerConflict` cause per field.
fn apply_conflict(
    target: &Target,
    conflicts: &[crate::apply::Conflict],
    managed: &Value,
) -> ApiError {
    let causes = conflicts
        .iter()
        .map(|c| Cause {
            reason: "FieldManagerConflict",
            message: format!("conflict with \"{}\"", c.manager),
            field: c.field.clone(),
        })
        .collect();
    let r = &target.resource;
    ApiError::conflict_with_causes(
        &r.group,
        &r.plural,
        target.name.as_deref().unwrap_or(""),
        crate::apply::conflict_message(conflicts, managed),
        causes,
    )
}

/// DeleteOptions from the body (optional) and the query.
struct DeleteOptions {
    uid: Option<String>,
    resource_version: Option<String>,
    dry_run: bool,
}

fn delete_options(query: &Query, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut options = DeleteOptions {
        uid: None,
        resource_version: None,
        dry_run: dry_run(query)?,
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(options);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the DeleteOptions are not valid JSON: {e}")))?;
    options.uid = value["preconditions"]["uid"].as_str().map(str::to_owned);
    options.resource_version = value["preconditions"]["resourceVersion"]
        .as_str()
        .map(str::to_owned);
    if let Some(modes) = value["dryRun"].as_array() {
        for mode in modes {
            match mode.as_str() {
                Some("All") => options.dry_run = true,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unsupported dryRun value {other:?}: the only supported value is \"All\""
                    )));
                }
            }
        }
    }
    Ok(options)
}

pub async fn delete(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let representation = negotiate::representation(headers)?;
    let options = delete_options(query, &read_body(body).await?)?;
    let resource = &target.resource;
    let name = target.name.clone().unwrap_or_default();
    for _ in 0..PATCH_RETRIES {
        let found = server
            .store
            .get(&target.key(), None)
            .await
            .map_err(store_error)?;
        let kv = found.kv.ok_or_else(|| target.not_found())?;
        let mut object = objects::decode(&kv)?;
        if let Some(uid) = &options.uid
            && Some(uid.as_str()) != object["metadata"]["uid"].as_str()
        {
            return Err(ApiError::conflict(
                &resource.qualified(),
                &resource.group,
                &resource.plural,
                &name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    object["metadata"]["uid"].as_str().unwrap_or("")
                ),
            ));
        }
        if let Some(rv) = &options.resource_version
            && *rv != kv.mod_revision.to_string()
        {
            return Err(ApiError::conflict(
                &resource.qualified(),
                &resource.group,
                &resource.plural,
                &name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    kv.mod_revision
                ),
            ));
        }
        strategy::check_delete(resource, &object)?;
        if object["metadata"]["deletionTimestamp"].is_string() {
            // Already being deleted: nothing changes.
            return Ok(object_response(
                StatusCode::OK,
                representation,
                resource,
                object,
            ));
        }
        if !objects::finalizers(&object).is_empty() || !strategy::may_remove(resource, &object) {
            let metadata = objects::metadata_mut(&mut object).expect("stored objects are objects");
            metadata.insert("deletionTimestamp".into(), json!(objects::now_timestamp()));
            metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
            if resource.behaviour != Kind::Namespace {
                let generation = metadata
                    .get("generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                metadata.insert("generation".into(), json!(generation + 1));
            }
            strategy::prepare_deletion(resource, &mut object);
            if options.dry_run {
                return Ok(object_response(
                    StatusCode::OK,
                    representation,
                    resource,
                    object,
                ));
            }
            match server
                .store
                .put(
                    &target.key(),
                    objects::encode(&object),
                    Condition::ModRevision(kv.mod_revision),
                )
                .await
            {
                Ok(written) => {
                    objects::set_resource_version(&mut object, written.mod_revision);
                    strategy::after_deletion_requested(server, resource, &object).await;
                    return Ok(object_response(
                        StatusCode::OK,
                        representation,
                        resource,
                        object,
                    ));
                }
                Err(StoreError::PreconditionFailed { .. }) => continue,
                Err(e) => return Err(store_error(e)),
            }
        }
        if options.dry_run {
            return Ok(deleted_response(resource, &object, representation));
        }
        strategy::before_delete(server, resource, &object).await?;
        match server
            .store
            .delete(&target.key(), Condition::ModRevision(kv.mod_revision))
            .await
        {
            Ok(deleted) => {
                objects::set_resource_version(&mut object, deleted.revision);
                strategy::after_delete(server, resource, &object).await;
                return Ok(deleted_response(resource, &object, representation));
            }
            Err(StoreError::PreconditionFailed { .. }) => continue,
            Err(e) => return Err(store_error(e)),
        }
    }
    Err(target.modified())
}

/// Most objects one DELETE of a collection removes; clients repeat it for more.
const MAX_DELETE_COLLECTION: usize = 10_000;

/// `DELETE` on a collection (`deletecollection`): deletes every object matching the label and
/// field selectors, each as a single DELETE would (finalizers respected). Answers the list of
/// what was deleted or marked for deletion.
pub async fn delete_collection(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let resource = &target.resource;
    let selectors = Selectors::parse(resource, query)?;
    let body = read_body(body).await?;
    let page = select(
        server,
        &SelectRequest {
            resource,
            namespace: target.namespace.as_deref(),
            selectors: &selectors,
            revision: None,
            from_key: None,
            limit: MAX_DELETE_COLLECTION,
            max_bytes: 0,
            continued: false,
        },
    )
    .await?;
    let mut deleted = Vec::new();
    for kv in &page.kvs {
        let object = objects::decode(kv)?;
        let item = Target {
            resource: resource.clone(),
            namespace: objects::namespace(&object).map(str::to_owned),
            name: objects::name(&object).map(str::to_owned),
            subresource: None,
        };
        match delete(server, &item, query, headers, Body::from(body.clone())).await {
            Ok(_) => deleted.push(served_as(resource, object)),
            Err(e) if e.reason == "NotFound" => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "apiVersion": resource.api_version(),
            "kind": resource.list_kind,
            "metadata": {"resourceVersion": page.revision.to_string()},
            "items": deleted,
        }),
    ))
}

/// What a DELETE that removed the object answers: a Status for custom resources (as
/// kube-apiserver), the deleted object for built-in kinds.
fn deleted_response(
    resource: &Resource,
    object: &Value,
    representation: Representation,
) -> Response {
    if resource.behaviour == Kind::Custom {
        json_response(
            StatusCode::OK,
            &crate::status::success(json!({
                "name": object["metadata"]["name"],
                "group": resource.group,
                "kind": resource.plural,
                "uid": object["metadata"]["uid"],
            })),
        )
    } else {
        object_response(StatusCode::OK, representation, resource, object.clone())
    }
}

/// A continue token: the revision of the list's snapshot and the key to resume at.
fn encode_continue(revision: Revision, start: &str) -> String {
    let token = json!({"rv": revision, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(Revision, String), ApiError> {
    let bad = || {
        ApiError::bad_request("the continue parameter is not a continue token this server issued")
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    match (value["rv"].as_i64(), value["start"].as_str()) {
        (Some(rv), Some(start)) => Ok((rv, start.to_owned())),
        _ => Err(bad()),
    }
}

/// The label and field selectors of a list or watch.
pub struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    pub fn parse(resource: &Resource, query: &Query) -> Result<Self, ApiError> {
        let labels = match query.get("labelSelector") {
            Some(raw) => LabelSelector::parse(raw).map_err(|e| ApiError::bad_request(e.message))?,
            None => LabelSelector::everything(),
        };
        let fields = match query.get("fieldSelector") {
            Some(raw) => FieldSelector::parse(raw).map_err(|e| ApiError::bad_request(e.message))?,
            None => FieldSelector::everything(),
        };
        let supported: &[&str] = if resource.behaviour == Kind::Namespace {
            &["metadata.name", "metadata.namespace", "status.phase"]
        } else {
            &["metadata.name", "metadata.namespace"]
        };
        for field in fields.fields() {
            if !supported.contains(&field) {
                let list: Vec<String> = supported.iter().map(|f| format!("\"{f}\"")).collect();
                return Err(ApiError::bad_request(format!(
                    "\"{field}\" is not a known field selector: only {}",
                    list.join(", ")
                )));
            }
        }
        Ok(Self { labels, fields })
    }

    pub fn is_everything(&self) -> bool {
        self.labels.is_everything() && self.fields.fields().is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches(&objects::labels(object))
            && self.fields.matches(|field| match field {
                "metadata.name" => objects::name(object).map(str::to_owned),
                "metadata.namespace" => Some(objects::namespace(object).unwrap_or("").to_owned()),
                "status.phase" => object["status"]["phase"].as_str().map(str::to_owned),
                _ => None,
            })
    }

    /// Whether a stored object matches, reading only what the selectors look at when the
    /// bytes have the usual shape (decoding the whole object otherwise); same answer as
    /// [`Selectors::matches`] on the decoded object.
    pub fn matches_stored(&self, kv: &KeyValue) -> Result<bool, ApiError> {
        if self.is_everything() {
            return Ok(true);
        }
        let Some(read) = objects::selectable(&kv.value) else {
            return Ok(self.matches(&objects::decode(kv)?));
        };
        Ok(self.labels.matches(&read.labels)
            && self.fields.matches(|field| match field {
                "metadata.name" => read.name.clone(),
                "metadata.namespace" => Some(read.namespace.clone().unwrap_or_default()),
                "status.phase" => read.phase.clone(),
                _ => None,
            }))
    }

    /// The one store key these selectors can match, when the field selector pins the name
    /// (`metadata.name=X` or `==`) and the namespace is known (from the URL, or a
    /// `metadata.namespace=` requirement) for namespaced kinds. `None` (read the prefix) for
    /// names no stored object can have as a key segment (empty, with `/` or NUL, too long).
    pub fn exact_key(&self, resource: &Resource, namespace: Option<&str>) -> Option<String> {
        let name = self.fields.exact("metadata.name")?;
        let namespace = if resource.namespaced {
            Some(match namespace {
                Some(namespace) => namespace,
                None => self.fields.exact("metadata.namespace")?,
            })
        } else {
            None
        };
        let segment = |s: &str| !s.is_empty() && !s.contains(['/', '\0']);
        if !segment(name) || !namespace.is_none_or(segment) {
            return None;
        }
        let key = resource.key(namespace, name);
        (key.len() <= MAX_KEY_BYTES).then_some(key)
    }
}

/// What to read for a list, a watch's initial snapshot or a deletecollection.
pub(crate) struct SelectRequest<'a> {
    pub resource: &'a Resource,
    /// The namespace of the URL, if any.
    pub namespace: Option<&'a str>,
    pub selectors: &'a Selectors,
    /// Read at this revision (a continue token's, or `resourceVersionMatch=Exact`); now if
    /// `None`.
    pub revision: Option<Revision>,
    /// Start at this key (a continue token's).
    pub from_key: Option<String>,
    /// Stop after this many matching objects; 0 for no limit.
    pub limit: usize,
    /// Stop once the matching objects' stored bytes reach this many (after at least one
    /// object); 0 for no bound. Like `limit`, stopping early leaves a `next`.
    pub max_bytes: usize,
    /// Whether this continues an earlier list (for the wording of 410 errors).
    pub continued: bool,
}

impl SelectRequest<'_> {
    /// The store prefix read: the resource, or one namespace of it.
    pub fn prefix(&self) -> String {
        self.resource.key_prefix(self.namespace)
    }

    /// Maps a store failure of this read onto the API's errors.
    pub fn store_error(&self, e: StoreError) -> ApiError {
        match e {
            StoreError::Compacted { .. } if self.continued => ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. \
                 You can start a new list without the continue parameter.",
            ),
            other => store_error(other),
        }
    }

    /// Whether a read that has gathered `count` objects of `bytes` stored bytes is full.
    pub fn is_full(&self, count: usize, bytes: usize) -> bool {
        (self.limit > 0 && count >= self.limit)
            || (self.max_bytes > 0 && count > 0 && bytes >= self.max_bytes)
    }
}

/// The matching objects of one consistent read, in key order.
pub(crate) struct Selection {
    pub kvs: Vec<KeyValue>,
    /// The revision everything was read at: the list's resourceVersion.
    pub revision: Revision,
    /// Where the next page starts, when `limit` or `max_bytes` stopped the read before the
    /// end.
    pub next: Option<String>,
    /// With `next`, when the label index answered: its candidates from `next` on, sorted, so
    /// the rest of a streamed list reads them instead of looking the selector up again.
    pub candidates: Option<Vec<String>>,
}

/// Reads what a request selects, at one revision, in the cheapest way that is exact: the one
/// key a field selector pins, the label index's candidates (`label_index.rs`), or every key
/// of the prefix.
pub(crate) async fn select(
    server: &ApiServer,
    request: &SelectRequest<'_>,
) -> Result<Selection, ApiError> {
    if let Some(key) = request
        .selectors
        .exact_key(request.resource, request.namespace)
    {
        return select_key(&*server.store, request, key).await;
    }
    if let Some(selection) = crate::label_index::select(server, request).await? {
        return Ok(selection);
    }
    select_by_scan(&*server.store, request).await
}

/// The name fast path: one `get`, never a continue token.
async fn select_key(
    store: &dyn Store,
    request: &SelectRequest<'_>,
    key: String,
) -> Result<Selection, ApiError> {
    let found = store
        .get(&key, request.revision)
        .await
        .map_err(|e| request.store_error(e))?;
    let mut kvs = Vec::new();
    if let Some(kv) = found.kv
        && request.from_key.as_ref().is_none_or(|from| kv.key >= *from)
        && request.selectors.matches_stored(&kv)?
    {
        kvs.push(kv);
    }
    Ok(Selection {
        kvs,
        revision: found.revision,
        next: None,
        candidates: None,
    })
}

/// Reads the prefix page by page at one revision, keeping what matches, until the end or the
/// request's `limit` / `max_bytes`.
async fn select_by_scan(
    store: &dyn Store,
    request: &SelectRequest<'_>,
) -> Result<Selection, ApiError> {
    let prefix = request.prefix();
    let mut revision = request.revision;
    let mut from_key = request.from_key.clone();
    let mut kvs = Vec::new();
    let mut bytes = 0;
    let mut next = None;
    'pages: loop {
        let page = store
            .range(RangeRequest {
                prefix: prefix.clone(),
                from_key: from_key.take(),
                limit: LIST_STORE_PAGE,
                revision,
                count: false,
            })
            .await
            .map_err(|e| request.store_error(e))?;
        revision = Some(page.revision);
        let page_len = page.kvs.len();
        let last_key = page.kvs.last().map(|kv| format!("{}\0", kv.key));
        for (index, kv) in page.kvs.into_iter().enumerate() {
            if !request.selectors.matches_stored(&kv)? {
                continue;
            }
            let key = kv.key.clone();
            bytes += kv.value.len();
            kvs.push(kv);
            if request.is_full(kvs.len(), bytes) {
                if index + 1 < page_len || page.more {
                    next = Some(format!("{key}\0"));
                }
                break 'pages;
            }
        }
        match (page.more, last_key) {
            (true, Some(last)) => from_key = Some(last),
            _ => break,
        }
    }
    Ok(Selection {
        kvs,
        revision: revision.unwrap_or_default(),
        next,
        candidates: None,
    })
}

/// Lists what a request selects at one revision, as a `<Kind>List` or a Table.
///
/// A paged list (`limit`) is one body of at most [`MAX_LIST_LIMIT`] objects and about
/// [`LIST_CHUNK_BYTES`], with a continue token when more remain. An unpaged plain-JSON list
/// makes its first read ([`LIST_STORE_PAGE`] objects or [`LIST_CHUNK_BYTES`]) before
/// answering, so every error is still a Status; what fits is one body, anything longer is
/// streamed (`streamed_list`). Unpaged Tables are built whole.
pub async fn list(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let representation = negotiate::representation(headers)?;
    let resource = &target.resource;
    let selectors = Selectors::parse(resource, query)?;
    let limit = query.number("limit")?.unwrap_or(0);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let match_mode = query.get("resourceVersionMatch");
    let requested_rv = query.get("resourceVersion");
    if let Some(mode) = match_mode
        && !matches!(mode, "Exact" | "NotOlderThan")
    {
        return Err(ApiError::bad_request(format!(
            "unsupported resourceVersionMatch {mode:?}: use Exact or NotOlderThan"
        )));
    }
    let prefix = resource.key_prefix(target.namespace.as_deref());
    let (revision, from_key) = match query.get("continue") {
        Some(token) => {
            let (rv, start) = decode_continue(token)?;
            if !start.starts_with(&prefix) {
                return Err(ApiError::bad_request(
                    "the continue token belongs to another list",
                ));
            }
            (Some(rv), Some(start))
        }
        None => {
            let exact = match (match_mode, requested_rv) {
                (Some("Exact"), Some(rv)) => Some(rv.parse::<Revision>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?),
                _ => None,
            };
            (exact, None)
        }
    };
    let plain_json = representation == Representation::Json;
    // What the first (for a buffered answer, the only) read may gather.
    let (read_limit, max_bytes) = match limit {
        0 if plain_json => (LIST_STORE_PAGE, LIST_CHUNK_BYTES),
        0 => (0, 0),
        limit => (limit.min(MAX_LIST_LIMIT), LIST_CHUNK_BYTES),
    };
    let selection = select(
        server,
        &SelectRequest {
            resource,
            namespace: target.namespace.as_deref(),
            selectors: &selectors,
            revision,
            from_key,
            limit: read_limit,
            max_bytes,
            continued: query.get("continue").is_some(),
        },
    )
    .await?;
    if plain_json && limit == 0 && selection.next.is_some() {
        let rest = ListCursor {
            store: server.store.clone(),
            resource: resource.clone(),
            namespace: target.namespace.clone(),
            selectors,
            revision: selection.revision,
            next: None,
            candidates: None,
            position: 0,
        };
        return streamed_list(rest, selection);
    }
    let mut metadata = json!({"resourceVersion": selection.revision.to_string()});
    if let Some(start) = &selection.next {
        metadata["continue"] = json!(encode_continue(selection.revision, start));
    }
    if let Representation::Table(version) = representation {
        let objects = selection
            .kvs
            .iter()
            .map(|kv| Ok(served_as(resource, objects::decode(kv)?)))
            .collect::<Result<Vec<Value>, ApiError>>()?;
        return Ok(json_response(
            StatusCode::OK,
            &table::table(resource, version, &objects, metadata, true),
        ));
    }
    let mut body = list_head(resource, metadata);
    body.reserve(items_size(&selection.kvs) + 2);
    write_items(&mut body, resource, selection.kvs, true)?;
    body.extend_from_slice(b"]}");
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// The start of a list's JSON, up to the opening bracket of its items: the envelope without
/// one big value, so items can follow as they are (raw or encoded).
fn list_head(resource: &Resource, metadata: Value) -> Vec<u8> {
    let envelope = json!({
        "apiVersion": resource.api_version(),
        "kind": resource.list_kind,
        "metadata": metadata,
    });
    let mut head = serde_json::to_vec(&envelope).expect("JSON values serialize");
    head.pop();
    head.extend_from_slice(b",\"items\":[");
    head
}

/// About the bytes [`write_items`] writes for these objects (exact when all are spliced).
fn items_size(kvs: &[KeyValue]) -> usize {
    kvs.iter().map(|kv| kv.value.len() + 40).sum()
}

/// Appends items to a list's JSON array: each stored object with its revision spliced into
/// its bytes (`objects::splice_resource_version`), or decoded and re-encoded when its bytes
/// are unusual. `first`: no item precedes them. Takes the values by value, so each is freed
/// once written.
fn write_items(
    out: &mut Vec<u8>,
    resource: &Resource,
    kvs: Vec<KeyValue>,
    mut first: bool,
) -> Result<(), ApiError> {
    let api_version = resource.api_version();
    for kv in kvs {
        if !first {
            out.push(b',');
        }
        first = false;
        if !objects::write_spliced(&kv, &api_version, &resource.kind, out) {
            let object = served_as(resource, objects::decode(&kv)?);
            serde_json::to_writer(&mut *out, &object).expect("JSON values serialize");
        }
    }
    Ok(())
}

/// What a streamed list's producer sends: a piece of the body, or the failure that cuts it.
type ListChunk = Result<Bytes, std::io::Error>;

/// An unpaged plain-JSON list that did not fit in its first read, as a streamed body: the
/// envelope (`resourceVersion` only: no continue token without `limit`) and the first read's
/// items at once, then each further chunk ([`LIST_STORE_PAGE`] objects or
/// [`LIST_CHUNK_BYTES`]) read at the list's revision by a task, then `]}`. The task keeps at
/// most [`LIST_STREAM_CHUNKS`] encoded chunks waiting for the connection and stops when the
/// client goes away. A failure after the 200 header ends the body with an error — the client
/// sees a truncated response — and is logged, as kube-apiserver does.
///
/// `first` is the list's first read (its items, revision and where it stopped); `rest` what
/// the task needs to go on from there.
fn streamed_list(mut rest: ListCursor, first: Selection) -> Result<Response, ApiError> {
    let mut head = list_head(
        &rest.resource,
        json!({"resourceVersion": first.revision.to_string()}),
    );
    head.reserve(items_size(&first.kvs));
    write_items(&mut head, &rest.resource, first.kvs, true)?;
    rest.next = first.next;
    rest.candidates = first.candidates;
    let (tx, rx) = tokio::sync::mpsc::channel::<ListChunk>(LIST_STREAM_CHUNKS);
    tx.try_send(Ok(head.into()))
        .expect("a new channel has room for one chunk");
    tokio::spawn(rest.run(tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("a valid response"))
}

/// The rest of a streamed list: where it goes on, at its revision, with what it selects.
struct ListCursor {
    store: Arc<dyn Store>,
    resource: Arc<Resource>,
    namespace: Option<String>,
    selectors: Selectors,
    revision: Revision,
    /// Where the next chunk starts; `None` once everything was read.
    next: Option<String>,
    /// The label index's candidates (sorted), when the index answered the first read; the
    /// next chunk reads them from `position` on.
    candidates: Option<Vec<String>>,
    position: usize,
}

impl ListCursor {
    /// Reads and encodes chunks until the end, the client leaving, or a failure.
    async fn run(mut self, tx: tokio::sync::mpsc::Sender<ListChunk>) {
        loop {
            let read = tokio::select! {
                biased;
                () = tx.closed() => return,
                read = self.next_chunk() => read,
            };
            let chunk = match read {
                Ok(Some(kvs)) => {
                    let mut chunk = Vec::with_capacity(items_size(&kvs));
                    write_items(&mut chunk, &self.resource, kvs, false).map(|()| chunk)
                }
                Ok(None) => {
                    let _ = tx.send(Ok(Bytes::from_static(b"]}"))).await;
                    return;
                }
                Err(e) => Err(e),
            };
            let sent = match chunk {
                Ok(chunk) => tx.send(Ok(chunk.into())).await,
                Err(error) => {
                    tracing::warn!(
                        resource = %self.resource.qualified(),
                        revision = self.revision,
                        %error,
                        "list stream cut short by a read failure after its header was sent"
                    );
                    let _ = tx.send(Err(std::io::Error::other(error.message))).await;
                    return;
                }
            };
            if sent.is_err() {
                return;
            }
        }
    }

    /// The next chunk's objects; `None` once everything was read.
    async fn next_chunk(&mut self) -> Result<Option<Vec<KeyValue>>, ApiError> {
        let Some(from_key) = self.next.take() else {
            return Ok(None);
        };
        let request = SelectRequest {
            resource: &self.resource,
            namespace: self.namespace.as_deref(),
            selectors: &self.selectors,
            revision: Some(self.revision),
            from_key: Some(from_key),
            limit: LIST_STORE_PAGE,
            max_bytes: LIST_CHUNK_BYTES,
            continued: false,
        };
        let Some(keys) = &self.candidates else {
            let selection = select_by_scan(&*self.store, &request).await?;
            self.next = selection.next;
            return Ok(Some(selection.kvs));
        };
        let keys = &keys[self.position..];
        let read = crate::label_index::read_candidates(&*self.store, &request, keys, self.revision)
            .await?;
        if read.consumed < keys.len() {
            self.next = Some(format!("{}\0", keys[read.consumed - 1]));
        }
        self.position += read.consumed;
        Ok(Some(read.kvs))
    }
}
