//! Moving from client-side to server-side apply, as kube-apiserver does it.
//!
//! `kubectl apply` (client-side) writes with the manager `kubectl-client-side-apply` and keeps
//! what it applied in the annotation [`LAST_APPLIED`]. When the same manifest, changed or not,
//! is then applied with `kubectl apply --server-side` (manager [`KUBECTL`]), the fields the
//! client-side applier owns would conflict. They are not conflicts when the last-applied
//! configuration names them and the live object still holds the value it gave them: the
//! server-side applier takes them over. While the annotation exists, every server-side apply
//! by `kubectl` rewrites it with what was applied, so a later client-side apply still computes
//! the right patch.

use serde_json::Value;

use super::fields::FieldSet;
use super::merge::{Ctx, Diff, all_paths, compare};

/// The annotation in which client-side `kubectl apply` keeps its last applied configuration.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The field manager of `kubectl apply --server-side`: the only applier whose conflicts the
/// last-applied configuration can clear (another name opts out, as in Kubernetes).
pub const KUBECTL: &str = "kubectl";

/// The manager that owns every field of an object that had no managed fields when it was
/// first applied to.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

fn last_applied(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()
        .filter(|text| !text.is_empty())
}

/// The fields a conflict on which the last-applied configuration of `live` allows: every field
/// it names, except those whose live value is no longer the one it applied. `None` without a
/// readable annotation.
pub(super) fn allowed_conflicts(live: &Value, root: Ctx) -> Option<FieldSet> {
    let applied: Value = serde_json::from_str(last_applied(live)?).ok()?;
    if !applied.is_object() {
        return None;
    }
    let mut allowed = FieldSet::default();
    all_paths(&applied, root, &mut Vec::new(), &mut allowed);
    let mut diff = Diff::default();
    compare(Some(&applied), Some(live), root, &mut Vec::new(), &mut diff);
    allowed.subtract(&diff.modified);
    Some(allowed)
}

/// After a successful apply by [`KUBECTL`] onto an object that carries the annotation: the
/// annotation becomes what was applied (`config` without the annotation itself), in the
/// encoding kubectl writes (JSON, one line, a final newline).
pub(super) fn keep_annotation_current(merged: &mut Value, live: &Value, config: &Value) {
    if last_applied(live).is_none() {
        return;
    }
    let mut applied = config.clone();
    if let Some(Value::Object(annotations)) = applied.pointer_mut("/metadata/annotations") {
        annotations.remove(LAST_APPLIED);
    }
    let mut text = applied.to_string();
    text.push('\n');
    if let Some(Value::Object(annotations)) = merged.pointer_mut("/metadata/annotations") {
        annotations.insert(LAST_APPLIED.to_owned(), Value::String(text));
    }
}
