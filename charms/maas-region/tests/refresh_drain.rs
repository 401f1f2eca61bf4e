//! Issue 22: a region refreshing to a new channel is drained from every region's haproxy first
//! (the holder publishes `refresh-drain`, each region leaves it out and acknowledges in
//! `refresh-drained`), hands the VIP over, refreshes once every region acknowledged, and
//! returns to every haproxy once its new MAAS answers. With `pause-after-unit-refresh`, a
//! region waits for the leader's `resume-refresh` before it asks for its turn.

mod common;

use charm_lib::machine::CmdOutput;
use charm_lib::testing::{Output, Relation, State, Trigger};
use charm_lib::Status;
use common::*;

const REFRESH: &str = "snap refresh maas --channel=3.7/stable";
/// The lock value of region 0's first request, what it publishes as its drain.
const DRAIN0: &str = "maas-region/0#1";

fn racks_on_new_track() -> Relation {
    Relation::new(RPC, "rpc", "maas-rack")
        .remote_unit(0, &[("hostname", "rack-a"), ("maas_channel", "3.7/stable")])
}

/// Region 0 (leader, 10.0.0.10) of three, serving MAAS 3.6 behind haproxy with the VIP's
/// subordinate related and the racks on 3.7, settled; then `channel` set to 3.7/stable.
fn leader_of_three_wanting_3_7() -> State {
    let mut st = installed_snap(fresh_leader().with_relation(vip("10.0.0.100")));
    st.relations.retain(|r| r.id != PEERS);
    st = st
        .with_relation(peers(&[(1, "10.0.0.11"), (2, "10.0.0.12")]))
        .with_relation(racks_on_new_track());
    st = snap_initialised_unit(st, "10.0.0.5", "http://10.0.0.100/MAAS");
    settle(&harness(0), st).with_config("channel", "3.7/stable")
}

/// Region 1 (not the leader, 10.0.0.11) of three, serving MAAS 3.6, settled; region 0
/// (10.0.0.10) holds the lock.
fn follower_of_three() -> State {
    let mut st = installed_snap(fresh_leader());
    st.leader = false;
    st.relations.retain(|r| r.id != PEERS && r.id != DB);
    let mut peer = peers(&[(0, "10.0.0.10"), (2, "10.0.0.12")]);
    peer.local_app_data
        .insert("init-lock".into(), DRAIN0.into());
    peer.local_app_data
        .insert("maas-url".into(), "http://10.0.0.100/MAAS".into());
    st = st
        .with_relation(peer)
        .with_relation(pgsql(
            "10.0.0.5",
            "maas-region/0 maas-region/1 maas-region/2",
        ))
        .with_relation(vip("10.0.0.100"))
        .with_relation(racks_on_new_track());
    st = snap_initialised_unit(st, "10.0.0.5", "http://10.0.0.100/MAAS");
    st.machine = hostname(st.machine, 1);
    settle(&harness(1), st).with_config("channel", "3.7/stable")
}

fn servers(cfg: &str) -> Vec<&str> {
    cfg.lines()
        .filter(|l| l.trim_start().starts_with("server ") && l.contains(":5240"))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect()
}

fn refreshed(out: &Output) -> bool {
    out.command_lines().iter().any(|l| l == REFRESH)
}

fn my_peer_data<'a>(st: &'a State, key: &str) -> &'a str {
    st.relation(PEERS)
        .unwrap()
        .local_unit_data
        .get(key)
        .map(String::as_str)
        .unwrap_or("")
}

/// Sets what peer `n` wrote in its unit databag.
fn peer_says(mut st: State, n: u32, key: &str, value: &str) -> State {
    let rel = st.relations.iter_mut().find(|r| r.id == PEERS).unwrap();
    rel.remote_units
        .get_mut(&n)
        .unwrap()
        .insert(key.into(), value.into());
    st
}

