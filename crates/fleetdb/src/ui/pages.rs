//! The UI's HTML, written with maud (every value from a record is escaped by it). Each
//! page's state is in its URL; forms carry the session's CSRF token.

use std::collections::BTreeMap;

use http::{HeaderValue, Response, StatusCode, header};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

use super::handlers::Overview;
use super::index::{HostQuery, Page, Row, SORTS};
use super::sessions::Session;
use super::{Answer, Body, PREFIX, Problem};
use crate::history::changes::{Blame, Change};

const NAV: &[(&str, &str)] = &[
    ("", "Overview"),
    ("hosts", "Hosts"),
    ("clusters", "Clusters"),
    ("rollouts", "Rollouts"),
    ("sources", "Sources"),
    ("joins", "Pending joins"),
];

pub fn html(status: StatusCode, markup: Markup) -> Answer {
    let mut answer = Response::new(Body::from(markup.into_string()));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    answer
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="color-scheme" content="light dark";
            title { (title) " · fleetdb" }
            link rel="icon" href={ (PREFIX) "/static/icon.svg" } type="image/svg+xml";
            link rel="stylesheet" href={ (PREFIX) "/static/app.css" };
            script src={ (PREFIX) "/static/app.js" } defer {}
        }
    }
}

/// A page of a signed-in user.
pub fn page(session: &Session, title: &str, current: &str, body: Markup) -> Answer {
    html(StatusCode::OK, layout(session, title, current, body))
}

fn layout(session: &Session, title: &str, current: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header {
                    nav aria-label="Sections" {
                        span.brand { "fleetdb" }
                        @for (path, label) in NAV {
                            @if *path == current {
                                a href={ (PREFIX) "/" (path) } aria-current="page" { (label) }
                            } @else {
                                a href={ (PREFIX) "/" (path) } { (label) }
                            }
                        }
                    }
                    form.logout method="post" action={ (PREFIX) "/logout" } {
                        input type="hidden" name="csrf" value=(session.csrf);
                        span.user title="signed in as" { (session.identity.user) }
                        button type="submit" { "Log out" }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page without a session: a title, a heading and a little text.
fn bare(title: &str, heading: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                main.narrow {
                    h1 { (heading) }
                    (body)
                }
            }
        }
    }
}

/// What `/ui/` shows without a session: how to get one, and no data.
pub fn logged_out() -> Markup {
    bare(
        "Log in",
        "fleetdb",
        html! {
            p { "You are not logged in. The UI acts as the identity of a kubeconfig: run" }
            pre { code { "fleetdb ui-login --kubeconfig ~/.kube/config" } }
            p { "and open the one-time URL it prints (it works once, for five minutes). What you see and may change is what that identity may see and change through the API." }
        },
    )
}

