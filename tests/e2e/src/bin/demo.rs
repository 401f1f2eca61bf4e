//! `make demo`: deploys `bundles/maas-ha.yaml` with the local-model overlay into the local
//! model (`build/local-model`, so `lm` finds it without options), shows each status change
//! while it settles, prints the status table and the URL, then takes the region VIP holder's
//! host down while a client on a rack machine keeps requesting the UI through the VIP, and
//! shows what that client saw. With the test charms built (`make testcharms`), a real
//! Prometheus watches it: the MAAS charms' cos-agent data through the `cos-collector-ops`
//! subordinate, into `prometheus-ops` (Debian's Prometheus) on a machine of its own; the demo
//! prints where it is, and the alerts that go pending and fire while the host is down. The
//! model is kept for a look around (`lm destroy` ends it). `demo --drill` runs the drill again
//! on the model a demo left running.

use anyhow::{bail, Context, Result};
use e2e::ha::{self, answered_by, region_url, RACK_MACHINES};
use e2e::probe::{longest_outage, Probe};
use e2e::prometheus::{Alert, Prometheus};
use e2e::{watch, Deployment, Env, FaultOp};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The local model's default subnet, which bundles/overlays/local-model.yaml's VIPs are on.
const NET: u8 = 0;
/// Generous: a cold first deployment on a busy 2-core machine.
const SETTLE: Duration = Duration::from_secs(600);
/// The machine Prometheus gets (the bundle's are 0-4).
const PROM_MACHINE: &str = "5";
/// How long the drill keeps the host down for the alerts (MaasRegionDown's `for:` is 1m, and
/// the haproxy series are scraped and evaluated every 5 s here).
const ALERT_WAIT: Duration = Duration::from_secs(180);

fn main() {
    let env = match Env::get() {
        Ok(e) => e,
        Err(why) => {
            eprintln!("demo: {why}");
            std::process::exit(2);
        }
    };
    let dir = env.build.join("local-model");
    // `demo --drill`: only the drill, again, on the model a demo left running.
    let result = if std::env::args().any(|a| a == "--drill") {
        Deployment::attach(&env, &dir, NET).and_then(|d| drill(&std::mem::ManuallyDrop::new(d)))
    } else {
        run(&env, &dir)
    };
    look_around(&env);
    if let Err(e) = result {
        eprintln!("\ndemo FAILED: {e:#}\nThe model is kept as it is: look at `lm status` and `lm logs <unit>` (above).");
        std::process::exit(1);
    }
}

fn lm_cmd(env: &Env) -> String {
    let lm = env.lm.strip_prefix(&env.repo).unwrap_or(&env.lm);
    lm.display().to_string()
}

fn run(env: &Env, dir: &std::path::Path) -> Result<()> {
    let t0 = Instant::now();
    println!(
        "== deploying bundles/maas-ha.yaml --overlay bundles/overlays/local-model.yaml (model {})",
        dir.display()
    );
    let mut overlays = vec![env.repo.join("bundles/overlays/local-model.yaml")];
    if let Some(o) = cos_overlay(env)? {
        overlays.push(o);
    }
    overlays.extend(e2e::extra_overlays());
    // update-status every minute (`juju model-config update-status-hook-interval=1m`): some
    // statuses are only refreshed by it, and Juju's default 5 min would stretch the demo.
    println!(
        "   (update-status every 60 s, as `juju model-config update-status-hook-interval=1m`)"
    );
    let d = Deployment::bundle_in(
        env,
        dir,
        NET,
        &overlays,
        &[("LM_UPDATE_STATUS_MS", "60000")],
    )?;
    // The model outlives the demo: the user looks around, then runs `lm destroy`.
    let d = std::mem::ManuallyDrop::new(d);
    println!("== settling (a line per change: unit, workload status, message)");
    let took = watch::settle(&d, SETTLE, |l| println!("{l}"))?;
    let hooks = watch::hooks_total(&d.status()?);
    println!(
        "== settled in {:.0} s, {hooks} hooks run; every unit is Active",
        took.as_secs_f64()
    );
    watch::report_failed_hooks(&d, 0, |l| println!("{l}"))?;
    println!();
    print_status(env, dir)?;
    println!("MAAS: {}  (the region VIP; the lab's hosts reach it, this machine has no route into the lab:", region_url(&d));
    println!(
        "      {} ssh maas-rack/0 -- curl -s {})\n",
        lm_cmd(env),
        region_url(&d)
    );
    if has_prometheus(&d)? {
        print_prometheus(env, &d)?;
    }
    drill(&d)?;
    println!("\ndemo passed in {:.0} s", t0.elapsed().as_secs_f64());
    Ok(())
}

