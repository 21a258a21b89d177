//! The pages' handlers: what each asks of the API (as the signed-in user) or of the host
//! index (after asking the authorizer), handed to `pages` to render.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;

use futures::StreamExt;
use http::{HeaderValue, Method, Response, header};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::index::{Feed, Filter, HostQuery, Row};
use super::{
    Answer, Body, FIELD_MANAGER, LIST_PAGE, MAX_BULK_HOSTS, PREFIX, Problem, STREAM_KEEPALIVE, Ui,
    User, back_to, field, hosts_path, pages, redirect,
};
use crate::history::changes::{Version, blame, changes};
use fleetdb_apiserver::pipeline::Attributes;
use fleetdb_fleet::{GROUP, VERSION};

/// How often a live stream asks again whether its session and permissions still hold.
const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Counts of hosts by one property, largest first.
pub type Counts = Vec<(String, usize)>;

/// What the overview shows.
pub struct Overview {
    /// `None`: the user may not list hosts.
    pub hosts: Option<HostCounts>,
    /// Pending certificate requests, when the user may list them.
    pub pending_csrs: Option<usize>,
    /// The Sources (a list), when the user may list them.
    pub sources: Result<Value, Problem>,
}

#[derive(Default)]
pub struct HostCounts {
    pub total: usize,
    pub by: Vec<(&'static str, Counts)>,
    pub maintenance: usize,
    pub not_ready: usize,
    pub unauthorized: usize,
}

fn count_by(rows: &BTreeMap<Box<str>, Row>, key: impl Fn(&Row) -> &str) -> Counts {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for row in rows.values() {
        let value = key(row);
        *counts
            .entry(if value.is_empty() { "—" } else { value }.to_owned())
            .or_default() += 1;
    }
    let mut counts: Counts = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    counts
}

impl Ui {
    pub(super) async fn overview(&self, user: &User<'_>) -> Result<Answer, Problem> {
        let hosts = if user.may_hosts("list") {
            let index = self.indexes.hosts(&user.context.objects()).await?;
            let rows = index.rows.read().await;
            Some(HostCounts {
                total: rows.len(),
                by: vec![
                    ("provider", count_by(&rows, |r| &r.provider)),
                    ("region", count_by(&rows, |r| &r.region)),
                    ("role", count_by(&rows, |r| &r.role)),
                    ("state", count_by(&rows, |r| r.state)),
                    ("cluster", count_by(&rows, |r| &r.cluster)),
                ],
                maintenance: rows.values().filter(|r| r.maintenance).count(),
                not_ready: rows.values().filter(|r| !r.ready).count(),
                unauthorized: rows.values().filter(|r| !r.authorized).count(),
            })
        } else {
            None
        };
        let pending_csrs = pending_requests(user).await.ok().map(|csrs| csrs.len());
        let sources = user
            .api(
                Method::GET,
                &format!("/apis/{GROUP}/{VERSION}/sources?limit={LIST_PAGE}"),
                None,
            )
            .await;
        Ok(pages::page(
            user.session,
            "Overview",
            "",
            pages::overview(&Overview {
                hosts,
                pending_csrs,
                sources,
            }),
        ))
    }

    pub(super) async fn hosts(&self, user: &User<'_>, query: &str) -> Result<Answer, Problem> {
        let asked: HostQuery = serde_urlencoded::from_str(query)
            .map_err(|e| Problem::new(400, format!("the page's query: {e}")))?;
        if !user.may_hosts("list") {
            return Err(Problem::new(
                403,
                format!(
                    "{} cannot list hosts: ask for a role that may",
                    user.identity().user
                ),
            ));
        }
        let index = self.indexes.hosts(&user.context.objects()).await?;
        let page = index.query(&asked).await?;
        Ok(pages::page(
            user.session,
            "Hosts",
            "hosts",
            pages::hosts(user.session, &asked, &page, user.may_hosts("patch")),
        ))
    }

