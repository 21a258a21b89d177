use serde_json::json;

use super::*;
use crate::schema::Schema;

mod fuzz;

thread_local! {
    /// How many writes on this thread took the shortcut of `touch.rs`.
    pub(super) static SHORTCUTS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}
mod last_applied;

/// `super::apply` with the schema given as a document (compiled here).
#[allow(clippy::too_many_arguments)]
fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    schema: Option<&Value>,
    api_version: &str,
    now: &str,
    subresource: Option<&str>,
) -> Result<Applied, Vec<Conflict>> {
    let compiled = schema.map(Schema::compile);
    super::apply(
        live,
        config,
        manager,
        force,
        compiled.as_ref(),
        api_version,
        now,
        subresource,
    )
}

/// `super::record_update` with the schema given as a document (compiled here).
fn record_update(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    schema: Option<&Value>,
    api_version: &str,
    now: &str,
    subresource: Option<&str>,
) -> Value {
    let compiled = schema.map(Schema::compile);
    super::record_update(
        old,
        new.clone(),
        manager,
        compiled.as_ref(),
        api_version,
        now,
        subresource,
    )
}

const V: &str = "example.com/v1";
const T0: &str = "2024-01-01T00:00:00Z";
const T1: &str = "2024-01-01T00:00:01Z";
const T2: &str = "2024-01-01T00:00:02Z";

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {"type": "object", "properties": {
                "size": {"type": "integer"},
                "color": {"type": "string"},
                "containers": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {
                        "name": {"type": "string"},
                        "image": {"type": "string"},
                        "args": {"type": "array", "items": {"type": "string"}}
                    }}
                },
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["port", "protocol"],
                    "items": {"type": "object", "properties": {
                        "port": {"type": "integer"},
                        "protocol": {"type": "string"},
                        "name": {"type": "string"}
                    }}
                },
                "tags": {"type": "array", "x-kubernetes-list-type": "set",
                         "items": {"type": "string"}},
                "args": {"type": "array", "items": {"type": "string"}},
                "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                             "properties": {"matchLabels": {"type": "object",
                                 "additionalProperties": {"type": "string"}}}},
                "params": {"type": "object", "additionalProperties": {"type": "string"}},
                "template": {"type": "object", "properties": {
                    "replicas": {"type": "integer"},
                    "mode": {"type": "string"}
                }},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }},
            "status": {"type": "object", "properties": {
                "ready": {"type": "boolean"},
                "phase": {"type": "string"}
            }}
        }
    })
}

/// A Widget with the given spec.
fn widget(spec: Value) -> Value {
    json!({"apiVersion": V, "kind": "Widget",
           "metadata": {"name": "w", "namespace": "default"}, "spec": spec})
}

/// A Widget with labels and a spec (left out when empty).
fn labelled(labels: Value, spec: Value) -> Value {
    let mut out = json!({"apiVersion": V, "kind": "Widget",
           "metadata": {"name": "w", "namespace": "default", "labels": labels}});
    if spec != json!({}) {
        out["spec"] = spec;
    }
    out
}

fn strip_managed(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(Value::Object(meta)) = v.get_mut("metadata") {
        meta.remove("managedFields");
    }
    v
}

fn strip_times(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(Value::Array(list)) = v.pointer_mut("/metadata/managedFields") {
        for e in list {
            if let Value::Object(e) = e {
                e.remove("time");
            }
        }
    }
    v
}

/// fieldsV1 of the entry of `manager` with `operation`.
fn fields(obj: &Value, manager: &str, operation: &str) -> Option<Value> {
    obj.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
        .map(|e| e["fieldsV1"].clone())
}

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap_or("").to_string(),
                        e["operation"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn conflict(manager: &str, field: &str) -> Conflict {
    Conflict {
        manager: manager.into(),
        field: field.into(),
    }
}

/// One step of a scenario; the time advances with every step.
enum Op {
    /// Apply of a full config by a manager.
    Apply(&'static str, Value),
    /// Forced apply.
    Force(&'static str, Value),
    /// Non-apply write by a manager: the live object with this spec.
    Update(&'static str, Value),
    /// Non-apply write replacing the labels.
    UpdateLabels(&'static str, Value),
}

fn run(ops: Vec<Op>, schema: Option<&Value>) -> Result<Value, Vec<Conflict>> {
    let mut live: Option<Value> = None;
    for (i, op) in ops.into_iter().enumerate() {
        let now = format!("2024-01-01T00:00:{i:02}Z");
        let next = match op {
            Op::Apply(m, cfg) => {
                apply(live.as_ref(), &cfg, m, false, schema, V, &now, None)?.object
            }
            Op::Force(m, cfg) => apply(live.as_ref(), &cfg, m, true, schema, V, &now, None)?.object,
            Op::Update(m, spec) => {
                let mut new = live.clone().unwrap_or_else(|| widget(json!({})));
                new["spec"] = spec;
                record_update(live.as_ref(), &new, m, schema, V, &now, None)
            }
            Op::UpdateLabels(m, labels) => {
                let mut new = live.clone().unwrap_or_else(|| widget(json!({})));
                new["metadata"]["labels"] = labels;
                record_update(live.as_ref(), &new, m, schema, V, &now, None)
            }
        };
        live = Some(next);
    }
    Ok(live.unwrap_or(Value::Null))
}

#[test]
fn create_by_apply_exact_managed_fields() {
    let cfg = json!({
        "apiVersion": V, "kind": "Widget",
        "metadata": {"name": "w", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"size": 3, "containers": [{"name": "main", "image": "nginx"}],
                 "tags": ["a"]}
    });
    let s = schema();
    let out = apply(None, &cfg, "kubectl", false, Some(&s), V, T0, None)
        .unwrap()
        .object;
    assert_eq!(strip_managed(&out), cfg);
    assert_eq!(
        out["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": V,
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:containers": {
                        "k:{\"name\":\"main\"}": {".": {}, "f:image": {}, "f:name": {}}
                    },
                    "f:size": {},
                    "f:tags": {"v:\"a\"": {}}
                }
            }
        }])
    );
}

