//! `fleetdb agent`: the daemon on each host. It joins with a bootstrap token (its key made
//! here, a certificate signing request approved by policy or a person), keeps its key and
//! certificate in its data directory and renews the certificate itself; then it heartbeats
//! (a Lease `fleetdb-system/<host>`), reports the machine's facts into its Host's
//! `status.agent` under a field manager of its own, and records Events about its Host.
//! Outbound HTTPS only; every failure is retried with a bounded backoff, so the agent rides
//! through server restarts and network loss.

pub mod actions;
pub mod facts;
pub mod identity;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fleetdb_apiserver::registry::now as timestamp;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::json;

use crate::security::{HEARTBEAT_NAMESPACE, HOST_PREFIX};

/// How often the Lease is renewed unless told otherwise.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// How often the facts (and `status.agent.lastSeen`) are written, at most.
pub const FACTS_INTERVAL: Duration = Duration::from_secs(60);
/// The field manager of what the agent writes.
pub const FIELD_MANAGER: &str = "fleetdb-agent";
/// The field manager of the agent's conditions, runs and observed generation (apart from
/// the facts', so that each apply leaves the other's fields alone).
pub const ACTIONS_FIELD_MANAGER: &str = "fleetdb-agent-actions";
/// How often preflight checks run when the spec does not change.
const PREFLIGHT_INTERVAL: Duration = Duration::from_secs(60);
/// The longest pause between two attempts after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long one renewal attempt may wait for its certificate before the agent goes back to
/// heartbeating (the request stays pending and the next attempt picks it up).
const RENEWAL_WAIT: Duration = Duration::from_secs(60);

/// How the agent runs.
pub struct AgentSettings {
    pub server: String,
    pub ca_file: PathBuf,
    /// Needed to join; not after.
    pub token: Option<String>,
    pub data_dir: PathBuf,
    /// The Host's name (default: the machine's host name).
    pub name: Option<String>,
    pub heartbeat: Duration,
    /// The local configuration: hooks, what runs may start, preflight checks.
    pub config: actions::AgentConfig,
}

