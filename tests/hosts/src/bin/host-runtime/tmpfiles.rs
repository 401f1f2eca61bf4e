//! The part of systemd-tmpfiles a boot needs: `d`/`D` lines for directories under /run
//! (e.g. /run/haproxy, /run/postgresql), since each boot starts with an empty /run.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const DIRS: &[&str] = &[
    "/usr/lib/tmpfiles.d",
    "/lib/tmpfiles.d",
    "/run/tmpfiles.d",
    "/etc/tmpfiles.d",
];

pub fn create_run_dirs() {
    // Same-named files in later directories override earlier ones.
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for d in DIRS {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.ends_with(".conf") {
                    files.insert(n, e.path());
                }
            }
        }
    }
    for f in files.values() {
        for line in std::fs::read_to_string(f).unwrap_or_default().lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.len() < 2 || !matches!(w[0], "d" | "D") || !w[1].starts_with("/run/") {
                continue;
            }
            let p = Path::new(w[1]);
            if std::fs::create_dir_all(p).is_err() {
                continue;
            }
            if let Some(m) = w.get(2).and_then(|m| u32::from_str_radix(m, 8).ok()) {
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
            }
            let uid = w
                .get(3)
                .filter(|u| **u != "-")
                .and_then(|u| crate::users::user(u))
                .map(|u| u.uid);
            let gid = w
                .get(4)
                .filter(|g| **g != "-")
                .and_then(|g| crate::users::group(g));
            let _ = std::os::unix::fs::chown(p, uid, gid);
        }
    }
}
