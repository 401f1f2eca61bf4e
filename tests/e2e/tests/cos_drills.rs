//! Observability drills (issue 21): postgresql-ha's cos-agent data read by Canonical's own
//! requirer and acted on by a real Prometheus. `cos-collector-ops` (tests/e2e/testcharms), a
//! subordinate like grafana-agent, runs COSAgentRequirer (the cos_agent library over cosl,
//! unchanged) on each postgresql-ha unit, scrapes the jobs it hands on with Debian's Prometheus in
//! agent mode and remote-writes them, with the alert rules, to `prometheus-ops`, Debian's
//! Prometheus on a machine of its own, which evaluates the rules as the charm wrote them.
//!
//! The drill: every job of every unit is up and every rule loads and evaluates; nothing is
//! pending or firing in the healthy model; one replica's etcd frozen → its etcd target down,
//! EtcdQuorumAtRisk pending, then firing once its `for:` (1m) has passed, with the charm's
//! labels; etcd thawed → the alert clears. Then the primary's Patroni frozen → PostgresqlNoPrimary
//! pending from when its samples go stale until a replica is promoted, then gone; it fires only
//! if that gap outlasts its `for: 15s`, which with Patroni's ttl 20 s is a matter of seconds
//! (pending 10–12 s after the freeze, cleared at 27–31 s: firing in one run of two), so the
//! drill requires pending and reports whether it fired. Intervals are 5 s (scrape and
//! evaluation) where the defaults are 1m, so that the drill takes minutes (150–170 s); the
//! rules' `for:` are the charm's.

use anyhow::{bail, ensure, Context, Result};
use e2e::{ha, until, Deployment, Env, FaultOp};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// This file's subnet (10.77.80–89: observability drills).
const NET: u8 = 80;
const PROM_MACHINE: &str = "3";
const SETTLE: Duration = Duration::from_secs(600);
/// The jobs postgresql-ha's cos.rs sends, per unit.
const JOBS: [&str; 3] = ["etcd", "patroni", "postgresql"];

/// The job a `job` label names: the cos_agent provider names each `<app>_<job>_<hash>`.
fn job_of(label: &str) -> String {
    label
        .strip_prefix("postgresql-ha_")
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

fn bundle(env: &Env, collector: &std::path::Path, prometheus: &std::path::Path) -> String {
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
  collector:
    charm: {collector}
    options:
      scrape-interval: 5s
  prometheus:
    charm: {prometheus}
    num_units: 1
    to: [\"{PROM_MACHINE}\"]
    options:
      evaluation-interval: 5s
relations:
  - [\"postgresql-ha:cos-agent\", \"collector:cos-agent\"]
  - [\"collector:send-remote-write\", \"prometheus:receive-remote-write\"]
",
        wheelhouse = env.build.join("wheelhouse.tar.gz").display(),
        collector = collector.display(),
        prometheus = prometheus.display(),
    )
}

/// GET /api/v1/<path> on the Prometheus server with URL-encoded `params`; its `data`.
fn api(d: &Deployment, path: &str, params: &[(&str, &str)]) -> Result<Value> {
    let mut argv = vec!["curl", "-sS", "--max-time", "5", "-G"];
    let encoded: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for p in &encoded {
        argv.extend(["--data-urlencode", p.as_str()]);
    }
    let url = format!("http://127.0.0.1:9090/api/v1/{path}");
    argv.push(&url);
    let out = d.exec(PROM_MACHINE, &argv)?;
    let v: Value = serde_json::from_str(&out).with_context(|| format!("{path}: {out}"))?;
    ensure!(v["status"] == "success", "{path}: {v}");
    Ok(v["data"].clone())
}

/// An instant query's series as (labels, value).
fn query(d: &Deployment, q: &str) -> Result<Vec<(Value, f64)>> {
    let data = api(d, "query", &[("query", q)])?;
    Ok(data["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let v = s["value"][1]
                .as_str()
                .and_then(|x| x.parse().ok())
                .unwrap_or(f64::NAN);
            (s["metric"].clone(), v)
        })
        .collect())
}

/// The alerts Prometheus has now: (alertname, state, labels).
fn alerts(d: &Deployment) -> Result<Vec<(String, String, Value)>> {
    let data = api(d, "alerts", &[])?;
    Ok(data["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                a["state"].as_str().unwrap_or("").to_string(),
                a["labels"].clone(),
            )
        })
        .collect())
}

