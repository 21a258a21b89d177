//! The certificate controller (kube-controller-manager's `csrapproving` and `csrsigning` in
//! one): pending CertificateSigningRequests go to the program's approvers, which approve,
//! deny or leave them to a person (`kubectl certificate approve`); approved requests of a
//! signer the server knows are signed by its CA, or marked Failed with the reason. Every
//! decision is an Event about the request.
//!
//! It follows the requests through a store watch, so a request approved through another
//! process sharing the store is signed too; two processes racing to sign one request write
//! through the same resourceVersion precondition, and the loser leaves it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fleetdb_store::EventKind;
use serde_json::{Value, json};

use super::events;
use crate::api::catalog::CERTIFICATES_GROUP;
use crate::api::{ApiError, Identity};
use crate::pki::{Authority, request_subject};
use crate::registry::{
    AdmitAll, FieldValidation, Registry, Subresource, Target, WriteOptions, now, request_der,
};
use crate::storage::codec;

/// The identity the controller acts with.
pub const USER: &str = "system:fleetdb:certificate-controller";
/// The signer of client certificates for people and tools.
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
/// The longest certificate the client signer issues (and what it issues when the request
/// names no `expirationSeconds`).
pub const MAX_CLIENT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// What a signer and an approver are told of a request.
pub struct Request<'a> {
    pub name: &'a str,
    /// The request's subject.
    pub common_name: String,
    pub organizations: Vec<String>,
    /// Who filed it (`spec.username`, `spec.groups`).
    pub requester: &'a str,
    pub requester_groups: Vec<&'a str>,
    pub signer: &'a str,
    pub usages: Vec<&'a str>,
    pub expiration_seconds: Option<i64>,
    /// The stored object.
    pub object: &'a Value,
}

/// A signer the server's CA serves: which requests it certifies and for how long.
pub trait Signer: Send + Sync {
    fn name(&self) -> &str;
    /// The lifetime of the certificate, or why the request cannot be signed (the reason
    /// goes into a Failed condition).
    fn check(&self, request: &Request<'_>) -> Result<Duration, String>;
}

/// An approver's answer on a pending request.
pub enum Verdict {
    Approve {
        reason: String,
        message: String,
    },
    Deny {
        reason: String,
        message: String,
    },
    /// Leave it to a person.
    Wait,
}

/// Decides pending requests automatically (the program's policy).
#[async_trait]
pub trait Approver: Send + Sync {
    async fn decide(&self, registry: &Registry, request: &Request<'_>) -> Verdict;
}

/// `kubernetes.io/kube-apiserver-client`: any subject but `system:masters` (approving a
/// request must not be a way to mint an administrator), client usages only, at most
/// [`MAX_CLIENT_LIFETIME`].
pub struct ClientSigner;

/// The usages a client certificate may ask for.
pub const CLIENT_USAGES: [&str; 3] = ["client auth", "digital signature", "key encipherment"];

/// The lifetime a request asks for, capped at `max` (`max` when it asks for none).
pub fn requested_lifetime(request: &Request<'_>, max: Duration) -> Duration {
    request
        .expiration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(max, |s| Duration::from_secs(s).min(max))
}

/// Checks that a request asks for client usages only, including `client auth`.
pub fn client_usages(request: &Request<'_>) -> Result<(), String> {
    if !request.usages.contains(&"client auth") {
        return Err("the request must include the usage \"client auth\"".into());
    }
    if let Some(other) = request.usages.iter().find(|u| !CLIENT_USAGES.contains(u)) {
        return Err(format!(
            "the usage {other:?} is not allowed for a client certificate (allowed: {})",
            CLIENT_USAGES.join(", ")
        ));
    }
    Ok(())
}

impl Signer for ClientSigner {
    fn name(&self) -> &str {
        CLIENT_SIGNER
    }

