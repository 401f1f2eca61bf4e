//! Backups: the `s3-parameters` relation (s3-integrator's data), pgBackRest's configuration, the
//! stanza on the primary, WAL archiving, and the backup actions' refusals.

mod common;

use charm_lib::testing::{Relation, State, Trigger};
use charm_lib::CmdOutput;
use common::*;
use serde_json::json;

const CONF: &str = "/etc/postgresql-ha/pgbackrest.conf";
const S3_ID: u32 = 20;
const SECRET_KEY: &str = "S3SecretKeyFixture0123456789";

/// What s3-integrator writes (data-platform-libs `s3.py` `S3Provider.update_connection_info`:
/// strings, and JSON lists for tls-ca-chain).
fn s3_data() -> Vec<(&'static str, &'static str)> {
    vec![
        ("access-key", "AKFIXTURE"),
        ("secret-key", SECRET_KEY),
        ("bucket", "maas-backups"),
        ("endpoint", "https://s3.example.com:9443"),
        ("path", "/site1"),
        ("region", "eu-west-1"),
        ("s3-uri-style", "path"),
        (
            "tls-ca-chain",
            "[\"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\"]",
        ),
    ]
}

fn with_s3(st: State, data: &[(&str, &str)]) -> State {
    st.with_relation(
        Relation::new(S3_ID, "s3-parameters", "s3-integrator")
            .remote_unit(0, &[])
            .remote_app_data(data),
    )
}

const STANZA_CREATE: [&str; 4] = [
    "pgbackrest",
    "--config=/etc/postgresql-ha/pgbackrest.conf",
    "--stanza=postgresql-ha",
    "stanza-create",
];

#[test]
fn the_primary_archives_wal_once_its_stanza_is_in_the_bucket() {
    // Arrange: a running primary (the leader), related to s3-integrator that has answered.
    let st = with_s3(leader_primary(), &s3_data());
    // Act
    let out = harness().run_ok(Trigger::RelationChanged(S3_ID, None), &st);
    // Assert
    let conf = out
        .state
        .machine
        .files
        .get(std::path::Path::new(CONF))
        .expect("pgbackrest.conf written");
    assert_eq!(
        (
            conf.options.owner.as_str(),
            conf.options.group.as_str(),
            conf.options.mode
        ),
        ("root", "postgres", 0o640),
        "only root and postgres read the S3 secret key"
    );
    for line in [
        "repo1-s3-key-secret=".to_string() + SECRET_KEY,
        "repo1-s3-endpoint=s3.example.com".into(),
        "repo1-path=/site1".into(),
        "[postgresql-ha]".into(),
    ] {
        assert!(conf.text().lines().any(|l| l == line), "{line}");
    }
    assert!(out
        .state
        .machine
        .text("/etc/postgresql-ha/tls/s3-ca.pem")
        .unwrap()
        .contains("MIIB"));
    let create = out
        .runs
        .iter()
        .find(|c| c.argv().starts_with(&STANZA_CREATE.map(String::from)))
        .expect("stanza-create ran on the primary");
    assert_eq!(create.user.as_deref(), Some("postgres"));
    let pg = &patroni_yml(&out.state)["postgresql"]["parameters"];
    assert_eq!(pg["archive_mode"], "on");
    assert_eq!(pg["archive_command"], "pgbackrest --config=/etc/postgresql-ha/pgbackrest.conf --stanza=postgresql-ha archive-push %p");
    let peer = out.state.relation(1).unwrap();
    assert_eq!(
        peer.local_unit_data
            .get("backup-stanza")
            .map(String::as_str),
        Some("s3://s3.example.com:9443/maas-backups/site1")
    );
    // The requirer names a bucket, as the s3 library's S3Requirer does on joining.
    assert_eq!(
        out.state
            .relation(S3_ID)
            .unwrap()
            .local_app_data
            .get("bucket")
            .map(String::as_str),
        Some("relation-20")
    );
    assert!(
        !out.mentions(SECRET_KEY),
        "the S3 secret key is in no log, status or databag of ours"
    );
    assert!(
        !out.command_lines().iter().any(|l| l.contains(SECRET_KEY)),
        "nor on a command line"
    );

    // Running the hook again changes nothing and does not create the stanza again.
    let again = harness().run_ok(Trigger::UpdateStatus, &out.state);
    assert!(!again
        .commands
        .iter()
        .any(|c| c.starts_with(&STANZA_CREATE.map(String::from))));
    assert_eq!(again.state.machine.text(CONF), out.state.machine.text(CONF));
}

