//! The datacenter-file fetcher end to end: a 1,000-row CSV export with malformed rows →
//! `fleetdb fetch --once` → Hosts that kubectl lists with the right columns; a changed and a
//! removed row are reflected at the next sync, and a person's maintenance flag and label
//! survive every sync; an unchanged re-sync writes no host.

mod support;

use serde_json::Value;
use support::{Backend, Fleetdb};

fn export(rows: usize, skip: Option<usize>, rack_of_5: &str) -> String {
    let mut lines =
        vec!["hostname,serial,rack,datacenter,role,team,ips,cpus,memory,disks,os,owner".to_owned()];
    for i in 0..rows {
        if Some(i) == skip {
            continue;
        }
        let rack = if i == 5 {
            rack_of_5.to_owned()
        } else {
            format!("r{}", i % 40)
        };
        lines.push(format!(
            "host-{i:04},SN{i},{rack},pdx,{},{},10.1.{}.{},{},64Gi,960Gi ssd,debian-12,person{}",
            ["web", "db", "log"][i % 3],
            ["infra", "data"][i % 2],
            i / 250,
            i % 250,
            [8, 16, 32][i % 3],
            i % 7
        ));
    }
    // Malformed rows among the good ones: a bad hostname, a bad number, a short row.
    lines.insert(
        11,
        "BAD_HOST!,SNX,r1,pdx,web,infra,10.0.0.2,16,64Gi,,debian-12,bob".into(),
    );
    lines.insert(
        21,
        "db-x,SNY,r2,pdx,db,data,10.0.0.3,many,128Gi,,debian-12,carol".into(),
    );
    lines.insert(31, "short-row,SN4".into());
    lines.join("\n") + "\n"
}

fn fetch(server: &Fleetdb) -> String {
    fetch_source(server, "pdx-dc")
}

fn fetch_source(server: &Fleetdb, source: &str) -> String {
    support::fetch_once(server, source)
}

fn source_status(server: &Fleetdb) -> Value {
    let source: Value =
        serde_json::from_str(&server.ok(&["get", "source", "pdx-dc", "-o", "json"])).unwrap();
    source["status"].clone()
}

#[test]
fn datacenter_csv_syncs_and_people_keep_their_changes() {
    // The store's revision is counted below: no controllers (their leader renews a Lease).
    let server = Fleetdb::start_with(Backend::Embedded, &["--controllers=false"]);
    let csv = server.write("pdx.csv", &export(1000, None, "r5"));
    server.ok_input(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: fleetdb.io/v1alpha1\nkind: Source\nmetadata: {{name: pdx-dc}}\nspec:\n  type: file\n  file: {{path: {}}}\n",
            csv.display()
        ),
    );

    let summary = fetch(&server);
    assert!(
        summary.contains("1000 hosts seen, 1000 created"),
        "{summary}"
    );
    let names = server.ok(&[
        "get",
        "hosts",
        "-l",
        "fleetdb.io/source=pdx-dc",
        "-o",
        "name",
    ]);
    assert_eq!(names.lines().count(), 1000);
    let table = server.ok(&["get", "hosts", "host-0001"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "ROLE",
            "PROVIDER",
            "REGION",
            "STATE",
            "MAINTENANCE",
            "AUTHORIZED",
            "CLUSTER",
            "JOINED",
            "SERVING",
            "AGE"
        ]
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..5], ["host-0001", "db", "file", "pdx", "Running"]);
    let status = source_status(&server);
    assert_eq!(status["hostsSeen"], 1000);
    let last_error = status["lastError"].as_str().unwrap();
    for line in ["line 12", "line 22", "line 32"] {
        assert!(
            last_error.contains(line),
            "bad rows are reported by line: {last_error}"
        );
    }
    let host: Value =
        serde_json::from_str(&server.ok(&["get", "host", "host-0003", "-o", "json"])).unwrap();
    assert_eq!(host["status"]["addresses"][0]["address"], "10.1.0.3");
    assert_eq!(
        host["metadata"]["annotations"]["dcim.fleetdb.io/owner"],
        "person3"
    );
    assert_eq!(host["metadata"]["labels"]["fleetdb.io/team"], "data");

    // People's changes: maintenance, a label.
    server.ok(&[
        "patch",
        "host",
        "host-0005",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"maintenance":true}}"#,
    ]);
    server.ok(&["label", "host", "host-0005", "owner=alice"]);

    // The export changes: host-0005 moves rack, host-0007 disappears.
    server.write("pdx.csv", &export(1000, Some(7), "r99"));
    let summary = fetch(&server);
    assert!(
        summary.contains("999 hosts seen") && summary.contains("1 gone"),
        "{summary}"
    );
    let moved: Value =
        serde_json::from_str(&server.ok(&["get", "host", "host-0005", "-o", "json"])).unwrap();
    assert_eq!(moved["status"]["rack"], "r99");
    assert_eq!(
        moved["spec"]["maintenance"], true,
        "maintenance survives the sync"
    );
    assert_eq!(
        moved["metadata"]["labels"]["owner"], "alice",
        "the label survives the sync"
    );
    let gone: Value =
        serde_json::from_str(&server.ok(&["get", "host", "host-0007", "-o", "json"])).unwrap();
    assert_eq!(
        gone["status"]["state"], "Terminated",
        "gone hosts are kept, marked Terminated"
    );
    let present = &gone["status"]["conditions"][0];
    assert_eq!(
        (present["type"].as_str(), present["status"].as_str()),
        (Some("Present"), Some("False"))
    );
    assert!(present["message"].as_str().unwrap().contains("since"));

    // Nothing changed: nothing is written, and people's changes are still there.
    let revision = || {
        let list: Value = serde_json::from_str(&server.ok(&[
            "get",
            "--raw",
            "/apis/fleetdb.io/v1alpha1/hosts?limit=1",
        ]))
        .unwrap();
        list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    let rv_before = revision();
    let summary = fetch(&server);
    assert!(
        summary.contains("0 created, 0 updated, 999 unchanged, 0 gone"),
        "{summary}"
    );
    // Only the Source status was written (one revision).
    assert_eq!(revision(), rv_before + 1);
    assert_eq!(
        server.ok(&[
            "get",
            "host",
            "host-0005",
            "-o",
            "jsonpath={.spec.maintenance}"
        ]),
        "true"
    );
}

