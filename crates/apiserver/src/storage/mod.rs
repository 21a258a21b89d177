//! The storage layer: objects as stored under their keys, read the cheapest exact way, and
//! watched through one shared feed per resource.
//!
//! * [`codec`]: an object's JSON as stored (without `resourceVersion`, which is the key's
//!   `mod_revision`) and as read back.
//! * [`select`]: what a list, a watch's snapshot or a deletecollection reads — the one key a
//!   field selector pins, the label index's candidates, or a scan of the prefix.
//! * [`label_index`]: per resource, which objects carry which labels.
//! * [`watch_cache`]: one store watch per resource shared by every watcher.
//!
//! Storage layout: `/registry/<group or core>/<plural>/[<namespace>/]<name>` (the catalog's
//! [`crate::api::Resource::key`]). This layer knows keys, bytes and selectors; what an object
//! means (its kind's rules) is the registry's business.

pub mod codec;
pub mod label_index;
pub mod select;
pub mod watch_cache;

use std::sync::Arc;

use bytes::Bytes;
use fleetdb_store::{Condition, Deleted, KeyValue, Revision, Scan, Store, StoreError};
use tokio::sync::watch;

use crate::api::ApiError;
pub use select::{SelectRequest, Selection, Selectors, select};
pub use watch_cache::{
    CachedEvent, Feed, Replay, Subscription, WATCH_CACHE_EVENTS, WatchCache, Which,
};

/// Keys read from the store per step of a scan.
pub const STORE_PAGE: usize = 1000;

/// The store with what the server keeps beside it: the watch cache (and the label indexes
/// its feeds maintain) and the shutdown signal its background tasks follow.
pub struct Storage {
    store: Arc<dyn Store>,
    watch_cache: WatchCache,
    shutdown: watch::Receiver<bool>,
    /// Held while the feeds are matched to the served resources, so that two catalog
    /// reloads never interleave (one closing a feed the other then starts again).
    feeds_sync: tokio::sync::Mutex<()>,
}

impl Storage {
    pub fn new(store: Arc<dyn Store>, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            watch_cache: WatchCache::new(store.clone()),
            store,
            shutdown,
            feeds_sync: tokio::sync::Mutex::new(()),
        }
    }

    /// The store itself.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Whether the server is shutting down (background work stops).
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// A receiver that changes when the server starts shutting down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// The shared feed of the resource stored under `prefix`, started if needed.
    pub async fn feed(&self, prefix: &str) -> Result<Arc<Feed>, ApiError> {
        self.watch_cache
            .feed(prefix, self.shutdown.clone())
            .await
            .map_err(ApiError::from_store)
    }

    /// Matches the watch-cache feeds to the resources `served` (their store prefixes) names,
    /// computed under the lock this takes, so that concurrent reloads apply one after the
    /// other, each with the catalog as it is then: closes the feeds of the others, starts
    /// the missing ones. Returns how many were closed.
    pub async fn sync_feeds(
        &self,
        served: impl Fn() -> std::collections::HashSet<String>,
    ) -> usize {
        let _one_at_a_time = self.feeds_sync.lock().await;
        let served = served();
        let closed = self.watch_cache.release_unserved(&served);
        self.start_feeds(&served).await;
        closed
    }

    /// Starts the watch-cache feeds of `served` (store prefixes) that have none, as
    /// kube-apiserver starts its watch caches with the server: a client that lists and then
    /// watches finds its revision in the shared history, rather than in a store watch of its
    /// own, even when it is the resource's first watcher. A feed that cannot start is logged
    /// and left to its first watch.
    async fn start_feeds(&self, served: &std::collections::HashSet<String>) {
        for prefix in served {
            if let Err(error) = self.watch_cache.feed(prefix, self.shutdown.clone()).await {
                tracing::warn!(%prefix, %error, "cannot start a watch-cache feed yet");
            }
        }
    }

    /// The store prefixes that have a watch-cache feed.
    pub fn fed_prefixes(&self) -> Vec<String> {
        self.watch_cache.prefixes()
    }

    /// The current revision.
    pub async fn current_revision(&self) -> Result<Revision, ApiError> {
        self.store
            .current_revision()
            .await
            .map_err(ApiError::from_store)
    }

    /// The key's state now.
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, ApiError> {
        Ok(self
            .store
            .get(key, None)
            .await
            .map_err(ApiError::from_store)?
            .kv)
    }

    /// Writes `value` under `key` if `condition` holds, with `note` (who and how) kept in
    /// history beside the change; `Ok(Err(()))` when the condition did not hold.
    pub async fn put(
        &self,
        key: &str,
        value: Bytes,
        condition: Condition,
        note: Bytes,
    ) -> Result<Result<KeyValue, ()>, ApiError> {
        match self.store.put_noted(key, value, condition, note).await {
            Ok(kv) => Ok(Ok(kv)),
            Err(StoreError::PreconditionFailed { .. }) => Ok(Err(())),
            Err(e) => Err(ApiError::from_store(e)),
        }
    }

    /// Deletes `key` if `condition` holds, with `note` as [`Storage::put`]; `Ok(Err(()))`
    /// when the condition did not hold (or the key is gone).
    pub async fn delete(
        &self,
        key: &str,
        condition: Condition,
        note: Bytes,
    ) -> Result<Result<Deleted, ()>, ApiError> {
        match self.store.delete_noted(key, condition, note).await {
            Ok(deleted) => Ok(Ok(deleted)),
            Err(StoreError::PreconditionFailed { .. }) => Ok(Err(())),
            Err(e) => Err(ApiError::from_store(e)),
        }
    }

    /// Removes every key under `prefix`, whatever it holds, until a read finds none left
    /// (keys written meanwhile go too); each deletion carries `note`.
    pub async fn delete_prefix(&self, prefix: &str, note: Bytes) -> Result<(), ApiError> {
        loop {
            let mut found = false;
            let mut scan = Scan::new(&*self.store, prefix).page_size(STORE_PAGE);
            while let Some(page) = scan.next_page().await.map_err(ApiError::from_store)? {
                for kv in page {
                    found = true;
                    // Gone already is as good as deleted.
                    let _ = self
                        .delete(&kv.key, Condition::Always, note.clone())
                        .await?;
                }
            }
            if !found {
                return Ok(());
            }
        }
    }
}
