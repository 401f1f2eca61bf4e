//! Pure rendering: keepalived's configuration and notify script, the systemd unit and the sysctl
//! drop-in.

use crate::checks::Check;
use crate::net::Cidr;
use crate::paths::{Paths, KEEPALIVED};
use charm_lib::juju_exec;
use std::fmt::Write as _;
use std::net::IpAddr;

/// A VIP and the interface it is added to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The address with its prefix.
    pub cidr: Cidr,
    /// The interface.
    pub dev: String,
}

/// A health check and how often it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptCheck {
    /// What is checked.
    pub check: Check,
    /// Seconds between runs.
    pub interval: u32,
    /// Failed runs in a row (a timeout is one) that put the instance in FAULT.
    pub fall: u32,
}

/// Unicast adverts: from this host's address to the peers' addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unicast {
    /// This host's address on the VRRP interface.
    pub src: IpAddr,
    /// The peers' addresses (same family as `src`).
    pub peers: Vec<IpAddr>,
}

/// Everything one application's keepalived configuration depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vrrp {
    /// The Juju unit, for the header and keepalived's router_id.
    pub unit: String,
    /// The `vrrp_instance` name.
    pub instance: String,
    /// The interface VRRP runs on.
    pub interface: String,
    /// Virtual router id.
    pub vrid: u8,
    /// This unit's priority.
    pub priority: u8,
    /// Advertisement interval, centiseconds.
    pub advert_cs: u32,
    /// VRRP version, 2 or 3.
    pub version: u8,
    /// Whether to preempt a lower-priority holder.
    pub preempt: bool,
    /// Unicast peers, or multicast when `None`.
    pub unicast: Option<Unicast>,
    /// The PASS authentication password (VRRP v2 only; keepalived uses 8 characters).
    pub password: Option<String>,
    /// The VIPs; the first one's family is the instance's.
    pub vips: Vec<Placement>,
    /// Health checks, all of which must pass.
    pub checks: Vec<ScriptCheck>,
    /// The script run on every change to MASTER, BACKUP or FAULT.
    pub notify: String,
}

/// Seconds as keepalived reads them, from centiseconds: `1`, `0.1`, `2.25`.
pub fn seconds(cs: u32) -> String {
    match cs % 100 {
        0 => (cs / 100).to_string(),
        r if r % 10 == 0 => format!("{}.{}", cs / 100, r / 10),
        r => format!("{}.{:02}", cs / 100, r),
    }
}

