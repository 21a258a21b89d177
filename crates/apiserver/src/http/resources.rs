//! Resource handlers: decode what a request sends (bodies in JSON, YAML or protobuf; query
//! options), call the registry, and encode its answer as the client asked (JSON, a Table,
//! a list streamed chunk by chunk).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use fleetdb_machinery::apply;
use fleetdb_machinery::field::FieldError;
use fleetdb_store::Revision;
use serde_json::{Value, json};

use super::negotiate::{self, IncludeObject, Representation};
use super::protobuf;
use super::query::Query;
use super::responses::{json, raw_json, with_warnings};
use super::server::ApiServer;
use super::table::{self, TableWriter};
use crate::api::{ApiError, Identity, Resource};
use crate::registry::history::{AsOf, HISTORY_PAGE, MAX_HISTORY_ITEMS};
use crate::registry::{
    DeleteOptions, Deleted, FieldValidation, LIST_CHUNK_BYTES, LIST_STREAM_PAGE, ListOptions,
    Patch, Registry, Subresource, Target, WriteOptions, Written, parse_resource_version, selectors,
};
use crate::storage::codec;
use crate::storage::select::Cursor;

/// Largest request body accepted (3 MiB, as kube-apiserver).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Encoded chunks of a streamed list waiting for the connection; its reader waits beyond.
pub const LIST_STREAM_CHUNKS: usize = 2;

/// Longest field manager name (kube-apiserver's limit).
const MAX_FIELD_MANAGER_BYTES: usize = 128;

/// Media types PATCH accepts for custom resources.
const PATCH_TYPES: &str =
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

/// One resource request, routed and authorized.
pub struct Request<'a> {
    pub server: &'a Arc<ApiServer>,
    pub identity: &'a Identity,
    pub target: &'a Target,
    pub query: &'a Query,
    pub headers: &'a HeaderMap,
}

impl Request<'_> {
    fn registry(&self) -> &Registry {
        self.server.registry()
    }

    /// What the response should be; a Table's rows carry what `includeObject` asks for.
    pub(super) fn representation(&self) -> Result<Representation, ApiError> {
        let mut representation = negotiate::representation(self.headers)?;
        if let Representation::Table(form) = &mut representation {
            form.include = IncludeObject::parse(self.query.get("includeObject"))?;
        }
        Ok(representation)
    }

    fn dry_run(&self) -> Result<bool, ApiError> {
        match self.query.get("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "unsupported dryRun value {other:?}: the only supported value is \"All\""
            ))),
        }
    }

    fn field_validation(&self) -> Result<FieldValidation, ApiError> {
        match self.query.get("fieldValidation") {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid fieldValidation {other:?}: use Ignore, Warn or Strict"
            ))),
        }
    }

    /// The field manager: `fieldManager`, else (for writes other than apply) derived from
    /// the User-Agent.
    fn field_manager(&self) -> String {
        match self.query.get("fieldManager") {
            Some(manager) => manager.to_owned(),
            None => apply::default_manager(
                self.headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok()),
            ),
        }
    }

    /// The options of a write; `options_kind` names them in errors (`CreateOptions`...).
    fn write_options(
        &self,
        options_kind: &str,
        field_manager: String,
    ) -> Result<WriteOptions<'_>, ApiError> {
        let mut problems = Vec::new();
        if field_manager.len() > MAX_FIELD_MANAGER_BYTES {
            problems.push(FieldError::too_long(
                "fieldManager",
                MAX_FIELD_MANAGER_BYTES as u64,
            ));
        }
        if field_manager.chars().any(char::is_control) {
            problems.push(FieldError::invalid_value(
                "fieldManager",
                &Value::String(field_manager.clone()),
                "must only contain printable characters",
            ));
        }
        if !problems.is_empty() {
            return Err(ApiError::invalid(
                &format!("{options_kind}.meta.k8s.io"),
                "meta.k8s.io",
                options_kind,
                "",
                problems,
            ));
        }
        Ok(WriteOptions {
            user: self.identity,
            dry_run: self.dry_run()?,
            field_manager,
            field_validation: self.field_validation()?,
            admission: self.server.pipeline().admission(),
        })
    }
}

/// How much of an oversized body is read and thrown away before the 413 is sent, so that
/// a client still sending gets to read the answer instead of a reset connection.
const MAX_DISCARDED_BODY_BYTES: usize = 32 * 1024 * 1024;

