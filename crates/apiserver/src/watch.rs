//! Watches: a chunked stream of newline-terminated JSON events.
//!
//! Without a resourceVersion (or with "0") the stream starts with an ADDED event per current
//! object, then follows changes. With a resourceVersion it replays every change after it, or
//! answers with an ERROR event carrying `410 Expired` when that history was compacted.
//! `sendInitialEvents=true` adds the closing bookmark annotated
//! `k8s.io/initial-events-end`. Selector transitions become ADDED/DELETED as in Kubernetes.
//! Changes come from the shared watch cache (`watch_cache.rs`) when the starting revision is
//! recent, from a store watch of the client's own otherwise. Each watch has a bounded outgoing
//! buffer; a client that stops reading is cut off, never slowing writers or other watchers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use fleetdb_store::{EventKind, RangeRequest, Revision, StoreError};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::VecDeque;
use tokio::sync::broadcast;
use tokio::sync::mpsc;

use crate::negotiate::{self, Representation};
use crate::objects;
use crate::query::Query;
use crate::registry::Resource;
use crate::rest::{Selectors, Target, store_error};
use crate::server::ApiServer;
use crate::status::{ApiError, Cause};
use crate::table;
use crate::watch_cache::CachedEvent;

/// Events buffered for one client before it is considered too slow and cut off.
pub const WATCH_BUFFER_EVENTS: usize = 1024;
/// Bookmarks are sent this often when the client allows them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// Watches without timeoutSeconds last between these many seconds (spread to avoid herds).
const DEFAULT_TIMEOUT_RANGE: (u64, u64) = (1800, 3600);

fn event(kind: &str, object: Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Renders one object for the stream (plain, or as a one-row Table).
fn render(resource: &Resource, representation: Representation, mut object: Value) -> Value {
    object["apiVersion"] = json!(resource.api_version());
    object["kind"] = json!(resource.kind);
    match representation {
        Representation::Table(version) => {
            let metadata = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
            table::table(resource, version, &[object], metadata, false)
        }
        _ => object,
    }
}

fn bookmark(resource: &Resource, revision: Revision, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event(
        "BOOKMARK",
        json!({"kind": resource.kind, "apiVersion": resource.api_version(), "metadata": metadata}),
    )
}

pub async fn watch(
    server: Arc<ApiServer>,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let representation = negotiate::representation(headers)?;
    let resource = target.resource.clone();
    let selectors = Selectors::parse(&resource, query)?;
    let send_initial = query.flag("sendInitialEvents")?;
    let bookmarks = query.flag("allowWatchBookmarks")?;
    if send_initial && query.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(ApiError::invalid(
            "ListOptions.meta.k8s.io",
            "meta.k8s.io",
            "ListOptions",
            "",
            vec![Cause::forbidden(
                "resourceVersionMatch",
                "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            )],
        ));
    }
    let timeout = match query.number("timeoutSeconds")? {
        Some(seconds) => Duration::from_secs(seconds),
        None => {
            let (low, high) = DEFAULT_TIMEOUT_RANGE;
            Duration::from_secs(low + rand::random::<u64>() % (high - low))
        }
    };
    let prefix = resource.key_prefix(target.namespace.as_deref());
    let requested = query.get("resourceVersion");
    let from_snapshot = send_initial || matches!(requested, None | Some("0"));

    // The starting point: a snapshot to send as ADDED events, or a revision to resume after.
    let mut initial = Vec::new();
    let after = if from_snapshot {
        let mut revision = None;
        let mut from_key = None;
        loop {
            let page = server
                .store
                .range(RangeRequest {
                    prefix: prefix.clone(),
                    from_key: from_key.take(),
                    limit: 1000,
                    revision,
                    count: false,
                })
                .await
                .map_err(store_error)?;
            revision = Some(page.revision);
            for kv in &page.kvs {
                let object = objects::decode(kv)?;
                if selectors.matches(&object) {
                    initial.push(object);
                }
            }
            match (page.more, page.kvs.last()) {
                (true, Some(last)) => from_key = Some(format!("{}\0", last.key)),
                _ => break,
            }
        }
        revision.unwrap_or_default()
    } else {
        let raw = requested.unwrap_or("0");
        raw.parse::<Revision>()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {raw:?}")))?
    };

    let (tx, rx) = mpsc::channel::<Bytes>(WATCH_BUFFER_EVENTS);
    let feed = server
        .watch_cache
        .feed(&resource.key_prefix(None), server.shutdown_signal())
        .await
        .map_err(store_error)?;
    // Subscribe before reading the cached history, so no event falls between the two.
    let live = feed.subscribe();
    let source = match feed.events_after(after) {
        Some(replay) => Some(Source::Cache {
            replay: replay.into(),
            live,
            last: after,
        }),
        None => match server.store.watch(&prefix, after).await {
            Ok(changes) => Some(Source::Store { changes }),
            Err(StoreError::Compacted {
                requested,
                compacted,
            }) => {
                let status = ApiError::expired(format!(
                    "too old resource version: {requested} ({compacted})"
                ));
                let _ = tx.try_send(event("ERROR", status.to_status()));
                None
            }
            Err(e) => return Err(store_error(e)),
        },
    };
    if let Some(source) = source {
        let task_server = server.clone();
        tokio::spawn(async move {
            let context = StreamContext {
                resource,
                representation,
                selectors,
                bookmarks,
                prefix,
            };
            context
                .run(
                    task_server,
                    source,
                    tx,
                    initial,
                    send_initial,
                    after,
                    timeout,
                )
                .await;
        });
    }
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<Bytes, Infallible>(chunk), rx))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .header(axum::http::header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(stream))
        .expect("a valid response"))
}