/// The name the agent goes by: `--name`, else the machine's host name (lower case).
pub fn host_name(name: Option<&str>) -> anyhow::Result<String> {
    let name = match name {
        Some(name) => name.to_owned(),
        None => sysinfo::System::host_name()
            .ok()
            .context("cannot read this machine's host name; pass --name")?
            .to_lowercase(),
    };
    let problems = fleetdb_machinery::validation::dns1123_subdomain(&name);
    if !problems.is_empty() {
        bail!("{name:?} cannot name a Host: {}", problems.join("; "));
    }
    Ok(name)
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// The Host's uid, shared by the connections the agent makes over its life.
type Uid = std::sync::Arc<std::sync::Mutex<Option<String>>>;

/// One connected agent: what it writes, with its current certificate.
#[derive(Clone)]
struct Agent {
    host: String,
    /// The Host's uid, once read (Events name it, so `kubectl describe host` finds them).
    uid: Uid,
    /// Set once the agent reported its Host's decommission: from then on a missing Host is
    /// the end of the agent, not a Host to create.
    decommissioned: Arc<AtomicBool>,
    heartbeat: Duration,
    hosts: Api<DynamicObject>,
    clusters: Api<DynamicObject>,
    leases: Api<DynamicObject>,
    events: Api<DynamicObject>,
}

impl Agent {
    fn new(
        client: kube::Client,
        host: &str,
        heartbeat: Duration,
        uid: Uid,
        decommissioned: Arc<AtomicBool>,
    ) -> Self {
        Self {
            host: host.to_owned(),
            uid,
            decommissioned,
            heartbeat,
            hosts: Api::all_with(
                client.clone(),
                &resource("fleetdb.io", "v1alpha1", "Host", "hosts"),
            ),
            clusters: Api::all_with(
                client.clone(),
                &resource("fleetdb.io", "v1alpha1", "Cluster", "clusters"),
            ),
            leases: Api::namespaced_with(
                client.clone(),
                HEARTBEAT_NAMESPACE,
                &resource("coordination.k8s.io", "v1", "Lease", "leases"),
            ),
            events: Api::namespaced_with(client, "default", &resource("", "v1", "Event", "events")),
        }
    }

    /// Whether the Host record no longer exists.
    async fn gone(&self) -> bool {
        matches!(self.hosts.get(&self.host).await, Err(kube::Error::Api(status)) if status.code == 404)
    }

    /// Renews the Lease (creating it the first time).
    async fn heartbeat(&self) -> Result<(), kube::Error> {
        let now = crate::micro_time();
        let patch = json!({"spec": {"renewTime": now, "holderIdentity": format!("{HOST_PREFIX}{}", self.host)}});
        match self
            .leases
            .patch(
                &self.host,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(&patch),
            )
            .await
        {
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let lease: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.host, "namespace": HEARTBEAT_NAMESPACE},
                    "spec": {
                        "holderIdentity": format!("{HOST_PREFIX}{}", self.host),
                        "leaseDurationSeconds": (self.heartbeat.as_secs() * 4).max(1),
                        "acquireTime": now,
                        "renewTime": now,
                    },
                }))
                .expect("a Lease is a valid object");
                self.leases.create(&post_params(), &lease).await.map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }

    /// Writes the machine's facts into `status.agent` (creating the Host, with an empty
    /// spec, when no fetcher has recorded it yet).
    async fn report(&self) -> Result<(), kube::Error> {
        let mut report = facts::collect();
        report.last_seen = Some(timestamp());
        let document = json!({
            "apiVersion": "fleetdb.io/v1alpha1",
            "kind": "Host",
            "metadata": {"name": self.host},
            "status": {"agent": report},
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patched = self
            .hosts
            .patch_status(&self.host, &params, &Patch::Apply(&document))
            .await;
        if let Ok(object) = &patched {
            self.remember_uid(object);
        }
        match patched {
            // Decommissioned: the record is gone for good.
            Err(kube::Error::Api(status))
                if status.code == 404 && self.decommissioned.load(Ordering::Relaxed) =>
            {
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let host: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "fleetdb.io/v1alpha1",
                    "kind": "Host",
                    "metadata": {"name": self.host},
                    "spec": {},
                }))
                .expect("a Host is a valid object");
                self.hosts.create(&post_params(), &host).await?;
                self.record("Normal", "Registered", "the agent created its Host")
                    .await;
                self.hosts
                    .patch_status(&self.host, &params, &Patch::Apply(&document))
                    .await
                    .map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }

    /// The preflight checks the Cluster `name` lists, if it exists and lists any.
    async fn cluster_checks(&self, name: &str) -> Option<fleetdb_fleet::PreflightSpec> {
        let object = self.clusters.get(name).await.ok()?;
        serde_json::from_value(object.data["spec"]["preflight"].clone()).ok()
    }

    fn remember_uid(&self, object: &DynamicObject) {
        if let Some(uid) = &object.metadata.uid {
            *self.uid.lock().unwrap_or_else(|e| e.into_inner()) = Some(uid.clone());
        }
    }

    /// Records an Event about the Host (failures are logged only).
    async fn record(&self, event_type: &str, reason: &str, message: &str) {
        let now = timestamp();
        let suffix: u64 = rand::random();
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": format!("{}.{suffix:016x}", self.host), "namespace": "default"},
            "involvedObject": {
                "apiVersion": "fleetdb.io/v1alpha1",
                "kind": "Host",
                "name": self.host,
                "uid": self.uid.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            },
            "reason": reason,
            "message": message,
            "type": event_type,
            "source": {"component": FIELD_MANAGER, "host": self.host},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": self.host,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        });
        let Ok(event) = serde_json::from_value::<DynamicObject>(event) else {
            return;
        };
        if let Err(error) = self.events.create(&post_params(), &event).await {
            tracing::warn!(%error, reason, "cannot record an event");
        }
    }
}

/// Acts on the Host's spec until the task is aborted: every heartbeat interval it reads
/// its Host and does what the spec asks (only when `spec.authorized`), writing conditions,
/// runs and the observed generation when they change.
async fn act(agents: tokio::sync::watch::Receiver<Agent>, mut work: actions::Actions) {
    let mut written = serde_json::Value::Null;
    let mut checked: Option<(i64, Instant)> = None;
    loop {
        // The latest connection: a renewed certificate reaches the actor without
        // interrupting a run in progress.
        let agent = agents.borrow().clone();
        if let Err(error) = act_once(&agent, &mut work, &mut written, &mut checked).await {
            tracing::warn!(%error, "cannot act on the host's spec yet");
        }
        tokio::time::sleep(agent.heartbeat).await;
    }
}

