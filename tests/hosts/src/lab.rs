//! The lab: its bridge, its hosts, its persisted state and its clean-up.

use crate::cleanup::{self, clean_prefix};
use crate::host::{Host, LabInfo};
use crate::layout;
use crate::net::{self, Subnet};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to create a lab.
#[derive(Clone, Debug)]
pub struct LabConfig {
    /// Lab state (lab.json, each host's init record and log, its overlay layers). Anywhere
    /// but under /run. Under /tmp hosts do not see it (they have their own /tmp) unless it is
    /// in `shared`; under a directory hosts overlay (/etc, /var, /usr, /opt, /srv, /snap,
    /// /root, /home) the overlay layers go to /tmp/hosts-layers/PREFIX instead, since
    /// overlayfs refuses layers inside their own lower directory.
    pub dir: PathBuf,
    /// 1–6 characters of `[a-z0-9]`; every netns and link name of the lab starts with it.
    pub prefix: String,
    /// IPv4 subnet such as "10.77.0.0/24" (at least a /24): hosts get .2, .3, ...;
    /// .200–.254 stay free for VIPs.
    pub subnet: String,
    /// Package catalog directory (CONTRACTS.md section 2), bind-mounted read-only in every
    /// host at /usr/lib/local-model/catalog.
    pub catalog: Option<PathBuf>,
    /// Machine directories every host sees at the same path, read-write and live (bind
    /// mounts made after the host's own /tmp, /run and overlays, so they win over those):
    /// e.g. sockets and tools of a program driving the hosts, wherever it keeps them.
    pub shared: Vec<PathBuf>,
}

/// What lab.json holds: enough for [`Lab::open`] from another process.
#[derive(Serialize, Deserialize)]
struct LabState {
    dir: PathBuf,
    layers: PathBuf,
    prefix: String,
    subnet: String,
    catalog: Option<PathBuf>,
    #[serde(default)]
    shared: Vec<PathBuf>,
    hosts: Vec<HostRec>,
}

#[derive(Serialize, Deserialize, Clone)]
struct HostRec {
    name: String,
    index: u32,
}

/// A set of hosts on one private bridge. See the crate docs.
pub struct Lab {
    info: Arc<LabInfo>,
    subnet_text: String,
    hosts: Vec<HostRec>,
}

const FIRST_INDEX: u32 = 2;
const LAST_INDEX: u32 = 199;

impl Lab {
    /// Creates a lab: removes what a crashed lab with the same prefix left (processes,
    /// namespaces, links, and the state in `cfg.dir`), then creates the bridge.
    pub fn create(cfg: LabConfig) -> Result<Lab> {
        layout::check_prefix(&cfg.prefix)?;
        let subnet = Subnet::parse(&cfg.subnet)?;
        let shared = shared_dirs(&cfg.shared)?;
        let dir = prepare_dir(&cfg.dir)?;
        if let Some(c) = &cfg.catalog {
            anyhow::ensure!(c.is_dir(), "catalog {} is not a directory", c.display());
        }
        clean_prefix(&cfg.prefix)?;
        remove_state(&dir, &cfg.prefix)?;
        // Hosts overlay /snap; the machine needs the mount point even if it has no snaps.
        if !Path::new("/snap").exists() {
            fs::create_dir("/snap").context("cannot create the /snap mount point")?;
        }
        install_runtime(&dir)?;
        net::create_bridge(&cfg.prefix)?;
        let lab = Lab {
            info: Arc::new(LabInfo {
                layers: layout::layers_for(&dir, &cfg.prefix),
                dir,
                prefix: cfg.prefix,
                subnet,
                catalog: cfg.catalog.map(|c| c.canonicalize().unwrap_or(c)),
                shared,
            }),
            subnet_text: cfg.subnet,
            hosts: Vec::new(),
        };
        lab.save()?;
        Ok(lab)
    }

    /// Re-attaches to a lab from `dir/lab.json` (hosts keep running between processes).
    pub fn open(dir: &Path) -> Result<Lab> {
        let path = layout::lab_json(dir);
        let text = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let st: LabState =
            serde_json::from_slice(&text).with_context(|| format!("bad {}", path.display()))?;
        Ok(Lab {
            info: Arc::new(LabInfo {
                dir: st.dir,
                layers: st.layers,
                prefix: st.prefix,
                subnet: Subnet::parse(&st.subnet)?,
                catalog: st.catalog,
                shared: st.shared,
            }),
            subnet_text: st.subnet,
            hosts: st.hosts,
        })
    }

