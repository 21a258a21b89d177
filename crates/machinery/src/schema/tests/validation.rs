use serde_json::{Value, json};

use super::*;
use crate::field::{
    REASON_DUPLICATE, REASON_NOT_SUPPORTED, REASON_REQUIRED, REASON_TOO_LONG, REASON_TOO_MANY,
};

#[test]
fn validate_types() {
    let int = json!({"type": "integer"});
    run_spec_table(
        "size",
        vec![
            (
                "string for integer",
                int.clone(),
                json!("string"),
                vec![(
                    TI,
                    "spec.size",
                    r#"Invalid value: "string": spec.size in body must be of type integer: "string""#,
                )],
            ),
            ("integer", int.clone(), json!(3), vec![]),
            ("whole float for integer", int.clone(), json!(3.0), vec![]),
            (
                "fraction for integer",
                int.clone(),
                json!(3.5),
                vec![(
                    TI,
                    "spec.size",
                    r#"Invalid value: "number": spec.size in body must be of type integer: "number""#,
                )],
            ),
            (
                "integer for number",
                json!({"type": "number"}),
                json!(3),
                vec![],
            ),
            (
                "float for number",
                json!({"type": "number"}),
                json!(-0.5),
                vec![],
            ),
            (
                "string for boolean",
                json!({"type": "boolean"}),
                json!("true"),
                vec![(
                    TI,
                    "spec.size",
                    r#"Invalid value: "string": spec.size in body must be of type boolean: "string""#,
                )],
            ),
            (
                "integer for string",
                json!({"type": "string"}),
                json!(5),
                vec![(
                    TI,
                    "spec.size",
                    r#"Invalid value: "integer": spec.size in body must be of type string: "integer""#,
                )],
            ),
            (
                "object for array",
                json!({"type": "array", "items": {"type": "string"}}),
                json!({}),
                vec![(
                    TI,
                    "spec.size",
                    r#"Invalid value: "object": spec.size in body must be of type array: "object""#,
                )],
            ),
            (
                "array for object",
                json!({"type": "object"}),
                json!([1]),
                vec![(
                    TI,
                    "spec.size",
                    r#"Invalid value: "array": spec.size in body must be of type object: "array""#,
                )],
            ),
            ("boolean", json!({"type": "boolean"}), json!(false), vec![]),
        ],
    );
}

#[test]
fn validate_nullable_and_null() {
    run_spec_table(
        "x",
        vec![
            (
                "nullable string",
                json!({"type": "string", "nullable": true}),
                Value::Null,
                vec![],
            ),
            (
                "nullable skips other checks",
                json!({"type": "string", "nullable": true, "minLength": 3, "enum": ["abc"]}),
                Value::Null,
                vec![],
            ),
            (
                "non-nullable string",
                json!({"type": "string"}),
                Value::Null,
                vec![(
                    TI,
                    "spec.x",
                    r#"Invalid value: "null": spec.x in body must be of type string: "null""#,
                )],
            ),
            (
                "non-nullable object",
                json!({"type": "object", "properties": {"a": {"type": "string"}}}),
                Value::Null,
                vec![(
                    TI,
                    "spec.x",
                    r#"Invalid value: "null": spec.x in body must be of type object: "null""#,
                )],
            ),
            (
                "untyped preserve accepts null",
                json!({"x-kubernetes-preserve-unknown-fields": true}),
                Value::Null,
                vec![],
            ),
            (
                "nullable value still validated",
                json!({"type": "string", "nullable": true, "maxLength": 1}),
                json!("ab"),
                vec![(
                    REASON_TOO_LONG,
                    "spec.x",
                    "Too long: may not be more than 1 bytes",
                )],
            ),
        ],
    );
}

