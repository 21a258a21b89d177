//! Reads: a bounded pool of read-only SQLite connections, combined with the tail.
//!
//! Every read first copies what it needs from the tail, then opens one SQLite snapshot (under
//! WAL it never waits for the applier) and reads `meta.applied` in it. Tail entries above
//! `applied` override what SQLite says; the others are already in SQLite. The read is served
//! at the newer of the tail's revision and `applied`, so the state it returns is exactly the
//! state at the revision it reports.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Row, Transaction};
use tokio::sync::Semaphore;

use super::schema::{meta, open_reader};
use super::tail::{TailEntry, state_at};
use super::{
    MAX_RANGE_PAGE_BYTES, MAX_READ_CONNECTIONS, Shared, WATCH_REPLAY_PAGE_BYTES, backend_error,
};
use crate::keys::range_start;
use crate::{
    Event, EventKind, GetManyResponse, GetResponse, KeyValue, RangeRequest, RangeResponse, Result,
    Revision, StoreError, Version, effective_limit, prefix_end,
};

/// Idle read connections and the permits that bound how many exist.
pub(super) struct ReaderPool {
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl ReaderPool {
    pub(super) fn new() -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(MAX_READ_CONNECTIONS),
        }
    }
}

/// Runs `read` on a pooled connection on the blocking thread pool.
async fn with_reader<T, F>(shared: &Arc<Shared>, read: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
{
    let _permit = shared
        .readers
        .permits
        .acquire()
        .await
        .map_err(|_| StoreError::Closed)?;
    let idle = shared
        .readers
        .idle
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop();
    let path = shared.db_path.clone();
    let (conn, result) = tokio::task::spawn_blocking(move || {
        let mut conn = match idle {
            Some(conn) => conn,
            None => match open_reader(&path) {
                Ok(conn) => conn,
                Err(e) => return (None, Err(e)),
            },
        };
        let result = read(&mut conn);
        (Some(conn), result)
    })
    .await
    .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?;
    if let Some(conn) = conn {
        shared
            .readers
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }
    result
}

/// The applied and compacted revisions as of this transaction's snapshot.
fn snapshot_bounds(tx: &Transaction<'_>) -> Result<(Revision, Revision)> {
    let applied = meta(tx, "applied").map_err(backend_error)?;
    let compacted = meta(tx, "compacted").map_err(backend_error)?;
    Ok((applied, compacted))
}

/// The revision a read at `requested` is served at, given the tail's revision at copy time
/// and the snapshot's applied revision.
fn resolve(
    requested: Option<Revision>,
    tail_revision: Revision,
    applied: Revision,
    compacted: Revision,
) -> Result<Revision> {
    let current = tail_revision.max(applied);
    match requested {
        None => Ok(current),
        Some(r) if r > current => Err(StoreError::FutureRevision {
            requested: r,
            current,
        }),
        Some(r) if r < compacted => Err(StoreError::Compacted {
            requested: r,
            compacted,
        }),
        Some(r) if r < 0 => Err(StoreError::InvalidArgument(format!(
            "revision {r} is negative"
        ))),
        Some(r) => Ok(r),
    }
}

fn key_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Maps `key, rev, create_rev, version, value` (value not NULL).
fn kv_from_row(row: &Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: key_string(row.get(0)?),
        mod_revision: row.get(1)?,
        create_revision: row.get(2)?,
        version: row.get(3)?,
        value: Bytes::from(row.get::<_, Vec<u8>>(4)?),
    })
}

/// The live row of `key` at revision `at` (None if absent or deleted then).
fn key_at(tx: &Connection, key: &[u8], at: Revision) -> rusqlite::Result<Option<KeyValue>> {
    let mut statement = tx.prepare_cached(KEY_AT)?;
    key_at_with(&mut statement, key, at)
}

/// The newest log row of a key at or below a revision.
const KEY_AT: &str = "SELECT key, rev, create_rev, version, value FROM log
          WHERE key = ?1 AND rev <= ?2 ORDER BY rev DESC LIMIT 1";

