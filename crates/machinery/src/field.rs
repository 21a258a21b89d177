//! Field errors: one problem with one field of an object, the way Kubernetes'
//! `field.Error` reports it (`reason`, `field` path like `spec.ports[0].name`, message).
//! Schema validation, metadata validation and every kind's own rules produce them; the API
//! server turns a list of them into one `422 Invalid` Status with a cause per error.

use std::fmt;

use serde_json::Value;

use crate::gofmt;

/// `field.ErrorTypeInvalid`.
pub const REASON_INVALID: &str = "FieldValueInvalid";
/// `field.ErrorTypeRequired`.
pub const REASON_REQUIRED: &str = "FieldValueRequired";
/// `field.ErrorTypeNotSupported`: a value outside an enumeration.
pub const REASON_NOT_SUPPORTED: &str = "FieldValueNotSupported";
/// `field.ErrorTypeTypeInvalid`: a value of the wrong type or format.
pub const REASON_TYPE_INVALID: &str = "FieldValueTypeInvalid";
/// `field.ErrorTypeTooLong`.
pub const REASON_TOO_LONG: &str = "FieldValueTooLong";
/// `field.ErrorTypeTooMany`: too many items or properties.
pub const REASON_TOO_MANY: &str = "FieldValueTooMany";
/// `field.ErrorTypeDuplicate`.
pub const REASON_DUPLICATE: &str = "FieldValueDuplicate";
/// `field.ErrorTypeForbidden`.
pub const REASON_FORBIDDEN: &str = "FieldValueForbidden";

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// One of the `REASON_*` constants.
    pub reason: &'static str,
    /// The field's path without a leading dot (`spec.ports[0].name`); empty for the object.
    pub field: String,
    /// What is wrong, e.g. `Invalid value: "x": must be a number` or `Required value`.
    pub message: String,
}

impl FieldError {
    /// An error with its message as given.
    pub fn new(reason: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            reason,
            field: field.into(),
            message: message.into(),
        }
    }

    /// `Invalid value: <detail>` where the caller already wrote the value into `detail`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(REASON_INVALID, field, message)
    }

    /// `Invalid value: <value>: <detail>`, the value printed as Go prints it.
    pub fn invalid_value(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        Self::new(
            REASON_INVALID,
            field,
            format!("Invalid value: {}: {detail}", gofmt::value(value)),
        )
    }

    /// `Invalid value: <value>: <detail>` with reason `FieldValueTypeInvalid`.
    pub fn type_invalid(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        Self::new(
            REASON_TYPE_INVALID,
            field,
            format!("Invalid value: {}: {detail}", gofmt::value(value)),
        )
    }

    /// `Required value[: <detail>]`.
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        Self::new(REASON_REQUIRED, field, message)
    }

    /// `Forbidden: <detail>`.
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Self::new(REASON_FORBIDDEN, field, format!("Forbidden: {detail}"))
    }

    /// `Unsupported value: <value>[: supported values: "a", "b"]`.
    pub fn not_supported(field: impl Into<String>, value: &Value, allowed: &[Value]) -> Self {
        let mut message = format!("Unsupported value: {}", gofmt::value(value));
        if !allowed.is_empty() {
            let quoted: Vec<String> = allowed
                .iter()
                .map(|v| match v {
                    Value::String(s) => gofmt::quote(s),
                    other => gofmt::quote(&other.to_string()),
                })
                .collect();
            message.push_str(": supported values: ");
            message.push_str(&quoted.join(", "));
        }
        Self::new(REASON_NOT_SUPPORTED, field, message)
    }

    /// `Too long: may not be more than <max> bytes`.
    pub fn too_long(field: impl Into<String>, max: u64) -> Self {
        Self::new(
            REASON_TOO_LONG,
            field,
            format!("Too long: may not be more than {max} bytes"),
        )
    }

    /// `Too many: <actual>: must have at most <max> items`.
    pub fn too_many(field: impl Into<String>, actual: usize, max: u64) -> Self {
        Self::new(
            REASON_TOO_MANY,
            field,
            format!("Too many: {actual}: must have at most {max} items"),
        )
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        Self::new(
            REASON_DUPLICATE,
            field,
            format!("Duplicate value: {}", gofmt::value(value)),
        )
    }
}

impl fmt::Display for FieldError {
    /// Like Go's `field.Error.Error()`: `<field>: <message>`, `<nil>` for an empty path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "<nil>: {}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for FieldError {}

/// Field paths as Kubernetes writes them.
pub mod path {
    /// `path.name` (or `name` at the root).
    pub fn child(path: &str, name: &str) -> String {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    }

    /// `path[i]`.
    pub fn index(path: &str, i: usize) -> String {
        format!("{path}[{i}]")
    }

    /// `path[key]` (a map entry).
    pub fn key(path: &str, key: &str) -> String {
        format!("{path}[{key}]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matches_go() {
        assert_eq!(
            FieldError::required("spec.a", "").to_string(),
            "spec.a: Required value"
        );
        assert_eq!(FieldError::invalid("", "x").to_string(), "<nil>: x");
    }
}
