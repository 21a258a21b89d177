//! Routing: public health and version paths; then, for everyone authenticated and
//! authorized, discovery, OpenAPI, extensions and resource paths (`/api/v1/...`,
//! `/apis/G/V/[namespaces/NS/]PLURAL[/NAME[/SUBRESOURCE]]`).

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::negotiate::{self, AGGREGATED_DISCOVERY, Representation};
use super::query::Query;
use super::responses::{json, raw_json, text};
use super::server::ApiServer;
use super::{audit, discovery, openapi_v2, resources, watch};
use crate::api::{ApiError, Identity, Kind, Snapshot};
use crate::pipeline::{Attributes, Impersonation, authn};
use crate::registry::{Subresource, Target};

/// The version this server reports; kubectl's dispatcher picks its binary by it.
pub const VERSION_MAJOR: &str = "1";
pub const VERSION_MINOR: &str = "33";

/// The `/version` document.
pub fn version_info() -> Value {
    json!({
        "major": VERSION_MAJOR,
        "minor": VERSION_MINOR,
        "gitVersion": crate::VERSION_GIT,
        "gitCommit": "fleetdb",
        "gitTreeState": "clean",
        "buildDate": "2026-11-22T00:00:00Z",
        "goVersion": "n/a (fleetdb is written in Rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}

/// Answers one request (and, when the server keeps an audit log, records it).
pub async fn dispatch(
    server: Arc<ApiServer>,
    identity: Identity,
    request: Request<Body>,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if let Some(app) = server.web_app(&path) {
        // Its own pages and sessions; what it asks of the API comes back through here.
        let context = super::webapp::WebContext::new(server.clone(), identity);
        return app.handle(context, request).await;
    }
    let response = match server.audit().cloned() {
        None => route(&server, &identity, request, None)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Some(log) => audited(&server, &identity, request, log).await,
    };
    tracing::debug!(%method, %path, user = %identity.user, status = response.status().as_u16(), "request");
    response
}

/// Routes a request and writes its audit events: `RequestReceived` and (for watches)
/// `ResponseStarted` when the answer starts, `ResponseComplete` when its body is done.
async fn audited(
    server: &Arc<ApiServer>,
    identity: &Identity,
    request: Request<Body>,
    log: Arc<audit::AuditLog>,
) -> Response {
    use futures::StreamExt;
    let (user_agent, audit_id) = {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (header("user-agent"), header("audit-id"))
    };
    let record = Arc::new(audit::Record::new(
        log.clone(),
        request.method().as_str(),
        request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        user_agent,
        request
            .extensions()
            .get::<super::server::Peer>()
            .map(|peer| peer.0.ip().to_string()),
        identity,
        audit_id,
    ));
    let request = if log.policy().records_bodies() && request.method() != Method::GET {
        let kept = record.clone();
        request.map(|body| {
            Body::from_stream(body.into_data_stream().map(move |chunk| {
                if let Ok(bytes) = &chunk {
                    kept.keep_request_chunk(bytes);
                }
                chunk
            }))
        })
    } else {
        request
    };
    let mut response = match route(server, identity, request, Some(&record)).await {
        Ok(response) => response,
        Err(error) => {
            let response = error.clone().into_response();
            record.noted.lock().unwrap_or_else(|e| e.into_inner()).error = Some(error);
            response
        }
    };
    if let Ok(id) = header::HeaderValue::from_str(record.id()) {
        response.headers_mut().insert("audit-id", id);
    }
    let decision = record.decision();
    if decision.level == audit::Level::None {
        return response;
    }
    let code = response.status().as_u16();
    record.emit(&decision, audit::Stage::RequestReceived, code, None);
    let watching = record
        .noted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .attributes
        .as_ref()
        .is_some_and(|a| a.verb == "watch");
    if watching {
        record.emit(&decision, audit::Stage::ResponseStarted, code, None);
    }
    let keep_response = decision.level >= audit::Level::RequestResponse;
    let (parts, body) = response.into_parts();
    use axum::body::HttpBody;
    if body.size_hint().exact().is_some() {
        // The whole answer is at hand: complete now.
        let bytes = if keep_response {
            match axum::body::to_bytes(body, usize::MAX).await {
                Ok(bytes) => bytes,
                Err(_) => axum::body::Bytes::new(),
            }
        } else {
            record.emit(&decision, audit::Stage::ResponseComplete, code, None);
            return Response::from_parts(parts, body);
        };
        record.emit(
            &decision,
            audit::Stage::ResponseComplete,
            code,
            Some(&bytes),
        );
        return Response::from_parts(parts, Body::from(bytes));
    }
    // A streamed answer (lists, watches): complete when the stream ends or the client
    // leaves.
    let completion = Completion {
        record,
        decision,
        code,
        kept: keep_response.then(Vec::new),
        oversized: false,
    };
    let completion = Arc::new(Mutex::new(completion));
    let body = Body::from_stream(body.into_data_stream().map(move |chunk| {
        if let Ok(bytes) = &chunk {
            completion
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keep(bytes);
        }
        chunk
    }));
    Response::from_parts(parts, body)
}

/// The `ResponseComplete` event of a streamed answer, written when the stream is dropped.
struct Completion {
    record: Arc<audit::Record>,
    decision: audit::Decision,
    code: u16,
    /// The body so far, when the event records it (`None` past the bound).
    kept: Option<Vec<u8>>,
    oversized: bool,
}

impl Completion {
    fn keep(&mut self, bytes: &[u8]) {
        if let Some(kept) = &mut self.kept {
            if kept.len() + bytes.len() > audit::MAX_AUDITED_BODY_BYTES {
                // Too large to record: the event says so.
                self.oversized = true;
                self.kept = None;
            } else {
                kept.extend_from_slice(bytes);
            }
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        // An oversized body is handed over as one byte too many, which the event notes
        // as left out.
        let oversized = vec![b' '; audit::MAX_AUDITED_BODY_BYTES + 1];
        let body = if self.oversized {
            Some(oversized.as_slice())
        } else {
            self.kept.as_deref()
        };
        self.record.emit(
            &self.decision,
            audit::Stage::ResponseComplete,
            self.code,
            body,
        );
    }
}

/// Notes what routing learns, for the request's audit event.
fn note(audit: Option<&audit::Record>, change: impl FnOnce(&mut audit::Noted)) {
    if let Some(record) = audit {
        change(&mut record.noted.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// The Kubernetes verb of a resource request.
fn verb(method: &Method, named: bool, watch: bool) -> &'static str {
    match (method, named) {
        (&Method::GET, true) => "get",
        (&Method::GET, false) if watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    }
}

/// Authorizes a request for a path that is not a resource.
fn authorize_path(
    server: &ApiServer,
    identity: &Identity,
    method: &Method,
    path: &str,
    audit: Option<&audit::Record>,
) -> Result<(), ApiError> {
    authorize(
        server,
        identity,
        Attributes::path(&method.as_str().to_ascii_lowercase(), path),
        audit,
    )
}

/// Authorizes a request, noting the attributes and the decision for its audit event.
fn authorize(
    server: &ApiServer,
    identity: &Identity,
    attributes: Attributes,
    audit: Option<&audit::Record>,
) -> Result<(), ApiError> {
    let result = server.pipeline().authorize(identity, &attributes);
    note(audit, |noted| {
        noted.decision = Some(match &result {
            Ok(reason) => ("allow", reason.clone()),
            Err(_) => ("forbid", String::new()),
        });
        noted.attributes = Some(attributes);
    });
    result.map(drop)
}

/// The identity a request asks to act as (`Impersonate-*` headers).
/// The bearer token of an `Authorization` header.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Who a request acts as: the connection's certificate or the bearer token, checked
/// (`401` when neither authenticates, or the certificate is revoked), then the identity it
/// impersonates when it asks to and may.
pub(crate) async fn authenticate(
    server: &ApiServer,
    identity: &Identity,
    headers: &HeaderMap,
    audit: Option<&audit::Record>,
) -> Result<Identity, ApiError> {
    let identity = match bearer_token(headers) {
        Some(token) if identity.is_anonymous() => {
            let by_token = authenticate_token(server, token).await?;
            note(audit, |noted| noted.authenticated = Some(by_token.clone()));
            by_token
        }
        _ => identity.clone(),
    };
    server.pipeline().authenticate(&identity)?;
    let impersonated = server
        .pipeline()
        .impersonate(&identity, &impersonation(headers)?)?;
    note(audit, |noted| noted.impersonated = impersonated.clone());
    Ok(impersonated.unwrap_or(identity))
}

/// The identity a bearer token authenticates (bootstrap tokens: the only kind the server
/// knows); `401` for any other token, as kube-apiserver answers a token no authenticator
/// accepts.
async fn authenticate_token(server: &ApiServer, token: &str) -> Result<Identity, ApiError> {
    let (id, secret) = authn::parse_bootstrap_token(token).ok_or_else(ApiError::unauthorized)?;
    let resource = server
        .registry()
        .catalog()
        .snapshot()
        .get("", "v1", "secrets")
        .ok_or_else(ApiError::unauthorized)?;
    let target = Target::object(
        resource,
        Some(authn::TOKEN_NAMESPACE.into()),
        format!("{}{id}", authn::TOKEN_SECRET_PREFIX),
    );
    let stored = match server.registry().get(&target).await {
        Ok(stored) => stored,
        Err(error) if error.code == 404 => return Err(ApiError::unauthorized()),
        Err(error) => return Err(error),
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    authn::from_bootstrap_secret(&stored, id, secret, now).ok_or_else(|| {
        tracing::debug!(token = id, "refused a bootstrap token");
        ApiError::unauthorized()
    })
}

fn impersonation(headers: &HeaderMap) -> Result<Impersonation, ApiError> {
    let mut asked = Impersonation::default();
    for (name, value) in headers {
        let name = name.as_str();
        let Some(part) = name.strip_prefix("impersonate-") else {
            continue;
        };
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request(format!("the {name} header is not text")))?
            .to_owned();
        match part {
            "user" => asked.user = Some(value),
            "group" => asked.groups.push(value),
            "uid" => asked.uid = Some(value),
            other => {
                let Some(key) = other.strip_prefix("extra-") else {
                    return Err(ApiError::bad_request(format!(
                        "unknown impersonation header {name}"
                    )));
                };
                let key = percent_decode(key).unwrap_or_else(|| key.to_owned());
                asked
                    .extra
                    .entry(key.to_lowercase())
                    .or_default()
                    .push(value);
            }
        }
    }
    Ok(asked)
}

/// `%XX` escapes decoded (impersonated extra keys are escaped that way); `None` when
/// malformed.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// How long `/readyz` waits for the store to answer a linearizable read.
pub const READYZ_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `/readyz` (or one of its checks, `/readyz/<check>`), as kube-apiserver answers it: `ok`
/// when every check passes (each check on its line with `?verbose`), otherwise 500 with each
/// check on its line (`[-]store failed: reason withheld`, the reason in the server's log)
/// and `readyz check failed`. The checks: `ping`; `started` (start-up finished, not shutting
/// down); `store` (a linearizable read of the store answered within
/// [`READYZ_STORE_TIMEOUT`] — on etcd, a quorum answers).
async fn readyz(server: &ApiServer, path: &str, verbose: bool) -> Response {
    let only = path.strip_prefix("/readyz/");
    let wanted = |check: &str| only.is_none_or(|o| o == check);
    let mut checks: Vec<(&str, Result<(), String>)> = Vec::new();
    if wanted("ping") {
        checks.push(("ping", Ok(())));
    }
    if wanted("started") {
        let started = if server.is_ready() {
            Ok(())
        } else {
            Err("starting or shutting down".to_owned())
        };
        checks.push(("started", started));
    }
    if wanted("store") {
        let store = server.registry().storage().store().clone();
        let read = tokio::time::timeout(READYZ_STORE_TIMEOUT, store.current_revision()).await;
        let store = match read {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!(
                "no answer within {} s",
                READYZ_STORE_TIMEOUT.as_secs()
            )),
        };
        checks.push(("store", store));
    }
    let failed = checks.iter().any(|(_, r)| r.is_err());
    if !failed && !verbose {
        return text(StatusCode::OK, "ok");
    }
    let mut body = String::new();
    for (name, result) in &checks {
        match result {
            Ok(()) => body.push_str(&format!("[+]{name} ok\n")),
            Err(reason) => {
                tracing::warn!(check = name, %reason, "readyz check failed");
                body.push_str(&format!("[-]{name} failed: reason withheld\n"));
            }
        }
    }
    let (status, verdict) = if failed {
        (StatusCode::INTERNAL_SERVER_ERROR, "readyz check failed")
    } else {
        (StatusCode::OK, "readyz check passed")
    };
    body.push_str(verdict);
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `/openapi/v2`, `/openapi/v3` and `/openapi/v3/<group version>`, from the documents of
/// the current snapshot.
fn openapi_document(
    server: &ApiServer,
    snapshot: &Arc<Snapshot>,
    rest: &[&str],
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let documents = server.openapi.documents(snapshot);
    let (body, content_type) = match rest {
        ["v2"] => {
            let not_modified = headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|tags| tags.split(',').any(|t| t.trim() == documents.v2_etag));
            let accept = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let protobuf = accept.contains(openapi_v2::PROTOBUF)
                || accept.contains(openapi_v2::PROTOBUF_LEGACY);
            let mut response = if not_modified {
                StatusCode::NOT_MODIFIED.into_response()
            } else if protobuf {
                (
                    [(header::CONTENT_TYPE, openapi_v2::PROTOBUF_LEGACY)],
                    documents.v2_protobuf.clone(),
                )
                    .into_response()
            } else {
                raw_json(StatusCode::OK, documents.v2_json.clone())
            };
            let etag = documents.v2_etag.parse().expect("a valid header value");
            response.headers_mut().insert(header::ETAG, etag);
            response
                .headers_mut()
                .insert(header::VARY, header::HeaderValue::from_static("Accept"));
            return Ok(response);
        }
        ["v3"] => (documents.v3_index.clone(), "application/json"),
        ["v3", key @ ..] => {
            let body = documents
                .v3
                .get(&key.join("/"))
                .ok_or_else(ApiError::no_such_path)?;
            (body.clone(), "application/json")
        }
        _ => return Err(ApiError::no_such_path()),
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// `/api` or `/apis`: aggregated discovery when asked for, the legacy documents otherwise.
fn discovery_root(
    server: &ApiServer,
    snapshot: &Snapshot,
    core: bool,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    Ok(match negotiate::representation(headers)? {
        Representation::AggregatedDiscovery(version) => {
            let body = discovery::aggregated(snapshot, core, version);
            let content_type = AGGREGATED_DISCOVERY.replace("v=v2", &format!("v={version}"));
            let mut response = json(StatusCode::OK, &body);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                content_type.parse().expect("a valid header value"),
            );
            response
        }
        _ if core => json(
            StatusCode::OK,
            &discovery::core_versions(server.server_address()),
        ),
        _ => json(StatusCode::OK, &discovery::groups(snapshot)),
    })
}

async fn route(
    server: &Arc<ApiServer>,
    identity: &Identity,
    request: Request<Body>,
    audit: Option<&audit::Record>,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let raw_path = parts.uri.path();
    let path = if raw_path.len() > 1 {
        raw_path.trim_end_matches('/')
    } else {
        raw_path
    };
    let query = Query::parse(parts.uri.query());
    let headers = &parts.headers;
    let method = &parts.method;
    // Public paths.
    note(audit, |noted| {
        noted.attributes = Some(Attributes::path(
            &method.as_str().to_ascii_lowercase(),
            path,
        ))
    });
    match path {
        "/healthz" | "/livez" | "/healthz/ping" | "/livez/ping" => {
            return Ok(text(StatusCode::OK, "ok"));
        }
        "/readyz" | "/readyz/ping" | "/readyz/started" | "/readyz/store" => {
            return Ok(readyz(server, path, query.has("verbose")).await);
        }
        "/version" => return Ok(json(StatusCode::OK, &version_info())),
        _ => {}
    }
    let identity = &authenticate(server, identity, headers, audit).await?;
    // Watches are long-running and counted apart (`watch.rs`); everything else holds one of
    // its user's request slots while it is answered.
    let _slot = if *method == Method::GET && query.flag("watch").unwrap_or(false) {
        None
    } else {
        server.requests.acquire(identity, "requests in flight")?
    };
    let get_only = || -> Result<(), ApiError> {
        if *method == Method::GET {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed(method.as_str(), path))
        }
    };
    if let Some(extension) = server.extension(path) {
        authorize_path(server, identity, method, path, audit)?;
        get_only()?;
        let answer = extension
            .handle(&server.extension_context(), &query)
            .await?;
        let mut response = raw_json(StatusCode::OK, answer.body);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(answer.content_type),
        );
        return Ok(response);
    }
    let snapshot = server.registry().catalog().snapshot();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    // Discovery and OpenAPI: paths, not resources.
    let document = match segments.as_slice() {
        [""] => Some(
            json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2", "/openapi/v3", "/readyz", "/version"]}),
        ),
        ["api"] | ["apis"] => {
            authorize_path(server, identity, method, path, audit)?;
            get_only()?;
            return discovery_root(server, &snapshot, path == "/api", headers);
        }
        ["openapi", ..] => {
            authorize_path(server, identity, method, path, audit)?;
            get_only()?;
            return openapi_document(server, &snapshot, &segments[1..], headers);
        }
        ["apis", group] => {
            Some(discovery::group(&snapshot, group).ok_or_else(ApiError::no_such_path)?)
        }
        ["api", "v1"] => {
            Some(discovery::resource_list(&snapshot, "", "v1").ok_or_else(ApiError::no_such_path)?)
        }
        ["apis", group, version] => Some(
            discovery::resource_list(&snapshot, group, version)
                .ok_or_else(ApiError::no_such_path)?,
        ),
        _ => None,
    };
    if let Some(document) = document {
        authorize_path(server, identity, method, path, audit)?;
        get_only()?;
        return Ok(json(StatusCode::OK, &document));
    }

    let (group, version, rest): (&str, &str, &[&str]) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group, version, rest @ ..] => (group, version, rest),
        _ => return Err(ApiError::no_such_path()),
    };
    // [namespaces, ns, plural, name?, sub?] or [plural, name?, sub?].
    let namespaced_path = rest.len() >= 3
        && rest[0] == "namespaces"
        && !(group.is_empty() && rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    let (namespace, plural, name, subresource) = if namespaced_path {
        (
            Some(rest[1]),
            rest[2],
            rest.get(3).copied(),
            rest.get(4).copied(),
        )
    } else {
        (None, rest[0], rest.get(1).copied(), rest.get(2).copied())
    };
    if rest.len() > if namespaced_path { 5 } else { 3 } {
        return Err(ApiError::no_such_path());
    }
    let resource = snapshot
        .get(group, version, plural)
        .ok_or_else(ApiError::no_such_path)?;
    if namespace.is_some() && !resource.namespaced {
        return Err(ApiError::no_such_path());
    }
    // `…/NAME/history`: the object's versions (a fleetdb extension), authorized as `get` on
    // the `history` subresource so that roles grant it apart from the object itself.
    let history = subresource == Some("history") && name.is_some();
    let subresource = match subresource {
        None => None,
        Some("history") if history => None,
        Some("status") if resource.status_subresource => Some(Subresource::Status),
        Some("scale") if resource.scale.is_some() => Some(Subresource::Scale),
        Some("approval") if resource.approval_subresource => Some(Subresource::Approval),
        Some(_) => return Err(ApiError::no_such_path()),
    };
    let watching = *method == Method::GET && name.is_none() && query.flag("watch")?;
    // A list or watch of one object by `fieldSelector=metadata.name=X` is authorized as a
    // request for that name (so `resourceNames` rules allow it), as kube-apiserver does.
    let selected_name = if *method == Method::GET && name.is_none() {
        query
            .get("fieldSelector")
            .and_then(|selector| fleetdb_machinery::selectors::FieldSelector::parse(selector).ok())
            .and_then(|selector| selector.exact("metadata.name").map(str::to_owned))
            .filter(|n| fleetdb_machinery::rbac::validation::name_problems(n).is_empty())
    } else {
        None
    };
    if resource.kind_tag == Kind::Review && !(*method == Method::POST && name.is_none()) {
        return Err(ApiError::method_not_allowed(
            &method.as_str().to_ascii_lowercase(),
            &resource.qualified(),
        ));
    }
    authorize(
        server,
        identity,
        Attributes {
            verb: verb(method, name.is_some(), watching).to_owned(),
            resource_request: true,
            api_group: group.to_owned(),
            api_version: version.to_owned(),
            resource: plural.to_owned(),
            subresource: if history {
                "history".to_owned()
            } else {
                subresource
                    .map(Subresource::name)
                    .unwrap_or_default()
                    .to_owned()
            },
            namespace: namespace.unwrap_or_default().to_owned(),
            name: name
                .map(str::to_owned)
                .or(selected_name)
                .unwrap_or_default(),
            path: path.to_owned(),
        },
        audit,
    )?;
    let target = Target {
        resource: resource.clone(),
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        subresource,
    };
    let request = resources::Request {
        server,
        identity,
        target: &target,
        query: &query,
        headers,
    };
    if resource.kind_tag == Kind::Review {
        return resources::review(&request, body).await;
    }
    if history {
        get_only()?;
        return resources::history(&request).await;
    }
    match (method.clone(), target.name.is_some()) {
        (Method::GET, true) => resources::get(&request).await,
        (Method::GET, false) if watching => watch::watch(&request).await,
        (Method::GET, false) => resources::list(&request).await,
        (Method::POST, false) => {
            if resource.namespaced && target.namespace.is_none() {
                return Err(ApiError::no_such_path());
            }
            resources::create(&request, body).await
        }
        (Method::PUT, true) => resources::update(&request, body).await,
        (Method::PATCH, true) => resources::patch(&request, body).await,
        (Method::DELETE, true) => resources::delete(&request, body).await,
        (Method::DELETE, false) => resources::delete_collection(&request, body).await,
        (method, _) => {
            let verb = match method {
                Method::POST => "create",
                Method::PUT => "update",
                Method::PATCH => "patch",
                _ => method.as_str(),
            };
            Err(ApiError::method_not_allowed(verb, &resource.qualified()))
        }
    }
}
