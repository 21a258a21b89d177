//! What extensions of the server (Prometheus discovery, later history and the UI) get: typed
//! access to the objects of a resource and their changes, by group/version/resource — never
//! store keys or the server's internals.

use std::sync::Arc;

use fleetdb_store::{Revision, Scan};
use serde_json::Value;

use super::Registry;
use crate::api::{ApiError, Resource};
use crate::storage::{Replay, STORE_PAGE, Storage, Subscription};

/// The context an extension is handed.
#[derive(Clone)]
pub struct ExtensionContext {
    registry: Arc<Registry>,
}

impl ExtensionContext {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    /// The objects of `group`/`version`/`plural` (`""` for the core group), if it is served.
    pub fn objects(&self, group: &str, version: &str, plural: &str) -> Option<Objects> {
        let resource = self
            .registry
            .catalog()
            .snapshot()
            .get(group, version, plural)?;
        Some(Objects {
            resource,
            storage: self.registry.storage().clone(),
        })
    }
}

/// The objects of one resource (all namespaces).
pub struct Objects {
    resource: Arc<Resource>,
    storage: Arc<Storage>,
}

/// One object as stored: its JSON without `resourceVersion`.
pub struct StoredObject<'a> {
    pub name: &'a str,
    pub namespace: Option<&'a str>,
    pub json: &'a [u8],
}

/// One change of an object.
pub struct Change {
    pub revision: Revision,
    pub name: String,
    pub namespace: Option<String>,
    /// The object after the change; `None` when it was deleted.
    pub object: Option<Arc<Value>>,
}

impl Objects {
    /// Where a key is: (namespace, name).
    fn locate<'k>(&self, key: &'k str) -> Option<(Option<&'k str>, &'k str)> {
        let rest = key.strip_prefix(&self.resource.key_prefix(None))?;
        if self.resource.namespaced {
            let (namespace, name) = rest.split_once('/')?;
            Some((Some(namespace), name))
        } else {
            Some((None, rest))
        }
    }

    /// Hands every object to `each`, read page by page at one revision, which it returns.
    pub async fn scan(&self, mut each: impl FnMut(StoredObject<'_>)) -> Result<Revision, ApiError> {
        let mut scan = Scan::new(&**self.storage.store(), self.resource.key_prefix(None))
            .page_size(STORE_PAGE);
        while let Some(page) = scan.next_page().await.map_err(ApiError::from_store)? {
            for kv in &page {
                if let Some((namespace, name)) = self.locate(&kv.key) {
                    each(StoredObject {
                        name,
                        namespace,
                        json: &kv.value,
                    });
                }
            }
        }
        Ok(scan.revision().unwrap_or_default())
    }

    /// Hands every object to `each` (as [`Objects::scan`] does), then follows: the changes
    /// after the revision read, as they happen. Nothing falls between the two.
    pub async fn read_and_follow(
        &self,
        each: impl FnMut(StoredObject<'_>),
    ) -> Result<Changes, ApiError> {
        let feed = self.storage.feed(&self.resource.key_prefix(None)).await?;
        // Subscribe before reading, and read the history after, so nothing is missed.
        let live = feed.subscribe();
        let revision = self.scan(each).await?;
        let replay = feed.events_after(revision).ok_or_else(|| {
            ApiError::unavailable("the resource's changes could not be followed; retry shortly")
        })?;
        Ok(Changes {
            objects: Objects {
                resource: self.resource.clone(),
                storage: self.storage.clone(),
            },
            replay,
            live,
            last: revision,
        })
    }
}

/// A resource's changes in revision order.
pub struct Changes {
    objects: Objects,
    replay: Replay,
    live: Subscription,
    last: Revision,
}

impl Changes {
    /// The next change; `None` when the feed was lost (fell behind, or the server stops):
    /// the extension reads everything again.
    pub async fn next(&mut self) -> Option<Change> {
        loop {
            let event = match self.replay.pop_front() {
                // Dropped from the history before it was read: read everything again.
                Some(event) => event.upgrade()?,
                None => self.live.recv().await.ok()?,
            };
            if event.revision <= self.last {
                continue;
            }
            self.last = event.revision;
            let Some((namespace, name)) = self.objects.locate(&event.key) else {
                continue;
            };
            return Some(Change {
                revision: event.revision,
                name: name.to_owned(),
                namespace: namespace.map(str::to_owned),
                object: event.object(),
            });
        }
    }
}
