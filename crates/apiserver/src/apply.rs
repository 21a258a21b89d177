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
//! Types of lists and maps come from an optional OpenAPI v3 structural schema
//! of the whole object (as found in a CRD). Without a schema every object is a
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
//! Known differences from a real API server: duplicate keys in an applied
//! list are dropped (first one wins) instead of rejected with 422; `null` in
//! an applied configuration is stored as a value (CRD pruning of nulls is the
//! caller's business); `Update` entries are per manager and subresource (not
//! per apiVersion); field sets are never converted between API versions;
//! there is no `before-first-apply` manager, no last-applied-annotation
//! upgrade and no cap on the number of `Update` entries; under `metadata`
//! only `labels`, `annotations`, `finalizers` and `ownerReferences` are
//! tracked (Kubernetes also tracks e.g. `generateName`).

#![warn(missing_docs)]

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

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
    schema: Option<&Value>,
    api_version: &str,
    now: &str,
    subresource: Option<&str>,
) -> Result<Applied, Vec<Conflict>> {
    let empty = Value::Object(Map::new());
    let live = live.filter(|v| v.is_object());
    let base = live.unwrap_or(&empty);
    let config = if config.is_object() { config } else { &empty };
    let sub = subresource.unwrap_or("");
    let root = Ctx::Root(schema);

    let old_entries = read_entries(base);
    let mut entries = old_entries.clone();
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
    for e in entries.iter_mut() {
        let taken = e.set.intersection(&changed);
        if taken.is_empty() {
            continue;
        }
        for path in taken.members() {
            conflicts.push(Conflict {
                manager: e.manager.clone(),
                field: format_path(&path),
            });
        }
        if force {
            e.set.subtract(&taken);
        }
    }
    if !force && !conflicts.is_empty() {
        conflicts.sort_by(|a, b| a.manager.cmp(&b.manager));
        let mut seen = BTreeSet::new();
        conflicts.retain(|c| seen.insert((c.manager.clone(), c.field.clone())));
        return Err(conflicts);
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
/// every set. Returns `new` with `metadata.managedFields` set.
///
/// As in Kubernetes, when `new` carries a non-empty `metadata.managedFields`
/// (and this is not a subresource write) those entries are the starting
/// point, otherwise `old`'s are; `managedFields: [{}]` therefore clears the
/// ownership information. When nothing changed, `old`'s `managedFields` are
/// kept untouched.
pub fn record_update(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    schema: Option<&Value>,
    api_version: &str,
    now: &str,
    subresource: Option<&str>,
) -> Value {
    let mut out = new.clone();
    if !out.is_object() {
        return out;
    }
    let empty = Value::Object(Map::new());
    let old = old.filter(|v| v.is_object()).unwrap_or(&empty);
    let sub = subresource.unwrap_or("");
    let root = Ctx::Root(schema);

    let explicit = sub.is_empty()
        && new
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
    let mut entries = if explicit {
        read_entries(new)
    } else {
        read_entries(old)
    };

    let mut diff = Diff::default();
    compare(Some(old), Some(new), root, &mut Vec::new(), &mut diff);
    let mut changed = diff.added;
    changed.union_with(&diff.modified);

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
                go_quote(&c.manager),
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

// ---------------------------------------------------------------------------
// Field sets
// ---------------------------------------------------------------------------

/// A path from the object root, one `FieldsV1` path element per step.
type Path = Vec<String>;

/// A set of field paths, stored as a tree. A node is in the set when
/// `member` is true; `children` lead to deeper paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    fn insert(&mut self, path: &[String]) {
        let mut node = self;
        for pe in path {
            node = node.children.entry(pe.clone()).or_default();
        }
        node.member = true;
    }

    fn union_with(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (pe, child) in &other.children {
            self.children
                .entry(pe.clone())
                .or_default()
                .union_with(child);
        }
    }

    /// Removes the members of `other` (exact paths, not subtrees).
    fn subtract(&mut self, other: &FieldSet) {
        if other.member {
            self.member = false;
        }
        for (pe, other_child) in &other.children {
            if let Some(child) = self.children.get_mut(pe) {
                child.subtract(other_child);
                if child.is_empty() {
                    self.children.remove(pe);
                }
            }
        }
    }

    fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            if let Some(other_child) = other.children.get(pe) {
                let both = child.intersection(other_child);
                if !both.is_empty() {
                    out.children.insert(pe.clone(), both);
                }
            }
        }
        out
    }

    /// Whether some path strictly below this node is a member.
    fn has_member_below(&self) -> bool {
        self.children
            .values()
            .any(|c| c.member || c.has_member_below())
    }

    /// All member paths, depth first (a node before its children).
    fn members(&self) -> Vec<Path> {
        fn walk(node: &FieldSet, prefix: &mut Path, out: &mut Vec<Path>) {
            if node.member && !prefix.is_empty() {
                out.push(prefix.clone());
            }
            for (pe, child) in &node.children {
                prefix.push(pe.clone());
                walk(child, prefix, out);
                prefix.pop();
            }
        }
        let mut out = Vec::new();
        walk(self, &mut Vec::new(), &mut out);
        out
    }

    /// The `FieldsV1` encoding of the set (the root itself is never a member).
    fn to_fields_v1(&self) -> Value {
        fn node(set: &FieldSet) -> Value {
            let mut m = Map::new();
            if set.member && !set.children.is_empty() {
                m.insert(".".to_string(), Value::Object(Map::new()));
            }
            for (pe, child) in &set.children {
                m.insert(pe.clone(), node(child));
            }
            Value::Object(m)
        }
        let mut m = Map::new();
        for (pe, child) in &self.children {
            m.insert(pe.clone(), node(child));
        }
        Value::Object(m)
    }

    /// Decodes `FieldsV1`, leniently: anything that is not a non-empty object
    /// is read as a leaf, path elements are normalized.
    fn from_fields_v1(fields: &Map<String, Value>) -> FieldSet {
        fn node(v: &Value) -> FieldSet {
            let mut set = FieldSet::default();
            match v {
                Value::Object(m) if !m.is_empty() => {
                    for (k, child) in m {
                        if k == "." {
                            set.member = true;
                        } else {
                            let child = node(child);
                            set.children
                                .entry(normalize_path_element(k))
                                .or_default()
                                .union_with(&child);
                        }
                    }
                }
                _ => set.member = true,
            }
            set
        }
        let mut set = FieldSet::default();
        for (k, child) in fields {
            if k != "." {
                let child = node(child);
                set.children
                    .entry(normalize_path_element(k))
                    .or_default()
                    .union_with(&child);
            }
        }
        set
    }
}

/// Re-encodes the JSON of `k:` and `v:` path elements canonically (sorted
/// keys, no spaces) so that equal elements compare equal.
fn normalize_path_element(pe: &str) -> String {
    if let Some(rest) = pe.strip_prefix("k:")
        && let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(rest)
    {
        return format!("k:{}", canonical_json(&v));
    }
    if let Some(rest) = pe.strip_prefix("v:")
        && let Ok(v) = serde_json::from_str::<Value>(rest)
    {
        return format!("v:{}", canonical_json(&v));
    }
    pe.to_string()
}

/// Compact JSON with object keys sorted, whatever the map implementation.
fn canonical_json(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                out.push('{');
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    if let Some(child) = m.get(k) {
                        write(child, out);
                    }
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// Kubernetes' dotted rendering of a path (`.spec.ports[port=80].name`).
fn format_path(path: &[String]) -> String {
    let mut out = String::new();
    for pe in path {
        if let Some(field) = pe.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(key) = pe.strip_prefix("k:") {
            match serde_json::from_str::<Value>(key) {
                Ok(Value::Object(m)) => {
                    let mut keys: Vec<&String> = m.keys().collect();
                    keys.sort();
                    let parts: Vec<String> = keys
                        .into_iter()
                        .map(|k| format!("{k}={}", go_string(m.get(k).unwrap_or(&Value::Null))))
                        .collect();
                    out.push_str(&format!("[{}]", parts.join(",")));
                }
                _ => out.push_str(&format!("[{key}]")),
            }
        } else if let Some(value) = pe.strip_prefix("v:") {
            match serde_json::from_str::<Value>(value) {
                Ok(v) => out.push_str(&format!("[={}]", go_string(&v))),
                Err(_) => out.push_str(&format!("[={value}]")),
            }
        } else if let Some(index) = pe.strip_prefix("i:") {
            out.push_str(&format!("[{index}]"));
        } else {
            out.push_str(pe);
        }
    }
    out
}

/// How structured-merge-diff prints a value inside a path: strings quoted,
/// everything else bare.
fn go_string(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_string).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}={}", go_string(m.get(k).unwrap_or(&Value::Null))))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// A double-quoted string, close to Go's `%q`.
fn go_quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

// ---------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------

/// Where a value sits, i.e. what its schema says about it.
#[derive(Debug, Clone, Copy)]
enum Ctx<'a> {
    /// The object itself, with the schema of the whole object.
    Root(Option<&'a Value>),
    /// Anything described by a schema node (`None`: no schema, deduced).
    Schema(Option<&'a Value>),
    /// `metadata`: only a few fields are tracked.
    Metadata,
    /// `metadata.labels` and `metadata.annotations`.
    StringMap,
    /// `metadata.finalizers`, a set.
    Finalizers,
    /// `metadata.ownerReferences`, a map list keyed by `uid`.
    OwnerRefs,
    /// An item of `metadata.ownerReferences`.
    OwnerRef,
}

/// The kind of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ListKind {
    Atomic,
    Set,
    Map(Vec<String>),
}

impl<'a> Ctx<'a> {
    fn schema(self) -> Option<&'a Value> {
        match self {
            Ctx::Root(s) | Ctx::Schema(s) => s,
            _ => None,
        }
    }

    /// The context of field `key` of a map, and whether it is a declared
    /// field (a `properties` entry) rather than a map key; `None` when the
    /// field is not tracked at all.
    fn field(self, key: &str) -> Option<(Ctx<'a>, bool)> {
        match self {
            Ctx::Root(schema) => match key {
                "apiVersion" | "kind" => None,
                "metadata" => Some((Ctx::Metadata, true)),
                _ => match schema {
                    // Without a schema the top-level fields (spec, status,
                    // data...) behave like declared fields.
                    None => Some((Ctx::Schema(None), true)),
                    Some(s) => Some(schema_field(s, key)),
                },
            },
            Ctx::Metadata => match key {
                "labels" | "annotations" => Some((Ctx::StringMap, true)),
                "finalizers" => Some((Ctx::Finalizers, true)),
                "ownerReferences" => Some((Ctx::OwnerRefs, true)),
                _ => None,
            },
            Ctx::OwnerRef => Some((Ctx::Schema(None), true)),
            Ctx::StringMap | Ctx::Finalizers | Ctx::OwnerRefs | Ctx::Schema(None) => {
                Some((Ctx::Schema(None), false))
            }
            Ctx::Schema(Some(s)) => Some(schema_field(s, key)),
        }
    }

    /// The context of the items of a list.
    fn item(self) -> Ctx<'a> {
        match self {
            Ctx::OwnerRefs => Ctx::OwnerRef,
            _ => Ctx::Schema(
                self.schema()
                    .and_then(|s| s.get("items"))
                    .filter(|i| i.is_object()),
            ),
        }
    }

    fn list_kind(self) -> ListKind {
        match self {
            Ctx::Finalizers => ListKind::Set,
            Ctx::OwnerRefs => ListKind::Map(vec!["uid".to_string()]),
            _ => match self.schema() {
                Some(s) => schema_list_kind(s),
                None => ListKind::Atomic,
            },
        }
    }

    fn map_is_atomic(self) -> bool {
        self.schema()
            .and_then(|s| s.get("x-kubernetes-map-type"))
            .and_then(Value::as_str)
            == Some("atomic")
    }
}

