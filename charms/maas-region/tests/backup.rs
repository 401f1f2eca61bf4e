//! Region backups (issue 23): the s3-parameters relation, create-backup, list-backups,
//! restore, backup-schedule, the backup passphrase (set-backup-passphrase) and
//! backup-retention.

mod common;

use charm_lib::machine::CmdOutput;
use charm_lib::testing::{Output, Relation, State, Trigger, VFile};
use charm_lib::{FileOptions, StatusKind};
use common::*;
use serde_json::json;

const S3: u32 = 9;
const SECRET_KEY: &str = "s3cr3t-K3y/with+odd=chars";
const SNAP_ID: &str = "/var/snap/maas/common/maas/maas_id";
const CONF: &str = "/etc/maas-region-backup/s3cmd.cfg";
const JOB: &str = "/etc/maas-region-backup/job.json";
const FOLDER: &str = "s3://backups/maas/maas-region/";
const ID: &str = "2026-12-07T07:30:00Z";
const PASS_FILE: &str = "/etc/maas-region-backup/passphrase";
const LABEL: &str = "maas-region-backup-passphrase";
const WORK: &str = "/var/lib/maas-region-backup";
/// gpg as the charm runs it, up to the operation.
const GPG: [&str; 12] = [
    "gpg",
    "--batch",
    "--yes",
    "--no-tty",
    "--quiet",
    "--homedir",
    "/var/lib/maas-region-backup/gnupg",
    "--pinentry-mode",
    "loopback",
    "--no-symkey-cache",
    "--passphrase-fd",
    "0",
];

/// `argv` after gpg's common options.
fn gpg(rest: &[&str]) -> Vec<String> {
    GPG.iter().chain(rest).map(|s| s.to_string()).collect()
}

/// The passphrase the leader created, from its secret.
fn passphrase_of(st: &State) -> String {
    let s = st.secret(LABEL).expect("the passphrase secret");
    s.revisions.last().unwrap()["passphrase"].clone()
}

/// The provider's data as s3-integrator writes it.
fn s3(extra: &[(&str, &str)]) -> Relation {
    let mut data = vec![
        ("access-key", "AK"),
        ("secret-key", SECRET_KEY),
        ("bucket", "backups"),
        ("endpoint", "https://s3.example.com:9443"),
        ("path", "/maas"),
        ("s3-uri-style", "path"),
        (
            "tls-ca-chain",
            "[\"-----BEGIN CERTIFICATE-----\\nX\\n-----END CERTIFICATE-----\"]",
        ),
    ];
    data.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    data.extend(extra.iter().filter(|(_, v)| !v.is_empty()));
    Relation::new(S3, "s3-parameters", "s3-integrator").remote_app_data(&data)
}

fn dir(st: &mut State, path: &str) {
    st.machine.files.insert(
        path.into(),
        VFile {
            content: vec![],
            options: FileOptions::root(0o755),
            is_dir: true,
        },
    );
}

/// A serving snap region (leader) whose regiond wrote its maas_id, with a peer that published
/// its own, and the MAAS 3.5+ directories.
fn serving() -> State {
    let mut st = fresh_leader();
    st.relations.retain(|r| r.id != PEERS);
    let mut st = installed_snap(
        st.with_relation(peers(&[(1, "10.0.0.6")]))
            .with_relation(vip("10.0.0.100")),
    );
    st = snap_initialised_unit(st, "10.0.0.5", "http://10.0.0.100/MAAS");
    st.machine = st
        .machine
        .with_file(SNAP_ID, "abc123\n", FileOptions::root(0o644));
    dir(&mut st, "/var/snap/maas/common/maas/image-storage");
    dir(&mut st, "/var/snap/maas/current/preseeds");
    if let Some(p) = st.relations.iter_mut().find(|r| r.id == PEERS) {
        if let Some(u) = p.remote_units.get_mut(&1) {
            u.insert("maas-id".into(), "def456".into());
        }
    }
    settle(&harness(0), st)
}

fn run(st: &State, name: &str, params: serde_json::Value) -> Output {
    let out = harness(0)
        .run(Trigger::Action(name.into(), params), st)
        .unwrap();
    assert!(
        !out.failed(),
        "an action never fails the unit: {:?}",
        out.error
    );
    out
}

fn hook(st: &State) -> Output {
    harness(0).run_ok(Trigger::UpdateStatus, st)
}