fn ran(out: &Output, prefix: &str) -> Vec<usize> {
    out.command_lines()
        .iter()
        .enumerate()
        .filter(|(_, c)| c.starts_with(prefix))
        .map(|(i, _)| i)
        .collect()
}

/// The holder's state once its drain is published (the first hook after the grant).
fn holder_draining() -> State {
    let out = harness(0).run_ok(Trigger::ConfigChanged, &leader_of_three_wanting_3_7());
    settled(&out.state)
}

#[test]
fn the_holder_publishes_its_drain_leaves_its_own_haproxy_and_waits_for_every_region() {
    // Arrange
    let st = leader_of_three_wanting_3_7();
    // Act
    let out = harness(0).run_ok(Trigger::ConfigChanged, &st);
    // Assert: the lock is its own, the drain names that grant, MAAS not touched yet.
    assert!(!refreshed(&out), "{:?}", out.command_lines());
    let peers = out.state.relation(PEERS).unwrap();
    assert_eq!(peers.local_app_data["init-lock"], DRAIN0);
    assert_eq!(my_peer_data(&out.state, "refresh-drain"), DRAIN0);
    assert!(out.state.stored.contains_key("refresh-drain-since"));
    // Its own haproxy sends port 80 to the others and closes the VIP's check listener.
    let cfg = out.state.machine.text(HAPROXY_CFG).unwrap();
    assert_eq!(servers(&cfg), ["maas-region-1", "maas-region-2"], "{cfg}");
    assert!(
        !cfg.contains("vip_ready") && cfg.contains("bind *:80"),
        "{cfg}"
    );
    assert_haproxy_accepts(&cfg);
    let reload = ran(&out, "systemctl reload haproxy");
    let waited = ran(&out, "timeout 10 sh -c until m=$(curl -sf --max-time 2 http://127.0.0.1:8405/metrics) && ! printf '%s' \"$m\" | grep -qF 'server=\"maas-region-0\"'");
    assert!(
        !reload.is_empty() && !waited.is_empty() && waited[0] > reload[0],
        "waited for the reloaded haproxy: {:?}",
        out.command_lines()
    );
    assert_eq!(
        out.state.unit_status,
        Status::waiting("serving MAAS 3.6/stable through the other regions; the refresh to 3.7/stable waits for maas-region/1, maas-region/2 to leave this region out of their haproxy (or 300 s after the drain began)")
    );
}

#[test]
fn a_region_leaves_the_holder_out_and_acknowledges() {
    // Arrange: region 0 published its drain.
    let st = peer_says(follower_of_three(), 0, "refresh-drain", DRAIN0);
    // Act
    let out = harness(1).run_ok(Trigger::RelationChanged(PEERS, Some(0)), &st);
    // Assert
    let cfg = out.state.machine.text(HAPROXY_CFG).unwrap();
    assert_eq!(servers(&cfg), ["maas-region-1", "maas-region-2"], "{cfg}");
    assert!(
        cfg.contains("\nfrontend vip_ready\n"),
        "its own VIP check stays: {cfg}"
    );
    assert_haproxy_accepts(&cfg);
    assert_eq!(my_peer_data(&out.state, "refresh-drained"), DRAIN0);
    assert!(!ran(&out, "systemctl reload haproxy").is_empty());
    assert!(!refreshed(&out), "not its turn");
}

#[test]
fn the_holder_waits_while_one_region_has_not_acknowledged() {
    // Arrange: region 1 acknowledged, region 2 acknowledged an earlier drain of region 0.
    let st = peer_says(holder_draining(), 1, "refresh-drained", DRAIN0);
    let st = peer_says(st, 2, "refresh-drained", "maas-region/0#0");
    // Act
    let out = harness(0).run_ok(Trigger::RelationChanged(PEERS, Some(1)), &st);
    // Assert
    assert!(!refreshed(&out));
    assert!(
        out.state
            .unit_status
            .message
            .contains("waits for maas-region/2 to leave this region out"),
        "{:?}",
        out.state.unit_status
    );
    assert_eq!(my_peer_data(&out.state, "refresh-drain"), DRAIN0);
}