#[test]
fn validate_int_or_string() {
    let ios = json!({"x-kubernetes-int-or-string": true});
    run_spec_table(
        "port",
        vec![
            ("integer", ios.clone(), json!(8080), vec![]),
            ("string", ios.clone(), json!("http"), vec![]),
            ("whole float", ios.clone(), json!(80.0), vec![]),
            (
                "boolean",
                ios.clone(),
                json!(true),
                vec![(
                    TI,
                    "spec.port",
                    r#"Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#,
                )],
            ),
            (
                "fraction",
                ios.clone(),
                json!(1.5),
                vec![(
                    TI,
                    "spec.port",
                    r#"Invalid value: "number": spec.port in body must be of type integer,string: "number""#,
                )],
            ),
            (
                "null",
                ios.clone(),
                Value::Null,
                vec![(
                    TI,
                    "spec.port",
                    r#"Invalid value: "null": spec.port in body must be of type integer,string: "null""#,
                )],
            ),
            (
                "string checks apply to the string form",
                json!({"x-kubernetes-int-or-string": true, "pattern": "^[0-9]+%$", "maximum": 10}),
                json!("50"),
                vec![(
                    INV,
                    "spec.port",
                    r#"Invalid value: "50": spec.port in body should match '^[0-9]+%$'"#,
                )],
            ),
            (
                "number checks apply to the integer form",
                json!({"x-kubernetes-int-or-string": true, "pattern": "^[0-9]+%$", "maximum": 10}),
                json!(50),
                vec![(
                    INV,
                    "spec.port",
                    "Invalid value: 50: spec.port in body should be less than or equal to 10",
                )],
            ),
        ],
    );
}

#[test]
fn validate_enum() {
    run_spec_table(
        "color",
        vec![
            (
                "string enum",
                json!({"type": "string", "enum": ["red", "blue"]}),
                json!("purple"),
                vec![(
                    REASON_NOT_SUPPORTED,
                    "spec.color",
                    r#"Unsupported value: "purple": supported values: "red", "blue""#,
                )],
            ),
            (
                "string enum ok",
                json!({"type": "string", "enum": ["red", "blue"]}),
                json!("blue"),
                vec![],
            ),
            (
                "integer enum",
                json!({"type": "integer", "enum": [1, 2]}),
                json!(3),
                vec![(
                    REASON_NOT_SUPPORTED,
                    "spec.color",
                    r#"Unsupported value: 3: supported values: "1", "2""#,
                )],
            ),
            (
                "integer enum matches whole float",
                json!({"type": "integer", "enum": [1, 2]}),
                json!(2.0),
                vec![],
            ),
            (
                "object enum",
                json!({"type": "object", "enum": [{"a": 1}]}),
                json!({"a": 2}),
                vec![(
                    REASON_NOT_SUPPORTED,
                    "spec.color",
                    r#"Unsupported value: {"a":2}: supported values: "{\"a\":1}""#,
                )],
            ),
            (
                "type error and enum error",
                json!({"type": "string", "enum": ["a"]}),
                json!(1),
                vec![
                    (
                        TI,
                        "spec.color",
                        r#"Invalid value: "integer": spec.color in body must be of type string: "integer""#,
                    ),
                    (
                        REASON_NOT_SUPPORTED,
                        "spec.color",
                        r#"Unsupported value: 1: supported values: "a""#,
                    ),
                ],
            ),
        ],
    );
}

