//! The rolling upgrade (a new patroni-version, a newer PostgreSQL package) and refreshes of
//! the charm itself: one unit at a time, replicas first, the primary after a switchover; a unit
//! that runs what is wanted restarts nothing.

mod common;

use charm_lib::testing::{MachineState, Relation, State, Trigger};
use charm_lib::{CmdOutput, FileOptions, StatusKind};
use common::*;

const PATRONI_STATUS: &str = "https://127.0.0.1:8008/patroni";
const POSTGRES: &str = "/usr/lib/postgresql/15/bin/postgres";
const PIP: &str = "/opt/postgresql-ha/venv/bin/pip";

/// `GET /patroni` as Patroni answers it (patroni/api.py `_write_status_response`).
fn patroni_status(version: &str, server_version: u64) -> CmdOutput {
    CmdOutput::ok(format!(
        "{}\n200",
        serde_json::json!({"state": "running", "server_version": server_version,
            "patroni": {"version": version, "scope": "postgresql-ha", "name": "x"}})
    ))
}

/// A healthy 3-member cluster: 0 primary, 1 quorum standby, 2 replica (async), /sync naming
/// 0 and 1; PostgreSQL 15.14 installed; Patroni answering /patroni with `runs` (then `after`,
/// once restarted).
fn host(runs: &str, after: Option<&str>, stamp: &str) -> MachineState {
    let mut m = with_sync_key(
        with_etcd_members(
            with_cluster(
                installed_host(),
                &[
                    (0, "leader", "running", None),
                    (1, "quorum_standby", "streaming", Some(0)),
                    (2, "replica", "streaming", Some(0)),
                ],
            ),
            &[(0, 1, false), (1, 2, false), (2, 3, false)],
        ),
        serde_json::json!({"leader": "postgresql-ha-0", "sync_standby": "postgresql-ha-1", "quorum": 0}),
    )
    .respond(
        &[POSTGRES, "-V"],
        CmdOutput::ok("postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)\n"),
    )
    .with_file(
        "/opt/postgresql-ha/installed",
        stamp,
        FileOptions::root(0o644),
    );
    m = running(m, &["postgresql-ha-patroni.service"]);
    match after {
        Some(a) => m
            .respond(&["curl", PATRONI_STATUS], patroni_status(a, 150014))
            .respond_times(&["curl", PATRONI_STATUS], patroni_status(runs, 150014), 1),
        None => m.respond(&["curl", PATRONI_STATUS], patroni_status(runs, 150014)),
    }
}

const ON_4_1_5: &str = "patroni==4.1.5\npackages=2\n";

/// Unit `n` of 3 with `turn` in the app data and the others' reports.
fn unit(n: u32, turn: &str, reports: &[(u32, &str, &str)]) -> State {
    let mut peers_rel = peers(
        &[0, 1, 2],
        &[0, 1, 2]
            .iter()
            .copied()
            .filter(|u| *u != n)
            .collect::<Vec<_>>(),
    );
    peers_rel
        .local_app_data
        .insert("upgrade-turn".into(), turn.into());
    for (u, version, pending) in reports {
        if let Some(bag) = peers_rel.remote_units.get_mut(u) {
            bag.insert("patroni-version".into(), (*version).into());
            bag.insert("upgrade-pending".into(), (*pending).into());
        }
    }
    let mut st = State::default()
        .with_relation(peers_rel)
        .with_secret(sys_secret())
        .with_secret(ca_secret())
        .with_config("patroni-version", "4.1.6");
    st.network.address = addr(n);
    if n == 0 {
        st = st.leader();
    }
    st
}

/// Whether the hook stopped, started or restarted Patroni (a reload only re-reads its file).
fn restarts_patroni(out: &charm_lib::testing::Output) -> bool {
    ["start", "stop", "restart"].iter().any(|verb| {
        ran(out, |l| {
            l == format!("systemctl {verb} postgresql-ha-patroni")
        })
    })
}

