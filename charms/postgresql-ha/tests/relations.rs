//! Client relations (`db`, `database`) and the `vip` relation.

mod common;

use charm_lib::testing::{Output, Relation, Secret, State, Trigger};
use charm_lib::tools::LogLevel;
use charm_lib::{Status, StatusKind};
use common::*;

fn db(units: &[(u32, &[(&str, &str)])]) -> Relation {
    let mut r = Relation::new(5, "db", "maas-region");
    for (n, data) in units {
        r = r.remote_unit(*n, data);
    }
    r
}

const SECRETS_ASKED: (&str, &str) = ("requested-secrets", r#"["username","password"]"#);

/// A `db` client unit at 10.0.0.50 that asks for its credentials as a Juju secret.
fn secret_asking_client() -> Relation {
    db(&[(0, &[("ingress-address", "10.0.0.50"), SECRETS_ASKED])])
}

/// The leader primary after the client's first relation-changed: its database provisioned.
fn provisioned_client() -> Output {
    let st = leader_primary().with_relation(secret_asking_client());
    harness()
        .run(Trigger::RelationChanged(5, Some(0)), &st)
        .unwrap()
}

#[test]
fn db_client_asking_for_secrets_gets_a_granted_secret_and_no_password() {
    let st = leader_primary().with_relation(db(&[(
        0,
        &[
            ("ingress-address", "10.0.0.50"),
            ("database", "maasdb"),
            SECRETS_ASKED,
        ],
    )]));
    let out = harness().run_ok(Trigger::RelationChanged(5, Some(0)), &st);
    let psql = find_command(&out, |l| l.starts_with("psql"), "SQL ran on the primary");
    assert!(
        psql.starts_with("psql -h 10.0.0.10 -p 5432 -U postgres -d postgres"),
        "{psql}"
    );
    let bag = &out.state.relation(5).unwrap().local_unit_data;
    assert_fields(
        bag,
        &[
            ("host", "10.0.0.10"),
            ("port", "5432"),
            ("database", "maasdb"),
            ("user", "relation_5"),
            ("allowed-units", "maas-region/0"),
            ("allowed-subnets", "10.0.0.50/32"),
            ("state", "standalone"),
            ("version", "15"),
        ],
    );
    assert_eq!(
        bag["master"],
        "host=10.0.0.10 port=5432 dbname=maasdb user=relation_5 sslmode=require"
    );
    assert!(
        bag["tls-ca"].starts_with("-----BEGIN CERTIFICATE-----"),
        "the CA reaches legacy clients"
    );
    assert!(!bag.contains_key("password"));
    let secret = out
        .state
        .secret(&bag["secret-user"])
        .expect("credentials secret");
    assert_eq!(
        secret.grants.get(&5),
        Some(&None),
        "granted to the relation"
    );
    let content = secret.latest_content();
    assert_eq!(content["username"], "relation_5");
    assert_eq!(
        content["uris"],
        format!(
            "postgresql://relation_5:{}@10.0.0.10:5432/maasdb",
            content["password"]
        )
    );
    assert!(!out.mentions(&content["password"]));
    let grant: serde_json::Value =
        serde_json::from_str(&out.state.relation(1).unwrap().local_app_data["client-5"]).unwrap();
    assert_eq!(grant["provisioned"], true);
    let hba = patroni_yml(&out.state);
    let lines: Vec<&str> = strings(&hba["postgresql"]["pg_hba"]);
    assert!(
        lines.contains(&"hostssl maasdb relation_5 10.0.0.50/32 scram-sha-256"),
        "{lines:?}"
    );
}

#[test]
fn a_legacy_db_client_gets_its_password_in_the_databag_with_a_warning() {
    let st = leader_primary().with_relation(db(&[(0, &[("private-address", "10.0.0.50")])]));
    let out = harness().run_ok(Trigger::RelationChanged(5, Some(0)), &st);
    let bag = &out.state.relation(5).unwrap().local_unit_data;
    assert_eq!(
        bag["database"], "maas-region",
        "defaults to the client application's name"
    );
    let pw = &bag["password"];
    assert_eq!(pw.len(), 32);
    assert!(bag["master"].ends_with(&format!("password={pw} sslmode=require")));
    assert!(!bag.contains_key("secret-user"));
    assert!(out.logs.iter().any(|(l, m)| *l == LogLevel::Warning
        && m.contains("did not ask for its credentials as a Juju secret")));
    // The legacy protocol puts it in the databag (above); it still never reaches logs or status.
    assert!(
        !logged(&out, pw.as_str()),
        "the password itself is never logged"
    );
    assert!(!out.state.unit_status.message.contains(pw.as_str()));
}

#[test]
fn every_unit_publishes_the_same_db_data_and_replicas_report_hot_standby() {
    let grant = r#"{"endpoint":"db","database":"maasdb","user":"relation_5","secret":"secret:client5","extensions":[],"roles":[],"provisioned":true}"#;
    let mut peer = peers(&[0, 1, 2], &[0, 2]);
    peer.local_app_data.insert("client-5".into(), grant.into());
    let mut st = State::default()
        .with_relation(peer)
        .with_secret(sys_secret())
        .with_secret(ca_secret())
        .with_secret(
            Secret::owned(
                "secret:client5",
                &[
                    ("username", "relation_5"),
                    ("password", "ClientPw0123456789"),
                ],
            )
            .with_label("client-5"),
        );
    st = st.with_relation(db(&[
        (0, &[("ingress-address", "10.0.0.50"), SECRETS_ASKED]),
        (1, &[("ingress-address", "10.0.0.51")]),
    ]));
    st.network.address = addr(1);
    st.machine = with_cluster(
        installed_host(),
        &[
            (0, "leader", "running", None),
            (1, "sync_standby", "streaming", Some(0)),
            (2, "replica", "streaming", Some(10)),
        ],
    );
    let out = unit_harness(1).run_ok(Trigger::RelationChanged(5, Some(1)), &st);
    assert!(
        !ran(&out, |l| l.starts_with("psql")),
        "only the leader runs SQL"
    );
    let bag = &out.state.relation(5).unwrap().local_unit_data;
    assert_fields(
        bag,
        &[
            ("host", "10.0.0.10"),
            ("state", "hot standby"),
            ("secret-user", "secret:client5"),
            ("allowed-units", "maas-region/0 maas-region/1"),
            ("standbys", "host=10.0.0.11 port=5432 dbname=maasdb user=relation_5 sslmode=require\nhost=10.0.0.12 port=5432 dbname=maasdb user=relation_5 sslmode=require"),
        ],
    );
    let p = patroni_yml(&out.state);
    let hba: Vec<&str> = strings(&p["postgresql"]["pg_hba"]);
    assert!(
        hba.contains(&"hostssl maasdb relation_5 10.0.0.51/32 scram-sha-256"),
        "replicas allow the clients too (for after a failover)"
    );
    assert_eq!(out.state.unit_status, Status::active("sync standby"));
}

#[test]
fn a_garbled_grant_in_the_peer_data_is_named_not_dropped_silently() {
    // Arrange: a replica whose leader-written grant for db:5 is not JSON.
    let mut peer = peers(&[0, 1, 2], &[0, 2]);
    peer.local_app_data
        .insert("client-5".into(), "{not json".into());
    let mut st = State::default()
        .with_relation(peer)
        .with_secret(sys_secret())
        .with_secret(ca_secret())
        .with_relation(db(&[(0, &[("ingress-address", "10.0.0.50")])]));
    st.network.address = addr(1);
    st.machine = with_cluster(
        installed_host(),
        &[
            (0, "leader", "running", None),
            (1, "sync_standby", "streaming", Some(0)),
            (2, "replica", "streaming", Some(10)),
        ],
    );
    // Act
    let out = unit_harness(1).run_ok(Trigger::RelationChanged(5, Some(0)), &st);
    // Assert: the status names the key; the client is not served by a guess.
    assert_eq!(
        out.state.unit_status.kind,
        StatusKind::Waiting,
        "{:?}",
        out.state.unit_status
    );
    assert!(
        out.state
            .unit_status
            .message
            .contains("peer application data client-5 is unreadable"),
        "{:?}",
        out.state.unit_status
    );
    let hba = patroni_yml(&out.state)["postgresql"]["pg_hba"].clone();
    assert!(!strings(&hba).iter().any(|l| l.contains("10.0.0.50")));
}

#[test]
fn max_connections_grow_with_client_units() {
    // 12 client units need 10 + 600 connections: 700 (steps of 100, at least 500).
    let units: Vec<(u32, Vec<(&str, String)>)> = (0..12)
        .map(|n| (n, vec![("ingress-address", format!("10.0.0.{}", 50 + n))]))
        .collect();
    let mut rel = Relation::new(5, "db", "maas-region");
    for (n, d) in &units {
        rel = rel.remote_unit(
            *n,
            &d.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(),
        );
    }
    let out = harness().run_ok(
        Trigger::RelationChanged(5, Some(2)),
        &leader_primary().with_relation(rel),
    );
    let p = patroni_yml(&out.state);
    assert_eq!(
        p["bootstrap"]["dcs"]["postgresql"]["parameters"]["max_connections"].as_i64(),
        Some(700)
    );
    let patch = out
        .command_lines()
        .into_iter()
        .find(|l| l.contains("-X PATCH"))
        .expect("the DCS is told too");
    assert!(patch.contains("\"max_connections\":700"), "{patch}");
}

#[test]
fn garbage_from_a_client_blocks_with_the_relation_named_and_runs_nothing() {
    for (k, v) in [
        ("database", "maas; DROP DATABASE postgres"),
        ("roles", "postgres"),
        ("extensions", "x'y"),
    ] {
        let st =
            leader_primary().with_relation(db(&[(0, &[("ingress-address", "10.0.0.50"), (k, v)])]));
        let out = harness()
            .run(Trigger::RelationChanged(5, Some(0)), &st)
            .unwrap();
        assert!(
            !out.failed(),
            "garbage must not fail the hook: {:?}",
            out.error
        );
        assert_eq!(out.state.unit_status.kind, StatusKind::Blocked);
        assert!(
            out.state
                .unit_status
                .message
                .starts_with("db:5 (maas-region): "),
            "{}",
            out.state.unit_status.message
        );
        assert!(!ran(&out, |l| l.starts_with("psql")));
        assert!(out.state.relation(5).unwrap().local_unit_data.is_empty());
    }
    // An address that is not an IP is left out of pg_hba, the rest is served.
    let st = leader_primary().with_relation(db(&[
        (0, &[("ingress-address", "10.0.0.50")]),
        (1, &[("ingress-address", "$(reboot)")]),
    ]));
    let out = harness()
        .run(Trigger::RelationChanged(5, Some(1)), &st)
        .unwrap();
    assert_eq!(
        out.state.relation(5).unwrap().local_unit_data["allowed-units"],
        "maas-region/0"
    );
    assert!(!out
        .state
        .machine
        .text("/etc/postgresql-ha/patroni.yml")
        .unwrap()
        .contains("reboot"));
}

#[test]
fn without_a_primary_the_leader_waits_to_create_the_database() {
    let mut st = leader_primary().with_relation(db(&[(0, &[("ingress-address", "10.0.0.50")])]));
    st.machine = patroni_down(installed_host());
    let out = harness().run_ok(Trigger::RelationChanged(5, Some(0)), &st);
    assert_eq!(
        out.state.unit_status,
        Status::waiting("waiting for a primary to create the database of db:5")
    );
    let grant: serde_json::Value =
        serde_json::from_str(&out.state.relation(1).unwrap().local_app_data["client-5"]).unwrap();
    assert_eq!(grant["provisioned"], false);
    assert!(
        out.state.relation(5).unwrap().local_unit_data.is_empty(),
        "nothing published before the role exists"
    );
}

#[test]
fn a_lost_connection_fails_the_hook_for_a_retry_but_a_refused_request_blocks() {
    let mut st = leader_primary().with_relation(db(&[(
        0,
        &[("ingress-address", "10.0.0.50"), ("extensions", "postgis")],
    )]));
    st.machine = st.machine.respond(&["psql"], charm_lib::CmdOutput::failed(2, "psql: error: connection to server at \"10.0.0.10\", port 5432 failed: Connection refused"));
    let out = harness()
        .run(Trigger::RelationChanged(5, Some(0)), &st)
        .unwrap();
    let e = out.error.expect("Juju retrying can help");
    assert!(e.contains("Connection refused"), "{e}");

    // The operator allowed postgis, but the host does not have it: PostgreSQL refuses.
    let mut st = leader_primary()
        .with_config("allowed-extensions", "btree_gin,postgis")
        .with_relation(db(&[(
            0,
            &[("ingress-address", "10.0.0.50"), ("extensions", "postgis")],
        )]));
    st.machine = st.machine.respond(
        &["psql"],
        charm_lib::CmdOutput::failed(
            3,
            "psql:<stdin>:8: NOTICE:  extension \"btree_gin\" already exists, skipping\n\
psql:<stdin>:9: ERROR:  extension \"postgis\" is not available\n\
DETAIL:  Could not open extension control file \"/usr/share/postgresql/15/extension/postgis.control\": No such file or directory.\n",
        ),
    );
    let out = harness()
        .run(Trigger::RelationChanged(5, Some(0)), &st)
        .unwrap();
    assert!(!out.failed(), "retrying cannot help: {:?}", out.error);
    assert_eq!(out.state.unit_status.kind, StatusKind::Blocked);
    let msg = &out.state.unit_status.message;
    assert!(
        msg.starts_with("db:5 (maas-region): PostgreSQL refused the request:")
            && msg.contains("ERROR:  extension \"postgis\" is not available")
            && msg.contains("postgis.control"),
        "{msg}"
    );
    assert!(
        !msg.contains("NOTICE"),
        "psql's error, not its notices: {msg}"
    );
    assert!(out.state.relation(5).unwrap().local_unit_data.is_empty());

    // Any other SQL failure fails the hook with the error too, not the notices.
    let mut st = leader_primary().with_relation(secret_asking_client());
    st.machine = st.machine.respond(
        &["psql"],
        charm_lib::CmdOutput::failed(
            1,
            "psql:<stdin>:8: NOTICE:  extension \"btree_gin\" already exists, skipping\n\
psql:<stdin>:10: ERROR:  out of shared memory\n",
        ),
    );
    let out = harness()
        .run(Trigger::RelationChanged(5, Some(0)), &st)
        .unwrap();
    let e = out
        .error
        .expect("a failure that is not a refusal is retried");
    assert!(e.contains("ERROR:  out of shared memory"), "{e}");
    assert!(!e.contains("NOTICE"), "{e}");
}

/// The SQL the hook fed psql on the primary.
fn provision_sql(out: &Output) -> String {
    let cmd = out
        .runs
        .iter()
        .find(|c| c.program == "psql")
        .unwrap_or_else(|| panic!("no psql: {:#?}", out.command_lines()));
    String::from_utf8(cmd.stdin.clone().unwrap_or_default()).unwrap()
}

#[test]
fn an_extension_outside_the_allowlist_blocks_naming_it_and_the_rest_is_served() {
    // Arrange: a client asks for a trusted extension and two the default list leaves out.
    let st = leader_primary().with_relation(db(&[(
        0,
        &[
            ("ingress-address", "10.0.0.50"),
            ("extensions", "pg_trgm,plpython3u,adminpack"),
            SECRETS_ASKED,
        ],
    )]));
    // Act.
    let out = harness().run_ok(Trigger::RelationChanged(5, Some(0)), &st);
    // Assert: blocked, naming what was refused and the option that would allow it.
    assert_eq!(out.state.unit_status.kind, StatusKind::Blocked);
    assert_eq!(
        out.state.unit_status.message,
        "db:5 (maas-region): extensions adminpack, plpython3u refused: not in the allowed-extensions config option (add them there to have them created)"
    );
    // The superuser created only what is allowed (and btree_gin, listed by default).
    let sql = provision_sql(&out);
    assert!(
        sql.contains("CREATE EXTENSION IF NOT EXISTS \"pg_trgm\""),
        "{sql}"
    );
    assert!(
        sql.contains("CREATE EXTENSION IF NOT EXISTS \"btree_gin\""),
        "{sql}"
    );
    assert!(
        !sql.contains("plpython3u") && !sql.contains("adminpack"),
        "{sql}"
    );
    // The rest is served: database, role, credentials, pg_hba.
    let bag = &out.state.relation(5).unwrap().local_unit_data;
    assert_fields(bag, &[("database", "maas-region"), ("user", "relation_5")]);
    assert!(out.state.secret(&bag["secret-user"]).is_some());
    let grant: serde_json::Value =
        serde_json::from_str(&out.state.relation(1).unwrap().local_app_data["client-5"]).unwrap();
    assert_eq!(grant["provisioned"], true);
    assert_eq!(grant["extensions"], serde_json::json!(["pg_trgm"]));
    let hba = patroni_yml(&out.state);
    let lines = strings(&hba["postgresql"]["pg_hba"]);
    assert!(
        lines.contains(&"hostssl \"maas-region\" relation_5 10.0.0.50/32 scram-sha-256"),
        "{lines:?}"
    );

    // The next hook changes nothing in the database and still says why.
    let again = harness().run(Trigger::UpdateStatus, &out.state).unwrap();
    assert!(!ran(&again, |l| l.starts_with("psql")));
    assert_eq!(again.state.unit_status, out.state.unit_status);
}

#[test]
fn allowing_a_refused_extension_creates_it_and_clears_the_block() {
    // Arrange: served, with plpython3u refused.
    let st = leader_primary().with_relation(db(&[(
        0,
        &[
            ("ingress-address", "10.0.0.50"),
            ("extensions", "pg_trgm,plpython3u"),
            SECRETS_ASKED,
        ],
    )]));
    let first = harness()
        .run(Trigger::RelationChanged(5, Some(0)), &st)
        .unwrap();
    assert_eq!(first.state.unit_status.kind, StatusKind::Blocked);
    // Act: the operator allows it.
    let out = harness().run_ok(
        Trigger::ConfigChanged,
        &first
            .state
            .clone()
            .with_config("allowed-extensions", "btree_gin,pg_trgm,plpython3u"),
    );
    // Assert.
    let sql = provision_sql(&out);
    assert!(
        sql.contains("CREATE EXTENSION IF NOT EXISTS \"plpython3u\""),
        "{sql}"
    );
    assert_ne!(
        out.state.unit_status.kind,
        StatusKind::Blocked,
        "{:?}",
        out.state.unit_status
    );
    let grant: serde_json::Value =
        serde_json::from_str(&out.state.relation(1).unwrap().local_app_data["client-5"]).unwrap();
    assert_eq!(
        grant["extensions"],
        serde_json::json!(["pg_trgm", "plpython3u"])
    );
}

#[test]
fn an_empty_allowlist_creates_no_extension_not_even_btree_gin() {
    let st = leader_primary()
        .with_config("allowed-extensions", "")
        .with_relation(secret_asking_client());
    let out = harness().run_ok(Trigger::RelationChanged(5, Some(0)), &st);
    let sql = provision_sql(&out);
    assert!(!sql.contains("CREATE EXTENSION"), "{sql}");
    assert_ne!(
        out.state.unit_status.kind,
        StatusKind::Blocked,
        "{:?}",
        out.state.unit_status
    );
    assert!(out
        .state
        .relation(5)
        .unwrap()
        .local_unit_data
        .contains_key("secret-user"));
}

#[test]
fn a_malformed_allowlist_blocks_naming_the_option() {
    let st = leader_primary()
        .with_config("allowed-extensions", "pg_trgm;plpython3u")
        .with_relation(secret_asking_client());
    let out = harness().run_ok(Trigger::RelationChanged(5, Some(0)), &st);
    assert_eq!(out.state.unit_status.kind, StatusKind::Blocked);
    assert!(
        out.state
            .unit_status
            .message
            .starts_with("invalid config allowed-extensions: \"pg_trgm;plpython3u\" is not an extension name: expected a comma-separated list"),
        "{}",
        out.state.unit_status.message
    );
    assert!(
        !ran(&out, |l| l.starts_with("psql")),
        "nothing done with a bad config"
    );
}

#[test]
fn the_database_interface_gets_endpoints_and_a_secret_in_the_app_databag() {
    let rel = Relation::new(7, "database", "test-app")
        .remote_app_data(&[("database", "appdb"), SECRETS_ASKED])
        .remote_unit(0, &[("ingress-address", "10.0.0.60")]);
    let mut st = leader_primary().with_relation(rel);
    st.machine = st.machine.respond(
        &["/usr/lib/postgresql/15/bin/postgres", "-V"],
        charm_lib::CmdOutput::ok("postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)\n"),
    );
    let out = harness().run_ok(Trigger::RelationChanged(7, None), &st);
    let bag = &out.state.relation(7).unwrap().local_app_data;
    assert_eq!(bag["database"], "appdb");
    assert_eq!(bag["endpoints"], "10.0.0.10:5432");
    assert_eq!(
        bag["read-only-endpoints"], "10.0.0.10:5432",
        "no replica: the primary serves reads"
    );
    assert_eq!(
        bag["version"], "15.14",
        "the server's full version, as Charmed PostgreSQL gives it"
    );
    assert_eq!(bag["tls"], "True");
    assert_eq!(
        bag["tls-ca"].as_str(),
        common::ca_secret().latest_content()["ca-cert"].as_str(),
        "clients verify the server with the application's CA"
    );
    assert!(!bag.contains_key("password"));
    let s = out.state.secret(&bag["secret-user"]).unwrap();
    assert_eq!(s.grants.get(&7), Some(&None));
    assert!(s.latest_content()["uris"].ends_with("@10.0.0.10:5432/appdb"));
    // Before the client names its database nothing is granted.
    let rel = Relation::new(7, "database", "test-app")
        .remote_unit(0, &[("ingress-address", "10.0.0.60")]);
    let out = harness()
        .run(
            Trigger::RelationJoined(7, 0),
            &leader_primary().with_relation(rel),
        )
        .unwrap();
    assert!(out.state.relation(7).unwrap().local_app_data.is_empty());
    assert!(!ran(&out, |l| l.starts_with("psql")));
}

#[test]
fn a_vip_replaces_the_primary_address_and_the_subordinate_is_told_what_to_check() {
    let vip = Relation::new(9, "vip", "keepalived-vip")
        .remote_unit(0, &[("vips", "10.0.0.100"), ("state", "held")]);
    let st = leader_primary()
        .with_relation(vip)
        .with_relation(secret_asking_client());
    let out = harness().run_ok(Trigger::RelationChanged(9, Some(0)), &st);
    let bag = &out.state.relation(5).unwrap().local_unit_data;
    assert_eq!(bag["host"], "10.0.0.100");
    assert!(bag["master"].starts_with("host=10.0.0.100 "));
    let v = &out.state.relation(9).unwrap().local_unit_data;
    assert_eq!(v["check"], "https://127.0.0.1:8008/primary");
    assert_eq!(v["service"], "postgresql");
}

#[test]
fn after_a_failover_the_published_address_follows_the_new_primary() {
    let first = provisioned_client();
    let mut st2 = first.state.clone();
    st2.relations[0] = {
        let mut p = peers(&[0, 1], &[1]);
        p.local_app_data = first.state.relation(1).unwrap().local_app_data.clone();
        p
    };
    st2.machine = with_cluster(
        with_etcd_members(installed_host(), &[(0, 0xa0, false), (1, 0xb1, false)]),
        &[
            (0, "replica", "streaming", Some(0)),
            (1, "leader", "running", None),
        ],
    );
    let out = harness().run_ok(Trigger::UpdateStatus, &st2);
    let bag = &out.state.relation(5).unwrap().local_unit_data;
    assert_eq!(bag["host"], "10.0.0.11");
    assert_eq!(bag["state"], "hot standby");
    let s = out.state.secret(&bag["secret-user"]).unwrap();
    assert!(
        s.latest_content()["uris"].contains("@10.0.0.11:5432/"),
        "the secret's URI follows too"
    );
}

#[test]
fn removing_a_relation_revokes_its_access_and_forgets_its_secret() {
    let first = provisioned_client();
    let secret_id = first.state.relation(5).unwrap().local_unit_data["secret-user"].clone();
    let out = harness().run_ok(Trigger::RelationBroken(5), &first.state);
    assert_eq!(
        out.command_lines()
            .iter()
            .filter(|l| l.starts_with("psql -h 10.0.0.10"))
            .count(),
        1,
        "the revoke SQL ran once"
    );
    assert!(!out
        .state
        .relation(1)
        .unwrap()
        .local_app_data
        .contains_key("client-5"));
    assert!(out.state.secret(&secret_id).is_none());
    let p = patroni_yml(&out.state);
    assert!(
        !p["postgresql"]["pg_hba"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("relation_5")),
        "pg_hba line gone"
    );
    assert!(logged(&out, "revoked the access of db:5"));
}

#[test]
fn the_last_client_unit_departing_changes_no_grant() {
    let st = leader_primary().with_relation(db(&[(
        0,
        &[("ingress-address", "10.0.0.50"), ("database", "e2e")],
    )]));
    let first = harness()
        .run(Trigger::RelationChanged(5, Some(0)), &st)
        .unwrap();
    let grant = first.state.relation(1).unwrap().local_app_data["client-5"].clone();
    assert!(grant.contains("\"database\":\"e2e\""));
    // Seen in the local model: without the unit's data the request fell back to the app name.
    let out = harness().run_ok(Trigger::RelationDeparted(5, 0), &first.state);
    assert!(
        !ran(&out, |l| l.starts_with("psql")),
        "{:#?}",
        out.command_lines()
    );
    assert_eq!(
        out.state.relation(1).unwrap().local_app_data["client-5"],
        grant
    );
}

/// A `database` client (data_interfaces' DatabaseRequires) asking for `extra-user-roles`.
fn database_client_asking(extra_user_roles: &str) -> Relation {
    Relation::new(7, "database", "app")
        .remote_app_data(&[
            ("database", "appdb"),
            ("extra-user-roles", extra_user_roles),
            (
                "requested-secrets",
                r#"["username", "password", "tls", "tls-ca", "uris", "read-only-uris"]"#,
            ),
        ])
        .remote_unit(0, &[("ingress-address", "10.0.0.60")])
}

/// The grant the leader recorded for relation 7.
fn grant_7(st: &State) -> serde_json::Value {
    serde_json::from_str(&st.relation(1).unwrap().local_app_data["client-7"]).unwrap()
}

#[test]
fn extra_user_roles_are_attributes_or_existing_roles_as_data_interfaces_means_them() {
    // Arrange: the operator allows createdb and a predefined role; the client writes them in
    // capitals with spaces, as a charm may.
    let st = leader_primary()
        .with_config("allowed-extra-user-roles", "createdb,pg_read_all_data")
        .with_relation(database_client_asking("CREATEDB, pg_read_all_data"));
    // Act.
    let out = harness().run_ok(Trigger::RelationChanged(7, None), &st);
    // Assert: createdb is an attribute of the client's role, pg_read_all_data a membership.
    let sql = provision_sql(&out);
    assert!(
        sql.contains(
            "ALTER ROLE \"relation_7\" WITH LOGIN NOSUPERUSER CREATEDB NOCREATEROLE NOREPLICATION"
        ),
        "{sql}"
    );
    assert!(
        sql.contains("SELECT format('GRANT %I TO %I', rolname, 'relation_7') FROM pg_roles WHERE rolname = 'pg_read_all_data'"),
        "{sql}"
    );
    assert!(
        !sql.contains("'createdb'"),
        "no role named createdb is created or granted: {sql}"
    );
    assert_ne!(
        out.state.unit_status.kind,
        StatusKind::Blocked,
        "{:?}",
        out.state.unit_status
    );
    let g = grant_7(&out.state);
    assert_eq!(g["attributes"], serde_json::json!(["createdb"]));
    assert_eq!(g["roles"], serde_json::json!(["pg_read_all_data"]));
    assert_eq!(
        out.state.relation(7).unwrap().local_app_data["endpoints"],
        "10.0.0.10:5432"
    );
}

#[test]
fn refused_extra_user_roles_block_naming_them_and_the_option_and_the_rest_is_served() {
    // Arrange: the default allowlist (createdb); the client also asks for superuser and a role
    // that runs programs on the server.
    let st = leader_primary().with_relation(database_client_asking(
        "createdb,superuser,pg_execute_server_program",
    ));
    // Act.
    let out = harness().run_ok(Trigger::RelationChanged(7, None), &st);
    // Assert: blocked, naming both and what would allow the one that can be allowed.
    assert_eq!(
        out.state.unit_status,
        Status::blocked(
            "database:7 (app): extra-user-roles refused: superuser not in the allowed-extra-user-roles config option (add it there to have it granted); pg_execute_server_program is never granted (it runs programs or reads and writes files on the server as its OS user)"
        )
    );
    let sql = provision_sql(&out);
    assert!(
        sql.contains("WITH LOGIN NOSUPERUSER CREATEDB NOCREATEROLE"),
        "{sql}"
    );
    assert!(!sql.contains("pg_execute_server_program"), "{sql}");
    // The rest is served: database, credentials, endpoints, pg_hba.
    let bag = &out.state.relation(7).unwrap().local_app_data;
    assert_eq!(bag["database"], "appdb");
    assert_eq!(bag["endpoints"], "10.0.0.10:5432");
    assert!(out.state.secret(&bag["secret-user"]).is_some());
    assert_eq!(
        grant_7(&out.state)["attributes"],
        serde_json::json!(["createdb"])
    );
    let hba = patroni_yml(&out.state);
    assert!(
        strings(&hba["postgresql"]["pg_hba"])
            .contains(&"hostssl appdb relation_7 10.0.0.60/32 scram-sha-256"),
        "{hba:?}"
    );
    // The next hook changes nothing in the database and still says why.
    let again = harness().run(Trigger::UpdateStatus, &out.state).unwrap();
    assert!(!ran(&again, |l| l.starts_with("psql")));
    assert_eq!(again.state.unit_status, out.state.unit_status);
}

#[test]
fn allowing_superuser_grants_it_and_the_never_granted_role_stays_refused() {
    // Arrange: served with superuser and pg_write_server_files refused.
    let st =
        leader_primary().with_relation(database_client_asking("superuser,pg_write_server_files"));
    let first = harness()
        .run(Trigger::RelationChanged(7, None), &st)
        .unwrap();
    assert!(first.state.unit_status.message.contains("superuser not in"));
    // Act: the operator allows superuser.
    let out = harness().run_ok(
        Trigger::ConfigChanged,
        &first
            .state
            .clone()
            .with_config("allowed-extra-user-roles", "createdb,superuser"),
    );
    // Assert.
    let sql = provision_sql(&out);
    assert!(
        sql.contains("WITH LOGIN SUPERUSER NOCREATEDB NOCREATEROLE"),
        "{sql}"
    );
    assert_eq!(
        out.state.unit_status,
        Status::blocked(
            "database:7 (app): extra-user-roles refused: pg_write_server_files is never granted (it runs programs or reads and writes files on the server as its OS user)"
        )
    );
    assert_eq!(
        grant_7(&out.state)["attributes"],
        serde_json::json!(["superuser"])
    );
}

#[test]
fn what_is_no_longer_allowed_is_taken_away() {
    // Arrange: createdb and pg_read_all_data granted.
    let st = leader_primary()
        .with_config("allowed-extra-user-roles", "createdb,pg_read_all_data")
        .with_relation(database_client_asking("createdb,pg_read_all_data"));
    let first = harness()
        .run(Trigger::RelationChanged(7, None), &st)
        .unwrap();
    assert_eq!(
        grant_7(&first.state)["roles"],
        serde_json::json!(["pg_read_all_data"])
    );
    // Act: the operator allows only createdb now.
    let out = harness().run_ok(
        Trigger::ConfigChanged,
        &first
            .state
            .clone()
            .with_config("allowed-extra-user-roles", "createdb"),
    );
    // Assert: the membership is revoked, the attribute kept, and the refusal said.
    let sql = provision_sql(&out);
    assert!(
        sql.contains("SELECT format('REVOKE %I FROM %I', rolname, 'relation_7') FROM pg_roles WHERE rolname = 'pg_read_all_data'"),
        "{sql}"
    );
    assert!(sql.contains("CREATEDB"), "{sql}");
    assert!(
        out.state.unit_status.message.ends_with(
            "extra-user-roles refused: pg_read_all_data not in the allowed-extra-user-roles config option (add it there to have it granted)"
        ),
        "{:?}",
        out.state.unit_status
    );
    let g = grant_7(&out.state);
    assert_eq!(g["roles"], serde_json::json!([]));
    assert_eq!(g["attributes"], serde_json::json!(["createdb"]));
}

#[test]
fn a_grant_from_before_extra_user_roles_were_attributes_is_redone() {
    // Arrange: an older charm granted `createdb` as a group role it created.
    let old = r#"{"endpoint":"database","database":"appdb","user":"relation_7","secret":"secret:client7","extensions":[],"roles":["createdb"],"provisioned":true}"#;
    let mut st = leader_primary()
        .with_relation(database_client_asking("createdb"))
        .with_secret(
            Secret::owned(
                "secret:client7",
                &[
                    ("username", "relation_7"),
                    ("password", "ClientPw0123456789"),
                ],
            )
            .with_label("client-7"),
        );
    st.relations[0]
        .local_app_data
        .insert("client-7".into(), old.into());
    // Act.
    let out = harness().run_ok(Trigger::UpgradeCharm, &st);
    // Assert: the attribute set, the group role's membership revoked.
    let sql = provision_sql(&out);
    assert!(sql.contains("NOSUPERUSER CREATEDB NOCREATEROLE"), "{sql}");
    assert!(
        sql.contains("SELECT format('REVOKE %I FROM %I', rolname, 'relation_7') FROM pg_roles WHERE rolname = 'createdb'"),
        "{sql}"
    );
    let g = grant_7(&out.state);
    assert_eq!(
        (g["roles"].clone(), g["attributes"].clone()),
        (serde_json::json!([]), serde_json::json!(["createdb"]))
    );
}

#[test]
fn a_server_access_role_in_the_allowlist_is_a_config_error_naming_the_option() {
    let st = leader_primary()
        .with_config("allowed-extra-user-roles", "createdb,pg_read_server_files")
        .with_relation(database_client_asking("pg_read_server_files"));
    let out = harness().run_ok(Trigger::RelationChanged(7, None), &st);
    assert_eq!(out.state.unit_status.kind, StatusKind::Blocked);
    assert!(
        out.state.unit_status.message.starts_with(
            "invalid config allowed-extra-user-roles: \"pg_read_server_files\" is never granted (it runs programs"
        ),
        "{}",
        out.state.unit_status.message
    );
    assert!(
        !ran(&out, |l| l.starts_with("psql")),
        "nothing done with a bad config"
    );
}

/// The psql scripts the hook ran, in order.
fn psql_scripts(out: &Output) -> Vec<String> {
    out.runs
        .iter()
        .filter(|c| c.program == "psql")
        .map(|c| String::from_utf8(c.stdin.clone().unwrap_or_default()).unwrap())
        .collect()
}

#[test]
fn the_first_data_waits_for_the_primary_s_pg_hba_to_let_the_units_in() {
    // Arrange: a new `database` client with two units on one machine (one address).
    let st = leader_primary().with_relation(
        database_client_asking("createdb").remote_unit(1, &[("ingress-address", "10.0.0.60")]),
    );
    // Act.
    let out = harness().run_ok(Trigger::RelationChanged(7, None), &st);
    // Assert: after provisioning, the primary was asked about its pg_hba.conf for the address.
    let scripts = psql_scripts(&out);
    assert_eq!(scripts.len(), 2, "{scripts:#?}");
    assert!(scripts[0].contains("CREATE DATABASE"), "{}", scripts[0]);
    assert!(
        scripts[1].contains("pg_hba_file_rules WHERE 'relation_7' = ANY(user_name) AND address = ANY(ARRAY['10.0.0.60']::text[])) < 1"),
        "{}",
        scripts[1]
    );
    assert!(logged(&out, "the primary's pg_hba.conf lets database:7 in"));
    assert!(out
        .state
        .relation(7)
        .unwrap()
        .local_app_data
        .contains_key("secret-user"));
    // A later hook publishes nothing new and does not wait.
    let again = harness().run(Trigger::UpdateStatus, &out.state).unwrap();
    assert!(
        psql_scripts(&again).is_empty(),
        "{:#?}",
        psql_scripts(&again)
    );
}

#[test]
fn a_pg_hba_that_does_not_come_still_lets_the_data_out_with_a_warning() {
    // Arrange: provisioning works, the wait gives up.
    let mut st = leader_primary().with_relation(database_client_asking("createdb"));
    st.machine = st
        .machine
        .respond_times(&["psql"], charm_lib::CmdOutput::ok(""), 1)
        .respond(
            &["psql"],
            charm_lib::CmdOutput::failed(
                3,
                "psql:<stdin>:10: ERROR:  pg_hba.conf does not let relation_7 in from every unit yet\n",
            ),
        );
    // Act.
    let out = harness().run_ok(Trigger::RelationChanged(7, None), &st);
    // Assert.
    assert!(out.logs.iter().any(|(l, m)| *l == LogLevel::Warning
        && m.contains("publishing database:7 before the primary's pg_hba.conf lets it in")));
    let bag = &out.state.relation(7).unwrap().local_app_data;
    assert_eq!(bag["endpoints"], "10.0.0.10:5432");
    assert!(bag.contains_key("secret-user"));
}

#[test]
fn a_database_client_asking_for_every_secret_field_gets_tls_in_secret_tls_and_nothing_in_clear() {
    let st = leader_primary().with_relation(database_client_asking(""));
    let out = harness().run_ok(Trigger::RelationChanged(7, None), &st);
    let bag = &out.state.relation(7).unwrap().local_app_data;
    for k in ["tls", "tls-ca", "username", "password", "uris"] {
        assert!(!bag.contains_key(k), "{k} in clear: {bag:?}");
    }
    // data_interfaces' groups: `secret-user` (username, password, uris, read-only-uris) and
    // `secret-tls` (tls, tls-ca), each granted to the relation.
    let user = out.state.secret(&bag["secret-user"]).unwrap();
    assert_eq!(user.grants.get(&7), Some(&None));
    let c = user.latest_content();
    assert!(c["uris"].ends_with("@10.0.0.10:5432/appdb"), "{c:?}");
    assert!(
        c["read-only-uris"].ends_with("@10.0.0.10:5432/appdb"),
        "{c:?}"
    );
    let tls = out.state.secret(&bag["secret-tls"]).unwrap();
    assert_eq!(tls.grants.get(&7), Some(&None));
    assert_eq!(tls.label.as_deref(), Some("client-7-tls"));
    assert_eq!(tls.latest_content()["tls"], "True");
    assert_eq!(
        tls.latest_content()["tls-ca"].as_str(),
        common::ca_secret().latest_content()["ca-cert"].as_str(),
        "clients verify the server with the application's CA"
    );
    // The next hook adopts the same secret by its label, unchanged.
    let again = harness().run_ok(Trigger::RelationChanged(7, None), &out.state);
    let bag2 = &again.state.relation(7).unwrap().local_app_data;
    assert_eq!(bag2["secret-tls"], bag["secret-tls"]);
    assert_eq!(
        again.state.secret("client-7-tls").unwrap().revisions.len(),
        1,
        "no new revision when nothing changed"
    );
    // The relation gone, both secrets go with it.
    let gone = harness().run_ok(Trigger::RelationBroken(7), &again.state);
    assert!(gone.state.secret(&bag["secret-user"]).is_none());
    assert!(gone.state.secret("client-7-tls").is_none());
}

#[test]
fn a_legacy_db_client_is_allowed_from_its_egress_subnets_and_sees_its_request_echoed() {
    let st = leader_primary()
        .with_config("allowed-extensions", "btree_gin,pg_trgm")
        .with_relation(db(&[
            (
                0,
                &[
                    ("ingress-address", "10.0.0.50"),
                    ("egress-subnets", "192.168.9.0/24"),
                    ("database", "legacydb"),
                    ("roles", "reader"),
                    ("extensions", "pg_trgm"),
                ],
            ),
            (1, &[("ingress-address", "10.0.0.51")]),
        ]));
    let out = harness().run_ok(Trigger::RelationChanged(5, Some(0)), &st);
    let bag = &out.state.relation(5).unwrap().local_unit_data;
    assert_fields(
        bag,
        &[
            ("database", "legacydb"),
            ("roles", "reader"),
            ("extensions", "pg_trgm"),
            ("allowed-units", "maas-region/0 maas-region/1"),
            ("allowed-subnets", "192.168.9.0/24,10.0.0.51/32"),
        ],
    );
    let p = patroni_yml(&out.state);
    let hba: Vec<&str> = p["postgresql"]["pg_hba"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .filter(|l| l.contains("relation_5"))
        .collect();
    assert_eq!(
        hba,
        vec![
            "hostssl legacydb relation_5 10.0.0.51/32 scram-sha-256",
            "hostssl legacydb relation_5 192.168.9.0/24 scram-sha-256",
        ]
    );
}

/// The db-vip subordinate on this unit's host, reporting `state` for the VIP 10.0.0.100.
fn db_vip(state: &str) -> Relation {
    Relation::new(9, "vip", "db-vip").remote_unit(0, &[("vips", "10.0.0.100"), ("state", state)])
}

/// A data_interfaces client asking for database `appdb` with its credentials in a secret.
fn database_client() -> Relation {
    Relation::new(7, "database", "test-app")
        .remote_app_data(&[("database", "appdb"), SECRETS_ASKED])
        .remote_unit(0, &[("ingress-address", "10.0.0.60")])
}

#[test]
fn a_database_client_gets_nothing_while_no_unit_holds_the_db_vip() {
    let st = leader_primary()
        .with_relation(db_vip("standby"))
        .with_relation(database_client());
    let out = harness().run_ok(Trigger::RelationChanged(7, None), &st);
    assert!(
        ran(&out, |l| l.starts_with("psql -h 10.0.0.10")),
        "the database is created meanwhile"
    );
    let bag = &out.state.relation(7).unwrap().local_app_data;
    for k in ["endpoints", "secret-user", "username", "database"] {
        assert!(
            !bag.contains_key(k),
            "{k} published before the VIP is held: {bag:?}"
        );
    }
    assert_eq!(out.state.unit_status.kind, StatusKind::Waiting);
    assert!(
        out.state.unit_status.message.contains("10.0.0.100"),
        "{:?}",
        out.state.unit_status
    );
    assert_eq!(
        out.state.relation(1).unwrap().local_unit_data["vip-state"],
        "standby",
        "the peers learn this host's VIP state"
    );
}

#[test]
fn a_db_client_gets_no_host_while_no_unit_holds_the_db_vip() {
    let st = leader_primary()
        .with_relation(db_vip("standby"))
        .with_relation(secret_asking_client());
    let out = harness().run_ok(Trigger::RelationChanged(5, Some(0)), &st);
    let bag = &out.state.relation(5).unwrap().local_unit_data;
    for k in ["host", "master", "secret-user"] {
        assert!(
            !bag.contains_key(k),
            "{k} published before the VIP is held: {bag:?}"
        );
    }
}

#[test]
fn once_the_db_vip_is_held_here_the_database_client_gets_it_with_its_credentials() {
    let before = leader_primary()
        .with_relation(db_vip("standby"))
        .with_relation(database_client());
    let mut st = harness()
        .run_ok(Trigger::RelationChanged(7, None), &before)
        .state;
    st.relations
        .iter_mut()
        .find(|r| r.id == 9)
        .unwrap()
        .remote_units
        .insert(
            0,
            charm_lib::testing::bag(&[("vips", "10.0.0.100"), ("state", "held")]),
        );
    let out = harness().run_ok(Trigger::RelationChanged(9, Some(0)), &st);
    let bag = &out.state.relation(7).unwrap().local_app_data;
    assert_eq!(bag["endpoints"], "10.0.0.100:5432");
    assert_eq!(bag["database"], "appdb");
    let s = out
        .state
        .secret(&bag["secret-user"])
        .expect("credentials secret");
    assert!(s.latest_content()["uris"].ends_with("@10.0.0.100:5432/appdb"));
    assert_eq!(out.state.unit_status.kind, StatusKind::Active);
    assert_eq!(
        out.state.relation(1).unwrap().local_unit_data["vip-state"],
        "held"
    );
}

#[test]
fn a_peer_holding_the_db_vip_lets_this_unit_give_it_to_clients() {
    // This unit (the leader) is a replica: the VIP is on the primary's host, unit 1's.
    let mut st = leader_primary()
        .with_relation(db_vip("standby"))
        .with_relation(secret_asking_client());
    let mut p = peers(&[0, 1], &[1]);
    p.remote_units
        .get_mut(&1)
        .unwrap()
        .insert("vip-state".into(), "held".into());
    st.relations[0] = p;
    st.machine = with_cluster(
        with_etcd_members(installed_host(), &[(0, 0xa0, false), (1, 0xb1, false)]),
        &[
            (0, "replica", "streaming", Some(0)),
            (1, "leader", "running", None),
        ],
    );
    let out = harness().run_ok(Trigger::RelationChanged(1, Some(1)), &st);
    let bag = &out.state.relation(5).unwrap().local_unit_data;
    assert_eq!(bag["host"], "10.0.0.100");
    assert!(
        bag["master"].starts_with("host=10.0.0.100 "),
        "{}",
        bag["master"]
    );
}

#[test]
fn published_endpoints_stay_while_the_db_vip_moves_between_holders() {
    let st = leader_primary()
        .with_relation(db_vip("held"))
        .with_relation(database_client());
    let mut st = harness()
        .run_ok(Trigger::RelationChanged(7, None), &st)
        .state;
    assert_eq!(
        st.relation(7).unwrap().local_app_data["endpoints"],
        "10.0.0.100:5432"
    );
    st.relations
        .iter_mut()
        .find(|r| r.id == 9)
        .unwrap()
        .remote_units
        .insert(
            0,
            charm_lib::testing::bag(&[("vips", "10.0.0.100"), ("state", "standby")]),
        );
    let out = harness().run_ok(Trigger::RelationChanged(9, Some(0)), &st);
    let bag = &out.state.relation(7).unwrap().local_app_data;
    assert_eq!(bag["endpoints"], "10.0.0.100:5432", "not withdrawn");
    assert!(bag.contains_key("secret-user"));
    assert_eq!(out.state.unit_status.kind, StatusKind::Waiting);
}

#[test]
fn a_vip_relation_whose_subordinate_has_not_reported_yet_publishes_nothing() {
    let st = leader_primary()
        .with_relation(Relation::new(9, "vip", "db-vip"))
        .with_relation(database_client());
    let out = harness().run_ok(Trigger::RelationChanged(7, None), &st);
    assert!(!out
        .state
        .relation(7)
        .unwrap()
        .local_app_data
        .contains_key("endpoints"));
    assert_eq!(out.state.unit_status.kind, StatusKind::Waiting);
    assert!(
        out.state.unit_status.message.contains("`vip` option"),
        "{:?}",
        out.state.unit_status
    );
}

#[test]
fn without_patroni_s_view_the_published_client_data_stays_as_it_is() {
    // Arrange: two members serving a `database` client through the held DB VIP; then the other
    // member is lost with etcd's quorum (its replica is unknown, not gone).
    let mut two = leader_primary()
        .with_relation(database_client_asking(""))
        .with_relation(db_vip("held"));
    two.relations.retain(|r| r.id != 1);
    two = two.with_relation(peers(&[0, 1], &[1]));
    two.machine = with_etcd_members(
        with_cluster(
            installed_host(),
            &[
                (0, "leader", "running", None),
                (1, "sync_standby", "streaming", Some(0)),
            ],
        ),
        &[(0, 0xa1, false), (1, 0xa2, false)],
    );
    let served = harness()
        .run_ok(Trigger::RelationChanged(7, None), &two)
        .state;
    let bag = served.relation(7).unwrap().local_app_data.clone();
    let secret = bag["secret-user"].clone();
    let revisions = served.secret(&secret).unwrap().latest();
    let mut st = served.clone();
    st.machine = quorum_lost(st.machine);
    // Act.
    let out = harness().run_ok(Trigger::UpdateStatus, &st);
    // Assert: no new secret revision, no databag change.
    assert_eq!(out.state.secret(&secret).unwrap().latest(), revisions);
    assert_eq!(out.state.relation(7).unwrap().local_app_data, bag);
    assert!(logged(&out, "client relation data left as published"));
}
