//! The embedded backend: a journal for durability, SQLite for queries.
//!
//! Write path (`writer.rs`): one group-commit thread drains the request queue, decides every
//! write of the batch against the newest state, appends the batch's records to the journal
//! (`journal.rs`) with one fsync, and only then adds them to the in-memory tail (`tail.rs`),
//! publishes their events and acknowledges them.
//!
//! Apply path (`applier.rs`): a second thread moves durable writes from the tail into SQLite
//! (WAL, `synchronous=FULL`) in transactions of thousands, then drops them from the tail and
//! deletes journal segments SQLite holds. Batching there is what makes writes cheap: SQLite's
//! page writes are shared by thousands of writes instead of a few dozen.
//!
//! SQLite layout (`schema.rs`):
//! * `log`: one row per revision — key, value (NULL for a deletion), `create_rev`, `version`,
//!   `prev_rev` (the key's previous row). History, past-revision reads and watch replay read it.
//! * `live`: key → revision of its current row, for live keys; current reads join it with `log`.
//! * `meta`: the applied revision, the compacted revision and compaction progress.
//!
//! Reads (`reader.rs`) combine a copy of the relevant tail entries with one SQLite snapshot
//! (see `tail.rs` for why that is exact); they never wait for either thread. Watches
//! (`watch.rs`) replay history, then follow a bounded ring of published events.

mod applier;
mod journal;
mod reader;
mod schema;
mod tail;
mod watch;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::watch_positions::WatchPositions;
use crate::{
    Condition, Deleted, Event, GetManyResponse, GetResponse, KeyValue, RangeRequest, RangeResponse,
    Result, Revision, Store, StoreError, Version, WatchStream, check_changed_range, check_get_many,
    check_key, check_note, check_value, history_limit,
};

/// Requests waiting for the group-commit thread; senders wait when it is full.
pub const WRITE_QUEUE_CAPACITY: usize = 4096;
/// Most write requests committed in one transaction.
pub const MAX_WRITE_BATCH: usize = 1024;
pub use applier::MAX_APPLY_BATCH;
pub use journal::SEGMENT_BYTES;
pub use tail::MAX_TAIL_ENTRIES;

/// Committed events kept in memory for live watchers; one that falls further behind is cut off.
pub const WATCH_RING_CAPACITY: usize = 16_384;
/// Events read from disk per step when a watch replays history.
pub const WATCH_REPLAY_PAGE: usize = 1024;
/// Most bytes of values (each event's and its previous value's) one page of a watch's replay
/// reads, beyond the first event: 1,024 changes of 1.5 MiB values would be 3 GiB.
pub const WATCH_REPLAY_PAGE_BYTES: usize = 8 << 20;
/// Read connections open at most at once.
pub const MAX_READ_CONNECTIONS: usize = 8;
/// A range page stops growing once its values exceed this many bytes.
pub const MAX_RANGE_PAGE_BYTES: usize = 32 << 20;
/// Longest stretch of history (in revisions, which are dense here) one
/// [`Store::changed_keys`] call scans; beyond it the call answers `None` and the caller reads
/// the whole prefix instead. A scan reads one log row per revision (keys only), so this bounds
/// the call to well under the cost of reading a large prefix.
pub const MAX_CHANGED_KEYS_SCAN: i64 = 200_000;
/// Revisions whose superseded history one compaction step deletes; keeps each step short so
/// that applying writes never waits long behind compaction.
pub const COMPACTION_STEP_REVISIONS: i64 = 4096;

/// File names inside the data directory.
const DB_FILE: &str = "store.sqlite3";
const LOCK_FILE: &str = "store.lock";
const JOURNAL_DIR: &str = "journal";

/// State shared by the store handle, the group-commit thread, readers and watches.
struct Shared {
    db_path: PathBuf,
    readers: reader::ReaderPool,
    /// Durable writes not yet in SQLite, and requests for the applier.
    tail: Mutex<tail::Tail>,
    /// Wakes the applier: the tail has a batch worth applying, closed, or has a compaction
    /// request.
    work_for_applier: Condvar,
    /// Wakes the writer: the applier made room in the tail.
    tail_has_room: Condvar,
    /// Newest durable revision (advanced by the writer after each batch).
    revision: AtomicI64,
    /// Revision below which history is gone.
    compacted: AtomicI64,
    /// The writer's event ring, for new subscriptions; when the writer exits, the ring closes
    /// and every watch ends. Weak, and not a receiver: a receiver that is never read keeps
    /// its slots until the ring overwrites them. The ring itself carries weak references to
    /// the tail's events, so even a watcher that stops reading holds no values (with the
    /// events in it, 16,384 changes of 1 MiB objects were 32 GiB held for one idle watch).
    events: broadcast::WeakSender<Weak<Event>>,
    positions: WatchPositions,
}

