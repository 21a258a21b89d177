//! The server: its state (assembled from every layer below), the TLS listener and the
//! connections it serves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use fleetdb_store::Store;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::extensions::Extension;
use super::router::dispatch;
use super::webapp::WebApp;
use crate::api::{ApiError, Catalog, Identity};
use crate::controllers;
use crate::pipeline::{Pipeline, authn};
use crate::registry::extension::ExtensionContext;
use crate::registry::{Registry, definitions};
use crate::storage::Storage;

/// A TLS handshake must finish within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, in-flight requests get this long to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent HTTP/2 streams per connection (client-go multiplexes watches on one).
const MAX_CONCURRENT_STREAMS: u32 = 1000;
/// Default of [`Limits::header_read_timeout`]: an HTTP/1.1 connection must send a request's
/// headers within this time — the first request's, and each next one's on a kept-alive
/// connection — or it is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 connections are pinged this often when quiet...
pub const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// ...and closed when a ping is not answered within this time.
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server lets clients hold, each a named default and a `fleetdb serve` flag.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections, all clients together; beyond it new connections are closed at once.
    pub max_connections: usize,
    /// Open connections without a client certificate (they reach only health and version).
    pub max_anonymous_connections: usize,
    /// How long a connection without a client certificate may stay open.
    pub anonymous_connection_lifetime: Duration,
    /// Requests one identity may have in flight (watches excepted); beyond it `429`.
    /// Members of `system:masters` are exempt from this and the next limit.
    pub max_requests_in_flight_per_user: usize,
    /// Watches one identity may have open; beyond it `429`.
    pub max_watches_per_user: usize,
    /// Watches one identity may start per second (with a burst of
    /// [`WATCH_START_BURST`]); beyond it `429`. Each start sends the resource's current
    /// objects, so a client starting watches in a loop would otherwise cost as much as
    /// listing everything in a loop.
    pub watch_starts_per_second_per_user: f64,
    /// How long an HTTP/1.1 connection may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long an Event lives after it was last seen (`--event-ttl`; see
    /// `controllers::event_ttl`).
    pub event_ttl: Duration,
}

/// Default of [`Limits::max_connections`].
pub const MAX_CONNECTIONS: usize = 20_000;
/// Default of [`Limits::max_anonymous_connections`].
pub const MAX_ANONYMOUS_CONNECTIONS: usize = 512;
/// Default of [`Limits::anonymous_connection_lifetime`].
pub const ANONYMOUS_CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// Default of [`Limits::max_requests_in_flight_per_user`].
pub const MAX_REQUESTS_IN_FLIGHT_PER_USER: usize = 256;
/// Default of [`Limits::max_watches_per_user`]: room for a controller's watches, not for a
/// client opening them in a loop (each watch of a whole resource costs work on every change).
pub const MAX_WATCHES_PER_USER: usize = 200;
/// Default of [`Limits::watch_starts_per_second_per_user`].
pub const WATCH_STARTS_PER_SECOND_PER_USER: f64 = 1.0;
/// Watches one identity may start at once before the per-second rate applies.
pub const WATCH_START_BURST: usize = 5;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            max_anonymous_connections: MAX_ANONYMOUS_CONNECTIONS,
            anonymous_connection_lifetime: ANONYMOUS_CONNECTION_LIFETIME,
            max_requests_in_flight_per_user: MAX_REQUESTS_IN_FLIGHT_PER_USER,
            max_watches_per_user: MAX_WATCHES_PER_USER,
            watch_starts_per_second_per_user: WATCH_STARTS_PER_SECOND_PER_USER,
            header_read_timeout: HEADER_READ_TIMEOUT,
            event_ttl: controllers::event_ttl::DEFAULT_EVENT_TTL,
        }
    }
}

/// How requests are authorized and admitted beyond Kubernetes' defaults: the embedding
/// program's admission plugins (after RBAC's escalation prevention) and the roles and
/// bindings it bootstraps (after Kubernetes' defaults).
#[derive(Clone, Default)]
pub struct Security {
    pub admission: Vec<Arc<dyn crate::registry::Admission>>,
    pub bootstrap: Vec<Value>,
    /// The audit log, when one is kept.
    pub audit: Option<Arc<super::audit::AuditLog>>,
    /// The program's certificate signers and approvers (the client signer
    /// `kubernetes.io/kube-apiserver-client` is always served).
    pub certificates: crate::controllers::certificates::Certificates,
}

/// The address a request came from (set on each request by the connection that carries it).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// Everything a request may need, assembled once.
pub struct ApiServer {
    registry: Arc<Registry>,
    pipeline: Pipeline,
    /// Requests in flight and watches open, per identity.
    pub(crate) requests: super::fairness::PerUser,
    pub(crate) watches: super::fairness::PerUser,
    pub(crate) watch_starts: super::fairness::RatePerUser,
    extensions: RwLock<Vec<Arc<dyn Extension>>>,
    web_apps: RwLock<Vec<Arc<dyn WebApp>>>,
    /// The OpenAPI documents of the current catalog snapshot, serialized once.
    pub(crate) openapi: super::openapi::Cache,
    audit: Option<Arc<super::audit::AuditLog>>,
    server_address: String,
    ready: AtomicBool,
    shutdown: watch::Sender<bool>,
}