/// [`key_at`] with the statement prepared by the caller (for many keys in a row).
fn key_at_with(
    statement: &mut rusqlite::Statement<'_>,
    key: &[u8],
    at: Revision,
) -> rusqlite::Result<Option<KeyValue>> {
    statement
        .query_row(rusqlite::params![key, at], |row| match row.get_ref(4)? {
            rusqlite::types::ValueRef::Null => Ok(None),
            _ => kv_from_row(row).map(Some),
        })
        .optional()
        .map(Option::flatten)
}

/// The log row with revision `rev`, if it holds a value.
pub(super) fn row_at(tx: &Connection, rev: Revision) -> rusqlite::Result<Option<KeyValue>> {
    tx.prepare_cached(
        "SELECT key, rev, create_rev, version, value FROM log WHERE rev = ?1 AND value IS NOT NULL",
    )?
    .query_row([rev], kv_from_row)
    .optional()
}

pub(super) async fn get(
    shared: &Arc<Shared>,
    key: String,
    revision: Option<Revision>,
) -> Result<GetResponse> {
    let (tail_revision, entries) = {
        let tail = shared.lock_tail();
        (tail.revision, tail.entries_of(&key))
    };
    with_reader(shared, move |conn| {
        // The current state of a key that has a row: one statement (one snapshot) reads
        // `applied` and the key's newest row, never above `applied` (they move in one
        // transaction). Without a row, the general path below.
        if revision.is_none()
            && let Some((applied, row)) = newest_row(conn, key.as_bytes()).map_err(backend_error)?
        {
            let at = tail_revision.max(applied);
            let kv = match state_at(&entries, applied, at) {
                Some(state) => state,
                None => row,
            };
            return Ok(GetResponse { kv, revision: at });
        }
        let tx = conn.transaction().map_err(backend_error)?;
        let (applied, compacted) = snapshot_bounds(&tx)?;
        let at = resolve(revision, tail_revision, applied, compacted)?;
        let kv = match state_at(&entries, applied, at) {
            Some(state) => state,
            None => key_at(&tx, key.as_bytes(), at.min(applied)).map_err(backend_error)?,
        };
        Ok(GetResponse { kv, revision: at })
    })
    .await
}

/// `meta.applied` and the newest row of `key` (None for a deletion's row), read by one
/// statement: no transaction of its own. None when the key has no row.
fn newest_row(
    conn: &Connection,
    key: &[u8],
) -> rusqlite::Result<Option<(Revision, Option<KeyValue>)>> {
    conn.prepare_cached(NEWEST_ROW)?
        .query_row([key], |row| {
            let kv = match row.get_ref(4)? {
                rusqlite::types::ValueRef::Null => None,
                _ => Some(kv_from_row(row)?),
            };
            Ok((row.get(5)?, kv))
        })
        .optional()
}

/// The key's newest row (the columns [`kv_from_row`] maps) and `meta.applied` (a scalar
/// subquery: the same snapshot, no temporary table).
const NEWEST_ROW: &str = "SELECT key, rev, create_rev, version, value,
              (SELECT value FROM meta WHERE name = 'applied')
          FROM log WHERE key = ?1 ORDER BY rev DESC LIMIT 1";

/// Several keys at one revision: one tail copy, one SQLite snapshot.
pub(super) async fn get_many(
    shared: &Arc<Shared>,
    keys: Vec<String>,
    revision: Option<Revision>,
) -> Result<GetManyResponse> {
    let (tail_revision, entries) = {
        let tail = shared.lock_tail();
        let entries: Vec<Vec<Arc<TailEntry>>> =
            keys.iter().map(|key| tail.entries_of(key)).collect();
        (tail.revision, entries)
    };
    with_reader(shared, move |conn| {
        let tx = conn.transaction().map_err(backend_error)?;
        let (applied, compacted) = snapshot_bounds(&tx)?;
        let at = resolve(revision, tail_revision, applied, compacted)?;
        let mut kvs = Vec::with_capacity(keys.len());
        let mut statement = tx.prepare_cached(KEY_AT).map_err(backend_error)?;
        for (key, entries) in keys.iter().zip(&entries) {
            kvs.push(match state_at(entries, applied, at) {
                Some(state) => state,
                None => key_at_with(&mut statement, key.as_bytes(), at.min(applied))
                    .map_err(backend_error)?,
            });
        }
        drop(statement);
        Ok(GetManyResponse { kvs, revision: at })
    })
    .await
}

