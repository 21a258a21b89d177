//! The fetcher benchmark: a datacenter export of N hosts synced into an empty fleetdb (an
//! in-process server on the embedded store, over HTTPS like a real fetcher), then re-synced
//! unchanged. Prints the time of each sync and the host writes each issued.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetdb_fleet::{FileSource, Source, SourceSpec, SourceType};
use fleetdb_store::embedded::EmbeddedStore;
use kube::api::{Api, PostParams};

#[derive(clap::Args, Clone)]
pub struct FetchBenchArgs {
    /// Hosts in the export.
    #[arg(long, default_value_t = 10_000)]
    hosts: usize,
}

fn export(hosts: usize) -> String {
    let mut csv =
        String::from("hostname,serial,rack,datacenter,role,team,ips,cpus,memory,disks,os\n");
    for i in 0..hosts {
        csv.push_str(&format!(
            "host-{i:06},SN{i},r{},bench,{},{},10.{}.{}.{},{},64Gi,960Gi ssd,debian-12\n",
            i % 40,
            ["web", "db", "log"][i % 3],
            ["infra", "data"][i % 2],
            (i / 65536) % 256,
            (i / 256) % 256,
            i % 256,
            [8, 16, 32][i % 3],
        ));
    }
    csv
}

/// Serves `store` from `data_dir` in-process, assembled as `fleetdb serve` assembles it;
/// returns an admin client, the stop switch and the server task.
pub async fn serve(
    data_dir: &std::path::Path,
    store: Arc<dyn fleetdb_store::Store>,
) -> anyhow::Result<(
    kube::Client,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
)> {
    let port = fleetdb_testkit::free_port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut settings =
        fleetdb::ServerSettings::new(data_dir.to_owned(), ([127, 0, 0, 1], port).into());
    // The figures are the fetchers'; the controllers would add a watch of every host.
    settings.controllers = None;
    let server = tokio::spawn(async move {
        fleetdb::serve(store, &settings, async {
            let _ = stopped.await;
        })
        .await
    });
    // Wait until the server answers with its CRDs installed.
    let kubeconfig_path = data_dir.join("admin.kubeconfig");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        anyhow::ensure!(Instant::now() < deadline, "the server did not start");
        if let Ok(kubeconfig) = kube::config::Kubeconfig::read_from(&kubeconfig_path)
            && let Ok(config) =
                kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await
            && let Ok(client) = kube::Client::try_from(config)
            && Api::<Source>::all(client.clone())
                .list(&Default::default())
                .await
                .is_ok()
        {
            return Ok((client, stop, server));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn run(args: FetchBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(EmbeddedStore::open(dir.path().join("store"))?);
    let (client, stop, server) = serve(dir.path(), store).await?;

    let path = dir.path().join("export.csv");
    std::fs::write(&path, export(args.hosts))?;
    let source = Source::new(
        "bench",
        SourceSpec {
            type_: SourceType::File,
            file: Some(FileSource {
                path: path.to_string_lossy().into_owned(),
                ..FileSource::default()
            }),
            ..SourceSpec::default()
        },
    );
    Api::<Source>::all(client.clone())
        .create(&PostParams::default(), &source)
        .await?;

    println!(
        "fleetdb fetch benchmark: {} hosts from a CSV export, embedded store, HTTPS",
        args.hosts
    );
    let started = Instant::now();
    let policy = fleetdb_fetch::FetcherPolicy {
        allowed_dirs: vec![dir.path().to_owned()],
    };
    let first = fleetdb_fetch::sync_once(client.clone(), "bench", &policy).await?;
    let first_time = started.elapsed();
    let started = Instant::now();
    let second = fleetdb_fetch::sync_once(client.clone(), "bench", &policy).await?;
    let second_time = started.elapsed();
    anyhow::ensure!(
        first.created as usize == args.hosts,
        "created {} of {} hosts",
        first.created,
        args.hosts
    );

    println!();
    println!("| sync | time (s) | hosts/s | hosts created | hosts updated | host writes |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| into an empty fleetdb | {:.2} | {:.0} | {} | {} | {} |",
        first_time.as_secs_f64(),
        args.hosts as f64 / first_time.as_secs_f64(),
        first.created,
        first.updated,
        first.writes
    );
    println!(
        "| unchanged re-sync | {:.2} | {:.0} | {} | {} | {} |",
        second_time.as_secs_f64(),
        args.hosts as f64 / second_time.as_secs_f64(),
        second.created,
        second.updated,
        second.writes
    );
    println!(
        "\nA new host costs two writes (the object, then its status); the re-sync writes only the Source status."
    );
    let _ = stop.send(());
    let _ = server.await;
    Ok(())
}
