//! `fleetdb`: one binary, thin subcommands over the library crates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use fleetdb_store::Store;
use fleetdb_store::embedded::EmbeddedStore;
use fleetdb_store::etcd::{EtcdOptions, EtcdStore};
use fleetdb_store::retention::{Retention, RetentionPolicy};

#[derive(Parser)]
#[command(
    name = "fleetdb",
    version,
    about = "An inventory control plane for infrastructure fleets that speaks the Kubernetes API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum StoreKind {
    Embedded,
    Etcd,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Kubernetes API over HTTPS (mutual TLS).
    Serve {
        /// Where data, certificates and the admin kubeconfig live.
        #[arg(long, default_value = "./fleetdb-data", env = "FLEETDB_DATA_DIR")]
        data_dir: PathBuf,
        /// Address and port to listen on.
        #[arg(long, default_value = "127.0.0.1:6443", env = "FLEETDB_LISTEN")]
        listen: SocketAddr,
        /// Host name clients use to reach the server, for its certificate and the kubeconfig
        /// (default: the listen address, or 127.0.0.1 when listening on all addresses).
        #[arg(long, env = "FLEETDB_ADVERTISE_HOST")]
        advertise_host: Option<String>,
        /// Storage backend.
        #[arg(long, value_enum, default_value = "embedded", env = "FLEETDB_STORE")]
        store: StoreKind,
        /// etcd client URLs, comma separated (with --store etcd).
        #[arg(long, value_delimiter = ',', env = "FLEETDB_ETCD_ENDPOINTS")]
        etcd_endpoints: Vec<String>,
        /// Key prefix in etcd, so several installations can share one cluster.
        #[arg(long, default_value = fleetdb_store::etcd::DEFAULT_ROOT)]
        etcd_prefix: String,
        /// How long the history of changes is kept, in days.
        #[arg(long, default_value_t = 30)]
        history_days: u64,
    },
    /// Print a kubeconfig for a new identity, with a client certificate signed by this
    /// server's CA (for fetchers and other tools that run elsewhere).
    Kubeconfig {
        /// The data directory of the server (where its CA is).
        #[arg(long, default_value = "./fleetdb-data", env = "FLEETDB_DATA_DIR")]
        data_dir: PathBuf,
        /// The user name (certificate CN), e.g. `fetcher-pdx`.
        #[arg(long)]
        user: String,
        /// A group (certificate O), e.g. `fleetdb:fetchers`.
        #[arg(long)]
        group: Option<String>,
        /// The URL the tool reaches the server at.
        #[arg(long, default_value = "https://127.0.0.1:6443")]
        server: String,
    },
    /// Run the fetcher of one Source: enumerate its hosts and keep their Host records current.
    Fetch {
        /// The Source object to sync (`kubectl get sources`).
        #[arg(long)]
        source: String,
        /// Kubeconfig to reach fleetdb with (default: $KUBECONFIG, then ~/.kube/config).
        #[arg(long, env = "FLEETDB_KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
        /// Sync once and exit (non-zero when the sync failed) instead of at the Source's interval.
        #[arg(long)]
        once: bool,
    },
}

/// A kube-rs client from an explicit kubeconfig, or from the usual lookup.
async fn client(kubeconfig: Option<PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(&path)
                .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig found: pass --kubeconfig or set KUBECONFIG")?,
    };
    Ok(kube::Client::try_from(config)?)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLEETDB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve {
            data_dir,
            listen,
            advertise_host,
            store,
            etcd_endpoints,
            etcd_prefix,
            history_days,
        } => runtime.block_on(async move {
            std::fs::create_dir_all(&data_dir).with_context(|| {
                format!("cannot create the data directory {}", data_dir.display())
            })?;
            let store: Arc<dyn Store> = match store {
                StoreKind::Embedded => Arc::new(
                    EmbeddedStore::open(data_dir.join("store"))
                        .context("cannot open the embedded store")?,
                ),
                StoreKind::Etcd => {
                    if etcd_endpoints.is_empty() {
                        anyhow::bail!(
                            "--store etcd needs --etcd-endpoints, e.g. http://127.0.0.1:2379"
                        );
                    }
                    let mut options = EtcdOptions::new(etcd_endpoints);
                    options.root = etcd_prefix;
                    Arc::new(
                        EtcdStore::connect(options)
                            .await
                            .context("cannot reach etcd")?,
                    )
                }
            };
            let retention = Retention::new(
                store.clone(),
                RetentionPolicy {
                    keep: Duration::from_secs(history_days * 24 * 60 * 60),
                    ..RetentionPolicy::default()
                },
            );
            let retention = tokio::spawn(retention.run());
            let config = fleetdb_apiserver::ServeConfig {
                data_dir,
                listen,
                advertise_host,
                definitions: fleetdb_fleet::crd_documents(),
            };
            let result = fleetdb_apiserver::serve(store, config, shutdown_signal()).await;
            retention.abort();
            result.map_err(|e| anyhow::anyhow!(e))
        }),
        Command::Kubeconfig {
            data_dir,
            user,
            group,
            server,
        } => {
            let kubeconfig = fleetdb_apiserver::pki::user_kubeconfig(&data_dir, &server, &user, group.as_deref())?;
            print!("{kubeconfig}");
            Ok(())
        }
        Command::Fetch {
            source,
            kubeconfig,
            once,
        } => runtime.block_on(async move {
            let client = client(kubeconfig).await?;
            if once {
                let report = fleetdb_fetch::sync_once(client, &source).await?;
                println!(
                    "source {source}: {} hosts seen, {} created, {} updated, {} unchanged, {} gone, {} bad rows",
                    report.seen, report.created, report.updated, report.unchanged, report.gone, report.problems.len()
                );
                for problem in &report.problems {
                    eprintln!("line {}: {}", problem.line, problem.message);
                }
                if !report.failures.is_empty() {
                    anyhow::bail!("{} hosts could not be written: {}", report.failures.len(), report.failures.join("; "));
                }
                Ok(())
            } else {
                fleetdb_fetch::run(client, &source, shutdown_signal()).await;
                Ok(())
            }
        }),
    }
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