/// Two fetchers for two Sources side by side: each only marks its own hosts as gone.
#[test]
fn fetchers_of_different_sources_do_not_clobber_each_other() {
    let server = Fleetdb::start(Backend::Embedded);
    let source = |name: &str, path: &std::path::Path| {
        format!(
            "apiVersion: fleetdb.io/v1alpha1\nkind: Source\nmetadata: {{name: {name}}}\nspec:\n  type: file\n  file: {{path: {}, datacenter: {name}}}\n",
            path.display()
        )
    };
    let pdx = server.write("pdx.csv", "hostname,rack\npdx-1,r1\npdx-2,r2\n");
    let ams = server.write(
        "ams.yaml",
        "- hostname: ams-1\n  rack: a1\n- hostname: ams-2\n  rack: a2\n",
    );
    server.ok_input(&["apply", "-f", "-"], &source("pdx-dc", &pdx));
    server.ok_input(&["apply", "-f", "-"], &source("ams-dc", &ams));
    assert!(fetch_source(&server, "pdx-dc").contains("2 created"));
    assert!(fetch_source(&server, "ams-dc").contains("2 created"));
    // pdx loses a host; syncing pdx must not touch ams, and the reverse.
    server.write("pdx.csv", "hostname,rack\npdx-1,r1\n");
    assert!(fetch_source(&server, "pdx-dc").contains("1 gone"));
    assert!(fetch_source(&server, "ams-dc").contains("0 gone"));
    let states = server.ok(&[
        "get",
        "hosts",
        "-o",
        "custom-columns=NAME:.metadata.name,STATE:.status.state,DC:.status.datacenter",
        "--no-headers",
    ]);
    let states: Vec<Vec<&str>> = states
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        states,
        [
            ["ams-1", "Running", "ams-dc"],
            ["ams-2", "Running", "ams-dc"],
            ["pdx-1", "Running", "pdx-dc"],
            ["pdx-2", "Terminated", "pdx-dc"],
        ]
    );
}

/// A Source is a record others write: it cannot make the fetcher read outside the directories
/// its own command line allows, and the refusal is in the Source's status.
#[test]
fn a_source_cannot_point_the_fetcher_outside_its_directories() {
    let server = Fleetdb::start(Backend::Embedded);
    server.ok_input(
        &["apply", "-f", "-"],
        "apiVersion: fleetdb.io/v1alpha1\nkind: Source\nmetadata: {name: pdx-dc}\nspec:\n  type: file\n  file: {path: /etc/passwd}\n",
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fleetdb"))
        .args(["fetch", "--source", "pdx-dc", "--once", "--kubeconfig"])
        .arg(server.kubeconfig())
        .arg("--allow-dir")
        .arg(server.path())
        .output()
        .unwrap();
    assert!(!output.status.success(), "the fetch must fail");
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("not under a directory this fetcher may read"),
        "{error}"
    );
    let status = source_status(&server);
    assert!(
        status["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("/etc/passwd is not under a directory")),
        "{status}"
    );
    assert_eq!(
        server.ok(&["get", "hosts", "-o", "name"]),
        "",
        "nothing was read"
    );
}
