//! Admission, the stage after authorization: the last word on every write, called by the
//! registry after the kind's rules and the schema, just before the object is stored. The
//! server's own plugin is RBAC's escalation prevention; the embedding program adds its own
//! (fleetdb: what fetchers and hosts may write) after it.

use std::sync::Arc;

use fleetdb_machinery::rbac::{self, PolicyRule};
use serde_json::Value;

use super::authz::{Attributes, Authorizer};
use crate::api::{ApiError, Identity, Kind};
use crate::registry::policy::PolicyCache;
use crate::registry::{Admission, AdmissionRequest, Operation};

/// Admission plugins run in order; the first refusal stops the write.
pub struct Chain {
    plugins: Vec<Arc<dyn Admission>>,
}

impl Chain {
    pub fn new(plugins: Vec<Arc<dyn Admission>>) -> Self {
        Self { plugins }
    }
}

impl Admission for Chain {
    fn admit(&self, request: &AdmissionRequest<'_>, object: &mut Value) -> Result<(), ApiError> {
        for plugin in &self.plugins {
            plugin.admit(request, object)?;
        }
        Ok(())
    }
}

/// RBAC's escalation prevention: nobody grants, through a role or a binding, what they do
/// not hold themselves — unless they are in `system:masters`, or hold the `escalate` verb on
/// the role (for roles) or the `bind` verb on the role referred to (for bindings).
pub struct EscalationPrevention {
    policy: Arc<PolicyCache>,
    authorizer: Arc<dyn Authorizer>,
}

/// The rules of `cluster-admin`: what `aggregationRule` requires of whoever writes it.
fn full_authority() -> Vec<PolicyRule> {
    vec![
        PolicyRule::resources(&["*"], &["*"], &["*"]),
        PolicyRule::urls(&["*"], &["*"]),
    ]
}

fn has_aggregation(object: &Value) -> bool {
    object["aggregationRule"]["clusterRoleSelectors"]
        .as_array()
        .is_some_and(|s| !s.is_empty())
}

/// Whether an update leaves everything that grants anything as it was.
fn grants_unchanged(object: &Value, old: &Value) -> bool {
    ["rules", "aggregationRule", "roleRef", "subjects"]
        .iter()
        .all(|field| object[field] == old[field])
        && object["metadata"]["labels"] == old["metadata"]["labels"]
}

impl EscalationPrevention {
    pub fn new(policy: Arc<PolicyCache>, authorizer: Arc<dyn Authorizer>) -> Self {
        Self { policy, authorizer }
    }

    /// What of `wanted` the user does not hold in `namespace`, as kube-apiserver's message.
    fn not_held(&self, user: &Identity, namespace: &str, wanted: &[PolicyRule]) -> Option<String> {
        let policy = self.policy.policy();
        let subject = rbac::User {
            name: &user.user,
            groups: &user.groups,
        };
        let (held, errors) = policy.rules_for(&subject, namespace);
        let missing = rbac::uncovered(&held, wanted);
        if missing.is_empty() {
            return None;
        }
        let mut message = rbac::escalation_message(&subject, &missing);
        if !errors.is_empty() {
            message.push_str(&format!("; resolution errors: [{}]", errors.join(", ")));
        }
        Some(message)
    }

    fn allowed(&self, user: &Identity, attributes: &Attributes) -> bool {
        self.authorizer.authorize(user, attributes).allowed()
    }
}

impl Admission for EscalationPrevention {
    fn admit(&self, request: &AdmissionRequest<'_>, object: &mut Value) -> Result<(), ApiError> {
        let resource = &request.target.resource;
        let kind = resource.kind_tag;
        if request.operation == Operation::Delete
            || !matches!(
                kind,
                Kind::Role | Kind::ClusterRole | Kind::RoleBinding | Kind::ClusterRoleBinding
            )
            || request.user.is_master()
            || request.old.is_some_and(|old| grants_unchanged(object, old))
        {
            return Ok(());
        }
        let user = request.user;
        let namespace = request.target.namespace.as_deref().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let forbidden =
            |why: &str| ApiError::forbidden_resource(&resource.group, &resource.plural, name, why);
        match kind {
            Kind::Role | Kind::ClusterRole => {
                let escalate = Attributes::resource(
                    "escalate",
                    &resource.group,
                    &resource.plural,
                    namespace,
                    request.target.name.as_deref().unwrap_or_default(),
                );
                if self.allowed(user, &escalate) {
                    return Ok(());
                }
                if let Some(message) = self.not_held(user, namespace, &rbac::rules_of(object)) {
                    return Err(forbidden(&message));
                }
                let aggregates =
                    has_aggregation(object) || request.old.is_some_and(has_aggregation);
                if aggregates && self.not_held(user, namespace, &full_authority()).is_some() {
                    return Err(forbidden(
                        "must have cluster-admin privileges to use the aggregationRule",
                    ));
                }
                Ok(())
            }
            _ => {
                let role_kind = object["roleRef"]["kind"].as_str().unwrap_or_default();
                let role_name = object["roleRef"]["name"].as_str().unwrap_or_default();
                let role_resource = if role_kind == "Role" {
                    "roles"
                } else {
                    "clusterroles"
                };
                let bind =
                    Attributes::resource("bind", rbac::GROUP, role_resource, namespace, role_name);
                if self.allowed(user, &bind) {
                    return Ok(());
                }
                let policy = self.policy.policy();
                let rules = if role_kind == "Role" {
                    policy.role(namespace, role_name)
                } else {
                    policy.cluster_role(role_name)
                };
                let Some(rules) = rules else {
                    return Err(ApiError::not_found(
                        &format!("{role_resource}.{}", rbac::GROUP),
                        rbac::GROUP,
                        role_resource,
                        role_name,
                    ));
                };
                match self.not_held(user, namespace, rules) {
                    Some(message) => Err(forbidden(&message)),
                    None => Ok(()),
                }
            }
        }
    }
}
