//! Admission of CertificateSigningRequests, as kube-apiserver's CSR strategy and its
//! `CertificateApproval` and `CertificateSigning` plugins: the requester is recorded in the
//! spec (whatever the body said); `/approval` changes only the Approved and Denied conditions
//! and needs the `approve` verb on the request's signer; `/status` leaves those conditions
//! alone and needs the `sign` verb on it.

use std::sync::Arc;

use serde_json::{Value, json};

use super::authz::{Attributes, Authorizer};
use crate::api::catalog::CERTIFICATES_GROUP;
use crate::api::{ApiError, Identity, Kind};
use crate::registry::{
    APPROVAL_CONDITIONS, Admission, AdmissionRequest, Operation, Subresource, now,
};

/// The resource signer permissions are granted on (`resourceNames`: signer names, or
/// `<domain>/*`).
pub const SIGNERS: &str = "signers";

pub struct CertificateRequests {
    authorizer: Arc<dyn Authorizer>,
}

impl CertificateRequests {
    pub fn new(authorizer: Arc<dyn Authorizer>) -> Self {
        Self { authorizer }
    }

    /// Whether `user` holds `verb` on the signer, by its name or its domain's wildcard.
    fn may(&self, user: &Identity, verb: &str, signer: &str) -> bool {
        let wildcard = signer
            .split_once('/')
            .map(|(domain, _)| format!("{domain}/*"));
        std::iter::once(signer.to_owned())
            .chain(wildcard)
            .any(|name| {
                self.authorizer
                    .authorize(
                        user,
                        &Attributes::resource(verb, CERTIFICATES_GROUP, SIGNERS, "", &name),
                    )
                    .allowed()
            })
    }
}

/// The request's conditions split by whether approval owns them.
fn split(object: &Value) -> (Vec<Value>, Vec<Value>) {
    object["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .partition(|c| {
            c["type"]
                .as_str()
                .is_some_and(|t| APPROVAL_CONDITIONS.contains(&t))
        })
}

/// Everything in `.status` but the approval conditions.
fn rest_of_status(object: &Value) -> Value {
    let mut status = match &object["status"] {
        Value::Object(status) => status.clone(),
        _ => serde_json::Map::new(),
    };
    let others = split(object).1;
    if others.is_empty() {
        status.remove("conditions");
    } else {
        status.insert("conditions".into(), json!(others));
    }
    Value::Object(status)
}

/// Gives conditions without times the current time (the CSR strategy's defaulting).
fn stamp_conditions(object: &mut Value) {
    let now = now();
    if let Some(conditions) = object["status"]
        .get_mut("conditions")
        .and_then(Value::as_array_mut)
    {
        for condition in conditions.iter_mut().filter(|c| c.is_object()) {
            for field in ["lastUpdateTime", "lastTransitionTime"] {
                if condition[field].as_str().is_none_or(str::is_empty) {
                    condition[field] = json!(now);
                }
            }
        }
    }
}

impl Admission for CertificateRequests {
    fn admit(&self, request: &AdmissionRequest<'_>, object: &mut Value) -> Result<(), ApiError> {
        let target = request.target;
        if target.resource.kind_tag != Kind::CertificateSigningRequest
            || request.operation == Operation::Delete
        {
            return Ok(());
        }
        let name = target
            .name
            .clone()
            .or_else(|| object["metadata"]["name"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let forbidden = |why: String| {
            ApiError::forbidden_resource(CERTIFICATES_GROUP, &target.resource.plural, &name, &why)
        };
        let signer = object["spec"]["signerName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let Some(old) = request.old else {
            // Create: the requester is who asked, whatever the body said.
            let user = request.user;
            let spec = &mut object["spec"];
            spec["username"] = json!(user.user);
            spec["groups"] = json!(user.groups);
            match user.uid.as_str() {
                "" => spec.as_object_mut().map(|s| s.remove("uid")),
                uid => spec
                    .as_object_mut()
                    .map(|s| s.insert("uid".into(), json!(uid))),
            };
            match user.extra.is_empty() {
                true => spec.as_object_mut().map(|s| s.remove("extra")),
                false => spec
                    .as_object_mut()
                    .map(|s| s.insert("extra".into(), json!(user.extra))),
            };
            return Ok(());
        };
        match target.subresource {
            Some(Subresource::Approval) => {
                if rest_of_status(object) != rest_of_status(old) {
                    return Err(forbidden(
                        "the approval subresource changes only the Approved and Denied conditions"
                            .into(),
                    ));
                }
                if split(object).0 != split(old).0 && !self.may(request.user, "approve", &signer) {
                    return Err(forbidden(format!(
                        "user not permitted to approve requests with signerName {signer:?}"
                    )));
                }
            }
            Some(Subresource::Status) => {
                if split(object).0 != split(old).0 {
                    return Err(forbidden(
                        "the Approved and Denied conditions change only through the approval subresource"
                            .into(),
                    ));
                }
                if object["status"]["certificate"] != old["status"]["certificate"]
                    && !self.may(request.user, "sign", &signer)
                {
                    return Err(forbidden(format!(
                        "user not permitted to sign requests with signerName {signer:?}"
                    )));
                }
            }
            _ => {}
        }
        stamp_conditions(object);
        Ok(())
    }
}
