//! The group-commit thread: the only code that writes to the database.
//!
//! Invariants:
//! * revisions are assigned here, in memory, one per successful write, and persisted in `meta`
//!   in the same transaction as the rows that use them: after a crash the counter resumes
//!   exactly after the last committed write, with no gap and no repeat;
//! * no request is acknowledged, and no event published, before the transaction holding it
//!   has committed (fsynced);
//! * a failed commit rolls the counter back and fails every request of the batch.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::{broadcast, mpsc, oneshot};

use std::time::Duration;

use super::schema::StoredState;
use super::{COMPACTION_STEP_REVISIONS, MAX_WRITE_BATCH, Shared, backend_error};
use crate::{Condition, Deleted, Event, EventKind, KeyValue, Result, Revision, StoreError};

/// Pause after a failed compaction step before the next try.
const COMPACTION_RETRY_DELAY: Duration = Duration::from_millis(200);

/// One operation for the writer.
#[derive(Debug)]
pub(super) enum WriteOp {
    Put {
        key: String,
        value: Bytes,
        condition: Condition,
    },
    Delete {
        key: String,
        condition: Condition,
    },
    Compact {
        revision: Revision,
    },
}

/// What a successful operation produced.
#[derive(Debug)]
pub(super) enum WriteOutcome {
    Put(KeyValue),
    Deleted(Deleted),
    Compacted,
}

pub(super) struct WriteRequest {
    pub op: WriteOp,
    pub reply: oneshot::Sender<Result<WriteOutcome>>,
}

/// The writer's state; runs on its own OS thread.
pub(super) struct GroupCommitter {
    conn: Connection,
    /// Last revision assigned (and committed, between batches).
    revision: Revision,
    compaction: CompactionState,
    shared: Arc<Shared>,
    events: broadcast::Sender<Arc<Event>>,
}

/// Compaction proceeds in short steps between write batches.
struct CompactionState {
    /// Target: history below it may be discarded.
    target: Revision,
    /// History up to here has been discarded.
    done: Revision,
    /// Callers waiting for the compaction to finish.
    waiting: Vec<oneshot::Sender<Result<WriteOutcome>>>,
}

impl CompactionState {
    fn pending(&self) -> bool {
        self.done < self.target
    }
}

impl GroupCommitter {
    pub(super) fn new(
        conn: Connection,
        state: StoredState,
        shared: Arc<Shared>,
        events: broadcast::Sender<Arc<Event>>,
    ) -> Self {
        Self {
            conn,
            revision: state.revision,
            compaction: CompactionState {
                target: state.compacted,
                done: state.compaction_done,
                waiting: Vec::new(),
            },
            shared,
            events,
        }
    }

    /// Serves requests until every sender is gone.
    pub(super) fn run(mut self, mut requests: mpsc::Receiver<WriteRequest>) {
        let mut batch = Vec::with_capacity(MAX_WRITE_BATCH);
        loop {
            // With compaction pending, do not block: interleave its steps with write batches.
            let first = if self.compaction.pending() {
                match requests.try_recv() {
                    Ok(request) => Some(request),
                    Err(mpsc::error::TryRecvError::Empty) => None,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            } else {
                match requests.blocking_recv() {
                    Some(request) => Some(request),
                    None => break,
                }
            };
            if let Some(first) = first {
                batch.push(first);
                while batch.len() < MAX_WRITE_BATCH {
                    match requests.try_recv() {
                        Ok(request) => batch.push(request),
                        Err(_) => break,
                    }
                }
                self.commit_batch(&mut batch);
            }
            if self.compaction.pending() && !self.compaction_step() {
                // A failing disk: do not spin; the next step retries.
                std::thread::sleep(COMPACTION_RETRY_DELAY);
            }
        }
        // Finish any compaction so that its callers get an answer.
        while self.compaction.pending() {
            if !self.compaction_step() {
                break;
            }
        }
    }

    /// Applies a batch in one transaction, commits it, then answers and publishes.
    fn commit_batch(&mut self, batch: &mut Vec<WriteRequest>) {
        let start_revision = self.revision;
        let mut results: Vec<Result<WriteOutcome>> = Vec::with_capacity(batch.len());
        let mut events: Vec<Event> = Vec::new();
        let mut compactions: Vec<(Revision, usize)> = Vec::new();

        let committed: rusqlite::Result<()> = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for (index, request) in batch.iter().enumerate() {
                let result = match &request.op {
                    WriteOp::Put {
                        key,
                        value,
                        condition,
                    } => apply_put(&tx, &mut self.revision, key, value, *condition)?.map(
                        |(kv, prev)| {
                            events.push(Event {
                                kind: EventKind::Put,
                                kv: kv.clone(),
                                prev,
                            });
                            WriteOutcome::Put(kv)
                        },
                    ),
                    WriteOp::Delete { key, condition } => {
                        apply_delete(&tx, &mut self.revision, key, *condition)?.map(|deleted| {
                            events.push(Event {
                                kind: EventKind::Delete,
                                kv: KeyValue {
                                    key: key.clone(),
                                    value: Bytes::new(),
                                    create_revision: 0,
                                    mod_revision: deleted.revision,
                                    version: 0,
                                },
                                prev: Some(deleted.prev.clone()),
                            });
                            WriteOutcome::Deleted(deleted)
                        })
                    }
                    WriteOp::Compact { revision } => {
                        compactions.push((*revision, index));
                        // Answered after the batch; placeholder keeps indexes aligned.
                        Ok(WriteOutcome::Compacted)
                    }
                };
                results.push(result);
            }
            if self.revision != start_revision {
                tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'revision'")?
                    .execute([self.revision])?;
            }
            tx.commit()
        })();

