//! The real kubectl against the real `fleetdb serve`, on the embedded store and on etcd.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Backend, Fleetdb, install_widgets, widget};

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn discovery_and_version(backend: Backend) {
    let server = Fleetdb::start(backend);
    let version = json(&server.ok(&["get", "--raw", "/version"]));
    assert!(
        version["gitVersion"]
            .as_str()
            .unwrap()
            .starts_with("v1.33.")
    );
    let resources = server.ok(&["api-resources"]);
    assert!(resources.contains("namespaces") && resources.contains("customresourcedefinitions"));
    install_widgets(&server);
    let resources = server.ok(&["api-resources", "--api-group=example.com"]);
    assert!(
        resources.contains("widgets") && resources.contains("wd"),
        "{resources}"
    );
    let namespaces = server.ok(&["get", "namespaces"]);
    for ns in ["default", "kube-system", "kube-public"] {
        assert!(namespaces.contains(ns), "{namespaces}");
    }
    let explain = server.ok(&["explain", "widgets.spec"]);
    assert!(explain.contains("How big the widget is"), "{explain}");
}

fn crud_with_kubectl(backend: Backend) {
    let server = Fleetdb::start(backend);
    install_widgets(&server);
    let file = server.write("w1.yaml", &widget("w1", 3));
    server.ok(&["create", "-f", file.to_str().unwrap()]);
    let table = server.ok(&["get", "widgets"]);
    assert!(
        table.contains("NAME") && table.contains("SIZE") && table.contains("w1"),
        "{table}"
    );
    assert!(
        !table.contains("COLOR"),
        "priority-1 columns only show with -o wide: {table}"
    );
    let wide = server.ok(&["get", "wd", "-o", "wide"]);
    assert!(wide.contains("COLOR") && wide.contains("blue"), "{wide}");
    let object = json(&server.ok(&["get", "widget", "w1", "-o", "json"]));
    assert_eq!(object["spec"]["size"], 3);
    assert_eq!(object["metadata"]["generation"], 1);
    assert!(object["metadata"]["uid"].is_string());
    let yaml = server.ok(&["get", "widget", "w1", "-o", "yaml"]);
    assert!(yaml.contains("size: 3"), "{yaml}");

    // Client-side apply on a changed file, then label, annotate and both patch types.
    server.write("w1.yaml", &widget("w1", 4));
    server.ok(&["apply", "-f", file.to_str().unwrap()]);
    server.ok(&["label", "widget", "w1", "tier=web"]);
    server.ok(&["annotate", "widget", "w1", "owner=ops"]);
    server.ok(&[
        "patch",
        "widget",
        "w1",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"size":5}}"#,
    ]);
    server.ok(&[
        "patch",
        "widget",
        "w1",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/size","value":6}]"#,
    ]);
    let object = json(&server.ok(&["get", "widget", "w1", "-o", "json"]));
    assert_eq!(object["spec"]["size"], 6);
    assert_eq!(object["metadata"]["labels"]["tier"], "web");
    assert_eq!(object["metadata"]["annotations"]["owner"], "ops");
    assert_eq!(
        object["metadata"]["generation"], 4,
        "spec changed three times after creation"
    );

    // edit with a scripted editor.
    let mut edit = server.kubectl_command(&["edit", "widget", "w1"]);
    edit.env("EDITOR", "sed -i -e 's/size: 6/size: 7/'");
    let output = edit.output().unwrap();
    assert!(
        output.status.success(),
        "edit: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        server.ok(&["get", "widget", "w1", "-o", "jsonpath={.spec.size}"]),
        "7"
    );

    // Show labels and all namespaces; `get all` includes the category.
    let labelled = server.ok(&["get", "widgets", "-A", "--show-labels"]);
    assert!(
        labelled.contains("NAMESPACE")
            && labelled.contains("default")
            && labelled.contains("tier=web"),
        "{labelled}"
    );
    let all = server.ok(&["get", "all"]);
    assert!(
        all.lines()
            .any(|l| l.starts_with("w1 ") || l.starts_with("widget.example.com/w1")),
        "{all}"
    );
    assert!(
        server
            .ok(&["get", "widgets", "-l", "tier=web", "-o", "name"])
            .contains("w1")
    );
    assert!(
        !server
            .ok(&["get", "widgets", "-l", "tier!=web", "-o", "name"])
            .contains("w1")
    );

    // Server-side strategic merge patch is not for custom resources.
    let refused = server.fails(&["patch", "widget", "w1", "-p", r#"{"spec":{"size":1}}"#]);
    assert!(
        refused.contains("not supported")
            || refused.contains("415")
            || refused.contains("UnsupportedMediaType"),
        "{refused}"
    );

    // The scale subresource.
    server.ok(&["scale", "widget", "w1", "--replicas=3"]);
    assert_eq!(
        server.ok(&["get", "widget", "w1", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );
    let scale = json(&server.ok(&[
        "get",
        "--raw",
        "/apis/example.com/v1/namespaces/default/widgets/w1/scale",
    ]));
    assert_eq!(
        (scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()),
        (Some("Scale"), Some(3))
    );

    server.ok(&["delete", "widget", "w1"]);
    assert!(server.fails(&["get", "widget", "w1"]).contains("NotFound"));
}

/// Runs `kubectl get widgets -w --output-watch-events` while changes happen.
fn get_watch_streams_changes(backend: Backend) {
    let mut server = Fleetdb::start(backend);
    install_widgets(&server);
    // Listed by the watch first: its row says the list is done and the watch runs.
    server.ok_input(&["create", "-f", "-"], &widget("w0", 1));
    let mut watcher = server
        .kubectl_command(&["get", "widgets", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|l: &String| l.contains("w0")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("the watch never listed w0: {seen:?}"),
        }
    }
    server.ok_input(&["create", "-f", "-"], &widget("w1", 1));
    server.ok(&[
        "patch",
        "widget",
        "w1",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"size":2}}"#,
    ]);
    server.ok(&["delete", "widget", "w1"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.iter().any(|l: &String| l.starts_with("DELETED")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    // The server going away ends the watch with an error event kubectl shows (as a Status
    // row, then it exits, as against kube-apiserver), not a silent end.
    server.stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after_stop = Vec::new();
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        after_stop.push(line);
    }
    assert!(
        after_stop
            .iter()
            .any(|l| l.contains("ServiceUnavailable") && l.contains("shutting down")),
        "after the server stopped: {after_stop:?}"
    );
    let _ = watcher.kill();
    let _ = watcher.wait();
    let events: Vec<&str> = seen
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        events,
        ["EVENT", "ADDED", "ADDED", "MODIFIED", "DELETED"],
        "watch output: {seen:?}"
    );
}

fn wait_for_condition_and_deletion(backend: Backend) {
    let server = Fleetdb::start(backend);
    install_widgets(&server);
    server.ok_input(&["create", "-f", "-"], &widget("w2", 1));
    let waiter = server
        .kubectl_command(&[
            "wait",
            "--for=condition=Ready",
            "widget/w2",
            "--timeout=30s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    server.ok(&[
        "patch",
        "widget",
        "w2",
        "--subresource=status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
    ]);
    let output = waiter.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "wait: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The status write did not change the spec: generation stays.
    assert_eq!(
        server.ok(&[
            "get",
            "widget",
            "w2",
            "-o",
            "jsonpath={.metadata.generation}"
        ]),
        "1"
    );

    // A finalizer keeps the object until it is removed.
    server.ok(&[
        "patch",
        "widget",
        "w2",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/cleanup"]}}"#,
    ]);
    server.ok(&["delete", "widget", "w2", "--wait=false"]);
    let terminating = json(&server.ok(&["get", "widget", "w2", "-o", "json"]));
    assert!(terminating["metadata"]["deletionTimestamp"].is_string());
    let refused = server.fails(&[
        "patch",
        "widget",
        "w2",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/cleanup","example.com/more"]}}"#,
    ]);
    assert!(refused.contains("no new finalizers"), "{refused}");
    let waiter = server
        .kubectl_command(&["wait", "--for=delete", "widget/w2", "--timeout=30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    server.ok(&[
        "patch",
        "widget",
        "w2",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    let output = waiter.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "wait --for=delete: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(server.fails(&["get", "widget", "w2"]).contains("NotFound"));
}

fn namespaces_scope_objects(backend: Backend) {
    let server = Fleetdb::start(backend);
    install_widgets(&server);
    server.ok(&["create", "namespace", "team-a"]);
    server.ok_input(&["-n", "team-a", "create", "-f", "-"], &widget("w3", 1));
    server.ok_input(&["create", "-f", "-"], &widget("w3", 2));
    let all = server.ok(&["get", "widgets", "-A"]);
    assert!(all.contains("team-a") && all.contains("default"), "{all}");
    let missing = server.fails_input(&["-n", "nowhere", "create", "-f", "-"], &widget("w4", 1));
    assert!(
        missing.contains("namespaces \"nowhere\" not found"),
        "{missing}"
    );
    server.ok(&["delete", "namespace", "team-a", "--timeout=60s"]);
    let all = server.ok(&["get", "widgets", "-A", "-o", "name"]);
    assert_eq!(
        all.trim(),
        "widget.example.com/w3",
        "only the default namespace's widget remains"
    );
    assert!(
        server
            .fails(&["delete", "namespace", "default"])
            .contains("may not be deleted")
    );
}

/// Two writers with the same resourceVersion: exactly one wins.
fn concurrent_updates_conflict(backend: Backend) {
    let server = Fleetdb::start(backend);
    install_widgets(&server);
    server.ok_input(&["create", "-f", "-"], &widget("w5", 1));
    let mut object = json(&server.ok(&["get", "widget", "w5", "-o", "json"]));
    object["spec"]["size"] = 10.into();
    let first = object.to_string();
    object["spec"]["size"] = 20.into();
    let second = object.to_string();
    server.ok_input(&["replace", "-f", "-"], &first);
    let conflict = server.fails_input(&["replace", "-f", "-"], &second);
    assert!(
        conflict.contains("Conflict") && conflict.contains("the object has been modified"),
        "{conflict}"
    );
    assert_eq!(
        server.ok(&["get", "widget", "w5", "-o", "jsonpath={.spec.size}"]),
        "10"
    );
}

/// Malformed and hostile input: each gets the right Status and a message naming the problem.
fn bad_input_gets_clear_errors(backend: Backend) {
    let server = Fleetdb::start(backend);
    install_widgets(&server);
    server.ok_input(&["create", "-f", "-"], &widget("exists", 1));
    let collection = "/apis/example.com/v1/namespaces/default/widgets";
    let big = format!(
        r#"{{"apiVersion":"example.com/v1","kind":"Widget","metadata":{{"name":"big"}},"spec":{{"blob":"{}"}}}}"#,
        "x".repeat(4 << 20)
    );
    let cases: Vec<(&str, Vec<&str>, String, &str)> = vec![
        ("malformed JSON", vec!["create", "--raw", collection, "-f", "-"], "{not json".into(), "is not valid JSON"),
        ("wrong kind", vec!["create", "--raw", collection, "-f", "-"], r#"{"apiVersion":"example.com/v1","kind":"Gadget","metadata":{"name":"g"}}"#.into(), "does not match the expected kind"),
        ("bad name", vec!["create", "--raw", collection, "-f", "-"], r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"Bad_Name"}}"#.into(), "RFC 1123"),
        ("no name", vec!["create", "--raw", collection, "-f", "-"], r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{}}"#.into(), "name or generateName is required"),
        ("bad label", vec!["create", "--raw", collection, "-f", "-"], r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"l","labels":{"a b":"c"}}}"#.into(), "metadata.labels"),
        ("already exists", vec!["create", "--raw", collection, "-f", "-"], r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"exists"}}"#.into(), "already exists"),
        ("wrong namespace", vec!["create", "--raw", collection, "-f", "-"], r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"n","namespace":"other"}}"#.into(), "does not match the namespace"),
        ("oversized body", vec!["create", "--raw", collection, "-f", "-"], big, "larger than the limit"),
        ("unknown resource", vec!["create", "--raw", "/apis/example.com/v1/namespaces/default/gadgets", "-f", "-"], "{}".into(), "could not find the requested resource"),
    ];
    for (what, args, input, expected) in cases {
        let error = server.fails_input(&args, &input);
        assert!(
            error.contains(expected),
            "{what}: expected {expected:?} in {error}"
        );
    }
    for (what, path, expected) in [
        (
            "bad label selector",
            format!("{collection}?labelSelector=a%20in%20(b"),
            "unable to parse requirement",
        ),
        (
            "unknown field selector",
            format!("{collection}?fieldSelector=spec.size%3D1"),
            "is not a known field selector",
        ),
        (
            "bad limit",
            format!("{collection}?limit=ten"),
            "invalid value",
        ),
        (
            "bad continue",
            format!("{collection}?limit=1&continue=garbage"),
            "continue",
        ),
        (
            "missing object",
            format!("{collection}/missing"),
            "\"missing\" not found",
        ),
    ] {
        let error = server.fails(&["get", "--raw", &path]);
        assert!(
            error.contains(expected),
            "{what}: expected {expected:?} in {error}"
        );
    }
    let failed_test = server.fails(&[
        "patch",
        "widget",
        "exists",
        "--type",
        "json",
        "-p",
        r#"[{"op":"test","path":"/spec/size","value":99}]"#,
    ]);
    assert!(failed_test.contains("cannot be applied"), "{failed_test}");
    let stale = server.fails(&[
        "patch",
        "widget",
        "exists",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"resourceVersion":"1"}}"#,
    ]);
    assert!(stale.contains("the object has been modified"), "{stale}");
    // The server is still fine after all that.
    assert!(server.ok(&["get", "widgets"]).contains("exists"));
    assert!(
        !server.log().contains("panicked"),
        "the server panicked:\n{}",
        server.log()
    );
}

