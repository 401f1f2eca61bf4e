//! The HA drills of the whole bundle, one function each, run in sequence on one deployment
//! (tests/bundle_drills.rs asserts, the bench binary times them). Each drill runs under
//! continuous traffic through both VIPs from the rack machines and ends with
//! [`ha::assert_healthy`]: nothing acknowledged lost, one primary, one holder per VIP, every
//! unit Active. Bounds are generous ("within 60 s"); timing goals are the bench's.

use crate::ha::{self, Seen, Traffic, RACK_MACHINES};
use crate::{until, Deployment, FaultOp};
use anyhow::{bail, ensure, Context, Result};
use std::time::{Duration, Instant};

/// How long clients may go unserved, and a unit take to recover, in any drill.
pub const RECOVER: Duration = Duration::from_secs(60);
/// How long the model may take to settle again after a drill (hooks on a busy machine).
pub const HEAL: Duration = Duration::from_secs(300);

/// What one drill measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The drill.
    pub name: &'static str,
    /// From the fault to the model settled and healthy again.
    pub healed: Duration,
    /// The traffic it ran under (`None` for the whole-deployment restart, whose clients
    /// went down too).
    pub seen: Option<Seen>,
}

/// Every acknowledged write so far, per table: the restart drill checks them all again.
#[derive(Debug, Default)]
pub struct Ledger {
    /// (table, acknowledged integers).
    pub tables: Vec<(String, Vec<i64>)>,
}

impl Ledger {
    /// Every acknowledged write of every earlier drill is on every member.
    pub fn check(&self, d: &Deployment) -> Result<()> {
        for (table, acked) in &self.tables {
            ha::assert_healthy(d, Some(table), acked, HEAL)?;
        }
        Ok(())
    }
}

fn finish(
    d: &Deployment,
    name: &'static str,
    traffic: Traffic,
    ledger: &mut Ledger,
    fault_at: Instant,
) -> Result<Report> {
    let table = traffic.table.clone();
    let seen = traffic.stop()?;
    ha::assert_healthy(d, Some(&table), &seen.acked, HEAL)
        .with_context(|| format!("after drill {name}"))?;
    ledger.tables.push((table, seen.acked.clone()));
    Ok(Report {
        name,
        healed: fault_at.elapsed(),
        seen: Some(seen),
    })
}

/// The PostgreSQL primary's postgres processes are killed (SIGKILL): a member must be writable
/// again and writes through the DB VIP succeed again within [`RECOVER`].
pub fn primary_killed(d: &Deployment, ledger: &mut Ledger) -> Result<Report> {
    let traffic = Traffic::start(d, "primary_killed")?;
    let (unit, machine) = ha::primary_machine(d)?;
    let before: Vec<u64> = serde_json::from_value(d.fault(
        &machine,
        FaultOp::Pids {
            comm: "postgres".into(),
        },
    )?)?;
    ensure!(
        !before.is_empty(),
        "no postgres process on the primary's machine {machine}"
    );
    let t = Instant::now();
    d.fault(
        &machine,
        FaultOp::Kill {
            target: "postgres".into(),
            signal: 9,
        },
    )?;
    // The kill happened: none of the old processes is left.
    until(
        Duration::from_secs(10),
        "the killed postgres processes gone",
        || {
            let now: Vec<u64> = serde_json::from_value(d.fault(
                &machine,
                FaultOp::Pids {
                    comm: "postgres".into(),
                },
            )?)?;
            let left: Vec<&u64> = before.iter().filter(|p| now.contains(p)).collect();
            if !left.is_empty() {
                bail!("still running: {left:?}");
            }
            Ok(())
        },
    )?;
    traffic
        .wait_recovered(10, RECOVER)
        .with_context(|| format!("after killing the primary {unit}"))?;
    finish(d, "database primary killed", traffic, ledger, t)
}

