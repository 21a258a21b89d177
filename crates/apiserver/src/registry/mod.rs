//! The registry: create, get, list, update, patch, apply, delete and watch on objects of
//! every kind, with Kubernetes' object rules — names and generated names, uids, timestamps,
//! generation, resourceVersion preconditions and compare-and-swap, finalizers and deletion,
//! status and scale subresources, field ownership, the CRD schema pipeline (prune → default
//! → validate) — and typed errors. It knows nothing of HTTP: requests arrive decoded, answers
//! leave as objects.
//!
//! What differs per kind is a [`strategy::Strategy`] (namespaces, CRDs, custom resources);
//! the generic code asks it and never matches on the kind itself. Admission plugs in through
//! [`Admission`], called on every write after the kind's rules and the schema, before the
//! object is stored.

pub mod definitions;
pub mod extension;
pub mod history;
mod kinds;
pub mod policy;
mod read;
mod scale;
pub mod strategy;
pub mod watch;
mod write;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use fleetdb_store::KeyValue;
use serde_json::Value;

use crate::api::{ApiError, Catalog, Identity, Resource};
use crate::storage::Storage;

pub use kinds::{
    APPROVAL_CONDITIONS, INITIAL_NAMESPACES, MIN_EXPIRATION_SECONDS, OPAQUE, PROTECTED_NAMESPACES,
    request_der,
};
pub use read::{
    LIST_CHUNK_BYTES, LIST_STREAM_PAGE, ListOptions, ListPage, MAX_LIST_LIMIT,
    parse_resource_version, selectors,
};
pub use watch::{WatchFormat, WatchOptions};

/// The time now as objects carry it (`2026-11-30T18:00:00Z`).
pub fn now() -> String {
    write::now_timestamp()
}

/// How long a write without an explicit precondition keeps trying after losing
/// compare-and-swap races to other writers of the same object, before it answers `409
/// Conflict`. kube-apiserver retries such writes until they succeed (within the request's
/// timeout): a plain `kubectl patch` never sees a conflict, however busy the object is.
pub const WRITE_RETRY_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
/// Attempts made at once before a write that keeps losing waits (a random pause that grows
/// with each attempt, up to [`WRITE_RETRY_MAX_PAUSE`]) so that the writers of one hot object
/// spread out rather than all reading and losing again together.
pub const WRITE_RETRY_EAGER: usize = 4;
/// Longest pause between two attempts of one write.
pub const WRITE_RETRY_MAX_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// The attempts of one write (see [`WRITE_RETRY_WINDOW`]).
pub(crate) struct WriteAttempts {
    made: usize,
    deadline: Option<tokio::time::Instant>,
}

impl WriteAttempts {
    pub(crate) fn new() -> Self {
        Self {
            made: 0,
            deadline: None,
        }
    }

    /// Whether to make another attempt (the first always), after the pause it is due.
    pub(crate) async fn next(&mut self) -> bool {
        self.made += 1;
        let now = tokio::time::Instant::now();
        let deadline = *self.deadline.get_or_insert(now + WRITE_RETRY_WINDOW);
        if self.made == 1 {
            return true;
        }
        if now >= deadline {
            return false;
        }
        if self.made > WRITE_RETRY_EAGER {
            let shift = (self.made - WRITE_RETRY_EAGER).min(16) as u32;
            let longest = WRITE_RETRY_MAX_PAUSE
                .min(std::time::Duration::from_micros(250u64 << shift))
                .as_micros() as u64;
            let pause = std::time::Duration::from_micros(rand::random::<u64>() % (longest + 1));
            tokio::time::sleep(pause.min(deadline - now)).await;
        }
        true
    }
}

/// Most objects one deletecollection removes; clients repeat it for more.
pub const MAX_DELETE_COLLECTION: usize = 10_000;

/// Deepest nesting of values a stored object may have. JSON decoding stops at 128 levels, so
/// an object nested deeper could be stored but never read back (nor updated, nor deleted
/// through its kind's rules); every write is checked against this lower bound first.
pub const MAX_OBJECT_DEPTH: usize = 100;

/// Most bytes of JSON one patch may add to an object (`add`, `replace` and `copy` values
/// together): no more than one request body could carry.
pub const MAX_PATCH_ADDED_BYTES: usize = 3 * 1024 * 1024;

/// The registry shared by every request.
pub struct Registry {
    storage: Arc<Storage>,
    catalog: Arc<Catalog>,
    policy: Arc<policy::PolicyCache>,
}

/// A subresource of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// `/status`: only `.status` changes.
    Status,
    /// `/scale`: the `autoscaling/v1` Scale view of a CRD's replicas.
    Scale,
    /// `/approval` of a CertificateSigningRequest: only its Approved and Denied conditions
    /// change (`.status` is taken from the body, admission checks the rest).
    Approval,
}

