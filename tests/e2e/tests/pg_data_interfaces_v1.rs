//! postgresql-ha's `database` relation against data_interfaces v1, the library new charms are
//! built on (issue 18): `database-requirer-v1-ops` (tests/e2e/testcharms), an ops charm on
//! PyPI's dpcharmlibs-interfaces (`ResourceRequirerEventHandler`), unchanged, packed with its
//! PyPI packages by `make testcharms`, related to one postgresql-ha unit behind the DB VIP
//! (keepalived-vip with the bundle's db-vip options) in the local model.
//!
//! The requirer asks in v1 (`version: v1`, a `requests` list); it must be answered in v1 (the
//! library's `resource_created` fires), with its credentials and TLS settings only in secrets,
//! and the endpoint it is given must be the DB VIP: it connects there with TLS verified against
//! the `tls-ca` it received, writes, and its `uris` work. Beside it, on the same endpoint, a v0
//! client (`database-requirer-ops`, data_interfaces v0's DatabaseRequires) is still answered in
//! v0. The charms run exactly as Juju would run them: no hook of any unit may exit non-zero.

use anyhow::{Context, Result};
use e2e::{ha, read_in, until, Deployment, Env};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// This file's subnet (the PostgreSQL drills own 10.77.70–79).
const NET: u8 = 78;
const VIP: &str = "10.77.78.201";
const PG: &str = "postgresql-ha/0";
const CLIENT_MACHINE: &str = "1";
const SETTLE: Duration = Duration::from_secs(600);

/// The packed requirers, v1 and v0 (`make testcharms`), or why the test cannot run.
fn requirer_charms(env: &Env) -> std::result::Result<(PathBuf, PathBuf), String> {
    let v1 = env.build.join("testcharms/database-requirer-v1-ops.charm");
    let v0 = env.build.join("testcharms/database-requirer-ops.charm");
    for p in [&v1, &v0] {
        if !p.exists() {
            return Err(format!(
                "{} is missing: run `make testcharms` (make test does)",
                p.display()
            ));
        }
    }
    Ok((v1, v0))
}

