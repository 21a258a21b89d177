//! The history benchmark, on the embedded store (the default backend): a fleet of realistic
//! Host objects, then a week's worth of simulated changes, then
//!
//! * a list of every host as it was before those changes (an `asOf` list a week back) against
//!   a list of the current state, page by page as the API reads them;
//! * one host's history among all the other changes;
//! * the revision at an instant (what `asOf=TIME` resolves first);
//! * bytes on disk per change.
//!
//! Writes go straight to the store with notes as the API server writes them; reads are the
//! store calls the API makes for these requests (decoding and encoding the objects cost the
//! same for a current and a past list).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fleetdb_store::embedded::EmbeddedStore;
use fleetdb_store::{Condition, Revision, Scan, Store};

use crate::hosts;

/// Keys per page of the timed lists (the API server's store page).
const LIST_PAGE: usize = 1000;
/// Concurrent writers while the fleet and its changes are written.
const WRITERS: usize = 64;
/// Changes of the host whose history is read.
const TRACKED_CHANGES: usize = 100;
/// Timed repetitions of each read (the median is printed).
const REPEATS: usize = 5;

#[derive(clap::Args, Clone)]
pub struct HistoryBenchArgs {
    /// Small sizes, so that a run takes seconds (what CI runs).
    #[arg(long)]
    quick: bool,
    /// Hosts in the fleet.
    #[arg(long)]
    hosts: Option<usize>,
    /// Changes made after the fleet is written (spread over random hosts).
    #[arg(long)]
    changes: Option<usize>,
    /// Directory for the store (default: a temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn note(user: &str, operation: &str) -> Bytes {
    Bytes::from(format!(r#"{{"u":"{user}","o":"{operation}"}}"#))
}

pub async fn run(args: HistoryBenchArgs) -> anyhow::Result<()> {
    let (default_hosts, default_changes) = if args.quick {
        (2_000, 20_000)
    } else {
        (100_000, 1_000_000)
    };
    let host_count = args.hosts.unwrap_or(default_hosts);
    let change_count = args.changes.unwrap_or(default_changes);
    let temporary = tempfile::tempdir()?;
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temporary.path().to_owned());
    let embedded = Arc::new(EmbeddedStore::open(&dir)?);
    let store: Arc<dyn Store> = embedded.clone();
    let prefix = "/registry/fleetdb.io/hosts/";
    let key = |i: usize| format!("{prefix}{}", hosts::name("host", i));

    println!("history benchmark: {host_count} hosts, then {change_count} changes (embedded store)");
    let started = Instant::now();
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..host_count)
            .map(|i| hosts::host_bytes("host", i))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let (store, bodies, next) = (store.clone(), bodies.clone(), next.clone());
        writers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() {
                    return anyhow::Ok(());
                }
                let key = format!("/registry/fleetdb.io/hosts/{}", hosts::name("host", i));
                store
                    .put_noted(
                        &key,
                        bodies[i].clone(),
                        Condition::Absent,
                        note("fleetdb:fetcher:aws", "apply"),
                    )
                    .await?;
            }
        }));
    }
    for writer in writers {
        writer.await??;
    }
    let week_ago = store.current_revision().await?;
    let week_ago_time = now_millis();
    println!(
        "  wrote the fleet in {:.1} s (revision {week_ago})",
        started.elapsed().as_secs_f64()
    );

    // A week of changes: random hosts get a label and a status field changed; one host gets
    // TRACKED_CHANGES of them, spread evenly.
    let tracked = host_count / 2;
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let (store, bodies, next) = (store.clone(), bodies.clone(), next.clone());
        writers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= change_count {
                    return anyhow::Ok(());
                }
                let i = if n % (change_count / TRACKED_CHANGES).max(1) == 0 {
                    tracked
                } else {
                    (n.wrapping_mul(2_654_435_761)) % bodies.len()
                };
                let mut host: serde_json::Value = serde_json::from_slice(&bodies[i])?;
                host["metadata"]["labels"]["change"] = serde_json::json!(n.to_string());
                host["status"]["lastSeen"] =
                    serde_json::json!(format!("2026-11-{:02}T00:00:00Z", 1 + n % 28));
                let key = format!("/registry/fleetdb.io/hosts/{}", hosts::name("host", i));
                store
                    .put_noted(
                        &key,
                        Bytes::from(serde_json::to_vec(&host)?),
                        Condition::Always,
                        note("bob", "patch"),
                    )
                    .await?;
            }
        }));
    }
    for writer in writers {
        writer.await??;
    }
    let now = store.current_revision().await?;
    println!(
        "  wrote {change_count} changes in {:.1} s (revision {now})",
        started.elapsed().as_secs_f64()
    );
    // Let the applier move the tail into SQLite, as a server that has run a week has.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let current = median(REPEATS, || list(&store, prefix, None)).await?;
    let past = median(REPEATS, || list(&store, prefix, Some(week_ago))).await?;
    println!(
        "  list of {host_count} hosts now:                 {:>8.1} ms",
        current.0 * 1e3
    );
    println!(
        "  list of {host_count} hosts a week back (asOf):  {:>8.1} ms  ({:.2}x the current list)",
        past.0 * 1e3,
        past.0 / current.0
    );
    anyhow::ensure!(
        current.1 == host_count && past.1 == host_count,
        "lists read {} and {} hosts",
        current.1,
        past.1
    );

    let tracked_key = key(tracked);
    let mut count = 0;
    let history = median(REPEATS * 4, || {
        let store = store.clone();
        let key = tracked_key.clone();
        async move {
            let started = Instant::now();
            let versions = store.history(&key, None, 0).await?;
            anyhow::Ok((started.elapsed().as_secs_f64(), versions.len()))
        }
    })
    .await?;
    count += history.1;
    println!(
        "  one host's history ({count} versions) among {change_count} other changes: {:.2} ms",
        history.0 * 1e3
    );
    let resolve = median(REPEATS * 4, || {
        let store = store.clone();
        async move {
            let started = Instant::now();
            let revision = store.revision_at(week_ago_time).await?;
            anyhow::Ok((
                started.elapsed().as_secs_f64(),
                usize::try_from(revision).unwrap_or(0),
            ))
        }
    })
    .await?;
    println!(
        "  revision at an instant a week back: {:.3} ms (revision {}, written at {week_ago})",
        resolve.0 * 1e3,
        resolve.1
    );
    // Closed, everything is in SQLite and the journal is retired.
    drop(store);
    let embedded =
        Arc::try_unwrap(embedded).map_err(|_| anyhow::anyhow!("the store is still shared"))?;
    embedded.close().await;
    let sqlite =
        file_bytes(&dir.join("store.sqlite3")) + file_bytes(&dir.join("store.sqlite3-wal"));
    let changes = host_count + change_count;
    println!(
        "  on disk: {:.0} MiB of SQLite for {changes} changes: {:.0} bytes per change (host objects of about {} bytes as JSON; notes of {} bytes)",
        sqlite as f64 / 1048576.0,
        sqlite as f64 / changes as f64,
        bodies.iter().map(Bytes::len).sum::<usize>() / bodies.len().max(1),
        note("bob", "patch").len()
    );
    Ok(())
}

/// Reads every key under `prefix` (now, or at `revision`) page by page; returns the seconds
/// it took and the number of keys.
async fn list(
    store: &Arc<dyn Store>,
    prefix: &str,
    revision: Option<Revision>,
) -> anyhow::Result<(f64, usize)> {
    let started = Instant::now();
    let mut scan = Scan::new(&**store, prefix)
        .at(revision)
        .page_size(LIST_PAGE);
    let mut count = 0;
    while let Some(page) = scan.next_page().await? {
        count += page.len();
    }
    Ok((started.elapsed().as_secs_f64(), count))
}

/// Runs `measure` `times` times; the median seconds, with the count of the last run.
async fn median<F, Fut>(times: usize, mut measure: F) -> anyhow::Result<(f64, usize)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(f64, usize)>>,
{
    let mut seconds = Vec::with_capacity(times);
    let mut count = 0;
    for _ in 0..times {
        let (s, n) = measure().await?;
        seconds.push(s);
        count = n;
    }
    seconds.sort_by(f64::total_cmp);
    Ok((seconds[seconds.len() / 2], count))
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn file_bytes(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}
