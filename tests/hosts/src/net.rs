//! The lab's network: a bridge in a namespace of its own, one veth pair per host.
//! Every `ip` call is scoped with `-n NS` to a namespace the lab created.

use crate::layout;
use crate::run::ip;
use anyhow::Result;
use std::net::Ipv4Addr;

/// A parsed IPv4 subnet such as 10.77.0.0/24.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Subnet {
    pub base: Ipv4Addr,
    pub len: u8,
}

impl Subnet {
    pub(crate) fn parse(s: &str) -> Result<Subnet> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("subnet {s:?} is not A.B.C.D/LEN"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| anyhow::anyhow!("bad subnet address in {s:?}"))?;
        let len: u8 = l
            .parse()
            .map_err(|_| anyhow::anyhow!("bad prefix length in {s:?}"))?;
        // Hosts take .2-.199 and .200-.254 stay free for VIPs: that needs at least a /24.
        anyhow::ensure!(
            (8..=24).contains(&len),
            "subnet {s:?}: prefix length must be 8..=24"
        );
        let mask = u32::MAX << (32 - len);
        Ok(Subnet {
            base: Ipv4Addr::from(u32::from(addr) & mask),
            len,
        })
    }
    pub(crate) fn host(&self, index: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + index)
    }
}

/// Names of the network namespaces that currently exist (`ip netns list`).
pub(crate) fn netns_list() -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect()
}

pub(crate) fn netns_exists(ns: &str) -> bool {
    netns_list().iter().any(|n| n == ns)
}

pub(crate) fn netns_delete(ns: &str) -> Result<()> {
    if netns_exists(ns) {
        ip(&["netns", "delete", ns])?;
    }
    Ok(())
}

/// Creates the bridge namespace and its bridge (no address: the bridge only switches).
pub(crate) fn create_bridge(prefix: &str) -> Result<()> {
    let ns = layout::bridge_ns(prefix);
    let br = layout::bridge_dev(prefix);
    ip(&["netns", "add", &ns])?;
    ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    ip(&["-n", &ns, "link", "add", &br, "type", "bridge"])?;
    // No address of its own, not even IPv6 link-local: nothing in the bridge namespace
    // may answer a host (a cut host must reach nothing).
    ip(&["-n", &ns, "link", "set", &br, "addrgenmode", "none"])?;
    ip(&["-n", &ns, "link", "set", &br, "up"])?;
    Ok(())
}

/// Creates a host's namespace, its eth0 and the bridge-side peer, attached and up; a pair
/// that is already wired to the current bridge is kept.
///
/// A lost bridge namespace takes every veth pair with it, but not at once: the kernel tears a
/// namespace down in the background, so for a while a host's eth0 still exists with its peer in
/// the dying namespace. Such an eth0 is replaced, or it would vanish after the host was
/// started on it and leave the host unreachable for good.
pub(crate) fn create_host_link(prefix: &str, host: &str, index: u32) -> Result<()> {
    let ns = layout::host_ns(prefix, host);
    let br_ns = layout::bridge_ns(prefix);
    let peer = layout::veth(prefix, index);
    if !netns_exists(&ns) {
        ip(&["netns", "add", &ns])?;
    }
    ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    if has_link(&ns, "eth0") {
        if has_link(&br_ns, &peer) {
            return Ok(());
        }
        // It may vanish on its own meanwhile: only its absence matters.
        let _ = ip(&["-n", &ns, "link", "del", "eth0"]);
    }
    ip(&[
        "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &peer, "netns", &br_ns,
    ])?;
    ip(&["-n", &br_ns, "link", "set", &peer, "addrgenmode", "none"])?;
    ip(&[
        "-n",
        &br_ns,
        "link",
        "set",
        &peer,
        "master",
        &layout::bridge_dev(prefix),
        "up",
    ])?;
    Ok(())
}

/// Does `ns` have a link called `dev`?
pub(crate) fn has_link(ns: &str, dev: &str) -> bool {
    netns_exists(ns) && ip(&["-n", ns, "link", "show", dev]).is_ok()
}

/// Brings a host's eth0 up with only its own address: addresses a daemon added before a
/// crash (a VIP) do not survive a reboot.
pub(crate) fn host_link_up(prefix: &str, host: &str, cidr: &str) -> Result<()> {
    let ns = layout::host_ns(prefix, host);
    ip(&["-n", &ns, "addr", "flush", "dev", "eth0"])?;
    ip(&["-n", &ns, "addr", "add", cidr, "dev", "eth0"])?;
    ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
    Ok(())
}

/// Takes a host's eth0 down. One that vanishes meanwhile (its peer was in a bridge namespace
/// being torn down) is as good as down.
pub(crate) fn host_link_down(prefix: &str, host: &str) -> Result<()> {
    let ns = layout::host_ns(prefix, host);
    match ip(&["-n", &ns, "link", "set", "eth0", "down"]) {
        Err(_) if !has_link(&ns, "eth0") => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Detaches the host's port from the bridge: the host keeps carrier (as behind a broken
/// switch, daemons see no link event) but nothing it sends arrives and nothing reaches it.
pub(crate) fn cut(prefix: &str, index: u32) -> Result<()> {
    ip(&[
        "-n",
        &layout::bridge_ns(prefix),
        "link",
        "set",
        &layout::veth(prefix, index),
        "nomaster",
    ])?;
    Ok(())
}

pub(crate) fn restore(prefix: &str, index: u32) -> Result<()> {
    let br_ns = layout::bridge_ns(prefix);
    let peer = layout::veth(prefix, index);
    ip(&[
        "-n",
        &br_ns,
        "link",
        "set",
        &peer,
        "master",
        &layout::bridge_dev(prefix),
    ])?;
    ip(&["-n", &br_ns, "link", "set", &peer, "up"])?;
    Ok(())
}

/// Links of the lab still present in its bridge namespace.
pub(crate) fn bridge_links(prefix: &str) -> Vec<String> {
    let br_ns = layout::bridge_ns(prefix);
    if !netns_exists(&br_ns) {
        return Vec::new();
    }
    let Ok(out) = ip(&["-n", &br_ns, "-o", "link", "show"]) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}