/// What a login link opens: who it logs in as, and the button that does.
pub fn confirm_login(user: &str, token: &str) -> Markup {
    bare(
        "Log in",
        "Log in to fleetdb",
        html! {
            p { "This link logs this browser in as " strong #login-user { (user) } "." }
            form method="post" action={ (PREFIX) "/login" } {
                input type="hidden" name="token" value=(token);
                button #login type="submit" { "Log in as " (user) }
            }
        },
    )
}

pub fn login_refused() -> Markup {
    bare(
        "Login refused",
        "This login link does not work",
        html! {
            p { "A login link works once, within five minutes. Run " code { "fleetdb ui-login" } " again for a new one." }
        },
    )
}

pub fn error(session: &Session, problem: Problem) -> Answer {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    html(
        status,
        layout(
            session,
            status.canonical_reason().unwrap_or("Error"),
            "",
            html! { p.problem role="alert" { (problem.message) } },
        ),
    )
}

fn counts_table(title: &str, counts: &[(String, usize)]) -> Markup {
    html! {
        section.card {
            h2 { "By " (title) }
            table {
                tbody {
                    @for (value, count) in counts.iter().take(12) {
                        tr {
                            td { (value) }
                            td.num { (count) }
                        }
                    }
                }
            }
            @if counts.len() > 12 { p.more { (counts.len() - 12) " more" } }
        }
    }
}

pub fn overview(overview: &Overview) -> Markup {
    html! {
        @match &overview.hosts {
            Some(hosts) => {
                section.tiles aria-label="Hosts" {
                    a.tile href={ (PREFIX) "/hosts" } { strong { (hosts.total) } " hosts" }
                    a.tile href={ (PREFIX) "/hosts?fieldSelector=spec.authorized%3Dfalse" } { strong { (hosts.unauthorized) } " pending authorization" }
                    span.tile { strong { (hosts.maintenance) } " in maintenance" }
                    span.tile { strong { (hosts.not_ready) } " not ready" }
                    @if let Some(csrs) = overview.pending_csrs {
                        a.tile href={ (PREFIX) "/joins" } { strong { (csrs) } " pending certificate requests" }
                    }
                }
                div.cards {
                    @for (title, counts) in &hosts.by { (counts_table(title, counts)) }
                }
            }
            None => p.problem { "You may not list hosts." }
        }
        h2 { "Sources" }
        @match &overview.sources {
            Ok(list) => (sources(list)),
            Err(problem) => p.problem { (problem.message) },
        }
    }
}

/// Each Source's last sync and its error, if the last one failed.
fn sources(list: &Value) -> Markup {
    let empty = Vec::new();
    let items = list["items"].as_array().unwrap_or(&empty);
    html! {
        @if items.is_empty() { p.empty { "None yet." } } @else {
            table #sources {
                thead { tr { th { "Name" } th { "Type" } th { "Last sync" } th { "Hosts seen" } th { "Last error" } } }
                tbody {
                    @for source in items {
                        @let error = cell(&source["status"]["lastError"]);
                        tr data-name=(cell(&source["metadata"]["name"])) {
                            td { (cell(&source["metadata"]["name"])) }
                            td { (cell(&source["spec"]["type"])) }
                            td { time { (cell(&source["status"]["lastSyncTime"])) } }
                            td.num { (cell(&source["status"]["hostsSeen"])) }
                            td.problem { (error) }
                        }
                    }
                }
            }
        }
    }
}

