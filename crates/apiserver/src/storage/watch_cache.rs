//! The watch cache: one store watch per resource, shared by every client watching it.
//!
//! Each change is read from the store once, decoded at most once (only when a selector or the
//! label index needs the objects: plain watchers get the stored bytes with the
//! resourceVersion spliced in), and serialized once per event type and API version, however
//! many clients watch. A bounded ring of recent events lets clients
//! resume from a recent resourceVersion without touching the store; older ones are served by
//! a store watch of their own (the store keeps history until compaction).
//!
//! Dispatch: watchers of the whole resource (or a namespace) share one broadcast channel;
//! watchers whose field selector pins one object (`metadata.name=X`, the host agent's watch of
//! its own Host) subscribe to a channel of that one key instead, so an event wakes only the
//! watchers of its key plus the resource-wide ones — 10,000 single-object watchers cost one
//! wake-up per event, not 10,000. Key channels are created on first subscription and removed
//! once nobody listens (checked when their key changes, and in sweeps as the map grows).
//!
//! Every served resource's feed starts with the server (and with its CRD), as kube-apiserver's
//! watch caches do, so a client's list is never older than the feed of the resource it then
//! watches unless it listed before the server started.
//!
//! Each feed also keeps the resource's label index (`label_index.rs`) current: every event
//! it publishes is applied to the index in the feed task.
//!
//! Memory is bounded in bytes, not only in events: a feed's history keeps at most
//! [`WATCH_CACHE_EVENTS`] events and [`WATCH_CACHE_BYTES`] of stored objects, and all feeds
//! together at most [`WATCH_CACHE_TOTAL_BYTES`]; only the history holds events. Channels and
//! a resuming watcher's replay carry weak references, so a client that stops reading holds
//! nothing: when it reads again, an event the history has dropped meanwhile ends its watch
//! as falling behind does. (With the events themselves in the channels, a watcher that stopped
//! reading pinned the last 4,096 changes of its resource: 8 GiB for 1 MiB ConfigMaps.)
//!
//! Invariants: a feed publishes events in revision order, with no gap after the revision it
//! started from; every event is in the history before it is sent on any channel, so a watcher
//! that subscribes first and reads the history second misses nothing; a client that falls
//! behind its channel's buffer or the history is cut off (it re-watches from its last
//! resourceVersion) and never slows the feed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use fleetdb_store::{EventKind, KeyValue, Revision, Store, StoreError};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::{codec, label_index};

/// Recent events each resource's feed keeps for clients resuming from a recent revision; also
/// the broadcast buffer a client may fall behind by before it is cut off.
pub const WATCH_CACHE_EVENTS: usize = 4096;

/// Most bytes of stored objects (each event's object and the one before it) one feed's
/// history keeps: 4,096 changes of Hosts are about 27 MiB, 4,096 changes of a 1 MiB
/// ConfigMap would be 8 GiB. A client further behind than the history is cut off and
/// re-watches; one resuming from before it reads the store instead.
pub const WATCH_CACHE_BYTES: usize = 32 << 20;

/// Most bytes the histories of all feeds keep together: a feed publishing while the total is
/// over it drops its own oldest events down to [`WATCH_CACHE_FLOOR_BYTES`] (so feeds that
/// filled the total and went quiet cannot leave a busy one without a history).
pub const WATCH_CACHE_TOTAL_BYTES: usize = 256 << 20;

/// What the total bound never takes from a feed's history (about 600 changes of Hosts).
pub const WATCH_CACHE_FLOOR_BYTES: usize = 4 << 20;

/// Stored bytes of the newest events of a feed that keep their decoded objects and lines
/// (with [`WATCH_DECODED_EVENTS`]); decoded, objects take about ten times their JSON.
pub const WATCH_DECODED_BYTES: usize = 4 << 20;

/// Events buffered in the channel of one watched key (see the module documentation) before a
/// watcher of that key that does not keep up is cut off. Small, because a tokio broadcast
/// channel allocates its buffer up front (32 bytes per slot: 512 bytes per watched key),
/// and one object rarely changes many times while its watcher's connection is full or
/// waiting to be scheduled (a watch reads its channel whenever the connection has room).
pub const WATCH_KEY_EVENTS: usize = 16;

/// Key channels are swept of those without receivers when the map has grown this much past
/// twice the size it had after the previous sweep (so sweeps cost amortized O(1) per
/// subscription and the map stays within about twice the watched keys).
const KEY_SWEEP_SLACK: usize = 1024;