    fn check(&self, request: &Request<'_>) -> Result<Duration, String> {
        if request
            .organizations
            .iter()
            .any(|o| o == crate::api::identity::MASTERS_GROUP)
        {
            return Err(format!(
                "this signer does not issue certificates in {}",
                crate::api::identity::MASTERS_GROUP
            ));
        }
        if request.common_name.is_empty() {
            return Err("the request's subject has no common name".into());
        }
        client_usages(request)?;
        Ok(requested_lifetime(request, MAX_CLIENT_LIFETIME))
    }
}

/// The signers and approvers a server runs.
#[derive(Clone, Default)]
pub struct Certificates {
    pub signers: Vec<Arc<dyn Signer>>,
    pub approvers: Vec<Arc<dyn Approver>>,
}

fn conditions(object: &Value) -> impl Iterator<Item = &str> {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "True")
        .filter_map(|c| c["type"].as_str())
}

fn write_options(user: &Identity) -> WriteOptions<'_> {
    WriteOptions {
        user,
        dry_run: false,
        field_manager: "fleetdb-certificate-controller".into(),
        field_validation: FieldValidation::Strict,
        admission: &AdmitAll,
    }
}

fn condition(kind: &str, reason: &str, message: &str) -> Value {
    let now = now();
    json!({
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
    })
}

/// Adds a condition to the request through `subresource` (with its resourceVersion as
/// precondition, so a concurrent decision wins and this one is dropped).
async fn add_condition(
    registry: &Registry,
    target: &Target,
    object: &Value,
    added: Value,
    certificate: Option<String>,
) -> Result<(), ApiError> {
    let user = Identity::system(USER);
    let mut updated = object.clone();
    if !updated["status"].is_object() {
        updated["status"] = json!({});
    }
    if let Some(added) = Some(added).filter(|a| !a.is_null()) {
        if !updated["status"]["conditions"].is_array() {
            updated["status"]["conditions"] = json!([]);
        }
        if let Some(list) = updated["status"]["conditions"].as_array_mut() {
            list.push(added);
        }
    }
    if let Some(certificate) = certificate {
        use base64::Engine;
        updated["status"]["certificate"] =
            json!(base64::engine::general_purpose::STANDARD.encode(certificate));
    }
    registry
        .update(target, updated, &write_options(&user))
        .await
        .map(|_| ())
}

/// What the controller does with one request.
pub struct Controller {
    registry: Arc<Registry>,
    authority: Arc<Authority>,
    certificates: Certificates,
}

impl Controller {
    pub fn new(
        registry: Arc<Registry>,
        authority: Arc<Authority>,
        certificates: Certificates,
    ) -> Self {
        Self {
            registry,
            authority,
            certificates,
        }
    }

    fn target(&self, name: &str, subresource: Subresource) -> Option<Target> {
        let resource = self.registry.catalog().snapshot().get(
            CERTIFICATES_GROUP,
            "v1",
            "certificatesigningrequests",
        )?;
        let mut target = Target::object(resource, None, name.to_owned());
        target.subresource = Some(subresource);
        Some(target)
    }