#[test]
fn brief_example_shape_without_schema() {
    let out = apply(
        None,
        &widget(json!({"size": 1})),
        "m",
        false,
        None,
        V,
        T0,
        None,
    )
    .unwrap()
    .object;
    assert_eq!(
        fields(&out, "m", "Apply"),
        Some(json!({"f:spec": {"f:size": {}}}))
    );
    // Nested objects without a schema are map entries: they own themselves.
    let out = apply(
        None,
        &widget(json!({"tpl": {"a": 1}, "list": [1, 2]})),
        "m",
        false,
        None,
        V,
        T0,
        None,
    )
    .unwrap()
    .object;
    assert_eq!(
        fields(&out, "m", "Apply"),
        Some(json!({"f:spec": {"f:list": {}, "f:tpl": {".": {}, "f:a": {}}}}))
    );
}

struct Scenario {
    name: &'static str,
    ops: Vec<Op>,
    want_spec: Value,
    want_fields: Vec<(&'static str, &'static str, Option<Value>)>,
}

#[test]
fn scenarios() {
    let s = schema();
    let cases = vec![
        Scenario {
            name: "re-apply without a field removes it",
            ops: vec![
                Op::Apply("a", widget(json!({"size": 1, "color": "red"}))),
                Op::Apply("a", widget(json!({"size": 1}))),
            ],
            want_spec: json!({"size": 1}),
            want_fields: vec![("a", "Apply", Some(json!({"f:spec": {"f:size": {}}})))],
        },
        Scenario {
            name: "two appliers share a field with equal values",
            ops: vec![
                Op::Apply("a", widget(json!({"size": 1, "color": "red"}))),
                Op::Apply("b", widget(json!({"size": 1}))),
            ],
            want_spec: json!({"size": 1, "color": "red"}),
            want_fields: vec![
                (
                    "a",
                    "Apply",
                    Some(json!({"f:spec": {"f:color": {}, "f:size": {}}})),
                ),
                ("b", "Apply", Some(json!({"f:spec": {"f:size": {}}}))),
            ],
        },
        Scenario {
            name: "a shared field survives when one owner drops it",
            ops: vec![
                Op::Apply("a", widget(json!({"size": 1, "color": "red"}))),
                Op::Apply("b", widget(json!({"size": 1}))),
                Op::Apply("a", widget(json!({"color": "red"}))),
            ],
            want_spec: json!({"size": 1, "color": "red"}),
            want_fields: vec![
                ("a", "Apply", Some(json!({"f:spec": {"f:color": {}}}))),
                ("b", "Apply", Some(json!({"f:spec": {"f:size": {}}}))),
            ],
        },
        Scenario {
            name: "map list merges by key",
            ops: vec![
                Op::Apply(
                    "a",
                    widget(json!({"containers": [{"name": "x", "image": "i1"}]})),
                ),
                Op::Apply(
                    "b",
                    widget(json!({"containers": [{"name": "y", "image": "i2"}]})),
                ),
            ],
            want_spec: json!({"containers": [
                {"name": "x", "image": "i1"}, {"name": "y", "image": "i2"}]}),
            want_fields: vec![(
                "b",
                "Apply",
                Some(json!({"f:spec": {"f:containers": {
                    "k:{\"name\":\"y\"}": {".": {}, "f:image": {}, "f:name": {}}}}})),
            )],
        },
        Scenario {
            name: "map list item merges fields of two managers",
            ops: vec![
                Op::Apply(
                    "a",
                    widget(json!({"containers": [{"name": "x", "image": "i1"}]})),
                ),
                Op::Apply(
                    "b",
                    widget(json!({"containers": [{"name": "x", "args": ["--v"]}]})),
                ),
            ],
            want_spec: json!({"containers": [
                {"name": "x", "image": "i1", "args": ["--v"]}]}),
            want_fields: vec![(
                "b",
                "Apply",
                Some(json!({"f:spec": {"f:containers": {
                    "k:{\"name\":\"x\"}": {".": {}, "f:args": {}, "f:name": {}}}}})),
            )],
        },
        Scenario {
            name: "map list item removed when the applier drops it",
            ops: vec![
                Op::Apply(
                    "a",
                    widget(json!({"containers": [
                        {"name": "x", "image": "i1"}, {"name": "y", "image": "i2"}]})),
                ),
                Op::Apply(
                    "a",
                    widget(json!({"containers": [{"name": "y", "image": "i2"}]})),
                ),
            ],
            want_spec: json!({"containers": [{"name": "y", "image": "i2"}]}),
            want_fields: vec![(
                "a",
                "Apply",
                Some(json!({"f:spec": {"f:containers": {
                    "k:{\"name\":\"y\"}": {".": {}, "f:image": {}, "f:name": {}}}}})),
            )],
        },
        Scenario {
            name: "map list item kept while another applier owns it",
            ops: vec![
                Op::Apply(
                    "a",
                    widget(json!({"containers": [{"name": "x", "image": "i1"}]})),
                ),
                Op::Apply("b", widget(json!({"containers": [{"name": "x"}]}))),
                Op::Apply("a", widget(json!({"size": 2}))),
            ],
            want_spec: json!({"containers": [{"name": "x"}], "size": 2}),
            want_fields: vec![(
                "b",
                "Apply",
                Some(json!({"f:spec": {"f:containers": {
                    "k:{\"name\":\"x\"}": {".": {}, "f:name": {}}}}})),
            )],
        },
        Scenario {
            name: "new list items follow the applied order",
            ops: vec![
                Op::Apply(
                    "a",
                    widget(json!({"containers": [{"name": "x"}, {"name": "z"}]})),
                ),
                Op::Apply(
                    "a",
                    widget(json!({"containers": [
                        {"name": "x"}, {"name": "y"}, {"name": "z"}]})),
                ),
            ],
            want_spec: json!({"containers": [{"name": "x"}, {"name": "y"}, {"name": "z"}]}),
            want_fields: vec![],
        },
        Scenario {
            name: "items of other managers keep their place",
            ops: vec![
                Op::Apply("a", widget(json!({"containers": [{"name": "x"}]}))),
                Op::Apply("b", widget(json!({"containers": [{"name": "w"}]}))),
                Op::Apply(
                    "a",
                    widget(json!({"containers": [{"name": "v"}, {"name": "x"}]})),
                ),
            ],
            want_spec: json!({"containers": [{"name": "v"}, {"name": "x"}, {"name": "w"}]}),
            want_fields: vec![],
        },
        Scenario {
            name: "sets are unioned and items removed by their last owner",
            ops: vec![
                Op::Apply("a", widget(json!({"tags": ["x", "y"]}))),
                Op::Apply("b", widget(json!({"tags": ["y", "z"]}))),
                Op::Apply("a", widget(json!({"tags": []}))),
            ],
            want_spec: json!({"tags": ["y", "z"]}),
            want_fields: vec![
                ("a", "Apply", Some(json!({"f:spec": {"f:tags": {}}}))),
                (
                    "b",
                    "Apply",
                    Some(json!({"f:spec": {"f:tags": {"v:\"y\"": {}, "v:\"z\"": {}}}})),
                ),
            ],
        },
        Scenario {
            name: "atomic list replaced whole (forced)",
            ops: vec![
                Op::Apply("a", widget(json!({"args": ["1", "2"], "size": 1}))),
                Op::Force("b", widget(json!({"args": ["3"]}))),
            ],
            want_spec: json!({"args": ["3"], "size": 1}),
            want_fields: vec![
                ("a", "Apply", Some(json!({"f:spec": {"f:size": {}}}))),
                ("b", "Apply", Some(json!({"f:spec": {"f:args": {}}}))),
            ],
        },
        Scenario {
            name: "atomic map replaced whole",
            ops: vec![
                Op::Apply(
                    "a",
                    widget(json!({"selector": {"matchLabels": {"a": "1"}}})),
                ),
                Op::Apply(
                    "a",
                    widget(json!({"selector": {"matchLabels": {"b": "2"}}})),
                ),
            ],
            want_spec: json!({"selector": {"matchLabels": {"b": "2"}}}),
            want_fields: vec![("a", "Apply", Some(json!({"f:spec": {"f:selector": {}}})))],
        },
        Scenario {
            name: "granular map with additionalProperties merges per key",
            ops: vec![
                Op::Apply("a", widget(json!({"params": {"p": "1"}}))),
                Op::Apply("b", widget(json!({"params": {"q": "2"}}))),
                Op::Apply("a", widget(json!({"params": {}}))),
            ],
            want_spec: json!({"params": {"q": "2"}}),
            want_fields: vec![("a", "Apply", Some(json!({"f:spec": {"f:params": {}}})))],
        },
        Scenario {
            name: "preserve-unknown-fields content is granular, entries own themselves",
            ops: vec![
                Op::Apply("a", widget(json!({"extra": {"k": {"n": 1}, "j": [1]}}))),
                Op::Apply("a", widget(json!({"extra": {"j": [2]}}))),
            ],
            want_spec: json!({"extra": {"j": [2]}}),
            want_fields: vec![(
                "a",
                "Apply",
                Some(json!({"f:spec": {"f:extra": {"f:j": {}}}})),
            )],
        },
        Scenario {
            name: "a field emptied by removal disappears",
            ops: vec![
                Op::Apply("a", widget(json!({"template": {"mode": "x"}, "size": 1}))),
                Op::Apply("a", widget(json!({"size": 1}))),
            ],
            want_spec: json!({"size": 1}),
            want_fields: vec![],
        },
        Scenario {
            name: "record_update takes a field over from an applier",
            ops: vec![
                Op::Apply("a", widget(json!({"size": 1, "color": "red"}))),
                Op::Update("editor", json!({"size": 1, "color": "blue"})),
            ],
            want_spec: json!({"size": 1, "color": "blue"}),
            want_fields: vec![
                ("a", "Apply", Some(json!({"f:spec": {"f:size": {}}}))),
                ("editor", "Update", Some(json!({"f:spec": {"f:color": {}}}))),
            ],
        },
        Scenario {
            name: "re-apply after an edit does not remove the edited field",
            ops: vec![
                Op::Apply("a", widget(json!({"size": 1, "color": "red"}))),
                Op::Update("editor", json!({"size": 1, "color": "blue"})),
                Op::Apply("a", widget(json!({"size": 1}))),
            ],
            want_spec: json!({"size": 1, "color": "blue"}),
            want_fields: vec![("editor", "Update", Some(json!({"f:spec": {"f:color": {}}})))],
        },
        Scenario {
            name: "fields removed by an update leave every set",
            ops: vec![
                Op::Apply("a", widget(json!({"size": 1, "color": "red"}))),
                Op::Update("editor", json!({"size": 1})),
            ],
            want_spec: json!({"size": 1}),
            want_fields: vec![
                ("a", "Apply", Some(json!({"f:spec": {"f:size": {}}}))),
                ("editor", "Update", None),
            ],
        },
        Scenario {
            name: "forced apply moves ownership away from an updater",
            ops: vec![
                Op::Apply("a", widget(json!({"size": 1}))),
                Op::Update("kubectl-edit", json!({"size": 2})),
                Op::Force("a", widget(json!({"size": 3}))),
            ],
            want_spec: json!({"size": 3}),
            want_fields: vec![
                ("a", "Apply", Some(json!({"f:spec": {"f:size": {}}}))),
                ("kubectl-edit", "Update", None),
            ],
        },
        Scenario {
            name: "updates by the same manager merge into one entry",
            ops: vec![
                Op::Update("ed", json!({"size": 1})),
                Op::Update("ed", json!({"size": 1, "color": "red"})),
            ],
            want_spec: json!({"size": 1, "color": "red"}),
            want_fields: vec![(
                "ed",
                "Update",
                Some(json!({"f:spec": {".": {}, "f:color": {}, "f:size": {}}})),
            )],
        },
        Scenario {
            name: "update adding a nested struct owns the new nodes",
            ops: vec![
                Op::Apply("a", widget(json!({"size": 1}))),
                Op::Update(
                    "ed",
                    json!({"size": 1, "template": {"mode": "m"},
                                        "containers": [{"name": "c"}]}),
                ),
            ],
            want_spec: json!({"size": 1, "template": {"mode": "m"},
                              "containers": [{"name": "c"}]}),
            want_fields: vec![(
                "ed",
                "Update",
                Some(json!({"f:spec": {
                    "f:containers": {".": {}, "k:{\"name\":\"c\"}": {".": {}, "f:name": {}}},
                    "f:template": {".": {}, "f:mode": {}}}})),
            )],
        },
    ];
    for case in cases {
        let out = run(case.ops, Some(&s)).unwrap_or_else(|c| panic!("{}: {c:?}", case.name));
        assert_eq!(out["spec"], case.want_spec, "{}", case.name);
        for (m, op, want) in case.want_fields {
            assert_eq!(fields(&out, m, op), want, "{}: {m}/{op}", case.name);
        }
    }
}

