//! `fleetdb migrate`: copies an embedded store into etcd — the state history starts from,
//! then every change still in history, in order, each with who made it and when — so a team
//! that started on one machine moves to replicas on etcd without re-creating its fleet.
//!
//! Revisions are etcd's own afterwards (resourceVersions change; clients list again), their
//! order and times are kept: `asOf`, `fleetdb history` and blame answer on etcd as they did.
//! The source's revision clock is rebuilt for the new revisions, one entry per minute of
//! history copied. The copy is then compared with the source, object by object.

use std::path::Path;

use anyhow::{Context, bail};
use fleetdb_store::embedded::EmbeddedStore;
use fleetdb_store::etcd::{EtcdOptions, EtcdStore};
use fleetdb_store::retention::CLOCK_PREFIX;
use fleetdb_store::{Condition, RangeRequest, Scan, Store};

/// Changes read from the embedded store per step.
pub const MIGRATE_PAGE: usize = 1000;

/// Objects are kept under this prefix; the rest is each store's own bookkeeping.
const OBJECTS: &str = "/registry/";

/// What a migration did.
#[derive(Debug, Default)]
pub struct Report {
    /// Changes written to etcd (the starting state included).
    pub changes: u64,
    /// Objects in both stores afterwards, compared equal.
    pub objects: u64,
    /// The time of the oldest change copied (milliseconds since the Unix epoch), if known.
    pub oldest_millis: Option<i64>,
}

/// Copies the embedded store of `data_dir` into etcd (which must hold no fleetdb objects
/// under its prefix), then compares them.
pub async fn migrate(data_dir: &Path, etcd: EtcdOptions) -> anyhow::Result<Report> {
    let source = EmbeddedStore::open(data_dir.join("store")).with_context(|| {
        format!(
            "cannot open the embedded store in {} (stop `fleetdb serve` on it first)",
            data_dir.display()
        )
    })?;
    let endpoints = etcd.endpoints.join(",");
    let target = EtcdStore::connect(etcd)
        .await
        .with_context(|| format!("cannot reach etcd at {endpoints}"))?;
    let existing = target
        .range(RangeRequest {
            prefix: OBJECTS.into(),
            limit: 1,
            ..RangeRequest::default()
        })
        .await?;
    if !existing.kvs.is_empty() {
        bail!(
            "etcd already holds fleetdb objects under this prefix ({}): migrate into an empty one (--etcd-prefix)",
            existing.kvs[0].key
        );
    }

    let mut report = Report::default();
    let mut after = 0;
    let mut last_time = 0i64;
    loop {
        let page = source.changes(after, MIGRATE_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.version.revision;
        for change in &page {
            // The source's revision clock and the like mean nothing on etcd.
            if change.key.starts_with("/_fleetdb/") {
                continue;
            }
            let time = change.version.time_millis;
            // Every revision written so far was committed at or before `last_time`: a clock
            // entry per minute keeps `asOf` working on the copied history.
            if time > 0 && last_time > 0 && time / 60_000 != last_time / 60_000 {
                record_clock(&target, last_time).await?;
            }
            target.import(change).await.with_context(|| {
                format!(
                    "cannot copy revision {} ({})",
                    change.version.revision, change.key
                )
            })?;
            if time > 0 {
                report.oldest_millis.get_or_insert(time);
                last_time = last_time.max(time);
            }
            report.changes += 1;
        }
    }
    if last_time > 0 {
        record_clock(&target, last_time).await?;
    }
    report.objects = compare(&source, &target).await?;
    source.close().await;
    Ok(report)
}

async fn record_clock(target: &EtcdStore, millis: i64) -> anyhow::Result<()> {
    let revision = target.current_revision().await?;
    target
        .put(
            &format!("{CLOCK_PREFIX}{millis:020}"),
            revision.to_string().into_bytes().into(),
            Condition::Always,
        )
        .await?;
    Ok(())
}

/// Reads both stores' objects in key order, page by page, and fails at the first
/// difference; returns how many there are.
async fn compare(source: &dyn Store, target: &dyn Store) -> anyhow::Result<u64> {
    let mut ours = Scan::new(source, OBJECTS);
    let mut theirs = Scan::new(target, OBJECTS);
    let mut pending = std::collections::VecDeque::new();
    let mut count = 0;
    while let Some(page) = ours.next_page().await? {
        for kv in page {
            if pending.is_empty()
                && let Some(next) = theirs.next_page().await?
            {
                pending.extend(next);
            }
            let Some(copy) = pending.pop_front() else {
                bail!("{} is missing from etcd after the copy", kv.key);
            };
            let copy: fleetdb_store::KeyValue = copy;
            if copy.key != kv.key || copy.value != kv.value {
                bail!(
                    "etcd differs from the embedded store at {} (etcd has {}) after the copy",
                    kv.key,
                    copy.key
                );
            }
            count += 1;
        }
    }
    if !pending.is_empty() || theirs.next_page().await?.is_some_and(|p| !p.is_empty()) {
        bail!("etcd holds objects the embedded store does not");
    }
    Ok(count)
}
