//! The applier thread: moves durable writes from the tail into the SQLite tables in large
//! transactions, runs compaction in short steps, and deletes journal segments SQLite no longer
//! needs. It owns the only SQLite connection that writes.
//!
//! Invariants:
//! * entries leave the tail only after the transaction holding them has committed (durably:
//!   `synchronous=FULL`), and journal segments are deleted only after that too;
//! * `meta.applied` moves in the same transaction as the rows it covers;
//! * compaction never reaches past `applied`, and each step is short, so applying never waits
//!   long behind it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::journal::recycle_applied_segments;
use super::schema::StoredState;
use super::tail::TailEntry;
use super::{COMPACTION_STEP_REVISIONS, Shared, backend_error};
use crate::{EventKind, Result, Revision, StoreError};

/// Most tail entries applied in one SQLite transaction.
pub const MAX_APPLY_BATCH: usize = 8192;

/// The applier waits up to this long for a batch to fill, so that SQLite's page writes and
/// fsyncs are shared by many writes (etcd's backend batches on the same principle).
const APPLY_INTERVAL: Duration = Duration::from_millis(50);

/// Tail entries that make the applier start at once instead of waiting for the interval.
pub(super) const APPLY_EAGERLY_AT: usize = 2048;

/// The applier checkpoints SQLite's WAL (making applied writes durable there, so that their
/// journal segments can be retired) after this many applied writes...
const CHECKPOINT_EVERY_WRITES: usize = 16_384;
/// ...or this long after the last checkpoint, whichever comes first.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);

/// Pause after a failed SQLite transaction before the next try.
const RETRY_DELAY: Duration = Duration::from_millis(200);

pub(super) struct Applier {
    conn: Connection,
    shared: Arc<Shared>,
    journal_dir: PathBuf,
    applied: Revision,
    /// Writes applied since the last checkpoint, and when that was.
    since_checkpoint: usize,
    last_checkpoint: std::time::Instant,
    compaction: Compaction,
    /// Prefixes whose superseded history is being forgotten, oldest request first.
    prefix_jobs: Vec<PrefixJob>,
    /// How far each prefix has been forgotten (this process's lifetime).
    prefix_done: std::collections::HashMap<String, Revision>,
}

/// One prefix's superseded history being forgotten, in steps between apply batches.
struct PrefixJob {
    prefix: Vec<u8>,
    end: Option<Vec<u8>>,
    target: Revision,
    done: Revision,
    reply: oneshot::Sender<Result<()>>,
}

/// Compaction proceeds in steps between apply batches.
struct Compaction {
    /// History below this revision may be discarded (and reads below it fail).
    target: Revision,
    /// History up to here has been discarded.
    done: Revision,
    /// Requests for targets not yet reached or not yet applied, with their callers.
    waiting: Vec<(Revision, oneshot::Sender<Result<()>>)>,
}

impl Applier {
    pub(super) fn new(
        conn: Connection,
        state: StoredState,
        shared: Arc<Shared>,
        journal_dir: PathBuf,
    ) -> Self {
        Self {
            conn,
            shared,
            journal_dir,
            applied: state.applied,
            since_checkpoint: 0,
            last_checkpoint: std::time::Instant::now(),
            compaction: Compaction {
                target: state.compacted,
                done: state.compaction_done,
                waiting: Vec::new(),
            },
            prefix_jobs: Vec::new(),
            prefix_done: std::collections::HashMap::new(),
        }
    }

    pub(super) fn run(mut self) {
        loop {
            let (batch, closed) = self.next_batch();
            let idle = batch.is_empty();
            if !batch.is_empty() && !self.apply(&batch) {
                std::thread::sleep(RETRY_DELAY);
                continue;
            }
            self.advance_compaction();
            self.advance_prefix_compaction();
            let finishing = idle && closed && !self.compaction_pending();
            if self.since_checkpoint > 0
                && (finishing
                    || self.since_checkpoint >= CHECKPOINT_EVERY_WRITES
                    || self.last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL)
            {
                self.checkpoint();
            }
            if finishing {
                break;
            }
        }
        for (_, reply) in self.compaction.waiting.drain(..) {
            let _ = reply.send(Err(StoreError::Closed));
        }
        for job in self.prefix_jobs.drain(..) {
            let _ = job.reply.send(Err(StoreError::Closed));
        }
    }

