//! Discovery documents: legacy (`/api`, `/apis`, `/apis/G`, `/apis/G/V`, `/api/v1`) and
//! aggregated (`apidiscovery.k8s.io/v2`), all generated from the registry.

use serde_json::{Value, json};

use crate::api::{Resource, Snapshot};

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

/// `GET /api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn api_group(group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": group_version(group, v), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

/// `GET /apis`.
pub fn groups(snapshot: &Snapshot) -> Value {
    let groups: Vec<Value> = snapshot
        .groups()
        .iter()
        .filter(|(group, _)| !group.is_empty())
        .map(|(group, versions)| api_group(group, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/G`, if the group exists.
pub fn group(snapshot: &Snapshot, name: &str) -> Option<Value> {
    let versions = snapshot.groups().get(name)?;
    let mut group = api_group(name, versions);
    group["kind"] = json!("APIGroup");
    group["apiVersion"] = json!("v1");
    Some(group)
}

fn subresources(resource: &Resource) -> Vec<&'static str> {
    let mut subresources = Vec::new();
    if resource.status_subresource {
        subresources.push("status");
    }
    if resource.scale.is_some() {
        subresources.push("scale");
    }
    if resource.approval_subresource {
        subresources.push("approval");
    }
    subresources
}

/// The kind a subresource answers with: Scale is `autoscaling/v1`.
fn subresource_kind(resource: &Resource, subresource: &str) -> (String, String, String) {
    if subresource == "scale" {
        ("autoscaling".into(), "v1".into(), "Scale".into())
    } else {
        (
            resource.group.clone(),
            resource.version.clone(),
            resource.kind.clone(),
        )
    }
}

/// `GET /apis/G/V` or `/api/v1`, if the group/version exists.
pub fn resource_list(snapshot: &Snapshot, group: &str, version: &str) -> Option<Value> {
    snapshot
        .groups()
        .get(group)?
        .iter()
        .find(|v| *v == version)?;
    let mut resources = Vec::new();
    for resource in snapshot.resources(group, version) {
        resources.push(json!({
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": resource.verbs(),
            "shortNames": resource.short_names,
            "categories": resource.categories,
        }));
        for sub in subresources(&resource) {
            let (sub_group, sub_version, sub_kind) = subresource_kind(&resource, sub);
            let mut entry = json!({
                "name": format!("{}/{sub}", resource.plural),
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": sub_kind,
                "verbs": ["get", "patch", "update"],
            });
            if sub == "scale" {
                entry["group"] = json!(sub_group);
                entry["version"] = json!(sub_version);
            }
            resources.push(entry);
        }
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version(group, version),
        "resources": resources,
    }))
}

/// Aggregated discovery of the core group (`core == true`) or of every other group.
pub fn aggregated(snapshot: &Snapshot, core: bool, version: &str) -> Value {
    let mut items = Vec::new();
    for (group, versions) in snapshot.groups() {
        if group.is_empty() != core {
            continue;
        }
        let versions: Vec<Value> = versions
            .iter()
            .map(|v| {
                let resources: Vec<Value> = snapshot
                    .resources(group, v)
                    .iter()
                    .map(|r| {
                        let kind = json!({"group": group, "version": v, "kind": r.kind});
                        let subresources: Vec<Value> = subresources(r)
                            .into_iter()
                            .map(|s| {
                                let (g, v, k) = subresource_kind(r, s);
                                json!({"subresource": s, "responseKind": {"group": g, "version": v, "kind": k}, "verbs": ["get", "patch", "update"]})
                            })
                            .collect();
                        json!({
                            "resource": r.plural,
                            "responseKind": kind,
                            "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                            "singularResource": r.singular,
                            "verbs": r.verbs(),
                            "shortNames": r.short_names,
                            "categories": r.categories,
                            "subresources": subresources,
                        })
                    })
                    .collect();
                json!({"version": v, "resources": resources, "freshness": "Current"})
            })
            .collect();
        items.push(json!({"metadata": {"name": group}, "versions": versions}));
    }
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}