/// The alert names in the charm's rule files and the generic ones the library adds (what
/// Prometheus must have loaded).
fn charm_alerts(env: &Env) -> Result<BTreeSet<String>> {
    let dir = env
        .repo
        .join("charms/postgresql-ha/src/prometheus_alert_rules");
    let mut names = BTreeSet::new();
    for f in std::fs::read_dir(&dir)? {
        let text = std::fs::read_to_string(f?.path())?;
        for l in text.lines() {
            if let Some(n) = l.trim().strip_prefix("- alert:") {
                names.insert(n.trim().to_string());
            }
        }
    }
    ensure!(!names.is_empty(), "no alert rules in {}", dir.display());
    // The cos_agent provider adds cosl's generic application rules to every charm's own
    // (cosl rules.py _GenericAlertGroups.application_rules: HostDown `up < 1`,
    // HostMetricsMissing `absent(up)`, both for 5m); charm-lib's writer does too.
    names.extend(["HostDown".to_string(), "HostMetricsMissing".to_string()]);
    Ok(names)
}

/// Every rule of the charm loaded and evaluated without error.
fn rules_loaded(d: &Deployment, want: &BTreeSet<String>) -> Result<()> {
    let data = api(d, "rules", &[("type", "alert")])?;
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
    let mut out: Vec<(String, String, f64)> = query(d, "up")?
        .into_iter()
        .map(|(m, v)| {
            (
                m["juju_unit"].as_str().unwrap_or("").to_string(),
                job_of(m["job"].as_str().unwrap_or("")),
                v,
            )
        })
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Ok(out)
}

fn all_up(d: &Deployment, units: &[String]) -> Result<()> {
    let t = targets(d)?;
    let mut want = Vec::new();
    for u in units {
        for j in JOBS {
            want.push((u.clone(), j.to_string(), 1.0));
        }
    }
    ensure!(t == want, "targets {t:?}, want every job up: {want:?}");
    Ok(())
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
    Ok(alerts(d)?
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
    let d = Deployment::yaml_overlaid(
        &env,
        "cos-drills",
        NET,
        &bundle(&env, &collector, &prometheus),
        &e2e::extra_overlays(),
    )
    .expect("deploy");
    d.wait_active(SETTLE).expect("every unit active");
    let units = ha::pg_units(&d).expect("units");
    assert_eq!(units.len(), 3, "{units:?}");
    eprintln!("    settled in {:?}", start.elapsed());

    // Every job of every unit reaches Prometheus through the collector, labelled with the
    // unit's topology by COSAgentRequirer.
    let (_, took) = until(Duration::from_secs(90), "every target up", || {
        all_up(&d, &units)
    })
    .expect("targets");
    eprintln!("    {} targets up after {took:?}", units.len() * JOBS.len());
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
            let a = alerts(&d)?;
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
            alerts(&d)?.iter().map(|(n, s, _)| format!("{n} {s}")).collect::<Vec<_>>()
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
        all_up(&d, &units)
    })
    .expect("healed");
    eprintln!("    etcd thawed: cleared after {:?}", thawed.elapsed());
    patroni_frozen_on_the_primary(&d, &units).expect("no primary while Patroni is frozen");
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
fn patroni_frozen_on_the_primary(d: &Deployment, units: &[String]) -> Result<()> {
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
            all_up(d, units)?;
            let a = state_of(d, "PostgresqlNoPrimary")?;
            ensure!(a.is_none(), "PostgresqlNoPrimary {a:?}");
            Ok(())
        },
    )?;
    Ok(())
}
