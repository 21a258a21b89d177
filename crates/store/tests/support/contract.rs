//! The store contract as executable specification. Every function here runs against both
//! backends (see `../conformance.rs`); a backend conforms when all of them pass.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fleetdb_store::retention::{Retention, RetentionPolicy};
use fleetdb_store::{
    Condition, EventKind, MAX_VALUE_BYTES, RangeRequest, Revision, Scan, Store, StoreError,
    WatchStream,
};
use futures::StreamExt;

/// How long a test waits for an expected watch event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

fn value(text: impl Into<String>) -> Bytes {
    Bytes::from(text.into())
}

async fn next_event(watch: &mut WatchStream) -> fleetdb_store::Event {
    tokio::time::timeout(EVENT_TIMEOUT, watch.next())
        .await
        .expect("timed out waiting for a watch event")
        .expect("the watch ended")
        .expect("the watch failed")
}

/// Reads every key under `prefix` at `revision`, page by page.
async fn read_all(
    store: &dyn Store,
    prefix: &str,
    limit: usize,
    revision: Option<Revision>,
) -> Vec<fleetdb_store::KeyValue> {
    let mut out = Vec::new();
    let mut scan = Scan::new(store, prefix).at(revision).page_size(limit);
    while let Some(page) = scan.next_page().await.expect("range failed") {
        out.extend(page);
    }
    out
}

pub async fn put_then_get_returns_value_and_revisions(store: Arc<dyn Store>) {
    let created = store
        .put("/t/a", value("one"), Condition::Always)
        .await
        .unwrap();
    assert_eq!(created.create_revision, created.mod_revision);
    assert_eq!(created.version, 1);
    assert_eq!(
        store.current_revision().await.unwrap(),
        created.mod_revision
    );

    let got = store.get("/t/a", None).await.unwrap();
    assert_eq!(got.kv.as_ref().unwrap().value, value("one"));
    assert_eq!(got.kv.as_ref().unwrap(), &created);
    assert_eq!(got.revision, created.mod_revision);

    let updated = store
        .put("/t/a", value("two"), Condition::Always)
        .await
        .unwrap();
    assert!(updated.mod_revision > created.mod_revision);
    assert_eq!(updated.create_revision, created.create_revision);
    assert_eq!(updated.version, 2);
    assert!(store.get("/t/missing", None).await.unwrap().kv.is_none());
}

pub async fn every_write_advances_the_revision(store: Arc<dyn Store>) {
    let mut last = store.current_revision().await.unwrap();
    for i in 0..50 {
        let kv = store
            .put(
                &format!("/t/k{}", i % 7),
                value(format!("v{i}")),
                Condition::Always,
            )
            .await
            .unwrap();
        assert!(kv.mod_revision > last, "revision did not increase");
        assert_eq!(store.current_revision().await.unwrap(), kv.mod_revision);
        last = kv.mod_revision;
    }
}

pub async fn create_of_existing_key_fails_with_current_value(store: Arc<dyn Store>) {
    let first = store
        .put("/t/c", value("first"), Condition::Absent)
        .await
        .unwrap();
    match store.put("/t/c", value("second"), Condition::Absent).await {
        Err(StoreError::PreconditionFailed { key, current }) => {
            assert_eq!(key, "/t/c");
            assert_eq!(*current.expect("current value missing"), first);
        }
        other => panic!("expected a failed precondition, got {other:?}"),
    }
    assert_eq!(
        store.get("/t/c", None).await.unwrap().kv.unwrap().value,
        value("first")
    );
}

pub async fn update_requires_the_current_mod_revision(store: Arc<dyn Store>) {
    let v1 = store
        .put("/t/u", value("1"), Condition::Absent)
        .await
        .unwrap();
    let v2 = store
        .put("/t/u", value("2"), Condition::ModRevision(v1.mod_revision))
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    match store
        .put("/t/u", value("3"), Condition::ModRevision(v1.mod_revision))
        .await
    {
        Err(StoreError::PreconditionFailed { current, .. }) => {
            assert_eq!(*current.unwrap(), v2);
        }
        other => panic!("a stale update must fail, got {other:?}"),
    }
    match store
        .put(
            "/t/nothing",
            value("x"),
            Condition::ModRevision(v1.mod_revision),
        )
        .await
    {
        Err(StoreError::PreconditionFailed { current: None, .. }) => {}
        other => panic!("updating a missing key must fail without a current value, got {other:?}"),
    }
}

