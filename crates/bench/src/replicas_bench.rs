//! The replicas benchmark: a 3-member etcd on 127.0.0.1, and 1, 2 then 3 `fleetdb serve`
//! replicas on it sharing one PKI (a copy of the first one's directory). Clients spread over
//! the replicas create hosts; then one etcd member (the leader) is killed and, once the
//! other two have elected a leader, the same load runs again. Printed: creates/s, p50 and p99 latency, and failed creates, per
//! replica count, healthy and with a member down.
//!
//! Every process shares this machine's cores, so the figures say what replicas and a lost
//! member cost relative to each other here, not what three machines would do.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::hosts;
use crate::server_process::{Backend, FleetdbProcess};
use crate::stats::Latencies;

const HOSTS: &str = "/apis/fleetdb.io/v1alpha1/hosts";

#[derive(clap::Args, Clone)]
pub struct ReplicasBenchArgs {
    /// Small sizes, so that a run takes seconds (what CI runs).
    #[arg(long)]
    quick: bool,
    /// Creates per measurement.
    #[arg(long)]
    creates: Option<usize>,
    /// Concurrent clients, spread over the replicas.
    #[arg(long, default_value_t = 32)]
    clients: usize,
}

struct Figures {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: usize,
}

pub async fn run(args: ReplicasBenchArgs) -> anyhow::Result<()> {
    let creates = args.creates.unwrap_or(if args.quick { 300 } else { 4000 });
    let replica_counts: &[usize] = if args.quick { &[1, 2] } else { &[1, 2, 3] };
    println!(
        "## replicas: a 3-member etcd, {creates} host creates per measurement by {} clients spread over the replicas",
        args.clients
    );
    println!();
    println!(
        "| replicas | creates/s | p50 | p99 | failed | creates/s, a member down | p50 | p99 | failed |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (round, &count) in replica_counts.iter().enumerate() {
        let mut cluster = fleetdb_testkit::EtcdCluster::start(3);
        let endpoints = cluster.client_urls().join(",");
        let dirs: Vec<tempfile::TempDir> = (0..count)
            .map(|_| tempfile::tempdir())
            .collect::<Result<_, _>>()?;
        let mut replicas = Vec::with_capacity(count);
        for (i, dir) in dirs.iter().enumerate() {
            if i > 0 {
                copy_dir(&dirs[0].path().join("pki"), &dir.path().join("pki"))?;
            }
            let backend = Backend::Etcd {
                endpoint: endpoints.clone(),
                prefix: format!("/bench-{round}"),
            };
            replicas.push(FleetdbProcess::start(dir.path(), backend).await?);
        }
        let healthy = measure(&replicas, "a", creates, args.clients).await?;
        let leader = cluster
            .leader()
            .ok_or_else(|| anyhow::anyhow!("the etcd cluster has no leader"))?;
        cluster.kill(leader);
        // Measured once the two left have elected a leader (what a member down costs, not
        // the election: the failover test covers that).
        let deadline = Instant::now() + Duration::from_secs(20);
        while cluster.leader().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let degraded = measure(&replicas, "b", creates, args.clients).await?;
        println!(
            "| {count} | {:.0} | {:.1} ms | {:.1} ms | {} | {:.0} | {:.1} ms | {:.1} ms | {} |",
            healthy.per_second,
            healthy.p50_ms,
            healthy.p99_ms,
            healthy.failed,
            degraded.per_second,
            degraded.p50_ms,
            degraded.p99_ms,
            degraded.failed
        );
        drop(replicas);
        drop(cluster);
    }
    Ok(())
}

/// `creates` hosts named with `prefix`, by `clients` clients, client `k` on replica
/// `k % replicas`; a create that fails is counted, not retried.
async fn measure(
    replicas: &[FleetdbProcess],
    prefix: &str,
    creates: usize,
    clients: usize,
) -> anyhow::Result<Figures> {
    let mut connections = Vec::with_capacity(clients);
    for k in 0..clients {
        connections.push(replicas[k % replicas.len()].connect().await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (k, connection) in connections.into_iter().enumerate() {
        let prefix = prefix.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            let mut failed = 0;
            for i in (k..creates).step_by(clients) {
                let body: Bytes = hosts::host_bytes(&prefix, i);
                let sent = Instant::now();
                let answer = tokio::time::timeout(
                    Duration::from_secs(60),
                    connection.call(Method::POST, HOSTS, Some("application/json"), body),
                )
                .await;
                match answer {
                    Ok(Ok((StatusCode::CREATED, _))) => latencies.record(sent.elapsed()),
                    _ => failed += 1,
                }
            }
            (latencies, failed)
        }));
    }
    let mut latencies = Latencies::default();
    let mut failed = 0;
    for task in tasks {
        let (l, f) = task.await?;
        latencies.extend(l);
        failed += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Figures {
        per_second: latencies.len() as f64 / elapsed,
        p50_ms: latencies.quantile_ms(0.5),
        p99_ms: latencies.quantile_ms(0.99),
        failed,
    })
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}
