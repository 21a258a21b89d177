//! The AWS EC2 fetcher end to end against a real EC2 emulator (moto, from the test
//! virtualenv, on 127.0.0.1): instances created with boto3 → `fleetdb fetch --once` →
//! `kubectl get hosts -l fleetdb.io/provider=aws` lists exactly the filtered ones; a retag and
//! a termination show at the next sync, and a person's changes survive.

mod support;

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Backend, Fleetdb, venv_bin};

/// The EC2 emulator, stopped when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Self {
        let port = fleetdb_testkit::free_port();
        let child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    fn ec2(&self, args: &[&str]) -> String {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/ec2.py");
        let output = Command::new(venv_bin("python"))
            .arg(script)
            .arg(&self.endpoint)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "ec2.py {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fetch(server: &Fleetdb, moto: &Moto) -> String {
    let no_config = server.path().join("no-aws-config");
    let no_credentials = server.path().join("no-aws-credentials");
    support::fetch_once_with(
        server,
        "aws-use1",
        &[
            ("AWS_ENDPOINT_URL", moto.endpoint.as_ref()),
            ("AWS_ACCESS_KEY_ID", "testing".as_ref()),
            ("AWS_SECRET_ACCESS_KEY", "testing".as_ref()),
            ("AWS_REGION", "us-east-1".as_ref()),
            ("AWS_EC2_METADATA_DISABLED", "true".as_ref()),
            ("AWS_CONFIG_FILE", no_config.as_os_str()),
            ("AWS_SHARED_CREDENTIALS_FILE", no_credentials.as_os_str()),
        ],
    )
}

fn host(server: &Fleetdb, name: &str) -> Value {
    serde_json::from_str(&server.ok(&["get", "host", name, "-o", "json"])).unwrap()
}

#[test]
fn ec2_instances_sync_into_hosts() {
    let moto = Moto::start();
    let created: Value = serde_json::from_str(&moto.ec2(&["create"])).unwrap();
    let prod: Vec<String> = created["prod"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_owned())
        .collect();

    let server = Fleetdb::start(Backend::Embedded);
    server.ok_input(
        &["apply", "-f", "-"],
        "apiVersion: fleetdb.io/v1alpha1\nkind: Source\nmetadata: {name: aws-use1}\nspec:\n  type: aws\n  interval: 60s\n  aws: {region: us-east-1, filters: {\"tag:env\": prod}}\n",
    );
    let summary = fetch(&server, &moto);
    assert!(summary.contains("5 hosts seen, 5 created"), "{summary}");

    let listed: BTreeSet<String> = server
        .ok(&[
            "get",
            "hosts",
            "-l",
            "fleetdb.io/provider=aws",
            "-o",
            "name",
        ])
        .lines()
        .map(|l| l.trim_start_matches("host.fleetdb.io/").to_owned())
        .collect();
    assert_eq!(
        listed,
        prod.iter().cloned().collect::<BTreeSet<_>>(),
        "exactly the prod instances"
    );
    let table = server.ok(&["get", "hosts", &prod[0]]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..5],
        [prod[0].as_str(), "web", "aws", "us-east-1", "Running"],
        "{table}"
    );
    let first = host(&server, &prod[0]);
    assert_eq!(first["metadata"]["labels"]["fleetdb.io/team"], "infra");
    assert_eq!(
        first["metadata"]["annotations"]["aws.fleetdb.io/name"],
        "web"
    );
    assert_eq!(
        first["metadata"]["annotations"]["tags.aws.fleetdb.io/env"],
        "prod"
    );
    assert_eq!(first["status"]["hardware"]["model"], "m5.large");
    assert!(
        first["status"]["zone"]
            .as_str()
            .unwrap()
            .starts_with("us-east-1")
    );
    assert_eq!(first["status"]["addresses"][0]["type"], "InternalIP");

    // A person takes one host into maintenance and labels it.
    server.ok(&[
        "patch",
        "host",
        &prod[0],
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"maintenance":true}}"#,
    ]);
    server.ok(&["label", "host", &prod[0], "owner=alice"]);

    // At the provider: a tag changes, an instance is terminated.
    moto.ec2(&["tag", &prod[0], "team", "platform"]);
    moto.ec2(&["terminate", &prod[4]]);
    fetch(&server, &moto);
    let retagged = host(&server, &prod[0]);
    assert_eq!(
        retagged["metadata"]["labels"]["fleetdb.io/team"],
        "platform"
    );
    assert_eq!(
        retagged["spec"]["maintenance"], true,
        "maintenance survives"
    );
    assert_eq!(
        retagged["metadata"]["labels"]["owner"], "alice",
        "the label survives"
    );
    assert_eq!(host(&server, &prod[4])["status"]["state"], "Terminated");

    let source: Value =
        serde_json::from_str(&server.ok(&["get", "source", "aws-use1", "-o", "json"])).unwrap();
    assert_eq!(source["status"]["conditions"][0]["status"], "True");
    assert_eq!(source["status"]["hostsSeen"], 5);
}