pub async fn delete_requires_the_current_mod_revision(store: Arc<dyn Store>) {
    let v1 = store
        .put("/t/d", value("1"), Condition::Always)
        .await
        .unwrap();
    let v2 = store
        .put("/t/d", value("2"), Condition::Always)
        .await
        .unwrap();
    match store
        .delete("/t/d", Condition::ModRevision(v1.mod_revision))
        .await
    {
        Err(StoreError::PreconditionFailed { current, .. }) => assert_eq!(*current.unwrap(), v2),
        other => panic!("a stale delete must fail, got {other:?}"),
    }
    let deleted = store
        .delete("/t/d", Condition::ModRevision(v2.mod_revision))
        .await
        .unwrap();
    assert_eq!(deleted.prev, v2);
    assert!(deleted.revision > v2.mod_revision);
    assert_eq!(store.current_revision().await.unwrap(), deleted.revision);
    assert!(store.get("/t/d", None).await.unwrap().kv.is_none());
    assert!(matches!(
        store.delete("/t/d", Condition::Always).await,
        Err(StoreError::PreconditionFailed { current: None, .. })
    ));
    assert!(matches!(
        store.delete("/t/d", Condition::Absent).await,
        Err(StoreError::InvalidArgument(_))
    ));
}

pub async fn recreated_key_starts_a_new_incarnation(store: Arc<dyn Store>) {
    let first = store
        .put("/t/r", value("1"), Condition::Absent)
        .await
        .unwrap();
    store
        .put("/t/r", value("2"), Condition::Always)
        .await
        .unwrap();
    store.delete("/t/r", Condition::Always).await.unwrap();
    let again = store
        .put("/t/r", value("3"), Condition::Absent)
        .await
        .unwrap();
    assert!(again.create_revision > first.create_revision);
    assert_eq!(again.create_revision, again.mod_revision);
    assert_eq!(again.version, 1);
}

pub async fn invalid_keys_are_refused(store: Arc<dyn Store>) {
    for key in ["", "/a\0b"] {
        assert!(
            matches!(
                store.put(key, value("x"), Condition::Always).await,
                Err(StoreError::InvalidKey { .. })
            ),
            "key {key:?} must be refused"
        );
    }
    let long = format!("/{}", "k".repeat(fleetdb_store::MAX_KEY_BYTES));
    assert!(matches!(
        store.put(&long, value("x"), Condition::Always).await,
        Err(StoreError::InvalidKey { .. })
    ));
}

pub async fn values_above_the_limit_are_refused(store: Arc<dyn Store>) {
    let too_big = Bytes::from(vec![b'x'; MAX_VALUE_BYTES + 1]);
    match store.put("/t/big", too_big, Condition::Always).await {
        Err(StoreError::ValueTooLarge { key, size, limit }) => {
            assert_eq!(
                (key.as_str(), size, limit),
                ("/t/big", MAX_VALUE_BYTES + 1, MAX_VALUE_BYTES)
            );
            let message = StoreError::ValueTooLarge { key, size, limit }.to_string();
            assert!(
                message.contains("limit"),
                "message should name the limit: {message}"
            );
        }
        other => panic!("an oversized value must be refused, got {other:?}"),
    }
    assert!(store.get("/t/big", None).await.unwrap().kv.is_none());
    let one_mib = Bytes::from(vec![b'y'; 1 << 20]);
    store
        .put("/t/big", one_mib.clone(), Condition::Always)
        .await
        .unwrap();
    assert_eq!(
        store.get("/t/big", None).await.unwrap().kv.unwrap().value,
        one_mib
    );
}