#[test]
fn validate_numbers() {
    run_spec_table(
        "size",
        vec![
            (
                "minimum",
                json!({"type": "integer", "minimum": 1}),
                json!(0),
                vec![(
                    INV,
                    "spec.size",
                    "Invalid value: 0: spec.size in body should be greater than or equal to 1",
                )],
            ),
            (
                "minimum ok",
                json!({"type": "integer", "minimum": 1}),
                json!(1),
                vec![],
            ),
            (
                "exclusive minimum",
                json!({"type": "integer", "minimum": 1, "exclusiveMinimum": true}),
                json!(1),
                vec![(
                    INV,
                    "spec.size",
                    "Invalid value: 1: spec.size in body should be greater than 1",
                )],
            ),
            (
                "maximum",
                json!({"type": "integer", "maximum": 10}),
                json!(11),
                vec![(
                    INV,
                    "spec.size",
                    "Invalid value: 11: spec.size in body should be less than or equal to 10",
                )],
            ),
            (
                "exclusive maximum",
                json!({"type": "integer", "maximum": 10, "exclusiveMaximum": true}),
                json!(10),
                vec![(
                    INV,
                    "spec.size",
                    "Invalid value: 10: spec.size in body should be less than 10",
                )],
            ),
            (
                "exclusive maximum ok",
                json!({"type": "integer", "maximum": 10, "exclusiveMaximum": true}),
                json!(9),
                vec![],
            ),
            (
                "float bounds",
                json!({"type": "number", "maximum": 1.5}),
                json!(2.25),
                vec![(
                    INV,
                    "spec.size",
                    "Invalid value: 2.25: spec.size in body should be less than or equal to 1.5",
                )],
            ),
            (
                "large bound printed like Go",
                json!({"type": "number", "maximum": 1_000_000}),
                json!(2_000_000),
                vec![(
                    INV,
                    "spec.size",
                    "Invalid value: 2000000: spec.size in body should be less than or equal to 1e+06",
                )],
            ),
            (
                "multipleOf",
                json!({"type": "integer", "multipleOf": 5}),
                json!(7),
                vec![(
                    INV,
                    "spec.size",
                    "Invalid value: 7: spec.size in body should be a multiple of 5",
                )],
            ),
            (
                "multipleOf ok",
                json!({"type": "integer", "multipleOf": 5}),
                json!(-15),
                vec![],
            ),
            (
                "float multipleOf ok",
                json!({"type": "number", "multipleOf": 0.1}),
                json!(0.3),
                vec![],
            ),
            (
                "float multipleOf",
                json!({"type": "number", "multipleOf": 0.25}),
                json!(0.3),
                vec![(
                    INV,
                    "spec.size",
                    "Invalid value: 0.3: spec.size in body should be a multiple of 0.25",
                )],
            ),
            (
                "int32 range",
                json!({"type": "integer", "format": "int32"}),
                json!(3_000_000_000u64),
                vec![(
                    TI,
                    "spec.size",
                    r#"Invalid value: 3000000000: spec.size in body must be of type int32: "3000000000""#,
                )],
            ),
            (
                "int32 ok",
                json!({"type": "integer", "format": "int32"}),
                json!(-2_147_483_648i64),
                vec![],
            ),
            (
                "int64 range",
                json!({"type": "integer", "format": "int64"}),
                json!(u64::MAX),
                vec![(
                    TI,
                    "spec.size",
                    r#"Invalid value: 18446744073709551615: spec.size in body must be of type int64: "18446744073709551615""#,
                )],
            ),
            (
                "unknown number format ignored",
                json!({"type": "number", "format": "double"}),
                json!(1.5),
                vec![],
            ),
        ],
    );
}

#[test]
fn validate_strings() {
    run_spec_table(
        "name",
        vec![
            (
                "minLength",
                json!({"type": "string", "minLength": 3}),
                json!("ab"),
                vec![(
                    INV,
                    "spec.name",
                    r#"Invalid value: "ab": spec.name in body should be at least 3 chars long"#,
                )],
            ),
            (
                "maxLength",
                json!({"type": "string", "maxLength": 5}),
                json!("abcdef"),
                vec![(
                    REASON_TOO_LONG,
                    "spec.name",
                    "Too long: may not be more than 5 bytes",
                )],
            ),
            (
                "maxLength counts characters",
                json!({"type": "string", "maxLength": 5}),
                json!("héllö"),
                vec![],
            ),
            (
                "maxLength counts characters (too long)",
                json!({"type": "string", "maxLength": 2}),
                json!("ééé"),
                vec![(
                    REASON_TOO_LONG,
                    "spec.name",
                    "Too long: may not be more than 2 bytes",
                )],
            ),
            (
                "pattern",
                json!({"type": "string", "pattern": "^[a-z]+$"}),
                json!("x y"),
                vec![(
                    INV,
                    "spec.name",
                    r#"Invalid value: "x y": spec.name in body should match '^[a-z]+$'"#,
                )],
            ),
            (
                "unanchored pattern",
                json!({"type": "string", "pattern": "[0-9]"}),
                json!("abc1def"),
                vec![],
            ),
            (
                "invalid pattern is no constraint",
                json!({"type": "string", "pattern": "([a-z"}),
                json!("!!"),
                vec![],
            ),
            (
                "quotes are escaped",
                json!({"type": "string", "maxLength": 100, "pattern": "^a$"}),
                json!("say \"hi\"\n"),
                vec![(
                    INV,
                    "spec.name",
                    r#"Invalid value: "say \"hi\"\n": spec.name in body should match '^a$'"#,
                )],
            ),
            (
                "all string checks in order",
                json!({"type": "string", "maxLength": 2, "minLength": 5, "pattern": "^z"}),
                json!("abc"),
                vec![
                    (
                        REASON_TOO_LONG,
                        "spec.name",
                        "Too long: may not be more than 2 bytes",
                    ),
                    (
                        INV,
                        "spec.name",
                        r#"Invalid value: "abc": spec.name in body should be at least 5 chars long"#,
                    ),
                    (
                        INV,
                        "spec.name",
                        r#"Invalid value: "abc": spec.name in body should match '^z'"#,
                    ),
                ],
            ),
        ],
    );
}

