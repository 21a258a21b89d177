//! The HTTPS server: accepts TLS connections, authenticates them by client certificate, and
//! routes every request — health, version, discovery, OpenAPI, resources.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use fleetdb_store::{RangeRequest, Store};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::negotiate::{self, AGGREGATED_DISCOVERY, Representation};
use crate::query::Query;
use crate::registry::Registry;
use crate::rest::{self, Target, json_response, store_error};
use crate::status::ApiError;
use crate::tls::{Identity, identity_of};
use crate::{discovery, objects, openapi, pki, strategy, watch as watches};

/// The version this server reports; kubectl's dispatcher picks its binary by it.
pub const VERSION_MAJOR: &str = "1";
pub const VERSION_MINOR: &str = "33";

/// A TLS handshake must finish within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, in-flight requests get this long to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent HTTP/2 streams per connection (client-go multiplexes watches on one).
const MAX_CONCURRENT_STREAMS: u32 = 1000;

/// An extra authenticated endpoint the embedding program adds (e.g. Prometheus discovery);
/// it may use the server's store and watch cache, never its internals.
#[async_trait::async_trait]
pub trait Extension: Send + Sync + 'static {
    /// The exact path it answers, e.g. `/sd/prometheus`.
    fn path(&self) -> &'static str;
    /// Answers a GET of the path.
    async fn handle(&self, server: Arc<ApiServer>, query: Query) -> Result<Response, ApiError>;
}

/// State shared by every request.
pub struct ApiServer {
    pub store: Arc<dyn Store>,
    pub registry: Registry,
    pub watch_cache: crate::watch_cache::WatchCache,
    extensions: std::sync::RwLock<Vec<Arc<dyn Extension>>>,
    server_address: String,
    ready: AtomicBool,
    shutdown: watch::Sender<bool>,
    /// Weak self-reference for spawning background work from request handlers.
    myself: std::sync::Weak<ApiServer>,
}

impl ApiServer {
    /// Loads the CRDs, creates the initial namespaces and resumes pending namespace clean-ups.
    pub async fn new(store: Arc<dyn Store>, server_address: String) -> Result<Arc<Self>, ApiError> {
        let (shutdown, _) = watch::channel(false);
        let server = Arc::new_cyclic(|myself| ApiServer {
            watch_cache: crate::watch_cache::WatchCache::new(store.clone()),
            extensions: std::sync::RwLock::new(Vec::new()),
            store,
            registry: Registry::new(&[]),
            server_address,
            ready: AtomicBool::new(false),
            shutdown,
            myself: myself.clone(),
        });
        server.reload_definitions().await;
        server.create_initial_namespaces().await?;
        server.resume_namespace_cleanups().await?;
        server.spawn_definition_watch();
        server.ready.store(true, Ordering::Release);
        Ok(server)
    }