/// The machine of the PostgreSQL primary goes down (power cut): another member is promoted and
/// writes through the DB VIP succeed again within [`RECOVER`]; the machine comes back.
pub fn primary_host_down(d: &Deployment, ledger: &mut Ledger) -> Result<Report> {
    let traffic = Traffic::start(d, "primary_host_down")?;
    let (unit, machine) = ha::primary_machine(d)?;
    let t = Instant::now();
    d.fault(&machine, FaultOp::Stop)?;
    traffic
        .wait_recovered(10, RECOVER)
        .with_context(|| format!("after the primary {unit}'s machine {machine} went down"))?;
    d.fault(&machine, FaultOp::Start)?;
    d.wait_active(HEAL)
        .with_context(|| format!("after machine {machine} came back"))?;
    traffic.wait_recovered(10, RECOVER)?;
    finish(d, "database primary's host down", traffic, ledger, t)
}

/// The machine holding the region VIP goes down (power cut): another machine takes the VIP
/// and requests through it are answered again within [`RECOVER`]; the machine comes back and
/// everything settles.
pub fn region_holder_down(d: &Deployment, ledger: &mut Ledger) -> Result<Report> {
    let vip = d.region_vip();
    let traffic = Traffic::start(d, "region_holder_down")?;
    let holder = d.wait_vip_holder(&vip, RECOVER)?;
    let t = Instant::now();
    d.fault(&holder, FaultOp::Stop)?;
    let new = d
        .wait_vip_holder(&vip, RECOVER)
        .context("no other machine took the region VIP")?;
    ensure!(
        new != holder,
        "the VIP is still on the stopped machine {holder}"
    );
    traffic
        .wait_recovered(10, RECOVER)
        .with_context(|| format!("after machine {holder} went down"))?;
    d.fault(&holder, FaultOp::Start)?;
    d.wait_active(HEAL)
        .with_context(|| format!("after machine {holder} came back"))?;
    traffic.wait_recovered(10, RECOVER)?;
    finish(d, "region VIP holder's host down", traffic, ledger, t)
}

/// A region the first rack holds RPC connections to (its rackd log names it) is removed with
/// `remove-unit`; within [`RECOVER`] the rack holds connections only to remaining regions, and
/// to at least one. Returns the report and the machine the removed region was on.
pub fn region_removed(d: &Deployment, ledger: &mut Ledger) -> Result<(Report, String)> {
    let rack = RACK_MACHINES[0];
    let traffic = Traffic::start(d, "region_removed")?;
    let reached = regions_connected(d, rack)?
        .and_then(|(r, _)| r.into_iter().next())
        .context("the rack holds no connection to a region yet")?;
    let unit = region_on_host(d, &reached)?;
    let machine = d.machine_of(&unit)?;
    let since = now_s();
    let t = Instant::now();
    d.lm.remove_unit(&[&unit])?;
    until(HEAL, "the region unit gone", || {
        if d.status()?["applications"]["maas-region"]["units"]
            .get(&unit)
            .is_some()
        {
            bail!("{unit} is still in the model");
        }
        Ok(())
    })?;
    until(
        RECOVER,
        "the rack connected to remaining regions only",
        || match regions_connected(d, rack)? {
            Some((hosts, at)) if at > since && !hosts.is_empty() && !hosts.contains(&reached) => {
                Ok(())
            }
            other => bail!("regions connected: {other:?} (removed: {reached})"),
        },
    )?;
    traffic.wait_recovered(10, RECOVER)?;
    Ok((
        finish(d, "region removed (remove-unit)", traffic, ledger, t)?,
        machine,
    ))
}

