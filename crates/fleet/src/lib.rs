//! The fleet model: `Host`, `Cluster`, `Source` and `Rollout` in API group `fleetdb.io`, version
//! `v1alpha1`, defined once as Rust types. The server installs their CRDs at start-up
//! ([`crds`]); every tool (fetchers, inventory, monitor) uses the same types through kube-rs.
//!
//! Spec is what people want; status is what is observed. Field names follow Kubernetes API
//! conventions (camelCase; `conditions` with type/status/reason/message/lastTransitionTime).
//!
//! Architecture invariant: this crate holds data types and their schemas only — no I/O.

// kube's `printcolumn(name = .., type_ = ..)` attributes repeat keys by design.
#![allow(clippy::duplicated_attributes)]

pub mod rollout;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The finalizer every Host carries: its deletion waits for its agent's decommission
/// command (or a timeout) before the record goes.
pub const DECOMMISSION_FINALIZER: &str = "fleetdb.io/decommission";

/// The API group of the fleet kinds.
pub const GROUP: &str = "fleetdb.io";
/// Their version.
pub const VERSION: &str = "v1alpha1";

/// Well-known labels, set from provider tags where present.
pub mod labels {
    /// The provider type of the host (`aws`, `file`, ...).
    pub const PROVIDER: &str = "fleetdb.io/provider";
    /// The provider region (or datacenter for datacenter sources).
    pub const REGION: &str = "fleetdb.io/region";
    /// The host's role as the provider records it.
    pub const ROLE: &str = "fleetdb.io/role";
    /// The team that owns the host.
    pub const TEAM: &str = "fleetdb.io/team";
    /// The Source whose fetcher reports the host.
    pub const SOURCE: &str = "fleetdb.io/source";
}

/// One Kubernetes-style condition.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The aspect this condition describes (`Present`, `Synced`, ...).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason for the last transition.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// A human-readable explanation.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The spec generation the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A machine in the fleet.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "fleetdb.io",
    version = "v1alpha1",
    kind = "Host",
    plural = "hosts",
    shortname = "ho",
    category = "fleet",
    status = "HostStatus",
    doc = "A machine in the fleet: spec is what people want, status what is observed.",
    printcolumn(
        name = "Role",
        type_ = "string",
        json_path = ".spec.role",
        description = "The host's desired role"
    ),
    printcolumn(
        name = "Provider",
        type_ = "string",
        json_path = ".status.provider.type",
        description = "Where the host runs"
    ),
    printcolumn(
        name = "Region",
        type_ = "string",
        json_path = ".status.region",
        description = "Provider region or datacenter"
    ),
    printcolumn(
        name = "State",
        type_ = "string",
        json_path = ".status.state",
        description = "Observed state"
    ),
    printcolumn(
        name = "Maintenance",
        type_ = "boolean",
        json_path = ".spec.maintenance",
        description = "Taken out of service by a person"
    ),
    printcolumn(
        name = "Authorized",
        type_ = "boolean",
        json_path = ".spec.authorized",
        description = "Whether the host's agent may act on its spec"
    ),
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.cluster",
        description = "The cluster the host is attached to (none: in the pool)"
    ),
    printcolumn(
        name = "Joined",
        type_ = "date",
        json_path = ".status.tenure.inFleetSince",
        description = "Since when the host has been in the fleet (its first creation in history)"
    ),
    printcolumn(
        name = "Serving",
        type_ = "date",
        json_path = ".status.tenure.inServiceSince",
        description = "Since when the host has been running and out of maintenance, without a break"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    selectable = ".spec.cluster",
    selectable = ".spec.authorized",
    selectable = ".spec.role",
    selectable = ".status.state"
)]
#[serde(rename_all = "camelCase")]
pub struct HostSpec {
    /// The role the host should have (`web`, `db`, `log`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// True while the host is out of service for maintenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<bool>,
    /// The Cluster the host is assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Free-form Ansible variables for the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub ansible: Option<BTreeMap<String, serde_json::Value>>,
    /// True once a person (or policy) lets the host's agent act on this spec; until then the
    /// agent only reports facts and heartbeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorized: Option<bool>,
    /// Work for the host's agent, each run once per id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunSpec>,
    /// The operating system the host should run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsSpec>,
}