fn print_status(env: &Env, dir: &std::path::Path) -> Result<()> {
    let out = std::process::Command::new(&env.lm)
        .arg("status")
        .env("LM_MODEL_DIR", dir)
        .output()
        .context("lm status")?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    println!();
    Ok(())
}

/// The region VIP holder's host goes down; a client on a rack machine keeps asking.
fn drill(d: &Deployment) -> Result<()> {
    let vip = d.region_vip();
    let holder = d.wait_vip_holder(&vip, Duration::from_secs(60))?;
    let client = RACK_MACHINES[1];
    println!("== drill: machine {holder} holds the region VIP {vip}; it goes down while machine {client} requests {} every 100 ms", region_url(d));
    // The bundle co-locates regions with database units: the same host may run the primary.
    // A planned switchover moves it off first (it loses nothing), so the drill shows the region
    // VIP's failover, not a database failover's 503s on top of it.
    if let Some((unit, m)) = ha::primary_machine(d).ok().filter(|(_, m)| *m == holder) {
        println!("   machine {m} also runs the PostgreSQL primary ({unit}): switching it over to another member first");
        // Patroni names a synchronous standby again a little after a member rejoined.
        e2e::until(Duration::from_secs(120), "a switchover", || {
            d.action(&unit, "switchover", &[])
        })?;
        e2e::until(
            Duration::from_secs(60),
            "the database VIP leaving that machine",
            || {
                let h = d.wait_vip_holder(&d.db_vip(), Duration::from_secs(5))?;
                anyhow::ensure!(h != holder, "the database VIP is still on machine {holder}");
                Ok(())
            },
        )?;
    }
    // A name of its own per run: `demo --drill` again must not read an earlier run's records.
    let probe = Probe::http(
        d,
        client,
        &format!("demo-http-{}", now_ms()),
        &region_url(d),
        100,
    )?;
    probe
        .wait_successes(10, Duration::from_secs(60))
        .context("requests through the VIP before the drill")?;
    let down_at = now_ms();
    let before_fault = watch::failed_hooks(d, 0)?.last().map_or(0, |f| f.at_ms);
    d.fault(&holder, FaultOp::Stop)?;
    println!("   machine {holder} stopped (power cut: processes killed, link down)");
    let new_holder = d
        .wait_vip_holder(&vip, Duration::from_secs(60))
        .context("no other machine took the VIP")?;
    probe
        .wait_successes(20, Duration::from_secs(60))
        .context("requests through the VIP after the host went down")?;
    let records = probe.stop()?;
    println!("   machine {new_holder} took the VIP. What the client saw (t = time since the host went down):");
    let print_alerts = has_prometheus(d)?;
    for run in answered_by(&records) {
        let rel = |t: u64| (t as f64 - down_at as f64) / 1000.0;
        println!(
            "   {:>+7.1} s .. {:>+7.1} s  {:>4} requests  {}",
            rel(run.first_ms),
            rel(run.last_ms),
            run.count,
            if run.who.starts_with("failed") {
                run.who
            } else {
                format!("answered by {}", run.who)
            }
        );
    }
    let failed = records.iter().filter(|r| r["ok"] != true).count();
    match longest_outage(&records) {
        Some((gap, n)) => println!(
            "   {failed} of {} requests failed; longest gap without a 200: {:.1} s ({n} requests)",
            records.len(),
            gap.as_secs_f64()
        ),
        None => println!("   none of {} requests failed", records.len()),
    }
    let silent = longest_outage(&ha::answered(&records)).map_or(0.0, |(g, _)| g.as_secs_f64());
    println!("   the VIP itself: nothing answered for {silent:.1} s (keepalived moving it); any other failures were regions answering without their database");
    if print_alerts {
        watch_alerts_while_down(d, down_at)?;
    }
    println!("== machine {holder} comes back");
    d.fault(&holder, FaultOp::Start)?;
    watch::settle(d, Duration::from_secs(300), |l| println!("{l}"))
        .context("after the machine came back")?;
    if print_alerts {
        watch_alerts_clear(d)?;
    }
    watch::report_failed_hooks(d, before_fault, |l| println!("{l}"))?;
    let holders = d.vip_holders(&vip)?;
    if holders.len() != 1 {
        bail!("{vip} held by {holders:?} after the machine came back");
    }
    println!(
        "   every unit Active again; {vip} stays on machine {} (no preemption)",
        holders[0]
    );
    Ok(())
}

