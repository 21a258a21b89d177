//! `fleetdb-bench agents`: the server under a fleet of host agents (`fleetdb serve` on the
//! embedded store, driven over HTTPS with HTTP/2, one TLS connection per agent).
//!
//! * **joining**: N agents at once with one auto-approve bootstrap token, as `fleetdb agent`
//!   joins — key made by the agent, a CertificateSigningRequest filed with the token, polled
//!   until the server's certificate controller has approved and signed it, then the Host
//!   created with the new certificate: the time until every agent has its certificate and
//!   its Host.
//! * **heartbeats**: M agents, each with a certificate of its own host identity
//!   (`fleetdb:host:<name>`, issued by the CA as the signer would), each doing every
//!   interval what `fleetdb agent` does — renew its Lease, read its Host — and every sixth
//!   interval (a minute at the default ten seconds) apply its facts to the Host's status,
//!   spread evenly: the renewal latency (p50, p99) and the server's CPU share while it
//!   lasts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;

use crate::h2client::{Credentials, H2};
use crate::server_process::{Backend, FleetdbProcess};
use crate::stats::Latencies;

const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
const HOSTS: &str = "/apis/fleetdb.io/v1alpha1/hosts";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/fleetdb-system/leases";
/// Agents connecting at the same time while the heartbeat fleet is set up.
const CONNECT_CONCURRENCY: usize = 64;
/// How often a joining agent looks at its request.
const POLL: Duration = Duration::from_millis(200);

#[derive(clap::Args)]
pub struct AgentsBenchArgs {
    /// Agents joining at once.
    #[arg(long, default_value_t = 1_000)]
    pub joiners: usize,
    /// Agents heartbeating.
    #[arg(long, default_value_t = 10_000)]
    pub agents: usize,
    /// Seconds between two heartbeats of one agent.
    #[arg(long, default_value_t = 10)]
    pub interval_seconds: u64,
    /// Seconds the heartbeats are measured for.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Shrink everything to a run of seconds (what CI runs; it never judges the figures).
    #[arg(long)]
    pub quick: bool,
    /// Where the server keeps its data (default: a temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Most times a request answered `429 Too Many Requests` is sent again (after the
/// `Retry-After` second, as client-go does).
const MAX_RETRIES: usize = 60;

/// One request, sent again while the server answers 429 (one token is one identity, and
/// its requests in flight are limited like anyone's).
async fn call(
    client: &H2,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Bytes,
) -> anyhow::Result<(StatusCode, Bytes)> {
    for _ in 0..MAX_RETRIES {
        let (status, answer) = client
            .call(method.clone(), path, content_type, body.clone())
            .await?;
        if status != StatusCode::TOO_MANY_REQUESTS {
            return Ok((status, answer));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    anyhow::bail!("{path}: still 429 after {MAX_RETRIES} tries")
}

async fn expect(
    client: &H2,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Bytes,
    ok: &[StatusCode],
) -> anyhow::Result<Bytes> {
    let (status, answer) = call(client, method, path, content_type, body).await?;
    anyhow::ensure!(
        ok.contains(&status),
        "{path}: {status}: {}",
        String::from_utf8_lossy(&answer[..answer.len().min(300)])
    );
    Ok(answer)
}

/// An agent creating its own Host, as `fleetdb agent` does when no fetcher recorded it.
async fn create_host(client: &H2, name: &str) -> anyhow::Result<()> {
    let host = json!({"apiVersion": "fleetdb.io/v1alpha1", "kind": "Host", "metadata": {"name": name}, "spec": {}});
    expect(
        client,
        Method::POST,
        HOSTS,
        Some("application/json"),
        Bytes::from(host.to_string()),
        &[StatusCode::CREATED],
    )
    .await?;
    Ok(())
}

/// One agent joining: its key and request, the certificate, then its Host.
async fn join(server: &FleetdbProcess, token: &str, name: &str) -> anyhow::Result<()> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(rcgen::DnType::CommonName, format!("fleetdb:host:{name}"));
    subject.push(rcgen::DnType::OrganizationName, "fleetdb:hosts");
    params.distinguished_name = subject;
    let request = params.serialize_request(&key)?.pem()?;
    let anonymous = Credentials::with_token(&server.data_dir, server.address(), token)?
        .connect()
        .await?;
    let csr = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"request": STANDARD.encode(request), "signerName": "fleetdb.io/host", "usages": ["client auth", "digital signature"]},
    });
    expect(
        &anonymous,
        Method::POST,
        CSRS,
        Some("application/json"),
        Bytes::from(csr.to_string()),
        &[StatusCode::CREATED],
    )
    .await?;
    let certificate = loop {
        let body = expect(
            &anonymous,
            Method::GET,
            &format!("{CSRS}/{name}"),
            None,
            Bytes::new(),
            &[StatusCode::OK],
        )
        .await?;
        let object: serde_json::Value = serde_json::from_slice(&body)?;
        if let Some(certificate) = object["status"]["certificate"].as_str() {
            break STANDARD.decode(certificate)?;
        }
        anyhow::ensure!(
            object["status"]["conditions"].as_array().is_none_or(|c| !c
                .iter()
                .any(|c| c["type"] == "Denied" || c["type"] == "Failed")),
            "{name}: {}",
            object["status"]
        );
        tokio::time::sleep(POLL).await;
    };
    let agent = Credentials::from_pem(
        &server.data_dir,
        server.address(),
        &certificate,
        key.serialize_pem().as_bytes(),
    )?
    .connect()
    .await?;
    create_host(&agent, name).await
}

