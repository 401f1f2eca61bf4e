//! Fixtures for end-to-end tests: the packed charms deployed in the local model on namespaced
//! hosts, with the real daemons, plus probes that run inside hosts and record every attempt.
//!
//! A test starts with [`env_or_skip!`] (root, built charms, `lm`, the MAAS stand-in catalog
//! and the Patroni wheelhouse must be there: `make test` prepares them), deploys with
//! [`Deployment::bundle`] or [`Deployment::plan`], and asserts on status, files and probe
//! records. Each deployment gets its own subnet `10.77.<n>.0/24` (VIPs at .200 and .201), so
//! tests in different binaries never collide. Timing goals belong in `make bench`; tests use
//! generous bounds only.

pub mod drills;
pub mod exposure;
pub mod failover_watch;
pub mod ha;
pub mod pg_drills;
pub mod probe;
pub mod prometheus;
pub mod watch;

use anyhow::{anyhow, bail, Context, Result};
use local_model::{LocalModel, Substrate};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use local_model::protocol::FaultOp;

/// What [`Deployment::wait_active`] remembers between calls: whether the model settled once
/// already (the first deployment), and the last failed hook run it reported.
#[derive(Debug, Default)]
pub struct SettleLog {
    settled_once: std::sync::atomic::AtomicBool,
    reported_until_ms: std::sync::atomic::AtomicU64,
}

