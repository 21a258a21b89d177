//! Lists longer than one read, checked in-process against the real router and the embedded
//! store: an unpaged plain-JSON list is streamed chunk by chunk at one revision (every item
//! once, in key order, as of the list's resourceVersion, whatever is written meanwhile), on
//! the scan and on the label index; paged lists still page, with `limit` and the bytes of one
//! response bounded; the producer stays a few chunks ahead of a client that does not read and
//! stops when it leaves; a failure before the answer is a Status, one after it cuts the body.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::http::{Method, Request, StatusCode};
use bytes::Bytes;
use fleetdb_apiserver::dispatch;
use fleetdb_apiserver::http::LIST_STREAM_CHUNKS;
use fleetdb_apiserver::registry::watch::WATCH_SNAPSHOT_PAGE;
use fleetdb_apiserver::registry::{
    LIST_CHUNK_BYTES, LIST_STREAM_PAGE as LIST_STORE_PAGE, MAX_LIST_LIMIT,
};
use fleetdb_apiserver::storage::WATCH_CACHE_EVENTS;
use fleetdb_store::{Condition, Revision, Store};
use futures::StreamExt;
use serde_json::{Value, json};

mod support;

use support::{PREFIX, TestServer, WIDGETS, admin, body_json};

/// Widgets per label group (`group=g{i % GROUPS}`).
const GROUPS: usize = 4;

type Fixture = TestServer;

impl TestServer {
    /// A server on the embedded store with the widget CRD and `count` widgets in namespace
    /// `a`.
    async fn new(count: usize) -> Self {
        let f = Self::embedded().await;
        f.install_widgets().await;
        f.load(count).await;
        f
    }

    /// Writes widgets `w00000`.. straight to the store, as the API stores them (without
    /// resourceVersion); every 7th without apiVersion and kind, so it is served decoded and
    /// re-encoded instead of spliced.
    async fn load(&self, count: usize) {
        let store: Arc<dyn Store> = self.store.clone();
        let tasks: Vec<_> = (0..16)
            .map(|worker| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in (worker..count).step_by(16) {
                        store
                            .put(&key(i), widget(i, 0), Condition::Always)
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    }

    /// A list answered in one body (not streamed).
    async fn get_buffered(&self, uri: &str) -> Value {
        let response = self.request(uri).await;
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        assert!(
            response.body().size_hint().exact().is_some(),
            "{uri}: one body"
        );
        body_json(response).await
    }

    /// Reads every page of a paged list, checking they share one resourceVersion and stay
    /// within `limit`; the items, the revision and the number of pages.
    async fn list_pages(&self, uri: &str, limit: usize) -> (Vec<Value>, Revision, usize) {
        let mut items = Vec::new();
        let mut revision = None;
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let page_uri = match &token {
                Some(token) => support::continued(&format!("{uri}&limit={limit}"), token),
                None => format!("{uri}&limit={limit}"),
            };
            let page = self.get_buffered(&page_uri).await;
            pages += 1;
            let rv = list_revision(&page);
            assert_eq!(*revision.get_or_insert(rv), rv, "pages of one snapshot");
            let page_items = page["items"].as_array().unwrap();
            assert!(page_items.len() <= limit, "{page_uri}");
            items.extend(page_items.iter().cloned());
            match page["metadata"]["continue"].as_str() {
                Some(next) => {
                    assert!(
                        !page_items.is_empty(),
                        "a page with a continue token has items"
                    );
                    token = Some(next.to_owned());
                }
                None => return (items, rv, pages),
            }
        }
    }
}

fn key(i: usize) -> String {
    format!("{PREFIX}a/w{i:05}")
}

fn widget(i: usize, generation: u64) -> Bytes {
    widget_in(i, generation, i % GROUPS)
}

fn widget_in(i: usize, generation: u64, group: usize) -> Bytes {
    let mut object = json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": format!("w{i:05}"), "namespace": "a", "uid": format!("uid-{i}"),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"group": format!("g{group}")}},
        "spec": {"index": i, "generation": generation, "pad": "x".repeat(64)},
    });
    if i.is_multiple_of(7) {
        let map = object.as_object_mut().unwrap();
        map.remove("apiVersion");
        map.remove("kind");
    }
    Bytes::from(object.to_string())
}

