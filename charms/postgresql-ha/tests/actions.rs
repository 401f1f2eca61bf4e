//! Actions: results and refusals.

mod common;

use charm_lib::testing::{Output, State, Trigger};
use charm_lib::CmdOutput;
use common::*;
use serde_json::json;

fn three_units(m: charm_lib::testing::MachineState) -> State {
    let mut st = State::default()
        .leader()
        .with_relation(peers(&[0, 1, 2], &[1, 2]))
        .with_secret(sys_secret())
        .with_secret(ca_secret());
    st.machine = with_cluster(
        m,
        &[
            (0, "leader", "running", None),
            (1, "sync_standby", "streaming", Some(0)),
            (2, "replica", "streaming", Some(4096)),
        ],
    );
    st
}

fn act(name: &str, params: serde_json::Value, st: &State) -> Output {
    harness()
        .run(Trigger::Action(name.into(), params), st)
        .unwrap()
}

/// Why the action failed; panics when it succeeded.
fn refusal(out: &Output) -> &str {
    out.action.failed.as_deref().expect("the action failed")
}

#[test]
fn get_primary_names_the_unit_and_its_address() {
    let out = act("get-primary", json!({}), &three_units(installed_host()));
    assert_eq!(out.action.failed, None);
    assert_eq!(out.action.results["primary"], "postgresql-ha/0");
    assert_eq!(out.action.results["address"], "10.0.0.10");
}

#[test]
fn get_primary_refuses_clearly_without_patroni_or_primary() {
    let mut st = three_units(installed_host());
    st.machine = patroni_down(installed_host());
    let out = act("get-primary", json!({}), &st);
    assert!(refusal(&out).contains("Patroni on this unit does not answer"));
    st.machine = with_cluster(
        installed_host(),
        &[
            (0, "replica", "running", None),
            (1, "replica", "streaming", None),
        ],
    );
    let out = act("get-primary", json!({}), &st);
    assert!(refusal(&out).contains("no running primary"));
    assert!(!out.failed(), "an action failure does not error the unit");
}

#[test]
fn list_members_shows_role_state_lag_and_timeline() {
    let out = act("list-members", json!({}), &three_units(installed_host()));
    let r = &out.action.results;
    assert_fields(
        r,
        &[
            ("count", "3"),
            ("members.postgresql-ha-0.role", "primary"),
            ("members.postgresql-ha-1.role", "sync-standby"),
            ("members.postgresql-ha-2.role", "replica"),
            ("members.postgresql-ha-2.lag-bytes", "4096"),
            ("members.postgresql-ha-2.state", "streaming"),
            ("members.postgresql-ha-1.timeline", "3"),
            ("members.postgresql-ha-1.unit", "postgresql-ha/1"),
        ],
    );
}

