//! The age of the last good backup as Prometheus metrics: a small service on every unit with a
//! repository (`dispatch backup-metrics <stanza> <port> <max-interval>`), serving on 127.0.0.1
//! only, for the cos-agent collector on the same machine, what `pgbackrest info --output=json`
//! says about the stanza (run as postgres with the charm's configuration, at most every
//! [`CACHE`]: each run lists the bucket).
//!
//! The age metric's name and labels are pgbackrest_exporter's (woblerr/pgbackrest_exporter,
//! `pgbackrest_backup_since_last_completion_seconds{backup_type,stanza}`), which dashboards for
//! pgBackRest already query; that exporter is not packaged in Debian or Ubuntu, and the alert
//! needs one more thing it cannot know: the longest gap `backup-schedule` leaves between two
//! backups (`pgbackrest_backup_schedule_max_interval_seconds`, absent without a schedule).

use crate::backup::{self, BackupInfo};
use charm_lib::{Context, FileOptions, Machine, MachineExt};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

/// The port (pgbackrest_exporter's: one pgBackRest exporter per machine), loopback only.
pub const PORT: u16 = 9959;
/// The service.
pub const SERVICE: &str = "postgresql-ha-backup-metrics";
/// Its unit file.
pub const UNIT_FILE: &str = "/etc/systemd/system/postgresql-ha-backup-metrics.service";
/// How long one `pgbackrest info` answers scrapes.
pub const CACHE: Duration = Duration::from_secs(30);

/// The exposition for `stanza` at `now` (seconds since the epoch): per backup type, the
/// seconds since its newest good backup completed (a backup pgBackRest flagged with an error
/// is not good); the number of good backups; whether `info` answered; the schedule's longest
/// gap when there is a schedule.
pub fn exposition(
    stanza: &str,
    now: i64,
    info: &Result<Vec<BackupInfo>, String>,
    max_interval: Option<i64>,
) -> String {
    let mut out = String::new();
    let label = format!("stanza=\"{}\"", stanza.replace(['\\', '"'], "_"));
    let _ = writeln!(
        out,
        "# HELP pgbackrest_info_up Whether pgbackrest info answered for the stanza (1) or failed (0).\n# TYPE pgbackrest_info_up gauge\npgbackrest_info_up{{{label}}} {}",
        u8::from(info.is_ok())
    );
    if let Some(gap) = max_interval {
        let _ = writeln!(
            out,
            "# HELP pgbackrest_backup_schedule_max_interval_seconds The longest time backup-schedule leaves between two scheduled backups.\n# TYPE pgbackrest_backup_schedule_max_interval_seconds gauge\npgbackrest_backup_schedule_max_interval_seconds{{{label}}} {gap}"
        );
    }
    let Ok(list) = info else {
        return out;
    };
    let good: Vec<&BackupInfo> = list.iter().filter(|b| !b.error).collect();
    let _ = writeln!(
        out,
        "# HELP pgbackrest_backups Good backups of the stanza in the repository.\n# TYPE pgbackrest_backups gauge\npgbackrest_backups{{{label}}} {}",
        good.len()
    );
    let mut ages = String::new();
    for kind in ["full", "diff", "incr"] {
        let newest = good
            .iter()
            .filter(|b| b.kind == kind)
            .filter_map(|b| backup::epoch_of(&b.stopped.replace('T', " ")))
            .max();
        if let Some(stop) = newest {
            let _ = writeln!(
                ages,
                "pgbackrest_backup_since_last_completion_seconds{{backup_type=\"{kind}\",{label}}} {}",
                (now - stop).max(0)
            );
        }
    }
    if !ages.is_empty() {
        out.push_str("# HELP pgbackrest_backup_since_last_completion_seconds Seconds since the newest good backup of each type completed.\n# TYPE pgbackrest_backup_since_last_completion_seconds gauge\n");
        out.push_str(&ages);
    }
    out
}

/// The service: root, as the charm's binary is not the postgres account's to run; pgBackRest
/// itself runs as postgres. `binary_line` (`Context::charm_binary_line`) makes a refresh that
/// brings another charm binary restart it.
pub fn unit(charm_dir: &str, binary_line: &str, stanza: &str, max_interval: Option<i64>) -> String {
    format!(
        "{binary_line}[Unit]\nDescription=postgresql-ha: the age of the last good backup for Prometheus on 127.0.0.1:{PORT}\nAfter=network-online.target\n\n\
[Service]\nType=simple\nExecStart={charm_dir}/dispatch backup-metrics {stanza} {PORT} {}\nRestart=always\nRestartSec=5\n\n\
[Install]\nWantedBy=multi-user.target\n",
        max_interval.unwrap_or(0)
    )
}

/// Runs the service where there is a repository (`Some(max_interval)`: the schedule's gap,
/// if any), or retires it.
pub fn apply(ctx: &Context, repository: Option<Option<i64>>) -> anyhow::Result<()> {
    let m = ctx.machine;
    let Some(max_interval) = repository else {
        if m.file_info(Path::new(UNIT_FILE))?.is_some() {
            m.retire_service(SERVICE)?;
            m.remove_file(Path::new(UNIT_FILE))?;
            m.daemon_reload()?;
        }
        return Ok(());
    };
    let stanza = backup::stanza(ctx.model.app_name());
    let changed = m.write_file(
        Path::new(UNIT_FILE),
        unit(
            &ctx.event.charm_dir(),
            &ctx.charm_binary_line()?,
            &stanza,
            max_interval,
        )
        .as_bytes(),
        &FileOptions::root(0o644),
    )?;
    if changed {
        m.daemon_reload()?;
    }
    m.ensure_service(SERVICE, changed)?;
    Ok(())
}

