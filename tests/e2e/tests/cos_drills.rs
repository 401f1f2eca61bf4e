//! Observability drills (issue 21): postgresql-ha's cos-agent data read by Canonical's own
//! requirer and acted on by a real Prometheus. `cos-collector-ops` (tests/e2e/testcharms), a
//! subordinate like grafana-agent, runs COSAgentRequirer (the cos_agent library over cosl,
//! unchanged) on each postgresql-ha unit, scrapes the jobs it hands on with Debian's Prometheus in
//! agent mode and remote-writes them, with the alert rules, to `prometheus-ops`, Debian's
//! Prometheus on a machine of its own, which evaluates the rules as the charm wrote them. The
//! collector is as confined as the opentelemetry-collector snap (`confinement: strict`): a job
//! naming a file of postgresql-ha's (its TLS key) would be left out and never be up, so the
//! Patroni and etcd series reaching Prometheus prove the jobs need none (the charm's Patroni
//! relay, etcd's loopback metrics listener).
//!
//! The drill: every job of every unit is up and every rule loads and evaluates; Patroni's and
//! etcd's series of every unit are in Prometheus; nothing is
//! pending or firing in the healthy model; one replica's etcd frozen → its etcd target down,
//! EtcdQuorumAtRisk pending, then firing once its `for:` (1m) has passed, with the charm's
//! labels; etcd thawed → the alert clears. Then the primary's Patroni frozen → PostgresqlNoPrimary
//! pending from when its samples go stale until a replica is promoted, then gone; it fires only
//! if that gap outlasts its `for: 15s`, which with Patroni's ttl 20 s is a matter of seconds
//! (pending 10–12 s after the freeze, cleared at 27–31 s: firing in one run of two), so the
//! drill requires pending and reports whether it fired. Intervals are 5 s (scrape and
//! evaluation) where the defaults are 1m, so that the drill takes minutes (about 220 s with
//! the VIP drill); the rules' `for:` are the charm's.
//!
//! keepalived-vip is there too, as the bundle deploys it (db-vip on the postgresql-ha units,
//! bundles/maas-ha.yaml's options), related to the collector subordinate to subordinate as
//! Juju relates them: its `vip` job is up on every unit, the series say which unit holds the
//! VIP, and its rules load with the others. Last, the holder's keepalived stopped (SIGTERM,
//! `systemctl stop`): only the primary passes db-vip's check, so no other unit may take the
//! VIP and VipHeldByNoUnit goes pending, then firing after its `for: 30s`; keepalived started
//! again, the primary takes the VIP back and the alert clears.

use anyhow::{bail, ensure, Result};
use e2e::prometheus::Prometheus;
use e2e::{ha, until, Deployment, Env, FaultOp};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// This file's subnet (10.77.80–89: observability drills).
const NET: u8 = 80;
const PROM_MACHINE: &str = "3";
/// The Prometheus server the drill reads.
const PROM: Prometheus = Prometheus {
    machine: PROM_MACHINE,
};
const SETTLE: Duration = Duration::from_secs(600);
/// The jobs postgresql-ha's cos.rs sends, per unit (`certificates`: charm-lib's certificate
/// exporter).
const JOBS: [&str; 4] = ["certificates", "etcd", "patroni", "postgresql"];
/// The job keepalived-vip's cos.rs sends, per unit.
const VIP_JOB: &str = "vip";
/// The DB VIP: .201 of the drill's subnet, as the other PostgreSQL drills have it.
const VIP: &str = "10.77.80.201";
/// keepalived-vip's applications run `keepalived-<app>`.
const VIP_SERVICE: &str = "keepalived-db-vip";

/// The job a `job` label names: the cos_agent provider names each `<app>_<job>_<hash>`.
fn job_of(app: &str, label: &str) -> String {
    label
        .strip_prefix(&format!("{app}_"))
        .and_then(|r| r.rsplit_once('_'))
        .map(|(j, _)| j.to_string())
        .unwrap_or_else(|| label.to_string())
}

