//! Least privilege with the real kubectl, on the embedded store and on etcd: identities for
//! a read-only person, the fetcher of one Source, monitoring and Ansible; every forbidden
//! action answered 403 with kube-apiserver's message; `kubectl auth can-i --list` matching
//! what the identity can really do; escalation refused; impersonation only with the verb;
//! revocation at once, after a restart and on a replica sharing the store.

mod support;

use std::path::Path;

use support::{Backend, Fleetdb, fetch_once};

/// A fleet of three hosts from a datacenter file, fetched by the `pdx` fetcher, and one
/// host of another source.
fn fleet(server: &Fleetdb) {
    let csv = server.write(
        "pdx.csv",
        "hostname,datacenter,role,team,ips\nweb-1,pdx,web,infra,10.0.0.1\nweb-2,pdx,web,infra,10.0.0.2\ndb-1,pdx,db,data,10.0.0.3\n",
    );
    server.ok_input(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: fleetdb.io/v1alpha1\nkind: Source\nmetadata: {{name: pdx}}\nspec:\n  type: file\n  file: {{path: {}}}\n---\napiVersion: fleetdb.io/v1alpha1\nkind: Source\nmetadata: {{name: ams}}\nspec:\n  type: file\n  file: {{path: /nonexistent.csv}}\n---\napiVersion: fleetdb.io/v1alpha1\nkind: Host\nmetadata:\n  name: ams-1\n  labels: {{fleetdb.io/source: ams}}\nspec: {{}}\n",
            csv.display()
        ),
    );
    let summary = fetch_once(server, "pdx");
    assert!(summary.contains("3 created"), "{summary}");
}

/// kubectl's report of a 403 with `message`: `Error from server (Forbidden): [error when
/// creating "STDIN": ]<message>`, or for `kubectl create <kind>` `error: failed to create
/// <kind>: <message>`.
fn forbidden(stderr: &str, message: &str) {
    let reported = [
        "Error from server (Forbidden): ",
        "error when creating \"STDIN\": ",
        ": ",
    ]
    .iter()
    .any(|prefix| stderr.contains(&format!("{prefix}{message}")));
    assert!(reported, "expected the 403 {message:?}, got: {stderr}");
}

/// `kubectl auth can-i --list` as (resource, verbs) rows.
fn can_i_list(server: &Fleetdb, kubeconfig: &Path) -> Vec<(String, Vec<String>)> {
    let listing = server.ok_as(kubeconfig, &["auth", "can-i", "--list", "--no-headers"]);
    listing
        .lines()
        .filter_map(|line| {
            let resource = line.split_whitespace().next()?;
            if resource.starts_with('[') {
                return None; // a non-resource URL row
            }
            let verbs = line.rsplit_once('[')?.1.trim_end_matches(']');
            Some((
                resource.to_owned(),
                verbs.split_whitespace().map(str::to_owned).collect(),
            ))
        })
        .collect()
}

/// Whether the listing says `verb` on `resource` (`hosts.fleetdb.io`) is allowed.
fn listed(rows: &[(String, Vec<String>)], resource: &str, verb: &str) -> bool {
    rows.iter().any(|(r, verbs)| {
        (r == resource || r == "*.*") && verbs.iter().any(|v| v == verb || v == "*")
    })
}

