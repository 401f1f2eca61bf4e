//! Machines behind one small trait: where a unit's files live, how a process is started
//! in a machine, and the faults tests inject. Two implementations: [`Bare`] (plain
//! processes under a per-machine directory, for the runtime's own fast tests) and, with the
//! `namespaced` feature, `crate::namespaced::Namespaced` on top of the `hosts` crate.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Addresses of a new machine.
#[derive(Clone, Debug)]
pub struct MachineInfo {
    pub hostname: String,
    pub ip: String,
    pub cidr: String,
}

/// Which process a kill targets.
#[derive(Clone, Debug, PartialEq)]
pub enum KillTarget {
    Name(String),
    Pid(u32),
}

/// A fault to inject into a machine.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    Kill { target: KillTarget, signal: i32 },
    Freeze(u32),
    Thaw(u32),
    Cut,
    Restore,
    Stop,
    Start,
}

/// What the runtime needs from machines.
pub trait Machines: Send {
    /// Create machine `id` (a Juju machine number).
    fn add(&mut self, id: &str) -> Result<MachineInfo>;
    /// Remove a machine and everything running in it.
    fn remove(&mut self, id: &str) -> Result<()>;
    /// `inside` (an absolute path in the machine) as processes in that machine see it.
    fn unit_path(&self, id: &str, inside: &str) -> String;
    /// `inside` as the runtime (outside the machine) can read and write it.
    fn host_path(&self, id: &str, inside: &str) -> PathBuf;
    /// A command that runs `program` in machine `id` with working directory `cwd` (a path
    /// as the machine sees it); the caller sets env and stdio.
    fn command(&self, id: &str, program: &str, cwd: &str) -> Result<Command>;
    /// Inject a fault.
    fn fault(&mut self, id: &str, fault: &Fault) -> Result<()>;
    /// Machine-side PIDs of processes called `comm` in the machine.
    fn pids(&self, id: &str, comm: &str) -> Result<Vec<u32>>;
    /// Tear everything down; nothing may be left behind.
    fn destroy(&mut self) -> Result<()>;
}

/// Send a signal with kill(1): the std library has no portable way to signal a PID.
pub fn send_signal(pid: u32, signal: i32) -> Result<()> {
    let out = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .output()
        .context("running kill")?;
    if !out.status.success() {
        bail!(
            "kill -{signal} {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Bare machines: a directory per machine under `dir`; processes run on this machine.
/// No isolation at all, so name-based kills and network faults are refused.
pub struct Bare {
    dir: PathBuf,
}

impl Bare {
    /// Machines under `dir` (created if missing).
    pub fn new(dir: &Path) -> Result<Bare> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Bare {
            dir: dir.to_path_buf(),
        })
    }
    fn root(&self, id: &str) -> PathBuf {
        self.dir.join(format!("machine-{id}"))
    }
}

impl Machines for Bare {
    fn add(&mut self, id: &str) -> Result<MachineInfo> {
        std::fs::create_dir_all(self.root(id))?;
        let n: u32 = id.parse().unwrap_or(0);
        // distinct loopback addresses: all of 127/8 answers on lo
        let ip = format!("127.0.{}.{}", 1 + n / 250, 2 + n % 250);
        Ok(MachineInfo {
            hostname: format!("bare-{id}"),
            cidr: format!("{ip}/8"),
            ip,
        })
    }
    fn remove(&mut self, id: &str) -> Result<()> {
        let r = self.root(id);
        if r.exists() {
            std::fs::remove_dir_all(&r).with_context(|| format!("removing {}", r.display()))?;
        }
        Ok(())
    }
    fn unit_path(&self, id: &str, inside: &str) -> String {
        format!("{}{}", self.root(id).display(), inside)
    }
    fn host_path(&self, id: &str, inside: &str) -> PathBuf {
        PathBuf::from(self.unit_path(id, inside))
    }
    fn command(&self, _id: &str, program: &str, cwd: &str) -> Result<Command> {
        let mut c = Command::new(program);
        c.current_dir(cwd);
        Ok(c)
    }
    fn fault(&mut self, _id: &str, fault: &Fault) -> Result<()> {
        match fault {
            Fault::Kill { target: KillTarget::Pid(p), signal } => send_signal(*p, *signal),
            Fault::Freeze(p) => send_signal(*p, 19),
            Fault::Thaw(p) => send_signal(*p, 18),
            other => bail!("{other:?} is not supported on bare machines (no namespaces); use the namespaced substrate"),
        }
    }
    fn pids(&self, _id: &str, _comm: &str) -> Result<Vec<u32>> {
        bail!("bare machines share this machine's process table; look processes up by PID")
    }
    fn destroy(&mut self) -> Result<()> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing {}", self.dir.display()))?;
        }
        Ok(())
    }
}
