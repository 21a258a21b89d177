//! What history answers, computed from versions of objects: the JSON Patch between two
//! versions, who set each field's current value, and how a set of objects changed between two
//! instants. Pure functions over `serde_json::Value`s.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

/// One version of an object as `GET …/NAME/history` lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct Version {
    pub revision: i64,
    pub time: Option<String>,
    pub user: Option<String>,
    pub impersonated_by: Option<String>,
    pub operation: String,
    /// `None` for a deletion.
    pub object: Option<Value>,
}

impl Version {
    /// Reads the items of an `ObjectHistory` answer (oldest first).
    pub fn parse_list(answer: &Value) -> Vec<Version> {
        answer["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|item| Version {
                revision: item["revision"].as_i64().unwrap_or_default(),
                time: item["time"].as_str().map(str::to_owned),
                user: item["user"].as_str().map(str::to_owned),
                impersonated_by: item["impersonatedBy"].as_str().map(str::to_owned),
                operation: item["operation"].as_str().unwrap_or("unknown").to_owned(),
                object: item["object"].is_object().then(|| item["object"].clone()),
            })
            .collect()
    }

    /// The user as history shows it: `alice`, or `alice (by bob)` when `bob` impersonated her.
    pub fn who(&self) -> String {
        let user = self.user.as_deref().unwrap_or("unknown");
        match &self.impersonated_by {
            Some(by) => format!("{user} (by {by})"),
            None => user.to_owned(),
        }
    }
}

/// An object without what changes on every write and says nothing about it: its
/// `resourceVersion` and `managedFields`.
pub fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
        metadata.remove("managedFields");
    }
    object
}

/// The RFC 6902 JSON Patch from one version to the next (`None`: the object did not exist).
pub fn patch(previous: Option<&Value>, next: Option<&Value>) -> Value {
    match (previous, next) {
        (Some(previous), Some(next)) => {
            serde_json::to_value(json_patch::diff(&comparable(previous), &comparable(next)))
                .unwrap_or_else(|_| json!([]))
        }
        (None, Some(next)) => json!([{"op": "add", "path": "", "value": comparable(next)}]),
        (Some(_), None) => json!([{"op": "remove", "path": ""}]),
        (None, None) => json!([]),
    }
}

/// One change in `fleetdb history`'s JSON output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    pub revision: i64,
    pub time: Option<String>,
    pub user: String,
    pub operation: String,
    pub patch: Value,
}

/// Each version's change from the one before it, oldest first. The oldest version's patch
/// is from nothing (history may start after the object was created, when older changes
/// have left retention).
pub fn changes(versions: &[Version]) -> Vec<Change> {
    let mut previous: Option<&Value> = None;
    versions
        .iter()
        .map(|version| {
            let change = Change {
                revision: version.revision,
                time: version.time.clone(),
                user: version.who(),
                operation: version.operation.clone(),
                patch: patch(previous, version.object.as_ref()),
            };
            previous = version.object.as_ref();
            change
        })
        .collect()
}

/// The fields a patch touches, as paths (`spec.role`, `metadata.labels.team`).
pub fn touched(patch: &Value) -> Vec<String> {
    patch
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|op| op["path"].as_str())
        .map(|pointer| {
            let tokens: Vec<String> = pointer
                .split('/')
                .skip(1)
                .map(|t| t.replace("~1", "/").replace("~0", "~"))
                .collect();
            if tokens.is_empty() {
                "(whole object)".to_owned()
            } else {
                display_path(
                    &tokens
                        .iter()
                        .map(|t| Token::Key(t.clone()))
                        .collect::<Vec<_>>(),
                )
            }
        })
        .collect()
}

/// Who set a field's current value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Blame {
    pub user: String,
    pub time: Option<String>,
    pub revision: i64,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Key(String),
    Index(usize),
}

/// For every leaf of the newest version (objects and arrays are walked; `resourceVersion` and
/// `managedFields` left out), the version from which its value has been what it is now: the
/// oldest of the newest run of versions holding that value. `None` when the newest version
/// is a deletion or there is none.
pub fn blame(versions: &[Version]) -> Option<BTreeMap<String, Blame>> {
    let current = comparable(versions.last()?.object.as_ref()?);
    let mut leaves = Vec::new();
    collect_leaves(&current, &mut Vec::new(), &mut leaves);
    let older: Vec<(&Version, Value)> = versions
        .iter()
        .rev()
        .map_while(|v| v.object.as_ref().map(|o| (v, comparable(o))))
        .collect();
    let mut answer = BTreeMap::new();
    for (path, value) in leaves {
        let mut setter = older[0].0;
        for (version, object) in &older[1..] {
            if lookup(object, &path) == Some(value) {
                setter = version;
            } else {
                break;
            }
        }
        answer.insert(
            display_path(&path),
            Blame {
                user: setter.who(),
                time: setter.time.clone(),
                revision: setter.revision,
            },
        );
    }
    Some(answer)
}

fn collect_leaves<'a>(
    value: &'a Value,
    path: &mut Vec<Token>,
    out: &mut Vec<(Vec<Token>, &'a Value)>,
) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                path.push(Token::Key(key.clone()));
                collect_leaves(child, path, out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (index, child) in items.iter().enumerate() {
                path.push(Token::Index(index));
                collect_leaves(child, path, out);
                path.pop();
            }
        }
        leaf => out.push((path.clone(), leaf)),
    }
}

fn lookup<'a>(value: &'a Value, path: &[Token]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, token| match token {
        Token::Key(key) => value.as_object()?.get(key),
        Token::Index(index) => value.as_array()?.get(*index),
    })
}

