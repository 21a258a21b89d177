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

/// A multi-member etcd cluster on 127.0.0.1 owned by the test; members can be killed and
/// started again.
pub struct EtcdCluster {
    binary: PathBuf,
    members: Vec<Member>,
    initial_cluster: String,
    data_dir: tempfile::TempDir,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl EtcdCluster {
    /// Starts `size` members and waits until every one reports healthy.
    pub fn start(size: usize) -> Self {
        let binary = find_executable(
            "FLEETDB_ETCD_BIN",
            &["etcd"],
            &["/usr/bin", "/usr/local/bin"],
        )
        .expect(
            "etcd is not installed: run `apt-get install -y etcd-server` (scripts/setup.sh does) \
                 or set FLEETDB_ETCD_BIN",
        );
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            binary,
            members,
            initial_cluster,
            data_dir: tempfile::tempdir().expect("cannot create a temporary directory"),
        };
        for i in 0..size {
            cluster.spawn(i);
        }
        for i in 0..size {
            cluster.wait_healthy(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let member = &self.members[i];
        let client_url = format!("http://127.0.0.1:{}", member.client_port);
        let peer_url = format!("http://127.0.0.1:{}", member.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join(format!("{}.log", member.name)))
            .expect("cannot open the etcd log file");
        let child = Command::new(&self.binary)
            .arg(format!("--name={}", member.name))
            .arg(format!(
                "--data-dir={}",
                self.data_dir.path().join(&member.name).display()
            ))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg("--initial-cluster-state=new")
            .arg("--initial-cluster-token=fleetdb-test")
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.members[i].child = Some(child);
    }

    fn wait_healthy(&mut self, i: usize) {
        let deadline = Instant::now() + START_TIMEOUT;
        while !health_ok(self.members[i].client_port) {
            if let Some(Ok(Some(status))) = self.members[i].child.as_mut().map(Child::try_wait) {
                panic!("etcd member {i} exited with {status}; see its log in the data dir");
            }
            assert!(
                Instant::now() < deadline,
                "etcd member {i} did not become healthy within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every member's client URL, e.g. `http://127.0.0.1:40123`.
    pub fn client_urls(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// Kills member `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again (with its data) and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_healthy(i);
    }

    /// The index of the member that leads, waiting (blocking, up to `within`) for an
    /// election to end; panics if none does.
    pub fn wait_for_leader(&self, within: std::time::Duration) -> usize {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(leader) = self.leader() {
                return leader;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no etcd member leads after {within:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// The index of the member that leads, if one answers that it does.
    pub fn leader(&self) -> Option<usize> {
        self.members.iter().position(|m| {
            m.child.is_some()
                && post(m.client_port, "/v3/maintenance/status", "{}").is_some_and(|answer| {
                    let field = |name: &str| {
                        answer
                            .split(&format!("\"{name}\":\""))
                            .nth(1)
                            .and_then(|rest| rest.split('"').next())
                            .map(str::to_owned)
                    };
                    field("member_id").is_some() && field("member_id") == field("leader")
                })
        })
    }
}

/// POSTs `body` to etcd's JSON gateway; the answer's body.
fn post(port: u16, path: &str, body: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.split("\r\n\r\n").nth(1).map(str::to_owned)
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