    /// `GET /ui/hosts/stream?…`: Server-Sent Events for the hosts table — the rows of the
    /// asked page as they are now, then every change of a host (`row`: its new row if it
    /// still matches the page's filter, `gone` otherwise; `reload` if the stream fell
    /// behind). Browsers reconnect by themselves and get the page's rows again.
    pub(super) async fn stream(&self, user: &User<'_>, query: &str) -> Result<Answer, Problem> {
        let asked: HostQuery = serde_urlencoded::from_str(query)
            .map_err(|e| Problem::new(400, format!("the page's query: {e}")))?;
        if !user.may_hosts("list") || !user.may_hosts("watch") {
            return Err(Problem::new(
                403,
                format!("{} cannot watch hosts", user.identity().user),
            ));
        }
        let filter = Filter::new(&asked)?;
        // The stream ends with the session, or when its user may no longer watch hosts.
        let sessions = self.sessions.clone();
        let id = user.id.to_owned();
        let context = user.context.clone();
        let identity = user.identity().clone();
        let still_allowed = move || {
            sessions.get(&id).is_some()
                && ["list", "watch"].iter().all(|verb| {
                    context.allowed(
                        &identity,
                        &Attributes::resource(verb, GROUP, "hosts", "", ""),
                    )
                })
        };
        let index = self.indexes.hosts(&user.context.objects()).await?;
        let mut changes = index.changes.subscribe();
        let page = index.query(&asked).await?;
        let editable = user.may_hosts("patch");
        let csrf = user.session.csrf.clone();
        let mut shutdown = user.context.shutting_down();
        let expires = tokio::time::Instant::from_std(user.session.expires);
        let first: Vec<String> = std::iter::once("retry: 1000\n\n".to_owned())
            .chain(
                page.rows
                    .iter()
                    .map(|row| event("row", &row.name, &pages::host_row(row, editable, &csrf))),
            )
            .collect();
        let live = async_stream(move |sender| async move {
            let mut checked = tokio::time::Instant::now();
            loop {
                let next = tokio::select! {
                    next = changes.recv() => Some(next),
                    _ = tokio::time::sleep(STREAM_KEEPALIVE) => None,
                    _ = shutdown.changed() => return,
                    // A session that expires ends its stream.
                    _ = tokio::time::sleep_until(expires) => return,
                };
                // Logged out, or no longer allowed: checked at most once per second.
                if checked.elapsed() >= RECHECK_EVERY {
                    if !still_allowed() {
                        return;
                    }
                    checked = tokio::time::Instant::now();
                }
                let text = match next {
                    None => ": alive\n\n".to_owned(),
                    Some(Ok(feed)) => match &*feed {
                        Feed::Changed { row: Some(row), .. } if filter.matches(row) => {
                            event("row", &row.name, &pages::host_row(row, editable, &csrf))
                        }
                        Feed::Changed { name, .. } => event("gone", name, ""),
                        Feed::Lost => "event: reload\ndata: lost\n\n".to_owned(),
                    },
                    Some(Err(RecvError::Lagged(_))) => "event: reload\ndata: behind\n\n".to_owned(),
                    Some(Err(RecvError::Closed)) => return,
                };
                if sender.send(text).await.is_err() {
                    return;
                }
            }
        });
        let body = futures::stream::iter(first)
            .chain(live)
            .map(Ok::<_, Infallible>);
        let mut answer = Response::new(Body::from_stream(body));
        answer.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        Ok(answer)
    }

