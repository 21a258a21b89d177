//! The bottom layer: the vocabulary every other layer speaks — the catalog of served kinds
//! ([`catalog`], with the typed schemas of the built-in kinds clients fill freely in
//! [`schemas`]), Kubernetes `Status` errors ([`errors`]) and who is asking ([`identity`]).
//! It imports no other layer of the server.

pub mod catalog;
pub mod errors;
pub mod identity;
pub mod schemas;

pub use catalog::{Catalog, Kind, PrinterColumn, Resource, ScaleSpec, Snapshot};
pub use errors::ApiError;
pub use identity::Identity;
