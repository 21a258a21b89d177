//! The UI's copy of the hosts: one small row per host, kept current from the server's change
//! feed (typed extension context), so that the hosts table can be filtered by free text and
//! sorted over the whole fleet in milliseconds — what the API's list has no query for — and
//! so that live pages hear every change without a watch per browser tab.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fleetdb_apiserver::ApiError;
use fleetdb_apiserver::http::extensions::ExtensionContext;
use fleetdb_fleet::{GROUP, Host, HostState, VERSION};
use fleetdb_machinery::selectors::{FieldSelector, LabelSelector};
use serde::Deserialize;
use tokio::sync::{RwLock, broadcast};

/// How many changes a live page may fall behind before it is told to reload.
pub const CHANGE_BUFFER: usize = 4096;
/// Rows on one page of the hosts table.
pub const PAGE_ROWS: usize = 50;
/// Longest free-text query.
pub const MAX_QUERY_BYTES: usize = 256;

/// A string many hosts share (a label key or value, a role, a region), kept once.
pub type Shared = Arc<str>;

/// Strings the interner may hold beyond twice those in use before it forgets unused ones.
const INTERNER_SLACK: usize = 4096;

/// Keeps one copy of each shared string (label keys and values repeat across a fleet:
/// 100,000 hosts with 14 labels each hold a few thousand distinct strings).
///
/// Strings no row uses any more (a label value that changed, a host deleted) are forgotten
/// whenever the set reaches twice the strings in use at the last purge plus
/// [`INTERNER_SLACK`], so labels that keep changing (a build number, a timestamp) do not
/// grow it without bound; each purge is paid for by the insertions since the last.
pub struct Interner {
    strings: HashSet<Shared>,
    purge_at: usize,
}

impl Default for Interner {
    fn default() -> Self {
        Self {
            strings: HashSet::new(),
            purge_at: INTERNER_SLACK,
        }
    }
}

impl Interner {
    pub fn get(&mut self, text: &str) -> Shared {
        if let Some(shared) = self.strings.get(text) {
            return shared.clone();
        }
        let shared: Shared = Arc::from(text);
        self.strings.insert(shared.clone());
        if self.strings.len() >= self.purge_at {
            // Held by the set alone: no row uses it (`shared` is held here, so it stays).
            self.strings.retain(|s| Arc::strong_count(s) > 1);
            self.purge_at = self.strings.len() * 2 + INTERNER_SLACK;
        }
        shared
    }

    /// Distinct strings held.
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }
}

/// What the hosts table shows of one host (about 600 bytes with 14 labels).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: Box<str>,
    /// Sorted by key.
    pub labels: Box<[(Shared, Shared)]>,
    pub role: Shared,
    pub cluster: Shared,
    pub state: &'static str,
    pub provider: Shared,
    pub region: Shared,
    pub addresses: Box<[Box<str>]>,
    pub maintenance: bool,
    pub authorized: bool,
    pub ready: bool,
    pub created: Box<str>,
    pub in_service_since: Box<str>,
}

