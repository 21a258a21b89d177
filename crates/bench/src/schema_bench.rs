//! The CRD write pipeline alone, per object: pruning, defaulting and validating the API
//! benchmark's Host against the Host CRD's schema (compiled once, as the server does), and
//! server-side apply's ownership recording on create — the schema-driven share of a create,
//! without HTTP, JSON parsing or the store. Then a merge patch of status, step by step
//! (decode, copy, patch, schema, managed fields, encode), beside a typed decoding of the
//! stored Host into `fleetdb_fleet::Host` and its conversion back to a `Value`.

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
    println!();
    status_patch_steps(&schema, &objects[..objects.len().min(PATCH_STEP_OBJECTS)]);
    Ok(())
}

/// At most this many objects go through the patch steps: each step keeps all of them
/// decoded at once (about 30 KB a Host, several copies), so the default 100,000 would need
/// gigabytes.
const PATCH_STEP_OBJECTS: usize = 20_000;

/// A merge patch of a Host's status, step by step as the server makes it (each step timed
/// alone over every object), beside what a typed decoding of the stored Host would cost
/// (`fleetdb_fleet::Host`, then `serde_json::to_value` for the rest of the pipeline, which
/// works on `Value`s: patches, schemas, managed fields).
fn status_patch_steps(schema: &Schema, objects: &[serde_json::Value]) {
    const NOW: &str = "2026-01-01T00:00:00Z";
    const API_VERSION: &str = "fleetdb.io/v1alpha1";
    let n = objects.len();
    // The stored form after a create by one manager and a status patch by another, as the
    // API benchmark's updates leave their Hosts.
    // What the agent's status write records: its ownership of what it changed.
    let record = |old: &serde_json::Value, new: serde_json::Value| {
        apply::record_update(
            Some(old),
            new,
            "agent",
            Some(schema),
            API_VERSION,
            NOW,
            Some("status"),
        )
    };
    let patched = |old: &serde_json::Value, i: usize| {
        let mut new = old.clone();
        new["status"] = serde_json::json!({
            "state": "Running",
            "lastSeen": format!("2026-11-22T00:00:00.{i:09}Z"),
        });
        record(old, new)
    };
    let stored: Vec<Vec<u8>> = objects
        .iter()
        .enumerate()
        .map(|(i, object)| {
            let created = apply::record_update(
                None,
                object.clone(),
                "bench",
                Some(schema),
                API_VERSION,
                NOW,
                None,
            );
            serde_json::to_vec(&patched(&created, i)).expect("a Value serializes")
        })
        .collect();
    let stored_bytes: usize = stored.iter().map(Vec::len).sum();

    let timed = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        f();
        started.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    let mut decoded = Vec::with_capacity(n);
    let decode = timed(&mut || {
        decoded = stored
            .iter()
            .map(|bytes| serde_json::from_slice::<serde_json::Value>(bytes).expect("stored JSON"))
            .collect();
    });
    let mut copies = Vec::new();
    let copy = timed(&mut || copies = decoded.clone());
    let mut patches = 0usize;
    let patch = timed(&mut || {
        for (i, object) in copies.iter_mut().enumerate() {
            let status = object["status"].as_object_mut().expect("a status");
            status.insert("state".into(), "Running".into());
            status.insert(
                "lastSeen".into(),
                format!("2026-11-23T00:00:00.{i:09}Z").into(),
            );
            patches += 1;
        }
    });
    let conform = timed(&mut || {
        for object in copies.iter_mut() {
            black_box(schema.prune(object));
            schema.apply_defaults(object);
            black_box(schema.validate(object));
        }
    });
    let mut recorded = Vec::with_capacity(n);
    let fields = timed(&mut || {
        recorded = decoded
            .iter()
            .zip(copies.drain(..))
            .map(|(old, new)| record(old, new))
            .collect();
    });
    let encode = timed(&mut || {
        for object in &recorded {
            black_box(serde_json::to_vec(object).expect("a Value serializes"));
        }
    });
    drop((decoded, recorded));
    let mut typed = Vec::with_capacity(n);
    let typed_decode = timed(&mut || {
        typed = stored
            .iter()
            .map(|bytes| serde_json::from_slice::<fleetdb_fleet::Host>(bytes).expect("a Host"))
            .collect();
    });
    let to_value = timed(&mut || {
        for host in &typed {
            black_box(serde_json::to_value(host).expect("a Host serializes"));
        }
    });
    assert_eq!(patches, n);

    println!(
        "a merge patch of status, step by step ({n} Hosts of {} bytes stored on average, two managers)",
        stored_bytes / n.max(1)
    );
    println!();
    println!("| step | µs per object |");
    println!("|---|---|");
    println!("| decode the stored object (`Value`) | {decode:.2} |");
    println!("| copy it (the object the patch is applied to) | {copy:.2} |");
    println!("| apply the patch (two status fields) | {patch:.2} |");
    println!("| prune + default + validate | {conform:.2} |");
    println!("| managed fields of the update | {fields:.2} |");
    println!("| encode for the store | {encode:.2} |");
    println!("| *typed*: decode the stored object as `fleetdb_fleet::Host` | {typed_decode:.2} |");
    println!("| *typed*: that Host to a `Value` for the pipeline | {to_value:.2} |");
}