#[test]
fn switchover_to_a_synchronous_standby_asks_patroni() {
    let st = three_units(installed_host().respond(
        &["curl", "https://127.0.0.1:8008/switchover"],
        CmdOutput::ok("Successfully switched over to \"postgresql-ha-1\"\n200"),
    ));
    for params in [json!({"candidate": "postgresql-ha/1"}), json!({})] {
        let out = act("switchover", params.clone(), &st);
        assert_eq!(out.action.failed, None, "{params}");
        assert_eq!(out.action.results["primary"], "postgresql-ha/1");
        assert_eq!(out.action.results["previous-primary"], "postgresql-ha/0");
        let post = out
            .command_lines()
            .into_iter()
            .find(|l| l.contains("/switchover"))
            .unwrap();
        assert!(
            post.contains("-X POST")
                && post.contains(r#"{"candidate":"postgresql-ha-1","leader":"postgresql-ha-0"}"#),
            "{post}"
        );
        assert!(!post.contains(REST_PW));
    }
}

#[test]
fn switchover_refuses_a_non_synchronous_or_unknown_target() {
    let st = three_units(installed_host());
    let out = act("switchover", json!({"candidate": "postgresql-ha/2"}), &st);
    let msg = out.action.failed.clone().unwrap();
    assert!(
        msg.contains("postgresql-ha/2 is not a synchronous standby")
            && msg.contains("synchronous standbys: postgresql-ha/1"),
        "{msg}"
    );
    assert!(
        !ran(&out, |l| l.contains("/switchover")),
        "nothing asked of Patroni"
    );
    let out = act("switchover", json!({"candidate": "postgresql-ha/7"}), &st);
    assert!(refusal(&out).contains("postgresql-ha/7 is not a member of the cluster"));
    let out = act("switchover", json!({"candidate": "postgresql-ha/0"}), &st);
    assert!(refusal(&out).contains("already the primary"));
    let mut lonely = st.clone();
    lonely.machine = with_cluster(
        installed_host(),
        &[
            (0, "leader", "running", None),
            (2, "replica", "streaming", Some(1)),
        ],
    );
    let out = act("switchover", json!({}), &lonely);
    assert!(refusal(&out).contains("no synchronous standby"));
}

#[test]
fn switchover_reports_patroni_refusal() {
    let st = three_units(installed_host().respond(
        &["curl", "https://127.0.0.1:8008/switchover"],
        CmdOutput::ok("candidate name does not match with sync_standby\n412"),
    ));
    let out = act("switchover", json!({"candidate": "postgresql-ha/1"}), &st);
    assert_eq!(out.action.failed.as_deref(), Some("Patroni refused the switchover (HTTP 412): candidate name does not match with sync_standby"));
}

/// force-promote, with or without the data-loss confirmation.
fn force_promote(confirmed: bool, st: &State) -> Output {
    act(
        "force-promote",
        json!({"i-understand-data-loss": confirmed}),
        st,
    )
}

/// set-password for `username` with an explicit new `password`.
fn set_password(username: &str, password: &str, st: &State) -> Output {
    act(
        "set-password",
        json!({"username": username, "password": password}),
        st,
    )
}

/// The leader of two units, its Patroni not answering.
fn two_units_patroni_down() -> State {
    let mut st = State::default()
        .leader()
        .with_relation(peers(&[0, 1], &[1]))
        .with_secret(sys_secret())
        .with_secret(ca_secret());
    st.machine = patroni_down(installed_host());
    st
}

fn lose_quorum(st: &mut State) {
    st.machine = quorum_lost(st.machine.clone());
}

#[test]
fn force_promote_needs_confirmation_leadership_and_a_lost_quorum() {
    let st = two_units_patroni_down();
    let out = force_promote(false, &st);
    assert!(refusal(&out).starts_with("refused: force-promote can lose writes"));
    let out = force_promote(true, &st);
    assert!(refusal(&out).contains("etcd has quorum: nothing to force"));
    let mut follower = st.clone();
    follower.leader = false;
    lose_quorum(&mut follower);
    let out = force_promote(true, &follower);
    assert!(refusal(&out).contains("run force-promote on the leader unit"));
    assert!(
        out.commands.iter().all(|c| c[0] != "systemctl"),
        "nothing touched"
    );
}

#[test]
fn force_promote_rebuilds_etcd_around_this_unit_and_bumps_the_epoch() {
    let mut st = two_units_patroni_down();
    lose_quorum(&mut st);
    let out = force_promote(true, &st);
    assert_eq!(out.action.failed, None);
    assert_eq!(out.action.results["promoted"], "postgresql-ha/0");
    assert_eq!(out.action.results["etcd-epoch"], "2");
    let lines = out.command_lines();
    // Killed, not stopped gracefully: without a quorum its stop retries etcd (10-60 s).
    let kill = lines
        .iter()
        .position(|l| l == "systemctl kill --signal=SIGKILL postgresql-ha-patroni")
        .unwrap_or_else(|| panic!("Patroni not killed: {lines:#?}"));
    let stop = lines
        .iter()
        .position(|l| l == "systemctl stop postgresql-ha-patroni")
        .unwrap();
    assert!(kill < stop, "{lines:#?}");
    let restarts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| *l == "systemctl restart postgresql-ha-etcd")
        .map(|(i, _)| i)
        .collect();
    let start = lines
        .iter()
        .position(|l| l == "systemctl start postgresql-ha-patroni")
        .unwrap();
    assert_eq!(
        restarts.len(),
        2,
        "once with force-new-cluster, once without: {lines:#?}"
    );
    assert!(stop < restarts[0] && restarts[1] < start);
    // The lost primary's lock goes before Patroni starts, so it need not wait a whole TTL.
    let del = lines
        .iter()
        .position(|l| {
            l.contains("etcdctl") && l.contains(" del /postgresql-ha/postgresql-ha/leader")
        })
        .unwrap_or_else(|| panic!("no leader key deletion: {lines:#?}"));
    assert!(restarts[1] < del && del < start, "{lines:#?}");
    let etcd = etcd_yml(&out.state);
    assert!(
        etcd.get("force-new-cluster").is_none(),
        "the force flag must not stay"
    );
    assert_eq!(
        etcd["initial-cluster"],
        "postgresql-ha-0=https://10.0.0.10:2380"
    );
    let app = &out.state.relation(1).unwrap().local_app_data;
    assert_eq!(app["etcd-members"], r#"{"postgresql-ha-0":"10.0.0.10"}"#);
    assert_eq!(app["etcd-epoch"], "2");
}

#[test]
fn get_password_by_user() {
    let st = three_units(installed_host());
    for (user, role, pw) in [
        ("superuser", "postgres", SUPER_PW),
        ("replication", "replication", REPL_PW),
        ("rewind", "rewind", REWIND_PW),
    ] {
        let out = act("get-password", json!({"username": user}), &st);
        assert_eq!(out.action.results["password"], pw);
        assert_eq!(out.action.results["username"], role);
        assert!(!out.mentions(pw), "an action result is not a log line");
    }
    let out = act("get-password", json!({}), &st);
    assert_eq!(
        out.action.results["username"], "postgres",
        "superuser by default"
    );
}

#[test]
fn set_password_changes_the_role_then_the_secret_and_tells_the_peers() {
    let st = three_units(installed_host());
    let out = set_password("replication", "NewReplicationPw-2026", &st);
    assert_eq!(out.action.failed, None, "{:?}", out.error);
    assert!(
        ran(&out, |l| l.starts_with("psql -h 10.0.0.10")),
        "ALTER ROLE on the primary"
    );
    assert!(!ran(&out, |l| l.contains("NewReplicationPw-2026")));
    let s = out.state.secret(SYS_SECRET).unwrap();
    assert_eq!(s.latest(), 2);
    assert_eq!(s.latest_content()["replication"], "NewReplicationPw-2026");
    assert_eq!(
        s.latest_content()["superuser"],
        SUPER_PW,
        "the others are kept"
    );
    assert_eq!(
        out.state.relation(1).unwrap().local_app_data["system-revision"],
        "1"
    );
    let p = patroni_yml(&out.state);
    assert_eq!(
        p["postgresql"]["authentication"]["replication"]["password"],
        "NewReplicationPw-2026"
    );
    assert!(!out.mentions("NewReplicationPw-2026"));
    // Generated when omitted.
    let out = act("set-password", json!({"username": "rewind"}), &st);
    let new = out.state.secret(SYS_SECRET).unwrap().latest_content()["rewind"].clone();
    assert!(new.len() == 32 && new != REWIND_PW);
}

#[test]
fn set_password_refusals() {
    let st = three_units(installed_host());
    let mut follower = st.clone();
    follower.leader = false;
    let out = set_password("superuser", "LongEnoughPassword1", &follower);
    assert!(refusal(&out).contains("run set-password on the leader"));
    let out = set_password("superuser", "short", &st);
    assert!(refusal(&out).contains("at least 12 characters"));
    let mut down = st.clone();
    down.machine = with_cluster(installed_host(), &[(1, "replica", "streaming", None)]);
    let out = set_password("superuser", "LongEnoughPassword1", &down);
    assert!(refusal(&out).contains("no running primary"));
    assert_eq!(
        out.state.secret(SYS_SECRET).unwrap().latest(),
        1,
        "secret unchanged"
    );
}

#[test]
fn rotate_certificates_issues_a_new_key_and_reloads_without_a_restart() {
    let mut st = three_units(running(installed_host(), &["postgresql-ha-patroni"]));
    // The certificate the reconcile issued.
    st = harness().run(Trigger::UpdateStatus, &st).unwrap().state;
    let before = st.machine.text("/etc/postgresql-ha/tls/unit.pem").unwrap();
    let key_before = st.machine.text("/etc/postgresql-ha/tls/unit.key").unwrap();
    let out = act("rotate-certificates", json!({}), &st);
    assert_eq!(out.action.failed, None);
    let after = out
        .state
        .machine
        .text("/etc/postgresql-ha/tls/unit.pem")
        .unwrap();
    assert_ne!(after, before);
    assert_ne!(
        out.state
            .machine
            .text("/etc/postgresql-ha/tls/unit.key")
            .unwrap(),
        key_before,
        "a new key"
    );
    assert_eq!(
        out.state
            .machine
            .text("/etc/postgresql-ha/tls/etcd.key")
            .unwrap(),
        out.state
            .machine
            .text("/etc/postgresql-ha/tls/unit.key")
            .unwrap()
    );
    assert_eq!(out.action.results["names"], "10.0.0.10,127.0.0.1,localhost");
    let lines = out.command_lines();
    assert!(
        lines
            .iter()
            .any(|l| l == "systemctl reload postgresql-ha-patroni"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("pg_reload_conf()")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("restart")),
        "no restart: {lines:?}"
    );
}

#[test]
fn pre_upgrade_check_passes_only_when_losing_a_member_keeps_writes() {
    // Arrange: three running members, the quorum /sync key naming both standbys.
    let mut st = three_units(with_sync_key(
        installed_host(),
        json!({"leader": "postgresql-ha-0", "sync_standby": "postgresql-ha-1,postgresql-ha-2", "quorum": 1}),
    ));
    st.machine = with_etcd_members(
        st.machine,
        &[(0, 0xa1, false), (1, 0xa2, false), (2, 0xa3, false)],
    );
    // Act / Assert: ok, naming the primary.
    let out = act("pre-upgrade-check", json!({}), &st);
    assert_eq!(out.action.failed, None);
    assert_eq!(out.action.results["result"], "ok");
    assert_eq!(out.action.results["primary"], "postgresql-ha/0");

    // A member not streaming: refused, naming it.
    let mut fresh = State::default()
        .leader()
        .with_relation(peers(&[0, 1, 2], &[1, 2]))
        .with_secret(sys_secret())
        .with_secret(ca_secret());
    fresh.machine = with_cluster(
        with_sync_key(
            installed_host(),
            json!({"leader": "postgresql-ha-0", "sync_standby": "postgresql-ha-1,postgresql-ha-2", "quorum": 1}),
        ),
        &[
            (0, "leader", "running", None),
            (1, "sync_standby", "streaming", Some(0)),
            (2, "replica", "stopped", None),
        ],
    );
    let out = act("pre-upgrade-check", json!({}), &fresh);
    let why = refusal(&out);
    assert!(why.starts_with("not safe to upgrade now"), "{why}");
    assert!(why.contains("postgresql-ha/2 is stopped"), "{why}");

    // During a roll: ok, and it names the units still to go (a report from before the
    // config change counts as pending) and whose turn it is.
    let mut rolling = st.clone().with_config("patroni-version", "4.1.6");
    let rel = rolling
        .relations
        .iter_mut()
        .find(|r| r.endpoint == "database-peers")
        .unwrap();
    rel.local_app_data
        .insert("upgrade-turn".into(), "postgresql-ha/2".into());
    for (n, version) in [(1, "4.1.6"), (2, "4.1.5")] {
        rel.remote_units
            .get_mut(&n)
            .unwrap()
            .insert("patroni-version".into(), version.into());
    }
    let out = act("pre-upgrade-check", json!({}), &rolling);
    assert_eq!(out.action.failed, None);
    assert_eq!(
        out.action.results["upgrading"],
        "postgresql-ha/2 (Patroni 4.1.5 -> 4.1.6)"
    );
    assert_eq!(out.action.results["turn"], "postgresql-ha/2");
}