#[test]
fn another_clusters_repository_blocks_and_archives_nothing() {
    // Arrange: the bucket holds another cluster's stanza: pgBackRest refuses.
    let mut st = with_s3(leader_primary(), &s3_data());
    st.machine = st.machine.respond(
        &STANZA_CREATE,
        CmdOutput::failed(28, "ERROR: [028]: backup and archive info files exist but do not match the database\n       HINT: is this the correct stanza?"),
    );
    // Act
    let out = harness().run_ok(Trigger::RelationChanged(S3_ID, None), &st);
    // Assert: the reason on the unit, no failing archive_command to fill the disk with WAL.
    let status = &out.state.unit_status;
    assert_eq!(status.kind, charm_lib::StatusKind::Blocked, "{status:?}");
    assert!(
        status.message.contains("do not match the database"),
        "{status:?}"
    );
    assert_eq!(
        patroni_yml(&out.state)["postgresql"]["parameters"]["archive_command"],
        "/bin/true"
    );
}

#[test]
fn garbled_provider_data_is_named_and_nothing_is_written() {
    let mut data = s3_data();
    data.retain(|(k, _)| *k != "tls-ca-chain");
    data.push(("tls-ca-chain", "not json"));
    let out = harness().run_ok(
        Trigger::RelationChanged(S3_ID, None),
        &with_s3(leader_primary(), &data),
    );
    let status = &out.state.unit_status;
    assert_eq!(status.kind, charm_lib::StatusKind::Blocked, "{status:?}");
    assert!(
        status.message.starts_with("s3-parameters: tls-ca-chain"),
        "{status:?}"
    );
    assert!(out.state.machine.text(CONF).is_none());
}

#[test]
fn the_relation_gone_removes_the_credentials_and_stops_archiving() {
    let related = harness()
        .run(
            Trigger::RelationChanged(S3_ID, None),
            &with_s3(leader_primary(), &s3_data()),
        )
        .unwrap();
    let mut st = related.state.clone();
    st.relations.retain(|r| r.id != S3_ID);
    let out = harness().run_ok(Trigger::UpdateStatus, &st);
    assert!(
        out.state.machine.text(CONF).is_none(),
        "no stale S3 key on disk"
    );
    assert_eq!(
        patroni_yml(&out.state)["postgresql"]["parameters"]["archive_command"],
        "/bin/true"
    );
    // The backup exporter went with it (its scrape job too: a missing target fires HostDown).
    assert!(related
        .state
        .machine
        .services
        .get("postgresql-ha-backup-metrics.service")
        .is_some_and(|s| s.active));
    assert!(out
        .state
        .machine
        .services
        .get("postgresql-ha-backup-metrics.service")
        .is_none_or(|s| !s.active && !s.enabled));
    assert!(out
        .state
        .machine
        .text("/etc/systemd/system/postgresql-ha-backup-metrics.service")
        .is_none());
    assert_eq!(
        out.state
            .relation(1)
            .unwrap()
            .local_unit_data
            .get("backup-stanza")
            .map(String::as_str),
        None
    );
}

