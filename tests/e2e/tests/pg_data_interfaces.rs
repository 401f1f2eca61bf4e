//! postgresql-ha's `database` relation against Canonical's own client library (issue 18): two
//! applications of `database-requirer-ops` (tests/e2e/testcharms), an ops charm on
//! data_interfaces v0's DatabaseRequires, unchanged, packed with its PyPI packages by `make
//! testcharms`, related to one postgresql-ha unit in the local model.
//!
//! `requirer` asks for `createdb`, which the default `allowed-extra-user-roles` allows;
//! `requirer-refused` also asks for `SUPERUSER` (not allowed by default) and
//! `pg_execute_server_program` (never granted). Each records what the library handed it on
//! `database_created` and what it could do when it connected with it; the test checks both
//! against the server. Then the operator allows superuser, and only the role that is never
//! granted stays refused.
//!
//! The charms run exactly as Juju would run them, so this is also the local model running an
//! ops charm: no hook of any unit may exit non-zero.

use anyhow::{ensure, Context, Result};
use e2e::{ha, read_in, until, Deployment, Env};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// This file's subnet (the PostgreSQL drills own 10.77.70–79).
const NET: u8 = 73;
const PG: &str = "postgresql-ha/0";
const CLIENT_MACHINE: &str = "1";
const SETTLE: Duration = Duration::from_secs(600);
const NEVER: &str = "pg_execute_server_program is never granted (it runs programs or reads and writes files on the server as its OS user)";

/// The packed requirer (`make testcharms`), or why the test cannot run.
fn requirer_charm(env: &Env) -> std::result::Result<PathBuf, String> {
    let p = env.build.join("testcharms/database-requirer-ops.charm");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing: run `make testcharms` (make test does)",
            p.display()
        ))
    }
}

