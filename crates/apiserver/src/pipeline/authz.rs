//! Authorization: the attributes of a request as Kubernetes' authorizers see them, and the
//! decision. RBAC implements [`Authorizer`]; until then [`AllowAuthenticated`] does.

use crate::api::Identity;

/// What a request does, as authorization sees it (Kubernetes' `authorizer.Attributes`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`;
    /// for paths that are not resources, the lower-case HTTP method.
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
    /// kube-apiserver's message for a denied request, e.g. `hosts.fleetdb.io "h1" is
    /// forbidden: User "bob" cannot delete resource "hosts" in API group "fleetdb.io" at the
    /// cluster scope`.
    pub fn forbidden_message(&self, user: &Identity, reason: &str) -> String {
        let mut message = if !self.resource_request {
            format!(
                "forbidden: User \"{}\" cannot {} path \"{}\"",
                user.user, self.verb, self.path
            )
        } else {
            let resource = if self.subresource.is_empty() {
                self.resource.clone()
            } else {
                format!("{}/{}", self.resource, self.subresource)
            };
            let qualified = if self.api_group.is_empty() {
                self.resource.clone()
            } else {
                format!("{}.{}", self.resource, self.api_group)
            };
            let subject = if self.name.is_empty() {
                qualified
            } else {
                format!("{qualified} \"{}\"", self.name)
            };
            let scope = if self.namespace.is_empty() {
                "at the cluster scope".to_owned()
            } else {
                format!("in the namespace \"{}\"", self.namespace)
            };
            format!(
                "{subject} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
                user.user, self.verb, self.api_group
            )
        };
        if !reason.is_empty() {
            message.push_str(": ");
            message.push_str(reason);
        }
        message
    }
}

/// An authorizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Denied, with why (may be empty).
    Deny(String),
    /// Neither allowed nor denied (the request is refused unless another authorizer allows
    /// it), with why (may be empty).
    NoOpinion(String),
}

/// Decides whether a user may do what a request does.
pub trait Authorizer: Send + Sync {
    fn authorize(&self, user: &Identity, attributes: &Attributes) -> Decision;
}

/// Allows every authenticated identity everything: the server's behaviour until RBAC.
pub struct AllowAuthenticated;

impl Authorizer for AllowAuthenticated {
    fn authorize(&self, user: &Identity, _: &Attributes) -> Decision {
        if user.is_anonymous() {
            Decision::NoOpinion(String::new())
        } else {
            Decision::Allow
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_are_worded_like_kube_apiserver() {
        let bob = Identity {
            user: "bob".into(),
            groups: vec![],
        };
        let delete_host = Attributes {
            verb: "delete".into(),
            resource_request: true,
            api_group: "fleetdb.io".into(),
            api_version: "v1alpha1".into(),
            resource: "hosts".into(),
            name: "h1".into(),
            ..Attributes::default()
        };
        assert_eq!(
            delete_host.forbidden_message(&bob, ""),
            "hosts.fleetdb.io \"h1\" is forbidden: User \"bob\" cannot delete resource \"hosts\" in API group \"fleetdb.io\" at the cluster scope"
        );
        let list_pods = Attributes {
            verb: "list".into(),
            resource_request: true,
            api_version: "v1".into(),
            resource: "configmaps".into(),
            namespace: "default".into(),
            ..Attributes::default()
        };
        assert_eq!(
            list_pods.forbidden_message(&bob, ""),
            "configmaps is forbidden: User \"bob\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
        );
        let metrics = Attributes {
            verb: "get".into(),
            path: "/sd/prometheus".into(),
            ..Attributes::default()
        };
        assert_eq!(
            metrics.forbidden_message(&bob, "no rule"),
            "forbidden: User \"bob\" cannot get path \"/sd/prometheus\": no rule"
        );
    }
}