/// One piece of work for a host's agent: a command or a playbook.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSpec {
    /// Unique among the host's runs; a run executes once per id.
    pub id: String,
    /// A program and its arguments (no shell).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// A playbook run with `ansible-pull`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook: Option<PlaybookSpec>,
}

/// A playbook in a git repository.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlaybookSpec {
    pub repo: String,
    /// The branch, tag or commit.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub ref_: Option<String>,
    /// The playbook's path in the repository.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub extra_vars: Option<BTreeMap<String, serde_json::Value>>,
}

/// The operating system a host should run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
}

/// What became of one run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    pub id: String,
    /// `Pending`, `Running`, `Succeeded` or `Failed`.
    pub phase: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The end of its output (bounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
    /// Why it failed without an exit code (refused, timed out, interrupted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where a host comes from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderRef {
    /// The provider type (`aws`, `file`, ...).
    #[serde(rename = "type")]
    pub type_: String,
    /// The provider account (AWS account id, DCIM export name...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The host's id at the provider (instance id, serial number...).
    pub id: String,
}

/// A network address of a host.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostAddress {
    /// `InternalIP`, `ExternalIP`, `InternalDNS`, `ExternalDNS` or `Hostname`.
    #[serde(rename = "type")]
    pub type_: String,
    pub address: String,
}

/// A disk of a host.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Disk {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A quantity such as `960Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// `ssd`, `hdd`, `nvme`...
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

/// The hardware a host has.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hardware {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// A quantity such as `64Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// The instance or server type (`m5.large`, `PowerEdge R640`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<Disk>,
}

/// The observed state of a host.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum HostState {
    Running,
    Stopped,
    Terminated,
    #[default]
    Unknown,
}

/// What is observed about a host.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<HostAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<Hardware>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<HostState>,
    /// When a fetcher first reported the host (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    /// When a fetcher last reported the host (refreshed at most hourly, so that unchanged
    /// syncs write nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// Conditions, one per type, each owned by whoever sets it (`Present` by fetchers,
    /// `Ready` by the controllers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// What the host's own agent reports (its field manager owns these fields alone, so
    /// neither it nor a fetcher overwrites the other).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentReport>,
    /// How long the host has been in the fleet and in service, derived from its history by
    /// the controllers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenure: Option<Tenure>,
}

/// A host's time in the fleet and in service (`docs/history.md`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tenure {
    /// When the host first joined the fleet: its oldest creation in history, kept across
    /// deletions and re-creations (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_fleet_since: Option<String>,
    /// When its current stretch in service began: running (or, without a provider state,
    /// ready) and not in maintenance nor being decommissioned. Absent while out of service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_service_since: Option<String>,
}

/// The operating system an agent reports.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OsReport {
    /// The distribution's name (`Debian GNU/Linux`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its version (`13`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The kernel's release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
}

/// A mounted disk an agent reports.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskReport {
    pub mount_point: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_system: Option<String>,
    /// Bytes in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

/// The facts a host's agent reports about the machine it runs on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentReport {
    /// The agent's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsReport>,
    /// Logical CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Bytes of memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<DiskReport>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<HostAddress>,
    /// When the machine booted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_time: Option<String>,
    /// When the agent last reported (RFC 3339; refreshed at most once a minute — the Lease
    /// `fleetdb-system/<host>` is the heartbeat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// The spec generation the agent last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Maintenance`, `OSUpToDate`, `Preflight`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The runs of `spec.runs`, newest last (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunStatus>,
}

