//! Drives the `juju` CLI against a bootstrapped controller (LXD) to deploy `bundles/maas-ha.yaml`
//! and run the HA drills on real machines, with real MAAS. Every test first asks [`Juju::find`],
//! which says plainly what is missing when it cannot run: then the test prints that and skips.
//!
//! To run them (see README.md, "Juju + LXD integration tests"):
//!
//! ```text
//! snap install juju lxd && lxd init --auto && juju bootstrap localhost
//! make charms
//! MAAS_HA_OVERLAY=$PWD/bundles/overlays/my-lxd.yaml cargo test -p integration -- --nocapture
//! ```
//!
//! The overlay sets the two VIPs to free addresses of the LXD bridge's subnet.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A Juju model created for one test run, destroyed when dropped.
pub struct Juju {
    model: String,
    overlay: PathBuf,
}

/// Why the tests cannot run here.
pub fn missing() -> Option<String> {
    if Command::new("juju")
        .arg("version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        return Some("juju is not on PATH: install juju and bootstrap an LXD controller (README: Juju + LXD integration tests)".into());
    }
    let ctl = Command::new("juju")
        .args(["controllers", "--format=json"])
        .output();
    let current = ctl
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
        .and_then(|v| {
            v.get("current-controller")
                .and_then(|c| c.as_str())
                .map(String::from)
        });
    if current.is_none() {
        return Some("no Juju controller is reachable: run `juju bootstrap localhost`".into());
    }
    if Command::new("lxc")
        .arg("version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        return Some("lxc is not on PATH: the host-down drills stop LXD containers".into());
    }
    match std::env::var("MAAS_HA_OVERLAY") {
        Ok(p) if Path::new(&p).exists() => None,
        _ => {
            Some("MAAS_HA_OVERLAY is not set to an overlay with the VIPs of your LXD subnet".into())
        }
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl Juju {
    /// Creates a fresh model, or says why it cannot.
    pub fn find() -> std::result::Result<Juju, String> {
        if let Some(why) = missing() {
            return Err(why);
        }
        let model = format!("maas-ha-it-{}", std::process::id());
        let j = Juju {
            model,
            overlay: PathBuf::from(std::env::var("MAAS_HA_OVERLAY").unwrap()),
        };
        j.juju(&["add-model", &j.model])
            .map_err(|e| format!("cannot add a model: {e}"))?;
        Ok(j)
    }

    fn juju(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("juju")
            .args(args)
            .output()
            .context("running juju")?;
        if !out.status.success() {
            bail!(
                "juju {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn in_model<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = args.to_vec();
        v.extend(["-m", self.model.as_str()]);
        v
    }

    /// `juju deploy ./bundles/maas-ha.yaml --overlay $MAAS_HA_OVERLAY`.
    pub fn deploy_bundle(&self) -> Result<()> {
        let bundle = repo().join("bundles/maas-ha.yaml");
        let (b, o) = (
            bundle.to_string_lossy().into_owned(),
            self.overlay.to_string_lossy().into_owned(),
        );
        self.juju(&self.in_model(&["deploy", &b, "--overlay", &o]))
            .map(drop)
    }

    /// `juju status --format=json`.
    pub fn status(&self) -> Result<Value> {
        Ok(serde_json::from_str(
            &self.juju(&self.in_model(&["status", "--format=json"]))?,
        )?)
    }

    /// Every unit (subordinates included) with its workload status and message.
    pub fn units(&self) -> Result<Vec<(String, String, String)>> {
        let st = self.status()?;
        let mut out = Vec::new();
        let empty = serde_json::Map::new();
        for app in st["applications"].as_object().unwrap_or(&empty).values() {
            for (name, u) in app["units"].as_object().unwrap_or(&empty) {
                let ws = &u["workload-status"];
                out.push((
                    name.clone(),
                    ws["current"].as_str().unwrap_or("").into(),
                    ws["message"].as_str().unwrap_or("").into(),
                ));
                for (sub, s) in u["subordinates"].as_object().unwrap_or(&empty) {
                    let ws = &s["workload-status"];
                    out.push((
                        sub.clone(),
                        ws["current"].as_str().unwrap_or("").into(),
                        ws["message"].as_str().unwrap_or("").into(),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Polls until every unit is active, or fails naming the others.
    pub fn wait_active(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let units = self.units()?;
            let not: Vec<_> = units.iter().filter(|(_, s, _)| s != "active").collect();
            if !units.is_empty() && not.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("not active after {timeout:?}: {not:?}");
            }
            std::thread::sleep(Duration::from_secs(5));
        }
    }

    /// `juju run <unit> <action> k=v... --format=json`: the action's results.
    pub fn run_action(&self, unit: &str, action: &str, params: &[&str]) -> Result<Value> {
        let mut args = vec!["run", unit, action];
        args.extend_from_slice(params);
        args.push("--format=json");
        let v: Value = serde_json::from_str(&self.juju(&self.in_model(&args))?)?;
        Ok(v.as_object()
            .and_then(|m| m.values().next())
            .map(|r| r["results"].clone())
            .unwrap_or(Value::Null))
    }

    /// `juju add-unit <app>`.
    pub fn add_unit(&self, app: &str) -> Result<()> {
        self.juju(&self.in_model(&["add-unit", app])).map(drop)
    }

    /// `juju exec --unit <unit> -- <cmd>`.
    pub fn exec(&self, unit: &str, cmd: &str) -> Result<String> {
        self.juju(&self.in_model(&["exec", "--unit", unit, "--", cmd]))
    }

    /// The LXD container name of a unit's machine.
    pub fn container_of(&self, unit: &str) -> Result<String> {
        let st = self.status()?;
        let app = unit.split('/').next().unwrap_or_default();
        let machine = st["applications"][app]["units"][unit]["machine"]
            .as_str()
            .context("unit has no machine")?
            .to_string();
        st["machines"][&machine]["instance-id"]
            .as_str()
            .map(String::from)
            .context("machine has no instance id")
    }

    /// `lxc stop --force` / `lxc start`: a host down and back.
    pub fn power(&self, container: &str, on: bool) -> Result<()> {
        let args: &[&str] = if on {
            &["start", container]
        } else {
            &["stop", "--force", container]
        };
        let out = Command::new("lxc").args(args).output()?;
        anyhow::ensure!(
            out.status.success(),
            "lxc {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

impl Drop for Juju {
    fn drop(&mut self) {
        let _ = self.juju(&[
            "destroy-model",
            &self.model,
            "--no-prompt",
            "--force",
            "--destroy-storage",
        ]);
    }
}

/// GETs `url` with curl; `Ok(body)` on a 2xx answer.
pub fn http_get(url: &str) -> Result<String> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "3", url])
        .output()?;
    anyhow::ensure!(out.status.success(), "GET {url} failed");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `f` until it succeeds or `timeout` passes; returns how long it took.
pub fn until<T>(timeout: Duration, mut f: impl FnMut() -> Result<T>) -> Result<Duration> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(_) => return Ok(start.elapsed()),
            Err(e) if start.elapsed() > timeout => bail!("still failing after {timeout:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}
