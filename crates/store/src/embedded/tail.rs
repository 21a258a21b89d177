//! The tail: writes that are durable in the journal but not yet applied to SQLite.
//!
//! Readers combine a copy of the relevant part of the tail with a SQLite snapshot. The rules
//! that make that combination exact:
//! * the writer appends to the tail only after the journal fsync, in revision order, so the
//!   tail's revisions are dense: `applied + 1 ..= revision`;
//! * the applier evicts entries only after the SQLite transaction holding them has committed.
//!
//! So a reader that copies from the tail first and opens its SQLite snapshot second sees every
//! write up to the tail's revision at copy time in one of the two (or in both, in which case
//! SQLite's `applied` revision tells which copy to ignore).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::{Event, EventKind, KeyValue, Result, Revision};

/// Most writes held in the tail; the writer waits for the applier beyond this.
pub const MAX_TAIL_ENTRIES: usize = 65_536;

/// One committed write.
#[derive(Debug)]
pub(super) struct TailEntry {
    /// Shared with the watch ring, so a write's event is built once.
    pub event: Arc<Event>,
    /// Revision of the key's previous log row, 0 if none (kept for SQLite's `prev_rev`).
    pub prev_revision: Revision,
    /// When the write was committed (milliseconds since the Unix epoch; 0 if unknown).
    pub time_millis: i64,
    /// The writer's note.
    pub note: bytes::Bytes,
}

impl TailEntry {
    pub fn revision(&self) -> Revision {
        self.event.revision()
    }

    /// The key's state after this write: its value, or `None` after a deletion.
    pub fn state(&self) -> Option<&KeyValue> {
        match self.event.kind {
            EventKind::Put => Some(&self.event.kv),
            EventKind::Delete => None,
        }
    }
}

/// A compaction request waiting for the applier.
pub(super) struct CompactionRequest {
    pub target: Revision,
    pub reply: oneshot::Sender<Result<()>>,
}

/// A request to forget the superseded history of one prefix, waiting for the applier.
pub(super) struct PrefixCompactionRequest {
    pub prefix: String,
    pub target: Revision,
    pub reply: oneshot::Sender<Result<()>>,
}

#[derive(Default)]
pub(super) struct Tail {
    entries: VecDeque<Arc<TailEntry>>,
    /// Revisions of the entries of each key, ascending.
    by_key: BTreeMap<String, VecDeque<Revision>>,
    /// Everything at or below this revision is in SQLite.
    pub applied: Revision,
    /// The newest durable revision.
    pub revision: Revision,
    /// The writer has stopped; the applier drains what is left and stops too.
    pub closed: bool,
    pub compactions: Vec<CompactionRequest>,
    pub prefix_compactions: Vec<PrefixCompactionRequest>,
}

impl Tail {
    pub fn new(applied: Revision) -> Self {
        Self {
            applied,
            revision: applied,
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn entry(&self, revision: Revision) -> Option<&Arc<TailEntry>> {
        let index = revision - self.applied - 1;
        usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get(i))
    }

    /// Appends the next write (its revision must be `revision + 1`).
    pub fn push(&mut self, entry: TailEntry) {
        let revision = entry.revision();
        debug_assert_eq!(revision, self.revision + 1, "tail revisions must be dense");
        self.by_key
            .entry(entry.event.kv.key.clone())
            .or_default()
            .push_back(revision);
        self.entries.push_back(Arc::new(entry));
        self.revision = revision;
    }

    /// The oldest entries, up to `limit`, for the applier.
    pub fn oldest(&self, limit: usize) -> Vec<Arc<TailEntry>> {
        self.entries.iter().take(limit).cloned().collect()
    }

    /// Drops every entry at or below `revision` (now committed to SQLite).
    pub fn evict_through(&mut self, revision: Revision) {
        while let Some(front) = self.entries.front() {
            if front.revision() > revision {
                break;
            }
            let entry = self.entries.pop_front().expect("front exists");
            let key = &entry.event.kv.key;
            if let Some(revisions) = self.by_key.get_mut(key) {
                revisions.pop_front();
                if revisions.is_empty() {
                    self.by_key.remove(key);
                }
            }
            self.applied = entry.revision();
        }
    }

    /// Every entry of `key`, oldest first.
    pub fn entries_of(&self, key: &str) -> Vec<Arc<TailEntry>> {
        self.by_key
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|r| self.entry(*r).cloned())
            .collect()
    }

    /// The entries after `revision`, oldest first, at most `limit`.
    pub fn after(&self, revision: Revision, limit: usize) -> Vec<Arc<TailEntry>> {
        let mut out = Vec::new();
        let mut next = revision.max(self.applied) + 1;
        while out.len() < limit
            && let Some(entry) = self.entry(next)
        {
            out.push(entry.clone());
            next += 1;
        }
        out
    }

