//! `host-runtime init`: PID 1 of a host. Builds the host's filesystem view in a private
//! mount namespace (overlays, tmpfs, /proc and /sys of its own namespaces, the catalog,
//! the runtime's tools shadowing the machine's, the lab's shared directories over all that),
//! then supervises services and serves `systemctl` on a unix socket.

use crate::args::Args;
use crate::sup::Sup;
use crate::sys;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The socket `systemctl` talks to, inside the host.
pub const SOCKET: &str = "/run/local-model/init.sock";
const OVERLAID: &[&str] = &["etc", "var", "usr", "opt", "srv", "snap", "root", "home"];
/// Tools the runtime provides in every host, shadowing the machine's.
const TOOLS: &[&str] = &[
    "systemctl",
    "apt-get",
    "apt",
    "snap",
    "dpkg-query",
    "journalctl",
];
pub const CATALOG: &str = "/usr/lib/local-model/catalog";
/// Where a host sees the machine's root file system (read-only, no submounts).
pub const MACHINE_ROOT: &str = "/run/local-model/machine";

pub fn main(argv: &[String]) -> i32 {
    // Daemons built for systemd decide whether to sd_notify by reading /proc/1/stat
    // (keepalived requires "1 (systemd) "): PID 1 answers to that name, as on a real host.
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"systemd".as_ptr()) };
    let a = Args::parse(argv);
    let ready_fd: i32 = a.get("ready-fd").and_then(|s| s.parse().ok()).unwrap_or(-1);
    let report = |msg: &str| {
        if ready_fd >= 0 {
            // SAFETY: writing to and closing the boot pipe we inherited.
            unsafe {
                libc::write(ready_fd, msg.as_ptr() as *const libc::c_void, msg.len());
                libc::close(ready_fd);
            }
        }
    };
    let name = a.get("name").unwrap_or("host").to_string();
    let host_dir = PathBuf::from(a.get("host-dir").unwrap_or("/nonexistent"));
    // Overlay layers: in the host's dir unless the lab keeps them elsewhere.
    let layers = a
        .get("layers-dir")
        .map_or_else(|| host_dir.clone(), PathBuf::from);
    let catalog = a.get("catalog").map(PathBuf::from);
    let shared: Vec<PathBuf> = a.all("share").into_iter().map(PathBuf::from).collect();
    // Nothing the init starts may hold the boot pipe open.
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(ready_fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    if let Err(e) = setup(&name, &layers, catalog.as_deref(), &shared) {
        eprintln!("init {name}: {e}");
        report(&format!("setup failed: {e}\n"));
        return 1;
    }
    let listener = match listen() {
        Ok(l) => l,
        Err(e) => {
            report(&format!("cannot listen on {SOCKET}: {e}\n"));
            return 1;
        }
    };
    let sup = Sup::new(name.clone());
    // What reads snapd's API instead of running `snap` (charms on Canonical's snap library)
    // finds it answering from boot, as snapd.socket is on an Ubuntu machine.
    if let Err(e) = crate::snapd::start(sup.clone()) {
        report(&format!("cannot listen on {}: {e}\n", crate::snapd::SOCKET));
        return 1;
    }
    {
        let s = sup.clone();
        std::thread::spawn(move || s.reaper());
    }
    sup.boot();
    eprintln!("init {name}: up");
    report("ready\n");
    for conn in listener.incoming() {
        match conn {
            Ok(c) => {
                let s = sup.clone();
                std::thread::spawn(move || serve(&s, c));
            }
            Err(e) => eprintln!("init {name}: accept: {e}"),
        }
    }
    0
}