    /// Approves, denies or signs one request, as its state asks.
    pub async fn reconcile(&self, object: &Value) {
        let Some(name) = object["metadata"]["name"].as_str() else {
            return;
        };
        let done = |t: &str| matches!(t, "Denied" | "Failed");
        if conditions(object).any(done)
            || object["status"]["certificate"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        {
            return;
        }
        let Some(der) = request_der(object) else {
            return;
        };
        let spec = &object["spec"];
        let strings = |field: &str| -> Vec<&str> {
            spec[field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect()
        };
        let (common_name, organizations) = request_subject(&der).unwrap_or_default();
        let request = Request {
            name,
            common_name,
            organizations,
            requester: spec["username"].as_str().unwrap_or_default(),
            requester_groups: strings("groups"),
            signer: spec["signerName"].as_str().unwrap_or_default(),
            usages: strings("usages"),
            expiration_seconds: spec["expirationSeconds"].as_i64(),
            object,
        };
        let approved = conditions(object).any(|t| t == "Approved");
        let outcome = if approved {
            self.sign(&request, &der).await
        } else {
            self.approve(&request).await
        };
        if let Err(error) = outcome
            && error.code != 409
            && error.code != 404
        {
            tracing::warn!(request = name, %error, "cannot update a certificate signing request");
        }
    }

    async fn approve(&self, request: &Request<'_>) -> Result<(), ApiError> {
        for approver in &self.certificates.approvers {
            let (kind, reason, message) = match approver.decide(&self.registry, request).await {
                Verdict::Wait => continue,
                Verdict::Approve { reason, message } => ("Approved", reason, message),
                Verdict::Deny { reason, message } => ("Denied", reason, message),
            };
            let Some(target) = self.target(request.name, Subresource::Approval) else {
                return Ok(());
            };
            add_condition(
                &self.registry,
                &target,
                request.object,
                condition(kind, &reason, &message),
                None,
            )
            .await?;
            let event_type = if kind == "Approved" {
                "Normal"
            } else {
                "Warning"
            };
            events::record(
                &self.registry,
                request.object,
                event_type,
                &reason,
                &message,
            )
            .await;
            return Ok(());
        }
        Ok(())
    }

    async fn sign(&self, request: &Request<'_>, der: &[u8]) -> Result<(), ApiError> {
        let Some(signer) = self
            .certificates
            .signers
            .iter()
            .find(|s| s.name() == request.signer)
        else {
            // Another signer's request: not ours to touch.
            return Ok(());
        };
        let Some(target) = self.target(request.name, Subresource::Status) else {
            return Ok(());
        };
        let checked = signer.check(request).and_then(|lifetime| {
            let groups: Vec<&str> = request.organizations.iter().map(String::as_str).collect();
            self.authority
                .sign_request(
                    der,
                    &request.common_name,
                    &groups,
                    time::Duration::seconds(lifetime.as_secs() as i64),
                )
                .map_err(|e| format!("cannot sign: {e}"))
        });
        match checked {
            Ok(certificate) => {
                add_condition(
                    &self.registry,
                    &target,
                    request.object,
                    Value::Null,
                    Some(certificate),
                )
                .await?;
                events::record(
                    &self.registry,
                    request.object,
                    "Normal",
                    "Issued",
                    &format!("signed by {} for {:?}", request.signer, request.common_name),
                )
                .await;
            }
            Err(why) => {
                add_condition(
                    &self.registry,
                    &target,
                    request.object,
                    condition("Failed", "SignerValidationFailure", &why),
                    None,
                )
                .await?;
                events::record(
                    &self.registry,
                    request.object,
                    "Warning",
                    "SigningFailed",
                    &why,
                )
                .await;
            }
        }
        Ok(())
    }

    async fn reconcile_all(&self, prefix: &str) {
        let storage = self.registry.storage();
        let mut scan = fleetdb_store::Scan::new(&**storage.store(), prefix.to_owned())
            .page_size(crate::storage::STORE_PAGE);
        while let Ok(Some(page)) = scan.next_page().await {
            for kv in page.iter() {
                if let Ok(object) = codec::decode(kv) {
                    self.reconcile(&object).await;
                }
            }
        }
    }
}

/// Runs until the server shuts down.
pub fn spawn(controller: Controller) {
    let Some(prefix) = controller
        .target("x", Subresource::Status)
        .map(|t| t.resource.key_prefix(None))
    else {
        return;
    };
    let storage = controller.registry.storage().clone();
    let controller = Arc::new(controller);
    let (all, one) = (controller.clone(), controller);
    let resync_prefix = prefix.clone();
    super::follow(
        storage,
        prefix,
        move || {
            let (controller, prefix) = (all.clone(), resync_prefix.clone());
            async move { controller.reconcile_all(&prefix).await }
        },
        move |event| {
            let controller = one.clone();
            async move {
                if event.kind == EventKind::Put
                    && let Ok(object) = codec::decode(&event.kv)
                {
                    controller.reconcile(&object).await;
                }
            }
        },
    );
}
