//! Deterministic fuzzing of apply and record_update: idempotence, ownership of exactly what
//! was applied, no panics on garbage.

use serde_json::{Map, Value, json};

use super::super::entries::read_entries;
use super::super::fields::{FieldSet, format_path};
use super::super::merge::{Ctx, Shape, collect_owned, item_path_element, shape};
use super::*;
use crate::testing::XorShift;

// -----------------------------------------------------------------------
// Deterministic fuzzing
// -----------------------------------------------------------------------

fn random_scalar(rng: &mut XorShift) -> Value {
    match rng.below(6) {
        0 => json!(rng.below(3)),
        1 => json!(*rng.pick(&["a", "b", "c"])),
        2 => json!(rng.chance(50)),
        3 => Value::Null,
        4 => json!(1.5),
        _ => json!(-1),
    }
}

fn random_value(rng: &mut XorShift, depth: usize) -> Value {
    if depth == 0 || rng.chance(40) {
        return random_scalar(rng);
    }
    if rng.chance(50) {
        let mut m = Map::new();
        for _ in 0..rng.below(3) {
            m.insert(
                rng.pick(&["k", "l", "m"]).to_string(),
                random_value(rng, depth - 1),
            );
        }
        Value::Object(m)
    } else {
        Value::Array(
            (0..rng.below(3))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        )
    }
}

fn random_spec(rng: &mut XorShift) -> Value {
    let mut spec = Map::new();
    if rng.chance(50) {
        spec.insert("size".into(), json!(rng.below(3)));
    }
    if rng.chance(40) {
        spec.insert("color".into(), json!(*rng.pick(&["red", "blue"])));
    }
    if rng.chance(50) {
        let mut items = Vec::new();
        for name in rng.subset(&["a", "b", "c"]) {
            let mut c = Map::new();
            c.insert("name".into(), json!(name));
            if rng.chance(60) {
                c.insert("image".into(), json!(*rng.pick(&["i1", "i2"])));
            }
            if rng.chance(30) {
                c.insert("args".into(), json!(rng.subset(&["x", "y"])));
            }
            items.push(Value::Object(c));
        }
        if rng.chance(5) && !items.is_empty() {
            // duplicate key
            let dup = items[0].clone();
            items.push(dup);
        }
        if rng.chance(5) {
            items.push(json!({"image": "no-name"}));
        }
        spec.insert("containers".into(), Value::Array(items));
    }
    if rng.chance(40) {
        let mut ports = Vec::new();
        for (port, proto) in [(80, "TCP"), (80, "UDP"), (443, "TCP")] {
            if rng.chance(50) {
                let mut p = json!({"port": port, "protocol": proto});
                if rng.chance(50) {
                    p["name"] = json!(*rng.pick(&["http", "web"]));
                }
                ports.push(p);
            }
        }
        spec.insert("ports".into(), Value::Array(ports));
    }
    if rng.chance(40) {
        let mut tags: Vec<Value> = rng
            .subset(&["x", "y", "z"])
            .into_iter()
            .map(Value::from)
            .collect();
        if rng.chance(10) {
            tags.push(json!("x"));
        }
        spec.insert("tags".into(), Value::Array(tags));
    }
    if rng.chance(30) {
        spec.insert("args".into(), json!(rng.subset(&["1", "2", "3"])));
    }
    if rng.chance(30) {
        spec.insert(
            "selector".into(),
            json!({"matchLabels": {*rng.pick(&["a", "b"]): *rng.pick(&["1", "2"])}}),
        );
    }
    if rng.chance(30) {
        let mut params = Map::new();
        for k in rng.subset(&["p", "q"]) {
            params.insert(k, json!(*rng.pick(&["1", "2"])));
        }
        spec.insert("params".into(), Value::Object(params));
    }
    if rng.chance(30) {
        let mut t = Map::new();
        if rng.chance(50) {
            t.insert("replicas".into(), json!(rng.below(3)));
        }
        if rng.chance(50) {
            t.insert("mode".into(), json!(*rng.pick(&["m", "n"])));
        }
        spec.insert("template".into(), Value::Object(t));
    }
    if rng.chance(30) {
        spec.insert("extra".into(), random_value(rng, 3));
    }
    if rng.chance(5) {
        // shape mismatches
        let key = *rng.pick(&["containers", "tags", "template", "params", "size"]);
        spec.insert(key.into(), random_value(rng, 2));
    }
    Value::Object(spec)
}

