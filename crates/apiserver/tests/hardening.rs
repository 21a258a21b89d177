//! Hostile requests change nothing and break nothing: patches that would nest objects past
//! what can be read back or double them in size, objects too large to store, objects the
//! store holds but nobody can read (the server still starts, watchers are told, and they
//! can be deleted),
//! malformed options, and clients that hold too much at once.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bytes::Bytes;
use fleetdb_apiserver::{ApiServer, Identity, Limits, dispatch};
use fleetdb_store::{Condition, Store};

use serde_json::{Value, json};

mod support;

use support::{TestServer, admin};

/// A value nested `levels` objects deep.
fn nested(levels: usize) -> Value {
    let mut value = json!("bottom");
    for _ in 0..levels {
        value = json!({"x": value});
    }
    value
}

async fn namespace_default(f: &TestServer) -> Value {
    let (status, body) = f
        .call(Method::GET, "/api/v1/namespaces/default", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn json_patch(f: &TestServer, uri: &str, patch: Value) -> (StatusCode, Value) {
    let (status, _, body) = f
        .call_with(
            admin(),
            Method::PATCH,
            uri,
            &[("content-type", "application/json-patch+json")],
            patch,
        )
        .await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_that_would_nest_too_deep_are_refused_and_change_nothing() {
    let f = TestServer::embedded().await;
    let before = namespace_default(&f).await;
    // Two operations, each within the decoder's depth, together far past it.
    let deep_path: String = "/spec/deep".to_owned() + &"/x".repeat(90);
    let (status, body) = json_patch(
        &f,
        "/api/v1/namespaces/default",
        json!([
            {"op": "add", "path": "/spec/deep", "value": nested(90)},
            {"op": "add", "path": deep_path, "value": nested(90)},
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("levels deep"),
        "{body}"
    );
    // A merge patch as deep as a body may be (the decoder's limit) is refused as well.
    let (status, body) = f
        .call(
            Method::PATCH,
            "/api/v1/namespaces/default",
            json!({"spec": {"deep": nested(120)}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(namespace_default(&f).await, before, "nothing changed");
    // And the server starts again over this store, as before.
    ApiServer::new(f.store.clone(), "127.0.0.1:6443".into())
        .await
        .expect("a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_bomb_is_refused() {
    let f = TestServer::embedded().await;
    let (status, _) = f
        .call(
            Method::PATCH,
            "/api/v1/namespaces/default",
            json!({"metadata": {"annotations": {"pad": "x".repeat(100_000)}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let before = namespace_default(&f).await;
    // Each copy doubles the object: 40 of them would need terabytes.
    let bomb: Vec<Value> = (0..40)
        .map(|i| json!({"op": "copy", "from": "/metadata", "path": format!("/spec/c{i}")}))
        .collect();
    let (status, body) = json_patch(&f, "/api/v1/namespaces/default", Value::Array(bomb)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("adds more than"),
        "{body}"
    );
    let too_many: Vec<Value> = (0..10_001)
        .map(|_| json!({"op": "test", "path": "/kind", "value": "Namespace"}))
        .collect();
    let (status, body) = json_patch(&f, "/api/v1/namespaces/default", Value::Array(too_many)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(namespace_default(&f).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_too_large_to_store_is_a_413_naming_the_limit() {
    let f = TestServer::embedded().await;
    f.install_widgets().await;
    let (status, body) = f
        .call(
            Method::POST,
            "/apis/example.com/v1/namespaces/default/widgets",
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "big"},
                "spec": {"pad": "x".repeat(2 << 20)}}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("bytes in storage; the limit is 1572864 bytes"),
        "{body}"
    );
    let (status, _) = f
        .call(Method::GET, "/api/v1/namespaces/big", Value::Null)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_objects_do_not_stop_the_server_and_can_be_deleted() {
    let f = TestServer::embedded().await;
    f.install_widgets().await;
    let garbage = Bytes::from_static(b"{\"metadata\": not json");
    let too_deep = Bytes::from(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "deep"}, "spec": nested(200)})
            .to_string(),
    );
    // Valid JSON of the wrong shape is as unreadable as invalid JSON: no write may index
    // into it as if it were an object.
    let array = Bytes::from_static(b"[1]");
    let odd_metadata = Bytes::from_static(
        b"{\"apiVersion\": \"example.com/v1\", \"kind\": \"Widget\", \"metadata\": 5}",
    );
    for (key, value) in [
        ("/registry/core/namespaces/broken", garbage.clone()),
        ("/registry/core/namespaces/deep", too_deep),
        ("/registry/example.com/widgets/default/broken", garbage),
        ("/registry/example.com/widgets/default/array", array),
        ("/registry/example.com/widgets/default/odd", odd_metadata),
    ] {
        f.store.put(key, value, Condition::Always).await.unwrap();
    }
    // A namespace that is being deleted and cannot be read must not stop the controller
    // from starting either: a new server over the same store starts and serves.
    let server = ApiServer::new(f.store.clone(), "127.0.0.1:6443".into())
        .await
        .expect("the server starts over damaged objects");
    let restarted = TestServer::over(server, f.store.clone());
    let (status, body) = restarted
        .call(Method::GET, "/api/v1/namespaces/broken", Value::Null)
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("cannot be read"),
        "{body}"
    );
    for uri in [
        "/apis/example.com/v1/namespaces/default/widgets/array",
        "/apis/example.com/v1/namespaces/default/widgets/odd",
    ] {
        for (method, body) in [
            (Method::GET, Value::Null),
            (
                Method::PUT,
                json!({"apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": uri.rsplit('/').next().unwrap(), "resourceVersion": "1"}}),
            ),
        ] {
            let (status, answer) = restarted.call(method.clone(), uri, body).await;
            assert_eq!(
                status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "{method} {uri}: {answer}"
            );
            assert!(
                answer["message"]
                    .as_str()
                    .unwrap()
                    .contains("cannot be read"),
                "{method} {uri}: {answer}"
            );
        }
        let status_uri = format!("{uri}/status");
        let (status, _, answer) = restarted
            .call_with(
                admin(),
                Method::PATCH,
                &status_uri,
                &[("content-type", "application/merge-patch+json")],
                json!({"status": {"ready": true}}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{status_uri}: {answer}"
        );
    }
    for uri in [
        "/api/v1/namespaces/broken",
        "/api/v1/namespaces/deep",
        "/apis/example.com/v1/namespaces/default/widgets/broken",
        "/apis/example.com/v1/namespaces/default/widgets/array",
        "/apis/example.com/v1/namespaces/default/widgets/odd",
    ] {
        let (status, body) = restarted.call(Method::DELETE, uri, Value::Null).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert_eq!(body["status"], "Success", "{uri}: {body}");
        let (status, _) = restarted.call(Method::GET, uri, Value::Null).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
}

/// The watch events in a watch body, one per line, until it ends or is quiet for `quiet`.
async fn watch_events(
    stream: &mut (impl futures::Stream<Item = Result<Bytes, axum::Error>> + Unpin),
    wanted: usize,
    quiet: std::time::Duration,
) -> (Vec<Value>, bool) {
    use futures::StreamExt;
    let mut buffer = Vec::new();
    let mut events = Vec::new();
    let mut ended = false;
    while events.len() < wanted {
        match tokio::time::timeout(quiet, stream.next()).await {
            Ok(Some(chunk)) => buffer.extend_from_slice(&chunk.unwrap()),
            Ok(None) => {
                ended = true;
                break;
            }
            Err(_) => break,
        }
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            events.push(serde_json::from_slice(&line).unwrap());
        }
    }
    if !ended && events.len() >= wanted {
        // Whether the watch ends right after what was wanted.
        ended = matches!(tokio::time::timeout(quiet, stream.next()).await, Ok(None));
    }
    (events, ended)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_cannot_be_read_ends_the_watches_it_concerns_with_an_error() {
    let f = TestServer::embedded().await;
    f.install_widgets().await;
    let (status, good) = f
        .call(
            Method::POST,
            "/apis/example.com/v1/namespaces/default/widgets",
            json!({"apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "good", "labels": {"tier": "web"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{good}");
    let rv = good["metadata"]["resourceVersion"].as_str().unwrap();
    // One watcher served the stored bytes, one that must decode them for its selector (it
    // matched `good`: without an error it would keep it forever once it is overwritten with
    // bytes nobody can read and then deleted), one of another key.
    let mut streams = Vec::new();
    for uri in [
        format!("/apis/example.com/v1/widgets?watch=true&resourceVersion={rv}"),
        format!(
            "/apis/example.com/v1/widgets?watch=true&resourceVersion={rv}&labelSelector=tier%3Dweb"
        ),
        format!(
            "/apis/example.com/v1/namespaces/default/widgets?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3Dother"
        ),
    ] {
        let request = Request::builder().uri(&uri).body(Body::empty()).unwrap();
        let watch = dispatch(f.server.clone(), admin(), request).await;
        assert_eq!(watch.status(), StatusCode::OK, "{uri}");
        streams.push(watch.into_body().into_data_stream());
    }
    let key = format!("{}default/good", support::PREFIX);
    f.store
        .put(&key, Bytes::from_static(b"[1]"), Condition::Always)
        .await
        .unwrap();
    f.store.delete(&key, Condition::Always).await.unwrap();
    let (status, body) = f
        .call(
            Method::POST,
            "/apis/example.com/v1/namespaces/default/widgets",
            json!({"apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "other", "labels": {"tier": "web"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let quiet = std::time::Duration::from_secs(5);
    for stream in &mut streams[..2] {
        let (events, ended) = watch_events(stream, 1, quiet).await;
        assert_eq!(events.len(), 1, "{events:?}");
        let error = &events[0];
        assert_eq!(error["type"], "ERROR", "{error}");
        assert_eq!(error["object"]["kind"], "Status", "{error}");
        assert_eq!(error["object"]["code"], 500, "{error}");
        let message = error["object"]["message"].as_str().unwrap();
        assert!(
            message.contains("cannot be read") && message.contains("good"),
            "{error}"
        );
        assert!(ended, "the watch ends after its error");
    }
    // The change of another key is none of this watcher's business.
    let (events, ended) = watch_events(&mut streams[2], 1, quiet).await;
    assert!(!ended);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ADDED", "{}", events[0]);
    assert_eq!(events[0]["object"]["metadata"]["name"], "other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_options_are_refused_with_kubernetes_words() {
    let f = TestServer::embedded().await;
    for uri in [
        "/api/v1/namespaces?resourceVersion=abc",
        "/api/v1/namespaces/default?resourceVersion=abc",
        "/api/v1/namespaces?watch=true&resourceVersion=abc",
        "/api/v1/namespaces?resourceVersion=-1",
    ] {
        let (status, body) = f.call(Method::GET, uri, Value::Null).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("resourceVersion: Invalid value:"),
            "{uri}: {body}"
        );
    }
    let (status, body) = f
        .call(
            Method::GET,
            "/api/v1/namespaces?resourceVersionMatch=NotOlderThan",
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("resourceVersionMatch is forbidden unless resourceVersion is provided"),
        "{body}"
    );
    let manager = "m".repeat(129);
    let (status, body) = f
        .call(
            Method::POST,
            &format!("/api/v1/namespaces?fieldManager={manager}"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["message"],
        "CreateOptions.meta.k8s.io \"\" is invalid: fieldManager: Too long: may not be more than 128 bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_fields_stay_bounded_whoever_writes() {
    let f = TestServer::embedded().await;
    for i in 0..30 {
        let (status, body) = f
            .call(
                Method::PATCH,
                &format!("/api/v1/namespaces/default?fieldManager=writer-{i}"),
                json!({"metadata": {"labels": {format!("l{i}"): "x"}}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let namespace = namespace_default(&f).await;
    let updates = namespace["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == "Update")
        .count();
    assert!(
        updates <= fleetdb_machinery::apply::MAX_UPDATE_MANAGERS,
        "{namespace}"
    );
}

/// A server whose users may hold one request and two watches at a time, and may do
/// anything RBAC governs (they are not in `system:masters`, so the limits apply).
async fn strict_server() -> TestServer {
    let f = TestServer::embedded_with_limits(&Limits {
        max_requests_in_flight_per_user: 1,
        max_watches_per_user: 2,
        ..Limits::default()
    })
    .await;
    let (status, body) = f
        .call(
            Method::POST,
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            json!({"metadata": {"name": "everyone-admin"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "Group", "name": "system:authenticated"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identity_cannot_hold_more_than_its_share() {
    let f = strict_server().await;
    let bob = Identity::new("bob", &["system:authenticated"]);
    // A create whose body never finishes holds bob's only request slot.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let slow = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/namespaces")
        .body(Body::from_stream(tokio_stream_of(receiver)))
        .unwrap();
    let server = f.server.clone();
    let held_by = bob.clone();
    let held = tokio::spawn(async move { dispatch(server, held_by, slow).await });
    // The channel holds one chunk: the second is taken only once the server reads the body,
    // that is, once the request holds its slot (no guess at how long that takes).
    for chunk in ["{\"apiVersion\": ", "\"v1\", "] {
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            sender.send(Ok(Bytes::from_static(chunk.as_bytes()))),
        )
        .await
        .expect("the server reads the body")
        .unwrap();
    }
    let (status, headers, body) = f
        .call_with(
            bob.clone(),
            Method::GET,
            "/api/v1/namespaces",
            &[],
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["reason"], "TooManyRequests");
    assert_eq!(headers["retry-after"], "1");
    // Others are not affected, and system:masters is exempt, as in kube-apiserver.
    let other = Identity::new("someone-else", &["system:authenticated"]);
    let (status, _, _) = f
        .call_with(other, Method::GET, "/api/v1/namespaces", &[], Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK);
    drop(sender);
    let _ = held.await;
    let (status, _, _) = f
        .call_with(
            bob.clone(),
            Method::GET,
            "/api/v1/namespaces",
            &[],
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "the slot came back");

    // Two watches, not three.
    let watch = |who: Identity| {
        let server = f.server.clone();
        async move {
            let request = Request::builder()
                .uri("/api/v1/namespaces?watch=true")
                .body(Body::empty())
                .unwrap();
            dispatch(server, who, request).await
        }
    };
    let first = watch(bob.clone()).await;
    let second = watch(bob.clone()).await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    assert_eq!(
        watch(bob.clone()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        watch(admin()).await.status(),
        StatusCode::OK,
        "masters are exempt"
    );
    drop(first);
    assert_eq!(
        watch(bob).await.status(),
        StatusCode::OK,
        "a closed watch frees its slot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_served_resource_has_a_watch_feed_before_its_first_watch() {
    // A restart storm lists and then watches: were feeds started by the first watch, the
    // clients that listed before it would each get a store watch of their own.
    let f = TestServer::embedded().await;
    let storage = f.server.registry().storage();
    let fed = storage.fed_prefixes();
    for prefix in ["/registry/core/namespaces/", "/registry/core/configmaps/"] {
        assert!(fed.iter().any(|p| p == prefix), "{prefix} in {fed:?}");
    }
    assert!(!fed.contains(&support::PREFIX.to_owned()), "{fed:?}");
    f.install_widgets().await;
    assert!(
        storage.fed_prefixes().contains(&support::PREFIX.to_owned()),
        "a new definition's resource is fed from the moment it is served"
    );
    // A restarted server over the same store starts them all again.
    let server = ApiServer::new(f.store.clone(), "127.0.0.1:6443".into())
        .await
        .unwrap();
    let fed = server.registry().storage().fed_prefixes();
    assert!(fed.contains(&support::PREFIX.to_owned()), "{fed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_feed_of_a_deleted_definition_is_released() {
    let f = TestServer::embedded().await;
    f.install_widgets().await;
    let request = Request::builder()
        .uri("/apis/example.com/v1/widgets?watch=true")
        .body(Body::empty())
        .unwrap();
    let watch = dispatch(f.server.clone(), admin(), request).await;
    assert_eq!(watch.status(), StatusCode::OK);
    let storage = f.server.registry().storage();
    assert!(storage.fed_prefixes().contains(&support::PREFIX.to_owned()));
    let (status, body) = f
        .call(
            Method::DELETE,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        !storage.fed_prefixes().contains(&support::PREFIX.to_owned()),
        "the feed went with its CRD"
    );
    // Its watcher was told to go (the stream ends).
    use futures::StreamExt;
    let mut body = watch.into_body().into_data_stream();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while body.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the watch of a deleted kind ends");
}

/// A body stream fed by a channel.
fn tokio_stream_of(
    receiver: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_expire_once_last_seen_longer_ago_than_the_ttl() {
    // Which time counts is unit-tested (`event_ttl::tests`); here the sweep itself: every
    // Event goes, none before the TTL has passed since its creation (timestamps are whole
    // seconds, hence the second of slack), and a time far in the future keeps none alive.
    let ttl = std::time::Duration::from_secs(5);
    let f = TestServer::embedded_with_limits(&Limits {
        event_ttl: ttl,
        ..Limits::default()
    })
    .await;
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let stamp = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let core_uri = "/api/v1/namespaces/default/events";
    let newer_uri = "/apis/events.k8s.io/v1/namespaces/default/events";
    let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "recorded"},
        "involvedObject": {"kind": "Namespace", "name": "default"},
        "reason": "Test", "message": "m", "type": "Normal", "count": 2,
        "firstTimestamp": stamp(now - time::Duration::hours(2)),
        "lastTimestamp": stamp(now - time::Duration::hours(1))});
    let future = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "from-the-future"},
        "regarding": {"kind": "Namespace", "name": "default"}, "reason": "Test",
        "note": "n", "type": "Normal", "action": "Tested",
        "reportingController": "test", "reportingInstance": "test",
        "eventTime": "2099-01-01T00:00:00.000000Z"});
    let created = std::time::Instant::now();
    for (uri, body) in [(core_uri, core), (newer_uri, future)] {
        let (status, answer) = f.call(Method::POST, uri, body).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let exists = |uri: String| {
        let f = &f;
        async move { f.call(Method::GET, &uri, Value::Null).await.0 == StatusCode::OK }
    };
    let uris = [
        format!("{core_uri}/recorded"),
        format!("{newer_uri}/from-the-future"),
    ];
    // Both expire 5 s after their creation second, so at least 4 s after they were
    // written: two seconds in, with sweeps every second, both are still there.
    tokio::time::sleep_until((created + std::time::Duration::from_secs(2)).into()).await;
    for uri in &uris {
        assert!(exists(uri.clone()).await, "{uri} went before its TTL");
    }
    let deadline = created + std::time::Duration::from_secs(30);
    for uri in &uris {
        while exists(uri.clone()).await {
            assert!(std::time::Instant::now() < deadline, "{uri} expires");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    // The deletions are in history, by the sweep's identity.
    let versions = f
        .store
        .history("/registry/core/events/default/recorded", None, 10)
        .await
        .unwrap();
    let deletion = versions.first().expect("the Event's history");
    assert!(deletion.kv.is_none(), "the newest change is the deletion");
    let note = String::from_utf8_lossy(&deletion.note);
    assert!(note.contains("system:event-ttl"), "{note}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_and_events_hold_only_what_typed_clients_can_read() {
    // One Lease no typed client can decode would break every typed list of Leases (the
    // controllers' among them): such writes are refused, naming the field.
    let f = TestServer::embedded().await;
    let leases = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
    let lease = |name: &str, spec: Value| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name}, "spec": spec})
    };
    for (spec, field) in [
        (json!({"renewTime": "soon"}), "spec.renewTime"),
        (
            json!({"leaseDurationSeconds": "40"}),
            "spec.leaseDurationSeconds",
        ),
        (
            json!({"leaseDurationSeconds": 1u64 << 40}),
            "spec.leaseDurationSeconds",
        ),
        (
            json!({"holderIdentity": {"who": "me"}}),
            "spec.holderIdentity",
        ),
    ] {
        let (status, body) = f.call(Method::POST, leases, lease("bad", spec)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["details"]["causes"][0]["field"], field, "{body}");
    }
    let (status, _) = f
        .call(Method::GET, &format!("{leases}/bad"), Value::Null)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");

    let good = json!({"holderIdentity": "h1", "leaseDurationSeconds": 40,
        "renewTime": "2026-12-01T10:00:00.000000Z"});
    let (status, body) = f.call(Method::POST, leases, lease("h1", good)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _, body) = f
        .call_with(
            admin(),
            Method::PATCH,
            &format!("{leases}/h1"),
            &[("content-type", "application/merge-patch+json")],
            json!({"spec": {"renewTime": "later"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, stored) = f
        .call(Method::GET, &format!("{leases}/h1"), Value::Null)
        .await;
    assert_eq!(stored["spec"]["renewTime"], "2026-12-01T10:00:00.000000Z");

    // Unknown fields are dropped with a warning, or refused when the client asks for strict
    // validation (kubectl's default), as kube-apiserver does for its own kinds.
    let (status, headers, body) = f
        .call_with(
            admin(),
            Method::POST,
            leases,
            &[],
            lease("h2", json!({"holderIdentity": "h2", "colour": "blue"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["spec"].get("colour").is_none(), "{body}");
    let warning = headers
        .get("warning")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        warning
            .as_deref()
            .is_some_and(|w| w.contains("unknown field") && w.contains("spec.colour")),
        "{warning:?}"
    );
    let (status, _, body) = f
        .call_with(
            admin(),
            Method::POST,
            &format!("{leases}?fieldValidation=Strict"),
            &[],
            lease("h3", json!({"colour": "blue"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Events: what client-go sends (unset times as null) is accepted; wrong types are not.
    let events = "/api/v1/namespaces/default/events";
    let event = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1"},
        "involvedObject": {"kind": "Lease", "name": "h1", "namespace": "default"},
        "reason": "Renewed", "message": "m", "type": "Normal", "count": 1,
        "firstTimestamp": "2026-12-01T10:00:00Z", "lastTimestamp": "2026-12-01T10:00:00Z",
        "eventTime": null, "source": {"component": "agent"}});
    let (status, body) = f.call(Method::POST, events, event.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.get("eventTime").is_none_or(Value::is_null), "{body}");
    let mut bad = event.clone();
    bad["metadata"]["name"] = json!("e2");
    bad["count"] = json!("many");
    let (status, body) = f.call(Method::POST, events, bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["details"]["causes"][0]["field"], "count", "{body}");
    let mut orphan = event;
    orphan["metadata"]["name"] = json!("e3");
    orphan.as_object_mut().unwrap().remove("involvedObject");
    let (status, body) = f.call(Method::POST, events, orphan).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let newer = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "n1"}, "reason": "Test", "note": "n", "type": "Normal",
        "action": "Tested", "reportingController": "t", "reportingInstance": "t",
        "eventTime": "yesterday"});
    let (status, body) = f
        .call(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/default/events",
            newer,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["details"]["causes"][0]["field"], "eventTime", "{body}");
}