fn schema_field<'a>(s: &'a Value, key: &str) -> (Ctx<'a>, bool) {
    if let Some(p) = s.get("properties").and_then(|p| p.get(key)) {
        return (Ctx::Schema(Some(p)), true);
    }
    match s.get("additionalProperties") {
        Some(ap @ Value::Object(_)) => (Ctx::Schema(Some(ap)), false),
        _ => (Ctx::Schema(None), false),
    }
}

fn schema_list_kind(s: &Value) -> ListKind {
    match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListKind::Set,
        Some("map") => {
            let keys: Vec<String> = s
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|keys| {
                    keys.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if keys.is_empty() {
                ListKind::Atomic
            } else {
                ListKind::Map(keys)
            }
        }
        Some(_) => ListKind::Atomic,
        None => {
            // Built-in OpenAPI documents may only carry the strategic merge
            // patch markers; structured-merge-diff reads them the same way.
            let merge = s
                .get("x-kubernetes-patch-strategy")
                .and_then(Value::as_str)
                .is_some_and(|st| st.split(',').any(|p| p.trim() == "merge"));
            if !merge {
                return ListKind::Atomic;
            }
            match s
                .get("x-kubernetes-patch-merge-key")
                .and_then(Value::as_str)
            {
                Some(key) if !key.is_empty() => ListKind::Map(vec![key.to_string()]),
                _ => ListKind::Set,
            }
        }
    }
}

/// The structure of a value as far as ownership is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    /// Scalars, null, atomic maps and lists: owned and replaced whole.
    Leaf,
    /// A granular map: fields owned and merged one by one.
    Map,
    /// A map list with these key fields (every item has them).
    Assoc(Vec<String>),
    /// A set list.
    Set,
}

fn shape(v: &Value, ctx: Ctx) -> Shape {
    match v {
        Value::Object(_) => {
            if ctx.map_is_atomic() {
                Shape::Leaf
            } else {
                Shape::Map
            }
        }
        Value::Array(items) => match ctx.list_kind() {
            ListKind::Atomic => Shape::Leaf,
            ListKind::Set => Shape::Set,
            ListKind::Map(keys) => {
                let keyed = items.iter().all(|item| {
                    item.as_object()
                        .is_some_and(|o| keys.iter().all(|k| o.contains_key(k)))
                });
                if keyed {
                    Shape::Assoc(keys)
                } else {
                    // Items without their keys cannot be told apart: treat
                    // the list as atomic rather than fail.
                    Shape::Leaf
                }
            }
        },
        _ => Shape::Leaf,
    }
}

/// The path element of a list item (`k:{...}` or `v:...`).
fn item_path_element(item: &Value, shape: &Shape) -> String {
    match shape {
        Shape::Assoc(keys) => {
            let mut key = Map::new();
            for k in keys {
                key.insert(k.clone(), item.get(k).cloned().unwrap_or(Value::Null));
            }
            format!("k:{}", canonical_json(&Value::Object(key)))
        }
        _ => format!("v:{}", canonical_json(item)),
    }
}

/// Paths that are never recorded: the root and `metadata` itself.
fn is_tracked(path: &[String]) -> bool {
    !(path.is_empty() || (path.len() == 1 && path[0] == "f:metadata"))
}

fn insert_tracked(set: &mut FieldSet, path: &[String]) {
    if is_tracked(path) {
        set.insert(path);
    }
}

// ---------------------------------------------------------------------------
// Walks over values
// ---------------------------------------------------------------------------

/// The fields an applied configuration sets (structured-merge-diff's
/// `ToFieldSet`): leaves and list items are members; granular maps and lists
/// are members when they are map entries rather than declared fields, or
/// empty / null (an applier writing `[]` or `{}` owns that).
fn collect_owned(v: &Value, ctx: Ctx, path: &mut Path, set: &mut FieldSet) {
    match shape(v, ctx) {
        Shape::Leaf => insert_tracked(set, path),
        Shape::Map => {
            let Value::Object(m) = v else { return };
            for (key, child) in m {
                let Some((child_ctx, declared)) = ctx.field(key) else {
                    continue;
                };
                path.push(format!("f:{key}"));
                collect_owned(child, child_ctx, path, set);
                let empty = match child {
                    Value::Object(m) => m.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    _ => false,
                };
                if child.is_null() || empty || !declared {
                    insert_tracked(set, path);
                }
                path.pop();
            }
        }
        sh @ (Shape::Assoc(_) | Shape::Set) => {
            let Value::Array(items) = v else { return };
            let item_ctx = ctx.item();
            for item in items {
                path.push(item_path_element(item, &sh));
                insert_tracked(set, path);
                if matches!(sh, Shape::Assoc(_)) {
                    collect_owned(item, item_ctx, path, set);
                }
                path.pop();
            }
        }
    }
}

/// Merges `rhs` (applied) into `lhs` (live). A missing or differently
/// shaped `lhs` is replaced; the applied value is still walked so that its
/// keyed lists lose duplicate items the same way on every apply.
fn merge_value(lhs: Option<&Value>, rhs: &Value, ctx: Ctx) -> Value {
    let rhs_shape = shape(rhs, ctx);
    match rhs_shape {
        Shape::Leaf => rhs.clone(),
        Shape::Map => {
            let Value::Object(r) = rhs else {
                return rhs.clone();
            };
            let empty = Map::new();
            let l = match lhs {
                Some(Value::Object(l)) => l,
                _ => &empty,
            };
            let mut out = l.clone();
            for (key, rv) in r {
                match ctx.field(key) {
                    Some((child_ctx, _)) => {
                        let merged = merge_value(l.get(key), rv, child_ctx);
                        out.insert(key.clone(), merged);
                    }
                    None => {
                        // Untracked (name, namespace, apiVersion...): the live
                        // value wins, the applied one only fills a gap.
                        let managed_fields = matches!(ctx, Ctx::Metadata) && key == "managedFields";
                        if !l.contains_key(key) && !managed_fields {
                            out.insert(key.clone(), rv.clone());
                        }
                    }
                }
            }
            Value::Object(out)
        }
        Shape::Assoc(_) | Shape::Set => {
            let Value::Array(r) = rhs else {
                return rhs.clone();
            };
            let l: &[Value] = match lhs {
                Some(v @ Value::Array(l)) if shape(v, ctx) == rhs_shape => l,
                _ => &[],
            };
            if l.is_empty() && r.is_empty() {
                return rhs.clone();
            }
            Value::Array(merge_list(l, r, &rhs_shape, ctx.item()))
        }
    }
}

