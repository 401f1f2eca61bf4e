//! The lab: its bridge, its hosts, its persisted state and its clean-up.

use crate::host::{Host, LabInfo};
use crate::layout::{self, LAB_MARKER};
use crate::net::{self, Subnet};
use crate::procs;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How to create a lab.
#[derive(Clone, Debug)]
pub struct LabConfig {
    /// Lab state (lab.json, each host's overlay upper dirs, logs). Must not be under a
    /// directory that hosts overlay or mount tmpfs on (/etc, /var, /usr, /opt, /srv, /snap,
    /// /root, /home, /run, /tmp), since hosts must see it exactly as the machine does.
    pub dir: PathBuf,
    /// 1–6 characters of `[a-z0-9]`; every netns and link name of the lab starts with it.
    pub prefix: String,
    /// IPv4 subnet such as "10.77.0.0/24" (at least a /24): hosts get .2, .3, ...;
    /// .200–.254 stay free for VIPs.
    pub subnet: String,
    /// Package catalog directory (CONTRACTS.md section 2), bind-mounted read-only in every
    /// host at /usr/lib/local-model/catalog.
    pub catalog: Option<PathBuf>,
}

/// What lab.json holds: enough for [`Lab::open`] from another process.
#[derive(Serialize, Deserialize)]
struct LabState {
    dir: PathBuf,
    prefix: String,
    subnet: String,
    catalog: Option<PathBuf>,
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
        let dir = prepare_dir(&cfg.dir)?;
        if let Some(c) = &cfg.catalog {
            anyhow::ensure!(c.is_dir(), "catalog {} is not a directory", c.display());
        }
        clean_prefix(&cfg.prefix)?;
        remove_state(&dir)?;
        // Hosts overlay /snap; the machine needs the mount point even if it has no snaps.
        if !Path::new("/snap").exists() {
            fs::create_dir("/snap").context("cannot create the /snap mount point")?;
        }
        install_runtime(&dir)?;
        net::create_bridge(&cfg.prefix)?;
        let lab = Lab {
            info: Arc::new(LabInfo {
                dir,
                prefix: cfg.prefix,
                subnet,
                catalog: cfg.catalog.map(|c| c.canonicalize().unwrap_or(c)),
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
                prefix: st.prefix,
                subnet: Subnet::parse(&st.subnet)?,
                catalog: st.catalog,
            }),
            subnet_text: st.subnet,
            hosts: st.hosts,
        })
    }

    /// Adds and boots a host; `name` is also its hostname.
    pub fn add_host(&mut self, name: &str) -> Result<Host> {
        layout::check_host_name(name)?;
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
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .map(|h| Host::new(self.info.clone(), &h.name, h.index))
            .ok_or_else(|| anyhow::anyhow!("no host {name} in lab {}", self.info.prefix))
    }

    /// All hosts, in the order they were added.
    pub fn hosts(&self) -> Vec<Host> {
        self.hosts
            .iter()
            .map(|h| Host::new(self.info.clone(), &h.name, h.index))
            .collect()
    }

    /// Stops a host and removes its namespaces, links and disk.
    pub fn remove_host(&mut self, name: &str) -> Result<()> {
        let host = self.host(name)?;
        host.stop()?;
        net::netns_delete(&layout::host_ns(&self.info.prefix, name))?;
        let _ = fs::remove_dir_all(layout::host_dir(&self.info.dir, name));
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
        remove_state(&self.info.dir)?;
        let _ = fs::remove_dir(&self.info.dir);
        let left = Lab::leftovers(&self.info.prefix);
        anyhow::ensure!(left.is_empty(), "lab {} left: {left:?}", self.info.prefix);
        Ok(())
    }

    /// What of a lab with that prefix still exists: processes, network namespaces, links
    /// and mounts, one description each. Empty when the lab is fully gone.
    pub fn leftovers(prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let nss = lab_netns(prefix);
        for ns in &nss {
            out.push(format!("netns {ns}"));
        }
        for l in net::bridge_links(prefix) {
            out.push(format!("link {l} (in netns {})", layout::bridge_ns(prefix)));
        }
        for pid in lab_processes(prefix, &nss) {
            let comm = procs::stat(pid).map(|s| s.comm).unwrap_or_default();
            out.push(format!("process {pid} ({comm})"));
        }
        let netns_dir = format!("/run/netns/{prefix}-");
        if let Ok(mi) = fs::read_to_string("/proc/self/mountinfo") {
            for line in mi.lines() {
                if let Some(mp) = line.split(' ').nth(4) {
                    if mp.starts_with(&netns_dir) {
                        out.push(format!("mount {mp}"));
                    }
                }
            }
        }
        out
    }

    fn save(&self) -> Result<()> {
        let st = LabState {
            dir: self.info.dir.clone(),
            prefix: self.info.prefix.clone(),
            subnet: self.subnet_text.clone(),
            catalog: self.info.catalog.clone(),
            hosts: self.hosts.clone(),
        };
        let path = layout::lab_json(&self.info.dir);
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(&st)?)?;
        fs::rename(&tmp, &path)?;
        Ok(())
    }
}

