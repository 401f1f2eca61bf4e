//! Install, bootstrap, etcd membership, configuration, status, idempotency.

mod common;

use charm_lib::testing::{State, Trigger};
use charm_lib::{CmdOutput, FileOptions, Status, StatusKind};
use common::*;

/// The first unit's leader before install: an empty peer relation.
fn new_leader() -> State {
    State::default()
        .leader()
        .with_relation(charm_lib::testing::Relation::peer(1, "database-peers"))
}

#[test]
fn install_gets_packages_patroni_in_a_venv_and_silences_the_distribution_services() {
    let mut st = new_leader();
    st.machine = host_with_postgres();
    let out = harness().run_ok(Trigger::Install, &st);
    for p in ["postgresql", "etcd-server", "etcd-client", "python3-venv"] {
        assert!(out.state.machine.packages.contains(p), "{p} not installed");
    }
    let lines = out.command_lines();
    assert!(
        lines.contains(&"/usr/bin/python3 -m venv /opt/postgresql-ha/venv".to_string()),
        "{lines:#?}"
    );
    let pip = find_command(
        &out,
        |l| l.starts_with("/opt/postgresql-ha/venv/bin/pip install"),
        "pip ran",
    );
    assert!(
        pip.ends_with("patroni[etcd3]==4.1.5 psycopg2-binary"),
        "{pip}"
    );
    assert!(!pip.contains("--no-index"), "no wheelhouse attached: PyPI");
    for svc in ["postgresql", "postgresql@15-main", "etcd"] {
        assert!(
            lines.contains(&format!("systemctl disable {svc}")),
            "{svc} not disabled: {lines:#?}"
        );
    }
    assert!(out
        .state
        .machine
        .text("/etc/postgresql-common/createcluster.conf")
        .unwrap()
        .contains("create_main_cluster = false"));
    assert_eq!(
        out.state
            .machine
            .text("/opt/postgresql-ha/installed")
            .as_deref(),
        Some("patroni==4.1.5\npackages=2\n")
    );
    // A second run does not reinstall.
    let again = harness().run(Trigger::Install, &out.state).unwrap();
    assert!(
        !ran(&again, |l| l.contains("pip install")
            || l.starts_with("apt-get")),
        "{:#?}",
        again.command_lines()
    );
}

#[test]
fn an_existing_default_cluster_is_stopped_and_never_autostarts() {
    let mut st = new_leader();
    st.machine = host_with_postgres().with_file(
        "/etc/postgresql/15/main/start.conf",
        "auto\n",
        FileOptions::new("postgres", "postgres", 0o644),
    );
    let out = harness().run_ok(Trigger::Install, &st);
    assert!(out
        .state
        .machine
        .text("/etc/postgresql/15/main/start.conf")
        .unwrap()
        .ends_with("\nmanual\n"));
    assert!(out
        .command_lines()
        .contains(&"pg_ctlcluster 15 main stop".to_string()));
}

#[test]
fn a_wheelhouse_resource_installs_patroni_offline() {
    let mut st = new_leader();
    st.resources.insert(
        "wheelhouse".into(),
        "/var/lib/juju/resources/wheelhouse.tar.gz".into(),
    );
    st.machine = host_with_postgres().respond(
        &["find", "/opt/postgresql-ha/wheelhouse"],
        CmdOutput::ok(
            "/opt/postgresql-ha/wheelhouse/wheels\n/opt/postgresql-ha/wheelhouse/wheels\n",
        ),
    );
    let out = harness().run_ok(Trigger::Install, &st);
    let lines = out.command_lines();
    assert!(lines.contains(
        &"tar -xzf /var/lib/juju/resources/wheelhouse.tar.gz -C /opt/postgresql-ha/wheelhouse"
            .to_string()
    ));
    let pip = lines.iter().find(|l| l.contains("pip install")).unwrap();
    assert!(
        pip.contains(
            "--no-index --find-links /opt/postgresql-ha/wheelhouse/wheels patroni[etcd3]==4.1.5"
        ),
        "{pip}"
    );
}

#[test]
fn a_broken_wheelhouse_falls_back_to_the_index() {
    let mut st = new_leader();
    st.resources
        .insert("wheelhouse".into(), "/r/wheelhouse.tar.gz".into());
    st.machine = host_with_postgres().respond(
        &["tar"],
        CmdOutput::failed(2, "gzip: stdin: unexpected end of file"),
    );
    let out = harness().run_ok(Trigger::Install, &st);
    assert!(!ran(&out, |l| l.contains("--no-index")));
    assert!(logged(&out, "could not be unpacked"));
}