#[test]
fn once_every_region_acknowledged_the_holder_refreshes_then_returns_to_haproxy() {
    // Arrange
    let st = peer_says(holder_draining(), 1, "refresh-drained", DRAIN0);
    let st = peer_says(st, 2, "refresh-drained", DRAIN0);
    // Act
    let out = harness(0).run_ok(Trigger::RelationChanged(PEERS, Some(2)), &st);
    // Assert: refreshed, and only then back in its own haproxy with the VIP's check.
    let refresh = ran(&out, REFRESH);
    assert_eq!(refresh.len(), 1, "{:?}", out.command_lines());
    let reload = ran(&out, "systemctl reload haproxy");
    assert!(
        reload.len() == 1 && reload[0] > refresh[0],
        "{:?}",
        out.command_lines()
    );
    let cfg = out.state.machine.text(HAPROXY_CFG).unwrap();
    assert_eq!(
        servers(&cfg),
        ["maas-region-0", "maas-region-1", "maas-region-2"],
        "{cfg}"
    );
    assert!(cfg.contains("\nfrontend vip_ready\n"), "{cfg}");
    assert_eq!(my_peer_data(&out.state, "refresh-drain"), "");
    assert_eq!(my_peer_data(&out.state, "init-request"), "");
    assert!(!out.state.stored.contains_key("refresh-drain-since"));
    let peers = out.state.relation(PEERS).unwrap();
    assert_eq!(
        peers
            .local_app_data
            .get("init-lock")
            .map(String::as_str)
            .unwrap_or(""),
        ""
    );
    assert_eq!(out.state.stored["snap-channel"], "3.7/stable");
    assert_eq!(my_peer_data(&out.state, "maas-channel"), "3.7/stable");
    assert_eq!(
        out.state.unit_status,
        Status::active("serving http://10.0.0.100/MAAS")
    );

    // A second run changes nothing: no refresh, no drain, no reload.
    let again = harness(0).run_ok(Trigger::UpdateStatus, &settled(&out.state));
    assert!(mutating(&again).is_empty(), "{:?}", again.command_lines());
    assert_eq!(my_peer_data(&again.state, "refresh-drain"), "");
}

#[test]
fn the_regions_take_the_holder_back_once_its_drain_is_cleared() {
    // Arrange: region 1 left region 0 out; region 0 has refreshed and cleared its drain.
    let drained = harness(1)
        .run_ok(
            Trigger::RelationChanged(PEERS, Some(0)),
            &peer_says(follower_of_three(), 0, "refresh-drain", DRAIN0),
        )
        .state;
    let st = peer_says(settled(&drained), 0, "refresh-drain", "");
    // Act
    let out = harness(1).run_ok(Trigger::RelationChanged(PEERS, Some(0)), &st);
    // Assert
    let cfg = out.state.machine.text(HAPROXY_CFG).unwrap();
    assert_eq!(
        servers(&cfg),
        ["maas-region-0", "maas-region-1", "maas-region-2"],
        "{cfg}"
    );
    assert!(!ran(&out, "systemctl reload haproxy").is_empty());
    assert_eq!(my_peer_data(&out.state, "refresh-drained"), "");
    // And again: nothing (it looks whether it holds the VIP, and changes nothing).
    let again = harness(1).run_ok(Trigger::UpdateStatus, &settled(&out.state));
    let changes: Vec<String> = mutating(&again)
        .into_iter()
        .filter(|c| c != "ip -o addr show")
        .collect();
    assert!(changes.is_empty(), "{:?}", again.command_lines());
}

#[test]
fn a_region_that_never_acknowledges_holds_the_refresh_back_only_for_a_while() {
    // Arrange: region 2's agent is gone; the drain was published long ago.
    let mut st = peer_says(holder_draining(), 1, "refresh-drained", DRAIN0);
    st.stored
        .insert("refresh-drain-since".into(), "1000".into());
    // Act
    let out = harness(0).run_ok(Trigger::UpdateStatus, &st);
    // Assert
    assert!(refreshed(&out), "{:?}", out.command_lines());
    assert_eq!(my_peer_data(&out.state, "refresh-drain"), "");
}

