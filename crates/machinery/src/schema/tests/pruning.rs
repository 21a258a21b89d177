use serde_json::json;

use super::*;

fn run_prune_table(cases: Vec<(&str, Value, Value, Value, Vec<&str>)>) {
    for (name, schema, mut object, expected, removed) in cases {
        let got = prune(&schema, &mut object);
        assert_eq!(got, removed, "case {name}: removed paths");
        assert_eq!(object, expected, "case {name}: object");
    }
}

#[test]
fn prune_table() {
    let nested = json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "a": {"type": "string"},
                    "items": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"name": {"type": "string"}}}
                    }
                }
            }
        }
    });
    let islands = json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "config": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": true,
                        "properties": {
                            "known": {"type": "object", "properties": {"x": {"type": "integer"}}},
                            "list": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}}
                        }
                    },
                    "strict": {
                        "type": "object",
                        "properties": {
                            "island": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                        }
                    }
                }
            }
        }
    });
    let maps = json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "things": {
                        "type": "object",
                        "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}
                    },
                    "free": {"type": "object", "additionalProperties": true},
                    "closed": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}
                }
            }
        }
    });
    let embedded = json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "template": {
                        "type": "object",
                        "x-kubernetes-embedded-resource": true,
                        "properties": {
                            "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
                        }
                    },
                    "templates": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "x-kubernetes-embedded-resource": true,
                            "properties": {"data": {"type": "string"}}
                        }
                    }
                }
            }
        }
    });
    run_prune_table(vec![
        (
            "root keeps type meta and metadata",
            nested.clone(),
            json!({
                "apiVersion": "x/v1", "kind": "K",
                "metadata": {"name": "n", "junk": 1},
                "spec": {"a": "x", "b": 2},
                "status": {"phase": "p"}
            }),
            json!({
                "apiVersion": "x/v1", "kind": "K",
                "metadata": {"name": "n", "junk": 1},
                "spec": {"a": "x"}
            }),
            vec!["spec.b", "status"],
        ),
        (
            "array items",
            nested.clone(),
            json!({"spec": {"items": [{"name": "a", "bar": 1}, {"name": "b"}, {"bar": 2, "baz": 3}, "scalar"]}}),
            json!({"spec": {"items": [{"name": "a"}, {"name": "b"}, {}, "scalar"]}}),
            vec![
                "spec.items[0].bar",
                "spec.items[2].bar",
                "spec.items[2].baz",
            ],
        ),
        (
            "nothing to prune",
            nested.clone(),
            json!({"spec": {"a": "x"}}),
            json!({"spec": {"a": "x"}}),
            vec![],
        ),
        (
            "type mismatch prunes nothing",
            nested.clone(),
            json!({"spec": "string"}),
            json!({"spec": "string"}),
            vec![],
        ),
        (
            "preserve islands",
            islands.clone(),
            json!({"spec": {
                "config": {
                    "anything": {"goes": [1, {"x": 2}]},
                    "known": {"x": 1, "y": 2},
                    "list": [{"k": "v", "drop": true}]
                },
                "strict": {
                    "gone": 1,
                    "island": {"kept": {"deep": true}}
                }
            }}),
            json!({"spec": {
                "config": {
                    "anything": {"goes": [1, {"x": 2}]},
                    "known": {"x": 1},
                    "list": [{"k": "v"}]
                },
                "strict": {
                    "island": {"kept": {"deep": true}}
                }
            }}),
            vec![
                "spec.config.known.y",
                "spec.config.list[0].drop",
                "spec.strict.gone",
            ],
        ),
        (
            "additionalProperties maps",
            maps.clone(),
            json!({"spec": {
                "labels": {"a": "1", "b": "2"},
                "things": {"one": {"v": "x", "extra": 1}, "two": {}},
                "free": {"any": {"thing": [1]}},
                "closed": {"a": "x", "b": "y"}
            }}),
            json!({"spec": {
                "labels": {"a": "1", "b": "2"},
                "things": {"one": {"v": "x"}, "two": {}},
                "free": {"any": {"thing": [1]}},
                "closed": {"a": "x"}
            }}),
            vec!["spec.closed.b", "spec.things.one.extra"],
        ),
        (
            "embedded resources",
            embedded.clone(),
            json!({"spec": {
                "template": {
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "x", "whatever": 1},
                    "spec": {"replicas": 1, "junk": 2},
                    "other": 3
                },
                "templates": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "data": "d", "extra": 1}
                ]
            }}),
            json!({"spec": {
                "template": {
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "x", "whatever": 1},
                    "spec": {"replicas": 1}
                },
                "templates": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "data": "d"}
                ]
            }}),
            vec![
                "spec.template.other",
                "spec.template.spec.junk",
                "spec.templates[0].extra",
            ],
        ),
        (
            "nested non-embedded object drops type meta",
            nested.clone(),
            json!({"spec": {"apiVersion": "v1", "kind": "K", "metadata": {}}}),
            json!({"spec": {}}),
            vec!["spec.apiVersion", "spec.kind", "spec.metadata"],
        ),
        (
            "array without items schema empties nested objects",
            json!({"type": "object", "properties": {"list": {"type": "array"}}}),
            json!({"list": [{"a": 1}, 2, [{"b": 1}]]}),
            json!({"list": [{}, 2, [{}]]}),
            vec!["list[0].a", "list[2][0].b"],
        ),
        (
            "root preserve keeps unknown but prunes declared",
            json!({
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {
                    "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
                    "spec": {"type": "object", "properties": {"a": {"type": "string"}}}
                }
            }),
            json!({"metadata": {"name": "n", "labels": {}}, "spec": {"a": "x", "b": 1}, "other": 1}),
            json!({"metadata": {"name": "n", "labels": {}}, "spec": {"a": "x"}, "other": 1}),
            vec!["spec.b"],
        ),
    ]);
}

