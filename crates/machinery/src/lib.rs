//! fleetdb's API machinery: the Kubernetes object rules that need no I/O, shared by the API
//! server and the tools so both read objects the same way.
//!
//! * [`selectors`]: label and field selectors; [`validation`]: names, label keys and values.
//! * [`field`]: field errors (`field.Error`), the currency of every validation.
//! * [`json`]: one JSON equality and one canonical form; [`gofmt`]: values printed as Go
//!   prints them in error messages.
//! * [`meta`]: object metadata accessors and the metadata rules every kind shares.
//! * [`jsonpath`]: the JSONPath subset of printer columns and scale subresources.
//! * [`schema`]: a CRD's structural schema compiled once into a typed tree that pruning,
//!   defaulting, validation and server-side apply all walk; `pattern`s on a linear-time
//!   regular expression engine.
//! * [`apply`]: server-side apply (field ownership in `metadata.managedFields`).
//! * [`patch`]: JSON patches applied within bounds (operations, depth, growth).
//!
//! Architecture invariant: no I/O, no clock, no async; nothing here panics on input.

pub mod apply;
pub mod field;
pub mod gofmt;
pub mod json;
pub mod jsonpath;
pub mod jsonscan;
pub mod meta;
pub mod patch;
pub mod rbac;
pub mod schema;
pub mod selectors;
#[cfg(test)]
mod testing;
pub mod validation;
