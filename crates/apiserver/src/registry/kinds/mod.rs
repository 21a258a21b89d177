//! The strategies of the kinds the server knows: namespaces, CustomResourceDefinitions, the
//! RBAC kinds and certificate revocations, and the objects of CRD-defined kinds.

mod custom;
mod definition;
mod namespace;
mod rbac;

pub use custom::CustomStrategy;
pub use definition::DefinitionStrategy;
pub use namespace::{INITIAL_NAMESPACES, NamespaceStrategy, PROTECTED_NAMESPACES};
pub use rbac::{
    CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES, ROLE_BINDINGS, ROLES, ReviewStrategy, RevocationStrategy,
};
