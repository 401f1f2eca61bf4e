//! Deb installs, the seed's way: local_config_set, leader-only dbupgrade before others start
//! regiond, edit_named_options once per unit, apache2 out of haproxy's way.

mod common;

use charm_lib::machine::CmdOutput;
use charm_lib::testing::{Service, State, Trigger};
use charm_lib::{FileOptions, Status, StatusKind};
use common::*;

fn deb(st: State) -> State {
    let mut st = st.with_config("install-method", "deb");
    // The packages' postinst starts apache2 on port 80.
    st.machine.services.insert(
        "apache2.service".into(),
        Service {
            active: true,
            enabled: true,
        },
    );
    st
}

fn set_db() -> String {
    format!("maas-region local_config_set --database-host 10.0.0.5 --database-port 5432 --database-name maas --database-user maas --database-pass {DB_PASSWORD}")
}

#[test]
fn leader_installs_configures_migrates_and_starts_in_order() {
    let st = deb(fresh_leader().with_relation(vip("10.0.0.100")));
    let out = harness(0).run_ok(Trigger::ConfigChanged, &st);
    let set_db = set_db();
    assert_eq!(
        out.command_lines(),
        [
            "apt-get install -y --no-install-recommends maas-region-api maas-dns",
            "systemctl stop maas-regiond",
            "apt-get install -y --no-install-recommends haproxy",
            "hostname",
            "systemctl is-active --quiet apache2",
            "systemctl stop apache2",
            "systemctl disable apache2",
            "haproxy -c -f /etc/haproxy/haproxy.cfg.candidate",
            "systemctl enable haproxy",
            "systemctl is-active --quiet haproxy",
            "systemctl start haproxy",
            set_db.as_str(),
            "maas-region local_config_set --maas-url http://10.0.0.100/MAAS",
            "maas-region local_config_set --database-keepalive-idle 3 --database-keepalive-interval 1 --database-keepalive-count 3",
            "maas-region dbupgrade",
            "maas-region edit_named_options --migrate-conflicting-options",
            "systemctl restart bind9",
            "systemctl enable maas-regiond",
            "systemctl is-active --quiet maas-regiond",
            "systemctl start maas-regiond",
            "timeout 30 sh -c until test -s /var/lib/maas/secret; do sleep 0.5; done; cat /var/lib/maas/secret",
            // The charm's own administrator: MAAS already has it here (apikey answers).
            "maas-region apikey --username maas-admin-internal",
            "timeout 30 sh -c until curl -s -o /dev/null -f --max-time 3 http://127.0.0.1:5240/MAAS/rpc/ && curl -s -o /dev/null -f --max-time 3 http://127.0.0.1/MAAS/rpc/; do sleep 1; done",
        ]
    );
    assert_eq!(
        out.state.relation(PEERS).unwrap().local_app_data["migrations-done"],
        "maas@10.0.0.5:5432"
    );
    assert!(
        !out.state.machine.is_active("apache2.service")
            && !out.state.machine.services["apache2.service"].enabled
    );
    assert_eq!(
        out.state.unit_status,
        Status::active("serving http://10.0.0.100/MAAS")
    );
    assert!(!out.mentions(DB_PASSWORD));
}

#[test]
fn deb_source_is_added_before_the_packages() {
    let out = harness(0)
        .run(
            Trigger::Install,
            &deb(fresh_leader()).with_config("deb-source", "ppa:maas/3.5"),
        )
        .unwrap();
    assert_eq!(
        out.command_lines()[..3],
        [
            "add-apt-repository -y ppa:maas/3.5",
            "apt-get update",
            "apt-get install -y --no-install-recommends maas-region-api maas-dns"
        ]
    );
    let line = "deb http://ppa.launchpad.net/maas/3.5/ubuntu jammy main";
    let out = harness(0)
        .run(
            Trigger::Install,
            &deb(fresh_leader()).with_config("deb-source", line),
        )
        .unwrap();
    assert_eq!(
        out.state
            .machine
            .text("/etc/apt/sources.list.d/maas-region.list")
            .unwrap(),
        format!("{line}\n")
    );
    assert_eq!(
        out.command_lines()[..2],
        [
            "apt-get update",
            "apt-get install -y --no-install-recommends maas-region-api maas-dns"
        ]
    );
}

fn deb_follower(migrated: Option<&str>) -> State {
    let rel = peers(&[(0, "10.0.0.10")]);
    let rel = match migrated {
        Some(m) => rel.local_app_data(&[
            ("maas-url", "http://10.0.0.100/MAAS"),
            ("migrations-done", m),
        ]),
        None => rel.local_app_data(&[("maas-url", "http://10.0.0.100/MAAS")]),
    };
    let mut st = deb(State::default()
        .with_relation(rel)
        .with_relation(pgsql("10.0.0.5", "maas-region/1"))
        .with_secret(db_secret()));
    st.network.address = "10.0.0.11".into();
    st.machine = hostname(st.machine, 1);
    st
}