impl Subresource {
    /// Its name in URLs and managed fields.
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Approval => "approval",
        }
    }
}

/// One object (or collection) of one resource.
#[derive(Clone)]
pub struct Target {
    pub resource: Arc<Resource>,
    pub namespace: Option<String>,
    /// `None` for a collection.
    pub name: Option<String>,
    pub subresource: Option<Subresource>,
}

impl Target {
    /// The collection of `resource` (in `namespace`, if given).
    pub fn collection(resource: Arc<Resource>, namespace: Option<String>) -> Self {
        Self {
            resource,
            namespace,
            name: None,
            subresource: None,
        }
    }

    /// One named object.
    pub fn object(resource: Arc<Resource>, namespace: Option<String>, name: String) -> Self {
        Self {
            resource,
            namespace,
            name: Some(name),
            subresource: None,
        }
    }

    pub(crate) fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    pub(crate) fn key(&self) -> String {
        self.resource.key(self.namespace.as_deref(), self.name())
    }

    pub(crate) fn not_found(&self) -> ApiError {
        let r = &self.resource;
        ApiError::not_found(&r.qualified(), &r.group, &r.plural, self.name())
    }

    pub(crate) fn modified(&self) -> ApiError {
        let r = &self.resource;
        ApiError::modified(&r.qualified(), &r.group, &r.plural, self.name())
    }

    pub(crate) fn conflict(&self, why: &str) -> ApiError {
        let r = &self.resource;
        ApiError::conflict(&r.qualified(), &r.group, &r.plural, self.name(), why)
    }

    pub(crate) fn invalid(
        &self,
        name: &str,
        causes: Vec<fleetdb_machinery::field::FieldError>,
    ) -> ApiError {
        let r = &self.resource;
        ApiError::invalid(&r.kind_qualified(), &r.group, &r.kind, name, causes)
    }
}

/// What to do with fields a custom resource's schema does not declare (`fieldValidation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and tell the client in warnings (the default).
    #[default]
    Warn,
    /// Refuse the request (400).
    Strict,
}

/// A write operation, as admission sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

/// What admission is told about a write.
pub struct AdmissionRequest<'a> {
    pub operation: Operation,
    pub target: &'a Target,
    pub user: &'a Identity,
    /// The stored object (updates and deletes).
    pub old: Option<&'a Value>,
    pub dry_run: bool,
}

/// Admission: the last word on a write, after the kind's rules and the schema, before the
/// object is stored. It may change the object (mutating) or refuse the write.
pub trait Admission: Send + Sync {
    fn admit(&self, request: &AdmissionRequest<'_>, object: &mut Value) -> Result<(), ApiError>;
}

/// Admits everything unchanged.
pub struct AdmitAll;

impl Admission for AdmitAll {
    fn admit(&self, _: &AdmissionRequest<'_>, _: &mut Value) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Who writes and how.
pub struct WriteOptions<'a> {
    pub user: &'a Identity,
    /// `dryRun=All`: every check, nothing stored.
    pub dry_run: bool,
    /// The field manager of the write (for server-side apply: the applier).
    pub field_manager: String,
    pub field_validation: FieldValidation,
    pub admission: &'a dyn Admission,
}

/// A written object.
#[derive(Debug)]
pub struct Written {
    /// The object as now stored, with its resourceVersion (for `/scale`: the Scale).
    pub object: Value,
    /// The stored bytes, when the write stored the object (so a plain-JSON answer can splice
    /// the resourceVersion in instead of encoding the object again).
    pub stored: Option<KeyValue>,
    /// Warnings for the client (unknown fields dropped).
    pub warnings: Vec<String>,
}

/// A patch of one of the kinds PATCH accepts (server-side apply has its own entry point).
pub enum Patch {
    /// JSON merge patch (RFC 7386); also strategic merge patches of built-in kinds, which are
    /// the same for the fields clients patch on them.
    Merge(Value),
    /// JSON patch (RFC 6902).
    Json(json_patch::Patch),
}

/// DeleteOptions.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

/// What a delete did.
#[derive(Debug)]
pub enum Deleted {
    /// The object has finalizers (or its kind must empty it first): it is marked with a
    /// `deletionTimestamp` and goes when they are done.
    Pending(Value),
    /// The object is gone. `answer_with_status`: the kind answers a removal with a `Status`
    /// (custom resources) rather than the object (built-in kinds).
    Removed {
        object: Value,
        answer_with_status: bool,
    },
}

impl Registry {
    pub fn new(storage: Arc<Storage>, catalog: Arc<Catalog>) -> Self {
        Self {
            storage,
            catalog,
            policy: Arc::default(),
        }
    }

    /// The RBAC policy and certificate revocations in force.
    pub fn policy(&self) -> &Arc<policy::PolicyCache> {
        &self.policy
    }

    /// The catalog of served kinds.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The storage layer (for controllers and extensions of this server).
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }
}
