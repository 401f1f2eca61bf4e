//! What the rack publishes for the region's configure-dhcp, and what it tells about DHCP.

mod common;

use charm_lib::testing::Trigger;
use charm_lib::{CmdOutput, FileOptions, Status};
use common::*;

const DHCPD_CONF: &str = "# WARNING: Do not edit /var/lib/maas/dhcpd.conf yourself.\nfailover peer \"failover-vlan-5001\" {\n    primary;\n}\nshared-network vlan-5001 {\n    subnet 10.77.0.0 netmask 255.255.255.0 {\n    }\n}\n";

#[test]
fn snap_rack_publishes_its_system_id_and_dhcp_vlans() {
    let mut st = registered(ready());
    st.machine = st
        .machine
        .with_file("/var/snap/maas/common/maas/maas_id", "4y3h7n\n", FileOptions::root(0o644))
        .with_file("/var/snap/maas/common/maas/dhcpd.conf", DHCPD_CONF, FileOptions::root(0o644))
        .respond(&["/snap/bin/maas", "status"], CmdOutput::ok("Service          Startup  Current  Since\nagent            enabled  active   today at 10:00 UTC\ndhcpd            enabled  active   today at 10:01 UTC\nrackd            enabled  active   today at 10:00 UTC\n"));
    let out = ok(&harness(), Trigger::UpdateStatus, &st);
    let mine = &out.state.relation(RPC).unwrap().local_unit_data;
    assert_eq!(mine["hostname"], "rack-1");
    assert_eq!(mine["system_id"], "4y3h7n");
    assert_eq!(mine["dhcp"], r#"["vlan-5001"]"#);
    assert_eq!(
        out.state.unit_status,
        Status::active(format!("registered with {URL}; serving DHCP on vlan-5001"))
    );
}

#[test]
fn a_maas_3_4_snap_rack_reads_supervisorctls_status_despite_its_exit_status() {
    // MAAS 3.4 prints supervisorctl's status and passes on its exit status: 3, because
    // dhcpd6 is never started (src/maascli/snap.py `cmd_status.handle`, 3.4).
    let mut st = registered(ready().with_config("channel", "3.4/stable"));
    st.machine = st
        .machine
        .with_file("/var/snap/maas/common/maas/maas_id", "4y3h7n\n", FileOptions::root(0o644))
        .with_file("/var/snap/maas/common/maas/dhcpd.conf", DHCPD_CONF, FileOptions::root(0o644))
        .respond(
            &["/snap/bin/maas", "status"],
            CmdOutput {
                code: 3,
                stdout: "bind9                            RUNNING   pid 2101, uptime 0:12:03\ndhcpd                            RUNNING   pid 2180, uptime 0:02:10\ndhcpd6                           STOPPED   Not started\nhttp                             RUNNING   pid 2102, uptime 0:12:03\nntp                              RUNNING   pid 2103, uptime 0:12:03\nproxy                            STOPPED   Not started\nrackd                            RUNNING   pid 2104, uptime 0:12:03\nsyslog                           STOPPED   Not started\n".into(),
                stderr: String::new(),
            },
        );
    let out = ok(&harness(), Trigger::UpdateStatus, &st);
    let mine = &out.state.relation(RPC).unwrap().local_unit_data;
    assert_eq!(mine["dhcp"], r#"["vlan-5001"]"#);
    assert_eq!(
        out.state.unit_status,
        Status::active(format!("registered with {URL}; serving DHCP on vlan-5001"))
    );
    assert!(
        !out.command_lines()
            .iter()
            .any(|l| l.starts_with("snap start")),
        "rackd runs: {:?}",
        out.command_lines()
    );
}

#[test]
fn deb_rack_reports_dhcp_from_maas_dhcpd() {
    let mut st = registered(ready_deb());
    st.machine = st.machine.with_file(
        "/var/lib/maas/maas_id",
        "abc123\n",
        FileOptions::root(0o644),
    );
    st.machine
        .services
        .entry("maas-dhcpd.service".into())
        .or_default()
        .active = true;
    let out = ok(&harness(), Trigger::UpdateStatus, &st);
    let mine = &out.state.relation(RPC).unwrap().local_unit_data;
    assert_eq!(mine["system_id"], "abc123");
    assert!(
        !mine.contains_key("dhcp"),
        "dhcpd runs but its VLANs are not known yet"
    );
    assert_eq!(
        out.state.unit_status,
        Status::active(format!("registered with {URL}; serving DHCP"))
    );
}

#[test]
fn dhcp_state_is_unknown_when_maas_status_fails() {
    let mut st = registered(ready());
    st.machine = st.machine.respond(
        &["/snap/bin/maas", "status"],
        CmdOutput::failed(1, "MAAS is not configured: run `maas init` first."),
    );
    let out = ok(&harness(), Trigger::UpdateStatus, &st);
    assert!(!out
        .state
        .relation(RPC)
        .unwrap()
        .local_unit_data
        .contains_key("dhcp"));
    assert_eq!(
        out.state.unit_status,
        Status::active(format!("registered with {URL}"))
    );
}
