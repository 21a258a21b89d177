//! Joining with the real kubectl: Secrets and ConfigMaps made by `kubectl create` (which
//! sends protobuf), bootstrap tokens from `fleetdb token`, certificate signing requests filed
//! with a token, approved automatically or with `kubectl certificate approve|deny`, signed
//! by the server's CA, and Events recording each decision; what a token and a host identity
//! may not do, refused.

mod support;

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use support::{Backend, Fleetdb, ca, fleetdb, token};

/// A kubeconfig that authenticates with a bearer token.
fn token_kubeconfig(server: &Fleetdb, name: &str, token: &str) -> PathBuf {
    server.write(
        name,
        &format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: f, cluster: {{server: {}, certificate-authority-data: {}}}}}]\nusers: [{{name: t, user: {{token: {token}}}}}]\ncontexts: [{{name: c, context: {{cluster: f, user: t}}}}]\ncurrent-context: c\n",
            server.url(),
            STANDARD.encode(ca(server))
        ),
    )
}

/// A kubeconfig with a client certificate and key.
fn certificate_kubeconfig(server: &Fleetdb, name: &str, cert: &str, key: &str) -> PathBuf {
    server.write(
        name,
        &format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: f, cluster: {{server: {}, certificate-authority-data: {}}}}}]\nusers: [{{name: u, user: {{client-certificate-data: {}, client-key-data: {}}}}}]\ncontexts: [{{name: c, context: {{cluster: f, user: u}}}}]\ncurrent-context: c\n",
            server.url(),
            STANDARD.encode(ca(server)),
            STANDARD.encode(cert),
            STANDARD.encode(key)
        ),
    )
}

/// A new key and a PEM certificate request for `cn` in `organizations`.
fn request(cn: &str, organizations: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, cn);
    for organization in organizations {
        name.push(rcgen::DnType::OrganizationName, *organization);
    }
    params.distinguished_name = name;
    let csr = params.serialize_request(&key).unwrap();
    (csr.pem().unwrap(), key.serialize_pem())
}

fn csr_manifest(name: &str, pem: &str, signer: &str) -> String {
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: {name}}}\nspec:\n  request: {}\n  signerName: {signer}\n  usages: [client auth, digital signature]\n  username: someone-else\n  groups: [system:masters]\n",
        STANDARD.encode(pem)
    )
}

/// Files a host certificate request named `name` with `kubeconfig`'s identity.
fn file_host_request(server: &Fleetdb, kubeconfig: &std::path::Path, name: &str, pem: &str) {
    let manifest = server.write(
        &format!("{name}.yaml"),
        &csr_manifest(name, pem, "fleetdb.io/host"),
    );
    server.ok_as(kubeconfig, &["create", "-f", manifest.to_str().unwrap()]);
}