#[test]
fn backup_actions_refuse_with_the_way_forward() {
    // No repository.
    let out = harness()
        .run(
            Trigger::Action("create-backup".into(), json!({})),
            &leader_primary(),
        )
        .unwrap();
    assert!(
        out.action
            .failed
            .as_deref()
            .unwrap()
            .contains("relate s3-parameters"),
        "{:?}",
        out.action.failed
    );
    // A replica is told which unit is the primary.
    let related = harness()
        .run(
            Trigger::RelationChanged(S3_ID, None),
            &with_s3(leader_primary(), &s3_data()),
        )
        .unwrap();
    let mut st = related.state.clone();
    let files = st.machine.files.clone();
    st.machine = with_etcd_members(
        with_cluster(
            installed_host(),
            &[
                (0, "replica", "streaming", Some(0)),
                (1, "leader", "running", None),
            ],
        ),
        &[(0, 0xa1, false)],
    );
    st.machine.files = files;
    let out = harness()
        .run(
            Trigger::Action("create-backup".into(), json!({"type": "full"})),
            &st,
        )
        .unwrap();
    assert!(
        out.action
            .failed
            .as_deref()
            .unwrap()
            .contains("run create-backup on the primary, postgresql-ha/1"),
        "{:?}",
        out.action.failed
    );
    // Restore needs one unit, and a backup id or a time in PostgreSQL's syntax.
    let out = harness()
        .run(Trigger::Action("restore".into(), json!({})), &related.state)
        .unwrap();
    assert!(out
        .action
        .failed
        .as_deref()
        .unwrap()
        .contains("give backup-id"));
    let out = harness()
        .run(
            Trigger::Action(
                "restore".into(),
                json!({"restore-to-time": "now'; drop table x"}),
            ),
            &related.state,
        )
        .unwrap();
    assert!(out
        .action
        .failed
        .as_deref()
        .unwrap()
        .contains("expected YYYY-MM-DD"));
    let mut three = related.state.clone();
    *three.relations.iter_mut().find(|r| r.id == 1).unwrap() = peers(&[0, 1, 2], &[1, 2]);
    let out = harness()
        .run(
            Trigger::Action("restore".into(), json!({"backup-id": "20261207-070755F"})),
            &three,
        )
        .unwrap();
    assert!(
        out.action
            .failed
            .as_deref()
            .unwrap()
            .contains("scale postgresql-ha to one unit first"),
        "{:?}",
        out.action.failed
    );
}

#[test]
fn a_unit_that_becomes_the_primary_in_this_hook_creates_the_stanza_in_it() {
    // Arrange: Patroni does not answer at the start of the hook (not started yet); once
    // started it reports this unit as the primary.
    let mut st = with_s3(leader_primary(), &s3_data());
    st.machine = st.machine.respond_times(
        &["curl"],
        CmdOutput::failed(7, "curl: (7) Failed to connect to 127.0.0.1 port 8008"),
        1,
    );
    // Act
    let out = harness().run_ok(Trigger::RelationChanged(S3_ID, None), &st);
    // Assert: the stanza in this hook, and Patroni's configuration archiving through it.
    assert!(out
        .commands
        .iter()
        .any(|c| c.starts_with(&STANZA_CREATE.map(String::from))));
    assert_eq!(
        patroni_yml(&out.state)["postgresql"]["parameters"]["archive_command"],
        "pgbackrest --config=/etc/postgresql-ha/pgbackrest.conf --stanza=postgresql-ha archive-push %p"
    );
}

const FAILED_BOOTSTRAP: &str = "2026-12-07 07:24:27,322 INFO: Running custom bootstrap script: pgbackrest --stanza=postgresql-ha restore\nERROR: [073]: unable to find archive for 000000010000000000000005\n2026-12-07 07:24:27,414 INFO: removing initialize key after failed attempt to bootstrap the cluster\n";

