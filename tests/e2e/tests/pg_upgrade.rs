//! postgresql-ha's upgrades under writes through the DB VIP (issue 22), as root: 3 units
//! deployed on Patroni 4.1.4 (the wheelhouse's older release); `pre-upgrade-check` says ok;
//! then `patroni-version` set to 4.1.5. The roll must take one member down at a time (sampled from the test side off
//! Patroni's `/cluster`), the replicas before the primary; every unit ends Active running the
//! new Patroni (asked of Patroni itself, `GET /patroni`, and of the virtualenv, `patroni
//! --version`), every acknowledged write is on every member, and the longest write outage is
//! printed. Then `lm refresh` of the charm (upgrade-charm with the same .charm): no service on
//! any unit restarts (their main PIDs and the postmaster's are unchanged) and no write fails.
//! Last, `patroni-version` back to 4.1.4 rolls the same way (the README's way back).
//!
//! Subnet 10.77.77.0/24. `E2E_KEEP=1` keeps the model in build/e2e/pg-upgrade.

use anyhow::{ensure, Context, Result};
use e2e::pg_drills::{self as pg, Ledger, APP, CLIENT_MACHINE, HEAL};
use e2e::probe::{self, Probe};
use e2e::{ha, until, Deployment};
use local_model::protocol::Request;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// This file's subnet (the PostgreSQL drills own 10.77.70–79).
const NET: u8 = 77;
/// The Patroni the units start on: the Makefile's PATRONI_PREVIOUS.
const FROM: &str = "4.1.4";
/// The one they roll to: the Makefile's PATRONI_VERSION, the charm's default.
const TO: &str = "4.1.5";
/// The services of a postgresql-ha unit a refresh must leave running as they are.
const SERVICES: &[&str] = &[
    "postgresql-ha-patroni",
    "postgresql-ha-etcd",
    "postgresql-ha-observer",
    "postgresql-ha-patroni-metrics",
    "prometheus-postgres-exporter",
];

/// [`pg::bundle`] with `patroni-version` set to [`FROM`].
fn deploy(env: &e2e::Env) -> Result<Deployment> {
    let charms = env.build.join("e2e").join("pg-upgrade-charms");
    let yaml = pg::bundle(env, NET, &charms, pg::Front::Vip)?;
    let marker = "    num_units: 3\n";
    ensure!(
        yaml.matches(marker).count() == 1,
        "pg::bundle changed shape: one `{}` expected",
        marker.trim()
    );
    let yaml = yaml.replace(
        marker,
        &format!("{marker}    options:\n      patroni-version: \"{FROM}\"\n"),
    );
    // Deployed from, and later refreshed with, a copy of its own: a repack of
    // build/postgresql-ha.charm meanwhile would make the refresh bring another binary.
    let own = charm_copy(env);
    std::fs::copy(env.build.join("postgresql-ha.charm"), &own)?;
    let original = "{build}/postgresql-ha.charm";
    ensure!(
        yaml.contains(original),
        "pg::bundle changed shape: no {original}"
    );
    let yaml = yaml.replace(original, &own.to_string_lossy());
    Deployment::yaml_with(
        env,
        "pg-upgrade",
        NET,
        &yaml,
        &[("LM_UPDATE_STATUS_MS", "10000")],
    )
}

/// The copy of the packed charm this drill deploys and refreshes with.
fn charm_copy(env: &e2e::Env) -> std::path::PathBuf {
    env.build
        .join("e2e")
        .join("pg-upgrade-charms")
        .join("postgresql-ha.charm")
}

/// What `unit`'s Patroni runs (`GET /patroni`'s `patroni.version`), asked locally.
fn running_patroni(d: &Deployment, unit: &str) -> Result<String> {
    let mut argv = vec!["curl", "-sf", "-m", "5"];
    argv.extend_from_slice(ha::PATRONI_TLS);
    argv.push("https://127.0.0.1:8008/patroni");
    let body = d.exec(unit, &argv)?;
    let v: serde_json::Value = serde_json::from_str(&body).context("GET /patroni")?;
    Ok(v["patroni"]["version"].as_str().unwrap_or("").to_string())
}

