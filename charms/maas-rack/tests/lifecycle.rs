//! The relation going and coming back, the unit being removed, and rackd found stopped.

mod common;

use charm_lib::testing::{State, Trigger};
use charm_lib::{CmdOutput, Status};
use common::*;
use maas_rack::reconcile::NEEDS_RELATION;

const SNAP_SECRET: &str = "/var/snap/maas/common/maas/secret";
const DEB_SECRET: &str = "/var/lib/maas/secret";

#[test]
fn without_a_relation_the_unit_is_blocked_and_installs_nothing() {
    for t in [
        Trigger::Install,
        Trigger::ConfigChanged,
        Trigger::Start,
        Trigger::UpdateStatus,
    ] {
        let st = State {
            machine: host("rack-1"),
            ..State::default()
        };
        let out = ok(&harness(), t.clone(), &st);
        assert_eq!(
            out.state.unit_status,
            Status::blocked(NEEDS_RELATION),
            "{t:?}"
        );
        assert!(
            out.commands.is_empty(),
            "{t:?} ran {:?}",
            out.command_lines()
        );
    }
}

#[test]
fn broken_relation_stops_the_snap_rack_and_removes_its_secret() {
    let st = as_maas_wrote(registered(ready()), SNAP_SECRET, SECRET);
    let out = ok(&harness(), Trigger::RelationBroken(RPC), &st);
    assert_eq!(out.command_lines(), ["snap stop --disable maas"]);
    assert!(
        out.state.machine.text(SNAP_SECRET).is_none(),
        "the host keeps no credential for a region it left"
    );
    assert_eq!(out.state.unit_status, Status::blocked(NEEDS_RELATION));
    assert!(out.state.opened_ports.is_empty());
    assert!(out.state.relation(RPC).is_none());
    assert!(!out.state.stored.contains_key("registered-url"));
    assert_eq!(
        out.state.stored.get("installed").map(String::as_str),
        Some("snap"),
        "MAAS stays installed"
    );
    let again = ok(&harness(), Trigger::ConfigChanged, &out.state);
    assert!(
        again.commands.is_empty(),
        "stopping happens once: {:?}",
        again.command_lines()
    );
}

#[test]
fn broken_relation_stops_the_deb_rack() {
    let st = as_maas_wrote(registered(ready_deb()), DEB_SECRET, SECRET);
    assert!(st.machine.is_active("maas-rackd.service"));
    let out = ok(&harness(), Trigger::RelationBroken(RPC), &st);
    assert_eq!(
        out.command_lines(),
        ["systemctl stop maas-rackd", "systemctl disable maas-rackd"]
    );
    assert!(!out.state.machine.is_active("maas-rackd.service"));
    assert!(!out.state.machine.services["maas-rackd.service"].enabled);
    assert!(out.state.machine.text(DEB_SECRET).is_none());
    assert_eq!(out.state.unit_status, Status::blocked(NEEDS_RELATION));
}

#[test]
fn relating_again_registers_again() {
    let gone = ok(
        &harness(),
        Trigger::RelationBroken(RPC),
        &registered(ready()),
    )
    .state;
    let back = gone.with_relation(rpc(&[
        ("maas_url", URL),
        ("secret_id", SID),
        ("regions", REGIONS),
    ]));
    let out = ok(&harness(), Trigger::RelationChanged(RPC, None), &back);
    let lines = out.command_lines();
    assert!(
        lines.contains(&format!(
            "/snap/bin/maas init rack --maas-url {URL} --secret {SECRET} --force"
        )),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"snap start --enable maas".to_string()),
        "the disabled rack is enabled again"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("snap install")),
        "{lines:?}"
    );
    assert_eq!(
        out.state.unit_status,
        Status::active(format!("registered with {URL}"))
    );
}

#[test]
fn broken_before_registration_touches_nothing() {
    let mut st = ready();
    st.secrets.clear();
    let blocked = ok(&harness(), Trigger::RelationChanged(RPC, None), &st);
    let out = ok(&harness(), Trigger::RelationBroken(RPC), &blocked.state);
    assert!(out.commands.is_empty(), "{:?}", out.command_lines());
    assert_eq!(out.state.unit_status, Status::blocked(NEEDS_RELATION));
}

#[test]
fn removing_the_unit_stops_the_rack() {
    let st = as_maas_wrote(registered(ready()), SNAP_SECRET, SECRET);
    let out = ok(&harness(), Trigger::Stop, &st);
    assert_eq!(out.command_lines(), ["snap stop --disable maas"]);
    assert!(out.state.machine.text(SNAP_SECRET).is_none());
}

#[test]
fn a_stopped_rackd_is_started_again() {
    let mut st = registered(ready());
    st.machine = st.machine.respond(&["/snap/bin/maas", "status"], CmdOutput::ok("Service          Startup  Current  Since\nrackd            enabled  inactive -\ndhcpd            enabled  inactive -\n"));
    let out = ok(&harness(), Trigger::UpdateStatus, &st);
    assert_eq!(
        out.command_lines(),
        [
            "hostname",
            "/snap/bin/maas status",
            "snap start --enable maas"
        ]
    );
    assert!(out
        .logs
        .iter()
        .any(|(_, l)| l.contains("rackd is not running; starting it")));

    // The snap's supervisor itself is down: `maas status` has no table to print (MAAS 3.5+:
    // `Pebble exited with error code 1 …`, exit 1); `snap services` tells that nothing runs.
    let mut st = registered(ready());
    st.machine = st
        .machine
        .respond(
            &["/snap/bin/maas", "status"],
            CmdOutput {
                code: 1,
                stdout: "Pebble exited with error code 1 and the following output:\n".into(),
                stderr:
                    "error: cannot communicate with server: connect: no such file or directory\n"
                        .into(),
            },
        )
        .respond(
            &["snap", "services", "maas"],
            CmdOutput::ok(
                "Service      Startup   Current   Notes\nmaas.pebble  disabled  inactive  -\n",
            ),
        );
    let out = ok(&harness(), Trigger::UpdateStatus, &st);
    assert_eq!(
        out.command_lines(),
        [
            "hostname",
            "/snap/bin/maas status",
            "snap services maas",
            "snap start --enable maas"
        ]
    );

    let mut st = registered(ready_deb());
    st.machine
        .services
        .get_mut("maas-rackd.service")
        .unwrap()
        .active = false;
    let out = ok(&harness(), Trigger::UpdateStatus, &st);
    assert!(out
        .command_lines()
        .contains(&"systemctl enable --now maas-rackd".to_string()));
    assert!(out.state.machine.is_active("maas-rackd.service"));
}

#[test]
fn a_loose_secret_file_is_tightened_to_0640() {
    let mut st = registered(ready());
    st.machine = st.machine.with_file(
        SNAP_SECRET,
        &format!("{SECRET}\n"),
        charm_lib::FileOptions::new("root", "maas", 0o644),
    );
    let out = ok(&harness(), Trigger::UpdateStatus, &st);
    let f = &out.state.machine.files[std::path::Path::new(SNAP_SECRET)];
    assert_eq!(
        (
            f.options.owner.as_str(),
            f.options.group.as_str(),
            f.options.mode
        ),
        ("root", "maas", 0o640)
    );
    assert_eq!(f.text(), format!("{SECRET}\n"), "content untouched");
    assert_secret_kept(&out, SECRET);
    let again = ok(&harness(), Trigger::UpdateStatus, &out.state);
    assert_eq!(again.state.machine.files, out.state.machine.files);
    assert!(
        !again.logs.iter().any(|(_, l)| l.contains("0640")),
        "tightened once"
    );
}
