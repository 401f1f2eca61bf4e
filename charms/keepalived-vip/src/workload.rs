//! What the charm does to its host: packages, the checked configuration, the service, the
//! sysctl drop-in, the claims file, and taking it all away again.

use crate::claims::{self, Claims};
use crate::paths::{Paths, CLAIMS, DISTRO_SERVICE, KEEPALIVED};
use crate::render;
use charm_lib::{Cmd, FileOptions, Machine, MachineError, MachineExt, ServiceOp};
use std::path::Path;

/// Installs keepalived (and curl, for URL checks) and stops the distribution's own
/// keepalived.service, which Ubuntu starts on install: this charm runs one service per
/// application instead.
pub fn install(m: &dyn Machine) -> anyhow::Result<()> {
    m.apt_install(&["keepalived", "curl"])?;
    m.retire_service(DISTRO_SERVICE)?;
    Ok(())
}

/// Replaces this application's configuration with `text` if it differs, after `keepalived -t`
/// accepted it at a temporary path. `Ok(Ok(changed))`, or `Ok(Err(reason))` when keepalived
/// refused it (the running configuration is then untouched).
pub fn apply_conf(
    m: &dyn Machine,
    l: &Paths,
    text: &str,
    password: Option<&str>,
) -> anyhow::Result<Result<bool, String>> {
    let conf = l.conf();
    let private = FileOptions::root(0o600);
    let same_text = m.read_file(Path::new(&conf))?.as_deref() == Some(text.as_bytes());
    let same_mode = m
        .file_info(Path::new(&conf))?
        .is_some_and(|i| i.options == private);
    if same_text && same_mode {
        return Ok(Ok(false));
    }
    let candidate = l.conf_candidate();
    m.write_file(Path::new(&candidate), text.as_bytes(), &private)?;
    let mut cmd = Cmd::new(KEEPALIVED, ["-t", "-f", candidate.as_str()]).allow_failure();
    if let Some(p) = password {
        cmd = cmd.sensitive(p);
    }
    let out = m.run(&cmd);
    m.remove_file(Path::new(&candidate))?;
    let out = out?;
    match out.code {
        0 => {
            m.write_file(Path::new(&conf), text.as_bytes(), &private)?;
            Ok(Ok(true))
        }
        5 | 6 => {
            let first = cmd.redact(
                out.stderr
                    .lines()
                    .chain(out.stdout.lines())
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .unwrap_or("no detail"),
            );
            let what = if out.code == 6 {
                "script security"
            } else {
                "configuration error"
            };
            Ok(Err(format!(
                "keepalived rejected the rendered configuration ({what}, exit {}): {first}",
                out.code
            )))
        }
        _ => Err(MachineError::from_output(&cmd, &out).into()),
    }
}

/// Writes the notify script (root, 0755, like the binaries the checks run: keepalived's script
/// security refuses anything a non-root user could change).
pub fn ensure_notify_script(
    m: &dyn Machine,
    l: &Paths,
    unit: &str,
    charm_dir: &str,
) -> anyhow::Result<()> {
    m.write_file(
        Path::new(&l.notify_script()),
        render::notify_script(unit, charm_dir).as_bytes(),
        &FileOptions::root(0o755),
    )?;
    Ok(())
}

/// Writes the systemd unit; returns whether it changed (then systemd is told).
pub fn ensure_unit(m: &dyn Machine, l: &Paths) -> anyhow::Result<bool> {
    let changed = m.write_file(
        Path::new(&l.unit_file()),
        render::systemd_unit(l).as_bytes(),
        &FileOptions::root(0o644),
    )?;
    if changed {
        m.daemon_reload()?;
    }
    Ok(changed)
}

/// Writes and applies the sysctl drop-in when it changed.
pub fn ensure_sysctl(m: &dyn Machine, l: &Paths, v6: bool) -> anyhow::Result<()> {
    let path = l.sysctl();
    if m.write_file(
        Path::new(&path),
        render::sysctl(v6).as_bytes(),
        &FileOptions::root(0o644),
    )? {
        m.run(&Cmd::new("sysctl", ["-p", path.as_str()]))?;
    }
    Ok(())
}

/// Starts the service if it is not running; otherwise restarts it for a new unit file, or
/// reloads it (SIGHUP: the VIP stays put) for a new configuration.
pub fn ensure_running(
    m: &dyn Machine,
    l: &Paths,
    running: bool,
    conf_changed: bool,
    unit_changed: bool,
) -> anyhow::Result<()> {
    let svc = l.service();
    if !running {
        m.service(ServiceOp::Enable, &svc)?;
        m.service(ServiceOp::Start, &svc)?;
        log::info!("started {svc}");
    } else if unit_changed {
        m.service(ServiceOp::Restart, &svc)?;
        log::info!("restarted {svc} for its new unit file");
    } else if conf_changed {
        m.service(ServiceOp::Reload, &svc)?;
        log::info!("reloaded {svc} for its new configuration");
    }
    Ok(())
}

/// The VIP-state exporter: its unit file (reloaded and the service restarted when it changed),
/// running and enabled.
pub fn ensure_metrics(m: &dyn Machine, l: &Paths, unit_text: &str) -> anyhow::Result<()> {
    let changed = m.write_file(
        Path::new(&l.metrics_unit_file()),
        unit_text.as_bytes(),
        &FileOptions::root(0o644),
    )?;
    if changed {
        m.daemon_reload()?;
    }
    let svc = l.metrics_service();
    if !m.service_is_active(&svc)? {
        m.service(ServiceOp::Enable, &svc)?;
        m.service(ServiceOp::Start, &svc)?;
    } else if changed {
        m.service(ServiceOp::Restart, &svc)?;
    }
    Ok(())
}

/// The claims on this host, without those whose application's configuration is gone (a unit
/// removed without its hooks running).
pub fn read_claims(m: &dyn Machine) -> anyhow::Result<Claims> {
    let mut all = claims::parse(m.read_to_string(Path::new(CLAIMS))?.as_deref());
    let mut stale = Vec::new();
    for (unit, c) in &all {
        if m.file_info(Path::new(&Paths::new(&c.app).conf()))?
            .is_none()
        {
            stale.push(unit.clone());
        }
    }
    for u in stale {
        all.remove(&u);
    }
    Ok(all)
}

/// Writes the claims file (only if it changed); an empty set removes it.
pub fn write_claims(m: &dyn Machine, all: &Claims) -> anyhow::Result<()> {
    if all.is_empty() {
        m.remove_file(Path::new(CLAIMS))?;
    } else {
        m.write_file(
            Path::new(CLAIMS),
            claims::render(all).as_bytes(),
            &FileOptions::root(0o644),
        )?;
    }
    Ok(())
}