/// Checks, resource by resource, that what `can-i --list` says matches what really
/// happens: a list, and a delete (server-side dry run: authorized, nothing removed).
fn listing_matches_reality(server: &Fleetdb, kubeconfig: &Path, who: &str) {
    let rows = can_i_list(server, kubeconfig);
    for (resource, kubectl_name, object) in [
        ("hosts.fleetdb.io", "hosts", "web-1"),
        ("sources.fleetdb.io", "sources", "pdx"),
        ("clusters.fleetdb.io", "clusters", ""),
        ("namespaces", "namespaces", "default"),
        (
            "customresourcedefinitions.apiextensions.k8s.io",
            "customresourcedefinitions",
            "hosts.fleetdb.io",
        ),
        (
            "clusterrolebindings.rbac.authorization.k8s.io",
            "clusterrolebindings",
            "cluster-admin",
        ),
        (
            "certificaterevocations.security.fleetdb.io",
            "certificaterevocations",
            "",
        ),
    ] {
        let listed_ok = listed(&rows, resource, "list");
        let really = server
            .kubectl_as(kubeconfig, &["get", kubectl_name])
            .status
            .success();
        assert_eq!(
            listed_ok, really,
            "{who}: can-i --list says list {resource} is {listed_ok}, a real list says {really}: {rows:?}"
        );
        if !object.is_empty() {
            let listed_ok = listed(&rows, resource, "delete");
            let really = server
                .kubectl_as(
                    kubeconfig,
                    &["delete", kubectl_name, object, "--dry-run=server"],
                )
                .status
                .success();
            assert_eq!(
                listed_ok, really,
                "{who}: can-i --list says delete {resource} is {listed_ok}, a real delete says {really}: {rows:?}"
            );
        }
    }
}

