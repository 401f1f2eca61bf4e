//! Backups and point-in-time restore (issue 23): postgresql-ha related through `s3-parameters` to
//! `s3-provider-ops` (tests/e2e/testcharms: an S3 server, moto behind Debian's nginx TLS, and the
//! s3 interface's provider side as s3-integrator writes it), with Debian's pgBackRest.
//!
//! The drill: rows before a full backup → backup → more rows → a time T → more rows → WAL
//! switched and archived → `restore restore-to-time=T`: exactly the rows committed before T are
//! there, writes work, two added units copy the restored database and stream from it, and a new
//! backup on the new timeline succeeds. The repository is encrypted. Then every unit's backup exporter reports the age of
//! the newest backups, and a `backup-schedule` of every minute has the primary's timer take a
//! full backup while the standbys' timers do nothing. No hook of any unit may exit non-zero.
//!
//! Before the restore in place, the same time is restored into a fresh deployment (a new
//! application, `pg-restored`, related to the same repository): it starts no stanza beside the
//! first deployment's, refuses to restore without that deployment's passphrase or with a
//! wrong one, restores with it, and then archives and backs up into a stanza of its own while
//! the first deployment's stanza keeps exactly its backups.

use anyhow::{ensure, Context, Result};
use e2e::{ha, until, Deployment, Env};
use local_model::{AppPlan, DeployPlan, Substrate};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// This file's subnet (the PostgreSQL drills own 10.77.70–79).
const NET: u8 = 76;
const PG: &str = "postgresql-ha/0";
const S3_MACHINE: &str = "1";
const SETTLE: Duration = Duration::from_secs(600);
/// The fresh deployment the first one's backup is restored into.
const FRESH: &str = "pg-restored";
const FRESH_UNIT: &str = "pg-restored/0";

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
        "description: postgresql-ha backing up into S3 through s3-parameters
machines:
  \"0\": {{}}
  \"{S3_MACHINE}\": {{}}
applications:
  postgresql-ha:
    charm: {{build}}/postgresql-ha.charm
    num_units: 1
    to: [\"0\"]
    resources:
      wheelhouse: {wheelhouse}
  s3:
    charm: {charm}
    num_units: 1
    to: [\"{S3_MACHINE}\"]
relations:
  - [\"postgresql-ha:s3-parameters\", \"s3:s3-credentials\"]
",
        wheelhouse = env.build.join("wheelhouse.tar.gz").display(),
        charm = provider.display(),
    )
}

fn sql(d: &Deployment, text: &str) -> Result<String> {
    let (_, m) = ha::primary_machine(d)?;
    Ok(ha::psql(d, &m, "postgres", text)?.trim().to_string())
}

/// SQL on the fresh deployment's one unit.
fn fresh_sql(d: &Deployment, text: &str) -> Result<String> {
    let m = d.machine_of(FRESH_UNIT)?;
    Ok(ha::psql(d, &m, "postgres", text)?.trim().to_string())
}

/// Every unit active, no hook failed.
fn settled(d: &Deployment) -> Result<()> {
    d.lm.wait(SETTLE)?;
    until(Duration::from_secs(180), "every unit active", || {
        d.lm.wait(SETTLE)?;
        for (u, s, msg) in d.units()? {
            ensure!(s == "active", "{u} is {s}: {msg}");
        }
        Ok(())
    })?;
    let failed = d.lm.failures()?.failed;
    ensure!(
        failed.is_empty(),
        "hooks exited non-zero:\n{}",
        e2e::failure_lines(&failed)
    );
    Ok(())
}

/// Waits until PostgreSQL has archived the WAL segment it just switched away from.
fn archive_current_wal(d: &Deployment) -> Result<String> {
    archive_wal_with(&|text| sql(d, text))
}

fn archive_wal_with(sql: &dyn Fn(&str) -> Result<String>) -> Result<String> {
    let segment = sql("SELECT pg_walfile_name(pg_switch_wal())")?;
    until(
        Duration::from_secs(120),
        "the switched WAL segment archived",
        || {
            let last = sql("SELECT coalesce(last_archived_wal, '') || ' ' || failed_count FROM pg_stat_archiver")?;
            let done = last.split(' ').next().unwrap_or("");
            ensure!(
                done >= segment.as_str() && !done.is_empty(),
                "last archived {last:?}, waiting for {segment}"
            );
            Ok(())
        },
    )?;
    Ok(segment)
}

/// The value of the sample whose name and labels are exactly `series` in a Prometheus
/// exposition.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn action(d: &Deployment, unit: &str, name: &str, params: &[&str]) -> Result<serde_json::Value> {
    d.action(unit, name, params)
        .with_context(|| format!("{name} on {unit}"))
}

