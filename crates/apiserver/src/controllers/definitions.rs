//! The definitions controller: a watch on the stored CustomResourceDefinitions that rebuilds
//! the catalog on every change, so processes sharing one etcd agree on what is served.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::api::catalog::custom_resource_definitions;
use crate::registry::{Registry, definitions};

/// Pause before the watch is established again after a failure.
const RETRY: Duration = Duration::from_secs(1);

/// Runs until the server shuts down.
pub fn spawn(registry: Arc<Registry>) {
    tokio::spawn(async move {
        let storage = registry.storage().clone();
        let prefix = custom_resource_definitions().key_prefix(None);
        let mut shutdown = storage.shutdown_signal();
        loop {
            if storage.is_shutting_down() {
                return;
            }
            let after = match storage.current_revision().await {
                Ok(revision) => revision,
                Err(_) => {
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            definitions::reload(&storage, registry.catalog()).await;
            let Ok(mut changes) = storage.store().watch(&prefix, after).await else {
                tokio::time::sleep(RETRY).await;
                continue;
            };
            loop {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    change = changes.next() => match change {
                        Some(Ok(_)) => definitions::reload(&storage, registry.catalog()).await,
                        _ => break,
                    },
                }
            }
        }
    });
}
