//! Decommission: every Host carries the finalizer `fleetdb.io/decommission`, so deleting one
//! leaves it in place (with a `deletionTimestamp`) until this controller lets it go:
//!
//! * a host whose agent acts on its spec (`spec.authorized` and an agent report) is released
//!   when the agent reports the condition `Decommissioned` (True or False: its configured
//!   command ran), or after the decommission timeout, with a Warning;
//! * any other host is released at once.
//!
//! Meanwhile it is out of the Ansible inventory and Prometheus discovery (they skip hosts
//! being deleted). On release the host's heartbeat Lease goes too.
//!
//! It follows Hosts with a watch and keeps no copy of them: only the names of the hosts it
//! waits for, looked at again every [`RECHECK`].

use std::collections::BTreeMap;
use std::time::Duration;

use fleetdb_fleet::{DECOMMISSION_FINALIZER, Host};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams};
use kube::runtime::{WatchStreamExt, watcher};

use super::{record, reference};
use crate::security::HEARTBEAT_NAMESPACE;

/// How long a host's agent has to report its decommission before the host goes anyway.
pub const DEFAULT_DECOMMISSION_TIMEOUT: Duration = Duration::from_secs(600);
/// How often hosts waiting for their agent are looked at again.
pub const RECHECK: Duration = Duration::from_secs(2);

/// What to do about one host now.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Nothing,
    AddFinalizer,
    /// Waiting for the agent until this many seconds after the deletion was asked.
    Wait,
    Release {
        event_type: &'static str,
        reason: &'static str,
        message: String,
    },
}

fn has_finalizer(host: &Host) -> bool {
    host.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == DECOMMISSION_FINALIZER))
}

fn decide(host: &Host, timeout: Duration) -> Next {
    if !host.is_decommissioning() {
        return if has_finalizer(host) {
            Next::Nothing
        } else {
            Next::AddFinalizer
        };
    }
    if !has_finalizer(host) {
        return Next::Nothing;
    }
    let agent = host.status.as_ref().and_then(|s| s.agent.as_ref());
    let acting = host.spec.authorized == Some(true) && agent.is_some();
    if !acting {
        return Next::Release {
            event_type: "Normal",
            reason: "Decommissioned",
            message: "no agent acts on this host: released at once".into(),
        };
    }
    if let Some(done) =
        agent.and_then(|a| a.conditions.iter().find(|c| c.type_ == "Decommissioned"))
    {
        let succeeded = done.status == "True";
        return Next::Release {
            event_type: if succeeded { "Normal" } else { "Warning" },
            reason: "Decommissioned",
            message: format!("the agent reports: {}", done.message),
        };
    }
    let asked = host
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or_default();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if now - asked >= timeout.as_secs() as i64 {
        return Next::Release {
            event_type: "Warning",
            reason: "DecommissionTimedOut",
            message: format!(
                "the agent did not report its decommission within {}s: released anyway",
                timeout.as_secs()
            ),
        };
    }
    Next::Wait
}

/// Writes the host's finalizers (with ours added or removed), conditionally on the version
/// read. False: it changed since, or is gone.
async fn set_finalizers(hosts: &Api<Host>, host: &Host, ours: bool) -> Result<bool, kube::Error> {
    let patch = super::finalizer_patch(host, DECOMMISSION_FINALIZER, ours);
    super::patch_if_unchanged(hosts, host, patch).await
}

/// Acts on one host as [`decide`] says; true when it still waits for its agent.
async fn handle(client: &kube::Client, hosts: &Api<Host>, host: &Host, timeout: Duration) -> bool {
    let name = host.metadata.name.clone().unwrap_or_default();
    let outcome = match decide(host, timeout) {
        Next::Nothing => return false,
        Next::Wait => return true,
        Next::AddFinalizer => set_finalizers(hosts, host, true).await.map(|_| ()),
        Next::Release {
            event_type,
            reason,
            message,
        } => match set_finalizers(hosts, host, false).await {
            Ok(true) => {
                record(client, reference(host), event_type, reason, &message).await;
                let leases: Api<Lease> = Api::namespaced(client.clone(), HEARTBEAT_NAMESPACE);
                match leases.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                    Err(error) => Err(error),
                }
            }
            Ok(false) => Ok(()),
            Err(error) => Err(error),
        },
    };
    if let Err(error) = outcome {
        tracing::warn!(%error, host = %name, "decommission: cannot update the host");
    }
    false
}

