//! Tenure: how long each host has been in the fleet and since when it has been in service
//! (`status.tenure`, the JOINED and SERVING columns of `kubectl get hosts`), derived from
//! the host's history (`GET …/hosts/NAME/history`), so the answer is the same whoever runs
//! the controllers, however often they restart, and for hosts deleted and created again.
//!
//! * `inFleetSince`: the oldest creation of the host in history — kept once written, so it
//!   outlives the history's retention while the host exists.
//! * `inServiceSince`: the time of the oldest change of the newest run of versions that were
//!   all in service ([`Host::in_service`]); cleared while the host is out of service.
//!
//! The controller reads a host's history only when what the host shows disagrees with its
//! state now (it entered or left service, or a field is missing), so quiet hosts cost
//! nothing. A host that left service and came back while no controller ran keeps its older
//! `inServiceSince` until its next transition.

use fleetdb_fleet::{Host, Tenure};
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use super::MANAGER;
use crate::history::changes::Version;

pub async fn run(client: kube::Client) {
    let hosts: Api<Host> = Api::all(client.clone());
    let events = watcher(hosts.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(host) => {
                if let Err(error) = reconcile(&client, &hosts, &host).await {
                    tracing::warn!(%error, host = ?host.metadata.name, "cannot update the host's tenure");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "watching hosts for their tenure failed; retrying")
            }
        }
    }
}

/// Whether `host` shows what its state now implies without reading history.
pub fn settled(host: &Host) -> bool {
    let tenure = host
        .status
        .as_ref()
        .and_then(|s| s.tenure.clone())
        .unwrap_or_default();
    tenure.in_fleet_since.is_some() && host.in_service() == tenure.in_service_since.is_some()
}

async fn reconcile(client: &kube::Client, hosts: &Api<Host>, host: &Host) -> anyhow::Result<()> {
    if settled(host) {
        return Ok(());
    }
    let name = host.metadata.name.clone().unwrap_or_default();
    let request = http::Request::get(format!("/apis/fleetdb.io/v1alpha1/hosts/{name}/history"))
        .body(Vec::new())?;
    let answer: serde_json::Value = match client.request(request).await {
        Ok(answer) => answer,
        // Gone since the event: nothing to do.
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
        Err(error) => return Err(error.into()),
    };
    let versions = Version::parse_list(&answer);
    let current = host.status.as_ref().and_then(|s| s.tenure.clone());
    let tenure = compute(&versions, host, current.as_ref());
    if Some(&tenure) == current.as_ref() {
        return Ok(());
    }
    let patch = json!({"status": {"tenure": {
        "inFleetSince": tenure.in_fleet_since,
        "inServiceSince": tenure.in_service_since,
    }}});
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    };
    match hosts
        .patch_status(&name, &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// The tenure `versions` (oldest first, as history lists them) imply for `host` (the
/// newest state), given what it showed before.
pub fn compute(versions: &[Version], host: &Host, before: Option<&Tenure>) -> Tenure {
    let creations = versions
        .iter()
        .filter_map(|v| v.object.as_ref())
        .filter_map(|o| {
            o["metadata"]["creationTimestamp"]
                .as_str()
                .map(str::to_owned)
        });
    let in_fleet_since = before
        .and_then(|t| t.in_fleet_since.clone())
        .into_iter()
        .chain(creations)
        .chain(
            host.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string()),
        )
        .min_by_key(|t| instant(t));
    let in_service_since = if host.in_service() {
        let mut since: Option<String> = None;
        let mut whole_history = true;
        for version in versions.iter().rev() {
            let serving = version
                .object
                .as_ref()
                .and_then(|o| serde_json::from_value::<Host>(o.clone()).ok())
                .is_some_and(|h| h.in_service());
            if !serving {
                whole_history = false;
                break;
            }
            if let Some(time) = &version.time {
                since = Some(time.clone());
            }
        }
        // In service since before the oldest change kept: keep the older time known.
        let earlier = before
            .and_then(|t| t.in_service_since.clone())
            .filter(|_| whole_history);
        since
            .into_iter()
            .chain(earlier)
            .min_by_key(|t| instant(t))
            .or_else(|| Some(super::now()))
    } else {
        None
    };
    Tenure {
        in_fleet_since,
        in_service_since,
    }
}

