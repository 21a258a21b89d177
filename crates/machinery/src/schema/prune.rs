//! Pruning unknown fields and applying defaults, on the compiled schema.

use serde_json::Value;

use super::{Additional, Node};
use crate::field::path;

fn is_type_meta_or_metadata(name: &str) -> bool {
    matches!(name, "apiVersion" | "kind" | "metadata")
}

/// Prunes `object` under `node`; `resource_root` keeps `apiVersion`, `kind` and `metadata`.
/// Returns the removed paths, sorted and without duplicates.
pub(super) fn prune(node: &Node, object: &mut Value, resource_root: bool) -> Vec<String> {
    let mut removed = Vec::new();
    prune_node(object, Some(node), "", resource_root, &mut removed);
    removed.sort();
    removed.dedup();
    removed
}

fn prune_node(
    value: &mut Value,
    node: Option<&Node>,
    at: &str,
    resource_root: bool,
    removed: &mut Vec<String>,
) {
    if let Some(node) = node
        && node.preserve_unknown
    {
        keep_unknown(value, node, at, resource_root, removed);
        return;
    }
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if resource_root && is_type_meta_or_metadata(&k) {
                    continue;
                }
                let child_path = path::child(at, &k);
                let declared = node.and_then(|n| n.properties.get(&k));
                let child = match (declared, node.map(|n| &n.additional)) {
                    (Some(child), _) => child,
                    (None, Some(Additional::Schema(child))) => child,
                    (None, Some(Additional::Bool(true))) => continue,
                    _ => {
                        map.remove(&k);
                        removed.push(child_path);
                        continue;
                    }
                };
                if let Some(v) = map.get_mut(&k) {
                    prune_node(v, Some(child), &child_path, child.embedded, removed);
                }
            }
        }
        Value::Array(items) => {
            let item_node = node.and_then(|n| n.items.as_deref());
            let embedded = item_node.is_some_and(|n| n.embedded);
            for (i, v) in items.iter_mut().enumerate() {
                prune_node(v, item_node, &path::index(at, i), embedded, removed);
            }
        }
        _ => {}
    }
}

/// Below `x-kubernetes-preserve-unknown-fields`: keep unknown fields, but still prune inside
/// declared properties, additionalProperties and items.
fn keep_unknown(
    value: &mut Value,
    node: &Node,
    at: &str,
    resource_root: bool,
    removed: &mut Vec<String>,
) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if resource_root && is_type_meta_or_metadata(k) {
                    continue;
                }
                if let Some(child) = node.field(k) {
                    prune_node(v, Some(child), &path::child(at, k), child.embedded, removed);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_node) = node.items.as_deref() {
                for (i, v) in items.iter_mut().enumerate() {
                    prune_node(
                        v,
                        Some(item_node),
                        &path::index(at, i),
                        item_node.embedded,
                        removed,
                    );
                }
            }
        }
        _ => {}
    }
}

fn is_non_nullable_null(value: &Value, node: &Node) -> bool {
    value.is_null() && !node.nullable
}

/// Defaults `value` under `node` (see `Schema::apply_defaults`). Defaults inside an object
/// apply only when that object exists; `null` items of non-nullable item schemas are
/// replaced by the items' default when there is one (they cannot be removed).
pub(super) fn apply_defaults(node: &Node, value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, child) in &node.properties {
                if let Some(default) = &child.default {
                    let missing = match map.get(k) {
                        None => true,
                        Some(v) => is_non_nullable_null(v, child),
                    };
                    if missing {
                        map.insert(k.clone(), default.clone());
                    }
                }
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let Some(child) = node.field(&k) else {
                    continue;
                };
                let Some(v) = map.get_mut(&k) else { continue };
                if is_non_nullable_null(v, child) {
                    match &child.default {
                        Some(default) => *v = default.clone(),
                        None => {
                            map.remove(&k);
                            continue;
                        }
                    }
                }
                apply_defaults(child, v);
            }
        }
        Value::Array(items) => {
            let Some(item_node) = node.items.as_deref() else {
                return;
            };
            for v in items.iter_mut() {
                if is_non_nullable_null(v, item_node)
                    && let Some(default) = &item_node.default
                {
                    *v = default.clone();
                }
                apply_defaults(item_node, v);
            }
        }
        _ => {}
    }
}
