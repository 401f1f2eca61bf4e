//! `maas-rpc`: maas-region (provides `rpc`) ⇄ maas-rack (requires `rpc`).
//!
//! The region leader tells the racks where and with what to register (region application
//! databag); each rack says who it is (its unit databag).

use serde::{Deserialize, Serialize};

/// The interface name in both charms' metadata.yaml.
pub const INTERFACE: &str = "maas-rpc";

/// The content key of the MAAS shared secret whose id travels as `secret_id`.
pub const SECRET_KEY: &str = "secret";

/// The key names.
pub mod keys {
    /// Region app databag: the URL racks register with (always http).
    pub const MAAS_URL: &str = "maas_url";
    /// Region app databag: the Juju secret id of the MAAS shared secret.
    pub const SECRET_ID: &str = "secret_id";
    /// Region app databag: JSON list of the region units' hostnames.
    pub const REGIONS: &str = "regions";
    /// Rack unit databag: the rack's hostname.
    pub const HOSTNAME: &str = "hostname";
    /// Rack unit databag: its MAAS system id, once known.
    pub const SYSTEM_ID: &str = "system_id";
    /// Rack unit databag: JSON list of the VLANs it serves DHCP for, once known.
    pub const DHCP: &str = "dhcp";
    /// Rack unit databag: the snap channel its MAAS runs (absent for a deb install).
    pub const MAAS_CHANNEL: &str = "maas_channel";
    /// Rack unit databag: the channel it waits to refresh to, while it waits.
    pub const UPGRADE_REQUEST: &str = "upgrade_request";
    /// Region app databag: `<rack unit>#<channel>`, the one rack that may refresh now.
    pub const RACK_UPGRADE_LOCK: &str = "rack_upgrade_lock";
}

/// The region application's databag (written by the region leader).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RegionData {
    /// `maas_url`: the URL racks register with, e.g. `http://10.77.0.200/MAAS`.
    #[serde(default)]
    pub maas_url: Option<String>,
    /// `secret_id`: the Juju secret holding [`SECRET_KEY`], granted to the relation. Writing
    /// `None` leaves the key as it is (the region keeps offering the id it offered while its
    /// shared secret is not readable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_id: Option<String>,
    /// `regions` (JSON): the region units' hostnames; a rack on one of them runs region+rack.
    #[serde(default)]
    pub regions: Option<Vec<String>>,
    /// `rack_upgrade_lock`: the rack request (`<unit>#<channel>`) the region leader lets
    /// refresh now, so that racks upgrade one at a time (and before the regions: MAAS's
    /// `docs/how-to-guides/upgrade-maas.md`, "Upgrade rack nodes first, then region nodes").
    #[serde(default)]
    pub rack_upgrade_lock: Option<String>,
}

/// A rack unit's databag. `None` fields delete their key, so stale values do not linger.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RackData {
    /// `hostname`: the rack's hostname (empty while the rack has not written yet).
    #[serde(default)]
    pub hostname: String,
    /// `system_id`: its MAAS system id, once MAAS has assigned one.
    #[serde(default)]
    pub system_id: Option<String>,
    /// `dhcp` (JSON): the VLANs it serves DHCP for, when known.
    #[serde(default)]
    pub dhcp: Option<Vec<String>>,
    /// `maas_channel`: the snap channel its MAAS runs, once installed.
    #[serde(default)]
    pub maas_channel: Option<String>,
    /// `upgrade_request`: the channel it waits for the region leader's leave to refresh to.
    #[serde(default)]
    pub upgrade_request: Option<String>,
}

