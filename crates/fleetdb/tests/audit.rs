//! The audit log with the real kubectl: one audit.k8s.io/v1 Event per line for every request
//! the server answered, at the policy's level, with the user, the impersonated user, the
//! object, the response code and the authorization decision — and never a credential.

mod support;

use serde_json::Value;
use support::{Backend, Fleetdb, fetch_once};

const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: RequestResponse
  resources:
  - group: fleetdb.io
    resources: [hosts]
  verbs: [patch, get]
- level: Request
  resources:
  - group: rbac.authorization.k8s.io
- level: Metadata
"#;

fn events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[test]
fn every_request_leaves_one_audit_event() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let mut server = Fleetdb::start_with(
        Backend::Embedded,
        &[
            "--audit-log-path",
            log.to_str().unwrap(),
            "--audit-policy-file",
            policy.to_str().unwrap(),
        ],
    );
    let csv = server.write("lab.csv", "hostname,ips\nweb-1,10.0.0.1\n");
    server.ok_input(
        &["apply", "-f", "-"],
        &format!("apiVersion: fleetdb.io/v1alpha1\nkind: Source\nmetadata: {{name: lab}}\nspec:\n  type: file\n  file: {{path: {}}}\n", csv.display()),
    );
    fetch_once(&server, "lab");
    server.ok(&[
        "create",
        "clusterrolebinding",
        "readers-view",
        "--clusterrole=view",
        "--group=readers",
    ]);
    let (alice, _) = server.identity(
        "alice.kubeconfig",
        &["--user", "alice", "--group", "readers"],
    );
    server.ok_as(&alice, &["get", "host", "web-1"]);
    server.fails_as(&alice, &["delete", "host", "web-1"]);
    server.ok(&[
        "patch",
        "host",
        "web-1",
        "--type=merge",
        "-p",
        r#"{"spec":{"maintenance":true}}"#,
    ]);
    server.ok(&["get", "hosts", "--as=alice", "--as-group=readers"]);
    server.stop();

    let events = events(&log);
    // One ResponseComplete per request the server answered (the server logs each one).
    let answered = server
        .log()
        .lines()
        .filter(|l| l.contains("router") && l.contains(" request ") && l.contains("method="))
        .count();
    let complete: Vec<&Value> = events
        .iter()
        .filter(|e| e["stage"] == "ResponseComplete")
        .collect();
    assert_eq!(complete.len(), answered, "one event per request");
    assert!(
        events.iter().all(|e| e["stage"] != "RequestReceived"),
        "omitted by the policy"
    );
    let micro = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$").unwrap();
    for event in &events {
        assert_eq!(event["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(event["kind"], "Event");
        assert!(event["auditID"].as_str().is_some_and(|id| !id.is_empty()));
        assert!(event["user"]["username"].is_string(), "{event}");
        assert!(
            micro.is_match(event["requestReceivedTimestamp"].as_str().unwrap()),
            "{event}"
        );
        assert!(
            micro.is_match(event["stageTimestamp"].as_str().unwrap()),
            "{event}"
        );
        // Requests over the network carry where they came from; the server's own start-up
        // work (installing its CRDs) does not.
        if !event["user"]["username"]
            .as_str()
            .unwrap()
            .starts_with("system:fleetdb")
        {
            assert_eq!(event["sourceIPs"][0], "127.0.0.1", "{event}");
        }
    }

    let find = |verb: &str, user: &str, code: u64| -> &Value {
        complete
            .iter()
            .find(|e| {
                e["verb"] == verb
                    && e["user"]["username"] == user
                    && e["objectRef"]["resource"] == "hosts"
                    && e["responseStatus"]["code"] == code
            })
            .unwrap_or_else(|| panic!("no {verb} of hosts by {user} answered {code}"))
    };
    // alice's refused delete: Metadata, with the decision.
    let refused = find("delete", "alice", 403);
    assert_eq!(refused["level"], "Metadata");
    assert_eq!(refused["objectRef"]["name"], "web-1");
    assert_eq!(refused["objectRef"]["apiGroup"], "fleetdb.io");
    assert_eq!(
        refused["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );
    assert_eq!(refused["responseStatus"]["reason"], "Forbidden");
    assert!(
        refused["user"]["groups"]
            .as_array()
            .unwrap()
            .contains(&"readers".into())
    );
    // alice's get: RequestResponse, with the object and the RBAC reason.
    let read = find("get", "alice", 200);
    assert_eq!(read["level"], "RequestResponse");
    // kubectl asked for a Table: that is what it got, and what is recorded.
    assert_eq!(read["responseObject"]["kind"], "Table", "{read}");
    assert!(
        read["responseObject"]["rows"].to_string().contains("web-1"),
        "{read}"
    );
    assert_eq!(
        read["annotations"]["authorization.k8s.io/reason"],
        "RBAC: allowed by ClusterRoleBinding \"readers-view\" of ClusterRole \"view\" to Group \"readers\""
    );
    // The administrator's patch records the patch and the result.
    let patch = find("patch", "fleetdb-admin", 200);
    assert_eq!(patch["requestObject"]["spec"]["maintenance"], true);
    assert_eq!(patch["responseObject"]["spec"]["maintenance"], true);
    // The binding is recorded at Request level.
    let binding = complete
        .iter()
        .find(|e| e["objectRef"]["resource"] == "clusterrolebindings" && e["verb"] == "create")
        .expect("the binding's creation");
    assert_eq!(binding["level"], "Request");
    assert!(binding.get("responseObject").is_none());
    // Impersonation: the real user, and whom they acted as.
    let impersonated = complete
        .iter()
        .find(|e| e["impersonatedUser"]["username"] == "alice")
        .expect("the impersonated list");
    assert_eq!(impersonated["user"]["username"], "fleetdb-admin");
    assert_eq!(impersonated["verb"], "list");
    // Never a credential.
    let text = std::fs::read_to_string(&log).unwrap();
    for secret in ["PRIVATE KEY", "client-key-data", "BEGIN CERTIFICATE"] {
        assert!(!text.contains(secret), "the audit log holds {secret}");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
