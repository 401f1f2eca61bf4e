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

    /// MAAS's data directory (`MAAS_DATA`; `get_maas_data_path` in
    /// src/provisioningserver/path.py), where the region's sockets live on the deb; the snap's
    /// run-regiond and run-apiserver put them in `$SNAP_DATA` instead.
    fn socket_dir(self) -> &'static str {
        match self {
            Flavor::Snap => "/var/snap/maas/current",
            Flavor::Deb => "/var/lib/maas",
        }
    }

    /// regiond's HTTP configuration directory (`MAAS_HTTP_CONFIG_DIR`; `get_http_config_dir`
    /// in src/provisioningserver/rackdservices/http.py): nginx.conf, regiond.nginx.conf,
    /// regiond.nginx.stream.conf, certs/.
    pub fn http_dir(self) -> PathBuf {
        p(&format!("{}/http", self.socket_dir()))
    }

    /// The base path of regiond's worker sockets (`REGIOND_SOCKET_PATH` in
    /// src/maasserver/regiondservices/http.py); worker N listens on `<base>.N`.
    pub fn worker_socket_base(self) -> PathBuf {
        p(&format!("{}/maas-regiond-webapp.sock", self.socket_dir()))
    }

    /// The apiserver's socket for the v3 API (`MAAS_APISERVER_HTTP_SOCKET_PATH`).
    pub fn apiserver_socket(self) -> PathBuf {
        p(&format!("{}/apiserver-http.sock", self.socket_dir()))
    }

    /// The apiserver's socket for the internal API nginx streams 5242 to
    /// (`MAAS_INTERNALAPISERVER_HTTP_SOCKET_PATH`).
    pub fn internal_apiserver_socket(self) -> PathBuf {
        p(&format!(
            "{}/internalapiserver-http.sock",
            self.socket_dir()
        ))
    }

    /// MAAS's run directory (`get_maas_run_path` in src/provisioningserver/path.py and
    /// `getRunDir` in src/maasagent/cmd/maas-agent/main.go: `/run/snap.<instance>` in the snap,
    /// `/run/maas` otherwise): maas-agent's sockets.
    pub fn run_dir(self) -> PathBuf {
        match self {
            Flavor::Snap => p("/run/snap.maas"),
            Flavor::Deb => p("/run/maas"),
        }
    }

    /// Boot resources' image storage, 3.5+ (`get_maas_data_path("image-storage")`), which the
    /// rack's nginx serves `/images/` from.
    pub fn image_storage(self) -> PathBuf {
        match self {
            Flavor::Snap => p("/var/snap/maas/common/maas/image-storage"),
            Flavor::Deb => p("/var/lib/maas/image-storage"),
        }
    }

    /// rackd's TFTP root (`resource_root`: `<MAAS_DATA>/boot-resources/current`), which 3.4's
    /// rack nginx serves `/images/` from.
    pub fn boot_resources(self) -> PathBuf {
        match self {
            Flavor::Snap => p("/var/snap/maas/common/maas/boot-resources/current"),
            Flavor::Deb => p("/var/lib/maas/boot-resources/current"),
        }
    }

    /// Temporal's configuration directory (`MAAS_TEMPORAL_CONFIG_DIR`, rendered by
    /// `RegionTemporalService._configure` in src/maasserver/regiondservices/temporal.py).
    pub fn temporal_dir(self) -> PathBuf {
        p(&format!("{}/temporal", self.socket_dir()))
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

/// The snap's regiond.nginx.conf, rendered by regiond at start-up.
pub fn snap_nginx_conf() -> PathBuf {
    Flavor::Snap.http_dir().join("regiond.nginx.conf")
}

/// The services regiond's service monitor asked the stand-in pebble to start (stands for
/// `pebble start NAME` through pebble's socket: one name a line; pebble forgets them when it
/// restarts or its plan changes with the snap mode).
pub fn pebble_started() -> PathBuf {
    p("/var/snap/maas/common/pebble/standin-started")
}

/// Log directory shared by both flavours (tests read the rackd log here).
pub fn log_dir() -> PathBuf {
    p("/var/log/maas")
}

/// The rackd stand-in's JSON-lines log.
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
