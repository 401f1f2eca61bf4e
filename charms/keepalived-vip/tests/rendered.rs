//! The rendered configuration for 1, 2 and 3 units, unicast and multicast, VRRP v2 and v3,
//! with and without a principal-provided check: every file goes through the real
//! `keepalived -t` (keepalived 2.2.7 on this machine) and must pass without a warning.

mod common;

use charm_lib::testing::{Relation, State, Trigger};
use common::*;

const ADDRS: [&str; 3] = ["10.0.0.10", "10.0.0.11", "10.0.0.12"];

/// Unit `me` of `units`, with the given options; returns the rendered file.
fn render(
    units: u32,
    me: u32,
    unicast: bool,
    version: u8,
    principal_check: Option<&str>,
) -> String {
    let others: Vec<(u32, &str)> = (0..units)
        .filter(|n| *n != me)
        .map(|n| (n, ADDRS[n as usize]))
        .collect();
    let mut st = State::default()
        .with_config("vip", "10.0.0.100/24")
        .with_config("unicast", unicast)
        .with_config("vrrp-version", version as i64)
        .with_config("advert-int", if version == 3 { 0.1 } else { 1.0 })
        .with_relation(peers(&others))
        .with_secret(charm_lib::testing::Secret::owned(
            SECRET_ID,
            &[("password", PASSWORD)],
        ));
    st = match principal_check {
        Some(c) => st.with_relation(
            Relation::new(2, "vip", "maas-region")
                .remote_unit(0, &[("check", c), ("service", "maas_region")]),
        ),
        None => st.with_relation(Relation::new(3, "juju-info", "ubuntu").remote_unit(0, &[])),
    };
    st.machine = host(&[&format!("{}/24", ADDRS[me as usize])]);
    st.network.address = ADDRS[me as usize].into();
    // Unit 0 leads, as the first unit of an application does.
    st.leader = me == 0;
    let out = harness().unit(me).run_ok(Trigger::ConfigChanged, &st);
    assert_eq!(
        out.state.unit_status.message, "VIP 10.0.0.100/24 standby",
        "{:?}",
        out.state.unit_status
    );
    out.state.machine.text(CONF).expect("rendered")
}

#[test]
fn every_combination_passes_keepalived_t() {
    let mut seen = 0;
    for units in 1..=3u32 {
        for unicast in [true, false] {
            for version in [2u8, 3] {
                for check in [
                    None,
                    Some("process:haproxy,process:named"),
                    Some("http://127.0.0.1:8008/primary"),
                    Some("tcp:5240"),
                ] {
                    let me = units - 1;
                    let text = render(units, me, unicast, version, check);
                    assert_keepalived_accepts(&text);
                    let peer_lines = text
                        .lines()
                        .skip_while(|l| !l.contains("unicast_peer {"))
                        .skip(1)
                        .take_while(|l| !l.trim().starts_with('}'))
                        .count();
                    let want_peers = if unicast { units as usize - 1 } else { 0 };
                    assert_eq!(
                        peer_lines, want_peers,
                        "units={units} unicast={unicast}:\n{text}"
                    );
                    assert_eq!(
                        text.contains("unicast_src_ip 10.0.0."),
                        unicast && units > 1,
                        "{text}"
                    );
                    assert_eq!(
                        text.contains("auth_pass Zq7Lm2Xw"),
                        version == 2,
                        "v2 authenticates, v3 cannot:\n{text}"
                    );
                    assert!(text.contains(&format!("vrrp_version {version}")));
                    assert!(text.contains(if version == 3 {
                        "advert_int 0.1\n"
                    } else {
                        "advert_int 1\n"
                    }));
                    assert!(text.contains("state BACKUP\n    nopreempt\n"));
                    assert!(text.contains(&format!("priority {}\n", 250 - me)));
                    assert_eq!(text.contains("track_script"), check.is_some());
                    assert!(
                        text.contains("vrrp_instance keepalived_vip {")
                            && !text.contains("maas_region"),
                        "the instance is named after the application, never the principal's service"
                    );
                    seen += 1;
                }
            }
        }
    }
    assert_eq!(seen, 3 * 2 * 2 * 4);
}

