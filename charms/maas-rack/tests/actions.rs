//! get-rack-info: what an operator needs for configure-dhcp, read-only.

mod common;

use charm_lib::testing::{State, Trigger};
use charm_lib::{CmdOutput, FileOptions};
use common::*;

fn info() -> Trigger {
    Trigger::Action("get-rack-info".into(), serde_json::json!({}))
}

#[test]
fn a_registered_rack_reports_its_names_and_services() {
    let mut st = registered(ready());
    st.machine = st
        .machine
        .with_file("/var/snap/maas/common/maas/maas_id", "4y3h7n\n", FileOptions::root(0o644))
        .with_file("/var/snap/maas/common/maas/dhcpd.conf", "shared-network vlan-5001 {\n}\n", FileOptions::root(0o644))
        .respond(
            &["/snap/bin/maas", "status"],
            CmdOutput::ok("Service          Startup  Current  Since\ndhcpd            enabled  active   today\nrackd            enabled  active   today\n"),
        );
    let out = ok(&harness(), info(), &st);
    let r = &out.action.results;
    assert_eq!(r["hostname"], "rack-1");
    assert_eq!(r["system-id"], "4y3h7n");
    assert_eq!(r["registered-url"], URL);
    assert_eq!(r["install-method"], "snap");
    assert_eq!(r["rackd"], "running");
    assert_eq!(r["dhcpd"], "running");
    assert_eq!(r["dhcp-vlans"], "vlan-5001");
    assert_eq!(out.action.failed, None);
    assert!(
        !out.command_lines()
            .iter()
            .any(|l| l.contains("init") || l.starts_with("snap ")),
        "read-only"
    );
    assert_eq!(out.state.relations, st.relations);
    assert_secret_kept(&out, SECRET);
}

#[test]
fn an_unregistered_rack_refuses_clearly() {
    let st = State {
        machine: host("rack-1"),
        ..State::default()
    };
    let out = ok(&harness(), info(), &st);
    assert_eq!(
        out.action.failed.as_deref(),
        Some("this unit has not registered a rack controller: see `juju status` for why")
    );
    assert!(out.action.results.is_empty());
}
