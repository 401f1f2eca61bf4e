//! MAAS as the rack sees it, as pure functions: where each packaging keeps its files, the exact
//! commands that install, register, start and stop the rack, and parsers for what MAAS prints
//! and writes. Nothing here touches the host; `workload.rs` runs these.

use crate::config::{DebSource, InstallMethod};
use charm_lib::Cmd;
use std::collections::BTreeMap;

/// The Debian package of a rack controller.
pub const DEB_PACKAGE: &str = "maas-rack-controller";
/// The snap.
pub const SNAP: &str = "maas";
/// The snap's CLI, by absolute path: a hook's PATH need not include /snap/bin.
pub const SNAP_CLI: &str = "/snap/bin/maas";
/// rackd's systemd unit in the deb packaging.
pub const DEB_RACKD: &str = "maas-rackd";
/// The DHCPv4 server MAAS drives in the deb packaging.
pub const DEB_DHCPD: &str = "maas-dhcpd";
/// The APT source file this charm owns for `deb-source = deb ...`.
pub const APT_SOURCE_FILE: &str = "/etc/apt/sources.list.d/maas-rack.list";

/// The snap's mode file (`none`, `rack`, `region`, `region+rack`).
pub const SNAP_MODE_FILE: &str = "/var/snap/maas/common/snap_mode";
/// A deb region's configuration: its presence means a region is installed on this host.
pub const DEB_REGIOND_CONF: &str = "/etc/maas/regiond.conf";

/// The two packagings keep the same files in different places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The `maas` snap.
    Snap,
    /// The Debian packages.
    Deb,
}

impl Flavor {
    /// The flavour an install method produces.
    pub fn of(method: &InstallMethod) -> Flavor {
        match method {
            InstallMethod::Snap { .. } => Flavor::Snap,
            InstallMethod::Deb { .. } => Flavor::Deb,
        }
    }

    /// The option value that selects it.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Snap => "snap",
            Flavor::Deb => "deb",
        }
    }

    /// Parses `snap` or `deb`.
    pub fn parse(s: &str) -> Option<Flavor> {
        match s {
            "snap" => Some(Flavor::Snap),
            "deb" => Some(Flavor::Deb),
            _ => None,
        }
    }

    /// MAAS's data directory.
    fn data_dir(self) -> &'static str {
        match self {
            Flavor::Snap => "/var/snap/maas/common/maas",
            Flavor::Deb => "/var/lib/maas",
        }
    }

    /// The shared secret file MAAS writes during init/register (0640 root:maas).
    pub fn secret_file(self) -> String {
        format!("{}/secret", self.data_dir())
    }

    /// The controller's system id, written by rackd once the region accepted it.
    pub fn maas_id_file(self) -> String {
        format!("{}/maas_id", self.data_dir())
    }

    /// The dhcpd configuration rackd writes when the region tells it to serve DHCP.
    pub fn dhcpd_conf(self) -> String {
        format!("{}/dhcpd.conf", self.data_dir())
    }
}

/// The command that registers this rack with the region at `url`.
///
/// Snap: `maas init rack` takes the secret only on its command line (it would prompt on a
/// terminal otherwise), so it is there and marked sensitive. Deb: `maas-rack register` reads
/// the secret from stdin when `--url` is given, which keeps it out of the process list.
pub fn register_cmd(flavor: Flavor, url: &str, secret: &str) -> Cmd {
    match flavor {
        Flavor::Snap => Cmd::new(
            SNAP_CLI,
            [
                "init",
                "rack",
                "--maas-url",
                url,
                "--secret",
                secret,
                "--force",
            ],
        )
        .sensitive(secret),
        Flavor::Deb => Cmd::new("maas-rack", ["register", "--url", url])
            .stdin(format!("{secret}\n"))
            .sensitive(secret),
    }
}

/// Commands that install MAAS for a rack, in order.
pub fn install_cmds(method: &InstallMethod) -> Vec<Cmd> {
    match method {
        InstallMethod::Snap { channel } => vec![Cmd::new(
            "snap",
            ["install", SNAP, &format!("--channel={channel}")],
        )],
        InstallMethod::Deb { .. } => vec![
            apt(["update"]),
            apt(["install", "-y", "--no-install-recommends", DEB_PACKAGE]),
        ],
    }
}

/// Commands that add an APT source; `None` for a one-line source, which is written as a file.
pub fn add_source_cmd(source: &DebSource) -> Option<Cmd> {
    match source {
        DebSource::Ppa(ppa) => Some(Cmd::new("add-apt-repository", ["-y", ppa.as_str()])),
        DebSource::Line(_) => None,
    }
}

/// The content of [`APT_SOURCE_FILE`] for a one-line source.
pub fn apt_source_file(source: &DebSource) -> Option<String> {
    match source {
        DebSource::Line(line) => Some(format!(
            "# Managed by the maas-rack charm (config deb-source).\n{line}\n"
        )),
        DebSource::Ppa(_) => None,
    }
}