/// Pause before a feed re-establishes a failed store watch.
const FEED_RETRY: Duration = Duration::from_millis(200);

/// Events of each feed whose decoded objects and serialized lines are kept (the newest ones,
/// which live watchers are reading now); older events in the history keep only the stored
/// bytes, and decode or splice their lines again if a resuming watcher needs them. Decoded,
/// a Host is about ten times its JSON, so this bounds most of a feed's memory; dropping the
/// lines too takes a third off each older event.
pub const WATCH_DECODED_EVENTS: usize = 256;

/// The decoded objects of an event: after the change (a put) and before it.
type Decoded = (Option<Arc<Value>>, Option<Arc<Value>>);

/// One change, decoded once for every watcher while it is new.
pub struct CachedEvent {
    pub revision: Revision,
    pub key: String,
    pub kind: EventKind,
    /// The object after a put, as stored.
    stored: Option<KeyValue>,
    /// The object before the change, as stored (for a deletion: with the deletion's revision
    /// as its `mod_revision`, which is what watchers are told).
    stored_previous: Option<KeyValue>,
    /// The decoded objects, while the event is among the newest [`WATCH_DECODED_EVENTS`].
    decoded: Mutex<Option<Decoded>>,
    /// Serialized `{"type", "object"}` lines by (type, apiVersion), made on first use (kept
    /// while the event is among the newest [`WATCH_DECODED_EVENTS`]).
    encoded: Mutex<Vec<(&'static str, String, Option<Bytes>)>>,
    /// Set once the event is no longer among the newest: what is made for it from then on
    /// is not kept (a resuming watcher reading old events does not pin them again).
    aged: AtomicBool,
}

/// Which of an event's objects a watcher is told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// The object after the change.
    Object,
    /// The object before it (a deletion).
    Previous,
}

impl CachedEvent {
    /// A store event, not decoded yet: watchers without selectors never need the objects
    /// (their lines are spliced from the stored bytes), so a resource nobody filters costs
    /// no decoding per write. Selectors and the label index decode on first use.
    pub fn from_store(event: &fleetdb_store::Event) -> Self {
        let (stored, stored_previous) = match event.kind {
            EventKind::Put => (Some(event.kv.clone()), event.prev.clone()),
            EventKind::Delete => (
                None,
                event.prev.as_ref().map(|kv| KeyValue {
                    mod_revision: event.revision(),
                    ..kv.clone()
                }),
            ),
        };
        Self {
            revision: event.revision(),
            key: event.kv.key.clone(),
            kind: event.kind,
            stored,
            stored_previous,
            decoded: Mutex::new(None),
            encoded: Mutex::new(Vec::new()),
            aged: AtomicBool::new(false),
        }
    }

    /// The decoded objects, decoding them again when they were forgotten.
    fn decoded(&self) -> Decoded {
        let mut decoded = self.decoded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(both) = &*decoded {
            return both.clone();
        }
        let decode = |kv: &Option<KeyValue>| {
            kv.as_ref()
                .and_then(|kv| codec::decode(kv).ok())
                .map(Arc::new)
        };
        let both = (decode(&self.stored), decode(&self.stored_previous));
        if !self.aged.load(Ordering::Acquire) {
            *decoded = Some(both.clone());
        }
        both
    }

    /// The object after a put.
    pub fn object(&self) -> Option<Arc<Value>> {
        self.decoded().0
    }

    /// The object before the change (for a deletion: stamped with the deletion's revision).
    pub fn previous(&self) -> Option<Arc<Value>> {
        self.decoded().1
    }

    /// Whether there was an object before the change (without decoding it).
    pub fn previous_exists(&self) -> bool {
        self.stored_previous.is_some()
    }

    /// Bytes of the stored objects this event holds (after and before the change), as the
    /// history's bounds count them.
    pub fn stored_bytes(&self) -> usize {
        [&self.stored, &self.stored_previous]
            .into_iter()
            .flatten()
            .map(|kv| kv.value.len())
            .sum()
    }

    /// One of the objects.
    pub fn value(&self, which: Which) -> Option<Arc<Value>> {
        match which {
            Which::Object => self.object(),
            Which::Previous => self.previous(),
        }
    }

