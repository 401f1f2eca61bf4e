//! The snap's `pebble` service: supervises regiond, rackd and named according to `snap_mode`,
//! restarting what exits and following mode changes without a restart.

use crate::conf;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::Duration;

/// The stand-in daemons a snap mode runs.
pub fn daemons(mode: &str) -> &'static [&'static str] {
    match mode {
        "region" => &["regiond", "named"],
        "rack" => &["rackd"],
        "region+rack" => &["regiond", "rackd", "named"],
        _ => &[],
    }
}

fn spawn(name: &str) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg0(name);
    if name != "named" {
        cmd.args(["--flavor", "snap"]);
    }
    // SAFETY: the closure only calls prctl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(crate::util::die_with_parent);
    }
    cmd.spawn()
}

/// Runs forever.
pub fn run() -> anyhow::Result<()> {
    crate::util::set_comm("pebble");
    let mut children: Vec<(&'static str, Child)> = vec![];
    let mut mode = String::new();
    loop {
        // A missing snap_mode is "none" (`get_current_mode` in src/maascli/snap.py), and
        // the snap's pebble plan runs no MAAS service then.
        let want = conf::read_snap_mode();
        let changed = want != mode;
        if changed {
            for (_, c) in children.iter_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
            children.clear();
            mode = want;
        }
        children.retain_mut(|(name, c)| match c.try_wait() {
            Ok(Some(status)) => {
                eprintln!("pebble: {name} exited ({status}); restarting");
                false
            }
            _ => true,
        });
        for name in daemons(&mode) {
            if !children.iter().any(|(n, _)| n == name) {
                match spawn(name) {
                    Ok(c) => children.push((name, c)),
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
