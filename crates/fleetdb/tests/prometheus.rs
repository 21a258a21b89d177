//! Prometheus discovery with the real Prometheus (Debian package `prometheus`, started on
//! 127.0.0.1 with a generated configuration): `http_sd_configs` pointing at fleetdb's
//! `/sd/prometheus` over TLS with a client certificate, and `file_sd_configs` fed by
//! `fleetdb monitor`. Adding a host and putting another into maintenance changes both target
//! lists at the next refresh, without restarting anything.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use support::{Backend, Fleetdb};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn prometheus_binary() -> std::path::PathBuf {
    fleetdb_testkit::find_executable("FLEETDB_PROMETHEUS_BIN", &["prometheus"], &["/usr/bin"])
        .expect("prometheus is not installed: run scripts/setup.sh (apt-get install prometheus)")
}

/// A field of the kubeconfig, base64-decoded into a PEM file.
fn pem_from_kubeconfig(kubeconfig: &str, field: &str, path: &std::path::Path) {
    let line = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{field}: ")))
        .unwrap_or_else(|| panic!("{field} missing in the kubeconfig"));
    let pem = base64::engine::general_purpose::STANDARD
        .decode(line.trim())
        .unwrap();
    std::fs::write(path, pem).unwrap();
}

/// GET over plain HTTP/1.0 (Prometheus' own API on 127.0.0.1).
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
}

/// The targets Prometheus has discovered, per scrape pool.
fn targets(port: u16, pool: &str) -> BTreeSet<String> {
    let Some(body) = http_get(port, "/api/v1/targets") else {
        return BTreeSet::new();
    };
    let Ok(response) = serde_json::from_str::<Value>(&body) else {
        return BTreeSet::new();
    };
    response["data"]["activeTargets"]
        .as_array()
        .map(|targets| {
            targets
                .iter()
                .filter(|t| t["scrapePool"] == pool)
                .filter_map(|t| t["labels"]["instance"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn wait_for(port: u16, pool: &str, expected: &[&str]) {
    let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = targets(port, pool);
        if seen == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pool}: expected {expected:?}, Prometheus has {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn fetch(server: &Fleetdb) {
    support::fetch_once(server, "lab");
}

#[test]
fn prometheus_follows_the_fleet() {
    let server = Fleetdb::start(Backend::Embedded);
    let csv = server.write(
        "lab.csv",
        "hostname,role,ips\nweb-1,web,10.0.0.1\nweb-2,web,10.0.0.2\ndb-1,db,10.0.0.3\n",
    );
    server.ok_input(
        &["apply", "-f", "-"],
        &format!("apiVersion: fleetdb.io/v1alpha1\nkind: Source\nmetadata: {{name: lab}}\nspec:\n  type: file\n  file: {{path: {}}}\n", csv.display()),
    );
    fetch(&server);

    // fleetdb monitor keeps file_sd targets in a directory, with the monitors' identity.
    let out = server.path().join("prometheus-sd");
    let (monitor_identity, _) = server.identity(
        "monitor.kubeconfig",
        &["--user", "fleetdb-monitor", "--group", "fleetdb:monitors"],
    );
    let _monitor = Running(
        Command::new(env!("CARGO_BIN_EXE_fleetdb"))
            .args(["monitor", "--port", "9100", "--kubeconfig"])
            .arg(&monitor_identity)
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Prometheus reaches fleetdb with a client certificate of its own, in the monitors'
    // group (which may read /sd/prometheus).
    let kubeconfig = String::from_utf8(
        Command::new(env!("CARGO_BIN_EXE_fleetdb"))
            .args([
                "kubeconfig",
                "--user",
                "prometheus",
                "--group",
                "fleetdb:monitors",
                "--data-dir",
            ])
            .arg(server.path().join("data"))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let tls = server.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    pem_from_kubeconfig(
        &kubeconfig,
        "certificate-authority-data",
        &tls.join("ca.crt"),
    );
    pem_from_kubeconfig(
        &kubeconfig,
        "client-certificate-data",
        &tls.join("client.crt"),
    );
    pem_from_kubeconfig(&kubeconfig, "client-key-data", &tls.join("client.key"));
    let web_port = fleetdb_testkit::free_port();
    let config = format!(
        r#"global: {{scrape_interval: 1h, evaluation_interval: 1h}}
scrape_configs:
- job_name: fleet-http
  http_sd_configs:
  - url: https://127.0.0.1:{fleetdb}/sd/prometheus?port=9100
    refresh_interval: 1s
    tls_config: {{ca_file: {tls}/ca.crt, cert_file: {tls}/client.crt, key_file: {tls}/client.key}}
- job_name: fleet-file
  file_sd_configs:
  - files: [{out}/hosts.json]
    refresh_interval: 1s
"#,
        fleetdb = server.port,
        tls = tls.display(),
        out = out.display(),
    );
    let config_path = server.write("prometheus.yml", &config);
    let _prometheus = Running(
        Command::new(prometheus_binary())
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{web_port}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                server.path().join("tsdb").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    wait_for(
        web_port,
        "fleet-http",
        &["10.0.0.1:9100", "10.0.0.2:9100", "10.0.0.3:9100"],
    );
    wait_for(
        web_port,
        "fleet-file",
        &["10.0.0.1:9100", "10.0.0.2:9100", "10.0.0.3:9100"],
    );
    assert!(
        out.join("rules").join("web.yml").exists(),
        "alert rules per role"
    );

    // A new host arrives; another goes into maintenance.
    server.write("lab.csv", "hostname,role,ips\nweb-1,web,10.0.0.1\nweb-2,web,10.0.0.2\ndb-1,db,10.0.0.3\ndb-2,db,10.0.0.4\n");
    fetch(&server);
    server.ok(&[
        "patch",
        "host",
        "web-2",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"maintenance":true}}"#,
    ]);
    wait_for(
        web_port,
        "fleet-http",
        &["10.0.0.1:9100", "10.0.0.3:9100", "10.0.0.4:9100"],
    );
    wait_for(
        web_port,
        "fleet-file",
        &["10.0.0.1:9100", "10.0.0.3:9100", "10.0.0.4:9100"],
    );

    // The endpoint filters by label selector and needs credentials like every other path.
    let filtered = server.ok(&[
        "get",
        "--raw",
        "/sd/prometheus?port=9100&labelSelector=fleetdb.io%2Frole%3Ddb",
    ]);
    let groups: Value = serde_json::from_str(&filtered).unwrap();
    assert_eq!(groups.as_array().unwrap().len(), 2, "{groups}");
    assert_eq!(groups[0]["labels"]["__meta_fleetdb_role"], "db");
}
