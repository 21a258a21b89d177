//! fleetdb's Kubernetes-compatible API server.
//!
//! HTTPS with mutual TLS (`tls.rs`, certificates from `pki.rs`), discovery and OpenAPI
//! generated from one registry of kinds (`registry.rs`, `discovery.rs`, `openapi.rs`), and
//! **one generic resource handler** (`rest.rs`, `watch.rs`) for every kind, built-in or
//! CRD-defined, with small per-kind strategies (`strategy.rs`). Errors are Kubernetes
//! `Status` objects (`status.rs`).
//!
//! Architecture invariants: this is the only crate that knows HTTP; it reaches storage only
//! through `fleetdb_store::Store`; it knows nothing of fleet semantics (Hosts, Sources) beyond
//! serving whatever CRDs it is given.

pub mod apply;
pub mod discovery;
pub mod label_index;
pub mod negotiate;
pub mod objects;
pub mod openapi;
pub mod pki;
pub mod protobuf;
pub mod query;
pub mod registry;
pub mod rest;
pub mod scale;
pub mod schema;
pub mod server;
pub mod status;
pub mod strategy;
pub mod table;
pub mod tls;
pub mod watch;
pub mod watch_cache;

pub use fleetdb_labels::{selectors, validation};
pub use server::{ApiServer, ServeConfig, serve};

/// The Kubernetes version this server reports (it serves the v1.33 API, matching the
/// `k8s-openapi` types fleetdb's tools use).
pub const VERSION_GIT: &str = "v1.33.0";