fn bundle(env: &Env, requirer: &Path, requirer_v0: &Path, db_vip_options: &str) -> String {
    format!(
        "description: postgresql-ha behind its DB VIP against data_interfaces v1 (dpcharmlibs-interfaces)
machines:
  \"0\": {{}}
  \"{CLIENT_MACHINE}\": {{}}
applications:
  postgresql-ha:
    charm: {{build}}/postgresql-ha.charm
    num_units: 1
    to: [\"0\"]
    resources:
      wheelhouse: {wheelhouse}
  db-vip:
    charm: {{build}}/keepalived-vip.charm
    options:
      vip: {VIP}/24
{db_vip_options}  requirer:
    charm: {charm}
    num_units: 1
    to: [\"{CLIENT_MACHINE}\"]
    options:
      database: v1_db
      extra-user-roles: createdb
  requirer-v0:
    charm: {charm_v0}
    num_units: 1
    to: [\"{CLIENT_MACHINE}\"]
    options:
      database: v0_db
      extra-user-roles: createdb
relations:
  - [\"postgresql-ha:vip\", \"db-vip:vip\"]
  - [\"postgresql-ha:database\", \"requirer:database\"]
  - [\"postgresql-ha:database\", \"requirer-v0:database\"]
",
        wheelhouse = env.build.join("wheelhouse.tar.gz").display(),
        charm = requirer.display(),
        charm_v0 = requirer_v0.display(),
    )
}

/// What the requirer recorded.
fn recorded(d: &Deployment) -> Result<Value> {
    let text = read_in(
        d,
        CLIENT_MACHINE,
        "/var/lib/database-requirer-v1-ops/requirer/result.json",
    )?;
    Ok(serde_json::from_str(&text)?)
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn a_dpcharmlibs_interfaces_requirer_gets_a_database_it_reaches_through_the_db_vip() {
    let env = e2e::env_or_skip!();
    let (charm, charm_v0) = match requirer_charms(&env) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED (local-model end-to-end): {why}");
            return;
        }
    };
    let vip_options = e2e::pg_drills::bundle_db_vip_options(&env).expect("db-vip's options");
    let d = Deployment::yaml_overlaid(
        &env,
        "pg-data-interfaces-v1",
        NET,
        &bundle(&env, &charm, &charm_v0, &vip_options),
        &e2e::extra_overlays(),
    )
    .expect("deploy");
    // Every unit active, and no hook of any unit exited non-zero (wait_active's first call).
    d.wait_active(SETTLE).expect("every unit active");
    let holder = d
        .wait_vip_holder(VIP, Duration::from_secs(60))
        .expect("the DB VIP held");
    assert_eq!(holder, "0", "the primary's machine holds the DB VIP");

    // The record of the library's last event with the VIP as the endpoint (a response given
    // before the VIP was held would have been followed by endpoints_changed).
    let (r, _) = until(SETTLE, "the requirer to connect through the DB VIP", || {
        let r = recorded(&d)?;
        let host = r["checks"]["endpoint-host"].as_str().unwrap_or_default();
        anyhow::ensure!(host == VIP, "connected through {host:?}: {r:#}");
        Ok(r)
    })
    .expect("the requirer connected through the DB VIP");
    assert!(r["error"].is_null(), "{r:#}");

    // Answered in v1: the provider's databag says v1, and the answer names the request.
    assert_eq!(r["provider-version"], "v1", "{r:#}");
    let keys = strings(&r["provider-keys"]);
    for v0 in [
        "database",
        "endpoints",
        "secret-user",
        "username",
        "password",
    ] {
        assert!(!keys.contains(&v0), "v0's {v0} in a v1 answer: {keys:?}");
    }
    assert!(
        keys.contains(&"requests") && keys.contains(&"data"),
        "{keys:?}"
    );
    let got = &r["got"];
    let requested = &r["requested"][0];
    assert_eq!(got["request-id"], requested["request-id"], "{r:#}");
    assert_eq!(got["resource"], "v1_db");

    // Credentials and TLS settings came through the secrets the answer names, none in clear.
    let answer = strings(&r["answer-keys"]);
    for clear in [
        "username",
        "password",
        "uris",
        "read-only-uris",
        "tls",
        "tls-ca",
    ] {
        assert!(!answer.contains(&clear), "{clear} in clear: {answer:?}");
    }
    for s in ["secret-user", "secret-tls"] {
        assert!(
            got[s]
                .as_str()
                .is_some_and(|v| v.starts_with("secret:") || v.starts_with("secret://")),
            "{s}: {r:#}"
        );
    }
    let user = format!("relation_{}", r["relation-id"]);
    assert_eq!(got["username"], user.as_str(), "{r:#}");
    assert_eq!(
        r["password-sha256"].as_str().map(str::len),
        Some(64),
        "a password came through secret-user"
    );
    assert_eq!(got["tls"], true, "tls is JSON true in secret-tls");
    let ca = read_in(&d, "0", "/etc/postgresql-ha/tls/ca.pem").expect("the application's CA");
    assert_eq!(got["tls-ca"].as_str(), Some(ca.as_str()));

    // The endpoint is the DB VIP, and what it received works there: TLS verified against
    // tls-ca (verify-full: the server's certificate names the VIP), a write, the uris.
    assert_eq!(got["endpoints"], format!("{VIP}:5432"));
    assert_eq!(
        got["uris"],
        format!("postgresql://{user}:<password>@{VIP}:5432/v1_db")
    );
    let c = &r["checks"];
    assert_eq!(c["server-address"], VIP, "the connection reached the VIP");
    assert_eq!(c["ssl"], true);
    assert_eq!(c["current-user"], user.as_str());
    assert_eq!(c["current-database"], "v1_db");
    assert!(c["wrote"].as_i64().is_some_and(|n| n >= 1), "{c:#}");
    assert_eq!(c["uris-user"], user.as_str(), "the uris connect");
    assert_eq!(
        got["version"].as_str(),
        c["server-version"]
            .as_str()
            .and_then(|v| v.split_whitespace().next()),
        "version is the server's full version"
    );
    assert_eq!(
        (c["createdb"].clone(), c["superuser"].clone()),
        (true.into(), false.into())
    );

    // The server has the row the client wrote, in the database it asked for.
    let rows = ha::psql(&d, PG, "v1_db", "SELECT count(*) FROM written")
        .context("the written table on the server")
        .unwrap();
    assert!(rows.trim().parse::<i64>().is_ok_and(|n| n >= 1), "{rows}");

    // The v0 client on the same endpoint is answered in v0, through the VIP too.
    let (r0, _) = until(
        SETTLE,
        "the v0 requirer to connect through the DB VIP",
        || {
            let text = read_in(
                &d,
                CLIENT_MACHINE,
                "/var/lib/database-requirer-ops/requirer-v0/result.json",
            )?;
            let r: Value = serde_json::from_str(&text)?;
            let endpoints = r["got"]["endpoints"].as_str().unwrap_or_default();
            anyhow::ensure!(
                endpoints == format!("{VIP}:5432"),
                "given {endpoints:?}: {r:#}"
            );
            Ok(r)
        },
    )
    .expect("the v0 requirer connected through the DB VIP");
    assert!(r0["error"].is_null(), "{r0:#}");
    let keys0 = strings(&r0["provider-keys"]);
    for k in ["database", "endpoints", "secret-user", "version"] {
        assert!(keys0.contains(&k), "v0's {k} missing: {keys0:?}");
    }
    assert!(!keys0.contains(&"requests"), "{keys0:?}");
    assert_eq!(r0["got"]["database"], "v0_db");
    assert_eq!(r0["checks"]["current-database"], "v0_db");
}
