//! The policy a set of roles and bindings makes: who holds which rules where, indexed by
//! subject so that a request looks at its own user's and groups' grants only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::{PolicyRule, Request, User, selector_matches};
use crate::gofmt::quote;

/// Deepest chain of aggregated ClusterRoles followed (`admin` ← `edit` ← `view` is 3).
pub const MAX_AGGREGATION_DEPTH: usize = 8;

/// Rules a binding gives its subjects, where.
#[derive(Clone, Debug)]
pub struct Grant {
    /// `None` in every namespace and at the cluster scope (a ClusterRoleBinding); else in
    /// one namespace (a RoleBinding).
    pub namespace: Option<String>,
    /// The role's rules, or why they could not be found.
    pub rules: Result<Arc<[PolicyRule]>, String>,
    /// `ClusterRoleBinding "x" of ClusterRole "y" to Group "z"`, for reasons.
    pub source: String,
    /// Position of the binding (ClusterRoleBindings first), to visit grants in the order
    /// kube-apiserver does.
    order: (usize, usize),
}

/// An authorization answer with kube-apiserver's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// `RBAC: allowed by ...`, or for a refusal the resolution errors met (often empty).
    pub reason: String,
}

/// The evaluated policy.
#[derive(Debug, Default)]
pub struct Policy {
    by_user: HashMap<String, Vec<Grant>>,
    by_group: HashMap<String, Vec<Grant>>,
    cluster_roles: HashMap<String, Arc<[PolicyRule]>>,
    roles: HashMap<(String, String), Arc<[PolicyRule]>>,
    /// ClusterRoles with an aggregation rule, and their aggregated rules.
    aggregated: BTreeMap<String, Vec<PolicyRule>>,
}