/// Objects, resourceVersions and CRDs survive a restart, and a watch resumed from the last
/// resourceVersion seen before it misses nothing.
fn restart_keeps_state_and_watches_resume(backend: Backend) {
    let mut server = Fleetdb::start(backend);
    install_widgets(&server);
    server.ok_input(&["create", "-f", "-"], &widget("before", 1));
    let before = json(&server.ok(&["get", "widget", "before", "-o", "json"]));
    let seen_rv = before["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    server.ok(&[
        "patch",
        "widget",
        "before",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"size":2}}"#,
    ]);
    let patched_rv = server.ok(&[
        "get",
        "widget",
        "before",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    server.restart();
    let after = json(&server.ok(&["get", "widget", "before", "-o", "json"]));
    assert_eq!(after["metadata"]["resourceVersion"], patched_rv.as_str());
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(after["spec"]["size"], 2);
    server.ok_input(&["create", "-f", "-"], &widget("after", 1));
    let events = server.ok(&[
        "get",
        "--raw",
        &format!("/apis/example.com/v1/namespaces/default/widgets?watch=true&resourceVersion={seen_rv}&timeoutSeconds=2"),
    ]);
    let events: Vec<(String, String)> = events
        .lines()
        .map(json)
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["object"]["metadata"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("MODIFIED".to_owned(), "before".to_owned()),
            ("ADDED".to_owned(), "after".to_owned())
        ]
    );
}

