//! pre-upgrade-check: passes only when a MAAS refresh can start now, and refuses naming every
//! reason (each test breaks one condition of an otherwise healthy deployment).

mod common;

use charm_lib::machine::CmdOutput;
use charm_lib::testing::{Output, Relation, State, Trigger};
use charm_lib::Status;
use common::*;
use serde_json::json;

const SNAP_LIST: &str = "Name  Version  Rev    Tracking    Publisher  Notes\nmaas  3.6.1    38000  3.6/stable  canonical  -\n";

fn version(v: &str) -> CmdOutput {
    CmdOutput::ok(format!(
        "{{\"capabilities\": [], \"version\": \"{v}\", \"subversion\": \"\"}}"
    ))
}

/// The rpc relation with two registered racks on `channel`.
fn racks(channel: &str) -> Relation {
    Relation::new(RPC, "rpc", "maas-rack")
        .remote_unit(
            0,
            &[
                ("hostname", "rack-a"),
                ("system_id", "sys-rack-a"),
                ("maas_channel", channel),
            ],
        )
        .remote_unit(
            1,
            &[
                ("hostname", "rack-b"),
                ("system_id", "sys-rack-b"),
                ("maas_channel", channel),
            ],
        )
}

/// postgresql-ha's answer on `db` with one standby.
fn db_with_standby() -> Relation {
    let mut r = pgsql("10.0.0.5", "maas-region/0");
    let unit = r.remote_units.get_mut(&0).unwrap();
    unit.insert(
        "standbys".into(),
        "host=10.0.0.6 port=5432 dbname=maas".into(),
    );
    r
}

/// Three regions on MAAS 3.6 behind a VIP, each regiond answering, two registered racks on
/// 3.6, a database with a standby: the check passes.
fn healthy() -> State {
    let mut st = State::default()
        .leader()
        .with_relation(peers(&[(1, "10.0.0.11"), (2, "10.0.0.12")]))
        .with_relation(db_with_standby())
        .with_secret(db_secret())
        .with_relation(vip("10.0.0.100"))
        .with_relation(racks("3.6/stable"));
    st.machine = secret_appears(hostname(st.machine, 0));
    let st = installed_snap(st);
    let st = snap_initialised_unit(st, "10.0.0.5", "http://10.0.0.100/MAAS");
    let mut st = settle(&harness(0), st);
    st.machine = st
        .machine
        .respond(&["snap", "list", "maas"], CmdOutput::ok(SNAP_LIST))
        .respond(
            &["curl", "http://127.0.0.1:5240/MAAS/api/2.0/version/"],
            version("3.6.1"),
        );
    st.machine.commands.clear();
    st
}

/// `prefix` answers `out` ahead of the healthy answers.
fn answering(mut st: State, prefix: &[&str], out: CmdOutput) -> State {
    st.machine = st.machine.respond_times(prefix, out, u32::MAX);
    st
}

fn check(st: &State, params: serde_json::Value) -> Output {
    let out = harness(0)
        .run(Trigger::Action("pre-upgrade-check".into(), params), st)
        .unwrap();
    assert!(
        !out.failed(),
        "an action never fails the unit: {:?}",
        out.error
    );
    out
}

/// The refusal's reasons, in order.
fn reasons(out: &Output) -> Vec<String> {
    out.action
        .results
        .iter()
        .filter(|(k, _)| k.starts_with("reasons."))
        .map(|(_, v)| v.clone())
        .collect()
}

/// Asserts a refusal whose only reason contains `needle`, also in the action-fail message.
fn refused_for(out: &Output, needle: &str) {
    let failed = out.action.failed.as_deref().unwrap_or_default();
    assert!(
        failed.starts_with("not safe to upgrade MAAS now: ") && failed.contains(needle),
        "{failed:?}"
    );
    assert_eq!(out.action.results["result"], "refused");
    let r = reasons(out);
    assert!(r.len() == 1 && r[0].contains(needle), "{r:?}");
}