    /// `POST /ui/hosts/actions`: maintenance on or off, or authorization, for the hosts
    /// checked — each a merge patch as the user.
    pub(super) async fn host_actions(
        &self,
        user: &User<'_>,
        fields: &[(String, String)],
    ) -> Result<Answer, Problem> {
        let patch = match field(fields, "action") {
            Some("maintenance-on") => json!({"spec": {"maintenance": true}}),
            Some("maintenance-off") => json!({"spec": {"maintenance": false}}),
            Some("authorize") => json!({"spec": {"authorized": true}}),
            other => {
                return Err(Problem::new(
                    400,
                    format!(
                        "unknown action {other:?}: maintenance-on, maintenance-off or authorize"
                    ),
                ));
            }
        };
        let names: BTreeSet<&str> = fields
            .iter()
            .filter(|(k, _)| k == "host")
            .map(|(_, v)| v.as_str())
            .collect();
        if names.is_empty() {
            return Err(Problem::new(400, "no host was checked"));
        }
        if let Some(bad) = names.iter().find(|n| !is_name(n)) {
            return Err(Problem::new(400, format!("{bad:?} is not a host name")));
        }
        if names.len() > MAX_BULK_HOSTS {
            return Err(Problem::new(
                400,
                format!("one action changes at most {MAX_BULK_HOSTS} hosts"),
            ));
        }
        let mut failures = Vec::new();
        for name in &names {
            let path = format!("{}?fieldManager={FIELD_MANAGER}", hosts_path(name));
            if let Err(problem) = user.api(Method::PATCH, &path, Some(&patch)).await {
                failures.push(((*name).to_owned(), problem.message));
            }
        }
        if failures.is_empty() {
            return Ok(redirect(&back_to(fields)));
        }
        Ok(pages::page(
            user.session,
            "Some changes failed",
            "hosts",
            pages::failures(names.len(), &failures, &back_to(fields)),
        ))
    }

    /// `GET /ui/clusters`: the pool (authorized hosts in no cluster) and the clusters.
    pub(super) async fn clusters(&self, user: &User<'_>, query: &str) -> Result<Answer, Problem> {
        let table = table(user, "clusters", query).await?;
        let pool = if user.may_hosts("list") {
            let index = self.indexes.hosts(&user.context.objects()).await?;
            let rows = index.rows.read().await;
            Some(
                rows.values()
                    .filter(|r| r.authorized && r.cluster.is_empty())
                    .count(),
            )
        } else {
            None
        };
        Ok(pages::page(
            user.session,
            "Clusters and the pool",
            "clusters",
            pages::clusters(pool, &table),
        ))
    }

    /// `GET /ui/joins`: certificate requests waiting for approval, hosts waiting for
    /// authorization.
    pub(super) async fn joins(&self, user: &User<'_>) -> Result<Answer, Problem> {
        let csrs = pending_requests(user).await;
        let waiting = if user.may_hosts("list") {
            let index = self.indexes.hosts(&user.context.objects()).await?;
            let rows = index.rows.read().await;
            Ok(rows
                .values()
                .filter(|r| !r.authorized)
                .take(LIST_PAGE)
                .cloned()
                .collect::<Vec<Row>>())
        } else {
            Err(Problem::new(403, "you may not list hosts"))
        };
        Ok(pages::page(
            user.session,
            "Pending joins",
            "joins",
            pages::joins(user.session, &csrs, &waiting, user.may_hosts("patch")),
        ))
    }
}

/// Whether `name` is an object name (a DNS subdomain), so that it can go into an API path
/// as it is.
pub(super) fn is_name(name: &str) -> bool {
    fleetdb_machinery::validation::dns1123_subdomain(name).is_empty()
}

/// One Server-Sent Event; `id` is the host's name.
fn event(kind: &str, name: &str, html: &str) -> String {
    let data = json!({"name": name, "html": html}).to_string();
    format!("event: {kind}\ndata: {data}\n\n")
}

/// A stream fed by a task through a small channel (the task ends when the browser leaves).
fn async_stream<F, Fut>(task: F) -> impl futures::Stream<Item = String>
where
    F: FnOnce(tokio::sync::mpsc::Sender<String>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    tokio::spawn(task(sender));
    tokio_stream_from(receiver)
}

fn tokio_stream_from(
    mut receiver: tokio::sync::mpsc::Receiver<String>,
) -> impl futures::Stream<Item = String> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// The certificate requests no one approved or denied yet (of the first page), as the user
/// may list them.
async fn pending_requests(user: &User<'_>) -> Result<Vec<Value>, Problem> {
    let path = format!("/apis/certificates.k8s.io/v1/certificatesigningrequests?limit={LIST_PAGE}");
    let list = user.api(Method::GET, &path, None).await?;
    Ok(list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|csr| {
            csr["status"]["conditions"]
                .as_array()
                .is_none_or(|c| c.is_empty())
        })
        .cloned()
        .collect())
}

