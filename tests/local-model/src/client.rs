//! The Rust API for tests and the CLI: find or start the daemon of a model directory,
//! send it requests, wait for the model to settle, run actions, inject faults, destroy.

use crate::layout::Layout;
use crate::protocol::{call, DeployPlan, Failures, FaultOp, Request, Response, UnitError};
use crate::state::{ActionRun, Substrate};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Failed runs in a row of one hook with the same message after which waiting stops: the
/// first failure and three retries, 35 s with Juju's backoff (5, 10, 20 s).
pub const STUCK_AFTER_SAME: u32 = 4;

/// A handle on one local model (a model directory and its daemon).
#[derive(Clone, Debug)]
pub struct LocalModel {
    pub layout: Layout,
    /// The `lm` binary used to start the daemon (and whose symlinks are the hook tools).
    pub lm: PathBuf,
    /// Extra environment for the daemon (e.g. `LM_RETRY_BASE_MS`).
    pub env: Vec<(String, String)>,
}

impl LocalModel {
    /// A model in `dir`, started with the `lm` binary at `lm`.
    pub fn new(dir: &Path, lm: &Path) -> LocalModel {
        LocalModel {
            layout: Layout::new(dir),
            lm: lm.to_path_buf(),
            env: vec![],
        }
    }

    /// Add an environment variable for the daemon when it is started.
    pub fn with_env(mut self, k: &str, v: &str) -> LocalModel {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Send one request; errors carry the daemon's message.
    pub fn request(&self, req: &Request) -> Result<Value> {
        let resp: Response = call(&self.layout.lm_sock(), req)
            .context("is the model deployed? (no daemon answers)")?;
        if !resp.ok {
            bail!("{}", resp.error);
        }
        Ok(resp.data)
    }

    /// Whether a daemon answers on the model's socket.
    pub fn running(&self) -> bool {
        self.layout.lm_sock().exists() && self.request(&Request::Ping).is_ok()
    }

    /// Clean what a crashed run left (daemon, hosts, files) so a new deploy starts fresh.
    pub fn cleanup_leftovers(&self) -> Result<()> {
        if let Ok(pid) = std::fs::read_to_string(self.layout.daemon_pid()) {
            if let Ok(pid) = pid.trim().parse::<u32>() {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                if cmdline.contains("daemon")
                    && cmdline.contains(&*self.layout.dir.to_string_lossy())
                {
                    let _ = crate::machines::send_signal(pid, 9);
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        }
        #[cfg(feature = "namespaced")]
        crate::namespaced::cleanup(&self.layout.lab())?;
        if self.layout.dir.exists() {
            std::fs::remove_dir_all(&self.layout.dir)
                .with_context(|| format!("removing {}", self.layout.dir.display()))?;
        }
        Ok(())
    }

    /// Start a daemon (after cleaning leftovers) unless one is running.
    pub fn ensure_daemon(&self, substrate: Substrate) -> Result<()> {
        if self.running() {
            let v = self.request(&Request::Ping)?;
            let running: Substrate = serde_json::from_value(v["substrate"].clone())?;
            if running != substrate {
                bail!("the model in {} already runs on {running:?} machines; destroy it first to use {substrate:?}", self.layout.dir.display());
            }
            return Ok(());
        }
        self.cleanup_leftovers()?;
        std::fs::create_dir_all(&self.layout.dir)?;
        let log = std::fs::File::create(self.layout.daemon_log())?;
        let sub = match substrate {
            Substrate::Bare => "bare",
            Substrate::Hosts => "hosts",
        };
        let mut cmd = std::process::Command::new(&self.lm);
        cmd.arg("daemon")
            .arg("--model-dir")
            .arg(&self.layout.dir)
            .arg("--substrate")
            .arg(sub);
        cmd.envs(self.env.iter().cloned())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        {
            use std::os::unix::process::CommandExt;
            // its own process group: a Ctrl-C on the CLI must not kill the model
            cmd.process_group(0);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.lm.display()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.running() {
                // reap it in the background when it exits, so no zombie is left
                std::thread::spawn(move || child.wait());
                return Ok(());
            }
            if let Some(st) = child.try_wait()? {
                let log = std::fs::read_to_string(self.layout.daemon_log()).unwrap_or_default();
                bail!("the daemon exited ({st}): {}", log.trim());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("the daemon did not start within 30 s")
    }

    /// Deploy a plan (starting the daemon if needed); returns the units added.
    pub fn deploy_plan(&self, plan: DeployPlan, substrate: Substrate) -> Result<Vec<String>> {
        self.ensure_daemon(substrate)?;
        let v = self.request(&Request::Deploy { plan })?;
        Ok(serde_json::from_value(v)?)
    }

    /// Deploy a bundle file with overlays.
    pub fn deploy_bundle(
        &self,
        bundle: &Path,
        overlays: &[PathBuf],
        substrate: Substrate,
    ) -> Result<Vec<String>> {
        self.deploy_plan(crate::bundle::load_bundle(bundle, overlays)?, substrate)
    }

    /// The model as JSON (`lm status --format=json`).
    pub fn status(&self) -> Result<Value> {
        self.request(&Request::Status)
    }

    /// Units not settled yet, with why.
    pub fn unsettled(&self) -> Result<Vec<(String, String)>> {
        Ok(serde_json::from_value(self.request(&Request::Unsettled)?)?)
    }

    /// Hook runs that exited non-zero so far (oldest first), and the units in error now.
    pub fn failures(&self) -> Result<Failures> {
        Ok(serde_json::from_value(self.request(&Request::Failures)?)?)
    }

    /// Why waiting longer cannot settle the model, if so: a unit's hook failed
    /// [`STUCK_AFTER_SAME`] times in a row with the same message, the last time after
    /// `since_ms` (ms since the epoch: when the wait began, so that a cause fixed before it is
    /// given its retry), or every unit not settled is in error with no retry coming (only
    /// `resolve` helps). The answer names each such unit, its hook and error, and the last
    /// lines of its output.
    pub fn stuck(&self, since_ms: u64) -> Result<Option<String>> {
        let u = self.unsettled()?;
        if !u.iter().any(|(_, why)| why.starts_with("error:")) {
            return Ok(None);
        }
        let errors = self.failures()?.errors;
        let no_retry_only = u
            .iter()
            .all(|(n, _)| errors.iter().any(|e| &e.unit == n && !e.retry_scheduled));
        let stuck: Vec<&UnitError> = errors
            .iter()
            .filter(|e| no_retry_only || (e.same >= STUCK_AFTER_SAME && e.last_at_ms >= since_ms))
            .collect();
        if stuck.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::new();
        for e in stuck {
            let why = if e.retry_scheduled || e.same >= STUCK_AFTER_SAME {
                format!(
                    "failed {} times in a row with the same error (retrying does not help)",
                    e.same
                )
            } else {
                "failed and no retry comes (`lm resolve` it once the cause is fixed)".into()
            };
            out.push(format!(
                "{}: hook {:?} {why}: {}",
                e.unit, e.hook, e.message
            ));
            out.push(format!(
                "  the last lines of its output (all of it: lm logs {}):",
                e.unit
            ));
            out.extend(e.tail.iter().map(|l| format!("    {l}")));
        }
        Ok(Some(out.join("\n")))
    }

    /// Wait until every unit is idle with no hook queued. Fails early, naming each unit, hook
    /// and error, when waiting cannot help (see [`LocalModel::stuck`]); on timeout the error
    /// names the units still busy.
    pub fn wait(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let since = crate::state::now_ms();
        loop {
            let u = self.unsettled()?;
            if u.is_empty() {
                return Ok(());
            }
            if let Some(why) = self.stuck(since)? {
                bail!("units in error, waiting cannot settle the model:\n{why}");
            }
            if Instant::now() >= deadline {
                let list: Vec<String> = u.iter().map(|(n, why)| format!("{n} ({why})")).collect();
                bail!("model not settled after {timeout:?}: {}", list.join(", "));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Poll `cond` on the status JSON until it holds or the timeout passes.
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        cond: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status()?;
            if cond(&s) {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                bail!("timed out after {timeout:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Run an action and wait for its result.
    pub fn run_action(
        &self,
        unit: &str,
        action: &str,
        params: &[&str],
        timeout: Duration,
    ) -> Result<ActionRun> {
        let id: u32 = serde_json::from_value(self.request(&Request::Run {
            unit: unit.into(),
            action: action.into(),
            params: params.iter().map(|s| s.to_string()).collect(),
        })?)?;
        let deadline = Instant::now() + timeout;
        loop {
            let run: ActionRun = serde_json::from_value(self.request(&Request::Action { id })?)?;
            if run.status == "completed" || run.status == "failed" {
                return Ok(run);
            }
            if Instant::now() >= deadline {
                bail!(
                    "action {id} ({action} on {unit}) still {} after {timeout:?}",
                    run.status
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Run `argv` in a machine (id or unit name); returns (exit code, stdout, stderr).
    pub fn exec(&self, machine: &str, argv: &[&str]) -> Result<(i32, String, String)> {
        let v = self.request(&Request::Exec {
            machine: machine.into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
        })?;
        Ok((
            v["code"].as_i64().unwrap_or(-1) as i32,
            v["stdout"].as_str().unwrap_or("").into(),
            v["stderr"].as_str().unwrap_or("").into(),
        ))
    }

    /// Where a path inside a unit's (or machine's) filesystem is, seen from the test.
    pub fn host_path(&self, unit_or_machine: &str, inside: &str) -> Result<PathBuf> {
        Ok(serde_json::from_value(self.request(
            &Request::HostPath {
                machine: unit_or_machine.into(),
                inside: inside.into(),
            },
        )?)?)
    }

    /// `lm add-unit app -n N [--to X]`; returns the new units.
    pub fn add_unit(&self, app: &str, n: u32, to: Option<&str>) -> Result<Vec<String>> {
        Ok(serde_json::from_value(self.request(
            &Request::AddUnit {
                app: app.into(),
                n,
                to: to.map(String::from),
            },
        )?)?)
    }

    /// `lm remove-unit u...`.
    pub fn remove_unit(&self, units: &[&str]) -> Result<()> {
        self.request(&Request::RemoveUnit {
            units: units.iter().map(|s| s.to_string()).collect(),
        })
        .map(drop)
    }

    /// `lm integrate a b`; returns the relation id.
    pub fn integrate(&self, a: &str, b: &str) -> Result<u32> {
        Ok(serde_json::from_value(self.request(
            &Request::Integrate {
                a: a.into(),
                b: b.into(),
            },
        )?)?)
    }

    /// `lm remove-relation a b`.
    pub fn remove_relation(&self, a: &str, b: &str) -> Result<()> {
        self.request(&Request::RemoveRelation {
            a: a.into(),
            b: b.into(),
        })
        .map(drop)
    }

    /// `lm config app k=v...`; returns the effective config.
    pub fn config(&self, app: &str, set: &[&str]) -> Result<Value> {
        self.request(&Request::Config {
            app: app.into(),
            set: set.iter().map(|s| s.to_string()).collect(),
            reset: vec![],
        })
    }

    /// `lm resolve unit`.
    pub fn resolve(&self, unit: &str) -> Result<()> {
        self.request(&Request::Resolve {
            unit: unit.into(),
            no_retry: false,
        })
        .map(drop)
    }

    /// Inject a fault into a machine (id or unit name).
    pub fn fault(&self, machine: &str, fault: FaultOp) -> Result<Value> {
        self.request(&Request::Fault {
            machine: machine.into(),
            fault,
        })
    }

    /// Stop the daemon and remove everything (hosts, processes, files).
    pub fn destroy(&self) -> Result<()> {
        if self.running() {
            let pid = std::fs::read_to_string(self.layout.daemon_pid())
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok());
            self.request(&Request::Destroy)?;
            if let Some(pid) = pid {
                let deadline = Instant::now() + Duration::from_secs(30);
                while is_alive(pid) {
                    if Instant::now() > deadline {
                        return Err(anyhow!("daemon {pid} did not exit"));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                // exited; give its parent (our reaper thread, or init) a moment to reap it
                let reap = Instant::now() + Duration::from_secs(2);
                while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < reap {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        self.cleanup_leftovers()
    }
}

/// Whether a process exists and is not a zombie.
fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}
