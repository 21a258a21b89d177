//! Replicas sharing one identity: a second `fleetdb serve` on the same etcd given the first
//! one's PKI directory answers the first one's kubeconfig; a CA that did not issue the
//! certificates beside it stops the server with the reason.

mod support;

use std::process::Command;
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