/// Keepalived's configuration for one application.
///
/// Every unit starts in BACKUP: `nopreempt` requires it, and with `preempt` the highest
/// priority wins the first election anyway. Checks have weight 0: a failing check puts the
/// instance in FAULT, which sends a priority-0 advert and moves the VIP at once (a negative
/// weight would not move it at all under `nopreempt`).
pub fn keepalived_conf(v: &Vrrp) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Managed by the keepalived-vip charm ({}): local changes are overwritten.",
        v.unit
    );
    s.push_str("global_defs {\n");
    let _ = writeln!(s, "    router_id {}", v.unit.replace('/', "-"));
    s.push_str("    script_user root\n    enable_script_security\n");
    // The VRRP process at nice -20 (keepalived.conf(5) `vrrp_priority`; its scripts run at the
    // normal priority again): at sub-second adverts, busy loops at nice -20 on the holder's
    // host made its peer take the VIP 13 times in 20 s with keepalived at nice 0, 2 times with
    // it at -20; at nice 0 they made it take it never (issue 17, keepalived-vip README).
    // Realtime (`vrrp_rt_priority`) would be stronger, but keepalived 2.2.7's VRRP process was
    // killed (RLIMIT_RTTIME) after reloads on such a host, and the charm reloads on every peer
    // change.
    s.push_str("    vrrp_priority -20\n");
    let _ = writeln!(s, "    vrrp_version {}", v.version);
    s.push_str("}\n");
    for (i, c) in v.checks.iter().enumerate() {
        let _ = writeln!(
            s,
            "\nvrrp_script {}_{}_{} {{",
            v.instance,
            i,
            c.check.slug()
        );
        let _ = writeln!(s, "    script \"{}\"", c.check.script());
        let _ = writeln!(s, "    interval {}", c.interval);
        // A check that hangs counts as failed before the next run is due.
        let _ = writeln!(s, "    timeout {}", c.interval.max(3));
        // No init_fail: keepalived would count every check failed again on each reload, and the
        // holder would drop the VIP for `rise` intervals whenever a peer joins.
        // `fall` is the option's: 1 moves the VIP at the first failure; more ride out a slow
        // run on a busy host, each costing one interval before a real failure moves it.
        // One success makes a unit eligible again: under `nopreempt` that moves no VIP by
        // itself, and where the VIP has no holder (the DB VIP while a new primary is promoted)
        // a second success would cost a whole interval of outage.
        let _ = writeln!(
            s,
            "    weight 0\n    fall {}\n    rise 1\n}}",
            c.fall.max(1)
        );
    }
    let v6 = v.vips.first().is_some_and(|p| p.cidr.is_v6());
    let (same, other): (Vec<&Placement>, Vec<&Placement>) =
        v.vips.iter().partition(|p| p.cidr.is_v6() == v6);
    let _ = writeln!(s, "\nvrrp_instance {} {{", v.instance);
    s.push_str("    state BACKUP\n");
    if !v.preempt {
        s.push_str("    nopreempt\n");
    }
    let _ = writeln!(s, "    interface {}", v.interface);
    let _ = writeln!(s, "    virtual_router_id {}", v.vrid);
    let _ = writeln!(s, "    priority {}", v.priority);
    let _ = writeln!(s, "    advert_int {}", seconds(v.advert_cs));
    // A unit that joins can be MASTER for a moment before the holder lists it as a peer, and
    // its gratuitous ARP moves clients to it. The holder re-announces every 5 s, so such clients
    // come back within that, not when their ARP entries expire (tens of seconds, seen live).
    s.push_str("    garp_master_refresh 5\n");
    if let Some(u) = v.unicast.as_ref().filter(|u| !u.peers.is_empty()) {
        let _ = writeln!(s, "    unicast_src_ip {}", u.src);
        // Adverts from anyone but a listed peer are dropped: the only gate VRRP v3 has, as
        // keepalived cannot authenticate it (v2's password is in clear in every advert).
        s.push_str("    check_unicast_src\n");
        s.push_str("    unicast_peer {\n");
        for p in &u.peers {
            let _ = writeln!(s, "        {p}");
        }
        s.push_str("    }\n");
    }
    if let (2, Some(pw)) = (v.version, &v.password) {
        s.push_str("    authentication {\n        auth_type PASS\n");
        let _ = writeln!(s, "        auth_pass {pw}");
        s.push_str("    }\n");
    }
    s.push_str("    virtual_ipaddress {\n");
    for p in &same {
        let _ = writeln!(s, "        {} dev {}", p.cidr, p.dev);
    }
    s.push_str("    }\n");
    // An instance advertises one address family; the other family's VIPs follow it without
    // being advertised.
    if !other.is_empty() {
        s.push_str("    virtual_ipaddress_excluded {\n");
        for p in &other {
            let _ = writeln!(s, "        {} dev {}", p.cidr, p.dev);
        }
        s.push_str("    }\n");
    }
    if !v.checks.is_empty() {
        s.push_str("    track_script {\n");
        for (i, c) in v.checks.iter().enumerate() {
            let _ = writeln!(s, "        {}_{}_{}", v.instance, i, c.check.slug());
        }
        s.push_str("    }\n");
    }
    // Not `notify`, which also runs on STOP: stopping keepalived in the stop hook would then
    // queue an update-status that starts it again before the unit is removed.
    for state in ["master", "backup", "fault"] {
        let _ = writeln!(s, "    notify_{state} \"{}\"", v.notify);
    }
    s.push_str("}\n");
    s
}