    /// Adds and boots a host; `name` is also its hostname.
    pub fn add_host(&mut self, name: &str) -> Result<Host> {
        layout::check_host_name(name)?;
        // Another process may have changed the lab since we read it.
        let _lock = StateLock::take(&self.info.dir)?;
        self.hosts = self.current_hosts();
        if self.hosts.iter().any(|h| h.name == name) {
            bail!("host {name} already exists in lab {}", self.info.prefix);
        }
        let used: HashSet<u32> = self.hosts.iter().map(|h| h.index).collect();
        let index = (FIRST_INDEX..=LAST_INDEX)
            .find(|i| !used.contains(i))
            .ok_or_else(|| anyhow::anyhow!("lab {} is full", self.info.prefix))?;
        let host = Host::new(self.info.clone(), name, index);
        let made = host
            .prepare_disk()
            .and_then(|_| net::create_host_link(&self.info.prefix, name, index))
            .and_then(|_| host.start());
        if let Err(e) = made {
            let _ = host.stop();
            let _ = net::netns_delete(&layout::host_ns(&self.info.prefix, name));
            let _ = fs::remove_dir_all(layout::host_dir(&self.info.dir, name));
            let _ = fs::remove_dir_all(layout::host_layers(&self.info.layers, name));
            return Err(e.context(format!("cannot add host {name}")));
        }
        self.hosts.push(HostRec {
            name: name.to_string(),
            index,
        });
        self.save()?;
        Ok(host)
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Result<Host> {
        self.current_hosts()
            .iter()
            .find(|h| h.name == name)
            .map(|h| Host::new(self.info.clone(), &h.name, h.index))
            .ok_or_else(|| anyhow::anyhow!("no host {name} in lab {}", self.info.prefix))
    }

    /// All hosts, in the order they were added.
    pub fn hosts(&self) -> Vec<Host> {
        self.current_hosts()
            .iter()
            .map(|h| Host::new(self.info.clone(), &h.name, h.index))
            .collect()
    }

    /// Stops a host and removes its namespaces, links and disk.
    pub fn remove_host(&mut self, name: &str) -> Result<()> {
        let _lock = StateLock::take(&self.info.dir)?;
        self.hosts = self.current_hosts();
        let host = self.host(name)?;
        host.stop()?;
        net::netns_delete(&layout::host_ns(&self.info.prefix, name))?;
        let _ = fs::remove_dir_all(layout::host_dir(&self.info.dir, name));
        let _ = fs::remove_dir_all(layout::host_layers(&self.info.layers, name));
        self.hosts.retain(|h| h.name != name);
        self.save()
    }

    /// Removes everything: no process, mount, netns, link or bridge of the lab is left, and
    /// the lab's state directory is deleted.
    pub fn destroy(self) -> Result<()> {
        for h in self.hosts() {
            let _ = h.stop();
        }
        clean_prefix(&self.info.prefix)?;
        remove_state(&self.info.dir, &self.info.prefix)?;
        let _ = fs::remove_dir(&self.info.dir);
        let left = Lab::leftovers(&self.info.prefix);
        anyhow::ensure!(left.is_empty(), "lab {} left: {left:?}", self.info.prefix);
        Ok(())
    }

    /// What of a lab with that prefix still exists: processes, network namespaces, links
    /// and mounts, one description each. Empty when the lab is fully gone.
    pub fn leftovers(prefix: &str) -> Vec<String> {
        cleanup::leftovers(prefix)
    }

    /// The hosts as lab.json has them now (another process may have added or removed
    /// some), else as this process last knew them.
    fn current_hosts(&self) -> Vec<HostRec> {
        fs::read(layout::lab_json(&self.info.dir))
            .ok()
            .and_then(|t| serde_json::from_slice::<LabState>(&t).ok())
            .map_or_else(|| self.hosts.clone(), |st| st.hosts)
    }

    fn save(&self) -> Result<()> {
        let st = LabState {
            dir: self.info.dir.clone(),
            layers: self.info.layers.clone(),
            prefix: self.info.prefix.clone(),
            subnet: self.subnet_text.clone(),
            catalog: self.info.catalog.clone(),
            shared: self.info.shared.clone(),
            hosts: self.hosts.clone(),
        };
        let path = layout::lab_json(&self.info.dir);
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(&st)?)?;
        fs::rename(&tmp, &path)?;
        Ok(())
    }
}

