//! The rules Role, ClusterRole, RoleBinding and ClusterRoleBinding objects must follow, with
//! kube-apiserver's field paths and wording, and the defaults it gives bindings' subjects.

use serde_json::{Value, json};

use super::{GROUP, PolicyRule};
use crate::field::{FieldError, path};

/// Problems with an RBAC object's name (`path.IsValidPathSegmentName`): RBAC names may hold
/// `:` (`system:discovery`) but not what breaks a URL path.
pub fn name_problems(name: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if name == "." || name == ".." {
        problems.push(format!("may not be '{name}'"));
    }
    for bad in ['/', '%'] {
        if name.contains(bad) {
            problems.push(format!("may not contain '{bad}'"));
        }
    }
    problems
}

fn string_list(value: &Value, at: &str, errors: &mut Vec<FieldError>) -> Vec<String> {
    match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item.as_str() {
                Some(text) => Some(text.to_owned()),
                None => {
                    errors.push(FieldError::type_invalid(
                        path::index(at, i),
                        item,
                        "must be a string",
                    ));
                    None
                }
            })
            .collect(),
        other => {
            errors.push(FieldError::type_invalid(
                at,
                other,
                "must be a list of strings",
            ));
            Vec::new()
        }
    }
}

/// Reads and checks one rule (`ValidatePolicyRule`).
fn rule(value: &Value, at: &str, namespaced: bool, errors: &mut Vec<FieldError>) {
    if !value.is_object() {
        errors.push(FieldError::type_invalid(at, value, "must be an object"));
        return;
    }
    let read = PolicyRule {
        verbs: string_list(&value["verbs"], &path::child(at, "verbs"), errors),
        api_groups: string_list(&value["apiGroups"], &path::child(at, "apiGroups"), errors),
        resources: string_list(&value["resources"], &path::child(at, "resources"), errors),
        resource_names: string_list(
            &value["resourceNames"],
            &path::child(at, "resourceNames"),
            errors,
        ),
        non_resource_urls: string_list(
            &value["nonResourceURLs"],
            &path::child(at, "nonResourceURLs"),
            errors,
        ),
    };
    if read.verbs.is_empty() {
        errors.push(FieldError::required(
            path::child(at, "verbs"),
            "verbs must contain at least one value",
        ));
    }
    if !read.non_resource_urls.is_empty() {
        // Go prints the list as a `[]string` literal.
        let quoted: Vec<String> = read
            .non_resource_urls
            .iter()
            .map(|u| crate::gofmt::quote(u))
            .collect();
        let urls = format!("[]string{{{}}}", quoted.join(", "));
        let mut problem = |detail: &str| {
            errors.push(FieldError::invalid(
                path::child(at, "nonResourceURLs"),
                format!("Invalid value: {urls}: {detail}"),
            ))
        };
        if namespaced {
            problem("namespaced rules cannot apply to non-resource URLs");
        }
        if !read.api_groups.is_empty()
            || !read.resources.is_empty()
            || !read.resource_names.is_empty()
        {
            problem("rules cannot apply to both regular resources and non-resource URLs");
        }
        return;
    }
    if read.api_groups.is_empty() {
        errors.push(FieldError::required(
            path::child(at, "apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if read.resources.is_empty() {
        errors.push(FieldError::required(
            path::child(at, "resources"),
            "resource rules must supply at least one resource",
        ));
    }
}

fn rules(object: &Value, namespaced: bool, errors: &mut Vec<FieldError>) {
    match &object["rules"] {
        Value::Null => {}
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                rule(item, &path::index("rules", i), namespaced, errors);
            }
        }
        other => errors.push(FieldError::type_invalid("rules", other, "must be a list")),
    }
}

/// Checks a Role.
pub fn role(object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    rules(object, true, &mut errors);
    errors
}

/// Checks a ClusterRole, its aggregation rule included.
pub fn cluster_role(object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    rules(object, false, &mut errors);
    match &object["aggregationRule"] {
        Value::Null => {}
        Value::Object(rule) => match rule.get("clusterRoleSelectors") {
            Some(Value::Array(selectors)) if !selectors.is_empty() => {
                for (i, selector) in selectors.iter().enumerate() {
                    let at = path::index("aggregationRule.clusterRoleSelectors", i);
                    selector_problems(selector, &at, &mut errors);
                }
            }
            _ => errors.push(FieldError::required(
                "aggregationRule.clusterRoleSelectors",
                "at least one clusterRoleSelector required if aggregationRule is non-nil",
            )),
        },
        other => errors.push(FieldError::type_invalid(
            "aggregationRule",
            other,
            "must be an object",
        )),
    }
    errors
}

fn selector_problems(selector: &Value, at: &str, errors: &mut Vec<FieldError>) {
    let Some(fields) = selector.as_object() else {
        errors.push(FieldError::type_invalid(at, selector, "must be an object"));
        return;
    };
    if let Some(labels) = fields.get("matchLabels")
        && !labels
            .as_object()
            .is_some_and(|l| l.values().all(Value::is_string))
    {
        errors.push(FieldError::type_invalid(
            path::child(at, "matchLabels"),
            labels,
            "must be a map of strings",
        ));
    }
    if let Some(expressions) = fields.get("matchExpressions") {
        let Some(expressions) = expressions.as_array() else {
            errors.push(FieldError::type_invalid(
                path::child(at, "matchExpressions"),
                expressions,
                "must be a list",
            ));
            return;
        };
        for (i, expression) in expressions.iter().enumerate() {
            let at = path::index(&path::child(at, "matchExpressions"), i);
            let operator = &expression["operator"];
            let allowed = ["In", "NotIn", "Exists", "DoesNotExist"];
            if !operator.as_str().is_some_and(|o| allowed.contains(&o)) {
                errors.push(FieldError::not_supported(
                    path::child(&at, "operator"),
                    operator,
                    &allowed.map(|a| json!(a)),
                ));
            }
            if !expression["key"].is_string() {
                errors.push(FieldError::required(path::child(&at, "key"), ""));
            }
        }
    }
}

/// Gives subjects without an `apiGroup` the one their kind implies (`SetDefaults_Subject`).
pub fn default_subjects(object: &mut Value) {
    if let Some(subjects) = object.get_mut("subjects").and_then(Value::as_array_mut) {
        for subject in subjects {
            if subject.is_object() && subject["apiGroup"].as_str().is_none_or(str::is_empty) {
                let group = match subject["kind"].as_str() {
                    Some("User" | "Group") => GROUP,
                    _ => "",
                };
                subject["apiGroup"] = json!(group);
            }
        }
    }
}

/// Checks a RoleBinding (`cluster == false`) or ClusterRoleBinding.
pub fn binding(object: &Value, cluster: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let role_ref = &object["roleRef"];
    if !role_ref.is_object() {
        errors.push(FieldError::required("roleRef", ""));
    } else {
        let group = &role_ref["apiGroup"];
        if group.as_str() != Some(GROUP) {
            errors.push(FieldError::not_supported(
                "roleRef.apiGroup",
                &json!(group.as_str().unwrap_or_default()),
                &[json!(GROUP)],
            ));
        }
        let kinds: &[&str] = if cluster {
            &["ClusterRole"]
        } else {
            &["Role", "ClusterRole"]
        };
        let kind = role_ref["kind"].as_str().unwrap_or_default();
        if !kinds.contains(&kind) {
            errors.push(FieldError::not_supported(
                "roleRef.kind",
                &json!(kind),
                &kinds.iter().map(|k| json!(k)).collect::<Vec<_>>(),
            ));
        }
        match role_ref["name"].as_str() {
            None | Some("") => errors.push(FieldError::required("roleRef.name", "")),
            Some(name) => {
                for problem in name_problems(name) {
                    errors.push(FieldError::invalid_value(
                        "roleRef.name",
                        &json!(name),
                        &problem,
                    ));
                }
            }
        }
    }
    match &object["subjects"] {
        Value::Null => {}
        Value::Array(subjects) => {
            for (i, subject) in subjects.iter().enumerate() {
                subject_problems(subject, &path::index("subjects", i), cluster, &mut errors);
            }
        }
        other => errors.push(FieldError::type_invalid(
            "subjects",
            other,
            "must be a list",
        )),
    }
    errors
}

fn subject_problems(subject: &Value, at: &str, cluster: bool, errors: &mut Vec<FieldError>) {
    if !subject.is_object() {
        errors.push(FieldError::type_invalid(at, subject, "must be an object"));
        return;
    }
    let name = subject["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        errors.push(FieldError::required(path::child(at, "name"), ""));
    }
    let group = subject["apiGroup"].as_str().unwrap_or_default();
    match subject["kind"].as_str().unwrap_or_default() {
        "ServiceAccount" => {
            if !name.is_empty() {
                for problem in crate::validation::dns1123_subdomain(name) {
                    errors.push(FieldError::invalid_value(
                        path::child(at, "name"),
                        &json!(name),
                        &problem,
                    ));
                }
            }
            if !group.is_empty() {
                errors.push(FieldError::not_supported(
                    path::child(at, "apiGroup"),
                    &json!(group),
                    &[json!("")],
                ));
            }
            if cluster && subject["namespace"].as_str().is_none_or(str::is_empty) {
                errors.push(FieldError::required(path::child(at, "namespace"), ""));
            }
        }
        "User" | "Group" => {
            if group != GROUP {
                errors.push(FieldError::not_supported(
                    path::child(at, "apiGroup"),
                    &json!(group),
                    &[json!(GROUP)],
                ));
            }
        }
        other => errors.push(FieldError::not_supported(
            path::child(at, "kind"),
            &json!(other),
            &[json!("ServiceAccount"), json!("User"), json!("Group")],
        )),
    }
}

/// The problem with an update that changes a binding's role (`cannot change roleRef`).
pub fn role_ref_change(object: &Value, old: &Value) -> Option<FieldError> {
    (crate::json::canonical(&object["roleRef"]) != crate::json::canonical(&old["roleRef"]))
        .then(|| FieldError::invalid_value("roleRef", &object["roleRef"], "cannot change roleRef"))
}
