//! The Ansible dynamic inventory: the fleet as Ansible's inventory-script JSON.
//!
//! `--list` answers every group and, under `_meta.hostvars`, every host's variables, so
//! Ansible makes no per-host calls; it comes from one paginated list of Hosts. Groups come from
//! labels (`role_web`, `provider_aws`, `region_us_east_1`, `team_infra`), from `spec.cluster`
//! (`cluster_x`) and from label selectors in a small config file (the `keyed_groups`/`groups`
//! idea of Ansible's constructed inventory). Hosts in maintenance, terminated, or not seen for
//! longer than a threshold are left out unless asked for.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fleetdb_fleet::{ADDRESS_PREFERENCE, Host, labels};
use kube::ResourceExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{ExportError, identifier};

/// A group made from the values of one label: `<prefix>_<value>`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct KeyedGroup {
    /// The label key, e.g. `fleetdb.io/role`.
    pub key: String,
    /// The group name prefix, e.g. `role`.
    pub prefix: String,
}

/// The inventory configuration (a YAML file; every field optional).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "snake_case", deny_unknown_fields)]
pub struct InventoryConfig {
    /// Groups by label value (default: role, provider, region, team).
    pub keyed_groups: Vec<KeyedGroup>,
    /// Groups by label selector: name → selector, e.g. `webprod: "fleetdb.io/role=web,env=prod"`.
    pub groups: BTreeMap<String, String>,
    /// Keep hosts with `spec.maintenance: true`.
    pub include_maintenance: bool,
    /// Keep hosts whose state is Terminated.
    pub include_terminated: bool,
    /// Leave out hosts not seen for longer than this (`24h`, `90m`; empty = never).
    pub stale_after: Option<String>,
    /// Annotations copied into host variables (`dcim.fleetdb.io/owner` → `dcim_fleetdb_io_owner`).
    pub hostvars_annotations: Vec<String>,
    /// Address types tried in order for `ansible_host`.
    pub address_preference: Vec<String>,
    /// `ansible_*` variables a Host record may set in `spec.ansible` besides
    /// [`SAFE_HOST_VARIABLES`]. Every other one is dropped (and reported): they change how
    /// Ansible connects or what it runs on the controller, and a record is written by others.
    pub allowed_host_variables: Vec<String>,
}

/// `ansible_*` variables a record may always set: where to log in, not how.
pub const SAFE_HOST_VARIABLES: [&str; 2] = ["ansible_port", "ansible_user"];

/// A variable left out of a host's variables, and why it matters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedVariable {
    pub host: String,
    pub variable: String,
}

/// The `--list` document, and the variables records asked for that were left out of it.
pub struct Inventory {
    pub document: Value,
    pub dropped: Vec<DroppedVariable>,
}

/// Whether a Host record may hand `name` to Ansible under `config`: variables of Ansible's
/// own (`ansible_*`: connection, interpreter, become, shell, plugins' options) only when
/// safe or allowed by name in the local configuration.
pub fn may_pass(name: &str, config: &InventoryConfig) -> bool {
    !name.to_ascii_lowercase().starts_with("ansible_")
        || SAFE_HOST_VARIABLES.contains(&name)
        || config
            .allowed_host_variables
            .iter()
            .any(|allowed| allowed == name)
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self {
            keyed_groups: [
                (labels::ROLE, "role"),
                (labels::PROVIDER, "provider"),
                (labels::REGION, "region"),
                (labels::TEAM, "team"),
            ]
            .into_iter()
            .map(|(key, prefix)| KeyedGroup {
                key: key.into(),
                prefix: prefix.into(),
            })
            .collect(),
            groups: BTreeMap::new(),
            include_maintenance: false,
            include_terminated: false,
            stale_after: Some("24h".into()),
            hostvars_annotations: Vec::new(),
            address_preference: ADDRESS_PREFERENCE.into_iter().map(str::to_owned).collect(),
            allowed_host_variables: Vec::new(),
        }
    }
}

