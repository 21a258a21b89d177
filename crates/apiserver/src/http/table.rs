//! Server-side printing: `meta.k8s.io` Tables with cells formatted the way kubectl prints them.
//!
//! Columns are `Name` plus the resource's printer columns; a resource without any gets a
//! default `Age` column (as Kubernetes does for CRDs). `date` cells are ages ("5m", "3d4h").
//! Each row carries what `includeObject` asks for: the object's metadata by default (so `-A`
//! and `--show-labels` work), the whole object (`--sort-by` a spec field), or nothing.

use serde_json::{Value, json};

use fleetdb_machinery::jsonpath;

use super::negotiate::{IncludeObject, TableForm};
use crate::api::{PrinterColumn, Resource};

/// Formats a duration the way Kubernetes' `HumanDuration` does.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let seconds = seconds.max(0);
    let minutes = seconds / 60;
    let hours = seconds / 3600;
    let days = hours / 24;
    let years = days / 365;
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 192 {
        let h = hours % 24;
        if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        }
    } else if years < 2 {
        format!("{days}d")
    } else if years < 8 {
        let d = days % 365;
        if d == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{d}d")
        }
    } else {
        format!("{years}y")
    }
}

/// Age of an RFC 3339 timestamp, or `None` if it does not parse.
fn age(timestamp: &str) -> Option<String> {
    let then =
        time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
            .ok()?;
    let seconds = (time::OffsetDateTime::now_utc() - then).whole_seconds();
    Some(human_duration(seconds))
}

/// The kind and name of an object reference, as kubectl prints `OBJECT` (`host/web-1`).
fn reference(value: &Value) -> Value {
    match (value["kind"].as_str(), value["name"].as_str()) {
        (Some(kind), Some(name)) => json!(format!("{}/{name}", kind.to_lowercase())),
        (None, Some(name)) => json!(name),
        _ => Value::Null,
    }
}

/// A CertificateSigningRequest's condition as `kubectl get csr` prints it:
/// `Pending`, `Approved`, `Approved,Issued`, `Denied`, `Approved,Failed`.
fn request_condition(status: Option<&Value>) -> Value {
    let mut parts: Vec<String> = status
        .and_then(|s| s["conditions"].as_array())
        .into_iter()
        .flatten()
        .filter(|c| c["status"] != "False" && c["status"] != "Unknown")
        .filter_map(|c| c["type"].as_str().map(str::to_owned))
        .collect();
    if parts.is_empty() {
        parts.push("Pending".into());
    }
    if status.is_some_and(|s| s["certificate"].as_str().is_some_and(|c| !c.is_empty())) {
        parts.push("Issued".into());
    }
    json!(parts.join(","))
}

/// The column types only built-in kinds use (computed cells, published as another type).
fn published_type(type_: &str) -> &str {
    match type_ {
        "count" => "integer",
        "age" | "object" | "duration" | "conditions" => "string",
        other => other,
    }
}

fn cell(object: &Value, column: &PrinterColumn) -> Value {
    let value = jsonpath::get(object, &column.json_path);
    match column.type_.as_str() {
        "count" => return json!(value.and_then(Value::as_object).map_or(0, |o| o.len())),
        "conditions" => return request_condition(value),
        "duration" => {
            return json!(
                value
                    .and_then(Value::as_i64)
                    .map_or("<none>".to_owned(), human_duration)
            );
        }
        _ => {}
    }
    let Some(value) = value else {
        return Value::Null;
    };
    match column.type_.as_str() {
        "age" => json!(
            value
                .as_str()
                .and_then(age)
                .unwrap_or_else(|| "<unknown>".into())
        ),
        "object" => reference(value),
        "date" => value
            .as_str()
            .and_then(age)
            .map(Value::String)
            .unwrap_or(Value::Null),
        "integer" | "number" | "boolean" => value.clone(),
        _ => match value {
            Value::String(s) => Value::String(s.clone()),
            Value::Null => Value::Null,
            other => Value::String(other.to_string()),
        },
    }
}

fn columns(resource: &Resource) -> Vec<PrinterColumn> {
    if resource.printer_columns.is_empty() {
        return vec![PrinterColumn {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        }];
    }
    resource.printer_columns.clone()
}

