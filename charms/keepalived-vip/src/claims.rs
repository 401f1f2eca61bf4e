//! The host-wide record of which keepalived-vip unit runs VRRP where, so that two
//! applications on one host notice a clash (same interface and virtual router id, or the same
//! VIP) instead of fighting. Juju runs one hook at a time per machine, so a read-modify-write
//! of one file is safe.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One unit's claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Its application.
    pub app: String,
    /// The VRRP interface.
    pub interface: String,
    /// The virtual router id.
    #[serde(rename = "virtual-router-id")]
    pub vrid: u8,
    /// Its VIPs, with prefix.
    pub vips: Vec<String>,
}

/// All claims on this host, by unit name.
pub type Claims = BTreeMap<String, Claim>;

/// Reads the claims file; an unreadable file counts as empty (it is rewritten next time).
pub fn parse(text: Option<&str>) -> Claims {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

/// The file's content.
pub fn render(claims: &Claims) -> String {
    let mut s = serde_json::to_string_pretty(claims).expect("claims serialize");
    s.push('\n');
    s
}

/// Why `mine` (of unit `me`) cannot run beside the other claims, if it cannot.
pub fn clash(claims: &Claims, me: &str, mine: &Claim) -> Option<String> {
    for (unit, c) in claims.iter().filter(|(u, _)| u.as_str() != me) {
        if c.app == mine.app {
            return Some(format!(
                "another unit of {}, {unit}, already runs keepalived for it on this host",
                mine.app
            ));
        }
        if c.interface == mine.interface && c.vrid == mine.vrid {
            return Some(format!(
                "virtual-router-id {} on {} is already used on this host by {} ({unit}); choose another virtual-router-id",
                mine.vrid, mine.interface, c.app
            ));
        }
        let addr = |v: &String| v.split('/').next().unwrap_or("").to_string();
        if let Some(v) = mine
            .vips
            .iter()
            .find(|v| c.vips.iter().any(|o| addr(o) == addr(v)))
        {
            return Some(format!(
                "vip {} is already managed on this host by {} ({unit})",
                addr(v),
                c.app
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(app: &str, iface: &str, vrid: u8, vips: &[&str]) -> Claim {
        Claim {
            app: app.into(),
            interface: iface.into(),
            vrid,
            vips: vips.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn clashes() {
        let mut all = Claims::new();
        all.insert(
            "region-vip/0".into(),
            claim("region-vip", "eth0", 51, &["10.0.0.100/24"]),
        );
        let me = "db-vip/0";
        assert_eq!(
            clash(&all, me, &claim("db-vip", "eth0", 52, &["10.0.0.101/24"])),
            None
        );
        assert_eq!(
            clash(&all, me, &claim("db-vip", "eth1", 51, &["10.0.0.101/24"])),
            None,
            "another interface may reuse the id"
        );
        assert!(clash(&all, me, &claim("db-vip", "eth0", 51, &["10.0.0.101/24"])).unwrap().starts_with("virtual-router-id 51 on eth0 is already used on this host by region-vip (region-vip/0)"));
        assert!(
            clash(&all, me, &claim("db-vip", "eth0", 52, &["10.0.0.100/25"]))
                .unwrap()
                .contains("vip 10.0.0.100 is already managed")
        );
        assert!(
            clash(&all, "region-vip/1", &claim("region-vip", "eth0", 52, &[]))
                .unwrap()
                .contains("another unit of region-vip")
        );
        assert_eq!(
            clash(
                &all,
                "region-vip/0",
                &claim("region-vip", "eth0", 51, &["10.0.0.100/24"])
            ),
            None,
            "its own claim"
        );
    }

    #[test]
    fn round_trip_and_garbage() {
        let mut all = Claims::new();
        all.insert("a/0".into(), claim("a", "eth0", 1, &["10.0.0.1/24"]));
        assert_eq!(parse(Some(&render(&all))), all);
        assert!(parse(Some("not json")).is_empty());
        assert!(parse(None).is_empty());
    }
}