#[test]
fn a_healthy_deployment_passes_and_reports_the_version_and_the_target() {
    // Arrange
    let st = healthy();
    // Act
    let out = check(&st, json!({"channel": "3.7/stable"}));
    // Assert
    assert_eq!(out.action.failed, None, "{:?}", out.action.results);
    let r = &out.action.results;
    assert_eq!(r["result"], "ok");
    assert_eq!(r["installed-channel"], "3.6/stable");
    assert_eq!(r["installed-version"], "3.6.1");
    assert_eq!(r["refresh-to"], "3.7/stable");
    assert_eq!(r["maas-version"], "3.6.1");
    for u in ["maas-region-0", "maas-region-1", "maas-region-2"] {
        assert_eq!(r[&format!("regions.{u}.answers")], "true");
    }
    assert_eq!(r["regions.maas-region-2.address"], "10.0.0.12");
    // This unit by its address, not the loopback it was asked on.
    assert_eq!(r["regions.maas-region-0.address"], "10.0.0.10");
    assert_eq!(r["racks.maas-rack-0.registered"], "true");
    assert_eq!(r["racks.maas-rack-1.channel"], "3.6/stable");
    assert_eq!(
        r["racks-first"],
        "set maas-rack's channel first: maas-rack/0 (3.6/stable), maas-rack/1 (3.6/stable)"
    );
    assert_eq!(r["database.primary"], "10.0.0.5:5432");
    assert_eq!(
        r["database.standbys"],
        "host=10.0.0.6 port=5432 dbname=maas"
    );
    assert!(r["database.synchronous-standby"].starts_with("unknown: "));
    assert!(!r.keys().any(|k| k.starts_with("reasons.")));
    // The check changes nothing: only queries ran.
    assert!(
        out.command_lines()
            .iter()
            .all(|c| c.starts_with("curl ") || c == "snap list maas"),
        "{:?}",
        out.command_lines()
    );
    // Without a channel, the target is the option's.
    let out = check(&st, json!({}));
    assert_eq!(out.action.results["refresh-to"], "3.6/stable");
    assert!(!out.action.results.contains_key("racks-first"));
}

#[test]
fn a_region_whose_regiond_does_not_answer_refuses() {
    let st = answering(
        healthy(),
        &["curl", "http://10.0.0.12:5240/MAAS/rpc/"],
        CmdOutput::failed(7, "curl: (7) Failed to connect"),
    );
    let out = check(&st, json!({}));
    refused_for(
        &out,
        "maas-region/2's regiond does not answer http://10.0.0.12:5240/MAAS/rpc/",
    );
    assert_eq!(out.action.results["regions.maas-region-2.answers"], "false");
    assert_eq!(out.action.results["regions.maas-region-1.answers"], "true");
}

#[test]
fn a_region_without_an_address_refuses() {
    let mut st = healthy();
    let peers = st.relations.iter_mut().find(|r| r.id == PEERS).unwrap();
    peers.remote_units.get_mut(&1).unwrap().remove("address");
    let out = check(&st, json!({}));
    refused_for(
        &out,
        "maas-region/1 has not published its address on the peer relation",
    );
}

#[test]
fn this_unit_not_active_refuses() {
    let mut st = healthy();
    st.unit_status =
        Status::waiting("MAAS does not answer http://127.0.0.1:5240/MAAS/rpc/ and http://127.0.0.1/MAAS/rpc/ yet (regiond starting)");
    let out = check(&st, json!({}));
    refused_for(&out, "maas-region/0 is waiting: MAAS does not answer");
}

#[test]
fn the_only_region_refuses() {
    let mut st = healthy();
    let peers = st.relations.iter_mut().find(|r| r.id == PEERS).unwrap();
    peers.remote_units.clear();
    let out = check(&st, json!({}));
    refused_for(&out, "maas-region/0 is the only region");
}

#[test]
fn a_region_holding_or_waiting_for_the_init_lock_refuses() {
    // Arrange: maas-region/1 holds the lock, maas-region/2 waits for it.
    let mut st = healthy();
    let peers = st.relations.iter_mut().find(|r| r.id == PEERS).unwrap();
    peers
        .local_app_data
        .insert("init-lock".into(), "maas-region/1#4".into());
    peers
        .remote_units
        .get_mut(&1)
        .unwrap()
        .insert("init-request".into(), "4".into());
    peers
        .remote_units
        .get_mut(&2)
        .unwrap()
        .insert("init-request".into(), "2".into());
    // Act
    let out = check(&st, json!({}));
    // Assert: both named, the holder once.
    assert_eq!(
        reasons(&out),
        [
            "maas-region/1 holds the init lock: a region is initialising or refreshing MAAS",
            "maas-region/2 waits for the init lock to initialise or refresh MAAS",
        ]
    );
    let failed = out.action.failed.unwrap();
    assert!(failed.contains("maas-region/1 holds") && failed.contains("maas-region/2 waits"));
}