impl Row {
    fn of(host: &Host, strings: &mut Interner) -> Row {
        let status = host.status.clone().unwrap_or_default();
        let labels: Vec<(Shared, Shared)> = host
            .metadata
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| (strings.get(k), strings.get(v)))
            .collect();
        Row {
            name: host.metadata.name.clone().unwrap_or_default().into(),
            labels: labels.into(),
            role: strings.get(host.spec.role.as_deref().unwrap_or_default()),
            cluster: strings.get(host.spec.cluster.as_deref().unwrap_or_default()),
            state: match status.state {
                Some(HostState::Running) => "Running",
                Some(HostState::Stopped) => "Stopped",
                Some(HostState::Terminated) => "Terminated",
                Some(HostState::Unknown) | None => "Unknown",
            },
            provider: strings.get(
                status
                    .provider
                    .as_ref()
                    .map(|p| p.type_.as_str())
                    .unwrap_or_default(),
            ),
            region: strings.get(status.region.as_deref().unwrap_or_default()),
            addresses: status
                .addresses
                .iter()
                .map(|a| a.address.as_str().into())
                .collect(),
            maintenance: host.in_maintenance(),
            authorized: host.spec.authorized == Some(true),
            ready: status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            created: host
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default()
                .into(),
            in_service_since: status
                .tenure
                .and_then(|t| t.in_service_since)
                .unwrap_or_default()
                .into(),
        }
    }

    /// The value of one label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.labels[i].1)
    }

    /// The value of a selectable field, as the API's field selectors name them.
    fn field(&self, field: &str) -> Option<String> {
        Some(match field {
            "metadata.name" => self.name.to_string(),
            "spec.authorized" => self.authorized.to_string(),
            "spec.role" => self.role.to_string(),
            "status.state" => self.state.to_owned(),
            _ => return None,
        })
    }

    fn mentions(&self, text: &str) -> bool {
        self.name.to_ascii_lowercase().contains(text)
            || self
                .addresses
                .iter()
                .any(|a| a.to_ascii_lowercase().contains(text))
    }
}

/// What live pages hear.
#[derive(Clone, Debug)]
pub enum Feed {
    /// One change of one host: its new row, or `None` once deleted.
    Changed { name: String, row: Option<Row> },
    /// The index lost the server's change feed: pages reload (and rebuild it).
    Lost,
}

/// A question to the hosts table: selectors, free text, order and page.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct HostQuery {
    #[serde(default, rename = "labelSelector")]
    pub label_selector: String,
    #[serde(default, rename = "fieldSelector")]
    pub field_selector: String,
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub sort: String,
    #[serde(default)]
    pub page: usize,
}

/// The fields the table sorts by (`-` in front: descending).
pub const SORTS: &[&str] = &["name", "role", "cluster", "state", "region", "age"];

/// A compiled [`HostQuery`].
pub struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
    text: String,
}

impl Filter {
    pub fn new(query: &HostQuery) -> Result<Filter, ApiError> {
        let labels = LabelSelector::parse(&query.label_selector)
            .map_err(|e| ApiError::bad_request(format!("labelSelector: {}", e.message)))?;
        let fields = FieldSelector::parse(&query.field_selector)
            .map_err(|e| ApiError::bad_request(format!("fieldSelector: {}", e.message)))?;
        let probe = Row::of(&Host::new("", Default::default()), &mut Interner::default());
        if let Some(field) = fields
            .fields()
            .into_iter()
            .find(|f| probe.field(f).is_none())
        {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {field}"
            )));
        }
        if query.q.len() > MAX_QUERY_BYTES {
            return Err(ApiError::bad_request(format!(
                "the text to search for is longer than {MAX_QUERY_BYTES} bytes"
            )));
        }
        if !SORTS.contains(&query.sort.trim_start_matches('-')) && !query.sort.is_empty() {
            return Err(ApiError::bad_request(format!(
                "sort: one of {} (a leading - for descending)",
                SORTS.join(", ")
            )));
        }
        Ok(Filter {
            labels,
            fields,
            text: query.q.trim().to_ascii_lowercase(),
        })
    }

    pub fn matches(&self, row: &Row) -> bool {
        self.labels.matches_by(|key| row.label(key))
            && self.fields.matches(|f| row.field(f))
            && (self.text.is_empty() || row.mentions(&self.text))
    }
}

/// One page of the answer.
pub struct Page {
    pub rows: Vec<Row>,
    /// Rows matching in all.
    pub total: usize,
    /// Zero-based.
    pub page: usize,
}

/// The hosts and the feed of their changes.
pub struct HostIndex {
    pub rows: RwLock<BTreeMap<Box<str>, Row>>,
    strings: std::sync::Mutex<Interner>,
    pub changes: broadcast::Sender<Arc<Feed>>,
    lost: AtomicBool,
}

