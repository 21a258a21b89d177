//! Stale hosts: every host agent renews a Lease `fleetdb-system/<host>`. A host whose Lease
//! has not changed for the stale period gets the condition `Ready=False` (reason
//! `HeartbeatMissed`) and a Warning Event; when the Lease moves again, `Ready=True` (reason
//! `HeartbeatReceived`) and a Normal Event.
//!
//! A stale Lease whose Host no longer exists is removed.
//!
//! As kube's node lifecycle controller does, a Lease's age is measured from when this
//! controller saw it change, on its own clock (a skewed agent clock cannot make a host
//! stale or fresh), and a new leader gives every Lease a full period before judging it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use fleetdb_fleet::Host;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use super::{MANAGER, condition, record, reference};
use crate::security::HEARTBEAT_NAMESPACE;

/// The longest pause between two looks at the Leases.
pub const MAX_CHECK_PERIOD: Duration = Duration::from_secs(5);

/// What the controller knows of one host's heartbeat.
struct Heartbeat {
    renewed: String,
    changed: Instant,
    /// The Ready status this controller last wrote or found.
    ready: Option<bool>,
}

pub async fn run(client: kube::Client, stale_after: Duration) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), HEARTBEAT_NAMESPACE);
    let hosts: Api<Host> = Api::all(client.clone());
    let period = (stale_after / 4).clamp(Duration::from_millis(200), MAX_CHECK_PERIOD);
    let mut known: HashMap<String, Heartbeat> = HashMap::new();
    loop {
        match leases.list(&ListParams::default()).await {
            Ok(list) => {
                let mut present = HashSet::with_capacity(list.items.len());
                for lease in list.items {
                    let Some(name) = lease.metadata.name.clone() else {
                        continue;
                    };
                    if name == super::leader::LEASE_NAME {
                        continue;
                    }
                    let renewed = lease
                        .spec
                        .as_ref()
                        .and_then(|s| s.renew_time.as_ref())
                        .map(|t| t.0.to_string())
                        .unwrap_or_default();
                    let beat = known.entry(name.clone()).or_insert_with(|| Heartbeat {
                        renewed: renewed.clone(),
                        changed: Instant::now(),
                        ready: None,
                    });
                    if beat.renewed != renewed {
                        beat.renewed = renewed;
                        beat.changed = Instant::now();
                    }
                    let fresh = beat.changed.elapsed() < stale_after;
                    if beat.ready != Some(fresh) {
                        match set_ready(&client, &hosts, &name, fresh, stale_after).await {
                            // A stale Lease without its Host (decommissioned, deleted):
                            // nobody renews it any more.
                            Ok(false) if !fresh => {
                                if let Err(error) = leases.delete(&name, &Default::default()).await
                                {
                                    tracing::debug!(%error, lease = %name, "cannot remove a stale Lease");
                                }
                            }
                            Ok(written) => beat.ready = written.then_some(fresh),
                            Err(error) => {
                                tracing::warn!(%error, host = %name, "cannot set the host's Ready condition")
                            }
                        }
                    }
                    present.insert(name);
                }
                known.retain(|name, _| present.contains(name));
            }
            Err(error) => tracing::warn!(%error, "cannot list the hosts' Leases"),
        }
        tokio::time::sleep(period).await;
    }
}

/// Sets the host's `Ready` condition to `fresh` unless it already says so, with an Event on
/// a change. Returns false when there is no such host (a Lease without its Host).
async fn set_ready(
    client: &kube::Client,
    hosts: &Api<Host>,
    name: &str,
    fresh: bool,
    stale_after: Duration,
) -> Result<bool, kube::Error> {
    let Some(host) = hosts.get_opt(name).await? else {
        return Ok(false);
    };
    let conditions = host
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let current = conditions.iter().find(|c| c.type_ == "Ready");
    let wanted = if fresh { "True" } else { "False" };
    if current.is_some_and(|c| c.status == wanted) {
        return Ok(true);
    }
    let (reason, message) = if fresh {
        (
            "HeartbeatReceived",
            format!("the host's agent renews its Lease {HEARTBEAT_NAMESPACE}/{name}"),
        )
    } else {
        (
            "HeartbeatMissed",
            format!(
                "the host's agent has not renewed its Lease {HEARTBEAT_NAMESPACE}/{name} for {}s",
                stale_after.as_secs()
            ),
        )
    };
    let ready = condition(&conditions, "Ready", fresh, reason, message.clone(), None);
    let document = json!({
        "apiVersion": "fleetdb.io/v1alpha1",
        "kind": "Host",
        "metadata": {"name": name},
        "status": {"conditions": [ready]},
    });
    hosts
        .patch_status(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&document),
        )
        .await?;
    // The first look at a healthy host is no news; a change is.
    if !(fresh && current.is_none()) {
        let event_type = if fresh { "Normal" } else { "Warning" };
        record(client, reference(&host), event_type, reason, &message).await;
    }
    Ok(true)
}
