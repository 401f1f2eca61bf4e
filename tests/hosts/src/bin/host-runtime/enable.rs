//! Enablement: the `[Install]` symlinks under /etc/systemd/system, as `systemctl enable`
//! makes them, and which units a boot starts.

use crate::unit::{self, LoadError, Unit};
use std::path::{Path, PathBuf};

const ETC: &str = "/etc/systemd/system";
/// Targets whose wants a boot of a host starts.
/// timers.target: basic.target wants it (systemd.special(7)), so enabled timers start at boot.
const BOOT_TARGETS: &[&str] = &[
    "multi-user.target",
    "default.target",
    "graphical.target",
    "timers.target",
];

fn link_dirs() -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(ETC) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.ends_with(".wants") || n.ends_with(".requires")
        })
        .map(|e| e.path())
        .collect()
}

/// The unit's enablement: enabled, disabled, static, masked, alias (or not-found).
pub fn state(name: &str, hostname: &str) -> String {
    let name = unit::normalize(name);
    let u = match unit::load(&name, hostname) {
        Ok(u) => u,
        Err(LoadError::Masked(_)) => return "masked".into(),
        Err(LoadError::NotFound) => return "not-found".into(),
        Err(LoadError::Bad(_)) => return "bad".into(),
    };
    if link_dirs()
        .iter()
        .any(|d| d.join(&name).symlink_metadata().is_ok())
    {
        return "enabled".into();
    }
    if u.install
        .alias
        .iter()
        .any(|a| Path::new(ETC).join(a).symlink_metadata().is_ok())
    {
        return "enabled".into();
    }
    if !u.installable {
        return if unit::split_name(&name).1.is_some_and(|i| i.is_empty()) {
            "indirect".into()
        } else {
            "static".into()
        };
    }
    "disabled".into()
}

fn load(name: &str, hostname: &str) -> Result<(String, Unit), String> {
    let mut name = unit::canonical(name);
    let u = unit::load(&name, hostname).map_err(|e| match e {
        LoadError::NotFound => format!("Failed to enable unit: Unit file {name} does not exist."),
        LoadError::Masked(_) => format!("Failed to enable unit: Unit file {name} is masked."),
        LoadError::Bad(b) => format!("Failed to enable unit: {b}"),
    })?;
    let (p, inst, sfx) = unit::split_name(&name);
    if inst.as_deref() == Some("") {
        match &u.install.default_instance {
            Some(d) => name = format!("{p}@{d}{sfx}"),
            None => {
                return Err(format!(
                    "Unit {name} is a template and has no DefaultInstance; give an instance."
                ))
            }
        }
    }
    Ok((name, u))
}

/// Creates the `[Install]` symlinks; returns systemctl's messages.
pub fn enable(name: &str, hostname: &str) -> Result<Vec<String>, String> {
    let (name, u) = load(name, hostname)?;
    let mut msgs = Vec::new();
    if !u.installable {
        msgs.push(
            "The unit files have no installation config (WantedBy=, RequiredBy=, Also=,\nAlias= settings in the [Install] section, and DefaultInstance= for template\nunits). This means they are not meant to be enabled or disabled using systemctl."
                .to_string(),
        );
        return Ok(msgs);
    }
    let target_file = u.path.clone();
    let mut links: Vec<PathBuf> = Vec::new();
    for t in &u.install.wanted_by {
        links.push(Path::new(ETC).join(format!("{t}.wants")).join(&name));
    }
    for t in &u.install.required_by {
        links.push(Path::new(ETC).join(format!("{t}.requires")).join(&name));
    }
    for a in &u.install.alias {
        links.push(Path::new(ETC).join(a));
    }
    for l in links {
        if l.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(d) = l.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        std::os::unix::fs::symlink(&target_file, &l)
            .map_err(|e| format!("Failed to enable unit: {}: {e}", l.display()))?;
        msgs.push(format!(
            "Created symlink {} → {}.",
            l.display(),
            target_file.display()
        ));
    }
    Ok(msgs)
}

/// Removes every enablement symlink of the unit.
pub fn disable(name: &str, hostname: &str) -> Result<Vec<String>, String> {
    let name = unit::normalize(name);
    let mut msgs = Vec::new();
    let mut links: Vec<PathBuf> = link_dirs().into_iter().map(|d| d.join(&name)).collect();
    if let Ok(u) = unit::load(&name, hostname) {
        links.extend(u.install.alias.iter().map(|a| Path::new(ETC).join(a)));
    }
    for l in links {
        if std::fs::read_link(&l).is_ok() {
            std::fs::remove_file(&l)
                .map_err(|e| format!("Failed to disable unit: {}: {e}", l.display()))?;
            msgs.push(format!("Removed \"{}\".", l.display()));
        }
    }
    Ok(msgs)
}

pub fn mask(name: &str) -> Result<Vec<String>, String> {
    let name = unit::normalize(name);
    let l = Path::new(ETC).join(&name);
    if l.is_file() && std::fs::read_link(&l).is_err() {
        return Err(format!(
            "Failed to mask unit: File {} already exists.",
            l.display()
        ));
    }
    let _ = std::fs::remove_file(&l);
    std::fs::create_dir_all(ETC).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink("/dev/null", &l).map_err(|e| e.to_string())?;
    Ok(vec![format!(
        "Created symlink {} → /dev/null.",
        l.display()
    )])
}

pub fn unmask(name: &str) -> Result<Vec<String>, String> {
    let name = unit::normalize(name);
    let l = Path::new(ETC).join(&name);
    if std::fs::read_link(&l).is_ok_and(|t| t == Path::new("/dev/null")) {
        std::fs::remove_file(&l).map_err(|e| e.to_string())?;
        return Ok(vec![format!("Removed \"{}\".", l.display())]);
    }
    Ok(vec![])
}

/// Every service unit file in the search path (templates included).
pub fn unit_files() -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for d in unit::DIRS {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.ends_with(".service") && !v.contains(&n) {
                v.push(n);
            }
        }
    }
    v.sort();
    v
}

/// Services and timers a boot starts: those wanted by the boot targets in /etc/systemd/system.
pub fn boot_units() -> Vec<String> {
    let mut v = Vec::new();
    for t in BOOT_TARGETS {
        let Ok(rd) = std::fs::read_dir(Path::new(ETC).join(format!("{t}.wants"))) else {
            continue;
        };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if (n.ends_with(".service") || n.ends_with(".timer"))
                && !v.contains(&n)
                && e.path().exists()
            {
                v.push(n);
            }
        }
    }
    v.sort();
    v
}
