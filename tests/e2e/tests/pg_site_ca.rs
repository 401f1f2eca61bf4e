//! postgresql-ha's `certificates` relation against Canonical's own provider library (issue 19):
//! `site-ca-ops` (tests/e2e/testcharms), an ops charm on charmlibs-interfaces-tls-certificates'
//! TLSCertificatesProvidesV4, unchanged, signs what three postgresql-ha units ask for. Then
//! PostgreSQL on every unit presents a certificate that verifies against the site's CA for the
//! unit's own address (`openssl s_client -starttls postgres -verify_ip`), replication (which
//! verifies the primary with `verify-full`) keeps every standby streaming, and the clients'
//! `tls-ca` holds both CAs. Removing the relation brings back the application's own
//! certificate. No hook of any unit may exit non-zero.

use anyhow::{ensure, Context, Result};
use e2e::{ha, read_in, until, Deployment, Env};
use std::path::PathBuf;
use std::time::Duration;

/// This file's subnet (the PostgreSQL drills own 10.77.70–79).
const NET: u8 = 74;
const CA_MACHINE: &str = "3";
const SETTLE: Duration = Duration::from_secs(600);

fn provider_charm(env: &Env) -> std::result::Result<PathBuf, String> {
    let p = env.build.join("testcharms/site-ca-ops.charm");
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
        "description: postgresql-ha with the site's CA through tls-certificates v4
machines:
  \"0\": {{}}
  \"1\": {{}}
  \"2\": {{}}
  \"{CA_MACHINE}\": {{}}
applications:
  postgresql-ha:
    charm: {{build}}/postgresql-ha.charm
    num_units: 3
    to: [\"0\", \"1\", \"2\"]
    resources:
      wheelhouse: {wheelhouse}
  site-ca:
    charm: {charm}
    num_units: 1
    to: [\"{CA_MACHINE}\"]
relations:
  - [\"postgresql-ha:certificates\", \"site-ca:certificates\"]
",
        wheelhouse = env.build.join("wheelhouse.tar.gz").display(),
        charm = provider.display(),
    )
}

/// Writes `text` to `path` inside `machine` (no stdin through lm exec: octal escapes).
fn write_in(d: &Deployment, machine: &str, path: &str, text: &str) -> Result<()> {
    let esc: String = text.bytes().map(|b| format!("\\{b:03o}")).collect();
    d.exec(machine, &["sh", "-c", &format!("printf '{esc}' > {path}")])?;
    Ok(())
}

/// Whether the PostgreSQL of `unit` presents a certificate that `ca_file` (inside that unit's
/// machine) verifies for the unit's address; the verify line openssl printed.
fn presents(d: &Deployment, unit: &str, ca_file: &str) -> Result<(bool, String)> {
    let m = d.machine_of(unit)?;
    let a = d.address_of(unit)?;
    let script = format!(
        "openssl s_client -starttls postgres -connect {a}:5432 -CAfile {ca_file} -verify_ip {a} -verify_return_error </dev/null 2>&1 | grep -E 'Verify return code|verify error' | head -1"
    );
    let (code, out, err) = d.lm.exec(&m, &["sh", "-c", &script])?;
    let line = format!("{out}{err}").trim().to_string();
    Ok((
        code == 0 && line.contains("Verify return code: 0 (ok)"),
        line,
    ))
}

/// Every unit active and every standby streaming from the primary.
fn settled(d: &Deployment) -> Result<()> {
    d.lm.wait(SETTLE)?;
    until(
        Duration::from_secs(180),
        "three members, every unit active",
        || {
            d.lm.wait(SETTLE)?;
            for (u, s, msg) in d.units()? {
                ensure!(s == "active", "{u} is {s}: {msg}");
            }
            let rows = ha::psql(
            d,
            &ha::primary_machine(d)?.0,
            "postgres",
            "SELECT count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s ON s.pid = r.pid WHERE r.state = 'streaming' AND s.ssl",
        )?;
            ensure!(
                rows.trim() == "2",
                "standbys streaming over TLS: {}",
                rows.trim()
            );
            Ok(())
        },
    )?;
    let failed = d.lm.failures()?.failed;
    ensure!(
        failed.is_empty(),
        "hooks exited non-zero:\n{}",
        e2e::failure_lines(&failed)
    );
    Ok(())
}

#[test]
fn postgresql_presents_the_site_certificate_and_replication_still_verifies_it() {
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
        "pg-site-ca",
        NET,
        &bundle(&env, &charm),
        &e2e::extra_overlays(),
    )
    .expect("deploy");
    settled(&d).expect("settled with the site's certificates");

    let site_ca = read_in(&d, CA_MACHINE, "/var/lib/site-ca-ops/ca.pem").expect("the site CA");
    for unit in ha::pg_units(&d).expect("units") {
        let m = d.machine_of(&unit).expect("machine");
        write_in(&d, &m, "/tmp/site-ca.pem", &site_ca).expect("copy the site CA");
        let (ok, line) = presents(&d, &unit, "/tmp/site-ca.pem").expect("s_client");
        assert!(
            ok,
            "{unit}: PostgreSQL does not present the site's certificate for its address: {line}"
        );
        let (app_ok, _) = presents(&d, &unit, "/etc/postgresql-ha/tls/ca.pem").expect("s_client");
        assert!(
            !app_ok,
            "{unit}: the application CA's certificate is still presented"
        );
        let trusted = read_in(&d, &m, "/etc/postgresql-ha/tls/trusted.pem").expect("trusted");
        assert!(
            trusted.contains(site_ca.trim()),
            "{unit}: clients are not told to trust the site CA"
        );
        assert_eq!(
            trusted.matches("BEGIN CERTIFICATE").count(),
            2,
            "{unit}: both CAs, while units switch"
        );
    }

    // Without the relation, the application's own certificate serves again.
    d.lm.remove_relation("postgresql-ha:certificates", "site-ca:certificates")
        .expect("remove-relation");
    until(
        Duration::from_secs(180),
        "every unit back on the application's certificate",
        || {
            d.lm.wait(SETTLE)?;
            for unit in ha::pg_units(&d)? {
                let (ok, line) = presents(&d, &unit, "/etc/postgresql-ha/tls/ca.pem")?;
                ensure!(ok, "{unit}: {line}");
            }
            Ok(())
        },
    )
    .context("after remove-relation")
    .unwrap();
    settled(&d).expect("settled on the application's certificates");
}
