//! The package catalog (CONTRACTS.md section 2) and what installing means in a host:
//! catalog entries are laid out on the host's disk; Debian packages the machine has are
//! accepted and their services enabled and started, as Ubuntu's postinst scripts do.
//! Installed packages are recorded under /var/lib/local-model/packages/.

use crate::init::CATALOG;
use crate::users;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const RECORDS: &str = "/var/lib/local-model/packages";

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Entry {
    pub name: String,
    pub kind: String,
    pub version: Option<String>,
    pub files: Vec<FileEntry>,
    pub symlinks: Vec<LinkEntry>,
    pub dirs: Vec<DirEntry>,
    pub users: Vec<String>,
    pub enable: Vec<String>,
    pub postinst: Vec<Vec<String>>,
    /// Snaps: what the store offers per channel (`3.6/stable` → version and revision);
    /// empty means every channel gets `version`.
    pub channels: std::collections::BTreeMap<String, ChannelEntry>,
    /// Snaps: the commands of each hook (`post-refresh`), run as snapd runs the snap's hook.
    pub hooks: std::collections::BTreeMap<String, Vec<Vec<String>>>,
    /// Snaps: each app's command (snap.yaml `apps.<app>.command`), what `snap run` starts.
    pub apps: std::collections::BTreeMap<String, Vec<String>>,
}

/// One channel of a snap in the catalog.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct ChannelEntry {
    pub version: String,
    pub revision: String,
}

#[derive(Deserialize)]
pub struct FileEntry {
    pub src: String,
    pub dst: String,
    pub mode: Option<String>,
}

#[derive(Deserialize)]
pub struct LinkEntry {
    pub dst: String,
    pub target: String,
}

#[derive(Deserialize)]
pub struct DirEntry {
    pub path: String,
    pub mode: Option<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

/// What the host remembers about an installed package.
#[derive(Serialize, Deserialize, Clone, Default)]
#[serde(default)]
pub struct Record {
    pub name: String,
    /// "deb" or "snap".
    pub kind: String,
    /// "catalog" or "debian".
    pub source: String,
    pub version: String,
    pub channel: Option<String>,
    pub files: Vec<String>,
    pub symlinks: Vec<String>,
    pub units: Vec<String>,
    /// A snap's configuration, typed as snapd keeps it (`snap set` values that parse as JSON
    /// are JSON; records from before hold strings, which read the same).
    pub config: std::collections::BTreeMap<String, serde_json::Value>,
    /// Snaps: the installed revision (`snap list`'s Rev).
    pub revision: String,
    /// Snaps: `snap refresh --hold`: `forever` or an RFC 3339 time.
    pub hold: Option<String>,
}

/// The catalog entry for `name`: None if there is none, Err if it is unreadable.
pub fn lookup(name: &str) -> Option<Result<Entry, String>> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    let p = Path::new(CATALOG).join(format!("{name}.json"));
    let text = std::fs::read_to_string(&p).ok()?;
    Some(
        serde_json::from_str::<Entry>(&text)
            .map_err(|e| format!("{}: {e}", p.display()))
            .map(|mut e| {
                if e.name.is_empty() {
                    e.name = name.to_string();
                }
                e
            }),
    )
}

/// The catalog entry for `name` if it is of `kind` ("deb" for apt, "snap" for snap); an
/// entry without a kind serves both. apt does not install snaps, nor snap debs.
pub fn lookup_kind(name: &str, kind: &str) -> Option<Result<Entry, String>> {
    lookup(name).filter(|e| {
        e.as_ref()
            .map_or(true, |e| e.kind.is_empty() || e.kind == kind)
    })
}

fn record_path(name: &str) -> PathBuf {
    Path::new(RECORDS).join(format!("{name}.json"))
}

pub fn record(name: &str) -> Option<Record> {
    serde_json::from_str(&std::fs::read_to_string(record_path(name)).ok()?).ok()
}

pub fn records() -> Vec<Record> {
    let mut v: Vec<Record> = std::fs::read_dir(RECORDS)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a: &Record, b| a.name.cmp(&b.name));
    v
}

pub fn save(r: &Record) -> Result<(), String> {
    std::fs::create_dir_all(RECORDS).map_err(|e| e.to_string())?;
    let p = record_path(&r.name);
    let tmp = p.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(r).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &p).map_err(|e| e.to_string())
}

fn mode(m: &Option<String>) -> Option<u32> {
    m.as_deref()
        .and_then(|m| u32::from_str_radix(m.trim_start_matches("0o"), 8).ok())
}

/// systemctl through the host's init; an error carries its stderr.
pub fn systemctl(args: &[&str]) -> Result<String, String> {
    let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let r = crate::systemctl::call(&argv);
    if r.code != 0 {
        return Err(format!("systemctl {}: {}", args.join(" "), r.err.trim()));
    }
    Ok(r.err)
}

