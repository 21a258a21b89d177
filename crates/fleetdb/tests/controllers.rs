//! The controllers in the real binary, driven with the real kubectl: the pool and clusters
//! that attach and detach hosts (`kubectl scale`), stale hosts detected and recovered, and
//! leader election between replicas.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Backend, Fleetdb};

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn host(name: &str, authorized: bool, extra: &str) -> String {
    format!(
        "apiVersion: fleetdb.io/v1alpha1\nkind: Host\nmetadata:\n  name: {name}\n  labels:\n    team: {}\nspec:\n  role: web\n  authorized: {authorized}\n{extra}---\n",
        if name.ends_with('x') { "b" } else { "a" }
    )
}

/// Polls `check` on `kubectl get <what> -o json` until it holds (or panics after 30 s).
fn wait_for(server: &Fleetdb, what: &[&str], why: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "json"]);
    loop {
        let output = server.kubectl(&args);
        let value = json(&String::from_utf8_lossy(&output.stdout));
        if check(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{why}: {value:#}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn condition<'a>(object: &'a Value, type_: &str) -> &'a Value {
    object["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

fn names(list: &str) -> Vec<String> {
    list.lines()
        .map(|l| l.trim_start_matches("host.fleetdb.io/").to_owned())
        .collect()
}

#[test]
fn clusters_take_hosts_from_the_pool_and_give_them_back() {
    let server = Fleetdb::start(Backend::Embedded);
    let mut hosts = String::new();
    for name in ["h1", "h2", "h3", "h4"] {
        hosts.push_str(&host(name, true, ""));
    }
    hosts.push_str(&host("h5", false, ""));
    hosts.push_str(&host("h6", true, "  maintenance: true\n"));
    hosts.push_str(&host("h7x", true, ""));
    server.ok_input(&["apply", "-f", "-"], &hosts);
    // The pool, by field selectors on custom fields; the table shows both columns.
    let pool = server.ok(&[
        "get",
        "hosts",
        "--field-selector",
        "spec.authorized=true,spec.cluster=",
        "-o",
        "name",
    ]);
    assert_eq!(names(&pool), ["h1", "h2", "h3", "h4", "h6", "h7x"]);
    let table = server.ok(&["get", "hosts"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert!(
        header.contains(&"AUTHORIZED") && header.contains(&"CLUSTER"),
        "{table}"
    );
    let err = server.fails(&["get", "hosts", "--field-selector", "spec.colour=red"]);
    assert!(
        err.contains(r#""spec.colour" is not a known field selector"#)
            && err.contains("spec.cluster"),
        "{err}"
    );

    // A cluster of 3 hosts of team a: authorized, not in maintenance.
    server.ok_input(
        &["apply", "-f", "-"],
        "apiVersion: fleetdb.io/v1alpha1\nkind: Cluster\nmetadata:\n  name: web\nspec:\n  size: 3\n  hostSelector:\n    matchLabels:\n      team: a\n",
    );
    let cluster = wait_for(&server, &["cluster", "web"], "three hosts attached", |c| {
        c["status"]["hosts"] == 3
    });
    assert_eq!(
        cluster["status"]["members"],
        serde_json::json!(["h1", "h2", "h3"])
    );
    let members = server.ok(&[
        "get",
        "hosts",
        "--field-selector",
        "spec.cluster=web",
        "-o",
        "name",
    ]);
    assert_eq!(names(&members), ["h1", "h2", "h3"]);
    let attached = server.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=Attached",
        "-o",
        "name",
    ]);
    assert_eq!(attached.lines().count(), 3, "{attached}");

    // More than the pool holds: the cluster says why it waits.
    server.ok(&["scale", "cluster", "web", "--replicas", "6"]);
    let cluster = wait_for(&server, &["cluster", "web"], "waiting for the pool", |c| {
        condition(c, "Progressing")["reason"] == "WaitingForHosts" && c["status"]["hosts"] == 4
    });
    assert_eq!(
        condition(&cluster, "Progressing")["message"],
        "pool has 0 matching hosts, 2 wanted"
    );
    // The pool grows: the cluster takes the new host.
    server.ok_input(&["apply", "-f", "-"], &host("h8", true, ""));
    wait_for(&server, &["cluster", "web"], "the new host attached", |c| {
        c["status"]["hosts"] == 5
    });

    // Scale down: members go back to the pool, one in maintenance first.
    server.ok(&[
        "patch",
        "host",
        "h2",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"maintenance":true}}"#,
    ]);
    server.ok(&["scale", "cluster", "web", "--replicas", "2"]);
    let cluster = wait_for(&server, &["cluster", "web"], "two hosts left", |c| {
        c["status"]["hosts"] == 2 && condition(c, "Progressing")["status"] == "False"
    });
    let left: Vec<&str> = cluster["status"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(
        !left.contains(&"h2"),
        "the host in maintenance goes first: {left:?}"
    );
    let scale = json(&server.ok(&[
        "get",
        "--raw",
        "/apis/fleetdb.io/v1alpha1/clusters/web/scale",
    ]));
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["replicas"], 2);
    let pool = server.ok(&[
        "get",
        "hosts",
        "--field-selector",
        "spec.authorized=true,spec.cluster=",
        "-o",
        "name",
    ]);
    // Seven authorized hosts, two in the cluster.
    assert_eq!(names(&pool).len(), 5, "{pool}");
    assert!(names(&pool).contains(&"h2".to_owned()), "{pool}");
    // Without agents no member heartbeats: the cluster is not ready, and says so.
    assert_eq!(condition(&cluster, "Ready")["status"], "False");
    assert_eq!(
        condition(&cluster, "Ready")["message"],
        "0 of 2 hosts ready"
    );
}

fn lease(name: &str, renew: &str) -> String {
    format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: {name}\n  namespace: fleetdb-system\nspec:\n  holderIdentity: fleetdb:host:{name}\n  leaseDurationSeconds: 4\n  renewTime: \"{renew}\"\n"
    )
}

fn micro_now(offset: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + offset;
    let t = time::OffsetDateTime::from_unix_timestamp(now as i64).unwrap();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000000Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[test]
fn a_host_whose_agent_stops_heartbeating_is_not_ready_until_it_comes_back() {
    let server = Fleetdb::start_with(Backend::Embedded, &["--host-stale-after", "3s"]);
    server.ok_input(&["apply", "-f", "-"], &host("h1", true, ""));
    server.ok(&[
        "patch",
        "host",
        "h1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Present","status":"True","reason":"Listed"}]}}"#,
    ]);
    // A simulated agent: renews its Lease every second for a while.
    server.ok_input(&["apply", "-f", "-"], &lease("h1", &micro_now(0)));
    let renew = |i: u64| {
        server.ok(&[
            "patch",
            "lease",
            "h1",
            "-n",
            "fleetdb-system",
            "--type",
            "merge",
            "-p",
            &format!(r#"{{"spec":{{"renewTime":"{}"}}}}"#, micro_now(i)),
        ]);
    };
    let started = Instant::now();
    let mut i = 0;
    let host = loop {
        i += 1;
        renew(i);
        let host = json(&server.ok(&["get", "host", "h1", "-o", "json"]));
        if condition(&host, "Ready")["status"] == "True" {
            break host;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{host:#}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(condition(&host, "Ready")["reason"], "HeartbeatReceived");
    // The agent goes quiet.
    let host = wait_for(&server, &["host", "h1"], "stale", |h| {
        condition(h, "Ready")["status"] == "False"
    });
    assert_eq!(condition(&host, "Ready")["reason"], "HeartbeatMissed");
    let warning = server.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=HeartbeatMissed,involvedObject.name=h1,type=Warning",
        "-o",
        "name",
    ]);
    assert_eq!(warning.lines().count(), 1, "{warning}");
    // A fetcher's own condition beside it is untouched (conditions are a map by type).
    assert_eq!(condition(&host, "Present")["status"], "True");
    // Back.
    renew(100);
    wait_for(&server, &["host", "h1"], "ready again", |h| {
        condition(h, "Ready")["status"] == "True"
    });
    let back = server.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=HeartbeatReceived,involvedObject.name=h1",
        "-o",
        "name",
    ]);
    assert_eq!(back.lines().count(), 1, "{back}");
}