#[test]
fn a_departed_region_is_not_waited_for() {
    // Arrange: region 2 left the relation mid-drain; region 1 acknowledged.
    let st = peer_says(holder_draining(), 1, "refresh-drained", DRAIN0);
    // Act (the harness takes region 2 out of the relation, as Juju does for -departed)
    let out = harness(0).run_ok(Trigger::RelationDeparted(PEERS, 2), &st);
    // Assert
    assert!(refreshed(&out), "{:?}", out.command_lines());
}

#[test]
fn a_channel_set_back_mid_drain_returns_the_region_to_haproxy() {
    // Arrange
    let st = holder_draining().with_config("channel", "3.6/stable");
    // Act
    let out = harness(0).run_ok(Trigger::ConfigChanged, &st);
    // Assert
    assert!(!refreshed(&out));
    let cfg = out.state.machine.text(HAPROXY_CFG).unwrap();
    assert_eq!(
        servers(&cfg),
        ["maas-region-0", "maas-region-1", "maas-region-2"],
        "{cfg}"
    );
    assert!(cfg.contains("\nfrontend vip_ready\n"), "{cfg}");
    assert_eq!(my_peer_data(&out.state, "refresh-drain"), "");
    assert_eq!(my_peer_data(&out.state, "init-request"), "");
}

#[test]
fn the_holder_waits_for_the_vip_to_move_before_going_on() {
    // Arrange: this host (10.0.0.10) holds the VIP for two more looks after the drain; the
    // other regions already refreshed (the region holding the VIP goes last).
    let mut st = peer_says(
        leader_of_three_wanting_3_7(),
        1,
        "maas-channel",
        "3.7/stable",
    );
    st = peer_says(st, 2, "maas-channel", "3.7/stable");
    let addrs = |vip: bool| {
        let mut s = String::from(
            "2: eth0    inet 10.0.0.10/24 brd 10.0.0.255 scope global eth0\\    valid_lft forever preferred_lft forever\n",
        );
        if vip {
            s.push_str("2: eth0    inet 10.0.0.100/24 scope global secondary eth0\\    valid_lft forever preferred_lft forever\n");
        }
        CmdOutput::ok(s)
    };
    st.machine = st
        .machine
        .respond(&["ip", "-o", "addr", "show"], addrs(false))
        .respond_times(&["ip", "-o", "addr", "show"], addrs(true), 2);
    // Act
    let out = harness(0).run_ok(Trigger::ConfigChanged, &st);
    // Assert: looked until the VIP had gone, after the reload that closed its check.
    let looks = ran(&out, "ip -o addr show");
    let reload = ran(&out, "systemctl reload haproxy");
    assert_eq!(looks.len(), 3, "{:?}", out.command_lines());
    assert!(looks[0] > reload[0]);
    assert_eq!(my_peer_data(&out.state, "refresh-drain"), DRAIN0);
}

fn app_data<'a>(st: &'a State, key: &str) -> &'a str {
    st.relation(PEERS)
        .unwrap()
        .local_app_data
        .get(key)
        .map(String::as_str)
        .unwrap_or("")
}