fn random_config(rng: &mut XorShift) -> Value {
    let mut meta = json!({"name": "w"});
    if rng.chance(40) {
        let mut labels = Map::new();
        for k in rng.subset(&["app", "tier"]) {
            labels.insert(k, json!(*rng.pick(&["x", "y"])));
        }
        meta["labels"] = Value::Object(labels);
    }
    if rng.chance(20) {
        meta["finalizers"] = json!(rng.subset(&["f/1", "f/2"]));
    }
    let mut cfg = json!({"apiVersion": V, "kind": "Widget", "metadata": meta});
    if rng.chance(90) {
        cfg["spec"] = random_spec(rng);
    }
    if rng.chance(10) {
        cfg["status"] = json!({"phase": *rng.pick(&["A", "B"])});
    }
    cfg
}

fn random_edit(rng: &mut XorShift, live: &Value) -> Value {
    let mut new = live.clone();
    if !new["spec"].is_object() {
        new["spec"] = json!({});
    }
    match rng.below(7) {
        0 => new["spec"]["size"] = json!(rng.below(4)),
        1 => {
            if let Some(spec) = new["spec"].as_object_mut() {
                spec.remove(*rng.pick(&["color", "size", "containers", "tags", "extra"]));
            }
        }
        2 => {
            if let Some(items) = new["spec"]["containers"].as_array_mut() {
                if !items.is_empty() && rng.chance(50) {
                    let i = rng.below(items.len());
                    items.remove(i);
                } else {
                    items.push(json!({"name": *rng.pick(&["a", "d"]), "image": "e"}));
                }
            } else {
                new["spec"]["containers"] = json!([{"name": "e"}]);
            }
        }
        3 => new["metadata"]["labels"] = json!({"app": *rng.pick(&["x", "z"])}),
        4 => new["spec"]["color"] = json!(*rng.pick(&["red", "green"])),
        5 => new["status"] = json!({"ready": rng.chance(50)}),
        _ => new["spec"]["extra"] = random_value(rng, 3),
    }
    new
}

/// Whether `path` leads somewhere in `v`.
fn path_exists(v: &Value, ctx: Ctx, path: &[String]) -> bool {
    let Some((pe, rest)) = path.split_first() else {
        return true;
    };
    if let Some(key) = pe.strip_prefix("f:") {
        return match (v.as_object().and_then(|m| m.get(key)), ctx.field(key)) {
            (Some(child), Some((child_ctx, _))) => path_exists(child, child_ctx, rest),
            _ => false,
        };
    }
    let sh = shape(v, ctx);
    let Value::Array(items) = v else {
        return false;
    };
    matches!(sh, Shape::Assoc(_) | Shape::Set)
        && items
            .iter()
            .any(|i| item_path_element(i, &sh) == *pe && path_exists(i, ctx.item(), rest))
}

/// managedFields are well formed and only name fields that exist.
fn check_managed_fields(obj: &Value, schema: Option<&Value>) {
    if let Some(list) = obj.pointer("/metadata/managedFields") {
        let list = list.as_array().expect("managedFields is a list");
        assert!(!list.is_empty());
        for e in list {
            let f = e["fieldsV1"].as_object().expect("fieldsV1 object");
            assert!(!f.is_empty(), "empty entry kept: {e}");
        }
    }
    let compiled = schema.map(Schema::compile);
    for e in read_entries(obj) {
        for p in e.set.members() {
            assert!(
                path_exists(obj, Ctx::Root(compiled.as_ref().map(Schema::root)), &p),
                "{} owns missing {}: {obj}",
                e.manager,
                format_path(&p)
            );
        }
    }
}

