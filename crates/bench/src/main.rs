//! `fleetdb-bench`: benchmark and torture programs for fleetdb.
//!
//! * `fleetdb-bench api` runs the real `fleetdb serve` (embedded, and on an etcd it starts)
//!   and measures writes, updates, lists, watch fan-out, the scale curve and the footprint
//!   over HTTPS with HTTP/2, with raw etcd as the baseline in the same run.
//! * `fleetdb-bench agents` measures the server under host agents: many joining at once
//!   with one bootstrap token, and thousands heartbeating their Leases.
//! * `fleetdb-bench rollout` runs one Rollout over 10,000 hosts with `fleetdb controllers`
//!   and simulated agents: time to complete, the controllers' CPU, API requests per host.
//! * `fleetdb-bench store` measures the store backends side by side — the embedded engine and a
//!   real etcd it starts itself on 127.0.0.1 — in the same run on the same machine, and prints a
//!   table with the ratio embedded/etcd for each figure.
//! * `fleetdb-bench history` measures history on the embedded store: a list a week back
//!   against a current one, one host's history among a million changes, bytes per change.
//! * `fleetdb-bench replicas` runs 1, 2 and 3 `fleetdb serve` replicas on a 3-member etcd
//!   and measures creates, healthy and with the etcd leader killed.
//! * `fleetdb-bench ui` measures the web UI in Debian's Chromium with 100,000 hosts: the
//!   hosts table, a filtered page, a host's page with 100 history entries, browser memory.
//! * `fleetdb-bench schema` times the CRD write pipeline (prune, default, validate, managed
//!   fields) on its own, then a merge patch of a Host's status step by step (beside what a
//!   typed decoding of the stored Host would cost).
//! * `fleetdb-bench crash-writer --dir D` writes to an embedded store under concurrent load and
//!   prints one line per acknowledged write; the crash test kills it with SIGKILL and checks
//!   that every acknowledged write survived.

use fleetdb_bench::{
    agents_bench, api_bench, crash_writer, fetch_bench, history_bench, inventory_bench,
    replicas_bench, rollout_bench, schema_bench, store_bench, ui_bench,
};

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fleetdb-bench",
    about = "Benchmarks and torture programs for fleetdb"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmark the whole API (the real server over HTTPS/HTTP2) side by side with etcd.
    Api(api_bench::ApiBenchArgs),
    /// Benchmark the server under host agents: joining at once, and heartbeating.
    Agents(agents_bench::AgentsBenchArgs),
    /// Benchmark a Rollout over many hosts run by `fleetdb controllers`, with simulated agents.
    Rollout(rollout_bench::RolloutBenchArgs),
    /// Benchmark the embedded store against etcd in the same run.
    Store(store_bench::StoreBenchArgs),
    /// Benchmark history on the embedded store: a list a week back against a current one,
    /// one host's history among many changes, bytes per change.
    History(history_bench::HistoryBenchArgs),
    /// Benchmark 1, 2 and 3 replicas on a 3-member etcd, healthy and with a member down.
    Replicas(replicas_bench::ReplicasBenchArgs),
    /// Benchmark a fetcher syncing a datacenter export into an empty fleetdb, then re-syncing.
    Fetch(fetch_bench::FetchBenchArgs),
    /// Benchmark `fleetdb ansible-inventory --list` over N hosts.
    Inventory(inventory_bench::InventoryBenchArgs),
    /// Benchmark the CRD write pipeline (prune, default, validate, managed fields) alone.
    Schema(schema_bench::SchemaBenchArgs),
    /// Benchmark the web UI in Chromium: the hosts table, a filtered page, a host's history.
    Ui(ui_bench::UiBenchArgs),
    /// Write to an embedded store until killed, printing each acknowledged write.
    CrashWriter {
        /// Data directory of the embedded store.
        #[arg(long)]
        dir: PathBuf,
        /// Concurrent writer tasks.
        #[arg(long, default_value_t = 16)]
        writers: usize,
        /// Distinguishes the values written by one run from those of the others.
        #[arg(long)]
        run: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Api(args) => runtime.block_on(api_bench::run(args)),
        Command::Agents(args) => runtime.block_on(agents_bench::run(args)),
        Command::Rollout(args) => runtime.block_on(rollout_bench::run(args)),
        Command::Store(args) => runtime.block_on(store_bench::run(args)),
        Command::History(args) => runtime.block_on(history_bench::run(args)),
        Command::Replicas(args) => runtime.block_on(replicas_bench::run(args)),
        Command::Fetch(args) => runtime.block_on(fetch_bench::run(args)),
        Command::Inventory(args) => runtime.block_on(inventory_bench::run(args)),
        Command::Schema(args) => schema_bench::run(args),
        Command::Ui(args) => runtime.block_on(ui_bench::run(args)),
        Command::CrashWriter { dir, writers, run } => {
            runtime.block_on(crash_writer::run(dir, writers, run))
        }
    }
}