#[test]
fn a_new_patroni_version_waits_for_this_unit_s_turn_and_says_so() {
    // Arrange: replica 2 runs 4.1.5, the config wants 4.1.6, it is 1's turn.
    let mut st = unit(
        2,
        "postgresql-ha/1",
        &[(1, "4.1.5", "Patroni 4.1.5 -> 4.1.6")],
    );
    st.machine = host("4.1.5", None, ON_4_1_5);
    // Act.
    let out = unit_harness(2).run_ok(Trigger::ConfigChanged, &st);
    // Assert: nothing installed or restarted; the status names the unit whose turn it is.
    assert!(
        !ran(&out, |l| l.starts_with(PIP)),
        "{:#?}",
        out.command_lines()
    );
    assert!(!restarts_patroni(&out), "{:#?}", out.command_lines());
    assert_eq!(out.state.unit_status.kind, StatusKind::Waiting);
    assert!(
        out.state
            .unit_status
            .message
            .contains("Patroni 4.1.5 -> 4.1.6")
            && out
                .state
                .unit_status
                .message
                .contains("waiting for postgresql-ha/1"),
        "{:?}",
        out.state.unit_status
    );
    let mine = &out
        .state
        .relation_on("database-peers")
        .unwrap()
        .local_unit_data;
    assert_fields(
        mine,
        &[
            ("patroni-version", "4.1.5"),
            ("upgrade-pending", "Patroni 4.1.5 -> 4.1.6"),
            ("postgresql-version", "15.14"),
        ],
    );
}

#[test]
fn in_its_turn_a_replica_installs_with_patroni_stopped_restarts_and_reports_done() {
    // Arrange: replica 2's turn; Patroni answers 4.1.6 once restarted.
    let mut st = unit(2, "postgresql-ha/2", &[]);
    st.machine = host("4.1.5", Some("4.1.6"), ON_4_1_5);
    // Act.
    let out = unit_harness(2).run_ok(Trigger::RelationChanged(1, Some(0)), &st);
    // Assert: stop, pip, start, in that order, and no switchover.
    let lines = out.command_lines();
    let at = |pred: &dyn Fn(&str) -> bool, what: &str| {
        lines
            .iter()
            .position(|l| pred(l))
            .unwrap_or_else(|| panic!("{what}: {lines:#?}"))
    };
    let stop = at(&|l| l == "systemctl stop postgresql-ha-patroni", "stop");
    let pip = at(
        &|l| l.starts_with(PIP) && l.contains("patroni[etcd3]==4.1.6"),
        "pip",
    );
    let start = at(&|l| l == "systemctl start postgresql-ha-patroni", "start");
    assert!(stop < pip && pip < start, "{lines:#?}");
    assert!(!ran(&out, |l| l.contains("/switchover")));
    assert_eq!(
        out.state
            .machine
            .text("/opt/postgresql-ha/installed")
            .as_deref(),
        Some("patroni==4.1.6\npackages=2\n")
    );
    let mine = &out
        .state
        .relation_on("database-peers")
        .unwrap()
        .local_unit_data;
    assert_fields(mine, &[("patroni-version", "4.1.6")]);
    assert_eq!(
        mine.get("upgrade-pending")
            .map(String::as_str)
            .unwrap_or(""),
        ""
    );
    assert_eq!(
        out.state.unit_status.kind,
        StatusKind::Active,
        "{:?}",
        out.state.unit_status
    );
}

#[test]
fn the_leader_gives_the_turn_to_the_asynchronous_replica_first_and_then_the_sync_standby() {
    // Arrange: the leader is the primary; 1 (sync) and 2 (async) both wait.
    let pending = "Patroni 4.1.5 -> 4.1.6";
    let mut st = unit(0, "", &[(1, "4.1.5", pending), (2, "4.1.5", pending)]);
    st.machine = host("4.1.5", None, ON_4_1_5);
    // Act.
    let out = harness().run_ok(Trigger::ConfigChanged, &st);
    // Assert: 2's turn; the primary restarts nothing; the app status says where the roll is.
    let app = &out
        .state
        .relation_on("database-peers")
        .unwrap()
        .local_app_data;
    assert_fields(app, &[("upgrade-turn", "postgresql-ha/2")]);
    assert!(!restarts_patroni(&out), "{:#?}", out.command_lines());
    assert!(!ran(&out, |l| l.starts_with(PIP)));
    assert_eq!(out.state.app_status.kind, StatusKind::Maintenance);
    assert!(
        out.state
            .app_status
            .message
            .contains("3 of 3 units to go, postgresql-ha/2 now"),
        "{:?}",
        out.state.app_status
    );
    // Act again with 2 done: the sync standby next.
    let mut st = unit(
        0,
        "postgresql-ha/2",
        &[(1, "4.1.5", pending), (2, "4.1.6", "")],
    );
    st.machine = host("4.1.5", None, ON_4_1_5);
    let out = harness().run_ok(Trigger::RelationChanged(1, Some(2)), &st);
    let app = &out
        .state
        .relation_on("database-peers")
        .unwrap()
        .local_app_data;
    assert_fields(app, &[("upgrade-turn", "postgresql-ha/1")]);
}