/// What `unit`'s virtualenv holds (`patroni --version`: `patroni 4.1.5`).
fn venv_patroni(d: &Deployment, unit: &str) -> Result<String> {
    let out = d.exec(unit, &["/opt/postgresql-ha/venv/bin/patroni", "--version"])?;
    Ok(out.split_whitespace().last().unwrap_or("").to_string())
}

/// Every unit runs `version`, in Patroni and in its virtualenv.
fn all_on(d: &Deployment, version: &str) -> Result<()> {
    for u in ha::pg_units(d)? {
        let (runs, venv) = (running_patroni(d, &u)?, venv_patroni(d, &u)?);
        ensure!(
            runs == version && venv == version,
            "{u}: Patroni runs {runs:?}, its virtualenv has {venv:?}, want {version}"
        );
    }
    Ok(())
}

/// One look at `GET /cluster` from the first member that answers: the members whose
/// PostgreSQL does not run (stopped, starting, or gone from the list), by unit number.
fn down_members(d: &Deployment, machines: &[String], names: &[String]) -> Option<Vec<String>> {
    let mut argv = vec!["curl", "-sf", "-m", "2"];
    argv.extend_from_slice(ha::PATRONI_TLS);
    argv.push("https://127.0.0.1:8008/cluster");
    for m in machines {
        let Ok((0, body, _)) = d.lm.exec(m, &argv) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
            continue;
        };
        let up: Vec<String> = v["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|x| matches!(x["state"].as_str(), Some("running" | "streaming")))
            .filter_map(|x| x["name"].as_str().map(String::from))
            .collect();
        return Some(names.iter().filter(|n| !up.contains(n)).cloned().collect());
    }
    None
}

/// The main PID of each service on every unit, and the postmaster's (postmaster.pid).
fn pids(d: &Deployment) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for u in ha::pg_units(d)? {
        for s in SERVICES {
            let pid = d.exec(&u, &["systemctl", "show", "-p", "MainPID", "--value", s])?;
            let pid = pid.trim().to_string();
            ensure!(pid != "0" && !pid.is_empty(), "{u}: {s} does not run");
            out.insert(format!("{u} {s}"), pid);
        }
        let pm = d.exec(
            &u,
            &["head", "-n1", "/var/lib/postgresql-ha/data/postmaster.pid"],
        )?;
        out.insert(format!("{u} postmaster"), pm.trim().to_string());
    }
    Ok(out)
}

