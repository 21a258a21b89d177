//! Rollouts: one change (maintenance for a while, a run, an OS upgrade) applied to many
//! hosts, a few at a time, never past a limit.
//!
//! Each pass reads the rollout's hosts (label selector and/or `spec.cluster`) and their
//! progress, kept on each host as the label `rollout.fleetdb.io/<rollout>`; finishes what
//! is done (maintenance over, the agent's run reported, the OS up to date); then starts
//! pending hosts in name order while the limits allow:
//!
//! * `maxUnavailable`: targets in progress plus targets not ready (`Ready=False`) stay at
//!   or under it;
//! * `maxPerTopology`: the same count per value of a host label (one rack at a time);
//! * `maxFailures`: past it nothing new starts (phase `Failed`); `paused` too (`Paused`).
//!
//! A host is started by one write, conditional on the resourceVersion it was read at, that
//! sets its label and its spec together; the counts are taken from the hosts as read at the
//! start of the pass. So the limits hold across restarts and leader changes: the state is in
//! the API, and only the elected leader writes. What the limits hold back is in `status.held`
//! ("rack r07 already has 1 in progress").

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use fleetdb_fleet::rollout::{
    CLEANUP_FINALIZER, Held, HostProgress, PROGRESS_LABEL_PREFIX, Rollout, RolloutStatus,
    STARTED_ANNOTATION_PREFIX,
};
use fleetdb_fleet::{Host, parse_interval};
use futures::StreamExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::clusters::Error;
use super::{MANAGER, condition, record, reference};

/// How soon a rollout with hosts in progress or pending is looked at again.
pub const ACTIVE_REQUEUE: Duration = Duration::from_secs(2);
/// How often a finished or paused rollout is looked at.
pub const IDLE_REQUEUE: Duration = Duration::from_secs(30);
/// Host names each `status.held` entry gives as examples.
pub const HELD_EXAMPLES: usize = 5;
/// Most `status.held` entries.
pub const MAX_HELD_REASONS: usize = 10;

struct Context {
    client: kube::Client,
    hosts: Api<Host>,
    rollouts: Api<Rollout>,
}

pub async fn run(client: kube::Client) {
    let context = Arc::new(Context {
        client: client.clone(),
        hosts: Api::all(client.clone()),
        rollouts: Api::all(client),
    });
    Controller::new(context.rollouts.clone(), watcher::Config::default())
        .watches(
            context.hosts.clone(),
            watcher::Config::default(),
            |host: Host| {
                host.metadata
                    .labels
                    .unwrap_or_default()
                    .into_keys()
                    .filter_map(|key| {
                        key.strip_prefix(PROGRESS_LABEL_PREFIX)
                            .map(ObjectRef::<Rollout>::new)
                    })
                    .collect::<Vec<_>>()
            },
        )
        .run(
            reconcile,
            |_, _, _| Action::requeue(super::clusters::RETRY),
            context,
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "rollout reconcile");
            }
        })
        .await;
}

fn name_of(host: &Host) -> String {
    host.metadata.name.clone().unwrap_or_default()
}

fn not_ready(host: &Host) -> bool {
    host.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "False")
    })
}

fn label<'a>(host: &'a Host, key: &str) -> Option<&'a str> {
    host.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

/// `maxUnavailable` against `total` targets: a count, or a percentage rounded down; at
/// least 1.
pub fn max_unavailable(value: Option<&Value>, total: usize) -> Result<usize, String> {
    let limit = match value {
        None => 1,
        Some(Value::Number(n)) => {
            n.as_u64()
                .ok_or_else(|| format!("maxUnavailable: {n} is not a count"))? as usize
        }
        Some(Value::String(text)) => {
            let percent: u64 = text
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .filter(|p| *p <= 100)
                .ok_or_else(|| {
                    format!("maxUnavailable: {text:?} is not a count or a percentage")
                })?;
            (total as u64 * percent / 100) as usize
        }
        Some(other) => {
            return Err(format!(
                "maxUnavailable: {other} is not a count or a percentage"
            ));
        }
    };
    Ok(limit.max(1))
}

/// What a pass decided about the pending hosts: which to start, which are held and why.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub start: Vec<String>,
    /// (limit, reason) → how many hosts it holds, and the first [`HELD_EXAMPLES`] of them.
    pub held: BTreeMap<(String, String), (u32, Vec<String>)>,
}

/// A target as the planner sees it.
pub struct Target<'a> {
    pub name: &'a str,
    pub progress: HostProgress,
    pub not_ready: bool,
    /// The host's value of each topology key, in the rollout's order.
    pub domains: Vec<Option<&'a str>>,
}

