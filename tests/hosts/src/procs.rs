//! Reading the machine's /proc: which processes exist, in which namespaces.

use std::fs;
use std::path::Path;

/// Every numeric entry of /proc.
pub(crate) fn all_pids() -> Vec<u32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Fields of /proc/PID/stat that matter here.
pub(crate) struct Stat {
    pub comm: String,
    pub state: char,
    pub starttime: u64,
}

pub(crate) fn stat(pid: u32) -> Option<Stat> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: it ends at the last ')'.
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    let rest: Vec<&str> = s[close + 2..].split(' ').collect();
    Some(Stat {
        comm,
        state: rest.first()?.chars().next()?,
        starttime: rest.get(19)?.parse().ok()?,
    })
}

/// Is PID alive (present and not a zombie)?
pub(crate) fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

/// The namespace id (`net:[4026...]`) of `pid` for `kind` (net, pid, mnt, uts).
pub(crate) fn ns_id(pid: u32, kind: &str) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The namespace id of a namespace file (e.g. /run/netns/NAME), in the `net:[ino]` form.
pub(crate) fn ns_file_id(path: &Path, kind: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path)
        .ok()
        .map(|m| format!("{kind}:[{}]", m.ino()))
}

/// Does the process's initial environment contain `KEY=VALUE`?
pub(crate) fn has_env(pid: u32, key: &str, value: &str) -> bool {
    let Ok(env) = fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let want = format!("{key}={value}");
    env.split(|b| *b == 0).any(|kv| kv == want.as_bytes())
}

/// Processes (alive) whose pid namespace is `pid_ns`.
pub(crate) fn in_pid_ns(pid_ns: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|p| ns_id(*p, "pid").as_deref() == Some(pid_ns) && alive(*p))
        .collect()
}

/// Sends `sig` to `pid`; a vanished process is not an error.
pub(crate) fn signal(pid: u32, sig: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(e)
    }
}