/// `kubectl apply --server-side`: creation, ownership, conflicts, --force-conflicts, removal.
fn server_side_apply(backend: Backend) {
    let server = Fleetdb::start(backend);
    install_widgets(&server);
    let file = server.write("ssa.yaml", &widget("ssa", 1));
    let created = server.ok(&["apply", "--server-side", "-f", file.to_str().unwrap()]);
    assert!(created.contains("serverside-applied"), "{created}");
    let object = json(&server.ok(&[
        "get",
        "widget",
        "ssa",
        "-o",
        "json",
        "--show-managed-fields",
    ]));
    let managers: Vec<&str> = object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers, ["kubectl"], "{object}");
    assert_eq!(object["metadata"]["managedFields"][0]["operation"], "Apply");

    // Someone else changes a field the applier owns: the next apply with another value conflicts.
    server.ok(&[
        "patch",
        "widget",
        "ssa",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"size":5}}"#,
    ]);
    server.write("ssa.yaml", &widget("ssa", 2));
    let conflict = server.fails(&["apply", "--server-side", "-f", file.to_str().unwrap()]);
    assert!(
        conflict.contains("conflict")
            && conflict.contains("kubectl-patch")
            && conflict.contains(".spec.size"),
        "{conflict}"
    );
    server.ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        server.ok(&["get", "widget", "ssa", "-o", "jsonpath={.spec.size}"]),
        "2"
    );

    // Fields the applier stops specifying are removed; fields owned by others stay.
    server.ok(&["label", "widget", "ssa", "owner=ops"]);
    server.write(
        "ssa.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: ssa\nspec:\n  size: 2\n",
    );
    server.ok(&["apply", "--server-side", "-f", file.to_str().unwrap()]);
    let object = json(&server.ok(&["get", "widget", "ssa", "-o", "json"]));
    assert!(
        object["spec"]["color"].is_null(),
        "color was dropped by its only owner: {object}"
    );
    assert!(
        object["metadata"]["labels"]["env"].is_null(),
        "env was dropped by its only owner: {object}"
    );
    assert_eq!(object["metadata"]["labels"]["owner"], "ops");
}

