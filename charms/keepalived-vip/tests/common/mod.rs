//! Shared helpers: the charm's harness, a scripted host, and the real `keepalived -t`.
#![allow(dead_code)]

use charm_lib::testing::{Harness, MachineState, Relation, Secret, State};
use charm_lib::CmdOutput;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const CONF: &str = "/etc/keepalived/keepalived-keepalived-vip.conf";
pub const NOTIFY: &str = "/etc/keepalived/keepalived-keepalived-vip-notify.sh";
pub const UNIT_FILE: &str = "/etc/systemd/system/keepalived-keepalived-vip.service";
pub const SERVICE: &str = "keepalived-keepalived-vip.service";
pub const SYSCTL: &str = "/etc/sysctl.d/60-keepalived-vip-keepalived-vip.conf";
pub const CLAIMS: &str = "/var/lib/keepalived-vip/claims.json";
pub const PASSWORD: &str = "Zq7Lm2Xw";
pub const SECRET_ID: &str = "secret:vrrpauth0001";

pub fn harness() -> Harness {
    Harness::new(env!("CARGO_MANIFEST_DIR"), keepalived_vip::handle)
}

/// A non-loopback, multicast-capable interface that exists on this machine: `keepalived -t` checks that the
/// configured interface exists, and the tests must never create or touch one.
pub fn real_iface() -> String {
    let out = Command::new("ip")
        .args(["-j", "link", "show"])
        .output()
        .expect("ip runs");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j link prints JSON");
    v.as_array()
        .unwrap()
        .iter()
        .find(|l| {
            l["link_type"] != "loopback"
                && l["ifname"].is_string()
                && l["flags"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "MULTICAST"))
        })
        .and_then(|l| l["ifname"].as_str())
        .expect("this machine has a multicast-capable interface")
        .to_string()
}

/// `ip -j addr show` output for a host with `addrs` (CIDRs) on `iface`, plus loopback.
pub fn ip_json(iface: &str, addrs: &[&str]) -> String {
    let infos: Vec<serde_json::Value> = addrs
        .iter()
        .map(|a| {
            let (ip, prefix) = a.split_once('/').unwrap();
            let family = if ip.contains(':') { "inet6" } else { "inet" };
            serde_json::json!({"family": family, "local": ip, "prefixlen": prefix.parse::<u8>().unwrap(), "scope": "global"})
        })
        .collect();
    serde_json::json!([
        {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP"], "link_type": "loopback", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"}]},
        {"ifindex": 2, "ifname": iface, "flags": ["BROADCAST", "MULTICAST", "UP"], "link_type": "ether", "addr_info": infos}
    ])
    .to_string()
}

/// A host whose interface carries `addrs`.
pub fn host(addrs: &[&str]) -> MachineState {
    MachineState::default().respond(
        &["ip", "-j", "addr", "show"],
        CmdOutput::ok(ip_json(&real_iface(), addrs)),
    )
}

/// Whether `m` holds a file at `path`.
pub fn has_file(m: &MachineState, path: &str) -> bool {
    m.files.contains_key(std::path::Path::new(path))
}

/// Whether the file at `path` on `m` contains `needle`; panics when there is no such file.
pub fn file_contains(m: &MachineState, path: &str, needle: &str) -> bool {
    m.text(path).unwrap().contains(needle)
}

/// `m` with the systemd unit `unit` already running and enabled.
pub fn running(mut m: MachineState, unit: &str) -> MachineState {
    m.services.insert(
        unit.into(),
        charm_lib::testing::Service {
            active: true,
            enabled: true,
        },
    );
    m
}

/// The peer relation with `peers` (unit number, address) and the shared secret id.
pub fn peers(peers: &[(u32, &str)]) -> Relation {
    peers.iter().fold(
        Relation::peer(1, "cluster").local_app_data(&[("auth-secret-id", SECRET_ID)]),
        |r, (n, a)| r.remote_unit(*n, &[("address", a), ("priority", "1")]),
    )
}

/// The leader, alone until a test adds peers, which already shared the VRRP password, on a
/// host at 10.0.0.10/24.
pub fn base() -> State {
    let mut st = State::default()
        .leader()
        .with_config("vip", "10.0.0.100/24")
        .with_relation(peers(&[]))
        .with_relation(Relation::new(3, "juju-info", "ubuntu").remote_unit(0, &[]))
        .with_secret(Secret::owned(SECRET_ID, &[("password", PASSWORD)]));
    st.machine = host(&["10.0.0.10/24"]);
    st
}

static N: AtomicUsize = AtomicUsize::new(0);

/// Runs the real `keepalived -t -f` on `text`; returns (exit code, stderr).
pub fn keepalived_t(text: &str) -> (i32, String) {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::temp_dir().join(format!(
        "kvip-test-{}-{}.conf",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new("keepalived")
        .arg("-t")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("keepalived is installed on this machine");
    std::fs::remove_file(&path).unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts keepalived accepts `text` without a single warning.
pub fn assert_keepalived_accepts(text: &str) {
    let (code, stderr) = keepalived_t(text);
    assert_eq!(
        (code, stderr.trim()),
        (0, ""),
        "keepalived -t refused:\n{text}"
    );
}