#[test]
fn other_units_start_regiond_only_after_the_leaders_migrations() {
    let h = harness(1);
    let out = h.run(Trigger::ConfigChanged, &deb_follower(None)).unwrap();
    assert_eq!(
        out.state.unit_status,
        Status::waiting("waiting for the leader to run the database migrations")
    );
    assert!(!out.command_lines().iter().any(|c| c.contains("dbupgrade")
        || c.contains("start maas-regiond")
        || c.contains("edit_named_options")));
    assert!(!out
        .state
        .relation(PEERS)
        .unwrap()
        .local_app_data
        .contains_key("migrations-done"));

    let out = h
        .run(
            Trigger::ConfigChanged,
            &deb_follower(Some("maas@10.0.0.5:5432")),
        )
        .unwrap();
    assert!(
        !out.command_lines().iter().any(|c| c.contains("dbupgrade")),
        "only the leader migrates"
    );
    assert!(out
        .command_lines()
        .contains(&"maas-region edit_named_options --migrate-conflicting-options".to_string()));
    assert!(out.state.machine.is_active("maas-regiond.service"));
    assert_eq!(
        out.state.unit_status,
        Status::active("serving http://10.0.0.100/MAAS")
    );
}

#[test]
fn migrations_of_another_database_do_not_count() {
    let out = harness(1)
        .run(
            Trigger::ConfigChanged,
            &deb_follower(Some("maas@10.0.0.9:5432")),
        )
        .unwrap();
    assert_eq!(
        out.state.unit_status,
        Status::waiting("waiting for the leader to run the database migrations")
    );
}

#[test]
fn deb_hooks_are_idempotent_and_named_options_move_once() {
    let h = harness(0);
    let first = h.run(Trigger::ConfigChanged, &deb(fresh_leader())).unwrap();
    let mut st = first.state.clone();
    st.machine = st
        .machine
        .with_file(
            DEB_CONF,
            &regiond_conf("10.0.0.5", "http://10.0.0.10:5240/MAAS"),
            FileOptions::new("root", "maas", 0o640),
        )
        .with_file(
            DEB_SECRET,
            SHARED_SECRET,
            FileOptions::new("root", "maas", 0o640),
        );
    let second = h.run(Trigger::ConfigChanged, &st).unwrap();
    assert!(mutating(&second).is_empty(), "{:?}", mutating(&second));
    let third = h.run(Trigger::UpdateStatus, &second.state).unwrap();
    assert_eq!(settled(&third.state), settled(&second.state));
    assert!(mutating(&third).is_empty());
}

#[test]
fn a_moved_database_rewrites_regiond_conf_and_restarts_regiond() {
    let h = harness(0);
    let first = h.run(Trigger::ConfigChanged, &deb(fresh_leader())).unwrap();
    let mut st = first.state.clone();
    st.machine = st.machine.with_file(
        DEB_CONF,
        &regiond_conf("10.0.0.5", "http://10.0.0.10:5240/MAAS"),
        FileOptions::new("root", "maas", 0o640),
    );
    st.relations.retain(|r| r.id != DB);
    let st = st.with_relation(pgsql("10.0.0.6", "maas-region/0"));
    let out = h.run(Trigger::RelationChanged(DB, Some(0)), &st).unwrap();
    assert_eq!(
        mutating(&out),
        [
            set_db().replace("10.0.0.5", "10.0.0.6"),
            "maas-region dbupgrade".into(),
            "systemctl restart maas-regiond".into()
        ]
    );
    assert_eq!(
        out.state.relation(PEERS).unwrap().local_app_data["migrations-done"],
        "maas@10.0.0.6:5432"
    );
}

#[test]
fn a_deb_database_that_goes_away_stops_regiond() {
    let first = harness(0)
        .run(Trigger::ConfigChanged, &deb(fresh_leader()))
        .unwrap();
    let out = harness(0)
        .run(Trigger::RelationBroken(DB), &first.state)
        .unwrap();
    assert_eq!(mutating(&out), ["systemctl stop maas-regiond"]);
    assert_eq!(
        out.state.unit_status,
        Status::waiting("waiting for database")
    );
}

