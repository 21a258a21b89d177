//! Impersonation (`Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid`,
//! `Impersonate-Extra-<key>`; `kubectl --as`, `--as-group`): the requester acts as someone
//! else when authorized for the `impersonate` verb on each part — `users` (or
//! `serviceaccounts`), `groups`, `uids` and `userextras/<key>` — as kube-apiserver checks.

use std::collections::BTreeMap;

use super::authz::{Attributes, Authorizer};
use crate::api::identity::AUTHENTICATED_GROUP;
use crate::api::{ApiError, Identity};

/// The group of `uids` and `userextras`.
const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";
/// Most impersonated groups and extra values one request may name.
pub const MAX_IMPERSONATED_VALUES: usize = 64;

/// Who a request asks to act as (the headers, read by the http layer).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Impersonation {
    pub user: Option<String>,
    pub groups: Vec<String>,
    pub uid: Option<String>,
    /// Lower-cased keys, each with its values.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Impersonation {
    /// Whether the request asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.groups.is_empty() && self.uid.is_none() && self.extra.is_empty()
    }
}

/// The identity `requester` acts as, or why not.
pub fn impersonate(
    authorizer: &dyn Authorizer,
    requester: &Identity,
    asked: &Impersonation,
) -> Result<Identity, ApiError> {
    let Some(user) = asked.user.as_deref() else {
        return Err(ApiError::bad_request(
            "requested impersonation of groups, a uid or extra values without impersonating a user (Impersonate-User)",
        ));
    };
    let values = asked.groups.len() + asked.extra.values().map(Vec::len).sum::<usize>();
    if values > MAX_IMPERSONATED_VALUES {
        return Err(ApiError::bad_request(format!(
            "too many impersonated groups and extra values: {values} (at most {MAX_IMPERSONATED_VALUES})"
        )));
    }
    let check = |attributes: Attributes| -> Result<(), ApiError> {
        let decision = authorizer.authorize(requester, &attributes);
        if decision.allowed() {
            Ok(())
        } else {
            Err(attributes.forbidden(requester, decision.reason()))
        }
    };
    let service_account = user
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(namespace, name)| !namespace.is_empty() && !name.is_empty());
    match service_account {
        Some((namespace, name)) => check(Attributes::resource(
            "impersonate",
            "",
            "serviceaccounts",
            namespace,
            name,
        ))?,
        None => check(Attributes::resource("impersonate", "", "users", "", user))?,
    }
    for group in &asked.groups {
        check(Attributes::resource("impersonate", "", "groups", "", group))?;
    }
    for (key, values) in &asked.extra {
        for value in values {
            let mut attributes =
                Attributes::resource("impersonate", AUTHENTICATION_GROUP, "userextras", "", value);
            attributes.subresource = key.clone();
            check(attributes)?;
        }
    }
    if let Some(uid) = &asked.uid {
        check(Attributes::resource(
            "impersonate",
            AUTHENTICATION_GROUP,
            "uids",
            "",
            uid,
        ))?;
    }
    let mut groups = asked.groups.clone();
    if let Some((namespace, _)) = service_account
        && groups.is_empty()
    {
        groups.push("system:serviceaccounts".into());
        groups.push(format!("system:serviceaccounts:{namespace}"));
    }
    let anonymous = user == "system:anonymous";
    let marker = if anonymous {
        "system:unauthenticated"
    } else {
        AUTHENTICATED_GROUP
    };
    if !groups
        .iter()
        .any(|g| g == AUTHENTICATED_GROUP || g == "system:unauthenticated")
    {
        groups.push(marker.into());
    }
    Ok(Identity {
        user: user.to_owned(),
        groups,
        uid: asked.uid.clone().unwrap_or_default(),
        extra: asked.extra.clone(),
        credential: None,
        impersonator: Some(requester.user.clone()),
    })
}
