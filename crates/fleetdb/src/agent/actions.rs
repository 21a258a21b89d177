//! What the agent does about its Host's spec, once `spec.authorized` is true: maintenance
//! hooks, runs, OS upgrades — and, always, preflight checks. Every program it starts comes
//! from its local configuration, or, for `spec.runs`, is allowed by it: a record never
//! names a program the host's owner did not allow.
//!
//! Each run executes at most once per id, also across restarts: it is recorded as Running in
//! the agent's state file before it starts, and a run found Running at start-up (the agent
//! stopped during it) is reported Failed, never started again.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use fleetdb_apiserver::registry::now;
use fleetdb_fleet::{Condition, Host, RunSpec, RunStatus};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

/// How much of a program's output is kept (the end of it).
pub const LOG_TAIL_BYTES: usize = 4096;
/// Most runs reported in `status.agent.runs`.
pub const MAX_RECORDED_RUNS: usize = 100;
/// Most run ids remembered as started (beyond it the oldest ids no longer in the spec are
/// forgotten; ids still in the spec never are, so a listed run never runs twice).
pub const MAX_REMEMBERED_RUNS: usize = 10_000;
/// Most ports and most peers taken from a Cluster's checks.
pub const MAX_CLUSTER_CHECKS: usize = 64;
/// How long all preflight checks together may take.
pub const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a hook (maintenance, upgrade, reboot) may run unless configured.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a run may take unless configured.
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(3600);

/// Enter and exit commands of maintenance.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaintenanceHooks {
    #[serde(default)]
    pub enter: Vec<String>,
    #[serde(default)]
    pub exit: Vec<String>,
}

/// What `spec.runs` may do on this host.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunsConfig {
    /// Seconds a run may take (default 3600).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Programs (absolute paths) a run's `command` may start; none: commands are refused.
    #[serde(default)]
    pub allowed_programs: Vec<PathBuf>,
    /// URL prefixes a run's playbook repository must start with; none: playbooks are refused.
    #[serde(default)]
    pub allowed_repositories: Vec<String>,
    /// The `ansible-pull` program (default: `ansible-pull` on the PATH).
    #[serde(default)]
    pub ansible_pull: Option<PathBuf>,
}

/// Preflight checks.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreflightConfig {
    /// Ports that must be free to bind.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// `host:port` that must accept TCP connections.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Also run the checks the host's Cluster lists (`spec.preflight`). Off by default: a
    /// record would otherwise choose where this host opens connections.
    #[serde(default)]
    pub allow_cluster_checks: bool,
}

/// What the agent says of itself when it joins.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityConfig {
    /// The host's id at its provider (instance id, serial number), when the agent cannot
    /// read it from the machine (DMI).
    #[serde(default)]
    pub provider_id: Option<String>,
}

/// The agent's configuration file (YAML).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentConfig {
    #[serde(default)]
    pub identity: IdentityConfig,
    #[serde(default)]
    pub maintenance: MaintenanceHooks,
    /// Run for `spec.os.targetVersion` (environment `FLEETDB_TARGET_VERSION`).
    #[serde(default)]
    pub upgrade: Vec<String>,
    /// Run after a successful upgrade.
    #[serde(default)]
    pub reboot: Vec<String>,
    #[serde(default)]
    pub runs: RunsConfig,
    #[serde(default)]
    pub preflight: PreflightConfig,
    /// Run once when the host's record is deleted (the controllers wait for its report,
    /// `Decommissioned`, before the record goes): wipe, power off, hand back...
    #[serde(default)]
    pub decommission: Vec<String>,
}

impl AgentConfig {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_saphyr::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{} is not an agent configuration: {e}", path.display()))
    }
}

/// What the agent remembers between starts (`DATA_DIR/state.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// The maintenance state the hooks last brought the host to.
    #[serde(default)]
    pub maintenance: bool,
    /// The generation at which a maintenance hook last failed (not retried before the
    /// spec changes).
    #[serde(default)]
    pub maintenance_failed_at: Option<i64>,
    /// The target version the upgrade last ran for, and at which generation.
    #[serde(default)]
    pub upgraded_to: Option<(String, i64)>,
    #[serde(default)]
    pub runs: Vec<RunStatus>,
    /// Every run id started, oldest first.
    #[serde(default)]
    pub started: Vec<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The uid of the Host record the decommission command ran for (once per record).
    #[serde(default)]
    pub decommissioned: Option<String>,
}