#[test]
fn a_restore_whose_bootstrap_failed_stops_patroni_and_says_why() {
    // Arrange: the leader restoring; Patroni runs but its bootstrap from pgBackRest failed.
    let mut st = with_s3(leader_primary(), &s3_data());
    st.relations
        .iter_mut()
        .find(|r| r.id == 1)
        .unwrap()
        .local_app_data
        .insert(
            "restoring".into(),
            r#"{"time":"2026-12-07 07:30:00+00"}"#.into(),
        );
    st.machine = running(
        st.machine
            .respond(
                &["journalctl", "-u", "postgresql-ha-patroni"],
                CmdOutput::ok(FAILED_BOOTSTRAP),
            )
            // Patroni's API does not answer while it bootstraps (ahead of the cluster answer).
            .respond_times(
                &["curl"],
                CmdOutput::failed(7, "curl: (7) Failed to connect to 127.0.0.1 port 8008"),
                1000,
            ),
        &["postgresql-ha-patroni"],
    );
    // Act
    let out = harness().run_ok(Trigger::UpdateStatus, &st);
    // Assert: stopped (no endless retries, no initdb later), the reason on the unit, recorded.
    assert!(
        ran(&out, |l| l
            .starts_with("systemctl stop postgresql-ha-patroni")),
        "{:#?}",
        out.command_lines()
    );
    assert_eq!(out.state.unit_status.kind, charm_lib::StatusKind::Blocked);
    assert!(
        out.state
            .unit_status
            .message
            .starts_with("restore failed: ERROR: [073]: unable to find archive"),
        "{:?}",
        out.state.unit_status
    );
    let app = &out.state.relation(1).unwrap().local_app_data;
    assert!(app.get("restore-failed").unwrap().contains("[073]"));
    assert_eq!(app.get("restoring"), None);

    // Later hooks keep PostgreSQL stopped: an emptied data directory must not be initdb'd.
    let later = harness().run_ok(Trigger::UpdateStatus, &out.state);
    assert!(
        !ran(&later, |l| l
            .starts_with("systemctl start postgresql-ha-patroni")),
        "{:#?}",
        later.command_lines()
    );
    assert_eq!(later.state.unit_status.kind, charm_lib::StatusKind::Blocked);
}

const TIMER: &str = "postgresql-ha-backup.timer";

#[test]
fn a_backup_schedule_becomes_a_timer_on_every_unit_that_backs_up_on_the_primary() {
    // Arrange: a schedule every six hours, a repository to back up into.
    let st = with_s3(leader_primary(), &s3_data()).with_config("backup-schedule", "30 */6 * * *");
    // Act
    let out = harness().run_ok(Trigger::ConfigChanged, &st);
    // Assert: the calendar event fires when cron would, the service runs the root-owned script
    // as postgres, and the timer runs.
    let timer = out
        .state
        .machine
        .text("/etc/systemd/system/postgresql-ha-backup.timer")
        .expect("timer written");
    assert!(
        timer.contains("\nOnCalendar=*-*-* 00,06,12,18:30:00 UTC\n"),
        "{timer}"
    );
    let service = out
        .state
        .machine
        .text("/etc/systemd/system/postgresql-ha-backup.service")
        .unwrap();
    assert!(
        service.contains("\nUser=postgres\n")
            && service.contains("\nExecStart=/etc/postgresql-ha/scheduled-backup\n")
    );
    let script = out
        .state
        .machine
        .files
        .get(std::path::Path::new("/etc/postgresql-ha/scheduled-backup"))
        .unwrap();
    assert_eq!(
        (script.options.owner.as_str(), script.options.mode),
        ("root", 0o755)
    );
    let svc = out.state.machine.services.get(TIMER).expect("timer known");
    assert!(svc.enabled && svc.active, "{svc:?}");
    assert_eq!(out.state.unit_status.kind, charm_lib::StatusKind::Active);

    // The schedule emptied: the timer is stopped and its files go.
    let st = out.state.clone().with_config("backup-schedule", "");
    let off = harness().run_ok(Trigger::ConfigChanged, &st);
    assert!(ran(&off, |l| l
        == "systemctl disable --now postgresql-ha-backup.timer"));
    for f in [
        "/etc/systemd/system/postgresql-ha-backup.timer",
        "/etc/systemd/system/postgresql-ha-backup.service",
        "/etc/postgresql-ha/scheduled-backup",
    ] {
        assert!(off.state.machine.text(f).is_none(), "{f} left behind");
    }
}