/// Waits for a request's condition column to read `want`; returns the request as JSON.
fn wait_for(server: &Fleetdb, name: &str, want: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let row = server.ok(&["get", "csr", name, "--no-headers"]);
        if row.split_whitespace().last() == Some(want) {
            return serde_json::from_str(&server.ok(&["get", "csr", name, "-o", "json"])).unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never became {want}: {row}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn issued_certificate(object: &serde_json::Value) -> String {
    String::from_utf8(
        STANDARD
            .decode(object["status"]["certificate"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn secrets_and_config_maps_from_kubectl() {
    let server = Fleetdb::start(Backend::Embedded);
    server.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=s3cret",
        "-n",
        "default",
    ]);
    let stored = server.ok(&[
        "get",
        "secret",
        "db",
        "-o",
        "jsonpath={.type} {.data.password}",
    ]);
    assert_eq!(stored, format!("Opaque {}", STANDARD.encode("s3cret")));
    assert!(server.ok(&["get", "secrets"]).contains("db     Opaque   1"));
    server.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=fast",
    ]);
    assert_eq!(
        server.ok(&["get", "cm", "settings", "-o", "jsonpath={.data.mode}"]),
        "fast"
    );
    let refused = server.fails_input(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bad}\ndata: {\"a/b\": eA==}\n",
    );
    assert!(refused.contains("data[a/b]"), "{refused}");
    // The type of a Secret never changes.
    let refused = server.fails_input(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\ntype: kubernetes.io/tls\n",
    );
    assert!(refused.contains("field is immutable"), "{refused}");
}

#[test]
fn hosts_join_with_tokens_and_get_certificates() {
    let server = Fleetdb::start(Backend::Embedded);
    let auto = token(&server, &["--auto-approve", "--description", "rack 4"]);
    let manual = token(&server, &["--ttl", "1h"]);
    let listing = String::from_utf8(fleetdb(&server, &["token", "list"]).stdout).unwrap();
    let auto_id = auto.split('.').next().unwrap();
    assert!(
        listing.contains(auto_id) && listing.contains("rack 4"),
        "{listing}"
    );
    assert!(
        !listing.contains(auto.split('.').nth(1).unwrap()),
        "secrets are never listed"
    );

    // A token authenticates as system:bootstrap:<id>.
    let bootstrap = token_kubeconfig(&server, "auto.kubeconfig", &auto);
    let whoami = server.ok_as(
        &bootstrap,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(whoami, format!("system:bootstrap:{auto_id}"));
    // ... which may file certificate requests and nothing else.
    let refused = server.fails_as(&bootstrap, &["get", "secrets", "-n", "kube-system"]);
    assert!(refused.contains("Forbidden"), "{refused}");
    let refused = server.fails_as(&bootstrap, &["get", "hosts"]);
    assert!(refused.contains("Forbidden"), "{refused}");

    // Auto-approved and signed; the requester is who filed it, whatever the body said.
    let (pem, key) = request("fleetdb:host:web-1", &["fleetdb:hosts"]);
    file_host_request(&server, &bootstrap, "web-1", &pem);
    let signed = wait_for(&server, "web-1", "Approved,Issued");
    assert_eq!(
        signed["spec"]["username"],
        format!("system:bootstrap:{auto_id}")
    );
    assert!(
        !signed["spec"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "system:masters"),
        "{}",
        signed["spec"]
    );
    let host = certificate_kubeconfig(
        &server,
        "web-1.kubeconfig",
        &issued_certificate(&signed),
        &key,
    );
    assert_eq!(
        server.ok_as(
            &host,
            &[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}"
            ]
        ),
        "fleetdb:host:web-1"
    );
    let events = server.ok(&[
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        "involvedObject.name=web-1,involvedObject.kind=CertificateSigningRequest",
        "-o",
        "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
    ]);
    assert!(
        events.contains("AutoApproved") && events.contains("Issued"),
        "{events}"
    );

    // Without auto-approval a request waits for a person.
    let manual_config = token_kubeconfig(&server, "manual.kubeconfig", &manual);
    let (pem, _) = request("fleetdb:host:web-2", &["fleetdb:hosts"]);
    file_host_request(&server, &manual_config, "web-2", &pem);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(server.ok(&["get", "csr", "web-2"]).contains("Pending"));
    // The requester may not approve its own request.
    let refused = server.fails_as(&manual_config, &["certificate", "approve", "web-2"]);
    assert!(
        refused.contains("Forbidden") || refused.contains("forbidden"),
        "{refused}"
    );
    server.ok(&["certificate", "approve", "web-2"]);
    wait_for(&server, "web-2", "Approved,Issued");
    let (pem, _) = request("fleetdb:host:web-3", &["fleetdb:hosts"]);
    file_host_request(&server, &manual_config, "web-3", &pem);
    server.ok(&["certificate", "deny", "web-3"]);
    let denied = wait_for(&server, "web-3", "Denied");
    assert!(denied["status"].get("certificate").is_none());
    // Approving the other way afterwards is refused: Approved and Denied exclude each other.
    let refused = server.fails(&["certificate", "approve", "web-3"]);
    assert!(
        refused.contains("mutually exclusive") || refused.contains("Denied"),
        "{refused}"
    );

    // A host certificate for someone else, or an approved administrator certificate, is
    // never issued.
    let (pem, _) = request("fleetdb:host:web-9", &["fleetdb:hosts", "system:masters"]);
    file_host_request(&server, &bootstrap, "web-9", &pem);
    let failed = wait_for(&server, "web-9", "Approved,Failed");
    assert!(
        failed["status"]["conditions"][1]["message"]
            .as_str()
            .unwrap()
            .contains("organization"),
        "{}",
        failed["status"]
    );
    let (pem, _) = request("mallory", &["system:masters"]);
    server.ok_input(
        &["create", "-f", "-"],
        &csr_manifest("mallory", &pem, "kubernetes.io/kube-apiserver-client"),
    );
    server.ok(&["certificate", "approve", "mallory"]);
    wait_for(&server, "mallory", "Approved,Failed");
    // A person's client certificate through the same flow.
    let (pem, key) = request("carol", &["fleetdb:inventory"]);
    server.ok_input(
        &["create", "-f", "-"],
        &csr_manifest("carol", &pem, "kubernetes.io/kube-apiserver-client"),
    );
    server.ok(&["certificate", "approve", "carol"]);
    let carol = wait_for(&server, "carol", "Approved,Issued");
    let carol = certificate_kubeconfig(
        &server,
        "carol.kubeconfig",
        &issued_certificate(&carol),
        &key,
    );
    assert!(
        server
            .ok_as(&carol, &["auth", "can-i", "list", "hosts"])
            .contains("yes")
    );

    // A deleted token stops working at once; so does an unknown one.
    let output = fleetdb(&server, &["token", "delete", auto_id]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let refused = server.fails_as(&bootstrap, &["get", "csr"]);
    assert!(
        refused.contains("Unauthorized") || refused.contains("credentials"),
        "{refused}"
    );
    let unknown = token_kubeconfig(&server, "unknown.kubeconfig", "zzzzzz.0123456789abcdef");
    let refused = server.fails_as(&unknown, &["get", "csr"]);
    assert!(
        refused.contains("Unauthorized") || refused.contains("credentials"),
        "{refused}"
    );
}

#[test]
fn a_host_identity_writes_its_own_lease_and_events_only() {
    let server = Fleetdb::start(Backend::Embedded);
    let (web, _) = server.identity(
        "web-1.kubeconfig",
        &["--user", "fleetdb:host:web-1", "--group", "fleetdb:hosts"],
    );
    let lease = |name: &str| {
        format!(
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: {name}, namespace: fleetdb-system}}\nspec: {{holderIdentity: {name}, leaseDurationSeconds: 40}}\n"
        )
    };
    server.ok_as(
        &web,
        &[
            "create",
            "-f",
            server.write("own.yaml", &lease("web-1")).to_str().unwrap(),
        ],
    );
    assert!(
        server
            .ok(&["get", "leases", "-n", "fleetdb-system"])
            .contains("web-1")
    );
    let refused = server.fails_as(
        &web,
        &[
            "create",
            "-f",
            server
                .write("other.yaml", &lease("web-2"))
                .to_str()
                .unwrap(),
        ],
    );
    assert!(refused.contains("may write only"), "{refused}");
    let event = |host: &str| {
        format!(
            "apiVersion: v1\nkind: Event\nmetadata: {{name: {host}.1, namespace: default}}\ninvolvedObject: {{apiVersion: fleetdb.io/v1alpha1, kind: Host, name: {host}}}\nreason: Preflight\nmessage: ok\ntype: Normal\n"
        )
    };
    server.ok_as(
        &web,
        &[
            "create",
            "-f",
            server.write("e1.yaml", &event("web-1")).to_str().unwrap(),
        ],
    );
    let refused = server.fails_as(
        &web,
        &[
            "create",
            "-f",
            server.write("e2.yaml", &event("web-2")).to_str().unwrap(),
        ],
    );
    assert!(refused.contains("may write only"), "{refused}");
    let refused = server.fails_as(&web, &["create", "configmap", "x", "--from-literal=a=b"]);
    assert!(
        refused.contains("forbidden") || refused.contains("Forbidden"),
        "{refused}"
    );
    let listed = server.ok(&["get", "events", "-n", "default"]);
    assert!(
        listed.contains("host/web-1") && listed.contains("Preflight"),
        "{listed}"
    );
}