#[test]
fn labels_are_granular() {
    let s = schema();
    let out = run(
        vec![
            Op::Apply("a", labelled(json!({"app": "web"}), json!({}))),
            Op::Apply("b", labelled(json!({"team": "x"}), json!({}))),
        ],
        Some(&s),
    )
    .unwrap();
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "team": "x"})
    );
    assert_eq!(
        fields(&out, "a", "Apply"),
        Some(json!({"f:metadata": {"f:labels": {"f:app": {}}}}))
    );
    // a drops its label: only b's stays.
    let bare = json!({"apiVersion": V, "kind": "Widget", "metadata": {"name": "w"}});
    let out = apply(Some(&out), &bare, "a", false, Some(&s), V, T2, None)
        .unwrap()
        .object;
    assert_eq!(out["metadata"]["labels"], json!({"team": "x"}));
    assert_eq!(fields(&out, "a", "Apply"), None);
    // b drops it too: the emptied map goes away, name and namespace stay.
    let out = apply(
        Some(&out),
        &widget(json!({"size": 1})),
        "b",
        false,
        Some(&s),
        V,
        T2,
        None,
    )
    .unwrap()
    .object;
    assert_eq!(out["metadata"].get("labels"), None);
    assert_eq!(out["metadata"]["name"], "w");
    assert_eq!(out["metadata"]["namespace"], "default");
}