/// `text` as one single-quoted shell word.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The notify script: asks the unit agent for an update-status hook, so that the status
/// (held or standby) follows a failover between hooks instead of waiting for the periodic
/// update-status, which stays the fallback where neither juju-exec nor juju-run exists.
pub fn notify_script(unit: &str, charm_dir: &str) -> String {
    let mut s = String::from("#!/bin/sh\n");
    let _ = writeln!(
        s,
        "# Managed by the keepalived-vip charm ({unit}): local changes are overwritten."
    );
    // juju-exec waits for the unit's hook lock, which the hook reloading keepalived may hold:
    // run detached, it lets this script return at once, so keepalived never waits on a hook.
    let _ = writeln!(s, "for exec in {}; do", juju_exec::PATHS.join(" "));
    s.push_str("    if [ -x \"$exec\" ]; then\n");
    let args: Vec<String> = juju_exec::update_status_argv("", unit, charm_dir)[1..]
        .iter()
        .map(|a| sh_quote(a))
        .collect();
    let _ = writeln!(
        s,
        "        /usr/bin/setsid \"$exec\" {} </dev/null >/dev/null 2>&1 &",
        args.join(" ")
    );
    s.push_str("        exit 0\n    fi\ndone\nexit 0\n");
    s
}

/// The systemd unit running this application's keepalived: VRRP only, in the foreground,
/// with its own configuration and pid files; reload is SIGHUP (keepalived re-reads its
/// configuration without dropping the VIP).
pub fn systemd_unit(l: &Paths) -> String {
    format!(
        "# Managed by the keepalived-vip charm: local changes are overwritten.\n\
[Unit]\n\
Description=keepalived VRRP for the Juju application {app}\n\
Documentation=man:keepalived(8) man:keepalived.conf(5)\n\
After=network-online.target\n\
Wants=network-online.target\n\
ConditionFileNotEmpty={conf}\n\
\n\
[Service]\n\
Type=simple\n\
ExecStart={bin} --dont-fork --vrrp --log-console --log-detail --no-syslog --use-file={conf} --pid={pid} --vrrp_pid={vrrp_pid}\n\
ExecReload=/bin/kill -HUP $MAINPID\n\
Restart=on-failure\n\
RestartSec=2\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n",
        app = l.app,
        conf = l.conf(),
        bin = KEEPALIVED,
        pid = l.pid(),
        vrrp_pid = l.vrrp_pid(),
    )
}

