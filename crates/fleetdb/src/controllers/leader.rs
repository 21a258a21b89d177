//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does
//! it: the holder renews the Lease every [`RENEW_INTERVAL`]; another replica, looking every
//! [`RETRY_PERIOD`], takes it over only once it has not been renewed for [`LEASE_DURATION`];
//! a holder that could not renew for [`RENEW_DEADLINE`] stops acting (before anyone else may
//! start). Every write is conditional on the Lease's resourceVersion, so two replicas never
//! both win a round.
//!
//! The periods are client-go's doubled (30 s, 20 s, 5 s) and the holder renews at a third of
//! the duration rather than every retry period: each renewal is a revision the store keeps
//! for the history's retention (30 days by default), 8,640 a day this way.
//!
//! Expiry is judged by when this replica saw the Lease change (its local clock only), not by
//! the `renewTime` written by another machine, so clock skew between replicas does no harm.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

use super::MANAGER;
use crate::security::HEARTBEAT_NAMESPACE;

/// The Lease the controllers' leader holds, in [`HEARTBEAT_NAMESPACE`].
pub const LEASE_NAME: &str = "fleetdb-controllers";
/// How long a Lease not renewed stays the holder's.
pub const LEASE_DURATION: Duration = Duration::from_secs(30);
/// How long the holder keeps acting without a successful renewal.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(20);
/// How often the holder renews.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// How often the others look, and the holder retries a failed renewal.
pub const RETRY_PERIOD: Duration = Duration::from_secs(5);

/// Held leadership: the Lease as last written by this replica.
pub struct Leading {
    lease: Lease,
    renewed: Instant,
}

pub struct Elector {
    leases: Api<Lease>,
    identity: String,
}

fn micro_time() -> Option<MicroTime> {
    serde_json::from_value(serde_json::json!(crate::micro_time())).ok()
}

fn params() -> PostParams {
    PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    }
}

impl Elector {
    pub fn new(client: kube::Client, identity: &str) -> Self {
        Self {
            leases: Api::namespaced(client, HEARTBEAT_NAMESPACE),
            identity: identity.to_owned(),
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) -> Leading {
        // The Lease as last seen, and when it last changed (by this replica's clock).
        let mut seen: Option<(String, Instant)> = None;
        loop {
            match self.try_acquire(&mut seen).await {
                Ok(Some(leading)) => return leading,
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!(%error, "leader election: cannot read or write the Lease")
                }
            }
            tokio::time::sleep(RETRY_PERIOD).await;
        }
    }

    async fn try_acquire(
        &self,
        seen: &mut Option<(String, Instant)>,
    ) -> Result<Option<Leading>, kube::Error> {
        let spec = |transitions: i32| LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: micro_time(),
            renew_time: micro_time(),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        };
        let Some(mut lease) = self.leases.get_opt(LEASE_NAME).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    namespace: Some(HEARTBEAT_NAMESPACE.into()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec(0)),
            };
            return match self.leases.create(&params(), &lease).await {
                Ok(lease) => Ok(Some(Leading {
                    lease,
                    renewed: Instant::now(),
                })),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
                Err(error) => Err(error),
            };
        };
        let current = lease.spec.clone().unwrap_or_default();
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let ours = current.holder_identity.as_deref() == Some(self.identity.as_str());
        let held = current
            .holder_identity
            .as_deref()
            .is_some_and(|h| !h.is_empty());
        let expired = match seen {
            Some((last, since)) if *last == version => {
                let duration = current
                    .lease_duration_seconds
                    .map_or(LEASE_DURATION, |s| Duration::from_secs(s.max(1) as u64));
                since.elapsed() >= duration
            }
            _ => {
                *seen = Some((version, Instant::now()));
                false
            }
        };
        if held && !ours && !expired {
            return Ok(None);
        }
        let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!ours);
        lease.spec = Some(spec(transitions));
        match self.leases.replace(LEASE_NAME, &params(), &lease).await {
            Ok(lease) => Ok(Some(Leading {
                lease,
                renewed: Instant::now(),
            })),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Gives the Lease up if this replica holds it (on shutdown), so another takes over at
    /// its next look instead of after the Lease's duration, as client-go's
    /// `ReleaseOnCancel` does.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.leases.get_opt(LEASE_NAME).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = micro_time();
        match self.leases.replace(LEASE_NAME, &params(), &lease).await {
            Ok(_) => {
                tracing::info!(identity = %self.identity, "released the controllers' leadership")
            }
            Err(error) => tracing::warn!(%error, "cannot release the controllers' Lease"),
        }
    }

    /// Renews the Lease until leadership is lost (another replica took it, or no renewal
    /// succeeded for [`RENEW_DEADLINE`]), then returns.
    pub async fn hold(&self, mut leading: Leading) {
        let mut pause = RENEW_INTERVAL;
        loop {
            tokio::time::sleep(pause).await;
            pause = RETRY_PERIOD;
            let mut lease = leading.lease.clone();
            if let Some(spec) = lease.spec.as_mut() {
                spec.renew_time = micro_time();
            }
            match self.leases.replace(LEASE_NAME, &params(), &lease).await {
                Ok(lease) => {
                    leading = Leading {
                        lease,
                        renewed: Instant::now(),
                    };
                    pause = RENEW_INTERVAL;
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    // Someone wrote the Lease: still ours only if it still names us.
                    match self.leases.get_opt(LEASE_NAME).await {
                        Ok(Some(current))
                            if current
                                .spec
                                .as_ref()
                                .and_then(|s| s.holder_identity.as_deref())
                                == Some(self.identity.as_str()) =>
                        {
                            leading.lease = current;
                        }
                        Ok(_) => return,
                        Err(error) => {
                            tracing::debug!(%error, "leader election: cannot read the Lease")
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "leader election: cannot renew the Lease"),
            }
            if leading.renewed.elapsed() >= RENEW_DEADLINE {
                return;
            }
        }
    }
}