#[test]
fn label_edit_by_update_manager() {
    let out = run(
        vec![
            Op::Apply("a", labelled(json!({"app": "web"}), json!({}))),
            Op::UpdateLabels("ed", json!({"app": "web", "x": "1"})),
        ],
        None,
    )
    .unwrap();
    assert_eq!(
        fields(&out, "ed", "Update"),
        Some(json!({"f:metadata": {"f:labels": {"f:x": {}}}}))
    );
    assert_eq!(
        fields(&out, "a", "Apply"),
        Some(json!({"f:metadata": {"f:labels": {"f:app": {}}}}))
    );
}

#[test]
fn conflicts() {
    let s = schema();
    let cases: Vec<(&str, Vec<Op>, Vec<Conflict>)> = vec![
        (
            "update owner (kubectl edit)",
            vec![
                Op::Apply("a", widget(json!({"size": 1}))),
                Op::Update("kubectl-edit", json!({"size": 2})),
                Op::Apply("a", widget(json!({"size": 1}))),
            ],
            vec![conflict("kubectl-edit", ".spec.size")],
        ),
        (
            "other applier",
            vec![
                Op::Apply("a", widget(json!({"size": 1}))),
                Op::Apply("b", widget(json!({"size": 2}))),
            ],
            vec![conflict("a", ".spec.size")],
        ),
        (
            "map list item field",
            vec![
                Op::Apply(
                    "a",
                    widget(json!({"containers": [{"name": "c", "image": "x"}]})),
                ),
                Op::Apply(
                    "b",
                    widget(json!({"containers": [{"name": "c", "image": "y"}]})),
                ),
            ],
            vec![conflict("a", ".spec.containers[name=\"c\"].image")],
        ),
        (
            "multi-key map list",
            vec![
                Op::Apply(
                    "a",
                    widget(json!({"ports": [{"port": 80, "protocol": "TCP", "name": "http"}]})),
                ),
                Op::Apply(
                    "b",
                    widget(json!({"ports": [{"port": 80, "protocol": "TCP", "name": "web"}]})),
                ),
            ],
            vec![conflict("a", ".spec.ports[port=80,protocol=\"TCP\"].name")],
        ),
        (
            "atomic list",
            vec![
                Op::Apply("a", widget(json!({"args": ["1"]}))),
                Op::Apply("b", widget(json!({"args": ["1", "2"]}))),
            ],
            vec![conflict("a", ".spec.args")],
        ),
        (
            "atomic map",
            vec![
                Op::Apply(
                    "a",
                    widget(json!({"selector": {"matchLabels": {"a": "1"}}})),
                ),
                Op::Apply(
                    "b",
                    widget(json!({"selector": {"matchLabels": {"a": "2"}}})),
                ),
            ],
            vec![conflict("a", ".spec.selector")],
        ),
        (
            "label",
            vec![
                Op::Apply("a", labelled(json!({"app": "web"}), json!({}))),
                Op::Apply("b", labelled(json!({"app": "db"}), json!({}))),
            ],
            vec![conflict("a", ".metadata.labels.app")],
        ),
        (
            "several owners and fields",
            vec![
                Op::Apply("b", widget(json!({"size": 1}))),
                Op::Apply("a", widget(json!({"size": 1, "color": "red"}))),
                Op::Apply("c", widget(json!({"size": 2, "color": "blue"}))),
            ],
            vec![
                conflict("a", ".spec.color"),
                conflict("a", ".spec.size"),
                conflict("b", ".spec.size"),
            ],
        ),
        (
            "own update entry conflicts with own apply (as in Kubernetes)",
            vec![
                Op::Apply("a", widget(json!({"size": 1}))),
                Op::Update("a", json!({"size": 2})),
                Op::Apply("a", widget(json!({"size": 1}))),
            ],
            vec![conflict("a", ".spec.size")],
        ),
    ];
    for (name, ops, want) in cases {
        let got = run(ops, Some(&s));
        assert_eq!(got.err(), Some(want), "{name}");
    }

    // Not conflicts.
    let ok_cases: Vec<(&str, Vec<Op>)> = vec![
        (
            "same value",
            vec![
                Op::Apply("a", widget(json!({"size": 1}))),
                Op::Update("ed", json!({"size": 2})),
                Op::Apply("b", widget(json!({"size": 2}))),
            ],
        ),
        (
            "set items never conflict",
            vec![
                Op::Apply("a", widget(json!({"tags": ["x"]}))),
                Op::Apply("b", widget(json!({"tags": ["y"]}))),
            ],
        ),
        (
            "different map list items",
            vec![
                Op::Apply(
                    "a",
                    widget(json!({"containers": [{"name": "c", "image": "x"}]})),
                ),
                Op::Apply(
                    "b",
                    widget(json!({"containers": [{"name": "d", "image": "y"}]})),
                ),
            ],
        ),
        (
            "first apply to an object created by someone else",
            vec![
                Op::Update("creator", json!({"size": 1, "color": "red"})),
                Op::Apply("a", widget(json!({"size": 1, "template": {"mode": "x"}}))),
            ],
        ),
    ];
    for (name, ops) in ok_cases {
        assert!(run(ops, Some(&s)).is_ok(), "{name}");
    }
}

