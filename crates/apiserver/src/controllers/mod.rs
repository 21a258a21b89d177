//! Controllers of the server itself, on top of the registry: they act through its
//! operations (so every rule of every kind applies) with an identity of their own.
//!
//! * [`namespaces`]: creates the initial namespaces; empties and removes terminating ones.
//! * [`definitions`]: keeps the catalog current when CRDs change elsewhere (another fleetdb
//!   process sharing the same etcd).
//! * [`policy`]: the default roles and bindings, the policy cache, aggregated roles.
//! * [`certificates`]: approves (through the program's approvers) and signs certificate
//!   signing requests; [`events`] records what it decided.

pub mod certificates;
pub mod definitions;
pub mod events;
pub mod namespaces;
pub mod policy;