#[test]
fn a_bad_schedule_or_one_without_a_repository_blocks_naming_the_option() {
    let out = harness().run_ok(
        Trigger::ConfigChanged,
        &with_s3(leader_primary(), &s3_data()).with_config("backup-schedule", "daily at 2"),
    );
    let status = &out.state.unit_status;
    assert_eq!(status.kind, charm_lib::StatusKind::Blocked, "{status:?}");
    assert!(
        status.message.contains("backup-schedule")
            && status.message.contains("expected a cron schedule"),
        "{status:?}"
    );
    assert!(out
        .state
        .machine
        .text("/etc/systemd/system/postgresql-ha-backup.timer")
        .is_none());

    let out = harness().run_ok(
        Trigger::ConfigChanged,
        &leader_primary().with_config("backup-schedule", "@daily"),
    );
    let status = &out.state.unit_status;
    assert_eq!(status.kind, charm_lib::StatusKind::Blocked, "{status:?}");
    assert!(
        status
            .message
            .starts_with("backup-schedule is set but there is no backup repository"),
        "{status:?}"
    );
    assert!(out
        .state
        .machine
        .text("/etc/systemd/system/postgresql-ha-backup.timer")
        .is_none());
}

const FP: &str = "s3://s3.example.com:9443/maas-backups/site1";

#[test]
fn a_new_repository_is_encrypted_with_a_passphrase_only_the_secret_and_the_file_hold() {
    // Arrange: a repository no unit has a stanza in.
    let st = with_s3(leader_primary(), &s3_data());
    // Act
    let out = harness().run_ok(Trigger::RelationChanged(S3_ID, None), &st);
    // Assert: the leader recorded the decision and created the passphrase secret, shared by id.
    let peer = out.state.relation(1).unwrap();
    assert_eq!(
        peer.local_app_data
            .get("backup-encryption")
            .map(String::as_str),
        Some(format!("{FP} aes-256-cbc").as_str())
    );
    let secret = out
        .state
        .secret("backup-passphrase")
        .expect("the passphrase secret");
    let pass = secret.revisions.last().unwrap()["passphrase"].clone();
    assert_eq!(pass.len(), 64);
    let xid = secret.id.trim_start_matches("secret:");
    assert!(
        peer.local_app_data
            .get("backup-passphrase-secret")
            .is_some_and(|id| id.ends_with(&format!("/{xid}")) || id.ends_with(&format!(":{xid}"))),
        "the secret's id is shared: {:?}",
        peer.local_app_data
    );
    let conf = out.state.machine.text(CONF).unwrap();
    assert!(conf.lines().any(|l| l == "repo1-cipher-type=aes-256-cbc"));
    assert!(conf
        .lines()
        .any(|l| l == format!("repo1-cipher-pass={pass}")));
    assert!(
        !out.mentions(&pass),
        "the passphrase is in no log, status or databag"
    );
    assert!(!out.command_lines().iter().any(|l| l.contains(&pass)));

    // A second unit reads the same passphrase through the shared id.
    let mut st2 = out.state.clone();
    st2.leader = false;
    let again = harness().run_ok(Trigger::UpdateStatus, &st2);
    assert!(again
        .state
        .machine
        .text(CONF)
        .unwrap()
        .contains(&format!("repo1-cipher-pass={pass}\n")));
}

#[test]
fn a_stanza_an_earlier_revision_created_unencrypted_stays_unencrypted() {
    // Arrange: this unit checked the repository's stanza before the charm encrypted (no
    // decision recorded); pgBackRest keeps a stanza's cipher for good.
    let mut st = with_s3(leader_primary(), &s3_data());
    st.relations
        .iter_mut()
        .find(|r| r.id == 1)
        .unwrap()
        .local_unit_data
        .insert("backup-stanza".into(), FP.into());
    // Act
    let out = harness().run_ok(Trigger::UpgradeCharm, &st);
    // Assert
    assert_eq!(
        out.state
            .relation(1)
            .unwrap()
            .local_app_data
            .get("backup-encryption")
            .map(String::as_str),
        Some(format!("{FP} none").as_str())
    );
    assert!(!out.state.machine.text(CONF).unwrap().contains("cipher"));
    assert!(out.state.secret("backup-passphrase").is_none());
    assert_eq!(
        patroni_yml(&out.state)["postgresql"]["parameters"]["archive_command"],
        "pgbackrest --config=/etc/postgresql-ha/pgbackrest.conf --stanza=postgresql-ha archive-push %p",
        "archiving goes on without a pause"
    );
}