impl State {
    pub fn load(path: &Path) -> Self {
        let mut state: State = std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        // Every reported run was started (state files of earlier versions lack the list).
        for run in &state.runs {
            if !state.started.contains(&run.id) {
                state.started.push(run.id.clone());
            }
        }
        // A run still Running was interrupted by the agent stopping: it is not run again.
        for run in state.runs.iter_mut().filter(|r| r.phase == "Running") {
            run.phase = "Failed".into();
            run.completion_time = Some(now());
            run.message = Some("the agent stopped during the run; it is not run again".into());
        }
        state
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        crate::write_private(path, &text)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    fn set_condition(
        &mut self,
        generation: i64,
        kind: &str,
        ok: bool,
        reason: &str,
        message: &str,
    ) {
        let status = if ok { "True" } else { "False" };
        let since = self
            .conditions
            .iter()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.clone());
        self.conditions.retain(|c| c.type_ != kind);
        self.conditions.push(Condition {
            type_: kind.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: since.or_else(|| Some(now())),
            observed_generation: Some(generation),
        });
        self.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    }

    fn record_run(&mut self, run: RunStatus) {
        self.runs.retain(|r| r.id != run.id);
        self.runs.push(run);
        if self.runs.len() > MAX_RECORDED_RUNS {
            let extra = self.runs.len() - MAX_RECORDED_RUNS;
            self.runs.drain(..extra);
        }
    }
}

/// How a program ended.
pub struct Outcome {
    pub exit_code: Option<i32>,
    pub tail: String,
    /// Why it has no exit code (could not start, timed out, killed by a signal).
    pub failure: Option<String>,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// One line for a condition's message.
    pub fn describe(&self, what: &str) -> String {
        let ending = match (&self.failure, self.exit_code) {
            (Some(failure), _) => failure.clone(),
            (None, Some(code)) => format!("exited with {code}"),
            (None, None) => "ended without an exit code".into(),
        };
        let tail = self.tail.trim();
        if tail.is_empty() {
            format!("{what} {ending}")
        } else {
            format!("{what} {ending}: {tail}")
        }
    }
}

/// Keeps the last [`LOG_TAIL_BYTES`] of what a reader gives.
async fn keep_tail(mut reader: impl tokio::io::AsyncRead + Unpin, tail: Arc<Mutex<VecDeque<u8>>>) {
    let mut buffer = [0u8; 4096];
    while let Ok(n) = reader.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        tail.extend(&buffer[..n]);
        while tail.len() > LOG_TAIL_BYTES {
            tail.pop_front();
        }
    }
}

/// Runs `argv` (no shell) with `env`, for at most `timeout`; its output's tail is kept.
pub async fn execute(argv: &[String], env: &[(&str, &str)], timeout: Duration) -> Outcome {
    let Some((program, args)) = argv.split_first() else {
        return Outcome {
            exit_code: None,
            tail: String::new(),
            failure: Some("has no command".into()),
        };
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            return Outcome {
                exit_code: None,
                tail: String::new(),
                failure: Some(format!("could not start {program}: {error}")),
            };
        }
    };
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let readers = [
        child
            .stdout
            .take()
            .map(|out| tokio::spawn(keep_tail(out, tail.clone()))),
        child
            .stderr
            .take()
            .map(|err| tokio::spawn(keep_tail(err, tail.clone()))),
    ];
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    let (exit_code, failure) = match waited {
        Ok(Ok(status)) => (
            status.code(),
            status
                .code()
                .is_none()
                .then(|| "was killed by a signal".to_owned()),
        ),
        Ok(Err(error)) => (None, Some(format!("could not be waited for: {error}"))),
        Err(_) => {
            let _ = child.kill().await;
            (
                None,
                Some(format!("timed out after {} s", timeout.as_secs())),
            )
        }
    };
    for reader in readers.into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
    }
    let bytes: Vec<u8> = tail
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .copied()
        .collect();
    Outcome {
        exit_code,
        tail: String::from_utf8_lossy(&bytes).into_owned(),
        failure,
    }
}

