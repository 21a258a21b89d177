//! Field ownership for server-side apply (the part of Kubernetes that the
//! `structured-merge-diff` library implements).
//!
//! Every object carries `metadata.managedFields`: one entry per field manager
//! (and operation / subresource) with the set of fields it owns, encoded as
//! `FieldsV1`. [`apply`] merges an applied configuration into the live object,
//! detects conflicts with other managers, removes fields the applier stopped
//! specifying and records the new ownership; [`record_update`] records the
//! ownership changes of ordinary writes (create, update, patch).
//!
//! Types of lists and maps come from an optional compiled structural schema
//! of the whole object (a CRD version's, `crate::schema::Schema`). Without a schema every object is a
//! granular map and every list is atomic. `metadata` is built in: only
//! `labels`, `annotations` (granular maps), `finalizers` (a set) and
//! `ownerReferences` (a map list keyed by `uid`) are tracked there, and
//! `apiVersion` / `kind` are never tracked.
//!
//! Field sets are trees whose path elements are stored in their `FieldsV1`
//! spelling: `f:<field>`, `k:<json of the key fields>` (map-list items),
//! `v:<json value>` (set items). Nothing here panics on malformed input:
//! unreadable `managedFields` entries are ignored, values whose shape does not
//! match the schema are handled as atomic values.
//!
//! Schema support: `properties`, `additionalProperties`, `items`,
//! `x-kubernetes-list-type` / `x-kubernetes-list-map-keys`,
//! `x-kubernetes-map-type`, `x-kubernetes-preserve-unknown-fields`, and the
//! strategic-merge-patch markers (`x-kubernetes-patch-strategy: merge` with
//! or without `x-kubernetes-patch-merge-key`) of built-in OpenAPI documents.
//! `$ref`, `allOf` and friends are not followed (such nodes act as if there
//! were no schema). Without a schema the top-level fields (`spec`, `data`...)
//! are treated as declared fields and everything below them as map entries.
//!
//! As in Kubernetes, an apply onto an object without managed fields first gives everything
//! it holds to `before-first-apply`, and `kubectl apply --server-side` takes over fields of a
//! client-side apply whose last-applied configuration still matches (`last_applied.rs`).
//!
//! Known differences from a real API server: duplicate keys in an applied
//! list are dropped (first one wins) instead of rejected with 422; `null` in
//! an applied configuration is stored as a value (CRD pruning of nulls is the
//! caller's business); `Update` entries are per manager and subresource (not
//! per apiVersion); field sets are never converted between API versions; under `metadata`
//! only `labels`, `annotations`, `finalizers` and `ownerReferences` are
//! tracked (Kubernetes also tracks e.g. `generateName`).

mod entries;
mod fields;
mod last_applied;
mod merge;
mod touch;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::gofmt;
use crate::meta::metadata_mut;
use crate::schema::Schema;
pub use entries::{ANCIENT_CHANGES_MANAGER, MAX_UPDATE_MANAGERS};
use entries::{
    Entry, OwnerKey, cap_update_entries, parse_entries, print_owner, read_entries,
    same_entries_ignoring_time, same_ignoring_managed_fields, write_entries,
};
use fields::{FieldSet, format_path};
pub use last_applied::{BEFORE_FIRST_APPLY, KUBECTL, LAST_APPLIED};
use merge::{Ctx, Diff, collect_owned, compare, merge_value, prune};

/// The outcome of a successful server-side apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The new live object, with `metadata.managedFields` updated.
    ///
    /// When the apply changes nothing (same values, same ownership), this is
    /// the live object unchanged, including the old timestamps of
    /// `managedFields` (Kubernetes does not bump timestamps on no-op applies),
    /// so callers can skip the write by comparing it with the live object.
    pub object: Value,
}

/// A field that the applier wants to change but that another manager owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The name of the manager that owns the field.
    pub manager: String,
    /// The field path in Kubernetes' dotted form, e.g. `.spec.size`,
    /// `.spec.ports[port=80].name`, `.spec.containers[name="app"].image`,
    /// `.metadata.labels.app` or `.metadata.finalizers[="example.com/f"]`.
    pub field: String,
}

