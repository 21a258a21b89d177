//! Protocol details checked in-process against the real router and a real store: anonymous
//! access, certificates that expire on an open connection, content negotiation (406,
//! aggregated discovery media type), expired resourceVersions and continue tokens (410),
//! `sendInitialEvents` with its closing bookmark, and patches of a hot object that never
//! conflict without a precondition.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use fleetdb_apiserver::{Identity, dispatch};
use fleetdb_store::Store;
use futures::StreamExt;
use serde_json::{Value, json};

mod support;

use support::{TestServer, admin};

/// The first event of a watch (which must answer 200).
async fn first_event(f: &TestServer, uri: &str) -> Value {
    let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let response = dispatch(f.server.clone(), admin(), request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    serde_json::from_slice(&chunk).unwrap()
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_reach_only_health_and_version() {
    let f = TestServer::embedded().await;
    for path in ["/healthz", "/livez", "/readyz", "/version", "/version/"] {
        let (status, _, _) = f
            .call_with(Identity::anonymous(), Method::GET, path, &[], Value::Null)
            .await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    for path in ["/api", "/apis", "/api/v1/namespaces", "/openapi/v3"] {
        let (status, _, body) = f
            .call_with(Identity::anonymous(), Method::GET, path, &[], Value::Null)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body["reason"], "Unauthorized");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_expires_on_an_open_connection_stops_working() {
    // The identity of a connection is read at its handshake; its requests after the
    // certificate's notAfter are refused, as kube-apiserver checks on every request.
    let f = TestServer::embedded().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let with_expiry = |expires_at: i64| {
        let mut identity = Identity::new("carol", &["system:masters", "system:authenticated"]);
        identity.credential = Some(fleetdb_apiserver::api::identity::Credential {
            serial: "0a1b".into(),
            issued_at: now - 3600,
            expires_at,
        });
        identity
    };
    let (status, _, body) = f
        .call_with(
            with_expiry(now + 3600),
            Method::GET,
            "/api/v1/namespaces",
            &[],
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = f
        .call_with(
            with_expiry(now - 1),
            Method::GET,
            "/api/v1/namespaces",
            &[],
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["reason"], "Unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_negotiation() {
    let f = TestServer::embedded().await;
    let accept =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let (status, headers, body) = f
        .call_with(
            admin(),
            Method::GET,
            "/apis",
            &[("accept", accept)],
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["content-type"],
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    assert_eq!(body["kind"], "APIGroupDiscoveryList");
    let (status, _, body) = f
        .call_with(
            admin(),
            Method::GET,
            "/api/v1/namespaces",
            &[("accept", "text/html")],
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(body["reason"], "NotAcceptable");
    let (status, _, body) = f
        .call_with(
            admin(),
            Method::POST,
            "/api/v1/namespaces",
            &[("content-type", "text/plain")],
            namespace("x"),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("accepted media types include")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_history_answers_410() {
    let f = TestServer::embedded().await;
    for name in ["a", "b", "c"] {
        let (status, _, _) = f
            .call_with(
                admin(),
                Method::POST,
                "/api/v1/namespaces",
                &[],
                namespace(name),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (_, _, first_page) = f
        .call_with(
            admin(),
            Method::GET,
            "/api/v1/namespaces?limit=2",
            &[],
            Value::Null,
        )
        .await;
    let token = first_page["metadata"]["continue"]
        .as_str()
        .expect("more pages")
        .to_owned();
    let old = first_page["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse::<i64>()
        .unwrap();
    let (status, _, _) = f
        .call_with(
            admin(),
            Method::POST,
            "/api/v1/namespaces",
            &[],
            namespace("d"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let now = f.store.current_revision().await.unwrap();
    f.store.compact(now).await.unwrap();
    assert!(old < now);

    let (status, _, body) = f
        .call_with(
            admin(),
            Method::GET,
            &format!("/api/v1/namespaces?limit=2&continue={token}"),
            &[],
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(body["reason"], "Expired");

    // A watch from a revision the watch cache still holds is served from it, compaction
    // of the store notwithstanding, as kube-apiserver's watch cache does.
    let event = first_event(
        &f,
        &format!("/api/v1/namespaces?watch=true&resourceVersion={old}"),
    )
    .await;
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["metadata"]["name"], "d");

    // A watch from before the cache's history and the compaction streams one ERROR event
    // with the 410 Status. The cache holds everything since the server started (its
    // feeds start with it), so it is a restarted server that has no history of revision 1.
    let server = fleetdb_apiserver::ApiServer::new(f.store.clone(), "127.0.0.1:6443".into())
        .await
        .unwrap();
    let restarted = TestServer::over(server, f.store.clone());
    let event = first_event(
        &restarted,
        "/api/v1/namespaces?watch=true&resourceVersion=1",
    )
    .await;
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_initial_events_ends_with_the_annotated_bookmark() {
    let f = TestServer::embedded().await;
    let (status, _, body) = f
        .call_with(
            admin(),
            Method::GET,
            "/api/v1/namespaces?watch=true&sendInitialEvents=true",
            &[],
            Value::Null,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "needs resourceVersionMatch=NotOlderThan: {body}"
    );

    let request = Request::builder()
        .uri("/api/v1/namespaces?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion=0")
        .body(Body::empty())
        .unwrap();
    let response = dispatch(f.server.clone(), admin(), request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    let mut buffer = Vec::new();
    let mut events = Vec::new();
    while !events.iter().any(|e: &Value| e["type"] == "BOOKMARK") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("events arrive")
            .unwrap()
            .unwrap();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            events.push(serde_json::from_slice(&line).unwrap());
        }
    }
    let added: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "ADDED")
        .map(|e| e["object"]["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        added,
        [
            "default",
            "fleetdb-system",
            "kube-node-lease",
            "kube-public",
            "kube-system"
        ]
    );
    let bookmark = events.last().unwrap();
    assert_eq!(
        bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_v2_is_served_as_json_and_protobuf_with_an_entity_tag() {
    let f = TestServer::embedded().await;
    let (status, headers, body) = f
        .call_with(admin(), Method::GET, "/openapi/v2", &[], Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["swagger"], "2.0");
    assert!(
        body["definitions"]["io.k8s.api.core.v1.Namespace"]["x-kubernetes-group-version-kind"]
            .is_array()
    );
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let (status, _, _) = f
        .call_with(
            admin(),
            Method::GET,
            "/openapi/v2",
            &[("if-none-match", &etag)],
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    let (status, headers, _) = f
        .call_with(
            admin(),
            Method::GET,
            "/openapi/v2",
            &[(
                "accept",
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            )],
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["content-type"],
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    );
    // A new kind changes the document and its tag.
    f.install_widgets().await;
    let (_, headers, body) = f
        .call_with(admin(), Method::GET, "/openapi/v2", &[], Value::Null)
        .await;
    assert_ne!(headers["etag"].to_str().unwrap(), etag);
    assert!(
        body["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"]
            .is_object()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_rows_carry_what_include_object_asks_for() {
    let f = TestServer::embedded().await;
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io";
    let rows = |include: &'static str| {
        let f = &f;
        async move {
            let uri = format!("/api/v1/namespaces?includeObject={include}");
            f.call_with(
                admin(),
                Method::GET,
                &uri,
                &[("accept", table)],
                Value::Null,
            )
            .await
        }
    };
    let (_, _, body) = rows("").await;
    assert_eq!(body["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    let (_, _, body) = rows("None").await;
    assert!(body["rows"][0]["object"].is_null(), "{body}");
    let (_, _, body) = rows("Object").await;
    assert_eq!(body["rows"][0]["object"]["kind"], "Namespace");
    assert_eq!(body["rows"][0]["object"]["status"]["phase"], "Active");
    let (status, _, body) = rows("Everything").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["message"],
        "unrecognized includeObject value: \"Everything\""
    );
}

/// A CRD of gadgets with `selectableFields`.
fn gadgets(selectable: Value) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "scope": "Cluster",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "selectableFields": selectable,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "owner": {"type": "string"},
                        "on": {"type": "boolean"},
                        "level": {"type": "integer"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                    }},
                }}},
            }],
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_declare_the_fields_their_selectors_may_name() {
    let f = TestServer::embedded().await;
    const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let refused = [
        (
            json!([{"jsonPath": ".spec.tags"}]),
            "must point to a field of type string, boolean or integer",
        ),
        (json!([{"jsonPath": "spec.owner"}]), "is an invalid path"),
        (
            json!([{"jsonPath": ".spec.owner"}, {"jsonPath": ".spec.owner"}]),
            "Duplicate value",
        ),
        (
            json!([{"jsonPath": ".spec.missing"}]),
            "must point to a field of type",
        ),
        (json!([{}]), "Required value"),
    ];
    for (fields, message) in refused {
        let (status, body) = f.call(Method::POST, CRDS, gadgets(fields.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{fields}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(message),
            "{fields}: {body}"
        );
    }
    let fields =
        json!([{"jsonPath": ".spec.owner"}, {"jsonPath": ".spec.on"}, {"jsonPath": ".spec.level"}]);
    let (status, body) = f.call(Method::POST, CRDS, gadgets(fields)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for (name, spec) in [
        ("a", json!({"owner": "ann", "on": true, "level": 1})),
        ("b", json!({"owner": "bob", "on": false, "level": 2})),
        ("c", json!({"level": 1})),
    ] {
        let gadget = json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": name}, "spec": spec});
        let (status, body) = f
            .call(Method::POST, "/apis/example.com/v1/gadgets", gadget)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let select = |selector: &'static str| {
        let f = &f;
        async move {
            let (status, body) = f
                .call(
                    Method::GET,
                    &format!("/apis/example.com/v1/gadgets?fieldSelector={selector}"),
                    Value::Null,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{selector}: {body}");
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(select("spec.owner=ann").await, ["a"]);
    assert_eq!(select("spec.on=false").await, ["b"]);
    assert_eq!(select("spec.level=1").await, ["a", "c"]);
    // An absent field reads as empty, as in kube-apiserver.
    assert_eq!(select("spec.owner=").await, ["c"]);
    assert_eq!(select("spec.owner!=,spec.level!=2").await, ["a"]);
    let (status, body) = f
        .call(
            Method::GET,
            "/apis/example.com/v1/gadgets?fieldSelector=spec.tags=x",
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["message"],
        "\"spec.tags\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\", \"spec.owner\", \"spec.on\", \"spec.level\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_store_and_its_failures_say_when_to_retry() {
    let f = TestServer::embedded().await;
    let get = |path: &'static str| {
        let f = &f;
        async move {
            let request = Request::builder().uri(path).body(Body::empty()).unwrap();
            let response = dispatch(f.server.clone(), Identity::anonymous(), request).await;
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    assert_eq!(get("/readyz").await, (StatusCode::OK, "ok".to_owned()));
    assert_eq!(
        get("/readyz?verbose").await,
        (
            StatusCode::OK,
            "[+]ping ok\n[+]started ok\n[+]store ok\nreadyz check passed".to_owned()
        )
    );
    f.store
        .fail_all
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, body) = get("/readyz").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body,
        "[+]ping ok\n[+]started ok\n[-]store failed: reason withheld\nreadyz check failed"
    );
    assert_eq!(
        get("/readyz/store").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(get("/readyz/ping").await.0, StatusCode::OK);
    // Liveness is about the process, not the store.
    assert_eq!(get("/livez").await, (StatusCode::OK, "ok".to_owned()));
    // What the store cannot serve is a 503 with Retry-After.
    let (status, headers, body) = f
        .call_with(admin(), Method::GET, "/api/v1/namespaces", &[], Value::Null)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(body["details"]["retryAfterSeconds"], 1);
    f.store
        .fail_all
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(get("/readyz").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_without_preconditions_never_conflict_however_busy_the_object() {
    // kube-apiserver retries a write without a precondition until it wins its race; so
    // does fleetdb (within WRITE_RETRY_WINDOW), so writers of one hot object all succeed.
    let f = Arc::new(TestServer::embedded().await);
    f.install_widgets().await;
    let uri = "/apis/example.com/v1/namespaces/default/widgets/hot";
    let (status, body) = f
        .call(
            Method::POST,
            "/apis/example.com/v1/namespaces/default/widgets",
            json!({"apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "hot"}, "spec": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    const WRITERS: usize = 16;
    const PATCHES: usize = 25;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let f = f.clone();
            tokio::spawn(async move {
                for n in 0..PATCHES {
                    let (status, _, body) = f
                        .call_with(
                            admin(),
                            Method::PATCH,
                            uri,
                            &[("content-type", "application/merge-patch+json")],
                            json!({"spec": {format!("w{w}"): n}}),
                        )
                        .await;
                    assert_eq!(status, StatusCode::OK, "writer {w}, patch {n}: {body}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let (_, object) = f.call(Method::GET, uri, Value::Null).await;
    for w in 0..WRITERS {
        assert_eq!(object["spec"][format!("w{w}")], PATCHES - 1, "{object}");
    }
}