/// Runs the preflight checks in parallel: the failures, each named.
pub async fn preflight(config: &PreflightConfig) -> Vec<String> {
    let ports = config.ports.iter().map(|&port| async move {
        match tokio::net::TcpListener::bind(("0.0.0.0", port)).await {
            Ok(_) => None,
            Err(error) => Some(format!("port {port} is not free: {error}")),
        }
    });
    let peers = config.peers.iter().map(|peer| async move {
        match tokio::time::timeout(
            PREFLIGHT_TIMEOUT,
            tokio::net::TcpStream::connect(peer.as_str()),
        )
        .await
        {
            Ok(Ok(_)) => None,
            Ok(Err(error)) => Some(format!("{peer} is not reachable: {error}")),
            Err(_) => Some(format!(
                "{peer} did not answer within {} s",
                PREFLIGHT_TIMEOUT.as_secs()
            )),
        }
    });
    let (ports, peers) = tokio::join!(
        futures::future::join_all(ports),
        futures::future::join_all(peers)
    );
    ports.into_iter().chain(peers).flatten().collect()
}

/// Why a run may not execute here, if it may not.
fn refusal(run: &RunSpec, config: &RunsConfig) -> Option<String> {
    match (&run.command[..], &run.playbook) {
        ([], None) => Some("the run has neither a command nor a playbook".into()),
        ([_, ..], Some(_)) => Some("a run has a command or a playbook, not both".into()),
        ([program, ..], None) => {
            let allowed = config
                .allowed_programs
                .iter()
                .any(|p| p.is_absolute() && p.as_os_str() == program.as_str());
            (!allowed).then(|| {
                format!("{program:?} is not among the programs this agent's configuration allows (runs.allowedPrograms)")
            })
        }
        ([], Some(playbook)) => {
            let allowed = config
                .allowed_repositories
                .iter()
                .any(|prefix| !prefix.is_empty() && playbook.repo.starts_with(prefix.as_str()));
            (!allowed).then(|| {
                format!("{:?} is not under a repository this agent's configuration allows (runs.allowedRepositories)", playbook.repo)
            })
        }
    }
}

/// The agent's work on its spec, with its state file.
pub struct Actions {
    pub config: AgentConfig,
    state_path: PathBuf,
    work_dir: PathBuf,
    pub state: State,
}

impl Actions {
    pub fn new(config: AgentConfig, data_dir: &Path) -> anyhow::Result<Self> {
        let state_path = data_dir.join("state.json");
        let state = State::load(&state_path);
        state.save(&state_path)?;
        Ok(Self {
            config,
            state_path,
            work_dir: data_dir.join("runs"),
            state,
        })
    }

    fn save(&self) {
        if let Err(error) = self.state.save(&self.state_path) {
            tracing::error!(error = %format!("{error:#}"), "cannot save the agent's state");
        }
    }

    /// Checks preflight: the configured checks and, when the configuration allows them,
    /// the Cluster's.
    pub async fn check_preflight(
        &mut self,
        generation: i64,
        cluster: Option<&fleetdb_fleet::PreflightSpec>,
    ) {
        let mut checks = self.config.preflight.clone();
        if checks.allow_cluster_checks
            && let Some(cluster) = cluster
        {
            checks
                .ports
                .extend(cluster.ports.iter().take(MAX_CLUSTER_CHECKS));
            checks
                .peers
                .extend(cluster.peers.iter().take(MAX_CLUSTER_CHECKS).cloned());
            checks.ports.sort_unstable();
            checks.ports.dedup();
            checks.peers.sort();
            checks.peers.dedup();
        }
        if checks.ports.is_empty() && checks.peers.is_empty() {
            return;
        }
        let failures = preflight(&checks).await;
        if failures.is_empty() {
            self.state.set_condition(
                generation,
                "Preflight",
                true,
                "Passed",
                "every check passed",
            );
        } else {
            self.state.set_condition(
                generation,
                "Preflight",
                false,
                "ChecksFailed",
                &failures.join("; "),
            );
        }
        self.save();
    }

    /// The host's record is being deleted: runs the configured decommission command once
    /// per record (`uid`) and reports it in the condition `Decommissioned`; returns an Event
    /// (type, reason, message) the first time.
    pub async fn decommission(
        &mut self,
        generation: i64,
        uid: &str,
    ) -> Option<(String, String, String)> {
        if self.state.decommissioned.as_deref() == Some(uid) {
            return None;
        }
        // Recorded before it starts: an agent stopped during the command does not run it again.
        self.state.decommissioned = Some(uid.to_owned());
        self.save();
        let (ok, reason, message) = if self.config.decommission.is_empty() {
            (
                true,
                "NoCommand",
                "no decommission command is configured".to_owned(),
            )
        } else {
            let outcome = execute(&self.config.decommission, &[], DEFAULT_HOOK_TIMEOUT).await;
            let message = outcome.describe("the decommission command");
            if outcome.succeeded() {
                (true, "CommandSucceeded", message)
            } else {
                (false, "CommandFailed", message)
            }
        };
        self.state
            .set_condition(generation, "Decommissioned", ok, reason, &message);
        self.save();
        let kind = if ok { "Normal" } else { "Warning" };
        Some((kind.into(), "Decommissioned".into(), message))
    }

