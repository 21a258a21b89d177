//! The history commands — `fleetdb get --as-of`, `history`, `blame`, `diff`, `restore` —
//! as a kube-rs client of the API's history extension (`asOf` on gets and lists,
//! `GET …/NAME/history`). Each returns what it prints, so tests read the same text.
//!
//! Resources are named as kubectl names them (plural, singular, kind or short name,
//! optionally `.group`), resolved through discovery.

pub mod changes;
mod get;

pub use get::{CHUNK_SIZE, GetRequest, get};

use std::fmt::Write as _;

use anyhow::{Context, bail};
use kube::Client;
use serde::Serialize;
use serde_json::Value;

use changes::{Version, blame, changes, fleet_diff, touched};

/// Objects per page when a command lists.
pub const LIST_PAGE: usize = 500;

/// How a command prints its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Wide,
    Json,
    Yaml,
    Name,
}

/// A resource kind resolved through discovery.
#[derive(Clone, Debug)]
pub struct Resource {
    /// `/api/v1` or `/apis/GROUP/VERSION`.
    base: String,
    group: String,
    plural: String,
    kind: String,
    namespaced: bool,
}

impl Resource {
    fn collection(&self, namespace: Option<&str>) -> String {
        match namespace.filter(|_| self.namespaced) {
            Some(namespace) => format!("{}/namespaces/{namespace}/{}", self.base, self.plural),
            None => format!("{}/{}", self.base, self.plural),
        }
    }

    fn object(&self, namespace: &str, name: &str) -> String {
        format!("{}/{name}", self.collection(Some(namespace)))
    }

    /// `host.fleet.fleetdb.io/web-1`, as `kubectl get -o name` prints.
    fn name_of(&self, object: &Value) -> String {
        self.name_for(object["metadata"]["name"].as_str().unwrap_or_default())
    }

    /// [`Resource::name_of`] an object called `name`.
    fn name_for(&self, name: &str) -> String {
        let kind = self.kind.to_ascii_lowercase();
        if self.group.is_empty() {
            format!("{kind}/{name}")
        } else {
            format!("{kind}.{}/{name}", self.group)
        }
    }
}

/// Finds the resource a kubectl-style name means: `hosts`, `host`, `Host`, a short name, or
/// any of them with `.group`.
pub async fn resolve(client: &Client, name: &str) -> anyhow::Result<Resource> {
    let wanted = name.to_ascii_lowercase();
    let (wanted, group_wanted) = match wanted.split_once('.') {
        Some((resource, group)) => (resource.to_owned(), Some(group.to_owned())),
        None => (wanted, None),
    };
    let mut lists = Vec::new();
    if group_wanted.is_none() {
        lists.push((
            String::new(),
            "v1".to_owned(),
            client.list_core_api_resources("v1").await?,
        ));
    }
    for group in client.list_api_groups().await?.groups {
        if group_wanted.as_deref().is_some_and(|g| g != group.name) {
            continue;
        }
        let Some(version) = group
            .preferred_version
            .or_else(|| group.versions.first().cloned())
        else {
            continue;
        };
        let list = client
            .list_api_group_resources(&version.group_version)
            .await?;
        lists.push((group.name.clone(), version.version.clone(), list));
    }
    for (group, version, list) in lists {
        for resource in list.resources {
            if resource.name.contains('/') {
                continue;
            }
            let matches = resource.name == wanted
                || resource.singular_name.to_ascii_lowercase() == wanted
                || resource.kind.to_ascii_lowercase() == wanted
                || resource
                    .short_names
                    .iter()
                    .flatten()
                    .any(|short| *short == wanted);
            if matches {
                let base = if group.is_empty() {
                    format!("/api/{version}")
                } else {
                    format!("/apis/{group}/{version}")
                };
                return Ok(Resource {
                    base,
                    group,
                    plural: resource.name,
                    kind: resource.kind,
                    namespaced: resource.namespaced,
                });
            }
        }
    }
    bail!("the server doesn't have a resource type \"{name}\"")
}

/// Splits `RESOURCE/NAME`.
pub fn split_object(reference: &str) -> anyhow::Result<(&str, &str)> {
    match reference.split_once('/') {
        Some((resource, name)) if !resource.is_empty() && !name.is_empty() => Ok((resource, name)),
        _ => bail!("expected RESOURCE/NAME (for example hosts/web-1), got {reference:?}"),
    }
}

/// An instant as the API's `asOf` takes it: an RFC 3339 time and a revision pass through; a
/// duration (`90m`, `2h`, `7d`) means that long ago.
pub fn as_of(text: &str) -> anyhow::Result<String> {
    if text.parse::<i64>().is_ok()
        || time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).is_ok()
    {
        return Ok(text.to_owned());
    }
    match crate::tokens::parse_ttl(text) {
        Some(ago) if !ago.is_zero() => {
            let then = time::OffsetDateTime::now_utc() - ago;
            crate::rfc3339(then).context("the clock is out of range")
        }
        _ => bail!(
            "{text:?} is not an RFC 3339 time (2026-11-30T18:00:00Z), a revision, or a duration ago (2h, 7d)"
        ),
    }
}

