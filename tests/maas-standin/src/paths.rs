//! Where MAAS keeps its files, for the snap and for the debs.
//!
//! Every path goes through [`p`], so tests can relocate the whole tree with `MAAS_STANDIN_ROOT`.

use std::path::PathBuf;

/// Environment variable (tests only) that prefixes every absolute path.
pub const ROOT_ENV: &str = "MAAS_STANDIN_ROOT";

/// Turns an absolute path as MAAS knows it into the path actually used.
pub fn p(abs: &str) -> PathBuf {
    match std::env::var(ROOT_ENV) {
        Ok(root) if !root.is_empty() => PathBuf::from(root).join(abs.trim_start_matches('/')),
        _ => PathBuf::from(abs),
    }
}

/// The two ways MAAS is packaged; they keep the same files in different places.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// The `maas` snap.
    Snap,
    /// The Debian packages (`maas-region-api`, `maas-rack-controller`, ...).
    Deb,
}

impl Flavor {
    /// Parses `snap` or `deb`.
    pub fn parse(s: &str) -> Option<Flavor> {
        match s {
            "snap" => Some(Flavor::Snap),
            "deb" => Some(Flavor::Deb),
            _ => None,
        }
    }

    /// `regiond.conf`.
    pub fn regiond_conf(self) -> PathBuf {
        match self {
            Flavor::Snap => p("/var/snap/maas/current/regiond.conf"),
            Flavor::Deb => p("/etc/maas/regiond.conf"),
        }
    }

    /// `rackd.conf`.
    pub fn rackd_conf(self) -> PathBuf {
        match self {
            Flavor::Snap => p("/var/snap/maas/current/rackd.conf"),
            Flavor::Deb => p("/etc/maas/rackd.conf"),
        }
    }

    /// The shared secret between regions and racks.
    pub fn secret(self) -> PathBuf {
        match self {
            Flavor::Snap => p("/var/snap/maas/common/maas/secret"),
            Flavor::Deb => p("/var/lib/maas/secret"),
        }
    }

    /// The controller's system id.
    pub fn maas_id(self) -> PathBuf {
        match self {
            Flavor::Snap => p("/var/snap/maas/common/maas/maas_id"),
            Flavor::Deb => p("/var/lib/maas/maas_id"),
        }
    }

    /// The dhcpd configuration rackd writes while it serves DHCP.
    pub fn dhcpd_conf(self) -> PathBuf {
        match self {
            Flavor::Snap => p("/var/snap/maas/common/maas/dhcpd.conf"),
            Flavor::Deb => p("/var/lib/maas/dhcpd.conf"),
        }
    }

    /// The MAAS installation uuid.
    pub fn maas_uuid(self) -> PathBuf {
        match self {
            Flavor::Snap => p("/var/snap/maas/common/maas/maas_uuid"),
            Flavor::Deb => p("/var/lib/maas/maas_uuid"),
        }
    }
}

/// The snap's mode file (`none`, `region`, `rack`, `region+rack`).
pub fn snap_mode() -> PathBuf {
    p("/var/snap/maas/common/snap_mode")
}

/// Exists once a region mode has been initialised (the charm checks it; `listen 5443` = TLS).
pub fn snap_nginx_conf() -> PathBuf {
    p("/var/snap/maas/current/http/regiond.nginx.conf")
}

/// Log directory shared by both flavours (tests read the rackd log here).
pub fn log_dir() -> PathBuf {
    p("/var/log/maas")
}

/// The rackd stand-in's JSON-lines poll log.
pub fn rackd_log() -> PathBuf {
    log_dir().join("rackd-standin.log")
}

/// bind9's options file, edited by `edit_named_options`.
pub fn named_conf_options() -> PathBuf {
    p("/etc/bind/named.conf.options")
}

/// The file MAAS moves the conflicting bind options into.
pub fn named_conf_options_inside_maas() -> PathBuf {
    p("/etc/bind/maas/named.conf.options.inside.maas")
}
