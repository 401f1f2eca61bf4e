//! maas-region's backups (issue 23): a region related through `s3-parameters` to
//! `s3-provider-ops` (moto behind Debian's nginx TLS), with Debian's s3cmd.
//!
//! The drill: the region serves; a preseed and a boot-resource file are planted where MAAS keeps
//! them → create-backup → list-backups shows it; the objects in the S3 server are OpenPGP, with
//! none of the archive's bytes (maas_id, the preseed, tar's headers) in them → the region leaves
//! its database (the first
//! deployment lost; the database stands for postgresql-ha restored to the backup's
//! restore-to-time, which pg_backups.rs proves) → a fresh maas-region application, related to
//! s3-parameters only, cannot read the backup with its own passphrase (restore refused naming
//! set-backup-passphrase); given the first deployment's passphrase with set-backup-passphrase,
//! it restores the backup onto its unit → related to the database, it serves
//! as the same controller: its maas_id is the backup's, MAAS's tables hold that one region on
//! the new host (no second controller), its shared secret is the database's (the first
//! region's), the planted files are there; with `backup-schedule` set, the timer's service
//! takes a second backup, of the restored region; with backup-retention=1, a third backup
//! (create-backup on the leader) deletes the second (the application's own older one) and
//! keeps the first (another application's). No hook of any unit may exit non-zero.
//!
//! A small deployment of its own (one PostgreSQL, one region, the S3 server) rather than a
//! region beside pg_backups.rs's drill, whose restores replace the database under it.

use anyhow::{ensure, Context, Result};
use e2e::{ha, until, Deployment, Env};
use local_model::{AppPlan, DeployPlan, Substrate};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// This file's subnet (10.77.20–29: region/rack drills).
const NET: u8 = 23;
const REGION: &str = "maas-region/0";
const FRESH: &str = "region-restored";
const FRESH_UNIT: &str = "region-restored/0";
const SETTLE: Duration = Duration::from_secs(600);
const PRESEED: &str = "/var/snap/maas/current/preseeds/curtin_userdata_drill";
const IMAGE: &str = "/var/snap/maas/common/maas/image-storage/0123abcd";
const MAAS_ID: &str = "/var/snap/maas/common/maas/maas_id";
const SECRET: &str = "/var/snap/maas/common/maas/secret";
const S3CMD_CONF: &str = "/etc/maas-region-backup/s3cmd.cfg";
const PASSPHRASE: &str = "/etc/maas-region-backup/passphrase";

fn provider_charm(env: &Env) -> std::result::Result<PathBuf, String> {
    let p = env.build.join("testcharms/s3-provider-ops.charm");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing: run `make testcharms` (make test does)",
            p.display()
        ))
    }
}