#[test]
fn force_apply_moves_ownership() {
    let s = schema();
    let live = run(
        vec![
            Op::Apply("a", widget(json!({"size": 1, "color": "red"}))),
            Op::Update("kubectl-edit", json!({"size": 2, "color": "blue"})),
        ],
        Some(&s),
    )
    .unwrap();
    let cfg = widget(json!({"size": 1, "color": "red"}));
    let err = apply(Some(&live), &cfg, "a", false, Some(&s), V, T2, None).unwrap_err();
    assert_eq!(
        conflict_message(&err, &live),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-edit\" using example.com/v1:\
         \n- .spec.color\n- .spec.size"
    );
    let out = apply(Some(&live), &cfg, "a", true, Some(&s), V, T2, None)
        .unwrap()
        .object;
    assert_eq!(out["spec"], json!({"size": 1, "color": "red"}));
    assert_eq!(managers(&out), vec![("a".to_string(), "Apply".to_string())]);
    assert_eq!(
        fields(&out, "a", "Apply"),
        Some(json!({"f:spec": {"f:color": {}, "f:size": {}}}))
    );
}

#[test]
fn conflict_message_texts() {
    let managed = json!([
        {"manager": "a", "operation": "Update", "apiVersion": "v1", "time": T0,
         "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:x": {}, "f:y": {}}}},
        {"manager": "b", "operation": "Apply", "apiVersion": "v1", "time": T0,
         "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:z": {}}}},
        {"manager": "mgr", "operation": "Update", "apiVersion": V, "time": T0,
         "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:size": {}}}},
        {"manager": "ctl", "operation": "Update", "apiVersion": "v1", "time": T0,
         "subresource": "status",
         "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:ready": {}}}},
        {"manager": "dual", "operation": "Apply", "apiVersion": "v1",
         "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:p": {}}}},
        {"manager": "dual", "operation": "Update", "apiVersion": "v2",
         "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:q": {}}}}
    ]);
    let cases: Vec<(Vec<Conflict>, &str)> = vec![
        (
            vec![conflict("mgr", ".spec.size")],
            "Apply failed with 1 conflict: conflict with \"mgr\" using example.com/v1: .spec.size",
        ),
        (
            vec![conflict("b", ".spec.z")],
            "Apply failed with 1 conflict: conflict with \"b\": .spec.z",
        ),
        (
            vec![conflict("a", ".spec.x"), conflict("a", ".spec.y")],
            "Apply failed with 2 conflicts: conflicts with \"a\" using v1:\n- .spec.x\n- .spec.y",
        ),
        (
            vec![
                conflict("b", ".spec.z"),
                conflict("a", ".spec.x"),
                conflict("a", ".spec.y"),
            ],
            "Apply failed with 3 conflicts: conflicts with \"a\" using v1:\n- .spec.x\n\
             - .spec.y\nconflicts with \"b\":\n- .spec.z",
        ),
        (
            vec![conflict("ctl", ".status.ready")],
            "Apply failed with 1 conflict: conflict with \"ctl\" with subresource \"status\" \
             using v1: .status.ready",
        ),
        (
            vec![conflict("dual", ".spec.q")],
            "Apply failed with 1 conflict: conflict with \"dual\" using v2: .spec.q",
        ),
        (
            vec![conflict("dual", ".spec.p")],
            "Apply failed with 1 conflict: conflict with \"dual\": .spec.p",
        ),
        (
            vec![conflict("ghost", ".spec.g")],
            "Apply failed with 1 conflict: conflict with \"ghost\": .spec.g",
        ),
    ];
    let object = json!({"metadata": {"managedFields": managed.clone()}});
    for (conflicts, want) in cases {
        assert_eq!(conflict_message(&conflicts, &managed), want);
        assert_eq!(conflict_message(&conflicts, &object), want);
    }
}