pub async fn range_returns_only_the_prefix_in_key_order(store: Arc<dyn Store>) {
    for key in ["/r/b", "/r/a", "/r/c", "/r-x", "/rb/z", "/q/a"] {
        store.put(key, value(key), Condition::Always).await.unwrap();
    }
    let page = store
        .range(RangeRequest {
            prefix: "/r/".into(),
            count: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let keys: Vec<_> = page.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/r/a", "/r/b", "/r/c"]);
    assert_eq!(page.count, Some(3));
    assert!(!page.more);
    assert_eq!(page.kvs[1].value, value("/r/b"));
    assert_eq!(page.revision, store.current_revision().await.unwrap());
}

pub async fn range_pages_with_limit_and_from_key(store: Arc<dyn Store>) {
    for i in 0..25 {
        store
            .put(
                &format!("/p/{i:03}"),
                value(format!("{i}")),
                Condition::Always,
            )
            .await
            .unwrap();
    }
    let first = store
        .range(RangeRequest {
            prefix: "/p/".into(),
            limit: 10,
            count: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first.kvs.len(), 10);
    assert!(first.more);
    assert_eq!(first.count, Some(25));
    let second = store
        .range(RangeRequest {
            prefix: "/p/".into(),
            from_key: Some(format!("{}\0", first.kvs[9].key)),
            limit: 10,
            count: true,
            revision: Some(first.revision),
        })
        .await
        .unwrap();
    assert_eq!(second.kvs[0].key, "/p/010");
    assert_eq!(second.count, Some(15), "count runs from the start key");
    let all = read_all(&*store, "/p/", 10, None).await;
    let keys: Vec<_> = all.iter().map(|kv| kv.key.clone()).collect();
    let expected: Vec<_> = (0..25).map(|i| format!("/p/{i:03}")).collect();
    assert_eq!(keys, expected);
}

/// Pages read at the first page's revision add up to exactly the state at that revision,
/// however the keys change meanwhile.
pub async fn paging_at_a_revision_neither_skips_nor_repeats_during_writes(store: Arc<dyn Store>) {
    let mut expected = BTreeMap::new();
    for i in 0..300 {
        let key = format!("/pg/{i:04}");
        store
            .put(&key, value(format!("orig-{i}")), Condition::Always)
            .await
            .unwrap();
        expected.insert(key, value(format!("orig-{i}")));
    }
    let snapshot_revision = store.current_revision().await.unwrap();
    let writer_store = store.clone();
    let writer = tokio::spawn(async move {
        for round in 0..400 {
            let i = (round * 37) % 300;
            let key = format!("/pg/{i:04}");
            match round % 4 {
                0 => {
                    let _ = writer_store.delete(&key, Condition::Always).await;
                }
                1 => {
                    writer_store
                        .put(&format!("/pg/{i:04}-new"), value("new"), Condition::Always)
                        .await
                        .unwrap();
                }
                _ => {
                    writer_store
                        .put(&key, value(format!("changed-{round}")), Condition::Always)
                        .await
                        .unwrap();
                }
            }
            tokio::task::yield_now().await;
        }
    });
    let mut seen = Vec::new();
    let mut scan = Scan::new(&*store, "/pg/")
        .at(Some(snapshot_revision))
        .page_size(7);
    while let Some(page) = scan.next_page().await.unwrap() {
        assert_eq!(scan.revision(), Some(snapshot_revision));
        seen.extend(page.iter().map(|kv| (kv.key.clone(), kv.value.clone())));
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    let unique: BTreeSet<_> = seen.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(unique.len(), seen.len(), "a key was returned twice");
    let seen: BTreeMap<_, _> = seen.into_iter().collect();
    let missing: Vec<_> = expected.keys().filter(|k| !seen.contains_key(*k)).collect();
    let extra: Vec<_> = seen.keys().filter(|k| !expected.contains_key(*k)).collect();
    let changed: Vec<_> = expected
        .iter()
        .filter(|(k, v)| seen.get(*k).is_some_and(|s| s != *v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && changed.is_empty(),
        "the pages do not add up to the snapshot: missing {missing:?}, extra {extra:?}, changed {changed:?}"
    );
}

pub async fn reads_at_past_revisions_see_past_state(store: Arc<dyn Store>) {
    let v1 = store
        .put("/h/x", value("v1"), Condition::Always)
        .await
        .unwrap();
    store
        .put("/h/y", value("y1"), Condition::Always)
        .await
        .unwrap();
    let v2 = store
        .put("/h/x", value("v2"), Condition::Always)
        .await
        .unwrap();
    let deleted = store.delete("/h/x", Condition::Always).await.unwrap();

    let at = |r| {
        let store = store.clone();
        async move { store.get("/h/x", Some(r)).await.unwrap() }
    };
    assert_eq!(at(v1.mod_revision).await.kv.unwrap().value, value("v1"));
    assert_eq!(at(v2.mod_revision - 1).await.kv.unwrap().value, value("v1"));
    assert_eq!(at(v2.mod_revision).await.kv.unwrap(), v2);
    assert!(at(deleted.revision).await.kv.is_none());
    assert!(at(v1.mod_revision - 1).await.kv.is_none());

    let past = store
        .range(RangeRequest {
            prefix: "/h/".into(),
            revision: Some(v2.mod_revision),
            count: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let keys: Vec<_> = past
        .kvs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.clone()))
        .collect();
    assert_eq!(keys, [("/h/x", value("v2")), ("/h/y", value("y1"))]);
    assert_eq!(past.count, Some(2));
    assert_eq!(past.revision, v2.mod_revision);

    let future = store.current_revision().await.unwrap() + 1000;
    assert!(matches!(
        store.get("/h/x", Some(future)).await,
        Err(StoreError::FutureRevision { .. })
    ));
}

pub async fn watch_delivers_changes_in_order_with_previous_values(store: Arc<dyn Store>) {
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("/w/", start).await.unwrap();
    let created = store
        .put("/w/a", value("1"), Condition::Always)
        .await
        .unwrap();
    store
        .put("/other/a", value("not watched"), Condition::Always)
        .await
        .unwrap();
    let updated = store
        .put("/w/a", value("2"), Condition::Always)
        .await
        .unwrap();
    let deleted = store.delete("/w/a", Condition::Always).await.unwrap();

    let e1 = next_event(&mut watch).await;
    assert_eq!(
        (e1.kind, &e1.kv, &e1.prev),
        (EventKind::Put, &created, &None)
    );
    let e2 = next_event(&mut watch).await;
    assert_eq!((e2.kind, &e2.kv), (EventKind::Put, &updated));
    assert_eq!(e2.prev.as_ref(), Some(&created));
    let e3 = next_event(&mut watch).await;
    assert_eq!(e3.kind, EventKind::Delete);
    assert_eq!(e3.kv.key, "/w/a");
    assert_eq!(e3.revision(), deleted.revision);
    assert_eq!(e3.prev.as_ref(), Some(&updated));
}

pub async fn watch_resumes_from_a_past_revision(store: Arc<dyn Store>) {
    let mut revisions = Vec::new();
    for i in 0..20 {
        let kv = store
            .put(
                &format!("/wr/{}", i % 3),
                value(format!("{i}")),
                Condition::Always,
            )
            .await
            .unwrap();
        revisions.push(kv.mod_revision);
    }
    // Resume after the 8th write: exactly the remaining 12 changes, then live ones.
    let mut watch = store.watch("/wr/", revisions[7]).await.unwrap();
    for expected in &revisions[8..] {
        let event = next_event(&mut watch).await;
        assert_eq!(event.revision(), *expected);
        assert!(event.prev.is_some(), "an update carries its previous value");
    }
    let live = store
        .put("/wr/live", value("live"), Condition::Always)
        .await
        .unwrap();
    assert_eq!(next_event(&mut watch).await.kv, live);
}

pub async fn watch_replays_long_histories_in_order(store: Arc<dyn Store>) {
    let start = store.current_revision().await.unwrap();
    let mut expected = Vec::new();
    for i in 0..2500 {
        let kv = store
            .put(
                &format!("/long/{}", i % 100),
                value(format!("{i}")),
                Condition::Always,
            )
            .await
            .unwrap();
        expected.push(kv.mod_revision);
    }
    let mut watch = store.watch("/long/", start).await.unwrap();
    for revision in expected {
        assert_eq!(next_event(&mut watch).await.revision(), revision);
    }
}

pub async fn concurrent_writers_get_distinct_revisions(store: Arc<dyn Store>) {
    let start = store.current_revision().await.unwrap();
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..40 {
                let kv = store
                    .put(
                        &format!("/cw/{writer}/{}", i % 5),
                        value(format!("{writer}-{i}")),
                        Condition::Always,
                    )
                    .await
                    .unwrap();
                revisions.push(kv.mod_revision);
            }
            revisions
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: BTreeSet<_> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "two writes share a revision");
    // The watch sees every acknowledged write, in revision order.
    let mut watch = store.watch("/cw/", start).await.unwrap();
    for revision in unique {
        assert_eq!(next_event(&mut watch).await.revision(), revision);
    }
}

pub async fn compaction_discards_history_but_keeps_current_state(store: Arc<dyn Store>) {
    let old = store
        .put("/cp/a", value("old"), Condition::Always)
        .await
        .unwrap();
    store
        .put("/cp/gone", value("x"), Condition::Always)
        .await
        .unwrap();
    store.delete("/cp/gone", Condition::Always).await.unwrap();
    let new = store
        .put("/cp/a", value("new"), Condition::Always)
        .await
        .unwrap();
    let keep = store
        .put("/cp/b", value("b"), Condition::Always)
        .await
        .unwrap();
    store.compact(keep.mod_revision).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), keep.mod_revision);
    // Compacting again at or below is a no-op.
    store.compact(old.mod_revision).await.unwrap();

    assert_eq!(store.get("/cp/a", None).await.unwrap().kv.unwrap(), new);
    assert_eq!(
        store
            .get("/cp/a", Some(keep.mod_revision))
            .await
            .unwrap()
            .kv
            .unwrap(),
        new
    );
    assert!(
        store
            .get("/cp/gone", Some(keep.mod_revision))
            .await
            .unwrap()
            .kv
            .is_none()
    );
    match store.get("/cp/a", Some(old.mod_revision)).await {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!(
                (requested, compacted),
                (old.mod_revision, keep.mod_revision)
            );
        }
        other => panic!("a read below the compacted revision must fail, got {other:?}"),
    }
    assert!(matches!(
        store
            .range(RangeRequest {
                prefix: "/cp/".into(),
                revision: Some(new.mod_revision - 1),
                ..Default::default()
            })
            .await,
        Err(StoreError::Compacted { .. })
    ));
    let all = read_all(&*store, "/cp/", 0, Some(keep.mod_revision)).await;
    assert_eq!(all.len(), 2);
    let future = store.current_revision().await.unwrap() + 100;
    assert!(matches!(
        store.compact(future).await,
        Err(StoreError::FutureRevision { .. })
    ));
}

pub async fn watch_from_a_compacted_revision_fails_distinctly(store: Arc<dyn Store>) {
    let first = store
        .put("/wc/a", value("1"), Condition::Always)
        .await
        .unwrap();
    store
        .put("/wc/a", value("2"), Condition::Always)
        .await
        .unwrap();
    let last = store
        .put("/wc/a", value("3"), Condition::Always)
        .await
        .unwrap();
    store.compact(last.mod_revision).await.unwrap();
    let result = store.watch("/wc/", first.mod_revision).await;
    match result {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!(requested, first.mod_revision);
            assert_eq!(compacted, last.mod_revision);
        }
        Err(other) => panic!("expected Compacted, got {other:?}"),
        Ok(_) => panic!("a watch from a compacted revision must fail"),
    }
    // From the compacted revision itself the watch works.
    let mut watch = store.watch("/wc/", last.mod_revision).await.unwrap();
    let next = store
        .put("/wc/a", value("4"), Condition::Always)
        .await
        .unwrap();
    assert_eq!(next_event(&mut watch).await.kv, next);
}