/// Server-side apply of `config` (the applied configuration, a partial
/// object) by `manager` onto `live` (`None` when the object does not exist
/// yet).
///
/// - The applier's new owned set is the set of fields present in `config`.
/// - A field of `config` whose value differs from the live value and that
///   another manager owns (whether through `Apply` or `Update`) is a conflict:
///   all conflicts are returned as an error unless `force` is set; with
///   `force` the ownership of those fields moves to `manager`. A field applied
///   with the value it already has is shared, not a conflict.
/// - `config` is merged into `live`: granular maps per key, atomic lists and
///   maps replaced whole, map lists per key, sets as a union.
/// - Fields `manager` owned in its previous `Apply` entry but no longer
///   applies are removed from the object unless another manager owns them
///   (map-list and set items are removed as a whole).
/// - `manager` gets one `Apply` entry for `subresource` with `time = now` and
///   `apiVersion = api_version`; entries whose field set becomes empty are
///   dropped.
///
/// `subresource` is `None` for the main resource and e.g. `Some("status")`
/// for the status subresource. Entries are identified like in Kubernetes by
/// manager name, operation and subresource, so a manager's own `Update`
/// entry can conflict with its `Apply`.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    schema: Option<&Schema>,
    api_version: &str,
    now: &str,
    subresource: Option<&str>,
) -> Result<Applied, Vec<Conflict>> {
    let empty = Value::Object(Map::new());
    let live = live.filter(|v| v.is_object());
    let base = live.unwrap_or(&empty);
    let config = if config.is_object() { config } else { &empty };
    let sub = subresource.unwrap_or("");
    let root = Ctx::Root(schema.map(Schema::root));

    let old_entries = read_entries(base);
    let mut entries = old_entries.clone();
    let untracked = match base.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => true,
        Some(Value::Array(list)) => list.is_empty(),
        Some(_) => false,
    };
    if live.is_some() && untracked {
        // An object nobody's fields were recorded for (created before tracking, or its
        // managedFields cleared): what it holds belongs to `before-first-apply`. (Unreadable
        // entries are ignored, not taken for an absence.)
        let mut diff = Diff::default();
        compare(Some(&empty), Some(base), root, &mut Vec::new(), &mut diff);
        if !diff.added.is_empty() {
            entries.push(Entry {
                manager: BEFORE_FIRST_APPLY.to_string(),
                apply: false,
                api_version: api_version.to_string(),
                time: Some(now.to_string()),
                subresource: String::new(),
                set: diff.added,
            });
        }
    }
    let previous = entries
        .iter()
        .position(|e| e.is(manager, true, sub))
        .map(|i| entries.remove(i));

    let mut new_set = FieldSet::default();
    collect_owned(config, root, &mut Vec::new(), &mut new_set);

    let mut merged = merge_value(Some(base), config, root);
    if let Some(previous) = &previous {
        let mut owned = new_set.clone();
        for e in &entries {
            owned.union_with(&e.set);
        }
        prune(&mut merged, root, &previous.set, Some(&owned));
    }

    let mut diff = Diff::default();
    compare(Some(base), Some(&merged), root, &mut Vec::new(), &mut diff);
    let mut changed = diff.added;
    changed.union_with(&diff.modified);

    let mut conflicts = Vec::new();
    let mut contested = FieldSet::default();
    for e in &entries {
        let taken = e.set.intersection(&changed);
        for path in taken.members() {
            conflicts.push(Conflict {
                manager: e.manager.clone(),
                field: format_path(&path),
            });
        }
        contested.union_with(&taken);
    }
    // `kubectl apply --server-side` after client-side applies: conflicts on fields the
    // last-applied configuration set, still at the value it gave them, are taken over.
    let force = force
        || (!conflicts.is_empty()
            && manager == KUBECTL
            && last_applied::allowed_conflicts(base, root).is_some_and(|allowed| {
                let mut rest = contested.clone();
                rest.subtract(&allowed);
                rest.is_empty()
            }));
    if !force && !conflicts.is_empty() {
        conflicts.sort_by(|a, b| a.manager.cmp(&b.manager));
        let mut seen = BTreeSet::new();
        conflicts.retain(|c| seen.insert((c.manager.clone(), c.field.clone())));
        return Err(conflicts);
    }
    for e in entries.iter_mut() {
        e.set.subtract(&contested);
    }

    for e in entries.iter_mut() {
        e.set.subtract(&diff.removed);
    }
    entries.push(Entry {
        manager: manager.to_string(),
        apply: true,
        api_version: api_version.to_string(),
        time: Some(now.to_string()),
        subresource: sub.to_string(),
        set: new_set,
    });
    entries.retain(|e| !e.set.is_empty());
    cap_update_entries(&mut entries);
    if manager == KUBECTL {
        last_applied::keep_annotation_current(&mut merged, base, config);
    }

    if live.is_some()
        && same_ignoring_managed_fields(base, &merged)
        && same_entries_ignoring_time(&old_entries, &entries)
    {
        return Ok(Applied {
            object: base.clone(),
        });
    }
    write_entries(&mut merged, &entries);
    Ok(Applied { object: merged })
}

