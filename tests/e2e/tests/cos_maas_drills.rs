//! MAAS's observability drills (issue 21): maas-region's and maas-rack's cos-agent data read by
//! Canonical's own requirer (`cos-collector-ops`, a subordinate on each region and rack) and
//! acted on by a real Prometheus (`prometheus-ops`, Debian's), as cos_drills.rs does for
//! postgresql-ha. A file of its own: MAAS needs its own deployment (regions, a rack, a
//! database), and cos_drills' PostgreSQL faults would take the regions' database away too.
//!
//! The drill: every job of every region and rack unit is up (with MAAS's cluster statistics,
//! which the leader turns on for the collector: maas_nodes counts the two regions and the
//! rack; and each region's Temporal through its nginx over https) and every rule of both charms loads and evaluates; nothing is pending or firing in the
//! healthy model. Then, at once (the two `for:` windows run side by side, which keeps the
//! drill's CI time to the longer one), one region's machine stopped (the region, its
//! haproxy and its collector gone, as when a host is lost: what the rules must see through,
//! since remote-write sends no staleness marker and the dead haproxy's last view stays in
//! Prometheus) and the rack's rackd frozen (SIGSTOP on every such process: the process is
//! there and holds its ports, but answers nothing, so pebble does not restart it and the
//! charm's next hook does not either, which keeps the fault as long as the drill needs) → the
//! surviving haproxy's checks of the region fail → MaasRegionDown pending once the dead
//! haproxy's samples are 90 s old, then firing once its `for: 1m` has passed, naming that
//! region; the rack's rackd target down → MaasRackDown pending, firing after its `for: 2m`,
//! with the rack's unit; MaasRegionsAllDown and MaasRackGone never (the other region serves, the
//! rack's collector still reports). Both resumed → cleared. The rules' `for:` are the charms' own (the drill waits them out:
//! a test that shortened them would prove rules nobody runs); intervals are 5 s.

use anyhow::{ensure, Context, Result};
use e2e::prometheus::Prometheus;
use e2e::{until, Deployment, Env, FaultOp};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// This file's subnet (10.77.80–89: observability drills).
const NET: u8 = 81;
const PROM_MACHINE: &str = "3";
/// The Prometheus server the drill reads.
const PROM: Prometheus = Prometheus {
    machine: PROM_MACHINE,
};
const RACK_MACHINE: &str = "2";
const SETTLE: Duration = Duration::from_secs(900);
/// The jobs maas-region's cos.rs sends per unit (haproxy is on by default; `cluster`, MAAS's
/// /MAAS/metrics, once the leader turned MAAS's prometheus_enabled on for the collector;
/// `certificates`, charm-lib's certificate exporter, as MAAS's TLS is on here; `temporal`,
/// Temporal's metrics behind MAAS's nginx, as the default channel, 3.6/stable, is 3.5+).
const REGION_JOBS: [&str; 5] = ["certificates", "cluster", "haproxy", "regiond", "temporal"];
/// The jobs maas-rack's cos.rs sends per unit: rackd's, and maas-agent's behind the rack's
/// nginx on 5248 (`/metrics/agent`, MAAS 3.6+, the default channel). The regions here run no
/// rack (the rack has a machine of its own), so they send no `agent` job.
const RACK_JOBS: [&str; 2] = ["agent", "rackd"];

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

