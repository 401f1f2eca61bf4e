//! The topology observer: a small root service (the charm's own binary, `dispatch observe`)
//! that asks Juju for an `update-status` hook as soon as the Patroni primary changes, so the
//! client relation data follows a failover within seconds instead of at the next periodic
//! update-status. Patroni's `on_role_change` callback runs as postgres and cannot reach the
//! unit agent's root-only run socket, so it only drops a marker that this service picks up;
//! the service also polls `GET /cluster`, because units whose own role did not change must
//! republish the new primary's address too.

use crate::paths;
use crate::patroni::Cluster;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

/// Where Juju puts the tool that runs a command in a unit's hook context (Juju 3, then 2.9).
pub const JUJU_EXEC: [&str; 2] = ["/usr/bin/juju-exec", "/usr/bin/juju-run"];

/// Whether to ask for a hook: the callback said so, or the primary is a different member than
/// the last one seen (a missing primary during a failover is not a change yet).
pub fn should_dispatch(last: Option<&str>, now: Option<&str>, marked: bool) -> bool {
    marked || matches!((last, now), (Some(a), Some(b)) if a != b)
}

/// The argv that runs the charm's update-status hook for `unit`.
pub fn dispatch_argv(juju_exec: &str, unit: &str, charm_dir: &str) -> Vec<String> {
    vec![
        juju_exec.to_string(),
        "-u".into(),
        unit.to_string(),
        "JUJU_DISPATCH_PATH=hooks/update-status".into(),
        format!("{charm_dir}/dispatch"),
    ]
}

/// The primary's member name from the local Patroni, if it answers.
fn current_primary() -> Option<String> {
    let addr = format!("127.0.0.1:{}", paths::PATRONI_PORT).parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET /cluster HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (_, body) = buf.split_once("\r\n\r\n")?;
    let c: Cluster = serde_json::from_str(body).ok()?;
    c.primary().map(|p| p.name.clone())
}

/// Runs forever: `args` are the unit name and the charm directory.
pub fn run(args: &[String]) -> ! {
    let (Some(unit), Some(charm_dir)) = (args.first(), args.get(1)) else {
        eprintln!("usage: dispatch observe <unit> <charm-dir>");
        std::process::exit(2);
    };
    let Some(exec) = JUJU_EXEC.iter().find(|p| Path::new(p).exists()) else {
        eprintln!("neither juju-exec nor juju-run is installed: the charm's update-status hook refreshes relation data instead");
        std::process::exit(0);
    };
    let marker = Path::new(paths::ROLE_MARKER);
    let mut last: Option<String> = None;
    loop {
        let marked = marker.exists();
        if marked {
            let _ = std::fs::remove_file(marker);
        }
        let now = current_primary();
        if should_dispatch(last.as_deref(), now.as_deref(), marked) {
            let argv = dispatch_argv(exec, unit, charm_dir);
            match std::process::Command::new(&argv[0])
                .args(&argv[1..])
                .output()
            {
                Ok(o) if o.status.success() => {}
                Ok(o) => eprintln!(
                    "{} failed: {}",
                    argv.join(" "),
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                Err(e) => eprintln!("{} could not start: {e}", argv[0]),
            }
        }
        if now.is_some() {
            last = now;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatches_on_a_new_primary_or_a_callback_only() {
        assert!(
            !should_dispatch(None, Some("pg-0"), false),
            "first sight is not a change"
        );
        assert!(!should_dispatch(Some("pg-0"), Some("pg-0"), false));
        assert!(
            !should_dispatch(Some("pg-0"), None, false),
            "no primary during a failover: wait for the new one"
        );
        assert!(should_dispatch(Some("pg-0"), Some("pg-1"), false));
        assert!(should_dispatch(Some("pg-0"), Some("pg-0"), true));
    }

    #[test]
    fn the_hook_is_run_through_juju_exec() {
        assert_eq!(
            dispatch_argv("/usr/bin/juju-exec", "postgresql-ha/1", "/var/lib/juju/agents/unit-postgresql-ha-1/charm").join(" "),
            "/usr/bin/juju-exec -u postgresql-ha/1 JUJU_DISPATCH_PATH=hooks/update-status /var/lib/juju/agents/unit-postgresql-ha-1/charm/dispatch"
        );
    }
}
