//! The store benchmark: the same workload against the embedded engine and against a real etcd
//! started by this program, in one run, printed as a table with ratios.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fleetdb_store::embedded::EmbeddedStore;
use fleetdb_store::etcd::{EtcdOptions, EtcdStore};
use fleetdb_store::{Condition, Scan, Store};
use fleetdb_testkit::EtcdServer;
use futures::StreamExt;

use crate::stats::{Better, Latencies, Row, print_table};

/// Bytes of each value written (the size of a typical Host object).
const VALUE_BYTES: usize = 2048;
/// Page size of the timed prefix range.
const RANGE_PAGE: usize = 5000;
/// etcd's backend quota for the benchmark (its default of 2 GiB is too small for long runs).
const ETCD_QUOTA_BYTES: &str = "--quota-backend-bytes=8589934592";

#[derive(clap::Args, Clone)]
pub struct StoreBenchArgs {
    /// Small sizes, so that a run takes seconds (what CI runs).
    #[arg(long)]
    quick: bool,
    /// Sequential durable puts.
    #[arg(long)]
    sequential_puts: Option<usize>,
    /// Durable puts in each concurrent measurement.
    #[arg(long)]
    concurrent_puts: Option<usize>,
    /// Keys under the prefix of the timed range.
    #[arg(long)]
    range_keys: Option<usize>,
    /// Events in the watch latency measurement.
    #[arg(long)]
    watch_events: Option<usize>,
    /// Measure only the embedded store (for quick experiments; no ratios).
    #[arg(long)]
    embedded_only: bool,
    /// Directory for the embedded store's data (default: a temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Clone, Copy)]
struct Sizes {
    sequential_puts: usize,
    concurrent_puts: usize,
    range_keys: usize,
    watch_events: usize,
}

impl StoreBenchArgs {
    fn sizes(&self) -> Sizes {
        let (s, c, r, w) = if self.quick {
            (200, 2000, 5000, 200)
        } else {
            (3000, 50_000, 100_000, 3000)
        };
        Sizes {
            sequential_puts: self.sequential_puts.unwrap_or(s),
            concurrent_puts: self.concurrent_puts.unwrap_or(c),
            range_keys: self.range_keys.unwrap_or(r),
            watch_events: self.watch_events.unwrap_or(w),
        }
    }
}

/// Figures of one backend.
struct Figures {
    sequential: Throughput,
    concurrent16: Throughput,
    concurrent64: Throughput,
    range_seconds: f64,
    range_keys_per_second: f64,
    watch_p50_ms: f64,
    watch_p99_ms: f64,
}

struct Throughput {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

pub async fn run(args: StoreBenchArgs) -> anyhow::Result<()> {
    let sizes = args.sizes();
    println!(
        "fleetdb store benchmark: {} sequential puts, {} puts per concurrent measurement, \
         range over {} keys, {} watch events; values of {VALUE_BYTES} bytes; {} CPUs",
        sizes.sequential_puts,
        sizes.concurrent_puts,
        sizes.range_keys,
        sizes.watch_events,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );

    let temp = tempfile::tempdir()?;
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.path().join("embedded"));
    let embedded: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir)?);
    println!(
        "\n== embedded (journal + SQLite, group commit) in {}",
        dir.display()
    );
    let embedded_figures = measure(embedded, sizes).await?;
    if args.embedded_only {
        return Ok(());
    }

    let etcd_server = EtcdServer::start_with_args(&[ETCD_QUOTA_BYTES]);
    let etcd: Arc<dyn Store> = Arc::new(
        EtcdStore::connect(EtcdOptions::new(vec![etcd_server.client_url().to_owned()])).await?,
    );
    println!(
        "\n== etcd (fsync per commit) at {}",
        etcd_server.client_url()
    );
    let etcd_figures = measure(etcd, sizes).await?;

    let e = &embedded_figures;
    let d = &etcd_figures;
    let mut rows = Vec::new();
    for (name, a, b) in [
        ("sequential puts", &e.sequential, &d.sequential),
        ("16 writers", &e.concurrent16, &d.concurrent16),
        ("64 writers", &e.concurrent64, &d.concurrent64),
    ] {
        rows.push(Row {
            name: format!("{name}: throughput"),
            unit: "puts/s",
            embedded: a.per_second,
            etcd: b.per_second,
            better: Better::Higher,
        });
        rows.push(Row {
            name: format!("{name}: latency p50"),
            unit: "ms",
            embedded: a.p50_ms,
            etcd: b.p50_ms,
            better: Better::Lower,
        });
        rows.push(Row {
            name: format!("{name}: latency p99"),
            unit: "ms",
            embedded: a.p99_ms,
            etcd: b.p99_ms,
            better: Better::Lower,
        });
    }
    rows.push(Row {
        name: format!("prefix range over {} keys", sizes.range_keys),
        unit: "s",
        embedded: e.range_seconds,
        etcd: d.range_seconds,
        better: Better::Lower,
    });
    rows.push(Row {
        name: "prefix range rate".into(),
        unit: "keys/s",
        embedded: e.range_keys_per_second,
        etcd: d.range_keys_per_second,
        better: Better::Higher,
    });
    rows.push(Row {
        name: "watch delivery p50".into(),
        unit: "ms",
        embedded: e.watch_p50_ms,
        etcd: d.watch_p50_ms,
        better: Better::Lower,
    });
    rows.push(Row {
        name: "watch delivery p99".into(),
        unit: "ms",
        embedded: e.watch_p99_ms,
        etcd: d.watch_p99_ms,
        better: Better::Lower,
    });
    print_table("Results (same machine, same run)", &rows);
    println!(
        "\nLatencies are per durable put, from call to acknowledgement. Watch delivery is from \
         the start of a put to the event reaching the watcher. Ratios above 1 are better for \
         throughput, below 1 for latency and time."
    );
    Ok(())
}

