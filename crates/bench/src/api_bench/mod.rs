//! The whole-API benchmark: the real `fleetdb serve` (on the embedded store, and on an etcd
//! this program starts), driven over HTTPS with HTTP/2 the way kubectl and client-go drive
//! it, with raw etcd measured in the same run as the baseline.
//!
//! Scenarios (each can run alone; `--quick` shrinks every size so that a run fits in about a
//! minute, which is what CI runs — CI never judges the figures):
//!
//! * `writes`: durable creates of ~2 KiB Hosts at 1, 16 and 64 clients (one HTTP/2 connection
//!   each), against raw etcd puts of the same bytes at the same concurrency;
//! * `updates`: merge patches of status fields at 64 clients, 8 of them fighting over 4 hot
//!   hosts with resourceVersion preconditions (409 Conflict, re-read, retry);
//! * `lists`: the full list unpaged and paged by 500 (like kubectl), and a label-selected list
//!   returning 1% of the hosts;
//! * `watch`: N watchers, each on its own host (as host agents watch their record), plus a few
//!   watchers of every host, while a paced writer patches hosts: delay from a write's
//!   acknowledgement to its delivery, and whether any watcher was dropped or missed an event;
//! * `scale` and `footprint`: hosts loaded in steps (10k → 1M); at each step the create
//!   latency of that step, list times and the server's resident memory; then a restart for the
//!   cold start time;
//! * `hostile`: a CRD whose `pattern` nests bounded repetitions, and creates carrying a 1 MiB
//!   string against it: how long each create takes to be refused, and how host reads by
//!   other clients fare meanwhile against the same reads on an idle server; then updates of
//!   a 900 KiB ConfigMap beside watchers that never read: the server's memory before, during
//!   and after (watch histories and channels are bounded in bytes);
//! * `clients`: hostile clients — thousands of idle TLS connections without certificates, a
//!   client sending its headers one byte a second, one identity opening watches in a loop —
//!   beside an administrator's 64-client create load: its throughput and p99 undisturbed and
//!   during.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fleetdb_testkit::EtcdServer;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};

use crate::h2client::H2;
use crate::hosts;
use crate::server_process::{Backend, FleetdbProcess};
use crate::stats::Latencies;

mod adversity;

use adversity::{authorization, hostile, hostile_clients, large_objects};

const HOSTS: &str = "/apis/fleetdb.io/v1alpha1/hosts";
const MERGE_PATCH: &str = "application/merge-patch+json";
/// etcd's backend quota for the benchmark (its default of 2 GiB is too small for long runs).
const ETCD_QUOTA_BYTES: &str = "--quota-backend-bytes=8589934592";
/// Clients that load hosts before a measurement.
pub(crate) const LOAD_CLIENTS: usize = 64;
/// Watch streams multiplexed on one HTTP/2 connection (client-go multiplexes the same way).
const WATCHES_PER_CONNECTION: usize = 100;
/// Watchers of every host in the watch scenario (discovery, controllers).
const ALL_HOSTS_WATCHERS: usize = 10;
/// Writer connections of the watch scenario's paced writer.
const WATCH_WRITERS: usize = 32;
/// Clients of the updates scenario, and how many of them fight over the hot hosts.
const UPDATE_CLIENTS: usize = 64;
const CONFLICTING_CLIENTS: usize = 8;
const HOT_HOSTS: usize = 4;

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Scenario {
    Writes,
    Updates,
    Lists,
    Watch,
    Scale,
    Footprint,
    Hostile,
    Clients,
    Authz,
}

