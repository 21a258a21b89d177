//! The revisioned key-value store behind fleetdb.
//!
//! One contract ([`Store`]), modelled on the subset of etcd v3 that a Kubernetes API server
//! needs, and two backends:
//!
//! * [`embedded::EmbeddedStore`]: SQLite on local disk with group commit (the default);
//! * [`etcd::EtcdStore`]: an etcd v3 cluster, so several fleetdb processes can share state.
//!
//! Architecture invariant: this crate knows nothing of HTTP, TLS or Kubernetes objects. Keys
//! are opaque UTF-8 paths and values are opaque bytes.
//!
//! The contract in one paragraph: the store owns one global revision counter that every
//! successful write advances by exactly one. Each key carries its value, the revision that
//! created it and the revision that last modified it. Reads can be served at any past revision
//! that has not been compacted. Writes are compare-and-swap on the key's existence or its
//! `mod_revision`; a failed compare hands back the current value. Watches deliver every change
//! after a revision, in revision order, with the previous value. For indexes kept above the
//! store, [`Store::get_many`] reads many keys at one revision and [`Store::changed_keys`]
//! names the keys changed between two revisions.

pub mod embedded;
pub mod etcd;
mod keys;
pub mod retention;
mod scan;
mod watch_positions;

use std::fmt;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub use keys::prefix_end;
pub use scan::{Scan, after};

/// A store revision. Revisions start at 1; 0 means "before anything was written".
pub type Revision = i64;

/// Largest value a write may carry (1.5 MiB, etcd's default request limit).
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// Largest key, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;

/// Most keys one [`Store::range`] call returns; callers page with `from_key`.
pub const MAX_RANGE_LIMIT: usize = 10_000;

/// Most keys one [`Store::get_many`] call reads; callers split longer lists.
pub const MAX_GET_MANY_KEYS: usize = 1000;

/// Most bytes of a change's note (who made it and how; see [`Store::put_noted`]).
pub const MAX_NOTE_BYTES: usize = 1024;

/// Most versions one [`Store::history`] call returns.
pub const MAX_HISTORY_VERSIONS: usize = 10_000;

/// A [`Store::history`] call stops after the version that brings the bytes of the states it
/// returns to this many (so that a key rewritten many times with large values cannot make
/// one answer huge; callers page on with `before`).
pub const MAX_HISTORY_BYTES: usize = 32 << 20;

/// Single-key reads the default [`Store::get_many`] keeps in flight at once.
const GET_MANY_CONCURRENCY: usize = 16;

/// One key's state at some revision.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created this incarnation of the key.
    pub create_revision: Revision,
    /// Revision of the last write to the key (for a deletion event: the deletion's revision).
    pub mod_revision: Revision,
    /// Number of writes since the key was created (1 after creation).
    pub version: i64,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .field("version", &self.version)
            .finish()
    }
}

/// What a compare-and-swap write requires of the key's current state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// No condition (a plain put, or a delete of whatever is there).
    Always,
    /// The key must not exist (create).
    Absent,
    /// The key must exist with exactly this `mod_revision` (optimistic update or delete).
    ModRevision(Revision),
}

/// The result of a successful delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// Revision of the deletion.
    pub revision: Revision,
    /// The key's state just before it was deleted.
    pub prev: KeyValue,
}

/// The result of a [`Store::get`].
#[derive(Clone, Debug)]
pub struct GetResponse {
    pub kv: Option<KeyValue>,
    /// The revision the read was served at.
    pub revision: Revision,
}

/// The result of a [`Store::get_many`].
#[derive(Clone, Debug)]
pub struct GetManyResponse {
    /// One entry per requested key, in the order asked; `None` where the key did not exist.
    pub kvs: Vec<Option<KeyValue>>,
    /// The revision every key was read at.
    pub revision: Revision,
}

/// A prefix range read.
#[derive(Clone, Debug, Default)]
pub struct RangeRequest {
    /// Every key starting with this prefix is in the range.
    pub prefix: String,
    /// Start at this key (inclusive) instead of at the prefix; used to continue a paged read.
    pub from_key: Option<String>,
    /// Most keys to return; 0 or anything above [`MAX_RANGE_LIMIT`] means [`MAX_RANGE_LIMIT`].
    /// The store may return fewer (it also bounds the bytes of one page) and then sets `more`.
    pub limit: usize,
    /// Read at this past revision instead of the current one.
    pub revision: Option<Revision>,
    /// Also count the keys between the start key and the end of the prefix.
    pub count: bool,
}

