//! Registration: the exact commands for snap and deb, idempotence, re-registration on a new URL
//! or a rotated secret, snap channel changes, and a failed registration that keeps the secret
//! masked.

mod common;

use charm_lib::testing::{State, Trigger};
use charm_lib::{CmdOutput, Port, Status};
use common::*;
use maas_rack::reconcile::RACK_PORTS;

#[test]
fn snap_registers_with_maas_init_rack() {
    let out = ok(&harness(), Trigger::RelationChanged(RPC, None), &ready());
    assert_eq!(
        out.command_lines(),
        [
            "hostname".to_string(),
            "snap install maas --channel=3.6/stable".into(),
            // snapd would refresh every rack at once, on its own schedule.
            "snap refresh --hold maas".into(),
            format!("/snap/bin/maas init rack --maas-url {URL} --secret {SECRET} --force"),
            "snap start --enable maas".into(),
            "/snap/bin/maas status".into(),
        ]
    );
    assert_eq!(
        out.state.unit_status,
        Status::active(format!("registered with {URL}"))
    );
    assert!(out.status_history.contains(&Status::maintenance(
        "installing the maas snap (3.6/stable)"
    )));
    assert!(out
        .status_history
        .contains(&Status::maintenance(format!("registering with {URL}"))));
    assert_eq!(out.state.machine.snaps["maas"], "3.6/stable");
    let mine = &out.state.relation(RPC).unwrap().local_unit_data;
    assert_eq!(mine.get("hostname").map(String::as_str), Some("rack-1"));
    assert!(
        !mine.contains_key("system_id"),
        "no system id before rackd got one"
    );
    assert_eq!(
        out.state.opened_ports,
        RACK_PORTS
            .into_iter()
            .collect::<std::collections::BTreeSet<Port>>()
    );
    assert_secret_kept(&out, SECRET);
}

#[test]
fn deb_registers_with_maas_rack_register_and_the_secret_on_stdin() {
    let out = ok(
        &harness(),
        Trigger::RelationChanged(RPC, None),
        &ready_deb(),
    );
    assert_eq!(
        out.command_lines(),
        [
            "hostname",
            "apt-get update",
            "apt-get install -y --no-install-recommends maas-rack-controller",
            &format!("maas-rack register --url {URL}"),
            "systemctl enable --now maas-rackd",
            "systemctl is-active --quiet maas-rackd",
            "systemctl is-active --quiet maas-dhcpd",
        ]
    );
    assert!(
        !out.commands.iter().flatten().any(|a| a.contains(SECRET)),
        "the secret is not on any command line"
    );
    assert!(out.state.machine.packages.contains("maas-rack-controller"));
    assert!(out.state.machine.is_active("maas-rackd.service"));
    assert_eq!(
        out.state.unit_status,
        Status::active(format!("registered with {URL}"))
    );
    assert_eq!(
        out.state.relation(RPC).unwrap().local_unit_data["dhcp"],
        "[]",
        "dhcpd known not to run"
    );
    assert_secret_kept(&out, SECRET);
}

#[test]
fn deb_source_is_added_before_the_install() {
    let st = ready_deb().with_config("deb-source", "ppa:maas/3.6");
    let out = ok(&harness(), Trigger::RelationChanged(RPC, None), &st);
    assert_eq!(
        out.command_lines()[1..4],
        [
            "add-apt-repository -y ppa:maas/3.6",
            "apt-get update",
            "apt-get install -y --no-install-recommends maas-rack-controller"
        ]
    );
    let st = ready_deb().with_config("deb-source", "deb http://archive.example/maas noble main");
    let out = ok(&harness(), Trigger::RelationChanged(RPC, None), &st);
    assert_eq!(
        out.state
            .machine
            .text(maas_rack::maas::APT_SOURCE_FILE)
            .unwrap()
            .lines()
            .last(),
        Some("deb http://archive.example/maas noble main")
    );
    assert_eq!(out.command_lines()[1], "apt-get update");
}

#[test]
fn a_second_run_registers_nothing() {
    for first in [registered(ready()), registered(ready_deb())] {
        for trigger in [
            Trigger::RelationChanged(RPC, None),
            Trigger::ConfigChanged,
            Trigger::UpdateStatus,
        ] {
            let again = ok(&harness(), trigger.clone(), &first);
            let lines = again.command_lines();
            assert!(
                lines.iter().all(|l| l == "hostname"
                    || l == "/snap/bin/maas status"
                    || l.starts_with("systemctl is-active")),
                "{trigger:?} ran more than observations: {lines:?}"
            );
            let (mut a, mut b) = (first.clone(), again.state.clone());
            a.machine.commands.clear();
            b.machine.commands.clear();
            assert_eq!(a, b, "{trigger:?} changed the state");
            assert!(
                again
                    .status_history
                    .iter()
                    .all(|s| s.kind != charm_lib::StatusKind::Maintenance),
                "no maintenance on a no-op"
            );
        }
    }
}

