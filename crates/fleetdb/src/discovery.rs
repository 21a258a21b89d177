//! `GET /sd/prometheus`: Prometheus HTTP service discovery served by fleetdb itself, from an
//! in-memory copy of the Hosts kept current by the server's watch cache.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fleetdb_apiserver::query::Query;
use fleetdb_apiserver::selectors::LabelSelector;
use fleetdb_apiserver::server::{ApiServer, Extension};
use fleetdb_apiserver::status::ApiError;
use fleetdb_fetch::prometheus::{LabelStyle, Maintenance, target_groups};
use fleetdb_fleet::Host;
use fleetdb_store::RangeRequest;
use kube::ResourceExt;
use serde::Deserialize;
use tokio::sync::RwLock;

/// Store prefix of the Hosts.
const HOSTS_PREFIX: &str = "/registry/fleetdb.io/hosts/";

/// The hosts by name, shared with the task that keeps them current.
type HostCache = Arc<RwLock<BTreeMap<String, Host>>>;

/// The endpoint, with its host cache (filled on first use; rebuilt if its feed was lost).
#[derive(Default)]
pub struct PrometheusDiscovery {
    hosts: RwLock<Option<(HostCache, Arc<AtomicBool>)>>,
}

impl PrometheusDiscovery {
    /// The host cache: a snapshot of the store, then every change from the watch cache.
    async fn cache(&self, server: &Arc<ApiServer>) -> Result<HostCache, ApiError> {
        if let Some((cache, lost)) = self.hosts.read().await.as_ref()
            && !lost.load(Ordering::Acquire)
        {
            return Ok(cache.clone());
        }
        let mut slot = self.hosts.write().await;
        if let Some((cache, lost)) = slot.as_ref()
            && !lost.load(Ordering::Acquire)
        {
            return Ok(cache.clone());
        }
        let feed = server
            .watch_cache
            .feed(HOSTS_PREFIX, server.shutdown_signal())
            .await
            .map_err(fleetdb_apiserver::rest::store_error)?;
        let mut live = feed.subscribe();
        let mut hosts = BTreeMap::new();
        let mut from_key = None;
        let mut revision = None;
        loop {
            let page = server
                .store
                .range(RangeRequest {
                    prefix: HOSTS_PREFIX.into(),
                    from_key: from_key.take(),
                    revision,
                    ..RangeRequest::default()
                })
                .await
                .map_err(fleetdb_apiserver::rest::store_error)?;
            revision = Some(page.revision);
            for kv in &page.kvs {
                if let Ok(host) = serde_json::from_slice::<Host>(&kv.value) {
                    hosts.insert(host.name_any(), slim(host));
                }
            }
            match (page.more, page.kvs.last()) {
                (true, Some(last)) => from_key = Some(format!("{}\0", last.key)),
                _ => break,
            }
        }
        let snapshot = revision.unwrap_or_default();
        let cache = Arc::new(RwLock::new(hosts));
        let updates = cache.clone();
        let lost = Arc::new(AtomicBool::new(false));
        let lost_flag = lost.clone();
        let replay = feed.events_after(snapshot).unwrap_or_default();
        tokio::spawn(async move {
            let apply = |event: &fleetdb_apiserver::watch_cache::CachedEvent,
                         hosts: &mut BTreeMap<String, Host>| {
                let name = event.key.trim_start_matches(HOSTS_PREFIX).to_owned();
                match &event.object {
                    Some(object) => {
                        if let Ok(host) = Host::deserialize(&**object) {
                            hosts.insert(name, slim(host));
                        }
                    }
                    None => {
                        hosts.remove(&name);
                    }
                }
            };
            let mut last = snapshot;
            for event in replay {
                last = event.revision;
                apply(&event, &mut *updates.write().await);
            }
            loop {
                match live.recv().await {
                    Ok(event) if event.revision > last => {
                        last = event.revision;
                        apply(&event, &mut *updates.write().await);
                    }
                    Ok(_) => {}
                    // Fell behind or reset: the next request rebuilds the cache.
                    Err(_) => {
                        lost_flag.store(true, Ordering::Release);
                        return;
                    }
                }
            }
        });
        *slot = Some((cache.clone(), lost));
        Ok(cache)
    }
}

/// Drops what target groups never read (managed fields, annotations, Ansible variables,
/// hardware, conditions), so that the cache stays small with a large fleet.
fn slim(mut host: Host) -> Host {
    host.metadata.managed_fields = None;
    host.metadata.annotations = None;
    host.spec.ansible = None;
    if let Some(status) = host.status.as_mut() {
        status.hardware = None;
        status.conditions = Vec::new();
        status.first_seen = None;
        status.last_seen = None;
    }
    host
}

#[async_trait::async_trait]
impl Extension for PrometheusDiscovery {
    fn path(&self) -> &'static str {
        "/sd/prometheus"
    }

    async fn handle(&self, server: Arc<ApiServer>, query: Query) -> Result<Response, ApiError> {
        let port = match query.number("port")? {
            Some(port) if (1..=65535).contains(&port) => port as u16,
            Some(port) => {
                return Err(ApiError::bad_request(format!(
                    "port {port} is not a TCP port"
                )));
            }
            None => {
                return Err(ApiError::bad_request(
                    "the port parameter is required, e.g. ?port=9100",
                ));
            }
        };
        let selector = match query.get("labelSelector") {
            Some(raw) => LabelSelector::parse(raw).map_err(|e| ApiError::bad_request(e.message))?,
            None => LabelSelector::everything(),
        };
        let maintenance: Maintenance = query
            .get("maintenance")
            .unwrap_or("exclude")
            .parse()
            .map_err(ApiError::bad_request)?;
        let cache = self.cache(&server).await?;
        let hosts: Vec<Host> = cache
            .read()
            .await
            .values()
            .filter(|h| selector.matches(h.labels()))
            .cloned()
            .collect();
        let groups = target_groups(&hosts, port, maintenance, LabelStyle::Meta);
        Ok((
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            groups.to_string(),
        )
            .into_response())
    }
}
