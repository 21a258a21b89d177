//! The strategies of the kinds the server knows: namespaces, CustomResourceDefinitions, the
//! RBAC kinds and certificate revocations, Secrets, ConfigMaps, Leases, Events and
//! CertificateSigningRequests, and the objects of CRD-defined kinds.

mod certificates;
mod core;
mod custom;
mod definition;
mod namespace;
mod rbac;

pub use certificates::{
    APPROVAL_CONDITIONS, CertificateRequestStrategy, MIN_EXPIRATION_SECONDS, request_der,
};
pub use core::{ConfigMapStrategy, EventStrategy, LeaseStrategy, OPAQUE, SecretStrategy};
pub use custom::CustomStrategy;
pub use definition::DefinitionStrategy;
pub use namespace::{INITIAL_NAMESPACES, NamespaceStrategy, PROTECTED_NAMESPACES};
pub use rbac::{
    CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES, ROLE_BINDINGS, ROLES, ReviewStrategy, RevocationStrategy,
};