/// The keys under `prefix` written or deleted in `(after, until]`, from the tail and the log
/// (keys only); `None` past `limit` keys or when that history is compacted.
pub(super) async fn changed_keys(
    shared: &Arc<Shared>,
    prefix: String,
    after: Revision,
    until: Revision,
    limit: usize,
) -> Result<Option<Vec<String>>> {
    let (tail_revision, tail_keys) = {
        let tail = shared.lock_tail();
        (tail.revision, tail.keys_changed(after, until, &prefix))
    };
    with_reader(shared, move |conn| {
        let tx = conn.transaction().map_err(backend_error)?;
        let (applied, compacted) = snapshot_bounds(&tx)?;
        let current = tail_revision.max(applied);
        if until > current {
            return Err(StoreError::FutureRevision {
                requested: until,
                current,
            });
        }
        if after < compacted {
            return Ok(None);
        }
        let mut keys: std::collections::BTreeSet<String> = tail_keys.into_iter().collect();
        if after < applied
            && !log_keys_between(
                &tx,
                prefix.as_bytes(),
                after,
                until.min(applied),
                limit,
                &mut keys,
            )
            .map_err(backend_error)?
        {
            return Ok(None);
        }
        if keys.len() > limit {
            return Ok(None);
        }
        Ok(Some(keys.into_iter().collect()))
    })
    .await
}

/// Adds the keys under `prefix` of the log rows in `(after, until]` to `keys`; false once
/// there are more than `limit` of them.
fn log_keys_between(
    tx: &Transaction<'_>,
    prefix: &[u8],
    after: Revision,
    until: Revision,
    limit: usize,
    keys: &mut std::collections::BTreeSet<String>,
) -> rusqlite::Result<bool> {
    // `+key` keeps SQLite on the rowid (revision) range instead of the key index.
    let end = prefix_end(prefix);
    let mut statement;
    let mut rows = match &end {
        Some(end) => {
            statement = tx.prepare_cached(
                "SELECT key FROM log WHERE rev > ?1 AND rev <= ?2 AND +key >= ?3 AND +key < ?4",
            )?;
            statement.query(rusqlite::params![after, until, prefix, end])?
        }
        None => {
            statement = tx.prepare_cached(
                "SELECT key FROM log WHERE rev > ?1 AND rev <= ?2 AND +key >= ?3",
            )?;
            statement.query(rusqlite::params![after, until, prefix])?
        }
    };
    while let Some(row) = rows.next()? {
        keys.insert(key_string(row.get(0)?));
        if keys.len() > limit {
            return Ok(false);
        }
    }
    Ok(true)
}

pub(super) async fn range(shared: &Arc<Shared>, request: RangeRequest) -> Result<RangeResponse> {
    let start = range_start(&request.prefix, request.from_key.as_deref()).to_owned();
    let (tail_revision, tail_keys) = {
        let tail = shared.lock_tail();
        (tail.revision, tail.entries_in(&start, &request.prefix))
    };
    with_reader(shared, move |conn| {
        let tx = conn.transaction().map_err(backend_error)?;
        let (applied, compacted) = snapshot_bounds(&tx)?;
        let at = resolve(request.revision, tail_revision, applied, compacted)?;
        let overlay = overlay_at(tail_keys, applied, at);
        let limit = effective_limit(request.limit);
        let end = prefix_end(request.prefix.as_bytes());
        let sqlite_at = at.min(applied);
        // Each overlay key can hide at most one SQLite row, so this many rows suffice.
        let mut page = Page::new(limit + overlay.len());
        if sqlite_at == applied {
            read_live(&tx, start.as_bytes(), end.as_deref(), &mut page)
        } else {
            read_past(&tx, start.as_bytes(), end.as_deref(), sqlite_at, &mut page)
        }
        .map_err(backend_error)?;
        let count = if request.count {
            let mut count = count_at(
                &tx,
                start.as_bytes(),
                end.as_deref(),
                sqlite_at,
                sqlite_at == applied,
            )
            .map_err(backend_error)? as i64;
            for (key, state) in &overlay {
                let in_sqlite = key_at(&tx, key.as_bytes(), sqlite_at).map_err(backend_error)?;
                count += i64::from(state.is_some()) - i64::from(in_sqlite.is_some());
            }
            Some(count.max(0) as u64)
        } else {
            None
        };
        let (kvs, more) = merge(page, overlay, limit);
        Ok(RangeResponse {
            kvs,
            more,
            count,
            revision: at,
        })
    })
    .await
}