#[test]
fn a_non_leader_waits_for_the_leaders_decision_on_a_new_repository() {
    let mut st = with_s3(leader_primary(), &s3_data());
    st.leader = false;
    let out = harness().run_ok(Trigger::RelationChanged(S3_ID, None), &st);
    let status = &out.state.unit_status;
    assert_eq!(status.kind, charm_lib::StatusKind::Waiting, "{status:?}");
    assert!(status.message.contains("encryption"), "{status:?}");
    assert!(out.state.machine.text(CONF).is_none());
}

#[test]
fn another_deployments_passphrase_is_taken_before_its_repository_is_ours() {
    // Arrange: a fresh deployment related to a repository another deployment encrypted; the
    // primary's stanza-create failed there (pgBackRest cannot read the other cluster's files),
    // so no stanza of this cluster is recorded.
    let mut st = with_s3(leader_primary(), &s3_data());
    st.machine = st.machine.respond(
        &STANZA_CREATE,
        CmdOutput::failed(
            28,
            "ERROR: [028]: backup and archive info files exist but do not match the database",
        ),
    );
    let related = harness().run_ok(Trigger::RelationChanged(S3_ID, None), &st);
    let theirs = "TheOtherDeploymentsPassphrase0123456789";
    // Act
    let out = harness()
        .run(
            Trigger::Action(
                "set-backup-passphrase".into(),
                json!({"passphrase": theirs}),
            ),
            &related.state,
        )
        .unwrap();
    // Assert: the secret holds it, pgBackRest's configuration uses it, nothing echoes it.
    assert_eq!(out.action.failed, None);
    let secret = out.state.secret("backup-passphrase").unwrap();
    assert_eq!(secret.revisions.last().unwrap()["passphrase"], theirs);
    assert!(out
        .state
        .machine
        .text(CONF)
        .unwrap()
        .contains(&format!("\nrepo1-cipher-pass={theirs}\n")));
    assert!(!out.mentions(theirs));
    assert!(!format!("{:?}", out.action.results).contains(theirs));
    assert!(!out.command_lines().iter().any(|l| l.contains(theirs)));

    // An unencrypted repository: empty.
    let plain = harness()
        .run(
            Trigger::Action("set-backup-passphrase".into(), json!({"passphrase": ""})),
            &related.state,
        )
        .unwrap();
    assert_eq!(plain.action.failed, None);
    assert!(!plain.state.machine.text(CONF).unwrap().contains("cipher"));

    // Once this cluster archives into the repository, refused.
    let ours = harness().run_ok(
        Trigger::RelationChanged(S3_ID, None),
        &with_s3(leader_primary(), &s3_data()),
    );
    let refused = harness()
        .run(
            Trigger::Action(
                "set-backup-passphrase".into(),
                json!({"passphrase": theirs}),
            ),
            &ours.state,
        )
        .unwrap();
    assert!(
        refused
            .action
            .failed
            .as_deref()
            .is_some_and(|f| f.contains("would make its backups unreadable")),
        "{:?}",
        refused.action.failed
    );
    // Too short a passphrase is refused naming the parameter.
    let short = harness()
        .run(
            Trigger::Action("set-backup-passphrase".into(), json!({"passphrase": "abc"})),
            &related.state,
        )
        .unwrap();
    assert!(short
        .action
        .failed
        .as_deref()
        .unwrap()
        .starts_with("passphrase:"));
}

const INFO_ALL: [&str; 4] = [
    "pgbackrest",
    "--config=/etc/postgresql-ha/pgbackrest.conf",
    "--output=json",
    "info",
];
/// The system id of the other deployment's cluster, in its stanza and (once restored from
/// it) in this cluster's pg_control.
const THEIR_SYSTEM_ID: u64 = 7716604284283152322;