    /// Drops the decoded objects and serialized lines (they are made again if asked for).
    fn forget_derived(&self) {
        // Before taking the locks: whoever makes something after this sees it.
        self.aged.store(true, Ordering::Release);
        *self.decoded.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *self.encoded.lock().unwrap_or_else(|e| e.into_inner()) = Vec::new();
    }

    /// Whether the decoded objects or serialized lines are held now.
    #[cfg(test)]
    fn holds_derived(&self) -> bool {
        self.decoded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
            || !self
                .encoded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
    }

    /// The serialized event line of type `event_type` telling of `which` object, rendered as
    /// `api_version`/`kind_name`: the stored bytes with the resourceVersion spliced in
    /// (decoded and encoded only when they do not have the usual shape), made once. `None`
    /// when that object cannot be read (never stored so by the writes): watchers skip it.
    pub fn encoded(
        &self,
        event_type: &'static str,
        which: Which,
        api_version: &str,
        kind_name: &str,
    ) -> Option<Bytes> {
        let mut cache = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, bytes)) = cache
            .iter()
            .find(|(t, v, _)| *t == event_type && v == api_version)
        {
            return bytes.clone();
        }
        let stored = match which {
            Which::Object => &self.stored,
            Which::Previous => &self.stored_previous,
        };
        let mut line = Vec::with_capacity(stored.as_ref().map_or(0, |kv| kv.value.len()) + 64);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(event_type.as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        let written = stored
            .as_ref()
            .is_some_and(|kv| codec::write_item(&mut line, api_version, kind_name, kv).is_ok());
        // An object that cannot be read is found so once, not by every watcher.
        let bytes = written.then(|| {
            line.extend_from_slice(b"}\n");
            Bytes::from(line)
        });
        if !self.aged.load(Ordering::Acquire) {
            cache.push((event_type, api_version.to_owned(), bytes.clone()));
        }
        bytes
    }
}

/// Recent events of one resource: the only strong references to them the feed keeps.
struct History {
    events: VecDeque<Arc<CachedEvent>>,
    /// Every change after this revision is in `events` (or was before it was evicted, which
    /// moves this forward).
    complete_after: Revision,
    /// [`CachedEvent::stored_bytes`] of `events`.
    bytes: usize,
    /// How many of the newest events still keep what they decode and serialize, and their
    /// stored bytes.
    fresh: usize,
    fresh_bytes: usize,
}

impl History {
    fn new(complete_after: Revision) -> Self {
        Self {
            events: VecDeque::new(),
            complete_after,
            bytes: 0,
            fresh: 0,
            fresh_bytes: 0,
        }
    }
}

/// A replay of cached events for a watcher resuming from a revision: weak references, so a
/// client that reads slowly holds no event the history has dropped (upgrading one fails; the
/// watch ends as when it falls behind).
pub type Replay = VecDeque<Weak<CachedEvent>>;

/// A subscription to a feed's live events (all of them, or one key's). The channel carries
/// weak references: an event the history dropped before the subscriber read it ends the
/// subscription as falling behind the channel does (`Lagged`), so a subscriber that stops
/// reading holds no memory.
pub struct Subscription {
    rx: broadcast::Receiver<Weak<CachedEvent>>,
}

impl Subscription {
    pub async fn recv(&mut self) -> Result<Arc<CachedEvent>, RecvError> {
        let event = self.rx.recv().await?;
        event.upgrade().ok_or(RecvError::Lagged(1))
    }

    pub fn try_recv(&mut self) -> Result<Arc<CachedEvent>, TryRecvError> {
        let event = self.rx.try_recv()?;
        event.upgrade().ok_or(TryRecvError::Lagged(1))
    }
}

/// Channels of single watched keys.
struct KeyChannels {
    senders: HashMap<String, broadcast::Sender<Weak<CachedEvent>>>,
    /// Sweep when `senders` reaches this size.
    sweep_at: usize,
}

/// The shared feed of one resource (all namespaces).
pub struct Feed {
    prefix: String,
    /// Replaced (closing every subscriber) when the feed loses events it cannot recover.
    tx: RwLock<broadcast::Sender<Weak<CachedEvent>>>,
    /// Cleared (closing every subscriber) on the same occasions.
    by_key: Mutex<KeyChannels>,
    history: RwLock<History>,
    /// Bytes held by the histories of every feed of the cache (see [`WATCH_CACHE_TOTAL_BYTES`]).
    total_bytes: Arc<AtomicUsize>,
    /// Revision of the last event sent on the channels.
    published: AtomicI64,
    index: label_index::Slot,
    /// Tells the feed's task to stop (its resource is no longer served).
    stop: tokio::sync::watch::Sender<bool>,
}

