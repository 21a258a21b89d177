//! The client-side to server-side apply upgrade and `before-first-apply`.

use serde_json::{Value, json};

use super::{apply, record_update};
use crate::apply::entries::read_entries;
use crate::apply::{BEFORE_FIRST_APPLY, KUBECTL, LAST_APPLIED};

/// A widget as client-side `kubectl apply` leaves it: written by `kubectl-client-side-apply`
/// with the last-applied annotation.
fn client_side_applied(size: i64, color: &str) -> Value {
    let config = json!({
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": size, "color": color},
    });
    let mut object = config.clone();
    object["metadata"]["annotations"] = json!({LAST_APPLIED: format!("{config}\n")});
    record_update(
        None,
        &object,
        "kubectl-client-side-apply",
        None,
        "example.com/v1",
        "t0",
        None,
    )
}

#[test]
fn kubectl_server_side_apply_takes_over_a_client_side_apply() {
    let live = client_side_applied(3, "blue");
    let config = json!({
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 5, "color": "blue"},
    });
    // Another manager name opts out: the client-side applier's field conflicts.
    let conflicts = apply(
        Some(&live),
        &config,
        "someone",
        false,
        None,
        "example.com/v1",
        "t1",
        None,
    )
    .unwrap_err();
    assert_eq!(conflicts[0].manager, "kubectl-client-side-apply");
    assert_eq!(conflicts[0].field, ".spec.size");
    let applied = apply(
        Some(&live),
        &config,
        KUBECTL,
        false,
        None,
        "example.com/v1",
        "t1",
        None,
    )
    .unwrap()
    .object;
    assert_eq!(applied["spec"]["size"], 5);
    let entries = read_entries(&applied);
    let kubectl = entries.iter().find(|e| e.manager == KUBECTL).unwrap();
    assert_eq!(
        kubectl.set.members().len(),
        2,
        "owns spec.size and spec.color: {:?}",
        kubectl.set
    );
    let client_side = entries
        .iter()
        .find(|e| e.manager == "kubectl-client-side-apply")
        .unwrap();
    assert!(
        !client_side.set.children["f:spec"]
            .children
            .contains_key("f:size")
    );
    // The annotation now holds what was applied, so a later client-side apply diffs right.
    let annotation = applied["metadata"]["annotations"][LAST_APPLIED]
        .as_str()
        .unwrap();
    let kept: Value = serde_json::from_str(annotation).unwrap();
    assert_eq!(kept, config);
}

#[test]
fn a_field_changed_since_the_client_side_apply_still_conflicts() {
    let mut live = client_side_applied(3, "blue");
    // Someone else set size 4 after kubectl's client-side apply set 3.
    live = record_update(
        Some(&live.clone()),
        &{
            let mut changed = live.clone();
            changed["spec"]["size"] = json!(4);
            changed
        },
        "scaler",
        None,
        "example.com/v1",
        "t1",
        None,
    );
    let config = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 5, "color": "red"}});
    let conflicts = apply(
        Some(&live),
        &config,
        KUBECTL,
        false,
        None,
        "example.com/v1",
        "t2",
        None,
    )
    .unwrap_err();
    let fields: Vec<(&str, &str)> = conflicts
        .iter()
        .map(|c| (c.manager.as_str(), c.field.as_str()))
        .collect();
    assert!(fields.contains(&("scaler", ".spec.size")), "{fields:?}");
    assert!(
        fields.contains(&("kubectl-client-side-apply", ".spec.color")),
        "{fields:?}"
    );
}

#[test]
fn an_object_without_managed_fields_belongs_to_before_first_apply() {
    let live = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}});
    let config = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 4}});
    let conflicts = apply(
        Some(&live),
        &config,
        "someone",
        false,
        None,
        "example.com/v1",
        "t1",
        None,
    )
    .unwrap_err();
    assert_eq!(conflicts[0].manager, BEFORE_FIRST_APPLY);
    let applied = apply(
        Some(&live),
        &config,
        "someone",
        true,
        None,
        "example.com/v1",
        "t1",
        None,
    )
    .unwrap()
    .object;
    assert_eq!(applied["spec"]["size"], 4);
    let same = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}});
    let shared = apply(
        Some(&live),
        &same,
        "someone",
        false,
        None,
        "example.com/v1",
        "t1",
        None,
    )
    .unwrap()
    .object;
    let mut managers: Vec<String> = read_entries(&shared)
        .into_iter()
        .map(|e| e.manager)
        .collect();
    managers.sort();
    assert_eq!(managers, [BEFORE_FIRST_APPLY, "someone"]);
}