/// Merges two keyed lists. Live-only items keep their place, applied items
/// follow the applied order (structured-merge-diff's interleaving).
fn merge_list(lhs: &[Value], rhs: &[Value], shape: &Shape, item_ctx: Ctx) -> Vec<Value> {
    let lhs_pe: Vec<String> = lhs.iter().map(|i| item_path_element(i, shape)).collect();
    let mut lhs_first: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, pe) in lhs_pe.iter().enumerate() {
        lhs_first.entry(pe.as_str()).or_insert(i);
    }
    let mut rhs_items: Vec<(String, &Value)> = Vec::new();
    let mut rhs_seen: BTreeSet<String> = BTreeSet::new();
    for item in rhs {
        let pe = item_path_element(item, shape);
        if rhs_seen.insert(pe.clone()) {
            rhs_items.push((pe, item));
        }
    }
    let shared: Vec<&str> = rhs_items
        .iter()
        .map(|(pe, _)| pe.as_str())
        .filter(|pe| lhs_first.contains_key(pe))
        .collect();

    let mut next_shared = 0;
    let mut emitted: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::with_capacity(lhs.len() + rhs_items.len());
    let (mut i, mut j) = (0, 0);
    let merge_item = |pe: &str, r: &Value| {
        let l = lhs_first.get(pe).and_then(|&k| lhs.get(k));
        if matches!(shape, Shape::Set) {
            r.clone()
        } else {
            merge_value(l, r, item_ctx)
        }
    };
    while i < lhs.len() || j < rhs_items.len() {
        if i < lhs.len() {
            let pe = lhs_pe[i].as_str();
            if !rhs_seen.contains(pe) {
                out.push(lhs[i].clone());
                i += 1;
                continue;
            }
            if emitted.contains(pe) {
                i += 1;
                continue;
            }
            let at_rhs = rhs_items.get(j).is_some_and(|(r, _)| r == pe);
            if !at_rhs && shared.get(next_shared) != Some(&pe) {
                // Applied later in a different order: emitted with the rhs.
                i += 1;
                continue;
            }
        }
        if let Some((pe, r)) = rhs_items.get(j) {
            if emitted.insert(pe.as_str()) {
                out.push(merge_item(pe, r));
                if shared.get(next_shared) == Some(&pe.as_str()) {
                    next_shared += 1;
                }
            }
            j += 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Removes from `v` what `last` owns (as members) and `owned` does not,
/// except declared fields under which something is still owned. Granular maps
/// and lists emptied this way are removed too, unless owned.
fn prune(v: &mut Value, ctx: Ctx, last: &FieldSet, owned: Option<&FieldSet>) {
    let sh = shape(v, ctx);
    match sh {
        Shape::Leaf => {}
        Shape::Map => {
            let Value::Object(m) = v else { return };
            for (pe, last_child) in &last.children {
                let Some(key) = pe.strip_prefix("f:") else {
                    continue;
                };
                let Some((child_ctx, declared)) = ctx.field(key) else {
                    continue;
                };
                let owned_child = owned.and_then(|o| o.children.get(pe));
                let owned_member = owned_child.is_some_and(|o| o.member);
                let owned_below = owned_child.is_some_and(FieldSet::has_member_below);
                let Some(child) = m.get_mut(key) else {
                    continue;
                };
                if last_child.member && !owned_member && !(declared && owned_below) {
                    m.remove(key);
                    continue;
                }
                if last_child.children.is_empty() {
                    continue;
                }
                let was_filled = is_filled_container(child);
                prune(child, child_ctx, last_child, owned_child);
                let emptied = was_filled && !is_filled_container(child);
                if emptied && !owned_member && !matches!(child_ctx, Ctx::Metadata) {
                    m.remove(key);
                }
            }
        }
        Shape::Assoc(_) | Shape::Set => {
            let Value::Array(items) = v else { return };
            let item_ctx = ctx.item();
            let old = std::mem::take(items);
            for mut item in old {
                let pe = item_path_element(&item, &sh);
                if let Some(last_child) = last.children.get(&pe) {
                    let owned_child = owned.and_then(|o| o.children.get(&pe));
                    if last_child.member && !owned_child.is_some_and(|o| o.member) {
                        continue;
                    }
                    if matches!(sh, Shape::Assoc(_)) && !last_child.children.is_empty() {
                        prune(&mut item, item_ctx, last_child, owned_child);
                    }
                }
                items.push(item);
            }
        }
    }
}

fn is_filled_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

/// What changed between two objects (structured-merge-diff's `Compare`).
#[derive(Debug, Default)]
struct Diff {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

fn compare(lhs: Option<&Value>, rhs: Option<&Value>, ctx: Ctx, path: &mut Path, diff: &mut Diff) {
    let sh = match (lhs.map(|v| shape(v, ctx)), rhs.map(|v| shape(v, ctx))) {
        (None, None) => return,
        (Some(s), None) | (None, Some(s)) => s,
        (Some(a), Some(b)) if a == b => a,
        (Some(_), Some(_)) => {
            // The structure itself changed (e.g. a map became a string).
            insert_tracked(&mut diff.modified, path);
            if let Some(l) = lhs {
                all_paths(l, ctx, path, &mut diff.removed);
            }
            if let Some(r) = rhs {
                all_paths(r, ctx, path, &mut diff.added);
            }
            return;
        }
    };
    let empty = |v: Option<&Value>| match v {
        None => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    if sh == Shape::Leaf || (empty(lhs) && empty(rhs)) {
        match (lhs, rhs) {
            (None, Some(_)) => insert_tracked(&mut diff.added, path),
            (Some(_), None) => insert_tracked(&mut diff.removed, path),
            (Some(l), Some(r)) if !json_eq(l, r) => insert_tracked(&mut diff.modified, path),
            _ => {}
        }
        return;
    }
    match &sh {
        Shape::Map => {
            let l = lhs.and_then(Value::as_object);
            let r = rhs.and_then(Value::as_object);
            let mut keys: BTreeSet<&String> = BTreeSet::new();
            keys.extend(l.into_iter().flat_map(|m| m.keys()));
            keys.extend(r.into_iter().flat_map(|m| m.keys()));
            for key in keys {
                let Some((child_ctx, _)) = ctx.field(key) else {
                    continue;
                };
                path.push(format!("f:{key}"));
                compare(
                    l.and_then(|m| m.get(key)),
                    r.and_then(|m| m.get(key)),
                    child_ctx,
                    path,
                    diff,
                );
                path.pop();
            }
        }
        Shape::Assoc(_) | Shape::Set => {
            let l = index_items(lhs, &sh);
            let r = index_items(rhs, &sh);
            let l_map: BTreeMap<&str, &Value> = l.iter().map(|(p, v)| (p.as_str(), *v)).collect();
            let r_map: BTreeMap<&str, &Value> = r.iter().map(|(p, v)| (p.as_str(), *v)).collect();
            let mut keys: BTreeSet<&str> = l_map.keys().copied().collect();
            keys.extend(r_map.keys().copied());
            let item_ctx = ctx.item();
            for pe in keys {
                let (li, ri) = (l_map.get(pe).copied(), r_map.get(pe).copied());
                path.push(pe.to_string());
                if sh == Shape::Set {
                    match (li, ri) {
                        (None, Some(_)) => insert_tracked(&mut diff.added, path),
                        (Some(_), None) => insert_tracked(&mut diff.removed, path),
                        _ => {}
                    }
                } else {
                    compare(li, ri, item_ctx, path, diff);
                }
                path.pop();
            }
        }
        Shape::Leaf => {}
    }
    match (lhs, rhs) {
        (None, Some(_)) => insert_tracked(&mut diff.added, path),
        (Some(_), None) => insert_tracked(&mut diff.removed, path),
        _ => {}
    }
}

/// The items of a keyed list with their path elements, first occurrence of
/// each key only.
fn index_items<'v>(v: Option<&'v Value>, sh: &Shape) -> Vec<(String, &'v Value)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    if let Some(Value::Array(items)) = v {
        for item in items {
            let pe = item_path_element(item, sh);
            if seen.insert(pe.clone()) {
                out.push((pe, item));
            }
        }
    }
    out
}

/// Every field, item and granular node strictly below `v`.
fn all_paths(v: &Value, ctx: Ctx, path: &mut Path, set: &mut FieldSet) {
    match shape(v, ctx) {
        Shape::Leaf => {}
        Shape::Map => {
            let Value::Object(m) = v else { return };
            for (key, child) in m {
                let Some((child_ctx, _)) = ctx.field(key) else {
                    continue;
                };
                path.push(format!("f:{key}"));
                insert_tracked(set, path);
                all_paths(child, child_ctx, path, set);
                path.pop();
            }
        }
        sh @ (Shape::Assoc(_) | Shape::Set) => {
            let Value::Array(items) = v else { return };
            let item_ctx = ctx.item();
            for item in items {
                path.push(item_path_element(item, &sh));
                insert_tracked(set, path);
                if matches!(sh, Shape::Assoc(_)) {
                    all_paths(item, item_ctx, path, set);
                }
                path.pop();
            }
        }
    }
}

/// JSON equality where `1` equals `1.0`, as in structured-merge-diff.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                x.as_f64() == y.as_f64()
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, p)| y.get(k).is_some_and(|q| json_eq(p, q)))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------
// managedFields entries
// ---------------------------------------------------------------------------

/// One decoded `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    manager: String,
    apply: bool,
    api_version: String,
    time: Option<String>,
    subresource: String,
    set: FieldSet,
}

/// Sort/group key of an owner as Kubernetes identifies it: manager,
/// operation, apiVersion (updates only), subresource.
type OwnerKey = (String, String, String, String);

impl Entry {
    fn is(&self, manager: &str, apply: bool, subresource: &str) -> bool {
        self.manager == manager && self.apply == apply && self.subresource == subresource
    }