#[test]
fn reports_from_before_the_config_change_do_not_make_the_primary_go_first() {
    // Arrange: the leader (primary) runs its config-changed first; the replicas' reports are
    // from before it (4.1.5, nothing pending).
    let mut st = unit(0, "", &[(1, "4.1.5", ""), (2, "4.1.5", "")]);
    st.machine = host("4.1.5", None, ON_4_1_5);
    // Act.
    let out = harness().run_ok(Trigger::ConfigChanged, &st);
    // Assert: a replica's turn; the primary neither switches over nor restarts.
    let app = &out
        .state
        .relation_on("database-peers")
        .unwrap()
        .local_app_data;
    assert_fields(app, &[("upgrade-turn", "postgresql-ha/2")]);
    assert!(!ran(&out, |l| l.contains("/switchover")));
    assert!(!restarts_patroni(&out), "{:#?}", out.command_lines());
}

#[test]
fn the_turn_waits_while_a_member_is_down() {
    // Arrange: 2 reports done but 1 is not streaming.
    let pending = "Patroni 4.1.5 -> 4.1.6";
    let mut st = unit(
        0,
        "postgresql-ha/2",
        &[(1, "4.1.5", pending), (2, "4.1.6", "")],
    );
    st.machine = host("4.1.5", None, ON_4_1_5).respond_times(
        &["curl", "https://127.0.0.1:8008/cluster"],
        CmdOutput::ok(format!(
            "{}\n200",
            cluster_json(&[
                (0, "leader", "running", None),
                (1, "replica", "starting", None),
                (2, "quorum_standby", "streaming", Some(0)),
            ])
        )),
        100,
    );
    // Act.
    let out = harness().run_ok(Trigger::RelationChanged(1, Some(2)), &st);
    // Assert: no turn; the reason is on the app status.
    let app = &out
        .state
        .relation_on("database-peers")
        .unwrap()
        .local_app_data;
    assert_eq!(
        app.get("upgrade-turn").map(String::as_str).unwrap_or(""),
        ""
    );
    assert!(
        out.state.app_status.message.contains("on hold")
            && out
                .state
                .app_status
                .message
                .contains("postgresql-ha/1 is starting"),
        "{:?}",
        out.state.app_status
    );
}

