//! The facts an agent reports about its machine, read with `sysinfo` (no hand parsing of
//! `/proc`): CPUs, memory, mounted disks, the OS and kernel, addresses, boot time.

use fleetdb_fleet::{AgentReport, DiskReport, HostAddress, OsReport};

/// Most disks and addresses reported (a machine with thousands of mounts or interfaces
/// reports the first ones).
pub const MAX_REPORTED_ITEMS: usize = 64;

fn rfc3339(unix: i64) -> Option<String> {
    crate::rfc3339(time::OffsetDateTime::from_unix_timestamp(unix).ok()?)
}

/// What this machine looks like now.
pub fn collect() -> AgentReport {
    // What cannot be read is left out of the report rather than failing it.
    let system = sysinfo::System::new().ok().map(|mut system| {
        system.refresh_memory();
        system.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
        system
    });
    let disks = sysinfo::Disks::new_with_refreshed_list().ok();
    let networks = sysinfo::Networks::new_with_refreshed_list().ok();
    let mut disk_reports: Vec<DiskReport> = disks
        .iter()
        .flat_map(|disks| disks.iter())
        .map(|disk| DiskReport {
            mount_point: disk.mount_point().display().to_string(),
            device: Some(disk.name().to_string_lossy().into_owned()).filter(|d| !d.is_empty()),
            file_system: Some(disk.file_system().to_string_lossy().into_owned())
                .filter(|f| !f.is_empty()),
            size_bytes: Some(disk.total_space()),
        })
        .take(MAX_REPORTED_ITEMS)
        .collect();
    disk_reports.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    let mut addresses: Vec<HostAddress> = networks
        .iter()
        .flat_map(|networks| networks.iter())
        .filter(|(name, _)| name.as_os_str() != "lo")
        .flat_map(|(_, data)| data.ip_networks().iter().map(|n| n.addr))
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .filter(|ip| !matches!(ip, std::net::IpAddr::V6(v6) if v6.is_unicast_link_local()))
        .map(|ip| HostAddress {
            type_: "InternalIP".into(),
            address: ip.to_string(),
        })
        .take(MAX_REPORTED_ITEMS)
        .collect();
    addresses.sort_by(|a, b| a.address.cmp(&b.address));
    addresses.dedup();
    let cpus = system
        .as_ref()
        .and_then(|s| u32::try_from(s.cpus().len()).ok())
        .filter(|n| *n > 0);
    AgentReport {
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        hostname: sysinfo::System::host_name().ok(),
        os: Some(OsReport {
            name: sysinfo::System::name().ok(),
            version: sysinfo::System::os_version().ok(),
            kernel: sysinfo::System::kernel_version().ok(),
        }),
        cpus,
        memory_bytes: system.map(|s| s.total_memory()).filter(|m| *m > 0),
        disks: disk_reports,
        addresses,
        boot_time: sysinfo::System::boot_time()
            .ok()
            .and_then(|t| i64::try_from(t).ok())
            .and_then(rfc3339),
        ..AgentReport::default()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_machine_reports_what_it_has() {
        let report = super::collect();
        let available = std::thread::available_parallelism().unwrap().get() as u32;
        assert!(
            report.cpus.unwrap() >= available,
            "{:?} CPUs reported, {available} available",
            report.cpus
        );
        assert!(report.memory_bytes.unwrap() > 64 * 1024 * 1024);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(report.os.unwrap().kernel.unwrap(), kernel.trim());
        assert!(report.boot_time.unwrap().starts_with("20"));
        assert!(
            report.disks.iter().any(|d| d.mount_point == "/"),
            "{:?}",
            report.disks
        );
    }
}
