//! The reviews: `SelfSubjectAccessReview` (`kubectl auth can-i`), `SelfSubjectRulesReview`
//! (`kubectl auth can-i --list`), `SubjectAccessReview`, `LocalSubjectAccessReview` and
//! `SelfSubjectReview` (`kubectl auth whoami`). Created to get an answer; never stored.

use fleetdb_machinery::field::FieldError;
use fleetdb_machinery::rbac;
use serde_json::{Map, Value, json};

use super::Pipeline;
use super::authz::Attributes;
use crate::api::{ApiError, Identity, Resource};

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The attributes a review's `spec` asks about, or the field error kube-apiserver gives.
fn attributes_of(spec: &Value) -> Result<Attributes, FieldError> {
    let resource = &spec["resourceAttributes"];
    let non_resource = &spec["nonResourceAttributes"];
    match (resource.is_object(), non_resource.is_object()) {
        (true, false) => Ok(Attributes {
            verb: text(&resource["verb"]).to_owned(),
            resource_request: true,
            api_group: text(&resource["group"]).to_owned(),
            api_version: text(&resource["version"]).to_owned(),
            resource: text(&resource["resource"]).to_owned(),
            subresource: text(&resource["subresource"]).to_owned(),
            namespace: text(&resource["namespace"]).to_owned(),
            name: text(&resource["name"]).to_owned(),
            path: String::new(),
        }),
        (false, true) => Ok(Attributes::path(
            text(&non_resource["verb"]),
            text(&non_resource["path"]),
        )),
        (true, true) => Err(FieldError::invalid(
            "spec.resourceAttributes",
            "Invalid value: \"resourceAttributes\": cannot be specified in combination with nonResourceAttributes",
        )),
        (false, false) => Err(FieldError::invalid(
            "spec.resourceAttributes",
            "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The answer of an access review.
fn access_status(pipeline: &Pipeline, user: &Identity, attributes: &Attributes) -> Value {
    let decision = pipeline.decide(user, attributes);
    let mut status = Map::new();
    status.insert("allowed".into(), json!(decision.allowed()));
    if let super::Decision::Deny(_) = decision {
        status.insert("denied".into(), json!(true));
    }
    if !decision.reason().is_empty() {
        status.insert("reason".into(), json!(decision.reason()));
    }
    Value::Object(status)
}

fn rules_status(pipeline: &Pipeline, user: &Identity, namespace: &str) -> Value {
    let policy = pipeline.policy().policy();
    let (rules, errors) = policy.rules_for(
        &rbac::User {
            name: &user.user,
            groups: &user.groups,
        },
        namespace,
    );
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for rule in rules {
        if !rule.resources.is_empty() {
            let mut entry = json!({"verbs": rule.verbs, "apiGroups": rule.api_groups, "resources": rule.resources});
            if !rule.resource_names.is_empty() {
                entry["resourceNames"] = json!(rule.resource_names);
            }
            resource_rules.push(entry);
        }
        if !rule.non_resource_urls.is_empty() {
            non_resource_rules
                .push(json!({"verbs": rule.verbs, "nonResourceURLs": rule.non_resource_urls}));
        }
    }
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": false,
    });
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join(", "));
    }
    status
}

/// Answers a review created by `user` (at `namespace` for the namespaced one).
pub fn answer(
    pipeline: &Pipeline,
    user: &Identity,
    resource: &Resource,
    namespace: Option<&str>,
    body: Value,
) -> Result<Value, ApiError> {
    let Value::Object(_) = body else {
        return Err(ApiError::bad_request(format!(
            "the body must be a {} object",
            resource.kind
        )));
    };
    let mut review = body;
    if review["kind"].is_string() && review["kind"] != json!(resource.kind) {
        return Err(ApiError::bad_request(format!(
            "the body is a {}, not a {}",
            text(&review["kind"]),
            resource.kind
        )));
    }
    let invalid = |causes: Vec<FieldError>| {
        ApiError::invalid(
            &resource.kind_qualified(),
            &resource.group,
            &resource.kind,
            "",
            causes,
        )
    };
    let status = match resource.kind.as_str() {
        "SelfSubjectAccessReview" => {
            let attributes = attributes_of(&review["spec"]).map_err(|e| invalid(vec![e]))?;
            access_status(pipeline, user, &attributes)
        }
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let spec = &review["spec"];
            let mut attributes = attributes_of(spec).map_err(|e| invalid(vec![e]))?;
            if let Some(namespace) = namespace {
                if attributes.namespace.is_empty() {
                    attributes.namespace = namespace.to_owned();
                } else if attributes.namespace != namespace {
                    return Err(ApiError::bad_request(format!(
                        "spec.resourceAttributes.namespace must match namespace: {namespace}"
                    )));
                }
            }
            let subject = Identity {
                user: text(&spec["user"]).to_owned(),
                groups: strings(&spec["groups"]),
                uid: text(&spec["uid"]).to_owned(),
                ..Identity::default()
            };
            if subject.user.is_empty() && subject.groups.is_empty() {
                return Err(invalid(vec![FieldError::invalid(
                    "spec.user",
                    "Invalid value: \"\": at least one of user or group must be specified",
                )]));
            }
            access_status(pipeline, &subject, &attributes)
        }
        "SelfSubjectRulesReview" => {
            let namespace = text(&review["spec"]["namespace"]);
            if namespace.is_empty() {
                return Err(ApiError::bad_request("no namespace on request"));
            }
            rules_status(pipeline, user, namespace)
        }
        "SelfSubjectReview" => {
            let mut info = json!({"username": user.user, "groups": user.groups});
            if !user.uid.is_empty() {
                info["uid"] = json!(user.uid);
            }
            if !user.extra.is_empty() {
                info["extra"] = json!(user.extra);
            }
            review["metadata"] = json!({"creationTimestamp": crate::registry::now()});
            json!({"userInfo": info})
        }
        other => return Err(ApiError::internal(format!("no review of kind {other}"))),
    };
    review["apiVersion"] = json!(resource.api_version());
    review["kind"] = json!(resource.kind);
    if !review["metadata"].is_object() {
        review["metadata"] = json!({});
    }
    review["status"] = status;
    Ok(review)
}