#[test]
fn the_primary_goes_last_after_a_switchover_to_an_upgraded_sync_standby() {
    // Arrange: 1 and 2 are done; the leader (primary) still runs 4.1.5.
    let mut st = unit(0, "postgresql-ha/1", &[(1, "4.1.6", ""), (2, "4.1.6", "")]);
    st.machine = host("4.1.5", Some("4.1.6"), ON_4_1_5).respond(
        &["curl", "https://127.0.0.1:8008/switchover"],
        CmdOutput::ok("Successfully switched over to \"postgresql-ha-1\"\n200"),
    );
    // Act.
    let out = harness().run_ok(Trigger::RelationChanged(1, Some(1)), &st);
    // Assert: the switchover names 1 (the upgraded sync standby) and comes before the stop.
    let lines = out.command_lines();
    let sw = lines
        .iter()
        .position(|l| l.starts_with("curl https://127.0.0.1:8008/switchover"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(
        lines[sw].contains("\"candidate\":\"postgresql-ha-1\""),
        "{}",
        lines[sw]
    );
    let stop = lines
        .iter()
        .position(|l| l == "systemctl stop postgresql-ha-patroni")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(sw < stop);
    assert!(
        !lines[sw].contains(REST_PW),
        "the REST password goes on stdin"
    );
    // Done: the turn is cleared in the same hook (no relation-changed comes for its own data).
    let app = &out
        .state
        .relation_on("database-peers")
        .unwrap()
        .local_app_data;
    assert_eq!(
        app.get("upgrade-turn").map(String::as_str).unwrap_or(""),
        ""
    );
}

#[test]
fn a_refused_switchover_restarts_nothing_and_says_why() {
    let mut st = unit(0, "postgresql-ha/1", &[(1, "4.1.6", ""), (2, "4.1.6", "")]);
    st.machine = host("4.1.5", None, ON_4_1_5).respond(
        &["curl", "https://127.0.0.1:8008/switchover"],
        CmdOutput::ok("candidate name does not match with sync_standby\n412"),
    );
    let out = harness().run_ok(Trigger::RelationChanged(1, Some(1)), &st);
    assert!(!restarts_patroni(&out), "{:#?}", out.command_lines());
    assert!(
        out.state.unit_status.message.contains("HTTP 412"),
        "{:?}",
        out.state.unit_status
    );
}

#[test]
fn the_primary_waits_while_no_upgraded_sync_standby_exists() {
    // 1 (the sync standby) has not reported; 2 (async) is done.
    let mut st = unit(0, "", &[(2, "4.1.6", "")]);
    st.machine = host("4.1.5", None, ON_4_1_5);
    let out = harness().run_ok(Trigger::UpdateStatus, &st);
    assert!(!ran(&out, |l| l.contains("/switchover")));
    assert!(!restarts_patroni(&out));
    assert!(
        out.state.app_status.message.contains("goes last"),
        "{:?}",
        out.state.app_status
    );
}

#[test]
fn a_unit_already_on_the_wanted_versions_restarts_nothing_even_in_its_turn() {
    // Arrange: a stale turn naming this unit, which runs 4.1.6 from a 4.1.6 venv.
    let mut st = unit(2, "postgresql-ha/2", &[]);
    st.machine = host("4.1.6", None, "patroni==4.1.6\npackages=2\n");
    // Act twice.
    let once = unit_harness(2).run_ok(Trigger::ConfigChanged, &st);
    let twice = unit_harness(2).run_ok(Trigger::ConfigChanged, &once.state);
    // Assert.
    for out in [&once, &twice] {
        assert!(!restarts_patroni(out), "{:#?}", out.command_lines());
        assert!(!ran(out, |l| l.starts_with(PIP)));
    }
    assert_eq!(
        once.state.relations, twice.state.relations,
        "the second run changed relation data"
    );
}

#[test]
fn a_newer_postgresql_package_restarts_patroni_in_this_unit_s_turn_without_pip() {
    // Arrange: the postmaster runs 15.13, the package installed 15.14.
    let mut st = unit(2, "postgresql-ha/2", &[]).with_config("patroni-version", "4.1.5");
    st.machine = host("4.1.5", None, ON_4_1_5)
        .respond(&["curl", PATRONI_STATUS], patroni_status("4.1.5", 150014))
        .respond_times(
            &["curl", PATRONI_STATUS],
            patroni_status("4.1.5", 150013),
            1,
        );
    // Act.
    let out = unit_harness(2).run_ok(Trigger::UpdateStatus, &st);
    // Assert.
    assert!(
        ran(&out, |l| l == "systemctl restart postgresql-ha-patroni"),
        "{:#?}",
        out.command_lines()
    );
    assert!(!ran(&out, |l| l.starts_with(PIP)));
    let mine = &out
        .state
        .relation_on("database-peers")
        .unwrap()
        .local_unit_data;
    assert_fields(mine, &[("postgresql-version", "15.14")]);
    // Not its turn: it reports and waits.
    let mut st = unit(2, "postgresql-ha/1", &[]).with_config("patroni-version", "4.1.5");
    st.machine = host("4.1.5", None, ON_4_1_5).respond_times(
        &["curl", PATRONI_STATUS],
        patroni_status("4.1.5", 150013),
        1,
    );
    let out = unit_harness(2).run_ok(Trigger::UpdateStatus, &st);
    assert!(!restarts_patroni(&out));
    let mine = &out
        .state
        .relation_on("database-peers")
        .unwrap()
        .local_unit_data;
    assert_fields(mine, &[("upgrade-pending", "PostgreSQL 15.13 -> 15.14")]);
}

#[test]
fn a_config_change_while_patroni_is_stopped_installs_at_once() {
    // Patroni not running on this unit: nobody to disrupt.
    let mut st = unit(2, "", &[]);
    st.machine = host("4.1.5", None, ON_4_1_5);
    st.machine.services.clear();
    st.machine = patroni_down(st.machine);
    let out = unit_harness(2).run(Trigger::ConfigChanged, &st).unwrap();
    assert!(
        ran(&out, |l| l.starts_with(PIP)
            && l.contains("patroni[etcd3]==4.1.6")),
        "{:#?}",
        out.command_lines()
    );
}

/// The charm binary at its place in the charm directory.
fn binary(m: MachineState, content: &str) -> MachineState {
    m.with_file(
        "/var/lib/juju/agents/unit-postgresql-ha-0/charm/dispatch",
        content,
        FileOptions::root(0o755),
    )
}

#[test]
fn a_refresh_to_the_same_charm_restarts_and_reloads_nothing() {
    // Arrange: a settled primary (every service running, the observer's unit file naming its
    // binary).
    let mut st = leader_primary().with_relation(Relation::new(5, "db", "maas-region").remote_unit(
        0,
        &[
            ("ingress-address", "10.0.0.50"),
            ("database", "maasdb"),
            ("requested-secrets", r#"["username","password"]"#),
        ],
    ));
    st.machine = binary(st.machine, "binary a");
    let settled = harness().run_ok(Trigger::ConfigChanged, &st);
    let mut before = settled.state.clone();
    before.machine = running(
        before.machine,
        &[
            "postgresql-ha-patroni.service",
            "postgresql-ha-etcd.service",
        ],
    );
    // Act: upgrade-charm with the same binary.
    let out = harness().run_ok(Trigger::UpgradeCharm, &before);
    // Assert: no service was started, stopped, restarted or reloaded; nothing installed.
    let lines = out.command_lines();
    assert!(
        !lines.iter().any(|l| l.starts_with("systemctl")
            && ["start", "stop", "restart", "reload", "daemon-reload"]
                .iter()
                .any(|verb| l.split_whitespace().nth(1) == Some(*verb))),
        "{lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with(PIP) || l.starts_with("apt-get")),
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.contains("/restart")), "{lines:#?}");
    // A different binary restarts what runs it (the observer, the certificate exporter and
    // Patroni's metrics relay: `dispatch observe`, `dispatch cert-metrics`, `dispatch
    // patroni-metrics`), and nothing else.
    let mut other = before.clone();
    other.machine = binary(other.machine, "binary b");
    let out = harness().run_ok(Trigger::UpgradeCharm, &other);
    let restarts: Vec<String> = out
        .command_lines()
        .into_iter()
        .filter(|l| {
            l.starts_with("systemctl")
                && ["start", "stop", "restart", "reload"]
                    .iter()
                    .any(|verb| l.split_whitespace().nth(1) == Some(*verb))
        })
        .collect();
    assert_eq!(
        restarts,
        [
            "systemctl restart postgresql-ha-observer",
            "systemctl restart postgresql-ha-cert-metrics",
            "systemctl restart postgresql-ha-patroni-metrics"
        ]
    );
}

#[test]
fn a_leader_that_is_a_replica_takes_its_turn_and_hands_on_the_next_in_the_same_hook() {
    // Arrange: the leader (0) is an asynchronous replica, 1 the primary, 2 a quorum standby;
    // all on 4.1.5, the config wants 4.1.6; Patroni answers 4.1.6 once restarted.
    let pending = "Patroni 4.1.5 -> 4.1.6";
    let mut st = unit(0, "", &[(1, "4.1.5", pending), (2, "4.1.5", pending)]);
    st.machine = host("4.1.5", Some("4.1.6"), ON_4_1_5)
        .respond_times(
            &["curl", "https://127.0.0.1:8008/cluster"],
            CmdOutput::ok(format!(
                "{}\n200",
                cluster_json(&[
                    (0, "replica", "streaming", Some(0)),
                    (1, "leader", "running", None),
                    (2, "quorum_standby", "streaming", Some(0)),
                ])
            )),
            1000,
        )
        .respond_times(
            &[
                "etcdctl",
                "--endpoints=https://127.0.0.1:2379",
                "--cacert=/etc/postgresql-ha/tls/ca.pem",
                "--cert=/etc/postgresql-ha/tls/unit.pem",
                "--key=/etc/postgresql-ha/tls/unit.key",
                "get",
            ],
            CmdOutput::ok(
                serde_json::json!({"leader": "postgresql-ha-1", "sync_standby": "postgresql-ha-2", "quorum": 0})
                    .to_string()
                    + "\n",
            ),
            1000,
        );
    // Act.
    let out = harness().run_ok(Trigger::ConfigChanged, &st);
    // Assert: it restarted itself on 4.1.6 and gave the turn to 2 (the primary, 1, last).
    assert!(ran(&out, |l| l == "systemctl stop postgresql-ha-patroni"));
    assert!(ran(&out, |l| l.starts_with(PIP)
        && l.contains("patroni[etcd3]==4.1.6")));
    let app = &out
        .state
        .relation_on("database-peers")
        .unwrap()
        .local_app_data;
    assert_fields(app, &[("upgrade-turn", "postgresql-ha/2")]);
    let mine = &out
        .state
        .relation_on("database-peers")
        .unwrap()
        .local_unit_data;
    assert_fields(mine, &[("patroni-version", "4.1.6")]);
}