#[test]
fn point_in_time_restore_brings_back_exactly_what_was_committed_before_the_time() {
    let env = e2e::env_or_skip!();
    let charm = match provider_charm(&env) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED (local-model end-to-end): {why}");
            return;
        }
    };
    let d = Deployment::yaml_overlaid(
        &env,
        "pg-backups",
        NET,
        &bundle(&env, &charm),
        &e2e::extra_overlays(),
    )
    .expect("deploy");
    settled(&d).expect("settled with a backup repository");

    // The exporter reads PostgreSQL as the monitoring role (peer authentication, pg_monitor)
    // and serves on loopback only.
    let m = d.machine_of(PG).unwrap();
    until(
        Duration::from_secs(60),
        "the exporter reports PostgreSQL up",
        || {
            let metrics = d.exec(&m, &["curl", "-sf", "http://127.0.0.1:9187/metrics"])?;
            ensure!(metrics.lines().any(|l| l == "pg_up 1"), "pg_up is not 1");
            ensure!(
                metrics.contains("pg_settings_max_connections"),
                "no pg_settings_max_connections"
            );
            Ok(())
        },
    )
    .unwrap();
    let addr = d.address_of(PG).unwrap();
    let outside =
        d.lm.exec(
            &m,
            &[
                "curl",
                "-sf",
                "--max-time",
                "2",
                &format!("http://{addr}:9187/metrics"),
            ],
        )
        .unwrap();
    assert_ne!(
        outside.0, 0,
        "the exporter answers on {addr}, not only on loopback"
    );

    // The stanza exists and WAL is archived through pgBackRest.
    let listed = action(&d, PG, "list-backups", &[]).expect("list-backups");
    assert_eq!(listed["count"], "0", "{listed}");
    sql(
        &d,
        "CREATE TABLE drill (i int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())",
    )
    .unwrap();
    sql(&d, "INSERT INTO drill (i) SELECT generate_series(1, 100)").unwrap();
    // The primary created the stanza as soon as it ran, and PostgreSQL archives through
    // pgBackRest (Patroni applies the reload within a loop).
    until(
        Duration::from_secs(30),
        "archive_command is pgBackRest's",
        || {
            let cmd = sql(&d, "SHOW archive_command")?;
            ensure!(
                cmd.contains("pgbackrest") && cmd.contains("archive-push"),
                "archive_command is {cmd:?}"
            );
            Ok(())
        },
    )
    .unwrap();
    archive_current_wal(&d).expect("archiving works before any backup");

    // The repository is encrypted: pgBackRest reads its info file back with the passphrase,
    // and without it the stored bytes are OpenSSL's salted ciphertext, not the INI text.
    let get = |cipher: &str| {
        d.exec(
            &m,
            &[
                "sh",
                "-c",
                &format!("pgbackrest --config=/etc/postgresql-ha/pgbackrest.conf --stanza=postgresql-ha {cipher} repo-get backup/postgresql-ha/backup.info | head -c 10"),
            ],
        )
    };
    let clear = get("").expect("repo-get with the passphrase");
    assert!(clear.starts_with("[backrest]"), "{clear:?}");
    let raw = get("--repo1-cipher-type=none").expect("repo-get without the passphrase");
    assert!(raw.starts_with("Salted__"), "stored in clear: {raw:?}");

    let t0 = Instant::now();
    let backup = action(&d, PG, "create-backup", &["type=full"]).expect("create-backup");
    let backup_secs = t0.elapsed().as_secs_f64();
    let id = backup["backup-id"].as_str().unwrap().to_string();
    assert!(id.ends_with('F'), "a full backup's label: {backup}");

    // A point in time is after a backup's last second (pgBackRest starts a restore to a time
    // from a backup that stopped before it): rows after the backup come once the database's
    // clock is past that second.
    let listed = action(&d, PG, "list-backups", &[]).expect("list-backups");
    let stopped = listed["backups"]["0000"]["stopped"]
        .as_str()
        .unwrap()
        .to_string();
    until(
        Duration::from_secs(10),
        "the clock past the backup's last second",
        || {
            let past = sql(
                &d,
                &format!(
                    "SELECT clock_timestamp() >= '{stopped}'::timestamptz + interval '1 second'"
                ),
            )?;
            ensure!(past == "t", "not yet past {stopped}");
            Ok(())
        },
    )
    .unwrap();
    sql(&d, "INSERT INTO drill (i) SELECT generate_series(101, 200)").unwrap();
    let target = sql(
        &d,
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    )
    .unwrap();
    // Strictly after the target: clock_timestamp() moves on between statements.
    sql(&d, "INSERT INTO drill (i) SELECT generate_series(201, 300)").unwrap();
    let late = sql(
        &d,
        &format!("SELECT count(*) FROM drill WHERE at <= '{target}'"),
    )
    .unwrap();
    assert_eq!(late, "200", "rows 201..300 were committed after {target}");
    archive_current_wal(&d).expect("the WAL past the target archived");

    let listed = action(&d, PG, "list-backups", &[]).expect("list-backups");
    assert_eq!(listed["count"], "1", "{listed}");
    assert_eq!(listed["backups"]["0000"]["id"], id.as_str());

    let fresh_secs = restore_into_a_fresh_deployment(&env, &d, &target, &id)
        .expect("the restore into a fresh deployment");

    // A time before every backup is refused before anything is stopped.
    let refused = d.action(PG, "restore", &["restore-to-time=2000-01-01 00:00:00+00"]);
    let why = format!(
        "{:#}",
        refused.expect_err("a restore to before any backup is refused")
    );
    assert!(why.contains("no backup ended before"), "{why}");
    assert_eq!(
        sql(&d, "SELECT count(*) FROM drill").unwrap(),
        "300",
        "the cluster is untouched"
    );

    let t0 = Instant::now();
    let restored =
        action(&d, PG, "restore", &[&format!("restore-to-time={target}")]).expect("restore");
    let restore_secs = t0.elapsed().as_secs_f64();
    assert_eq!(restored["status"], "restored", "{restored}");
    settled(&d).expect("settled after the restore");
    assert_eq!(
        sql(&d, "SELECT count(*) || ' ' || max(i) FROM drill").unwrap(),
        "200 200",
        "exactly the rows committed before {target}"
    );
    sql(&d, "INSERT INTO drill (i) VALUES (1000)").expect("writes after the restore");

    // New members copy the restored database and stream from it.
    d.lm.add_unit("postgresql-ha", 2, None).expect("add-unit");
    settled(&d).expect("three units after the restore");
    until(
        Duration::from_secs(180),
        "two standbys streaming from the restored primary",
        || {
            let n = sql(
                &d,
                "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
            )?;
            ensure!(n == "2", "{n} streaming");
            Ok(())
        },
    )
    .unwrap();
    for unit in ha::pg_units(&d).unwrap() {
        let m = d.machine_of(&unit).unwrap();
        let rows = until(
            Duration::from_secs(60),
            "the replica has the restored rows",
            || {
                let n = ha::psql(&d, &m, "postgres", "SELECT count(*) FROM drill")?;
                ensure!(n.trim() == "201", "{unit}: {}", n.trim());
                Ok(())
            },
        );
        rows.unwrap();
    }

    // Backups go on, on the new timeline, from whichever unit is the primary.
    let (primary, _) = ha::primary_machine(&d).unwrap();
    let again = action(&d, &primary, "create-backup", &["type=incremental"])
        .expect("a backup after the restore");
    assert!(
        again["backup-id"].as_str().unwrap().ends_with('I'),
        "{again}"
    );

    // Every unit's backup exporter reports the incremental just taken (its info is cached up
    // to 30 s) and how many good backups there are.
    for unit in ha::pg_units(&d).unwrap() {
        let m = d.machine_of(&unit).unwrap();
        until(Duration::from_secs(90), "the backup age on every unit", || {
            let text = d.exec(&m, &["curl", "-sf", "http://127.0.0.1:9959/metrics"])?;
            let incr = metric(&text, "pgbackrest_backup_since_last_completion_seconds{backup_type=\"incr\",stanza=\"postgresql-ha\"}")
                .with_context(|| format!("{unit}: no incremental age in\n{text}"))?;
            ensure!(incr < 600.0, "{unit}: the newest incremental is {incr} s old");
            let full = metric(&text, "pgbackrest_backup_since_last_completion_seconds{backup_type=\"full\",stanza=\"postgresql-ha\"}")
                .context("no full age")?;
            ensure!(full >= incr, "{unit}: the full backup ({full} s) is older than the incremental ({incr} s)");
            ensure!(
                metric(&text, "pgbackrest_backups{stanza=\"postgresql-ha\"}") == Some(2.0),
                "{unit}: not 2 backups in\n{text}"
            );
            Ok(())
        })
        .unwrap();
    }

    // A schedule every minute: the timer on every unit fires, the primary takes a full backup,
    // the standbys say they are standbys, and the exporter reports the schedule's gap.
    // Retention applies to scheduled backups too: with one full backup kept, the scheduled one
    // expires the earlier full and the incremental that depends on it.
    d.lm.config(
        "postgresql-ha",
        &["backup-schedule=* * * * *", "backup-retention-full=1"],
    )
    .expect("set backup-schedule");
    settled(&d).expect("settled with a schedule");
    let scheduled = until(Duration::from_secs(180), "a scheduled full backup", || {
        let listed = action(&d, &primary, "list-backups", &[])?;
        let ids: Vec<String> = listed["backups"]
            .as_object()
            .map(|o| {
                o.values()
                    .filter_map(|b| b["id"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let new = ids.iter().find(|i| i.ends_with('F') && **i != id).cloned();
        let new = new.ok_or_else(|| anyhow::anyhow!("backups so far: {ids:?}"))?;
        ensure!(
            ids.len() == 1,
            "older backups not expired with backup-retention-full=1: {ids:?}"
        );
        Ok(new)
    })
    .unwrap()
    .0;
    let primary_m = d.machine_of(&primary).unwrap();
    let log = d
        .exec(
            &primary_m,
            &["journalctl", "-u", "postgresql-ha-backup", "--no-pager"],
        )
        .unwrap_or_default();
    assert!(
        !log.contains("this unit is a standby"),
        "the primary's scheduled run did not back up:\n{log}"
    );
    for unit in ha::pg_units(&d)
        .unwrap()
        .into_iter()
        .filter(|u| *u != primary)
    {
        let m = d.machine_of(&unit).unwrap();
        until(Duration::from_secs(90), "a standby's scheduled run", || {
            let log = d.exec(
                &m,
                &["journalctl", "-u", "postgresql-ha-backup", "--no-pager"],
            )?;
            ensure!(log.contains("this unit is a standby"), "{unit}: {log}");
            Ok(())
        })
        .unwrap();
        let text = d
            .exec(&m, &["curl", "-sf", "http://127.0.0.1:9959/metrics"])
            .unwrap();
        assert_eq!(
            metric(
                &text,
                "pgbackrest_backup_schedule_max_interval_seconds{stanza=\"postgresql-ha\"}"
            ),
            Some(60.0),
            "{text}"
        );
    }
    // The schedule emptied: no timer left.
    d.lm.config("postgresql-ha", &["backup-schedule="])
        .expect("empty backup-schedule");
    settled(&d).expect("settled without a schedule");
    for unit in ha::pg_units(&d).unwrap() {
        let m = d.machine_of(&unit).unwrap();
        let (code, out, _) =
            d.lm.exec(
                &m,
                &["systemctl", "is-active", "postgresql-ha-backup.timer"],
            )
            .unwrap();
        assert_ne!(code, 0, "{unit}: the timer is {out}");
    }

    let failed = d.lm.failures().unwrap().failed;
    assert!(
        failed.is_empty(),
        "hooks exited non-zero:\n{}",
        e2e::failure_lines(&failed)
    );
    eprintln!("pg_backups: scheduled backup {scheduled}");
    eprintln!("pg_backups: restore to a time into a fresh deployment {fresh_secs:.1} s");
    eprintln!(
        "pg_backups: full backup {backup_secs:.1} s ({} bytes), restore to a time {restore_secs:.1} s",
        backup["size"].as_str().unwrap_or("?")
    );
}

/// A fresh postgresql-ha application related to the first one's repository: blocked beside the
/// other deployment's stanza, refusing to restore without its passphrase or with a wrong one,
/// then restored to `target` with it, writable, archiving and backing up into its own stanza;
/// the first deployment's stanza keeps exactly its backup `first_backup`. Returns how long the
/// restore took.
fn restore_into_a_fresh_deployment(
    env: &Env,
    d: &Deployment,
    target: &str,
    first_backup: &str,
) -> Result<f64> {
    let plan = DeployPlan {
        apps: vec![AppPlan {
            name: FRESH.into(),
            charm: env.build.join("postgresql-ha.charm"),
            num_units: 1,
            resources: [(
                "wheelhouse".to_string(),
                env.build.join("wheelhouse.tar.gz"),
            )]
            .into(),
            ..Default::default()
        }],
        relations: vec![(format!("{FRESH}:s3-parameters"), "s3:s3-credentials".into())],
        ..Default::default()
    };
    d.lm.deploy_plan(plan, Substrate::Hosts)?;
    d.lm.wait(SETTLE)?;
    // It does not start a stanza of its own in a repository that holds another deployment's.
    until(
        Duration::from_secs(180),
        "the fresh deployment blocked beside postgresql-ha's stanza",
        || {
            d.lm.wait(SETTLE)?;
            let units = d.units()?;
            let (_, s, msg) = units
                .iter()
                .find(|(u, _, _)| u == FRESH_UNIT)
                .context("no pg-restored/0")?;
            ensure!(
                s == "blocked"
                    && msg.contains("another deployment's backups (stanza postgresql-ha)"),
                "{FRESH_UNIT} is {s}: {msg}"
            );
            Ok(())
        },
    )?;
    let time = format!("restore-to-time={target}");
    // Its own passphrase does not read the other deployment's backups, nor does a wrong one:
    // refused before anything stops.
    let refused = d
        .action(FRESH_UNIT, "restore", &[&time])
        .err()
        .context("a restore without the first deployment's passphrase was not refused")?;
    let why = format!("{refused:#}");
    ensure!(
        why.contains("stanza postgresql-ha") && why.contains("run set-backup-passphrase"),
        "without the passphrase: {why}"
    );
    action(
        d,
        FRESH_UNIT,
        "set-backup-passphrase",
        &["passphrase=NotTheFirstDeploymentsPassphrase0123"],
    )?;
    let refused = d
        .action(FRESH_UNIT, "restore", &[&time])
        .err()
        .context("a restore with a wrong passphrase was not refused")?;
    let why = format!("{refused:#}");
    ensure!(
        why.contains("run set-backup-passphrase"),
        "with a wrong passphrase: {why}"
    );
    ensure!(
        fresh_sql(d, "SELECT to_regclass('drill') IS NULL")? == "t",
        "the fresh cluster was touched by a refused restore"
    );
    // The first deployment's passphrase, as its operator keeps it (here read off its unit).
    let first = d.machine_of(PG)?;
    let passphrase = d
        .exec(
            &first,
            &[
                "sed",
                "-n",
                "s/^repo1-cipher-pass=//p",
                "/etc/postgresql-ha/pgbackrest.conf",
            ],
        )?
        .trim()
        .to_string();
    ensure!(passphrase.len() >= 16, "no passphrase on {PG}");
    action(
        d,
        FRESH_UNIT,
        "set-backup-passphrase",
        &[&format!("passphrase={passphrase}")],
    )?;
    let listed = action(d, FRESH_UNIT, "list-backups", &["stanza=postgresql-ha"])?;
    ensure!(
        listed["count"] == "1" && listed["backups"]["0000"]["id"] == first_backup,
        "the fresh deployment does not see the first one's backup: {listed}"
    );
    let t0 = Instant::now();
    let restored = action(d, FRESH_UNIT, "restore", &[&time])?;
    let secs = t0.elapsed().as_secs_f64();
    ensure!(
        restored["status"] == "restored" && restored["stanza"] == "postgresql-ha",
        "{restored}"
    );
    settled(d)?;
    let rows = fresh_sql(d, "SELECT count(*) || ' ' || max(i) FROM drill")?;
    ensure!(
        rows == "200 200",
        "not exactly the rows committed before {target}: {rows}"
    );
    fresh_sql(d, "INSERT INTO drill (i) VALUES (2000)")?;
    // It archives into its own stanza, never into the one it came from.
    until(
        Duration::from_secs(60),
        "the fresh deployment archives into its own stanza",
        || {
            let cmd = fresh_sql(d, "SHOW archive_command")?;
            ensure!(
                cmd.contains("--stanza=pg-restored ") && cmd.contains("archive-push"),
                "archive_command is {cmd:?}"
            );
            Ok(())
        },
    )?;
    archive_wal_with(&|text| fresh_sql(d, text))?;
    let own = action(d, FRESH_UNIT, "create-backup", &["type=full"])?;
    let own_id = own["backup-id"].as_str().unwrap_or_default().to_string();
    let listed = action(d, FRESH_UNIT, "list-backups", &[])?;
    ensure!(
        listed["stanza"] == "pg-restored"
            && listed["count"] == "1"
            && listed["backups"]["0000"]["id"] == own_id.as_str(),
        "the fresh deployment's own stanza: {listed}"
    );
    let theirs = action(d, PG, "list-backups", &[])?;
    ensure!(
        theirs["count"] == "1"
            && theirs["backups"]["0000"]["id"] == first_backup
            && theirs["status"] == "ok",
        "the first deployment's stanza changed: {theirs}"
    );
    Ok(secs)
}