impl InventoryConfig {
    /// Reads a YAML configuration file.
    pub fn read(path: &std::path::Path) -> Result<Self, ExportError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ExportError::Local(format!("cannot read {}: {e}", path.display())))?;
        serde_saphyr::from_str(&text).map_err(|e| {
            ExportError::Local(format!(
                "bad inventory configuration {}: {e}",
                path.display()
            ))
        })
    }
}

/// A valid Ansible group or variable name made from free text.
pub fn sanitize(text: &str) -> String {
    identifier(text)
}

/// Whether the host belongs in the inventory under `config`.
fn included(
    host: &Host,
    config: &InventoryConfig,
    stale_after: Option<Duration>,
    now: OffsetDateTime,
) -> bool {
    if host.is_decommissioning() {
        return false;
    }
    if !config.include_maintenance && host.in_maintenance() {
        return false;
    }
    if !config.include_terminated && host.is_terminated() {
        return false;
    }
    let last_seen = host.status.as_ref().and_then(|s| s.last_seen.as_deref());
    if let (Some(limit), Some(seen)) = (stale_after, last_seen)
        && let Ok(seen) = OffsetDateTime::parse(seen, &Rfc3339)
        && now - seen > limit
    {
        return false;
    }
    true
}

/// The variables Ansible gets for one host; the record's variables it may not pass are left
/// out and added to `dropped`.
pub fn hostvars(
    host: &Host,
    config: &InventoryConfig,
    dropped: &mut Vec<DroppedVariable>,
) -> Value {
    let mut vars = Map::new();
    if let Some(address) = host.preferred_address(&config.address_preference) {
        vars.insert("ansible_host".into(), json!(address.address));
    }
    for (name, value) in host.facts() {
        vars.insert(format!("fleetdb_{name}"), json!(value));
    }
    let status = host.status.clone().unwrap_or_default();
    if let Some(provider) = &status.provider {
        vars.insert("fleetdb_provider_id".into(), json!(provider.id));
    }
    if let Some(state) = status.state {
        vars.insert("fleetdb_state".into(), json!(format!("{state:?}")));
    }
    vars.insert(
        "fleetdb_maintenance".into(),
        json!(host.spec.maintenance.unwrap_or(false)),
    );
    vars.insert("fleetdb_labels".into(), json!(host.labels()));
    for key in &config.hostvars_annotations {
        if let Some(value) = host.annotations().get(key) {
            vars.insert(sanitize(key), json!(value));
        }
    }
    // The host's own Ansible variables come last, so a person's values win — those it may
    // pass.
    for (name, value) in host.spec.ansible.clone().unwrap_or_default() {
        if may_pass(&name, config) {
            vars.insert(name, value);
        } else {
            dropped.push(DroppedVariable {
                host: host.name_any(),
                variable: name,
            });
        }
    }
    let mut vars = Value::Object(vars);
    mark_unsafe(&mut vars, &host.name_any(), "", dropped);
    vars
}

/// The key Ansible's JSON decoder reads as "this string is data, never a template".
pub const UNSAFE_KEY: &str = "__ansible_unsafe";

