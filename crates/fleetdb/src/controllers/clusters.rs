//! Clusters take hosts from the pool and give them back (Platform9's attach and detach).
//!
//! The pool is every authorized host without a cluster: `kubectl get hosts --field-selector
//! spec.authorized=true,spec.cluster=`, which is also how this controller reads it. A
//! Cluster with `spec.size` N and M members:
//!
//! * M < N: attaches up to N − M pool hosts that match `spec.hostSelector`, are not in
//!   maintenance, not being deleted, not `Ready=False` and whose agent's preflight has not
//!   failed, by setting their `spec.cluster` — each write conditional on the host's
//!   resourceVersion, so two clusters never take the same host;
//! * M > N: detaches M − N members, those in maintenance first, then those not ready, then
//!   by name from the end;
//! * always: `status` (members, ready count, `Ready` and `Progressing` with the reason, such
//!   as "pool has 2 matching hosts, 3 wanted") and an Event for each attach and detach, on
//!   the Host and on the Cluster.
//!
//! A host's change wakes the cluster it belongs to, and, while it is in the pool, every
//! cluster still short of hosts. Each cluster is also looked at every [`RESYNC`].

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetdb_fleet::{Cluster, ClusterStatus, Host};
use futures::StreamExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::json;

use super::{MANAGER, condition, record, reference};

/// How often every cluster is reconciled even when nothing woke it.
pub const RESYNC: Duration = Duration::from_secs(30);
/// How soon a failed reconcile is tried again.
pub const RETRY: Duration = Duration::from_secs(5);
/// Most hosts one reconcile attaches or detaches (the next pass does the rest).
pub const MAX_CHANGES_PER_PASS: usize = 100;

/// A reconcile's failure: an API error (retried after [`RETRY`]).
#[derive(Debug)]
pub struct Error(kube::Error);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Error {}

impl From<kube::Error> for Error {
    fn from(error: kube::Error) -> Self {
        Self(error)
    }
}

struct Context {
    client: kube::Client,
    hosts: Api<Host>,
    clusters: Api<Cluster>,
    /// Clusters with fewer members than their size: a pool host's change wakes them.
    wanting: Mutex<BTreeSet<String>>,
}

pub async fn run(client: kube::Client) {
    let context = Arc::new(Context {
        client: client.clone(),
        hosts: Api::all(client.clone()),
        clusters: Api::all(client.clone()),
        wanting: Mutex::new(BTreeSet::new()),
    });
    let mapper_context = context.clone();
    Controller::new(context.clusters.clone(), watcher::Config::default())
        .watches(
            context.hosts.clone(),
            watcher::Config::default(),
            move |host: Host| {
                let mut woken: Vec<ObjectRef<Cluster>> = Vec::new();
                match host.spec.cluster.as_deref().filter(|c| !c.is_empty()) {
                    Some(cluster) => woken.push(ObjectRef::new(cluster)),
                    None if host.spec.authorized == Some(true) => {
                        let wanting = mapper_context
                            .wanting
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        woken.extend(wanting.iter().map(|c| ObjectRef::new(c)));
                    }
                    None => {}
                }
                woken
            },
        )
        .run(reconcile, |_, _, _| Action::requeue(RETRY), context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "cluster reconcile");
            }
        })
        .await;
}

fn in_maintenance(host: &Host) -> bool {
    host.spec.maintenance == Some(true)
}

fn condition_is(host: &Host, type_: &str, status: &str) -> bool {
    host.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == status)
    })
}

fn preflight_failed(host: &Host) -> bool {
    host.status
        .as_ref()
        .and_then(|s| s.agent.as_ref())
        .is_some_and(|a| {
            a.conditions
                .iter()
                .any(|c| c.type_ == "Preflight" && c.status == "False")
        })
}

/// A member counts as ready when its agent heartbeats (`Ready=True`), it is not in
/// maintenance and its preflight has not failed.
fn ready(host: &Host) -> bool {
    condition_is(host, "Ready", "True") && !in_maintenance(host) && !preflight_failed(host)
}

fn name(host: &Host) -> String {
    host.metadata.name.clone().unwrap_or_default()
}

/// Sets (or clears) a host's cluster, conditionally on the resourceVersion it was read at.
async fn assign(context: &Context, host: &Host, cluster: Option<&str>) -> Result<bool, Error> {
    // False: changed since it was read (another cluster took it, someone edited it), or gone.
    let patch = json!({"spec": {"cluster": cluster}});
    Ok(super::patch_if_unchanged(&context.hosts, host, patch).await?)
}

