//! Namespaces: the `kubernetes.io/metadata.name` label, the `kubernetes` finalizer that keeps
//! a terminating namespace until the namespace controller has emptied it, the phase, and
//! the namespaces that always exist.

use fleetdb_machinery::field::FieldError;
use fleetdb_machinery::{meta, validation};
use serde_json::{Value, json};

use crate::api::{ApiError, Resource};
use crate::registry::strategy::Strategy;

/// Namespaces that always exist and may not be deleted.
pub const PROTECTED_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];
/// Namespaces created at start-up (`fleetdb-system` holds host agents' heartbeat Leases).
pub const INITIAL_NAMESPACES: [&str; 5] = [
    "default",
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "fleetdb-system",
];

/// The strategy of namespaces.
pub struct NamespaceStrategy;

fn set_name_label(object: &mut Value) {
    let name = meta::name(object).unwrap_or("").to_owned();
    if let Some(metadata) = meta::metadata_mut(object) {
        let labels = metadata.entry("labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        labels["kubernetes.io/metadata.name"] = json!(name);
    }
}

/// `status` as an object (replacing anything else), to set the phase in.
fn status_mut(object: &mut Value) -> &mut Value {
    if !object["status"].is_object() {
        object["status"] = json!({});
    }
    &mut object["status"]
}

impl Strategy for NamespaceStrategy {
    fn name_problems(&self, name: &str) -> Vec<String> {
        validation::dns1123_label(name)
    }

    fn tracks_generation(&self) -> bool {
        false
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["metadata.name", "metadata.namespace", "status.phase"]
    }

    fn prepare_create(&self, _: &Resource, object: &mut Value) -> Vec<FieldError> {
        set_name_label(object);
        object["spec"] = json!({"finalizers": ["kubernetes"]});
        object["status"] = json!({"phase": "Active"});
        Vec::new()
    }

    fn prepare_update(&self, _: &Resource, object: &mut Value, old: &Value) -> Vec<FieldError> {
        set_name_label(object);
        if object["status"]["phase"].is_null() {
            status_mut(object)["phase"] = old["status"]["phase"].clone();
        }
        Vec::new()
    }

    /// A namespace goes once its own finalizers (`spec.finalizers`) are done too.
    fn may_remove(&self, object: &Value) -> bool {
        object["spec"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty())
    }

    fn prepare_deletion(&self, object: &mut Value) {
        status_mut(object)["phase"] = json!("Terminating");
    }

    fn check_delete(&self, object: &Value) -> Result<(), ApiError> {
        let name = meta::name(object).unwrap_or("");
        if PROTECTED_NAMESPACES.contains(&name) {
            return Err(ApiError::forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            )));
        }
        Ok(())
    }
}
