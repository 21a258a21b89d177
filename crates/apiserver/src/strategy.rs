//! Per-kind strategies: the small part of create, update and delete that differs by kind.
//!
//! * Custom resources: `.status` is ignored on create and on main-resource writes when the
//!   CRD has a status subresource.
//! * Namespaces: the `kubernetes.io/metadata.name` label, the `kubernetes` finalizer, the
//!   phase; deletion empties the namespace first (`namespace_cleanup`).
//! * CustomResourceDefinitions: validation, accepted names and conditions; writes reload the
//!   registry; deletion removes the CRD's objects.

use std::sync::Arc;
use std::time::Duration;

use fleetdb_store::{Condition, RangeRequest, StoreError};
use serde_json::{Value, json};

use crate::objects;
use crate::registry::{Kind, Resource};
use crate::rest::store_error;
use crate::server::ApiServer;
use crate::status::{ApiError, Cause};
use crate::validation;

/// Namespaces that always exist and may not be deleted.
pub const PROTECTED_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];
/// Namespaces created at start-up.
pub const INITIAL_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Pause between passes of a namespace clean-up that waits for finalizers.
const CLEANUP_RETRY: Duration = Duration::from_secs(1);

pub async fn prepare_create(
    _server: &ApiServer,
    resource: &Resource,
    object: &mut Value,
) -> Result<Vec<Cause>, ApiError> {
    match resource.behaviour {
        Kind::Custom => {
            if resource.status_subresource
                && let Some(o) = object.as_object_mut()
            {
                o.remove("status");
            }
            Ok(Vec::new())
        }
        Kind::Namespace => {
            namespace_defaults(object);
            object["spec"] = json!({"finalizers": ["kubernetes"]});
            object["status"] = json!({"phase": "Active"});
            Ok(Vec::new())
        }
        Kind::CustomResourceDefinition => {
            let causes = validate_crd(object);
            if causes.is_empty() {
                set_crd_status(object, None);
            }
            Ok(causes)
        }
    }
}

pub async fn prepare_update(
    _server: &ApiServer,
    resource: &Resource,
    merged: &mut Value,
    old: &Value,
) -> Result<Vec<Cause>, ApiError> {
    match resource.behaviour {
        Kind::Custom => Ok(Vec::new()),
        Kind::Namespace => {
            namespace_defaults(merged);
            if merged["status"]["phase"].is_null() {
                merged["status"]["phase"] = old["status"]["phase"].clone();
            }
            Ok(Vec::new())
        }
        Kind::CustomResourceDefinition => {
            let mut causes = validate_crd(merged);
            for field in ["group", "scope"] {
                if merged["spec"][field] != old["spec"][field] {
                    causes.push(Cause::invalid(
                        format!("spec.{field}"),
                        "Invalid value: field is immutable",
                    ));
                }
            }
            if causes.is_empty() {
                set_crd_status(merged, Some(old));
            }
            Ok(causes)
        }
    }
}

/// Whether an object without finalizers may be removed from storage now.
pub fn may_remove(resource: &Resource, object: &Value) -> bool {
    match resource.behaviour {
        Kind::Namespace => object["spec"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty()),
        _ => true,
    }
}

/// Changes an object undergoes when its deletion is requested but must wait.
pub fn prepare_deletion(resource: &Resource, object: &mut Value) {
    if resource.behaviour == Kind::Namespace {
        object["status"]["phase"] = json!("Terminating");
    }
}

/// Runs after an object was marked for deletion.
pub async fn after_deletion_requested(server: &ApiServer, resource: &Resource, object: &Value) {
    if resource.behaviour == Kind::Namespace
        && let Some(name) = objects::name(object)
    {
        server.start_namespace_cleanup(name.to_owned());
    }
}

/// Whether a DELETE of this object may proceed at all.
pub fn check_delete(resource: &Resource, object: &Value) -> Result<(), ApiError> {
    let name = objects::name(object).unwrap_or("");
    if resource.behaviour == Kind::Namespace && PROTECTED_NAMESPACES.contains(&name) {
        return Err(ApiError::forbidden(format!(
            "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
        )));
    }
    Ok(())
}

/// Runs before an object is removed from storage; may refuse.
pub async fn before_delete(
    server: &ApiServer,
    resource: &Resource,
    object: &Value,
) -> Result<(), ApiError> {
    match resource.behaviour {
        Kind::Namespace => check_delete(resource, object),
        Kind::CustomResourceDefinition => {
            // The CRD's objects go with it (all versions share one prefix).
            let snapshot = server.registry.snapshot();
            let group = object["spec"]["group"].as_str().unwrap_or("");
            let plural = object["spec"]["names"]["plural"].as_str().unwrap_or("");
            if let Some(defined) = snapshot.any_version(group, plural) {
                delete_all(server, &defined.key_prefix(None)).await?;
            }
            Ok(())
        }
        Kind::Custom => Ok(()),
    }
}