/// A region is added with `add-unit` (on `to`) while traffic flows: it settles Active, the
/// haproxy of every region lists it, and it answers on its own address.
pub fn region_added(d: &Deployment, ledger: &mut Ledger, to: &str) -> Result<Report> {
    let traffic = Traffic::start(d, "region_added")?;
    let t = Instant::now();
    let added = d.lm.add_unit("maas-region", 1, Some(to))?;
    let unit = added.first().cloned().context("add-unit added nothing")?;
    d.wait_active(HEAL)
        .with_context(|| format!("after adding {unit}"))?;
    let ip = d.address_of(&unit)?;
    until(RECOVER, "the new region listed in every haproxy", || {
        for m in d.machines_of("maas-region")? {
            let cfg = crate::read_in(d, &m, "/etc/haproxy/haproxy.cfg")?;
            if !cfg
                .lines()
                .any(|l| l.trim_start().starts_with("server ") && l.contains(&format!("{ip}:")))
            {
                bail!("machine {m}'s haproxy has no server at {ip}");
            }
        }
        Ok(())
    })?;
    until(RECOVER, "the new region answering", || {
        let code = d.exec(
            RACK_MACHINES[1],
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "3",
                &format!("http://{ip}:5240/MAAS/r/"),
            ],
        )?;
        ensure!(code.trim() == "200", "{unit} at {ip}:5240 answered {code}");
        Ok(())
    })?;
    traffic.wait_recovered(10, RECOVER)?;
    finish(
        d,
        "region added (add-unit) under traffic",
        traffic,
        ledger,
        t,
    )
}