async fn reconcile(cluster: Arc<Cluster>, context: Arc<Context>) -> Result<Action, Error> {
    let cluster_name = cluster.metadata.name.clone().unwrap_or_default();
    if cluster.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let members_of = ListParams::default().fields(&format!("spec.cluster={cluster_name}"));
    let mut members = super::list_hosts(&context.hosts, &members_of).await?;
    let wanted = cluster.spec.size.map(|s| s.max(0) as usize);
    let mut progress: Option<(String, String)> = None;
    let mut changed = false;
    match wanted {
        Some(wanted) if members.len() < wanted => {
            let mut pool_query = ListParams::default().fields("spec.authorized=true,spec.cluster=");
            if let Some(selector) = &cluster.spec.host_selector {
                let query = selector.to_query();
                if !query.is_empty() {
                    pool_query = pool_query.labels(&query);
                }
            }
            let mut pool: Vec<Host> = super::list_hosts(&context.hosts, &pool_query)
                .await?
                .into_iter()
                .filter(|h| {
                    h.metadata.deletion_timestamp.is_none()
                        && !in_maintenance(h)
                        && !condition_is(h, "Ready", "False")
                        && !preflight_failed(h)
                })
                .collect();
            pool.sort_by_key(name);
            let short = wanted - members.len();
            let matching = pool.len();
            for host in pool.into_iter().take(short.min(MAX_CHANGES_PER_PASS)) {
                if assign(&context, &host, Some(&cluster_name)).await? {
                    changed = true;
                    let message = format!("attached to cluster {cluster_name}");
                    record(
                        &context.client,
                        reference(&host),
                        "Normal",
                        "Attached",
                        &message,
                    )
                    .await;
                    record(
                        &context.client,
                        reference(&*cluster),
                        "Normal",
                        "HostAttached",
                        &format!("attached host {}", name(&host)),
                    )
                    .await;
                    members.push(host);
                }
            }
            progress = Some(if matching < short {
                (
                    "WaitingForHosts".into(),
                    format!(
                        "pool has {matching} matching host{}, {short} wanted",
                        if matching == 1 { "" } else { "s" }
                    ),
                )
            } else {
                ("Attaching".into(), format!("attaching {short} hosts"))
            });
        }
        Some(wanted) if members.len() > wanted => {
            // Detach the least useful first: in maintenance, then not ready, then by name
            // from the end.
            members.sort_by_key(|h| (!in_maintenance(h), ready(h), std::cmp::Reverse(name(h))));
            let surplus = members.len() - wanted;
            let mut kept = Vec::new();
            for (i, host) in members.into_iter().enumerate() {
                if i < surplus.min(MAX_CHANGES_PER_PASS) && assign(&context, &host, None).await? {
                    changed = true;
                    let message = format!("detached from cluster {cluster_name}: back in the pool");
                    record(
                        &context.client,
                        reference(&host),
                        "Normal",
                        "Detached",
                        &message,
                    )
                    .await;
                    record(
                        &context.client,
                        reference(&*cluster),
                        "Normal",
                        "HostDetached",
                        &format!("detached host {}", name(&host)),
                    )
                    .await;
                } else {
                    kept.push(host);
                }
            }
            members = kept;
            progress = Some(("Detaching".into(), format!("detaching {surplus} hosts")));
        }
        _ => {}
    }
    let mut names: Vec<String> = members.iter().map(name).collect();
    names.sort();
    let ready_hosts = members.iter().filter(|h| ready(h)).count();
    let wanting = wanted.is_some_and(|w| names.len() < w);
    {
        let mut set = context.wanting.lock().unwrap_or_else(|e| e.into_inner());
        if wanting {
            set.insert(cluster_name.clone());
        } else {
            set.remove(&cluster_name);
        }
    }
    let old = cluster
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let generation = cluster.metadata.generation;
    let size = wanted.unwrap_or(names.len());
    let (progressing, reason, message) = match progress {
        Some((reason, message)) if changed || wanting => (true, reason, message),
        _ => (
            false,
            "Complete".to_owned(),
            format!("{} of {size} hosts attached", names.len()),
        ),
    };
    let status = ClusterStatus {
        hosts: names.len() as u32,
        ready_hosts: ready_hosts as u32,
        members: names,
        observed_generation: generation,
        conditions: vec![
            condition(
                &old,
                "Ready",
                ready_hosts >= size && size > 0,
                if ready_hosts >= size && size > 0 {
                    "HostsReady"
                } else {
                    "HostsNotReady"
                },
                format!("{ready_hosts} of {size} hosts ready"),
                generation,
            ),
            condition(
                &old,
                "Progressing",
                progressing,
                &reason,
                message,
                generation,
            ),
        ],
    };
    if cluster.status.as_ref() != Some(&status) {
        let document = json!({
            "apiVersion": "fleetdb.io/v1alpha1",
            "kind": "Cluster",
            "metadata": {"name": cluster_name},
            "status": status,
        });
        context
            .clusters
            .patch_status(
                &cluster_name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&document),
            )
            .await?;
    }
    Ok(if changed {
        Action::requeue(Duration::from_secs(1))
    } else {
        Action::requeue(RESYNC)
    })
}