#[test]
fn a_configured_channel_this_unit_does_not_run_yet_refuses() {
    let st = healthy().with_config("channel", "3.7/stable");
    let out = check(&st, json!({}));
    refused_for(
        &out,
        "channel is set to 3.7/stable but maas-region/0 runs 3.6/stable: a refresh is under way or waiting",
    );
    assert_eq!(out.action.results["refresh-to"], "3.7/stable");
}

#[test]
fn an_older_or_malformed_target_refuses() {
    let out = check(&healthy(), json!({"channel": "3.5/stable"}));
    refused_for(
        &out,
        "channel 3.5/stable is older than the 3.6/stable MAAS runs here",
    );
    let out = check(&healthy(), json!({"channel": "3.7/stabel"}));
    refused_for(&out, "channel \"3.7/stabel\" is not a snap channel");
}

#[test]
fn an_unregistered_rack_refuses() {
    let mut st = healthy();
    let rpc = st.relations.iter_mut().find(|r| r.id == RPC).unwrap();
    rpc.remote_units.get_mut(&1).unwrap().remove("system_id");
    let out = check(&st, json!({}));
    refused_for(
        &out,
        "maas-rack/1 (rack-b) is not registered with MAAS yet (no system_id on rpc)",
    );
    assert_eq!(out.action.results["racks.maas-rack-1.registered"], "false");
}

#[test]
fn a_rack_mid_refresh_refuses() {
    let mut st = healthy();
    let rpc = st.relations.iter_mut().find(|r| r.id == RPC).unwrap();
    rpc.remote_units
        .get_mut(&0)
        .unwrap()
        .insert("upgrade_request".into(), "3.7/stable".into());
    let out = check(&st, json!({}));
    refused_for(
        &out,
        "maas-rack/0 (rack-a) is refreshing MAAS to 3.7/stable or waiting for its turn",
    );
    assert_eq!(out.action.results["racks.maas-rack-0.refreshing"], "true");
}

#[test]
fn a_database_with_no_standby_refuses() {
    let mut st = healthy();
    let db = st.relations.iter_mut().find(|r| r.id == DB).unwrap();
    db.remote_units.get_mut(&0).unwrap().remove("standbys");
    let out = check(&st, json!({}));
    refused_for(
        &out,
        "the database relation names no standby of the primary 10.0.0.5",
    );
}

#[test]
fn every_reason_is_listed() {
    // Arrange: three conditions broken at once.
    let mut st = healthy().with_config("channel", "3.7/stable");
    let rpc = st.relations.iter_mut().find(|r| r.id == RPC).unwrap();
    rpc.remote_units.get_mut(&1).unwrap().remove("system_id");
    let st = answering(
        st,
        &["curl", "http://10.0.0.11:5240/MAAS/rpc/"],
        CmdOutput::failed(22, ""),
    );
    // Act
    let out = check(&st, json!({}));
    // Assert
    let r = reasons(&out);
    assert_eq!(r.len(), 3, "{r:?}");
    assert!(r[0].starts_with("channel is set to 3.7/stable"));
    assert!(r[1].starts_with("maas-region/1's regiond does not answer"));
    assert!(r[2].starts_with("maas-rack/1 (rack-b) is not registered"));
    assert!(out.action.results.contains_key("reasons.03"));
    let failed = out.action.failed.unwrap();
    assert!(r.iter().all(|x| failed.contains(x.as_str())));
}

#[test]
fn a_deb_install_reports_dpkgs_version_and_leaves_the_upgrade_to_apt() {
    // Arrange: the same deployment installed from debs (regiond.conf where the debs keep it).
    let mut st = healthy().with_config("install-method", "deb");
    st.machine = st
        .machine
        .with_file(
            DEB_CONF,
            &regiond_conf("10.0.0.5", "http://10.0.0.100/MAAS"),
            charm_lib::FileOptions::new("root", "maas", 0o640),
        )
        .respond(
            &["dpkg-query", "-W", "-f=${Version}", "maas-region-api"],
            CmdOutput::ok("1:3.6.3-16380-g.1234abcd-0ubuntu1~24.04.1"),
        );
    // Act
    let out = check(&st, json!({}));
    // Assert
    assert_eq!(out.action.failed, None, "{:?}", out.action.results);
    let r = &out.action.results;
    assert_eq!(
        r["installed-version"],
        "1:3.6.3-16380-g.1234abcd-0ubuntu1~24.04.1"
    );
    assert!(!r.contains_key("installed-channel"));
    assert!(r["refresh-to"].starts_with("none: install-method=deb"));
    assert!(!out.command_lines().iter().any(|c| c.starts_with("snap ")));
}