/// The CRD schema at work: unknown fields (Strict from kubectl create, Warn by default),
/// defaults, type and enum validation, and the structural-schema check on CRDs.
fn schema_validation_pruning_defaulting(backend: Backend) {
    let server = Fleetdb::start(backend);
    install_widgets(&server);
    let unknown = widget("sv", 1).replace("  color: blue\n", "  color: blue\n  bogus: 1\n");
    let strict = server.fails_input(&["create", "-f", "-"], &unknown);
    assert!(strict.contains("unknown field \"spec.bogus\""), "{strict}");
    server.ok_input(&["create", "-f", "-"], &widget("sv", 1));
    let object = json(&server.ok(&["get", "widget", "sv", "-o", "json"]));
    assert_eq!(
        object["spec"]["finish"], "matte",
        "defaults are applied: {object}"
    );

    let output = server.kubectl(&[
        "patch",
        "widget",
        "sv",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"bogus":1,"size":2}}"#,
    ]);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Warning: unknown field \"spec.bogus\""),
        "{stderr}"
    );
    let object = json(&server.ok(&["get", "widget", "sv", "-o", "json"]));
    assert!(
        object["spec"]["bogus"].is_null() && object["spec"]["size"] == 2,
        "pruned: {object}"
    );

    let wrong_type = server.fails(&[
        "patch",
        "widget",
        "sv",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"size":"big"}}"#,
    ]);
    assert!(
        wrong_type.contains("spec.size") && wrong_type.contains("must be of type integer"),
        "{wrong_type}"
    );
    let bad_enum = server.fails(&[
        "patch",
        "widget",
        "sv",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"color":"purple"}}"#,
    ]);
    assert!(
        bad_enum.contains("Unsupported value") && bad_enum.contains("purple"),
        "{bad_enum}"
    );
    let below_minimum = server.fails(&[
        "patch",
        "widget",
        "sv",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"replicas":-1}}"#,
    ]);
    assert!(below_minimum.contains("spec.replicas"), "{below_minimum}");

    let non_structural = support::WIDGET_CRD
        .replace("widgets.example.com", "badgets.example.com")
        .replace("plural: widgets", "plural: badgets")
        .replace("singular: widget", "singular: badget")
        .replace("kind: Widget", "kind: Badget")
        .replace("shortNames: [wd]", "shortNames: [bd]")
        .replace(
            "                type: string\n                default: matte",
            "                default: matte",
        );
    let refused = server.fails_input(&["create", "-f", "-"], &non_structural);
    assert!(
        refused.contains("finish") && refused.contains("type"),
        "{refused}"
    );
}

