//! Reading what a request selects, at one revision, in the cheapest way that is exact: the
//! one key a field selector pins (`metadata.name=X` with the namespace known: one `get`,
//! never a continue token), the label index's candidates (`label_index.rs`), or a scan of
//! the prefix. Selectors are checked on a light read of the stored bytes (name, namespace,
//! labels, phase — no `Value`). Whichever path reads it, the answer is the same.

use std::sync::Arc;

use fleetdb_machinery::meta;
use fleetdb_machinery::selectors::{FieldSelector, LabelSelector};
use fleetdb_store::{KeyValue, MAX_KEY_BYTES, Revision, Scan, Store, StoreError};
use serde_json::Value;

use super::{STORE_PAGE, Storage, codec, label_index};
use crate::api::{ApiError, Resource};

/// The label and field selectors of a list, watch or deletecollection.
pub struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

/// The value of a selectable field other than name, namespace and phase: the scalar at its
/// dotted path (`involvedObject.name`, `spec.signerName`, `type`), `source` being an
/// Event's `source.component`; absent fields read as empty, as in kube-apiserver.
fn field_value(object: &Value, field: &str) -> Option<String> {
    let path = if field == "source" {
        "source.component"
    } else {
        field
    };
    let value = path
        .split('.')
        .fold(object, |value, segment| &value[segment]);
    Some(match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    })
}

impl Selectors {
    /// Selects everything.
    pub fn everything() -> Self {
        Self {
            labels: LabelSelector::everything(),
            fields: FieldSelector::everything(),
        }
    }

    pub fn is_everything(&self) -> bool {
        self.labels.is_everything() && self.fields.fields().is_empty()
    }

    /// Whether a decoded object matches.
    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches(&meta::labels(object))
            && self.fields.matches(|field| match field {
                "metadata.name" => meta::name(object).map(str::to_owned),
                "metadata.namespace" => Some(meta::namespace(object).unwrap_or("").to_owned()),
                "status.phase" => object["status"]["phase"].as_str().map(str::to_owned),
                other => field_value(object, other),
            })
    }

    /// Whether a stored object matches, reading only what the selectors look at when the
    /// bytes have the usual shape (decoding the whole object otherwise); same answer as
    /// [`Selectors::matches`] on the decoded object.
    pub fn matches_stored(&self, kv: &KeyValue) -> Result<bool, ApiError> {
        if self.is_everything() {
            return Ok(true);
        }
        // Other fields than these need the whole object decoded.
        let quick =
            self.fields
                .names_only(&["metadata.name", "metadata.namespace", "status.phase"]);
        let Some(read) = quick.then(|| meta::selectable(&kv.value)).flatten() else {
            return Ok(self.matches(&codec::decode(kv)?));
        };
        Ok(self.labels.matches(&read.labels)
            && self.fields.matches(|field| match field {
                "metadata.name" => read.name.clone(),
                "metadata.namespace" => Some(read.namespace.clone().unwrap_or_default()),
                "status.phase" => read.phase.clone(),
                _ => None,
            }))
    }

    /// The one store key these selectors can match, when the field selector pins the name
    /// (`metadata.name=X` or `==`) and the namespace is known (from the URL, or a
    /// `metadata.namespace=` requirement) for namespaced kinds. `None` (read the prefix) for
    /// names no stored object can have as a key segment (empty, with `/` or NUL, too long).
    pub fn exact_key(&self, resource: &Resource, namespace: Option<&str>) -> Option<String> {
        let name = self.fields.exact("metadata.name")?;
        let namespace = if resource.namespaced {
            Some(match namespace {
                Some(namespace) => namespace,
                None => self.fields.exact("metadata.namespace")?,
            })
        } else {
            None
        };
        let segment = |s: &str| !s.is_empty() && !s.contains(['/', '\0']);
        if !segment(name) || !namespace.is_none_or(segment) {
            return None;
        }
        let key = resource.key(namespace, name);
        (key.len() <= MAX_KEY_BYTES).then_some(key)
    }
}

/// What to read for a list, a watch's initial snapshot or a deletecollection.
pub struct SelectRequest<'a> {
    pub resource: &'a Resource,
    /// The namespace of the URL, if any.
    pub namespace: Option<&'a str>,
    pub selectors: &'a Selectors,
    /// Read at this revision (a continue token's, or `resourceVersionMatch=Exact`); now if
    /// `None`.
    pub revision: Option<Revision>,
    /// Start at this key (a continue token's).
    pub from_key: Option<String>,
    /// Stop after this many matching objects; 0 for no limit.
    pub limit: usize,
    /// Stop once the matching objects' stored bytes reach this many (after at least one
    /// object); 0 for no bound. Like `limit`, stopping early leaves a `next`.
    pub max_bytes: usize,
    /// Whether this continues an earlier list (for the wording of 410 errors).
    pub continued: bool,
}

impl SelectRequest<'_> {
    /// The store prefix read: the resource, or one namespace of it.
    pub fn prefix(&self) -> String {
        self.resource.key_prefix(self.namespace)
    }

    /// Maps a store failure of this read onto the API's errors.
    pub fn store_error(&self, e: StoreError) -> ApiError {
        match e {
            StoreError::Compacted { .. } if self.continued => ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. \
                 You can start a new list without the continue parameter.",
            ),
            other => ApiError::from_store(other),
        }
    }

    /// Whether a read that has gathered `count` objects of `bytes` stored bytes is full.
    pub fn is_full(&self, count: usize, bytes: usize) -> bool {
        (self.limit > 0 && count >= self.limit)
            || (self.max_bytes > 0 && count > 0 && bytes >= self.max_bytes)
    }
}