/// Whether MAAS itself takes `url` as a `maas_url`, and if not why: the rules of MAAS's
/// `ExtendedURL(require_tld=False)` (`url_re` in src/provisioningserver/utils/config.py, the
/// same on 3.4, 3.6 and master; formencode's `URL._convert_to_python`), which
/// `RegionConfiguration.maas_url` and `ClusterConfiguration.maas_url` apply when the URL is set
/// (deb `maas-region local_config_set --maas-url`, `maas-rack register --url`: a refused URL
/// there is `That is not a valid URL`, as a traceback from `maas-rack`). Snap `maas init`
/// checks nothing and writes the URL as given, so a URL outside these rules reaches regiond and
/// rackd unchecked. Both sides of this interface check it: the region before it runs MAAS with
/// its `maas-url`, the rack before it registers with what the region sent.
///
/// The URL must already have its scheme: formencode's `add_http` (which completes
/// `10.0.0.1` to `http://10.0.0.1`) runs on the deb only, and the snap would keep the bare
/// address. Rules: `http://` or `https://`; an optional `user:pass@` of `[%:\w]`; a host that
/// is dotted labels of letters, digits and `-` (each 1-63 characters, starting with a letter
/// or digit; the last also ending with one; IPv4 addresses are such hosts) or a bracketed IPv6
/// address in one of the regex's forms (eight groups; groups `::` groups, 1-6 each side;
/// `::` and one group; one group and `::`; `::ffff:` and a dotted quad); an optional `:`
/// and 1-5 digits; an optional path of `/` and URL characters (no spaces, quotes, `<>`,
/// `{}`, `|`, `\`, `^`, backquote); nothing else. Charms add their own rules on top (a port
/// in 1-65535, the `/MAAS` path, http only for racks).
pub fn maas_accepts_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("it does not start with http:// or https://")?;
    let word = |c: char| c.is_alphanumeric() || c == '_';
    // `(?:[%:\w]*@)?`: the regex tries the URL with and without it.
    let with_auth = rest
        .split_once('@')
        .filter(|(auth, _)| auth.chars().all(|c| c == '%' || c == ':' || word(c)))
        .map(|(_, after)| after);
    match host_port_path(rest) {
        Ok(()) => Ok(()),
        Err(why) => match with_auth.map(host_port_path) {
            Some(Ok(())) => Ok(()),
            Some(Err(why)) => Err(why),
            None => Err(why),
        },
    }
}

fn host_port_path(s: &str) -> Result<(), String> {
    let after = if let Some(inner) = s.strip_prefix('[') {
        let (addr, after) = inner
            .split_once(']')
            .ok_or("its IPv6 address has no closing bracket")?;
        if !ipv6_form(addr) {
            return Err(format!(
                "[{addr}] is not an IPv6 address in a form MAAS accepts"
            ));
        }
        after
    } else {
        let end = s.find([':', '/']).unwrap_or(s.len());
        let host = &s[..end];
        if !host_name(host) {
            return Err(format!(
                "{host:?} is not a host name MAAS accepts (dotted labels of letters, digits and '-', each 1-63 long, none starting with '-', the last not ending with one)"
            ));
        }
        &s[end..]
    };
    let after = match after.strip_prefix(':') {
        Some(p) => {
            let digits = p.chars().take_while(char::is_ascii_digit).count();
            if !(1..=5).contains(&digits) {
                return Err("its port is not 1 to 5 digits".into());
            }
            &p[digits..]
        }
        None => after,
    };
    match after.strip_prefix('/') {
        None if after.is_empty() => Ok(()),
        None => Err(format!(
            "{after:?} after the host is neither a port nor a path"
        )),
        Some(path) => match path
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-._~:/?#[]@!%$&'()*+,;=".contains(*c)))
        {
            Some(c) => Err(format!("its path has {c:?}, which MAAS does not accept")),
            None => Ok(()),
        },
    }
}

fn host_name(host: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.starts_with(alnum)
            && l.chars().all(|c| alnum(c) || c == '-')
    };
    let labels: Vec<&str> = host.split('.').collect();
    let (last, rest) = labels.split_last().expect("split yields one item at least");
    rest.iter().all(|l| label(l)) && label(last) && last.ends_with(alnum)
}

