//! Fuzz targets on stable Rust (nightly, which `cargo fuzz` needs, cannot be had here):
//! proptest drives selectors, JSON and merge patches, schema validation and server-side
//! apply, and RBAC (objects, policies, coverage) with arbitrary input, and every target first replays the corpus in `corpus/` —
//! the hostile cases found so far. None may panic; bounded operations must stay bounded.
//! CI runs them with the suite (proptest's default 256 cases each, plus the corpus).

use fleetdb_machinery::apply;
use fleetdb_machinery::json::depth_within;
use fleetdb_machinery::jsonpath;
use fleetdb_machinery::jsonscan;
use fleetdb_machinery::patch::apply_json_patch;
use fleetdb_machinery::rbac::{self, PolicyRule, Request, User};
use fleetdb_machinery::schema::Schema;
use fleetdb_machinery::selectors::{FieldSelector, LabelSelector};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The depth and growth limits the server applies to patches.
const MAX_DEPTH: usize = 100;
const MAX_ADDED: usize = 3 * 1024 * 1024;

fn corpus(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/corpus/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Arbitrary JSON, small and nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        "[a-z/~0-9 é]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z~/]{0,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON pointers into small documents, including odd ones.
fn pointer() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-c]",
            "[0-3]",
            Just("-".to_owned()),
            Just("~1".to_owned()),
            Just("~0".to_owned())
        ],
        0..4,
    )
    .prop_map(|tokens| tokens.iter().map(|t| format!("/{t}")).collect())
}

fn operation() -> impl Strategy<Value = Value> {
    prop_oneof![
        (pointer(), json_value()).prop_map(|(p, v)| json!({"op": "add", "path": p, "value": v})),
        pointer().prop_map(|p| json!({"op": "remove", "path": p})),
        (pointer(), json_value())
            .prop_map(|(p, v)| json!({"op": "replace", "path": p, "value": v})),
        (pointer(), pointer()).prop_map(|(f, p)| json!({"op": "move", "from": f, "path": p})),
        (pointer(), pointer()).prop_map(|(f, p)| json!({"op": "copy", "from": f, "path": p})),
        (pointer(), json_value()).prop_map(|(p, v)| json!({"op": "test", "path": p, "value": v})),
    ]
}

fn patch_stays_bounded(mut doc: Value, patch: Value) {
    let Ok(operations) = serde_json::from_value::<Vec<json_patch::PatchOperation>>(patch) else {
        return;
    };
    if apply_json_patch(&mut doc, &operations, MAX_DEPTH, MAX_ADDED).is_ok() {
        assert!(
            depth_within(&doc, MAX_DEPTH + 8).is_some(),
            "a patch nested too deep"
        );
    }
    assert!(
        serde_json::to_vec(&doc).unwrap().len() < 8 * MAX_ADDED,
        "a patch grew without bound"
    );
}

#[test]
fn patch_corpus() {
    let cases: Vec<Value> = serde_json::from_str(&corpus("patches.json")).unwrap();
    for case in cases {
        patch_stays_bounded(case["doc"].clone(), case["patch"].clone());
        let mut merged = case["doc"].clone();
        json_patch::merge(&mut merged, &case["patch"]);
    }
}

#[test]
fn selector_corpus() {
    for line in corpus("selectors.txt").lines() {
        if let Ok(selector) = LabelSelector::parse(line) {
            let again = LabelSelector::parse(&selector.to_string());
            assert!(
                again.is_ok(),
                "{line:?} prints as {selector}, which does not parse"
            );
        }
        if let Ok(selector) = FieldSelector::parse(line) {
            let _ = selector.matches(|_| Some("x".into()));
        }
    }
}

/// JSONPaths of the forms printer columns use, over the keys `json_value` makes.
fn printer_path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-z~/]{0,3}".prop_map(|f| format!(".{f}")),
            (0usize..3).prop_map(|i| format!("[{i}]")),
            ("[a-z]{1,2}", "[a-z/~0-9 é]{0,2}").prop_map(|(f, v)| format!("[?(@.{f}==\"{v}\")]")),
        ],
        0..4,
    )
    .prop_map(|steps| steps.concat())
}

