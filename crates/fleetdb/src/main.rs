//! `fleetdb`: one binary, thin subcommands over the library crates.

/// mimalloc instead of glibc's malloc: the server allocates many small JSON values per request
/// from several threads, where glibc's arenas contend (measured in docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use fleetdb::{ServerSettings, StoreSettings};

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
        /// Repeatable (or comma separated): replicas sharing a PKI directory list every
        /// replica's, so one server certificate serves them all; the first goes in the
        /// kubeconfig.
        #[arg(long, value_delimiter = ',', env = "FLEETDB_ADVERTISE_HOST")]
        advertise_host: Vec<String>,
        /// The CA and the server's and administrator's certificates (default:
        /// DATA_DIR/pki). Replicas given the same directory (or a copy) share one identity:
        /// one kubeconfig reaches them all (docs/operations.md).
        #[arg(long, env = "FLEETDB_PKI_DIR")]
        pki_dir: Option<PathBuf>,
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
        /// Most open connections (new ones past it are closed at once).
        #[arg(long, default_value_t = fleetdb_apiserver::http::server::MAX_CONNECTIONS)]
        max_connections: usize,
        /// Most open connections without a client certificate.
        #[arg(long, default_value_t = fleetdb_apiserver::http::server::MAX_ANONYMOUS_CONNECTIONS)]
        max_anonymous_connections: usize,
        /// Most requests one identity may have in flight (watches excepted); past it, 429.
        #[arg(long, default_value_t = fleetdb_apiserver::http::server::MAX_REQUESTS_IN_FLIGHT_PER_USER)]
        max_requests_in_flight_per_user: usize,
        /// Most watches one identity may have open; past it, 429.
        #[arg(long, default_value_t = fleetdb_apiserver::http::server::MAX_WATCHES_PER_USER)]
        max_watches_per_user: usize,
        /// Watches one identity may start per second (after a burst of 5); past it, 429.
        #[arg(long, default_value_t = fleetdb_apiserver::http::server::WATCH_STARTS_PER_SECOND_PER_USER)]
        watch_starts_per_second_per_user: f64,
        /// Seconds an HTTP/1.1 connection may take to send a request's headers.
        #[arg(long, default_value_t = fleetdb_apiserver::http::server::HEADER_READ_TIMEOUT.as_secs())]
        header_read_timeout_seconds: u64,
        /// Seconds a connection without a client certificate may stay open.
        #[arg(long, default_value_t = fleetdb_apiserver::http::server::ANONYMOUS_CONNECTION_LIFETIME.as_secs())]
        anonymous_connection_seconds: u64,
        /// Keep an audit log in this file (`-`: standard output), one audit.k8s.io/v1 Event
        /// per line.
        #[arg(long, value_name = "FILE")]
        audit_log_path: Option<PathBuf>,
        /// The audit.k8s.io/v1 Policy that gives each request its level (default: every
        /// request at Metadata).
        #[arg(long, value_name = "FILE", requires = "audit_log_path")]
        audit_policy_file: Option<PathBuf>,
        /// Rotate the audit log when it would grow past this many megabytes.
        #[arg(long, default_value_t = fleetdb_apiserver::http::audit::DEFAULT_MAX_SIZE_MB)]
        audit_log_maxsize: u64,
        /// Rotated audit logs to keep (0: all).
        #[arg(long, default_value_t = 0)]
        audit_log_maxbackup: usize,
        /// How long host agents' certificates last (e.g. `7d`, `12h`; at least `20s`); agents
        /// renew them at 70–80 % of their life.
        #[arg(long, default_value = "7d", value_parser = lifetime)]
        host_certificate_lifetime: std::time::Duration,
        /// Run the controllers (clusters, stale hosts) in this process; `--controllers=false`
        /// when they run elsewhere (`fleetdb controllers`). Replicas elect one to act.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        controllers: bool,
        /// How long a host agent's Lease may go unrenewed before its Host is `Ready=False`.
        #[arg(long, default_value = "40s", value_parser = ttl)]
        host_stale_after: std::time::Duration,
        /// How long a deleted Host waits for its agent's decommission report.
        #[arg(long, default_value = "10m", value_parser = ttl)]
        decommission_timeout: std::time::Duration,
        /// How long a web UI session lasts after its one-time login.
        #[arg(long, default_value = "8h", value_parser = session_lifetime)]
        ui_session_lifetime: std::time::Duration,
        /// How long an Event is kept after it was last seen (as kube-apiserver's
        /// `--event-ttl`).
        #[arg(long, default_value = "1h", value_parser = event_ttl)]
        event_ttl: std::time::Duration,
    },
    /// The controllers alone, against any API server with the fleet's CRDs (docs/controllers.md).
    /// Several may run: a Lease in fleetdb-system elects the one that acts.
    Controllers {
        /// A kubeconfig of the controllers' identity (`fleetdb kubeconfig --controllers`);
        /// default: $KUBECONFIG.
        #[arg(long, env = "FLEETDB_KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
        /// How long a host agent's Lease may go unrenewed before its Host is `Ready=False`.
        #[arg(long, default_value = "40s", value_parser = ttl)]
        host_stale_after: std::time::Duration,
        /// How long a deleted Host waits for its agent's decommission report.
        #[arg(long, default_value = "10m", value_parser = ttl)]
        decommission_timeout: std::time::Duration,
    },
    /// The host agent: joins with a bootstrap token, then heartbeats and reports this
    /// machine's facts into its Host (docs/agent.md).
    Agent {
        /// The server's URL.
        #[arg(long, env = "FLEETDB_SERVER")]
        server: String,
        /// The server's CA certificate (`DATA_DIR/pki/ca.crt` on the server).
        #[arg(long, env = "FLEETDB_CA_FILE")]
        ca_file: PathBuf,
        /// A bootstrap token (`fleetdb token create`), needed to join, not afterwards.
        #[arg(long, env = "FLEETDB_AGENT_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Where the agent keeps its key and certificate (readable by its owner only).
        #[arg(
            long,
            default_value = "/var/lib/fleetdb-agent",
            env = "FLEETDB_AGENT_DATA_DIR"
        )]
        data_dir: PathBuf,
        /// The Host's name (default: this machine's host name).
        #[arg(long)]
        name: Option<String>,
        /// Seconds between heartbeats (renewals of the host's Lease).
        #[arg(long, default_value_t = fleetdb::agent::DEFAULT_HEARTBEAT.as_secs(),
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        heartbeat_seconds: u64,
        /// The agent's configuration (YAML): maintenance hooks, the upgrade and reboot
        /// commands, what runs may start, preflight checks (docs/agent.md).
        #[arg(long, env = "FLEETDB_AGENT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Bootstrap tokens, with which host agents join (`fleetdb agent --token`).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
        /// An administrator's kubeconfig (default: the data directory's admin.kubeconfig,
        /// then $KUBECONFIG).
        #[arg(long, env = "FLEETDB_KUBECONFIG", global = true)]
        kubeconfig: Option<PathBuf>,
        /// The data directory whose admin.kubeconfig to use.
        #[arg(
            long,
            default_value = "./fleetdb-data",
            env = "FLEETDB_DATA_DIR",
            global = true
        )]
        data_dir: PathBuf,
    },
    /// Print a kubeconfig for a new identity, with a client certificate signed by this
    /// server's CA (for people, fetchers and other tools that run elsewhere). What the
    /// identity may do is what RBAC grants its user and groups (docs/security.md).
    Kubeconfig {
        /// The data directory of the server (where its CA is).
        #[arg(long, default_value = "./fleetdb-data", env = "FLEETDB_DATA_DIR")]
        data_dir: PathBuf,
        /// The server's PKI directory, when not DATA_DIR/pki.
        #[arg(long, env = "FLEETDB_PKI_DIR")]
        pki_dir: Option<PathBuf>,
        /// The user name (certificate CN), e.g. `alice`.
        #[arg(long, required_unless_present_any = ["fetcher", "controllers"], conflicts_with_all = ["fetcher", "controllers"])]
        user: Option<String>,
        /// A group (certificate O), repeatable, e.g. `fleetdb:inventory` for Ansible or
        /// `fleetdb:monitors` for Prometheus.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// An identity for the fetcher of one Source: user `fleetdb:fetcher:SOURCE` in group
        /// `fleetdb:fetchers`, which may write that Source's hosts and status only.
        #[arg(long, value_name = "SOURCE", conflicts_with = "controllers")]
        fetcher: Option<String>,
        /// An identity for `fleetdb controllers`: user and group `fleetdb:controllers`.
        #[arg(long)]
        controllers: bool,
        /// How many days the certificate is valid (at most 366).
        #[arg(long, default_value_t = fleetdb_apiserver::pki::CLIENT_CERTIFICATE_DAYS,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(fleetdb_apiserver::pki::MAX_CLIENT_CERTIFICATE_DAYS)))]
        days: u32,
        /// The URL the tool reaches the server at.
        #[arg(long, default_value = "https://127.0.0.1:6443")]
        server: String,
        /// Write the kubeconfig (which holds a private key) to this file, readable by its
        /// owner only, instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Revoke certificates at once, on every server sharing the store: every certificate
    /// issued to a user until now, or one by its serial number. Goes through the API as an
    /// administrator (a CertificateRevocation; `kubectl get certificaterevocations` lists
    /// them, deleting one lifts it).
    Revoke {
        /// Refuse every certificate issued to this user until now.
        #[arg(long, required_unless_present = "serial", conflicts_with = "serial")]
        user: Option<String>,
        /// Refuse the certificate with this serial number (hex, as `openssl x509 -serial`
        /// prints it).
        #[arg(long)]
        serial: Option<String>,
        /// Why, for the record.
        #[arg(long)]
        reason: Option<String>,
        /// An administrator's kubeconfig (default: the data directory's admin.kubeconfig,
        /// then $KUBECONFIG).
        #[arg(long, env = "FLEETDB_KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
        /// The data directory whose admin.kubeconfig to use.
        #[arg(long, default_value = "./fleetdb-data", env = "FLEETDB_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Ansible dynamic inventory: `--list` prints every group and host (with `_meta.hostvars`),
    /// `--host NAME` one host's variables. Use as `ansible -i <script>` with a one-line
    /// wrapper: `exec fleetdb ansible-inventory "$@"`.
    AnsibleInventory {
        /// Print the whole inventory.
        #[arg(long)]
        list: bool,
        /// Print the variables of one host.
        #[arg(long, conflicts_with = "list")]
        host: Option<String>,
        /// Kubeconfig to reach fleetdb with (default: $KUBECONFIG, then ~/.kube/config).
        #[arg(long, env = "FLEETDB_KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
        /// YAML file with keyed_groups, groups (name: label selector), include_*, stale_after...
        #[arg(long, env = "FLEETDB_INVENTORY_CONFIG")]
        config: Option<PathBuf>,
        /// Keep hosts in maintenance.
        #[arg(long)]
        include_maintenance: bool,
        /// Keep terminated hosts.
        #[arg(long)]
        include_terminated: bool,
        /// Reuse the last inventory for this long (e.g. `60s`) instead of asking fleetdb again.
        #[arg(long, env = "FLEETDB_INVENTORY_CACHE_TTL")]
        cache_ttl: Option<String>,
    },
    /// Watch Hosts and keep Prometheus file_sd targets (and alert rules per role) in a directory.
    Monitor {
        /// Directory for `hosts.json` and `rules/<role>.yml`.
        #[arg(long)]
        out: PathBuf,
        /// Port Prometheus scrapes on every host (e.g. node_exporter's 9100).
        #[arg(long, default_value_t = 9100)]
        port: u16,
        /// Hosts in maintenance: `exclude` them, or `label` them maintenance="true".
        #[arg(long, default_value = "exclude")]
        maintenance: fleetdb_export::prometheus::Maintenance,
        /// Alert rules template (YAML; `{{role}}` is replaced by each role).
        #[arg(long)]
        rules_template: Option<PathBuf>,
        /// Kubeconfig to reach fleetdb with (default: $KUBECONFIG, then ~/.kube/config).
        #[arg(long, env = "FLEETDB_KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
    },
    /// Objects as kubectl prints them, now or as they were at an instant (`--as-of`): the
    /// fleet as of any date within the history kept. Pages print as they arrive, and rows
    /// come without their objects, so 100,000 hosts print in seconds.
    Get {
        /// Resource kind, as kubectl names it (hosts, host, clusters, ...).
        resource: String,
        /// One object's name (default: every object).
        name: Option<String>,
        /// An RFC 3339 time (2026-11-30T18:00:00Z), a revision, or a duration ago (2h, 7d).
        #[arg(long)]
        as_of: Option<String>,
        /// Label selector (`-l team=blue,role!=db`).
        #[arg(short = 'l', long)]
        selector: Option<String>,
        /// Field selector (`--field-selector spec.cluster=prod`).
        #[arg(long)]
        field_selector: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Objects per page: each page is printed as it arrives (as kubectl's --chunk-size).
        #[arg(long, default_value_t = fleetdb::history::CHUNK_SIZE)]
        chunk_size: usize,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Prints a one-time URL that opens the web UI as the identity of the kubeconfig (valid
    /// for 5 minutes, once; docs/ui.md).
    UiLogin {
        /// The kubeconfig whose identity the UI session has (default: $KUBECONFIG).
        #[arg(long, env = "FLEETDB_KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
    },
    /// Every change of one object still in history: revision, time, user, operation and the
    /// JSON Patch from the version before.
    History {
        /// RESOURCE/NAME, e.g. hosts/web-1.
        object: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// For every field of an object, who set its current value, when, in which revision.
    Blame {
        /// RESOURCE/NAME, e.g. hosts/web-1.
        object: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Objects added, removed and changed between two instants.
    Diff {
        /// Resource kind, as kubectl names it.
        resource: String,
        /// The earlier instant: an RFC 3339 time, a revision, or a duration ago (2h, 7d).
        #[arg(long)]
        from: String,
        /// The later instant (default: now).
        #[arg(long)]
        to: Option<String>,
        /// Label selector, applied at both instants.
        #[arg(short = 'l', long)]
        selector: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Write an earlier version of an object back, as a new change (conditional on the
    /// version read now; a deleted object is created again). Status is not restored.
    Restore {
        /// RESOURCE/NAME, e.g. hosts/web-1.
        object: String,
        /// The revision to go back to (`fleetdb history` lists them).
        #[arg(long = "to")]
        revision: i64,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Copy an embedded store into etcd — every object and every change still in history,
    /// with who made it and when — then compare the two. Stop `fleetdb serve` first; then
    /// start it with `--store etcd` (docs/operations.md).
    Migrate {
        /// The data directory of the embedded store.
        #[arg(long = "from", value_name = "DATA_DIR")]
        from: PathBuf,
        /// etcd client URLs, comma separated.
        #[arg(
            long = "to-etcd",
            value_delimiter = ',',
            required = true,
            value_name = "URLS"
        )]
        to_etcd: Vec<String>,
        /// Key prefix in etcd (as `fleetdb serve --etcd-prefix`).
        #[arg(long, default_value = fleetdb_store::etcd::DEFAULT_ROOT)]
        etcd_prefix: String,
    },
    /// Make the history commands a kubectl plugin (`kubectl fleet history hosts/web-1`): links
    /// `kubectl-fleet` to this binary in a directory on your PATH.
    KubectlPlugin {
        /// Where to put the `kubectl-fleet` link.
        #[arg(long, default_value = "/usr/local/bin")]
        dir: PathBuf,
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
        /// A directory whose files a file Source may name (repeatable). Sources are records
        /// others write: without this, file sources are refused.
        #[arg(long = "allow-dir", value_name = "DIR")]
        allow_dirs: Vec<PathBuf>,
    },
}

/// Where the history commands reach fleetdb, and how they print.
#[derive(clap::Args)]
struct ReadArgs {
    /// Kubeconfig to reach fleetdb with (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, env = "FLEETDB_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of namespaced kinds.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: fleetdb::history::Output,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it.
    Create {
        /// How long the token may be used to join (`24h`, `30m`, `7d`; `0`: forever).
        #[arg(long, default_value = "24h", value_parser = ttl)]
        ttl: std::time::Duration,
        /// Approve the host certificates requested with this token at once (otherwise each
        /// waits for `kubectl certificate approve`).
        #[arg(long)]
        auto_approve: bool,
        /// What the token is for, shown by `fleetdb token list`.
        #[arg(long)]
        description: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Delete a token (by its id, the part before the dot).
    Delete { id: String },
}

fn ttl(text: &str) -> Result<std::time::Duration, String> {
    fleetdb::tokens::parse_ttl(text)
        .ok_or_else(|| format!("{text:?} is not a duration like 24h, 30m, 7d or 0"))
}

fn session_lifetime(text: &str) -> Result<std::time::Duration, String> {
    let (shortest, longest) = fleetdb::ui::sessions::SESSION_LIFETIME_RANGE;
    match ttl(text)? {
        d if d < shortest || d > longest => Err(format!(
            "a UI session lasts between {}s and {} days",
            shortest.as_secs(),
            longest.as_secs() / 86_400
        )),
        d => Ok(d),
    }
}

fn event_ttl(text: &str) -> Result<std::time::Duration, String> {
    match ttl(text)? {
        d if d.is_zero() => Err("Events must expire: give a duration like 1h or 30m".into()),
        d => Ok(d),
    }
}

fn lifetime(text: &str) -> Result<std::time::Duration, String> {
    match ttl(text)? {
        d if d < std::time::Duration::from_secs(20) => {
            Err("a certificate lasts at least 20s".into())
        }
        d => Ok(d),
    }
}

/// The kubeconfig an administrator's command uses: the one given, else the data
/// directory's `admin.kubeconfig` when there is one (else the usual lookup).
fn admin_kubeconfig(given: Option<PathBuf>, data_dir: &std::path::Path) -> Option<PathBuf> {
    given.or_else(|| {
        let admin = data_dir.join("admin.kubeconfig");
        admin.exists().then_some(admin)
    })
}

/// A kube-rs client from an explicit kubeconfig, or from the usual lookup.
async fn client(kubeconfig: Option<PathBuf>) -> anyhow::Result<kube::Client> {
    Ok(kube::Client::try_from(config(kubeconfig).await?)?)
}

/// The kube-rs configuration of an explicit kubeconfig, or of the usual lookup.
async fn config(kubeconfig: Option<PathBuf>) -> anyhow::Result<kube::Config> {
    Ok(match kubeconfig {
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
    })
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLEETDB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve {
            data_dir,
            listen,
            advertise_host,
            pki_dir,
            store,
            etcd_endpoints,
            etcd_prefix,
            history_days,
            max_connections,
            max_anonymous_connections,
            max_requests_in_flight_per_user,
            max_watches_per_user,
            watch_starts_per_second_per_user,
            header_read_timeout_seconds,
            anonymous_connection_seconds,
            audit_log_path,
            audit_policy_file,
            audit_log_maxsize,
            audit_log_maxbackup,
            host_certificate_lifetime,
            controllers,
            host_stale_after,
            decommission_timeout,
            ui_session_lifetime,
            event_ttl,
        } => runtime.block_on(async move {
            // Everything the server writes (keys, data) is its owner's alone.
            // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
            unsafe {
                libc::umask(0o077);
            }
            let settings = ServerSettings {
                data_dir,
                listen,
                advertise_hosts: advertise_host,
                pki_dir,
                store: match store {
                    StoreKind::Embedded => StoreSettings::Embedded,
                    StoreKind::Etcd => StoreSettings::Etcd {
                        endpoints: etcd_endpoints,
                        prefix: etcd_prefix,
                    },
                },
                history_days,
                limits: fleetdb_apiserver::Limits {
                    max_connections,
                    max_anonymous_connections,
                    max_requests_in_flight_per_user,
                    max_watches_per_user,
                    watch_starts_per_second_per_user,
                    header_read_timeout: std::time::Duration::from_secs(header_read_timeout_seconds),
                    anonymous_connection_lifetime: std::time::Duration::from_secs(
                        anonymous_connection_seconds,
                    ),
                    event_ttl,
                },
                audit: None,
                ui_session_lifetime,
                host_certificate_lifetime,
                controllers: controllers.then(|| fleetdb::controllers::Settings {
                    host_stale_after,
                    decommission_timeout,
                    ..Default::default()
                }),
            };
            let audit = match audit_log_path {
                None => None,
                Some(path) => {
                    use fleetdb_apiserver::http::audit::{AuditSettings, Policy};
                    let policy = match &audit_policy_file {
                        Some(file) => Policy::read(file).map_err(|e| anyhow::anyhow!(e))?,
                        None => {
                            tracing::warn!("--audit-log-path without --audit-policy-file: every request is logged at Metadata");
                            Policy::metadata_for_all()
                        }
                    };
                    Some(AuditSettings {
                        path,
                        policy,
                        max_size_mb: audit_log_maxsize,
                        max_backups: audit_log_maxbackup,
                    })
                }
            };
            let settings = ServerSettings { audit, ..settings };
            let store = fleetdb::open_store(&settings).await?;
            fleetdb::serve(store, &settings, shutdown_signal()).await
        }),
        Command::Controllers {
            kubeconfig,
            host_stale_after,
            decommission_timeout,
        } => runtime.block_on(async move {
            let client = client(kubeconfig).await?;
            let settings = fleetdb::controllers::Settings {
                host_stale_after,
                decommission_timeout,
                ..Default::default()
            };
            let elector = fleetdb::controllers::leader::Elector::new(client.clone(), &settings.identity);
            tokio::select! {
                () = fleetdb::controllers::run(client, settings) => {}
                () = shutdown_signal() => {}
            }
            elector.release().await;
            Ok(())
        }),
        Command::Kubeconfig {
            data_dir,
            pki_dir,
            user,
            mut groups,
            fetcher,
            controllers,
            days,
            server,
            out,
        } => {
            let user = match (&fetcher, user) {
                (Some(source), _) => {
                    groups.push(fleetdb::security::FETCHERS_GROUP.into());
                    format!("{}{source}", fleetdb::security::FETCHER_PREFIX)
                }
                (None, _) if controllers => {
                    groups.push(fleetdb::controllers::GROUP.into());
                    fleetdb::controllers::USER.to_owned()
                }
                (None, Some(user)) => user,
                (None, None) => anyhow::bail!("--user or --fetcher is required"),
            };
            let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
            let pki_dir = pki_dir.unwrap_or_else(|| data_dir.join("pki"));
            let issued = fleetdb_apiserver::pki::user_kubeconfig(&pki_dir, &server, &user, &groups, days)?;
            match &out {
                Some(path) => write_private(path, &issued.kubeconfig)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => print!("{}", issued.kubeconfig),
            }
            eprintln!(
                "issued a certificate for {user} (groups: {}) with serial {}, valid until {}{}",
                if groups.is_empty() { "none".to_owned() } else { groups.join(", ") },
                issued.serial,
                issued.expires,
                out.map(|p| format!("; written to {}", p.display())).unwrap_or_default()
            );
            Ok(())
        }
        Command::Revoke {
            user,
            serial,
            reason,
            kubeconfig,
            data_dir,
        } => runtime.block_on(async move {
            let kubeconfig = admin_kubeconfig(kubeconfig, &data_dir);
            let client = client(kubeconfig).await?;
            let revoked = revoke(client, user, serial, reason).await?;
            println!("{revoked}");
            Ok(())
        }),
        Command::Agent {
            server,
            ca_file,
            token,
            data_dir,
            name,
            heartbeat_seconds,
            config,
        } => runtime.block_on(async move {
            let config = match &config {
                Some(path) => fleetdb::agent::actions::AgentConfig::read(path)?,
                None => fleetdb::agent::actions::AgentConfig::default(),
            };
            // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
            unsafe {
                libc::umask(0o077);
            }
            fleetdb::agent::run(
                fleetdb::agent::AgentSettings {
                    server,
                    ca_file,
                    token,
                    data_dir,
                    name,
                    heartbeat: std::time::Duration::from_secs(heartbeat_seconds),
                    config,
                },
                shutdown_signal(),
            )
            .await
        }),
        Command::Token {
            command,
            kubeconfig,
            data_dir,
        } => runtime.block_on(async move {
            let kubeconfig = admin_kubeconfig(kubeconfig, &data_dir);
            let config = config(kubeconfig).await?;
            let server_url = config.cluster_url.to_string();
            let client = kube::Client::try_from(config)?;
            match command {
                TokenCommand::Create {
                    ttl,
                    auto_approve,
                    description,
                } => {
                    let token = fleetdb::tokens::create(
                        client,
                        ttl,
                        description.as_deref(),
                        auto_approve,
                    )
                    .await?;
                    print_line(&token)?;
                    eprintln!(
                        "join a host with: fleetdb agent --server {} --ca-file ca.crt --token {token}\n(ca.crt: the server's DATA_DIR/pki/ca.crt; the agent needs the token only to join)",
                        server_url.trim_end_matches('/')
                    );
                    Ok(())
                }
                TokenCommand::List => {
                    for line in fleetdb::tokens::list(client).await? {
                        print_line(&line)?;
                    }
                    Ok(())
                }
                TokenCommand::Delete { id } => {
                    fleetdb::tokens::delete(client, &id).await?;
                    print_line(&format!("bootstrap token {id:?} deleted"))
                }
            }
        }),
        Command::AnsibleInventory {
            list,
            host,
            kubeconfig,
            config,
            include_maintenance,
            include_terminated,
            cache_ttl,
        } => runtime.block_on(async move {
            let mut settings = match &config {
                Some(path) => fleetdb_export::inventory::InventoryConfig::read(path)?,
                None => fleetdb_export::inventory::InventoryConfig::default(),
            };
            settings.include_maintenance |= include_maintenance;
            settings.include_terminated |= include_terminated;
            let ttl = match cache_ttl.as_deref() {
                Some(text) => Some(
                    fleetdb_fleet::parse_interval(text)
                        .ok_or_else(|| anyhow::anyhow!("--cache-ttl {text:?} is not a duration like 60s"))?,
                ),
                None => None,
            };
            let cache = ttl.map(|ttl| {
                let identity = format!(
                    "{kubeconfig:?}|{config:?}|{:?}|{}|{}",
                    std::env::var_os("KUBECONFIG"),
                    settings.include_maintenance,
                    settings.include_terminated
                );
                fleetdb_export::inventory::InventoryCache::new(&identity, ttl)
            });
            let document = match cache.as_ref().and_then(|c| c.read()) {
                Some(document) => document,
                None => {
                    let hosts = fleetdb_export::list_hosts(client(kubeconfig).await?).await?;
                    let built = fleetdb_export::inventory::build(&hosts, &settings, time::OffsetDateTime::now_utc())?;
                    for dropped in &built.dropped {
                        eprintln!(
                            "fleetdb ansible-inventory: host {}: left out the variable {}: a record may not set it (docs/ansible.md, allowed_host_variables)",
                            dropped.host, dropped.variable
                        );
                    }
                    let document = built.document;
                    if let Some(cache) = &cache {
                        cache.write(&document);
                    }
                    document
                }
            };
            let output = match (list, host) {
                (_, Some(host)) => document["_meta"]["hostvars"]
                    .get(&host)
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({})),
                (true, None) => document,
                (false, None) => anyhow::bail!("pass --list or --host NAME (this is an Ansible inventory script)"),
            };
            print_line(&output.to_string())
        }),
        Command::Monitor {
            out,
            port,
            maintenance,
            rules_template,
            kubeconfig,
        } => runtime.block_on(async move {
            let rules_template = match rules_template {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                None => fleetdb_export::prometheus::DEFAULT_RULES_TEMPLATE.to_owned(),
            };
            let settings = fleetdb_export::prometheus::MonitorSettings {
                out,
                port,
                maintenance,
                rules_template,
            };
            fleetdb_export::prometheus::monitor(client(kubeconfig).await?, settings, shutdown_signal()).await?;
            Ok(())
        }),
        Command::Get {
            resource,
            name,
            as_of,
            selector,
            field_selector,
            all_namespaces,
            chunk_size,
            read,
        } => runtime.block_on(async move {
            let client = client(read.kubeconfig).await?;
            let request = fleetdb::history::GetRequest {
                resource: &resource,
                name: name.as_deref(),
                namespace: read.namespace.as_deref(),
                all_namespaces,
                as_of: as_of.as_deref(),
                label_selector: selector.as_deref(),
                field_selector: field_selector.as_deref(),
                output: read.output,
                chunk_size,
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            match fleetdb::history::get(&client, &request, &mut out).await {
                // The reader went away (`| head`): nothing more to print.
                Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) => Ok(()),
                other => other,
            }
        }),
        Command::UiLogin { kubeconfig } => runtime.block_on(async move {
            let config = config(kubeconfig).await?;
            println!("{}", fleetdb::ui::login_url(config).await?);
            Ok(())
        }),
        Command::History { object, read } => runtime.block_on(async move {
            let client = client(read.kubeconfig).await?;
            print!(
                "{}",
                fleetdb::history::history(&client, &object, read.namespace.as_deref(), read.output).await?
            );
            Ok(())
        }),
        Command::Blame { object, read } => runtime.block_on(async move {
            let client = client(read.kubeconfig).await?;
            print!(
                "{}",
                fleetdb::history::blame_of(&client, &object, read.namespace.as_deref(), read.output).await?
            );
            Ok(())
        }),
        Command::Diff {
            resource,
            from,
            to,
            selector,
            all_namespaces,
            read,
        } => runtime.block_on(async move {
            let client = client(read.kubeconfig).await?;
            let request = fleetdb::history::DiffRequest {
                resource: &resource,
                namespace: read.namespace.as_deref(),
                all_namespaces,
                from: &from,
                to: to.as_deref(),
                label_selector: selector.as_deref(),
                output: read.output,
            };
            print!("{}", fleetdb::history::diff(&client, &request).await?);
            Ok(())
        }),
        Command::Restore {
            object,
            revision,
            read,
        } => runtime.block_on(async move {
            let client = client(read.kubeconfig).await?;
            print!(
                "{}",
                fleetdb::history::restore(&client, &object, read.namespace.as_deref(), revision).await?
            );
            Ok(())
        }),
        Command::Migrate {
            from,
            to_etcd,
            etcd_prefix,
        } => runtime.block_on(async move {
            let options = fleetdb_store::etcd::EtcdOptions {
                root: etcd_prefix,
                ..fleetdb_store::etcd::EtcdOptions::new(to_etcd)
            };
            let report = fleetdb::migrate::migrate(&from, options).await?;
            let since = report
                .oldest_millis
                .and_then(|ms| time::OffsetDateTime::from_unix_timestamp(ms / 1000).ok())
                .and_then(fleetdb::rfc3339)
                .unwrap_or_else(|| "an unknown time".into());
            println!(
                "copied {} changes (history since {since}); {} objects, identical in both stores",
                report.changes, report.objects
            );
            Ok(())
        }),
        Command::KubectlPlugin { dir } => {
            let binary = std::env::current_exe().context("cannot find this binary")?;
            let link = dir.join("kubectl-fleet");
            match std::fs::remove_file(&link) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("cannot replace {}", link.display())),
            }
            std::os::unix::fs::symlink(&binary, &link)
                .with_context(|| format!("cannot link {} to {}", link.display(), binary.display()))?;
            println!("{} -> {}; try: kubectl fleet history hosts/NAME", link.display(), binary.display());
            Ok(())
        }
        Command::Fetch {
            source,
            kubeconfig,
            once,
            allow_dirs,
        } => runtime.block_on(async move {
            let client = client(kubeconfig).await?;
            let policy = fleetdb_fetch::FetcherPolicy {
                allowed_dirs: allow_dirs,
            };
            if once {
                let report = fleetdb_fetch::sync_once(client, &source, &policy).await?;
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
                fleetdb_fetch::run(client, &source, &policy, shutdown_signal()).await;
                Ok(())
            }
        }),
    }
}

/// Creates a CertificateRevocation; returns what to tell the person.
async fn revoke(
    client: kube::Client,
    user: Option<String>,
    serial: Option<String>,
    reason: Option<String>,
) -> anyhow::Result<String> {
    use kube::api::{Api, DynamicObject, PostParams};
    use kube::discovery::ApiResource;
    let resource = ApiResource {
        group: "security.fleetdb.io".into(),
        version: "v1".into(),
        api_version: "security.fleetdb.io/v1".into(),
        kind: "CertificateRevocation".into(),
        plural: "certificaterevocations".into(),
    };
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let prefix = match &user {
        Some(user) => {
            let mut readable = fleetdb_export::identifier(user).replace('_', "-");
            readable.truncate(40);
            format!("user-{}-", readable.trim_matches('-'))
        }
        None => "serial-".into(),
    };
    let mut spec = serde_json::Map::new();
    if let Some(user) = &user {
        spec.insert("user".into(), serde_json::json!(user));
    }
    if let Some(serial) = &serial {
        spec.insert("serial".into(), serde_json::json!(serial));
    }
    if let Some(reason) = &reason {
        spec.insert("reason".into(), serde_json::json!(reason));
    }
    let object: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "security.fleetdb.io/v1",
        "kind": "CertificateRevocation",
        "metadata": {"generateName": prefix},
        "spec": spec,
    }))?;
    let created = api
        .create(&PostParams::default(), &object)
        .await
        .context("cannot revoke")?;
    let name = created.metadata.name.unwrap_or_default();
    Ok(match (user, serial) {
        (Some(user), _) => format!(
            "certificaterevocation.security.fleetdb.io/{name} created: every certificate issued to {user} until {} is refused",
            created.data["spec"]["revokedAt"].as_str().unwrap_or("now")
        ),
        (None, Some(_)) => format!(
            "certificaterevocation.security.fleetdb.io/{name} created: the certificate with serial {} is refused",
            created.data["spec"]["serial"].as_str().unwrap_or_default()
        ),
        (None, None) => format!("certificaterevocation.security.fleetdb.io/{name} created"),
    })
}

/// Writes a secret to a new file (or replaces one) readable and writable by its owner only.
fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode on open: tighten it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(contents.as_bytes())
}

/// Prints a line; a reader that went away (`| head`) is not an error.
fn print_line(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|_| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
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
