//! Kubernetes label and field selectors, and the validation of names, label keys and values,
//! as pure functions with Kubernetes' error wording.
//!
//! Shared by the API server (list and watch filtering, metadata validation) and the tools
//! (inventory groups by selector), so both read selectors the same way. No dependencies, no I/O.

pub mod selectors;
pub mod validation;
