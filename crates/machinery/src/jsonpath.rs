//! The simple JSONPath forms CRDs use for printer columns and the scale subresource:
//! `.a.b`, `.a[0].b`, `.a[?(@.type=="Ready")].status`, optionally in braces.
//!
//! A [`Path`] is compiled once (a CRD version's printer columns are compiled when the
//! catalog is built) and evaluated on decoded objects. A [`Projection`] of several paths
//! decodes from an object's JSON only what those paths can reach, so a Table row is built
//! from stored bytes without a `Value` tree of the whole object.

use std::collections::BTreeMap;
use std::fmt;

use serde::de;
use serde_json::{Map, Value, json};

use crate::jsonscan;

/// One step of a compiled path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
    /// `[?(@.field=="value")]`: the first array item whose `field` is the string `value`.
    Filter {
        field: String,
        value: String,
    },
}

/// A compiled JSONPath. One that does not parse selects nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    source: String,
    steps: Option<Vec<Step>>,
}

impl Path {
    pub fn parse(source: &str) -> Self {
        Self {
            source: source.to_owned(),
            steps: steps(source),
        }
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The value at this path in `object`, if there is one.
    pub fn get<'a>(&self, object: &'a Value) -> Option<&'a Value> {
        let mut current = object;
        for step in self.steps.as_ref()? {
            current = match step {
                Step::Field(name) => current.get(name)?,
                Step::Index(i) => current.get(*i)?,
                Step::Filter { field, value } => current
                    .as_array()?
                    .iter()
                    .find(|item| item[field.as_str()].as_str() == Some(value))?,
            };
        }
        Some(current)
    }

    /// The leading field names of the path: what a [`Projection`] descends through before
    /// it keeps a whole value (the end of the path, or the array an index or filter reads).
    fn fields(&self) -> Option<Vec<&str>> {
        let steps = self.steps.as_ref()?;
        Some(
            steps
                .iter()
                .map_while(|step| match step {
                    Step::Field(name) => Some(name.as_str()),
                    _ => None,
                })
                .collect(),
        )
    }
}

impl From<&str> for Path {
    fn from(source: &str) -> Self {
        Self::parse(source)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn steps(path: &str) -> Option<Vec<Step>> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let mut steps = Vec::new();
    let mut rest = path.strip_prefix('.').unwrap_or(path);
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inside = &after[..end];
            rest = &after[end + 1..];
            steps.push(
                if let Some(filter) = inside
                    .strip_prefix("?(@.")
                    .and_then(|f| f.strip_suffix(')'))
                {
                    let (field, wanted) = filter.split_once("==")?;
                    let wanted = wanted.trim().trim_matches('"').trim_matches('\'');
                    Step::Filter {
                        field: field.trim().to_owned(),
                        value: wanted.to_owned(),
                    }
                } else {
                    Step::Index(inside.parse::<usize>().ok()?)
                },
            );
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            steps.push(Step::Field(rest[..end].to_owned()));
            rest = &rest[end..];
        }
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    Some(steps)
}

/// The value at `path` in `object`, if there is one (compiles `path` each call: use a
/// [`Path`] for repeated use).
pub fn get<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    Path::parse(path).get(object)
}

/// What a [`Projection`] keeps below one field: all of it, or some of its fields.
#[derive(Clone, Debug, Default)]
struct Node {
    whole: bool,
    children: BTreeMap<String, Node>,
}

/// The parts of objects that a set of paths can reach. [`Projection::decode`] reads an
/// object's JSON into a `Value` holding only those parts, on which each of the paths finds
/// what it finds on the whole object.
#[derive(Clone, Debug, Default)]
pub struct Projection {
    root: Node,
}

impl Projection {
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Self {
        let mut root = Node::default();
        for path in paths {
            let Some(fields) = path.fields() else {
                continue;
            };
            if fields.is_empty() {
                // `.` or a path that starts with an index: the whole object.
                root.whole = true;
                continue;
            }
            let mut node = &mut root;
            for field in fields {
                node = node.children.entry(field.to_owned()).or_default();
            }
            node.whole = true;
        }
        Self { root }
    }

    /// Decodes the projected parts of `json` (an object's JSON text).
    pub fn decode(&self, json: &[u8]) -> serde_json::Result<Value> {
        Ok(self.decode_keeping(json, None)?.0)
    }

