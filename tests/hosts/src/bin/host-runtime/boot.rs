//! `host-runtime boot`: starts a host's init as PID 1 of a new PID namespace inside the
//! host's network namespace, and returns once the init is ready.
//!
//! Process layout: boot (exits when ready) → keeper (setns net, unshare pid; waits for the
//! init so it is reaped at once when the host stops) → init (PID 1 inside). Raw
//! fork/setns/unshare rather than `ip netns exec unshare ...`: the keeper learns the
//! init's machine-side PID directly, which `Host::pids`/`stop`/`command` need.

use crate::args::Args;
use crate::sys;
use std::io::Read;
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BOOT_TIMEOUT_MS: i32 = 30_000;

pub fn main(argv: &[String]) -> i32 {
    match run(argv) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("host-runtime boot: {e}");
            1
        }
    }
}

fn run(argv: &[String]) -> Result<(), String> {
    let a = Args::parse(argv);
    let name = a.get("name").ok_or("--name missing")?;
    let netns = a.get("netns").ok_or("--netns missing")?;
    let host_dir = PathBuf::from(a.get("host-dir").ok_or("--host-dir missing")?);
    let init_file = host_dir.join("init.json");
    let _ = std::fs::remove_file(&init_file);
    let log = host_dir.join("init.log");
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let (rd, wr) = sys::pipe().map_err(|e| e.to_string())?;
    let pid = sys::fork().map_err(|e| e.to_string())?;
    if pid == 0 {
        // SAFETY: rd is ours and unused in this branch.
        unsafe { libc::close(rd) };
        let code = match keeper(netns, &exe, argv, wr, &init_file, &log) {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("keeper: {e}\n");
                // SAFETY: wr is a valid pipe end; the parent reads the message.
                unsafe { libc::write(wr, msg.as_ptr() as *const libc::c_void, msg.len()) };
                1
            }
        };
        std::process::exit(code);
    }
    // SAFETY: wr is ours; closing it lets us see EOF when the init dies.
    unsafe { libc::close(wr) };
    // SAFETY: rd is an open pipe end we own.
    let mut f = unsafe { std::fs::File::from_raw_fd(rd) };
    // A wedged init must not hang the caller: give it BOOT_TIMEOUT to report.
    let mut pfd = libc::pollfd {
        fd: rd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is a valid pollfd for an fd we own.
    let ready = unsafe { libc::poll(&mut pfd, 1, BOOT_TIMEOUT_MS) };
    let mut msg = String::new();
    if ready > 0 {
        let _ = f.read_to_string(&mut msg);
    } else {
        msg = format!("no word from the init in {} s", BOOT_TIMEOUT_MS / 1000);
    }
    // The keeper is our child; reap it if it already gave up.
    let mut st = 0;
    // SAFETY: st is a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
    if msg.trim() != "ready" {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "init of {name} did not come up: {} {}",
            msg.trim(),
            tail.join("\n")
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !init_file.exists() {
        if Instant::now() > deadline {
            return Err("keeper did not record the init".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn keeper(
    netns: &str,
    exe: &Path,
    argv: &[String],
    wr: i32,
    init_file: &Path,
    log: &Path,
) -> Result<i32, String> {
    // SAFETY: setsid has no preconditions; we leave the caller's session so its signals
    // (a ^C in a test run) do not reach the host.
    unsafe { libc::setsid() };
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| e.to_string())?;
    use std::os::fd::IntoRawFd;
    // Raw from here on: close_fds_except closes it, nothing may close it a second time.
    let logfd = logf.into_raw_fd();
    // SAFETY: redirecting our own stdio to an open file / /dev/null.
    unsafe {
        libc::dup2(logfd, 1);
        libc::dup2(logfd, 2);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        libc::dup2(null, 0);
    }
    sys::close_fds_except(&[wr]);
    sys::setns_path(&Path::new("/run/netns").join(netns), libc::CLONE_NEWNET)
        .map_err(|e| format!("setns {netns}: {e}"))?;
    sys::unshare(libc::CLONE_NEWPID).map_err(|e| format!("unshare pid: {e}"))?;
    let child = sys::fork().map_err(|e| e.to_string())?;
    if child == 0 {
        use std::os::unix::process::CommandExt;
        let _ = sys::clear_cloexec(wr);
        let mut args: Vec<String> = vec!["init".into()];
        args.extend(argv.iter().cloned());
        args.push("--ready-fd".into());
        args.push(wr.to_string());
        let e = std::process::Command::new(exe).args(&args).exec();
        eprintln!("cannot exec init: {e}");
        std::process::exit(127);
    }
    // SAFETY: the init holds its own copy of wr.
    unsafe { libc::close(wr) };
    let pid = child as u32;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    let starttime: u64 = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split(' ').nth(20)?.parse().ok())
        .ok_or("cannot read the init's start time")?;
    let pid_ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).map_err(|e| e.to_string())?;
    let rec = serde_json::json!({ "pid": pid, "starttime": starttime, "pid_ns": pid_ns.to_string_lossy() });
    let tmp = init_file.with_extension("tmp");
    std::fs::write(&tmp, rec.to_string()).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, init_file).map_err(|e| e.to_string())?;
    let st = sys::wait_for(child).map_err(|e| e.to_string())?;
    Ok(sys::shell_code(st))
}
