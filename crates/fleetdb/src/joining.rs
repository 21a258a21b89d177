//! How hosts join: bootstrap tokens (`fleetdb token`), the host signer `fleetdb.io/host`
//! (certificates for `fleetdb:host:<name>` in `fleetdb:hosts`, short-lived) and its approval
//! policy — a token in the auto-approve group, or the host itself renewing its certificate;
//! anything else waits for `kubectl certificate approve`.

use std::time::Duration;

use async_trait::async_trait;
use fleetdb_apiserver::controllers::certificates::{
    Approver, Request, Signer, Verdict, client_usages, requested_lifetime,
};
use fleetdb_apiserver::pipeline::authn::BOOTSTRAPPERS_GROUP;
use fleetdb_apiserver::registry::{Registry, Target};

use crate::security::{HOST_PREFIX, HOSTS_GROUP};

/// The signer of host agents' certificates.
pub const HOST_SIGNER: &str = "fleetdb.io/host";
/// Tokens made with `fleetdb token create --auto-approve` put their agents in this group;
/// their host certificate requests are approved at once.
pub const AUTO_APPROVE_GROUP: &str = "system:bootstrappers:fleetdb:auto-approve";
/// How long a host certificate lasts unless the server is told otherwise
/// (`fleetdb serve --host-certificate-lifetime`).
pub const DEFAULT_HOST_CERTIFICATE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// The Host a host certificate's common name names, if it is one.
pub fn host_of(common_name: &str) -> Option<&str> {
    common_name
        .strip_prefix(HOST_PREFIX)
        .filter(|host| fleetdb_machinery::validation::dns1123_subdomain(host).is_empty())
}

/// Signs requests for `CN=fleetdb:host:<name>, O=fleetdb:hosts` filed by a bootstrap token,
/// by the host itself (renewal) or by an administrator, for at most `lifetime`.
pub struct HostSigner {
    pub lifetime: Duration,
}

impl Signer for HostSigner {
    fn name(&self) -> &str {
        HOST_SIGNER
    }

    fn check(&self, request: &Request<'_>) -> Result<Duration, String> {
        let Some(host) = host_of(&request.common_name) else {
            return Err(format!(
                "the subject's common name must be {HOST_PREFIX}<host name>; it is {:?}",
                request.common_name
            ));
        };
        if request.organizations != [HOSTS_GROUP] {
            return Err(format!(
                "the subject's organization must be {HOSTS_GROUP} alone; it is {:?}",
                request.organizations
            ));
        }
        let requested_by = |group: &str| request.requester_groups.contains(&group);
        let itself = request.requester == request.common_name;
        if !(itself
            || requested_by(BOOTSTRAPPERS_GROUP)
            || requested_by(fleetdb_apiserver::api::identity::MASTERS_GROUP))
        {
            return Err(format!(
                "a certificate for host {host:?} is requested by a bootstrap token, by the host itself or by an administrator, not by {:?}",
                request.requester
            ));
        }
        client_usages(request)?;
        Ok(requested_lifetime(request, self.lifetime))
    }
}

/// Approves host certificate requests from auto-approve tokens and renewals by the host
/// itself; leaves the others to a person.
pub struct HostApprover;

/// The provider id a fetcher recorded for `host`, if the Host exists and has one.
async fn recorded_provider_id(registry: &Registry, host: &str) -> Option<(String, String)> {
    let resource = registry
        .catalog()
        .snapshot()
        .get(fleetdb_fleet::GROUP, "v1alpha1", "hosts")?;
    let object = registry
        .get(&Target::object(resource, None, host.to_owned()))
        .await
        .ok()?;
    let provider = &object["status"]["provider"];
    Some((
        provider["id"].as_str()?.to_owned(),
        object["metadata"]["labels"][fleetdb_fleet::labels::SOURCE]
            .as_str()
            .unwrap_or("a fetcher")
            .to_owned(),
    ))
}

