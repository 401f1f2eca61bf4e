//! The init lock protocol, unit by unit and as a whole cluster: two units never initialise
//! together, and every unit gets its turn.

mod common;

use charm_lib::testing::{Relation, State, Trigger};
use charm_lib::{FileOptions, Status, StatusKind};
use common::*;
use std::collections::BTreeMap;

fn ran_init(out: &charm_lib::testing::Output) -> bool {
    out.commands
        .iter()
        .any(|c| c.len() > 2 && c[0] == "/snap/bin/maas" && c[1] == "init")
}

fn unit_state(n: u32, leader: bool, peers: Relation) -> State {
    let mut st = State::default()
        .with_relation(peers)
        .with_relation(pgsql(
            "10.0.0.5",
            "maas-region/0 maas-region/1 maas-region/2",
        ))
        .with_secret(db_secret())
        .with_relation(vip("10.0.0.100"));
    st.leader = leader;
    st.network.address = format!("10.0.0.{}", 10 + n);
    st.machine = hostname(st.machine, n);
    installed_snap(st)
}

#[test]
fn a_unit_without_the_grant_waits_and_asks() {
    let peers = peers(&[(0, "10.0.0.10")]).local_app_data(&[
        ("maas-url", "http://10.0.0.100/MAAS"),
        ("init-lock", "maas-region/0#1"),
    ]);
    let out = harness(1).run_ok(Trigger::ConfigChanged, &unit_state(1, false, peers));
    assert!(!ran_init(&out));
    assert_eq!(
        out.state.unit_status,
        Status::waiting("waiting for init lock")
    );
    assert_eq!(
        out.state.relation(PEERS).unwrap().local_unit_data["init-request"],
        "1"
    );
}

#[test]
fn a_stale_grant_of_an_earlier_request_is_not_used() {
    // This unit was granted request 1 once; it now asks again (request 2) and must wait.
    let mut st = unit_state(
        1,
        false,
        peers(&[(0, "10.0.0.10")]).local_app_data(&[
            ("maas-url", "http://10.0.0.100/MAAS"),
            ("init-lock", "maas-region/1#1"),
        ]),
    );
    st.stored.insert("init-request-seq".into(), "1".into());
    let out = harness(1).run(Trigger::ConfigChanged, &st).unwrap();
    assert!(!ran_init(&out));
    assert_eq!(
        out.state.relation(PEERS).unwrap().local_unit_data["init-request"],
        "2"
    );
}

#[test]
fn the_granted_unit_initialises_and_releases() {
    let peers = peers(&[(0, "10.0.0.10")])
        .local_app_data(&[
            ("maas-url", "http://10.0.0.100/MAAS"),
            ("init-lock", "maas-region/1#3"),
        ])
        .local_unit_data(&[("init-request", "3")]);
    let out = harness(1)
        .run(
            Trigger::RelationChanged(PEERS, Some(0)),
            &unit_state(1, false, peers),
        )
        .unwrap();
    assert!(ran_init(&out));
    assert!(!out
        .state
        .relation(PEERS)
        .unwrap()
        .local_unit_data
        .contains_key("init-request"));
    assert_eq!(
        out.state.unit_status,
        Status::active("serving http://10.0.0.100/MAAS")
    );
}

#[test]
fn the_leader_keeps_the_grant_while_its_holder_works_then_moves_on() {
    let holder_working = peers(&[(1, "10.0.0.11"), (2, "10.0.0.12")]);
    let mut holder_working = holder_working.local_app_data(&[
        ("maas-url", "http://10.0.0.100/MAAS"),
        ("init-lock", "maas-region/2#1"),
    ]);
    holder_working
        .remote_units
        .get_mut(&2)
        .unwrap()
        .insert("init-request".into(), "1".into());
    holder_working
        .remote_units
        .get_mut(&1)
        .unwrap()
        .insert("init-request".into(), "1".into());
    let mut st = unit_state(0, true, holder_working);
    st = snap_initialised_unit(st, "10.0.0.5", "http://10.0.0.100/MAAS");
    let out = harness(0)
        .run(Trigger::RelationChanged(PEERS, Some(1)), &st)
        .unwrap();
    assert_eq!(
        out.state.relation(PEERS).unwrap().local_app_data["init-lock"],
        "maas-region/2#1"
    );
    // Unit 2 is done: it cleared its request.
    let mut done = out.state.clone();
    let rel = done.relations.iter_mut().find(|r| r.id == PEERS).unwrap();
    rel.remote_units.get_mut(&2).unwrap().remove("init-request");
    let out = harness(0)
        .run(Trigger::RelationChanged(PEERS, Some(2)), &done)
        .unwrap();
    assert_eq!(
        out.state.relation(PEERS).unwrap().local_app_data["init-lock"],
        "maas-region/1#1"
    );
    assert!(
        !ran_init(&out),
        "the initialised leader does not init again"
    );
}