/// `pgbackrest info --output=json` (pgBackRest 2.45) of a repository holding only the stanza
/// `maas-db` of another deployment, read with its passphrase (`readable`) or with another
/// (`[FormatError]` on its info file, the stanza's status `other`).
fn their_repository(readable: bool) -> String {
    if readable {
        format!(
            r#"[{{"archive":[],"backup":[{{"label":"20261207-164545F","type":"full","error":false,"timestamp":{{"start":1796661945,"stop":1796661947}},"info":{{"size":22992374,"repository":{{"size":3069136}}}},"archive":{{"start":"000000010000000000000002","stop":"000000010000000000000002"}}}}],"cipher":"aes-256-cbc","db":[{{"id":1,"repo-key":1,"system-id":{THEIR_SYSTEM_ID},"version":"15"}}],"name":"maas-db","repo":[{{"cipher":"aes-256-cbc","key":1,"status":{{"code":0,"message":"ok"}}}}],"status":{{"code":0,"message":"ok"}}}}]"#
        )
    } else {
        r#"[{"archive":[],"backup":[],"cipher":"aes-256-cbc","db":[],"name":"maas-db","repo":[{"cipher":"aes-256-cbc","key":1,"status":{"code":99,"message":"[FormatError] unable to load info file '/site1/backup/maas-db/backup.info' or '/site1/backup/maas-db/backup.info.copy':\nFormatError: key/value found outside of section at line 1: QU_GARBAGE\nHINT: has a stanza-create been performed?"}}],"status":{"code":99,"message":"other"}}]"#
            // pgBackRest prints the bytes it could not decrypt as they are.
            .replace("QU_GARBAGE", "qU\u{1}\u{fffd}\u{2}")
    }
}

/// This cluster's `global/pg_control`, whose first 8 bytes are its system identifier.
fn with_system_id(mut st: State, id: u64) -> State {
    let mut control = id.to_ne_bytes().to_vec();
    control.resize(8192, 0);
    st.machine.files.insert(
        "/var/lib/postgresql-ha/data/global/pg_control".into(),
        charm_lib::testing::VFile {
            content: control,
            options: charm_lib::FileOptions::new("postgres", "postgres", 0o600),
            is_dir: false,
        },
    );
    st
}

#[test]
fn a_fresh_deployment_starts_no_stanza_beside_another_deployments_backups() {
    // Arrange: a fresh cluster (its own system id) related to a repository that holds another
    // deployment's stanza and not this one's.
    let mut st = with_system_id(with_s3(leader_primary(), &s3_data()), 42);
    st.machine = st
        .machine
        .respond(&INFO_ALL, CmdOutput::ok(their_repository(false)));
    // Act
    let out = harness().run_ok(Trigger::RelationChanged(S3_ID, None), &st);
    // Assert: blocked with the way forward; nothing written into their repository, and
    // nothing archived.
    let status = &out.state.unit_status;
    assert_eq!(status.kind, charm_lib::StatusKind::Blocked, "{status:?}");
    for part in ["stanza maas-db", "set-backup-passphrase", "restore"] {
        assert!(status.message.contains(part), "{part}: {status:?}");
    }
    assert!(!out
        .commands
        .iter()
        .any(|c| c.starts_with(&STANZA_CREATE.map(String::from))));
    assert_eq!(
        patroni_yml(&out.state)["postgresql"]["parameters"]["archive_command"],
        "/bin/true"
    );
    assert_eq!(
        out.state
            .relation(1)
            .unwrap()
            .local_unit_data
            .get("backup-stanza"),
        None
    );
}

