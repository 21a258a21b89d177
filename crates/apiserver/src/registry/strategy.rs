//! What differs per kind, asked by the generic registry code; the one place that maps a
//! resource's kind to its behaviour is [`for_resource`].

use async_trait::async_trait;
use fleetdb_machinery::field::FieldError;
use fleetdb_machinery::validation;
use serde_json::Value;

use super::kinds;
use crate::api::{ApiError, Catalog, Kind, Resource};
use crate::registry::policy::PolicyCache;
use crate::storage::Storage;

/// What a strategy's hooks may use.
pub struct StrategyContext<'a> {
    pub storage: &'a Storage,
    pub catalog: &'a Catalog,
    pub policy: &'a PolicyCache,
}

/// The rules of one kind (Kubernetes' `RESTCreateStrategy`, `RESTUpdateStrategy`,
/// `RESTDeleteStrategy` and friends in one).
#[async_trait]
pub trait Strategy: Send + Sync {
    /// Problems with a new object's name (empty: valid).
    fn name_problems(&self, name: &str) -> Vec<String> {
        validation::dns1123_subdomain(name)
    }

    /// Whether `metadata.generation` counts spec changes.
    fn tracks_generation(&self) -> bool {
        true
    }

    /// Whether an update must carry `metadata.resourceVersion` (no unconditional updates).
    fn requires_resource_version(&self) -> bool {
        false
    }

    /// Whether a DELETE that removed the object answers with a `Status` rather than the
    /// object.
    fn answers_removal_with_status(&self) -> bool {
        false
    }

    /// The fields its field selectors may name.
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["metadata.name", "metadata.namespace"]
    }

    /// Whether the kind is built in: bodies may come as protobuf, and strategic merge
    /// patches are accepted (read as merge patches).
    fn is_builtin(&self) -> bool {
        true
    }

    /// Defaults and checks of a new object before it is stored (after metadata rules,
    /// before the schema).
    fn prepare_create(&self, _resource: &Resource, _object: &mut Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Defaults and checks of an updated object; `old` is the stored one.
    fn prepare_update(
        &self,
        _resource: &Resource,
        _object: &mut Value,
        _old: &Value,
    ) -> Vec<FieldError> {
        Vec::new()
    }

    /// Whether an object whose deletion was requested and that has no finalizers left may
    /// be removed now.
    fn may_remove(&self, _object: &Value) -> bool {
        true
    }

    /// Changes an object undergoes when its deletion is requested but must wait.
    fn prepare_deletion(&self, _object: &mut Value) {}

    /// Whether a DELETE of this object may proceed at all.
    fn check_delete(&self, _object: &Value) -> Result<(), ApiError> {
        Ok(())
    }

    /// Runs before the object is removed from storage; may refuse.
    async fn before_remove(
        &self,
        _context: &StrategyContext<'_>,
        _object: &Value,
    ) -> Result<(), ApiError> {
        Ok(())
    }

    /// Runs after every successful write or removal of an object of the kind.
    async fn after_write(&self, _context: &StrategyContext<'_>) {}
}

/// The strategy of a resource's kind.
pub fn for_resource(resource: &Resource) -> &'static dyn Strategy {
    match resource.kind_tag {
        Kind::Namespace => &kinds::NamespaceStrategy,
        Kind::CustomResourceDefinition => &kinds::DefinitionStrategy,
        Kind::Custom => &kinds::CustomStrategy,
        Kind::Role => &kinds::ROLES,
        Kind::ClusterRole => &kinds::CLUSTER_ROLES,
        Kind::RoleBinding => &kinds::ROLE_BINDINGS,
        Kind::ClusterRoleBinding => &kinds::CLUSTER_ROLE_BINDINGS,
        Kind::CertificateRevocation => &kinds::RevocationStrategy,
        Kind::Review => &kinds::ReviewStrategy,
        Kind::Secret => &kinds::SecretStrategy,
        Kind::ConfigMap => &kinds::ConfigMapStrategy,
        Kind::Lease => &kinds::LeaseStrategy,
        Kind::Event => &kinds::EventStrategy,
        Kind::CertificateSigningRequest => &kinds::CertificateRequestStrategy,
    }
}
