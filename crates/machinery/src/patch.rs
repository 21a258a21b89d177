//! JSON patches (RFC 6902) applied within bounds, so that a patch cannot make an object that
//! the server could not store, read back or even hold in memory: at most
//! [`MAX_JSON_PATCH_OPERATIONS`] operations (kube-apiserver's limit), no operation that would
//! nest values deeper than the caller's limit, and at most a given number of bytes added by
//! `copy` and `move`-free growth (a `copy` of the whole object into itself doubles it; a few
//! dozen would exhaust memory).

use json_patch::PatchOperation;
use serde_json::Value;

use crate::json;

/// Most operations one JSON patch may hold.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Why a patch was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchRefused(pub String);

/// The levels a JSON pointer goes down (`/a/b` is 2, `` is 0).
fn pointer_depth(pointer: &str) -> usize {
    pointer.matches('/').count()
}

/// Applies `operations` to `doc`, refusing (with `doc` partly patched: the caller discards
/// it) patches with too many operations, operations that would nest values deeper than
/// `max_depth`, or `copy`/`add`/`replace` operations that together add more than
/// `max_added_bytes` of JSON.
pub fn apply_json_patch(
    doc: &mut Value,
    operations: &[PatchOperation],
    max_depth: usize,
    max_added_bytes: usize,
) -> Result<(), PatchRefused> {
    if operations.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchRefused(format!(
            "the JSON patch has {} operations; the limit is {MAX_JSON_PATCH_OPERATIONS}",
            operations.len()
        )));
    }
    let mut added = 0usize;
    for (index, operation) in operations.iter().enumerate() {
        // What the operation puts where: the value, and how deep its target is.
        let placed = match operation {
            PatchOperation::Add(op) => Some((Some(&op.value), op.path.as_str(), true)),
            PatchOperation::Replace(op) => Some((Some(&op.value), op.path.as_str(), true)),
            PatchOperation::Copy(op) => {
                Some((doc.pointer(op.from.as_str()), op.path.as_str(), true))
            }
            PatchOperation::Move(op) => {
                Some((doc.pointer(op.from.as_str()), op.path.as_str(), false))
            }
            PatchOperation::Remove(_) | PatchOperation::Test(_) => None,
        };
        if let Some((Some(value), path, grows)) = placed {
            let room = max_depth.saturating_sub(pointer_depth(path));
            if json::depth_within(value, room).is_none() {
                return Err(PatchRefused(format!(
                    "operation {index} would nest values more than {max_depth} levels deep at {path:?}"
                )));
            }
            if grows {
                added = added.saturating_add(serde_json::to_vec(value).map_or(0, |v| v.len()));
                if added > max_added_bytes {
                    return Err(PatchRefused(format!(
                        "the JSON patch adds more than {max_added_bytes} bytes"
                    )));
                }
            }
        }
        json_patch::patch_unsafe(doc, std::slice::from_ref(operation))
            .map_err(|e| PatchRefused(format!("the JSON patch cannot be applied: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn operations(value: Value) -> Vec<PatchOperation> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn ordinary_patches_apply() {
        let mut doc = json!({"spec": {"size": 1}, "metadata": {"labels": {}}});
        let ops = operations(json!([
            {"op": "replace", "path": "/spec/size", "value": 2},
            {"op": "add", "path": "/metadata/labels/a", "value": "b"},
            {"op": "copy", "from": "/spec", "path": "/status"},
            {"op": "move", "from": "/status", "path": "/spec2"},
            {"op": "test", "path": "/spec2/size", "value": 2},
            {"op": "remove", "path": "/spec2"},
        ]));
        apply_json_patch(&mut doc, &ops, 100, 1 << 20).unwrap();
        assert_eq!(
            doc,
            json!({"spec": {"size": 2}, "metadata": {"labels": {"a": "b"}}})
        );
    }

    #[test]
    fn a_deep_value_is_refused_before_it_is_placed() {
        let mut value = json!({});
        for _ in 0..90 {
            value = json!({"x": value});
        }
        let mut doc = json!({"metadata": {"annotations": {}}});
        let fits = operations(json!([{"op": "add", "path": "/a", "value": value}]));
        apply_json_patch(&mut doc, &fits, 100, 1 << 20).unwrap();
        let deeper =
            operations(json!([{"op": "add", "path": "/metadata/annotations/x/y", "value": value}]));
        let refused = apply_json_patch(&mut doc.clone(), &deeper, 90, 1 << 20).unwrap_err();
        assert!(
            refused.0.contains("more than 90 levels deep"),
            "{refused:?}"
        );
        // Moving a deep value deeper is refused too.
        let moved =
            operations(json!([{"op": "move", "from": "/a", "path": "/metadata/annotations/a"}]));
        assert!(apply_json_patch(&mut doc, &moved, 91, 1 << 20).is_err());
    }

    #[test]
    fn a_copy_bomb_stops_at_the_byte_limit() {
        let mut doc = json!({"spec": {"data": "x".repeat(1000)}});
        let bomb: Vec<Value> = (0..60)
            .map(|i| json!({"op": "copy", "from": "/spec", "path": format!("/spec/c{i}")}))
            .collect();
        let refused =
            apply_json_patch(&mut doc, &operations(Value::Array(bomb)), 100, 1 << 20).unwrap_err();
        assert!(refused.0.contains("adds more than"), "{refused:?}");
        assert!(serde_json::to_vec(&doc).unwrap().len() < 4 << 20);
    }

    #[test]
    fn too_many_operations_are_refused() {
        let ops: Vec<Value> = (0..=MAX_JSON_PATCH_OPERATIONS)
            .map(|_| json!({"op": "test", "path": "", "value": {}}))
            .collect();
        let refused =
            apply_json_patch(&mut json!({}), &operations(Value::Array(ops)), 100, 1 << 20)
                .unwrap_err();
        assert!(
            refused.0.contains("operations; the limit is 10000"),
            "{refused:?}"
        );
    }
}
