//! `fleetdb-bench rollout`: one Rollout over N hosts (default 10,000) run by a
//! `fleetdb controllers` process against `fleetdb serve`, with simulated agents that report
//! each run a moment after it is given: `maxUnavailable: 5%` and `maxPerTopology` one host
//! per rack (100 racks), so at most 100 hosts are in progress at once.
//!
//! Prints the time from creating the Rollout to its `Completed` phase, the controllers'
//! CPU time and memory, and the API requests they sent per host (counted in the server's
//! audit log, by user).

use std::collections::HashSet;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api_bench::{LOAD_CLIENTS, create_hosts};
use crate::h2client::H2;
use crate::server_process::{Backend, FleetdbProcess, cpu_of, fleetdb_binary, rss_of};

const HOSTS: &str = "/apis/fleetdb.io/v1alpha1/hosts";
const ROLLOUTS: &str = "/apis/fleetdb.io/v1alpha1/rollouts";
const NAME: &str = "bench";
/// Longest wait for the rollout to complete.
const TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(clap::Args)]
pub struct RolloutBenchArgs {
    /// Hosts in the rollout.
    #[arg(long, default_value_t = 10_000)]
    pub hosts: usize,
    /// Milliseconds a simulated agent takes to run the rollout's command.
    #[arg(long, default_value_t = 500)]
    pub run_ms: u64,
    /// 500 hosts (what CI runs; it never judges the figures).
    #[arg(long)]
    pub quick: bool,
    /// Where the server keeps its data (default: a temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// The simulated agents: a watch of the hosts in progress; each new one is reported
/// Succeeded `run` later.
async fn agents(
    admin: H2,
    run: Duration,
    reported: Arc<Mutex<HashSet<String>>>,
) -> anyhow::Result<()> {
    let path = format!("{HOSTS}?watch=1&labelSelector=rollout.fleetdb.io%2F{NAME}%3DInProgress");
    let response = admin
        .start_accepting(Method::GET, &path, "application/json")
        .await?;
    anyhow::ensure!(
        response.status() == StatusCode::OK,
        "agents' watch: {}",
        response.status()
    );
    let mut body = response.into_body();
    let mut line = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        line.extend_from_slice(&data);
        while let Some(end) = line.iter().position(|&b| b == b'\n') {
            let event: Vec<u8> = line.drain(..=end).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&event) else {
                continue;
            };
            let Some(name) = event["object"]["metadata"]["name"].as_str() else {
                continue;
            };
            let has_run = event["object"]["spec"]["runs"]
                .as_array()
                .is_some_and(|runs| runs.iter().any(|r| r["id"] == format!("rollout-{NAME}")));
            if !has_run || !reported.lock().unwrap().insert(name.to_owned()) {
                continue;
            }
            let admin = admin.clone();
            let name = name.to_owned();
            tokio::spawn(async move {
                tokio::time::sleep(run).await;
                let patch = json!({"status": {"agent": {"runs": [{"id": format!("rollout-{NAME}"), "phase": "Succeeded"}]}}});
                let _ = admin
                    .call(
                        Method::PATCH,
                        &format!("{HOSTS}/{name}/status"),
                        Some("application/merge-patch+json"),
                        Bytes::from(patch.to_string()),
                    )
                    .await;
            });
        }
    }
    Ok(())
}

/// Requests of `user` in an audit log (one event per line, at stage ResponseComplete).
fn requests_of(audit_log: &std::path::Path, user: &str) -> anyhow::Result<usize> {
    let file = std::fs::File::open(audit_log)?;
    let needle = format!("\"username\":\"{user}\"");
    let mut count = 0;
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if line.contains(&needle) && line.contains("\"stage\":\"ResponseComplete\"") {
            count += 1;
        }
    }
    Ok(count)
}