fn info(m: &dyn Machine, stanza: &str) -> Result<Vec<BackupInfo>, String> {
    let out = m
        .run(&backup::pgbackrest(stanza, ["--output=json", "info"]).allow_failure())
        .map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(backup::failure(&out));
    }
    backup::parse_info(&out.stdout, stanza).map(|(l, _)| l)
}

fn now() -> i64 {
    charm_lib::tls::now().unix_timestamp()
}

/// Serves forever: `args` are the stanza, the port and the schedule's longest gap (0: none).
pub fn run(args: &[String]) -> ! {
    let parsed = (|| -> Option<(String, u16, i64)> {
        Some((
            args.first()?.clone(),
            args.get(1)?.parse().ok()?,
            args.get(2)?.parse().ok()?,
        ))
    })();
    let Some((stanza, port, gap)) = parsed else {
        eprintln!("usage: dispatch backup-metrics <stanza> <port> <schedule-max-interval-seconds, 0: none>");
        std::process::exit(2);
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    let machine = charm_lib::machine::System;
    let mut cached: Option<(Instant, Result<Vec<BackupInfo>, String>)> = None;
    for stream in listener.incoming().flatten() {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(&stream);
        let mut request = String::new();
        if reader.read_line(&mut request).is_err() {
            continue;
        }
        // The rest of the request head, so the client is not reset mid-write.
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let path = request.split_whitespace().nth(1).unwrap_or("");
        let (status, body) = if path == "/metrics" || path.starts_with("/metrics?") {
            if cached.as_ref().is_none_or(|(t, _)| t.elapsed() >= CACHE) {
                let r = info(&machine, &stanza);
                if let Err(e) = &r {
                    eprintln!("pgbackrest info failed: {e}");
                }
                cached = Some((Instant::now(), r));
            }
            let r = &cached.as_ref().expect("just filled").1;
            (
                "200 OK",
                exposition(&stanza, now(), r, (gap > 0).then_some(gap)),
            )
        } else {
            ("404 Not Found", "only /metrics\n".to_string())
        };
        let _ = write!(
            &stream,
            "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    }
    std::process::exit(1)
}

/// The loopback address the scrape job targets.
pub fn target() -> String {
    format!("127.0.0.1:{PORT}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(kind: &str, stopped: &str, error: bool) -> BackupInfo {
        BackupInfo {
            id: format!("x{kind}"),
            kind: kind.into(),
            started: String::new(),
            stopped: stopped.into(),
            size: 0,
            repo_size: 0,
            wal_start: String::new(),
            wal_stop: String::new(),
            error,
        }
    }

    #[test]
    fn the_age_of_each_types_newest_good_backup() {
        // 2026-12-07 07:07:55 UTC + 100 s.
        let now = 1_796_627_275 + 100;
        let list = vec![
            b("full", "2026-12-07T06:07:55Z", false),
            b("full", "2026-12-07T07:07:55Z", false),
            b("incr", "2026-12-07T07:08:30Z", true),
            b("incr", "2026-12-07T07:08:00Z", false),
        ];
        let text = exposition("postgresql-ha", now, &Ok(list), Some(86_400));
        for line in [
            "pgbackrest_info_up{stanza=\"postgresql-ha\"} 1",
            "pgbackrest_backups{stanza=\"postgresql-ha\"} 3",
            "pgbackrest_backup_since_last_completion_seconds{backup_type=\"full\",stanza=\"postgresql-ha\"} 100",
            // The incremental with an error is not the newest good one.
            "pgbackrest_backup_since_last_completion_seconds{backup_type=\"incr\",stanza=\"postgresql-ha\"} 95",
            "pgbackrest_backup_schedule_max_interval_seconds{stanza=\"postgresql-ha\"} 86400",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(!text.contains("backup_type=\"diff\""));
        assert!(text.contains("# TYPE pgbackrest_backup_since_last_completion_seconds gauge\n"));
    }

    #[test]
    fn a_failing_info_says_so_and_no_schedule_no_gap() {
        let text = exposition("pg", 0, &Err("ERROR: [039]".into()), None);
        assert!(text.contains("pgbackrest_info_up{stanza=\"pg\"} 0\n"));
        assert!(!text.contains("pgbackrest_backups"));
        assert!(!text.contains("max_interval"));
        let empty = exposition("pg", 0, &Ok(vec![]), None);
        assert!(empty.contains("pgbackrest_backups{stanza=\"pg\"} 0\n"));
        assert!(!empty.contains("since_last_completion"));
    }

    #[test]
    fn the_unit_runs_the_charm_binary_for_the_stanza() {
        let u = unit(
            "/var/lib/juju/agents/unit-pg-0/charm",
            "# charm binary 0a\n",
            "pg",
            Some(3600),
        );
        assert!(u.starts_with("# charm binary 0a\n[Unit]\n"), "{u}");
        assert!(
            u.contains("ExecStart=/var/lib/juju/agents/unit-pg-0/charm/dispatch backup-metrics pg 9959 3600\n"),
            "{u}"
        );
        assert!(unit("/c", "", "pg", None).contains("backup-metrics pg 9959 0\n"));
        assert_eq!(target(), "127.0.0.1:9959");
    }
}