#[test]
fn a_departed_holder_does_not_keep_the_lock() {
    let mut rel = peers(&[(1, "10.0.0.11"), (2, "10.0.0.12")]).local_app_data(&[
        ("maas-url", "http://10.0.0.100/MAAS"),
        ("init-lock", "maas-region/2#1"),
    ]);
    rel.remote_units
        .get_mut(&2)
        .unwrap()
        .insert("init-request".into(), "1".into());
    rel.remote_units
        .get_mut(&1)
        .unwrap()
        .insert("init-request".into(), "5".into());
    let mut st = unit_state(0, true, rel);
    st = snap_initialised_unit(st, "10.0.0.5", "http://10.0.0.100/MAAS");
    let out = harness(0)
        .run(Trigger::RelationDeparted(PEERS, 2), &st)
        .unwrap();
    assert_eq!(
        out.state.relation(PEERS).unwrap().local_app_data["init-lock"],
        "maas-region/1#5"
    );
}

/// A lock holder that does not parse is not "nobody": no unit initialises, none rewrites it,
/// and each says which key of whose databag to fix.
#[test]
fn a_garbled_lock_holder_blocks_every_unit_naming_the_key() {
    // Arrange: the holder lost its token; unit 1 asks with request 1, as does the leader's peer.
    let garbled = || {
        peers(&[(0, "10.0.0.10")])
            .local_app_data(&[
                ("maas-url", "http://10.0.0.100/MAAS"),
                ("init-lock", "maas-region/1"),
            ])
            .local_unit_data(&[("init-request", "1")])
    };
    // Act: a unit that waits for the lock.
    let out = harness(1).run_ok(Trigger::ConfigChanged, &unit_state(1, false, garbled()));
    // Assert: it did not take the lock for free, wrote nothing, and names the key.
    assert!(!ran_init(&out));
    assert_eq!(out.state.unit_status.kind, StatusKind::Blocked);
    let msg = &out.state.unit_status.message;
    assert!(
        msg.contains("maas-region (cluster:1)") && msg.contains("key \"init-lock\""),
        "{msg}"
    );
    assert!(
        msg.contains("relation-set -r cluster:1 --app init-lock="),
        "{msg}"
    );
    assert_eq!(
        out.state.relation(PEERS).unwrap().local_unit_data["init-request"],
        "1"
    );

    // Act: the leader, with a peer asking.
    let mut rel = garbled();
    rel.remote_units
        .get_mut(&0)
        .unwrap()
        .insert("init-request".into(), "4".into());
    let out = harness(1).run_ok(Trigger::ConfigChanged, &unit_state(1, true, rel));
    // Assert: the value stays for the operator to see; nobody was granted it.
    assert!(!ran_init(&out));
    assert_eq!(out.state.unit_status.kind, StatusKind::Blocked);
    assert!(out.state.unit_status.message.contains("init-lock"));
    assert_eq!(
        out.state.relation(PEERS).unwrap().local_app_data["init-lock"],
        "maas-region/1"
    );
}

/// A unit's own field that does not parse blocks it, naming the key and the unit; the leader
/// then leaves the lock where it is (that unit's request is unknown, not closed) and says
/// whose data it waits for.
#[test]
fn a_garbled_unit_field_blocks_its_unit_and_freezes_the_lock() {
    // Arrange: unit 2 holds the lock, its request garbled; unit 1 asks.
    let mut rel = peers(&[(0, "10.0.0.10")])
        .local_app_data(&[
            ("maas-url", "http://10.0.0.100/MAAS"),
            ("init-lock", "maas-region/2#1"),
        ])
        .local_unit_data(&[("init-request", "one")]);
    rel.remote_units
        .get_mut(&0)
        .unwrap()
        .insert("init-request".into(), "1".into());
    // Act: unit 2 itself.
    let out = harness(2).run_ok(Trigger::ConfigChanged, &unit_state(2, false, rel));
    // Assert: Blocked naming its own key, with the command that clears it; nothing ran.
    assert!(!ran_init(&out));
    assert_eq!(out.state.unit_status.kind, StatusKind::Blocked);
    let msg = &out.state.unit_status.message;
    assert!(
        msg.contains("maas-region/2")
            && msg.contains("key \"init-request\"")
            && msg.contains("\"one\""),
        "{msg}"
    );
    assert!(
        msg.contains("juju exec --unit maas-region/2 -- relation-set -r cluster:1 init-request="),
        "{msg}"
    );
    assert_eq!(
        out.state.relation(PEERS).unwrap().local_unit_data["init-request"],
        "one",
        "a value it cannot read is not overwritten"
    );

    // Arrange: the leader (unit 0) sees unit 2's garbled request and unit 1's open one.
    let mut rel = peers(&[(1, "10.0.0.11"), (2, "10.0.0.12")]).local_app_data(&[
        ("maas-url", "http://10.0.0.100/MAAS"),
        ("init-lock", "maas-region/2#1"),
    ]);
    rel.remote_units
        .get_mut(&2)
        .unwrap()
        .insert("init-request".into(), "one".into());
    rel.remote_units
        .get_mut(&1)
        .unwrap()
        .insert("init-request".into(), "1".into());
    let st = snap_initialised_unit(
        unit_state(0, true, rel),
        "10.0.0.5",
        "http://10.0.0.100/MAAS",
    );
    // Act
    let out = harness(0).run_ok(Trigger::RelationChanged(PEERS, Some(2)), &st);
    // Assert: the lock did not move to unit 1 (read as "unit 2 closed its request", it would
    // have), and the leader names the unit and the key.
    assert_eq!(
        out.state.relation(PEERS).unwrap().local_app_data["init-lock"],
        "maas-region/2#1"
    );
    assert_eq!(out.state.unit_status.kind, StatusKind::Waiting);
    let msg = &out.state.unit_status.message;
    assert!(
        msg.contains("maas-region/2") && msg.contains("key \"init-request\""),
        "{msg}"
    );
}

