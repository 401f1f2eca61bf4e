//! A rack unit on a region's host never registers a second controller there.

mod common;

use charm_lib::testing::Trigger;
use charm_lib::{FileOptions, Status, StatusKind};
use common::*;

fn on_region_host(snap_mode: Option<&str>) -> charm_lib::testing::State {
    let mut st = ready();
    st.machine = host("region-b");
    if let Some(mode) = snap_mode {
        st.machine = st.machine.with_file(
            "/var/snap/maas/common/snap_mode",
            &format!("{mode}\n"),
            FileOptions::root(0o644),
        );
    }
    st
}

fn assert_left_alone(out: &charm_lib::testing::Output) {
    assert_eq!(
        out.command_lines(),
        ["hostname"],
        "nothing installed, refreshed or registered"
    );
    assert!(out.state.stored.is_empty());
    assert!(out.state.opened_ports.is_empty());
    assert_eq!(
        out.state.relation(RPC).unwrap().local_unit_data["hostname"],
        "region-b"
    );
    assert_secret_kept(out, SECRET);
}

#[test]
fn region_plus_rack_host_is_active_and_says_why_it_does_not_register() {
    let out = ok(
        &harness(),
        Trigger::RelationChanged(RPC, None),
        &on_region_host(Some("region+rack")),
    );
    assert_eq!(
        out.state.unit_status,
        Status::active("co-located with region region-b: rack runs in the region's MAAS (region+rack); not registering separately")
    );
    assert_left_alone(&out);
}

#[test]
fn region_only_host_is_blocked_with_what_to_do() {
    let out = ok(
        &harness(),
        Trigger::RelationChanged(RPC, None),
        &on_region_host(Some("region")),
    );
    assert_eq!(out.state.unit_status.kind, StatusKind::Blocked);
    assert!(
        out.state.unit_status.message.contains(
            "whose MAAS runs in region mode only: place this unit on a machine without a region"
        ),
        "{}",
        out.state.unit_status.message
    );
    assert_left_alone(&out);
}

#[test]
fn region_host_before_its_maas_is_up_waits() {
    let out = ok(
        &harness(),
        Trigger::RelationChanged(RPC, None),
        &on_region_host(None),
    );
    assert_eq!(out.state.unit_status, Status::waiting("co-located with region region-b: waiting for the region's MAAS; not registering separately"));
    assert_left_alone(&out);
}

#[test]
fn fqdn_and_case_still_match() {
    let mut st = on_region_host(Some("region+rack"));
    st.machine.responders.clear();
    st.machine = st.machine.respond(
        &["hostname"],
        charm_lib::CmdOutput::ok("Region-B.maas.internal\n"),
    );
    let out = ok(&harness(), Trigger::RelationChanged(RPC, None), &st);
    assert_eq!(out.state.unit_status.kind, StatusKind::Active);
    assert!(out
        .state
        .unit_status
        .message
        .starts_with("co-located with region Region-B.maas.internal"));
}

#[test]
fn a_region_found_on_the_host_counts_even_when_the_list_lags() {
    let mut st = ready();
    st.machine = st.machine.with_file(
        "/var/snap/maas/common/snap_mode",
        "region+rack\n",
        FileOptions::root(0o644),
    );
    let out = ok(&harness(), Trigger::RelationChanged(RPC, None), &st);
    assert!(
        out.state
            .unit_status
            .message
            .starts_with("co-located with region rack-1: "),
        "{}",
        out.state.unit_status.message
    );
    assert!(!out
        .command_lines()
        .iter()
        .any(|l| l.starts_with("/snap/bin/maas init")));

    let mut st = ready_deb();
    st.machine = st.machine.with_file(
        "/etc/maas/regiond.conf",
        "maas_url: http://10.77.0.200/MAAS\n",
        FileOptions::new("root", "maas", 0o640),
    );
    let out = ok(&harness(), Trigger::RelationChanged(RPC, None), &st);
    assert_eq!(
        out.state.unit_status.kind,
        StatusKind::Blocked,
        "a deb region without maas-rackd"
    );
    assert!(!out
        .command_lines()
        .iter()
        .any(|l| l.starts_with("maas-rack") || l.starts_with("apt-get")));
}

#[test]
fn a_region_taking_over_the_host_is_never_stopped_by_the_rack() {
    let mut st = registered(ready());
    st.machine = st.machine.with_file(
        "/var/snap/maas/common/snap_mode",
        "region+rack\n",
        FileOptions::root(0o644),
    );
    let h = harness();
    let out = ok(&h, Trigger::ConfigChanged, &st);
    assert_eq!(out.state.unit_status.kind, StatusKind::Active);
    assert!(
        !out.state.stored.contains_key("registered-url"),
        "the rack registration is gone"
    );
    for trigger in [Trigger::RelationBroken(RPC), Trigger::Stop] {
        let gone = ok(&h, trigger.clone(), &out.state);
        assert!(
            !gone.command_lines().iter().any(|l| l.contains("stop")),
            "{trigger:?} stopped the region's MAAS: {:?}",
            gone.command_lines()
        );
    }
    // Even with the stale record (a region appearing between two hooks), nothing is stopped.
    let gone = ok(&h, Trigger::RelationBroken(RPC), &st);
    assert!(
        !gone.command_lines().iter().any(|l| l.contains("stop")),
        "{:?}",
        gone.command_lines()
    );
}

#[test]
fn a_registered_rack_that_finds_a_region_rack_on_its_host_closes_its_ports() {
    // The region unit there opens the rack's ports with its own (region+rack); this unit must
    // not hold the same ports on the same machine.
    let mut st = registered(ready());
    assert!(!st.opened_ports.is_empty());
    st.machine = st.machine.with_file(
        "/var/snap/maas/common/snap_mode",
        "region+rack\n",
        FileOptions::root(0o644),
    );
    let out = ok(&harness(), Trigger::UpdateStatus, &st);
    assert_eq!(out.state.unit_status.kind, StatusKind::Active);
    assert!(
        out.state.opened_ports.is_empty(),
        "{:?}",
        out.state.opened_ports
    );
}

/// On a region+rack host the region's MAAS runs the rack: this unit, which installed nothing,
/// sends rackd's job but not maas-agent's (maas-region sends that one, knowing the version).
#[test]
fn a_co_located_rack_sends_no_agent_job() {
    let st = on_region_host(Some("region+rack")).with_relation(
        charm_lib::testing::Relation::new(9, "cos-agent", "opentelemetry-collector")
            .remote_unit(0, &[]),
    );
    let out = ok(&harness(), Trigger::RelationJoined(9, 0), &st);
    let data: serde_json::Value =
        serde_json::from_str(&out.state.relation(9).unwrap().local_unit_data["config"]).unwrap();
    let jobs: Vec<&str> = data["metrics_scrape_jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_name"].as_str().unwrap())
        .collect();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert!(jobs[0].starts_with("maas-rack_rackd_"), "{jobs:?}");
}