/// Creates the lab dir and checks that hosts will see it as the machine does.
fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    anyhow::ensure!(
        dir.is_absolute(),
        "lab dir {} must be absolute",
        dir.display()
    );
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let top = dir
        .components()
        .nth(1)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    if layout::OVERLAID.contains(&top.as_str()) || layout::TMPFS.contains(&top.as_str()) {
        bail!(
            "lab dir {} is under /{top}, which hosts overlay or replace",
            dir.display()
        );
    }
    let s = dir.to_string_lossy();
    // Overlay mount options are comma- and colon-separated.
    anyhow::ensure!(
        !s.contains([',', ':', ' ']),
        "lab dir {s} must not contain ',', ':' or spaces"
    );
    Ok(dir)
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

/// Removes what a lab stored in `dir` (only the paths a lab creates).
fn remove_state(dir: &Path) -> Result<()> {
    for sub in ["hosts", "bin"] {
        let p = dir.join(sub);
        if p.exists() {
            fs::remove_dir_all(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    let _ = fs::remove_file(layout::lab_json(dir));
    Ok(())
}

fn lab_netns(prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = net::netns_list()
        .into_iter()
        .filter(|n| layout::is_lab_ns(prefix, n))
        .collect();
    v.sort();
    v
}

/// Live processes of the lab: carrying its marker, or inside one of its network namespaces.
fn lab_processes(prefix: &str, nss: &[String]) -> Vec<u32> {
    let ids: HashSet<String> = nss
        .iter()
        .filter_map(|n| procs::ns_file_id(&Path::new("/run/netns").join(n), "net"))
        .collect();
    let me = std::process::id();
    procs::all_pids()
        .into_iter()
        .filter(|p| *p != me)
        .filter(|p| {
            procs::has_env(*p, LAB_MARKER, prefix)
                || procs::ns_id(*p, "net").is_some_and(|id| ids.contains(&id))
        })
        .filter(|p| procs::alive(*p))
        .collect()
}

/// Kills every process of the lab and deletes its namespaces (hosts first, bridge last).
fn clean_prefix(prefix: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    // A dying process loses its environment and namespaces before it becomes a zombie (a
    // PID 1 waits that way for its namespace to empty): remember what was seen and wait
    // for those to be really gone too.
    let mut seen: HashMap<u32, u64> = HashMap::new();
    loop {
        let pids = lab_processes(prefix, &lab_netns(prefix));
        for p in &pids {
            if let Some(st) = procs::stat(*p) {
                seen.insert(*p, st.starttime);
            }
        }
        seen.retain(|p, start| {
            procs::stat(*p).is_some_and(|s| s.starttime == *start && procs::alive(*p))
        });
        if pids.is_empty() && seen.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!("processes of lab {prefix} survive SIGKILL: {pids:?} {seen:?}");
        }
        for p in pids {
            let _ = procs::signal(p, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let bridge = layout::bridge_ns(prefix);
    for ns in lab_netns(prefix).iter().filter(|n| **n != bridge) {
        net::netns_delete(ns)?;
    }
    net::netns_delete(&bridge)?;
    Ok(())
}