impl Feed {
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Subscribes to live events; call before [`Feed::events_after`].
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self
                .tx
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .subscribe(),
        }
    }

    /// Subscribes to the live events of one key only (buffer: [`WATCH_KEY_EVENTS`]); call
    /// before [`Feed::key_events_after`].
    pub fn subscribe_key(&self, key: &str) -> Subscription {
        let mut channels = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        if channels.senders.len() >= channels.sweep_at {
            channels.senders.retain(|_, tx| tx.receiver_count() > 0);
            channels.sweep_at = channels.senders.len() * 2 + KEY_SWEEP_SLACK;
        }
        if let Some(tx) = channels.senders.get(key) {
            return Subscription { rx: tx.subscribe() };
        }
        let (tx, rx) = broadcast::channel(WATCH_KEY_EVENTS);
        channels.senders.insert(key.to_owned(), tx);
        Subscription { rx }
    }

    /// Keys with a channel (including ones not swept yet).
    pub fn key_channels(&self) -> usize {
        self.by_key
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .senders
            .len()
    }

    /// The revision of the last event this feed sent to its subscribers: every event up to it
    /// is in their channels (or was, for those already received).
    pub fn published_revision(&self) -> Revision {
        self.published.load(Ordering::Acquire)
    }

    /// The resource's label index.
    pub fn label_index(&self) -> &label_index::Slot {
        &self.index
    }

    /// Every cached event after `after`, or `None` when the cache does not reach back that far.
    pub fn events_after(&self, after: Revision) -> Option<Replay> {
        self.cached_after(after, |_| true)
    }

    /// Every cached event of `key` after `after`, or `None` when the cache does not reach back
    /// that far.
    pub fn key_events_after(&self, after: Revision, key: &str) -> Option<Replay> {
        self.cached_after(after, |e| e.key == key)
    }

    fn cached_after(
        &self,
        after: Revision,
        wanted: impl Fn(&CachedEvent) -> bool,
    ) -> Option<Replay> {
        let history = self.history.read().unwrap_or_else(|e| e.into_inner());
        if after < history.complete_after {
            return None;
        }
        Some(
            history
                .events
                .iter()
                .filter(|e| e.revision > after && wanted(e))
                .map(Arc::downgrade)
                .collect(),
        )
    }

    /// Bytes of stored objects this feed's history holds now.
    pub fn history_bytes(&self) -> usize {
        self.history.read().unwrap_or_else(|e| e.into_inner()).bytes
    }

    fn publish(&self, event: Arc<CachedEvent>) {
        debug_assert!(
            event.revision > self.published_revision(),
            "a feed publishes in revision order"
        );
        {
            let mut history = self.history.write().unwrap_or_else(|e| e.into_inner());
            let size = event.stored_bytes();
            history.events.push_back(event.clone());
            history.bytes += size;
            history.fresh += 1;
            history.fresh_bytes += size;
            self.total_bytes.fetch_add(size, Ordering::AcqRel);
            // The newest events keep what they decode and serialize, within both bounds.
            while history.fresh > 1
                && (history.fresh > WATCH_DECODED_EVENTS
                    || history.fresh_bytes > WATCH_DECODED_BYTES)
            {
                let at = history.events.len() - history.fresh;
                let aged = history.events[at].clone();
                aged.forget_derived();
                history.fresh -= 1;
                history.fresh_bytes -= aged.stored_bytes();
            }
            // The history keeps its newest event whatever its size.
            while history.events.len() > 1
                && (history.events.len() > WATCH_CACHE_EVENTS
                    || history.bytes > WATCH_CACHE_BYTES
                    || (history.bytes > WATCH_CACHE_FLOOR_BYTES
                        && self.total_bytes.load(Ordering::Acquire) > WATCH_CACHE_TOTAL_BYTES))
            {
                let Some(evicted) = history.events.pop_front() else {
                    break;
                };
                let size = evicted.stored_bytes();
                history.bytes -= size;
                self.total_bytes.fetch_sub(size, Ordering::AcqRel);
                history.complete_after = evicted.revision;
                if history.fresh > history.events.len() {
                    history.fresh -= 1;
                    history.fresh_bytes -= size;
                }
            }
        }
        let weak = Arc::downgrade(&event);
        self.index.observe(&event);
        let revision = event.revision;
        {
            let mut channels = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(tx) = channels.senders.get(&event.key) {
                if tx.receiver_count() == 0 {
                    channels.senders.remove(&event.key);
                } else {
                    let _ = tx.send(weak.clone());
                }
            }
        }
        let _ = self.tx.read().unwrap_or_else(|e| e.into_inner()).send(weak);
        self.published.store(revision, Ordering::Release);
    }

    /// Stops the feed for good: its task ends, its watchers are closed, its memory goes.
    fn close(&self) {
        let _ = self.stop.send(true);
        self.reset(self.published_revision());
    }

    /// Forgets the history, closes every subscriber and drops the label index: after a gap,
    /// clients must re-watch (and the index be rebuilt).
    fn reset(&self, after: Revision) {
        let mut history = self.history.write().unwrap_or_else(|e| e.into_inner());
        self.total_bytes.fetch_sub(history.bytes, Ordering::AcqRel);
        *history = History::new(after);
        let (tx, _) = broadcast::channel(WATCH_CACHE_EVENTS);
        *self.tx.write().unwrap_or_else(|e| e.into_inner()) = tx;
        self.by_key
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .senders
            .clear();
        self.index.reset();
    }
}