/// Plans a pass: starts pending, ready hosts in the given order while `max_unavailable` and
/// each topology limit (`limits`: (key, max)) allow, counting hosts in progress and hosts not
/// ready as unavailable.
pub fn plan<'a>(targets: &[Target<'a>], max_unavailable: usize, limits: &[(&str, usize)]) -> Plan {
    let unavailable = |t: &Target| t.progress == HostProgress::InProgress || t.not_ready;
    let mut used = targets.iter().filter(|t| unavailable(t)).count();
    let mut per_domain: Vec<HashMap<&str, usize>> = vec![HashMap::new(); limits.len()];
    let count_in = |per_domain: &mut Vec<HashMap<&'a str, usize>>, target: &Target<'a>| {
        for (counts, domain) in per_domain.iter_mut().zip(&target.domains) {
            if let Some(domain) = domain {
                *counts.entry(domain).or_default() += 1;
            }
        }
    };
    for target in targets.iter().filter(|t| unavailable(t)) {
        count_in(&mut per_domain, target);
    }
    let mut plan = Plan::default();
    let mut hold = |limit: &str, reason: String, host: &str| {
        let (count, examples) = plan.held.entry((limit.to_owned(), reason)).or_default();
        *count += 1;
        if examples.len() < HELD_EXAMPLES {
            examples.push(host.to_owned());
        }
    };
    let mut start = Vec::new();
    for target in targets
        .iter()
        .filter(|t| t.progress == HostProgress::Pending)
    {
        if target.not_ready {
            hold("Ready", "not ready".into(), target.name);
            continue;
        }
        if used >= max_unavailable {
            hold(
                "maxUnavailable",
                format!("{used} of at most {max_unavailable} hosts unavailable"),
                target.name,
            );
            continue;
        }
        let full = limits
            .iter()
            .zip(&per_domain)
            .zip(&target.domains)
            .find_map(|(((key, max), counts), domain)| {
                let domain = (*domain)?;
                let count = counts.get(domain).copied().unwrap_or(0);
                (count >= *max)
                    .then(|| format!("{key}={domain} already has {count} unavailable (max {max})"))
            });
        if let Some(reason) = full {
            hold("maxPerTopology", reason, target.name);
            continue;
        }
        used += 1;
        count_in(&mut per_domain, target);
        start.push(target.name.to_owned());
    }
    plan.start = start;
    plan
}

/// A conditional merge patch of a host (false: it changed since it was read, or is gone).
async fn patch_host(context: &Context, host: &Host, patch: Value) -> Result<bool, Error> {
    Ok(super::patch_if_unchanged(&context.hosts, host, patch).await?)
}

/// Whether the action on an in-progress host is over: `Some(true)` succeeded, `Some(false)`
/// failed, `None` still going. Also the spec change that ends it.
fn outcome(rollout: &Rollout, name: &str, host: &Host) -> (Option<bool>, Value) {
    let spec = &rollout.spec;
    let agent = host.status.as_ref().and_then(|s| s.agent.as_ref());
    if let Some(maintenance) = &spec.maintenance {
        let duration = parse_interval(&maintenance.duration).unwrap_or_default();
        let started = host
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(&format!("{STARTED_ANNOTATION_PREFIX}{name}")))
            .and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            });
        let over = started.is_none_or(|started| {
            (time::OffsetDateTime::now_utc() - started).whole_milliseconds()
                >= duration.as_millis() as i128
        });
        return (
            over.then_some(true),
            json!({"spec": {"maintenance": false}}),
        );
    }
    if let Some(run) = &spec.run {
        let id = run.for_rollout(name).id;
        let phase = agent
            .and_then(|a| a.runs.iter().find(|r| r.id == id))
            .map(|r| r.phase.as_str());
        let remaining: Vec<_> = host.spec.runs.iter().filter(|r| r.id != id).collect();
        let done = match phase {
            Some("Succeeded") => Some(true),
            Some("Failed") => Some(false),
            _ => None,
        };
        // Merge patches remove a field set to null; an empty list would stay.
        let runs = if remaining.is_empty() {
            Value::Null
        } else {
            json!(remaining)
        };
        return (done, json!({"spec": {"runs": runs}}));
    }
    if let Some(upgrade) = &spec.os_upgrade {
        let reported = agent
            .and_then(|a| a.os.as_ref())
            .and_then(|o| o.version.as_deref());
        let up_to_date = agent.is_some_and(|a| {
            a.conditions
                .iter()
                .any(|c| c.type_ == "OSUpToDate" && c.status == "True")
        });
        let done = (up_to_date && reported == Some(upgrade.version.as_str())).then_some(true);
        return (done, json!({}));
    }
    (Some(false), json!({}))
}

