//! Group commit, in two pipelined threads.
//!
//! * The **decider** (`GroupCommitter`) drains the request queue, checks each write's condition
//!   against the newest state and assigns revisions: one per successful write, dense and in
//!   order. It hands the batch to the syncer and goes on deciding the next one while the
//!   syncer's fsync runs.
//! * The **syncer** appends a batch's records to the journal and fsyncs; only then does it add
//!   them to the tail, publish their events and answer every request of the batch (failed
//!   conditions included, so no answer ever reflects a write that is not yet durable).
//!
//! Invariants:
//! * the state a condition is checked against is the newest: writes in flight to the syncer
//!   first, then the tail, then SQLite for keys neither holds (read in a snapshot opened after
//!   looking at the tail, so a key the applier evicted meanwhile is in that snapshot);
//! * a failed append fails its batch and every batch decided on top of it (the syncer sees
//!   their first revision does not follow the last durable one), and the decider starts again
//!   from the last durable revision. Nothing that failed was acknowledged.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension};
use std::sync::mpsc as std_mpsc;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::journal::{Journal, Record};
use super::tail::{MAX_TAIL_ENTRIES, TailEntry};
use super::{MAX_WRITE_BATCH, Shared, backend_error};
use crate::{Condition, Deleted, Event, EventKind, KeyValue, Result, Revision, StoreError};

/// One write for the group-commit thread.
#[derive(Debug)]
pub(super) enum WriteOp {
    Put {
        key: String,
        value: Bytes,
        condition: Condition,
        note: Bytes,
    },
    Delete {
        key: String,
        condition: Condition,
        note: Bytes,
    },
}

impl WriteOp {
    fn key(&self) -> &str {
        match self {
            WriteOp::Put { key, .. } | WriteOp::Delete { key, .. } => key,
        }
    }
}

/// What a successful write produced.
#[derive(Debug)]
pub(super) enum WriteOutcome {
    Put(KeyValue),
    Deleted(Deleted),
}

pub(super) struct WriteRequest {
    pub op: WriteOp,
    pub reply: oneshot::Sender<Result<WriteOutcome>>,
}

/// A key's state before a write: its live value, if any.
///
/// A write records the revision of the row it supersedes (`prev_rev`) only when that row holds
/// a value: deletion markers need no chain, compaction removes them by themselves.
#[derive(Clone, Debug, Default)]
struct KeyState {
    current: Option<KeyValue>,
}

/// A decided batch on its way to the syncer.
struct DecidedBatch {
    /// The revision the batch's first write got (or would have got, when none succeeded).
    first_revision: Revision,
    entries: Vec<TailEntry>,
    /// The journal records of `entries`.
    encoded: Vec<u8>,
    answers: Vec<(oneshot::Sender<Result<WriteOutcome>>, Result<WriteOutcome>)>,
}

/// What the syncer tells the decider after each batch.
enum Synced {
    /// Everything through this revision is durable and in the tail.
    Through(Revision),
    /// A batch failed; this is the last durable revision.
    Failed(Revision),
}

/// The decider: owns revision assignment.
pub(super) struct GroupCommitter {
    /// Read-only connection for looking up keys the tail does not hold.
    lookups: Connection,
    /// Last revision assigned (durable, or in flight to the syncer).
    revision: Revision,
    /// The newest state of keys written by batches still in flight, with its revision.
    in_flight: HashMap<String, (Revision, Option<KeyValue>)>,
    /// Time given to the last batch: times never go backwards, so an instant maps to one
    /// revision (`Store::revision_at`) even when the system clock is stepped back.
    last_time: i64,
    shared: Arc<Shared>,
    syncer: Option<Syncer>,
}

impl GroupCommitter {
    pub(super) fn new(
        journal: Journal,
        lookups: Connection,
        revision: Revision,
        shared: Arc<Shared>,
        events: broadcast::Sender<Weak<Event>>,
    ) -> Self {
        let stored_time = lookups
            .query_row(
                "SELECT coalesce(max(time), 0) FROM (SELECT time FROM log ORDER BY rev DESC LIMIT 1)",
                [],
                |row| row.get::<_, i64>(0),
            )
            .unwrap_or(0);
        let tail_time = shared.lock_tail().newest().map_or(0, |e| e.time_millis);
        Self {
            lookups,
            revision,
            in_flight: HashMap::new(),
            last_time: stored_time.max(tail_time),
            syncer: Some(Syncer {
                journal,
                durable: revision,
                shared: shared.clone(),
                events,
            }),
            shared,
        }
    }

