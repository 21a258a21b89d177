//! Merging, pruning and comparing objects along their schema, for field ownership.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::fields::{FieldSet, Path};
use crate::json;
use crate::schema::{ListKind, Node};

/// Where a value sits, i.e. what its schema says about it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ctx<'a> {
    /// The object itself, with the schema of the whole object.
    Root(Option<&'a Node>),
    /// Anything described by a schema node (`None`: no schema, deduced).
    Schema(Option<&'a Node>),
    /// `metadata`: only a few fields are tracked.
    Metadata,
    /// `metadata.labels` and `metadata.annotations`.
    StringMap,
    /// `metadata.finalizers`, a set.
    Finalizers,
    /// `metadata.ownerReferences`, a map list keyed by `uid`.
    OwnerRefs,
    /// An item of `metadata.ownerReferences`.
    OwnerRef,
}

impl<'a> Ctx<'a> {
    pub(super) fn schema(self) -> Option<&'a Node> {
        match self {
            Ctx::Root(s) | Ctx::Schema(s) => s,
            _ => None,
        }
    }

    /// The context of field `key` of a map, and whether it is a declared
    /// field (a `properties` entry) rather than a map key; `None` when the
    /// field is not tracked at all.
    pub(super) fn field(self, key: &str) -> Option<(Ctx<'a>, bool)> {
        match self {
            Ctx::Root(schema) => match key {
                "apiVersion" | "kind" => None,
                "metadata" => Some((Ctx::Metadata, true)),
                _ => match schema {
                    // Without a schema the top-level fields (spec, status,
                    // data...) behave like declared fields.
                    None => Some((Ctx::Schema(None), true)),
                    Some(s) => Some(schema_field(s, key)),
                },
            },
            Ctx::Metadata => match key {
                "labels" | "annotations" => Some((Ctx::StringMap, true)),
                "finalizers" => Some((Ctx::Finalizers, true)),
                "ownerReferences" => Some((Ctx::OwnerRefs, true)),
                _ => None,
            },
            Ctx::OwnerRef => Some((Ctx::Schema(None), true)),
            Ctx::StringMap | Ctx::Finalizers | Ctx::OwnerRefs | Ctx::Schema(None) => {
                Some((Ctx::Schema(None), false))
            }
            Ctx::Schema(Some(s)) => Some(schema_field(s, key)),
        }
    }

    /// The context of the items of a list.
    pub(super) fn item(self) -> Ctx<'a> {
        match self {
            Ctx::OwnerRefs => Ctx::OwnerRef,
            _ => Ctx::Schema(self.schema().and_then(|s| s.items.as_deref())),
        }
    }

    pub(super) fn list_kind(self) -> ListKind {
        match self {
            Ctx::Finalizers => ListKind::Set,
            Ctx::OwnerRefs => ListKind::Map(vec!["uid".to_string()]),
            _ => self
                .schema()
                .map(|s| s.list_kind.clone())
                .unwrap_or_default(),
        }
    }

    pub(super) fn map_is_atomic(self) -> bool {
        self.schema().is_some_and(|s| s.map_atomic)
    }
}

pub(super) fn schema_field<'a>(s: &'a Node, key: &str) -> (Ctx<'a>, bool) {
    if let Some(p) = s.properties.get(key) {
        return (Ctx::Schema(Some(p)), true);
    }
    (Ctx::Schema(s.additional.schema()), false)
}

/// The structure of a value as far as ownership is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Shape {
    /// Scalars, null, atomic maps and lists: owned and replaced whole.
    Leaf,
    /// A granular map: fields owned and merged one by one.
    Map,
    /// A map list with these key fields (every item has them).
    Assoc(Vec<String>),
    /// A set list.
    Set,
}

pub(super) fn shape(v: &Value, ctx: Ctx) -> Shape {
    match v {
        Value::Object(_) => {
            if ctx.map_is_atomic() {
                Shape::Leaf
            } else {
                Shape::Map
            }
        }
        Value::Array(items) => match ctx.list_kind() {
            ListKind::Atomic => Shape::Leaf,
            ListKind::Set => Shape::Set,
            ListKind::Map(keys) => {
                let keyed = items.iter().all(|item| {
                    item.as_object()
                        .is_some_and(|o| keys.iter().all(|k| o.contains_key(k)))
                });
                if keyed {
                    Shape::Assoc(keys)
                } else {
                    // Items without their keys cannot be told apart: treat
                    // the list as atomic rather than fail.
                    Shape::Leaf
                }
            }
        },
        _ => Shape::Leaf,
    }
}