impl ApiServer {
    /// Builds the layers over `store`, loads the CRDs, creates the initial namespaces and
    /// starts the server's controllers (which resume pending namespace clean-ups).
    pub async fn new(store: Arc<dyn Store>, server_address: String) -> Result<Arc<Self>, ApiError> {
        Self::with(
            store,
            server_address,
            Security::default(),
            &Limits::default(),
        )
        .await
    }

    /// [`ApiServer::new`] with the program's admission and policy, and limits.
    pub async fn with(
        store: Arc<dyn Store>,
        server_address: String,
        security: Security,
        limits: &Limits,
    ) -> Result<Arc<Self>, ApiError> {
        let (shutdown, signal) = watch::channel(false);
        let storage = Arc::new(Storage::new(store, signal));
        let catalog = Arc::new(Catalog::new(&[]));
        definitions::reload(&storage, &catalog).await;
        let registry = Arc::new(Registry::new(storage, catalog));
        controllers::namespaces::ensure_initial(&registry).await?;
        let mut defaults = controllers::policy::kubernetes_defaults();
        defaults.extend(security.bootstrap);
        controllers::policy::ensure_defaults(&registry, &defaults).await?;
        controllers::namespaces::spawn(registry.clone());
        controllers::definitions::spawn(registry.clone());
        controllers::policy::spawn(registry.clone());
        controllers::event_ttl::spawn(registry.clone(), limits.event_ttl);
        let pipeline = Pipeline::new(registry.policy().clone(), security.admission);
        let audit = security.audit;
        Ok(Arc::new(ApiServer {
            registry,
            pipeline,
            requests: super::fairness::PerUser::new(limits.max_requests_in_flight_per_user),
            watches: super::fairness::PerUser::new(limits.max_watches_per_user),
            watch_starts: super::fairness::RatePerUser::new(
                limits.watch_starts_per_second_per_user,
                WATCH_START_BURST,
            ),
            extensions: RwLock::new(Vec::new()),
            web_apps: RwLock::new(Vec::new()),
            openapi: Default::default(),
            audit,
            server_address,
            ready: AtomicBool::new(true),
            shutdown,
        }))
    }

    /// The registry (for in-process callers and tests).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The audit log, when one is kept.
    pub fn audit(&self) -> Option<&Arc<super::audit::AuditLog>> {
        self.audit.as_ref()
    }

    /// The address clients reach the server at (`host:port`).
    pub fn server_address(&self) -> &str {
        &self.server_address
    }

    /// Adds endpoints of the embedding program.
    pub fn add_extensions(&self, extensions: Vec<Arc<dyn Extension>>) {
        self.extensions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(extensions);
    }