/// The rules of a stored Role or ClusterRole (rules that do not read as a PolicyRule are
/// left out).
pub fn rules_of(object: &Value) -> Vec<PolicyRule> {
    object["rules"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .filter_map(|r| serde_json::from_value(r.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

fn namespace_of(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or_default()
}

fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The rules of ClusterRole `name`, its aggregation followed.
fn effective_rules(
    name: &str,
    by_name: &HashMap<&str, &Value>,
    depth: usize,
    visiting: &mut HashSet<String>,
) -> Vec<PolicyRule> {
    let Some(role) = by_name.get(name) else {
        return Vec::new();
    };
    let selectors = role["aggregationRule"]["clusterRoleSelectors"].as_array();
    let Some(selectors) = selectors else {
        return rules_of(role);
    };
    if depth >= MAX_AGGREGATION_DEPTH || !visiting.insert(name.to_owned()) {
        return rules_of(role);
    }
    let mut members: Vec<&str> = by_name
        .iter()
        .filter(|(other, _)| **other != name)
        .filter(|(_, other)| {
            let labels = labels_of(other);
            selectors.iter().any(|s| selector_matches(s, &labels))
        })
        .map(|(other, _)| *other)
        .collect();
    members.sort_unstable();
    let mut rules: Vec<PolicyRule> = Vec::new();
    for member in members {
        for rule in effective_rules(member, by_name, depth + 1, visiting) {
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        }
    }
    visiting.remove(name);
    rules
}

fn describe_subject(subject: &Value, binding_namespace: &str) -> String {
    let kind = subject["kind"].as_str().unwrap_or_default();
    let name = subject["name"].as_str().unwrap_or_default();
    if kind == "ServiceAccount" {
        let namespace = subject["namespace"]
            .as_str()
            .filter(|ns| !ns.is_empty())
            .unwrap_or(binding_namespace);
        format!("{kind} {}", quote(&format!("{name}/{namespace}")))
    } else {
        format!("{kind} {}", quote(name))
    }
}

impl Policy {
    /// The policy of these stored objects (anything unreadable in them is skipped).
    pub fn build(
        cluster_roles: &[Value],
        roles: &[Value],
        cluster_role_bindings: &[Value],
        role_bindings: &[Value],
    ) -> Self {
        let by_name: HashMap<&str, &Value> =
            cluster_roles.iter().map(|r| (name_of(r), r)).collect();
        let mut policy = Policy::default();
        for role in cluster_roles {
            let name = name_of(role);
            let rules = effective_rules(name, &by_name, 0, &mut HashSet::new());
            if role["aggregationRule"].is_object() {
                policy.aggregated.insert(name.to_owned(), rules.clone());
            }
            policy.cluster_roles.insert(name.to_owned(), rules.into());
        }
        for role in roles {
            policy.roles.insert(
                (namespace_of(role).to_owned(), name_of(role).to_owned()),
                rules_of(role).into(),
            );
        }
        let bindings = cluster_role_bindings
            .iter()
            .map(|b| (b, true))
            .chain(role_bindings.iter().map(|b| (b, false)));
        for (position, (binding, cluster)) in bindings.enumerate() {
            let namespace = namespace_of(binding);
            let role_kind = binding["roleRef"]["kind"].as_str().unwrap_or_default();
            let role_name = binding["roleRef"]["name"].as_str().unwrap_or_default();
            let rules = match role_kind {
                "ClusterRole" => policy.cluster_roles.get(role_name).cloned().ok_or_else(|| {
                    format!(
                        "clusterrole.rbac.authorization.k8s.io {} not found",
                        quote(role_name)
                    )
                }),
                "Role" if !cluster => policy
                    .roles
                    .get(&(namespace.to_owned(), role_name.to_owned()))
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "role.rbac.authorization.k8s.io {} not found",
                            quote(role_name)
                        )
                    }),
                _ => continue,
            };
            let binding_name = if cluster {
                format!("ClusterRoleBinding {}", quote(name_of(binding)))
            } else {
                format!(
                    "RoleBinding {}",
                    quote(&format!("{}/{namespace}", name_of(binding)))
                )
            };
            let subjects = binding["subjects"].as_array().cloned().unwrap_or_default();
            for (index, subject) in subjects.iter().enumerate() {
                let grant = Grant {
                    namespace: (!cluster).then(|| namespace.to_owned()),
                    rules: rules.clone(),
                    source: format!(
                        "{binding_name} of {role_kind} {} to {}",
                        quote(role_name),
                        describe_subject(subject, namespace)
                    ),
                    order: (position, index),
                };
                let name = subject["name"].as_str().unwrap_or_default().to_owned();
                match subject["kind"].as_str() {
                    Some("User") => policy.by_user.entry(name).or_default().push(grant),
                    Some("Group") => policy.by_group.entry(name).or_default().push(grant),
                    Some("ServiceAccount") => {
                        let sa_namespace = subject["namespace"]
                            .as_str()
                            .filter(|ns| !ns.is_empty())
                            .unwrap_or(namespace);
                        policy
                            .by_user
                            .entry(format!("system:serviceaccount:{sa_namespace}:{name}"))
                            .or_default()
                            .push(grant)
                    }
                    _ => {}
                }
            }
        }
        policy
    }

    /// The grants that apply to `user` in `namespace` (empty: the cluster scope), in the
    /// order kube-apiserver visits them; one per binding.
    pub fn grants(&self, user: &User<'_>, namespace: &str) -> Vec<&Grant> {
        let mut grants: Vec<&Grant> = self
            .by_user
            .get(user.name)
            .into_iter()
            .chain(user.groups.iter().filter_map(|g| self.by_group.get(g)))
            .flatten()
            .filter(|g| {
                g.namespace
                    .as_deref()
                    .is_none_or(|ns| !namespace.is_empty() && ns == namespace)
            })
            .collect();
        grants.sort_by_key(|g| g.order);
        grants.dedup_by_key(|g| g.order.0);
        grants
    }

    /// Whether the policy allows the request, with kube-apiserver's reason.
    pub fn authorize(&self, user: &User<'_>, request: &Request<'_>) -> Verdict {
        let mut errors = Vec::new();
        for grant in self.grants(user, request.namespace) {
            match &grant.rules {
                Ok(rules) => {
                    if rules.iter().any(|rule| rule.allows(request)) {
                        return Verdict {
                            allowed: true,
                            reason: format!("RBAC: allowed by {}", grant.source),
                        };
                    }
                }
                Err(error) => errors.push(error.clone()),
            }
        }
        Verdict {
            allowed: false,
            reason: match errors.len() {
                0 => String::new(),
                1 => format!("RBAC: {}", errors[0]),
                _ => format!("RBAC: [{}]", errors.join(", ")),
            },
        }
    }

    /// Every rule `user` holds in `namespace` (at the cluster scope when empty), and the
    /// errors met resolving them (`RulesFor`).
    pub fn rules_for(&self, user: &User<'_>, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for grant in self.grants(user, namespace) {
            match &grant.rules {
                Ok(held) => rules.extend(held.iter().cloned()),
                Err(error) => errors.push(error.clone()),
            }
        }
        (rules, errors)
    }

    /// The rules of a ClusterRole (aggregated when it aggregates).
    pub fn cluster_role(&self, name: &str) -> Option<&[PolicyRule]> {
        self.cluster_roles.get(name).map(|r| &**r)
    }

    /// The rules of a Role.
    pub fn role(&self, namespace: &str, name: &str) -> Option<&[PolicyRule]> {
        self.roles
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|r| &**r)
    }

    /// Every ClusterRole with an aggregation rule, with the rules it aggregates.
    pub fn aggregated(&self) -> &BTreeMap<String, Vec<PolicyRule>> {
        &self.aggregated
    }
}