#[test]
fn with_pause_first_the_second_region_waits_for_resume_refresh() {
    // Arrange: region 1 already runs 3.7.
    let st = peer_says(
        leader_of_three_wanting_3_7(),
        1,
        "maas-channel",
        "3.7/stable",
    )
    .with_config("pause-after-unit-refresh", "first");
    // Act
    let out = harness(0).run_ok(Trigger::ConfigChanged, &st);
    // Assert: no turn asked for, no drain, MAAS untouched.
    assert!(!refreshed(&out));
    assert_eq!(my_peer_data(&out.state, "init-request"), "");
    assert_eq!(my_peer_data(&out.state, "refresh-drain"), "");
    assert_eq!(app_data(&out.state, "init-lock"), "");
    assert_eq!(
        out.state.unit_status,
        Status::blocked("serving MAAS 3.6/stable; the refresh to 3.7/stable is paused after 1 region(s) (pause-after-unit-refresh=first): check them, then run the resume-refresh action on the leader")
    );

    // Act: the operator resumes (on this unit, the leader), then its next hook.
    let resumed = harness(0).run_ok(
        Trigger::Action("resume-refresh".into(), serde_json::json!({})),
        &out.state,
    );
    assert_eq!(resumed.action.failed, None);
    assert_eq!(app_data(&resumed.state, "refresh-resumed"), "3.7/stable#1");
    assert_eq!(resumed.action.results["refreshed"], "1");
    assert_eq!(
        resumed.action.results["to-refresh"],
        "maas-region/0 (3.6/stable), maas-region/2 (unknown)"
    );
    let next = harness(0).run_ok(Trigger::UpdateStatus, &resumed.state);
    // Assert: its turn, starting with the drain.
    assert_eq!(my_peer_data(&next.state, "refresh-drain"), DRAIN0);
    // The same resume lets region 2 go too once region 0 runs 3.7 (`first`).
    let later = peer_says(next.state, 2, "maas-channel", "3.7/stable");
    let later = harness(0).run_ok(Trigger::UpdateStatus, &later);
    assert!(
        !later.state.unit_status.message.contains("paused"),
        "{:?}",
        later.state.unit_status
    );
}

#[test]
fn with_pause_all_every_region_needs_its_own_resume() {
    // Arrange: regions 1 and 2 run 3.7; the operator resumed after the first only.
    let mut st = peer_says(
        leader_of_three_wanting_3_7(),
        1,
        "maas-channel",
        "3.7/stable",
    );
    st = peer_says(st, 2, "maas-channel", "3.7/stable")
        .with_config("pause-after-unit-refresh", "all");
    st.relations
        .iter_mut()
        .find(|r| r.id == PEERS)
        .unwrap()
        .local_app_data
        .insert("refresh-resumed".into(), "3.7/stable#1".into());
    // Act
    let out = harness(0).run_ok(Trigger::ConfigChanged, &st);
    // Assert
    assert!(!refreshed(&out));
    assert!(
        out.state
            .unit_status
            .message
            .contains("paused after 2 region(s) (pause-after-unit-refresh=all)"),
        "{:?}",
        out.state.unit_status
    );
    // A resume given after the two lets it go.
    let resumed = harness(0).run_ok(
        Trigger::Action("resume-refresh".into(), serde_json::json!({})),
        &out.state,
    );
    assert_eq!(app_data(&resumed.state, "refresh-resumed"), "3.7/stable#2");
    let next = harness(0).run_ok(Trigger::UpdateStatus, &resumed.state);
    assert!(refreshed(&next) || my_peer_data(&next.state, "refresh-drain") == DRAIN0);
}

#[test]
fn without_pause_the_regions_go_on_after_the_first() {
    let st = peer_says(
        leader_of_three_wanting_3_7(),
        1,
        "maas-channel",
        "3.7/stable",
    );
    let out = harness(0).run_ok(Trigger::ConfigChanged, &st);
    assert_eq!(my_peer_data(&out.state, "refresh-drain"), DRAIN0);
}

