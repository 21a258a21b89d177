//! What the in-process API tests share: a server on a real store (embedded, or a real etcd)
//! called through the real router, a store wrapper that counts range reads and fails reads
//! on demand, the widget CRD they serve, and the administrator identity.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode};
use bytes::Bytes;
use fleetdb_apiserver::storage::Feed;
use fleetdb_apiserver::{ApiServer, Identity, dispatch};
use fleetdb_store::embedded::EmbeddedStore;
use fleetdb_store::etcd::{EtcdOptions, EtcdStore};
use fleetdb_store::{
    Condition, Deleted, GetManyResponse, GetResponse, KeyValue, RangeRequest, RangeResponse,
    Revision, Store, StoreError, Version, WatchStream,
};
use fleetdb_testkit::EtcdServer;
use serde_json::Value;

/// A store counting range reads, failing reads on demand.
pub struct Faulty {
    pub inner: Arc<dyn Store>,
    pub ranges: AtomicUsize,
    /// Fail every read.
    pub fail_all: AtomicBool,
    /// Fail ranges that continue from a key, and `get_many` (what a list reads after its
    /// first page).
    pub fail_continued: AtomicBool,
}

impl Faulty {
    /// `inner`, counted, failing nothing until told to.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            ranges: AtomicUsize::new(0),
            fail_all: AtomicBool::new(false),
            fail_continued: AtomicBool::new(false),
        }
    }

    fn failure() -> StoreError {
        StoreError::Unavailable("injected failure".into())
    }
}

#[async_trait]
impl Store for Faulty {
    async fn current_revision(&self) -> fleetdb_store::Result<Revision> {
        if self.fail_all.load(Ordering::SeqCst) {
            return Err(Self::failure());
        }
        self.inner.current_revision().await
    }
    async fn compacted_revision(&self) -> fleetdb_store::Result<Revision> {
        self.inner.compacted_revision().await
    }
    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> fleetdb_store::Result<GetResponse> {
        self.inner.get(key, revision).await
    }
    async fn range(&self, request: RangeRequest) -> fleetdb_store::Result<RangeResponse> {
        self.ranges.fetch_add(1, Ordering::SeqCst);
        if self.fail_all.load(Ordering::SeqCst)
            || (request.from_key.is_some() && self.fail_continued.load(Ordering::SeqCst))
        {
            return Err(Self::failure());
        }
        self.inner.range(request).await
    }
    async fn get_many(
        &self,
        keys: &[String],
        revision: Option<Revision>,
    ) -> fleetdb_store::Result<GetManyResponse> {
        if self.fail_all.load(Ordering::SeqCst) || self.fail_continued.load(Ordering::SeqCst) {
            return Err(Self::failure());
        }
        self.inner.get_many(keys, revision).await
    }
    async fn changed_keys(
        &self,
        prefix: &str,
        after: Revision,
        until: Revision,
        with_deleted: bool,
        limit: usize,
    ) -> fleetdb_store::Result<Option<Vec<String>>> {
        self.inner
            .changed_keys(prefix, after, until, with_deleted, limit)
            .await
    }
    async fn put_noted(
        &self,
        key: &str,
        value: Bytes,
        condition: Condition,
        note: Bytes,
    ) -> fleetdb_store::Result<KeyValue> {
        self.inner.put_noted(key, value, condition, note).await
    }
    async fn delete_noted(
        &self,
        key: &str,
        condition: Condition,
        note: Bytes,
    ) -> fleetdb_store::Result<Deleted> {
        self.inner.delete_noted(key, condition, note).await
    }
    async fn history(
        &self,
        key: &str,
        before: Option<Revision>,
        limit: usize,
    ) -> fleetdb_store::Result<Vec<Version>> {
        self.inner.history(key, before, limit).await
    }
    async fn revision_at(&self, time_millis: i64) -> fleetdb_store::Result<Revision> {
        self.inner.revision_at(time_millis).await
    }
    async fn watch(&self, prefix: &str, after: Revision) -> fleetdb_store::Result<WatchStream> {
        self.inner.watch(prefix, after).await
    }
    async fn compact(&self, revision: Revision) -> fleetdb_store::Result<()> {
        self.inner.compact(revision).await
    }
    fn oldest_watch_position(&self) -> Option<Revision> {
        self.inner.oldest_watch_position()
    }
}

