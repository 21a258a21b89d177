//! The request pipeline, between the http layer and the registry: who is asking
//! ([`authn`], revocation, [`impersonation`]), whether they may ([`authz`]: RBAC), and
//! [`admission`] — the last word on every write, which the registry calls through
//! [`crate::registry::Admission`] just before storing. The reviews ([`reviews`]) answer
//! questions about the same decisions.

pub mod admission;
pub mod authn;
pub mod authz;
pub mod certificates;
pub mod impersonation;
pub mod reviews;

use std::sync::Arc;

use crate::api::{ApiError, Identity};
use crate::registry::Admission;
use crate::registry::policy::PolicyCache;
pub use authz::{Attributes, Authorizer, Decision, RbacAuthorizer};
pub use impersonation::Impersonation;

/// The stages every request passes.
#[derive(Clone)]
pub struct Pipeline {
    authorizer: Arc<dyn Authorizer>,
    admission: Arc<dyn Admission>,
    policy: Arc<PolicyCache>,
}

impl Pipeline {
    /// RBAC on `policy`, RBAC's escalation prevention, the certificate requests' rules,
    /// then the program's admission `plugins`.
    pub fn new(policy: Arc<PolicyCache>, plugins: Vec<Arc<dyn Admission>>) -> Self {
        let authorizer: Arc<dyn Authorizer> = Arc::new(RbacAuthorizer::new(policy.clone()));
        let mut chain: Vec<Arc<dyn Admission>> = vec![
            Arc::new(admission::EscalationPrevention::new(
                policy.clone(),
                authorizer.clone(),
            )),
            Arc::new(certificates::CertificateRequests::new(authorizer.clone())),
        ];
        chain.extend(plugins);
        Self {
            authorizer,
            admission: Arc::new(admission::Chain::new(chain)),
            policy,
        }
    }

    /// Authentication of one request: `401` for anonymous users, and for certificates that
    /// were revoked or have expired since the connection's handshake.
    pub fn authenticate(&self, user: &Identity) -> Result<(), ApiError> {
        if user.is_anonymous() {
            return Err(ApiError::unauthorized());
        }
        if let Some(credential) = &user.credential {
            if self.policy.revocations().refuses(&user.user, credential) {
                tracing::debug!(user = %user.user, serial = %credential.serial, "refused a revoked certificate");
                return Err(ApiError::unauthorized());
            }
            if credential.expires_at < time::OffsetDateTime::now_utc().unix_timestamp() {
                tracing::debug!(user = %user.user, serial = %credential.serial, "refused an expired certificate");
                return Err(ApiError::unauthorized());
            }
        }
        Ok(())
    }

    /// The identity a request acts as: the requester's own, or the one it impersonates
    /// when allowed.
    pub fn impersonate(
        &self,
        requester: &Identity,
        asked: &Impersonation,
    ) -> Result<Option<Identity>, ApiError> {
        if asked.is_empty() {
            return Ok(None);
        }
        impersonation::impersonate(&*self.authorizer, requester, asked).map(Some)
    }

    /// The authorizer's decision, with its reason.
    pub fn decide(&self, user: &Identity, attributes: &Attributes) -> Decision {
        self.authorizer.authorize(user, attributes)
    }

    /// Authorization of one request: `403` with Kubernetes' wording unless allowed; the
    /// decision's reason when allowed.
    pub fn authorize(&self, user: &Identity, attributes: &Attributes) -> Result<String, ApiError> {
        match self.decide(user, attributes) {
            Decision::Allow(reason) => Ok(reason),
            Decision::Deny(reason) | Decision::NoOpinion(reason) => {
                Err(attributes.forbidden(user, &reason))
            }
        }
    }

    /// The admission chain writes go through.
    pub fn admission(&self) -> &dyn Admission {
        &*self.admission
    }

    /// The policy and revocations in force.
    pub fn policy(&self) -> &Arc<PolicyCache> {
        &self.policy
    }
}