/// Every machine of the deployment is stopped (power cut), then all are started: the model
/// settles, one primary, one holder per VIP, every earlier acknowledged write still on every
/// member, and traffic through both VIPs works again.
pub fn whole_deployment_restarted(d: &Deployment, ledger: &mut Ledger) -> Result<Report> {
    let machines: Vec<String> = d.status()?["machines"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let t = Instant::now();
    for m in &machines {
        d.fault(m, FaultOp::Stop)?;
    }
    for m in &machines {
        d.fault(m, FaultOp::Start)?;
    }
    d.wait_active(HEAL)
        .context("after every machine came back")?;
    ledger
        .check(d)
        .context("earlier acknowledged writes after the restart")?;
    let traffic = Traffic::start(d, "restarted").context("traffic after the restart")?;
    traffic.wait_recovered(10, RECOVER)?;
    let mut r = finish(
        d,
        "whole deployment stopped and started",
        traffic,
        ledger,
        t,
    )?;
    r.healed = t.elapsed();
    Ok(r)
}

/// The region hosts the rack on `machine` holds RPC connections to, and when (unix seconds),
/// from the latest `connections` record of the rackd stand-in's log (rackd, as MAAS's
/// ClusterClientService, connects to every region's workers and logs its connections after
/// each update).
pub fn regions_connected(d: &Deployment, machine: &str) -> Result<Option<(Vec<String>, f64)>> {
    let log = crate::read_in(d, machine, "/var/log/maas/rackd-standin.log").unwrap_or_default();
    Ok(log
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "connections")
        .map(|v| {
            (
                v["regions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.as_str().map(str::to_string))
                    .collect(),
                v["unix"].as_f64().unwrap_or(0.0),
            )
        }))
}

/// The maas-region unit on the machine whose host name is `host`.
fn region_on_host(d: &Deployment, host: &str) -> Result<String> {
    let st = d.status()?;
    let machine = st["machines"]
        .as_object()
        .into_iter()
        .flatten()
        .find(|(_, m)| m["hostname"] == host)
        .map(|(id, _)| id.clone())
        .with_context(|| format!("no machine named {host}"))?;
    st["applications"]["maas-region"]["units"]
        .as_object()
        .into_iter()
        .flatten()
        .find(|(_, u)| u["machine"] == machine.as_str())
        .map(|(n, _)| n.clone())
        .with_context(|| format!("no region on machine {machine} ({host})"))
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One line per failed request through the region VIP (unix ms, how long it took, the status
/// or error), each with the host that answered the last success before it and the first after:
/// which region or haproxy a planned operation dropped requests on.
pub fn failed_requests(records: &[serde_json::Value]) -> Vec<String> {
    let host = |r: &serde_json::Value| {
        r["body"]
            .as_str()
            .and_then(|b| b.rsplit_once(" on "))
            .map(|(_, h)| {
                h.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                    .collect::<String>()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if r["ok"] == true {
            continue;
        }
        let before = records[..i]
            .iter()
            .rev()
            .find(|r| r["ok"] == true)
            .map(host);
        let after = records[i + 1..].iter().find(|r| r["ok"] == true).map(host);
        out.push(format!(
            "failed request at {} ({} ms): status {} error {} (answered before by {}, after by {})",
            r["t_ms"],
            r["ms"],
            r["status"],
            r["error"],
            before.unwrap_or_default(),
            after.unwrap_or_default()
        ));
    }
    out
}

/// The leader of `app` now (status `leader: true`).
fn leader_of(d: &Deployment, app: &str) -> Result<Option<String>> {
    Ok(d.status()?["applications"][app]["units"]
        .as_object()
        .into_iter()
        .flatten()
        .find(|(_, u)| u["leader"] == serde_json::Value::Bool(true))
        .map(|(n, _)| n.clone()))
}

/// A unit's workload status now.
fn workload_status(d: &Deployment, unit: &str) -> Result<String> {
    let st = d.status()?;
    let app = unit.split('/').next().unwrap_or(unit);
    Ok(
        st["applications"][app]["units"][unit]["workload-status"]["current"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

/// The machines of the leaders of maas-region and postgresql-ha go down, one at a time, for
/// longer than the leadership lease (the model's `leader_lease_ms`; Juju: 30–60 s,
/// juju/juju internal/worker/leadership/tracker.go). Each time another unit becomes leader,
/// and what only a leader does still happens while the machine is down: a new database
/// client (`client_charm`, deployed as `db-client-takeover`) gets credentials from
/// postgresql-ha's new leader and writes with them; a region added with `add-unit` is granted
/// the init lock by maas-region's new leader and serves. The machine comes back and
/// everything settles, nothing acknowledged lost; the added region is removed again, so the
/// drills after this one find the bundle's two regions.
pub fn leaders_host_down(
    d: &Deployment,
    ledger: &mut Ledger,
    client_charm: &std::path::Path,
    lease: Duration,
) -> Result<Report> {
    let mut phases: Vec<(String, Vec<(&'static str, String)>)> = Vec::new();
    for app in ["postgresql-ha", "maas-region"] {
        let leader = leader_of(d, app)?.with_context(|| format!("{app} has no leader"))?;
        let machine = d.machine_of(&leader)?;
        match phases.iter_mut().find(|(m, _)| *m == machine) {
            Some((_, apps)) => apps.push((app, leader)),
            None => phases.push((machine, vec![(app, leader)])),
        }
    }
    let traffic = Traffic::start(d, "leaders_host_down")?;
    let t = Instant::now();
    let mut added = Vec::new();
    for (machine, leaders) in &phases {
        added.extend(leaders_lost(d, machine, leaders, client_charm, lease)?);
        traffic.wait_recovered(10, RECOVER)?;
    }
    if !added.is_empty() {
        let units: Vec<&str> = added.iter().map(String::as_str).collect();
        d.lm.remove_unit(&units)?;
        until(HEAL, "the added region removed again", || {
            let st = d.status()?;
            let left: Vec<&String> = added
                .iter()
                .filter(|u| {
                    st["applications"]["maas-region"]["units"]
                        .get(u.as_str())
                        .is_some()
                })
                .collect();
            ensure!(left.is_empty(), "still in the model: {left:?}");
            Ok(())
        })?;
        d.wait_active(HEAL).context("after the added region left")?;
    }
    finish(d, "leaders' hosts down past the lease", traffic, ledger, t)
}

/// One machine holding `leaders` ((application, leader unit)) goes down past the lease; the
/// new leaders take over (see [`leaders_host_down`]); the machine comes back. Returns the
/// regions added.
fn leaders_lost(
    d: &Deployment,
    machine: &str,
    leaders: &[(&'static str, String)],
    client_charm: &std::path::Path,
    lease: Duration,
) -> Result<Vec<String>> {
    d.fault(machine, FaultOp::Stop)?;
    until(lease + RECOVER, "new leaders elected", || {
        for (app, old) in leaders {
            let now = leader_of(d, app)?;
            ensure!(
                now.as_deref().is_some_and(|n| n != old),
                "{app}'s leader is {now:?} (was {old} on stopped machine {machine})"
            );
        }
        Ok(())
    })?;
    let mut added = Vec::new();
    for (app, _) in leaders {
        match *app {
            "postgresql-ha" => client_served(d, machine, client_charm)?,
            "maas-region" => added.push(region_added_by_new_leader(d, machine)?),
            other => bail!("no takeover check for {other}"),
        }
    }
    d.fault(machine, FaultOp::Start)?;
    d.wait_active(HEAL)
        .with_context(|| format!("after machine {machine} came back"))?;
    Ok(added)
}

/// A running database machine other than `down` with no unit of `app` on it.
fn spare_db_machine(d: &Deployment, down: &str, app: &str) -> Result<String> {
    let taken = d.machines_of(app)?;
    d.machines_of("postgresql-ha")?
        .into_iter()
        .find(|m| m != down && !taken.contains(m))
        .with_context(|| format!("no running database machine without {app}"))
}

/// A client deployed now is given credentials by postgresql-ha's (new) leader and writes
/// through the DB VIP with them.
fn client_served(d: &Deployment, down: &str, client_charm: &std::path::Path) -> Result<()> {
    const APP: &str = "db-client-takeover";
    let spare = spare_db_machine(d, down, APP)?;
    let base = &d.status()?["machines"][&spare]["base"];
    let mut plan = local_model::bundle::charm_plan(
        client_charm,
        Some(APP.into()),
        1,
        Some(spare.clone()),
        &[],
        &[],
    )?;
    plan.apps[0].base = Some(format!(
        "{}@{}",
        base["name"].as_str().unwrap_or("ubuntu"),
        base["channel"]
            .as_str()
            .context("the machine's base has no channel")?
    ));
    let client =
        d.lm.deploy_plan(plan, local_model::Substrate::Hosts)?
            .first()
            .cloned()
            .context("deploy added no unit")?;
    d.lm.integrate(&format!("{APP}:db"), "postgresql-ha:db")?;
    until(
        HEAL,
        "the new client served by postgresql-ha's new leader",
        || {
            let s = workload_status(d, &client)?;
            ensure!(s == "active", "{client} is {s}");
            Ok(())
        },
    )?;
    // psql reads the libpq string the client charm was given from its file, so no password
    // lands on an argv or in an error. Retried: the client is Active once any member
    // published its grant, and the primary behind the VIP may apply its pg_hba a hook later
    // (each member writes its own), as a real client's first connection may find.
    let write = format!(
        "psql \"$(cat {})\" -X -q -c 'CREATE TABLE IF NOT EXISTS takeover (at timestamptz); INSERT INTO takeover VALUES (now())'",
        ha::DSN_FILE
    );
    until(
        RECOVER,
        "writing with the credentials the new leader provisioned",
        || d.exec(&spare, &["sh", "-c", &write]),
    )?;
    Ok(())
}

/// A region added now initialises under the init lock maas-region's (new) leader grants, and
/// serves. Returns the unit.
fn region_added_by_new_leader(d: &Deployment, down: &str) -> Result<String> {
    let spare = spare_db_machine(d, down, "maas-region")?;
    let region =
        d.lm.add_unit("maas-region", 1, Some(&spare))?
            .first()
            .cloned()
            .context("add-unit added nothing")?;
    until(
        HEAL,
        "the added region initialised under the new leader's lock",
        || {
            let s = workload_status(d, &region)?;
            ensure!(s == "active", "{region} is {s}");
            Ok(())
        },
    )?;
    Ok(region)
}
