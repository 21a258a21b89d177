//! Endpoints the embedding program adds (e.g. Prometheus discovery at `/sd/prometheus`):
//! authenticated, authorized as a non-resource path, answered from the typed
//! [`ExtensionContext`] — never store keys or the server's internals.

use crate::api::ApiError;
pub use crate::registry::extension::{Change, Changes, ExtensionContext, Objects, StoredObject};

use super::query::Query;

/// An extension's answer.
pub struct ExtensionResponse {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl ExtensionResponse {
    /// A JSON answer.
    pub fn json(value: &serde_json::Value) -> Self {
        Self {
            content_type: "application/json",
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }
}

/// An extra endpoint answering GETs of one path.
#[async_trait::async_trait]
pub trait Extension: Send + Sync + 'static {
    /// The exact path it answers, e.g. `/sd/prometheus`.
    fn path(&self) -> &'static str;
    /// Answers a GET of the path.
    async fn handle(
        &self,
        context: &ExtensionContext,
        query: &Query,
    ) -> Result<ExtensionResponse, ApiError>;
}
