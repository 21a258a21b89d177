//! The real server against hostile clients on real connections: an oversized body still gets
//! a 413 the client can read (kubectl shows it); connections that send nothing, send headers
//! too slowly, or come without a certificate past the cap are closed, while others are served.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use support::{Backend, Fleetdb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

/// A TLS connection to the server trusting its CA, without a client certificate.
async fn anonymous_connection(server: &Fleetdb) -> TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = server.dir.path().join("data").join("pki").join("ca.crt");
    for cert in CertificateDer::pem_file_iter(&ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
            tcp,
        )
        .await
        .unwrap()
}

/// How long until the server closes the connection (reading and discarding what it sends),
/// or `None` if it is still open after `wait`.
async fn closed_within(
    connection: &mut TlsStream<tokio::net::TcpStream>,
    wait: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(
            wait.saturating_sub(started.elapsed()),
            connection.read(&mut buffer),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A `GET /healthz` on an open connection, answered `200`.
async fn healthz(connection: &mut TlsStream<tokio::net::TcpStream>) {
    connection
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: fleetdb\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), connection.read(&mut buffer))
        .await
        .expect("an answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&buffer[..read]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn an_oversized_body_gets_a_413_the_client_reads() {
    let server = Fleetdb::start(Backend::Embedded);
    let big = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{{\"name\":\"big\"}},\"spec\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(4 << 20)
    );
    let file = server.write("big.json", &big);
    let error = server.fails(&["create", "-f", file.to_str().unwrap()]);
    assert!(
        error.contains("larger than the limit of 3145728 bytes"),
        "kubectl shows the server's Status: {error}"
    );
    server.ok(&["get", "namespace", "default"]);
}

#[test]
fn the_data_directory_is_its_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let server = Fleetdb::start(Backend::Embedded);
    server.ok(&["create", "namespace", "written"]);
    let data = server.dir.path().join("data");
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory");
    let mut stack = vec![data];
    let mut checked = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(
                mode(&path) & 0o077,
                0,
                "{} is open to others",
                path.display()
            );
            checked += 1;
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    assert!(checked > 5, "keys, kubeconfig and the store were checked");

    // A kubeconfig written with --out holds a private key: its owner's alone, also when it
    // replaces a file that was open to others.
    let out = server.path().join("person.kubeconfig");
    std::fs::write(&out, "old").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_fleetdb"))
        .args(["kubeconfig", "--user", "person", "--out"])
        .arg(&out)
        .arg("--data-dir")
        .arg(server.dir.path().join("data"))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(mode(&out), 0o600);
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(written.contains("client-key-data"), "{written}");
}

#[test]
fn idle_slow_and_surplus_connections_are_closed_and_others_served() {
    let server = Fleetdb::start_with(
        Backend::Embedded,
        &[
            "--header-read-timeout-seconds",
            "1",
            "--max-anonymous-connections",
            "2",
            "--anonymous-connection-seconds",
            "3",
        ],
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Sends nothing: closed once the header timeout passes.
        let mut idle = anonymous_connection(&server).await;
        let closed = closed_within(&mut idle, Duration::from_secs(10)).await;
        assert!(closed.is_some(), "an idle connection stays open");
        // Sends its headers too slowly: closed the same way.
        let mut slow = anonymous_connection(&server).await;
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: fl")
            .await
            .unwrap();
        assert!(
            closed_within(&mut slow, Duration::from_secs(10))
                .await
                .is_some()
        );
        // Two connections without a certificate are served; a third is closed at once.
        let mut first = anonymous_connection(&server).await;
        let mut second = anonymous_connection(&server).await;
        healthz(&mut first).await;
        healthz(&mut second).await;
        let mut surplus = anonymous_connection(&server).await;
        let refused = closed_within(&mut surplus, Duration::from_secs(10)).await;
        assert!(
            refused.is_some_and(|after| after < Duration::from_millis(900)),
            "{refused:?}"
        );
        // ...and even those that behave are closed after their short life.
        let mut lived = Duration::ZERO;
        for _ in 0..10 {
            if closed_within(&mut first, Duration::from_millis(500))
                .await
                .is_some()
            {
                break;
            }
            healthz(&mut first).await;
            lived += Duration::from_millis(500);
        }
        assert!(
            lived < Duration::from_secs(5),
            "a connection without a certificate lived {lived:?}"
        );
    });
    // People with certificates are served throughout.
    server.ok(&["get", "namespaces"]);
}