#[test]
fn the_first_leader_generates_passwords_and_bootstraps_a_one_member_etcd() {
    let mut st = new_leader();
    st.machine = patroni_down(installed_host());
    let out = harness().run_ok(Trigger::LeaderElected, &st);
    let peer = out.state.relation(1).unwrap();
    let id = peer.local_app_data["system-secret"].clone();
    let secret = out.state.secret(&id).expect("secret created");
    assert_eq!(secret.label.as_deref(), Some("system-passwords"));
    let content = secret.latest_content().clone();
    for k in ["superuser", "replication", "rewind", "patroni"] {
        assert_eq!(content[k].len(), 32, "{k}");
    }
    assert_eq!(
        peer.local_app_data["etcd-members"],
        r#"{"postgresql-ha-0":"10.0.0.10"}"#
    );
    assert_eq!(peer.local_app_data["etcd-bootstrap"], "postgresql-ha-0");
    assert_eq!(peer.local_unit_data["address"], "10.0.0.10");
    assert_eq!(peer.local_unit_data["etcd-started"], "1");
    let etcd = etcd_yml(&out.state);
    assert_eq!(etcd["initial-cluster-state"], "new");
    assert_eq!(
        etcd["initial-cluster"],
        "postgresql-ha-0=https://10.0.0.10:2380"
    );
    assert_eq!(etcd["pre-vote"], true);
    let f = &out.state.machine.files[std::path::Path::new("/etc/postgresql-ha/patroni.yml")];
    assert_eq!(
        (f.options.owner.as_str(), f.options.mode),
        ("postgres", 0o600)
    );
    let p = yaml(&f.text());
    assert_eq!(
        p["postgresql"]["authentication"]["superuser"]["password"].as_str(),
        Some(content["superuser"].as_str())
    );
    assert!(out.state.machine.is_active("postgresql-ha-etcd.service"));
    assert!(out.state.machine.is_active("postgresql-ha-patroni.service"));
    assert_eq!(
        out.state.unit_status,
        Status::waiting("waiting for Patroni to start PostgreSQL")
    );
    for pw in content.values() {
        assert!(!out.mentions(pw), "a password leaked into logs or status");
    }
}

#[test]
fn the_first_leader_creates_the_ca_and_every_unit_its_own_certificate() {
    let mut st = new_leader();
    st.machine = patroni_down(installed_host());
    let out = harness().run_ok(Trigger::LeaderElected, &st);
    let id = out.state.relation(1).unwrap().local_app_data["tls-ca-secret"].clone();
    let ca = out
        .state
        .secret(&id)
        .expect("CA secret created")
        .latest_content()
        .clone();
    assert_eq!(
        out.state.secret(&id).unwrap().label.as_deref(),
        Some("tls-ca")
    );
    let files = &out.state.machine.files;
    let file = |p: &str| {
        files
            .get(std::path::Path::new(p))
            .unwrap_or_else(|| panic!("{p} missing"))
    };
    assert_eq!(file("/etc/postgresql-ha/tls/ca.pem").text(), ca["ca-cert"]);
    let cert = file("/etc/postgresql-ha/tls/unit.pem").text();
    let seen = charm_lib::tls::inspect(&cert, &ca["ca-cert"]).unwrap();
    assert!(seen.signed_by_ca);
    assert_eq!(
        seen.sans.iter().map(String::as_str).collect::<Vec<_>>(),
        ["10.0.0.10", "127.0.0.1", "localhost"]
    );
    // The key: readable by the service that needs it, writable by none of them.
    for (path, group) in [
        ("/etc/postgresql-ha/tls/unit.key", "postgres"),
        ("/etc/postgresql-ha/tls/etcd.key", "etcd"),
    ] {
        let f = file(path);
        assert_eq!(
            (
                f.options.owner.as_str(),
                f.options.group.as_str(),
                f.options.mode
            ),
            ("root", group, 0o640),
            "{path}"
        );
        assert!(f.text().contains("PRIVATE KEY"));
    }
    assert!(
        !out.logs.iter().any(|(_, m)| m.contains("PRIVATE KEY")),
        "no key in the logs"
    );
    assert!(!out
        .state
        .relation(1)
        .unwrap()
        .local_app_data
        .values()
        .any(|v| v.contains("PRIVATE")));

    // A VIP arrives: the certificate is issued again to name it; then nothing changes.
    let mut st2 = out.state.clone();
    st2 = st2.with_relation(
        charm_lib::testing::Relation::new(9, "vip", "keepalived-vip")
            .remote_unit(0, &[("vips", "10.0.0.200"), ("state", "held")]),
    );
    let again = harness()
        .run(Trigger::RelationChanged(9, Some(0)), &st2)
        .unwrap();
    let cert2 = again
        .state
        .machine
        .text("/etc/postgresql-ha/tls/unit.pem")
        .unwrap();
    assert!(charm_lib::tls::inspect(&cert2, &ca["ca-cert"])
        .unwrap()
        .sans
        .contains("10.0.0.200"));
    let third = harness().run(Trigger::UpdateStatus, &again.state).unwrap();
    assert_eq!(
        third
            .state
            .machine
            .text("/etc/postgresql-ha/tls/unit.pem")
            .unwrap(),
        cert2,
        "a certificate that serves is kept"
    );
}

