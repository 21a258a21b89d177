//! Realistic Host objects for the benchmarks: about 2 KiB of JSON with 14 labels, the shape a
//! fetcher and an operator leave behind (topology and ownership labels, a few annotations,
//! Ansible variables in the spec).

use serde_json::{Value, json};

/// Racks in the generated fleet: the `fleetdb.io/rack` label selects 1% of the hosts.
pub const RACKS: usize = 100;

/// The label selector (URL-encoded) that the benchmarks use for "1% of the fleet".
pub fn one_percent_selector() -> String {
    // fleetdb.io/rack=r042
    "fleetdb.io%2Frack%3Dr042".to_owned()
}

/// The name of host `i` of a run whose names start with `prefix`.
pub fn name(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:07}")
}

/// Host `i` as a client creates it (no status: that is written through the subresource).
pub fn host(prefix: &str, i: usize) -> Value {
    let region = ["pdx", "ams", "sin"][i % 3];
    let zone = format!("{region}-{}", ["a", "b", "c"][i / 3 % 3]);
    let role = ["web", "db", "log", "cache"][i % 4];
    let team = ["infra", "data", "edge", "payments", "search"][i % 5];
    let rack = format!("r{:03}", i % RACKS);
    let cluster = format!("{role}-{region}-{}", i % 7);
    let ip = format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256);
    json!({
        "apiVersion": "fleetdb.io/v1alpha1",
        "kind": "Host",
        "metadata": {
            "name": name(prefix, i),
            "labels": {
                "fleetdb.io/provider": (["file", "aws"][i % 2]),
                "fleetdb.io/source": format!("dc-{region}"),
                "fleetdb.io/region": region,
                "topology.kubernetes.io/zone": zone,
                "fleetdb.io/datacenter": format!("{region}1"),
                "fleetdb.io/rack": rack,
                "fleetdb.io/role": role,
                "fleetdb.io/team": team,
                "fleetdb.io/cluster": cluster,
                "fleetdb.io/env": (["prod", "prod", "prod", "staging"][i % 4]),
                "fleetdb.io/os": (["debian-12", "ubuntu-24.04"][i % 2]),
                "fleetdb.io/hardware-model": (["r650", "r750", "m5.2xlarge"][i % 3]),
                "fleetdb.io/cpu-vendor": (["intel", "amd"][i % 2]),
                "app.kubernetes.io/managed-by": "fleetdb-fetch",
            },
            "annotations": {
                "dcim.fleetdb.io/owner": format!("person{}@example.com", i % 97),
                "dcim.fleetdb.io/asset-tag": format!("AT-{:08}", i * 7919 % 100_000_000),
                "dcim.fleetdb.io/purchase-order": format!("PO-2025-{:05}", i % 3000),
                "fleetdb.io/notes": "Provisioned by the datacenter team; BMC reachable over the management VLAN.",
                "fleetdb.io/last-change": format!("CHG-{:06}: firmware update to 2.19.1 and BIOS settings refresh", i % 50_000),
            },
        },
        "spec": {
            "role": role,
            "cluster": cluster,
            "maintenance": false,
            "ansible": {
                "ansible_host": ip,
                "ansible_user": "deploy",
                "ansible_python_interpreter": "/usr/bin/python3",
                "ntp_servers": ["10.0.0.1", "10.0.0.2"],
                "dns_servers": ["10.0.0.53", "10.0.1.53"],
                "bmc_address": format!("10.250.{}.{}", i / 256 % 256, i % 256),
                "kernel_params": ["transparent_hugepage=never", "intel_iommu=on", "mitigations=auto"],
                "sysctl": {"net.core.somaxconn": 4096, "vm.swappiness": 10, "fs.file-max": 2097152},
                "node_exporter_port": 9100,
                "backup_window": "02:00-04:00",
                "patch_group": format!("group-{}", i % 12),
                "serial_console": "ttyS1,115200",
                "mounts": [
                    {"path": "/", "device": "/dev/md0", "fstype": "ext4", "options": "noatime"},
                    {"path": "/var/lib/data", "device": "/dev/nvme0n1p1", "fstype": "xfs", "options": "noatime,nodiratime"},
                ],
                "admin_users": ["alice", "bob", "carol", "dave"],
                "firewall_allow": ["10.0.0.0/8:22", "10.0.0.0/8:9100", "192.168.0.0/16:443"],
                "monitoring": {"scrape_interval": "30s", "exporters": ["node", "smartctl", "ipmi"]},
            },
        },
    })
}

/// The JSON bytes of [`host`].
pub fn host_bytes(prefix: &str, i: usize) -> bytes::Bytes {
    bytes::Bytes::from(serde_json::to_vec(&host(prefix, i)).expect("JSON values serialize"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_about_two_kib_with_ten_to_twenty_labels() {
        for i in [0, 1, 999_999] {
            let size = host_bytes("host-", i).len();
            assert!((1700..=2400).contains(&size), "host {i} is {size} bytes");
            let labels = host("host-", i)["metadata"]["labels"]
                .as_object()
                .unwrap()
                .len();
            assert!((10..=20).contains(&labels), "{labels} labels");
        }
    }

    #[test]
    fn the_rack_selector_picks_one_host_in_a_hundred() {
        let picked = (0..10_000)
            .filter(|&i| host("h", i)["metadata"]["labels"]["fleetdb.io/rack"] == "r042")
            .count();
        assert_eq!(picked, 10_000 / RACKS);
    }
}