pub async fn run(args: RolloutBenchArgs) -> anyhow::Result<()> {
    let hosts = if args.quick { 500 } else { args.hosts };
    let temporary = tempfile::tempdir()?;
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temporary.path().to_owned());
    let audit_log = dir.join("audit.log");
    // The controllers' requests only, in one file that never rotates.
    let policy = dir.join("audit-policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  users: [\"{}\"]\n- level: None\n",
            fleetdb::controllers::USER
        ),
    )?;
    let server = FleetdbProcess::start_with(
        &dir.join("server"),
        Backend::Embedded,
        &[
            "--audit-log-path",
            audit_log.to_str().context("a UTF-8 path")?,
            "--audit-policy-file",
            policy.to_str().context("a UTF-8 path")?,
            "--audit-log-maxsize",
            "100000",
        ],
    )
    .await?;
    println!(
        "## rollout: {hosts} hosts, maxUnavailable 5%, one host per rack (100 racks), agents answer in {} ms",
        args.run_ms
    );
    create_hosts(&server, "host-", 0..hosts, LOAD_CLIENTS).await?;

    let kubeconfig = dir.join("controllers.kubeconfig");
    let issued = fleetdb_apiserver::pki::user_kubeconfig(
        &server.data_dir.join("pki"),
        &format!("https://{}", server.address()),
        fleetdb::controllers::USER,
        &[fleetdb::controllers::GROUP],
        1,
    )?;
    fleetdb::write_private(&kubeconfig, &issued.kubeconfig)?;
    let mut controllers = Command::new(fleetdb_binary()?)
        .args(["controllers", "--kubeconfig"])
        .arg(&kubeconfig)
        .env("FLEETDB_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting fleetdb controllers")?;
    let admin = server.connect().await?;
    let reported = Arc::new(Mutex::new(HashSet::new()));
    let agents = tokio::spawn(agents(
        server.connect().await?,
        Duration::from_millis(args.run_ms),
        reported.clone(),
    ));
    // The controllers' start (leadership, their first lists) is not the rollout's time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_before = cpu_of(controllers.id())?;
    let requests_before = requests_of(&audit_log, fleetdb::controllers::USER)?;
    let rollout = json!({
        "apiVersion": "fleetdb.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": NAME},
        "spec": {
            "selector": {"matchExpressions": [{"key": "fleetdb.io/rack", "operator": "Exists"}]},
            "run": {"command": ["/usr/bin/true"]},
            "maxUnavailable": "5%",
            "maxPerTopology": [{"key": "fleetdb.io/rack", "max": 1}],
        },
    });
    let started = Instant::now();
    let (status, answer) = admin
        .call(
            Method::POST,
            ROLLOUTS,
            Some("application/json"),
            Bytes::from(rollout.to_string()),
        )
        .await?;
    anyhow::ensure!(
        status == StatusCode::CREATED,
        "rollout: {status}: {}",
        String::from_utf8_lossy(&answer)
    );
    let mut peak_rss = 0;
    let status = loop {
        let body = admin.get(&format!("{ROLLOUTS}/{NAME}")).await?;
        let object: Value = serde_json::from_slice(&body)?;
        peak_rss = peak_rss.max(rss_of(controllers.id()).unwrap_or(0));
        if object["status"]["phase"] == "Completed" {
            break object["status"].clone();
        }
        anyhow::ensure!(
            started.elapsed() < TIMEOUT,
            "the rollout did not complete: {}",
            object["status"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let elapsed = started.elapsed();
    let cpu = cpu_of(controllers.id())? - cpu_before;
    // The audit writer is asynchronous: let it catch up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let requests = requests_of(&audit_log, fleetdb::controllers::USER)? - requests_before;
    let _ = controllers.kill();
    let _ = controllers.wait();
    agents.abort();
    anyhow::ensure!(
        status["succeeded"] == hosts,
        "not every host succeeded: {status}"
    );
    println!(
        "| hosts | time to complete | hosts/s | controllers' CPU | CPU per host | controllers' peak RSS | API requests per host |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {hosts} | {:.1} s | {:.1} | {cpu:.1} s | {:.2} ms | {} MiB | {:.2} |",
        elapsed.as_secs_f64(),
        hosts as f64 / elapsed.as_secs_f64(),
        cpu * 1000.0 / hosts as f64,
        peak_rss >> 20,
        requests as f64 / hosts as f64
    );
    Ok(())
}
