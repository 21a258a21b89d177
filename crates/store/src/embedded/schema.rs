//! The on-disk schema and connection settings.

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::backend_error;
use crate::{Result, Revision, StoreError};

/// Bumped on any incompatible change to the tables below.
const SCHEMA_VERSION: i64 = 2;

/// Readers wait this long for a lock SQLite briefly takes (WAL index rebuild); normal reads
/// never wait for the writer.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Page cache of the applier's connection, in KiB. The file's pages are in the kernel's page
/// cache anyway; SQLite's own cache saves the copy out of it and the B-tree decoding of hot
/// pages (the indexes' upper levels), which a few MiB hold.
const APPLIER_CACHE_KIB: i64 = 16 * 1024;

/// Page cache of each read connection (up to `MAX_READ_CONNECTIONS` of them, and the
/// writer's lookups), in KiB.
const READER_CACHE_KIB: i64 = 16 * 1024;

/// WAL files above this size are truncated back once checkpointed.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 << 20;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
    rev        INTEGER PRIMARY KEY,
    key        BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    prev_rev   INTEGER NOT NULL,
    value      BLOB,
    time       INTEGER,
    note       BLOB
);
CREATE INDEX IF NOT EXISTS log_key_rev ON log (key, rev);
CREATE TABLE IF NOT EXISTS live (
    key BLOB PRIMARY KEY,
    rev INTEGER NOT NULL
) WITHOUT ROWID;
";

/// What the writer needs to know at start-up.
#[derive(Clone, Copy, Debug)]
pub(super) struct StoredState {
    /// Every write at or below this revision is in the tables (later ones are in the journal).
    pub applied: Revision,
    pub compacted: Revision,
    /// History up to here has been compacted; below `compacted` there may be work left.
    pub compaction_done: Revision,
}

/// Opens the applier's connection (the only one that writes), creating the schema on first use.
pub(super) fn open_applier(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)
        .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(backend_error)?;
    // The journal makes writes durable; SQLite must be durable before the journal records it
    // holds are retired. FULL syncs the WAL at every commit, so everything applied is on disk
    // whatever the checkpoints do (under NORMAL the WAL is synced only by a checkpoint that
    // makes progress, and a passive one that readers hold back returns OK without syncing).
    // The applier commits in large batches, so this is one fsync per batch, off the write
    // path.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(backend_error)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(backend_error)?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)
        .map_err(backend_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(backend_error)?;
    // Negative: a size in KiB rather than in pages.
    conn.pragma_update(None, "cache_size", -APPLIER_CACHE_KIB)
        .map_err(backend_error)?;
    conn.execute_batch(SCHEMA).map_err(backend_error)?;
    let version: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE name = 'schema'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(backend_error)?;
    match version {
        None => {
            conn.execute_batch(&format!(
                "INSERT INTO meta (name, value) VALUES
                    ('schema', {SCHEMA_VERSION}), ('applied', 0),
                    ('compacted', 0), ('compaction_done', 0);"
            ))
            .map_err(backend_error)?;
        }
        Some(SCHEMA_VERSION) => {}
        // Version 1 had no time and no note per change; rows written then keep NULLs.
        Some(1) => {
            conn.execute_batch(&format!(
                "BEGIN;
                 ALTER TABLE log ADD COLUMN time INTEGER;
                 ALTER TABLE log ADD COLUMN note BLOB;
                 UPDATE meta SET value = {SCHEMA_VERSION} WHERE name = 'schema';
                 COMMIT;"
            ))
            .map_err(backend_error)?;
            tracing::info!(path = %path.display(), "store schema upgraded from version 1 to {SCHEMA_VERSION}");
        }
        Some(other) => {
            return Err(StoreError::Backend(format!(
                "{} has schema version {other}; this fleetdb understands version {SCHEMA_VERSION}",
                path.display()
            )));
        }
    }
    Ok(conn)
}

/// Opens a connection for reads only.
pub(super) fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(backend_error)?;
    conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)
        .map_err(backend_error)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(backend_error)?;
    // The bundled SQLite is built with STAT4, under which binding new parameter values marks
    // a statement for re-preparation (and rusqlite's statement cache clears bindings when a
    // statement returns to it): every cached point read would be parsed and planned again,
    // several times its own cost. Our queries' plans do not depend on their values (and no
    // ANALYZE statistics exist), so pin them.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(backend_error)?;
    Ok(conn)
}

/// Reads one `meta` value.
pub(super) fn meta(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
}

/// Reads the writer's start-up state.
pub(super) fn load_state(conn: &Connection) -> Result<StoredState> {
    Ok(StoredState {
        applied: meta(conn, "applied").map_err(backend_error)?,
        compacted: meta(conn, "compacted").map_err(backend_error)?,
        compaction_done: meta(conn, "compaction_done").map_err(backend_error)?,
    })
}