#[test]
fn patroni_rolls_one_unit_at_a_time_and_a_refresh_restarts_nothing() {
    let env = e2e::env_or_skip!();
    let wheels = std::process::Command::new("tar")
        .args(["tzf"])
        .arg(env.build.join("wheelhouse.tar.gz"))
        .output()
        .expect("tar");
    let listing = String::from_utf8_lossy(&wheels.stdout);
    for v in [FROM, TO] {
        assert!(
            listing.contains(&format!("patroni-{v}-")),
            "the wheelhouse has no Patroni {v} wheel: run make deps (the Makefile's PATRONI_PREVIOUS and PATRONI_VERSION)"
        );
    }
    let d = deploy(&env).expect("deploy");
    let first = pg::settled(&d).expect("3 units settle on Patroni 4.1.4, clients write");
    all_on(&d, FROM).expect("every unit on the first version");
    eprintln!("settled on Patroni {FROM}; primary {first}");

    // Writes through the DB VIP for the whole drill.
    let dsn = ha::writer_dsn(&d, CLIENT_MACHINE).expect("the writer's DSN");
    let writes = Probe::writer_table(&d, CLIENT_MACHINE, "pg-upgrade", &dsn, "e2e_upgrade", 100)
        .expect("writer");
    writes
        .wait_successes(3, pg::RECOVER)
        .expect("writes before the roll");

    // pre-upgrade-check agrees that a roll now loses nothing.
    let check = d
        .action(&format!("{APP}/leader"), "pre-upgrade-check", &[])
        .expect("pre-upgrade-check");
    assert_eq!(check["result"], "ok", "{check}");

    let (rolled, order) = roll(&d, TO, &first).unwrap_or_else(|e| panic!("the roll: {e:#}"));
    // Every acknowledged write of the roll on every member.
    writes
        .wait_successes(10, pg::RECOVER)
        .expect("writes after the roll");
    let mid = writes.records().expect("probe records");
    let mut ledger = Ledger::default();
    ledger
        .tables
        .push(("e2e_upgrade".into(), probe::acknowledged(&mid)));
    let primary = pg::healthy(&d, &ledger, 2, HEAL).expect("healthy after the roll");
    let outage = probe::longest_outage(&mid);
    let failed = mid.iter().filter(|r| r["ok"] != true).count();
    eprintln!(
        "roll {FROM} -> {TO}: {:.1} s, order {}; {failed} writes failed of {}, longest write outage {}; primary now {primary}",
        rolled.as_secs_f64(),
        order.join(" -> "),
        mid.len(),
        outage.map_or("none".into(), |(t, n)| format!("{:.1} s ({n} writes)", t.as_secs_f64())),
    );

    // The refresh: the same charm again.
    let before = pids(&d).expect("PIDs before the refresh");
    let hooks_before: BTreeMap<String, u64> = unit_hooks(&d);
    let refresh_from = writes.records().expect("records").len();
    d.lm.request(&Request::Refresh {
        app: APP.into(),
        path: Some(charm_copy(&env)),
        force_units: false,
    })
    .expect("lm refresh");
    until(HEAL, "every unit ran upgrade-charm", || {
        let st = d.status()?;
        for (u, n) in &hooks_before {
            let unit = &st["applications"][APP]["units"][u];
            ensure!(
                unit.get("upgrading-from").is_none()
                    && unit["hooks-run"].as_u64().unwrap_or(0) > *n,
                "{u}: {unit}"
            );
        }
        Ok(())
    })
    .expect("the refresh reached every unit");
    d.wait_active(HEAL).expect("active after the refresh");
    let after = pids(&d).expect("PIDs after the refresh");
    let changed: Vec<String> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: {v} -> {:?}", after.get(k)))
        .collect();
    assert!(changed.is_empty(), "the refresh restarted: {changed:#?}");
    writes
        .wait_successes(10, pg::RECOVER)
        .expect("writes after the refresh");
    let records = writes.stop().expect("probe records");
    let failed_in_refresh = records[refresh_from..]
        .iter()
        .filter(|r| r["ok"] != true)
        .count();
    assert_eq!(failed_in_refresh, 0, "writes failed during the refresh");
    let mut ledger = Ledger::default();
    ledger
        .tables
        .push(("e2e_upgrade".into(), probe::acknowledged(&records)));
    let primary = pg::healthy(&d, &ledger, 2, HEAL).expect("healthy after the refresh");
    eprintln!(
        "refresh: no service restarted ({} PIDs unchanged), {} writes during it, none failed",
        before.len(),
        records.len() - refresh_from
    );

    // Back to the first version, the same way (the README's way back).
    let writes = Probe::writer_table(
        &d,
        CLIENT_MACHINE,
        "pg-downgrade",
        &dsn,
        "e2e_downgrade",
        100,
    )
    .expect("writer");
    writes
        .wait_successes(3, pg::RECOVER)
        .expect("writes before the roll back");
    let (back, order) = roll(&d, FROM, &primary).unwrap_or_else(|e| panic!("the roll back: {e:#}"));
    writes
        .wait_successes(10, pg::RECOVER)
        .expect("writes after the roll back");
    let records = writes.stop().expect("probe records");
    ledger
        .tables
        .push(("e2e_downgrade".into(), probe::acknowledged(&records)));
    pg::healthy(&d, &ledger, 2, HEAL).expect("healthy after the roll back");
    eprintln!(
        "roll back {TO} -> {FROM}: {:.1} s, order {}; {} writes failed of {}, longest write outage {}",
        back.as_secs_f64(),
        order.join(" -> "),
        records.iter().filter(|r| r["ok"] != true).count(),
        records.len(),
        probe::longest_outage(&records)
            .map_or("none".into(), |(t, n)| format!("{:.1} s ({n} writes)", t.as_secs_f64())),
    );
}