pub async fn retention_compacts_only_history_older_than_the_policy(store: Arc<dyn Store>) {
    let hour = Duration::from_secs(3600);
    let retention = Retention::new(
        store.clone(),
        RetentionPolicy {
            keep: hour,
            interval: hour,
            short: &[],
        },
    );
    let t0 = SystemTime::now();
    let early = store
        .put("/ret/a", value("early"), Condition::Always)
        .await
        .unwrap();
    let mid = store
        .put("/ret/b", value("mid"), Condition::Always)
        .await
        .unwrap();
    assert_eq!(
        retention.tick(t0).await.unwrap(),
        None,
        "nothing is old enough yet"
    );
    let later = store
        .put("/ret/a", value("later"), Condition::Always)
        .await
        .unwrap();
    assert_eq!(retention.tick(t0 + hour / 2).await.unwrap(), None);

    // An open watch that has not moved past `early` holds compaction back.
    let watch = store.watch("/ret/", early.mod_revision).await.unwrap();
    let held = retention
        .tick(t0 + hour + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(held, Some(early.mod_revision));
    drop(watch);

    // Without it, everything recorded at t0 may go, and nothing recorded at t0 + 30 min.
    let moved = retention
        .tick(t0 + hour + Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(moved, Some(mid.mod_revision));
    assert!(matches!(
        store.get("/ret/a", Some(early.mod_revision)).await,
        Err(StoreError::Compacted { .. })
    ));
    assert_eq!(
        store
            .get("/ret/a", Some(later.mod_revision))
            .await
            .unwrap()
            .kv
            .unwrap()
            .value,
        value("later")
    );
}

pub async fn get_many_reads_every_key_at_one_revision(store: Arc<dyn Store>) {
    let empty = store.get_many(&[], None).await.unwrap();
    assert!(empty.kvs.is_empty());
    assert_eq!(empty.revision, store.current_revision().await.unwrap());

    // More keys than one etcd transaction holds, so the chunks must agree on the revision.
    let keys: Vec<String> = (0..300).map(|i| format!("/gm/{i:03}")).collect();
    for key in &keys {
        store
            .put(key, value("old"), Condition::Always)
            .await
            .unwrap();
    }
    let before = store.current_revision().await.unwrap();
    for key in keys.iter().step_by(3) {
        store
            .put(key, value("new"), Condition::Always)
            .await
            .unwrap();
    }
    store.delete(&keys[1], Condition::Always).await.unwrap();
    let now = store.get_many(&keys, None).await.unwrap();
    assert_eq!(now.revision, store.current_revision().await.unwrap());
    assert_eq!(now.kvs.len(), keys.len());
    for (i, (key, kv)) in keys.iter().zip(&now.kvs).enumerate() {
        let single = store.get(key, Some(now.revision)).await.unwrap().kv;
        assert_eq!(kv, &single, "{key}");
        match (i, kv) {
            (1, None) => {}
            (i, Some(kv)) if i % 3 == 0 => assert_eq!(kv.value, value("new")),
            (_, Some(kv)) => assert_eq!(kv.value, value("old")),
            (i, None) => panic!("key {i} is missing"),
        }
    }
    let past = store.get_many(&keys, Some(before)).await.unwrap();
    assert_eq!(past.revision, before);
    assert!(
        past.kvs
            .iter()
            .all(|kv| kv.as_ref().is_some_and(|kv| kv.value == value("old")))
    );

    // Order as asked, repeats and missing keys included.
    let asked = vec![
        keys[3].clone(),
        "/gm/missing".to_owned(),
        keys[1].clone(),
        keys[3].clone(),
    ];
    let mixed = store.get_many(&asked, Some(now.revision)).await.unwrap();
    let found: Vec<Option<&str>> = mixed
        .kvs
        .iter()
        .map(|kv| kv.as_ref().map(|kv| kv.key.as_str()))
        .collect();
    assert_eq!(
        found,
        [Some(keys[3].as_str()), None, None, Some(keys[3].as_str())]
    );

    let too_many: Vec<String> = (0..=fleetdb_store::MAX_GET_MANY_KEYS)
        .map(|i| format!("/gm/{i}"))
        .collect();
    assert!(matches!(
        store.get_many(&too_many, None).await,
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        store.get_many(&["".to_owned()], None).await,
        Err(StoreError::InvalidKey { .. })
    ));
    assert!(matches!(
        store.get_many(&keys[..2], Some(now.revision + 1000)).await,
        Err(StoreError::FutureRevision { .. })
    ));
    store.compact(now.revision).await.unwrap();
    assert!(matches!(
        store.get_many(&keys[..2], Some(before)).await,
        Err(StoreError::Compacted { .. })
    ));
}

/// Checks a `changed_keys` answer against the contract's bounds.
fn assert_changed(answer: Option<Vec<String>>, required: &[&str], allowed: &[&str]) {
    let keys = answer.expect("the backend answers this case");
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(keys, sorted, "in key order, each once");
    for key in required {
        assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
    }
    for key in &keys {
        assert!(allowed.contains(&key.as_str()), "{key} did not change");
    }
}

pub async fn changed_keys_names_the_keys_changed_between_two_revisions(store: Arc<dyn Store>) {
    let start = store.current_revision().await.unwrap();
    for key in ["/ck/a", "/ck/b", "/ck/c", "/other/x"] {
        store.put(key, value("1"), Condition::Always).await.unwrap();
    }
    let middle = store.current_revision().await.unwrap();
    store
        .put("/ck/a", value("2"), Condition::Always)
        .await
        .unwrap();
    store.delete("/ck/b", Condition::Always).await.unwrap();
    store
        .put("/ck/d", value("1"), Condition::Always)
        .await
        .unwrap();
    store
        .put("/ck/e", value("1"), Condition::Always)
        .await
        .unwrap();
    store.delete("/ck/e", Condition::Always).await.unwrap();
    store
        .put("/other/x", value("2"), Condition::Always)
        .await
        .unwrap();
    let end = store.current_revision().await.unwrap();

    let changed = |after, until, with_deleted, limit| {
        let store = store.clone();
        async move {
            store
                .changed_keys("/ck/", after, until, with_deleted, limit)
                .await
                .unwrap()
        }
    };
    // Keys written since `middle` that exist at `end`: a and d. b and e were deleted.
    assert_changed(
        changed(middle, end, false, 100).await,
        &["/ck/a", "/ck/d"],
        &["/ck/a", "/ck/b", "/ck/d", "/ck/e"],
    );
    if let Some(keys) = changed(middle, end, true, 100).await {
        assert_changed(
            Some(keys),
            &["/ck/a", "/ck/b", "/ck/d", "/ck/e"],
            &["/ck/a", "/ck/b", "/ck/d", "/ck/e"],
        );
    }
    assert_changed(
        changed(start, end, false, 100).await,
        &["/ck/a", "/ck/c", "/ck/d"],
        &["/ck/a", "/ck/b", "/ck/c", "/ck/d", "/ck/e"],
    );
    assert_changed(
        changed(start, middle, false, 100).await,
        &["/ck/a", "/ck/b", "/ck/c"],
        &["/ck/a", "/ck/b", "/ck/c"],
    );
    assert_eq!(changed(end, end, false, 100).await, Some(Vec::new()));
    assert_eq!(changed(start, end, false, 1).await, None, "over the limit");
    assert!(matches!(
        store.changed_keys("/ck/", end, middle, false, 100).await,
        Err(StoreError::InvalidArgument(_))
    ));
}

fn millis_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// History: every change of a key with its revision, time, state and note, newest first;
/// deletions included, other keys not; recreation continues the same history.
pub async fn history_keeps_every_change_with_its_time_and_note(store: Arc<dyn Store>) {
    let before = millis_now();
    let key = "/h/widget";
    let created = store
        .put_noted(key, value("v1"), Condition::Absent, value("alice create"))
        .await
        .unwrap();
    store
        .put_noted(
            "/h/other",
            value("x"),
            Condition::Absent,
            value("bob create"),
        )
        .await
        .unwrap();
    let updated = store
        .put_noted(
            key,
            value("v2"),
            Condition::ModRevision(created.mod_revision),
            value("bob patch"),
        )
        .await
        .unwrap();
    let deleted = store
        .delete_noted(
            key,
            Condition::ModRevision(updated.mod_revision),
            value("carol delete"),
        )
        .await
        .unwrap();
    let recreated = store
        .put_noted(key, value("v3"), Condition::Absent, value("dave create"))
        .await
        .unwrap();
    let after = millis_now();

    let history = store.history(key, None, 0).await.unwrap();
    let summary: Vec<(Revision, Option<Bytes>, Bytes)> = history
        .iter()
        .map(|v| {
            (
                v.revision,
                v.kv.as_ref().map(|kv| kv.value.clone()),
                v.note.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                recreated.mod_revision,
                Some(value("v3")),
                value("dave create")
            ),
            (deleted.revision, None, value("carol delete")),
            (updated.mod_revision, Some(value("v2")), value("bob patch")),
            (
                created.mod_revision,
                Some(value("v1")),
                value("alice create")
            ),
        ]
    );
    let times: Vec<i64> = history.iter().map(|v| v.time_millis).collect();
    assert!(
        times.iter().all(|t| (before..=after).contains(t)),
        "times {times:?} outside [{before}, {after}]"
    );
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "times go back: {times:?}"
    );
    assert_eq!(
        history[0].kv.as_ref().unwrap().version,
        1,
        "a new incarnation"
    );
    assert_eq!(history[2].kv.as_ref().unwrap().version, 2);

    let newest_two = store.history(key, None, 2).await.unwrap();
    assert_eq!(newest_two, history[..2].to_vec());
    // Paging back: the versions before the oldest of a page, two at a time, give the whole.
    let mut paged = newest_two.clone();
    loop {
        let before = paged.last().unwrap().revision;
        let page = store.history(key, Some(before), 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        paged.extend(page);
    }
    assert_eq!(paged, history);
    assert!(store.history(key, Some(1), 0).await.unwrap().is_empty());
    assert!(store.history("/h/never", None, 0).await.unwrap().is_empty());
    // A plain write has an empty note; oversized notes are refused and change nothing.
    let plain = store
        .put("/h/plain", value("p"), Condition::Absent)
        .await
        .unwrap();
    let plain_history = store.history("/h/plain", None, 0).await.unwrap();
    assert_eq!(plain_history.len(), 1);
    assert_eq!(plain_history[0].revision, plain.mod_revision);
    assert!(plain_history[0].note.is_empty());
    let huge = Bytes::from(vec![b'n'; fleetdb_store::MAX_NOTE_BYTES + 1]);
    let refused = store
        .put_noted("/h/plain", value("q"), Condition::Always, huge)
        .await;
    assert!(
        matches!(refused, Err(StoreError::InvalidArgument(_))),
        "{refused:?}"
    );
    assert_eq!(store.history("/h/plain", None, 0).await.unwrap().len(), 1);

    // Compaction keeps the changes from the compacted revision on.
    store.compact(updated.mod_revision).await.unwrap();
    let kept = store.history(key, None, 0).await.unwrap();
    assert_eq!(kept, history[..3].to_vec());
}

/// `revision_at`: an instant maps to the newest revision committed at or before it.
pub async fn revision_at_maps_instants_to_revisions(store: Arc<dyn Store>) {
    let pause = Duration::from_millis(30);
    let t0 = millis_now();
    tokio::time::sleep(pause).await;
    let first = store
        .put_noted("/t/a", value("1"), Condition::Absent, value("n"))
        .await
        .unwrap();
    tokio::time::sleep(pause).await;
    let t1 = millis_now();
    tokio::time::sleep(pause).await;
    let second = store
        .put_noted("/t/b", value("2"), Condition::Absent, value("n"))
        .await
        .unwrap();
    let third = store
        .put_noted("/t/a", value("3"), Condition::Always, value("n"))
        .await
        .unwrap();
    tokio::time::sleep(pause).await;
    let t2 = millis_now();

    assert!(store.revision_at(t0).await.unwrap() < first.mod_revision);
    assert_eq!(store.revision_at(t1).await.unwrap(), first.mod_revision);
    assert_eq!(store.revision_at(t2).await.unwrap(), third.mod_revision);
    assert!(second.mod_revision < third.mod_revision);
    // Reads at the revision show the state at the instant.
    let at_t1 = store
        .get("/t/a", Some(store.revision_at(t1).await.unwrap()))
        .await
        .unwrap();
    assert_eq!(at_t1.kv.unwrap().value, value("1"));
    let b_at_t1 = store
        .get("/t/b", Some(store.revision_at(t1).await.unwrap()))
        .await
        .unwrap();
    assert!(b_at_t1.kv.is_none());
}

/// A read of the current state is the state at the revision it reports, while writers put
/// and delete the same keys (the embedded store answers current reads of a key with one
/// statement, and reads at a revision through a snapshot and the tail).
pub async fn current_reads_are_the_state_at_their_revision(store: Arc<dyn Store>) {
    const KEYS: usize = 3;
    const WRITES: usize = 300;
    let mut writers = Vec::new();
    for writer in 0..2 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..WRITES {
                let key = format!("/cur/{}", (i + writer) % KEYS);
                if i % 5 == 4 {
                    match store.delete(&key, Condition::Always).await {
                        Ok(_) | Err(StoreError::PreconditionFailed { current: None, .. }) => {}
                        Err(e) => panic!("delete {key}: {e}"),
                    }
                } else {
                    store
                        .put(&key, value(format!("{writer}-{i}")), Condition::Always)
                        .await
                        .unwrap();
                }
            }
        }));
    }
    let mut reads = 0;
    while writers.iter().any(|w| !w.is_finished()) || reads < 100 {
        let key = format!("/cur/{}", reads % KEYS);
        let current = store.get(&key, None).await.unwrap();
        let then = store.get(&key, Some(current.revision)).await.unwrap();
        assert_eq!(
            current.kv, then.kv,
            "{key} read now and at revision {}",
            current.revision
        );
        if let Some(kv) = &current.kv {
            assert!(kv.mod_revision <= current.revision);
        }
        reads += 1;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(reads >= 100, "{reads} reads");
    assert!(
        store.get("/cur/never", None).await.unwrap().kv.is_none(),
        "an absent key reads as absent"
    );
}
