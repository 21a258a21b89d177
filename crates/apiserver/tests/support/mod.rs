//! What the in-process API tests share: a store wrapper that counts range reads and fails
//! reads on demand, the widget CRD they serve, and the administrator identity.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use fleetdb_apiserver::tls::Identity;
use fleetdb_store::{
    Condition, Deleted, GetManyResponse, GetResponse, KeyValue, RangeRequest, RangeResponse,
    Revision, Store, StoreError, WatchStream,
};

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
    async fn put(
        &self,
        key: &str,
        value: Bytes,
        condition: Condition,
    ) -> fleetdb_store::Result<KeyValue> {
        self.inner.put(key, value, condition).await
    }
    async fn delete(&self, key: &str, condition: Condition) -> fleetdb_store::Result<Deleted> {
        self.inner.delete(key, condition).await
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
"served":true,"storage":true,"schema":{"openAPIV3Schema":
{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}]}}"#;

pub const WIDGETS: &str = "/apis/example.com/v1/widgets";
pub const PREFIX: &str = "/registry/example.com/widgets/";

pub fn admin() -> Identity {
    Identity {
        user: "fleetdb-admin".into(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
    }
}