/// Runs after any successful write of an object of `resource`.
pub async fn after_write(server: &ApiServer, resource: &Resource) {
    if resource.behaviour == Kind::CustomResourceDefinition {
        server.reload_definitions().await;
    }
}

/// Runs after an object was removed from storage.
pub async fn after_delete(server: &ApiServer, resource: &Resource, _object: &Value) {
    after_write(server, resource).await;
}

fn namespace_defaults(object: &mut Value) {
    let name = objects::name(object).unwrap_or("").to_owned();
    if let Some(metadata) = objects::metadata_mut(object) {
        let labels = metadata.entry("labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        labels["kubernetes.io/metadata.name"] = json!(name);
    }
}

/// Removes every object under `prefix` (finalizers notwithstanding).
async fn delete_all(server: &ApiServer, prefix: &str) -> Result<(), ApiError> {
    loop {
        let page = server
            .store
            .range(RangeRequest {
                prefix: prefix.to_owned(),
                limit: 1000,
                ..Default::default()
            })
            .await
            .map_err(store_error)?;
        if page.kvs.is_empty() {
            return Ok(());
        }
        for kv in page.kvs {
            match server.store.delete(&kv.key, Condition::Always).await {
                Ok(_) | Err(StoreError::PreconditionFailed { .. }) => {}
                Err(e) => return Err(store_error(e)),
            }
        }
    }
}

/// One pass of emptying a terminating namespace: deletes what can go, marks what has
/// finalizers. Returns true once nothing is left and the namespace itself is gone.
pub async fn namespace_cleanup_pass(server: &ApiServer, namespace: &str) -> Result<bool, ApiError> {
    let snapshot = server.registry.snapshot();
    let mut remaining = 0usize;
    let mut seen = std::collections::HashSet::new();
    for (group, versions) in snapshot.groups() {
        for version in versions {
            for resource in snapshot.resources(group, version) {
                if !resource.namespaced
                    || !seen.insert((resource.group.clone(), resource.plural.clone()))
                {
                    continue;
                }
                let page = server
                    .store
                    .range(RangeRequest {
                        prefix: resource.key_prefix(Some(namespace)),
                        limit: 1000,
                        ..Default::default()
                    })
                    .await
                    .map_err(store_error)?;
                for kv in page.kvs {
                    let mut object = objects::decode(&kv)?;
                    if objects::finalizers(&object).is_empty() {
                        match server
                            .store
                            .delete(&kv.key, Condition::ModRevision(kv.mod_revision))
                            .await
                        {
                            Ok(_) => continue,
                            Err(StoreError::PreconditionFailed { .. }) => {}
                            Err(e) => return Err(store_error(e)),
                        }
                    } else if !object["metadata"]["deletionTimestamp"].is_string() {
                        if let Some(metadata) = objects::metadata_mut(&mut object) {
                            metadata.insert(
                                "deletionTimestamp".into(),
                                json!(objects::now_timestamp()),
                            );
                            metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
                        }
                        let _ = server
                            .store
                            .put(
                                &kv.key,
                                objects::encode(&object),
                                Condition::ModRevision(kv.mod_revision),
                            )
                            .await;
                    }
                    remaining += 1;
                }
            }
        }
    }
    if remaining > 0 {
        return Ok(false);
    }
    let namespaces = crate::registry::namespaces();
    let key = namespaces.key(None, namespace);
    let found = server.store.get(&key, None).await.map_err(store_error)?;
    if let Some(kv) = found.kv {
        match server
            .store
            .delete(&key, Condition::ModRevision(kv.mod_revision))
            .await
        {
            Ok(_) => {}
            Err(StoreError::PreconditionFailed { .. }) => return Ok(false),
            Err(e) => return Err(store_error(e)),
        }
    }
    Ok(true)
}

/// Empties and removes a terminating namespace, retrying until finalizers let it go.
pub async fn run_namespace_cleanup(server: Arc<ApiServer>, namespace: String) {
    loop {
        match namespace_cleanup_pass(&server, &namespace).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(error) => tracing::warn!(%namespace, %error, "namespace clean-up failed; retrying"),
        }
        if server.is_shutting_down() {
            return;
        }
        tokio::time::sleep(CLEANUP_RETRY).await;
    }
}

