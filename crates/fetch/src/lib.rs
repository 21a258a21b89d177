//! Fetchers: each runs for one `Source` object, enumerates the provider's hosts, and keeps
//! their `Host` records current.
//!
//! A fetcher owns the provider-observed fields only: the well-known labels, provider
//! annotations and `status`, written with server-side apply under its own field manager
//! (`fleetdb-fetch-<source>`), so a person's `spec.maintenance` or an extra label survive
//! every sync. A host created by a fetcher gets the observed role as its initial
//! `spec.role`; after that the spec is people's. Hosts that disappear from the provider are
//! marked `Terminated` with a condition saying when they were last seen — deleting them is a
//! decision for a person or a controller.
//!
//! Architecture invariant: fetchers are kube-rs clients of the API; they never reach into the
//! server or the store, so they work against any Kubernetes API server with the CRDs applied.

pub mod aws;
pub mod file;
pub mod sync;

use std::collections::BTreeMap;
use std::time::Duration;

use fleetdb_fleet::HostStatus;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The provider or the file could not be read.
    #[error("{0}")]
    Source(String),
    /// The API server refused or could not be reached.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// The Source object is not usable.
    #[error("source {name}: {message}")]
    Config { name: String, message: String },
}

/// One host as a provider reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedHost {
    /// Where it came from in the export (row line; 0 when not from a file).
    pub line: usize,
    /// The Host object's name.
    pub name: String,
    /// The role the provider records; becomes the initial `spec.role` of a new Host.
    pub role: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Observed fields (firstSeen, lastSeen and conditions are the syncer's).
    pub status: HostStatus,
}

/// A row that could not become a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowProblem {
    pub line: usize,
    pub message: String,
}

/// Everything one enumeration of a provider found.
#[derive(Clone, Debug, Default)]
pub struct Observation {
    pub hosts: Vec<ObservedHost>,
    pub problems: Vec<RowProblem>,
}

/// A Kubernetes label value made from free text (provider tags, export columns): characters
/// labels cannot hold become `-`; `None` when nothing usable is left or it is too long.
pub(crate) fn label_value(text: &str) -> Option<String> {
    let value: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let value = value
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned();
    (!value.is_empty() && value.len() <= 63).then_some(value)
}

/// What a fetcher's own command line allows it, whatever a Source record asks: records are
/// written through the API by others, so a path or an endpoint in one is never trusted as is.
#[derive(Clone, Debug, Default)]
pub struct FetcherPolicy {
    /// Directories whose files a file source may name (after symbolic links are resolved);
    /// none: file sources are refused.
    pub allowed_dirs: Vec<std::path::PathBuf>,
}

/// How often a source is synced when its spec gives no interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// How often a file source's modification time is checked between syncs.
const FILE_POLL: Duration = Duration::from_secs(2);

/// Enumerates the provider of `source` (read from the API).
async fn observe(
    source: &fleetdb_fleet::Source,
    name: &str,
    policy: &FetcherPolicy,
) -> Result<Observation, FetchError> {
    use fleetdb_fleet::SourceType;
    match source.spec.type_ {
        SourceType::File => {
            let file = source
                .spec
                .file
                .as_ref()
                .ok_or_else(|| FetchError::Config {
                    name: name.to_owned(),
                    message: "spec.file is required for a file source".into(),
                })?;
            let (path, format, datacenter) = (
                file.path.clone(),
                file.format.clone(),
                file.datacenter.clone(),
            );
            let source_name = name.to_owned();
            let allowed = policy.allowed_dirs.clone();
            tokio::task::spawn_blocking(move || {
                file::read(
                    &path,
                    &allowed,
                    format.as_deref(),
                    datacenter.as_deref(),
                    &source_name,
                )
            })
            .await
            .map_err(|e| FetchError::Source(format!("the file reader failed: {e}")))?
        }
        SourceType::Aws => {
            let settings = source.spec.aws.clone().unwrap_or_default();
            aws::observe(&settings, name).await
        }
    }
}

/// One sync of a source: observe, write, record the result in the Source status.
pub async fn sync_once(
    client: kube::Client,
    name: &str,
    policy: &FetcherPolicy,
) -> Result<sync::SyncReport, FetchError> {
    let syncer = sync::Syncer::new(client, name);
    let source = syncer.sources().get(name).await.map_err(|e| match e {
        kube::Error::Api(status) if status.code == 404 => FetchError::Config {
            name: name.to_owned(),
            message: "no such Source; create it first (kubectl apply -f source.yaml)".into(),
        },
        other => FetchError::Api(other),
    })?;
    let now = time::OffsetDateTime::now_utc();
    let outcome = match observe(&source, name, policy).await {
        Ok(observation) => syncer.sync(observation, now).await,
        Err(error) => Err(error),
    };
    syncer.record(outcome.as_ref(), now).await?;
    let report = outcome?;
    tracing::info!(
        source = name,
        seen = report.seen,
        created = report.created,
        updated = report.updated,
        unchanged = report.unchanged,
        gone = report.gone,
        bad_rows = report.problems.len(),
        writes = report.writes,
        "sync finished"
    );
    Ok(report)
}

/// Syncs `name` at its interval (and when a file source changes) until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    name: &str,
    policy: &FetcherPolicy,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut interval = DEFAULT_INTERVAL;
        let mut watched_file = None;
        match sync_once(client.clone(), name, policy).await {
            Ok(_) => backoff = Duration::from_secs(1),
            Err(error) => {
                tracing::warn!(source = name, %error, "sync failed; retrying with backoff");
                interval = backoff;
                backoff = (backoff * 2).min(DEFAULT_INTERVAL);
            }
        }
        if let Ok(source) = kube::Api::<fleetdb_fleet::Source>::all(client.clone())
            .get(name)
            .await
        {
            if let Some(configured) = source
                .spec
                .interval
                .as_deref()
                .and_then(fleetdb_fleet::parse_interval)
            {
                interval = interval.min(configured);
            }
            watched_file = source.spec.file.map(|f| f.path);
        }
        let modified = |path: &Option<String>| {
            path.as_ref()
                .and_then(|p| std::fs::metadata(p).ok())
                .and_then(|m| m.modified().ok())
        };
        let before = modified(&watched_file);
        let deadline = tokio::time::Instant::now() + interval;
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(FILE_POLL) => {}
            }
            if tokio::time::Instant::now() >= deadline || modified(&watched_file) != before {
                break;
            }
        }
    }
}
