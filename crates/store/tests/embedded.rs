//! Behaviour specific to the embedded backend: durability across reopen, group commit under
//! concurrency, the single-process lock, and cutting off watchers that fall behind.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fleetdb_store::embedded::{EmbeddedStore, WATCH_RING_CAPACITY};
use fleetdb_store::{Condition, RangeRequest, Store, StoreError};
use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_data_revisions_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let first = store
        .put_noted(
            "/k/a",
            Bytes::from("1"),
            Condition::Absent,
            Bytes::from("one"),
        )
        .await
        .unwrap();
    let second = store
        .put_noted(
            "/k/a",
            Bytes::from("2"),
            Condition::Always,
            Bytes::from("two"),
        )
        .await
        .unwrap();
    let history = store.history("/k/a", None, 0).await.unwrap();
    store
        .put("/k/b", Bytes::from("b"), Condition::Always)
        .await
        .unwrap();
    let deleted = store.delete("/k/b", Condition::Always).await.unwrap();
    store.close().await;

    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), deleted.revision);
    assert_eq!(
        store.history("/k/a", None, 0).await.unwrap(),
        history,
        "times and notes survive a restart"
    );
    assert_eq!(history[1].note, Bytes::from("one"));
    assert_eq!(store.get("/k/a", None).await.unwrap().kv.unwrap(), second);
    assert_eq!(
        store
            .get("/k/a", Some(first.mod_revision))
            .await
            .unwrap()
            .kv
            .unwrap(),
        first
    );
    let next = store
        .put("/k/c", Bytes::from("c"), Condition::Always)
        .await
        .unwrap();
    assert_eq!(
        next.mod_revision,
        deleted.revision + 1,
        "the counter resumes without a gap"
    );
    let mut watch = store.watch("/k/", 0).await.unwrap();
    let mut revisions = Vec::new();
    for _ in 0..5 {
        revisions.push(watch.next().await.unwrap().unwrap().revision());
    }
    assert_eq!(revisions, (1..=5).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = EmbeddedStore::open(dir.path()).unwrap();
    match EmbeddedStore::open(dir.path()) {
        Err(StoreError::Backend(message)) => assert!(message.contains("in use"), "{message}"),
        Err(other) => panic!("unexpected error {other:?}"),
        Ok(_) => panic!("two stores must not share a directory"),
    }
}

/// Many concurrent writers: every write gets its own revision and revisions are dense.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_assigns_dense_revisions_to_concurrent_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let mut tasks = Vec::new();
    for writer in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..50 {
                let key = format!("/g/{writer}/{}", i % 4);
                revisions.push(
                    store
                        .put(&key, Bytes::from(vec![b'v'; 2048]), Condition::Always)
                        .await
                        .unwrap()
                        .mod_revision,
                );
            }
            revisions
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=64 * 50).collect::<Vec<_>>());
    let page = store
        .range(RangeRequest {
            prefix: "/g/".into(),
            count: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.count, Some(64 * 4));
}