#[test]
fn three_unit_unicast_file_in_full() {
    let text = render(3, 1, true, 2, Some("process:haproxy,process:named"));
    let iface = real_iface();
    let want = format!(
        "# Managed by the keepalived-vip charm (keepalived-vip/1): local changes are overwritten.
global_defs {{
    router_id keepalived-vip-1
    script_user root
    enable_script_security
    vrrp_priority -20
    vrrp_version 2
}}

vrrp_script keepalived_vip_0_process_haproxy {{
    script \"/usr/bin/pgrep -x haproxy\"
    interval 1
    timeout 3
    weight 0
    fall 1
    rise 1
}}

vrrp_script keepalived_vip_1_process_named {{
    script \"/usr/bin/pgrep -x named\"
    interval 1
    timeout 3
    weight 0
    fall 1
    rise 1
}}

vrrp_instance keepalived_vip {{
    state BACKUP
    nopreempt
    interface {iface}
    virtual_router_id 51
    priority 249
    advert_int 1
    garp_master_refresh 5
    unicast_src_ip 10.0.0.11
    check_unicast_src
    unicast_peer {{
        10.0.0.10
        10.0.0.12
    }}
    authentication {{
        auth_type PASS
        auth_pass Zq7Lm2Xw
    }}
    virtual_ipaddress {{
        10.0.0.100/24 dev {iface}
    }}
    track_script {{
        keepalived_vip_0_process_haproxy
        keepalived_vip_1_process_named
    }}
    notify_master \"{NOTIFY}\"
    notify_backup \"{NOTIFY}\"
    notify_fault \"{NOTIFY}\"
}}
"
    );
    assert_eq!(text, want);
    assert_keepalived_accepts(&text);
}

#[test]
fn preempt_and_dual_stack_pass_keepalived_t() {
    let iface = real_iface();
    let mut st = base()
        .with_config("vip", "10.0.0.100/24,fd00::100/64")
        .with_config("vrrp-version", 3)
        .with_config("preempt", true)
        .with_config("priority", 120)
        .with_config("check", "tcp:5432,http://127.0.0.1:8008/primary")
        .with_config("check-interval", 2)
        .with_config("check-fall", 2);
    st.relations[0] = peers(&[(1, "10.0.0.11"), (2, "fd00::12")]);
    st.machine = host(&["10.0.0.10/24", "fd00::10/64"]);
    let out = harness().run(Trigger::ConfigChanged, &st).unwrap();
    let text = out.state.machine.text(CONF).unwrap();
    assert_keepalived_accepts(&text);
    assert!(!text.contains("nopreempt") && text.contains("priority 120\n"));
    assert!(
        text.contains(&format!(
            "virtual_ipaddress_excluded {{\n        fd00::100/64 dev {iface}\n    }}"
        )),
        "{text}"
    );
    assert!(
        text.contains("unicast_peer {\n        10.0.0.11\n    }"),
        "only same-family peers: {text}"
    );
    assert!(text.contains("interval 2\n"));
    assert!(
        text.contains("    weight 0\n    fall 2\n    rise 1\n"),
        "{text}"
    );
    assert!(out
        .state
        .machine
        .text(SYSCTL)
        .unwrap()
        .contains("net.ipv6.ip_nonlocal_bind = 1"));
}

#[test]
fn ipv6_first_vip_passes_keepalived_t() {
    let mut st = base()
        .with_config("vip", "fd00::100/64")
        .with_config("vrrp-version", 3);
    st.relations[0] = peers(&[(1, "fd00::11")]);
    st.machine = host(&["10.0.0.10/24", "fd00::10/64"]);
    let out = harness().run(Trigger::ConfigChanged, &st).unwrap();
    assert_eq!(out.state.unit_status.message, "VIP fd00::100/64 standby");
    let text = out.state.machine.text(CONF).unwrap();
    assert!(
        text.contains("unicast_src_ip fd00::10\n") && text.contains("        fd00::11\n"),
        "{text}"
    );
    assert_keepalived_accepts(&text);
}

#[test]
fn the_real_keepalived_refuses_what_it_should() {
    // The tests above would prove nothing if keepalived -t accepted anything.
    let good = render(2, 0, true, 2, None);
    assert_keepalived_accepts(&good);
    let (code, err) = keepalived_t(&good.replace("virtual_router_id 51", "virtual_router_id 300"));
    assert_eq!(code, 5, "{err}");
    let (code, _) = keepalived_t(&good.replace("    enable_script_security\n", "").replace(
        "state BACKUP",
        "state BACKUP\n    track_script {\n        x\n    }",
    ));
    assert_ne!(code, 0);
}