#[test]
fn a_running_primary_is_active_and_says_so() {
    let out = harness().run_ok(Trigger::UpdateStatus, &leader_primary());
    assert_eq!(out.state.unit_status, Status::active("primary"));
    assert_eq!(out.state.app_status.kind, StatusKind::Active);
    assert!(out.state.app_status.message.contains("1 unit"));
    assert_eq!(out.state.workload_version, "15");
}

#[test]
fn patroni_config_for_two_and_three_units_lists_every_member() {
    for n in [2u32, 3] {
        let units: Vec<u32> = (0..n).collect();
        let mut st = State::default()
            .leader()
            .with_relation(peers(&units, &units[1..]))
            .with_secret(sys_secret())
            .with_secret(ca_secret());
        let roles: Vec<M> = units
            .iter()
            .map(|u| {
                if *u == 0 {
                    (0, "leader", "running", None)
                } else {
                    (*u, "sync_standby", "streaming", Some(0))
                }
            })
            .collect();
        st.machine = with_etcd_members(
            with_cluster(installed_host(), &roles),
            &units
                .iter()
                .map(|u| (*u, 0x10 + *u as u64, false))
                .collect::<Vec<_>>(),
        );
        let out = harness().run_ok(Trigger::ConfigChanged, &st);
        let p = patroni_yml(&out.state);
        let hosts: Vec<&str> = strings(&p["etcd3"]["hosts"]);
        assert_eq!(hosts.len(), n as usize);
        let hba: Vec<&str> = strings(&p["postgresql"]["pg_hba"]);
        for u in &units {
            assert!(
                hba.contains(
                    &format!(
                        "hostssl replication replication {}/32 scram-sha-256",
                        addr(*u)
                    )
                    .as_str()
                ),
                "{hba:?}"
            );
        }
        assert_eq!(p["bootstrap"]["dcs"]["synchronous_mode"], "quorum");
        let app = &out.state.app_status.message;
        if n == 2 {
            assert!(
                app.contains("automatic failover needs 3 units") && app.contains("force-promote"),
                "{app}"
            );
        } else {
            assert!(!app.contains("needs 3"), "{app}");
        }
    }
}

#[test]
fn the_leader_admits_one_new_unit_at_a_time_as_an_etcd_learner_then_promotes_it() {
    let mut st = State::default()
        .leader()
        .with_relation(peers(&[0], &[1, 2]))
        .with_secret(sys_secret())
        .with_secret(ca_secret());
    st.machine = with_etcd_members(
        with_cluster(installed_host(), &[(0, "leader", "running", None)]),
        &[(0, 0xa0, false)],
    );
    let out = harness().run_ok(Trigger::RelationChanged(1, Some(1)), &st);
    let adds: Vec<String> = out
        .command_lines()
        .into_iter()
        .filter(|l| l.contains("member add"))
        .collect();
    assert_eq!(adds, ["etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/postgresql-ha/tls/ca.pem --cert=/etc/postgresql-ha/tls/unit.pem --key=/etc/postgresql-ha/tls/unit.key member add postgresql-ha-1 --peer-urls=https://10.0.0.11:2380 --learner --command-timeout=5s"]);
    let members: serde_json::Value =
        serde_json::from_str(&out.state.relation(1).unwrap().local_app_data["etcd-members"])
            .unwrap();
    assert_eq!(
        members,
        serde_json::json!({"postgresql-ha-0": "10.0.0.10", "postgresql-ha-1": "10.0.0.11"})
    );

    // The learner started: promote it, and admit nobody else in the same hook.
    let mut st2 = out.state.clone();
    st2.relations[0]
        .remote_units
        .get_mut(&1)
        .unwrap()
        .insert("etcd-started".into(), "1".into());
    st2.machine = with_etcd_members(
        with_cluster(installed_host(), &[(0, "leader", "running", None)]),
        &[(0, 0xa0, false), (1, 0xb1, true)],
    );
    let out = harness()
        .run(Trigger::RelationChanged(1, Some(1)), &st2)
        .unwrap();
    let lines = out.command_lines();
    assert!(
        lines.iter().any(|l| l.contains("member promote b1")),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("member add")),
        "one member change at a time: {lines:#?}"
    );
}

