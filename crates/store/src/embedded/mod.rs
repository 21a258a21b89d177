//! The embedded backend: SQLite (WAL, `synchronous=FULL`) on local disk.
//!
//! Layout on disk (`schema.rs`):
//! * `log`: one row per revision — the key, its value (NULL for a deletion), its
//!   `create_rev`, `version`, and `prev_rev` (the key's previous row). History, past-revision
//!   reads and watch replay all read this table.
//! * `live`: key → revision of its current row, for live keys only. Current reads join it with
//!   `log`, so values are stored once.
//! * `meta`: the current revision, the compacted revision and compaction progress.
//!
//! Writes go through one group-commit thread (`writer.rs`): it drains the request queue, applies
//! every request in one transaction, commits with one fsync, and only then acknowledges the
//! requests and publishes their events. Reads use a small pool of separate connections
//! (`reader.rs`); under WAL they read a consistent snapshot and never wait for the writer.
//! Watches (`watch.rs`) replay history from `log` and then follow a bounded in-memory ring of
//! committed events; a watcher that falls behind the ring is cut off.

mod reader;
mod schema;
mod watch;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::watch_positions::WatchPositions;
use crate::{
    Condition, Deleted, Event, GetResponse, KeyValue, RangeRequest, RangeResponse, Result,
    Revision, Store, StoreError, WatchStream, check_key, check_value,
};

/// Requests waiting for the group-commit thread; senders wait when it is full.
pub const WRITE_QUEUE_CAPACITY: usize = 4096;
/// Most write requests committed in one transaction.
pub const MAX_WRITE_BATCH: usize = 1024;
/// Committed events kept in memory for live watchers; one that falls further behind is cut off.
pub const WATCH_RING_CAPACITY: usize = 16_384;
/// Events read from disk per step when a watch replays history.
pub const WATCH_REPLAY_PAGE: usize = 1024;
/// Read connections open at most at once.
pub const MAX_READ_CONNECTIONS: usize = 8;
/// A range page stops growing once its values exceed this many bytes.
pub const MAX_RANGE_PAGE_BYTES: usize = 32 << 20;
/// Revisions whose superseded history one compaction step deletes; keeps each step short so
/// compaction never holds up writers for long.
pub const COMPACTION_STEP_REVISIONS: i64 = 4096;

/// File names inside the data directory.
const DB_FILE: &str = "store.sqlite3";
const LOCK_FILE: &str = "store.lock";

/// State shared by the store handle, the group-commit thread, readers and watches.
struct Shared {
    db_path: PathBuf,
    readers: reader::ReaderPool,
    /// Newest committed revision (advanced by the writer after each commit).
    revision: AtomicI64,
    /// Revision below which history is gone.
    compacted: AtomicI64,
    /// A receiver kept only to create new subscriptions to the writer's event ring; when the
    /// writer exits, the ring closes and every watch ends.
    events: Mutex<broadcast::Receiver<Arc<Event>>>,
    positions: WatchPositions,
}

impl Shared {
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .resubscribe()
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
        let conn = schema::open_writer(&db_path)?;
        let state = schema::load_state(&conn)?;

        let (events_tx, events_rx) = broadcast::channel(WATCH_RING_CAPACITY);
        let shared = Arc::new(Shared {
            readers: reader::ReaderPool::new(),
            db_path,
            revision: AtomicI64::new(state.revision),
            compacted: AtomicI64::new(state.compacted),
            events: Mutex::new(events_rx),
            positions: WatchPositions::default(),
        });
        let (writes, requests) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        let (exited_tx, exited_rx) = oneshot::channel();
        let writer = writer::GroupCommitter::new(conn, state, shared.clone(), events_tx);
        std::thread::Builder::new()
            .name("fleetdb-group-commit".into())
            .spawn(move || {
                writer.run(requests);
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

    async fn put(&self, key: &str, value: Bytes, condition: Condition) -> Result<KeyValue> {
        check_key(key)?;
        check_value(key, &value)?;
        match self
            .submit(writer::WriteOp::Put {
                key: key.to_owned(),
                value,
                condition,
            })
            .await?
        {
            writer::WriteOutcome::Put(kv) => Ok(kv),
            other => Err(StoreError::Backend(format!(
                "the writer answered a put with {other:?}"
            ))),
        }
    }

    async fn delete(&self, key: &str, condition: Condition) -> Result<Deleted> {
        check_key(key)?;
        if condition == Condition::Absent {
            return Err(StoreError::InvalidArgument(
                "a delete cannot require the key to be absent".into(),
            ));
        }
        match self
            .submit(writer::WriteOp::Delete {
                key: key.to_owned(),
                condition,
            })
            .await?
        {
            writer::WriteOutcome::Deleted(deleted) => Ok(deleted),
            other => Err(StoreError::Backend(format!(
                "the writer answered a delete with {other:?}"
            ))),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        watch::start(self.shared.clone(), prefix.to_owned(), after)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.submit(writer::WriteOp::Compact { revision })
            .await
            .map(|_| ())
    }

    fn oldest_watch_position(&self) -> Option<Revision> {
        self.shared.positions.oldest()
    }
}

/// Converts a SQLite failure into the contract's error.
fn backend_error(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {e}"))
}
