//! Root never follows a path a service account could have planted (issue 19), on a real
//! postgresql-ha unit: as postgres, plant symbolic links where root writes or reads in
//! postgres's own directories, to a root-owned canary file, and make the charm act.
//!
//! - The charm's pgpass in /var/lib/postgresql-ha (postgres's home): the next hook refuses to
//!   write through the link (the hook fails, naming it), the canary is untouched; once the link
//!   is gone, `resolve` lets the unit settle with a regular file again.
//! - Patroni's role-change marker in /run/postgresql-ha: the observer (root) takes only a
//!   regular file as the marker; a link there is removed, never followed, the canary untouched.

use anyhow::{ensure, Result};
use e2e::{read_in, until, Deployment};
use std::time::Duration;

/// This file's subnet (the PostgreSQL drills own 10.77.70–79).
const NET: u8 = 75;
const UNIT: &str = "postgresql-ha/0";
const CANARY: &str = "/etc/root-canary";
const CANARY_TEXT: &str = "root owns this file\n";
const PGPASS: &str = "/var/lib/postgresql-ha/.pgpass-charm";
const MARKER: &str = "/run/postgresql-ha/role-changed";
const SETTLE: Duration = Duration::from_secs(600);

fn bundle(env: &e2e::Env) -> String {
    format!(
        "description: one postgresql-ha unit
machines:
  \"0\": {{}}
applications:
  postgresql-ha:
    charm: {{build}}/postgresql-ha.charm
    num_units: 1
    to: [\"0\"]
    resources:
      wheelhouse: {}
",
        env.build.join("wheelhouse.tar.gz").display()
    )
}

fn as_postgres(d: &Deployment, script: &str) -> Result<String> {
    d.exec(
        UNIT,
        &["runuser", "-u", "postgres", "--", "sh", "-c", script],
    )
}

fn canary_intact(d: &Deployment) -> Result<()> {
    let text = read_in(d, UNIT, CANARY)?;
    ensure!(text == CANARY_TEXT, "the canary changed: {text:?}");
    Ok(())
}

#[test]
fn links_a_service_account_plants_are_not_followed_by_root() {
    let env = e2e::env_or_skip!();
    let d = Deployment::yaml(&env, "planted-links", NET, &bundle(&env)).expect("deploy");
    d.wait_active(SETTLE).expect("settled");
    d.exec(
        UNIT,
        &[
            "sh",
            "-c",
            &format!("printf %s '{CANARY_TEXT}' > {CANARY} && chmod 0644 {CANARY}"),
        ],
    )
    .expect("canary");

    // The pgpass: postgres replaces it with a link to root's canary; a config change makes the
    // charm write it again.
    as_postgres(&d, &format!("rm -f {PGPASS} && ln -s {CANARY} {PGPASS}")).expect("plant");
    d.lm.config("postgresql-ha", &["maximum-lag-on-failover=2097152"])
        .expect("config");
    let failed = until(
        Duration::from_secs(120),
        "the hook to refuse the link",
        || {
            let f = d.lm.failures()?.failed;
            ensure!(!f.is_empty(), "no hook failed yet");
            Ok(e2e::failure_lines(&f))
        },
    )
    .expect("refused")
    .0;
    assert!(
        failed.contains(PGPASS),
        "the failure names the planted path: {failed}"
    );
    canary_intact(&d).expect("canary after the pgpass write");

    // The operator removes the link and resolves: the unit settles with a regular file.
    d.exec(UNIT, &["rm", "-f", PGPASS])
        .expect("remove the link");
    d.lm.resolve(UNIT).expect("resolve");
    until(SETTLE, "the unit to settle after resolve", || {
        d.lm.wait(SETTLE)?;
        let (_, s, m) = d
            .units()?
            .into_iter()
            .find(|(u, _, _)| u == UNIT)
            .expect("unit");
        ensure!(s == "active", "{UNIT} is {s}: {m}");
        Ok(())
    })
    .expect("settled again");
    let kind = d
        .exec(UNIT, &["stat", "-c", "%F %U %a", PGPASS])
        .expect("stat");
    assert_eq!(kind.trim(), "regular file postgres 600");

    // The observer's marker: a link there is removed, never followed.
    as_postgres(&d, &format!("ln -sf {CANARY} {MARKER}")).expect("plant the marker");
    until(
        Duration::from_secs(30),
        "the observer to drop the planted marker",
        || {
            let (code, _, _) = d.lm.exec(UNIT, &["test", "-L", MARKER])?;
            ensure!(code != 0, "{MARKER} is still a link");
            Ok(())
        },
    )
    .expect("observer");
    canary_intact(&d).expect("canary after the observer");
}
