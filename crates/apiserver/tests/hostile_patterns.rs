//! Hostile schemas and large values: CRD `pattern`s are compiled once, on a linear-time
//! engine, within size limits. A pattern whose compiled form would be huge is refused when
//! the CRD is written; one with nested bounded repetitions is accepted and matched against a
//! megabyte in linear time, while other requests go on being answered.
//!
//! The figures (how long the create took, how other requests fared meanwhile) come from
//! `fleetdb-bench api --scenario hostile`; the deadlines here only catch a server that
//! backtracks (minutes, not milliseconds).

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

mod support;

use support::TestServer;

/// Far beyond the one second the create needs; only a backtracking engine misses it.
const HANG_GUARD: Duration = Duration::from_secs(20);

fn crd(name: &str, pattern: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{name}.example.com")},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": name, "kind": "Thing"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {"type": "object", "properties": {
                        "text": {"type": "string", "pattern": pattern},
                    }}},
                }},
            }],
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_too_large_to_compile_is_refused_with_the_crd() {
    let f = TestServer::embedded().await;
    let (status, body) = f
        .call(
            Method::POST,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            crd("things", "^((a{1,1000}){1,1000}){1,1000}$"),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(".pattern: Invalid value: \"^((a{1,1000}){1,1000}){1,1000}$\": must be a valid regular expression, but isn't"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_against_nested_repetitions_is_answered_and_others_are_served() {
    let f = TestServer::embedded().await;
    let (status, body) = f
        .call(
            Method::POST,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            crd("things", "^(a|aa|a{1,20}){1,20}(b+b+)+$"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let huge = "a".repeat(1 << 20);
    let object = json!({"apiVersion": "example.com/v1", "kind": "Thing",
        "metadata": {"name": "big"}, "spec": {"text": huge}});
    let started = Instant::now();
    let create = f.call(
        Method::POST,
        "/apis/example.com/v1/namespaces/default/things",
        object,
    );
    // Requests beside it: they must keep being answered while the create is validated.
    let beside = async {
        let mut answered = 0;
        for _ in 0..20 {
            let (status, _) = f
                .call(Method::GET, "/api/v1/namespaces/default", Value::Null)
                .await;
            assert_eq!(status, StatusCode::OK);
            answered += 1;
        }
        answered
    };
    let ((status, body), answered) =
        tokio::time::timeout(HANG_GUARD, async { tokio::join!(create, beside) })
            .await
            .expect("the server answers instead of backtracking");
    eprintln!(
        "a 1 MiB value against a nested pattern: {status} after {:?}",
        started.elapsed()
    );
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("spec.text in body should match '^(a|aa|a{1,20}){1,20}(b+b+)+$'"),
        "{body}"
    );
    assert_eq!(answered, 20);
}
