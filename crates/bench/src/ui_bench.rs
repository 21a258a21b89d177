//! `fleetdb-bench ui`: the web UI measured in Debian's Chromium (Playwright, `ui/measure.py`)
//! against the real `fleetdb serve` holding N hosts (default 100,000): the time from the
//! navigation's start to the load event and to the first frame after it (rendered) of the
//! hosts table, of a filtered page (1% of the hosts by
//! label), of a host's page with 100 history entries, and the browser's memory after going
//! through 10 pages of the table. Prints figures; judges nothing.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api_bench::{LOAD_CLIENTS, create_hosts};
use crate::hosts;
use crate::server_process::{Backend, FleetdbProcess};

const HOSTS: &str = "/apis/fleetdb.io/v1alpha1/hosts";
const SCRIPT: &str = include_str!("../ui/measure.py");
const CHROMIUM: &str = "/usr/bin/chromium";
/// Changes made to the measured host, so its page shows that many history entries.
const HISTORY: usize = 100;

#[derive(clap::Args)]
pub struct UiBenchArgs {
    /// Hosts in the fleet.
    #[arg(long, default_value_t = 100_000)]
    pub hosts: usize,
    /// Navigations per page measured (the median is printed).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// 2,000 hosts, 2 navigations (what CI runs; it never judges the figures).
    #[arg(long)]
    pub quick: bool,
    /// The Python with Playwright (default: the repository's .venv, made by scripts/setup.sh).
    #[arg(long)]
    pub python: Option<PathBuf>,
}

pub async fn run(args: UiBenchArgs) -> anyhow::Result<()> {
    let (count, runs) = if args.quick {
        (2_000, 2)
    } else {
        (args.hosts, args.runs)
    };
    let python = args.python.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
    });
    anyhow::ensure!(
        python.exists() && std::path::Path::new(CHROMIUM).exists(),
        "{} or {CHROMIUM} is missing: run scripts/setup.sh",
        python.display()
    );
    let temporary = tempfile::tempdir()?;
    let server = FleetdbProcess::start(&temporary.path().join("server"), Backend::Embedded).await?;
    println!(
        "## ui: {count} hosts, the page of one with {HISTORY} changes, Chromium {runs} navigations each (median)"
    );
    create_hosts(&server, "host-", 0..count, LOAD_CLIENTS).await?;
    let admin = server.connect().await?;
    let host = hosts::name("host-", 42);
    for step in 0..HISTORY {
        let patch = json!({"metadata": {"labels": {"bench-step": step.to_string()}}});
        let (status, answer) = admin
            .call(
                Method::PATCH,
                &format!("{HOSTS}/{host}"),
                Some("application/merge-patch+json"),
                Bytes::from(patch.to_string()),
            )
            .await?;
        anyhow::ensure!(status == StatusCode::OK, "patch: {status}: {answer:?}");
    }
    let (status, answer) = admin
        .call(
            Method::POST,
            "/ui/login-tokens",
            Some("application/json"),
            Bytes::new(),
        )
        .await?;
    anyhow::ensure!(status == StatusCode::CREATED, "login: {status}: {answer:?}");
    let login: Value = serde_json::from_slice(&answer)?;
    let base = format!("https://{}", server.address());
    let script = temporary.path().join("measure.py");
    std::fs::write(&script, SCRIPT)?;
    let rss_before = server.rss_bytes()?;
    let output = Command::new(&python)
        .arg(&script)
        .env("BASE", &base)
        .env(
            "LOGIN",
            format!("{base}{}", login["path"].as_str().context("a login path")?),
        )
        .env(
            "FILTERED",
            format!("labelSelector={}", hosts::one_percent_selector()),
        )
        .env("HOST", &host)
        .env("CHROMIUM", CHROMIUM)
        .env("RUNS", runs.to_string())
        .output()
        .context("running the measurement in Chromium")?;
    anyhow::ensure!(
        output.status.success(),
        "measure.py failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout)
        .with_context(|| String::from_utf8_lossy(&output.stdout).into_owned())?;
    println!("| page | server's answer (ms) | load event (ms) | rendered (ms) | bytes |");
    println!("|---|---:|---:|---:|---:|");
    for (label, key) in [
        ("hosts table, first page", "hosts"),
        ("filtered (1% by label)", "filtered"),
        ("host with 100 history entries", "host"),
    ] {
        let page = &result[key];
        println!(
            "| {label} | {} | {} | {} | {} |",
            page["response"], page["load"], page["rendered"], page["bytes"]
        );
    }
    let after = &result["after_10_pages"];
    println!(
        "history entries shown: {}; after 10 pages of the table: JS heap {} MiB, {} DOM nodes, Chromium's processes {} MiB RSS",
        result["history_entries"],
        after["js_heap_used_mib"],
        after["dom_nodes"],
        after["chromium_rss_mib"]
    );
    println!(
        "server RSS: {:.0} MiB before the browser, {:.0} MiB after (the UI's host index included)",
        rss_before as f64 / (1 << 20) as f64,
        server.rss_bytes()? as f64 / (1 << 20) as f64
    );
    Ok(())
}
