//! Protocol details checked in-process against the real router and a real store: anonymous
//! access, content negotiation (406, aggregated discovery media type), expired
//! resourceVersions and continue tokens (410), and `sendInitialEvents` with its closing
//! bookmark.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use fleetdb_apiserver::server::{ApiServer, dispatch};
use fleetdb_apiserver::tls::Identity;
use fleetdb_store::Store;
use fleetdb_store::embedded::EmbeddedStore;
use futures::StreamExt;
use serde_json::{Value, json};

fn admin() -> Identity {
    Identity {
        user: "fleetdb-admin".into(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
    }
}

struct Fixture {
    server: Arc<ApiServer>,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let server = ApiServer::new(store.clone(), "127.0.0.1:6443".into())
        .await
        .unwrap();
    Fixture {
        server,
        store,
        _dir: dir,
    }
}

async fn call(
    server: &Arc<ApiServer>,
    identity: Identity,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = if body.is_null() {
        Body::empty()
    } else {
        Body::from(body.to_string())
    };
    let response = dispatch(server.clone(), identity, request.body(body).unwrap()).await;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, value)
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_reach_only_health_and_version() {
    let f = fixture().await;
    for path in ["/healthz", "/livez", "/readyz", "/version", "/version/"] {
        let (status, _, _) = call(
            &f.server,
            Identity::anonymous(),
            Method::GET,
            path,
            &[],
            Value::Null,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    for path in ["/api", "/apis", "/api/v1/namespaces", "/openapi/v3"] {
        let (status, _, body) = call(
            &f.server,
            Identity::anonymous(),
            Method::GET,
            path,
            &[],
            Value::Null,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body["reason"], "Unauthorized");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_negotiation() {
    let f = fixture().await;
    let accept =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let (status, headers, body) = call(
        &f.server,
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
    let (status, _, body) = call(
        &f.server,
        admin(),
        Method::GET,
        "/api/v1/namespaces",
        &[("accept", "text/html")],
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(body["reason"], "NotAcceptable");
    let (status, _, body) = call(
        &f.server,
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
    let f = fixture().await;
    for name in ["a", "b", "c"] {
        let (status, _, _) = call(
            &f.server,
            admin(),
            Method::POST,
            "/api/v1/namespaces",
            &[],
            namespace(name),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (_, _, first_page) = call(
        &f.server,
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
    let (status, _, _) = call(
        &f.server,
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

    let (status, _, body) = call(
        &f.server,
        admin(),
        Method::GET,
        &format!("/api/v1/namespaces?limit=2&continue={token}"),
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(body["reason"], "Expired");

    // A watch from before the compaction streams one ERROR event with the 410 Status.
    let request = Request::builder()
        .uri(format!(
            "/api/v1/namespaces?watch=true&resourceVersion={old}"
        ))
        .body(Body::empty())
        .unwrap();
    let response = dispatch(f.server.clone(), admin(), request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let event: Value = serde_json::from_slice(&chunk).unwrap();
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_initial_events_ends_with_the_annotated_bookmark() {
    let f = fixture().await;
    let (status, _, body) = call(
        &f.server,
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
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    let bookmark = events.last().unwrap();
    assert_eq!(
        bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}