/// The spec change that starts the action on a host.
fn start_patch(rollout: &Rollout, name: &str, host: &Host) -> Value {
    let spec = &rollout.spec;
    if spec.maintenance.is_some() {
        return json!({"spec": {"maintenance": true}});
    }
    if let Some(run) = &spec.run {
        let mut runs = host.spec.runs.clone();
        let run = run.for_rollout(name);
        runs.retain(|r| r.id != run.id);
        runs.push(run);
        return json!({"spec": {"runs": runs}});
    }
    if let Some(upgrade) = &spec.os_upgrade {
        return json!({"spec": {"os": {"targetVersion": upgrade.version}}});
    }
    json!({})
}

fn invalid(rollout: &Rollout) -> Option<String> {
    let spec = &rollout.spec;
    let actions = [
        spec.maintenance.is_some(),
        spec.run.is_some(),
        spec.os_upgrade.is_some(),
    ]
    .iter()
    .filter(|a| **a)
    .count();
    if actions != 1 {
        return Some("exactly one of maintenance, run and osUpgrade is needed".into());
    }
    if spec.selector.is_none() && spec.cluster.is_none() {
        return Some("selector or cluster is needed".into());
    }
    if let Some(maintenance) = &spec.maintenance
        && parse_interval(&maintenance.duration).is_none()
    {
        return Some(format!(
            "maintenance.duration: {:?} is not a duration like 30s or 1h30m",
            maintenance.duration
        ));
    }
    if rollout.metadata.name.as_deref().unwrap_or_default().len() > 63 {
        return Some(
            "the rollout's name is longer than 63 characters (it names a host label)".into(),
        );
    }
    if let Err(e) = max_unavailable(spec.max_unavailable.as_ref(), 1) {
        return Some(e);
    }
    None
}