pub async fn run(client: kube::Client, timeout: Duration) {
    let hosts: Api<Host> = Api::all(client.clone());
    let mut events = watcher(hosts.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    // Hosts waiting for their agent, by name.
    let mut waiting: BTreeMap<String, ()> = BTreeMap::new();
    let mut tick = tokio::time::interval(RECHECK);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(host)) => {
                    let name = host.metadata.name.clone().unwrap_or_default();
                    if handle(&client, &hosts, &host, timeout).await {
                        waiting.insert(name, ());
                    } else {
                        waiting.remove(&name);
                    }
                }
                Some(Err(error)) => tracing::debug!(%error, "decommission: watch"),
                None => return,
            },
            _ = tick.tick() => {
                let names: Vec<String> = waiting.keys().cloned().collect();
                for name in names {
                    match hosts.get_opt(&name).await {
                        Ok(Some(host)) => {
                            if !handle(&client, &hosts, &host, timeout).await {
                                waiting.remove(&name);
                            }
                        }
                        Ok(None) => {
                            waiting.remove(&name);
                        }
                        Err(error) => tracing::debug!(%error, host = %name, "decommission: read"),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetdb_fleet::{AgentReport, Condition, HostSpec, HostStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn host(authorized: bool, agent: Option<AgentReport>, deleting_for: Option<i64>) -> Host {
        let mut host = Host::new(
            "h",
            HostSpec {
                authorized: Some(authorized),
                ..HostSpec::default()
            },
        );
        host.metadata.finalizers = Some(vec![DECOMMISSION_FINALIZER.into()]);
        host.metadata.deletion_timestamp = deleting_for.map(|seconds| {
            let at = time::OffsetDateTime::now_utc() - time::Duration::seconds(seconds);
            serde_json::from_value::<Time>(serde_json::json!(crate::rfc3339(at).unwrap())).unwrap()
        });
        host.status = Some(HostStatus {
            agent,
            ..HostStatus::default()
        });
        host
    }

    #[test]
    fn hosts_get_the_finalizer_and_lose_it_as_their_agent_says() {
        let timeout = Duration::from_secs(60);
        let mut fresh = host(false, None, None);
        fresh.metadata.finalizers = None;
        assert_eq!(decide(&fresh, timeout), Next::AddFinalizer);
        assert_eq!(decide(&host(true, None, None), timeout), Next::Nothing);
        // No agent, or one that may not act: released at once.
        assert!(matches!(
            decide(&host(true, None, Some(1)), timeout),
            Next::Release { .. }
        ));
        let agent = AgentReport::default();
        assert!(matches!(
            decide(&host(false, Some(agent.clone()), Some(1)), timeout),
            Next::Release { .. }
        ));
        // An acting agent: waited for, until it reports or the timeout.
        assert_eq!(
            decide(&host(true, Some(agent.clone()), Some(1)), timeout),
            Next::Wait
        );
        assert!(matches!(
            decide(&host(true, Some(agent.clone()), Some(61)), timeout),
            Next::Release {
                reason: "DecommissionTimedOut",
                ..
            }
        ));
        let reported = AgentReport {
            conditions: vec![Condition {
                type_: "Decommissioned".into(),
                status: "False".into(),
                message: "the decommission command exited with 3".into(),
                ..Condition::default()
            }],
            ..agent
        };
        assert!(matches!(
            decide(&host(true, Some(reported), Some(1)), timeout),
            Next::Release {
                event_type: "Warning",
                reason: "Decommissioned",
                ..
            }
        ));
    }
}
