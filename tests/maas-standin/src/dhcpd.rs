//! DHCP as the rack serves it: rackd writes `dhcpd.conf` (one `shared-network vlan-<id>` per
//! VLAN it serves, with a failover peer when the VLAN has a secondary rack) and, in the deb
//! packaging, starts or stops `maas-dhcpd`; `maas-standin dhcpd` is the process that unit runs.
//! No DHCP is actually served.

use crate::paths::Flavor;
use crate::services;
use crate::util;
use serde_json::Value;
use std::net::Ipv4Addr;

/// The deb unit that runs dhcpd.
pub const DEB_UNIT: &str = "maas-dhcpd.service";

fn netmask(len: u32) -> Ipv4Addr {
    Ipv4Addr::from(if len == 0 {
        0
    } else {
        u32::MAX << (32 - len.min(32))
    })
}

/// The dhcpd.conf for the roles the region sent, or `None` when this rack serves no VLAN.
pub fn render(roles: &Value) -> Option<String> {
    let serving: Vec<&Value> = roles
        .as_array()?
        .iter()
        .filter(|r| r["dhcp_on"] == true)
        .collect();
    if serving.is_empty() {
        return None;
    }
    let mut out = String::from("# MAAS stand-in: written by rackd; no DHCP is actually served.\n");
    for r in serving {
        let id = r["vlan_id"].as_i64().unwrap_or(0);
        let peer = r["peer"].as_str();
        if let Some(peer) = peer {
            out.push_str(&format!(
                "failover peer \"failover-vlan-{id}\" {{\n    {};\n    peer address {peer};\n    split 255;\n}}\n",
                r["role"].as_str().unwrap_or("primary")
            ));
        }
        out.push_str(&format!("shared-network vlan-{id} {{\n"));
        for s in r["subnets"].as_array().into_iter().flatten() {
            let cidr = s["cidr"].as_str().unwrap_or("");
            let Some((net, len)) = cidr.split_once('/') else {
                continue;
            };
            let mask = netmask(len.parse().unwrap_or(32));
            out.push_str(&format!("    subnet {net} netmask {mask} {{\n"));
            for range in s["dynamic_ranges"].as_array().into_iter().flatten() {
                let (a, b) = (
                    range[0].as_str().unwrap_or(""),
                    range[1].as_str().unwrap_or(""),
                );
                out.push_str("        pool {\n");
                if peer.is_some() {
                    out.push_str(&format!(
                        "            failover peer \"failover-vlan-{id}\";\n"
                    ));
                }
                out.push_str(&format!("            range {a} {b};\n        }}\n"));
            }
            out.push_str("    }\n");
        }
        out.push_str("}\n");
    }
    Some(out)
}

/// Brings the files and (deb) the dhcpd unit in line with `roles`. Returns whether DHCP is
/// served. Only changes are acted on, so every region pushing the same configuration does not churn.
pub fn apply(flavor: Flavor, roles: &Value) -> bool {
    let path = flavor.dhcpd_conf();
    let current = std::fs::read_to_string(&path).ok();
    match render(roles) {
        Some(text) => {
            if current.as_deref() != Some(text.as_str()) {
                if let Err(e) = util::write_file(&path, text.as_bytes(), 0o644, None) {
                    eprintln!("rackd: cannot write {}: {e:#}", path.display());
                }
                if flavor == Flavor::Deb {
                    services::systemctl("restart", DEB_UNIT);
                }
            }
            true
        }
        None => {
            if current.is_some() {
                let _ = std::fs::remove_file(&path);
                if flavor == Flavor::Deb {
                    services::systemctl("stop", DEB_UNIT);
                }
            }
            false
        }
    }
}

/// The `dhcpd` process: refuses to start without a configuration, as dhcpd does.
pub fn run(flavor: Flavor) -> anyhow::Result<()> {
    util::set_comm("dhcpd");
    let path = flavor.dhcpd_conf();
    if !path.exists() {
        anyhow::bail!("Can't open {}: No such file or directory", path.display());
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_shared_networks_and_failover() {
        let roles = json!([
            {"vlan_id": 5001, "dhcp_on": true, "role": "primary", "peer": "rack-2",
             "subnets": [{"cidr": "10.77.0.0/24", "dynamic_ranges": [["10.77.0.100", "10.77.0.150"]]}]},
            {"vlan_id": 5002, "dhcp_on": false, "role": "secondary", "peer": null, "subnets": []},
        ]);
        let text = render(&roles).unwrap();
        assert!(text.contains("shared-network vlan-5001 {"), "{text}");
        assert!(!text.contains("vlan-5002"), "{text}");
        assert!(
            text.contains("subnet 10.77.0.0 netmask 255.255.255.0"),
            "{text}"
        );
        assert!(text.contains("range 10.77.0.100 10.77.0.150;"), "{text}");
        assert!(
            text.contains("failover peer \"failover-vlan-5001\" {\n    primary;"),
            "{text}"
        );
        assert_eq!(render(&json!([])), None);
    }
}