async fn joining(server: &FleetdbProcess, joiners: usize) -> anyhow::Result<()> {
    let admin = server.connect().await?;
    let token = fleetdb::tokens::generate();
    let secret = fleetdb::tokens::secret(
        &token,
        Duration::from_secs(3600),
        Some("benchmark"),
        true,
        time::OffsetDateTime::now_utc(),
    )
    .context("a token")?;
    expect(
        &admin,
        Method::POST,
        "/api/v1/namespaces/kube-system/secrets",
        Some("application/json"),
        Bytes::from(secret.to_string()),
        &[StatusCode::CREATED],
    )
    .await?;
    let cpu_before = server.cpu_seconds()?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..joiners {
        let token = token.clone();
        let name = format!("joiner-{i}");
        let server_ref: &FleetdbProcess = server;
        // Each agent is its own task over its own connection; all start together.
        tasks.push(async move { join(server_ref, &token, &name).await });
    }
    let results = futures::future::join_all(tasks).await;
    let elapsed = started.elapsed();
    let failed = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(error)) = results.iter().find(|r| r.is_err()) {
        println!("first failure: {error:#}");
    }
    let cpu = server.cpu_seconds()? - cpu_before;
    println!("\n## joining: {joiners} agents at once with one auto-approve token\n");
    println!(
        "| agents | all with a certificate and a Host, s | per agent, ms (wall / server CPU) | failed |"
    );
    println!("|---|---|---|---|");
    println!(
        "| {joiners} | {:.2} | {:.2} / {:.2} | {failed} |",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / joiners as f64,
        cpu * 1000.0 / joiners as f64,
    );
    Ok(())
}

