//! Field sets: the paths a manager owns, as a tree whose path elements are stored in their
//! `FieldsV1` spelling (`f:<field>`, `k:<json of the key fields>`, `v:<json value>`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::{gofmt, json};

/// A path from the object root, one `FieldsV1` path element per step.
pub(super) type Path = Vec<String>;

/// A set of field paths, stored as a tree. A node is in the set when
/// `member` is true; `children` lead to deeper paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct FieldSet {
    pub(super) member: bool,
    pub(super) children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    pub(super) fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    pub(super) fn insert(&mut self, path: &[String]) {
        let mut node = self;
        for pe in path {
            node = node.child(pe);
        }
        node.member = true;
    }

    /// The child at `pe`, added if missing (the key is copied only then).
    fn child(&mut self, pe: &str) -> &mut FieldSet {
        if !self.children.contains_key(pe) {
            self.children.insert(pe.to_owned(), FieldSet::default());
        }
        self.children.get_mut(pe).expect("present: added above")
    }

    /// Adds `child` at `pe`: moved in, or merged with what two spellings of one element
    /// already put there.
    fn add_child(&mut self, pe: String, child: FieldSet) {
        match self.children.entry(pe) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(child);
            }
            std::collections::btree_map::Entry::Occupied(mut slot) => {
                slot.get_mut().union_with(&child);
            }
        }
    }

    pub(super) fn union_with(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (pe, child) in &other.children {
            self.child(pe).union_with(child);
        }
    }

    /// Removes the members of `other` (exact paths, not subtrees).
    pub(super) fn subtract(&mut self, other: &FieldSet) {
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

    pub(super) fn intersection(&self, other: &FieldSet) -> FieldSet {
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
    pub(super) fn has_member_below(&self) -> bool {
        self.children
            .values()
            .any(|c| c.member || c.has_member_below())
    }

    /// All member paths, depth first (a node before its children).
    pub(super) fn members(&self) -> Vec<Path> {
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
    pub(super) fn to_fields_v1(&self) -> Value {
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
    pub(super) fn from_fields_v1(fields: &Map<String, Value>) -> FieldSet {
        fn node(v: &Value) -> FieldSet {
            let mut set = FieldSet::default();
            match v {
                Value::Object(m) if !m.is_empty() => {
                    for (k, child) in m {
                        if k == "." {
                            set.member = true;
                        } else {
                            set.add_child(normalize_path_element(k), node(child));
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
                set.add_child(normalize_path_element(k), node(child));
            }
        }
        set
    }
}

/// Re-encodes the JSON of `k:` and `v:` path elements canonically (sorted
/// keys, no spaces) so that equal elements compare equal.
pub(super) fn normalize_path_element(pe: &str) -> String {
    if let Some(rest) = pe.strip_prefix("k:")
        && let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(rest)
    {
        return format!("k:{}", json::canonical(&v));
    }
    if let Some(rest) = pe.strip_prefix("v:")
        && let Ok(v) = serde_json::from_str::<Value>(rest)
    {
        return format!("v:{}", json::canonical(&v));
    }
    pe.to_string()
}

/// Kubernetes' dotted rendering of a path (`.spec.ports[port=80].name`).
pub(super) fn format_path(path: &[String]) -> String {
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
pub(super) fn go_string(v: &Value) -> String {
    match v {
        Value::String(s) => gofmt::quote(s),
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