#[test]
fn fuzz_apply_idempotent_and_panic_free() {
    let s = schema();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut applies = 0;
    let mut conflicts_seen = 0;
    for round in 0..300 {
        let schema = if round % 3 == 0 { None } else { Some(&s) };
        let mut live: Option<Value> = None;
        for step in 0..12 {
            let now = format!("2024-01-01T00:{round:02}:{step:02}Z");
            let later = format!("2024-02-01T00:{round:02}:{step:02}Z");
            if live.is_none() || rng.chance(70) {
                let manager = *rng.pick(&["a", "b", "c"]);
                let force = rng.chance(50);
                let sub = if rng.chance(10) { Some("status") } else { None };
                let cfg = random_config(&mut rng);
                match apply(live.as_ref(), &cfg, manager, force, schema, V, &now, sub) {
                    Ok(first) => {
                        applies += 1;
                        let first = first.object;
                        check_managed_fields(&first, schema);
                        let again =
                            apply(Some(&first), &cfg, manager, force, schema, V, &later, sub)
                                .unwrap_or_else(|c| {
                                    panic!("re-apply conflicted: {c:?}\n{cfg}\n{first}")
                                })
                                .object;
                        assert_eq!(
                            strip_times(&again),
                            strip_times(&first),
                            "not idempotent: {cfg}"
                        );
                        // The applier owns exactly what it applied.
                        let mut want = FieldSet::default();
                        let compiled = schema.map(Schema::compile);
                        let root = Ctx::Root(compiled.as_ref().map(Schema::root));
                        collect_owned(&cfg, root, &mut Vec::new(), &mut want);
                        let got = read_entries(&first)
                            .into_iter()
                            .find(|e| e.is(manager, true, sub.unwrap_or("")))
                            .map(|e| e.set)
                            .unwrap_or_default();
                        assert_eq!(got, want, "owned set: {cfg}");
                        live = Some(first);
                    }
                    Err(c) => {
                        conflicts_seen += 1;
                        assert!(!force && !c.is_empty());
                        let msg = conflict_message(&c, live.as_ref().unwrap_or(&Value::Null));
                        assert!(msg.starts_with("Apply failed with"), "{msg}");
                    }
                }
            } else if let Some(cur) = &live {
                let new = random_edit(&mut rng, cur);
                let out = record_update(Some(cur), &new, "editor", schema, V, &now, None);
                check_managed_fields(&out, schema);
                assert_eq!(strip_managed(&out), strip_managed(&new));
                let same = record_update(Some(&out), &out, "x", schema, V, &later, None);
                assert_eq!(same, out);
                live = Some(out);
            }
        }
    }
    assert!(applies > 1000, "{applies}");
    assert!(conflicts_seen > 50, "{conflicts_seen}");
}

#[test]
fn fuzz_garbage_never_panics() {
    let mut rng = XorShift(0xDEAD_BEEF_1234_5678);
    let schemas = [
        json!({"properties": {"spec": {"x-kubernetes-list-type": "map",
                                       "x-kubernetes-list-map-keys": ["k"],
                                       "x-kubernetes-map-type": "atomic"}}}),
        json!({"properties": {"spec": {"properties": {"k": {
            "x-kubernetes-list-type": "set", "items": 5}}}}}),
        json!("not a schema"),
        json!({"properties": {"spec": {"additionalProperties": {
            "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": "k"}}}}),
    ];
    for _ in 0..2000 {
        let mut live = random_value(&mut rng, 4);
        if rng.chance(70) {
            live = json!({"metadata": {"managedFields": random_value(&mut rng, 4),
                                       "labels": random_value(&mut rng, 2),
                                       "finalizers": random_value(&mut rng, 2),
                                       "ownerReferences": random_value(&mut rng, 2)},
                          "spec": random_value(&mut rng, 4)});
        }
        if rng.chance(30) && live.is_object() {
            live["metadata"]["managedFields"] = json!([{
                "manager": "g", "operation": "Update",
                "fieldsV1": {"f:spec": random_value(&mut rng, 3),
                             "k:{bad": {}, "v:[": {".": {}}, "f:metadata": {".": {}}}}]);
        }
        let mut cfg = random_value(&mut rng, 4);
        if rng.chance(70) {
            cfg = json!({"metadata": {"labels": random_value(&mut rng, 2),
                                      "finalizers": random_value(&mut rng, 2)},
                         "spec": random_value(&mut rng, 4)});
        }
        let schema = if rng.chance(30) {
            None
        } else {
            Some(rng.pick(&schemas))
        };
        let force = rng.chance(50);
        let r = apply(Some(&live), &cfg, "m", force, schema, V, T0, None);
        if let Err(c) = &r {
            let _ = conflict_message(c, &live);
        }
        let _ = apply(None, &cfg, "m", force, schema, V, T0, None);
        let _ = record_update(Some(&live), &cfg, "m", schema, V, T0, None);
        let _ = record_update(None, &live, "m", schema, V, T0, Some("status"));
        let _ = conflict_message(&[conflict("g", ".spec")], &live);
    }
}

