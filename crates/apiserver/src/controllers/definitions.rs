//! The definitions controller: a watch on the stored CustomResourceDefinitions that rebuilds
//! the catalog on every change, so processes sharing one etcd agree on what is served.

use std::sync::Arc;

use crate::api::catalog::custom_resource_definitions;
use crate::registry::{Registry, definitions};

/// Runs until the server shuts down.
pub fn spawn(registry: Arc<Registry>) {
    let storage = registry.storage().clone();
    let reload = move || {
        let registry = registry.clone();
        async move { definitions::reload(registry.storage(), registry.catalog()).await }
    };
    let on_change = reload.clone();
    super::follow(
        storage,
        custom_resource_definitions().key_prefix(None),
        reload,
        move |_| on_change(),
    );
}
