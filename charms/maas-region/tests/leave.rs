//! A region being removed: it drains from its own haproxy and hands the VIP over before MAAS
//! or haproxy stop (issue 17: planned operations fail no request).

mod common;

use charm_lib::machine::CmdOutput;
use charm_lib::testing::{Output, State, Trigger};
use charm_lib::Status;
use common::*;

/// `ip -o addr show` of this host (10.0.0.10), with or without the VIP 10.0.0.100.
fn ip_addr(with_vip: bool) -> CmdOutput {
    let mut s = String::from(
        "1: lo    inet 127.0.0.1/8 scope host lo\\    valid_lft forever preferred_lft forever\n\
         2: eth0    inet 10.0.0.10/24 brd 10.0.0.255 scope global eth0\\    valid_lft forever preferred_lft forever\n",
    );
    if with_vip {
        s.push_str("2: eth0    inet 10.0.0.100/24 scope global secondary eth0\\    valid_lft forever preferred_lft forever\n");
    }
    CmdOutput::ok(s)
}

/// Region 0 of three, serving behind haproxy with the VIP's subordinate related, settled.
fn serving_region() -> State {
    let mut st = installed_snap(fresh_leader().with_relation(vip("10.0.0.100")));
    st.relations.retain(|r| r.id != PEERS);
    st = st.with_relation(peers(&[(1, "10.0.0.11"), (2, "10.0.0.12")]));
    st = snap_initialised_unit(st, "10.0.0.5", "http://10.0.0.100/MAAS");
    let out = harness(0).run_ok(Trigger::ConfigChanged, &st);
    let cfg = out.state.machine.text(HAPROXY_CFG).unwrap();
    assert!(cfg.contains("\nfrontend vip_ready\n"), "{cfg}");
    assert_eq!(
        out.state.relation(VIP).unwrap().local_unit_data["check"],
        "tcp:8406,process:named,tcp:5271,tcp:5242"
    );
    out.state
}

fn servers(cfg: &str) -> Vec<&str> {
    cfg.lines()
        .filter(|l| l.trim_start().starts_with("server ") && l.contains(":5240"))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect()
}

fn ran(out: &Output, line: &str) -> Option<usize> {
    out.command_lines().iter().position(|c| c == line)
}

#[test]
fn a_leaving_region_drains_and_hands_the_vip_over_before_anything_stops() {
    let h = harness(0);
    let mut st = serving_region();
    // keepalived takes two looks to drop the VIP after the check listener closed.
    st.machine = st
        .machine
        .respond(&["ip", "-o", "addr", "show"], ip_addr(false))
        .respond_times(&["ip", "-o", "addr", "show"], ip_addr(true), 2);

    // Juju's first hook of a dying unit: relation-departed with itself departing.
    let first = h.run_ok(Trigger::RelationDepartedSelf(PEERS, 1), &st);
    let cfg = first.state.machine.text(HAPROXY_CFG).unwrap();
    assert_eq!(servers(&cfg), ["maas-region-1", "maas-region-2"], "{cfg}");
    assert!(
        !cfg.contains("vip_ready") && cfg.contains("bind *:80"),
        "{cfg}"
    );
    assert_haproxy_accepts(&cfg);
    let reload = ran(&first, "systemctl reload haproxy").expect("haproxy reloaded");
    let looks: Vec<usize> = first
        .command_lines()
        .iter()
        .enumerate()
        .filter(|(_, c)| c.as_str() == "ip -o addr show")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        looks.len(),
        3,
        "waited until the VIP left: {:?}",
        first.command_lines()
    );
    assert!(looks[0] > reload);
    assert!(
        !first
            .command_lines()
            .iter()
            .any(|c| c.starts_with("snap stop")),
        "MAAS goes on serving the other regions' haproxy: {:?}",
        first.command_lines()
    );
    assert!(first.state.machine.is_active("haproxy.service"));
    assert_eq!(
        first.state.unit_status,
        Status::maintenance("leaving: drained from haproxy, the VIP handed over")
    );
    assert_eq!(first.state.stored["leaving"], "yes");

    // The hooks after it (the database relation broken, stop) change nothing: no wait, no
    // rewrite, and MAAS is not stopped for the lost database.
    let mut later = first.state.clone();
    later.machine.commands.clear();
    for t in [
        Trigger::RelationDepartedSelf(PEERS, 2),
        Trigger::RelationBroken(DB),
        Trigger::Stop,
    ] {
        let out = h.run_ok(t.clone(), &later);
        assert!(
            mutating(&out).is_empty(),
            "{t:?}: {:?}",
            out.command_lines()
        );
        assert!(
            !out.command_lines().iter().any(|c| c.starts_with("ip ")),
            "{t:?}"
        );
        assert_eq!(out.state.machine.text(HAPROXY_CFG).unwrap(), cfg);
        later = out.state;
        later.machine.commands.clear();
    }

    // remove: now MAAS and haproxy stop.
    let out = h.run_ok(Trigger::Remove, &later);
    assert_eq!(out.command_lines()[0], "snap stop --disable maas");
    assert!(!out.state.machine.is_active("haproxy.service"));
}

#[test]
fn remove_without_an_earlier_hook_drains_first() {
    let mut st = serving_region();
    st.machine = st
        .machine
        .respond(&["ip", "-o", "addr", "show"], ip_addr(false));
    let out = harness(0).run_ok(Trigger::Remove, &st);
    let reload = ran(&out, "systemctl reload haproxy").expect("drained");
    let look = ran(&out, "ip -o addr show").expect("looked for the VIP");
    let stop = ran(&out, "snap stop --disable maas").expect("MAAS stopped");
    assert!(reload < look && look < stop, "{:?}", out.command_lines());
    assert!(!out.state.machine.is_active("haproxy.service"));
}

#[test]
fn the_last_region_keeps_itself_as_backend_while_it_drains() {
    let mut st = installed_snap(fresh_leader().with_relation(vip("10.0.0.100")));
    st = snap_initialised_unit(st, "10.0.0.5", "http://10.0.0.100/MAAS");
    let mut st = harness(0).run_ok(Trigger::ConfigChanged, &st).state;
    st.machine = st
        .machine
        .respond(&["ip", "-o", "addr", "show"], ip_addr(false));
    let out = harness(0).run_ok(Trigger::Stop, &st);
    let cfg = out.state.machine.text(HAPROXY_CFG).unwrap();
    assert_eq!(servers(&cfg), ["maas-region-0"]);
    assert!(!cfg.contains("vip_ready"));
}
