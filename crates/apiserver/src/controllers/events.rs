//! Events the server's controllers record about objects: core `v1` Events, in the object's
//! namespace (`default` for cluster-scoped objects, as Kubernetes does), which `kubectl get
//! events` and `kubectl describe` show.

use serde_json::{Value, json};

use crate::api::Identity;
use crate::registry::{AdmitAll, FieldValidation, Registry, Target, WriteOptions, now};

/// The component named as the source of the server's Events.
pub const COMPONENT: &str = "fleetdb-controller";
/// Longest message an Event carries (kube-apiserver refuses longer).
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// The Event recording `reason` about `object` (whose `apiVersion` and `kind` name it).
pub fn event(object: &Value, event_type: &str, reason: &str, message: &str) -> Value {
    let metadata = &object["metadata"];
    let name = metadata["name"].as_str().unwrap_or_default();
    let namespace = metadata["namespace"].as_str().unwrap_or("default");
    let mut message = message.to_owned();
    if message.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    let now = now();
    let suffix: u64 = rand::random();
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{name}.{suffix:016x}"), "namespace": namespace},
        "involvedObject": {
            "apiVersion": object["apiVersion"],
            "kind": object["kind"],
            "name": name,
            "namespace": metadata["namespace"],
            "uid": metadata["uid"],
            "resourceVersion": metadata["resourceVersion"],
        },
        "reason": reason,
        "message": message,
        "type": event_type,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    })
}

/// Records an Event (failures are logged: an Event is never worth failing the action).
pub async fn record(
    registry: &Registry,
    object: &Value,
    event_type: &str,
    reason: &str,
    message: &str,
) {
    let event = event(object, event_type, reason, message);
    let Some(resource) = registry.catalog().snapshot().get("", "v1", "events") else {
        return;
    };
    let namespace = event["metadata"]["namespace"].as_str().map(str::to_owned);
    let user = Identity::system(COMPONENT);
    let options = WriteOptions {
        user: &user,
        dry_run: false,
        field_manager: COMPONENT.into(),
        field_validation: FieldValidation::Strict,
        admission: &AdmitAll,
    };
    if let Err(error) = registry
        .create(&Target::collection(resource, namespace), event, &options)
        .await
    {
        tracing::warn!(%error, reason, "cannot record an event");
    }
}