/// Per key of the tail copy, its state at `at` when the tail decides it.
fn overlay_at(
    tail_keys: Vec<(String, Vec<Arc<TailEntry>>)>,
    applied: Revision,
    at: Revision,
) -> BTreeMap<String, Option<KeyValue>> {
    tail_keys
        .into_iter()
        .filter_map(|(key, entries)| state_at(&entries, applied, at).map(|state| (key, state)))
        .collect()
}

/// Merges a SQLite page with the tail overlay (which wins), in key order, up to `limit`.
fn merge(
    page: Page,
    overlay: BTreeMap<String, Option<KeyValue>>,
    limit: usize,
) -> (Vec<KeyValue>, bool) {
    let truncated = page.more;
    // Past the last SQLite row of a truncated page, SQLite rows are unknown: stop there.
    let boundary = if truncated {
        page.kvs.last().map(|kv| kv.key.clone())
    } else {
        None
    };
    let mut sqlite = page.kvs.into_iter().peekable();
    let mut tail = overlay
        .into_iter()
        .filter(|(key, _)| boundary.as_ref().is_none_or(|b| key <= b))
        .peekable();
    let mut out = Vec::new();
    while out.len() <= limit {
        let next = match (sqlite.peek(), tail.peek()) {
            (None, None) => break,
            (Some(_), None) => sqlite.next(),
            (None, Some(_)) => tail.next().and_then(|(_, state)| state),
            (Some(s), Some((t, _))) => {
                if s.key < *t {
                    sqlite.next()
                } else {
                    if s.key == *t {
                        sqlite.next();
                    }
                    tail.next().and_then(|(_, state)| state)
                }
            }
        };
        if let Some(kv) = next {
            out.push(kv);
        }
    }
    let more = truncated || out.len() > limit;
    out.truncate(limit);
    (out, more)
}

/// A range page being filled, bounded by key count and by bytes.
struct Page {
    kvs: Vec<KeyValue>,
    limit: usize,
    bytes: usize,
    more: bool,
}

impl Page {
    fn new(limit: usize) -> Self {
        Self {
            kvs: Vec::new(),
            limit,
            bytes: 0,
            more: false,
        }
    }

    /// Offers the next key in order; returns false once the page is full.
    fn offer(&mut self, kv: KeyValue) -> bool {
        if self.kvs.len() >= self.limit
            || (self.bytes >= MAX_RANGE_PAGE_BYTES && !self.kvs.is_empty())
        {
            self.more = true;
            return false;
        }
        self.bytes += kv.value.len() + kv.key.len();
        self.kvs.push(kv);
        true
    }
}

fn read_live(
    tx: &Transaction<'_>,
    start: &[u8],
    end: Option<&[u8]>,
    page: &mut Page,
) -> rusqlite::Result<()> {
    const SELECT: &str = "SELECT c.key, l.rev, l.create_rev, l.version, l.value
                            FROM live c JOIN log l ON l.rev = c.rev";
    let fetch = (page.limit + 1) as i64;
    let mut statement;
    let mut rows = match end {
        Some(end) => {
            statement = tx.prepare_cached(&format!(
                "{SELECT} WHERE c.key >= ?1 AND c.key < ?2 ORDER BY c.key LIMIT ?3"
            ))?;
            statement.query(rusqlite::params![start, end, fetch])?
        }
        None => {
            statement = tx.prepare_cached(&format!(
                "{SELECT} WHERE c.key >= ?1 ORDER BY c.key LIMIT ?2"
            ))?;
            statement.query(rusqlite::params![start, fetch])?
        }
    };
    while let Some(row) = rows.next()? {
        if !page.offer(kv_from_row(row)?) {
            break;
        }
    }
    Ok(())
}

