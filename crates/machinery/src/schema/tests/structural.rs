use serde_json::{Map, Value, json};

use super::*;
use crate::field::{REASON_FORBIDDEN, REASON_NOT_SUPPORTED, REASON_REQUIRED};
use crate::schema::{check_structural, compile_pattern};
use crate::testing::XorShift;

const BASE: &str = "spec.versions[0].schema.openAPIV3Schema";

fn run_structural_table(cases: Vec<(&str, Value, Expected)>) {
    for (name, schema, expected) in cases {
        let errors = check_structural(&schema, BASE);
        assert_eq!(simplify(&errors), expected, "case {name}");
    }
}

#[test]
fn structural_valid_schema() {
    let schema = json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {
                "type": "object",
                "properties": {"name": {"type": "string", "maxLength": 63}}
            },
            "spec": {
                "type": "object",
                "required": ["size"],
                "properties": {
                    "size": {"type": "integer", "minimum": 1, "default": 3},
                    "port": {"x-kubernetes-int-or-string": true, "default": "http"},
                    "portAnyOf": {
                        "x-kubernetes-int-or-string": true,
                        "anyOf": [{"type": "integer"}, {"type": "string"}]
                    },
                    "portAllOf": {
                        "x-kubernetes-int-or-string": true,
                        "allOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}, {"pattern": "^[0-9]+%?$"}]
                    },
                    "raw": {"x-kubernetes-preserve-unknown-fields": true},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}, "default": {"a": "b"}},
                    "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
                    },
                    "template": {
                        "type": "object",
                        "x-kubernetes-embedded-resource": true,
                        "x-kubernetes-preserve-unknown-fields": true
                    },
                    "choice": {
                        "type": "object",
                        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                        "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
                        "not": {"properties": {"a": {"enum": ["forbidden"]}}}
                    },
                    "nullableDefault": {"type": "string", "nullable": true, "default": null}
                }
            },
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        }
    });
    assert_eq!(check_structural(&schema, BASE), vec![]);
}

