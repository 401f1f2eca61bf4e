//! Addresses with prefixes, and the host's interfaces as `ip -j addr show` reports them.

use anyhow::{anyhow, bail, Context as _};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address with its prefix length, e.g. `10.0.0.100/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Whether `other` lies in this address's subnet.
    pub fn contains(&self, other: IpAddr) -> bool {
        match (self.addr, other) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }

    /// Whether it is an IPv6 address.
    pub fn is_v6(&self) -> bool {
        self.addr.is_ipv6()
    }

    /// The largest prefix its family allows.
    pub fn max_prefix(addr: IpAddr) -> u8 {
        if addr.is_ipv4() {
            32
        } else {
            128
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// Parses `addr/prefix`; the reason of a refusal is short, for a status message.
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| "missing prefix length".to_string())?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv4 or IPv6 address"))?;
        let prefix: u8 = p
            .parse()
            .map_err(|_| format!("prefix length {p:?} is not a number"))?;
        if prefix == 0 || prefix > Cidr::max_prefix(addr) {
            return Err(format!(
                "prefix length {prefix} is out of range 1-{}",
                Cidr::max_prefix(addr)
            ));
        }
        Ok(Cidr { addr, prefix })
    }
}

/// One address on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    /// The address and its prefix.
    pub cidr: Cidr,
    /// `global`, `link`, `host`...
    pub scope: String,
    /// Whether the kernel lists it as a secondary address (e.g. a VIP in the same subnet).
    pub secondary: bool,
}

/// One network interface of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name, e.g. `eth0`.
    pub name: String,
    /// Whether it is the loopback interface (VRRP cannot use it).
    pub loopback: bool,
    /// Its addresses.
    pub addrs: Vec<IfAddr>,
}

/// Parses the JSON of `ip -j addr show`.
pub fn parse_ip_addr(json: &str) -> anyhow::Result<Vec<Interface>> {
    let v: serde_json::Value =
        serde_json::from_str(json).context("cannot parse the output of `ip -j addr show`")?;
    let list = v
        .as_array()
        .ok_or_else(|| anyhow!("`ip -j addr show` did not print a JSON list"))?;
    let mut out = Vec::new();
    for i in list {
        let Some(name) = i["ifname"].as_str() else {
            bail!("`ip -j addr show`: an interface has no ifname")
        };
        let loopback = i["link_type"].as_str() == Some("loopback")
            || i["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "LOOPBACK"));
        let mut addrs = Vec::new();
        for a in i["addr_info"].as_array().into_iter().flatten() {
            let (Some(local), Some(prefix)) = (a["local"].as_str(), a["prefixlen"].as_u64()) else {
                continue;
            };
            let Ok(addr) = local.parse::<IpAddr>() else {
                continue;
            };
            let Ok(prefix) = u8::try_from(prefix) else {
                continue;
            };
            addrs.push(IfAddr {
                cidr: Cidr { addr, prefix },
                scope: a["scope"].as_str().unwrap_or("global").to_string(),
                secondary: a["secondary"].as_bool().unwrap_or(false),
            });
        }
        out.push(Interface {
            name: name.to_string(),
            loopback,
            addrs,
        });
    }
    Ok(out)
}

/// The interface whose subnet contains `addr` (loopback and link/host-scope subnets excluded).
/// An address of the interface equal to `addr` itself (a VIP held here) does not count, unless
/// nothing else does: the VIP's own /32 must not make a routed interface look like its home.
pub fn home_interface<'a>(
    ifaces: &'a [Interface],
    addr: IpAddr,
    exclude: &[IpAddr],
) -> Option<&'a Interface> {
    ifaces.iter().filter(|i| !i.loopback).find(|i| {
        i.addrs.iter().any(|a| {
            a.scope == "global"
                && a.cidr.addr != addr
                && !exclude.contains(&a.cidr.addr)
                && a.cidr.contains(addr)
        })
    })
}

/// This host's own address on `iface` in `addr`'s family, to send unicast adverts from:
/// `preferred` (Juju's ingress address) if it is there, else a primary global address that is
/// not one of `exclude` (VIPs of any application on this host).
pub fn source_address(
    iface: &Interface,
    v6: bool,
    preferred: Option<IpAddr>,
    exclude: &[IpAddr],
) -> Option<IpAddr> {
    let candidates: Vec<&IfAddr> = iface
        .addrs
        .iter()
        .filter(|a| a.cidr.is_v6() == v6 && a.scope == "global" && !exclude.contains(&a.cidr.addr))
        .collect();
    if let Some(p) = preferred.filter(|p| candidates.iter().any(|a| a.cidr.addr == *p)) {
        return Some(p);
    }
    candidates
        .iter()
        .find(|a| !a.secondary)
        .or(candidates.first())
        .map(|a| a.cidr.addr)
}

/// Whether `addr` is configured on any interface of the host.
pub fn is_local(ifaces: &[Interface], addr: IpAddr) -> bool {
    ifaces
        .iter()
        .any(|i| i.addrs.iter().any(|a| a.cidr.addr == addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: &str = r#"[
      {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP"],"link_type":"loopback","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host"}]},
      {"ifindex":2,"ifname":"eth0","flags":["UP"],"link_type":"ether","addr_info":[
        {"family":"inet","local":"10.0.0.10","prefixlen":24,"scope":"global"},
        {"family":"inet","local":"10.0.0.100","prefixlen":24,"scope":"global","secondary":true},
        {"family":"inet6","local":"fd00::10","prefixlen":64,"scope":"global"},
        {"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link"}]},
      {"ifindex":3,"ifname":"eth1","flags":["UP"],"link_type":"ether","addr_info":[{"family":"inet","local":"192.168.5.2","prefixlen":24,"scope":"global"}]}
    ]"#;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parsing_and_containment() {
        let c: Cidr = "10.0.0.100/24".parse().unwrap();
        assert!(c.contains(ip("10.0.0.7")));
        assert!(!c.contains(ip("10.0.1.7")));
        assert!(!c.contains(ip("fd00::1")));
        let c6: Cidr = "fd00::100/64".parse().unwrap();
        assert!(c6.contains(ip("fd00::1")) && !c6.contains(ip("fd01::1")));
        assert_eq!(
            "10.0.0.1".parse::<Cidr>().unwrap_err(),
            "missing prefix length"
        );
        assert!("10.0.0.300/24"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("not an IPv4 or IPv6"));
        assert!("10.0.0.1/33"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("out of range 1-32"));
        assert!("fd00::1/129"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("out of range 1-128"));
        assert!("10.0.0.1/x"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("not a number"));
        assert_eq!(c.to_string(), "10.0.0.100/24");
    }

    #[test]
    fn interfaces_home_and_source() {
        let ifs = parse_ip_addr(IP).unwrap();
        assert_eq!(ifs.len(), 3);
        assert!(ifs[0].loopback && !ifs[1].loopback);
        assert_eq!(
            home_interface(&ifs, ip("10.0.0.100"), &[]).unwrap().name,
            "eth0"
        );
        assert_eq!(
            home_interface(&ifs, ip("192.168.5.200"), &[]).unwrap().name,
            "eth1"
        );
        assert_eq!(
            home_interface(&ifs, ip("fd00::100"), &[]).unwrap().name,
            "eth0"
        );
        assert!(
            home_interface(&ifs, ip("127.0.0.5"), &[]).is_none(),
            "never loopback"
        );
        assert!(home_interface(&ifs, ip("172.16.0.1"), &[]).is_none());
        let eth0 = &ifs[1];
        let vip = ip("10.0.0.100");
        assert_eq!(
            source_address(eth0, false, None, &[vip]),
            Some(ip("10.0.0.10"))
        );
        assert_eq!(
            source_address(eth0, false, Some(ip("10.0.0.100")), &[vip]),
            Some(ip("10.0.0.10")),
            "a VIP is never the source"
        );
        assert_eq!(
            source_address(eth0, true, None, &[]),
            Some(ip("fd00::10")),
            "link-local is not a source"
        );
        assert_eq!(source_address(&ifs[2], true, None, &[]), None);
        assert!(is_local(&ifs, vip) && !is_local(&ifs, ip("10.0.0.101")));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_ip_addr("").is_err());
        assert!(parse_ip_addr("{}").is_err());
        assert!(parse_ip_addr(r#"[{"addr_info":[]}]"#).is_err());
        assert_eq!(
            parse_ip_addr(r#"[{"ifname":"x","addr_info":[{"local":"nope","prefixlen":3}]}]"#)
                .unwrap()[0]
                .addrs,
            vec![]
        );
    }
}
