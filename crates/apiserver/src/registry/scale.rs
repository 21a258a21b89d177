//! The scale subresource of custom resources: an `autoscaling/v1` Scale view of the replicas
//! fields a CRD names (`kubectl scale`, autoscalers).

use serde_json::{Value, json};

use fleetdb_machinery::field::FieldError;
use fleetdb_machinery::jsonpath;

use crate::api::{ApiError, Resource, ScaleSpec};

/// The Scale view of an object.
pub(crate) fn scale_of(spec: &ScaleSpec, object: &Value) -> Value {
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
        "spec": {"replicas": jsonpath::get(object, &spec.spec_replicas_path).cloned().unwrap_or(json!(0))},
        "status": {"replicas": jsonpath::get(object, &spec.status_replicas_path).cloned().unwrap_or(json!(0))},
    });
    if let Some(selector) = spec
        .label_selector_path
        .as_deref()
        .and_then(|path| jsonpath::get(object, path))
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

/// The object with the replicas a Scale asks for; the Scale's resourceVersion is kept as a
/// precondition.
pub(crate) fn apply_scale(
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
                vec![FieldError::invalid(
                    "spec.replicas",
                    format!("Invalid value: {other}: must be a non-negative integer"),
                )],
            ));
        }
    };
    let mut updated = object.clone();
    if !jsonpath::set(
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