    fn compaction_pending(&self) -> bool {
        self.compaction.done < self.compaction.target || !self.compaction.waiting.is_empty()
    }

    /// Waits for work; returns the oldest tail entries and whether the writer has stopped.
    fn next_batch(&mut self) -> (Vec<Arc<TailEntry>>, bool) {
        let deadline = std::time::Instant::now() + APPLY_INTERVAL;
        let mut tail = self.shared.lock_tail();
        loop {
            for request in tail.compactions.drain(..) {
                self.compaction
                    .waiting
                    .push((request.target, request.reply));
            }
            for request in tail.prefix_compactions.drain(..) {
                let done = self
                    .prefix_done
                    .get(&request.prefix)
                    .copied()
                    .unwrap_or(0)
                    .max(self.compaction.done);
                self.prefix_jobs.push(PrefixJob {
                    end: crate::prefix_end(request.prefix.as_bytes()),
                    prefix: request.prefix.into_bytes(),
                    target: request.target,
                    done,
                    reply: request.reply,
                });
            }
            let now = std::time::Instant::now();
            if tail.closed || tail.len() >= APPLY_EAGERLY_AT || now >= deadline {
                break;
            }
            if tail.is_empty() && (self.compaction_pending() || !self.prefix_jobs.is_empty()) {
                break;
            }
            tail = self
                .shared
                .work_for_applier
                .wait_timeout(tail, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        (tail.oldest(MAX_APPLY_BATCH), tail.closed)
    }

    /// Applies a batch in one transaction; returns false (and changes nothing) on failure.
    fn apply(&mut self, batch: &[Arc<TailEntry>]) -> bool {
        let last = batch.last().expect("non-empty batch").revision();
        let result: rusqlite::Result<()> = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO log (rev, key, create_rev, version, prev_rev, value, time, note)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO live (key, rev) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET rev = excluded.rev",
                )?;
                let mut remove = tx.prepare_cached("DELETE FROM live WHERE key = ?1")?;
                for entry in batch {
                    let kv = &entry.event.kv;
                    let key = kv.key.as_bytes();
                    match entry.event.kind {
                        EventKind::Put => {
                            insert.execute(params![
                                kv.mod_revision,
                                key,
                                kv.create_revision,
                                kv.version,
                                entry.prev_revision,
                                kv.value.as_ref(),
                                entry.time_millis,
                                note(entry)
                            ])?;
                            upsert.execute(params![key, kv.mod_revision])?;
                        }
                        EventKind::Delete => {
                            insert.execute(params![
                                kv.mod_revision,
                                key,
                                0,
                                0,
                                entry.prev_revision,
                                None::<Vec<u8>>,
                                entry.time_millis,
                                note(entry)
                            ])?;
                            remove.execute([key])?;
                        }
                    }
                }
            }
            tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'applied'")?
                .execute([last])?;
            tx.commit()
        })();
        if let Err(e) = result {
            tracing::error!(error = %backend_error(e), "applying journal records to SQLite failed; retrying");
            return false;
        }
        self.applied = last;
        self.since_checkpoint += batch.len();
        {
            let mut tail = self.shared.lock_tail();
            tail.evict_through(last);
        }
        self.shared.tail_has_room.notify_all();
        true
    }

    /// Copies the WAL into the database file as far as readers allow, then retires the
    /// journal segments that hold only applied writes. Those writes are durable in SQLite
    /// already: every applier transaction commits with `synchronous=FULL`, which syncs the
    /// WAL; the checkpoint only keeps the WAL from growing.
    fn checkpoint(&mut self) {
        let applied = self.applied;
        let result = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            });
        match result {
            Ok((busy, frames, copied)) => {
                if busy != 0 || copied < frames {
                    tracing::debug!(frames, copied, "SQLite checkpoint held back by readers");
                }
                self.since_checkpoint = 0;
                self.last_checkpoint = std::time::Instant::now();
                if let Err(error) = recycle_applied_segments(&self.journal_dir, applied) {
                    tracing::warn!(%error, "could not retire applied journal segments");
                }
            }
            Err(e) => {
                tracing::warn!(error = %backend_error(e), "SQLite checkpoint failed; retrying later");
            }
        }
    }

    /// Starts requested compactions whose targets are applied, and runs one step.
    fn advance_compaction(&mut self) {
        let applied = self.applied;
        let highest_ready = self
            .compaction
            .waiting
            .iter()
            .map(|(target, _)| *target)
            .filter(|target| *target <= applied)
            .max();
        if let Some(target) = highest_ready
            && target > self.compaction.target
        {
            let updated = self
                .conn
                .prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'compacted'")
                .and_then(|mut s| s.execute([target]));
            match updated {
                Ok(_) => {
                    self.compaction.target = target;
                    self.shared.compacted.store(target, Ordering::Release);
                }
                Err(e) => {
                    tracing::error!(error = %backend_error(e), "cannot record the compaction target");
                    return;
                }
            }
        }
        if self.compaction.done < self.compaction.target
            && let Err(e) = self.compaction_step()
        {
            tracing::error!(error = %backend_error(e), "compaction step failed; it will be retried");
            std::thread::sleep(RETRY_DELAY);
            return;
        }
        // Answer every request whose target is now fully compacted.
        let done = self.compaction.done;
        let mut still = Vec::new();
        for (wanted, reply) in std::mem::take(&mut self.compaction.waiting) {
            if wanted <= done {
                let _ = reply.send(Ok(()));
            } else {
                still.push((wanted, reply));
            }
        }
        self.compaction.waiting = still;
    }

    /// Runs one step of the oldest prefix job; answers it when done.
    fn advance_prefix_compaction(&mut self) {
        let Some(job) = self.prefix_jobs.first_mut() else {
            return;
        };
        let target = job.target.min(self.applied);
        if job.done < target {
            let high = (job.done + COMPACTION_STEP_REVISIONS).min(target);
            match prefix_compaction_step(&mut self.conn, job, high) {
                Ok(()) => job.done = high,
                Err(e) => {
                    tracing::error!(error = %backend_error(e), "prefix compaction step failed; it will be retried");
                    std::thread::sleep(RETRY_DELAY);
                    return;
                }
            }
        }
        if job.done >= job.target {
            let job = self.prefix_jobs.remove(0);
            let prefix = String::from_utf8_lossy(&job.prefix).into_owned();
            let done = self.prefix_done.entry(prefix).or_default();
            *done = (*done).max(job.done);
            let _ = job.reply.send(Ok(()));
        }
    }

    /// Deletes the history superseded within the next few revisions.
    fn compaction_step(&mut self) -> rusqlite::Result<()> {
        let low = self.compaction.done;
        let high = (low + COMPACTION_STEP_REVISIONS).min(self.compaction.target);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Every row written in (low, high] supersedes its key's previous row, which is
        // therefore no longer the newest at the target.
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
        tx.commit()?;
        self.compaction.done = high;
        Ok(())
    }
}