/// A CRD serving two versions (conversion None): the same objects under either version.
fn several_versions_share_objects(backend: Backend) {
    let server = Fleetdb::start(backend);
    let crd = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gears.example.com}
spec:
  group: example.com
  scope: Cluster
  names: {plural: gears, singular: gear, kind: Gear}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, properties: {spec: {type: object, properties: {teeth: {type: integer}}}}}}
  - name: v2
    served: true
    storage: false
    schema: {openAPIV3Schema: {type: object, properties: {spec: {type: object, properties: {teeth: {type: integer}}}}}}
"#;
    server.ok_input(&["create", "-f", "-"], crd);
    server.ok(&[
        "wait",
        "--for=condition=established",
        "crd/gears.example.com",
        "--timeout=20s",
    ]);
    server.ok_input(
        &["create", "-f", "-"],
        "apiVersion: example.com/v2\nkind: Gear\nmetadata: {name: g1}\nspec: {teeth: 9}\n",
    );
    let v1 = json(&server.ok(&["get", "gears.v1.example.com", "g1", "-o", "json"]));
    let v2 = json(&server.ok(&["get", "gears.v2.example.com", "g1", "-o", "json"]));
    assert_eq!(
        (v1["apiVersion"].as_str(), v2["apiVersion"].as_str()),
        (Some("example.com/v1"), Some("example.com/v2"))
    );
    assert_eq!(v1["spec"], v2["spec"]);
    let stored = json(&server.ok(&["get", "crd", "gears.example.com", "-o", "json"]));
    assert_eq!(
        stored["status"]["storedVersions"],
        serde_json::json!(["v1"])
    );
}

