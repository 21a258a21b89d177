//! Syncing an observation into Host records, and reporting it in the Source's status.
//!
//! Writes only what changed: a host whose labels, annotations and observed status already
//! match is not written at all (`lastSeen` is refreshed at most every
//! [`LAST_SEEN_REFRESH`]), so an unchanged re-sync issues no host writes.

use std::collections::BTreeMap;
use std::time::Duration;

use fleetdb_fleet::{Condition, Host, HostSpec, HostState, HostStatus, Source, labels};
use futures::StreamExt;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{FetchError, Observation, ObservedHost, RowProblem};

/// Field managers of fetchers are named `fleetdb-fetch-<source>`.
pub const FIELD_MANAGER_PREFIX: &str = "fleetdb-fetch-";
/// `status.lastSeen` is refreshed when older than this, not at every sync.
pub const LAST_SEEN_REFRESH: Duration = Duration::from_secs(3600);
/// Host writes in flight at once.
pub const MAX_CONCURRENT_WRITES: usize = 16;
/// Attempts per request on conflicts and transient errors.
const ATTEMPTS: u32 = 5;
/// First pause between attempts; doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Hosts listed per page when reading what the source already reported.
const LIST_PAGE: u32 = 500;
/// Bad rows named in the Source status at most (the count is always given).
const PROBLEMS_REPORTED: usize = 20;

/// What one sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub seen: u32,
    pub created: u32,
    pub updated: u32,
    pub unchanged: u32,
    pub gone: u32,
    /// Write requests sent for hosts.
    pub writes: u32,
    pub problems: Vec<RowProblem>,
    /// Hosts that could not be written, with the reason.
    pub failures: Vec<String>,
}

/// Syncs observations of one Source into Hosts.
pub struct Syncer {
    hosts: Api<Host>,
    sources: Api<Source>,
    source: String,
    manager: String,
}