/// How long the rest of an oversized body may take to arrive before the 413 is sent anyway.
const DISCARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a request body up to [`MAX_BODY_BYTES`]. A longer one is answered `413` after the
/// rest of it is read and discarded (up to [`MAX_DISCARDED_BODY_BYTES`]), so the client can
/// read the `Status`.
pub async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut collected = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(format!("the request body could not be read: {e}"))
        })?;
        if collected.len() + chunk.len() <= MAX_BODY_BYTES {
            collected.extend_from_slice(&chunk);
            continue;
        }
        let mut discarded = collected.len() + chunk.len();
        let _ = tokio::time::timeout(DISCARD_TIMEOUT, async {
            while discarded <= MAX_DISCARDED_BODY_BYTES {
                match stream.next().await {
                    Some(Ok(chunk)) => discarded += chunk.len(),
                    _ => break,
                }
            }
        })
        .await;
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    Ok(collected.freeze())
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

/// Reads a create/update body: JSON (also when no Content-Type is sent, as the Python client
/// does), YAML, or the protobuf envelope for built-in kinds.
async fn read_object(request: &Request<'_>, body: Body) -> Result<Value, ApiError> {
    let bytes = read_body(body).await?;
    let builtin = crate::registry::strategy::for_resource(&request.target.resource).is_builtin();
    match negotiate::content_type(request.headers).as_deref() {
        None | Some("") | Some("application/json") | Some("*/*") => parse_object(&bytes),
        Some("application/yaml") => parse_yaml(&bytes),
        Some(protobuf::MEDIA_TYPE) if builtin => {
            parse_object(&protobuf::decode(&request.target.resource.kind, &bytes)?)
        }
        Some(other) => Err(ApiError::unsupported_media_type(
            other,
            negotiate::BODY_TYPES,
        )),
    }
}

/// Creates a review (`SelfSubjectAccessReview` and friends): answered at once, never stored.
pub async fn review(request: &Request<'_>, body: Body) -> Result<Response, ApiError> {
    let object = read_object(request, body).await?;
    let answer = crate::pipeline::reviews::answer(
        request.server.pipeline(),
        request.identity,
        &request.target.resource,
        request.target.namespace.as_deref(),
        object,
    )?;
    Ok(json(StatusCode::CREATED, &answer))
}

/// Sets the object's apiVersion and kind to the ones served.
fn served_as(resource: &Resource, mut object: Value) -> Value {
    object["apiVersion"] = json!(resource.api_version());
    object["kind"] = json!(resource.kind);
    object
}

/// One object in the representation asked for.
fn object_response(
    status: StatusCode,
    representation: Representation,
    resource: &Resource,
    object: Value,
) -> Response {
    let object = served_as(resource, object);
    match representation {
        Representation::Table(form) => {
            let metadata = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
            json(
                status,
                &table::table(resource, form, &[object], metadata, true),
            )
        }
        _ => json(status, &object),
    }
}

/// The answer of a write: a Scale is answered as it is, objects as asked.
fn written_response(
    request: &Request<'_>,
    status: StatusCode,
    representation: Representation,
    written: Written,
) -> Response {
    let resource = &request.target.resource;
    let response = if request.target.subresource == Some(Subresource::Scale) {
        json(status, &written.object)
    } else if let (Representation::Json, Some(kv)) = (representation, &written.stored) {
        // Plain JSON of a stored object: the stored bytes with the resourceVersion spliced
        // in, instead of serializing the object a second time.
        match codec::splice_resource_version(kv, &resource.api_version(), &resource.kind) {
            Some(body) => raw_json(status, body),
            None => object_response(status, representation, resource, written.object),
        }
    } else {
        object_response(status, representation, resource, written.object)
    };
    with_warnings(response, &written.warnings)
}

pub async fn get(request: &Request<'_>) -> Result<Response, ApiError> {
    let representation = request.representation()?;
    if let Some(raw) = request.query.get("resourceVersion") {
        parse_resource_version(raw)?;
    }
    let object = match as_of_revision(request).await? {
        Some(_) if request.target.subresource.is_some() => {
            return Err(ApiError::bad_request(
                "asOf reads objects, not their subresources",
            ));
        }
        Some(revision) => request.registry().get_at(request.target, revision).await?,
        None => request.registry().get(request.target).await?,
    };
    if request.target.subresource == Some(Subresource::Scale) {
        return Ok(json(StatusCode::OK, &object));
    }
    Ok(object_response(
        StatusCode::OK,
        representation,
        &request.target.resource,
        object,
    ))
}

pub async fn create(request: &Request<'_>, body: Body) -> Result<Response, ApiError> {
    let representation = request.representation()?;
    let object = read_object(request, body).await?;
    let options = request.write_options("CreateOptions", request.field_manager())?;
    let written = request
        .registry()
        .create(request.target, object, &options)
        .await?;
    Ok(written_response(
        request,
        StatusCode::CREATED,
        representation,
        written,
    ))
}

