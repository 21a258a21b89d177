//! The simple JSONPath forms CRDs use for printer columns and the scale subresource:
//! `.a.b`, `.a[0].b`, `.a[?(@.type=="Ready")].status`, optionally in braces.

use serde_json::{Value, json};

/// The value at `path` in `object`, if there is one.
pub fn get<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let mut current = object;
    let mut rest = path.strip_prefix('.').unwrap_or(path);
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inside = &after[..end];
            rest = &after[end + 1..];
            current = if let Some(filter) = inside
                .strip_prefix("?(@.")
                .and_then(|f| f.strip_suffix(')'))
            {
                let (field, wanted) = filter.split_once("==")?;
                let wanted = wanted.trim().trim_matches('"').trim_matches('\'');
                current
                    .as_array()?
                    .iter()
                    .find(|item| item[field.trim()].as_str() == Some(wanted))?
            } else {
                current.get(inside.parse::<usize>().ok()?)?
            };
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            current = current.get(&rest[..end])?;
            rest = &rest[end..];
        }
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    Some(current)
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