/// A live watcher that stops reading is cut off once the event ring laps it; the writers
/// never wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_is_cut_off_without_stalling_writers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let mut watch = store.watch("/s/", 0).await.unwrap();
    store
        .put("/s/first", Bytes::from("1"), Condition::Always)
        .await
        .unwrap();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.kv.key, "/s/first");

    // The watcher now reads nothing while writers go far past the ring's capacity.
    let writes = WATCH_RING_CAPACITY + 2000;
    let mut tasks = Vec::new();
    for writer in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (writer..writes).step_by(32) {
                store
                    .put(
                        &format!("/s/{}", i % 500),
                        Bytes::from("x"),
                        Condition::Always,
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    let all_writes = async {
        for task in tasks {
            task.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(120), all_writes)
        .await
        .expect("writers stalled behind a watcher that does not read");

    let mut delivered = 0;
    loop {
        match watch.next().await {
            Some(Ok(_)) => delivered += 1,
            Some(Err(StoreError::WatcherTooSlow { last_revision })) => {
                assert!(last_revision >= first.revision());
                break;
            }
            Some(Err(other)) => panic!("unexpected watch error {other:?}"),
            None => panic!("the watch ended without saying it was cut off"),
        }
        assert!(delivered <= writes, "the watcher was never cut off");
    }
    assert!(watch.next().await.is_none(), "a cut-off watch ends");
    // A new watch from the last revision the old one saw catches up from disk.
    let resumed = store.watch("/s/", first.revision()).await.unwrap();
    let count = resumed.take(writes).count().await;
    assert_eq!(count, writes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_keys_reads_the_tail_and_the_log_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let start = store.current_revision().await.unwrap();
    for i in 0..20 {
        store
            .put(&format!("/c/{i:02}"), Bytes::from("1"), Condition::Always)
            .await
            .unwrap();
    }
    store
        .put("/other/x", Bytes::from("1"), Condition::Always)
        .await
        .unwrap();
    // Let the applier move these into SQLite, then leave the next writes in the tail.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let middle = store.current_revision().await.unwrap();
    store.delete("/c/03", Condition::Always).await.unwrap();
    store
        .put("/c/07", Bytes::from("2"), Condition::Always)
        .await
        .unwrap();
    store
        .put("/c/new", Bytes::from("1"), Condition::Always)
        .await
        .unwrap();
    let end = store.current_revision().await.unwrap();

    let all: Vec<String> = (0..20).map(|i| format!("/c/{i:02}")).collect();
    let with_new: Vec<String> = all.iter().cloned().chain(["/c/new".to_owned()]).collect();
    for with_deleted in [false, true] {
        assert_eq!(
            store
                .changed_keys("/c/", middle, end, with_deleted, 100)
                .await
                .unwrap(),
            Some(vec!["/c/03".into(), "/c/07".into(), "/c/new".into()]),
            "deleted keys are included"
        );
        assert_eq!(
            store
                .changed_keys("/c/", start, end, with_deleted, 100)
                .await
                .unwrap(),
            Some(with_new.clone())
        );
    }
    assert_eq!(
        store
            .changed_keys("/c/", start, middle, true, 100)
            .await
            .unwrap(),
        Some(all)
    );
    assert_eq!(
        store
            .changed_keys("/c/", start, end, true, 20)
            .await
            .unwrap(),
        None,
        "21 keys are over a limit of 20"
    );
    assert!(matches!(
        store.changed_keys("/c/", start, end + 1, true, 100).await,
        Err(StoreError::FutureRevision { .. })
    ));
    assert_eq!(
        store
            .changed_keys(
                "/c/",
                0,
                fleetdb_store::embedded::MAX_CHANGED_KEYS_SCAN + 1,
                true,
                100
            )
            .await
            .unwrap(),
        None,
        "too long a stretch of history"
    );
    store.compact(middle).await.unwrap();
    assert_eq!(
        store
            .changed_keys("/c/", start, end, true, 100)
            .await
            .unwrap(),
        None,
        "compacted history"
    );
    assert!(
        store
            .changed_keys("/c/", middle, end, true, 100)
            .await
            .unwrap()
            .is_some()
    );
}

/// A store written by a fleetdb whose schema had no time and no note per change opens, keeps
/// its history (times unknown, no notes) and records both for new changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_store_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let old = store
        .put("/k/a", Bytes::from("1"), Condition::Absent)
        .await
        .unwrap();
    store.close().await;
    {
        // Make it look like version 1: applied to SQLite (close drains the tail), the two
        // columns gone, the schema version back to 1.
        let conn = rusqlite::Connection::open(dir.path().join("store.sqlite3")).unwrap();
        conn.execute_batch(
            "ALTER TABLE log DROP COLUMN time;
             ALTER TABLE log DROP COLUMN note;
             UPDATE meta SET value = 1 WHERE name = 'schema';",
        )
        .unwrap();
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let new = store
        .put_noted(
            "/k/a",
            Bytes::from("2"),
            Condition::Always,
            Bytes::from("n"),
        )
        .await
        .unwrap();
    let history = store.history("/k/a", None, 0).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        (history[0].revision, history[0].note.clone()),
        (new.mod_revision, Bytes::from("n"))
    );
    assert!(history[0].time_millis > 0);
    assert_eq!(
        (history[1].revision, history[1].time_millis),
        (old.mod_revision, 0)
    );
    assert!(history[1].note.is_empty());
}

/// Heartbeat keys forget their superseded history; other keys keep theirs, and a restart
/// changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_forgets_its_superseded_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    for round in 0..5 {
        for key in ["/lease/a", "/keep/b"] {
            store
                .put_noted(
                    key,
                    Bytes::from(format!("{round}")),
                    Condition::Always,
                    Bytes::from("n"),
                )
                .await
                .unwrap();
        }
    }
    store
        .put("/lease/c", Bytes::from("c"), Condition::Absent)
        .await
        .unwrap();
    store.delete("/lease/c", Condition::Always).await.unwrap();
    let kept = store.current_revision().await.unwrap();
    let late = store
        .put("/lease/a", Bytes::from("late"), Condition::Always)
        .await
        .unwrap();
    assert!(store.compact_prefix("/lease/", kept).await.unwrap());

    let lease = store.history("/lease/a", None, 0).await.unwrap();
    let revisions: Vec<i64> = lease.iter().map(|v| v.revision).collect();
    assert_eq!(
        revisions.len(),
        2,
        "the newest at the target and what came after: {lease:?}"
    );
    assert_eq!(revisions[0], late.mod_revision);
    assert_eq!(lease[1].kv.as_ref().unwrap().value, Bytes::from("4"));
    assert!(store.history("/lease/c", None, 0).await.unwrap().is_empty());
    assert_eq!(store.history("/keep/b", None, 0).await.unwrap().len(), 5);
    assert_eq!(store.get("/lease/a", None).await.unwrap().kv.unwrap(), late);
    store.close().await;

    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.history("/lease/a", None, 0).await.unwrap().len(), 2);
    assert_eq!(store.history("/keep/b", None, 0).await.unwrap().len(), 5);
}