async fn reconcile(rollout: Arc<Rollout>, context: Arc<Context>) -> Result<Action, Error> {
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let finalizers = rollout.metadata.finalizers.clone().unwrap_or_default();
    let ours = finalizers.iter().any(|f| f == CLEANUP_FINALIZER);
    if rollout.metadata.deletion_timestamp.is_some() {
        if ours {
            if !clean_up(&context, &rollout, &name).await? {
                // A host changed under us keeps its mark: try again soon.
                return Ok(Action::requeue(ACTIVE_REQUEUE));
            }
            set_finalizer(&context, &rollout, false).await?;
        }
        return Ok(Action::await_change());
    }
    if !ours {
        set_finalizer(&context, &rollout, true).await?;
        // The write wakes the next pass.
        return Ok(Action::await_change());
    }
    let generation = rollout.metadata.generation;
    let old = rollout
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    if let Some(problem) = invalid(&rollout) {
        let status = RolloutStatus {
            phase: Some("Failed".into()),
            observed_generation: generation,
            conditions: vec![condition(
                &old,
                "Progressing",
                false,
                "InvalidSpec",
                problem,
                generation,
            )],
            ..RolloutStatus::default()
        };
        write_status(&context, &rollout, status).await?;
        return Ok(Action::await_change());
    }
    let spec = &rollout.spec;
    let key = format!("{PROGRESS_LABEL_PREFIX}{name}");
    let mut query = ListParams::default();
    if let Some(selector) = &spec.selector {
        let labels = selector.to_query();
        if !labels.is_empty() {
            query = query.labels(&labels);
        }
    }
    if let Some(cluster) = &spec.cluster {
        query = query.fields(&format!("spec.cluster={cluster}"));
    }
    let mut hosts = super::list_hosts(&context.hosts, &query).await?;
    hosts.sort_by_key(name_of);
    let mut progress: Vec<HostProgress> = hosts
        .iter()
        .map(|h| HostProgress::from_label(label(h, &key)))
        .collect();

    // Finish what is done.
    for (host, progress) in hosts.iter().zip(progress.iter_mut()) {
        if *progress != HostProgress::InProgress {
            continue;
        }
        let (done, mut patch) = outcome(&rollout, &name, host);
        let Some(succeeded) = done else { continue };
        let ended = if succeeded {
            HostProgress::Succeeded
        } else {
            HostProgress::Failed
        };
        patch["metadata"]["labels"] = json!({&key: ended.label()});
        if patch_host(&context, host, patch).await? {
            *progress = ended;
            let (event_type, reason) = if succeeded {
                ("Normal", "RolloutSucceeded")
            } else {
                ("Warning", "RolloutFailed")
            };
            record(
                &context.client,
                reference(host),
                event_type,
                reason,
                &format!("rollout {name}"),
            )
            .await;
        }
    }

    let count = |p: HostProgress| progress.iter().filter(|x| **x == p).count() as u32;
    let failed = count(HostProgress::Failed);
    let max_failures = spec.max_failures.unwrap_or(0).max(0) as u32;
    let too_many_failures = failed > max_failures;
    let paused = spec.paused == Some(true);
    let limit = max_unavailable(spec.max_unavailable.as_ref(), hosts.len()).unwrap_or(1);
    let limits: Vec<(&str, usize)> = spec
        .max_per_topology
        .iter()
        .map(|l| (l.key.as_str(), l.max.max(1) as usize))
        .collect();
    let targets: Vec<Target> = hosts
        .iter()
        .zip(&progress)
        .map(|(host, progress)| Target {
            name: host.metadata.name.as_deref().unwrap_or_default(),
            progress: *progress,
            not_ready: not_ready(host),
            domains: limits.iter().map(|(key, _)| label(host, key)).collect(),
        })
        .collect();
    let mut planned = if paused || too_many_failures {
        Plan::default()
    } else {
        plan(&targets, limit, &limits)
    };
    let by_name: HashMap<&str, usize> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name, i))
        .collect();
    let now = super::now();
    for started in std::mem::take(&mut planned.start) {
        let i = by_name[started.as_str()];
        let host = &hosts[i];
        let mut patch = start_patch(&rollout, &name, host);
        patch["metadata"]["labels"] = json!({&key: "InProgress"});
        patch["metadata"]["annotations"] =
            json!({format!("{STARTED_ANNOTATION_PREFIX}{name}"): now});
        if patch_host(&context, host, patch).await? {
            progress[i] = HostProgress::InProgress;
            record(
                &context.client,
                reference(host),
                "Normal",
                "RolloutStarted",
                &format!("rollout {name}"),
            )
            .await;
        } else {
            // Changed since read: counted as unavailable until the next pass looks again.
            break;
        }
    }
    let count = |p: HostProgress| progress.iter().filter(|x| **x == p).count() as u32;
    let (pending, in_progress, succeeded) = (
        count(HostProgress::Pending),
        count(HostProgress::InProgress),
        count(HostProgress::Succeeded),
    );
    let mut held: Vec<Held> = planned
        .held
        .into_iter()
        .map(|((limit, reason), (hosts, examples))| Held {
            hosts,
            limit,
            reason,
            examples,
        })
        .collect();
    held.sort_by(|a, b| b.hosts.cmp(&a.hosts).then(a.reason.cmp(&b.reason)));
    let held_total: u32 = held.iter().map(|h| h.hosts).sum();
    let held_message = held
        .first()
        .map(|top| format!("held: {held_total} hosts, {}", top.reason));
    held.truncate(MAX_HELD_REASONS);
    let (phase, progressing, reason, message) = if too_many_failures {
        (
            "Failed",
            false,
            "TooManyFailures",
            format!("{failed} hosts failed, at most {max_failures} allowed"),
        )
    } else if pending == 0 && in_progress == 0 {
        (
            "Completed",
            false,
            "Completed",
            format!("{succeeded} hosts succeeded, {failed} failed"),
        )
    } else if paused {
        (
            "Paused",
            false,
            "Paused",
            "paused: no new host starts".to_owned(),
        )
    } else {
        (
            "Progressing",
            true,
            "Progressing",
            format!("{in_progress} in progress, {pending} pending"),
        )
    };
    let was = rollout.status.as_ref().and_then(|s| s.phase.clone());
    let status = RolloutStatus {
        phase: Some(phase.into()),
        observed_generation: generation,
        total: hosts.len() as u32,
        pending,
        in_progress,
        succeeded,
        failed,
        held,
        held_message,
        conditions: vec![condition(
            &old,
            "Progressing",
            progressing,
            reason,
            message.clone(),
            generation,
        )],
    };
    write_status(&context, &rollout, status).await?;
    if was.as_deref() != Some(phase) && phase != "Progressing" {
        let event_type = if phase == "Completed" {
            "Normal"
        } else {
            "Warning"
        };
        record(
            &context.client,
            reference(&*rollout),
            event_type,
            phase,
            &message,
        )
        .await;
    }
    Ok(if phase == "Progressing" || in_progress > 0 {
        Action::requeue(ACTIVE_REQUEUE)
    } else {
        Action::requeue(IDLE_REQUEUE)
    })
}