fn least_privilege(backend: Backend) {
    let server = Fleetdb::start(backend);
    fleet(&server);

    // A read-only person: the `view` role, by group.
    let (alice, issued) = server.identity(
        "alice.kubeconfig",
        &["--user", "alice", "--group", "readers"],
    );
    assert!(
        issued.contains("issued a certificate for alice"),
        "{issued}"
    );
    server.ok(&[
        "create",
        "clusterrolebinding",
        "readers-view",
        "--clusterrole=view",
        "--group=readers",
    ]);
    let hosts = server.ok_as(&alice, &["get", "hosts", "-o", "name"]);
    assert_eq!(hosts.lines().count(), 4, "{hosts}");
    forbidden(
        &server.fails_as(&alice, &["delete", "host", "web-1"]),
        "hosts.fleetdb.io \"web-1\" is forbidden: User \"alice\" cannot delete resource \"hosts\" in API group \"fleetdb.io\" at the cluster scope",
    );
    forbidden(
        &server.fails_as(&alice, &["delete", "crd", "hosts.fleetdb.io"]),
        "customresourcedefinitions.apiextensions.k8s.io \"hosts.fleetdb.io\" is forbidden: User \"alice\" cannot delete resource \"customresourcedefinitions\" in API group \"apiextensions.k8s.io\" at the cluster scope",
    );
    forbidden(
        &server.fails_as(
            &alice,
            &[
                "patch",
                "host",
                "web-1",
                "--type=merge",
                "-p",
                r#"{"spec":{"maintenance":true}}"#,
            ],
        ),
        "hosts.fleetdb.io \"web-1\" is forbidden: User \"alice\" cannot patch resource \"hosts\" in API group \"fleetdb.io\" at the cluster scope",
    );
    forbidden(
        &server.fails_as(&alice, &["get", "--raw", "/sd/prometheus?port=9100"]),
        "forbidden: User \"alice\" cannot get path \"/sd/prometheus\"",
    );
    assert_eq!(
        server
            .ok_as(&alice, &["auth", "can-i", "list", "hosts"])
            .trim(),
        "yes"
    );
    let no = server.kubectl_as(&alice, &["auth", "can-i", "delete", "hosts"]);
    assert_eq!(String::from_utf8_lossy(&no.stdout).trim(), "no");
    let whoami = server.ok_as(&alice, &["auth", "whoami"]);
    assert!(
        whoami.contains("alice") && whoami.contains("[readers system:authenticated]"),
        "{whoami}"
    );
    listing_matches_reality(&server, &alice, "alice");
    assert!(
        server.ok(&["get", "hosts", "web-1"]).contains("web-1"),
        "nothing was deleted"
    );

    // The fetcher of `pdx`: its own hosts and Source status, nothing else.
    let (fetcher, _) = server.identity("fetcher.kubeconfig", &["--fetcher", "pdx"]);
    forbidden(
        &server.fails_as(&fetcher, &["delete", "crd", "hosts.fleetdb.io"]),
        "customresourcedefinitions.apiextensions.k8s.io \"hosts.fleetdb.io\" is forbidden: User \"fleetdb:fetcher:pdx\" cannot delete resource \"customresourcedefinitions\" in API group \"apiextensions.k8s.io\" at the cluster scope",
    );
    forbidden(
        &server.fails_as(&fetcher, &["delete", "host", "web-1"]),
        "hosts.fleetdb.io \"web-1\" is forbidden: User \"fleetdb:fetcher:pdx\" cannot delete resource \"hosts\" in API group \"fleetdb.io\" at the cluster scope",
    );
    forbidden(
        &server.fails_as(
            &fetcher,
            &[
                "patch",
                "host",
                "web-1",
                "--type=merge",
                "-p",
                r#"{"spec":{"maintenance":true}}"#,
            ],
        ),
        "hosts.fleetdb.io \"web-1\" is forbidden: fleetdb:fetcher:pdx may not change spec",
    );
    forbidden(
        &server.fails_as(&fetcher, &["label", "host", "web-1", "owner=mallory"]),
        "hosts.fleetdb.io \"web-1\" is forbidden: fleetdb:fetcher:pdx may not change the label owner",
    );
    forbidden(
        &server.fails_as(&fetcher, &["label", "host", "ams-1", "fleetdb.io/role=web"]),
        "hosts.fleetdb.io \"ams-1\" is forbidden: fleetdb:fetcher:pdx may write only hosts labelled fleetdb.io/source=pdx; this one is labelled fleetdb.io/source=ams",
    );
    forbidden(
        &server.fails_as(
            &fetcher,
            &[
                "patch",
                "source",
                "ams",
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"lastError":"x"}}"#,
            ],
        ),
        "sources.fleetdb.io \"ams\" is forbidden: fleetdb:fetcher:pdx may write the status of Source \"pdx\" only",
    );
    // What it may do, it can: label its own host with a label it sets.
    server.ok_as(
        &fetcher,
        &[
            "label",
            "host",
            "web-1",
            "fleetdb.io/team=edge",
            "--overwrite",
        ],
    );
    listing_matches_reality(&server, &fetcher, "the fetcher");

    // Monitoring: discovery and hosts; Ansible: hosts and clusters.
    let (monitor, _) = server.identity(
        "monitor.kubeconfig",
        &["--user", "prometheus", "--group", "fleetdb:monitors"],
    );
    let targets = server.ok_as(&monitor, &["get", "--raw", "/sd/prometheus?port=9100"]);
    assert!(targets.contains("10.0.0.1:9100"), "{targets}");
    forbidden(
        &server.fails_as(&monitor, &["get", "sources"]),
        "sources.fleetdb.io is forbidden: User \"prometheus\" cannot list resource \"sources\" in API group \"fleetdb.io\" at the cluster scope",
    );
    listing_matches_reality(&server, &monitor, "the monitor");
    let (ansible, _) = server.identity(
        "ansible.kubeconfig",
        &["--user", "ansible", "--group", "fleetdb:inventory"],
    );
    server.ok_as(&ansible, &["get", "hosts"]);
    forbidden(
        &server.fails_as(&ansible, &["annotate", "host", "web-1", "x=y"]),
        "hosts.fleetdb.io \"web-1\" is forbidden: User \"ansible\" cannot patch resource \"hosts\" in API group \"fleetdb.io\" at the cluster scope",
    );
    listing_matches_reality(&server, &ansible, "ansible");
}

#[test]
fn identities_can_do_their_job_and_nothing_else() {
    least_privilege(Backend::Embedded);
}

#[test]
fn identities_can_do_their_job_and_nothing_else_on_etcd() {
    least_privilege(Backend::Etcd);
}