async fn heartbeats(
    server: &FleetdbProcess,
    agents: usize,
    interval: Duration,
    measured: Duration,
) -> anyhow::Result<()> {
    // Identities and connections, CONNECT_CONCURRENCY at a time.
    let setup = Instant::now();
    let mut clients: Vec<H2> = Vec::with_capacity(agents);
    for chunk in (0..agents).collect::<Vec<_>>().chunks(CONNECT_CONCURRENCY) {
        let connected = futures::future::join_all(chunk.iter().map(|&i| async move {
            let name = format!("agent-{i}");
            let credentials = Credentials::for_user(
                &server.data_dir,
                server.address(),
                &format!("fleetdb:host:{name}"),
                &["fleetdb:hosts"],
            )?;
            let client = credentials.connect().await?;
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": "fleetdb-system"},
                "spec": {"holderIdentity": format!("fleetdb:host:{name}"), "leaseDurationSeconds": 40},
            });
            expect(
                &client,
                Method::POST,
                LEASES,
                Some("application/json"),
                Bytes::from(lease.to_string()),
                &[StatusCode::CREATED],
            )
            .await?;
            create_host(&client, &name).await?;
            anyhow::Ok(client)
        }))
        .await;
        for client in connected {
            clients.push(client?);
        }
    }
    let setup = setup.elapsed();
    let rss_before = server.rss_bytes()?;
    let cpu_before = server.cpu_seconds()?;
    let started = Instant::now();
    let deadline = started + measured;
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let failures = failures.clone();
            tokio::spawn(async move {
                let mut latencies = Latencies::default();
                // Spread evenly over the interval, as agents started at random times are.
                let offset = interval.mul_f64(i as f64 / agents as f64);
                let mut next = started + offset;
                let path = format!("{LEASES}/agent-{i}");
                let host = format!("{HOSTS}/agent-{i}");
                let facts = format!("{host}/status?fieldManager=fleetdb-agent&force=true");
                let mut tick = 0u64;
                while next < deadline {
                    tokio::time::sleep_until(next.into()).await;
                    let renew = json!({"spec": {"renewTime": fleetdb_apiserver::registry::now()}});
                    let sent = Instant::now();
                    match client
                        .call(
                            Method::PATCH,
                            &path,
                            Some("application/merge-patch+json"),
                            Bytes::from(renew.to_string()),
                        )
                        .await
                    {
                        Ok((StatusCode::OK, _)) => latencies.record(sent.elapsed()),
                        _ => {
                            failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    let read = client.call(Method::GET, &host, None, Bytes::new()).await;
                    let reported = if tick.is_multiple_of(6) {
                        let report = json!({
                            "apiVersion": "fleetdb.io/v1alpha1",
                            "kind": "Host",
                            "metadata": {"name": format!("agent-{i}")},
                            "status": {"agent": {"cpus": 2, "memoryBytes": 8u64 << 30, "lastSeen": fleetdb_apiserver::registry::now()}},
                        });
                        client
                            .call(
                                Method::PATCH,
                                &facts,
                                Some("application/apply-patch+yaml"),
                                Bytes::from(report.to_string()),
                            )
                            .await
                            .map(|(status, _)| status)
                    } else {
                        Ok(StatusCode::OK)
                    };
                    if !matches!(read, Ok((StatusCode::OK, _))) || !matches!(reported, Ok(StatusCode::OK)) {
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    tick += 1;
                    next += interval;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Latencies::default();
    let mut renewals = 0usize;
    for task in tasks {
        let mut one = task.await?;
        renewals += one.len();
        latencies.extend(std::mem::take(&mut one));
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = server.cpu_seconds()? - cpu_before;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let rss_after = server.rss_bytes()?;
    println!(
        "\n## heartbeats: {agents} agents, each renewing its Lease and reading its Host every {} s and applying its facts every sixth time, for {} s (one TLS connection per agent; set up in {:.1} s)\n",
        interval.as_secs(),
        measured.as_secs(),
        setup.as_secs_f64()
    );
    println!(
        "| renewals/s | p50 ms | p99 ms | failed | server CPU (of one core / of the machine) | server RSS, MiB |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {:.0} | {:.2} | {:.2} | {} | {:.0} % / {:.0} % | {} |",
        renewals as f64 / wall,
        latencies.quantile_ms(0.5),
        latencies.quantile_ms(0.99),
        failures.load(std::sync::atomic::Ordering::Relaxed),
        cpu / wall * 100.0,
        cpu / wall / cores * 100.0,
        rss_before.max(rss_after) / (1024 * 1024),
    );
    Ok(())
}

pub async fn run(args: AgentsBenchArgs) -> anyhow::Result<()> {
    let (joiners, agents, interval, seconds) = if args.quick {
        (20, 200, Duration::from_secs(1), Duration::from_secs(3))
    } else {
        (
            args.joiners,
            args.agents,
            Duration::from_secs(args.interval_seconds),
            Duration::from_secs(args.seconds),
        )
    };
    let temporary = tempfile::tempdir()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temporary.path().join("data"));
    // Joining agents have no certificate yet: the server must accept as many connections
    // without one as agents join at once.
    let anonymous = (joiners + 64).to_string();
    let server = FleetdbProcess::start_with(
        &data_dir,
        Backend::Embedded,
        &["--max-anonymous-connections", &anonymous],
    )
    .await?;
    println!(
        "fleetdb agents benchmark: {} cores, embedded store",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    joining(&server, joiners).await?;
    heartbeats(&server, agents, interval, seconds).await?;
    Ok(())
}