    /// Brings maintenance to what the spec wants; returns an Event (type, reason, message)
    /// when something happened.
    pub async fn maintenance(
        &mut self,
        host: &Host,
        generation: i64,
    ) -> Option<(String, String, String)> {
        let wanted = host.spec.maintenance.unwrap_or(false);
        if wanted == self.state.maintenance {
            self.state.maintenance_failed_at = None;
            let (reason, message) = if wanted {
                ("InMaintenance", "the host is in maintenance")
            } else {
                ("InService", "the host is in service")
            };
            self.state
                .set_condition(generation, "Maintenance", wanted, reason, message);
            self.save();
            return None;
        }
        if self.state.maintenance_failed_at == Some(generation) {
            return None;
        }
        let (hook, what) = if wanted {
            (&self.config.maintenance.enter, "the maintenance enter hook")
        } else {
            (&self.config.maintenance.exit, "the maintenance exit hook")
        };
        let outcome = if hook.is_empty() {
            None
        } else {
            Some(execute(hook, &[], DEFAULT_HOOK_TIMEOUT).await)
        };
        match outcome {
            Some(outcome) if !outcome.succeeded() => {
                let message = outcome.describe(what);
                self.state.maintenance_failed_at = Some(generation);
                self.state.set_condition(
                    generation,
                    "Maintenance",
                    self.state.maintenance,
                    "HookFailed",
                    &message,
                );
                self.save();
                Some(("Warning".into(), "MaintenanceHookFailed".into(), message))
            }
            _ => {
                self.state.maintenance = wanted;
                self.state.maintenance_failed_at = None;
                let (reason, message) = if wanted {
                    ("Entered", "the host entered maintenance")
                } else {
                    ("Exited", "the host left maintenance")
                };
                self.state
                    .set_condition(generation, "Maintenance", wanted, reason, message);
                self.save();
                Some((
                    "Normal".into(),
                    format!("Maintenance{reason}"),
                    message.into(),
                ))
            }
        }
    }

    /// Upgrades the OS to `spec.os.targetVersion` when it differs from `current`.
    pub async fn upgrade(
        &mut self,
        host: &Host,
        current: Option<&str>,
        generation: i64,
    ) -> Option<(String, String, String)> {
        let target = host.spec.os.as_ref()?.target_version.as_deref()?;
        if current == Some(target) {
            self.state.set_condition(
                generation,
                "OSUpToDate",
                true,
                "AtTarget",
                &format!("the OS is at version {target}"),
            );
            self.save();
            return None;
        }
        if self
            .state
            .upgraded_to
            .as_ref()
            .is_some_and(|(t, g)| t == target && *g == generation)
        {
            return None;
        }
        self.state.upgraded_to = Some((target.to_owned(), generation));
        if self.config.upgrade.is_empty() {
            self.state.set_condition(
                generation,
                "OSUpToDate",
                false,
                "NoUpgradeCommand",
                &format!("the OS is at {} and should be at {target}, but the agent's configuration has no upgrade command", current.unwrap_or("an unknown version")),
            );
            self.save();
            return None;
        }
        self.save();
        let outcome = execute(
            &self.config.upgrade,
            &[("FLEETDB_TARGET_VERSION", target)],
            DEFAULT_HOOK_TIMEOUT,
        )
        .await;
        if !outcome.succeeded() {
            let message = outcome.describe("the upgrade command");
            self.state
                .set_condition(generation, "OSUpToDate", false, "UpgradeFailed", &message);
            self.save();
            return Some(("Warning".into(), "UpgradeFailed".into(), message));
        }
        self.state.set_condition(
            generation,
            "OSUpToDate",
            false,
            "Upgraded",
            &format!("upgraded towards {target}; the reported version follows"),
        );
        self.save();
        if !self.config.reboot.is_empty() {
            let outcome = execute(&self.config.reboot, &[], DEFAULT_HOOK_TIMEOUT).await;
            if !outcome.succeeded() {
                let message = outcome.describe("the reboot command");
                return Some(("Warning".into(), "RebootFailed".into(), message));
            }
        }
        Some((
            "Normal".into(),
            "Upgraded".into(),
            format!("the upgrade to {target} finished"),
        ))
    }