#[test]
fn a_cluster_restored_from_another_deployments_stanza_archives_into_its_own() {
    // Arrange: the cluster now has the other deployment's system id (restored from maas-db),
    // whose stanza it reads with that deployment's passphrase.
    let mut st = with_system_id(with_s3(leader_primary(), &s3_data()), THEIR_SYSTEM_ID);
    st.machine = st
        .machine
        .respond(&INFO_ALL, CmdOutput::ok(their_repository(true)));
    // Act
    let out = harness().run_ok(Trigger::UpdateStatus, &st);
    // Assert: its own stanza, postgresql-ha, beside theirs; WAL goes there, not to maas-db.
    assert!(out
        .commands
        .iter()
        .any(|c| c.starts_with(&STANZA_CREATE.map(String::from))));
    assert_eq!(
        patroni_yml(&out.state)["postgresql"]["parameters"]["archive_command"],
        "pgbackrest --config=/etc/postgresql-ha/pgbackrest.conf --stanza=postgresql-ha archive-push %p"
    );
    assert_ne!(
        out.state.unit_status.kind,
        charm_lib::StatusKind::Blocked,
        "{:?}",
        out.state.unit_status
    );
}

#[test]
fn a_restore_from_backups_this_deployment_cannot_decrypt_is_refused_before_anything_stops() {
    // Arrange: a fresh deployment whose passphrase is not the one maas-db was encrypted with.
    let mut st = with_s3(leader_primary(), &s3_data());
    st.machine = st
        .machine
        .respond(&INFO_ALL, CmdOutput::ok(their_repository(false)));
    let mut related = harness().run_ok(Trigger::RelationChanged(S3_ID, None), &st);
    // Each case below says what the repository answers.
    related
        .state
        .machine
        .responders
        .retain(|r| r.prefix != INFO_ALL.map(String::from));
    let mut st = related.state.clone();
    st.machine = st
        .machine
        .respond(
            &[
                "pgbackrest",
                "--config=/etc/postgresql-ha/pgbackrest.conf",
                "--stanza=maas-db",
            ],
            CmdOutput::ok(their_repository(false)),
        )
        .respond(&INFO_ALL, CmdOutput::ok(their_repository(false)));
    // Act
    let out = harness()
        .run(
            Trigger::Action(
                "restore".into(),
                json!({"restore-to-time": "2026-12-07 17:00:00+00"}),
            ),
            &st,
        )
        .unwrap();
    // Assert: the stanza it would read is named (the only one there), and the way forward.
    let why = out.action.failed.as_deref().expect("refused");
    assert!(why.contains("stanza maas-db"), "{why}");
    assert!(why.contains("run set-backup-passphrase"), "{why}");
    assert!(!why.contains("qU"), "{why}");
    assert!(
        !ran(&out, |l| l
            .starts_with("systemctl stop postgresql-ha-patroni")),
        "{:#?}",
        out.command_lines()
    );

    // With their passphrase the same restore reads maas-db and reports it.
    let mut st = related.state.clone();
    st.machine = st
        .machine
        .respond(
            &[
                "pgbackrest",
                "--config=/etc/postgresql-ha/pgbackrest.conf",
                "--stanza=maas-db",
            ],
            CmdOutput::ok(their_repository(true)),
        )
        .respond(&INFO_ALL, CmdOutput::ok(their_repository(true)));
    let out = harness()
        .run(
            Trigger::Action(
                "restore".into(),
                json!({"restore-to-time": "2026-12-07 17:00:00+00"}),
            ),
            &st,
        )
        .unwrap();
    assert_eq!(out.action.failed, None, "{:#?}", out.command_lines());
    assert_eq!(
        out.action.results["stanza"], "maas-db",
        "{:?}",
        out.action.results
    );
    assert_eq!(out.action.results["status"], "restored");

    // Several other stanzas and none named: refused, naming them.
    let two = format!(
        "[{},{}]",
        their_repository(true).trim_matches(['[', ']']),
        their_repository(true)
            .trim_matches(['[', ']'])
            .replace("maas-db", "other-db")
    );
    let mut st = related.state.clone();
    st.machine = st.machine.respond(&INFO_ALL, CmdOutput::ok(two));
    let out = harness()
        .run(
            Trigger::Action("restore".into(), json!({"backup-id": "20261207-164545F"})),
            &st,
        )
        .unwrap();
    let why = out.action.failed.as_deref().expect("refused");
    assert!(
        why.contains("maas-db, other-db") && why.contains("stanza="),
        "{why}"
    );
}