/// Adds or removes [`CLEANUP_FINALIZER`], conditionally on the version read.
async fn set_finalizer(context: &Context, rollout: &Rollout, add: bool) -> Result<(), Error> {
    let patch = super::finalizer_patch(rollout, CLEANUP_FINALIZER, add);
    super::patch_if_unchanged(&context.rollouts, rollout, patch).await?;
    Ok(())
}

/// A deleted rollout: every host it marked loses the mark; what is in progress is undone
/// (maintenance ended, the run taken off the spec; an OS upgrade asked for stays asked).
/// Whether every mark is gone.
async fn clean_up(context: &Context, rollout: &Rollout, name: &str) -> Result<bool, Error> {
    let key = format!("{PROGRESS_LABEL_PREFIX}{name}");
    let marked = super::list_hosts(&context.hosts, &ListParams::default().labels(&key)).await?;
    let mut all = true;
    for host in &marked {
        let in_progress = HostProgress::from_label(label(host, &key)) == HostProgress::InProgress;
        let mut patch = if in_progress {
            outcome(rollout, name, host).1
        } else {
            json!({})
        };
        patch["metadata"]["labels"] = json!({&key: null});
        patch["metadata"]["annotations"] =
            json!({format!("{STARTED_ANNOTATION_PREFIX}{name}"): null});
        if !patch_host(context, host, patch).await? {
            all = false;
        } else if in_progress {
            record(
                &context.client,
                reference(host),
                "Warning",
                "RolloutAbandoned",
                &format!("rollout {name} was deleted while in progress here: undone"),
            )
            .await;
        }
    }
    Ok(all)
}

async fn write_status(
    context: &Context,
    rollout: &Rollout,
    status: RolloutStatus,
) -> Result<(), Error> {
    if rollout.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let document = json!({
        "apiVersion": "fleetdb.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "status": status,
    });
    context
        .rollouts
        .patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&document),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(name: &'a str, progress: HostProgress, rack: &'a str) -> Target<'a> {
        Target {
            name,
            progress,
            not_ready: false,
            domains: vec![Some(rack)],
        }
    }

    #[test]
    fn percentages_round_down_and_never_reach_zero() {
        assert_eq!(max_unavailable(Some(&json!("5%")), 10_000), Ok(500));
        assert_eq!(max_unavailable(Some(&json!("5%")), 10), Ok(1));
        assert_eq!(max_unavailable(Some(&json!(3)), 10), Ok(3));
        assert_eq!(max_unavailable(None, 10), Ok(1));
        assert!(max_unavailable(Some(&json!("five")), 10).is_err());
        assert!(max_unavailable(Some(&json!("150%")), 10).is_err());
    }

    #[test]
    fn one_host_per_rack_and_the_budget_hold_and_say_why() {
        let targets = vec![
            target("a1", HostProgress::InProgress, "r1"),
            target("a2", HostProgress::Pending, "r1"),
            target("b1", HostProgress::Pending, "r2"),
            target("b2", HostProgress::Pending, "r2"),
            target("c1", HostProgress::Pending, "r3"),
            target("d1", HostProgress::Succeeded, "r4"),
            target("e1", HostProgress::Pending, "r5"),
        ];
        let plan = plan(&targets, 3, &[("rack", 1)]);
        assert_eq!(plan.start, ["b1", "c1"]);
        let held = |limit: &str, reason: &str, host: &str| {
            (
                (limit.to_owned(), reason.to_owned()),
                (1, vec![host.to_owned()]),
            )
        };
        assert_eq!(
            plan.held,
            BTreeMap::from([
                held(
                    "maxPerTopology",
                    "rack=r1 already has 1 unavailable (max 1)",
                    "a2"
                ),
                held(
                    "maxPerTopology",
                    "rack=r2 already has 1 unavailable (max 1)",
                    "b2"
                ),
                held("maxUnavailable", "3 of at most 3 hosts unavailable", "e1"),
            ])
        );
    }

    #[test]
    fn hosts_not_ready_count_against_the_budget() {
        let mut down = target("x", HostProgress::Succeeded, "r9");
        down.not_ready = true;
        let targets = vec![down, target("a", HostProgress::Pending, "r1")];
        let plan = plan(&targets, 1, &[]);
        assert!(plan.start.is_empty());
    }
}
