//! One host: its identity, how to run things in it, and the faults it can suffer.

use crate::layout::{self, LAB_MARKER};
use crate::net::{self, Subnet};
use crate::procs;
use crate::run::{checked, describe};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What every host of a lab shares.
#[derive(Debug)]
pub(crate) struct LabInfo {
    pub dir: PathBuf,
    /// See `layout::layers_for`.
    pub layers: PathBuf,
    pub prefix: String,
    pub subnet: Subnet,
    pub catalog: Option<PathBuf>,
    /// See `LabConfig::shared`.
    pub shared: Vec<PathBuf>,
}

/// A process to signal in a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every process of the host whose command name (`comm`, at most 15 bytes) is this.
    Name(String),
    /// One process, by its machine-side PID; it must belong to the host.
    Pid(u32),
}

/// A machine of the lab. Cheap to clone; every method reads the live state, so clones
/// (and hosts of a [`crate::Lab::open`]ed lab in another process) stay in step.
#[derive(Clone, Debug)]
pub struct Host {
    lab: Arc<LabInfo>,
    name: String,
    index: u32,
    ip: Ipv4Addr,
}

/// The host's running init, as the `boot` helper recorded it.
#[derive(Deserialize)]
struct InitRec {
    pid: u32,
    starttime: u64,
    pid_ns: String,
}

impl Host {
    pub(crate) fn new(lab: Arc<LabInfo>, name: &str, index: u32) -> Host {
        let ip = lab.subnet.host(index);
        Host {
            lab,
            name: name.to_string(),
            index,
            ip,
        }
    }

