//! Turning a unit's Exec line into a process: environment, credentials, working
//! directory, limits and logging, as systemd would set them up.

use crate::unit::{ExecLine, Unit};
use crate::{users, words};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Marker every process of a service carries: the supervisor's stand-in for a cgroup.
pub const UNIT_MARKER: &str = "LOCAL_MODEL_UNIT";
pub const LOG_DIR: &str = "/var/log/local-model";
pub const NOTIFY_DIR: &str = "/run/local-model/notify";

pub fn log_path(unit: &str) -> PathBuf {
    Path::new(LOG_DIR).join(format!("{unit}.log"))
}

pub fn notify_path(unit: &str) -> PathBuf {
    // sun_path is 108 bytes: long unit names get a hashed socket name.
    if unit.len() <= 70 {
        Path::new(NOTIFY_DIR).join(unit)
    } else {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        unit.hash(&mut h);
        Path::new(NOTIFY_DIR).join(format!("{:016x}", h.finish()))
    }
}

/// The service's environment, in systemd's order: defaults, Environment=, then
/// EnvironmentFile= (a missing file without `-` is an error).
pub fn environment(u: &Unit) -> Result<Vec<(String, String)>, String> {
    let s = &u.svc;
    let uname = s.user.clone().unwrap_or_else(|| "root".into());
    let (home, shell) = users::user(&uname)
        .map(|x| (x.home, x.shell))
        .unwrap_or(("/root".into(), "/bin/sh".into()));
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("LANG".into(), "C.UTF-8".into()),
        ("HOME".into(), home),
        ("USER".into(), uname.clone()),
        ("LOGNAME".into(), uname),
        ("SHELL".into(), shell),
        ("INVOCATION_ID".into(), invocation_id()),
        (UNIT_MARKER.into(), u.name.clone()),
    ];
    if let Ok(m) = std::env::var(crate::LAB_MARKER) {
        env.push((crate::LAB_MARKER.into(), m));
    }
    env.extend(s.environment.iter().cloned());
    for (f, optional) in &s.environment_files {
        match std::fs::read_to_string(f) {
            Ok(t) => env.extend(words::env_file(&t)),
            Err(_) if *optional => {}
            Err(e) => return Err(format!("Failed to load environment files: {f}: {e}")),
        }
    }
    if let Some(d) = s.runtime_directory.first() {
        env.push(("RUNTIME_DIRECTORY".into(), format!("/run/{d}")));
    }
    for (base, var) in [
        ("/var/lib", "STATE_DIRECTORY"),
        ("/var/cache", "CACHE_DIRECTORY"),
        ("/var/log", "LOGS_DIRECTORY"),
        ("/etc", "CONFIGURATION_DIRECTORY"),
    ] {
        let dirs: Vec<String> = s
            .other_directories
            .iter()
            .filter(|(b, _)| *b == base)
            .map(|(b, d)| format!("{b}/{d}"))
            .collect();
        if !dirs.is_empty() {
            env.push((var.into(), dirs.join(":")));
        }
    }
    if s.kind == crate::unit::Kind::Notify {
        env.push((
            "NOTIFY_SOCKET".into(),
            notify_path(&u.name).to_string_lossy().into_owned(),
        ));
    }
    Ok(dedup(env))
}

fn dedup(env: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in env {
        out.retain(|(ok, _)| *ok != k);
        out.push((k, v));
    }
    out
}

fn invocation_id() -> String {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Builds the process for `line`. `privileged`: ignore User=/Group= (the `+` prefix, or
/// PermissionsStartOnly= for everything but the main process).
pub fn command(
    u: &Unit,
    line: &ExecLine,
    env: &[(String, String)],
    privileged: bool,
) -> Result<Command, String> {
    let s = &u.svc;
    let w = if line.no_expand {
        line.words.clone()
    } else {
        words::expand(&line.words, env)
    };
    if w.is_empty() || (line.argv0 && w.len() < 2) {
        return Err(format!("{}: empty command line", u.name));
    }
    let mut c = Command::new(&w[0]);
    if line.argv0 {
        c.arg0(&w[1]).args(&w[2..]);
    } else {
        c.args(&w[1..]);
    }
    c.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    c.current_dir("/");
    if let Some((d, optional)) = &s.working_directory {
        if Path::new(d).is_dir() {
            c.current_dir(d);
        } else if !optional {
            return Err(format!("{}: WorkingDirectory {d} does not exist", u.name));
        }
    }
    std::fs::create_dir_all(LOG_DIR).map_err(|e| e.to_string())?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(&u.name))
        .map_err(|e| format!("log: {e}"))?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    c.stdin(Stdio::null()).stdout(log).stderr(log2);

    let creds = if privileged || line.privileged {
        None
    } else {
        credentials(u)?
    };
    let umask = s.umask;
    let nofile = s.limit_nofile;
    // SAFETY: the closure only makes async-signal-safe syscalls on pre-computed data.
    unsafe {
        c.pre_exec(move || {
            libc::setsid();
            libc::umask(umask as libc::mode_t);
            if let Some(n) = nofile {
                let r = libc::rlimit {
                    rlim_cur: n as libc::rlim_t,
                    rlim_max: n as libc::rlim_t,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            }
            if let Some((uid, gid, groups)) = &creds {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(*gid) != 0
                    || libc::setuid(*uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(c)
}

/// (uid, gid, supplementary gids) for User=/Group=, or None to stay root.
fn credentials(u: &Unit) -> Result<Option<(u32, u32, Vec<libc::gid_t>)>, String> {
    let s = &u.svc;
    if s.user.is_none() && s.group.is_none() {
        return Ok(None);
    }
    let (uid, mut gid, mut groups) = match &s.user {
        Some(name) => {
            let usr = users::user(name).ok_or_else(|| {
                format!(
                    "{}: Failed to determine user credentials: No such process ({name})",
                    u.name
                )
            })?;
            (usr.uid, usr.gid, users::groups_of(name))
        }
        None => (0, 0, vec![]),
    };
    if let Some(g) = &s.group {
        gid = users::group(g)
            .ok_or_else(|| format!("{}: Failed to determine group credentials ({g})", u.name))?;
    }
    groups.push(gid);
    Ok(Some((uid, gid, groups)))
}

/// Creates RuntimeDirectory= directories under /run (and State/Cache/Logs/Configuration
/// directories, which outlive the service), owned by the service's user.
pub fn runtime_dirs(u: &Unit) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let creds = credentials(u)?;
    for (base, d) in &u.svc.other_directories {
        let p = Path::new(base).join(d);
        if !p.exists() {
            std::fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755));
        }
        if let Some((uid, gid, _)) = &creds {
            let _ = std::os::unix::fs::chown(&p, Some(*uid), Some(*gid));
        }
    }
    for d in &u.svc.runtime_directory {
        let p = Path::new("/run").join(d);
        std::fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let _ = std::fs::set_permissions(
            &p,
            std::fs::Permissions::from_mode(u.svc.runtime_directory_mode),
        );
        if let Some((uid, gid, _)) = &creds {
            let _ = std::os::unix::fs::chown(&p, Some(*uid), Some(*gid));
        }
    }
    Ok(())
}

pub fn remove_runtime_dirs(u: &Unit, will_restart: bool) {
    // RuntimeDirectoryPreserve=: e.g. a daemon's children that outlive it (KillMode=process)
    // keep their sockets there across its automatic restart.
    if u.svc.runtime_directory_preserve.keeps(will_restart) {
        return;
    }
    for d in &u.svc.runtime_directory {
        let _ = std::fs::remove_dir_all(Path::new("/run").join(d));
    }
}
