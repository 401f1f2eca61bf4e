//! etcd membership while units join: the leader admits the next unit as a learner even when
//! etcd needs a few seconds before it accepts another member change.

mod common;

use charm_lib::testing::{State, Trigger};
use charm_lib::CmdOutput;
use common::*;

const ADD: [&str; 7] = [
    "etcdctl",
    "--endpoints=https://127.0.0.1:2379",
    "--cacert=/etc/postgresql-ha/tls/ca.pem",
    "--cert=/etc/postgresql-ha/tls/unit.pem",
    "--key=/etc/postgresql-ha/tls/unit.key",
    "member",
    "add",
];
/// What etcd 3.4 answers a member change within 5 s of the previous one (its health interval).
const UNHEALTHY: &str = "{\"level\":\"warn\",\"msg\":\"retrying of unary invoker failed\"}\nError: etcdserver: unhealthy cluster";

/// The leader of three units whose etcd has two voters (units 0 and 1, the second just
/// promoted) and unit 2 waiting to be admitted.
fn leader_with_unit_2_to_admit() -> State {
    let mut st = State::default()
        .leader()
        .with_relation(peers(&[0, 1], &[1, 2]))
        .with_secret(sys_secret())
        .with_secret(ca_secret());
    st.machine = with_etcd_members(
        with_cluster(
            installed_host(),
            &[
                (0, "leader", "running", None),
                (1, "replica", "streaming", Some(0)),
            ],
        ),
        &[(0, 0xa0, false), (1, 0xb1, false)],
    );
    st
}

fn adds(lines: &[String]) -> usize {
    lines.iter().filter(|l| l.contains("member add")).count()
}

fn members(st: &State) -> serde_json::Value {
    serde_json::from_str(&st.relation(1).unwrap().local_app_data["etcd-members"]).unwrap()
}

#[test]
fn etcd_refusing_a_new_member_for_a_few_seconds_makes_the_leader_wait_not_fail() {
    // Arrange: etcd answers "unhealthy cluster" twice (as within 5 s of a promotion), then adds.
    let mut st = leader_with_unit_2_to_admit();
    st.machine = st
        .machine
        .respond_times(&ADD, CmdOutput::failed(1, UNHEALTHY), 2);

    // Act
    let out = harness().run_ok(Trigger::RelationChanged(1, Some(2)), &st);

    // Assert: no hook error; three tries a second apart; the unit is admitted.
    let lines = out.command_lines();
    assert_eq!(adds(&lines), 3, "{lines:#?}");
    let tries: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| l.contains("member add") || l.starts_with("sleep"))
        .collect();
    let add = "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/postgresql-ha/tls/ca.pem --cert=/etc/postgresql-ha/tls/unit.pem --key=/etc/postgresql-ha/tls/unit.key member add postgresql-ha-2 --peer-urls=https://10.0.0.12:2380 --learner --command-timeout=5s";
    assert_eq!(tries, [add, "sleep 1", add, "sleep 1", add]);
    assert_eq!(
        members(&out.state),
        serde_json::json!({"postgresql-ha-0": "10.0.0.10", "postgresql-ha-1": "10.0.0.11", "postgresql-ha-2": "10.0.0.12"})
    );
    assert!(logged(&out, "unhealthy cluster"), "{:?}", out.logs);
}

#[test]
fn etcd_staying_unhealthy_fails_the_hook_after_bounded_tries_so_juju_retries_it() {
    // Arrange: etcd keeps refusing.
    let mut st = leader_with_unit_2_to_admit();
    st.machine = st
        .machine
        .respond_times(&ADD, CmdOutput::failed(1, UNHEALTHY), 1000);

    // Act
    let out = harness()
        .run(Trigger::RelationChanged(1, Some(2)), &st)
        .unwrap();

    // Assert: a bounded number of tries, then an error naming etcd's answer; nothing recorded.
    assert!(out.failed());
    let lines = out.command_lines();
    assert_eq!(adds(&lines), 30, "{lines:#?}");
    assert_eq!(lines.iter().filter(|l| *l == "sleep 1").count(), 29);
    let err = format!("{:?}", out.error);
    assert!(err.contains("unhealthy cluster"), "{err}");
    assert_eq!(members(&out.state), members(&st), "nothing admitted");
}

#[test]
fn any_other_refusal_of_a_new_member_fails_at_once() {
    // Arrange
    let mut st = leader_with_unit_2_to_admit();
    st.machine = st.machine.respond_times(
        &ADD,
        CmdOutput::failed(1, "Error: etcdserver: Peer URLs already exists"),
        1,
    );

    // Act
    let out = harness()
        .run(Trigger::RelationChanged(1, Some(2)), &st)
        .unwrap();

    // Assert
    assert!(out.failed());
    let lines = out.command_lines();
    assert_eq!(adds(&lines), 1, "{lines:#?}");
    assert!(!lines.iter().any(|l| l.starts_with("sleep")), "{lines:#?}");
    assert!(format!("{:?}", out.error).contains("Peer URLs already exists"));
}

#[test]
fn a_garbled_member_list_blocks_naming_the_key_and_never_bootstraps_a_new_etcd() {
    // Arrange: the leader of a running application whose peer app databag lost its JSON.
    let mut peer = peers(&[0, 1], &[1]);
    peer.local_app_data
        .insert("etcd-members".into(), r#"{"postgresql-ha-0":"10.0"#.into());
    let mut st = State::default()
        .leader()
        .with_relation(peer)
        .with_secret(sys_secret())
        .with_secret(ca_secret());
    st.machine = patroni_down(installed_host());

    // Act
    let out = harness().run_ok(Trigger::UpdateStatus, &st);

    // Assert: the databag is left as it was, no etcd configuration is written or started,
    // and the status names the key.
    let before = &st.relation(1).unwrap().local_app_data;
    assert_eq!(&out.state.relation(1).unwrap().local_app_data, before);
    assert!(
        !out.state
            .machine
            .files
            .contains_key(std::path::Path::new("/etc/postgresql-ha/etcd.conf.yml")),
        "no etcd configuration may be rendered from an empty member list"
    );
    assert!(!ran(&out, |l| l.contains("etcd") && l.contains("start")));
    assert_eq!(out.state.unit_status.kind, charm_lib::StatusKind::Blocked);
    assert!(
        out.state.unit_status.message.contains("\"etcd-members\""),
        "{:?}",
        out.state.unit_status
    );
}
