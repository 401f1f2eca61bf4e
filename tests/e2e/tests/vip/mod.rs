//! VIP failover drills on the local model, shared by `tests/vip_drills.rs` (which asserts the
//! issue's bounds) and the `bench-vip` program (which times them for `make bench`; it includes
//! this file with `#[path]`, so both run the very same drill).
//!
//! The drill model: 3 units of the local model's `lm-test` charm (its `lm-test-web` service is
//! a python3 process) with keepalived-vip related over `juju-info`, checking
//! `process:python3`. A [`Poller`] asks every host which addresses its `eth0` has, round after
//! round, for the whole drill (never two holders for more than 1 s). Failover times are
//! measured from the moment a fault is requested to when another host's kernel has the VIP as
//! a local address, watched every 2 ms through `/proc` (see `has_local`).

#![allow(dead_code)]

use anyhow::{anyhow, bail, ensure, Context, Result};
use e2e::{Deployment, Env, FaultOp};
use local_model::{AppPlan, DeployPlan, LocalModel, Substrate};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The keepalived-vip application of the drill model.
pub const APP: &str = "vip";
/// The principal application.
pub const PRINCIPAL: &str = "p";
/// The principal's service the health check watches.
const WEB: &str = "lm-test-web";

/// A VRRP advertisement setting: version and interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Advert {
    /// VRRP version (sub-second intervals need 3).
    pub version: u8,
    /// Seconds between adverts.
    pub secs: f64,
}

impl Advert {
    /// keepalived-vip's default: VRRP v2, one advert a second.
    pub const ONE: Advert = Advert {
        version: 2,
        secs: 1.0,
    };
    /// Sub-second failover: VRRP v3, ten adverts a second.
    pub const TENTH: Advert = Advert {
        version: 3,
        secs: 0.1,
    };

    /// The bundle's region-vip: VRRP v3, four adverts a second (a holder that vanishes is
    /// replaced within 1 s, and one delayed for 0.5 s is not).
    pub const QUARTER: Advert = Advert {
        version: 3,
        secs: 0.25,
    };

    /// The bound for a holder that vanishes: 3 × advert-int + 1 s.
    pub fn host_down_limit(self) -> Duration {
        Duration::from_secs_f64(3.0 * self.secs + 1.0)
    }
}

/// The faults a drill injects into the holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The holder's host is stopped (every process killed, link down).
    HostDown,
    /// The principal's service stops, so the holder's health check fails.
    CheckFailed,
    /// The holder's keepalived gets SIGTERM, as `systemctl stop` sends it.
    CleanStop,
}

impl Fault {
    /// Every fault, in the order the drills run them.
    pub const ALL: [Fault; 3] = [Fault::HostDown, Fault::CheckFailed, Fault::CleanStop];

    /// How the report names it.
    pub fn label(self) -> &'static str {
        match self {
            Fault::HostDown => "host down",
            Fault::CheckFailed => "check failed",
            Fault::CleanStop => "clean stop",
        }
    }
}

/// What one drill saw.
#[derive(Debug, Clone)]
pub struct Failover {
    /// The machine that held the VIP before the fault.
    pub from: String,
    /// The machine that held it after.
    pub to: String,
    /// From the fault's request to when `to` was seen holding the VIP.
    pub took: Duration,
    /// How long the fault's request took to return.
    pub request: Duration,
}

/// One drill model, destroyed on drop (through its [`Deployment`]).
pub struct VipDrill {
    /// The deployment.
    pub d: Deployment,
    /// The principal's machines (each runs a keepalived-vip unit).
    pub machines: Vec<String>,
    /// The VIP, without prefix.
    pub vip: String,
}

/// Whether the host-runtime binary the namespaced hosts need is next to `lm`.
pub fn host_runtime_missing(env: &Env) -> Option<String> {
    let p = env.lm.with_file_name("host-runtime");
    (!p.is_file()).then(|| format!("{} is missing: run `cargo build -p hosts`", p.display()))
}