/// Records ownership for a non-apply write (create, update, patch) by
/// `manager` that changed `old` into `new` (`old = None` for a create).
///
/// Every field whose value was added or changed becomes owned by `manager`
/// through its `Update` entry for `subresource` (merged with its previous
/// one, `time = now`, `apiVersion = api_version`) and is taken away from every
/// other entry, appliers included. Fields removed in `new` are removed from
/// every set. Returns `new` itself (not a copy) with `metadata.managedFields` set.
///
/// As in Kubernetes, when `new` carries a non-empty `metadata.managedFields`
/// (and this is not a subresource write) those entries are the starting
/// point, otherwise `old`'s are; `managedFields: [{}]` therefore clears the
/// ownership information. When nothing changed, `old`'s `managedFields` are
/// kept untouched.
///
/// Its two common cases skip building field sets (`touch.rs`): a create's one entry is
/// written straight from the object, and a write that only changes fields its manager
/// already owns alone (a controller or agent patching its status again) only moves that
/// entry's `time` and `apiVersion`, keeping the other entries as they are.
pub fn record_update(
    old: Option<&Value>,
    new: Value,
    manager: &str,
    schema: Option<&Schema>,
    api_version: &str,
    now: &str,
    subresource: Option<&str>,
) -> Value {
    let write = Write {
        manager,
        schema,
        api_version,
        now,
        subresource,
    };
    record(old, new, &write, true)
}

/// What [`record_update`] is told of a write.
struct Write<'a> {
    manager: &'a str,
    schema: Option<&'a Schema>,
    api_version: &'a str,
    now: &'a str,
    subresource: Option<&'a str>,
}

/// [`record_update`]; `shortcut` allows the common case to skip decoding the entries
/// (the tests compare both ways).
fn record(old: Option<&Value>, new: Value, write: &Write, shortcut: bool) -> Value {
    let Write {
        manager,
        schema,
        api_version,
        now,
        subresource,
    } = *write;
    let mut out = new;
    if !out.is_object() {
        return out;
    }
    let empty = Value::Object(Map::new());
    let old = old.filter(|v| v.is_object()).unwrap_or(&empty);
    let sub = subresource.unwrap_or("");
    let root = Ctx::Root(schema.map(Schema::root));

    let explicit = sub.is_empty()
        && out
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());

    // A create: everything belongs to its manager.
    if shortcut && !explicit && old.as_object().is_some_and(Map::is_empty) {
        let list = touch::created(&out, root, manager, sub, api_version, now);
        #[cfg(test)]
        tests::SHORTCUTS.with(|taken| taken.set(taken.get() + 1));
        if let Some(meta) = metadata_mut(&mut out) {
            match list {
                Some(list) => meta.insert("managedFields".to_string(), list),
                None => meta.remove("managedFields"),
            };
        }
        return out;
    }

    let mut diff = Diff::default();
    compare(Some(old), Some(&out), root, &mut Vec::new(), &mut diff);
    let mut changed = diff.added;
    changed.union_with(&diff.modified);

    let stored = old.pointer("/metadata/managedFields");
    // The entries a write starts from are the stored ones (or sent ones equal to them).
    let unchanged_entries = !explicit || out.pointer("/metadata/managedFields") == stored;
    if shortcut
        && unchanged_entries
        && diff.removed.is_empty()
        && !changed.is_empty()
        && let Some(list) = stored
        && let Some(list) = touch::own_fields_again(list, &changed, manager, sub, api_version, now)
    {
        #[cfg(test)]
        tests::SHORTCUTS.with(|taken| taken.set(taken.get() + 1));
        if let Some(meta) = metadata_mut(&mut out) {
            meta.insert("managedFields".to_string(), list);
        }
        return out;
    }

    let mut entries = if explicit {
        read_entries(&out)
    } else {
        read_entries(old)
    };

    if changed.is_empty() && diff.removed.is_empty() {
        if explicit {
            write_entries(&mut out, &entries);
        } else {
            match old.pointer("/metadata/managedFields") {
                Some(raw) => {
                    if let Some(meta) = metadata_mut(&mut out) {
                        meta.insert("managedFields".to_string(), raw.clone());
                    }
                }
                None => {
                    if let Some(Value::Object(meta)) = out.get_mut("metadata") {
                        meta.remove("managedFields");
                    }
                }
            }
        }
        return out;
    }

    for e in entries.iter_mut() {
        e.set.subtract(&changed);
        e.set.subtract(&diff.removed);
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| e.is(manager, false, sub)) {
            Some(e) => {
                e.set.union_with(&changed);
                e.api_version = api_version.to_string();
                e.time = Some(now.to_string());
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                apply: false,
                api_version: api_version.to_string(),
                time: Some(now.to_string()),
                subresource: sub.to_string(),
                set: changed,
            }),
        }
    }
    entries.retain(|e| !e.set.is_empty());
    cap_update_entries(&mut entries);
    write_entries(&mut out, &entries);
    out
}