/// The result of a [`Store::range`].
#[derive(Clone, Debug)]
pub struct RangeResponse {
    /// Keys in ascending byte order.
    pub kvs: Vec<KeyValue>,
    /// True when keys after the last one returned remain in the range.
    pub more: bool,
    /// Number of keys from the start key to the end of the prefix, when asked for.
    pub count: Option<u64>,
    /// The revision the read was served at; pass it back to read the next page consistently.
    pub revision: Revision,
}

/// Whether an event created/updated or deleted its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, as delivered by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The key's new state. For a deletion: the key, an empty value, `mod_revision` = the
    /// deletion's revision and `create_revision` = `version` = 0.
    pub kv: KeyValue,
    /// The key's state before this change (`None` when the change created the key).
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision of this change.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }

    /// Bytes of its values (the new one and the previous one), as replay pages count them.
    pub(crate) fn value_bytes(&self) -> usize {
        self.kv.value.len() + self.prev.as_ref().map_or(0, |kv| kv.value.len())
    }
}

/// One change of one key as history keeps it (see [`Store::history`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// The change's revision.
    pub revision: Revision,
    /// When the store committed it, in milliseconds since the Unix epoch; 0 when unknown
    /// (changes written before the store recorded times).
    pub time_millis: i64,
    /// The key's state after the change; `None` for a deletion.
    pub kv: Option<KeyValue>,
    /// The note the writer gave the change (empty when none).
    pub note: Bytes,
}

/// One change of any key, in the order the store made them (see [`Store::changes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    pub version: Version,
}

/// A stream of changes in revision order. It ends with an error item when the watch is cut off.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event, StoreError>> + Send>>;