/// A named group of hosts, which takes authorized hosts from the pool (hosts without a
/// cluster) up to its size.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "fleetdb.io",
    version = "v1alpha1",
    kind = "Cluster",
    plural = "clusters",
    shortname = "cl",
    category = "fleet",
    status = "ClusterStatus",
    doc = "A named group of hosts.",
    scale(
        spec_replicas_path = ".spec.size",
        status_replicas_path = ".status.hosts"
    ),
    printcolumn(name = "Size", type_ = "integer", json_path = ".spec.size"),
    printcolumn(name = "Hosts", type_ = "integer", json_path = ".status.hosts"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyHosts"),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.region"),
    printcolumn(
        name = "Provider",
        type_ = "string",
        priority = 1,
        json_path = ".spec.provider"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// How many hosts the cluster should have; the controller attaches hosts from the pool
    /// or detaches them to match (unset: it attaches nothing and detaches nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub size: Option<i32>,
    /// Which pool hosts the cluster may take (a label selector; none: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selector: Option<LabelSelector>,
    /// Checks the agents of the cluster's hosts run before anything is installed (each
    /// agent runs them only if its own configuration allows checks from the Cluster). With
    /// checks, only pool hosts whose agent reports them passed are attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight: Option<PreflightSpec>,
}

/// A Kubernetes label selector (`matchLabels` and `matchExpressions`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One requirement of a label selector.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    #[schemars(extend("enum" = ["In", "NotIn", "Exists", "DoesNotExist"]))]
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// The selector in the query-string form of `labelSelector=` (`a=b,c in (d,e),!f`).
    pub fn to_query(&self) -> String {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for requirement in &self.match_expressions {
            let key = &requirement.key;
            let values = requirement.values.join(",");
            parts.push(match requirement.operator.as_str() {
                "In" => format!("{key} in ({values})"),
                "NotIn" => format!("{key} notin ({values})"),
                "DoesNotExist" => format!("!{key}"),
                _ => key.clone(),
            });
        }
        parts.join(",")
    }
}

/// Preflight checks: ports that must be free to bind, peers that must accept TCP
/// connections.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreflightSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// `host:port`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
}

/// What is observed about a cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Member hosts.
    #[serde(default)]
    pub hosts: u32,
    /// Members whose agent heartbeats and that are not in maintenance.
    #[serde(default)]
    pub ready_hosts: u32,
    /// The members' names, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// The generation of the spec this status answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (as many ready members as the size) and `Progressing` (attaching or
    /// detaching, or waiting for the pool, with the reason).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Kinds of source a fetcher can sync.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    /// AWS EC2 instances of one account and region.
    #[default]
    Aws,
    /// A datacenter export (CSV or YAML) on disk.
    File,
}

/// Settings of an AWS source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsSource {
    /// The region to enumerate (default: the AWS SDK's region resolution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// DescribeInstances filters, e.g. `tag:env: prod` or `instance-state-name: running`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filters: BTreeMap<String, String>,
}

/// Settings of a datacenter file source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileSource {
    /// Path of the export on the fetcher's machine.
    pub path: String,
    /// `csv` or `yaml` (default: from the file name's extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The datacenter the rows are in, when the file has no `datacenter` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
}

/// One provider account/region/datacenter that a fetcher syncs.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "fleetdb.io",
    version = "v1alpha1",
    kind = "Source",
    plural = "sources",
    shortname = "src",
    category = "fleet",
    status = "SourceStatus",
    doc = "A provider account, region or datacenter that a fetcher syncs into Hosts.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Hosts", type_ = "integer", json_path = ".status.hostsSeen"),
    printcolumn(name = "Last Sync", type_ = "date", json_path = ".status.lastSyncTime"),
    printcolumn(
        name = "Synced",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Synced\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    #[serde(rename = "type")]
    pub type_: SourceType,
    /// How often the fetcher syncs, e.g. `60s`, `5m` (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSource>,
}