#[test]
fn default_manager_from_user_agent() {
    let long = "x".repeat(300);
    let cases: Vec<(Option<&str>, String)> = vec![
        (
            Some("kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0"),
            "kubectl".into(),
        ),
        (
            Some("kube-controller-manager/v1.30.0"),
            "kube-controller-manager".into(),
        ),
        (Some("my-operator"), "my-operator".into()),
        (Some("Go-http-client/1.1"), "Go-http-client".into()),
        (Some("a\tb\u{7}c/1"), "abc".into()),
        (Some("with space/1"), "with space".into()),
        (Some(long.as_str()), "x".repeat(128)),
        (Some("/v1"), String::new()),
        (Some(""), String::new()),
        (None, String::new()),
    ];
    for (ua, want) in cases {
        assert_eq!(default_manager(ua), want, "{ua:?}");
    }
}

#[test]
fn record_update_create_and_noop() {
    let s = schema();
    let new = labelled(json!({"app": "web"}), json!({"size": 1, "tags": ["a"]}));
    let out = record_update(None, &new, "kubectl-create", Some(&s), V, T0, None);
    assert_eq!(strip_managed(&out), new);
    assert_eq!(
        out["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl-create", "operation": "Update", "apiVersion": V,
            "time": T0, "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {".": {}, "f:size": {}, "f:tags": {".": {}, "v:\"a\"": {}}}
            }
        }])
    );
    // Nothing changed: managedFields kept exactly (time included), even
    // if the client dropped them.
    let again = record_update(
        Some(&out),
        &strip_managed(&out),
        "other",
        Some(&s),
        V,
        T1,
        None,
    );
    assert_eq!(again, out);
    // Changing only untracked metadata records nothing either.
    let mut renamed = out.clone();
    renamed["metadata"]["resourceVersion"] = json!("5");
    let again = record_update(Some(&out), &renamed, "other", Some(&s), V, T1, None);
    assert_eq!(
        again["metadata"]["managedFields"],
        out["metadata"]["managedFields"]
    );
}

