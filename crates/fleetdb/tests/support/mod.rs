//! Runs the real `fleetdb serve` binary on a free port, on the embedded store or on a real
//! etcd, and drives it with the real kubectl.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fleetdb_testkit::{EtcdServer, find_executable, free_port};

/// How long the server gets to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Etcd,
}

/// A running fleetdb server and what it needs.
pub struct Fleetdb {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    etcd: Option<EtcdServer>,
    kubectl: PathBuf,
    /// More `fleetdb serve` arguments.
    extra: Vec<String>,
}

impl Fleetdb {
    pub fn start(backend: Backend) -> Self {
        Self::start_with(backend, &[])
    }

    /// [`Fleetdb::start`] with more `fleetdb serve` arguments.
    pub fn start_with(backend: Backend, extra: &[&str]) -> Self {
        let kubectl = find_executable("FLEETDB_KUBECTL", &["kubectl"], &["/usr/bin", "/usr/local/bin"])
            .expect("kubectl is not installed: install it (the CI machine image has it) or set FLEETDB_KUBECTL");
        let etcd = (backend == Backend::Etcd).then(EtcdServer::start);
        let mut server = Self {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            etcd,
            kubectl,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        std::fs::create_dir_all(server.dir.path().join("home")).unwrap();
        server.launch();
        server
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_fleetdb"));
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.extra)
            .env("FLEETDB_LOG", "info,fleetdb_apiserver=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(etcd) = &self.etcd {
            command
                .arg("--store")
                .arg("etcd")
                .arg("--etcd-endpoints")
                .arg(etcd.client_url());
        }
        let child = command.spawn().expect("start fleetdb");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("fleetdb exited during start-up ({status}):\n{}", self.log());
            }
            let ready = self.kubectl(&["get", "--raw", "/readyz"]).status.success();
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fleetdb did not become ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("fleetdb.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("data").join("admin.kubeconfig")
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("fleetdb did not stop on SIGTERM:\n{}", self.log());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Stops and starts the server on the same data (and the same etcd).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Another server on the same etcd and the same CA (a replica), with a data directory
    /// of its own.
    pub fn replica(&self) -> Fleetdb {
        self.replica_with(&[])
    }

    /// [`Fleetdb::replica`] with more `fleetdb serve` arguments (with `--pki-dir`, the PKI is
    /// not copied).
    pub fn replica_with(&self, extra: &[&str]) -> Fleetdb {
        let etcd = self.etcd.as_ref().expect("a replica shares an etcd");
        let dir = tempfile::tempdir().unwrap();
        if !extra.contains(&"--pki-dir") {
            let pki = dir.path().join("data").join("pki");
            std::fs::create_dir_all(&pki).unwrap();
            for entry in std::fs::read_dir(self.dir.path().join("data").join("pki")).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), pki.join(entry.file_name())).unwrap();
            }
        }
        let mut replica = Self {
            child: None,
            dir,
            port: free_port(),
            etcd: None,
            kubectl: self.kubectl.clone(),
            extra: ["--store", "etcd", "--etcd-endpoints", etcd.client_url()]
                .iter()
                .chain(extra)
                .map(|a| a.to_string())
                .collect(),
        };
        std::fs::create_dir_all(replica.dir.path().join("home")).unwrap();
        replica.launch();
        replica
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    /// The URL of this server.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Issues a kubeconfig for a new identity (`fleetdb kubeconfig ARGS`) into `file` in
    /// the test directory; returns its path and what the command said on stderr.
    pub fn identity(&self, file: &str, args: &[&str]) -> (PathBuf, String) {
        let path = self.dir.path().join(file);
        let output = Command::new(env!("CARGO_BIN_EXE_fleetdb"))
            .arg("kubeconfig")
            .args(args)
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--server")
            .arg(self.url())
            .arg("--out")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "fleetdb kubeconfig {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        (path, String::from_utf8_lossy(&output.stderr).into_owned())
    }

    /// kubectl with another identity's kubeconfig.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        self.kubectl_command(args)
            .env("KUBECONFIG", kubeconfig)
            .arg("--server")
            .arg(self.url())
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    /// [`Fleetdb::kubectl_as`], asserting success; returns stdout.
    pub fn ok_as(&self, kubeconfig: &Path, args: &[&str]) -> String {
        let output = self.kubectl_as(kubeconfig, args);
        assert_output_ok(args, &output, &self.log());
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// [`Fleetdb::kubectl_as`], asserting failure; returns stderr.
    pub fn fails_as(&self, kubeconfig: &Path, args: &[&str]) -> String {
        let output = self.kubectl_as(kubeconfig, args);
        assert!(
            !output.status.success(),
            "kubectl {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.kubectl);
        command
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            // Discovery caches live under HOME: each server gets its own.
            .env("HOME", self.dir.path().join("home"))
            .current_dir(self.dir.path());
        command
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    pub fn kubectl_input(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .kubectl_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        // kubectl may refuse the input and exit before reading all of it.
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl, asserts success and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        assert_output_ok(args, &output, &self.log());
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn ok_input(&self, args: &[&str], input: &str) -> String {
        let output = self.kubectl_input(args, input);
        assert_output_ok(args, &output, &self.log());
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs kubectl, asserts failure and returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        assert!(
            !output.status.success(),
            "kubectl {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    pub fn fails_input(&self, args: &[&str], input: &str) -> String {
        let output = self.kubectl_input(args, input);
        assert!(
            !output.status.success(),
            "kubectl {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn assert_output_ok(args: &[&str], output: &Output, log: &str) {
    assert!(
        output.status.success(),
        "kubectl {args:?} failed ({}):\nstdout: {}\nstderr: {}\nserver log tail:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        log.lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n"),
    );
}

impl Drop for Fleetdb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A namespaced CRD with a status subresource, printer columns, short names and a category.
pub const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    additionalPrinterColumns:
    - name: Size
      type: integer
      jsonPath: .spec.size
    - name: Color
      type: string
      priority: 1
      jsonPath: .spec.color
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        description: A widget for tests.
        properties:
          spec:
            type: object
            description: What the widget should be.
            properties:
              size:
                type: integer
                description: How big the widget is.
              color:
                type: string
                enum: [blue, red, green]
              finish:
                type: string
                default: matte
              replicas:
                type: integer
                minimum: 0
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"#;

pub fn widget(name: &str, size: i64) -> String {
    format!(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {name}\n  labels:\n    env: prod\nspec:\n  size: {size}\n  color: blue\n"
    )
}

/// Creates the widget CRD and waits until it is established.
pub fn install_widgets(server: &Fleetdb) {
    server.ok_input(&["create", "-f", "-"], WIDGET_CRD);
    server.ok(&[
        "wait",
        "--for=condition=established",
        "crd/widgets.example.com",
        "--timeout=20s",
    ]);
}

/// A program of the repository's Python virtualenv (created by scripts/setup.sh).
pub fn venv_bin(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../.venv/bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh, which creates the virtualenv the tests use",
        path.display()
    );
    path
}

/// Runs `fleetdb fetch --source NAME --once` against the server; returns its summary line.
pub fn fetch_once(server: &Fleetdb, source: &str) -> String {
    fetch_once_with(server, source, &[])
}

/// Like [`fetch_once`], with extra environment variables (provider credentials, endpoints).
/// The fetcher runs with an identity of its own Source (`fleetdb kubeconfig --fetcher`), as
/// in production.
pub fn fetch_once_with(server: &Fleetdb, source: &str, env: &[(&str, &std::ffi::OsStr)]) -> String {
    let (kubeconfig, _) = server.identity(
        &format!("fetcher-{source}.kubeconfig"),
        &["--fetcher", source],
    );
    let output = Command::new(env!("CARGO_BIN_EXE_fleetdb"))
        .args(["fetch", "--source", source, "--once", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--allow-dir")
        .arg(server.path())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "fetch failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `fleetdb ARGS --data-dir <the server's>`.
pub fn fleetdb(server: &Fleetdb, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fleetdb"))
        .args(args)
        .arg("--data-dir")
        .arg(server.dir.path().join("data"))
        .output()
        .unwrap()
}

/// `fleetdb token create EXTRA`: the token.
pub fn token(server: &Fleetdb, extra: &[&str]) -> String {
    let mut args = vec!["token", "create"];
    args.extend_from_slice(extra);
    let output = fleetdb(server, &args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The server's CA certificate (PEM).
pub fn ca(server: &Fleetdb) -> String {
    std::fs::read_to_string(server.dir.path().join("data/pki/ca.crt")).unwrap()
}