#[test]
fn structural_table() {
    let p = |props: Value| json!({"type": "object", "properties": props});
    run_structural_table(vec![
        (
            "root without type",
            json!({"properties": {"spec": {"type": "object"}}}),
            vec![(
                REASON_REQUIRED,
                "spec.versions[0].schema.openAPIV3Schema.type",
                "Required value: must not be empty at the root",
            )],
        ),
        (
            "root not an object",
            json!({"type": "string"}),
            vec![(
                INV,
                "spec.versions[0].schema.openAPIV3Schema.type",
                r#"Invalid value: "string": must be object at the root"#,
            )],
        ),
        (
            "root preserve still needs a type",
            json!({"x-kubernetes-preserve-unknown-fields": true}),
            vec![(
                REASON_REQUIRED,
                "spec.versions[0].schema.openAPIV3Schema.type",
                "Required value: must not be empty at the root",
            )],
        ),
        (
            "field without type",
            p(json!({"spec": {"properties": {"a": {"type": "string"}}}})),
            vec![(
                REASON_REQUIRED,
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].type",
                "Required value: must not be empty for specified object fields",
            )],
        ),
        (
            "items without type",
            p(json!({"list": {"type": "array", "items": {"minLength": 1}}})),
            vec![(
                REASON_REQUIRED,
                "spec.versions[0].schema.openAPIV3Schema.properties[list].items.type",
                "Required value: must not be empty for specified array items",
            )],
        ),
        (
            "additionalProperties without type",
            p(json!({"m": {"type": "object", "additionalProperties": {}}})),
            vec![(
                REASON_REQUIRED,
                "spec.versions[0].schema.openAPIV3Schema.properties[m].additionalProperties.type",
                "Required value: must not be empty for specified object fields",
            )],
        ),
        (
            "unknown type",
            p(json!({"a": {"type": "str"}})),
            vec![(
                REASON_NOT_SUPPORTED,
                "spec.versions[0].schema.openAPIV3Schema.properties[a].type",
                r#"Unsupported value: "str": supported values: "array", "boolean", "integer", "number", "object", "string""#,
            )],
        ),
        (
            "array without items",
            p(json!({"list": {"type": "array"}})),
            vec![(
                REASON_REQUIRED,
                "spec.versions[0].schema.openAPIV3Schema.properties[list].items",
                "Required value: must be specified",
            )],
        ),
        (
            "properties and additionalProperties",
            p(json!({"spec": {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "additionalProperties": {"type": "string"}
            }})),
            vec![(
                REASON_FORBIDDEN,
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].additionalProperties",
                "Forbidden: additionalProperties and properties are mutual exclusive",
            )],
        ),
        (
            "metadata restricted to name and generateName",
            p(json!({"metadata": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "labels": {"type": "object"}}
            }})),
            vec![(
                REASON_FORBIDDEN,
                "spec.versions[0].schema.openAPIV3Schema.properties[metadata]",
                "Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified",
            )],
        ),
        (
            "metadata with value validation",
            p(json!({"metadata": {"type": "object", "maxProperties": 3}})),
            vec![(
                REASON_FORBIDDEN,
                "spec.versions[0].schema.openAPIV3Schema.properties[metadata]",
                "Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified",
            )],
        ),
        (
            "type meta must be strings",
            p(json!({"kind": {"type": "integer"}, "metadata": {"type": "string"}})),
            vec![
                (
                    INV,
                    "spec.versions[0].schema.openAPIV3Schema.properties[kind].type",
                    r#"Invalid value: "integer": must be string"#,
                ),
                (
                    INV,
                    "spec.versions[0].schema.openAPIV3Schema.properties[metadata].type",
                    r#"Invalid value: "string": must be object"#,
                ),
            ],
        ),
        (
            "invalid default",
            p(
                json!({"spec": {"type": "object", "properties": {"size": {"type": "integer", "default": "abc"}}}}),
            ),
            vec![(
                TI,
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].default",
                r#"Invalid value: "string": spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].default in body must be of type integer: "string""#,
            )],
        ),
        (
            "default violating a limit",
            p(json!({"size": {"type": "integer", "minimum": 1, "default": 0}})),
            vec![(
                INV,
                "spec.versions[0].schema.openAPIV3Schema.properties[size].default",
                "Invalid value: 0: spec.versions[0].schema.openAPIV3Schema.properties[size].default in body should be greater than or equal to 1",
            )],
        ),
        (
            "default with unknown fields",
            p(json!({"spec": {
                "type": "object",
                "default": {"a": 1, "junk": 2},
                "properties": {"a": {"type": "integer"}}
            }})),
            vec![(
                INV,
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].default",
                r#"Invalid value: {"a":1,"junk":2}: must not have unknown fields"#,
            )],
        ),
        (
            "default object violating nested schema",
            p(json!({"spec": {
                "type": "object",
                "default": {"a": "x"},
                "required": ["b"],
                "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}
            }})),
            vec![
                (
                    TI,
                    "spec.versions[0].schema.openAPIV3Schema.properties[spec].default.a",
                    r#"Invalid value: "string": spec.versions[0].schema.openAPIV3Schema.properties[spec].default.a in body must be of type integer: "string""#,
                ),
                (
                    REASON_REQUIRED,
                    "spec.versions[0].schema.openAPIV3Schema.properties[spec].default.b",
                    "Required value",
                ),
            ],
        ),
        (
            "null default for non-nullable",
            p(json!({"a": {"type": "string", "default": null}})),
            vec![(
                TI,
                "spec.versions[0].schema.openAPIV3Schema.properties[a].default",
                r#"Invalid value: "null": spec.versions[0].schema.openAPIV3Schema.properties[a].default in body must be of type string: "null""#,
            )],
        ),
        (
            "junctor with structural keywords",
            p(json!({"spec": {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "allOf": [{"type": "object", "nullable": true, "default": {}}],
                "anyOf": [{"x-kubernetes-preserve-unknown-fields": true, "x-kubernetes-list-type": "set"}]
            }})),
            vec![
                (
                    REASON_FORBIDDEN,
                    "spec.versions[0].schema.openAPIV3Schema.properties[spec].allOf[0].type",
                    "Forbidden: must be empty to be structural",
                ),
                (
                    REASON_FORBIDDEN,
                    "spec.versions[0].schema.openAPIV3Schema.properties[spec].allOf[0].default",
                    "Forbidden: must be undefined to be structural",
                ),
                (
                    REASON_FORBIDDEN,
                    "spec.versions[0].schema.openAPIV3Schema.properties[spec].allOf[0].nullable",
                    "Forbidden: must be false to be structural",
                ),
                (
                    REASON_FORBIDDEN,
                    "spec.versions[0].schema.openAPIV3Schema.properties[spec].anyOf[0].x-kubernetes-preserve-unknown-fields",
                    "Forbidden: must be false to be structural",
                ),
                (
                    REASON_FORBIDDEN,
                    "spec.versions[0].schema.openAPIV3Schema.properties[spec].anyOf[0].x-kubernetes-list-type",
                    "Forbidden: must be empty to be structural",
                ),
            ],
        ),
        (
            "junctor mentions undeclared property",
            p(json!({"spec": {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "oneOf": [{"required": ["a"]}, {"properties": {"b": {"minLength": 1}}}]
            }})),
            vec![(
                REASON_REQUIRED,
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[b]",
                "Required value: because it is defined in spec.versions[0].schema.openAPIV3Schema.properties[spec].oneOf[1].properties[b]",
            )],
        ),
        (
            "int-or-string anyOf types need the extension",
            p(
                json!({"port": {"type": "string", "anyOf": [{"type": "integer"}, {"type": "string"}]}}),
            ),
            vec![
                (
                    REASON_FORBIDDEN,
                    "spec.versions[0].schema.openAPIV3Schema.properties[port].anyOf[0].type",
                    "Forbidden: must be empty to be structural",
                ),
                (
                    REASON_FORBIDDEN,
                    "spec.versions[0].schema.openAPIV3Schema.properties[port].anyOf[1].type",
                    "Forbidden: must be empty to be structural",
                ),
            ],
        ),
        (
            "embedded resource without type or properties",
            p(json!({"t": {"x-kubernetes-embedded-resource": true}})),
            vec![
                (
                    REASON_REQUIRED,
                    "spec.versions[0].schema.openAPIV3Schema.properties[t].type",
                    "Required value: must be object if x-kubernetes-embedded-resource is true",
                ),
                (
                    REASON_REQUIRED,
                    "spec.versions[0].schema.openAPIV3Schema.properties[t].properties",
                    "Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
                ),
            ],
        ),
        (
            "preserve-unknown-fields false",
            p(json!({"a": {"type": "object", "x-kubernetes-preserve-unknown-fields": false}})),
            vec![(
                INV,
                "spec.versions[0].schema.openAPIV3Schema.properties[a].x-kubernetes-preserve-unknown-fields",
                "Invalid value: false: must be true or undefined",
            )],
        ),
        (
            "list-type problems",
            p(json!({
                "a": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "bag"},
                "b": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}}, "x-kubernetes-list-type": "map"},
                "c": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set", "x-kubernetes-list-map-keys": ["n"]}
            })),
            vec![
                (
                    REASON_NOT_SUPPORTED,
                    "spec.versions[0].schema.openAPIV3Schema.properties[a].x-kubernetes-list-type",
                    r#"Unsupported value: "bag": supported values: "atomic", "set", "map""#,
                ),
                (
                    REASON_REQUIRED,
                    "spec.versions[0].schema.openAPIV3Schema.properties[b].x-kubernetes-list-map-keys",
                    "Required value: must not be empty if x-kubernetes-list-type is map",
                ),
                (
                    REASON_FORBIDDEN,
                    "spec.versions[0].schema.openAPIV3Schema.properties[c].x-kubernetes-list-map-keys",
                    "Forbidden: must not be set if x-kubernetes-list-type is not map",
                ),
            ],
        ),
        (
            "additionalProperties at the root",
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            vec![(
                REASON_FORBIDDEN,
                "spec.versions[0].schema.openAPIV3Schema.additionalProperties",
                "Forbidden: must not be used at the root",
            )],
        ),
        (
            "uniqueItems",
            p(
                json!({"a": {"type": "array", "items": {"type": "string"}, "uniqueItems": true, "allOf": [{"uniqueItems": true}]}}),
            ),
            vec![
                (
                    REASON_FORBIDDEN,
                    "spec.versions[0].schema.openAPIV3Schema.properties[a].uniqueItems",
                    "Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
                ),
                (
                    REASON_FORBIDDEN,
                    "spec.versions[0].schema.openAPIV3Schema.properties[a].allOf[0].uniqueItems",
                    "Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
                ),
            ],
        ),
        (
            "nested errors in path order",
            p(json!({
                "b": {"type": "array", "items": {"type": "object", "properties": {"x": {}}}},
                "a": {"type": "object", "properties": {"y": {"type": "array"}}}
            })),
            vec![
                (
                    REASON_REQUIRED,
                    "spec.versions[0].schema.openAPIV3Schema.properties[a].properties[y].items",
                    "Required value: must be specified",
                ),
                (
                    REASON_REQUIRED,
                    "spec.versions[0].schema.openAPIV3Schema.properties[b].items.properties[x].type",
                    "Required value: must not be empty for specified object fields",
                ),
            ],
        ),
    ]);
}

