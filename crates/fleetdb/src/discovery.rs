//! `GET /sd/prometheus`: Prometheus HTTP service discovery served by fleetdb itself, from an
//! in-memory copy of the Hosts that follows their changes through the server's typed
//! extension context (rebuilt if it ever loses them).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fleetdb_apiserver::ApiError;
use fleetdb_apiserver::http::extensions::{Extension, ExtensionContext, ExtensionResponse};
use fleetdb_apiserver::http::query::Query;
use fleetdb_export::prometheus::{LabelStyle, Maintenance, target_groups};
use fleetdb_fleet::{GROUP, Host, VERSION, slim_for_discovery};
use fleetdb_machinery::selectors::LabelSelector;
use kube::ResourceExt;
use serde::Deserialize;
use tokio::sync::RwLock;

/// The hosts by name, shared with the task that keeps them current.
type HostCache = Arc<RwLock<BTreeMap<String, Host>>>;

/// The endpoint, with its host cache (filled on first use; rebuilt if its feed was lost).
#[derive(Default)]
pub struct PrometheusDiscovery {
    hosts: RwLock<Option<(HostCache, Arc<AtomicBool>)>>,
}

impl PrometheusDiscovery {
    /// The host cache: every Host now, then every change.
    async fn cache(&self, context: &ExtensionContext) -> Result<HostCache, ApiError> {
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
        let objects = context
            .objects(GROUP, VERSION, "hosts")
            .ok_or_else(|| ApiError::unavailable("the Host kind is not installed yet"))?;
        let mut hosts = BTreeMap::new();
        let mut changes = objects
            .read_and_follow(|stored| {
                if let Ok(host) = serde_json::from_slice::<Host>(stored.json) {
                    hosts.insert(stored.name.to_owned(), slim_for_discovery(host));
                }
            })
            .await?;
        let cache = Arc::new(RwLock::new(hosts));
        let updates = cache.clone();
        let lost = Arc::new(AtomicBool::new(false));
        let lost_flag = lost.clone();
        tokio::spawn(async move {
            while let Some(change) = changes.next().await {
                let mut hosts = updates.write().await;
                match &change.object {
                    Some(object) => {
                        if let Ok(host) = Host::deserialize(&**object) {
                            hosts.insert(change.name, slim_for_discovery(host));
                        }
                    }
                    None => {
                        hosts.remove(&change.name);
                    }
                }
            }
            // Fell behind or the feed was reset: the next request rebuilds the cache.
            lost_flag.store(true, Ordering::Release);
        });
        *slot = Some((cache.clone(), lost));
        Ok(cache)
    }
}

/// Where Prometheus HTTP service discovery is served.
pub const PATH: &str = "/sd/prometheus";

#[async_trait::async_trait]
impl Extension for PrometheusDiscovery {
    fn path(&self) -> &'static str {
        PATH
    }

    async fn handle(
        &self,
        context: &ExtensionContext,
        query: &Query,
    ) -> Result<ExtensionResponse, ApiError> {
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
        let cache = self.cache(context).await?;
        let hosts: Vec<Host> = cache
            .read()
            .await
            .values()
            .filter(|h| selector.matches(h.labels()))
            .cloned()
            .collect();
        let groups = target_groups(&hosts, port, maintenance, LabelStyle::Meta);
        Ok(ExtensionResponse::json(&groups))
    }
}