        if let Err(e) = committed {
            self.revision = start_revision;
            let error = backend_error(e);
            tracing::error!(%error, "write batch failed; no write of it was applied");
            for request in batch.drain(..) {
                let _ = request.reply.send(Err(error.clone()));
            }
            return;
        }

        // Durable now: publish the revision, then the events, then the answers.
        self.shared.revision.store(self.revision, Ordering::Release);
        for event in events {
            let _ = self.events.send(Arc::new(event));
        }
        let mut compaction_replies = Vec::new();
        for ((request, result), index) in batch.drain(..).zip(results).zip(0..) {
            if let Some(&(revision, _)) = compactions.iter().find(|(_, i)| *i == index) {
                compaction_replies.push((revision, request.reply));
            } else {
                let _ = request.reply.send(result);
            }
        }
        for (revision, reply) in compaction_replies {
            self.start_compaction(revision, reply);
        }
    }

    /// Records a new compaction target; answers at once when there is nothing to do.
    fn start_compaction(&mut self, target: Revision, reply: oneshot::Sender<Result<WriteOutcome>>) {
        if target > self.revision {
            let _ = reply.send(Err(StoreError::FutureRevision {
                requested: target,
                current: self.revision,
            }));
            return;
        }
        if target <= self.compaction.target {
            if self.compaction.pending() {
                self.compaction.waiting.push(reply);
            } else {
                let _ = reply.send(Ok(WriteOutcome::Compacted));
            }
            return;
        }
        // Make the new bound visible to readers first; deleting rows comes in steps.
        let updated = self
            .conn
            .prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'compacted'")
            .and_then(|mut s| s.execute([target]));
        if let Err(e) = updated {
            let _ = reply.send(Err(backend_error(e)));
            return;
        }
        self.compaction.target = target;
        self.shared.compacted.store(target, Ordering::Release);
        self.compaction.waiting.push(reply);
    }

    /// Deletes the history superseded within the next few revisions. Returns false on error.
    fn compaction_step(&mut self) -> bool {
        let low = self.compaction.done;
        let high = (low + COMPACTION_STEP_REVISIONS).min(self.compaction.target);
        let target = self.compaction.target;
        let step: rusqlite::Result<()> = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Every row written in (low, high] supersedes its key's previous row, which is
            // therefore no longer the newest at `target`.
            tx.prepare_cached(
                "DELETE FROM log WHERE rev IN
                    (SELECT prev_rev FROM log WHERE rev > ?1 AND rev <= ?2 AND prev_rev > 0)",
            )?
            .execute([low, high])?;
            // Deletion markers at or below the target are not needed to read at the target.
            tx.prepare_cached("DELETE FROM log WHERE rev > ?1 AND rev <= ?2 AND value IS NULL")?
                .execute([low, high])?;
            tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'compaction_done'")?
                .execute([high])?;
            tx.commit()
        })();
        match step {
            Ok(()) => {
                self.compaction.done = high;
                if high >= target {
                    for reply in self.compaction.waiting.drain(..) {
                        let _ = reply.send(Ok(WriteOutcome::Compacted));
                    }
                }
                true
            }
            Err(e) => {
                let error = backend_error(e);
                tracing::error!(%error, "compaction step failed; it will be retried");
                for reply in self.compaction.waiting.drain(..) {
                    let _ = reply.send(Err(error.clone()));
                }
                false
            }
        }
    }
}

