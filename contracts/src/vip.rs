//! `keepalived-vip`: a principal (maas-region, postgresql-ha: provides `vip`) ⇄ the
//! keepalived-vip subordinate (requires `vip`), container scope.
//!
//! The principal says what to check (its unit databag); the subordinate says which VIPs it
//! manages and whether this host holds them (its unit databag).

use crate::CommaList;
use serde::{Deserialize, Serialize};

/// The interface name in both charms' metadata.yaml.
pub const INTERFACE: &str = "keepalived-vip";

/// The key names.
pub mod keys {
    /// Principal: comma-separated checks (`process:<name>`, `tcp:<port>`, an http(s) URL).
    pub const CHECK: &str = "check";
    /// Principal: seconds between checks (a float, as text).
    pub const CHECK_INTERVAL: &str = "check-interval";
    /// Principal: CA file for `https://` checks (all three TLS keys or none).
    pub const CHECK_TLS_CA: &str = "check-tls-ca";
    /// Principal: client certificate file for `https://` checks.
    pub const CHECK_TLS_CERT: &str = "check-tls-cert";
    /// Principal: client key file for `https://` checks.
    pub const CHECK_TLS_KEY: &str = "check-tls-key";
    /// Principal: a short name for the subordinate's logs.
    pub const SERVICE: &str = "service";
    /// Subordinate: comma-separated VIP addresses without prefix.
    pub const VIPS: &str = "vips";
    /// Subordinate: the same with prefix.
    pub const VIP_CIDRS: &str = "vip-cidrs";
    /// Subordinate: `held`, `standby` or `blocked`.
    pub const STATE: &str = "state";
}

/// A principal unit's databag: what the subordinate checks before it may hold the VIP. The
/// values are text as the principal wrote them; the subordinate judges them (and blocks
/// naming the principal and the key when one is unusable). `None` deletes the key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PrincipalData {
    /// `check`: every check must pass. keepalived does not start until a principal on `vip`
    /// has sent one.
    #[serde(default)]
    pub check: Option<String>,
    /// `check-interval`: seconds (float).
    #[serde(default)]
    pub check_interval: Option<String>,
    /// `check-tls-ca`: absolute path of a root-owned file on the shared machine.
    #[serde(default)]
    pub check_tls_ca: Option<String>,
    /// `check-tls-cert`: likewise.
    #[serde(default)]
    pub check_tls_cert: Option<String>,
    /// `check-tls-key`: likewise.
    #[serde(default)]
    pub check_tls_key: Option<String>,
    /// `service`: for the subordinate's logs only.
    #[serde(default)]
    pub service: Option<String>,
}

/// Whether this host holds the VIPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VipState {
    /// This host holds the VIPs now.
    Held,
    /// Another host holds them (or none yet).
    Standby,
    /// The subordinate is blocked: it serves nothing new.
    Blocked,
}

impl VipState {
    /// The value as it travels: `held`, `standby`, `blocked`.
    pub fn as_str(self) -> &'static str {
        match self {
            VipState::Held => "held",
            VipState::Standby => "standby",
            VipState::Blocked => "blocked",
        }
    }
}

impl std::fmt::Display for VipState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The subordinate unit's databag: what the principal learns.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SubordinateData {
    /// `vips`: the VIP addresses, e.g. `10.0.0.100` (empty: no VIP configured).
    #[serde(default)]
    pub vips: CommaList,
    /// `vip-cidrs`: the same with prefix, e.g. `10.0.0.100/24`.
    #[serde(default)]
    pub vip_cidrs: CommaList,
    /// `state`.
    #[serde(default)]
    pub state: Option<VipState>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bag, from_databag, to_databag};

    #[test]
    fn principal_data_round_trips_in_todays_wire_format() {
        let d = PrincipalData {
            check: Some("https://127.0.0.1:8008/primary".into()),
            check_interval: Some("0.5".into()),
            check_tls_ca: Some("/etc/p/ca.pem".into()),
            check_tls_cert: Some("/etc/p/unit.pem".into()),
            check_tls_key: Some("/etc/p/unit.key".into()),
            service: Some("postgresql".into()),
        };
        let b = to_databag(&d).unwrap();
        assert_eq!(
            b,
            bag(&[
                (keys::CHECK, "https://127.0.0.1:8008/primary"),
                (keys::CHECK_INTERVAL, "0.5"),
                (keys::CHECK_TLS_CA, "/etc/p/ca.pem"),
                (keys::CHECK_TLS_CERT, "/etc/p/unit.pem"),
                (keys::CHECK_TLS_KEY, "/etc/p/unit.key"),
                (keys::SERVICE, "postgresql"),
            ])
        );
        assert_eq!(from_databag::<PrincipalData>(&b).unwrap(), d);
    }

    #[test]
    fn a_principal_that_sends_only_a_check_deletes_nothing_else_it_never_set() {
        let b = to_databag(&PrincipalData {
            check: Some("process:haproxy,process:named".into()),
            service: Some("maas_region".into()),
            ..PrincipalData::default()
        })
        .unwrap();
        assert_eq!(b[keys::CHECK], "process:haproxy,process:named");
        assert_eq!(b[keys::SERVICE], "maas_region");
        for k in [
            keys::CHECK_INTERVAL,
            keys::CHECK_TLS_CA,
            keys::CHECK_TLS_CERT,
            keys::CHECK_TLS_KEY,
        ] {
            assert_eq!(b[k], "", "{k}: empty, which Juju reads as absent");
        }
    }

    #[test]
    fn subordinate_data_round_trips_in_todays_wire_format() {
        let d = SubordinateData {
            vips: ["10.0.0.100", "fd00::100"].into_iter().collect(),
            vip_cidrs: ["10.0.0.100/24", "fd00::100/64"].into_iter().collect(),
            state: Some(VipState::Held),
        };
        let b = to_databag(&d).unwrap();
        assert_eq!(
            b,
            bag(&[
                (keys::VIPS, "10.0.0.100,fd00::100"),
                (keys::VIP_CIDRS, "10.0.0.100/24,fd00::100/64"),
                (keys::STATE, "held"),
            ])
        );
        assert_eq!(from_databag::<SubordinateData>(&b).unwrap(), d);
        for (s, text) in [
            (VipState::Standby, "standby"),
            (VipState::Blocked, "blocked"),
        ] {
            let b = to_databag(&SubordinateData {
                state: Some(s),
                ..SubordinateData::default()
            })
            .unwrap();
            assert_eq!(b[keys::STATE], text);
            assert_eq!(s.to_string(), text);
            assert_eq!(b[keys::VIPS], "", "no VIP: the key is deleted");
        }
    }

    #[test]
    fn a_garbled_state_names_the_key() {
        let e = from_databag::<SubordinateData>(&bag(&[(keys::STATE, "maybe")])).unwrap_err();
        assert!(e.0.contains("key \"state\""), "{e}");
    }
}
