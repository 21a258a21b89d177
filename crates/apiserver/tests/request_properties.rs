//! Property test of the request decoding paths: arbitrary methods, paths, queries, media
//! types and bodies — random bytes, broken JSON and YAML, protobuf-looking garbage, valid
//! objects with random parts replaced — sent through the real router on a real store.
//! Whatever comes in, the server answers (never panics), never with a 5xx, and every error is
//! a Kubernetes `Status` with a message.

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request};
use fleetdb_apiserver::dispatch;
use proptest::prelude::*;
use serde_json::{Value, json};

mod support;

use support::{TestServer, admin};

fn fixture() -> &'static (tokio::runtime::Runtime, TestServer) {
    static FIXTURE: OnceLock<(tokio::runtime::Runtime, TestServer)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(async {
            let server = TestServer::embedded().await;
            server.install_widgets().await;
            let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}});
            let (status, body) = server
                .call(
                    Method::POST,
                    "/apis/example.com/v1/namespaces/default/widgets",
                    widget,
                )
                .await;
            assert_eq!(status, 201, "{body}");
            server
        });
        (runtime, server)
    })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::PATCH),
        Just(Method::DELETE),
        Just(Method::HEAD),
        Just(Method::OPTIONS),
    ]
}

fn path() -> impl Strategy<Value = String> {
    let base = prop_oneof![
        Just("/apis/example.com/v1/namespaces/default/widgets".to_owned()),
        Just("/apis/example.com/v1/namespaces/default/widgets/w".to_owned()),
        Just("/apis/example.com/v1/namespaces/default/widgets/w/status".to_owned()),
        Just("/apis/example.com/v1/widgets".to_owned()),
        Just("/api/v1/namespaces".to_owned()),
        Just("/api/v1/namespaces/default".to_owned()),
        Just("/apis/apiextensions.k8s.io/v1/customresourcedefinitions".to_owned()),
        Just("/apis".to_owned()),
        Just("/openapi/v3/apis/example.com/v1".to_owned()),
    ];
    let segment = "[a-zA-Z0-9._~%-]{0,12}";
    (base, proptest::collection::vec(segment, 0..3)).prop_map(|(base, extra)| {
        if extra.is_empty() {
            base
        } else {
            format!("{base}/{}", extra.join("/"))
        }
    })
}

fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("labelSelector"),
        Just("fieldSelector"),
        Just("limit"),
        Just("continue"),
        Just("resourceVersion"),
        Just("resourceVersionMatch"),
        Just("dryRun"),
        Just("fieldValidation"),
        Just("fieldManager"),
        Just("force"),
        Just("timeout"),
    ];
    let value = "[ -~]{0,20}";
    proptest::collection::vec((key, value), 0..4).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| {
                let encoded: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
                format!("{k}={encoded}")
            })
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        Just(None),
        Just(Some("application/json")),
        Just(Some("application/yaml")),
        Just(Some("application/merge-patch+json")),
        Just(Some("application/json-patch+json")),
        Just(Some("application/strategic-merge-patch+json")),
        Just(Some("application/apply-patch+yaml")),
        Just(Some("application/vnd.kubernetes.protobuf")),
        Just(Some("text/plain")),
    ]
}

/// Replaces the value at a random place of a valid object with a random JSON value.
fn mutated_object() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[ -~]{0,30}".prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
        Just(json!([1, "a", null])),
    ];
    let place = prop_oneof![
        Just(vec!["metadata"]),
        Just(vec!["metadata", "name"]),
        Just(vec!["metadata", "namespace"]),
        Just(vec!["metadata", "labels"]),
        Just(vec!["metadata", "annotations"]),
        Just(vec!["metadata", "finalizers"]),
        Just(vec!["metadata", "resourceVersion"]),
        Just(vec!["metadata", "generateName"]),
        Just(vec!["apiVersion"]),
        Just(vec!["kind"]),
        Just(vec!["spec"]),
        Just(vec!["status"]),
    ];
    (place, leaf).prop_map(|(place, leaf)| {
        let mut object = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "labels": {"a": "b"}}, "spec": {"size": 1}});
        let mut target = &mut object;
        for (i, key) in place.iter().enumerate() {
            if i + 1 == place.len() {
                target[*key] = leaf.clone();
            } else {
                target = &mut target[*key];
            }
        }
        object.to_string().into_bytes()
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        "[ -~\n]{0,200}".prop_map(String::into_bytes),
        mutated_object(),
        Just(b"k8s\0".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..60).prop_map(|mut rest| {
            let mut body = b"k8s\0".to_vec();
            body.append(&mut rest);
            body
        }),
        Just(br#"[{"op":"remove","path":"/metadata"}]"#.to_vec()),
        Just(br#"[{"op":"test","path":"/spec/size","value":2}]"#.to_vec()),
        Just(br#"{"metadata":{"finalizers":["a/b"]}}"#.to_vec()),
        Just(b"a: [unclosed".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn any_request_gets_a_status_never_a_panic_or_5xx(
        method in method(),
        path in path(),
        query in query(),
        content_type in content_type(),
        body in body(),
    ) {
        let (runtime, fixture) = fixture();
        let uri = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
        let Ok(uri) = uri.parse::<axum::http::Uri>() else { return Ok(()) };
        let mut request = Request::builder().method(method.clone()).uri(uri);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let request = request.body(Body::from(body)).unwrap();
        let server = fixture.server.clone();
        let (status, bytes) = runtime.block_on(async move {
            let response = dispatch(server, admin(), request).await;
            let status = response.status();
            // Watches stream forever; their first bytes are enough.
            let bytes = if status.is_success() {
                Vec::new()
            } else {
                axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap().to_vec()
            };
            (status, bytes)
        });
        prop_assert!(status.as_u16() < 500, "{method} {path}?{query} answered {status}: {}", String::from_utf8_lossy(&bytes));
        if status.as_u16() >= 400 {
            let status_object: Value = serde_json::from_slice(&bytes).expect("errors are JSON");
            prop_assert_eq!(&status_object["kind"], "Status");
            prop_assert!(status_object["message"].as_str().is_some_and(|m| !m.is_empty()));
            prop_assert_eq!(status_object["code"].as_u64(), Some(u64::from(status.as_u16())));
        }
    }
}