#[test]
fn an_add_that_already_happened_is_only_recorded() {
    let mut st = State::default()
        .leader()
        .with_relation(peers(&[0], &[1]))
        .with_secret(sys_secret())
        .with_secret(ca_secret());
    st.machine = with_etcd_members(installed_host(), &[(0, 0xa0, false), (1, 0xb1, false)]);
    let out = harness().run(Trigger::ConfigChanged, &st).unwrap();
    assert!(!ran(&out, |l| l.contains("member add")));
    assert!(
        out.state.relation(1).unwrap().local_app_data["etcd-members"].contains("postgresql-ha-1")
    );
}

#[test]
fn a_joining_unit_waits_for_the_leader_then_joins_the_existing_cluster() {
    let mut st = State::default()
        .with_relation(peers(&[0], &[0]))
        .with_secret(sys_secret())
        .with_secret(ca_secret());
    st.network.address = addr(1);
    st.machine = patroni_down(installed_host());
    let out = unit_harness(1).run_ok(Trigger::ConfigChanged, &st);
    assert_eq!(
        out.state.unit_status,
        Status::waiting("waiting for the leader to add this unit to etcd (one unit at a time)")
    );
    assert_eq!(
        out.state.relation(1).unwrap().local_unit_data["address"],
        "10.0.0.11"
    );
    assert!(!out.state.machine.is_active("postgresql-ha-etcd.service"));
    assert!(!out.state.machine.is_active("postgresql-ha-patroni.service"));

    let mut st = out.state.clone();
    st.relations[0] = peers(&[0, 1], &[0]);
    let out = unit_harness(1).run_ok(Trigger::RelationChanged(1, None), &st);
    let etcd = etcd_yml(&out.state);
    assert_eq!(etcd["initial-cluster-state"], "existing");
    assert_eq!(
        etcd["initial-cluster"],
        "postgresql-ha-0=https://10.0.0.10:2380,postgresql-ha-1=https://10.0.0.11:2380"
    );
    assert_eq!(
        out.state.relation(1).unwrap().local_unit_data["etcd-started"],
        "1"
    );
    assert!(out.state.machine.is_active("postgresql-ha-patroni.service"));
}

#[test]
fn the_leader_removes_the_etcd_member_of_a_departed_unit() {
    let mut st = State::default()
        .leader()
        .with_relation(peers(&[0, 1, 2], &[1, 2]))
        .with_secret(sys_secret())
        .with_secret(ca_secret());
    st.machine = with_etcd_members(
        with_cluster(installed_host(), &[(0, "leader", "running", None)]),
        &[(0, 0xa0, false), (1, 0xb1, false), (2, 0xc2, false)],
    );
    let out = harness().run_ok(Trigger::RelationDeparted(1, 2), &st);
    let lines = out.command_lines();
    assert!(
        lines.iter().any(|l| l.contains("member remove c2")),
        "{lines:#?}"
    );
    assert!(!lines
        .iter()
        .any(|l| l.contains("member remove b1") || l.contains("member remove a0")));
    assert!(
        !out.state.relation(1).unwrap().local_app_data["etcd-members"].contains("postgresql-ha-2")
    );
}

#[test]
fn a_departing_unit_hands_over_leaves_etcd_and_stops() {
    let mut st = State::default()
        .with_relation(peers(&[0, 1, 2], &[0, 2]))
        .with_secret(sys_secret())
        .with_secret(ca_secret());
    st.network.address = addr(1);
    st.machine = running(
        with_etcd_members(
            installed_host(),
            &[(0, 0xa0, false), (1, 0xb1, false), (2, 0xc2, false)],
        ),
        &[
            "postgresql-ha-etcd.service",
            "postgresql-ha-patroni.service",
        ],
    );
    let out = unit_harness(1).run_ok(Trigger::RelationDepartedSelf(1, 0), &st);
    let lines = out.command_lines();
    let stop_patroni = lines
        .iter()
        .position(|l| l == "systemctl stop postgresql-ha-patroni")
        .expect("patroni stopped");
    let remove = lines
        .iter()
        .position(|l| l.contains("member remove b1"))
        .expect("left etcd");
    let stop_etcd = lines
        .iter()
        .position(|l| l == "systemctl stop postgresql-ha-etcd")
        .expect("etcd stopped");
    assert!(stop_patroni < remove && remove < stop_etcd, "{lines:#?}");
    // The dying unit's later hooks (client relations broken, stop) must not start anything.
    let later = unit_harness(1).run_ok(Trigger::ConfigChanged, &out.state);
    assert!(
        !later.state.machine.is_active("postgresql-ha-etcd.service")
            && !later
                .state
                .machine
                .is_active("postgresql-ha-patroni.service")
    );
    assert!(later.commands.is_empty(), "{:#?}", later.command_lines());
    assert_eq!(later.state.unit_status.kind, StatusKind::Maintenance);
}

