//! The security state every request consults, kept in memory: the RBAC policy evaluated
//! from the stored roles and bindings, and the certificate revocations. Reloaded whole from
//! storage after the registry's own writes of those kinds (so the next request sees them)
//! and, through the policy controller, whenever another process sharing the store writes
//! them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use fleetdb_machinery::rbac::Policy;
use fleetdb_store::Scan;
use serde_json::Value;

use crate::api::catalog::{certificate_revocations, rbac_resources};
use crate::api::identity::Credential;
use crate::storage::{STORE_PAGE, Storage, codec};

/// Certificates the server refuses.
#[derive(Debug, Default)]
pub struct Revocations {
    /// User → every certificate issued to them at or before this time (Unix seconds).
    users: HashMap<String, i64>,
    /// Serial numbers (as `authn::serial_hex` writes them).
    serials: HashSet<String>,
}

impl Revocations {
    /// Reads stored CertificateRevocations (unreadable ones are skipped).
    pub fn build(objects: &[Value]) -> Self {
        let mut revocations = Self::default();
        for object in objects {
            let spec = &object["spec"];
            if let Some(serial) = spec["serial"].as_str() {
                revocations.serials.insert(serial.to_owned());
            }
            if let (Some(user), Some(at)) = (spec["user"].as_str(), spec["revokedAt"].as_str())
                && let Ok(at) =
                    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            {
                let entry = revocations.users.entry(user.to_owned()).or_insert(i64::MIN);
                *entry = (*entry).max(at.unix_timestamp());
            }
        }
        revocations
    }

    /// Whether a certificate for `user` is revoked.
    pub fn refuses(&self, user: &str, credential: &Credential) -> bool {
        self.serials.contains(&credential.serial)
            || self
                .users
                .get(user)
                .is_some_and(|at| credential.issued_at <= *at)
    }
}

/// The policy and revocations in force.
#[derive(Default)]
pub struct PolicyCache {
    policy: RwLock<Arc<Policy>>,
    revocations: RwLock<Arc<Revocations>>,
}

async fn read_all(storage: &Storage, prefix: String) -> Result<Vec<Value>, String> {
    let mut objects = Vec::new();
    let mut scan = Scan::new(&**storage.store(), prefix).page_size(STORE_PAGE);
    loop {
        match scan.next_page().await {
            Ok(Some(page)) => objects.extend(page.iter().filter_map(|kv| codec::decode(kv).ok())),
            Ok(None) => return Ok(objects),
            Err(error) => return Err(error.to_string()),
        }
    }
}

impl PolicyCache {
    /// The policy now in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The revocations now in force.
    pub fn revocations(&self) -> Arc<Revocations> {
        self.revocations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads every stored role and binding and evaluates them anew. On a read failure the
    /// policy in force stays (and the failure is logged).
    pub async fn reload_policy(&self, storage: &Storage) {
        let mut kinds = Vec::new();
        for resource in rbac_resources() {
            match read_all(storage, resource.key_prefix(None)).await {
                Ok(objects) => kinds.push(objects),
                Err(error) => {
                    tracing::error!(%error, "cannot read the RBAC policy; the last one stays in force");
                    return;
                }
            }
        }
        // rbac_resources() order: roles, clusterroles, rolebindings, clusterrolebindings.
        let policy = Policy::build(&kinds[1], &kinds[0], &kinds[3], &kinds[2]);
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }

    /// Reads every stored revocation anew (failures logged, the last set stays).
    pub async fn reload_revocations(&self, storage: &Storage) {
        match read_all(storage, certificate_revocations().key_prefix(None)).await {
            Ok(objects) => {
                *self.revocations.write().unwrap_or_else(|e| e.into_inner()) =
                    Arc::new(Revocations::build(&objects));
            }
            Err(error) => {
                tracing::error!(%error, "cannot read the certificate revocations; the last ones stay in force")
            }
        }
    }
}
