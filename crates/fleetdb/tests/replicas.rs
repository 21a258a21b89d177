//! Outgrowing one machine: a second `fleetdb serve` on the same etcd given the first one's
//! PKI directory answers the first one's kubeconfig; a CA that did not issue the
//! certificates beside it stops the server with the reason; `fleetdb migrate` moves an
//! embedded fleet and its history to etcd.

mod support;

use std::process::Command;

use futures::StreamExt;
use std::time::{Duration, Instant};

use support::{Backend, Fleetdb};

#[test]
fn replicas_given_one_pki_directory_answer_one_kubeconfig() {
    let first = Fleetdb::start(Backend::Etcd);
    let pki = first.path().join("data").join("pki");
    let second = first.replica_with(&["--pki-dir", pki.to_str().unwrap()]);
    first.ok(&["create", "namespace", "shared"]);
    // The first replica's administrator kubeconfig, pointed at the second replica.
    let out = first.ok(&[
        "get",
        "namespace",
        "shared",
        "--server",
        &second.url(),
        "-o",
        "name",
    ]);
    assert_eq!(out.trim(), "namespace/shared");
    // And the second's at the first: one CA, one server certificate.
    let out = second.ok(&[
        "get",
        "namespace",
        "shared",
        "--server",
        &first.url(),
        "-o",
        "name",
    ]);
    assert_eq!(out.trim(), "namespace/shared");
    // The second replica wrote no CA of its own.
    assert!(!second.path().join("data").join("pki").exists());
}

