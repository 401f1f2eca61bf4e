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