/// The path element of a list item (`k:{...}` or `v:...`).
pub(super) fn item_path_element(item: &Value, shape: &Shape) -> String {
    match shape {
        Shape::Assoc(keys) => {
            let mut key = Map::new();
            for k in keys {
                key.insert(k.clone(), item.get(k).cloned().unwrap_or(Value::Null));
            }
            format!("k:{}", json::canonical(&Value::Object(key)))
        }
        _ => format!("v:{}", json::canonical(item)),
    }
}

/// Paths that are never recorded: the root and `metadata` itself.
pub(super) fn is_tracked(path: &[String]) -> bool {
    !(path.is_empty() || (path.len() == 1 && path[0] == "f:metadata"))
}

pub(super) fn insert_tracked(set: &mut FieldSet, path: &[String]) {
    if is_tracked(path) {
        set.insert(path);
    }
}

// ---------------------------------------------------------------------------
// Walks over values
// ---------------------------------------------------------------------------

/// The fields an applied configuration sets (structured-merge-diff's
/// `ToFieldSet`): leaves and list items are members; granular maps and lists
/// are members when they are map entries rather than declared fields, or
/// empty / null (an applier writing `[]` or `{}` owns that).
pub(super) fn collect_owned(v: &Value, ctx: Ctx, path: &mut Path, set: &mut FieldSet) {
    match shape(v, ctx) {
        Shape::Leaf => insert_tracked(set, path),
        Shape::Map => {
            let Value::Object(m) = v else { return };
            for (key, child) in m {
                let Some((child_ctx, declared)) = ctx.field(key) else {
                    continue;
                };
                path.push(format!("f:{key}"));
                collect_owned(child, child_ctx, path, set);
                let empty = match child {
                    Value::Object(m) => m.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    _ => false,
                };
                if child.is_null() || empty || !declared {
                    insert_tracked(set, path);
                }
                path.pop();
            }
        }
        sh @ (Shape::Assoc(_) | Shape::Set) => {
            let Value::Array(items) = v else { return };
            let item_ctx = ctx.item();
            for item in items {
                path.push(item_path_element(item, &sh));
                insert_tracked(set, path);
                if matches!(sh, Shape::Assoc(_)) {
                    collect_owned(item, item_ctx, path, set);
                }
                path.pop();
            }
        }
    }
}

/// Merges `rhs` (applied) into `lhs` (live). A missing or differently
/// shaped `lhs` is replaced; the applied value is still walked so that its
/// keyed lists lose duplicate items the same way on every apply.
pub(super) fn merge_value(lhs: Option<&Value>, rhs: &Value, ctx: Ctx) -> Value {
    let rhs_shape = shape(rhs, ctx);
    match rhs_shape {
        Shape::Leaf => rhs.clone(),
        Shape::Map => {
            let Value::Object(r) = rhs else {
                return rhs.clone();
            };
            let empty = Map::new();
            let l = match lhs {
                Some(Value::Object(l)) => l,
                _ => &empty,
            };
            let mut out = l.clone();
            for (key, rv) in r {
                match ctx.field(key) {
                    Some((child_ctx, _)) => {
                        let merged = merge_value(l.get(key), rv, child_ctx);
                        out.insert(key.clone(), merged);
                    }
                    None => {
                        // Untracked (name, namespace, apiVersion...): the live
                        // value wins, the applied one only fills a gap.
                        let managed_fields = matches!(ctx, Ctx::Metadata) && key == "managedFields";
                        if !l.contains_key(key) && !managed_fields {
                            out.insert(key.clone(), rv.clone());
                        }
                    }
                }
            }
            Value::Object(out)
        }
        Shape::Assoc(_) | Shape::Set => {
            let Value::Array(r) = rhs else {
                return rhs.clone();
            };
            let l: &[Value] = match lhs {
                Some(v @ Value::Array(l)) if shape(v, ctx) == rhs_shape => l,
                _ => &[],
            };
            if l.is_empty() && r.is_empty() {
                return rhs.clone();
            }
            Value::Array(merge_list(l, r, &rhs_shape, ctx.item()))
        }
    }
}