pub fn run(argv: &[String]) -> Result<(), String> {
    let (p, a) = argv.split_first().ok_or("empty postinst command")?;
    let out = Command::new(p)
        .args(a)
        .output()
        .map_err(|e| format!("{p}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}{}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ));
    }
    Ok(())
}

fn ensure_user(u: &str) -> Result<(), String> {
    if users::user(u).is_some() {
        return Ok(());
    }
    run(&[
        "useradd".into(),
        "--system".into(),
        "--user-group".into(),
        "--no-create-home".into(),
        "--home-dir".into(),
        format!("/var/lib/{u}"),
        "--shell".into(),
        "/usr/sbin/nologin".into(),
        u.into(),
    ])
}

/// A catalog `src` is a machine path: read it through the machine's root when it is there
/// (the host's own /tmp, /run or overlays may hide or change it), else as the host sees it.
fn machine_path(src: &str) -> PathBuf {
    let m = Path::new(crate::init::MACHINE_ROOT).join(src.trim_start_matches('/'));
    if m.is_file() {
        m
    } else {
        PathBuf::from(src)
    }
}

/// Copies an entry's files and makes its symlinks (a snap's new revision on refresh, as on
/// install); the paths it wrote.
pub fn lay_files(e: &Entry) -> Result<(Vec<String>, Vec<String>), String> {
    use std::os::unix::fs::PermissionsExt;
    let mut rec = Record::default();
    for f in &e.files {
        let dst = Path::new(&f.dst);
        if let Some(p) = dst.parent() {
            std::fs::create_dir_all(p).map_err(|x| format!("{}: {x}", p.display()))?;
        }
        let tmp = dst.with_extension("lm-tmp");
        std::fs::copy(machine_path(&f.src), &tmp)
            .map_err(|x| format!("copy {} to {}: {x}", f.src, f.dst))?;
        if let Some(m) = mode(&f.mode) {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(m))
                .map_err(|x| x.to_string())?;
        }
        std::fs::rename(&tmp, dst).map_err(|x| format!("{}: {x}", f.dst))?;
        rec.files.push(f.dst.clone());
    }
    for l in &e.symlinks {
        let dst = Path::new(&l.dst);
        if let Some(p) = dst.parent() {
            std::fs::create_dir_all(p).map_err(|x| format!("{}: {x}", p.display()))?;
        }
        let _ = std::fs::remove_file(dst);
        std::os::unix::fs::symlink(&l.target, dst).map_err(|x| format!("{}: {x}", l.dst))?;
        rec.symlinks.push(l.dst.clone());
    }
    Ok((rec.files, rec.symlinks))
}

/// Installs a catalog entry: users, dirs, files, symlinks, daemon-reload, enable and
/// start, postinst (the contract's order). Returns the record to save.
pub fn install_entry(e: &Entry, kind: &str, channel: Option<String>) -> Result<Record, String> {
    use std::os::unix::fs::PermissionsExt;
    for u in &e.users {
        ensure_user(u)?;
    }
    for d in &e.dirs {
        std::fs::create_dir_all(&d.path).map_err(|x| format!("{}: {x}", d.path))?;
        if let Some(m) = mode(&d.mode) {
            std::fs::set_permissions(&d.path, std::fs::Permissions::from_mode(m))
                .map_err(|x| x.to_string())?;
        }
        let uid = d
            .owner
            .as_deref()
            .map(|o| users::user(o).map(|u| u.uid).ok_or(format!("no user {o}")))
            .transpose()?;
        let gid = d
            .group
            .as_deref()
            .map(|g| users::group(g).ok_or(format!("no group {g}")))
            .transpose()?;
        std::os::unix::fs::chown(&d.path, uid, gid)
            .map_err(|x| format!("chown {}: {x}", d.path))?;
    }
    let mut rec = Record {
        name: e.name.clone(),
        kind: kind.to_string(),
        source: "catalog".into(),
        version: e.version.clone().unwrap_or_else(|| "1.0".into()),
        channel,
        ..Default::default()
    };
    let (files, links) = lay_files(e)?;
    rec.files = files;
    rec.symlinks = links;
    systemctl(&["daemon-reload"])?;
    for u in &e.enable {
        systemctl(&["enable", u])?;
        systemctl(&["start", u])?;
        rec.units.push(u.clone());
    }
    for argv in &e.postinst {
        run(argv)?;
    }
    Ok(rec)
}

/// Is the Debian package installed on the machine (whose dpkg database hosts see)?
pub fn debian_installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
}