fn test_charms(env: &Env) -> std::result::Result<(PathBuf, PathBuf), String> {
    let c = env.build.join("testcharms/cos-collector-ops.charm");
    let p = env.build.join("testcharms/prometheus-ops.charm");
    for x in [&c, &p] {
        if !x.exists() {
            return Err(format!(
                "{} is missing: run `make testcharms` (make test does)",
                x.display()
            ));
        }
    }
    Ok((c, p))
}

fn bundle(
    env: &Env,
    collector: &std::path::Path,
    prometheus: &std::path::Path,
    db_vip_options: &str,
) -> String {
    format!(
        "description: postgresql-ha observed through cos-agent by a real Prometheus
machines:
  \"0\": {{}}
  \"1\": {{}}
  \"2\": {{}}
  \"{PROM_MACHINE}\": {{}}
applications:
  postgresql-ha:
    charm: {{build}}/postgresql-ha.charm
    num_units: 3
    to: [\"0\", \"1\", \"2\"]
    resources:
      wheelhouse: {wheelhouse}
  db-vip:
    charm: {{build}}/keepalived-vip.charm
    options:
      vip: {VIP}/24
{db_vip_options}  collector:
    charm: {collector}
    options:
      scrape-interval: 5s
      confinement: strict
  prometheus:
    charm: {prometheus}
    num_units: 1
    to: [\"{PROM_MACHINE}\"]
    options:
      evaluation-interval: 5s
relations:
  - [\"postgresql-ha:cos-agent\", \"collector:cos-agent\"]
  - [\"postgresql-ha:vip\", \"db-vip:vip\"]
  - [\"db-vip:cos-agent\", \"collector:cos-agent\"]
  - [\"collector:send-remote-write\", \"prometheus:receive-remote-write\"]
",
        wheelhouse = env.build.join("wheelhouse.tar.gz").display(),
        collector = collector.display(),
        prometheus = prometheus.display(),
    )
}

/// The alert names in both charms' rule files and the generic ones the library adds (what
/// Prometheus must have loaded).
fn charm_alerts(env: &Env) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for charm in ["postgresql-ha", "keepalived-vip"] {
        let dir = env
            .repo
            .join(format!("charms/{charm}/src/prometheus_alert_rules"));
        let before = names.len();
        for f in std::fs::read_dir(&dir)? {
            let text = std::fs::read_to_string(f?.path())?;
            for l in text.lines() {
                if let Some(n) = l.trim().strip_prefix("- alert:") {
                    names.insert(n.trim().to_string());
                }
            }
        }
        ensure!(names.len() > before, "no alert rules in {}", dir.display());
    }
    // The cos_agent provider adds cosl's generic application rules to every charm's own
    // (cosl rules.py _GenericAlertGroups.application_rules: HostDown `up < 1`,
    // HostMetricsMissing `absent(up)`, both for 5m); charm-lib's writer does too.
    names.extend(["HostDown".to_string(), "HostMetricsMissing".to_string()]);
    Ok(names)
}

/// Every rule of the charm loaded and evaluated without error.
fn rules_loaded(d: &Deployment, want: &BTreeSet<String>) -> Result<()> {
    let data = PROM.api(d, "rules", &[("type", "alert")])?;
    let mut seen = BTreeSet::new();
    for g in data["groups"].as_array().into_iter().flatten() {
        for r in g["rules"].as_array().into_iter().flatten() {
            let name = r["name"].as_str().unwrap_or("").to_string();
            ensure!(
                r["health"] == "ok",
                "rule {name} is {}: {}",
                r["health"],
                r["lastError"]
            );
            seen.insert(name);
        }
    }
    ensure!(&seen == want, "rules loaded {seen:?}, the charm's {want:?}");
    Ok(())
}

/// `up` for every job of every unit: (unit, job) -> value.
fn targets(d: &Deployment) -> Result<Vec<(String, String, f64)>> {
    let mut out: Vec<(String, String, f64)> = PROM
        .query(d, "up")?
        .into_iter()
        .map(|(m, v)| {
            (
                m["juju_unit"].as_str().unwrap_or("").to_string(),
                job_of(
                    m["juju_application"].as_str().unwrap_or(""),
                    m["job"].as_str().unwrap_or(""),
                ),
                v,
            )
        })
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Ok(out)
}

/// Every job of every postgresql-ha and db-vip unit up, and nothing else scraped.
fn all_up(d: &Deployment, units: &[String], vip_units: &[(String, String)]) -> Result<()> {
    let t = targets(d)?;
    let mut want = Vec::new();
    for u in units {
        for j in JOBS {
            want.push((u.clone(), j.to_string(), 1.0));
        }
    }
    for (u, _) in vip_units {
        want.push((u.clone(), VIP_JOB.to_string(), 1.0));
    }
    want.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    ensure!(t == want, "targets {t:?}, want every job up: {want:?}");
    Ok(())
}

/// Every unit's Patroni reports its role (one primary) and every unit's etcd member has a
/// leader, as Prometheus has them.
fn patroni_and_etcd_series(d: &Deployment, units: &[String]) -> Result<()> {
    let by_unit = |q: &str| -> Result<Vec<(String, f64)>> {
        let mut out: Vec<(String, f64)> = PROM
            .query(d, q)?
            .into_iter()
            .map(|(m, v)| (m["juju_unit"].as_str().unwrap_or("").to_string(), v))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    };
    let primary = by_unit("patroni_primary")?;
    ensure!(
        primary.iter().map(|(u, _)| u).eq(units.iter())
            && primary.iter().filter(|(_, v)| *v == 1.0).count() == 1,
        "patroni_primary {primary:?}: want one series per unit {units:?}, one of them 1"
    );
    let leader = by_unit("etcd_server_has_leader")?;
    ensure!(
        leader.iter().map(|(u, _)| u).eq(units.iter()) && leader.iter().all(|(_, v)| *v == 1.0),
        "etcd_server_has_leader {leader:?}: want 1 from every unit {units:?}"
    );
    Ok(())
}

/// The HTTP status `url` answers on `machine` (`000`: no answer, e.g. connection refused).
fn status_on(d: &Deployment, machine: &str, url: &str) -> Result<String> {
    let out = d.exec(
        machine,
        &[
            "sh",
            "-c",
            &format!("curl -s -o /dev/null -m 3 -w '%{{http_code}}' {url}; true"),
        ],
    )?;
    Ok(out.trim().to_string())
}

/// Patroni's relay and etcd's metrics listener answer on 127.0.0.1 and not on the unit's
/// address; the relay relays `/metrics` only (Patroni's other endpoints stay behind its client
/// certificate).
fn loopback_only(d: &Deployment, unit: &str) -> Result<()> {
    let machine = d.machine_of(unit)?;
    let address = d.address_of(unit)?;
    for (url, want) in [
        ("http://127.0.0.1:9956/metrics".to_string(), "200"),
        ("http://127.0.0.1:9956/cluster".to_string(), "404"),
        ("http://127.0.0.1:2381/metrics".to_string(), "200"),
        (format!("http://{address}:9956/metrics"), "000"),
        (format!("http://{address}:2381/metrics"), "000"),
        // Patroni itself still refuses a client without a certificate, and answers one with
        // the unit's on the unit's address (so that address is reachable from here: the two
        // 000 above are the listeners' binding, not the network).
        ("https://127.0.0.1:8008/metrics -k".to_string(), "000"),
        (
            format!("https://{address}:8008/metrics --cacert /etc/postgresql-ha/tls/ca.pem --cert /etc/postgresql-ha/tls/unit.pem --key /etc/postgresql-ha/tls/unit.key"),
            "200",
        ),
    ] {
        let got = status_on(d, &machine, &url)?;
        ensure!(got == want, "{unit}: {url} answered {got}, want {want}");
    }
    Ok(())
}

/// db-vip's units with their principals' machines.
fn vip_units(d: &Deployment) -> Result<Vec<(String, String)>> {
    let st = d.status()?;
    let mut out = Vec::new();
    for (_, p) in st["applications"]["postgresql-ha"]["units"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let machine = p["machine"].as_str().unwrap_or("").to_string();
        for (s, _) in p["subordinates"].as_object().into_iter().flatten() {
            if s.starts_with("db-vip/") {
                out.push((s.clone(), machine.clone()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `keepalived_vip_held` of the DB VIP as Prometheus has it: unit -> value.
fn held(d: &Deployment) -> Result<Vec<(String, f64)>> {
    let mut out: Vec<(String, f64)> = PROM
        .query(d, &format!("keepalived_vip_held{{vip=\"{VIP}\"}}"))?
        .into_iter()
        .map(|(m, v)| (m["juju_unit"].as_str().unwrap_or("").to_string(), v))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The etcd processes of `machine` (machine-side PIDs).
fn etcd_pids(d: &Deployment, machine: &str) -> Result<Vec<u32>> {
    let pids: Vec<u32> = serde_json::from_value(d.fault(
        machine,
        FaultOp::Pids {
            comm: "etcd".into(),
        },
    )?)?;
    ensure!(!pids.is_empty(), "no etcd process on machine {machine}");
    Ok(pids)
}

fn state_of(d: &Deployment, name: &str) -> Result<Option<(String, Value)>> {
    Ok(PROM
        .alerts(d)?
        .into_iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, s, l)| (s, l)))
}

#[test]
fn cos_agent_jobs_scraped_and_alert_rules_fire_in_a_real_prometheus() {
    let env = e2e::env_or_skip!();
    let (collector, prometheus) = match test_charms(&env) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED (local-model end-to-end): {why}");
            return;
        }
    };
    let start = Instant::now();
    let vip_options = e2e::pg_drills::bundle_db_vip_options(&env).expect("db-vip's options");
    let d = Deployment::yaml_overlaid(
        &env,
        "cos-drills",
        NET,
        &bundle(&env, &collector, &prometheus, &vip_options),
        &e2e::extra_overlays(),
    )
    .expect("deploy");
    d.wait_active(SETTLE).expect("every unit active");
    let units = ha::pg_units(&d).expect("units");
    assert_eq!(units.len(), 3, "{units:?}");
    let vips = vip_units(&d).expect("db-vip units");
    assert_eq!(
        vips.len(),
        3,
        "a db-vip unit on each postgresql-ha unit: {vips:?}"
    );
    eprintln!("    settled in {:?}", start.elapsed());

    // Every job of every unit reaches Prometheus through the collector, labelled with the
    // unit's topology by COSAgentRequirer: db-vip's through the collector's relation to it,
    // subordinate to subordinate, on the same principal.
    let (_, took) = until(Duration::from_secs(90), "every target up", || {
        all_up(&d, &units, &vips)
    })
    .expect("targets");
    eprintln!(
        "    {} targets up after {took:?}",
        units.len() * JOBS.len() + vips.len()
    );
    // Patroni's and etcd's own series from every unit, through the strict collector: what the
    // rules count (a primary and two standbys; every etcd member with a leader).
    until(
        Duration::from_secs(60),
        "Patroni's and etcd's series from every unit",
        || patroni_and_etcd_series(&d, &units),
    )
    .expect("Patroni and etcd series");
    loopback_only(&d, &units[0]).expect("the metrics listeners answer on loopback only");
    // The CA and the unit certificate of every unit.
    until(
        Duration::from_secs(60),
        "every unit's certificates read",
        || PROM.certificates_read(&d, &units, 2),
    )
    .expect("certificates");
    // The series say who holds the VIP: 1 from the holder's unit, 0 from the others.
    let holder = d
        .wait_vip_holder(VIP, Duration::from_secs(60))
        .expect("one VIP holder");
    until(
        Duration::from_secs(30),
        "keepalived_vip_held names the holder",
        || {
            let h = held(&d)?;
            let want: Vec<(String, f64)> = vips
                .iter()
                .map(|(u, m)| (u.clone(), if *m == holder { 1.0 } else { 0.0 }))
                .collect();
            ensure!(
                h == want,
                "keepalived_vip_held {h:?}, machine {holder} holds {VIP}: want {want:?}"
            );
            Ok(())
        },
    )
    .expect("held");
    let want = charm_alerts(&env).expect("the charm's rules");
    until(
        Duration::from_secs(60),
        "every rule loaded and evaluated",
        || rules_loaded(&d, &want),
    )
    .expect("rules");

    // A healthy model: nothing pending, nothing firing (a rule that misfires on a healthy
    // cluster pages someone for nothing).
    until(
        Duration::from_secs(60),
        "no alert in the healthy model",
        || {
            let a = PROM.alerts(&d)?;
            ensure!(a.is_empty(), "alerts in a healthy model: {a:?}");
            Ok(())
        },
    )
    .expect("healthy");

    // One replica's etcd frozen: two members of three answer, one more loss loses quorum.
    let (primary, _) = ha::primary_machine(&d).expect("primary");
    let replica = units.iter().find(|u| **u != primary).unwrap().clone();
    let machine = d.machine_of(&replica).expect("machine");
    let pids = etcd_pids(&d, &machine).expect("etcd pids");
    for p in &pids {
        d.fault(&machine, FaultOp::Freeze { pid: *p })
            .expect("freeze");
    }
    let frozen = Instant::now();
    let result = (|| -> Result<()> {
        until(
            Duration::from_secs(30),
            "the frozen etcd's target down",
            || {
                let t = targets(&d)?;
                ensure!(
                    t.iter()
                        .any(|(u, j, v)| *u == replica && j == "etcd" && *v == 0.0),
                    "{t:?}"
                );
                Ok(())
            },
        )?;
        let (_, pending_after) = until(
            Duration::from_secs(60),
            "EtcdQuorumAtRisk pending",
            || match state_of(&d, "EtcdQuorumAtRisk")? {
                Some((s, _)) if s == "pending" || s == "firing" => Ok(()),
                other => bail!("EtcdQuorumAtRisk: {other:?}"),
            },
        )?;
        let pending_at = Instant::now();
        let (labels, _) =
            until(
                Duration::from_secs(120),
                "EtcdQuorumAtRisk firing",
                || match state_of(&d, "EtcdQuorumAtRisk")? {
                    Some((s, l)) if s == "firing" => Ok(l),
                    other => bail!("EtcdQuorumAtRisk: {other:?}"),
                },
            )?;
        let firing_after = frozen.elapsed();
        // `for: 1m`: Prometheus holds it pending at least that long.
        ensure!(
            pending_at.elapsed() + Duration::from_secs(10) >= Duration::from_secs(60),
            "firing {:?} after pending: sooner than the rule's for: 1m",
            pending_at.elapsed()
        );
        ensure!(
            labels["severity"] == "critical" && labels["juju_application"] == "postgresql-ha",
            "labels {labels}"
        );
        eprintln!(
            "    etcd of {replica} frozen: pending after {pending_after:?}, firing after {firing_after:?}; alerts: {:?}",
            PROM.alerts(&d)?.iter().map(|(n, s, l)| format!(
                "{n} {s} {} {}",
                l["juju_unit"].as_str().unwrap_or(""),
                job_of(l["juju_application"].as_str().unwrap_or(""), l["job"].as_str().unwrap_or(""))
            )).collect::<Vec<_>>()
        );
        Ok(())
    })();
    for p in &pids {
        let _ = d.fault(&machine, FaultOp::Thaw { pid: *p });
    }
    result.expect("the alert during the fault");
    let thawed = Instant::now();
    until(Duration::from_secs(90), "EtcdQuorumAtRisk cleared", || {
        let a = state_of(&d, "EtcdQuorumAtRisk")?;
        ensure!(a.is_none(), "EtcdQuorumAtRisk still {a:?}");
        all_up(&d, &units, &vips)
    })
    .expect("healed");
    eprintln!("    etcd thawed: cleared after {:?}", thawed.elapsed());
    patroni_frozen_on_the_primary(&d, &units, &vips).expect("no primary while Patroni is frozen");
    vip_holder_keepalived_stopped(&d, &vips)
        .expect("no VIP holder while its keepalived is stopped");
    eprintln!("    whole test {:?}", start.elapsed());

    let failed = d.lm.failures().expect("failures").failed;
    assert!(
        failed.is_empty(),
        "hooks exited non-zero:\n{}",
        e2e::failure_lines(&failed)
    );
}

/// Patroni frozen (SIGSTOP) on the primary: its REST API stops answering, so its samples go
/// stale and no member reports itself primary until the leader key expires (ttl 20 s) and a
/// replica is promoted. PostgresqlNoPrimary must be pending in that gap (firing once it lasts
/// its `for: 15s`) and gone once the new primary reports; Patroni thawed, the old primary
/// rejoins and every target is up again.
fn patroni_frozen_on_the_primary(
    d: &Deployment,
    units: &[String],
    vips: &[(String, String)],
) -> Result<()> {
    let (old, machine) = ha::primary_machine(d)?;
    let pids: Vec<u32> = serde_json::from_value(d.fault(
        &machine,
        FaultOp::Pids {
            comm: "patroni".into(),
        },
    )?)?;
    ensure!(!pids.is_empty(), "no patroni process on machine {machine}");
    for p in &pids {
        d.fault(&machine, FaultOp::Freeze { pid: *p })?;
    }
    let frozen = Instant::now();
    let result = (|| -> Result<(Duration, bool, Duration, String)> {
        let (_, pending_after) = until(
            Duration::from_secs(40),
            "PostgresqlNoPrimary pending",
            || match state_of(d, "PostgresqlNoPrimary")? {
                Some((s, _)) if s == "pending" || s == "firing" => Ok(()),
                other => bail!("PostgresqlNoPrimary: {other:?}"),
            },
        )?;
        // Watch it until it clears: whether it reached firing depends on how long the gap
        // outlasted the rule's `for:`.
        let mut fired = false;
        until(
            Duration::from_secs(90),
            "PostgresqlNoPrimary cleared",
            || match state_of(d, "PostgresqlNoPrimary")? {
                None => Ok(()),
                Some((s, l)) => {
                    if s == "firing" {
                        ensure!(
                            l["severity"] == "critical" && l["juju_application"] == "postgresql-ha",
                            "labels {l}"
                        );
                        fired = true;
                    }
                    bail!("PostgresqlNoPrimary {s}")
                }
            },
        )?;
        let new = e2e::pg_drills::wait_new_primary(d, &old, Duration::from_secs(30))?;
        Ok((pending_after, fired, frozen.elapsed(), new))
    })();
    for p in &pids {
        let _ = d.fault(&machine, FaultOp::Thaw { pid: *p });
    }
    let (pending_after, fired, cleared_after, new) = result?;
    eprintln!(
        "    Patroni of {old} frozen: PostgresqlNoPrimary pending after {pending_after:?}, {}, cleared after {cleared_after:?} ({new} promoted); frozen for {:?}",
        if fired { "firing" } else { "never firing (the gap was shorter than its for: 15s)" },
        frozen.elapsed()
    );
    until(
        Duration::from_secs(120),
        "every target up after the thaw",
        || {
            all_up(d, units, vips)?;
            let a = state_of(d, "PostgresqlNoPrimary")?;
            ensure!(a.is_none(), "PostgresqlNoPrimary {a:?}");
            Ok(())
        },
    )?;
    Ok(())
}

/// The VIP holder's keepalived stopped as `systemctl stop` stops it (SIGTERM: keepalived drops
/// the VIP on the way out, and systemd does not restart a clean stop). Only the primary passes
/// db-vip's check, so no other unit takes the VIP: VipHeldByNoUnit must be pending once the
/// holder's sample says 0, firing after its `for: 30s`, and gone once keepalived runs again
/// and the primary holds the VIP.
///
/// The charm itself starts a stopped keepalived at its unit's next hook (update-status every
/// 5 minutes): should that come within the rule's `for:`, the VIP is back before the alert
/// can fire, which is the system working, not the rule failing. The fault is then repeated
/// once.
fn vip_holder_keepalived_stopped(d: &Deployment, vips: &[(String, String)]) -> Result<()> {
    // A healthy start: the Patroni drill's gap may have left VipHeldByNoUnit pending.
    until(
        Duration::from_secs(60),
        "no alert before the VIP drill",
        || {
            let a = PROM.alerts(d)?;
            ensure!(a.is_empty(), "alerts: {a:?}");
            Ok(())
        },
    )?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match keepalived_stopped_once(d, vips) {
            Ok(()) => return Ok(()),
            Err(e) if attempt == 1 && e.downcast_ref::<RestartedByHook>().is_some() => {
                eprintln!("    {e:#}: once more");
            }
            Err(e) => return Err(e),
        }
    }
}

/// The VIP came back before the alert could fire (the charm's next hook started keepalived).
#[derive(Debug)]
struct RestartedByHook(String);

impl std::fmt::Display for RestartedByHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for RestartedByHook {}

fn keepalived_stopped_once(d: &Deployment, vips: &[(String, String)]) -> Result<()> {
    let holder = d.wait_vip_holder(VIP, Duration::from_secs(60))?;
    let unit = vips
        .iter()
        .find(|(_, m)| *m == holder)
        .map(|(u, _)| u.clone())
        .ok_or_else(|| anyhow::anyhow!("no db-vip unit on machine {holder}: {vips:?}"))?;
    d.exec(&holder, &["systemctl", "stop", VIP_SERVICE])?;
    let stopped = Instant::now();
    let result = (|| -> Result<(Duration, Duration, Value)> {
        until(
            Duration::from_secs(10),
            "the VIP gone from every machine",
            || {
                let h = d.vip_holders(VIP)?;
                ensure!(h.is_empty(), "{VIP} held by {h:?}");
                Ok(())
            },
        )?;
        let (_, pending_after) =
            until(
                Duration::from_secs(40),
                "VipHeldByNoUnit pending",
                || match state_of(d, "VipHeldByNoUnit")? {
                    Some((s, _)) if s == "pending" || s == "firing" => Ok(()),
                    other => bail!("VipHeldByNoUnit: {other:?}"),
                },
            )?;
        let pending_at = Instant::now();
        // Until it fires nobody may hold the VIP: if somebody does, a hook of the unit
        // started keepalived and the fault is over (given up at once, not polled on).
        let deadline = Instant::now() + Duration::from_secs(60);
        let labels = loop {
            let h = d.vip_holders(VIP)?;
            if !h.is_empty() {
                return Err(anyhow::Error::new(RestartedByHook(format!(
                    "{VIP} held by {h:?} again {:?} after the stop, before VipHeldByNoUnit fired (a hook of {unit} started {VIP_SERVICE})",
                    stopped.elapsed()
                ))));
            }
            match state_of(d, "VipHeldByNoUnit")? {
                Some((s, l)) if s == "firing" => break l,
                other if Instant::now() > deadline => {
                    bail!("VipHeldByNoUnit not firing 60 s after pending: {other:?}")
                }
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        };
        // `for: 30s`: Prometheus holds it pending at least that long (less one evaluation,
        // as pending was seen up to one poll late).
        ensure!(
            pending_at.elapsed() + Duration::from_secs(5) >= Duration::from_secs(30),
            "firing {:?} after pending: sooner than the rule's for: 30s",
            pending_at.elapsed()
        );
        Ok((pending_after, stopped.elapsed(), labels))
    })();
    // Started again whatever happened, so that nothing after this finds the VIP missing.
    let restart = d.exec(&holder, &["systemctl", "start", VIP_SERVICE]);
    let (pending_after, firing_after, labels) = result?;
    restart?;
    ensure!(
        labels["severity"] == "critical"
            && labels["juju_application"] == "db-vip"
            && labels["vip"] == VIP,
        "labels {labels}"
    );
    let started = Instant::now();
    until(Duration::from_secs(60), "VipHeldByNoUnit cleared", || {
        let a = state_of(d, "VipHeldByNoUnit")?;
        ensure!(a.is_none(), "VipHeldByNoUnit still {a:?}");
        let h = d.vip_holders(VIP)?;
        ensure!(
            h == [holder.clone()],
            "{VIP} held by {h:?}, want machine {holder}"
        );
        Ok(())
    })?;
    eprintln!(
        "    {VIP_SERVICE} of {unit} (the holder, machine {holder}) stopped: VipHeldByNoUnit pending after {pending_after:?}, firing after {firing_after:?}; started again: cleared after {:?}",
        started.elapsed()
    );
    Ok(())
}
