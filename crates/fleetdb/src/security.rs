//! fleetdb's own security policy on top of Kubernetes' RBAC: the default roles of the
//! fleet's tools (fetchers, the Ansible inventory, monitoring, host agents, and the fleet
//! kinds aggregated into `view` and `edit`), and the admission rule of identities that
//! act for one Source or one Host — the one place where what they may write is decided.

use fleetdb_apiserver::api::{ApiError, Resource};
use fleetdb_apiserver::controllers::policy::{
    cluster_role, cluster_role_binding, cluster_role_binding_of,
};
use fleetdb_apiserver::registry::{Admission, AdmissionRequest, Operation, Subresource};
use fleetdb_fleet::{GROUP, labels};
use fleetdb_machinery::rbac::PolicyRule;
use serde_json::{Value, json};

/// Fetchers: `fleetdb:fetcher:<source>`, in this group.
pub const FETCHERS_GROUP: &str = "fleetdb:fetchers";
/// The user name prefix of a fetcher's identity; the rest is its Source.
pub const FETCHER_PREFIX: &str = "fleetdb:fetcher:";
/// Readers of the inventory (Ansible).
pub const INVENTORY_GROUP: &str = "fleetdb:inventory";
/// Monitoring: Prometheus discovery and `fleetdb monitor`.
pub const MONITORS_GROUP: &str = "fleetdb:monitors";
/// Host agents: `fleetdb:host:<host>`, in this group.
pub const HOSTS_GROUP: &str = "fleetdb:hosts";
/// The user name prefix of a host agent's identity; the rest is its Host.
pub const HOST_PREFIX: &str = "fleetdb:host:";

/// The namespace of host agents' heartbeat Leases.
pub const HEARTBEAT_NAMESPACE: &str = "fleetdb-system";

/// The labels a fetcher sets (and may change) on its hosts.
const FETCHER_LABELS: [&str; 5] = [
    labels::PROVIDER,
    labels::REGION,
    labels::ROLE,
    labels::TEAM,
    labels::SOURCE,
];

fn rule(verbs: &[&str], resources: &[&str]) -> Value {
    json!(PolicyRule::resources(verbs, &[GROUP], resources))
}

/// A default ClusterRole or ClusterRoleBinding made a Role or RoleBinding of `namespace`.
fn in_namespace(namespace: &str, mut object: Value) -> Value {
    let kind = object["kind"].as_str().unwrap_or_default();
    object["kind"] = json!(kind.trim_start_matches("Cluster"));
    object["metadata"]["namespace"] = json!(namespace);
    if object["roleRef"]["kind"] == "ClusterRole" {
        object["roleRef"]["kind"] = json!("Role");
    }
    object
}

