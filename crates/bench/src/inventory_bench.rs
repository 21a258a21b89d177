//! The inventory benchmark: N Hosts in fleetdb (seeded straight into the embedded store, then
//! served over HTTPS by an in-process server), and the time `fleetdb ansible-inventory --list`
//! needs to read them all and build the inventory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fleetdb_export::inventory::{InventoryConfig, build};
use fleetdb_export::list_hosts;
use fleetdb_store::embedded::EmbeddedStore;
use fleetdb_store::{Condition, Store};
use serde_json::json;

#[derive(clap::Args, Clone)]
pub struct InventoryBenchArgs {
    /// Hosts in fleetdb.
    #[arg(long, default_value_t = 100_000)]
    hosts: usize,
}

/// A Host as a fetcher would have written it (about 1.5 KiB of JSON).
fn host(i: usize) -> serde_json::Value {
    let name = format!("host-{i:07}");
    let region = ["pdx", "ams", "sin"][i % 3];
    let role = ["web", "db", "log", "cache"][i % 4];
    let team = ["infra", "data", "edge"][i % 3];
    json!({
        "apiVersion": "fleetdb.io/v1alpha1",
        "kind": "Host",
        "metadata": {
            "name": name,
            "uid": format!("00000000-0000-4000-8000-{i:012}"),
            "creationTimestamp": "2026-11-01T00:00:00Z",
            "generation": 1,
            "labels": {
                "fleetdb.io/provider": "file",
                "fleetdb.io/region": region,
                "fleetdb.io/role": role,
                "fleetdb.io/team": team,
                "fleetdb.io/source": "bench",
            },
            "annotations": {"dcim.fleetdb.io/owner": format!("person{}", i % 97)},
        },
        "spec": {"role": role, "ansible": {"ntp_server": "10.0.0.1"}},
        "status": {
            "provider": {"type": "file", "account": "bench", "id": format!("SN{i}")},
            "region": region,
            "datacenter": region,
            "rack": format!("r{}", i % 40),
            "addresses": [{"type": "InternalIP", "address": format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256)}],
            "hardware": {"cpus": 32, "memory": "128Gi", "model": "PowerEdge R650", "disks": [{"size": "960Gi", "type": "ssd"}]},
            "os": "debian-12",
            "state": "Running",
            "firstSeen": "2026-11-01T00:00:00Z",
            "conditions": [{"type": "Present", "status": "True", "reason": "Reported", "message": "reported by source bench", "lastTransitionTime": "2026-11-01T00:00:00Z"}],
        },
    })
}

pub async fn run(args: InventoryBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(EmbeddedStore::open(dir.path().join("store"))?);
    let seeding = Instant::now();
    let writers = 64;
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = store.clone();
        let hosts = args.hosts;
        tasks.push(tokio::spawn(async move {
            for i in (writer..hosts).step_by(writers) {
                let value = Bytes::from(serde_json::to_vec(&host(i))?);
                store
                    .put(
                        &format!("/registry/fleetdb.io/hosts/host-{i:07}"),
                        value,
                        Condition::Always,
                    )
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    println!(
        "seeded {} hosts into the store in {:.1} s",
        args.hosts,
        seeding.elapsed().as_secs_f64()
    );

    let (client, stop, server) =
        crate::fetch_bench::serve(dir.path(), store as Arc<dyn Store>).await?;
    let config = InventoryConfig {
        stale_after: None,
        ..InventoryConfig::default()
    };
    let mut times = Vec::new();
    let mut size = 0;
    let mut groups = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let hosts = list_hosts(client.clone()).await?;
        let inventory = build(&hosts, &config, time::OffsetDateTime::now_utc())?.document;
        let text = inventory.to_string();
        times.push(started.elapsed());
        anyhow::ensure!(
            hosts.len() == args.hosts,
            "listed {} hosts of {}",
            hosts.len(),
            args.hosts
        );
        size = text.len();
        groups = inventory.as_object().map(|o| o.len() - 1).unwrap_or(0);
    }
    times.sort();
    let median: Duration = times[1];
    println!("\n| hosts | inventory --list (median of 3) | hosts/s | JSON size | groups |");
    println!("|---|---|---|---|---|");
    println!(
        "| {} | {:.2} s | {:.0} | {:.1} MiB | {} |",
        args.hosts,
        median.as_secs_f64(),
        args.hosts as f64 / median.as_secs_f64(),
        size as f64 / (1 << 20) as f64,
        groups
    );
    println!(
        "\nOne paginated list (2000 per page) over HTTPS, then the inventory built in memory."
    );
    let _ = stop.send(());
    let _ = server.await;
    Ok(())
}