/// Marks every string of a record's variables that could be a template as unsafe, so that
/// Ansible never renders a template a record carries (`{{ lookup('pipe', ...) }}` would run
/// on the controller: Ansible templates inventory variables when it uses them). A template
/// needs a `{` (`{{`, `{%`, `{#` open every Jinja construct); strings without one are passed
/// as they are, which keeps the inventory small and readable. Keys Ansible's decoder gives a
/// meaning (`__ansible_unsafe`, `__ansible_vault`) are not the record's to use, and keys that
/// could be templates cannot be marked (only values can); both are dropped.
fn mark_unsafe(value: &mut Value, host: &str, path: &str, dropped: &mut Vec<DroppedVariable>) {
    match value {
        Value::String(text) if text.contains('{') => {
            *value = json!({UNSAFE_KEY: std::mem::take(text)});
        }
        Value::String(_) => {}
        Value::Array(items) => {
            for item in items {
                mark_unsafe(item, host, path, dropped);
            }
        }
        Value::Object(fields) => {
            fields.retain(|key, _| {
                let reserved = key.starts_with("__ansible") || key.contains('{');
                if reserved {
                    dropped.push(DroppedVariable {
                        host: host.to_owned(),
                        variable: format!("{path}{key}"),
                    });
                }
                !reserved
            });
            for (key, field) in fields.iter_mut() {
                match field {
                    Value::String(_) => mark_unsafe(field, host, path, dropped),
                    // Only containers need their path (to name what they drop).
                    Value::Array(_) | Value::Object(_) => {
                        mark_unsafe(field, host, &format!("{path}{key}."), dropped)
                    }
                    _ => {}
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Builds the `--list` document.
pub fn build(
    hosts: &[Host],
    config: &InventoryConfig,
    now: OffsetDateTime,
) -> Result<Inventory, ExportError> {
    let mut dropped = Vec::new();
    let stale_after = match config.stale_after.as_deref().filter(|s| !s.is_empty()) {
        Some(text) => Some(fleetdb_fleet::parse_interval(text).ok_or_else(|| {
            ExportError::Local(format!(
                "stale_after {text:?} is not a duration like 24h or 90m"
            ))
        })?),
        None => None,
    };
    let selectors = config
        .groups
        .iter()
        .map(|(name, selector)| {
            fleetdb_machinery::selectors::LabelSelector::parse(selector)
                .map(|s| (sanitize(name), s))
                .map_err(|e| ExportError::Local(format!("group {name}: {}", e.message)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut hostvars_map = Map::new();
    let mut ungrouped = BTreeSet::new();
    for host in hosts
        .iter()
        .filter(|h| included(h, config, stale_after, now))
    {
        let name = host.name_any();
        let mut member_of = Vec::new();
        for keyed in &config.keyed_groups {
            if let Some(value) = host.labels().get(&keyed.key) {
                member_of.push(sanitize(&format!("{}_{value}", keyed.prefix)));
            }
        }
        if let Some(cluster) = &host.spec.cluster {
            member_of.push(sanitize(&format!("cluster_{cluster}")));
        }
        for (group, selector) in &selectors {
            if selector.matches(host.labels()) {
                member_of.push(group.clone());
            }
        }
        if member_of.is_empty() {
            ungrouped.insert(name.clone());
        }
        for group in member_of {
            groups.entry(group).or_default().insert(name.clone());
        }
        hostvars_map.insert(name, hostvars(host, config, &mut dropped));
    }
    let mut document = Map::new();
    let mut children: Vec<String> = groups.keys().cloned().collect();
    children.push("ungrouped".into());
    document.insert("all".into(), json!({"children": children}));
    for (group, members) in groups {
        document.insert(group, json!({"hosts": members}));
    }
    document.insert("ungrouped".into(), json!({"hosts": ungrouped}));
    document.insert("_meta".into(), json!({"hostvars": hostvars_map}));
    Ok(Inventory {
        document: Value::Object(document),
        dropped,
    })
}

/// A cached `--list` document, so that Ansible runs in quick succession ask the API once:
/// one file per identity (kubeconfig, configuration) under `$XDG_CACHE_HOME/fleetdb` (else
/// `~/.cache/fleetdb`), reused while younger than the TTL, readable by its owner only (host
/// variables may be sensitive).
pub struct InventoryCache {
    path: std::path::PathBuf,
    ttl: Duration,
}

impl InventoryCache {
    /// The cache of the inventory that `identity` describes (anything that tells one
    /// kubeconfig and configuration from another), kept for `ttl`.
    pub fn new(identity: &str, ttl: Duration) -> Self {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|home| std::path::PathBuf::from(home).join(".cache"))
            })
            .unwrap_or_else(std::env::temp_dir);
        // FNV-1a: a stable file name, not a secret.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in identity.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        Self {
            path: base
                .join("fleetdb")
                .join(format!("inventory-{hash:016x}.json")),
            ttl,
        }
    }

    /// The cached document, if there is one younger than the TTL.
    pub fn read(&self) -> Option<Value> {
        let age = std::fs::metadata(&self.path)
            .ok()?
            .modified()
            .ok()?
            .elapsed()
            .ok()?;
        if age >= self.ttl {
            return None;
        }
        serde_json::from_str(&std::fs::read_to_string(&self.path).ok()?).ok()
    }

    /// Stores a document (atomically; a failure only means the next run asks the API).
    pub fn write(&self, document: &Value) {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let temporary = self.path.with_extension("tmp");
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| file.write_all(document.to_string().as_bytes()));
        if written.is_ok() {
            let _ = std::fs::rename(&temporary, &self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetdb_fleet::HostSpec;

    #[test]
    fn variables_that_change_how_ansible_connects_or_runs_are_dropped() {
        let mut ansible = BTreeMap::new();
        for name in [
            "ansible_connection",
            "ansible_ssh_common_args",
            "ansible_ssh_extra_args",
            "ansible_python_interpreter",
            "ansible_become_exe",
            "ansible_shell_executable",
            "ANSIBLE_SSH_ARGS",
            "ansible_psrp_proxy",
            "ansible_port",
            "ansible_user",
            "ntp_server",
        ] {
            ansible.insert(name.to_owned(), json!("x"));
        }
        let host = Host::new(
            "web-1",
            HostSpec {
                ansible: Some(ansible),
                ..HostSpec::default()
            },
        );
        let mut config = InventoryConfig {
            stale_after: None,
            ..InventoryConfig::default()
        };
        let built = build(
            std::slice::from_ref(&host),
            &config,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        let vars = &built.document["_meta"]["hostvars"]["web-1"];
        for kept in ["ansible_port", "ansible_user", "ntp_server"] {
            assert_eq!(vars[kept], "x", "{kept}");
        }
        let dropped: Vec<&str> = built.dropped.iter().map(|d| d.variable.as_str()).collect();
        assert_eq!(dropped.len(), 8, "{dropped:?}");
        for name in &dropped {
            assert!(vars.get(*name).is_none(), "{name} reached Ansible");
        }
        // The local configuration may allow one by name.
        config.allowed_host_variables = vec!["ansible_python_interpreter".into()];
        let built = build(&[host], &config, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(
            built.document["_meta"]["hostvars"]["web-1"]["ansible_python_interpreter"],
            "x"
        );
        assert_eq!(built.dropped.len(), 7);
    }

    #[test]
    fn every_string_from_a_record_that_could_be_a_template_is_marked_unsafe() {
        let host: Host = serde_json::from_value(json!({
            "apiVersion": "fleetdb.io/v1alpha1",
            "kind": "Host",
            "metadata": {
                "name": "web-1",
                "labels": {"fleetdb.io/role": "web"},
                "annotations": {"owner": "{{ lookup('pipe', 'id') }}"},
            },
            "spec": {"ansible": {
                "packages": ["{{ a }}", 3, "nginx"],
                "tuning": {"x": "{% b %}", "y": "{# c #}", "__ansible_vault": "$ANSIBLE_VAULT;1.1", "n": 2,
                    "{{ k }}": 1},
                "flag": true,
            }},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]},
        }))
        .unwrap();
        let config = InventoryConfig {
            stale_after: None,
            hostvars_annotations: vec!["owner".into()],
            ..InventoryConfig::default()
        };
        let built = build(&[host], &config, OffsetDateTime::now_utc()).unwrap();
        let vars = &built.document["_meta"]["hostvars"]["web-1"];
        // Strings that cannot open a template are passed as they are.
        assert_eq!(vars["ansible_host"], "10.0.0.1");
        assert_eq!(
            vars["owner"],
            json!({UNSAFE_KEY: "{{ lookup('pipe', 'id') }}"})
        );
        assert_eq!(
            vars["packages"],
            json!([{UNSAFE_KEY: "{{ a }}"}, 3, "nginx"])
        );
        assert_eq!(
            vars["tuning"],
            json!({"x": {UNSAFE_KEY: "{% b %}"}, "y": {UNSAFE_KEY: "{# c #}"}, "n": 2})
        );
        assert_eq!(vars["flag"], true);
        assert_eq!(vars["fleetdb_labels"]["fleetdb.io/role"], "web");
        assert_eq!(
            built.dropped,
            [
                DroppedVariable {
                    host: "web-1".into(),
                    variable: "tuning.__ansible_vault".into()
                },
                DroppedVariable {
                    host: "web-1".into(),
                    variable: "tuning.{{ k }}".into()
                }
            ]
        );
    }
}