    /// The runs of the spec not run yet, in order.
    pub fn pending_runs<'a>(&self, host: &'a Host) -> Vec<&'a RunSpec> {
        let mut seen = std::collections::HashSet::new();
        host.spec
            .runs
            .iter()
            .filter(|run| seen.insert(run.id.as_str()))
            .filter(|run| !self.state.started.contains(&run.id))
            .collect()
    }

    /// Marks a run as Running (saved before it starts: it will never start twice).
    pub fn start_run(&mut self, run: &RunSpec, host: &Host) {
        self.state.started.push(run.id.clone());
        if self.state.started.len() > MAX_REMEMBERED_RUNS {
            let listed: std::collections::HashSet<&str> =
                host.spec.runs.iter().map(|r| r.id.as_str()).collect();
            if let Some(oldest) = self
                .state
                .started
                .iter()
                .position(|id| !listed.contains(id.as_str()))
            {
                self.state.started.remove(oldest);
            }
        }
        self.state.record_run(RunStatus {
            id: run.id.clone(),
            phase: "Running".into(),
            start_time: Some(now()),
            ..RunStatus::default()
        });
        self.save();
    }

    /// Executes a run marked Running and records how it ended.
    pub async fn finish_run(&mut self, run: &RunSpec) -> (String, String, String) {
        let timeout = self
            .config
            .runs
            .timeout_seconds
            .map_or(DEFAULT_RUN_TIMEOUT, Duration::from_secs);
        let start_time = self
            .state
            .runs
            .iter()
            .find(|r| r.id == run.id)
            .and_then(|r| r.start_time.clone());
        let mut status = RunStatus {
            id: run.id.clone(),
            start_time,
            ..RunStatus::default()
        };
        if let Some(why) = refusal(run, &self.config.runs) {
            status.phase = "Failed".into();
            status.message = Some(why.clone());
        } else {
            let argv = match &run.playbook {
                Some(playbook) => self.playbook_command(run, playbook),
                None => Ok(run.command.clone()),
            };
            let outcome = match argv {
                Ok(argv) => execute(&argv, &[], timeout).await,
                Err(error) => Outcome {
                    exit_code: None,
                    tail: String::new(),
                    failure: Some(format!("{error:#}")),
                },
            };
            status.phase = if outcome.succeeded() {
                "Succeeded"
            } else {
                "Failed"
            }
            .into();
            status.exit_code = outcome.exit_code;
            status.message = outcome.failure.clone();
            status.log_tail = Some(outcome.tail).filter(|t| !t.is_empty());
        }
        status.completion_time = Some(now());
        let event = if status.phase == "Succeeded" {
            (
                "Normal".to_owned(),
                "RunSucceeded".to_owned(),
                format!("run {} succeeded", run.id),
            )
        } else {
            let why = status
                .message
                .clone()
                .or_else(|| status.exit_code.map(|c| format!("exited with {c}")))
                .unwrap_or_default();
            (
                "Warning".to_owned(),
                "RunFailed".to_owned(),
                format!("run {} failed: {why}", run.id),
            )
        };
        self.state.record_run(status);
        self.save();
        event
    }

    /// `ansible-pull` for a playbook run, its extra variables written to a file as data
    /// Ansible never templates (`!unsafe`).
    fn playbook_command(
        &self,
        run: &RunSpec,
        playbook: &fleetdb_fleet::PlaybookSpec,
    ) -> anyhow::Result<Vec<String>> {
        let safe_id: String = run
            .id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let dir = self.work_dir.join(&safe_id);
        std::fs::create_dir_all(&dir)?;
        let program = self
            .config
            .runs
            .ansible_pull
            .as_ref()
            .map_or("ansible-pull".to_owned(), |p| p.display().to_string());
        let mut argv = vec![
            program,
            "--url".to_owned(),
            playbook.repo.clone(),
            "--directory".to_owned(),
            dir.join("checkout").display().to_string(),
            "--inventory".to_owned(),
            "localhost,".to_owned(),
            "--limit".to_owned(),
            "localhost".to_owned(),
        ];
        if let Some(reference) = &playbook.ref_ {
            argv.extend(["--checkout".to_owned(), reference.clone()]);
        }
        if let Some(vars) = &playbook.extra_vars {
            let file = dir.join("extra-vars.yml");
            let mut text = String::new();
            for (name, value) in vars {
                let valid = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit())
                    && !name.starts_with("ansible_");
                if !valid {
                    anyhow::bail!("{name:?} cannot be an extra variable of a run");
                }
                text.push_str(&format!("{name}: {}\n", unsafe_yaml(value)));
            }
            crate::write_private(&file, &text)?;
            argv.extend(["--extra-vars".to_owned(), format!("@{}", file.display())]);
        }
        argv.push(playbook.path.clone());
        Ok(argv)
    }
}