#[test]
fn certificates_of_another_authority_stop_the_server_with_the_reason() {
    let mut first = Fleetdb::start(Backend::Embedded);
    let other = Fleetdb::start(Backend::Embedded);
    first.stop();
    for file in ["ca.crt", "ca.key"] {
        std::fs::copy(
            other.path().join("data/pki").join(file),
            first.path().join("data/pki").join(file),
        )
        .unwrap();
    }
    let mut server = Command::new(env!("CARGO_BIN_EXE_fleetdb"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(first.path().join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            panic!("fleetdb served with certificates its CA did not issue");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut server.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("was not issued by the certificate authority"),
        "{stderr}"
    );
}

/// The hosts of a fleet on the embedded store.
const FLEET: usize = 10_000;

/// `fleetdb migrate` moves a fleet of 10,000 hosts and its history from the embedded store
/// to etcd: the same objects, the same history (users, operations, times), `asOf` answers,
/// and a second migration into the same prefix is refused.
#[test]
fn an_embedded_fleet_moves_to_etcd_with_its_history() {
    let mut server = Fleetdb::start_with(Backend::Embedded, &["--controllers=false"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use kube::api::{Api, DynamicObject, PostParams};
        let kubeconfig = kube::config::Kubeconfig::read_from(server.kubeconfig()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let resource = kube::discovery::ApiResource {
            group: "fleetdb.io".into(),
            version: "v1alpha1".into(),
            api_version: "fleetdb.io/v1alpha1".into(),
            kind: "Host".into(),
            plural: "hosts".into(),
        };
        let hosts: Api<DynamicObject> = Api::all_with(client, &resource);
        futures::stream::iter(0..FLEET)
            .map(|i| {
                let hosts = hosts.clone();
                async move {
                    let host: DynamicObject = serde_json::from_value(serde_json::json!({
                        "apiVersion": "fleetdb.io/v1alpha1", "kind": "Host",
                        "metadata": {"name": format!("host-{i:05}"), "labels": {"rack": format!("r{}", i % 100)}},
                        "spec": {"role": "web"},
                    }))
                    .unwrap();
                    hosts.create(&PostParams::default(), &host).await.unwrap();
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
    });
    let (alice, _) = server.identity(
        "alice.kubeconfig",
        &["--user", "alice", "--group", "system:masters"],
    );
    std::thread::sleep(Duration::from_millis(50));
    server.ok_as(&alice, &["label", "host", "host-00001", "team=blue"]);
    std::thread::sleep(Duration::from_millis(50));
    let before_delete = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    server.ok_as(&alice, &["delete", "host", "host-00002"]);
    let history_before = fleetdb_json(&server, &["history", "hosts/host-00001"]);
    server.stop();

    let etcd = fleetdb_testkit::EtcdServer::start();
    let data = server.path().join("data");
    let migrate = |expect_success: bool| {
        let output = Command::new(env!("CARGO_BIN_EXE_fleetdb"))
            .arg("migrate")
            .arg("--from")
            .arg(&data)
            .args(["--to-etcd", etcd.client_url()])
            .output()
            .unwrap();
        assert_eq!(output.status.success(), expect_success, "{output:?}");
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (said, _) = migrate(true);
    assert!(said.contains("objects, identical in both stores"), "{said}");
    let (_, refused) = migrate(false);
    assert!(
        refused.contains("already holds fleetdb objects"),
        "{refused}"
    );

    // The same data directory (its PKI) served from etcd.
    let port = fleetdb_testkit::free_port();
    let mut on_etcd = Command::new(env!("CARGO_BIN_EXE_fleetdb"))
        .args([
            "serve",
            "--controllers=false",
            "--store",
            "etcd",
            "--etcd-endpoints",
            etcd.client_url(),
        ])
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server
        .kubectl(&["--server", &url, "get", "--raw", "/readyz"])
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "fleetdb on etcd did not become ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let names = server.ok(&["--server", &url, "get", "hosts", "-o", "name"]);
    assert_eq!(names.lines().count(), FLEET - 1);
    let kubeconfig = server.kubeconfig();
    let fleet = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_fleetdb"))
            .args(args)
            .args(["-o", "json", "--kubeconfig"])
            .arg(&kubeconfig)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    // The admin kubeconfig now points at the etcd-backed server (it rewrote it at start).
    let history_after = fleet(&["history", "hosts/host-00001"]);
    let strip = |history: &serde_json::Value| -> Vec<(String, String, String)> {
        history
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["user"].as_str().unwrap().to_owned(),
                    c["operation"].as_str().unwrap().to_owned(),
                    c["time"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(strip(&history_after), strip(&history_before));
    let deleted = fleet(&["history", "hosts/host-00002"]);
    assert_eq!(
        deleted.as_array().unwrap().last().unwrap()["operation"],
        "delete"
    );
    let then = fleet(&["get", "hosts", "--as-of", &before_delete, "-l", "rack=r2"]);
    assert!(
        then["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["metadata"]["name"] == "host-00002"),
        "host-00002 existed before it was deleted"
    );
    let _ = on_etcd.kill();
    let _ = on_etcd.wait();
}

fn fleetdb_json(server: &Fleetdb, args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_fleetdb"))
        .args(args)
        .args(["-o", "json", "--kubeconfig"])
        .arg(server.kubeconfig())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A kube-rs client of `server`'s administrator kubeconfig, pointed at `url`.
async fn client_at(server: &Fleetdb, url: &str) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(server.kubeconfig()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.cluster_url = url.parse().unwrap();
    kube::Client::try_from(config).unwrap()
}

/// Two replicas on a 3-member etcd, sharing one PKI: the leader and then a follower are
/// killed under writes through both replicas; writers see no error, nothing acknowledged is
/// lost, a watch on each replica sees every write. With quorum lost, `/readyz` fails naming
/// the store; members back, everything serves again without a restart. A replica starts
/// with a member down.
#[test]
fn replicas_ride_out_the_loss_of_an_etcd_member() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, PostParams};
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let mut cluster = fleetdb_testkit::EtcdCluster::start(3);
    let endpoints = cluster.client_urls().join(",");
    let on_etcd = [
        "--store",
        "etcd",
        "--etcd-endpoints",
        &endpoints,
        "--controllers=false",
    ];
    let first = Fleetdb::start_with(Backend::Embedded, &on_etcd);
    let pki = first.path().join("data").join("pki");
    let mut second_args = on_etcd.to_vec();
    second_args.extend(["--pki-dir", pki.to_str().unwrap()]);
    let second = Fleetdb::start_with(Backend::Embedded, &second_args);
    let urls = [first.url(), second.url()];

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (writers, watchers) = runtime.block_on(async {
        let mut watchers = Vec::new();
        for url in &urls {
            let configmaps: Api<ConfigMap> =
                Api::namespaced(client_at(&first, url).await, "default");
            let stop = stop.clone();
            watchers.push(tokio::spawn(async move {
                use kube::runtime::{WatchStreamExt, watcher};
                let mut seen = BTreeSet::new();
                let events = watcher(configmaps, watcher::Config::default())
                    .default_backoff()
                    .applied_objects();
                futures::pin_mut!(events);
                loop {
                    match tokio::time::timeout(Duration::from_secs(3), events.next()).await {
                        Ok(Some(Ok(cm))) => {
                            seen.insert(cm.metadata.name.unwrap_or_default());
                        }
                        Ok(_) => {}
                        Err(_) if stop.load(Ordering::Relaxed) => return seen,
                        Err(_) => {}
                    }
                }
            }));
        }
        let mut writers = Vec::new();
        for w in 0..4 {
            let configmaps: Api<ConfigMap> =
                Api::namespaced(client_at(&first, &urls[w % 2]).await, "default");
            let stop = stop.clone();
            writers.push(tokio::spawn(async move {
                let mut created = Vec::new();
                let mut errors = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let name = format!("w{w}-{n}");
                    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                        "metadata": {"name": name}, "data": {"n": n.to_string()}
                    }))
                    .unwrap();
                    match configmaps.create(&PostParams::default(), &cm).await {
                        Ok(_) => created.push(name),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (created, errors)
            }));
        }
        (writers, watchers)
    });

    std::thread::sleep(Duration::from_secs(1));
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    cluster.kill(leader);
    std::thread::sleep(Duration::from_secs(3));
    cluster.restart(leader);
    std::thread::sleep(Duration::from_secs(1));
    // A follower of the leader there is now (not the one that may be mid-election).
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let follower = (0..3).find(|i| *i != leader).unwrap();
    cluster.kill(follower);
    // A replica starts with a member down.
    let third = Fleetdb::start_with(Backend::Embedded, &second_args);
    third.ok(&["get", "namespaces", "--server", &third.url()]);
    std::thread::sleep(Duration::from_secs(2));
    cluster.restart(follower);
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);

    let (created, errors) = runtime.block_on(async {
        let mut created = BTreeSet::new();
        let mut errors = Vec::new();
        for writer in writers {
            let (c, e) = writer.await.unwrap();
            created.extend(c);
            errors.extend(e);
        }
        (created, errors)
    });
    assert!(
        errors.is_empty(),
        "writers saw errors while a quorum served: {errors:?}"
    );
    assert!(created.len() > 40, "only {} creates", created.len());
    let stored: BTreeSet<String> = first
        .ok(&["get", "configmaps", "-o", "name"])
        .lines()
        .map(|l| l.trim_start_matches("configmap/").to_owned())
        .collect();
    assert!(
        created.is_subset(&stored),
        "acknowledged creates missing: {:?}",
        created.difference(&stored).collect::<Vec<_>>()
    );
    for (i, watcher) in watchers.into_iter().enumerate() {
        let seen = runtime.block_on(watcher).unwrap();
        assert!(
            created.is_subset(&seen),
            "the watch on replica {i} missed {:?}",
            created.difference(&seen).collect::<Vec<_>>()
        );
    }

    // Quorum lost: not ready.
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    cluster.kill(a);
    cluster.kill(b);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = first.kubectl(&["get", "--raw", "/readyz?verbose"]);
        if !ready.status.success() {
            let said = String::from_utf8_lossy(&ready.stdout).into_owned()
                + &String::from_utf8_lossy(&ready.stderr);
            assert!(said.contains("store"), "{said}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed ok with quorum lost"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // ... and writes answer 503 with Retry-After, promptly once the store knows (client-go
    // retries such answers, then reports them).
    for server in [&first, &second] {
        // kube-rs retries 503s itself (15 times, backing off up to 1000 s): this client
        // must see each answer.
        let client = runtime.block_on(async {
            let kubeconfig = kube::config::Kubeconfig::read_from(first.kubeconfig()).unwrap();
            let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .unwrap();
            config.cluster_url = server.url().parse().unwrap();
            config.default_retry = false;
            kube::Client::try_from(config).unwrap()
        });
        let mut slowest = Duration::ZERO;
        for i in 0..3 {
            let request = http::Request::post("/api/v1/namespaces/default/configmaps")
                .header("content-type", "application/json")
                .body(kube::client::Body::from(
                    format!(r#"{{"metadata":{{"name":"lost-{}-{i}"}}}}"#, server.port).into_bytes(),
                ))
                .unwrap();
            let started = Instant::now();
            let response = runtime.block_on(client.send(request)).unwrap();
            if i > 0 {
                slowest = slowest.max(started.elapsed());
            }
            assert_eq!(response.status(), 503);
            assert_eq!(response.headers()["retry-after"], "1");
        }
        assert!(
            slowest < Duration::from_secs(3),
            "writes took {slowest:?} to be refused with quorum lost"
        );
    }
    // Members back: both replicas serve again, without a restart.
    cluster.restart(a);
    cluster.restart(b);
    let deadline = Instant::now() + Duration::from_secs(30);
    for server in [&first, &second] {
        loop {
            let name = format!("back-{}", server.port);
            let created =
                server.kubectl(&["create", "configmap", &name, "--server", &server.url()]);
            // A create that was applied though its answer was lost is there already.
            if created.status.success()
                || String::from_utf8_lossy(&created.stderr).contains("already exists")
            {
                break;
            }
            assert!(Instant::now() < deadline, "a replica did not recover");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    drop(third);
}