/// Reads the range as it was at revision `at`: for each key, its newest row at or below `at`
/// (skipped when that row is a deletion). SQLite walks the (key, rev) index in order and
/// keeps the newest revision of each key itself, so a page costs its own keys' index entries
/// and one row read per key, and nothing is copied out for the superseded rows.
fn read_past(
    tx: &Transaction<'_>,
    start: &[u8],
    end: Option<&[u8]>,
    at: Revision,
    page: &mut Page,
) -> rusqlite::Result<()> {
    const SELECT: &str = "SELECT l.key, l.rev, l.create_rev, l.version, l.value
        FROM (SELECT key, max(rev) AS newest FROM log";
    const REST: &str = "GROUP BY key ORDER BY key) m JOIN log l ON l.rev = m.newest
        WHERE l.value IS NOT NULL ORDER BY m.key";
    let mut statement;
    let mut rows = match end {
        Some(end) => {
            statement = tx.prepare_cached(&format!(
                "{SELECT} WHERE key >= ?1 AND key < ?2 AND rev <= ?3 {REST}"
            ))?;
            statement.query(rusqlite::params![start, end, at])?
        }
        None => {
            statement =
                tx.prepare_cached(&format!("{SELECT} WHERE key >= ?1 AND rev <= ?2 {REST}"))?;
            statement.query(rusqlite::params![start, at])?
        }
    };
    while let Some(row) = rows.next()? {
        if !page.offer(kv_from_row(row)?) {
            break;
        }
    }
    Ok(())
}

fn count_at(
    tx: &Transaction<'_>,
    start: &[u8],
    end: Option<&[u8]>,
    at: Revision,
    live: bool,
) -> rusqlite::Result<u64> {
    let count: i64 = match (live, end) {
        (true, Some(end)) => tx
            .prepare_cached("SELECT count(*) FROM live WHERE key >= ?1 AND key < ?2")?
            .query_row(rusqlite::params![start, end], |r| r.get(0))?,
        (true, None) => tx
            .prepare_cached("SELECT count(*) FROM live WHERE key >= ?1")?
            .query_row(rusqlite::params![start], |r| r.get(0))?,
        (false, end) => tx
            .prepare_cached(
                "SELECT count(*) FROM
                   (SELECT max(rev) AS newest FROM log
                     WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) AND rev <= ?3 GROUP BY key) m
                   JOIN log l ON l.rev = m.newest WHERE l.value IS NOT NULL",
            )?
            .query_row(rusqlite::params![start, end, at], |r| r.get(0))?,
    };
    Ok(count as u64)
}

/// Up to `limit` events under `prefix` with revisions after `after`, oldest first, with the
/// revision the scan reached and whether that is the newest revision. A page stops early
/// once its values (with the previous ones) pass [`WATCH_REPLAY_PAGE_BYTES`].
pub(super) async fn history(
    shared: &Arc<Shared>,
    prefix: String,
    after: Revision,
    limit: usize,
) -> Result<(Vec<Event>, Revision, bool)> {
    {
        let tail = shared.lock_tail();
        if after >= tail.applied {
            // Everything after `after` is still in the tail.
            let (events, scanned) = tail.events_after(after, &prefix, limit);
            let reached_end = scanned == tail.revision;
            return Ok((events, scanned, reached_end));
        }
    }
    with_reader(shared, move |conn| {
        let tx = conn.transaction().map_err(backend_error)?;
        let (applied, compacted) = snapshot_bounds(&tx)?;
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        let (events, full) =
            read_history(&tx, prefix.as_bytes(), after, limit).map_err(backend_error)?;
        let scanned = match events.last() {
            Some(last) if full => last.revision(),
            _ => applied,
        };
        Ok((events, scanned, false))
    })
    .await
}