#[test]
fn one_replica_leads_and_another_takes_over_when_it_stops() {
    let first = Fleetdb::start(Backend::Etcd);
    let second = first.replica();
    let holder = |server: &Fleetdb| {
        let lease = json(&server.ok(&[
            "get",
            "lease",
            "fleetdb-controllers",
            "-n",
            "fleetdb-system",
            "-o",
            "json",
        ]));
        lease["spec"]["holderIdentity"].as_str().unwrap().to_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !second
        .kubectl(&[
            "get",
            "lease",
            "fleetdb-controllers",
            "-n",
            "fleetdb-system",
        ])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "no leader:\n{}", first.log());
        std::thread::sleep(Duration::from_millis(250));
    }
    let leader = holder(&second);
    // The leader is one of the two processes, and stays it while it runs.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(holder(&second), leader);
    // Stop the leader (whichever it is) and the other takes over.
    let first_pid = first.pid();
    let (mut stopped, survivor) = if leader.ends_with(&format!("_{first_pid}")) {
        (first, second)
    } else {
        (second, first)
    };
    stopped.stop();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now_holder = holder(&survivor);
        if now_holder != leader {
            assert!(
                now_holder.ends_with(&format!("_{}", survivor.pid())),
                "{now_holder}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no takeover from {leader}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // The new leader acts: a cluster on the survivor gets its status.
    survivor.ok_input(
        &["apply", "-f", "-"],
        "apiVersion: fleetdb.io/v1alpha1\nkind: Cluster\nmetadata:\n  name: c\nspec:\n  size: 0\n",
    );
    wait_for(
        &survivor,
        &["cluster", "c"],
        "status from the new leader",
        |c| condition(c, "Progressing")["reason"] == "Complete",
    );
}

/// Waits until `kubectl get host NAME` answers NotFound.
fn wait_gone(server: &Fleetdb, name: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let output = server.kubectl(&["get", "host", name]);
        if !output.status.success() && String::from_utf8_lossy(&output.stderr).contains("NotFound")
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is still there:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn deleted_hosts_wait_for_their_agent_to_decommission_them() {
    let server = Fleetdb::start_with(Backend::Embedded, &["--decommission-timeout", "10s"]);
    let mut hosts = String::new();
    for name in ["plain", "managed", "silent"] {
        hosts.push_str(&host(name, true, ""));
    }
    server.ok_input(&["apply", "-f", "-"], &hosts);
    // Every host gets the finalizer.
    for name in ["plain", "managed", "silent"] {
        wait_for(&server, &["host", name], "the finalizer", |h| {
            h["metadata"]["finalizers"] == serde_json::json!(["fleetdb.io/decommission"])
        });
    }
    // Two have an agent that acts on them (a simulated one: its report).
    for name in ["managed", "silent"] {
        server.ok(&[
            "patch",
            "host",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"agent":{"hostname":"x","addresses":[{"type":"InternalIP","address":"10.0.0.9"}]}}}"#,
        ]);
    }
    // Without an agent: gone at once.
    server.ok(&["delete", "host", "plain", "--wait=false"]);
    wait_gone(&server, "plain", Duration::from_secs(20));

    // With one: it stays, out of Prometheus discovery, until the agent reports.
    server.ok(&["delete", "host", "managed", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(1));
    let managed = json(&server.ok(&["get", "host", "managed", "-o", "json"]));
    assert!(managed["metadata"]["deletionTimestamp"].is_string());
    let targets = server.ok(&["get", "--raw", "/sd/prometheus?port=9100"]);
    assert!(!targets.contains("managed"), "{targets}");
    server.ok(&[
        "patch",
        "host",
        "managed",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"agent":{"conditions":[{"type":"Decommissioned","status":"True","reason":"CommandSucceeded","message":"the decommission command exited with 0"}]}}}"#,
    ]);
    wait_gone(&server, "managed", Duration::from_secs(20));

    // An agent that never reports: released after the timeout, with a warning.
    server.ok(&["delete", "host", "silent", "--wait=false"]);
    // Still there 2 s after the deletion (the timeout, 10 s, counts from the deletion's
    // second, so the margin is about 7 s for the check), gone after the timeout.
    std::thread::sleep(Duration::from_secs(2));
    assert!(server.kubectl(&["get", "host", "silent"]).status.success());
    wait_gone(&server, "silent", Duration::from_secs(30));
    let events = server.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=silent,reason=DecommissionTimedOut,type=Warning",
        "-o",
        "name",
    ]);
    assert_eq!(events.lines().count(), 1, "{events}");
}
