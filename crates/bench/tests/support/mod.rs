//! What the crash and power-loss tests share: the crash writer child, run until a random
//! moment and killed; its acknowledgements; and the check that every acknowledged write is in
//! the reopened store.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use fleetdb_bench::crash_writer::value_for;
use fleetdb_store::embedded::EmbeddedStore;
use fleetdb_store::{EventKind, Revision, Store};
use futures::StreamExt;

/// One acknowledged write, as the child printed it.
#[derive(Clone, Debug)]
pub struct Ack {
    pub revision: Revision,
    pub key: String,
    /// `None` for a delete.
    pub value: Option<Vec<u8>>,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["P", revision, key, id, len] => Some(Ack {
            revision: revision.parse().ok()?,
            key: key.to_string(),
            value: Some(value_for(id, len.parse().ok()?)),
        }),
        ["D", revision, key] => Some(Ack {
            revision: revision.parse().ok()?,
            key: key.to_string(),
            value: None,
        }),
        _ => None,
    }
}

/// How long the child may take to open the store and acknowledge its first write.
const FIRST_ACK_WITHIN: Duration = Duration::from_secs(60);

/// Runs the child (with `env` added to its environment) until it has acknowledged a write,
/// then for `alive` more, kills it with SIGKILL, and returns what it acknowledged. (Counting
/// `alive` from the first acknowledgement, not from the start, puts every kill among the
/// writes however long a loaded machine takes to start the child and reopen a store that
/// grows with every run.)
pub fn run_and_kill(
    dir: &std::path::Path,
    run: u64,
    alive: Duration,
    env: &[(&str, &std::ffi::OsStr)],
) -> Vec<Ack> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetdb-bench"))
        .args([
            "crash-writer",
            "--writers",
            "16",
            "--run",
            &run.to_string(),
            "--dir",
        ])
        .arg(dir)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the crash writer");
    let stdout = child.stdout.take().unwrap();
    let (first_ack, acknowledged) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut acks = Vec::new();
        let mut ready = false;
        while let Some(Ok(line)) = lines.next() {
            if line == "READY" {
                ready = true;
            } else if let Some(ack) = parse_ack(&line) {
                if acks.is_empty() {
                    let _ = first_ack.send(());
                }
                acks.push(ack);
            }
        }
        (ready, acks)
    });
    // No first acknowledgement in time (or the child died): kill it all the same, and the
    // caller's checks say what went wrong.
    if acknowledged.recv_timeout(FIRST_ACK_WITHIN).is_ok() {
        std::thread::sleep(alive);
    }
    child.kill().expect("SIGKILL the crash writer");
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the writer should have died from SIGKILL"
    );
    let (ready, acks) = reader.join().unwrap();
    assert!(ready, "the crash writer never opened the store");
    acks
}

/// Reopens the store and checks every acknowledged write against its full history.
pub async fn verify(dir: &std::path::Path, acks: &[Ack]) {
    let store = EmbeddedStore::open(dir).expect("reopen after the crash");
    let current = store.current_revision().await.unwrap();
    let mut history = HashMap::with_capacity(current as usize);
    let mut watch = store.watch("/", 0).await.unwrap();
    for expected in 1..=current {
        let event = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .expect("history replay stalled")
            .expect("history ended early")
            .expect("history replay failed");
        assert_eq!(
            event.revision(),
            expected,
            "revisions must have no gap or repeat"
        );
        history.insert(event.revision(), event);
    }
    drop(watch);

    for ack in acks {
        assert!(
            ack.revision <= current,
            "acknowledged revision {} is missing (store is at {current})",
            ack.revision
        );
        let event = &history[&ack.revision];
        assert_eq!(
            event.kv.key, ack.key,
            "revision {} holds another key",
            ack.revision
        );
        match &ack.value {
            Some(value) => {
                assert_eq!(event.kind, EventKind::Put);
                assert!(
                    event.kv.value == value[..],
                    "revision {} lost its value",
                    ack.revision
                );
            }
            None => assert_eq!(event.kind, EventKind::Delete),
        }
    }
    // The current state is exactly what the history ends with.
    let mut last_event: BTreeMap<&str, &fleetdb_store::Event> = BTreeMap::new();
    for revision in 1..=current {
        let event = &history[&revision];
        last_event.insert(&event.kv.key, event);
    }
    for (key, event) in last_event {
        let now = store.get(key, None).await.unwrap().kv;
        match event.kind {
            EventKind::Put => assert_eq!(now.as_ref(), Some(&event.kv), "key {key}"),
            EventKind::Delete => assert!(now.is_none(), "key {key} was deleted last"),
        }
    }
    store.close().await;
}
