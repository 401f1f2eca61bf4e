//! The PostgreSQL drills of issue 7: postgresql-ha ×3 (Patroni + etcd) with a keepalived-vip
//! subordinate holding the DB VIP, a `db` client and a `database` client on a machine of their
//! own, and one fault per drill under continuous writes through the DB VIP from the clients'
//! machine (which no drill takes down). tests/pg_drills.rs asserts, `bench-pg` times them.
//!
//! Every drill ends with [`healthy`]: every unit Active, exactly one writable member, the DB
//! VIP on that member's machine, the expected number of streaming replicas (at least one
//! synchronous), and every acknowledged write of every drill so far on every member, asked
//! locally with psql. Bounds are generous; the timing goals are the bench's.

use crate::failover_watch::{self, Windows};
use crate::ha::{self, CLIENT_DB, WRITER_TIMEOUTS};
use crate::probe::Probe;
use crate::{until, Deployment, Env, FaultOp};
use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The application under test.
pub const APP: &str = "postgresql-ha";
/// The machine of both test clients (and of the writer): never faulted.
pub const CLIENT_MACHINE: &str = "3";
/// Where the `database` test client keeps its libpq string and the endpoints it was given.
const MODERN_DSN: &str = "/var/lib/database-client/dsn";
const MODERN_ENDPOINTS: &str = "/var/lib/database-client/endpoints";
/// How long writes may fail, a member take to become primary, in any drill.
pub const RECOVER: Duration = Duration::from_secs(60);
/// How long the model may take to settle after a drill (hooks on a busy 2-core machine).
pub const HEAL: Duration = Duration::from_secs(240);
/// The data directory (its `postmaster.pid` names the postmaster).
const PGDATA: &str = "/var/lib/postgresql-ha/data";

/// What one drill measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The drill.
    pub name: String,
    /// The target for the write outage, if it sets one.
    pub target: Option<Duration>,
    /// From the fault to the end of the first write that succeeded after a failed one (`None`:
    /// no write failed after the fault, so nothing had to recover).
    pub recovered: Option<Duration>,
    /// Writes that failed after the fault.
    pub failed: usize,
    /// Writes attempted and acknowledged in the drill.
    pub writes: usize,
    /// See `writes`.
    pub acked: usize,
    /// From the fault to [`healthy`] passing.
    pub healed: Duration,
    /// While the drill ran, a primary that nobody could have replaced automatically.
    pub exposed: Windows,
}

/// Every acknowledged write so far, per table (each drill writes its own table).
#[derive(Debug, Default)]
pub struct Ledger {
    /// (table, acknowledged integers).
    pub tables: Vec<(String, Vec<i64>)>,
}

/// Packs the two test clients into `dir` (outside the model directory, which the daemon empties).
fn pack_clients(env: &Env, dir: &Path) -> Result<(String, String)> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    for c in ["db-client", "database-client"] {
        let charm = dir.join(format!("{c}.charm"));
        local_model::charm::pack_dir(&env.repo.join("tests/e2e/testcharms").join(c), &charm)?;
        out.push(charm.display().to_string());
    }
    Ok((out[0].clone(), out[1].clone()))
}

/// The db-vip options of `bundles/maas-ha.yaml` as YAML lines indented for [`bundle`], so the
/// drills run the DB VIP exactly as the bundle configures it.
pub fn bundle_db_vip_options(env: &Env) -> Result<String> {
    let path = env.repo.join("bundles/maas-ha.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let bundle: serde_yaml::Value = serde_yaml::from_str(&text)?;
    let options = &bundle["applications"]["db-vip"]["options"];
    ensure!(
        options.is_mapping(),
        "{}: applications.db-vip.options is not a mapping",
        path.display()
    );
    Ok(serde_yaml::to_string(options)?
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect())
}

/// `E2E_PG_OPTIONS` (`loop-wait=1,retry-timeout=3`): postgresql-ha options for an experiment
/// (a timing setting measured in the drills before it becomes a default). Empty: the defaults.
fn options_from_env() -> Result<String> {
    let raw = std::env::var("E2E_PG_OPTIONS").unwrap_or_default();
    let mut out = String::new();
    for kv in raw.split(',').map(str::trim).filter(|kv| !kv.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("E2E_PG_OPTIONS: {kv:?} is not option=value"))?;
        out.push_str(&format!("      {}: {}\n", k.trim(), v.trim()));
    }
    Ok(if out.is_empty() {
        out
    } else {
        format!("    options:\n{out}")
    })
}