/// An exclusive lock on a lab's state, so processes sharing a lab do not lose each
/// other's hosts; released when dropped.
struct StateLock {
    _held: fs::File,
}

impl StateLock {
    fn take(dir: &Path) -> Result<StateLock> {
        use std::os::fd::AsRawFd;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lab.lock"))
            .with_context(|| format!("cannot open {}/lab.lock", dir.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!(
                "cannot lock {}/lab.lock: {}",
                dir.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(StateLock { _held: f })
    }
}

/// Creates the lab dir and checks that hosts will see it as the machine does.
fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    anyhow::ensure!(
        dir.is_absolute(),
        "lab dir {} must be absolute",
        dir.display()
    );
    // Checked before anything is created (a refused dir must not be left behind), and
    // again once symlinks are resolved.
    check_dir(dir)?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let real = dir.canonicalize()?;
    check_dir(&real)?;
    Ok(real)
}

/// The shared directories, absolute and without symlinks, parents before what they contain
/// (so a nested one is bound over its parent's bind, not under it).
fn shared_dirs(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for d in dirs {
        let real = d
            .canonicalize()
            .with_context(|| format!("shared directory {}", d.display()))?;
        anyhow::ensure!(
            real.is_dir(),
            "shared directory {} is not a directory",
            d.display()
        );
        let top = layout::top_of(&real);
        // Under /usr it would hide the runtime's tools bound there; hosts see the machine's
        // /usr through their overlay anyway.
        anyhow::ensure!(
            !["", "proc", "sys", "dev", "usr"].contains(&top.as_str()),
            "shared directory {} cannot be shared with hosts (the machine's /, /proc, /sys, /dev or /usr)",
            real.display()
        );
        out.push(real);
    }
    out.sort_by_key(|p| p.components().count());
    out.dedup();
    Ok(out)
}

fn check_dir(dir: &Path) -> Result<()> {
    // /run is where the machine keeps network namespaces and hosts their own runtime
    // state. (Under /tmp hosts do not see the lab dir unless it is shared; under an
    // overlaid directory the layers go elsewhere, see `layout::layers_for`.)
    if layout::top_of(dir) == "run" {
        bail!("lab dir {} is under /run", dir.display());
    }
    let s = dir.to_string_lossy();
    // Overlay mount options are comma- and colon-separated.
    anyhow::ensure!(
        !s.contains([',', ':', ' ']),
        "lab dir {s} must not contain ',', ':' or spaces"
    );
    Ok(())
}

/// Copies the runtime binary into the lab, so a rebuild does not change running hosts.
fn install_runtime(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let src = crate::runtime_bin::locate()?;
    let dst = layout::runtime_copy(dir);
    fs::create_dir_all(dst.parent().unwrap_or(dir))?;
    let tmp = dst.with_extension("tmp");
    fs::copy(&src, &tmp).with_context(|| format!("cannot copy {}", src.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
    fs::rename(&tmp, &dst)?;
    Ok(())
}

/// Removes what a lab stored in `dir` (only the paths a lab creates) and the layers it
/// may have kept outside it.
fn remove_state(dir: &Path, prefix: &str) -> Result<()> {
    let outside = layout::external_layers(prefix);
    if outside.exists() {
        fs::remove_dir_all(&outside)
            .with_context(|| format!("cannot remove {}", outside.display()))?;
    }
    if let Some(parent) = outside.parent() {
        let _ = fs::remove_dir(parent);
    }
    for sub in ["hosts", "bin"] {
        let p = dir.join(sub);
        if p.exists() {
            fs::remove_dir_all(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    let _ = fs::remove_file(layout::lab_json(dir));
    let _ = fs::remove_file(dir.join("lab.lock"));
    Ok(())
}
