//! The snap's `pebble` service: supervises MAAS's services according to `snap_mode`,
//! restarting what exits and following mode changes without a restart.
//!
//! MAAS 3.6's layers (snap/local/tree/usr/share/maas/pebble/layers/): `regiond` and
//! `apiserver` are `startup: enabled` in region modes, `rackd` in rack modes; `http` (nginx),
//! `temporal` and `bind9` are `startup: disabled` and started by regiond's service monitor
//! (src/maasserver/service_monitor.py) through pebble, `http` and `agent` (maas-agent, rack
//! layer) by rackd's (src/provisioningserver/service_monitor.py): one nginx on a region+rack
//! host, whoever asks first. Pebble restarts a service that exits
//! (`on-failure` defaults to `restart`) and does not stop the others when one dies, so a killed
//! regiond leaves nginx and Temporal running. The stand-in keeps named always on in region
//! modes, as before.

use crate::conf;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The services a snap mode starts by itself (`startup: enabled`), by stand-in command name.
pub fn daemons(mode: &str, f: crate::snapinfo::Features) -> Vec<&'static str> {
    let region = mode == "region" || mode == "region+rack";
    let apiserver = f.apiserver_and_temporal;
    let mut d = vec![];
    if region {
        d.push("regiond");
        if apiserver {
            d.push("apiserver");
        }
    }
    if mode.contains("rack") {
        d.push("rackd");
    }
    if region {
        d.push("named");
    }
    d
}

/// The command each pebble service runs (a stand-in command name).
fn command_of(service: &str) -> Option<&'static str> {
    match service {
        "http" => Some("maas-http"),
        "temporal" => Some("temporal"),
        "agent" => Some("maas-agent"),
        _ => None,
    }
}

/// `pebble start NAME...` as regiond's service monitor calls it: records the services to run.
pub fn request_start(names: &[&str]) -> anyhow::Result<()> {
    let path = crate::paths::pebble_started();
    let cur = std::fs::read_to_string(&path).unwrap_or_default();
    let mut lines: Vec<&str> = cur.lines().collect();
    let before = lines.len();
    for n in names {
        if !lines.contains(n) {
            lines.push(n);
        }
    }
    if lines.len() != before {
        let mut text = lines.join("\n");
        text.push('\n');
        crate::util::write_file(&path, text.as_bytes(), 0o644, None)?;
    }
    Ok(())
}

/// The `startup: disabled` services of the mode's layers that regiond's or rackd's service
/// monitor asked for: `http` (base layer: every mode), `temporal` (region layer), `agent`
/// (rack layer, 003-maas-rack-layer.yaml).
fn requested(mode: &str) -> Vec<&'static str> {
    let region = mode == "region" || mode == "region+rack";
    let rack = mode.contains("rack");
    if !(region || rack) {
        return vec![];
    }
    let cur = std::fs::read_to_string(crate::paths::pebble_started()).unwrap_or_default();
    ["http", "temporal", "agent"]
        .into_iter()
        .filter(|n| match *n {
            "temporal" => region,
            "agent" => rack,
            _ => true,
        })
        .filter(|n| cur.lines().any(|l| l.trim() == *n))
        .collect()
}

fn spawn(name: &str) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg0(command_of(name).unwrap_or(name));
    if name != "named" {
        cmd.args(["--flavor", "snap"]);
    }
    // SAFETY: the closure only calls prctl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(crate::util::die_with_parent);
    }
    cmd.spawn()
}

/// Stops a service as pebble does: SIGTERM, then SIGKILL after its kill-delay (5 s).
fn stop(c: &mut Child) {
    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe {
        libc::kill(c.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}

/// Runs forever.
pub fn run() -> anyhow::Result<()> {
    crate::util::set_comm("pebble");
    // A fresh pebble has started nothing that is `startup: disabled`.
    let _ = std::fs::remove_file(crate::paths::pebble_started());
    let mut children: Vec<(&'static str, Child)> = vec![];
    let mut mode = String::new();
    let mut features = crate::snapinfo::features_of(None);
    loop {
        // A missing snap_mode is "none" (`get_current_mode` in src/maascli/snap.py), and
        // the snap's pebble plan runs no MAAS service then.
        let want = conf::read_snap_mode();
        let changed = want != mode;
        if changed {
            for (_, c) in children.iter_mut() {
                stop(c);
            }
            children.clear();
            if !mode.is_empty() {
                let _ = std::fs::remove_file(crate::paths::pebble_started());
            }
            mode = want;
            // The snap's revision decides its layers; the stand-in asks snapd once per plan.
            features = crate::snapinfo::features(crate::paths::Flavor::Snap);
        }
        children.retain_mut(|(name, c)| match c.try_wait() {
            Ok(Some(status)) => {
                eprintln!("pebble: {name} exited ({status}); restarting");
                false
            }
            _ => true,
        });
        let mut wanted = daemons(&mode, features);
        wanted.extend(requested(&mode));
        for name in wanted {
            if !children.iter().any(|(n, _)| *n == name) {
                match spawn(name) {
                    Ok(c) => {
                        if !changed {
                            eprintln!("pebble: started {name}");
                        }
                        children.push((name, c))
                    }
                    Err(e) => eprintln!("pebble: cannot start {name}: {e}"),
                }
            }
        }
        if changed {
            let running: Vec<&str> = children.iter().map(|(n, _)| *n).collect();
            eprintln!("pebble: snap mode {mode}: running {running:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