fn bundle(env: &Env, requirer: &Path) -> String {
    format!(
        "description: postgresql-ha against data_interfaces' DatabaseRequires
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
  requirer:
    charm: {charm}
    num_units: 1
    to: [\"{CLIENT_MACHINE}\"]
    options:
      database: requirer_db
      extra-user-roles: createdb
  requirer-refused:
    charm: {charm}
    num_units: 1
    to: [\"{CLIENT_MACHINE}\"]
    options:
      database: refused_db
      extra-user-roles: createdb,SUPERUSER,pg_execute_server_program
relations:
  - [\"postgresql-ha:database\", \"requirer:database\"]
  - [\"postgresql-ha:database\", \"requirer-refused:database\"]
",
        wheelhouse = env.build.join("wheelhouse.tar.gz").display(),
        charm = requirer.display(),
    )
}

/// What a requirer application recorded.
fn recorded(d: &Deployment, app: &str) -> Result<Value> {
    let text = read_in(
        d,
        CLIENT_MACHINE,
        &format!("/var/lib/database-requirer-ops/{app}/result.json"),
    )?;
    Ok(serde_json::from_str(&text)?)
}

/// A unit's (workload status, message).
fn status_of(d: &Deployment, unit: &str) -> Result<(String, String)> {
    d.units()?
        .into_iter()
        .find(|(n, _, _)| n == unit)
        .map(|(_, s, m)| (s, m))
        .with_context(|| format!("no unit {unit}"))
}

/// Waits for the model to settle with every requirer active and the database unit blocked
/// with `message`; no hook of any unit may have exited non-zero.
fn settled_with(d: &Deployment, message: &str) -> Result<()> {
    d.lm.wait(SETTLE)?;
    until(Duration::from_secs(120), "the statuses", || {
        d.lm.wait(SETTLE)?;
        for app in ["requirer", "requirer-refused"] {
            let (s, m) = status_of(d, &format!("{app}/0"))?;
            ensure!(s == "active", "{app}/0 is {s}: {m}");
        }
        let pg = status_of(d, PG)?;
        ensure!(
            pg == ("blocked".to_string(), message.to_string()),
            "{PG} is {pg:?}, not blocked {message:?}"
        );
        Ok(())
    })?;
    let failed = d.lm.failures()?.failed;
    ensure!(
        failed.is_empty(),
        "hooks exited non-zero (an ops charm the local model runs as Juju would must not fail):\n{}",
        e2e::failure_lines(&failed)
    );
    Ok(())
}

/// The server's view of a relation's role: superuser, createdb, granted the never-granted role
/// (pg_auth_members: pg_has_role says yes to anything for a superuser).
fn role_on_server(d: &Deployment, role: &str) -> Result<String> {
    Ok(ha::psql(
        d,
        PG,
        "postgres",
        &format!(
            "SELECT rolsuper, rolcreatedb, EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = u.oid AND g.rolname = 'pg_execute_server_program') FROM pg_roles u WHERE rolname = '{role}'"
        ),
    )?
    .trim()
    .to_string())
}

#[test]
fn data_interfaces_database_requires_gets_a_working_database_within_the_allowed_roles() {
    let env = e2e::env_or_skip!();
    let charm = match requirer_charm(&env) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED (local-model end-to-end): {why}");
            return;
        }
    };
    let d = Deployment::yaml_overlaid(
        &env,
        "pg-data-interfaces",
        NET,
        &bundle(&env, &charm),
        &e2e::extra_overlays(),
    )
    .expect("deploy");

    // The refused client's relation id names it in the database unit's status.
    let refused_id = until(SETTLE, "requirer-refused to record its database", || {
        recorded(&d, "requirer-refused")?["relation-id"]
            .as_u64()
            .context("no relation-id yet")
    })
    .expect("requirer-refused recorded")
    .0;
    let blocked = format!(
        "database:{refused_id} (requirer-refused): extra-user-roles refused: superuser not in the allowed-extra-user-roles config option (add it there to have it granted); {NEVER}"
    );
    settled_with(&d, &blocked).expect("settled");

    // What DatabaseRequires handed the client on database_created.
    let pg_address = d.address_of(PG).expect("address");
    let ca = read_in(&d, "0", "/etc/postgresql-ha/tls/ca.pem").expect("the application's CA");
    let r = recorded(&d, "requirer").expect("requirer's record");
    assert_eq!(r["event"], "database_created", "{r:#}");
    assert!(r["error"].is_null(), "{r:#}");
    let got = &r["got"];
    let user = format!("relation_{}", r["relation-id"]);
    assert_eq!(got["database"], "requirer_db");
    assert_eq!(got["endpoints"], format!("{pg_address}:5432"));
    assert_eq!(
        got["read-only-endpoints"],
        format!("{pg_address}:5432"),
        "one unit: the primary serves reads"
    );
    assert_eq!(got["username"], user.as_str(), "{r:#}");
    assert_eq!(
        got["uris"],
        format!("postgresql://{user}:<password>@{pg_address}:5432/requirer_db"),
        "uris from the secret, with the same password the library gave"
    );
    assert_eq!(got["tls"], "True");
    assert_eq!(got["tls-ca"].as_str(), Some(ca.as_str()));
    assert_eq!(
        r["password-sha256"].as_str().map(str::len),
        Some(64),
        "a password came through the secret"
    );
    // The credentials came through a Juju secret: none in the databag.
    let keys: Vec<&str> = r["provider-keys"]
        .as_array()
        .expect("provider-keys")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(keys.contains(&"secret-user"), "{keys:?}");
    // The library asks for tls and tls-ca in a secret too: they came in `secret-tls`.
    assert!(keys.contains(&"secret-tls"), "{keys:?}");
    for clear in [
        "username",
        "password",
        "uris",
        "read-only-uris",
        "tls",
        "tls-ca",
    ] {
        assert!(
            !keys.contains(&clear),
            "{clear} in clear in the databag: {keys:?}"
        );
    }
    assert!(
        r["secret-user"]
            .as_str()
            .is_some_and(|s| s.starts_with("secret:") || s.starts_with("secret://")),
        "{r:#}"
    );

    // What the client could do with it, through the endpoints, TLS verified against tls-ca.
    let c = &r["checks"];
    assert_eq!(c["current-user"], user.as_str());
    assert_eq!(c["current-database"], "requirer_db");
    assert_eq!(c["ssl"], true);
    let server_version = c["server-version"].as_str().expect("server-version");
    assert_eq!(
        got["version"].as_str(),
        server_version.split_whitespace().next(),
        "version is the server's full version"
    );
    assert_eq!(
        (c["createdb"].clone(), c["superuser"].clone()),
        (true.into(), false.into())
    );
    assert_eq!(c["create-database"], "ok", "createdb works: {c:#}");
    assert!(c["wrote"].as_i64().is_some_and(|n| n >= 1), "{c:#}");
    assert_eq!(c["uris-user"], user.as_str(), "the uris connect");
    assert_eq!(c["read-only-in-recovery"], false);
    assert!(
        c["read-only-sees"].as_i64().is_some_and(|n| n >= 1),
        "{c:#}"
    );
    assert!(
        c["copy-to-program"]
            .as_str()
            .is_some_and(|e| e != "ok" && e.contains("pg_execute_server_program")),
        "a client runs no program on the server: {c:#}"
    );

    // The refused client is served all the same, with only what is allowed.
    let rr = recorded(&d, "requirer-refused").expect("requirer-refused's record");
    let refused_user = format!("relation_{refused_id}");
    assert!(rr["error"].is_null(), "{rr:#}");
    assert_eq!(rr["got"]["database"], "refused_db");
    let c = &rr["checks"];
    assert_eq!(c["current-user"], refused_user.as_str(), "{rr:#}");
    assert_eq!(
        (c["createdb"].clone(), c["superuser"].clone()),
        (true.into(), false.into())
    );
    assert_eq!(c["create-database"], "ok");
    assert!(
        !c["member-of"]
            .as_array()
            .expect("member-of")
            .iter()
            .any(|m| m == "pg_execute_server_program" || m == "superuser"),
        "{c:#}"
    );
    assert!(
        c["copy-to-program"]
            .as_str()
            .is_some_and(|e| e != "ok" && e.contains("pg_execute_server_program")),
        "{c:#}"
    );
    assert_eq!(role_on_server(&d, &refused_user).unwrap(), "f|t|f");
    assert_eq!(role_on_server(&d, &user).unwrap(), "f|t|f");

    // The operator allows superuser: granted; the never-granted role stays refused.
    d.lm.config(
        "postgresql-ha",
        &["allowed-extra-user-roles=createdb,superuser"],
    )
    .expect("config");
    settled_with(
        &d,
        &format!("database:{refused_id} (requirer-refused): extra-user-roles refused: {NEVER}"),
    )
    .expect("settled after allowing superuser");
    assert_eq!(role_on_server(&d, &refused_user).unwrap(), "t|t|f");
    assert_eq!(
        role_on_server(&d, &user).unwrap(),
        "f|t|f",
        "a client that did not ask gets nothing more"
    );
}
