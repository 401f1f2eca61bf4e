//! Asking the unit agent for a hook from outside any hook: a charm's background service or a
//! daemon's notify script sees a change between hooks, and `juju-exec` (Juju 3; `juju-run` in
//! 2.9) runs the charm's `dispatch` in the unit's hook context, under its hook lock.

use std::path::Path;

/// Where Juju installs the tool, newest first.
pub const PATHS: [&str; 2] = ["/usr/bin/juju-exec", "/usr/bin/juju-run"];

/// The first of [`PATHS`] installed on this machine.
pub fn installed() -> Option<&'static str> {
    PATHS.into_iter().find(|p| Path::new(p).exists())
}

/// The argv with which `juju_exec` (one of [`PATHS`], or a shell word naming one) runs the
/// update-status hook of `unit`, whose charm is in `charm_dir`.
pub fn update_status_argv(juju_exec: &str, unit: &str, charm_dir: &str) -> Vec<String> {
    vec![
        juju_exec.to_string(),
        "-u".into(),
        unit.to_string(),
        "JUJU_DISPATCH_PATH=hooks/update-status".into(),
        format!("{charm_dir}/dispatch"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_status_is_dispatched_in_the_units_context() {
        assert_eq!(
            update_status_argv("/usr/bin/juju-exec", "postgresql-ha/1", "/var/lib/juju/agents/unit-postgresql-ha-1/charm").join(" "),
            "/usr/bin/juju-exec -u postgresql-ha/1 JUJU_DISPATCH_PATH=hooks/update-status /var/lib/juju/agents/unit-postgresql-ha-1/charm/dispatch"
        );
    }
}