/// What the fetcher reports about its last sync.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
    #[serde(default)]
    pub hosts_seen: u32,
    #[serde(default)]
    pub hosts_created: u32,
    #[serde(default)]
    pub hosts_updated: u32,
    #[serde(default)]
    pub hosts_gone: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Parses a Source interval such as `60s`, `5m`, `1h` or `1h30m`.
pub fn parse_interval(text: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let value: u64 = number.parse().ok()?;
        number.clear();
        total += value
            * match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => return None,
            };
    }
    if !number.is_empty() {
        return None;
    }
    (total > 0).then(|| Duration::from_secs(total))
}

/// Address types in the order tools reach a host by (Ansible's `ansible_host`, Prometheus
/// targets): private networks first, names last.
pub const ADDRESS_PREFERENCE: [&str; 5] = [
    "InternalIP",
    "ExternalIP",
    "InternalDNS",
    "ExternalDNS",
    "Hostname",
];

impl Host {
    /// Whether a person took the host out of service (`spec.maintenance`).
    pub fn in_maintenance(&self) -> bool {
        self.spec.maintenance == Some(true)
    }

    /// Whether it is in service: not in maintenance, not being decommissioned, and running
    /// as its provider reports it (or, when no provider reports a state, ready as its agent
    /// and the controllers report it).
    pub fn in_service(&self) -> bool {
        if self.in_maintenance() || self.is_decommissioning() {
            return false;
        }
        let status = self.status.as_ref();
        match status.and_then(|s| s.state) {
            Some(HostState::Running) => true,
            Some(HostState::Unknown) | None => status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            }),
            Some(_) => false,
        }
    }

    /// Whether its provider reports it gone.
    pub fn is_terminated(&self) -> bool {
        self.status.as_ref().and_then(|s| s.state) == Some(HostState::Terminated)
    }

    /// Whether it is being decommissioned (deleted, waiting for its finalizers): out of the
    /// inventory and monitoring at once.
    pub fn is_decommissioning(&self) -> bool {
        self.metadata.deletion_timestamp.is_some()
    }

    /// The first of its addresses whose type comes first in `preference`.
    pub fn preferred_address<'a, S: AsRef<str>>(
        &'a self,
        preference: &[S],
    ) -> Option<&'a HostAddress> {
        let status = self.status.as_ref()?;
        preference
            .iter()
            .find_map(|kind| status.addresses.iter().find(|a| a.type_ == kind.as_ref()))
    }

    /// What tools publish about a host, by name: its desired role and cluster, where it
    /// is and what runs on it. Names are bare (`role`, `provider`, ...); each tool prefixes
    /// them (`fleetdb_role` for Ansible, `__meta_fleetdb_role` for Prometheus).
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        let mut facts = Vec::new();
        let mut put = |name: &'static str, value: Option<&String>| {
            if let Some(value) = value {
                facts.push((name, value.clone()));
            }
        };
        put("role", self.spec.role.as_ref());
        put("cluster", self.spec.cluster.as_ref());
        if let Some(status) = &self.status {
            put("provider", status.provider.as_ref().map(|p| &p.type_));
            put("region", status.region.as_ref());
            put("zone", status.zone.as_ref());
            put("datacenter", status.datacenter.as_ref());
            put("rack", status.rack.as_ref());
            put("os", status.os.as_ref());
        }
        facts
    }
}

/// A Host reduced to what service discovery reads (no managed fields, annotations, Ansible
/// variables, hardware, conditions or timestamps), so an in-memory copy of a large fleet
/// stays small.
pub fn slim_for_discovery(mut host: Host) -> Host {
    host.metadata.managed_fields = None;
    host.metadata.annotations = None;
    host.spec.ansible = None;
    if let Some(status) = host.status.as_mut() {
        status.hardware = None;
        status.conditions = Vec::new();
        status.first_seen = None;
        status.last_seen = None;
    }
    host
}