fn ipv6_form(addr: &str) -> bool {
    let group = |g: &str| (1..=4).contains(&g.len()) && g.chars().all(|c| c.is_ascii_hexdigit());
    let groups = |s: &str, n: std::ops::RangeInclusive<usize>| {
        let parts: Vec<&str> = s.split(':').collect();
        n.contains(&parts.len()) && parts.iter().all(|g| group(g))
    };
    let mapped_v4 = addr
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("::ffff:"))
        .is_some_and(|_| {
            let quad: Vec<&str> = addr[7..].split('.').collect();
            quad.len() == 4
                && quad
                    .iter()
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        });
    mapped_v4
        || groups(addr, 8..=8)
        || addr.strip_prefix("::").is_some_and(group)
        || addr.strip_suffix("::").is_some_and(group)
        || addr
            .split_once("::")
            .is_some_and(|(a, b)| groups(a, 1..=6) && groups(b, 1..=6))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bag, from_databag, to_databag};

    #[test]
    fn region_data_round_trips_in_todays_wire_format() {
        let d = RegionData {
            maas_url: Some("http://10.77.0.200/MAAS".into()),
            secret_id: Some("secret:abc".into()),
            regions: Some(vec!["region-a".into(), "region-b".into()]),
            rack_upgrade_lock: Some("maas-rack/1#3.6/stable".into()),
        };
        let b = to_databag(&d).unwrap();
        assert_eq!(
            b,
            bag(&[
                (keys::MAAS_URL, "http://10.77.0.200/MAAS"),
                (keys::SECRET_ID, "secret:abc"),
                (keys::REGIONS, r#"["region-a","region-b"]"#),
                (keys::RACK_UPGRADE_LOCK, "maas-rack/1#3.6/stable"),
            ])
        );
        assert_eq!(from_databag::<RegionData>(&b).unwrap(), d);
    }

    #[test]
    fn a_region_without_its_secret_yet_leaves_secret_id_alone() {
        let d = RegionData {
            maas_url: Some("http://r/MAAS".into()),
            secret_id: None,
            regions: Some(vec![]),
            rack_upgrade_lock: None,
        };
        let b = to_databag(&d).unwrap();
        assert!(!b.contains_key(keys::SECRET_ID), "{b:?}");
        assert_eq!(b[keys::REGIONS], "[]");
    }

    #[test]
    fn nothing_written_yet_reads_as_nothing() {
        assert_eq!(
            from_databag::<RegionData>(&bag(&[])).unwrap(),
            RegionData::default()
        );
        assert_eq!(
            from_databag::<RackData>(&bag(&[])).unwrap(),
            RackData::default()
        );
    }

    #[test]
    fn garbled_regions_name_the_key() {
        let e = from_databag::<RegionData>(&bag(&[(keys::REGIONS, "region-a")])).unwrap_err();
        assert!(e.0.contains("key \"regions\""), "{e}");
    }

    #[test]
    fn rack_data_round_trips_and_none_deletes() {
        let d = RackData {
            hostname: "rack-1".into(),
            system_id: Some("abc123".into()),
            dhcp: Some(vec!["fabric-0.untagged".into()]),
            maas_channel: Some("3.5/stable".into()),
            upgrade_request: Some("3.6/stable".into()),
        };
        let b = to_databag(&d).unwrap();
        assert_eq!(
            b,
            bag(&[
                (keys::HOSTNAME, "rack-1"),
                (keys::SYSTEM_ID, "abc123"),
                (keys::DHCP, r#"["fabric-0.untagged"]"#),
                (keys::MAAS_CHANNEL, "3.5/stable"),
                (keys::UPGRADE_REQUEST, "3.6/stable"),
            ])
        );
        assert_eq!(from_databag::<RackData>(&b).unwrap(), d);
        let fresh = to_databag(&RackData {
            hostname: "rack-1".into(),
            ..RackData::default()
        })
        .unwrap();
        assert_eq!(fresh[keys::SYSTEM_ID], "");
        assert_eq!(fresh[keys::DHCP], "");
    }

    /// The cases of MAAS's `ExtendedURL` (its `url_re`; formencode's doctests), as the
    /// stand-in's `conf::extended_url` test has them, without `add_http`.
    #[test]
    fn maas_accepts_url_as_extended_url() {
        for ok in [
            "http://10.0.0.200/MAAS",
            "https://maas.example:5443/MAAS/",
            "http://localhost:5240/MAAS",
            "http://region-a:5240/MAAS/api/2.0/",
            "http://[fd00::1]:5240/MAAS",
            "http://[::1]/MAAS",
            "http://[fe80::]/MAAS",
            "http://[1:2:3:4:5:6:7:8]/MAAS",
            "http://[::ffff:10.0.0.1]/MAAS",
            "http://u:p@10.0.0.1/MAAS",
            "http://10.0.0.1:99999/",
            "http://999.1.1.1/MAAS",
        ] {
            assert_eq!(maas_accepts_url(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("ftp://x/MAAS", "http:// or https://"),
            ("10.0.0.1/MAAS", "http:// or https://"),
            ("http:///MAAS", "\"\" is not a host name"),
            ("http://test..com", "not a host name"),
            ("http://-bad/MAAS", "\"-bad\" is not a host name"),
            ("http://host-/MAAS", "not a host name"),
            ("http://maas.example./MAAS", "not a host name"),
            ("http://under_score/MAAS", "not a host name"),
            ("http://bad host/MAAS", "not a host name"),
            ("http://fd00::1/MAAS", "port is not"),
            (
                "http://[fd00:1::]/MAAS",
                "[fd00:1::] is not an IPv6 address",
            ),
            ("http://[::]/MAAS", "not an IPv6 address"),
            ("http://[zz::1]/MAAS", "not an IPv6 address"),
            ("http://[fd00::1/MAAS", "no closing bracket"),
            ("http://10.0.0.1:/MAAS", "port is not"),
            ("http://10.0.0.1:123456/MAAS", "port is not"),
            ("http://10.0.0.1/MA AS", "path has ' '"),
            ("http://u@p@10.0.0.1/MAAS", "not a host name"),
        ] {
            let e = maas_accepts_url(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