pub async fn update(request: &Request<'_>, body: Body) -> Result<Response, ApiError> {
    let representation = request.representation()?;
    let object = read_object(request, body).await?;
    let options = request.write_options("UpdateOptions", request.field_manager())?;
    let written = request
        .registry()
        .update(request.target, object, &options)
        .await?;
    Ok(written_response(
        request,
        StatusCode::OK,
        representation,
        written,
    ))
}

pub async fn patch(request: &Request<'_>, body: Body) -> Result<Response, ApiError> {
    let representation = request.representation()?;
    let content_type = negotiate::content_type(request.headers).unwrap_or_default();
    let body = read_body(body).await?;
    let builtin = crate::registry::strategy::for_resource(&request.target.resource).is_builtin();
    if content_type == "application/apply-patch+yaml" {
        let force = request.query.flag("force")?;
        let config = parse_yaml(&body)?;
        let manager = request.query.get("fieldManager").unwrap_or("").to_owned();
        let options = request.write_options("PatchOptions", manager)?;
        let written = request
            .registry()
            .apply(request.target, config, force, &options)
            .await?;
        return Ok(written_response(
            request,
            StatusCode::OK,
            representation,
            written,
        ));
    }
    if request.query.flag("force")? {
        return Err(request.target.invalid(
            request.target.name(),
            vec![FieldError::forbidden(
                "force",
                "may not be specified for non-apply patch",
            )],
        ));
    }
    // Built-in kinds accept strategic merge patches; for the fields clients patch on them
    // (labels, annotations, finalizer lists replaced whole) a merge patch is the same.
    let merge = content_type == "application/merge-patch+json"
        || (builtin && content_type == "application/strategic-merge-patch+json");
    let patch = match content_type.as_str() {
        _ if merge => {
            let value: Value = serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request(format!("the merge patch is not valid JSON: {e}"))
            })?;
            if !value.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            Patch::Merge(value)
        }
        "application/json-patch+json" => Patch::Json(
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("the JSON patch is malformed: {e}")))?,
        ),
        other => return Err(ApiError::unsupported_media_type(other, PATCH_TYPES)),
    };
    let options = request.write_options("PatchOptions", request.field_manager())?;
    let written = request
        .registry()
        .patch(request.target, &patch, &options)
        .await?;
    Ok(written_response(
        request,
        StatusCode::OK,
        representation,
        written,
    ))
}

/// DeleteOptions from the body (optional) and the query.
fn delete_options(request: &Request<'_>, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut options = DeleteOptions {
        dry_run: request.dry_run()?,
        ..DeleteOptions::default()
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

pub async fn delete(request: &Request<'_>, body: Body) -> Result<Response, ApiError> {
    let representation = request.representation()?;
    let options = delete_options(request, &read_body(body).await?)?;
    let resource = &request.target.resource;
    let deleted = request
        .registry()
        .delete(
            request.target,
            &options,
            request.identity,
            request.server.pipeline().admission(),
        )
        .await?;
    Ok(match deleted {
        Deleted::Pending(object) => {
            object_response(StatusCode::OK, representation, resource, object)
        }
        Deleted::Removed {
            object,
            answer_with_status: true,
        } => json(
            StatusCode::OK,
            &crate::api::errors::success(json!({
                "name": object["metadata"]["name"],
                "group": resource.group,
                "kind": resource.plural,
                "uid": object["metadata"]["uid"],
            })),
        ),
        Deleted::Removed { object, .. } => {
            object_response(StatusCode::OK, representation, resource, object)
        }
    })
}

pub async fn delete_collection(request: &Request<'_>, body: Body) -> Result<Response, ApiError> {
    let resource = &request.target.resource;
    let selectors = selectors(
        resource,
        request.query.get("labelSelector"),
        request.query.get("fieldSelector"),
    )?;
    let options = delete_options(request, &read_body(body).await?)?;
    let (deleted, revision) = request
        .registry()
        .delete_collection(
            request.target,
            &selectors,
            &options,
            request.identity,
            request.server.pipeline().admission(),
        )
        .await?;
    Ok(json(
        StatusCode::OK,
        &json!({
            "apiVersion": resource.api_version(),
            "kind": resource.list_kind,
            "metadata": {"resourceVersion": revision.to_string()},
            "items": deleted,
        }),
    ))
}

/// Lists what a request selects at one revision, as a `<Kind>List` or a Table. A paged
/// list is one body; an unpaged one that did not fit in its first read is streamed
/// ([`streamed_list`]).
/// The revision an `asOf` parameter names (a fleetdb extension: an RFC 3339 time or a
/// revision), if the request has one.
async fn as_of_revision(request: &Request<'_>) -> Result<Option<Revision>, ApiError> {
    let Some(raw) = request.query.get("asOf") else {
        return Ok(None);
    };
    if request.query.has("resourceVersion") {
        return Err(ApiError::bad_request(
            "asOf and resourceVersion cannot be used together",
        ));
    }
    let as_of = AsOf::parse(raw)?;
    Ok(Some(request.registry().revision_as_of(as_of).await?))
}

/// `GET …/NAME/history`: the versions of the object still in history, a page at a time
/// from the newest (`limit`, default [`HISTORY_PAGE`]; `continue`: the token of an older
/// page).
pub async fn history(request: &Request<'_>) -> Result<Response, ApiError> {
    let limit = match request.query.number("limit")? {
        None | Some(0) => HISTORY_PAGE,
        Some(limit) => usize::try_from(limit).unwrap_or(MAX_HISTORY_ITEMS),
    };
    let before = match request.query.get("continue") {
        None | Some("") => None,
        Some(token) => match token.parse::<Revision>() {
            Ok(revision) if revision > 0 => Some(revision),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "invalid continue token {token:?}: pass the one the previous page gave"
                )));
            }
        },
    };
    let answer = request
        .registry()
        .history(request.target, before, limit)
        .await?;
    Ok(json(StatusCode::OK, &answer))
}

