//! Rollouts with the real binary: `fleetdb controllers` processes (one killed in the middle,
//! then two at once), simulated agents that report their runs, and a watcher that sees every
//! change of every host and proves no limit was ever exceeded.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Backend, Fleetdb, fleetdb};

const ROLLOUT: &str = "patch-1";
const LABEL: &str = "rollout.fleetdb.io/patch-1";
const RACKS: usize = 2;
const HOSTS: usize = 12;
const MAX_UNAVAILABLE: usize = 3;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn host_name(i: usize) -> String {
    format!("h{i:02}")
}

fn rack_of(i: usize) -> String {
    format!("r{}", i % RACKS)
}

/// A `fleetdb controllers` process with the controllers' own identity.
fn controllers(server: &Fleetdb, kubeconfig: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fleetdb"))
        .args(["controllers", "--kubeconfig"])
        .arg(kubeconfig)
        .env("FLEETDB_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(server.path().join("controllers.log"))
                .unwrap(),
        )
        .spawn()
        .unwrap()
}

/// What the watcher saw: the most hosts in progress at once, overall and per rack, and
/// every host's sequence of progress labels.
#[derive(Default)]
struct Seen {
    max_in_progress: usize,
    max_per_rack: usize,
    labels: BTreeMap<String, Vec<String>>,
    events: usize,
}

/// Follows every change of every host (`kubectl get hosts -w -o json`), in order.
fn watch_hosts(server: &Fleetdb, seen: Arc<Mutex<Seen>>) -> Child {
    let mut watcher = server
        .kubectl_command(&["get", "hosts", "-w", "-o", "json", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut current: BTreeMap<String, (String, String)> = BTreeMap::new();
        let stream =
            serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>();
        for event in stream.map_while(Result::ok) {
            let object = &event["object"];
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let labels = &object["metadata"]["labels"];
            let progress = labels[LABEL].as_str().unwrap_or("").to_owned();
            let rack = labels["fleetdb.io/rack"].as_str().unwrap_or("").to_owned();
            current.insert(name.clone(), (progress.clone(), rack));
            let in_progress: Vec<&(String, String)> = current
                .values()
                .filter(|(p, _)| p == "InProgress")
                .collect();
            let mut per_rack: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, rack) in &in_progress {
                *per_rack.entry(rack).or_default() += 1;
            }
            let mut seen = seen.lock().unwrap();
            seen.events += 1;
            seen.max_in_progress = seen.max_in_progress.max(in_progress.len());
            seen.max_per_rack = seen
                .max_per_rack
                .max(per_rack.values().copied().max().unwrap_or(0));
            let history = seen.labels.entry(name).or_default();
            if history.last() != Some(&progress) {
                history.push(progress);
            }
        }
    });
    watcher
}

/// Waits (at most a minute) until what the host watcher has seen satisfies `done`; the
/// checks after it say what is missing if it never does.
fn wait_seen(seen: &Mutex<Seen>, done: impl Fn(&Seen) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&seen.lock().unwrap()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How a host ends the rollout: h05's run fails, every other succeeds.
fn end_of(name: &str) -> &'static str {
    if name == "h05" { "Failed" } else { "Succeeded" }
}