    /// Serves requests until every sender is gone, then tells the applier to finish.
    pub(super) fn run(mut self, mut requests: mpsc::Receiver<WriteRequest>) {
        // Capacity 1: one batch fsyncing while the next is decided.
        let (to_syncer, decided) = std_mpsc::sync_channel::<DecidedBatch>(1);
        let (synced_tx, synced) = std_mpsc::channel::<Synced>();
        let syncer = self.syncer.take().expect("run once");
        let syncer = std::thread::Builder::new()
            .name("fleetdb-journal-sync".into())
            .spawn(move || syncer.run(decided, synced_tx));
        let syncer = match syncer {
            Ok(handle) => handle,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the journal sync thread");
                self.shared.lock_tail().closed = true;
                self.shared.work_for_applier.notify_all();
                return;
            }
        };
        let mut batch = Vec::with_capacity(MAX_WRITE_BATCH);
        while let Some(first) = requests.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_WRITE_BATCH {
                match requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.absorb(&synced);
            self.wait_for_tail_space();
            let decided = self.decide_batch(&mut batch);
            if to_syncer.send(decided).is_err() {
                break;
            }
        }
        drop(to_syncer);
        let _ = syncer.join();
        self.shared.lock_tail().closed = true;
        self.shared.work_for_applier.notify_all();
    }

    /// Applies the syncer's reports: forget durable in-flight state, or start over after a
    /// failure.
    fn absorb(&mut self, synced: &std_mpsc::Receiver<Synced>) {
        while let Ok(report) = synced.try_recv() {
            match report {
                Synced::Through(durable) => {
                    self.in_flight
                        .retain(|_, (revision, _)| *revision > durable);
                }
                Synced::Failed(durable) => {
                    self.revision = durable;
                    self.in_flight.clear();
                }
            }
        }
    }

    /// Backpressure: when the applier is far behind, wait for it instead of growing the tail.
    fn wait_for_tail_space(&self) {
        let mut tail = self.shared.lock_tail();
        while tail.len() >= MAX_TAIL_ENTRIES {
            tail = self
                .shared
                .tail_has_room
                .wait(tail)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The state of every key the batch touches.
    fn key_states(&self, batch: &[WriteRequest]) -> rusqlite::Result<HashMap<String, KeyState>> {
        let mut states = HashMap::with_capacity(batch.len());
        let mut missing = Vec::new();
        {
            let tail = self.shared.lock_tail();
            for request in batch {
                let key = request.op.key();
                if states.contains_key(key) {
                    continue;
                }
                if let Some((_, current)) = self.in_flight.get(key) {
                    let current = current.clone();
                    states.insert(key.to_owned(), KeyState { current });
                    continue;
                }
                match tail.newest_of(key) {
                    Some(entry) => {
                        let current = entry.state().cloned();
                        states.insert(key.to_owned(), KeyState { current });
                    }
                    None => missing.push(key.to_owned()),
                }
            }
        }
        if missing.is_empty() {
            return Ok(states);
        }
        // One snapshot for all lookups; statements are cached, BEGIN and COMMIT included.
        self.lookups.prepare_cached("BEGIN")?.execute([])?;
        let looked_up = (|| {
            let mut select = self.lookups.prepare_cached(
                "SELECT l.rev, l.create_rev, l.version, l.value
                   FROM live c JOIN log l ON l.rev = c.rev WHERE c.key = ?1",
            )?;
            for key in missing {
                let current = select
                    .query_row([key.as_bytes()], |row| {
                        Ok(KeyValue {
                            key: key.clone(),
                            mod_revision: row.get(0)?,
                            create_revision: row.get(1)?,
                            version: row.get(2)?,
                            value: Bytes::from(row.get::<_, Vec<u8>>(3)?),
                        })
                    })
                    .optional()?;
                states.insert(key, KeyState { current });
            }
            Ok(())
        })();
        self.lookups.prepare_cached("COMMIT")?.execute([])?;
        looked_up.map(|()| states)
    }

    /// Decides every write of the batch and encodes the successful ones for the journal.
    fn decide_batch(&mut self, batch: &mut Vec<WriteRequest>) -> DecidedBatch {
        let first_revision = self.revision + 1;
        let mut states = match self.key_states(batch) {
            Ok(states) => states,
            Err(e) => {
                let error = backend_error(e);
                return DecidedBatch {
                    first_revision,
                    entries: Vec::new(),
                    encoded: Vec::new(),
                    answers: batch
                        .drain(..)
                        .map(|request| (request.reply, Err(error.clone())))
                        .collect(),
                };
            }
        };
        let mut entries = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        let time = crate::now_millis().max(self.last_time);
        self.last_time = time;
        for request in batch.drain(..) {
            let key = request.op.key().to_owned();
            let state = states.entry(key.clone()).or_default();
            let result =
                decide(&request.op, state, self.revision + 1, time).map(|(entry, outcome)| {
                    self.revision += 1;
                    state.current = entry.state().cloned();
                    self.in_flight
                        .insert(key, (self.revision, state.current.clone()));
                    entries.push(entry);
                    outcome
                });
            answers.push((request.reply, result));
        }
        let mut encoded = Vec::new();
        for entry in &entries {
            record_of(entry).encode(&mut encoded);
        }
        DecidedBatch {
            first_revision,
            entries,
            encoded,
            answers,
        }
    }
}

/// The syncer: makes decided batches durable, then visible, then answered.
struct Syncer {
    journal: Journal,
    /// Last durable revision.
    durable: Revision,
    shared: Arc<Shared>,
    events: broadcast::Sender<Weak<Event>>,
}

impl Syncer {
    fn run(mut self, decided: std_mpsc::Receiver<DecidedBatch>, synced: std_mpsc::Sender<Synced>) {
        for batch in decided {
            let report = self.sync(batch);
            let _ = synced.send(report);
        }
    }

    fn sync(&mut self, batch: DecidedBatch) -> Synced {
        let failure = if batch.first_revision != self.durable + 1 {
            Some(StoreError::Backend(
                "an earlier write to the journal failed; this write was not applied".into(),
            ))
        } else if batch.entries.is_empty() {
            None
        } else {
            self.journal
                .append(&batch.encoded, batch.first_revision)
                .err()
        };
        if let Some(error) = failure {
            tracing::error!(%error, "journal append failed; the batch was not applied");
            for (reply, _) in batch.answers {
                let _ = reply.send(Err(error.clone()));
            }
            return Synced::Failed(self.durable);
        }
        // Durable now: into the tail, then the revision, then watchers, then the answers.
        if let Some(last) = batch.entries.last() {
            let last = last.revision();
            // The ring gets weak references: the tail holds the events until they are in
            // SQLite, and a watcher that reads one later replays it from there, so a watcher
            // that stops reading holds no values (see `watch.rs`).
            let events: Vec<Weak<Event>> = batch
                .entries
                .iter()
                .map(|e| Arc::downgrade(&e.event))
                .collect();
            let worth_applying = {
                let mut tail = self.shared.lock_tail();
                for entry in batch.entries {
                    tail.push(entry);
                }
                tail.len() >= super::applier::APPLY_EAGERLY_AT
            };
            // The applier wakes by itself every interval; wake it early only for a full batch.
            if worth_applying {
                self.shared.work_for_applier.notify_one();
            }
            self.durable = last;
            self.shared.revision.store(last, Ordering::Release);
            for event in events {
                let _ = self.events.send(event);
            }
        }
        for (reply, result) in batch.answers {
            let _ = reply.send(result);
        }
        Synced::Through(self.durable)
    }
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

/// Decides one write against the key's state; on success, the tail entry it becomes.
fn decide(
    op: &WriteOp,
    state: &KeyState,
    revision: Revision,
    time_millis: i64,
) -> Result<(TailEntry, WriteOutcome)> {
    let failed = || StoreError::PreconditionFailed {
        key: op.key().to_owned(),
        current: state.current.clone().map(Box::new),
    };
    match op {
        WriteOp::Put {
            key,
            value,
            condition,
            note,
        } => {
            if !condition_holds(*condition, state.current.as_ref()) {
                return Err(failed());
            }
            let (create_revision, version) = match &state.current {
                Some(p) => (p.create_revision, p.version + 1),
                None => (revision, 1),
            };
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision,
                mod_revision: revision,
                version,
            };
            let entry = TailEntry {
                prev_revision: state.current.as_ref().map_or(0, |p| p.mod_revision),
                time_millis,
                note: note.clone(),
                event: Arc::new(Event {
                    kind: EventKind::Put,
                    kv: kv.clone(),
                    prev: state.current.clone(),
                }),
            };
            Ok((entry, WriteOutcome::Put(kv)))
        }
        WriteOp::Delete {
            key,
            condition,
            note,
        } => {
            let Some(prev) = state.current.clone() else {
                return Err(failed());
            };
            if !condition_holds(*condition, Some(&prev)) {
                return Err(failed());
            }
            let entry = TailEntry {
                prev_revision: prev.mod_revision,
                time_millis,
                note: note.clone(),
                event: Arc::new(Event {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        key: key.clone(),
                        value: Bytes::new(),
                        create_revision: 0,
                        mod_revision: revision,
                        version: 0,
                    },
                    prev: Some(prev.clone()),
                }),
            };
            Ok((entry, WriteOutcome::Deleted(Deleted { revision, prev })))
        }
    }
}

/// The journal record of a tail entry.
pub(super) fn record_of(entry: &TailEntry) -> Record {
    let kv = &entry.event.kv;
    Record {
        revision: kv.mod_revision,
        kind: entry.event.kind,
        key: kv.key.clone(),
        value: kv.value.clone(),
        create_revision: kv.create_revision,
        version: kv.version,
        prev_revision: entry.prev_revision,
        time_millis: entry.time_millis,
        note: entry.note.clone(),
    }
}
