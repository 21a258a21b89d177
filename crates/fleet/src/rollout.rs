//! `Rollout`: one change applied to many hosts, a few at a time, within limits.

// kube's `printcolumn(name = .., type_ = ..)` attributes repeat keys by design.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Condition, LabelSelector, RunSpec};

/// The label a rollout keeps on each host it has started: `rollout.fleetdb.io/<rollout>`
/// with the value `InProgress`, `Succeeded` or `Failed`. The progress lives in the API, so
/// a restarted or newly elected controller resumes where the last one was.
pub const PROGRESS_LABEL_PREFIX: &str = "rollout.fleetdb.io/";
/// The annotation recording when a rollout started on a host (RFC 3339), same suffix.
pub const STARTED_ANNOTATION_PREFIX: &str = "started.rollout.fleetdb.io/";

/// The finalizer of every Rollout: deleting one first takes its marks off the hosts and
/// undoes what is still in progress (maintenance ended, the run taken off the spec).
pub const CLEANUP_FINALIZER: &str = "fleetdb.io/rollout-cleanup";

/// A host's progress in a rollout, as its label says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostProgress {
    Pending,
    InProgress,
    Succeeded,
    Failed,
}

impl HostProgress {
    /// The label's value (`None`: not started).
    pub fn label(self) -> Option<&'static str> {
        match self {
            Self::Pending => None,
            Self::InProgress => Some("InProgress"),
            Self::Succeeded => Some("Succeeded"),
            Self::Failed => Some("Failed"),
        }
    }

    pub fn from_label(value: Option<&str>) -> Self {
        match value {
            Some("InProgress") => Self::InProgress,
            Some("Succeeded") => Self::Succeeded,
            Some("Failed") => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// One change rolled out over many hosts, a few at a time.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "fleetdb.io",
    version = "v1alpha1",
    kind = "Rollout",
    plural = "rollouts",
    shortname = "ro",
    category = "fleet",
    status = "RolloutStatus",
    doc = "One change applied to many hosts, a few at a time, within limits.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Total", type_ = "integer", json_path = ".status.total"),
    printcolumn(name = "Succeeded", type_ = "integer", json_path = ".status.succeeded"),
    printcolumn(
        name = "In Progress",
        type_ = "integer",
        json_path = ".status.inProgress"
    ),
    printcolumn(name = "Failed", type_ = "integer", json_path = ".status.failed"),
    printcolumn(name = "Pending", type_ = "integer", json_path = ".status.pending"),
    printcolumn(
        name = "Held",
        type_ = "string",
        priority = 1,
        json_path = ".status.heldMessage"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Which hosts (with `cluster`, both must match; at least one of the two is needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// The hosts of this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// What to do on each host: exactly one of `maintenance`, `run`, `osUpgrade`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<MaintenanceAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_upgrade: Option<OsUpgradeAction>,
    /// How many targeted hosts may be unavailable at once — in progress, or not ready — as a
    /// count (`3`) or a percentage of the targets (`"5%"`, rounded down, at least 1).
    /// Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub max_unavailable: Option<serde_json::Value>,
    /// At most `max` hosts unavailable at once among those sharing the value of label `key`
    /// (one per rack, per switch...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub max_per_topology: Vec<TopologyLimit>,
    /// The rollout pauses when more hosts than this have failed. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_failures: Option<i32>,
    /// No new host starts while true; those in progress finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

fn int_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
    })
}

/// Maintenance for a while: the host's `spec.maintenance` is set, then cleared after
/// `duration`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceAction {
    /// `30s`, `10m`, `1h30m`.
    pub duration: String,
}

/// A command or playbook, added to each host's `spec.runs` with the id
/// `rollout-<rollout>`; done when the agent reports it succeeded or failed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunAction {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook: Option<crate::PlaybookSpec>,
}

impl RunAction {
    /// The run a host is given for rollout `rollout`.
    pub fn for_rollout(&self, rollout: &str) -> RunSpec {
        RunSpec {
            id: format!("rollout-{rollout}"),
            command: self.command.clone(),
            playbook: self.playbook.clone(),
        }
    }
}

/// An operating-system upgrade: each host's `spec.os.targetVersion`; done when the agent
/// reports `OSUpToDate=True`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OsUpgradeAction {
    pub version: String,
}

/// A limit per topology domain.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopologyLimit {
    /// A host label, e.g. `fleetdb.io/rack`.
    pub key: String,
    #[schemars(range(min = 1))]
    pub max: i32,
}

/// Hosts a limit holds back.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    /// How many pending hosts this reason holds.
    pub hosts: u32,
    /// The limit, e.g. `maxPerTopology` or `maxUnavailable`.
    pub limit: String,
    /// Why, e.g. "rack r07 already has 1 in progress".
    pub reason: String,
    /// The first few of those hosts, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
}

/// A rollout's progress.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// `Progressing`, `Paused`, `Completed` or `Failed` (paused by `maxFailures`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub total: u32,
    #[serde(default)]
    pub pending: u32,
    #[serde(default)]
    pub in_progress: u32,
    #[serde(default)]
    pub succeeded: u32,
    #[serde(default)]
    pub failed: u32,
    /// The limits holding pending hosts back now, most hosts first (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<Held>,
    /// The same in one line: "held: 12 hosts, rack r07 already has 1 in progress".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