/// The fleet's default roles and their bindings to the tools' groups.
pub fn default_policy() -> Vec<Value> {
    const READ: [&str; 3] = ["get", "list", "watch"];
    const WRITE: [&str; 5] = ["create", "delete", "deletecollection", "patch", "update"];
    let aggregate =
        |to: &str| json!({format!("rbac.authorization.k8s.io/aggregate-to-{to}"): "true"});
    vec![
        cluster_role(
            "fleetdb:aggregate-to-view",
            aggregate("view"),
            vec![rule(&READ, &["clusters", "hosts", "sources", "rollouts"])],
        ),
        cluster_role(
            "fleetdb:aggregate-to-edit",
            aggregate("edit"),
            vec![rule(&WRITE, &["clusters", "hosts", "sources", "rollouts"])],
        ),
        // Who may open the web UI (`fleetdb ui-login`): a session can then do what its
        // identity can. Aggregated into `view`, so people who may read may log in.
        cluster_role(
            "fleetdb:ui",
            aggregate("view"),
            vec![json!(PolicyRule::urls(
                &["post"],
                &[crate::ui::LOGIN_TOKENS_PATH]
            ))],
        ),
        cluster_role(
            "fleetdb:fetcher",
            json!({}),
            vec![
                rule(
                    &["create", "get", "list", "patch", "update", "watch"],
                    &["hosts"],
                ),
                rule(
                    &["get", "patch", "update"],
                    &["hosts/status", "sources/status"],
                ),
                rule(&READ, &["sources"]),
            ],
        ),
        cluster_role(
            "fleetdb:inventory",
            json!({}),
            vec![rule(&READ, &["clusters", "hosts"])],
        ),
        cluster_role(
            "fleetdb:monitor",
            json!({}),
            vec![
                rule(&READ, &["hosts"]),
                json!(PolicyRule::urls(&["get"], &[crate::discovery::PATH])),
            ],
        ),
        cluster_role(
            "fleetdb:host",
            json!({}),
            vec![
                rule(&["create", "get", "list", "watch"], &["hosts"]),
                rule(&["get", "patch", "update"], &["hosts/status"]),
                rule(&["get"], &["clusters"]),
                json!(PolicyRule::resources(
                    &["create", "get", "list", "watch"],
                    &["certificates.k8s.io"],
                    &["certificatesigningrequests"],
                )),
                json!(PolicyRule::resources(
                    &["create", "get", "patch", "update"],
                    &["coordination.k8s.io"],
                    &["leases"],
                )),
                json!(PolicyRule::resources(
                    &["create", "patch", "update"],
                    &["", "events.k8s.io"],
                    &["events"],
                )),
            ],
        ),
        cluster_role(
            "fleetdb:controllers",
            json!({}),
            vec![
                rule(
                    &["get", "list", "watch", "patch", "update"],
                    &["hosts", "clusters"],
                ),
                rule(&["get", "list", "watch", "patch", "update"], &["rollouts"]),
                rule(
                    &["get", "patch", "update"],
                    &["hosts/status", "clusters/status", "rollouts/status"],
                ),
                // Tenure is derived from each host's history.
                rule(&["get"], &["hosts/history"]),
                json!(PolicyRule::resources(
                    &["create", "patch", "update"],
                    &["", "events.k8s.io"],
                    &["events"],
                )),
            ],
        ),
        cluster_role_binding("fleetdb:controllers", &[crate::controllers::GROUP]),
        // The Leases the controllers read (agents' heartbeats) and hold (their leader's)
        // are those of fleetdb-system only.
        in_namespace(
            HEARTBEAT_NAMESPACE,
            cluster_role(
                "fleetdb:controllers",
                json!({}),
                vec![json!(PolicyRule::resources(
                    &[
                        "create", "get", "list", "watch", "update", "patch", "delete"
                    ],
                    &["coordination.k8s.io"],
                    &["leases"],
                ))],
            ),
        ),
        in_namespace(
            HEARTBEAT_NAMESPACE,
            cluster_role_binding("fleetdb:controllers", &[crate::controllers::GROUP]),
        ),
        cluster_role_binding("fleetdb:fetcher", &[FETCHERS_GROUP]),
        cluster_role_binding("fleetdb:inventory", &[INVENTORY_GROUP]),
        cluster_role_binding("fleetdb:monitor", &[MONITORS_GROUP]),
        cluster_role_binding("fleetdb:host", &[HOSTS_GROUP]),
        // Bootstrap tokens may file and follow certificate requests, nothing else.
        cluster_role_binding_of(
            "fleetdb:bootstrappers",
            "system:node-bootstrapper",
            &[fleetdb_apiserver::pipeline::authn::BOOTSTRAPPERS_GROUP],
        ),
    ]
}

