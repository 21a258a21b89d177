//! Watches: the stream of newline-terminated JSON events (`{"type", "object"}`) a watch
//! answers with; the http layer sends them as they come.
//!
//! Without a resourceVersion (or with "0") the stream starts with an ADDED event per current
//! object, then follows changes. That snapshot is read at one revision page by page
//! ([`WATCH_SNAPSHOT_PAGE`], [`WATCH_SNAPSHOT_BYTES`]) as the client reads, so a large
//! resource never sits whole in memory and a reader slower than the server still gets it
//! all. With a resourceVersion it replays every change after it, or
//! answers with an ERROR event carrying `410 Expired` when that history was compacted.
//! `sendInitialEvents=true` adds the closing bookmark annotated
//! `k8s.io/initial-events-end`. Selector transitions become ADDED/DELETED as in Kubernetes.
//! Changes come from the shared watch cache (`watch_cache.rs`) when the starting revision is
//! recent, from a store watch of the client's own otherwise. A watch is the stream its
//! response body polls, with no task or buffer of its own: a client that falls behind the
//! cache's channel is cut off, never slowing writers or other watchers.
//!
//! A watch whose field selector pins one object (`metadata.name=X`, with the namespace known)
//! reads just that key for its initial events and follows the cache's channel of that key
//! alone, so it is not woken by changes to other objects; its bookmarks carry the feed's
//! newest revision (after delivering everything up to it), so a resumption starts from a
//! recent revision even when the object itself rarely changes.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fleetdb_machinery::field::FieldError;
use fleetdb_store::{EventKind, Revision, StoreError};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::read::selectors;
use super::{Registry, Target};
use crate::api::{ApiError, Resource};
use crate::storage::{
    CachedEvent, Feed, Replay, SelectRequest, Selection, Selectors, Storage, Subscription, Which,
    codec, select,
};

/// Bookmarks are sent this often when the client allows them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// Watches without timeoutSeconds last between these many seconds (spread to avoid herds).
const DEFAULT_TIMEOUT_RANGE: (u64, u64) = (1800, 3600);
/// Objects read per page of a watch's initial snapshot (with [`WATCH_SNAPSHOT_BYTES`]
/// bounding a page's bytes): the snapshot is read and sent page by page, never held whole.
pub const WATCH_SNAPSHOT_PAGE: usize = 1000;
/// Bytes of stored objects per page of a watch's snapshot: what a watch whose client stops
/// reading in the middle of its snapshot holds until it times out (the body is not polled
/// while the connection is full), so small — 200 such watches of one user hold 50 MiB at
/// most — where a list's page ([`LIST_CHUNK_BYTES`](super::read::LIST_CHUNK_BYTES)) is 8 MiB.
pub const WATCH_SNAPSHOT_BYTES: usize = 256 << 10;