/// One simulated unit of a cluster.
struct Sim {
    n: u32,
    unit_data: BTreeMap<String, String>,
    st: State,
}

/// Runs rounds in which every unit handles a hook at the same time from the same snapshot of the
/// peer data (the worst case for a lock), then merges what each wrote. MAAS's files appear on a
/// unit's host after its `maas init`, as the real `maas init` writes them.
fn simulate(units: u32, rounds: usize) -> Vec<Vec<u32>> {
    let mut app: BTreeMap<String, String> = BTreeMap::new();
    let mut sims: Vec<Sim> = (0..units)
        .map(|n| Sim {
            n,
            unit_data: BTreeMap::new(),
            st: unit_state(n, n == 0, Relation::peer(PEERS, "cluster")),
        })
        .collect();
    let mut history = vec![];
    for round in 0..rounds {
        let snapshot: Vec<BTreeMap<String, String>> =
            sims.iter().map(|s| s.unit_data.clone()).collect();
        let app_snapshot = app.clone();
        let mut initialised_now = vec![];
        for s in sims.iter_mut() {
            let mut rel = Relation::peer(PEERS, "cluster");
            rel.local_app_data = app_snapshot.clone();
            rel.local_unit_data = snapshot[s.n as usize].clone();
            for (j, d) in snapshot.iter().enumerate() {
                if j as u32 != s.n {
                    rel.remote_units.insert(j as u32, d.clone());
                }
            }
            s.st.relations.retain(|r| r.id != PEERS);
            s.st.relations.push(rel);
            let trigger = if round == 0 {
                Trigger::ConfigChanged
            } else {
                Trigger::RelationChanged(PEERS, Some((s.n + 1) % units))
            };
            let out = harness(s.n).run(trigger, &s.st).unwrap();
            assert!(!out.failed(), "unit {} round {round}: {:?}", s.n, out.error);
            if ran_init(&out) {
                if s.n != 0 {
                    let lock = app_snapshot.get("init-lock").cloned().unwrap_or_default();
                    let token = snapshot[s.n as usize]
                        .get("init-request")
                        .cloned()
                        .unwrap_or_default();
                    assert_eq!(
                        lock,
                        format!("maas-region/{}#{token}", s.n),
                        "unit {} initialised without holding the lock",
                        s.n
                    );
                }
                initialised_now.push(s.n);
            }
            s.st = out.state.clone();
            if ran_init(&out) {
                s.st.machine =
                    snap_initialised(s.st.machine.clone(), "10.0.0.5", "http://10.0.0.100/MAAS");
            }
            s.unit_data = out.state.relation(PEERS).unwrap().local_unit_data.clone();
            if s.n == 0 {
                app = out.state.relation(PEERS).unwrap().local_app_data.clone();
            }
        }
        assert!(
            initialised_now.len() <= 1,
            "round {round}: units {initialised_now:?} initialised together"
        );
        history.push(initialised_now);
    }
    history
}

#[test]
fn two_units_never_initialise_together_and_every_unit_gets_its_turn() {
    for units in [2u32, 3] {
        let history = simulate(units, 10);
        let mut order: Vec<u32> = history.iter().flatten().copied().collect();
        assert_eq!(
            order.len(),
            units as usize,
            "every unit initialises exactly once: {history:?}"
        );
        order.sort();
        assert_eq!(order, (0..units).collect::<Vec<_>>());
    }
}

#[test]
fn without_the_peer_relation_nobody_initialises() {
    let mut st = unit_state(0, true, Relation::peer(PEERS, "cluster"));
    st.relations.retain(|r| r.id != PEERS);
    let out = harness(0).run(Trigger::Install, &st).unwrap();
    assert!(!ran_init(&out));
    assert_eq!(out.state.unit_status.kind, StatusKind::Waiting);
    let _ = FileOptions::root(0o644);
}