/// Sets `patroni-version` to `version` and waits for every unit to run it and be Active,
/// sampling `/cluster` meanwhile: never more than one member down, `primary` (the primary
/// before the roll) down last and once. Returns how long it took and the order members went
/// down in.
fn roll(d: &Deployment, version: &str, primary: &str) -> Result<(Duration, Vec<String>)> {
    let machines = d.machines_of(APP)?;
    let names: Vec<String> = ha::pg_units(d)?
        .iter()
        .map(|u| u.replace('/', "-"))
        .collect();
    let stop = AtomicBool::new(false);
    let seen: Mutex<(usize, Vec<Vec<String>>)> = Mutex::new((0, Vec::new()));
    let said: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let started = Instant::now();
    let outcome = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if let Some(down) = down_members(d, &machines, &names) {
                    let mut g = seen.lock().unwrap();
                    g.0 = g.0.max(down.len());
                    if !down.is_empty() && g.1.last() != Some(&down) {
                        eprintln!(
                            "{:>6.1} s: down: {}",
                            started.elapsed().as_secs_f64(),
                            down.join(", ")
                        );
                        g.1.push(down);
                    }
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        // What the statuses say meanwhile (each distinct message once).
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(st) = d.status() {
                    let app = &st["applications"][APP];
                    let mut now = vec![format!(
                        "application: {}",
                        app["application-status"]["message"].as_str().unwrap_or("")
                    )];
                    for (u, v) in app["units"].as_object().into_iter().flatten() {
                        now.push(format!(
                            "{u}: {}",
                            v["workload-status"]["message"].as_str().unwrap_or("")
                        ));
                    }
                    let mut g = said.lock().unwrap();
                    for m in now.into_iter().filter(|m| m.contains("upgrade")) {
                        if !g.contains(&m) {
                            eprintln!("{:>6.1} s: {m}", started.elapsed().as_secs_f64());
                            g.push(m);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        let r = (|| {
            d.lm.config(APP, &[&format!("patroni-version={version}")])?;
            until(
                Duration::from_secs(900),
                "every unit on the wanted Patroni",
                || all_on(d, version),
            )?;
            d.wait_active(HEAL)
        })();
        stop.store(true, Ordering::Relaxed);
        r
    });
    outcome.with_context(|| ha::diagnose(d))?;
    let took = started.elapsed();
    let (most_down, downs) = seen.into_inner().unwrap();
    ensure!(
        most_down <= 1,
        "{most_down} members down at once; sequence: {downs:?}"
    );
    let order: Vec<String> = downs.iter().flatten().fold(Vec::new(), |mut v, m| {
        if v.last() != Some(m) {
            v.push(m.clone());
        }
        v
    });
    // The roll said where it stood: the application, and the units waiting for their turn.
    let said = said.into_inner().unwrap();
    ensure!(
        said.iter()
            .any(|m| m.starts_with("application: ") && m.contains("rolling upgrade")),
        "no application status told of the roll: {said:#?}"
    );
    ensure!(
        said.iter()
            .any(|m| !m.starts_with("application: ") && m.contains(&format!("-> {version})"))),
        "no unit status told of the roll: {said:#?}"
    );
    let member = primary.replace('/', "-");
    ensure!(
        order.last() == Some(&member),
        "the primary ({primary}) must go down last: {order:?}"
    );
    ensure!(
        order.iter().filter(|m| **m == member).count() == 1,
        "the primary went down once: {order:?}"
    );
    ensure!(
        order.len() == names.len(),
        "every member restarted once: {order:?}"
    );
    Ok((took, order))
}

/// Hooks each postgresql-ha unit has run so far.
fn unit_hooks(d: &Deployment) -> BTreeMap<String, u64> {
    let st = d.status().expect("status");
    st["applications"][APP]["units"]
        .as_object()
        .map(|u| {
            u.iter()
                .map(|(k, v)| (k.clone(), v["hooks-run"].as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}