#[test]
fn record_update_table() {
    let s = schema();
    // (name, spec applied by "a", spec written by "ed", ed's fields, a's fields)
    type Case = (&'static str, Value, Value, Option<Value>, Option<Value>);
    let cases: Vec<Case> = vec![
        (
            "changed leaf moves to the updater",
            json!({"size": 1, "color": "red"}),
            json!({"size": 2, "color": "red"}),
            Some(json!({"f:spec": {"f:size": {}}})),
            Some(json!({"f:spec": {"f:color": {}}})),
        ),
        (
            "removed map-list item leaves every set",
            json!({"containers": [{"name": "x", "image": "1"}, {"name": "y"}]}),
            json!({"containers": [{"name": "y"}]}),
            None,
            Some(json!({"f:spec": {"f:containers": {
                "k:{\"name\":\"y\"}": {".": {}, "f:name": {}}}}})),
        ),
        (
            "changed field inside a map-list item",
            json!({"containers": [{"name": "x", "image": "1"}]}),
            json!({"containers": [{"name": "x", "image": "2"}]}),
            Some(json!({"f:spec": {"f:containers": {
                "k:{\"name\":\"x\"}": {"f:image": {}}}}})),
            Some(json!({"f:spec": {"f:containers": {
                "k:{\"name\":\"x\"}": {".": {}, "f:name": {}}}}})),
        ),
        (
            "added set item",
            json!({"tags": ["a"]}),
            json!({"tags": ["a", "b"]}),
            Some(json!({"f:spec": {"f:tags": {"v:\"b\"": {}}}})),
            Some(json!({"f:spec": {"f:tags": {"v:\"a\"": {}}}})),
        ),
        (
            "changed atomic list",
            json!({"args": ["1"], "size": 1}),
            json!({"args": ["1", "2"], "size": 1}),
            Some(json!({"f:spec": {"f:args": {}}})),
            Some(json!({"f:spec": {"f:size": {}}})),
        ),
        (
            "new granular map owns itself",
            json!({"size": 1}),
            json!({"size": 1, "params": {"p": "1"}}),
            Some(json!({"f:spec": {"f:params": {".": {}, "f:p": {}}}})),
            Some(json!({"f:spec": {"f:size": {}}})),
        ),
        (
            "removing everything drops the applier entry",
            json!({"size": 1}),
            json!({}),
            None,
            None,
        ),
        (
            "no change records nothing",
            json!({"size": 1}),
            json!({"size": 1}),
            None,
            Some(json!({"f:spec": {"f:size": {}}})),
        ),
    ];
    for (name, applied, written, want_ed, want_a) in cases {
        let live = apply(None, &widget(applied), "a", false, Some(&s), V, T0, None)
            .unwrap()
            .object;
        let mut new = live.clone();
        new["spec"] = written.clone();
        let out = record_update(Some(&live), &new, "ed", Some(&s), V, T1, None);
        assert_eq!(out["spec"], written, "{name}");
        assert_eq!(fields(&out, "ed", "Update"), want_ed, "{name}");
        assert_eq!(fields(&out, "a", "Apply"), want_a, "{name}");
    }
}

#[test]
fn record_update_explicit_managed_fields() {
    let s = schema();
    let live = apply(
        None,
        &widget(json!({"size": 1})),
        "a",
        false,
        Some(&s),
        V,
        T0,
        None,
    )
    .unwrap()
    .object;
    // `[{}]` clears ownership.
    let mut new = live.clone();
    new["metadata"]["managedFields"] = json!([{}]);
    let out = record_update(Some(&live), &new, "ed", Some(&s), V, T1, None);
    assert_eq!(out["metadata"].get("managedFields"), None);
    // An empty list means "not provided": the live ones are kept.
    new["metadata"]["managedFields"] = json!([]);
    new["spec"]["color"] = json!("red");
    let out = record_update(Some(&live), &new, "ed", Some(&s), V, T1, None);
    assert_eq!(
        managers(&out),
        vec![
            ("a".to_string(), "Apply".to_string()),
            ("ed".to_string(), "Update".to_string())
        ]
    );
}

#[test]
fn subresources() {
    let s = schema();
    let mut live = apply(
        None,
        &widget(json!({"size": 1})),
        "a",
        false,
        Some(&s),
        V,
        T0,
        None,
    )
    .unwrap()
    .object;
    // Status written through the status subresource by a controller.
    let mut new = live.clone();
    new["status"] = json!({"phase": "Running"});
    live = record_update(Some(&live), &new, "ctl", Some(&s), V, T1, Some("status"));
    let entry = live["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "ctl")
        .unwrap()
        .clone();
    assert_eq!(entry["subresource"], "status");
    assert_eq!(
        entry["fieldsV1"],
        json!({"f:status": {".": {}, "f:phase": {}}})
    );
    // A main-resource apply that does not mention status keeps it.
    let out = apply(
        Some(&live),
        &widget(json!({"size": 2})),
        "a",
        false,
        Some(&s),
        V,
        T2,
        None,
    )
    .unwrap()
    .object;
    assert_eq!(out["status"], json!({"phase": "Running"}));
    // Apply to the status subresource gets its own entry.
    let cfg = json!({"apiVersion": V, "kind": "Widget", "metadata": {"name": "w"},
                     "status": {"ready": true}});
    let out = apply(
        Some(&out),
        &cfg,
        "a",
        false,
        Some(&s),
        V,
        T2,
        Some("status"),
    )
    .unwrap()
    .object;
    assert_eq!(out["status"], json!({"phase": "Running", "ready": true}));
    let status_apply: Vec<&Value> = out["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["manager"] == "a" && e["operation"] == "Apply")
        .collect();
    assert_eq!(status_apply.len(), 2);
    assert_eq!(out["spec"], json!({"size": 2}));
}

#[test]
fn noop_apply_returns_live_unchanged() {
    let s = schema();
    let cfg = labelled(
        json!({"app": "x"}),
        json!({"size": 1, "containers": [{"name": "c"}]}),
    );
    let first = apply(None, &cfg, "a", false, Some(&s), V, T0, None)
        .unwrap()
        .object;
    let second = apply(Some(&first), &cfg, "a", false, Some(&s), V, T1, None)
        .unwrap()
        .object;
    assert_eq!(second, first);
    // A second manager applying the same values becomes co-owner: a change.
    let third = apply(Some(&first), &cfg, "b", false, Some(&s), V, T1, None)
        .unwrap()
        .object;
    assert_eq!(strip_managed(&third), strip_managed(&first));
    assert_eq!(managers(&third).len(), 2);
}

#[test]
fn metadata_builtins() {
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "n", "uid": "u-ignored",
                     "annotations": {"a": "1"},
                     "finalizers": ["example.com/f"],
                     "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o",
                                          "uid": "123"}]},
        "data": {"k": "v"}});
    let out = apply(None, &cfg, "a", false, None, "v1", T0, None)
        .unwrap()
        .object;
    assert_eq!(
        fields(&out, "a", "Apply"),
        Some(json!({
            "f:data": {"f:k": {}},
            "f:metadata": {
                "f:annotations": {"f:a": {}},
                "f:finalizers": {"v:\"example.com/f\"": {}},
                "f:ownerReferences": {"k:{\"uid\":\"123\"}": {
                    ".": {}, "f:apiVersion": {}, "f:kind": {}, "f:name": {}, "f:uid": {}}}
            }
        }))
    );
    // Another manager adds a finalizer: union; dropping ours removes only ours.
    let cfg_b = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "finalizers": ["example.com/g"]}});
    let out = apply(Some(&out), &cfg_b, "b", false, None, "v1", T1, None)
        .unwrap()
        .object;
    assert_eq!(
        out["metadata"]["finalizers"],
        json!(["example.com/f", "example.com/g"])
    );
    let mut cfg_a = cfg.clone();
    cfg_a["metadata"]["finalizers"] = json!([]);
    let out = apply(Some(&out), &cfg_a, "a", false, None, "v1", T2, None)
        .unwrap()
        .object;
    assert_eq!(out["metadata"]["finalizers"], json!(["example.com/g"]));
    // Untracked metadata keeps its live value.
    assert_eq!(out["metadata"]["uid"], "u-ignored");
    let mut renamed = cfg_a.clone();
    renamed["metadata"]["uid"] = json!("other");
    let out2 = apply(Some(&out), &renamed, "a", false, None, "v1", T2, None)
        .unwrap()
        .object;
    assert_eq!(out2, out);
}

#[test]
fn malformed_managed_fields_are_ignored() {
    let s = schema();
    let mut live = widget(json!({"size": 1}));
    live["metadata"]["managedFields"] = json!([
        42,
        {"manager": 1, "operation": "Apply"},
        {"manager": "x", "operation": "Bogus", "fieldsV1": {"f:spec": {"f:size": {}}}},
        {"manager": "y", "operation": "Apply", "fieldsV1": "nope"},
        {"manager": "z", "operation": "Apply", "fieldsType": "FieldsV2",
         "fieldsV1": {"f:spec": {"f:size": {}}}},
        {"manager": "w", "operation": "Update", "apiVersion": "v1",
         "fieldsV1": {"f:spec": {"f:size": null, "k:{\"name\": \"a\"}": 7}}}
    ]);
    let err = apply(
        Some(&live),
        &widget(json!({"size": 2})),
        "a",
        false,
        Some(&s),
        V,
        T0,
        None,
    )
    .unwrap_err();
    assert_eq!(err, vec![conflict("w", ".spec.size")]);
    let out = apply(
        Some(&live),
        &widget(json!({"size": 2})),
        "a",
        true,
        Some(&s),
        V,
        T0,
        None,
    )
    .unwrap()
    .object;
    assert_eq!(
        managers(&out),
        vec![
            ("a".to_string(), "Apply".to_string()),
            ("w".to_string(), "Update".to_string())
        ]
    );
    // The non-canonical key spelling was normalized.
    assert_eq!(
        fields(&out, "w", "Update"),
        Some(json!({"f:spec": {"k:{\"name\":\"a\"}": {}}}))
    );
    // Garbage instead of a list.
    live["metadata"]["managedFields"] = json!("garbage");
    assert!(
        apply(
            Some(&live),
            &widget(json!({"size": 2})),
            "a",
            false,
            Some(&s),
            V,
            T0,
            None
        )
        .is_ok()
    );
}

