//! The simple JSONPath forms CRDs use for printer columns and the scale subresource:
//! `.a.b`, `.a[0].b`, `.a[?(@.type=="Ready")].status`, optionally in braces.
//!
//! A [`Path`] is compiled once (a CRD version's printer columns are compiled when the
//! catalog is built) and evaluated on decoded objects. A [`Projection`] of several paths
//! decodes from an object's JSON only what those paths can reach, so a Table row is built
//! from stored bytes without a `Value` tree of the whole object.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

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
    /// written, borrowed from `json`) when the object has it.
    pub fn decode_keeping<'j>(
        &self,
        json: &'j [u8],
        raw: Option<&str>,
    ) -> serde_json::Result<(Value, Option<&'j RawValue>)> {
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let (value, kept) = Top {
            node: &self.root,
            raw,
        }
        .deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok((value, kept))
    }
}

/// A node that keeps everything below it.
static WHOLE: Node = Node {
    whole: true,
    children: BTreeMap::new(),
};

/// An object's key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

/// The top level of a projected decode, which may also keep one field's text.
struct Top<'p> {
    node: &'p Node,
    raw: Option<&'p str>,
}

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = (Value, Option<&'de RawValue>);

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        if self.node.whole && self.raw.is_none() {
            return Ok((Value::deserialize(deserializer)?, None));
        }
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = (Value, Option<&'de RawValue>);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        let mut kept = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if self.raw == Some(&*key) {
                let text: &'de RawValue = map.next_value()?;
                kept = Some(text);
                let child = if self.node.whole {
                    Some(&WHOLE)
                } else {
                    self.node.children.get(&*key)
                };
                if let Some(child) = child {
                    let mut inner = serde_json::Deserializer::from_str(text.get());
                    let value = Part(child)
                        .deserialize(&mut inner)
                        .map_err(de::Error::custom)?;
                    out.insert(key.into_owned(), value);
                }
            } else if self.node.whole {
                out.insert(key.into_owned(), map.next_value()?);
            } else if let Some(child) = self.node.children.get(&*key) {
                let value = map.next_value_seed(Part(child))?;
                out.insert(key.into_owned(), value);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok((Value::Object(out), kept))
    }
}

/// A projected decode below the top level.
struct Part<'p>(&'p Node);

impl<'de> DeserializeSeed<'de> for Part<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.0.whole {
            return Value::deserialize(deserializer);
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Part<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if let Some(child) = self.0.children.get(&*key) {
                let value = map.next_value_seed(Part(child))?;
                out.insert(key.into_owned(), value);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Value::Object(out))
    }

    // Fields are looked up only in objects: anything else is kept as a leaf (small ones) or
    // skipped (arrays, whose items no field step reaches).
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Array(Vec::new()))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(json!(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(json!(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(json!(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
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