fn setup(
    name: &str,
    layers: &Path,
    catalog: Option<&Path>,
    shared: &[PathBuf],
) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    sys::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS).map_err(|e| format!("unshare: {e}"))?;
    // Nothing mounted here may propagate back to the machine.
    sys::mount(
        "none",
        Path::new("/"),
        "",
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
    .map_err(|e| e.to_string())?;
    // Held before anything covers them (a shared dir may be under /tmp or /var), bound last.
    let shared = hold_shared(shared)?;
    sys::sethostname(name).map_err(|e| format!("sethostname: {e}"))?;
    let nfl = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    sys::mount("proc", Path::new("/proc"), "proc", nfl, None).map_err(|e| e.to_string())?;
    // Kernel settings outside the network namespace are the machine's: /proc/sys is
    // read-only but for /proc/sys/net (per network namespace), as in a container.
    if let Err(e) = protect_proc_sys() {
        eprintln!("init {name}: {e}");
    }
    // /sys of the host's network namespace (what `ip netns exec` does), read-only; not fatal.
    if let Err(e) = sys::mount(
        "sysfs",
        Path::new("/sys"),
        "sysfs",
        nfl | libc::MS_RDONLY,
        None,
    ) {
        eprintln!("init {name}: {e}");
    }
    for top in OVERLAID {
        let upper = layers.join("upper").join(top);
        let work = layers.join("work").join(top);
        std::fs::create_dir_all(&upper).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
        let opts = format!(
            "lowerdir=/{top},upperdir={},workdir={}",
            upper.display(),
            work.display()
        );
        sys::mount(
            "overlay",
            &Path::new("/").join(top),
            "overlay",
            0,
            Some(&opts),
        )
        .map_err(|e| e.to_string())?;
    }
    // Before /tmp and /run become the host's own: the catalog is a machine path.
    if let Some(c) = catalog {
        std::fs::create_dir_all(CATALOG).map_err(|e| format!("{CATALOG}: {e}"))?;
        sys::mount(
            &c.to_string_lossy(),
            Path::new(CATALOG),
            "",
            libc::MS_BIND,
            None,
        )
        .map_err(|e| e.to_string())?;
        sys::mount(
            "none",
            Path::new(CATALOG),
            "",
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            None,
        )
        .map_err(|e| e.to_string())?;
    }
    sys::mount(
        "tmpfs",
        Path::new("/run"),
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(|e| e.to_string())?;
    // The machine's root file system (without its submounts), read-only: catalog entries
    // name machine paths, which may lie where the host has its own /tmp or overlays.
    std::fs::create_dir_all(MACHINE_ROOT).map_err(|e| format!("{MACHINE_ROOT}: {e}"))?;
    sys::mount("/", Path::new(MACHINE_ROOT), "", libc::MS_BIND, None).map_err(|e| e.to_string())?;
    sys::mount(
        "none",
        Path::new(MACHINE_ROOT),
        "",
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
        None,
    )
    .map_err(|e| e.to_string())?;
    for d in [
        "/run/lock",
        "/run/local-model",
        "/run/systemd/system",
        "/run/user",
    ] {
        std::fs::create_dir_all(d).map_err(|e| format!("{d}: {e}"))?;
    }
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions("/run/lock", std::fs::Permissions::from_mode(0o1777));
    crate::tmpfiles::create_run_dirs();
    keep_real_dpkg_query()?;
    // Bind mounts, not files in the overlay: they vanish with the host's mount namespace,
    // so the machine's tools stay intact in every host's upper layer.
    for t in TOOLS {
        let p = Path::new("/usr/bin").join(t);
        if std::fs::symlink_metadata(&p).is_err() {
            std::fs::write(&p, b"").map_err(|e| format!("{}: {e}", p.display()))?;
        }
        sys::mount(&exe.to_string_lossy(), &p, "", libc::MS_BIND, None)
            .map_err(|e| e.to_string())?;
    }
    // Last: until now the runtime binary (in the lab dir) may have been under /tmp.
    for (dir, mode) in [("/tmp", "1777"), ("/dev/shm", "1777")] {
        sys::mount(
            "tmpfs",
            Path::new(dir),
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(&format!("mode={mode}")),
        )
        .map_err(|e| e.to_string())?;
    }
    bind_shared(&shared)
}

/// A shared directory, held open (`O_PATH`) from before the host's mounts cover it.
struct Held {
    path: PathBuf,
    dir: std::fs::File,
}

fn hold_shared(dirs: &[PathBuf]) -> Result<Vec<Held>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    dirs.iter()
        .map(|d| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                .open(d)
                .map(|dir| Held {
                    path: d.clone(),
                    dir,
                })
                .map_err(|e| format!("shared directory {}: {e}", d.display()))
        })
        .collect()
}

/// Binds each shared directory at its own path, over whatever the host has there (its own
/// /tmp, an overlay), through the descriptor held since before those mounts.
fn bind_shared(held: &[Held]) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    for h in held {
        std::fs::create_dir_all(&h.path).map_err(|e| format!("{}: {e}", h.path.display()))?;
        let src = format!("/proc/self/fd/{}", h.dir.as_raw_fd());
        sys::mount(&src, &h.path, "", libc::MS_BIND | libc::MS_REC, None)
            .map_err(|e| format!("sharing {}: {e}", h.path.display()))?;
    }
    Ok(())
}

fn protect_proc_sys() -> Result<(), String> {
    let sys_dir = Path::new("/proc/sys");
    let net = Path::new("/proc/sys/net");
    sys::mount("/proc/sys", sys_dir, "", libc::MS_BIND, None).map_err(|e| e.to_string())?;
    sys::mount(
        "none",
        sys_dir,
        "",
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
        None,
    )
    .map_err(|e| e.to_string())?;
    // A bind mount starts with its source's flags: make this one writable again.
    sys::mount("/proc/sys/net", net, "", libc::MS_BIND, None).map_err(|e| e.to_string())?;
    sys::mount("none", net, "", libc::MS_BIND | libc::MS_REMOUNT, None).map_err(|e| e.to_string())
}

/// Binds the machine's dpkg-query under /run before the runtime's shim shadows it.
fn keep_real_dpkg_query() -> Result<(), String> {
    let real = Path::new(crate::dpkg_query::REAL);
    let orig = Path::new("/usr/bin/dpkg-query");
    if !orig.is_file() {
        return Ok(());
    }
    if let Some(d) = real.parent() {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    std::fs::write(real, b"").map_err(|e| e.to_string())?;
    sys::mount(&orig.to_string_lossy(), real, "", libc::MS_BIND, None).map_err(|e| e.to_string())
}

fn listen() -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(SOCKET);
    let l = UnixListener::bind(SOCKET)?;
    std::fs::set_permissions(SOCKET, std::fs::Permissions::from_mode(0o666))?;
    Ok(l)
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Request {
    pub argv: Vec<String>,
}

fn peer_uid(c: &UnixStream) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred/len describe a valid ucred buffer for SO_PEERCRED.
    let r = unsafe {
        libc::getsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    (r == 0).then_some(cred.uid)
}

fn serve(sup: &Arc<Sup>, c: UnixStream) {
    let mut line = String::new();
    let mut rd = BufReader::new(&c);
    if rd.read_line(&mut line).is_err() {
        return;
    }
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(req) => crate::ctl::run(sup, &req.argv, peer_uid(&c) == Some(0)),
        Err(e) => crate::ctl::Reply {
            code: 1,
            out: String::new(),
            err: format!("bad request: {e}\n"),
        },
    };
    let mut w = &c;
    let _ = writeln!(w, "{}", serde_json::to_string(&reply).unwrap_or_default());
}
