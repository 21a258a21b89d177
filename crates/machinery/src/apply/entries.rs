//! `metadata.managedFields` entries: read leniently, written sorted as Kubernetes does.

use serde_json::{Map, Value};

use super::fields::FieldSet;
use crate::gofmt;
use crate::meta::metadata_mut;

/// One decoded `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) manager: String,
    pub(super) apply: bool,
    pub(super) api_version: String,
    pub(super) time: Option<String>,
    pub(super) subresource: String,
    pub(super) set: FieldSet,
}

/// Sort/group key of an owner as Kubernetes identifies it: manager,
/// operation, apiVersion (updates only), subresource.
pub(super) type OwnerKey = (String, String, String, String);

impl Entry {
    pub(super) fn is(&self, manager: &str, apply: bool, subresource: &str) -> bool {
        self.manager == manager && self.apply == apply && self.subresource == subresource
    }

    pub(super) fn operation(&self) -> &'static str {
        if self.apply { "Apply" } else { "Update" }
    }

    pub(super) fn owner_key(&self) -> OwnerKey {
        (
            self.manager.clone(),
            self.operation().to_string(),
            if self.apply {
                String::new()
            } else {
                self.api_version.clone()
            },
            self.subresource.clone(),
        )
    }

    pub(super) fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), Value::String(self.manager.clone()));
        m.insert("operation".into(), Value::String(self.operation().into()));
        m.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(t) = &self.time {
            m.insert("time".into(), Value::String(t.clone()));
        }
        m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        m.insert("fieldsV1".into(), self.set.to_fields_v1());
        if !self.subresource.is_empty() {
            m.insert(
                "subresource".into(),
                Value::String(self.subresource.clone()),
            );
        }
        Value::Object(m)
    }
}

pub(super) fn print_owner(e: &Entry) -> String {
    let mut out = gofmt::quote(&e.manager);
    if !e.subresource.is_empty() {
        out.push_str(&format!(
            " with subresource {}",
            gofmt::quote(&e.subresource)
        ));
    }
    if !e.apply {
        out.push_str(&format!(" using {}", e.api_version));
    }
    out
}

/// Entries of an object's `metadata.managedFields`.
pub(super) fn read_entries(obj: &Value) -> Vec<Entry> {
    parse_entries(
        obj.pointer("/metadata/managedFields")
            .unwrap_or(&Value::Null),
    )
}

/// Decodes a `managedFields` list; malformed entries are skipped and entries
/// with the same identity are merged.
pub(super) fn parse_entries(list: &Value) -> Vec<Entry> {
    let Some(items) = list.as_array() else {
        return Vec::new();
    };
    let mut out: Vec<Entry> = Vec::new();
    for item in items {
        let Some(e) = parse_entry(item) else {
            continue;
        };
        match out
            .iter_mut()
            .find(|p| p.is(&e.manager, e.apply, &e.subresource))
        {
            Some(prev) => prev.set.union_with(&e.set),
            None => out.push(e),
        }
    }
    out
}

pub(super) fn parse_entry(v: &Value) -> Option<Entry> {
    let o = v.as_object()?;
    let manager = o.get("manager")?.as_str()?.to_string();
    let apply = match o.get("operation")?.as_str()? {
        "Apply" => true,
        "Update" => false,
        _ => return None,
    };
    let optional_str = |key: &str| -> Option<Option<String>> {
        match o.get(key) {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s.clone())),
            Some(_) => None,
        }
    };
    let api_version = optional_str("apiVersion")?.unwrap_or_default();
    let time = optional_str("time")?;
    let subresource = optional_str("subresource")?.unwrap_or_default();
    match optional_str("fieldsType")? {
        None => {}
        Some(t) if t == "FieldsV1" => {}
        Some(_) => return None,
    }
    let set = match o.get("fieldsV1") {
        None | Some(Value::Null) => FieldSet::default(),
        Some(Value::Object(fields)) => FieldSet::from_fields_v1(fields),
        Some(_) => return None,
    };
    Some(Entry {
        manager,
        apply,
        api_version,
        time,
        subresource,
        set,
    })
}

/// Most `Update` entries an object keeps (kube-apiserver's `maxUpdateManagers`): a new
/// field manager on every write cannot grow `managedFields` without bound.
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// The manager the oldest `Update` entries are merged into past [`MAX_UPDATE_MANAGERS`].
pub const ANCIENT_CHANGES_MANAGER: &str = "ancient-changes";

/// Merges the oldest `Update` entries into one `ancient-changes` entry per apiVersion until
/// at most [`MAX_UPDATE_MANAGERS`] remain, as kube-apiserver does.
pub(super) fn cap_update_entries(entries: &mut Vec<Entry>) {
    let mut updates: Vec<usize> = (0..entries.len()).filter(|&i| !entries[i].apply).collect();
    if updates.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updates.sort_by(|&a, &b| entries[a].time.cmp(&entries[b].time));
    let mut remaining = updates.len();
    // apiVersion → the first (oldest) entry of that version, which becomes its bucket.
    let mut buckets: Vec<(String, usize)> = Vec::new();
    let mut merged_away = Vec::new();
    for index in updates {
        if remaining <= MAX_UPDATE_MANAGERS {
            break;
        }
        let version = entries[index].api_version.clone();
        match buckets.iter().find(|(v, _)| *v == version) {
            Some(&(_, bucket)) => {
                let set = entries[index].set.clone();
                let time = entries[index].time.clone();
                let target = &mut entries[bucket];
                target.manager = ANCIENT_CHANGES_MANAGER.to_owned();
                target.subresource = String::new();
                target.set.union_with(&set);
                // The merged entry is newer: its time is the bucket's now.
                target.time = time;
                merged_away.push(index);
                remaining -= 1;
            }
            None => buckets.push((version, index)),
        }
    }
    merged_away.sort_unstable();
    for index in merged_away.into_iter().rev() {
        entries.remove(index);
    }
}

/// Stores `entries` in `metadata.managedFields`, sorted as Kubernetes does
/// (operation, time, manager, apiVersion, subresource); removes the field
/// when there are none.
pub(super) fn write_entries(obj: &mut Value, entries: &[Entry]) {
    if entries.is_empty() {
        if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
            meta.remove("managedFields");
        }
        return;
    }
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        (
            a.operation(),
            a.time.as_deref().unwrap_or(""),
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                b.operation(),
                b.time.as_deref().unwrap_or(""),
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let list = Value::Array(sorted.into_iter().map(Entry::to_json).collect());
    if let Some(meta) = metadata_mut(obj) {
        meta.insert("managedFields".to_string(), list);
    }
}

pub(super) fn same_ignoring_managed_fields(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(Value::Object(meta)) = v.get_mut("metadata") {
            meta.remove("managedFields");
        }
        v
    };
    strip(a) == strip(b)
}

pub(super) fn same_entries_ignoring_time(a: &[Entry], b: &[Entry]) -> bool {
    let key = |entries: &[Entry]| {
        let mut v: Vec<Entry> = entries
            .iter()
            .filter(|e| !e.set.is_empty())
            .map(|e| Entry {
                time: None,
                ..e.clone()
            })
            .collect();
        v.sort_by_key(Entry::owner_key);
        v
    };
    key(a) == key(b)
}