impl HostIndex {
    /// Every row matching `query`, in its order, and the page it asks for.
    pub async fn query(&self, query: &HostQuery) -> Result<Page, ApiError> {
        let filter = Filter::new(query)?;
        let rows = self.rows.read().await;
        let mut matching: Vec<&Row> = rows.values().filter(|r| filter.matches(r)).collect();
        let descending = query.sort.starts_with('-');
        let key = query.sort.trim_start_matches('-');
        if key != "name" && !key.is_empty() {
            fn field<'r>(row: &'r Row, key: &str) -> &'r str {
                match key {
                    "role" => &row.role,
                    "cluster" => &row.cluster,
                    "state" => row.state,
                    "region" => &row.region,
                    // Oldest first, like kubectl's --sort-by=.metadata.creationTimestamp.
                    _ => &row.created,
                }
            }
            // Stable: rows of equal keys stay in name order, either way.
            matching.sort_by(|a, b| {
                let order = field(a, key).cmp(field(b, key));
                if descending { order.reverse() } else { order }
            });
        } else if descending {
            matching.reverse();
        }
        let total = matching.len();
        let pages = total.div_ceil(PAGE_ROWS).max(1);
        let page = query.page.min(pages - 1);
        let rows = matching
            .into_iter()
            .skip(page * PAGE_ROWS)
            .take(PAGE_ROWS)
            .cloned()
            .collect();
        Ok(Page { rows, total, page })
    }
}

/// The index, built on first use and rebuilt if its feed was lost.
#[derive(Default)]
pub struct Indexes {
    hosts: RwLock<Option<Arc<HostIndex>>>,
}

impl Indexes {
    pub async fn hosts(&self, context: &ExtensionContext) -> Result<Arc<HostIndex>, ApiError> {
        if let Some(index) = self.hosts.read().await.as_ref()
            && !index.lost.load(Ordering::Acquire)
        {
            return Ok(index.clone());
        }
        let mut slot = self.hosts.write().await;
        if let Some(index) = slot.as_ref()
            && !index.lost.load(Ordering::Acquire)
        {
            return Ok(index.clone());
        }
        let objects = context
            .objects(GROUP, VERSION, "hosts")
            .ok_or_else(|| ApiError::unavailable("the Host kind is not installed yet"))?;
        let mut rows = BTreeMap::new();
        let mut strings = Interner::default();
        let mut feed = objects
            .read_and_follow(|stored| {
                if let Ok(host) = serde_json::from_slice::<Host>(stored.json) {
                    rows.insert(stored.name.into(), Row::of(&host, &mut strings));
                }
            })
            .await?;
        let (changes, _) = broadcast::channel(CHANGE_BUFFER);
        let index = Arc::new(HostIndex {
            rows: RwLock::new(rows),
            strings: std::sync::Mutex::new(strings),
            changes,
            lost: AtomicBool::new(false),
        });
        let updates = index.clone();
        tokio::spawn(async move {
            while let Some(change) = feed.next().await {
                let row = change
                    .object
                    .as_deref()
                    .and_then(|object| Host::deserialize(object).ok())
                    .map(|host| {
                        let mut strings = updates.strings.lock().unwrap_or_else(|e| e.into_inner());
                        Row::of(&host, &mut strings)
                    });
                {
                    let mut rows = updates.rows.write().await;
                    match &row {
                        Some(row) => rows.insert(change.name.as_str().into(), row.clone()),
                        None => rows.remove(change.name.as_str()),
                    };
                }
                let _ = updates.changes.send(Arc::new(Feed::Changed {
                    name: change.name,
                    row,
                }));
            }
            // Fell behind or the feed was reset: the next request rebuilds the index, and
            // live pages reload.
            updates.lost.store(true, Ordering::Release);
            let _ = updates.changes.send(Arc::new(Feed::Lost));
        });
        *slot = Some(index.clone());
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, labels: &[(&str, &str)], address: &str) -> Row {
        let mut host = Host::new(name, Default::default());
        host.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        host.spec.role = Some(if name.ends_with('1') { "db" } else { "web" }.into());
        host.status = Some(fleetdb_fleet::HostStatus {
            addresses: vec![fleetdb_fleet::HostAddress {
                type_: "InternalIP".into(),
                address: address.into(),
            }],
            ..Default::default()
        });
        Row::of(&host, &mut Interner::default())
    }