/// What clients are given to reach the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// The DB VIP at .201 of the subnet, with the db-vip options of `bundles/maas-ha.yaml`.
    Vip,
    /// No VIP: the primary's own address, which the charm republishes after a failover.
    PrimaryAddress,
}

/// The bundle: 3 postgresql-ha units on machines 0-2, `front` before them, both clients on
/// [`CLIENT_MACHINE`].
pub fn bundle(env: &Env, net: u8, clients_dir: &Path, front: Front) -> Result<String> {
    let (db_client, database_client) = pack_clients(env, clients_dir)?;
    let (vip_app, vip_relation) = match front {
        Front::Vip => (
            format!(
                "  db-vip:
    charm: {{build}}/keepalived-vip.charm
    options:
      vip: 10.77.{net}.201/24
{}",
                bundle_db_vip_options(env)?
            ),
            format!("  - [\"{APP}:vip\", \"db-vip:vip\"]\n"),
        ),
        Front::PrimaryAddress => (String::new(), String::new()),
    };
    let options = options_from_env()?;
    Ok(format!(
        "description: postgresql-ha drills
machines:
  \"0\": {{}}
  \"1\": {{}}
  \"2\": {{}}
  \"3\": {{}}
applications:
  {APP}:
    charm: {{build}}/postgresql-ha.charm
    num_units: 3
    to: [\"0\", \"1\", \"2\"]
    resources:
      wheelhouse: {{build}}/wheelhouse.tar.gz
{options}{vip_app}  db-client:
    charm: {db_client}
    num_units: 1
    to: [\"{CLIENT_MACHINE}\"]
  database-client:
    charm: {database_client}
    num_units: 1
    to: [\"{CLIENT_MACHINE}\"]
relations:
{vip_relation}  - [\"{APP}:db\", \"db-client:db\"]
  - [\"{APP}:database\", \"database-client:database\"]
"
    ))
}

/// Deploys [`bundle`] with the DB VIP in `build/e2e/<name>` on 10.77.<net>.0/24, update-status
/// every 10 s (so a status that only update-status refreshes, like Blocked on quorum loss,
/// shows promptly).
pub fn deploy(env: &Env, name: &str, net: u8) -> Result<Deployment> {
    deploy_front(env, name, net, Front::Vip, "10000")
}

/// Deploys [`bundle`] without a VIP, and with no update-status at all: whatever refreshes the
/// clients' address after a failover must come from the charm's own observer.
pub fn deploy_without_vip(env: &Env, name: &str, net: u8) -> Result<Deployment> {
    deploy_front(env, name, net, Front::PrimaryAddress, "0")
}

fn deploy_front(
    env: &Env,
    name: &str,
    net: u8,
    front: Front,
    update_status_ms: &str,
) -> Result<Deployment> {
    let charms = env.build.join("e2e").join(format!("{name}-charms"));
    let yaml = bundle(env, net, &charms, front)?;
    Deployment::yaml_with(
        env,
        name,
        net,
        &yaml,
        &[("LM_UPDATE_STATUS_MS", update_status_ms)],
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A `key=value` of a libpq string (values without quotes or spaces, as both clients write them).
fn dsn_value<'a>(dsn: &'a str, key: &str) -> Option<&'a str> {
    dsn.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// The two clients were given the DB VIP (the `db` client's `master` host, the `database`
/// client's `endpoints`), and each writes through what it was given.
pub fn clients_write_through_the_vip(d: &Deployment) -> Result<()> {
    clients_given(d, &d.db_vip())?;
    clients_write(d)
}

/// Both clients were given `host` (the `db` client's `master` host, the `database` client's
/// `endpoints` and libpq string).
pub fn clients_given(d: &Deployment, host: &str) -> Result<()> {
    let db_dsn = ha::writer_dsn(d, CLIENT_MACHINE)?;
    ensure!(
        dsn_value(&db_dsn, "host") == Some(host),
        "db-client was given host {:?}, not {host}",
        dsn_value(&db_dsn, "host")
    );
    let endpoints = crate::read_in(d, CLIENT_MACHINE, MODERN_ENDPOINTS)?;
    ensure!(
        endpoints.trim() == format!("{host}:5432"),
        "database-client was given endpoints {:?}, not {host}:5432",
        endpoints.trim()
    );
    let modern = crate::read_in(d, CLIENT_MACHINE, MODERN_DSN)?;
    ensure!(
        dsn_value(&modern, "host") == Some(host),
        "database-client's libpq string does not use {host}"
    );
    Ok(())
}

/// Each client writes through what it was given, with its own credentials.
pub fn clients_write(d: &Deployment) -> Result<()> {
    let db_dsn = ha::writer_dsn(d, CLIENT_MACHINE)?;
    let modern = crate::read_in(d, CLIENT_MACHINE, MODERN_DSN)?;
    for (name, dsn) in [
        ("via_db", db_dsn),
        (
            "via_database",
            format!("{} {WRITER_TIMEOUTS}", modern.trim()),
        ),
    ] {
        let p = Probe::writer_table(
            d,
            CLIENT_MACHINE,
            &format!("pg-{name}"),
            &dsn,
            &format!("e2e_{name}"),
            100,
        )?;
        let r = p
            .wait_successes(5, RECOVER)
            .with_context(|| format!("writes with the {name} client's credentials"));
        p.stop()?;
        r?;
    }
    Ok(())
}

/// Replication as seen from the primary: (standby name, state, sync_state) per standby.
pub fn replication(d: &Deployment, primary: &str) -> Result<Vec<(String, String, String)>> {
    let out = ha::psql(
        d,
        primary,
        "postgres",
        "SELECT application_name, state, sync_state FROM pg_stat_replication ORDER BY 1",
    )?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f.len() == 3).then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string()))
        })
        .collect())
}

