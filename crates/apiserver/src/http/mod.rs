//! The http layer: the only code that knows axum and hyper. TLS and connections
//! ([`server`]), routing ([`router`]), content negotiation, decoding request bodies and
//! encoding answers (JSON, Tables, streamed lists and watches, `Status` errors), discovery
//! and OpenAPI documents, and the extension endpoints and web applications (`webapp`) of the
//! embedding program.
//!
//! A request is parsed into a target and options, passed through the pipeline
//! (authentication, authorization), handed to the registry, and its answer encoded.

pub mod audit;
pub mod discovery;
pub mod extensions;
mod fairness;
pub mod negotiate;
pub mod openapi;
pub mod openapi_v2;
pub mod protobuf;
pub mod query;
mod resources;
mod responses;
pub mod router;
pub mod server;
pub mod table;
pub mod tls;
mod watch;
pub mod webapp;

pub use extensions::{Extension, ExtensionResponse};
pub use resources::{LIST_STREAM_CHUNKS, MAX_BODY_BYTES};
pub use router::dispatch;
pub use server::{ApiServer, Limits, Security, ServeConfig, install_definitions, serve};
