//! Runs the real `fleetdb serve` as a child process, so that the benchmark measures the server
//! as users run it, and its memory can be read apart from the benchmark's own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::h2client::{Credentials, H2};

/// How long a server may take to start (cold start with a million hosts included).
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// Which store the server runs on.
#[derive(Clone, Debug)]
pub enum Backend {
    Embedded,
    /// etcd at this client URL, under its own key prefix.
    Etcd {
        endpoint: String,
        prefix: String,
    },
}

impl Backend {
    pub fn label(&self) -> &'static str {
        match self {
            Backend::Embedded => "fleetdb (embedded)",
            Backend::Etcd { .. } => "fleetdb (etcd)",
        }
    }
}

/// The `fleetdb` binary: `$FLEETDB_BIN`, or next to this program (both are built by
/// `cargo build -p fleetdb -p fleetdb-bench`).
pub fn fleetdb_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("FLEETDB_BIN") {
        return Ok(path.into());
    }
    let exe = std::env::current_exe()?;
    let candidate = exe.with_file_name("fleetdb");
    anyhow::ensure!(
        candidate.exists(),
        "{} not found: build it with `cargo build --release -p fleetdb -p fleetdb-bench` \
         (or set FLEETDB_BIN)",
        candidate.display()
    );
    Ok(candidate)
}

/// A running `fleetdb serve`; killed on drop.
pub struct FleetdbProcess {
    child: Child,
    pub data_dir: PathBuf,
    pub credentials: Credentials,
    backend: Backend,
    port: u16,
    /// More `fleetdb serve` arguments.
    extra: Vec<String>,
    /// From spawning the process to its first successful Host list.
    pub started_in: Duration,
}

impl FleetdbProcess {
    pub async fn start(data_dir: &Path, backend: Backend) -> anyhow::Result<Self> {
        Self::start_with(data_dir, backend, &[]).await
    }

    /// [`FleetdbProcess::start`] with more `fleetdb serve` arguments.
    pub async fn start_with(
        data_dir: &Path,
        backend: Backend,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let extra = extra.iter().map(|a| a.to_string()).collect();
        Self::start_on(data_dir, backend, fleetdb_testkit::free_port(), extra).await
    }

    async fn start_on(
        data_dir: &Path,
        backend: Backend,
        port: u16,
        extra: Vec<String>,
    ) -> anyhow::Result<Self> {
        let started = Instant::now();
        let mut command = Command::new(fleetdb_binary()?);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            // The figures are the API server's: the controllers (a watch of every host, a
            // Lease list every few seconds) are measured apart when they are the subject.
            .arg("--controllers=false")
            .args(&extra)
            .env("FLEETDB_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Backend::Etcd { endpoint, prefix } = &backend {
            command
                .args(["--store", "etcd", "--etcd-endpoints"])
                .arg(endpoint)
                .arg("--etcd-prefix")
                .arg(prefix);
        }
        let mut child = command.spawn().context("starting fleetdb serve")?;
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_TIMEOUT;
        let credentials = loop {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("fleetdb serve exited during start-up: {status}");
            }
            anyhow::ensure!(Instant::now() < deadline, "fleetdb did not start in time");
            if let Ok(credentials) = Credentials::from_data_dir(data_dir, address)
                && let Ok(client) = credentials.connect().await
                && client
                    .get("/apis/fleetdb.io/v1alpha1/hosts?limit=1")
                    .await
                    .is_ok()
            {
                break credentials;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Ok(Self {
            child,
            data_dir: data_dir.to_owned(),
            credentials,
            backend,
            port,
            extra,
            started_in: started.elapsed(),
        })
    }

    pub async fn connect(&self) -> anyhow::Result<H2> {
        self.credentials.connect().await
    }

    /// CPU time the server process has used so far (user and system), in seconds.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_of(self.child.id())
    }

    /// The address the server listens on.
    pub fn address(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Resident memory of the server process, in bytes (VmRSS).
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_of(self.child.id())
    }

    /// Stops the server (SIGTERM, then waits) and starts it again on the same data and port;
    /// the new process's `started_in` is the cold start time.
    pub async fn restart(mut self) -> anyhow::Result<Self> {
        self.terminate()?;
        let extra = std::mem::take(&mut self.extra);
        Self::start_on(
            &self.data_dir.clone(),
            self.backend.clone(),
            self.port,
            extra,
        )
        .await
    }

    fn terminate(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        // SIGTERM lets the server stop gracefully (`Child::kill` would send SIGKILL).
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
        Ok(())
    }
}

impl Drop for FleetdbProcess {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

/// CPU time a process has used so far (user and system), in seconds.
pub fn cpu_of(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("a /proc stat line")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / per_second)
}

/// VmRSS of a process, in bytes.
pub fn rss_of(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("malformed VmRSS line")?
        .parse()?;
    Ok(kib * 1024)
}