/// The matching objects of one consistent read, in key order.
pub struct Selection {
    pub kvs: Vec<KeyValue>,
    /// The revision everything was read at: the list's resourceVersion.
    pub revision: Revision,
    /// Where the next page starts, when `limit` or `max_bytes` stopped the read before the
    /// end.
    pub next: Option<String>,
    /// With `next`, when the label index answered: its candidates from `next` on, sorted, so
    /// the rest of a streamed list reads them instead of looking the selector up again.
    pub candidates: Option<Vec<String>>,
}

/// Reads what a request selects, at one revision (see the module documentation).
pub async fn select(storage: &Storage, request: &SelectRequest<'_>) -> Result<Selection, ApiError> {
    if let Some(key) = request
        .selectors
        .exact_key(request.resource, request.namespace)
    {
        return select_key(&**storage.store(), request, key).await;
    }
    if let Some(selection) = label_index::select(storage, request).await? {
        return Ok(selection);
    }
    select_by_scan(&**storage.store(), request).await
}

/// The name fast path: one `get`, never a continue token.
async fn select_key(
    store: &dyn Store,
    request: &SelectRequest<'_>,
    key: String,
) -> Result<Selection, ApiError> {
    let found = store
        .get(&key, request.revision)
        .await
        .map_err(|e| request.store_error(e))?;
    let mut kvs = Vec::new();
    if let Some(kv) = found.kv
        && request.from_key.as_ref().is_none_or(|from| kv.key >= *from)
        && request.selectors.matches_stored(&kv)?
    {
        kvs.push(kv);
    }
    Ok(Selection {
        kvs,
        revision: found.revision,
        next: None,
        candidates: None,
    })
}

/// Reads the prefix page by page at one revision, keeping what matches, until the end or the
/// request's `limit` / `max_bytes`.
async fn select_by_scan(
    store: &dyn Store,
    request: &SelectRequest<'_>,
) -> Result<Selection, ApiError> {
    let mut scan = Scan::new(store, request.prefix())
        .at(request.revision)
        .starting_at(request.from_key.clone())
        .page_size(STORE_PAGE);
    let mut kvs = Vec::new();
    let mut bytes = 0;
    let mut next = None;
    'pages: while let Some(page) = scan.next_page().await.map_err(|e| request.store_error(e))? {
        let page_len = page.len();
        for (index, kv) in page.into_iter().enumerate() {
            if !request.selectors.matches_stored(&kv)? {
                continue;
            }
            let key = kv.key.clone();
            bytes += kv.value.len();
            kvs.push(kv);
            if request.is_full(kvs.len(), bytes) {
                if index + 1 < page_len || !scan.is_done() {
                    next = Some(fleetdb_store::after(&key));
                }
                break 'pages;
            }
        }
    }
    Ok(Selection {
        kvs,
        revision: scan.revision().unwrap_or_default(),
        next,
        candidates: None,
    })
}

/// The rest of a read that stopped early (a streamed list's further chunks): where it goes
/// on, at its revision, with what it selects.
pub struct Cursor {
    pub storage: Arc<Storage>,
    pub resource: Arc<Resource>,
    pub namespace: Option<String>,
    pub selectors: Selectors,
    pub revision: Revision,
    /// Where the next chunk starts; `None` once everything was read.
    pub next: Option<String>,
    /// The label index's candidates (sorted), when the index answered the first read; the
    /// next chunk reads them from `position` on.
    pub candidates: Option<Vec<String>>,
    pub position: usize,
}

impl Cursor {
    /// Goes on after `first` (a read at `first.revision` that stopped early).
    pub fn after(
        storage: Arc<Storage>,
        resource: Arc<Resource>,
        namespace: Option<String>,
        selectors: Selectors,
        first: &mut Selection,
    ) -> Self {
        Self {
            storage,
            resource,
            namespace,
            selectors,
            revision: first.revision,
            next: first.next.take(),
            candidates: first.candidates.take(),
            position: 0,
        }
    }

    /// The next chunk's objects (at most `limit` objects or about `max_bytes`); `None` once
    /// everything was read.
    pub async fn next_chunk(
        &mut self,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Option<Vec<KeyValue>>, ApiError> {
        let Some(from_key) = self.next.take() else {
            return Ok(None);
        };
        let request = SelectRequest {
            resource: &self.resource,
            namespace: self.namespace.as_deref(),
            selectors: &self.selectors,
            revision: Some(self.revision),
            from_key: Some(from_key),
            limit,
            max_bytes,
            continued: false,
        };
        let Some(keys) = &self.candidates else {
            let selection = select_by_scan(&**self.storage.store(), &request).await?;
            self.next = selection.next;
            return Ok(Some(selection.kvs));
        };
        let keys = &keys[self.position..];
        let read =
            label_index::read_candidates(&**self.storage.store(), &request, keys, self.revision)
                .await?;
        if read.consumed < keys.len() {
            self.next = Some(fleetdb_store::after(&keys[read.consumed - 1]));
        }
        self.position += read.consumed;
        Ok(Some(read.kvs))
    }
}
