//! The policy controller: Kubernetes' default roles and bindings (and the embedding
//! program's) created at start-up and kept up to date; the policy cache reloaded whenever
//! any process sharing the store changes a role, a binding or a revocation; and the rules
//! of aggregated ClusterRoles (`admin`, `edit`, `view`) written back into them so that
//! `kubectl get clusterrole view -o yaml` shows what it grants.

use std::sync::Arc;

use fleetdb_machinery::rbac::{GROUP, PolicyRule};
use serde_json::{Value, json};

use crate::api::catalog::{RBAC_GROUP, certificate_revocations};
use crate::api::{ApiError, Identity};
use crate::registry::{AdmitAll, FieldValidation, Registry, Target, WriteOptions};

/// The identity the controller acts with.
const USER: &str = "system:fleetdb:policy-controller";
/// The label Kubernetes puts on its default roles and bindings.
pub const BOOTSTRAP_LABEL: &str = "kubernetes.io/bootstrapping";
/// The annotation that lets the server add what a default role or binding lacks at start-up
/// (`"false"`: leave it as people changed it).
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!(PolicyRule::resources(verbs, groups, resources))
}

fn url_rule(verbs: &[&str], urls: &[&str]) -> Value {
    json!(PolicyRule::urls(verbs, urls))
}

fn metadata(name: &str, labels: Value) -> Value {
    let mut labels = labels;
    labels[BOOTSTRAP_LABEL] = json!("rbac-defaults");
    json!({"name": name, "labels": labels, "annotations": {AUTOUPDATE_ANNOTATION: "true"}})
}

/// A default ClusterRole.
pub fn cluster_role(name: &str, labels: Value, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": "ClusterRole",
        "metadata": metadata(name, labels),
        "rules": rules,
    })
}