    fn operation(&self) -> &'static str {
        if self.apply { "Apply" } else { "Update" }
    }

    fn owner_key(&self) -> OwnerKey {
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

    fn to_json(&self) -> Value {
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

fn print_owner(e: &Entry) -> String {
    let mut out = go_quote(&e.manager);
    if !e.subresource.is_empty() {
        out.push_str(&format!(" with subresource {}", go_quote(&e.subresource)));
    }
    if !e.apply {
        out.push_str(&format!(" using {}", e.api_version));
    }
    out
}

/// Entries of an object's `metadata.managedFields`.
fn read_entries(obj: &Value) -> Vec<Entry> {
    parse_entries(
        obj.pointer("/metadata/managedFields")
            .unwrap_or(&Value::Null),
    )
}

/// Decodes a `managedFields` list; malformed entries are skipped and entries
/// with the same identity are merged.
fn parse_entries(list: &Value) -> Vec<Entry> {
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

fn parse_entry(v: &Value) -> Option<Entry> {
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

/// `metadata` of an object as a mutable map, created when missing.
fn metadata_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let root = obj.as_object_mut()?;
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
}

/// Stores `entries` in `metadata.managedFields`, sorted as Kubernetes does
/// (operation, time, manager, apiVersion, subresource); removes the field
/// when there are none.
fn write_entries(obj: &mut Value, entries: &[Entry]) {
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

fn same_ignoring_managed_fields(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(Value::Object(meta)) = v.get_mut("metadata") {
            meta.remove("managedFields");
        }
        v
    };
    strip(a) == strip(b)
}

fn same_entries_ignoring_time(a: &[Entry], b: &[Entry]) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const V: &str = "example.com/v1";
    const T0: &str = "2024-01-01T00:00:00Z";
    const T1: &str = "2024-01-01T00:00:01Z";
    const T2: &str = "2024-01-01T00:00:02Z";

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": {"type": "object", "properties": {
                    "size": {"type": "integer"},
                    "color": {"type": "string"},
                    "containers": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "properties": {
                            "name": {"type": "string"},
                            "image": {"type": "string"},
                            "args": {"type": "array", "items": {"type": "string"}}
                        }}
                    },
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["port", "protocol"],
                        "items": {"type": "object", "properties": {
                            "port": {"type": "integer"},
                            "protocol": {"type": "string"},
                            "name": {"type": "string"}
                        }}
                    },
                    "tags": {"type": "array", "x-kubernetes-list-type": "set",
                             "items": {"type": "string"}},
                    "args": {"type": "array", "items": {"type": "string"}},
                    "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                                 "properties": {"matchLabels": {"type": "object",
                                     "additionalProperties": {"type": "string"}}}},
                    "params": {"type": "object", "additionalProperties": {"type": "string"}},
                    "template": {"type": "object", "properties": {
                        "replicas": {"type": "integer"},
                        "mode": {"type": "string"}
                    }},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }},
                "status": {"type": "object", "properties": {
                    "ready": {"type": "boolean"},
                    "phase": {"type": "string"}
                }}
            }
        })
    }

    /// A Widget with the given spec.
    fn widget(spec: Value) -> Value {
        json!({"apiVersion": V, "kind": "Widget",
               "metadata": {"name": "w", "namespace": "default"}, "spec": spec})
    }

    /// A Widget with labels and a spec (left out when empty).
    fn labelled(labels: Value, spec: Value) -> Value {
        let mut out = json!({"apiVersion": V, "kind": "Widget",
               "metadata": {"name": "w", "namespace": "default", "labels": labels}});
        if spec != json!({}) {
            out["spec"] = spec;
        }
        out
    }

    fn strip_managed(v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(Value::Object(meta)) = v.get_mut("metadata") {
            meta.remove("managedFields");
        }
        v
    }

    fn strip_times(v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(Value::Array(list)) = v.pointer_mut("/metadata/managedFields") {
            for e in list {
                if let Value::Object(e) = e {
                    e.remove("time");
                }
            }
        }
        v
    }

    /// fieldsV1 of the entry of `manager` with `operation`.
    fn fields(obj: &Value, manager: &str, operation: &str) -> Option<Value> {
        obj.pointer("/metadata/managedFields")?
            .as_array()?
            .iter()
            .find(|e| e["manager"] == manager && e["operation"] == operation)
            .map(|e| e["fieldsV1"].clone())
    }

    fn managers(obj: &Value) -> Vec<(String, String)> {
        obj.pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .map(|e| {
                        (
                            e["manager"].as_str().unwrap_or("").to_string(),
                            e["operation"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn conflict(manager: &str, field: &str) -> Conflict {
        Conflict {
            manager: manager.into(),
            field: field.into(),
        }
    }

    /// One step of a scenario; the time advances with every step.
    enum Op {
        /// Apply of a full config by a manager.
        Apply(&'static str, Value),
        /// Forced apply.
        Force(&'static str, Value),
        /// Non-apply write by a manager: the live object with this spec.
        Update(&'static str, Value),
        /// Non-apply write replacing the labels.
        UpdateLabels(&'static str, Value),
    }

    fn run(ops: Vec<Op>, schema: Option<&Value>) -> Result<Value, Vec<Conflict>> {
        let mut live: Option<Value> = None;
        for (i, op) in ops.into_iter().enumerate() {
            let now = format!("2024-01-01T00:00:{i:02}Z");
            let next = match op {
                Op::Apply(m, cfg) => {
                    apply(live.as_ref(), &cfg, m, false, schema, V, &now, None)?.object
                }
                Op::Force(m, cfg) => {
                    apply(live.as_ref(), &cfg, m, true, schema, V, &now, None)?.object
                }
                Op::Update(m, spec) => {
                    let mut new = live.clone().unwrap_or_else(|| widget(json!({})));
                    new["spec"] = spec;
                    record_update(live.as_ref(), &new, m, schema, V, &now, None)
                }
                Op::UpdateLabels(m, labels) => {
                    let mut new = live.clone().unwrap_or_else(|| widget(json!({})));
                    new["metadata"]["labels"] = labels;
                    record_update(live.as_ref(), &new, m, schema, V, &now, None)
                }
            };
            live = Some(next);
        }
        Ok(live.unwrap_or(Value::Null))
    }

    #[test]
    fn create_by_apply_exact_managed_fields() {
        let cfg = json!({
            "apiVersion": V, "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"size": 3, "containers": [{"name": "main", "image": "nginx"}],
                     "tags": ["a"]}
        });
        let s = schema();
        let out = apply(None, &cfg, "kubectl", false, Some(&s), V, T0, None)
            .unwrap()
            .object;
        assert_eq!(strip_managed(&out), cfg);
        assert_eq!(
            out["metadata"]["managedFields"],
            json!([{
                "manager": "kubectl",
                "operation": "Apply",
                "apiVersion": V,
                "time": T0,
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {
                        "f:containers": {
                            "k:{\"name\":\"main\"}": {".": {}, "f:image": {}, "f:name": {}}
                        },
                        "f:size": {},
                        "f:tags": {"v:\"a\"": {}}
                    }
                }
            }])
        );
    }

    #[test]
    fn brief_example_shape_without_schema() {
        let out = apply(
            None,
            &widget(json!({"size": 1})),
            "m",
            false,
            None,
            V,
            T0,
            None,
        )
        .unwrap()
        .object;
        assert_eq!(
            fields(&out, "m", "Apply"),
            Some(json!({"f:spec": {"f:size": {}}}))
        );
        // Nested objects without a schema are map entries: they own themselves.
        let out = apply(
            None,
            &widget(json!({"tpl": {"a": 1}, "list": [1, 2]})),
            "m",
            false,
            None,
            V,
            T0,
            None,
        )
        .unwrap()
        .object;
        assert_eq!(
            fields(&out, "m", "Apply"),
            Some(json!({"f:spec": {"f:list": {}, "f:tpl": {".": {}, "f:a": {}}}}))
        );
    }

    struct Scenario {
        name: &'static str,
        ops: Vec<Op>,
        want_spec: Value,
        want_fields: Vec<(&'static str, &'static str, Option<Value>)>,
    }

    #[test]
    fn scenarios() {
        let s = schema();
        let cases = vec![
            Scenario {
                name: "re-apply without a field removes it",
                ops: vec![
                    Op::Apply("a", widget(json!({"size": 1, "color": "red"}))),
                    Op::Apply("a", widget(json!({"size": 1}))),
                ],
                want_spec: json!({"size": 1}),
                want_fields: vec![("a", "Apply", Some(json!({"f:spec": {"f:size": {}}})))],
            },
            Scenario {
                name: "two appliers share a field with equal values",
                ops: vec![
                    Op::Apply("a", widget(json!({"size": 1, "color": "red"}))),
                    Op::Apply("b", widget(json!({"size": 1}))),
                ],
                want_spec: json!({"size": 1, "color": "red"}),
                want_fields: vec![
                    (
                        "a",
                        "Apply",
                        Some(json!({"f:spec": {"f:color": {}, "f:size": {}}})),
                    ),
                    ("b", "Apply", Some(json!({"f:spec": {"f:size": {}}}))),
                ],
            },
            Scenario {
                name: "a shared field survives when one owner drops it",
                ops: vec![
                    Op::Apply("a", widget(json!({"size": 1, "color": "red"}))),
                    Op::Apply("b", widget(json!({"size": 1}))),
                    Op::Apply("a", widget(json!({"color": "red"}))),
                ],
                want_spec: json!({"size": 1, "color": "red"}),
                want_fields: vec![
                    ("a", "Apply", Some(json!({"f:spec": {"f:color": {}}}))),
                    ("b", "Apply", Some(json!({"f:spec": {"f:size": {}}}))),
                ],
            },
            Scenario {
                name: "map list merges by key",
                ops: vec![
                    Op::Apply(
                        "a",
                        widget(json!({"containers": [{"name": "x", "image": "i1"}]})),
                    ),
                    Op::Apply(
                        "b",
                        widget(json!({"containers": [{"name": "y", "image": "i2"}]})),
                    ),
                ],
                want_spec: json!({"containers": [
                    {"name": "x", "image": "i1"}, {"name": "y", "image": "i2"}]}),
                want_fields: vec![(
                    "b",
                    "Apply",
                    Some(json!({"f:spec": {"f:containers": {
                        "k:{\"name\":\"y\"}": {".": {}, "f:image": {}, "f:name": {}}}}})),
                )],
            },
            Scenario {
                name: "map list item merges fields of two managers",
                ops: vec![
                    Op::Apply(
                        "a",
                        widget(json!({"containers": [{"name": "x", "image": "i1"}]})),
                    ),
                    Op::Apply(
                        "b",
                        widget(json!({"containers": [{"name": "x", "args": ["--v"]}]})),
                    ),
                ],
                want_spec: json!({"containers": [
                    {"name": "x", "image": "i1", "args": ["--v"]}]}),
                want_fields: vec![(
                    "b",
                    "Apply",
                    Some(json!({"f:spec": {"f:containers": {
                        "k:{\"name\":\"x\"}": {".": {}, "f:args": {}, "f:name": {}}}}})),
                )],
            },
            Scenario {
                name: "map list item removed when the applier drops it",
                ops: vec![
                    Op::Apply(
                        "a",
                        widget(json!({"containers": [
                            {"name": "x", "image": "i1"}, {"name": "y", "image": "i2"}]})),
                    ),
                    Op::Apply(
                        "a",
                        widget(json!({"containers": [{"name": "y", "image": "i2"}]})),
                    ),
                ],
                want_spec: json!({"containers": [{"name": "y", "image": "i2"}]}),
                want_fields: vec![(
                    "a",
                    "Apply",
                    Some(json!({"f:spec": {"f:containers": {
                        "k:{\"name\":\"y\"}": {".": {}, "f:image": {}, "f:name": {}}}}})),
                )],
            },
            Scenario {
                name: "map list item kept while another applier owns it",
                ops: vec![
                    Op::Apply(
                        "a",
                        widget(json!({"containers": [{"name": "x", "image": "i1"}]})),
                    ),
                    Op::Apply("b", widget(json!({"containers": [{"name": "x"}]}))),
                    Op::Apply("a", widget(json!({"size": 2}))),
                ],
                want_spec: json!({"containers": [{"name": "x"}], "size": 2}),
                want_fields: vec![(
                    "b",
                    "Apply",
                    Some(json!({"f:spec": {"f:containers": {
                        "k:{\"name\":\"x\"}": {".": {}, "f:name": {}}}}})),
                )],
            },
            Scenario {
                name: "new list items follow the applied order",
                ops: vec![
                    Op::Apply(
                        "a",
                        widget(json!({"containers": [{"name": "x"}, {"name": "z"}]})),
                    ),
                    Op::Apply(
                        "a",
                        widget(json!({"containers": [
                            {"name": "x"}, {"name": "y"}, {"name": "z"}]})),
                    ),
                ],
                want_spec: json!({"containers": [{"name": "x"}, {"name": "y"}, {"name": "z"}]}),
                want_fields: vec![],
            },
            Scenario {
                name: "items of other managers keep their place",
                ops: vec![
                    Op::Apply("a", widget(json!({"containers": [{"name": "x"}]}))),
                    Op::Apply("b", widget(json!({"containers": [{"name": "w"}]}))),
                    Op::Apply(
                        "a",
                        widget(json!({"containers": [{"name": "v"}, {"name": "x"}]})),
                    ),
                ],
                want_spec: json!({"containers": [{"name": "v"}, {"name": "x"}, {"name": "w"}]}),
                want_fields: vec![],
            },
            Scenario {
                name: "sets are unioned and items removed by their last owner",
                ops: vec![
                    Op::Apply("a", widget(json!({"tags": ["x", "y"]}))),
                    Op::Apply("b", widget(json!({"tags": ["y", "z"]}))),
                    Op::Apply("a", widget(json!({"tags": []}))),
                ],
                want_spec: json!({"tags": ["y", "z"]}),
                want_fields: vec![
                    ("a", "Apply", Some(json!({"f:spec": {"f:tags": {}}}))),
                    (
                        "b",
                        "Apply",
                        Some(json!({"f:spec": {"f:tags": {"v:\"y\"": {}, "v:\"z\"": {}}}})),
                    ),
                ],
            },
            Scenario {
                name: "atomic list replaced whole (forced)",
                ops: vec![
                    Op::Apply("a", widget(json!({"args": ["1", "2"], "size": 1}))),
                    Op::Force("b", widget(json!({"args": ["3"]}))),
                ],
                want_spec: json!({"args": ["3"], "size": 1}),
                want_fields: vec![
                    ("a", "Apply", Some(json!({"f:spec": {"f:size": {}}}))),
                    ("b", "Apply", Some(json!({"f:spec": {"f:args": {}}}))),
                ],
            },
            Scenario {
                name: "atomic map replaced whole",
                ops: vec![
                    Op::Apply(
                        "a",
                        widget(json!({"selector": {"matchLabels": {"a": "1"}}})),
                    ),
                    Op::Apply(
                        "a",
                        widget(json!({"selector": {"matchLabels": {"b": "2"}}})),
                    ),
                ],
                want_spec: json!({"selector": {"matchLabels": {"b": "2"}}}),
                want_fields: vec![("a", "Apply", Some(json!({"f:spec": {"f:selector": {}}})))],
            },
            Scenario {
                name: "granular map with additionalProperties merges per key",
                ops: vec![
                    Op::Apply("a", widget(json!({"params": {"p": "1"}}))),
                    Op::Apply("b", widget(json!({"params": {"q": "2"}}))),
                    Op::Apply("a", widget(json!({"params": {}}))),
                ],
                want_spec: json!({"params": {"q": "2"}}),
                want_fields: vec![("a", "Apply", Some(json!({"f:spec": {"f:params": {}}})))],
            },
            Scenario {
                name: "preserve-unknown-fields content is granular, entries own themselves",
                ops: vec![
                    Op::Apply("a", widget(json!({"extra": {"k": {"n": 1}, "j": [1]}}))),
                    Op::Apply("a", widget(json!({"extra": {"j": [2]}}))),
                ],
                want_spec: json!({"extra": {"j": [2]}}),
                want_fields: vec![(
                    "a",
                    "Apply",
                    Some(json!({"f:spec": {"f:extra": {"f:j": {}}}})),
                )],
            },
            Scenario {
                name: "a field emptied by removal disappears",
                ops: vec![
                    Op::Apply("a", widget(json!({"template": {"mode": "x"}, "size": 1}))),
                    Op::Apply("a", widget(json!({"size": 1}))),
                ],
                want_spec: json!({"size": 1}),
                want_fields: vec![],
            },
            Scenario {
                name: "record_update takes a field over from an applier",
                ops: vec![
                    Op::Apply("a", widget(json!({"size": 1, "color": "red"}))),
                    Op::Update("editor", json!({"size": 1, "color": "blue"})),
                ],
                want_spec: json!({"size": 1, "color": "blue"}),
                want_fields: vec![
                    ("a", "Apply", Some(json!({"f:spec": {"f:size": {}}}))),
                    ("editor", "Update", Some(json!({"f:spec": {"f:color": {}}}))),
                ],
            },
            Scenario {
                name: "re-apply after an edit does not remove the edited field",
                ops: vec![
                    Op::Apply("a", widget(json!({"size": 1, "color": "red"}))),
                    Op::Update("editor", json!({"size": 1, "color": "blue"})),
                    Op::Apply("a", widget(json!({"size": 1}))),
                ],
                want_spec: json!({"size": 1, "color": "blue"}),
                want_fields: vec![("editor", "Update", Some(json!({"f:spec": {"f:color": {}}})))],
            },
            Scenario {
                name: "fields removed by an update leave every set",
                ops: vec![
                    Op::Apply("a", widget(json!({"size": 1, "color": "red"}))),
                    Op::Update("editor", json!({"size": 1})),
                ],
                want_spec: json!({"size": 1}),
                want_fields: vec![
                    ("a", "Apply", Some(json!({"f:spec": {"f:size": {}}}))),
                    ("editor", "Update", None),
                ],
            },
            Scenario {
                name: "forced apply moves ownership away from an updater",
                ops: vec![
                    Op::Apply("a", widget(json!({"size": 1}))),
                    Op::Update("kubectl-edit", json!({"size": 2})),
                    Op::Force("a", widget(json!({"size": 3}))),
                ],
                want_spec: json!({"size": 3}),
                want_fields: vec![
                    ("a", "Apply", Some(json!({"f:spec": {"f:size": {}}}))),
                    ("kubectl-edit", "Update", None),
                ],
            },
            Scenario {
                name: "updates by the same manager merge into one entry",
                ops: vec![
                    Op::Update("ed", json!({"size": 1})),
                    Op::Update("ed", json!({"size": 1, "color": "red"})),
                ],
                want_spec: json!({"size": 1, "color": "red"}),
                want_fields: vec![(
                    "ed",
                    "Update",
                    Some(json!({"f:spec": {".": {}, "f:color": {}, "f:size": {}}})),
                )],
            },
            Scenario {
                name: "update adding a nested struct owns the new nodes",
                ops: vec![
                    Op::Apply("a", widget(json!({"size": 1}))),
                    Op::Update(
                        "ed",
                        json!({"size": 1, "template": {"mode": "m"},
                                            "containers": [{"name": "c"}]}),
                    ),
                ],
                want_spec: json!({"size": 1, "template": {"mode": "m"},
                                  "containers": [{"name": "c"}]}),
                want_fields: vec![(
                    "ed",
                    "Update",
                    Some(json!({"f:spec": {
                        "f:containers": {".": {}, "k:{\"name\":\"c\"}": {".": {}, "f:name": {}}},
                        "f:template": {".": {}, "f:mode": {}}}})),
                )],
            },
        ];
        for case in cases {
            let out = run(case.ops, Some(&s)).unwrap_or_else(|c| panic!("{}: {c:?}", case.name));
            assert_eq!(out["spec"], case.want_spec, "{}", case.name);
            for (m, op, want) in case.want_fields {
                assert_eq!(fields(&out, m, op), want, "{}: {m}/{op}", case.name);
            }
        }
    }

    #[test]
    fn labels_are_granular() {
        let s = schema();
        let out = run(
            vec![
                Op::Apply("a", labelled(json!({"app": "web"}), json!({}))),
                Op::Apply("b", labelled(json!({"team": "x"}), json!({}))),
            ],
            Some(&s),
        )
        .unwrap();
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "web", "team": "x"})
        );
        assert_eq!(
            fields(&out, "a", "Apply"),
            Some(json!({"f:metadata": {"f:labels": {"f:app": {}}}}))
        );
        // a drops its label: only b's stays.
        let bare = json!({"apiVersion": V, "kind": "Widget", "metadata": {"name": "w"}});
        let out = apply(Some(&out), &bare, "a", false, Some(&s), V, T2, None)
            .unwrap()
            .object;
        assert_eq!(out["metadata"]["labels"], json!({"team": "x"}));
        assert_eq!(fields(&out, "a", "Apply"), None);
        // b drops it too: the emptied map goes away, name and namespace stay.
        let out = apply(
            Some(&out),
            &widget(json!({"size": 1})),
            "b",
            false,
            Some(&s),
            V,
            T2,
            None,
        )
        .unwrap()
        .object;
        assert_eq!(out["metadata"].get("labels"), None);
        assert_eq!(out["metadata"]["name"], "w");
        assert_eq!(out["metadata"]["namespace"], "default");
    }

    #[test]
    fn label_edit_by_update_manager() {
        let out = run(
            vec![
                Op::Apply("a", labelled(json!({"app": "web"}), json!({}))),
                Op::UpdateLabels("ed", json!({"app": "web", "x": "1"})),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            fields(&out, "ed", "Update"),
            Some(json!({"f:metadata": {"f:labels": {"f:x": {}}}}))
        );
        assert_eq!(
            fields(&out, "a", "Apply"),
            Some(json!({"f:metadata": {"f:labels": {"f:app": {}}}}))
        );
    }

    #[test]
    fn conflicts() {
        let s = schema();
        let cases: Vec<(&str, Vec<Op>, Vec<Conflict>)> = vec![
            (
                "update owner (kubectl edit)",
                vec![
                    Op::Apply("a", widget(json!({"size": 1}))),
                    Op::Update("kubectl-edit", json!({"size": 2})),
                    Op::Apply("a", widget(json!({"size": 1}))),
                ],
                vec![conflict("kubectl-edit", ".spec.size")],
            ),
            (
                "other applier",
                vec![
                    Op::Apply("a", widget(json!({"size": 1}))),
                    Op::Apply("b", widget(json!({"size": 2}))),
                ],
                vec![conflict("a", ".spec.size")],
            ),
            (
                "map list item field",
                vec![
                    Op::Apply(
                        "a",
                        widget(json!({"containers": [{"name": "c", "image": "x"}]})),
                    ),
                    Op::Apply(
                        "b",
                        widget(json!({"containers": [{"name": "c", "image": "y"}]})),
                    ),
                ],
                vec![conflict("a", ".spec.containers[name=\"c\"].image")],
            ),
            (
                "multi-key map list",
                vec![
                    Op::Apply(
                        "a",
                        widget(json!({"ports": [{"port": 80, "protocol": "TCP", "name": "http"}]})),
                    ),
                    Op::Apply(
                        "b",
                        widget(json!({"ports": [{"port": 80, "protocol": "TCP", "name": "web"}]})),
                    ),
                ],
                vec![conflict("a", ".spec.ports[port=80,protocol=\"TCP\"].name")],
            ),
            (
                "atomic list",
                vec![
                    Op::Apply("a", widget(json!({"args": ["1"]}))),
                    Op::Apply("b", widget(json!({"args": ["1", "2"]}))),
                ],
                vec![conflict("a", ".spec.args")],
            ),
            (
                "atomic map",
                vec![
                    Op::Apply(
                        "a",
                        widget(json!({"selector": {"matchLabels": {"a": "1"}}})),
                    ),
                    Op::Apply(
                        "b",
                        widget(json!({"selector": {"matchLabels": {"a": "2"}}})),
                    ),
                ],
                vec![conflict("a", ".spec.selector")],
            ),
            (
                "label",
                vec![
                    Op::Apply("a", labelled(json!({"app": "web"}), json!({}))),
                    Op::Apply("b", labelled(json!({"app": "db"}), json!({}))),
                ],
                vec![conflict("a", ".metadata.labels.app")],
            ),
            (
                "several owners and fields",
                vec![
                    Op::Apply("b", widget(json!({"size": 1}))),
                    Op::Apply("a", widget(json!({"size": 1, "color": "red"}))),
                    Op::Apply("c", widget(json!({"size": 2, "color": "blue"}))),
                ],
                vec![
                    conflict("a", ".spec.color"),
                    conflict("a", ".spec.size"),
                    conflict("b", ".spec.size"),
                ],
            ),
            (
                "own update entry conflicts with own apply (as in Kubernetes)",
                vec![
                    Op::Apply("a", widget(json!({"size": 1}))),
                    Op::Update("a", json!({"size": 2})),
                    Op::Apply("a", widget(json!({"size": 1}))),
                ],
                vec![conflict("a", ".spec.size")],
            ),
        ];
        for (name, ops, want) in cases {
            let got = run(ops, Some(&s));
            assert_eq!(got.err(), Some(want), "{name}");
        }

        // Not conflicts.
        let ok_cases: Vec<(&str, Vec<Op>)> = vec![
            (
                "same value",
                vec![
                    Op::Apply("a", widget(json!({"size": 1}))),
                    Op::Update("ed", json!({"size": 2})),
                    Op::Apply("b", widget(json!({"size": 2}))),
                ],
            ),
            (
                "set items never conflict",
                vec![
                    Op::Apply("a", widget(json!({"tags": ["x"]}))),
                    Op::Apply("b", widget(json!({"tags": ["y"]}))),
                ],
            ),
            (
                "different map list items",
                vec![
                    Op::Apply(
                        "a",
                        widget(json!({"containers": [{"name": "c", "image": "x"}]})),
                    ),
                    Op::Apply(
                        "b",
                        widget(json!({"containers": [{"name": "d", "image": "y"}]})),
                    ),
                ],
            ),
            (
                "first apply to an object created by someone else",
                vec![
                    Op::Update("creator", json!({"size": 1, "color": "red"})),
                    Op::Apply("a", widget(json!({"size": 1, "template": {"mode": "x"}}))),
                ],
            ),
        ];
        for (name, ops) in ok_cases {
            assert!(run(ops, Some(&s)).is_ok(), "{name}");
        }
    }

    #[test]
    fn force_apply_moves_ownership() {
        let s = schema();
        let live = run(
            vec![
                Op::Apply("a", widget(json!({"size": 1, "color": "red"}))),
                Op::Update("kubectl-edit", json!({"size": 2, "color": "blue"})),
            ],
            Some(&s),
        )
        .unwrap();
        let cfg = widget(json!({"size": 1, "color": "red"}));
        let err = apply(Some(&live), &cfg, "a", false, Some(&s), V, T2, None).unwrap_err();
        assert_eq!(
            conflict_message(&err, &live),
            "Apply failed with 2 conflicts: conflicts with \"kubectl-edit\" using example.com/v1:\
             \n- .spec.color\n- .spec.size"
        );
        let out = apply(Some(&live), &cfg, "a", true, Some(&s), V, T2, None)
            .unwrap()
            .object;
        assert_eq!(out["spec"], json!({"size": 1, "color": "red"}));
        assert_eq!(managers(&out), vec![("a".to_string(), "Apply".to_string())]);
        assert_eq!(
            fields(&out, "a", "Apply"),
            Some(json!({"f:spec": {"f:color": {}, "f:size": {}}}))
        );
    }

    #[test]
    fn conflict_message_texts() {
        let managed = json!([
            {"manager": "a", "operation": "Update", "apiVersion": "v1", "time": T0,
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:x": {}, "f:y": {}}}},
            {"manager": "b", "operation": "Apply", "apiVersion": "v1", "time": T0,
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:z": {}}}},
            {"manager": "mgr", "operation": "Update", "apiVersion": V, "time": T0,
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:size": {}}}},
            {"manager": "ctl", "operation": "Update", "apiVersion": "v1", "time": T0,
             "subresource": "status",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:ready": {}}}},
            {"manager": "dual", "operation": "Apply", "apiVersion": "v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:p": {}}}},
            {"manager": "dual", "operation": "Update", "apiVersion": "v2",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:q": {}}}}
        ]);
        let cases: Vec<(Vec<Conflict>, &str)> = vec![
            (
                vec![conflict("mgr", ".spec.size")],
                "Apply failed with 1 conflict: conflict with \"mgr\" using example.com/v1: .spec.size",
            ),
            (
                vec![conflict("b", ".spec.z")],
                "Apply failed with 1 conflict: conflict with \"b\": .spec.z",
            ),
            (
                vec![conflict("a", ".spec.x"), conflict("a", ".spec.y")],
                "Apply failed with 2 conflicts: conflicts with \"a\" using v1:\n- .spec.x\n- .spec.y",
            ),
            (
                vec![
                    conflict("b", ".spec.z"),
                    conflict("a", ".spec.x"),
                    conflict("a", ".spec.y"),
                ],
                "Apply failed with 3 conflicts: conflicts with \"a\" using v1:\n- .spec.x\n\
                 - .spec.y\nconflicts with \"b\":\n- .spec.z",
            ),
            (
                vec![conflict("ctl", ".status.ready")],
                "Apply failed with 1 conflict: conflict with \"ctl\" with subresource \"status\" \
                 using v1: .status.ready",
            ),
            (
                vec![conflict("dual", ".spec.q")],
                "Apply failed with 1 conflict: conflict with \"dual\" using v2: .spec.q",
            ),
            (
                vec![conflict("dual", ".spec.p")],
                "Apply failed with 1 conflict: conflict with \"dual\": .spec.p",
            ),
            (
                vec![conflict("ghost", ".spec.g")],
                "Apply failed with 1 conflict: conflict with \"ghost\": .spec.g",
            ),
        ];
        let object = json!({"metadata": {"managedFields": managed.clone()}});
        for (conflicts, want) in cases {
            assert_eq!(conflict_message(&conflicts, &managed), want);
            assert_eq!(conflict_message(&conflicts, &object), want);
        }
    }

    #[test]
    fn default_manager_from_user_agent() {
        let long = "x".repeat(300);
        let cases: Vec<(Option<&str>, String)> = vec![
            (
                Some("kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0"),
                "kubectl".into(),
            ),
            (
                Some("kube-controller-manager/v1.30.0"),
                "kube-controller-manager".into(),
            ),
            (Some("my-operator"), "my-operator".into()),
            (Some("Go-http-client/1.1"), "Go-http-client".into()),
            (Some("a\tb\u{7}c/1"), "abc".into()),
            (Some("with space/1"), "with space".into()),
            (Some(long.as_str()), "x".repeat(128)),
            (Some("/v1"), String::new()),
            (Some(""), String::new()),
            (None, String::new()),
        ];
        for (ua, want) in cases {
            assert_eq!(default_manager(ua), want, "{ua:?}");
        }
    }

    #[test]
    fn record_update_create_and_noop() {
        let s = schema();
        let new = labelled(json!({"app": "web"}), json!({"size": 1, "tags": ["a"]}));
        let out = record_update(None, &new, "kubectl-create", Some(&s), V, T0, None);
        assert_eq!(strip_managed(&out), new);
        assert_eq!(
            out["metadata"]["managedFields"],
            json!([{
                "manager": "kubectl-create", "operation": "Update", "apiVersion": V,
                "time": T0, "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                    "f:spec": {".": {}, "f:size": {}, "f:tags": {".": {}, "v:\"a\"": {}}}
                }
            }])
        );
        // Nothing changed: managedFields kept exactly (time included), even
        // if the client dropped them.
        let again = record_update(
            Some(&out),
            &strip_managed(&out),
            "other",
            Some(&s),
            V,
            T1,
            None,
        );
        assert_eq!(again, out);
        // Changing only untracked metadata records nothing either.
        let mut renamed = out.clone();
        renamed["metadata"]["resourceVersion"] = json!("5");
        let again = record_update(Some(&out), &renamed, "other", Some(&s), V, T1, None);
        assert_eq!(
            again["metadata"]["managedFields"],
            out["metadata"]["managedFields"]
        );
    }

    #[test]
    fn record_update_table() {
        let s = schema();
        // (name, spec applied by "a", spec written by "ed", ed's fields, a's fields)
        type Case = (&'static str, Value, Value, Option<Value>, Option<Value>);
        let cases: Vec<Case> = vec![
            (
                "changed leaf moves to the updater",
                json!({"size": 1, "color": "red"}),
                json!({"size": 2, "color": "red"}),
                Some(json!({"f:spec": {"f:size": {}}})),
                Some(json!({"f:spec": {"f:color": {}}})),
            ),
            (
                "removed map-list item leaves every set",
                json!({"containers": [{"name": "x", "image": "1"}, {"name": "y"}]}),
                json!({"containers": [{"name": "y"}]}),
                None,
                Some(json!({"f:spec": {"f:containers": {
                    "k:{\"name\":\"y\"}": {".": {}, "f:name": {}}}}})),
            ),
            (
                "changed field inside a map-list item",
                json!({"containers": [{"name": "x", "image": "1"}]}),
                json!({"containers": [{"name": "x", "image": "2"}]}),
                Some(json!({"f:spec": {"f:containers": {
                    "k:{\"name\":\"x\"}": {"f:image": {}}}}})),
                Some(json!({"f:spec": {"f:containers": {
                    "k:{\"name\":\"x\"}": {".": {}, "f:name": {}}}}})),
            ),
            (
                "added set item",
                json!({"tags": ["a"]}),
                json!({"tags": ["a", "b"]}),
                Some(json!({"f:spec": {"f:tags": {"v:\"b\"": {}}}})),
                Some(json!({"f:spec": {"f:tags": {"v:\"a\"": {}}}})),
            ),
            (
                "changed atomic list",
                json!({"args": ["1"], "size": 1}),
                json!({"args": ["1", "2"], "size": 1}),
                Some(json!({"f:spec": {"f:args": {}}})),
                Some(json!({"f:spec": {"f:size": {}}})),
            ),
            (
                "new granular map owns itself",
                json!({"size": 1}),
                json!({"size": 1, "params": {"p": "1"}}),
                Some(json!({"f:spec": {"f:params": {".": {}, "f:p": {}}}})),
                Some(json!({"f:spec": {"f:size": {}}})),
            ),
            (
                "removing everything drops the applier entry",
                json!({"size": 1}),
                json!({}),
                None,
                None,
            ),
            (
                "no change records nothing",
                json!({"size": 1}),
                json!({"size": 1}),
                None,
                Some(json!({"f:spec": {"f:size": {}}})),
            ),
        ];
        for (name, applied, written, want_ed, want_a) in cases {
            let live = apply(None, &widget(applied), "a", false, Some(&s), V, T0, None)
                .unwrap()
                .object;
            let mut new = live.clone();
            new["spec"] = written.clone();
            let out = record_update(Some(&live), &new, "ed", Some(&s), V, T1, None);
            assert_eq!(out["spec"], written, "{name}");
            assert_eq!(fields(&out, "ed", "Update"), want_ed, "{name}");
            assert_eq!(fields(&out, "a", "Apply"), want_a, "{name}");
        }
    }

    #[test]
    fn record_update_explicit_managed_fields() {
        let s = schema();
        let live = apply(
            None,
            &widget(json!({"size": 1})),
            "a",
            false,
            Some(&s),
            V,
            T0,
            None,
        )
        .unwrap()
        .object;
        // `[{}]` clears ownership.
        let mut new = live.clone();
        new["metadata"]["managedFields"] = json!([{}]);
        let out = record_update(Some(&live), &new, "ed", Some(&s), V, T1, None);
        assert_eq!(out["metadata"].get("managedFields"), None);
        // An empty list means "not provided": the live ones are kept.
        new["metadata"]["managedFields"] = json!([]);
        new["spec"]["color"] = json!("red");
        let out = record_update(Some(&live), &new, "ed", Some(&s), V, T1, None);
        assert_eq!(
            managers(&out),
            vec![
                ("a".to_string(), "Apply".to_string()),
                ("ed".to_string(), "Update".to_string())
            ]
        );
    }

    #[test]
    fn subresources() {
        let s = schema();
        let mut live = apply(
            None,
            &widget(json!({"size": 1})),
            "a",
            false,
            Some(&s),
            V,
            T0,
            None,
        )
        .unwrap()
        .object;
        // Status written through the status subresource by a controller.
        let mut new = live.clone();
        new["status"] = json!({"phase": "Running"});
        live = record_update(Some(&live), &new, "ctl", Some(&s), V, T1, Some("status"));
        let entry = live["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["manager"] == "ctl")
            .unwrap()
            .clone();
        assert_eq!(entry["subresource"], "status");
        assert_eq!(
            entry["fieldsV1"],
            json!({"f:status": {".": {}, "f:phase": {}}})
        );
        // A main-resource apply that does not mention status keeps it.
        let out = apply(
            Some(&live),
            &widget(json!({"size": 2})),
            "a",
            false,
            Some(&s),
            V,
            T2,
            None,
        )
        .unwrap()
        .object;
        assert_eq!(out["status"], json!({"phase": "Running"}));
        // Apply to the status subresource gets its own entry.
        let cfg = json!({"apiVersion": V, "kind": "Widget", "metadata": {"name": "w"},
                         "status": {"ready": true}});
        let out = apply(
            Some(&out),
            &cfg,
            "a",
            false,
            Some(&s),
            V,
            T2,
            Some("status"),
        )
        .unwrap()
        .object;
        assert_eq!(out["status"], json!({"phase": "Running", "ready": true}));
        let status_apply: Vec<&Value> = out["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["manager"] == "a" && e["operation"] == "Apply")
            .collect();
        assert_eq!(status_apply.len(), 2);
        assert_eq!(out["spec"], json!({"size": 2}));
    }

    #[test]
    fn noop_apply_returns_live_unchanged() {
        let s = schema();
        let cfg = labelled(
            json!({"app": "x"}),
            json!({"size": 1, "containers": [{"name": "c"}]}),
        );
        let first = apply(None, &cfg, "a", false, Some(&s), V, T0, None)
            .unwrap()
            .object;
        let second = apply(Some(&first), &cfg, "a", false, Some(&s), V, T1, None)
            .unwrap()
            .object;
        assert_eq!(second, first);
        // A second manager applying the same values becomes co-owner: a change.
        let third = apply(Some(&first), &cfg, "b", false, Some(&s), V, T1, None)
            .unwrap()
            .object;
        assert_eq!(strip_managed(&third), strip_managed(&first));
        assert_eq!(managers(&third).len(), 2);
    }

    #[test]
    fn metadata_builtins() {
        let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "n", "uid": "u-ignored",
                         "annotations": {"a": "1"},
                         "finalizers": ["example.com/f"],
                         "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o",
                                              "uid": "123"}]},
            "data": {"k": "v"}});
        let out = apply(None, &cfg, "a", false, None, "v1", T0, None)
            .unwrap()
            .object;
        assert_eq!(
            fields(&out, "a", "Apply"),
            Some(json!({
                "f:data": {"f:k": {}},
                "f:metadata": {
                    "f:annotations": {"f:a": {}},
                    "f:finalizers": {"v:\"example.com/f\"": {}},
                    "f:ownerReferences": {"k:{\"uid\":\"123\"}": {
                        ".": {}, "f:apiVersion": {}, "f:kind": {}, "f:name": {}, "f:uid": {}}}
                }
            }))
        );
        // Another manager adds a finalizer: union; dropping ours removes only ours.
        let cfg_b = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "finalizers": ["example.com/g"]}});
        let out = apply(Some(&out), &cfg_b, "b", false, None, "v1", T1, None)
            .unwrap()
            .object;
        assert_eq!(
            out["metadata"]["finalizers"],
            json!(["example.com/f", "example.com/g"])
        );
        let mut cfg_a = cfg.clone();
        cfg_a["metadata"]["finalizers"] = json!([]);
        let out = apply(Some(&out), &cfg_a, "a", false, None, "v1", T2, None)
            .unwrap()
            .object;
        assert_eq!(out["metadata"]["finalizers"], json!(["example.com/g"]));
        // Untracked metadata keeps its live value.
        assert_eq!(out["metadata"]["uid"], "u-ignored");
        let mut renamed = cfg_a.clone();
        renamed["metadata"]["uid"] = json!("other");
        let out2 = apply(Some(&out), &renamed, "a", false, None, "v1", T2, None)
            .unwrap()
            .object;
        assert_eq!(out2, out);
    }

    #[test]
    fn malformed_managed_fields_are_ignored() {
        let s = schema();
        let mut live = widget(json!({"size": 1}));
        live["metadata"]["managedFields"] = json!([
            42,
            {"manager": 1, "operation": "Apply"},
            {"manager": "x", "operation": "Bogus", "fieldsV1": {"f:spec": {"f:size": {}}}},
            {"manager": "y", "operation": "Apply", "fieldsV1": "nope"},
            {"manager": "z", "operation": "Apply", "fieldsType": "FieldsV2",
             "fieldsV1": {"f:spec": {"f:size": {}}}},
            {"manager": "w", "operation": "Update", "apiVersion": "v1",
             "fieldsV1": {"f:spec": {"f:size": null, "k:{\"name\": \"a\"}": 7}}}
        ]);
        let err = apply(
            Some(&live),
            &widget(json!({"size": 2})),
            "a",
            false,
            Some(&s),
            V,
            T0,
            None,
        )
        .unwrap_err();
        assert_eq!(err, vec![conflict("w", ".spec.size")]);
        let out = apply(
            Some(&live),
            &widget(json!({"size": 2})),
            "a",
            true,
            Some(&s),
            V,
            T0,
            None,
        )
        .unwrap()
        .object;
        assert_eq!(
            managers(&out),
            vec![
                ("a".to_string(), "Apply".to_string()),
                ("w".to_string(), "Update".to_string())
            ]
        );
        // The non-canonical key spelling was normalized.
        assert_eq!(
            fields(&out, "w", "Update"),
            Some(json!({"f:spec": {"k:{\"name\":\"a\"}": {}}}))
        );
        // Garbage instead of a list.
        live["metadata"]["managedFields"] = json!("garbage");
        assert!(
            apply(
                Some(&live),
                &widget(json!({"size": 2})),
                "a",
                false,
                Some(&s),
                V,
                T0,
                None
            )
            .is_ok()
        );
    }

    #[test]
    fn numbers_compare_by_value() {
        let s = schema();
        let live = run(vec![Op::Update("ed", json!({"size": 1.0}))], Some(&s)).unwrap();
        assert!(
            apply(
                Some(&live),
                &widget(json!({"size": 1})),
                "a",
                false,
                Some(&s),
                V,
                T1,
                None
            )
            .is_ok()
        );
    }

    #[test]
    fn format_paths() {
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (vec!["f:spec", "f:size"], ".spec.size"),
            (
                vec![
                    "f:spec",
                    "f:ports",
                    "k:{\"port\":80,\"protocol\":\"TCP\"}",
                    "f:name",
                ],
                ".spec.ports[port=80,protocol=\"TCP\"].name",
            ),
            (
                vec!["f:metadata", "f:finalizers", "v:\"a/b\""],
                ".metadata.finalizers[=\"a/b\"]",
            ),
            (
                vec!["f:metadata", "f:labels", "f:app.kubernetes.io/name"],
                ".metadata.labels.app.kubernetes.io/name",
            ),
            (vec!["f:x", "i:3"], ".x[3]"),
        ];
        for (path, want) in cases {
            let path: Vec<String> = path.into_iter().map(String::from).collect();
            assert_eq!(format_path(&path), want);
        }
    }

    #[test]
    fn strategic_merge_markers_are_understood() {
        let s = json!({"properties": {"spec": {"properties": {
            "containers": {"type": "array", "x-kubernetes-patch-strategy": "merge",
                           "x-kubernetes-patch-merge-key": "name",
                           "items": {"type": "object"}},
            "finalizers": {"type": "array", "x-kubernetes-patch-strategy": "merge"}}}}});
        let out = apply(
            None,
            &widget(json!({"containers": [{"name": "c"}], "finalizers": ["f"]})),
            "a",
            false,
            Some(&s),
            V,
            T0,
            None,
        )
        .unwrap()
        .object;
        assert_eq!(
            fields(&out, "a", "Apply"),
            Some(json!({"f:spec": {
                "f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:name": {}}},
                "f:finalizers": {"v:\"f\"": {}}}}))
        );
    }

    #[test]
    fn field_set_operations() {
        let p = |xs: &[&str]| -> Vec<String> { xs.iter().map(|x| x.to_string()).collect() };
        let mut a = FieldSet::default();
        a.insert(&p(&["f:spec", "f:a"]));
        a.insert(&p(&["f:spec", "f:b"]));
        a.insert(&p(&["f:spec"]));
        let mut b = FieldSet::default();
        b.insert(&p(&["f:spec", "f:b"]));
        assert_eq!(a.intersection(&b), b);
        let mut c = a.clone();
        c.subtract(&b);
        assert_eq!(c.to_fields_v1(), json!({"f:spec": {".": {}, "f:a": {}}}));
        let back = FieldSet::from_fields_v1(c.to_fields_v1().as_object().unwrap());
        assert_eq!(back, c);
        c.union_with(&b);
        assert_eq!(c, a);
        assert_eq!(
            a.members(),
            vec![p(&["f:spec"]), p(&["f:spec", "f:a"]), p(&["f:spec", "f:b"])]
        );
    }

    // -----------------------------------------------------------------------
    // Deterministic fuzzing
    // -----------------------------------------------------------------------

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
        fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
            &xs[self.below(xs.len())]
        }
        fn subset(&mut self, xs: &[&str]) -> Vec<String> {
            let mut out: Vec<String> = xs
                .iter()
                .filter(|_| self.chance(50))
                .map(|x| x.to_string())
                .collect();
            // shuffle
            for i in (1..out.len()).rev() {
                let j = self.below(i + 1);
                out.swap(i, j);
            }
            out
        }
    }

    fn random_scalar(rng: &mut Rng) -> Value {
        match rng.below(6) {
            0 => json!(rng.below(3)),
            1 => json!(*rng.pick(&["a", "b", "c"])),
            2 => json!(rng.chance(50)),
            3 => Value::Null,
            4 => json!(1.5),
            _ => json!(-1),
        }
    }

    fn random_value(rng: &mut Rng, depth: usize) -> Value {
        if depth == 0 || rng.chance(40) {
            return random_scalar(rng);
        }
        if rng.chance(50) {
            let mut m = Map::new();
            for _ in 0..rng.below(3) {
                m.insert(
                    rng.pick(&["k", "l", "m"]).to_string(),
                    random_value(rng, depth - 1),
                );
            }
            Value::Object(m)
        } else {
            Value::Array(
                (0..rng.below(3))
                    .map(|_| random_value(rng, depth - 1))
                    .collect(),
            )
        }
    }

    fn random_spec(rng: &mut Rng) -> Value {
        let mut spec = Map::new();
        if rng.chance(50) {
            spec.insert("size".into(), json!(rng.below(3)));
        }
        if rng.chance(40) {
            spec.insert("color".into(), json!(*rng.pick(&["red", "blue"])));
        }
        if rng.chance(50) {
            let mut items = Vec::new();
            for name in rng.subset(&["a", "b", "c"]) {
                let mut c = Map::new();
                c.insert("name".into(), json!(name));
                if rng.chance(60) {
                    c.insert("image".into(), json!(*rng.pick(&["i1", "i2"])));
                }
                if rng.chance(30) {
                    c.insert("args".into(), json!(rng.subset(&["x", "y"])));
                }
                items.push(Value::Object(c));
            }
            if rng.chance(5) && !items.is_empty() {
                // duplicate key
                let dup = items[0].clone();
                items.push(dup);
            }
            if rng.chance(5) {
                items.push(json!({"image": "no-name"}));
            }
            spec.insert("containers".into(), Value::Array(items));
        }
        if rng.chance(40) {
            let mut ports = Vec::new();
            for (port, proto) in [(80, "TCP"), (80, "UDP"), (443, "TCP")] {
                if rng.chance(50) {
                    let mut p = json!({"port": port, "protocol": proto});
                    if rng.chance(50) {
                        p["name"] = json!(*rng.pick(&["http", "web"]));
                    }
                    ports.push(p);
                }
            }
            spec.insert("ports".into(), Value::Array(ports));
        }
        if rng.chance(40) {
            let mut tags: Vec<Value> = rng
                .subset(&["x", "y", "z"])
                .into_iter()
                .map(Value::from)
                .collect();
            if rng.chance(10) {
                tags.push(json!("x"));
            }
            spec.insert("tags".into(), Value::Array(tags));
        }
        if rng.chance(30) {
            spec.insert("args".into(), json!(rng.subset(&["1", "2", "3"])));
        }
        if rng.chance(30) {
            spec.insert(
                "selector".into(),
                json!({"matchLabels": {*rng.pick(&["a", "b"]): *rng.pick(&["1", "2"])}}),
            );
        }
        if rng.chance(30) {
            let mut params = Map::new();
            for k in rng.subset(&["p", "q"]) {
                params.insert(k, json!(*rng.pick(&["1", "2"])));
            }
            spec.insert("params".into(), Value::Object(params));
        }
        if rng.chance(30) {
            let mut t = Map::new();
            if rng.chance(50) {
                t.insert("replicas".into(), json!(rng.below(3)));
            }
            if rng.chance(50) {
                t.insert("mode".into(), json!(*rng.pick(&["m", "n"])));
            }
            spec.insert("template".into(), Value::Object(t));
        }
        if rng.chance(30) {
            spec.insert("extra".into(), random_value(rng, 3));
        }
        if rng.chance(5) {
            // shape mismatches
            let key = *rng.pick(&["containers", "tags", "template", "params", "size"]);
            spec.insert(key.into(), random_value(rng, 2));
        }
        Value::Object(spec)
    }

    fn random_config(rng: &mut Rng) -> Value {
        let mut meta = json!({"name": "w"});
        if rng.chance(40) {
            let mut labels = Map::new();
            for k in rng.subset(&["app", "tier"]) {
                labels.insert(k, json!(*rng.pick(&["x", "y"])));
            }
            meta["labels"] = Value::Object(labels);
        }
        if rng.chance(20) {
            meta["finalizers"] = json!(rng.subset(&["f/1", "f/2"]));
        }
        let mut cfg = json!({"apiVersion": V, "kind": "Widget", "metadata": meta});
        if rng.chance(90) {
            cfg["spec"] = random_spec(rng);
        }
        if rng.chance(10) {
            cfg["status"] = json!({"phase": *rng.pick(&["A", "B"])});
        }
        cfg
    }

    fn random_edit(rng: &mut Rng, live: &Value) -> Value {
        let mut new = live.clone();
        if !new["spec"].is_object() {
            new["spec"] = json!({});
        }
        match rng.below(7) {
            0 => new["spec"]["size"] = json!(rng.below(4)),
            1 => {
                if let Some(spec) = new["spec"].as_object_mut() {
                    spec.remove(*rng.pick(&["color", "size", "containers", "tags", "extra"]));
                }
            }
            2 => {
                if let Some(items) = new["spec"]["containers"].as_array_mut() {
                    if !items.is_empty() && rng.chance(50) {
                        let i = rng.below(items.len());
                        items.remove(i);
                    } else {
                        items.push(json!({"name": *rng.pick(&["a", "d"]), "image": "e"}));
                    }
                } else {
                    new["spec"]["containers"] = json!([{"name": "e"}]);
                }
            }
            3 => new["metadata"]["labels"] = json!({"app": *rng.pick(&["x", "z"])}),
            4 => new["spec"]["color"] = json!(*rng.pick(&["red", "green"])),
            5 => new["status"] = json!({"ready": rng.chance(50)}),
            _ => new["spec"]["extra"] = random_value(rng, 3),
        }
        new
    }

    /// Whether `path` leads somewhere in `v`.
    fn path_exists(v: &Value, ctx: Ctx, path: &[String]) -> bool {
        let Some((pe, rest)) = path.split_first() else {
            return true;
        };
        if let Some(key) = pe.strip_prefix("f:") {
            return match (v.as_object().and_then(|m| m.get(key)), ctx.field(key)) {
                (Some(child), Some((child_ctx, _))) => path_exists(child, child_ctx, rest),
                _ => false,
            };
        }
        let sh = shape(v, ctx);
        let Value::Array(items) = v else {
            return false;
        };
        matches!(sh, Shape::Assoc(_) | Shape::Set)
            && items
                .iter()
                .any(|i| item_path_element(i, &sh) == *pe && path_exists(i, ctx.item(), rest))
    }

    /// managedFields are well formed and only name fields that exist.
    fn check_managed_fields(obj: &Value, schema: Option<&Value>) {
        if let Some(list) = obj.pointer("/metadata/managedFields") {
            let list = list.as_array().expect("managedFields is a list");
            assert!(!list.is_empty());
            for e in list {
                let f = e["fieldsV1"].as_object().expect("fieldsV1 object");
                assert!(!f.is_empty(), "empty entry kept: {e}");
            }
        }
        for e in read_entries(obj) {
            for p in e.set.members() {
                assert!(
                    path_exists(obj, Ctx::Root(schema), &p),
                    "{} owns missing {}: {obj}",
                    e.manager,
                    format_path(&p)
                );
            }
        }
    }

    #[test]
    fn fuzz_apply_idempotent_and_panic_free() {
        let s = schema();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut applies = 0;
        let mut conflicts_seen = 0;
        for round in 0..300 {
            let schema = if round % 3 == 0 { None } else { Some(&s) };
            let mut live: Option<Value> = None;
            for step in 0..12 {
                let now = format!("2024-01-01T00:{round:02}:{step:02}Z");
                let later = format!("2024-02-01T00:{round:02}:{step:02}Z");
                if live.is_none() || rng.chance(70) {
                    let manager = *rng.pick(&["a", "b", "c"]);
                    let force = rng.chance(50);
                    let sub = if rng.chance(10) { Some("status") } else { None };
                    let cfg = random_config(&mut rng);
                    match apply(live.as_ref(), &cfg, manager, force, schema, V, &now, sub) {
                        Ok(first) => {
                            applies += 1;
                            let first = first.object;
                            check_managed_fields(&first, schema);
                            let again =
                                apply(Some(&first), &cfg, manager, force, schema, V, &later, sub)
                                    .unwrap_or_else(|c| {
                                        panic!("re-apply conflicted: {c:?}\n{cfg}\n{first}")
                                    })
                                    .object;
                            assert_eq!(
                                strip_times(&again),
                                strip_times(&first),
                                "not idempotent: {cfg}"
                            );
                            // The applier owns exactly what it applied.
                            let mut want = FieldSet::default();
                            collect_owned(&cfg, Ctx::Root(schema), &mut Vec::new(), &mut want);
                            let got = read_entries(&first)
                                .into_iter()
                                .find(|e| e.is(manager, true, sub.unwrap_or("")))
                                .map(|e| e.set)
                                .unwrap_or_default();
                            assert_eq!(got, want, "owned set: {cfg}");
                            live = Some(first);
                        }
                        Err(c) => {
                            conflicts_seen += 1;
                            assert!(!force && !c.is_empty());
                            let msg = conflict_message(&c, live.as_ref().unwrap_or(&Value::Null));
                            assert!(msg.starts_with("Apply failed with"), "{msg}");
                        }
                    }
                } else if let Some(cur) = &live {
                    let new = random_edit(&mut rng, cur);
                    let out = record_update(Some(cur), &new, "editor", schema, V, &now, None);
                    check_managed_fields(&out, schema);
                    assert_eq!(strip_managed(&out), strip_managed(&new));
                    let same = record_update(Some(&out), &out, "x", schema, V, &later, None);
                    assert_eq!(same, out);
                    live = Some(out);
                }
            }
        }
        assert!(applies > 1000, "{applies}");
        assert!(conflicts_seen > 50, "{conflicts_seen}");
    }

    #[test]
    fn fuzz_garbage_never_panics() {
        let mut rng = Rng(0xDEAD_BEEF_1234_5678);
        let schemas = [
            json!({"properties": {"spec": {"x-kubernetes-list-type": "map",
                                           "x-kubernetes-list-map-keys": ["k"],
                                           "x-kubernetes-map-type": "atomic"}}}),
            json!({"properties": {"spec": {"properties": {"k": {
                "x-kubernetes-list-type": "set", "items": 5}}}}}),
            json!("not a schema"),
            json!({"properties": {"spec": {"additionalProperties": {
                "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": "k"}}}}),
        ];
        for _ in 0..2000 {
            let mut live = random_value(&mut rng, 4);
            if rng.chance(70) {
                live = json!({"metadata": {"managedFields": random_value(&mut rng, 4),
                                           "labels": random_value(&mut rng, 2),
                                           "finalizers": random_value(&mut rng, 2),
                                           "ownerReferences": random_value(&mut rng, 2)},
                              "spec": random_value(&mut rng, 4)});
            }
            if rng.chance(30) && live.is_object() {
                live["metadata"]["managedFields"] = json!([{
                    "manager": "g", "operation": "Update",
                    "fieldsV1": {"f:spec": random_value(&mut rng, 3),
                                 "k:{bad": {}, "v:[": {".": {}}, "f:metadata": {".": {}}}}]);
            }
            let mut cfg = random_value(&mut rng, 4);
            if rng.chance(70) {
                cfg = json!({"metadata": {"labels": random_value(&mut rng, 2),
                                          "finalizers": random_value(&mut rng, 2)},
                             "spec": random_value(&mut rng, 4)});
            }
            let schema = if rng.chance(30) {
                None
            } else {
                Some(rng.pick(&schemas))
            };
            let force = rng.chance(50);
            let r = apply(Some(&live), &cfg, "m", force, schema, V, T0, None);
            if let Err(c) = &r {
                let _ = conflict_message(c, &live);
            }
            let _ = apply(None, &cfg, "m", force, schema, V, T0, None);
            let _ = record_update(Some(&live), &cfg, "m", schema, V, T0, None);
            let _ = record_update(None, &live, "m", schema, V, T0, Some("status"));
            let _ = conflict_message(&[conflict("g", ".spec")], &live);
        }
    }
}