fn timestamp(time: OffsetDateTime) -> String {
    time.replace_nanosecond(0)
        .unwrap_or(time)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Whether every field of `desired` is present with the same value in `current`.
fn is_subset(desired: &Value, current: &Value) -> bool {
    match (desired, current) {
        (Value::Object(d), Value::Object(c)) => d
            .iter()
            .all(|(k, v)| c.get(k).is_some_and(|cv| is_subset(v, cv))),
        _ => desired == current,
    }
}

fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 409 || status.code == 429 || status.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Runs a request, retrying conflicts and transient failures with backoff.
async fn with_retries<T, F, Fut>(mut request: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match request().await {
            Err(error) if attempt < ATTEMPTS && is_transient(&error) => {
                tracing::debug!(%error, attempt, "retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// What has to be written for one host.
enum Plan {
    Create(Box<(ObservedHost, HostStatus)>),
    Update {
        name: String,
        metadata: Option<Value>,
        status: Option<Box<HostStatus>>,
    },
    Nothing,
}

impl Syncer {
    pub fn new(client: Client, source: &str) -> Self {
        Self {
            hosts: Api::all(client.clone()),
            sources: Api::all(client),
            source: source.to_owned(),
            manager: format!("{FIELD_MANAGER_PREFIX}{source}"),
        }
    }

    pub fn manager(&self) -> &str {
        &self.manager
    }

    pub fn sources(&self) -> &Api<Source> {
        &self.sources
    }

    /// The hosts this source reported before, by name.
    async fn existing(&self) -> Result<BTreeMap<String, Host>, FetchError> {
        let mut found = BTreeMap::new();
        let mut params = ListParams::default()
            .labels(&format!("{}={}", labels::SOURCE, self.source))
            .limit(LIST_PAGE);
        loop {
            let page = with_retries(|| self.hosts.list(&params)).await?;
            for host in page.items {
                found.insert(host.name_any(), host);
            }
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => return Ok(found),
            }
        }
    }

    fn metadata_document(&self, name: &str, observed: &ObservedHost) -> Value {
        json!({
            "apiVersion": "fleetdb.io/v1alpha1",
            "kind": "Host",
            "metadata": {"name": name, "labels": observed.labels, "annotations": observed.annotations},
        })
    }

    /// The observed status to write, keeping firstSeen, a fresh lastSeen and the Present
    /// condition's transition time from the current one.
    fn desired_status(
        &self,
        observed: &ObservedHost,
        current: Option<&HostStatus>,
        now: OffsetDateTime,
    ) -> HostStatus {
        let now_text = timestamp(now);
        let mut status = observed.status.clone();
        status.first_seen = current
            .and_then(|c| c.first_seen.clone())
            .or(Some(now_text.clone()));
        let fresh = current
            .and_then(|c| c.last_seen.as_deref())
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .filter(|seen| now - *seen < LAST_SEEN_REFRESH && *seen <= now);
        status.last_seen = match fresh {
            Some(_) => current.and_then(|c| c.last_seen.clone()),
            None => Some(now_text.clone()),
        };
        let present = current
            .and_then(|c| c.conditions.iter().find(|c| c.type_ == "Present"))
            .filter(|c| c.status == "True");
        status.conditions = vec![Condition {
            type_: "Present".into(),
            status: "True".into(),
            reason: "Reported".into(),
            message: format!("reported by source {}", self.source),
            last_transition_time: present
                .and_then(|c| c.last_transition_time.clone())
                .or(Some(now_text)),
            observed_generation: None,
        }];
        status
    }

    fn plan(&self, observed: ObservedHost, current: Option<&Host>, now: OffsetDateTime) -> Plan {
        let Some(current) = current else {
            let status = self.desired_status(&observed, None, now);
            return Plan::Create(Box::new((observed, status)));
        };
        let status = self.desired_status(&observed, current.status.as_ref(), now);
        let current_meta = json!({
            "labels": current.metadata.labels.clone().unwrap_or_default(),
            "annotations": current.metadata.annotations.clone().unwrap_or_default(),
        });
        let desired_meta = json!({"labels": observed.labels, "annotations": observed.annotations});
        let metadata = (!is_subset(&desired_meta, &current_meta))
            .then(|| self.metadata_document(&current.name_any(), &observed));
        let current_status =
            serde_json::to_value(current.status.clone().unwrap_or_default()).unwrap_or_default();
        let status_changed = !is_subset(
            &serde_json::to_value(&status).unwrap_or_default(),
            &current_status,
        );
        if metadata.is_none() && !status_changed {
            return Plan::Nothing;
        }
        Plan::Update {
            name: current.name_any(),
            metadata,
            status: status_changed.then(|| Box::new(status)),
        }
    }

    async fn apply_status(&self, name: &str, status: &HostStatus) -> Result<(), kube::Error> {
        let document = json!({
            "apiVersion": "fleetdb.io/v1alpha1",
            "kind": "Host",
            "metadata": {"name": name},
            "status": status,
        });
        let params = PatchParams::apply(&self.manager).force();
        let patch = Patch::Apply(&document);
        with_retries(|| self.hosts.patch_status(name, &params, &patch))
            .await
            .map(|_| ())
    }

    async fn apply_metadata(&self, name: &str, document: &Value) -> Result<(), kube::Error> {
        let params = PatchParams::apply(&self.manager).force();
        let patch = Patch::Apply(document);
        with_retries(|| self.hosts.patch(name, &params, &patch))
            .await
            .map(|_| ())
    }

    /// Writes one plan; returns (created, updated, writes).
    async fn execute(&self, plan: Plan) -> Result<(u32, u32, u32), String> {
        match plan {
            Plan::Nothing => Ok((0, 0, 0)),
            Plan::Create(created) => {
                let (observed, status) = *created;
                let host = Host {
                    metadata: ObjectMeta {
                        name: Some(observed.name.clone()),
                        labels: Some(observed.labels.clone()),
                        annotations: Some(observed.annotations.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: HostSpec {
                        role: observed.role.clone(),
                        ..HostSpec::default()
                    },
                    status: None,
                };
                let params = PostParams {
                    field_manager: Some(self.manager.clone()),
                    ..PostParams::default()
                };
                let mut writes = 1;
                match with_retries(|| self.hosts.create(&params, &host)).await {
                    Ok(_) => {}
                    // Created meanwhile (another fetcher, a person): take over our fields.
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        let document = self.metadata_document(&observed.name, &observed);
                        self.apply_metadata(&observed.name, &document)
                            .await
                            .map_err(|e| format!("{}: {e}", observed.name))?;
                        writes += 1;
                    }
                    Err(e) => return Err(format!("{}: {e}", observed.name)),
                }
                self.apply_status(&observed.name, &status)
                    .await
                    .map_err(|e| format!("{}: {e}", observed.name))?;
                Ok((1, 0, writes + 1))
            }
            Plan::Update {
                name,
                metadata,
                status,
            } => {
                let mut writes = 0;
                if let Some(document) = metadata {
                    self.apply_metadata(&name, &document)
                        .await
                        .map_err(|e| format!("{name}: {e}"))?;
                    writes += 1;
                }
                if let Some(status) = status {
                    self.apply_status(&name, &status)
                        .await
                        .map_err(|e| format!("{name}: {e}"))?;
                    writes += 1;
                }
                Ok((0, 1, writes))
            }
        }
    }

    /// Writes an observation: creates and updates what changed, marks hosts that are gone.
    pub async fn sync(
        &self,
        observation: Observation,
        now: OffsetDateTime,
    ) -> Result<SyncReport, FetchError> {
        let mut existing = self.existing().await?;
        let mut report = SyncReport {
            seen: observation.hosts.len() as u32,
            problems: observation.problems,
            ..SyncReport::default()
        };
        let mut plans = Vec::with_capacity(observation.hosts.len());
        for observed in observation.hosts {
            let current = existing.remove(&observed.name);
            plans.push(self.plan(observed, current.as_ref(), now));
        }
        // What is left was reported before and is not now.
        let now_text = timestamp(now);
        for (name, host) in existing {
            let mut status = host.status.clone().unwrap_or_default();
            if status.state == Some(HostState::Terminated) {
                continue;
            }
            let last_seen = status
                .last_seen
                .clone()
                .unwrap_or_else(|| "an unknown time".into());
            status.state = Some(HostState::Terminated);
            status.conditions.retain(|c| c.type_ != "Present");
            status.conditions.push(Condition {
                type_: "Present".into(),
                status: "False".into(),
                reason: "NotReported".into(),
                message: format!("not reported by source {} since {last_seen}", self.source),
                last_transition_time: Some(now_text.clone()),
                observed_generation: None,
            });
            report.gone += 1;
            plans.push(Plan::Update {
                name,
                metadata: None,
                status: Some(Box::new(status)),
            });
        }
        let results: Vec<Result<(u32, u32, u32), String>> =
            futures::stream::iter(plans.into_iter().map(|plan| self.execute(plan)))
                .buffer_unordered(MAX_CONCURRENT_WRITES)
                .collect()
                .await;
        for result in results {
            match result {
                Ok((0, 0, 0)) => report.unchanged += 1,
                Ok((created, updated, writes)) => {
                    report.created += created;
                    report.updated += updated;
                    report.writes += writes;
                }
                Err(failure) => report.failures.push(failure),
            }
        }
        // Gone hosts were counted as updates too; keep the categories apart.
        report.updated = report.updated.saturating_sub(report.gone);
        Ok(report)
    }

    /// Writes the sync result (or the error that prevented it) into the Source's status.
    pub async fn record(
        &self,
        outcome: Result<&SyncReport, &FetchError>,
        now: OffsetDateTime,
    ) -> Result<(), FetchError> {
        let now = timestamp(now);
        let (status, condition) = match outcome {
            Ok(report) => {
                let mut problems: Vec<String> = report
                    .problems
                    .iter()
                    .take(PROBLEMS_REPORTED)
                    .map(|p| format!("line {}: {}", p.line, p.message))
                    .collect();
                if report.problems.len() > PROBLEMS_REPORTED {
                    problems.push(format!(
                        "... and {} more",
                        report.problems.len() - PROBLEMS_REPORTED
                    ));
                }
                problems.extend(report.failures.iter().take(PROBLEMS_REPORTED).cloned());
                let last_error = (!problems.is_empty()).then(|| {
                    format!(
                        "{} bad rows skipped, {} hosts not written: {}",
                        report.problems.len(),
                        report.failures.len(),
                        problems.join("; ")
                    )
                });
                let ok = report.failures.is_empty();
                (
                    json!({
                        "lastSyncTime": now,
                        "hostsSeen": report.seen,
                        "hostsCreated": report.created,
                        "hostsUpdated": report.updated,
                        "hostsGone": report.gone,
                        "lastError": last_error,
                    }),
                    Condition {
                        type_: "Synced".into(),
                        status: if ok { "True" } else { "False" }.into(),
                        reason: if ok {
                            "SyncSucceeded"
                        } else {
                            "HostsNotWritten"
                        }
                        .into(),
                        message: format!(
                            "{} hosts seen, {} created, {} updated, {} gone, {} bad rows",
                            report.seen,
                            report.created,
                            report.updated,
                            report.gone,
                            report.problems.len()
                        ),
                        last_transition_time: Some(now.clone()),
                        observed_generation: None,
                    },
                )
            }
            Err(error) => (
                json!({"lastSyncTime": now, "lastError": error.to_string()}),
                Condition {
                    type_: "Synced".into(),
                    status: "False".into(),
                    reason: "SyncFailed".into(),
                    message: error.to_string(),
                    last_transition_time: Some(now.clone()),
                    observed_generation: None,
                },
            ),
        };
        let mut status = status;
        status["conditions"] = json!([condition]);
        if let Some(map) = status.as_object_mut() {
            map.retain(|_, v| !v.is_null());
        }
        let document = json!({
            "apiVersion": "fleetdb.io/v1alpha1",
            "kind": "Source",
            "metadata": {"name": self.source},
            "status": status,
        });
        let params = PatchParams::apply(&self.manager).force();
        let patch = Patch::Apply(&document);
        with_retries(|| self.sources.patch_status(&self.source, &params, &patch)).await?;
        Ok(())
    }
}
