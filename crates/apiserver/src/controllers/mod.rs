//! Controllers of the server itself, on top of the registry: they act through its
//! operations (so every rule of every kind applies) with an identity of their own.
//!
//! * [`namespaces`]: creates the initial namespaces; empties and removes terminating ones.
//! * [`definitions`]: keeps the catalog current when CRDs change elsewhere (another fleetdb
//!   process sharing the same etcd).

pub mod definitions;
pub mod namespaces;
pub mod policy;
