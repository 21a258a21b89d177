//! The datacenter file source: a CSV or YAML export of the shape a DCIM tool or a spreadsheet
//! produces. One row per host; bad rows are reported with their line numbers and skipped,
//! good rows still sync.
//!
//! Known columns (case-insensitive): `hostname` (required), `serial`, `rack`, `datacenter`,
//! `role`, `team`, `ips` (separated by spaces, `;` or `|`), `cpus`, `memory`, `model`, `disks`
//! (e.g. `960Gi ssd; 4Ti hdd`), `os`, `state` (`active`/`running`, `stopped`/`offline`,
//! `decommissioned`/`retired`). Any other column becomes an annotation `dcim.fleetdb.io/<column>`.

use std::collections::BTreeMap;

use fleetdb_fleet::{Disk, Hardware, HostAddress, HostState, HostStatus, ProviderRef, labels};

use crate::{FetchError, Observation, ObservedHost, RowProblem, label_value};

/// Annotation prefix for columns the model has no field for.
pub const EXTRA_COLUMN_PREFIX: &str = "dcim.fleetdb.io/";

/// Largest export a file source may be.
pub const MAX_EXPORT_BYTES: u64 = 64 * 1024 * 1024;

/// Reads an export the fetcher is allowed to: a regular file (no device, FIFO or socket) of
/// at most [`MAX_EXPORT_BYTES`], under one of `allowed` once symbolic links are resolved.
fn read_allowed(path: &str, allowed: &[std::path::PathBuf]) -> Result<String, FetchError> {
    use std::io::Read;
    if allowed.is_empty() {
        return Err(FetchError::Source(format!(
            "this fetcher may not read files: start it with --allow-dir DIR to let it read {path}"
        )));
    }
    let resolved = std::fs::canonicalize(path)
        .map_err(|e| FetchError::Source(format!("cannot read {path}: {e}")))?;
    let inside = allowed
        .iter()
        .any(|dir| std::fs::canonicalize(dir).is_ok_and(|dir| resolved.starts_with(dir)));
    if !inside {
        let dirs: Vec<String> = allowed.iter().map(|d| d.display().to_string()).collect();
        return Err(FetchError::Source(format!(
            "{path} is not under a directory this fetcher may read (--allow-dir {})",
            dirs.join(", ")
        )));
    }
    let metadata = std::fs::metadata(&resolved)
        .map_err(|e| FetchError::Source(format!("cannot read {path}: {e}")))?;
    if !metadata.is_file() {
        return Err(FetchError::Source(format!(
            "{path} is not a regular file (devices, FIFOs and directories are refused)"
        )));
    }
    if metadata.len() > MAX_EXPORT_BYTES {
        return Err(FetchError::Source(format!(
            "{path} is {} bytes, more than the limit of {MAX_EXPORT_BYTES}",
            metadata.len()
        )));
    }
    let mut text = String::new();
    std::fs::File::open(&resolved)
        .and_then(|file| file.take(MAX_EXPORT_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| FetchError::Source(format!("cannot read {path}: {e}")))?;
    if text.len() as u64 > MAX_EXPORT_BYTES {
        return Err(FetchError::Source(format!(
            "{path} grew past the limit of {MAX_EXPORT_BYTES} bytes while it was read"
        )));
    }
    Ok(text)
}

/// Reads and parses an export, if the fetcher may read it (see [`read_allowed`]). `format`
/// is `csv` or `yaml`; `None` picks by extension.
pub fn read(
    path: &str,
    allowed: &[std::path::PathBuf],
    format: Option<&str>,
    datacenter: Option<&str>,
    source: &str,
) -> Result<Observation, FetchError> {
    let text = read_allowed(path, allowed)?;
    let format = match format {
        Some(format) => format.to_ascii_lowercase(),
        None if path.ends_with(".yaml") || path.ends_with(".yml") => "yaml".into(),
        None => "csv".into(),
    };
    let rows = match format.as_str() {
        "csv" => csv_rows(&text)?,
        "yaml" | "yml" => yaml_rows(&text)?,
        other => {
            return Err(FetchError::Source(format!(
                "unknown file format {other:?}: use csv or yaml"
            )));
        }
    };
    let mut observation = Observation::default();
    for row in rows {
        match row {
            Ok((line, fields)) => match host_of(&fields, datacenter, source) {
                Ok(mut host) => {
                    host.line = line;
                    observation.hosts.push(host);
                }
                Err(message) => observation.problems.push(RowProblem { line, message }),
            },
            Err(problem) => observation.problems.push(problem),
        }
    }
    // The same host twice: keep the first, report the others.
    let mut seen = BTreeMap::new();
    let mut unique = Vec::new();
    for (index, host) in observation.hosts.into_iter().enumerate() {
        if seen.insert(host.name.clone(), index).is_some() {
            observation.problems.push(RowProblem {
                line: host.line,
                message: format!(
                    "host {:?} appears more than once; the first row wins",
                    host.name
                ),
            });
        } else {
            unique.push(host);
        }
    }
    observation.hosts = unique;
    observation.problems.sort_by_key(|p| p.line);
    Ok(observation)
}

type Row = Result<(usize, BTreeMap<String, String>), RowProblem>;

fn csv_rows(text: &str) -> Result<Vec<Row>, FetchError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| FetchError::Source(format!("the CSV header cannot be read: {e}")))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    if !headers.iter().any(|h| h == "hostname") {
        return Err(FetchError::Source("the CSV has no hostname column".into()));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        match record {
            Ok(record) => {
                let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
                let fields = headers
                    .iter()
                    .cloned()
                    .zip(record.iter().map(str::to_owned))
                    .filter(|(_, v)| !v.is_empty())
                    .collect();
                rows.push(Ok((line, fields)));
            }
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                let message = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => {
                        format!("has {len} fields, the header has {expected_len}")
                    }
                    _ => e.to_string(),
                };
                rows.push(Err(RowProblem { line, message }));
            }
        }
    }
    Ok(rows)
}