/// An RFC 3339 time as something ordered (unparsable ones last).
fn instant(text: &str) -> i128 {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_or(i128::MAX, |t| t.unix_timestamp_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn host(created: &str, state: &str, maintenance: bool) -> Value {
        json!({"apiVersion": "fleetdb.io/v1alpha1", "kind": "Host",
            "metadata": {"name": "web-1", "creationTimestamp": created},
            "spec": {"maintenance": maintenance},
            "status": {"state": state}})
    }

    fn version(time: &str, object: Option<Value>) -> Version {
        Version {
            revision: 0,
            time: Some(time.into()),
            user: None,
            impersonated_by: None,
            operation: "patch".into(),
            object,
        }
    }

    #[test]
    fn in_service_since_the_newest_run_began() {
        let created = "2026-11-01T00:00:00Z";
        let versions = [
            version(
                "2026-11-01T00:00:00.000Z",
                Some(host(created, "Stopped", false)),
            ),
            version(
                "2026-11-02T00:00:00.000Z",
                Some(host(created, "Running", false)),
            ),
            version(
                "2026-11-03T00:00:00.000Z",
                Some(host(created, "Running", true)),
            ),
            version(
                "2026-11-04T00:00:00.000Z",
                Some(host(created, "Running", false)),
            ),
            version(
                "2026-11-05T00:00:00.000Z",
                Some(host(created, "Running", false)),
            ),
        ];
        let now: Host = serde_json::from_value(host(created, "Running", false)).unwrap();
        let tenure = compute(&versions, &now, None);
        assert_eq!(
            tenure.in_service_since.as_deref(),
            Some("2026-11-04T00:00:00.000Z")
        );
        assert_eq!(tenure.in_fleet_since.as_deref(), Some(created));
        let out: Host = serde_json::from_value(host(created, "Running", true)).unwrap();
        assert_eq!(compute(&versions[..3], &out, None).in_service_since, None);
    }

    #[test]
    fn a_host_that_came_back_was_in_the_fleet_since_its_first_creation() {
        let versions = [
            version(
                "2026-10-01T00:00:00.000Z",
                Some(host("2026-10-01T00:00:00Z", "Running", false)),
            ),
            version("2026-10-09T00:00:00.000Z", None),
            version(
                "2026-11-20T00:00:00.000Z",
                Some(host("2026-11-20T00:00:00Z", "Running", false)),
            ),
        ];
        let now: Host =
            serde_json::from_value(host("2026-11-20T00:00:00Z", "Running", false)).unwrap();
        let tenure = compute(&versions, &now, None);
        assert_eq!(
            tenure.in_fleet_since.as_deref(),
            Some("2026-10-01T00:00:00Z")
        );
        assert_eq!(
            tenure.in_service_since.as_deref(),
            Some("2026-11-20T00:00:00.000Z")
        );
        // What was known before the oldest change kept survives retention.
        let before = Tenure {
            in_fleet_since: Some("2026-01-01T00:00:00Z".into()),
            in_service_since: Some("2026-01-02T00:00:00Z".into()),
        };
        let kept = compute(&versions[2..], &now, Some(&before));
        assert_eq!(kept.in_fleet_since.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(
            kept.in_service_since.as_deref(),
            Some("2026-01-02T00:00:00Z")
        );
        // But not across a break history shows.
        let broken = compute(&versions, &now, Some(&before));
        assert_eq!(
            broken.in_service_since.as_deref(),
            Some("2026-11-20T00:00:00.000Z")
        );
    }
}