/// Retention cuts a short history at the clock entry older than its period, and leaves the
/// rest of the history alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_short_histories_short() {
    use fleetdb_store::retention::{Retention, RetentionPolicy, ShortHistory};
    use std::time::SystemTime;
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn Store> =
        std::sync::Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let minute = Duration::from_secs(60);
    const LEASES: &[ShortHistory] = &[ShortHistory {
        prefix: "/lease/",
        keep: Duration::from_secs(5 * 60),
    }];
    let retention = Retention::new(
        store.clone(),
        RetentionPolicy {
            keep: 60 * minute,
            interval: minute,
            short: LEASES,
        },
    );
    let t0 = SystemTime::now();
    for round in 0..3 {
        store
            .put(
                "/lease/a",
                Bytes::from(format!("{round}")),
                Condition::Always,
            )
            .await
            .unwrap();
        store
            .put(
                "/host/a",
                Bytes::from(format!("{round}")),
                Condition::Always,
            )
            .await
            .unwrap();
    }
    retention.tick(t0).await.unwrap();
    store
        .put("/lease/a", Bytes::from("3"), Condition::Always)
        .await
        .unwrap();
    // Four minutes on: nothing is old enough.
    retention.tick(t0 + 4 * minute).await.unwrap();
    assert_eq!(store.history("/lease/a", None, 0).await.unwrap().len(), 4);
    // Six minutes on: the lease keeps its newest version at the first clock entry and later.
    retention.tick(t0 + 6 * minute).await.unwrap();
    assert_eq!(store.history("/lease/a", None, 0).await.unwrap().len(), 2);
    assert_eq!(store.history("/host/a", None, 0).await.unwrap().len(), 3);
}

/// `changes` lists every change in order with its note (from 0: the state history starts
/// from, then what followed), and `import` replays them into another store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_replay_into_another_store() {
    let source_dir = tempfile::tempdir().unwrap();
    let target_dir = tempfile::tempdir().unwrap();
    let source = EmbeddedStore::open(source_dir.path()).unwrap();
    let target = EmbeddedStore::open(target_dir.path()).unwrap();
    let note = |text: &str| Bytes::from(text.to_owned());
    let first = source
        .put_noted(
            "/k/a",
            Bytes::from("1"),
            Condition::Absent,
            note("alice create"),
        )
        .await
        .unwrap();
    source
        .put_noted(
            "/k/b",
            Bytes::from("b"),
            Condition::Absent,
            note("bob create"),
        )
        .await
        .unwrap();
    source
        .put_noted(
            "/k/a",
            Bytes::from("2"),
            Condition::Always,
            note("bob patch"),
        )
        .await
        .unwrap();
    source
        .delete_noted("/k/b", Condition::Always, note("carol delete"))
        .await
        .unwrap();
    // Compacted below the second write of /k/a: /k/a's first version is gone.
    source.compact(first.mod_revision + 2).await.unwrap();
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let page = source.changes(after, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.version.revision;
        for change in &page {
            seen.push((change.key.clone(), change.version.note.clone()));
            target.import(change).await.unwrap();
        }
    }
    assert_eq!(
        seen,
        [
            ("/k/b".to_owned(), note("bob create")),
            ("/k/a".to_owned(), note("bob patch")),
            ("/k/b".to_owned(), note("carol delete")),
        ]
    );
    assert_eq!(
        target.get("/k/a", None).await.unwrap().kv.unwrap().value,
        Bytes::from("2")
    );
    assert!(target.get("/k/b", None).await.unwrap().kv.is_none());
    let history = target.history("/k/b", None, 0).await.unwrap();
    let notes: Vec<Bytes> = history.iter().map(|v| v.note.clone()).collect();
    assert_eq!(notes, [note("carol delete"), note("bob create")]);
}