#[derive(clap::Args, Clone)]
pub struct ApiBenchArgs {
    /// Scenarios to run, comma separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    scenario: Vec<Scenario>,
    /// Small sizes, so that the whole run takes about a minute (what CI runs).
    #[arg(long)]
    quick: bool,
    /// Creates per concurrency level in `writes` (the 1-client level does a fifth).
    #[arg(long)]
    writes: Option<usize>,
    /// Patches in `updates`.
    #[arg(long)]
    updates: Option<usize>,
    /// Hosts in `lists`.
    #[arg(long)]
    list_hosts: Option<usize>,
    /// Watcher counts in `watch`, comma separated.
    #[arg(long, value_delimiter = ',')]
    watchers: Vec<usize>,
    /// Updates per second written during `watch`.
    #[arg(long)]
    watch_rate: Option<usize>,
    /// Seconds of updates in `watch`.
    #[arg(long)]
    watch_seconds: Option<u64>,
    /// Host counts of the `scale` curve and `footprint` steps, comma separated.
    #[arg(long, value_delimiter = ',')]
    steps: Vec<usize>,
    /// Measure fleetdb on the embedded store only (no etcd, no ratios).
    #[arg(long)]
    no_etcd: bool,
    /// Directory for the servers' data (default: a temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

struct Sizes {
    writes: usize,
    updates: usize,
    update_hosts: usize,
    list_hosts: usize,
    watchers: Vec<usize>,
    watch_rate: usize,
    watch_seconds: u64,
    steps: Vec<usize>,
}

impl ApiBenchArgs {
    fn sizes(&self) -> Sizes {
        let quick = self.quick;
        let pick = |given: Option<usize>, quick_size, full_size| {
            given.unwrap_or(if quick { quick_size } else { full_size })
        };
        let list = |given: &Vec<usize>, quick_size: &[usize], full_size: &[usize]| {
            if !given.is_empty() {
                given.clone()
            } else if quick {
                quick_size.to_vec()
            } else {
                full_size.to_vec()
            }
        };
        Sizes {
            writes: pick(self.writes, 500, 20_000),
            updates: pick(self.updates, 1_000, 40_000),
            update_hosts: if quick { 500 } else { 10_000 },
            list_hosts: pick(self.list_hosts, 5_000, 100_000),
            watchers: list(&self.watchers, &[200], &[1_000, 10_000]),
            watch_rate: pick(self.watch_rate, 200, 1_000),
            watch_seconds: self.watch_seconds.unwrap_or(if quick { 3 } else { 20 }),
            steps: list(&self.steps, &[1_000, 3_000], &[10_000, 100_000, 1_000_000]),
        }
    }
}

/// A run's data directory: the one given, or a temporary one removed at the end.
struct Workspace {
    root: PathBuf,
    _temp: Option<tempfile::TempDir>,
    next: AtomicUsize,
}

impl Workspace {
    fn new(given: Option<&Path>) -> anyhow::Result<Self> {
        Ok(match given {
            Some(root) => {
                std::fs::create_dir_all(root)?;
                Self {
                    root: root.to_owned(),
                    _temp: None,
                    next: AtomicUsize::new(0),
                }
            }
            None => {
                let temp = tempfile::tempdir()?;
                Self {
                    root: temp.path().to_owned(),
                    _temp: Some(temp),
                    next: AtomicUsize::new(0),
                }
            }
        })
    }