/// The overlay that adds the collector and Prometheus, when the test charms are built.
fn cos_overlay(env: &Env) -> Result<Option<PathBuf>> {
    let collector = env.build.join("testcharms/cos-collector-ops.charm");
    let prometheus = env.build.join("testcharms/prometheus-ops.charm");
    if !collector.exists() || !prometheus.exists() {
        println!("   (no Prometheus: the test charms are not built; `make testcharms` adds one)");
        return Ok(None);
    }
    // The overlay's machines replace the bundle's (reference §4.5), so all are listed. The
    // collector goes on the MAAS charms only: a subordinate on postgresql-ha too would put two
    // collector units on each region's machine (the bundle co-locates them), one port each.
    let text = format!(
        "machines:
  \"0\": {{}}
  \"1\": {{}}
  \"2\": {{}}
  \"3\": {{}}
  \"4\": {{}}
  \"{PROM_MACHINE}\": {{}}
applications:
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
  - [\"maas-region:cos-agent\", \"collector:cos-agent\"]
  - [\"maas-rack:cos-agent\", \"collector:cos-agent\"]
  - [\"region-vip:cos-agent\", \"collector:cos-agent\"]
  - [\"collector:send-remote-write\", \"prometheus:receive-remote-write\"]
",
        collector = collector.display(),
        prometheus = prometheus.display(),
    );
    let path = env.build.join("demo-cos-overlay.yaml");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("   (with a real Prometheus on machine {PROM_MACHINE}, fed by cos-collector-ops on the MAAS units)");
    Ok(Some(path))
}

fn has_prometheus(d: &Deployment) -> Result<bool> {
    Ok(d.status()?["applications"]["prometheus"].is_object())
}

const PROM: Prometheus = Prometheus {
    machine: PROM_MACHINE,
};

/// Where Prometheus is, and that it sees every target and loaded the charms' rules.
fn print_prometheus(env: &Env, d: &Deployment) -> Result<()> {
    let address = d.address_of("prometheus/0")?;
    // The collectors start scraping one after another: the count is the one unchanged for
    // three scrape intervals (5 s each), every target up.
    let mut since = (0, Instant::now());
    let (up, took) = e2e::until(Duration::from_secs(180), "every target up", || {
        let t = PROM.query(d, "up")?;
        if t.len() != since.0 {
            since = (t.len(), Instant::now());
        }
        anyhow::ensure!(
            !t.is_empty() && t.iter().all(|(_, v)| *v == 1.0),
            "targets not all up: {t:?}"
        );
        anyhow::ensure!(
            since.1.elapsed() >= Duration::from_secs(15),
            "{} targets for {:?} only",
            t.len(),
            since.1.elapsed()
        );
        Ok(t.len())
    })?;
    let groups = PROM.api(d, "rules", &[])?;
    let rules: usize = groups["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| g["rules"].as_array().map_or(0, Vec::len))
        .sum();
    println!("Prometheus: http://{address}:9090 (machine {PROM_MACHINE}): {up} targets up after {:.0} s, {rules} alert rules from the charms' cos-agent data", took.as_secs_f64());
    println!(
        "      {} ssh {PROM_MACHINE} -- curl -s localhost:9090/api/v1/alerts\n",
        lm_cmd(env)
    );
    Ok(())
}

/// Each alert's state as (name, state) per its labels, for printing changes.
fn alert_states(d: &Deployment) -> Result<BTreeMap<String, String>> {
    let describe = |(name, state, labels): &Alert| {
        let what = match (labels["proxy"].as_str(), labels["server"].as_str()) {
            (Some(p), Some(s)) => format!(" {p}/{s}"),
            (None, Some(s)) => format!(" {s}"),
            _ => String::new(),
        };
        let on = labels["juju_unit"]
            .as_str()
            .map(|u| format!(" on {u}"))
            .unwrap_or_default();
        (format!("{name}{what}{on}"), state.clone())
    };
    Ok(PROM.alerts(d)?.iter().map(describe).collect())
}

/// Keeps the host down until an alert fires (or [`ALERT_WAIT`]), printing each change.
fn watch_alerts_while_down(d: &Deployment, down_at: u64) -> Result<()> {
    println!(
        "   Prometheus's alerts while the machine stays down (each fires after its rule's for:):"
    );
    let mut seen = BTreeMap::new();
    let started = Instant::now();
    loop {
        let now = alert_states(d)?;
        for (alert, state) in &now {
            if seen.get(alert) != Some(state) {
                let t = (now_ms() as f64 - down_at as f64) / 1000.0;
                println!("   {t:>+7.1} s  {state:<8} {alert}");
            }
        }
        seen = now;
        if seen.values().any(|s| s == "firing") {
            return Ok(());
        }
        if started.elapsed() > ALERT_WAIT {
            println!("   nothing fired within {} s", ALERT_WAIT.as_secs());
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// After the machine is back: how long until Prometheus has no alert left.
fn watch_alerts_clear(d: &Deployment) -> Result<()> {
    let started = Instant::now();
    match e2e::until(Duration::from_secs(120), "every alert cleared", || {
        let a = alert_states(d)?;
        anyhow::ensure!(a.is_empty(), "{a:?}");
        Ok(())
    }) {
        Ok(_) => println!(
            "   Prometheus: every alert cleared {:.0} s after the machine settled",
            started.elapsed().as_secs_f64()
        ),
        Err(e) => println!("   Prometheus still has alerts: {e:#}"),
    }
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn look_around(env: &Env) {
    let lm = lm_cmd(env);
    println!(
        "\nLook around (the model stays up; {lm} finds it in build/local-model):
  {lm} status                         # units, machines, relations (--format=json for more)
  {lm} logs maas-region/0             # a unit's hooks, juju-log lines and hook-tool calls
  {lm} ssh maas-rack/0 -- curl -s http://10.77.0.200/MAAS/r/
  {lm} ssh postgresql-ha/0 -- runuser -u postgres -- psql -h /run/postgresql-ha -c 'select 1'
  {lm} run postgresql-ha/leader get-primary
  {lm} fault stop 0 / {lm} fault start 0   # a host down and back
  {lm} add-unit maas-region --to 2    # scale out
  {lm} ssh {PROM_MACHINE} -- curl -s localhost:9090/api/v1/alerts   # Prometheus (with the test charms)
When done:
  {lm} destroy                        # daemon, hosts, files: nothing left"
    );
}