/// `apt-get ...` without prompts.
pub fn apt<const N: usize>(args: [&str; N]) -> Cmd {
    Cmd::new("apt-get", args).env("DEBIAN_FRONTEND", "noninteractive")
}

/// `snap refresh maas --channel=<channel>`.
pub fn refresh_cmd(channel: &str) -> Cmd {
    Cmd::new("snap", ["refresh", SNAP, &format!("--channel={channel}")])
}

/// Stops rackd and keeps it from starting at boot.
pub fn stop_cmds(flavor: Flavor) -> Vec<Cmd> {
    match flavor {
        Flavor::Snap => vec![Cmd::new("snap", ["stop", "--disable", SNAP])],
        Flavor::Deb => vec![
            Cmd::new("systemctl", ["stop", DEB_RACKD]),
            Cmd::new("systemctl", ["disable", DEB_RACKD]),
        ],
    }
}

/// Starts rackd and has it start at boot.
pub fn start_cmds(flavor: Flavor) -> Vec<Cmd> {
    match flavor {
        Flavor::Snap => vec![Cmd::new("snap", ["start", "--enable", SNAP])],
        Flavor::Deb => vec![Cmd::new("systemctl", ["enable", "--now", DEB_RACKD])],
    }
}

/// `maas status` (snap): service name → current state in pebble's words (`active`,
/// `inactive`, `backoff`, `error`). MAAS prints pebble's table from 3.5 (`Service Startup
/// Current Since`) and supervisorctl's lines up to 3.4 (`name STATE description`), per
/// `cmd_status.handle` in MAAS's src/maascli/snap.py; supervisord's states are translated
/// (RUNNING active, STOPPED and EXITED inactive, FATAL error, the others lowercased). Anything
/// else (MAAS not configured, the supervisor down) lists no service.
pub fn parse_maas_status(text: &str) -> BTreeMap<String, String> {
    const SUPERVISOR_STATES: [&str; 8] = [
        "STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN",
    ];
    let pebble = text.lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.starts_with(&["Service", "Startup", "Current"])
    });
    if pebble {
        return text
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("Service"))
            .skip(1)
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let (svc, _startup, current) = (w.next()?, w.next()?, w.next()?);
                Some((svc.to_string(), current.to_string()))
            })
            .collect();
    }
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (svc, state) = (w.next()?, w.next()?);
            let current = match state {
                "RUNNING" => "active".to_string(),
                "STOPPED" | "EXITED" => "inactive".into(),
                "FATAL" => "error".into(),
                s if SUPERVISOR_STATES.contains(&s) => s.to_ascii_lowercase(),
                _ => return None,
            };
            Some((svc.to_string(), current))
        })
        .collect()
}

/// The shared networks (one per VLAN, named `vlan-<id>` by MAAS) a dhcpd.conf written by rackd
/// serves, in file order.
pub fn dhcpd_shared_networks(conf: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in conf.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut w = line.split_whitespace();
        if w.next() == Some("shared-network") {
            if let Some(name) = w
                .next()
                .map(|n| n.trim_end_matches('{').trim_matches('"'))
                .filter(|n| !n.is_empty())
            {
                if !out.iter().any(|o| o == name) {
                    out.push(name.to_string());
                }
            }
        }
    }
    out
}

/// What this host's MAAS is, from the files MAAS keeps: a region here means this unit shares
/// its host with a region unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalMaas {
    /// No MAAS, or not initialised.
    None,
    /// A rack only (ours, when registered).
    Rack,
    /// A region without a rack.
    Region,
    /// A region that also runs rackd.
    RegionRack,
}

impl LocalMaas {
    /// From the snap's mode file content.
    pub fn from_snap_mode(mode: &str) -> LocalMaas {
        match mode.trim() {
            "rack" => LocalMaas::Rack,
            "region" => LocalMaas::Region,
            "region+rack" | "all" => LocalMaas::RegionRack,
            _ => LocalMaas::None,
        }
    }