    #[test]
    fn the_interner_shares_strings_and_forgets_unused_ones() {
        let mut strings = Interner::default();
        let a = strings.get("team");
        assert!(Arc::ptr_eq(&a, &strings.get("team")), "one copy");
        // A label whose value changes on every write: each old value is dropped by its row.
        for i in 0..10 * INTERNER_SLACK {
            drop(strings.get(&format!("build-{i}")));
        }
        assert!(
            strings.len() <= 2 * INTERNER_SLACK,
            "{} strings held",
            strings.len()
        );
        // Strings in use are kept, and still shared.
        assert!(Arc::ptr_eq(&a, &strings.get("team")));
        let held: Vec<Shared> = (0..3 * INTERNER_SLACK)
            .map(|i| strings.get(&format!("host-{i}")))
            .collect();
        assert!(strings.len() >= held.len());
        for (i, shared) in held.iter().enumerate() {
            assert!(Arc::ptr_eq(shared, &strings.get(&format!("host-{i}"))));
        }
    }

    #[tokio::test]
    async fn queries_filter_sort_and_page() {
        let (changes, _) = broadcast::channel(1);
        let mut rows = BTreeMap::new();
        for i in 0..120 {
            let row = host(
                &format!("h{i:03}"),
                &[("team", if i % 2 == 0 { "a" } else { "b" })],
                &format!("10.0.{}.{}", i / 100, i % 100),
            );
            rows.insert(row.name.clone(), row);
        }
        let index = HostIndex {
            rows: RwLock::new(rows),
            strings: Default::default(),
            changes,
            lost: AtomicBool::new(false),
        };
        let ask = |label: &str, field: &str, q: &str, sort: &str, page: usize| HostQuery {
            label_selector: label.into(),
            field_selector: field.into(),
            q: q.into(),
            sort: sort.into(),
            page,
        };
        let page = index.query(&ask("team=a", "", "", "", 0)).await.unwrap();
        assert_eq!(page.total, 60);
        assert_eq!(page.rows.len(), PAGE_ROWS);
        assert_eq!(&*page.rows[0].name, "h000");
        let last = index.query(&ask("team=a", "", "", "", 9)).await.unwrap();
        assert_eq!((last.page, last.rows.len()), (1, 10));
        let found = index.query(&ask("", "", "10.0.1.1", "", 0)).await.unwrap();
        let names: Vec<&str> = found.rows.iter().map(|r| &*r.name).collect();
        assert_eq!(
            names,
            [
                "h101", "h110", "h111", "h112", "h113", "h114", "h115", "h116", "h117", "h118",
                "h119"
            ]
        );
        let roles = index
            .query(&ask("", "spec.role=db", "H0", "-name", 0))
            .await
            .unwrap();
        let names: Vec<&str> = roles.rows.iter().map(|r| &*r.name).collect();
        assert_eq!(
            names,
            [
                "h091", "h081", "h071", "h061", "h051", "h041", "h031", "h021", "h011", "h001"
            ]
        );
        for bad in [
            ask("a in (", "", "", "", 0),
            ask("", "spec.nope=1", "", "", 0),
            ask("", "", "", "weight", 0),
            ask("", "", &"x".repeat(MAX_QUERY_BYTES + 1), "", 0),
        ] {
            assert_eq!(index.query(&bad).await.err().unwrap().code, 400, "{bad:?}");
        }
    }
}