async fn act_once(
    agent: &Agent,
    work: &mut actions::Actions,
    written: &mut serde_json::Value,
    checked: &mut Option<(i64, Instant)>,
) -> Result<(), kube::Error> {
    let object = match agent.hosts.get(&agent.host).await {
        Ok(object) => {
            agent.remember_uid(&object);
            object
        }
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
        Err(error) => return Err(error),
    };
    let Ok(host) =
        serde_json::to_value(&object).and_then(serde_json::from_value::<fleetdb_fleet::Host>)
    else {
        tracing::warn!("the host's record cannot be read as a Host");
        return Ok(());
    };
    let generation = host.metadata.generation.unwrap_or(0);
    let authorized = host.spec.authorized == Some(true);
    if authorized && host.is_decommissioning() {
        let uid = host.metadata.uid.clone().unwrap_or_default();
        if let Some((kind, reason, message)) = work.decommission(generation, &uid).await {
            agent.record(&kind, &reason, &message).await;
        }
        agent.decommissioned.store(true, Ordering::Relaxed);
        return agent.write_actions(work, generation, written).await;
    }
    if checked.is_none_or(|(g, at)| g != generation || at.elapsed() >= PREFLIGHT_INTERVAL) {
        let cluster = match (
            &host.spec.cluster,
            work.config.preflight.allow_cluster_checks,
        ) {
            (Some(name), true) => agent.cluster_checks(name).await,
            _ => None,
        };
        work.check_preflight(generation, cluster.as_ref()).await;
        *checked = Some((generation, Instant::now()));
    }
    if authorized {
        let mut events = Vec::new();
        events.extend(work.maintenance(&host, generation).await);
        let current = facts::collect().os.and_then(|os| os.version);
        events.extend(work.upgrade(&host, current.as_deref(), generation).await);
        for (kind, reason, message) in events {
            agent.record(&kind, &reason, &message).await;
        }
        for run in work.pending_runs(&host) {
            // Recorded as Running before it starts; a server that does not answer now
            // gets the outcome later (the state file has it), the run goes on regardless.
            work.start_run(run, &host);
            if let Err(error) = agent.write_actions(work, generation, written).await {
                tracing::warn!(%error, run = %run.id, "cannot report the run's start");
            }
            let (kind, reason, message) = work.finish_run(run).await;
            agent.record(&kind, &reason, &message).await;
            if let Err(error) = agent.write_actions(work, generation, written).await {
                tracing::warn!(%error, run = %run.id, "cannot report the run's end yet");
            }
        }
    }
    agent
        .write_actions(work, if authorized { generation } else { -1 }, written)
        .await
}