/// Writes that change again what their manager alone owns take a shortcut (`touch.rs`) that
/// must give exactly what the general path gives, whoever else applied or updated before.
#[test]
fn the_shortcut_for_repeated_updates_agrees_with_the_general_path() {
    let document = schema();
    let compiled = Schema::compile(&document);
    let mut rng = XorShift(0x5EED_F1E1_D5AB_CDEF);
    let before = SHORTCUTS.with(|taken| taken.get());
    let mut writes = 0;
    for round in 0..300 {
        let schema = if round % 3 == 0 {
            None
        } else {
            Some(&compiled)
        };
        let mut live =
            json!({"apiVersion": V, "kind": "Thing", "metadata": {"name": "t"}, "spec": {}});
        let mut manager = "a";
        for step in 0..24 {
            let now = format!("2024-01-01T00:{round:02}:{step:02}Z");
            if rng.chance(15) {
                let applier = *rng.pick(&["a", "b", "p"]);
                let cfg = random_config(&mut rng);
                let document = schema.map(|_| &document);
                if let Ok(applied) =
                    apply(Some(&live), &cfg, applier, true, document, V, &now, None)
                {
                    live = applied.object;
                }
                continue;
            }
            if rng.chance(30) {
                manager = *rng.pick(&["a", "b", "c"]);
            }
            let subresource = if rng.chance(30) { Some("status") } else { None };
            let new = if rng.chance(60) {
                // A status or size written again, as a controller does.
                let mut new = live.clone();
                match rng.below(3) {
                    0 => new["status"] = json!({"seen": step, "ready": rng.chance(50)}),
                    1 => new["spec"]["size"] = json!(step),
                    _ => new["metadata"]["labels"] = json!({"step": step.to_string()}),
                }
                new
            } else {
                random_edit(&mut rng, &live)
            };
            let write = Write {
                manager,
                schema,
                api_version: if rng.chance(10) { "example.com/v2" } else { V },
                now: &now,
                subresource,
            };
            let quick = record(Some(&live), new.clone(), &write, true);
            let general = record(Some(&live), new, &write, false);
            assert_eq!(quick, general, "{manager} {subresource:?} over {live}");
            writes += 1;
            live = quick;
        }
    }
    let taken = SHORTCUTS.with(|taken| taken.get()) - before;
    assert!(
        taken > writes / 10,
        "the shortcut taken {taken} times in {writes} writes"
    );
    assert!(taken < writes, "the general path taken too");
}

/// A create's `managedFields` are written straight from the object (`touch::created`):
/// exactly what the general path gives, for objects of every shape the fuzzer makes
/// (duplicate list items, shape mismatches, owner references, nothing tracked at all).
#[test]
fn the_shortcut_for_creates_agrees_with_the_general_path() {
    let document = schema();
    let compiled = Schema::compile(&document);
    let mut rng = XorShift(0xC0FF_EE00_D15E_A5E5);
    for round in 0..3000 {
        let schema = if round % 3 == 0 {
            None
        } else {
            Some(&compiled)
        };
        let mut object = random_config(&mut rng);
        if rng.chance(10) {
            object["metadata"]["ownerReferences"] =
                json!([{"uid": "u1", "kind": "K", "name": "n"}, {"uid": "u1"}]);
        }
        if rng.chance(10) {
            object["metadata"]["annotations"] = json!({});
        }
        if rng.chance(5) {
            // Nothing tracked: only names and kinds.
            object = json!({"apiVersion": V, "kind": "Widget", "metadata": {"name": "w"}});
        }
        let subresource = if rng.chance(10) { Some("status") } else { None };
        let write = Write {
            manager: "creator",
            schema,
            api_version: V,
            now: T0,
            subresource,
        };
        let before = SHORTCUTS.with(|taken| taken.get());
        let quick = record(None, object.clone(), &write, true);
        assert_eq!(
            SHORTCUTS.with(|taken| taken.get()),
            before + 1,
            "the shortcut was taken"
        );
        let general = record(None, object.clone(), &write, false);
        assert_eq!(quick, general, "{object}");
    }
}
