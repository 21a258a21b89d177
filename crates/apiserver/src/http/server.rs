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
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::extensions::Extension;
use super::router::dispatch;
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

/// Everything a request may need, assembled once.
pub struct ApiServer {
    registry: Arc<Registry>,
    pipeline: Pipeline,
    extensions: RwLock<Vec<Arc<dyn Extension>>>,
    server_address: String,
    ready: AtomicBool,
    shutdown: watch::Sender<bool>,
}

impl ApiServer {
    /// Builds the layers over `store`, loads the CRDs, creates the initial namespaces and
    /// starts the server's controllers (which resume pending namespace clean-ups).
    pub async fn new(store: Arc<dyn Store>, server_address: String) -> Result<Arc<Self>, ApiError> {
        Self::with_pipeline(store, server_address, Pipeline::default()).await
    }

    /// [`ApiServer::new`] with the given authorization and admission.
    pub async fn with_pipeline(
        store: Arc<dyn Store>,
        server_address: String,
        pipeline: Pipeline,
    ) -> Result<Arc<Self>, ApiError> {
        let (shutdown, signal) = watch::channel(false);
        let storage = Arc::new(Storage::new(store, signal));
        let catalog = Arc::new(Catalog::new(&[]));
        definitions::reload(&storage, &catalog).await;
        let registry = Arc::new(Registry::new(storage, catalog));
        controllers::namespaces::ensure_initial(&registry).await?;
        controllers::namespaces::spawn(registry.clone());
        controllers::definitions::spawn(registry.clone());
        Ok(Arc::new(ApiServer {
            registry,
            pipeline,
            extensions: RwLock::new(Vec::new()),
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
    let pki =
        crate::pki::ensure(&config.data_dir, &host, &server_url).map_err(|e| e.to_string())?;
    let tls =
        super::tls::server_config(&pki.ca_cert_pem, &pki.server_cert_pem, &pki.server_key_pem)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let server = ApiServer::new(store, format!("{url_host}:{}", local.port()))
        .await
        .map_err(|e| format!("cannot initialise the API: {e}"))?;
    server.set_ready(false);
    server.add_extensions(config.extensions);
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
                .and_then(authn::from_certificate)
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
