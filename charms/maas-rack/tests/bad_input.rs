//! Bad config and missing or garbled relation data: a clear status, nothing installed or
//! registered, running services untouched, never a panic.

mod common;

use charm_lib::testing::{Secret, Trigger};
use charm_lib::{Status, StatusKind};
use common::*;
use maas_rack::reconcile::WAITING_FOR_REGION;

fn assert_nothing_done(out: &charm_lib::testing::Output) {
    let lines = out.command_lines();
    assert!(
        lines.iter().all(|l| l == "hostname"),
        "only looked, but ran {lines:?}"
    );
    assert!(out.state.machine.snaps.is_empty() && out.state.machine.packages.is_empty());
    assert!(out.state.opened_ports.is_empty());
}

#[test]
fn missing_region_data_waits_and_publishes_the_hostname() {
    for data in [
        vec![],
        vec![("maas_url", URL)],
        vec![("secret_id", SID), ("regions", REGIONS)],
        vec![("maas_url", ""), ("secret_id", SID)],
    ] {
        let mut st = ready();
        st.relations[0].remote_app_data = charm_lib::testing::bag(&data);
        let out = ok(&harness(), Trigger::RelationChanged(RPC, None), &st);
        assert_eq!(
            out.state.unit_status,
            Status::waiting(WAITING_FOR_REGION),
            "{data:?}"
        );
        assert_eq!(
            out.state.relation(RPC).unwrap().local_unit_data["hostname"],
            "rack-1"
        );
        assert_nothing_done(&out);
    }
}

#[test]
fn garbage_regions_block_with_the_reason() {
    let mut st = ready();
    st.relations[0]
        .remote_app_data
        .insert("regions".into(), "region-a, region-b".into());
    let out = ok(&harness(), Trigger::RelationChanged(RPC, None), &st);
    assert_eq!(out.state.unit_status.kind, StatusKind::Blocked);
    assert!(
        out.state.unit_status.message.starts_with(
            "maas-region sent invalid rpc data: regions must be a JSON list of hostnames"
        ),
        "{}",
        out.state.unit_status.message
    );
    assert_nothing_done(&out);
}

#[test]
fn a_bad_url_blocks_and_registers_nothing() {
    let mut st = ready();
    st.relations[0]
        .remote_app_data
        .insert("maas_url".into(), "10.77.0.200:5240".into());
    let out = ok(&harness(), Trigger::RelationChanged(RPC, None), &st);
    assert_eq!(
        out.state.unit_status,
        Status::blocked("maas-region sent an invalid MAAS URL \"10.77.0.200:5240\" (not http); expected http://<host>[:port]/MAAS")
    );
    assert_nothing_done(&out);
}

#[test]
fn an_https_url_blocks_naming_the_option_and_registers_nothing() {
    let mut st = ready();
    st.relations[0]
        .remote_app_data
        .insert("maas_url".into(), "https://10.77.0.200:5443/MAAS".into());
    let out = ok(&harness(), Trigger::RelationChanged(RPC, None), &st);
    assert_eq!(
        out.state.unit_status,
        Status::blocked("maas-region sent an https MAAS URL \"https://10.77.0.200:5443/MAAS\": racks enrol over http (MAAS keeps /MAAS/rpc/ on http when TLS is on); set maas-region's maas-url to http://<host>[:port]/MAAS")
    );
    assert_nothing_done(&out);
}

#[test]
fn an_ungranted_secret_blocks_and_registers_nothing() {
    let mut st = ready();
    st.secrets.clear();
    let out = ok(&harness(), Trigger::RelationChanged(RPC, None), &st);
    assert_eq!(out.state.unit_status.kind, StatusKind::Blocked);
    let m = &out.state.unit_status.message;
    assert!(
        m.starts_with(&format!(
            "cannot read the MAAS shared secret {SID} from maas-region ("
        )),
        "{m}"
    );
    assert!(
        m.contains("not found") && m.ends_with("is it granted to this relation?"),
        "{m}"
    );
    assert_nothing_done(&out);
}