/// The events of [`history`] from SQLite, and whether the page is full (by events or bytes:
/// more may follow).
fn read_history(
    tx: &Transaction<'_>,
    prefix: &[u8],
    after: Revision,
    limit: usize,
) -> rusqlite::Result<(Vec<Event>, bool)> {
    // `+key` keeps SQLite on the rowid (revision) order instead of the key index.
    const SELECT: &str = "SELECT key, rev, create_rev, version, value, prev_rev FROM log";
    let end = prefix_end(prefix);
    let mut statement;
    let mut rows = match &end {
        Some(end) => {
            statement = tx.prepare_cached(&format!(
                "{SELECT} WHERE rev > ?1 AND +key >= ?2 AND +key < ?3 ORDER BY rev LIMIT ?4"
            ))?;
            statement.query(rusqlite::params![after, prefix, end, limit as i64])?
        }
        None => {
            statement =
                tx.prepare_cached(&format!("{SELECT} WHERE rev > ?1 ORDER BY rev LIMIT ?2"))?;
            statement.query(rusqlite::params![after, limit as i64])?
        }
    };
    let mut events = Vec::new();
    let mut bytes = 0;
    while let Some(row) = rows.next()? {
        if bytes >= WATCH_REPLAY_PAGE_BYTES {
            return Ok((events, true));
        }
        let key = key_string(row.get(0)?);
        let rev: Revision = row.get(1)?;
        let prev_rev: Revision = row.get(5)?;
        let prev = if prev_rev > 0 {
            row_at(tx, prev_rev)?
        } else {
            None
        };
        let event = match row.get::<_, Option<Vec<u8>>>(4)? {
            Some(value) => Event {
                kind: EventKind::Put,
                kv: KeyValue {
                    key,
                    value: Bytes::from(value),
                    create_revision: row.get(2)?,
                    mod_revision: rev,
                    version: row.get(3)?,
                },
                prev,
            },
            None => Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key,
                    value: Bytes::new(),
                    create_revision: 0,
                    mod_revision: rev,
                    version: 0,
                },
                prev,
            },
        };
        bytes += event.value_bytes();
        events.push(event);
    }
    let full = events.len() == limit;
    Ok((events, full))
}

/// The versions of one key, newest first (see [`crate::Store::history`]).
pub(super) async fn history_of(
    shared: &Arc<Shared>,
    key: String,
    before: Option<Revision>,
    limit: usize,
) -> Result<Vec<Version>> {
    let before = before.unwrap_or(Revision::MAX);
    let entries = shared.lock_tail().entries_of(&key);
    with_reader(shared, move |conn| {
        let tx = conn.transaction().map_err(backend_error)?;
        let (applied, _) = snapshot_bounds(&tx)?;
        let mut bytes = 0usize;
        let mut full = |version: &Version| {
            bytes += version.kv.as_ref().map_or(0, |kv| kv.value.len());
            bytes >= crate::MAX_HISTORY_BYTES
        };
        let mut versions = Vec::new();
        for entry in entries.iter().rev() {
            if versions.len() == limit {
                return Ok(versions);
            }
            if entry.revision() <= applied || entry.revision() >= before {
                continue;
            }
            let version = Version {
                revision: entry.revision(),
                time_millis: entry.time_millis,
                kv: entry.state().cloned(),
                note: entry.note.clone(),
            };
            let stop = full(&version);
            versions.push(version);
            if stop {
                return Ok(versions);
            }
        }
        let remaining = limit - versions.len();
        if remaining > 0 {
            let mut statement = tx
                .prepare_cached(
                    "SELECT key, rev, create_rev, version, value, time, note FROM log
                     WHERE key = ?1 AND rev <= ?2 AND rev < ?3 ORDER BY rev DESC LIMIT ?4",
                )
                .map_err(backend_error)?;
            let rows = statement
                .query_map(
                    rusqlite::params![key.as_bytes(), applied, before, remaining as i64],
                    |row| {
                        let kv = match row.get_ref(4)? {
                            rusqlite::types::ValueRef::Null => None,
                            _ => Some(kv_from_row(row)?),
                        };
                        Ok(Version {
                            revision: row.get(1)?,
                            time_millis: row.get::<_, Option<i64>>(5)?.unwrap_or(0),
                            kv,
                            note: row
                                .get::<_, Option<Vec<u8>>>(6)?
                                .map(Bytes::from)
                                .unwrap_or_default(),
                        })
                    },
                )
                .map_err(backend_error)?;
            for version in rows {
                let version = version.map_err(backend_error)?;
                let stop = full(&version);
                versions.push(version);
                if stop {
                    break;
                }
            }
        }
        Ok(versions)
    })
    .await
}

