//! The child process of the crash test: concurrent writes, one stdout line per acknowledged
//! write, until it is killed.
//!
//! Line formats (the crash test parses them):
//! * `P <revision> <key> <value-id> <value-len>`: a put; the value is [`value_for`]`(id, len)`;
//! * `D <revision> <key>`: a delete.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use fleetdb_store::embedded::EmbeddedStore;
use fleetdb_store::{Condition, Store, StoreError};

/// Keys per writer: small, so that updates, deletes and re-creations all happen often.
const KEYS_PER_WRITER: u64 = 20;

/// The value the crash writer stores for `id` with length `len`: the id, then filler.
pub fn value_for(id: &str, len: usize) -> Vec<u8> {
    let mut value = id.as_bytes().to_vec();
    value.resize(len.max(id.len()), b'.');
    value
}

pub async fn run(dir: PathBuf, writers: usize, run: u64) -> anyhow::Result<()> {
    let store = Arc::new(EmbeddedStore::open(&dir)?);
    println!("READY");
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            write_forever(store, run, writer).await
        }));
    }
    // Readers beside the writers: they hold SQLite read snapshots, which is what holds back
    // the applier's checkpoints (the case power-loss safety must not depend on).
    for _ in 0..READERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { read_forever(store).await }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Reader tasks running beside the writers.
const READERS: usize = 2;

async fn read_forever(store: Arc<EmbeddedStore>) -> anyhow::Result<()> {
    loop {
        let mut scan = fleetdb_store::Scan::new(&*store, "/crash/").page_size(64);
        while scan.next_page().await?.is_some() {}
    }
}

async fn write_forever(store: Arc<EmbeddedStore>, run: u64, writer: usize) -> anyhow::Result<()> {
    let mut i: u64 = 0;
    loop {
        i += 1;
        let key = format!("/crash/{writer}/{}", i % KEYS_PER_WRITER);
        let id = format!("{run}-{writer}-{i}");
        // Lengths from 100 B to ~4 KiB, deterministic per write.
        let len = 100 + ((i * 7919 + writer as u64 * 104_729) % 4000) as usize;
        match i % 10 {
            0 => match store.delete(&key, Condition::Always).await {
                Ok(deleted) => println!("D {} {key}", deleted.revision),
                Err(StoreError::PreconditionFailed { .. }) => {}
                Err(e) => return Err(e.into()),
            },
            1 | 2 => {
                // An optimistic update: read, then write if nobody wrote in between.
                let current = store.get(&key, None).await?;
                let condition = match current.kv {
                    Some(kv) => Condition::ModRevision(kv.mod_revision),
                    None => Condition::Absent,
                };
                match store
                    .put(&key, Bytes::from(value_for(&id, len)), condition)
                    .await
                {
                    Ok(kv) => println!("P {} {key} {id} {len}", kv.mod_revision),
                    Err(StoreError::PreconditionFailed { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            _ => {
                let kv = store
                    .put(&key, Bytes::from(value_for(&id, len)), Condition::Always)
                    .await?;
                println!("P {} {key} {id} {len}", kv.mod_revision);
            }
        }
    }
}
