//! Objects of CRD-defined kinds: their CRD's schema does the checking (in the generic write
//! path); what is left here is what kube-apiserver's custom-resource strategy adds.

use serde_json::Value;

use crate::api::Resource;
use crate::registry::strategy::Strategy;
use fleetdb_machinery::field::FieldError;

/// The strategy of custom resources.
pub struct CustomStrategy;

impl Strategy for CustomStrategy {
    /// Custom resources allow no unconditional updates.
    fn requires_resource_version(&self) -> bool {
        true
    }

    /// kube-apiserver answers the DELETE of a custom resource with a `Status`.
    fn answers_removal_with_status(&self) -> bool {
        true
    }

    fn is_builtin(&self) -> bool {
        false
    }

    /// With a status subresource, `.status` is set only through it.
    fn prepare_create(&self, resource: &Resource, object: &mut Value) -> Vec<FieldError> {
        if resource.status_subresource
            && let Some(o) = object.as_object_mut()
        {
            o.remove("status");
        }
        Vec::new()
    }
}
