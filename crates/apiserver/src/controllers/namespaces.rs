//! The namespace controller: the namespaces that always exist, and the lifecycle of a
//! deleted one. Deleting a namespace marks it `Terminating` (its `kubernetes` finalizer keeps
//! it); this controller sees that in the namespaces' feed, deletes every object in it
//! through the registry (objects with finalizers are marked and waited for), and once it is
//! empty removes the finalizer, which removes the namespace.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetdb_machinery::meta;
use fleetdb_store::Scan;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::api::catalog::namespaces;
use crate::api::{ApiError, Identity};
use crate::registry::{
    AdmitAll, DeleteOptions, Deleted, FieldValidation, INITIAL_NAMESPACES, Registry, Target,
    WriteOptions,
};
use crate::storage::{STORE_PAGE, codec};

/// The identity the controller acts with.
const USER: &str = "system:fleetdb:namespace-controller";

/// Pause between passes of a clean-up that waits for finalizers.
const CLEANUP_RETRY: Duration = Duration::from_secs(1);

/// Pause before the controller follows the namespaces again after losing its feed.
const RESYNC_PAUSE: Duration = Duration::from_millis(200);

/// Creates the namespaces that always exist, unless they do.
pub async fn ensure_initial(registry: &Registry) -> Result<(), ApiError> {
    let user = Identity::system(USER);
    let options = WriteOptions {
        user: &user,
        dry_run: false,
        field_manager: "fleetdb".into(),
        field_validation: FieldValidation::Strict,
        admission: &AdmitAll,
    };
    let resource = Arc::new(namespaces());
    for name in INITIAL_NAMESPACES {
        let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match registry
            .create(
                &Target::collection(resource.clone(), None),
                object,
                &options,
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs until the server shuts down: every terminating namespace is emptied and removed,
/// those found at start-up included.
pub fn spawn(registry: Arc<Registry>) {
    let running: Arc<Mutex<HashSet<String>>> = Arc::default();
    tokio::spawn(async move {
        let storage = registry.storage().clone();
        let resource = Arc::new(namespaces());
        let prefix = resource.key_prefix(None);
        while !storage.is_shutting_down() {
            let feed = match storage.feed(&prefix).await {
                Ok(feed) => feed,
                Err(_) => {
                    tokio::time::sleep(RESYNC_PAUSE).await;
                    continue;
                }
            };
            let mut live = feed.subscribe();
            // Everything now, then every change: a namespace marked meanwhile is seen twice
            // at worst, and its clean-up starts once.
            let mut scan = Scan::new(&**storage.store(), prefix.clone()).page_size(STORE_PAGE);
            loop {
                match scan.next_page().await {
                    Ok(Some(page)) => {
                        for kv in page {
                            if let Ok(object) = codec::decode(&kv)
                                && meta::is_being_deleted(&object)
                                && let Some(name) = meta::name(&object)
                            {
                                start_cleanup(&registry, &running, name);
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(_) => break,
                }
            }
            let mut shutdown = storage.shutdown_signal();
            loop {
                let event = tokio::select! {
                    _ = shutdown.changed() => return,
                    event = live.recv() => event,
                };
                match event {
                    Ok(event) => {
                        if let Some(object) = event.object()
                            && meta::is_being_deleted(&object)
                            && let Some(name) = meta::name(&object)
                        {
                            start_cleanup(&registry, &running, name);
                        }
                    }
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => break,
                }
            }
            tokio::time::sleep(RESYNC_PAUSE).await;
        }
    });
}

/// Starts emptying `namespace` unless that is under way.
fn start_cleanup(registry: &Arc<Registry>, running: &Arc<Mutex<HashSet<String>>>, namespace: &str) {
    if !running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(namespace.to_owned())
    {
        return;
    }
    let registry = registry.clone();
    let running = running.clone();
    let namespace = namespace.to_owned();
    tokio::spawn(async move {
        loop {
            match cleanup_pass(&registry, &namespace).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%namespace, %error, "namespace clean-up failed; retrying")
                }
            }
            if registry.storage().is_shutting_down() {
                break;
            }
            tokio::time::sleep(CLEANUP_RETRY).await;
        }
        running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&namespace);
    });
}

/// One pass of emptying a terminating namespace: deletes what can go, marks what has
/// finalizers; once nothing is left, removes the namespace's own finalizer (which removes
/// it). True when the namespace is gone.
pub async fn cleanup_pass(registry: &Registry, namespace: &str) -> Result<bool, ApiError> {
    let user = Identity::system(USER);
    let snapshot = registry.catalog().snapshot();
    let mut remaining = 0usize;
    let mut seen = HashSet::new();
    for (group, versions) in snapshot.groups() {
        for version in versions {
            for resource in snapshot.resources(group, version) {
                if !resource.namespaced
                    || !seen.insert((resource.group.clone(), resource.plural.clone()))
                {
                    continue;
                }
                let mut scan = Scan::new(
                    &**registry.storage().store(),
                    resource.key_prefix(Some(namespace)),
                )
                .page_size(STORE_PAGE);
                while let Some(page) = scan.next_page().await.map_err(ApiError::from_store)? {
                    for kv in page {
                        let Some(name) = kv.key.rsplit('/').next() else {
                            continue;
                        };
                        let target = Target::object(
                            resource.clone(),
                            Some(namespace.to_owned()),
                            name.to_owned(),
                        );
                        match registry
                            .delete(&target, &DeleteOptions::default(), &user, &AdmitAll)
                            .await
                        {
                            Ok(Deleted::Removed { .. }) => {}
                            Ok(Deleted::Pending(_)) => remaining += 1,
                            Err(e) if e.reason == "NotFound" => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
    }
    if remaining > 0 {
        return Ok(false);
    }
    let target = Target::object(Arc::new(namespaces()), None, namespace.to_owned());
    let object = match registry.get(&target).await {
        Ok(object) => object,
        Err(e) if e.reason == "NotFound" => return Ok(true),
        Err(e) => return Err(e),
    };
    if !meta::is_being_deleted(&object) {
        return Ok(true);
    }
    let mut finalized = object;
    if !finalized["spec"].is_object() {
        finalized["spec"] = json!({});
    }
    finalized["spec"]["finalizers"] = json!([]);
    let options = WriteOptions {
        user: &user,
        dry_run: false,
        field_manager: USER.into(),
        field_validation: FieldValidation::Strict,
        admission: &AdmitAll,
    };
    match registry.update(&target, finalized, &options).await {
        Ok(_) => Ok(true),
        Err(e) if e.reason == "Conflict" || e.reason == "NotFound" => Ok(false),
        Err(e) => Err(e),
    }
}
