//! Rebuilding the catalog from the stored CustomResourceDefinitions: after the registry's own
//! CRD writes, and (through the definitions controller) whenever another process sharing
//! the store writes one.

use fleetdb_store::Scan;

use crate::api::Catalog;
use crate::api::catalog::custom_resource_definitions;
use crate::storage::{STORE_PAGE, Storage, codec};

/// Reads every stored CRD (at one revision) and rebuilds the catalog from them. On a read
/// failure the catalog is left as it was (and the failure logged).
pub async fn reload(storage: &Storage, catalog: &Catalog) {
    let prefix = custom_resource_definitions().key_prefix(None);
    // Read at one revision, so that a slow reload can tell it is older than one already
    // applied (and leave the newer catalog be).
    let revision = match storage.current_revision().await {
        Ok(revision) => revision,
        Err(error) => {
            tracing::error!(%error, "cannot read the custom resource definitions");
            return;
        }
    };
    let mut crds = Vec::new();
    let mut scan = Scan::new(&**storage.store(), prefix)
        .at(Some(revision))
        .page_size(STORE_PAGE);
    loop {
        match scan.next_page().await {
            Ok(Some(page)) => crds.extend(page.iter().filter_map(|kv| codec::decode(kv).ok())),
            Ok(None) => break,
            Err(error) => {
                tracing::error!(%error, "cannot read the custom resource definitions");
                return;
            }
        }
    }
    if !catalog.rebuild_at(revision, &crds) {
        return;
    }
    // Feeds of resources that went with their CRD are closed, so they hold no memory, and
    // every served resource that is stored (reviews are not) has one, from now on; from the
    // catalog as it is once no other reload is at it.
    let closed = storage
        .sync_feeds(|| {
            let snapshot = catalog.snapshot();
            let mut served = std::collections::HashSet::new();
            for (group, versions) in snapshot.groups() {
                for version in versions {
                    for resource in snapshot.resources(group, version) {
                        if resource.kind_tag != crate::api::Kind::Review {
                            served.insert(resource.key_prefix(None));
                        }
                    }
                }
            }
            served
        })
        .await;
    if closed > 0 {
        tracing::info!(
            closed,
            "closed the watch feeds of resources no longer served"
        );
    }
}