pub async fn list(request: &Request<'_>) -> Result<Response, ApiError> {
    let representation = request.representation()?;
    let query = request.query;
    // An `asOf` list is a list at the revision it names; a continued one already carries
    // that revision in its token.
    let as_of = if query.has("continue") {
        None
    } else {
        as_of_revision(request).await?
    };
    let options = ListOptions {
        label_selector: query.get("labelSelector").map(str::to_owned),
        field_selector: query.get("fieldSelector").map(str::to_owned),
        limit: query.number("limit")?.unwrap_or(0),
        continue_token: query.get("continue").map(str::to_owned),
        resource_version: match as_of {
            Some(revision) => Some(revision.to_string()),
            None => query.get("resourceVersion").map(str::to_owned),
        },
        resource_version_match: match as_of {
            Some(_) => Some("Exact".to_owned()),
            None => query.get("resourceVersionMatch").map(str::to_owned),
        },
        streamable: matches!(
            representation,
            Representation::Json | Representation::Table(_)
        ),
    };
    let page = request.registry().list(request.target, &options).await?;
    let resource = page.resource.clone();
    if let Some(rest) = page.rest {
        let encoding = Arc::new(match representation {
            Representation::Table(form) => Encoding::Table(TableWriter::new(&resource, form)),
            _ => Encoding::List,
        });
        return streamed_list(&resource, encoding, page.kvs, page.revision, rest).await;
    }
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(token) = &page.continue_token {
        metadata["continue"] = json!(token);
    }
    let encoding = Arc::new(match representation {
        Representation::Table(form) => Encoding::Table(TableWriter::new(&resource, form)),
        _ => Encoding::List,
    });
    let mut body = encoding.head(&resource, metadata);
    body.reserve(encoding.size(&page.kvs) + 2);
    write_page(&encoding, &resource, &mut body, page.kvs, true).await?;
    body.extend_from_slice(b"]}");
    Ok(raw_json(StatusCode::OK, body))
}

/// Fewest objects each thread gets when a page's items or rows are written on several
/// threads: below this, handing them to another thread costs more than it saves.
pub const PARALLEL_ITEMS_MIN: usize = 128;

/// Threads a page's items or rows may be written on at once: the machine's cores, at most
/// four.
fn page_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(4)
    })
}

