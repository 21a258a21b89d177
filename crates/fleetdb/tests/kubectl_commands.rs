//! What Kubernetes' own kubectl command tests (`test/cmd/crd.sh`, `apply.sh`, `get.sh`) found
//! missing, with the real kubectl: OpenAPI v2 for client-side validation, the client-side to
//! server-side apply upgrade, and Tables that carry whole objects and their columns in watches.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Backend, Fleetdb, install_widgets, widget};

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Indents a manifest by `spaces` for a YAML list item.
fn item(manifest: &str) -> String {
    let mut lines = manifest.lines();
    let mut out = format!("- {}\n", lines.next().unwrap_or_default());
    for line in lines {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

#[test]
fn a_list_of_custom_resources_is_validated_on_the_client_and_applied() {
    let server = Fleetdb::start(Backend::Embedded);
    install_widgets(&server);
    // kubectl fetches /openapi/v2 as protobuf for a List: the document must decode.
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n{}{}",
        item(&widget("a", 1)),
        item(&widget("b", 2))
    );
    let file = server.write("list.yaml", &list);
    let out = server.ok(&["apply", "-f", file.to_str().unwrap()]);
    assert!(
        out.contains("widget.example.com/a created")
            && out.contains("widget.example.com/b created"),
        "{out}"
    );
    // The validation is real: kubectl rejects a List item that breaks the published schema
    // before anything is sent, and nothing is created.
    let bad = format!(
        "apiVersion: v1\nkind: List\nitems:\n{}{}",
        item(&widget("c", 3)),
        item(&widget("d", 4).replace("size: 4", "size: big"))
    );
    let file = server.write("bad-list.yaml", &bad);
    let err = server.fails(&["apply", "-f", file.to_str().unwrap()]);
    assert!(err.contains("error validating"), "{err}");
    assert!(err.contains("spec.size"), "{err}");
    let names = server.ok(&["get", "widgets", "-o", "name"]);
    assert_eq!(names, "widget.example.com/a\nwidget.example.com/b\n");
    // The JSON form and the entity tag.
    let document = json(&server.ok(&["get", "--raw", "/openapi/v2"]));
    assert_eq!(document["swagger"], "2.0");
    let widget = &document["definitions"]["com.example.v1.Widget"];
    assert_eq!(
        widget["x-kubernetes-group-version-kind"][0]["kind"],
        "Widget"
    );
    assert_eq!(
        widget["properties"]["spec"]["properties"]["size"]["type"],
        "integer"
    );
    assert_eq!(
        widget["properties"]["metadata"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
}

const GADGET_CRD_AND_INSTANCE: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  names: {plural: gadgets, singular: gadget, kind: Gadget, listKind: GadgetList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              level: {type: integer}
---
apiVersion: example.com/v1
kind: Gadget
metadata:
  name: g1
spec:
  level: 7
"#;

#[test]
fn a_file_with_a_crd_and_its_instance_creates_the_crd_then_the_instance() {
    let server = Fleetdb::start(Backend::Embedded);
    let file = server.write("gadgets.yaml", GADGET_CRD_AND_INSTANCE);
    let output = server.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stdout} {stderr}");
    // The CRD is created; the instance, whose kind is not served yet, is the only failure.
    assert!(
        stdout
            .contains("customresourcedefinition.apiextensions.k8s.io/gadgets.example.com created"),
        "{stdout} {stderr}"
    );
    assert!(
        stderr.contains(r#"no matches for kind "Gadget" in version "example.com/v1""#),
        "{stderr}"
    );
    assert!(!stderr.contains("error validating"), "{stderr}");
    server.ok(&[
        "wait",
        "--for=condition=established",
        "crd/gadgets.example.com",
        "--timeout=20s",
    ]);
    let out = server.ok(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.contains("gadget.example.com/g1 created"), "{out}");
    assert_eq!(
        server.ok(&["get", "gadget", "g1", "-o", "jsonpath={.spec.level}"]),
        "7"
    );
}

fn managers(server: &Fleetdb, name: &str) -> Vec<(String, String)> {
    let object = json(&server.ok(&["get", "widget", name, "-o", "json", "--show-managed-fields"]));
    object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["manager"].as_str().unwrap().to_owned(),
                e["operation"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn client_side_apply_upgrades_to_server_side_apply() {
    let server = Fleetdb::start(Backend::Embedded);
    install_widgets(&server);
    let first = server.write("w.yaml", &widget("w", 3));
    server.ok(&["apply", "-f", first.to_str().unwrap()]);
    assert_eq!(
        managers(&server, "w"),
        [("kubectl-client-side-apply".to_owned(), "Update".to_owned())]
    );
    // The same manifest with a changed size: without the upgrade this is a conflict with
    // kubectl-client-side-apply over .spec.size.
    let changed = server.write("w2.yaml", &widget("w", 5));
    let diff = server.kubectl(&["diff", "--server-side", "-f", changed.to_str().unwrap()]);
    let diff_out = String::from_utf8_lossy(&diff.stdout);
    assert_eq!(
        diff.status.code(),
        Some(1),
        "differences found: {diff_out} {}",
        String::from_utf8_lossy(&diff.stderr)
    );
    assert!(
        diff_out.contains("-  size: 3") && diff_out.contains("+  size: 5"),
        "{diff_out}"
    );
    let out = server.ok(&["apply", "--server-side", "-f", changed.to_str().unwrap()]);
    assert!(
        out.contains("widget.example.com/w serverside-applied"),
        "{out}"
    );
    assert_eq!(
        server.ok(&["get", "widget", "w", "-o", "jsonpath={.spec.size}"]),
        "5"
    );
    let owners = managers(&server, "w");
    assert!(
        owners.contains(&("kubectl".to_owned(), "Apply".to_owned())),
        "{owners:?}"
    );
    // The last-applied configuration followed, so client-side apply still works after.
    let annotation = server.ok(&[
        "get",
        "widget",
        "w",
        "-o",
        r#"jsonpath={.metadata.annotations.kubectl\.kubernetes\.io/last-applied-configuration}"#,
    ]);
    assert_eq!(json(&annotation)["spec"]["size"], 5);
    let again = server.write("w3.yaml", &widget("w", 6));
    server.ok(&["apply", "-f", again.to_str().unwrap()]);
    assert_eq!(
        server.ok(&["get", "widget", "w", "-o", "jsonpath={.spec.size}"]),
        "6"
    );
    // A field someone else changed since the client-side apply still conflicts.
    server.ok(&[
        "patch",
        "widget",
        "w",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"color":"red"}}"#,
    ]);
    let recolored = server.write(
        "w4.yaml",
        &widget("w", 6).replace("color: blue", "color: green"),
    );
    let err = server.fails(&["apply", "--server-side", "-f", recolored.to_str().unwrap()]);
    assert!(
        err.contains("conflict") && err.contains(".spec.color"),
        "{err}"
    );
}

#[test]
fn tables_carry_whole_objects_when_asked_and_sort_by_spec_fields() {
    let server = Fleetdb::start(Backend::Embedded);
    install_widgets(&server);
    for (name, size) in [("a", 3), ("b", 1), ("c", 2)] {
        server.ok_input(&["create", "-f", "-"], &widget(name, size));
    }
    let sorted = server.ok(&["get", "widgets", "--sort-by=.spec.size", "--no-headers"]);
    let names: Vec<&str> = sorted
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["b", "c", "a"], "{sorted}");
    let sorted = server.ok(&["get", "widgets", "--sort-by={.spec.size}", "-o", "wide"]);
    let rows: Vec<&str> = sorted.lines().skip(1).collect();
    assert!(
        rows[2].starts_with('a') && rows[2].contains("blue"),
        "{sorted}"
    );
}

#[test]
fn a_table_watch_shows_the_columns() {
    let server = Fleetdb::start(Backend::Embedded);
    install_widgets(&server);
    server.ok_input(&["create", "-f", "-"], &widget("first", 1));
    let mut watcher = server
        .kubectl_command(&["get", "widgets", "-w", "-o", "wide", "--watch-only"])
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
    // With --watch-only nothing is printed before the first event, so the watch has begun
    // once a change of `first` shows: touch it until its row comes.
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for probe in 1.. {
        if seen.iter().any(|l| l.starts_with("first")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watch printed no change of `first`: {seen:?}"
        );
        server.ok(&[
            "label",
            "widget",
            "first",
            &format!("probe={probe}"),
            "--overwrite",
        ]);
        while let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) {
            seen.push(line);
        }
    }
    server.ok_input(&["create", "-f", "-"], &widget("second", 7));
    server.ok(&[
        "patch",
        "widget",
        "second",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"color":"red"}}"#,
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.iter().any(|l| l.contains("red")) {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    // Only the watch's events are printed (--watch-only), with the header from the first
    // event's column definitions, and the wide column (Color, priority 1) in every row.
    let header: Vec<&str> = seen[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "COLOR", "AGE"], "{seen:?}");
    assert!(
        seen[1..].iter().all(|l| l.split_whitespace().count() == 4),
        "{seen:?}"
    );
    let rows: Vec<Vec<&str>> = seen[1..]
        .iter()
        .filter(|l| l.starts_with("second"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{seen:?}");
    assert_eq!(rows[0][..3], ["second", "7", "blue"], "{seen:?}");
    assert_eq!(rows[1][..3], ["second", "7", "red"], "{seen:?}");
}