#[async_trait]
impl Approver for HostApprover {
    async fn decide(&self, registry: &Registry, request: &Request<'_>) -> Verdict {
        let Some(host) = host_of(&request.common_name) else {
            return Verdict::Wait;
        };
        if request.signer != HOST_SIGNER {
            return Verdict::Wait;
        }
        if request.requester == request.common_name {
            return Verdict::Approve {
                reason: "AutoApproved".into(),
                message: format!("{} renews its own certificate", request.requester),
            };
        }
        if request.requester_groups.contains(&AUTO_APPROVE_GROUP) {
            return Verdict::Approve {
                reason: "AutoApproved".into(),
                message: format!(
                    "requested with bootstrap token {} of group {AUTO_APPROVE_GROUP}",
                    request
                        .requester
                        .strip_prefix(fleetdb_apiserver::pipeline::authn::BOOTSTRAP_USER_PREFIX)
                        .unwrap_or(request.requester)
                ),
            };
        }
        // Approval against inventory facts: a Host of that name exists and the id the
        // agent read on its machine is the one its source recorded.
        let claims: Vec<&str> = request.object["metadata"]["annotations"]
            [crate::agent::identity::PROVIDER_IDS_ANNOTATION]
            .as_str()
            .unwrap_or_default()
            .split(',')
            .filter(|c| !c.is_empty())
            .collect();
        if request.requester_groups.contains(&BOOTSTRAPPERS_GROUP)
            && !claims.is_empty()
            && let Some((recorded, source)) = recorded_provider_id(registry, host).await
            && claims.contains(&recorded.as_str())
        {
            return Verdict::Approve {
                reason: "MatchesInventory".into(),
                message: format!(
                    "the agent's provider id {recorded} is the one {source} recorded for host {host}"
                ),
            };
        }
        Verdict::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request<'a>(
        object: &'a serde_json::Value,
        cn: &str,
        orgs: &[&str],
        by: &'a str,
        groups: Vec<&'a str>,
    ) -> Request<'a> {
        Request {
            name: "csr-1",
            common_name: cn.into(),
            organizations: orgs.iter().map(|o| o.to_string()).collect(),
            requester: by,
            requester_groups: groups,
            signer: HOST_SIGNER,
            usages: vec!["client auth", "digital signature"],
            expiration_seconds: None,
            object,
        }
    }

    #[test]
    fn the_host_signer_certifies_hosts_only_for_those_who_may_ask() {
        let object = json!({});
        let signer = HostSigner {
            lifetime: DEFAULT_HOST_CERTIFICATE_LIFETIME,
        };
        let token = request(
            &object,
            "fleetdb:host:web-1",
            &[HOSTS_GROUP],
            "system:bootstrap:abcdef",
            vec![BOOTSTRAPPERS_GROUP],
        );
        assert_eq!(signer.check(&token), Ok(DEFAULT_HOST_CERTIFICATE_LIFETIME));
        let renewal = request(
            &object,
            "fleetdb:host:web-1",
            &[HOSTS_GROUP],
            "fleetdb:host:web-1",
            vec![HOSTS_GROUP],
        );
        assert!(signer.check(&renewal).is_ok());
        let other_host = request(
            &object,
            "fleetdb:host:web-2",
            &[HOSTS_GROUP],
            "fleetdb:host:web-1",
            vec![HOSTS_GROUP],
        );
        assert!(signer.check(&other_host).is_err());
        let masters = request(
            &object,
            "fleetdb:host:web-1",
            &[HOSTS_GROUP, "system:masters"],
            "system:bootstrap:abcdef",
            vec![BOOTSTRAPPERS_GROUP],
        );
        assert!(signer.check(&masters).unwrap_err().contains("organization"));
        let not_a_host = request(
            &object,
            "alice",
            &[HOSTS_GROUP],
            "system:bootstrap:abcdef",
            vec![BOOTSTRAPPERS_GROUP],
        );
        assert!(signer.check(&not_a_host).is_err());
    }
}
