//! The rack's host: runs the commands of `maas.rs` and reads the files MAAS keeps.

use crate::config::{DebSource, InstallMethod};
use crate::maas::{self, Flavor, LocalMaas};
use anyhow::{Context as _, Result};
use charm_lib::{Cmd, FileOptions, Machine, MachineExt};
use std::path::Path;

/// This host's name, as MAAS and the region's `regions` list know it.
pub fn hostname(m: &dyn Machine) -> Result<String> {
    let out = m.run(&Cmd::new("hostname", Vec::<String>::new()))?;
    let name = out.stdout.trim().to_string();
    anyhow::ensure!(
        !name.is_empty(),
        "`hostname` printed nothing: cannot tell this host's name"
    );
    Ok(name)
}

/// What MAAS on this host is (whoever installed it).
pub fn local_maas(m: &dyn Machine) -> Result<LocalMaas> {
    if let Some(mode) = m.read_to_string(Path::new(maas::SNAP_MODE_FILE))? {
        let mode = LocalMaas::from_snap_mode(&mode);
        if mode != LocalMaas::None {
            return Ok(mode);
        }
    }
    if m.read_file(Path::new(maas::DEB_REGIOND_CONF))?.is_some() {
        return Ok(if m.service_is_active(maas::DEB_RACKD)? {
            LocalMaas::RegionRack
        } else {
            LocalMaas::Region
        });
    }
    Ok(LocalMaas::None)
}

/// Installs MAAS for `method`, adding the deb source first when one is set.
pub fn install(m: &dyn Machine, method: &InstallMethod) -> Result<()> {
    if let InstallMethod::Deb { source: Some(src) } = method {
        add_deb_source(m, src)?;
    }
    for c in maas::install_cmds(method) {
        m.run(&c)?;
    }
    Ok(())
}

/// Adds an APT source; the caller refreshes the package lists.
pub fn add_deb_source(m: &dyn Machine, src: &DebSource) -> Result<()> {
    match (maas::add_source_cmd(src), maas::apt_source_file(src)) {
        (Some(cmd), _) => {
            m.run(&cmd)?;
        }
        (None, Some(text)) => {
            m.write_file(
                Path::new(maas::APT_SOURCE_FILE),
                text.as_bytes(),
                &FileOptions::root(0o644),
            )?;
        }
        (None, None) => {}
    }
    Ok(())
}

/// Registers the rack. The error names the command with the secret masked, and its stderr.
pub fn register(m: &dyn Machine, flavor: Flavor, url: &str, secret: &str) -> Result<()> {
    let cmd = maas::register_cmd(flavor, url, secret);
    m.run(&cmd)
        .with_context(|| format!("registering with {url} failed"))?;
    // A rack stopped by an earlier relation-broken was disabled; registration must bring it
    // back. The deb's `maas-rack register` never starts it when the secret comes on stdin:
    // it stops rackd first, and the secret's installer ends the command with `SystemExit(0)`
    // before `systemctl enable/start` (src/provisioningserver/register_command.py `run`,
    // security.py `InstallSharedSecretScript.run`).
    for c in maas::start_cmds(flavor) {
        m.run(&c)?;
    }
    Ok(())
}

/// Stops rackd and removes the shared secret, so the host holds no credential for a region it
/// no longer serves. MAAS's rack CLI has no deregistration; the region keeps the controller
/// record until an administrator deletes it.
pub fn deregister(m: &dyn Machine, flavor: Flavor) -> Result<()> {
    for c in maas::stop_cmds(flavor) {
        m.run(&c)?;
    }
    m.remove_file(Path::new(&flavor.secret_file()))?;
    Ok(())
}

/// Keeps the shared secret file MAAS wrote readable by its owner and group only (0640 at most):
/// MAAS writes it so, and a looser mode left by hand or by an older package is tightened,
/// keeping owner and group. Returns whether it had to.
pub fn keep_secret_private(m: &dyn Machine, flavor: Flavor) -> Result<bool> {
    let path = flavor.secret_file();
    let path = Path::new(&path);
    let Some(info) = m.file_info(path)? else {
        return Ok(false);
    };
    if info.is_dir || info.options.mode & 0o137 == 0 {
        return Ok(false);
    }
    let Some(content) = m.read_file(path)? else {
        return Ok(false);
    };
    let opts = FileOptions {
        mode: info.options.mode & 0o640,
        ..info.options
    };
    m.write_file(path, &content, &opts)?;
    Ok(true)
}

/// What the rack is doing, as far as this host can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Whether rackd runs (`None`: cannot tell).
    pub rackd: Option<bool>,
    /// Whether dhcpd runs (`None`: cannot tell).
    pub dhcpd: Option<bool>,
    /// The VLANs (dhcpd shared networks) served, when dhcpd runs and its config names them.
    pub vlans: Vec<String>,
    /// The MAAS system id, once the region accepted the rack.
    pub system_id: Option<String>,
}

impl Observed {
    /// The VLAN list to publish: known only when dhcpd's state is known.
    pub fn dhcp_vlans(&self) -> Option<Vec<String>> {
        match self.dhcpd {
            Some(true) if !self.vlans.is_empty() => Some(self.vlans.clone()),
            Some(false) => Some(Vec::new()),
            _ => None,
        }
    }
}

/// Looks at rackd, dhcpd and the system id.
pub fn observe(m: &dyn Machine, flavor: Flavor) -> Result<Observed> {
    let (rackd, dhcpd) = match flavor {
        Flavor::Snap => {
            // The table decides, not the exit status: MAAS 3.4 passes on supervisorctl's 3
            // whenever a program is stopped, which on a rack is always (dhcpd6).
            let out = m.run(&Cmd::new(maas::SNAP_CLI, ["status"]).allow_failure())?;
            let table = maas::parse_maas_status(&out.stdout);
            if table.is_empty() && !out.success() && snap_service_active(m)? == Some(false) {
                // No table because the snap's supervisor is not running: nothing of MAAS runs.
                (Some(false), Some(false))
            } else {
                let state = |svc: &str| table.get(svc).map(|s| s == "active");
                (state("rackd"), state("dhcpd"))
            }
        }
        Flavor::Deb => (
            Some(m.service_is_active(maas::DEB_RACKD)?),
            Some(m.service_is_active(maas::DEB_DHCPD)?),
        ),
    };
    let vlans = match dhcpd {
        Some(true) => m
            .read_to_string(Path::new(&flavor.dhcpd_conf()))?
            .map(|c| maas::dhcpd_shared_networks(&c))
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let system_id = m
        .read_to_string(Path::new(&flavor.maas_id_file()))?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    Ok(Observed {
        rackd,
        dhcpd,
        vlans,
        system_id,
    })
}

/// Whether the snap's service (its supervisor: pebble, or supervisord up to MAAS 3.4) runs, as
/// `snap services maas` lists it; `None` when it lists none.
fn snap_service_active(m: &dyn Machine) -> Result<Option<bool>> {
    let out = m.run(&Cmd::new("snap", ["services", maas::SNAP]).allow_failure())?;
    let rows: Vec<Option<&str>> = out
        .stdout
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("maas."))
        .map(|l| l.split_whitespace().nth(2))
        .collect();
    Ok((out.success() && !rows.is_empty()).then(|| rows.contains(&Some("active"))))
}

/// Starts rackd (after a reboot with it disabled, or a crash the supervisor gave up on).
pub fn start_rackd(m: &dyn Machine, flavor: Flavor) -> Result<()> {
    for c in maas::start_cmds(flavor) {
        m.run(&c)?;
    }
    Ok(())
}
