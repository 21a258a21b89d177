//! History retention: compaction driven by a time-based policy.
//!
//! The store's history is a product feature (what did the fleet look like last Tuesday), so it
//! is kept for a configurable time (default 30 days) and compacted only beyond that. Revisions
//! carry no timestamps, so retention keeps a "revision clock": at each check it records, under
//! [`CLOCK_PREFIX`], the current revision and the time it was seen. Every revision at or below a
//! clock entry was written at or before the entry's time, so compacting at the newest entry
//! older than the retention period never discards a change younger than that period.
//!
//! The clock lives in the store itself, so it works the same on both backends and is shared by
//! every fleetdb process on one etcd. Compaction never passes the oldest position of an open
//! watch of this process.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::{Condition, Result, Revision, Scan, Store, StoreError};

/// Keys of the revision clock. Outside `/registry/`, so API watches never see them.
pub const CLOCK_PREFIX: &str = "/_fleetdb/revision-clock/";

/// How long history is kept unless configured otherwise.
pub const DEFAULT_KEEP: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// How often retention records the clock and compacts unless configured otherwise. The
/// clock's entries are also what `asOf` instants are bracketed with on etcd, and what short
/// histories are cut at, so a minute.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// A prefix whose superseded history is kept for less time than the rest (heartbeats), on
/// backends that can ([`Store::compact_prefix`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShortHistory {
    pub prefix: &'static str,
    pub keep: Duration,
}

/// How long history is kept, and how often that is enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub keep: Duration,
    pub interval: Duration,
    /// Prefixes kept for less time.
    pub short: &'static [ShortHistory],
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            keep: DEFAULT_KEEP,
            interval: DEFAULT_INTERVAL,
            short: &[],
        }
    }
}

/// Applies a [`RetentionPolicy`] to a store.
pub struct Retention {
    store: Arc<dyn Store>,
    policy: RetentionPolicy,
}

/// One entry of the revision clock: every revision at or below `revision` was committed at or
/// before `millis`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClockEntry {
    pub millis: u128,
    pub revision: Revision,
}

impl Retention {
    pub fn new(store: Arc<dyn Store>, policy: RetentionPolicy) -> Self {
        Self { store, policy }
    }

    /// Runs [`tick`](Self::tick) every interval until the future is dropped.
    pub async fn run(self) {
        loop {
            if let Err(error) = self.tick(SystemTime::now()).await {
                tracing::warn!(%error, "history retention failed; retrying at the next interval");
            }
            tokio::time::sleep(self.policy.interval).await;
        }
    }

    /// Records the clock at `now` and compacts what the policy no longer keeps. Returns the
    /// revision compacted to, if compaction moved.
    pub async fn tick(&self, now: SystemTime) -> Result<Option<Revision>> {
        let now_millis = millis(now)?;
        let mut clock = read_clock(&*self.store).await?;
        let current = self.store.current_revision().await?;
        if clock.last().is_none_or(|last| last.revision < current) {
            let key = format!("{CLOCK_PREFIX}{now_millis:020}");
            self.store
                .put(&key, Bytes::from(current.to_string()), Condition::Always)
                .await?;
            clock.push(ClockEntry {
                millis: now_millis,
                revision: current,
            });
        }

        for short in self.policy.short {
            let cutoff = now_millis.saturating_sub(short.keep.as_millis());
            let Some(entry) = clock.iter().rev().find(|entry| entry.millis <= cutoff) else {
                continue;
            };
            let mut target = entry.revision;
            if let Some(oldest_watch) = self.store.oldest_watch_position() {
                target = target.min(oldest_watch);
            }
            self.store.compact_prefix(short.prefix, target).await?;
        }
        let cutoff = now_millis.saturating_sub(self.policy.keep.as_millis());
        let Some(index) = clock.iter().rposition(|entry| entry.millis <= cutoff) else {
            return Ok(None);
        };
        let mut target = clock[index].revision;
        if let Some(oldest_watch) = self.store.oldest_watch_position() {
            target = target.min(oldest_watch);
        }
        let compacted = self.store.compacted_revision().await?;
        let moved = if target > compacted {
            self.store.compact(target).await?;
            Some(target)
        } else {
            None
        };
        // Entries older than the one used can never be used again.
        for entry in &clock[..index] {
            let key = format!("{CLOCK_PREFIX}{:020}", entry.millis);
            match self.store.delete(&key, Condition::Always).await {
                Ok(_) | Err(StoreError::PreconditionFailed { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }
}

/// The revision clock's entries, oldest first.
pub(crate) async fn read_clock(store: &dyn Store) -> Result<Vec<ClockEntry>> {
    {
        let mut entries = Vec::new();
        let mut scan = Scan::new(store, CLOCK_PREFIX);
        while let Some(page) = scan.next_page().await? {
            for kv in &page {
                let millis = kv.key[CLOCK_PREFIX.len()..].parse::<u128>();
                let rev = std::str::from_utf8(&kv.value)
                    .ok()
                    .and_then(|v| v.parse::<Revision>().ok());
                if let (Ok(millis), Some(revision)) = (millis, rev) {
                    entries.push(ClockEntry { millis, revision });
                }
            }
        }
        Ok(entries)
    }
}

fn millis(time: SystemTime) -> Result<u128> {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .map_err(|_| StoreError::InvalidArgument("the clock reads before 1970".into()))
}
