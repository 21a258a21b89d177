//! The host agent as its own process (`fleetdb agent`) against the real server, driven and
//! observed with the real kubectl: joining, heartbeats, facts, renewal, restarts of either
//! side, revocation, denial — and acting on its Host's spec once authorized: maintenance
//! hooks, runs exactly once across restarts, OS upgrades, preflight checks.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::{Backend, Fleetdb, ca, token};

/// A `fleetdb agent` process of its own.
struct Agent {
    child: std::process::Child,
    pub dir: PathBuf,
    log: PathBuf,
}

impl Agent {
    fn start(server: &Fleetdb, name: &str, token: Option<&str>) -> Self {
        Self::start_with(server, name, token, &[])
    }

    /// [`Agent::start`] with more `fleetdb agent` arguments.
    fn start_with(server: &Fleetdb, name: &str, token: Option<&str>, extra: &[&str]) -> Self {
        Self::start_env(server, name, token, extra, &[])
    }

    /// [`Agent::start_with`] with more environment variables.
    fn start_env(
        server: &Fleetdb,
        name: &str,
        token: Option<&str>,
        extra: &[&str],
        envs: &[(&str, &std::ffi::OsStr)],
    ) -> Self {
        let dir = server.dir.path().join(format!("agent-{name}"));
        let log = server.dir.path().join(format!("agent-{name}.log"));
        std::fs::write(server.dir.path().join("ca.crt"), ca(server)).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_fleetdb"));
        command
            .args([
                "agent",
                "--server",
                &server.url(),
                "--name",
                name,
                "--heartbeat-seconds",
                "1",
            ])
            .arg("--ca-file")
            .arg(server.dir.path().join("ca.crt"))
            .arg("--data-dir")
            .arg(&dir)
            .env("FLEETDB_LOG", "debug")
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            );
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        command.args(extra).envs(envs.iter().copied());
        Self {
            child: command.spawn().unwrap(),
            dir,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as systemd stops a service; waits for the exit.
    fn stop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().unwrap();
    }
}

