//! A host's disk before its first boot: overlay layer directories, identity files, and
//! whiteouts hiding what the machine has enabled.

use crate::layout;
use anyhow::{Context, Result};
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

/// Lays out the host's disk before its first boot: overlay dirs, identity files, and
/// whiteouts hiding the services the machine has enabled (a fresh host has none: a
/// package's services are enabled when it is installed in the host).
pub(crate) fn prepare(layers: &Path, prefix: &str, name: &str, ip: Ipv4Addr) -> Result<()> {
    let hd = layout::host_layers(layers, name);
    for top in layout::OVERLAID {
        fs::create_dir_all(hd.join("upper").join(top))?;
        fs::create_dir_all(hd.join("work").join(top))?;
    }
    let etc = hd.join("upper/etc");
    fs::write(etc.join("hostname"), format!("{}\n", name))?;
    fs::write(
        etc.join("hosts"),
        format!(
            "127.0.0.1\tlocalhost\n{}\t{}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
            ip, name
        ),
    )?;
    fs::write(
        etc.join("machine-id"),
        format!("{}\n", machine_id(prefix, name)),
    )?;
    hide_machine_wants(&etc)?;
    Ok(())
}

/// Overlayfs whiteouts (0/0 character devices) in the upper /etc for every
/// `/etc/systemd/system/*.wants/*` entry of the machine.
fn hide_machine_wants(upper_etc: &Path) -> Result<()> {
    let sys = Path::new("/etc/systemd/system");
    let Ok(rd) = fs::read_dir(sys) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().ends_with(".wants") || !e.path().is_dir() {
            continue;
        }
        let dst_dir = upper_etc.join("systemd/system").join(&name);
        fs::create_dir_all(&dst_dir)?;
        for w in fs::read_dir(e.path())?.flatten() {
            whiteout(&dst_dir.join(w.file_name()))?;
        }
    }
    Ok(())
}

fn whiteout(path: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: c is a valid NUL-terminated path.
    let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, libc::makedev(0, 0)) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e).with_context(|| format!("cannot create whiteout {}", path.display()));
        }
    }
    Ok(())
}

/// A stable 32-hex-digit machine id per lab prefix and host.
fn machine_id(prefix: &str, name: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut out = String::new();
    for salt in 0..2u8 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (prefix, name, salt).hash(&mut h);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}