/// The Kubernetes error message for apply conflicts, e.g.
/// `Apply failed with 1 conflict: conflict with "mgr" using example.com/v1: .spec.size`
/// or, for several conflicts,
/// `Apply failed with 2 conflicts: conflicts with "a" using v1:\n- .spec.x\n- .spec.y`.
///
/// `managed` is the `managedFields` list (or the whole object carrying it);
/// it is used to find the entry owning each conflicting field. As in
/// Kubernetes, an `Update` owner is printed with `using <apiVersion>`, an
/// `Apply` owner with its name only, and a subresource owner with
/// `with subresource "<name>"`. Groups are sorted by owner.
pub fn conflict_message(conflicts: &[Conflict], managed: &Value) -> String {
    let list = match managed {
        Value::Array(_) => managed,
        _ => managed
            .pointer("/metadata/managedFields")
            .or_else(|| managed.get("managedFields"))
            .unwrap_or(&Value::Null),
    };
    let entries = parse_entries(list);
    let owner = |c: &Conflict| -> (OwnerKey, String) {
        let candidates: Vec<&Entry> = entries.iter().filter(|e| e.manager == c.manager).collect();
        let found = candidates
            .iter()
            .find(|e| e.set.members().iter().any(|p| format_path(p) == c.field))
            .or(candidates.first());
        match found {
            Some(e) => (e.owner_key(), print_owner(e)),
            None => (
                (
                    c.manager.clone(),
                    String::new(),
                    String::new(),
                    String::new(),
                ),
                gofmt::quote(&c.manager),
            ),
        }
    };

    match conflicts {
        [] => "Apply failed with 0 conflicts".to_string(),
        [only] => {
            let (_, label) = owner(only);
            format!(
                "Apply failed with 1 conflict: conflict with {label}: {}",
                only.field
            )
        }
        _ => {
            let mut groups: BTreeMap<OwnerKey, (String, Vec<&str>)> = BTreeMap::new();
            for c in conflicts {
                let (key, label) = owner(c);
                groups
                    .entry(key)
                    .or_insert_with(|| (label, Vec::new()))
                    .1
                    .push(&c.field);
            }
            let mut lines = Vec::new();
            for (label, fields) in groups.values() {
                lines.push(format!("conflicts with {label}:"));
                for f in fields {
                    lines.push(format!("- {f}"));
                }
            }
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        }
    }
}

/// The default field manager name for a request without `fieldManager`,
/// derived from its User-Agent as Kubernetes does: the part before the first
/// `/`, without non-printable characters, cut after 128 bytes. For example
/// `kubectl/v1.33.1 (linux/amd64) kubernetes/abc` gives `kubectl`. A missing
/// User-Agent gives the empty string, as in Kubernetes.
pub fn default_manager(user_agent: Option<&str>) -> String {
    let prefix = user_agent.unwrap_or("").split('/').next().unwrap_or("");
    let mut out = String::new();
    for c in prefix.chars() {
        if c.is_control() || (c.is_whitespace() && c != ' ') {
            continue;
        }
        if out.len() >= 128 {
            break;
        }
        out.push(c);
    }
    out
}