impl Drop for Feed {
    /// What the history still holds leaves the cache's total (a feed closed while its task
    /// published one last event after the reset).
    fn drop(&mut self) {
        let history = self.history.get_mut().unwrap_or_else(|e| e.into_inner());
        self.total_bytes.fetch_sub(history.bytes, Ordering::AcqRel);
    }
}

/// Feeds by store prefix: started for every served resource when the catalog is built (see
/// `Storage::sync_feeds`), or by a first watch if that could not start one.
pub struct WatchCache {
    store: Arc<dyn Store>,
    feeds: Mutex<HashMap<String, Arc<Feed>>>,
    /// Bytes held by every feed's history.
    total_bytes: Arc<AtomicUsize>,
}

impl WatchCache {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            feeds: Mutex::new(HashMap::new()),
            total_bytes: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Bytes of stored objects the histories of all feeds hold now.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes.load(Ordering::Acquire)
    }

    /// The feed of the resource stored under `prefix`, started if needed.
    pub async fn feed(
        &self,
        prefix: &str,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Arc<Feed>, StoreError> {
        if let Some(feed) = self
            .feeds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(prefix)
        {
            return Ok(feed.clone());
        }
        let start = self.store.current_revision().await?;
        let changes = self.store.watch(prefix, start).await?;
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(feed) = feeds.get(prefix) {
            return Ok(feed.clone());
        }
        let (tx, _) = broadcast::channel(WATCH_CACHE_EVENTS);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let feed = Arc::new(Feed {
            prefix: prefix.to_owned(),
            tx: RwLock::new(tx),
            by_key: Mutex::new(KeyChannels {
                senders: HashMap::new(),
                sweep_at: KEY_SWEEP_SLACK,
            }),
            history: RwLock::new(History::new(start)),
            total_bytes: self.total_bytes.clone(),
            published: AtomicI64::new(start),
            index: label_index::Slot::new(prefix),
            stop,
        });
        feeds.insert(prefix.to_owned(), feed.clone());
        tokio::spawn(run_feed(
            self.store.clone(),
            feed.clone(),
            changes,
            start,
            shutdown,
            stopped,
        ));
        Ok(feed)
    }

    /// Closes the feeds of the prefixes `served` does not name (resources whose CRD went):
    /// their tasks stop, their watchers are told to re-watch, their history and label index
    /// are freed. Returns how many were closed.
    pub fn release_unserved(&self, served: &std::collections::HashSet<String>) -> usize {
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = feeds
            .keys()
            .filter(|prefix| !served.contains(*prefix))
            .cloned()
            .collect();
        for prefix in &gone {
            if let Some(feed) = feeds.remove(prefix) {
                feed.close();
            }
        }
        gone.len()
    }

    /// Prefixes with a feed.
    pub fn prefixes(&self) -> Vec<String> {
        self.feeds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}

/// Moves store events into a feed until shutdown, re-watching after failures.
async fn run_feed(
    store: Arc<dyn Store>,
    feed: Arc<Feed>,
    mut changes: fleetdb_store::WatchStream,
    start: Revision,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut last = start;
    loop {
        let change = tokio::select! {
            _ = shutdown.changed() => return,
            _ = stopped.changed() => return,
            change = changes.next() => change,
        };
        match change {
            Some(Ok(event)) => {
                last = event.revision();
                feed.publish(Arc::new(CachedEvent::from_store(&event)));
                continue;
            }
            Some(Err(error)) => {
                tracing::warn!(prefix = %feed.prefix, %error, "watch cache feed interrupted; re-watching")
            }
            None => tracing::debug!(prefix = %feed.prefix, "watch cache feed ended; re-watching"),
        }
        loop {
            if *shutdown.borrow() || *stopped.borrow() {
                return;
            }
            tokio::time::sleep(FEED_RETRY).await;
            match store.watch(&feed.prefix, last).await {
                Ok(stream) => {
                    changes = stream;
                    break;
                }
                Err(StoreError::Compacted { .. }) => {
                    // The gap cannot be filled: clients resuming across it get 410 and relist.
                    let now = store.current_revision().await.unwrap_or(last);
                    feed.reset(now);
                    last = now;
                }
                Err(error) => {
                    tracing::warn!(prefix = %feed.prefix, %error, "cannot re-watch; retrying")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetdb_store::Condition;
    use fleetdb_store::embedded::EmbeddedStore;
    use serde_json::json;

    /// A store in a temporary directory, a watch cache on it and the feed of one resource.
    struct Fixture {
        store: Arc<dyn Store>,
        cache: WatchCache,
        feed: Arc<Feed>,
        shutdown: tokio::sync::watch::Receiver<bool>,
        _stop: tokio::sync::watch::Sender<bool>,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        async fn start() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
            let cache = WatchCache::new(store.clone());
            let (stop, shutdown) = tokio::sync::watch::channel(false);
            let feed = cache
                .feed("/registry/g/things/", shutdown.clone())
                .await
                .unwrap();
            Self {
                store,
                cache,
                feed,
                shutdown,
                _stop: stop,
                _dir: dir,
            }
        }
    }

    /// A replay's events, all still in the history.
    fn strong(replay: Replay) -> Vec<Arc<CachedEvent>> {
        replay
            .iter()
            .map(|e| e.upgrade().expect("in the history"))
            .collect()
    }

    /// Waits until the feed has published everything the store holds.
    async fn caught_up(feed: &Feed, store: &Arc<dyn Store>) {
        let current = store.current_revision().await.unwrap();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while feed.published_revision() < current {
            assert!(tokio::time::Instant::now() < deadline, "the feed stalled");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Large objects: the history keeps what fits in its bytes, the decoded objects only the
    /// newest few megabytes; a subscriber that stopped reading holds none of what was dropped
    /// and is cut off when it reads again; a watcher resuming from before the history is sent
    /// to the store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_history_is_bounded_in_bytes_and_idle_subscribers_hold_nothing() {
        let fixture = Fixture::start().await;
        let (store, cache, feed) = (&fixture.store, &fixture.cache, &fixture.feed);
        let start = feed.published_revision();
        let mut idle = feed.subscribe();
        let mut idle_key = feed.subscribe_key("/registry/g/things/ns/first");
        // 40 changes of 600 KiB objects: 1.2 MB an event with the object before it, 47 MB
        // in all, more than one feed's history keeps. The first 12 (fewer than a key
        // channel holds: its subscriber is cut off by the history, not by its channel) are
        // of one object, the rest of another.
        let text = "x".repeat(600 << 10);
        for i in 0..40 {
            let name = if i < 12 { "first" } else { "big" };
            let object = json!({"apiVersion": "g/v1", "kind": "Thing", "metadata": {"name": name, "labels": {"n": i.to_string()}}, "text": text});
            store
                .put(
                    &format!("/registry/g/things/ns/{name}"),
                    codec::encode(&object),
                    Condition::Always,
                )
                .await
                .unwrap();
        }
        caught_up(feed, store).await;
        let held = feed.history_bytes();
        assert!(held <= WATCH_CACHE_BYTES, "{held} bytes held");
        assert!(held > WATCH_CACHE_BYTES / 2, "{held} bytes held");
        assert_eq!(cache.total_bytes(), held);
        assert!(
            feed.events_after(start).is_none(),
            "the oldest changes were dropped: a watcher from before them reads the store"
        );
        let newest = store.current_revision().await.unwrap();
        let recent = strong(feed.events_after(newest - 5).unwrap());
        assert_eq!(recent.len(), 5);
        for event in &recent {
            assert!(event.object().is_some());
        }
        let decoded = recent.iter().filter(|e| e.holds_derived()).count();
        assert!(
            (1..=WATCH_DECODED_BYTES.div_ceil(1200 << 10)).contains(&decoded),
            "{decoded} of the newest events keep their decoded objects"
        );
        // The idle subscribers' first events are gone: cut off, as when they fall behind.
        assert!(matches!(idle.recv().await, Err(RecvError::Lagged(_))));
        assert!(matches!(idle_key.recv().await, Err(RecvError::Lagged(_))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_write_is_decoded_and_serialized_once_for_every_watcher() {
        let fixture = Fixture::start().await;
        let (store, cache, feed) = (&fixture.store, &fixture.cache, &fixture.feed);
        let again = cache
            .feed("/registry/g/things/", fixture.shutdown.clone())
            .await
            .unwrap();
        assert!(Arc::ptr_eq(feed, &again), "one feed per resource");
        let mut watchers: Vec<_> = (0..50).map(|_| feed.subscribe()).collect();
        let object = json!({"apiVersion": "g/v1", "kind": "Thing", "metadata": {"name": "a"}});
        store
            .put(
                "/registry/g/things/ns/a",
                codec::encode(&object),
                Condition::Always,
            )
            .await
            .unwrap();
        let mut received = Vec::new();
        for watcher in &mut watchers {
            received.push(watcher.recv().await.unwrap());
        }
        assert!(
            received.iter().all(|e| Arc::ptr_eq(e, &received[0])),
            "shared, not copied"
        );
        let first = &received[0];
        let lines: Vec<Bytes> = received
            .iter()
            .map(|e| e.encoded("ADDED", Which::Object, "g/v1", "Thing").unwrap())
            .collect();
        assert!(
            lines.iter().all(|l| l.as_ptr() == lines[0].as_ptr()),
            "the event line is serialized once"
        );
        // A watcher resuming from before the write gets it from the cache.
        let replay = feed
            .events_after(first.revision - 1)
            .expect("recent history is cached");
        assert_eq!(replay.len(), 1);
        // Before the feed started, the cache cannot answer: such watchers use the store.
        assert!(feed.events_after(-1).is_none());
    }

    /// Only the newest events hold decoded objects and lines; older ones decode again on
    /// demand, to the same objects, and their lines (spliced again from the stored bytes)
    /// say the same.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn older_events_keep_bytes_and_decode_again_when_asked() {
        let fixture = Fixture::start().await;
        let (store, feed) = (&fixture.store, &fixture.feed);
        let start = feed.published_revision();
        let mut live = feed.subscribe();
        let key = |i: usize| format!("/registry/g/things/ns/t{}", i % 10);
        let total = WATCH_DECODED_EVENTS + 20;
        for i in 0..total {
            let object = json!({"apiVersion": "g/v1", "kind": "Thing", "metadata": {"name": format!("t{}", i % 10), "labels": {"n": i.to_string()}}});
            store
                .put(&key(i), codec::encode(&object), Condition::Always)
                .await
                .unwrap();
        }
        store.delete(&key(3), Condition::Always).await.unwrap();
        for _ in 0..=total {
            // As a watcher without selectors reads it: its line, made once.
            let event = live.recv().await.unwrap();
            let line = match event.kind {
                EventKind::Put => event.encoded("MODIFIED", Which::Object, "g/v1", "Thing"),
                EventKind::Delete => event.encoded("DELETED", Which::Previous, "g/v1", "Thing"),
            };
            assert!(line.is_some(), "every event here has a readable object");
        }
        let events = strong(feed.events_after(start).unwrap());
        assert_eq!(events.len(), total + 1);
        let held = events.iter().filter(|e| e.holds_derived()).count();
        assert_eq!(
            held, WATCH_DECODED_EVENTS,
            "only the newest events keep decoded objects and lines"
        );
        let old = &events[15];
        assert!(!old.holds_derived());
        let object = old.object().expect("decoded again");
        assert_eq!(object["metadata"]["labels"]["n"], "15");
        assert_eq!(
            object["metadata"]["resourceVersion"],
            old.revision.to_string()
        );
        let previous = old.previous().expect("t5 existed before");
        assert_eq!(previous["metadata"]["labels"]["n"], "5");
        // The line spliced from bytes is the decoded object as served.
        let line = old
            .encoded("MODIFIED", Which::Object, "g/v1", "Thing")
            .unwrap();
        let line: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(line, json!({"type": "MODIFIED", "object": *object}));
        assert!(!old.holds_derived(), "what is made again is not kept");
        // A deletion tells of the object before it, at the deletion's revision.
        let deletion = events.last().unwrap();
        let line = deletion
            .encoded("DELETED", Which::Previous, "g/v1", "Thing")
            .unwrap();
        let line: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(line["type"], "DELETED");
        assert_eq!(line["object"]["metadata"]["name"], "t3");
        assert_eq!(
            line["object"]["metadata"]["resourceVersion"],
            deletion.revision.to_string()
        );
        assert_eq!(line["object"], *deletion.previous().unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn key_watchers_receive_only_their_key_and_resource_watchers_everything() {
        let fixture = Fixture::start().await;
        let (store, feed) = (&fixture.store, &fixture.feed);
        let key = |name: &str| format!("/registry/g/things/ns/{name}");
        let mut everything = feed.subscribe();
        let mut only_a = feed.subscribe_key(&key("a"));
        let mut also_a = feed.subscribe_key(&key("a"));
        let only_b = feed.subscribe_key(&key("b"));
        assert_eq!(feed.key_channels(), 2, "one channel per key");
        let put = |name: &'static str, n: i64| {
            let store = store.clone();
            let object =
                json!({"apiVersion": "g/v1", "kind": "Thing", "metadata": {"name": name}, "n": n});
            async move {
                store
                    .put(&key(name), codec::encode(&object), Condition::Always)
                    .await
                    .unwrap()
            }
        };
        drop(only_b);
        let mut written = Vec::new();
        for (name, n) in [("c", 1), ("a", 1), ("b", 1), ("c", 2), ("a", 2)] {
            written.push((name, put(name, n).await.mod_revision));
        }
        let a_revisions: Vec<Revision> = written
            .iter()
            .filter(|(name, _)| *name == "a")
            .map(|(_, r)| *r)
            .collect();
        for watcher in [&mut only_a, &mut also_a] {
            let mut got = Vec::new();
            for _ in 0..a_revisions.len() {
                let event = watcher.recv().await.unwrap();
                assert_eq!(event.key, key("a"));
                got.push(event.revision);
            }
            assert_eq!(got, a_revisions);
        }
        let mut all = Vec::new();
        for _ in 0..written.len() {
            all.push(everything.recv().await.unwrap().revision);
        }
        assert_eq!(all, written.iter().map(|(_, r)| *r).collect::<Vec<_>>());
        assert!(only_a.try_recv().is_err(), "nothing else for a");
        // b's only watcher left: its channel went when b changed.
        assert_eq!(feed.key_channels(), 1);
        // The feed records what it published just after sending it.
        let last_written = written.last().unwrap().1;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while feed.published_revision() < last_written {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the feed never published"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(feed.published_revision(), last_written);
        // The history of one key, for a watcher resuming it.
        let replay = strong(
            feed.key_events_after(a_revisions[0] - 1, &key("a"))
                .unwrap(),
        );
        assert_eq!(
            replay.iter().map(|e| e.revision).collect::<Vec<_>>(),
            a_revisions
        );

        // A key watcher that falls behind its channel is cut off, as resource watchers are.
        for n in 0..(WATCH_KEY_EVENTS as i64 + 8) {
            put("a", 10 + n).await;
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while feed.published_revision() < store.current_revision().await.unwrap() {
            assert!(tokio::time::Instant::now() < deadline, "the feed stalled");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(matches!(
            only_a.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));

        // Channels nobody listens to are swept as new keys are watched.
        drop((only_a, also_a));
        let kept = feed.subscribe_key(&key("kept"));
        for i in 0..KEY_SWEEP_SLACK * 3 {
            drop(feed.subscribe_key(&key(&format!("k{i}"))));
        }
        // At most twice the watched keys (one here) plus the slack.
        assert!(
            feed.key_channels() <= 2 + KEY_SWEEP_SLACK,
            "{} channels",
            feed.key_channels()
        );
        put("kept", 1).await;
        assert_eq!(
            tokio::time::timeout(std::time::Duration::from_secs(10), {
                let mut kept = kept;
                async move { kept.recv().await.unwrap().key.clone() }
            })
            .await
            .unwrap(),
            key("kept"),
            "sweeps keep channels with receivers"
        );
    }
}
