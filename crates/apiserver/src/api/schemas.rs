//! Typed schemas of the built-in kinds whose bodies clients fill freely — Leases (agents'
//! heartbeats, leader election) and Events of both APIs — written from the Kubernetes API
//! reference as OpenAPI v3 documents and compiled like a CRD's.
//!
//! kube-apiserver decodes these kinds into Go types, so a field of the wrong type or a time
//! that does not parse is refused, and unknown fields are dropped (or refused, as
//! `fieldValidation` asks). Without a schema fleetdb stored whatever JSON it was sent: one
//! Lease with `renewTime: "soon"`, written by any identity allowed to write its own Lease,
//! would make every typed client's list of Leases fail to decode (client-go and kube-rs
//! decode a list whole), the controllers' among them. With these schemas the registry's CRD
//! pipeline prunes, validates (422, naming the field) and publishes them in OpenAPI, and
//! what is stored decodes in a typed client. Times are `date-time` (Kubernetes' `Time` and
//! `MicroTime`), counts `int32`, as kube-apiserver publishes them. A `null` time, which
//! client-go sends for an unset one, is dropped as the pipeline drops every non-nullable
//! `null`.

use serde_json::{Value, json};

fn string() -> Value {
    json!({"type": "string"})
}

fn time() -> Value {
    json!({"type": "string", "format": "date-time"})
}

fn int32() -> Value {
    json!({"type": "integer", "format": "int32"})
}

fn object(properties: Value) -> Value {
    json!({"type": "object", "properties": properties})
}

/// `core/v1` `ObjectReference`.
fn object_reference() -> Value {
    object(json!({
        "apiVersion": string(),
        "fieldPath": string(),
        "kind": string(),
        "name": string(),
        "namespace": string(),
        "resourceVersion": string(),
        "uid": string(),
    }))
}

/// `core/v1` `EventSource`.
fn event_source() -> Value {
    object(json!({"component": string(), "host": string()}))
}

/// `coordination.k8s.io/v1` Lease.
pub fn lease() -> Value {
    object(json!({
        "spec": object(json!({
            "acquireTime": time(),
            "holderIdentity": string(),
            "leaseDurationSeconds": int32(),
            "leaseTransitions": int32(),
            "preferredHolder": string(),
            "renewTime": time(),
            "strategy": string(),
        })),
    }))
}

/// `core/v1` Event.
pub fn core_event() -> Value {
    let mut event = object(json!({
        "action": string(),
        "count": int32(),
        "eventTime": time(),
        "firstTimestamp": time(),
        "involvedObject": object_reference(),
        "lastTimestamp": time(),
        "message": string(),
        "reason": string(),
        "related": object_reference(),
        "reportingComponent": string(),
        "reportingInstance": string(),
        "series": object(json!({"count": int32(), "lastObservedTime": time()})),
        "source": event_source(),
        "type": string(),
    }));
    event["required"] = json!(["involvedObject"]);
    event
}

/// `events.k8s.io/v1` Event.
pub fn events_event() -> Value {
    let mut series = object(json!({"count": int32(), "lastObservedTime": time()}));
    series["required"] = json!(["count", "lastObservedTime"]);
    let mut event = object(json!({
        "action": string(),
        "deprecatedCount": int32(),
        "deprecatedFirstTimestamp": time(),
        "deprecatedLastTimestamp": time(),
        "deprecatedSource": event_source(),
        "eventTime": time(),
        "note": string(),
        "reason": string(),
        "regarding": object_reference(),
        "related": object_reference(),
        "reportingController": string(),
        "reportingInstance": string(),
        "series": series,
        "type": string(),
    }));
    event["required"] = json!(["eventTime"]);
    event
}