/// The query string of a hosts page (empty values left out).
pub fn hosts_query(query: &HostQuery, sort: &str, page: usize) -> String {
    let mut pairs = Vec::new();
    for (key, value) in [
        ("labelSelector", query.label_selector.as_str()),
        ("fieldSelector", query.field_selector.as_str()),
        ("q", query.q.as_str()),
        ("sort", sort),
    ] {
        if !value.is_empty() {
            pairs.push((key, value.to_owned()));
        }
    }
    if page > 0 {
        pairs.push(("page", page.to_string()));
    }
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

pub fn hosts(session: &Session, query: &HostQuery, page: &Page, editable: bool) -> Markup {
    let here = format!(
        "{PREFIX}/hosts?{}",
        hosts_query(query, &query.sort, page.page)
    );
    let pages = page.total.div_ceil(super::index::PAGE_ROWS).max(1);
    let current = if query.sort.is_empty() {
        "name"
    } else {
        query.sort.as_str()
    };
    let sort_link = |key: &str| {
        let next = if current == key {
            format!("-{key}")
        } else {
            key.to_owned()
        };
        format!("{PREFIX}/hosts?{}", hosts_query(query, &next, 0))
    };
    html! {
        form.filters role="search" method="get" action={ (PREFIX) "/hosts" } {
            label { "Search " input #q type="search" name="q" value=(query.q) placeholder="name or address (press /)"; }
            label { "Labels " input type="text" name="labelSelector" value=(query.label_selector) placeholder="team=a,env in (prod)"; }
            label { "Fields " input type="text" name="fieldSelector" value=(query.field_selector) placeholder="spec.role=db"; }
            @if !query.sort.is_empty() { input type="hidden" name="sort" value=(query.sort); }
            button type="submit" { "Filter" }
        }
        p.summary aria-live="polite" {
            (page.total) " hosts match · page " (page.page + 1) " of " (pages)
        }
        form #bulk method="post" action={ (PREFIX) "/hosts/actions" } {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="return" value=(here);
            @if editable {
                div.actions {
                    "Checked hosts: "
                    button type="submit" name="action" value="maintenance-on" { "Maintenance on" }
                    button type="submit" name="action" value="maintenance-off" { "Maintenance off" }
                    button type="submit" name="action" value="authorize" { "Authorize" }
                }
            }
            table #hosts data-stream={ (PREFIX) "/stream/hosts?" (hosts_query(query, &query.sort, page.page)) } {
                thead {
                    tr {
                        th { @if editable { input #all type="checkbox" aria-label="check every host on this page"; } }
                        @for (key, label) in [("name", "Name"), ("role", "Role"), ("cluster", "Cluster"), ("state", "State")] {
                            th { a href=(sort_link(key)) { (label) (arrow(&query.sort, key)) } }
                        }
                        th { "Ready" } th { "Maintenance" } th { "Authorized" } th { "Provider" }
                        th { a href=(sort_link("region")) { "Region" (arrow(&query.sort, "region")) } }
                        th { "Addresses" }
                        th { a href=(sort_link("age")) { "In fleet since" (arrow(&query.sort, "age")) } }
                        th { "In service since" }
                    }
                }
                tbody {
                    @for row in &page.rows { (PreEscaped(host_row(row, editable, &session.csrf))) }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if page.page > 0 {
                a rel="prev" href={ (PREFIX) "/hosts?" (hosts_query(query, &query.sort, page.page - 1)) } { "← Previous" }
            }
            @if page.page + 1 < pages {
                a rel="next" href={ (PREFIX) "/hosts?" (hosts_query(query, &query.sort, page.page + 1)) } { "Next →" }
            }
        }
        p.hint { "Keys: / search, j and k move, Enter opens, x checks. Sorts: " (SORTS.join(", ")) "." }
    }
}

fn arrow(sort: &str, key: &str) -> &'static str {
    if sort == key || (sort.is_empty() && key == "name") {
        " ▲"
    } else if sort.strip_prefix('-') == Some(key) {
        " ▼"
    } else {
        ""
    }
}

fn yes(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

/// One row of the hosts table (also sent to live pages).
pub fn host_row(row: &Row, editable: bool, _csrf: &str) -> String {
    html! {
        tr data-name=(row.name) tabindex="-1" {
            td { @if editable { input type="checkbox" name="host" value=(row.name) aria-label={ "check " (row.name) }; } }
            td { a href={ (PREFIX) "/hosts/" (row.name) } { (row.name) } }
            td { (row.role) }
            td { (row.cluster) }
            td { (row.state) }
            td.flag data-on=(yes(row.ready)) { (yes(row.ready)) }
            td.flag.maintenance data-on=(yes(row.maintenance)) { (yes(row.maintenance)) }
            td.flag data-on=(yes(row.authorized)) { (yes(row.authorized)) }
            td { (row.provider) }
            td { (row.region) }
            td { (row.addresses.join(", ")) }
            td { time { (row.created) } }
            td { time { (row.in_service_since) } }
        }
    }
    .into_string()
}

pub fn failures(asked: usize, failures: &[(String, String)], back: &str) -> Markup {
    html! {
        p { (asked - failures.len()) " of " (asked) " hosts changed. These did not:" }
        ul.problems role="alert" {
            @for (name, message) in failures { li { strong { (name) } ": " (message) } }
        }
        p { a href=(back) { "Back to the hosts" } }
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A server-side Table: every column, `kubectl get -o wide`'s (a rollout's `Held` says
/// what its limits hold back, and why).
pub fn kind_table(plural: &str, table: &Value) -> Markup {
    let empty = Vec::new();
    let columns = table["columnDefinitions"].as_array().unwrap_or(&empty);
    let shown: Vec<usize> = (0..columns.len()).collect();
    let rows = table["rows"].as_array().unwrap_or(&empty);
    let cont = table["metadata"]["continue"].as_str().unwrap_or_default();
    html! {
        @if rows.is_empty() {
            p.empty { "None yet." }
        } @else {
            table.kind {
                thead { tr { @for i in &shown { th { (cell(&columns[*i]["name"])) } } } }
                tbody {
                    @for row in rows {
                        tr { @for i in &shown { td { (cell(&row["cells"][*i])) } } }
                    }
                }
            }
        }
        @if !cont.is_empty() {
            nav.pager { a rel="next" href={ (PREFIX) "/" (plural) "?" (serde_urlencoded::to_string([("continue", cont)]).unwrap_or_default()) } { "Next →" } }
        }
    }
}

/// The clusters' page: the pool, then the clusters.
pub fn clusters(pool: Option<usize>, table: &Value) -> Markup {
    html! {
        @if let Some(pool) = pool {
            p.summary { "The pool: " strong { (pool) } " authorized hosts in no cluster, which clusters take from as they grow." }
        }
        (kind_table("clusters", table))
    }
}

pub fn joins(
    session: &Session,
    csrs: &Result<Vec<Value>, Problem>,
    hosts: &Result<Vec<Row>, Problem>,
    editable: bool,
) -> Markup {
    html! {
        h2 { "Certificate requests waiting for approval" }
        @match csrs {
            Ok(csrs) if csrs.is_empty() => p.empty { "None." },
            Ok(csrs) => table {
                thead { tr { th { "Name" } th { "Requested by" } th { "Signer" } th { "Created" } th {} } }
                tbody {
                    @for csr in csrs {
                        tr data-name=(cell(&csr["metadata"]["name"])) {
                            td { (cell(&csr["metadata"]["name"])) }
                            td { (cell(&csr["spec"]["username"])) }
                            td { (cell(&csr["spec"]["signerName"])) }
                            td { (cell(&csr["metadata"]["creationTimestamp"])) }
                            td {
                                form method="post" action={ (PREFIX) "/joins/approve" } {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    input type="hidden" name="csr" value=(cell(&csr["metadata"]["name"]));
                                    button type="submit" { "Approve" }
                                }
                            }
                        }
                    }
                }
            },
            Err(problem) => p.problem { (problem.message) },
        }
        h2 { "Hosts waiting for authorization" }
        @match hosts {
            Ok(hosts) if hosts.is_empty() => p.empty { "None." },
            Ok(hosts) => table {
                thead { tr { th { "Name" } th { "Addresses" } th { "In fleet since" } th {} } }
                tbody {
                    @for host in hosts {
                        tr data-name=(host.name) {
                            td { a href={ (PREFIX) "/hosts/" (host.name) } { (host.name) } }
                            td { (host.addresses.join(", ")) }
                            td { (host.created) }
                            td {
                                @if editable {
                                    form method="post" action={ (PREFIX) "/hosts/actions" } {
                                        input type="hidden" name="csrf" value=(session.csrf);
                                        input type="hidden" name="return" value={ (PREFIX) "/joins" };
                                        input type="hidden" name="host" value=(host.name);
                                        button type="submit" name="action" value="authorize" { "Authorize" }
                                    }
                                }
                            }
                        }
                    }
                }
            },
            Err(problem) => p.problem { (problem.message) },
        }
    }
}

/// Events, the latest first (their names end in a random suffix, so list order says
/// nothing).
fn newest_first(items: &[Value]) -> Vec<&Value> {
    let mut items: Vec<&Value> = items.iter().collect();
    items.sort_by(|a, b| cell(&b["lastTimestamp"]).cmp(&cell(&a["lastTimestamp"])));
    items
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

type HostHistory = Result<(Vec<Change>, Option<BTreeMap<String, Blame>>), Problem>;

pub fn host(
    host: &Value,
    history: &HostHistory,
    older: bool,
    events: &Result<Value, Problem>,
) -> Markup {
    let empty = Vec::new();
    let conditions = host["status"]["conditions"].as_array().unwrap_or(&empty);
    let labels = host["metadata"]["labels"].as_object();
    html! {
        section.card {
            h2 { "Labels" }
            @match labels {
                Some(labels) if !labels.is_empty() => ul.labels {
                    @for (key, value) in labels { li { code { (key) "=" (cell(value)) } } }
                },
                _ => p.empty { "None." },
            }
        }
        section.card {
            h2 { "Conditions" }
            @if conditions.is_empty() { p.empty { "None reported." } } @else {
                table {
                    thead { tr { th { "Type" } th { "Status" } th { "Reason" } th { "Message" } th { "Since" } } }
                    tbody {
                        @for c in conditions {
                            tr { td { (cell(&c["type"])) } td { (cell(&c["status"])) } td { (cell(&c["reason"])) } td { (cell(&c["message"])) } td { (cell(&c["lastTransitionTime"])) } }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Runs" }
            @let asked = host["spec"]["runs"].as_array().unwrap_or(&empty);
            @let reported = host["status"]["agent"]["runs"].as_array().unwrap_or(&empty);
            @if asked.is_empty() && reported.is_empty() { p.empty { "None." } } @else {
                table {
                    thead { tr { th { "Id" } th { "Phase" } } }
                    tbody {
                        @for run in asked {
                            @let phase = reported.iter().find(|r| r["id"] == run["id"]).map(|r| cell(&r["phase"])).unwrap_or_else(|| "Pending".into());
                            tr { td { (cell(&run["id"])) } td { (phase) } }
                        }
                    }
                }
            }
        }
        details.card {
            summary { "Spec and status" }
            pre { code { (pretty(&serde_json::json!({"spec": host["spec"], "status": host["status"]}))) } }
        }
        section.card {
            h2 { "Events" }
            @match events {
                Ok(list) => {
                    @let items = list["items"].as_array().unwrap_or(&empty);
                    @if items.is_empty() { p.empty { "None." } } @else {
                        table {
                            thead { tr { th { "Last seen" } th { "Type" } th { "Reason" } th { "Message" } } }
                            tbody {
                                @for e in newest_first(items) {
                                    tr { td { (cell(&e["lastTimestamp"])) } td { (cell(&e["type"])) } td { (cell(&e["reason"])) } td { (cell(&e["message"])) } }
                                }
                            }
                        }
                    }
                },
                Err(problem) => p.problem { (problem.message) },
            }
        }
        section #history.card {
            h2 { "History" }
            @match history {
                Ok((changes, blame)) => {
                    @if older {
                        p.more { "The newest " (changes.len()) " changes; blame looks no further back. Older ones: " code { "fleetdb history hosts/" (cell(&host["metadata"]["name"])) } }
                    }
                    ol.timeline {
                        @for change in changes.iter().rev() {
                            li {
                                div.change {
                                    strong.who { (change.user) }
                                    " " span.op { (change.operation) }
                                    " · " time { (change.time.clone().unwrap_or_default()) }
                                    " · revision " (change.revision)
                                }
                                details {
                                    summary { "What changed" }
                                    pre { code { (pretty(&change.patch)) } }
                                }
                            }
                        }
                    }
                    @if let Some(blame) = blame {
                        details #blame {
                            summary { "Who set each field (blame)" }
                            table {
                                thead { tr { th { "Field" } th { "Set by" } th { "When" } th { "Revision" } } }
                                tbody {
                                    @for (path, who) in blame {
                                        tr { td { code { (path) } } td { (who.user) } td { (who.time.clone().unwrap_or_default()) } td { (who.revision) } }
                                    }
                                }
                            }
                        }
                    }
                },
                Err(problem) => p.problem { (problem.message) },
            }
        }
    }
}