    /// [`Projection::decode`], also returning the text of the top-level field `raw` (as
    /// written, borrowed from `json`) when the object has it. The whole text is validated
    /// (by [`jsonscan`], which passes over what no path reaches without decoding it); only
    /// objects are projected, unless a path takes the whole object.
    pub fn decode_keeping<'j>(
        &self,
        json: &'j [u8],
        raw: Option<&str>,
    ) -> serde_json::Result<(Value, Option<&'j str>)> {
        if self.root.whole && raw.is_none() {
            return serde_json::from_slice(json).map(|value| (value, None));
        }
        let text = std::str::from_utf8(json).map_err(de::Error::custom)?;
        let open = jsonscan::after_space(text, 0);
        if !text[open..].starts_with('{') {
            return Err(de::Error::custom("expected a JSON object"));
        }
        let mut out = Map::new();
        let mut kept = None;
        let end = jsonscan::read_object(text, open, 0, |key, at| {
            let child = if self.root.whole {
                Some(&WHOLE)
            } else {
                self.root.children.get(&*key)
            };
            let end = match child {
                Some(child) => {
                    let (value, end) = project(child, text, at, 1)?;
                    out.insert(key.to_string(), value);
                    end
                }
                None => jsonscan::skip(text, at, 1)?,
            };
            if raw == Some(&*key) {
                kept = Some(&text[at..end]);
            }
            Ok(end)
        })
        .map_err(de::Error::custom)?;
        if jsonscan::after_space(text, end) != text.len() {
            return Err(de::Error::custom("trailing characters after the object"));
        }
        Ok((Value::Object(out), kept))
    }
}

/// A node that keeps everything below it.
static WHOLE: Node = Node {
    whole: true,
    children: BTreeMap::new(),
};

/// What `node` keeps of the value at `at` (`depth` levels deep), and where the value ends:
/// the whole value, or of an object the fields the node projects. Arrays below a partial
/// node are kept empty (no field step reaches their items); other values are kept whole.
fn project(
    node: &Node,
    text: &str,
    at: usize,
    depth: usize,
) -> Result<(Value, usize), jsonscan::ScanError> {
    let bytes = text.as_bytes();
    if node.whole || !matches!(bytes.get(at), Some(b'{' | b'[')) {
        let end = jsonscan::skip(text, at, depth)?;
        // Valid JSON; serde still refuses lone surrogate escapes and numbers beyond f64.
        let value = serde_json::from_str(&text[at..end]).map_err(|_| jsonscan::ScanError {
            at,
            reason: "a value that does not decode (a lone surrogate, a number out of range)",
        })?;
        return Ok((value, end));
    }
    if bytes[at] == b'[' {
        return Ok((Value::Array(Vec::new()), jsonscan::skip(text, at, depth)?));
    }
    let mut out = Map::new();
    let end = jsonscan::read_object(text, at, depth, |key, at| match node.children.get(&*key) {
        Some(child) => {
            let (value, end) = project(child, text, at, depth + 1)?;
            out.insert(key.into_owned(), value);
            Ok(end)
        }
        None => jsonscan::skip(text, at, depth + 1),
    })?;
    Ok((Value::Object(out), end))
}

/// Sets `value` at a dotted path of fields (`.spec.replicas`), creating objects on the way.
/// False, with nothing changed below the first non-field step, for paths with indexes or
/// filters.
pub fn set(object: &mut Value, path: &str, value: Value) -> bool {
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    if parts
        .iter()
        .any(|part| part.is_empty() || part.contains('['))
    {
        return false;
    }
    let mut current = object;
    for (i, part) in parts.iter().enumerate() {
        if !current.is_object() {
            *current = json!({});
        }
        if i + 1 == parts.len() {
            current[*part] = value;
            return true;
        }
        current = &mut current[*part];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_printer_columns() {
        let object = json!({
            "spec": {"role": "web", "disks": [{"size": 10}]},
            "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}
        });
        assert_eq!(get(&object, ".spec.role"), Some(&json!("web")));
        assert_eq!(get(&object, "{.spec.role}"), Some(&json!("web")));
        assert_eq!(get(&object, ".spec.disks[0].size"), Some(&json!(10)));
        assert_eq!(
            get(&object, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(&json!("True"))
        );
        assert_eq!(get(&object, ".spec.missing"), None);
    }

    #[test]
    fn setting_creates_objects_and_refuses_indexes() {
        let mut object = json!({"spec": "scalar"});
        assert!(set(&mut object, ".spec.replicas", json!(3)));
        assert_eq!(object, json!({"spec": {"replicas": 3}}));
        assert!(!set(&mut object, ".spec.items[0]", json!(1)));
        assert!(!set(&mut object, "", json!(1)));
        assert_eq!(object, json!({"spec": {"replicas": 3}}));
    }
}
