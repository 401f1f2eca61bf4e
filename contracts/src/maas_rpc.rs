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
}