/// A JSON value as YAML flow text whose strings are all tagged `!unsafe` (Ansible never
/// templates them).
fn unsafe_yaml(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::String(text) => format!(
            "!unsafe {}",
            serde_json::to_string(text).unwrap_or_default()
        ),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(unsafe_yaml).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!(
                    "{}: {}",
                    serde_json::to_string(k).unwrap_or_default(),
                    unsafe_yaml(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn programs_report_their_exit_code_and_the_end_of_their_output() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let outcome = execute(
            &args(&["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]),
            &[],
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(outcome.exit_code, Some(3));
        assert!(outcome.tail.contains("out") && outcome.tail.contains("err"));
        let long = execute(
            &args(&[
                "/bin/sh",
                "-c",
                "head -c 100000 /dev/zero | tr '\\\\0' x; echo END",
            ]),
            &[],
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(long.tail.len(), LOG_TAIL_BYTES);
        assert!(long.tail.ends_with("END\n"));
        let slow = execute(&args(&["/bin/sleep", "5"]), &[], Duration::from_millis(200)).await;
        assert!(slow.failure.unwrap().contains("timed out"));
        let missing = execute(&args(&["/nonexistent"]), &[], Duration::from_secs(1)).await;
        assert!(missing.failure.unwrap().contains("could not start"));
    }

    #[test]
    fn only_allowed_programs_and_repositories_run() {
        let config = RunsConfig {
            allowed_programs: vec!["/usr/bin/true".into()],
            allowed_repositories: vec!["https://git.example.com/ops/".into()],
            ..RunsConfig::default()
        };
        let run = |command: &[&str], repo: Option<&str>| RunSpec {
            id: "r".into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            playbook: repo.map(|repo| fleetdb_fleet::PlaybookSpec {
                repo: repo.into(),
                path: "site.yml".into(),
                ..Default::default()
            }),
        };
        assert_eq!(refusal(&run(&["/usr/bin/true"], None), &config), None);
        assert!(refusal(&run(&["true"], None), &config).is_some());
        assert!(refusal(&run(&["/bin/sh", "-c", "id"], None), &config).is_some());
        assert_eq!(
            refusal(
                &run(&[], Some("https://git.example.com/ops/site.git")),
                &config
            ),
            None
        );
        assert!(refusal(&run(&[], Some("https://evil.example/ops/")), &config).is_some());
        assert!(refusal(&run(&[], None), &config).is_some());
    }

    #[test]
    fn extra_variables_are_data_ansible_never_templates() {
        let value = serde_json::json!({"a": "{{ lookup('pipe', 'id') }}", "n": [1, "x"]});
        assert_eq!(
            unsafe_yaml(&value),
            r#"{"a": !unsafe "{{ lookup('pipe', 'id') }}", "n": [1, !unsafe "x"]}"#
        );
    }

    #[test]
    fn runs_beyond_the_reported_ones_are_still_never_run_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut actions = Actions::new(AgentConfig::default(), dir.path()).unwrap();
        let mut host = Host::new("h", fleetdb_fleet::HostSpec::default());
        host.spec.runs = (0..150)
            .map(|i| RunSpec {
                id: format!("r{i}"),
                ..RunSpec::default()
            })
            .collect();
        assert_eq!(actions.pending_runs(&host).len(), 150);
        for run in host.spec.runs.clone() {
            actions.start_run(&run, &host);
        }
        assert_eq!(actions.state.runs.len(), MAX_RECORDED_RUNS);
        assert!(actions.pending_runs(&host).is_empty());
        // Also after a restart of the agent.
        let reloaded = Actions::new(AgentConfig::default(), dir.path()).unwrap();
        assert!(reloaded.pending_runs(&host).is_empty());
    }

    #[test]
    fn a_run_interrupted_by_a_stop_is_failed_never_restarted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut state = State::default();
        state.record_run(RunStatus {
            id: "r1".into(),
            phase: "Running".into(),
            ..RunStatus::default()
        });
        state.save(&path).unwrap();
        let loaded = State::load(&path);
        assert_eq!(loaded.runs[0].phase, "Failed");
        assert!(
            loaded.runs[0]
                .message
                .as_deref()
                .unwrap()
                .contains("not run again")
        );
    }
}
