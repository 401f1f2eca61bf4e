//! Namespaced machines: each Juju machine is a `hosts::Host` (tests/CONTRACTS.md §1), with
//! its own network, mount, PID and UTS namespaces and its own IP on the lab's bridge.

use crate::machines::{Fault, KillTarget, MachineInfo, Machines};
use anyhow::{anyhow, Context, Result};
use hosts::{Host, Lab, LabConfig, Target};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The lab prefix for a model: derived from the lab dir, so two models never share one
/// (a lab's creation cleans whatever else uses its prefix).
pub fn prefix_for(dir: &Path) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dir.to_string_lossy().bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    const A: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let tail: String = (0..4)
        .map(|i| A[((h >> (i * 6)) % 36) as usize] as char)
        .collect();
    format!("lm{tail}")
}

/// Remove what a crashed model's lab left behind.
pub fn cleanup(lab_dir: &Path) -> Result<()> {
    if lab_dir.join("lab.json").exists() {
        if let Ok(lab) = Lab::open(lab_dir) {
            lab.destroy().context("destroying the previous lab")?;
        }
    }
    let left = Lab::leftovers(&prefix_for(lab_dir));
    if !left.is_empty() {
        // Lab::create of the same prefix removes those (no host boots: nothing to share)
        let lab = Lab::create(LabConfig {
            shared: vec![],
            ..config(lab_dir)
        })?;
        lab.destroy()?;
    }
    Ok(())
}

/// The package catalog (CONTRACTS.md §2): `$LM_CATALOG`, else `catalog/` next to the
/// model dir (`build/catalog` for the default `build/local-model`), if it exists.
fn catalog_dir(lab_dir: &Path) -> Option<PathBuf> {
    if let Some(c) = std::env::var_os("LM_CATALOG") {
        return Some(PathBuf::from(c)).filter(|p| p.is_dir());
    }
    let model = lab_dir.parent()?;
    Some(model.parent()?.join("catalog")).filter(|p| p.is_dir())
}

/// What every host must see as the machine has it, wherever the clone and the model are
/// (hosts have their own /tmp and overlay /var): the model dir (agent.sock, the hook-tool
/// symlinks, resources) and the directory of the `lm` binary they point to (with the other
/// binaries built next to it that tests run inside hosts). An `lm` installed under /usr is
/// seen through the hosts' overlay of /usr, which hosts may not share. `LM_SHARED_DIRS`
/// (colon-separated) adds directories of the caller's, e.g. where a test charm records its hooks.
fn shared_dirs(lab_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = lab_dir
        .parent()
        .map(Path::to_path_buf)
        .into_iter()
        .collect();
    if let Some(bin_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
        .filter(|d| !d.starts_with("/usr"))
    {
        v.push(bin_dir);
    }
    let extra = std::env::var("LM_SHARED_DIRS").unwrap_or_default();
    v.extend(
        extra
            .split(':')
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
    );
    v
}

fn config(dir: &Path) -> LabConfig {
    LabConfig {
        dir: dir.to_path_buf(),
        prefix: prefix_for(dir),
        // bundles/overlays/local-model.yaml puts its VIPs in 10.77.0.200+
        subnet: std::env::var("LM_SUBNET").unwrap_or_else(|_| "10.77.0.0/24".into()),
        catalog: catalog_dir(dir),
        shared: shared_dirs(dir),
    }
}

/// Machines on a `hosts::Lab`.
pub struct Namespaced {
    lab: Option<Lab>,
    hosts: BTreeMap<String, Host>,
}

impl Namespaced {
    /// Create the lab in `dir` (cleaning a crashed lab of the same prefix first).
    pub fn create(dir: &Path) -> Result<Namespaced> {
        let lab = Lab::create(config(dir)).context("creating the hosts lab")?;
        Ok(Namespaced {
            lab: Some(lab),
            hosts: BTreeMap::new(),
        })
    }

    fn host(&self, id: &str) -> Result<&Host> {
        self.hosts
            .get(id)
            .ok_or_else(|| anyhow!("machine {id} not found"))
    }

    fn lab(&mut self) -> Result<&mut Lab> {
        self.lab
            .as_mut()
            .ok_or_else(|| anyhow!("the lab was destroyed"))
    }
}

fn host_name(id: &str) -> String {
    format!("m{id}")
}

impl Machines for Namespaced {
    fn add(&mut self, id: &str) -> Result<MachineInfo> {
        let h = self.lab()?.add_host(&host_name(id))?;
        let info = MachineInfo {
            hostname: h.name().to_string(),
            ip: h.ip().to_string(),
            cidr: h.cidr(),
        };
        self.hosts.insert(id.to_string(), h);
        Ok(info)
    }
    fn remove(&mut self, id: &str) -> Result<()> {
        self.hosts.remove(id);
        self.lab()?.remove_host(&host_name(id))
    }
    fn unit_path(&self, _id: &str, inside: &str) -> String {
        inside.to_string()
    }
    fn host_path(&self, id: &str, inside: &str) -> PathBuf {
        match self.hosts.get(id) {
            Some(h) => h.path(inside),
            None => PathBuf::from(format!("/nonexistent-machine-{id}{inside}")),
        }
    }
    fn command(&self, id: &str, program: &str, cwd: &str) -> Result<Command> {
        // `Host::command` takes the cwd from the caller's own working directory, which must
        // then exist on the machine side too; a charm dir only exists inside the host, so
        // change directory inside it and exec the program (same process, same env).
        let mut c = self.host(id)?.command("/bin/sh");
        c.args([
            "-c",
            "cd -- \"$1\" || exit 127; shift; exec \"$@\"",
            "sh",
            cwd,
            program,
        ]);
        Ok(c)
    }
    fn fault(&mut self, id: &str, fault: &Fault) -> Result<()> {
        let h = self.host(id)?;
        match fault {
            Fault::Kill {
                target: KillTarget::Name(n),
                signal,
            } => h.kill(Target::Name(n.clone()), *signal),
            Fault::Kill {
                target: KillTarget::Pid(p),
                signal,
            } => h.kill(Target::Pid(*p), *signal),
            Fault::Freeze(p) => h.freeze(*p),
            Fault::Thaw(p) => h.thaw(*p),
            Fault::Cut => h.cut_network(),
            Fault::Restore => h.restore_network(),
            Fault::Stop => h.stop(),
            Fault::Start => h.start(),
        }
    }
    fn pids(&self, id: &str, comm: &str) -> Result<Vec<u32>> {
        self.host(id)?.pids(comm)
    }
    fn destroy(&mut self) -> Result<()> {
        self.hosts.clear();
        match self.lab.take() {
            Some(l) => l.destroy(),
            None => Ok(()),
        }
    }
}
