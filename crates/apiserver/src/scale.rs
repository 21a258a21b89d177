//! The scale subresource of custom resources: an `autoscaling/v1` Scale view of the replicas
//! fields a CRD names (`kubectl scale`, autoscalers).

use serde_json::{Value, json};

use crate::registry::{Resource, ScaleSpec};
use crate::status::{ApiError, Cause};
use crate::table::json_path;

/// The Scale view of an object.
pub fn scale_of(spec: &ScaleSpec, object: &Value) -> Value {
    let metadata = &object["metadata"];
    let mut scale = json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata["uid"],
            "resourceVersion": metadata["resourceVersion"],
            "creationTimestamp": metadata["creationTimestamp"],
        },
        "spec": {"replicas": json_path(object, &spec.spec_replicas_path).cloned().unwrap_or(json!(0))},
        "status": {"replicas": json_path(object, &spec.status_replicas_path).cloned().unwrap_or(json!(0))},
    });
    if let Some(selector) = spec
        .label_selector_path
        .as_deref()
        .and_then(|path| json_path(object, path))
    {
        scale["status"]["selector"] = selector.clone();
    }
    if metadata["namespace"].is_null() {
        scale["metadata"]
            .as_object_mut()
            .map(|m| m.remove("namespace"));
    }
    scale
}

/// Sets `value` at a simple dotted JSON path (`.spec.replicas`), creating objects on the way.
fn set_path(object: &mut Value, path: &str, value: Value) -> bool {
    let mut current = object;
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() || part.contains('[') {
            return false;
        }
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

/// The object with the replicas a Scale asks for; the Scale's resourceVersion is kept as a
/// precondition.
pub fn apply_scale(
    resource: &Resource,
    spec: &ScaleSpec,
    object: &Value,
    scale: &Value,
) -> Result<Value, ApiError> {
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let replicas = match &scale["spec"]["replicas"] {
        Value::Number(n) if n.as_i64().is_some_and(|r| r >= 0) => n.clone(),
        other => {
            return Err(ApiError::invalid(
                "Scale.autoscaling",
                "autoscaling",
                "Scale",
                name,
                vec![Cause::invalid(
                    "spec.replicas",
                    format!("Invalid value: {other}: must be a non-negative integer"),
                )],
            ));
        }
    };
    let mut updated = object.clone();
    if !set_path(
        &mut updated,
        &spec.spec_replicas_path,
        Value::Number(replicas),
    ) {
        return Err(ApiError::internal(format!(
            "the scale subresource of {} names an unsupported path {}",
            resource.qualified(),
            spec.spec_replicas_path
        )));
    }
    if let Some(rv) = scale["metadata"]["resourceVersion"].as_str() {
        updated["metadata"]["resourceVersion"] = json!(rv);
    }
    Ok(updated)
}
