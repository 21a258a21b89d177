//! Real components for fleetdb's tests and benchmarks, started on 127.0.0.1 on free ports with
//! their own temporary directories, and stopped when dropped.
//!
//! A component that is not installed is a failure with a message saying how to install it,
//! never a silent skip: the project's set-up script installs everything the tests need.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a component gets to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a port on 127.0.0.1")
}

/// Finds an executable: `$env_var` if set, else the first of `names` on PATH or in `extra_dirs`.
pub fn find_executable(env_var: &str, names: &[&str], extra_dirs: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(extra_dirs.iter().map(PathBuf::from));
    names
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// A single-member etcd cluster owned by the test.
pub struct EtcdServer {
    child: Child,
    client_url: String,
    _data_dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts etcd (`$FLEETDB_ETCD_BIN` or `etcd` from the Debian package `etcd-server`) and
    /// waits until it reports healthy. Panics with install instructions when it is missing.
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// Like [`start`](Self::start), with extra command-line flags.
    pub fn start_with_args(extra: &[&str]) -> Self {
        let binary = find_executable(
            "FLEETDB_ETCD_BIN",
            &["etcd"],
            &["/usr/bin", "/usr/local/bin"],
        )
        .expect(
            "etcd is not installed: run `apt-get install -y etcd-server` (scripts/setup.sh does) \
                 or set FLEETDB_ETCD_BIN",
        );
        let data_dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let client_port = free_port();
        let peer_port = free_port();
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(data_dir.path().join("etcd.log"))
            .expect("cannot create the etcd log file");
        let child = Command::new(&binary)
            .arg("--name=fleetdb-test")
            .arg(format!(
                "--data-dir={}",
                data_dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=fleetdb-test={peer_url}"))
            .arg("--initial-cluster-state=new")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut server = Self {
            child,
            client_url,
            _data_dir: data_dir,
        };
        server.wait_healthy(client_port);
        server
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    fn wait_healthy(&mut self, port: u16) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("etcd exited during start-up with {status}; see its log in the data dir");
            }
            if health_ok(port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become healthy within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Asks etcd's `/health` endpoint over plain HTTP/1.0.
fn health_ok(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
