//! Roles, ClusterRoles, RoleBindings, ClusterRoleBindings and CertificateRevocations: their
//! validation (kube-apiserver's rules and wording for the RBAC kinds), and the policy cache
//! reloaded after every write so that the next request is authorized by the new policy.

use async_trait::async_trait;
use fleetdb_machinery::field::FieldError;
use fleetdb_machinery::rbac::validation;
use serde_json::{Value, json};

use crate::api::Resource;
use crate::api::identity::normalize_serial;
use crate::registry::strategy::{Strategy, StrategyContext};
use crate::registry::write::now_timestamp;

/// Which RBAC kind a strategy is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RbacKind {
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
}

/// The strategy of one RBAC kind.
pub struct RbacStrategy(RbacKind);

pub static ROLES: RbacStrategy = RbacStrategy(RbacKind::Role);
pub static CLUSTER_ROLES: RbacStrategy = RbacStrategy(RbacKind::ClusterRole);
pub static ROLE_BINDINGS: RbacStrategy = RbacStrategy(RbacKind::RoleBinding);
pub static CLUSTER_ROLE_BINDINGS: RbacStrategy = RbacStrategy(RbacKind::ClusterRoleBinding);

impl RbacStrategy {
    fn check(&self, object: &mut Value) -> Vec<FieldError> {
        match self.0 {
            RbacKind::Role => validation::role(object),
            RbacKind::ClusterRole => validation::cluster_role(object),
            RbacKind::RoleBinding | RbacKind::ClusterRoleBinding => {
                validation::default_subjects(object);
                validation::binding(object, self.0 == RbacKind::ClusterRoleBinding)
            }
        }
    }
}

#[async_trait]
impl Strategy for RbacStrategy {
    fn name_problems(&self, name: &str) -> Vec<String> {
        validation::name_problems(name)
    }

    fn tracks_generation(&self) -> bool {
        false
    }

    fn prepare_create(&self, _: &Resource, object: &mut Value) -> Vec<FieldError> {
        self.check(object)
    }

    fn prepare_update(&self, _: &Resource, object: &mut Value, old: &Value) -> Vec<FieldError> {
        let mut causes = self.check(object);
        if matches!(self.0, RbacKind::RoleBinding | RbacKind::ClusterRoleBinding)
            && let Some(change) = validation::role_ref_change(object, old)
        {
            causes.push(change);
        }
        causes
    }

    async fn after_write(&self, context: &StrategyContext<'_>) {
        context.policy.reload_policy(context.storage).await;
    }
}

/// The strategy of CertificateRevocations: one user (every certificate issued to them until
/// `revokedAt`, which defaults to now) or one serial number; never changed once written
/// (delete it to lift it).
pub struct RevocationStrategy;

fn revocation_problems(object: &mut Value) -> Vec<FieldError> {
    let mut causes = Vec::new();
    if !object["spec"].is_object() {
        causes.push(FieldError::required("spec", ""));
        return causes;
    }
    let spec = &mut object["spec"];
    let user = spec["user"]
        .as_str()
        .filter(|u| !u.is_empty())
        .map(str::to_owned);
    let serial = spec["serial"].as_str().map(str::to_owned);
    match (&user, &serial) {
        (None, None) => causes.push(FieldError::required(
            "spec",
            "one of spec.user or spec.serial is required",
        )),
        (Some(_), Some(_)) => causes.push(FieldError::forbidden(
            "spec.serial",
            "a revocation names a user or a serial number, not both",
        )),
        _ => {}
    }
    if let Some(serial) = serial {
        match normalize_serial(&serial) {
            Some(normal) => spec["serial"] = json!(normal),
            None => causes.push(FieldError::invalid_value(
                "spec.serial",
                &json!(serial),
                "must be a certificate serial number in hex, e.g. 3f:a2:... or 3fa2...",
            )),
        }
    }
    if user.is_some() {
        match &spec["revokedAt"] {
            Value::Null => spec["revokedAt"] = json!(now_timestamp()),
            Value::String(at)
                if time::OffsetDateTime::parse(
                    at,
                    &time::format_description::well_known::Rfc3339,
                )
                .is_ok() => {}
            other => causes.push(FieldError::invalid_value(
                "spec.revokedAt",
                other,
                "must be a time in RFC 3339 form, e.g. 2026-11-30T18:00:00Z",
            )),
        }
    }
    for (field, value) in spec.as_object().into_iter().flatten() {
        if !["user", "serial", "revokedAt", "reason"].contains(&field.as_str()) {
            causes.push(FieldError::new(
                fleetdb_machinery::field::REASON_NOT_SUPPORTED,
                format!("spec.{field}"),
                format!(
                    "Unsupported value: {}: unknown field",
                    fleetdb_machinery::gofmt::value(value)
                ),
            ));
        }
    }
    causes
}

#[async_trait]
impl Strategy for RevocationStrategy {
    fn tracks_generation(&self) -> bool {
        false
    }

    fn prepare_create(&self, _: &Resource, object: &mut Value) -> Vec<FieldError> {
        revocation_problems(object)
    }

    fn prepare_update(&self, _: &Resource, object: &mut Value, old: &Value) -> Vec<FieldError> {
        if object["spec"] != old["spec"] {
            return vec![FieldError::invalid(
                "spec",
                "Invalid value: field is immutable: delete the revocation to lift it",
            )];
        }
        Vec::new()
    }

    async fn after_write(&self, context: &StrategyContext<'_>) {
        context.policy.reload_revocations(context.storage).await;
    }
}

/// The reviews never reach the registry (the pipeline answers them); this strategy only
/// says they are built-in kinds (bodies may come as protobuf).
pub struct ReviewStrategy;

impl Strategy for ReviewStrategy {}