#[test]
fn failed_migrations_block_with_the_message_and_publish_nothing() {
    let mut st = deb(fresh_leader());
    st.machine = st.machine.respond(
        &["maas-region", "dbupgrade"],
        CmdOutput::failed(
            1,
            concat!(
                "Traceback (most recent call last):\n",
                "  File \"/usr/lib/python3/dist-packages/maasserver/management/commands/dbupgrade.py\", line 98, in handle\n",
                "    conn.ensure_connection()\n",
                "django.db.utils.OperationalError: connection to server at \"10.0.0.5\", port 5432 failed: FATAL:  database \"maas\" does not exist\n",
            ),
        ),
    );
    let out = harness(0).run_ok(Trigger::ConfigChanged, &st);
    assert_eq!(out.state.unit_status.kind, StatusKind::Blocked);
    assert_eq!(
        out.state.unit_status.message,
        "maas-region dbupgrade failed: connection to server at \"10.0.0.5\", port 5432 failed: FATAL:  database \"maas\" does not exist",
        "MAAS's reason, not its traceback"
    );
    assert!(!out
        .state
        .relation(PEERS)
        .unwrap()
        .local_app_data
        .contains_key("migrations-done"));
    assert!(!out.state.machine.is_active("maas-regiond.service"));
}

#[test]
fn migrations_against_an_unreachable_database_leave_the_leader_waiting_with_maas_reason() {
    let mut st = deb(fresh_leader());
    st.machine = st.machine.respond(
        &["maas-region", "dbupgrade"],
        // Captured from the stand-in (tests/fixtures/README.md).
        CmdOutput::failed(1, include_str!("fixtures/deb-dbupgrade-db-refused.stderr")),
    );
    let out = harness(0).run_ok(Trigger::ConfigChanged, &st);
    assert_eq!(
        out.state.unit_status,
        Status::waiting("maas-region dbupgrade could not reach the database (connection to server at \"10.0.0.5\", port 5432 failed: Connection refused); retried at the next hook")
    );
    assert!(
        out.status_history
            .iter()
            .all(|s| !matches!(s.kind, StatusKind::Blocked | StatusKind::Active)),
        "{:?}",
        out.status_history
    );
    assert!(!out
        .state
        .relation(PEERS)
        .unwrap()
        .local_app_data
        .contains_key("migrations-done"));
    assert!(!out.state.machine.is_active("maas-regiond.service"));
}

#[test]
fn without_haproxy_apache2_is_left_alone() {
    let out = harness(0)
        .run(
            Trigger::ConfigChanged,
            &deb(fresh_leader()).with_config("haproxy", false),
        )
        .unwrap();
    assert!(out.state.machine.is_active("apache2.service"));
    assert!(!out
        .command_lines()
        .iter()
        .any(|c| c.contains("apache2") || c.contains("haproxy")));
}

#[test]
fn a_garbled_flag_in_charm_state_blocks_naming_the_key_and_installs_nothing() {
    // Arrange: a unit whose charm state says "deb-installed" is neither "yes" nor absent
    // (it used to read as not installed, silently).
    let mut st = deb(fresh_leader());
    st.stored.insert("installed-method".into(), "deb".into());
    st.stored.insert("deb-installed".into(), "maybe".into());

    // Act
    let out = harness(0).run_ok(Trigger::ConfigChanged, &st);

    // Assert: nothing is installed or stored, and the status names the key.
    assert!(
        !out.command_lines().iter().any(|l| l.starts_with("apt-get")),
        "{:#?}",
        out.command_lines()
    );
    assert_eq!(out.state.stored, st.stored);
    assert_eq!(out.state.unit_status.kind, StatusKind::Blocked);
    assert!(
        out.state
            .unit_status
            .message
            .starts_with("unusable charm state: key \"deb-installed\": \"maybe\""),
        "{:?}",
        out.state.unit_status
    );
}

#[test]
fn a_deb_region_without_the_keepalive_gets_it_with_one_restart_and_then_nothing() {
    let h = harness(0);
    let first = h.run(Trigger::ConfigChanged, &deb(fresh_leader())).unwrap();
    let mut st = first.state.clone();
    // As an earlier revision of the charm left it: MAAS's defaults (no keys).
    st.machine = st.machine.with_file(
        DEB_CONF,
        &regiond_conf_without_keepalive("10.0.0.5", "http://10.0.0.10:5240/MAAS"),
        FileOptions::new("root", "maas", 0o640),
    );
    let out = h.run(Trigger::UpdateStatus, &st).unwrap();
    assert_eq!(
        mutating(&out),
        [
            "maas-region local_config_set --database-keepalive-idle 3 --database-keepalive-interval 1 --database-keepalive-count 3",
            "systemctl restart maas-regiond"
        ]
    );
    // What local_config_set wrote: the next hook has nothing to do.
    let mut st = out.state.clone();
    st.machine = st.machine.with_file(
        DEB_CONF,
        &regiond_conf("10.0.0.5", "http://10.0.0.10:5240/MAAS"),
        FileOptions::new("root", "maas", 0o640),
    );
    let again = h.run(Trigger::UpdateStatus, &st).unwrap();
    assert!(mutating(&again).is_empty(), "{:?}", mutating(&again));
}