    /// The host's name, which is also its hostname.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host's address on the lab bridge.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The host's address with the lab's prefix length, e.g. "10.77.0.2/24".
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.ip, self.lab.subnet.len)
    }

    /// The name of the host's interface as seen inside it.
    pub fn interface(&self) -> &str {
        "eth0"
    }

    /// A command that runs `program` inside all of the host's namespaces (network, mount,
    /// PID, UTS). `program` is looked up on the caller's `PATH` inside the host; env, cwd
    /// (resolved inside the host), stdin/stdout/stderr and args are set on it as usual.
    /// Killing the returned child kills the program. If the host is down, the command fails
    /// with a message saying so.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(layout::runtime_copy(&self.lab.dir));
        c.arg("enter")
            .arg(layout::init_file(&self.lab.dir, &self.name))
            .arg(&self.lab.prefix)
            .arg("--")
            .arg(program);
        c
    }

    /// Runs `argv` in the host (stdin empty) and returns its output; a non-zero exit is an
    /// error carrying its stderr and stdout.
    pub fn exec(&self, argv: &[&str]) -> Result<Output> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| anyhow::anyhow!("exec: empty argv"))?;
        let mut c = self.command(prog);
        c.args(args).stdin(Stdio::null());
        let out = c
            .output()
            .with_context(|| format!("cannot run {prog} in {}", self.name))?;
        if !out.status.success() {
            bail!(
                "{} in host {} failed ({}): {}{}",
                argv.join(" "),
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                stdout_tail(&out.stdout)
            );
        }
        Ok(out)
    }

    /// The machine-side path of `inside` (an absolute path in the host). While the host is
    /// up this goes through its init's root (`/proc/PID/root/...`), so reads and writes see
    /// exactly what the host sees; symlinks in its directories (such as `/var/run` → `/run`)
    /// are resolved inside the host, a symlink as the last component is left to the caller.
    /// That path is only valid until the host stops. While it
    /// is down: the overlay's upper copy for overlaid directories, the machine's own path
    /// otherwise (tmpfs /run and /tmp are gone then).
    pub fn path(&self, inside: &str) -> PathBuf {
        let rel = inside.trim_start_matches('/');
        if let Some(init) = self.init() {
            return resolve_under(&PathBuf::from(format!("/proc/{}/root", init.pid)), rel);
        }
        let top = rel.split('/').next().unwrap_or("");
        if layout::OVERLAID.contains(&top) {
            let rest = rel[top.len()..].trim_start_matches('/');
            layout::upper(&self.lab.layers, &self.name, top).join(rest)
        } else {
            Path::new("/").join(rel)
        }
    }

    /// Machine-side PIDs of the host's processes whose command name is `comm` (compared on
    /// at most 15 bytes, as the kernel stores it).
    pub fn pids(&self, comm: &str) -> Result<Vec<u32>> {
        let init = self
            .init()
            .ok_or_else(|| anyhow::anyhow!("host {} is down", self.name))?;
        let want: String = comm.chars().take(15).collect();
        let mut v: Vec<u32> = procs::in_pid_ns(&init.pid_ns)
            .into_iter()
            .filter(|p| procs::stat(*p).is_some_and(|s| s.comm == want))
            .collect();
        v.sort();
        Ok(v)
    }

    /// Sends `signal` to a process of the host; a name matching nothing is an error.
    pub fn kill(&self, target: Target, signal: i32) -> Result<()> {
        let pids = match &target {
            Target::Name(n) => {
                let p = self.pids(n)?;
                if p.is_empty() {
                    bail!("no process named {n} in host {}", self.name);
                }
                p
            }
            Target::Pid(p) => {
                self.check_pid(*p)?;
                vec![*p]
            }
        };
        for p in pids {
            procs::signal(p, signal).with_context(|| format!("kill -{signal} {p}"))?;
        }
        Ok(())
    }

    /// Freezes a process of the host (SIGSTOP).
    pub fn freeze(&self, pid: u32) -> Result<()> {
        self.kill(Target::Pid(pid), libc::SIGSTOP)
    }

    /// Thaws a frozen process of the host (SIGCONT).
    pub fn thaw(&self, pid: u32) -> Result<()> {
        self.kill(Target::Pid(pid), libc::SIGCONT)
    }

    /// Cuts the host off the bridge: it can neither send nor receive, but its link stays up
    /// (as when a switch between hosts fails, daemons see no link event).
    pub fn cut_network(&self) -> Result<()> {
        net::cut(&self.lab.prefix, self.index)
    }

    /// Undoes [`Host::cut_network`].
    pub fn restore_network(&self) -> Result<()> {
        net::restore(&self.lab.prefix, self.index)
    }

    /// Pulls the plug: every process of the host is SIGKILLed (its PID 1 dies, taking the
    /// PID namespace with it), its link goes down, /run and /tmp are lost. Disk (overlay
    /// upper dirs) is kept. Returns once no process of the host is left.
    pub fn stop(&self) -> Result<()> {
        if let Some(init) = self.init() {
            procs::signal(init.pid, libc::SIGKILL)?;
            let deadline = Instant::now() + Duration::from_secs(15);
            while procs::alive(init.pid) || !procs::in_pid_ns(&init.pid_ns).is_empty() {
                if Instant::now() > deadline {
                    bail!("host {}: processes survive the power cut", self.name);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = fs::remove_file(layout::init_file(&self.lab.dir, &self.name));
        net::host_link_down(&self.lab.prefix, &self.name)
    }

    /// Boots the host: link up with only its own address, init started, enabled services
    /// started (not awaited: a service may wait for peers). Returns once `systemctl` works
    /// in the host. A network cut stays cut. Starting a running host does nothing.
    pub fn start(&self) -> Result<()> {
        if self.is_up() {
            return Ok(());
        }
        // After a reboot of the machine (or a crash mid-clean-up) the lab's namespaces may be
        // gone while its disk remains: wire the host again.
        let prefix = &self.lab.prefix;
        if !net::netns_exists(&layout::bridge_ns(prefix)) {
            net::create_bridge(prefix)?;
        }
        net::create_host_link(prefix, &self.name, self.index)?;
        net::host_link_up(prefix, &self.name, &self.cidr())?;
        let mut c = Command::new(layout::runtime_copy(&self.lab.dir));
        c.arg("boot")
            .args(["--name", &self.name])
            .args(["--netns", &layout::host_ns(&self.lab.prefix, &self.name)])
            .arg("--host-dir")
            .arg(layout::host_dir(&self.lab.dir, &self.name))
            .arg("--layers-dir")
            .arg(layout::host_layers(&self.lab.layers, &self.name))
            .args(["--prefix", &self.lab.prefix])
            .env(LAB_MARKER, &self.lab.prefix)
            .stdin(Stdio::null());
        if let Some(cat) = &self.lab.catalog {
            c.arg("--catalog").arg(cat);
        }
        for d in &self.lab.shared {
            c.arg("--share").arg(d);
        }
        checked(&mut c)
            .with_context(|| format!("cannot boot host {} ({})", self.name, describe(&c)))?;
        Ok(())
    }

    /// Is the host's init running?
    pub fn is_up(&self) -> bool {
        self.init().is_some()
    }

    /// The running init, if the recorded one is still the same process.
    fn init(&self) -> Option<InitRec> {
        let text = fs::read(layout::init_file(&self.lab.dir, &self.name)).ok()?;
        let rec: InitRec = serde_json::from_slice(&text).ok()?;
        let st = procs::stat(rec.pid)?;
        // A PID 1 being killed loses its namespaces before it turns zombie: that is down.
        let live = st.starttime == rec.starttime
            && st.state != 'Z'
            && procs::ns_id(rec.pid, "pid").is_some();
        live.then_some(rec)
    }

    /// Lays out the host's disk before its first boot (see [`crate::disk::prepare`]).
    pub(crate) fn prepare_disk(&self) -> Result<()> {
        fs::create_dir_all(layout::host_dir(&self.lab.dir, &self.name))?;
        crate::disk::prepare(&self.lab.layers, &self.lab.prefix, &self.name, self.ip)
    }

    fn check_pid(&self, pid: u32) -> Result<()> {
        let init = self
            .init()
            .ok_or_else(|| anyhow::anyhow!("host {} is down", self.name))?;
        if procs::ns_id(pid, "pid").as_deref() != Some(init.pid_ns.as_str()) {
            bail!("process {pid} does not belong to host {}", self.name);
        }
        Ok(())
    }
}

/// `root`/`rel` with the symlinks of every directory component followed as the host would
/// (absolute targets restart at `root`): through /proc/PID/root the kernel would resolve
/// an absolute link against the machine's root instead.
fn resolve_under(root: &Path, rel: &str) -> PathBuf {
    use std::collections::VecDeque;
    let mut todo: VecDeque<String> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(String::from)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            done.pop();
            continue;
        }
        let here = root.join(done.join("/")).join(&c);
        match fs::read_link(&here) {
            Ok(t) if !todo.is_empty() && hops < 40 => {
                hops += 1;
                let t = t.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    done.clear();
                }
                for p in t.split('/').rev().filter(|p| !p.is_empty() && *p != ".") {
                    todo.push_front(p.to_string());
                }
            }
            _ => done.push(c),
        }
    }
    root.join(done.join("/"))
}

fn stdout_tail(stdout: &[u8]) -> String {
    let s = String::from_utf8_lossy(stdout);
    let s = s.trim();
    if s.is_empty() {
        String::new()
    } else {
        let tail: String = s
            .chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("\nstdout: {tail}")
    }
}