/// An object whose values may be anything (kept as is by the server).
fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The CRDs of the fleet kinds, as the server installs them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        Host::crd(),
        Cluster::crd(),
        Source::crd(),
        rollout::Rollout::crd(),
    ]
}

/// The same CRDs as JSON documents.
pub fn crd_documents() -> Vec<serde_json::Value> {
    crds()
        .iter()
        .map(|crd| serde_json::to_value(crd).expect("CRDs serialize"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_schemas_are_structural() {
        for crd in crd_documents() {
            for (i, version) in crd["spec"]["versions"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
            {
                let schema = &version["schema"]["openAPIV3Schema"];
                let problems = fleetdb_machinery::schema::check_structural(
                    schema,
                    &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                );
                assert!(
                    problems.is_empty(),
                    "{}: {problems:?}",
                    crd["metadata"]["name"]
                );
            }
        }
    }

    #[test]
    fn hosts_are_cluster_scoped_with_the_expected_columns() {
        let crd = serde_json::to_value(Host::crd()).unwrap();
        assert_eq!(crd["metadata"]["name"], "hosts.fleetdb.io");
        assert_eq!(crd["spec"]["scope"], "Cluster");
        assert_eq!(
            crd["spec"]["names"]["shortNames"],
            serde_json::json!(["ho"])
        );
        let columns: Vec<&str> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            columns,
            [
                "Role",
                "Provider",
                "Region",
                "State",
                "Maintenance",
                "Authorized",
                "Cluster",
                "Joined",
                "Serving",
                "Age"
            ]
        );
        let selectable: Vec<&str> = crd["spec"]["versions"][0]["selectableFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["jsonPath"].as_str().unwrap())
            .collect();
        assert_eq!(
            selectable,
            [
                ".spec.cluster",
                ".spec.authorized",
                ".spec.role",
                ".status.state"
            ]
        );
    }

    #[test]
    fn facts_addresses_and_service_rules() {
        let mut host = Host::new(
            "web-1",
            HostSpec {
                role: Some("web".into()),
                maintenance: Some(true),
                ..HostSpec::default()
            },
        );
        assert!(host.preferred_address(&ADDRESS_PREFERENCE).is_none());
        assert_eq!(host.facts(), [("role", "web".to_owned())]);
        host.status = Some(HostStatus {
            region: Some("pdx".into()),
            addresses: vec![
                HostAddress {
                    type_: "Hostname".into(),
                    address: "web-1.example".into(),
                },
                HostAddress {
                    type_: "InternalIP".into(),
                    address: "10.0.0.1".into(),
                },
            ],
            state: Some(HostState::Terminated),
            ..HostStatus::default()
        });
        assert_eq!(
            host.preferred_address(&ADDRESS_PREFERENCE).unwrap().address,
            "10.0.0.1"
        );
        assert_eq!(
            host.preferred_address(&["Hostname"]).unwrap().address,
            "web-1.example"
        );
        assert_eq!(
            host.facts(),
            [("role", "web".to_owned()), ("region", "pdx".to_owned())]
        );
        assert!(host.in_maintenance() && host.is_terminated());
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_interval("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_interval("5"), None);
        assert_eq!(parse_interval("0s"), None);
        assert_eq!(parse_interval("1d"), None);
    }

    #[test]
    fn a_host_round_trips_through_json() {
        let mut host = Host::new(
            "web-1",
            HostSpec {
                role: Some("web".into()),
                ..HostSpec::default()
            },
        );
        host.status = Some(HostStatus {
            provider: Some(ProviderRef {
                type_: "aws".into(),
                account: None,
                id: "i-1".into(),
            }),
            state: Some(HostState::Running),
            ..HostStatus::default()
        });
        let json = serde_json::to_value(&host).unwrap();
        assert_eq!(json["status"]["provider"]["type"], "aws");
        assert_eq!(json["status"]["state"], "Running");
        let back: Host = serde_json::from_value(json).unwrap();
        assert_eq!(back.spec, host.spec);
    }
}