async fn get_json(client: &Client, path: &str, accept: Option<&str>) -> anyhow::Result<Value> {
    let mut request = http::Request::get(path);
    if let Some(accept) = accept {
        request = request.header(http::header::ACCEPT, accept);
    }
    Ok(client.request::<Value>(request.body(Vec::new())?).await?)
}

fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let mut out = String::new();
    for (key, value) in pairs {
        if let Some(value) = value {
            out.push(if out.is_empty() { '?' } else { '&' });
            out.push_str(key);
            out.push('=');
            out.push_str(&percent(value));
        }
    }
    out
}

fn percent(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// Lines of cells aligned in columns, three spaces apart, as kubectl prints tables.
fn align(lines: &[Vec<String>]) -> String {
    let mut widths = Vec::new();
    widen(&mut widths, lines);
    aligned(lines, &widths)
}

/// Grows `widths` to fit every cell of `lines`.
fn widen(widths: &mut Vec<usize>, lines: &[Vec<String>]) {
    for line in lines {
        if widths.len() < line.len() {
            widths.resize(line.len(), 0);
        }
        for (c, value) in line.iter().enumerate() {
            widths[c] = widths[c].max(value.chars().count());
        }
    }
}

/// `lines` printed in columns of `widths` (the last cell of a line is not padded).
fn aligned(lines: &[Vec<String>], widths: &[usize]) -> String {
    let mut out = String::new();
    for line in lines {
        let mut text = String::new();
        for (c, value) in line.iter().enumerate() {
            if c + 1 == line.len() {
                text.push_str(value);
            } else {
                let width = widths.get(c).copied().unwrap_or(0);
                let _ = write!(text, "{value:<width$}   ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

fn serialize<T: Serialize>(value: &T, output: Output) -> anyhow::Result<String> {
    Ok(match output {
        Output::Yaml => serde_saphyr::to_string(value)?,
        _ => serde_json::to_string_pretty(value)? + "\n",
    })
}

/// Most versions the commands read of one object's history (pages are followed until then).
pub const MAX_VERSIONS: usize = 100_000;

/// Reads the history of `RESOURCE/NAME`, every page of it.
pub async fn versions(
    client: &Client,
    reference: &str,
    namespace: Option<&str>,
) -> anyhow::Result<(Resource, Vec<Version>)> {
    let (resource, name) = split_object(reference)?;
    let resource = resolve(client, resource).await?;
    let path = format!(
        "{}/history",
        resource.object(namespace.unwrap_or("default"), name)
    );
    // Pages come from the newest back, each oldest first.
    let mut pages: Vec<Vec<Version>> = Vec::new();
    let mut token = String::new();
    let mut total = 0;
    loop {
        let answer = get_json(
            client,
            &format!(
                "{path}{}",
                query(&[("continue", Some(token.as_str()).filter(|t| !t.is_empty()))])
            ),
            None,
        )
        .await?;
        let page = Version::parse_list(&answer);
        total += page.len();
        pages.push(page);
        match answer["metadata"]["continue"].as_str() {
            Some(next) if !next.is_empty() && total < MAX_VERSIONS => token = next.to_owned(),
            _ => break,
        }
    }
    Ok((resource, pages.into_iter().rev().flatten().collect()))
}

/// `fleetdb history RESOURCE/NAME`: each change with who made it and its JSON Patch.
pub async fn history(
    client: &Client,
    reference: &str,
    namespace: Option<&str>,
    output: Output,
) -> anyhow::Result<String> {
    let (_, versions) = versions(client, reference, namespace).await?;
    let changes = changes(&versions);
    if matches!(output, Output::Json | Output::Yaml) {
        return serialize(&changes, output);
    }
    let mut lines = vec![vec![
        "REVISION".to_owned(),
        "TIME".to_owned(),
        "USER".to_owned(),
        "OPERATION".to_owned(),
        "CHANGED".to_owned(),
    ]];
    for change in &changes {
        let touched = touched(&change.patch);
        lines.push(vec![
            change.revision.to_string(),
            change.time.clone().unwrap_or_else(|| "<unknown>".into()),
            change.user.clone(),
            change.operation.clone(),
            if touched.is_empty() {
                "<nothing>".into()
            } else {
                touched.join(", ")
            },
        ]);
    }
    Ok(align(&lines))
}

/// `fleetdb blame RESOURCE/NAME`: who set each field's current value.
pub async fn blame_of(
    client: &Client,
    reference: &str,
    namespace: Option<&str>,
    output: Output,
) -> anyhow::Result<String> {
    let (_, versions) = versions(client, reference, namespace).await?;
    let Some(blame) = blame(&versions) else {
        bail!("{reference} has been deleted; `fleetdb history {reference}` shows its changes");
    };
    if matches!(output, Output::Json | Output::Yaml) {
        return serialize(&blame, output);
    }
    let mut lines = vec![vec![
        "FIELD".to_owned(),
        "USER".to_owned(),
        "TIME".to_owned(),
        "REVISION".to_owned(),
    ]];
    for (path, who) in &blame {
        lines.push(vec![
            path.clone(),
            who.user.clone(),
            who.time.clone().unwrap_or_else(|| "<unknown>".into()),
            who.revision.to_string(),
        ]);
    }
    Ok(align(&lines))
}

/// What `fleetdb diff` compares.
pub struct DiffRequest<'a> {
    pub resource: &'a str,
    pub namespace: Option<&'a str>,
    pub all_namespaces: bool,
    pub from: &'a str,
    pub to: Option<&'a str>,
    pub label_selector: Option<&'a str>,
    pub output: Output,
}

/// `fleetdb diff RESOURCE --from T [--to T]`: objects added, removed and changed.
pub async fn diff(client: &Client, request: &DiffRequest<'_>) -> anyhow::Result<String> {
    let read = |instant: Option<&str>| {
        let output = Output::Json;
        let instant = instant.map(str::to_owned);
        async move {
            let mut text = Vec::new();
            get(
                client,
                &GetRequest {
                    resource: request.resource,
                    name: None,
                    namespace: request.namespace,
                    all_namespaces: request.all_namespaces,
                    as_of: instant.as_deref(),
                    label_selector: request.label_selector,
                    field_selector: None,
                    output,
                    chunk_size: 0,
                },
                &mut text,
            )
            .await?;
            let list: Value = serde_json::from_slice(&text)?;
            anyhow::Ok(list["items"].as_array().cloned().unwrap_or_default())
        }
    };
    let before = read(Some(request.from)).await?;
    let after = read(request.to).await?;
    let diff = fleet_diff(&before, &after);
    if matches!(request.output, Output::Json | Output::Yaml) {
        return serialize(&diff, request.output);
    }
    let mut out = String::new();
    for name in &diff.added {
        let _ = writeln!(out, "+ {name}");
    }
    for name in &diff.removed {
        let _ = writeln!(out, "- {name}");
    }
    for changed in &diff.changed {
        let _ = writeln!(
            out,
            "~ {}: {}",
            changed.name,
            touched(&changed.patch).join(", ")
        );
    }
    if out.is_empty() {
        out.push_str("No changes.\n");
    }
    Ok(out)
}

/// `fleetdb restore RESOURCE/NAME --to REVISION`: writes the version of that revision back
/// as a new change — a replace conditional on the version read now (so a change made
/// meanwhile is never overwritten), or a create when the object is gone. Status is not
/// restored (it is what agents and controllers observe). Returns the new revision.
pub async fn restore(
    client: &Client,
    reference: &str,
    namespace: Option<&str>,
    revision: i64,
) -> anyhow::Result<String> {
    let (resource, versions) = versions(client, reference, namespace).await?;
    let Some(version) = versions.iter().find(|v| v.revision == revision) else {
        bail!(
            "{reference} has no change at revision {revision} in history; `fleetdb history {reference}` lists them"
        );
    };
    let Some(old) = &version.object else {
        bail!("revision {revision} deleted {reference}; restore a revision that wrote it");
    };
    let mut object = changes::comparable(old);
    let (_, name) = split_object(reference)?;
    let namespace = namespace.unwrap_or("default");
    let current = versions.last().and_then(|v| v.object.as_ref());
    let metadata = object["metadata"]
        .as_object_mut()
        .context("the stored version has no metadata")?;
    let (method, path) = match current {
        Some(current) => {
            // Same incarnation fields as now, precondition on the version read.
            for field in ["uid", "creationTimestamp", "generation", "resourceVersion"] {
                match current["metadata"].get(field) {
                    Some(value) => metadata.insert(field.to_owned(), value.clone()),
                    None => metadata.remove(field),
                };
            }
            (http::Method::PUT, resource.object(namespace, name))
        }
        None => {
            for field in [
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "finalizers",
            ] {
                metadata.remove(field);
            }
            (http::Method::POST, resource.collection(Some(namespace)))
        }
    };
    let request = http::Request::builder()
        .method(method)
        .uri(format!("{path}?fieldManager=fleetdb-restore"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&object)?)?;
    let written: Value = client
        .request(request)
        .await
        .with_context(|| format!("cannot restore {reference} to revision {revision}"))?;
    Ok(format!(
        "{} restored to revision {revision} (now at revision {})\n",
        resource.name_of(&written),
        written["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("?")
    ))
}