#[test]
fn validate_string_formats() {
    let f = |format: &str| json!({"type": "string", "format": format});
    run_spec_table(
        "v",
        vec![
            (
                "date-time invalid",
                f("date-time"),
                json!("foo"),
                vec![(
                    TI,
                    "spec.v",
                    r#"Invalid value: "foo": spec.v in body must be of type date-time: "foo""#,
                )],
            ),
            (
                "date-time ok",
                f("date-time"),
                json!("2014-12-15T19:30:20.000Z"),
                vec![],
            ),
            (
                "date invalid",
                f("date"),
                json!("2023-02-29"),
                vec![(
                    TI,
                    "spec.v",
                    r#"Invalid value: "2023-02-29": spec.v in body must be of type date: "2023-02-29""#,
                )],
            ),
            (
                "byte invalid",
                f("byte"),
                json!("not base64"),
                vec![(
                    TI,
                    "spec.v",
                    r#"Invalid value: "not base64": spec.v in body must be of type byte: "not base64""#,
                )],
            ),
            (
                "uuid invalid",
                f("uuid"),
                json!("1234"),
                vec![(
                    TI,
                    "spec.v",
                    r#"Invalid value: "1234": spec.v in body must be of type uuid: "1234""#,
                )],
            ),
            (
                "ipv4 invalid",
                f("ipv4"),
                json!("300.1.1.1"),
                vec![(
                    TI,
                    "spec.v",
                    r#"Invalid value: "300.1.1.1": spec.v in body must be of type ipv4: "300.1.1.1""#,
                )],
            ),
            (
                "ipv6 invalid",
                f("ipv6"),
                json!("1.2.3.4"),
                vec![(
                    TI,
                    "spec.v",
                    r#"Invalid value: "1.2.3.4": spec.v in body must be of type ipv6: "1.2.3.4""#,
                )],
            ),
            (
                "unknown format ignored",
                f("my-format"),
                json!("anything"),
                vec![],
            ),
            (
                "format on non-strings ignored",
                json!({"type": "integer", "format": "date"}),
                json!(5),
                vec![],
            ),
        ],
    );
}