/// The key's current row: (kv, rev of the row).
fn current(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    tx.prepare_cached(
        "SELECT l.rev, l.create_rev, l.version, l.value
           FROM live c JOIN log l ON l.rev = c.rev
          WHERE c.key = ?1",
    )?
    .query_row([key.as_bytes()], |row| {
        Ok(KeyValue {
            key: key.to_owned(),
            mod_revision: row.get(0)?,
            create_revision: row.get(1)?,
            version: row.get(2)?,
            value: Bytes::from(row.get::<_, Vec<u8>>(3)?),
        })
    })
    .optional()
}

/// Checks a write's condition against the key's current state.
fn condition_holds(condition: Condition, current: Option<&KeyValue>) -> bool {
    match (condition, current) {
        (Condition::Always, _) => true,
        (Condition::Absent, current) => current.is_none(),
        (Condition::ModRevision(expected), Some(kv)) => kv.mod_revision == expected,
        (Condition::ModRevision(_), None) => false,
    }
}

type PutResult = Result<(KeyValue, Option<KeyValue>)>;

fn apply_put(
    tx: &Transaction<'_>,
    revision: &mut Revision,
    key: &str,
    value: &Bytes,
    condition: Condition,
) -> rusqlite::Result<PutResult> {
    let prev = current(tx, key)?;
    if !condition_holds(condition, prev.as_ref()) {
        return Ok(Err(StoreError::PreconditionFailed {
            key: key.to_owned(),
            current: prev.map(Box::new),
        }));
    }
    let rev = *revision + 1;
    let (create_revision, version) = match &prev {
        Some(p) => (p.create_revision, p.version + 1),
        None => (rev, 1),
    };
    let prev_rev = match &prev {
        Some(p) => p.mod_revision,
        None => last_row(tx, key)?.unwrap_or(0),
    };
    tx.prepare_cached(
        "INSERT INTO log (rev, key, create_rev, version, prev_rev, value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        rev,
        key.as_bytes(),
        create_revision,
        version,
        prev_rev,
        value.as_ref()
    ])?;
    tx.prepare_cached(
        "INSERT INTO live (key, rev) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET rev = excluded.rev",
    )?
    .execute(params![key.as_bytes(), rev])?;
    *revision = rev;
    let kv = KeyValue {
        key: key.to_owned(),
        value: value.clone(),
        create_revision,
        mod_revision: rev,
        version,
    };
    Ok(Ok((kv, prev)))
}

fn apply_delete(
    tx: &Transaction<'_>,
    revision: &mut Revision,
    key: &str,
    condition: Condition,
) -> rusqlite::Result<Result<Deleted>> {
    let Some(prev) = current(tx, key)? else {
        return Ok(Err(StoreError::PreconditionFailed {
            key: key.to_owned(),
            current: None,
        }));
    };
    if !condition_holds(condition, Some(&prev)) {
        return Ok(Err(StoreError::PreconditionFailed {
            key: key.to_owned(),
            current: Some(Box::new(prev)),
        }));
    }
    let rev = *revision + 1;
    tx.prepare_cached(
        "INSERT INTO log (rev, key, create_rev, version, prev_rev, value)
         VALUES (?1, ?2, 0, 0, ?3, NULL)",
    )?
    .execute(params![rev, key.as_bytes(), prev.mod_revision])?;
    tx.prepare_cached("DELETE FROM live WHERE key = ?1")?
        .execute([key.as_bytes()])?;
    *revision = rev;
    Ok(Ok(Deleted {
        revision: rev,
        prev,
    }))
}

/// The revision of the key's newest row (a deletion marker when the key is not live).
fn last_row(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<Option<Revision>> {
    tx.prepare_cached("SELECT max(rev) FROM log WHERE key = ?1")?
        .query_row([key.as_bytes()], |r| r.get(0))
}
