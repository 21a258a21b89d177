//! Controllers of the server itself, on top of the registry: they act through its
//! operations (so every rule of every kind applies) with an identity of their own.
//!
//! * [`namespaces`]: creates the initial namespaces; empties and removes terminating ones.
//! * [`definitions`]: keeps the catalog current when CRDs change elsewhere (another fleetdb
//!   process sharing the same etcd).
//! * [`policy`]: the default roles and bindings, the policy cache, aggregated roles.
//! * [`certificates`]: approves (through the program's approvers) and signs certificate
//!   signing requests; [`events`] records what it decided.
//! * [`event_ttl`]: deletes Events last seen longer ago than `--event-ttl`.

pub mod certificates;
pub mod definitions;
pub mod event_ttl;
pub mod events;
pub mod namespaces;
pub mod policy;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::storage::Storage;

/// Pause before a controller's watch is established again after a failure.
const RETRY: Duration = Duration::from_secs(1);

/// Follows the keys under `prefix` until the server shuts down: `resync` first (and again
/// whenever the watch had to be established anew, since changes may have been missed),
/// then `changed` for every change the watch delivers.
pub(crate) fn follow<R, RF, C, CF>(storage: Arc<Storage>, prefix: String, resync: R, changed: C)
where
    R: Fn() -> RF + Send + 'static,
    RF: Future<Output = ()> + Send,
    C: Fn(fleetdb_store::Event) -> CF + Send + 'static,
    CF: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut shutdown = storage.shutdown_signal();
        loop {
            if storage.is_shutting_down() {
                return;
            }
            let Ok(after) = storage.current_revision().await else {
                tokio::time::sleep(RETRY).await;
                continue;
            };
            resync().await;
            let Ok(mut changes) = storage.store().watch(&prefix, after).await else {
                tokio::time::sleep(RETRY).await;
                continue;
            };
            loop {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    change = changes.next() => match change {
                        Some(Ok(event)) => changed(event).await,
                        _ => break,
                    },
                }
            }
        }
    });
}
