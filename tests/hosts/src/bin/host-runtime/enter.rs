//! `host-runtime enter INIT_FILE PREFIX -- PROGRAM ARGS...`: runs a program inside all of a
//! host's namespaces. Unlike `nsenter`, it keeps the caller's working directory (resolved
//! inside the host) and ties the program's life to its own, so `Child::kill` works.

use crate::sys;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicI32, Ordering};

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let c = CHILD.load(Ordering::Relaxed);
    if c > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(c, sig) };
    }
}

pub fn main(argv: &[String]) -> i32 {
    match run(argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("host-runtime enter: {e}");
            125
        }
    }
}

fn run(argv: &[String]) -> Result<i32, String> {
    let (init_file, prefix, prog) = match argv {
        [f, p, dd, prog @ ..] if dd == "--" && !prog.is_empty() => (f, p, prog),
        _ => return Err("usage: enter INIT_FILE PREFIX -- PROGRAM [ARGS...]".into()),
    };
    let text = std::fs::read_to_string(init_file)
        .map_err(|_| format!("host is not running (no {init_file})"))?;
    let rec: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let pid = rec["pid"].as_u64().ok_or("bad init record")?;
    let start = rec["starttime"].as_u64().ok_or("bad init record")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let now: Option<u64> = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split(' ').nth(20)?.parse().ok());
    if now != Some(start) {
        return Err("host is not running".into());
    }
    // Open every namespace before joining any: after joining the mount namespace, /proc
    // is the host's and the init's machine-side PID means nothing there.
    let kinds = [
        ("pid", libc::CLONE_NEWPID),
        ("uts", libc::CLONE_NEWUTS),
        ("net", libc::CLONE_NEWNET),
        ("mnt", libc::CLONE_NEWNS),
    ];
    let mut files = Vec::new();
    for (k, flag) in kinds {
        let f = std::fs::File::open(format!("/proc/{pid}/ns/{k}"))
            .map_err(|e| format!("open ns {k}: {e}"))?;
        files.push((f, flag, k));
    }
    let cwd = std::env::current_dir().ok();
    for (f, flag, k) in &files {
        use std::os::fd::AsRawFd;
        // SAFETY: f is an open namespace file; we are single-threaded.
        if unsafe { libc::setns(f.as_raw_fd(), *flag) } != 0 {
            return Err(format!("setns {k}: {}", std::io::Error::last_os_error()));
        }
    }
    drop(files);
    let wd = cwd.filter(|c| std::env::set_current_dir(c).is_ok());
    if wd.is_none() {
        let _ = std::env::set_current_dir("/");
    }
    let child = sys::fork().map_err(|e| e.to_string())?;
    if child == 0 {
        // SAFETY: prctl with constant arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        let e = std::process::Command::new(&prog[0])
            .args(&prog[1..])
            .env(super::LAB_MARKER, prefix)
            .exec();
        eprintln!("{}: {e}", prog[0]);
        std::process::exit(if e.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        });
    }
    CHILD.store(child, Ordering::Relaxed);
    for sig in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        // SAFETY: installing an async-signal-safe handler.
        unsafe { libc::signal(sig, forward as *const () as usize) };
    }
    let st = sys::wait_for(child).map_err(|e| e.to_string())?;
    if libc::WIFSIGNALED(st) {
        let sig = libc::WTERMSIG(st);
        // Die the same way, so the caller sees the signal, not an exit code.
        // SAFETY: resetting a disposition and signalling ourselves.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::kill(libc::getpid(), sig);
        }
    }
    Ok(sys::shell_code(st))
}
