//! The fleetdb program as a library: how the server is assembled — the store (embedded or
//! etcd), history retention, the fleet's CRDs and the server's extensions (Prometheus
//! discovery) — once, for `fleetdb serve`, the tests and the benchmarks alike.

pub mod agent;
pub mod controllers;
pub mod discovery;
pub mod history;
pub mod joining;
pub mod migrate;
pub mod security;
pub mod tokens;
pub mod ui;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fleetdb_store::Store;
use fleetdb_store::embedded::EmbeddedStore;
use fleetdb_store::etcd::{EtcdOptions, EtcdStore};
use fleetdb_store::retention::{Retention, RetentionPolicy};

/// Which store the server keeps its data in.
#[derive(Clone, Debug)]
pub enum StoreSettings {
    /// The embedded store, in `<data dir>/store`.
    Embedded,
    /// An etcd cluster, under a key prefix.
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
    },
}

/// How `fleetdb serve` runs.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Where data, certificates and the admin kubeconfig live.
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Host names clients use to reach the server (every replica's when they share the
    /// PKI), when not the listen address.
    pub advertise_hosts: Vec<String>,
    /// The PKI directory (default `DATA_DIR/pki`).
    pub pki_dir: Option<PathBuf>,
    pub store: StoreSettings,
    /// How long the history of changes is kept.
    pub history_days: u64,
    /// What clients may hold (connections, requests in flight, watches).
    pub limits: fleetdb_apiserver::Limits,
    /// The audit log, when one is kept.
    pub audit: Option<fleetdb_apiserver::http::audit::AuditSettings>,
    /// How long host agents' certificates last.
    pub host_certificate_lifetime: Duration,
    /// The controllers run in the server's process with these settings (`None`: not here).
    pub controllers: Option<controllers::Settings>,
    /// How long a web UI session lasts.
    pub ui_session_lifetime: Duration,
}

impl ServerSettings {
    /// Where the CA and the server's certificates are.
    pub fn pki_dir(&self) -> PathBuf {
        self.pki_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("pki"))
    }

    /// The embedded store in `data_dir`, listening on `listen`, 30 days of history.
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            data_dir,
            listen,
            advertise_hosts: Vec::new(),
            pki_dir: None,
            store: StoreSettings::Embedded,
            history_days: 30,
            ui_session_lifetime: ui::sessions::DEFAULT_SESSION_LIFETIME,
            limits: fleetdb_apiserver::Limits::default(),
            audit: None,
            host_certificate_lifetime: joining::DEFAULT_HOST_CERTIFICATE_LIFETIME,
            controllers: Some(controllers::Settings::default()),
        }
    }
}

/// A time in RFC 3339, whole seconds (`2026-11-30T18:00:00Z`).
pub fn rfc3339(at: time::OffsetDateTime) -> Option<String> {
    at.replace_nanosecond(0)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// Now in RFC 3339 with microseconds (the `MicroTime` of Leases and Events).
pub fn micro_time() -> String {
    let now = time::OffsetDateTime::now_utc();
    let seconds = rfc3339(now).unwrap_or_default();
    format!(
        "{}.{:06}Z",
        seconds.trim_end_matches('Z'),
        now.microsecond()
    )
}

/// Writes a file readable and writable by its owner only, replacing it atomically (a
/// temporary file beside it, synced, then renamed).
pub fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// Creates a directory (and its parents) readable by its owner only, or makes an existing
/// one so.
pub fn private_dir(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// Opens the store the settings name (creating the data directory, readable by its owner
/// only: it holds the CA's private key and every object).
pub async fn open_store(settings: &ServerSettings) -> anyhow::Result<Arc<dyn Store>> {
    private_dir(&settings.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            settings.data_dir.display()
        )
    })?;
    Ok(match &settings.store {
        StoreSettings::Embedded => Arc::new(
            EmbeddedStore::open(settings.data_dir.join("store"))
                .context("cannot open the embedded store")?,
        ),
        StoreSettings::Etcd { endpoints, prefix } => {
            if endpoints.is_empty() {
                anyhow::bail!("--store etcd needs --etcd-endpoints, e.g. http://127.0.0.1:2379");
            }
            let mut options = EtcdOptions::new(endpoints.clone());
            options.root = prefix.clone();
            Arc::new(
                EtcdStore::connect(options)
                    .await
                    .context("cannot reach etcd")?,
            )
        }
    })
}