/// The sysctl drop-in: services (haproxy, PostgreSQL) may bind the VIP on every unit, held or
/// not, so they need not restart when it moves.
pub fn sysctl(v6: bool) -> String {
    let mut s = String::from("# Managed by the keepalived-vip charm: lets services bind a VIP this host does not hold.\nnet.ipv4.ip_nonlocal_bind = 1\n");
    if v6 {
        s.push_str("net.ipv6.ip_nonlocal_bind = 1\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vrrp() -> Vrrp {
        Vrrp {
            unit: "region-vip/2".into(),
            instance: "maas_region".into(),
            interface: "eth0".into(),
            vrid: 51,
            priority: 248,
            advert_cs: 100,
            version: 2,
            preempt: false,
            unicast: Some(Unicast {
                src: "10.0.0.12".parse().unwrap(),
                peers: vec!["10.0.0.10".parse().unwrap()],
            }),
            password: Some("abcd1234".into()),
            vips: vec![Placement {
                cidr: "10.0.0.100/24".parse().unwrap(),
                dev: "eth0".into(),
            }],
            checks: vec![ScriptCheck {
                check: Check::Tcp(5240),
                interval: 2,
                fall: 1,
            }],
            notify: "/etc/keepalived/keepalived-region-vip-notify.sh".into(),
        }
    }

    #[test]
    fn a_check_gives_up_the_vip_after_check_fall_failed_runs() {
        assert!(keepalived_conf(&vrrp()).contains("    weight 0\n    fall 1\n    rise 1\n}\n"));
        let mut v = vrrp();
        v.checks[0].fall = 2;
        assert!(keepalived_conf(&v).contains("    weight 0\n    fall 2\n    rise 1\n}\n"));
    }

    #[test]
    fn keepalived_conf_pieces() {
        let text = keepalived_conf(&vrrp());
        assert!(text.starts_with("# Managed by the keepalived-vip charm (region-vip/2)"));
        assert!(text.contains("    router_id region-vip-2\n"));
        assert!(text.contains("    enable_script_security\n    vrrp_priority -20\n"));
        assert!(text.contains("vrrp_script maas_region_0_tcp_5240 {\n    script \"/bin/bash -c '</dev/tcp/127.0.0.1/5240'\"\n    interval 2\n    timeout 3\n    weight 0\n"));
        assert!(text.contains("    state BACKUP\n    nopreempt\n    interface eth0\n    virtual_router_id 51\n    priority 248\n    advert_int 1\n    garp_master_refresh 5\n"));
        assert!(text.contains(
            "    unicast_src_ip 10.0.0.12\n    check_unicast_src\n    unicast_peer {\n        10.0.0.10\n    }\n"
        ));
        assert!(text.contains("        auth_type PASS\n        auth_pass abcd1234\n"));
        assert!(!text.contains("virtual_ipaddress_excluded"));
        assert!(text.ends_with(
            "    notify_master \"/etc/keepalived/keepalived-region-vip-notify.sh\"\n    notify_backup \"/etc/keepalived/keepalived-region-vip-notify.sh\"\n    notify_fault \"/etc/keepalived/keepalived-region-vip-notify.sh\"\n}\n"
        ));
        assert!(!text.contains("notify "), "no notify on STOP");
    }

    #[test]
    fn notify_script_asks_for_update_status_in_the_background() {
        let s = notify_script(
            "region-vip/2",
            "/var/lib/juju/agents/unit-region-vip-2/charm",
        );
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains("for exec in /usr/bin/juju-exec /usr/bin/juju-run; do\n"));
        assert!(s.contains("        /usr/bin/setsid \"$exec\" '-u' 'region-vip/2' 'JUJU_DISPATCH_PATH=hooks/update-status' '/var/lib/juju/agents/unit-region-vip-2/charm/dispatch' </dev/null >/dev/null 2>&1 &\n        exit 0\n"));
        assert!(s.ends_with("done\nexit 0\n"));
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn keepalived_conf_variants() {
        let mut v = vrrp();
        v.unicast.as_mut().unwrap().peers.clear();
        let lone = keepalived_conf(&v);
        assert!(
            !lone.contains("unicast"),
            "keepalived refuses unicast without peers: a lone unit multicasts"
        );
        v.version = 3;
        v.advert_cs = 10;
        v.preempt = true;
        v.checks.clear();
        v.vips.push(Placement {
            cidr: "fd00::100/64".parse().unwrap(),
            dev: "eth1".into(),
        });
        let t = keepalived_conf(&v);
        assert!(
            !t.contains("authentication"),
            "keepalived 2.2 cannot authenticate VRRP v3"
        );
        assert!(
            !t.contains("nopreempt") && !t.contains("track_script") && !t.contains("vrrp_script")
        );
        assert!(t.contains("    advert_int 0.1\n"));
        assert!(t.contains("    virtual_ipaddress {\n        10.0.0.100/24 dev eth0\n    }\n    virtual_ipaddress_excluded {\n        fd00::100/64 dev eth1\n    }\n"));
    }

    #[test]
    fn seconds_format() {
        assert_eq!(seconds(100), "1");
        assert_eq!(seconds(10), "0.1");
        assert_eq!(seconds(225), "2.25");
        assert_eq!(seconds(5), "0.05");
        assert_eq!(seconds(4095), "40.95");
    }

    #[test]
    fn unit_file_names_everything_after_the_app() {
        let u = systemd_unit(&Paths::new("region-vip"));
        assert!(u.contains("--use-file=/etc/keepalived/keepalived-region-vip.conf"));
        assert!(u.contains(
            "--pid=/run/keepalived-region-vip.pid --vrrp_pid=/run/keepalived-region-vip-vrrp.pid"
        ));
        assert!(u.contains("ExecReload=/bin/kill -HUP $MAINPID"));
        assert!(u.contains("WantedBy=multi-user.target"));
    }

    #[test]
    fn sysctl_families() {
        assert!(
            sysctl(false).contains("net.ipv4.ip_nonlocal_bind = 1")
                && !sysctl(false).contains("ipv6")
        );
        assert!(sysctl(true).contains("net.ipv6.ip_nonlocal_bind = 1"));
    }
}