/// Packs the charm directory `src` (its `files`) to `out`: a zip keeping `dispatch` 0755.
fn pack_charm(src: &Path, files: &[&str], out: &Path) -> Result<()> {
    let tmp = out.with_extension("charm.tmp");
    let _ = std::fs::remove_file(&tmp);
    let o = std::process::Command::new("python3")
        .args(["-m", "zipfile", "-c"])
        .arg(&tmp)
        .args(files)
        .current_dir(src)
        .output()
        .context("running python3 -m zipfile")?;
    ensure!(
        o.status.success(),
        "packing {}: {}",
        src.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::rename(&tmp, out)?;
    Ok(())
}

impl VipDrill {
    /// Deploys the drill model as `name` on subnet 10.77.`net`.0/24 with the VIP at .200
    /// (advert-int 1, VRRP v2); waits until the model settled and one machine holds the VIP.
    pub fn deploy(env: &Env, name: &str, net: u8) -> Result<VipDrill> {
        let dir = env.build.join("e2e").join(name);
        // As Deployment's own constructors do, plus update-status every 2 s (Juju: 5 min), so
        // the units' held/standby messages follow the VIP within the drill.
        let lm = LocalModel::new(&dir, &env.lm)
            .with_env("LM_SUBNET", &format!("10.77.{net}.0/24"))
            .with_env("LM_CATALOG", &env.build.join("catalog").to_string_lossy())
            .with_env("LM_UPDATE_STATUS_MS", "2000");
        lm.cleanup_leftovers()?;
        std::fs::create_dir_all(&dir)?;
        let d = Deployment {
            lm,
            env: env.clone(),
            net,
            dir: dir.clone(),
            settling: Default::default(),
        };
        // Outside the model directory, which starting the daemon empties.
        let inputs = env.build.join("e2e").join(format!("{name}-inputs"));
        std::fs::create_dir_all(&inputs)?;
        let lm_test: PathBuf = inputs.join("lm-test.charm");
        pack_charm(
            &env.repo.join("tests/local-model/testcharms/lm-test"),
            &[
                "metadata.yaml",
                "config.yaml",
                "actions.yaml",
                "dispatch",
                "manifest.yaml",
            ],
            &lm_test,
        )?;
        let blob = inputs.join("blob.txt");
        std::fs::write(&blob, "blob\n")?;
        let vip = format!("10.77.{net}.200");
        let bundle = format!(
            "description: keepalived-vip drills
applications:
  {PRINCIPAL}:
    charm: {lm_test}
    num_units: 3
    options: {{serve-port: 8080}}
    resources: {{blob: {blob}}}
  {APP}:
    charm: {charm}
    options: {{vip: {vip}/24, check: 'process:python3'}}
relations:
- [{PRINCIPAL}, {APP}]
",
            lm_test = lm_test.display(),
            blob = blob.display(),
            charm = env.build.join("keepalived-vip.charm").display(),
        );
        let path = dir.join("bundle.yaml");
        std::fs::write(&path, bundle)?;
        d.lm.deploy_bundle(&path, &[], Substrate::Hosts)?;
        // The model keeps its own copies of charms and resources.
        let _ = std::fs::remove_dir_all(&inputs);
        d.lm.wait(Duration::from_secs(240))?;
        let machines = d.machines_of(PRINCIPAL)?;
        ensure!(
            machines.len() == 3,
            "expected 3 principal machines, got {machines:?}"
        );
        let drill = VipDrill { d, machines, vip };
        drill.one_holder(Duration::from_secs(30))?;
        drill.wait_vrrp_settled(Duration::from_secs(60))?;
        Ok(drill)
    }

    /// Adds a second keepalived-vip application `app` on the same principal (the seed's
    /// region and database VIPs share hosts), with `options` (YAML flow mapping entries).
    pub fn add_vip_app(&self, app: &str, options: &str) -> Result<()> {
        let path = self.d.dir.join(format!("{app}.yaml"));
        std::fs::write(
            &path,
            format!(
                "applications:\n  {app}:\n    charm: {}\n    options: {{{options}}}\n",
                self.d.env.build.join("keepalived-vip.charm").display()
            ),
        )?;
        self.d.lm.deploy_bundle(&path, &[], Substrate::Hosts)?;
        self.d.lm.integrate(PRINCIPAL, app)?;
        self.d.lm.wait(Duration::from_secs(120))?;
        Ok(())
    }

    /// Adds `principal` (the vip-principal test charm, sending no check yet) on the drill's
    /// machines, and keepalived-vip `app` with `options`, related to it over `vip`.
    pub fn add_vip_principal(
        &self,
        principal: &str,
        app: &str,
        options: &[(&str, serde_json::Value)],
    ) -> Result<()> {
        let name = self
            .d
            .dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let inputs = self
            .d
            .dir
            .with_file_name(format!("{name}-{principal}-inputs"));
        std::fs::create_dir_all(&inputs)?;
        let charm = inputs.join("vip-principal.charm");
        pack_charm(
            &self.d.env.repo.join("tests/e2e/testcharms/vip-principal"),
            &["metadata.yaml", "config.yaml", "dispatch", "manifest.yaml"],
            &charm,
        )?;
        let plan = DeployPlan {
            apps: vec![
                AppPlan {
                    name: principal.into(),
                    charm,
                    num_units: self.machines.len() as u32,
                    to: self.machines.clone(),
                    ..Default::default()
                },
                AppPlan {
                    name: app.into(),
                    charm: self.d.env.build.join("keepalived-vip.charm"),
                    options: options
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect(),
                    ..Default::default()
                },
            ],
            relations: vec![(format!("{principal}:vip"), format!("{app}:vip"))],
            ..Default::default()
        };
        let deployed = self.d.lm.deploy_plan(plan, Substrate::Hosts);
        let _ = std::fs::remove_dir_all(&inputs);
        deployed?;
        self.d.lm.wait(Duration::from_secs(120))?;
        Ok(())
    }

    /// Whether `machine` has `addr` on its eth0 now (a machine that cannot answer has not).
    pub fn holds(&self, machine: &str, addr: &str) -> bool {
        holds(&self.d, machine, addr)
    }

    /// The machines holding the VIP now, among those not in `skip`.
    pub fn holders(&self, skip: &BTreeSet<String>) -> Vec<String> {
        self.machines
            .iter()
            .filter(|m| !skip.contains(*m) && self.holds(m, &self.vip))
            .cloned()
            .collect()
    }

    /// Waits until exactly one machine holds `addr`; returns it.
    pub fn one_holder_of(&self, addr: &str, timeout: Duration) -> Result<String> {
        e2e::until(timeout, &format!("one holder of {addr}"), || {
            let h: Vec<&String> = self
                .machines
                .iter()
                .filter(|m| self.holds(m, addr))
                .collect();
            ensure!(h.len() == 1, "{addr} held by {h:?}");
            Ok(h[0].clone())
        })
        .map(|(m, _)| m)
    }

    /// Waits until exactly one machine holds the VIP; returns it.
    pub fn one_holder(&self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let h = self.holders(&BTreeSet::new());
            if h.len() == 1 {
                return Ok(h[0].clone());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} held by {h:?} after {timeout:?}, not by exactly one machine",
                    self.vip
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sets the advert interval (and VRRP version), waits for the hooks and one holder.
    pub fn set_advert(&self, a: Advert) -> Result<()> {
        self.d.lm.config(
            APP,
            &[
                &format!("vrrp-version={}", a.version),
                &format!("advert-int={}", a.secs),
            ],
        )?;
        self.d.lm.wait(Duration::from_secs(120))?;
        let want = format!(
            "advert_int {}\n",
            if a.secs < 1.0 {
                format!("{}", a.secs)
            } else {
                format!("{}", a.secs as u32)
            }
        );
        for m in &self.machines {
            let conf = e2e::read_in(
                &self.d,
                m,
                &format!("/etc/keepalived/keepalived-{APP}.conf"),
            )?;
            ensure!(
                conf.contains(&want),
                "machine {m}: the configuration has no {want:?}"
            );
        }
        self.one_holder(Duration::from_secs(30))?;
        self.wait_vrrp_settled(Duration::from_secs(60))
    }

    /// The workload messages of the keepalived-vip units, by unit.
    pub fn vip_messages(&self, app: &str) -> Result<Vec<(String, String)>> {
        Ok(self
            .d
            .units()?
            .into_iter()
            .filter(|(n, _, _)| n.starts_with(&format!("{app}/")))
            .map(|(n, _, m)| (n, m))
            .collect())
    }

    /// Injects `fault` into the holder, measures until another machine holds the VIP (giving
    /// up after `give_up`), then repairs the fault and waits until the model settled again.
    /// `poller` (already running) sees the whole drill.
    pub fn failover(&self, fault: Fault, poller: &Poller, give_up: Duration) -> Result<Failover> {
        let from = self.one_holder(Duration::from_secs(30))?;
        // The main keepalived process is the oldest (lowest pid) of the holder's keepalived
        // processes of this application; only one application runs on the drill hosts then.
        let main_pid = if fault == Fault::CleanStop {
            let pids: Vec<u32> = serde_json::from_value(self.d.fault(
                &from,
                FaultOp::Pids {
                    comm: "keepalived".into(),
                },
            )?)?;
            Some(
                pids.into_iter()
                    .min()
                    .ok_or_else(|| anyhow!("no keepalived runs on machine {from}"))?,
            )
        } else {
            None
        };
        let op = match fault {
            Fault::HostDown => Some(FaultOp::Stop),
            Fault::CleanStop => Some(FaultOp::Kill {
                target: main_pid.unwrap_or_default().to_string(),
                signal: 15,
            }),
            // The service is stopped, not its process killed: systemd would restart that.
            Fault::CheckFailed => None,
        };
        // The other hosts are watched directly (see `has_local`): the poller goes through the
        // model's daemon, which answers nothing while it stops a host.
        let mut watched = Vec::new();
        for m in self.machines.iter().filter(|m| **m != from) {
            watched.push((m.clone(), self.netns_pid(m)?));
        }
        if fault == Fault::HostDown {
            poller.skip(&from, true);
        }
        // Requested from another thread: the fault is timed from its start, not from when
        // the request returns (a host stop waits for every process to go).
        let lm = self.d.lm.clone();
        let target = from.clone();
        let t0 = Instant::now();
        let req = std::thread::spawn(move || -> Result<Duration> {
            match op {
                Some(op) => lm.fault(&target, op).map(drop)?,
                None => {
                    let (code, _, err) = lm.exec(&target, &["systemctl", "stop", WEB])?;
                    ensure!(code == 0, "systemctl stop {WEB}: {err}");
                }
            }
            Ok(t0.elapsed())
        });
        let seen = loop {
            if let Some((m, _)) = watched.iter().find(|(_, pid)| has_local(*pid, &self.vip)) {
                break Some((m.clone(), t0.elapsed()));
            }
            if t0.elapsed() > give_up {
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let done = req
            .join()
            .map_err(|_| anyhow!("the fault request panicked"))?;
        let request =
            done.with_context(|| format!("injecting {} into machine {from}", fault.label()))?;
        let (to, took) = seen.ok_or_else(|| {
            anyhow!(
                "{}: the VIP did not move from machine {from} within {give_up:?}",
                fault.label()
            )
        })?;
        // Repair, so that the next drill starts from a healthy model.
        match fault {
            Fault::HostDown => {
                self.d
                    .fault(&from, FaultOp::Start)
                    .with_context(|| format!("starting machine {from} again"))?;
                poller.skip(&from, false);
            }
            Fault::CheckFailed => {
                self.d.exec(&from, &["systemctl", "start", WEB])?;
            }
            Fault::CleanStop => {
                self.d
                    .exec(&from, &["systemctl", "start", &format!("keepalived-{APP}")])?;
            }
        }
        self.d.lm.wait(Duration::from_secs(120))?;
        // The next drill needs every host a candidate again: a unit still in FAULT (its
        // check needs two passes to recover) or just restarted would make it slower.
        self.wait_vrrp_settled(Duration::from_secs(60))?;
        Ok(Failover {
            from,
            to,
            took,
            request,
        })
    }

    /// The VRRP state keepalived last entered on `machine` (`MASTER`, `BACKUP`, `FAULT`),
    /// from its log (`journalctl -u` reads the same file).
    pub fn vrrp_state(&self, machine: &str) -> Option<String> {
        let log = e2e::read_in(
            &self.d,
            machine,
            &format!("/var/log/local-model/keepalived-{APP}.service.log"),
        )
        .ok()?;
        log.lines()
            .rev()
            .find_map(|l| {
                l.split_once(" Entering ")
                    .and_then(|(_, rest)| rest.split_whitespace().next())
            })
            .map(str::to_string)
    }

    /// Waits until one machine is VRRP master and every other one is backup.
    pub fn wait_vrrp_settled(&self, timeout: Duration) -> Result<()> {
        e2e::until(timeout, "one VRRP master, the others backups", || {
            let states: Vec<(String, Option<String>)> = self
                .machines
                .iter()
                .map(|m| (m.clone(), self.vrrp_state(m)))
                .collect();
            let count = |s: &str| {
                states
                    .iter()
                    .filter(|(_, x)| x.as_deref() == Some(s))
                    .count()
            };
            ensure!(
                count("MASTER") == 1 && count("BACKUP") == states.len() - 1,
                "VRRP states: {states:?}"
            );
            Ok(())
        })?;
        Ok(())
    }

    /// Asserts for `for_` that `holder` alone keeps the VIP (preempt=false: a returning unit
    /// does not take it back).
    pub fn stays_with(&self, holder: &str, for_: Duration) -> Result<()> {
        let end = Instant::now() + for_;
        while Instant::now() < end {
            let h = self.holders(&BTreeSet::new());
            ensure!(
                h == [holder.to_string()],
                "the VIP moved from machine {holder}: holders {h:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

impl VipDrill {
    /// A machine-side pid of a process in `machine`'s network namespace: its keepalived's.
    fn netns_pid(&self, machine: &str) -> Result<u32> {
        let pids: Vec<u32> = serde_json::from_value(self.d.fault(
            machine,
            FaultOp::Pids {
                comm: "keepalived".into(),
            },
        )?)?;
        // The oldest is keepalived's main process; the others include its check scripts'
        // children, which live for a moment.
        pids.into_iter()
            .min()
            .ok_or_else(|| anyhow!("no keepalived runs on machine {machine}"))
    }
}

/// Whether the network namespace of process `pid` has the IPv4 `addr` as a local address.
/// Read from the kernel's routing tables of that namespace (`/proc/<pid>/net/fib_trie`, where
/// a local address is a `/32 host LOCAL` leaf): no process started and no daemon round trip,
/// so a few milliseconds' resolution. A process that is gone holds nothing.
fn has_local(pid: u32, addr: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/net/fib_trie"))
        .is_ok_and(|trie| trie_has_local(&trie, addr))
}

/// Whether a `fib_trie` text has `addr` as a local address.
fn trie_has_local(trie: &str, addr: &str) -> bool {
    let lines: Vec<&str> = trie.lines().map(str::trim).collect();
    lines
        .windows(2)
        .any(|w| w[0].strip_prefix("|-- ") == Some(addr) && w[1] == "/32 host LOCAL")
}

fn holds(d: &Deployment, machine: &str, addr: &str) -> bool {
    match d
        .lm
        .exec(machine, &["ip", "-o", "addr", "show", "dev", "eth0"])
    {
        Ok((0, out, _)) => out
            .split_whitespace()
            .any(|w| w.split('/').next() == Some(addr)),
        _ => false,
    }
}

/// One poll round: when it ended and which machines held the VIP.
pub type Sample = (Instant, Vec<String>);

/// Asks every (not skipped) machine for the VIP, round after round (at least every 100 ms),
/// on a thread of its own, until finished.
pub struct Poller {
    stop: Arc<AtomicBool>,
    skip: Arc<Mutex<BTreeSet<String>>>,
    samples: Arc<Mutex<Vec<Sample>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    /// Starts polling `drill`'s machines for its VIP.
    pub fn start(drill: &VipDrill) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let skip = Arc::new(Mutex::new(BTreeSet::new()));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (lm, machines, vip) = (
            drill.d.lm.clone(),
            drill.machines.clone(),
            drill.vip.clone(),
        );
        let (st, sk, sa) = (stop.clone(), skip.clone(), samples.clone());
        let handle = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let start = Instant::now();
                let skipped = sk.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let held: Vec<String> = machines
                    .iter()
                    .filter(|m| !skipped.contains(*m))
                    .filter(
                        |m| match lm.exec(m, &["ip", "-o", "addr", "show", "dev", "eth0"]) {
                            Ok((0, out, _)) => out
                                .split_whitespace()
                                .any(|w| w.split('/').next() == Some(vip.as_str())),
                            _ => false,
                        },
                    )
                    .cloned()
                    .collect();
                sa.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((Instant::now(), held));
                if let Some(rest) = Duration::from_millis(100).checked_sub(start.elapsed()) {
                    // Rounds are as fast as the daemon answers; the pause only bounds the load.
                    std::thread::sleep(rest.min(Duration::from_millis(10)));
                }
            }
        });
        Poller {
            stop,
            skip,
            samples,
            handle: Some(handle),
        }
    }

    /// Leaves `machine` out of the rounds (a stopped host cannot answer) or takes it back.
    pub fn skip(&self, machine: &str, skipped: bool) {
        let mut s = self.skip.lock().unwrap_or_else(|e| e.into_inner());
        if skipped {
            s.insert(machine.to_string());
        } else {
            s.remove(machine);
        }
    }

    /// How many rounds were recorded so far (for [`Poller::wait_for`]).
    pub fn mark(&self) -> usize {
        self.samples.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The rounds recorded since `mark`.
    pub fn since(&self, mark: usize) -> Vec<Sample> {
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        s[mark.min(s.len())..].to_vec()
    }

    /// Waits for the first round after `mark` whose holders satisfy `cond`; returns it.
    pub fn wait_for(
        &self,
        mark: usize,
        timeout: Duration,
        cond: impl Fn(&[String]) -> bool,
    ) -> Result<Sample> {
        let deadline = Instant::now() + timeout;
        let mut next = mark;
        loop {
            {
                let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(hit) = s[next.min(s.len())..].iter().find(|(_, h)| cond(h)) {
                    return Ok(hit.clone());
                }
                next = s.len();
                if Instant::now() > deadline {
                    bail!(
                        "not seen within {timeout:?}; last round: {:?}",
                        s.last().map(|(_, h)| h)
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops; returns the rounds and the longest stretch in which two or more machines held
    /// the VIP at once (from the first round that saw it to the last one that still did).
    pub fn finish(mut self) -> (Vec<Sample>, Duration) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let samples = std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()));
        let worst = longest_overlap(&samples);
        (samples, worst)
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The longest run of consecutive rounds with two or more holders, first to last.
pub fn longest_overlap(samples: &[Sample]) -> Duration {
    let mut worst = Duration::ZERO;
    let mut since: Option<Instant> = None;
    for (t, h) in samples {
        match (h.len() >= 2, since) {
            (true, None) => since = Some(*t),
            (true, Some(s)) => worst = worst.max(t.duration_since(s)),
            (false, _) => since = None,
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_are_read_from_the_fib_trie() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.77.41.0\n        /24 link UNICAST\n     |-- 10.77.41.200\n        /32 host LOCAL\nLocal:\n     |-- 10.77.41.3\n        /32 host LOCAL\n     |-- 10.77.41.255\n        /32 link BROADCAST\n";
        assert!(trie_has_local(trie, "10.77.41.200") && trie_has_local(trie, "10.77.41.3"));
        assert!(!trie_has_local(trie, "10.77.41.0") && !trie_has_local(trie, "10.77.41.255"));
        assert!(!trie_has_local(trie, "10.77.41.20"));
    }

    #[test]
    fn overlaps_are_measured_from_first_to_last_round() {
        let t = Instant::now();
        let at = |ms: u64, h: &[&str]| {
            (
                t + Duration::from_millis(ms),
                h.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        let s = vec![
            at(0, &["0"]),
            at(100, &["0", "1"]),
            at(200, &["0", "1"]),
            at(300, &["1"]),
            at(400, &["1", "2"]),
        ];
        assert_eq!(longest_overlap(&s), Duration::from_millis(100));
        assert_eq!(longest_overlap(&s[..1]), Duration::ZERO);
    }
}