#[test]
fn format_table() {
    let cases: Vec<(&str, &str, bool)> = vec![
        ("date-time", "2014-12-15T19:30:20.000Z", true),
        ("date-time", "2014-12-15T19:30:20Z", true),
        ("date-time", "2014-12-15t19:30:20z", true),
        ("date-time", "2014-12-15T19:30:20+01:00", true),
        ("date-time", "2014-12-15T19:30:20.123456789-08:30", true),
        ("datetime", "2014-12-15T19:30:20Z", true),
        ("date-time", "2014-12-15 19:30:20Z", false),
        ("date-time", "2014-13-15T19:30:20Z", false),
        ("date-time", "2014-12-15T24:00:00Z", false),
        ("date-time", "2014-12-15T23:60:00Z", false),
        ("date-time", "2014-12-15T19:30:20", false),
        ("date-time", "2014-12-15T19:30:20.Z", false),
        ("date-time", "2014-12-15T19:30:20+0100", false),
        ("date-time", "2014-12-15T19:30:20-5z", true),
        ("date-time", "2014-12-15T19:30:20,5Z", true),
        ("date-time", "2014-12-15T19:30:20Zt", true),
        ("date-time", "foo", false),
        ("date-time", "", false),
        ("date", "2024-02-29", true),
        ("date", "2000-02-29", true),
        ("date", "1900-02-29", false),
        ("date", "2023-02-29", false),
        ("date", "2024-04-31", false),
        ("date", "2024-1-01", false),
        ("date", "2024-01-01T00:00:00Z", false),
        ("byte", "aGVsbG8=", true),
        ("byte", "aGVsbG8h", true),
        ("byte", "aGVs\nbG8h", true),
        ("byte", "", true),
        ("byte", "aGVsbG8", false),
        ("byte", "a===", false),
        ("byte", "!!!!", false),
        ("byte", "aG=s", false),
        ("uuid", "123e4567-e89b-12d3-a456-426614174000", true),
        ("uuid", "123E4567-E89B-12D3-A456-426614174000", true),
        ("uuid", "123e4567e89b12d3a456426614174000", true),
        ("uuid", "123e4567-e89b-12d3-a456-42661417400", false),
        ("uuid", "123e4567-e89b-12d3-a456-4266141740000", false),
        ("uuid", "g23e4567-e89b-12d3-a456-426614174000", false),
        ("uuid", "123e4567--e89b-12d3-a456-426614174000", false),
        ("ipv4", "192.168.0.1", true),
        ("ipv4", "0.0.0.0", true),
        ("ipv4", "256.1.1.1", false),
        ("ipv4", "01.1.1.1", false),
        ("ipv4", "1.2.3", false),
        ("ipv4", "1.2.3.4.5", false),
        ("ipv4", "::1", false),
        ("ipv4", "::ffff:1.2.3.4", true),
        ("ipv6", "::1", true),
        ("ipv6", "::", true),
        ("ipv6", "2001:db8::8a2e:370:7334", true),
        ("ipv6", "2001:0db8:0000:0000:0000:ff00:0042:8329", true),
        ("ipv6", "::ffff:1.2.3.4", true),
        ("ipv6", "1:2:3:4:5:6:7:8", true),
        ("ipv6", "1:2:3:4:5:6:7::", true),
        ("ipv6", "1:2:3:4:5:6:1.2.3.4", true),
        ("ipv6", "1:2:3:4:5:6:7:8:9", false),
        ("ipv6", "1:2:3:4:5:6:7:8::", false),
        ("ipv6", "1:2:3:4:5:6:7", false),
        ("ipv6", "1::2::3", false),
        ("ipv6", "12345::", false),
        ("ipv6", "1:", false),
        ("ipv6", ":1", false),
        ("ipv6", "fe80::1%eth0", false),
        ("ipv6", "1.2.3.4", false),
        ("ipv6", "1:2:3:4:5:1.2.3.4", false),
    ];
    for (format, value, ok) in cases {
        assert_eq!(
            super::super::formats::check(format, value),
            Some(ok),
            "{format} {value:?}"
        );
    }
    assert_eq!(super::super::formats::check("email", "x"), None);
}

#[test]
fn validate_arrays() {
    let tags = |extra: Value| {
        let mut s = json!({"type": "array", "items": {"type": "string"}});
        if let (Some(o), Value::Object(e)) = (s.as_object_mut(), extra) {
            o.extend(e);
        }
        s
    };
    run_spec_table(
        "items",
        vec![
            (
                "maxItems",
                tags(json!({"maxItems": 3})),
                json!(["a", "b", "c", "d"]),
                vec![(
                    REASON_TOO_MANY,
                    "spec.items",
                    "Too many: 4: must have at most 3 items",
                )],
            ),
            (
                "minItems",
                tags(json!({"minItems": 1})),
                json!([]),
                vec![(
                    INV,
                    "spec.items",
                    "Invalid value: 0: spec.items in body should have at least 1 items",
                )],
            ),
            (
                "uniqueItems",
                json!({"type": "array", "uniqueItems": true, "items": {"type": "integer"}}),
                json!([1, 2, 1.0]),
                vec![(
                    INV,
                    "spec.items",
                    r#"Invalid value: "": spec.items in body shouldn't contain duplicates"#,
                )],
            ),
            (
                "uniqueItems ok",
                json!({"type": "array", "uniqueItems": true, "items": {"type": "object"}}),
                json!([{"a": 1}, {"a": 2}]),
                vec![],
            ),
            (
                "item errors",
                tags(json!({})),
                json!(["a", 2, "c", false]),
                vec![
                    (
                        TI,
                        "spec.items[1]",
                        r#"Invalid value: "integer": spec.items[1] in body must be of type string: "integer""#,
                    ),
                    (
                        TI,
                        "spec.items[3]",
                        r#"Invalid value: "boolean": spec.items[3] in body must be of type string: "boolean""#,
                    ),
                ],
            ),
            (
                "list-type set",
                tags(json!({"x-kubernetes-list-type": "set"})),
                json!(["a", "b", "a", "a"]),
                vec![
                    (REASON_DUPLICATE, "spec.items[2]", r#"Duplicate value: "a""#),
                    (REASON_DUPLICATE, "spec.items[3]", r#"Duplicate value: "a""#),
                ],
            ),
            (
                "list-type atomic allows duplicates",
                tags(json!({"x-kubernetes-list-type": "atomic"})),
                json!(["a", "a"]),
                vec![],
            ),
            (
                "list-type set of objects",
                json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "object", "x-kubernetes-map-type": "atomic", "x-kubernetes-preserve-unknown-fields": true}}),
                json!([{"a": 1, "b": 2}, {"b": 2, "a": 1}]),
                vec![(
                    REASON_DUPLICATE,
                    "spec.items[1]",
                    r#"Duplicate value: {"a":1,"b":2}"#,
                )],
            ),
        ],
    );
}