impl Agent {
    /// Stops the agent unless it has already exited.
    fn stop_if_running(&mut self) {
        if self.child.try_wait().unwrap().is_none() {
            self.stop();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` for up to `seconds`, then fails with `what` and the agent's log.
fn eventually(agent: &Agent, seconds: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen; agent log:\n{}",
            agent.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

fn renew_time(server: &Fleetdb, host: &str) -> String {
    server
        .kubectl(&[
            "get",
            "lease",
            host,
            "-n",
            "fleetdb-system",
            "-o",
            "jsonpath={.spec.renewTime}",
        ])
        .stdout
        .iter()
        .map(|b| *b as char)
        .collect()
}

#[test]
fn an_agent_joins_heartbeats_reports_renews_and_is_cut_off_by_revocation() {
    use std::os::unix::fs::PermissionsExt;
    let mut server =
        Fleetdb::start_with(Backend::Embedded, &["--host-certificate-lifetime", "20s"]);
    let token = token(&server, &["--auto-approve"]);
    let mut agent = Agent::start(&server, "web-1", Some(&token));

    // Joined: a Host of its own with the machine's facts, and a Lease renewed every second.
    eventually(&agent, 30, "the first report", || {
        !server
            .kubectl(&[
                "get",
                "host",
                "web-1",
                "-o",
                "jsonpath={.status.agent.cpus}",
            ])
            .stdout
            .is_empty()
    });
    let host: serde_json::Value = serde_json::from_str(&server.ok(&[
        "get",
        "host",
        "web-1",
        "-o",
        "json",
        "--show-managed-fields",
    ]))
    .unwrap();
    let report = &host["status"]["agent"];
    assert!(report["memoryBytes"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        report["os"]["kernel"].as_str().unwrap(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap()
            .trim()
    );
    let managers: Vec<&str> = host["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(
        managers.contains(&"fleetdb-agent"),
        "{managers:?} {}",
        host["metadata"]
    );
    let first = renew_time(&server, "web-1");
    eventually(&agent, 10, "a heartbeat", || {
        renew_time(&server, "web-1") != first
    });
    // Its key and certificate are its owner's alone; the token is not kept.
    assert_eq!(
        std::fs::metadata(&agent.dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let identity = agent.dir.join("host.pem");
    assert_eq!(
        std::fs::metadata(&identity).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !std::fs::read_to_string(&identity)
            .unwrap()
            .contains(token.split('.').nth(1).unwrap())
    );

    // Renewed before expiry (20 s certificates: at 14–16 s), with its own certificate.
    eventually(&agent, 40, "a renewal", || {
        server
            .ok(&[
                "get",
                "csr",
                "-o",
                "jsonpath={range .items[*]}{.spec.username}{\"\\n\"}{end}",
            ])
            .lines()
            .any(|requester| requester == "fleetdb:host:web-1")
            && agent.log().contains("renewed the certificate")
    });
    let before_restart = renew_time(&server, "web-1");
    eventually(
        &agent,
        10,
        "a heartbeat with the renewed certificate",
        || renew_time(&server, "web-1") != before_restart,
    );

    // The server restarts; the agent carries on. Restarted itself without the token, it
    // uses the certificate it keeps.
    server.restart();
    let after = renew_time(&server, "web-1");
    eventually(&agent, 30, "a heartbeat after the server restarted", || {
        renew_time(&server, "web-1") != after
    });
    agent.stop();
    let mut agent = Agent::start(&server, "web-1", None);
    let after = renew_time(&server, "web-1");
    eventually(&agent, 15, "a heartbeat after the agent restarted", || {
        renew_time(&server, "web-1") != after
    });

    // Revoked: cut off at once.
    let output = Command::new(env!("CARGO_BIN_EXE_fleetdb"))
        .args(["revoke", "--user", "fleetdb:host:web-1", "--data-dir"])
        .arg(server.dir.path().join("data"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Once the agent has been refused, no heartbeat it sent before the revocation is still
    // on its way: from then on its Lease must not move.
    eventually(&agent, 10, "the refusal in the agent's log", || {
        agent.log().contains("Unauthorized") || agent.log().contains("401")
    });
    let cut = renew_time(&server, "web-1");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(
        renew_time(&server, "web-1"),
        cut,
        "a revoked agent still heartbeats"
    );
    agent.stop();
}

#[test]
fn a_denied_agent_stops_with_the_reason() {
    let server = Fleetdb::start(Backend::Embedded);
    let token = token(&server, &[]);
    let mut agent = Agent::start(&server, "db-1", Some(&token));
    let mut name = String::new();
    eventually(&agent, 30, "a pending request", || {
        name = server
            .ok(&["get", "csr", "-o", "jsonpath={.items[*].metadata.name}"])
            .trim()
            .to_owned();
        !name.is_empty()
    });
    assert!(name.starts_with("host-db-1-"), "{name}");
    server.ok(&["certificate", "deny", &name]);
    let status = agent.child.wait().unwrap();
    assert!(!status.success());
    assert!(agent.log().contains("was denied"), "{}", agent.log());
    // Nothing of the host was written.
    assert!(server.fails(&["get", "host", "db-1"]).contains("NotFound"));
}

/// The Host's `status.agent` as JSON.
fn agent_status(server: &Fleetdb, host: &str) -> serde_json::Value {
    let output = server.kubectl(&["get", "host", host, "-o", "jsonpath={.status.agent}"]);
    serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
}

fn condition<'a>(status: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .unwrap_or(&serde_json::Value::Null)
}

fn run<'a>(status: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    status["runs"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == id))
        .unwrap_or(&serde_json::Value::Null)
}

#[test]
fn an_authorized_agent_acts_on_its_spec_and_runs_each_run_once() {
    let server = Fleetdb::start(Backend::Embedded);
    let token = token(&server, &["--auto-approve"]);
    let marks = server.dir.path().join("marks");
    let busy = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let config = server.write(
        "agent.yaml",
        &format!(
            r#"maintenance:
  enter: [/bin/sh, -c, "echo entered >> {marks}"]
  exit: [/bin/sh, -c, "echo exit-failed >&2; exit 7"]
upgrade: [/bin/sh, -c, "echo upgrade-$FLEETDB_TARGET_VERSION >> {marks}"]
runs: {{timeoutSeconds: 3, allowedPrograms: [/bin/sh]}}
preflight: {{ports: [{busy_port}], peers: ["127.0.0.1:{port}"]}}
"#,
            marks = marks.display(),
            port = server.port
        ),
    );
    let config = config.to_str().unwrap().to_owned();
    let agent = Agent::start_with(&server, "web-1", Some(&token), &["--config", &config]);
    eventually(&agent, 30, "the preflight report", || {
        !condition(&agent_status(&server, "web-1"), "Preflight").is_null()
    });
    let status = agent_status(&server, "web-1");
    let preflight = condition(&status, "Preflight");
    assert_eq!(preflight["status"], "False", "{status}");
    let message = preflight["message"].as_str().unwrap();
    assert!(message.contains(&format!("port {busy_port}")), "{message}");
    assert!(
        !message.contains("127.0.0.1"),
        "the reachable peer is not a failure: {message}"
    );

    // Not authorized: the agent reports, and does nothing the spec asks.
    let spec = |server: &Fleetdb, patch: &str| {
        server.ok(&["patch", "host", "web-1", "--type", "merge", "-p", patch]);
    };
    let line = |id: &str| {
        format!(
            r#"{{"id": "{id}", "command": ["/bin/sh", "-c", "echo {id} >> {}; echo hello-{id}"]}}"#,
            marks.display()
        )
    };
    spec(
        &server,
        &format!(
            r#"{{"spec": {{"maintenance": true, "runs": [{}, {{"id": "r2", "command": ["/usr/bin/id"]}}]}}}}"#,
            line("r1")
        ),
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(!marks.exists(), "an unauthorized agent acted");
    assert!(agent_status(&server, "web-1")["observedGeneration"].is_null());

    // Authorized: maintenance entered, runs run once each, the refused one reported.
    spec(&server, r#"{"spec": {"authorized": true}}"#);
    eventually(&agent, 30, "the runs", || {
        run(&agent_status(&server, "web-1"), "r2")["phase"] == "Failed"
    });
    let status = agent_status(&server, "web-1");
    assert_eq!(
        condition(&status, "Maintenance")["status"],
        "True",
        "{status}"
    );
    let r1 = run(&status, "r1");
    assert_eq!(r1["phase"], "Succeeded", "{status}");
    assert_eq!(r1["exitCode"], 0);
    assert!(r1["logTail"].as_str().unwrap().contains("hello-r1"));
    assert!(
        run(&status, "r2")["message"]
            .as_str()
            .unwrap()
            .contains("allowedPrograms")
    );
    let generation: i64 = server
        .ok(&[
            "get",
            "host",
            "web-1",
            "-o",
            "jsonpath={.metadata.generation}",
        ])
        .parse()
        .unwrap();
    eventually(&agent, 10, "the observed generation", || {
        agent_status(&server, "web-1")["observedGeneration"] == generation
    });

    // A failing hook: the condition says how, with the end of its output.
    spec(&server, r#"{"spec": {"maintenance": false}}"#);
    eventually(&agent, 20, "the failed exit hook", || {
        condition(&agent_status(&server, "web-1"), "Maintenance")["reason"] == "HookFailed"
    });
    let status = agent_status(&server, "web-1");
    let message = condition(&status, "Maintenance")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("exited with 7") && message.contains("exit-failed"),
        "{message}"
    );

    // An OS upgrade runs the configured command with the target version.
    spec(&server, r#"{"spec": {"os": {"targetVersion": "99"}}}"#);
    eventually(&agent, 20, "the upgrade", || {
        std::fs::read_to_string(&marks)
            .unwrap_or_default()
            .contains("upgrade-99")
    });
    eventually(&agent, 10, "the OSUpToDate condition", || {
        condition(&agent_status(&server, "web-1"), "OSUpToDate")["reason"] == "Upgraded"
    });

    // A run that outlives its timeout fails; one interrupted by the agent stopping is
    // reported failed after the restart and never run again.
    let current = server.ok(&["get", "host", "web-1", "-o", "jsonpath={.spec.runs}"]);
    let mut runs: Vec<serde_json::Value> = serde_json::from_str(&current).unwrap();
    runs.push(serde_json::json!({"id": "r3", "command": ["/bin/sh", "-c", format!("echo r3 >> {}; sleep 2.5", marks.display())]}));
    runs.push(serde_json::json!({"id": "r4", "command": ["/bin/sh", "-c", "sleep 10"]}));
    spec(
        &server,
        &serde_json::json!({"spec": {"runs": runs}}).to_string(),
    );
    let mut agent = agent;
    eventually(&agent, 20, "r3 to start", || {
        std::fs::read_to_string(&marks)
            .unwrap_or_default()
            .contains("r3")
    });
    agent.stop();
    let agent = Agent::start_with(&server, "web-1", None, &["--config", &config]);
    eventually(
        &agent,
        30,
        "r3 reported interrupted and r4 timed out",
        || {
            let status = agent_status(&server, "web-1");
            run(&status, "r3")["phase"] == "Failed" && run(&status, "r4")["phase"] == "Failed"
        },
    );
    let status = agent_status(&server, "web-1");
    assert!(
        run(&status, "r3")["message"]
            .as_str()
            .unwrap()
            .contains("not run again"),
        "{status}"
    );
    assert!(
        run(&status, "r4")["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{status}"
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    let marked = std::fs::read_to_string(&marks).unwrap();
    assert_eq!(marked.matches("r1").count(), 1, "{marked}");
    assert_eq!(marked.matches("r3").count(), 1, "{marked}");
    assert_eq!(marked.matches("entered").count(), 1, "{marked}");
    let events = server.ok(&[
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        "involvedObject.name=web-1",
        "-o",
        "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
    ]);
    for reason in [
        "MaintenanceEntered",
        "RunSucceeded",
        "RunFailed",
        "MaintenanceHookFailed",
        "Upgraded",
    ] {
        assert!(events.contains(reason), "{reason} missing from {events}");
    }
    // The server restarts in the middle of a run: the run goes on, finishes once, and its
    // result arrives when the server is back.
    let mut server = server;
    runs.push(serde_json::json!({"id": "r5", "command": ["/bin/sh", "-c", format!("sleep 2; echo r5 >> {}", marks.display())]}));
    spec(
        &server,
        &serde_json::json!({"spec": {"runs": runs}}).to_string(),
    );
    eventually(&agent, 20, "r5 to start", || {
        run(&agent_status(&server, "web-1"), "r5")["phase"] == "Running"
    });
    server.restart();
    eventually(&agent, 30, "r5's result after the server restarted", || {
        run(&agent_status(&server, "web-1"), "r5")["phase"] == "Succeeded"
    });
    let marked = std::fs::read_to_string(&marks).unwrap();
    assert_eq!(marked.matches("r5").count(), 1, "{marked}");
    drop(busy);
}

#[test]
fn playbook_runs_use_ansible_pull_and_never_template_the_record() {
    let server = Fleetdb::start(Backend::Embedded);
    let token = token(&server, &["--auto-approve"]);
    let repo = server.dir.path().join("playbooks");
    std::fs::create_dir_all(&repo).unwrap();
    let out = server.dir.path().join("greeting");
    std::fs::write(
        repo.join("site.yml"),
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n    - ansible.builtin.copy: {content: \"{{ greeting }}\", dest: \"{{ out }}\"}\n",
    )
    .unwrap();
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(&repo)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "site.yml"]);
    git(&["commit", "-q", "-m", "site"]);
    let url = format!("file://{}", repo.display());
    let config = server.write(
        "agent.yaml",
        &format!(
            "runs: {{timeoutSeconds: 120, allowedRepositories: [\"{url}\"], ansiblePull: {}}}\n",
            support::venv_bin("ansible-pull").display()
        ),
    );
    // Ansible's own settings reach ansible-pull through the agent's environment (here: the
    // test machine's Python, and a temporary directory of the test's).
    let python = support::venv_bin("python");
    let temp = server.dir.path().join("ansible-tmp");
    let agent = Agent::start_env(
        &server,
        "web-1",
        Some(&token),
        &["--config", config.to_str().unwrap()],
        &[
            ("ANSIBLE_PYTHON_INTERPRETER", python.as_os_str()),
            ("ANSIBLE_LOCAL_TEMP", temp.as_os_str()),
        ],
    );
    eventually(&agent, 30, "the Host", || {
        server.kubectl(&["get", "host", "web-1"]).status.success()
    });
    let spec = serde_json::json!({"spec": {"authorized": true, "runs": [
        {"id": "site", "playbook": {"repo": url, "ref": "main", "path": "site.yml",
            "extraVars": {"greeting": "{{ lookup('pipe', 'id') }}", "out": out.display().to_string()}}},
        {"id": "elsewhere", "playbook": {"repo": "https://evil.example/x.git", "path": "site.yml"}},
    ]}});
    server.ok(&[
        "patch",
        "host",
        "web-1",
        "--type",
        "merge",
        "-p",
        &spec.to_string(),
    ]);
    eventually(&agent, 120, "the playbook run", || {
        !run(&agent_status(&server, "web-1"), "site")["completionTime"].is_null()
    });
    let status = agent_status(&server, "web-1");
    assert_eq!(run(&status, "site")["phase"], "Succeeded", "{status}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "{{ lookup('pipe', 'id') }}",
        "a record's extra variable was templated"
    );
    assert!(
        run(&status, "elsewhere")["message"]
            .as_str()
            .unwrap()
            .contains("allowedRepositories"),
        "{status}"
    );
}

#[test]
fn agents_whose_machine_matches_the_inventory_join_without_a_person() {
    let server = Fleetdb::start(Backend::Embedded);
    let csv = server.write("pdx.csv", "hostname,datacenter,serial\nweb-7,pdx,SN-777\n");
    server.ok_input(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: fleetdb.io/v1alpha1\nkind: Source\nmetadata: {{name: pdx}}\nspec:\n  type: file\n  file: {{path: {}}}\n",
            csv.display()
        ),
    );
    let summary = support::fetch_once(&server, "pdx");
    assert!(summary.contains("1 created"), "{summary}");
    // A token without auto-approval; each agent says which serial number it has.
    let token = token(&server, &[]);
    let claim = |serial: &str| {
        server.write(
            &format!("{serial}.yaml"),
            &format!("identity: {{providerId: {serial}}}\n"),
        )
    };
    let matching = claim("SN-777");
    let web7 = Agent::start_with(
        &server,
        "web-7",
        Some(&token),
        &["--config", matching.to_str().unwrap()],
    );
    // Another agent claiming the same serial for a host the inventory does not have, and
    // one claiming a wrong serial for web-7's name, wait for a person.
    let web8 = Agent::start_with(
        &server,
        "web-8",
        Some(&token),
        &["--config", matching.to_str().unwrap()],
    );
    eventually(&web7, 30, "web-7's report", || {
        !agent_status(&server, "web-7")["cpus"].is_null()
    });
    let requests = server.ok(&["get", "csr", "--no-headers"]);
    let row = |host: &str| {
        requests
            .lines()
            .find(|l| l.starts_with(&format!("host-{host}-")))
            .unwrap_or_else(|| panic!("no request of {host}: {requests}"))
            .to_owned()
    };
    assert!(row("web-7").ends_with("Approved,Issued"), "{requests}");
    assert!(row("web-8").ends_with("Pending"), "{requests}");
    let reasons = server.ok(&[
        "get",
        "events",
        "-n",
        "default",
        "-o",
        "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
    ]);
    assert!(reasons.contains("MatchesInventory"), "{reasons}");
    // `kubectl describe host` lists the agent's Events about the host.
    let described = server.ok(&["describe", "host", "web-7"]);
    assert!(described.contains("Started"), "{described}");
    drop(web8);
}

#[test]
fn preflight_checks_from_the_cluster_run_only_where_the_agent_allows_them() {
    let server = Fleetdb::start(Backend::Embedded);
    let token = token(&server, &["--auto-approve"]);
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    server.ok_input(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: fleetdb.io/v1alpha1\nkind: Cluster\nmetadata: {{name: edge}}\nspec:\n  preflight: {{peers: [\"127.0.0.1:{closed}\"]}}\n"
        ),
    );
    let allowing = server.write("allowing.yaml", "preflight: {allowClusterChecks: true}\n");
    let web1 = Agent::start_with(
        &server,
        "web-1",
        Some(&token),
        &["--config", allowing.to_str().unwrap()],
    );
    let web2 = Agent::start(&server, "web-2", Some(&token));
    for (agent, host) in [(&web1, "web-1"), (&web2, "web-2")] {
        eventually(agent, 30, "the Host", || {
            !agent_status(&server, host)["cpus"].is_null()
        });
        server.ok(&[
            "patch",
            "host",
            host,
            "--type",
            "merge",
            "-p",
            r#"{"spec": {"cluster": "edge"}}"#,
        ]);
    }
    eventually(&web1, 20, "the Cluster's check", || {
        condition(&agent_status(&server, "web-1"), "Preflight")["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("127.0.0.1:{closed}")))
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        condition(&agent_status(&server, "web-2"), "Preflight").is_null(),
        "an agent whose configuration does not allow the Cluster's checks ran them"
    );
}

#[test]
fn a_deleted_host_waits_for_its_agent_to_decommission_it_then_the_agent_stops() {
    let server = Fleetdb::start(Backend::Embedded);
    let token = token(&server, &["--auto-approve"]);
    let marker = server.dir.path().join("decommissioned");
    let config = server.write(
        "decommission.yaml",
        &format!(
            "decommission: [\"/bin/sh\", \"-c\", \"sleep 1; echo wiped > {}\"]\n",
            marker.display()
        ),
    );
    let mut agent = Agent::start_with(
        &server,
        "old-1",
        Some(&token),
        &["--config", config.to_str().unwrap()],
    );
    eventually(&agent, 30, "the Host", || {
        !agent_status(&server, "old-1")["cpus"].is_null()
    });
    server.ok(&[
        "patch",
        "host",
        "old-1",
        "--type",
        "merge",
        "-p",
        r#"{"spec": {"authorized": true}}"#,
    ]);
    eventually(&agent, 20, "the finalizer", || {
        server
            .ok(&[
                "get",
                "host",
                "old-1",
                "-o",
                "jsonpath={.metadata.finalizers}",
            ])
            .contains("fleetdb.io/decommission")
    });
    server.ok(&["delete", "host", "old-1", "--wait=false"]);
    // The record stays while the command runs, then goes; the agent stops on its own.
    eventually(&agent, 30, "the record removed", || {
        !server.kubectl(&["get", "host", "old-1"]).status.success()
    });
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "wiped");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not stop:\n{}",
            agent.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert!(status.success(), "{}", agent.log());
    assert!(agent.log().contains("decommissioned"), "{}", agent.log());
    let events = server.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=old-1,reason=Decommissioned",
        "-o",
        "jsonpath={.items[*].source.component}",
    ]);
    // One from the agent (its command), one from the controllers (the release).
    assert!(
        events.contains("fleetdb-agent") && events.contains("fleetdb-controllers"),
        "{events}"
    );
    // Its heartbeat Lease went with it, and was not renewed again.
    assert!(
        !server
            .kubectl(&["get", "lease", "old-1", "-n", "fleetdb-system"])
            .status
            .success()
    );
    agent.stop_if_running();
}

#[test]
fn a_rollout_runs_on_real_agents_one_rack_at_a_time() {
    let server = Fleetdb::start(Backend::Embedded);
    let token = token(&server, &["--auto-approve"]);
    let log = server.dir.path().join("rollout.log");
    let config = server.write("runs.yaml", "runs: {allowedPrograms: [/bin/sh]}\n");
    let mut agents = Vec::new();
    for (name, rack) in [("db-1", "r1"), ("db-2", "r1"), ("db-3", "r2")] {
        let agent = Agent::start_with(
            &server,
            name,
            Some(&token),
            &["--config", config.to_str().unwrap()],
        );
        eventually(&agent, 30, "the Host", || {
            !agent_status(&server, name)["cpus"].is_null()
        });
        server.ok(&[
            "label",
            "host",
            name,
            &format!("fleetdb.io/rack={rack}"),
            "role=db",
        ]);
        server.ok(&[
            "patch",
            "host",
            name,
            "--type",
            "merge",
            "-p",
            r#"{"spec": {"authorized": true}}"#,
        ]);
        agents.push(agent);
    }
    server.ok_input(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: fleetdb.io/v1alpha1\nkind: Rollout\nmetadata: {{name: patch}}\nspec:\n  selector: {{matchLabels: {{role: db}}}}\n  run: {{command: [/bin/sh, -c, \"echo $(date +%s%N) >> {}\"]}}\n  maxUnavailable: 2\n  maxPerTopology: [{{key: fleetdb.io/rack, max: 1}}]\n",
            log.display()
        ),
    );
    eventually(&agents[0], 60, "the rollout completed", || {
        server.ok(&["get", "rollout", "patch", "-o", "jsonpath={.status.phase}"]) == "Completed"
    });
    let runs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(runs.lines().count(), 3, "{runs}");
    for name in ["db-1", "db-2", "db-3"] {
        assert_eq!(
            run(&agent_status(&server, name), "rollout-patch")["phase"],
            "Succeeded",
            "{name}"
        );
        assert_eq!(
            server.ok(&[
                "get",
                "host",
                name,
                "-o",
                "jsonpath={.metadata.labels.rollout\\.fleetdb\\.io/patch}"
            ]),
            "Succeeded"
        );
    }
}