fn yaml_rows(text: &str) -> Result<Vec<Row>, FetchError> {
    let value: serde_json::Value = serde_saphyr::from_str(text)
        .map_err(|e| FetchError::Source(format!("the YAML export cannot be parsed: {e}")))?;
    let entries = match &value {
        serde_json::Value::Array(entries) => entries.clone(),
        serde_json::Value::Object(map) => match map.get("hosts") {
            Some(serde_json::Value::Array(entries)) => entries.clone(),
            _ => {
                return Err(FetchError::Source(
                    "the YAML export must be a list of hosts, or have a `hosts:` list".into(),
                ));
            }
        },
        _ => {
            return Err(FetchError::Source(
                "the YAML export must be a list of hosts".into(),
            ));
        }
    };
    Ok(entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            // YAML entries are reported by position (1-based), like rows.
            let line = index + 1;
            match entry.as_object() {
                Some(map) => Ok((
                    line,
                    map.iter()
                        .filter_map(|(k, v)| {
                            let text = match v {
                                serde_json::Value::String(s) => s.clone(),
                                serde_json::Value::Null => return None,
                                serde_json::Value::Array(items) => items
                                    .iter()
                                    .map(|i| {
                                        i.as_str()
                                            .map(str::to_owned)
                                            .unwrap_or_else(|| i.to_string())
                                    })
                                    .collect::<Vec<_>>()
                                    .join(";"),
                                other => other.to_string(),
                            };
                            Some((k.to_ascii_lowercase(), text))
                        })
                        .collect(),
                )),
                None => Err(RowProblem {
                    line,
                    message: "entry is not a mapping".into(),
                }),
            }
        })
        .collect())
}

/// A valid Kubernetes object name made from a hostname, or why there is none.
fn host_name(hostname: &str) -> Result<String, String> {
    let name = hostname.trim().to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        });
    if valid {
        Ok(name)
    } else {
        Err(format!(
            "hostname {hostname:?} is not a valid host name (letters, digits, '-' and '.', starting and ending with a letter or digit)"
        ))
    }
}

fn parse_state(text: &str) -> Result<HostState, String> {
    match text.to_ascii_lowercase().as_str() {
        "active" | "running" | "in-service" | "production" => Ok(HostState::Running),
        "stopped" | "offline" | "off" | "maintenance" => Ok(HostState::Stopped),
        "decommissioned" | "retired" | "terminated" => Ok(HostState::Terminated),
        "unknown" => Ok(HostState::Unknown),
        other => Err(format!(
            "state {other:?} is not one of active, stopped, decommissioned, unknown"
        )),
    }
}

