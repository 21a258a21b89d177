//! fleetdb's Kubernetes-compatible API server: one request pipeline for every kind, in
//! layers whose imports point one way (a tidy test, `tests/tidy.rs`, keeps them so):
//!
//! ```text
//! http         TLS, routing, negotiation, encoding, Status responses, discovery, OpenAPI
//!   ↓                                        (the only code that knows axum and hyper)
//! pipeline     authentication → authorization → admission
//!   ↓
//! controllers  namespace lifecycle, CRD definitions (on the registry)
//!   ↓
//! registry     create/get/list/update/patch/apply/delete/watch; one Strategy per kind
//!   ↓
//! storage      codec, selection, label index, watch cache
//!   ↓
//! api          catalog of kinds, Status errors, identities        (pki: certificates)
//!   ↓
//! fleetdb_store::Store
//! ```
//!
//! Architecture invariants: only `http` knows HTTP; storage is reached only through
//! `fleetdb_store::Store`; the server knows nothing of fleet semantics (Hosts, Sources)
//! beyond serving whatever CRDs it is given. Object rules that need no I/O (selectors,
//! schemas, server-side apply) live in `fleetdb-machinery`.

pub mod api;
pub mod controllers;
pub mod http;
pub mod pipeline;
pub mod pki;
pub mod registry;
pub mod storage;

pub use api::{ApiError, Identity};
pub use http::{ApiServer, Limits, Security, ServeConfig, dispatch, serve};

/// The Kubernetes version this server reports (it serves the v1.33 API, matching the
/// `k8s-openapi` types fleetdb's tools use).
pub const VERSION_GIT: &str = "v1.33.0";
