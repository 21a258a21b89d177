//! The strategies of the kinds the server knows: namespaces, CustomResourceDefinitions, and
//! the objects of CRD-defined kinds.

mod custom;
mod definition;
mod namespace;

pub use custom::CustomStrategy;
pub use definition::DefinitionStrategy;
pub use namespace::{INITIAL_NAMESPACES, NamespaceStrategy, PROTECTED_NAMESPACES};