#[test]
fn a_new_url_registers_again_without_reinstalling() {
    let mut st = registered(ready());
    st.relations[0]
        .remote_app_data
        .insert("maas_url".into(), URL2.into());
    let out = ok(&harness(), Trigger::RelationChanged(RPC, None), &st);
    let lines = out.command_lines();
    assert!(
        lines.contains(&format!(
            "/snap/bin/maas init rack --maas-url {URL2} --secret {SECRET} --force"
        )),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("snap install")),
        "{lines:?}"
    );
    assert_eq!(
        out.state.unit_status,
        Status::active(format!("registered with {URL2}"))
    );
    assert_secret_kept(&out, SECRET);

    let mut st = registered(ready_deb());
    st.relations[0]
        .remote_app_data
        .insert("maas_url".into(), URL2.into());
    let out = ok(&harness(), Trigger::RelationChanged(RPC, None), &st);
    assert!(out
        .command_lines()
        .contains(&format!("maas-rack register --url {URL2}")));
    assert!(!out
        .command_lines()
        .iter()
        .any(|l| l.starts_with("apt-get install")));
}

#[test]
fn a_rotated_secret_registers_again_in_secret_changed() {
    let mut st = registered(ready());
    st.secrets[0] = st.secrets[0].clone().with_revision(&[("secret", SECRET2)]);
    let h = harness();
    let before = ok(&h, Trigger::ConfigChanged, &st);
    assert!(
        !before
            .command_lines()
            .iter()
            .any(|l| l.starts_with("/snap/bin/maas init")),
        "still tracking the old revision until secret-changed"
    );
    let out = ok(&h, Trigger::SecretChanged(SID.into()), &st);
    assert!(
        out.command_lines().contains(&format!(
            "/snap/bin/maas init rack --maas-url {URL} --secret {SECRET2} --force"
        )),
        "{:?}",
        out.command_lines()
    );
    assert_eq!(
        out.state.secret(SID).unwrap().tracked,
        2,
        "the rack now tracks the new revision"
    );
    assert_eq!(
        out.state.unit_status,
        Status::active(format!("registered with {URL}"))
    );
    assert_secret_kept(&out, SECRET2);
    assert_secret_kept(&out, SECRET);
    let again = ok(&h, Trigger::ConfigChanged, &out.state);
    assert!(
        !again
            .command_lines()
            .iter()
            .any(|l| l.starts_with("/snap/bin/maas init")),
        "registered once per rotation"
    );

    let mut st = registered(ready_deb());
    st.secrets[0] = st.secrets[0].clone().with_revision(&[("secret", SECRET2)]);
    let out = ok(&h, Trigger::SecretChanged(SID.into()), &st);
    assert!(out
        .command_lines()
        .contains(&format!("maas-rack register --url {URL}")));
}

/// The region app databag with the rack upgrade lock set to `lock`.
fn with_lock(mut st: State, lock: &str) -> State {
    for r in st.relations.iter_mut().filter(|r| r.id == RPC) {
        r.remote_app_data
            .insert("rack_upgrade_lock".into(), lock.into());
    }
    st
}