fn apply_as(server: &Fleetdb, kubeconfig: &Path, yaml: &str) -> std::process::Output {
    let mut child = server
        .kubectl_command(&["apply", "-f", "-", "--server", &server.url()])
        .env("KUBECONFIG", kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn nobody_grants_what_they_do_not_hold() {
    let server = Fleetdb::start(Backend::Embedded);
    fleet(&server);
    // bob manages RBAC objects and reads hosts; he holds nothing else.
    server.ok_input(
        &["apply", "-f", "-"],
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: rbac-manager}\nrules:\n- apiGroups: [rbac.authorization.k8s.io]\n  resources: [clusterroles, clusterrolebindings]\n  verbs: [create, get, list, update, patch]\n- apiGroups: [fleetdb.io]\n  resources: [hosts]\n  verbs: [get, list]\n",
    );
    server.ok(&[
        "create",
        "clusterrolebinding",
        "bob-rbac",
        "--clusterrole=rbac-manager",
        "--user=bob",
    ]);
    let (bob, _) = server.identity("bob.kubeconfig", &["--user", "bob"]);

    let wider = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: host-deleter}\nrules:\n- apiGroups: [fleetdb.io]\n  resources: [hosts]\n  verbs: [get, delete, deletecollection]\n";
    let refused = apply_as(&server, &bob, wider);
    assert!(!refused.status.success());
    forbidden(
        &String::from_utf8_lossy(&refused.stderr),
        "clusterroles.rbac.authorization.k8s.io \"host-deleter\" is forbidden: user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"fleetdb.io\"], Resources:[\"hosts\"], Verbs:[\"delete\" \"deletecollection\"]}",
    );
    // A role within what he holds is fine.
    let narrower = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: host-reader}\nrules:\n- apiGroups: [fleetdb.io]\n  resources: [hosts]\n  verbs: [get, list]\n";
    let created = apply_as(&server, &bob, narrower);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    // Binding himself to cluster-admin is refused; so is aggregation, which needs everything.
    forbidden(
        &server.fails_as(
            &bob,
            &[
                "create",
                "clusterrolebinding",
                "bob-admin",
                "--clusterrole=cluster-admin",
                "--user=bob",
            ],
        ),
        "clusterrolebindings.rbac.authorization.k8s.io \"bob-admin\" is forbidden: user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}\n{NonResourceURLs:[\"*\"], Verbs:[\"*\"]}",
    );
    let aggregating = apply_as(
        &server,
        &bob,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: sneaky}\naggregationRule:\n  clusterRoleSelectors:\n  - matchLabels: {rbac.authorization.k8s.io/aggregate-to-edit: \"true\"}\nrules: []\n",
    );
    forbidden(
        &String::from_utf8_lossy(&aggregating.stderr),
        "clusterroles.rbac.authorization.k8s.io \"sneaky\" is forbidden: must have cluster-admin privileges to use the aggregationRule",
    );
    // He may bind what he holds...
    server.ok_as(
        &bob,
        &[
            "create",
            "clusterrolebinding",
            "carol-reads",
            "--clusterrole=host-reader",
            "--user=carol",
        ],
    );
    // ...and, given the `bind` verb on a role, that role even though he does not hold it.
    forbidden(
        &server.fails_as(
            &bob,
            &[
                "create",
                "clusterrolebinding",
                "carol-edits",
                "--clusterrole=edit",
                "--user=carol",
            ],
        ),
        "clusterrolebindings.rbac.authorization.k8s.io \"carol-edits\" is forbidden: user \"bob\"",
    );
    server.ok_input(
        &["apply", "-f", "-"],
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: bind-edit}\nrules:\n- apiGroups: [rbac.authorization.k8s.io]\n  resources: [clusterroles]\n  resourceNames: [edit]\n  verbs: [bind]\n",
    );
    server.ok(&[
        "create",
        "clusterrolebinding",
        "bob-bind-edit",
        "--clusterrole=bind-edit",
        "--user=bob",
    ]);
    server.ok_as(
        &bob,
        &[
            "create",
            "clusterrolebinding",
            "carol-edits",
            "--clusterrole=edit",
            "--user=carol",
        ],
    );
    // RBAC changes apply to the next request: carol can now patch hosts (edit aggregates
    // the fleet's edit rules).
    let (carol, _) = server.identity("carol.kubeconfig", &["--user", "carol"]);
    server.ok_as(&carol, &["annotate", "host", "web-1", "note=checked"]);
    server.ok(&["delete", "clusterrolebinding", "carol-edits"]);
    forbidden(
        &server.fails_as(
            &carol,
            &["annotate", "host", "web-1", "note=again", "--overwrite"],
        ),
        "hosts.fleetdb.io \"web-1\" is forbidden: User \"carol\" cannot patch resource \"hosts\"",
    );
    // resourceNames: one host — read, and listed or watched by name, and nothing else.
    server.ok_input(
        &["apply", "-f", "-"],
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: web-1-reader}\nrules:\n- apiGroups: [fleetdb.io]\n  resources: [hosts]\n  resourceNames: [web-1]\n  verbs: [get, list, watch]\n",
    );
    server.ok(&[
        "create",
        "clusterrolebinding",
        "dana-web-1",
        "--clusterrole=web-1-reader",
        "--user=dana",
    ]);
    let (dana, _) = server.identity("dana.kubeconfig", &["--user", "dana"]);
    server.ok_as(&dana, &["get", "host", "web-1"]);
    let listed = server.ok_as(
        &dana,
        &[
            "get",
            "hosts",
            "--field-selector",
            "metadata.name=web-1",
            "-o",
            "name",
        ],
    );
    assert_eq!(listed.trim(), "host.fleetdb.io/web-1");
    forbidden(
        &server.fails_as(&dana, &["get", "host", "web-2"]),
        "hosts.fleetdb.io \"web-2\" is forbidden: User \"dana\" cannot get resource \"hosts\" in API group \"fleetdb.io\" at the cluster scope",
    );
    forbidden(
        &server.fails_as(&dana, &["get", "hosts"]),
        "hosts.fleetdb.io is forbidden: User \"dana\" cannot list resource \"hosts\" in API group \"fleetdb.io\" at the cluster scope",
    );
    // The aggregated roles show what they aggregate.
    let view = server.ok(&[
        "get",
        "clusterrole",
        "view",
        "-o",
        "jsonpath={.rules[*].resources}",
    ]);
    assert!(
        view.contains("hosts") && view.contains("namespaces"),
        "{view}"
    );
}