/// Writes a page's items or rows (`first`: nothing precedes them), on several threads when
/// there are enough of them:
/// each part but the first on a blocking-pool thread, the first here, then the others
/// appended in order.
///
/// Writing a page is the CPU-bound part of answering a client that pages (kubectl asks for
/// 500 objects at a time, and for the next page only once it has this one): reading each
/// stored object's columns for a Table row, splicing its resourceVersion for a list item.
/// On one thread the other cores wait; under load from many clients every core is busy
/// anyway, and the split costs one copy of each part.
async fn write_page(
    encoding: &Arc<Encoding>,
    resource: &Arc<Resource>,
    out: &mut Vec<u8>,
    mut kvs: Vec<fleetdb_store::KeyValue>,
    first: bool,
) -> Result<(), ApiError> {
    let parts = page_threads().min(kvs.len() / PARALLEL_ITEMS_MIN).max(1);
    let per_part = kvs.len().div_ceil(parts);
    let mut others = Vec::with_capacity(parts - 1);
    for start in (1..parts).rev().map(|i| i * per_part) {
        let objects = kvs.split_off(start.min(kvs.len()));
        let (encoding, resource) = (encoding.clone(), resource.clone());
        others.push(tokio::task::spawn_blocking(move || {
            let mut part = Vec::with_capacity(encoding.size(&objects));
            encoding
                .write(&mut part, &resource, objects, false)
                .map(|()| part)
        }));
    }
    encoding.write(out, resource, kvs, first)?;
    // The last part was split off first: append in key order.
    for task in others.into_iter().rev() {
        let part = task
            .await
            .map_err(|e| ApiError::internal(format!("writing a page failed: {e}")))??;
        out.extend_from_slice(&part);
    }
    Ok(())
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

/// What a streamed list's producer sends: a piece of the body, or the failure that cuts it.
type ListChunk = Result<Bytes, std::io::Error>;

/// How a streamed list is written: a `<Kind>List` of the objects, or a Table of their rows.
enum Encoding {
    List,
    Table(TableWriter),
}

impl Encoding {
    /// Everything up to the first item or row.
    fn head(&self, resource: &Resource, metadata: Value) -> Vec<u8> {
        match self {
            Encoding::List => list_head(resource, metadata),
            Encoding::Table(writer) => writer.head(metadata),
        }
    }

    /// About how many bytes the items or rows of `kvs` take.
    fn size(&self, kvs: &[fleetdb_store::KeyValue]) -> usize {
        match self {
            Encoding::List => codec::items_size(kvs),
            Encoding::Table(writer) => writer.rows_size(kvs),
        }
    }

    /// Appends items or rows for `kvs`; `first`: nothing precedes them.
    fn write(
        &self,
        out: &mut Vec<u8>,
        resource: &Resource,
        kvs: Vec<fleetdb_store::KeyValue>,
        first: bool,
    ) -> Result<(), ApiError> {
        match self {
            Encoding::List => {
                codec::write_items(out, &resource.api_version(), &resource.kind, kvs, first)
            }
            Encoding::Table(writer) => writer.write_rows(out, &kvs, first),
        }
    }
}

/// An unpaged list (plain JSON or a Table) that did not fit in its first read, as a streamed
/// body: the envelope (`resourceVersion` only: no continue token without `limit`) and the
/// first read's items at once, then each further chunk ([`LIST_STREAM_PAGE`] objects or
/// [`LIST_CHUNK_BYTES`]) read at the list's revision by a task, then `]}`. The task keeps at
/// most [`LIST_STREAM_CHUNKS`] encoded chunks waiting for the connection and stops when the
/// client goes away. A failure after the 200 header ends the body with an error — the client
/// sees a truncated response — and is logged, as kube-apiserver does.
async fn streamed_list(
    resource: &Arc<Resource>,
    encoding: Arc<Encoding>,
    first: Vec<fleetdb_store::KeyValue>,
    revision: fleetdb_store::Revision,
    rest: Cursor,
) -> Result<Response, ApiError> {
    let mut head = encoding.head(resource, json!({"resourceVersion": revision.to_string()}));
    head.reserve(encoding.size(&first));
    write_page(&encoding, resource, &mut head, first, true).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<ListChunk>(LIST_STREAM_CHUNKS);
    tx.try_send(Ok(head.into()))
        .expect("a new channel has room for one chunk");
    tokio::spawn(produce_chunks(resource.clone(), encoding, rest, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("a valid response"))
}

/// Reads and encodes a streamed list's chunks until the end, the client leaving, or a
/// failure.
async fn produce_chunks(
    resource: Arc<Resource>,
    encoding: Arc<Encoding>,
    mut cursor: Cursor,
    tx: tokio::sync::mpsc::Sender<ListChunk>,
) {
    loop {
        let read = tokio::select! {
            biased;
            () = tx.closed() => return,
            read = cursor.next_chunk(LIST_STREAM_PAGE, LIST_CHUNK_BYTES) => read,
        };
        let chunk = match read {
            Ok(Some(kvs)) => {
                let mut chunk = Vec::with_capacity(encoding.size(&kvs));
                write_page(&encoding, &resource, &mut chunk, kvs, false)
                    .await
                    .map(|()| chunk)
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
                    resource = %resource.qualified(),
                    revision = cursor.revision,
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