    /// A fresh directory for one server.
    fn server_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.join(format!("{n:02}-{name}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}

/// etcd for the comparisons, started on first use.
struct Etcd {
    server: Option<EtcdServer>,
    servers_started: usize,
}

impl Etcd {
    fn endpoint(&mut self) -> String {
        let server = self
            .server
            .get_or_insert_with(|| EtcdServer::start_with_args(&[ETCD_QUOTA_BYTES]));
        server.client_url().to_owned()
    }

    /// A fleetdb backend on this etcd under a prefix of its own.
    fn backend(&mut self) -> Backend {
        self.servers_started += 1;
        Backend::Etcd {
            endpoint: self.endpoint(),
            prefix: format!("/fleetdb-bench-{}", self.servers_started),
        }
    }
}

pub async fn run(args: ApiBenchArgs) -> anyhow::Result<()> {
    let sizes = args.sizes();
    let scenarios = if args.scenario.is_empty() {
        vec![
            Scenario::Writes,
            Scenario::Updates,
            Scenario::Lists,
            Scenario::Watch,
            Scenario::Scale,
            Scenario::Footprint,
            Scenario::Hostile,
            Scenario::Clients,
            Scenario::Authz,
        ]
    } else {
        args.scenario.clone()
    };
    let workspace = Workspace::new(args.data_dir.as_deref())?;
    let mut etcd = (!args.no_etcd).then_some(Etcd {
        server: None,
        servers_started: 0,
    });
    println!(
        "fleetdb API benchmark: {} cores, Host objects of {} bytes with {} labels",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        hosts::host_bytes("host-", 0).len(),
        hosts::host("host-", 0)["metadata"]["labels"]
            .as_object()
            .map_or(0, |l| l.len()),
    );
    if scenarios.contains(&Scenario::Writes) {
        writes(&workspace, etcd.as_mut(), sizes.writes).await?;
    }
    if scenarios.contains(&Scenario::Updates) {
        updates(&workspace, etcd.as_mut(), sizes.update_hosts, sizes.updates).await?;
    }
    if scenarios.contains(&Scenario::Lists) {
        lists(&workspace, etcd.as_mut(), sizes.list_hosts).await?;
    }
    if scenarios.contains(&Scenario::Watch) {
        for &watchers in &sizes.watchers {
            watch(
                &workspace,
                watchers,
                sizes.watch_rate,
                Duration::from_secs(sizes.watch_seconds),
            )
            .await?;
        }
    }
    let scale = scenarios.contains(&Scenario::Scale);
    let footprint = scenarios.contains(&Scenario::Footprint);
    if scale || footprint {
        grow(&workspace, &sizes.steps, scale, footprint).await?;
    }
    if scenarios.contains(&Scenario::Hostile) {
        hostile(&workspace, if args.quick { 3 } else { 20 }).await?;
        large_objects(&workspace, if args.quick { 100 } else { 600 }).await?;
    }
    if scenarios.contains(&Scenario::Authz) {
        authorization(&workspace, sizes.writes, sizes.list_hosts).await?;
    }
    if scenarios.contains(&Scenario::Clients) {
        let (idle, creates) = if args.quick {
            (200, 2_000)
        } else {
            (5_000, 20_000)
        };
        hostile_clients(&workspace, idle, creates).await?;
    }
    Ok(())
}

/// The servers a scenario compares: the embedded store, and etcd unless `--no-etcd`.
fn backends(etcd: Option<&mut Etcd>) -> Vec<Backend> {
    let mut backends = vec![Backend::Embedded];
    if let Some(etcd) = etcd {
        backends.push(etcd.backend());
    }
    backends
}

/// Throughput and latency of one measured batch of requests.
pub(crate) struct Measured {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Measured {
    fn new(count: usize, elapsed: Duration, mut latencies: Latencies) -> Self {
        Self {
            per_second: count as f64 / elapsed.as_secs_f64(),
            p50_ms: latencies.quantile_ms(0.5),
            p99_ms: latencies.quantile_ms(0.99),
        }
    }
}

/// Opens `n` connections.
async fn connections(server: &FleetdbProcess, n: usize) -> anyhow::Result<Vec<H2>> {
    connections_as(&server.credentials, n).await
}

/// Opens `n` connections with the given identity.
async fn connections_as(
    credentials: &crate::h2client::Credentials,
    n: usize,
) -> anyhow::Result<Vec<H2>> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(credentials.connect().await?);
    }
    Ok(clients)
}

/// Creates hosts `range` (named with `prefix`) with `clients` concurrent clients, each on its
/// own connection; every create must succeed.
pub(crate) async fn create_hosts(
    server: &FleetdbProcess,
    prefix: &str,
    range: std::ops::Range<usize>,
    clients: usize,
) -> anyhow::Result<Measured> {
    create_hosts_as(&server.credentials, prefix, range, clients).await
}

/// [`create_hosts`] with the given identity.
async fn create_hosts_as(
    credentials: &crate::h2client::Credentials,
    prefix: &str,
    range: std::ops::Range<usize>,
    clients: usize,
) -> anyhow::Result<Measured> {
    let connections = connections_as(credentials, clients).await?;
    let count = range.len();
    // Bodies are made before the clock starts: the client shares the machine's two cores.
    let bodies = bodies(prefix, range.clone(), clients);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for ((connection, bodies), client) in connections.into_iter().zip(bodies).zip(0..) {
        let prefix = prefix.to_owned();
        let range = range.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            for (i, body) in range.skip(client).step_by(clients).zip(bodies) {
                let sent = Instant::now();
                let (status, answer) = connection
                    .call(Method::POST, HOSTS, Some("application/json"), body)
                    .await?;
                latencies.record(sent.elapsed());
                anyhow::ensure!(
                    status == StatusCode::CREATED,
                    "create {}: {status}: {}",
                    hosts::name(&prefix, i),
                    String::from_utf8_lossy(&answer)
                );
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Latencies::default();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Measured::new(count, started.elapsed(), latencies))
}

/// Raw etcd puts of the same bytes, `clients` concurrent clients with a connection each.
async fn etcd_puts(endpoint: &str, level: usize, count: usize) -> anyhow::Result<Measured> {
    let mut clients = Vec::with_capacity(level);
    for _ in 0..level {
        clients.push(etcd_client::Client::connect([endpoint], None).await?);
    }
    let bodies = bodies("raw-", 0..count, level);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for ((mut client, bodies), client_index) in clients.into_iter().zip(bodies).zip(0..) {
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            for (i, body) in (0..count).skip(client_index).step_by(level).zip(bodies) {
                let key = format!("/raw-etcd/{level}/{}", hosts::name("raw-", i));
                let sent = Instant::now();
                client.put(key, body.to_vec(), None).await?;
                latencies.record(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Latencies::default();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Measured::new(count, started.elapsed(), latencies))
}

/// The create bodies of hosts `range`, dealt to `clients` clients round-robin.
fn bodies(prefix: &str, range: std::ops::Range<usize>, clients: usize) -> Vec<Vec<Bytes>> {
    let mut dealt = vec![Vec::new(); clients];
    for (n, i) in range.enumerate() {
        dealt[n % clients].push(hosts::host_bytes(prefix, i));
    }
    dealt
}

const LEVELS: [usize; 3] = [1, 16, 64];

fn level_count(writes: usize, level: usize) -> usize {
    if level == 1 {
        (writes / 5).max(1)
    } else {
        writes
    }
}

async fn writes(
    workspace: &Workspace,
    etcd: Option<&mut Etcd>,
    writes: usize,
) -> anyhow::Result<()> {
    println!("\n## writes: durable creates through the HTTPS API ({writes} per level)");
    let mut embedded = Vec::new();
    {
        let server =
            FleetdbProcess::start(&workspace.server_dir("writes")?, Backend::Embedded).await?;
        for level in LEVELS {
            let prefix = format!("w{level}-");
            embedded
                .push(create_hosts(&server, &prefix, 0..level_count(writes, level), level).await?);
        }
    }
    let mut raw = Vec::new();
    let mut on_etcd = Vec::new();
    if let Some(etcd) = etcd {
        let endpoint = etcd.endpoint();
        for level in LEVELS {
            raw.push(etcd_puts(&endpoint, level, level_count(writes, level)).await?);
        }
        let server =
            FleetdbProcess::start(&workspace.server_dir("writes-etcd")?, etcd.backend()).await?;
        for level in LEVELS {
            let prefix = format!("w{level}-");
            on_etcd
                .push(create_hosts(&server, &prefix, 0..level_count(writes, level), level).await?);
        }
    }
    println!();
    println!(
        "| clients | fleetdb creates/s | p50 ms | p99 ms | raw etcd puts/s | p50 ms | p99 ms | fleetdb / raw etcd | fleetdb on etcd creates/s | p50 ms | p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (index, level) in LEVELS.iter().enumerate() {
        let e = &embedded[index];
        let (raw_cells, ratio) = match raw.get(index) {
            Some(r) => (
                format!("{:.0} | {:.2} | {:.2}", r.per_second, r.p50_ms, r.p99_ms),
                format!("{:.2}×", e.per_second / r.per_second),
            ),
            None => ("– | – | –".to_owned(), "–".to_owned()),
        };
        let etcd_cells = match on_etcd.get(index) {
            Some(f) => format!("{:.0} | {:.2} | {:.2}", f.per_second, f.p50_ms, f.p99_ms),
            None => "– | – | –".to_owned(),
        };
        println!(
            "| {level} | {:.0} | {:.2} | {:.2} | {raw_cells} | {ratio} | {etcd_cells} |",
            e.per_second, e.p50_ms, e.p99_ms
        );
    }
    Ok(())
}

/// Patches host status fields with 64 clients; 8 of them fight over the hot hosts with
/// resourceVersion preconditions.
async fn update_storm(
    server: &FleetdbProcess,
    hosts_loaded: usize,
    updates: usize,
) -> anyhow::Result<(Measured, usize, usize)> {
    let connections = connections(server, UPDATE_CLIENTS).await?;
    let conflicts = Arc::new(AtomicUsize::new(0));
    let contended = Arc::new(AtomicUsize::new(0));
    // The patches are drawn from one count, so every client works until the last is done
    // (with a share each, the run's end was the contended clients' tail, 8 clients alone).
    let claimed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (client, connection) in connections.into_iter().enumerate() {
        let conflicts = conflicts.clone();
        let contended = contended.clone();
        let claimed = claimed.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            let mut rng = (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut resource_version: Option<String> = None;
            let mut number = claimed.fetch_add(1, Ordering::Relaxed);
            while number < updates {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let conflicting = client < CONFLICTING_CLIENTS;
                let index = if conflicting {
                    (rng as usize) % HOT_HOSTS
                } else {
                    HOT_HOSTS + (rng as usize) % (hosts_loaded - HOT_HOSTS)
                };
                let name = hosts::name("u-", index);
                let path = format!("{HOSTS}/{name}/status");
                let mut patch = serde_json::json!({"status": {
                    "state": "Running",
                    "lastSeen": format!("2026-11-22T00:00:00.{number:09}Z"),
                }});
                if conflicting {
                    let rv = match resource_version.take() {
                        Some(rv) => rv,
                        None => {
                            let body = connection.get(&format!("{HOSTS}/{name}")).await?;
                            resource_version_of(&body).unwrap_or_default()
                        }
                    };
                    patch["metadata"] = serde_json::json!({"resourceVersion": rv});
                    contended.fetch_add(1, Ordering::Relaxed);
                }
                let sent = Instant::now();
                let (status, body) = connection
                    .call(
                        Method::PATCH,
                        &path,
                        Some(MERGE_PATCH),
                        Bytes::from(patch.to_string()),
                    )
                    .await?;
                match status {
                    StatusCode::OK => {
                        latencies.record(sent.elapsed());
                        number = claimed.fetch_add(1, Ordering::Relaxed);
                    }
                    StatusCode::CONFLICT if conflicting => {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        anyhow::bail!("patch {name}: {other}: {}", String::from_utf8_lossy(&body))
                    }
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Latencies::default();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok((
        Measured::new(updates, started.elapsed(), latencies),
        contended.load(Ordering::Relaxed),
        conflicts.load(Ordering::Relaxed),
    ))
}

/// The value of the first string field `name` in JSON bytes (no escapes expected: used for
/// resourceVersions and continue tokens).
fn string_field(body: &[u8], name: &str) -> Option<String> {
    let needle = format!("\"{name}\":\"");
    let start = find(body, needle.as_bytes())? + needle.len();
    let end = body[start..].iter().position(|&b| b == b'"')?;
    Some(String::from_utf8_lossy(&body[start..start + end]).into_owned())
}

/// The `metadata.resourceVersion` of an object (the first one in the bytes).
fn resource_version_of(body: &[u8]) -> Option<String> {
    string_field(body, "resourceVersion")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

async fn updates(
    workspace: &Workspace,
    etcd: Option<&mut Etcd>,
    hosts_loaded: usize,
    updates: usize,
) -> anyhow::Result<()> {
    println!(
        "\n## updates: {updates} merge patches of status at {UPDATE_CLIENTS} clients over {hosts_loaded} hosts; \
         {CONFLICTING_CLIENTS} clients fight over {HOT_HOSTS} hot hosts with resourceVersion preconditions"
    );
    let mut rows = Vec::new();
    let backends = backends(etcd);
    for backend in backends {
        let server =
            FleetdbProcess::start(&workspace.server_dir("updates")?, backend.clone()).await?;
        create_hosts(&server, "u-", 0..hosts_loaded, LOAD_CLIENTS).await?;
        let (measured, contended, conflicts) = update_storm(&server, hosts_loaded, updates).await?;
        rows.push((backend.label(), measured, contended, conflicts));
    }
    println!();
    println!("| server | patches/s | p50 ms | p99 ms | precondition patches sent | 409 Conflict |");
    println!("|---|---|---|---|---|---|");
    for (label, m, contended, conflicts) in &rows {
        println!(
            "| {label} | {:.0} | {:.2} | {:.2} | {contended} | {conflicts} |",
            m.per_second, m.p50_ms, m.p99_ms
        );
    }
    Ok(())
}

/// Counts the occurrences of a needle in a streamed body without holding the body.
struct Counter {
    needle: &'static [u8],
    carry: Vec<u8>,
    count: usize,
    bytes: usize,
}

impl Counter {
    fn new(needle: &'static [u8]) -> Self {
        Self {
            needle,
            carry: Vec::new(),
            count: 0,
            bytes: 0,
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len();
        let mut window = std::mem::take(&mut self.carry);
        window.extend_from_slice(chunk);
        let n = self.needle.len();
        let mut at = 0;
        while let Some(found) = find(&window[at..], self.needle) {
            self.count += 1;
            at += found + n;
        }
        let keep = window.len().saturating_sub(n - 1).max(at);
        self.carry = window[keep..].to_vec();
    }
}

/// One GET whose body is streamed and counted (items of kind Host), not kept.
async fn timed_list(
    client: &H2,
    path: &str,
    accept_table: bool,
) -> anyhow::Result<(Duration, usize, usize, Option<String>)> {
    let started = Instant::now();
    let response = if accept_table {
        client.start_accepting(
            Method::GET,
            path,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
    } else {
        client.start_accepting(Method::GET, path, "application/json")
    }
    .await?;
    anyhow::ensure!(
        response.status() == StatusCode::OK,
        "GET {path}: {}",
        response.status()
    );
    let mut body = response.into_body();
    let mut counter = Counter::new(if accept_table {
        b"\"cells\":["
    } else {
        b"\"kind\":\"Host\""
    });
    // The chunks are kept and counted after the clock stops: the client shares the cores.
    let mut chunks = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            chunks.push(data);
        }
    }
    let elapsed = started.elapsed();
    let mut head = Vec::new();
    for data in &chunks {
        if head.len() < LIST_HEAD_BYTES {
            let take = data.len().min(LIST_HEAD_BYTES - head.len());
            head.extend_from_slice(&data[..take]);
        }
        counter.feed(data);
    }
    Ok((elapsed, counter.count, counter.bytes, continue_of(&head)))
}

/// The continue token of a list response, from the head of its body.
fn continue_of(head: &[u8]) -> Option<String> {
    string_field(head, "continue")
}

/// How much of a list response's start is kept to find its continue token (a Table's
/// metadata comes after its column definitions).
const LIST_HEAD_BYTES: usize = 16 * 1024;

/// A paged list (limit=500 like kubectl) from first to last page. The time is the sum of
/// the requests' times (each from sending it to its body's last byte): the counting of each
/// page's items, which this client does on the cores the server shares, is left out, as it
/// is for the unpaged lists.
async fn paged_list(
    client: &H2,
    query: &str,
    table: bool,
) -> anyhow::Result<(Duration, usize, usize)> {
    let mut spent = Duration::ZERO;
    let mut token: Option<String> = None;
    let (mut items, mut bytes) = (0, 0);
    loop {
        let mut path = format!("{HOSTS}?limit=500{query}");
        if let Some(token) = &token {
            path.push_str("&continue=");
            path.push_str(token);
        }
        let (elapsed, count, size, next) = timed_list(client, &path, table).await?;
        spent += elapsed;
        items += count;
        bytes += size;
        match next {
            Some(next) if !next.is_empty() => token = Some(next),
            _ => break,
        }
    }
    Ok((spent, items, bytes))
}

/// List figures of one server holding `hosts` hosts.
struct ListFigures {
    unpaged: Duration,
    unpaged_bytes: usize,
    paged: Duration,
    table_paged: Duration,
    /// The whole Table in one response (streamed by the server).
    table_unpaged: Duration,
    /// `fleetdb get hosts` and `fleetdb get hosts -o name`, wall time of the command.
    command_table: Duration,
    command_names: Duration,
    selected: Duration,
    selected_paged: Duration,
    selected_items: usize,
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

async fn measure_lists(
    server: &FleetdbProcess,
    hosts: usize,
    runs: usize,
) -> anyhow::Result<ListFigures> {
    let client = server.connect().await?;
    let selector = hosts::one_percent_selector();
    let expected_selected = (0..hosts).filter(|i| i % hosts::RACKS == 42).count();
    let (mut unpaged, mut paged, mut table_paged, mut selected, mut selected_paged) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut table_unpaged, mut command_table, mut command_names) =
        (Vec::new(), Vec::new(), Vec::new());
    let mut unpaged_bytes = 0;
    for _ in 0..runs {
        let (time, items, bytes, _) = timed_list(&client, HOSTS, false).await?;
        anyhow::ensure!(
            items == hosts,
            "the unpaged list had {items} hosts of {hosts}"
        );
        unpaged.push(time);
        unpaged_bytes = bytes;
        let (time, items, _) = paged_list(&client, "", false).await?;
        anyhow::ensure!(
            items == hosts,
            "the paged list had {items} hosts of {hosts}"
        );
        paged.push(time);
        let (time, rows, _) = paged_list(&client, "", true).await?;
        anyhow::ensure!(rows == hosts, "the paged Table had {rows} rows of {hosts}");
        table_paged.push(time);
        let (time, rows, _, _) = timed_list(&client, HOSTS, true).await?;
        anyhow::ensure!(
            rows == hosts,
            "the unpaged Table had {rows} rows of {hosts}"
        );
        table_unpaged.push(time);
        // The header line, then one line per host.
        let (time, lines) = fleetdb_get(server, &["get", "hosts"])?;
        anyhow::ensure!(lines == hosts + 1, "fleetdb get printed {lines} lines");
        command_table.push(time);
        let (time, lines) = fleetdb_get(server, &["get", "hosts", "-o", "name"])?;
        anyhow::ensure!(lines == hosts, "fleetdb get -o name printed {lines} lines");
        command_names.push(time);
    }
    for _ in 0..runs.max(5) {
        let (time, items, _, _) =
            timed_list(&client, &format!("{HOSTS}?labelSelector={selector}"), false).await?;
        anyhow::ensure!(
            items == expected_selected,
            "the selected list had {items} hosts, not {expected_selected}"
        );
        selected.push(time);
        let (time, items, _) =
            paged_list(&client, &format!("&labelSelector={selector}"), false).await?;
        anyhow::ensure!(
            items == expected_selected,
            "the paged selected list had {items} hosts"
        );
        selected_paged.push(time);
    }
    Ok(ListFigures {
        unpaged: median(unpaged),
        unpaged_bytes,
        paged: median(paged),
        table_paged: median(table_paged),
        table_unpaged: median(table_unpaged),
        command_table: median(command_table),
        command_names: median(command_names),
        selected: median(selected),
        selected_paged: median(selected_paged),
        selected_items: expected_selected,
    })
}

/// Runs the `fleetdb` binary with the server's admin kubeconfig; its wall time and the lines
/// it printed.
fn fleetdb_get(server: &FleetdbProcess, args: &[&str]) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let output = std::process::Command::new(crate::server_process::fleetdb_binary()?)
        .args(args)
        .arg("--kubeconfig")
        .arg(server.data_dir.join("admin.kubeconfig"))
        .stderr(std::process::Stdio::inherit())
        .output()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        output.status.success(),
        "fleetdb {args:?}: {}",
        output.status
    );
    let lines = output.stdout.iter().filter(|b| **b == b'\n').count();
    Ok((elapsed, lines))
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    }
}

async fn lists(workspace: &Workspace, etcd: Option<&mut Etcd>, hosts: usize) -> anyhow::Result<()> {
    println!("\n## lists: {hosts} hosts (median of 3 runs; selected lists: of 5)");
    let backends = backends(etcd);
    let mut figures = Vec::new();
    for backend in backends {
        let server =
            FleetdbProcess::start(&workspace.server_dir("lists")?, backend.clone()).await?;
        create_hosts(&server, "host-", 0..hosts, LOAD_CLIENTS).await?;
        figures.push((backend.label(), measure_lists(&server, hosts, 3).await?));
    }
    println!();
    println!(
        "| server | list (unpaged) ms | MB/s | list (limit=500, all pages) ms | kubectl-style Table (limit=500, all pages) ms | tables: Table unpaged ms | `fleetdb get hosts` ms | `fleetdb get hosts -o name` ms | 1% selected ({} hosts) ms | 1% selected, limit=500 ms |",
        figures[0].1.selected_items
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (label, f) in &figures {
        println!(
            "| {label} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            ms(f.unpaged),
            f.unpaged_bytes as f64 / f.unpaged.as_secs_f64() / 1e6,
            ms(f.paged),
            ms(f.table_paged),
            ms(f.table_unpaged),
            ms(f.command_table),
            ms(f.command_names),
            ms(f.selected),
            ms(f.selected_paged),
        );
    }
    Ok(())
}

/// What one watcher received: (resourceVersion, when).
type Deliveries = Vec<(i64, Instant)>;

/// One watch stream; returns its deliveries and whether the server ended it before `stop`.
async fn watcher(
    client: H2,
    path: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(Deliveries, bool)> {
    let response = client
        .start_accepting(Method::GET, &path, "application/json")
        .await?;
    anyhow::ensure!(
        response.status() == StatusCode::OK,
        "watch: {}",
        response.status()
    );
    let mut body = response.into_body();
    let mut deliveries = Vec::new();
    let mut line = Vec::new();
    let mut stop = stop;
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok((deliveries, false)),
            frame = body.frame() => {
                let Some(frame) = frame else { return Ok((deliveries, true)) };
                let Ok(data) = frame?.into_data() else { continue };
                let now = Instant::now();
                line.extend_from_slice(&data);
                while let Some(end) = line.iter().position(|&b| b == b'\n') {
                    let event: Vec<u8> = line.drain(..=end).collect();
                    if event.starts_with(b"{\"type\":\"BOOKMARK\"") {
                        continue;
                    }
                    if event.starts_with(b"{\"type\":\"ERROR\"") {
                        return Ok((deliveries, true));
                    }
                    if let Some(rv) = resource_version_of(&event).and_then(|rv| rv.parse().ok()) {
                        deliveries.push((rv, now));
                    }
                }
            }
        }
    }
}

async fn watch(
    workspace: &Workspace,
    watchers: usize,
    rate: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let updates = (rate as f64 * duration.as_secs_f64()) as usize;
    println!(
        "\n## watch: {watchers} watchers of one host each + {ALL_HOSTS_WATCHERS} of every host, {rate} updates/s for {} s",
        duration.as_secs()
    );
    let server = FleetdbProcess::start(&workspace.server_dir("watch")?, Backend::Embedded).await?;
    create_hosts(&server, "host-", 0..watchers, LOAD_CLIENTS).await?;
    let probe = server.connect().await?;
    let start_rv =
        resource_version_of(&probe.get(&format!("{HOSTS}?limit=1")).await?).unwrap_or_default();

    // Open every watch from the same revision (like agents resuming after their list).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut name_watchers = Vec::with_capacity(watchers);
    let mut all_watchers = Vec::new();
    let connection_count = (watchers + ALL_HOSTS_WATCHERS).div_ceil(WATCHES_PER_CONNECTION);
    let pool = connections(&server, connection_count).await?;
    let opened = Instant::now();
    for i in 0..watchers {
        let client = pool[i / WATCHES_PER_CONNECTION].clone();
        let path = format!(
            "{HOSTS}?watch=true&allowWatchBookmarks=true&resourceVersion={start_rv}&fieldSelector=metadata.name%3D{}",
            hosts::name("host-", i)
        );
        name_watchers.push(tokio::spawn(watcher(client, path, stop_rx.clone())));
    }
    for i in 0..ALL_HOSTS_WATCHERS {
        let client = pool[(watchers + i) / WATCHES_PER_CONNECTION].clone();
        let path =
            format!("{HOSTS}?watch=true&allowWatchBookmarks=true&resourceVersion={start_rv}");
        all_watchers.push(tokio::spawn(watcher(client, path, stop_rx.clone())));
    }
    // Let the streams open before writing.
    tokio::time::sleep(Duration::from_millis(500) + Duration::from_micros(watchers as u64 * 50))
        .await;
    let open_time = opened.elapsed();

    // The paced writer: update k is due at k/rate seconds and targets host k*7919 mod watchers.
    let writers = connections(&server, WATCH_WRITERS).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (w, client) in writers.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut acks: Vec<(i64, usize, Instant)> = Vec::new();
            for k in (w..updates).step_by(WATCH_WRITERS) {
                let due = started + Duration::from_secs_f64(k as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
                let host = k * 7919 % watchers;
                let patch = serde_json::json!({"status": {"lastSeen": format!("2026-11-22T00:00:00.{k:09}Z")}});
                let (status, body) = client
                    .call(
                        Method::PATCH,
                        &format!("{HOSTS}/{}/status", hosts::name("host-", host)),
                        Some(MERGE_PATCH),
                        Bytes::from(patch.to_string()),
                    )
                    .await?;
                let acked = Instant::now();
                anyhow::ensure!(status == StatusCode::OK, "patch: {status}");
                let rv = resource_version_of(&body)
                    .and_then(|rv| rv.parse().ok())
                    .unwrap_or_default();
                acks.push((rv, host, acked));
            }
            anyhow::Ok(acks)
        }));
    }
    let mut acks = HashMap::new();
    for task in tasks {
        for (rv, host, at) in task.await?? {
            acks.insert(rv, (host, at));
        }
    }
    let write_time = started.elapsed();
    // Give the last deliveries time to arrive, then close every watch.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(true);

    let mut dropped = 0;
    let mut missing = 0;
    let mut name_delays = Latencies::default();
    let mut all_delays = Latencies::default();
    let mut expected_per_host: Vec<Vec<i64>> = vec![Vec::new(); watchers];
    for (&rv, &(host, _)) in &acks {
        expected_per_host[host].push(rv);
    }
    let delay = |rv: i64, at: Instant| -> Option<Duration> {
        acks.get(&rv)
            .map(|&(_, acked)| at.saturating_duration_since(acked))
    };
    for (host, task) in name_watchers.into_iter().enumerate() {
        let (deliveries, ended_early) = task.await??;
        dropped += usize::from(ended_early);
        let received: std::collections::HashSet<i64> = deliveries.iter().map(|d| d.0).collect();
        missing += expected_per_host[host]
            .iter()
            .filter(|rv| !received.contains(rv))
            .count();
        for (rv, at) in deliveries {
            if let Some(d) = delay(rv, at) {
                name_delays.record(d);
            }
        }
    }
    for task in all_watchers {
        let (deliveries, ended_early) = task.await??;
        dropped += usize::from(ended_early);
        let received: std::collections::HashSet<i64> = deliveries.iter().map(|d| d.0).collect();
        missing += acks.keys().filter(|rv| !received.contains(rv)).count();
        for (rv, at) in deliveries {
            if let Some(d) = delay(rv, at) {
                all_delays.record(d);
            }
        }
    }
    println!();
    println!(
        "| watchers | updates/s achieved | opened in s | per-host watchers p50 / p99 / max ms | all-host watchers p50 / p99 ms | dropped watchers | missed events | server RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {watchers} + {ALL_HOSTS_WATCHERS} | {:.0} | {:.1} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} | {dropped} | {missing} | {:.0} |",
        acks.len() as f64 / write_time.as_secs_f64(),
        open_time.as_secs_f64(),
        name_delays.quantile_ms(0.5),
        name_delays.quantile_ms(0.99),
        name_delays.quantile_ms(1.0),
        all_delays.quantile_ms(0.5),
        all_delays.quantile_ms(0.99),
        server.rss_bytes()? as f64 / (1 << 20) as f64,
    );
    Ok(())
}

/// Loads hosts in steps; prints the scale curve and/or the footprint.
async fn grow(
    workspace: &Workspace,
    steps: &[usize],
    scale: bool,
    footprint: bool,
) -> anyhow::Result<()> {
    let largest = steps.iter().copied().max().unwrap_or(0);
    println!("\n## scale and footprint: hosts loaded in steps up to {largest} (embedded store)");
    let server = FleetdbProcess::start(&workspace.server_dir("scale")?, Backend::Embedded).await?;
    let empty_rss = server.rss_bytes()?;
    let mut loaded = 0;
    let mut rows = Vec::new();
    for &step in steps {
        if step <= loaded {
            continue;
        }
        let creates = create_hosts(&server, "host-", loaded..step, LOAD_CLIENTS).await?;
        loaded = step;
        // Let the store finish applying the load before reading memory.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = server.rss_bytes()?;
        let lists = if scale {
            Some(measure_lists(&server, loaded, 1).await?)
        } else {
            None
        };
        let rss_after_lists = server.rss_bytes()?;
        let disk = directory_bytes(&server.data_dir);
        rows.push((step, creates, rss, rss_after_lists, lists, disk));
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    if scale {
        println!();
        println!(
            "| hosts | creates/s (this step) | p50 ms | p99 ms | list unpaged ms | list limit=500 ms | 1% selected ms | RSS MiB |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for (hosts, creates, rss, _, lists, _) in &rows {
            let Some(l) = lists else { continue };
            println!(
                "| {hosts} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {:.0} |",
                creates.per_second,
                creates.p50_ms,
                creates.p99_ms,
                ms(l.unpaged),
                ms(l.paged),
                ms(l.selected),
                mib(*rss)
            );
        }
    }
    if footprint {
        let restarted = server.restart().await?;
        let cold_start = restarted.started_in;
        let rss_cold = restarted.rss_bytes()?;
        println!();
        println!(
            "| hosts | RSS after load MiB | RSS after lists MiB | RSS bytes per host | data on disk MiB |"
        );
        println!("|---|---|---|---|---|");
        for (hosts, _, rss, after, _, disk) in &rows {
            println!(
                "| {hosts} | {:.0} | {:.0} | {:.0} | {:.0} |",
                mib(*rss),
                mib(*after),
                rss.saturating_sub(empty_rss) as f64 / *hosts as f64,
                mib(*disk)
            );
        }
        println!(
            "\nEmpty server: {:.0} MiB. Cold start with {loaded} hosts: {:.2} s to the first answered Host list; RSS then {:.0} MiB.",
            mib(empty_rss),
            cold_start.as_secs_f64(),
            mib(rss_cold)
        );
    }
    Ok(())
}

/// Bytes of every file under `dir`.
fn directory_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_finds_needles_across_chunk_boundaries() {
        let mut counter = Counter::new(b"\"kind\":\"Host\"");
        let body =
            br#"{"kind":"HostList","items":[{"kind":"Host"},{"kind":"Host"},{"kind":"Host"}]}"#;
        for chunk in body.chunks(5) {
            counter.feed(chunk);
        }
        assert_eq!(counter.count, 3);
        assert_eq!(counter.bytes, body.len());
    }

    #[test]
    fn tokens_and_versions_are_read_from_bodies() {
        let head = br#"{"metadata":{"resourceVersion":"42","continue":"abc_-"},"items":[]}"#;
        assert_eq!(continue_of(head).as_deref(), Some("abc_-"));
        assert_eq!(resource_version_of(head).as_deref(), Some("42"));
        assert_eq!(continue_of(b"{}"), None);
    }
}