/// Who, of the identities that act for one record, is asking.
enum Actor<'a> {
    Fetcher(&'a str),
    Host(&'a str),
}

fn labels_of(object: &Value) -> &serde_json::Map<String, Value> {
    static EMPTY: std::sync::OnceLock<serde_json::Map<String, Value>> = std::sync::OnceLock::new();
    object["metadata"]["labels"]
        .as_object()
        .unwrap_or_else(|| EMPTY.get_or_init(serde_json::Map::new))
}

fn source_of(object: &Value) -> Option<&str> {
    labels_of(object)
        .get(labels::SOURCE)
        .and_then(Value::as_str)
}

/// The admission rule of fetchers and host agents. A fetcher (`fleetdb:fetcher:<source>`)
/// may create and apply Hosts labelled with its own Source and write its own Source's
/// status — never another source's hosts, never the fields people own (`spec`, labels and
/// annotations it does not set), never a delete. A host agent (`fleetdb:host:<host>`) may
/// write its own Host's status only. Everyone else is left to RBAC.
pub struct FleetAdmission;

fn forbidden(resource: &Resource, name: &str, why: String) -> ApiError {
    ApiError::forbidden_resource(&resource.group, &resource.plural, name, &why)
}

/// Whether an annotation is one a fetcher sets: its prefix is a `fleetdb.io` domain
/// (`dcim.fleetdb.io/`, `aws.fleetdb.io/`, `tags.aws.fleetdb.io/`).
fn fetcher_annotation(key: &str) -> bool {
    key.split_once('/')
        .is_some_and(|(prefix, _)| prefix.ends_with(".fleetdb.io"))
}

fn changed_keys<'a>(
    new: &'a serde_json::Map<String, Value>,
    old: &'a serde_json::Map<String, Value>,
) -> impl Iterator<Item = &'a String> {
    new.keys()
        .chain(old.keys())
        .filter(move |key| new.get(*key) != old.get(*key))
}

impl FleetAdmission {
    fn actor<'a>(&self, request: &'a AdmissionRequest<'_>) -> Result<Option<Actor<'a>>, String> {
        let user = request.user;
        let in_group = |group: &str| user.groups.iter().any(|g| g == group);
        if in_group(FETCHERS_GROUP) {
            return match user.user.strip_prefix(FETCHER_PREFIX) {
                Some(source) if !source.is_empty() => Ok(Some(Actor::Fetcher(source))),
                _ => Err(format!(
                    "members of {FETCHERS_GROUP} act for one Source and are named {FETCHER_PREFIX}<source> (fleetdb kubeconfig --fetcher SOURCE); {:?} is not",
                    user.user
                )),
            };
        }
        if in_group(HOSTS_GROUP) {
            return match user.user.strip_prefix(HOST_PREFIX) {
                Some(host) if !host.is_empty() => Ok(Some(Actor::Host(host))),
                _ => Err(format!(
                    "members of {HOSTS_GROUP} act for one Host and are named {HOST_PREFIX}<host>; {:?} is not",
                    user.user
                )),
            };
        }
        Ok(None)
    }

    fn fetcher(
        &self,
        source: &str,
        request: &AdmissionRequest<'_>,
        object: &Value,
    ) -> Result<(), String> {
        let target = request.target;
        let resource = &target.resource;
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let who = format!("{FETCHER_PREFIX}{source}");
        if resource.group != GROUP {
            return Err(format!("{who} writes fleet records only"));
        }
        if request.operation == Operation::Delete {
            return Err(format!(
                "{who} never deletes: a host that leaves the export is marked Terminated"
            ));
        }
        match resource.plural.as_str() {
            "sources" => {
                if target.subresource == Some(Subresource::Status) && name == source {
                    Ok(())
                } else {
                    Err(format!(
                        "{who} may write the status of Source {source:?} only"
                    ))
                }
            }
            "hosts" => {
                let own = |object: &Value| source_of(object) == Some(source);
                if let Some(old) = request.old
                    && !own(old)
                {
                    return Err(format!(
                        "{who} may write only hosts labelled {}={source}; this one is {}",
                        labels::SOURCE,
                        match source_of(old) {
                            Some(other) => format!("labelled {}={other}", labels::SOURCE),
                            None => "not from a source".to_owned(),
                        }
                    ));
                }
                if !own(object) {
                    return Err(format!(
                        "{who} may write only hosts labelled {}={source}",
                        labels::SOURCE
                    ));
                }
                let Some(old) = request.old else {
                    // A new host: the export's role is its initial spec.role; the rest of
                    // the spec is people's.
                    let spec = object["spec"].as_object();
                    if let Some(field) = spec
                        .into_iter()
                        .flatten()
                        .map(|(field, _)| field)
                        .find(|field| field.as_str() != "role")
                    {
                        return Err(format!(
                            "{who} may not set spec.{field}: people own the spec"
                        ));
                    }
                    return Ok(());
                };
                if object["spec"] != old["spec"] {
                    return Err(format!(
                        "{who} may not change spec (maintenance, cluster, ansible, role): people own the spec"
                    ));
                }
                let empty = serde_json::Map::new();
                if let Some(label) = changed_keys(labels_of(object), labels_of(old))
                    .find(|key| !FETCHER_LABELS.contains(&key.as_str()))
                {
                    return Err(format!(
                        "{who} may not change the label {label}: it sets only {}",
                        FETCHER_LABELS.join(", ")
                    ));
                }
                let annotations = |o: &'_ Value| o["metadata"]["annotations"].as_object().cloned();
                let (new_annotations, old_annotations) = (
                    annotations(object).unwrap_or_else(|| empty.clone()),
                    annotations(old).unwrap_or_default(),
                );
                if let Some(annotation) = changed_keys(&new_annotations, &old_annotations)
                    .find(|key| !fetcher_annotation(key))
                {
                    return Err(format!(
                        "{who} may not change the annotation {annotation}: it sets only *.fleetdb.io/ annotations"
                    ));
                }
                Ok(())
            }
            _ => Err(format!("{who} may not write {}", resource.plural)),
        }
    }

