//! The Ansible dynamic inventory with the real ansible-core (from the test virtualenv):
//! `ansible-inventory --list` and `--graph` see the groups and host variables fleetdb holds,
//! hosts in maintenance or terminated are left out, and `ansible all -m ping -c local` runs
//! against the inventory.

mod support;

use std::process::Command;

use serde_json::Value;
use support::{Backend, Fleetdb, venv_bin};

fn fetch(server: &Fleetdb) {
    support::fetch_once(server, "lab");
}

fn ansible(server: &Fleetdb, program: &str, args: &[&str]) -> String {
    let output = Command::new(venv_bin(program))
        .args(args)
        .env("HOME", server.path().join("home"))
        .env("ANSIBLE_LOCAL_TEMP", server.path().join("ansible-tmp"))
        .env("ANSIBLE_HOST_KEY_CHECKING", "false")
        .env("ANSIBLE_INVENTORY_ENABLED", "script")
        .current_dir(server.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn ansible_reads_the_fleet() {
    let server = Fleetdb::start(Backend::Embedded);
    let csv = server.write(
        "lab.csv",
        "hostname,datacenter,role,team,ips,os,owner\n\
         web-1,pdx,web,infra,10.0.0.1,debian-12,alice\n\
         web-2,pdx,web,infra,10.0.0.2,debian-12,bob\n\
         db-1,pdx,db,data,10.0.0.3,rocky-9,carol\n\
         db-2,pdx,db,data,10.0.0.4,rocky-9,dan\n\
         log-1,ams,log,infra,10.0.1.1,debian-12,erin\n",
    );
    server.ok_input(
        &["apply", "-f", "-"],
        &format!("apiVersion: fleetdb.io/v1alpha1\nkind: Source\nmetadata: {{name: lab}}\nspec:\n  type: file\n  file: {{path: {}}}\n", csv.display()),
    );
    fetch(&server);
    // db-2 goes into maintenance; log-1 disappears from the export (Terminated); web-1 gets
    // Ansible variables and a cluster.
    server.ok(&[
        "patch",
        "host",
        "db-2",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"maintenance":true}}"#,
    ]);
    server.ok(&[
        "patch",
        "host",
        "web-1",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"cluster":"edge-a","ansible":{"nginx_workers":8}}}"#,
    ]);
    server.write(
        "lab.csv",
        "hostname,datacenter,role,team,ips,os,owner\n\
         web-1,pdx,web,infra,10.0.0.1,debian-12,alice\n\
         web-2,pdx,web,infra,10.0.0.2,debian-12,bob\n\
         db-1,pdx,db,data,10.0.0.3,rocky-9,carol\n\
         db-2,pdx,db,data,10.0.0.4,rocky-9,dan\n",
    );
    fetch(&server);

    // Ansible reads with the inventory's own identity.
    let (identity, _) = server.identity(
        "ansible.kubeconfig",
        &["--user", "ansible", "--group", "fleetdb:inventory"],
    );
    let config = server.write(
        "inventory.yaml",
        "groups:\n  web_infra: \"fleetdb.io/role=web,fleetdb.io/team=infra\"\nhostvars_annotations: [dcim.fleetdb.io/owner]\n",
    );
    let script = server.write(
        "fleetdb-inventory",
        &format!(
            "#!/bin/sh\nFLEETDB_KUBECONFIG={} FLEETDB_INVENTORY_CONFIG={} exec {} ansible-inventory \"$@\"\n",
            identity.display(),
            config.display(),
            env!("CARGO_BIN_EXE_fleetdb")
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = script.to_str().unwrap();

    let inventory: Value = serde_json::from_str(&ansible(
        &server,
        "ansible-inventory",
        &["-i", script, "--list"],
    ))
    .unwrap();
    let members = |group: &str| -> Vec<String> {
        let mut hosts: Vec<String> = inventory[group]["hosts"]
            .as_array()
            .map(|h| h.iter().map(|h| h.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        hosts.sort();
        hosts
    };
    assert_eq!(members("role_web"), ["web-1", "web-2"]);
    assert_eq!(members("role_db"), ["db-1"], "db-2 is in maintenance");
    assert_eq!(members("region_pdx"), ["db-1", "web-1", "web-2"]);
    assert!(
        members("region_ams").is_empty() && members("role_log").is_empty(),
        "log-1 is terminated"
    );
    assert_eq!(members("team_infra"), ["web-1", "web-2"]);
    assert_eq!(members("cluster_edge_a"), ["web-1"]);
    assert_eq!(
        members("web_infra"),
        ["web-1", "web-2"],
        "groups from a label selector"
    );
    let vars = &inventory["_meta"]["hostvars"]["web-1"];
    assert_eq!(vars["ansible_host"], "10.0.0.1");
    assert_eq!(vars["nginx_workers"], 8);
    assert_eq!(vars["fleetdb_region"], "pdx");
    assert_eq!(vars["dcim_fleetdb_io_owner"], "alice");
    assert!(inventory["_meta"]["hostvars"]["db-2"].is_null());

    let graph = ansible(&server, "ansible-inventory", &["-i", script, "--graph"]);
    assert!(
        graph.contains("@role_web:") && graph.contains("web-2"),
        "{graph}"
    );

    let python = venv_bin("python");
    let ping = ansible(
        &server,
        "ansible",
        &[
            "-i",
            script,
            "all",
            "-m",
            "ping",
            "-c",
            "local",
            "-e",
            &format!("ansible_python_interpreter={}", python.display()),
        ],
    );
    assert_eq!(ping.matches("SUCCESS").count(), 3, "{ping}");

    // With --cache-ttl a second run within the TTL answers from the cache, not from fleetdb.
    let inventory = |cache: bool| -> Value {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fleetdb"));
        command
            .args(["ansible-inventory", "--list", "--kubeconfig"])
            .arg(&identity)
            .env("XDG_CACHE_HOME", server.path().join("cache"));
        if cache {
            command.args(["--cache-ttl", "600s"]);
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let first = inventory(true);
    server.ok(&[
        "patch",
        "host",
        "web-2",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"maintenance":true}}"#,
    ]);
    assert_eq!(inventory(true), first, "served from the cache");
    assert!(
        inventory(false)["_meta"]["hostvars"]["web-2"].is_null(),
        "fresh without the cache"
    );
}

/// Runs `ansible` and returns (succeeded, stdout + stderr), for runs that are meant to fail.
fn ansible_outcome(server: &Fleetdb, args: &[&str]) -> (bool, String) {
    let output = Command::new(venv_bin("ansible"))
        .args(args)
        .env("HOME", server.path().join("home"))
        .env("ANSIBLE_LOCAL_TEMP", server.path().join("ansible-tmp"))
        .env("ANSIBLE_HOST_KEY_CHECKING", "false")
        .env("ANSIBLE_INVENTORY_ENABLED", "script")
        .env("ANSIBLE_TIMEOUT", "3")
        .current_dir(server.path())
        .output()
        .unwrap();
    (
        output.status.success(),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn a_record_cannot_make_ansible_run_commands() {
    let server = Fleetdb::start(Backend::Embedded);
    let templated = server.path().join("templated");
    let csv = server.write(
        "lab.csv",
        &format!(
            "hostname,datacenter,role,team,ips,os,owner\n\
             web-1,pdx,web,infra,127.0.0.1,debian-12,\"{{{{ lookup('pipe', 'touch {}') }}}}\"\n",
            templated.display()
        ),
    );
    server.ok_input(
        &["apply", "-f", "-"],
        &format!("apiVersion: fleetdb.io/v1alpha1\nkind: Source\nmetadata: {{name: lab}}\nspec:\n  type: file\n  file: {{path: {}}}\n", csv.display()),
    );
    fetch(&server);
    // Whoever can write the Host asks Ansible to run their program on the controller: a local
    // connection with their own "interpreter", or an ssh ProxyCommand.
    let ran = server.path().join("ran");
    let evil = server.write(
        "evil.sh",
        &format!("#!/bin/sh\ntouch {}\nexit 1\n", ran.display()),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
    let patch = serde_json::json!({"spec": {"ansible": {
        "ansible_connection": "local",
        "ansible_python_interpreter": evil.to_str().unwrap(),
        "ansible_ssh_common_args": format!("-o ProxyCommand={}", evil.display()),
        "ansible_become_exe": evil.to_str().unwrap(),
        "ansible_port": 1,
    }}});
    server.ok(&[
        "patch",
        "host",
        "web-1",
        "--type",
        "merge",
        "-p",
        &patch.to_string(),
    ]);

    let (identity, _) = server.identity(
        "ansible.kubeconfig",
        &["--user", "ansible", "--group", "fleetdb:inventory"],
    );
    let inventory_script = |config: &str| -> String {
        let config = server.write("inventory.yaml", config);
        let script = server.write(
            "fleetdb-inventory",
            &format!(
                "#!/bin/sh\nFLEETDB_KUBECONFIG={} FLEETDB_INVENTORY_CONFIG={} exec {} ansible-inventory \"$@\"\n",
                identity.display(),
                config.display(),
                env!("CARGO_BIN_EXE_fleetdb")
            ),
        );
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script.to_str().unwrap().to_owned()
    };

    // The inventory leaves the variables out and says so on stderr.
    let script = inventory_script("hostvars_annotations: [dcim.fleetdb.io/owner]\n");
    let output = Command::new(&script).arg("--list").output().unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for name in [
        "ansible_connection",
        "ansible_python_interpreter",
        "ansible_ssh_common_args",
        "ansible_become_exe",
    ] {
        assert!(
            stderr.contains(&format!("host web-1: left out the variable {name}")),
            "{name}: {stderr}"
        );
    }
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    let vars = &document["_meta"]["hostvars"]["web-1"];
    assert!(vars.get("ansible_connection").is_none(), "{vars}");
    assert_eq!(
        vars["ansible_port"], 1,
        "where to log in is the record's to say"
    );
    assert!(
        vars["dcim_fleetdb_io_owner"]["__ansible_unsafe"]
            .as_str()
            .is_some_and(|owner| owner.contains("lookup('pipe'")),
        "{vars}"
    );

    // Ansible, run by the operator, connects the ordinary way (and fails: nothing listens on
    // port 1); nothing the record named ran. The annotation's template is shown, not run.
    let (ok, output) = ansible_outcome(&server, &["-i", &script, "all", "-m", "ping"]);
    assert!(!ok, "{output}");
    assert!(!ran.exists(), "the record's program ran:\n{output}");
    let (ok, output) = ansible_outcome(
        &server,
        &[
            "-i",
            &script,
            "all",
            "-m",
            "debug",
            "-a",
            "var=dcim_fleetdb_io_owner",
        ],
    );
    assert!(ok, "{output}");
    assert!(output.contains("lookup('pipe'"), "{output}");
    assert!(!templated.exists(), "the record's template ran:\n{output}");

    // The operator's own configuration may allow a variable by name — and then the record's
    // value is used, which is what the default protects against.
    let script = inventory_script(
        "allowed_host_variables: [ansible_connection, ansible_python_interpreter]\n",
    );
    let (ok, output) = ansible_outcome(&server, &["-i", &script, "all", "-m", "ping"]);
    assert!(!ok, "{output}");
    assert!(
        ran.exists(),
        "allowed by name, the variables reach Ansible:\n{output}"
    );
}
