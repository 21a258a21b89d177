//! Events expire, as kube-apiserver's do after `--event-ttl` (one hour by default): an Event
//! goes once it was last seen that long ago, so the store does not grow with every action
//! the controllers and agents ever recorded.
//!
//! kube-apiserver attaches an etcd lease to each Event, renewed by every write; the embedded
//! store has no leases, so here a sweep reads the Events of both APIs (`v1` and
//! `events.k8s.io/v1`, stored apart) every [`sweep_interval`] and deletes, through the
//! registry (so history records it), those last seen more than the TTL ago. Last seen is
//! the latest of the server's `metadata.creationTimestamp` and the times the recorder wrote
//! (`lastTimestamp`, `deprecatedLastTimestamp`, `eventTime`, `series.lastObservedTime`),
//! the recorder's only when they are not ahead of the server's clock by more than
//! [`MAX_CLOCK_SKEW`]: an Event lives at least the TTL from its creation (a recorder sending
//! a backlog does not see it vanish), a recorder that records it again (as client-go does,
//! bumping `count` and the last time) keeps it, and a time in the far future keeps nothing
//! forever. Unlike kube-apiserver, a write that changes none of those times does not renew
//! it. Each delete carries the resourceVersion the sweep read, so an Event recorded again
//! meanwhile stays. Several servers sharing one etcd may all sweep: the second delete of an
//! Event finds it gone.

use std::sync::Arc;
use std::time::Duration;

use fleetdb_store::Scan;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::api::Identity;
use crate::api::catalog::EVENTS_GROUP;
use crate::registry::{AdmitAll, DeleteOptions, Registry, Target};
use crate::storage::STORE_PAGE;

