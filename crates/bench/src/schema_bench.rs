//! The CRD write pipeline alone, per object: pruning, defaulting and validating the API
//! benchmark's Host against the Host CRD's schema (compiled once, as the server does), and
//! server-side apply's ownership recording on create — the schema-driven share of a create,
//! without HTTP, JSON parsing or the store.

use std::hint::black_box;
use std::time::Instant;

use fleetdb_machinery::apply;
use fleetdb_machinery::schema::Schema;

use crate::hosts;

#[derive(clap::Args, Clone)]
pub struct SchemaBenchArgs {
    /// Objects put through the pipeline.
    #[arg(long, default_value_t = 100_000)]
    objects: usize,
}

pub fn run(args: SchemaBenchArgs) -> anyhow::Result<()> {
    let crd = fleetdb_fleet::crd_documents()
        .into_iter()
        .find(|crd| crd["metadata"]["name"] == "hosts.fleetdb.io")
        .expect("the Host CRD");
    let document = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let started = Instant::now();
    let schema = Schema::compile(document);
    let compiled_in = started.elapsed();
    let objects: Vec<serde_json::Value> =
        (0..args.objects).map(|i| hosts::host("host-", i)).collect();
    let started = Instant::now();
    for mut object in objects.clone() {
        black_box(schema.prune(&mut object));
        schema.apply_defaults(&mut object);
        black_box(schema.validate(&object));
    }
    let conform = started.elapsed();
    let owned = objects.clone();
    let started = Instant::now();
    for object in owned {
        black_box(apply::record_update(
            None,
            object,
            "bench",
            Some(&schema),
            "fleetdb.io/v1alpha1",
            "2026-01-01T00:00:00Z",
            None,
        ));
    }
    let ownership = started.elapsed();
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / args.objects as f64;
    println!(
        "schema pipeline over {} Hosts (schema compiled in {compiled_in:?})",
        args.objects
    );
    println!();
    println!("| step | µs per object |");
    println!("|---|---|");
    println!("| prune + default + validate | {:.2} |", per(conform));
    println!("| managed fields of a create | {:.2} |", per(ownership));
    Ok(())
}