#[test]
fn prune_is_idempotent_and_sorted() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object"}}});
    let mut object = json!({"z": 1, "spec": {"b": 1, "a": 1}, "a": 1, "items": [1]});
    let removed = prune(&schema, &mut object);
    assert_eq!(removed, vec!["a", "items", "spec.a", "spec.b", "z"]);
    assert!(prune(&schema, &mut object).is_empty());
    assert_eq!(object, json!({"spec": {}}));
}

// -----------------------------------------------------------------------------------------
// Defaulting
// -----------------------------------------------------------------------------------------

fn run_default_table(cases: Vec<(&str, Value, Value, Value)>) {
    for (name, schema, mut object, expected) in cases {
        apply_defaults(&schema, &mut object);
        assert_eq!(object, expected, "case {name}");
    }
}

#[test]
fn defaults_table() {
    let deep = json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "default": {},
                "properties": {
                    "replicas": {"type": "integer", "default": 1},
                    "strategy": {
                        "type": "object",
                        "default": {"type": "Rolling"},
                        "properties": {
                            "type": {"type": "string"},
                            "maxSurge": {"type": "integer", "default": 25}
                        }
                    },
                    "template": {
                        "type": "object",
                        "properties": {"image": {"type": "string", "default": "nginx"}}
                    }
                }
            }
        }
    });
    let collections = json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "ports": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "port": {"type": "integer"},
                                "protocol": {"type": "string", "default": "TCP"}
                            }
                        }
                    },
                    "features": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "properties": {"enabled": {"type": "boolean", "default": true}}
                        }
                    },
                    "names": {"type": "array", "items": {"type": "string", "default": "unnamed"}},
                    "plain": {"type": "array", "items": {"type": "string"}},
                    "weights": {"type": "object", "additionalProperties": {"type": "integer", "default": 1}},
                    "notes": {"type": "object", "additionalProperties": {"type": "string"}}
                }
            }
        }
    });
    let nulls = json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "a": {"type": "integer", "default": 5},
                    "b": {"type": "integer"},
                    "c": {"type": "integer", "nullable": true},
                    "d": {"type": "integer", "nullable": true, "default": 7},
                    "e": {"type": "object", "default": {"x": 1}, "properties": {"x": {"type": "integer"}}}
                }
            }
        }
    });
    run_default_table(vec![
        (
            "defaults at several depths from an empty object",
            deep.clone(),
            json!({}),
            json!({"spec": {"replicas": 1, "strategy": {"type": "Rolling", "maxSurge": 25}}}),
        ),
        (
            "existing values are kept",
            deep.clone(),
            json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate", "maxSurge": 0}}}),
            json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate", "maxSurge": 0}}}),
        ),
        (
            "defaults inside an existing object",
            deep.clone(),
            json!({"spec": {"template": {}}}),
            json!({"spec": {
                "replicas": 1,
                "strategy": {"type": "Rolling", "maxSurge": 25},
                "template": {"image": "nginx"}
            }}),
        ),
        (
            "type mismatch is left alone",
            deep.clone(),
            json!({"spec": "oops"}),
            json!({"spec": "oops"}),
        ),
        (
            "array items and map values",
            collections.clone(),
            json!({"spec": {
                "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}],
                "features": {"a": {}, "b": {"enabled": false}}
            }}),
            json!({"spec": {
                "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                "features": {"a": {"enabled": true}, "b": {"enabled": false}}
            }}),
        ),
        (
            "null items and map values",
            collections.clone(),
            json!({"spec": {
                "names": ["x", null],
                "plain": ["x", null],
                "weights": {"a": null, "b": 3},
                "notes": {"a": null, "b": "x"},
                "features": {"f": null}
            }}),
            json!({"spec": {
                "names": ["x", "unnamed"],
                "plain": ["x", null],
                "weights": {"a": 1, "b": 3},
                "notes": {"b": "x"},
                "features": {}
            }}),
        ),
        (
            "null handling",
            nulls.clone(),
            json!({"spec": {"a": null, "b": null, "c": null, "d": null, "e": null}}),
            json!({"spec": {"a": 5, "c": null, "d": null, "e": {"x": 1}}}),
        ),
        (
            "absent fields get defaults, nullable ones too",
            nulls.clone(),
            json!({"spec": {}}),
            json!({"spec": {"a": 5, "d": 7, "e": {"x": 1}}}),
        ),
        (
            "no parent, no defaults",
            nulls.clone(),
            json!({"other": null}),
            json!({"other": null}),
        ),
    ]);
}

#[test]
fn defaults_are_deep_clones() {
    let schema = json!({
        "type": "object",
        "properties": {
            "a": {"type": "object", "default": {"list": [1]}, "properties": {"list": {"type": "array", "items": {"type": "integer"}}}},
            "b": {"type": "object", "default": {"list": [1]}, "properties": {"list": {"type": "array", "items": {"type": "integer"}}}}
        }
    });
    let mut object = json!({});
    apply_defaults(&schema, &mut object);
    object["a"]["list"][0] = json!(99);
    assert_eq!(object["b"], json!({"list": [1]}));
    assert_eq!(schema["properties"]["a"]["default"], json!({"list": [1]}));
}

// -----------------------------------------------------------------------------------------
// Structural checks
// -----------------------------------------------------------------------------------------