/// Merges two keyed lists. Live-only items keep their place, applied items
/// follow the applied order (structured-merge-diff's interleaving).
pub(super) fn merge_list(lhs: &[Value], rhs: &[Value], shape: &Shape, item_ctx: Ctx) -> Vec<Value> {
    let lhs_pe: Vec<String> = lhs.iter().map(|i| item_path_element(i, shape)).collect();
    let mut lhs_first: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, pe) in lhs_pe.iter().enumerate() {
        lhs_first.entry(pe.as_str()).or_insert(i);
    }
    let mut rhs_items: Vec<(String, &Value)> = Vec::new();
    let mut rhs_seen: BTreeSet<String> = BTreeSet::new();
    for item in rhs {
        let pe = item_path_element(item, shape);
        if rhs_seen.insert(pe.clone()) {
            rhs_items.push((pe, item));
        }
    }
    let shared: Vec<&str> = rhs_items
        .iter()
        .map(|(pe, _)| pe.as_str())
        .filter(|pe| lhs_first.contains_key(pe))
        .collect();

    let mut next_shared = 0;
    let mut emitted: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::with_capacity(lhs.len() + rhs_items.len());
    let (mut i, mut j) = (0, 0);
    let merge_item = |pe: &str, r: &Value| {
        let l = lhs_first.get(pe).and_then(|&k| lhs.get(k));
        if matches!(shape, Shape::Set) {
            r.clone()
        } else {
            merge_value(l, r, item_ctx)
        }
    };
    while i < lhs.len() || j < rhs_items.len() {
        if i < lhs.len() {
            let pe = lhs_pe[i].as_str();
            if !rhs_seen.contains(pe) {
                out.push(lhs[i].clone());
                i += 1;
                continue;
            }
            if emitted.contains(pe) {
                i += 1;
                continue;
            }
            let at_rhs = rhs_items.get(j).is_some_and(|(r, _)| r == pe);
            if !at_rhs && shared.get(next_shared) != Some(&pe) {
                // Applied later in a different order: emitted with the rhs.
                i += 1;
                continue;
            }
        }
        if let Some((pe, r)) = rhs_items.get(j) {
            if emitted.insert(pe.as_str()) {
                out.push(merge_item(pe, r));
                if shared.get(next_shared) == Some(&pe.as_str()) {
                    next_shared += 1;
                }
            }
            j += 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Removes from `v` what `last` owns (as members) and `owned` does not,
/// except declared fields under which something is still owned. Granular maps
/// and lists emptied this way are removed too, unless owned.
pub(super) fn prune(v: &mut Value, ctx: Ctx, last: &FieldSet, owned: Option<&FieldSet>) {
    let sh = shape(v, ctx);
    match sh {
        Shape::Leaf => {}
        Shape::Map => {
            let Value::Object(m) = v else { return };
            for (pe, last_child) in &last.children {
                let Some(key) = pe.strip_prefix("f:") else {
                    continue;
                };
                let Some((child_ctx, declared)) = ctx.field(key) else {
                    continue;
                };
                let owned_child = owned.and_then(|o| o.children.get(pe));
                let owned_member = owned_child.is_some_and(|o| o.member);
                let owned_below = owned_child.is_some_and(FieldSet::has_member_below);
                let Some(child) = m.get_mut(key) else {
                    continue;
                };
                if last_child.member && !owned_member && !(declared && owned_below) {
                    m.remove(key);
                    continue;
                }
                if last_child.children.is_empty() {
                    continue;
                }
                let was_filled = is_filled_container(child);
                prune(child, child_ctx, last_child, owned_child);
                let emptied = was_filled && !is_filled_container(child);
                if emptied && !owned_member && !matches!(child_ctx, Ctx::Metadata) {
                    m.remove(key);
                }
            }
        }
        Shape::Assoc(_) | Shape::Set => {
            let Value::Array(items) = v else { return };
            let item_ctx = ctx.item();
            let old = std::mem::take(items);
            for mut item in old {
                let pe = item_path_element(&item, &sh);
                if let Some(last_child) = last.children.get(&pe) {
                    let owned_child = owned.and_then(|o| o.children.get(&pe));
                    if last_child.member && !owned_child.is_some_and(|o| o.member) {
                        continue;
                    }
                    if matches!(sh, Shape::Assoc(_)) && !last_child.children.is_empty() {
                        prune(&mut item, item_ctx, last_child, owned_child);
                    }
                }
                items.push(item);
            }
        }
    }
}

pub(super) fn is_filled_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

/// What changed between two objects (structured-merge-diff's `Compare`).
#[derive(Debug, Default)]
pub(super) struct Diff {
    pub(super) added: FieldSet,
    pub(super) modified: FieldSet,
    pub(super) removed: FieldSet,
}

pub(super) fn compare(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    ctx: Ctx,
    path: &mut Path,
    diff: &mut Diff,
) {
    // Equal values differ nowhere below: one comparison without allocating instead of a
    // walk (a patch of one field leaves most of the object as it was). Not at the root,
    // which a write almost always changes: there the test would walk the unchanged fields
    // once more before its children test them again.
    if !path.is_empty()
        && let (Some(l), Some(r)) = (lhs, rhs)
        && json::equal(l, r)
    {
        return;
    }
    let sh = match (lhs.map(|v| shape(v, ctx)), rhs.map(|v| shape(v, ctx))) {
        (None, None) => return,
        (Some(s), None) | (None, Some(s)) => s,
        (Some(a), Some(b)) if a == b => a,
        (Some(_), Some(_)) => {
            // The structure itself changed (e.g. a map became a string).
            insert_tracked(&mut diff.modified, path);
            if let Some(l) = lhs {
                all_paths(l, ctx, path, &mut diff.removed);
            }
            if let Some(r) = rhs {
                all_paths(r, ctx, path, &mut diff.added);
            }
            return;
        }
    };
    let empty = |v: Option<&Value>| match v {
        None => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    if sh == Shape::Leaf || (empty(lhs) && empty(rhs)) {
        match (lhs, rhs) {
            (None, Some(_)) => insert_tracked(&mut diff.added, path),
            (Some(_), None) => insert_tracked(&mut diff.removed, path),
            (Some(l), Some(r)) if !json::equal(l, r) => insert_tracked(&mut diff.modified, path),
            _ => {}
        }
        return;
    }
    match &sh {
        Shape::Map => {
            let l = lhs.and_then(Value::as_object);
            let r = rhs.and_then(Value::as_object);
            let mut keys: BTreeSet<&String> = BTreeSet::new();
            keys.extend(l.into_iter().flat_map(|m| m.keys()));
            keys.extend(r.into_iter().flat_map(|m| m.keys()));
            for key in keys {
                let Some((child_ctx, _)) = ctx.field(key) else {
                    continue;
                };
                path.push(format!("f:{key}"));
                compare(
                    l.and_then(|m| m.get(key)),
                    r.and_then(|m| m.get(key)),
                    child_ctx,
                    path,
                    diff,
                );
                path.pop();
            }
        }
        Shape::Assoc(_) | Shape::Set => {
            let l = index_items(lhs, &sh);
            let r = index_items(rhs, &sh);
            let l_map: BTreeMap<&str, &Value> = l.iter().map(|(p, v)| (p.as_str(), *v)).collect();
            let r_map: BTreeMap<&str, &Value> = r.iter().map(|(p, v)| (p.as_str(), *v)).collect();
            let mut keys: BTreeSet<&str> = l_map.keys().copied().collect();
            keys.extend(r_map.keys().copied());
            let item_ctx = ctx.item();
            for pe in keys {
                let (li, ri) = (l_map.get(pe).copied(), r_map.get(pe).copied());
                path.push(pe.to_string());
                if sh == Shape::Set {
                    match (li, ri) {
                        (None, Some(_)) => insert_tracked(&mut diff.added, path),
                        (Some(_), None) => insert_tracked(&mut diff.removed, path),
                        _ => {}
                    }
                } else {
                    compare(li, ri, item_ctx, path, diff);
                }
                path.pop();
            }
        }
        Shape::Leaf => {}
    }
    match (lhs, rhs) {
        (None, Some(_)) => insert_tracked(&mut diff.added, path),
        (Some(_), None) => insert_tracked(&mut diff.removed, path),
        _ => {}
    }
}

/// The items of a keyed list with their path elements, first occurrence of
/// each key only.
pub(super) fn index_items<'v>(v: Option<&'v Value>, sh: &Shape) -> Vec<(String, &'v Value)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    if let Some(Value::Array(items)) = v {
        for item in items {
            let pe = item_path_element(item, sh);
            if seen.insert(pe.clone()) {
                out.push((pe, item));
            }
        }
    }
    out
}

/// Every field, item and granular node strictly below `v`.
pub(super) fn all_paths(v: &Value, ctx: Ctx, path: &mut Path, set: &mut FieldSet) {
    match shape(v, ctx) {
        Shape::Leaf => {}
        Shape::Map => {
            let Value::Object(m) = v else { return };
            for (key, child) in m {
                let Some((child_ctx, _)) = ctx.field(key) else {
                    continue;
                };
                path.push(format!("f:{key}"));
                insert_tracked(set, path);
                all_paths(child, child_ctx, path, set);
                path.pop();
            }
        }
        sh @ (Shape::Assoc(_) | Shape::Set) => {
            let Value::Array(items) = v else { return };
            let item_ctx = ctx.item();
            for item in items {
                path.push(item_path_element(item, &sh));
                insert_tracked(set, path);
                if matches!(sh, Shape::Assoc(_)) {
                    all_paths(item, item_ctx, path, set);
                }
                path.pop();
            }
        }
    }
}