/// JSON text, compact or pretty, with a few bytes changed: what JSON is made of, escapes,
/// control characters and stray letters put in, ranges taken out.
fn mangled_json() -> impl Strategy<Value = String> {
    let edit = (
        any::<prop::sample::Index>(),
        0usize..3,
        prop_oneof![
            prop::sample::select(vec![
                "{", "}", "[", "]", "\"", ",", ":", " ", "\\", "\\u", "\\ud800", "\\n", "\\x", "0",
                "01", "-", ".", "e", "E+", "t", "true", "nul", "\u{1}", "\n", "é",
            ])
            .prop_map(str::to_owned),
            "[a-f0-9]{1,4}",
        ],
    );
    (
        json_value(),
        any::<bool>(),
        prop::collection::vec(edit, 0..3),
    )
        .prop_map(|(value, pretty, edits)| {
            let mut text = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                serde_json::to_string(&value).unwrap()
            };
            for (at, remove, insert) in edits {
                let mut start = at.index(text.len() + 1);
                while !text.is_char_boundary(start) {
                    start -= 1;
                }
                let mut end = (start + remove).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(start..end, &insert);
            }
            text
        })
}

proptest! {
    /// The scanner accepts exactly what serde_json accepts, and an object's fields are the
    /// texts of what serde_json decodes.
    #[test]
    fn the_scanner_agrees_with_serde_json(text in mangled_json()) {
        let serde = serde_json::from_str::<serde::de::IgnoredAny>(&text);
        let scanned = jsonscan::validate(&text);
        prop_assert_eq!(scanned.is_ok(), serde.is_ok(), "{:?}: {:?}", text, scanned);
        let open = jsonscan::after_space(&text, 0);
        if !text[open..].starts_with('{') {
            return Ok(());
        }
        let mut fields = Vec::new();
        let read = jsonscan::read_object(&text, open, 0, |key, at| {
            let end = jsonscan::skip(&text, at, 1)?;
            fields.push((key.into_owned(), &text[at..end]));
            Ok(end)
        });
        let decoded = serde_json::from_str::<serde_json::Map<String, Value>>(&text);
        match read {
            Ok(end) if jsonscan::after_space(&text, end) == text.len() => {
                let mut mine = serde_json::Map::new();
                for (key, value) in fields {
                    let value = serde_json::from_str::<Value>(value);
                    // Lone surrogates pass as text but do not decode into strings.
                    prop_assume!(value.is_ok());
                    mine.insert(key, value.unwrap());
                }
                prop_assert_eq!(Ok(mine), decoded.map_err(|_| ()), "{:?}", text);
            }
            Ok(_) => prop_assert!(serde.is_err(), "{:?}", text),
            // Keys must decode (a lone surrogate in one does not).
            Err(_) => prop_assert!(decoded.is_err(), "{:?}", text),
        }
    }

    /// A projection of some paths decodes what each of them finds in the whole object.
    #[test]
    fn projected_decoding_finds_what_the_whole_object_has(object in json_value(), paths in prop::collection::vec(printer_path(), 0..4)) {
        let text = serde_json::to_vec(&object).unwrap();
        // Compared with the text decoded whole (floats need not survive a round trip).
        let object: Value = serde_json::from_slice(&text).unwrap();
        let paths: Vec<jsonpath::Path> = paths.iter().map(|p| jsonpath::Path::parse(p)).collect();
        let projection = jsonpath::Projection::new(&paths);
        match projection.decode(&text) {
            Ok(projected) => {
                for path in &paths {
                    prop_assert_eq!(path.get(&projected), path.get(&object), "{}", path);
                }
            }
            // Only objects are projected.
            Err(_) => prop_assert!(!object.is_object()),
        }
    }

    #[test]
    fn label_selectors_never_panic_and_print_back(input in "[a-z0-9.=!,()/ <>-]{0,40}", key in "[a-z]{1,3}", value in "[a-z0-9]{0,3}") {
        if let Ok(selector) = LabelSelector::parse(&input) {
            let labels = [(key, value)].into_iter().collect();
            let matched = selector.matches(&labels);
            let printed = LabelSelector::parse(&selector.to_string());
            prop_assert!(printed.is_ok(), "{input:?} printed as {selector}");
            prop_assert_eq!(printed.unwrap().matches(&labels), matched);
        }
    }

    #[test]
    fn field_selectors_never_panic(input in "[a-z.=!,\\\\ ]{0,40}") {
        if let Ok(selector) = FieldSelector::parse(&input) {
            let _ = selector.matches(|field| Some(field.to_owned()));
            let _ = selector.exact("metadata.name");
        }
    }

    #[test]
    fn json_patches_stay_bounded(doc in json_value(), ops in prop::collection::vec(operation(), 0..12)) {
        patch_stays_bounded(doc, Value::Array(ops));
    }

    #[test]
    fn merge_patches_never_panic(mut doc in json_value(), patch in json_value()) {
        json_patch::merge(&mut doc, &patch);
    }

    #[test]
    fn schemas_never_panic_on_any_document(schema in json_value(), doc in json_value()) {
        let compiled = Schema::compile(&schema);
        let mut pruned = doc.clone();
        compiled.prune(&mut pruned);
        compiled.apply_defaults(&mut pruned);
        let _ = compiled.validate(&pruned);
        let _ = fleetdb_machinery::schema::check_structural(&schema, "s");
    }

    #[test]
    fn apply_never_panics(live in json_value(), config in json_value(), schema in json_value(), force in any::<bool>()) {
        let compiled = Schema::compile(&schema);
        let result = apply::apply(Some(&live), &config, "m", force, Some(&compiled), "v1", "2026-01-01T00:00:00Z", None);
        if let Err(conflicts) = result {
            let _ = apply::conflict_message(&conflicts, &live);
        }
        let _ = apply::record_update(Some(&live), config.clone(), "m", Some(&compiled), "v1", "2026-01-01T00:00:00Z", Some("status"));
    }

    #[test]
    fn rbac_objects_and_policies_never_panic(
        roles in prop::collection::vec(json_value(), 0..4),
        bindings in prop::collection::vec(json_value(), 0..4),
        verb in "[a-z*]{0,4}",
        path in "[/a-z*]{0,6}",
    ) {
        for object in roles.iter().chain(&bindings) {
            let _ = rbac::validation::role(object);
            let _ = rbac::validation::cluster_role(object);
            let _ = rbac::validation::binding(object, true);
            let _ = rbac::validation::binding(object, false);
            let mut defaulted = object.clone();
            rbac::validation::default_subjects(&mut defaulted);
            let _ = rbac::validation::role_ref_change(object, &defaulted);
        }
        let policy = rbac::Policy::build(&roles, &roles, &bindings, &bindings);
        let groups = vec!["g".to_owned()];
        let user = User { name: "u", groups: &groups };
        let request = Request { verb: &verb, path: &path, ..Request::default() };
        let _ = policy.authorize(&user, &request);
        let _ = policy.rules_for(&user, "ns");
    }

    /// Escalation prevention's promise: when `owned` covers `wanted`, every request
    /// `wanted` allows, `owned` allows too.
    #[test]
    fn covered_rules_allow_nothing_more(
        owned in prop::collection::vec(rule(), 0..4),
        wanted in prop::collection::vec(rule(), 0..3),
        verb in prop_oneof![Just("get"), Just("list"), Just("delete"), Just("bind")],
        group in prop_oneof![Just(""), Just("fleetdb.io")],
        resource in prop_oneof![Just("hosts"), Just("sources"), Just("namespaces")],
        subresource in prop_oneof![Just(""), Just("status")],
        name in prop_oneof![Just(""), Just("a"), Just("b")],
        path in prop_oneof![Just("/healthz"), Just("/apis"), Just("/apis/x"), Just("/sd/prometheus")],
        resource_request in any::<bool>(),
    ) {
        if rbac::uncovered(&owned, &wanted).is_empty() {
            let request = Request {
                verb,
                resource_request,
                api_group: group,
                resource,
                subresource,
                name,
                namespace: "",
                path,
            };
            if wanted.iter().any(|r| r.allows(&request)) {
                prop_assert!(
                    owned.iter().any(|r| r.allows(&request)),
                    "{wanted:?} is covered by {owned:?} but allows {request:?}, which it does not"
                );
            }
        }
    }
}

/// Rules over a small vocabulary, wildcards included, so that coverage is often decided.
fn rule() -> impl Strategy<Value = PolicyRule> {
    let words = |items: &'static [&'static str]| {
        prop::collection::vec(prop::sample::select(items), 0..3)
            .prop_map(|v| v.into_iter().map(str::to_owned).collect::<Vec<String>>())
    };
    prop_oneof![
        (
            words(&["get", "list", "delete", "bind", "*"]),
            words(&["", "fleetdb.io", "*"]),
            words(&[
                "hosts",
                "sources",
                "namespaces",
                "hosts/status",
                "*/status",
                "*"
            ]),
            words(&["a", "b"]),
        )
            .prop_map(
                |(verbs, api_groups, resources, resource_names)| PolicyRule {
                    verbs,
                    api_groups,
                    resources,
                    resource_names,
                    non_resource_urls: vec![],
                }
            ),
        (
            words(&["get", "*"]),
            words(&["/healthz", "/apis", "/apis/*", "/sd/prometheus", "*"]),
        )
            .prop_map(|(verbs, non_resource_urls)| PolicyRule {
                verbs,
                non_resource_urls,
                ..PolicyRule::default()
            }),
    ]
}