fn list_revision(list: &Value) -> Revision {
    list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Checks a streamed list: the envelope, every expected item once and in key order, each
/// served whole (apiVersion, kind, a resourceVersion not newer than the list's).
fn check_list(list: &Value, expected: &[usize]) {
    assert_eq!(list["apiVersion"], "example.com/v1");
    assert_eq!(list["kind"], "WidgetList");
    assert!(
        list["metadata"].get("continue").is_none(),
        "{}",
        list["metadata"]
    );
    let revision = list_revision(list);
    let items = list["items"].as_array().unwrap();
    let want: Vec<String> = expected.iter().map(|i| format!("w{i:05}")).collect();
    assert_eq!(names(items), want);
    for item in items {
        assert_eq!(item["apiVersion"], "example.com/v1");
        assert_eq!(item["kind"], "Widget");
        let rv: Revision = item["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(rv > 0 && rv <= revision, "{rv} at {revision}");
    }
}

/// More widgets than the first read of an unpaged list plus the chunks the producer may
/// queue, so a client that does not read holds the producer back before the end.
const STREAMED: usize = LIST_STORE_PAGE * (LIST_STREAM_CHUNKS + 4) + LIST_STORE_PAGE / 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaged_list_is_streamed_at_one_revision() {
    let f = Fixture::new(STREAMED).await;
    let response = f.request(WIDGETS).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(
        response.body().size_hint().exact().is_none(),
        "a list longer than one read is streamed"
    );
    // Written after the list's first read, before the client reads the rest: the list does
    // not see them (the last keys are read last).
    let last = STREAMED - 1;
    f.store
        .put(&key(STREAMED), widget(STREAMED, 0), Condition::Always)
        .await
        .unwrap();
    f.store
        .put(&key(last - 1), widget(last - 1, 1), Condition::Always)
        .await
        .unwrap();
    f.store.delete(&key(last), Condition::Always).await.unwrap();
    let list = body_json(response).await;
    check_list(&list, &(0..STREAMED).collect::<Vec<_>>());
    let items = list["items"].as_array().unwrap();
    assert_eq!(
        items[last - 1]["spec"]["generation"],
        0,
        "as of the list's revision"
    );
    assert_eq!(items[last]["metadata"]["name"], format!("w{last:05}"));

    // The same list, paged, at the streamed list's revision: the same items.
    let revision = list_revision(&list);
    let uri = format!("{WIDGETS}?resourceVersionMatch=Exact&resourceVersion={revision}");
    let (paged, paged_revision, pages) = f.list_pages(&uri, 700).await;
    assert_eq!(paged_revision, revision);
    assert_eq!(pages, STREAMED.div_ceil(700));
    assert_eq!(&paged, items);

    // Now: the new widget and not the deleted one; streamed again, the paged answer again.
    let now = body_json(f.request(WIDGETS).await).await;
    let mut expected: Vec<usize> = (0..=STREAMED).filter(|i| *i != last).collect();
    check_list(&now, &expected);
    let (paged, _, _) = f.list_pages(&format!("{WIDGETS}?"), 1000).await;
    assert_eq!(&paged, now["items"].as_array().unwrap());

    // One namespace (the same keys), and one that is empty.
    let namespaced = body_json(f.request("/apis/example.com/v1/namespaces/a/widgets").await).await;
    check_list(&namespaced, &expected);
    let empty = f
        .get_buffered("/apis/example.com/v1/namespaces/b/widgets")
        .await;
    assert_eq!(empty["items"], json!([]));

    // Selected by the scan (no positive label requirement): streamed with the selector.
    let uri = format!("{WIDGETS}?labelSelector=group%21%3Dg1");
    let selected = body_json(f.request(&uri).await).await;
    expected.retain(|i| i % GROUPS != 1);
    check_list(&selected, &expected);

    // A small answer is one body; a long Table is streamed like the list.
    let small = f
        .get_buffered(&format!("{WIDGETS}?labelSelector=group%3Dg1,index%3D1"))
        .await;
    assert_eq!(small["items"], json!([]));
    let request = Request::builder()
        .uri(WIDGETS)
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Body::empty())
        .unwrap();
    let table = dispatch(f.server.clone(), admin(), request).await;
    assert!(table.body().size_hint().exact().is_none());
    let table = body_json(table).await;
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["rows"].as_array().unwrap().len(), STREAMED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_selected_list_is_streamed_from_the_index() {
    // Each group holds more objects than one read, and a quarter of all: selective enough.
    let count = LIST_STORE_PAGE * GROUPS * 5 / 4;
    let f = Fixture::new(count).await;
    let feed = f.feed().await;
    let uri = format!("{WIDGETS}?labelSelector=group%3Dg2");
    let expected: Vec<usize> = (0..count).filter(|i| i % GROUPS == 2).collect();
    // The first label-selected list scans and starts building the index.
    check_list(&body_json(f.request(&uri).await).await, &expected);
    for _ in 0..500 {
        if feed.label_index().is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(feed.label_index().is_ready(), "the label index was built");
    let (served, ranges) = (feed.label_index().lists_served(), f.ranges());
    let response = f.request(&uri).await;
    assert!(response.body().size_hint().exact().is_none(), "streamed");
    // Relabeled after the list's revision: still in the list, as it was.
    let last = expected[expected.len() - 1];
    f.store
        .put(&key(last), widget_in(last, 1, 3), Condition::Always)
        .await
        .unwrap();
    let list = body_json(response).await;
    check_list(&list, &expected);
    assert_eq!(feed.label_index().lists_served(), served + 1);
    assert_eq!(f.ranges(), ranges, "read through the index, without a scan");
    let (paged, _, _) = f
        .list_pages(
            &format!(
                "{uri}&resourceVersionMatch=Exact&resourceVersion={}",
                list_revision(&list)
            ),
            300,
        )
        .await;
    assert_eq!(&paged, list["items"].as_array().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_lists_are_bounded_and_continue() {
    let count = MAX_LIST_LIMIT + 10;
    let f = Fixture::new(count).await;
    // A limit above the largest is served as the largest, with a continue token.
    let first = f.get_buffered(&format!("{WIDGETS}?limit=10000000")).await;
    assert_eq!(first["items"].as_array().unwrap().len(), MAX_LIST_LIMIT);
    let token = first["metadata"]["continue"].as_str().unwrap();
    let rest = f
        .get_buffered(&format!("{WIDGETS}?limit=10000000&continue={token}"))
        .await;
    assert_eq!(list_revision(&rest), list_revision(&first));
    assert!(rest["metadata"].get("continue").is_none());
    let all: Vec<Value> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["items"].as_array().unwrap())
        .cloned()
        .collect();
    assert_eq!(names(&all).len(), count);
    assert!(names(&all).windows(2).all(|w| w[0] < w[1]), "key order");

    // limit + continue page exactly, at one revision, through writes in between.
    let (items, revision, pages) = f.list_pages(&format!("{WIDGETS}?"), 3000).await;
    assert_eq!(pages, count.div_ceil(3000));
    assert_eq!(names(&items), names(&all));
    assert!(revision >= list_revision(&first));
    // A limit that fits the whole answer: no continue token.
    let whole = f
        .get_buffered("/apis/example.com/v1/namespaces/a/widgets?limit=20&labelSelector=group%3Dg0&fieldSelector=metadata.name%3Dw00004")
        .await;
    assert_eq!(names(whole["items"].as_array().unwrap()), ["w00004"]);
    assert!(whole["metadata"].get("continue").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_page_is_one_list_and_one_table_in_key_order() {
    // Pages this large are written on several threads (`PARALLEL_ITEMS_MIN` objects each at
    // least): the parts join in order, each object once, as the list and as Table rows.
    let count = 1000;
    let f = Fixture::new(count).await;
    let uri = format!("{WIDGETS}?limit={count}");
    let list = f.get_buffered(&uri).await;
    let items = list["items"].as_array().unwrap();
    let want: Vec<String> = (0..count).map(|i| format!("w{i:05}")).collect();
    assert_eq!(names(items), want);
    let (status, _, table) = f
        .call_with(
            admin(),
            Method::GET,
            &format!(
                "{uri}&resourceVersion={}&resourceVersionMatch=Exact",
                list_revision(&list)
            ),
            &[("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")],
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{table}");
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), count);
    for (row, item) in rows.iter().zip(items) {
        assert_eq!(row["cells"][0], item["metadata"]["name"]);
        assert_eq!(row["object"]["metadata"], item["metadata"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paged_response_is_bounded_in_bytes() {
    let f = Fixture::new(0).await;
    // Objects of 256 KiB: LIST_CHUNK_BYTES holds a few dozen.
    let size = 256 << 10;
    let count = LIST_CHUNK_BYTES / size * 2 + 3;
    for i in 0..count {
        let object = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": format!("w{i:05}"), "namespace": "a"},
            "spec": {"pad": "x".repeat(size)}});
        f.store
            .put(&key(i), Bytes::from(object.to_string()), Condition::Always)
            .await
            .unwrap();
    }
    let (items, _, pages) = f.list_pages(&format!("{WIDGETS}?"), count).await;
    assert_eq!(names(&items).len(), count);
    assert_eq!(pages, 3, "pages of at most {LIST_CHUNK_BYTES} bytes");
    // Unpaged: streamed in chunks of as many bytes.
    let response = f.request(WIDGETS).await;
    assert!(response.body().size_hint().exact().is_none());
    let list = body_json(response).await;
    assert_eq!(list["items"].as_array().unwrap().len(), count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_waits_for_the_client_and_stops_when_it_leaves() {
    let f = Fixture::new(STREAMED).await;
    let storage = f.server.registry().storage();
    let holders = Arc::strong_count(storage);
    let before = f.ranges();
    let response = f.request(WIDGETS).await;
    let mut body = response.into_body().into_data_stream();
    let head = body.next().await.unwrap().unwrap();
    let envelope =
        br#"{"apiVersion":"example.com/v1","kind":"WidgetList","metadata":{"resourceVersion":""#;
    assert!(
        head.starts_with(envelope),
        "{:?}",
        String::from_utf8_lossy(&head[..100])
    );
    // The client reads nothing more: the producer stops a few chunks ahead.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let read = f.ranges() - before;
    assert!(
        read <= LIST_STREAM_CHUNKS + 2,
        "{read} pages read ahead of a client that does not read"
    );
    assert!(read < STREAMED / LIST_STORE_PAGE);
    assert!(
        Arc::strong_count(storage) > holders,
        "the producer is waiting"
    );
    drop(body);
    for _ in 0..200 {
        if Arc::strong_count(storage) == holders {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(Arc::strong_count(storage), holders, "the producer stopped");
    assert_eq!(f.ranges() - before, read, "and read nothing more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_failures_are_a_status_before_the_answer_and_cut_the_body_after() {
    let f = Fixture::new(LIST_STORE_PAGE * 3).await;
    // Before anything was sent: a Status.
    f.store.fail_all.store(true, Ordering::SeqCst);
    let (status, body) = f.call(Method::GET, WIDGETS, Value::Null).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["code"], 503);
    f.store.fail_all.store(false, Ordering::SeqCst);
    // Errors of the request itself are Statuses too.
    let (status, body) = f
        .call(
            Method::GET,
            &format!("{WIDGETS}?labelSelector=a%20b%20c"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = f
        .call(
            Method::GET,
            &format!("{WIDGETS}?resourceVersionMatch=Exact&resourceVersion=999999999"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // After the header: the body ends with an error, never as a complete list.
    f.store.fail_continued.store(true, Ordering::SeqCst);
    let response = f.request(WIDGETS).await;
    assert_eq!(response.status(), StatusCode::OK);
    let read = axum::body::to_bytes(response.into_body(), usize::MAX).await;
    assert!(read.is_err(), "a truncated list fails");
    f.store.fail_continued.store(false, Ordering::SeqCst);
    let list = body_json(f.request(WIDGETS).await).await;
    check_list(&list, &(0..LIST_STORE_PAGE * 3).collect::<Vec<_>>());
}

/// A watch without a resourceVersion sends the current objects as ADDED events. Its snapshot
/// is read page by page as the client reads, so one larger than a page arrives whole (every
/// object once, in key order) even to a client that reads slowly, and live events follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_snapshot_larger_than_a_page_arrives_whole_then_live_events() {
    let count = WATCH_SNAPSHOT_PAGE * 2 + WATCH_SNAPSHOT_PAGE / 2;
    let f = Fixture::new(count).await;
    let response = f
        .request(&format!("{WIDGETS}?watch=true&timeoutSeconds=60"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // Let the server fill the client's buffer before reading anything.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut body = response.into_body().into_data_stream();
    let mut pending = Vec::new();
    let mut names = Vec::new();
    let mut next_line = async || loop {
        if let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            return serde_json::from_slice::<Value>(&line).unwrap();
        }
        let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
            .await
            .expect("an event within 20 s")
            .expect("the watch is still open")
            .unwrap();
        pending.extend_from_slice(&chunk);
    };
    while names.len() < count {
        let event = next_line().await;
        assert_eq!(event["type"], "ADDED", "{event}");
        names.push(
            event["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        if names.len() % 200 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let expected: Vec<String> = (0..count).map(|i| format!("w{i:05}")).collect();
    assert_eq!(names, expected, "every object once, in key order");
    f.store
        .put(&key(count), widget(count, 0), Condition::Absent)
        .await
        .unwrap();
    let event = next_line().await;
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["metadata"]["name"], format!("w{count:05}"));
}

/// A watcher that stops reading holds nothing of its own: writers go on at full speed, and
/// once it has fallen behind by more than the watch cache's channel it is cut off: when it
/// reads again its stream ends (it would watch again from its last resourceVersion), after
/// at most some events in order, never one twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_stops_reading_is_cut_off_without_holding_writers() {
    let f = Fixture::new(1).await;
    // The watch cache's feed of widgets starts with the first watch, at the store's revision
    // then: a watch from an older revision (the server's controllers write elsewhere
    // meanwhile) would read the store instead, whose buffer is larger. Start it first.
    drop(f.request(&format!("{WIDGETS}?watch=true")).await);
    let list = f.get_buffered(&format!("{WIDGETS}?limit=1")).await;
    let watch = format!(
        "{WIDGETS}?watch=true&resourceVersion={}&timeoutSeconds=120",
        list_revision(&list)
    );
    let slow = f.request(&watch).await;
    assert_eq!(slow.status(), StatusCode::OK);
    // A second watcher that reads everything as it comes, to tell when the watch cache has
    // passed every write on (the store acknowledges a write before its feed publishes it;
    // a slow watcher that started reading while the feed was still behind could keep up).
    let witness = f.request(&watch).await;
    assert_eq!(witness.status(), StatusCode::OK);
    let (seen_tx, seen) = tokio::sync::watch::channel::<Revision>(0);
    let mut witness = lines(witness.into_body());
    tokio::spawn(async move {
        while let Some(event) = witness.next().await {
            if let Some(revision) = event["object"]["metadata"]["resourceVersion"].as_str() {
                seen_tx.send_replace(revision.parse().unwrap());
            }
        }
    });
    // Twice the channel, written while the watcher reads nothing.
    let writes = WATCH_CACHE_EVENTS * 2;
    tokio::time::timeout(Duration::from_secs(90), f.load(writes))
        .await
        .expect("the writers are not held up by a watcher that does not read");
    let written = list_revision(&f.get_buffered(&format!("{WIDGETS}?limit=1")).await);
    let mut seen = seen;
    tokio::time::timeout(
        Duration::from_secs(60),
        seen.wait_for(|revision| *revision >= written),
    )
    .await
    .expect("the watch cache publishes every write")
    .unwrap();
    let mut slow = lines(slow.into_body());
    let mut last = 0;
    let mut received = 0;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), slow.next())
            .await
            .expect("the stream ends rather than stalls");
        let Some(event) = next else { break };
        assert!(
            matches!(event["type"].as_str(), Some("ADDED" | "MODIFIED")),
            "{event}"
        );
        let revision: u64 = event["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(revision > last, "in order, never twice");
        last = revision;
        received += 1;
    }
    assert!(
        received < writes,
        "cut off before the end ({received} of {writes} events)"
    );
}

/// The JSON lines of a streamed body.
fn lines(body: Body) -> futures::stream::BoxStream<'static, Value> {
    let chunks = body.into_data_stream();
    futures::stream::unfold(
        (chunks, Vec::<u8>::new()),
        |(mut chunks, mut pending)| async move {
            loop {
                if let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let value = serde_json::from_slice::<Value>(&line).unwrap();
                    return Some((value, (chunks, pending)));
                }
                let chunk = chunks.next().await?.ok()?;
                pending.extend_from_slice(&chunk);
            }
        },
    )
    .boxed()
}

/// A server going away ends each watch with one `ERROR` event (503, "shutting down"), after
/// which the stream ends: the client watches again, elsewhere if it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_ends_with_one_error_when_the_server_shuts_down() {
    let f = Fixture::new(3).await;
    let response = f
        .request(&format!("{WIDGETS}?watch=true&timeoutSeconds=60"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut events = lines(response.into_body());
    for _ in 0..3 {
        let event = events.next().await.expect("the snapshot");
        assert_eq!(event["type"], "ADDED", "{event}");
    }
    f.server.begin_shutdown();
    let mut after = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("the stream ends after the error")
    {
        after.push(event);
    }
    assert_eq!(after.len(), 1, "one event, then the end: {after:?}");
    assert_eq!(after[0]["type"], "ERROR");
    assert_eq!(after[0]["object"]["code"], 503, "{}", after[0]);
}