/// The end state of every drill, within `timeout`: every unit Active and nothing queued,
/// exactly one writable member, the DB VIP on its machine, `replicas` standbys streaming from
/// it (at least one synchronous), and every acknowledged write of the ledger on every member.
/// Returns the primary unit.
pub fn healthy(
    d: &Deployment,
    ledger: &Ledger,
    replicas: usize,
    timeout: Duration,
) -> Result<String> {
    d.wait_active(timeout)?;
    let (primary, _) = until(timeout, "exactly one writable member", || {
        let p = ha::primaries(d)?;
        ensure!(p.len() == 1, "writable members: {p:?}");
        Ok(p[0].clone())
    })?;
    let machine = d.machine_of(&primary)?;
    until(timeout, "the DB VIP on the primary's machine only", || {
        let h = d.vip_holders(&d.db_vip())?;
        ensure!(
            h == [machine.clone()],
            "DB VIP held by {h:?}, primary {primary} is on machine {machine}"
        );
        Ok(())
    })?;
    until(timeout, "standbys streaming from the primary", || {
        let r = replication(d, &primary)?;
        let streaming = r.iter().filter(|(_, s, _)| s == "streaming").count();
        let sync = r
            .iter()
            .filter(|(_, s, y)| s == "streaming" && (y == "sync" || y == "quorum"))
            .count();
        ensure!(streaming == replicas && sync >= 1, "pg_stat_replication on {primary}: {r:?} (want {replicas} streaming, at least one sync)");
        Ok(())
    })?;
    for (table, acked) in &ledger.tables {
        ensure!(!acked.is_empty(), "no write to {table} was acknowledged");
        until(timeout, "every acknowledged write on every member", || {
            let m = ha::missing_on_members(d, table, acked)?;
            if !m.is_empty() {
                let s: Vec<String> = m
                    .iter()
                    .map(|(u, ns)| {
                        format!(
                            "{u} misses {} of {table} (first {:?})",
                            ns.len(),
                            &ns[..ns.len().min(5)]
                        )
                    })
                    .collect();
                bail!("{}", s.join("; "));
            }
            Ok(())
        })?;
        // The same, as count and max on each member, for the record.
        let max = acked.iter().max().copied().unwrap_or(0);
        let list = acked
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",");
        for u in ha::pg_units(d)? {
            let got = ha::psql(
                d,
                &u,
                CLIENT_DB,
                &format!("SELECT count(*), max(n) FROM {table} WHERE n IN ({list})"),
            )?;
            ensure!(
                got.trim() == format!("{}|{max}", acked.len()),
                "{u}: count|max of the acknowledged writes of {table} is {}, want {}|{max}",
                got.trim(),
                acked.len()
            );
        }
    }
    Ok(primary)
}

/// Continuous writes through the DB VIP (db-client's credentials) from [`CLIENT_MACHINE`].
pub struct Writes<'d> {
    probe: Probe<'d>,
    table: String,
    /// The instant (ms since the epoch) the outage is measured from: the fault, or a later one.
    from_ms: Cell<u64>,
}

