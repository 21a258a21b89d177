//! Prometheus service discovery from the fleet: target groups in the format both `http_sd`
//! and `file_sd` read, and `fleetdb monitor`, a small controller that watches Hosts and
//! rewrites `file_sd` files (and alert rules per role) whenever the set changes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fleetdb_fleet::{ADDRESS_PREFERENCE, Host};
use futures::StreamExt;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::{ExportError, identifier};

/// What happens to hosts in maintenance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Maintenance {
    /// Left out of the targets (default): nothing scrapes or alerts on them.
    #[default]
    Exclude,
    /// Kept, with a `maintenance="true"` label so alerts can be silenced.
    Label,
}

impl std::str::FromStr for Maintenance {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "exclude" => Ok(Self::Exclude),
            "label" => Ok(Self::Label),
            other => Err(format!("maintenance mode {other:?}: use exclude or label")),
        }
    }
}

/// How label names are written: `__meta_fleetdb_*` for http_sd (relabel them), plain
/// `fleetdb_*` for file_sd (used as they are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelStyle {
    Meta,
    Plain,
}

/// The `ip:port` Prometheus scrapes for a host, from its preferred address.
fn target(host: &Host, port: u16) -> Option<String> {
    let address = &host.preferred_address(&ADDRESS_PREFERENCE)?.address;
    Some(if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    })
}

/// Target groups for `hosts`: one group per host, terminated hosts left out.
pub fn target_groups(
    hosts: &[Host],
    port: u16,
    maintenance: Maintenance,
    style: LabelStyle,
) -> Value {
    let prefix = match style {
        LabelStyle::Meta => "__meta_fleetdb_",
        LabelStyle::Plain => "fleetdb_",
    };
    let mut groups = Vec::new();
    for host in hosts {
        let in_maintenance = host.in_maintenance();
        if host.is_terminated()
            || host.is_decommissioning()
            || (in_maintenance && maintenance == Maintenance::Exclude)
        {
            continue;
        }
        let Some(address) = target(host, port) else {
            continue;
        };
        let mut labels = BTreeMap::new();
        labels.insert(format!("{prefix}host"), host.name_any());
        for (name, value) in host.facts() {
            labels.insert(format!("{prefix}{name}"), value);
        }
        if style == LabelStyle::Meta {
            for (key, value) in host.labels() {
                labels.insert(format!("{prefix}label_{}", identifier(key)), value.clone());
            }
        }
        if maintenance == Maintenance::Label {
            labels.insert("maintenance".into(), in_maintenance.to_string());
        }
        groups.push(json!({"targets": [address], "labels": labels}));
    }
    Value::Array(groups)
}

/// The default alert rules of one role: hosts down for five minutes, unless in maintenance.
pub const DEFAULT_RULES_TEMPLATE: &str = r#"groups:
- name: fleetdb-{{role}}
  rules:
  - alert: HostDown
    expr: up{fleetdb_role="{{role}}"} == 0 unless on(instance) up{maintenance="true"}
    for: 5m
    labels:
      severity: page
      role: "{{role}}"
    annotations:
      summary: "{{role}} host {{ $labels.fleetdb_host }} is down"
"#;

/// Writes `contents` to `path` atomically (temporary file, then rename), only if it changed.
fn write_atomically(path: &Path, contents: &str) -> Result<bool, ExportError> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(contents) {
        return Ok(false);
    }
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents)
        .and_then(|_| std::fs::rename(&temporary, path))
        .map_err(|e| ExportError::Local(format!("cannot write {}: {e}", path.display())))?;
    Ok(true)
}

/// Settings of `fleetdb monitor`.
pub struct MonitorSettings {
    pub out: PathBuf,
    pub port: u16,
    pub maintenance: Maintenance,
    /// Alert rules template; `{{role}}` is replaced by each role.
    pub rules_template: String,
}

/// Writes `hosts.json` (file_sd) and `rules/<role>.yml`; returns whether anything changed.
pub fn write_outputs(settings: &MonitorSettings, hosts: &[Host]) -> Result<bool, ExportError> {
    std::fs::create_dir_all(settings.out.join("rules")).map_err(|e| {
        ExportError::Local(format!("cannot create {}: {e}", settings.out.display()))
    })?;
    let groups = target_groups(
        hosts,
        settings.port,
        settings.maintenance,
        LabelStyle::Plain,
    );
    let mut changed = write_atomically(
        &settings.out.join("hosts.json"),
        &serde_json::to_string_pretty(&groups).unwrap_or_default(),
    )?;
    let roles: BTreeSet<String> = hosts
        .iter()
        .filter_map(|h| h.spec.role.clone())
        .map(|r| identifier(&r))
        .collect();
    for role in &roles {
        let rules = settings.rules_template.replace("{{role}}", role);
        changed |= write_atomically(
            &settings.out.join("rules").join(format!("{role}.yml")),
            &rules,
        )?;
    }
    Ok(changed)
}

/// How long the monitor waits for more changes before rewriting its files.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// Watches Hosts and keeps the files current until the stream ends or `shutdown` completes.
pub async fn monitor(
    client: Client,
    settings: MonitorSettings,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ExportError> {
    let api: Api<Host> = Api::all(client);
    let mut events = watcher(api, watcher::Config::default()).boxed();
    let mut hosts: BTreeMap<String, Host> = BTreeMap::new();
    let mut initial: BTreeMap<String, Host> = BTreeMap::new();
    let mut ready = false;
    let mut dirty = false;
    tokio::pin!(shutdown);
    loop {
        let next = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            event = events.next() => Some(event),
            _ = tokio::time::sleep(DEBOUNCE), if dirty => None,
        };
        match next {
            None => {
                let list: Vec<Host> = hosts.values().cloned().collect();
                if write_outputs(&settings, &list)? {
                    tracing::info!(hosts = list.len(), out = %settings.out.display(), "rewrote Prometheus targets");
                }
                dirty = false;
            }
            Some(None) => return Ok(()),
            Some(Some(Err(error))) => tracing::warn!(%error, "host watch interrupted; resuming"),
            Some(Some(Ok(event))) => match event {
                watcher::Event::Init => initial.clear(),
                watcher::Event::InitApply(host) => {
                    initial.insert(host.name_any(), host);
                }
                watcher::Event::InitDone => {
                    hosts = std::mem::take(&mut initial);
                    ready = true;
                    dirty = true;
                }
                watcher::Event::Apply(host) => {
                    hosts.insert(host.name_any(), host);
                    dirty = ready;
                }
                watcher::Event::Delete(host) => {
                    hosts.remove(&host.name_any());
                    dirty = ready;
                }
            },
        }
    }
}
