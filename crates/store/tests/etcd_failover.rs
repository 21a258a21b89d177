//! The etcd backend on a 3-member cluster whose members are killed under load: the leader,
//! then a follower, then two at once. Writers and a watcher see no error while a quorum
//! serves, no acknowledged write is lost, the watcher sees every write; a store connects with
//! a member down, and while the members elect a new leader; with quorum lost writes fail as unavailable and recover without a new
//! connection once members are back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fleetdb_store::etcd::{EtcdOptions, EtcdStore};
use fleetdb_store::{Condition, Store, StoreError};
use fleetdb_testkit::EtcdCluster;
use futures::StreamExt;

const WRITERS: usize = 4;

async fn connect(cluster: &EtcdCluster) -> Arc<dyn Store> {
    Arc::new(
        EtcdStore::connect(EtcdOptions::new(cluster.client_urls()))
            .await
            .expect("connect to the cluster"),
    )
}

/// Each writer updates its own key with compare-and-swap writes until told to stop; returns
/// the last value acknowledged and the errors seen.
async fn writer(
    store: Arc<dyn Store>,
    id: usize,
    stop: Arc<AtomicBool>,
) -> (Option<Bytes>, Vec<String>, usize) {
    let key = format!("/registry/load/w{id}");
    let mut last: Option<fleetdb_store::KeyValue> = None;
    let mut errors = Vec::new();
    let mut n = 0u64;
    let mut acknowledged = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let value = Bytes::from(format!("{id}-{n}"));
        let condition = match &last {
            None => Condition::Absent,
            Some(kv) => Condition::ModRevision(kv.mod_revision),
        };
        match store
            .put_noted(&key, value, condition, Bytes::from("load"))
            .await
        {
            Ok(kv) => {
                last = Some(kv);
                acknowledged += 1;
            }
            Err(StoreError::PreconditionFailed { current, .. }) => {
                // Only after a write whose outcome was unknown and that landed twice: go on
                // from what is there.
                last = current.map(|c| *c);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    (last.map(|kv| kv.value), errors, acknowledged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_die_and_clients_do_not_notice() {
    let mut cluster = EtcdCluster::start(3);
    let store = connect(&cluster).await;
    let stop = Arc::new(AtomicBool::new(false));

    // A watcher that starts again from where it was when its stream ends with an error.
    let watched = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen: BTreeMap<String, Bytes> = BTreeMap::new();
            let mut after = store.current_revision().await.unwrap();
            let mut restarts = 0;
            'outer: while !stop.load(Ordering::Relaxed) {
                let Ok(mut events) = store.watch("/registry/load/", after).await else {
                    restarts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                loop {
                    match tokio::time::timeout(Duration::from_millis(500), events.next()).await {
                        Ok(Some(Ok(event))) => {
                            after = event.revision();
                            seen.insert(event.kv.key.clone(), event.kv.value.clone());
                        }
                        Ok(Some(Err(_)) | None) => {
                            restarts += 1;
                            continue 'outer;
                        }
                        Err(_) if stop.load(Ordering::Relaxed) => break 'outer,
                        Err(_) => {}
                    }
                }
            }
            // Drain what was written up to the end.
            let end = store.current_revision().await.unwrap();
            let mut events = store.watch("/registry/load/", after).await.unwrap();
            while after < end {
                let event = events.next().await.unwrap().unwrap();
                after = event.revision();
                seen.insert(event.kv.key.clone(), event.kv.value.clone());
            }
            (seen, restarts)
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| tokio::spawn(writer(store.clone(), id, stop.clone())))
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    let leader = tokio::task::block_in_place(|| cluster.wait_for_leader(Duration::from_secs(30)));
    cluster.kill(leader);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.restart(leader);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A follower of the leader there is now (not the one that may be mid-election).
    let leader = tokio::task::block_in_place(|| cluster.wait_for_leader(Duration::from_secs(30)));
    let follower = (0..3).find(|i| *i != leader).unwrap();
    cluster.kill(follower);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.restart(follower);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);

    let mut acknowledged = BTreeMap::new();
    for (id, writer) in writers.into_iter().enumerate() {
        let (last, errors, count) = writer.await.unwrap();
        assert!(
            errors.is_empty(),
            "writer {id} saw errors while a quorum served: {errors:?}"
        );
        assert!(count > 50, "writer {id} wrote only {count} times in 9 s");
        acknowledged.insert(
            format!("/registry/load/w{id}"),
            last.expect("some write acknowledged"),
        );
    }
    for (key, value) in &acknowledged {
        assert_eq!(
            &store.get(key, None).await.unwrap().kv.unwrap().value,
            value,
            "{key}"
        );
    }
    let (seen, restarts) = watched.await.unwrap();
    assert_eq!(
        seen, acknowledged,
        "the watcher ({restarts} restarts) saw every last write"
    );

    // Quorum lost: writes fail as unavailable (and take no longer than the failover window).
    let (a, b) = (0, 1);
    cluster.kill(a);
    cluster.kill(b);
    let started = Instant::now();
    let refused = store
        .put("/registry/load/lost", Bytes::from("x"), Condition::Always)
        .await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "{refused:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    // Once found down, the members are not waited for again: each request tries every
    // member once and fails at once.
    for i in 0..5 {
        let started = Instant::now();
        let read = store.get("/registry/load/w0", None).await;
        assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
        let write = store
            .put(
                &format!("/registry/load/lost{i}"),
                Bytes::from("x"),
                Condition::Always,
            )
            .await;
        assert!(
            matches!(write, Err(StoreError::Unavailable(_))),
            "{write:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a read and a write took {:?} with the members known down",
            started.elapsed()
        );
    }
    // Members back: the same store serves again.
    cluster.restart(a);
    cluster.restart(b);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store
            .put("/registry/load/back", Bytes::from("y"), Condition::Always)
            .await
        {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "still failing: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_connects_while_the_cluster_elects_a_new_leader() {
    // `fleetdb serve --store etcd` started just as its cluster's leader dies: connecting
    // waits for the election rather than failing the start.
    let mut cluster = EtcdCluster::start(3);
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        if let Some(leader) = cluster.leader() {
            break leader;
        }
        assert!(Instant::now() < deadline, "a new cluster elects a leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    cluster.kill(leader);
    let store = connect(&cluster).await;
    store
        .put("/registry/x/after", Bytes::from("v"), Condition::Absent)
        .await
        .expect("a write once connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_connects_with_a_member_down() {
    let mut cluster = EtcdCluster::start(3);
    // The first endpoint is down. If it led, the others elect a new leader first: connecting
    // in the middle of that election is another case (its first read may wait out the
    // failover window), not this one.
    cluster.kill(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.leader().is_none() {
        assert!(
            Instant::now() < deadline,
            "the two members left elect a leader"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let store = connect(&cluster).await;
    for i in 0..20 {
        store
            .put(
                &format!("/registry/x/{i}"),
                Bytes::from("v"),
                Condition::Absent,
            )
            .await
            .expect("a write with a member down");
    }
    assert_eq!(
        store
            .range(fleetdb_store::RangeRequest {
                prefix: "/registry/x/".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .kvs
            .len(),
        20
    );
}