#[test]
fn validate_list_map() {
    let ports = json!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name", "protocol"],
        "items": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "protocol": {"type": "string"},
                "port": {"type": "integer"}
            }
        }
    });
    run_spec_table(
        "ports",
        vec![
            (
                "distinct keys",
                ports.clone(),
                json!([
                    {"name": "a", "protocol": "TCP", "port": 1},
                    {"name": "a", "protocol": "UDP", "port": 1}
                ]),
                vec![],
            ),
            (
                "duplicate key tuple",
                ports.clone(),
                json!([
                    {"name": "a", "protocol": "TCP", "port": 1},
                    {"name": "b", "protocol": "TCP", "port": 2},
                    {"name": "a", "protocol": "TCP", "port": 3}
                ]),
                vec![(
                    REASON_DUPLICATE,
                    "spec.ports[2]",
                    r#"Duplicate value: {"name":"a","protocol":"TCP"}"#,
                )],
            ),
            (
                "duplicate reported before item errors",
                ports.clone(),
                json!([
                    {"name": "a", "port": 1},
                    {"name": "a", "port": "x"}
                ]),
                vec![
                    (
                        REASON_DUPLICATE,
                        "spec.ports[1]",
                        r#"Duplicate value: {"name":"a"}"#,
                    ),
                    (
                        TI,
                        "spec.ports[1].port",
                        r#"Invalid value: "string": spec.ports[1].port in body must be of type integer: "string""#,
                    ),
                ],
            ),
        ],
    );
}

#[test]
fn validate_objects() {
    run_spec_table(
        "obj",
        vec![
            (
                "required",
                json!({"type": "object", "required": ["b", "a"], "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}),
                json!({}),
                vec![
                    (REASON_REQUIRED, "spec.obj.a", "Required value"),
                    (REASON_REQUIRED, "spec.obj.b", "Required value"),
                ],
            ),
            (
                "required present as null",
                json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "string", "nullable": true}}}),
                json!({"a": null}),
                vec![],
            ),
            (
                "maxProperties",
                json!({"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}}),
                json!({"a": "1", "b": "2"}),
                vec![(
                    REASON_TOO_MANY,
                    "spec.obj",
                    "Too many: 2: must have at most 1 items",
                )],
            ),
            (
                "minProperties",
                json!({"type": "object", "minProperties": 2, "additionalProperties": {"type": "string"}}),
                json!({"a": "1"}),
                vec![(
                    INV,
                    "spec.obj",
                    "Invalid value: 1: spec.obj in body should have at least 2 properties",
                )],
            ),
            (
                "additionalProperties schema",
                json!({"type": "object", "additionalProperties": {"type": "string"}}),
                json!({"a": "x", "b": 1}),
                vec![(
                    TI,
                    "spec.obj.b",
                    r#"Invalid value: "integer": spec.obj.b in body must be of type string: "integer""#,
                )],
            ),
            (
                "additionalProperties false",
                json!({"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": false}),
                json!({"a": 1, "z": 2}),
                vec![(
                    INV,
                    "spec.obj",
                    r#"Invalid value: "z": spec.obj.z in body is a forbidden property"#,
                )],
            ),
            (
                "unknown fields are not validated",
                json!({"type": "object", "properties": {"a": {"type": "integer"}}}),
                json!({"a": 1, "z": "whatever"}),
                vec![],
            ),
            (
                "preserve-unknown-fields still validates known fields",
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"a": {"type": "integer"}}}),
                json!({"a": "1", "z": {"deep": [1]}}),
                vec![(
                    TI,
                    "spec.obj.a",
                    r#"Invalid value: "string": spec.obj.a in body must be of type integer: "string""#,
                )],
            ),
            (
                "untyped preserve accepts anything",
                json!({"x-kubernetes-preserve-unknown-fields": true}),
                json!([1, "two", {"three": 3}]),
                vec![],
            ),
            (
                "map type is ignored",
                json!({"type": "object", "x-kubernetes-map-type": "granular", "additionalProperties": {"type": "string"}}),
                json!({"a": "b"}),
                vec![],
            ),
        ],
    );
}

