//! Starting and stopping MAAS's services the way the real CLIs do, through systemctl.

use std::process::Command;

fn disabled() -> bool {
    std::env::var("MAAS_STANDIN_NO_SERVICES").as_deref() == Ok("1")
}

/// Runs `systemctl <verb> <unit>`; failures are reported on stderr, not fatal, because the
/// files are already written and MAAS itself carries on in that case.
pub fn systemctl(verb: &str, unit: &str) -> bool {
    if disabled() {
        return true;
    }
    match Command::new("systemctl").args([verb, unit]).status() {
        Ok(s) if s.success() => true,
        Ok(s) => {
            eprintln!("warning: systemctl {verb} {unit} failed ({s})");
            false
        }
        Err(e) => {
            eprintln!("warning: could not run systemctl {verb} {unit}: {e}");
            false
        }
    }
}

/// The snap's single service.
pub const SNAP_SERVICE: &str = "snap.maas.pebble.service";