#[test]
fn numbers_compare_by_value() {
    let s = schema();
    let live = run(vec![Op::Update("ed", json!({"size": 1.0}))], Some(&s)).unwrap();
    assert!(
        apply(
            Some(&live),
            &widget(json!({"size": 1})),
            "a",
            false,
            Some(&s),
            V,
            T1,
            None
        )
        .is_ok()
    );
}

#[test]
fn format_paths() {
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["f:spec", "f:size"], ".spec.size"),
        (
            vec![
                "f:spec",
                "f:ports",
                "k:{\"port\":80,\"protocol\":\"TCP\"}",
                "f:name",
            ],
            ".spec.ports[port=80,protocol=\"TCP\"].name",
        ),
        (
            vec!["f:metadata", "f:finalizers", "v:\"a/b\""],
            ".metadata.finalizers[=\"a/b\"]",
        ),
        (
            vec!["f:metadata", "f:labels", "f:app.kubernetes.io/name"],
            ".metadata.labels.app.kubernetes.io/name",
        ),
        (vec!["f:x", "i:3"], ".x[3]"),
    ];
    for (path, want) in cases {
        let path: Vec<String> = path.into_iter().map(String::from).collect();
        assert_eq!(format_path(&path), want);
    }
}

#[test]
fn strategic_merge_markers_are_understood() {
    let s = json!({"properties": {"spec": {"properties": {
        "containers": {"type": "array", "x-kubernetes-patch-strategy": "merge",
                       "x-kubernetes-patch-merge-key": "name",
                       "items": {"type": "object"}},
        "finalizers": {"type": "array", "x-kubernetes-patch-strategy": "merge"}}}}});
    let out = apply(
        None,
        &widget(json!({"containers": [{"name": "c"}], "finalizers": ["f"]})),
        "a",
        false,
        Some(&s),
        V,
        T0,
        None,
    )
    .unwrap()
    .object;
    assert_eq!(
        fields(&out, "a", "Apply"),
        Some(json!({"f:spec": {
            "f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:name": {}}},
            "f:finalizers": {"v:\"f\"": {}}}}))
    );
}

#[test]
fn field_set_operations() {
    let p = |xs: &[&str]| -> Vec<String> { xs.iter().map(|x| x.to_string()).collect() };
    let mut a = FieldSet::default();
    a.insert(&p(&["f:spec", "f:a"]));
    a.insert(&p(&["f:spec", "f:b"]));
    a.insert(&p(&["f:spec"]));
    let mut b = FieldSet::default();
    b.insert(&p(&["f:spec", "f:b"]));
    assert_eq!(a.intersection(&b), b);
    let mut c = a.clone();
    c.subtract(&b);
    assert_eq!(c.to_fields_v1(), json!({"f:spec": {".": {}, "f:a": {}}}));
    let back = FieldSet::from_fields_v1(c.to_fields_v1().as_object().unwrap());
    assert_eq!(back, c);
    c.union_with(&b);
    assert_eq!(c, a);
    assert_eq!(
        a.members(),
        vec![p(&["f:spec"]), p(&["f:spec", "f:a"]), p(&["f:spec", "f:b"])]
    );
}

#[test]
fn update_entries_are_capped_by_merging_the_oldest() {
    let s = schema();
    let mut live = apply(
        None,
        &widget(json!({"size": 1})),
        "applier",
        false,
        Some(&s),
        V,
        T0,
        None,
    )
    .unwrap()
    .object;
    for i in 0..15 {
        let mut next = live.clone();
        next["metadata"]["labels"] = json!({format!("l{i}"): "x"});
        let labels = next["metadata"]["labels"].clone();
        let mut merged = live.clone();
        let mut all = merged["metadata"]["labels"].clone();
        if !all.is_object() {
            all = json!({});
        }
        all[format!("l{i}")] = json!("x");
        merged["metadata"]["labels"] = all;
        let _ = labels;
        let now = format!("2024-01-01T00:01:{i:02}Z");
        live = record_update(
            Some(&live),
            &merged,
            &format!("editor-{i}"),
            Some(&s),
            V,
            &now,
            None,
        );
    }
    let entries = live["metadata"]["managedFields"].as_array().unwrap();
    let updates: Vec<&str> = entries
        .iter()
        .filter(|e| e["operation"] == "Update")
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(updates.len(), MAX_UPDATE_MANAGERS, "{updates:?}");
    assert!(updates.contains(&ANCIENT_CHANGES_MANAGER), "{updates:?}");
    assert!(
        updates.contains(&"editor-14") && !updates.contains(&"editor-0"),
        "{updates:?}"
    );
    // Nothing is forgotten: the merged entry owns what the oldest editors set.
    let ancient = entries
        .iter()
        .find(|e| e["manager"] == ANCIENT_CHANGES_MANAGER)
        .unwrap();
    assert!(
        ancient["fieldsV1"]["f:metadata"]["f:labels"]["f:l0"].is_object(),
        "{ancient}"
    );
    // The applier's own entry is never merged.
    assert!(
        entries
            .iter()
            .any(|e| e["manager"] == "applier" && e["operation"] == "Apply")
    );
}