impl Shared {
    fn lock_tail(&self) -> MutexGuard<'_, tail::Tail> {
        self.tail.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver of the events published from now on; closed at once when the writer has
    /// stopped.
    fn subscribe(&self) -> broadcast::Receiver<Weak<Event>> {
        match self.events.upgrade() {
            Some(events) => events.subscribe(),
            None => broadcast::channel(1).1,
        }
    }
}

/// The embedded store. Cheap to share behind an `Arc`; drop or [`close`](Self::close) it to stop
/// the group-commit thread.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    writes: mpsc::Sender<writer::WriteRequest>,
    writer_exited: Mutex<Option<oneshot::Receiver<()>>>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`. Only one process may have a directory
    /// open at a time.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Backend(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let lock = File::create(dir.join(LOCK_FILE)).map_err(|e| {
            StoreError::Backend(format!("cannot create lock file in {}: {e}", dir.display()))
        })?;
        lock.try_lock().map_err(|_| {
            StoreError::Backend(format!(
                "the data directory {} is in use by another fleetdb process",
                dir.display()
            ))
        })?;
        let db_path = dir.join(DB_FILE);
        let conn = schema::open_applier(&db_path)?;
        let state = schema::load_state(&conn)?;
        let journal_dir = dir.join(JOURNAL_DIR);
        let (journal, records) = journal::Journal::open(&journal_dir, state.applied)?;
        let recovered = recover_tail(&conn, state.applied, records)?;
        let revision = recovered.revision;

        let (events_tx, _) = broadcast::channel(WATCH_RING_CAPACITY);
        let shared = Arc::new(Shared {
            readers: reader::ReaderPool::new(),
            db_path: db_path.clone(),
            tail: Mutex::new(recovered),
            work_for_applier: Condvar::new(),
            tail_has_room: Condvar::new(),
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(state.compacted),
            events: events_tx.downgrade(),
            positions: WatchPositions::default(),
        });
        let lookups = schema::open_reader(&db_path)?;
        let applier = applier::Applier::new(conn, state, shared.clone(), journal_dir);
        let writer =
            writer::GroupCommitter::new(journal, lookups, revision, shared.clone(), events_tx);
        let (writes, requests) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        let (exited_tx, exited_rx) = oneshot::channel();
        let applier_thread = std::thread::Builder::new()
            .name("fleetdb-apply".into())
            .spawn(move || applier.run())
            .map_err(|e| StoreError::Backend(format!("cannot start the applier thread: {e}")))?;
        std::thread::Builder::new()
            .name("fleetdb-group-commit".into())
            .spawn(move || {
                writer.run(requests);
                let _ = applier_thread.join();
                drop(lock);
                drop(exited_tx);
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            shared,
            writes,
            writer_exited: Mutex::new(Some(exited_rx)),
        })
    }

    /// The SQLite database file (for diagnostics).
    pub fn db_path(&self) -> &Path {
        &self.shared.db_path
    }

    /// Stops accepting writes, lets the group-commit thread finish what it has, and waits
    /// until it has released the data directory.
    pub async fn close(self) {
        let exited = self
            .writer_exited
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(self);
        if let Some(exited) = exited {
            let _ = exited.await;
        }
    }

    async fn submit(&self, op: writer::WriteOp) -> Result<writer::WriteOutcome> {
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(writer::WriteRequest { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.revision.load(Ordering::Acquire))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<GetResponse> {
        check_key(key)?;
        reader::get(&self.shared, key.to_owned(), revision).await
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResponse> {
        reader::range(&self.shared, request).await
    }

    async fn get_many(
        &self,
        keys: &[String],
        revision: Option<Revision>,
    ) -> Result<GetManyResponse> {
        check_get_many(keys)?;
        reader::get_many(&self.shared, keys.to_vec(), revision).await
    }

    async fn changed_keys(
        &self,
        prefix: &str,
        after: Revision,
        until: Revision,
        _with_deleted: bool,
        limit: usize,
    ) -> Result<Option<Vec<String>>> {
        check_changed_range(after, until)?;
        if until - after > MAX_CHANGED_KEYS_SCAN {
            return Ok(None);
        }
        reader::changed_keys(&self.shared, prefix.to_owned(), after, until, limit).await
    }

    async fn put_noted(
        &self,
        key: &str,
        value: Bytes,
        condition: Condition,
        note: Bytes,
    ) -> Result<KeyValue> {
        check_key(key)?;
        check_value(key, &value)?;
        check_note(&note)?;
        match self
            .submit(writer::WriteOp::Put {
                key: key.to_owned(),
                value,
                condition,
                note,
            })
            .await?
        {
            writer::WriteOutcome::Put(kv) => Ok(kv),
            writer::WriteOutcome::Deleted(_) => Err(StoreError::Backend(
                "the writer answered a put with a deletion".into(),
            )),
        }
    }

    async fn delete_noted(&self, key: &str, condition: Condition, note: Bytes) -> Result<Deleted> {
        check_key(key)?;
        check_note(&note)?;
        if condition == Condition::Absent {
            return Err(StoreError::InvalidArgument(
                "a delete cannot require the key to be absent".into(),
            ));
        }
        match self
            .submit(writer::WriteOp::Delete {
                key: key.to_owned(),
                condition,
                note,
            })
            .await?
        {
            writer::WriteOutcome::Deleted(deleted) => Ok(deleted),
            writer::WriteOutcome::Put(_) => Err(StoreError::Backend(
                "the writer answered a delete with a put".into(),
            )),
        }
    }

    async fn history(
        &self,
        key: &str,
        before: Option<Revision>,
        limit: usize,
    ) -> Result<Vec<Version>> {
        check_key(key)?;
        reader::history_of(&self.shared, key.to_owned(), before, history_limit(limit)).await
    }

    async fn revision_at(&self, time_millis: i64) -> Result<Revision> {
        reader::revision_at(&self.shared, time_millis).await
    }

    async fn changes(&self, after: Revision, limit: usize) -> Result<Vec<crate::Change>> {
        reader::changes_after(&self.shared, after, history_limit(limit)).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        watch::start(self.shared.clone(), prefix.to_owned(), after)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let current = self.shared.revision.load(Ordering::Acquire);
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        if revision <= self.shared.compacted.load(Ordering::Acquire) {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        {
            let mut tail = self.shared.lock_tail();
            if tail.closed {
                return Err(StoreError::Closed);
            }
            tail.compactions.push(tail::CompactionRequest {
                target: revision,
                reply,
            });
        }
        self.shared.work_for_applier.notify_all();
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn compact_prefix(&self, prefix: &str, revision: Revision) -> Result<bool> {
        if !prefix.starts_with('/') {
            return Err(StoreError::InvalidArgument(format!(
                "prefix {prefix:?} must start with /"
            )));
        }
        let current = self.shared.revision.load(Ordering::Acquire);
        let (reply, answer) = oneshot::channel();
        {
            let mut tail = self.shared.lock_tail();
            if tail.closed {
                return Err(StoreError::Closed);
            }
            tail.prefix_compactions.push(tail::PrefixCompactionRequest {
                prefix: prefix.to_owned(),
                target: revision.min(current),
                reply,
            });
        }
        self.shared.work_for_applier.notify_all();
        answer.await.map_err(|_| StoreError::Closed)??;
        Ok(true)
    }

    fn oldest_watch_position(&self) -> Option<Revision> {
        self.shared.positions.oldest()
    }
}

/// Converts a SQLite failure into the contract's error.
fn backend_error(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {e}"))
}

/// Rebuilds the tail from the journal records SQLite does not hold yet.
fn recover_tail(
    conn: &rusqlite::Connection,
    applied: Revision,
    records: Vec<journal::Record>,
) -> Result<tail::Tail> {
    let mut recovered = tail::Tail::new(applied);
    for record in records {
        // The previous state of the key: an earlier recovered entry, or a row SQLite holds.
        let prev = if record.prev_revision > applied {
            recovered
                .newest_of(&record.key)
                .and_then(|entry| entry.state().cloned())
        } else if record.prev_revision > 0 {
            reader::row_at(conn, record.prev_revision).map_err(backend_error)?
        } else {
            None
        };
        let kv = KeyValue {
            key: record.key,
            value: record.value,
            create_revision: record.create_revision,
            mod_revision: record.revision,
            version: record.version,
        };
        recovered.push(tail::TailEntry {
            event: Arc::new(Event {
                kind: record.kind,
                kv,
                prev,
            }),
            prev_revision: record.prev_revision,
            time_millis: record.time_millis,
            note: record.note,
        });
    }
    if !recovered.is_empty() {
        tracing::info!(
            from = applied + 1,
            to = recovered.revision,
            "recovered writes from the journal"
        );
    }
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    /// Events nobody watches are not kept: the ring holds an event only until every watch
    /// open when it was published has read it.
    #[tokio::test]
    async fn the_ring_keeps_only_what_watchers_have_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let ring = || store.shared.events.upgrade().expect("the writer runs");
        for n in 0..10 {
            let value = Bytes::from(format!("{{\"n\":{n}}}"));
            store
                .put(&format!("/k/{n}"), value, Condition::Always)
                .await
                .unwrap();
        }
        assert_eq!(ring().len(), 0, "events were kept with no watcher open");

        let revision = store.current_revision().await.unwrap();
        let mut watch = store.watch("/k/", revision).await.unwrap();
        store
            .put("/k/x", Bytes::from_static(b"{}"), Condition::Always)
            .await
            .unwrap();
        assert_eq!(ring().len(), 1, "the watcher's event is waiting for it");
        let event = watch.next().await.unwrap().unwrap();
        assert_eq!(event.kv.key, "/k/x");
        assert_eq!(
            ring().len(),
            0,
            "read by its only watcher, the event is dropped"
        );
    }

    /// A live watch (done replaying, following the ring) that is not read holds none of the
    /// values written meanwhile (the ring has only weak references to the tail's events);
    /// read later, it finds them gone from the ring and replays them from SQLite, in order,
    /// once each, with their previous values.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_watch_holds_no_values_and_replays_them_later() {
        struct Owner(Vec<u8>, Arc<std::sync::atomic::AtomicBool>);
        impl AsRef<[u8]> for Owner {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }
        impl Drop for Owner {
            fn drop(&mut self) {
                self.1.store(true, Ordering::Release);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let start = store.current_revision().await.unwrap();
        let mut idle = store.watch("/k/", start).await.unwrap();
        // One event read: the watch has caught up and follows the ring.
        store
            .put("/k/w", Bytes::from_static(b"{}"), Condition::Always)
            .await
            .unwrap();
        assert_eq!(idle.next().await.unwrap().unwrap().kv.key, "/k/w");
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let first = Bytes::from_owner(Owner(b"{\"n\":1}".to_vec(), dropped.clone()));
        store.put("/k/a", first, Condition::Always).await.unwrap();
        for n in 2..=4 {
            let value = Bytes::from(format!("{{\"n\":{n}}}"));
            store.put("/k/a", value, Condition::Always).await.unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !dropped.load(Ordering::Acquire) {
            assert!(
                std::time::Instant::now() < deadline,
                "the first value is still held (tail empty: {})",
                store.shared.lock_tail().is_empty()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        for n in 1..=4 {
            let event = idle.next().await.unwrap().unwrap();
            assert_eq!(event.kv.value, format!("{{\"n\":{n}}}"));
            assert_eq!(
                event.prev.map(|kv| kv.value),
                (n > 1).then(|| Bytes::from(format!("{{\"n\":{}}}", n - 1)))
            );
        }
        // Nothing twice: the next event is the next write.
        store
            .put("/k/z", Bytes::from_static(b"{}"), Condition::Always)
            .await
            .unwrap();
        assert_eq!(idle.next().await.unwrap().unwrap().kv.key, "/k/z");
    }

    /// A watch replaying large values reads them a few megabytes at a time, from the tail and
    /// from SQLite alike, and still delivers every change once, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replay_pages_are_bounded_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        const CHANGES: usize = 24;
        const VALUE: usize = 1 << 20;
        let mut revisions = Vec::new();
        for n in 0..CHANGES {
            let value = Bytes::from(vec![b'a' + (n % 26) as u8; VALUE]);
            let key = format!("/big/{}", n % 3);
            let kv = store.put(&key, value, Condition::Always).await.unwrap();
            revisions.push(kv.mod_revision);
        }
        // First as written (from the tail, unless the applier was quicker), then from SQLite.
        for read_from in ["just written", "applied"] {
            let (page, scanned, _) =
                reader::history(&store.shared, "/big/".into(), 0, WATCH_REPLAY_PAGE)
                    .await
                    .unwrap();
            let bytes: usize = page.iter().map(Event::value_bytes).sum();
            assert!(
                page.len() < CHANGES && bytes <= WATCH_REPLAY_PAGE_BYTES + 2 * VALUE,
                "{read_from}: a page of {} events, {bytes} bytes",
                page.len()
            );
            assert_eq!(scanned, page.last().unwrap().revision(), "{read_from}");
            let mut watch = store.watch("/big/", 0).await.unwrap();
            for (n, revision) in revisions.iter().enumerate() {
                let event = watch.next().await.unwrap().unwrap();
                assert_eq!(event.revision(), *revision, "{read_from}");
                assert_eq!(event.kv.value[0], b'a' + (n % 26) as u8, "{read_from}");
                assert_eq!(event.prev.is_some(), n >= 3, "{read_from}");
            }
            // Then from SQLite: wait for the applier to empty the tail.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !store.shared.lock_tail().is_empty() {
                assert!(std::time::Instant::now() < deadline, "the applier stalled");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}