#[test]
fn bad_config_blocks_naming_the_option_and_touches_nothing() {
    let mut st = leader_primary();
    st.machine = running(st.machine, &["postgresql-ha-patroni.service"]);
    for (k, v, needle) in [
        ("ttl", 10, "ttl"),
        ("loop-wait", 15, "loop-wait"),
        ("max-connections", 3, "max-connections"),
    ] {
        let out = harness().run_ok(Trigger::ConfigChanged, &st.clone().with_config(k, v));
        assert_eq!(
            out.state.unit_status.kind,
            StatusKind::Blocked,
            "{k}={v}: {:?}",
            out.state.unit_status
        );
        assert!(
            out.state
                .unit_status
                .message
                .starts_with(&format!("invalid config {needle}:")),
            "{}",
            out.state.unit_status.message
        );
        assert!(
            out.commands.is_empty(),
            "nothing run: {:#?}",
            out.command_lines()
        );
        assert!(
            out.state
                .machine
                .text("/etc/postgresql-ha/patroni.yml")
                .is_none(),
            "nothing rendered"
        );
        assert!(
            out.state.machine.is_active("postgresql-ha-patroni.service"),
            "running services untouched"
        );
    }
    let out = harness()
        .run(
            Trigger::ConfigChanged,
            &st.clone().with_config("patroni-version", "3.0.2"),
        )
        .unwrap();
    assert!(out.state.unit_status.message.contains("patroni-version"));
}

#[test]
fn without_a_running_primary_the_dynamic_config_is_left_alone() {
    // Arrange: a config change while Patroni knows no primary (a failover, or force-promote
    // waiting with synchronous mode off).
    let mut st = leader_primary().with_config("ttl", 30);
    st.machine = with_etcd_members(
        with_cluster(installed_host(), &[(0, "replica", "running", None)]),
        &[(0, 0xa1, false)],
    );
    // Act.
    let out = harness().run_ok(Trigger::ConfigChanged, &st);
    // Assert: nothing patched now; a later hook with a primary does it.
    assert!(
        !ran(&out, |l| l.contains("-X PATCH")),
        "{:#?}",
        out.command_lines()
    );
}

#[test]
fn a_config_change_patches_patroni_dynamic_config_without_restart() {
    let first = harness()
        .run(Trigger::ConfigChanged, &leader_primary())
        .unwrap();
    assert!(
        !ran(&first, |l| l.contains("-X PATCH")),
        "defaults already in the DCS"
    );
    let out = harness().run_ok(
        Trigger::ConfigChanged,
        &first.state.clone().with_config("ttl", 30),
    );
    let lines = out.command_lines();
    let patch = find_command(
        &out,
        |l| l.starts_with("curl https://127.0.0.1:8008/config") && l.contains("-X PATCH"),
        "PATCH /config",
    );
    assert!(patch.contains("\"ttl\":30"), "{patch}");
    assert!(
        !patch.contains(REST_PW),
        "the REST password goes on stdin, not argv"
    );
    assert!(
        lines.contains(&"systemctl reload postgresql-ha-patroni".to_string()),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("restart")),
        "no restart: {lines:#?}"
    );
    let p = patroni_yml(&out.state);
    assert_eq!(p["bootstrap"]["dcs"]["ttl"].as_i64(), Some(30));
}