/// Everything that can go wrong in a store call.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-swap condition did not hold; `current` is the key's state now.
    #[error("the condition on key {key} did not hold")]
    PreconditionFailed {
        key: String,
        current: Option<Box<KeyValue>>,
    },
    /// The requested revision is older than the oldest one kept.
    #[error(
        "revision {requested} has been compacted; the oldest revision still readable is {compacted}"
    )]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision has not been written yet.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("the value for key {key} is {size} bytes; the limit is {limit} bytes")]
    ValueTooLarge {
        key: String,
        size: usize,
        limit: usize,
    },
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The watcher did not keep up with the write rate and was cut off; re-watch from the
    /// last revision it saw.
    #[error(
        "the watcher fell too far behind the writers and was cut off; watch again from revision {last_revision}"
    )]
    WatcherTooSlow { last_revision: Revision },
    /// The backend cannot be reached right now (etcd down, network error); retrying may help.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// An unexpected failure inside the backend (disk error, corruption).
    #[error("storage failure: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The revisioned key-value contract that both backends implement.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The newest revision; every write acknowledged so far is visible at it.
    async fn current_revision(&self) -> Result<Revision>;

    /// The revision history has been compacted up to: reads at revisions below it fail with
    /// [`StoreError::Compacted`]. 0 when nothing was ever compacted.
    async fn compacted_revision(&self) -> Result<Revision>;

    /// Reads one key, now or at a past revision.
    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<GetResponse>;

    /// Reads the keys under a prefix, now or at a past revision, one page at a time.
    async fn range(&self, request: RangeRequest) -> Result<RangeResponse>;

    /// Reads up to [`MAX_GET_MANY_KEYS`] keys, all at one revision (now when `revision` is
    /// `None`): one entry per key in the order given, and the revision they were read at. Fails
    /// like [`Store::get`] for an unreadable revision or an invalid key, and with
    /// `InvalidArgument` for too many keys. The default reads them one by one at the revision
    /// (a few at a time); backends override it with one snapshot read.
    async fn get_many(
        &self,
        keys: &[String],
        revision: Option<Revision>,
    ) -> Result<GetManyResponse> {
        use futures::{StreamExt, TryStreamExt};
        check_get_many(keys)?;
        let revision = match revision {
            Some(revision) => revision,
            None => self.current_revision().await?,
        };
        // Indexes rather than `&String`s keep the closure free of higher-ranked lifetimes,
        // which a `Send` future cannot prove.
        let kvs = futures::stream::iter(0..keys.len())
            .map(|i| self.get(&keys[i], Some(revision)))
            .buffered(GET_MANY_CONCURRENCY)
            .map_ok(|found| found.kv)
            .try_collect()
            .await?;
        Ok(GetManyResponse { kvs, revision })
    }

    /// The keys under `prefix` whose state at `until` may differ from their state at `after`
    /// (`after <= until`), so that a caller holding the state at one of the two revisions
    /// knows what to re-read at the other. In key order, each once. The answer `S` satisfies
    ///
    /// * `S` ⊆ every key written or deleted in the revisions `(after, until]`;
    /// * `S` ⊇ every key written in `(after, until]` that exists at `until`, and when
    ///   `with_deleted`, also every key deleted in `(after, until]`.
    ///
    /// (Without `with_deleted` a backend may still include deleted keys.) `Ok(None)` when the
    /// backend cannot answer cheaply: more than `limit` keys, history after `after` compacted,
    /// too long a stretch of history to scan, or not supported. Callers then read the whole
    /// prefix instead. The default is `Ok(None)`.
    async fn changed_keys(
        &self,
        prefix: &str,
        after: Revision,
        until: Revision,
        with_deleted: bool,
        limit: usize,
    ) -> Result<Option<Vec<String>>> {
        let _ = (prefix, after, until, with_deleted, limit);
        Ok(None)
    }

    /// Writes a value if `condition` holds; returns the key's new state. The write is durable
    /// when this returns.
    async fn put(&self, key: &str, value: Bytes, condition: Condition) -> Result<KeyValue> {
        self.put_noted(key, value, condition, Bytes::new()).await
    }

    /// [`Store::put`] with a note kept beside the change for as long as history is (who made
    /// it and how; opaque to the store, at most [`MAX_NOTE_BYTES`]), and the time the store
    /// committed it. [`Store::history`] hands both back.
    async fn put_noted(
        &self,
        key: &str,
        value: Bytes,
        condition: Condition,
        note: Bytes,
    ) -> Result<KeyValue>;

    /// Deletes a key if it exists and `condition` holds (`Absent` is not a valid condition).
    async fn delete(&self, key: &str, condition: Condition) -> Result<Deleted> {
        self.delete_noted(key, condition, Bytes::new()).await
    }

    /// [`Store::delete`] with a note, as [`Store::put_noted`].
    async fn delete_noted(&self, key: &str, condition: Condition, note: Bytes) -> Result<Deleted>;

    /// The changes of one key still in history, newest first — those before revision
    /// `before` when given, for paging back — at most `limit` (0 or above
    /// [`MAX_HISTORY_VERSIONS`] means that bound), and no more once their states add up to
    /// [`MAX_HISTORY_BYTES`]: each with its revision, time, the key's state after it and its
    /// note. A deletion is a version without a state. The oldest version returned may be
    /// older than the compacted revision (the state history starts from). Empty for a key
    /// never written, or whose history is gone.
    async fn history(
        &self,
        key: &str,
        before: Option<Revision>,
        limit: usize,
    ) -> Result<Vec<Version>>;

    /// The newest revision committed at or before `time_millis` (milliseconds since the Unix
    /// epoch): reads at it show the state at that instant. Fails with `Compacted` for an
    /// instant older than the history kept, and answers 0 for one before the first write.
    async fn revision_at(&self, time_millis: i64) -> Result<Revision>;

    /// Every change under `prefix` with a revision greater than `after`, in revision order,
    /// pushed as it is committed. Fails with [`StoreError::Compacted`] when `after` is older
    /// than the compacted revision.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// Discards history below `revision`: afterwards only the state at `revision` and later
    /// remains readable. Compacting at or below the current compacted revision does nothing.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Every change after `after` still in history, in revision order, at most `limit` (0 or
    /// above [`MAX_HISTORY_VERSIONS`] means that bound), each with its time and note: what a
    /// migration copies. Below the compacted revision only each key's state at it remains,
    /// so reading from 0 gives that state, then every change since. Backends that cannot list their changes in order answer
    /// `InvalidArgument` (the default).
    async fn changes(&self, after: Revision, limit: usize) -> Result<Vec<Change>> {
        let _ = (after, limit);
        Err(StoreError::InvalidArgument(
            "this store cannot list its changes in order".into(),
        ))
    }

    /// Writes a change copied from another store, unconditionally: the key's state after it
    /// (or its deletion, which is no error when the key is already gone) with the change's
    /// note — and its time, where the backend keeps times with notes (the default keeps the
    /// time of the copy).
    async fn import(&self, change: &Change) -> Result<()> {
        let note = change.version.note.clone();
        match &change.version.kv {
            Some(kv) => self
                .put_noted(&change.key, kv.value.clone(), Condition::Always, note)
                .await
                .map(drop),
            None => match self
                .delete_noted(&change.key, Condition::Always, note)
                .await
            {
                Ok(_) | Err(StoreError::PreconditionFailed { .. }) => Ok(()),
                Err(e) => Err(e),
            },
        }
    }

    /// Forgets the superseded history of the keys under `prefix` up to `revision`, for keys
    /// whose changes are not worth keeping (heartbeats): afterwards each such key keeps only
    /// its newest version at or below `revision` (none when that is a deletion), so reads of
    /// them at older revisions no longer see the state then, and watches replaying from
    /// before skip the forgotten changes. Other keys are untouched. `Ok(false)` when the
    /// backend cannot (etcd compacts its whole history at once).
    async fn compact_prefix(&self, prefix: &str, revision: Revision) -> Result<bool> {
        let _ = (prefix, revision);
        Ok(false)
    }

    /// The oldest revision that an open watch of this process has yet to move past; retention
    /// never compacts beyond it.
    fn oldest_watch_position(&self) -> Option<Revision>;
}

