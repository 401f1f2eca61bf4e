//! The `backup-schedule` option: a cron schedule (the five fields of crontab(5), in UTC, or one
//! of its `@daily`-style shorthands), run by a systemd timer the charm writes on every unit.
//! The timer's service runs a root-owned script as postgres that backs up on the primary only.
//!
//! The schedule itself is charm-lib's `cron` (shared with maas-region): why cron, and what of
//! it is refused, is written there.

use crate::{backup, paths};
pub use charm_lib::cron::{parse, Schedule};
use charm_lib::{Context, FileOptions, MachineExt, ServiceOp};
use std::path::Path;

/// The option.
pub const OPTION: &str = "backup-schedule";
/// What the option expects, for a Blocked status.
pub const EXPECTED: &str = charm_lib::cron::EXPECTED;

/// The timer and its service (same name: systemd.timer(5) `Unit=` defaults to it).
pub const TIMER: &str = "postgresql-ha-backup.timer";
/// The service the timer starts.
pub const SERVICE: &str = "postgresql-ha-backup.service";
/// Their unit files.
pub const TIMER_FILE: &str = "/etc/systemd/system/postgresql-ha-backup.timer";
/// The service's unit file.
pub const SERVICE_FILE: &str = "/etc/systemd/system/postgresql-ha-backup.service";
/// The script the service runs (root 0755 in the root-owned configuration directory: the
/// postgres account it runs as cannot change it).
pub const SCRIPT: &str = "/etc/postgresql-ha/scheduled-backup";

/// The timer (systemd.timer(5)). Not `Persistent=`: a run missed while the machine was down
/// is not made up at boot, the next one comes at its time (the backup-age alert says when a
/// gap grew too long).
pub fn timer_unit(s: &Schedule) -> String {
    format!(
        "# Rendered by the postgresql-ha charm ({OPTION}); edits are overwritten.\n\
         [Unit]\n\
         Description=postgresql-ha scheduled backup ({OPTION})\n\
         \n\
         [Timer]\n\
         OnCalendar={}\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        s.on_calendar()
    )
}

/// The service the timer starts: the script, as postgres (pgBackRest reads the data directory
/// and its root:postgres configuration; nothing here needs root).
pub fn service_unit() -> String {
    format!(
        "# Rendered by the postgresql-ha charm ({OPTION}); edits are overwritten.\n\
         [Unit]\n\
         Description=postgresql-ha scheduled backup on the primary ({OPTION})\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         User=postgres\n\
         Group=postgres\n\
         ExecStart={SCRIPT}\n"
    )
}

/// The script: a full backup on the primary; elsewhere it says why it did nothing. Every unit
/// has the timer, so whichever unit is the primary when it fires takes the backup (after a
/// failover too), without the charm running in between.
pub fn script(stanza: &str) -> String {
    format!(
        r#"#!/bin/sh
# Rendered by the postgresql-ha charm ({OPTION}); edits are overwritten.
# Started by {TIMER} on every unit: the primary takes a full backup, the others do nothing.
set -eu
if ! role=$(psql -X -A -t -h {socket} -p {port} -d postgres -c 'SELECT pg_is_in_recovery()' 2>&1); then
    echo "PostgreSQL on this unit does not answer, no scheduled backup from here: $role" >&2
    exit 1
fi
if [ "$role" != "f" ]; then
    echo "this unit is a standby: the primary takes the scheduled backup"
    exit 0
fi
exec pgbackrest --config={conf} --stanza={stanza} --type=full backup
"#,
        socket = paths::SOCKET_DIR,
        port = paths::PG_PORT,
        conf = backup::CONF,
    )
}

/// Writes the timer, its service and script and enables the timer when there is a schedule
/// and a repository to back up into; otherwise removes them (a timer left behind would fail
/// on every run). Returns whether the timer is on.
pub fn apply(ctx: &Context, schedule: Option<&Schedule>) -> anyhow::Result<bool> {
    let m = ctx.machine;
    let Some(s) = schedule else {
        let present = m.file_info(Path::new(TIMER_FILE))?.is_some();
        if present {
            m.run(&charm_lib::Cmd::new("systemctl", ["disable", "--now", TIMER]).allow_failure())?;
        }
        let mut changed = false;
        for f in [TIMER_FILE, SERVICE_FILE, SCRIPT] {
            changed |= m.remove_file(Path::new(f))?;
        }
        if changed {
            m.daemon_reload()?;
        }
        return Ok(false);
    };
    let stanza = backup::stanza(ctx.model.app_name());
    m.write_file(
        Path::new(SCRIPT),
        script(&stanza).as_bytes(),
        &FileOptions::root(0o755),
    )?;
    let a = m.write_file(
        Path::new(SERVICE_FILE),
        service_unit().as_bytes(),
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
    fn the_script_backs_up_only_on_the_primary() {
        let s = script("postgresql-ha");
        assert!(s.contains("SELECT pg_is_in_recovery()"));
        assert!(s.contains("if [ \"$role\" != \"f\" ]"));
        assert!(s.ends_with(
            "exec pgbackrest --config=/etc/postgresql-ha/pgbackrest.conf --stanza=postgresql-ha --type=full backup\n"
        ));
        let t = timer_unit(&parse("0 2 * * *").unwrap().unwrap());
        assert!(t.contains("\nOnCalendar=*-*-* 02:00:00 UTC\n"), "{t}");
        assert!(t.contains("\nWantedBy=timers.target\n"));
        assert!(service_unit().contains("\nUser=postgres\n"));
    }
}
