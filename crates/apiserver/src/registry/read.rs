//! Reads: one object, and lists — paged (`limit`, `continue` tokens carrying the revision and
//! the next key, so every page comes from one snapshot) or whole, in which case a long
//! answer's first read comes back with a cursor that reads the rest, chunk by chunk, at the
//! same revision.

use base64::Engine;
use fleetdb_machinery::selectors::{FieldSelector, LabelSelector};
use fleetdb_store::{KeyValue, Revision};
use serde_json::{Value, json};

use super::strategy;
use super::{Registry, Subresource, Target, scale};
use crate::api::{ApiError, Resource};
use crate::storage::select::Cursor;
use crate::storage::{STORE_PAGE, SelectRequest, Selectors, select};

/// The largest `limit` a list honours: a larger one gets this many objects and a continue
/// token (Kubernetes lets a server return fewer items than the limit).
pub const MAX_LIST_LIMIT: usize = 10_000;

/// Stored bytes after which a buffered list response, or one chunk of a streamed one, stops
/// taking objects (it always takes one); a paged list then returns a continue token. With
/// [`MAX_LIST_LIMIT`] it bounds what one list holds.
pub const LIST_CHUNK_BYTES: usize = 8 << 20;

/// Objects of the first read of an unpaged list (an answer that fits is one body, a longer
/// one is streamed) and of each further chunk of a streamed one.
pub const LIST_STREAM_PAGE: usize = STORE_PAGE;

/// What a list asks for.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    /// `limit`; 0 for none.
    pub limit: u64,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    /// Whether an unpaged answer may come in chunks (JSON lists and Tables, which the http
    /// layer streams); otherwise one read gathers it all.
    pub streamable: bool,
}

/// One read of a list.
pub struct ListPage {
    pub resource: std::sync::Arc<Resource>,
    pub kvs: Vec<KeyValue>,
    /// The revision everything was read at: the list's resourceVersion.
    pub revision: Revision,
    /// For a paged list that stopped before the end.
    pub continue_token: Option<String>,
    /// For an unpaged list longer than one read: the rest, read at `revision`.
    pub rest: Option<Cursor>,
}

/// Parses selectors, checking the field selector against what the kind supports.
pub fn selectors(
    resource: &Resource,
    label_selector: Option<&str>,
    field_selector: Option<&str>,
) -> Result<Selectors, ApiError> {
    let labels = match label_selector {
        Some(raw) => LabelSelector::parse(raw).map_err(|e| ApiError::bad_request(e.message))?,
        None => LabelSelector::everything(),
    };
    let fields = match field_selector {
        Some(raw) => FieldSelector::parse(raw).map_err(|e| ApiError::bad_request(e.message))?,
        None => FieldSelector::everything(),
    };
    let supported = strategy::for_resource(resource).selectable_fields();
    let declared = &resource.selectable_fields;
    for field in fields.fields() {
        if !supported.contains(&field) && !declared.iter().any(|d| d == field) {
            let list: Vec<String> = supported
                .iter()
                .copied()
                .chain(declared.iter().map(String::as_str))
                .map(|f| format!("\"{f}\""))
                .collect();
            return Err(ApiError::bad_request(format!(
                "\"{field}\" is not a known field selector: only {}",
                list.join(", ")
            )));
        }
    }
    Ok(Selectors { labels, fields })
}

/// Parses a `resourceVersion` parameter: a non-negative integer (400 otherwise, in
/// kube-apiserver's words).
pub fn parse_resource_version(raw: &str) -> Result<Revision, ApiError> {
    raw.parse::<Revision>()
        .ok()
        .filter(|revision| *revision >= 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "resourceVersion: Invalid value: {}: must be a non-negative integer",
                fleetdb_machinery::gofmt::quote(raw)
            ))
        })
}