/// A kind's server-side Table (kubectl's columns), one page of it.
async fn table(user: &User<'_>, plural: &str, query: &str) -> Result<Value, Problem> {
    let cont = serde_urlencoded::from_str::<BTreeMap<String, String>>(query)
        .ok()
        .and_then(|q| q.get("continue").cloned())
        .unwrap_or_default();
    let page = serde_urlencoded::to_string([("limit", LIST_PAGE.to_string()), ("continue", cont)])
        .map_err(|e| Problem::new(500, e.to_string()))?;
    let path = format!("/apis/{GROUP}/{VERSION}/{plural}?{page}");
    user.api_as(
        Method::GET,
        &path,
        "application/json;as=Table;v=v1;g=meta.k8s.io",
        None,
    )
    .await
}

/// `GET /ui/rollouts` and `/ui/sources`: the kind's Table.
pub(super) async fn kind_page(
    user: &User<'_>,
    plural: &'static str,
    query: &str,
) -> Result<Answer, Problem> {
    let table = table(user, plural, query).await?;
    let title = if plural == "rollouts" {
        "Rollouts"
    } else {
        "Sources"
    };
    Ok(pages::page(
        user.session,
        title,
        plural,
        pages::kind_table(plural, &table),
    ))
}

/// `GET /ui/hosts/NAME`: the host, its runs, Events, and history with who changed what.
pub(super) async fn host_page(user: &User<'_>, name: &str) -> Result<Answer, Problem> {
    if !is_name(name) {
        return Err(Problem::new(404, "no such host page"));
    }
    let host = user.api(Method::GET, &hosts_path(name), None).await?;
    // The newest page of its history (the API's default page); older changes are a
    // `fleetdb history` away.
    let history = user
        .api(Method::GET, &format!("{}/history", hosts_path(name)), None)
        .await;
    let older = history
        .as_ref()
        .is_ok_and(|answer| answer["metadata"]["continue"].is_string());
    let history = history.map(|answer| Version::parse_list(&answer));
    let selector = serde_urlencoded::to_string([(
        "fieldSelector",
        format!("involvedObject.name={name},involvedObject.kind=Host"),
    )])
    .unwrap_or_default();
    let events = user
        .api(
            Method::GET,
            &format!("/api/v1/namespaces/default/events?{selector}&limit={LIST_PAGE}"),
            None,
        )
        .await;
    let history = history.map(|versions| (changes(&versions), blame(&versions)));
    Ok(pages::page(
        user.session,
        name,
        "hosts",
        pages::host(&host, &history, older, &events),
    ))
}

/// `POST /ui/joins/approve`: approves a certificate request as the user (the API decides
/// whether they may, as for `kubectl certificate approve`).
pub(super) async fn approve(
    user: &User<'_>,
    fields: &[(String, String)],
) -> Result<Answer, Problem> {
    let name = field(fields, "csr")
        .filter(|name| is_name(name))
        .ok_or_else(|| Problem::new(400, "which request? (a certificate request's name)"))?;
    let path = format!("/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}");
    let mut csr = user.api(Method::GET, &path, None).await?;
    let now = crate::rfc3339(time::OffsetDateTime::now_utc()).unwrap_or_default();
    let condition = json!({
        "type": "Approved",
        "status": "True",
        "reason": "ApprovedInFleetdbUI",
        "message": format!("approved by {} in the fleetdb UI", user.identity().user),
        "lastUpdateTime": now,
    });
    match csr["status"]["conditions"].as_array_mut() {
        Some(conditions) => conditions.push(condition),
        None => csr["status"]["conditions"] = json!([condition]),
    }
    user.api(Method::PUT, &format!("{path}/approval"), Some(&csr))
        .await?;
    Ok(redirect(&format!("{PREFIX}/joins")))
}
