//! Thin, checked wrappers over the raw syscalls the runtime needs.

use std::ffi::CString;
use std::io::{Error, Result};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn check(r: libc::c_int) -> Result<libc::c_int> {
    if r < 0 {
        Err(Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::other("path contains NUL"))
}

/// fork(2). Only call while the process has a single thread.
pub fn fork() -> Result<libc::pid_t> {
    // SAFETY: callers fork only while single-threaded.
    check(unsafe { libc::fork() })
}

pub fn unshare(flags: libc::c_int) -> Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::unshare(flags) }).map(|_| ())
}

/// Joins the namespace of the file `path` (e.g. /proc/PID/ns/net).
pub fn setns_path(path: &Path, nstype: libc::c_int) -> Result<()> {
    let f = std::fs::File::open(path)?;
    use std::os::fd::AsRawFd;
    // SAFETY: f is an open namespace file.
    check(unsafe { libc::setns(f.as_raw_fd(), nstype) }).map(|_| ())
}

pub fn mount(
    src: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<()> {
    let s = CString::new(src)?;
    let t = cstr(target)?;
    let f = CString::new(fstype)?;
    let d = data.map(CString::new).transpose()?;
    // SAFETY: all pointers are valid C strings or null.
    let r = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            if fstype.is_empty() {
                std::ptr::null()
            } else {
                f.as_ptr()
            },
            flags,
            d.as_ref()
                .map_or(std::ptr::null(), |d| d.as_ptr() as *const libc::c_void),
        )
    };
    check(r).map(|_| ()).map_err(|e| {
        Error::new(
            e.kind(),
            format!("mount {src} on {}: {e}", target.display()),
        )
    })
}

pub fn sethostname(name: &str) -> Result<()> {
    // SAFETY: pointer and length describe `name`.
    check(unsafe { libc::sethostname(name.as_ptr() as *const libc::c_char, name.len()) })
        .map(|_| ())
}

/// waitpid(pid, 0) retrying on EINTR; returns the raw status.
pub fn wait_for(pid: libc::pid_t) -> Result<i32> {
    let mut st = 0;
    loop {
        // SAFETY: st is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r >= 0 {
            return Ok(st);
        }
        let e = Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Reaps one exited child without blocking: Some((pid, raw status)) or None.
pub fn reap_any() -> Option<(i32, i32)> {
    let mut st = 0;
    // SAFETY: st is a valid out-pointer.
    let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
    (r > 0).then_some((r, st))
}

pub fn kill(pid: i32, sig: i32) -> bool {
    // SAFETY: plain syscall.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Exit code a shell would report for a raw wait status.
pub fn shell_code(st: i32) -> i32 {
    if libc::WIFEXITED(st) {
        libc::WEXITSTATUS(st)
    } else if libc::WIFSIGNALED(st) {
        128 + libc::WTERMSIG(st)
    } else {
        1
    }
}

/// Closes every descriptor from 3 up except `keep`: a host must not hold whatever its
/// starter had open (a listening socket of the caller, say).
pub fn close_fds_except(keep: &[i32]) {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing a descriptor this process owns; the directory handle used to
            // list them is already closed.
            unsafe { libc::close(fd) };
        }
    }
}

pub fn clear_cloexec(fd: i32) -> Result<()> {
    // SAFETY: fcntl on a caller-owned fd.
    let fl = check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, fl & !libc::FD_CLOEXEC) }).map(|_| ())
}

pub fn pipe() -> Result<(i32, i32)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((fds[0], fds[1]))
}

pub fn signal_name_to_num(s: &str) -> Option<i32> {
    let s = s.trim().trim_start_matches("SIG").to_ascii_uppercase();
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    Some(match s.as_str() {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "ABRT" => libc::SIGABRT,
        "WINCH" => libc::SIGWINCH,
        "PIPE" => libc::SIGPIPE,
        _ => return None,
    })
}
