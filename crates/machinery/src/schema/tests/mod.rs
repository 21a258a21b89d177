//! The schema's behaviour, case by case, with kube-apiserver's wording as the expectation.

mod pruning;
mod structural;
mod validation;

use serde_json::{Value, json};

use super::Schema;
use crate::field::{FieldError, REASON_INVALID, REASON_TYPE_INVALID};

fn validate(schema: &Value, object: &Value) -> Vec<FieldError> {
    Schema::compile(schema).validate(object)
}

fn prune(schema: &Value, object: &mut Value) -> Vec<String> {
    Schema::compile(schema).prune(object)
}

fn apply_defaults(schema: &Value, object: &mut Value) {
    Schema::compile(schema).apply_defaults(object)
}

type Expected<'a> = Vec<(&'a str, &'a str, &'a str)>;

fn simplify(errors: &[FieldError]) -> Vec<(&str, &str, &str)> {
    errors
        .iter()
        .map(|e| (e.reason, e.field.as_str(), e.message.as_str()))
        .collect()
}

/// Wraps a property schema as `spec.<name>` of a root object schema.
fn spec_with(name: &str, prop: Value) -> Value {
    json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {name: prop}}
        }
    })
}

fn run_validation_table(cases: Vec<(&str, Value, Value, Expected)>) {
    for (name, schema, object, expected) in cases {
        let errors = validate(&schema, &object);
        assert_eq!(simplify(&errors), expected, "case {name}");
    }
}

fn run_spec_table(field: &str, cases: Vec<(&str, Value, Value, Expected)>) {
    let cases = cases
        .into_iter()
        .map(|(name, prop, value, expected)| {
            (
                name,
                spec_with(field, prop),
                json!({"spec": {field: value}}),
                expected,
            )
        })
        .collect();
    run_validation_table(cases);
}

const TI: &str = REASON_TYPE_INVALID;
const INV: &str = REASON_INVALID;
