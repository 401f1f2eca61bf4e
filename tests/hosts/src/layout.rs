//! Names and paths of everything a lab creates, so that creation, clean-up and
//! `Lab::leftovers` agree on them.

use std::path::{Path, PathBuf};

/// Directories overlaid per host (lower = the machine's directory).
pub(crate) const OVERLAID: &[&str] = &["etc", "var", "usr", "opt", "srv", "snap", "root", "home"];

/// Environment variable every process of a lab carries, so that a crashed lab's processes
/// can be found by prefix alone.
pub(crate) const LAB_MARKER: &str = "HOSTS_LAB";

pub(crate) fn bridge_ns(prefix: &str) -> String {
    format!("{prefix}-br")
}
pub(crate) fn host_ns(prefix: &str, host: &str) -> String {
    format!("{prefix}-h-{host}")
}
pub(crate) fn bridge_dev(prefix: &str) -> String {
    format!("{prefix}br0")
}
pub(crate) fn veth(prefix: &str, index: u32) -> String {
    format!("{prefix}v{index}")
}
/// Is `ns` (a netns name) one of the lab `prefix`'s?
pub(crate) fn is_lab_ns(prefix: &str, ns: &str) -> bool {
    ns.strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with('-'))
}

pub(crate) fn host_dir(lab_dir: &Path, host: &str) -> PathBuf {
    lab_dir.join("hosts").join(host)
}
pub(crate) fn init_file(lab_dir: &Path, host: &str) -> PathBuf {
    host_dir(lab_dir, host).join("init.json")
}
/// Where a host's overlay layers (upper and work dirs) live.
pub(crate) fn host_layers(layers: &Path, host: &str) -> PathBuf {
    layers.join("hosts").join(host)
}
pub(crate) fn upper(layers: &Path, host: &str, top: &str) -> PathBuf {
    host_layers(layers, host).join("upper").join(top)
}

/// Where a lab keeps its hosts' overlay layers: in the lab dir, unless that is itself
/// under a directory hosts overlay (overlayfs refuses layers inside their own lower
/// directory); then in the machine's /tmp, by prefix.
pub(crate) fn layers_for(lab_dir: &Path, prefix: &str) -> PathBuf {
    if OVERLAID.contains(&top_of(lab_dir).as_str()) {
        external_layers(prefix)
    } else {
        lab_dir.to_path_buf()
    }
}
pub(crate) fn external_layers(prefix: &str) -> PathBuf {
    Path::new("/tmp/hosts-layers").join(prefix)
}
/// The first component of an absolute path ("var" for /var/lib/x).
pub(crate) fn top_of(p: &Path) -> String {
    p.components()
        .nth(1)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default()
}
pub(crate) fn lab_json(lab_dir: &Path) -> PathBuf {
    lab_dir.join("lab.json")
}
pub(crate) fn runtime_copy(lab_dir: &Path) -> PathBuf {
    lab_dir.join("bin").join(crate::RUNTIME_BIN_NAME)
}

/// Checks a prefix: 1–6 chars of `[a-z0-9]`, so every name stays under IFNAMSIZ and one
/// prefix is never the start of another lab's names (a `-` always follows it).
pub(crate) fn check_prefix(prefix: &str) -> anyhow::Result<()> {
    let ok = (1..=6).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    anyhow::ensure!(
        ok,
        "lab prefix {prefix:?} must be 1-6 characters of [a-z0-9]"
    );
    Ok(())
}

/// Checks a host name: it is also the hostname and part of a netns name.
pub(crate) fn check_host_name(name: &str) -> anyhow::Result<()> {
    let ok = (1..=48).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    anyhow::ensure!(
        ok,
        "host name {name:?} must be 1-48 characters of [a-z0-9-], not starting or ending with '-'"
    );
    Ok(())
}