impl Agent {
    /// Writes the agent's conditions, runs and (when it acted, `generation` ≥ 0) observed
    /// generation, if they changed since the last write.
    async fn write_actions(
        &self,
        work: &actions::Actions,
        generation: i64,
        written: &mut serde_json::Value,
    ) -> Result<(), kube::Error> {
        let mut agent = json!({"conditions": work.state.conditions, "runs": work.state.runs});
        if generation >= 0 {
            agent["observedGeneration"] = json!(generation);
        }
        if *written == agent {
            return Ok(());
        }
        let document = json!({
            "apiVersion": "fleetdb.io/v1alpha1",
            "kind": "Host",
            "metadata": {"name": self.host},
            "status": {"agent": agent},
        });
        self.hosts
            .patch_status(
                &self.host,
                &PatchParams::apply(ACTIONS_FIELD_MANAGER).force(),
                &Patch::Apply(&document),
            )
            .await?;
        *written = agent;
        Ok(())
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Doubles a backoff up to [`MAX_BACKOFF`].
fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(MAX_BACKOFF)
}

/// Runs the agent until `shutdown` completes.
pub async fn run(
    settings: AgentSettings,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let host = host_name(settings.name.as_deref())?;
    crate::private_dir(&settings.data_dir)
        .with_context(|| format!("cannot create {}", settings.data_dir.display()))?;
    let ca_pem = std::fs::read_to_string(&settings.ca_file).with_context(|| {
        format!(
            "cannot read the CA certificate {}",
            settings.ca_file.display()
        )
    })?;
    let server = settings.server.trim_end_matches('/').to_owned();
    let mut backoff = Duration::from_secs(1);
    let claims = identity::provider_ids(settings.config.identity.provider_id.as_deref());
    let mut current = loop {
        if let Some(identity) = identity::Identity::load(&settings.data_dir, &host) {
            break identity;
        }
        let Some(token) = settings.token.as_deref() else {
            bail!(
                "no certificate in {}: join with --token ID.SECRET (fleetdb token create)",
                settings.data_dir.display()
            );
        };
        let joined = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            joined = identity::join(&settings.data_dir, &host, &server, &ca_pem, token, &claims) => joined,
        };
        match joined {
            Ok(identity) => {
                tracing::info!(
                    host,
                    "joined: the certificate is in the data directory; the token is no longer needed"
                );
                break identity;
            }
            Err(error) => {
                let message = format!("{error:#}");
                // A refusal by a person or the signer is final; anything else is retried.
                if message.contains("was denied") || message.contains("was failed") {
                    bail!(message);
                }
                tracing::warn!(error = %message, "cannot join yet; trying again in {backoff:?}");
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = next_backoff(backoff);
            }
        }
    };
    let work = actions::Actions::new(settings.config.clone(), &settings.data_dir)?;
    let client = identity::client(&server, &ca_pem, current.credentials()).await?;
    let uid = Uid::default();
    let decommissioned = Arc::new(AtomicBool::new(false));
    let (agents, latest) = tokio::sync::watch::channel(Agent::new(
        client,
        &host,
        settings.heartbeat,
        uid.clone(),
        decommissioned.clone(),
    ));
    let _actor = AbortOnDrop(tokio::spawn(act(latest, work)));
    let mut started = false;
    loop {
        let client = identity::client(&server, &ca_pem, current.credentials()).await?;
        let agent = Agent::new(
            client,
            &host,
            settings.heartbeat,
            uid.clone(),
            decommissioned.clone(),
        );
        agents.send_replace(agent.clone());
        let renew_at = current.renew_at();
        let mut last_report: Option<Instant> = None;
        let mut backoff = settings.heartbeat;
        let mut healthy = true;
        loop {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            if now >= renew_at {
                let renewed =
                    tokio::time::timeout(RENEWAL_WAIT, identity::renew(&current, &server, &ca_pem))
                        .await;
                match renewed {
                    Ok(Ok(identity)) => {
                        agent
                            .record(
                                "Normal",
                                "CertificateRenewed",
                                "the agent renewed its certificate",
                            )
                            .await;
                        tracing::info!("renewed the certificate");
                        current = identity;
                        break;
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(error = %format!("{error:#}"), "cannot renew the certificate yet")
                    }
                    Err(_) => tracing::warn!("the renewed certificate is not issued yet"),
                }
            }
            if decommissioned.load(Ordering::Relaxed) && agent.gone().await {
                tracing::info!(
                    host,
                    "the host was decommissioned and its record removed: the agent stops"
                );
                return Ok(());
            }
            // Once decommissioned (flagged before the report that releases the record), no
            // heartbeat: the controllers remove the Lease with the record.
            let beat = if decommissioned.load(Ordering::Relaxed) {
                Ok(())
            } else {
                agent.heartbeat().await
            };
            let due = last_report.is_none_or(|at| at.elapsed() >= FACTS_INTERVAL);
            let reported = if due && beat.is_ok() {
                let reported = agent.report().await;
                if reported.is_ok() {
                    last_report = Some(Instant::now());
                    if !started {
                        started = true;
                        let message =
                            format!("fleetdb agent {} started", env!("CARGO_PKG_VERSION"));
                        agent.record("Normal", "Started", &message).await;
                    }
                }
                reported
            } else {
                Ok(())
            };
            match beat.and(reported) {
                Ok(()) => {
                    if !healthy {
                        tracing::info!("the server answers again");
                    }
                    healthy = true;
                    backoff = settings.heartbeat;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot reach the server; trying again in {backoff:?}");
                    healthy = false;
                    backoff = next_backoff(backoff);
                }
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(if healthy { settings.heartbeat } else { backoff }) => {}
            }
        }
    }
}