#[test]
fn validate_root_skips_type_and_object_meta() {
    let schema = json!({
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": false,
        "properties": {
            "apiVersion": {"type": "integer"},
            "kind": {"type": "integer"},
            "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 3}}},
            "spec": {"type": "object"}
        }
    });
    let object =
        json!({"apiVersion": "v1", "kind": "Foo", "metadata": {"name": "too-long"}, "spec": {}});
    assert_eq!(validate(&schema, &object), vec![]);
    let errors = validate(&schema, &json!({"metadata": {}}));
    assert_eq!(
        simplify(&errors),
        vec![(REASON_REQUIRED, "spec", "Required value")]
    );
    let errors = validate(&schema, &json!({"spec": {}, "extra": 1}));
    assert_eq!(
        simplify(&errors),
        vec![(
            INV,
            "",
            r#"Invalid value: "extra": extra in body is a forbidden property"#
        )]
    );
}

#[test]
fn validate_embedded_resources() {
    let schema = spec_with(
        "template",
        json!({
            "type": "object",
            "x-kubernetes-embedded-resource": true,
            "x-kubernetes-preserve-unknown-fields": true,
            "properties": {"spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}
        }),
    );
    run_validation_table(vec![
        (
            "complete",
            schema.clone(),
            json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"replicas": 1}}}}),
            vec![],
        ),
        (
            "missing type meta",
            schema.clone(),
            json!({"spec": {"template": {"spec": {"replicas": "1"}}}}),
            vec![
                (
                    REASON_REQUIRED,
                    "spec.template.apiVersion",
                    "Required value: must not be empty",
                ),
                (
                    REASON_REQUIRED,
                    "spec.template.kind",
                    "Required value: must not be empty",
                ),
                (
                    TI,
                    "spec.template.spec.replicas",
                    r#"Invalid value: "string": spec.template.spec.replicas in body must be of type integer: "string""#,
                ),
            ],
        ),
        (
            "bad type meta",
            schema.clone(),
            json!({"spec": {"template": {"apiVersion": "", "kind": 5}}}),
            vec![
                (
                    INV,
                    "spec.template.apiVersion",
                    r#"Invalid value: "": must not be empty"#,
                ),
                (
                    INV,
                    "spec.template.kind",
                    "Invalid value: 5: must be a string",
                ),
            ],
        ),
    ]);
}