pub fn debian_version(name: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", name])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The services a Debian package ships with an `[Install]` section (not templates).
pub fn debian_units(name: &str) -> Vec<String> {
    let info = Path::new("/var/lib/dpkg/info");
    let list = [
        format!("{name}.list"),
        format!("{name}:amd64.list"),
        format!("{name}:arm64.list"),
    ]
    .iter()
    .find_map(|f| std::fs::read_to_string(info.join(f)).ok())
    .unwrap_or_default();
    let mut v = Vec::new();
    for l in list.lines() {
        let Some(f) = l
            .strip_prefix("/lib/systemd/system/")
            .or_else(|| l.strip_prefix("/usr/lib/systemd/system/"))
        else {
            continue;
        };
        if f.contains('/')
            || f.contains('@')
            || !f.ends_with(".service")
            || v.iter().any(|x| x == f)
        {
            continue;
        }
        let text = std::fs::read_to_string(l).unwrap_or_default();
        let has_install = crate::unit::parse(&text).iter().any(|(s, k, _)| {
            s == "Install" && (k == "WantedBy" || k == "RequiredBy" || k == "Alias")
        });
        if has_install {
            v.push(f.to_string());
        }
    }
    v
}

/// What a package's postinst does with one of its services on a first install, read from the
/// snippets debhelper's dh_installsystemd writes into it (debhelper `autoscripts/`):
/// `postinst-systemd-enable` runs `deb-systemd-helper enable 'U'` on a new install, while the
/// `--no-enable` variant (`postinst-systemd-dont-enable`) enables only when
/// `deb-systemd-helper debian-installed 'U'` (an earlier install) says so; and
/// `postinst-systemd-start` / `-restart` run `deb-systemd-invoke start|$_dh_action 'U'`, absent
/// with `--no-start`. E.g. haproxy's service is enabled and started; pgbackrest's (its TLS
/// server, which needs configuring first) is neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnInstall {
    /// Enabled on a first install.
    pub enable: bool,
    /// Started on a first install.
    pub start: bool,
}

/// Reads [`OnInstall`] for `unit` from a postinst script's text.
pub fn on_install(postinst: &str, unit: &str) -> OnInstall {
    let quoted = format!("'{unit}'");
    let has = |needle: &str| {
        postinst
            .lines()
            .any(|l| l.contains(needle) && l.contains(&quoted))
    };
    OnInstall {
        enable: has("deb-systemd-helper enable") && !has("deb-systemd-helper debian-installed"),
        start: has("deb-systemd-invoke"),
    }
}

fn postinst(name: &str) -> String {
    let info = Path::new("/var/lib/dpkg/info");
    [
        format!("{name}.postinst"),
        format!("{name}:amd64.postinst"),
        format!("{name}:arm64.postinst"),
    ]
    .iter()
    .find_map(|f| std::fs::read_to_string(info.join(f)).ok())
    .unwrap_or_default()
}

/// Accepts a machine-installed Debian package: enables and starts its services as its
/// postinst would on a first install ([`on_install`]).
pub fn install_debian(name: &str) -> Result<Record, String> {
    let mut rec = Record {
        name: name.to_string(),
        kind: "deb".into(),
        source: "debian".into(),
        version: debian_version(name),
        ..Default::default()
    };
    let script = postinst(name);
    for u in debian_units(name) {
        let what = on_install(&script, &u);
        if what.enable {
            systemctl(&["enable", &u])?;
        }
        if what.start {
            systemctl(&["start", &u])?;
        }
        if what.enable || what.start {
            rec.units.push(u);
        }
    }
    Ok(rec)
}

/// Removes a package: stops and disables its services, deletes its files and links.
pub fn uninstall(r: &Record) -> Result<(), String> {
    for u in &r.units {
        systemctl(&["stop", u])?;
        let _ = systemctl(&["disable", u]);
    }
    for f in r.files.iter().chain(r.symlinks.iter()) {
        let _ = std::fs::remove_file(f);
    }
    let _ = std::fs::remove_file(record_path(&r.name));
    Ok(())
}

#[cfg(test)]
mod postinst_tests {
    use super::*;

    #[test]
    fn services_follow_the_dh_installsystemd_snippets() {
        // As Debian 12's haproxy and pgbackrest postinsts have them.
        let haproxy = "\t# was-enabled defaults to true, so new installations run enable.\n\tif deb-systemd-helper --quiet was-enabled 'haproxy.service'; then\n\t\tdeb-systemd-helper enable 'haproxy.service' >/dev/null || true\n\tfi\n\t\tdeb-systemd-invoke start 'haproxy.service' >/dev/null || true\n";
        assert_eq!(
            on_install(haproxy, "haproxy.service"),
            OnInstall {
                enable: true,
                start: true
            }
        );
        let pgbackrest = "\tif deb-systemd-helper debian-installed 'pgbackrest.service'; then\n\t\tdeb-systemd-helper unmask 'pgbackrest.service' >/dev/null || true\n\t\tif deb-systemd-helper --quiet was-enabled 'pgbackrest.service'; then\n\t\t\tdeb-systemd-helper enable 'pgbackrest.service' >/dev/null || true\n\t\tfi\n\tfi\n";
        assert_eq!(
            on_install(pgbackrest, "pgbackrest.service"),
            OnInstall {
                enable: false,
                start: false
            }
        );
        let keepalived = "deb-systemd-helper enable 'keepalived.service'\n\t\tdeb-systemd-invoke $_dh_action 'keepalived.service' >/dev/null || true\n";
        assert_eq!(
            on_install(keepalived, "keepalived.service"),
            OnInstall {
                enable: true,
                start: true
            }
        );
        assert_eq!(
            on_install(keepalived, "other.service"),
            OnInstall {
                enable: false,
                start: false
            }
        );
    }
}
