//! The common cases of [`super::record_update`], answered without building field sets:
//!
//! * a create: everything the object holds belongs to its manager, so its one entry's
//!   `FieldsV1` is written straight from the object ([`created`]);
//! * a write whose changed fields its manager's `Update` entry already owns, alone (a
//!   controller or an agent writing its status again): the only difference in
//!   `managedFields` is that entry's `time` and `apiVersion`, and the list is copied with
//!   those two replaced ([`own_fields_again`]).
//!
//! The second applies only where the general path would give the same entries: every entry is in
//! the form [`super::entries::write_entries`] gives them (no duplicates, no empty or
//! malformed ones, no more `Update` entries than kept), nothing was removed, and every
//! changed path is made of field names (`f:`), whose spelling, unlike list keys', has one
//! form, so looking them up in the encoded sets is exact. Anything else returns `None` and
//! the caller takes the general path.

use serde_json::{Map, Value};

use super::entries::MAX_UPDATE_MANAGERS;
use super::fields::FieldSet;
use super::merge::{Ctx, Shape, item_path_element, shape};

/// The `managedFields` of a created `object` whose every field belongs to `manager` (an
/// `Update` of `subresource`); `None` when nothing in it is tracked.
pub(super) fn created(
    object: &Value,
    root: Ctx,
    manager: &str,
    subresource: &str,
    api_version: &str,
    now: &str,
) -> Option<Value> {
    let mut fields = below(object, root);
    // `metadata` itself is never a member, only what is tracked under it.
    if let Some(Value::Object(metadata)) = fields.get_mut("f:metadata") {
        metadata.remove(".");
        if metadata.is_empty() {
            fields.remove("f:metadata");
        }
    }
    if fields.is_empty() {
        return None;
    }
    let mut entry = Map::new();
    entry.insert("manager".into(), Value::String(manager.to_owned()));
    entry.insert("operation".into(), Value::String("Update".into()));
    entry.insert("apiVersion".into(), Value::String(api_version.to_owned()));
    entry.insert("time".into(), Value::String(now.to_owned()));
    entry.insert("fieldsType".into(), Value::String("FieldsV1".into()));
    entry.insert("fieldsV1".into(), Value::Object(fields));
    if !subresource.is_empty() {
        entry.insert("subresource".into(), Value::String(subresource.to_owned()));
    }
    Some(Value::Array(vec![Value::Object(entry)]))
}

/// The encoded set of every tracked node strictly below `value` (as `merge::all_paths`
/// finds them, first of duplicate list items only), each a member.
fn below(value: &Value, ctx: Ctx) -> Map<String, Value> {
    let mut out = Map::new();
    match shape(value, ctx) {
        Shape::Leaf => {}
        Shape::Map => {
            let Value::Object(fields) = value else {
                return out;
            };
            for (key, child) in fields {
                if let Some((child_ctx, _)) = ctx.field(key) {
                    out.insert(format!("f:{key}"), member(child, child_ctx));
                }
            }
        }
        list @ (Shape::Assoc(_) | Shape::Set) => {
            let Value::Array(items) = value else {
                return out;
            };
            let item_ctx = ctx.item();
            for item in items {
                out.entry(item_path_element(item, &list))
                    .or_insert_with(|| match list {
                        Shape::Assoc(_) => member(item, item_ctx),
                        _ => Value::Object(Map::new()),
                    });
            }
        }
    }
    out
}

/// A member node with everything below it.
fn member(value: &Value, ctx: Ctx) -> Value {
    let mut children = below(value, ctx);
    if !children.is_empty() {
        children.insert(".".into(), Value::Object(Map::new()));
    }
    Value::Object(children)
}

/// The managed-fields list after `manager` (an `Update` of `subresource`, `""` for the main
/// resource) changed `changed` again, or `None` when this is not the common case.
pub(super) fn own_fields_again(
    list: &Value,
    changed: &FieldSet,
    manager: &str,
    subresource: &str,
    api_version: &str,
    now: &str,
) -> Option<Value> {
    let items = list.as_array()?;
    let mut headers = Vec::with_capacity(items.len());
    for item in items {
        headers.push(Header::read(item)?);
    }
    let updates = headers.iter().filter(|h| !h.apply).count();
    if updates > MAX_UPDATE_MANAGERS {
        return None;
    }
    for (i, a) in headers.iter().enumerate() {
        if headers[i + 1..].iter().any(|b| a.same_owner(b)) {
            return None;
        }
    }
    let mine = headers
        .iter()
        .position(|h| !h.apply && h.manager == manager && h.subresource == subresource)?;
    for path in changed.members() {
        if !path.iter().all(|pe| pe.starts_with("f:")) {
            return None;
        }
        for (i, header) in headers.iter().enumerate() {
            if owns(header.fields, &path) != (i == mine) {
                return None;
            }
        }
    }
    let mut entries: Vec<Value> = items.clone();
    let entry = entries[mine].as_object_mut()?;
    entry.insert("apiVersion".into(), Value::String(api_version.to_owned()));
    entry.insert("time".into(), Value::String(now.to_owned()));
    // Sorted as `write_entries` sorts (operation, time, manager, apiVersion, subresource):
    // the new time may move the entry.
    entries.sort_by_cached_key(|entry| {
        let text = |key: &str| entry[key].as_str().unwrap_or("").to_owned();
        (
            text("operation"),
            text("time"),
            text("manager"),
            text("apiVersion"),
            text("subresource"),
        )
    });
    Some(Value::Array(entries))
}

/// What identifies an entry, read from one in the form `write_entries` gives it.
struct Header<'a> {
    manager: &'a str,
    apply: bool,
    subresource: &'a str,
    fields: &'a Map<String, Value>,
}

impl<'a> Header<'a> {
    /// `None` unless the entry has exactly the keys and types `write_entries` writes and a
    /// non-empty set.
    fn read(item: &'a Value) -> Option<Self> {
        let entry = item.as_object()?;
        let text = |key: &str| entry.get(key).and_then(Value::as_str);
        let apply = match text("operation")? {
            "Apply" => true,
            "Update" => false,
            _ => return None,
        };
        text("apiVersion")?;
        if text("fieldsType")? != "FieldsV1" {
            return None;
        }
        let fields = entry.get("fieldsV1")?.as_object()?;
        if fields.is_empty() || fields.contains_key(".") {
            return None;
        }
        let mut expected = 5;
        if entry.contains_key("time") {
            text("time")?;
            expected += 1;
        }
        let subresource = match entry.get("subresource") {
            None => "",
            Some(Value::String(s)) if !s.is_empty() => {
                expected += 1;
                s
            }
            Some(_) => return None,
        };
        if entry.len() != expected {
            return None;
        }
        Some(Header {
            manager: text("manager")?,
            apply,
            subresource,
            fields,
        })
    }

    /// Whether the general path would merge the two entries into one.
    fn same_owner(&self, other: &Header) -> bool {
        self.manager == other.manager
            && self.apply == other.apply
            && self.subresource == other.subresource
    }
}

/// Whether the encoded set `fields` has `path` as a member (as `FieldSet::from_fields_v1`
/// reads it: a leaf, or a node marked with `.`).
fn owns(fields: &Map<String, Value>, path: &[String]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let mut node = match fields.get(first) {
        Some(node) => node,
        None => return false,
    };
    for pe in rest {
        node = match node.as_object().and_then(|m| m.get(pe)) {
            Some(child) => child,
            None => return false,
        };
    }
    match node {
        Value::Object(m) => m.is_empty() || m.contains_key("."),
        _ => true,
    }
}
