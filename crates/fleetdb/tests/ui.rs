//! The web UI in Debian's Chromium, driven by Playwright (tests/python/ui_scenarios.py):
//! login with a one-time URL (once only), filters by label and text, a host's history with
//! who changed it, approving a certificate request and authorizing a pending host,
//! maintenance seen live on a second page, RBAC
//! as the API's, logout, an expired session; a screenshot of every page is kept under
//! `target/tmp/ui-screenshots`.

mod support;

use std::process::Command;

use support::{Backend, Fleetdb, venv_bin};

const CHROMIUM: &str = "/usr/bin/chromium";

fn login_url(server: &Fleetdb, kubeconfig: &std::path::Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_fleetdb"))
        .arg("ui-login")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "fleetdb ui-login: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let url = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(
        url.starts_with(&format!("{}/ui/login?token=", server.url())),
        "{url}"
    );
    url
}

fn hosts(server: &Fleetdb) {
    let mut yaml = String::new();
    for i in 0..30 {
        yaml.push_str(&format!(
            "apiVersion: fleetdb.io/v1alpha1\nkind: Host\nmetadata:\n  name: h{i:02}\n  labels: {{team: {}}}\nspec: {{role: {}, authorized: true}}\n---\n",
            if i % 3 == 0 { "a" } else { "b" },
            if i % 2 == 0 { "web" } else { "db" },
        ));
    }
    yaml.push_str("apiVersion: fleetdb.io/v1alpha1\nkind: Host\nmetadata: {name: new-1, labels: {team: c}}\nspec: {}\n");
    server.ok_input(&["apply", "-f", "-"], &yaml);
    for i in 0..30 {
        server.ok(&[
            "patch",
            "host",
            &format!("h{i:02}"),
            "--subresource=status",
            "--type=merge",
            "-p",
            &format!(
                r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"10.0.0.{i}"}}]}}}}"#
            ),
        ]);
    }
}

#[test]
fn the_ui_in_chromium() {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/setup.sh (Debian's chromium package)"
    );
    let server = Fleetdb::start(Backend::Embedded);
    hosts(&server);
    // Changes by a person of their own, for the history page.
    let (alice, _) = server.identity(
        "alice.kubeconfig",
        &["--user", "alice", "--group", "system:masters"],
    );
    server.ok_as(&alice, &["label", "host", "h07", "rack=r7"]);
    server.ok_as(
        &alice,
        &[
            "patch",
            "host",
            "h07",
            "--type=merge",
            "-p",
            r#"{"spec":{"role":"log"}}"#,
        ],
    );
    // A Source whose last sync failed.
    server.ok_input(
        &["apply", "-f", "-"],
        "apiVersion: fleetdb.io/v1alpha1\nkind: Source\nmetadata: {name: dc-lab}\nspec:\n  type: file\n  file: {path: /srv/lab.csv}\n",
    );
    server.ok(&[
        "patch",
        "source",
        "dc-lab",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"lastSyncTime":"2026-12-01T06:00:00Z","hostsSeen":12,"lastError":"cannot read /srv/lab.csv: no such file"}}"#,
    ]);
    // Someone who may read hosts and nothing more.
    server.ok_input(
        &["apply", "-f", "-"],
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: host-reader}\nrules:\n- {apiGroups: [fleetdb.io], resources: [hosts], verbs: [get, list, watch]}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: host-reader}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: host-reader}\nsubjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: User, name: viewer}\n",
    );
    let (viewer, _) = server.identity("viewer.kubeconfig", &["--user", "viewer"]);
    // Logging in to the UI is a grant of its own (the `fleetdb:ui` role, part of `view`).
    let refused = Command::new(env!("CARGO_BIN_EXE_fleetdb"))
        .args(["ui-login", "--kubeconfig"])
        .arg(&viewer)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("/ui/login-tokens"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    server.ok(&[
        "create",
        "clusterrolebinding",
        "viewer-ui",
        "--clusterrole=fleetdb:ui",
        "--user=viewer",
    ]);
    // A person's certificate request, waiting for approval.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bob");
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    use base64::Engine;
    server.ok_input(
        &["create", "-f", "-"],
        &format!(
            "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: bob-laptop}}\nspec:\n  request: {}\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth, digital signature]\n",
            base64::engine::general_purpose::STANDARD.encode(pem)
        ),
    );
    // A server whose sessions last 3 seconds, for the expiry.
    let short = Fleetdb::start_with(Backend::Embedded, &["--ui-session-lifetime", "3s"]);

    let screenshots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/ui_scenarios.py");
    let output = Command::new(venv_bin("python"))
        .arg(&script)
        .env("FLEETDB_URL", server.url())
        .env("ADMIN_LOGIN", login_url(&server, &server.kubeconfig()))
        .env("ADMIN_LOGIN_2", login_url(&server, &server.kubeconfig()))
        .env("VIEWER_LOGIN", login_url(&server, &viewer))
        .env("SHORT_LOGIN", login_url(&short, &short.kubeconfig()))
        .env("CHROMIUM", CHROMIUM)
        .env("SCREENSHOTS", &screenshots)
        .output()
        .unwrap();
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{said}\nserver log:\n{}",
        server.log()
    );
    // What the browser did went through the API as the signed-in identities.
    let authorized = server.ok(&["get", "host", "new-1", "-o", "jsonpath={.spec.authorized}"]);
    assert_eq!(authorized, "true");
    let approval = server.ok(&[
        "get",
        "csr",
        "bob-laptop",
        "-o",
        "jsonpath={.status.conditions[0].type}/{.status.conditions[0].message}",
    ]);
    assert_eq!(
        approval,
        "Approved/approved by fleetdb-admin in the fleetdb UI"
    );
    let maintenance = server.ok(&["get", "host", "h03", "-o", "jsonpath={.spec.maintenance}"]);
    assert_eq!(maintenance, "true");
    let history = Command::new(env!("CARGO_BIN_EXE_fleetdb"))
        .args(["history", "hosts/h03", "-o", "json", "--kubeconfig"])
        .arg(server.kubeconfig())
        .output()
        .unwrap();
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    let last = history.as_array().unwrap().last().unwrap();
    assert_eq!(last["user"], "fleetdb-admin");
    for page in [
        "login-refused",
        "overview",
        "hosts",
        "host",
        "joins",
        "live",
        "viewer-denied",
        "dark",
    ] {
        let shot = screenshots.join(format!("{page}.png"));
        assert!(
            std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
            "no screenshot {}",
            shot.display()
        );
    }
}
