//! Web applications of the embedding program served by the same listener under a path
//! prefix (fleetdb's UI under `/ui`). Such an application answers its own requests — its
//! pages, its sessions — and touches the API only through [`WebContext`]: as an identity the
//! API authenticated, through the same authorization, admission and audit as any client,
//! or through the typed [`ExtensionContext`] after asking the authorizer.

use std::sync::Arc;

use axum::http::{HeaderMap, Request};
use axum::response::{IntoResponse, Response};

pub use axum::body::Body;

use super::server::ApiServer;
use crate::api::{ApiError, Identity};
use crate::pipeline::{Attributes, Decision};
use crate::registry::extension::ExtensionContext;

/// An application answering every path under [`WebApp::prefix`].
#[async_trait::async_trait]
pub trait WebApp: Send + Sync + 'static {
    /// Its path prefix without a trailing slash, e.g. `/ui`: it answers that path and every
    /// path below it.
    fn prefix(&self) -> &'static str;
    /// Answers one request; `context` knows who the connection authenticated as.
    async fn handle(&self, context: WebContext, request: Request<Body>) -> Response;
}

/// What a web application may do with the API.
#[derive(Clone)]
pub struct WebContext {
    server: Arc<ApiServer>,
    connection: Identity,
}

impl WebContext {
    pub(crate) fn new(server: Arc<ApiServer>, connection: Identity) -> Self {
        Self { server, connection }
    }

    /// Who the request is from as the API would authenticate it — its client certificate
    /// or bearer token, impersonation headers honoured — or the API's `401`/`403`.
    pub async fn caller(&self, headers: &HeaderMap) -> Result<Identity, ApiError> {
        super::router::authenticate(&self.server, &self.connection, headers, None).await
    }

    /// Answers `request` as an API request made by `identity`: authenticated again
    /// (revoked certificates stop working at once), authorized, admitted and audited like
    /// any client's.
    pub async fn api(&self, identity: &Identity, request: Request<Body>) -> Response {
        super::router::dispatch(self.server.clone(), identity.clone(), request).await
    }

    /// Whether `identity` may do `verb` on `resource` (a `SubjectAccessReview`, answered
    /// by the same authorizer as requests; revoked certificates may do nothing).
    pub fn allowed(&self, identity: &Identity, attributes: &Attributes) -> bool {
        self.server.pipeline().authenticate(identity).is_ok()
            && matches!(
                self.server.pipeline().decide(identity, attributes),
                Decision::Allow(_)
            )
    }

    /// [`WebContext::allowed`], or the API's `403` with kube-apiserver's wording.
    pub fn authorize(&self, identity: &Identity, attributes: &Attributes) -> Result<(), ApiError> {
        self.server.pipeline().authenticate(identity)?;
        self.server
            .pipeline()
            .authorize(identity, attributes)
            .map(|_| ())
    }

    /// Typed access to stored objects, for views the API has no query for (free-text
    /// search, sorting a whole kind); callers check [`WebContext::allowed`] first.
    pub fn objects(&self) -> ExtensionContext {
        self.server.extension_context()
    }

    /// Whether the server is shutting down (long answers end then).
    pub fn shutting_down(&self) -> tokio::sync::watch::Receiver<bool> {
        self.server.shutdown_signal()
    }
}

/// The whole of a body, or `None` past `limit` bytes or on a broken stream.
pub async fn body_bytes(body: Body, limit: usize) -> Option<axum::body::Bytes> {
    axum::body::to_bytes(body, limit).await.ok()
}

/// An error as the API would answer it (a Kubernetes `Status`).
pub fn error_response(error: ApiError) -> Response {
    error.into_response()
}