    /// The extension answering `path`, if any.
    pub(crate) fn extension(&self, path: &str) -> Option<Arc<dyn Extension>> {
        self.extensions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|e| e.path() == path)
            .cloned()
    }

    /// Adds web applications of the embedding program.
    pub fn add_web_apps(&self, apps: Vec<Arc<dyn WebApp>>) {
        self.web_apps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(apps);
    }

    /// The web application whose prefix `path` is under, if any.
    pub(crate) fn web_app(&self, path: &str) -> Option<Arc<dyn WebApp>> {
        self.web_apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|app| {
                path.strip_prefix(app.prefix())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .cloned()
    }

    /// Turns `true` when the server begins to shut down.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// What extensions are handed.
    pub(crate) fn extension_context(&self) -> ExtensionContext {
        ExtensionContext::new(self.registry.clone())
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Tells every watch and background task to stop.
    pub fn begin_shutdown(&self) {
        self.set_ready(false);
        let _ = self.shutdown.send(true);
    }
}

/// Creates the given CRDs, or updates their spec when it changed (the built-in kinds of the
/// product that embeds this server). Goes through the normal request path, so the CRDs are
/// validated and established like any other.
pub async fn install_definitions(server: &Arc<ApiServer>, crds: &[Value]) -> Result<(), String> {
    let system = Identity::system("system:fleetdb");
    let collection = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let request = |method: Method, uri: String, body: &Value| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(axum::http::header::CONTENT_TYPE, "application/json")
            .header(axum::http::header::USER_AGENT, "fleetdb")
            .body(Body::from(body.to_string()))
            .expect("a valid request")
    };
    for crd in crds {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
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
        let bytes = axum::body::to_bytes(current.into_body(), super::MAX_BODY_BYTES)
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
    /// Host names clients reach the server by, for its certificate (all of them: every
    /// replica's, when replicas share the PKI) and the kubeconfig (the first); none: the
    /// listen address.
    pub advertise_hosts: Vec<String>,
    /// Where the CA and the server's and administrator's certificates live (default
    /// `DATA_DIR/pki`); replicas given the same one share one identity.
    pub pki_dir: Option<std::path::PathBuf>,
    /// CRDs to install (or update) at start-up, before the server reports ready.
    pub definitions: Vec<Value>,
    /// Extra endpoints of the embedding program.
    pub extensions: Vec<Arc<dyn Extension>>,
    /// Web applications of the embedding program, each under its path prefix.
    pub web_apps: Vec<Arc<dyn WebApp>>,
    /// What clients may hold.
    pub limits: Limits,
    /// The program's admission plugins and default roles and bindings.
    pub security: Security,
}

/// A server listening and serving until `shutdown` completes.
pub async fn serve(
    store: Arc<dyn Store>,
    mut config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), String> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let host = config.advertise_hosts.first().cloned().unwrap_or_else(|| {
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
    let pki_dir = config
        .pki_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("pki"));
    let mut names = config.advertise_hosts.clone();
    if names.is_empty() {
        names.push(host.clone());
    }
    let pki = crate::pki::ensure(
        &pki_dir,
        &config.data_dir.join("admin.kubeconfig"),
        &names,
        &server_url,
    )
    .map_err(|e| e.to_string())?;
    let tls = super::tls::server_tls(&pki.ca_cert_pem, &pki.server_cert_pem, &pki.server_key_pem)?;
    let limits = config.limits.clone();
    let mut certificates = std::mem::take(&mut config.security.certificates);
    certificates
        .signers
        .insert(0, Arc::new(crate::controllers::certificates::ClientSigner));
    let server = ApiServer::with(
        store,
        format!("{url_host}:{}", local.port()),
        config.security,
        &limits,
    )
    .await
    .map_err(|e| format!("cannot initialise the API: {e}"))?;
    server.set_ready(false);
    let authority = crate::pki::Authority::load(&pki_dir).map_err(|e| e.to_string())?;
    crate::controllers::certificates::spawn(crate::controllers::certificates::Controller::new(
        server.registry().clone(),
        Arc::new(authority),
        certificates,
    ));
    server.add_extensions(config.extensions);
    server.add_web_apps(config.web_apps);
    install_definitions(&server, &config.definitions).await?;
    server.set_ready(true);
    tracing::info!(
        url = %server_url,
        "fleetdb is serving; use it with: kubectl --kubeconfig {} get namespaces",
        pki.admin_kubeconfig.display()
    );

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(HTTP2_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(HTTP2_KEEPALIVE_TIMEOUT);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let anonymous = Arc::new(Semaphore::new(limits.max_anonymous_connections));
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
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection refused: too many open connections");
            continue;
        };
        // As Go's servers do: without it the last segment of a response waits for the
        // client's delayed ACK (40 ms on Linux) whenever an earlier one is unacknowledged.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
        }
        let tls = tls.clone();
        let server = server.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let anonymous = anonymous.clone();
        let anonymous_lifetime = limits.anonymous_connection_lifetime;
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&tls, stream)).await {
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
                .and_then(authn::from_certificate)
                .unwrap_or_else(Identity::anonymous);
            let anonymous_permit = if identity.is_anonymous() {
                match anonymous.try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        tracing::debug!(%peer, "connection refused: too many without a certificate");
                        return;
                    }
                }
            } else {
                None
            };
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let server = server.clone();
                    let identity = identity.clone();
                    async move {
                        let mut request = request.map(Body::new);
                        request.extensions_mut().insert(Peer(peer));
                        // Boxed: hyper keeps each stream's service future inside the task
                        // that then sends the response body, sized for the larger of the
                        // two for as long as the body lasts (a watch: hours). Boxed, the
                        // handling's state is freed when the response is ready.
                        let response = Box::pin(dispatch(server, identity, request)).await;
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            let connection = watcher.watch(connection.into_owned());
            let ended = match anonymous_permit {
                // Without a certificate a connection may ask for health and version only:
                // it gets a short life.
                Some(_permit) => match tokio::time::timeout(anonymous_lifetime, connection).await {
                    Ok(ended) => ended,
                    Err(_) => Ok(()),
                },
                None => connection.await,
            };
            if let Err(error) = ended {
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
    if let Some(audit) = server.audit() {
        let audit = audit.clone();
        let _ = tokio::task::spawn_blocking(move || audit.flush()).await;
    }
    Ok(())
}

/// The TLS handshake of an accepted connection, with the configuration its ClientHello calls
/// for ([`super::tls::ServerTls::for_client`]).
pub(crate) async fn handshake<S>(
    tls: &super::tls::ServerTls,
    stream: S,
) -> std::io::Result<tokio_rustls::server::TlsStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let start =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    let config = tls.for_client(&start.client_hello());
    start.into_stream(config).await
}