/// The newest revision committed at or before `time_millis` (see
/// [`crate::Store::revision_at`]). Times grow with revisions (the writer never lets them go
/// back), so the tail answers by bisection in memory and SQLite by bisection on revisions.
pub(super) async fn revision_at(shared: &Arc<Shared>, time_millis: i64) -> Result<Revision> {
    if let (Some(revision), _) = shared.lock_tail().newest_at(time_millis) {
        return Ok(revision);
    }
    with_reader(shared, move |conn| {
        let tx = conn.transaction().map_err(backend_error)?;
        let (applied, compacted) = snapshot_bounds(&tx)?;
        let first_from = |revision: Revision| -> rusqlite::Result<Option<(Revision, i64)>> {
            tx.prepare_cached("SELECT rev, time FROM log WHERE rev >= ?1 ORDER BY rev LIMIT 1")?
                .query_row([revision], |row| {
                    Ok((row.get(0)?, row.get::<_, Option<i64>>(1)?.unwrap_or(0)))
                })
                .optional()
        };
        // Invariant: the answer is at least `low` and at most `high`.
        let mut low = compacted.max(0);
        let mut high = applied;
        while low < high {
            let middle = low + (high - low + 1) / 2;
            match first_from(middle).map_err(backend_error)? {
                Some((revision, time)) if revision <= high && time <= time_millis => {
                    low = revision;
                }
                _ => high = middle - 1,
            }
        }
        if low == compacted && compacted > 0 {
            // Nothing after the compacted revision is old enough: the instant is before it
            // unless the newest change history still holds from then is.
            let base: Option<i64> = tx
                .prepare_cached("SELECT time FROM log WHERE rev <= ?1 ORDER BY rev DESC LIMIT 1")
                .and_then(|mut s| {
                    s.query_row([compacted], |row| row.get::<_, Option<i64>>(0))
                        .optional()
                })
                .map_err(backend_error)?
                .map(|t| t.unwrap_or(0));
            if base.is_none_or(|time| time > time_millis) {
                return Err(StoreError::Compacted {
                    requested: compacted - 1,
                    compacted,
                });
            }
        }
        Ok(low)
    })
    .await
}

/// Changes after `after` in revision order (see [`crate::Store::changes`]): SQLite's rows up
/// to the snapshot's applied revision, then the tail's. Below the compacted revision what
/// remains is each key's state at it, so reading from 0 replays the state history starts
/// from, then every change since.
pub(super) async fn changes_after(
    shared: &Arc<Shared>,
    after: Revision,
    limit: usize,
) -> Result<Vec<crate::Change>> {
    let entries = shared.lock_tail().after(after, limit);
    with_reader(shared, move |conn| {
        let tx = conn.transaction().map_err(backend_error)?;
        let (applied, _) = snapshot_bounds(&tx)?;
        let mut changes = Vec::new();
        if after < applied {
            let mut statement = tx
                .prepare_cached(
                    "SELECT key, rev, create_rev, version, value, time, note FROM log
                     WHERE rev > ?1 AND rev <= ?2 ORDER BY rev LIMIT ?3",
                )
                .map_err(backend_error)?;
            let rows = statement
                .query_map(rusqlite::params![after, applied, limit as i64], |row| {
                    let kv = match row.get_ref(4)? {
                        rusqlite::types::ValueRef::Null => None,
                        _ => Some(kv_from_row(row)?),
                    };
                    Ok(crate::Change {
                        key: key_string(row.get(0)?),
                        version: Version {
                            revision: row.get(1)?,
                            time_millis: row.get::<_, Option<i64>>(5)?.unwrap_or(0),
                            kv,
                            note: row
                                .get::<_, Option<Vec<u8>>>(6)?
                                .map(Bytes::from)
                                .unwrap_or_default(),
                        },
                    })
                })
                .map_err(backend_error)?;
            for change in rows {
                changes.push(change.map_err(backend_error)?);
            }
        }
        let from = changes
            .last()
            .map_or(after, |c| c.version.revision)
            .max(applied);
        for entry in entries.iter().filter(|e| e.revision() > from) {
            if changes.len() == limit {
                break;
            }
            changes.push(crate::Change {
                key: entry.event.kv.key.clone(),
                version: Version {
                    revision: entry.revision(),
                    time_millis: entry.time_millis,
                    kv: entry.state().cloned(),
                    note: entry.note.clone(),
                },
            });
        }
        Ok(changes)
    })
    .await
}