fn validate_crd(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or("");
    let plural = spec["names"]["plural"].as_str().unwrap_or("");
    if group.is_empty() {
        causes.push(Cause::required("spec.group"));
    } else {
        for problem in validation::dns1123_subdomain(group) {
            causes.push(Cause::invalid(
                "spec.group",
                format!("Invalid value: {group:?}: {problem}"),
            ));
        }
        if !group.contains('.') {
            causes.push(Cause::invalid(
                "spec.group",
                format!("Invalid value: {group:?}: should be a domain with at least one dot"),
            ));
        }
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural"));
    } else {
        for problem in validation::dns1123_label(plural) {
            causes.push(Cause::invalid(
                "spec.names.plural",
                format!("Invalid value: {plural:?}: {problem}"),
            ));
        }
    }
    if let Some(singular) = spec["names"]["singular"].as_str() {
        for problem in validation::dns1123_label(singular) {
            causes.push(Cause::invalid(
                "spec.names.singular",
                format!("Invalid value: {singular:?}: {problem}"),
            ));
        }
    }
    if spec["names"]["kind"].as_str().unwrap_or("").is_empty() {
        causes.push(Cause::required("spec.names.kind"));
    }
    let name = objects::name(crd).unwrap_or("");
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    match spec["scope"].as_str() {
        Some("Namespaced") | Some("Cluster") => {}
        Some(other) => causes.push(Cause {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""
            ),
            field: "spec.scope".into(),
        }),
        None => causes.push(Cause::required("spec.scope")),
    }
    match spec["versions"].as_array() {
        None => causes.push(Cause::required("spec.versions")),
        Some(versions) if versions.is_empty() => causes.push(Cause::required("spec.versions")),
        Some(versions) => {
            let storage = versions
                .iter()
                .filter(|v| v["storage"].as_bool() == Some(true))
                .count();
            if storage != 1 {
                causes.push(Cause::invalid(
                    "spec.versions",
                    format!("Invalid value: {storage}: must have exactly one version marked as storage version"),
                ));
            }
            for (i, version) in versions.iter().enumerate() {
                let field = format!("spec.versions[{i}]");
                match version["name"].as_str() {
                    Some(name) => {
                        for problem in validation::dns1123_label(name) {
                            causes.push(Cause::invalid(
                                format!("{field}.name"),
                                format!("Invalid value: {name:?}: {problem}"),
                            ));
                        }
                    }
                    None => causes.push(Cause::required(format!("{field}.name"))),
                }
                let schema = &version["schema"]["openAPIV3Schema"];
                if !schema.is_object() {
                    causes.push(Cause::required(format!("{field}.schema.openAPIV3Schema")));
                } else {
                    let base = format!("{field}.schema.openAPIV3Schema");
                    causes.extend(
                        crate::schema::check_structural(schema, &base)
                            .into_iter()
                            .map(|e| Cause {
                                reason: e.reason,
                                message: e.message,
                                field: e.field,
                            }),
                    );
                }
            }
        }
    }
    causes
}

/// Sets `status` the way the CRD controller does once names are accepted.
fn set_crd_status(crd: &mut Value, old: Option<&Value>) {
    let names = &crd["spec"]["names"];
    let kind = names["kind"].as_str().unwrap_or("").to_owned();
    let mut accepted = json!({
        "plural": names["plural"],
        "singular": names["singular"].as_str().map(str::to_owned).unwrap_or_else(|| kind.to_lowercase()),
        "kind": kind,
        "listKind": names["listKind"].as_str().map(str::to_owned).unwrap_or_else(|| format!("{kind}List")),
    });
    for optional in ["shortNames", "categories"] {
        if names[optional].is_array() {
            accepted[optional] = names[optional].clone();
        }
    }
    let mut stored: Vec<Value> = old
        .and_then(|o| o["status"]["storedVersions"].as_array().cloned())
        .unwrap_or_default();
    if let Some(storage) = crd["spec"]["versions"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["storage"].as_bool() == Some(true)))
        .and_then(|v| v["name"].as_str())
        && !stored.iter().any(|s| s == storage)
    {
        stored.push(json!(storage));
    }
    let since = |condition: &str| {
        old.and_then(|o| o["status"]["conditions"].as_array())
            .and_then(|c| {
                c.iter()
                    .find(|c| c["type"] == condition && c["status"] == "True")
            })
            .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_owned))
            .unwrap_or_else(objects::now_timestamp)
    };
    crd["status"] = json!({
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": since("NamesAccepted")},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": since("Established")},
        ],
        "storedVersions": stored,
    });
}