/// Checks a key against the contract's rules.
pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::InvalidKey {
            key: key.to_owned(),
            reason: "a key must not be empty",
        });
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(StoreError::InvalidKey {
            key: key.chars().take(64).collect(),
            reason: "a key must be at most 4096 bytes",
        });
    }
    if key.as_bytes().contains(&0) {
        return Err(StoreError::InvalidKey {
            key: key.to_owned(),
            reason: "a key must not contain NUL bytes",
        });
    }
    Ok(())
}

/// Checks the keys of a [`Store::get_many`]: at most [`MAX_GET_MANY_KEYS`], each valid.
pub(crate) fn check_get_many(keys: &[String]) -> Result<()> {
    if keys.len() > MAX_GET_MANY_KEYS {
        return Err(StoreError::InvalidArgument(format!(
            "get_many reads at most {MAX_GET_MANY_KEYS} keys per call, not {}",
            keys.len()
        )));
    }
    keys.iter().try_for_each(|key| check_key(key))
}

/// Checks the revisions of a [`Store::changed_keys`].
pub(crate) fn check_changed_range(after: Revision, until: Revision) -> Result<()> {
    if after < 0 || until < after {
        return Err(StoreError::InvalidArgument(format!(
            "changed_keys needs 0 <= after <= until, not after {after}, until {until}"
        )));
    }
    Ok(())
}

/// Checks a value against [`MAX_VALUE_BYTES`].
pub(crate) fn check_value(key: &str, value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::ValueTooLarge {
            key: key.to_owned(),
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// The effective page size for a requested limit.
pub(crate) fn check_note(note: &[u8]) -> Result<()> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(StoreError::InvalidArgument(format!(
            "a change's note is {} bytes; the limit is {MAX_NOTE_BYTES}",
            note.len()
        )));
    }
    Ok(())
}

/// The bound of a [`Store::history`] call.
pub(crate) fn history_limit(limit: usize) -> usize {
    if limit == 0 || limit > MAX_HISTORY_VERSIONS {
        MAX_HISTORY_VERSIONS
    } else {
        limit
    }
}

/// Milliseconds since the Unix epoch, now (0 if the clock reads before 1970).
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn effective_limit(limit: usize) -> usize {
    if limit == 0 || limit > MAX_RANGE_LIMIT {
        MAX_RANGE_LIMIT
    } else {
        limit
    }
}
