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
