//! fleetdb's controllers: API clients (kube-rs) that converge what is declared with what is
//! observed, run inside `fleetdb serve` or alone as `fleetdb controllers`.
//!
//! * [`clusters`]: a Cluster takes authorized hosts from the pool (hosts without
//!   `spec.cluster`) up to `spec.size` and gives them back on scale-down;
//! * [`rollouts`]: one change over many hosts, a few at a time, within `maxUnavailable`,
//!   `maxPerTopology` and `maxFailures`;
//! * [`decommission`]: every Host carries a finalizer; a deleted host waits for its agent's
//!   decommission report (or a timeout) before it goes;
//! * [`stale`]: a host whose agent stops renewing its Lease becomes `Ready=False`
//!   (`HeartbeatMissed`), and `Ready=True` again when it comes back;
//! * [`tenure`]: since when each host has been in the fleet and in service, from its
//!   history.
//!
//! They never reach into the store: everything goes through the API with the identity
//! `fleetdb:controllers` (ClusterRole `fleetdb:controllers`), so they work against any
//! server with the fleet's CRDs. Several replicas may run them: a Lease in `fleetdb-system`
//! ([`leader`]) elects the one that acts; the others wait. Every action is an Event on the
//! object it touched.

pub mod clusters;
pub mod decommission;
pub mod leader;
pub mod rollouts;
pub mod stale;
pub mod tenure;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, ObjectReference};
use kube::api::{Api, PostParams};
use serde_json::json;

/// The field manager, Event source and user name of the controllers.
pub const MANAGER: &str = "fleetdb-controllers";
/// The identity the controllers act as (`fleetdb kubeconfig --controllers`).
pub const USER: &str = "fleetdb:controllers";
/// The group bound to the ClusterRole `fleetdb:controllers`.
pub const GROUP: &str = "fleetdb:controllers";

/// How long a host's Lease may go unrenewed before the host is not ready.
pub const DEFAULT_HOST_STALE_AFTER: Duration = Duration::from_secs(40);

/// How the controllers run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// See [`DEFAULT_HOST_STALE_AFTER`].
    pub host_stale_after: Duration,
    /// See [`decommission::DEFAULT_DECOMMISSION_TIMEOUT`].
    pub decommission_timeout: Duration,
    /// This replica's name in the leader Lease (default: host name and process id).
    pub identity: String,
}

impl Default for Settings {
    fn default() -> Self {
        let host = sysinfo::System::host_name().unwrap_or_else(|_| "fleetdb".into());
        Self {
            host_stale_after: DEFAULT_HOST_STALE_AFTER,
            decommission_timeout: decommission::DEFAULT_DECOMMISSION_TIMEOUT,
            identity: format!("{host}_{}", std::process::id()),
        }
    }
}

/// Runs the controllers until the process ends: waits for leadership, acts while it holds
/// it, and goes back to waiting when it loses it.
pub async fn run(client: kube::Client, settings: Settings) {
    let elector = leader::Elector::new(client.clone(), &settings.identity);
    loop {
        let leading = elector.acquire().await;
        tracing::info!(identity = %settings.identity, "leading the controllers");
        let work = async {
            tokio::join!(
                clusters::run(client.clone()),
                decommission::run(client.clone(), settings.decommission_timeout),
                rollouts::run(client.clone()),
                stale::run(client.clone(), settings.host_stale_after),
                tenure::run(client.clone()),
            );
        };
        tokio::select! {
            () = work => {}
            () = elector.hold(leading) => {
                tracing::warn!(identity = %settings.identity, "lost the controllers' leadership; waiting to lead again");
            }
        }
    }
}

/// Hosts read a page at a time ([`LIST_PAGE`]); each is kept without what no controller
/// looks at (managed fields, Ansible variables, hardware, addresses, disks), so a pass over
/// many hosts holds one page of whole objects at most.
pub(crate) async fn list_hosts(
    hosts: &Api<fleetdb_fleet::Host>,
    params: &kube::api::ListParams,
) -> Result<Vec<fleetdb_fleet::Host>, kube::Error> {
    let mut params = params.clone().limit(LIST_PAGE);
    let mut all = Vec::new();
    loop {
        let page = hosts.list(&params).await?;
        all.extend(page.items.into_iter().map(|mut host| {
            host.metadata.managed_fields = None;
            host.spec.ansible = None;
            if let Some(status) = host.status.as_mut() {
                status.hardware = None;
                status.addresses = Vec::new();
                if let Some(agent) = status.agent.as_mut() {
                    agent.disks = Vec::new();
                    agent.addresses = Vec::new();
                }
            }
            host
        }));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(all),
        }
    }
}

/// Objects per page when the controllers list hosts.
pub const LIST_PAGE: u32 = 2500;

/// A merge patch of `object`, conditional on the resourceVersion it was read at, by the
/// controllers' field manager: false when it changed since (409) or is gone (404).
pub(crate) async fn patch_if_unchanged<K>(
    api: &Api<K>,
    object: &K,
    mut patch: serde_json::Value,
) -> Result<bool, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    patch["metadata"]["resourceVersion"] = json!(object.meta().resource_version);
    let params = kube::api::PatchParams {
        field_manager: Some(MANAGER.into()),
        ..kube::api::PatchParams::default()
    };
    let name = object.meta().name.clone().unwrap_or_default();
    match api
        .patch(&name, &params, &kube::api::Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

/// The merge patch that leaves `object` with `finalizer` (`present`) or without it, its
/// other finalizers as they are.
pub(crate) fn finalizer_patch<K: kube::Resource>(
    object: &K,
    finalizer: &str,
    present: bool,
) -> serde_json::Value {
    let mut finalizers = object.meta().finalizers.clone().unwrap_or_default();
    finalizers.retain(|f| f != finalizer);
    if present {
        finalizers.push(finalizer.to_owned());
    }
    json!({"metadata": {"finalizers": finalizers}})
}

/// A time in RFC 3339, whole seconds.
pub(crate) fn now() -> String {
    crate::rfc3339(time::OffsetDateTime::now_utc()).unwrap_or_default()
}

/// Records a `v1` Event about `object` in `default` (cluster-scoped objects' Events live
/// there, as kube-apiserver's do); failures are logged only.
pub(crate) async fn record(
    client: &kube::Client,
    object: ObjectReference,
    event_type: &str,
    reason: &str,
    message: &str,
) {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let now = now();
    let name = object.name.clone().unwrap_or_default();
    let suffix: u64 = rand::random();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{name}.{suffix:016x}"), "namespace": "default"},
        "involvedObject": object,
        "reason": reason,
        "message": message,
        "type": event_type,
        "source": {"component": MANAGER},
        "reportingComponent": MANAGER,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    let Ok(event) = serde_json::from_value::<Event>(event) else {
        return;
    };
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    if let Err(error) = events.create(&params, &event).await {
        tracing::warn!(%error, reason, "cannot record an event");
    }
}

/// The reference of a fleet object for Events.
pub(crate) fn reference<K>(object: &K) -> ObjectReference
where
    K: kube::Resource<DynamicType = ()>,
{
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: object.meta().name.clone(),
        uid: object.meta().uid.clone(),
        ..ObjectReference::default()
    }
}

/// A condition whose `lastTransitionTime` stays what it was unless its status changes.
pub(crate) fn condition(
    old: &[fleetdb_fleet::Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> fleetdb_fleet::Condition {
    let status = if status { "True" } else { "False" };
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(now);
    fleetdb_fleet::Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: Some(since),
        observed_generation: generation,
    }
}