#[test]
fn resume_refresh_refuses_where_there_is_nothing_to_resume() {
    let h = harness(0);
    let run = |st: &State| {
        h.run_ok(
            Trigger::Action("resume-refresh".into(), serde_json::json!({})),
            st,
        )
        .action
        .failed
        .unwrap_or_default()
    };
    // No region runs the new channel yet.
    let st = leader_of_three_wanting_3_7();
    assert!(
        run(&st).contains("no region runs 3.7/stable yet"),
        "{}",
        run(&st)
    );
    // Not the leader.
    let mut not_leader = peer_says(st.clone(), 1, "maas-channel", "3.7/stable");
    not_leader.leader = false;
    assert!(run(&not_leader).contains("run resume-refresh on the leader"));
    // Every region already runs it.
    let done = peer_says(st, 1, "maas-channel", "3.6/stable").with_config("channel", "3.6/stable");
    let done = peer_says(done, 2, "maas-channel", "3.6/stable");
    assert!(
        run(&done).contains("every region already runs 3.6/stable"),
        "{}",
        run(&done)
    );
}

#[test]
fn a_drain_without_a_recorded_start_begins_counting_rather_than_waiting_forever() {
    // Arrange: the drain is published, its start lost (an older charm state).
    let mut st = holder_draining();
    st.stored.remove("refresh-drain-since");
    // Act
    let out = harness(0).run_ok(Trigger::UpdateStatus, &st);
    // Assert: still waiting, and from now on the bound applies.
    assert!(!refreshed(&out));
    let since: u64 = out.state.stored["refresh-drain-since"].parse().unwrap();
    assert!(since > 1_700_000_000, "{since}");
}

/// Region 0's host (10.0.0.10) holds the VIP 10.0.0.100 for the next `looks` looks
/// (`ip -o addr show`), and not after them.
fn holding_the_vip(mut st: State, looks: u32) -> State {
    let addrs = |vip: bool| {
        let mut s = String::from(
            "2: eth0    inet 10.0.0.10/24 brd 10.0.0.255 scope global eth0\\    valid_lft forever preferred_lft forever\n",
        );
        if vip {
            s.push_str("2: eth0    inet 10.0.0.100/24 scope global secondary eth0\\    valid_lft forever preferred_lft forever\n");
        }
        CmdOutput::ok(s)
    };
    st.machine = st
        .machine
        .respond(&["ip", "-o", "addr", "show"], addrs(false))
        .respond_times(&["ip", "-o", "addr", "show"], addrs(true), looks);
    st
}

#[test]
fn the_region_holding_the_vip_refreshes_after_the_others() {
    // Arrange: region 0 holds the VIP; region 1 already runs 3.7, region 2 does not.
    let st = holding_the_vip(
        peer_says(
            leader_of_three_wanting_3_7(),
            1,
            "maas-channel",
            "3.7/stable",
        ),
        1,
    );
    // Act
    let out = harness(0).run_ok(Trigger::ConfigChanged, &st);
    // Assert: no turn asked for, no drain; it lets region 2 go first.
    assert!(!refreshed(&out));
    assert_eq!(my_peer_data(&out.state, "init-request"), "");
    assert_eq!(my_peer_data(&out.state, "refresh-drain"), "");
    assert_eq!(
        out.state.unit_status,
        Status::waiting("serving MAAS 3.6/stable and holding the VIP 10.0.0.100: refreshes to 3.7/stable after maas-region/2 (the VIP then moves once; or 300 s after this wait began)")
    );
    // Once region 2 runs 3.7 too, its turn.
    let next = peer_says(settled(&out.state), 2, "maas-channel", "3.7/stable");
    let next = harness(0).run_ok(
        Trigger::RelationChanged(PEERS, Some(2)),
        &holding_the_vip(next, 1),
    );
    assert_eq!(my_peer_data(&next.state, "refresh-drain"), DRAIN0);
}

#[test]
fn the_region_holding_the_vip_waits_for_the_others_only_for_a_while() {
    // Arrange: region 2 never refreshes; the wait began long ago.
    let mut st = holding_the_vip(leader_of_three_wanting_3_7(), 2);
    st.stored.insert("vip-last-since".into(), "1000".into());
    // Act
    let out = harness(0).run_ok(Trigger::ConfigChanged, &st);
    // Assert
    assert_eq!(my_peer_data(&out.state, "refresh-drain"), DRAIN0);
}
