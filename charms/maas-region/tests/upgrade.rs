//! A new `channel`: racks first (the region leader lets them refresh one at a time), then the
//! regions, one at a time under the init lock; never to an older track; the snap held so that
//! snapd does not refresh on its own.

mod common;

use charm_lib::testing::{Relation, State, Trigger};
use charm_lib::Status;
use common::*;

const REFRESH: &str = "snap refresh maas --channel=3.7/stable";

/// The initialised, serving leader (MAAS 3.6) with `channel` set to `to`, racks on `racks`.
fn leader_wanting(to: &str, racks: Relation) -> State {
    let st = installed_snap(fresh_leader().with_relation(vip("10.0.0.100")));
    let st = snap_initialised_unit(st, "10.0.0.5", "http://10.0.0.100/MAAS");
    settle(&harness(0), st.with_relation(racks)).with_config("channel", to)
}

fn racks_on(a: &str, b: &str) -> Relation {
    Relation::new(RPC, "rpc", "maas-rack")
        .remote_unit(0, &[("hostname", "rack-a"), ("maas_channel", a)])
        .remote_unit(1, &[("hostname", "rack-b"), ("maas_channel", b)])
}

fn refreshed(out: &charm_lib::testing::Output) -> bool {
    out.command_lines().iter().any(|l| l == REFRESH)
}

#[test]
fn the_leader_refreshes_under_its_own_grant_once_the_racks_run_the_new_track() {
    // Arrange: both racks already on 3.7.
    let st = leader_wanting("3.7/stable", racks_on("3.7/stable", "3.7/stable"));
    // Act
    let out = harness(0).run_ok(Trigger::ConfigChanged, &st);
    // Assert: refreshed once, the lock taken and given back, the unit serving.
    assert!(refreshed(&out), "{:?}", out.command_lines());
    assert!(out.status_history.contains(&Status::maintenance(
        "refreshing the maas snap from 3.6/stable to 3.7/stable"
    )));
    assert_eq!(out.state.stored["snap-channel"], "3.7/stable");
    let peers = out.state.relation(PEERS).unwrap();
    assert_eq!(
        peers
            .local_app_data
            .get("init-lock")
            .map(String::as_str)
            .unwrap_or(""),
        ""
    );
    assert_eq!(
        peers
            .local_unit_data
            .get("init-request")
            .map(String::as_str)
            .unwrap_or(""),
        ""
    );
    assert_eq!(
        out.state.unit_status,
        Status::active("serving http://10.0.0.100/MAAS")
    );
    // Once is enough.
    let again = harness(0).run_ok(Trigger::UpdateStatus, &out.state);
    assert!(!refreshed(&again));
}

#[test]
fn a_rack_on_the_old_track_goes_first() {
    let st = leader_wanting("3.7/stable", racks_on("3.7/stable", "3.6/stable"));
    let out = harness(0).run_ok(Trigger::ConfigChanged, &st);
    assert!(!refreshed(&out));
    assert_eq!(
        out.state.unit_status,
        Status::waiting("serving MAAS 3.6/stable; 3.7/stable waits for the racks to refresh first (MAAS upgrades racks, then regions): maas-rack/1 (3.6/stable)")
    );
}

#[test]
fn an_older_track_is_refused_and_the_region_keeps_serving() {
    let st = leader_wanting("3.5/stable", racks_on("3.6/stable", "3.6/stable"));
    let out = harness(0).run_ok(Trigger::ConfigChanged, &st);
    assert!(!out
        .command_lines()
        .iter()
        .any(|l| l.starts_with("snap refresh maas")));
    assert_eq!(
        out.state.unit_status,
        Status::blocked("config channel: 3.5/stable is older than the 3.6/stable MAAS runs here, and MAAS cannot go back (its database schema only migrates forward): set channel to 3.6/stable or newer")
    );
}

#[test]
fn a_region_without_the_grant_keeps_serving_and_waits() {
    // Arrange: unit 1; the leader's lock is held by unit 0.
    let mut st = installed_snap(fresh_leader());
    st.leader = false;
    st.relations.retain(|r| r.id != PEERS && r.id != DB);
    let mut peer = peers(&[(0, "10.0.0.10")]);
    peer.local_app_data
        .insert("init-lock".into(), "maas-region/0#4".into());
    peer.local_app_data
        .insert("maas-url".into(), "http://10.0.0.100/MAAS".into());
    st = st
        .with_relation(peer)
        .with_relation(pgsql("10.0.0.5", "maas-region/0 maas-region/1"))
        .with_relation(vip("10.0.0.100"))
        .with_relation(racks_on("3.7/stable", "3.7/stable"));
    st = snap_initialised_unit(st, "10.0.0.5", "http://10.0.0.100/MAAS");
    st.machine = hostname(st.machine, 1);
    let st = st.with_config("channel", "3.7/stable");
    // Act
    let out = harness(1).run_ok(Trigger::ConfigChanged, &st);
    // Assert: it asked, and did not refresh.
    assert!(!refreshed(&out));
    let mine = &out.state.relation(PEERS).unwrap().local_unit_data;
    assert!(!mine
        .get("init-request")
        .map(String::as_str)
        .unwrap_or("")
        .is_empty());
    assert_eq!(
        out.state.unit_status,
        Status::waiting("serving MAAS 3.6/stable; waiting for the init lock to refresh to 3.7/stable (one region at a time)")
    );
}

#[test]
fn the_leader_lets_one_rack_refresh_at_a_time() {
    // Arrange: both racks ask for 3.7.
    let racks = Relation::new(RPC, "rpc", "maas-rack")
        .remote_unit(
            0,
            &[
                ("hostname", "rack-a"),
                ("maas_channel", "3.6/stable"),
                ("upgrade_request", "3.7/stable"),
            ],
        )
        .remote_unit(
            1,
            &[
                ("hostname", "rack-b"),
                ("maas_channel", "3.6/stable"),
                ("upgrade_request", "3.7/stable"),
            ],
        );
    let st = leader_wanting("3.6/stable", racks);
    // Act
    let out = harness(0).run_ok(Trigger::RelationChanged(RPC, Some(1)), &st);
    // Assert: the lowest-numbered rack first.
    let rpc = out.state.relation(RPC).unwrap();
    assert_eq!(
        rpc.local_app_data["rack_upgrade_lock"],
        "maas-rack/0#3.7/stable"
    );
    // Rack 0 refreshed and withdrew its request: rack 1 gets the lock.
    let mut st = out.state.clone();
    for r in st.relations.iter_mut().filter(|r| r.id == RPC) {
        let u = r.remote_units.get_mut(&0).unwrap();
        u.insert("maas_channel".into(), "3.7/stable".into());
        u.remove("upgrade_request");
    }
    let out = harness(0).run_ok(Trigger::RelationChanged(RPC, Some(0)), &st);
    let rpc = out.state.relation(RPC).unwrap();
    assert_eq!(
        rpc.local_app_data["rack_upgrade_lock"],
        "maas-rack/1#3.7/stable"
    );
}