fn event(kind: &str, object: Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Renders one object as served into what a watcher asked for (e.g. a one-row Table).
pub type Render = Arc<dyn Fn(&Resource, Value) -> Value + Send + Sync>;

/// How a watch's objects are rendered.
#[derive(Clone)]
pub enum WatchFormat {
    /// As they are (each event serialized once, shared by every such watcher).
    Json,
    /// Rendered by the caller.
    Rendered(Render),
}

/// What a watch asks for.
#[derive(Clone, Debug, Default)]
pub struct WatchOptions {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub send_initial_events: bool,
    pub allow_bookmarks: bool,
    /// `timeoutSeconds`; a random default between [`DEFAULT_TIMEOUT_RANGE`] seconds.
    pub timeout: Option<Duration>,
}

/// Renders one object for the stream.
fn render(resource: &Resource, format: &WatchFormat, mut object: Value) -> Value {
    object["apiVersion"] = json!(resource.api_version());
    object["kind"] = json!(resource.kind);
    match format {
        WatchFormat::Rendered(render) => render(resource, object),
        WatchFormat::Json => object,
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

impl Registry {
    /// Starts a watch: the returned stream yields its events (newline-terminated JSON lines)
    /// as the caller polls it and ends when the watch does. Errors before the first event
    /// are returned as such (so they can be a Status); an expired resourceVersion is an
    /// `ERROR` event.
    ///
    /// The stream is the watch: no task or buffer of its own. What it has not yet been polled
    /// for waits in the feed's channel, which a watcher may fall behind by at most its
    /// capacity before it is cut off; what it yielded waits in the connection's send buffer,
    /// bounded in bytes by HTTP/2 flow control.
    pub async fn watch(
        &self,
        target: &Target,
        options: &WatchOptions,
        format: WatchFormat,
    ) -> Result<BoxStream<'static, Bytes>, ApiError> {
        let resource = target.resource.clone();
        let selectors = selectors(
            &resource,
            options.label_selector.as_deref(),
            options.field_selector.as_deref(),
        )?;
        let send_initial = options.send_initial_events;
        if send_initial && options.resource_version_match.as_deref() != Some("NotOlderThan") {
            return Err(ApiError::invalid(
                "ListOptions.meta.k8s.io",
                "meta.k8s.io",
                "ListOptions",
                "",
                vec![FieldError::forbidden(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                )],
            ));
        }
        let timeout = options.timeout.unwrap_or_else(|| {
            let (low, high) = DEFAULT_TIMEOUT_RANGE;
            Duration::from_secs(low + rand::random::<u64>() % (high - low))
        });
        let storage = self.storage.clone();
        let prefix = resource.key_prefix(target.namespace.as_deref());
        // The one key this watch can see, when its field selector pins it.
        let key = selectors.exact_key(&resource, target.namespace.as_deref());
        let requested = options
            .resource_version
            .as_deref()
            .filter(|v| !v.is_empty());
        let from_snapshot = send_initial || matches!(requested, None | Some("0"));

        // The feed first: when it starts now, its history then covers the snapshot's
        // revision, and the watch is served from it rather than from a store watch of its
        // own.
        let feed = storage.feed(&resource.key_prefix(None)).await?;
        // The starting point: a snapshot to send as ADDED events (its first page read here,
        // so that errors are a Status; the rest page by page as the client reads), or a
        // revision to resume after.
        let mut initial = None;
        let after = if from_snapshot {
            let first = select(
                &storage,
                &snapshot_page(
                    &resource,
                    target.namespace.as_deref(),
                    &selectors,
                    None,
                    None,
                ),
            )
            .await?;
            let revision = first.revision;
            initial = Some(first);
            revision
        } else {
            super::read::parse_resource_version(requested.unwrap_or("0"))?
        };

        // Subscribe before reading the cached history, so no event falls between the two.
        let (live, replay) = match &key {
            Some(key) => (feed.subscribe_key(key), feed.key_events_after(after, key)),
            None => (feed.subscribe(), feed.events_after(after)),
        };
        let source = match replay {
            Some(replay) => Source::Cache {
                replay,
                live,
                last: after,
                feed: feed.clone(),
            },
            // Too old for the cache: a store watch of the one key (as a prefix, so longer
            // keys are filtered below) or of the prefix.
            None => match storage
                .store()
                .watch(key.as_deref().unwrap_or(&prefix), after)
                .await
            {
                Ok(changes) => Source::Store { changes },
                Err(StoreError::Compacted {
                    requested,
                    compacted,
                }) => {
                    let status = ApiError::expired(format!(
                        "too old resource version: {requested} ({compacted})"
                    ));
                    let line = event("ERROR", status.to_status());
                    return Ok(futures::stream::iter([line]).boxed());
                }
                Err(e) => return Err(ApiError::from_store(e)),
            },
        };
        let context = StreamContext {
            resource,
            format,
            selectors,
            bookmarks: options.allow_bookmarks,
            prefix,
            key,
            namespace: target.namespace.clone(),
        };
        let phase = match initial {
            Some(page) => Phase::Snapshot { page, at: 0 },
            None => Phase::Live,
        };
        let mut bookmark_timer = tokio::time::interval_at(
            tokio::time::Instant::now() + BOOKMARK_INTERVAL,
            BOOKMARK_INTERVAL,
        );
        bookmark_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let watch = Watch {
            shutdown: storage.shutdown_signal(),
            storage,
            context,
            source,
            phase,
            send_initial,
            snapshot_revision: after,
            last: after,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            bookmark_timer,
            bookmark_due: None,
        };
        Ok(futures::stream::unfold(watch, |mut watch| async move {
            let line = watch.next_line().await?;
            Some((line, watch))
        })
        .boxed())
    }
}

/// Where a watch's changes come from.
enum Source {
    /// The shared cache: recent history, then the live broadcast (of the resource, or of one
    /// key).
    Cache {
        replay: Replay,
        live: Subscription,
        last: Revision,
        feed: Arc<Feed>,
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
    /// The revision up to which every event of this source is already queued in it (read
    /// before draining it with [`Source::try_next`]); `None` when unknown.
    fn progress(&self) -> Option<Revision> {
        match self {
            Source::Cache { feed, .. } => Some(feed.published_revision()),
            Source::Store { .. } => None,
        }
    }

    /// The next event if one is queued already (`Ok(None)` otherwise).
    fn try_next(&mut self) -> Result<Option<Arc<CachedEvent>>, SourceEnd> {
        let Source::Cache {
            replay, live, last, ..
        } = self
        else {
            return Ok(None);
        };
        loop {
            let event = match replay.pop_front() {
                // Dropped from the history before this client read it: cut off.
                Some(event) => event.upgrade().ok_or(SourceEnd::Closed)?,
                None => match live.try_recv() {
                    Ok(event) => event,
                    Err(broadcast::error::TryRecvError::Empty) => return Ok(None),
                    Err(_) => return Err(SourceEnd::Closed),
                },
            };
            if event.revision > *last {
                *last = event.revision;
                return Ok(Some(event));
            }
        }
    }

    async fn next(&mut self) -> Result<Arc<CachedEvent>, SourceEnd> {
        match self {
            Source::Cache {
                replay, live, last, ..
            } => loop {
                let event = match replay.pop_front() {
                    Some(event) => event.upgrade().ok_or(SourceEnd::Closed)?,
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
            Source::Store { changes } => match changes.next().await {
                Some(Ok(change)) => Ok(Arc::new(CachedEvent::from_store(&change))),
                Some(Err(e @ StoreError::Compacted { .. })) => Err(SourceEnd::Expired(e)),
                Some(Err(_)) | None => Err(SourceEnd::Closed),
            },
        }
    }
}

struct StreamContext {
    resource: Arc<Resource>,
    format: WatchFormat,
    selectors: Selectors,
    bookmarks: bool,
    /// Store prefix of what this client watches (a namespace, or all of the resource).
    prefix: String,
    /// The one key it watches, when its field selector pins one.
    key: Option<String>,
    /// The namespace of the URL, if any.
    namespace: Option<String>,
}

/// One page of a watch's initial snapshot at `revision` (now when `None`), from `from_key`.
fn snapshot_page<'a>(
    resource: &'a Resource,
    namespace: Option<&'a str>,
    selectors: &'a Selectors,
    revision: Option<Revision>,
    from_key: Option<String>,
) -> SelectRequest<'a> {
    SelectRequest {
        resource,
        namespace,
        selectors,
        revision,
        from_key,
        limit: WATCH_SNAPSHOT_PAGE,
        max_bytes: WATCH_SNAPSHOT_BYTES,
        continued: false,
    }
}

/// Where a watch is in its stream.
enum Phase {
    /// Sending the initial snapshot as ADDED events: the page being sent and the next of its
    /// objects.
    Snapshot { page: Selection, at: usize },
    /// Following changes.
    Live,
    /// Over: the stream ends.
    Done,
}

/// What a watch's live phase comes to next.
enum Live {
    /// A line, and more may follow.
    Line(Bytes),
    /// The line that ends the watch (an error the client acts on).
    Last(Bytes),
    /// The end, without a word (a timeout, or the client fell behind).
    End,
}

/// One watch, as its response body polls it.
struct Watch {
    storage: Arc<Storage>,
    context: StreamContext,
    source: Source,
    phase: Phase,
    /// Whether the snapshot ends with the `k8s.io/initial-events-end` bookmark.
    send_initial: bool,
    /// The revision of the snapshot, or the one the watch resumes after.
    snapshot_revision: Revision,
    /// The newest revision this client has been told of.
    last: Revision,
    deadline: Pin<Box<tokio::time::Sleep>>,
    bookmark_timer: tokio::time::Interval,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// When a bookmark is due: the source's progress when it fell due. Everything queued in
    /// the source up to there is delivered first, then the bookmark may say that revision
    /// even if none of it was for this client.
    bookmark_due: Option<Option<Revision>>,
}

impl Watch {
    /// The next line for the client; `None` when the watch is over.
    async fn next_line(&mut self) -> Option<Bytes> {
        loop {
            match &mut self.phase {
                Phase::Done => return None,
                Phase::Snapshot { page, at } => {
                    if let Some(kv) = page.kvs.get(*at) {
                        *at += 1;
                        match codec::decode(kv) {
                            Ok(object) => {
                                let object =
                                    render(&self.context.resource, &self.context.format, object);
                                return Some(event("ADDED", object));
                            }
                            Err(_) => {
                                tracing::warn!(key = %kv.key, "skipping an undecodable object in a watch snapshot");
                                continue;
                            }
                        }
                    }
                    if let Some(next) = page.next.take() {
                        // Boxed, so the stream does not keep room for the store read.
                        match Box::pin(self.context.read_snapshot_page(
                            &self.storage,
                            self.snapshot_revision,
                            next,
                        ))
                        .await
                        {
                            Some(next) => {
                                *page = next;
                                *at = 0;
                            }
                            None => self.phase = Phase::Done,
                        }
                        continue;
                    }
                    self.phase = Phase::Live;
                    if self.send_initial {
                        return Some(bookmark(
                            &self.context.resource,
                            self.snapshot_revision,
                            true,
                        ));
                    }
                }
                Phase::Live => match self.next_live_line().await {
                    Live::Line(line) => return Some(line),
                    Live::Last(line) => {
                        self.phase = Phase::Done;
                        return Some(line);
                    }
                    Live::End => self.phase = Phase::Done,
                },
            }
        }
    }

    /// What comes once the snapshot is sent: a change for this client or a bookmark, the
    /// error that ends the watch, or its quiet end.
    async fn next_live_line(&mut self) -> Live {
        loop {
            if let Some(progress) = self.bookmark_due {
                match self.source.try_next() {
                    Ok(Some(change)) => {
                        self.last = change.revision;
                        match self.context.line_for(&change) {
                            ChangeLine::Send(line) => return Live::Line(line),
                            ChangeLine::Skip => continue,
                            ChangeLine::Unreadable => return Live::Last(unreadable(&change)),
                        }
                    }
                    Ok(None) => {
                        self.bookmark_due = None;
                        self.last = self.last.max(progress.unwrap_or(self.last));
                        return Live::Line(bookmark(&self.context.resource, self.last, false));
                    }
                    Err(_) => return Live::End,
                }
            }
            let bookmarks = self.context.bookmarks;
            tokio::select! {
                _ = &mut self.deadline => return Live::End,
                _ = self.shutdown.changed() => return Live::Last(shutting_down()),
                _ = self.bookmark_timer.tick(), if bookmarks => {
                    self.bookmark_due = Some(self.source.progress());
                }
                change = self.source.next() => {
                    let change = match change {
                        Ok(change) => change,
                        Err(SourceEnd::Expired(StoreError::Compacted { requested, compacted })) => {
                            let status = ApiError::expired(format!("too old resource version: {requested} ({compacted})"));
                            return Live::Last(event("ERROR", status.to_status()));
                        }
                        Err(_) if self.storage.is_shutting_down() => return Live::Last(shutting_down()),
                        Err(_) => return Live::End,
                    };
                    self.last = change.revision;
                    match self.context.line_for(&change) {
                        ChangeLine::Send(line) => return Live::Line(line),
                        ChangeLine::Skip => {}
                        ChangeLine::Unreadable => return Live::Last(unreadable(&change)),
                    }
                }
            }
        }
    }
}

/// A change holds an object that cannot be read.
struct Unreadable;

/// What a change in the watched range makes for one watcher.
enum ChangeLine {
    Send(Bytes),
    /// Not for this watcher (another key, outside its selection).
    Skip,
    /// It tells of an object that cannot be read.
    Unreadable,
}

/// The event that ends a watch at a change whose object cannot be read: as kube-apiserver
/// does when it cannot decode what etcd sent, the client is told (a `500`) and lists again,
/// instead of missing the change (a selecting watcher could otherwise keep an object that
/// was overwritten, then deleted).
fn unreadable(change: &CachedEvent) -> Bytes {
    let status = ApiError::internal(format!(
        "the stored object {} cannot be read (revision {})",
        change.key, change.revision
    ));
    event("ERROR", status.to_status())
}

/// The event that ends a watch because the server is going away: as kube-apiserver does, the
/// client sees an error (and watches again, elsewhere if it can), not a clean end it would
/// take for a timeout.
fn shutting_down() -> Bytes {
    let status = ApiError::unavailable("the server is shutting down; watch again");
    event("ERROR", status.to_status())
}

impl StreamContext {
    /// Reads the snapshot's page at `revision` from `from_key` (the first page was read
    /// when the watch started); `None` (the watch ends, and the client watches again) when
    /// it could not be read.
    async fn read_snapshot_page(
        &self,
        storage: &Storage,
        revision: Revision,
        from_key: String,
    ) -> Option<Selection> {
        let request = snapshot_page(
            &self.resource,
            self.namespace.as_deref(),
            &self.selectors,
            Some(revision),
            Some(from_key),
        );
        match select(storage, &request).await {
            Ok(page) => Some(page),
            Err(error) => {
                tracing::warn!(resource = %self.resource.qualified(), status = %error.to_status(), "a watch snapshot page could not be read; ending the watch");
                None
            }
        }
    }

    /// The line a change makes for this client, if any. A change in the watched range
    /// whose object cannot be read ends the watch, whatever the selectors: they cannot be
    /// judged on it.
    fn line_for(&self, change: &CachedEvent) -> ChangeLine {
        if !change.key.starts_with(&self.prefix)
            || self.key.as_ref().is_some_and(|key| *key != change.key)
        {
            return ChangeLine::Skip;
        }
        let (kind, which) = match self.translate(change) {
            Ok(Some(told)) => told,
            Ok(None) => return ChangeLine::Skip,
            Err(Unreadable) => return ChangeLine::Unreadable,
        };
        // The object told of exists: no line means it cannot be read.
        let line = match &self.format {
            WatchFormat::Rendered(_) => change.value(which).map(|object| {
                event(
                    kind,
                    render(&self.resource, &self.format, (*object).clone()),
                )
            }),
            WatchFormat::Json => change.encoded(
                kind,
                which,
                &self.resource.api_version(),
                &self.resource.kind,
            ),
        };
        line.map_or(ChangeLine::Unreadable, ChangeLine::Send)
    }

    /// The event a change is for this watcher, after selector transitions, and which of its
    /// objects it tells of. A watcher without selectors decides without decoding anything;
    /// one with selectors cannot decide on an object that does not decode.
    fn translate(&self, change: &CachedEvent) -> Result<Option<(&'static str, Which)>, Unreadable> {
        if self.selectors.is_everything() {
            return Ok(match change.kind {
                EventKind::Put if change.previous_exists() => Some(("MODIFIED", Which::Object)),
                EventKind::Put => Some(("ADDED", Which::Object)),
                EventKind::Delete if change.previous_exists() => Some(("DELETED", Which::Previous)),
                EventKind::Delete => None,
            });
        }
        let was_matching = match change.previous() {
            Some(previous) => self.selectors.matches(&previous),
            None if change.previous_exists() => return Err(Unreadable),
            None => false,
        };
        Ok(match change.kind {
            EventKind::Put => {
                let object = change.object().ok_or(Unreadable)?;
                match (was_matching, self.selectors.matches(&object)) {
                    (false, true) => Some(("ADDED", Which::Object)),
                    (true, true) => Some(("MODIFIED", Which::Object)),
                    (true, false) => Some(("DELETED", Which::Object)),
                    (false, false) => None,
                }
            }
            EventKind::Delete if was_matching => Some(("DELETED", Which::Previous)),
            EventKind::Delete => None,
        })
    }
}