/// `spec.role`, `metadata.labels["app.kubernetes.io/name"]`, `spec.runs[0].id`.
fn display_path(path: &[Token]) -> String {
    let mut out = String::new();
    for token in path {
        match token {
            Token::Index(index) => out.push_str(&format!("[{index}]")),
            Token::Key(key) if is_plain_key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Token::Key(key) => {
                out.push_str(&format!("[{}]", Value::String(key.clone())));
            }
        }
    }
    out
}

fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// How a set of objects changed between two instants (`fleetdb diff`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FleetDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<Changed>,
}

/// An object present at both instants and different.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Changed {
    pub name: String,
    pub patch: Value,
}

/// An object's name as `diff` reports it: `name`, or `namespace/name`.
pub fn object_name(object: &Value) -> String {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    match object["metadata"]["namespace"].as_str() {
        Some(namespace) if !namespace.is_empty() => format!("{namespace}/{name}"),
        _ => name.to_owned(),
    }
}

/// Compares two lists of objects by name. Names are sorted; an object deleted and created
/// again in between counts as changed.
pub fn fleet_diff(from: &[Value], to: &[Value]) -> FleetDiff {
    let before: BTreeMap<String, &Value> = from.iter().map(|o| (object_name(o), o)).collect();
    let after: BTreeMap<String, &Value> = to.iter().map(|o| (object_name(o), o)).collect();
    let mut diff = FleetDiff::default();
    for (name, object) in &after {
        match before.get(name) {
            None => diff.added.push(name.clone()),
            Some(old) => {
                let patch = patch(Some(old), Some(object));
                if patch.as_array().is_some_and(|ops| !ops.is_empty()) {
                    diff.changed.push(Changed {
                        name: name.clone(),
                        patch,
                    });
                }
            }
        }
    }
    diff.removed = before
        .keys()
        .filter(|name| !after.contains_key(*name))
        .cloned()
        .collect();
    diff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(revision: i64, user: &str, object: Option<Value>) -> Version {
        Version {
            revision,
            time: Some(format!("2026-12-01T00:00:{revision:02}.000Z")),
            user: Some(user.into()),
            impersonated_by: None,
            operation: "patch".into(),
            object,
        }
    }

    fn host(rv: &str, role: &str, team: &str) -> Value {
        json!({"metadata": {"name": "web-1", "resourceVersion": rv,
            "labels": {"team": team, "app.kubernetes.io/name": "web"},
            "managedFields": [{"manager": rv}]},
            "spec": {"role": role, "runs": [{"id": "a"}]}})
    }

    #[test]
    fn patches_leave_out_what_every_write_changes() {
        let changes = changes(&[
            version(1, "alice", Some(host("1", "web", "blue"))),
            version(2, "bob", Some(host("2", "db", "blue"))),
            version(3, "carol", None),
        ]);
        assert_eq!(changes[0].patch[0]["op"], "add");
        assert!(
            changes[0].patch[0]["value"]["metadata"]
                .get("resourceVersion")
                .is_none()
        );
        assert_eq!(
            changes[1].patch,
            json!([{"op": "replace", "path": "/spec/role", "value": "db"}])
        );
        assert_eq!(changes[2].patch, json!([{"op": "remove", "path": ""}]));
        assert_eq!(touched(&changes[1].patch), vec!["spec.role"]);
    }

    #[test]
    fn blame_names_who_set_each_current_value() {
        let versions = [
            version(1, "alice", Some(host("1", "web", "blue"))),
            version(2, "bob", Some(host("2", "db", "blue"))),
            version(3, "carol", Some(host("3", "db", "green"))),
            version(4, "dave", Some(host("4", "db", "green"))),
        ];
        let who = blame(&versions).unwrap();
        assert_eq!(who["spec.role"].user, "bob");
        assert_eq!(who["spec.role"].revision, 2);
        assert_eq!(who["metadata.labels.team"].user, "carol");
        assert_eq!(who["metadata.name"].user, "alice");
        assert_eq!(
            who["metadata.labels[\"app.kubernetes.io/name\"]"].user,
            "alice"
        );
        assert_eq!(who["spec.runs[0].id"].revision, 1);
        assert!(
            !who.keys()
                .any(|k| k.contains("managedFields") || k.contains("resourceVersion"))
        );
        // A recreated object's fields date from its re-creation.
        let recreated = [
            version(1, "alice", Some(host("1", "web", "blue"))),
            version(2, "bob", None),
            version(3, "carol", Some(host("3", "web", "blue"))),
        ];
        assert_eq!(blame(&recreated).unwrap()["spec.role"].user, "carol");
        assert_eq!(blame(&recreated[..2]), None);
    }

    #[test]
    fn fleet_diff_sorts_added_removed_and_changed() {
        let from = vec![
            host("1", "web", "blue"),
            json!({"metadata": {"name": "gone"}}),
        ];
        let mut renamed = host("5", "web", "blue");
        renamed["metadata"]["name"] = json!("new");
        let to = vec![host("9", "db", "blue"), renamed];
        let diff = fleet_diff(&from, &to);
        assert_eq!(diff.added, vec!["new"]);
        assert_eq!(diff.removed, vec!["gone"]);
        assert_eq!(diff.changed.len(), 1);
        assert_eq!(diff.changed[0].name, "web-1");
        assert_eq!(
            diff.changed[0].patch,
            json!([{"op": "replace", "path": "/spec/role", "value": "db"}])
        );
        let same = fleet_diff(&from, &from);
        assert_eq!(same, FleetDiff::default());
    }
}