fn host_of(
    fields: &BTreeMap<String, String>,
    datacenter: Option<&str>,
    source: &str,
) -> Result<ObservedHost, String> {
    let hostname = fields.get("hostname").ok_or("hostname is empty")?;
    let name = host_name(hostname)?;
    let datacenter = fields
        .get("datacenter")
        .map(String::as_str)
        .or(datacenter)
        .map(str::to_owned);
    let cpus = match fields.get("cpus") {
        Some(text) => Some(
            text.parse::<u32>()
                .map_err(|_| format!("cpus {text:?} is not a whole number"))?,
        ),
        None => None,
    };
    let state = match fields.get("state") {
        Some(text) => parse_state(text)?,
        None => HostState::Running,
    };
    let addresses = fields
        .get("ips")
        .map(|ips| {
            ips.split([' ', ';', '|', ','])
                .filter(|ip| !ip.is_empty())
                .map(|ip| {
                    ip.parse::<std::net::IpAddr>()
                        .map(|_| HostAddress {
                            type_: "InternalIP".into(),
                            address: ip.to_owned(),
                        })
                        .map_err(|_| format!("ips contains {ip:?}, which is not an IP address"))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    let disks = fields
        .get("disks")
        .map(|disks| {
            disks
                .split([';', '|'])
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(|d| {
                    let mut parts = d.split_whitespace();
                    Disk {
                        name: None,
                        size: parts.next().map(str::to_owned),
                        type_: parts.next().map(str::to_owned),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let hardware = (cpus.is_some()
        || fields.contains_key("memory")
        || fields.contains_key("model")
        || fields.contains_key("disks"))
    .then(|| Hardware {
        cpus,
        memory: fields.get("memory").cloned(),
        model: fields.get("model").cloned(),
        disks,
    });
    let mut host_labels = BTreeMap::from([
        (labels::PROVIDER.to_owned(), "file".to_owned()),
        (labels::SOURCE.to_owned(), source.to_owned()),
    ]);
    for (label, column) in [
        (labels::REGION, datacenter.as_deref()),
        (labels::ROLE, fields.get("role").map(String::as_str)),
        (labels::TEAM, fields.get("team").map(String::as_str)),
    ] {
        if let Some(value) = column.and_then(label_value) {
            host_labels.insert(label.to_owned(), value);
        }
    }
    const KNOWN: [&str; 13] = [
        "hostname",
        "serial",
        "rack",
        "datacenter",
        "role",
        "team",
        "ips",
        "cpus",
        "memory",
        "model",
        "disks",
        "os",
        "state",
    ];
    let annotations = fields
        .iter()
        .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
        .filter_map(|(k, v)| {
            label_value(k).map(|key| (format!("{EXTRA_COLUMN_PREFIX}{key}"), v.clone()))
        })
        .collect();
    Ok(ObservedHost {
        line: 0,
        name: name.clone(),
        role: fields.get("role").cloned(),
        labels: host_labels,
        annotations,
        status: HostStatus {
            provider: Some(ProviderRef {
                type_: "file".into(),
                account: Some(source.to_owned()),
                id: fields.get("serial").cloned().unwrap_or(name),
            }),
            region: datacenter.clone(),
            datacenter,
            rack: fields.get("rack").cloned(),
            addresses,
            hardware,
            os: fields.get("os").cloned(),
            state: Some(state),
            ..HostStatus::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(contents: &str, name: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        (dir, path.to_str().unwrap().to_owned())
    }

    /// The directory of a test file, as a fetcher's `--allow-dir`.
    fn allow(dir: &tempfile::TempDir) -> Vec<std::path::PathBuf> {
        vec![dir.path().to_owned()]
    }

    #[test]
    fn only_regular_files_under_allowed_directories_are_read() {
        let (dir, path) = write("hostname\na-1\n", "ok.csv");
        let elsewhere = tempfile::tempdir().unwrap();
        let refused = |path: &str, allowed: &[std::path::PathBuf]| {
            read(path, allowed, None, None, "s")
                .err()
                .unwrap()
                .to_string()
        };
        assert!(refused(&path, &[]).contains("--allow-dir"));
        assert!(refused(&path, &[elsewhere.path().to_owned()]).contains("not under a directory"));
        assert!(refused("/etc/shadow", &allow(&dir)).contains("shadow"));
        // A symbolic link inside an allowed directory to a file outside it is refused.
        let secret = elsewhere.path().join("secret.csv");
        std::fs::write(&secret, "hostname\nx\n").unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        assert!(refused(link.to_str().unwrap(), &allow(&dir)).contains("not under a directory"));
        // Devices and FIFOs are refused even where allowed.
        assert!(
            refused("/dev/zero", &[std::path::PathBuf::from("/dev")])
                .contains("not a regular file")
        );
        assert_eq!(
            read(&path, &allow(&dir), None, None, "s")
                .unwrap()
                .hosts
                .len(),
            1
        );
    }

    #[test]
    fn csv_rows_become_hosts_and_bad_rows_are_reported_by_line() {
        let csv = "hostname,serial,rack,datacenter,role,team,ips,cpus,memory,disks,os,owner\n\
                   web-01,SN1,r1,pdx,web,infra,10.0.0.1;10.0.1.1,16,64Gi,960Gi ssd;4Ti hdd,debian-12,alice\n\
                   BAD_HOST!,SN2,r1,pdx,web,infra,10.0.0.2,16,64Gi,,debian-12,bob\n\
                   db-01,SN3,r2,pdx,db,data,10.0.0.3,many,128Gi,,debian-12,carol\n\
                   short-row,SN4\n\
                   ,SN5,r1,pdx,web,infra,10.0.0.5,8,32Gi,,debian-12,dan\n\
                   db-02,SN6,r2,pdx,db,data,10.0.0.6,32,128Gi,,rocky-9,erin\n";
        let (_dir, path) = write(csv, "pdx.csv");
        let observed = read(&path, &allow(&_dir), None, None, "pdx-dc").unwrap();
        let names: Vec<&str> = observed.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["web-01", "db-02"]);
        let lines: Vec<usize> = observed.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [3, 4, 5, 6], "{:?}", observed.problems);
        assert!(
            observed.problems[0]
                .message
                .contains("not a valid host name")
        );
        assert!(observed.problems[1].message.contains("cpus"));
        assert!(observed.problems[2].message.contains("fields"));
        let web = &observed.hosts[0];
        assert_eq!(web.labels[labels::ROLE], "web");
        assert_eq!(web.labels[labels::REGION], "pdx");
        assert_eq!(web.annotations["dcim.fleetdb.io/owner"], "alice");
        assert_eq!(web.status.addresses.len(), 2);
        let hardware = web.status.hardware.as_ref().unwrap();
        assert_eq!((hardware.cpus, hardware.disks.len()), (Some(16), 2));
        assert_eq!(web.status.provider.as_ref().unwrap().id, "SN1");
    }

    #[test]
    fn yaml_exports_work_too() {
        let yaml = "hosts:\n- hostname: web-01\n  datacenter: ams\n  ips: [10.0.0.1]\n  cpus: 8\n- hostname: Bad Name\n";
        let (_dir, path) = write(yaml, "ams.yaml");
        let observed = read(&path, &allow(&_dir), None, None, "ams").unwrap();
        assert_eq!(observed.hosts.len(), 1);
        assert_eq!(
            observed.hosts[0].status.hardware.as_ref().unwrap().cpus,
            Some(8)
        );
        assert_eq!(observed.problems.len(), 1);
        assert_eq!(observed.problems[0].line, 2);
    }

    #[test]
    fn duplicates_keep_the_first_row() {
        let (_dir, path) = write("hostname,rack\na-1,r1\na-1,r2\n", "dup.csv");
        let observed = read(&path, &allow(&_dir), None, Some("lab"), "lab").unwrap();
        assert_eq!(observed.hosts.len(), 1);
        assert_eq!(observed.hosts[0].status.rack.as_deref(), Some("r1"));
        assert_eq!(observed.hosts[0].status.datacenter.as_deref(), Some("lab"));
        assert!(observed.problems[0].message.contains("more than once"));
    }
}