    /// Adds endpoints of the embedding program.
    pub fn add_extensions(&self, extensions: Vec<Arc<dyn Extension>>) {
        self.extensions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(extensions);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Tells every watch and background task to stop.
    pub fn begin_shutdown(&self) {
        self.ready.store(false, Ordering::Release);
        let _ = self.shutdown.send(true);
    }

    /// Rebuilds the registry from the stored CRDs.
    pub async fn reload_definitions(&self) {
        let resource = crate::registry::custom_resource_definitions();
        let mut crds = Vec::new();
        let mut from_key = None;
        let mut revision = None;
        loop {
            let page = match self
                .store
                .range(RangeRequest {
                    prefix: resource.key_prefix(None),
                    from_key: from_key.take(),
                    revision,
                    ..Default::default()
                })
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::error!(%error, "cannot read the custom resource definitions");
                    return;
                }
            };
            revision = Some(page.revision);
            crds.extend(page.kvs.iter().filter_map(|kv| objects::decode(kv).ok()));
            match (page.more, page.kvs.last()) {
                (true, Some(last)) => from_key = Some(format!("{}\0", last.key)),
                _ => break,
            }
        }
        self.registry.rebuild(&crds);
    }

    /// Keeps the registry current when CRDs change elsewhere (another process on the same etcd).
    fn spawn_definition_watch(&self) {
        let Some(server) = self.myself.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            use futures::StreamExt;
            let prefix = crate::registry::custom_resource_definitions().key_prefix(None);
            let mut shutdown = server.shutdown_signal();
            loop {
                let after = match server.store.current_revision().await {
                    Ok(revision) => revision,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                server.reload_definitions().await;
                let Ok(mut changes) = server.store.watch(&prefix, after).await else {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                loop {
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        change = changes.next() => match change {
                            Some(Ok(_)) => server.reload_definitions().await,
                            _ => break,
                        },
                    }
                }
            }
        });
    }

    async fn create_initial_namespaces(&self) -> Result<(), ApiError> {
        let namespaces = crate::registry::namespaces();
        for name in strategy::INITIAL_NAMESPACES {
            let object = json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": name,
                    "uid": uuid::Uuid::new_v4().to_string(),
                    "creationTimestamp": objects::now_timestamp(),
                    "labels": {"kubernetes.io/metadata.name": name},
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            });
            match self
                .store
                .put(
                    &namespaces.key(None, name),
                    objects::encode(&object),
                    fleetdb_store::Condition::Absent,
                )
                .await
            {
                Ok(_) | Err(fleetdb_store::StoreError::PreconditionFailed { .. }) => {}
                Err(e) => return Err(store_error(e)),
            }
        }
        Ok(())
    }

    async fn resume_namespace_cleanups(&self) -> Result<(), ApiError> {
        let namespaces = crate::registry::namespaces();
        let page = self
            .store
            .range(RangeRequest {
                prefix: namespaces.key_prefix(None),
                ..Default::default()
            })
            .await
            .map_err(store_error)?;
        for kv in page.kvs {
            let object = objects::decode(&kv)?;
            if object["metadata"]["deletionTimestamp"].is_string()
                && let Some(name) = objects::name(&object)
            {
                self.start_namespace_cleanup(name.to_owned());
            }
        }
        Ok(())
    }

    /// Starts emptying and removing a terminating namespace in the background.
    pub fn start_namespace_cleanup(&self, namespace: String) {
        if let Some(server) = self.myself.upgrade() {
            tokio::spawn(strategy::run_namespace_cleanup(server, namespace));
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

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

/// Routes one request.
pub async fn dispatch(
    server: Arc<ApiServer>,
    identity: Identity,
    request: Request<Body>,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = route(&server, &identity, request)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    tracing::debug!(%method, %path, user = %identity.user, status = response.status().as_u16(), "request");
    response
}

async fn route(
    server: &Arc<ApiServer>,
    identity: &Identity,
    request: Request<Body>,
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
    // Public paths.
    match path {
        "/healthz" | "/livez" | "/healthz/ping" | "/livez/ping" => {
            return Ok(text(StatusCode::OK, "ok"));
        }
        "/readyz" | "/readyz/ping" => {
            return Ok(if server.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "ok")
            } else {
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "[-]store not ready\nreadyz check failed",
                )
            });
        }
        "/version" => return Ok(json_response(StatusCode::OK, &version_info())),
        _ => {}
    }
    if identity.is_anonymous() {
        return Err(ApiError::unauthorized());
    }
    let extension = server
        .extensions
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|e| e.path() == path)
        .cloned();
    if let Some(extension) = extension {
        if parts.method != Method::GET {
            return Err(ApiError::method_not_allowed(parts.method.as_str(), path));
        }
        return extension.handle(server.clone(), query).await;
    }
    let snapshot = server.registry.snapshot();
    let get_only = || -> Result<(), ApiError> {
        if parts.method == Method::GET {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed(parts.method.as_str(), path))
        }
    };
    match path {
        "/" => {
            get_only()?;
            return Ok(json_response(
                StatusCode::OK,
                &json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v3", "/readyz", "/version"]}),
            ));
        }
        "/api" | "/apis" => {
            get_only()?;
            let core = path == "/api";
            return Ok(match negotiate::representation(headers)? {
                Representation::AggregatedDiscovery(version) => {
                    let body = discovery::aggregated(&snapshot, core, version);
                    let content_type =
                        AGGREGATED_DISCOVERY.replace("v=v2", &format!("v={version}"));
                    let mut response = json_response(StatusCode::OK, &body);
                    response.headers_mut().insert(
                        axum::http::header::CONTENT_TYPE,
                        content_type.parse().expect("a valid header value"),
                    );
                    response
                }
                _ if core => json_response(
                    StatusCode::OK,
                    &discovery::core_versions(&server.server_address),
                ),
                _ => json_response(StatusCode::OK, &discovery::groups(&snapshot)),
            });
        }
        "/openapi/v3" => {
            get_only()?;
            return Ok(json_response(StatusCode::OK, &openapi::index(&snapshot)));
        }
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/openapi/v3/") {
        get_only()?;
        let (group, version) = match rest.split('/').collect::<Vec<_>>().as_slice() {
            ["api", version] => (String::new(), (*version).to_owned()),
            ["apis", group, version] => ((*group).to_owned(), (*version).to_owned()),
            _ => return Err(ApiError::no_such_path()),
        };
        if !snapshot
            .groups()
            .get(&group)
            .is_some_and(|v| v.contains(&version))
        {
            return Err(ApiError::no_such_path());
        }
        return Ok(json_response(
            StatusCode::OK,
            &openapi::document(&snapshot, &group, &version),
        ));
    }

    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group] => {
            get_only()?;
            return discovery::group(&snapshot, group)
                .map(|g| json_response(StatusCode::OK, &g))
                .ok_or_else(ApiError::no_such_path);
        }
        ["apis", group, version, rest @ ..] => (group, version, rest),
        _ => return Err(ApiError::no_such_path()),
    };
    if rest.is_empty() {
        get_only()?;
        return discovery::resource_list(&snapshot, group, version)
            .map(|list| json_response(StatusCode::OK, &list))
            .ok_or_else(ApiError::no_such_path);
    }
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
    if let Some(sub) = subresource
        && !((sub == "status" && resource.status_subresource)
            || (sub == "scale" && resource.scale.is_some()))
    {
        return Err(ApiError::no_such_path());
    }
    let target = Target {
        resource: resource.clone(),
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    };
    match (parts.method.clone(), target.name.is_some()) {
        (Method::GET, true) => rest::get(server, &target, headers).await,
        (Method::GET, false) if query.flag("watch")? => {
            watches::watch(server.clone(), &target, &query, headers).await
        }
        (Method::GET, false) => rest::list(server, &target, &query, headers).await,
        (Method::POST, false) => {
            if resource.namespaced && target.namespace.is_none() {
                return Err(ApiError::no_such_path());
            }
            rest::create(server, &target, &query, headers, body).await
        }
        (Method::PUT, true) => rest::update(server, &target, &query, headers, body).await,
        (Method::PATCH, true) => rest::patch(server, &target, &query, headers, body).await,
        (Method::DELETE, true) => rest::delete(server, &target, &query, headers, body).await,
        (Method::DELETE, false) => {
            rest::delete_collection(server, &target, &query, headers, body).await
        }
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

/// Creates the given CRDs, or updates their spec when it changed (the built-in kinds of the
/// product that embeds this server). Goes through the normal request path, so the CRDs are
/// validated and established like any other.
pub async fn install_definitions(server: &Arc<ApiServer>, crds: &[Value]) -> Result<(), String> {
    let system = Identity {
        user: "system:fleetdb".into(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
    };
    let collection = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    for crd in crds {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        let request = |method: Method, uri: String, body: &Value| {
            Request::builder()
                .method(method)
                .uri(uri)
                .header(axum::http::header::CONTENT_TYPE, "application/json")
                .header(axum::http::header::USER_AGENT, "fleetdb")
                .body(Body::from(body.to_string()))
                .expect("a valid request")
        };
        let created = dispatch(
            server.clone(),
            system.clone(),
            request(Method::POST, collection.into(), crd),
        )
        .await;
        match created.status() {
            StatusCode::CREATED => continue,
            StatusCode::CONFLICT => {}
            status => return Err(format!("cannot install the CRD {name}: {status}")),
        }
        let current = dispatch(
            server.clone(),
            system.clone(),
            Request::builder()
                .uri(format!("{collection}/{name}"))
                .body(Body::empty())
                .expect("a valid request"),
        )
        .await;
        let bytes = axum::body::to_bytes(current.into_body(), crate::rest::MAX_BODY_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        let mut current: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if current["spec"] == crd["spec"] {
            continue;
        }
        current["spec"] = crd["spec"].clone();
        let updated = dispatch(
            server.clone(),
            system.clone(),
            request(Method::PUT, format!("{collection}/{name}"), &current),
        )
        .await;
        if !updated.status().is_success() {
            return Err(format!(
                "cannot update the CRD {name}: {}",
                updated.status()
            ));
        }
        tracing::info!(%name, "updated a built-in custom resource definition");
    }
    Ok(())
}

/// Where and how to serve.
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Host name for the server certificate and the kubeconfig, when not the listen address.
    pub advertise_host: Option<String>,
    /// CRDs to install (or update) at start-up, before the server reports ready.
    pub definitions: Vec<Value>,
    /// Extra endpoints of the embedding program.
    pub extensions: Vec<Arc<dyn Extension>>,
}

/// A server listening and serving until `shutdown` completes.
pub async fn serve(
    store: Arc<dyn Store>,
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), String> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let host = config.advertise_host.clone().unwrap_or_else(|| {
        if local.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            local.ip().to_string()
        }
    });
    let url_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let server_url = format!("https://{url_host}:{}", local.port());
    let pki = pki::ensure(&config.data_dir, &host, &server_url).map_err(|e| e.to_string())?;
    let tls =
        crate::tls::server_config(&pki.ca_cert_pem, &pki.server_cert_pem, &pki.server_key_pem)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let server = ApiServer::new(store, format!("{url_host}:{}", local.port()))
        .await
        .map_err(|e| format!("cannot initialise the API: {e}"))?;
    server.ready.store(false, Ordering::Release);
    server.add_extensions(config.extensions);
    install_definitions(&server, &config.definitions).await?;
    server.ready.store(true, Ordering::Release);
    tracing::info!(
        url = %server_url,
        "fleetdb is serving; use it with: kubectl --kubeconfig {} get namespaces",
        pki.admin_kubeconfig.display()
    );

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let server = server.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(identity_of)
                .unwrap_or_else(Identity::anonymous);
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let server = server.clone();
                    let identity = identity.clone();
                    async move {
                        let request = request.map(Body::new);
                        Ok::<_, std::convert::Infallible>(dispatch(server, identity, request).await)
                    }
                });
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            let connection = watcher.watch(connection.into_owned());
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    tracing::info!("shutting down: closing watches and draining requests");
    server.begin_shutdown();
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some requests did not finish within {DRAIN_TIMEOUT:?}");
    }
    Ok(())
}