/// A default ClusterRole that aggregates the ClusterRoles labelled `label: "true"`.
pub fn aggregated_cluster_role(name: &str, labels: Value, label: &str) -> Value {
    let mut role = cluster_role(name, labels, vec![]);
    role["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]});
    role
}

/// A default ClusterRoleBinding of ClusterRole `name` (the binding's name too) to groups.
pub fn cluster_role_binding(name: &str, groups: &[&str]) -> Value {
    cluster_role_binding_of(name, name, groups)
}

/// A default ClusterRoleBinding `name` of ClusterRole `role` to groups.
pub fn cluster_role_binding_of(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({"kind": "Group", "apiGroup": GROUP, "name": g}))
        .collect();
    json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": "ClusterRoleBinding",
        "metadata": metadata(name, json!({})),
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

/// The roles and bindings kube-apiserver bootstraps, those that apply to this server.
pub fn kubernetes_defaults() -> Vec<Value> {
    const READ: [&str; 3] = ["get", "list", "watch"];
    const READ_WRITE: [&str; 8] = crate::api::catalog::STORED_KIND_VERBS;
    let aggregate =
        |to: &str| json!({format!("rbac.authorization.k8s.io/aggregate-to-{to}"): "true"});
    vec![
        cluster_role(
            "cluster-admin",
            json!({}),
            vec![rule(&["*"], &["*"], &["*"]), url_rule(&["*"], &["*"])],
        ),
        cluster_role(
            "system:discovery",
            json!({}),
            vec![url_rule(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        cluster_role(
            "system:basic-user",
            json!({}),
            vec![
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(
                    &["create"],
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                ),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            json!({}),
            vec![url_rule(
                &["get"],
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
            )],
        ),
        aggregated_cluster_role(
            "admin",
            json!({}),
            "rbac.authorization.k8s.io/aggregate-to-admin",
        ),
        aggregated_cluster_role(
            "edit",
            aggregate("admin"),
            "rbac.authorization.k8s.io/aggregate-to-edit",
        ),
        aggregated_cluster_role(
            "view",
            aggregate("edit"),
            "rbac.authorization.k8s.io/aggregate-to-view",
        ),
        cluster_role(
            "system:aggregate-to-admin",
            aggregate("admin"),
            vec![
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["localsubjectaccessreviews"],
                ),
                rule(&READ_WRITE, &[RBAC_GROUP], &["rolebindings", "roles"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-edit",
            aggregate("edit"),
            vec![
                rule(&READ_WRITE, &[""], &["configmaps", "secrets"]),
                rule(&READ_WRITE, &["coordination.k8s.io"], &["leases"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-view",
            aggregate("view"),
            vec![
                rule(&READ, &[""], &["namespaces", "configmaps", "events"]),
                rule(&READ, &["events.k8s.io"], &["events"]),
            ],
        ),
        cluster_role(
            "system:node-bootstrapper",
            json!({}),
            vec![rule(
                &["create", "get", "list", "watch"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
            )],
        ),
        cluster_role_binding("cluster-admin", &["system:masters"]),
        cluster_role_binding("system:discovery", &["system:authenticated"]),
        cluster_role_binding("system:basic-user", &["system:authenticated"]),
        cluster_role_binding(
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
    ]
}

fn target_of(registry: &Registry, object: &Value) -> Option<Target> {
    let plural = match object["kind"].as_str()? {
        "ClusterRole" => "clusterroles",
        "ClusterRoleBinding" => "clusterrolebindings",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        _ => return None,
    };
    let resource = registry.catalog().snapshot().get(GROUP, "v1", plural)?;
    let namespace = object["metadata"]["namespace"].as_str().map(str::to_owned);
    Some(Target::collection(resource, namespace))
}

/// What an existing default lacks of `wanted`, added: rules, labels, aggregation and
/// subjects are united, nothing is taken away (`None`: nothing to add).
fn reconciled(existing: &Value, wanted: &Value) -> Option<Value> {
    let mut updated = existing.clone();
    let mut changed = false;
    for list in ["rules", "subjects"] {
        if let Some(items) = wanted[list].as_array() {
            for item in items {
                let present = updated[list]
                    .as_array()
                    .is_some_and(|have| have.contains(item));
                if !present {
                    if !updated[list].is_array() {
                        updated[list] = json!([]);
                    }
                    if let Some(have) = updated[list].as_array_mut() {
                        have.push(item.clone());
                    }
                    changed = true;
                }
            }
        }
    }
    if let Some(labels) = wanted["metadata"]["labels"].as_object() {
        for (key, value) in labels {
            if updated["metadata"]["labels"][key] != *value {
                if !updated["metadata"]["labels"].is_object() {
                    updated["metadata"]["labels"] = json!({});
                }
                updated["metadata"]["labels"][key] = value.clone();
                changed = true;
            }
        }
    }
    if wanted["aggregationRule"].is_object()
        && updated["aggregationRule"] != wanted["aggregationRule"]
    {
        updated["aggregationRule"] = wanted["aggregationRule"].clone();
        changed = true;
    }
    changed.then_some(updated)
}

fn write_options(user: &Identity) -> WriteOptions<'_> {
    WriteOptions {
        user,
        dry_run: false,
        field_manager: "fleetdb".into(),
        field_validation: FieldValidation::Strict,
        admission: &AdmitAll,
    }
}

/// Creates the default roles and bindings that do not exist, and adds to those marked
/// `autoupdate` what they lack; then loads the policy and revocations in force.
pub async fn ensure_defaults(registry: &Registry, objects: &[Value]) -> Result<(), ApiError> {
    let user = Identity::system(USER);
    let options = write_options(&user);
    for object in objects {
        let Some(target) = target_of(registry, object) else {
            return Err(ApiError::internal(format!(
                "a default of the policy is not an RBAC object: {object}"
            )));
        };
        match registry.create(&target, object.clone(), &options).await {
            Ok(_) => continue,
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e),
        }
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let named = Target::object(
            target.resource.clone(),
            target.namespace.clone(),
            name.clone(),
        );
        let existing = registry.get(&named).await?;
        if existing["metadata"]["annotations"][AUTOUPDATE_ANNOTATION] != json!("true") {
            continue;
        }
        if let Some(updated) = reconciled(&existing, object) {
            registry.update(&named, updated, &options).await?;
            tracing::info!(%name, "added what a default role or binding lacked");
        }
    }
    registry.policy().reload_policy(registry.storage()).await;
    registry
        .policy()
        .reload_revocations(registry.storage())
        .await;
    Ok(())
}

/// Writes each aggregated ClusterRole's rules into it when they differ from what it
/// aggregates (the next reload sees the same rules, so this settles).
async fn write_aggregated_rules(registry: &Registry) {
    let user = Identity::system(USER);
    let options = write_options(&user);
    let policy = registry.policy().policy();
    let Some(resource) = registry
        .catalog()
        .snapshot()
        .get(GROUP, "v1", "clusterroles")
    else {
        return;
    };
    for (name, rules) in policy.aggregated() {
        let target = Target::object(resource.clone(), None, name.clone());
        let Ok(mut stored) = registry.get(&target).await else {
            continue;
        };
        let rules = json!(rules);
        if stored["rules"] == rules {
            continue;
        }
        stored["rules"] = rules;
        if let Err(error) = registry.update(&target, stored, &options).await
            && error.code != 409
        {
            tracing::warn!(%name, %error, "cannot write the rules of an aggregated cluster role");
        }
    }
}

/// Follows one prefix, calling `reload` at the start and after every change, until the
/// server shuts down.
fn follow<F, Fut>(registry: Arc<Registry>, prefix: String, reload: F)
where
    F: Fn(Arc<Registry>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let storage = registry.storage().clone();
    let (first, again) = (registry.clone(), reload.clone());
    super::follow(
        storage,
        prefix,
        move || reload(first.clone()),
        move |_| again(registry.clone()),
    );
}

/// Runs until the server shuts down.
pub fn spawn(registry: Arc<Registry>) {
    follow(
        registry.clone(),
        format!("/registry/{RBAC_GROUP}/"),
        |registry| async move {
            registry.policy().reload_policy(registry.storage()).await;
            write_aggregated_rules(&registry).await;
        },
    );
    follow(
        registry,
        certificate_revocations().key_prefix(None),
        |registry| async move {
            registry
                .policy()
                .reload_revocations(registry.storage())
                .await;
        },
    );
}