#[test]
fn the_relation_gives_s3cmd_a_root_only_configuration_and_the_peers_this_regions_id() {
    let st = serving().with_relation(s3(&[]));
    let out = hook(&st);
    let conf = out
        .state
        .machine
        .files
        .get(std::path::Path::new(CONF))
        .unwrap();
    assert_eq!(
        (conf.options.owner.as_str(), conf.options.mode),
        ("root", 0o600)
    );
    let text = conf.text();
    for line in [
        &format!("secret_key = {SECRET_KEY}") as &str,
        "host_base = s3.example.com:9443",
        "host_bucket = s3.example.com:9443",
        "ca_certs_file = /etc/maas-region-backup/s3-ca.pem",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    assert!(out
        .state
        .machine
        .text("/etc/maas-region-backup/s3-ca.pem")
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    // s3cmd from the distribution, installed once the relation is usable.
    assert!(out.state.machine.packages.contains("s3cmd"));
    // The key is in the 0600 file only: on no command line, in no log.
    assert!(!out.mentions(SECRET_KEY));
    // The s3 library's requirer asks for a bucket; this unit's maas_id goes to its peers.
    let rel = out.state.relation(S3).unwrap();
    assert_eq!(rel.local_app_data["bucket"], format!("relation-{S3}"));
    let peers = out.state.relation(PEERS).unwrap();
    assert_eq!(peers.local_unit_data["maas-id"], "abc123");
    let job: serde_json::Value =
        serde_json::from_str(&out.state.machine.text(JOB).unwrap()).unwrap();
    assert_eq!(
        job["regions"],
        json!({"maas-region/0": "abc123", "maas-region/1": "def456"})
    );
    assert_eq!(
        out.state.unit_status.kind,
        StatusKind::Active,
        "{:?}",
        out.state.unit_status
    );

    // The relation gone: nothing with the key is left behind.
    let mut gone = out.state.clone();
    gone.relations.retain(|r| r.id != S3);
    let out = hook(&gone);
    assert!(out.state.machine.text(CONF).is_none());
    assert!(out.state.machine.text(JOB).is_none());
}

#[test]
fn missing_or_unusable_provider_data_is_named() {
    let out = hook(&serving().with_relation(s3(&[("secret-key", ""), ("bucket", "")])));
    assert_eq!(out.state.unit_status.kind, StatusKind::Waiting);
    assert_eq!(
        out.state.unit_status.message,
        "s3-parameters: waiting for the S3 provider's secret-key, bucket"
    );
    assert!(out.state.machine.text(CONF).is_none());
    let out = hook(&serving().with_relation(s3(&[("endpoint", "http://s3.example.com")])));
    assert_eq!(out.state.unit_status.kind, StatusKind::Blocked);
    assert!(
        out.state
            .unit_status
            .message
            .starts_with("s3-parameters: endpoint"),
        "{}",
        out.state.unit_status.message
    );
    let out = hook(&serving().with_relation(s3(&[("secret-key", "a\nhost_base = evil")])));
    assert_eq!(out.state.unit_status.kind, StatusKind::Blocked);
    assert_eq!(
        out.state.unit_status.message,
        "s3-parameters: secret-key holds a line break"
    );
    assert!(out.state.machine.text(CONF).is_none());
}

#[test]
fn a_schedule_runs_a_timer_on_the_leader_only_and_needs_a_bucket() {
    let st = serving().with_config("backup-schedule", "0 2 * * *");
    let out = hook(&st);
    assert_eq!(out.state.unit_status.kind, StatusKind::Blocked);
    assert!(out
        .state
        .unit_status
        .message
        .starts_with("backup-schedule is set but there is no backup bucket"));

    let out = hook(&st.clone().with_relation(s3(&[])));
    let timer = out
        .state
        .machine
        .text("/etc/systemd/system/maas-region-backup.timer")
        .unwrap();
    assert!(
        timer.contains("\nOnCalendar=*-*-* 02:00:00 UTC\n"),
        "{timer}"
    );
    let service = out
        .state
        .machine
        .text("/etc/systemd/system/maas-region-backup.service")
        .unwrap();
    assert!(service.contains("/dispatch region-backup\n"), "{service}");
    assert!(out.state.machine.is_active("maas-region-backup.timer"));

    // Leadership moved away: the timer goes, so one region takes each scheduled backup.
    let mut follower = out.state.clone();
    follower.leader = false;
    let out = hook(&follower);
    assert!(out
        .state
        .machine
        .text("/etc/systemd/system/maas-region-backup.timer")
        .is_none());
    assert!(!out.state.machine.is_active("maas-region-backup.timer"));

    // The unit removed: no timer left to run a charm that is gone, no key left behind.
    let gone = harness(0).run_ok(
        Trigger::Remove,
        &hook(&st.clone().with_relation(s3(&[]))).state,
    );
    for f in ["/etc/systemd/system/maas-region-backup.timer", CONF, JOB] {
        assert!(gone.state.machine.text(f).is_none(), "{f} left");
    }
    assert!(!gone.state.machine.is_active("maas-region-backup.timer"));

    let bad = hook(&serving().with_config("backup-schedule", "0 2 1 * mon"));
    assert_eq!(bad.state.unit_status.kind, StatusKind::Blocked);
    assert!(
        bad.state
            .unit_status
            .message
            .starts_with("invalid backup-schedule:"),
        "{}",
        bad.state.unit_status.message
    );
}

#[test]
fn create_backup_uploads_the_archive_then_the_manifest_naming_every_region_both_encrypted() {
    // Arrange: a serving region related to S3, its hooks run.
    let mut st = hook(&serving().with_relation(s3(&[]))).state;
    st.machine = st
        .machine
        .respond(&["stat", "-c", "%s"], CmdOutput::ok("20480\n"));
    let pass = passphrase_of(&st);
    // Act.
    let out = run(&st, "create-backup", json!({}));
    // Assert.
    assert_eq!(out.action.failed, None);
    let r = &out.action.results;
    let id = r["backup-id"].clone();
    assert!(maas_region::backup::valid_id(&id), "{id}");
    assert_eq!(
        r["restore-to-time"],
        maas_region::backup::restore_to_time(&id)
    );
    assert_eq!(r["files"], "maas_id,image-storage,preseeds");
    assert_eq!(r["size"], "20480");
    assert_eq!(r["encrypted"], "yes");
    assert_eq!(r["regions.maas-region-0"], "abc123");
    assert_eq!(r["regions.maas-region-1"], "def456");
    let archive = format!("{WORK}/{id}.tar");
    let local = format!("{WORK}/{id}.manifest.json");
    let lines = out.command_lines();
    let tar = format!("tar -cf {archive} -C /var/snap/maas/common/maas maas_id -C /var/snap/maas/common/maas image-storage -C /var/snap/maas/current preseeds");
    let seal = gpg(&[
        "--symmetric",
        "--cipher-algo",
        "AES256",
        "--output",
        &format!("{archive}.gpg"),
        &archive,
    ])
    .join(" ");
    let put = format!(
        "s3cmd --config {CONF} --no-progress put {archive}.gpg {FOLDER}{id}/region.tar.gpg"
    );
    let seal_manifest = gpg(&[
        "--symmetric",
        "--cipher-algo",
        "AES256",
        "--armor",
        "--output",
        &format!("{local}.asc"),
        &local,
    ])
    .join(" ");
    let manifest =
        format!("s3cmd --config {CONF} --no-progress put {local}.asc {FOLDER}{id}/manifest.json");
    let at = |l: &str| {
        lines
            .iter()
            .position(|x| x == l)
            .unwrap_or_else(|| panic!("{l} not in {lines:#?}"))
    };
    assert!(
        at(&tar) < at(&seal)
            && at(&seal) < at(&put)
            && at(&put) < at(&seal_manifest)
            && at(&seal_manifest) < at(&manifest),
        "{lines:#?}"
    );
    // Only encrypted files are uploaded.
    for l in lines.iter().filter(|l| l.contains(" put ")) {
        assert!(l.contains(".gpg ") || l.contains(".asc "), "{l}");
    }
    // gpg reads the passphrase on its stdin: on no command line, in no log or databag.
    let gpgs: Vec<_> = out.runs.iter().filter(|c| c.program == "gpg").collect();
    assert_eq!(gpgs.len(), 2, "{lines:#?}");
    for c in gpgs {
        assert_eq!(c.stdin.as_deref(), Some(format!("{pass}\n").as_bytes()));
    }
    assert!(!lines.iter().any(|l| l.contains(&pass)), "{lines:#?}");
    assert!(!out.mentions(&pass));
    // The agent gpg started does not outlive the action.
    let kill = "gpgconf --homedir /var/lib/maas-region-backup/gnupg --kill gpg-agent";
    assert!(at(kill) > at(&seal_manifest), "{lines:#?}");
    // Nothing of it is left on the unit; the key is on no command line.
    for f in [
        &archive,
        &format!("{archive}.gpg"),
        &local,
        &format!("{local}.asc"),
    ] {
        assert!(out.state.machine.text(f).is_none(), "{f} left");
    }
    assert!(!out.mentions(SECRET_KEY));
}

#[test]
fn the_leader_creates_the_passphrase_once_and_every_unit_keeps_a_root_only_copy() {
    // Arrange: the leader related to S3.
    let st = serving().with_relation(s3(&[]));
    // Act: two hooks.
    let first = hook(&st);
    let second = hook(&first.state);
    // Assert: one secret, created by the first hook, published to the peers by id, reused.
    let owned: Vec<_> = second
        .state
        .secrets
        .iter()
        .filter(|s| s.label.as_deref() == Some(LABEL))
        .collect();
    assert_eq!(owned.len(), 1);
    assert_eq!(
        owned[0].revisions.len(),
        1,
        "not rotated by the second hook"
    );
    let pass = passphrase_of(&second.state);
    assert_eq!(pass.len(), 64);
    assert_eq!(passphrase_of(&first.state), pass);
    let peers = second.state.relation(PEERS).unwrap();
    assert!(maas_region::backup::PASSPHRASE
        .id_in(&peers.local_app_data)
        .is_some());
    let file = second
        .state
        .machine
        .files
        .get(std::path::Path::new(PASS_FILE))
        .unwrap();
    assert_eq!(
        (file.options.owner.as_str(), file.options.mode),
        ("root", 0o600)
    );
    assert_eq!(file.text(), pass);
    assert!(!first.mentions(&pass) && !second.mentions(&pass));
    // gpg comes with s3cmd.
    for p in ["s3cmd", "gpg", "gpg-agent"] {
        assert!(first.state.machine.packages.contains(p), "{p}");
    }

    // A follower before the leader published the id: it waits, and holds no copy.
    let mut follower = serving().with_relation(s3(&[]));
    follower.leader = false;
    let out = hook(&follower);
    assert_eq!(out.state.unit_status.kind, StatusKind::Waiting);
    assert_eq!(
        out.state.unit_status.message,
        "s3-parameters: waiting for the leader's backup passphrase"
    );
    assert!(out.state.machine.text(PASS_FILE).is_none());
    assert!(
        out.state.secret(LABEL).is_none(),
        "only the leader creates it"
    );
    let out = run(&out.state, "create-backup", json!({}));
    assert!(out
        .action
        .failed
        .as_deref()
        .unwrap()
        .starts_with("no backup passphrase on this unit yet"));
    assert!(!out.command_lines().iter().any(|l| l.contains(" put ")));

    // The relation gone: the copy goes with the keys.
    let mut gone = second.state.clone();
    gone.relations.retain(|r| r.id != S3);
    assert!(hook(&gone).state.machine.text(PASS_FILE).is_none());
}

#[test]
fn create_backup_refusals_name_what_is_missing() {
    let out = run(&serving(), "create-backup", json!({}));
    assert_eq!(
        out.action.failed.as_deref(),
        Some("no s3-parameters relation: relate maas-region:s3-parameters to an S3 provider (s3-integrator) first")
    );
    let st = serving().with_relation(s3(&[("access-key", "")]));
    let out = run(&st, "create-backup", json!({}));
    assert_eq!(
        out.action.failed.as_deref(),
        Some("s3-parameters: waiting for the S3 provider's access-key")
    );
    // Before regiond's first start there is no maas_id: nothing to back up.
    let mut st = hook(&serving().with_relation(s3(&[]))).state;
    st.machine.files.remove(std::path::Path::new(SNAP_ID));
    let out = run(&st, "create-backup", json!({}));
    assert!(out
        .action
        .failed
        .as_deref()
        .unwrap()
        .starts_with("nothing to back up yet"));
    // s3cmd's own words when the upload fails.
    let mut st = hook(&serving().with_relation(s3(&[]))).state;
    st.machine = st.machine.respond(
        &["s3cmd", "--config", CONF, "--no-progress", "put"],
        CmdOutput::failed(77, "ERROR: S3 error: 403 (AccessDenied)\n"),
    );
    let out = run(&st, "create-backup", json!({}));
    assert_eq!(
        out.action.failed.as_deref(),
        Some("uploading the archive failed: ERROR: S3 error: 403 (AccessDenied)")
    );
}

fn manifest(regions: serde_json::Value) -> String {
    json!({
        "id": ID, "restore-to-time": "2026-12-07 07:30:00+00", "finished": "2026-12-07T07:30:09Z",
        "application": "maas-region", "unit": "maas-region/0", "install-method": "snap",
        "channel": "3.6/stable", "regions": regions, "files": ["maas_id", "image-storage", "preseeds"],
        "size": 20480,
    })
    .to_string()
}

#[test]
fn list_backups_shows_whole_backups_oldest_first() {
    let mut st = hook(&serving().with_relation(s3(&[]))).state;
    let ls = format!("                          DIR  {FOLDER}2026-12-07T08:00:00Z/\n                          DIR  {FOLDER}{ID}/\n");
    st.machine = st
        .machine
        .respond(
            &["s3cmd", "--config", CONF, "--no-progress", "ls"],
            CmdOutput::ok(ls),
        )
        .respond(
            &[
                "s3cmd",
                "--config",
                CONF,
                "--no-progress",
                "get",
                &format!("{FOLDER}2026-12-07T08:00:00Z/manifest.json"),
            ],
            CmdOutput::failed(12, "ERROR: S3 error: 404 (Not Found)\n"),
        )
        .respond(
            &[
                "s3cmd",
                "--config",
                CONF,
                "--no-progress",
                "get",
                &format!("{FOLDER}{ID}/manifest.json"),
            ],
            CmdOutput::ok(manifest(json!({"maas-region/0": "abc123"}))),
        );
    let out = run(&st, "list-backups", json!({}));
    assert_eq!(out.action.failed, None);
    assert_eq!(out.action.results["count"], "1", "{:?}", out.action.results);
    assert_eq!(out.action.results["backups.0000.backup-id"], ID);
    assert_eq!(
        out.action.results["backups.0000.restore-to-time"],
        "2026-12-07 07:30:00+00"
    );
}

/// A fresh snap unit related to s3-parameters only: MAAS installed, never initialised.
fn fresh_for_restore(regions: serde_json::Value) -> State {
    let mut st = installed_snap(State::default().leader().with_relation(peers(&[])));
    st.machine = hostname(st.machine, 0);
    dir(&mut st, "/var/snap/maas/common/maas");
    st = hook(&st.with_relation(s3(&[]))).state;
    st.machine = st.machine.respond(
        &[
            "s3cmd",
            "--config",
            CONF,
            "--no-progress",
            "get",
            &format!("{FOLDER}{ID}/manifest.json"),
        ],
        CmdOutput::ok(manifest(regions)),
    );
    st
}

#[test]
fn restore_puts_the_files_in_place_with_the_regions_maas_id() {
    let st = fresh_for_restore(json!({"maas-region/0": "abc123", "maas-region/1": "def456"}));
    let out = run(
        &st,
        "restore",
        json!({"backup-id": ID, "maas-id": "def456"}),
    );
    assert_eq!(out.action.failed, None);
    assert_eq!(out.action.results["maas-id"], "def456");
    assert_eq!(
        out.action.results["restore-to-time"],
        "2026-12-07 07:30:00+00"
    );
    assert_eq!(out.state.machine.text(SNAP_ID).as_deref(), Some("def456\n"));
    let archive = format!("/var/lib/maas-region-backup/{ID}.restore.tar");
    let lines = out.command_lines();
    for l in [
        format!("s3cmd --config {CONF} --no-progress get --force {FOLDER}{ID}/region.tar {archive}"),
        format!("tar -xf {archive} --same-owner --same-permissions -C /var/snap/maas/common/maas image-storage"),
        format!("tar -xf {archive} --same-owner --same-permissions -C /var/snap/maas/current preseeds"),
    ] {
        assert!(lines.contains(&l), "{l} not in {lines:#?}");
    }
    assert!(out.state.machine.text(&archive).is_none());
    // Two regions in the backup: which one this unit becomes must be said.
    let out = run(&st, "restore", json!({"backup-id": ID}));
    assert_eq!(
        out.action.failed.as_deref(),
        Some("backup 2026-12-07T07:30:00Z names 2 regions (abc123, def456): give maas-id, a different one on each unit")
    );
    assert!(out.state.machine.text(SNAP_ID).is_none());
}

#[test]
fn restore_refuses_a_unit_that_met_a_database_or_a_backup_that_is_not_there() {
    // The database related: regiond would have registered this host anew.
    let st = fresh_for_restore(json!({"maas-region/0": "abc123"}))
        .with_relation(pgsql("10.0.0.5", "maas-region/0"))
        .with_secret(db_secret());
    let out = run(&st, "restore", json!({"backup-id": ID}));
    assert!(
        out.action.failed.as_deref().unwrap().starts_with(
            "the db relation exists: restore runs before the region meets its database"
        ),
        "{:?}",
        out.action.failed
    );
    // Initialised before against some database.
    let mut st = fresh_for_restore(json!({"maas-region/0": "abc123"}));
    st.machine = st.machine.with_file(
        SNAP_CONF,
        &regiond_conf("10.0.0.5", "http://x/MAAS"),
        FileOptions::root(0o640),
    );
    let out = run(&st, "restore", json!({"backup-id": ID}));
    assert!(out
        .action
        .failed
        .as_deref()
        .unwrap()
        .starts_with("MAAS on this unit was initialised against a database already"));
    // Another packaging's backup.
    let out = run(
        &fresh_for_restore(json!({"maas-region/0": "abc123"})).with_config("install-method", "deb"),
        "restore",
        json!({"backup-id": ID}),
    );
    assert!(out.action.failed.is_some());
    // No such backup, and no such id.
    let mut st = fresh_for_restore(json!({"maas-region/0": "abc123"}));
    st.machine = st.machine.respond_times(
        &["s3cmd", "--config", CONF, "--no-progress", "get"],
        CmdOutput::failed(12, "ERROR: S3 error: 404 (Not Found)\n"),
        1,
    );
    let out = run(&st, "restore", json!({"backup-id": ID}));
    assert_eq!(
        out.action.failed.as_deref(),
        Some("no backup 2026-12-07T07:30:00Z in s3://backups/maas/maas-region/ (list-backups shows the backups there)")
    );
    let out = run(&st, "restore", json!({"backup-id": "../etc"}));
    assert!(out
        .action
        .failed
        .as_deref()
        .unwrap()
        .starts_with("backup-id \"../etc\" is not a backup id"));
}

/// A manifest of `app`'s backup `id` (plain JSON, as an earlier revision wrote them).
fn manifest_of(app: &str, id: &str) -> String {
    json!({
        "id": id, "restore-to-time": maas_region::backup::restore_to_time(id),
        "finished": id, "application": app, "unit": format!("{app}/0"), "install-method": "snap",
        "regions": {"maas-region/0": "abc123"}, "files": ["maas_id"], "size": 10,
    })
    .to_string()
}

/// `s3cmd ls` of the folder with `ids`, each with `app`'s manifest.
fn folder_of(
    mut m: charm_lib::testing::MachineState,
    ids: &[(&str, &str)],
) -> charm_lib::testing::MachineState {
    let ls: String = ids
        .iter()
        .map(|(id, _)| format!("                          DIR  {FOLDER}{id}/\n"))
        .collect();
    m = m.respond(
        &["s3cmd", "--config", CONF, "--no-progress", "ls"],
        CmdOutput::ok(ls),
    );
    for (id, app) in ids {
        m = m.respond(
            &[
                "s3cmd",
                "--config",
                CONF,
                "--no-progress",
                "get",
                &format!("{FOLDER}{id}/manifest.json"),
            ],
            CmdOutput::ok(manifest_of(app, id)),
        );
    }
    m
}

fn deleted(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| {
            l.strip_prefix(&format!(
                "s3cmd --config {CONF} --no-progress del --recursive {FOLDER}"
            ))
        })
        .map(|id| id.trim_end_matches('/').to_string())
        .collect()
}

#[test]
fn retention_deletes_exactly_the_oldest_of_this_applications_backups_never_the_new_one() {
    // Arrange: five backups of this application (the newest, T05, just taken), one of another
    // application (a deployment this one was restored from), backup-retention 2.
    let ids = [
        ("2026-12-01T00:00:00Z", "maas-region"),
        ("2026-12-01T12:00:00Z", "region-old"),
        ("2026-12-02T00:00:00Z", "maas-region"),
        ("2026-12-03T00:00:00Z", "maas-region"),
        ("2026-12-04T00:00:00Z", "maas-region"),
        ("2026-12-05T00:00:00Z", "maas-region"),
    ];
    let m = charm_lib::testing::FakeMachine::new(folder_of(Default::default(), &ids));
    let target = maas_region::backup::Target {
        bucket: "backups".into(),
        path: "/maas".into(),
    };
    // Act.
    let gone =
        maas_region::backup::expire(&m, &target, "maas-region", "2026-12-05T00:00:00Z", 2).unwrap();
    // Assert: the three oldest of its own, whole prefixes; the other application's kept.
    let want = [
        "2026-12-01T00:00:00Z",
        "2026-12-02T00:00:00Z",
        "2026-12-03T00:00:00Z",
    ];
    assert_eq!(gone, want);
    let lines: Vec<String> = m.ran.borrow().iter().map(|c| c.argv().join(" ")).collect();
    assert_eq!(deleted(&lines), want);

    // The one just taken is never deleted, even when the clock made it look oldest.
    let m = charm_lib::testing::FakeMachine::new(folder_of(Default::default(), &ids));
    let gone =
        maas_region::backup::expire(&m, &target, "maas-region", "2026-12-01T00:00:00Z", 1).unwrap();
    assert_eq!(
        gone,
        [
            "2026-12-02T00:00:00Z",
            "2026-12-03T00:00:00Z",
            "2026-12-04T00:00:00Z"
        ]
    );
    // Within retention: nothing.
    let m = charm_lib::testing::FakeMachine::new(folder_of(Default::default(), &ids));
    assert!(
        maas_region::backup::expire(&m, &target, "maas-region", "2026-12-05T00:00:00Z", 5)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn create_backup_on_the_leader_expires_beyond_backup_retention() {
    // Arrange: backup-retention 2 and two older backups of this application listed with the
    // new one's (the listing after the upload).
    let mut st = hook(
        &serving()
            .with_relation(s3(&[]))
            .with_config("backup-retention", 2),
    )
    .state;
    st.machine = folder_of(
        st.machine,
        &[
            ("2026-12-01T00:00:00Z", "maas-region"),
            ("2026-12-02T00:00:00Z", "maas-region"),
            ("2026-12-03T00:00:00Z", "maas-region"),
        ],
    );
    // Act.
    let out = run(&st, "create-backup", json!({}));
    // Assert: the oldest beyond 2 (the listing holds three) is deleted, after the upload.
    assert_eq!(out.action.failed, None);
    assert_eq!(out.action.results["expired"], "2026-12-01T00:00:00Z");
    let lines = out.command_lines();
    assert_eq!(deleted(&lines), ["2026-12-01T00:00:00Z"]);
    let put = lines.iter().rposition(|l| l.contains(" put ")).unwrap();
    let del = lines.iter().position(|l| l.contains(" del ")).unwrap();
    assert!(put < del, "{lines:#?}");
    // A follower's create-backup expires nothing: the leader decides.
    let mut follower = st.clone();
    follower.leader = false;
    let out = run(&follower, "create-backup", json!({}));
    assert_eq!(out.action.failed, None);
    assert!(deleted(&out.command_lines()).is_empty());
}

#[test]
fn a_bad_backup_retention_blocks_naming_the_option() {
    for bad in [0, -1, 10_000_000] {
        let out = hook(
            &serving()
                .with_relation(s3(&[]))
                .with_config("backup-retention", bad),
        );
        assert_eq!(out.state.unit_status.kind, StatusKind::Blocked, "{bad}");
        assert!(
            out.state.unit_status.message.contains(&format!(
                "invalid backup-retention {bad}: expected 1..9999999"
            )),
            "{}",
            out.state.unit_status.message
        );
    }
}

#[test]
fn restore_decrypts_an_encrypted_backup_and_names_the_fix_without_its_passphrase() {
    // Arrange: a fresh unit; the backup's manifest is armoured OpenPGP.
    let mut st = fresh_for_restore(json!({"maas-region/0": "abc123"}));
    let armored = "-----BEGIN PGP MESSAGE-----\n\njA0ECQMC\n-----END PGP MESSAGE-----\n";
    let local = format!("{WORK}/{ID}.manifest.json.asc");
    let mut clear: serde_json::Value =
        serde_json::from_str(&manifest(json!({"maas-region/0": "abc123"}))).unwrap();
    clear["encryption"] = json!("gpg-aes256");
    st.machine = st
        .machine
        .respond_times(
            &[
                "s3cmd",
                "--config",
                CONF,
                "--no-progress",
                "get",
                &format!("{FOLDER}{ID}/manifest.json"),
            ],
            CmdOutput::ok(armored),
            10,
        )
        .respond(
            &gpg(&["--decrypt", "--output", "-", &local])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            CmdOutput::ok(clear.to_string()),
        );
    let pass = passphrase_of(&st);
    // Act.
    let out = run(&st, "restore", json!({"backup-id": ID}));
    // Assert: region.tar.gpg downloaded, decrypted with the passphrase on stdin, unpacked.
    assert_eq!(out.action.failed, None);
    let archive = format!("{WORK}/{ID}.restore.tar");
    let lines = out.command_lines();
    for l in [
        format!("s3cmd --config {CONF} --no-progress get --force {FOLDER}{ID}/region.tar.gpg {archive}.gpg"),
        gpg(&["--decrypt", "--output", &archive, &format!("{archive}.gpg")]).join(" "),
        format!("tar -xf {archive} --same-owner --same-permissions -C /var/snap/maas/common/maas image-storage"),
    ] {
        assert!(lines.contains(&l), "{l} not in {lines:#?}");
    }
    for c in out.runs.iter().filter(|c| c.program == "gpg") {
        assert_eq!(c.stdin.as_deref(), Some(format!("{pass}\n").as_bytes()));
    }
    for f in [&archive, &format!("{archive}.gpg"), &local] {
        assert!(out.state.machine.text(f).is_none(), "{f} left");
    }

    // Another deployment's passphrase: gpg refuses, the restore says what to do.
    let mut other = st.clone();
    other.machine = other.machine.respond_times(
        &gpg(&["--decrypt"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        CmdOutput::failed(2, "gpg: decryption failed: Bad session key\n"),
        5,
    );
    let out = run(&other, "restore", json!({"backup-id": ID}));
    let why = out.action.failed.unwrap();
    assert!(
        why.starts_with(
            "backup 2026-12-07T07:30:00Z is encrypted with a passphrase maas-region does not have"
        ) && why.contains("run set-backup-passphrase")
            && why.contains("Bad session key"),
        "{why}"
    );
    assert!(out.state.machine.text(SNAP_ID).is_none());
}

#[test]
fn set_backup_passphrase_hands_over_another_deployments_passphrase() {
    // Arrange: a fresh leader with its own passphrase and no backups of its own.
    let st = fresh_for_restore(json!({"maas-region/0": "abc123"}));
    let st = State {
        machine: folder_of(st.machine.clone(), &[(ID, "maas-region-old")]),
        ..st
    };
    let theirs = "TheFirstDeploymentsPassphrase0123";
    // Act.
    let out = run(&st, "set-backup-passphrase", json!({"passphrase": theirs}));
    // Assert: the secret holds it (a new revision, read with --refresh by every unit), this
    // unit's copy too, and it is echoed nowhere.
    assert_eq!(out.action.failed, None);
    assert_eq!(passphrase_of(&out.state), theirs);
    assert_eq!(out.state.machine.text(PASS_FILE).as_deref(), Some(theirs));
    assert!(!out.mentions(theirs));
    assert!(!out.command_lines().iter().any(|l| l.contains(theirs)));
    assert_eq!(out.action.results["readable"], "1");
    // The next hook keeps it.
    assert_eq!(
        hook(&out.state).state.machine.text(PASS_FILE).as_deref(),
        Some(theirs)
    );

    // Refusals: too short, not the leader, and once this application has backups of its own.
    let out = run(&st, "set-backup-passphrase", json!({"passphrase": "short"}));
    assert!(out
        .action
        .failed
        .unwrap()
        .starts_with("passphrase: expected at least 16"));
    let mut follower = st.clone();
    follower.leader = false;
    let out = run(
        &follower,
        "set-backup-passphrase",
        json!({"passphrase": theirs}),
    );
    assert_eq!(
        out.action.failed.as_deref(),
        Some("run set-backup-passphrase on the leader unit: it owns the passphrase secret")
    );
    let mut own = st.clone();
    let mut mine: serde_json::Value =
        serde_json::from_str(&manifest_of("maas-region", ID)).unwrap();
    mine["encryption"] = json!("gpg-aes256");
    own.machine = own.machine.respond_times(
        &[
            "s3cmd",
            "--config",
            CONF,
            "--no-progress",
            "get",
            &format!("{FOLDER}{ID}/manifest.json"),
        ],
        CmdOutput::ok(mine.to_string()),
        5,
    );
    let before = passphrase_of(&own);
    let out = run(&own, "set-backup-passphrase", json!({"passphrase": theirs}));
    assert!(
        out.action.failed.as_deref().unwrap().starts_with(
            "maas-region's own backups 2026-12-07T07:30:00Z are encrypted with its passphrase"
        ),
        "{:?}",
        out.action.failed
    );
    assert_eq!(passphrase_of(&out.state), before);
}