/// Simulated agents: a run the controller gives a host is reported done a second after it
/// appears (`h05`'s fails).
fn agents(server: &Fleetdb, stop: &AtomicBool) {
    {
        let mut first_seen: BTreeMap<String, Instant> = BTreeMap::new();
        let mut reported = BTreeSet::new();
        while !stop.load(Ordering::Relaxed) {
            let list = json(&server.ok(&["get", "hosts", "-o", "json"]));
            for host in list["items"].as_array().unwrap() {
                let name = host["metadata"]["name"].as_str().unwrap().to_owned();
                let has_run = host["spec"]["runs"].as_array().is_some_and(|runs| {
                    runs.iter().any(|r| r["id"] == format!("rollout-{ROLLOUT}"))
                });
                if !has_run || reported.contains(&name) {
                    continue;
                }
                let since = *first_seen.entry(name.clone()).or_insert_with(Instant::now);
                if since.elapsed() < Duration::from_secs(1) {
                    continue;
                }
                let phase = end_of(&name);
                let patch = format!(
                    r#"{{"status":{{"agent":{{"runs":[{{"id":"rollout-{ROLLOUT}","phase":"{phase}"}}]}}}}}}"#
                );
                let output = server.kubectl(&[
                    "patch",
                    "host",
                    &name,
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    &patch,
                ]);
                if output.status.success() {
                    reported.insert(name);
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

fn rollout_status(server: &Fleetdb) -> Value {
    json(&server.ok(&["get", "rollout", ROLLOUT, "-o", "json"]))["status"].clone()
}

#[test]
fn a_rollout_keeps_its_limits_through_a_crash_and_two_replicas() {
    let server = Fleetdb::start_with(Backend::Embedded, &["--controllers=false"]);
    let kubeconfig = server.path().join("controllers.kubeconfig");
    let issued = fleetdb(
        &server,
        &[
            "kubeconfig",
            "--controllers",
            "--server",
            &server.url(),
            "--out",
            kubeconfig.to_str().unwrap(),
        ],
    );
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let mut hosts = String::new();
    for i in 0..HOSTS {
        hosts.push_str(&format!(
            "apiVersion: fleetdb.io/v1alpha1\nkind: Host\nmetadata:\n  name: {}\n  labels:\n    team: a\n    fleetdb.io/rack: {}\nspec:\n  authorized: true\n---\n",
            host_name(i),
            rack_of(i)
        ));
    }
    server.ok_input(&["apply", "-f", "-"], &hosts);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut watcher = watch_hosts(&server, seen.clone());
    // The watch's initial list (an ADDED event per host) before anything changes, so every
    // host's history starts from its state before the rollout.
    wait_seen(&seen, |seen| seen.events >= HOSTS);

    let first = controllers(&server, &kubeconfig);
    server.ok_input(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: fleetdb.io/v1alpha1\nkind: Rollout\nmetadata:\n  name: {ROLLOUT}\nspec:\n  selector:\n    matchLabels:\n      team: a\n  run:\n    command: [\"true\"]\n  maxUnavailable: {MAX_UNAVAILABLE}\n  maxPerTopology:\n  - key: fleetdb.io/rack\n    max: 1\n  maxFailures: 1\n"
        ),
    );
    let stop = AtomicBool::new(false);
    let (status, held_messages, in_flight) = std::thread::scope(|scope| {
        scope.spawn(|| agents(&server, &stop));
        let outcome = drive(&server, &kubeconfig, first);
        stop.store(true, Ordering::Relaxed);
        outcome
    });
    // The hosts' last labels were written before the rollout's final status; wait for the
    // watch to deliver them.
    wait_seen(&seen, |seen| {
        (0..HOSTS).all(|i| {
            let name = host_name(i);
            seen.labels
                .get(&name)
                .and_then(|history| history.last())
                .is_some_and(|last| last == end_of(&name))
        })
    });
    let _ = watcher.kill();
    let _ = watcher.wait();
    check(&server, &status, &held_messages, &in_flight, &seen);
}

/// Waits for progress, crashes the first controllers, runs two at once until the rollout
/// completes; its final status, every held message seen on the way and the hosts that were
/// in progress when the first controllers died.
fn drive(
    server: &Fleetdb,
    kubeconfig: &std::path::Path,
    mut first: Child,
) -> (Value, BTreeSet<String>, BTreeSet<String>) {
    // Let a few hosts finish, and catch what the limits hold back on the way.
    let mut held_messages = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = rollout_status(server);
        if let Some(message) = status["heldMessage"].as_str() {
            held_messages.insert(message.to_owned());
        }
        if status["succeeded"].as_u64().unwrap_or(0) >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {status:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Crash the controllers in the middle, then run two at once.
    first.kill().unwrap();
    first.wait().unwrap();
    let in_flight: BTreeSet<String> = server
        .ok(&[
            "get",
            "hosts",
            "-l",
            &format!("{LABEL}=InProgress"),
            "-o",
            "name",
        ])
        .lines()
        .map(|line| line.trim_start_matches("host.fleetdb.io/").to_owned())
        .collect();
    let mut replicas = [
        controllers(server, kubeconfig),
        controllers(server, kubeconfig),
    ];
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let status = rollout_status(server);
        if let Some(message) = status["heldMessage"].as_str() {
            held_messages.insert(message.to_owned());
        }
        if status["phase"] == "Completed" {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the rollout did not complete: {status:#}\n{}",
            std::fs::read_to_string(server.path().join("controllers.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    for replica in &mut replicas {
        let _ = replica.kill();
        let _ = replica.wait();
    }
    (status, held_messages, in_flight)
}

fn check(
    server: &Fleetdb,
    status: &Value,
    held_messages: &BTreeSet<String>,
    in_flight: &BTreeSet<String>,
    seen: &Mutex<Seen>,
) {
    assert_eq!(status["total"], HOSTS);
    assert_eq!(status["succeeded"], HOSTS - 1);
    assert_eq!(status["failed"], 1);
    assert_eq!(status["pending"], 0);
    let seen = seen.lock().unwrap();
    assert!(
        seen.events > HOSTS * 2,
        "the watcher saw {} events",
        seen.events
    );
    assert!(
        seen.max_in_progress <= MAX_UNAVAILABLE,
        "{} hosts in progress at once",
        seen.max_in_progress
    );
    assert_eq!(
        seen.max_per_rack, 1,
        "hosts of one rack in progress at once"
    );
    // Every host went pending → in progress → done exactly once.
    for i in 0..HOSTS {
        let name = host_name(i);
        let end = end_of(&name);
        assert_eq!(
            seen.labels[&name],
            ["", "InProgress", end],
            "{name}: {:?}",
            seen.labels[&name]
        );
    }
    assert!(
        held_messages.iter().any(|m| m.contains("fleetdb.io/rack=")),
        "{held_messages:?}"
    );
    // The runs were taken off the hosts once done; the table shows the progress.
    let runs = server.ok(&["get", "hosts", "-o", "jsonpath={.items[*].spec.runs}"]);
    assert_eq!(runs.trim(), "", "{runs}");
    let table = server.ok(&["get", "rollouts"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "PHASE",
            "TOTAL",
            "SUCCEEDED",
            "IN",
            "PROGRESS",
            "FAILED",
            "PENDING",
            "AGE"
        ]
    );
    let events = server.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=RolloutStarted",
        "-o",
        "name",
    ]);
    // One RolloutStarted per host. Events are best effort (as kube-apiserver's): a host the
    // killed controllers had just started may have lost its Event with them, never more.
    let mut started: BTreeMap<&str, usize> = BTreeMap::new();
    for line in events.lines() {
        let host = line.trim_start_matches("event/").split('.').next().unwrap();
        *started.entry(host).or_default() += 1;
    }
    for i in 0..HOSTS {
        let name = host_name(i);
        let count = started.get(name.as_str()).copied().unwrap_or(0);
        if in_flight.contains(&name) {
            assert!(count <= 1, "{name}: {events}");
        } else {
            assert_eq!(
                count, 1,
                "{name} (in flight at the crash: {in_flight:?}): {events}"
            );
        }
    }
    let names: BTreeSet<String> = (0..HOSTS).map(host_name).collect();
    assert!(started.keys().all(|host| names.contains(*host)), "{events}");
}

#[test]
fn deleting_a_rollout_undoes_what_is_in_progress_and_takes_its_marks_off() {
    let server = Fleetdb::start(Backend::Embedded);
    let mut hosts = String::new();
    for i in 0..3 {
        hosts.push_str(&format!(
            "apiVersion: fleetdb.io/v1alpha1\nkind: Host\nmetadata:\n  name: {}\n  labels: {{team: b}}\nspec: {{}}\n---\n",
            host_name(i)
        ));
    }
    server.ok_input(&["apply", "-f", "-"], &hosts);
    server.ok_input(
        &["apply", "-f", "-"],
        "apiVersion: fleetdb.io/v1alpha1\nkind: Rollout\nmetadata: {name: drain}\nspec:\n  selector: {matchLabels: {team: b}}\n  maintenance: {duration: 1h}\n  maxUnavailable: 1\n",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = json(&server.ok(&["get", "rollout", "drain", "-o", "json"]))["status"].clone();
        if status["inProgress"] == 1 {
            assert_eq!(status["pending"], 2, "{status}");
            assert_eq!(
                status["heldMessage"],
                "held: 2 hosts, 1 of at most 1 hosts unavailable"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let in_maintenance = server.ok(&[
        "get",
        "hosts",
        "-l",
        "rollout.fleetdb.io/drain=InProgress",
        "-o",
        "jsonpath={.items[*].spec.maintenance}",
    ]);
    assert_eq!(in_maintenance, "true");
    // A selector that would widen the rollout is refused by the schema.
    let err = server.fails_input(
        &["apply", "-f", "-"],
        "apiVersion: fleetdb.io/v1alpha1\nkind: Rollout\nmetadata: {name: wide}\nspec:\n  selector: {matchExpressions: [{key: team, operator: Maybe}]}\n  maintenance: {duration: 1m}\n",
    );
    assert!(err.contains("Unsupported value: \"Maybe\""), "{err}");

    server.ok(&["delete", "rollout", "drain", "--timeout=30s"]);
    let hosts = json(&server.ok(&["get", "hosts", "-o", "json"]));
    for host in hosts["items"].as_array().unwrap() {
        assert!(host["spec"]["maintenance"] != true, "{host}");
        let labels = host["metadata"]["labels"].as_object().unwrap();
        assert!(!labels.contains_key("rollout.fleetdb.io/drain"), "{host}");
    }
    let abandoned = server.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=RolloutAbandoned",
        "-o",
        "name",
    ]);
    assert_eq!(abandoned.lines().count(), 1, "{abandoned}");
}