/// How long the superseded history of Leases is kept on the embedded store: host agents renew
/// theirs every 10 s, which at 100,000 hosts would be 26 billion versions in 30 days. Five
/// minutes, as long as kube-apiserver keeps any history (`docs/history.md`).
pub const LEASE_HISTORY: Duration = Duration::from_secs(5 * 60);

/// Prefixes whose superseded history is kept for less than `--history-days`.
pub const SHORT_HISTORY: &[fleetdb_store::retention::ShortHistory] =
    &[fleetdb_store::retention::ShortHistory {
        prefix: "/registry/coordination.k8s.io/leases/",
        keep: LEASE_HISTORY,
    }];

/// How long the in-process controllers' certificate lasts (it lives in memory only and is
/// issued again at every start).
const CONTROLLERS_CERTIFICATE_DAYS: u32 = fleetdb_apiserver::pki::MAX_CLIENT_CERTIFICATE_DAYS;

/// The controllers of a server, as API clients of it with their own identity (a client
/// certificate issued at start, kept in memory): they reach it on its listen address (the
/// loopback address when it listens on all).
async fn run_controllers(settings: ServerSettings, controllers: controllers::Settings) {
    let ip = match settings.listen.ip() {
        ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        ip => ip,
    };
    let url = format!("https://{}", SocketAddr::new(ip, settings.listen.port()));
    // The server writes its CA at start; wait for it.
    let client = loop {
        match controllers_client(&settings.pki_dir(), &url).await {
            Ok(client) => break client,
            Err(error) => {
                tracing::debug!(%error, "controllers: no client yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    controllers::run(client, controllers).await;
}

async fn controllers_client(pki_dir: &std::path::Path, url: &str) -> anyhow::Result<kube::Client> {
    let issued = fleetdb_apiserver::pki::user_kubeconfig(
        pki_dir,
        url,
        controllers::USER,
        &[controllers::GROUP],
        CONTROLLERS_CERTIFICATE_DAYS,
    )?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&issued.kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

/// Serves the fleetdb API on `store` until `shutdown` completes: retention of the history,
/// the fleet CRDs installed at start-up, and the extensions.
pub async fn serve(
    store: Arc<dyn Store>,
    settings: &ServerSettings,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let retention = Retention::new(
        store.clone(),
        RetentionPolicy {
            keep: Duration::from_secs(settings.history_days * 24 * 60 * 60),
            short: SHORT_HISTORY,
            ..RetentionPolicy::default()
        },
    );
    let audit = match &settings.audit {
        Some(audit) => Some(
            fleetdb_apiserver::http::audit::AuditLog::open(audit.clone())
                .map_err(|e| anyhow::anyhow!(e))?,
        ),
        None => None,
    };
    let retention = tokio::spawn(retention.run());
    let config = fleetdb_apiserver::ServeConfig {
        data_dir: settings.data_dir.clone(),
        listen: settings.listen,
        advertise_hosts: settings.advertise_hosts.clone(),
        pki_dir: settings.pki_dir.clone(),
        definitions: fleetdb_fleet::crd_documents(),
        extensions: vec![Arc::new(discovery::PrometheusDiscovery::default())],
        web_apps: vec![Arc::new(ui::Ui::new(settings.ui_session_lifetime))],
        limits: settings.limits.clone(),
        security: fleetdb_apiserver::Security {
            admission: vec![Arc::new(security::FleetAdmission)],
            bootstrap: security::default_policy(),
            audit,
            certificates: fleetdb_apiserver::controllers::certificates::Certificates {
                signers: vec![Arc::new(joining::HostSigner {
                    lifetime: settings.host_certificate_lifetime,
                })],
                approvers: vec![Arc::new(joining::HostApprover)],
            },
        },
    };
    let controllers = settings
        .controllers
        .clone()
        .map(|controllers| tokio::spawn(run_controllers(settings.clone(), controllers)));
    let result = fleetdb_apiserver::serve(store, config, shutdown).await;
    retention.abort();
    if let Some(controllers) = controllers {
        controllers.abort();
    }
    result.map_err(|e| anyhow::anyhow!(e))
}
