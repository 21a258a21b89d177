//! Authorization: the attributes of a request as Kubernetes' authorizers see them, the
//! decision, and the server's authorizer — `system:masters` first (allowed everything, as
//! kube-apiserver's privileged-group authorizer), then RBAC on the policy in force.

use std::sync::Arc;

use fleetdb_machinery::rbac;

use crate::api::Identity;
use crate::registry::policy::PolicyCache;

/// What a request does, as authorization sees it (Kubernetes' `authorizer.Attributes`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`,
    /// `impersonate`, `bind`, `escalate`; for paths that are not resources, the lower-case
    /// HTTP method.
    pub verb: String,
    /// Whether this is a request for a resource (else for a path, e.g. `/version`).
    pub resource_request: bool,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The URL path.
    pub path: String,
}

impl Attributes {
    /// A request for a resource.
    pub fn resource(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        Self {
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
            ..Self::default()
        }
    }

    /// A request for a non-resource path.
    pub fn path(verb: &str, path: &str) -> Self {
        Self {
            verb: verb.into(),
            path: path.into(),
            ..Self::default()
        }
    }

    /// The attributes as RBAC reads them.
    pub fn rbac(&self) -> rbac::Request<'_> {
        rbac::Request {
            verb: &self.verb,
            resource_request: self.resource_request,
            api_group: &self.api_group,
            resource: &self.resource,
            subresource: &self.subresource,
            name: &self.name,
            namespace: &self.namespace,
            path: &self.path,
        }
    }

    /// kube-apiserver's reason for a denied request (`ForbiddenStatusError`), e.g. `User
    /// "bob" cannot delete resource "hosts" in API group "fleetdb.io" at the cluster scope`.
    pub fn denial(&self, user: &Identity, reason: &str) -> String {
        let mut message = if !self.resource_request {
            format!(
                "User \"{}\" cannot {} path \"{}\"",
                user.user, self.verb, self.path
            )
        } else {
            let resource = if self.subresource.is_empty() {
                self.resource.clone()
            } else {
                format!("{}/{}", self.resource, self.subresource)
            };
            let scope = if self.namespace.is_empty() {
                "at the cluster scope".to_owned()
            } else {
                format!("in the namespace \"{}\"", self.namespace)
            };
            format!(
                "User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
                user.user, self.verb, self.api_group
            )
        };
        if !reason.is_empty() {
            message.push_str(": ");
            message.push_str(reason);
        }
        message
    }

    /// The whole message of the 403, e.g. `hosts.fleetdb.io "h1" is forbidden: User "bob"
    /// cannot delete resource "hosts" in API group "fleetdb.io" at the cluster scope`.
    pub fn forbidden_message(&self, user: &Identity, reason: &str) -> String {
        self.forbidden(user, reason).message
    }

    /// The 403 itself, with its details.
    pub fn forbidden(&self, user: &Identity, reason: &str) -> crate::api::ApiError {
        let denial = self.denial(user, reason);
        if self.resource_request {
            crate::api::ApiError::forbidden_resource(
                &self.api_group,
                &self.resource,
                &self.name,
                &denial,
            )
        } else {
            crate::api::ApiError::forbidden(format!("forbidden: {denial}"))
        }
    }
}

/// An authorizer's answer, with its reason (may be empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow(String),
    /// Denied.
    Deny(String),
    /// Neither allowed nor denied (the request is refused unless another authorizer allows
    /// it).
    NoOpinion(String),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow(r) | Decision::Deny(r) | Decision::NoOpinion(r) => r,
        }
    }
}

/// Decides whether a user may do what a request does.
pub trait Authorizer: Send + Sync {
    fn authorize(&self, user: &Identity, attributes: &Attributes) -> Decision;
}

/// The server's authorizer: `system:masters` may do anything; everyone else what the RBAC
/// policy in force allows.
pub struct RbacAuthorizer {
    policy: Arc<PolicyCache>,
}

impl RbacAuthorizer {
    pub fn new(policy: Arc<PolicyCache>) -> Self {
        Self { policy }
    }
}

impl Authorizer for RbacAuthorizer {
    fn authorize(&self, user: &Identity, attributes: &Attributes) -> Decision {
        if user.is_master() {
            return Decision::Allow(String::new());
        }
        let verdict = self.policy.policy().authorize(
            &rbac::User {
                name: &user.user,
                groups: &user.groups,
            },
            &attributes.rbac(),
        );
        if verdict.allowed {
            Decision::Allow(verdict.reason)
        } else {
            Decision::NoOpinion(verdict.reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_are_worded_like_kube_apiserver() {
        let bob = Identity::new("bob", &[]);
        let mut delete_host = Attributes::resource("delete", "fleetdb.io", "hosts", "", "h1");
        delete_host.api_version = "v1alpha1".into();
        assert_eq!(
            delete_host.forbidden_message(&bob, ""),
            "hosts.fleetdb.io \"h1\" is forbidden: User \"bob\" cannot delete resource \"hosts\" in API group \"fleetdb.io\" at the cluster scope"
        );
        let forbidden = delete_host.forbidden(&bob, "");
        assert_eq!(forbidden.code, 403);
        assert_eq!(
            forbidden.details.unwrap(),
            serde_json::json!({"name": "h1", "group": "fleetdb.io", "kind": "hosts"})
        );
        let list_configmaps = Attributes::resource("list", "", "configmaps", "default", "");
        assert_eq!(
            list_configmaps.forbidden_message(&bob, ""),
            "configmaps is forbidden: User \"bob\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
        );
        let impersonate = Attributes::resource("impersonate", "", "users", "", "alice");
        assert_eq!(
            impersonate.forbidden_message(&bob, ""),
            "users \"alice\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        );
        let discovery = Attributes::path("get", "/sd/prometheus");
        assert_eq!(
            discovery.forbidden_message(&bob, "no rule"),
            "forbidden: User \"bob\" cannot get path \"/sd/prometheus\": no rule"
        );
    }
}