#[test]
fn a_new_channel_is_asked_for_and_refreshed_only_when_the_region_lets_this_rack() {
    // Arrange: registered on 3.6, channel set to 3.7.
    let st = registered(ready()).with_config("channel", "3.7/stable");
    // Act: no lock yet.
    let out = ok(&harness(), Trigger::ConfigChanged, &st);
    // Assert: it asks, keeps serving 3.6, and says so.
    assert!(
        !out.command_lines()
            .iter()
            .any(|l| l.starts_with("snap refresh")),
        "{:?}",
        out.command_lines()
    );
    let mine = &out.state.relation(RPC).unwrap().local_unit_data;
    assert_eq!(mine["upgrade_request"], "3.7/stable");
    assert_eq!(mine["maas_channel"], "3.6/stable");
    assert_eq!(out.state.unit_status, Status::waiting("serving MAAS 3.6/stable; waiting for maas-region to let this rack refresh to 3.7/stable (racks refresh one at a time, before the regions)"));
    // Another rack holds the lock: still waiting.
    let other = ok(
        &harness(),
        Trigger::RelationChanged(RPC, None),
        &with_lock(out.state.clone(), "maas-rack/1#3.7/stable"),
    );
    assert!(!other
        .command_lines()
        .iter()
        .any(|l| l.starts_with("snap refresh")));
    // Act: the region leader names this unit and channel.
    let granted = ok(
        &harness(),
        Trigger::RelationChanged(RPC, None),
        &with_lock(out.state, "maas-rack/0#3.7/stable"),
    );
    // Assert: refreshed (the snap stays held), the request withdrawn, the new channel published.
    assert_eq!(
        granted.command_lines(),
        [
            "hostname",
            "snap refresh maas --channel=3.7/stable",
            "/snap/bin/maas status"
        ]
    );
    assert_eq!(granted.state.machine.snaps["maas"], "3.7/stable");
    let mine = &granted.state.relation(RPC).unwrap().local_unit_data;
    assert_eq!(
        mine.get("upgrade_request")
            .map(String::as_str)
            .unwrap_or(""),
        ""
    );
    assert_eq!(mine["maas_channel"], "3.7/stable");
    assert_eq!(
        granted.state.unit_status,
        Status::active(format!("registered with {URL}"))
    );
    let again = ok(&harness(), Trigger::ConfigChanged, &granted.state);
    assert!(!again
        .command_lines()
        .iter()
        .any(|l| l.starts_with("snap refresh")));
}

#[test]
fn an_older_track_is_refused_and_the_rack_keeps_serving() {
    let st = registered(ready()).with_config("channel", "3.5/stable");
    let out = ok(
        &harness(),
        Trigger::ConfigChanged,
        &with_lock(st, "maas-rack/0#3.5/stable"),
    );
    assert!(!out
        .command_lines()
        .iter()
        .any(|l| l.starts_with("snap refresh")));
    assert_eq!(out.state.unit_status, Status::blocked("config channel: 3.5/stable is older than the 3.6/stable MAAS runs here, and MAAS cannot go back (its database schema only migrates forward): set channel to 3.6/stable or newer"));
    let mine = &out.state.relation(RPC).unwrap().local_unit_data;
    assert_eq!(
        mine.get("upgrade_request")
            .map(String::as_str)
            .unwrap_or(""),
        ""
    );
}

#[test]
fn a_failed_registration_fails_the_hook_with_stderr_and_the_secret_masked() {
    let mut st = ready();
    st.machine = st.machine.respond(
        &["/snap/bin/maas", "init", "rack"],
        CmdOutput::failed(
            1,
            format!("Error: cannot write secret {SECRET}: read-only file system"),
        ),
    );
    let out = harness()
        .run(Trigger::RelationChanged(RPC, None), &st)
        .unwrap();
    let err = out
        .error
        .clone()
        .expect("the hook fails so Juju retries it");
    assert!(
        err.contains("registering with http://10.77.0.200/MAAS failed"),
        "{err}"
    );
    assert!(err.contains("--secret *** --force"), "{err}");
    assert!(
        err.contains("cannot write secret ***: read-only file system"),
        "{err}"
    );
    assert_secret_kept(&out, SECRET);
    let retry = ok(&harness(), Trigger::RelationChanged(RPC, None), &{
        let mut s = out.state.clone();
        s.machine.responders.clear();
        s.machine = s.machine.respond(&["hostname"], CmdOutput::ok("rack-1\n"));
        s
    });
    assert!(
        retry
            .command_lines()
            .iter()
            .any(|l| l.starts_with("/snap/bin/maas init rack")),
        "the retry registers"
    );
}

#[test]
fn a_failed_deb_registration_fails_the_hook_with_maas_words() {
    // What `maas-rack register` prints when systemctl refuses (src/provisioningserver/
    // register_command.py `run`); the stand-in's tests/failures.rs holds it to the same.
    let mut st = ready_deb();
    st.machine = st.machine.respond(
        &["maas-rack", "register"],
        CmdOutput::failed(
            1,
            "Unable to stop maas-rackd service.\nFailed with error: Failed to stop maas-rackd.service: Access denied.\n",
        ),
    );
    let out = harness()
        .run(Trigger::RelationChanged(RPC, None), &st)
        .unwrap();
    let err = out
        .error
        .clone()
        .expect("the hook fails so Juju retries it");
    assert!(
        err.contains("Unable to stop maas-rackd service.\nFailed with error: Failed to stop maas-rackd.service: Access denied."),
        "{err}"
    );
    assert!(
        !out.command_lines()
            .iter()
            .any(|l| l.contains("enable --now")),
        "rackd is not started on a registration that failed"
    );
    assert_secret_kept(&out, SECRET);
}