/// One line per failed hook run: `unit: hook "name" exited N: message`.
pub fn failure_lines(failed: &[local_model::state::HookFailure]) -> String {
    failed
        .iter()
        .map(|f| format!("  {}", f.line()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Paths of everything a deployment needs.
#[derive(Debug, Clone)]
pub struct Env {
    /// The repository root.
    pub repo: PathBuf,
    /// The `lm` binary.
    pub lm: PathBuf,
    /// The `e2e-probe` binary (run inside hosts).
    pub probe: PathBuf,
    /// `build/`.
    pub build: PathBuf,
}

impl Env {
    /// Everything in place, or why not (the test then prints it and skips).
    pub fn get() -> std::result::Result<Env, String> {
        if std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .map(|l| l.split_whitespace().nth(1) == Some("0"))
            })
            != Some(true)
        {
            return Err("not root: namespaced hosts need root (run `make test` as root)".into());
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .canonicalize()
            .map_err(|e| e.to_string())?;
        // Test binaries run from target/<profile>/deps, binaries (demo, bench) from target/<profile>.
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .ok_or("cannot find the target directory")?;
        let bin_dir = if exe_dir.ends_with("deps") {
            exe_dir.parent().map(Path::to_path_buf).unwrap_or(exe_dir)
        } else {
            exe_dir
        };
        let env = Env {
            lm: bin_dir.join("lm"),
            probe: bin_dir.join("e2e-probe"),
            build: repo.join("build"),
            repo,
        };
        let need: [(&Path, &str); 4] = [
            (&env.lm, "cargo build -p local-model"),
            (&env.probe, "cargo build -p e2e"),
            (&env.build.join("catalog/maas.json"), "make catalog"),
            (&env.build.join("wheelhouse.tar.gz"), "make deps"),
        ];
        for (path, how) in need {
            if !path.exists() {
                return Err(format!(
                    "{} is missing: run `{how}` (make test does)",
                    path.display()
                ));
            }
        }
        for c in [
            "keepalived-vip",
            "maas-rack",
            "maas-region",
            "postgresql-ha",
        ] {
            if !env.build.join(format!("{c}.charm")).exists() {
                return Err(format!(
                    "build/{c}.charm is missing: run `make charms` (make test does)"
                ));
            }
        }
        Ok(env)
    }
}

/// Overlays named in `$E2E_OVERLAYS` (colon-separated paths), added after the fixtures' own:
/// e.g. one that points an application at a charm built elsewhere, to try a fix.
pub fn extra_overlays() -> Vec<PathBuf> {
    std::env::var("E2E_OVERLAYS")
        .map(|v| {
            v.split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Gets the [`Env`] or prints why the test is skipped and returns from it.
#[macro_export]
macro_rules! env_or_skip {
    () => {
        match $crate::Env::get() {
            Ok(e) => e,
            Err(why) => {
                eprintln!("SKIPPED (local-model end-to-end): {why}");
                return;
            }
        }
    };
}

/// One local model on its own subnet, destroyed when dropped (set `E2E_KEEP=1` to keep it
/// for a look around with `lm --model-dir build/e2e/<name>`).
pub struct Deployment {
    /// The model.
    pub lm: LocalModel,
    /// Paths.
    pub env: Env,
    /// Third octet of the subnet.
    pub net: u8,
    /// The model directory.
    pub dir: PathBuf,
    /// See [`Deployment::wait_active`].
    pub settling: SettleLog,
}

impl Deployment {
    fn model(env: &Env, name: &str, net: u8) -> Result<Deployment> {
        Deployment::model_in(env, &env.build.join("e2e").join(name), net, &[])
    }

    fn model_in(env: &Env, dir: &Path, net: u8, settings: &[(&str, &str)]) -> Result<Deployment> {
        let dir = dir.to_path_buf();
        let mut lm = LocalModel::new(&dir, &env.lm)
            .with_env("LM_SUBNET", &format!("10.77.{net}.0/24"))
            .with_env("LM_CATALOG", &env.build.join("catalog").to_string_lossy());
        for (k, v) in settings {
            lm = lm.with_env(k, v);
        }
        // A crashed earlier run of the same test leaves its model behind: start clean.
        lm.cleanup_leftovers()?;
        std::fs::create_dir_all(&dir)?;
        Ok(Deployment {
            lm,
            env: env.clone(),
            net,
            dir,
            settling: SettleLog::default(),
        })
    }

    /// A handle on a model already running in `dir` (deployed on 10.77.<net>.0/24), e.g. to
    /// run a drill again on the demo's model; nothing is cleaned or deployed. Dropping it
    /// destroys the model unless `E2E_KEEP` is set (or it is wrapped in `ManuallyDrop`).
    pub fn attach(env: &Env, dir: &Path, net: u8) -> Result<Deployment> {
        let lm = LocalModel::new(dir, &env.lm);
        if !lm.running() {
            bail!("no model runs in {}", dir.display());
        }
        let settling = SettleLog::default();
        // Not a first deployment: whatever happened before is not this handle's to judge.
        settling
            .settled_once
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(Deployment {
            lm,
            env: env.clone(),
            net,
            dir: dir.to_path_buf(),
            settling,
        })
    }

    /// The region VIP of this deployment's subnet.
    pub fn region_vip(&self) -> String {
        format!("10.77.{}.200", self.net)
    }

    /// The database VIP of this deployment's subnet.
    pub fn db_vip(&self) -> String {
        format!("10.77.{}.201", self.net)
    }

    /// Deploys `bundles/maas-ha.yaml` with an overlay that puts the VIPs on this subnet and
    /// attaches the Patroni wheelhouse, plus `extra_overlays`.
    pub fn bundle(
        env: &Env,
        name: &str,
        net: u8,
        extra_overlays: &[PathBuf],
    ) -> Result<Deployment> {
        Deployment::model(env, name, net)?.deploy_maas_ha(extra_overlays)
    }

    /// Like [`Deployment::bundle_with`], with the model in `dir` (e.g. `build/local-model`,
    /// where `lm` finds it without `--model-dir`) instead of `build/e2e/<name>`.
    pub fn bundle_in(
        env: &Env,
        dir: &Path,
        net: u8,
        extra_overlays: &[PathBuf],
        settings: &[(&str, &str)],
    ) -> Result<Deployment> {
        Deployment::model_in(env, dir, net, settings)?.deploy_maas_ha(extra_overlays)
    }

    /// Like [`Deployment::bundle`], with model settings for the local model's daemon (e.g.
    /// `("LM_UPDATE_STATUS_MS", "60000")`, as `juju model-config update-status-hook-interval=1m`).
    pub fn bundle_with(
        env: &Env,
        name: &str,
        net: u8,
        extra_overlays: &[PathBuf],
        settings: &[(&str, &str)],
    ) -> Result<Deployment> {
        Deployment::model_in(env, &env.build.join("e2e").join(name), net, settings)?
            .deploy_maas_ha(extra_overlays)
    }

    fn deploy_maas_ha(self, extra_overlays: &[PathBuf]) -> Result<Deployment> {
        let d = self;
        let env = d.env.clone();
        let overlay = d.dir.join("site-overlay.yaml");
        std::fs::write(
            &overlay,
            format!(
                "applications:\n  region-vip:\n    options:\n      vip: {}/24\n  db-vip:\n    options:\n      vip: {}/24\n  postgresql-ha:\n    resources:\n      wheelhouse: {}\n",
                d.region_vip(),
                d.db_vip(),
                env.build.join("wheelhouse.tar.gz").display()
            ),
        )?;
        let mut overlays = vec![overlay];
        overlays.extend_from_slice(extra_overlays);
        d.lm.deploy_bundle(
            &env.repo.join("bundles/maas-ha.yaml"),
            &overlays,
            Substrate::Hosts,
        )?;
        Ok(d)
    }

    /// Deploys a bundle written for the test (charm paths may use `{build}` for build/).
    pub fn yaml(env: &Env, name: &str, net: u8, bundle: &str) -> Result<Deployment> {
        Deployment::yaml_with(env, name, net, bundle, &[])
    }

    /// Like [`Deployment::yaml`], with model settings for the local model's daemon (e.g.
    /// `("LM_UPDATE_STATUS_MS", "10000")`).
    pub fn yaml_with(
        env: &Env,
        name: &str,
        net: u8,
        bundle: &str,
        settings: &[(&str, &str)],
    ) -> Result<Deployment> {
        let d = Deployment::model_in(env, &env.build.join("e2e").join(name), net, settings)?;
        let path = d.dir.join("bundle.yaml");
        std::fs::write(
            &path,
            bundle.replace("{build}", &env.build.to_string_lossy()),
        )?;
        d.lm.deploy_bundle(&path, &[], Substrate::Hosts)?;
        Ok(d)
    }

    /// Like [`Deployment::yaml`], with overlays after the bundle (e.g. [`extra_overlays`]).
    pub fn yaml_overlaid(
        env: &Env,
        name: &str,
        net: u8,
        bundle: &str,
        overlays: &[PathBuf],
    ) -> Result<Deployment> {
        let d = Deployment::model_in(env, &env.build.join("e2e").join(name), net, &[])?;
        let path = d.dir.join("bundle.yaml");
        std::fs::write(
            &path,
            bundle.replace("{build}", &env.build.to_string_lossy()),
        )?;
        d.lm.deploy_bundle(&path, overlays, Substrate::Hosts)?;
        Ok(d)
    }

    /// `lm status --format=json`.
    pub fn status(&self) -> Result<Value> {
        self.lm.status()
    }

    /// Every unit (subordinates too) with (workload status, message).
    pub fn units(&self) -> Result<Vec<(String, String, String)>> {
        Ok(units_of(&self.status()?))
    }

    /// Waits until the model is settled and every unit is active; the error lists the rest.
    /// Fails early when a hook keeps failing the same way (`LocalModel::stuck`). Once
    /// settled, prints every hook run that exited non-zero since the last call; the first
    /// time (the first deployment) any such run is an error: a normal deployment has none.
    pub fn wait_active(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let since = local_model::state::now_ms();
        loop {
            let units = self.units()?;
            let settled = self.lm.unsettled()?.is_empty();
            let not_active: Vec<String> = units
                .iter()
                .filter(|(_, s, _)| s != "active")
                .map(|(n, s, m)| format!("{n} {s}: {m}"))
                .collect();
            if settled && !units.is_empty() && not_active.is_empty() {
                return self.check_failed_hooks();
            }
            if let Some(why) = self.lm.stuck(since)? {
                bail!("units in error, waiting cannot settle the model:\n{why}");
            }
            if Instant::now() > deadline {
                bail!(
                    "not every unit active after {timeout:?}:\n  {}\nunsettled: {:?}",
                    not_active.join("\n  "),
                    self.lm.unsettled()?
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Reports the hook runs that exited non-zero since the last report; on the first
    /// settling of a new deployment, any of them is an error.
    fn check_failed_hooks(&self) -> Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        let failed = self.lm.failures()?.failed;
        let after = self.settling.reported_until_ms.load(Relaxed);
        let new: Vec<_> = failed.into_iter().filter(|f| f.at_ms > after).collect();
        if let Some(last) = new.last() {
            self.settling.reported_until_ms.store(last.at_ms, Relaxed);
            eprintln!(
                "    {} hook run(s) exited non-zero while settling (lm logs <unit>):\n{}",
                new.len(),
                failure_lines(&new)
            );
        }
        let first = !self.settling.settled_once.swap(true, Relaxed);
        if first && !new.is_empty() {
            bail!(
                "hooks exited non-zero during the first deployment (a normal deployment has none):\n{}",
                failure_lines(&new)
            );
        }
        Ok(())
    }

    /// The machine id a unit runs on.
    pub fn machine_of(&self, unit: &str) -> Result<String> {
        let st = self.status()?;
        find_unit(&st, unit)
            .and_then(|u| u["machine"].as_str().map(String::from))
            .ok_or_else(|| anyhow!("unit {unit} has no machine"))
    }

    /// A unit's address (`public-address` in status).
    pub fn address_of(&self, unit: &str) -> Result<String> {
        let st = self.status()?;
        find_unit(&st, unit)
            .and_then(|u| u["public-address"].as_str().map(String::from))
            .ok_or_else(|| anyhow!("unit {unit} has no address"))
    }

    /// The machines that run units of `app` (principal apps only).
    pub fn machines_of(&self, app: &str) -> Result<Vec<String>> {
        let st = self.status()?;
        let mut ms: Vec<String> = st["applications"][app]["units"]
            .as_object()
            .map(|u| {
                u.values()
                    .filter_map(|u| u["machine"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        ms.sort();
        Ok(ms)
    }

    /// Runs a command in a machine (id or unit); errors on a non-zero exit, with stderr.
    pub fn exec(&self, machine: &str, argv: &[&str]) -> Result<String> {
        let (code, out, err) = self.lm.exec(machine, argv)?;
        if code != 0 {
            bail!(
                "{} on {machine} exited {code}: {}",
                argv.join(" "),
                err.trim()
            );
        }
        Ok(out)
    }

    /// The machines whose interface carries `vip` now (ask each up machine).
    pub fn vip_holders(&self, vip: &str) -> Result<Vec<String>> {
        let st = self.status()?;
        let mut holders = Vec::new();
        for (id, m) in st["machines"].as_object().into_iter().flatten() {
            // A stopped machine cannot be asked (and holds nothing); a cut one still can, and
            // one that kept the VIP through a cut is a second holder.
            if !matches!(machine_state(m), "started" | "cut") {
                continue;
            }
            if let Ok((0, out, _)) = self.lm.exec(id, &["ip", "-o", "-4", "addr", "show"]) {
                if out
                    .split_whitespace()
                    .any(|w| w.split('/').next() == Some(vip))
                {
                    holders.push(id.clone());
                }
            }
        }
        Ok(holders)
    }

    /// Waits until exactly one machine holds `vip`; returns it.
    pub fn wait_vip_holder(&self, vip: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let h = self.vip_holders(vip)?;
            if h.len() == 1 {
                return Ok(h[0].clone());
            }
            if Instant::now() > deadline {
                bail!("{vip} is held by {h:?} after {timeout:?}, not by exactly one machine");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Injects a fault into a machine (id or unit).
    pub fn fault(&self, machine: &str, fault: FaultOp) -> Result<Value> {
        self.lm.fault(machine, fault)
    }

    /// Runs an action and returns its results; a failed action is an error with its message.
    pub fn action(&self, unit: &str, action: &str, params: &[&str]) -> Result<Value> {
        let run = self
            .lm
            .run_action(unit, action, params, Duration::from_secs(120))?;
        let v = serde_json::to_value(&run)?;
        if run.status != "completed" {
            bail!("action {action} on {unit} {}: {}", run.status, v["message"]);
        }
        Ok(v["results"].clone())
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::env::var_os("E2E_KEEP").is_none() {
            if let Err(e) = self.lm.destroy() {
                eprintln!("destroying {}: {e:#}", self.dir.display());
            }
        }
    }
}

/// A machine's state in a status JSON (`juju-status.current`, as `juju status` puts it).
pub fn machine_state(m: &Value) -> &str {
    m["juju-status"]["current"].as_str().unwrap_or("")
}

/// Every unit in a status JSON, subordinates included: (name, workload status, message).
pub fn units_of(st: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut add = |name: &str, u: &Value| {
        let ws = &u["workload-status"];
        out.push((
            name.to_string(),
            ws["current"].as_str().unwrap_or("").to_string(),
            ws["message"].as_str().unwrap_or("").to_string(),
        ));
    };
    for app in st["applications"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, a)| a)
    {
        for (name, u) in app["units"].as_object().into_iter().flatten() {
            add(name, u);
            for (sub, s) in u["subordinates"].as_object().into_iter().flatten() {
                add(sub, s);
            }
        }
    }
    out
}

fn find_unit<'a>(st: &'a Value, unit: &str) -> Option<&'a Value> {
    let app = unit.split('/').next()?;
    st["applications"][app]["units"].get(unit).or_else(|| {
        st["applications"]
            .as_object()?
            .values()
            .flat_map(|a| a["units"].as_object().into_iter().flatten())
            .find_map(|(_, u)| u["subordinates"].get(unit))
    })
}

/// Polls `f` until it returns `Ok` or `timeout` passes; returns how long it took.
pub fn until<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<T>,
) -> Result<(T, Duration)> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return Ok((v, start.elapsed())),
            Err(e) if start.elapsed() > timeout => {
                return Err(e.context(format!("{what}: still failing after {timeout:?}")))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Reads a file inside a machine through the machine-side path.
pub fn read_in(d: &Deployment, machine: &str, inside: &str) -> Result<String> {
    let p = d.lm.host_path(machine, inside)?;
    std::fs::read_to_string(&p).with_context(|| format!("{machine}:{inside} ({})", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_state_is_read_where_status_puts_it() {
        let mut state = local_model::state::ModelState::new(Substrate::Bare, Default::default());
        for (id, s) in [("0", "started"), ("1", "stopped")] {
            let m = local_model::state::Machine {
                id: id.into(),
                hostname: format!("m{id}"),
                ip: String::new(),
                cidr: String::new(),
                state: s.into(),
                down_since_ms: None,
                base: String::new(),
            };
            state.machines.insert(id.into(), m);
        }
        let st = local_model::status::status_json(&state);
        assert_eq!(machine_state(&st["machines"]["0"]), "started");
        assert_eq!(machine_state(&st["machines"]["1"]), "stopped");
        assert_eq!(
            machine_state(&serde_json::json!({"state": "started"})),
            "",
            "not where status puts it"
        );
    }
}
