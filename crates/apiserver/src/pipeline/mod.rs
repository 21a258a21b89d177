//! The request pipeline, between the http layer and the registry: who is asking
//! ([`authn`]), whether they may ([`authz`]), and admission — the last word on every write,
//! which the registry calls through [`crate::registry::Admission`] just before storing.
//!
//! Today every authenticated identity is allowed everything ([`authz::AllowAuthenticated`])
//! and admission admits everything; RBAC and the fleet's admission rules plug in here.

pub mod authn;
pub mod authz;

use std::sync::Arc;

use crate::api::{ApiError, Identity};
use crate::registry::{Admission, AdmitAll};
pub use authz::{AllowAuthenticated, Attributes, Authorizer, Decision};

/// The stages every request passes.
#[derive(Clone)]
pub struct Pipeline {
    authorizer: Arc<dyn Authorizer>,
    admission: Arc<dyn Admission>,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self::new(Arc::new(AllowAuthenticated), Arc::new(AdmitAll))
    }
}

impl Pipeline {
    pub fn new(authorizer: Arc<dyn Authorizer>, admission: Arc<dyn Admission>) -> Self {
        Self {
            authorizer,
            admission,
        }
    }

    /// Authentication and authorization of one request: `401` for anonymous users, `403`
    /// with Kubernetes' wording when the authorizer does not allow it.
    pub fn authorize(&self, user: &Identity, attributes: &Attributes) -> Result<(), ApiError> {
        if user.is_anonymous() {
            return Err(ApiError::unauthorized());
        }
        match self.authorizer.authorize(user, attributes) {
            Decision::Allow => Ok(()),
            Decision::Deny(reason) | Decision::NoOpinion(reason) => Err(ApiError::forbidden(
                attributes.forbidden_message(user, &reason),
            )),
        }
    }

    /// The admission chain writes go through.
    pub fn admission(&self) -> &dyn Admission {
        &*self.admission
    }
}