#[test]
fn impersonation_needs_the_impersonate_verb() {
    let server = Fleetdb::start(Backend::Embedded);
    fleet(&server);
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
    forbidden(
        &server.fails_as(&alice, &["get", "hosts", "--as=bob"]),
        "users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope",
    );
    // The administrator may impersonate anyone: alice may not delete.
    let answer = server.kubectl(&[
        "auth",
        "can-i",
        "delete",
        "hosts",
        "--as=alice",
        "--as-group=readers",
    ]);
    assert_eq!(String::from_utf8_lossy(&answer.stdout).trim(), "no");
    let whoami = server.ok(&["auth", "whoami", "--as=alice", "--as-group=readers"]);
    assert!(
        whoami.contains("alice") && whoami.contains("readers"),
        "{whoami}"
    );
    // carol may impersonate alice, and only her.
    server.ok_input(
        &["apply", "-f", "-"],
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: as-alice}\nrules:\n- apiGroups: [\"\"]\n  resources: [users]\n  resourceNames: [alice]\n  verbs: [impersonate]\n",
    );
    server.ok(&[
        "create",
        "clusterrolebinding",
        "carol-as-alice",
        "--clusterrole=as-alice",
        "--user=carol",
    ]);
    let (carol, _) = server.identity("carol.kubeconfig", &["--user", "carol"]);
    forbidden(
        &server.fails_as(&carol, &["get", "hosts"]),
        "hosts.fleetdb.io is forbidden: User \"carol\" cannot list resource \"hosts\"",
    );
    // As alice without her groups she holds nothing but what every user holds...
    forbidden(
        &server.fails_as(&carol, &["get", "hosts", "--as=alice"]),
        "hosts.fleetdb.io is forbidden: User \"alice\" cannot list resource \"hosts\"",
    );
    // ...and her group needs the verb on groups too.
    forbidden(
        &server.fails_as(
            &carol,
            &["get", "hosts", "--as=alice", "--as-group=readers"],
        ),
        "groups \"readers\" is forbidden: User \"carol\" cannot impersonate resource \"groups\" in API group \"\" at the cluster scope",
    );
    forbidden(
        &server.fails_as(&carol, &["get", "hosts", "--as=bob"]),
        "users \"bob\" is forbidden: User \"carol\" cannot impersonate resource \"users\"",
    );
    server.ok(&[
        "create",
        "clusterrolebinding",
        "alice-view",
        "--clusterrole=view",
        "--user=alice",
    ]);
    server.ok_as(&carol, &["get", "hosts", "--as=alice"]);
    let whoami = server.ok_as(&carol, &["auth", "whoami", "--as=alice"]);
    assert!(
        whoami.contains("alice") && !whoami.contains("carol"),
        "{whoami}"
    );
}