    fn host(
        &self,
        host: &str,
        request: &AdmissionRequest<'_>,
        object: &Value,
    ) -> Result<(), String> {
        let target = request.target;
        let resource = &target.resource;
        let who = format!("{HOST_PREFIX}{host}");
        let name = object["metadata"]["name"]
            .as_str()
            .or(target.name.as_deref());
        let allowed = match (resource.group.as_str(), resource.plural.as_str()) {
            (GROUP, "hosts") => match (request.operation, target.subresource) {
                (Operation::Update, Some(Subresource::Status)) => name == Some(host),
                // Its own Host, when no fetcher recorded it: a name and nothing people own.
                (Operation::Create, None) => {
                    name == Some(host)
                        && object["spec"].as_object().is_none_or(|s| s.is_empty())
                        && labels_of(object).is_empty()
                }
                _ => false,
            },
            // Its own certificate requests (renewal): the signer certifies only the
            // requester itself.
            ("certificates.k8s.io", "certificatesigningrequests") => {
                request.operation == Operation::Create && target.subresource.is_none()
            }
            // Its heartbeat: the Lease named after it in fleetdb-system.
            ("coordination.k8s.io", "leases") => {
                target.namespace.as_deref() == Some(HEARTBEAT_NAMESPACE)
                    && name == Some(host)
                    && request.operation != Operation::Delete
            }
            // Events about itself.
            ("" | "events.k8s.io", "events") => {
                let about = if resource.group.is_empty() {
                    &object["involvedObject"]
                } else {
                    &object["regarding"]
                };
                about["kind"] == "Host"
                    && about["name"] == host
                    && request.operation != Operation::Delete
            }
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "{who} may write only the status of Host {host:?} (and create it, with an empty spec), its Lease in {HEARTBEAT_NAMESPACE}, Events about it and its own certificate requests"
            ))
        }
    }
}

impl Admission for FleetAdmission {
    fn admit(&self, request: &AdmissionRequest<'_>, object: &mut Value) -> Result<(), ApiError> {
        let resource = &request.target.resource;
        let name = object["metadata"]["name"]
            .as_str()
            .or(request.target.name.as_deref())
            .unwrap_or_default()
            .to_owned();
        let outcome = match self.actor(request) {
            Ok(None) => Ok(()),
            Ok(Some(Actor::Fetcher(source))) => self.fetcher(source, request, object),
            Ok(Some(Actor::Host(host))) => self.host(host, request, object),
            Err(why) => Err(why),
        };
        outcome.map_err(|why| forbidden(resource, &name, why))
    }
}