/// Forgets the rows of `job`'s prefix that rows written in `(job.done, high]` supersede, and
/// its deletion markers there.
fn prefix_compaction_step(
    conn: &mut Connection,
    job: &PrefixJob,
    high: Revision,
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // `+key` keeps SQLite on the revision (rowid) order: a step reads its own revisions.
    let (range, end): (&str, &[u8]) = match &job.end {
        Some(end) => ("+key >= ?3 AND +key < ?4", end),
        None => ("+key >= ?3 AND ?4 IS NOT NULL", b""),
    };
    tx.prepare_cached(&format!(
        "DELETE FROM log WHERE rev IN
            (SELECT prev_rev FROM log WHERE rev > ?1 AND rev <= ?2 AND {range} AND prev_rev > 0)"
    ))?
    .execute(params![job.done, high, job.prefix, end])?;
    tx.prepare_cached(&format!(
        "DELETE FROM log WHERE rev > ?1 AND rev <= ?2 AND {range} AND value IS NULL"
    ))?
    .execute(params![job.done, high, job.prefix, end])?;
    tx.commit()
}

/// A change's note as stored: NULL when there is none.
fn note(entry: &TailEntry) -> Option<&[u8]> {
    (!entry.note.is_empty()).then_some(entry.note.as_ref())
}
