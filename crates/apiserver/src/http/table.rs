//! Server-side printing: `meta.k8s.io` Tables with cells formatted the way kubectl prints them.
//!
//! Columns are `Name` plus the resource's printer columns; a resource without any gets a
//! default `Age` column (as Kubernetes does for CRDs). `date` cells are ages ("5m", "3d4h").
//! Each row carries what `includeObject` asks for: the object's metadata by default (so `-A`
//! and `--show-labels` work), the whole object (`--sort-by` a spec field), or nothing.

use serde_json::{Value, json};

use fleetdb_machinery::jsonpath::{self, Projection};
use fleetdb_machinery::meta;
use fleetdb_store::KeyValue;

use super::negotiate::{IncludeObject, TableForm};
use crate::api::{ApiError, PrinterColumn, Resource};
use crate::storage::codec;

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
    let value = column.json_path.get(object);
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

/// A row's cells: the object's name, then one per column.
fn cells(object: &Value, columns: &[PrinterColumn]) -> Vec<Value> {
    let mut cells = vec![object["metadata"]["name"].clone()];
    cells.extend(columns.iter().map(|c| cell(object, c)));
    cells
}

fn row(object: &Value, columns: &[PrinterColumn], include: IncludeObject) -> Value {
    let cells = cells(object, columns);
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

/// What one row's cells and framing are taken to need when a buffer is reserved.
const ROW_CELLS_BYTES: usize = 160;

/// A Table written piece by piece, for lists too long to hold whole: [`TableWriter::head`]
/// (everything up to the opening bracket of `rows`), rows as they are read, then `]}`.
///
/// Rows are built from the stored bytes: a [`Projection`] of the name and the printer
/// columns' paths decodes only what the cells need, and the row's object (its metadata, or
/// the whole object) is the stored text with its resourceVersion spliced in, never decoded.
pub struct TableWriter {
    columns: Vec<PrinterColumn>,
    form: TableForm,
    projection: Projection,
    api_version: String,
    kind: String,
}

impl TableWriter {
    pub fn new(resource: &Resource, form: TableForm) -> Self {
        let columns = columns(resource);
        let name = jsonpath::Path::parse(".metadata.name");
        let projection =
            Projection::new(std::iter::once(&name).chain(columns.iter().map(|c| &c.json_path)));
        Self {
            columns,
            form,
            projection,
            api_version: resource.api_version(),
            kind: resource.kind.clone(),
        }
    }

    /// About how many bytes the rows of `kvs` take, to reserve a page's buffer at once: the
    /// stored objects for rows with objects, most of them (their metadata) for rows with
    /// metadata, the cells alone otherwise.
    pub fn rows_size(&self, kvs: &[KeyValue]) -> usize {
        let stored = codec::items_size(kvs);
        match self.form.include {
            IncludeObject::Object => stored + kvs.len() * ROW_CELLS_BYTES,
            IncludeObject::Metadata => stored * 3 / 4 + kvs.len() * ROW_CELLS_BYTES,
            IncludeObject::None => kvs.len() * ROW_CELLS_BYTES,
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

    /// Appends the rows of stored objects; `first`: no row precedes them. A stored object
    /// that is not valid JSON fails the whole call (as decoding it would).
    pub fn write_rows(
        &self,
        out: &mut Vec<u8>,
        kvs: &[KeyValue],
        mut first: bool,
    ) -> Result<(), ApiError> {
        let metadata = matches!(self.form.include, IncludeObject::Metadata);
        for kv in kvs {
            let (mut cells_of, kept) = self
                .projection
                .decode_keeping(&kv.value, metadata.then_some("metadata"))
                .map_err(|e| codec::unreadable(kv, &e))?;
            // As served: the resourceVersion stamped, apiVersion and kind the resource's.
            codec::set_resource_version(&mut cells_of, kv.mod_revision);
            if let Some(top) = cells_of.as_object_mut() {
                top.insert("apiVersion".into(), json!(self.api_version));
                top.insert("kind".into(), json!(self.kind));
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(b"{\"cells\":");
            serde_json::to_writer(&mut *out, &cells(&cells_of, &self.columns))
                .expect("JSON values serialize");
            out.extend_from_slice(b",\"object\":");
            match self.form.include {
                IncludeObject::None => out.extend_from_slice(b"null"),
                IncludeObject::Metadata => {
                    out.extend_from_slice(
                        b"{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":",
                    );
                    // As decoding serves it: the stored metadata object with the
                    // resourceVersion added (just the resourceVersion when the stored
                    // object has no metadata object).
                    meta::write_metadata_with_resource_version(
                        kept.map_or(&b""[..], str::as_bytes),
                        kv.mod_revision,
                        out,
                    );
                    out.push(b'}');
                }
                IncludeObject::Object => codec::write_item(out, &self.api_version, &self.kind, kv)?,
            }
            out.push(b'}');
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(objects: &[Value]) -> Vec<KeyValue> {
        objects
            .iter()
            .enumerate()
            .map(|(i, o)| KeyValue {
                key: format!("/k/{i}"),
                value: codec::encode(o),
                create_revision: 1,
                mod_revision: 10 + i as i64,
                version: 1,
            })
            .collect()
    }

    /// Rows written from stored bytes equal the rows of the decoded objects, for every
    /// `includeObject`, with columns that reach into objects, arrays, filters and metadata.
    #[test]
    fn rows_from_stored_bytes_are_the_rows_of_the_decoded_objects() {
        use crate::api::catalog::namespaces;
        let mut resource = namespaces();
        let column = |name: &str, type_: &str, path: &str| PrinterColumn {
            name: name.into(),
            type_: type_.into(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            json_path: path.into(),
        };
        resource.printer_columns = vec![
            column("Phase", "string", ".status.phase"),
            column(
                "Ready",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].status",
            ),
            column("First", "string", ".spec.disks[0].size"),
            column("Size", "integer", "{.spec.size}"),
            column("Labels", "count", ".metadata.labels"),
            column("Spec", "string", ".spec"),
            column("Missing", "string", ".spec.nothing.here"),
            column("Kind", "string", ".kind"),
            column("Version", "string", ".metadata.resourceVersion"),
            column("Age", "date", ".metadata.creationTimestamp"),
        ];
        let objects = vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "labels": {"x": "1", "y": "}\"{"}, "creationTimestamp": "2026-01-01T00:00:00Z", "managedFields": [{"manager": "m"}]}, "spec": {"size": 3, "disks": [{"size": 10}, {"size": 20}], "text": "\u{e9}\\\""}, "status": {"phase": "Active", "conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}}),
            json!({"metadata": {"name": "b"}, "spec": "scalar", "status": {"conditions": "not a list"}}),
            json!({"metadata": {}, "spec": {"disks": {"0": {"size": 1}}}}),
            json!({"kind": "Other", "spec": {"size": 1.5}}),
        ];
        let kvs = stored(&objects);
        let served: Vec<Value> = kvs
            .iter()
            .map(|kv| {
                let mut object = codec::decode(kv).unwrap();
                object["apiVersion"] = json!(resource.api_version());
                object["kind"] = json!(resource.kind);
                object
            })
            .collect();
        for include in [
            IncludeObject::None,
            IncludeObject::Metadata,
            IncludeObject::Object,
        ] {
            let form = TableForm {
                version: "v1",
                include,
            };
            let metadata = json!({"resourceVersion": "7"});
            let writer = TableWriter::new(&resource, form);
            let mut pieces = writer.head(metadata.clone());
            writer.write_rows(&mut pieces, &kvs[..1], true).unwrap();
            writer.write_rows(&mut pieces, &kvs[1..], false).unwrap();
            pieces.extend_from_slice(b"]}");
            let pieces: Value = serde_json::from_slice(&pieces).unwrap();
            assert_eq!(
                pieces,
                table(&resource, form, &served, metadata, true),
                "{include:?}"
            );
        }
        // And those rows are what the columns say (the age is the only cell that moves).
        let form = TableForm {
            version: "v1",
            include: IncludeObject::None,
        };
        let table = table(&resource, form, &served[..1], json!({}), true);
        let cells = table["rows"][0]["cells"].as_array().unwrap();
        let expected = json!([
            "a",
            "Active",
            "True",
            "10",
            3,
            2,
            served[0]["spec"].to_string(),
            null,
            "Namespace",
            "10"
        ]);
        assert_eq!(cells[..10], expected.as_array().unwrap()[..]);
        assert!(
            cells[10]
                .as_str()
                .is_some_and(|age| age.ends_with('d') || age.contains('y'))
        );
    }

    #[test]
    fn a_broken_stored_object_fails_the_rows() {
        use crate::api::catalog::namespaces;
        let resource = namespaces();
        let writer = TableWriter::new(
            &resource,
            TableForm {
                version: "v1",
                include: IncludeObject::Metadata,
            },
        );
        let mut kvs = stored(&[json!({"metadata": {"name": "a"}})]);
        kvs[0].value = bytes::Bytes::from_static(b"{\"metadata\":{\"name\":");
        assert!(writer.write_rows(&mut Vec::new(), &kvs, true).is_err());
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
