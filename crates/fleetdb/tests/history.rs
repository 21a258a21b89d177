//! History through the real binary and the real kubectl, on both backends: changes by several
//! identities (one impersonated) at known instants, then the fleet as of each instant (with
//! selectors), each object's history with users and operations, blame per field, the diff
//! of the fleet, restore of a changed and of a deleted object, a watch resumed from an old
//! revision — and the same answers after a restart.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Backend, Fleetdb};

fn host(name: &str, role: &str, labels: &str) -> String {
    format!(
        "apiVersion: fleetdb.io/v1alpha1\nkind: Host\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  role: {role}\n"
    )
}

/// `fleetdb ARGS --kubeconfig KUBECONFIG`: stdout, or a panic with stderr.
fn fleet(kubeconfig: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fleetdb"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "fleetdb {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn fleet_json(kubeconfig: &Path, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&fleet(kubeconfig, &args)).unwrap()
}

/// An instant between two changes: wait a little, read the clock, wait a little.
fn instant() -> String {
    std::thread::sleep(Duration::from_millis(50));
    let now = time::OffsetDateTime::now_utc();
    std::thread::sleep(Duration::from_millis(50));
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn summary(history: &Value) -> Vec<(String, String)> {
    history
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["user"].as_str().unwrap().to_owned(),
                c["operation"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn history_is_kept(backend: Backend) {
    let mut server = Fleetdb::start_with(backend, &["--controllers=false"]);
    let admin = server.kubeconfig();
    let (alice, _) = server.identity(
        "alice.kubeconfig",
        &["--user", "alice", "--group", "system:masters"],
    );
    let (bob, _) = server.identity(
        "bob.kubeconfig",
        &["--user", "bob", "--group", "system:masters"],
    );

    let t0 = instant();
    let first_two = server.write(
        "two.yaml",
        &(host("web-1", "web", "") + "---\n" + &host("web-3", "web", "team: red")),
    );
    server.ok_as(&alice, &["create", "-f", first_two.to_str().unwrap()]);
    let t1 = instant();
    server.ok_as(&bob, &["label", "host", "web-1", "team=blue"]);
    let t2 = instant();
    // The administrator acting as carol: history names carol, and who acted for her.
    server.ok(&[
        "patch",
        "host",
        "web-1",
        "--type=merge",
        "-p",
        r#"{"spec":{"role":"db"}}"#,
        "--as",
        "carol",
        "--as-group",
        "system:masters",
    ]);
    let t3 = instant();
    let third = server.write("three.yaml", &host("web-2", "web", "team: red"));
    server.ok_as(&bob, &["create", "-f", third.to_str().unwrap()]);
    let t4 = instant();
    server.ok_as(&alice, &["delete", "host", "web-3"]);
    let t5 = instant();

    let check = || {
        // The fleet as of each instant, with selectors.
        let as_of = |t: &str, extra: &[&str]| {
            let mut args = vec!["get", "hosts", "--as-of", t];
            args.extend_from_slice(extra);
            names(&fleet_json(&admin, &args))
        };
        assert_eq!(as_of(&t0, &[]), Vec::<String>::new());
        assert_eq!(as_of(&t1, &[]), ["web-1", "web-3"]);
        assert_eq!(as_of(&t1, &["-l", "team=blue"]), Vec::<String>::new());
        assert_eq!(as_of(&t2, &["-l", "team=blue"]), ["web-1"]);
        assert_eq!(as_of(&t3, &["--field-selector", "spec.role=db"]), ["web-1"]);
        assert_eq!(
            as_of(&t2, &["--field-selector", "spec.role=db"]),
            Vec::<String>::new()
        );
        assert_eq!(as_of(&t4, &["-l", "team=red"]), ["web-2", "web-3"]);
        assert_eq!(as_of(&t5, &["-l", "team=red"]), ["web-2"]);
        let web1_at_t2 = fleet_json(&admin, &["get", "hosts", "web-1", "--as-of", &t2]);
        assert_eq!(web1_at_t2["spec"]["role"], "web");
        assert_eq!(web1_at_t2["metadata"]["labels"]["team"], "blue");
        // The table kubectl would print, as it was.
        let table = fleet(&admin, &["get", "hosts", "--as-of", &t1]);
        assert!(table.starts_with("NAME"), "{table}");
        assert!(table.contains("web-3"), "{table}");

        // History, with users and operations.
        let web1 = fleet_json(&admin, &["history", "hosts/web-1"]);
        assert_eq!(
            summary(&web1),
            [
                ("alice".into(), "create".into()),
                ("bob".into(), "patch".into()),
                ("carol (by fleetdb-admin)".into(), "patch".into())
            ]
        );
        for change in web1.as_array().unwrap() {
            let keys: Vec<&String> = change.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["operation", "patch", "revision", "time", "user"]);
        }
        assert_eq!(
            web1[1]["patch"],
            json!([{"op": "add", "path": "/metadata/labels/team", "value": "blue"}])
        );
        // A spec change moves the generation too.
        assert_eq!(
            web1[2]["patch"],
            json!([
                {"op": "replace", "path": "/metadata/generation", "value": 2},
                {"op": "replace", "path": "/spec/role", "value": "db"},
            ])
        );
        assert!(web1[0]["time"].as_str().unwrap() > t0.as_str());
        assert!(web1[0]["time"].as_str().unwrap() < t1.as_str());
        // A deleted object keeps its history.
        let web3 = fleet_json(&admin, &["history", "hosts/web-3"]);
        assert_eq!(
            summary(&web3),
            [
                ("alice".into(), "create".into()),
                ("alice".into(), "delete".into())
            ]
        );
        assert_eq!(web3[1]["patch"], json!([{"op": "remove", "path": ""}]));

        // Blame per field.
        let blame = fleet_json(&admin, &["blame", "hosts/web-1"]);
        assert_eq!(blame["spec.role"]["user"], "carol (by fleetdb-admin)");
        assert_eq!(blame["metadata.labels.team"]["user"], "bob");
        assert_eq!(blame["metadata.name"]["user"], "alice");
        assert_eq!(blame["spec.role"]["revision"], web1[2]["revision"]);

        // The fleet's diff between two instants.
        let diff = fleet_json(&admin, &["diff", "hosts", "--from", &t1, "--to", &t5]);
        assert_eq!(diff["added"], json!(["web-2"]));
        assert_eq!(diff["removed"], json!(["web-3"]));
        assert_eq!(diff["changed"][0]["name"], "web-1");
        let paths: Vec<&str> = diff["changed"][0]["patch"]
            .as_array()
            .unwrap()
            .iter()
            .map(|op| op["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "/metadata/generation",
                "/metadata/labels/team",
                "/spec/role"
            ]
        );
        let diff_now = fleet_json(&admin, &["diff", "hosts", "--from", &t4]);
        assert_eq!(diff_now["removed"], json!(["web-3"]));
        web1
    };
    let web1 = check();

    // A watch resumes from a revision long past instead of answering 410.
    let first = web1[0]["revision"].as_i64().unwrap();
    let events = server.ok(&[
        "get",
        "--raw",
        &format!(
            "/apis/fleetdb.io/v1alpha1/hosts?watch=true&resourceVersion={first}&timeoutSeconds=2"
        ),
    ]);
    let kinds: Vec<String> = events
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // web-3 created, web-1 labelled and patched, web-2 created, web-3 deleted.
    assert_eq!(
        kinds,
        ["ADDED", "MODIFIED", "MODIFIED", "ADDED", "DELETED"],
        "{events}"
    );

    server.restart();
    check();

    // The same commands as a kubectl plugin.
    let bin = server.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let linked = std::process::Command::new(env!("CARGO_BIN_EXE_fleetdb"))
        .args(["kubectl-plugin", "--dir", bin.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(linked.status.success(), "{linked:?}");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let plugin = server
        .kubectl_command(&[
            "fleet",
            "history",
            "hosts/web-3",
            "-o",
            "json",
            "--kubeconfig",
            admin.to_str().unwrap(),
        ])
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        plugin.status.success(),
        "kubectl fleet: {}",
        String::from_utf8_lossy(&plugin.stderr)
    );
    let via_plugin: Value = serde_json::from_slice(&plugin.stdout).unwrap();
    assert_eq!(
        summary(&via_plugin),
        [
            ("alice".into(), "create".into()),
            ("alice".into(), "delete".into())
        ]
    );

    // Restore: web-1 back to alice's version (the label and role go), web-3 created again.
    let said = fleet(
        &admin,
        &["restore", "hosts/web-1", "--to", &first.to_string()],
    );
    assert!(
        said.contains(&format!("restored to revision {first}")),
        "{said}"
    );
    let now: Value =
        serde_json::from_str(&server.ok(&["get", "host", "web-1", "-o", "json"])).unwrap();
    assert_eq!(now["spec"]["role"], "web");
    assert!(now["metadata"]["labels"].get("team").is_none(), "{now}");
    let web1 = fleet_json(&admin, &["history", "hosts/web-1"]);
    assert_eq!(
        summary(&web1).last().unwrap(),
        &("fleetdb-admin".to_owned(), "update".to_owned())
    );
    let web3 = fleet_json(&admin, &["history", "hosts/web-3"]);
    let created = web3[0]["revision"].as_i64().unwrap().to_string();
    fleet(&admin, &["restore", "hosts/web-3", "--to", &created]);
    server.ok(&["get", "host", "web-3"]);
    // A revision the object never had, and a deletion, are refused with a reason.
    let deleted = web3[1]["revision"].as_i64().unwrap().to_string();
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_fleetdb"))
        .args(["restore", "hosts/web-3", "--to", &deleted, "--kubeconfig"])
        .arg(&admin)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("deleted"),
        "{refused:?}"
    );

    // Reading history is its own permission: bob, without it, is refused.
    let (dave, _) = server.identity("dave.kubeconfig", &["--user", "dave"]);
    server.ok(&[
        "create",
        "clusterrole",
        "host-reader",
        "--verb=get,list",
        "--resource=hosts",
    ]);
    server.ok(&[
        "create",
        "clusterrolebinding",
        "dave-reads",
        "--clusterrole=host-reader",
        "--user=dave",
    ]);
    // Pages of two, from the newest back, make the whole history; a made-up token is a 400.
    let path = "/apis/fleetdb.io/v1alpha1/hosts/web-1/history";
    let whole: Value = serde_json::from_str(&server.ok(&["get", "--raw", path])).unwrap();
    assert!(whole["metadata"]["continue"].is_null(), "{whole}");
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page: Value = serde_json::from_str(&server.ok(&[
            "get",
            "--raw",
            &format!("{path}?limit=2&continue={token}"),
        ]))
        .unwrap();
        assert!(page["items"].as_array().unwrap().len() <= 2, "{page}");
        pages.push(page["items"].as_array().unwrap().clone());
        match page["metadata"]["continue"].as_str() {
            Some(next) => token = next.to_owned(),
            None => break,
        }
    }
    assert!(pages.len() >= 2, "{pages:?}");
    let paged: Vec<Value> = pages.into_iter().rev().flatten().collect();
    assert_eq!(&paged, whole["items"].as_array().unwrap());
    let refused = server.fails(&["get", "--raw", &format!("{path}?continue=nonsense")]);
    assert!(refused.contains("invalid continue token"), "{refused}");
    let forbidden = server.fails_as(
        &dave,
        &[
            "get",
            "--raw",
            "/apis/fleetdb.io/v1alpha1/hosts/web-1/history",
        ],
    );
    assert!(forbidden.contains("hosts/history"), "{forbidden}");
    server.ok_as(
        &dave,
        &[
            "get",
            "--raw",
            &format!("/apis/fleetdb.io/v1alpha1/hosts?asOf={t2}"),
        ],
    );
    let bad = server.fails(&[
        "get",
        "--raw",
        "/apis/fleetdb.io/v1alpha1/hosts?asOf=yesterday",
    ]);
    assert!(bad.contains("RFC 3339"), "{bad}");
}

#[test]
fn history_on_the_embedded_store() {
    history_is_kept(Backend::Embedded);
}

#[test]
fn history_on_etcd() {
    history_is_kept(Backend::Etcd);
}

fn tenure(server: &Fleetdb, name: &str) -> Value {
    let host: Value =
        serde_json::from_str(&server.ok(&["get", "host", name, "-o", "json"])).unwrap();
    host["status"]["tenure"].clone()
}

/// Polls the host's tenure until `check` holds (30 s at most).
fn wait_tenure(server: &Fleetdb, name: &str, why: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let tenure = tenure(server, name);
        if check(&tenure) {
            return tenure;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{why}: tenure is {tenure}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn set_state(server: &Fleetdb, name: &str, state: &str) {
    server.ok(&[
        "patch",
        "host",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(r#"{{"status":{{"state":"{state}"}}}}"#),
    ]);
}

/// The controllers keep each host's time in the fleet and in service, from its history:
/// through maintenance, a deletion and re-creation, and a restart.
#[test]
fn hosts_show_how_long_they_have_been_in_the_fleet_and_in_service() {
    let mut server = Fleetdb::start_with(Backend::Embedded, &["--decommission-timeout", "1s"]);
    server.ok_input(&["create", "-f", "-"], &host("web-1", "web", "team: blue"));
    let created: Value =
        serde_json::from_str(&server.ok(&["get", "host", "web-1", "-o", "json"])).unwrap();
    let first_created = created["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = wait_tenure(&server, "web-1", "a new host is in the fleet", |t| {
        t["inFleetSince"].is_string()
    });
    assert_eq!(out["inFleetSince"], first_created.as_str());
    assert!(
        out.get("inServiceSince").is_none(),
        "not running yet: {out}"
    );

    let before_running = instant();
    set_state(&server, "web-1", "Running");
    let serving = wait_tenure(&server, "web-1", "a running host is in service", |t| {
        t["inServiceSince"].is_string()
    });
    let since = serving["inServiceSince"].as_str().unwrap().to_owned();
    assert!(
        since.as_str() > before_running.as_str(),
        "{since} vs {before_running}"
    );
    let table = server.ok(&["get", "hosts"]);
    assert!(
        table.contains("JOINED") && table.contains("SERVING"),
        "{table}"
    );

    server.ok(&[
        "patch",
        "host",
        "web-1",
        "--type=merge",
        "-p",
        r#"{"spec":{"maintenance":true}}"#,
    ]);
    wait_tenure(
        &server,
        "web-1",
        "maintenance takes it out of service",
        |t| t.get("inServiceSince").is_none(),
    );
    let back = instant();
    server.ok(&[
        "patch",
        "host",
        "web-1",
        "--type=merge",
        "-p",
        r#"{"spec":{"maintenance":false}}"#,
    ]);
    let again = wait_tenure(&server, "web-1", "back in service", |t| {
        t["inServiceSince"].is_string()
    });
    assert!(
        again["inServiceSince"].as_str().unwrap() > back.as_str(),
        "{again}"
    );

    // Restarted, the same answer.
    server.restart();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(tenure(&server, "web-1"), again);

    // Deleted (decommissioned after the timeout, by controllers that may first wait for the
    // previous process's leader Lease to expire) and created again: in the fleet since the
    // first creation, in service since it came back.
    server.ok(&["delete", "host", "web-1", "--timeout=90s"]);
    std::thread::sleep(Duration::from_millis(1100));
    server.ok_input(&["create", "-f", "-"], &host("web-1", "web", "team: blue"));
    set_state(&server, "web-1", "Running");
    let returned = wait_tenure(&server, "web-1", "a returning host", |t| {
        t["inServiceSince"].is_string() && t["inServiceSince"] != again["inServiceSince"]
    });
    assert_eq!(returned["inFleetSince"], first_created.as_str());
}