pub const CRD: &str = r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
"metadata":{"name":"widgets.example.com"},"spec":{"group":"example.com","scope":"Namespaced",
"names":{"plural":"widgets","singular":"widget","kind":"Widget"},"versions":[{"name":"v1",
"served":true,"storage":true,"subresources":{"status":{}},"schema":{"openAPIV3Schema":
{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}]}}"#;

pub const WIDGETS: &str = "/apis/example.com/v1/widgets";
pub const PREFIX: &str = "/registry/example.com/widgets/";

pub fn admin() -> Identity {
    Identity::new("fleetdb-admin", &["system:masters", "system:authenticated"])
}

/// A server over a real store (wrapped in [`Faulty`]), called in-process through the router.
pub struct TestServer {
    pub server: Arc<ApiServer>,
    pub store: Arc<Faulty>,
    pub dir: tempfile::TempDir,
    _etcd: Option<EtcdServer>,
}

impl TestServer {
    /// A server on the embedded store.
    pub async fn embedded() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        Self::serving(Arc::new(store), dir, None).await
    }

    /// A server on the embedded store with the given limits.
    pub async fn embedded_with_limits(limits: &fleetdb_apiserver::Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Faulty::new(Arc::new(
            EmbeddedStore::open(dir.path()).unwrap(),
        )));
        let server = ApiServer::with(
            store.clone(),
            "127.0.0.1:6443".into(),
            fleetdb_apiserver::Security::default(),
            limits,
        )
        .await
        .unwrap();
        Self {
            server,
            store,
            dir,
            _etcd: None,
        }
    }

    /// A server on a real etcd.
    pub async fn on_etcd() -> Self {
        let etcd = EtcdServer::start();
        let store = EtcdStore::connect(EtcdOptions::new(vec![etcd.client_url().to_owned()]))
            .await
            .unwrap();
        Self::serving(Arc::new(store), tempfile::tempdir().unwrap(), Some(etcd)).await
    }

    async fn serving(
        inner: Arc<dyn Store>,
        dir: tempfile::TempDir,
        etcd: Option<EtcdServer>,
    ) -> Self {
        let store = Arc::new(Faulty::new(inner));
        let server = ApiServer::new(store.clone(), "127.0.0.1:6443".into())
            .await
            .unwrap();
        Self {
            server,
            store,
            dir,
            _etcd: etcd,
        }
    }

    /// Another server over the same store (a restart), sharing this one's directory.
    pub fn over(server: Arc<ApiServer>, store: Arc<Faulty>) -> Self {
        Self {
            server,
            store,
            dir: tempfile::tempdir().unwrap(),
            _etcd: None,
        }
    }

    /// Creates the widget CRD ([`CRD`]).
    pub async fn install_widgets(&self) {
        let (status, body) = self
            .call(
                Method::POST,
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                serde_json::from_str(CRD).unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// A GET as the administrator, answered as it comes.
    pub async fn request(&self, uri: &str) -> Response<Body> {
        let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
        dispatch(self.server.clone(), admin(), request).await
    }

    /// A request as the administrator (PATCH bodies are merge patches; `Null` sends no
    /// body); the status and the JSON answer (`Null` when it is not JSON).
    pub async fn call(&self, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
        let headers: &[(&str, &str)] = if method == Method::PATCH {
            &[("content-type", "application/merge-patch+json")]
        } else {
            &[]
        };
        let (status, _, body) = self.call_with(admin(), method, uri, headers, body).await;
        (status, body)
    }

    /// A request as anyone, with headers; the status, headers and JSON answer.
    pub async fn call_with(
        &self,
        identity: Identity,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = if body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        };
        let response = dispatch(self.server.clone(), identity, request.body(body).unwrap()).await;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 256 << 20)
            .await
            .unwrap();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The widgets' shared watch-cache feed.
    pub async fn feed(&self) -> Arc<Feed> {
        self.server.registry().storage().feed(PREFIX).await.unwrap()
    }

    /// Range reads the store has served.
    pub fn ranges(&self) -> usize {
        self.store.ranges.load(Ordering::SeqCst)
    }
}

/// The next page of a list: `uri` with the continue token, and without the
/// `resourceVersion` and `resourceVersionMatch` that Kubernetes forbids beside one.
pub fn continued(uri: &str, token: &str) -> String {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("resourceVersion"))
        .collect();
    let continue_param = format!("continue={token}");
    params.push(&continue_param);
    format!("{path}?{}", params.join("&"))
}

/// A response body as JSON.
pub async fn body_json(response: Response<Body>) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}