#[test]
fn validate_junctors() {
    let n = |extra: Value| {
        let mut s = json!({"type": "integer"});
        if let (Some(o), Value::Object(e)) = (s.as_object_mut(), extra) {
            o.extend(e);
        }
        s
    };
    run_spec_table(
        "n",
        vec![
            (
                "anyOf fails",
                n(json!({"anyOf": [{"minimum": 10}, {"maximum": 0}]})),
                json!(5),
                vec![
                    (
                        INV,
                        "",
                        r#"Invalid value: "": "spec.n" must validate at least one schema (anyOf)"#,
                    ),
                    (
                        INV,
                        "spec.n",
                        "Invalid value: 5: spec.n in body should be greater than or equal to 10",
                    ),
                ],
            ),
            (
                "anyOf passes",
                n(json!({"anyOf": [{"minimum": 10}, {"maximum": 5}]})),
                json!(5),
                vec![],
            ),
            (
                "oneOf two valid",
                n(json!({"oneOf": [{"minimum": 0}, {"maximum": 10}]})),
                json!(5),
                vec![(
                    INV,
                    "",
                    r#"Invalid value: "": "spec.n" must validate one and only one schema (oneOf). Found 2 valid alternatives"#,
                )],
            ),
            (
                "oneOf none valid",
                n(json!({"oneOf": [{"minimum": 10}, {"enum": [1]}]})),
                json!(5),
                vec![
                    (
                        INV,
                        "",
                        r#"Invalid value: "": "spec.n" must validate one and only one schema (oneOf). Found none valid"#,
                    ),
                    (
                        INV,
                        "spec.n",
                        "Invalid value: 5: spec.n in body should be greater than or equal to 10",
                    ),
                ],
            ),
            (
                "oneOf exactly one",
                n(json!({"oneOf": [{"minimum": 10}, {"maximum": 5}]})),
                json!(5),
                vec![],
            ),
            (
                "allOf",
                n(json!({"allOf": [{"minimum": 0}, {"maximum": 3}]})),
                json!(5),
                vec![
                    (
                        INV,
                        "",
                        r#"Invalid value: "": "spec.n" must validate all the schemas (allOf)"#,
                    ),
                    (
                        INV,
                        "spec.n",
                        "Invalid value: 5: spec.n in body should be less than or equal to 3",
                    ),
                ],
            ),
            (
                "allOf none",
                n(json!({"allOf": [{"minimum": 6}, {"maximum": 3}]})),
                json!(5),
                vec![
                    (
                        INV,
                        "",
                        r#"Invalid value: "": "spec.n" must validate all the schemas (allOf). None validated"#,
                    ),
                    (
                        INV,
                        "spec.n",
                        "Invalid value: 5: spec.n in body should be greater than or equal to 6",
                    ),
                    (
                        INV,
                        "spec.n",
                        "Invalid value: 5: spec.n in body should be less than or equal to 3",
                    ),
                ],
            ),
            (
                "not",
                n(json!({"not": {"enum": [13]}})),
                json!(13),
                vec![(
                    INV,
                    "",
                    r#"Invalid value: "": "spec.n" must not validate the schema (not)"#,
                )],
            ),
            (
                "not passes",
                n(json!({"not": {"enum": [13]}})),
                json!(12),
                vec![],
            ),
        ],
    );
    // oneOf over required properties, a common CRD idiom.
    let schema = spec_with(
        "src",
        json!({
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
            "oneOf": [{"required": ["a"]}, {"required": ["b"]}]
        }),
    );
    run_validation_table(vec![
        (
            "one set",
            schema.clone(),
            json!({"spec": {"src": {"a": "x"}}}),
            vec![],
        ),
        (
            "none set",
            schema.clone(),
            json!({"spec": {"src": {}}}),
            vec![
                (
                    INV,
                    "",
                    r#"Invalid value: "": "spec.src" must validate one and only one schema (oneOf). Found none valid"#,
                ),
                (REASON_REQUIRED, "spec.src.a", "Required value"),
            ],
        ),
        (
            "both set",
            schema,
            json!({"spec": {"src": {"a": "x", "b": "y"}}}),
            vec![(
                INV,
                "",
                r#"Invalid value: "": "spec.src" must validate one and only one schema (oneOf). Found 2 valid alternatives"#,
            )],
        ),
    ]);
}

#[test]
fn validate_error_order_is_path_order_and_deterministic() {
    let schema = spec_with(
        "x",
        json!({
            "type": "object",
            "minProperties": 5,
            "required": ["b"],
            "properties": {
                "a": {"type": "integer"},
                "b": {"type": "string"},
                "c": {"type": "array", "maxItems": 1, "items": {"type": "string", "maxLength": 1}},
                "d": {"type": "object", "properties": {"e": {"type": "boolean"}}}
            }
        }),
    );
    let object = json!({"spec": {"x": {"d": {"e": 1}, "c": ["aa", "b", "cc"], "a": "x"}}});
    let expected = vec![
        (
            INV,
            "spec.x",
            "Invalid value: 3: spec.x in body should have at least 5 properties",
        ),
        (
            TI,
            "spec.x.a",
            r#"Invalid value: "string": spec.x.a in body must be of type integer: "string""#,
        ),
        (REASON_REQUIRED, "spec.x.b", "Required value"),
        (
            REASON_TOO_MANY,
            "spec.x.c",
            "Too many: 3: must have at most 1 items",
        ),
        (
            REASON_TOO_LONG,
            "spec.x.c[0]",
            "Too long: may not be more than 1 bytes",
        ),
        (
            REASON_TOO_LONG,
            "spec.x.c[2]",
            "Too long: may not be more than 1 bytes",
        ),
        (
            TI,
            "spec.x.d.e",
            r#"Invalid value: "integer": spec.x.d.e in body must be of type boolean: "integer""#,
        ),
    ];
    let first = validate(&schema, &object);
    assert_eq!(simplify(&first), expected);
    for _ in 0..5 {
        assert_eq!(validate(&schema, &object), first);
    }
}