    /// Whether a region runs here.
    pub fn has_region(self) -> bool {
        matches!(self, LocalMaas::Region | LocalMaas::RegionRack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snap_registration_is_maas_init_rack_with_the_secret_masked() {
        let c = register_cmd(Flavor::Snap, "http://10.77.0.200/MAAS", "deadbeef");
        assert_eq!(
            c.argv(),
            [
                "/snap/bin/maas",
                "init",
                "rack",
                "--maas-url",
                "http://10.77.0.200/MAAS",
                "--secret",
                "deadbeef",
                "--force"
            ]
        );
        assert_eq!(
            c.to_string(),
            "/snap/bin/maas init rack --maas-url http://10.77.0.200/MAAS --secret *** --force"
        );
        assert_eq!(c.stdin, None);
    }

    #[test]
    fn deb_registration_passes_the_secret_on_stdin() {
        let c = register_cmd(Flavor::Deb, "http://10.77.0.200/MAAS", "deadbeef");
        assert_eq!(
            c.argv(),
            ["maas-rack", "register", "--url", "http://10.77.0.200/MAAS"]
        );
        assert_eq!(c.stdin.as_deref(), Some(&b"deadbeef\n"[..]));
        assert!(!c.argv().iter().any(|a| a.contains("deadbeef")));
    }

    #[test]
    fn paths_per_flavor() {
        assert_eq!(
            Flavor::Snap.secret_file(),
            "/var/snap/maas/common/maas/secret"
        );
        assert_eq!(Flavor::Deb.secret_file(), "/var/lib/maas/secret");
        assert_eq!(
            Flavor::Snap.maas_id_file(),
            "/var/snap/maas/common/maas/maas_id"
        );
        assert_eq!(Flavor::Deb.maas_id_file(), "/var/lib/maas/maas_id");
        assert_eq!(Flavor::Deb.dhcpd_conf(), "/var/lib/maas/dhcpd.conf");
    }

    #[test]
    fn install_commands() {
        let snap = install_cmds(&InstallMethod::Snap {
            channel: "3.6/stable".into(),
        });
        assert_eq!(
            snap.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            ["snap install maas --channel=3.6/stable"]
        );
        let deb = install_cmds(&InstallMethod::Deb { source: None });
        assert_eq!(
            deb.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            [
                "apt-get update",
                "apt-get install -y --no-install-recommends maas-rack-controller"
            ]
        );
        assert_eq!(
            add_source_cmd(&DebSource::Ppa("ppa:maas/3.6".into()))
                .unwrap()
                .to_string(),
            "add-apt-repository -y ppa:maas/3.6"
        );
        assert_eq!(
            apt_source_file(&DebSource::Line("deb http://a/maas noble main".into()))
                .unwrap()
                .lines()
                .last(),
            Some("deb http://a/maas noble main")
        );
    }

    #[test]
    fn maas_status_table() {
        let text = "Service          Startup  Current  Since\nagent            enabled  active   today at 10:00 UTC\ndhcpd            enabled  active   today at 10:01 UTC\ndhcpd6           disabled inactive -\nrackd            enabled  inactive -\n";
        let s = parse_maas_status(text);
        assert_eq!(s["dhcpd"], "active");
        assert_eq!(s["dhcpd6"], "inactive");
        assert_eq!(s["rackd"], "inactive");
        assert!(parse_maas_status("MAAS is not configured").is_empty());
        assert!(
            parse_maas_status("Pebble exited with error code 1 and the following output:\n")
                .is_empty()
        );
    }

    #[test]
    fn maas_3_4_status_is_supervisorctls() {
        let text = "bind9                            RUNNING   pid 2101, uptime 0:12:03\ndhcpd                            RUNNING   pid 2180, uptime 0:02:10\ndhcpd6                           STOPPED   Not started\nhttp                             RUNNING   pid 2102, uptime 0:12:03\nntp                              RUNNING   pid 2103, uptime 0:12:03\nproxy                            STOPPED   Not started\nrackd                            BACKOFF   Exited too quickly (process log may have details)\nsyslog                           STOPPED   Not started\n";
        let s = parse_maas_status(text);
        assert_eq!(s.len(), 8);
        assert_eq!(s["dhcpd"], "active");
        assert_eq!(s["dhcpd6"], "inactive");
        assert_eq!(s["rackd"], "backoff");
        assert!(
            parse_maas_status("unix:///var/snap/maas/x1/supervisord/sock no such file\n")
                .is_empty()
        );
    }

    #[test]
    fn dhcpd_conf_names_its_vlans() {
        let conf = "# WARNING: Do not edit\nfailover peer \"failover-vlan-5001\" {\n    primary;\n}\nshared-network vlan-5001 {\n    subnet 10.77.0.0 netmask 255.255.255.0 {\n    }\n}\nshared-network vlan-5003 {\n}\n# shared-network commented-out {\n";
        assert_eq!(dhcpd_shared_networks(conf), ["vlan-5001", "vlan-5003"]);
        assert!(dhcpd_shared_networks("").is_empty());
    }

    #[test]
    fn local_maas_from_snap_mode() {
        assert_eq!(
            LocalMaas::from_snap_mode("region+rack\n"),
            LocalMaas::RegionRack
        );
        assert!(LocalMaas::from_snap_mode("region").has_region());
        assert!(!LocalMaas::from_snap_mode("rack").has_region());
        assert_eq!(LocalMaas::from_snap_mode("none"), LocalMaas::None);
    }
}