/// A continue token: the revision of the list's snapshot and the key to resume at.
fn encode_continue(revision: Revision, start: &str) -> String {
    let token = json!({"rv": revision, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(Revision, String), ApiError> {
    let bad = || {
        ApiError::bad_request("the continue parameter is not a continue token this server issued")
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    match (value["rv"].as_i64(), value["start"].as_str()) {
        (Some(rv), Some(start)) => Ok((rv, start.to_owned())),
        _ => Err(bad()),
    }
}

impl Registry {
    /// One object (for `/scale`: its Scale).
    pub async fn get(&self, target: &Target) -> Result<Value, ApiError> {
        let (object, _) = self.read_current(target).await?;
        Ok(match (target.subresource, &target.resource.scale) {
            (Some(Subresource::Scale), Some(spec)) => scale::scale_of(spec, &object),
            _ => object,
        })
    }

    /// Lists what `options` select at one revision. A paged list (`limit`) is one read of
    /// at most [`MAX_LIST_LIMIT`] objects and about [`LIST_CHUNK_BYTES`], with a continue
    /// token when more remain. An unpaged streamable list makes its first read
    /// ([`LIST_STREAM_PAGE`] objects or [`LIST_CHUNK_BYTES`]) and returns a cursor for the
    /// rest; an unpaged other list reads everything.
    pub async fn list(&self, target: &Target, options: &ListOptions) -> Result<ListPage, ApiError> {
        let resource = &target.resource;
        let selectors = selectors(
            resource,
            options.label_selector.as_deref(),
            options.field_selector.as_deref(),
        )?;
        let limit = usize::try_from(options.limit).unwrap_or(usize::MAX);
        let match_mode = options.resource_version_match.as_deref();
        if let Some(mode) = match_mode
            && !matches!(mode, "Exact" | "NotOlderThan")
        {
            return Err(ApiError::bad_request(format!(
                "unsupported resourceVersionMatch {mode:?}: use Exact or NotOlderThan"
            )));
        }
        let requested = match options.resource_version.as_deref() {
            Some(raw) => Some(parse_resource_version(raw)?),
            None => None,
        };
        if match_mode.is_some() && options.continue_token.is_some() {
            return Err(ApiError::invalid(
                "ListOptions.meta.k8s.io",
                "meta.k8s.io",
                "ListOptions",
                "",
                vec![fleetdb_machinery::field::FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                )],
            ));
        }
        if match_mode.is_some() && requested.is_none() {
            return Err(ApiError::invalid(
                "ListOptions.meta.k8s.io",
                "meta.k8s.io",
                "ListOptions",
                "",
                vec![fleetdb_machinery::field::FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                )],
            ));
        }
        let prefix = resource.key_prefix(target.namespace.as_deref());
        let (revision, from_key) = match options.continue_token.as_deref() {
            Some(token) => {
                let (rv, start) = decode_continue(token)?;
                if !start.starts_with(&prefix) {
                    return Err(ApiError::bad_request(
                        "the continue token belongs to another list",
                    ));
                }
                (Some(rv), Some(start))
            }
            None => {
                let exact = match match_mode {
                    Some("Exact") => requested,
                    _ => None,
                };
                (exact, None)
            }
        };
        // What the first (for a buffered answer, the only) read may gather.
        let (read_limit, max_bytes) = match limit {
            0 if options.streamable => (LIST_STREAM_PAGE, LIST_CHUNK_BYTES),
            0 => (0, 0),
            limit => (limit.min(MAX_LIST_LIMIT), LIST_CHUNK_BYTES),
        };
        let mut selection = select(
            &self.storage,
            &SelectRequest {
                resource,
                namespace: target.namespace.as_deref(),
                selectors: &selectors,
                revision,
                from_key,
                limit: read_limit,
                max_bytes,
                continued: options.continue_token.is_some(),
            },
        )
        .await?;
        let (continue_token, rest) = match (&selection.next, limit) {
            (Some(_), 0) => {
                let cursor = Cursor::after(
                    self.storage.clone(),
                    resource.clone(),
                    target.namespace.clone(),
                    selectors,
                    &mut selection,
                );
                (None, Some(cursor))
            }
            (Some(start), _) => (Some(encode_continue(selection.revision, start)), None),
            (None, _) => (None, None),
        };
        Ok(ListPage {
            resource: resource.clone(),
            kvs: selection.kvs,
            revision: selection.revision,
            continue_token,
            rest,
        })
    }
}