/// `--dry-run=server` persists nothing; `generateName` makes a unique name.
fn dry_run_and_generated_names(backend: Backend) {
    let server = Fleetdb::start(backend);
    install_widgets(&server);
    let rv_before =
        json(&server.ok(&["get", "widgets", "-o", "json"]))["metadata"]["resourceVersion"].clone();
    let preview = json(&server.ok_input(
        &["create", "--dry-run=server", "-o", "json", "-f", "-"],
        &widget("dry", 1),
    ));
    assert_eq!(preview["metadata"]["name"], "dry");
    assert!(
        preview["metadata"]["uid"].is_string(),
        "a dry run shows what would be stored"
    );
    assert!(server.fails(&["get", "widget", "dry"]).contains("NotFound"));
    server.ok_input(&["create", "-f", "-"], &widget("real", 1));
    server.ok(&[
        "patch",
        "widget",
        "real",
        "--dry-run=server",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"size":9}}"#,
    ]);
    server.ok(&["delete", "widget", "real", "--dry-run=server"]);
    let real = json(&server.ok(&["get", "widget", "real", "-o", "json"]));
    assert_eq!(real["spec"]["size"], 1, "dry-run patch changed nothing");
    assert_ne!(real["metadata"]["resourceVersion"], rv_before);
    let generated = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  generateName: gen-\nspec:\n  size: 1\n";
    let first = server.ok_input(&["create", "-o", "name", "-f", "-"], generated);
    let second = server.ok_input(&["create", "-o", "name", "-f", "-"], generated);
    assert!(
        first.starts_with("widget.example.com/gen-")
            && first.trim().len() == "widget.example.com/gen-".len() + 5,
        "{first}"
    );
    assert_ne!(first, second);
}

macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(#[test] fn $scenario() { super::$scenario(super::Backend::Embedded) })*
        }
        mod etcd {
            $(#[test] fn $scenario() { super::$scenario(super::Backend::Etcd) })*
        }
    };
}

on_both_stores!(
    discovery_and_version,
    crud_with_kubectl,
    get_watch_streams_changes,
    wait_for_condition_and_deletion,
    namespaces_scope_objects,
    concurrent_updates_conflict,
    bad_input_gets_clear_errors,
    restart_keeps_state_and_watches_resume,
    dry_run_and_generated_names,
    server_side_apply,
    schema_validation_pruning_defaulting,
    several_versions_share_objects,
);