#[test]
fn structural_with_empty_base() {
    let errors = check_structural(&json!({"type": "object", "properties": {"a": {}}}), "");
    assert_eq!(
        simplify(&errors),
        vec![(
            REASON_REQUIRED,
            "properties[a].type",
            "Required value: must not be empty for specified object fields"
        )]
    );
}

// -----------------------------------------------------------------------------------------
// Regular expressions
// -----------------------------------------------------------------------------------------

const DNS1123_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
const DNS1123_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

#[test]
fn patterns_match_with_search_semantics() {
    let a500 = "a".repeat(500);
    let a1000 = "a".repeat(1000);
    let a1001 = "a".repeat(1001);
    // (pattern, input, matches)
    let cases: Vec<(&str, &str, bool)> = vec![
        // literals, anchors, search semantics
        ("abc", "xxabcxx", true),
        ("abc", "ab", false),
        ("^abc", "abcd", true),
        ("^abc", "xabc", false),
        ("abc$", "xabc", true),
        ("abc$", "abcx", false),
        ("abc$", "abc\n", false),
        ("^abc$", "abc", true),
        ("^$", "", true),
        ("^$", "\n", false),
        ("", "anything", true),
        (r"\Aab\z", "ab", true),
        // dot
        ("a.c", "abc", true),
        ("a.c", "a\nc", false),
        ("^.$", "é", true),
        (".", "", false),
        // classes
        ("[a-z0-9-]+", "Foo-1", true),
        ("^[a-z0-9-]+$", "Foo", false),
        ("^[a-z0-9-]+$", "foo-1", true),
        ("^[^a-z]+$", "ABC1", true),
        ("^[^a-z]+$", "aBC", false),
        (r"^[\d.]+$", "1.2.3", true),
        (r"^[\d.]+$", "1,2", false),
        (r"^[^\s]+$", "ab c", false),
        ("^[[:alpha:]]+$", "abcXYZ", true),
        ("^[[:alpha:]]+$", "abc1", false),
        ("^[[:^digit:]]+$", "abc", true),
        // escapes
        (r"^\d{3}$", "123", true),
        (r"^\d{3}$", "1234", false),
        (r"^\w+\s\w+$", "hi there", true),
        (r"^\w+\s\w+$", "hi-there", false),
        (r"^a\.b$", "a.b", true),
        (r"^a\.b$", "axb", false),
        (r"^\x41\x{42}$", "AB", true),
        (r"\bfoo\b", "a foo b", true),
        (r"\bfoo\b", "afoob", false),
        // groups, alternation, flags
        ("^(ab)+$", "ababab", true),
        ("^(ab)+$", "aba", false),
        ("^(cat|dog)s?$", "dogs", true),
        ("^(?:a|b)c$", "bc", true),
        ("^(?P<x>a)(?<y>b)$", "ab", true),
        ("cat|dog", "hotdog", true),
        ("^(cat|dog)$", "cats", false),
        ("(?i)^abc$", "ABC", true),
        // quantifiers
        ("^a{2,3}$", "a", false),
        ("^a{2,3}$", "aaa", true),
        ("^a{2,3}$", "aaaa", false),
        ("^a{2,}$", "aaaaa", true),
        ("^colou?r$", "colour", true),
        ("^a*?b$", "aab", true),
        ("^(a|ab)(c|bcd)(d*)$", "abcd", true),
        (
            "^(a*)*b$",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac",
            false,
        ),
        ("^(a|aa)+$", &a500, true),
        ("^(a|aa)+b$", &a500, false),
        ("^a{1,1000}$", &a1000, true),
        ("^a{1,1000}$", &a1001, false),
        // DNS-1123
        (DNS1123_LABEL, "my-app", true),
        (DNS1123_LABEL, "-bad", false),
        (DNS1123_LABEL, "Bad", false),
        (DNS1123_SUBDOMAIN, "my-app.example.com", true),
        (DNS1123_SUBDOMAIN, "a..b", false),
        (DNS1123_SUBDOMAIN, "example.com.", false),
    ];
    for (pattern, input, expected) in cases {
        let regex = compile_pattern(pattern).unwrap_or_else(|e| panic!("{pattern:?}: {e}"));
        assert_eq!(
            regex.is_match(input),
            expected,
            "pattern {pattern:?} on {input:?}"
        );
    }
    // What RE2 refuses is refused too: unbalanced groups, bad ranges, nothing to repeat,
    // look-around and back-references.
    let accepted: Vec<&str> = [
        "(",
        ")",
        "(a",
        "a)",
        "[a-",
        "[z-a]",
        "*a",
        "+",
        "?",
        "{2}",
        "a{2,1}",
        r"\1",
        r"\q",
        r"\",
        "(?=a)",
        "(?<!a)b",
        r"\x{110000}",
    ]
    .into_iter()
    .filter(|pattern| compile_pattern(pattern).is_ok())
    .collect();
    assert!(accepted.is_empty(), "should be refused: {accepted:?}");
}