fn payload(seed: usize) -> Bytes {
    let mut value = format!("{{\"seed\":{seed},\"filler\":\"").into_bytes();
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    while value.len() < VALUE_BYTES - 2 {
        value.push(alphabet[(value.len() * 31 + seed) % alphabet.len()]);
    }
    value.extend_from_slice(b"\"}");
    Bytes::from(value)
}

async fn measure(store: Arc<dyn Store>, sizes: Sizes) -> anyhow::Result<Figures> {
    let sequential = concurrent_puts(&store, "seq", 1, sizes.sequential_puts).await?;
    report("sequential puts", &sequential);
    let concurrent16 = concurrent_puts(&store, "c16", 16, sizes.concurrent_puts).await?;
    report("16 writers", &concurrent16);
    let concurrent64 = concurrent_puts(&store, "c64", 64, sizes.concurrent_puts).await?;
    report("64 writers", &concurrent64);

    let load = concurrent_puts(&store, "range", 64, sizes.range_keys).await?;
    println!(
        "  loaded {} keys for the range at {:.0} puts/s",
        sizes.range_keys, load.per_second
    );
    let mut times = Vec::new();
    for _ in 0..3 {
        let (seconds, keys) = timed_range(&store, "/bench/range/").await?;
        anyhow::ensure!(
            keys == sizes.range_keys,
            "range returned {keys} keys, expected {}",
            sizes.range_keys
        );
        times.push(seconds);
    }
    times.sort_by(f64::total_cmp);
    let range_seconds = times[1];
    println!(
        "  range over {} keys: median {:.3} s of 3",
        sizes.range_keys, range_seconds
    );

    let (watch_p50_ms, watch_p99_ms) = watch_latency(&store, sizes.watch_events).await?;
    println!("  watch delivery: p50 {watch_p50_ms:.2} ms, p99 {watch_p99_ms:.2} ms");
    Ok(Figures {
        sequential,
        concurrent16,
        concurrent64,
        range_seconds,
        range_keys_per_second: sizes.range_keys as f64 / range_seconds,
        watch_p50_ms,
        watch_p99_ms,
    })
}

fn report(name: &str, t: &Throughput) {
    println!(
        "  {name}: {:.0} puts/s, p50 {:.2} ms, p99 {:.2} ms",
        t.per_second, t.p50_ms, t.p99_ms
    );
}

/// `total` durable puts of distinct keys from `writers` concurrent tasks.
async fn concurrent_puts(
    store: &Arc<dyn Store>,
    name: &str,
    writers: usize,
    total: usize,
) -> anyhow::Result<Throughput> {
    let mut tasks = Vec::new();
    let started = Instant::now();
    for writer in 0..writers {
        let store = store.clone();
        let name = name.to_owned();
        let count = total / writers + usize::from(writer < total % writers);
        // Values are made before the clock starts: the benchmark measures the store.
        let values: Vec<Bytes> = (0..16).map(|i| payload(writer * 16 + i)).collect();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            for i in 0..count {
                let key = format!("/bench/{name}/{writer:03}-{i:07}");
                let value = values[i % values.len()].clone();
                let put_started = Instant::now();
                store.put(&key, value, Condition::Always).await?;
                latencies.record(put_started.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Latencies::default();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Throughput {
        per_second: total as f64 / elapsed,
        p50_ms: latencies.quantile_ms(0.5),
        p99_ms: latencies.quantile_ms(0.99),
    })
}

/// Reads every key under `prefix` at one revision, page by page.
async fn timed_range(store: &Arc<dyn Store>, prefix: &str) -> anyhow::Result<(f64, usize)> {
    let started = Instant::now();
    let mut keys = 0;
    let mut scan = Scan::new(&**store, prefix).page_size(RANGE_PAGE);
    while let Some(page) = scan.next_page().await? {
        keys += page.len();
    }
    Ok((started.elapsed().as_secs_f64(), keys))
}

/// Sequential puts with a watcher open; the delay from each put's start to its event.
async fn watch_latency(store: &Arc<dyn Store>, events: usize) -> anyhow::Result<(f64, f64)> {
    let base = Instant::now();
    let prefix = "/bench/watch/";
    let start = store.current_revision().await?;
    let mut watch = store.watch(prefix, start).await?;
    let watcher = tokio::spawn(async move {
        let mut latencies = Latencies::default();
        for _ in 0..events {
            let event = tokio::time::timeout(Duration::from_secs(30), watch.next())
                .await
                .map_err(|_| anyhow::anyhow!("no watch event within 30 s"))?
                .ok_or_else(|| anyhow::anyhow!("the watch ended"))??;
            let sent_nanos: u64 = std::str::from_utf8(&event.kv.value)?.parse()?;
            let delay = base
                .elapsed()
                .saturating_sub(Duration::from_nanos(sent_nanos));
            latencies.record(delay);
        }
        anyhow::Ok(latencies)
    });
    for i in 0..events {
        let sent = base.elapsed().as_nanos() as u64;
        store
            .put(
                &format!("{prefix}{}", i % 100),
                Bytes::from(sent.to_string()),
                Condition::Always,
            )
            .await?;
    }
    let mut latencies = watcher.await??;
    Ok((latencies.quantile_ms(0.5), latencies.quantile_ms(0.99)))
}
