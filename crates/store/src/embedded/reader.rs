//! Reads: a bounded pool of read-only connections, each read one snapshot transaction.
//!
//! Under WAL a read transaction sees the database as of its first statement and never waits
//! for the writer. Every read first reads `meta` in the same transaction, so the revision it
//! reports is exactly the state it read.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Row, Transaction};
use tokio::sync::Semaphore;

use super::schema::{meta, open_reader};
use super::{MAX_RANGE_PAGE_BYTES, MAX_READ_CONNECTIONS, Shared, backend_error};
use crate::keys::range_start;
use crate::{
    Event, EventKind, GetResponse, KeyValue, RangeRequest, RangeResponse, Result, Revision,
    StoreError, effective_limit, prefix_end,
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

/// The store's revision and compacted revision as of this transaction's snapshot.
fn snapshot_bounds(tx: &Transaction<'_>) -> Result<(Revision, Revision)> {
    let current = meta(tx, "revision").map_err(backend_error)?;
    let compacted = meta(tx, "compacted").map_err(backend_error)?;
    Ok((current, compacted))
}

/// The revision a read at `requested` is served at.
fn resolve(
    requested: Option<Revision>,
    current: Revision,
    compacted: Revision,
) -> Result<Revision> {
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
fn key_at(tx: &Transaction<'_>, key: &[u8], at: Revision) -> rusqlite::Result<Option<KeyValue>> {
    tx.prepare_cached(
        "SELECT key, rev, create_rev, version, value FROM log
          WHERE key = ?1 AND rev <= ?2 ORDER BY rev DESC LIMIT 1",
    )?
    .query_row(rusqlite::params![key, at], |row| match row.get_ref(4)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        _ => kv_from_row(row).map(Some),
    })
    .optional()
    .map(Option::flatten)
}

/// The log row with revision `rev`, if it holds a value.
fn row_at(tx: &Transaction<'_>, rev: Revision) -> rusqlite::Result<Option<KeyValue>> {
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
    with_reader(shared, move |conn| {
        let tx = conn.transaction().map_err(backend_error)?;
        let (current, compacted) = snapshot_bounds(&tx)?;
        let at = resolve(revision, current, compacted)?;
        let kv = key_at(&tx, key.as_bytes(), at).map_err(backend_error)?;
        Ok(GetResponse { kv, revision: at })
    })
    .await
}

pub(super) async fn range(shared: &Arc<Shared>, request: RangeRequest) -> Result<RangeResponse> {
    with_reader(shared, move |conn| {
        let tx = conn.transaction().map_err(backend_error)?;
        let (current, compacted) = snapshot_bounds(&tx)?;
        let at = resolve(request.revision, current, compacted)?;
        let limit = effective_limit(request.limit);
        let start = range_start(&request.prefix, request.from_key.as_deref())
            .as_bytes()
            .to_vec();
        let end = prefix_end(request.prefix.as_bytes());
        let mut page = Page::new(limit);
        if at == current {
            read_live(&tx, &start, end.as_deref(), &mut page)
        } else {
            read_past(&tx, &start, end.as_deref(), at, &mut page)
        }
        .map_err(backend_error)?;
        let count = if request.count {
            Some(count_at(&tx, &start, end.as_deref(), at, at == current).map_err(backend_error)?)
        } else {
            None
        };
        Ok(RangeResponse {
            kvs: page.kvs,
            more: page.more,
            count,
            revision: at,
        })
    })
    .await
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

/// Reads the range as it was at revision `at`: for each key, its newest row at or below `at`.
/// Walks the (key, rev) index in order, so a page costs its own keys, not the whole range.
fn read_past(
    tx: &Transaction<'_>,
    start: &[u8],
    end: Option<&[u8]>,
    at: Revision,
    page: &mut Page,
) -> rusqlite::Result<()> {
    let mut statement;
    let mut rows = match end {
        Some(end) => {
            statement = tx.prepare_cached(
                "SELECT key, rev FROM log WHERE key >= ?1 AND key < ?2 AND rev <= ?3
                  ORDER BY key, rev",
            )?;
            statement.query(rusqlite::params![start, end, at])?
        }
        None => {
            statement = tx.prepare_cached(
                "SELECT key, rev FROM log WHERE key >= ?1 AND rev <= ?2 ORDER BY key, rev",
            )?;
            statement.query(rusqlite::params![start, at])?
        }
    };
    let mut newest: Option<(Vec<u8>, Revision)> = None;
    loop {
        let next = match rows.next()? {
            Some(row) => Some((row.get::<_, Vec<u8>>(0)?, row.get::<_, Revision>(1)?)),
            None => None,
        };
        let finished_key = match (&mut newest, next) {
            (Some((key, rev)), Some((next_key, next_rev))) if *key == next_key => {
                *rev = next_rev;
                None
            }
            (current, Some(next)) => current.replace(next),
            (current, None) => match current.take() {
                Some(last) => Some(last),
                None => break,
            },
        };
        if let Some((_, rev)) = finished_key
            && let Some(kv) = row_at(tx, rev)?
            && !page.offer(kv)
        {
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

/// Up to `limit` events under `prefix` with revisions after `after`, oldest first.
pub(super) async fn history(
    shared: &Arc<Shared>,
    prefix: String,
    after: Revision,
    limit: usize,
) -> Result<Vec<Event>> {
    with_reader(shared, move |conn| {
        let tx = conn.transaction().map_err(backend_error)?;
        let (_, compacted) = snapshot_bounds(&tx)?;
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        read_history(&tx, prefix.as_bytes(), after, limit).map_err(backend_error)
    })
    .await
}

fn read_history(
    tx: &Transaction<'_>,
    prefix: &[u8],
    after: Revision,
    limit: usize,
) -> rusqlite::Result<Vec<Event>> {
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
    while let Some(row) = rows.next()? {
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
        events.push(event);
    }
    Ok(events)
}