fn bundle(env: &Env, provider: &std::path::Path) -> String {
    format!(
        "description: a MAAS region backing up its files into S3 through s3-parameters
machines:
  \"0\": {{}}
  \"1\": {{}}
applications:
  postgresql-ha:
    charm: {{build}}/postgresql-ha.charm
    num_units: 1
    to: [\"0\"]
    resources:
      wheelhouse: {wheelhouse}
  maas-region:
    charm: {{build}}/maas-region.charm
    num_units: 1
    to: [\"0\"]
  s3:
    charm: {charm}
    num_units: 1
    to: [\"1\"]
relations:
  - [\"maas-region:database\", \"postgresql-ha:database\"]
  - [\"maas-region:s3-parameters\", \"s3:s3-credentials\"]
",
        wheelhouse = env.build.join("wheelhouse.tar.gz").display(),
        charm = provider.display(),
    )
}

/// A result of an action, whether the local model gives dotted keys nested or flat.
fn result<'a>(v: &'a Value, dotted: &str) -> &'a Value {
    if !v[dotted].is_null() {
        return &v[dotted];
    }
    dotted.split('.').fold(v, |v, k| &v[k])
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn read(d: &Deployment, unit: &str, path: &str) -> Result<String> {
    let m = d.machine_of(unit)?;
    Ok(d.exec(&m, &["cat", path])?.trim().to_string())
}

/// The unit's status and message.
fn status_of(d: &Deployment, unit: &str) -> Result<(String, String)> {
    d.units()?
        .into_iter()
        .find(|(u, _, _)| u == unit)
        .map(|(_, s, m)| (s, m))
        .context(format!("no unit {unit}"))
}

#[test]
fn a_region_restored_from_its_backup_serves_as_the_same_controller() {
    let env = e2e::env_or_skip!();
    let charm = match provider_charm(&env) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED (local-model end-to-end): {why}");
            return;
        }
    };
    let start = Instant::now();
    let d = Deployment::yaml_overlaid(
        &env,
        "region-backups",
        NET,
        &bundle(&env, &charm),
        &e2e::extra_overlays(),
    )
    .expect("deploy");
    d.wait_active(SETTLE).expect("every unit active");
    eprintln!(
        "region_backups: deployed in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    // What the operator and MAAS put on the region's disk.
    let m = d.machine_of(REGION).unwrap();
    d.exec(
        &m,
        &[
            "sh",
            "-c",
            &format!("echo 'drill preseed' > {PRESEED} && echo 'boot resource bytes' > {IMAGE}"),
        ],
    )
    .unwrap();
    let maas_id = read(&d, REGION, MAAS_ID).unwrap();
    let secret = read(&d, REGION, SECRET).unwrap();
    assert!(
        !maas_id.is_empty() && !secret.is_empty(),
        "maas_id and secret written"
    );

    let t = Instant::now();
    let made = d
        .action(REGION, "create-backup", &[])
        .expect("create-backup");
    let backup_secs = t.elapsed().as_secs_f64();
    let id = text(result(&made, "backup-id"));
    assert_eq!(
        text(result(&made, "files")),
        "maas_id,image-storage,preseeds",
        "{made}"
    );
    assert_eq!(
        text(result(&made, "regions.maas-region-0")),
        maas_id,
        "{made}"
    );
    let pair_time = text(result(&made, "restore-to-time"));
    assert!(
        pair_time.ends_with("+00") && pair_time.len() == 22,
        "{pair_time}"
    );
    assert_eq!(text(result(&made, "encrypted")), "yes", "{made}");
    let listed = d.action(REGION, "list-backups", &[]).expect("list-backups");
    assert_eq!(text(result(&listed, "count")), "1", "{listed}");
    assert_eq!(
        text(result(&listed, "backups.0000.backup-id")),
        id,
        "{listed}"
    );
    assert_eq!(
        text(result(&listed, "backups.0000.encrypted")),
        "yes",
        "{listed}"
    );
    // The objects as the S3 server holds them (fetched with the unit's s3cmd, which decrypts
    // nothing: the charm encrypts with gpg itself): OpenPGP, none of the archive's bytes.
    let folder = text(result(&listed, "folder"));
    let object = |name: &str, probe: &str| -> String {
        d.exec(
            &m,
            &[
                "sh",
                "-c",
                &format!(
                    "s3cmd --config {S3CMD_CONF} --no-progress get {folder}{id}/{name} - | {probe}"
                ),
            ],
        )
        .unwrap()
        .trim()
        .to_string()
    };
    let plain = format!(
        "if grep -aqF -e '{maas_id}' -e 'drill preseed' -e 'boot resource bytes' -e ustar -e maas_id; then echo plaintext; else echo sealed; fi"
    );
    assert_eq!(object("region.tar.gpg", &plain), "sealed");
    assert_eq!(object("manifest.json", &plain), "sealed");
    // An OpenPGP symmetric-key session key packet first (RFC 4880 5.3, old format tag 3: 0x8c).
    assert_eq!(
        object("region.tar.gpg", "head -c 1 | od -An -tx1"),
        "8c",
        "region.tar.gpg is not gpg --symmetric's output"
    );
    assert_eq!(
        object("manifest.json", "head -n 1"),
        "-----BEGIN PGP MESSAGE-----"
    );
    // gpg's agent does not outlive the action (the charm stops it).
    assert_eq!(
        d.exec(&m, &["sh", "-c", "pgrep -x gpg-agent || true"])
            .unwrap()
            .trim(),
        "",
        "a gpg-agent left running"
    );
    // Nothing of the region's files stays in the work directory.
    assert_eq!(
        d.exec(
            &m,
            &[
                "sh",
                "-c",
                "ls /var/lib/maas-region-backup | grep -v '^gnupg$' | wc -l"
            ]
        )
        .unwrap()
        .trim(),
        "0"
    );

    // The first deployment lost: its region leaves the database (regiond stops).
    d.lm.remove_relation("maas-region:database", "postgresql-ha:database")
        .unwrap();
    d.lm.wait(SETTLE).unwrap();

    // A fresh region application, related to the bucket only.
    let plan = DeployPlan {
        apps: vec![AppPlan {
            name: FRESH.into(),
            charm: env.build.join("maas-region.charm"),
            num_units: 1,
            ..Default::default()
        }],
        relations: vec![(format!("{FRESH}:s3-parameters"), "s3:s3-credentials".into())],
        ..Default::default()
    };
    d.lm.deploy_plan(plan, Substrate::Hosts).unwrap();
    until(
        SETTLE,
        "the fresh region installed, waiting for its database",
        || {
            d.lm.wait(SETTLE)?;
            let (s, msg) = status_of(&d, FRESH_UNIT)?;
            ensure!(s == "waiting" && msg.contains("database"), "{s}: {msg}");
            Ok(())
        },
    )
    .unwrap();
    // Its own passphrase opens nothing of the first deployment's: listed as such, and restore
    // refused naming the fix, before anything is written.
    let listed = d
        .action(FRESH_UNIT, "list-backups", &[])
        .expect("list-backups");
    assert_eq!(text(result(&listed, "count")), "0", "{listed}");
    assert_eq!(text(result(&listed, "other-passphrase")), id, "{listed}");
    let refused = d
        .action(FRESH_UNIT, "restore", &[&format!("backup-id={id}")])
        .expect_err("a restore without the first deployment's passphrase was not refused");
    let why = format!("{refused:#}");
    assert!(why.contains("run set-backup-passphrase"), "{why}");
    assert!(d
        .exec(&d.machine_of(FRESH_UNIT).unwrap(), &["test", "-e", MAAS_ID])
        .is_err());
    // The first deployment's passphrase, as its operator keeps it (here read off its unit, as
    // pg_backups.rs reads postgresql-ha's), handed over as postgresql-ha's is.
    let passphrase = read(&d, REGION, PASSPHRASE).unwrap();
    assert_eq!(passphrase.len(), 64);
    let set = d
        .action(
            FRESH_UNIT,
            "set-backup-passphrase",
            &[&format!("passphrase={passphrase}")],
        )
        .expect("set-backup-passphrase");
    assert_eq!(text(result(&set, "readable")), "1", "{set}");
    let t = Instant::now();
    let restored = d
        .action(FRESH_UNIT, "restore", &[&format!("backup-id={id}")])
        .expect("restore");
    let restore_secs = t.elapsed().as_secs_f64();
    assert_eq!(text(result(&restored, "maas-id")), maas_id, "{restored}");
    assert_eq!(read(&d, FRESH_UNIT, MAAS_ID).unwrap(), maas_id);
    assert_eq!(read(&d, FRESH_UNIT, PRESEED).unwrap(), "drill preseed");
    assert_eq!(read(&d, FRESH_UNIT, IMAGE).unwrap(), "boot resource bytes");

    d.lm.integrate(&format!("{FRESH}:database"), "postgresql-ha:database")
        .unwrap();
    until(SETTLE, "the restored region active", || {
        d.lm.wait(SETTLE)?;
        let (s, msg) = status_of(&d, FRESH_UNIT)?;
        ensure!(s == "active", "{s}: {msg}");
        Ok(())
    })
    .unwrap();
    let fm = d.machine_of(FRESH_UNIT).unwrap();
    let version: Value = serde_json::from_str(
        &d.exec(
            &fm,
            &["curl", "-sf", "http://127.0.0.1:5240/MAAS/api/2.0/version/"],
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(version["system_id"], maas_id.as_str(), "{version}");
    assert_eq!(
        read(&d, FRESH_UNIT, SECRET).unwrap(),
        secret,
        "the database's shared secret"
    );
    assert_eq!(read(&d, FRESH_UNIT, MAAS_ID).unwrap(), maas_id);
    // One controller, the backup's, now on the fresh host.
    let pg = d.machine_of("postgresql-ha/0").unwrap();
    let rows = ha::psql(
        &d,
        &pg,
        "maas",
        "SELECT string_agg(system_id, ',') FROM standin_region",
    )
    .unwrap();
    assert_eq!(rows.trim(), maas_id, "region controllers in the database");
    // backup-schedule: the leader's timer runs `dispatch region-backup`, the same backup as
    // the action, from what the hooks wrote. Its service is started here rather than waited
    // for (the calendar is systemd's, checked in charm-lib's cron tests).
    d.lm.config(FRESH, &["backup-schedule=0 3 * * *"]).unwrap();
    d.lm.wait(SETTLE).unwrap();
    let timer = d
        .exec(&fm, &["systemctl", "is-active", "maas-region-backup.timer"])
        .unwrap();
    assert_eq!(timer.trim(), "active");
    d.exec(&fm, &["systemctl", "start", "maas-region-backup.service"])
        .unwrap();
    let scheduled = until(
        Duration::from_secs(60),
        "the scheduled backup listed",
        || {
            let listed = d.action(FRESH_UNIT, "list-backups", &[])?;
            ensure!(text(result(&listed, "count")) == "2", "{listed}");
            ensure!(
                text(result(&listed, "backups.0001.unit")) == FRESH_UNIT,
                "{listed}"
            );
            ensure!(
                text(result(&listed, "backups.0001.regions.region-restored-0")) == maas_id,
                "{listed}"
            );
            ensure!(
                text(result(&listed, "backups.0001.encrypted")) == "yes",
                "{listed}"
            );
            Ok(text(result(&listed, "backups.0001.backup-id")))
        },
    )
    .unwrap()
    .0;
    // backup-retention: one of this application's own; the first deployment's is not counted.
    d.lm.config(FRESH, &["backup-retention=1"]).unwrap();
    d.lm.wait(SETTLE).unwrap();
    let third = d
        .action(FRESH_UNIT, "create-backup", &[])
        .expect("create-backup with backup-retention=1");
    assert_eq!(text(result(&third, "expired")), scheduled, "{third}");
    let listed = d
        .action(FRESH_UNIT, "list-backups", &[])
        .expect("list-backups");
    assert_eq!(text(result(&listed, "count")), "2", "{listed}");
    assert_eq!(
        text(result(&listed, "backups.0000.backup-id")),
        id,
        "{listed}"
    );
    assert_eq!(
        text(result(&listed, "backups.0001.backup-id")),
        text(result(&third, "backup-id")),
        "{listed}"
    );
    let failed = d.lm.failures().unwrap().failed;
    assert!(
        failed.is_empty(),
        "hooks exited non-zero:\n{}",
        e2e::failure_lines(&failed)
    );
    eprintln!(
        "region_backups: backup {backup_secs:.1} s, restore {restore_secs:.1} s, whole drill {:.1} s",
        start.elapsed().as_secs_f64()
    );
}