#[test]
fn hooks_are_idempotent() {
    let h = harness();
    let st = leader_primary().with_relation(
        charm_lib::testing::Relation::new(5, "db", "maas-region").remote_unit(
            0,
            &[
                ("ingress-address", "10.0.0.50"),
                ("database", "maasdb"),
                ("requested-secrets", r#"["username","password"]"#),
            ],
        ),
    );
    let once = h.run_ok(Trigger::ConfigChanged, &st);
    let mut twice_in = once.state.clone();
    twice_in.machine = running(twice_in.machine, &["postgresql-ha-patroni.service"]);
    let twice = h.run(Trigger::ConfigChanged, &twice_in).unwrap();
    let mut a = twice_in.clone();
    let mut b = twice.state.clone();
    a.machine.commands.clear();
    b.machine.commands.clear();
    assert_eq!(
        a.relations, b.relations,
        "the second run changed relation data"
    );
    assert_eq!(a.secrets, b.secrets, "the second run changed secrets");
    assert!(a == b, "the second run changed something else");
    let lines = twice.command_lines();
    assert!(
        !lines.iter().any(|l| l.starts_with("psql")
            || l.contains("reload")
            || l.contains("restart")
            || l.contains("member add")
            || l.contains("daemon-reload")),
        "{lines:#?}"
    );
}

#[test]
fn replica_statuses_report_sync_and_lag() {
    for (role, state, lag, want) in [
        (
            "sync_standby",
            "streaming",
            Some(0),
            Status::active("sync standby"),
        ),
        (
            "replica",
            "streaming",
            Some(1234),
            Status::active("replica, lag 1234 bytes"),
        ),
        (
            "replica",
            "starting",
            None,
            Status::waiting("PostgreSQL is starting (replica)"),
        ),
    ] {
        let mut st = State::default()
            .with_relation(peers(&[0, 1], &[0]))
            .with_secret(sys_secret())
            .with_secret(ca_secret());
        st.network.address = addr(1);
        st.machine = with_cluster(
            installed_host(),
            &[(0, "leader", "running", None), (1, role, state, lag)],
        );
        let out = unit_harness(1).run_ok(Trigger::UpdateStatus, &st);
        assert_eq!(out.state.unit_status, want);
    }
}

#[test]
fn a_primary_nobody_could_replace_says_so_on_its_status_and_the_app_s() {
    // Arrange: 3 units, the leader primary; member 1 in the given role, member 2 down; Patroni's
    // /sync key as given.
    let run = |role: &str, sync: serde_json::Value, mode: &str| {
        let mut st = State::default()
            .leader()
            .with_relation(peers(&[0, 1, 2], &[1, 2]))
            .with_secret(sys_secret())
            .with_secret(ca_secret())
            .with_config("synchronous-mode", mode);
        st.machine = with_sync_key(
            with_etcd_members(
                with_cluster(
                    installed_host(),
                    &[
                        (0, "leader", "running", None),
                        (1, role, "streaming", Some(0)),
                        (2, "replica", "stopped", None),
                    ],
                ),
                &[(0, 0xa1, false), (1, 0xa2, false), (2, 0xa3, false)],
            ),
            sync,
        );
        // Act
        let out = harness().run_ok(Trigger::UpdateStatus, &st);
        (out.state.unit_status, out.state.app_status)
    };
    // Assert: right after a failover the new primary's resolver reset /sync to itself, and
    // the streaming standby has not confirmed its position yet.
    let (unit, app) = run(
        "replica",
        serde_json::json!({"leader": "postgresql-ha-0", "sync_standby": null, "quorum": 0}),
        "quorum",
    );
    assert_eq!(
        unit,
        Status::active("primary; no automatic failover: no standby has confirmed the primary's commits yet (a standby is catching up)")
    );
    assert_eq!(
        app,
        Status::waiting("3 units; no automatic failover: no standby has confirmed the primary's commits yet (a standby is catching up)")
    );
    // A voter that runs: ready, both say nothing more.
    let (unit, app) = run(
        "quorum_standby",
        serde_json::json!({"leader": "postgresql-ha-0", "sync_standby": "postgresql-ha-1,postgresql-ha-2", "quorum": 0}),
        "quorum",
    );
    assert_eq!(unit, Status::active("primary"));
    assert_eq!(app, Status::active("3 units"));
    // ANY 1 of 2 (quorum 1) with one voter down: a candidate could not gather its vote.
    let (unit, _) = run(
        "quorum_standby",
        serde_json::json!({"leader": "postgresql-ha-0", "sync_standby": "postgresql-ha-1,postgresql-ha-2", "quorum": 1}),
        "quorum",
    );
    assert_eq!(
        unit,
        Status::active(
            "primary; no automatic failover: 1 confirming standby(s) running, a failover needs 2"
        )
    );
    // Classic synchronous mode with no synchronous standby in /sync.
    let (unit, _) = run(
        "replica",
        serde_json::json!({"leader": "postgresql-ha-0", "sync_standby": null, "quorum": 0}),
        "on",
    );
    assert!(
        unit.message.contains("no synchronous standby yet"),
        "{unit:?}"
    );
    // Asynchronous: any running replica may take over.
    let (unit, _) = run("replica", serde_json::json!({}), "off");
    assert_eq!(unit, Status::active("primary"));
}

#[test]
fn lost_etcd_quorum_blocks_with_the_action_to_run_and_ignores_patroni_stale_view() {
    // Patroni without its DCS still answers /cluster from its cache: the dead unit as leader.
    let db = charm_lib::testing::Relation::new(5, "db", "maas-region")
        .remote_unit(
            0,
            &[
                ("ingress-address", "10.0.0.50"),
                ("requested-secrets", "[]"),
            ],
        )
        .local_unit_data(&[("host", "10.0.0.10")]);
    let mut st = State::default()
        .leader()
        .with_relation(peers(&[0, 1], &[1]))
        .with_secret(sys_secret())
        .with_secret(ca_secret())
        .with_relation(db);
    st.relations[0].local_app_data.insert(
        "client-5".into(),
        r#"{"endpoint":"db","database":"maas-region","user":"relation_5","secret":"secret:c5","extensions":[],"roles":[],"provisioned":true}"#.into(),
    );
    st = st.with_secret(
        charm_lib::testing::Secret::owned(
            "secret:c5",
            &[
                ("username", "relation_5"),
                ("password", "C5password-0123456789"),
            ],
        )
        .with_label("client-5"),
    );
    st.machine = quorum_lost(with_cluster(
        installed_host(),
        &[
            (0, "sync_standby", "streaming", Some(0)),
            (1, "leader", "running", None),
        ],
    ));
    let out = harness().run_ok(Trigger::UpdateStatus, &st);
    assert_eq!(out.state.unit_status.kind, StatusKind::Blocked);
    assert!(
        out.state.unit_status.message.contains("etcd quorum lost")
            && out.state.unit_status.message.contains("force-promote"),
        "{}",
        out.state.unit_status.message
    );
    assert_eq!(
        out.state.relation(5).unwrap().local_unit_data["host"],
        "10.0.0.10",
        "the stale view must not move clients to a dead primary"
    );
    assert!(
        !ran(&out, |l| l
            .starts_with("curl https://127.0.0.1:8008/cluster")),
        "not even asked"
    );
}

#[test]
fn a_unit_of_an_older_etcd_epoch_wipes_its_etcd_data_and_waits_to_rejoin() {
    let mut st = State::default()
        .with_relation(peers(&[0], &[0]))
        .with_secret(sys_secret())
        .with_secret(ca_secret());
    st.relations[0]
        .local_app_data
        .insert("etcd-epoch".into(), "2".into());
    st.relations[0]
        .local_unit_data
        .insert("etcd-started".into(), "1".into());
    st.network.address = addr(1);
    st.machine = running(
        installed_host().with_file(
            "/var/lib/postgresql-ha-etcd/member",
            "",
            FileOptions::new("etcd", "etcd", 0o700),
        ),
        &[
            "postgresql-ha-etcd.service",
            "postgresql-ha-patroni.service",
        ],
    );
    let out = unit_harness(1).run_ok(Trigger::RelationChanged(1, None), &st);
    let lines = out.command_lines();
    assert!(
        lines.contains(&"rm -rf /var/lib/postgresql-ha-etcd/member".to_string()),
        "{lines:#?}"
    );
    assert!(
        !out.state.machine.is_active("postgresql-ha-patroni.service"),
        "an isolated old primary must not keep serving"
    );
    assert_eq!(out.state.unit_status.kind, StatusKind::Waiting);
}

#[test]
fn system_passwords_live_only_in_0600_files_owned_by_postgres() {
    let st = leader_primary().with_relation(
        charm_lib::testing::Relation::new(5, "db", "maas-region")
            .remote_unit(0, &[("ingress-address", "10.0.0.50")]),
    );
    let out = harness().run_ok(Trigger::ConfigChanged, &st);
    for pw in [SUPER_PW, REPL_PW, REWIND_PW, REST_PW] {
        assert!(!out.mentions(pw), "leaked into logs or status");
        for r in &out.state.relations {
            let all = r.local_unit_data.values().chain(
                r.local_app_data
                    .values()
                    .filter(|_| r.endpoint != "database-peers"),
            );
            assert!(
                !all.into_iter().any(|v| v.contains(pw)),
                "leaked into relation {}",
                r.endpoint
            );
        }
        for (path, f) in &out.state.machine.files {
            if f.text().contains(pw) {
                assert_eq!(
                    (f.options.owner.as_str(), f.options.mode),
                    ("postgres", 0o600),
                    "{}",
                    path.display()
                );
            }
        }
        for c in &out.commands {
            assert!(
                !c.iter().any(|a| a.contains(pw)),
                "on a command line: {c:?}"
            );
        }
    }
    let holders: Vec<_> = out
        .state
        .machine
        .files
        .iter()
        .filter(|(_, f)| f.text().contains(SUPER_PW))
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert_eq!(
        holders,
        [
            "/etc/postgresql-ha/patroni.yml",
            "/var/lib/postgresql-ha/.pgpass-charm"
        ]
    );
}

#[test]
fn a_pending_restart_restarts_replicas_first_then_the_primary() {
    let pending = |m: charm_lib::testing::MachineState, json: &str| {
        m.respond(
            &["curl", "https://127.0.0.1:8008/cluster"],
            CmdOutput::ok(format!("{json}\n200")),
        )
    };
    let both = r#"{"members":[{"name":"postgresql-ha-0","role":"leader","state":"running","host":"10.0.0.10","pending_restart":true},{"name":"postgresql-ha-1","role":"sync_standby","state":"streaming","host":"10.0.0.11","lag":0,"pending_restart":true}]}"#;
    let primary_only = r#"{"members":[{"name":"postgresql-ha-0","role":"leader","state":"running","host":"10.0.0.10","pending_restart":true},{"name":"postgresql-ha-1","role":"sync_standby","state":"streaming","host":"10.0.0.11","lag":0}]}"#;
    let restarts = |out: &charm_lib::testing::Output| {
        out.command_lines()
            .iter()
            .filter(|l| l.starts_with("curl https://127.0.0.1:8008/restart -sS"))
            .count()
    };
    // The primary waits while a replica is pending.
    let mut st = State::default()
        .leader()
        .with_relation(peers(&[0, 1], &[1]))
        .with_secret(sys_secret())
        .with_secret(ca_secret());
    st.machine = pending(
        with_etcd_members(installed_host(), &[(0, 1, false), (1, 2, false)]),
        both,
    );
    assert_eq!(
        restarts(&harness().run(Trigger::UpdateStatus, &st).unwrap()),
        0
    );
    // The replica restarts.
    let mut rs = State::default()
        .with_relation(peers(&[0, 1], &[0]))
        .with_secret(sys_secret())
        .with_secret(ca_secret());
    rs.network.address = addr(1);
    rs.machine = pending(installed_host(), both);
    assert_eq!(
        restarts(&unit_harness(1).run(Trigger::UpdateStatus, &rs).unwrap()),
        1
    );
    // Then the primary.
    st.machine = pending(
        with_etcd_members(installed_host(), &[(0, 1, false), (1, 2, false)]),
        primary_only,
    );
    let out = harness().run(Trigger::UpdateStatus, &st).unwrap();
    assert_eq!(restarts(&out), 1, "{:#?}", out.command_lines());
}

#[test]
fn a_topology_observer_runs_as_root() {
    let mut st = leader_primary();
    st.machine = st
        .machine
        .with_file("/usr/bin/juju-exec", "", FileOptions::root(0o755));
    let out = harness().run_ok(Trigger::ConfigChanged, &st);
    let unit = out
        .state
        .machine
        .text("/etc/systemd/system/postgresql-ha-observer.service")
        .expect("observer unit");
    assert!(unit.contains("ExecStart=/var/lib/juju/agents/unit-postgresql-ha-0/charm/dispatch observe postgresql-ha/0 /var/lib/juju/agents/unit-postgresql-ha-0/charm"), "{unit}");
    assert!(
        !unit.contains("User="),
        "root: juju-exec's socket is root-only"
    );
    assert!(out
        .state
        .machine
        .is_active("postgresql-ha-observer.service"));
    assert!(out
        .state
        .machine
        .text("/etc/postgresql-ha/on-role-change")
        .unwrap()
        .contains("touch /run/postgresql-ha/role-changed"));
    // Without juju-exec it still runs: it also keeps etcd's leadership off the primary.
    let out = harness()
        .run(Trigger::ConfigChanged, &leader_primary())
        .unwrap();
    assert!(out
        .state
        .machine
        .is_active("postgresql-ha-observer.service"));
}

#[test]
fn a_failed_member_removal_is_retried_later_without_failing_the_hook() {
    let mut st = State::default()
        .leader()
        .with_relation(peers(&[0, 1, 2], &[1]))
        .with_secret(sys_secret())
        .with_secret(ca_secret());
    st.machine = with_etcd_members(
        with_cluster(installed_host(), &[(0, "leader", "running", None)]),
        &[(0, 0xa0, false), (1, 0xb1, false), (2, 0xc2, false)],
    )
    .respond(
        &[
            "etcdctl",
            "--endpoints=https://127.0.0.1:2379",
            "--cacert=/etc/postgresql-ha/tls/ca.pem",
            "--cert=/etc/postgresql-ha/tls/unit.pem",
            "--key=/etc/postgresql-ha/tls/unit.key",
            "member",
            "remove",
        ],
        CmdOutput::failed(1, "etcdserver: member not found"),
    );
    let out = harness().run_ok(Trigger::UpdateStatus, &st);
    assert!(
        out.state.relation(1).unwrap().local_app_data["etcd-members"].contains("postgresql-ha-2"),
        "kept until the removal succeeds"
    );
    assert!(logged(
        &out,
        "could not remove etcd member postgresql-ha-2 yet"
    ));
    assert_eq!(
        out.state
            .relation(1)
            .unwrap()
            .local_unit_data
            .get("role")
            .map(String::as_str),
        Some("leader running"),
        "{:?} {:?}",
        out.state.relation(1).unwrap().local_unit_data,
        out.state.unit_status
    );
}
