//! Kubernetes `Status` errors: every failed request is answered with one, with the code,
//! reason and message a Kubernetes API server would give, and causes naming each bad field.
//! Every layer returns them; only the http layer turns them into responses.

use fleetdb_machinery::field::FieldError;
use fleetdb_store::StoreError;
use serde_json::{Value, json};

/// HTTP status codes the API answers with.
pub mod code {
    pub const BAD_REQUEST: u16 = 400;
    pub const UNAUTHORIZED: u16 = 401;
    pub const FORBIDDEN: u16 = 403;
    pub const NOT_FOUND: u16 = 404;
    pub const METHOD_NOT_ALLOWED: u16 = 405;
    pub const NOT_ACCEPTABLE: u16 = 406;
    pub const CONFLICT: u16 = 409;
    pub const GONE: u16 = 410;
    pub const PAYLOAD_TOO_LARGE: u16 = 413;
    pub const UNSUPPORTED_MEDIA_TYPE: u16 = 415;
    pub const UNPROCESSABLE_ENTITY: u16 = 422;
    pub const TOO_MANY_REQUESTS: u16 = 429;
    pub const INTERNAL_SERVER_ERROR: u16 = 500;
    pub const SERVICE_UNAVAILABLE: u16 = 503;
}

/// A failed request, rendered as a Kubernetes `Status`.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// The HTTP status code.
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// The `Retry-After` of answers that the store could not serve.
pub const STORE_RETRY_AFTER_SECONDS: u64 = 1;

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// `hosts.example.com "h1" not found` (the qualified resource is `plural[.group]`).
    pub fn not_found(qualified: &str, group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            code::NOT_FOUND,
            "NotFound",
            format!("{qualified} \"{name}\" not found"),
        )
        .with_details(json!({"name": name, "group": group, "kind": plural}))
    }

    /// An unknown path or resource type.
    pub fn no_such_path() -> Self {
        Self::new(
            code::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn already_exists(qualified: &str, group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            code::CONFLICT,
            "AlreadyExists",
            format!("{qualified} \"{name}\" already exists"),
        )
        .with_details(json!({"name": name, "group": group, "kind": plural}))
    }

    /// A stale resourceVersion or a failed precondition.
    pub fn conflict(qualified: &str, group: &str, plural: &str, name: &str, why: &str) -> Self {
        Self::new(
            code::CONFLICT,
            "Conflict",
            format!("Operation cannot be fulfilled on {qualified} \"{name}\": {why}"),
        )
        .with_details(json!({"name": name, "group": group, "kind": plural}))
    }

    /// A conflict with per-field causes (server-side apply).
    pub fn conflict_with_causes(
        group: &str,
        plural: &str,
        name: &str,
        message: String,
        causes: Vec<FieldError>,
    ) -> Self {
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        Self::new(code::CONFLICT, "Conflict", message)
            .with_details(json!({"name": name, "group": group, "kind": plural, "causes": causes}))
    }

    /// The standard optimistic-concurrency conflict.
    pub fn modified(qualified: &str, group: &str, plural: &str, name: &str) -> Self {
        Self::conflict(
            qualified,
            group,
            plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// `Kind.group "name" is invalid: field: message, ...` with one cause per problem.
    pub fn invalid(
        kind_qualified: &str,
        group: &str,
        kind: &str,
        name: &str,
        causes: Vec<FieldError>,
    ) -> Self {
        let summary: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let message = match summary.len() {
            0 => format!("{kind_qualified} \"{name}\" is invalid"),
            1 => format!("{kind_qualified} \"{name}\" is invalid: {}", summary[0]),
            _ => format!(
                "{kind_qualified} \"{name}\" is invalid: [{}]",
                summary.join(", ")
            ),
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        Self::new(code::UNPROCESSABLE_ENTITY, "Invalid", message)
            .with_details(json!({"name": name, "group": group, "kind": kind, "causes": causes}))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(code::BAD_REQUEST, "BadRequest", message)
    }

    pub fn method_not_allowed(verb: &str, qualified: &str) -> Self {
        Self::new(
            code::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{verb} is not supported on resources of kind \"{qualified}\""),
        )
    }

    pub fn not_acceptable(accepted: &str) -> Self {
        Self::new(
            code::NOT_ACCEPTABLE,
            "NotAcceptable",
            format!("only the following media types are accepted: {accepted}"),
        )
    }

    pub fn unsupported_media_type(content_type: &str, accepted: &str) -> Self {
        Self::new(
            code::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media types include: {accepted}"
            ),
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            code::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// An object too large to store.
    pub fn object_too_large(size: usize, limit: usize) -> Self {
        Self::new(
            code::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("the object would take {size} bytes in storage; the limit is {limit} bytes"),
        )
    }

    /// An expired resourceVersion or continue token.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(code::GONE, "Expired", message)
    }

    /// `429`: the client has too much in flight; retry after a second.
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(code::TOO_MANY_REQUESTS, "TooManyRequests", message)
            .with_details(json!({"retryAfterSeconds": 1}))
    }

    /// Seconds after which the client should retry, when the error says so.
    pub fn retry_after(&self) -> Option<u64> {
        self.details
            .as_ref()
            .and_then(|d| d["retryAfterSeconds"].as_u64())
    }

    pub fn unauthorized() -> Self {
        Self::new(code::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(code::FORBIDDEN, "Forbidden", message)
    }

    /// `403` about one resource (`apierrors.NewForbidden`): `plural.group "name" is
    /// forbidden: <why>` (without the name when it is empty), with the details kube-apiserver
    /// gives.
    pub fn forbidden_resource(group: &str, plural: &str, name: &str, why: &str) -> Self {
        let qualified = if group.is_empty() {
            plural.to_owned()
        } else {
            format!("{plural}.{group}")
        };
        let message = if name.is_empty() {
            format!("{qualified} is forbidden: {why}")
        } else {
            format!("{qualified} \"{name}\" is forbidden: {why}")
        };
        let mut details = json!({"group": group, "kind": plural});
        if !name.is_empty() {
            details["name"] = json!(name);
        }
        Self::new(code::FORBIDDEN, "Forbidden", message).with_details(details)
    }

    /// A failure on our side. The message says what failed without internal detail.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(code::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(code::SERVICE_UNAVAILABLE, "ServiceUnavailable", message)
    }

    /// Maps a store failure onto the API's errors.
    pub fn from_store(e: StoreError) -> Self {
        match e {
            StoreError::ValueTooLarge { size, limit, .. } => Self::too_large(limit.min(size)),
            StoreError::Compacted {
                requested,
                compacted,
            } => Self::expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            StoreError::FutureRevision { requested, current } => Self::bad_request(format!(
                "resource version {requested} is newer than the latest ({current})"
            )),
            StoreError::Unavailable(_) | StoreError::Closed => {
                // `Retry-After`, so client-go tries again rather than failing.
                Self::unavailable("the storage backend is unavailable; retry shortly").with_details(
                    serde_json::json!({"retryAfterSeconds": STORE_RETRY_AFTER_SECONDS}),
                )
            }
            StoreError::InvalidKey { reason, .. } => Self::bad_request(reason),
            other => {
                tracing::error!(error = %other, "storage failure");
                Self::internal("storage failure; see the server log")
            }
        }
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

/// A successful-deletion `Status` (what a CR DELETE answers when the object is gone).
pub fn success(details: Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}
