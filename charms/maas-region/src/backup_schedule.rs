//! The `backup-schedule` option (charm-lib's `cron`, read as postgresql-ha reads its own): a
//! systemd timer on the leader's machine whose oneshot service runs the charm's binary,
//! `dispatch region-backup`, which takes the same backup as create-backup from what the hooks
//! wrote ([`crate::backup::JOB`]). Only the leader's machine has it: leadership changes run
//! hooks (leader-elected, leader-settings-changed), which move it, so one backup is taken per
//! scheduled time.

use charm_lib::cron::Schedule;
use charm_lib::{Cmd, Context, FileOptions, MachineExt, ServiceOp};
use std::path::Path;

/// The option.
pub const OPTION: &str = "backup-schedule";
/// The timer (its service has the same name: systemd.timer(5) `Unit=` defaults to it).
pub const TIMER: &str = "maas-region-backup.timer";
/// The timer's unit file.
pub const TIMER_FILE: &str = "/etc/systemd/system/maas-region-backup.timer";
/// The service's unit file.
pub const SERVICE_FILE: &str = "/etc/systemd/system/maas-region-backup.service";

/// The timer. Not `Persistent=`: a run missed while the machine was down is not made up at
/// boot; the next one comes at its time.
pub fn timer_unit(s: &Schedule) -> String {
    format!(
        "# Rendered by the maas-region charm ({OPTION}); edits are overwritten.\n\
         [Unit]\n\
         Description=maas-region scheduled backup of the region's files ({OPTION})\n\
         \n\
         [Timer]\n\
         OnCalendar={}\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        s.on_calendar()
    )
}

/// The service: root, as it reads MAAS's files and the root-only s3cmd configuration.
pub fn service_unit(charm_dir: &str) -> String {
    format!(
        "# Rendered by the maas-region charm ({OPTION}); edits are overwritten.\n\
         [Unit]\n\
         Description=maas-region scheduled backup of the region's files ({OPTION})\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={charm_dir}/dispatch region-backup\n"
    )
}

/// Writes and enables the timer for `schedule`, or removes it (`None`). Returns whether it is
/// on.
pub fn apply(ctx: &Context, schedule: Option<&Schedule>) -> anyhow::Result<bool> {
    let m = ctx.machine;
    let Some(s) = schedule else {
        if m.file_info(Path::new(TIMER_FILE))?.is_some() {
            m.run(&Cmd::new("systemctl", ["disable", "--now", TIMER]).allow_failure())?;
        }
        let mut changed = false;
        for f in [TIMER_FILE, SERVICE_FILE] {
            changed |= m.remove_file(Path::new(f))?;
        }
        if changed {
            m.daemon_reload()?;
        }
        return Ok(false);
    };
    let a = m.write_file(
        Path::new(SERVICE_FILE),
        service_unit(&ctx.event.charm_dir()).as_bytes(),
        &FileOptions::root(0o644),
    )?;
    let b = m.write_file(
        Path::new(TIMER_FILE),
        timer_unit(s).as_bytes(),
        &FileOptions::root(0o644),
    )?;
    if a || b {
        m.daemon_reload()?;
    }
    m.service(ServiceOp::Enable, TIMER)?;
    if !m.service_is_active(TIMER)? {
        m.service(ServiceOp::Start, TIMER)?;
    } else if b {
        // A running timer keeps its old elapse time until restarted.
        m.service(ServiceOp::Restart, TIMER)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timer_runs_the_charms_binary_at_the_cron_times() {
        let t = timer_unit(&charm_lib::cron::parse("30 2 * * *").unwrap().unwrap());
        assert!(t.contains("\nOnCalendar=*-*-* 02:30:00 UTC\n"), "{t}");
        let s = service_unit("/var/lib/juju/agents/unit-maas-region-0/charm");
        assert!(
            s.contains(
                "\nExecStart=/var/lib/juju/agents/unit-maas-region-0/charm/dispatch region-backup\n"
            ),
            "{s}"
        );
        assert!(s.contains("\nType=oneshot\n"));
    }
}