#[test]
fn patterns_over_the_limits_are_refused_and_within_them_match_in_linear_time() {
    let nested = "(".repeat(500) + &")".repeat(500);
    let too_deep = compile_pattern(&nested).unwrap_err();
    assert!(too_deep.contains("nest"), "{too_deep}");
    let too_big = compile_pattern("((a{1000}){1000}){1000}").unwrap_err();
    assert!(too_big.contains("exceed the limit"), "{too_big}");
    let too_long = compile_pattern(&"a".repeat(super::super::MAX_PATTERN_BYTES + 1)).unwrap_err();
    assert!(too_long.contains("bytes long"), "{too_long}");
    assert!(compile_pattern("(a{100}){10}").is_ok_and(|re| re.is_match(&"a".repeat(1000))));
    // Catastrophic for a backtracking engine, linear here: a megabyte is matched at once.
    let input = "x".repeat(1 << 20);
    for pattern in ["(x+x+)+y", "^(a{1,20}){1,20}$", "^(x|xx)+$"] {
        let re = compile_pattern(pattern).expect("within the limits");
        let started = std::time::Instant::now();
        let _ = re.is_match(&input);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{pattern} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn structural_check_refuses_patterns_that_do_not_compile() {
    let schema = json!({
        "type": "object",
        "properties": {
            "a": {"type": "string", "pattern": "+"},
            "b": {"type": "string", "pattern": "((a{1000}){1000}){1000}"},
            "c": {"type": "string", "pattern": "^[a-z]+$"},
        },
        "anyOf": [{"properties": {"a": {"pattern": "("}}}],
    });
    let fields: Vec<String> = check_structural(&schema, "s")
        .into_iter()
        .map(|e| {
            format!(
                "{}: {}",
                e.field,
                e.message.split(": must").next().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            r#"s.anyOf[0].properties[a].pattern: Invalid value: "(""#,
            r#"s.properties[a].pattern: Invalid value: "+""#,
            r#"s.properties[b].pattern: Invalid value: "((a{1000}){1000}){1000}""#,
        ]
    );
}

// -----------------------------------------------------------------------------------------
// Property-style test
// -----------------------------------------------------------------------------------------

const KEYS: [&str; 10] = [
    "a",
    "b",
    "c",
    "spec",
    "name",
    "items",
    "apiVersion",
    "kind",
    "metadata",
    "x y",
];

fn random_value(rng: &mut XorShift, depth: u32) -> Value {
    let kind = if depth == 0 {
        rng.below(6)
    } else {
        rng.below(8)
    };
    match kind {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(50)),
        2 => json!(rng.below(40) as i64 - 20),
        3 => json!((rng.below(4000) as f64 - 2000.0) / 8.0),
        4 | 5 => {
            let words = [
                "",
                "a",
                "abc",
                "ABC",
                "a-b",
                "é",
                "2024-02-29",
                "::1",
                "x y",
                "aGk=",
            ];
            json!(*rng.pick(&words))
        }
        6 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.below(5) {
                m.insert((*rng.pick(&KEYS)).to_string(), random_value(rng, depth - 1));
            }
            Value::Object(m)
        }
    }
}

fn random_schema(rng: &mut XorShift, depth: u32) -> Value {
    let mut s = Map::new();
    let kind = if depth == 0 {
        rng.below(6)
    } else {
        rng.below(9)
    };
    match kind {
        0 => {
            s.insert("type".into(), json!("string"));
            if rng.chance(30) {
                s.insert("maxLength".into(), json!(rng.below(5)));
            }
            if rng.chance(30) {
                s.insert("minLength".into(), json!(rng.below(3)));
            }
            if rng.chance(30) {
                let patterns = [
                    "^[a-z]+$",
                    DNS1123_LABEL,
                    "a|b",
                    "(",
                    "[[:alpha:]]*",
                    "^.{2,3}$",
                ];
                s.insert("pattern".into(), json!(*rng.pick(&patterns)));
            }
            if rng.chance(30) {
                let formats = ["date", "date-time", "byte", "uuid", "ipv4", "ipv6", "email"];
                s.insert("format".into(), json!(*rng.pick(&formats)));
            }
            if rng.chance(20) {
                s.insert("enum".into(), json!(["a", "abc", 1]));
            }
        }
        1 => {
            s.insert("type".into(), json!(*rng.pick(&["integer", "number"])));
            if rng.chance(30) {
                s.insert("minimum".into(), json!(rng.below(10) as i64 - 5));
                s.insert("exclusiveMinimum".into(), json!(rng.chance(50)));
            }
            if rng.chance(30) {
                s.insert("maximum".into(), json!(rng.below(10) as f64 / 2.0));
                s.insert("exclusiveMaximum".into(), json!(rng.chance(50)));
            }
            if rng.chance(30) {
                s.insert("multipleOf".into(), json!(*rng.pick(&[2.0, 0.5, 3.0, 0.1])));
            }
            if rng.chance(20) {
                s.insert(
                    "format".into(),
                    json!(*rng.pick(&["int32", "int64", "float"])),
                );
            }
        }
        2 => {
            s.insert("type".into(), json!("boolean"));
        }
        3 => {
            s.insert("x-kubernetes-int-or-string".into(), json!(true));
        }
        4 => {
            s.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
        }
        5 => {
            s.insert("type".into(), json!("object"));
        }
        6 | 7 => {
            s.insert("type".into(), json!("object"));
            let mut props = Map::new();
            for _ in 0..rng.below(4) {
                props.insert(
                    (*rng.pick(&KEYS)).to_string(),
                    random_schema(rng, depth - 1),
                );
            }
            let preserve = rng.chance(20);
            if preserve {
                s.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
            }
            if props.is_empty() && rng.chance(50) {
                s.insert("additionalProperties".into(), random_schema(rng, depth - 1));
            } else if props.is_empty() && rng.chance(30) {
                s.insert("additionalProperties".into(), json!(true));
            } else if !preserve && rng.chance(30) {
                s.insert("additionalProperties".into(), json!(false));
            }
            if !s.contains_key("additionalProperties") && rng.chance(15) {
                s.insert("x-kubernetes-embedded-resource".into(), json!(true));
            }
            if rng.chance(30) {
                s.insert("required".into(), json!([*rng.pick(&KEYS)]));
            }
            if rng.chance(15) {
                s.insert("minProperties".into(), json!(1));
                s.insert("maxProperties".into(), json!(2));
            }
            if rng.chance(15) {
                s.insert(
                    "anyOf".into(),
                    json!([{"required": ["a"]}, {"properties": {"b": {"minimum": 1}}}]),
                );
            }
            s.insert("properties".into(), Value::Object(props));
        }
        _ => {
            s.insert("type".into(), json!("array"));
            s.insert("items".into(), random_schema(rng, depth - 1));
            if rng.chance(25) {
                s.insert("x-kubernetes-list-type".into(), json!("set"));
            } else if rng.chance(25) {
                s.insert("x-kubernetes-list-type".into(), json!("map"));
                s.insert("x-kubernetes-list-map-keys".into(), json!(["name"]));
            }
            if rng.chance(20) {
                s.insert("uniqueItems".into(), json!(true));
            }
            if rng.chance(20) {
                s.insert("maxItems".into(), json!(2));
                s.insert("minItems".into(), json!(1));
            }
            if rng.chance(10) {
                s.insert("oneOf".into(), json!([{"maxItems": 1}, {"minItems": 3}]));
            }
        }
    }
    if rng.chance(15) {
        s.insert("nullable".into(), json!(true));
    }
    if rng.chance(15) {
        s.insert("default".into(), random_value(rng, 2));
    }
    if rng.chance(5) {
        s.insert("not".into(), json!({"enum": ["abc"]}));
    }
    Value::Object(s)
}

#[test]
fn property_random_documents_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let fixed = [
        json!({"type": "object", "properties": {"spec": {"type": "object", "additionalProperties": false, "properties": {"a": {"type": "string"}}}}}),
        json!({"type": "object", "additionalProperties": false, "properties": {"spec": {"type": "object"}}}),
        json!({"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object", "additionalProperties": false, "properties": {"name": {"type": "string"}}}}}}),
    ];
    for round in 0..3000 {
        let schema = if round % 4 == 0 {
            fixed[(round / 4) % fixed.len()].clone()
        } else {
            let mut root = random_schema(&mut rng, 4);
            if let Some(o) = root.as_object_mut() {
                o.insert("type".into(), json!("object"));
            }
            root
        };
        let original = random_value(&mut rng, 4);

        let _ = validate(&schema, &original);
        let _ = check_structural(&schema, "s");

        let mut pruned = original.clone();
        let removed = prune(&schema, &mut pruned);
        let mut sorted = removed.clone();
        sorted.sort();
        assert_eq!(removed, sorted, "round {round}: removed paths sorted");
        let mut again = pruned.clone();
        assert!(
            prune(&schema, &mut again).is_empty(),
            "round {round}: prune is idempotent"
        );
        for e in validate(&schema, &pruned) {
            assert!(
                !e.message.contains("forbidden property"),
                "round {round}: unknown field survived pruning: {e}\nschema {schema}\nobject {pruned}"
            );
        }

        let mut defaulted = pruned.clone();
        apply_defaults(&schema, &mut defaulted);
        let mut twice = defaulted.clone();
        apply_defaults(&schema, &mut twice);
        assert_eq!(defaulted, twice, "round {round}: defaulting is idempotent");
        let _ = validate(&schema, &defaulted);
    }
}

#[test]
fn property_random_patterns_never_panic() {
    let mut rng = XorShift(0xDEAD_BEEF_CAFE_F00D);
    let alphabet: Vec<char> = "ab()[]|*+?{}^$.\\-,0123dwsSbB:xP<>é".chars().collect();
    let texts = ["", "a", "ab", "aab-b", "{1}", "é\n", "0123 abc"];
    for _ in 0..5000 {
        let len = rng.below(14);
        let pattern: String = (0..len).map(|_| *rng.pick(&alphabet)).collect();
        if let Ok(re) = compile_pattern(&pattern) {
            for t in texts {
                let _ = re.is_match(t);
            }
        }
    }
}