/// Where a watch's changes come from.
enum Source {
    /// The shared cache: recent history, then the live broadcast.
    Cache {
        replay: VecDeque<Arc<CachedEvent>>,
        live: broadcast::Receiver<Arc<CachedEvent>>,
        last: Revision,
    },
    /// A store watch of this client's own (its starting revision is older than the cache).
    Store { changes: fleetdb_store::WatchStream },
}

/// Why a watch's source ended.
enum SourceEnd {
    /// The history it needed was compacted: the client gets 410 and relists.
    Expired(StoreError),
    /// Cut off (fell behind) or the server is going away: the client re-watches.
    Closed,
}

impl Source {
    async fn next(&mut self) -> Result<Arc<CachedEvent>, SourceEnd> {
        match self {
            Source::Cache { replay, live, last } => loop {
                let event = match replay.pop_front() {
                    Some(event) => event,
                    None => match live.recv().await {
                        Ok(event) => event,
                        Err(broadcast::error::RecvError::Lagged(_))
                        | Err(broadcast::error::RecvError::Closed) => {
                            return Err(SourceEnd::Closed);
                        }
                    },
                };
                if event.revision > *last {
                    *last = event.revision;
                    return Ok(event);
                }
            },
            Source::Store { changes } => loop {
                match changes.next().await {
                    Some(Ok(change)) => {
                        if let Some(event) = CachedEvent::from_store(&change) {
                            return Ok(Arc::new(event));
                        }
                    }
                    Some(Err(e @ StoreError::Compacted { .. })) => {
                        return Err(SourceEnd::Expired(e));
                    }
                    Some(Err(_)) | None => return Err(SourceEnd::Closed),
                }
            },
        }
    }
}

struct StreamContext {
    resource: Arc<Resource>,
    representation: Representation,
    selectors: Selectors,
    bookmarks: bool,
    /// Store prefix of what this client watches (a namespace, or all of the resource).
    prefix: String,
}

impl StreamContext {
    /// Sends one chunk; false when the client is gone or too slow (its buffer is full).
    fn send(&self, tx: &mpsc::Sender<Bytes>, chunk: Bytes) -> bool {
        match tx.try_send(chunk) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::info!(resource = %self.resource.qualified(), "closing a watch whose client does not keep up");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        self,
        server: Arc<ApiServer>,
        mut source: Source,
        tx: mpsc::Sender<Bytes>,
        initial: Vec<Value>,
        send_initial: bool,
        after: Revision,
        timeout: Duration,
    ) {
        for object in initial {
            if !self.send(
                &tx,
                event("ADDED", render(&self.resource, self.representation, object)),
            ) {
                return;
            }
        }
        if send_initial && !self.send(&tx, bookmark(&self.resource, after, true)) {
            return;
        }
        let mut last = after;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut bookmark_timer = tokio::time::interval(BOOKMARK_INTERVAL);
        bookmark_timer.tick().await;
        let mut shutdown = server.shutdown_signal();
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
                _ = bookmark_timer.tick(), if self.bookmarks => {
                    if !self.send(&tx, bookmark(&self.resource, last, false)) {
                        return;
                    }
                }
                change = source.next() => {
                    let change = match change {
                        Ok(change) => change,
                        Err(SourceEnd::Expired(StoreError::Compacted { requested, compacted })) => {
                            let status = ApiError::expired(format!("too old resource version: {requested} ({compacted})"));
                            let _ = self.send(&tx, event("ERROR", status.to_status()));
                            return;
                        }
                        Err(_) => return,
                    };
                    last = change.revision;
                    if !change.key.starts_with(&self.prefix) {
                        continue;
                    }
                    let Some((kind, object)) = self.translate(&change) else { continue };
                    let line = match self.representation {
                        Representation::Table(_) => event(kind, render(&self.resource, self.representation, (**object).clone())),
                        _ => change.encoded(kind, object, &self.resource.api_version(), &self.resource.kind),
                    };
                    if !self.send(&tx, line) {
                        return;
                    }
                }
            }
        }
    }

    /// The event a change is for this watcher, after selector transitions.
    fn translate<'a>(&self, change: &'a CachedEvent) -> Option<(&'static str, &'a Arc<Value>)> {
        let was_matching = change
            .previous
            .as_ref()
            .is_some_and(|o| self.selectors.matches(o));
        match change.kind {
            EventKind::Put => {
                let object = change.object.as_ref()?;
                match (was_matching, self.selectors.matches(object)) {
                    (false, true) => Some(("ADDED", object)),
                    (true, true) => Some(("MODIFIED", object)),
                    (true, false) => Some(("DELETED", object)),
                    (false, false) => None,
                }
            }
            EventKind::Delete if was_matching => change.previous.as_ref().map(|o| ("DELETED", o)),
            EventKind::Delete => None,
        }
    }
}