fn row(object: &Value, columns: &[PrinterColumn], include: IncludeObject) -> Value {
    let mut cells = vec![object["metadata"]["name"].clone()];
    cells.extend(columns.iter().map(|c| cell(object, c)));
    let object = match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object["metadata"],
        }),
        IncludeObject::Object => object.clone(),
    };
    json!({"cells": cells, "object": object})
}

/// The column definitions of a resource's Tables: `Name` and its printer columns.
fn definitions(columns: &[PrinterColumn]) -> Vec<Value> {
    let mut definitions = vec![json!({
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": "Name must be unique within a namespace.",
        "priority": 0,
    })];
    definitions.extend(columns.iter().map(|c| {
        json!({
            "name": c.name,
            "type": published_type(&c.type_),
            "format": c.format,
            "description": c.description,
            "priority": c.priority,
        })
    }));
    definitions
}

/// A Table of `objects`; `list_metadata` is the list's metadata (resourceVersion, continue).
pub fn table(
    resource: &Resource,
    form: TableForm,
    objects: &[Value],
    list_metadata: Value,
    with_columns: bool,
) -> Value {
    let columns = columns(resource);
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| row(o, &columns, form.include))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{}", form.version),
        "metadata": list_metadata,
        "columnDefinitions": if with_columns { Value::Array(definitions(&columns)) } else { Value::Array(vec![]) },
        "rows": rows,
    })
}

/// A Table written piece by piece, for lists too long to hold whole: [`TableWriter::head`]
/// (everything up to the opening bracket of `rows`), rows as they are read, then `]}`.
pub struct TableWriter {
    columns: Vec<PrinterColumn>,
    form: TableForm,
}

impl TableWriter {
    pub fn new(resource: &Resource, form: TableForm) -> Self {
        Self {
            columns: columns(resource),
            form,
        }
    }

    /// The Table's JSON up to the opening bracket of its rows.
    pub fn head(&self, list_metadata: Value) -> Vec<u8> {
        let envelope = json!({
            "kind": "Table",
            "apiVersion": format!("meta.k8s.io/{}", self.form.version),
            "metadata": list_metadata,
            "columnDefinitions": definitions(&self.columns),
        });
        let mut head = serde_json::to_vec(&envelope).expect("JSON values serialize");
        head.pop();
        head.extend_from_slice(b",\"rows\":[");
        head
    }

    /// Appends the rows of `objects` (as served); `first`: no row precedes them.
    pub fn write_rows(&self, out: &mut Vec<u8>, objects: &[Value], mut first: bool) {
        for object in objects {
            if !first {
                out.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut *out, &row(object, &self.columns, self.form.include))
                .expect("JSON values serialize");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_written_in_pieces_is_the_table() {
        use crate::api::catalog::namespaces;
        let resource = namespaces();
        let objects: Vec<Value> = (0..3)
            .map(|i| json!({"metadata": {"name": format!("n{i}"), "creationTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Active"}}))
            .collect();
        let metadata = json!({"resourceVersion": "7"});
        let form = TableForm {
            version: "v1",
            include: IncludeObject::Object,
        };
        let writer = TableWriter::new(&resource, form);
        let mut pieces = writer.head(metadata.clone());
        writer.write_rows(&mut pieces, &objects[..1], true);
        writer.write_rows(&mut pieces, &objects[1..], false);
        pieces.extend_from_slice(b"]}");
        let pieces: Value = serde_json::from_slice(&pieces).unwrap();
        assert_eq!(pieces, table(&resource, form, &objects, metadata, true));
        assert_eq!(pieces["rows"][2]["object"], objects[2]);
    }

    #[test]
    fn durations_print_like_kubectl() {
        let cases = [
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 25 * 60, "3h25m"),
            (47 * 3600, "47h"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (30 * 86400, "30d"),
            (3 * 365 * 86400 + 10 * 86400, "3y10d"),
            (9 * 365 * 86400, "9y"),
            (-5, "<invalid>"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(human_duration(seconds), expected, "{seconds} s");
        }
    }
}