/// Two regions (one with the database, as the bundle co-locates them), a rack on a machine of
/// its own, the collector on each, Prometheus on a machine of its own. The collector is as
/// confined as the opentelemetry-collector snap (`confinement: strict`): a job that named a
/// file of the principal's would be left out, and "every target up" would fail. MAAS's TLS is
/// turned on once the regions serve (see the test).
fn bundle(env: &Env, collector: &Path, prometheus: &Path) -> String {
    format!(
        "description: MAAS regions and a rack observed through cos-agent by a real Prometheus
machines:
  \"0\": {{}}
  \"1\": {{}}
  \"{RACK_MACHINE}\": {{}}
  \"{PROM_MACHINE}\": {{}}
applications:
  postgresql-ha:
    charm: {{build}}/postgresql-ha.charm
    num_units: 1
    to: [\"0\"]
    resources:
      wheelhouse: {wheelhouse}
  maas-region:
    charm: {{build}}/maas-region.charm
    num_units: 2
    to: [\"0\", \"1\"]
    options:
      tls-enabled: true
  maas-rack:
    charm: {{build}}/maas-rack.charm
    num_units: 1
    to: [\"{RACK_MACHINE}\"]
  collector:
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
  - [\"maas-region:database\", \"postgresql-ha:database\"]
  - [\"maas-rack:rpc\", \"maas-region:rpc\"]
  - [\"maas-region:cos-agent\", \"collector:cos-agent\"]
  - [\"maas-rack:cos-agent\", \"collector:cos-agent\"]
  - [\"collector:send-remote-write\", \"prometheus:receive-remote-write\"]
",
        wheelhouse = env.build.join("wheelhouse.tar.gz").display(),
        collector = collector.display(),
        prometheus = prometheus.display(),
    )
}

/// Every alert of that name now: (state, labels).
fn states_of(d: &Deployment, name: &str) -> Result<Vec<(String, Value)>> {
    Ok(PROM
        .alerts(d)?
        .into_iter()
        .filter(|(n, _, _)| n == name)
        .map(|(_, s, l)| (s, l))
        .collect())
}

/// The alert names of both MAAS charms' rule files and the generic ones the library adds.
fn charm_alerts(env: &Env) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for charm in ["maas-region", "maas-rack"] {
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
    // cosl's generic application rules, which the cos_agent provider adds to every charm's
    // (cosl rules.py _GenericAlertGroups.application_rules); charm-lib's writer does too.
    names.extend(["HostDown".to_string(), "HostMetricsMissing".to_string()]);
    Ok(names)
}

/// Every rule loaded and evaluated without error, and no other.
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
    ensure!(&seen == want, "rules loaded {seen:?}, the charms' {want:?}");
    Ok(())
}

/// `up` of every target: (unit, job, value), sorted.
fn targets(d: &Deployment) -> Result<Vec<(String, String, f64)>> {
    // Only targets scraped in the last 20 s (four intervals): a job the collector no longer
    // runs (the cluster job's http form once TLS is on; a job's name hashes its content) keeps
    // its last `up` in the server for the 5-minute lookback.
    let mut out: Vec<(String, String, f64)> = PROM
        .query(d, "up and (time() - timestamp(up) < 20)")?
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

/// Every job of every region and rack unit with `up` as given (1 unless `down` names it),
/// and nothing else scraped.
fn targets_are(
    d: &Deployment,
    regions: &[String],
    racks: &[String],
    down: &[(&str, &str)],
) -> Result<()> {
    let t = targets(d)?;
    let mut want = Vec::new();
    for (units, jobs) in [(regions, &REGION_JOBS[..]), (racks, &RACK_JOBS[..])] {
        for u in units {
            for j in jobs {
                let v = if down.contains(&(u.as_str(), *j)) {
                    0.0
                } else {
                    1.0
                };
                want.push((u.clone(), j.to_string(), v));
            }
        }
    }
    want.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    ensure!(t == want, "targets {t:?}, want {want:?}");
    Ok(())
}

fn units_of(d: &Deployment, app: &str) -> Result<Vec<String>> {
    let mut u: Vec<String> = d
        .units()?
        .into_iter()
        .map(|(n, _, _)| n)
        .filter(|n| n.starts_with(&format!("{app}/")))
        .collect();
    u.sort();
    Ok(u)
}

/// The processes named `comm` on `machine` (machine-side PIDs).
fn pids(d: &Deployment, machine: &str, comm: &str) -> Result<Vec<u32>> {
    let pids: Vec<u32> =
        serde_json::from_value(d.fault(machine, FaultOp::Pids { comm: comm.into() })?)?;
    ensure!(!pids.is_empty(), "no {comm} process on machine {machine}");
    Ok(pids)
}

/// Nothing pending or firing.
fn no_alerts(d: &Deployment, what: &str) -> Result<()> {
    until(Duration::from_secs(120), what, || {
        let a = PROM.alerts(d)?;
        ensure!(a.is_empty(), "alerts: {a:?}");
        Ok(())
    })?;
    Ok(())
}

/// One alert a fault must raise: `name` on the alert whose labels `matches`, firing no
/// sooner than its rule's `for_` after it was first seen pending.
struct Expected<'a> {
    name: &'static str,
    matches: &'a dyn Fn(&Value) -> bool,
    for_: Duration,
}

/// When each expected alert was first seen pending (or firing) and then firing, and the
/// firing alert's labels, all measured from `since`.
struct Seen {
    pending: Duration,
    firing: Duration,
    labels: Value,
}

/// Watches every expected alert at once (their `for:` windows run side by side) until each
/// fires, at least its `for_` after it was first seen pending (less one evaluation and one
/// poll); meanwhile none of `never` may appear.
fn pending_then_firing(
    d: &Deployment,
    expected: &[Expected],
    never: &[&str],
    since: Instant,
) -> Result<Vec<Seen>> {
    let longest = expected.iter().map(|e| e.for_).max().unwrap_or_default();
    let mut pending: Vec<Option<Instant>> = vec![None; expected.len()];
    let mut seen: Vec<Option<Seen>> = expected.iter().map(|_| None).collect();
    until(
        longest + Duration::from_secs(120),
        "every expected alert firing",
        || {
            for n in never {
                let s = states_of(d, n)?;
                ensure!(s.is_empty(), "{n} is {s:?} during a fault it must not see");
            }
            for (i, e) in expected.iter().enumerate() {
                if seen[i].is_some() {
                    continue;
                }
                let s = states_of(d, e.name)?;
                let mine: Vec<&(String, Value)> =
                    s.iter().filter(|(_, l)| (e.matches)(l)).collect();
                if pending[i].is_none() && !mine.is_empty() {
                    pending[i] = Some(Instant::now());
                }
                if let (Some(at), Some((_, l))) =
                    (pending[i], mine.iter().find(|(st, _)| st == "firing"))
                {
                    ensure!(
                        at.elapsed() + Duration::from_secs(10) >= e.for_,
                        "{} firing {:?} after pending: sooner than the rule's for: {:?}",
                        e.name,
                        at.elapsed(),
                        e.for_
                    );
                    seen[i] = Some(Seen {
                        pending: at.duration_since(since),
                        firing: since.elapsed(),
                        labels: l.clone(),
                    });
                }
            }
            let left: Vec<&str> = expected
                .iter()
                .zip(&seen)
                .filter(|(_, s)| s.is_none())
                .map(|(e, _)| e.name)
                .collect();
            ensure!(left.is_empty(), "not firing yet: {left:?}");
            Ok(())
        },
    )?;
    Ok(seen.into_iter().flatten().collect())
}

#[test]
fn maas_region_and_rack_alerts_fire_in_a_real_prometheus() {
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
        "cos-maas-drills",
        NET,
        &bundle(&env, &collector, &prometheus),
        &e2e::extra_overlays(),
    )
    .expect("deploy");
    d.wait_active(SETTLE).expect("every unit active");
    let regions = units_of(&d, "maas-region").expect("regions");
    let racks = units_of(&d, "maas-rack").expect("racks");
    assert_eq!(regions.len(), 2, "{regions:?}");
    assert_eq!(racks.len(), 1, "{racks:?}");
    eprintln!("    settled in {:?}", start.elapsed());

    // MAAS's TLS on from the deployment: every region's cluster and temporal jobs go to
    // https://localhost:5443 (nginx's TLS server block holds /MAAS/metrics and
    // /metrics/temporal), verified with the CA the job carries inline, through the
    // strictly confined collector. (With TLS on from the start, the second region once
    // waited for the init lock past SETTLE: the local model let the leader create its TLS
    // secret twice, and it reissued the certificate in every hook; fixed in the local model.)
    let (_, took) = until(
        Duration::from_secs(300),
        "every cluster and temporal job up over https",
        || {
            let https = PROM.query(&d, "up{instance=\"localhost:5443\"} == 1")?;
            let mut seen: Vec<(String, String)> = https
                .iter()
                .map(|(m, _)| {
                    let unit = m["juju_unit"].as_str().unwrap_or("").to_string();
                    let job = job_of("maas-region", m["job"].as_str().unwrap_or(""));
                    (unit, job)
                })
                .collect();
            seen.sort();
            let want: Vec<(String, String)> = regions
                .iter()
                .flat_map(|u| ["cluster", "temporal"].map(|j| (u.clone(), j.to_string())))
                .collect();
            ensure!(seen == want, "{seen:?}, want {want:?}");
            Ok(())
        },
    )
    .expect("cluster and temporal jobs over https");
    eprintln!("    every cluster and temporal job up over https after {took:?}");
    // Temporal's own series, from each region's Temporal through its nginx.
    until(
        Duration::from_secs(60),
        "Temporal's persistence_requests from every region",
        || {
            let s = PROM.query(&d, "persistence_requests")?;
            let mut units: Vec<String> = s
                .iter()
                .map(|(m, _)| m["juju_unit"].as_str().unwrap_or("").to_string())
                .collect();
            units.sort();
            units.dedup();
            ensure!(units == regions, "{units:?}");
            Ok(())
        },
    )
    .expect("Temporal's metrics");

    let (_, took) = until(Duration::from_secs(120), "every target up", || {
        targets_are(&d, &regions, &racks, &[])
    })
    .expect("targets");
    eprintln!("    every MAAS target up after {took:?}");
    // maas-agent's own series from the rack, through its nginx's /metrics/agent.
    let agent = PROM
        .query(&d, "target_info{service_name=\"maas.agent\"}")
        .expect("maas-agent's target_info");
    let units: Vec<String> = agent
        .iter()
        .map(|(m, _)| m["juju_unit"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(units, racks, "maas-agent's target_info per rack: {agent:?}");
    // The chain each region's nginx serves: MAAS's certificate and the application's CA.
    until(
        Duration::from_secs(60),
        "every region's certificates read",
        || PROM.certificates_read(&d, &regions, 2),
    )
    .expect("certificates");
    let want = charm_alerts(&env).expect("the charms' rules");
    until(
        Duration::from_secs(60),
        "every rule loaded and evaluated",
        || rules_loaded(&d, &want),
    )
    .expect("rules");
    // Both haproxies see both regions up before the fault (what MaasRegionDown reads).
    until(
        Duration::from_secs(60),
        "every haproxy sees every region up",
        || {
            let s = PROM.query(
                &d,
                "haproxy_server_status{proxy=\"maas_http\", state=\"UP\"} == 1",
            )?;
            ensure!(s.len() == 4, "2 haproxies x 2 regions UP: {s:?}");
            Ok(())
        },
    )
    .expect("haproxy");
    // MAAS's own statistics through every region's cluster job: the controllers MAAS's
    // database holds (two regions, one rack), the same from both regions.
    let nodes = PROM.query(&d, "maas_nodes").expect("maas_nodes");
    let mut seen: Vec<(String, String, f64)> = nodes
        .iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(m, v)| {
            (
                m["juju_unit"].as_str().unwrap_or("").to_string(),
                m["type"].as_str().unwrap_or("").to_string(),
                *v,
            )
        })
        .collect();
    seen.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let want: Vec<(String, String, f64)> = regions
        .iter()
        .flat_map(|u| {
            [
                (u.clone(), "racks".to_string(), 1.0),
                (u.clone(), "regions".to_string(), 2.0),
            ]
        })
        .collect();
    assert_eq!(seen, want, "maas_nodes (non-zero) per region: {nodes:?}");
    let statuses = PROM
        .query(&d, "count by (juju_unit) (maas_machines)")
        .expect("maas_machines");
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert!(
        statuses.iter().all(|(_, v)| *v == 11.0),
        "the 11 machine statuses of get_machine_state_stats from each region: {statuses:?}"
    );
    no_alerts(&d, "no alert in the healthy model").expect("healthy");

    region_host_and_rack_stopped(&d, &regions, &racks).expect(
        "MaasRegionDown and MaasRackDown while a region's machine and the rackd are stopped",
    );
    eprintln!("    whole test {:?}", start.elapsed());

    let failed = d.lm.failures().expect("failures").failed;
    assert!(
        failed.is_empty(),
        "hooks exited non-zero:\n{}",
        e2e::failure_lines(&failed)
    );
}

/// One region's machine stopped and the rack's rackd frozen (SIGSTOP) together, so the two
/// rules' `for:` windows run side by side. The region: a lost host takes its collector with it,
/// so its own targets are not down but silent (their last `up` stays in Prometheus for the
/// 5-minute lookback) and its haproxy's last view stays too; the surviving haproxy's checks
/// fail, and MaasRegionDown, which counts only samples younger than 90 s, fires for that
/// server after the dead haproxy's view has aged out and `for: 1m` has passed;
/// MaasRegionsAllDown never (the other region serves). The rack: its /metrics on 5249 times
/// out, `up` is 0 while its machine's collector keeps reporting, so MaasRackDown fires after
/// `for: 2m` with the rack's unit, and MaasRackGone never; its `agent` target stays up
/// (maas-agent and the rack's nginx are processes of their own, as in MAAS). Machine started
/// and rackd resumed, everything clears.
fn region_host_and_rack_stopped(
    d: &Deployment,
    regions: &[String],
    racks: &[String],
) -> Result<()> {
    let victim = regions[1].clone();
    let region_machine = d.machine_of(&victim)?;
    // haproxy names each server after its unit (render.rs `Backend::for_unit`).
    let server = victim.replace('/', "-");
    let rack = racks[0].clone();
    let rack_machine = d.machine_of(&rack)?;
    ensure!(
        rack_machine == RACK_MACHINE,
        "{rack} on machine {rack_machine}"
    );
    let survivors: Vec<String> = regions.iter().filter(|u| **u != victim).cloned().collect();
    let frozen: Vec<u32> = pids(d, &rack_machine, "rackd")?;
    ensure!(!frozen.is_empty(), "no rackd on machine {rack_machine}");
    d.fault(&region_machine, FaultOp::Stop)?;
    for p in &frozen {
        d.fault(&rack_machine, FaultOp::Freeze { pid: *p })?;
    }
    let stopped = Instant::now();
    let result = (|| -> Result<()> {
        // The lost region's targets fall silent (no longer among those scraped in the last
        // 20 s), the rack's rackd target goes down.
        until(
            Duration::from_secs(60),
            "the lost and the stopped targets",
            || targets_are(d, &survivors, racks, &[(rack.as_str(), "rackd")]),
        )?;
        let is_victim = |l: &Value| l["server"].as_str() == Some(server.as_str());
        let is_rack = |l: &Value| l["juju_unit"].as_str() == Some(rack.as_str());
        let seen = pending_then_firing(
            d,
            &[
                Expected {
                    name: "MaasRegionDown",
                    matches: &is_victim,
                    for_: Duration::from_secs(60),
                },
                Expected {
                    name: "MaasRackDown",
                    matches: &is_rack,
                    for_: Duration::from_secs(120),
                },
            ],
            &["MaasRegionsAllDown", "MaasRackGone"],
            stopped,
        )?;
        let (region, rack_seen) = (&seen[0], &seen[1]);
        ensure!(
            region.labels["severity"] == "critical"
                && region.labels["juju_application"] == "maas-region",
            "MaasRegionDown labels {}",
            region.labels
        );
        ensure!(
            rack_seen.labels["severity"] == "critical"
                && rack_seen.labels["juju_application"] == "maas-rack",
            "MaasRackDown labels {}",
            rack_seen.labels
        );
        // Only the stopped region is down as the haproxies see it.
        let down = states_of(d, "MaasRegionDown")?;
        ensure!(
            down.iter().all(|(_, l)| is_victim(l)),
            "MaasRegionDown for another region: {down:?}"
        );
        eprintln!(
            "    machine {region_machine} of {victim} and rackd of {rack} stopped: MaasRegionDown pending after {:?}, firing after {:?}; MaasRackDown pending after {:?}, firing after {:?}; alerts: {:?}",
            region.pending,
            region.firing,
            rack_seen.pending,
            rack_seen.firing,
            PROM.alerts(d)?.iter().map(|(n, s, _)| format!("{n} {s}")).collect::<Vec<_>>()
        );
        Ok(())
    })();
    let started = d.fault(&region_machine, FaultOp::Start);
    for p in &frozen {
        let _ = d.fault(&rack_machine, FaultOp::Thaw { pid: *p });
    }
    result?;
    started?;
    let resumed = Instant::now();
    // The region's machine boots, its MAAS starts and its haproxy's checks pass again.
    until(Duration::from_secs(240), "every alert cleared", || {
        let a = PROM.alerts(d)?;
        ensure!(a.is_empty(), "alerts after the resume: {a:?}");
        targets_are(d, regions, racks, &[])
    })
    .context("after the region's machine started and rackd resumed")?;
    eprintln!(
        "    machine started and rackd resumed: cleared after {:?}",
        resumed.elapsed()
    );
    Ok(())
}