/// kube-apiserver's default `--event-ttl`.
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(3600);
/// Longest pause between sweeps.
pub const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Shortest pause between sweeps (a very short TTL does not make the server sweep in a loop).
pub const MIN_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Most Events one sweep deletes; the rest go in the next ones, so a backlog (a server
/// that was down for a day) is worked off without one long burst of writes.
pub const MAX_EXPIRED_PER_SWEEP: usize = 10_000;

/// How far ahead of the server's clock a recorder's time may be and still count (clocks
/// of hosts drift); a later time is ignored.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The identity the deletions are recorded under.
pub const USER: &str = "system:event-ttl";

/// How often Events with time-to-live `ttl` are swept: a quarter of it, between
/// [`MIN_SWEEP_INTERVAL`] and [`MAX_SWEEP_INTERVAL`], so an Event outlives its TTL by at
/// most that.
pub fn sweep_interval(ttl: Duration) -> Duration {
    (ttl / 4).clamp(MIN_SWEEP_INTERVAL, MAX_SWEEP_INTERVAL)
}

/// Sweeps expired Events until the server shuts down.
pub fn spawn(registry: Arc<Registry>, ttl: Duration) {
    tokio::spawn(async move {
        let storage = registry.storage().clone();
        let mut shutdown = storage.shutdown_signal();
        let every = sweep_interval(ttl);
        loop {
            if storage.is_shutting_down() {
                return;
            }
            let deleted = sweep(&registry, ttl).await;
            if deleted > 0 {
                tracing::debug!(deleted, "expired events deleted");
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    });
}

/// The times of an Event that say when it was last seen (either API's fields).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Seen {
    metadata: SeenMetadata,
    last_timestamp: Option<String>,
    deprecated_last_timestamp: Option<String>,
    event_time: Option<String>,
    series: Option<SeenSeries>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SeenMetadata {
    name: String,
    namespace: Option<String>,
    creation_timestamp: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SeenSeries {
    last_observed_time: Option<String>,
}

impl Seen {
    /// When the Event was last seen, as of `now` (see the module documentation); `None`
    /// when it has no time at all.
    fn last(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let parse = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        };
        let latest_credible = now + MAX_CLOCK_SKEW;
        let series = self
            .series
            .as_ref()
            .and_then(|s| parse(&s.last_observed_time));
        [
            parse(&self.last_timestamp),
            parse(&self.deprecated_last_timestamp),
            parse(&self.event_time),
            series,
        ]
        .into_iter()
        .flatten()
        .filter(|t| *t <= latest_credible)
        .chain(parse(&self.metadata.creation_timestamp))
        .max()
    }
}

/// One sweep over both Event APIs; returns how many Events it deleted.
pub async fn sweep(registry: &Registry, ttl: Duration) -> usize {
    let snapshot = registry.catalog().snapshot();
    let user = Identity::system(USER);
    let Ok(ttl) = time::Duration::try_from(ttl) else {
        return 0;
    };
    let now = OffsetDateTime::now_utc();
    let cutoff = now - ttl;
    let mut deleted = 0;
    for group in ["", EVENTS_GROUP] {
        let Some(resource) = snapshot.get(group, "v1", "events") else {
            continue;
        };
        let prefix = resource.key_prefix(None);
        let mut scan = Scan::new(&**registry.storage().store(), prefix).page_size(STORE_PAGE);
        loop {
            let page = match scan.next_page().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "cannot read events to expire them");
                    break;
                }
            };
            for kv in page.iter() {
                if deleted >= MAX_EXPIRED_PER_SWEEP {
                    return deleted;
                }
                // An Event that cannot be read, or has no time, is left alone.
                let Ok(seen) = serde_json::from_slice::<Seen>(&kv.value) else {
                    continue;
                };
                if seen.last(now).is_none_or(|last| last >= cutoff) {
                    continue;
                }
                let target = Target::object(
                    resource.clone(),
                    seen.metadata.namespace.clone(),
                    seen.metadata.name.clone(),
                );
                let options = DeleteOptions {
                    resource_version: Some(kv.mod_revision.to_string()),
                    ..Default::default()
                };
                // Gone or recorded again since it was read: either way it stays as it is.
                if registry
                    .delete(&target, &options, &user, &AdmitAll)
                    .await
                    .is_ok()
                {
                    deleted += 1;
                }
            }
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_seen_is_the_latest_credible_time_and_never_before_creation() {
        let at = |t: &str| OffsetDateTime::parse(t, &Rfc3339).unwrap();
        let now = at("2026-01-02T00:00:00Z");
        let seen = |v: serde_json::Value| serde_json::from_value::<Seen>(v).unwrap().last(now);
        // Recorded again after its creation: the recorder's latest time.
        assert_eq!(
            seen(serde_json::json!({
                "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
                "firstTimestamp": "2026-01-01T00:00:00Z",
                "lastTimestamp": "2026-01-01T05:00:00Z",
            })),
            Some(at("2026-01-01T05:00:00Z"))
        );
        assert_eq!(
            seen(serde_json::json!({
                "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
                "eventTime": "2026-01-01T01:00:00.123456Z",
                "series": {"count": 3, "lastObservedTime": "2026-01-01T23:00:00.000001Z"},
            })),
            Some(at("2026-01-01T23:00:00.000001Z"))
        );
        // A backlog recorded late lives from its creation.
        assert_eq!(
            seen(serde_json::json!({
                "metadata": {"creationTimestamp": "2026-01-01T12:00:00Z"},
                "lastTimestamp": "2025-06-01T00:00:00Z",
            })),
            Some(at("2026-01-01T12:00:00Z"))
        );
        // A time far ahead of the server's clock counts for nothing; a little ahead counts.
        assert_eq!(
            seen(serde_json::json!({
                "metadata": {"creationTimestamp": "2026-01-01T12:00:00Z"},
                "eventTime": "2099-01-01T00:00:00.000000Z",
            })),
            Some(at("2026-01-01T12:00:00Z"))
        );
        assert_eq!(
            seen(serde_json::json!({
                "metadata": {"creationTimestamp": "2026-01-01T12:00:00Z"},
                "lastTimestamp": "2026-01-02T00:00:30Z",
            })),
            Some(at("2026-01-02T00:00:30Z"))
        );
        assert_eq!(seen(serde_json::json!({"metadata": {}})), None);
    }

    #[test]
    fn sweeps_come_at_a_quarter_of_the_ttl_within_bounds() {
        assert_eq!(sweep_interval(DEFAULT_EVENT_TTL), MAX_SWEEP_INTERVAL);
        assert_eq!(
            sweep_interval(Duration::from_secs(120)),
            Duration::from_secs(30)
        );
        assert_eq!(
            sweep_interval(Duration::from_millis(10)),
            MIN_SWEEP_INTERVAL
        );
    }
}