fn revoke(server: &Fleetdb, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fleetdb"))
        .arg("revoke")
        .args(args)
        .arg("--data-dir")
        .arg(server.path().join("data"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "fleetdb revoke {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn unauthorized(server: &Fleetdb, kubeconfig: &Path) {
    let stderr = server.fails_as(kubeconfig, &["get", "namespaces"]);
    // kubectl's words for a 401 (they depend on which of its requests got it).
    assert!(
        stderr.contains("the server has asked for the client to provide credentials")
            || stderr.contains("You must be logged in to the server (Unauthorized)"),
        "a revoked certificate is refused with 401: {stderr}"
    );
}

/// The serial `fleetdb kubeconfig` reported.
fn serial_of(issued: &str) -> String {
    issued
        .split("with serial ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .expect("fleetdb kubeconfig reports the serial")
        .to_owned()
}

#[test]
fn revocation_is_at_once_survives_restarts_and_reaches_replicas() {
    let mut server = Fleetdb::start(Backend::Etcd);
    let replica = server.replica();
    let (dana, _) = server.identity("dana.kubeconfig", &["--user", "dana"]);
    let (erin, issued) = server.identity("erin.kubeconfig", &["--user", "erin"]);
    for who in [&dana, &erin] {
        server.ok_as(who, &["auth", "whoami"]);
        replica.ok_as(who, &["auth", "whoami"]);
    }
    let said = revoke(&server, &["--user", "dana", "--reason", "laptop lost"]);
    assert!(
        said.contains("every certificate issued to dana until"),
        "{said}"
    );
    unauthorized(&server, &dana);
    // The replica follows the store's changes: within moments.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while replica
        .kubectl_as(&dana, &["auth", "whoami"])
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the replica still accepts dana"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    unauthorized(&replica, &dana);
    // Others are not affected; a certificate issued to dana afterwards works.
    server.ok_as(&erin, &["auth", "whoami"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (dana_again, _) = server.identity("dana-again.kubeconfig", &["--user", "dana"]);
    server.ok_as(&dana_again, &["auth", "whoami"]);
    // One certificate, by serial.
    let serial = serial_of(&issued);
    let said = revoke(&server, &["--serial", &serial.to_uppercase()]);
    assert!(said.contains(&serial), "{said}");
    unauthorized(&server, &erin);
    let revocations = server.ok(&["get", "certificaterevocations"]);
    assert!(
        revocations.contains("dana") && revocations.contains(&serial),
        "{revocations}"
    );
    // A restart keeps them.
    server.restart();
    unauthorized(&server, &dana);
    unauthorized(&server, &erin);
    server.ok_as(&dana_again, &["auth", "whoami"]);
}