impl<'d> Writes<'d> {
    /// Starts the writer into table `e2e_<name>` and waits for a few acknowledged writes.
    pub fn start(d: &'d Deployment, name: &str) -> Result<Writes<'d>> {
        let table = format!("e2e_{name}");
        let dsn = ha::writer_dsn(d, CLIENT_MACHINE)?;
        let probe =
            Probe::writer_table(d, CLIENT_MACHINE, &format!("pg-{name}"), &dsn, &table, 100)?;
        probe
            .wait_successes(3, RECOVER)
            .context("writes through the DB VIP before the fault")?;
        Ok(Writes {
            probe,
            table,
            from_ms: Cell::new(now_ms()),
        })
    }

    /// Measures the outage from now (a drill whose second fault is the one with a target).
    pub fn measure_from_now(&self) {
        self.from_ms.set(now_ms());
    }

    /// Waits for `n` more acknowledged writes.
    pub fn wait(&self, n: usize, timeout: Duration) -> Result<()> {
        self.probe
            .wait_successes(n, timeout)
            .context("writes through the DB VIP did not resume")
    }

    /// Stops the writer, records its acknowledged writes in the ledger and measures from `fault_ms`.
    fn finish(self, ledger: &mut Ledger) -> Result<(Option<Duration>, usize, usize, usize)> {
        let records = self.probe.stop()?;
        let acked = crate::probe::acknowledged(&records);
        let (recovered, failed) = recovery(&records, self.from_ms.get());
        let n = (records.len(), acked.len());
        ledger.tables.push((self.table, acked));
        Ok((recovered, failed, n.0, n.1))
    }
}

/// From the probe's records: the time from `fault_ms` to the end of the first write that
/// succeeded after a write failed (a write started after the fault), and how many writes
/// started after the fault failed.
pub fn recovery(records: &[Value], fault_ms: u64) -> (Option<Duration>, usize) {
    let after: Vec<&Value> = records
        .iter()
        .filter(|r| r["t_ms"].as_u64().unwrap_or(0) >= fault_ms)
        .collect();
    let failed = after.iter().filter(|r| r["ok"] != true).count();
    let first_fail = after.iter().position(|r| r["ok"] != true);
    let recovered = first_fail
        .and_then(|i| after[i..].iter().find(|r| r["ok"] == true))
        .map(|r| {
            let end = r["t_ms"].as_u64().unwrap_or(0) + r["ms"].as_u64().unwrap_or(0);
            Duration::from_millis(end.saturating_sub(fault_ms))
        });
    (recovered, failed)
}

/// Runs one drill: writer started, `fault` injected (it returns when the fault is over, e.g.
/// after the network is restored), writes resume within [`RECOVER`] of the fault's end,
/// [`healthy`] with `replicas` standbys; `after` may check more before the report.
fn drill(
    d: &Deployment,
    ledger: &mut Ledger,
    name: &str,
    table: &str,
    target: Option<Duration>,
    replicas: usize,
    fault: impl FnOnce(&Writes) -> Result<()>,
) -> Result<(Report, String)> {
    let w = Writes::start(d, table)?;
    let machines = d.machines_of(APP)?;
    let stop = AtomicBool::new(false);
    let t = Instant::now();
    w.measure_from_now();
    // The watch runs from the fault until the deployment is healthy again.
    let (outcome, exposed) = std::thread::scope(|s| {
        let watch = s.spawn(|| failover_watch::watch(d, &machines, &stop));
        let outcome = (|| {
            fault(&w).with_context(|| format!("drill {name}: the fault"))?;
            w.wait(10, RECOVER)
                .with_context(|| format!("drill {name}"))?;
            let (recovered, failed, writes, acked) = w.finish(ledger)?;
            let primary = healthy(d, ledger, replicas, HEAL)
                .with_context(|| format!("after drill {name}"))?;
            anyhow::Ok((recovered, failed, writes, acked, primary))
        })();
        stop.store(true, Ordering::Relaxed);
        (outcome, watch.join().unwrap_or_default())
    });
    let (recovered, failed, writes, acked, primary) = outcome?;
    let r = Report {
        name: name.into(),
        target,
        recovered,
        failed,
        writes,
        acked,
        healed: t.elapsed(),
        exposed,
    };
    eprintln!("drill {name:?}: writes back after {:?}, {failed} failed of {writes} ({acked} acknowledged, all on every member), healthy after {:.1} s; primary {primary}; no automatic failover possible for {:.1} s (longest {:.1} s{})", r.recovered, r.healed.as_secs_f64(), r.exposed.total.as_secs_f64(), r.exposed.longest.as_secs_f64(), r.exposed.why.as_deref().map(|w| format!(": {w}")).unwrap_or_default());
    Ok((r, primary))
}

/// The primary unit and its machine (exactly one writable member).
pub fn primary(d: &Deployment) -> Result<(String, String)> {
    ha::primary_machine(d)
}

/// The postmaster's PID (machine side) on `machine`: the first line of postmaster.pid is the
/// PID inside the host's PID namespace, so the postgres process whose parent is not postgres.
fn postmaster(d: &Deployment, machine: &str) -> Result<u32> {
    let pid_inside = crate::read_in(d, machine, &format!("{PGDATA}/postmaster.pid"))?
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let pids: Vec<u32> = serde_json::from_value(d.fault(
        machine,
        FaultOp::Pids {
            comm: "postgres".into(),
        },
    )?)?;
    for p in &pids {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        // NSpid: <machine pid> <pid in the host's namespace>
        let ns = status
            .lines()
            .find(|l| l.starts_with("NSpid:"))
            .map(|l| l.split_whitespace().last().unwrap_or("").to_string());
        if ns.as_deref() == Some(pid_inside.as_str()) {
            return Ok(*p);
        }
    }
    bail!("no postgres process on machine {machine} has the postmaster's PID {pid_inside} (postgres PIDs: {pids:?})")
}

/// Waits until a member other than `old` is writable (the failover happened).
pub fn wait_new_primary(d: &Deployment, old: &str, timeout: Duration) -> Result<String> {
    until(timeout, "another member promoted", || {
        let p: Vec<String> = ha::primaries(d)?.into_iter().filter(|u| u != old).collect();
        ensure!(p.len() == 1, "writable members other than {old}: {p:?}");
        Ok(p[0].clone())
    })
    .map(|(p, _)| p)
}

/// The deployment settles as one primary and two streaming standbys (one synchronous), the
/// roles `list-members` reports agree, and both clients write through the DB VIP.
pub fn settled(d: &Deployment) -> Result<String> {
    let p = healthy(d, &Ledger::default(), 2, Duration::from_secs(600))?;
    wait_sync_standby(d)?;
    clients_write_through_the_vip(d)?;
    Ok(p)
}

/// Waits until `list-members` reports a primary, a synchronous standby and 3 members.
pub fn wait_sync_standby(d: &Deployment) -> Result<()> {
    // Patroni names its synchronous standby (its /sync key) a loop after PostgreSQL has one.
    until(
        RECOVER,
        "list-members: a primary, a sync standby, 3 members",
        || {
            let members = d.action(&format!("{APP}/leader"), "list-members", &[])?;
            let roles: Vec<String> = members["members"]
                .as_object()
                .map(|m| {
                    m.values()
                        .map(|v| v["role"].as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default();
            ensure!(
                roles.iter().filter(|r| *r == "primary").count() == 1
                    && roles
                        .iter()
                        .any(|r| r == "sync-standby" || r == "quorum-standby")
                    && roles.len() == 3,
                "list-members roles: {roles:?}"
            );
            Ok(())
        },
    )?;
    Ok(())
}

/// kill -9 of the primary's postmaster.
pub fn postmaster_killed(d: &Deployment, ledger: &mut Ledger) -> Result<Report> {
    let (unit, machine) = primary(d)?;
    let pid = postmaster(d, &machine)?;
    drill(
        d,
        ledger,
        "postmaster killed",
        "postmaster_killed",
        Some(Duration::from_secs(10)),
        2,
        |_| {
            d.fault(
                &machine,
                FaultOp::Kill {
                    target: pid.to_string(),
                    signal: 9,
                },
            )?;
            // Gone, or a zombie its parent has not reaped yet.
            until(Duration::from_secs(10), "the postmaster dead", || {
                let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                ensure!(
                    st.is_empty() || st.contains("zombie"),
                    "postmaster {pid} of {unit} survived SIGKILL"
                );
                Ok(())
            })
            .map(drop)
        },
    )
    .map(|(r, _)| r)
}

/// kill -9 of Patroni on the primary: systemd restarts it well within the leader lease, it
/// finds its PostgreSQL still running and keeps the leader key, so the primary stays.
pub fn patroni_killed(d: &Deployment, ledger: &mut Ledger) -> Result<Report> {
    let (unit, machine) = primary(d)?;
    let pids: Vec<u32> = serde_json::from_value(d.fault(
        &machine,
        FaultOp::Pids {
            comm: "patroni".into(),
        },
    )?)?;
    ensure!(
        !pids.is_empty(),
        "no patroni process on {unit}'s machine {machine}"
    );
    let (r, now) = drill(
        d,
        ledger,
        "Patroni killed on the primary",
        "patroni_killed",
        Some(Duration::from_secs(25)),
        2,
        |_| {
            for p in &pids {
                d.fault(
                    &machine,
                    FaultOp::Kill {
                        target: p.to_string(),
                        signal: 9,
                    },
                )?;
            }
            Ok(())
        },
    )?;
    ensure!(now == unit, "the primary moved from {unit} to {now}: the restarted Patroni did not take its running PostgreSQL back");
    Ok(r)
}

/// Every postgres process of the primary SIGSTOPped for `hold`, then SIGCONTed.
pub fn postgres_frozen(d: &Deployment, ledger: &mut Ledger, hold: Duration) -> Result<Report> {
    let (unit, machine) = primary(d)?;
    drill(
        d,
        ledger,
        &format!("postgres SIGSTOP {} s then SIGCONT", hold.as_secs()),
        "postgres_frozen",
        None,
        2,
        |_| {
            let pids: Vec<u32> = serde_json::from_value(d.fault(
                &machine,
                FaultOp::Pids {
                    comm: "postgres".into(),
                },
            )?)?;
            ensure!(
                !pids.is_empty(),
                "no postgres process on {unit}'s machine {machine}"
            );
            let mut frozen = Vec::new();
            let mut res = Ok(());
            for p in &pids {
                match d.fault(&machine, FaultOp::Freeze { pid: *p }) {
                    Ok(_) => frozen.push(*p),
                    Err(e) => res = Err(e),
                }
            }
            // The fault lasts `hold` (past the leader lease): a duration of the fault, not a wait.
            if res.is_ok() {
                std::thread::sleep(hold);
            }
            for p in &frozen {
                let _ = d.fault(&machine, FaultOp::Thaw { pid: *p });
            }
            res.map(drop)
        },
    )
    .map(|(r, _)| r)
}

/// The primary's network cut for `hold`, then restored. A cut of 60 s or more must see another
/// member promoted during the cut and the old primary rejoin as a streaming standby.
pub fn network_cut(d: &Deployment, ledger: &mut Ledger, hold: Duration) -> Result<Report> {
    let (old, machine) = primary(d)?;
    let name = format!("primary's network cut {} s", hold.as_secs());
    let mut promoted = None;
    let (r, now) = drill(
        d,
        ledger,
        &name,
        &format!("network_cut_{}", hold.as_secs()),
        Some(Duration::from_secs(25)),
        2,
        |w| {
            d.fault(&machine, FaultOp::Cut)?;
            let end = Instant::now() + hold;
            let res = (|| -> Result<()> {
                if hold >= Duration::from_secs(60) {
                    promoted = Some(wait_new_primary(d, &old, RECOVER)?);
                    w.wait(10, RECOVER)?;
                }
                Ok(())
            })();
            // The cut lasts `hold` whatever happened meanwhile; the network always comes back.
            if let Some(left) = end.checked_duration_since(Instant::now()) {
                std::thread::sleep(left);
            }
            d.fault(&machine, FaultOp::Restore)?;
            res
        },
    )?;
    if let Some(p) = promoted {
        ensure!(
            now != old,
            "{old} is the primary again after the cut (promoted during the cut: {p})"
        );
    }
    // The old primary streams again: healthy() counted two streaming standbys.
    Ok(r)
}

/// `switchover` to the synchronous standby.
pub fn switchover(d: &Deployment, ledger: &mut Ledger) -> Result<Report> {
    let (old, _) = primary(d)?;
    let (r, now) = drill(
        d,
        ledger,
        "switchover",
        "switchover",
        Some(Duration::from_secs(5)),
        2,
        |_| {
            d.action(&format!("{APP}/leader"), "switchover", &[])?;
            Ok(())
        },
    )?;
    ensure!(now != old, "switchover left {old} the primary");
    Ok(r)
}

/// Two faults back to back (issue 16): the primary's postmaster killed and, as soon as the
/// new primary acknowledges a write, that primary's host down. The outage is measured from the
/// second fault (the host-lost target); the first member's PostgreSQL is still restarting.
pub fn back_to_back(d: &Deployment, ledger: &mut Ledger) -> Result<Report> {
    let (first, machine) = primary(d)?;
    let pid = postmaster(d, &machine)?;
    let mut second = String::new();
    let (r, now) = drill(
        d,
        ledger,
        "postmaster killed, then the new primary's host down",
        "back_to_back",
        Some(Duration::from_secs(25)),
        2,
        |w| {
            d.fault(
                &machine,
                FaultOp::Kill {
                    target: pid.to_string(),
                    signal: 9,
                },
            )?;
            let new = wait_new_primary(d, &first, RECOVER)?;
            w.wait(1, RECOVER)
                .context("the new primary acknowledged no write")?;
            second = d.machine_of(&new)?;
            w.measure_from_now();
            d.fault(&second, FaultOp::Stop)?;
            let res = w
                .wait(10, RECOVER)
                .with_context(|| format!("writes after {new}'s host went down too"));
            d.fault(&second, FaultOp::Start)?;
            res
        },
    )?;
    ensure!(
        d.machine_of(&now)? != second,
        "{now} is the primary, on the machine that went down"
    );
    Ok(r)
}

/// The primary's host down, and as soon as the new primary acknowledges writes the old host
/// comes back; while its Patroni rejoins (restart, pg_rewind when its timeline diverged), the
/// new primary's host goes down too (issue 16). The outage is measured from the second fault.
pub fn host_down_while_rejoining(d: &Deployment, ledger: &mut Ledger) -> Result<Report> {
    let (first, m1) = primary(d)?;
    let (r, _) = drill(
        d,
        ledger,
        "primary's host down while the old primary rejoins",
        "down_while_rejoining",
        Some(Duration::from_secs(25)),
        2,
        |w| {
            d.fault(&m1, FaultOp::Stop)?;
            let new = wait_new_primary(d, &first, RECOVER)?;
            w.wait(3, RECOVER)
                .context("the new primary acknowledged no write")?;
            let m2 = d.machine_of(&new)?;
            d.fault(&m1, FaultOp::Start)?;
            // The old primary is rejoining from the moment its Patroni runs until it streams.
            until(RECOVER, "Patroni running again on the old primary", || {
                let pids: Vec<u32> = serde_json::from_value(d.fault(
                    &m1,
                    FaultOp::Pids {
                        comm: "patroni".into(),
                    },
                )?)?;
                ensure!(!pids.is_empty(), "no patroni on machine {m1} yet");
                Ok(())
            })?;
            w.measure_from_now();
            d.fault(&m2, FaultOp::Stop)?;
            let res = w.wait(10, RECOVER).with_context(|| {
                format!("writes after {new}'s host went down while {first} rejoined")
            });
            d.fault(&m2, FaultOp::Start)?;
            res
        },
    )?;
    Ok(r)
}

/// Every postgresql-ha host stopped at once, then all started (the clients' machine stays up).
pub fn all_hosts_restarted(d: &Deployment, ledger: &mut Ledger) -> Result<Report> {
    let machines = d.machines_of(APP)?;
    drill(
        d,
        ledger,
        "every database host stopped and started",
        "all_restarted",
        None,
        2,
        |_| {
            for m in &machines {
                d.fault(m, FaultOp::Stop)?;
            }
            for m in &machines {
                d.fault(m, FaultOp::Start)?;
            }
            Ok(())
        },
    )
    .map(|(r, _)| r)
}

/// `remove-unit` of the primary: another member takes over; 2 units remain.
pub fn primary_removed(d: &Deployment, ledger: &mut Ledger) -> Result<Report> {
    let (old, _) = primary(d)?;
    let (r, now) = drill(
        d,
        ledger,
        "primary unit removed",
        "primary_removed",
        None,
        1,
        |_| {
            d.lm.remove_unit(&[&old])?;
            until(HEAL, "the unit gone", || {
                ensure!(
                    d.status()?["applications"][APP]["units"]
                        .get(&old)
                        .is_none(),
                    "{old} is still in the model"
                );
                Ok(())
            })?;
            Ok(())
        },
    )?;
    ensure!(
        now != old && ha::pg_units(d)?.len() == 2,
        "after removing {old}: primary {now}, units {:?}",
        ha::pg_units(d)?
    );
    Ok(r)
}

/// Two units: the primary's host goes down; the survivor (the leader) is Blocked on quorum
/// loss; `force-promote` on it; writes resume; the host comes back and rejoins as a standby.
pub fn two_units_force_promote(d: &Deployment, ledger: &mut Ledger) -> Result<Report> {
    let units = ha::pg_units(d)?;
    ensure!(units.len() == 2, "this drill needs 2 units, have {units:?}");
    let st = d.status()?;
    let leader = units
        .iter()
        .find(|u| st["applications"][APP]["units"][u.as_str()]["leader"] == true)
        .cloned()
        .context("no leader unit")?;
    // The survivor must be the leader (force-promote runs there): the primary goes elsewhere first.
    if primary(d)?.0 == leader {
        d.action(&format!("{APP}/leader"), "switchover", &[])?;
        until(RECOVER, "the primary off the leader unit", || {
            ensure!(primary(d)?.0 != leader, "{leader} is still the primary");
            Ok(())
        })?;
        healthy(d, ledger, 1, HEAL)?;
    }
    let (old, machine) = primary(d)?;
    drill(
        d,
        ledger,
        "2 units, primary's host down, force-promote",
        "force_promote",
        None,
        1,
        |w| {
            d.fault(&machine, FaultOp::Stop)?;
            let res = (|| -> Result<()> {
                until(
                    Duration::from_secs(120),
                    "the survivor Blocked on quorum loss",
                    || {
                        let st = d.status()?;
                        let ws =
                            &st["applications"][APP]["units"][leader.as_str()]["workload-status"];
                        ensure!(
                            ws["current"] == "blocked"
                                && ws["message"]
                                    .as_str()
                                    .unwrap_or("")
                                    .contains("force-promote"),
                            "{leader}: {ws}"
                        );
                        Ok(())
                    },
                )?;
                ensure!(
                    d.action(&format!("{APP}/leader"), "force-promote", &[])
                        .is_err(),
                    "force-promote without the confirmation was not refused"
                );
                d.action(
                    &format!("{APP}/leader"),
                    "force-promote",
                    &["i-understand-data-loss=true"],
                )?;
                w.wait(10, RECOVER).context("writes after force-promote")?;
                Ok(())
            })();
            d.fault(&machine, FaultOp::Start)?;
            res
        },
    )
    .map(|(r, _)| r)
    .with_context(|| format!("old primary {old}"))
}

/// One drill of the sequence.
pub type Step = Box<dyn Fn(&Deployment, &mut Ledger) -> Result<Report>>;

/// The drills in the order they run on one deployment (each starts from the state the previous
/// one left; the last two need the 3 units the earlier ones keep, and leave 2).
pub fn steps() -> Vec<(&'static str, Step)> {
    vec![
        ("switchover", Box::new(switchover)),
        ("postmaster killed", Box::new(postmaster_killed)),
        ("patroni killed", Box::new(patroni_killed)),
        (
            "postgres frozen",
            Box::new(|d: &Deployment, l: &mut Ledger| {
                postgres_frozen(d, l, Duration::from_secs(30))
            }),
        ),
        (
            "network cut 30 s",
            Box::new(|d: &Deployment, l: &mut Ledger| network_cut(d, l, Duration::from_secs(30))),
        ),
        (
            // Long enough for another member to be promoted during the cut (about 22 s in).
            "network cut 60 s",
            Box::new(|d: &Deployment, l: &mut Ledger| network_cut(d, l, Duration::from_secs(60))),
        ),
        ("back to back", Box::new(back_to_back)),
        ("down while rejoining", Box::new(host_down_while_rejoining)),
        ("all hosts restarted", Box::new(all_hosts_restarted)),
        ("primary removed", Box::new(primary_removed)),
        ("2 units, force-promote", Box::new(two_units_force_promote)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: &[(bool, u64, u64)]) -> Vec<Value> {
        v.iter()
            .map(|(ok, t, ms)| json!({"ok": ok, "t_ms": t, "ms": ms}))
            .collect()
    }

    #[test]
    fn recovery_counts_from_the_fault_to_the_first_success_after_a_failure() {
        // A write that succeeded before the outage (in flight at the fault) does not count.
        let r = rec(&[
            (true, 900, 5),
            (true, 1010, 5),
            (false, 1100, 3000),
            (false, 4200, 10),
            (true, 4300, 200),
            (true, 4600, 5),
        ]);
        assert_eq!(recovery(&r, 1000), (Some(Duration::from_millis(3500)), 2));
        // Nothing failed after the fault: nothing recovered, nothing failed.
        assert_eq!(recovery(&r[..2], 1000), (None, 0));
        // Failures before the fault are not this drill's.
        let r = rec(&[(false, 500, 5), (true, 1200, 5)]);
        assert_eq!(recovery(&r, 1000), (None, 0));
    }

    #[test]
    fn dsn_values_by_key() {
        let dsn =
            "host=10.77.70.201 port=5432 dbname=e2e user=relation_4 password=x connect_timeout=3";
        assert_eq!(dsn_value(dsn, "host"), Some("10.77.70.201"));
        assert_eq!(dsn_value(dsn, "port"), Some("5432"));
        assert_eq!(dsn_value(dsn, "hostaddr"), None);
    }
}