#[test]
fn unusable_secret_content_blocks_without_showing_it() {
    for (content, why) in [
        (vec![("password", SECRET)], "has no 'secret' key"),
        (vec![("secret", "not-hex-at-all")], "is not a hex string"),
    ] {
        let mut st = ready();
        st.secrets = vec![Secret::granted(SID, &content)];
        let out = ok(&harness(), Trigger::RelationChanged(RPC, None), &st);
        assert_eq!(out.state.unit_status.kind, StatusKind::Blocked);
        assert!(
            out.state.unit_status.message.contains(why),
            "{}",
            out.state.unit_status.message
        );
        assert!(!out.mentions("not-hex-at-all") && !out.mentions(SECRET));
        assert_nothing_done(&out);
    }
}

#[test]
fn bad_config_blocks_naming_the_option_and_leaves_the_rack_alone() {
    let registered_rack = registered(ready());
    for (key, value, start) in [
        ("install-method", "rpm", "config install-method: \"rpm\" is not supported; expected snap or deb"),
        ("channel", "3.6/latest", "config channel: \"3.6/latest\" is not a snap channel; expected <track>/<risk>, e.g. 3.6/stable"),
    ] {
        for st in [ready(), registered_rack.clone()] {
            let out = ok(&harness(), Trigger::ConfigChanged, &st.with_config(key, value));
            assert_eq!(out.state.unit_status, Status::blocked(start));
            assert!(out.commands.is_empty(), "ran {:?}", out.command_lines());
        }
    }
    let out = ok(
        &harness(),
        Trigger::ConfigChanged,
        &ready_deb().with_config("deb-source", "maas 3.6 please"),
    );
    assert!(out.state.unit_status.message.starts_with("config deb-source: \"maas 3.6 please\" is not an APT source; expected ppa:<owner>/<archive>"));
    assert!(out.commands.is_empty());
}

#[test]
fn the_install_method_cannot_change_under_a_deployed_unit() {
    let st = registered(ready()).with_config("install-method", "deb");
    let out = ok(&harness(), Trigger::ConfigChanged, &st);
    assert_eq!(
        out.state.unit_status,
        Status::blocked("config install-method: MAAS is installed here as a snap; it cannot change to deb on a deployed unit: set it back to snap or deploy a new unit")
    );
    assert!(out.commands.is_empty());
}

#[test]
fn bad_region_data_after_registration_leaves_the_running_rack_alone() {
    let mut registered_rack = registered(ready());
    registered_rack.machine = registered_rack.machine.with_file(
        "/var/snap/maas/common/maas/maas_id",
        "4y3h7n\n",
        charm_lib::FileOptions::root(0o644),
    );
    let cases: Vec<(&str, Option<&str>, StatusKind)> = vec![
        ("maas_url", Some("http://10.77.0.200/"), StatusKind::Blocked),
        ("regions", Some("[1]"), StatusKind::Blocked),
        ("secret_id", None, StatusKind::Waiting),
    ];
    for (key, value, kind) in cases {
        let mut st = registered_rack.clone();
        match value {
            Some(v) => st.relations[0].remote_app_data.insert(key.into(), v.into()),
            None => st.relations[0].remote_app_data.remove(key),
        };
        let out = ok(&harness(), Trigger::RelationChanged(RPC, None), &st);
        assert_eq!(
            out.state.unit_status.kind, kind,
            "{key}: {:?}",
            out.state.unit_status
        );
        let lines = out.command_lines();
        assert!(
            !lines.iter().any(|l| l.contains("init")
                || l.contains("stop")
                || (l.starts_with("snap ") && !l.starts_with("snap services "))),
            "{key}: touched the rack: {lines:?}"
        );
        assert_eq!(
            out.state.stored, registered_rack.stored,
            "{key}: the registration record stays"
        );
    }
    let mut st = registered_rack.clone();
    st.secrets.clear();
    let out = ok(&harness(), Trigger::RelationChanged(RPC, None), &st);
    assert_eq!(
        out.state.unit_status.kind,
        StatusKind::Blocked,
        "a revoked secret"
    );
    assert!(!out
        .command_lines()
        .iter()
        .any(|l| l.contains("init") || l.contains("stop")));
}