    /// The newest entry, if any.
    pub fn newest(&self) -> Option<&Arc<TailEntry>> {
        self.entries.back()
    }

    /// The newest entry committed at or before `time_millis` and the oldest entry's time, if
    /// the tail holds any (times grow with revisions).
    pub fn newest_at(&self, time_millis: i64) -> (Option<Revision>, Option<i64>) {
        let index = self
            .entries
            .partition_point(|entry| entry.time_millis <= time_millis);
        let found = index
            .checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map(|e| e.revision());
        (found, self.entries.front().map(|e| e.time_millis))
    }

    /// The newest entry of `key`, if the tail has one.
    pub fn newest_of(&self, key: &str) -> Option<Arc<TailEntry>> {
        let revision = *self.by_key.get(key)?.back()?;
        self.entry(revision).cloned()
    }

    /// Every entry of every key from `start` on that starts with `prefix`, grouped by key in
    /// key order (keys sharing a prefix are contiguous in byte order).
    pub fn entries_in(&self, start: &str, prefix: &str) -> Vec<(String, Vec<Arc<TailEntry>>)> {
        self.by_key
            .range::<str, _>((Bound::Included(start), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, revisions)| {
                let entries = revisions
                    .iter()
                    .filter_map(|r| self.entry(*r).cloned())
                    .collect();
                (key.clone(), entries)
            })
            .collect()
    }

    /// The keys starting with `prefix` of the entries with revisions in `(after, until]`
    /// (only those the tail still holds: revisions above `applied`).
    pub fn keys_changed(&self, after: Revision, until: Revision, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut revision = after.max(self.applied) + 1;
        while revision <= until
            && let Some(entry) = self.entry(revision)
        {
            if entry.event.kv.key.starts_with(prefix) {
                keys.push(entry.event.kv.key.clone());
            }
            revision += 1;
        }
        keys
    }

    /// Events after `after` whose key starts with `prefix`, oldest first, at most `limit`
    /// (and no more once their values pass [`super::WATCH_REPLAY_PAGE_BYTES`]).
    /// Returns them with the revision the scan reached. `after` must be at least `applied`.
    pub fn events_after(
        &self,
        after: Revision,
        prefix: &str,
        limit: usize,
    ) -> (Vec<Event>, Revision) {
        let mut events = Vec::new();
        let mut bytes = 0;
        let mut scanned = after;
        let mut revision = after + 1;
        while let Some(entry) = self.entry(revision) {
            if events.len() == limit || bytes >= super::WATCH_REPLAY_PAGE_BYTES {
                break;
            }
            if entry.event.kv.key.starts_with(prefix) {
                bytes += entry.event.value_bytes();
                events.push((*entry.event).clone());
            }
            scanned = revision;
            revision += 1;
        }
        (events, scanned)
    }
}

/// The state of a key at revision `at` according to tail entries newer than `applied`:
/// `Some(state)` when the tail decides it, `None` when SQLite does.
pub(super) fn state_at(
    entries: &[Arc<TailEntry>],
    applied: Revision,
    at: Revision,
) -> Option<Option<KeyValue>> {
    entries
        .iter()
        .rev()
        .find(|e| e.revision() > applied && e.revision() <= at)
        .map(|e| e.state().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn put(revision: Revision, key: &str, value_bytes: usize) -> TailEntry {
        TailEntry {
            event: Arc::new(Event {
                kind: EventKind::Put,
                kv: KeyValue {
                    key: key.into(),
                    value: Bytes::from(vec![b'v'; value_bytes]),
                    create_revision: revision,
                    mod_revision: revision,
                    version: 1,
                },
                prev: None,
            }),
            prev_revision: 0,
            time_millis: 0,
            note: Bytes::new(),
        }
    }

    /// A replay page from the tail stops once its values reach the page's bytes, says how far
    /// it scanned, and the pages after it deliver every matching event once.
    #[test]
    fn pages_from_the_tail_are_bounded_in_bytes() {
        const VALUE: usize = 1 << 20;
        let mut tail = Tail::new(0);
        for revision in 1..=24 {
            let key = if revision % 2 == 0 { "/a/x" } else { "/b/x" };
            tail.push(put(revision, key, VALUE));
        }
        let (page, scanned) = tail.events_after(0, "/a/", 1024);
        assert_eq!(
            page.len(),
            super::super::WATCH_REPLAY_PAGE_BYTES.div_ceil(VALUE)
        );
        assert_eq!(scanned, page.last().unwrap().revision());
        let mut delivered: Vec<Revision> = page.iter().map(Event::revision).collect();
        let mut after = scanned;
        while after < tail.revision {
            let (page, scanned) = tail.events_after(after, "/a/", 1024);
            delivered.extend(page.iter().map(Event::revision));
            after = scanned;
        }
        assert_eq!(delivered, (2..=24).step_by(2).collect::<Vec<Revision>>());
    }
}
